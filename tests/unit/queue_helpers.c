// tests/unit/queue_helpers.c - what the queue model tests share (see queue_helpers.h).
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "queue_helpers.h"

#include <string.h>

hop_queue_t *
qh_queue(const char *name)
{
    return hop_queue_new(name, strlen(name));
}

// A message whose body frame holds QH_BODY_SIZE bytes of fill.
hop_msg_t *
qh_msg_with_body(char fill)
{
    hop_msg_t *msg = hop_msg_new();
    zmq_msg_t *body = hop_msg_body_frame(msg);
    zmq_msg_close(body);
    assert_int_equal(zmq_msg_init_size(body, QH_BODY_SIZE), 0);
    memset(zmq_msg_data(body), fill, QH_BODY_SIZE);
    return msg;
}

void
qh_assert_body(hop_msg_t *msg, char fill)
{
    char expect[QH_BODY_SIZE];
    memset(expect, fill, sizeof expect);
    assert_non_null(msg->frames);
    assert_int_equal(zmq_msg_size(&msg->frames->body), QH_BODY_SIZE);
    assert_memory_equal(zmq_msg_data(&msg->frames->body), expect, QH_BODY_SIZE);
}

// Pushes n fresh messages; returns the entries in entries[] (may be NULL).
void
qh_push_n(hop_queue_t *queue, size_t n, hop_entry_t **entries)
{
    for (size_t i = 0; i < n; i++) {
        hop_entry_t *e = hop_queue_push(queue, hop_msg_new(), 0, HOP_TTL_NONE);
        if (entries)
            entries[i] = e;
    }
}

// Checks list holds exactly the entries with seqs, in order, with consistent back links.
void
qh_assert_list(const hop_list_t *list, const uint64_t *seqs, size_t n)
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

hop_queue_t *
qh_queue_with(const hop_qargs_t *args)
{
    hop_queue_t *queue = qh_queue("q");
    hop_queue_set_args(queue, args);
    return queue;
}

hop_queue_t *
qh_pqueue(uint32_t max_priority)
{
    return qh_queue_with(&(hop_qargs_t){.max_priority = max_priority});
}

// Pushes a message of priority with a body of body_len bytes (the length only: no frames).
hop_entry_t *
qh_push(hop_queue_t *queue, uint8_t priority, uint32_t body_len, uint64_t now)
{
    hop_msg_t *msg = hop_msg_new();
    msg->priority = priority;
    msg->body_len = body_len;
    return hop_queue_push(queue, msg, now, HOP_TTL_NONE);
}

// The ready list of priority level p (0: the base list).
const hop_list_t *
qh_level(const hop_queue_t *queue, uint32_t p)
{
    return p == 0 ? &queue->ready : &queue->levels[p - 1];
}

// Checks the ready counters against the expected values and against a recount of every level.
void
qh_assert_ready(const hop_queue_t *queue, size_t count, uint64_t bytes)
{
    size_t n = 0;
    uint64_t b = 0;
    uint32_t top = queue->levels ? queue->args.max_priority : 0;
    for (uint32_t p = 0; p <= top; p++)
        for (const hop_entry_t *e = qh_level(queue, p)->head; e; e = e->next) {
            n++;
            b += e->msg->body_len;
        }
    // Spilled slots count as ready too (bus/spill.h).
    for (uint32_t l = 0; queue->spills && l < hop_queue_nlevels(queue); l++) {
        const hop_spill_t *spill = queue->spills[l];
        for (uint64_t i = hop_spill_begin(spill); i < hop_spill_end(spill); i++) {
            const hop_slot_t *slot = hop_spill_at(spill, i);
            if (!hop_slot_hole(slot)) {
                n++;
                b += hop_slot_body_len(slot);
            }
        }
    }
    assert_int_equal(n, count);
    assert_int_equal(b, bytes);
    assert_int_equal(queue->ready_count, count);
    assert_int_equal(queue->ready_bytes, bytes);
}

int
qh_teardown_group(void **state)
{
    (void)state;
    hop_records_trim(); // freelists back to the heap so that LSan sees no leaks
    return 0;
}
