// sdk/client_internal.h - private to libhopper: the client state and helpers shared by
// client.c (connection, request core), client_topology.c (declares, bindings, inspection),
// client_messages.c (publish, consumers, get, request/reply), client_confirm.c (publisher
// confirms, returns, revoked deliveries and the callbacks they call), client_io.c (the I/O
// thread, opening and closing connections), client_recv.c (sending, the receive pump, batches
// from the broker) and delivery.c (parsing deliveries).
//
// Threads: the user thread owns hop_client_t and, for the length of each socket operation, the
// socket, a ZMTP connection of our own (zmtp.h; client_io.h says how it shares it with the I/O
// thread, which only sends heartbeats, watches for a silent broker and sends what the outbox
// holds). Frames from the broker are read by the thread that asked for them, and the user
// thread unpacks the broker's batches. Messages to the broker go to the socket at once when
// the client is not publishing fast, and into an outbox of batches when it is (PROTOCOL.md 2.1).
#ifndef HOP_CLIENT_INTERNAL_H_INCLUDED
#define HOP_CLIENT_INTERNAL_H_INCLUDED

#include "codec.h"
#include "hopper.h"

#include <stdarg.h>
#include <zmq.h>

#define HOP_DEFAULT_TIMEOUT 5000 // ms, for requests and connect
#define HOP_ERROR_MAX       1024 // bytes of error text kept
#define HOP_TAG_GEN_SHIFT   48   // delivery tags carry the connection generation above this bit
#define HOP_TAG_MASK        ((UINT64_C(1) << HOP_TAG_GEN_SHIFT) - 1)
#define HOP_CONFIRM_WINDOW  (1u << 24) // publishes awaiting their confirm, at most (oldest first)
#define HOP_REVOKED_MAX     256        // revoked delivery tags remembered, newest first
#define HOP_EVENT_TEXT      512        // bytes of a broker's text kept for a callback

// One message from the broker as the user thread holds it: a message of its own, or one record
// of a batch (PROTOCOL.md 2.1). head and data locate its header and body bytes wherever they
// live, and wire borrows head. Small frames keep their bytes inside the zmq_msg_t itself: never
// move a hop_inmsg_t while head, data or wire are in use.
typedef struct {
    zmq_msg_t header;    // frame 1; for a record handed to a caller, a reference to the batch
    zmq_msg_t body;      // frame 2, empty when absent (and for a record)
    bool has_body;       // a body frame came (a record: body_len > 0)
    zmq_msg_t *records;  // a record: the batch's records frame it lives in; else NULL
    const uint8_t *head; // the header bytes
    size_t head_size;
    const uint8_t *data; // the body bytes, NULL when there is no body
    size_t data_size;
    hop_wire_t wire; // decoded header
} hop_inmsg_t;

void hop_inmsg_close(hop_inmsg_t *self);

// A delivery as allocated: the public struct first (so the public pointer is the node), then the
// body frame it points into (zero copy), then the FIFO link. The header array, strings, the raw
// props and a copied body follow in the same allocation: one malloc per delivery.
typedef struct hop_delivery_node {
    hop_delivery_t pub;
    zmq_msg_t body;
    struct hop_delivery_node *next; // FIFO of buffered deliveries
    size_t cap;                     // bytes allocated, for reuse as a spare
} hop_delivery_node_t;

// Parses a deliver / get-ok header (wire) into an owned delivery; moves *body (may be NULL: an
// empty body) into it. Props that are not well formed are ignored (props_raw stays NULL).
// The allocation is *spare when spare is not NULL and *spare is large enough (then *spare
// becomes NULL; hop_delivery_recycle made it). Never returns NULL (aborts on out of memory).
hop_delivery_t *hop_delivery_parse(const hop_wire_t *wire, zmq_msg_t *body,
                                   hop_delivery_node_t **spare);
// The same for a record of a batch whose body (body_size bytes) lies inside frame, which stays
// the caller's: a body up to HOP_BATCH_BODY_MAX is copied into the delivery's allocation (the
// batch frame can go at once), a larger one shares frame (zmq_msg_copy, no byte copied).
hop_delivery_t *hop_delivery_parse_record(const hop_wire_t *wire, zmq_msg_t *frame,
                                          const void *body, size_t body_size,
                                          hop_delivery_node_t **spare);
// Parses msg (a deliver / get-ok, on its own or a record) with the call above that fits; a body
// frame of its own moves into the delivery.
hop_delivery_t *hop_inmsg_delivery(hop_inmsg_t *msg, hop_delivery_node_t **spare);
// Done with a delivery the SDK lent out (hop_client_dispatch): keeps the larger of it and
// *spare in *spare for the next parse, and frees the other. A consumer loop then allocates
// nothing per message.
void hop_delivery_recycle(hop_delivery_t **self_p, hop_delivery_node_t **spare);

// A consumer this client started, re-created on reconnect.
typedef struct hop_consumer_rec {
    struct hop_consumer_rec *next;
    int prefetch;
    int flags;            // HOP_NO_ACK | HOP_EXCLUSIVE
    uint64_t ack_timeout; // ms, 0 = the queue's or the broker's default
    bool subscription;    // queue is server-named: re-declare and re-bind it on reconnect
    char tag[HOP_NAME_MAX + 1];
    char queue[HOP_NAME_MAX + 1];
    char exchange[HOP_NAME_MAX + 1]; // subscription only
    char pattern[HOP_NAME_MAX + 1];  // subscription only
} hop_consumer_rec_t;

typedef struct hop_client_io hop_client_io_t;

// Something the broker told us that a callback of the application hears about: kept until a
// safe point of a client call (hop_client_fire), so that callbacks never run inside the
// receive pump or a reconnect and may call the client themselves. Records are reused.
typedef enum { HOP_EVENT_CONFIRM, HOP_EVENT_RETURN, HOP_EVENT_REVOKED } hop_event_kind_t;

typedef struct hop_event {
    struct hop_event *next;
    hop_event_kind_t kind;
    uint64_t number;           // confirm: seq; revoked: delivery tag
    bool multiple;             // confirm
    bool ok;                   // confirm: positive
    int code;                  // confirm (nack) and return: the broker's code
    hop_delivery_t *returned;  // return: the message, owned
    char text[HOP_EVENT_TEXT]; // confirm, return: the broker's text; revoked: the consumer tag
} hop_event_t;

struct hop_client {
    // Settings
    int timeout_ms;   // request and connect timeout
    int heartbeat_ms; // asked for in hello; 0 = the broker's default
    char *name;       // client name for hello, or NULL
    bool reconnect;   // re-establish a lost connection on the next call
    char *endpoint;   // of the last connect, or NULL before

    // Connection
    hop_client_io_t *io;  // the socket and the I/O thread; NULL when not connected
    bool lost;            // the connection was lost (and not closed by the user)
    unsigned publishes;   // publishes since connect, to pace looking at the socket
    uint64_t next_id;     // request id of the next request
    uint32_t opens;       // successful hellos so far
    uint64_t gen;         // connection generation, stamped into delivery tags
    uint64_t max_message; // from hello-ok; 0 = unknown
    int broker_heartbeat; // ms, in force
    int broker_timeout;   // ms: silence after which either side gives up
    char server[64];      // hello-ok's server string
    hop_enc_t enc;        // reused for every header we write

    // Errors
    char error[HOP_ERROR_MAX]; // text of the last error
    int error_code;            // broker code of the last error, 0 when local
    int async_rc;              // pending asynchronous error (hop_err_t), 0 = none
    int async_code;
    unsigned async_more; // further asynchronous errors while one was pending
    char async_text[HOP_ERROR_MAX];

    // Deliveries buffered for hop_client_receive, oldest first
    hop_delivery_node_t *head;
    hop_delivery_node_t *tail;
    hop_delivery_node_t *spare; // a delivery's allocation kept for the next (dispatch)

    // A batch from the broker being handed out record by record (client_recv.c)
    zmq_msg_t in_records; // its records frame (empty when none)
    hop_batch_t in_at;    // the next record
    uint64_t in_left;     // records its header announced that were not read yet
    bool in_batch;        // a batch is being handed out

    // Consumers to restore on reconnect
    hop_consumer_rec_t *consumers;

    // Publisher confirms (client_confirm.c). Publishes are numbered for the client's life, so
    // a number names one publish even across reconnects. Seqs below conf_base are settled;
    // conf_ring holds a pending flag for each seq in [conf_base, pub_seq] at seq & (cap - 1).
    bool confirm;                  // confirm mode (hop_client_confirm_select)
    bool paused;                   // the broker asked us to pause publishing (flow control)
    char paused_why[256];          // its reason
    uint64_t pub_seq;              // seq of the last numbered publish, 0 before the first
    uint64_t conf_base;            // the oldest seq that may still be pending
    uint8_t *conf_ring;            // pending flags
    uint64_t conf_cap;             // entries in conf_ring, a power of two
    uint64_t unconfirmed;          // pending seqs
    uint64_t nacked;               // publishes refused (or lost) since the last wait_confirms
    uint64_t nack_seq;             // the first of them
    int nack_code;                 // its broker code (0: lost with the connection)
    char nack_why[HOP_EVENT_TEXT]; // its reason, "was refused by the broker: ..."

    // Callbacks and the events waiting for them
    hop_confirm_fn *confirm_fn;
    void *confirm_arg;
    hop_return_fn *return_fn;
    void *return_arg;
    hop_revoked_fn *revoked_fn;
    void *revoked_arg;
    hop_event_t *ev_head; // oldest first
    hop_event_t *ev_tail;
    hop_event_t *ev_free; // records to reuse
    bool firing;          // a callback is running: events wait for the loop that called it

    // Delivery tags the broker revoked (ack deadline passed), a ring of the newest
    uint64_t revoked[HOP_REVOKED_MAX];
    unsigned revoked_used; // entries in use
    unsigned revoked_next; // where the next one goes

    // Request/reply
    char reply_queue[HOP_NAME_MAX + 1]; // private reply queue, "" until the first request
    char reply_tag[HOP_NAME_MAX + 1];   // its consumer tag
    const char *await_corr;             // correlation id hop_client_request waits for
    hop_delivery_t *reply_slot;         // the matching reply, once it arrived
    char corr_prefix[9];                // 8 random hex digits per client
    uint64_t corr_seq;
};

// ---------------------------------------------------------------------------------------
// client_io.c

// Milliseconds on a monotonic clock.
int64_t hop_client_now(void);
// Clients alive in the process: the last unref gives the pooled batch buffers back.
void hop_client_proc_ref(void);
void hop_client_proc_unref(void);

// The hop_err_t for a broker error code.
int hop_client_map_code(uint64_t code);
// Sets the error text and code; returns rc (for `return hop_client_fail(...)`).
int hop_client_fail(hop_client_t *self, int rc, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
// Records a broker `error` header as the last error; returns the mapped hop_err_t.
int hop_client_broker_error(hop_client_t *self, const hop_wire_t *wire);
// Remembers an asynchronous error (the first one wins; later ones are counted).
void hop_client_async(hop_client_t *self, int rc, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
// Returns the pending asynchronous error as the last error and clears it.
int hop_client_take_async(hop_client_t *self);

// Opens a new connection: socket (ZMTP handshake), hello, I/O thread. Returns HOP_OK or an error.
int hop_client_open(hop_client_t *self);
// Stops the I/O thread, closes the sockets, drops buffered deliveries. Safe when not open.
void hop_client_shut(hop_client_t *self);
// Bytes the outbox holds at most. A message that finds it fuller waits for the socket to take
// some (the broker reads slower than the caller publishes, or not at all), for up to the
// client's timeout: a caller is slowed to the broker's pace, as with a blocking ZeroMQ send
// at its high-water mark, and the client's memory stays bounded.
#define HOP_IO_BOX_MAX (4u << 20)
// Sends a message to the broker, or queues it in the outbox when the socket does not take it
// now (client_recv.c's hop_client_send is the caller). Blocks only while the outbox holds
// HOP_IO_BOX_MAX bytes: then it waits for the socket to take some, for up to timeout_ms.
// Returns 0 (sent or queued), or, the message dropped: -1 after timeout_ms, -2 when the
// connection is lost (as hop_client_io_recv), -3 when the poll failed (errno).
int hop_client_io_put(hop_client_io_t *self, const void *header, size_t header_size,
                      const void *body, size_t body_size, bool has_body, bool alone,
                      int timeout_ms);
// Receives one message from the broker without waiting (what the I/O thread read for us comes
// first). Returns as hop_inmsg_recv (0, 1, -1 when nothing), or -2 when nothing is left and
// the connection is lost: the broker was silent past its timeout, or the socket failed
// (hop_client_io_error).
int hop_client_io_recv(hop_client_io_t *self, hop_inmsg_t *msg);
// Waits until deadline (ms, -1 = forever) for a message from the broker, doing the I/O
// thread's duties meanwhile. Returns 1 when one is there, 0 at the deadline, -2 when the
// broker was silent past its timeout or the socket failed, -3 when the poll failed (errno).
int hop_client_io_wait(hop_client_io_t *self, int64_t deadline);
// The errno the socket failed with (the broker closed the connection: ECONNRESET), or 0.
int hop_client_io_error(hop_client_io_t *self);
// Sends a heartbeat if one is due and notes a silent broker (a look at the clock).
void hop_client_io_tick(hop_client_io_t *self);
// Shuts the connection as lost; sets the error text. Returns HOP_ECONNECT.
int hop_client_lost(hop_client_t *self, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

// ---------------------------------------------------------------------------------------
// client_recv.c

// Receives one whole message from conn into msg (no wait). Returns 0, 1 when it had more than
// two frames (the extra frames are dropped), -1 when nothing was there, -2 when the connection
// is closed or failed.
struct hop_zmtp;
int hop_inmsg_recv(hop_inmsg_t *msg, struct hop_zmtp *conn);
// Decodes msg's header into msg->wire. Returns 0, or -1 with a reason in err (may be NULL).
int hop_inmsg_decode(hop_inmsg_t *msg, char *err, size_t err_size);
// Whether cmd is a reply to a request (it carries the request's id).
bool hop_client_is_reply(hop_cmd_t cmd);

// Queues a header (and a body frame when has_body) for the broker. Never blocks. The I/O thread
// may send it inside a batch with the messages queued around it, unless alone (raw calls: a
// hello or a batch of the caller's own must reach the broker as it was written).
int hop_client_send(hop_client_t *self, const void *header, size_t header_size, const void *body,
                    size_t body_size, bool has_body, bool alone);
// Waits until deadline (hop_client_now() ms; -1 = forever, 0 = not at all) for one message from
// the broker.
// Returns 1 when it is the reply to request *awaited (awaited may be NULL): *msg then holds it
// and the caller closes it. Returns 0 when a message was absorbed (a delivery buffered, an
// asynchronous error remembered, a heartbeat or a stale reply dropped), HOP_ETIMEOUT at the
// deadline, or HOP_ECONNECT when the connection was found lost (it is shut by then). A batch
// is handled record by record as if each had come alone, all in one call up to the awaited
// reply; the records after it wait for the next call, before anything newer.
int hop_client_step(hop_client_t *self, int64_t deadline, const uint64_t *awaited,
                    hop_inmsg_t *msg);
// Absorbs whatever the broker already sent, without waiting: buffers deliveries, notices a
// lost connection and asynchronous errors. Cheap when there is nothing to read.
void hop_client_drain(hop_client_t *self);
// Drops the rest of the batch being handed out, if any.
void hop_client_batch_end(hop_client_t *self);

// Delivery FIFO
void hop_client_push(hop_client_t *self, hop_delivery_t *delivery);
hop_delivery_t *hop_client_pop(hop_client_t *self);

// Removes the consumer record with tag (no-op when absent).
void hop_client_forget(hop_client_t *self, const char *tag, size_t tag_len);

// ---------------------------------------------------------------------------------------
// client.c: argument checks and the request core

// HOP_EINVAL with a message when name is NULL or longer than HOP_NAME_MAX; what names it.
int hop_client_check_name(hop_client_t *self, const char *what, const char *name);
// HOP_EINVAL when flags has bits outside allowed.
int hop_client_check_flags(hop_client_t *self, int flags, int allowed, const char *call);
// Copies ptr/len to out as a C string when out is not NULL; HOP_EINVAL when it does not fit.
int hop_client_copy_out(hop_client_t *self, char *out, size_t out_size, const char *what,
                        const char *ptr, size_t len);
// Makes sure a call can talk to the broker: absorbs what already arrived, reconnects a lost
// connection when allowed, and (waits: calls that wait) reports a pending asynchronous error.
int hop_client_ready(hop_client_t *self, bool waits);
// Starts a request header with a fresh id in self->enc; returns the id.
uint64_t hop_client_begin(hop_client_t *self, hop_cmd_t cmd);
// Sends the header in self->enc (and body when has_body).
int hop_client_send_header(hop_client_t *self, const void *body, size_t body_size, bool has_body);

#define HOP_ANY_REPLY HOP_CMD_UNKNOWN // hop_client_wait: any reply but `error`
#define HOP_RAW_REPLY HOP_CMD_COUNT_  // hop_client_wait: any reply, `error` included

// Waits for the reply to request id. Returns HOP_OK with *reply open (the caller closes it), or
// an error: an `error` reply mapped, HOP_ETIMEOUT, HOP_ECONNECT, HOP_EPROTO when the reply is
// not expect. A 505 always means the broker forgot this connection.
int hop_client_wait(hop_client_t *self, uint64_t id, hop_cmd_t expect, const char *what,
                    hop_inmsg_t *reply);
// Sends the request in self->enc and waits for its reply (as hop_client_wait).
int hop_client_call(hop_client_t *self, uint64_t id, hop_cmd_t expect, const char *what,
                    hop_inmsg_t *reply);
// The same for replies that carry nothing but (optionally) `messages`.
int hop_client_call_ok(hop_client_t *self, uint64_t id, hop_cmd_t expect, const char *what,
                       uint64_t *messages_out);
// A sync point's result: its own error, else a pending asynchronous error, else HOP_OK.
int hop_client_sync(hop_client_t *self, int rc);

// ---------------------------------------------------------------------------------------
// Broker operations without argument or connection checks ("do"), for the public verbs and
// for what the client does on its own (subscribe, request/reply, reconnect).

// client_topology.c
int hop_client_do_declare_queue(hop_client_t *self, const char *name, int flags,
                                const hop_queue_args_t *args, char *name_out, size_t name_out_size,
                                uint64_t *messages_out, uint64_t *consumers_out);
int hop_client_do_bind(hop_client_t *self, hop_cmd_t cmd, const char *queue, const char *exchange,
                       const char *key);
int hop_client_do_delete_queue(hop_client_t *self, const char *name, int flags,
                               uint64_t *messages_out);

// client_messages.c
// Opens a new connection after a loss and re-creates the consumers.
int hop_client_reconnect(hop_client_t *self);
// Forgets every consumer record and the reply queue.
void hop_client_forget_all(hop_client_t *self);

// ---------------------------------------------------------------------------------------
// client_confirm.c: publisher confirms, returns, revoked deliveries, callbacks

// The seq the next publish gets in confirm mode (0 outside it), making room to track it.
// Returns HOP_OK or HOP_ENOMEM when too many publishes await their confirm.
int hop_client_confirm_next(hop_client_t *self, uint64_t *seq);
// Tracks seq (from hop_client_confirm_next) once its publish was queued for the broker.
void hop_client_confirm_sent(hop_client_t *self, uint64_t seq);
// Counts every pending publish as refused, code 0 (the connection was lost; self->error says
// how).
void hop_client_confirm_lost(hop_client_t *self);
// Handle a confirm / return / revoked from the broker (msg stays the caller's).
void hop_client_take_confirm(hop_client_t *self, const hop_wire_t *wire);
void hop_client_take_return(hop_client_t *self, hop_inmsg_t *msg);
void hop_client_take_revoked(hop_client_t *self, const hop_wire_t *wire);
// Whether the broker revoked delivery tag (as the application sees it).
bool hop_client_was_revoked(const hop_client_t *self, uint64_t tag);
// Runs the callbacks of the events that arrived, oldest first, unless a callback is running
// (its caller's loop runs the newer ones). Call only where the client is in a steady state.
void hop_client_fire(hop_client_t *self);
// Frees the confirm state and the events that are still waiting (hop_client_destroy).
void hop_client_confirm_fini(hop_client_t *self);

#endif
