// tests/integration/test_paging.c - durable queues larger than their in-memory window (issue 5,
// bus/paging.c), against a real hopperd run with --queue-window 16: past 16 ready messages,
// persistent ones stay on disk and are read back as the queue drains. Order, exactly-once,
// transient messages among spilled ones, kill -9 with acks, requeues and delays of spilled
// messages, peek and purge past the window, TTL expiry of spilled messages, and deletion.
#define _GNU_SOURCE // memmem
#include "sdk_helpers.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define WINDOW "16"
#define N      400 // messages per test: 25 windows

static const char *const s_args[] = {"--queue-window", WINDOW, NULL};
// Small segments: a purged queue's old records are reclaimed within the test.
static const char *const s_small_args[] = {"--queue-window", WINDOW, "--segment-size", "4096",
                                           NULL};

static int
s_start(void **state, const char *const *args)
{
    harness_opts_t opts = {.heartbeat_ms = 200, .log_level = "warn", .args = args};
    return sx_start(state, &opts);
}

static int
s_setup(void **state)
{
    return s_start(state, s_args);
}

static int
s_setup_small(void **state)
{
    return s_start(state, s_small_args);
}

static hop_client_t *
s_client(fx_t *fx, const char *name)
{
    hop_client_t *c = sx_client(fx, name, 200);
    CHECK(c, hop_client_confirm_select(c));
    return c;
}

// Publishes ids [from, to) to queue; persistent unless every `transient_every`-th (0: none).
static void
s_publish(hop_client_t *c, const char *queue, long from, long to, long transient_every)
{
    for (long i = from; i < to; i++) {
        char body[32];
        snprintf(body, sizeof body, "%ld", i);
        hop_publish_opts_t opts = {.persistent = !(transient_every && i % transient_every == 0)};
        CHECK(c, hop_client_publish_ex(c, "", queue, body, strlen(body), NULL, &opts, NULL));
    }
    uint64_t nacked = 0;
    CHECK(c, hop_client_wait_confirms(c, WAIT_MS, &nacked));
    assert_int_equal(nacked, 0);
}

static uint64_t
s_status(hop_client_t *c, const char *key)
{
    void *map = NULL;
    size_t size = 0;
    CHECK(c, hop_client_status(c, &map, &size));
    uint64_t v = 0;
    if (!harness_map_uint(map, size, key, &v))
        fail_msg("status has no '%s'", key);
    free(map);
    return v;
}

typedef struct {
    hop_client_t *c;
    uint64_t want;
} s_records_t;

static bool
s_records_at_most(void *arg)
{
    s_records_t *r = arg;
    return s_status(r->c, "message_records") <= r->want;
}

// Receives the next delivery, checks it is message `want`, acks it; returns whether it was
// flagged redelivered.
static bool
s_take(hop_client_t *c, long want)
{
    hop_delivery_t *d = sx_receive(c);
    if (sx_body_seq(d) != want)
        fail_msg("expected message %ld, got %ld", want, sx_body_seq(d));
    bool redelivered = d->redelivered;
    CHECK(c, hop_client_ack(c, d->tag, false));
    hop_delivery_destroy(&d);
    return redelivered;
}

// Consumes n messages from queue and checks they are ids from, from+1, ... in order.
static void
s_drain_in_order(hop_client_t *c, const char *queue, long from, long n)
{
    CHECK(c, hop_client_consume(c, queue, "drain", 50, 0, NULL, 0));
    for (long i = 0; i < n; i++)
        s_take(c, from + i);
    CHECK(c, hop_client_cancel(c, "drain"));
    sx_expect_nothing(c);
}

// Past the window, persistent messages give up their memory once durable; transient ones
// among them keep it. Everything comes back in order, once.
static void
test_spilled_queue_keeps_order_and_memory_stays_small(void **state)
{
    fx_t *fx = *state;
    hop_client_t *c = s_client(fx, "pub");
    CHECK(c, hop_client_declare_queue(c, "big", HOP_DURABLE, NULL, 0));
    s_publish(c, "big", 0, N, 10); // every 10th transient
    assert_int_equal(sx_queue_stat(c, "big", "messages_ready"), N);
    // The window (16), the transient ones past it (about N/10), nothing else.
    s_records_t r = {c, 16 + N / 10 + 2};
    if (!harness_wait_until(s_records_at_most, &r, WAIT_MS))
        fail_msg("message_records stays at %llu (want <= %llu)",
                 (unsigned long long)s_status(c, "message_records"), (unsigned long long)r.want);
    assert_true(s_status(c, "paged_out") >= N - N / 10 - 16 - 2);
    // What an operator sees: the CLI's column of messages held on disk only.
    char *argv[] = {(char *)harness_cli_path(),
                    "--broker",
                    (char *)harness_broker_endpoint(fx->broker),
                    "list",
                    "queues",
                    "--columns",
                    "name,messages_paged",
                    NULL};
    harness_run_t run;
    assert_int_equal(harness_run(argv, NULL, 0, WAIT_MS, &run), 0);
    unsigned long paged = 0;
    const char *row = strstr(run.out, "\nbig ");
    assert_non_null(row);
    assert_int_equal(sscanf(row, " big %lu", &paged), 1);
    assert_true(paged >= N - N / 10 - 16 - 2 && paged < N);
    harness_run_fini(&run);
    s_drain_in_order(c, "big", 0, N);
    assert_int_equal(sx_queue_stat(c, "big", "messages_ready"), 0);
    assert_true(s_status(c, "paged_in") >= N - N / 10 - 16 - 2);
}

// basic.get and peek read spilled messages back too; peek changes nothing.
static void
test_get_and_peek_past_the_window(void **state)
{
    fx_t *fx = *state;
    hop_client_t *c = s_client(fx, "pub");
    CHECK(c, hop_client_declare_queue(c, "pk", HOP_DURABLE, NULL, 0));
    s_publish(c, "pk", 0, 100, 0);
    s_records_t r = {c, 16 + 2};
    assert_true(harness_wait_until(s_records_at_most, &r, WAIT_MS));
    hop_delivery_t **items = NULL;
    size_t n = 0;
    CHECK(c, hop_client_peek(c, "pk", 60, &items, &n));
    assert_int_equal(n, 60);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(sx_body_seq(items[i]), (long)i);
    hop_client_peek_free(&items, n);
    assert_int_equal(sx_queue_stat(c, "pk", "messages_ready"), 100);
    for (long i = 0; i < 100; i++) {
        hop_delivery_t *d = NULL;
        CHECK(c, hop_client_get(c, "pk", 0, &d));
        assert_non_null(d);
        assert_int_equal(sx_body_seq(d), i);
        CHECK(c, hop_client_ack(c, d->tag, false));
        hop_delivery_destroy(&d);
    }
}

// A connection of the test's own (not the fixture's), to be closed mid-test.
static hop_client_t *
s_connect(fx_t *fx, const char *name)
{
    hop_client_t *c = hop_client_new();
    hop_client_set_heartbeat(c, 200);
    hop_client_set_name(c, name);
    CHECK(c, hop_client_connect(c, harness_broker_endpoint(fx->broker)));
    return c;
}

// kill -9 with a spilled backlog: acks of messages that are past the window at replay, a
// requeued message and a delayed one (UPDATE records of spilled messages) come back right.
static void
test_restart_with_spilled_acks_requeues_and_delays(void **state)
{
    fx_t *fx = *state;
    hop_client_t *c = s_client(fx, "pub");
    CHECK(c, hop_client_declare_queue(c, "crashy", HOP_DURABLE, NULL, 0));
    s_publish(c, "crashy", 0, N, 0);
    s_records_t r = {c, 16 + 2};
    assert_true(harness_wait_until(s_records_at_most, &r, WAIT_MS));
    // Take 0..59: ack all but 50 (requeued), 51 (delayed by a minute) and 52 (left unacked,
    // requeued when the connection closes).
    // basic.get, so that nothing but these 60 is delivered.
    hop_client_t *w = s_connect(fx, "worker");
    hop_delivery_t *got[60];
    for (long i = 0; i < 60; i++) {
        got[i] = NULL;
        CHECK(w, hop_client_get(w, "crashy", 0, &got[i]));
        assert_non_null(got[i]);
        assert_int_equal(sx_body_seq(got[i]), i);
    }
    for (long i = 0; i < 60; i++) {
        if (i == 50)
            CHECK(w, hop_client_nack(w, got[i]->tag, false, true));
        else if (i == 51)
            CHECK(w, hop_client_retry_later(w, got[i]->tag, 60000));
        else if (i != 52)
            CHECK(w, hop_client_ack(w, got[i]->tag, false));
        hop_delivery_destroy(&got[i]);
    }
    sx_sync(w);
    hop_client_destroy(&w);
    r.want = 16 + 3;
    if (!harness_wait_until(s_records_at_most, &r, WAIT_MS))
        fail_msg("message_records stays at %llu (want <= %llu)",
                 (unsigned long long)s_status(c, "message_records"), (unsigned long long)r.want);
    assert_int_equal(sx_queue_stat(c, "crashy", "messages_delayed"), 1);
    harness_pause_ms(300); // the ACK and UPDATE records are durable
    assert_int_equal(harness_broker_kill(fx->broker), 0);
    assert_int_equal(harness_broker_restart(fx->broker), 0);

    hop_client_t *d = s_client(fx, "after");
    assert_int_equal(sx_queue_stat(d, "crashy", "messages_ready"), N - 58);
    assert_int_equal(sx_queue_stat(d, "crashy", "messages_delayed"), 1);
    // 50 and 52 first (their original places), flagged redelivered, then 60.. in order.
    CHECK(d, hop_client_consume(d, "crashy", "after", 50, 0, NULL, 0));
    for (long i = 50; i < N; i++) {
        if (i == 51 || (i > 52 && i < 60))
            continue;
        assert_true(s_take(d, i)); // recovered: flagged redelivered
    }
    sx_expect_nothing(d); // 51 is still delayed
    assert_int_equal(sx_queue_stat(d, "crashy", "messages_delayed"), 1);
}

// Purge writes an ACK for every spilled message: after kill -9 the queue is still empty.
static void
test_purge_past_the_window_survives_a_restart(void **state)
{
    fx_t *fx = *state;
    hop_client_t *c = s_client(fx, "pub");
    CHECK(c, hop_client_declare_queue(c, "gone", HOP_DURABLE, NULL, 0));
    s_publish(c, "gone", 0, N, 7);
    s_records_t r = {c, 16 + N / 7 + 2};
    assert_true(harness_wait_until(s_records_at_most, &r, WAIT_MS));
    uint64_t purged = 0;
    CHECK(c, hop_client_purge_queue(c, "gone", &purged));
    assert_int_equal(purged, N);
    s_publish(c, "gone", N, N + 30, 0); // after the purge: these stay
    sx_sync(c);
    harness_pause_ms(300);
    assert_int_equal(harness_broker_kill(fx->broker), 0);
    assert_int_equal(harness_broker_restart(fx->broker), 0);
    hop_client_t *d = s_client(fx, "after");
    assert_int_equal(sx_queue_stat(d, "gone", "messages_ready"), 30);
    s_drain_in_order(d, "gone", N, 30);
}

// A purge is one record, not one per message: the declare again. Unacked messages survive it,
// bindings too, even once the segments holding the old declare and bindings are reclaimed.
static void
test_purge_keeps_unacked_and_bindings_across_reclaim(void **state)
{
    fx_t *fx = *state;
    hop_client_t *c = s_client(fx, "pub");
    CHECK(c, hop_client_declare_exchange(c, "px", "direct", HOP_DURABLE));
    CHECK(c, hop_client_declare_queue(c, "pq", HOP_DURABLE, NULL, 0));
    CHECK(c, hop_client_bind(c, "pq", "px", "k"));
    for (long i = 0; i < 200; i++) {
        char body[32];
        snprintf(body, sizeof body, "%ld", i);
        hop_publish_opts_t opts = {.persistent = true};
        CHECK(c, hop_client_publish_ex(c, "px", "k", body, strlen(body), NULL, &opts, NULL));
    }
    CHECK(c, hop_client_wait_confirms(c, WAIT_MS, NULL));
    uint64_t segments = s_status(c, "segments");
    assert_true(segments >= 3);
    hop_client_t *w = s_connect(fx, "holder");
    hop_delivery_t *held[2];
    for (int i = 0; i < 2; i++) {
        held[i] = NULL;
        CHECK(w, hop_client_get(w, "pq", 0, &held[i]));
        assert_int_equal(sx_body_seq(held[i]), i);
    }
    uint64_t purged = 0;
    CHECK(c, hop_client_purge_queue(c, "pq", &purged));
    assert_int_equal(purged, 198);
    for (long i = 1000; i < 1005; i++) {
        char body[32];
        snprintf(body, sizeof body, "%ld", i);
        hop_publish_opts_t opts = {.persistent = true};
        CHECK(c, hop_client_publish_ex(c, "px", "k", body, strlen(body), NULL, &opts, NULL));
    }
    CHECK(c, hop_client_wait_confirms(c, WAIT_MS, NULL));
    harness_pause_ms(1000); // the janitor deletes the dead segments
    assert_true(s_status(c, "segments") < segments);
    assert_int_equal(harness_broker_kill(fx->broker), 0);
    for (int i = 0; i < 2; i++)
        hop_delivery_destroy(&held[i]);
    hop_client_destroy(&w);
    assert_int_equal(harness_broker_restart(fx->broker), 0);

    hop_client_t *d = s_client(fx, "after");
    assert_int_equal(sx_queue_stat(d, "pq", "messages_ready"), 7);
    // The binding survived: a new publish through px arrives too.
    hop_publish_opts_t opts = {.persistent = true};
    CHECK(d, hop_client_publish_ex(d, "px", "k", "2000", 4, NULL, &opts, NULL));
    CHECK(d, hop_client_wait_confirms(d, WAIT_MS, NULL));
    long want[] = {0, 1, 1000, 1001, 1002, 1003, 1004, 2000};
    CHECK(d, hop_client_consume(d, "pq", "after", 50, 0, NULL, 0));
    for (size_t i = 0; i < 8; i++)
        s_take(d, want[i]);
    sx_expect_nothing(d);
}

// Flips one bit inside the first occurrence of text in the broker's segment files (the body of
// one message record). Fails the test when it is not found.
static void
s_flip_in_log(fx_t *fx, const char *text)
{
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/segments", harness_broker_data_dir(fx->broker));
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *de;
    bool done = false;
    while (!done && (de = readdir(d))) {
        if (!strstr(de->d_name, ".log"))
            continue;
        char path[1400];
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        int fd = open(path, O_RDWR);
        assert_true(fd >= 0);
        struct stat st;
        assert_int_equal(fstat(fd, &st), 0);
        char *buf = malloc((size_t)st.st_size + 1);
        assert_non_null(buf);
        assert_int_equal(pread(fd, buf, (size_t)st.st_size, 0), st.st_size);
        buf[st.st_size] = '\0';
        char *at = memmem(buf, (size_t)st.st_size, text, strlen(text));
        if (at) {
            char c = (char)(at[strlen(text) - 1] ^ 0x01);
            assert_int_equal(pwrite(fd, &c, 1, at - buf + (off_t)strlen(text) - 1), 1);
            done = true;
        }
        free(buf);
        close(fd);
    }
    closedir(d);
    if (!done)
        fail_msg("'%s' is not in the log", text);
}

// Publishes 100 messages "rot-NNN" (persistent) to queue.
static void
s_publish_rot(hop_client_t *c, const char *queue)
{
    for (int i = 0; i < 100; i++) {
        char body[32];
        snprintf(body, sizeof body, "rot-%03d", i);
        hop_publish_opts_t opts = {.persistent = true};
        CHECK(c, hop_client_publish_ex(c, "", queue, body, strlen(body), NULL, &opts, NULL));
    }
    CHECK(c, hop_client_wait_confirms(c, WAIT_MS, NULL));
}

// Drains queue: every "rot-NNN" but `lost` comes, in order, never a damaged body.
static void
s_drain_rot(hop_client_t *c, const char *queue, int lost)
{
    CHECK(c, hop_client_consume(c, queue, "rot", 50, 0, NULL, 0));
    for (int i = 0; i < 100; i++) {
        if (i == lost)
            continue;
        char want[32];
        snprintf(want, sizeof want, "rot-%03d", i);
        hop_delivery_t *m = sx_receive(c);
        if (!sx_body_is(m, want))
            fail_msg("expected %s, got '%.*s'", want, (int)m->body_size, (const char *)m->body);
        CHECK(c, hop_client_ack(c, m->tag, false));
        hop_delivery_destroy(&m);
    }
    sx_expect_nothing(c);
}

// A bit flipped in a middle record while the broker is down: replay detects it by its
// checksum and skips that message; the others come back; the broker says so in its log.
static void
test_corrupt_record_is_skipped_at_replay(void **state)
{
    fx_t *fx = *state;
    hop_client_t *c = s_client(fx, "pub");
    CHECK(c, hop_client_declare_queue(c, "rot", HOP_DURABLE, NULL, 0));
    s_publish_rot(c, "rot");
    assert_int_equal(harness_broker_stop(fx->broker, WAIT_MS), 0);
    s_flip_in_log(fx, "rot-040");
    assert_int_equal(harness_broker_restart(fx->broker), 0);
    hop_client_t *d = s_client(fx, "after");
    assert_int_equal(sx_queue_stat(d, "rot", "messages_ready"), 99);
    s_drain_rot(d, "rot", 40);
}

// A bit flipped in a spilled record while the broker runs (the disk rots): reading it back
// fails its checksum; that message is lost and counted, the others are delivered.
static void
test_corrupt_spilled_record_is_not_delivered(void **state)
{
    fx_t *fx = *state;
    hop_client_t *c = s_client(fx, "pub");
    CHECK(c, hop_client_declare_queue(c, "rot2", HOP_DURABLE, NULL, 0));
    s_publish_rot(c, "rot2");
    s_records_t r = {c, 16 + 2};
    assert_true(harness_wait_until(s_records_at_most, &r, WAIT_MS));
    s_flip_in_log(fx, "rot-070");
    s_drain_rot(c, "rot2", 70);
    assert_int_equal(s_status(c, "page_errors"), 1);
    assert_int_equal(sx_queue_stat(c, "rot2", "messages_ready"), 0);
}

// A priority queue spills each level on its own: past the windows, after kill -9 too, the
// highest priority still goes first, each level in publish order.
static void
test_priority_queue_spills_per_level(void **state)
{
    fx_t *fx = *state;
    hop_client_t *c = s_client(fx, "pub");
    hop_queue_args_t args = {.max_priority = 2};
    CHECK(c, hop_client_declare_queue_args(c, "prio", HOP_DURABLE, &args, NULL, 0, NULL, NULL));
    for (long i = 0; i < 300; i++) {
        char body[32];
        snprintf(body, sizeof body, "%ld", i);
        hop_publish_opts_t opts = {.persistent = true, .priority = (uint8_t)(i % 3)};
        CHECK(c, hop_client_publish_ex(c, "", "prio", body, strlen(body), NULL, &opts, NULL));
    }
    CHECK(c, hop_client_wait_confirms(c, WAIT_MS, NULL));
    s_records_t r = {c, 3 * 16 + 2};
    assert_true(harness_wait_until(s_records_at_most, &r, WAIT_MS));
    assert_int_equal(harness_broker_kill(fx->broker), 0);
    assert_int_equal(harness_broker_restart(fx->broker), 0);
    hop_client_t *d = s_client(fx, "after");
    assert_int_equal(sx_queue_stat(d, "prio", "messages_ready"), 300);
    CHECK(d, hop_client_consume(d, "prio", "p", 1, 0, NULL, 0));
    for (long k = 0; k < 300; k++) // priority 2 (ids 2, 5, ...), then 1, then 0
        s_take(d, (k / 100 == 0 ? 2 : k / 100 == 1 ? 1 : 0) + 3 * (k % 100));
    sx_expect_nothing(d);
}

// TTL expiry goes on past the window with no consumer: spilled messages are read back and
// expired (dead-lettered) from the head.
static void
test_ttl_expires_spilled_messages(void **state)
{
    fx_t *fx = *state;
    hop_client_t *c = s_client(fx, "pub");
    CHECK(c, hop_client_declare_queue(c, "dead", HOP_DURABLE, NULL, 0));
    hop_queue_args_t args = {.message_ttl = 300, .dead_letter_exchange = ""};
    args.dead_letter_key = "dead";
    CHECK(c, hop_client_declare_queue_args(c, "short", HOP_DURABLE, &args, NULL, 0, NULL, NULL));
    s_publish(c, "short", 0, 200, 0);
    harness_pause_ms(1500);
    assert_int_equal(sx_queue_stat(c, "short", "messages_ready"), 0);
    assert_int_equal(sx_queue_stat(c, "dead", "messages_ready"), 200);
    s_drain_in_order(c, "dead", 0, 200);
}

// Deleting a spilled queue: gone after a restart, and its records are released.
static void
test_delete_spilled_queue(void **state)
{
    fx_t *fx = *state;
    hop_client_t *c = s_client(fx, "pub");
    CHECK(c, hop_client_declare_queue(c, "del", HOP_DURABLE, NULL, 0));
    s_publish(c, "del", 0, N, 0);
    uint64_t live = s_status(c, "disk_live_bytes");
    uint64_t deleted = 0;
    CHECK(c, hop_client_delete_queue(c, "del", 0, &deleted));
    assert_int_equal(deleted, N);
    assert_true(s_status(c, "disk_live_bytes") < live / 4);
    harness_pause_ms(300); // the deletion record is durable
    assert_int_equal(harness_broker_kill(fx->broker), 0);
    assert_int_equal(harness_broker_restart(fx->broker), 0);
    hop_client_t *d = s_client(fx, "after");
    uint64_t v;
    assert_false(sx_list_uint(d, "queues", "name", "del", "messages_ready", &v));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_spilled_queue_keeps_order_and_memory_stays_small,
                                        s_setup, sx_teardown),
        cmocka_unit_test_setup_teardown(test_get_and_peek_past_the_window, s_setup, sx_teardown),
        cmocka_unit_test_setup_teardown(test_restart_with_spilled_acks_requeues_and_delays, s_setup,
                                        sx_teardown),
        cmocka_unit_test_setup_teardown(test_purge_past_the_window_survives_a_restart, s_setup,
                                        sx_teardown),
        cmocka_unit_test_setup_teardown(test_purge_keeps_unacked_and_bindings_across_reclaim,
                                        s_setup_small, sx_teardown),
        cmocka_unit_test_setup_teardown(test_ttl_expires_spilled_messages, s_setup, sx_teardown),
        cmocka_unit_test_setup_teardown(test_priority_queue_spills_per_level, s_setup, sx_teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_record_is_skipped_at_replay, s_setup,
                                        sx_teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_spilled_record_is_not_delivered, s_setup,
                                        sx_teardown),
        cmocka_unit_test_setup_teardown(test_delete_spilled_queue, s_setup, sx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
