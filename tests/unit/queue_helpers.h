// tests/unit/queue_helpers.h - what the bus/queue.c model tests share: queues and messages to
// test with, and checks of a queue's lists and ready counters. The checks are cmocka asserts.
#ifndef HOP_TESTS_QUEUE_HELPERS_H
#define HOP_TESTS_QUEUE_HELPERS_H

#include "conn.h"
#include "queue.h"
#include "util.h"

#include <stddef.h>
#include <stdint.h>

#define QH_BODY_SIZE 64 // above ZeroMQ's inline size, so the body is a heap block LSan tracks

// Returns a new queue named name, with no arguments.
hop_queue_t *qh_queue(const char *name);

// Returns a new queue "q" with args.
hop_queue_t *qh_queue_with(const hop_qargs_t *args);

// Returns a new queue "q" with max_priority levels.
hop_queue_t *qh_pqueue(uint32_t max_priority);

// Returns a new message whose body frame holds QH_BODY_SIZE bytes of fill.
hop_msg_t *qh_msg_with_body(char fill);

// Checks msg's body frame holds QH_BODY_SIZE bytes of fill.
void qh_assert_body(hop_msg_t *msg, char fill);

// Pushes n fresh messages; returns the entries in entries[] (may be NULL).
void qh_push_n(hop_queue_t *queue, size_t n, hop_entry_t **entries);

// Pushes a message of priority with a body of body_len bytes (the length only: no frames) at
// now; returns its entry.
hop_entry_t *qh_push(hop_queue_t *queue, uint8_t priority, uint32_t body_len, uint64_t now);

// Returns the ready list of priority level p (0: the base list).
const hop_list_t *qh_level(const hop_queue_t *queue, uint32_t p);

// Checks list holds exactly the entries with seqs, in order, with consistent back links.
void qh_assert_list(const hop_list_t *list, const uint64_t *seqs, size_t n);

// Checks the ready counters against the expected values and against a recount of every level
// and of the spill.
void qh_assert_ready(const hop_queue_t *queue, size_t count, uint64_t bytes);

// cmocka group teardown: gives the record freelists back to the heap so that LSan sees no
// leaks.
int qh_teardown_group(void **state);

#endif
