// bus/durable_internal.h - private to durable.c (records, confirms, replay) and paging.c (the
// larger-than-RAM part: spilled messages read back, written out, forgotten).
#ifndef HOP_DURABLE_INTERNAL_H_INCLUDED
#define HOP_DURABLE_INTERNAL_H_INCLUDED

#include "broker_internal.h"
#include "store.h"

// Where a record is. For a message record, also its latest UPDATE record (delivery count and
// delay), released when a newer one is written or the message goes.
typedef struct {
    hop_store_pos_t pos;
    uint32_t size;
    hop_store_pos_t upd_pos;
    uint32_t upd_size;
} hop_drec_t;

// A confirm, or a reply, waiting for the store.
typedef struct {
    hop_conn_t *conn; // NULL once the connection closed
    uint64_t seq;
    hop_store_pos_t end; // durable once the store's durable position reaches this
    uint8_t *reply;      // a reply's header bytes (owned), or NULL for a confirm
    size_t reply_len;
} hop_dwait_t;

struct hop_durable {
    hop_store_t *store;
    hop_conn_t *replay; // the pseudo-connection replayed declares run as (dead: no replies)
    bool replaying;
    bool dirty;               // appended since the last commit
    bool wrote;               // the publish being handled wrote a message record
    bool write_failed;        // ... or failed to write one: its confirm must be negative
    hop_conn_t *request_conn; // the connection whose request is being handled (not heartbeats)
    bool request_wrote;       // that request appended a record: its reply waits for the disk
    hop_store_pos_t last_end; // end of the last record appended
    uint64_t next_id;         // exchange and queue ids
    uint64_t next_msg_id;
    hop_map_t *binds;    // "queue id, exchange id, key" -> hop_drec_t
    hop_map_t *replayed; // during replay: message record position -> hop_entry_t
    hop_dwait_t *waits;  // ring of confirms waiting for the store
    size_t waits_head, waits_len, waits_cap;
    uint64_t recovered, dropped_on_replay;
    char error[256]; // the store's last error, for status and logs
    // Larger than RAM (bus/paging.c).
    hop_queue_t *last_q; // during replay: the queue of the last ACK or UPDATE found spilled
    hop_map_t *pending;  // during replay: UPDATEs of spilled messages, by message position
    uint64_t written_out, read_back, unreadable; // spilled messages: counts since start
};

// durable.c: the key of a binding in d->binds.
size_t hop_durable_bind_key(char *out, size_t cap, uint64_t qid, uint64_t xid, const char *name,
                            size_t name_len, const char *key, size_t key_len);
// durable_replay.c: replays the store into the broker (the store's own report in *report).
int hop_durable_replay(hop_broker_t *self, hop_store_replay_t *report);
// The durable queue with this id, or NULL.
hop_queue_t *hop_durable_queue_by_id(hop_broker_t *self, uint64_t id);

// paging.c: replay. A MESSAGE record past the queue's window becomes a spilled slot (true);
// ACKs and UPDATEs of spilled messages apply to their slots (true when they found one);
// replay_end reads back the messages that UPDATEs changed.
bool hop_paging_replay_message(hop_broker_t *self, hop_queue_t *q, const hop_store_record_t *rec,
                               size_t hsize, uint8_t priority);
bool hop_paging_replay_ack(hop_broker_t *self, const hop_store_record_t *rec);
bool hop_paging_replay_update(hop_broker_t *self, const hop_store_record_t *rec,
                              const hop_wire_t *w);
void hop_paging_replay_end(hop_broker_t *self);
// Decodes a message record's header (its size in *hsize); -1 when it is not one.
int hop_paging_decode(const void *payload, size_t len, hop_wire_t *w, size_t *hsize);
// Builds a message over frames (whose header frame holds a message record; w decoded from those
// very bytes) and sets *at and *expires_at from its wall-clock times.
hop_msg_t *hop_paging_build(hop_broker_t *self, hop_frames_t *frames, const hop_wire_t *w,
                            size_t hsize, uint64_t *at, uint64_t *expires_at);

#endif
