// tests/integration/test_durability.c - what survives kill -9 (issue 5): durable topology and
// persistent messages, against a real hopperd killed and restarted on the same data directory.
//
// The crash test runs 20 rounds, each killing the broker at a random moment while a publisher
// in confirm mode sends persistent messages with unique ids: every confirmed message that was
// not acked is delivered after the restart, nothing appears that was never published, acked
// messages do not come back, and nothing comes twice.
#include "sdk_helpers.h"

#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ROUNDS   20
#define PHASE1   300   // messages published and confirmed before the crash window
#define ACKED    100   // of those, acked before the crash window
#define MAX_MSGS 50000 // publishes per round at most

static int
s_setup_durable(void **state)
{
    fx_t *fx = calloc(1, sizeof *fx);
    if (!fx)
        return -1;
    harness_opts_t opts = {.heartbeat_ms = 200, .log_level = "warn"};
    fx->broker = harness_broker_start(&opts);
    if (!fx->broker) {
        free(fx);
        return -1;
    }
    *state = fx;
    return 0;
}

// What one round's publisher did, by confirm sequence: seq n carried id ids[n].
typedef struct {
    hop_client_t *client;
    uint64_t first_id;       // ids are first_id + i
    uint64_t published;      // publishes that returned HOP_OK
    uint64_t seq_of_first;   // confirm seq of the first publish of this phase
    uint8_t *confirmed;      // by index: 1 once positively confirmed
    uint64_t confirmed_upto; // confirm seqs are settled in order: highest seen
    atomic_bool stop;
} s_pub_t;

static void
s_on_confirm(hop_client_t *client, uint64_t seq, bool multiple, bool ok, int code, const char *text,
             void *arg)
{
    (void)client, (void)code, (void)text;
    s_pub_t *p = arg;
    if (!ok)
        return;
    uint64_t lo = multiple ? p->confirmed_upto + 1 : seq;
    if (lo < p->seq_of_first)
        lo = p->seq_of_first;
    for (uint64_t s = lo; s <= seq; s++) {
        uint64_t i = s - p->seq_of_first;
        if (i < MAX_MSGS)
            p->confirmed[i] = 1;
    }
    if (seq > p->confirmed_upto)
        p->confirmed_upto = seq;
}

static int
s_publish(s_pub_t *p, uint64_t i)
{
    char body[32];
    snprintf(body, sizeof body, "%llu", (unsigned long long)(p->first_id + i));
    hop_publish_opts_t opts = {.persistent = true};
    uint64_t seq = 0;
    int rc = hop_client_publish_ex(p->client, "", "crash", body, strlen(body), NULL, &opts, &seq);
    if (rc == HOP_OK) {
        if (p->published == 0)
            p->seq_of_first = seq;
        p->published++;
    }
    return rc;
}

// Phase 2: publishes until stopped or the broker is gone.
static void *
s_publisher(void *arg)
{
    s_pub_t *p = arg;
    while (!atomic_load(&p->stop) && p->published < MAX_MSGS) {
        if (s_publish(p, p->published) != HOP_OK)
            break;
        if (p->published % 100 == 0)
            harness_pause_ms(1); // spread over the kill window, so that it lands mid-stream
    }
    hop_client_wait_confirms(p->client, 500, NULL); // collects what is still coming, if any
    return NULL;
}

static uint64_t s_rng = 0x9e3779b97f4a7c15ull;

static uint64_t
s_rand(void)
{
    s_rng ^= s_rng << 13, s_rng ^= s_rng >> 7, s_rng ^= s_rng << 17;
    return s_rng;
}

static hop_client_t *
s_connect(fx_t *fx, const char *name, bool reconnect)
{
    hop_client_t *c = hop_client_new();
    hop_client_set_timeout(c, 5000);
    hop_client_set_heartbeat(c, 200);
    hop_client_set_name(c, name);
    hop_client_set_reconnect(c, reconnect);
    CHECK(c, hop_client_connect(c, harness_broker_endpoint(fx->broker)));
    return c;
}

static void
test_crash_keeps_every_confirmed_message(void **state)
{
    fx_t *fx = *state;
    uint64_t total_confirmed = 0, total_recovered = 0, total_acked = 0, total_published = 0;
    for (int round = 0; round < ROUNDS; round++) {
        hop_client_t *admin = s_connect(fx, "admin", false);
        CHECK(admin, hop_client_declare_queue(admin, "crash", HOP_DURABLE, NULL, 0));
        CHECK(admin, hop_client_purge_queue(admin, "crash", NULL));

        // Phase 1: PHASE1 confirmed, the first ACKED of them acked (and the acks processed).
        s_pub_t *p = calloc(1, sizeof *p);
        assert_non_null(p);
        p->confirmed = calloc(MAX_MSGS, 1);
        assert_non_null(p->confirmed);
        p->first_id = (uint64_t)round * 1000000;
        p->client = s_connect(fx, "publisher", false);
        CHECK(p->client, hop_client_confirm_select(p->client));
        hop_client_on_confirm(p->client, s_on_confirm, p);
        for (uint64_t i = 0; i < PHASE1; i++)
            CHECK(p->client, s_publish(p, i));
        CHECK(p->client, hop_client_wait_confirms(p->client, 10000, NULL));
        bool *acked = calloc(MAX_MSGS, sizeof *acked);
        assert_non_null(acked);
        for (int i = 0; i < ACKED; i++) {
            hop_delivery_t *d = NULL;
            CHECK(admin, hop_client_get(admin, "crash", 0, &d));
            long v = sx_body_seq(d);
            assert_true(v >= (long)p->first_id && v < (long)(p->first_id + PHASE1));
            acked[v - (long)p->first_id] = true;
            CHECK(admin, hop_client_ack(admin, d->tag, false));
            hop_delivery_destroy(&d);
        }
        sx_sync(admin); // the broker has handled the acks (their records are written next)
        harness_pause_ms(100);

        // Phase 2: publish on, and kill -9 at a random moment.
        pthread_t thread;
        assert_int_equal(pthread_create(&thread, NULL, s_publisher, p), 0);
        harness_pause_ms((int)(20 + s_rand() % 400));
        assert_int_equal(harness_broker_kill(fx->broker), 0);
        atomic_store(&p->stop, true);
        pthread_join(thread, NULL);
        hop_client_destroy(&p->client);
        hop_client_destroy(&admin);
        assert_int_equal(harness_broker_restart(fx->broker), 0);

        // Drain what survived.
        hop_client_t *c = s_connect(fx, "drainer", false);
        uint8_t *seen = calloc(MAX_MSGS, 1);
        assert_non_null(seen);
        uint64_t recovered = 0;
        uint64_t ready = sx_queue_stat(c, "crash", "messages_ready");
        CHECK(c, hop_client_consume(c, "crash", "drain", 1000, 0, NULL, 0));
        for (uint64_t n = 0; n < ready; n++) {
            hop_delivery_t *d = sx_receive(c);
            long v = sx_body_seq(d);
            uint64_t i = (uint64_t)v - p->first_id;
            if (v < (long)p->first_id || i >= p->published)
                fail_msg("round %d: message %ld was never published", round, v);
            if (seen[i])
                fail_msg("round %d: message %ld delivered twice", round, v);
            if (acked[i])
                fail_msg("round %d: message %ld was acked before the crash", round, v);
            seen[i] = 1;
            recovered++;
            CHECK(c, hop_client_ack(c, d->tag, false));
            hop_delivery_destroy(&d);
        }
        sx_expect_nothing(c);
        uint64_t confirmed = 0;
        for (uint64_t i = 0; i < p->published; i++) {
            if (!p->confirmed[i])
                continue;
            confirmed++;
            if (!acked[i] && !seen[i])
                fail_msg("round %d: message %llu was confirmed but is lost", round,
                         (unsigned long long)(p->first_id + i));
        }
        total_confirmed += confirmed;
        total_recovered += recovered;
        total_acked += ACKED;
        total_published += p->published;
        hop_client_destroy(&c);
        free(seen);
        free(acked);
        free(p->confirmed);
        free(p);
    }
    printf("crash test: %d rounds, %llu published, %llu confirmed, %llu acked before the crash, "
           "%llu recovered after it; none lost, none duplicated, none acked came back\n",
           ROUNDS, (unsigned long long)total_published, (unsigned long long)total_confirmed,
           (unsigned long long)total_acked, (unsigned long long)total_recovered);
}

// Durable topology survives; non-durable things and transient messages do not.
static void
test_restart_keeps_durable_things_only(void **state)
{
    fx_t *fx = *state;
    hop_client_t *c = s_connect(fx, "topology", false);
    CHECK(c, hop_client_declare_exchange(c, "orders", "topic", HOP_DURABLE));
    CHECK(c, hop_client_declare_exchange(c, "scratch", "fanout", 0));
    hop_queue_args_t args = {.max_length = 50,
                             .overflow = "reject-publish",
                             .max_deliveries = 4,
                             .dead_letter_exchange = "",
                             .dead_letter_key = "dead"};
    CHECK(c, hop_client_declare_queue_args(c, "billing", HOP_DURABLE, &args, NULL, 0, NULL, NULL));
    CHECK(c, hop_client_declare_queue(c, "temp", 0, NULL, 0));
    CHECK(c, hop_client_bind(c, "billing", "orders", "order.paid"));
    CHECK(c, hop_client_bind(c, "billing", "amq.topic", "x.#"));
    CHECK(c, hop_client_bind(c, "temp", "orders", "#"));
    CHECK(c, hop_client_confirm_select(c));
    hop_publish_opts_t keep = {.persistent = true};
    CHECK(c, hop_client_publish_ex(c, "orders", "order.paid", "kept", 4, NULL, &keep, NULL));
    CHECK(c, hop_client_publish_ex(c, "orders", "order.paid", "lost", 4, NULL, NULL, NULL));
    CHECK(c, hop_client_wait_confirms(c, 5000, NULL));
    // A binding made and undone, and a durable queue made and deleted, stay undone.
    CHECK(c, hop_client_bind(c, "billing", "orders", "order.gone"));
    CHECK(c, hop_client_unbind(c, "billing", "orders", "order.gone"));
    CHECK(c, hop_client_declare_queue(c, "deleted", HOP_DURABLE, NULL, 0));
    CHECK(c, hop_client_delete_queue(c, "deleted", 0, NULL));
    hop_client_destroy(&c);

    assert_int_equal(harness_broker_kill(fx->broker), 0);
    assert_int_equal(harness_broker_restart(fx->broker), 0);
    c = s_connect(fx, "after", false);
    void *items = NULL;
    size_t size = 0, ms = 0;
    const void *m = NULL;
    CHECK(c, hop_client_list(c, "queues", &items, &size));
    uint64_t v = 0;
    assert_true(harness_items_uint(items, size, "name", "billing", "messages_ready", &v));
    assert_int_equal(v, 1);
    assert_true(harness_items_uint(items, size, "name", "billing", "max_length", &v));
    assert_int_equal(v, 50);
    assert_true(harness_items_uint(items, size, "name", "billing", "max_deliveries", &v));
    assert_int_equal(v, 4);
    assert_false(harness_items_find(items, size, "name", "temp", &m, &ms));
    assert_false(harness_items_find(items, size, "name", "deleted", &m, &ms));
    free(items);
    CHECK(c, hop_client_list(c, "exchanges", &items, &size));
    assert_true(harness_items_find(items, size, "name", "orders", &m, &ms));
    assert_false(harness_items_find(items, size, "name", "scratch", &m, &ms));
    free(items);
    CHECK(c, hop_client_list(c, "bindings", &items, &size));
    assert_int_equal(harness_items_count(items, size), 2); // order.paid and amq.topic x.#
    free(items);
    // The arguments are in force again: redeclaring with another max_length is refused.
    hop_queue_args_t other = {.max_length = 51};
    assert_int_equal(
        hop_client_declare_queue_args(c, "billing", HOP_DURABLE, &other, NULL, 0, NULL, NULL),
        HOP_EPRECOND);
    hop_delivery_t *d = NULL;
    CHECK(c, hop_client_get(c, "billing", HOP_NO_ACK, &d));
    assert_true(sx_body_is(d, "kept"));
    assert_true(d->redelivered); // recovered messages are flagged: they may have been seen
    hop_delivery_destroy(&d);
    // Routing works through the recovered binding.
    sx_publish_text(c, "orders", "order.paid", "again");
    sx_sync(c);
    CHECK(c, hop_client_get(c, "billing", HOP_NO_ACK, &d));
    assert_true(sx_body_is(d, "again"));
    hop_delivery_destroy(&d);
    // The status tells where the data lives.
    void *status = NULL;
    CHECK(c, hop_client_status(c, &status, &size));
    char policy[16];
    assert_true(harness_map_str(status, size, "fsync", policy, sizeof policy));
    assert_string_equal(policy, "always");
    assert_true(harness_map_uint(status, size, "segments", &v));
    assert_true(v >= 1);
    free(status);
    hop_client_destroy(&c);
}

// A torn last record (the broker died in the middle of writing it) is cut at start, and the
// broker says so; everything before it is there.
static void
test_torn_tail_is_cut_and_reported(void **state)
{
    fx_t *fx = *state;
    hop_client_t *c = s_connect(fx, "torn", false);
    CHECK(c, hop_client_declare_queue(c, "torn", HOP_DURABLE, NULL, 0));
    CHECK(c, hop_client_confirm_select(c));
    hop_publish_opts_t keep = {.persistent = true};
    for (int i = 0; i < 10; i++) {
        char body[16];
        snprintf(body, sizeof body, "%d", i);
        CHECK(c, hop_client_publish_ex(c, "", "torn", body, strlen(body), NULL, &keep, NULL));
    }
    CHECK(c, hop_client_wait_confirms(c, 5000, NULL));
    hop_client_destroy(&c);
    assert_int_equal(harness_broker_stop(fx->broker, 10000), 0);

    // Tear the last record: the newest segment loses its last 7 bytes.
    char dir[600], last[900] = "";
    snprintf(dir, sizeof dir, "%s/segments", harness_broker_data_dir(fx->broker));
    DIR *d = opendir(dir);
    assert_non_null(d);
    for (struct dirent *e; (e = readdir(d));)
        if (strstr(e->d_name, ".log")) {
            char path[900];
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            if (strcmp(path, last) > 0)
                snprintf(last, sizeof last, "%s", path);
        }
    closedir(d);
    assert_true(last[0]);
    FILE *f = fopen(last, "r+");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fclose(f);
    assert_int_equal(truncate(last, size - 7), 0);

    assert_int_equal(harness_broker_restart(fx->broker), 0);
    c = s_connect(fx, "after", false);
    assert_int_equal(sx_queue_stat(c, "torn", "messages_ready"), 9);
    for (int i = 0; i < 9; i++) {
        hop_delivery_t *dl = NULL;
        CHECK(c, hop_client_get(c, "torn", HOP_NO_ACK, &dl));
        assert_int_equal(sx_body_seq(dl), i);
        hop_delivery_destroy(&dl);
    }
    hop_client_destroy(&c);
    FILE *log = tmpfile();
    assert_non_null(log);
    harness_broker_dump_log(fx->broker, log);
    rewind(log);
    char line[1024];
    bool said = false;
    while (fgets(line, sizeof line, log))
        said |= strstr(line, "cut") != NULL;
    fclose(log);
    assert_true(said);
}

// Death records and TTL deadlines of persistent messages are kept across a restart.
static void
test_restart_keeps_death_records_and_deadlines(void **state)
{
    fx_t *fx = *state;
    hop_client_t *c = s_connect(fx, "deaths", false);
    CHECK(c, hop_client_declare_queue(c, "graveyard", HOP_DURABLE, NULL, 0));
    hop_queue_args_t args = {.dead_letter_exchange = "", .dead_letter_key = "graveyard"};
    CHECK(c, hop_client_declare_queue_args(c, "work", HOP_DURABLE, &args, NULL, 0, NULL, NULL));
    CHECK(c, hop_client_declare_queue(c, "short", HOP_DURABLE, NULL, 0));
    CHECK(c, hop_client_confirm_select(c));
    hop_publish_opts_t keep = {.persistent = true};
    CHECK(c, hop_client_publish_ex(c, "", "work", "bad", 3, NULL, &keep, NULL));
    hop_publish_opts_t brief = {.persistent = true, .expiration = 1500};
    CHECK(c, hop_client_publish_ex(c, "", "short", "brief", 5, NULL, &brief, NULL));
    uint64_t published_at = harness_now_ms();
    CHECK(c, hop_client_wait_confirms(c, 5000, NULL));
    hop_delivery_t *d = NULL;
    CHECK(c, hop_client_get(c, "work", 0, &d));
    CHECK(c, hop_client_reject(c, d->tag, false)); // dead-lettered into graveyard
    hop_delivery_destroy(&d);
    sx_sync(c);
    assert_int_equal(sx_queue_stat(c, "graveyard", "messages_ready"), 1);
    harness_pause_ms(100); // the reject's records are written
    hop_client_destroy(&c);

    assert_int_equal(harness_broker_kill(fx->broker), 0);
    assert_int_equal(harness_broker_restart(fx->broker), 0);
    c = s_connect(fx, "after", false);
    assert_int_equal(sx_queue_stat(c, "work", "messages_ready"), 0);
    CHECK(c, hop_client_get(c, "graveyard", HOP_NO_ACK, &d));
    assert_true(sx_body_is(d, "bad"));
    assert_int_equal(d->death_count, 1);
    assert_string_equal(d->deaths[0].reason, "rejected");
    assert_string_equal(d->deaths[0].queue, "work");
    hop_delivery_destroy(&d);
    // The message with a 1.5 s TTL expires 1.5 s after it was published, restart or not.
    if (harness_now_ms() - published_at < 1200)
        assert_int_equal(sx_queue_stat(c, "short", "messages_ready"), 1);
    while (harness_now_ms() - published_at < 1500 + 300)
        harness_pause_ms(50);
    assert_int_equal(hop_client_get(c, "short", HOP_NO_ACK, &d), HOP_EEMPTY);
    assert_int_equal(sx_queue_stat(c, "short", "expired"), 1);
    hop_client_destroy(&c);
}

// A persistent message's delivery count and retry-later delay survive a restart.
static void
test_restart_keeps_delivery_counts_and_delays(void **state)
{
    fx_t *fx = *state;
    hop_client_t *c = s_connect(fx, "retries", false);
    CHECK(c, hop_client_declare_queue(c, "retry", HOP_DURABLE, NULL, 0));
    CHECK(c, hop_client_confirm_select(c));
    hop_publish_opts_t keep = {.persistent = true};
    CHECK(c, hop_client_publish_ex(c, "", "retry", "job", 3, NULL, &keep, NULL));
    CHECK(c, hop_client_wait_confirms(c, 5000, NULL));
    hop_delivery_t *d = NULL;
    for (int i = 0; i < 2; i++) {
        CHECK(c, hop_client_get(c, "retry", 0, &d));
        CHECK(c, hop_client_reject(c, d->tag, true));
        hop_delivery_destroy(&d);
    }
    CHECK(c, hop_client_get(c, "retry", 0, &d));
    assert_int_equal(d->delivery_count, 3);
    CHECK(c, hop_client_retry_later(c, d->tag, 2500));
    uint64_t asked_at = harness_now_ms();
    hop_delivery_destroy(&d);
    sx_sync(c);
    assert_int_equal(sx_queue_stat(c, "retry", "messages_delayed"), 1);
    harness_pause_ms(100); // the records are written
    hop_client_destroy(&c);

    assert_int_equal(harness_broker_kill(fx->broker), 0);
    assert_int_equal(harness_broker_restart(fx->broker), 0);
    c = s_connect(fx, "after", false);
    if (harness_now_ms() - asked_at < 2000) {
        assert_int_equal(sx_queue_stat(c, "retry", "messages_delayed"), 1);
        assert_int_equal(hop_client_get(c, "retry", 0, &d), HOP_EEMPTY);
    }
    CHECK(c, hop_client_consume(c, "retry", "r", 1, 0, NULL, 0));
    d = sx_receive(c);
    assert_true(harness_now_ms() - asked_at >= 2500);
    assert_true(sx_body_is(d, "job"));
    assert_int_equal(d->delivery_count, 4);
    CHECK(c, hop_client_ack(c, d->tag, false));
    hop_delivery_destroy(&d);
    hop_client_destroy(&c);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_restart_keeps_durable_things_only, s_setup_durable,
                                        sx_teardown),
        cmocka_unit_test_setup_teardown(test_torn_tail_is_cut_and_reported, s_setup_durable,
                                        sx_teardown),
        cmocka_unit_test_setup_teardown(test_restart_keeps_delivery_counts_and_delays,
                                        s_setup_durable, sx_teardown),
        cmocka_unit_test_setup_teardown(test_restart_keeps_death_records_and_deadlines,
                                        s_setup_durable, sx_teardown),
        cmocka_unit_test_setup_teardown(test_crash_keeps_every_confirmed_message, s_setup_durable,
                                        sx_teardown),
    };
    return cmocka_run_group_tests_name("integration.durability", tests, NULL, NULL);
}
