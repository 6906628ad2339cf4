// tests/unit/test_queue.c - message records, queue lists, requeue order, settle and purge,
// round-robin consumer selection and destroy (PROTOCOL.md 4.5, 4.6 and 6). Priority levels,
// limits, TTL deadlines and delayed retries are in test_queue_guarantees.c; the randomized
// model runs and every list at once in test_queue_model.c.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "queue_helpers.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

// Records --------------------------------------------------------------------------------

static void
test_msg_new_has_empty_frames_and_no_refs(void **state)
{
    (void)state;
    hop_msg_t *msg = hop_msg_new();
    assert_int_equal(msg->refs, 0);
    assert_null(msg->frames);
    assert_false(msg->entry_used);
    assert_true(!msg->exchange && !msg->key && !msg->props);
    hop_msg_release(msg);
}

// Messages of one batch share one frames holder; it lives until the last of them goes.
static void
test_frames_are_shared_until_the_last_message_goes(void **state)
{
    (void)state;
    hop_frames_t *frames = hop_frames_new();
    assert_int_equal(zmq_msg_init_size(&frames->header, QH_BODY_SIZE), 0);
    memset(zmq_msg_data(&frames->header), 'f', QH_BODY_SIZE);
    frames->refs = 1; // the batch loop's own reference
    hop_msg_t *a = hop_msg_new(), *b = hop_msg_new();
    hop_msg_attach(a, frames);
    hop_msg_attach(b, frames);
    hop_entry_t *ea = hop_entry_new(a), *eb = hop_entry_new(b);
    hop_frames_release(frames); // the loop is done
    assert_int_equal(frames->refs, 2);
    hop_entry_destroy(&ea);
    assert_int_equal(frames->refs, 1);
    assert_int_equal(((const char *)zmq_msg_data(&frames->header))[QH_BODY_SIZE - 1], 'f');
    hop_entry_destroy(&eb); // last one: holder recycled, frame closed (LSan checks)
    assert_ptr_equal(hop_frames_new(), frames);
    hop_frames_release(frames);
}

// The first queue's entry lives inside the message record; a second queue gets its own. The
// message outlives whichever entry goes first, and its embedded slot can be reused.
static void
test_first_entry_is_embedded_in_the_message(void **state)
{
    (void)state;
    hop_msg_t *msg = qh_msg_with_body('e');
    hop_entry_t *first = hop_entry_new(msg);
    hop_entry_t *second = hop_entry_new(msg);
    assert_ptr_equal(first, &msg->entry);
    assert_true(first->embedded);
    assert_false(second->embedded);
    assert_int_equal(msg->refs, 2);
    hop_entry_destroy(&first); // the embedded one first: msg must survive for second
    assert_false(msg->entry_used);
    assert_int_equal(msg->refs, 1);
    qh_assert_body(msg, 'e');
    hop_entry_t *third = hop_entry_new(msg); // the slot is free again
    assert_ptr_equal(third, &msg->entry);
    hop_entry_destroy(&second);
    qh_assert_body(msg, 'e');
    hop_entry_destroy(&third);
}

static void
test_entry_new_takes_a_reference(void **state)
{
    (void)state;
    hop_msg_t *msg = qh_msg_with_body('e');
    hop_entry_t *a = hop_entry_new(msg);
    hop_entry_t *b = hop_entry_new(msg);
    assert_ptr_equal(a->msg, msg);
    assert_int_equal(msg->refs, 2);
    assert_null(a->queue);
    assert_false(a->unacked);
    hop_entry_destroy(&a);
    assert_null(a);
    assert_int_equal(msg->refs, 1);
    qh_assert_body(msg, 'e');
    hop_entry_destroy(&b);
    hop_entry_destroy(&b); // accepts NULL
}

static void
test_released_records_are_reused(void **state)
{
    (void)state;
    hop_msg_t *msg = hop_msg_new();
    hop_msg_release(msg);
    assert_ptr_equal(hop_msg_new(), msg); // steady state does no malloc
    hop_entry_t *e = hop_entry_new(msg);
    hop_entry_t *old = e;
    e->tag = 99;
    e->redelivered = true;
    hop_entry_destroy(&e);
    msg = hop_msg_new();
    e = hop_entry_new(msg);
    assert_ptr_equal(e, old);
    assert_int_equal(e->tag, 0); // recycled records come back cleared
    assert_false(e->redelivered);
    hop_entry_destroy(&e);
}

// Queue lists -------------------------------------------------------------------------------

static void
test_new_copies_name_and_starts_empty(void **state)
{
    (void)state;
    char name[] = "jobs-and-more";
    hop_queue_t *queue = hop_queue_new(name, 4);
    name[0] = 'X';
    assert_string_equal(queue->name, "jobs");
    assert_int_equal(queue->name_len, 4);
    assert_int_equal(queue->ready.size, 0);
    assert_int_equal(queue->unacked.size, 0);
    assert_null(queue->consumers);
    assert_false(queue->had_consumer);
    assert_null(hop_queue_take(queue, 0));
    assert_null(hop_queue_next_consumer(queue));
    hop_queue_destroy(&queue);
    assert_null(queue);
    hop_queue_destroy(&queue); // accepts NULL
}

static void
test_push_take_fifo_order(void **state)
{
    (void)state;
    hop_queue_t *queue = qh_queue("q");
    hop_entry_t *pushed[5];
    qh_push_n(queue, 5, pushed);
    assert_int_equal(queue->published, 5);
    qh_assert_list(&queue->ready, (uint64_t[]){1, 2, 3, 4, 5}, 5);
    for (int i = 0; i < 5; i++) {
        assert_ptr_equal(pushed[i]->queue, queue);
        assert_int_equal(pushed[i]->msg->refs, 1);
        assert_ptr_equal(hop_queue_take(queue, 0), pushed[i]);
    }
    assert_null(hop_queue_take(queue, 0));
    qh_assert_list(&queue->unacked, (uint64_t[]){1, 2, 3, 4, 5}, 5);
    while (queue->unacked.head)
        hop_queue_settle(queue, queue->unacked.head, true);
    hop_queue_destroy(&queue);
}

static void
test_take_moves_entry_to_unacked_and_counts_delivery(void **state)
{
    (void)state;
    hop_queue_t *queue = qh_queue("q");
    qh_push_n(queue, 2, NULL);
    hop_entry_t *e = hop_queue_take(queue, 0);
    assert_non_null(e);
    assert_true(e->unacked);
    assert_int_equal(e->deliveries, 1);
    assert_false(e->redelivered);
    assert_int_equal(queue->delivered, 1);
    qh_assert_list(&queue->ready, (uint64_t[]){2}, 1);
    qh_assert_list(&queue->unacked, (uint64_t[]){1}, 1);
    hop_queue_settle(queue, e, true);
    hop_queue_destroy(&queue);
}

static void
test_untake_restores_head_and_counters(void **state)
{
    (void)state;
    hop_queue_t *queue = qh_queue("q");
    qh_push_n(queue, 3, NULL);
    hop_entry_t *e = hop_queue_take(queue, 0);
    hop_queue_untake(queue, e);
    assert_false(e->unacked);
    assert_int_equal(e->deliveries, 0);
    assert_false(e->redelivered);
    assert_int_equal(queue->delivered, 0);
    qh_assert_list(&queue->ready, (uint64_t[]){1, 2, 3}, 3);
    qh_assert_list(&queue->unacked, NULL, 0);
    assert_ptr_equal(hop_queue_take(queue, 0), e); // still the first to go
    assert_int_equal(e->deliveries, 1);
    hop_queue_settle(queue, e, true);
    hop_queue_destroy(&queue);
}

static void
test_untake_into_empty_ready_list(void **state)
{
    (void)state;
    hop_queue_t *queue = qh_queue("q");
    qh_push_n(queue, 1, NULL);
    hop_entry_t *e = hop_queue_take(queue, 0);
    hop_queue_untake(queue, e);
    qh_assert_list(&queue->ready, (uint64_t[]){1}, 1);
    qh_push_n(queue, 1, NULL); // appends after it: the tail was set
    qh_assert_list(&queue->ready, (uint64_t[]){1, 2}, 2);
    hop_queue_destroy(&queue);
}

static void
test_untake_of_redelivered_entry_keeps_flag_and_count(void **state)
{
    (void)state;
    hop_queue_t *queue = qh_queue("q");
    qh_push_n(queue, 2, NULL);
    hop_entry_t *e = hop_queue_take(queue, 0);
    hop_queue_requeue(queue, e);
    assert_ptr_equal(hop_queue_take(queue, 0), e);
    assert_int_equal(e->deliveries, 2);
    hop_queue_untake(queue, e);
    assert_true(e->redelivered);
    assert_int_equal(e->deliveries, 1);
    assert_int_equal(queue->delivered, 1);
    qh_assert_list(&queue->ready, (uint64_t[]){1, 2}, 2);
    hop_queue_destroy(&queue);
}

// Requeue: back to the original position, ahead of never-delivered entries ------------------

static void
test_requeue_goes_ahead_of_never_delivered_entries(void **state)
{
    (void)state;
    hop_queue_t *queue = qh_queue("q");
    qh_push_n(queue, 3, NULL);
    hop_entry_t *e = hop_queue_take(queue, 0);
    hop_conn_t *conn = hop_conn_new("id", 2, 1, 0);
    hop_consumer_t c;
    memset(&c, 0, sizeof c);
    e->consumer = &c;
    assert_int_equal(hop_conn_track(conn, e), 1); // delivered; then nacked with requeue:
    hop_conn_untrack(conn, e->tag);
    hop_queue_requeue(queue, e);
    assert_false(e->unacked);
    assert_true(e->redelivered);
    assert_int_equal(e->tag, 0);
    assert_null(e->consumer);
    assert_int_equal(e->deliveries, 1); // the count survives: "count" on the next delivery
    qh_assert_list(&queue->ready, (uint64_t[]){1, 2, 3}, 3);
    qh_assert_list(&queue->unacked, NULL, 0);
    assert_ptr_equal(hop_queue_take(queue, 0), e);
    assert_int_equal(e->deliveries, 2);
    assert_true(e->redelivered);
    assert_int_equal(queue->delivered, 2);
    hop_queue_settle(queue, e, true);
    hop_queue_destroy(&queue);
    hop_conn_destroy(&conn);
}

static void
test_requeue_returns_entry_to_its_original_position(void **state)
{
    (void)state;
    hop_queue_t *queue = qh_queue("q");
    hop_entry_t *e[6];
    qh_push_n(queue, 6, e);
    for (int i = 0; i < 4; i++)
        hop_queue_take(queue, 0);
    hop_queue_requeue(queue, e[2]);
    qh_assert_list(&queue->ready, (uint64_t[]){3, 5, 6}, 3);
    hop_queue_requeue(queue, e[0]);
    qh_assert_list(&queue->ready, (uint64_t[]){1, 3, 5, 6}, 4);
    hop_queue_requeue(queue, e[3]); // between the older requeued 3 and the never-delivered 5
    qh_assert_list(&queue->ready, (uint64_t[]){1, 3, 4, 5, 6}, 5);
    hop_queue_requeue(queue, e[1]);
    qh_assert_list(&queue->ready, (uint64_t[]){1, 2, 3, 4, 5, 6}, 6);
    qh_assert_list(&queue->unacked, NULL, 0);
    for (int i = 0; i < 4; i++)
        assert_true(e[i]->redelivered);
    assert_false(e[4]->redelivered);
    hop_queue_destroy(&queue);
}

static void
test_requeue_lands_behind_older_requeued_entries(void **state)
{
    (void)state;
    hop_queue_t *queue = qh_queue("q");
    hop_entry_t *e[4];
    qh_push_n(queue, 4, e);
    hop_queue_take(queue, 0);
    hop_queue_take(queue, 0);
    hop_queue_requeue(queue, e[0]);
    hop_queue_requeue(queue, e[1]); // oldest first: the second must not jump the first
    qh_assert_list(&queue->ready, (uint64_t[]){1, 2, 3, 4}, 4);
    hop_queue_destroy(&queue);
}

static void
test_requeue_after_everything_was_taken(void **state)
{
    (void)state;
    hop_queue_t *queue = qh_queue("q");
    hop_entry_t *e[3];
    qh_push_n(queue, 3, e);
    for (int i = 0; i < 3; i++)
        hop_queue_take(queue, 0);
    hop_queue_requeue(queue, e[1]); // into an empty ready list
    qh_assert_list(&queue->ready, (uint64_t[]){2}, 1);
    hop_queue_requeue(queue, e[0]); // before everything
    qh_assert_list(&queue->ready, (uint64_t[]){1, 2}, 2);
    hop_queue_requeue(queue, e[2]); // after everything: the new tail
    qh_assert_list(&queue->ready, (uint64_t[]){1, 2, 3}, 3);
    qh_push_n(queue, 1, NULL);
    qh_assert_list(&queue->ready, (uint64_t[]){1, 2, 3, 4}, 4);
    hop_queue_destroy(&queue);
}

static void
test_requeue_batch_newest_first_keeps_original_order(void **state)
{
    (void)state;
    hop_queue_t *queue = qh_queue("q");
    enum { N = 10 };
    hop_entry_t *e[N];
    qh_push_n(queue, N, e);
    for (int i = 0; i < 6; i++)
        hop_queue_take(queue, 0); // a dead consumer's window: 1..6
    for (int i = 5; i >= 0; i--)
        hop_queue_requeue(queue, e[i]);
    qh_assert_list(&queue->ready, (uint64_t[]){1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, N);
    for (int i = 0; i < N; i++)
        assert_ptr_equal(hop_queue_take(queue, 0), e[i]);
    for (int i = 0; i < N; i++)
        assert_int_equal(e[i]->redelivered, i < 6);
    hop_queue_destroy(&queue);
    for (int i = 0; i < N; i++)
        hop_entry_destroy(&e[i]); // all unacked: destroy orphaned them
}

static void
test_requeue_of_interleaved_consumers_restores_seq_order(void **state)
{
    (void)state;
    hop_queue_t *queue = qh_queue("q");
    enum { N = 8 };
    hop_entry_t *e[N];
    qh_push_n(queue, N, e);
    for (int i = 0; i < N; i++)
        hop_queue_take(queue, 0);
    // Two consumers took turns: the odd ones die first, newest first, then the even ones.
    for (int i = N - 1; i >= 0; i -= 2)
        hop_queue_requeue(queue, e[i]);
    qh_assert_list(&queue->ready, (uint64_t[]){2, 4, 6, 8}, 4);
    for (int i = N - 2; i >= 0; i -= 2)
        hop_queue_requeue(queue, e[i]);
    qh_assert_list(&queue->ready, (uint64_t[]){1, 2, 3, 4, 5, 6, 7, 8}, N);
    hop_queue_destroy(&queue);
}

// Settle and purge --------------------------------------------------------------------------

static void
test_settle_destroys_entry_and_counts_ack(void **state)
{
    (void)state;
    hop_queue_t *queue = qh_queue("q");
    qh_push_n(queue, 2, NULL);
    hop_entry_t *e = hop_queue_take(queue, 0);
    hop_msg_t *msg = e->msg;
    hop_queue_settle(queue, e, true);
    assert_int_equal(queue->acked, 1);
    qh_assert_list(&queue->unacked, NULL, 0);
    qh_assert_list(&queue->ready, (uint64_t[]){2}, 1);
    assert_ptr_equal(hop_msg_new(), msg); // the only reference went: the record was recycled
    hop_msg_release(msg);
    hop_queue_destroy(&queue);
}

static void
test_settle_keeps_message_shared_with_another_queue(void **state)
{
    (void)state;
    hop_queue_t *a = qh_queue("a");
    hop_queue_t *b = qh_queue("b");
    hop_msg_t *msg = qh_msg_with_body('m');
    hop_entry_t *ea = hop_queue_push(a, msg, 0, HOP_TTL_NONE);
    hop_entry_t *eb = hop_queue_push(b, msg, 0, HOP_TTL_NONE);
    assert_ptr_not_equal(ea, eb);
    assert_int_equal(msg->refs, 2);
    hop_queue_settle(a, hop_queue_take(a, 0), true);
    assert_int_equal(msg->refs, 1);
    qh_assert_body(msg, 'm'); // still whole for the other queue's consumer
    assert_ptr_equal(hop_queue_take(b, 0), eb);
    assert_ptr_equal(eb->msg, msg);
    hop_queue_settle(b, eb, true);
    assert_ptr_equal(hop_msg_new(), msg); // last reference: recycled, body closed (LSan)
    hop_msg_release(msg);
    hop_queue_destroy(&a);
    hop_queue_destroy(&b);
}

static void
test_purge_drops_only_ready_entries(void **state)
{
    (void)state;
    hop_queue_t *queue = qh_queue("q");
    hop_msg_t *shared = qh_msg_with_body('p');
    hop_queue_push(queue, shared, 0, HOP_TTL_NONE);
    qh_push_n(queue, 4, NULL);
    hop_queue_push(queue, shared, 0, HOP_TTL_NONE);
    assert_int_equal(shared->refs, 2);
    hop_entry_t *held = hop_queue_take(queue, 0); // seq 1, holds shared
    hop_entry_t *held2 = hop_queue_take(queue, 0);
    assert_int_equal(hop_queue_purge(queue), 4);
    qh_assert_list(&queue->ready, NULL, 0);
    qh_assert_list(&queue->unacked, (uint64_t[]){1, 2}, 2);
    assert_int_equal(shared->refs, 1);
    qh_assert_body(shared, 'p');
    assert_int_equal(hop_queue_purge(queue), 0);
    hop_queue_requeue(queue, held2); // the queue still works after a purge
    qh_push_n(queue, 1, NULL);
    qh_assert_list(&queue->ready, (uint64_t[]){2, 7}, 2);
    hop_queue_settle(queue, held, true);
    hop_queue_destroy(&queue);
}

// Consumers: round-robin, credit, stalls -----------------------------------------------------

// Adds n zeroed consumers (A, B, C, ... in that order).
static void
s_add(hop_queue_t *queue, hop_consumer_t *c, int n)
{
    for (int i = 0; i < n; i++) {
        memset(&c[i], 0, sizeof c[i]);
        hop_queue_add_consumer(queue, &c[i]);
    }
}

static void
s_remove_and_destroy(hop_queue_t *queue, hop_consumer_t *c, int n)
{
    for (int i = 0; i < n; i++)
        hop_queue_remove_consumer(queue, &c[i]);
    assert_null(queue->consumers);
    assert_int_equal(queue->consumer_count, 0);
    hop_queue_destroy(&queue);
}

static void
test_round_robin_cycles_three_consumers(void **state)
{
    (void)state;
    hop_queue_t *queue = qh_queue("q");
    hop_consumer_t c[3];
    s_add(queue, c, 3);
    assert_int_equal(queue->consumer_count, 3);
    for (int i = 0; i < 3; i++)
        assert_ptr_equal(c[i].queue, queue);
    for (int i = 0; i < 10; i++) // A, B, C, A, B, C, ...
        assert_ptr_equal(hop_queue_next_consumer(queue), &c[i % 3]);
    s_remove_and_destroy(queue, c, 3);
}

static void
test_new_consumer_is_served_last_in_the_round(void **state)
{
    (void)state;
    hop_queue_t *queue = qh_queue("q");
    hop_consumer_t c[4];
    s_add(queue, c, 3);
    assert_ptr_equal(hop_queue_next_consumer(queue), &c[0]);
    s_add(queue, &c[3], 1); // just before the cursor (B): after everyone else
    assert_ptr_equal(hop_queue_next_consumer(queue), &c[1]);
    assert_ptr_equal(hop_queue_next_consumer(queue), &c[2]);
    assert_ptr_equal(hop_queue_next_consumer(queue), &c[0]);
    assert_ptr_equal(hop_queue_next_consumer(queue), &c[3]);
    assert_ptr_equal(hop_queue_next_consumer(queue), &c[1]);
    s_remove_and_destroy(queue, c, 4);
}

static void
test_consumer_at_prefetch_limit_is_skipped(void **state)
{
    (void)state;
    hop_queue_t *queue = qh_queue("q");
    hop_consumer_t c[3];
    s_add(queue, c, 3);
    c[0].prefetch = c[1].prefetch = c[2].prefetch = 2;
    c[1].unacked = 2; // B is full
    assert_ptr_equal(hop_queue_next_consumer(queue), &c[0]);
    assert_ptr_equal(hop_queue_next_consumer(queue), &c[2]);
    assert_ptr_equal(hop_queue_next_consumer(queue), &c[0]);
    c[1].unacked = 1; // an ack gives B credit again
    assert_ptr_equal(hop_queue_next_consumer(queue), &c[1]);
    c[0].unacked = c[1].unacked = c[2].unacked = 2;
    assert_null(hop_queue_next_consumer(queue)); // nobody has credit: the queue waits
    c[0].unacked = 1;
    assert_ptr_equal(hop_queue_next_consumer(queue), &c[0]);
    s_remove_and_destroy(queue, c, 3);
}

static void
test_prefetch_zero_is_unlimited(void **state)
{
    (void)state;
    hop_queue_t *queue = qh_queue("q");
    hop_consumer_t c;
    s_add(queue, &c, 1);
    c.prefetch = 0;
    c.unacked = 1000000;
    assert_ptr_equal(hop_queue_next_consumer(queue), &c);
    assert_ptr_equal(hop_queue_next_consumer(queue), &c);
    s_remove_and_destroy(queue, &c, 1);
}

static void
test_no_ack_consumer_ignores_prefetch(void **state)
{
    (void)state;
    hop_queue_t *queue = qh_queue("q");
    hop_consumer_t c;
    s_add(queue, &c, 1);
    c.prefetch = 1;
    c.unacked = 5;
    c.no_ack = true;
    assert_ptr_equal(hop_queue_next_consumer(queue), &c);
    s_remove_and_destroy(queue, &c, 1);
}

static void
test_stalled_consumer_is_skipped(void **state)
{
    (void)state;
    hop_queue_t *queue = qh_queue("q");
    hop_consumer_t c[3];
    s_add(queue, c, 3);
    c[0].stalled = true;
    c[2].no_ack = true;
    c[2].stalled = true; // no_ack does not bypass a full pipe
    assert_ptr_equal(hop_queue_next_consumer(queue), &c[1]);
    assert_ptr_equal(hop_queue_next_consumer(queue), &c[1]);
    c[1].stalled = true;
    assert_null(hop_queue_next_consumer(queue));
    c[0].stalled = false; // the tick retries it
    assert_ptr_equal(hop_queue_next_consumer(queue), &c[0]);
    s_remove_and_destroy(queue, c, 3);
}

static void
test_removing_cursor_consumer_keeps_ring_valid(void **state)
{
    (void)state;
    hop_queue_t *queue = qh_queue("q");
    hop_consumer_t c[3];
    s_add(queue, c, 3);
    assert_ptr_equal(hop_queue_next_consumer(queue), &c[0]);
    assert_ptr_equal(queue->consumers, &c[1]); // the cursor
    hop_queue_remove_consumer(queue, &c[1]);
    assert_null(c[1].next);
    assert_null(c[1].prev);
    assert_int_equal(queue->consumer_count, 2);
    // The ring is C <-> A, both ways.
    assert_ptr_equal(c[0].next, &c[2]);
    assert_ptr_equal(c[2].next, &c[0]);
    assert_ptr_equal(c[0].prev, &c[2]);
    assert_ptr_equal(c[2].prev, &c[0]);
    assert_ptr_equal(hop_queue_next_consumer(queue), &c[2]);
    assert_ptr_equal(hop_queue_next_consumer(queue), &c[0]);
    assert_ptr_equal(hop_queue_next_consumer(queue), &c[2]);
    hop_queue_remove_consumer(queue, &c[2]); // the cursor again
    assert_ptr_equal(c[0].next, &c[0]);      // a ring of one
    assert_ptr_equal(c[0].prev, &c[0]);
    assert_ptr_equal(hop_queue_next_consumer(queue), &c[0]);
    assert_ptr_equal(hop_queue_next_consumer(queue), &c[0]);
    hop_queue_remove_consumer(queue, &c[0]);
    assert_null(queue->consumers);
    assert_null(hop_queue_next_consumer(queue));
    hop_queue_destroy(&queue);
}

static void
test_removing_other_consumer_keeps_cursor(void **state)
{
    (void)state;
    hop_queue_t *queue = qh_queue("q");
    hop_consumer_t c[3];
    s_add(queue, c, 3);
    assert_ptr_equal(hop_queue_next_consumer(queue), &c[0]);
    hop_queue_remove_consumer(queue, &c[2]);
    assert_ptr_equal(hop_queue_next_consumer(queue), &c[1]);
    assert_ptr_equal(hop_queue_next_consumer(queue), &c[0]);
    assert_ptr_equal(hop_queue_next_consumer(queue), &c[1]);
    s_remove_and_destroy(queue, c, 2);
}

static void
test_add_consumer_marks_had_consumer(void **state)
{
    (void)state;
    hop_queue_t *queue = qh_queue("q");
    hop_consumer_t c;
    assert_false(queue->had_consumer);
    s_add(queue, &c, 1);
    assert_true(queue->had_consumer);
    hop_queue_remove_consumer(queue, &c);
    assert_true(queue->had_consumer); // auto-delete needs "had one", not "has one"
    hop_queue_destroy(&queue);
}

static void
test_exclusive_consumer_sets_and_clears_flag(void **state)
{
    (void)state;
    hop_queue_t *queue = qh_queue("q");
    hop_consumer_t shared, excl;
    s_add(queue, &shared, 1);
    assert_false(queue->exclusive_consumer);
    hop_queue_remove_consumer(queue, &shared);
    assert_false(queue->exclusive_consumer);
    memset(&excl, 0, sizeof excl);
    excl.exclusive = true;
    hop_queue_add_consumer(queue, &excl);
    assert_true(queue->exclusive_consumer);
    hop_queue_remove_consumer(queue, &excl);
    assert_false(queue->exclusive_consumer); // later consumers are welcome again
    hop_queue_add_consumer(queue, &shared);
    assert_false(queue->exclusive_consumer);
    s_remove_and_destroy(queue, &shared, 1);
}

// Destroy ----------------------------------------------------------------------------------

static void
test_destroy_releases_ready_entries(void **state)
{
    (void)state;
    hop_queue_t *a = qh_queue("a");
    hop_queue_t *b = qh_queue("b");
    hop_msg_t *msg = qh_msg_with_body('d');
    hop_queue_push(a, msg, 0, HOP_TTL_NONE);
    hop_queue_push(b, msg, 0, HOP_TTL_NONE);
    qh_push_n(a, 3, NULL);
    hop_queue_destroy(&a);
    assert_null(a);
    assert_int_equal(msg->refs, 1);
    qh_assert_body(msg, 'd');
    hop_queue_destroy(&b); // LSan: nothing left behind
}

static void
test_destroy_orphans_unacked_entries(void **state)
{
    (void)state;
    hop_queue_t *queue = qh_queue("q");
    hop_msg_t *msg = qh_msg_with_body('o');
    hop_queue_push(queue, msg, 0, HOP_TTL_NONE);
    qh_push_n(queue, 3, NULL);
    hop_consumer_t c;
    memset(&c, 0, sizeof c);
    hop_entry_t *held[3];
    for (int i = 0; i < 3; i++) {
        held[i] = hop_queue_take(queue, 0);
        held[i]->consumer = &c;
        held[i]->tag = (uint64_t)i + 1;
    }
    hop_queue_destroy(&queue); // one ready entry freed, three left to their connection
    for (int i = 0; i < 3; i++) {
        assert_null(held[i]->queue);
        assert_null(held[i]->consumer);
        assert_null(held[i]->prev);
        assert_null(held[i]->next);
        assert_int_equal(held[i]->tag, (uint64_t)i + 1); // still settleable by tag
        assert_int_equal(held[i]->msg->refs, 1);
    }
    assert_ptr_equal(held[0]->msg, msg);
    qh_assert_body(msg, 'o');
    for (int i = 0; i < 3; i++) {
        hop_entry_destroy(&held[i]);
        assert_null(held[i]);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_msg_new_has_empty_frames_and_no_refs),
        cmocka_unit_test(test_first_entry_is_embedded_in_the_message),
        cmocka_unit_test(test_frames_are_shared_until_the_last_message_goes),
        cmocka_unit_test(test_entry_new_takes_a_reference),
        cmocka_unit_test(test_released_records_are_reused),
        cmocka_unit_test(test_new_copies_name_and_starts_empty),
        cmocka_unit_test(test_push_take_fifo_order),
        cmocka_unit_test(test_take_moves_entry_to_unacked_and_counts_delivery),
        cmocka_unit_test(test_untake_restores_head_and_counters),
        cmocka_unit_test(test_untake_into_empty_ready_list),
        cmocka_unit_test(test_untake_of_redelivered_entry_keeps_flag_and_count),
        cmocka_unit_test(test_requeue_goes_ahead_of_never_delivered_entries),
        cmocka_unit_test(test_requeue_returns_entry_to_its_original_position),
        cmocka_unit_test(test_requeue_lands_behind_older_requeued_entries),
        cmocka_unit_test(test_requeue_after_everything_was_taken),
        cmocka_unit_test(test_requeue_batch_newest_first_keeps_original_order),
        cmocka_unit_test(test_requeue_of_interleaved_consumers_restores_seq_order),
        cmocka_unit_test(test_settle_destroys_entry_and_counts_ack),
        cmocka_unit_test(test_settle_keeps_message_shared_with_another_queue),
        cmocka_unit_test(test_purge_drops_only_ready_entries),
        cmocka_unit_test(test_round_robin_cycles_three_consumers),
        cmocka_unit_test(test_new_consumer_is_served_last_in_the_round),
        cmocka_unit_test(test_consumer_at_prefetch_limit_is_skipped),
        cmocka_unit_test(test_prefetch_zero_is_unlimited),
        cmocka_unit_test(test_no_ack_consumer_ignores_prefetch),
        cmocka_unit_test(test_stalled_consumer_is_skipped),
        cmocka_unit_test(test_removing_cursor_consumer_keeps_ring_valid),
        cmocka_unit_test(test_removing_other_consumer_keeps_cursor),
        cmocka_unit_test(test_add_consumer_marks_had_consumer),
        cmocka_unit_test(test_exclusive_consumer_sets_and_clears_flag),
        cmocka_unit_test(test_destroy_releases_ready_entries),
        cmocka_unit_test(test_destroy_orphans_unacked_entries),
    };
    return cmocka_run_group_tests(tests, NULL, qh_teardown_group);
}
