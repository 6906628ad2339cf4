// bus/queue.h - messages, queue entries, consumers and queues: the broker's state model.
//
// A published message (hop_msg_t) is stored once and shared by reference by every queue it was
// routed to; each queue holds it through its own entry (hop_entry_t), which carries the
// per-queue state (delivery count, redelivered flag, delivery tag while unacked). An entry is
// always in exactly one list: its queue's ready list, or its queue's unacked list (and then in
// its connection's tag ring as well). That is the "never lost, never delivered twice"
// invariant made structural.
//
// This module holds no sockets: dispatch picks the consumer and hands the entry back to the
// broker, which sends it. Records come from freelists, so steady-state traffic does no malloc.
#ifndef HOP_QUEUE_H_INCLUDED
#define HOP_QUEUE_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <zmq.h>

#include "spill.h"

typedef struct hop_conn hop_conn_t;
typedef struct hop_queue hop_queue_t;
typedef struct hop_consumer hop_consumer_t;

typedef struct hop_msg hop_msg_t;

// A message's place in one queue. Always in exactly one list: its queue's ready list or its
// queue's unacked list (then also in its connection's tag ring).
typedef struct hop_entry {
    hop_msg_t *msg;
    hop_queue_t *queue;            // owning queue; NULL once the queue was deleted while unacked
    hop_consumer_t *consumer;      // while unacked by a consumer; NULL for get or orphaned
    struct hop_entry *prev, *next; // links in the queue's ready, delayed or unacked list
    uint64_t seq;                  // queue order: ready lists stay sorted by seq
    uint64_t tag;                  // delivery tag while unacked
    uint64_t at;         // monotonic ms: delivered (unacked), due (delayed), entered (ready)
    uint64_t expires_at; // monotonic ms after which it expires; UINT64_MAX: never
    uint32_t deliveries; // times delivered
    // Flags as bits: the record is per message, so every byte counts (PERFORMANCE.md).
    unsigned redelivered : 1;
    unsigned unacked : 1;  // which list the entry is in: unacked, delayed, else ready
    unsigned delayed : 1;  //
    unsigned noack : 1;    // delivered to a no-ack consumer, waiting in an unsent batch
    unsigned embedded : 1; // the entry inside its message record (not from the freelist)
    unsigned spilled : 1;  // ready, but held by a slot of its queue's spill, not a list
} hop_entry_t;

// The frames one received ZeroMQ message brought: a single publish's header and body frames,
// or a batch's records frame (header) shared by every message published in that batch.
// Messages hold it by reference, so a batch of 256 publishes keeps one record, not 256.
typedef struct hop_frames {
    zmq_msg_t header;        // header frame, or the records frame of a batch
    zmq_msg_t body;          // body frame of a single publish; empty for a batch
    uint32_t refs;           // messages holding it
    struct hop_frames *next; // freelist link
} hop_frames_t;

// A published message. Strings and the body point into its frames (or, for a dead letter,
// into bytes of its own). Most messages go to one queue, so the record carries that queue's
// entry inside it: one record per message. Every byte counts: 136 bytes is a 144-byte malloc
// chunk, the smallest that holds it (1M ready messages, PERFORMANCE.md "Memory").
struct hop_msg {
    union {
        hop_frames_t *frames; // where the bytes live (shared); NULL until attached
        struct hop_msg *next; // freelist link, while the record is free
    };
    const char *exchange; // exchange name as published (hop_msg_names)
    const char *key;      // routing key
    const uint8_t *props; // raw msgpack props map, or NULL
    const uint8_t *body;  // body bytes, or NULL when empty
    uint32_t props_len, body_len;
    uint32_t refs;        // entries (queues) still holding the message
    uint8_t exchange_len; // names and keys are at most 255 bytes (PROTOCOL.md 1)
    uint8_t key_len;      //
    uint8_t priority;     // 0..255
    bool entry_used : 1;  // the embedded entry is in use
    bool persistent : 1;  // kept on disk in durable queues
    bool held : 1;        // counted in hop_msg_held_bytes (once a queue took it)
    // A dead letter's own bytes, [u32 death_len][exchange][key][death], start 4 bytes before
    // `exchange` (hop_msg_own).
    bool own : 1;
    hop_entry_t entry; // embedded entry for the first queue
};
_Static_assert(sizeof(void *) != 8 || sizeof(hop_msg_t) <= 136,
               "hop_msg_t outgrew its 144-byte malloc chunk");

typedef struct {
    hop_entry_t *head, *tail;
    size_t size;
} hop_list_t;

struct hop_consumer {
    char *tag; // consumer tag, unique within the connection
    hop_conn_t *conn;
    hop_queue_t *queue;
    uint32_t prefetch;    // max unacked, 0 = unlimited
    uint32_t unacked;     // entries it holds
    uint64_t ack_timeout; // ms ack deadline of its deliveries; 0: the queue's
    bool no_ack, exclusive;
    bool stalled;                          // its socket pipe was full; retried on the next tick
    uint64_t delivered;                    // deliveries made to it
    hop_consumer_t *prev, *next;           // ring of the queue's consumers
    hop_consumer_t *conn_prev, *conn_next; // list of the connection's consumers
};

// Queue arguments (PROTOCOL.md 4.3); 0 / NULL = not set.
typedef struct {
    uint64_t max_length, max_length_bytes; // ready messages / bytes of ready bodies
    bool reject_publish;                   // overflow policy; else drop-head
    bool has_ttl;                          // message_ttl is set (0 is a valid TTL)
    uint64_t message_ttl;                  // ms
    uint64_t expires;                      // ms unused before the queue is deleted
    uint64_t max_deliveries;
    char *dlx; // dead-letter exchange ("" = default); NULL: dead letters are dropped
    char *dlk; // dead-letter routing key; NULL: the message's own
    uint64_t retry_delay, retry_delay_max; // ms backoff of requeues
    uint32_t max_priority;                 // 0: no priorities
    uint64_t ack_timeout;                  // ms; 0: the broker's default
} hop_qargs_t;

struct hop_queue {
    char *name;
    size_t name_len;
    bool durable, exclusive, auto_delete;
    hop_conn_t *owner; // exclusive owner, or NULL
    hop_qargs_t args;
    hop_list_t ready;     // priority 0 (the only level without max_priority), sorted by seq
    hop_list_t *levels;   // priorities 1..max_priority (levels[p - 1]), each sorted by seq
    size_t ready_count;   // ready entries on every level
    uint64_t ready_bytes; // their bodies' bytes
    hop_list_t delayed;   // waiting to be ready again, sorted by due time
    hop_list_t unacked;   // in delivery order
    uint64_t next_seq;
    hop_consumer_t *consumers; // ring; also the round-robin cursor
    size_t consumer_count;
    bool had_consumer;                    // for auto-delete: only after a first consumer
    bool exclusive_consumer;              // an exclusive consumer holds the queue
    bool dispatching;                     // re-entrancy guard
    bool deleting;                        // being deleted: no dispatch, no auto-delete
    uint64_t published, delivered, acked; // counters for list queues
    uint64_t dead_lettered, dropped, expired, rejected_publishes;
    // Smoothed rates per second of published, delivered and acked (bus/timers.c), and the
    // counters as they were at the last sample.
    double publish_rate, deliver_rate, ack_rate;
    uint64_t rate_published, rate_delivered, rate_acked;
    uint64_t last_used;      // monotonic ms of the last declare/get/consumer (for `expires`)
    hop_queue_t *owner_next; // list of queues exclusive to the owner connection
    // Durable queues (bus/durable.c): the store's id and declare record, and the message
    // record of each persistent entry, by entry seq.
    uint64_t sid;
    uint64_t spos;
    uint32_t ssize;
    void *stored; // hop_map_t *: seq (8 bytes) -> position and size of its message record
    // Larger than RAM (bus/spill.h): past `window` ready entries in memory, further messages
    // go to the spill, where the durable ones are kept as positions of their records only.
    // One spill per priority level (index 0: `ready`, p: levels[p - 1]), each level with its
    // own window in memory, so that priority order holds past the windows too.
    hop_spill_t **spills; // 1 + max_priority of them; NULL: everything stays in memory
    uint32_t window;      // ready entries kept in memory per level before spilling
};

// Records ----------------------------------------------------------------------------------

// Returns a frames holder with empty frames and no references (from a freelist).
hop_frames_t *hop_frames_new(void);
// Drops one reference; closes the frames and recycles the holder at zero (a holder that no
// message took is freed by one call).
void hop_frames_release(hop_frames_t *frames);
// Returns a message record with no frames (from a freelist).
hop_msg_t *hop_msg_new(void);
// Message records in use (for memory housekeeping).
size_t hop_msg_live(void);
// Body bytes of the messages queues hold (ready, unacked or delayed), each message once
// however many queues hold it: what `status` calls messages_bytes.
uint64_t hop_msg_held_bytes(void);
// Makes msg hold frames (one reference).
void hop_msg_attach(hop_msg_t *msg, hop_frames_t *frames);
// Sets the message's exchange name and routing key (each at most 255 bytes: the codec refuses
// longer names, PROTOCOL.md 1).
void hop_msg_names(hop_msg_t *msg, const char *exchange, size_t exchange_len, const char *key,
                   size_t key_len);
// Gives msg bytes of its own, laid out [u32 death_len][exchange][key][death] (taken over;
// freed with the message), and points its exchange and key into them.
void hop_msg_own(hop_msg_t *msg, uint8_t *own, size_t exchange_len, size_t key_len);
// Gives msg a frames holder of its own and returns its (empty) body frame to fill.
zmq_msg_t *hop_msg_body_frame(hop_msg_t *msg);
// Drops one reference; frees the record (and its frames) at zero.
void hop_msg_release(hop_msg_t *msg);
// The death records of a dead letter (a msgpack array) and their size; NULL when none.
const uint8_t *hop_msg_death(const hop_msg_t *msg, uint32_t *len);
hop_entry_t *hop_entry_new(hop_msg_t *msg);
// Releases the entry's message reference and recycles the entry.
void hop_entry_destroy(hop_entry_t **entry_p);
// Frees the freelists (at shutdown, for leak checkers).
void hop_records_trim(void);

// Queues -----------------------------------------------------------------------------------

hop_queue_t *hop_queue_new(const char *name, size_t len);
// Sets the arguments of a new queue (takes the strings in args; allocates priority levels).
void hop_queue_set_args(hop_queue_t *self, const hop_qargs_t *args);
// Frees the queue and every ready entry. Unacked entries are orphaned (queue = NULL) so that
// their connections can still settle them; consumers must have been removed first.
void hop_queue_destroy(hop_queue_t **self_p);
#define HOP_TTL_NONE UINT64_MAX

// Appends a new ready entry for msg (takes one reference on msg); now is the monotonic ms
// its TTL counts from; ttl is the message's own TTL in ms, or HOP_TTL_NONE (the queue's
// message_ttl applies as well: the shorter wins).
hop_entry_t *hop_queue_push(hop_queue_t *self, hop_msg_t *msg, uint64_t now, uint64_t ttl);
// True when one more message of body_len bytes would go over max_length / max_length_bytes.
bool hop_queue_full(const hop_queue_t *self, size_t body_len);
// The ready entry that would be delivered next (highest priority, oldest), or NULL.
hop_entry_t *hop_queue_head(hop_queue_t *self);
// The oldest ready entry over all priorities (what drop-head drops), or NULL.
hop_entry_t *hop_queue_oldest(hop_queue_t *self);
// Removes a ready entry from its list (the caller then owns it: dead-letter or destroy it).
void hop_queue_remove(hop_queue_t *self, hop_entry_t *entry);
// Takes the head ready entry into the unacked list, counting the delivery; now is the
// delivery time (for ack deadlines). NULL when empty.
hop_entry_t *hop_queue_take(hop_queue_t *self, uint64_t now);
// Undoes hop_queue_take when the delivery could not be sent: back to the head, uncounted.
void hop_queue_untake(hop_queue_t *self, hop_entry_t *entry);
// Returns an unacked entry to the ready list at its original position, flagged redelivered.
void hop_queue_requeue(hop_queue_t *self, hop_entry_t *entry);
// Moves an unacked entry to the delayed list, ready again at monotonic ms due (redelivered).
void hop_queue_delay(hop_queue_t *self, hop_entry_t *entry, uint64_t due);
// Moves a ready entry to the delayed list (a delay recovered from the log).
void hop_queue_delay_ready(hop_queue_t *self, hop_entry_t *entry, uint64_t due);
// Makes a delayed entry ready again, at its original position.
void hop_queue_undelay(hop_queue_t *self, hop_entry_t *entry);
// Removes an unacked entry from the unacked list without destroying it (for dead-lettering).
void hop_queue_unlink(hop_queue_t *self, hop_entry_t *entry);
// Returns an entry whose delivery could not be sent to its original position, as if it had
// never been taken (delivery uncounted, redelivered flag unchanged).
void hop_queue_unsend(hop_queue_t *self, hop_entry_t *entry);
// Removes an unacked entry for good and destroys it; acked says whether a consumer acked it
// (counted in `acked`) rather than it being dropped (nack/reject) or sent with no-ack.
void hop_queue_settle(hop_queue_t *self, hop_entry_t *entry, bool acked);
// Drops every ready and delayed entry, the spills' included; returns how many. Durable records
// of spilled messages are the caller's to release first (hop_durable_purge).
size_t hop_queue_purge(hop_queue_t *self);

// Spilling (larger than RAM) -----------------------------------------------------------------

// Makes the queue spill past window ready entries in memory per level (a durable queue, with
// the store open).
void hop_queue_enable_spill(hop_queue_t *self, uint32_t window);
// Priority levels: 1 + max_priority with priorities, else 1. Level 0 is `ready`.
uint32_t hop_queue_nlevels(const hop_queue_t *self);
// The ready list of a level, and its spill (NULL when the queue does not spill).
hop_list_t *hop_queue_list(hop_queue_t *self, uint32_t level);
hop_spill_t *hop_queue_spill(const hop_queue_t *self, uint32_t level);
// The level of a message of this priority.
uint32_t hop_queue_level_of(const hop_queue_t *self, uint8_t priority);
// Ready messages whose bytes are on disk only, over every level.
size_t hop_queue_paged(const hop_queue_t *self);
// The ready entry after e in delivery order (highest priority first, then oldest; e NULL: the
// first), reading spilled ones back one at a time as the walk reaches them (peek, move).
hop_entry_t *hop_queue_next_ready(hop_queue_t *self, const hop_entry_t *e);
// Reads a spilled message back from disk: returns a message record with no references (NULL
// when the record cannot be read: it is lost, and the loader said so) and sets *at and
// *expires_at (monotonic ms). Installed by the broker (bus/durable.c).
typedef hop_msg_t *(hop_queue_load_fn)(void *arg, hop_queue_t *queue, const hop_slot_t *slot,
                                       uint64_t *at, uint64_t *expires_at);
void hop_queue_set_loader(hop_queue_load_fn *fn, void *arg);
// Brings spilled messages of a level back into memory until `want` or the window (the larger)
// are in its list. hop_queue_head, _oldest and _take call it when a level runs low; walks that
// go further (peek, move) ask for one more as they reach the end of what is in memory.
// Returns how many came in.
size_t hop_queue_fill(hop_queue_t *self, uint32_t level, size_t want);

void hop_queue_add_consumer(hop_queue_t *self, hop_consumer_t *consumer);
void hop_queue_remove_consumer(hop_queue_t *self, hop_consumer_t *consumer);
// The next consumer in round-robin order that may take a message (credit left, not
// stalled), advancing the cursor past it; NULL when none can.
hop_consumer_t *hop_queue_next_consumer(hop_queue_t *self);

// List helpers (exposed for the connection code and tests).
void hop_list_append(hop_list_t *list, hop_entry_t *entry);
void hop_list_remove(hop_list_t *list, hop_entry_t *entry);

#endif
