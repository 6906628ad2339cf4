// tests/unit/test_conn.c - connection records: the ring of unacked delivery tags (checked
// against a plain array indexed by tag), the ring of recently revoked tags and the
// connection's consumer list.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conn.h"

// Seeded xorshift64: the same sequence on every libc.
static uint64_t s_rng;

static uint64_t
s_rand(void)
{
    s_rng ^= s_rng << 13;
    s_rng ^= s_rng >> 7;
    s_rng ^= s_rng << 17;
    return s_rng;
}

static hop_conn_t *
s_conn(void)
{
    return hop_conn_new("peer", 4, 1, 1000);
}

// The reference model: ref[tag] is the entry the ring must return for tag (NULL for skipped,
// settled and never-issued tags); live[] lists the unacked tags for random picks.
typedef struct {
    hop_conn_t *conn;
    hop_entry_t **ref; // ref_cap slots, indexed by tag
    size_t ref_cap;
    uint64_t *live; // unacked tags, unordered
    size_t live_count;
    uint64_t next_tag; // what conn->next_tag must be
    uint64_t first;    // lowest tag that may be live; only ever advances
} s_model_t;

static void
s_model_init(s_model_t *m)
{
    memset(m, 0, sizeof *m);
    m->conn = s_conn();
    m->ref_cap = 1024;
    m->ref = calloc(m->ref_cap, sizeof *m->ref);
    m->live = calloc(m->ref_cap, sizeof *m->live);
    m->next_tag = m->first = 1;
}

// Keeps room for tags up to next_tag + 2, so lookups just past the end have a reference.
static void
s_model_reserve(s_model_t *m)
{
    if (m->next_tag + 3 < m->ref_cap)
        return;
    size_t cap = m->ref_cap * 2;
    m->ref = realloc(m->ref, cap * sizeof *m->ref);
    memset(m->ref + m->ref_cap, 0, (cap - m->ref_cap) * sizeof *m->ref);
    m->live = realloc(m->live, cap * sizeof *m->live);
    m->ref_cap = cap;
}

static uint64_t
s_model_track(s_model_t *m)
{
    hop_entry_t *e = hop_entry_new(hop_msg_new());
    uint64_t tag = hop_conn_track(m->conn, e);
    assert_int_equal(tag, m->next_tag);
    assert_int_equal(e->tag, tag);
    m->ref[tag] = e;
    m->live[m->live_count++] = tag;
    m->next_tag++;
    s_model_reserve(m);
    assert_ptr_equal(hop_conn_lookup(m->conn, tag), e);
    return tag;
}

static void
s_model_skip(s_model_t *m)
{
    hop_conn_skip_tag(m->conn);
    uint64_t tag = m->next_tag++;
    s_model_reserve(m);
    assert_int_equal(m->conn->next_tag, m->next_tag);
    assert_null(hop_conn_lookup(m->conn, tag));
}

// Untracks the live tag at live[i] and destroys its entry.
static void
s_model_untrack_at(s_model_t *m, size_t i)
{
    uint64_t tag = m->live[i];
    m->live[i] = m->live[--m->live_count];
    hop_entry_t *e = m->ref[tag];
    assert_ptr_equal(hop_conn_lookup(m->conn, tag), e);
    hop_conn_untrack(m->conn, tag);
    m->ref[tag] = NULL;
    hop_entry_destroy(&e);
    assert_null(hop_conn_lookup(m->conn, tag));
}

static void
s_model_untrack_tag(s_model_t *m, uint64_t tag)
{
    for (size_t i = 0; i < m->live_count; i++)
        if (m->live[i] == tag) {
            s_model_untrack_at(m, i);
            return;
        }
    fail_msg("tag %llu is not live", (unsigned long long)tag);
}

static void
s_model_untrack_random(s_model_t *m)
{
    s_model_untrack_at(m, (size_t)(s_rand() % m->live_count));
}

// Checks the counters and that first_tag is the oldest live tag (or next_tag).
static void
s_model_check_edges(s_model_t *m)
{
    assert_int_equal(m->conn->unacked, m->live_count);
    assert_int_equal(m->conn->next_tag, m->next_tag);
    while (m->first < m->next_tag && !m->ref[m->first])
        m->first++;
    assert_int_equal(hop_conn_first_tag(m->conn), m->first);
}

// Checks every tag from 0 to just past the end against the reference.
static void
s_model_check_all(s_model_t *m)
{
    s_model_check_edges(m);
    for (uint64_t tag = 0; tag < m->next_tag + 2; tag++)
        assert_ptr_equal(hop_conn_lookup(m->conn, tag), m->ref[tag]);
    const hop_conn_t *c = m->conn;
    assert_true(c->ring_cap == 0 || (c->ring_cap & (c->ring_cap - 1)) == 0);
    assert_true(c->next_tag - c->ring_base <= c->ring_cap);
}

static void
s_model_destroy(s_model_t *m)
{
    while (m->live_count)
        s_model_untrack_random(m);
    s_model_check_all(m);
    free(m->ref);
    free(m->live);
    hop_conn_destroy(&m->conn); // asserts nothing is left unacked
    assert_null(m->conn);
}

// Records and tags -------------------------------------------------------------------------

static void
test_new_copies_identity_and_names_connection(void **state)
{
    (void)state;
    uint8_t id[5] = {0, 'a', 0, 0xff, 'b'};
    hop_conn_t *conn = hop_conn_new(id, sizeof id, 42, 7000);
    id[1] = 'X';
    assert_int_equal(conn->id_len, 5);
    assert_memory_equal(conn->id, ((uint8_t[]){0, 'a', 0, 0xff, 'b'}), 5);
    assert_string_equal(conn->label, "conn-42");
    assert_int_equal(conn->connected_at, 7000);
    assert_int_equal(conn->last_recv, 7000);
    assert_int_equal(conn->last_send, 7000);
    assert_int_equal(conn->unacked, 0);
    assert_int_equal(conn->consumer_count, 0);
    assert_null(conn->name);
    hop_conn_destroy(&conn);
    assert_null(conn);
    hop_conn_destroy(&conn); // accepts NULL
}

static void
test_new_accepts_longest_routing_id(void **state)
{
    (void)state;
    uint8_t id[HOP_ID_MAX];
    memset(id, 0xab, sizeof id);
    hop_conn_t *conn = hop_conn_new(id, sizeof id, 4294967296ull, 0);
    assert_int_equal(conn->id_len, HOP_ID_MAX);
    assert_memory_equal(conn->id, id, HOP_ID_MAX);
    assert_string_equal(conn->label, "conn-4294967296"); // past 32 bits
    hop_conn_destroy(&conn);
}

static void
test_tags_start_at_1_and_increase(void **state)
{
    (void)state;
    hop_conn_t *conn = s_conn();
    assert_int_equal(conn->next_tag, 1);
    assert_int_equal(hop_conn_first_tag(conn), 1);
    hop_entry_t *e[5];
    for (int i = 0; i < 5; i++) {
        e[i] = hop_entry_new(hop_msg_new());
        assert_int_equal(hop_conn_track(conn, e[i]), (uint64_t)i + 1);
    }
    hop_conn_untrack(conn, 5); // settling the newest does not hand its tag out again
    hop_entry_t *f = hop_entry_new(hop_msg_new());
    assert_int_equal(hop_conn_track(conn, f), 6);
    for (uint64_t tag = 1; tag <= 4; tag++)
        hop_conn_untrack(conn, tag);
    hop_conn_untrack(conn, 6);
    hop_entry_t *g = hop_entry_new(hop_msg_new());
    assert_int_equal(hop_conn_track(conn, g), 7); // nor after everything was settled
    hop_conn_untrack(conn, 7);
    for (int i = 0; i < 5; i++)
        hop_entry_destroy(&e[i]);
    hop_entry_destroy(&f);
    hop_entry_destroy(&g);
    hop_conn_destroy(&conn);
}

static void
test_track_lookup_untrack(void **state)
{
    (void)state;
    hop_conn_t *conn = s_conn();
    hop_entry_t *a = hop_entry_new(hop_msg_new());
    hop_entry_t *b = hop_entry_new(hop_msg_new());
    uint64_t ta = hop_conn_track(conn, a);
    uint64_t tb = hop_conn_track(conn, b);
    assert_int_equal(a->tag, ta);
    assert_int_equal(conn->unacked, 2);
    assert_ptr_equal(hop_conn_lookup(conn, ta), a);
    assert_ptr_equal(hop_conn_lookup(conn, tb), b);
    hop_conn_untrack(conn, ta);
    assert_int_equal(conn->unacked, 1);
    assert_null(hop_conn_lookup(conn, ta));
    assert_ptr_equal(hop_conn_lookup(conn, tb), b);
    hop_conn_untrack(conn, tb);
    assert_int_equal(conn->unacked, 0);
    assert_null(hop_conn_lookup(conn, tb));
    hop_entry_destroy(&a);
    hop_entry_destroy(&b);
    hop_conn_destroy(&conn);
}

static void
test_lookup_of_never_issued_tag_returns_null(void **state)
{
    (void)state;
    hop_conn_t *conn = s_conn();
    assert_null(hop_conn_lookup(conn, 0)); // before any ring exists
    assert_null(hop_conn_lookup(conn, 1));
    assert_null(hop_conn_lookup(conn, UINT64_MAX));
    hop_entry_t *e = hop_entry_new(hop_msg_new());
    hop_conn_track(conn, e);
    assert_null(hop_conn_lookup(conn, 2));
    assert_null(hop_conn_lookup(conn, 64)); // a slot inside the ring, but not issued
    assert_null(hop_conn_lookup(conn, 65));
    assert_null(hop_conn_lookup(conn, 1000000));
    assert_null(hop_conn_lookup(conn, UINT64_MAX));
    hop_conn_untrack(conn, 1);
    hop_entry_destroy(&e);
    hop_conn_destroy(&conn);
}

static void
test_lookup_of_settled_tag_returns_null(void **state)
{
    (void)state;
    s_model_t m;
    s_model_init(&m);
    for (int i = 0; i < 5; i++)
        s_model_track(&m);
    s_model_untrack_tag(&m, 3); // a hole in the middle: the base stays
    assert_int_equal(hop_conn_first_tag(m.conn), 1);
    assert_null(hop_conn_lookup(m.conn, 3));
    s_model_check_all(&m);
    s_model_destroy(&m);
}

static void
test_lookup_below_base_returns_null(void **state)
{
    (void)state;
    s_model_t m;
    s_model_init(&m);
    for (int i = 0; i < 70; i++)
        s_model_track(&m);
    for (uint64_t tag = 1; tag <= 40; tag++)
        s_model_untrack_tag(&m, tag);
    s_model_untrack_tag(&m, 45); // a settled tag above the base stays NULL too
    s_model_check_edges(&m);
    uint64_t first = hop_conn_first_tag(m.conn);
    assert_int_equal(first, 41);
    for (uint64_t tag = 0; tag < first; tag++)
        assert_null(hop_conn_lookup(m.conn, tag));
    s_model_check_all(&m);
    s_model_destroy(&m);
}

static void
test_first_tag_advances_past_settled_tags(void **state)
{
    (void)state;
    hop_conn_t *conn = s_conn();
    hop_entry_t *e[6];
    for (int i = 1; i <= 5; i++) {
        e[i] = hop_entry_new(hop_msg_new());
        hop_conn_track(conn, e[i]);
    }
    hop_conn_untrack(conn, 3);
    assert_int_equal(hop_conn_first_tag(conn), 1); // 1 is still out
    hop_conn_untrack(conn, 1);
    assert_int_equal(hop_conn_first_tag(conn), 2);
    hop_conn_untrack(conn, 2);
    assert_int_equal(hop_conn_first_tag(conn), 4); // past 3, already settled
    hop_conn_untrack(conn, 5);
    assert_int_equal(hop_conn_first_tag(conn), 4);
    hop_conn_untrack(conn, 4);
    assert_int_equal(hop_conn_first_tag(conn), 6); // nothing unacked: first == next
    assert_int_equal(conn->next_tag, 6);
    for (int i = 1; i <= 5; i++)
        hop_entry_destroy(&e[i]);
    hop_conn_destroy(&conn);
}

// Ring growth ------------------------------------------------------------------------------

// Tracks n entries, then untracks them in random order, checking lookups against the
// reference (every step for small rings, every 1000 steps for large ones).
static void
s_grow_then_drain(size_t n, size_t min_cap)
{
    s_rng = 0x2545f4914f6cdd1dull ^ n;
    s_model_t m;
    s_model_init(&m);
    for (size_t i = 0; i < n; i++)
        s_model_track(&m);
    s_model_check_all(&m);
    assert_true(m.conn->ring_cap >= min_cap);
    size_t every = n <= 1000 ? 1 : 1000;
    for (size_t i = 0; m.live_count; i++) {
        s_model_untrack_random(&m);
        s_model_check_edges(&m);
        if (i % every == 0)
            s_model_check_all(&m);
    }
    s_model_check_all(&m);
    s_model_track(&m); // a drained ring takes new tags where it left off
    assert_int_equal(m.live[0], n + 1);
    s_model_check_all(&m);
    s_model_destroy(&m);
}

static void
test_ring_grows_past_64(void **state)
{
    (void)state;
    s_grow_then_drain(65, 128);
}

static void
test_ring_grows_past_128(void **state)
{
    (void)state;
    s_grow_then_drain(129, 256);
}

static void
test_ring_grows_to_100000(void **state)
{
    (void)state;
    s_grow_then_drain(100000, 131072);
}

static void
test_ring_grows_while_wrapped(void **state)
{
    (void)state;
    s_model_t m;
    s_model_init(&m);
    for (int i = 0; i < 64; i++)
        s_model_track(&m);
    assert_int_equal(m.conn->ring_cap, 64);
    for (uint64_t tag = 1; tag <= 10; tag++)
        s_model_untrack_tag(&m, tag); // the base moves to slot 10
    s_model_check_all(&m);
    for (int i = 0; i < 10; i++)
        s_model_track(&m); // these wrap around to the freed slots at the front
    assert_int_equal(m.conn->ring_cap, 64);
    s_model_check_all(&m);
    s_model_track(&m); // full: grows and must unroll the wrapped ring
    assert_int_equal(m.conn->ring_cap, 128);
    s_model_check_all(&m);
    s_model_destroy(&m);
}

// Tags for no-ack deliveries -----------------------------------------------------------------

static void
test_skip_tag_without_unacked_restarts_ring(void **state)
{
    (void)state;
    s_model_t m;
    s_model_init(&m);
    s_model_skip(&m); // before any ring exists
    s_model_skip(&m);
    s_model_check_all(&m);
    assert_int_equal(hop_conn_first_tag(m.conn), 3);
    assert_int_equal(s_model_track(&m), 3);
    s_model_check_all(&m);
    s_model_untrack_tag(&m, 3);
    for (int i = 0; i < 200; i++) // many more than the ring holds: no growth needed
        s_model_skip(&m);
    assert_int_equal(m.conn->ring_cap, 64);
    s_model_check_all(&m);
    assert_int_equal(s_model_track(&m), 204);
    s_model_check_all(&m);
    s_model_destroy(&m);
}

static void
test_skip_tag_with_unacked_leaves_a_hole(void **state)
{
    (void)state;
    s_model_t m;
    s_model_init(&m);
    s_model_track(&m); // 1
    s_model_skip(&m);  // 2
    s_model_track(&m); // 3
    s_model_skip(&m);  // 4
    s_model_check_all(&m);
    assert_null(hop_conn_lookup(m.conn, 2));
    assert_null(hop_conn_lookup(m.conn, 4));
    assert_int_equal(hop_conn_first_tag(m.conn), 1);
    s_model_untrack_tag(&m, 1); // the base passes over the hole at 2
    assert_int_equal(hop_conn_first_tag(m.conn), 3);
    s_model_untrack_tag(&m, 3); // and over 4
    assert_int_equal(hop_conn_first_tag(m.conn), 5);
    s_model_check_all(&m);
    assert_int_equal(s_model_track(&m), 5);
    s_model_check_all(&m);
    s_model_destroy(&m);
}

static void
test_skip_tag_grows_ring_when_full(void **state)
{
    (void)state;
    s_model_t m;
    s_model_init(&m);
    s_model_track(&m); // 1 stays out while 2..300 go to a no-ack consumer
    for (int i = 0; i < 299; i++)
        s_model_skip(&m);
    assert_true(m.conn->ring_cap >= 512);
    s_model_check_all(&m);
    s_model_track(&m); // 301
    s_model_check_all(&m);
    s_model_untrack_tag(&m, 1); // first_tag jumps over the 299 holes
    assert_int_equal(hop_conn_first_tag(m.conn), 301);
    s_model_check_all(&m);
    s_model_destroy(&m);
}

static void
test_skip_tag_interleaved_then_untrack_all_then_track_again(void **state)
{
    (void)state;
    s_rng = 0x853c49e6748fea9bull;
    s_model_t m;
    s_model_init(&m);
    // No-ack deliveries interleaved with acked ones, across several ring sizes.
    for (int i = 0; i < 600; i++) {
        if (s_rand() % 3 == 0)
            s_model_skip(&m);
        else
            s_model_track(&m);
        if (i % 50 == 0)
            s_model_check_all(&m);
    }
    s_model_check_all(&m);
    while (m.live_count) {
        s_model_untrack_random(&m);
        s_model_check_all(&m);
    }
    assert_int_equal(m.conn->unacked, 0);
    assert_int_equal(hop_conn_first_tag(m.conn), m.next_tag);
    uint64_t next = m.next_tag;
    assert_int_equal(s_model_track(&m), next); // then track again
    s_model_skip(&m);
    assert_int_equal(s_model_track(&m), next + 2);
    s_model_check_all(&m);
    s_model_destroy(&m);
}

static void
test_random_track_skip_untrack_against_reference(void **state)
{
    (void)state;
    s_rng = 0xda942042e4dd58b5ull;
    s_model_t m;
    s_model_init(&m);
    for (int op = 0; op < 200000; op++) {
        unsigned r = (unsigned)(s_rand() % 100);
        // Phases of growth and shrinking so that the window wraps and grows repeatedly.
        bool growing = (op / 20000) % 2 == 0;
        if (r < (growing ? 45u : 25u))
            s_model_track(&m);
        else if (r < (growing ? 60u : 40u))
            s_model_skip(&m);
        else if (m.live_count)
            s_model_untrack_random(&m);
        s_model_check_edges(&m);
        uint64_t probe = s_rand() % (m.next_tag + 2);
        assert_ptr_equal(hop_conn_lookup(m.conn, probe), m.ref[probe]);
        if (op % 5000 == 0)
            s_model_check_all(&m);
    }
    s_model_check_all(&m);
    s_model_destroy(&m);
}

// Revoked tags -------------------------------------------------------------------------------

// Checks that exactly the tags in [lo, hi] are remembered among 0..probe_hi.
static void
s_assert_revoked_range(const hop_conn_t *conn, uint64_t lo, uint64_t hi, uint64_t probe_hi)
{
    for (uint64_t tag = 0; tag <= probe_hi; tag++)
        assert_int_equal(hop_conn_was_revoked(conn, tag), tag >= lo && tag <= hi && tag != 0);
}

static void
test_nothing_is_revoked_on_a_new_connection(void **state)
{
    (void)state;
    hop_conn_t *conn = s_conn();
    s_assert_revoked_range(conn, 1, 0, 20); // empty range
    assert_false(hop_conn_was_revoked(conn, UINT64_MAX));
    hop_conn_destroy(&conn);
}

#define R HOP_REVOKED_MAX // the ring's size

static void
test_revoke_remembers_the_last_tags(void **state)
{
    (void)state;
    hop_conn_t *conn = s_conn();
    for (uint64_t tag = 1; tag <= R; tag++)
        hop_conn_revoke(conn, tag);
    s_assert_revoked_range(conn, 1, R, R + 20);
    hop_conn_revoke(conn, R + 1); // one more pushes out the first
    s_assert_revoked_range(conn, 2, R + 1, R + 20);
    hop_conn_revoke(conn, R + 2);
    s_assert_revoked_range(conn, 3, R + 2, R + 20);
    for (uint64_t tag = R + 3; tag <= 3 * R; tag++)
        hop_conn_revoke(conn, tag);
    s_assert_revoked_range(conn, 2 * R + 1, 3 * R, 3 * R + 20);
    hop_conn_destroy(&conn);
}

// Revocations are not in tag order (several queues, several deadlines): the ring remembers
// the last R revoked, whatever their tags.
static void
test_revoke_forgets_by_age_not_by_tag(void **state)
{
    (void)state;
    hop_conn_t *conn = s_conn();
    uint64_t tags[R + 2];
    for (size_t i = 0; i < R + 2; i++)
        tags[i] = 1 + (i * 7919) % 100003; // distinct, out of order
    for (size_t i = 0; i < R + 2; i++)
        hop_conn_revoke(conn, tags[i]);
    for (size_t i = 0; i < R + 2; i++)
        assert_int_equal(hop_conn_was_revoked(conn, tags[i]), i >= 2); // the first two forgotten
    assert_false(hop_conn_was_revoked(conn, 100004));
    hop_conn_destroy(&conn);
}

static void
test_revoked_tag_0_never_matches(void **state)
{
    (void)state;
    hop_conn_t *conn = s_conn();
    assert_false(hop_conn_was_revoked(conn, 0)); // nothing allocated yet
    hop_conn_revoke(conn, 5);
    assert_false(hop_conn_was_revoked(conn, 0)); // the empty slots hold 0
    hop_conn_revoke(conn, 0);                    // 0 is no tag: remembered as nothing
    assert_false(hop_conn_was_revoked(conn, 0));
    assert_true(hop_conn_was_revoked(conn, 5));
    for (uint64_t tag = 6; tag < 30; tag++)
        hop_conn_revoke(conn, tag);
    assert_false(hop_conn_was_revoked(conn, 0));
    hop_conn_destroy(&conn);
}

static void
test_revoke_ring_against_reference(void **state)
{
    (void)state;
    s_rng = 0x14057b7ef767814full;
    hop_conn_t *conn = s_conn();
    enum { N = 16 };        // compare every N revocations: a full probe costs O(R^2)
    uint64_t last[R] = {0}; // the reference: the last R revoked, newest at (n - 1) % R
    size_t n = 0;
    for (int i = 0; i < 3 * R; i++) {
        uint64_t tag = 1 + s_rand() % (2 * R);
        hop_conn_revoke(conn, tag);
        last[n++ % R] = tag;
        if (i % N)
            continue;
        for (uint64_t probe = 0; probe <= 2 * R + 1; probe++) {
            bool want = false;
            for (size_t k = 0; k < R && k < n; k++)
                want |= probe != 0 && last[k] == probe;
            assert_int_equal(hop_conn_was_revoked(conn, probe), want);
        }
    }
    hop_conn_destroy(&conn);
}

// The ring's counter wraps after 2^32 revocations; the last R stay remembered across it.
static void
test_revoke_ring_survives_counter_wrap(void **state)
{
    (void)state;
    hop_conn_t *conn = s_conn();
    hop_conn_revoke(conn, 1000000); // allocates the ring
    conn->revoked_next = UINT32_MAX - 3;
    for (uint64_t tag = 1; tag <= R; tag++)
        hop_conn_revoke(conn, tag); // 4 before the wrap, the rest after
    s_assert_revoked_range(conn, 1, R, R + 20);
    hop_conn_revoke(conn, R + 1);
    s_assert_revoked_range(conn, 2, R + 1, R + 20);
    hop_conn_destroy(&conn);
}

// How the ack deadline uses it: the revoked tag is untracked (a late ack finds nothing) and
// remembered (so the error can say why); the other deliveries are untouched.
static void
test_revoked_tag_is_untracked_and_remembered(void **state)
{
    (void)state;
    hop_conn_t *conn = s_conn();
    hop_entry_t *e[3];
    for (int i = 0; i < 3; i++) {
        e[i] = hop_entry_new(hop_msg_new());
        hop_conn_track(conn, e[i]);
    }
    hop_conn_untrack(conn, 2);
    hop_conn_revoke(conn, 2);
    assert_null(hop_conn_lookup(conn, 2));
    assert_true(hop_conn_was_revoked(conn, 2));
    assert_ptr_equal(hop_conn_lookup(conn, 1), e[0]);
    assert_false(hop_conn_was_revoked(conn, 1));
    assert_false(hop_conn_was_revoked(conn, 3));
    hop_conn_untrack(conn, 1); // a plain ack is not a revocation
    assert_false(hop_conn_was_revoked(conn, 1));
    hop_conn_untrack(conn, 3);
    assert_int_equal(conn->unacked, 0);
    assert_true(hop_conn_was_revoked(conn, 2)); // still remembered with nothing unacked
    for (int i = 0; i < 3; i++)
        hop_entry_destroy(&e[i]);
    hop_conn_destroy(&conn);
}

// Consumers --------------------------------------------------------------------------------

static void
s_consumers(hop_consumer_t *c, char (*tags)[8], int n)
{
    for (int i = 0; i < n; i++) {
        memset(&c[i], 0, sizeof c[i]);
        c[i].tag = tags[i];
    }
}

// Checks the list from the head: order given as indexes into c.
static void
s_assert_consumers(const hop_conn_t *conn, hop_consumer_t *c, const int *order, int n)
{
    assert_int_equal(conn->consumer_count, (size_t)n);
    const hop_consumer_t *prev = NULL;
    int i = 0;
    for (const hop_consumer_t *x = conn->consumers; x; prev = x, x = x->conn_next, i++) {
        assert_true(i < n);
        assert_ptr_equal(x, &c[order[i]]);
        assert_ptr_equal(x->conn_prev, prev);
    }
    assert_int_equal(i, n);
}

static void
test_add_consumer_links_and_sets_conn(void **state)
{
    (void)state;
    hop_conn_t *conn = s_conn();
    char tags[3][8] = {"a", "b", "c"};
    hop_consumer_t c[3];
    s_consumers(c, tags, 3);
    for (int i = 0; i < 3; i++) {
        hop_conn_add_consumer(conn, &c[i]);
        assert_ptr_equal(c[i].conn, conn);
    }
    s_assert_consumers(conn, c, (int[]){2, 1, 0}, 3);
    for (int i = 0; i < 3; i++)
        hop_conn_remove_consumer(conn, &c[i]);
    hop_conn_destroy(&conn);
}

static void
test_find_consumer_matches_whole_tag(void **state)
{
    (void)state;
    hop_conn_t *conn = s_conn();
    char tags[4][8] = {"abc", "ab", "ctag-1", ""};
    hop_consumer_t c[4];
    s_consumers(c, tags, 4);
    for (int i = 0; i < 3; i++)
        hop_conn_add_consumer(conn, &c[i]);
    assert_ptr_equal(hop_conn_find_consumer(conn, "abc", 3), &c[0]);
    assert_ptr_equal(hop_conn_find_consumer(conn, "ab", 2), &c[1]);
    assert_ptr_equal(hop_conn_find_consumer(conn, "abcdef", 2), &c[1]); // only len bytes
    assert_ptr_equal(hop_conn_find_consumer(conn, "ctag-1", 6), &c[2]);
    assert_null(hop_conn_find_consumer(conn, "a", 1)); // a prefix is not a match
    assert_null(hop_conn_find_consumer(conn, "abcd", 4));
    assert_null(hop_conn_find_consumer(conn, "ctag-2", 6));
    assert_null(hop_conn_find_consumer(conn, "", 0));
    hop_conn_add_consumer(conn, &c[3]);
    assert_ptr_equal(hop_conn_find_consumer(conn, "", 0), &c[3]);
    for (int i = 0; i < 4; i++)
        hop_conn_remove_consumer(conn, &c[i]);
    assert_null(hop_conn_find_consumer(conn, "abc", 3));
    hop_conn_destroy(&conn);
}

static void
test_remove_consumer_from_head_middle_and_tail(void **state)
{
    (void)state;
    hop_conn_t *conn = s_conn();
    char tags[5][8] = {"0", "1", "2", "3", "4"};
    hop_consumer_t c[5];
    s_consumers(c, tags, 5);
    for (int i = 0; i < 5; i++)
        hop_conn_add_consumer(conn, &c[i]);
    s_assert_consumers(conn, c, (int[]){4, 3, 2, 1, 0}, 5);
    hop_conn_remove_consumer(conn, &c[2]); // middle
    assert_null(c[2].conn_prev);
    assert_null(c[2].conn_next);
    s_assert_consumers(conn, c, (int[]){4, 3, 1, 0}, 4);
    hop_conn_remove_consumer(conn, &c[4]); // head
    s_assert_consumers(conn, c, (int[]){3, 1, 0}, 3);
    hop_conn_remove_consumer(conn, &c[0]); // tail
    s_assert_consumers(conn, c, (int[]){3, 1}, 2);
    assert_null(hop_conn_find_consumer(conn, "2", 1));
    assert_ptr_equal(hop_conn_find_consumer(conn, "1", 1), &c[1]);
    hop_conn_remove_consumer(conn, &c[1]);
    hop_conn_remove_consumer(conn, &c[3]); // the last one
    assert_null(conn->consumers);
    assert_int_equal(conn->consumer_count, 0);
    hop_conn_add_consumer(conn, &c[2]); // the list works again after emptying
    s_assert_consumers(conn, c, (int[]){2}, 1);
    hop_conn_remove_consumer(conn, &c[2]);
    hop_conn_destroy(&conn);
}

static int
s_teardown_group(void **state)
{
    (void)state;
    hop_records_trim(); // freelists back to the heap so that LSan sees no leaks
    return 0;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_copies_identity_and_names_connection),
        cmocka_unit_test(test_new_accepts_longest_routing_id),
        cmocka_unit_test(test_tags_start_at_1_and_increase),
        cmocka_unit_test(test_track_lookup_untrack),
        cmocka_unit_test(test_lookup_of_never_issued_tag_returns_null),
        cmocka_unit_test(test_lookup_of_settled_tag_returns_null),
        cmocka_unit_test(test_lookup_below_base_returns_null),
        cmocka_unit_test(test_first_tag_advances_past_settled_tags),
        cmocka_unit_test(test_ring_grows_past_64),
        cmocka_unit_test(test_ring_grows_past_128),
        cmocka_unit_test(test_ring_grows_to_100000),
        cmocka_unit_test(test_ring_grows_while_wrapped),
        cmocka_unit_test(test_skip_tag_without_unacked_restarts_ring),
        cmocka_unit_test(test_skip_tag_with_unacked_leaves_a_hole),
        cmocka_unit_test(test_skip_tag_grows_ring_when_full),
        cmocka_unit_test(test_skip_tag_interleaved_then_untrack_all_then_track_again),
        cmocka_unit_test(test_random_track_skip_untrack_against_reference),
        cmocka_unit_test(test_nothing_is_revoked_on_a_new_connection),
        cmocka_unit_test(test_revoke_remembers_the_last_tags),
        cmocka_unit_test(test_revoke_forgets_by_age_not_by_tag),
        cmocka_unit_test(test_revoked_tag_0_never_matches),
        cmocka_unit_test(test_revoke_ring_against_reference),
        cmocka_unit_test(test_revoke_ring_survives_counter_wrap),
        cmocka_unit_test(test_revoked_tag_is_untracked_and_remembered),
        cmocka_unit_test(test_add_consumer_links_and_sets_conn),
        cmocka_unit_test(test_find_consumer_matches_whole_tag),
        cmocka_unit_test(test_remove_consumer_from_head_middle_and_tail),
    };
    return cmocka_run_group_tests(tests, NULL, s_teardown_group);
}
