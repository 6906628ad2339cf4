// tests/unit/test_queue_guarantees.c - the queue's delivery guarantees: priority levels; take,
// untake, requeue and unsend across levels; delayed retries; length limits; TTL deadlines.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "queue_helpers.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

// Priorities ---------------------------------------------------------------------------------

static void
test_set_args_allocates_one_list_per_priority(void **state)
{
    (void)state;
    hop_queue_t *plain = qh_queue("plain");
    hop_queue_set_args(plain, &(hop_qargs_t){.max_length = 5});
    assert_null(plain->levels); // no max_priority: the base list only
    assert_int_equal(plain->args.max_length, 5);
    hop_queue_destroy(&plain);
    hop_queue_t *queue = qh_pqueue(255);
    assert_non_null(queue->levels);
    for (uint32_t p = 0; p <= 255; p++)
        qh_assert_list(qh_level(queue, p), NULL, 0);
    assert_null(hop_queue_head(queue));
    assert_null(hop_queue_oldest(queue));
    assert_null(hop_queue_take(queue, 0));
    hop_queue_destroy(&queue);
}

// The queue owns the strings in its arguments (LSan checks that destroy frees them).
static void
test_set_args_takes_the_strings(void **state)
{
    (void)state;
    hop_qargs_t args = {.dlx = hop_strndup("dlx", 3), .dlk = hop_strndup("dead", 4)};
    hop_queue_t *queue = qh_queue_with(&args);
    assert_ptr_equal(queue->args.dlx, args.dlx);
    assert_string_equal(queue->args.dlk, "dead");
    hop_queue_destroy(&queue);
}

static void
test_priority_higher_first_fifo_within_a_level(void **state)
{
    (void)state;
    hop_queue_t *queue = qh_pqueue(5);
    const uint8_t prio[] = {1, 3, 0, 3, 5, 1, 0, 5};
    hop_entry_t *e[8];
    for (int i = 0; i < 8; i++)
        e[i] = qh_push(queue, prio[i], 10, 0);
    qh_assert_list(qh_level(queue, 0), (uint64_t[]){3, 7}, 2);
    qh_assert_list(qh_level(queue, 1), (uint64_t[]){1, 6}, 2);
    qh_assert_list(qh_level(queue, 2), NULL, 0);
    qh_assert_list(qh_level(queue, 3), (uint64_t[]){2, 4}, 2);
    qh_assert_list(qh_level(queue, 4), NULL, 0);
    qh_assert_list(qh_level(queue, 5), (uint64_t[]){5, 8}, 2);
    qh_assert_ready(queue, 8, 80);
    assert_int_equal(queue->published, 8);
    const int order[] = {4, 7, 1, 3, 0, 5, 2, 6}; // by priority, then by seq
    for (int i = 0; i < 8; i++) {
        assert_ptr_equal(hop_queue_head(queue), e[order[i]]);
        assert_ptr_equal(hop_queue_take(queue, 0), e[order[i]]);
        qh_assert_ready(queue, (size_t)(7 - i), (uint64_t)(7 - i) * 10);
    }
    assert_null(hop_queue_head(queue));
    assert_null(hop_queue_take(queue, 0));
    assert_int_equal(queue->delivered, 8);
    qh_assert_list(&queue->unacked, (uint64_t[]){5, 8, 2, 4, 1, 6, 3, 7}, 8);
    hop_queue_destroy(&queue);
    for (int i = 0; i < 8; i++)
        hop_entry_destroy(&e[i]); // orphaned by destroy
}

static void
test_priority_above_max_is_clamped_to_max(void **state)
{
    (void)state;
    hop_queue_t *queue = qh_pqueue(3);
    hop_entry_t *a = qh_push(queue, 200, 1, 0);
    hop_entry_t *b = qh_push(queue, 3, 1, 0);
    hop_entry_t *c = qh_push(queue, 255, 1, 0);
    hop_entry_t *d = qh_push(queue, 4, 1, 0);
    qh_push(queue, 2, 1, 0);
    qh_assert_list(qh_level(queue, 3), (uint64_t[]){1, 2, 3, 4}, 4); // one level, FIFO
    qh_assert_list(qh_level(queue, 2), (uint64_t[]){5}, 1);
    assert_int_equal(a->msg->priority, 200); // the message keeps what was published
    assert_ptr_equal(hop_queue_take(queue, 0), a);
    assert_ptr_equal(hop_queue_take(queue, 0), b);
    hop_queue_requeue(queue, a); // back into the clamped level, at its place
    qh_assert_list(qh_level(queue, 3), (uint64_t[]){1, 3, 4}, 3);
    assert_ptr_equal(hop_queue_take(queue, 0), a);
    assert_ptr_equal(hop_queue_take(queue, 0), c);
    assert_ptr_equal(hop_queue_take(queue, 0), d);
    qh_assert_ready(queue, 1, 1);
    while (queue->unacked.head)
        hop_queue_settle(queue, queue->unacked.head, true);
    hop_queue_destroy(&queue);
}

static void
test_priority_zero_goes_to_the_base_list(void **state)
{
    (void)state;
    hop_queue_t *queue = qh_pqueue(2);
    hop_entry_t *low = qh_push(queue, 0, 7, 0);
    qh_assert_list(&queue->ready, (uint64_t[]){1}, 1);
    qh_assert_list(qh_level(queue, 1), NULL, 0);
    qh_assert_list(qh_level(queue, 2), NULL, 0);
    assert_ptr_equal(hop_queue_head(queue), low);
    hop_entry_t *high = qh_push(queue, 1, 3, 0);
    assert_ptr_equal(hop_queue_head(queue), high); // any priority goes before none
    assert_ptr_equal(hop_queue_oldest(queue), low);
    qh_assert_ready(queue, 2, 10);
    hop_queue_destroy(&queue);
}

static void
test_priority_is_ignored_without_max_priority(void **state)
{
    (void)state;
    hop_queue_t *queue = qh_queue("q");
    hop_entry_t *e[3];
    e[0] = qh_push(queue, 0, 1, 0);
    e[1] = qh_push(queue, 9, 2, 0);
    e[2] = qh_push(queue, 255, 4, 0);
    qh_assert_list(&queue->ready, (uint64_t[]){1, 2, 3}, 3);
    qh_assert_ready(queue, 3, 7);
    for (int i = 0; i < 3; i++)
        assert_ptr_equal(hop_queue_take(queue, 0), e[i]); // plain FIFO
    hop_queue_requeue(queue, e[1]);
    qh_assert_list(&queue->ready, (uint64_t[]){2}, 1);
    qh_assert_ready(queue, 1, 2);
    hop_queue_settle(queue, e[0], true);
    hop_queue_settle(queue, e[2], true);
    hop_queue_destroy(&queue);
}

// Drop-head drops the oldest message whatever its priority.
static void
test_oldest_is_the_lowest_seq_over_all_levels(void **state)
{
    (void)state;
    hop_queue_t *queue = qh_pqueue(3);
    hop_entry_t *e[5];
    e[0] = qh_push(queue, 2, 1, 0); // seq 1
    e[1] = qh_push(queue, 0, 1, 0); // seq 2
    e[2] = qh_push(queue, 3, 1, 0); // seq 3
    e[3] = qh_push(queue, 1, 1, 0); // seq 4
    e[4] = qh_push(queue, 0, 1, 0); // seq 5
    assert_ptr_equal(hop_queue_head(queue), e[2]);
    assert_ptr_equal(hop_queue_oldest(queue), e[0]);
    hop_queue_remove(queue, e[0]);
    hop_entry_destroy(&e[0]);
    assert_ptr_equal(hop_queue_oldest(queue), e[1]); // in the base list
    hop_queue_remove(queue, e[1]);
    hop_entry_destroy(&e[1]);
    assert_ptr_equal(hop_queue_oldest(queue), e[2]); // in the top level
    assert_ptr_equal(hop_queue_take(queue, 0), e[2]);
    assert_ptr_equal(hop_queue_oldest(queue), e[3]);
    hop_queue_requeue(queue, e[2]); // requeued: the oldest again, by its original seq
    assert_ptr_equal(hop_queue_oldest(queue), e[2]);
    hop_queue_remove(queue, e[2]);
    hop_entry_destroy(&e[2]);
    hop_queue_remove(queue, e[3]);
    hop_entry_destroy(&e[3]);
    assert_ptr_equal(hop_queue_oldest(queue), e[4]);
    hop_queue_remove(queue, e[4]);
    hop_entry_destroy(&e[4]);
    assert_null(hop_queue_oldest(queue));
    assert_null(hop_queue_head(queue));
    qh_assert_ready(queue, 0, 0);
    hop_queue_destroy(&queue);
}

static void
test_remove_unlinks_a_ready_entry_and_counts_it_out(void **state)
{
    (void)state;
    hop_queue_t *queue = qh_pqueue(1);
    hop_entry_t *e[5];
    for (int i = 0; i < 5; i++)
        e[i] = qh_push(queue, (uint8_t)(i % 2), (uint32_t)(i + 1) * 100, 0);
    qh_assert_ready(queue, 5, 1500);
    hop_queue_remove(queue, e[2]); // middle of the base list
    assert_null(e[2]->prev);
    assert_null(e[2]->next);
    qh_assert_list(&queue->ready, (uint64_t[]){1, 5}, 2);
    qh_assert_ready(queue, 4, 1200);
    hop_queue_remove(queue, e[3]); // tail of level 1
    qh_assert_list(qh_level(queue, 1), (uint64_t[]){2}, 1);
    hop_queue_remove(queue, e[0]); // head of the base list
    qh_assert_list(&queue->ready, (uint64_t[]){5}, 1);
    qh_assert_ready(queue, 2, 700);
    assert_int_equal(queue->published, 5); // removal is not "unpublishing"
    hop_entry_destroy(&e[0]);              // the caller owns removed entries
    hop_entry_destroy(&e[2]);
    hop_entry_destroy(&e[3]);
    hop_queue_destroy(&queue);
}

// Take, untake, requeue and unsend: positions and counters ------------------------------------

static void
test_take_records_delivery_time_and_counts(void **state)
{
    (void)state;
    hop_queue_t *queue = qh_pqueue(2);
    hop_entry_t *a = qh_push(queue, 0, 30, 100);
    hop_entry_t *b = qh_push(queue, 2, 50, 120);
    assert_int_equal(a->at, 100); // ready since
    assert_int_equal(b->at, 120);
    qh_assert_ready(queue, 2, 80);
    assert_ptr_equal(hop_queue_take(queue, 250), b);
    assert_int_equal(b->at, 250);
    assert_int_equal(b->deliveries, 1);
    assert_true(b->unacked);
    qh_assert_ready(queue, 1, 30);
    assert_ptr_equal(hop_queue_take(queue, 260), a);
    assert_int_equal(a->at, 260);
    qh_assert_ready(queue, 0, 0);
    assert_int_equal(queue->delivered, 2);
    qh_assert_list(&queue->unacked, (uint64_t[]){2, 1}, 2); // delivery order
    hop_queue_settle(queue, a, true);
    hop_queue_settle(queue, b, false);
    assert_int_equal(queue->acked, 1);
    hop_queue_destroy(&queue);
}

static void
test_untake_returns_to_the_head_of_its_level(void **state)
{
    (void)state;
    hop_queue_t *queue = qh_pqueue(2);
    qh_push(queue, 2, 5, 0);
    qh_push(queue, 1, 6, 0);
    qh_push(queue, 2, 7, 0);
    hop_entry_t *e = hop_queue_take(queue, 10);
    assert_int_equal(e->seq, 1);
    qh_assert_ready(queue, 2, 13);
    hop_queue_untake(queue, e);
    qh_assert_list(qh_level(queue, 2), (uint64_t[]){1, 3}, 2);
    qh_assert_list(qh_level(queue, 1), (uint64_t[]){2}, 1);
    qh_assert_list(&queue->unacked, NULL, 0);
    qh_assert_ready(queue, 3, 18);
    assert_int_equal(queue->delivered, 0);
    assert_int_equal(e->deliveries, 0);
    assert_ptr_equal(hop_queue_head(queue), e);
    hop_queue_destroy(&queue);
}

static void
test_requeue_goes_back_into_its_level_at_its_original_position(void **state)
{
    (void)state;
    hop_queue_t *queue = qh_pqueue(2);
    hop_entry_t *e[6];
    const uint8_t prio[] = {2, 1, 2, 2, 1, 0};
    for (int i = 0; i < 6; i++)
        e[i] = qh_push(queue, prio[i], (uint32_t)(i + 1), 0); // bytes 1..6: 21 in all
    assert_ptr_equal(hop_queue_take(queue, 1), e[0]);
    assert_ptr_equal(hop_queue_take(queue, 2), e[2]);
    assert_ptr_equal(hop_queue_take(queue, 3), e[3]);
    assert_ptr_equal(hop_queue_take(queue, 4), e[1]);
    qh_assert_ready(queue, 2, 11);
    hop_queue_requeue(queue, e[2]); // level 2 was empty
    qh_assert_list(qh_level(queue, 2), (uint64_t[]){3}, 1);
    hop_queue_requeue(queue, e[0]); // before it
    qh_assert_list(qh_level(queue, 2), (uint64_t[]){1, 3}, 2);
    hop_queue_requeue(queue, e[1]); // level 1: before the never-delivered 5
    qh_assert_list(qh_level(queue, 1), (uint64_t[]){2, 5}, 2);
    qh_assert_list(&queue->ready, (uint64_t[]){6}, 1);
    qh_assert_list(&queue->unacked, (uint64_t[]){4}, 1);
    qh_assert_ready(queue, 5, 17);
    assert_int_equal(queue->delivered, 4); // requeue does not undo the delivery
    for (int i = 0; i < 3; i++) {
        assert_true(e[i]->redelivered);
        assert_int_equal(e[i]->deliveries, 1);
    }
    hop_queue_requeue(queue, e[3]); // after everything in level 2: the new tail
    qh_assert_list(qh_level(queue, 2), (uint64_t[]){1, 3, 4}, 3);
    qh_assert_ready(queue, 6, 21);
    const int order[] = {0, 2, 3, 1, 4, 5};
    for (int i = 0; i < 6; i++)
        assert_ptr_equal(hop_queue_take(queue, 9), e[order[i]]);
    assert_int_equal(queue->delivered, 10);
    hop_queue_destroy(&queue);
    for (int i = 0; i < 6; i++)
        hop_entry_destroy(&e[i]);
}

// A batch that could not be sent goes back as if it had never been taken.
static void
test_unsend_restores_position_flags_and_counters(void **state)
{
    (void)state;
    hop_queue_t *queue = qh_pqueue(1);
    hop_entry_t *e[4];
    for (int i = 0; i < 4; i++)
        e[i] = qh_push(queue, (uint8_t)(i == 3), 10, 0); // 1, 2, 3 base; 4 level 1
    assert_ptr_equal(hop_queue_take(queue, 5), e[3]);
    hop_queue_requeue(queue, e[3]); // redelivered from now on
    for (int i = 0; i < 3; i++)
        hop_queue_take(queue, 5); // 4 (again), 1, 2
    assert_int_equal(queue->delivered, 4);
    qh_assert_ready(queue, 1, 10);
    // Newest first, as hop_deliver_flush does.
    hop_queue_unsend(queue, e[1]);
    hop_queue_unsend(queue, e[0]);
    hop_queue_unsend(queue, e[3]);
    qh_assert_list(&queue->ready, (uint64_t[]){1, 2, 3}, 3);
    qh_assert_list(qh_level(queue, 1), (uint64_t[]){4}, 1);
    qh_assert_list(&queue->unacked, NULL, 0);
    qh_assert_ready(queue, 4, 40);
    assert_int_equal(queue->delivered, 1); // only the first delivery of 4 stands
    assert_false(e[0]->redelivered);       // never really delivered
    assert_false(e[1]->redelivered);
    assert_int_equal(e[0]->deliveries, 0);
    assert_true(e[3]->redelivered); // it was, before the failed send
    assert_int_equal(e[3]->deliveries, 1);
    assert_int_equal(e[0]->tag, 0);
    assert_null(e[0]->consumer);
    hop_queue_destroy(&queue);
}

static void
test_unlink_leaves_the_entry_in_no_list(void **state)
{
    (void)state;
    hop_queue_t *queue = qh_pqueue(1);
    qh_push(queue, 1, 10, 0);
    qh_push(queue, 1, 20, 0);
    hop_entry_t *e = hop_queue_take(queue, 0);
    hop_consumer_t c;
    memset(&c, 0, sizeof c);
    e->consumer = &c;
    e->tag = 7;
    hop_queue_unlink(queue, e);
    assert_false(e->unacked);
    assert_false(e->delayed);
    assert_null(e->consumer);
    assert_int_equal(e->tag, 0);
    assert_null(e->prev);
    assert_null(e->next);
    qh_assert_list(&queue->unacked, NULL, 0);
    qh_assert_list(qh_level(queue, 1), (uint64_t[]){2}, 1);
    qh_assert_ready(queue, 1, 20);
    assert_int_equal(queue->delivered, 1);
    assert_int_equal(queue->acked, 0);
    assert_ptr_equal(e->queue, queue); // still names its queue (for the dead letter)
    hop_entry_destroy(&e);             // the caller dead-letters or destroys it
    hop_queue_destroy(&queue);
}

// Delayed retries ----------------------------------------------------------------------------

// Takes every ready entry (delivered at now), in order, into out[].
static size_t
s_take_all(hop_queue_t *queue, hop_entry_t **out, uint64_t now)
{
    size_t n = 0;
    for (hop_entry_t *e; (e = hop_queue_take(queue, now));)
        out[n++] = e;
    return n;
}

// Checks the delayed list holds exactly the entries with seqs, in order, due at the given
// times, flagged delayed and in no other state.
static void
s_assert_delayed(const hop_queue_t *queue, const uint64_t *seqs, const uint64_t *due, size_t n)
{
    qh_assert_list(&queue->delayed, seqs, n);
    size_t i = 0;
    for (const hop_entry_t *e = queue->delayed.head; e; e = e->next, i++) {
        assert_int_equal(e->at, due[i]);
        assert_true(e->delayed);
        assert_false(e->unacked);
        assert_true(e->redelivered);
        assert_int_equal(e->tag, 0);
        assert_null(e->consumer);
    }
}

static void
test_delay_sorts_by_due_time(void **state)
{
    (void)state;
    hop_queue_t *queue = qh_queue("q");
    hop_entry_t *e[6];
    qh_push_n(queue, 6, NULL);
    assert_int_equal(s_take_all(queue, e, 1), 6);
    hop_consumer_t c;
    memset(&c, 0, sizeof c);
    for (int i = 0; i < 6; i++) {
        e[i]->consumer = &c;
        e[i]->tag = (uint64_t)i + 1;
    }
    hop_queue_delay(queue, e[0], 50); // into the empty list
    s_assert_delayed(queue, (uint64_t[]){1}, (uint64_t[]){50}, 1);
    hop_queue_delay(queue, e[1], 30); // before the head
    s_assert_delayed(queue, (uint64_t[]){2, 1}, (uint64_t[]){30, 50}, 2);
    hop_queue_delay(queue, e[2], 50); // equal to the tail: after it (first delayed, first due)
    s_assert_delayed(queue, (uint64_t[]){2, 1, 3}, (uint64_t[]){30, 50, 50}, 3);
    hop_queue_delay(queue, e[3], 30); // equal to the head: after it, not before
    s_assert_delayed(queue, (uint64_t[]){2, 4, 1, 3}, (uint64_t[]){30, 30, 50, 50}, 4);
    hop_queue_delay(queue, e[4], 40); // in the middle
    s_assert_delayed(queue, (uint64_t[]){2, 4, 5, 1, 3}, (uint64_t[]){30, 30, 40, 50, 50}, 5);
    hop_queue_delay(queue, e[5], 10); // before the head again
    s_assert_delayed(queue, (uint64_t[]){6, 2, 4, 5, 1, 3}, (uint64_t[]){10, 30, 30, 40, 50, 50},
                     6);
    qh_assert_list(&queue->unacked, NULL, 0);
    qh_assert_ready(queue, 0, 0);
    assert_int_equal(queue->delivered, 6); // a delayed retry was a delivery all the same
    for (int i = 0; i < 6; i++)
        assert_int_equal(e[i]->deliveries, 1);
    assert_null(hop_queue_head(queue)); // delayed entries are not ready
    assert_null(hop_queue_take(queue, 2));
    hop_queue_destroy(&queue); // frees the delayed entries (LSan)
}

static void
test_undelay_restores_seq_order_among_ready_entries(void **state)
{
    (void)state;
    hop_queue_t *queue = qh_queue("q");
    hop_entry_t *e[6];
    qh_push_n(queue, 6, e); // bodies of 0 bytes: qh_push_n has no body
    for (int i = 0; i < 4; i++)
        hop_queue_take(queue, 1); // 1..4
    hop_queue_delay(queue, e[1], 10);
    hop_queue_delay(queue, e[3], 5);
    hop_queue_requeue(queue, e[2]);
    qh_assert_list(&queue->ready, (uint64_t[]){3, 5, 6}, 3);
    s_assert_delayed(queue, (uint64_t[]){4, 2}, (uint64_t[]){5, 10}, 2);
    hop_queue_undelay(queue, queue->delayed.head); // 4: between 3 and 5
    qh_assert_list(&queue->ready, (uint64_t[]){3, 4, 5, 6}, 4);
    assert_false(e[3]->delayed);
    assert_false(e[3]->unacked);
    assert_true(e[3]->redelivered);
    assert_int_equal(e[3]->at, 5);  // when it became ready again
    hop_queue_undelay(queue, e[1]); // 2: the new head
    qh_assert_list(&queue->ready, (uint64_t[]){2, 3, 4, 5, 6}, 5);
    qh_assert_list(&queue->delayed, NULL, 0);
    qh_assert_list(&queue->unacked, (uint64_t[]){1}, 1);
    qh_assert_ready(queue, 5, 0);
    assert_ptr_equal(hop_queue_take(queue, 20), e[1]);
    assert_int_equal(e[1]->deliveries, 2);
    assert_int_equal(queue->delivered, 5);
    hop_queue_destroy(&queue);
    hop_entry_destroy(&e[0]);
    hop_entry_destroy(&e[1]);
}

static void
test_undelay_goes_into_its_priority_level(void **state)
{
    (void)state;
    hop_queue_t *queue = qh_pqueue(3);
    hop_entry_t *a = qh_push(queue, 3, 11, 0); // 1
    hop_entry_t *b = qh_push(queue, 1, 22, 0); // 2
    qh_push(queue, 3, 33, 0);                  // 3
    qh_push(queue, 1, 44, 0);                  // 4
    assert_ptr_equal(hop_queue_take(queue, 1), a);
    hop_queue_delay(queue, a, 8);
    hop_entry_t *third = hop_queue_take(queue, 2);
    assert_int_equal(third->seq, 3);
    assert_ptr_equal(hop_queue_take(queue, 3), b);
    hop_queue_delay(queue, b, 8);
    s_assert_delayed(queue, (uint64_t[]){1, 2}, (uint64_t[]){8, 8}, 2);
    qh_assert_ready(queue, 1, 44);
    hop_queue_undelay(queue, b); // not the head: any delayed entry may go
    qh_assert_list(qh_level(queue, 1), (uint64_t[]){2, 4}, 2);
    s_assert_delayed(queue, (uint64_t[]){1}, (uint64_t[]){8}, 1);
    hop_queue_undelay(queue, a);
    qh_assert_list(qh_level(queue, 3), (uint64_t[]){1}, 1);
    qh_assert_ready(queue, 3, 77);
    assert_ptr_equal(hop_queue_head(queue), a);
    hop_queue_settle(queue, third, true);
    hop_queue_destroy(&queue);
}

static void
test_undelay_into_an_empty_ready_list(void **state)
{
    (void)state;
    hop_queue_t *queue = qh_queue("q");
    hop_entry_t *e[2];
    qh_push_n(queue, 2, e);
    hop_queue_take(queue, 0);
    hop_queue_take(queue, 0);
    hop_queue_delay(queue, e[1], 3);
    hop_queue_undelay(queue, e[1]);
    qh_assert_list(&queue->ready, (uint64_t[]){2}, 1);
    hop_queue_requeue(queue, e[0]); // before it
    qh_assert_list(&queue->ready, (uint64_t[]){1, 2}, 2);
    qh_push_n(queue, 1, NULL); // after it: the tail was kept
    qh_assert_list(&queue->ready, (uint64_t[]){1, 2, 3}, 3);
    qh_assert_ready(queue, 3, 0);
    hop_queue_destroy(&queue);
}

// Limits ---------------------------------------------------------------------------------------

static void
test_full_at_exactly_max_length(void **state)
{
    (void)state;
    hop_queue_t *queue = qh_queue_with(&(hop_qargs_t){.max_length = 3});
    assert_false(hop_queue_full(queue, 0));
    qh_push(queue, 0, 1000, 0);
    qh_push(queue, 0, 1000, 0);
    assert_false(hop_queue_full(queue, 1000000)); // a third fits: bytes are not limited
    qh_push(queue, 0, 1000, 0);
    assert_true(hop_queue_full(queue, 0)); // 3 of 3: one more would be over
    hop_entry_t *e = hop_queue_take(queue, 0);
    assert_false(hop_queue_full(queue, 0)); // unacked messages do not count
    hop_queue_requeue(queue, e);
    assert_true(hop_queue_full(queue, 0));
    hop_queue_destroy(&queue);
}

static void
test_full_at_exactly_max_length_bytes(void **state)
{
    (void)state;
    hop_queue_t *queue = qh_queue_with(&(hop_qargs_t){.max_length_bytes = 100});
    assert_false(hop_queue_full(queue, 100)); // exactly the limit fits
    assert_true(hop_queue_full(queue, 101));
    qh_push(queue, 0, 60, 0);
    assert_false(hop_queue_full(queue, 40));
    assert_true(hop_queue_full(queue, 41));
    qh_push(queue, 0, 40, 0);
    assert_int_equal(queue->ready_bytes, 100);
    assert_false(hop_queue_full(queue, 0)); // an empty body still fits at the limit
    assert_true(hop_queue_full(queue, 1));
    for (int i = 0; i < 50; i++)
        qh_push(queue, 0, 0, 0); // the count is not limited
    assert_false(hop_queue_full(queue, 0));
    hop_entry_t *e = hop_queue_take(queue, 0); // the 60-byte one
    assert_false(hop_queue_full(queue, 60));
    assert_true(hop_queue_full(queue, 61));
    hop_queue_requeue(queue, e);
    assert_true(hop_queue_full(queue, 1));
    hop_queue_destroy(&queue);
}

static void
test_full_when_either_limit_is_reached(void **state)
{
    (void)state;
    hop_queue_t *queue = qh_queue_with(&(hop_qargs_t){.max_length = 2, .max_length_bytes = 10});
    qh_push(queue, 0, 9, 0);
    assert_false(hop_queue_full(queue, 1));
    assert_true(hop_queue_full(queue, 2)); // bytes
    qh_push(queue, 0, 0, 0);
    assert_true(hop_queue_full(queue, 0)); // count
    hop_queue_destroy(&queue);
}

static void
test_full_never_without_limits(void **state)
{
    (void)state;
    hop_queue_t *queue = qh_queue("q");
    for (int i = 0; i < 100; i++)
        qh_push(queue, 0, UINT32_MAX, 0);
    assert_int_equal(queue->ready_bytes, 100 * (uint64_t)UINT32_MAX);
    assert_false(hop_queue_full(queue, SIZE_MAX / 2));
    hop_queue_destroy(&queue);
}

// TTL ----------------------------------------------------------------------------------------

// Pushes a message at now with a per-message TTL (when has_ttl, else HOP_TTL_NONE); returns
// its expires_at.
static uint64_t
s_expires_at(hop_queue_t *queue, bool has_ttl, uint32_t ttl, uint64_t now)
{
    hop_msg_t *msg = hop_msg_new();
    hop_entry_t *e = hop_queue_push(queue, msg, now, has_ttl ? ttl : HOP_TTL_NONE);
    assert_int_equal(e->at, now);
    return e->expires_at;
}

static void
test_expires_at_without_any_ttl_is_never(void **state)
{
    (void)state;
    hop_queue_t *queue = qh_queue("q");
    assert_int_equal(s_expires_at(queue, false, 0, 1000), UINT64_MAX);
    assert_int_equal(s_expires_at(queue, false, 500, 1000), UINT64_MAX); // ttl without has_ttl
    hop_queue_destroy(&queue);
    // message_ttl without has_ttl is not set either.
    queue = qh_queue_with(&(hop_qargs_t){.message_ttl = 500});
    assert_int_equal(s_expires_at(queue, false, 0, 1000), UINT64_MAX);
    hop_queue_destroy(&queue);
}

static void
test_expires_at_from_the_message_ttl(void **state)
{
    (void)state;
    hop_queue_t *queue = qh_queue("q");
    assert_int_equal(s_expires_at(queue, true, 500, 1000), 1500);
    assert_int_equal(s_expires_at(queue, true, 0, 1000), 1000); // 0 is a TTL: expire at once
    assert_int_equal(s_expires_at(queue, true, UINT32_MAX, 7), 7 + (uint64_t)UINT32_MAX);
    hop_queue_destroy(&queue);
}

static void
test_expires_at_from_the_queue_message_ttl(void **state)
{
    (void)state;
    hop_queue_t *queue = qh_queue_with(&(hop_qargs_t){.has_ttl = true, .message_ttl = 300});
    assert_int_equal(s_expires_at(queue, false, 0, 1000), 1300);
    assert_int_equal(s_expires_at(queue, false, 0, 2000), 2300);
    hop_queue_destroy(&queue);
    queue = qh_queue_with(&(hop_qargs_t){.has_ttl = true, .message_ttl = 0});
    assert_int_equal(s_expires_at(queue, false, 0, 1000), 1000);
    hop_queue_destroy(&queue);
    queue = qh_queue_with(&(hop_qargs_t){.has_ttl = true, .message_ttl = UINT32_MAX});
    assert_int_equal(s_expires_at(queue, false, 0, 1), 1 + (uint64_t)UINT32_MAX);
    hop_queue_destroy(&queue);
}

static void
test_expires_at_takes_the_shorter_of_both(void **state)
{
    (void)state;
    hop_queue_t *queue = qh_queue_with(&(hop_qargs_t){.has_ttl = true, .message_ttl = 300});
    assert_int_equal(s_expires_at(queue, true, 100, 1000), 1100); // the message's
    assert_int_equal(s_expires_at(queue, true, 301, 1000), 1300); // the queue's
    assert_int_equal(s_expires_at(queue, true, 300, 1000), 1300); // equal
    assert_int_equal(s_expires_at(queue, true, 0, 1000), 1000);
    hop_queue_destroy(&queue);
    queue = qh_queue_with(&(hop_qargs_t){.has_ttl = true, .message_ttl = 0});
    assert_int_equal(s_expires_at(queue, true, 100, 1000), 1000);
    hop_queue_destroy(&queue);
}

// A requeue or a delay keeps the deadline the message was published with.
static void
test_expires_at_survives_requeue_and_delay(void **state)
{
    (void)state;
    hop_queue_t *queue = qh_queue_with(&(hop_qargs_t){.has_ttl = true, .message_ttl = 300});
    qh_push(queue, 0, 0, 1000);
    hop_entry_t *e = hop_queue_take(queue, 1100);
    hop_queue_requeue(queue, e);
    assert_int_equal(e->expires_at, 1300);
    hop_queue_take(queue, 1200);
    hop_queue_delay(queue, e, 1250);
    assert_int_equal(e->expires_at, 1300);
    hop_queue_undelay(queue, e);
    assert_int_equal(e->expires_at, 1300);
    hop_queue_destroy(&queue);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_set_args_allocates_one_list_per_priority),
        cmocka_unit_test(test_set_args_takes_the_strings),
        cmocka_unit_test(test_priority_higher_first_fifo_within_a_level),
        cmocka_unit_test(test_priority_above_max_is_clamped_to_max),
        cmocka_unit_test(test_priority_zero_goes_to_the_base_list),
        cmocka_unit_test(test_priority_is_ignored_without_max_priority),
        cmocka_unit_test(test_oldest_is_the_lowest_seq_over_all_levels),
        cmocka_unit_test(test_remove_unlinks_a_ready_entry_and_counts_it_out),
        cmocka_unit_test(test_take_records_delivery_time_and_counts),
        cmocka_unit_test(test_untake_returns_to_the_head_of_its_level),
        cmocka_unit_test(test_requeue_goes_back_into_its_level_at_its_original_position),
        cmocka_unit_test(test_unsend_restores_position_flags_and_counters),
        cmocka_unit_test(test_unlink_leaves_the_entry_in_no_list),
        cmocka_unit_test(test_delay_sorts_by_due_time),
        cmocka_unit_test(test_undelay_restores_seq_order_among_ready_entries),
        cmocka_unit_test(test_undelay_goes_into_its_priority_level),
        cmocka_unit_test(test_undelay_into_an_empty_ready_list),
        cmocka_unit_test(test_full_at_exactly_max_length),
        cmocka_unit_test(test_full_at_exactly_max_length_bytes),
        cmocka_unit_test(test_full_when_either_limit_is_reached),
        cmocka_unit_test(test_full_never_without_limits),
        cmocka_unit_test(test_expires_at_without_any_ttl_is_never),
        cmocka_unit_test(test_expires_at_from_the_message_ttl),
        cmocka_unit_test(test_expires_at_from_the_queue_message_ttl),
        cmocka_unit_test(test_expires_at_takes_the_shorter_of_both),
        cmocka_unit_test(test_expires_at_survives_requeue_and_delay),
    };
    return cmocka_run_group_tests(tests, NULL, qh_teardown_group);
}
