// tests/unit/test_spill.c - a durable queue's spilled tail (bus/spill.c) and how bus/queue.c
// uses it: pushing past the window, reading back through the loader in order, holes, purge,
// and lookups by seq and by position across chunk edges. The loader here is a fake that
// builds messages from a table instead of the store; the store's side is tested through
// hopperd (tests/integration/test_paging.c).
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "queue_helpers.h"
#include "spill.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define CHUNK 4096 // bus/spill.c's chunk size: tests cross its edges on purpose

// The spill alone -------------------------------------------------------------------------

static void
test_push_pop_in_order_across_chunks(void **state)
{
    (void)state;
    hop_spill_t *s = hop_spill_new();
    size_t n = 3 * CHUNK + 17;
    for (size_t i = 0; i < n; i++)
        hop_spill_push_disk(s, 10 + i, 1000 + 64 * i, 64, (uint32_t)(i % 100));
    assert_int_equal(hop_spill_size(s), n);
    assert_int_equal(hop_spill_in_memory(s), 0);
    for (size_t i = 0; i < n; i++) {
        hop_slot_t *slot = hop_spill_front(s);
        assert_non_null(slot);
        assert_int_equal(slot->seq, 10 + i);
        assert_int_equal(slot->pos, 1000 + 64 * i);
        assert_int_equal(hop_slot_body_len(slot), i % 100);
        hop_spill_pop(s);
    }
    assert_null(hop_spill_front(s));
    assert_int_equal(hop_spill_size(s), 0);
    // Reusable after emptying at a chunk edge and in the middle of one.
    hop_spill_push_disk(s, 100000, 1, 64, 0);
    assert_int_equal(hop_spill_front(s)->seq, 100000);
    hop_spill_destroy(&s);
    assert_null(s);
    hop_spill_destroy(&s); // accepts NULL
}

// Memory is chunks of the live span, not of everything ever pushed.
static void
test_memory_follows_the_live_span(void **state)
{
    (void)state;
    hop_spill_t *s = hop_spill_new();
    for (uint64_t i = 0; i < 20 * CHUNK; i++) {
        hop_spill_push_disk(s, i + 1, i + 1, 40, 0);
        if (i >= CHUNK)
            hop_spill_pop(s);
    }
    size_t mem = hop_spill_memory(s);
    assert_true(mem <= 3 * CHUNK * sizeof(hop_slot_t) + 4096);
    assert_int_equal(sizeof(hop_slot_t), 24); // what PERFORMANCE.md's bytes per message count
    hop_spill_destroy(&s);
}

static void
test_holes_are_skipped_and_not_counted(void **state)
{
    (void)state;
    hop_spill_t *s = hop_spill_new();
    hop_entry_t fake[3];
    for (uint64_t i = 0; i < 10; i++) {
        if (i < 3)
            hop_spill_push_entry(s, i + 1, &fake[i], 5);
        else
            hop_spill_push_disk(s, i + 1, 100 * i, 50, 7);
    }
    assert_int_equal(hop_spill_size(s), 10);
    assert_int_equal(hop_spill_in_memory(s), 3);
    hop_spill_hole(s, hop_spill_find_seq(s, 1));
    hop_spill_hole(s, hop_spill_find_seq(s, 2));
    hop_spill_hole(s, hop_spill_find_seq(s, 5));
    assert_int_equal(hop_spill_size(s), 7);
    assert_int_equal(hop_spill_in_memory(s), 1);
    // A hole keeps its seq for lookups; front skips holes.
    assert_true(hop_slot_hole(hop_spill_find_seq(s, 5)));
    assert_int_equal(hop_spill_front(s)->seq, 3);
    assert_ptr_equal(hop_spill_front(s)->entry, &fake[2]);
    hop_spill_pop(s);
    assert_int_equal(hop_spill_front(s)->seq, 4);
    hop_spill_pop(s);
    assert_int_equal(hop_spill_front(s)->seq, 6); // 5 is a hole
    assert_int_equal(hop_spill_size(s), 5);
    hop_spill_destroy(&s);
}

static void
test_find_by_seq_and_by_position(void **state)
{
    (void)state;
    hop_spill_t *s = hop_spill_new();
    for (uint64_t i = 0; i < 2 * CHUNK + 5; i++)
        hop_spill_push_disk(s, 2 * i + 1, 3 * i + 7, 40, 0); // odd seqs, positions 7, 10, ...
    for (int k = 0; k < 500; k++)
        hop_spill_pop(s);
    for (uint64_t i = 500; i < 2 * CHUNK + 5; i += 97) {
        assert_int_equal(hop_spill_find_seq(s, 2 * i + 1)->pos, 3 * i + 7);
        assert_int_equal(hop_spill_find_pos(s, 3 * i + 7)->seq, 2 * i + 1);
        assert_null(hop_spill_find_seq(s, 2 * i + 2)); // between two slots
        assert_null(hop_spill_find_pos(s, 3 * i + 8));
    }
    // An on-disk hole keeps its position: an ACK replayed after it finds it (and ignores it).
    hop_spill_hole(s, hop_spill_find_seq(s, 2 * 700 + 1));
    assert_true(hop_slot_hole(hop_spill_find_pos(s, 3 * 700 + 7)));
    assert_null(hop_spill_find_seq(s, 1));              // popped
    assert_null(hop_spill_find_seq(s, 4 * CHUNK + 99)); // past the end
    // An in-memory slot has no position.
    hop_slot_t *slot = hop_spill_find_seq(s, 2 * 600 + 1);
    hop_entry_t fake;
    hop_spill_set_entry(s, slot, &fake);
    assert_int_equal(hop_spill_in_memory(s), 1);
    hop_spill_set_disk(s, slot, 3 * 600 + 7, 40);
    assert_int_equal(hop_spill_in_memory(s), 0);
    assert_ptr_equal(hop_spill_find_pos(s, 3 * 600 + 7), slot);
    hop_spill_destroy(&s);
}

// The queue with a spill ---------------------------------------------------------------------

// The fake store: a slot's position says which fill byte its body has; loads are counted and
// positions listed in s_fail fail to load.
static size_t s_loads;
static uint64_t s_fail = UINT64_MAX;

static hop_msg_t *
s_fake_load(void *arg, hop_queue_t *q, const hop_slot_t *slot, uint64_t *at, uint64_t *expires_at)
{
    (void)arg;
    (void)q;
    if (slot->pos == s_fail)
        return NULL;
    s_loads++;
    hop_msg_t *msg = qh_msg_with_body((char)('a' + slot->pos % 26));
    msg->body_len = hop_slot_body_len(slot);
    msg->persistent = true;
    *at = 77;
    *expires_at = UINT64_MAX;
    return msg;
}

static int
s_setup(void **state)
{
    (void)state;
    hop_queue_set_loader(s_fake_load, NULL);
    s_loads = 0;
    s_fail = UINT64_MAX;
    return 0;
}

static int
s_teardown(void **state)
{
    (void)state;
    hop_queue_set_loader(NULL, NULL);
    return 0;
}

// Past the window, pushes go to the spill; they come back in order as the head is taken.
static void
test_queue_spills_past_its_window_and_keeps_order(void **state)
{
    (void)state;
    hop_queue_t *q = qh_queue("q");
    hop_queue_enable_spill(q, 8);
    hop_entry_t *entries[40];
    qh_push_n(q, 40, entries);
    assert_int_equal(q->ready.size, 8);
    assert_int_equal(hop_spill_size(q->spills[0]), 32);
    assert_true(entries[8]->spilled && !entries[7]->spilled);
    qh_assert_ready(q, 40, 0); // qh_push_n's messages have no body
    for (uint64_t seq = 1; seq <= 40; seq++) {
        hop_entry_t *e = hop_queue_take(q, 5);
        assert_non_null(e);
        assert_int_equal(e->seq, seq);
        assert_false(e->spilled);
        assert_true(q->ready.size <= 8 || seq > 32);
        hop_queue_settle(q, e, true);
    }
    assert_null(hop_queue_take(q, 5));
    qh_assert_ready(q, 0, 0);
    hop_queue_destroy(&q);
}

// Slots on disk are read back through the loader, keep their seq and the recovered flag.
static void
test_on_disk_slots_are_read_back_through_the_loader(void **state)
{
    (void)state;
    hop_queue_t *q = qh_queue("q");
    hop_queue_enable_spill(q, 4);
    qh_push_n(q, 4, NULL);
    // As replay makes them: seqs go on from the queue's, the bodies stay on disk.
    for (uint64_t i = 0; i < 10; i++) {
        hop_spill_push_disk(q->spills[0], q->next_seq++, 100 + i, 200,
                            QH_BODY_SIZE | (i % 2 ? HOP_SLOT_RECOVERED : 0));
        q->ready_count++;
        q->ready_bytes += QH_BODY_SIZE;
    }
    qh_push_n(q, 2, NULL); // behind the spill, in memory
    qh_assert_ready(q, 16, 10 * QH_BODY_SIZE);
    for (uint64_t seq = 1; seq <= 16; seq++) {
        hop_entry_t *e = hop_queue_take(q, 9);
        assert_int_equal(e->seq, seq);
        if (seq > 4 && seq <= 14) {
            qh_assert_body(e->msg, (char)('a' + (100 + seq - 5) % 26));
            assert_int_equal(e->redelivered, (seq - 5) % 2 == 1);
        }
        hop_queue_settle(q, e, true);
    }
    assert_int_equal(s_loads, 10);
    qh_assert_ready(q, 0, 0);
    hop_queue_destroy(&q);
}

// A record that cannot be read back is lost (the loader logs it); the counters follow.
static void
test_unreadable_slot_is_dropped_from_the_counters(void **state)
{
    (void)state;
    hop_queue_t *q = qh_queue("q");
    hop_queue_enable_spill(q, 2);
    for (uint64_t i = 0; i < 5; i++) {
        hop_spill_push_disk(q->spills[0], q->next_seq++, 10 + i, 200, QH_BODY_SIZE);
        q->ready_count++;
        q->ready_bytes += QH_BODY_SIZE;
    }
    s_fail = 12;
    uint64_t seen[5];
    size_t n = 0;
    hop_entry_t *e;
    while ((e = hop_queue_take(q, 1))) {
        seen[n++] = e->seq;
        hop_queue_settle(q, e, true);
    }
    assert_int_equal(n, 4);
    assert_int_equal(seen[2], 4); // seq 3 (position 12) is gone
    qh_assert_ready(q, 0, 0);
    hop_queue_destroy(&q);
}

// Removing a spilled entry (an expiry or an ack replayed) leaves a hole behind.
static void
test_removing_a_spilled_entry_leaves_a_hole(void **state)
{
    (void)state;
    hop_queue_t *q = qh_queue("q");
    hop_queue_enable_spill(q, 2);
    hop_entry_t *entries[6];
    qh_push_n(q, 6, entries);
    hop_queue_remove(q, entries[3]);
    assert_false(entries[3]->spilled);
    hop_entry_destroy(&entries[3]);
    qh_assert_ready(q, 5, 0);
    uint64_t want[] = {1, 2, 3, 5, 6};
    for (size_t i = 0; i < 5; i++) {
        hop_entry_t *e = hop_queue_take(q, 1);
        assert_int_equal(e->seq, want[i]);
        hop_queue_settle(q, e, true);
    }
    hop_queue_destroy(&q);
}

// A requeued delivery goes back to its place, before what is still spilled.
static void
test_requeue_goes_before_the_spill(void **state)
{
    (void)state;
    hop_queue_t *q = qh_queue("q");
    hop_queue_enable_spill(q, 4);
    qh_push_n(q, 12, NULL);
    hop_entry_t *taken[4];
    for (int i = 0; i < 4; i++)
        taken[i] = hop_queue_take(q, 1);
    hop_queue_requeue(q, taken[2]);
    hop_queue_requeue(q, taken[0]);
    uint64_t want[] = {1, 3, 5, 6, 7, 8, 9, 10, 11, 12};
    for (size_t i = 0; i < 10; i++) {
        hop_entry_t *e = hop_queue_take(q, 1);
        assert_int_equal(e->seq, want[i]);
        hop_queue_settle(q, e, true);
    }
    hop_queue_settle(q, taken[1], true);
    hop_queue_settle(q, taken[3], true);
    qh_assert_ready(q, 0, 0);
    hop_queue_destroy(&q);
}

// Purge empties the spill too, in-memory entries freed (LSan checks), on-disk slots dropped.
static void
test_purge_and_destroy_free_the_spill(void **state)
{
    (void)state;
    hop_queue_t *q = qh_queue("q");
    hop_queue_enable_spill(q, 3);
    qh_push_n(q, 5, NULL);
    hop_spill_push_disk(q->spills[0], q->next_seq++, 50, 200, QH_BODY_SIZE);
    q->ready_count++;
    q->ready_bytes += QH_BODY_SIZE;
    qh_push_n(q, 2, NULL);
    assert_int_equal(hop_queue_purge(q), 8);
    qh_assert_ready(q, 0, 0);
    assert_int_equal(s_loads, 0); // nothing read back to be dropped
    qh_push_n(q, 9, NULL);
    hop_queue_destroy(&q); // the spill's entries go with it
}

// Walks that go past the window (peek, move) ask for one more at a time.
static void
test_fill_beyond_the_window_on_request(void **state)
{
    (void)state;
    hop_queue_t *q = qh_queue("q");
    hop_queue_enable_spill(q, 2);
    qh_push_n(q, 6, NULL);
    assert_int_equal(hop_queue_fill(q, 0, 0), 0); // the window is full
    assert_int_equal(hop_queue_fill(q, 0, 3), 1);
    assert_int_equal(q->ready.size, 3);
    assert_int_equal(hop_queue_fill(q, 0, 100), 3);
    assert_int_equal(hop_spill_size(q->spills[0]), 0);
    qh_assert_ready(q, 6, 0);
    hop_queue_destroy(&q);
}

// A priority queue spills per level: a high-priority message past its level's window still
// goes before every lower one, and each level keeps its own order.
static void
test_priority_levels_spill_each_in_order(void **state)
{
    (void)state;
    hop_queue_t *q = qh_pqueue(3);
    hop_queue_enable_spill(q, 2);
    // 6 of priority 1, then 6 of priority 3, then 6 of priority 0.
    uint8_t prio[] = {1, 3, 0};
    for (int k = 0; k < 3; k++)
        for (int i = 0; i < 6; i++)
            qh_push(q, prio[k], 10, 1);
    assert_int_equal(hop_spill_size(q->spills[1]), 4);
    assert_int_equal(hop_spill_size(q->spills[3]), 4);
    assert_int_equal(hop_spill_size(q->spills[0]), 4);
    qh_assert_ready(q, 18, 180);
    uint64_t want[] = {7, 8, 9, 10, 11, 12, 1, 2, 3, 4, 5, 6, 13, 14, 15, 16, 17, 18};
    // Peek's walk sees the same order as delivery, reading spilled ones back as it goes.
    size_t i = 0;
    for (hop_entry_t *e = hop_queue_next_ready(q, NULL); e; e = hop_queue_next_ready(q, e))
        assert_int_equal(e->seq, want[i++]);
    assert_int_equal(i, 18);
    for (i = 0; i < 18; i++) {
        hop_entry_t *e = hop_queue_take(q, 1);
        assert_int_equal(e->seq, want[i]);
        hop_queue_settle(q, e, true);
    }
    qh_assert_ready(q, 0, 0);
    hop_queue_destroy(&q);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_push_pop_in_order_across_chunks),
        cmocka_unit_test(test_memory_follows_the_live_span),
        cmocka_unit_test(test_holes_are_skipped_and_not_counted),
        cmocka_unit_test(test_find_by_seq_and_by_position),
        cmocka_unit_test_setup_teardown(test_queue_spills_past_its_window_and_keeps_order, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(test_on_disk_slots_are_read_back_through_the_loader,
                                        s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_unreadable_slot_is_dropped_from_the_counters, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(test_removing_a_spilled_entry_leaves_a_hole, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(test_requeue_goes_before_the_spill, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_purge_and_destroy_free_the_spill, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_fill_beyond_the_window_on_request, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(test_priority_levels_spill_each_in_order, s_setup,
                                        s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, qh_teardown_group);
}
