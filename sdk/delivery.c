// sdk/delivery.c - received messages: a deliver / get-ok / return header parsed into one owned
// allocation (struct, header array, death records, strings, a copy of the raw props) that keeps
// the body frame alive instead of copying it, or holds a copy of a small body that came in a
// batch.
#include "client_internal.h"

#include <assert.h>
#include <inttypes.h>
#include <stdalign.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// Strings are laid out in two passes over the same code: first with base NULL to measure,
// then for real into the allocation. Both passes must make the same calls.
typedef struct {
    char *base;  // NULL while measuring
    size_t used; // bytes used (or needed)
} s_arena_t;

static const char *
s_arena_str(s_arena_t *self, const char *str, size_t len)
{
    char *at = self->base ? self->base + self->used : NULL;
    if (at) {
        if (len)
            memcpy(at, str, len);
        at[len] = '\0';
    }
    self->used += len + 1;
    return at;
}

static int
s_mp_float(hop_mp_t *mp, double *value)
{
    const uint8_t *p = mp->p;
    size_t left = (size_t)(mp->end - p);
    uint64_t bits = 0;
    if (left >= 5 && p[0] == 0xca) {
        for (int i = 1; i <= 4; i++)
            bits = bits << 8 | p[i];
        uint32_t bits32 = (uint32_t)bits;
        float f;
        memcpy(&f, &bits32, sizeof f);
        *value = f;
        mp->p += 5;
        return 0;
    }
    if (left >= 9 && p[0] == 0xcb) {
        for (int i = 1; i <= 8; i++)
            bits = bits << 8 | p[i];
        memcpy(value, &bits, sizeof *value);
        mp->p += 9;
        return 0;
    }
    return -1;
}

// Renders the next value as header text (non-strings the way hopper.h promises) and stores it.
// Returns 0, or -1 on malformed msgpack.
static int
s_arena_value(s_arena_t *self, hop_mp_t *mp, const char **out)
{
    char text[64];
    const char *str;
    uint32_t len;
    uint64_t u;
    int64_t i;
    bool b;
    double d;
    switch (hop_mp_peek(mp)) {
    case MSGPACK_OBJECT_STR:
        if (hop_mp_str(mp, &str, &len))
            return -1;
        *out = s_arena_str(self, str, len);
        return 0;
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        if (hop_mp_uint(mp, &u))
            return -1;
        snprintf(text, sizeof text, "%" PRIu64, u);
        break;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        if (hop_mp_int(mp, &i))
            return -1;
        snprintf(text, sizeof text, "%" PRId64, i);
        break;
    case MSGPACK_OBJECT_BOOLEAN:
        if (hop_mp_bool(mp, &b))
            return -1;
        snprintf(text, sizeof text, "%s", b ? "true" : "false");
        break;
    case MSGPACK_OBJECT_NIL:
        if (hop_mp_nil(mp))
            return -1;
        text[0] = '\0';
        break;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        if (s_mp_float(mp, &d))
            return -1;
        snprintf(text, sizeof text, "%g", d);
        break;
    case MSGPACK_OBJECT_BIN:
        snprintf(text, sizeof text, "<binary>");
        goto skip;
    case MSGPACK_OBJECT_ARRAY:
        snprintf(text, sizeof text, "<array>");
        goto skip;
    case MSGPACK_OBJECT_MAP:
        snprintf(text, sizeof text, "<map>");
        goto skip;
    case MSGPACK_OBJECT_EXT:
        snprintf(text, sizeof text, "<ext>");
        goto skip;
    default:
        return -1;
    }
    *out = s_arena_str(self, text, strlen(text));
    return 0;
skip:
    if (hop_mp_skip(mp))
        return -1;
    *out = s_arena_str(self, text, strlen(text));
    return 0;
}

static bool
s_key_is(const char *key, uint32_t len, const char *name)
{
    return strlen(name) == len && memcmp(key, name, len) == 0;
}

// The string property named by key, or NULL when key is not one.
static const char **
s_props_field(hop_props_t *props, const char *key, uint32_t len)
{
    static const struct {
        const char *name;
        size_t offset;
    } fields[] = {
        {"content_type", offsetof(hop_props_t, content_type)},
        {"content_encoding", offsetof(hop_props_t, content_encoding)},
        {"message_id", offsetof(hop_props_t, message_id)},
        {"correlation_id", offsetof(hop_props_t, correlation_id)},
        {"reply_to", offsetof(hop_props_t, reply_to)},
        {"type", offsetof(hop_props_t, type)},
        {"app_id", offsetof(hop_props_t, app_id)},
    };
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
        if (s_key_is(key, len, fields[i].name))
            return (const char **)((char *)props + fields[i].offset);
    return NULL;
}

// Walks a props map: string fields into props, timestamp, headers into headers (NULL while
// measuring) and the span of the headers map into *headers_at/_size. Well-known keys with
// another type than the spec's are ignored, like unknown keys. Returns the number of headers,
// or -1 when the map is malformed.
static long
s_props_walk(s_arena_t *arena, const uint8_t *raw, size_t size, hop_props_t *props,
             hop_header_t *headers, size_t *headers_at, size_t *headers_size)
{
    hop_mp_t mp;
    hop_mp_init(&mp, raw, size);
    uint32_t count;
    if (hop_mp_map(&mp, &count))
        return -1;
    long found = 0;
    for (uint32_t i = 0; i < count; i++) {
        const char *key, *str;
        uint32_t key_len, len;
        if (hop_mp_str(&mp, &key, &key_len)) {
            if (hop_mp_skip(&mp) || hop_mp_skip(&mp))
                return -1;
            continue;
        }
        const char **field = s_props_field(props, key, key_len);
        int type = hop_mp_peek(&mp);
        if (field && type == MSGPACK_OBJECT_STR) {
            if (hop_mp_str(&mp, &str, &len))
                return -1;
            *field = s_arena_str(arena, str, len);
        } else if (s_key_is(key, key_len, "timestamp") && type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
            if (hop_mp_uint(&mp, &props->timestamp))
                return -1;
        } else if (s_key_is(key, key_len, "headers") && type == MSGPACK_OBJECT_MAP) {
            const uint8_t *start = mp.p;
            uint32_t pairs;
            if (hop_mp_map(&mp, &pairs))
                return -1;
            for (uint32_t j = 0; j < pairs; j++) {
                const char *name, *value = NULL;
                uint32_t name_len;
                if (hop_mp_str(&mp, &name, &name_len)) {
                    // Headers are str -> any; an entry with another key type is not one.
                    if (hop_mp_skip(&mp) || hop_mp_skip(&mp))
                        return -1;
                    continue;
                }
                const char *stored = s_arena_str(arena, name, name_len);
                if (s_arena_value(arena, &mp, &value))
                    return -1;
                if (headers) {
                    headers[found].key = stored;
                    headers[found].value = value;
                }
                found++;
            }
            *headers_at = (size_t)(start - raw);
            *headers_size = (size_t)(mp.p - start);
        } else if (hop_mp_skip(&mp))
            return -1;
    }
    return found;
}

// The string fields of a death record, in the order s_deaths_walk stores them.
static const char *const s_death_keys[4] = {"reason", "queue", "exchange", "key"};

// Walks a death array (PROTOCOL.md 6.4): the strings of each record into the arena (""
// when absent) and, unless deaths is NULL (measuring), the record into deaths. Entries that are
// not maps, unknown keys and well-known keys of another type are skipped, as in props. Returns
// the number of records, or -1 when the array is malformed.
static long
s_deaths_walk(s_arena_t *arena, const uint8_t *raw, size_t size, hop_death_t *deaths)
{
    hop_mp_t mp;
    hop_mp_init(&mp, raw, size);
    uint32_t count;
    if (hop_mp_array(&mp, &count))
        return -1;
    long found = 0;
    for (uint32_t i = 0; i < count; i++) {
        uint32_t pairs;
        if (hop_mp_peek(&mp) != MSGPACK_OBJECT_MAP) {
            if (hop_mp_skip(&mp))
                return -1;
            continue;
        }
        if (hop_mp_map(&mp, &pairs))
            return -1;
        hop_death_t rec = {0};
        const char *str[4] = {"", "", "", ""}; // as s_death_keys
        uint32_t len[4] = {0};
        for (uint32_t j = 0; j < pairs; j++) {
            const char *key;
            uint32_t key_len;
            if (hop_mp_str(&mp, &key, &key_len)) {
                if (hop_mp_skip(&mp) || hop_mp_skip(&mp))
                    return -1;
                continue;
            }
            int at = 0;
            while (at < 4 && !s_key_is(key, key_len, s_death_keys[at]))
                at++;
            int type = hop_mp_peek(&mp);
            int rc;
            if (at < 4 && type == MSGPACK_OBJECT_STR)
                rc = hop_mp_str(&mp, &str[at], &len[at]);
            else if (s_key_is(key, key_len, "time") && type == MSGPACK_OBJECT_POSITIVE_INTEGER)
                rc = hop_mp_uint(&mp, &rec.time);
            else if (s_key_is(key, key_len, "count") && type == MSGPACK_OBJECT_POSITIVE_INTEGER)
                rc = hop_mp_uint(&mp, &rec.count);
            else
                rc = hop_mp_skip(&mp);
            if (rc)
                return -1;
        }
        // After the map, in a fixed order: both passes make the same arena calls.
        rec.reason = s_arena_str(arena, str[0], len[0]);
        rec.queue = s_arena_str(arena, str[1], len[1]);
        rec.exchange = s_arena_str(arena, str[2], len[2]);
        rec.routing_key = s_arena_str(arena, str[3], len[3]);
        if (deaths)
            deaths[found] = rec;
        found++;
    }
    return found;
}

// Parses wire into one allocation with tail_size more bytes at its end (*tail, for a copied
// body). The body is left empty.
static hop_delivery_node_t *
s_parse(const hop_wire_t *wire, size_t tail_size, char **tail, hop_delivery_node_t **spare)
{
    assert(wire);
    const uint8_t *props = wire->props.ptr;
    size_t props_size = props ? wire->props.len : 0;

    // Pass 1: measure.
    s_arena_t arena = {NULL, 0};
    s_arena_str(&arena, wire->consumer.ptr, wire->consumer.len);
    s_arena_str(&arena, wire->exchange.ptr, wire->exchange.len);
    s_arena_str(&arena, wire->key.ptr, wire->key.len);
    size_t strings_fixed = arena.used;
    hop_props_t scratch = {0};
    size_t headers_at = 0, headers_size = 0;
    long headers = 0;
    if (props) {
        headers =
            s_props_walk(&arena, props, props_size, &scratch, NULL, &headers_at, &headers_size);
        if (headers < 0) {
            // Not ours to judge: the broker passes props through. Deliver without them.
            props = NULL;
            props_size = 0;
            headers = 0;
            headers_size = 0;
            arena.used = strings_fixed;
        }
    }
    const uint8_t *death = wire->death.ptr;
    size_t death_size = death ? wire->death.len : 0;
    long deaths = 0;
    if (death) {
        size_t strings_before = arena.used;
        deaths = s_deaths_walk(&arena, death, death_size, NULL);
        if (deaths < 0) {
            death = NULL; // likewise: deliver without them
            deaths = 0;
            arena.used = strings_before;
        }
    }
    size_t align = alignof(hop_header_t);
    size_t headers_off = (sizeof(hop_delivery_node_t) + align - 1) / align * align;
    align = alignof(hop_death_t);
    size_t deaths_off =
        (headers_off + (size_t)headers * sizeof(hop_header_t) + align - 1) / align * align;
    size_t strings_off = deaths_off + (size_t)deaths * sizeof(hop_death_t);
    size_t raw_off = strings_off + arena.used;
    size_t tail_off = raw_off + props_size;
    size_t need = tail_off + tail_size;
    hop_delivery_node_t *node;
    if (spare && *spare && (*spare)->cap >= need) {
        node = *spare;
        *spare = NULL;
        need = node->cap;
    } else if (!(node = malloc(need)))
        abort();
    memset(node, 0, sizeof *node);
    node->cap = need;
    char *base = (char *)node;

    // Pass 2: fill.
    hop_delivery_t *d = &node->pub;
    arena.base = base + strings_off;
    arena.used = 0;
    d->consumer = s_arena_str(&arena, wire->consumer.ptr, wire->consumer.len);
    d->exchange = s_arena_str(&arena, wire->exchange.ptr, wire->exchange.len);
    d->routing_key = s_arena_str(&arena, wire->key.ptr, wire->key.len);
    if (props) {
        hop_header_t *array = headers ? (hop_header_t *)(void *)(base + headers_off) : NULL;
        s_props_walk(&arena, props, props_size, &d->props, array, &headers_at, &headers_size);
        d->props.headers = array;
        d->props.header_count = (size_t)headers;
        memcpy(base + raw_off, props, props_size);
        d->props_raw = base + raw_off;
        d->props_raw_size = props_size;
        if (headers_size) {
            d->headers_raw = base + raw_off + headers_at;
            d->headers_raw_size = headers_size;
        }
    }
    if (deaths) {
        hop_death_t *array = (hop_death_t *)(void *)(base + deaths_off);
        s_deaths_walk(&arena, death, death_size, array);
        d->deaths = array;
        d->death_count = (size_t)deaths;
    }
    d->priority = wire->priority > 255 ? 255 : (uint8_t)wire->priority;
    d->tag = wire->tag;
    d->redelivered = wire->redelivered;
    d->delivery_count = wire->count > UINT32_MAX ? UINT32_MAX : (uint32_t)wire->count;
    d->message_count = wire->messages;
    zmq_msg_init(&node->body);
    if (tail)
        *tail = base + tail_off;
    return node;
}

hop_delivery_t *
hop_delivery_parse(const hop_wire_t *wire, zmq_msg_t *body, hop_delivery_node_t **spare)
{
    hop_delivery_node_t *node = s_parse(wire, 0, NULL, spare);
    hop_delivery_t *d = &node->pub;
    // Zero copy: the body frame moves in; body points into its final place (a small frame's
    // bytes live inside the zmq_msg_t, so only after the move is the address stable).
    if (body)
        zmq_msg_move(&node->body, body);
    d->body = zmq_msg_data(&node->body);
    d->body_size = zmq_msg_size(&node->body);
    return d;
}

hop_delivery_t *
hop_delivery_parse_record(const hop_wire_t *wire, zmq_msg_t *frame, const void *body,
                          size_t body_size, hop_delivery_node_t **spare)
{
    assert(frame);
    assert(body || !body_size);
    // Batched bodies are small (the broker batches none over HOP_BATCH_BODY_MAX): copying one
    // into the allocation we make anyway costs less than sharing the frame (two atomic
    // operations), and lets the batch frame go as soon as its last record is read instead of
    // when the application frees its last delivery.
    bool copy = body_size <= HOP_BATCH_BODY_MAX;
    char *tail;
    hop_delivery_node_t *node = s_parse(wire, copy ? body_size : 0, &tail, spare);
    hop_delivery_t *d = &node->pub;
    if (copy) {
        if (body_size)
            memcpy(tail, body, body_size);
        d->body = tail;
    } else {
        // Offsets, not pointers: a copy of a small frame has its bytes somewhere else.
        size_t at = (size_t)((const uint8_t *)body - (const uint8_t *)zmq_msg_data(frame));
        zmq_msg_copy(&node->body, frame);
        d->body = (const uint8_t *)zmq_msg_data(&node->body) + at;
    }
    d->body_size = body_size;
    return d;
}

hop_delivery_t *
hop_inmsg_delivery(hop_inmsg_t *msg, hop_delivery_node_t **spare)
{
    if (msg->records)
        return hop_delivery_parse_record(&msg->wire, msg->records, msg->data, msg->data_size,
                                         spare);
    return hop_delivery_parse(&msg->wire, msg->has_body ? &msg->body : NULL, spare);
}

void
hop_delivery_recycle(hop_delivery_t **self_p, hop_delivery_node_t **spare)
{
    assert(self_p && spare);
    hop_delivery_node_t *node = (hop_delivery_node_t *)*self_p;
    *self_p = NULL;
    if (!node)
        return;
    zmq_msg_close(&node->body);
    if (*spare && (*spare)->cap >= node->cap) {
        free(node);
        return;
    }
    free(*spare);
    *spare = node;
}

void
hop_delivery_destroy(hop_delivery_t **self_p)
{
    assert(self_p);
    if (!*self_p)
        return;
    hop_delivery_node_t *node = (hop_delivery_node_t *)*self_p;
    zmq_msg_close(&node->body);
    free(node);
    *self_p = NULL;
}

const char *
hop_delivery_header(const hop_delivery_t *self, const char *key)
{
    if (!self || !key)
        return NULL;
    for (size_t i = 0; i < self->props.header_count; i++)
        if (strcmp(self->props.headers[i].key, key) == 0)
            return self->props.headers[i].value;
    return NULL;
}
