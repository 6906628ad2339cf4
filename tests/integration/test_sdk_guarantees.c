// tests/integration/test_sdk_guarantees.c - delivery guarantees (issue 4) through libhopper
// against a real hopperd: a consumer process frozen with SIGSTOP, the bounded producer/consumer
// buffer (reject-publish + confirms + retry), a poison message dead-lettered after exactly N
// deliveries, retry-later, ack deadlines with a late ack, mandatory returns, and per-message
// TTL with dead-letter records. Counts are exact: nothing lost, nothing duplicated except
// flagged redeliveries.
#include "sdk_helpers.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

// ---------------------------------------------------------------------------------------
// A consumer frozen with SIGSTOP: its messages go to a live consumer within its timeout,
// and its late acks after SIGCONT are refused without touching anyone else's messages.

#define FROZEN_HEARTBEAT 200 // ms: the broker declares the consumer dead after 5 x this
#define FROZEN_PREFETCH  5
#define FROZEN_TOTAL     20

static bool
s_file_exists(const char *dir, const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    struct stat st;
    return stat(path, &st) == 0;
}

static void
s_write_file(const char *dir, const char *name, const char *text)
{
    char path[512], tmp[520];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return;
    fputs(text, f);
    fclose(f);
    rename(tmp, path); // appears whole
}

// The frozen consumer's process: takes FROZEN_PREFETCH messages without acking, says so in
// DIR/ready, waits for DIR/go (it is stopped and continued meanwhile), then acks them and
// writes what the acks returned to DIR/result.
static int
s_sleeper_main(const char *endpoint, const char *queue, const char *dir)
{
    hop_client_t *c = hop_client_new();
    hop_client_set_heartbeat(c, FROZEN_HEARTBEAT);
    hop_client_set_name(c, "sleeper");
    if (hop_client_connect(c, endpoint) != HOP_OK ||
        hop_client_consume(c, queue, "sleeper", FROZEN_PREFETCH, 0, NULL, 0) != HOP_OK) {
        fprintf(stderr, "sleeper: %s\n", hop_client_error(c));
        hop_client_destroy(&c);
        return 1;
    }
    uint64_t tags[FROZEN_PREFETCH];
    for (int i = 0; i < FROZEN_PREFETCH; i++) {
        hop_delivery_t *d = NULL;
        if (hop_client_receive(c, &d, 20000) != HOP_OK) {
            fprintf(stderr, "sleeper: no delivery: %s\n", hop_client_error(c));
            hop_client_destroy(&c);
            return 1;
        }
        tags[i] = d->tag;
        hop_delivery_destroy(&d);
    }
    s_write_file(dir, "ready", "5\n");
    uint64_t until = harness_now_ms() + 60000;
    while (!s_file_exists(dir, "go") && harness_now_ms() < until)
        harness_pause_ms(20);
    // Awake: the broker closed this connection while we slept. The first call finds out and
    // reconnects; the acks that follow name deliveries of the old connection.
    void *status = NULL;
    size_t size = 0;
    int status_rc = hop_client_status(c, &status, &size);
    if (status_rc != HOP_OK)
        status_rc = hop_client_status(c, &status, &size);
    free(status);
    char result[512];
    int n = snprintf(result, sizeof result, "status=%d", status_rc);
    for (int i = 0; i < FROZEN_PREFETCH; i++)
        n += snprintf(result + n, sizeof result - (size_t)n, " ack=%d",
                      hop_client_ack(c, tags[i], false));
    snprintf(result + n, sizeof result - (size_t)n, "\n");
    s_write_file(dir, "result", result);
    hop_client_destroy(&c);
    return 0;
}

typedef struct {
    const char *dir;
    const char *name;
} s_file_t;

static bool
s_file_appeared(void *arg)
{
    s_file_t *f = arg;
    return s_file_exists(f->dir, f->name);
}

static void
test_sigstopped_consumer_messages_go_to_a_live_one(void **state)
{
    fx_t *fx = *state;
    hop_client_t *c = sx_client(fx, "live", 0);
    CHECK(c, hop_client_declare_queue(c, "frozen", 0, NULL, 0));
    for (int i = 0; i < FROZEN_TOTAL; i++) {
        char body[16];
        snprintf(body, sizeof body, "%d", i);
        sx_publish_text(c, "", "frozen", body);
    }
    sx_sync(c);
    const char *dir = harness_tempdir();
    char *argv[] = {(char *)harness_self_path(),
                    "--sleeper",
                    (char *)harness_broker_endpoint(fx->broker),
                    "frozen",
                    (char *)dir,
                    NULL};
    int pid = harness_spawn(argv);
    assert_true(pid > 0);
    s_file_t ready = {dir, "ready"};
    if (!harness_wait_until(s_file_appeared, &ready, WAIT_MS)) {
        harness_kill9(pid);
        fail_msg("the sleeper never took its %d messages", FROZEN_PREFETCH);
    }
    uint64_t unacked = 0;
    assert_true(sx_list_uint(c, "consumers", "consumer", "sleeper", "unacked", &unacked));
    assert_int_equal(unacked, FROZEN_PREFETCH);

    // Freeze it: no heartbeats any more. A live consumer gets everything, the sleeper's
    // messages flagged redelivered once the broker gives up on it (5 x 200 ms).
    assert_int_equal(kill(pid, SIGSTOP), 0);
    uint64_t stopped_at = harness_now_ms();
    CHECK(c, hop_client_consume(c, "frozen", "live", 0, 0, NULL, 0));
    bool seen[FROZEN_TOTAL] = {false};
    int redelivered = 0;
    uint64_t last_at = 0;
    for (int i = 0; i < FROZEN_TOTAL; i++) {
        hop_delivery_t *d = sx_receive(c);
        long seq = sx_body_seq(d);
        assert_true(seq >= 0 && seq < FROZEN_TOTAL);
        assert_false(seen[seq]);
        seen[seq] = true;
        if (d->redelivered) {
            assert_int_equal(d->delivery_count, 2);
            redelivered++;
            last_at = harness_now_ms();
        }
        CHECK(c, hop_client_ack(c, d->tag, false));
        hop_delivery_destroy(&d);
    }
    assert_int_equal(redelivered, FROZEN_PREFETCH);
    // Within the configured time: 5 heartbeats of silence, plus the broker's 100 ms tick and
    // generous slack for a loaded machine.
    assert_true(last_at - stopped_at < 5 * FROZEN_HEARTBEAT + 4000);
    sx_expect_nothing(c);
    assert_int_equal(sx_queue_stat(c, "frozen", "acked"), FROZEN_TOTAL);

    // Wake it: its late acks must be refused (the deliveries belong to a closed connection)
    // and must not settle anything else.
    sx_publish_text(c, "", "frozen", "after");
    sx_sync(c);
    CHECK(c, hop_client_cancel(c, "live"));
    s_write_file(dir, "go", "go\n");
    assert_int_equal(kill(pid, SIGCONT), 0);
    assert_int_equal(harness_reap(pid, WAIT_MS), 0);
    char path[512], result[512] = "";
    snprintf(path, sizeof path, "%s/result", dir);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    assert_non_null(fgets(result, sizeof result, f));
    fclose(f);
    char want[256];
    int n = snprintf(want, sizeof want, "status=0");
    for (int i = 0; i < FROZEN_PREFETCH; i++)
        n += snprintf(want + n, sizeof want - (size_t)n, " ack=%d", HOP_EPRECOND);
    snprintf(want + n, sizeof want - (size_t)n, "\n");
    assert_string_equal(result, want);
    // The message published meanwhile is untouched; nothing was acked twice.
    assert_int_equal(sx_queue_stat(c, "frozen", "messages_ready"), 1);
    assert_int_equal(sx_queue_stat(c, "frozen", "acked"), FROZEN_TOTAL);
}

int
main(int argc, char **argv)
{
    if (argc == 5 && strcmp(argv[1], "--sleeper") == 0)
        return s_sleeper_main(argv[2], argv[3], argv[4]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_sigstopped_consumer_messages_go_to_a_live_one,
                                        sx_setup, sx_teardown),
    };
    return cmocka_run_group_tests_name("integration.sdk_guarantees", tests, NULL, NULL);
}
