// tests/unit/test_client_io.c - libhopper's socket sharing (sdk/client_io.h): the user thread
// sends and receives on the socket itself, the I/O thread keeps the connection alive and reads
// for it while it is away, and publishes are batched only when they come fast.
#include "client_io.h"
#include "fake_broker.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

typedef struct {
    int confirms;
    uint64_t seq;
    bool multiple, ok;
} s_log_t;

static void
s_on_confirm(hop_client_t *client, uint64_t seq, bool multiple, bool ok, int code, const char *text,
             void *arg)
{
    (void)client, (void)code, (void)text;
    s_log_t *log = arg;
    log->confirms++;
    log->seq = seq;
    log->multiple = multiple;
    log->ok = ok;
}

static bool
s_stashed(hop_client_t *client)
{
    pthread_mutex_lock(&client->io->lock);
    bool any = client->io->stash_head != NULL;
    pthread_mutex_unlock(&client->io->lock);
    return any;
}

static void
test_what_arrives_while_the_user_is_away_is_read_for_it_in_order(void **state)
{
    fb_broker_t *fake = *state;
    hop_client_t *client = fb_connect(fake);
    s_log_t log = {0};
    assert_int_equal(hop_client_confirm_select(client), HOP_OK);
    hop_client_on_confirm(client, s_on_confirm, &log);
    for (int i = 0; i < 4; i++)
        assert_int_equal(hop_client_publish(client, "c", "hold", "m", 1, NULL), HOP_OK);
    assert_int_equal(hop_client_publish(client, "c", "all", "m", 1, NULL), HOP_OK);
    // No call for several heartbeat intervals (100 ms): the I/O thread reads the confirm (and
    // drops the broker's heartbeats) and keeps the connection alive with heartbeats of its own.
    int heartbeats = atomic_load(&fake->heartbeats);
    bool stashed = false;
    for (int i = 0; i < 100 && !stashed; i++) {
        fb_sleep_ms(20);
        stashed = s_stashed(client);
    }
    assert_true(stashed);
    assert_true(fb_wait_for(&fake->heartbeats, heartbeats + 3, 5000));
    assert_int_equal(log.confirms, 0); // callbacks run only inside the application's calls
    uint64_t nacked = 99;
    assert_int_equal(hop_client_wait_confirms(client, 1000, &nacked), HOP_OK);
    assert_int_equal(nacked, 0);
    assert_int_equal(log.confirms, 1);
    assert_int_equal(log.seq, 5);
    assert_true(log.multiple && log.ok);
    assert_false(s_stashed(client));
    assert_int_equal(atomic_load(&fake->hellos), 1); // still the first connection
    hop_client_destroy(&client);
}

static size_t
s_stash_count(hop_client_t *client)
{
    pthread_mutex_lock(&client->io->lock);
    size_t n = client->io->stash_count;
    pthread_mutex_unlock(&client->io->lock);
    return n;
}

// A user thread away for a while (a slow handler) while deliveries pour in: the I/O thread
// reads ahead at most HOP_IO_STASH_MAX of them, so the client's memory stays bounded and the
// rest push back through ZeroMQ; the connection stays alive; what was read comes in order.
static void
test_read_ahead_for_an_absent_user_is_bounded(void **state)
{
    fb_broker_t *fake = *state;
    hop_client_t *client = fb_connect(fake);
    assert_int_equal(hop_client_publish(client, "c", "flood", "m", 1, NULL), HOP_OK);
    int heartbeats = atomic_load(&fake->heartbeats);
    // The read-ahead fills up (how far depends on how much the fake's ROUTER got through
    // before the pipe was full), and never goes past its bound while the user is away.
    size_t most = 0;
    for (int i = 0; i < 250 && most < HOP_IO_STASH_MAX / 2; i++) {
        fb_sleep_ms(20);
        most = s_stash_count(client);
    }
    assert_true(most >= HOP_IO_STASH_MAX / 2);
    for (int i = 0; i < 25; i++) { // 500 ms more: five heartbeat intervals
        fb_sleep_ms(20);
        size_t n = s_stash_count(client);
        most = n > most ? n : most;
    }
    assert_true(most <= HOP_IO_STASH_MAX);
    assert_true(fb_wait_for(&fake->heartbeats, heartbeats + 3, 5000)); // still alive
    uint64_t last = 0;
    size_t got = 0;
    hop_delivery_t *d = NULL;
    while (hop_client_receive(client, &d, 500) == HOP_OK) {
        assert_true(d->tag > last);
        last = d->tag;
        got++;
        hop_delivery_destroy(&d);
    }
    assert_true(got >= most);
    hop_client_destroy(&client);
}

static void
test_a_lone_publish_is_sent_from_the_callers_thread(void **state)
{
    fb_broker_t *fake = *state;
    hop_client_t *client = fb_connect(fake);
    assert_int_equal(hop_client_confirm_select(client), HOP_OK);
    // The I/O thread is not involved: the message is written to the socket when publish
    // returns, and nothing waits in the outbox.
    assert_int_equal(hop_client_publish(client, "c", "ok", "m", 1, NULL), HOP_OK);
    pthread_mutex_lock(&client->io->lock);
    assert_false(hop_io_pending(client->io));
    pthread_mutex_unlock(&client->io->lock);
    assert_int_equal(hop_client_wait_confirms(client, 1000, NULL), HOP_OK);
    hop_wire_t w;
    fb_pub(fake, 0, &w);
    assert_int_equal(w.seq, 1);
    assert_false(fake->pub_batched[0]);
    hop_client_destroy(&client);
}

// Publishes burst message seq with a 4-byte body (the sequence number, big-endian).
static void
s_publish_seq(hop_client_t *client, uint32_t seq)
{
    uint8_t be[4] = {(uint8_t)(seq >> 24), (uint8_t)(seq >> 16), (uint8_t)(seq >> 8), (uint8_t)seq};
    assert_int_equal(hop_client_publish(client, "burst", "k", be, sizeof be, NULL), HOP_OK);
}

// Publishes spaced wider than HOP_IO_PACE_NS each go at once, as they are: an idle client adds
// no latency and no batching.
static void
test_spaced_publishes_go_alone(void **state)
{
    fb_broker_t *fake = *state;
    hop_client_t *client = fb_connect(fake);
    for (uint32_t seq = 0; seq < 20; seq++) {
        s_publish_seq(client, seq);
        fb_sleep_ms(2);
    }
    assert_true(fb_wait_for(&fake->seen, 20, 5000));
    for (uint32_t seq = 0; seq < 20; seq++)
        assert_int_equal(fake->how[seq], 1);
    assert_int_equal(atomic_load(&fake->batches), 0);
    hop_client_destroy(&client);
}

// A burst fills the outbox; the caller then makes no call at all. The I/O thread sends what
// is left, in order, as batches.
static void
test_a_burst_left_behind_is_sent_by_the_io_thread(void **state)
{
    fb_broker_t *fake = *state;
    hop_client_t *client = fb_connect(fake);
    for (uint32_t seq = 0; seq < FB_BURST; seq++)
        s_publish_seq(client, seq);
    assert_true(fb_wait_for(&fake->seen, FB_BURST, 10000));
    assert_int_equal(atomic_load(&fake->out_of_order), 0);
    assert_true(atomic_load(&fake->batches) > 0);
    hop_client_destroy(&client);
}

// A burst and then a wait: the wait sends the outbox itself and tells the I/O thread to stop
// looking at it (else it would wake every few hundred microseconds while the wait holds the
// socket).
static void
test_a_wait_after_a_burst_stops_the_io_thread_watching(void **state)
{
    fb_broker_t *fake = *state;
    hop_client_t *client = fb_connect(fake);
    for (uint32_t seq = 0; seq < FB_BURST; seq++)
        s_publish_seq(client, seq);
    hop_delivery_t *d = NULL;
    assert_int_equal(hop_client_receive(client, &d, 50), HOP_ETIMEOUT);
    pthread_mutex_lock(&client->io->lock);
    assert_false(hop_io_pending(client->io));
    assert_false(atomic_load(&client->io->watching));
    pthread_mutex_unlock(&client->io->lock);
    assert_true(fb_wait_for(&fake->seen, FB_BURST, 10000));
    hop_client_destroy(&client);
}

// CPU time the client's I/O thread has used, in ms.
static double
s_io_cpu_ms(hop_client_t *client)
{
    clockid_t clock;
    assert_int_equal(pthread_getcpuclockid(client->io->thread, &clock), 0);
    struct timespec ts;
    assert_int_equal(clock_gettime(clock, &ts), 0);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

// The socket full, the user thread away: the I/O thread waits for the socket to be writable.
// Then a user thread takes the socket (a call) and the socket drains. The I/O thread must nap
// while the user thread holds the socket, not wait on it: a writable socket ended every nap at
// once, and the I/O thread spun against a busy publisher, taking half a core from it.
static void
test_the_io_thread_naps_while_a_caller_holds_a_writable_socket(void **state)
{
    fb_broker_t *fake = *state;
    hop_client_t *client = fb_connect(fake);
    static char body[100];
    memset(body, 'x', sizeof body);
    atomic_store(&fake->paused, true);
    bool full = false;
    for (int round = 0; round < 2000 && !full; round++) {
        for (int i = 0; i < 256; i++)
            assert_int_equal(hop_client_publish(client, "flat", "k", body, sizeof body, NULL),
                             HOP_OK);
        pthread_mutex_lock(&client->io->lock);
        full = hop_zmtp_pending(client->io->conn) || client->io->out_frames > 0;
        pthread_mutex_unlock(&client->io->lock);
    }
    assert_true(full);
    fb_sleep_ms(20); // the I/O thread finds the outbox and waits for the socket
    pthread_mutex_lock(&client->io->lock);
    atomic_store(&fake->paused, false); // the socket drains while "the user thread" holds it
    double before = s_io_cpu_ms(client);
    fb_sleep_ms(300);
    double used = s_io_cpu_ms(client) - before;
    pthread_mutex_unlock(&client->io->lock);
    // Napping, it wakes a few thousand times a second at most: a few percent of a core.
    assert_true(used < 100);
    hop_client_destroy(&client);
}

// A broker that reads nothing but is alive (it heartbeats): the outbox fills to its bound, and then
// a publish waits for the client's timeout and fails, the message not sent, instead of the client's
// memory growing without end. Once the broker reads again, everything accepted before arrives, and
// publishing goes on.
static void
test_the_outbox_is_bounded_when_the_broker_reads_nothing(void **state)
{
    fb_broker_t *fake = *state;
    fake->max_message = 8000;
    hop_client_t *client = fb_connect(fake);
    int before = atomic_load(&fake->count[HOP_CMD_PUBLISH]);
    atomic_store(&fake->deaf, true);
    static char body[4000];
    memset(body, 'x', sizeof body);
    int accepted = 0, rc = HOP_OK;
    while (accepted < 50000 &&
           (rc = hop_client_publish(client, "flat", "k", body, sizeof body, NULL)) == HOP_OK) {
        accepted++;
        pthread_mutex_lock(&client->io->lock);
        size_t held = client->io->box_bytes;
        pthread_mutex_unlock(&client->io->lock);
        assert_true(held <= HOP_IO_BOX_MAX + sizeof body + 64);
    }
    assert_int_equal(rc, HOP_ETIMEOUT);
    assert_non_null(strstr(hop_client_error(client), "read nothing more for 1000 ms"));
    atomic_store(&fake->deaf, false);
    assert_int_equal(hop_client_publish(client, "flat", "k", body, sizeof body, NULL), HOP_OK);
    assert_true(fb_wait_for(&fake->count[HOP_CMD_PUBLISH], before + accepted + 1, 10000));
    fb_sleep_ms(50);
    assert_int_equal(atomic_load(&fake->count[HOP_CMD_PUBLISH]), before + accepted + 1);
    hop_client_destroy(&client);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_what_arrives_while_the_user_is_away_is_read_for_it_in_order, fb_setup,
            fb_teardown),
        cmocka_unit_test_setup_teardown(test_spaced_publishes_go_alone, fb_setup, fb_teardown),
        cmocka_unit_test_setup_teardown(test_a_burst_left_behind_is_sent_by_the_io_thread, fb_setup,
                                        fb_teardown),
        cmocka_unit_test_setup_teardown(test_a_wait_after_a_burst_stops_the_io_thread_watching,
                                        fb_setup, fb_teardown),
        cmocka_unit_test_setup_teardown(test_a_lone_publish_is_sent_from_the_callers_thread,
                                        fb_setup, fb_teardown),
        cmocka_unit_test_setup_teardown(test_read_ahead_for_an_absent_user_is_bounded, fb_setup,
                                        fb_teardown),
        cmocka_unit_test_setup_teardown(test_the_outbox_is_bounded_when_the_broker_reads_nothing,
                                        fb_setup, fb_teardown),
        cmocka_unit_test_setup_teardown(
            test_the_io_thread_naps_while_a_caller_holds_a_writable_socket, fb_setup, fb_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
