// sdk/codec.c - the Hopper wire codec: a bounds-checked msgpack cursor, header decoding into
// borrowed spans, and a reusable encoder. See codec.h for the contract.
#include "codec.h"
#include "hopper.h"

#include <assert.h>
#include <pthread.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

// ---------------------------------------------------------------------------------------
// Cursor

void
hop_mp_init(hop_mp_t *self, const void *data, size_t size)
{
    assert(self);
    self->p = (const uint8_t *)data;
    self->end = self->p + (data ? size : 0);
}

bool
hop_mp_at_end(const hop_mp_t *self)
{
    return self->p >= self->end;
}

static uint64_t
s_be(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

// Length in bytes available after p.
static size_t
s_left(const hop_mp_t *self)
{
    return (size_t)(self->end - self->p);
}

int
hop_mp_peek(const hop_mp_t *self)
{
    if (self->p >= self->end)
        return -1;
    uint8_t b = *self->p;
    if (b <= 0x7f || (b >= 0xcc && b <= 0xcf))
        return MSGPACK_OBJECT_POSITIVE_INTEGER;
    if (b >= 0xe0 || (b >= 0xd0 && b <= 0xd3))
        return MSGPACK_OBJECT_NEGATIVE_INTEGER;
    if ((b & 0xf0) == 0x80 || b == 0xde || b == 0xdf)
        return MSGPACK_OBJECT_MAP;
    if ((b & 0xf0) == 0x90 || b == 0xdc || b == 0xdd)
        return MSGPACK_OBJECT_ARRAY;
    if ((b & 0xe0) == 0xa0 || (b >= 0xd9 && b <= 0xdb))
        return MSGPACK_OBJECT_STR;
    switch (b) {
    case 0xc0:
        return MSGPACK_OBJECT_NIL;
    case 0xc2:
    case 0xc3:
        return MSGPACK_OBJECT_BOOLEAN;
    case 0xc4:
    case 0xc5:
    case 0xc6:
        return MSGPACK_OBJECT_BIN;
    case 0xca:
        return MSGPACK_OBJECT_FLOAT32;
    case 0xcb:
        return MSGPACK_OBJECT_FLOAT64;
    case 0xc7:
    case 0xc8:
    case 0xc9:
    case 0xd4:
    case 0xd5:
    case 0xd6:
    case 0xd7:
    case 0xd8:
        return MSGPACK_OBJECT_EXT;
    default:
        return -1; // 0xc1 is never used
    }
}

// Reads a container header: fix form in [fixlo, fixlo+15], 16-bit and 32-bit forms.
static int
s_container(hop_mp_t *self, uint8_t fixlo, uint8_t b16, uint8_t b32, uint32_t *count)
{
    if (self->p >= self->end)
        return -1;
    uint8_t b = *self->p;
    if (b >= fixlo && b <= fixlo + 15) {
        *count = b & 0x0f;
        self->p += 1;
    } else if (b == b16 && s_left(self) >= 3) {
        *count = (uint32_t)s_be(self->p + 1, 2);
        self->p += 3;
    } else if (b == b32 && s_left(self) >= 5) {
        *count = (uint32_t)s_be(self->p + 1, 4);
        self->p += 5;
    } else
        return -1;
    return 0;
}

int
hop_mp_map(hop_mp_t *self, uint32_t *count)
{
    return s_container(self, 0x80, 0xde, 0xdf, count);
}

int
hop_mp_array(hop_mp_t *self, uint32_t *count)
{
    return s_container(self, 0x90, 0xdc, 0xdd, count);
}

int
hop_mp_str(hop_mp_t *self, const char **str, uint32_t *len)
{
    if (self->p >= self->end)
        return -1;
    uint8_t b = *self->p;
    size_t head, n;
    if ((b & 0xe0) == 0xa0) {
        head = 1;
        n = b & 0x1f;
    } else if (b >= 0xd9 && b <= 0xdb) {
        int w = b == 0xd9 ? 1 : b == 0xda ? 2 : 4;
        if (s_left(self) < (size_t)(1 + w))
            return -1;
        head = 1 + (size_t)w;
        n = (size_t)s_be(self->p + 1, w);
    } else
        return -1;
    if (s_left(self) - head < n)
        return -1;
    *str = (const char *)self->p + head;
    *len = (uint32_t)n;
    self->p += head + n;
    return 0;
}

int
hop_mp_uint(hop_mp_t *self, uint64_t *value)
{
    if (self->p >= self->end)
        return -1;
    uint8_t b = *self->p;
    if (b <= 0x7f) {
        *value = b;
        self->p += 1;
        return 0;
    }
    int w;
    bool is_signed = false;
    switch (b) {
    case 0xcc:
    case 0xd0:
        w = 1;
        break;
    case 0xcd:
    case 0xd1:
        w = 2;
        break;
    case 0xce:
    case 0xd2:
        w = 4;
        break;
    case 0xcf:
    case 0xd3:
        w = 8;
        break;
    default:
        return -1;
    }
    is_signed = b >= 0xd0;
    if (s_left(self) < (size_t)(1 + w))
        return -1;
    uint64_t v = s_be(self->p + 1, w);
    // A signed encoding is accepted when its value is non-negative: some encoders use them.
    if (is_signed && (v >> (w * 8 - 1)) & 1)
        return -1;
    *value = v;
    self->p += 1 + w;
    return 0;
}

int
hop_mp_int(hop_mp_t *self, int64_t *value)
{
    if (self->p >= self->end)
        return -1;
    uint8_t b = *self->p;
    if (b >= 0xe0) {
        *value = (int8_t)b;
        self->p += 1;
        return 0;
    }
    int w = b == 0xd0 ? 1 : b == 0xd1 ? 2 : b == 0xd2 ? 4 : b == 0xd3 ? 8 : 0;
    if (w) {
        if (s_left(self) < (size_t)(1 + w))
            return -1;
        uint64_t v = s_be(self->p + 1, w);
        int shift = 64 - w * 8;
        // Sign-extend through an unsigned shift to stay clear of UB on negative values.
        *value = shift ? (int64_t)(v << shift) >> shift : (int64_t)v;
        self->p += 1 + w;
        return 0;
    }
    hop_mp_t probe = *self;
    uint64_t u;
    if (hop_mp_uint(&probe, &u) || u > INT64_MAX)
        return -1;
    *value = (int64_t)u;
    *self = probe;
    return 0;
}

int
hop_mp_bool(hop_mp_t *self, bool *value)
{
    if (self->p >= self->end || (*self->p != 0xc2 && *self->p != 0xc3))
        return -1;
    *value = *self->p == 0xc3;
    self->p += 1;
    return 0;
}

int
hop_mp_nil(hop_mp_t *self)
{
    if (self->p >= self->end || *self->p != 0xc0)
        return -1;
    self->p += 1;
    return 0;
}

// Skips one value; depth counts the containers we are inside of.
static int
s_skip(hop_mp_t *self, int depth)
{
    if (self->p >= self->end)
        return -1;
    uint8_t b = *self->p;
    size_t head = 1, n = 0; // header bytes, then payload bytes
    uint64_t items = 0;     // nested values to skip after the header
    if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3) {
        // single byte
    } else if ((b & 0xe0) == 0xa0) {
        n = b & 0x1f;
    } else if ((b & 0xf0) == 0x80) {
        items = 2u * (b & 0x0f);
    } else if ((b & 0xf0) == 0x90) {
        items = b & 0x0f;
    } else {
        switch (b) {
        case 0xcc:
        case 0xd0:
            n = 1;
            break;
        case 0xcd:
        case 0xd1:
            n = 2;
            break;
        case 0xca:
        case 0xce:
        case 0xd2:
            n = 4;
            break;
        case 0xcb:
        case 0xcf:
        case 0xd3:
            n = 8;
            break;
        case 0xd4:
            n = 2;
            break; // fixext: type byte + data
        case 0xd5:
            n = 3;
            break;
        case 0xd6:
            n = 5;
            break;
        case 0xd7:
            n = 9;
            break;
        case 0xd8:
            n = 17;
            break;
        case 0xc4:
        case 0xd9:
        case 0xc5:
        case 0xda:
        case 0xc6:
        case 0xdb:
        case 0xc7:
        case 0xc8:
        case 0xc9: {
            int w = (b == 0xc4 || b == 0xd9 || b == 0xc7)   ? 1
                    : (b == 0xc5 || b == 0xda || b == 0xc8) ? 2
                                                            : 4;
            if (s_left(self) < (size_t)(1 + w))
                return -1;
            head = 1 + (size_t)w;
            n = (size_t)s_be(self->p + 1, w);
            if (b >= 0xc7 && b <= 0xc9)
                n += 1; // ext type byte
            break;
        }
        case 0xdc:
        case 0xdd:
        case 0xde:
        case 0xdf: {
            int w = (b == 0xdc || b == 0xde) ? 2 : 4;
            if (s_left(self) < (size_t)(1 + w))
                return -1;
            head = 1 + (size_t)w;
            items = s_be(self->p + 1, w);
            if (b >= 0xde)
                items *= 2;
            break;
        }
        default:
            return -1;
        }
    }
    bool container = (b & 0xe0) == 0x80 || (b >= 0xdc && b <= 0xdf);
    if (container && depth >= HOP_MP_DEPTH)
        return -1;
    if (s_left(self) < head || s_left(self) - head < n)
        return -1;
    self->p += head + n;
    // Every value takes at least one byte: a count larger than what is left is a lie.
    if (items > s_left(self))
        return -1;
    for (uint64_t i = 0; i < items; i++)
        if (s_skip(self, depth + 1))
            return -1;
    return 0;
}

int
hop_mp_skip(hop_mp_t *self)
{
    const uint8_t *start = self->p;
    if (s_skip(self, 0)) {
        self->p = start;
        return -1;
    }
    return 0;
}

// ---------------------------------------------------------------------------------------
// Commands

static const char *s_cmd_names[HOP_CMD_COUNT_] = {
    [HOP_CMD_UNKNOWN] = "?",
    [HOP_CMD_HELLO] = "hello",
    [HOP_CMD_HELLO_OK] = "hello-ok",
    [HOP_CMD_HEARTBEAT] = "heartbeat",
    [HOP_CMD_CLOSE] = "close",
    [HOP_CMD_CLOSE_OK] = "close-ok",
    [HOP_CMD_EXCHANGE_DECLARE] = "exchange.declare",
    [HOP_CMD_EXCHANGE_DELETE] = "exchange.delete",
    [HOP_CMD_QUEUE_DECLARE] = "queue.declare",
    [HOP_CMD_QUEUE_DELETE] = "queue.delete",
    [HOP_CMD_QUEUE_PURGE] = "queue.purge",
    [HOP_CMD_QUEUE_BIND] = "queue.bind",
    [HOP_CMD_QUEUE_UNBIND] = "queue.unbind",
    [HOP_CMD_PUBLISH] = "publish",
    [HOP_CMD_CONSUME] = "consume",
    [HOP_CMD_CANCEL] = "cancel",
    [HOP_CMD_ACK] = "ack",
    [HOP_CMD_NACK] = "nack",
    [HOP_CMD_REJECT] = "reject",
    [HOP_CMD_GET] = "get",
    [HOP_CMD_LIST] = "list",
    [HOP_CMD_STATUS] = "status",
    [HOP_CMD_OK] = "ok",
    [HOP_CMD_QUEUE_OK] = "queue-ok",
    [HOP_CMD_CONSUME_OK] = "consume-ok",
    [HOP_CMD_DELIVER] = "deliver",
    [HOP_CMD_CANCELLED] = "cancelled",
    [HOP_CMD_GET_OK] = "get-ok",
    [HOP_CMD_GET_EMPTY] = "get-empty",
    [HOP_CMD_LIST_OK] = "list-ok",
    [HOP_CMD_STATUS_OK] = "status-ok",
    [HOP_CMD_ERROR] = "error",
    [HOP_CMD_BATCH] = "batch",
    [HOP_CMD_CONFIRM] = "confirm",
    [HOP_CMD_RETURN] = "return",
    [HOP_CMD_REVOKED] = "revoked",
    [HOP_CMD_FLOW] = "flow",
    [HOP_CMD_PEEK] = "peek",
    [HOP_CMD_PEEK_OK] = "peek-ok",
    [HOP_CMD_MOVE] = "move",
    [HOP_CMD_MOVE_OK] = "move-ok",
    [HOP_CMD_TRACE] = "trace",
};

const char *
hop_cmd_name(hop_cmd_t cmd)
{
    return cmd > HOP_CMD_UNKNOWN && cmd < HOP_CMD_COUNT_ ? s_cmd_names[cmd] : "?";
}

// Whether a and b (len > 0 bytes each) are equal. Keys are short: two loads that may overlap
// compare up to 16 bytes without a call to memcmp, never reading outside either string.
static inline bool
s_same(const char *a, const char *b, uint32_t len)
{
    if (len >= 8 && len <= 16) {
        uint64_t a0, a1, b0, b1;
        memcpy(&a0, a, 8);
        memcpy(&b0, b, 8);
        memcpy(&a1, a + len - 8, 8);
        memcpy(&b1, b + len - 8, 8);
        return ((a0 ^ b0) | (a1 ^ b1)) == 0;
    }
    if (len >= 4 && len < 8) {
        uint32_t a0, a1, b0, b1;
        memcpy(&a0, a, 4);
        memcpy(&b0, b, 4);
        memcpy(&a1, a + len - 4, 4);
        memcpy(&b1, b + len - 4, 4);
        return ((a0 ^ b0) | (a1 ^ b1)) == 0;
    }
    if (len < 4) {
        for (uint32_t i = 0; i < len; i++)
            if (a[i] != b[i])
                return false;
        return true;
    }
    return memcmp(a, b, len) == 0;
}

hop_cmd_t
hop_cmd_parse(const char *name, size_t len)
{
    // The hot commands first; the table is short enough for a linear scan.
    if (len == 7 && s_same(name, "publish", 7))
        return HOP_CMD_PUBLISH;
    if (len == 7 && s_same(name, "deliver", 7))
        return HOP_CMD_DELIVER;
    if (len == 3 && s_same(name, "ack", 3))
        return HOP_CMD_ACK;
    for (int c = HOP_CMD_UNKNOWN + 1; c < HOP_CMD_COUNT_; c++) {
        const char *n = s_cmd_names[c];
        if (strlen(n) == len && memcmp(n, name, len) == 0)
            return (hop_cmd_t)c;
    }
    return HOP_CMD_UNKNOWN;
}

// ---------------------------------------------------------------------------------------
// Header decoding

typedef enum { K_UINT, K_STR, K_BOOL, K_MAP, K_ARRAY } s_kind_t;

typedef struct {
    const char *key;
    uint8_t len; // strlen(key), so a lookup compares lengths before bytes
    uint64_t bit;
    s_kind_t kind;
    size_t offset; // of the field inside hop_wire_t
} s_field_t;

#define F(k, b, kind, member)                                                                      \
    {                                                                                              \
        k, sizeof k - 1, b, kind, offsetof(hop_wire_t, member)                                     \
    }
static const s_field_t s_fields[] = {
    F("id", HOP_F_ID, K_UINT, id),
    F("exchange", HOP_F_EXCHANGE, K_STR, exchange),
    F("key", HOP_F_KEY, K_STR, key),
    F("props", HOP_F_PROPS, K_MAP, props),
    F("tag", HOP_F_TAG, K_UINT, tag),
    F("multiple", HOP_F_MULTIPLE, K_BOOL, multiple),
    F("queue", HOP_F_QUEUE, K_STR, queue),
    F("consumer", HOP_F_CONSUMER, K_STR, consumer),
    F("redelivered", HOP_F_REDELIVERED, K_BOOL, redelivered),
    F("count", HOP_F_COUNT, K_UINT, count),
    F("requeue", HOP_F_REQUEUE, K_BOOL, requeue),
    F("version", HOP_F_VERSION, K_UINT, version),
    F("heartbeat", HOP_F_HEARTBEAT, K_UINT, heartbeat),
    F("timeout", HOP_F_TIMEOUT, K_UINT, timeout),
    F("name", HOP_F_NAME, K_STR, name),
    F("server", HOP_F_SERVER, K_STR, server),
    F("max_message", HOP_F_MAX_MESSAGE, K_UINT, max_message),
    F("type", HOP_F_TYPE, K_STR, type),
    F("durable", HOP_F_DURABLE, K_BOOL, durable),
    F("exclusive", HOP_F_EXCLUSIVE, K_BOOL, exclusive),
    F("auto_delete", HOP_F_AUTO_DELETE, K_BOOL, auto_delete),
    F("passive", HOP_F_PASSIVE, K_BOOL, passive),
    F("if_unused", HOP_F_IF_UNUSED, K_BOOL, if_unused),
    F("if_empty", HOP_F_IF_EMPTY, K_BOOL, if_empty),
    F("prefetch", HOP_F_PREFETCH, K_UINT, prefetch),
    F("no_ack", HOP_F_NO_ACK, K_BOOL, no_ack),
    F("messages", HOP_F_MESSAGES, K_UINT, messages),
    F("consumers", HOP_F_CONSUMERS, K_UINT, consumers),
    F("what", HOP_F_WHAT, K_STR, what),
    F("items", HOP_F_ITEMS, K_ARRAY, items),
    F("code", HOP_F_CODE, K_UINT, code),
    F("text", HOP_F_TEXT, K_STR, text),
    F("batch", HOP_F_BATCH, K_BOOL, batch),
    F("seq", HOP_F_SEQ, K_UINT, seq),
    F("mandatory", HOP_F_MANDATORY, K_BOOL, mandatory),
    F("persistent", HOP_F_PERSISTENT, K_BOOL, persistent),
    F("expiration", HOP_F_EXPIRATION, K_UINT, expiration),
    F("priority", HOP_F_PRIORITY, K_UINT, priority),
    F("nack", HOP_F_NACK, K_BOOL, nack),
    F("delay", HOP_F_DELAY, K_UINT, delay),
    F("ack_timeout", HOP_F_ACK_TIMEOUT, K_UINT, ack_timeout),
    F("death", HOP_F_DEATH, K_ARRAY, death),
    F("max_length", HOP_F_MAX_LENGTH, K_UINT, max_length),
    F("max_length_bytes", HOP_F_MAX_LENGTH_BYTES, K_UINT, max_length_bytes),
    F("overflow", HOP_F_OVERFLOW, K_STR, overflow),
    F("message_ttl", HOP_F_MESSAGE_TTL, K_UINT, message_ttl),
    F("expires", HOP_F_EXPIRES, K_UINT, expires),
    F("max_deliveries", HOP_F_MAX_DELIVERIES, K_UINT, max_deliveries),
    F("dead_letter_exchange", HOP_F_DLX, K_STR, dead_letter_exchange),
    F("dead_letter_key", HOP_F_DLK, K_STR, dead_letter_key),
    F("retry_delay", HOP_F_RETRY_DELAY, K_UINT, retry_delay),
    F("retry_delay_max", HOP_F_RETRY_DELAY_MAX, K_UINT, retry_delay_max),
    F("max_priority", HOP_F_MAX_PRIORITY, K_UINT, max_priority),
    F("flow", HOP_F_FLOW, K_BOOL, flow),
    F("active", HOP_F_ACTIVE, K_BOOL, active),
    F("entered", HOP_F_ENTERED, K_UINT, entered),
};
#undef F

// The fields by name, in an open-addressing table filled on first use: a key is found in one
// or two probes instead of a scan of the list (header decoding is on every message's path).
#define S_SLOTS 256              // a power of two, over four times the fields
static uint8_t s_slots[S_SLOTS]; // 1 + index into s_fields; 0 = empty
static pthread_once_t s_slots_once = PTHREAD_ONCE_INIT;

static inline unsigned
s_slot_of(const char *key, uint32_t len)
{
    return ((unsigned)(uint8_t)key[0] * 31u + (unsigned)(uint8_t)key[len - 1] * 7u + len) &
           (S_SLOTS - 1);
}

static void
s_slots_fill(void)
{
    _Static_assert(sizeof s_fields / sizeof s_fields[0] < S_SLOTS / 4, "grow S_SLOTS");
    for (size_t i = 0; i < sizeof s_fields / sizeof s_fields[0]; i++) {
        unsigned at = s_slot_of(s_fields[i].key, s_fields[i].len);
        while (s_slots[at])
            at = (at + 1) & (S_SLOTS - 1);
        s_slots[at] = (uint8_t)(i + 1);
    }
}

// len > 0.
static inline const s_field_t *
s_field_find(const char *key, uint32_t len)
{
    for (unsigned at = s_slot_of(key, len); s_slots[at]; at = (at + 1) & (S_SLOTS - 1)) {
        const s_field_t *f = &s_fields[s_slots[at] - 1];
        if (f->len == len && s_same(f->key, key, len))
            return f;
    }
    return NULL;
}

static int
s_fail(char *err, size_t err_size, int code, const char *fmt, const char *arg)
{
    if (err && err_size)
        snprintf(err, err_size, fmt, arg);
    return code;
}

// libc's memset, not the compiler's inline `rep stos`: clearing the 500-byte hop_wire_t took a
// fifth of a decode that way.
static void *(*volatile s_memset)(void *, int, size_t) = memset;

int
hop_wire_decode(hop_wire_t *self, const void *data, size_t size, char *err, size_t err_size)
{
    assert(self);
    s_memset(self, 0, sizeof *self);
    self->requeue = true; // the protocol's default
    if (err && err_size)
        err[0] = '\0';
    if (size == 0)
        return s_fail(err, err_size, HOP_CODE_FRAME_ERROR, "empty header frame%s", "");
    if (size > HOP_HEADER_MAX)
        return s_fail(err, err_size, HOP_CODE_CONTENT_TOO_LARGE, "header frame over 65536 bytes%s",
                      "");
    pthread_once(&s_slots_once, s_slots_fill);
    hop_mp_t mp;
    hop_mp_init(&mp, data, size);
    int syntax = 0; // the first syntax error; decoding goes on to the end regardless
    uint32_t count;
    if (hop_mp_map(&mp, &count))
        return s_fail(err, err_size, HOP_CODE_FRAME_ERROR, "header is not a msgpack map%s", "");
    for (uint32_t i = 0; i < count; i++) {
        const char *key;
        uint32_t key_len;
        if (mp.p < mp.end && (*mp.p & 0xe0) == 0xa0 && (size_t)(mp.end - mp.p) > (*mp.p & 0x1fu)) {
            key_len = *mp.p & 0x1fu; // a fixstr, as every key we know is: read in place
            key = (const char *)mp.p + 1;
            mp.p += 1 + key_len;
        } else if (hop_mp_str(&mp, &key, &key_len)) {
            // Non-string keys are not ours: skip key and value if they are well formed.
            if (hop_mp_skip(&mp) || hop_mp_skip(&mp))
                return s_fail(err, err_size, HOP_CODE_FRAME_ERROR, "malformed msgpack%s", "");
            continue;
        }
        if (key_len == 3 && s_same(key, "cmd", 3)) {
            const char *c;
            uint32_t c_len;
            if (hop_mp_str(&mp, &c, &c_len)) {
                hop_mp_t probe = mp;
                if (hop_mp_skip(&probe))
                    return s_fail(err, err_size, HOP_CODE_FRAME_ERROR,
                                  "malformed msgpack in 'cmd'%s", "");
                if (!syntax)
                    syntax = s_fail(err, err_size, HOP_CODE_SYNTAX_ERROR,
                                    "field 'cmd' must be a string%s", "");
                mp = probe;
                continue;
            }
            self->cmd_name.ptr = c;
            self->cmd_name.len = c_len;
            self->cmd = hop_cmd_parse(c, c_len);
            continue;
        }
        const s_field_t *f = key_len ? s_field_find(key, key_len) : NULL;
        if (!f) {
            if (hop_mp_skip(&mp))
                return s_fail(err, err_size, HOP_CODE_FRAME_ERROR, "malformed msgpack%s", "");
            continue;
        }
        char *at = (char *)self + f->offset;
        const uint8_t *start = mp.p;
        int rc = 0;
        const char *want = "";
        switch (f->kind) {
        case K_UINT:
            want = "a non-negative integer";
            rc = hop_mp_uint(&mp, (uint64_t *)at);
            break;
        case K_BOOL:
            want = "a boolean";
            rc = hop_mp_bool(&mp, (bool *)at);
            break;
        case K_STR: {
            want = "a string";
            hop_str_t *s = (hop_str_t *)at;
            rc = hop_mp_str(&mp, &s->ptr, &s->len);
            if (rc == 0 && s->len > HOP_NAME_MAX && f->bit != HOP_F_TEXT &&
                f->bit != HOP_F_SERVER) {
                if (!syntax)
                    syntax = s_fail(err, err_size, HOP_CODE_SYNTAX_ERROR,
                                    "field '%s' is longer than 255 bytes", f->key);
                s->ptr = NULL;
                s->len = 0;
                continue;
            }
            break;
        }
        case K_MAP:
        case K_ARRAY: {
            want = f->kind == K_MAP ? "a map" : "an array";
            int t = hop_mp_peek(&mp);
            if (t != (f->kind == K_MAP ? MSGPACK_OBJECT_MAP : MSGPACK_OBJECT_ARRAY)) {
                rc = -1;
                break;
            }
            if (hop_mp_skip(&mp))
                return s_fail(err, err_size, HOP_CODE_FRAME_ERROR, "malformed msgpack in '%s'",
                              f->key);
            hop_span_t *sp = (hop_span_t *)at;
            sp->ptr = start;
            sp->len = (uint32_t)(mp.p - start);
            break;
        }
        }
        if (rc) {
            // Tell a type mistake from garbage: a well-formed value of another type is a
            // syntax error, a malformed one is a frame error.
            hop_mp_t probe = mp;
            if (hop_mp_skip(&probe))
                return s_fail(err, err_size, HOP_CODE_FRAME_ERROR, "malformed msgpack in '%s'",
                              f->key);
            // Keep reading past it: the rest (the request id above all) still decodes, so
            // the error reply can name the request it answers.
            if (!syntax) {
                if (err && err_size)
                    snprintf(err, err_size, "field '%s' must be %s", f->key, want);
                syntax = HOP_CODE_SYNTAX_ERROR;
            }
            mp = probe;
            continue;
        }
        self->has |= f->bit;
    }
    if (!hop_mp_at_end(&mp))
        return s_fail(err, err_size, HOP_CODE_FRAME_ERROR, "trailing bytes after header map%s", "");
    return syntax;
}

// ---------------------------------------------------------------------------------------
// Encoding

void
hop_enc_init(hop_enc_t *self)
{
    assert(self);
    memset(self, 0, sizeof *self);
    msgpack_sbuffer_init(&self->buf);
    msgpack_packer_init(&self->pk, &self->buf, msgpack_sbuffer_write);
}

void
hop_enc_fini(hop_enc_t *self)
{
    if (self)
        msgpack_sbuffer_destroy(&self->buf);
}

msgpack_packer *
hop_enc_packer(hop_enc_t *self)
{
    return &self->pk;
}

void
hop_enc_count(hop_enc_t *self)
{
    assert(self->depth > 0);
    self->map_count[self->depth - 1]++;
}

// The writers below put bytes straight into the buffer, one capacity check per field, instead of
// a call through the packer per item (msgpack_sbuffer_write was a tenth of the broker's time in
// fan-out). The bytes are msgpack's own choices: the smallest str and uint forms, as
// msgpack_pack_str / msgpack_pack_uint64 write them (test_codec compares the two).

static void
s_grow(msgpack_sbuffer *buf, size_t n)
{
    size_t cap = buf->alloc ? buf->alloc * 2 : MSGPACK_SBUFFER_INIT_SIZE;
    while (cap - buf->size < n)
        cap *= 2;
    void *data = realloc(buf->data, cap); // a msgpack_sbuffer is realloc'ed and free'd
    if (!data)
        abort(); // out of memory
    buf->data = data;
    buf->alloc = cap;
}

// Where n more bytes go; the caller adds what it wrote to buf->size.
static inline uint8_t *
s_room(msgpack_sbuffer *buf, size_t n)
{
    if (buf->alloc - buf->size < n)
        s_grow(buf, n);
    return (uint8_t *)buf->data + buf->size;
}

static inline void
s_done(msgpack_sbuffer *buf, const uint8_t *end)
{
    buf->size = (size_t)(end - (const uint8_t *)buf->data);
}

static inline uint8_t *
s_be_put(uint8_t *p, uint64_t v, int bytes)
{
    for (int i = bytes - 1; i >= 0; i--)
        *p++ = (uint8_t)(v >> (8 * i));
    return p;
}

#define S_STR_HEAD_MAX 5 // str32
#define S_UINT_MAX     9 // uint64

static inline uint8_t *
s_put_str(uint8_t *p, const void *str, size_t len)
{
    if (len < 32)
        *p++ = (uint8_t)(0xa0 | len);
    else if (len < 256) {
        *p++ = 0xd9;
        *p++ = (uint8_t)len;
    } else if (len < 65536) {
        *p++ = 0xda;
        p = s_be_put(p, len, 2);
    } else {
        *p++ = 0xdb;
        p = s_be_put(p, len, 4);
    }
    if (len)
        memcpy(p, str, len);
    return p + len;
}

static inline uint8_t *
s_put_uint(uint8_t *p, uint64_t v)
{
    if (v < 128) {
        *p++ = (uint8_t)v;
        return p;
    }
    if (v < 256) {
        *p++ = 0xcc;
        return s_be_put(p, v, 1);
    }
    if (v < 65536) {
        *p++ = 0xcd;
        return s_be_put(p, v, 2);
    }
    if (v <= UINT32_MAX) {
        *p++ = 0xce;
        return s_be_put(p, v, 4);
    }
    *p++ = 0xcf;
    return s_be_put(p, v, 8);
}

// Opens a map whose size is written as map32 and patched when it closes.
static void
s_map_open(hop_enc_t *self)
{
    assert(self->depth < HOP_MP_DEPTH);
    uint8_t *p = s_room(&self->buf, 5);
    self->map_at[self->depth] = self->buf.size;
    self->map_count[self->depth] = 0;
    self->depth++;
    *p++ = 0xdf;
    memset(p, 0, 4);
    s_done(&self->buf, p + 4);
}

// Makes room for key and a value of up to value_max bytes; returns where the value goes.
static inline uint8_t *
s_key_room(hop_enc_t *self, const char *key, size_t value_max)
{
    size_t len = strlen(key);
    uint8_t *p = s_room(&self->buf, S_STR_HEAD_MAX + len + value_max);
    hop_enc_count(self);
    return s_put_str(p, key, len);
}

static void
s_key(hop_enc_t *self, const char *key)
{
    s_done(&self->buf, s_key_room(self, key, 0));
}

void
hop_enc_begin(hop_enc_t *self, hop_cmd_t cmd)
{
    assert(self);
    msgpack_sbuffer_clear(&self->buf);
    self->depth = 0;
    s_map_open(self);
    hop_enc_cstr(self, "cmd", hop_cmd_name(cmd));
}

void
hop_enc_map_end(hop_enc_t *self)
{
    assert(self->depth > 0);
    self->depth--;
    uint32_t n = self->map_count[self->depth];
    uint8_t *p = (uint8_t *)self->buf.data + self->map_at[self->depth] + 1;
    p[0] = (uint8_t)(n >> 24);
    p[1] = (uint8_t)(n >> 16);
    p[2] = (uint8_t)(n >> 8);
    p[3] = (uint8_t)n;
}

const void *
hop_enc_end(hop_enc_t *self, size_t *size)
{
    while (self->depth > 0)
        hop_enc_map_end(self);
    if (size)
        *size = self->buf.size;
    return self->buf.data;
}

void
hop_enc_str(hop_enc_t *self, const char *key, const char *value, size_t len)
{
    uint8_t *p = s_key_room(self, key, S_STR_HEAD_MAX + len);
    s_done(&self->buf, s_put_str(p, value, len));
}

void
hop_enc_cstr(hop_enc_t *self, const char *key, const char *value)
{
    hop_enc_str(self, key, value ? value : "", value ? strlen(value) : 0);
}

void
hop_enc_uint(hop_enc_t *self, const char *key, uint64_t value)
{
    uint8_t *p = s_key_room(self, key, S_UINT_MAX);
    s_done(&self->buf, s_put_uint(p, value));
}

void
hop_enc_int(hop_enc_t *self, const char *key, int64_t value)
{
    s_key(self, key);
    msgpack_pack_int64(&self->pk, value);
}

void
hop_enc_bool(hop_enc_t *self, const char *key, bool value)
{
    uint8_t *p = s_key_room(self, key, 1);
    *p++ = value ? 0xc3 : 0xc2;
    s_done(&self->buf, p);
}

void
hop_enc_raw(hop_enc_t *self, const char *key, const void *raw, size_t len)
{
    uint8_t *p = s_key_room(self, key, len);
    if (len)
        memcpy(p, raw, len);
    s_done(&self->buf, p + len);
}

void
hop_enc_map_begin(hop_enc_t *self, const char *key)
{
    if (key)
        s_key(self, key);
    s_map_open(self);
}

void
hop_enc_array_begin(hop_enc_t *self, const char *key, uint32_t count)
{
    s_key(self, key);
    msgpack_pack_array(&self->pk, count);
}

void
hop_batch_init(hop_batch_t *self, const void *data, size_t size)
{
    self->p = data;
    self->end = self->p + (data ? size : 0);
}

int
hop_batch_next(hop_batch_t *self, const uint8_t **header, uint32_t *header_len,
               const uint8_t **body, uint32_t *body_len)
{
    size_t left = (size_t)(self->end - self->p);
    if (left == 0)
        return 0;
    if (left < 4)
        return -1;
    uint32_t hl = (uint32_t)s_be(self->p, 4);
    if (left - 4 < (size_t)hl + 4)
        return -1;
    const uint8_t *h = self->p + 4;
    uint32_t bl = (uint32_t)s_be(h + hl, 4);
    if (left - 8 - hl < bl)
        return -1;
    *header = h;
    *header_len = hl;
    *body = bl ? h + hl + 4 : NULL;
    *body_len = bl;
    self->p = h + hl + 4 + bl;
    return 1;
}

void
hop_batch_append(msgpack_sbuffer *buf, const void *header, size_t header_len, const void *body,
                 size_t body_len)
{
    uint8_t *p = s_room(buf, 8 + header_len + body_len);
    p = s_be_put(p, header_len, 4);
    memcpy(p, header, header_len);
    p = s_be_put(p + header_len, body_len, 4);
    if (body_len)
        memcpy(p, body, body_len);
    s_done(buf, p + body_len);
}

#define S_POOL_MAX 16 // batch buffers kept, 1.1 MiB

static pthread_mutex_t s_pool_lock = PTHREAD_MUTEX_INITIALIZER;
static void *s_pool[S_POOL_MAX];
static int s_pool_size;

void
hop_batch_buf_get(msgpack_sbuffer *buf)
{
    assert(buf && !buf->data);
    void *data = NULL;
    pthread_mutex_lock(&s_pool_lock);
    if (s_pool_size > 0)
        data = s_pool[--s_pool_size];
    pthread_mutex_unlock(&s_pool_lock);
    if (!data && !(data = malloc(HOP_BATCH_BUF_SIZE)))
        abort(); // out of memory
    buf->data = data;
    buf->alloc = HOP_BATCH_BUF_SIZE;
    buf->size = 0;
}

void *
hop_batch_buf_take(msgpack_sbuffer *buf, void **hint)
{
    assert(buf);
    // A buffer that grew past the pool's size (a huge record) is freed, not pooled.
    *hint = (void *)(uintptr_t)(buf->alloc == HOP_BATCH_BUF_SIZE);
    return msgpack_sbuffer_release(buf);
}

void
hop_batch_buf_free(void *data, void *hint)
{
    if (hint && data) {
        pthread_mutex_lock(&s_pool_lock);
        if (s_pool_size < S_POOL_MAX) {
            s_pool[s_pool_size++] = data;
            data = NULL;
        }
        pthread_mutex_unlock(&s_pool_lock);
    }
    free(data);
}

void
hop_batch_buf_trim(void)
{
    pthread_mutex_lock(&s_pool_lock);
    while (s_pool_size > 0)
        free(s_pool[--s_pool_size]);
    pthread_mutex_unlock(&s_pool_lock);
}

const char *
hop_code_name(int code)
{
    switch (code) {
    case HOP_CODE_CONTENT_TOO_LARGE:
        return "content-too-large";
    case HOP_CODE_NO_ROUTE:
        return "no-route";
    case HOP_CODE_ACCESS_REFUSED:
        return "access-refused";
    case HOP_CODE_NOT_FOUND:
        return "not-found";
    case HOP_CODE_RESOURCE_LOCKED:
        return "resource-locked";
    case HOP_CODE_PRECONDITION_FAILED:
        return "precondition-failed";
    case HOP_CODE_FRAME_ERROR:
        return "frame-error";
    case HOP_CODE_SYNTAX_ERROR:
        return "syntax-error";
    case HOP_CODE_COMMAND_INVALID:
        return "command-invalid";
    case HOP_CODE_UNEXPECTED_FRAME:
        return "unexpected-frame";
    case HOP_CODE_RESOURCE_ERROR:
        return "resource-error";
    case HOP_CODE_NOT_IMPLEMENTED:
        return "not-implemented";
    case HOP_CODE_INTERNAL_ERROR:
        return "internal-error";
    default:
        return "error";
    }
}
