// bus/broker_internal.h - state and helpers shared by the broker's files: broker.c (reactor,
// connections, inspection), topology.c (exchanges, queues, bindings) and deliver.c
// (publish, consume, acks, dispatch).
#ifndef HOP_BROKER_INTERNAL_H_INCLUDED
#define HOP_BROKER_INTERNAL_H_INCLUDED

#include "broker.h"
#include "codec.h"
#include "conn.h"
#include "exchange.h"
#include "histogram.h"
#include "hopper.h"
#include "map.h"
#include "queue.h"

#include <stdbool.h>

typedef struct hop_durable hop_durable_t;
typedef struct hop_metrics hop_metrics_t;

// A broker-level exchange: name, declared properties, and the pure routing table.
typedef struct {
    char *name;
    size_t name_len;
    hop_exchange_type_t type;
    bool durable, auto_delete;
    bool builtin;          // "" and amq.*: cannot be deleted
    bool had_binding;      // auto-delete only after a first binding
    hop_exchange_t *table; // bindings; NULL for the default exchange (routes by queue name)
    uint64_t published, unroutable;
    uint64_t sid;   // durable: its id in the store (never reused); 0 otherwise
    uint64_t spos;  // durable: position of its declare record
    uint32_t ssize; // and that record's size
} hop_xchg_t;

struct hop_broker {
    hop_broker_config_t config;
    char endpoint[256]; // bound endpoint
    char *data_dir;
    int lock_fd;               // flock on data_dir/LOCK
    void *ctx;                 // ZeroMQ context
    void *router;              // the ROUTER socket
    void *monitor;             // PAIR receiving the router's failed-accept events, or NULL
    uint64_t fd_limit;         // open-file limit in force
    uint64_t accept_failed;    // accepts that failed (out of file descriptors)
    uint64_t accept_logged_at; // monotonic ms of the last log about them
    hop_map_t *conns;          // routing id -> hop_conn_t
    hop_map_t *queues;         // name -> hop_queue_t
    hop_map_t *exchanges;      // name -> hop_xchg_t
    hop_enc_t enc;             // reused for every header we send
    hop_enc_t batch_enc;       // batch headers, written while enc may hold a reply
    hop_conn_t *out_head;      // connections with deliveries waiting in a batch
    hop_conn_t *confirm_head;  // connections with positive confirms to send
    hop_conn_t *blocked_head;  // connections asked to pause publishing (flow control)
    hop_durable_t *durable;    // durable topology and persistent messages (bus/durable.c)
    hop_metrics_t *metrics;    // the Prometheus endpoint (bus/metrics.c), or NULL
    hop_route_t route;         // reused for every publish
    bool tracing;              // route events go to amq.hopper.trace (bus/trace.c)
    bool trace_filter;         // only events about the exchange trace_only
    uint32_t trace_only_len;   //
    char trace_only[256];      // not NUL-terminated
    hop_xchg_t *trace_x;       // amq.hopper.trace (built in: never deleted)
    uint64_t conn_seq;         // for conn-N labels
    uint64_t started_at;       // monotonic ms
    uint64_t now;              // monotonic ms, refreshed once per loop turn
    uint64_t next_tick;        // when the liveness tick runs next
    // A consumer stalled on a full pipe, or a connection has a backlog: retried every RETRY_MS
    // (broker.c) instead of waiting for the next tick.
    bool retry_soon;
    uint64_t retry_at;
    uint64_t retry_ms;        // the interval in force (doubles while retries move nothing)
    bool has_dead;            // some connection is marked dead and waits to be closed
    bool busy;                // messages arrived since the last tick
    bool trimmed;             // the heap was trimmed since the broker was last busy
    size_t live_peak;         // most message records alive since the last trim
    uint64_t trimmed_at;      // monotonic ms of the last trim
    uint64_t trim_not_before; // no idle trim before this (connections just closed)
    uint64_t published, delivered, acked, unroutable; // totals for status
    uint64_t returned, confirmed, rejected_publishes, dead_lettered, dropped, expired, revoked;
    // Smoothed rates per second of published, delivered and acked (bus/timers.c), the totals
    // at the last sample, and when that was (monotonic ms; 0: no sample yet).
    double publish_rate, deliver_rate, ack_rate;
    uint64_t rate_published, rate_delivered, rate_acked, rate_at;
    // ms from entering the ready list to first delivery (deliver.c), by hop_histogram_wait_ms.
    hop_histogram_t deliver_wait;
    char err[256]; // scratch for error texts
};

// broker.c ---------------------------------------------------------------------------------
// Sends the header in self->enc (and msg's body, if msg is not NULL: shared, not copied, when
// it has a frame of its own) to conn, after any batch and any backlog waiting for conn. When
// the peer's pipe is full the message is kept in conn's backlog, in order, and sent once the
// pipe drains (on the next send to conn or the next tick): never dropped. Returns 0, or -1
// when the peer is gone (then conn is marked dead and closed at the end of the loop turn).
int hop_broker_send(hop_broker_t *self, hop_conn_t *conn, const hop_msg_t *msg);
// The same for a delivery, which is not kept: returns -1 when the peer's pipe is full (or its
// backlog not empty), and the caller puts the entry back in its queue.
int hop_broker_send_delivery(hop_broker_t *self, hop_conn_t *conn, const hop_msg_t *msg);
// Sends what waits in conn's backlog, oldest first, until the pipe is full. Returns 0 when
// nothing is left, -1 when some is (or the peer is gone).
int hop_broker_drain_backlog(hop_broker_t *self, hop_conn_t *conn);
// Marks consumer c stalled on its connection's full pipe: skipped by dispatch until the next
// retry (a few milliseconds).
void hop_broker_stall(hop_broker_t *self, hop_consumer_t *c);
// Sends a reply that waited for the store (header bytes only).
void hop_broker_send_held(hop_broker_t *self, hop_conn_t *conn, const void *header, size_t size);
// Sends raw frames to a peer: header, then body (NULL: none). Returns 0 or -1 with *err set.
int hop_broker_send_raw(hop_broker_t *self, const void *peer, size_t peer_len, const void *header,
                        size_t header_size, const hop_msg_t *msg, int *err);
// Sends error code with text (printf format) in reply to request id.
void hop_broker_error(hop_broker_t *self, hop_conn_t *conn, uint64_t id, int code, const char *fmt,
                      ...) __attribute__((format(printf, 5, 6)));
// Starts a reply header: cmd and id.
void hop_broker_reply(hop_broker_t *self, hop_cmd_t cmd, uint64_t id);
void hop_broker_mark_dead(hop_broker_t *self, hop_conn_t *conn);

// inspect.c --------------------------------------------------------------------------------
// Answers list (w->what names the subject) and status.
void hop_inspect_list(hop_broker_t *self, hop_conn_t *conn, const hop_wire_t *w);
void hop_inspect_status(hop_broker_t *self, hop_conn_t *conn, const hop_wire_t *w);
// Answers peek: the ready messages at the head of a queue, changing nothing (PROTOCOL.md 4.7).
void hop_inspect_peek(hop_broker_t *self, hop_conn_t *conn, const hop_wire_t *w);
// Writes the queue arguments that are set, with the keys queue.declare uses.
void hop_inspect_write_args(hop_enc_t *enc, const hop_qargs_t *args);

// topology.c -------------------------------------------------------------------------------
void hop_topology_init(hop_broker_t *self);
void hop_topology_fini(hop_broker_t *self);
hop_queue_t *hop_topology_queue(hop_broker_t *self, const hop_str_t *name);
hop_xchg_t *hop_topology_exchange(hop_broker_t *self, const hop_str_t *name);
// Checks that conn may use queue (exclusive queues belong to one connection); sends 405 and
// returns -1 if not.
int hop_topology_access(hop_broker_t *self, hop_conn_t *conn, hop_queue_t *queue, uint64_t id);
// The queue a request names in `queue`, if conn may use it; otherwise the error (field
// missing 502, no such queue 404, exclusive to another connection 405) is sent and NULL is
// returned.
hop_queue_t *hop_topology_use_queue(hop_broker_t *self, hop_conn_t *conn, const hop_wire_t *w);
// Deletes queue: cancels its consumers (telling their clients), removes its bindings.
void hop_topology_delete_queue(hop_broker_t *self, hop_queue_t *queue);
// Removes an exchange and its bindings (no checks, no reply).
void hop_topology_exchange_remove(hop_broker_t *self, hop_xchg_t *x);
void hop_topology_exchange_declare(hop_broker_t *self, hop_conn_t *conn, const hop_wire_t *w);
void hop_topology_exchange_delete(hop_broker_t *self, hop_conn_t *conn, const hop_wire_t *w);
void hop_topology_queue_declare(hop_broker_t *self, hop_conn_t *conn, const hop_wire_t *w);
void hop_topology_queue_delete(hop_broker_t *self, hop_conn_t *conn, const hop_wire_t *w);
void hop_topology_queue_purge(hop_broker_t *self, hop_conn_t *conn, const hop_wire_t *w);
void hop_topology_bind(hop_broker_t *self, hop_conn_t *conn, const hop_wire_t *w, bool bind);

// deliver.c --------------------------------------------------------------------------------
// Publishes. w borrows the header bytes. A batch record's bytes (header and body) live in
// batch, which the message then shares; a single publish hands over its header and body
// frames (moved into a holder of the message's own).
void hop_deliver_publish(hop_broker_t *self, hop_conn_t *conn, const hop_wire_t *w,
                         hop_frames_t *batch, zmq_msg_t *header, zmq_msg_t *body_frame,
                         const void *body, size_t body_len);
// Sends conn's waiting batch (if any). On failure its deliveries go back to their queues as
// if never taken. Returns 0 or -1.
int hop_deliver_flush(hop_broker_t *self, hop_conn_t *conn);
void hop_deliver_flush_all(hop_broker_t *self);
// Drops conn's waiting batch without sending (the connection is closing; its entries are
// still in its tag ring and are returned to their queues from there).
void hop_deliver_drop_batch(hop_broker_t *self, hop_conn_t *conn);
void hop_deliver_consume(hop_broker_t *self, hop_conn_t *conn, const hop_wire_t *w);
void hop_deliver_cancel(hop_broker_t *self, hop_conn_t *conn, const hop_wire_t *w);
void hop_deliver_settle(hop_broker_t *self, hop_conn_t *conn, const hop_wire_t *w);
void hop_deliver_get(hop_broker_t *self, hop_conn_t *conn, const hop_wire_t *w);
// Sends ready messages of queue to consumers with credit.
void hop_deliver_dispatch(hop_broker_t *self, hop_queue_t *queue);
// Ends consumer: returns its unacked deliveries to the queue, frees it, and auto-deletes the
// queue if that was its last consumer. notify: tell the client (cancelled).
void hop_deliver_end_consumer(hop_broker_t *self, hop_consumer_t *consumer, bool notify);
// Returns every unacked delivery of conn to its queue (newest first, so order is kept).
void hop_deliver_requeue_conn(hop_broker_t *self, hop_conn_t *conn);
// Every tick: retries stalled consumers (their pipes were full), makes due delayed messages
// ready, expires messages, revokes deliveries past their ack deadline, deletes queues unused
// past their `expires`.
void hop_deliver_tick(hop_broker_t *self);
// Between ticks, while something is stalled: gives stalled consumers another chance (the
// queues with ready messages are walked). Returns whether q had any.
bool hop_deliver_unstall(hop_broker_t *self, hop_queue_t *q);
// Stores msg in every queue of route, applying each queue's overflow policy. A queue that
// refuses it (reject-publish, full) is set to NULL in route and *rejected (may be NULL) is set.
// Returns how many queues stored it. Does not dispatch. ttl: the message's own TTL in ms, or
// HOP_TTL_NONE.
size_t hop_deliver_enqueue(hop_broker_t *self, hop_route_t *route, hop_msg_t *msg, uint64_t ttl,
                           bool *rejected);
// Returns an unacked entry (already untracked from its connection) to its queue: dead-letters
// it when it reached the queue's max_deliveries, delays it delay_ms when > 0, else requeues
// it. Does not dispatch.
void hop_deliver_return(hop_broker_t *self, hop_queue_t *queue, hop_entry_t *entry,
                        uint64_t delay_ms);
// Confirms publish seq of conn negatively, at once, after the positive confirms gathered
// before it.
void hop_deliver_nack(hop_broker_t *self, hop_conn_t *conn, uint64_t seq, int code, const char *fmt,
                      ...) __attribute__((format(printf, 5, 6)));
// Flow control: resumes paused publishers whose queue drained under half the watermarks (or
// was deleted: queue is then that queue; NULL checks them all). Forget conn when it closes.
void hop_deliver_resume(hop_broker_t *self, hop_queue_t *deleted);
void hop_deliver_forget_paused(hop_broker_t *self, hop_conn_t *conn);
// Sends the positive confirms gathered this turn; forgets conn's (it is closing).
void hop_deliver_flush_confirms(hop_broker_t *self);
void hop_deliver_drop_confirms(hop_broker_t *self, hop_conn_t *conn);

// Confirms publish seq of conn positively (gathered, sent at the end of the turn).
void hop_deliver_confirm_ok(hop_broker_t *self, hop_conn_t *conn, uint64_t seq);

// paging.c: durable queues larger than RAM ---------------------------------------------------
// Makes a durable queue spill past the in-memory window (--queue-window), unless it has
// priorities or there is no store.
void hop_paging_enable(hop_broker_t *self, hop_queue_t *q);
// On the tick: spilled persistent messages whose records are durable give up their memory.
void hop_paging_write_out(hop_broker_t *self, hop_queue_t *q);
// Releases the records of q's spilled messages, q being deleted (its deletion record makes them
// dead on replay).
void hop_paging_release(hop_broker_t *self, hop_queue_t *q);

// durable.c --------------------------------------------------------------------------------
// Opens the store in the data directory and replays it (the topology handlers rebuild what
// it holds). Returns 0, or -1 with a reason in err.
int hop_durable_open(hop_broker_t *self, char *err, size_t err_size);
// Before each request of conn: a reply to it that follows records it wrote is held until those
// are durable (hop_broker_send asks hop_durable_hold_reply), so that an ok to a durable
// declare, delete, purge, bind or move is never sent for a change a crash could still undo.
// Heartbeats are never held; conn NULL ends the request (nothing is held after it).
void hop_durable_request_begin(hop_broker_t *self, hop_conn_t *conn, hop_cmd_t cmd);
// Copies and holds a reply (header bytes) when the request being handled wrote a record; true
// when held: hop_durable_progress sends it with hop_broker_send_held.
bool hop_durable_hold_reply(hop_broker_t *self, hop_conn_t *conn, const void *header, size_t size);
// Writes out what is pending and closes the store; nothing is recorded afterwards.
void hop_durable_close(hop_broker_t *self);
// Records a durable exchange's declare (declared) or deletion.
void hop_durable_exchange(hop_broker_t *self, hop_xchg_t *x, bool declared);
// An exchange is going away: its binding records die, its deletion is recorded.
void hop_durable_exchange_gone(hop_broker_t *self, hop_xchg_t *x);
// Records a durable queue's declare (declared) or deletion (its messages and bindings die).
void hop_durable_queue(hop_broker_t *self, hop_queue_t *q, bool declared);
// Records a binding or unbinding between a durable queue and a durable (or built-in) exchange.
void hop_durable_bind(hop_broker_t *self, hop_xchg_t *x, hop_queue_t *q, const char *key,
                      size_t key_len, bool bind);
// Writes the record of a persistent message's entry in a durable queue.
void hop_durable_message(hop_broker_t *self, hop_queue_t *q, hop_entry_t *e);
// The entry leaves its queue for good (acked, dropped...): its record is killed.
void hop_durable_forget(hop_broker_t *self, hop_queue_t *q, hop_entry_t *e);
// Before q is purged: releases the records of its ready and delayed messages (spilled ones
// included) and writes its declare again, which replay takes as the purge (durable.c).
void hop_durable_purge(hop_broker_t *self, hop_queue_t *q);
// A persistent entry came back to its queue: records its delivery count and delay (the
// previous such record dies).
void hop_durable_update(hop_broker_t *self, hop_queue_t *q, hop_entry_t *e);
// Starts a publish (forgets whether the last one wrote). Returns whether durability is on.
bool hop_durable_publish_begin(hop_broker_t *self);
// Holds conn's confirm of seq until the records written so far are durable, when this publish
// wrote one or conn has confirms waiting already. Returns false when it may go out now.
bool hop_durable_confirm(hop_broker_t *self, hop_conn_t *conn, uint64_t seq);
void hop_durable_forget_conn(hop_broker_t *self, hop_conn_t *conn);
// Why the publish being handled could not write a persistent message's record (the store's
// error), or NULL when nothing failed: its confirm is then negative.
const char *hop_durable_write_failed(const hop_broker_t *self);
// The store's progress: commits what this turn appended, takes in finished syncs and sends the
// confirms they cover. Call at the end of every loop turn and when hop_durable_fd is readable.
void hop_durable_progress(hop_broker_t *self);
int hop_durable_fd(const hop_broker_t *self);
// The store's current error (0, disk full, I/O error): persistent publishes are refused then.
int hop_durable_error(const hop_broker_t *self);
void hop_durable_status(hop_broker_t *self, hop_enc_t *enc);
// The store's fsync durations; false (snap untouched) when the broker has no store.
bool hop_durable_fsync_histogram(hop_broker_t *self, hop_histogram_snapshot_t *snap);

// ops.c ------------------------------------------------------------------------------------
// Answers move (PROTOCOL.md 4.8): republishes ready messages of a queue, each atomically.
// hdr/hdr_len is the request's header, for the keys only move has.
void hop_ops_move(hop_broker_t *self, hop_conn_t *conn, const hop_wire_t *w, const uint8_t *hdr,
                  size_t hdr_len);

// trace.c ----------------------------------------------------------------------------------
// Answers trace (PROTOCOL.md 4.9): turns route events on (optionally for one exchange) or off.
// hdr/hdr_len is the request's header, for `on`, which only trace has.
void hop_trace_command(hop_broker_t *self, hop_conn_t *conn, const hop_wire_t *w,
                       const uint8_t *hdr, size_t hdr_len);
// Route events; call only while self->tracing. A publish to x routed to route, before it is
// enqueued (the queues that will refuse it are worked out here).
void hop_trace_publish(hop_broker_t *self, const hop_xchg_t *x, const char *key, size_t key_len,
                       const hop_route_t *route, size_t body_len);
// msg left queue unconsumed for reason (a dead-letter reason) and was dropped.
void hop_trace_drop(hop_broker_t *self, const hop_queue_t *queue, const hop_msg_t *msg,
                    const char *reason);
// The dead letter dl of a message that left queue for reason was enqueued in the queues of
// route (NULL: refused), stored in `stored` of them.
void hop_trace_dead_letter(hop_broker_t *self, const hop_queue_t *queue, const hop_msg_t *dl,
                           const char *reason, const hop_route_t *route, size_t stored);

// deadletter.c -----------------------------------------------------------------------------
// Disposes of an entry leaving queue unconsumed (already out of every list): republishes it to
// the queue's dead-letter exchange with a death record for reason ("rejected", "expired",
// "maxlen", "delivery-limit"), or drops it; counts it either way.
void hop_deliver_dead_letter(hop_broker_t *self, hop_queue_t *queue, hop_entry_t *entry,
                             const char *reason);

#endif
