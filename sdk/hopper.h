// sdk/hopper.h - libhopper, the C client of the Hopper message bus.
//
// One hop_client_t is one connection to hopperd (one TCP connection speaking ZMTP, as a ZeroMQ
// DEALER would). Typical use:
//
//     hop_client_t *client = hop_client_new();
//     if (hop_client_connect(client, "tcp://127.0.0.1:5680") != HOP_OK)
//         fprintf(stderr, "%s\n", hop_client_error(client));
//     hop_client_declare_queue(client, "jobs", 0, NULL, 0);
//     hop_client_publish(client, "", "jobs", "hello", 5, NULL);
//     hop_client_consume(client, "jobs", 10, 0, NULL, 0);
//     hop_delivery_t *d;
//     if (hop_client_receive(client, &d, 1000) == HOP_OK) {
//         hop_client_ack(client, d->tag, false);
//         hop_delivery_destroy(&d);
//     }
//     hop_client_destroy(&client);
//
// Threading: a client must be used by one thread at a time (like an AMQP channel); use one
// client per thread for parallel work. Each client runs one internal I/O thread that owns the
// socket and sends heartbeats, so a consumer busy for minutes on one message is not declared
// dead by the broker. Deliveries are buffered by the client until hop_client_receive() or
// hop_client_dispatch() returns them; prefetch bounds how many can pile up.
//
// Errors: every call that can fail returns HOP_OK (0) or a negative hop_err_t; the text of the
// last error (including the broker's own message) is hop_client_error(). Calls that wait for
// the broker give up after the client's timeout (hop_client_set_timeout, default 5000 ms) with
// HOP_ETIMEOUT.
#ifndef HOPPER_H_INCLUDED
#define HOPPER_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define HOP_PROTOCOL_VERSION 1
#define HOP_DEFAULT_ENDPOINT "tcp://127.0.0.1:5680"
#define HOP_NAME_MAX         255 // bytes in a queue/exchange name, routing key, consumer tag

// Error codes. Negative values are local conditions; broker refusals map to the codes below
// and keep the broker's numeric code in hop_client_error_code().
typedef enum {
    HOP_OK = 0,
    HOP_EINVAL = -1,    // bad argument (NULL, name too long, ...)
    HOP_ENOMEM = -2,    // a limit was reached before allocating
    HOP_EFULL = -3,     // a queue or buffer is full
    HOP_ETIMEOUT = -4,  // no answer (or no message) within the timeout
    HOP_ECONNECT = -5,  // broker unreachable or the connection was lost
    HOP_EPROTO = -6,    // the peer broke the protocol (undecodable frame, unexpected reply)
    HOP_ENOTFOUND = -7, // broker 404: no such queue / exchange / consumer
    HOP_EREFUSED = -8,  // broker 403/405: access refused or resource locked
    HOP_EPRECOND = -9,  // broker 406: precondition failed (redeclare, unknown tag, ...)
    HOP_EBROKER = -10,  // any other broker error (see hop_client_error_code)
    HOP_EEMPTY = -11,   // hop_client_get: the queue had no ready message
    HOP_ECLOSED = -12,  // the client is not connected
    HOP_ENACKED = -13,  // the broker refused a published message (negative confirm)
} hop_err_t;

// Returns a static, human-readable name for an error code.
const char *hop_strerror(int err);

// Broker error codes as they travel on the wire (docs/PROTOCOL.md section 7).
enum {
    HOP_CODE_CONTENT_TOO_LARGE = 311,
    HOP_CODE_NO_ROUTE = 312, // a mandatory message matched no queue (returned)
    HOP_CODE_ACCESS_REFUSED = 403,
    HOP_CODE_NOT_FOUND = 404,
    HOP_CODE_RESOURCE_LOCKED = 405,
    HOP_CODE_PRECONDITION_FAILED = 406,
    HOP_CODE_FRAME_ERROR = 501,
    HOP_CODE_SYNTAX_ERROR = 502,
    HOP_CODE_COMMAND_INVALID = 503,
    HOP_CODE_UNEXPECTED_FRAME = 505,
    HOP_CODE_RESOURCE_ERROR = 506, // a reject-publish queue was full (negative confirm)
    HOP_CODE_NOT_IMPLEMENTED = 540,
    HOP_CODE_INTERNAL_ERROR = 541,
};

// Name of a broker error code ("not-found" for 404); "error" for codes it does not know.
const char *hop_code_name(int code);

// Flags for declares and consume.
enum {
    HOP_DURABLE = 1 << 0,
    HOP_EXCLUSIVE = 1 << 1,
    HOP_AUTO_DELETE = 1 << 2,
    HOP_PASSIVE = 1 << 3,
    HOP_NO_ACK = 1 << 4,    // consume/get: the broker considers the message acked on send
    HOP_IF_UNUSED = 1 << 5, // delete
    HOP_IF_EMPTY = 1 << 6,  // delete
};

// One application header. Values are strings on the publishing side; received headers whose
// value is not a string are rendered as text (numbers in decimal, true/false, nil as "").
typedef struct {
    const char *key;
    const char *value;
} hop_header_t;

// Message properties. Every field is optional (NULL / 0 = unset). On received deliveries the
// strings are owned by the delivery.
typedef struct {
    const char *content_type;
    const char *content_encoding;
    const char *message_id;
    const char *correlation_id;
    const char *reply_to;
    const char *type;
    const char *app_id;
    uint64_t timestamp; // ms since the Unix epoch
    const hop_header_t *headers;
    size_t header_count;
} hop_props_t;

// One death record of a dead-lettered message (docs/PROTOCOL.md 6.4): why it left which
// queue, where it had been published to, when (ms since the Unix epoch) and how many times.
typedef struct {
    const char *reason; // "rejected", "expired", "maxlen" or "delivery-limit"
    const char *queue;
    const char *exchange;
    const char *routing_key;
    uint64_t time;
    uint64_t count;
} hop_death_t;

// A received message (from a consumer or hop_client_get). Owned by the caller; free it with
// hop_delivery_destroy. All pointers stay valid until then.
typedef struct {
    const char *consumer; // consumer tag ("" for get)
    const char *exchange;
    const char *routing_key;
    uint64_t tag; // delivery tag, for ack/nack/reject
    bool redelivered;
    uint32_t delivery_count; // 1 on first delivery
    uint64_t message_count;  // get only: ready messages left in the queue
    hop_props_t props;
    const void *body;
    size_t body_size;
    const void *props_raw; // the props exactly as received (a msgpack map), or NULL
    size_t props_raw_size;
    const void *headers_raw; // the headers map exactly as received (msgpack), or NULL
    size_t headers_raw_size;
    uint8_t priority;          // 0 unless published with a priority
    const hop_death_t *deaths; // death records, newest first (the last is the first death)
    size_t death_count;        // 0 unless the message was dead-lettered
    // hop_client_peek: the body's whole size, more than body_size when the reply had room for
    // only its first body_size bytes; 0 for every other delivery.
    size_t body_whole_size;
} hop_delivery_t;

void hop_delivery_destroy(hop_delivery_t **self_p);
// Returns the value of header key, or NULL. Borrowed from the delivery.
const char *hop_delivery_header(const hop_delivery_t *self, const char *key);

typedef struct hop_client hop_client_t;

// Creates an unconnected client. Never returns NULL (aborts on out of memory).
hop_client_t *hop_client_new(void);
// Closes the connection politely (unacked deliveries return to their queues) and frees.
void hop_client_destroy(hop_client_t **self_p);

// Settings; call before connect.
void hop_client_set_timeout(hop_client_t *self, int timeout_ms);    // request timeout, default 5000
void hop_client_set_heartbeat(hop_client_t *self, int interval_ms); // default: the broker's
void hop_client_set_name(hop_client_t *self, const char *name);     // shown in list connections
// When on (default), a lost connection is re-established on the next call: the client says
// hello again and re-creates its consumers (unacked deliveries of the old connection were
// returned to their queues by the broker; acking them now fails with HOP_EPRECOND).
void hop_client_set_reconnect(hop_client_t *self, bool reconnect);

// Connects and says hello. endpoint NULL means $HOPPER_BROKER or HOP_DEFAULT_ENDPOINT.
// Returns HOP_OK, HOP_ECONNECT (unreachable within the timeout), HOP_EBROKER/HOP_EPROTO.
int hop_client_connect(hop_client_t *self, const char *endpoint);
bool hop_client_connected(const hop_client_t *self);

// Text of the last error, including the broker's message; "" if none. Borrowed.
const char *hop_client_error(const hop_client_t *self);
// Broker error code (e.g. 404) of the last error, or 0 when the last error was local.
int hop_client_error_code(const hop_client_t *self);

// Topology. type is "direct", "fanout" or "topic". flags: HOP_DURABLE | HOP_AUTO_DELETE |
// HOP_PASSIVE (and HOP_EXCLUSIVE for queues).
int hop_client_declare_exchange(hop_client_t *self, const char *name, const char *type, int flags);
int hop_client_delete_exchange(hop_client_t *self, const char *name, int flags); // HOP_IF_UNUSED
// name "" asks for a server-named queue; its name is copied to name_out (if not NULL).
// messages_out / consumers_out are optional (may be NULL).
int hop_client_declare_queue(hop_client_t *self, const char *name, int flags, char *name_out,
                             size_t name_out_size);
int hop_client_declare_queue_ex(hop_client_t *self, const char *name, int flags, char *name_out,
                                size_t name_out_size, uint64_t *messages_out,
                                uint64_t *consumers_out);

// Queue arguments (docs/PROTOCOL.md 4.3). Zero / NULL fields are not set. They are fixed by
// the first declare; declaring again with a different value fails with HOP_EPRECOND.
typedef struct {
    uint64_t max_length;              // most ready messages
    uint64_t max_length_bytes;        // most bytes of ready bodies
    const char *overflow;             // "drop-head" (default) or "reject-publish"
    uint64_t message_ttl;             // ms a message may stay in the queue
    uint64_t expires;                 // ms unused before the queue is deleted
    uint64_t max_deliveries;          // deliveries before a returned message is dead-lettered
    const char *dead_letter_exchange; // "" is the default exchange; NULL: none
    const char *dead_letter_key;      // NULL: the message's own routing key
    uint64_t retry_delay;             // ms before a requeued message is ready again (doubles)
    uint64_t retry_delay_max;         // cap of that backoff (0: retry_delay, i.e. constant)
    uint64_t max_priority;            // 1..255; 0: no priorities
    uint64_t ack_timeout;             // ms ack deadline (>= 1000); 0: the broker's default
} hop_queue_args_t;

// declare_queue_ex with arguments (args may be NULL).
int hop_client_declare_queue_args(hop_client_t *self, const char *name, int flags,
                                  const hop_queue_args_t *args, char *name_out,
                                  size_t name_out_size, uint64_t *messages_out,
                                  uint64_t *consumers_out);
// flags: HOP_IF_UNUSED | HOP_IF_EMPTY. messages_out (may be NULL): messages deleted.
int hop_client_delete_queue(hop_client_t *self, const char *name, int flags,
                            uint64_t *messages_out);
int hop_client_purge_queue(hop_client_t *self, const char *name, uint64_t *messages_out);
int hop_client_bind(hop_client_t *self, const char *queue, const char *exchange, const char *key);
int hop_client_unbind(hop_client_t *self, const char *queue, const char *exchange, const char *key);

// Publishes asynchronously (returns once queued for sending). props may be NULL. The client
// queues at most 4 MiB that the socket has not taken: past that, a publish waits for the
// broker to read, and after the client's timeout fails with HOP_ETIMEOUT, the message not
// sent (a stopped broker that no longer heartbeats gives HOP_ECONNECT instead). A body over
// the broker's max_message (from hello-ok) is refused at once with HOP_EBROKER and
// hop_client_error_code() 311 (content-too-large), as the broker itself would refuse it.
// An unknown exchange is reported by the broker asynchronously: the next call that waits for
// the broker returns it as the error (hop_client_error names the exchange); in confirm mode it
// is the publish's negative confirm instead (code 404).
int hop_client_publish(hop_client_t *self, const char *exchange, const char *routing_key,
                       const void *body, size_t body_size, const hop_props_t *props);

// Per-publish options (all optional; zero = unset).
typedef struct {
    bool mandatory;      // return the message (hop_client_on_return) if it matches no queue
    bool persistent;     // keep it on disk in durable queues
    uint64_t expiration; // ms: per-message TTL
    uint8_t priority;    // for queues with max_priority
} hop_publish_opts_t;

// hop_client_publish with options (opts may be NULL). In confirm mode *seq_out (may be NULL)
// receives the message's sequence number (0 otherwise).
int hop_client_publish_ex(hop_client_t *self, const char *exchange, const char *routing_key,
                          const void *body, size_t body_size, const hop_props_t *props,
                          const hop_publish_opts_t *opts, uint64_t *seq_out);

// Publisher confirms. After hop_client_confirm_select every publish is numbered 1, 2, ... and
// the broker confirms each one (positively once it is stored in every queue it matched, or
// negatively, e.g. when a reject-publish queue is full). Publishes of hop_client_request and
// hop_client_reply are numbered too. Needs no connection; always HOP_OK. Irreversible for the
// client; kept across reconnects, and the numbering goes on across them (a number names one
// publish for the client's life). Publishes that were not confirmed when the connection was
// lost count as negative, code 0: the application should send them again.
int hop_client_confirm_select(hop_client_t *self);
// Called for each confirm (multiple: every unconfirmed seq <= seq at once; text: the broker's
// reason of a negative one, else ""), from inside the client's calls on the application's
// thread (publish, receive, dispatch, wait_confirms, get, declares...; never on the I/O
// thread). A lost connection is reported as one negative call with multiple, the last seq and
// code 0. Callbacks (this one, on_return, on_revoked) may call the client, publish and ack
// included, but must not destroy it.
typedef void(hop_confirm_fn)(hop_client_t *client, uint64_t seq, bool multiple, bool ok, int code,
                             const char *text, void *arg);
void hop_client_on_confirm(hop_client_t *self, hop_confirm_fn *fn, void *arg);
// Waits until every publish made so far is confirmed, handling what arrives meanwhile
// (deliveries stay buffered for hop_client_receive; callbacks run). timeout_ms -1 = forever.
// Returns HOP_OK when all were confirmed positively since the last call, HOP_ENACKED when some
// were refused or lost with the connection (how many in *nacked_out, may be NULL;
// hop_client_error says why and hop_client_error_code gives the first one's broker code, 0 when
// lost), HOP_ETIMEOUT, a pending asynchronous error, or HOP_EINVAL outside confirm mode.
int hop_client_wait_confirms(hop_client_t *self, int timeout_ms, uint64_t *nacked_out);
// Publishes sent in confirm mode and not yet confirmed.
uint64_t hop_client_unconfirmed(const hop_client_t *self);

// Called for each mandatory message that matched no queue, from inside the client's calls.
// The delivery (tag 0) is borrowed for the call; code is 312 (no-route). Without a callback,
// returned messages are dropped.
typedef void(hop_return_fn)(hop_client_t *client, const hop_delivery_t *returned, int code,
                            const char *text, void *arg);
void hop_client_on_return(hop_client_t *self, hop_return_fn *fn, void *arg);

// Starts a consumer on queue. prefetch 0 = unlimited. flags: HOP_NO_ACK | HOP_EXCLUSIVE.
// tag NULL or "" lets the broker pick; the tag in force is copied to tag_out (if not NULL).
int hop_client_consume(hop_client_t *self, const char *queue, const char *tag, int prefetch,
                       int flags, char *tag_out, size_t tag_out_size);
// hop_client_consume with an ack deadline in ms (0: the queue's, else the broker's default).
// A delivery not settled in time is revoked: the broker returns it to the queue, and acking it
// afterwards fails with HOP_EPRECOND ("revoked").
int hop_client_consume_ex(hop_client_t *self, const char *queue, const char *tag, int prefetch,
                          int flags, uint64_t ack_timeout_ms, char *tag_out, size_t tag_out_size);
// Called when the broker revokes a delivery (ack deadline passed), from inside client calls.
// Acking, nacking, rejecting or retrying a revoked tag afterwards fails at once with
// HOP_EPRECOND; a revoked delivery still buffered by the client is dropped, never received.
typedef void(hop_revoked_fn)(hop_client_t *client, const char *consumer, uint64_t tag, void *arg);
void hop_client_on_revoked(hop_client_t *self, hop_revoked_fn *fn, void *arg);
// Cancels a consumer: its unacked deliveries return to the queue.
int hop_client_cancel(hop_client_t *self, const char *tag);
// Subscribes to an exchange: declares a server-named exclusive auto-delete queue, binds it
// with pattern (NULL or "" = "#" for topic, "" otherwise) and consumes it with no-ack.
// The queue name is copied to queue_out (if not NULL).
int hop_client_subscribe(hop_client_t *self, const char *exchange, const char *pattern,
                         char *queue_out, size_t queue_out_size);

// Waits up to timeout_ms (-1 = forever, 0 = poll) for the next delivery of any consumer.
// Returns HOP_OK and an owned *delivery_p, HOP_ETIMEOUT, or a connection error.
int hop_client_receive(hop_client_t *self, hop_delivery_t **delivery_p, int timeout_ms);

// Calls handler for each delivery until the handler returns non-zero, timeout_ms passes with
// no delivery (-1 = no limit), or an error. The handler borrows the delivery (it is destroyed
// after the handler returns). Returns HOP_OK when the handler stopped, HOP_ETIMEOUT, or error.
typedef int(hop_handler_fn)(hop_client_t *client, const hop_delivery_t *delivery, void *arg);
int hop_client_dispatch(hop_client_t *self, hop_handler_fn *handler, void *arg, int timeout_ms);

// Acknowledgements (asynchronous: an unknown tag is reported like a publish error).
int hop_client_ack(hop_client_t *self, uint64_t tag, bool multiple);
int hop_client_nack(hop_client_t *self, uint64_t tag, bool multiple, bool requeue);
int hop_client_reject(hop_client_t *self, uint64_t tag, bool requeue);
// Retry later: returns one delivery to its queue, ready again only after delay_ms (0: at
// once, ignoring the queue's retry_delay). Other messages keep flowing meanwhile.
int hop_client_retry_later(hop_client_t *self, uint64_t tag, uint64_t delay_ms);

// Pulls one message. Returns HOP_OK and an owned *delivery_p, or HOP_EEMPTY.
int hop_client_get(hop_client_t *self, const char *queue, int flags, hop_delivery_t **delivery_p);

// Request/reply: publishes with reply_to set to a private reply queue of this client and a
// fresh correlation id, then waits up to timeout_ms for the reply with that correlation id.
// props may be NULL (its reply_to/correlation_id are overridden). Deliveries of other
// consumers that arrive meanwhile stay buffered for hop_client_receive.
int hop_client_request(hop_client_t *self, const char *exchange, const char *routing_key,
                       const void *body, size_t body_size, const hop_props_t *props, int timeout_ms,
                       hop_delivery_t **reply_p);
// Replies to a request delivery: publishes to its reply_to through the default exchange with
// its correlation id.
int hop_client_reply(hop_client_t *self, const hop_delivery_t *request, const void *body,
                     size_t body_size, const hop_props_t *props);

// Inspection. what: "queues", "exchanges", "bindings", "consumers", "connections".
// On success *items_p is an owned buffer holding the reply's `items` array as msgpack and
// *size_p its length; free it with free().
int hop_client_list(hop_client_t *self, const char *what, void **items_p, size_t *size_p);
// Unacked deliveries (of queue only; NULL: of every queue), oldest first, as list's items
// (queue, consumer, connection, tag, delivered_ms_ago, count). A reply holds at most about 60 KB
// of items: *left_off_p (may be NULL) is how many newer deliveries it had no room for.
int hop_client_list_unacked(hop_client_t *self, const char *queue, void **items_p, size_t *size_p,
                            size_t *left_off_p);
// Peek: up to count (0: 10; at most 1000) ready messages from the head of queue, in delivery
// order (highest priority first), without consuming them: nothing about them changes. On
// success *deliveries_p is an owned array of *count_p owned deliveries (tag 0, consumer "",
// message_count the queue's ready messages); free it with hop_client_peek_free. A reply holds
// about 60 KB: it may end early, and a large body may be cut (see body_whole_size).
int hop_client_peek(hop_client_t *self, const char *queue, size_t count,
                    hop_delivery_t ***deliveries_p, size_t *count_p);
// Destroys count deliveries of a peek and their array; sets *deliveries_p to NULL.
void hop_client_peek_free(hop_delivery_t ***deliveries_p, size_t count);
// Status: *map_p is an owned msgpack map (the status-ok header minus cmd/id); free().
int hop_client_status(hop_client_t *self, void **map_p, size_t *size_p);

// Move and replay (issue 7): republishes ready messages of queue, each atomically inside the
// broker (stored where it routes, then taken out of queue: never in both, never in neither).
typedef struct {
    const char *exchange;      // destination (a move); NULL with replay
    const char *key;           // routing key; NULL: each message's own
    size_t count;              // at most this many; 0: every ready message
    const char *filter_header; // with filter_value: only messages whose props.headers entry
    const char *filter_value;  //   (else props key) of that name reads as the value
    bool replay;               // to the exchange and key of each one's oldest death record
} hop_move_opts_t;
typedef struct {
    uint64_t moved;   // republished and taken out of the queue
    uint64_t skipped; // looked at and left: filtered out, no death record, routed nowhere
    uint64_t left;    // ready messages the queue still holds
} hop_move_result_t;
// Errors: 404 no such queue or exchange, 405 queue exclusive to another connection.
int hop_client_move(hop_client_t *self, const char *queue, const hop_move_opts_t *opts,
                    hop_move_result_t *result);

// Tracing (PROTOCOL.md 4.9): on, the broker publishes a route event per message to the topic
// exchange amq.hopper.trace (subscribe to it to read them); exchange (NULL: all) limits the
// events to those about that exchange. Broker-wide. Errors: 404 no such exchange.
int hop_client_trace(hop_client_t *self, bool on, const char *exchange);

// Sends a raw protocol message (header msgpack + optional body) and, when id_expected is
// true, waits for the reply with the header's id; the reply header is returned as an owned
// msgpack buffer. For tools and tests that speak the protocol directly.
int hop_client_call_raw(hop_client_t *self, const void *header, size_t header_size,
                        const void *body, size_t body_size, void **reply_p, size_t *reply_size_p);

#ifdef __cplusplus
}
#endif
#endif
