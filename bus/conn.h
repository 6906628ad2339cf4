// bus/conn.h - one client connection (a DEALER peer of the broker's ROUTER): its identity,
// liveness clock, consumers, exclusive queues and the ring of its unacked delivery tags.
#ifndef HOP_CONN_H_INCLUDED
#define HOP_CONN_H_INCLUDED

#include "queue.h"

#include <msgpack.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <zmq.h>

#define HOP_ID_MAX      255  // ZeroMQ routing ids are at most 255 bytes
#define HOP_REVOKED_MAX 1024 // revoked tags remembered per connection (a power of two)

// A message other than a delivery that ZeroMQ refused because the peer's pipe was full: kept,
// in order, until the pipe drains (hop_broker_send).
typedef struct hop_backlog {
    struct hop_backlog *next;
    zmq_msg_t header;
    zmq_msg_t body; // empty when the message has no body frame
    bool has_body;
} hop_backlog_t;

struct hop_conn {
    uint8_t id[HOP_ID_MAX]; // ROUTER routing id
    size_t id_len;
    char label[32];            // "conn-N", how operators name it
    char *name;                // client-chosen name from hello, or NULL
    char peer[64];             // remote address, "" if unknown
    uint64_t connected_at;     // monotonic ms
    uint64_t last_recv;        // monotonic ms of the last frame received
    uint64_t last_send;        // monotonic ms of the last frame sent
    uint32_t heartbeat;        // negotiated interval, ms
    uint32_t timeout;          // silence after which the peer is dead, ms
    bool dead;                 // scheduled for closing (unreachable or timed out)
    hop_consumer_t *consumers; // list through conn_prev/conn_next
    size_t consumer_count;
    uint64_t next_ctag;     // for broker-named consumer tags
    hop_queue_t *exclusive; // queues it owns, through owner_next
    // Unacked deliveries by tag: tags are handed out in increasing order, so a ring indexed by
    // (tag - base) finds any tag in O(1) and multiple-acks walk it in order.
    hop_entry_t **ring; // ring_cap slots
    size_t ring_cap;    // a power of two
    size_t ring_head;   // slot of tag ring_base
    uint64_t ring_base; // oldest tag that may still be unacked
    uint64_t next_tag;  // next delivery tag to hand out
    size_t unacked;     // entries in the ring
    // Deliveries made this loop turn, waiting to go out as one batch (PROTOCOL.md 2.1).
    bool batch;                // the client accepts batches (said so in hello)
    msgpack_sbuffer out;       // batch records; its memory is handed to ZeroMQ on flush
    uint32_t out_count;        // records in out
    uint64_t out_first_tag;    // delivery tag of the first record
    hop_entry_t **out_entries; // the records' entries: settled (no-ack) or undone on flush
    size_t out_entries_cap;
    bool out_listed; // in the broker's list of connections with pending output
    hop_conn_t *out_next;
    // Publisher confirms (PROTOCOL.md 4.4): positive confirms are sent once per loop turn as
    // one "multiple" confirm covering every sequence up to confirm_hi.
    uint64_t confirm_hi;       // highest sequence confirmed but not told yet; 0: none
    bool confirm_listed;       // in the broker's list of connections with confirms to send
    uint32_t confirms_waiting; // confirms held until the store has their records on disk
    hop_conn_t *confirm_next;
    // Publisher flow control (PROTOCOL.md 6.3): a client that said flow:true in hello is asked
    // to pause while a queue it publishes to is over the broker's watermark.
    bool flow;                // the client understands `flow`
    hop_queue_t *blocked_on;  // the queue it waits for; NULL when not paused
    hop_conn_t *blocked_next; // the broker's list of paused connections
    // The last HOP_REVOKED_MAX delivery tags revoked after their ack deadline, so that a late
    // ack says why it fails. Allocated at the first revocation (most connections never have one).
    uint64_t *revoked;
    uint32_t revoked_next;
    // Replies, confirms, errors and notices the peer's full pipe refused, oldest first. While
    // any wait, everything else to the peer waits behind them (deliveries stay in their queues).
    hop_backlog_t *backlog_head, *backlog_tail;
    size_t backlog_count;
};

hop_conn_t *hop_conn_new(const void *id, size_t id_len, uint64_t seq, uint64_t now);
// Frees the connection. Its consumers, queues and unacked entries must be gone already.
void hop_conn_destroy(hop_conn_t **self_p);

// Assigns the next delivery tag to entry and remembers it. Returns the tag.
uint64_t hop_conn_track(hop_conn_t *self, hop_entry_t *entry);
// The unacked entry with tag, or NULL.
hop_entry_t *hop_conn_lookup(const hop_conn_t *self, uint64_t tag);
// Uses up the next tag for a delivery that needs no ack (no-ack consumers, no-ack get).
void hop_conn_skip_tag(hop_conn_t *self);
// Forgets tag (after settling or requeueing its entry).
void hop_conn_untrack(hop_conn_t *self, uint64_t tag);
// The tags that may be unacked are [hop_conn_first_tag, self->next_tag).
uint64_t hop_conn_first_tag(const hop_conn_t *self);

// Remembers that tag was revoked (a ring of the HOP_REVOKED_MAX most recent ones).
void hop_conn_revoke(hop_conn_t *self, uint64_t tag);
// True when tag is one of the recently revoked tags.
bool hop_conn_was_revoked(const hop_conn_t *self, uint64_t tag);

hop_consumer_t *hop_conn_find_consumer(const hop_conn_t *self, const char *tag, size_t len);
void hop_conn_add_consumer(hop_conn_t *self, hop_consumer_t *consumer);
void hop_conn_remove_consumer(hop_conn_t *self, hop_consumer_t *consumer);

#endif
