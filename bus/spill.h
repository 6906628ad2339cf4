// bus/spill.h - a durable queue's spilled tail: the ready messages past its in-memory window,
// in queue order, as 24-byte slots. This is what lets a durable queue grow larger than RAM.
//
// A slot is one of three things:
//   - on disk: the position and size of the message's record in the store; nothing else of the
//     message is in memory (docs/ARCHITECTURE.md, "Larger than RAM");
//   - in memory: an entry not yet written out (a transient message, or a persistent one whose
//     record is not yet durable), which keeps the queue's order;
//   - a hole: a slot whose message left (acked during replay, expired, removed), skipped.
// Slots stay sorted by seq; during replay, when every slot is on disk, also by position.
//
// Storage is a ring of fixed-size chunks: pushing at the tail and popping at the head never
// move a slot, so no copy grows with the queue.
#ifndef HOP_SPILL_H_INCLUDED
#define HOP_SPILL_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct hop_entry hop_entry_t;
typedef struct hop_spill hop_spill_t;

#define HOP_SLOT_LEN_MASK  0x3fffffffu // body bytes (bodies are far below 1 GiB)
#define HOP_SLOT_RECOVERED 0x80000000u // recovered after a restart: flagged redelivered
#define HOP_SLOT_HOLE      0x40000000u // the message left: skip

typedef struct {
    uint64_t seq; // queue order
    union {
        uint64_t pos;       // on disk: the message record's store position
        hop_entry_t *entry; // in memory (size 0)
    };
    uint32_t size;  // on disk: the record's size in the store; 0: in memory
    uint32_t flags; // body bytes (HOP_SLOT_LEN_MASK) | HOP_SLOT_RECOVERED | HOP_SLOT_HOLE
} hop_slot_t;

static inline bool
hop_slot_on_disk(const hop_slot_t *slot)
{
    return slot->size != 0;
}

static inline bool
hop_slot_hole(const hop_slot_t *slot)
{
    return (slot->flags & HOP_SLOT_HOLE) != 0;
}

static inline uint32_t
hop_slot_body_len(const hop_slot_t *slot)
{
    return slot->flags & HOP_SLOT_LEN_MASK;
}

hop_spill_t *hop_spill_new(void);
// Frees the slots (not the entries they hold: empty it first); sets *self_p to NULL.
void hop_spill_destroy(hop_spill_t **self_p);

// Slots that are not holes.
size_t hop_spill_size(const hop_spill_t *self);
// Slots in memory that are not holes.
size_t hop_spill_in_memory(const hop_spill_t *self);
// Slots are numbered from 0 at the first push on; [begin, end) are those still held.
uint64_t hop_spill_begin(const hop_spill_t *self);
uint64_t hop_spill_end(const hop_spill_t *self);
// The slot numbered i, begin <= i < end.
hop_slot_t *hop_spill_at(const hop_spill_t *self, uint64_t i);

// Appends a slot (its seq must be above every slot's) and returns it.
hop_slot_t *hop_spill_push_disk(hop_spill_t *self, uint64_t seq, uint64_t pos, uint32_t size,
                                uint32_t flags);
hop_slot_t *hop_spill_push_entry(hop_spill_t *self, uint64_t seq, hop_entry_t *entry,
                                 uint32_t body_len);
// The first slot that is not a hole (holes before it are dropped), NULL when empty.
hop_slot_t *hop_spill_front(hop_spill_t *self);
// Drops the front slot (what hop_spill_front returned).
void hop_spill_pop(hop_spill_t *self);
// Makes a slot a hole; an on-disk slot keeps its position (so lookups by position still work).
void hop_spill_hole(hop_spill_t *self, hop_slot_t *slot);
// Turns an on-disk slot into an in-memory one holding entry, and back.
void hop_spill_set_entry(hop_spill_t *self, hop_slot_t *slot, hop_entry_t *entry);
void hop_spill_set_disk(hop_spill_t *self, hop_slot_t *slot, uint64_t pos, uint32_t size);

// The slot with this seq (holes included), NULL when none.
hop_slot_t *hop_spill_find_seq(const hop_spill_t *self, uint64_t seq);
// The on-disk slot (or on-disk hole) at this store position, NULL when none. Valid while every
// slot is on disk or an on-disk hole, as during replay.
hop_slot_t *hop_spill_find_pos(const hop_spill_t *self, uint64_t pos);

// The writer-out's cursor (bus/paging.c): slots before it were looked at already.
uint64_t hop_spill_seen(const hop_spill_t *self);
void hop_spill_set_seen(hop_spill_t *self, uint64_t seen);

// Bytes of memory the spill itself takes (its chunks).
size_t hop_spill_memory(const hop_spill_t *self);

#endif
