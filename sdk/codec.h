// sdk/codec.h - the Hopper wire codec (docs/PROTOCOL.md), shared by libhopper and hopperd.
//
// Decoding is zero-copy and allocation-free: a header frame is walked once with a msgpack
// cursor and every known key lands in a hop_wire_t as a borrowed span into the frame.
// Encoding writes into a reusable msgpack_sbuffer; a map's size is patched at the end so
// callers need not count keys up front.
#ifndef HOP_CODEC_H_INCLUDED
#define HOP_CODEC_H_INCLUDED

#include "hopper.h"

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HOP_HEADER_MAX 65536 // bytes in a header frame
#define HOP_MP_DEPTH   32    // nesting limit when skipping values

// ---------------------------------------------------------------------------------------
// msgpack cursor: reads one value at a time; every read checks bounds and types.
// All readers return 0 on success, -1 on malformed input or wrong type (cursor unchanged).

typedef struct {
    const uint8_t *p;   // next byte
    const uint8_t *end; // one past the last byte
} hop_mp_t;

void hop_mp_init(hop_mp_t *self, const void *data, size_t size);
int hop_mp_map(hop_mp_t *self, uint32_t *count);
int hop_mp_array(hop_mp_t *self, uint32_t *count);
int hop_mp_str(hop_mp_t *self, const char **str, uint32_t *len);
int hop_mp_uint(hop_mp_t *self, uint64_t *value); // non-negative integers of any width
int hop_mp_int(hop_mp_t *self, int64_t *value);
int hop_mp_bool(hop_mp_t *self, bool *value);
int hop_mp_nil(hop_mp_t *self);
int hop_mp_skip(hop_mp_t *self); // any one value, nested up to HOP_MP_DEPTH
bool hop_mp_at_end(const hop_mp_t *self);
// The msgpack type of the next value (MSGPACK_OBJECT_*), or -1 at end / on a bad byte.
int hop_mp_peek(const hop_mp_t *self);

// ---------------------------------------------------------------------------------------
// Header decoding.

typedef struct {
    const char *ptr; // not NUL-terminated; NULL when absent
    uint32_t len;
} hop_str_t;

typedef struct {
    const uint8_t *ptr; // raw msgpack bytes of one value; NULL when absent
    uint32_t len;
} hop_span_t;

// Commands, in both directions.
typedef enum {
    HOP_CMD_UNKNOWN = 0,
    HOP_CMD_HELLO,
    HOP_CMD_HELLO_OK,
    HOP_CMD_HEARTBEAT,
    HOP_CMD_CLOSE,
    HOP_CMD_CLOSE_OK,
    HOP_CMD_EXCHANGE_DECLARE,
    HOP_CMD_EXCHANGE_DELETE,
    HOP_CMD_QUEUE_DECLARE,
    HOP_CMD_QUEUE_DELETE,
    HOP_CMD_QUEUE_PURGE,
    HOP_CMD_QUEUE_BIND,
    HOP_CMD_QUEUE_UNBIND,
    HOP_CMD_PUBLISH,
    HOP_CMD_CONSUME,
    HOP_CMD_CANCEL,
    HOP_CMD_ACK,
    HOP_CMD_NACK,
    HOP_CMD_REJECT,
    HOP_CMD_GET,
    HOP_CMD_LIST,
    HOP_CMD_STATUS,
    HOP_CMD_OK,
    HOP_CMD_QUEUE_OK,
    HOP_CMD_CONSUME_OK,
    HOP_CMD_DELIVER,
    HOP_CMD_CANCELLED,
    HOP_CMD_GET_OK,
    HOP_CMD_GET_EMPTY,
    HOP_CMD_LIST_OK,
    HOP_CMD_STATUS_OK,
    HOP_CMD_ERROR,
    HOP_CMD_BATCH,
    HOP_CMD_CONFIRM,
    HOP_CMD_RETURN,
    HOP_CMD_REVOKED,
    HOP_CMD_FLOW,
    HOP_CMD_PEEK, // inspection: ready messages without consuming them (issue 7)
    HOP_CMD_PEEK_OK,
    HOP_CMD_MOVE, // operating: republish ready messages / replay dead letters (issue 7)
    HOP_CMD_MOVE_OK,
    HOP_CMD_TRACE, // inspecting: route events to amq.hopper.trace on or off (issue 7)
    HOP_CMD_COUNT_ // number of commands
} hop_cmd_t;

// Wire name of a command ("queue.declare"), or "?" for HOP_CMD_UNKNOWN.
const char *hop_cmd_name(hop_cmd_t cmd);
// Parses a wire name; HOP_CMD_UNKNOWN when not a command.
hop_cmd_t hop_cmd_parse(const char *name, size_t len);

// Presence bits of hop_wire_t fields (hop_wire_t.has).
enum {
    HOP_F_ID = 1u << 0,
    HOP_F_VERSION = 1u << 1,
    HOP_F_HEARTBEAT = 1u << 2,
    HOP_F_TIMEOUT = 1u << 3,
    HOP_F_NAME = 1u << 4,
    HOP_F_SERVER = 1u << 5,
    HOP_F_MAX_MESSAGE = 1u << 6,
    HOP_F_EXCHANGE = 1u << 7,
    HOP_F_TYPE = 1u << 8,
    HOP_F_QUEUE = 1u << 9,
    HOP_F_KEY = 1u << 10,
    HOP_F_DURABLE = 1u << 11,
    HOP_F_EXCLUSIVE = 1u << 12,
    HOP_F_AUTO_DELETE = 1u << 13,
    HOP_F_PASSIVE = 1u << 14,
    HOP_F_IF_UNUSED = 1u << 15,
    HOP_F_IF_EMPTY = 1u << 16,
    HOP_F_CONSUMER = 1u << 17,
    HOP_F_PREFETCH = 1u << 18,
    HOP_F_NO_ACK = 1u << 19,
    HOP_F_TAG = 1u << 20,
    HOP_F_MULTIPLE = 1u << 21,
    HOP_F_REQUEUE = 1u << 22,
    HOP_F_REDELIVERED = 1u << 23,
    HOP_F_COUNT = 1u << 24,
    HOP_F_MESSAGES = 1u << 25,
    HOP_F_CONSUMERS = 1u << 26,
    HOP_F_PROPS = 1u << 27,
    HOP_F_WHAT = 1u << 28,
    HOP_F_ITEMS = 1u << 29,
    HOP_F_CODE = 1u << 30,
    HOP_F_TEXT = 1u << 31,
};
#define HOP_F_BATCH            (1ull << 32)
#define HOP_F_SEQ              (1ull << 33)
#define HOP_F_MANDATORY        (1ull << 34)
#define HOP_F_PERSISTENT       (1ull << 35)
#define HOP_F_EXPIRATION       (1ull << 36)
#define HOP_F_PRIORITY         (1ull << 37)
#define HOP_F_NACK             (1ull << 38)
#define HOP_F_DELAY            (1ull << 39)
#define HOP_F_ACK_TIMEOUT      (1ull << 40)
#define HOP_F_DEATH            (1ull << 41)
#define HOP_F_MAX_LENGTH       (1ull << 42)
#define HOP_F_MAX_LENGTH_BYTES (1ull << 43)
#define HOP_F_OVERFLOW         (1ull << 44)
#define HOP_F_MESSAGE_TTL      (1ull << 45)
#define HOP_F_EXPIRES          (1ull << 46)
#define HOP_F_MAX_DELIVERIES   (1ull << 47)
#define HOP_F_DLX              (1ull << 48)
#define HOP_F_DLK              (1ull << 49)
#define HOP_F_RETRY_DELAY      (1ull << 50)
#define HOP_F_RETRY_DELAY_MAX  (1ull << 51)
#define HOP_F_MAX_PRIORITY     (1ull << 52)
#define HOP_F_FLOW             (1ull << 53)
#define HOP_F_ACTIVE           (1ull << 54)
#define HOP_F_ENTERED          (1ull << 55)

// A decoded header. Strings and spans borrow the frame's bytes: keep the frame alive.
typedef struct {
    hop_cmd_t cmd;
    hop_str_t cmd_name; // the cmd string as sent (for "unknown command X" errors)
    uint64_t has;       // HOP_F_* bits of the keys present
    uint64_t id;
    uint64_t version, heartbeat, timeout, max_message;
    uint64_t prefetch, tag, count, messages, consumers, code;
    hop_str_t name, server, exchange, type, queue, key, consumer, what, text;
    bool durable, exclusive, auto_delete, passive, if_unused, if_empty;
    bool no_ack, multiple, requeue, redelivered, batch;
    hop_span_t props; // a map
    hop_span_t items; // an array
    // Publisher confirms, message options, settle delays (issue 4).
    uint64_t seq, expiration, priority, delay, ack_timeout;
    bool mandatory, persistent, nack;
    hop_span_t death; // an array of maps
    // Queue arguments (queue.declare).
    uint64_t max_length, max_length_bytes, message_ttl, expires, max_deliveries;
    uint64_t retry_delay, retry_delay_max, max_priority;
    hop_str_t overflow, dead_letter_exchange, dead_letter_key;
    // Publisher flow control: hello's `flow` (the client pauses when asked), flow's `active`.
    bool flow, active;
    // Message records in the store: when the message entered its queue (wall-clock ms).
    uint64_t entered;
} hop_wire_t;

// Decodes a header frame. A syntax error (a well-formed value of the wrong type, a name too
// long) does not stop decoding: the other keys, `id` above all, are still decoded, so the
// error can be matched to its request. Returns 0, or an error code (HOP_CODE_FRAME_ERROR for bad
// msgpack / not a map / trailing bytes / over HOP_HEADER_MAX, HOP_CODE_SYNTAX_ERROR for a known key
// of the wrong type or a string over 255 bytes) with a readable reason in err. Unknown keys are
// skipped. A missing or unknown cmd is not an error here: cmd is HOP_CMD_UNKNOWN.
int hop_wire_decode(hop_wire_t *self, const void *data, size_t size, char *err, size_t err_size);

// ---------------------------------------------------------------------------------------
// Encoding. One hop_enc_t is reused for every header a connection or broker writes.

typedef struct {
    msgpack_sbuffer buf;
    msgpack_packer pk;
    size_t map_at[HOP_MP_DEPTH];      // offsets of open maps' size fields
    uint32_t map_count[HOP_MP_DEPTH]; // entries written to each open map
    int depth;                        // open maps
} hop_enc_t;

void hop_enc_init(hop_enc_t *self);
void hop_enc_fini(hop_enc_t *self);
// Clears the buffer and opens the top-level map.
void hop_enc_begin(hop_enc_t *self, hop_cmd_t cmd);
// Closes every open map; returns the encoded bytes (borrowed until the next begin).
const void *hop_enc_end(hop_enc_t *self, size_t *size);
// Key/value writers (inside the innermost open map).
void hop_enc_str(hop_enc_t *self, const char *key, const char *value, size_t len);
void hop_enc_cstr(hop_enc_t *self, const char *key, const char *value); // NULL = ""
void hop_enc_uint(hop_enc_t *self, const char *key, uint64_t value);
void hop_enc_int(hop_enc_t *self, const char *key, int64_t value);
void hop_enc_bool(hop_enc_t *self, const char *key, bool value);
// Writes key and then raw msgpack bytes as its value (e.g. a props span passed through).
void hop_enc_raw(hop_enc_t *self, const char *key, const void *raw, size_t len);
// Opens a nested map under key / as the next array element (key NULL); close with map_end.
void hop_enc_map_begin(hop_enc_t *self, const char *key);
void hop_enc_map_end(hop_enc_t *self);
// Array of maps (for list-ok items): array_begin(key, n) then n x (map_begin(NULL) ... end).
void hop_enc_array_begin(hop_enc_t *self, const char *key, uint32_t count);
// Direct access for values the helpers above do not cover.
msgpack_packer *hop_enc_packer(hop_enc_t *self);
// Counts one more key/value in the innermost open map (after packing both by hand).
void hop_enc_count(hop_enc_t *self);

// ---------------------------------------------------------------------------------------
// Batches (PROTOCOL.md section 2.1): records of [u32 header_len][header][u32 body_len][body].

#define HOP_BATCH_BODY_MAX 4096 // larger bodies travel in their own frame

typedef struct {
    const uint8_t *p;   // next record
    const uint8_t *end; // end of the records frame
} hop_batch_t;

void hop_batch_init(hop_batch_t *self, const void *data, size_t size);
// Reads the next record: 1 and the spans set, 0 at the end, -1 when a length runs past the
// frame (the rest of the batch is unusable). body is NULL when body_len is 0.
int hop_batch_next(hop_batch_t *self, const uint8_t **header, uint32_t *header_len,
                   const uint8_t **body, uint32_t *body_len);
// Appends one record to buf.
void hop_batch_append(msgpack_sbuffer *buf, const void *header, size_t header_len, const void *body,
                      size_t body_len);

// Batch buffers: a batch's records are built in a buffer of HOP_BATCH_BUF_SIZE bytes and handed
// to ZeroMQ without a copy (zmq_msg_init_data with hop_batch_buf_free), which gives it back to a
// small process-wide pool from its I/O thread. Building every batch in a fresh buffer instead
// cost a malloc, a chain of reallocs (copies) and, once glibc trimmed the heap, page faults.
#define HOP_BATCH_BUF_SIZE (72 * 1024) // 64 KiB of records and the record that crossed the limit

// Gives buf, which holds no memory, a batch buffer (from the pool when it has one).
void hop_batch_buf_get(msgpack_sbuffer *buf);
// Takes buf's memory for zmq_msg_init_data: returns the data, and in *hint what
// hop_batch_buf_free needs. buf holds no memory afterwards.
void *hop_batch_buf_take(msgpack_sbuffer *buf, void **hint);
// The free function for zmq_msg_init_data (thread-safe): back to the pool, or freed.
void hop_batch_buf_free(void *data, void *hint);
// Frees the pooled buffers (an idle broker gives its memory back).
void hop_batch_buf_trim(void);

// hop_code_name (error code names) is declared in hopper.h: applications use it too.

#endif
