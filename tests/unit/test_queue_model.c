// tests/unit/test_queue_model.c - randomized model runs of a queue (plain, then with
// priorities, delays and removals), and purge and destroy with every list in use at once.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "queue_helpers.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

// A model run: random pushes, deliveries, failed sends, acks and requeues. Every message is
// in exactly one list, ready stays sorted by seq, and the counters agree.
static uint64_t s_rng = 0x9e3779b97f4a7c15ull;

static uint64_t
s_rand(void)
{
    s_rng ^= s_rng << 13;
    s_rng ^= s_rng >> 7;
    s_rng ^= s_rng << 17;
    return s_rng;
}

// Checks the ready list is sorted by seq, with consistent links.
static void
s_assert_sorted(const hop_list_t *list)
{
    size_t n = 0;
    const hop_entry_t *prev = NULL;
    for (const hop_entry_t *e = list->head; e; prev = e, e = e->next, n++) {
        assert_ptr_equal(e->prev, prev);
        assert_true(!prev || prev->seq < e->seq);
    }
    assert_ptr_equal(list->tail, prev);
    assert_int_equal(n, list->size);
}

static void
test_random_operations_never_lose_or_duplicate(void **state)
{
    (void)state;
    hop_queue_t *queue = qh_queue("q");
    enum { OPS = 20000, MAX = 4096 };
    hop_entry_t **out = calloc(MAX, sizeof *out); // unacked, in take order
    size_t n_out = 0, pushed = 0, settled = 0;
    uint64_t delivered = 0;
    for (int op = 0; op < OPS; op++) {
        unsigned r = (unsigned)(s_rand() % 100);
        if (r < 35 && pushed - settled < MAX) {
            hop_queue_push(queue, hop_msg_new(), 0, HOP_TTL_NONE);
            pushed++;
        } else if (r < 65) {
            hop_entry_t *e = hop_queue_take(queue, 0);
            if (e) {
                delivered++;
                if (s_rand() % 8 == 0) {
                    hop_queue_untake(queue, e); // the send failed
                    delivered--;
                } else
                    out[n_out++] = e;
            }
        } else if (r < 85 && n_out) {
            size_t i = (size_t)(s_rand() % n_out);
            hop_queue_settle(queue, out[i], true);
            out[i] = out[--n_out];
            settled++;
        } else if (n_out) {
            size_t i = (size_t)(s_rand() % n_out);
            hop_queue_requeue(queue, out[i]);
            out[i] = out[--n_out];
        }
        assert_int_equal(queue->unacked.size, n_out);
        assert_int_equal(queue->ready.size + n_out, pushed - settled);
        if (op % 64 == 0)
            s_assert_sorted(&queue->ready);
    }
    assert_int_equal(queue->delivered, delivered);
    assert_int_equal(queue->acked, settled);
    assert_int_equal(queue->published, pushed);
    s_assert_sorted(&queue->ready);
    for (hop_entry_t *e = queue->ready.head; e; e = e->next) {
        assert_false(e->unacked);
        assert_ptr_equal(e->queue, queue);
        assert_int_equal(e->redelivered, e->deliveries > 0);
    }
    while (n_out)
        hop_queue_settle(queue, out[--n_out], true);
    free(out);
    hop_queue_destroy(&queue);
}

// Purge and destroy with every list in use ----------------------------------------------------

// A dead letter's record owns its exchange, key and death bytes.
static hop_msg_t *
s_msg_owning(uint8_t priority, uint32_t body_len)
{
    hop_msg_t *msg = hop_msg_new();
    msg->priority = priority;
    msg->body_len = body_len;
    // [u32 death_len][exchange][key][death], as deadletter.c lays it out.
    uint32_t death_len = 5;
    uint8_t *own = hop_malloc(20);
    memcpy(own, &death_len, 4);
    memcpy(own + 4, "dlxkeydeath", 12);
    hop_msg_own(msg, own, 3, 3);
    assert_memory_equal(msg->exchange, "dlx", 3);
    assert_memory_equal(msg->key, "key", 3);
    uint32_t len = 0;
    assert_true(hop_msg_death(msg, &len) == own + 10);
    assert_int_equal(len, 5);
    return msg;
}

static void
test_release_frees_owned_bytes(void **state)
{
    (void)state;
    hop_msg_t *msg = s_msg_owning(0, 0);
    hop_msg_release(msg); // LSan: own is freed
    msg = hop_msg_new();
    assert_false(msg->own); // a recycled record owns nothing
    hop_msg_release(msg);
    // Shared by two queues: the bytes live until the last entry goes.
    hop_queue_t *a = qh_queue("a"), *b = qh_queue("b");
    msg = s_msg_owning(0, 4);
    hop_queue_push(a, msg, 0, HOP_TTL_NONE);
    hop_queue_push(b, msg, 0, HOP_TTL_NONE);
    hop_queue_destroy(&a);
    assert_int_equal(msg->refs, 1);
    assert_memory_equal(msg->key, "key", 3);
    hop_queue_destroy(&b);
}

static void
test_purge_drops_ready_and_delayed_on_every_level(void **state)
{
    (void)state;
    hop_queue_t *queue = qh_pqueue(2);
    hop_entry_t *e[7];
    const uint8_t prio[] = {0, 1, 2, 2, 0, 1, 9};
    for (int i = 0; i < 7; i++)
        e[i] = hop_queue_push(queue, s_msg_owning(prio[i], 10), 0, HOP_TTL_NONE);
    hop_msg_t *shared = qh_msg_with_body('s'); // also in another queue: must survive the purge
    hop_queue_t *other = qh_queue("other");
    hop_queue_push(other, shared, 0, HOP_TTL_NONE);
    hop_queue_push(queue, shared, 0, HOP_TTL_NONE); // 8, base list
    assert_ptr_equal(hop_queue_take(queue, 1), e[2]);
    assert_ptr_equal(hop_queue_take(queue, 1), e[3]);
    assert_ptr_equal(hop_queue_take(queue, 1), e[6]);
    assert_ptr_equal(hop_queue_take(queue, 1), e[1]);
    hop_queue_delay(queue, e[2], 100);
    hop_queue_delay(queue, e[1], 50); // 2 delayed, 2 unacked (4 and 7), 4 ready
    qh_assert_ready(queue, 4, 30);
    assert_int_equal(hop_queue_purge(queue), 6);
    for (uint32_t p = 0; p <= 2; p++)
        qh_assert_list(qh_level(queue, p), NULL, 0);
    qh_assert_list(&queue->delayed, NULL, 0);
    qh_assert_list(&queue->unacked, (uint64_t[]){4, 7}, 2);
    qh_assert_ready(queue, 0, 0);
    assert_null(hop_queue_head(queue));
    assert_null(hop_queue_oldest(queue));
    assert_int_equal(shared->refs, 1);
    qh_assert_body(shared, 's');
    assert_int_equal(hop_queue_purge(queue), 0);
    // The queue works on after a purge, counters from zero.
    hop_queue_requeue(queue, e[6]);
    hop_entry_t *f = qh_push(queue, 1, 5, 0);
    qh_assert_list(qh_level(queue, 2), (uint64_t[]){7}, 1);
    qh_assert_list(qh_level(queue, 1), (uint64_t[]){9}, 1);
    qh_assert_ready(queue, 2, 15);
    assert_ptr_equal(hop_queue_take(queue, 2), e[6]);
    assert_ptr_equal(hop_queue_take(queue, 2), f);
    qh_assert_ready(queue, 0, 0);
    assert_int_equal(queue->published, 9);
    assert_int_equal(queue->delivered, 6);
    while (queue->unacked.head)
        hop_queue_settle(queue, queue->unacked.head, true);
    hop_queue_destroy(&queue);
    hop_queue_destroy(&other);
}

// Everything a queue holds at once: run under ASan/LSan, nothing may leak or be freed twice.
static void
test_destroy_with_entries_in_every_list(void **state)
{
    (void)state;
    hop_queue_t *queue = qh_queue_with(&(hop_qargs_t){
        .max_priority = 3, .dlx = hop_strndup("dlx", 3), .has_ttl = true, .message_ttl = 60});
    hop_queue_t *other = qh_queue("other");
    for (int i = 0; i < 24; i++) {
        hop_msg_t *msg = i % 3 ? qh_msg_with_body((char)('a' + i)) : s_msg_owning(0, 0);
        msg->priority = (uint8_t)(i % 5); // 0..4: base, each level, and clamped
        hop_queue_push(queue, msg, (uint64_t)i, HOP_TTL_NONE);
        if (i % 4 == 0)
            hop_queue_push(other, msg, 0, HOP_TTL_NONE); // shared: a second, non-embedded entry
    }
    hop_entry_t *taken[24];
    size_t n = 0;
    for (int i = 0; i < 12; i++)
        taken[n++] = hop_queue_take(queue, 100);
    for (int i = 0; i < 4; i++)
        hop_queue_delay(queue, taken[i], 200 - (uint64_t)i); // delayed, due out of order
    hop_queue_requeue(queue, taken[4]);
    hop_consumer_t c;
    memset(&c, 0, sizeof c);
    hop_conn_t *conn = hop_conn_new("id", 2, 1, 0);
    for (size_t i = 5; i < n; i++) {
        taken[i]->consumer = &c;
        hop_conn_track(conn, taken[i]);
    }
    assert_int_equal(queue->delayed.size, 4);
    assert_int_equal(queue->unacked.size, 7);
    assert_int_equal(queue->ready_count, 13);
    hop_queue_destroy(&queue); // ready and delayed freed; unacked orphaned to conn
    for (size_t i = 5; i < n; i++) {
        hop_entry_t *e = hop_conn_lookup(conn, taken[i]->tag);
        assert_ptr_equal(e, taken[i]);
        assert_null(e->queue);
        assert_null(e->consumer);
        hop_conn_untrack(conn, e->tag);
        hop_entry_destroy(&e);
    }
    hop_conn_destroy(&conn);
    assert_int_equal(other->ready_count, 6);
    hop_queue_destroy(&other);
}

// A model run with priorities, delays and removals. After every step: every live entry is in
// exactly one list (the one its state says), ready lists are sorted by seq, the delayed list by
// due time (first delayed first among equals), the counters equal a recount, and head, oldest
// and per-entry delivery counts agree with the model.
enum { M_OPS = 30000, M_LIVE = 256, M_MAXP = 4 };

typedef enum { M_GONE, M_READY, M_UNACKED, M_DELAYED } m_where_t;

typedef struct {
    hop_entry_t *entry;
    m_where_t where;
    uint32_t level; // effective priority level (clamped)
    uint32_t body_len;
    uint32_t deliveries;
    bool redelivered;
    uint64_t at;        // due time (delayed) or delivery time (unacked)
    uint64_t delay_ord; // order of the delay call, for equal due times
    uint32_t seen;      // check epoch in which a list walk met the entry
} m_slot_t;

typedef struct {
    hop_queue_t *queue;
    m_slot_t *slots; // by seq
    uint64_t live[M_LIVE];
    size_t live_count;
    size_t ready_count;
    uint64_t ready_bytes, now, published, delivered, acked, delay_ord;
    uint32_t epoch;
} m_model_t;

static m_slot_t *
m_slot(m_model_t *m, const hop_entry_t *e)
{
    assert_true(e->seq >= 1 && e->seq <= M_OPS);
    m_slot_t *s = &m->slots[e->seq];
    assert_ptr_equal(s->entry, e);
    assert_int_not_equal(s->where, M_GONE);
    assert_int_not_equal(s->seen, m->epoch); // in one list only
    s->seen = m->epoch;
    return s;
}

static void
m_check(m_model_t *m)
{
    hop_queue_t *q = m->queue;
    m->epoch++;
    size_t found = 0, ready = 0;
    uint64_t bytes = 0;
    const hop_entry_t *head = NULL, *oldest = NULL;
    for (uint32_t p = 0; p <= M_MAXP; p++) {
        const hop_list_t *list = qh_level(q, p);
        s_assert_sorted(list);
        for (const hop_entry_t *e = list->head; e; e = e->next) {
            m_slot_t *s = m_slot(m, e);
            assert_int_equal(s->where, M_READY);
            assert_int_equal(s->level, p);
            assert_false(e->unacked || e->delayed);
            ready++;
            bytes += e->msg->body_len;
            if (!oldest || e->seq < oldest->seq)
                oldest = e;
        }
        if (list->head)
            head = list->head; // the highest level with entries wins
    }
    uint64_t due = 0, ord = 0;
    size_t n = 0;
    const hop_entry_t *prev = NULL;
    for (const hop_entry_t *e = q->delayed.head; e; prev = e, e = e->next, n++) {
        assert_ptr_equal(e->prev, prev);
        m_slot_t *s = m_slot(m, e);
        assert_int_equal(s->where, M_DELAYED);
        assert_true(e->delayed && !e->unacked);
        assert_int_equal(e->at, s->at);
        assert_true(e->at > due || (e->at == due && s->delay_ord > ord) || !prev);
        due = e->at;
        ord = s->delay_ord;
    }
    assert_int_equal(n, q->delayed.size);
    assert_ptr_equal(q->delayed.tail, prev);
    found += n;
    n = 0;
    uint64_t at = 0;
    prev = NULL;
    for (const hop_entry_t *e = q->unacked.head; e; prev = e, e = e->next, n++) {
        assert_ptr_equal(e->prev, prev);
        m_slot_t *s = m_slot(m, e);
        assert_int_equal(s->where, M_UNACKED);
        assert_true(e->unacked && !e->delayed);
        assert_int_equal(e->at, s->at);
        assert_true(e->at >= at); // delivery order
        at = e->at;
    }
    assert_int_equal(n, q->unacked.size);
    assert_ptr_equal(q->unacked.tail, prev);
    found += n + ready;
    assert_int_equal(found, m->live_count);
    assert_int_equal(ready, m->ready_count);
    assert_int_equal(bytes, m->ready_bytes);
    assert_int_equal(q->ready_count, ready);
    assert_int_equal(q->ready_bytes, bytes);
    assert_ptr_equal(hop_queue_head(q), head);
    assert_ptr_equal(hop_queue_oldest(q), oldest);
    assert_int_equal(q->published, m->published);
    assert_int_equal(q->delivered, m->delivered);
    assert_int_equal(q->acked, m->acked);
    for (size_t i = 0; i < m->live_count; i++) {
        const m_slot_t *s = &m->slots[m->live[i]];
        assert_int_equal(s->seen, m->epoch); // met in a walk
        assert_int_equal(s->entry->deliveries, s->deliveries);
        assert_int_equal(s->entry->redelivered, s->redelivered);
        assert_ptr_equal(s->entry->queue, q);
    }
}

// A random live entry in state where, or NULL.
static m_slot_t *
m_pick(m_model_t *m, m_where_t where)
{
    if (!m->live_count)
        return NULL;
    size_t start = (size_t)(s_rand() % m->live_count);
    for (size_t i = 0; i < m->live_count; i++) {
        m_slot_t *s = &m->slots[m->live[(start + i) % m->live_count]];
        if (s->where == where)
            return s;
    }
    return NULL;
}

static void
m_set_ready(m_model_t *m, m_slot_t *s)
{
    s->where = M_READY;
    m->ready_count++;
    m->ready_bytes += s->body_len;
}

static void
m_unset_ready(m_model_t *m, m_slot_t *s)
{
    assert_int_equal(s->where, M_READY);
    m->ready_count--;
    m->ready_bytes -= s->body_len;
}

// Forgets a destroyed entry.
static void
m_gone(m_model_t *m, m_slot_t *s)
{
    s->where = M_GONE;
    s->entry = NULL;
    for (size_t i = 0; i < m->live_count; i++)
        if (&m->slots[m->live[i]] == s) {
            m->live[i] = m->live[--m->live_count];
            return;
        }
    fail_msg("entry not live");
}

static void
m_push(m_model_t *m)
{
    uint8_t priority = (uint8_t)(s_rand() % (M_MAXP + 3)); // some above the maximum
    hop_msg_t *msg = s_rand() % 16 ? hop_msg_new() : s_msg_owning(0, 0);
    msg->priority = priority;
    msg->body_len = (uint32_t)(s_rand() % 100);
    hop_entry_t *e = hop_queue_push(m->queue, msg, m->now, HOP_TTL_NONE);
    assert_int_equal(e->seq, m->published + 1);
    m_slot_t *s = &m->slots[e->seq];
    memset(s, 0, sizeof *s);
    s->entry = e;
    s->level = priority > M_MAXP ? M_MAXP : priority;
    s->body_len = msg->body_len;
    m_set_ready(m, s);
    m->live[m->live_count++] = e->seq;
    m->published++;
}

static void
m_take(m_model_t *m)
{
    // The model's head: the highest level, then the lowest seq.
    m_slot_t *want = NULL;
    for (size_t i = 0; i < m->live_count; i++) {
        m_slot_t *s = &m->slots[m->live[i]];
        if (s->where == M_READY && (!want || s->level > want->level ||
                                    (s->level == want->level && s->entry->seq < want->entry->seq)))
            want = s;
    }
    hop_entry_t *e = hop_queue_take(m->queue, m->now);
    if (!want) {
        assert_null(e);
        return;
    }
    assert_ptr_equal(e, want->entry);
    m_unset_ready(m, want);
    want->where = M_UNACKED;
    want->deliveries++;
    want->at = m->now;
    m->delivered++;
    if (s_rand() % 8 == 0) { // the send failed
        hop_queue_untake(m->queue, e);
        want->deliveries--;
        m->delivered--;
        m_set_ready(m, want);
    }
}

static void
m_step(m_model_t *m)
{
    m->now += s_rand() % 3; // monotonic, with repeats
    // Phases of growth and draining, so that the lists are long at times and empty at others.
    bool growing = (m->published / 2000) % 2 == 0;
    if (growing && s_rand() % 2 && m->live_count < M_LIVE)
        m_push(m);
    else if (!growing && s_rand() % 2)
        m_take(m);
    unsigned r = (unsigned)(s_rand() % 100);
    m_slot_t *s;
    if (r < 20) {
        if (m->live_count < M_LIVE)
            m_push(m);
    } else if (r < 48)
        m_take(m);
    else if (r < 56) {
        if ((s = m_pick(m, M_UNACKED))) {
            hop_queue_settle(m->queue, s->entry, true);
            m->acked++;
            m_gone(m, s);
        }
    } else if (r < 63) {
        if ((s = m_pick(m, M_UNACKED))) {
            hop_queue_requeue(m->queue, s->entry);
            s->redelivered = true;
            m_set_ready(m, s);
        }
    } else if (r < 71) {
        if ((s = m_pick(m, M_UNACKED))) {
            // Short delays collide on equal due times; long ones make the list long.
            uint64_t due = m->now + (s_rand() % 2 ? s_rand() % 8 : s_rand() % 400);
            hop_queue_delay(m->queue, s->entry, due);
            s->where = M_DELAYED;
            s->redelivered = true;
            s->at = due;
            s->delay_ord = ++m->delay_ord;
        }
    } else if (r < 80) {
        // What the timers do (the head, once due), and now and then any delayed entry.
        const hop_entry_t *due = m->queue->delayed.head;
        if (due && due->at <= m->now)
            s = &m->slots[due->seq];
        else
            s = s_rand() % 4 ? NULL : m_pick(m, M_DELAYED);
        if (s) {
            hop_queue_undelay(m->queue, s->entry);
            m_set_ready(m, s);
        }
    } else if (r < 88) {
        // Drop-head, expiry at a level's head, or anywhere.
        unsigned how = (unsigned)(s_rand() % 3);
        hop_entry_t *e = how == 0   ? hop_queue_oldest(m->queue)
                         : how == 1 ? hop_queue_head(m->queue)
                                    : ((s = m_pick(m, M_READY)) ? s->entry : NULL);
        if (e) {
            s = &m->slots[e->seq];
            hop_queue_remove(m->queue, e);
            m_unset_ready(m, s);
            hop_entry_destroy(&e);
            m_gone(m, s);
        }
    } else if (r < 94) {
        if ((s = m_pick(m, M_UNACKED))) {
            hop_queue_unsend(m->queue, s->entry);
            s->deliveries--;
            m->delivered--;
            m_set_ready(m, s);
        }
    } else if (r < 99) {
        if ((s = m_pick(m, M_UNACKED))) { // dead-lettered
            hop_entry_t *e = s->entry;
            hop_queue_unlink(m->queue, e);
            assert_false(e->unacked || e->delayed);
            hop_entry_destroy(&e);
            m_gone(m, s);
        }
    } else if (s_rand() % 8 == 0) {
        size_t expect = 0;
        for (size_t i = m->live_count; i-- > 0;) {
            s = &m->slots[m->live[i]];
            if (s->where == M_READY || s->where == M_DELAYED) {
                expect++;
                m_gone(m, s);
            }
        }
        assert_int_equal(hop_queue_purge(m->queue), expect);
        m->ready_count = 0;
        m->ready_bytes = 0;
    }
}

static void
test_random_priorities_delays_and_removals_keep_invariants(void **state)
{
    (void)state;
    s_rng = 0x5851f42d4c957f2dull;
    m_model_t m;
    memset(&m, 0, sizeof m);
    m.queue = qh_pqueue(M_MAXP);
    m.slots = calloc(M_OPS + 1, sizeof *m.slots);
    assert_non_null(m.slots);
    m.now = 1;
    for (int op = 0; op < M_OPS; op++) {
        m_step(&m);
        m_check(&m);
    }
    // Destroy with entries in every list (the walk above met all of them).
    size_t in[4] = {0};
    hop_entry_t *unacked[M_LIVE];
    size_t n_unacked = 0;
    for (size_t i = 0; i < m.live_count; i++) {
        m_slot_t *s = &m.slots[m.live[i]];
        in[s->where]++;
        if (s->where == M_UNACKED)
            unacked[n_unacked++] = s->entry;
    }
    assert_true(in[M_READY] && in[M_UNACKED] && in[M_DELAYED]);
    hop_queue_destroy(&m.queue);
    for (size_t i = 0; i < n_unacked; i++) {
        assert_null(unacked[i]->queue);
        hop_entry_destroy(&unacked[i]);
    }
    free(m.slots);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random_operations_never_lose_or_duplicate),
        cmocka_unit_test(test_release_frees_owned_bytes),
        cmocka_unit_test(test_purge_drops_ready_and_delayed_on_every_level),
        cmocka_unit_test(test_destroy_with_entries_in_every_list),
        cmocka_unit_test(test_random_priorities_delays_and_removals_keep_invariants),
    };
    return cmocka_run_group_tests(tests, NULL, qh_teardown_group);
}
