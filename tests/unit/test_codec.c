// tests/unit/test_codec.c - the wire codec (sdk/codec.c): cursor, header decoding, encoder.
//
// Inputs that hop_wire_decode or the cursor must bound-check are copied into heap buffers of
// their exact size, so that ASan reports any read past the end.
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "codec.h"
#include "hopper.h"

#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// ---------------------------------------------------------------------------------------
// Helpers

#define ERR_SIZE 256

// A heap copy of exactly size bytes (at least one byte is allocated, none readable beyond).
static uint8_t *
s_dup(const void *data, size_t size)
{
    uint8_t *copy = malloc(size ? size : 1);
    assert_non_null(copy);
    if (size)
        memcpy(copy, data, size);
    return copy;
}

static void
s_pk_str(msgpack_packer *pk, const char *str)
{
    size_t len = strlen(str);
    msgpack_pack_str(pk, len);
    msgpack_pack_str_body(pk, str, len);
}

// Decodes an exact-size copy of data; the copy is returned in *frame_p (caller frees) so the
// spans of w stay valid.
static int
s_decode(hop_wire_t *w, const void *data, size_t size, uint8_t **frame_p, char *err)
{
    uint8_t *frame = s_dup(data, size);
    int rc = hop_wire_decode(w, frame, size, err, ERR_SIZE);
    if (frame_p)
        *frame_p = frame;
    else
        free(frame);
    return rc;
}

// Decodes what the encoder holds; the caller frees *frame_p.
static int
s_decode_enc(hop_enc_t *enc, hop_wire_t *w, uint8_t **frame_p, char *err)
{
    size_t size;
    const void *data = hop_enc_end(enc, &size);
    return s_decode(w, data, size, frame_p, err);
}

static void
s_assert_str(hop_str_t s, const void *value, size_t len)
{
    assert_non_null(s.ptr);
    assert_int_equal(s.len, len);
    if (len)
        assert_memory_equal(s.ptr, value, len);
}

// The span/string [ptr, ptr+len) lies inside [frame, frame+size).
static void
s_assert_inside(const void *ptr, size_t len, const uint8_t *frame, size_t size)
{
    const uint8_t *p = ptr;
    assert_true(p >= frame && p <= frame + size);
    assert_true(len <= (size_t)(frame + size - p));
}

// Unpacks data with msgpack-c (an oracle independent of the code under test).
static void
s_unpack(msgpack_unpacked *out, const void *data, size_t size)
{
    size_t off = 0;
    msgpack_unpacked_init(out);
    assert_int_equal(msgpack_unpack_next(out, data, size, &off), MSGPACK_UNPACK_SUCCESS);
    assert_int_equal(off, size);
}

static const msgpack_object *
s_map_get(const msgpack_object *map, const char *key)
{
    assert_int_equal(map->type, MSGPACK_OBJECT_MAP);
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object *k = &map->via.map.ptr[i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == strlen(key) &&
            memcmp(k->via.str.ptr, key, k->via.str.size) == 0)
            return &map->via.map.ptr[i].val;
    }
    return NULL;
}

// A value written as bytes, for the cursor tests.
typedef struct {
    const uint8_t *data;
    size_t size;
} s_bytes_t;

#define BYTES(...)                                                                                 \
    {                                                                                              \
        (const uint8_t[]){__VA_ARGS__}, sizeof((const uint8_t[]){__VA_ARGS__})                     \
    }

// ---------------------------------------------------------------------------------------
// Encoder -> decoder round trips

typedef struct {
    const char *key;
    uint32_t bit;
    size_t offset;
} s_field_t;

#define FIELD(key, bit, member)                                                                    \
    {                                                                                              \
        key, bit, offsetof(hop_wire_t, member)                                                     \
    }

static const s_field_t s_uint_fields[] = {
    FIELD("id", HOP_F_ID, id),
    FIELD("version", HOP_F_VERSION, version),
    FIELD("heartbeat", HOP_F_HEARTBEAT, heartbeat),
    FIELD("timeout", HOP_F_TIMEOUT, timeout),
    FIELD("max_message", HOP_F_MAX_MESSAGE, max_message),
    FIELD("prefetch", HOP_F_PREFETCH, prefetch),
    FIELD("tag", HOP_F_TAG, tag),
    FIELD("count", HOP_F_COUNT, count),
    FIELD("messages", HOP_F_MESSAGES, messages),
    FIELD("consumers", HOP_F_CONSUMERS, consumers),
    FIELD("code", HOP_F_CODE, code),
};

static const s_field_t s_str_fields[] = {
    FIELD("name", HOP_F_NAME, name),
    FIELD("server", HOP_F_SERVER, server),
    FIELD("exchange", HOP_F_EXCHANGE, exchange),
    FIELD("type", HOP_F_TYPE, type),
    FIELD("queue", HOP_F_QUEUE, queue),
    FIELD("key", HOP_F_KEY, key),
    FIELD("consumer", HOP_F_CONSUMER, consumer),
    FIELD("what", HOP_F_WHAT, what),
    FIELD("text", HOP_F_TEXT, text),
};

static const s_field_t s_bool_fields[] = {
    FIELD("durable", HOP_F_DURABLE, durable),
    FIELD("exclusive", HOP_F_EXCLUSIVE, exclusive),
    FIELD("auto_delete", HOP_F_AUTO_DELETE, auto_delete),
    FIELD("passive", HOP_F_PASSIVE, passive),
    FIELD("if_unused", HOP_F_IF_UNUSED, if_unused),
    FIELD("if_empty", HOP_F_IF_EMPTY, if_empty),
    FIELD("no_ack", HOP_F_NO_ACK, no_ack),
    FIELD("multiple", HOP_F_MULTIPLE, multiple),
    FIELD("requeue", HOP_F_REQUEUE, requeue),
    FIELD("redelivered", HOP_F_REDELIVERED, redelivered),
};

#define COUNT_OF(a) (sizeof(a) / sizeof((a)[0]))

static void
test_roundtrip_uint_boundaries(void **state)
{
    (void)state;
    const uint64_t values[] = {0,
                               1,
                               127,
                               128,
                               255,
                               256,
                               65535,
                               65536,
                               UINT32_MAX,
                               (uint64_t)1 << 32,
                               INT64_MAX,
                               (uint64_t)INT64_MAX + 1,
                               UINT64_MAX - 1,
                               UINT64_MAX};
    hop_enc_t enc;
    hop_enc_init(&enc);
    for (size_t i = 0; i < COUNT_OF(values); i++) {
        hop_enc_begin(&enc, HOP_CMD_ACK);
        hop_enc_uint(&enc, "tag", values[i]);
        hop_wire_t w;
        uint8_t *frame;
        char err[ERR_SIZE];
        assert_int_equal(s_decode_enc(&enc, &w, &frame, err), 0);
        assert_int_equal(w.cmd, HOP_CMD_ACK);
        assert_true(w.has & HOP_F_TAG);
        assert_true(w.tag == values[i]);
        free(frame);
    }
    hop_enc_fini(&enc);
}

static void
test_roundtrip_every_uint_field(void **state)
{
    (void)state;
    hop_enc_t enc;
    hop_enc_init(&enc);
    hop_enc_begin(&enc, HOP_CMD_STATUS_OK);
    uint32_t bits = 0;
    for (size_t i = 0; i < COUNT_OF(s_uint_fields); i++) {
        hop_enc_uint(&enc, s_uint_fields[i].key, ((uint64_t)1 << (i * 5)) + i);
        bits |= s_uint_fields[i].bit;
    }
    hop_wire_t w;
    uint8_t *frame;
    char err[ERR_SIZE];
    assert_int_equal(s_decode_enc(&enc, &w, &frame, err), 0);
    assert_int_equal(w.has, bits);
    for (size_t i = 0; i < COUNT_OF(s_uint_fields); i++) {
        uint64_t got;
        memcpy(&got, (const char *)&w + s_uint_fields[i].offset, sizeof got);
        assert_true(got == ((uint64_t)1 << (i * 5)) + i);
    }
    free(frame);
    hop_enc_fini(&enc);
}

static void
test_roundtrip_string_lengths(void **state)
{
    (void)state;
    // Empty, the longest fixstr, the shortest str8, the longest name allowed.
    const size_t lengths[] = {0, 1, 31, 32, 255};
    char value[256];
    hop_enc_t enc;
    hop_enc_init(&enc);
    for (size_t i = 0; i < COUNT_OF(lengths); i++) {
        for (size_t j = 0; j < lengths[i]; j++)
            value[j] = (char)('a' + (j * 7 + i) % 26);
        hop_enc_begin(&enc, HOP_CMD_QUEUE_DECLARE);
        hop_enc_str(&enc, "queue", value, lengths[i]);
        hop_wire_t w;
        uint8_t *frame;
        size_t size;
        char err[ERR_SIZE];
        hop_enc_end(&enc, &size);
        assert_int_equal(s_decode_enc(&enc, &w, &frame, err), 0);
        assert_true(w.has & HOP_F_QUEUE);
        s_assert_str(w.queue, value, lengths[i]);
        s_assert_inside(w.queue.ptr, w.queue.len, frame, size); // borrowed, not copied
        free(frame);
    }
    hop_enc_fini(&enc);
}

static void
test_roundtrip_every_string_field(void **state)
{
    (void)state;
    hop_enc_t enc;
    hop_enc_init(&enc);
    hop_enc_begin(&enc, HOP_CMD_HELLO);
    uint32_t bits = 0;
    char values[COUNT_OF(s_str_fields)][32];
    for (size_t i = 0; i < COUNT_OF(s_str_fields); i++) {
        snprintf(values[i], sizeof values[i], "value-of-%s", s_str_fields[i].key);
        hop_enc_cstr(&enc, s_str_fields[i].key, values[i]);
        bits |= s_str_fields[i].bit;
    }
    hop_wire_t w;
    uint8_t *frame;
    char err[ERR_SIZE];
    assert_int_equal(s_decode_enc(&enc, &w, &frame, err), 0);
    assert_int_equal(w.has, bits);
    for (size_t i = 0; i < COUNT_OF(s_str_fields); i++) {
        hop_str_t got;
        memcpy(&got, (const char *)&w + s_str_fields[i].offset, sizeof got);
        s_assert_str(got, values[i], strlen(values[i]));
    }
    free(frame);
    hop_enc_fini(&enc);
}

static void
test_roundtrip_string_with_nul_bytes(void **state)
{
    (void)state;
    const char key[] = {'a', '\0', 'b', '\0'};
    hop_enc_t enc;
    hop_enc_init(&enc);
    hop_enc_begin(&enc, HOP_CMD_PUBLISH);
    hop_enc_str(&enc, "key", key, sizeof key);
    hop_wire_t w;
    uint8_t *frame;
    char err[ERR_SIZE];
    assert_int_equal(s_decode_enc(&enc, &w, &frame, err), 0);
    s_assert_str(w.key, key, sizeof key);
    free(frame);
    hop_enc_fini(&enc);
}

static void
test_enc_cstr_null_is_empty_string(void **state)
{
    (void)state;
    hop_enc_t enc;
    hop_enc_init(&enc);
    hop_enc_begin(&enc, HOP_CMD_PUBLISH);
    hop_enc_cstr(&enc, "exchange", NULL);
    hop_wire_t w;
    uint8_t *frame;
    char err[ERR_SIZE];
    assert_int_equal(s_decode_enc(&enc, &w, &frame, err), 0);
    assert_true(w.has & HOP_F_EXCHANGE);
    s_assert_str(w.exchange, "", 0);
    free(frame);
    hop_enc_fini(&enc);
}

static void
test_roundtrip_text_longer_than_255(void **state)
{
    (void)state;
    // Only names, keys and tags are limited to 255 bytes; an error text is not.
    char text[1000];
    memset(text, 'x', sizeof text);
    hop_enc_t enc;
    hop_enc_init(&enc);
    hop_enc_begin(&enc, HOP_CMD_ERROR);
    hop_enc_uint(&enc, "code", HOP_CODE_NOT_FOUND);
    hop_enc_str(&enc, "text", text, sizeof text);
    hop_wire_t w;
    uint8_t *frame;
    char err[ERR_SIZE];
    assert_int_equal(s_decode_enc(&enc, &w, &frame, err), 0);
    s_assert_str(w.text, text, sizeof text);
    assert_int_equal(w.code, HOP_CODE_NOT_FOUND);
    free(frame);
    hop_enc_fini(&enc);
}

static void
test_roundtrip_bools(void **state)
{
    (void)state;
    uint32_t bits = 0;
    for (size_t i = 0; i < COUNT_OF(s_bool_fields); i++)
        bits |= s_bool_fields[i].bit;
    hop_enc_t enc;
    hop_enc_init(&enc);
    for (int value = 0; value <= 1; value++) {
        hop_enc_begin(&enc, HOP_CMD_QUEUE_DECLARE);
        for (size_t i = 0; i < COUNT_OF(s_bool_fields); i++)
            hop_enc_bool(&enc, s_bool_fields[i].key, value);
        hop_wire_t w;
        uint8_t *frame;
        char err[ERR_SIZE];
        assert_int_equal(s_decode_enc(&enc, &w, &frame, err), 0);
        // Presence is reported for false values too.
        assert_int_equal(w.has, bits);
        for (size_t i = 0; i < COUNT_OF(s_bool_fields); i++) {
            bool got;
            memcpy(&got, (const char *)&w + s_bool_fields[i].offset, sizeof got);
            assert_int_equal(got, value);
        }
        free(frame);
    }
    hop_enc_fini(&enc);
}

static void
test_roundtrip_props_raw_byte_identical(void **state)
{
    (void)state;
    // A props map as a foreign client might write it: fixmap, nested headers, mixed types.
    msgpack_sbuffer props;
    msgpack_sbuffer_init(&props);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &props, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 4);
    s_pk_str(&pk, "content_type");
    s_pk_str(&pk, "text/plain");
    s_pk_str(&pk, "timestamp");
    msgpack_pack_uint64(&pk, 1700000000123u);
    s_pk_str(&pk, "headers");
    msgpack_pack_map(&pk, 3);
    s_pk_str(&pk, "retries");
    msgpack_pack_int(&pk, -3);
    s_pk_str(&pk, "ratio");
    msgpack_pack_double(&pk, 0.25);
    s_pk_str(&pk, "list");
    msgpack_pack_array(&pk, 2);
    msgpack_pack_nil(&pk);
    msgpack_pack_bin(&pk, 3);
    msgpack_pack_bin_body(&pk, "\x00\x01\x02", 3);
    s_pk_str(&pk, "reply_to");
    s_pk_str(&pk, "amq.gen-1");

    hop_enc_t enc;
    hop_enc_init(&enc);
    hop_enc_begin(&enc, HOP_CMD_DELIVER);
    hop_enc_uint(&enc, "tag", 9);
    hop_enc_raw(&enc, "props", props.data, props.size);
    hop_enc_cstr(&enc, "key", "jobs");
    hop_wire_t w;
    uint8_t *frame;
    size_t size;
    char err[ERR_SIZE];
    hop_enc_end(&enc, &size);
    assert_int_equal(s_decode_enc(&enc, &w, &frame, err), 0);
    assert_true(w.has & HOP_F_PROPS);
    assert_non_null(w.props.ptr);
    assert_int_equal(w.props.len, props.size);
    assert_memory_equal(w.props.ptr, props.data, props.size);
    s_assert_inside(w.props.ptr, w.props.len, frame, size);
    // The keys around the raw value still decode.
    assert_int_equal(w.tag, 9);
    s_assert_str(w.key, "jobs", 4);
    free(frame);
    hop_enc_fini(&enc);
    msgpack_sbuffer_destroy(&props);
}

static void
test_roundtrip_items_array_of_maps(void **state)
{
    (void)state;
    static const char *names[] = {"jobs", "mail", "logs"};
    hop_enc_t enc;
    hop_enc_init(&enc);
    hop_enc_begin(&enc, HOP_CMD_LIST_OK);
    hop_enc_uint(&enc, "id", 4);
    hop_enc_array_begin(&enc, "items", 3);
    for (uint64_t i = 0; i < 3; i++) {
        hop_enc_map_begin(&enc, NULL);
        hop_enc_cstr(&enc, "name", names[i]);
        hop_enc_uint(&enc, "messages", i * 1000);
        hop_enc_bool(&enc, "durable", i == 1);
        hop_enc_map_end(&enc);
    }
    hop_enc_cstr(&enc, "what", "queues"); // a key after the array lands in the header map

    hop_wire_t w;
    uint8_t *frame;
    char err[ERR_SIZE];
    assert_int_equal(s_decode_enc(&enc, &w, &frame, err), 0);
    assert_int_equal(w.cmd, HOP_CMD_LIST_OK);
    assert_int_equal(w.id, 4);
    s_assert_str(w.what, "queues", 6);
    assert_true(w.has & HOP_F_ITEMS);

    // Walk the items span with the cursor and check it against msgpack-c too.
    hop_mp_t mp;
    hop_mp_init(&mp, w.items.ptr, w.items.len);
    uint32_t n;
    assert_int_equal(hop_mp_array(&mp, &n), 0);
    assert_int_equal(n, 3);
    msgpack_unpacked items;
    s_unpack(&items, w.items.ptr, w.items.len);
    assert_int_equal(items.data.type, MSGPACK_OBJECT_ARRAY);
    assert_int_equal(items.data.via.array.size, 3);
    for (uint32_t i = 0; i < 3; i++) {
        const msgpack_object *item = &items.data.via.array.ptr[i];
        assert_int_equal(item->type, MSGPACK_OBJECT_MAP);
        assert_int_equal(item->via.map.size, 3);
        const msgpack_object *name = s_map_get(item, "name");
        assert_non_null(name);
        assert_int_equal(name->via.str.size, strlen(names[i]));
        assert_memory_equal(name->via.str.ptr, names[i], strlen(names[i]));
        assert_int_equal(s_map_get(item, "messages")->via.u64, i * 1000);
        assert_int_equal(s_map_get(item, "durable")->via.boolean, i == 1);
        assert_int_equal(hop_mp_skip(&mp), 0);
    }
    assert_true(hop_mp_at_end(&mp));
    msgpack_unpacked_destroy(&items);
    free(frame);
    hop_enc_fini(&enc);
}

static void
test_roundtrip_empty_items_array(void **state)
{
    (void)state;
    hop_enc_t enc;
    hop_enc_init(&enc);
    hop_enc_begin(&enc, HOP_CMD_LIST_OK);
    hop_enc_array_begin(&enc, "items", 0);
    hop_enc_uint(&enc, "id", 5);
    hop_wire_t w;
    uint8_t *frame;
    char err[ERR_SIZE];
    assert_int_equal(s_decode_enc(&enc, &w, &frame, err), 0);
    assert_int_equal(w.items.len, 1);
    assert_int_equal(w.items.ptr[0], 0x90);
    assert_int_equal(w.id, 5);
    free(frame);
    hop_enc_fini(&enc);
}

static void
test_roundtrip_every_command(void **state)
{
    (void)state;
    hop_enc_t enc;
    hop_enc_init(&enc);
    for (int c = HOP_CMD_UNKNOWN + 1; c < HOP_CMD_COUNT_; c++) {
        hop_enc_begin(&enc, (hop_cmd_t)c);
        hop_wire_t w;
        uint8_t *frame;
        char err[ERR_SIZE];
        assert_int_equal(s_decode_enc(&enc, &w, &frame, err), 0);
        assert_int_equal(w.cmd, c);
        const char *name = hop_cmd_name((hop_cmd_t)c);
        s_assert_str(w.cmd_name, name, strlen(name));
        assert_int_equal(w.has, 0);
        free(frame);
    }
    hop_enc_fini(&enc);
}

// ---------------------------------------------------------------------------------------
// Encoder structure

static void
test_enc_patches_map_sizes_with_nested_maps(void **state)
{
    (void)state;
    hop_enc_t enc;
    hop_enc_init(&enc);
    hop_enc_begin(&enc, HOP_CMD_PUBLISH);
    hop_enc_uint(&enc, "id", 1);
    hop_enc_map_begin(&enc, "props");
    hop_enc_cstr(&enc, "content_type", "text/plain");
    hop_enc_map_begin(&enc, "headers");
    hop_enc_cstr(&enc, "a", "1");
    hop_enc_int(&enc, "b", -2);
    hop_enc_map_begin(&enc, "empty");
    hop_enc_map_end(&enc);
    hop_enc_map_end(&enc); // headers: a, b, empty
    hop_enc_uint(&enc, "timestamp", 42);
    hop_enc_map_end(&enc); // props: content_type, headers, timestamp
    hop_enc_cstr(&enc, "exchange", "");
    size_t size;
    const uint8_t *data = hop_enc_end(&enc, &size);

    // Maps are written as map32 with their size patched in place.
    const uint8_t top[] = {0xdf, 0, 0, 0, 4};
    assert_memory_equal(data, top, sizeof top);

    msgpack_unpacked msg;
    s_unpack(&msg, data, size);
    assert_int_equal(msg.data.via.map.size, 4); // cmd, id, props, exchange
    const msgpack_object *props = s_map_get(&msg.data, "props");
    assert_non_null(props);
    assert_int_equal(props->via.map.size, 3);
    const msgpack_object *headers = s_map_get(props, "headers");
    assert_non_null(headers);
    assert_int_equal(headers->via.map.size, 3);
    assert_int_equal(s_map_get(headers, "b")->via.i64, -2);
    assert_int_equal(s_map_get(headers, "empty")->via.map.size, 0);
    assert_int_equal(s_map_get(props, "timestamp")->via.u64, 42);
    assert_non_null(s_map_get(&msg.data, "exchange"));
    msgpack_unpacked_destroy(&msg);

    hop_wire_t w;
    uint8_t *frame;
    char err[ERR_SIZE];
    assert_int_equal(s_decode_enc(&enc, &w, &frame, err), 0);
    const uint8_t props_head[] = {0xdf, 0, 0, 0, 3};
    assert_memory_equal(w.props.ptr, props_head, sizeof props_head);
    free(frame);
    hop_enc_fini(&enc);
}

static void
test_enc_end_closes_open_maps(void **state)
{
    (void)state;
    hop_enc_t enc;
    hop_enc_init(&enc);
    hop_enc_begin(&enc, HOP_CMD_PUBLISH);
    hop_enc_map_begin(&enc, "props");
    hop_enc_map_begin(&enc, "headers");
    hop_enc_cstr(&enc, "x", "y");
    size_t size;
    const void *data = hop_enc_end(&enc, &size);
    msgpack_unpacked msg;
    s_unpack(&msg, data, size);
    assert_int_equal(msg.data.via.map.size, 2);
    const msgpack_object *props = s_map_get(&msg.data, "props");
    assert_int_equal(props->via.map.size, 1);
    assert_int_equal(s_map_get(props, "headers")->via.map.size, 1);
    msgpack_unpacked_destroy(&msg);
    hop_enc_fini(&enc);
}

static void
test_enc_many_entries_in_one_map(void **state)
{
    (void)state;
    // More entries than a fixmap or a map16 would hold, to check the full 32-bit patch.
    hop_enc_t enc;
    hop_enc_init(&enc);
    hop_enc_begin(&enc, HOP_CMD_STATUS_OK);
    hop_enc_map_begin(&enc, "extra");
    char key[16];
    for (uint32_t i = 0; i < 70000; i++) {
        snprintf(key, sizeof key, "k%u", (unsigned)i);
        hop_enc_uint(&enc, key, i);
    }
    size_t size;
    const void *data = hop_enc_end(&enc, &size);
    msgpack_unpacked msg;
    s_unpack(&msg, data, size);
    assert_int_equal(s_map_get(&msg.data, "extra")->via.map.size, 70000);
    msgpack_unpacked_destroy(&msg);
    hop_enc_fini(&enc);
}

static void
test_enc_begin_reuses_encoder(void **state)
{
    (void)state;
    hop_enc_t enc;
    hop_enc_init(&enc);

    // A large first header (forces the buffer to grow), left with a nested map open.
    char big[4000];
    memset(big, 'q', sizeof big);
    hop_enc_begin(&enc, HOP_CMD_QUEUE_DECLARE);
    hop_enc_uint(&enc, "id", 77);
    hop_enc_str(&enc, "text", big, sizeof big);
    hop_enc_bool(&enc, "durable", true);
    hop_enc_map_begin(&enc, "props");
    hop_enc_cstr(&enc, "a", "b");
    hop_wire_t w;
    uint8_t *frame;
    char err[ERR_SIZE];
    assert_int_equal(s_decode_enc(&enc, &w, &frame, err), 0);
    assert_int_equal(w.cmd, HOP_CMD_QUEUE_DECLARE);
    free(frame);

    // The second header must hold nothing of the first.
    hop_enc_begin(&enc, HOP_CMD_ACK);
    hop_enc_uint(&enc, "tag", 7);
    size_t size;
    const void *data = hop_enc_end(&enc, &size);

    hop_enc_t fresh;
    hop_enc_init(&fresh);
    hop_enc_begin(&fresh, HOP_CMD_ACK);
    hop_enc_uint(&fresh, "tag", 7);
    size_t fresh_size;
    const void *fresh_data = hop_enc_end(&fresh, &fresh_size);
    assert_int_equal(size, fresh_size);
    assert_memory_equal(data, fresh_data, size);
    hop_enc_fini(&fresh);

    assert_int_equal(s_decode(&w, data, size, &frame, err), 0);
    assert_int_equal(w.cmd, HOP_CMD_ACK);
    assert_int_equal(w.has, HOP_F_TAG);
    assert_int_equal(w.tag, 7);
    free(frame);

    // Begin also works without an end in between.
    hop_enc_begin(&enc, HOP_CMD_OK);
    hop_enc_map_begin(&enc, "props");
    hop_enc_begin(&enc, HOP_CMD_CLOSE);
    hop_enc_uint(&enc, "id", 3);
    assert_int_equal(s_decode_enc(&enc, &w, &frame, err), 0);
    assert_int_equal(w.cmd, HOP_CMD_CLOSE);
    assert_int_equal(w.has, HOP_F_ID);
    free(frame);
    hop_enc_fini(&enc);
}

static void
test_enc_packer_and_count(void **state)
{
    (void)state;
    hop_enc_t enc;
    hop_enc_init(&enc);
    hop_enc_begin(&enc, HOP_CMD_STATUS_OK);
    msgpack_packer *pk = hop_enc_packer(&enc);
    s_pk_str(pk, "ratio");
    msgpack_pack_double(pk, 1.5);
    hop_enc_count(&enc);
    hop_enc_uint(&enc, "id", 2);
    size_t size;
    const void *data = hop_enc_end(&enc, &size);
    msgpack_unpacked msg;
    s_unpack(&msg, data, size);
    assert_int_equal(msg.data.via.map.size, 3);
    assert_true(s_map_get(&msg.data, "ratio")->via.f64 == 1.5);
    msgpack_unpacked_destroy(&msg);
    hop_enc_fini(&enc);
}

static void
test_enc_int_writes_signed_values(void **state)
{
    (void)state;
    hop_enc_t enc;
    hop_enc_init(&enc);
    hop_enc_begin(&enc, HOP_CMD_STATUS_OK);
    hop_enc_int(&enc, "min", INT64_MIN);
    hop_enc_int(&enc, "neg", -1);
    hop_enc_int(&enc, "pos", 300);
    size_t size;
    const void *data = hop_enc_end(&enc, &size);
    msgpack_unpacked msg;
    s_unpack(&msg, data, size);
    assert_true(s_map_get(&msg.data, "min")->via.i64 == INT64_MIN);
    assert_true(s_map_get(&msg.data, "neg")->via.i64 == -1);
    assert_true(s_map_get(&msg.data, "pos")->via.u64 == 300);
    msgpack_unpacked_destroy(&msg);
    hop_enc_fini(&enc);
}

// ---------------------------------------------------------------------------------------
// Cursor: one test per format family

static void
test_mp_empty_cursor_reads_nothing(void **state)
{
    (void)state;
    hop_mp_t mp;
    hop_mp_init(&mp, NULL, 0);
    assert_true(hop_mp_at_end(&mp));
    assert_int_equal(hop_mp_peek(&mp), -1);
    uint32_t n;
    const char *s;
    uint64_t u;
    int64_t i;
    bool b;
    assert_int_equal(hop_mp_map(&mp, &n), -1);
    assert_int_equal(hop_mp_array(&mp, &n), -1);
    assert_int_equal(hop_mp_str(&mp, &s, &n), -1);
    assert_int_equal(hop_mp_uint(&mp, &u), -1);
    assert_int_equal(hop_mp_int(&mp, &i), -1);
    assert_int_equal(hop_mp_bool(&mp, &b), -1);
    assert_int_equal(hop_mp_nil(&mp), -1);
    assert_int_equal(hop_mp_skip(&mp), -1);
}

static void
test_mp_positive_fixint(void **state)
{
    (void)state;
    const uint8_t data[] = {0x00, 0x7f, 0x2a};
    hop_mp_t mp;
    hop_mp_init(&mp, data, sizeof data);
    uint64_t u;
    int64_t i;
    assert_int_equal(hop_mp_peek(&mp), MSGPACK_OBJECT_POSITIVE_INTEGER);
    assert_int_equal(hop_mp_uint(&mp, &u), 0);
    assert_int_equal(u, 0);
    assert_int_equal(hop_mp_uint(&mp, &u), 0);
    assert_int_equal(u, 127);
    assert_int_equal(hop_mp_int(&mp, &i), 0);
    assert_int_equal(i, 42);
    assert_true(hop_mp_at_end(&mp));
}

static void
test_mp_negative_fixint(void **state)
{
    (void)state;
    const uint8_t data[] = {0xe0, 0xff};
    hop_mp_t mp;
    hop_mp_init(&mp, data, sizeof data);
    uint64_t u;
    int64_t i;
    assert_int_equal(hop_mp_peek(&mp), MSGPACK_OBJECT_NEGATIVE_INTEGER);
    assert_int_equal(hop_mp_uint(&mp, &u), -1);
    assert_ptr_equal(mp.p, data);
    assert_int_equal(hop_mp_int(&mp, &i), 0);
    assert_true(i == -32);
    assert_int_equal(hop_mp_int(&mp, &i), 0);
    assert_true(i == -1);
    assert_true(hop_mp_at_end(&mp));
}

static void
test_mp_uint8_to_uint64(void **state)
{
    (void)state;
    const s_bytes_t cases[] = {
        BYTES(0xcc, 0x80),
        BYTES(0xcc, 0xff),
        BYTES(0xcd, 0x01, 0x00),
        BYTES(0xcd, 0xff, 0xff),
        BYTES(0xce, 0x00, 0x01, 0x00, 0x00),
        BYTES(0xce, 0xff, 0xff, 0xff, 0xff),
        BYTES(0xcf, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00),
        BYTES(0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff),
        BYTES(0xcc, 0x05), // non-minimal widths are valid msgpack
        BYTES(0xcf, 0, 0, 0, 0, 0, 0, 0, 0x05),
    };
    const uint64_t want[] = {128,        255, 256, 65535, 65536, UINT32_MAX, (uint64_t)1 << 32,
                             UINT64_MAX, 5,   5};
    for (size_t k = 0; k < COUNT_OF(cases); k++) {
        uint8_t *data = s_dup(cases[k].data, cases[k].size);
        hop_mp_t mp;
        hop_mp_init(&mp, data, cases[k].size);
        assert_int_equal(hop_mp_peek(&mp), MSGPACK_OBJECT_POSITIVE_INTEGER);
        uint64_t u;
        assert_int_equal(hop_mp_uint(&mp, &u), 0);
        assert_true(u == want[k]);
        assert_true(hop_mp_at_end(&mp));
        free(data);
    }
}

static void
test_mp_uint_accepts_non_negative_signed_encodings(void **state)
{
    (void)state;
    const s_bytes_t cases[] = {
        BYTES(0xd0, 0x00),
        BYTES(0xd0, 0x7f),
        BYTES(0xd1, 0x7f, 0xff),
        BYTES(0xd2, 0x7f, 0xff, 0xff, 0xff),
        BYTES(0xd3, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff),
    };
    const uint64_t want[] = {0, 127, 32767, INT32_MAX, INT64_MAX};
    for (size_t k = 0; k < COUNT_OF(cases); k++) {
        uint8_t *data = s_dup(cases[k].data, cases[k].size);
        hop_mp_t mp;
        hop_mp_init(&mp, data, cases[k].size);
        uint64_t u;
        assert_int_equal(hop_mp_uint(&mp, &u), 0);
        assert_true(u == want[k]);
        assert_true(hop_mp_at_end(&mp));
        free(data);
    }
}

static void
test_mp_uint_rejects_negative_signed_encodings(void **state)
{
    (void)state;
    const s_bytes_t cases[] = {
        BYTES(0xd0, 0x80),
        BYTES(0xd0, 0xff),
        BYTES(0xd1, 0x80, 0x00),
        BYTES(0xd1, 0xff, 0xff),
        BYTES(0xd2, 0x80, 0x00, 0x00, 0x00),
        BYTES(0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0),
        BYTES(0xd3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff),
    };
    for (size_t k = 0; k < COUNT_OF(cases); k++) {
        uint8_t *data = s_dup(cases[k].data, cases[k].size);
        hop_mp_t mp;
        hop_mp_init(&mp, data, cases[k].size);
        uint64_t u = 12345;
        assert_int_equal(hop_mp_uint(&mp, &u), -1);
        assert_ptr_equal(mp.p, data);
        assert_int_equal(u, 12345);
        free(data);
    }
}

static void
test_mp_int8_to_int64(void **state)
{
    (void)state;
    const s_bytes_t cases[] = {
        BYTES(0xd0, 0x80),
        BYTES(0xd0, 0xdf),
        BYTES(0xd1, 0x80, 0x00),
        BYTES(0xd1, 0xff, 0x7f),
        BYTES(0xd2, 0x80, 0x00, 0x00, 0x00),
        BYTES(0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0),
        BYTES(0xd3, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff),
        BYTES(0xd0, 0x05),
        BYTES(0xcf, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff),
    };
    const int64_t want[] = {-128, -33, -32768, -129, INT32_MIN, INT64_MIN, INT64_MAX, 5, INT64_MAX};
    for (size_t k = 0; k < COUNT_OF(cases); k++) {
        uint8_t *data = s_dup(cases[k].data, cases[k].size);
        hop_mp_t mp;
        hop_mp_init(&mp, data, cases[k].size);
        int64_t i;
        assert_int_equal(hop_mp_int(&mp, &i), 0);
        assert_true(i == want[k]);
        assert_true(hop_mp_at_end(&mp));
        free(data);
    }
}

static void
test_mp_int_rejects_uint64_over_int64_max(void **state)
{
    (void)state;
    // codec.h: readers return -1 on a wrong type with the cursor unchanged.
    const uint8_t data[] = {0xcf, 0x80, 0, 0, 0, 0, 0, 0, 0};
    hop_mp_t mp;
    hop_mp_init(&mp, data, sizeof data);
    int64_t i;
    assert_int_equal(hop_mp_int(&mp, &i), -1);
    assert_ptr_equal(mp.p, data);
}

static void
test_mp_integers_reject_truncated_payload(void **state)
{
    (void)state;
    const uint8_t heads[] = {0xcc, 0xcd, 0xce, 0xcf, 0xd0, 0xd1, 0xd2, 0xd3};
    const size_t widths[] = {1, 2, 4, 8, 1, 2, 4, 8};
    for (size_t k = 0; k < COUNT_OF(heads); k++) {
        for (size_t size = 1; size <= widths[k]; size++) {
            uint8_t bytes[9] = {heads[k]};
            uint8_t *data = s_dup(bytes, size);
            hop_mp_t mp;
            hop_mp_init(&mp, data, size);
            uint64_t u;
            int64_t i;
            assert_int_equal(hop_mp_uint(&mp, &u), -1);
            assert_int_equal(hop_mp_int(&mp, &i), -1);
            assert_ptr_equal(mp.p, data);
            free(data);
        }
    }
}

static void
test_mp_integers_reject_other_types(void **state)
{
    (void)state;
    const s_bytes_t cases[] = {
        BYTES(0xc0),
        BYTES(0xc2),
        BYTES(0xc3),
        BYTES(0xa1, 'x'),
        BYTES(0x90),
        BYTES(0x80),
        BYTES(0xca, 0, 0, 0, 0),
        BYTES(0xc4, 0x00),
        BYTES(0xc1),
    };
    for (size_t k = 0; k < COUNT_OF(cases); k++) {
        hop_mp_t mp;
        hop_mp_init(&mp, cases[k].data, cases[k].size);
        uint64_t u;
        int64_t i;
        assert_int_equal(hop_mp_uint(&mp, &u), -1);
        assert_int_equal(hop_mp_int(&mp, &i), -1);
        assert_ptr_equal(mp.p, cases[k].data);
    }
}

static void
test_mp_str_families(void **state)
{
    (void)state;
    char body[300];
    for (size_t i = 0; i < sizeof body; i++)
        body[i] = (char)('A' + i % 26);
    // fixstr 0 and 31, str8 32 and 255, str16 256 and 3, str32 300 and 0.
    uint8_t buf[2048];
    size_t size = 0;
    const size_t lens[] = {0, 31, 32, 255, 256, 3, 300, 0};
    const int widths[] = {0, 0, 1, 1, 2, 2, 4, 4};
    for (size_t k = 0; k < COUNT_OF(lens); k++) {
        size_t n = lens[k];
        switch (widths[k]) {
        case 0:
            buf[size++] = (uint8_t)(0xa0 | n);
            break;
        case 1:
            buf[size++] = 0xd9;
            buf[size++] = (uint8_t)n;
            break;
        case 2:
            buf[size++] = 0xda;
            buf[size++] = (uint8_t)(n >> 8);
            buf[size++] = (uint8_t)n;
            break;
        default:
            buf[size++] = 0xdb;
            buf[size++] = 0;
            buf[size++] = 0;
            buf[size++] = (uint8_t)(n >> 8);
            buf[size++] = (uint8_t)n;
            break;
        }
        memcpy(buf + size, body, n);
        size += n;
    }
    uint8_t *data = s_dup(buf, size);
    hop_mp_t mp;
    hop_mp_init(&mp, data, size);
    for (size_t k = 0; k < COUNT_OF(lens); k++) {
        assert_int_equal(hop_mp_peek(&mp), MSGPACK_OBJECT_STR);
        const char *s;
        uint32_t len;
        assert_int_equal(hop_mp_str(&mp, &s, &len), 0);
        assert_int_equal(len, lens[k]);
        if (len)
            assert_memory_equal(s, body, len);
    }
    assert_true(hop_mp_at_end(&mp));
    free(data);
}

static void
test_mp_str_rejects_bin_and_truncation(void **state)
{
    (void)state;
    const s_bytes_t cases[] = {
        BYTES(0xc4, 0x01, 'x'),                   // bin is not a string
        BYTES(0xa3, 'a', 'b'),                    // fixstr short by one
        BYTES(0xd9),                              // str8 without its length
        BYTES(0xd9, 0x02, 'a'),                   // str8 short by one
        BYTES(0xda, 0x00),                        // str16 length cut
        BYTES(0xdb, 0xff, 0xff, 0xff, 0xff, 'a'), // str32 claiming 4 GiB
        BYTES(0x01),
    };
    for (size_t k = 0; k < COUNT_OF(cases); k++) {
        uint8_t *data = s_dup(cases[k].data, cases[k].size);
        hop_mp_t mp;
        hop_mp_init(&mp, data, cases[k].size);
        const char *s = NULL;
        uint32_t len = 99;
        assert_int_equal(hop_mp_str(&mp, &s, &len), -1);
        assert_ptr_equal(mp.p, data);
        assert_null(s);
        assert_int_equal(len, 99);
        free(data);
    }
}

static void
test_mp_bool_and_nil(void **state)
{
    (void)state;
    const uint8_t data[] = {0xc3, 0xc2, 0xc0, 0x00};
    hop_mp_t mp;
    hop_mp_init(&mp, data, sizeof data);
    bool b;
    assert_int_equal(hop_mp_peek(&mp), MSGPACK_OBJECT_BOOLEAN);
    assert_int_equal(hop_mp_nil(&mp), -1);
    assert_int_equal(hop_mp_bool(&mp, &b), 0);
    assert_true(b);
    assert_int_equal(hop_mp_bool(&mp, &b), 0);
    assert_false(b);
    assert_int_equal(hop_mp_peek(&mp), MSGPACK_OBJECT_NIL);
    assert_int_equal(hop_mp_bool(&mp, &b), -1);
    assert_int_equal(hop_mp_nil(&mp), 0);
    // 0 is not false, nil is not false.
    assert_int_equal(hop_mp_bool(&mp, &b), -1);
    assert_int_equal(hop_mp_nil(&mp), -1);
    assert_ptr_equal(mp.p, data + 3);
}

static void
test_mp_array_and_map_families(void **state)
{
    (void)state;
    const s_bytes_t arrays[] = {BYTES(0x90),
                                BYTES(0x9f),
                                BYTES(0xdc, 0x00, 0x10),
                                BYTES(0xdc, 0xff, 0xff),
                                BYTES(0xdd, 0x00, 0x01, 0x00, 0x00),
                                BYTES(0xdd, 0xff, 0xff, 0xff, 0xff)};
    const s_bytes_t maps[] = {BYTES(0x80),
                              BYTES(0x8f),
                              BYTES(0xde, 0x00, 0x10),
                              BYTES(0xde, 0xff, 0xff),
                              BYTES(0xdf, 0x00, 0x01, 0x00, 0x00),
                              BYTES(0xdf, 0xff, 0xff, 0xff, 0xff)};
    const uint32_t want[] = {0, 15, 16, 65535, 65536, UINT32_MAX};
    for (size_t k = 0; k < COUNT_OF(want); k++) {
        hop_mp_t mp;
        uint32_t n;
        hop_mp_init(&mp, arrays[k].data, arrays[k].size);
        assert_int_equal(hop_mp_peek(&mp), MSGPACK_OBJECT_ARRAY);
        assert_int_equal(hop_mp_map(&mp, &n), -1);
        assert_int_equal(hop_mp_array(&mp, &n), 0);
        assert_int_equal(n, want[k]);
        assert_true(hop_mp_at_end(&mp));

        hop_mp_init(&mp, maps[k].data, maps[k].size);
        assert_int_equal(hop_mp_peek(&mp), MSGPACK_OBJECT_MAP);
        assert_int_equal(hop_mp_array(&mp, &n), -1);
        assert_int_equal(hop_mp_map(&mp, &n), 0);
        assert_int_equal(n, want[k]);
        assert_true(hop_mp_at_end(&mp));
    }
}

static void
test_mp_container_headers_reject_truncation(void **state)
{
    (void)state;
    const uint8_t heads[] = {0xdc, 0xdd, 0xde, 0xdf};
    const size_t widths[] = {2, 4, 2, 4};
    for (size_t k = 0; k < COUNT_OF(heads); k++) {
        for (size_t size = 1; size <= widths[k]; size++) {
            uint8_t bytes[5] = {heads[k]};
            uint8_t *data = s_dup(bytes, size);
            hop_mp_t mp;
            hop_mp_init(&mp, data, size);
            uint32_t n;
            assert_int_equal(hop_mp_array(&mp, &n), -1);
            assert_int_equal(hop_mp_map(&mp, &n), -1);
            assert_ptr_equal(mp.p, data);
            free(data);
        }
    }
}

// The type a first byte announces, from the msgpack spec (d0-d3 depend on the value).
static int
s_spec_type(uint8_t b)
{
    if (b <= 0x7f || (b >= 0xcc && b <= 0xcf))
        return MSGPACK_OBJECT_POSITIVE_INTEGER;
    if (b <= 0x8f || b == 0xde || b == 0xdf)
        return MSGPACK_OBJECT_MAP;
    if (b <= 0x9f || b == 0xdc || b == 0xdd)
        return MSGPACK_OBJECT_ARRAY;
    if (b <= 0xbf || (b >= 0xd9 && b <= 0xdb))
        return MSGPACK_OBJECT_STR;
    if (b >= 0xe0)
        return MSGPACK_OBJECT_NEGATIVE_INTEGER;
    if (b == 0xc0)
        return MSGPACK_OBJECT_NIL;
    if (b == 0xc2 || b == 0xc3)
        return MSGPACK_OBJECT_BOOLEAN;
    if (b >= 0xc4 && b <= 0xc6)
        return MSGPACK_OBJECT_BIN;
    if ((b >= 0xc7 && b <= 0xc9) || (b >= 0xd4 && b <= 0xd8))
        return MSGPACK_OBJECT_EXT;
    if (b == 0xca)
        return MSGPACK_OBJECT_FLOAT32;
    if (b == 0xcb)
        return MSGPACK_OBJECT_FLOAT64;
    return -1; // 0xc1
}

static void
test_mp_peek_every_first_byte(void **state)
{
    (void)state;
    for (int b = 0; b <= 0xff; b++) {
        if (b >= 0xd0 && b <= 0xd3)
            continue;
        uint8_t *data = s_dup(&(uint8_t){(uint8_t)b}, 1);
        hop_mp_t mp;
        hop_mp_init(&mp, data, 1);
        assert_int_equal(hop_mp_peek(&mp), s_spec_type((uint8_t)b));
        free(data);
    }
    const uint8_t neg[] = {0xd0, 0xff};
    hop_mp_t mp;
    hop_mp_init(&mp, neg, sizeof neg);
    assert_int_equal(hop_mp_peek(&mp), MSGPACK_OBJECT_NEGATIVE_INTEGER);
}

// One complete value of every format family.
static const s_bytes_t s_families[] = {
    BYTES(0x05),                               // positive fixint
    BYTES(0xe0),                               // negative fixint
    BYTES(0xc0),                               // nil
    BYTES(0xc2),                               // false
    BYTES(0xc3),                               // true
    BYTES(0xcc, 0xff),                         // uint8
    BYTES(0xcd, 0xff, 0xff),                   // uint16
    BYTES(0xce, 1, 2, 3, 4),                   // uint32
    BYTES(0xcf, 1, 2, 3, 4, 5, 6, 7, 8),       // uint64
    BYTES(0xd0, 0x80),                         // int8
    BYTES(0xd1, 0x80, 0x00),                   // int16
    BYTES(0xd2, 0x80, 0, 0, 0),                // int32
    BYTES(0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0),    // int64
    BYTES(0xca, 0x3f, 0x80, 0, 0),             // float32
    BYTES(0xcb, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0), // float64
    BYTES(0xa0),                               // fixstr, empty
    BYTES(0xa3, 'a', 'b', 'c'),                // fixstr
    BYTES(0xd9, 3, 'a', 'b', 'c'),             // str8
    BYTES(0xda, 0, 3, 'a', 'b', 'c'),          // str16
    BYTES(0xdb, 0, 0, 0, 3, 'a', 'b', 'c'),    // str32
    BYTES(0xc4, 2, 0xc1, 0xc1),                // bin8 (payload is opaque)
    BYTES(0xc5, 0, 2, 0xc1, 0xc1),             // bin16
    BYTES(0xc6, 0, 0, 0, 2, 0xc1, 0xc1),       // bin32
    BYTES(0xc7, 2, 0x01, 0xc1, 0xc1),          // ext8
    BYTES(0xc8, 0, 2, 0x01, 0xc1, 0xc1),       // ext16
    BYTES(0xc9, 0, 0, 0, 2, 0x01, 0xc1, 0xc1), // ext32
    BYTES(0xc7, 0, 0x01),                      // ext8, empty
    BYTES(0xd4, 0x01, 0xc1),                   // fixext1
    BYTES(0xd5, 0x01, 0xc1, 0xc1),             // fixext2
    BYTES(0xd6, 0xff, 1, 2, 3, 4),             // fixext4 (timestamp32)
    BYTES(0xd7, 0x01, 1, 2, 3, 4, 5, 6, 7, 8), // fixext8
    BYTES(0xd8, 0x01, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16), // fixext16
    BYTES(0x90),                                                              // fixarray, empty
    BYTES(0x92, 0x01, 0xa1, 'x'),                                             // fixarray
    BYTES(0xdc, 0, 2, 0x01, 0xc0),                                            // array16
    BYTES(0xdd, 0, 0, 0, 2, 0x01, 0xc0),                                      // array32
    BYTES(0xdc, 0, 0),                                                        // array16, empty
    BYTES(0x80),                                                              // fixmap, empty
    BYTES(0x81, 0xa1, 'k', 0x01),                                             // fixmap
    BYTES(0xde, 0, 1, 0xa1, 'k', 0x01),                                       // map16
    BYTES(0xdf, 0, 0, 0, 1, 0xa1, 'k', 0x01),                                 // map32
    BYTES(0x81, 0x01, 0x02), // map with a non-string key
};

static void
test_mp_skip_every_family(void **state)
{
    (void)state;
    for (size_t k = 0; k < COUNT_OF(s_families); k++) {
        // The value followed by another, so that skip must stop exactly at its end.
        size_t size = s_families[k].size + 1;
        uint8_t *data = malloc(size);
        assert_non_null(data);
        memcpy(data, s_families[k].data, s_families[k].size);
        data[size - 1] = 0x2a;
        hop_mp_t mp;
        hop_mp_init(&mp, data, size);
        assert_int_equal(hop_mp_skip(&mp), 0);
        assert_ptr_equal(mp.p, data + s_families[k].size);
        uint64_t u;
        assert_int_equal(hop_mp_uint(&mp, &u), 0);
        assert_int_equal(u, 42);
        free(data);
    }
}

static void
test_mp_skip_rejects_every_truncated_family(void **state)
{
    (void)state;
    for (size_t k = 0; k < COUNT_OF(s_families); k++) {
        for (size_t size = 0; size < s_families[k].size; size++) {
            uint8_t *data = s_dup(s_families[k].data, size);
            hop_mp_t mp;
            hop_mp_init(&mp, data, size);
            if (hop_mp_skip(&mp) != -1)
                fail_msg("family %zu cut to %zu bytes was skipped", k, size);
            assert_ptr_equal(mp.p, data);
            free(data);
        }
    }
}

static void
test_mp_skip_rejects_0xc1(void **state)
{
    (void)state;
    const s_bytes_t cases[] = {BYTES(0xc1), BYTES(0x91, 0xc1), BYTES(0x81, 0xa1, 'k', 0xc1),
                               BYTES(0x81, 0xc1, 0x01)};
    for (size_t k = 0; k < COUNT_OF(cases); k++) {
        hop_mp_t mp;
        hop_mp_init(&mp, cases[k].data, cases[k].size);
        assert_int_equal(hop_mp_skip(&mp), -1);
        assert_ptr_equal(mp.p, cases[k].data);
    }
}

static void
test_mp_skip_nested_values(void **state)
{
    (void)state;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    // {"a": [1, "x", {"b": nil}], "c": {"d": [true, false, 1.5, -7]}, 3: bin, "e": ext, "f": []}
    msgpack_pack_map(&pk, 5);
    s_pk_str(&pk, "a");
    msgpack_pack_array(&pk, 3);
    msgpack_pack_uint8(&pk, 1);
    s_pk_str(&pk, "x");
    msgpack_pack_map(&pk, 1);
    s_pk_str(&pk, "b");
    msgpack_pack_nil(&pk);
    s_pk_str(&pk, "c");
    msgpack_pack_map(&pk, 1);
    s_pk_str(&pk, "d");
    msgpack_pack_array(&pk, 4);
    msgpack_pack_true(&pk);
    msgpack_pack_false(&pk);
    msgpack_pack_double(&pk, 1.5);
    msgpack_pack_int(&pk, -7);
    msgpack_pack_uint8(&pk, 3);
    msgpack_pack_bin(&pk, 300);
    char blob[300] = {0};
    msgpack_pack_bin_body(&pk, blob, sizeof blob);
    s_pk_str(&pk, "e");
    msgpack_pack_ext(&pk, 5, 7);
    msgpack_pack_ext_body(&pk, "abcde", 5);
    s_pk_str(&pk, "f");
    msgpack_pack_array(&pk, 0);
    size_t value_size = sb.size;
    msgpack_pack_uint8(&pk, 9); // the next value

    uint8_t *data = s_dup(sb.data, sb.size);
    hop_mp_t mp;
    hop_mp_init(&mp, data, sb.size);
    assert_int_equal(hop_mp_skip(&mp), 0);
    assert_ptr_equal(mp.p, data + value_size);
    uint64_t u;
    assert_int_equal(hop_mp_uint(&mp, &u), 0);
    assert_int_equal(u, 9);
    assert_true(hop_mp_at_end(&mp));

    // Every shorter cut of the nested value fails and leaves the cursor where it was.
    for (size_t size = 0; size < value_size; size++) {
        uint8_t *cut = s_dup(data, size);
        hop_mp_init(&mp, cut, size);
        assert_int_equal(hop_mp_skip(&mp), -1);
        assert_ptr_equal(mp.p, cut);
        free(cut);
    }
    free(data);
    msgpack_sbuffer_destroy(&sb);
}

// levels nested one-element arrays around inner (0x90: an empty array, or a scalar byte).
static uint8_t *
s_nested_arrays(int levels, uint8_t inner, size_t *size)
{
    *size = (size_t)levels + 1;
    uint8_t *data = malloc(*size);
    assert_non_null(data);
    memset(data, 0x91, (size_t)levels);
    data[levels] = inner;
    return data;
}

// Skips one value in data (heap, exactly size bytes) and frees data before the caller
// asserts, so that a failing test leaks nothing. Returns hop_mp_skip's result.
static int
s_skip_all(uint8_t *data, size_t size)
{
    hop_mp_t mp;
    hop_mp_init(&mp, data, size);
    int rc = hop_mp_skip(&mp);
    bool consumed = rc == 0 && hop_mp_at_end(&mp);
    bool in_place = rc != 0 && mp.p == data;
    free(data);
    assert_true(consumed || in_place);
    return rc;
}

// codec.h: "any one value, nested up to HOP_MP_DEPTH" - at most 32 containers deep.
static void
test_mp_skip_accepts_32_nested_arrays(void **state)
{
    (void)state;
    size_t size;
    // 31 one-element arrays around an empty one: 32 arrays.
    uint8_t *data = s_nested_arrays(HOP_MP_DEPTH - 1, 0x90, &size);
    assert_int_equal(s_skip_all(data, size), 0);
    // 32 arrays around a scalar.
    data = s_nested_arrays(HOP_MP_DEPTH, 0x01, &size);
    assert_int_equal(s_skip_all(data, size), 0);
}

static void
test_mp_skip_rejects_33_nested_arrays_around_a_value(void **state)
{
    (void)state;
    size_t size;
    uint8_t *data = s_nested_arrays(HOP_MP_DEPTH + 1, 0x01, &size);
    assert_int_equal(s_skip_all(data, size), -1);
}

static void
test_mp_skip_rejects_33_nested_arrays(void **state)
{
    (void)state;
    size_t size;
    // 32 one-element arrays around an empty one: 33 arrays, one over the limit. Must fail
    // like 33 arrays around a value do: the limit counts containers, not what is in them.
    uint8_t *data = s_nested_arrays(HOP_MP_DEPTH, 0x90, &size);
    assert_int_equal(s_skip_all(data, size), -1);
}

static void
test_mp_skip_rejects_deep_nesting_without_overflow(void **state)
{
    (void)state;
    size_t size;
    uint8_t *data = s_nested_arrays(100000, 0x90, &size);
    assert_int_equal(s_skip_all(data, size), -1);
    // Maps count towards the same limit.
    const size_t levels = 1000;
    size = levels * 3 + 1;
    data = malloc(size);
    assert_non_null(data);
    for (size_t i = 0; i < levels; i++) {
        data[i * 3] = 0x81;
        data[i * 3 + 1] = 0xa1;
        data[i * 3 + 2] = 'k';
    }
    data[size - 1] = 0x80;
    assert_int_equal(s_skip_all(data, size), -1);
}

static void
test_mp_skip_rejects_lying_counts(void **state)
{
    (void)state;
    const s_bytes_t cases[] = {
        BYTES(0xdd, 0xff, 0xff, 0xff, 0xff, 0x01, 0x02, 0x03), // 2^32-1 items, 3 bytes
        BYTES(0xdf, 0xff, 0xff, 0xff, 0xff, 0x01, 0x02, 0x03), // 2^32-1 pairs, 3 bytes
        BYTES(0xdc, 0xff, 0xff, 0x01, 0x02, 0x03),
        BYTES(0xde, 0x00, 0x02, 0x01, 0x02, 0x03),
        BYTES(0x9f, 0x01),
        BYTES(0x91, 0xdd, 0xff, 0xff, 0xff, 0xff, 0x01),
        BYTES(0xdb, 0xff, 0xff, 0xff, 0xff, 'a'),
        BYTES(0xc6, 0xff, 0xff, 0xff, 0xff, 'a'),
        BYTES(0xc9, 0xff, 0xff, 0xff, 0xff, 0x01, 'a'),
    };
    for (size_t k = 0; k < COUNT_OF(cases); k++) {
        uint8_t *data = s_dup(cases[k].data, cases[k].size);
        assert_int_equal(s_skip_all(data, cases[k].size), -1);
    }
}

// ---------------------------------------------------------------------------------------
// Decoding errors

// A header with a value of every field kind (and a nested props map and items array).
static void
s_full_header(hop_enc_t *enc)
{
    hop_enc_begin(enc, HOP_CMD_DELIVER);
    hop_enc_uint(enc, "id", 300);
    hop_enc_cstr(enc, "consumer", "ctag-1");
    hop_enc_uint(enc, "tag", (uint64_t)1 << 40);
    hop_enc_cstr(enc, "exchange", "amq.topic");
    hop_enc_str(enc, "key", "", 0);
    hop_enc_bool(enc, "redelivered", true);
    hop_enc_uint(enc, "count", 2);
    hop_enc_map_begin(enc, "props");
    hop_enc_cstr(enc, "content_type", "text/plain");
    hop_enc_map_begin(enc, "headers");
    hop_enc_int(enc, "n", -5);
    hop_enc_map_end(enc);
    hop_enc_map_end(enc);
    hop_enc_array_begin(enc, "items", 2);
    hop_enc_map_begin(enc, NULL);
    hop_enc_cstr(enc, "name", "q");
    hop_enc_map_end(enc);
    hop_enc_map_begin(enc, NULL);
    hop_enc_map_end(enc);
    hop_enc_bool(enc, "requeue", false);
}

static void
test_decode_full_header(void **state)
{
    (void)state;
    hop_enc_t enc;
    hop_enc_init(&enc);
    s_full_header(&enc);
    hop_wire_t w;
    uint8_t *frame;
    char err[ERR_SIZE];
    assert_int_equal(s_decode_enc(&enc, &w, &frame, err), 0);
    assert_string_equal(err, "");
    assert_int_equal(w.cmd, HOP_CMD_DELIVER);
    assert_int_equal(w.id, 300);
    assert_true(w.tag == (uint64_t)1 << 40);
    assert_true(w.redelivered);
    assert_false(w.requeue);
    assert_int_equal(w.has, HOP_F_ID | HOP_F_CONSUMER | HOP_F_TAG | HOP_F_EXCHANGE | HOP_F_KEY |
                                HOP_F_REDELIVERED | HOP_F_COUNT | HOP_F_PROPS | HOP_F_ITEMS |
                                HOP_F_REQUEUE);
    free(frame);
    hop_enc_fini(&enc);
}

static void
test_decode_truncated_header_fails_at_every_offset(void **state)
{
    (void)state;
    hop_enc_t enc;
    hop_enc_init(&enc);
    s_full_header(&enc);
    size_t size;
    const void *full = hop_enc_end(&enc, &size);
    size_t bad_cut = SIZE_MAX;
    for (size_t cut = 0; cut < size && bad_cut == SIZE_MAX; cut++) {
        hop_wire_t w;
        char err[ERR_SIZE];
        int rc = s_decode(&w, full, cut, NULL, err);
        if (rc == 0 || strlen(err) == 0)
            bad_cut = cut;
    }
    hop_enc_fini(&enc);
    if (bad_cut != SIZE_MAX)
        fail_msg("header cut to %zu of %zu bytes decoded, or failed without a reason", bad_cut,
                 size);
}

static void
test_decode_truncated_header_is_frame_error_at_every_offset(void **state)
{
    (void)state;
    // PROTOCOL.md 2: a header that is not valid msgpack is a frame-error (501).
    hop_enc_t enc;
    hop_enc_init(&enc);
    s_full_header(&enc);
    size_t size;
    const void *full = hop_enc_end(&enc, &size);
    size_t bad_cut = 0;
    int bad_rc = HOP_CODE_FRAME_ERROR;
    char bad_err[ERR_SIZE] = "";
    for (size_t cut = 0; cut < size && bad_rc == HOP_CODE_FRAME_ERROR; cut++) {
        hop_wire_t w;
        char err[ERR_SIZE];
        int rc = s_decode(&w, full, cut, NULL, err);
        if (rc != HOP_CODE_FRAME_ERROR) {
            bad_cut = cut;
            bad_rc = rc;
            memcpy(bad_err, err, sizeof bad_err);
        }
    }
    hop_enc_fini(&enc);
    if (bad_rc != HOP_CODE_FRAME_ERROR)
        fail_msg("header cut to %zu of %zu bytes: rc %d (%s), want 501", bad_cut, size, bad_rc,
                 bad_err);
}

static void
test_decode_truncated_cmd_value_is_frame_error(void **state)
{
    (void)state;
    // {"cmd": "hello"} cut inside the value, and cut right after the key.
    const s_bytes_t cases[] = {
        BYTES(0x81, 0xa3, 'c', 'm', 'd', 0xa5, 'h', 'e', 'l'),
        BYTES(0x81, 0xa3, 'c', 'm', 'd'),
        BYTES(0x81, 0xa3, 'c', 'm', 'd', 0xc1),
    };
    for (size_t k = 0; k < COUNT_OF(cases); k++) {
        hop_wire_t w;
        char err[ERR_SIZE];
        int rc = s_decode(&w, cases[k].data, cases[k].size, NULL, err);
        if (rc != HOP_CODE_FRAME_ERROR)
            fail_msg("case %zu: rc %d (%s), want 501", k, rc, err);
    }
}

static void
test_decode_empty_frame_is_frame_error(void **state)
{
    (void)state;
    hop_wire_t w;
    char err[ERR_SIZE] = "stale";
    assert_int_equal(hop_wire_decode(&w, NULL, 0, err, sizeof err), HOP_CODE_FRAME_ERROR);
    assert_true(strlen(err) > 0);
    assert_string_not_equal(err, "stale");
    uint8_t byte = 0x80;
    assert_int_equal(hop_wire_decode(&w, &byte, 0, err, sizeof err), HOP_CODE_FRAME_ERROR);
}

static void
test_decode_not_a_map_is_frame_error(void **state)
{
    (void)state;
    const s_bytes_t cases[] = {
        BYTES(0x91, 0x80),
        BYTES(0xa3, 'c', 'm', 'd'),
        BYTES(0x01),
        BYTES(0xc0),
        BYTES(0xc3),
        BYTES(0xc1),
        BYTES(0xc4, 0x01, 0x80),
        BYTES(0xdc, 0x00, 0x00),
        BYTES(0xde, 0x00),
    };
    for (size_t k = 0; k < COUNT_OF(cases); k++) {
        hop_wire_t w;
        char err[ERR_SIZE];
        assert_int_equal(s_decode(&w, cases[k].data, cases[k].size, NULL, err),
                         HOP_CODE_FRAME_ERROR);
        assert_true(strlen(err) > 0);
    }
}

static void
test_decode_trailing_bytes_is_frame_error(void **state)
{
    (void)state;
    const s_bytes_t cases[] = {
        BYTES(0x81, 0xa3, 'c', 'm', 'd', 0xa3, 'a', 'c', 'k', 0x00),
        BYTES(0x80, 0x80),
        BYTES(0x80, 0xc1),
    };
    for (size_t k = 0; k < COUNT_OF(cases); k++) {
        hop_wire_t w;
        char err[ERR_SIZE];
        assert_int_equal(s_decode(&w, cases[k].data, cases[k].size, NULL, err),
                         HOP_CODE_FRAME_ERROR);
        assert_non_null(strstr(err, "trailing"));
    }
}

static void
test_decode_empty_map_has_unknown_cmd(void **state)
{
    (void)state;
    const uint8_t data[] = {0x80};
    hop_wire_t w;
    char err[ERR_SIZE];
    assert_int_equal(s_decode(&w, data, sizeof data, NULL, err), 0);
    assert_int_equal(w.cmd, HOP_CMD_UNKNOWN);
    assert_int_equal(w.has, 0);
}

static void
test_decode_lying_map_count_is_frame_error(void **state)
{
    (void)state;
    const uint8_t data[] = {0xdf, 0xff, 0xff, 0xff, 0xff, 0xa3, 'c', 'm', 'd', 0xa3, 'a', 'c', 'k'};
    hop_wire_t w;
    char err[ERR_SIZE];
    assert_int_equal(s_decode(&w, data, sizeof data, NULL, err), HOP_CODE_FRAME_ERROR);
}

static void
test_decode_wrong_type_names_the_key(void **state)
{
    (void)state;
    // {"cmd":"ack","tag":"x"}
    const uint8_t data[] = {0x82, 0xa3, 'c', 'm', 'd', 0xa3, 'a', 'c',
                            'k',  0xa3, 't', 'a', 'g', 0xa1, 'x'};
    hop_wire_t w;
    char err[ERR_SIZE];
    assert_int_equal(s_decode(&w, data, sizeof data, NULL, err), HOP_CODE_SYNTAX_ERROR);
    assert_non_null(strstr(err, "'tag'"));
}

// A wrong type before `id` once hid the id: the error reply then said id 0 and the client
// waiting for it timed out. Decoding goes on past a syntax error; the first error wins.
static void
test_decode_syntax_error_still_decodes_the_id(void **state)
{
    (void)state;
    // {"cmd":"ack","tag":"x","queue":<300 x 'q'>,"id":7}
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 4);
    s_pk_str(&pk, "cmd");
    s_pk_str(&pk, "ack");
    s_pk_str(&pk, "tag");
    s_pk_str(&pk, "x");
    s_pk_str(&pk, "queue");
    char long_name[300];
    memset(long_name, 'q', sizeof long_name);
    msgpack_pack_str(&pk, sizeof long_name);
    msgpack_pack_str_body(&pk, long_name, sizeof long_name);
    s_pk_str(&pk, "id");
    msgpack_pack_uint64(&pk, 7);
    hop_wire_t w;
    char err[ERR_SIZE];
    assert_int_equal(s_decode(&w, sb.data, sb.size, NULL, err), HOP_CODE_SYNTAX_ERROR);
    assert_non_null(strstr(err, "'tag'")); // the first error is the one reported
    assert_true(w.has & HOP_F_ID);
    assert_int_equal(w.id, 7);
    assert_int_equal(w.cmd, HOP_CMD_ACK);
    assert_false(w.has & (HOP_F_TAG | HOP_F_QUEUE)); // the bad fields are not "present"
    // Garbage after a syntax error is still a frame error.
    sb.data[sb.size - 1] = (char)0xc1;
    assert_int_equal(s_decode(&w, sb.data, sb.size, NULL, err), HOP_CODE_FRAME_ERROR);
    msgpack_sbuffer_destroy(&sb);
}

// {"cmd": "x", key: value}, value given as msgpack bytes; returns the decode code.
static int
s_decode_one(const char *key, const uint8_t *value, size_t value_size, hop_wire_t *w, char *err)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2);
    s_pk_str(&pk, "cmd");
    s_pk_str(&pk, "publish");
    s_pk_str(&pk, key);
    msgpack_sbuffer_write(&sb, (const char *)value, value_size);
    int rc = s_decode(w, sb.data, sb.size, NULL, err);
    msgpack_sbuffer_destroy(&sb);
    return rc;
}

static void
test_decode_wrong_type_for_every_kind_is_syntax_error(void **state)
{
    (void)state;
    const struct {
        const char *key;
        s_bytes_t value;
    } cases[] = {
        {"id", BYTES(0xff)},                                    // negative
        {"id", BYTES(0xd0, 0xff)},                              // negative int8
        {"id", BYTES(0xa1, '1')},                               // string
        {"version", BYTES(0xcb, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0)}, // float
        {"count", BYTES(0xc0)},                                 // nil
        {"code", BYTES(0xc3)},                                  // bool
        {"queue", BYTES(0x05)},                                 // int
        {"queue", BYTES(0xc4, 0x01, 'q')},                      // bin is not str
        {"exchange", BYTES(0xc0)},                              // nil
        {"text", BYTES(0x90)},                                  // array
        {"durable", BYTES(0x01)},                               // 1 is not true
        {"no_ack", BYTES(0xa4, 't', 'r', 'u', 'e')},
        {"requeue", BYTES(0xc0)},
        {"props", BYTES(0x90)}, // array, not map
        {"props", BYTES(0xa0)},
        {"items", BYTES(0x80)}, // map, not array
        {"items", BYTES(0x01)},
    };
    for (size_t k = 0; k < COUNT_OF(cases); k++) {
        hop_wire_t w;
        char err[ERR_SIZE];
        int rc = s_decode_one(cases[k].key, cases[k].value.data, cases[k].value.size, &w, err);
        if (rc != HOP_CODE_SYNTAX_ERROR)
            fail_msg("key %s case %zu: rc %d, want 502", cases[k].key, k, rc);
        char quoted[32];
        snprintf(quoted, sizeof quoted, "'%s'", cases[k].key);
        assert_non_null(strstr(err, quoted));
    }
}

static void
test_decode_malformed_value_of_known_key_is_frame_error(void **state)
{
    (void)state;
    const struct {
        const char *key;
        s_bytes_t value;
    } cases[] = {
        {"tag", BYTES(0xc1)},         {"queue", BYTES(0xc1)},
        {"durable", BYTES(0xc1)},     {"props", BYTES(0x81, 0xa1, 'k', 0xc1)},
        {"items", BYTES(0x91, 0xc1)}, {"props", BYTES(0xdf, 0xff, 0xff, 0xff, 0xff)},
    };
    for (size_t k = 0; k < COUNT_OF(cases); k++) {
        hop_wire_t w;
        char err[ERR_SIZE];
        int rc = s_decode_one(cases[k].key, cases[k].value.data, cases[k].value.size, &w, err);
        if (rc != HOP_CODE_FRAME_ERROR)
            fail_msg("key %s case %zu: rc %d (%s), want 501", cases[k].key, k, rc, err);
    }
}

static void
test_decode_name_over_255_bytes_is_syntax_error(void **state)
{
    (void)state;
    static const char *keys[] = {"queue", "exchange", "key", "consumer"};
    char value[256];
    memset(value, 'n', sizeof value);
    hop_enc_t enc;
    hop_enc_init(&enc);
    for (size_t k = 0; k < COUNT_OF(keys); k++) {
        hop_enc_begin(&enc, HOP_CMD_QUEUE_BIND);
        hop_enc_str(&enc, keys[k], value, 256);
        hop_wire_t w;
        uint8_t *frame;
        char err[ERR_SIZE];
        assert_int_equal(s_decode_enc(&enc, &w, &frame, err), HOP_CODE_SYNTAX_ERROR);
        char quoted[32];
        snprintf(quoted, sizeof quoted, "'%s'", keys[k]);
        assert_non_null(strstr(err, quoted));
        free(frame);

        hop_enc_begin(&enc, HOP_CMD_QUEUE_BIND);
        hop_enc_str(&enc, keys[k], value, 255);
        assert_int_equal(s_decode_enc(&enc, &w, &frame, err), 0);
        free(frame);
    }
    hop_enc_fini(&enc);
}

// A valid header of exactly size bytes: {"cmd":"ack","pad":"..."}.
static void
s_header_of_size(hop_enc_t *enc, size_t size)
{
    // map32 head 5 + "cmd" 4 + "ack" 4 + "pad" 4 + str16 head 3.
    size_t pad = size - 20;
    char *value = malloc(pad);
    assert_non_null(value);
    memset(value, 'p', pad);
    hop_enc_begin(enc, HOP_CMD_ACK);
    hop_enc_str(enc, "pad", value, pad);
    free(value);
}

static void
test_decode_header_of_65536_bytes_is_accepted(void **state)
{
    (void)state;
    hop_enc_t enc;
    hop_enc_init(&enc);
    s_header_of_size(&enc, HOP_HEADER_MAX);
    size_t size;
    hop_enc_end(&enc, &size);
    assert_int_equal(size, HOP_HEADER_MAX);
    hop_wire_t w;
    uint8_t *frame;
    char err[ERR_SIZE];
    assert_int_equal(s_decode_enc(&enc, &w, &frame, err), 0);
    assert_int_equal(w.cmd, HOP_CMD_ACK);
    free(frame);
    hop_enc_fini(&enc);
}

static void
test_decode_header_over_65536_bytes_is_too_large(void **state)
{
    (void)state;
    hop_enc_t enc;
    hop_enc_init(&enc);
    s_header_of_size(&enc, HOP_HEADER_MAX + 1);
    size_t size;
    hop_enc_end(&enc, &size);
    assert_int_equal(size, HOP_HEADER_MAX + 1);
    hop_wire_t w;
    uint8_t *frame;
    char err[ERR_SIZE];
    assert_int_equal(s_decode_enc(&enc, &w, &frame, err), HOP_CODE_CONTENT_TOO_LARGE);
    assert_true(strlen(err) > 0);
    free(frame);
    hop_enc_fini(&enc);
}

static void
test_decode_skips_non_string_keys(void **state)
{
    (void)state;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 6);
    msgpack_pack_uint8(&pk, 1);
    s_pk_str(&pk, "queue"); // the value of a non-string key is not a field
    msgpack_pack_nil(&pk);
    msgpack_pack_array(&pk, 2);
    msgpack_pack_true(&pk);
    msgpack_pack_map(&pk, 0);
    s_pk_str(&pk, "cmd");
    s_pk_str(&pk, "ack");
    msgpack_pack_bin(&pk, 3);
    msgpack_pack_bin_body(&pk, "tag", 3); // bin "tag" is not the key "tag"
    msgpack_pack_uint8(&pk, 99);
    msgpack_pack_array(&pk, 1);
    s_pk_str(&pk, "x");
    msgpack_pack_map(&pk, 1);
    msgpack_pack_int(&pk, -1);
    msgpack_pack_double(&pk, 2.5);
    s_pk_str(&pk, "tag");
    msgpack_pack_uint8(&pk, 3);
    hop_wire_t w;
    char err[ERR_SIZE];
    uint8_t *frame;
    assert_int_equal(s_decode(&w, sb.data, sb.size, &frame, err), 0);
    assert_int_equal(w.cmd, HOP_CMD_ACK);
    assert_int_equal(w.has, HOP_F_TAG);
    assert_int_equal(w.tag, 3);
    assert_null(w.queue.ptr);
    free(frame);
    msgpack_sbuffer_destroy(&sb);
}

static void
test_decode_malformed_non_string_key_is_frame_error(void **state)
{
    (void)state;
    const s_bytes_t cases[] = {
        BYTES(0x81, 0x01, 0xc1),       // well-formed key, bad value
        BYTES(0x81, 0xc1, 0x01),       // bad key
        BYTES(0x81, 0x91, 0xc1, 0x01), // bad key inside an array
        BYTES(0x81, 0x01),             // key without value
    };
    for (size_t k = 0; k < COUNT_OF(cases); k++) {
        hop_wire_t w;
        char err[ERR_SIZE];
        assert_int_equal(s_decode(&w, cases[k].data, cases[k].size, NULL, err),
                         HOP_CODE_FRAME_ERROR);
    }
}

static void
test_decode_ignores_unknown_keys(void **state)
{
    (void)state;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 7);
    s_pk_str(&pk, "future");
    msgpack_pack_map(&pk, 1);
    s_pk_str(&pk, "a");
    msgpack_pack_array(&pk, 2);
    msgpack_pack_float(&pk, 1.0f);
    msgpack_pack_ext(&pk, 1, 1);
    msgpack_pack_ext_body(&pk, "z", 1);
    s_pk_str(&pk, "cmd");
    s_pk_str(&pk, "nack");
    s_pk_str(&pk, "");
    msgpack_pack_uint8(&pk, 1);
    s_pk_str(&pk, "tags"); // near misses of known keys
    msgpack_pack_str(&pk, 1);
    msgpack_pack_str_body(&pk, "x", 1);
    s_pk_str(&pk, "ta");
    msgpack_pack_nil(&pk);
    s_pk_str(&pk, "Tag");
    msgpack_pack_nil(&pk);
    s_pk_str(&pk, "tag");
    msgpack_pack_uint16(&pk, 1000);
    hop_wire_t w;
    char err[ERR_SIZE];
    assert_int_equal(s_decode(&w, sb.data, sb.size, NULL, err), 0);
    assert_int_equal(w.cmd, HOP_CMD_NACK);
    assert_int_equal(w.has, HOP_F_TAG);
    assert_int_equal(w.tag, 1000);
    msgpack_sbuffer_destroy(&sb);
}

static void
test_decode_missing_cmd_is_unknown(void **state)
{
    (void)state;
    // {"tag": 1}
    const uint8_t data[] = {0x81, 0xa3, 't', 'a', 'g', 0x01};
    hop_wire_t w;
    char err[ERR_SIZE];
    assert_int_equal(s_decode(&w, data, sizeof data, NULL, err), 0);
    assert_int_equal(w.cmd, HOP_CMD_UNKNOWN);
    assert_null(w.cmd_name.ptr);
    assert_int_equal(w.cmd_name.len, 0);
    assert_int_equal(w.tag, 1);
}

static void
test_decode_unknown_cmd_keeps_its_name(void **state)
{
    (void)state;
    // {"cmd": "frobnicate"}
    const uint8_t data[] = {0x81, 0xa3, 'c', 'm', 'd', 0xaa, 'f', 'r',
                            'o',  'b',  'n', 'i', 'c', 'a',  't', 'e'};
    hop_wire_t w;
    char err[ERR_SIZE];
    uint8_t *frame;
    assert_int_equal(s_decode(&w, data, sizeof data, &frame, err), 0);
    assert_int_equal(w.cmd, HOP_CMD_UNKNOWN);
    assert_ptr_equal(w.cmd_name.ptr, frame + 6);
    s_assert_str(w.cmd_name, "frobnicate", 10);
    free(frame);

    // The empty string and "?" are not commands either.
    const uint8_t empty[] = {0x81, 0xa3, 'c', 'm', 'd', 0xa0};
    assert_int_equal(s_decode(&w, empty, sizeof empty, NULL, err), 0);
    assert_int_equal(w.cmd, HOP_CMD_UNKNOWN);
    assert_int_equal(w.cmd_name.len, 0);
    const uint8_t question[] = {0x81, 0xa3, 'c', 'm', 'd', 0xa1, '?'};
    assert_int_equal(s_decode(&w, question, sizeof question, NULL, err), 0);
    assert_int_equal(w.cmd, HOP_CMD_UNKNOWN);
}

static void
test_decode_cmd_not_a_string_is_syntax_error(void **state)
{
    (void)state;
    const s_bytes_t cases[] = {
        BYTES(0x81, 0xa3, 'c', 'm', 'd', 0x01),
        BYTES(0x81, 0xa3, 'c', 'm', 'd', 0xc0),
        BYTES(0x81, 0xa3, 'c', 'm', 'd', 0xc4, 0x03, 'a', 'c', 'k'),
        BYTES(0x81, 0xa3, 'c', 'm', 'd', 0x91, 0xa3, 'a', 'c', 'k'),
    };
    for (size_t k = 0; k < COUNT_OF(cases); k++) {
        hop_wire_t w;
        char err[ERR_SIZE];
        assert_int_equal(s_decode(&w, cases[k].data, cases[k].size, NULL, err),
                         HOP_CODE_SYNTAX_ERROR);
        assert_non_null(strstr(err, "'cmd'"));
    }
}

static void
test_decode_requeue_defaults_to_true(void **state)
{
    (void)state;
    hop_enc_t enc;
    hop_enc_init(&enc);
    hop_enc_begin(&enc, HOP_CMD_NACK);
    hop_enc_uint(&enc, "tag", 1);
    hop_wire_t w;
    uint8_t *frame;
    char err[ERR_SIZE];
    assert_int_equal(s_decode_enc(&enc, &w, &frame, err), 0);
    assert_true(w.requeue);
    assert_false(w.has & HOP_F_REQUEUE);
    free(frame);

    // Reusing a hop_wire_t resets it: an explicit false does not stick to the next header.
    hop_enc_begin(&enc, HOP_CMD_NACK);
    hop_enc_bool(&enc, "requeue", false);
    assert_int_equal(s_decode_enc(&enc, &w, &frame, err), 0);
    assert_false(w.requeue);
    free(frame);
    hop_enc_begin(&enc, HOP_CMD_REJECT);
    assert_int_equal(s_decode_enc(&enc, &w, &frame, err), 0);
    assert_true(w.requeue);
    free(frame);
    hop_enc_fini(&enc);
}

static void
test_decode_absent_fields_are_empty(void **state)
{
    (void)state;
    hop_enc_t enc;
    hop_enc_init(&enc);
    hop_enc_begin(&enc, HOP_CMD_HEARTBEAT);
    hop_wire_t w;
    memset(&w, 0xa5, sizeof w); // stale contents must not leak through
    uint8_t *frame;
    char err[ERR_SIZE];
    assert_int_equal(s_decode_enc(&enc, &w, &frame, err), 0);
    assert_int_equal(w.has, 0);
    assert_int_equal(w.id, 0);
    assert_int_equal(w.tag, 0);
    assert_null(w.queue.ptr);
    assert_null(w.text.ptr);
    assert_null(w.props.ptr);
    assert_null(w.items.ptr);
    assert_false(w.durable);
    assert_false(w.multiple);
    free(frame);
    hop_enc_fini(&enc);
}

static void
test_decode_accepts_any_integer_width(void **state)
{
    (void)state;
    const s_bytes_t values[] = {BYTES(0x07),
                                BYTES(0xcc, 0x07),
                                BYTES(0xcd, 0, 7),
                                BYTES(0xce, 0, 0, 0, 7),
                                BYTES(0xcf, 0, 0, 0, 0, 0, 0, 0, 7),
                                BYTES(0xd0, 7),
                                BYTES(0xd1, 0, 7),
                                BYTES(0xd2, 0, 0, 0, 7),
                                BYTES(0xd3, 0, 0, 0, 0, 0, 0, 0, 7)};
    for (size_t k = 0; k < COUNT_OF(values); k++) {
        hop_wire_t w;
        char err[ERR_SIZE];
        assert_int_equal(s_decode_one("tag", values[k].data, values[k].size, &w, err), 0);
        assert_int_equal(w.tag, 7);
    }
}

static void
test_decode_err_buffer_is_optional_and_bounded(void **state)
{
    (void)state;
    const uint8_t data[] = {0x82, 0xa3, 'c', 'm', 'd', 0xa3, 'a', 'c',
                            'k',  0xa3, 't', 'a', 'g', 0xa1, 'x'};
    hop_wire_t w;
    assert_int_equal(hop_wire_decode(&w, data, sizeof data, NULL, 0), HOP_CODE_SYNTAX_ERROR);
    char err[8];
    memset(err, 'z', sizeof err);
    assert_int_equal(hop_wire_decode(&w, data, sizeof data, err, sizeof err),
                     HOP_CODE_SYNTAX_ERROR);
    assert_true(memchr(err, '\0', sizeof err) != NULL);
    char one = 'z';
    assert_int_equal(hop_wire_decode(&w, data, sizeof data, &one, 1), HOP_CODE_SYNTAX_ERROR);
    assert_int_equal(one, '\0');
}

// ---------------------------------------------------------------------------------------
// Names

static void
test_cmd_parse_and_name_round_trip(void **state)
{
    (void)state;
    for (int c = HOP_CMD_UNKNOWN + 1; c < HOP_CMD_COUNT_; c++) {
        const char *name = hop_cmd_name((hop_cmd_t)c);
        assert_non_null(name);
        assert_string_not_equal(name, "?");
        assert_int_equal(hop_cmd_parse(name, strlen(name)), c);
        for (int d = HOP_CMD_UNKNOWN + 1; d < c; d++)
            assert_string_not_equal(name, hop_cmd_name((hop_cmd_t)d));
    }
    assert_string_equal(hop_cmd_name(HOP_CMD_PUBLISH), "publish");
    assert_string_equal(hop_cmd_name(HOP_CMD_QUEUE_DECLARE), "queue.declare");
    assert_string_equal(hop_cmd_name(HOP_CMD_HELLO_OK), "hello-ok");
}

static void
test_cmd_name_of_unknown_is_question_mark(void **state)
{
    (void)state;
    assert_string_equal(hop_cmd_name(HOP_CMD_UNKNOWN), "?");
    assert_string_equal(hop_cmd_name(HOP_CMD_COUNT_), "?");
    assert_string_equal(hop_cmd_name((hop_cmd_t)1000), "?");
}

static void
test_cmd_parse_rejects_near_misses(void **state)
{
    (void)state;
    assert_int_equal(hop_cmd_parse("", 0), HOP_CMD_UNKNOWN);
    assert_int_equal(hop_cmd_parse("?", 1), HOP_CMD_UNKNOWN);
    assert_int_equal(hop_cmd_parse("publis", 6), HOP_CMD_UNKNOWN);
    assert_int_equal(hop_cmd_parse("publishx", 8), HOP_CMD_UNKNOWN);
    assert_int_equal(hop_cmd_parse("PUBLISH", 7), HOP_CMD_UNKNOWN);
    assert_int_equal(hop_cmd_parse("queue", 5), HOP_CMD_UNKNOWN);
    // The length bounds the name: no NUL terminator is needed.
    assert_int_equal(hop_cmd_parse("publishx", 7), HOP_CMD_PUBLISH);
    assert_int_equal(hop_cmd_parse("ack-ok", 3), HOP_CMD_ACK);
}

static void
test_code_name_for_every_code(void **state)
{
    (void)state;
    const struct {
        int code;
        const char *name;
    } codes[] = {
        {HOP_CODE_CONTENT_TOO_LARGE, "content-too-large"},
        {HOP_CODE_ACCESS_REFUSED, "access-refused"},
        {HOP_CODE_NOT_FOUND, "not-found"},
        {HOP_CODE_RESOURCE_LOCKED, "resource-locked"},
        {HOP_CODE_PRECONDITION_FAILED, "precondition-failed"},
        {HOP_CODE_FRAME_ERROR, "frame-error"},
        {HOP_CODE_SYNTAX_ERROR, "syntax-error"},
        {HOP_CODE_COMMAND_INVALID, "command-invalid"},
        {HOP_CODE_UNEXPECTED_FRAME, "unexpected-frame"},
        {HOP_CODE_NOT_IMPLEMENTED, "not-implemented"},
        {HOP_CODE_INTERNAL_ERROR, "internal-error"},
    };
    for (size_t k = 0; k < COUNT_OF(codes); k++)
        assert_string_equal(hop_code_name(codes[k].code), codes[k].name);
    // The table in PROTOCOL.md section 7 lists these numbers.
    assert_int_equal(HOP_CODE_CONTENT_TOO_LARGE, 311);
    assert_int_equal(HOP_CODE_FRAME_ERROR, 501);
    assert_int_equal(HOP_CODE_SYNTAX_ERROR, 502);
    assert_int_equal(HOP_CODE_INTERNAL_ERROR, 541);
}

static void
test_code_name_of_unknown_code_is_error(void **state)
{
    (void)state;
    const int unknown[] = {0, -1, 200, 310, 500, 504, 999, HOP_EINVAL};
    for (size_t k = 0; k < COUNT_OF(unknown); k++)
        assert_string_equal(hop_code_name(unknown[k]), "error");
}

// ---------------------------------------------------------------------------------------
// Fuzz: random and mutated frames must decode or fail cleanly, never crash or overread.

#define FUZZ_ROUNDS 100000
#define FUZZ_MAX    512

static uint64_t
s_rand(uint64_t *seed)
{
    // xorshift64*
    uint64_t x = *seed;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *seed = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static void
s_mutate(uint8_t *buf, size_t *size, uint64_t *seed)
{
    static const uint8_t interesting[] = {0x00, 0x01, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0,
                                          0xbf, 0xc0, 0xc1, 0xc2, 0xc3, 0xc4, 0xc6, 0xc7,
                                          0xc9, 0xca, 0xcb, 0xcf, 0xd0, 0xd3, 0xd4, 0xd8,
                                          0xd9, 0xdb, 0xdc, 0xdd, 0xde, 0xdf, 0xe0, 0xff};
    int edits = 1 + (int)(s_rand(seed) % 6);
    for (int e = 0; e < edits; e++) {
        size_t n = *size;
        size_t at = n ? (size_t)(s_rand(seed) % n) : 0;
        switch (s_rand(seed) % 6) {
        case 0: // flip a bit
            if (n)
                buf[at] ^= (uint8_t)(1u << (s_rand(seed) % 8));
            break;
        case 1: // an interesting byte
            if (n)
                buf[at] = interesting[s_rand(seed) % sizeof interesting];
            break;
        case 2: // a random byte
            if (n)
                buf[at] = (uint8_t)s_rand(seed);
            break;
        case 3: // truncate
            *size = at;
            break;
        case 4: // insert a byte
            if (n < FUZZ_MAX) {
                memmove(buf + at + 1, buf + at, n - at);
                buf[at] = interesting[s_rand(seed) % sizeof interesting];
                *size = n + 1;
            }
            break;
        default: // delete a byte
            if (n) {
                memmove(buf + at, buf + at + 1, n - at - 1);
                *size = n - 1;
            }
            break;
        }
    }
}

static void
s_check_decoded(const hop_wire_t *w, const uint8_t *frame, size_t size)
{
    const hop_str_t strs[] = {w->cmd_name, w->name, w->server,   w->exchange, w->type,
                              w->queue,    w->key,  w->consumer, w->what,     w->text};
    for (size_t k = 0; k < COUNT_OF(strs); k++)
        if (strs[k].ptr)
            s_assert_inside(strs[k].ptr, strs[k].len, frame, size);
    if (w->props.ptr) {
        s_assert_inside(w->props.ptr, w->props.len, frame, size);
        hop_mp_t mp;
        hop_mp_init(&mp, w->props.ptr, w->props.len);
        uint32_t n;
        assert_int_equal(hop_mp_map(&mp, &n), 0);
    }
    if (w->items.ptr) {
        s_assert_inside(w->items.ptr, w->items.len, frame, size);
        hop_mp_t mp;
        hop_mp_init(&mp, w->items.ptr, w->items.len);
        uint32_t n;
        assert_int_equal(hop_mp_array(&mp, &n), 0);
    }
}

static void
test_fuzz_decode_never_crashes(void **state)
{
    (void)state;
    uint64_t seed = 0x9e3779b97f4a7c15ULL;
    uint8_t buf[FUZZ_MAX];

    // Seeds: a few valid headers from the encoder.
    enum { SEEDS = 4 };
    uint8_t *seeds[SEEDS];
    size_t seed_sizes[SEEDS];
    hop_enc_t enc;
    hop_enc_init(&enc);
    for (int s = 0; s < SEEDS; s++) {
        switch (s) {
        case 0:
            s_full_header(&enc);
            break;
        case 1:
            hop_enc_begin(&enc, HOP_CMD_HELLO);
            hop_enc_uint(&enc, "id", 1);
            hop_enc_uint(&enc, "version", 1);
            hop_enc_cstr(&enc, "name", "fuzz");
            break;
        case 2:
            hop_enc_begin(&enc, HOP_CMD_QUEUE_DECLARE);
            hop_enc_cstr(&enc, "queue", "jobs");
            hop_enc_bool(&enc, "durable", true);
            hop_enc_bool(&enc, "exclusive", false);
            break;
        default:
            hop_enc_begin(&enc, HOP_CMD_LIST_OK);
            hop_enc_array_begin(&enc, "items", 1);
            hop_enc_map_begin(&enc, NULL);
            hop_enc_uint(&enc, "messages", 70000);
            hop_enc_map_end(&enc);
            break;
        }
        const void *data = hop_enc_end(&enc, &seed_sizes[s]);
        assert_true(seed_sizes[s] <= FUZZ_MAX);
        seeds[s] = s_dup(data, seed_sizes[s]);
    }
    hop_enc_fini(&enc);

    int decoded = 0;
    for (int round = 0; round < FUZZ_ROUNDS; round++) {
        size_t size;
        uint64_t pick = s_rand(&seed) % 4;
        if (pick == 0) {
            // Random bytes, usually behind a map header so that the decoder goes deeper.
            size = (size_t)(s_rand(&seed) % 64);
            for (size_t i = 0; i < size; i++)
                buf[i] = (uint8_t)s_rand(&seed);
            if (size && s_rand(&seed) % 2)
                buf[0] = (uint8_t)(0x80 | (s_rand(&seed) % 16));
        } else {
            int s = (int)(s_rand(&seed) % SEEDS);
            size = seed_sizes[s];
            memcpy(buf, seeds[s], size);
            s_mutate(buf, &size, &seed);
        }
        uint8_t *frame = s_dup(buf, size);
        hop_wire_t w;
        char err[64];
        int rc = hop_wire_decode(&w, frame, size, err, sizeof err);
        assert_true(memchr(err, '\0', sizeof err) != NULL);
        if (rc == 0) {
            decoded++;
            s_check_decoded(&w, frame, size);
        } else if (rc != HOP_CODE_FRAME_ERROR && rc != HOP_CODE_SYNTAX_ERROR) {
            fail_msg("round %d: unexpected rc %d", round, rc);
        }
        // The cursor on the same bytes: skip either fails in place or stays inside.
        hop_mp_t mp;
        hop_mp_init(&mp, frame, size);
        while (!hop_mp_at_end(&mp)) {
            const uint8_t *before = mp.p;
            if (hop_mp_skip(&mp)) {
                assert_ptr_equal(mp.p, before);
                break;
            }
            assert_true(mp.p > before && mp.p <= frame + size);
        }
        free(frame);
    }
    // Mutations leave enough frames intact for the success path to be exercised too.
    assert_true(decoded > FUZZ_ROUNDS / 100);
    for (int s = 0; s < SEEDS; s++)
        free(seeds[s]);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        // encoder -> decoder round trips
        cmocka_unit_test(test_roundtrip_uint_boundaries),
        cmocka_unit_test(test_roundtrip_every_uint_field),
        cmocka_unit_test(test_roundtrip_string_lengths),
        cmocka_unit_test(test_roundtrip_every_string_field),
        cmocka_unit_test(test_roundtrip_string_with_nul_bytes),
        cmocka_unit_test(test_enc_cstr_null_is_empty_string),
        cmocka_unit_test(test_roundtrip_text_longer_than_255),
        cmocka_unit_test(test_roundtrip_bools),
        cmocka_unit_test(test_roundtrip_props_raw_byte_identical),
        cmocka_unit_test(test_roundtrip_items_array_of_maps),
        cmocka_unit_test(test_roundtrip_empty_items_array),
        cmocka_unit_test(test_roundtrip_every_command),
        // encoder structure
        cmocka_unit_test(test_enc_patches_map_sizes_with_nested_maps),
        cmocka_unit_test(test_enc_end_closes_open_maps),
        cmocka_unit_test(test_enc_many_entries_in_one_map),
        cmocka_unit_test(test_enc_begin_reuses_encoder),
        cmocka_unit_test(test_enc_packer_and_count),
        cmocka_unit_test(test_enc_int_writes_signed_values),
        // cursor
        cmocka_unit_test(test_mp_empty_cursor_reads_nothing),
        cmocka_unit_test(test_mp_positive_fixint),
        cmocka_unit_test(test_mp_negative_fixint),
        cmocka_unit_test(test_mp_uint8_to_uint64),
        cmocka_unit_test(test_mp_uint_accepts_non_negative_signed_encodings),
        cmocka_unit_test(test_mp_uint_rejects_negative_signed_encodings),
        cmocka_unit_test(test_mp_int8_to_int64),
        cmocka_unit_test(test_mp_int_rejects_uint64_over_int64_max),
        cmocka_unit_test(test_mp_integers_reject_truncated_payload),
        cmocka_unit_test(test_mp_integers_reject_other_types),
        cmocka_unit_test(test_mp_str_families),
        cmocka_unit_test(test_mp_str_rejects_bin_and_truncation),
        cmocka_unit_test(test_mp_bool_and_nil),
        cmocka_unit_test(test_mp_array_and_map_families),
        cmocka_unit_test(test_mp_container_headers_reject_truncation),
        cmocka_unit_test(test_mp_peek_every_first_byte),
        cmocka_unit_test(test_mp_skip_every_family),
        cmocka_unit_test(test_mp_skip_rejects_every_truncated_family),
        cmocka_unit_test(test_mp_skip_rejects_0xc1),
        cmocka_unit_test(test_mp_skip_nested_values),
        cmocka_unit_test(test_mp_skip_accepts_32_nested_arrays),
        cmocka_unit_test(test_mp_skip_rejects_33_nested_arrays_around_a_value),
        cmocka_unit_test(test_mp_skip_rejects_33_nested_arrays),
        cmocka_unit_test(test_mp_skip_rejects_deep_nesting_without_overflow),
        cmocka_unit_test(test_mp_skip_rejects_lying_counts),
        // decoding
        cmocka_unit_test(test_decode_full_header),
        cmocka_unit_test(test_decode_truncated_header_fails_at_every_offset),
        cmocka_unit_test(test_decode_truncated_header_is_frame_error_at_every_offset),
        cmocka_unit_test(test_decode_truncated_cmd_value_is_frame_error),
        cmocka_unit_test(test_decode_empty_frame_is_frame_error),
        cmocka_unit_test(test_decode_not_a_map_is_frame_error),
        cmocka_unit_test(test_decode_trailing_bytes_is_frame_error),
        cmocka_unit_test(test_decode_empty_map_has_unknown_cmd),
        cmocka_unit_test(test_decode_lying_map_count_is_frame_error),
        cmocka_unit_test(test_decode_wrong_type_names_the_key),
        cmocka_unit_test(test_decode_syntax_error_still_decodes_the_id),
        cmocka_unit_test(test_decode_wrong_type_for_every_kind_is_syntax_error),
        cmocka_unit_test(test_decode_malformed_value_of_known_key_is_frame_error),
        cmocka_unit_test(test_decode_name_over_255_bytes_is_syntax_error),
        cmocka_unit_test(test_decode_header_of_65536_bytes_is_accepted),
        cmocka_unit_test(test_decode_header_over_65536_bytes_is_too_large),
        cmocka_unit_test(test_decode_skips_non_string_keys),
        cmocka_unit_test(test_decode_malformed_non_string_key_is_frame_error),
        cmocka_unit_test(test_decode_ignores_unknown_keys),
        cmocka_unit_test(test_decode_missing_cmd_is_unknown),
        cmocka_unit_test(test_decode_unknown_cmd_keeps_its_name),
        cmocka_unit_test(test_decode_cmd_not_a_string_is_syntax_error),
        cmocka_unit_test(test_decode_requeue_defaults_to_true),
        cmocka_unit_test(test_decode_absent_fields_are_empty),
        cmocka_unit_test(test_decode_accepts_any_integer_width),
        cmocka_unit_test(test_decode_err_buffer_is_optional_and_bounded),
        // names
        cmocka_unit_test(test_cmd_parse_and_name_round_trip),
        cmocka_unit_test(test_cmd_name_of_unknown_is_question_mark),
        cmocka_unit_test(test_cmd_parse_rejects_near_misses),
        cmocka_unit_test(test_code_name_for_every_code),
        cmocka_unit_test(test_code_name_of_unknown_code_is_error),
        // fuzz
        cmocka_unit_test(test_fuzz_decode_never_crashes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
