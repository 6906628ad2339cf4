// tests/unit/test_queue.c - message records, queue lists, requeue order and round-robin
// consumer selection (PROTOCOL.md 4.5, 4.6 and 6); priority levels, length limits, TTL
// deadlines and delayed retries.
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
#include "queue.h"
#include "util.h"

#define BODY_SIZE 64 // above ZeroMQ's inline size, so the body is a heap block LSan tracks

// Helpers ----------------------------------------------------------------------------------

static hop_queue_t *
s_queue(const char *name)
{
    return hop_queue_new(name, strlen(name));
}

// A message whose body frame holds BODY_SIZE bytes of fill.
static hop_msg_t *
s_msg_with_body(char fill)
{
    hop_msg_t *msg = hop_msg_new();
    zmq_msg_t *body = hop_msg_body_frame(msg);
    zmq_msg_close(body);
    assert_int_equal(zmq_msg_init_size(body, BODY_SIZE), 0);
    memset(zmq_msg_data(body), fill, BODY_SIZE);
    return msg;
}

static void
s_assert_body(hop_msg_t *msg, char fill)
{
    char expect[BODY_SIZE];
    memset(expect, fill, sizeof expect);
    assert_non_null(msg->frames);
    assert_int_equal(zmq_msg_size(&msg->frames->body), BODY_SIZE);
    assert_memory_equal(zmq_msg_data(&msg->frames->body), expect, BODY_SIZE);
}

// Pushes n fresh messages; returns the entries in entries[] (may be NULL).
static void
s_push_n(hop_queue_t *queue, size_t n, hop_entry_t **entries)
{
    for (size_t i = 0; i < n; i++) {
        hop_entry_t *e = hop_queue_push(queue, hop_msg_new(), 0);
        if (entries)
            entries[i] = e;
    }
}

// Checks list holds exactly the entries with seqs, in order, with consistent back links.
static void
s_assert_list(const hop_list_t *list, const uint64_t *seqs, size_t n)
{
    assert_int_equal(list->size, n);
    const hop_entry_t *prev = NULL;
    size_t i = 0;
    for (const hop_entry_t *e = list->head; e; prev = e, e = e->next, i++) {
        assert_true(i < n);
        assert_int_equal(e->seq, seqs[i]);
        assert_ptr_equal(e->prev, prev);
    }
    assert_int_equal(i, n);
    assert_ptr_equal(list->tail, prev);
}

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
    assert_int_equal(zmq_msg_init_size(&frames->header, BODY_SIZE), 0);
    memset(zmq_msg_data(&frames->header), 'f', BODY_SIZE);
    frames->refs = 1; // the batch loop's own reference
    hop_msg_t *a = hop_msg_new(), *b = hop_msg_new();
    hop_msg_attach(a, frames);
    hop_msg_attach(b, frames);
    hop_entry_t *ea = hop_entry_new(a), *eb = hop_entry_new(b);
    hop_frames_release(frames); // the loop is done
    assert_int_equal(frames->refs, 2);
    hop_entry_destroy(&ea);
    assert_int_equal(frames->refs, 1);
    assert_int_equal(((const char *)zmq_msg_data(&frames->header))[BODY_SIZE - 1], 'f');
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
    hop_msg_t *msg = s_msg_with_body('e');
    hop_entry_t *first = hop_entry_new(msg);
    hop_entry_t *second = hop_entry_new(msg);
    assert_ptr_equal(first, &msg->entry);
    assert_true(first->embedded);
    assert_false(second->embedded);
    assert_int_equal(msg->refs, 2);
    hop_entry_destroy(&first); // the embedded one first: msg must survive for second
    assert_false(msg->entry_used);
    assert_int_equal(msg->refs, 1);
    s_assert_body(msg, 'e');
    hop_entry_t *third = hop_entry_new(msg); // the slot is free again
    assert_ptr_equal(third, &msg->entry);
    hop_entry_destroy(&second);
    s_assert_body(msg, 'e');
    hop_entry_destroy(&third);
}

static void
test_entry_new_takes_a_reference(void **state)
{
    (void)state;
    hop_msg_t *msg = s_msg_with_body('e');
    hop_entry_t *a = hop_entry_new(msg);
    hop_entry_t *b = hop_entry_new(msg);
    assert_ptr_equal(a->msg, msg);
    assert_int_equal(msg->refs, 2);
    assert_null(a->queue);
    assert_false(a->unacked);
    hop_entry_destroy(&a);
    assert_null(a);
    assert_int_equal(msg->refs, 1);
    s_assert_body(msg, 'e');
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
    hop_queue_t *queue = s_queue("q");
    hop_entry_t *pushed[5];
    s_push_n(queue, 5, pushed);
    assert_int_equal(queue->published, 5);
    s_assert_list(&queue->ready, (uint64_t[]){1, 2, 3, 4, 5}, 5);
    for (int i = 0; i < 5; i++) {
        assert_ptr_equal(pushed[i]->queue, queue);
        assert_int_equal(pushed[i]->msg->refs, 1);
        assert_ptr_equal(hop_queue_take(queue, 0), pushed[i]);
    }
    assert_null(hop_queue_take(queue, 0));
    s_assert_list(&queue->unacked, (uint64_t[]){1, 2, 3, 4, 5}, 5);
    while (queue->unacked.head)
        hop_queue_settle(queue, queue->unacked.head, true);
    hop_queue_destroy(&queue);
}

static void
test_take_moves_entry_to_unacked_and_counts_delivery(void **state)
{
    (void)state;
    hop_queue_t *queue = s_queue("q");
    s_push_n(queue, 2, NULL);
    hop_entry_t *e = hop_queue_take(queue, 0);
    assert_non_null(e);
    assert_true(e->unacked);
    assert_int_equal(e->deliveries, 1);
    assert_false(e->redelivered);
    assert_int_equal(queue->delivered, 1);
    s_assert_list(&queue->ready, (uint64_t[]){2}, 1);
    s_assert_list(&queue->unacked, (uint64_t[]){1}, 1);
    hop_queue_settle(queue, e, true);
    hop_queue_destroy(&queue);
}

static void
test_untake_restores_head_and_counters(void **state)
{
    (void)state;
    hop_queue_t *queue = s_queue("q");
    s_push_n(queue, 3, NULL);
    hop_entry_t *e = hop_queue_take(queue, 0);
    hop_queue_untake(queue, e);
    assert_false(e->unacked);
    assert_int_equal(e->deliveries, 0);
    assert_false(e->redelivered);
    assert_int_equal(queue->delivered, 0);
    s_assert_list(&queue->ready, (uint64_t[]){1, 2, 3}, 3);
    s_assert_list(&queue->unacked, NULL, 0);
    assert_ptr_equal(hop_queue_take(queue, 0), e); // still the first to go
    assert_int_equal(e->deliveries, 1);
    hop_queue_settle(queue, e, true);
    hop_queue_destroy(&queue);
}

static void
test_untake_into_empty_ready_list(void **state)
{
    (void)state;
    hop_queue_t *queue = s_queue("q");
    s_push_n(queue, 1, NULL);
    hop_entry_t *e = hop_queue_take(queue, 0);
    hop_queue_untake(queue, e);
    s_assert_list(&queue->ready, (uint64_t[]){1}, 1);
    s_push_n(queue, 1, NULL); // appends after it: the tail was set
    s_assert_list(&queue->ready, (uint64_t[]){1, 2}, 2);
    hop_queue_destroy(&queue);
}

static void
test_untake_of_redelivered_entry_keeps_flag_and_count(void **state)
{
    (void)state;
    hop_queue_t *queue = s_queue("q");
    s_push_n(queue, 2, NULL);
    hop_entry_t *e = hop_queue_take(queue, 0);
    hop_queue_requeue(queue, e);
    assert_ptr_equal(hop_queue_take(queue, 0), e);
    assert_int_equal(e->deliveries, 2);
    hop_queue_untake(queue, e);
    assert_true(e->redelivered);
    assert_int_equal(e->deliveries, 1);
    assert_int_equal(queue->delivered, 1);
    s_assert_list(&queue->ready, (uint64_t[]){1, 2}, 2);
    hop_queue_destroy(&queue);
}

// Requeue: back to the original position, ahead of never-delivered entries ------------------

static void
test_requeue_goes_ahead_of_never_delivered_entries(void **state)
{
    (void)state;
    hop_queue_t *queue = s_queue("q");
    s_push_n(queue, 3, NULL);
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
    s_assert_list(&queue->ready, (uint64_t[]){1, 2, 3}, 3);
    s_assert_list(&queue->unacked, NULL, 0);
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
    hop_queue_t *queue = s_queue("q");
    hop_entry_t *e[6];
    s_push_n(queue, 6, e);
    for (int i = 0; i < 4; i++)
        hop_queue_take(queue, 0);
    hop_queue_requeue(queue, e[2]);
    s_assert_list(&queue->ready, (uint64_t[]){3, 5, 6}, 3);
    hop_queue_requeue(queue, e[0]);
    s_assert_list(&queue->ready, (uint64_t[]){1, 3, 5, 6}, 4);
    hop_queue_requeue(queue, e[3]); // between the older requeued 3 and the never-delivered 5
    s_assert_list(&queue->ready, (uint64_t[]){1, 3, 4, 5, 6}, 5);
    hop_queue_requeue(queue, e[1]);
    s_assert_list(&queue->ready, (uint64_t[]){1, 2, 3, 4, 5, 6}, 6);
    s_assert_list(&queue->unacked, NULL, 0);
    for (int i = 0; i < 4; i++)
        assert_true(e[i]->redelivered);
    assert_false(e[4]->redelivered);
    hop_queue_destroy(&queue);
}

static void
test_requeue_lands_behind_older_requeued_entries(void **state)
{
    (void)state;
    hop_queue_t *queue = s_queue("q");
    hop_entry_t *e[4];
    s_push_n(queue, 4, e);
    hop_queue_take(queue, 0);
    hop_queue_take(queue, 0);
    hop_queue_requeue(queue, e[0]);
    hop_queue_requeue(queue, e[1]); // oldest first: the second must not jump the first
    s_assert_list(&queue->ready, (uint64_t[]){1, 2, 3, 4}, 4);
    hop_queue_destroy(&queue);
}

static void
test_requeue_after_everything_was_taken(void **state)
{
    (void)state;
    hop_queue_t *queue = s_queue("q");
    hop_entry_t *e[3];
    s_push_n(queue, 3, e);
    for (int i = 0; i < 3; i++)
        hop_queue_take(queue, 0);
    hop_queue_requeue(queue, e[1]); // into an empty ready list
    s_assert_list(&queue->ready, (uint64_t[]){2}, 1);
    hop_queue_requeue(queue, e[0]); // before everything
    s_assert_list(&queue->ready, (uint64_t[]){1, 2}, 2);
    hop_queue_requeue(queue, e[2]); // after everything: the new tail
    s_assert_list(&queue->ready, (uint64_t[]){1, 2, 3}, 3);
    s_push_n(queue, 1, NULL);
    s_assert_list(&queue->ready, (uint64_t[]){1, 2, 3, 4}, 4);
    hop_queue_destroy(&queue);
}

static void
test_requeue_batch_newest_first_keeps_original_order(void **state)
{
    (void)state;
    hop_queue_t *queue = s_queue("q");
    enum { N = 10 };
    hop_entry_t *e[N];
    s_push_n(queue, N, e);
    for (int i = 0; i < 6; i++)
        hop_queue_take(queue, 0); // a dead consumer's window: 1..6
    for (int i = 5; i >= 0; i--)
        hop_queue_requeue(queue, e[i]);
    s_assert_list(&queue->ready, (uint64_t[]){1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, N);
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
    hop_queue_t *queue = s_queue("q");
    enum { N = 8 };
    hop_entry_t *e[N];
    s_push_n(queue, N, e);
    for (int i = 0; i < N; i++)
        hop_queue_take(queue, 0);
    // Two consumers took turns: the odd ones die first, newest first, then the even ones.
    for (int i = N - 1; i >= 0; i -= 2)
        hop_queue_requeue(queue, e[i]);
    s_assert_list(&queue->ready, (uint64_t[]){2, 4, 6, 8}, 4);
    for (int i = N - 2; i >= 0; i -= 2)
        hop_queue_requeue(queue, e[i]);
    s_assert_list(&queue->ready, (uint64_t[]){1, 2, 3, 4, 5, 6, 7, 8}, N);
    hop_queue_destroy(&queue);
}

// Settle and purge --------------------------------------------------------------------------

static void
test_settle_destroys_entry_and_counts_ack(void **state)
{
    (void)state;
    hop_queue_t *queue = s_queue("q");
    s_push_n(queue, 2, NULL);
    hop_entry_t *e = hop_queue_take(queue, 0);
    hop_msg_t *msg = e->msg;
    hop_queue_settle(queue, e, true);
    assert_int_equal(queue->acked, 1);
    s_assert_list(&queue->unacked, NULL, 0);
    s_assert_list(&queue->ready, (uint64_t[]){2}, 1);
    assert_ptr_equal(hop_msg_new(), msg); // the only reference went: the record was recycled
    hop_msg_release(msg);
    hop_queue_destroy(&queue);
}

static void
test_settle_keeps_message_shared_with_another_queue(void **state)
{
    (void)state;
    hop_queue_t *a = s_queue("a");
    hop_queue_t *b = s_queue("b");
    hop_msg_t *msg = s_msg_with_body('m');
    hop_entry_t *ea = hop_queue_push(a, msg, 0);
    hop_entry_t *eb = hop_queue_push(b, msg, 0);
    assert_ptr_not_equal(ea, eb);
    assert_int_equal(msg->refs, 2);
    hop_queue_settle(a, hop_queue_take(a, 0), true);
    assert_int_equal(msg->refs, 1);
    s_assert_body(msg, 'm'); // still whole for the other queue's consumer
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
    hop_queue_t *queue = s_queue("q");
    hop_msg_t *shared = s_msg_with_body('p');
    hop_queue_push(queue, shared, 0);
    s_push_n(queue, 4, NULL);
    hop_queue_push(queue, shared, 0);
    assert_int_equal(shared->refs, 2);
    hop_entry_t *held = hop_queue_take(queue, 0); // seq 1, holds shared
    hop_entry_t *held2 = hop_queue_take(queue, 0);
    assert_int_equal(hop_queue_purge(queue), 4);
    s_assert_list(&queue->ready, NULL, 0);
    s_assert_list(&queue->unacked, (uint64_t[]){1, 2}, 2);
    assert_int_equal(shared->refs, 1);
    s_assert_body(shared, 'p');
    assert_int_equal(hop_queue_purge(queue), 0);
    hop_queue_requeue(queue, held2); // the queue still works after a purge
    s_push_n(queue, 1, NULL);
    s_assert_list(&queue->ready, (uint64_t[]){2, 7}, 2);
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
    hop_queue_t *queue = s_queue("q");
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
    hop_queue_t *queue = s_queue("q");
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
    hop_queue_t *queue = s_queue("q");
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
    hop_queue_t *queue = s_queue("q");
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
    hop_queue_t *queue = s_queue("q");
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
    hop_queue_t *queue = s_queue("q");
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
    hop_queue_t *queue = s_queue("q");
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
    hop_queue_t *queue = s_queue("q");
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
    hop_queue_t *queue = s_queue("q");
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
    hop_queue_t *queue = s_queue("q");
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
    hop_queue_t *a = s_queue("a");
    hop_queue_t *b = s_queue("b");
    hop_msg_t *msg = s_msg_with_body('d');
    hop_queue_push(a, msg, 0);
    hop_queue_push(b, msg, 0);
    s_push_n(a, 3, NULL);
    hop_queue_destroy(&a);
    assert_null(a);
    assert_int_equal(msg->refs, 1);
    s_assert_body(msg, 'd');
    hop_queue_destroy(&b); // LSan: nothing left behind
}

static void
test_destroy_orphans_unacked_entries(void **state)
{
    (void)state;
    hop_queue_t *queue = s_queue("q");
    hop_msg_t *msg = s_msg_with_body('o');
    hop_queue_push(queue, msg, 0);
    s_push_n(queue, 3, NULL);
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
    s_assert_body(msg, 'o');
    for (int i = 0; i < 3; i++) {
        hop_entry_destroy(&held[i]);
        assert_null(held[i]);
    }
}

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
    hop_queue_t *queue = s_queue("q");
    enum { OPS = 20000, MAX = 4096 };
    hop_entry_t **out = calloc(MAX, sizeof *out); // unacked, in take order
    size_t n_out = 0, pushed = 0, settled = 0;
    uint64_t delivered = 0;
    for (int op = 0; op < OPS; op++) {
        unsigned r = (unsigned)(s_rand() % 100);
        if (r < 35 && pushed - settled < MAX) {
            hop_queue_push(queue, hop_msg_new(), 0);
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

// Priorities ---------------------------------------------------------------------------------

static hop_queue_t *
s_queue_with(const hop_qargs_t *args)
{
    hop_queue_t *queue = s_queue("q");
    hop_queue_set_args(queue, args);
    return queue;
}

static hop_queue_t *
s_pqueue(uint32_t max_priority)
{
    return s_queue_with(&(hop_qargs_t){.max_priority = max_priority});
}

// Pushes a message of priority with a body of body_len bytes (the length only: no frames).
static hop_entry_t *
s_push(hop_queue_t *queue, uint8_t priority, uint32_t body_len, uint64_t now)
{
    hop_msg_t *msg = hop_msg_new();
    msg->priority = priority;
    msg->body_len = body_len;
    return hop_queue_push(queue, msg, now);
}

// The ready list of priority level p (0: the base list).
static const hop_list_t *
s_level(const hop_queue_t *queue, uint32_t p)
{
    return p == 0 ? &queue->ready : &queue->levels[p - 1];
}

// Checks the ready counters against the expected values and against a recount of every level.
static void
s_assert_ready(const hop_queue_t *queue, size_t count, uint64_t bytes)
{
    size_t n = 0;
    uint64_t b = 0;
    uint32_t top = queue->levels ? queue->args.max_priority : 0;
    for (uint32_t p = 0; p <= top; p++)
        for (const hop_entry_t *e = s_level(queue, p)->head; e; e = e->next) {
            n++;
            b += e->msg->body_len;
        }
    assert_int_equal(n, count);
    assert_int_equal(b, bytes);
    assert_int_equal(queue->ready_count, count);
    assert_int_equal(queue->ready_bytes, bytes);
}

static void
test_set_args_allocates_one_list_per_priority(void **state)
{
    (void)state;
    hop_queue_t *plain = s_queue("plain");
    hop_queue_set_args(plain, &(hop_qargs_t){.max_length = 5});
    assert_null(plain->levels); // no max_priority: the base list only
    assert_int_equal(plain->args.max_length, 5);
    hop_queue_destroy(&plain);
    hop_queue_t *queue = s_pqueue(255);
    assert_non_null(queue->levels);
    for (uint32_t p = 0; p <= 255; p++)
        s_assert_list(s_level(queue, p), NULL, 0);
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
    hop_queue_t *queue = s_queue_with(&args);
    assert_ptr_equal(queue->args.dlx, args.dlx);
    assert_string_equal(queue->args.dlk, "dead");
    hop_queue_destroy(&queue);
}

static void
test_priority_higher_first_fifo_within_a_level(void **state)
{
    (void)state;
    hop_queue_t *queue = s_pqueue(5);
    const uint8_t prio[] = {1, 3, 0, 3, 5, 1, 0, 5};
    hop_entry_t *e[8];
    for (int i = 0; i < 8; i++)
        e[i] = s_push(queue, prio[i], 10, 0);
    s_assert_list(s_level(queue, 0), (uint64_t[]){3, 7}, 2);
    s_assert_list(s_level(queue, 1), (uint64_t[]){1, 6}, 2);
    s_assert_list(s_level(queue, 2), NULL, 0);
    s_assert_list(s_level(queue, 3), (uint64_t[]){2, 4}, 2);
    s_assert_list(s_level(queue, 4), NULL, 0);
    s_assert_list(s_level(queue, 5), (uint64_t[]){5, 8}, 2);
    s_assert_ready(queue, 8, 80);
    assert_int_equal(queue->published, 8);
    const int order[] = {4, 7, 1, 3, 0, 5, 2, 6}; // by priority, then by seq
    for (int i = 0; i < 8; i++) {
        assert_ptr_equal(hop_queue_head(queue), e[order[i]]);
        assert_ptr_equal(hop_queue_take(queue, 0), e[order[i]]);
        s_assert_ready(queue, (size_t)(7 - i), (uint64_t)(7 - i) * 10);
    }
    assert_null(hop_queue_head(queue));
    assert_null(hop_queue_take(queue, 0));
    assert_int_equal(queue->delivered, 8);
    s_assert_list(&queue->unacked, (uint64_t[]){5, 8, 2, 4, 1, 6, 3, 7}, 8);
    hop_queue_destroy(&queue);
    for (int i = 0; i < 8; i++)
        hop_entry_destroy(&e[i]); // orphaned by destroy
}

static void
test_priority_above_max_is_clamped_to_max(void **state)
{
    (void)state;
    hop_queue_t *queue = s_pqueue(3);
    hop_entry_t *a = s_push(queue, 200, 1, 0);
    hop_entry_t *b = s_push(queue, 3, 1, 0);
    hop_entry_t *c = s_push(queue, 255, 1, 0);
    hop_entry_t *d = s_push(queue, 4, 1, 0);
    s_push(queue, 2, 1, 0);
    s_assert_list(s_level(queue, 3), (uint64_t[]){1, 2, 3, 4}, 4); // one level, FIFO
    s_assert_list(s_level(queue, 2), (uint64_t[]){5}, 1);
    assert_int_equal(a->msg->priority, 200); // the message keeps what was published
    assert_ptr_equal(hop_queue_take(queue, 0), a);
    assert_ptr_equal(hop_queue_take(queue, 0), b);
    hop_queue_requeue(queue, a); // back into the clamped level, at its place
    s_assert_list(s_level(queue, 3), (uint64_t[]){1, 3, 4}, 3);
    assert_ptr_equal(hop_queue_take(queue, 0), a);
    assert_ptr_equal(hop_queue_take(queue, 0), c);
    assert_ptr_equal(hop_queue_take(queue, 0), d);
    s_assert_ready(queue, 1, 1);
    while (queue->unacked.head)
        hop_queue_settle(queue, queue->unacked.head, true);
    hop_queue_destroy(&queue);
}

static void
test_priority_zero_goes_to_the_base_list(void **state)
{
    (void)state;
    hop_queue_t *queue = s_pqueue(2);
    hop_entry_t *low = s_push(queue, 0, 7, 0);
    s_assert_list(&queue->ready, (uint64_t[]){1}, 1);
    s_assert_list(s_level(queue, 1), NULL, 0);
    s_assert_list(s_level(queue, 2), NULL, 0);
    assert_ptr_equal(hop_queue_head(queue), low);
    hop_entry_t *high = s_push(queue, 1, 3, 0);
    assert_ptr_equal(hop_queue_head(queue), high); // any priority goes before none
    assert_ptr_equal(hop_queue_oldest(queue), low);
    s_assert_ready(queue, 2, 10);
    hop_queue_destroy(&queue);
}

static void
test_priority_is_ignored_without_max_priority(void **state)
{
    (void)state;
    hop_queue_t *queue = s_queue("q");
    hop_entry_t *e[3];
    e[0] = s_push(queue, 0, 1, 0);
    e[1] = s_push(queue, 9, 2, 0);
    e[2] = s_push(queue, 255, 4, 0);
    s_assert_list(&queue->ready, (uint64_t[]){1, 2, 3}, 3);
    s_assert_ready(queue, 3, 7);
    for (int i = 0; i < 3; i++)
        assert_ptr_equal(hop_queue_take(queue, 0), e[i]); // plain FIFO
    hop_queue_requeue(queue, e[1]);
    s_assert_list(&queue->ready, (uint64_t[]){2}, 1);
    s_assert_ready(queue, 1, 2);
    hop_queue_settle(queue, e[0], true);
    hop_queue_settle(queue, e[2], true);
    hop_queue_destroy(&queue);
}

// Drop-head drops the oldest message whatever its priority.
static void
test_oldest_is_the_lowest_seq_over_all_levels(void **state)
{
    (void)state;
    hop_queue_t *queue = s_pqueue(3);
    hop_entry_t *e[5];
    e[0] = s_push(queue, 2, 1, 0); // seq 1
    e[1] = s_push(queue, 0, 1, 0); // seq 2
    e[2] = s_push(queue, 3, 1, 0); // seq 3
    e[3] = s_push(queue, 1, 1, 0); // seq 4
    e[4] = s_push(queue, 0, 1, 0); // seq 5
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
    s_assert_ready(queue, 0, 0);
    hop_queue_destroy(&queue);
}

static void
test_remove_unlinks_a_ready_entry_and_counts_it_out(void **state)
{
    (void)state;
    hop_queue_t *queue = s_pqueue(1);
    hop_entry_t *e[5];
    for (int i = 0; i < 5; i++)
        e[i] = s_push(queue, (uint8_t)(i % 2), (uint32_t)(i + 1) * 100, 0);
    s_assert_ready(queue, 5, 1500);
    hop_queue_remove(queue, e[2]); // middle of the base list
    assert_null(e[2]->prev);
    assert_null(e[2]->next);
    s_assert_list(&queue->ready, (uint64_t[]){1, 5}, 2);
    s_assert_ready(queue, 4, 1200);
    hop_queue_remove(queue, e[3]); // tail of level 1
    s_assert_list(s_level(queue, 1), (uint64_t[]){2}, 1);
    hop_queue_remove(queue, e[0]); // head of the base list
    s_assert_list(&queue->ready, (uint64_t[]){5}, 1);
    s_assert_ready(queue, 2, 700);
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
    hop_queue_t *queue = s_pqueue(2);
    hop_entry_t *a = s_push(queue, 0, 30, 100);
    hop_entry_t *b = s_push(queue, 2, 50, 120);
    assert_int_equal(a->at, 100); // ready since
    assert_int_equal(b->at, 120);
    s_assert_ready(queue, 2, 80);
    assert_ptr_equal(hop_queue_take(queue, 250), b);
    assert_int_equal(b->at, 250);
    assert_int_equal(b->deliveries, 1);
    assert_true(b->unacked);
    s_assert_ready(queue, 1, 30);
    assert_ptr_equal(hop_queue_take(queue, 260), a);
    assert_int_equal(a->at, 260);
    s_assert_ready(queue, 0, 0);
    assert_int_equal(queue->delivered, 2);
    s_assert_list(&queue->unacked, (uint64_t[]){2, 1}, 2); // delivery order
    hop_queue_settle(queue, a, true);
    hop_queue_settle(queue, b, false);
    assert_int_equal(queue->acked, 1);
    hop_queue_destroy(&queue);
}

static void
test_untake_returns_to_the_head_of_its_level(void **state)
{
    (void)state;
    hop_queue_t *queue = s_pqueue(2);
    s_push(queue, 2, 5, 0);
    s_push(queue, 1, 6, 0);
    s_push(queue, 2, 7, 0);
    hop_entry_t *e = hop_queue_take(queue, 10);
    assert_int_equal(e->seq, 1);
    s_assert_ready(queue, 2, 13);
    hop_queue_untake(queue, e);
    s_assert_list(s_level(queue, 2), (uint64_t[]){1, 3}, 2);
    s_assert_list(s_level(queue, 1), (uint64_t[]){2}, 1);
    s_assert_list(&queue->unacked, NULL, 0);
    s_assert_ready(queue, 3, 18);
    assert_int_equal(queue->delivered, 0);
    assert_int_equal(e->deliveries, 0);
    assert_ptr_equal(hop_queue_head(queue), e);
    hop_queue_destroy(&queue);
}

static void
test_requeue_goes_back_into_its_level_at_its_original_position(void **state)
{
    (void)state;
    hop_queue_t *queue = s_pqueue(2);
    hop_entry_t *e[6];
    const uint8_t prio[] = {2, 1, 2, 2, 1, 0};
    for (int i = 0; i < 6; i++)
        e[i] = s_push(queue, prio[i], (uint32_t)(i + 1), 0); // bytes 1..6: 21 in all
    assert_ptr_equal(hop_queue_take(queue, 1), e[0]);
    assert_ptr_equal(hop_queue_take(queue, 2), e[2]);
    assert_ptr_equal(hop_queue_take(queue, 3), e[3]);
    assert_ptr_equal(hop_queue_take(queue, 4), e[1]);
    s_assert_ready(queue, 2, 11);
    hop_queue_requeue(queue, e[2]); // level 2 was empty
    s_assert_list(s_level(queue, 2), (uint64_t[]){3}, 1);
    hop_queue_requeue(queue, e[0]); // before it
    s_assert_list(s_level(queue, 2), (uint64_t[]){1, 3}, 2);
    hop_queue_requeue(queue, e[1]); // level 1: before the never-delivered 5
    s_assert_list(s_level(queue, 1), (uint64_t[]){2, 5}, 2);
    s_assert_list(&queue->ready, (uint64_t[]){6}, 1);
    s_assert_list(&queue->unacked, (uint64_t[]){4}, 1);
    s_assert_ready(queue, 5, 17);
    assert_int_equal(queue->delivered, 4); // requeue does not undo the delivery
    for (int i = 0; i < 3; i++) {
        assert_true(e[i]->redelivered);
        assert_int_equal(e[i]->deliveries, 1);
    }
    hop_queue_requeue(queue, e[3]); // after everything in level 2: the new tail
    s_assert_list(s_level(queue, 2), (uint64_t[]){1, 3, 4}, 3);
    s_assert_ready(queue, 6, 21);
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
    hop_queue_t *queue = s_pqueue(1);
    hop_entry_t *e[4];
    for (int i = 0; i < 4; i++)
        e[i] = s_push(queue, (uint8_t)(i == 3), 10, 0); // 1, 2, 3 base; 4 level 1
    assert_ptr_equal(hop_queue_take(queue, 5), e[3]);
    hop_queue_requeue(queue, e[3]); // redelivered from now on
    for (int i = 0; i < 3; i++)
        hop_queue_take(queue, 5); // 4 (again), 1, 2
    assert_int_equal(queue->delivered, 4);
    s_assert_ready(queue, 1, 10);
    // Newest first, as hop_deliver_flush does.
    hop_queue_unsend(queue, e[1]);
    hop_queue_unsend(queue, e[0]);
    hop_queue_unsend(queue, e[3]);
    s_assert_list(&queue->ready, (uint64_t[]){1, 2, 3}, 3);
    s_assert_list(s_level(queue, 1), (uint64_t[]){4}, 1);
    s_assert_list(&queue->unacked, NULL, 0);
    s_assert_ready(queue, 4, 40);
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
    hop_queue_t *queue = s_pqueue(1);
    s_push(queue, 1, 10, 0);
    s_push(queue, 1, 20, 0);
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
    s_assert_list(&queue->unacked, NULL, 0);
    s_assert_list(s_level(queue, 1), (uint64_t[]){2}, 1);
    s_assert_ready(queue, 1, 20);
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
    s_assert_list(&queue->delayed, seqs, n);
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
    hop_queue_t *queue = s_queue("q");
    hop_entry_t *e[6];
    s_push_n(queue, 6, NULL);
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
    s_assert_list(&queue->unacked, NULL, 0);
    s_assert_ready(queue, 0, 0);
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
    hop_queue_t *queue = s_queue("q");
    hop_entry_t *e[6];
    s_push_n(queue, 6, e); // bodies of 0 bytes: s_push_n has no body
    for (int i = 0; i < 4; i++)
        hop_queue_take(queue, 1); // 1..4
    hop_queue_delay(queue, e[1], 10);
    hop_queue_delay(queue, e[3], 5);
    hop_queue_requeue(queue, e[2]);
    s_assert_list(&queue->ready, (uint64_t[]){3, 5, 6}, 3);
    s_assert_delayed(queue, (uint64_t[]){4, 2}, (uint64_t[]){5, 10}, 2);
    hop_queue_undelay(queue, queue->delayed.head); // 4: between 3 and 5
    s_assert_list(&queue->ready, (uint64_t[]){3, 4, 5, 6}, 4);
    assert_false(e[3]->delayed);
    assert_false(e[3]->unacked);
    assert_true(e[3]->redelivered);
    assert_int_equal(e[3]->at, 5);  // when it became ready again
    hop_queue_undelay(queue, e[1]); // 2: the new head
    s_assert_list(&queue->ready, (uint64_t[]){2, 3, 4, 5, 6}, 5);
    s_assert_list(&queue->delayed, NULL, 0);
    s_assert_list(&queue->unacked, (uint64_t[]){1}, 1);
    s_assert_ready(queue, 5, 0);
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
    hop_queue_t *queue = s_pqueue(3);
    hop_entry_t *a = s_push(queue, 3, 11, 0); // 1
    hop_entry_t *b = s_push(queue, 1, 22, 0); // 2
    s_push(queue, 3, 33, 0);                  // 3
    s_push(queue, 1, 44, 0);                  // 4
    assert_ptr_equal(hop_queue_take(queue, 1), a);
    hop_queue_delay(queue, a, 8);
    hop_entry_t *third = hop_queue_take(queue, 2);
    assert_int_equal(third->seq, 3);
    assert_ptr_equal(hop_queue_take(queue, 3), b);
    hop_queue_delay(queue, b, 8);
    s_assert_delayed(queue, (uint64_t[]){1, 2}, (uint64_t[]){8, 8}, 2);
    s_assert_ready(queue, 1, 44);
    hop_queue_undelay(queue, b); // not the head: any delayed entry may go
    s_assert_list(s_level(queue, 1), (uint64_t[]){2, 4}, 2);
    s_assert_delayed(queue, (uint64_t[]){1}, (uint64_t[]){8}, 1);
    hop_queue_undelay(queue, a);
    s_assert_list(s_level(queue, 3), (uint64_t[]){1}, 1);
    s_assert_ready(queue, 3, 77);
    assert_ptr_equal(hop_queue_head(queue), a);
    hop_queue_settle(queue, third, true);
    hop_queue_destroy(&queue);
}

static void
test_undelay_into_an_empty_ready_list(void **state)
{
    (void)state;
    hop_queue_t *queue = s_queue("q");
    hop_entry_t *e[2];
    s_push_n(queue, 2, e);
    hop_queue_take(queue, 0);
    hop_queue_take(queue, 0);
    hop_queue_delay(queue, e[1], 3);
    hop_queue_undelay(queue, e[1]);
    s_assert_list(&queue->ready, (uint64_t[]){2}, 1);
    hop_queue_requeue(queue, e[0]); // before it
    s_assert_list(&queue->ready, (uint64_t[]){1, 2}, 2);
    s_push_n(queue, 1, NULL); // after it: the tail was kept
    s_assert_list(&queue->ready, (uint64_t[]){1, 2, 3}, 3);
    s_assert_ready(queue, 3, 0);
    hop_queue_destroy(&queue);
}

// Limits ---------------------------------------------------------------------------------------

static void
test_full_at_exactly_max_length(void **state)
{
    (void)state;
    hop_queue_t *queue = s_queue_with(&(hop_qargs_t){.max_length = 3});
    assert_false(hop_queue_full(queue, 0));
    s_push(queue, 0, 1000, 0);
    s_push(queue, 0, 1000, 0);
    assert_false(hop_queue_full(queue, 1000000)); // a third fits: bytes are not limited
    s_push(queue, 0, 1000, 0);
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
    hop_queue_t *queue = s_queue_with(&(hop_qargs_t){.max_length_bytes = 100});
    assert_false(hop_queue_full(queue, 100)); // exactly the limit fits
    assert_true(hop_queue_full(queue, 101));
    s_push(queue, 0, 60, 0);
    assert_false(hop_queue_full(queue, 40));
    assert_true(hop_queue_full(queue, 41));
    s_push(queue, 0, 40, 0);
    assert_int_equal(queue->ready_bytes, 100);
    assert_false(hop_queue_full(queue, 0)); // an empty body still fits at the limit
    assert_true(hop_queue_full(queue, 1));
    for (int i = 0; i < 50; i++)
        s_push(queue, 0, 0, 0); // the count is not limited
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
    hop_queue_t *queue = s_queue_with(&(hop_qargs_t){.max_length = 2, .max_length_bytes = 10});
    s_push(queue, 0, 9, 0);
    assert_false(hop_queue_full(queue, 1));
    assert_true(hop_queue_full(queue, 2)); // bytes
    s_push(queue, 0, 0, 0);
    assert_true(hop_queue_full(queue, 0)); // count
    hop_queue_destroy(&queue);
}

static void
test_full_never_without_limits(void **state)
{
    (void)state;
    hop_queue_t *queue = s_queue("q");
    for (int i = 0; i < 100; i++)
        s_push(queue, 0, UINT32_MAX, 0);
    assert_int_equal(queue->ready_bytes, 100 * (uint64_t)UINT32_MAX);
    assert_false(hop_queue_full(queue, SIZE_MAX / 2));
    hop_queue_destroy(&queue);
}

// TTL ----------------------------------------------------------------------------------------

// Pushes a message at now with a per-message TTL (when has_ttl); returns its expires_at.
static uint64_t
s_expires_at(hop_queue_t *queue, bool has_ttl, uint32_t ttl, uint64_t now)
{
    hop_msg_t *msg = hop_msg_new();
    msg->has_ttl = has_ttl;
    msg->ttl = ttl;
    hop_entry_t *e = hop_queue_push(queue, msg, now);
    assert_int_equal(e->at, now);
    return e->expires_at;
}

static void
test_expires_at_without_any_ttl_is_never(void **state)
{
    (void)state;
    hop_queue_t *queue = s_queue("q");
    assert_int_equal(s_expires_at(queue, false, 0, 1000), UINT64_MAX);
    assert_int_equal(s_expires_at(queue, false, 500, 1000), UINT64_MAX); // ttl without has_ttl
    hop_queue_destroy(&queue);
    // message_ttl without has_ttl is not set either.
    queue = s_queue_with(&(hop_qargs_t){.message_ttl = 500});
    assert_int_equal(s_expires_at(queue, false, 0, 1000), UINT64_MAX);
    hop_queue_destroy(&queue);
}

static void
test_expires_at_from_the_message_ttl(void **state)
{
    (void)state;
    hop_queue_t *queue = s_queue("q");
    assert_int_equal(s_expires_at(queue, true, 500, 1000), 1500);
    assert_int_equal(s_expires_at(queue, true, 0, 1000), 1000); // 0 is a TTL: expire at once
    assert_int_equal(s_expires_at(queue, true, UINT32_MAX, 7), 7 + (uint64_t)UINT32_MAX);
    hop_queue_destroy(&queue);
}

static void
test_expires_at_from_the_queue_message_ttl(void **state)
{
    (void)state;
    hop_queue_t *queue = s_queue_with(&(hop_qargs_t){.has_ttl = true, .message_ttl = 300});
    assert_int_equal(s_expires_at(queue, false, 0, 1000), 1300);
    assert_int_equal(s_expires_at(queue, false, 0, 2000), 2300);
    hop_queue_destroy(&queue);
    queue = s_queue_with(&(hop_qargs_t){.has_ttl = true, .message_ttl = 0});
    assert_int_equal(s_expires_at(queue, false, 0, 1000), 1000);
    hop_queue_destroy(&queue);
    queue = s_queue_with(&(hop_qargs_t){.has_ttl = true, .message_ttl = UINT32_MAX});
    assert_int_equal(s_expires_at(queue, false, 0, 1), 1 + (uint64_t)UINT32_MAX);
    hop_queue_destroy(&queue);
}

static void
test_expires_at_takes_the_shorter_of_both(void **state)
{
    (void)state;
    hop_queue_t *queue = s_queue_with(&(hop_qargs_t){.has_ttl = true, .message_ttl = 300});
    assert_int_equal(s_expires_at(queue, true, 100, 1000), 1100); // the message's
    assert_int_equal(s_expires_at(queue, true, 301, 1000), 1300); // the queue's
    assert_int_equal(s_expires_at(queue, true, 300, 1000), 1300); // equal
    assert_int_equal(s_expires_at(queue, true, 0, 1000), 1000);
    hop_queue_destroy(&queue);
    queue = s_queue_with(&(hop_qargs_t){.has_ttl = true, .message_ttl = 0});
    assert_int_equal(s_expires_at(queue, true, 100, 1000), 1000);
    hop_queue_destroy(&queue);
}

// A requeue or a delay keeps the deadline the message was published with.
static void
test_expires_at_survives_requeue_and_delay(void **state)
{
    (void)state;
    hop_queue_t *queue = s_queue_with(&(hop_qargs_t){.has_ttl = true, .message_ttl = 300});
    s_push(queue, 0, 0, 1000);
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

// Purge and destroy with every list in use ----------------------------------------------------

// A dead letter's record owns its exchange, key and death bytes.
static hop_msg_t *
s_msg_owning(uint8_t priority, uint32_t body_len)
{
    hop_msg_t *msg = hop_msg_new();
    msg->priority = priority;
    msg->body_len = body_len;
    msg->own = hop_malloc(16);
    memcpy(msg->own, "dlxkeydeath", 12);
    msg->exchange = (const char *)msg->own;
    msg->exchange_len = 3;
    msg->key = (const char *)msg->own + 3;
    msg->key_len = 3;
    msg->death = msg->own + 6;
    msg->death_len = 5;
    return msg;
}

static void
test_release_frees_owned_bytes(void **state)
{
    (void)state;
    hop_msg_t *msg = s_msg_owning(0, 0);
    hop_msg_release(msg); // LSan: own is freed
    msg = hop_msg_new();
    assert_null(msg->own); // a recycled record owns nothing
    hop_msg_release(msg);
    // Shared by two queues: the bytes live until the last entry goes.
    hop_queue_t *a = s_queue("a"), *b = s_queue("b");
    msg = s_msg_owning(0, 4);
    hop_queue_push(a, msg, 0);
    hop_queue_push(b, msg, 0);
    hop_queue_destroy(&a);
    assert_int_equal(msg->refs, 1);
    assert_memory_equal(msg->key, "key", 3);
    hop_queue_destroy(&b);
}

static void
test_purge_drops_ready_and_delayed_on_every_level(void **state)
{
    (void)state;
    hop_queue_t *queue = s_pqueue(2);
    hop_entry_t *e[7];
    const uint8_t prio[] = {0, 1, 2, 2, 0, 1, 9};
    for (int i = 0; i < 7; i++)
        e[i] = hop_queue_push(queue, s_msg_owning(prio[i], 10), 0);
    hop_msg_t *shared = s_msg_with_body('s'); // also in another queue: must survive the purge
    hop_queue_t *other = s_queue("other");
    hop_queue_push(other, shared, 0);
    hop_queue_push(queue, shared, 0); // 8, base list
    assert_ptr_equal(hop_queue_take(queue, 1), e[2]);
    assert_ptr_equal(hop_queue_take(queue, 1), e[3]);
    assert_ptr_equal(hop_queue_take(queue, 1), e[6]);
    assert_ptr_equal(hop_queue_take(queue, 1), e[1]);
    hop_queue_delay(queue, e[2], 100);
    hop_queue_delay(queue, e[1], 50); // 2 delayed, 2 unacked (4 and 7), 4 ready
    s_assert_ready(queue, 4, 30);
    assert_int_equal(hop_queue_purge(queue), 6);
    for (uint32_t p = 0; p <= 2; p++)
        s_assert_list(s_level(queue, p), NULL, 0);
    s_assert_list(&queue->delayed, NULL, 0);
    s_assert_list(&queue->unacked, (uint64_t[]){4, 7}, 2);
    s_assert_ready(queue, 0, 0);
    assert_null(hop_queue_head(queue));
    assert_null(hop_queue_oldest(queue));
    assert_int_equal(shared->refs, 1);
    s_assert_body(shared, 's');
    assert_int_equal(hop_queue_purge(queue), 0);
    // The queue works on after a purge, counters from zero.
    hop_queue_requeue(queue, e[6]);
    hop_entry_t *f = s_push(queue, 1, 5, 0);
    s_assert_list(s_level(queue, 2), (uint64_t[]){7}, 1);
    s_assert_list(s_level(queue, 1), (uint64_t[]){9}, 1);
    s_assert_ready(queue, 2, 15);
    assert_ptr_equal(hop_queue_take(queue, 2), e[6]);
    assert_ptr_equal(hop_queue_take(queue, 2), f);
    s_assert_ready(queue, 0, 0);
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
    hop_queue_t *queue = s_queue_with(&(hop_qargs_t){
        .max_priority = 3, .dlx = hop_strndup("dlx", 3), .has_ttl = true, .message_ttl = 60});
    hop_queue_t *other = s_queue("other");
    for (int i = 0; i < 24; i++) {
        hop_msg_t *msg = i % 3 ? s_msg_with_body((char)('a' + i)) : s_msg_owning(0, 0);
        msg->priority = (uint8_t)(i % 5); // 0..4: base, each level, and clamped
        hop_queue_push(queue, msg, (uint64_t)i);
        if (i % 4 == 0)
            hop_queue_push(other, msg, 0); // shared: a second, non-embedded entry
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
        const hop_list_t *list = s_level(q, p);
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
    hop_entry_t *e = hop_queue_push(m->queue, msg, m->now);
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
    m.queue = s_pqueue(M_MAXP);
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
        cmocka_unit_test(test_random_operations_never_lose_or_duplicate),
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
        cmocka_unit_test(test_release_frees_owned_bytes),
        cmocka_unit_test(test_purge_drops_ready_and_delayed_on_every_level),
        cmocka_unit_test(test_destroy_with_entries_in_every_list),
        cmocka_unit_test(test_random_priorities_delays_and_removals_keep_invariants),
    };
    return cmocka_run_group_tests(tests, NULL, s_teardown_group);
}
