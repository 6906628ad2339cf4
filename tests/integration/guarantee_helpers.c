// tests/integration/guarantee_helpers.c - what the raw-protocol guarantee tests share (see
// guarantee_helpers.h).
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "guarantee_helpers.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

// ---------------------------------------------------------------------------------------
// Helpers: requests

uint64_t
gx_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

// Sends the request being built on c and waits for its reply. Returns 0 for a success reply or
// the error code; the reply's text (if any) goes to text.
int
gx_call(raw_t *c, char *text, size_t size)
{
    raw_msg_t *m = raw_call(c);
    if (!m)
        fail_msg("no reply to request %llu within %d ms", (unsigned long long)raw_last_id(c),
                 RAW_TIMEOUT_MS);
    int code = 0;
    if (m->wire.cmd == HOP_CMD_ERROR) {
        code = (int)m->wire.code;
        assert_int_equal(m->wire.id, raw_last_id(c));
    }
    if (text)
        raw_str(m->wire.text, text, size);
    raw_msg_destroy(&m);
    return code;
}

// Begins a queue.declare of queue; add arguments to the encoder, then gx_call.
hop_enc_t *
gx_qdecl(raw_t *c, const char *queue)
{
    hop_enc_t *enc = raw_begin(c, HOP_CMD_QUEUE_DECLARE);
    hop_enc_cstr(enc, "queue", queue);
    return enc;
}

// consume with a given tag, prefetch and (when not 0) ack_timeout. Returns 0 or the error code.
int
gx_consume(raw_t *c, const char *queue, const char *tag, uint64_t prefetch, uint64_t ack_timeout)
{
    hop_enc_t *enc = raw_begin(c, HOP_CMD_CONSUME);
    hop_enc_cstr(enc, "queue", queue);
    hop_enc_cstr(enc, "consumer", tag);
    hop_enc_uint(enc, "prefetch", prefetch);
    if (ack_timeout)
        hop_enc_uint(enc, "ack_timeout", ack_timeout);
    return gx_call(c, NULL, 0);
}

// ack / nack / reject of tag without an id; requeue and delay are sent when >= 0.
void
gx_settle(raw_t *c, hop_cmd_t cmd, uint64_t tag, int requeue, long delay)
{
    hop_enc_t *enc = raw_begin_noid(c, cmd);
    hop_enc_uint(enc, "tag", tag);
    if (requeue >= 0)
        hop_enc_bool(enc, "requeue", requeue != 0);
    if (delay >= 0)
        hop_enc_uint(enc, "delay", (uint64_t)delay);
    assert_int_equal(raw_send_enc(c, NULL, 0), 0);
}

// ---------------------------------------------------------------------------------------
// Helpers: what comes back

raw_msg_t *
gx_get_ok(raw_t *c, const char *queue, bool no_ack)
{
    raw_msg_t *m = raw_get(c, queue, no_ack);
    if (m->wire.cmd != HOP_CMD_GET_OK)
        fail_msg("get from '%s': expected get-ok, got %s %d", queue, hop_cmd_name(m->wire.cmd),
                 (int)m->wire.code);
    return m;
}

void
gx_expect_empty(raw_t *c, const char *queue)
{
    raw_msg_t *m = raw_get(c, queue, true);
    char buf[256];
    if (m->wire.cmd != HOP_CMD_GET_EMPTY)
        fail_msg("get from '%s': expected get-empty, got %s '%s'", queue, hop_cmd_name(m->wire.cmd),
                 raw_body(m, buf, sizeof buf));
    raw_msg_destroy(&m);
}

void
gx_expect_props(const raw_msg_t *m, const char *message_id)
{
    assert_true(m->wire.has & HOP_F_PROPS);
    char buf[64];
    assert_true(
        harness_map_str(m->wire.props.ptr, m->wire.props.len, "content_type", buf, sizeof buf));
    assert_string_equal(buf, "text/plain");
    assert_true(
        harness_map_str(m->wire.props.ptr, m->wire.props.len, "message_id", buf, sizeof buf));
    assert_string_equal(buf, message_id);
}

void
gx_expect_str(hop_str_t s, const char *text)
{
    char buf[300];
    if (!raw_str_is(s, text))
        fail_msg("expected '%s', got '%s'", text, raw_str(s, buf, sizeof buf));
}

bool
gx_queue_listed(raw_t *c, const char *queue)
{
    raw_msg_t *list = raw_list(c, "queues");
    assert_non_null(list);
    const void *item;
    size_t size;
    bool found =
        harness_items_find(list->wire.items.ptr, list->wire.items.len, "name", queue, &item, &size);
    raw_msg_destroy(&list);
    return found;
}

// Waiting for a queue counter (list queues does not count as using a queue).
typedef struct {
    raw_t *c;
    const char *queue, *field;
    uint64_t value;
} s_qwait_t;

static bool
s_qfield_reached(void *arg)
{
    s_qwait_t *w = arg;
    uint64_t v = 0;
    return raw_queue_stat(w->c, w->queue, w->field, &v) && v >= w->value;
}

// Waits until queue's field reaches value (at most timeout_ms); then it must equal value.
// Returns the monotonic ms at which it was seen.
uint64_t
gx_wait_qfield(raw_t *c, const char *queue, const char *field, uint64_t value, int timeout_ms)
{
    s_qwait_t w = {c, queue, field, value};
    if (!harness_wait_until(s_qfield_reached, &w, timeout_ms))
        fail_msg("queue '%s': %s is %llu, not %llu, after %d ms", queue, field,
                 (unsigned long long)raw_qstat(c, queue, field), (unsigned long long)value,
                 timeout_ms);
    uint64_t at = harness_now_ms();
    assert_int_equal(raw_qstat(c, queue, field), value);
    return at;
}

bool
gx_queue_gone(void *arg)
{
    gx_gone_t *g = arg;
    return !gx_queue_listed(g->c, g->queue);
}

// ---------------------------------------------------------------------------------------
// Helpers: publisher confirms

static gx_confirms_t s_conf; // one per test (reset by gx_confirms_reset)

gx_confirms_t *
gx_confirms_reset(void)
{
    memset(&s_conf, 0, sizeof s_conf);
    return &s_conf;
}

// The next sequence number to publish with.
uint64_t
gx_next_seq(gx_confirms_t *t)
{
    assert_true(t->published < SEQ_MAX);
    return ++t->published;
}

// Applies one confirm: it must name a published sequence no confirm covered yet; a multiple
// one covers every sequence up to it that was still pending (PROTOCOL.md 4.4).
void
gx_confirm_apply(gx_confirms_t *t, const raw_msg_t *m)
{
    assert_int_equal(m->wire.cmd, HOP_CMD_CONFIRM);
    assert_true(m->wire.has & HOP_F_SEQ);
    uint64_t seq = m->wire.seq;
    if (seq == 0 || seq > t->published)
        fail_msg("confirm of seq %llu, which was never published (last %llu)",
                 (unsigned long long)seq, (unsigned long long)t->published);
    if (t->state[seq] != GX_PENDING)
        fail_msg("seq %llu confirmed twice (%s, then %s)", (unsigned long long)seq,
                 t->state[seq] == GX_ACK ? "ack" : "nack", m->wire.nack ? "nack" : "ack");
    if (m->wire.nack) {
        assert_false(m->wire.multiple);
        assert_true(m->wire.has & HOP_F_CODE);
        assert_true((m->wire.has & HOP_F_TEXT) && m->wire.text.len > 0);
        t->state[seq] = GX_NACK;
        t->code[seq] = m->wire.code;
        t->nacks++;
        return;
    }
    for (uint64_t s = m->wire.multiple ? 1 : seq; s <= seq; s++)
        if (t->state[s] == GX_PENDING) {
            t->state[s] = GX_ACK;
            t->acks++;
        }
}

// Waits until every published sequence is confirmed, one way or the other.
void
gx_confirms_wait(raw_t *c, gx_confirms_t *t)
{
    while (t->acks + t->nacks < t->published) {
        raw_msg_t *m = raw_next(c, HOP_CMD_CONFIRM, WAIT_MS);
        if (!m)
            fail_msg("confirms: %zu acks + %zu nacks of %llu published after %d ms", t->acks,
                     t->nacks, (unsigned long long)t->published, WAIT_MS);
        gx_confirm_apply(t, m);
        raw_msg_destroy(&m);
    }
}

void
gx_expect_no_confirm(raw_t *c)
{
    raw_sync(c);
    assert_int_equal(raw_pending(c, HOP_CMD_CONFIRM), 0);
}

// ---------------------------------------------------------------------------------------
// Helpers: death records

// Reads the death records of a delivery, newest first. Returns how many (0 when absent).
int
gx_deaths(const raw_msg_t *m, gx_death_t *out)
{
    if (!(m->wire.has & HOP_F_DEATH))
        return 0;
    hop_mp_t mp;
    hop_mp_init(&mp, m->wire.death.ptr, m->wire.death.len);
    uint32_t n;
    assert_int_equal(hop_mp_array(&mp, &n), 0);
    assert_true(n <= DEATH_MAX);
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *start = mp.p;
        assert_int_equal(hop_mp_skip(&mp), 0);
        size_t size = (size_t)(mp.p - start);
        gx_death_t *d = &out[i];
        memset(d, 0, sizeof *d);
        assert_true(harness_map_str(start, size, "reason", d->reason, sizeof d->reason));
        assert_true(harness_map_str(start, size, "queue", d->queue, sizeof d->queue));
        assert_true(harness_map_str(start, size, "exchange", d->exchange, sizeof d->exchange));
        assert_true(harness_map_str(start, size, "key", d->key, sizeof d->key));
        assert_true(harness_map_uint(start, size, "time", &d->time));
        assert_true(harness_map_uint(start, size, "count", &d->count));
    }
    assert_true(hop_mp_at_end(&mp));
    return (int)n;
}

// Checks one death record; its time must lie within wall_lo..wall_hi (ms since the epoch).
void
gx_check_death(const gx_death_t *d, const char *reason, const char *queue, const char *exchange,
               const char *key, uint64_t count, uint64_t wall_lo, uint64_t wall_hi)
{
    assert_string_equal(d->reason, reason);
    assert_string_equal(d->queue, queue);
    assert_string_equal(d->exchange, exchange);
    assert_string_equal(d->key, key);
    if (d->count != count)
        fail_msg("death record %s/%s: count %llu, expected %llu", reason, queue,
                 (unsigned long long)d->count, (unsigned long long)count);
    if (d->time < wall_lo || d->time > wall_hi)
        fail_msg("death record %s/%s: time %llu outside %llu..%llu", reason, queue,
                 (unsigned long long)d->time, (unsigned long long)wall_lo,
                 (unsigned long long)wall_hi);
}

// ---------------------------------------------------------------------------------------
// Helpers: consumers

uint64_t
gx_consumer_ack_timeout(raw_t *c, const char *consumer)
{
    raw_msg_t *list = raw_list(c, "consumers");
    assert_non_null(list);
    uint64_t v = 0;
    bool found = harness_items_uint(list->wire.items.ptr, list->wire.items.len, "consumer",
                                    consumer, "ack_timeout", &v);
    raw_msg_destroy(&list);
    if (!found)
        fail_msg("consumer '%s' not listed with an ack_timeout", consumer);
    return v;
}
