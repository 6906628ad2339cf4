// tests/unit/test_codec_enc.c - the encoder's own msgpack writers (sdk/codec.c) against
// msgpack-c: every string and integer size boundary gives the same bytes as msgpack_pack_*,
// buffers grow, and batch records are laid out as PROTOCOL.md 2.1 says. And every header field
// the decoder knows is found by its name (the decoder's hashed field table), no other.
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "codec.h"

#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// What msgpack-c writes for the map hop_enc writes: map32 header with n entries, the cmd.
static void
s_reference_begin(msgpack_sbuffer *ref, msgpack_packer *pk, uint32_t n)
{
    msgpack_sbuffer_init(ref);
    msgpack_packer_init(pk, ref, msgpack_sbuffer_write);
    static const char head[1] = {(char)0xdf};
    msgpack_sbuffer_write(ref, head, 1);
    uint8_t count[4] = {(uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n};
    msgpack_sbuffer_write(ref, (const char *)count, 4);
    msgpack_pack_str_with_body(pk, "cmd", 3);
    msgpack_pack_str_with_body(pk, "status", 6);
}

static void
s_assert_same(hop_enc_t *enc, msgpack_sbuffer *ref)
{
    size_t size;
    const void *data = hop_enc_end(enc, &size);
    assert_int_equal(size, ref->size);
    assert_memory_equal(data, ref->data, size);
    msgpack_sbuffer_destroy(ref);
}

static void
test_uint_forms_match_msgpack(void **state)
{
    (void)state;
    static const uint64_t values[] = {0,     1,     127,   128,        255,        256,
                                      65535, 65536, 70000, UINT32_MAX, 4294967296, UINT64_MAX};
    size_t n = sizeof values / sizeof values[0];
    hop_enc_t enc;
    hop_enc_init(&enc);
    hop_enc_begin(&enc, HOP_CMD_STATUS);
    msgpack_sbuffer ref;
    msgpack_packer pk;
    s_reference_begin(&ref, &pk, (uint32_t)(1 + n));
    for (size_t i = 0; i < n; i++) {
        hop_enc_uint(&enc, "v", values[i]);
        msgpack_pack_str_with_body(&pk, "v", 1);
        msgpack_pack_uint64(&pk, values[i]);
    }
    s_assert_same(&enc, &ref);
    hop_enc_fini(&enc);
}

static void
test_str_forms_match_msgpack(void **state)
{
    (void)state;
    static const size_t lens[] = {0, 1, 31, 32, 255, 256, 65535, 65536, 100000};
    size_t n = sizeof lens / sizeof lens[0];
    char *text = malloc(100000);
    assert_non_null(text);
    for (size_t i = 0; i < 100000; i++)
        text[i] = (char)('a' + i % 26);
    hop_enc_t enc;
    hop_enc_init(&enc);
    hop_enc_begin(&enc, HOP_CMD_STATUS);
    msgpack_sbuffer ref;
    msgpack_packer pk;
    s_reference_begin(&ref, &pk, (uint32_t)(1 + 2 * n));
    for (size_t i = 0; i < n; i++) {
        // As a value, and as a key of that length (keys are strings too).
        hop_enc_str(&enc, "s", text, lens[i]);
        msgpack_pack_str_with_body(&pk, "s", 1);
        msgpack_pack_str_with_body(&pk, text, lens[i]);
        char *key = strndup(text, lens[i]);
        hop_enc_bool(&enc, key, i % 2 == 0);
        msgpack_pack_str_with_body(&pk, key, lens[i]);
        if (i % 2 == 0)
            msgpack_pack_true(&pk);
        else
            msgpack_pack_false(&pk);
        free(key);
    }
    s_assert_same(&enc, &ref);
    hop_enc_fini(&enc);
    free(text);
}

static void
test_raw_and_nested_maps_match_msgpack(void **state)
{
    (void)state;
    hop_enc_t enc;
    hop_enc_init(&enc);
    hop_enc_begin(&enc, HOP_CMD_STATUS);
    hop_enc_raw(&enc, "props", "\x81\xa1k\xa1v", 5);
    hop_enc_raw(&enc, "empty", NULL, 0);
    hop_enc_map_begin(&enc, "m");
    hop_enc_cstr(&enc, "x", NULL);
    hop_enc_map_end(&enc);
    msgpack_sbuffer ref;
    msgpack_packer pk;
    s_reference_begin(&ref, &pk, 4);
    msgpack_pack_str_with_body(&pk, "props", 5);
    msgpack_sbuffer_write(&ref, "\x81\xa1k\xa1v", 5);
    msgpack_pack_str_with_body(&pk, "empty", 5);
    msgpack_pack_str_with_body(&pk, "m", 1);
    static const char m32[5] = {(char)0xdf, 0, 0, 0, 1};
    msgpack_sbuffer_write(&ref, m32, sizeof m32);
    msgpack_pack_str_with_body(&pk, "x", 1);
    msgpack_pack_str_with_body(&pk, "", 0);
    s_assert_same(&enc, &ref);
    hop_enc_fini(&enc);
}

static void
test_batch_append_lays_out_records(void **state)
{
    (void)state;
    // A buffer from the pool, then one that starts empty and must grow from nothing.
    msgpack_sbuffer pooled = {0};
    hop_batch_buf_get(&pooled);
    msgpack_sbuffer grown;
    msgpack_sbuffer_init(&grown);
    msgpack_sbuffer *bufs[2] = {&pooled, &grown};
    static char body[HOP_BATCH_BUF_SIZE]; // the last record grows the pooled buffer too
    memset(body, 'b', sizeof body);
    for (int b = 0; b < 2; b++) {
        hop_batch_append(bufs[b], "\x80", 1, "hello", 5);
        hop_batch_append(bufs[b], "\x81\xa1k\xc3", 4, NULL, 0);
        hop_batch_append(bufs[b], "\x80", 1, body, sizeof body);
        hop_batch_t at;
        hop_batch_init(&at, bufs[b]->data, bufs[b]->size);
        const uint8_t *head, *data;
        uint32_t head_len, data_len;
        assert_int_equal(hop_batch_next(&at, &head, &head_len, &data, &data_len), 1);
        assert_int_equal(head_len, 1);
        assert_int_equal(data_len, 5);
        assert_memory_equal(data, "hello", 5);
        assert_int_equal(hop_batch_next(&at, &head, &head_len, &data, &data_len), 1);
        assert_int_equal(head_len, 4);
        assert_memory_equal(head, "\x81\xa1k\xc3", 4);
        assert_null(data);
        assert_int_equal(data_len, 0);
        assert_int_equal(hop_batch_next(&at, &head, &head_len, &data, &data_len), 1);
        assert_int_equal(data_len, sizeof body);
        assert_memory_equal(data, body, sizeof body);
        assert_int_equal(hop_batch_next(&at, &head, &head_len, &data, &data_len), 0);
        assert_int_equal(bufs[b]->size, (4 + 1 + 4 + 5) + (4 + 4 + 4) + (4 + 1 + 4 + sizeof body));
    }
    void *hint;
    void *data = hop_batch_buf_take(&pooled, &hint);
    assert_null(hint); // grown past the pool's size: freed, not pooled
    hop_batch_buf_free(data, hint);
    msgpack_sbuffer_destroy(&grown);
}

// Every field of hop_wire_t by its wire name (PROTOCOL.md 3), as codec.c's table lists them.
typedef enum { K_UINT, K_STR, K_BOOL, K_MAP, K_ARRAY } s_kind_t;
typedef struct {
    const char *key;
    uint64_t bit;
    s_kind_t kind;
    size_t offset;
} s_field_t;
#define S_FIELD(k, b, kind, member)                                                                \
    {                                                                                              \
        k, b, kind, offsetof(hop_wire_t, member)                                                   \
    }
static const s_field_t s_fields[] = {
    S_FIELD("id", HOP_F_ID, K_UINT, id),
    S_FIELD("exchange", HOP_F_EXCHANGE, K_STR, exchange),
    S_FIELD("key", HOP_F_KEY, K_STR, key),
    S_FIELD("props", HOP_F_PROPS, K_MAP, props),
    S_FIELD("tag", HOP_F_TAG, K_UINT, tag),
    S_FIELD("multiple", HOP_F_MULTIPLE, K_BOOL, multiple),
    S_FIELD("queue", HOP_F_QUEUE, K_STR, queue),
    S_FIELD("consumer", HOP_F_CONSUMER, K_STR, consumer),
    S_FIELD("redelivered", HOP_F_REDELIVERED, K_BOOL, redelivered),
    S_FIELD("count", HOP_F_COUNT, K_UINT, count),
    S_FIELD("requeue", HOP_F_REQUEUE, K_BOOL, requeue),
    S_FIELD("version", HOP_F_VERSION, K_UINT, version),
    S_FIELD("heartbeat", HOP_F_HEARTBEAT, K_UINT, heartbeat),
    S_FIELD("timeout", HOP_F_TIMEOUT, K_UINT, timeout),
    S_FIELD("name", HOP_F_NAME, K_STR, name),
    S_FIELD("server", HOP_F_SERVER, K_STR, server),
    S_FIELD("max_message", HOP_F_MAX_MESSAGE, K_UINT, max_message),
    S_FIELD("type", HOP_F_TYPE, K_STR, type),
    S_FIELD("durable", HOP_F_DURABLE, K_BOOL, durable),
    S_FIELD("exclusive", HOP_F_EXCLUSIVE, K_BOOL, exclusive),
    S_FIELD("auto_delete", HOP_F_AUTO_DELETE, K_BOOL, auto_delete),
    S_FIELD("passive", HOP_F_PASSIVE, K_BOOL, passive),
    S_FIELD("if_unused", HOP_F_IF_UNUSED, K_BOOL, if_unused),
    S_FIELD("if_empty", HOP_F_IF_EMPTY, K_BOOL, if_empty),
    S_FIELD("prefetch", HOP_F_PREFETCH, K_UINT, prefetch),
    S_FIELD("no_ack", HOP_F_NO_ACK, K_BOOL, no_ack),
    S_FIELD("messages", HOP_F_MESSAGES, K_UINT, messages),
    S_FIELD("consumers", HOP_F_CONSUMERS, K_UINT, consumers),
    S_FIELD("what", HOP_F_WHAT, K_STR, what),
    S_FIELD("items", HOP_F_ITEMS, K_ARRAY, items),
    S_FIELD("code", HOP_F_CODE, K_UINT, code),
    S_FIELD("text", HOP_F_TEXT, K_STR, text),
    S_FIELD("batch", HOP_F_BATCH, K_BOOL, batch),
    S_FIELD("seq", HOP_F_SEQ, K_UINT, seq),
    S_FIELD("mandatory", HOP_F_MANDATORY, K_BOOL, mandatory),
    S_FIELD("persistent", HOP_F_PERSISTENT, K_BOOL, persistent),
    S_FIELD("expiration", HOP_F_EXPIRATION, K_UINT, expiration),
    S_FIELD("priority", HOP_F_PRIORITY, K_UINT, priority),
    S_FIELD("nack", HOP_F_NACK, K_BOOL, nack),
    S_FIELD("delay", HOP_F_DELAY, K_UINT, delay),
    S_FIELD("ack_timeout", HOP_F_ACK_TIMEOUT, K_UINT, ack_timeout),
    S_FIELD("death", HOP_F_DEATH, K_ARRAY, death),
    S_FIELD("max_length", HOP_F_MAX_LENGTH, K_UINT, max_length),
    S_FIELD("max_length_bytes", HOP_F_MAX_LENGTH_BYTES, K_UINT, max_length_bytes),
    S_FIELD("overflow", HOP_F_OVERFLOW, K_STR, overflow),
    S_FIELD("message_ttl", HOP_F_MESSAGE_TTL, K_UINT, message_ttl),
    S_FIELD("expires", HOP_F_EXPIRES, K_UINT, expires),
    S_FIELD("max_deliveries", HOP_F_MAX_DELIVERIES, K_UINT, max_deliveries),
    S_FIELD("dead_letter_exchange", HOP_F_DLX, K_STR, dead_letter_exchange),
    S_FIELD("dead_letter_key", HOP_F_DLK, K_STR, dead_letter_key),
    S_FIELD("retry_delay", HOP_F_RETRY_DELAY, K_UINT, retry_delay),
    S_FIELD("retry_delay_max", HOP_F_RETRY_DELAY_MAX, K_UINT, retry_delay_max),
    S_FIELD("max_priority", HOP_F_MAX_PRIORITY, K_UINT, max_priority),
    S_FIELD("flow", HOP_F_FLOW, K_BOOL, flow),
    S_FIELD("active", HOP_F_ACTIVE, K_BOOL, active),
    S_FIELD("entered", HOP_F_ENTERED, K_UINT, entered),
};

static bool
s_known(const char *key)
{
    if (strcmp(key, "cmd") == 0)
        return true;
    for (size_t i = 0; i < sizeof s_fields / sizeof s_fields[0]; i++)
        if (strcmp(s_fields[i].key, key) == 0)
            return true;
    return false;
}

static void
test_every_field_is_found_by_its_name(void **state)
{
    (void)state;
    hop_enc_t enc;
    hop_enc_init(&enc);
    for (size_t i = 0; i < sizeof s_fields / sizeof s_fields[0]; i++) {
        const s_field_t *f = &s_fields[i];
        hop_enc_begin(&enc, HOP_CMD_STATUS);
        // Near misses first: a prefix, a longer name, another last letter. All unknown.
        size_t len = strlen(f->key);
        char near[3][40];
        snprintf(near[0], sizeof near[0], "%.*s", (int)len - 1, f->key);
        snprintf(near[1], sizeof near[1], "%sx", f->key);
        snprintf(near[2], sizeof near[2], "%.*s_", (int)len - 1, f->key);
        for (int n = 0; n < 3; n++)
            if (near[n][0] && !s_known(near[n]))
                hop_enc_uint(&enc, near[n], 1);
        switch (f->kind) {
        case K_UINT:
            hop_enc_uint(&enc, f->key, 1000 + i);
            break;
        case K_STR:
            hop_enc_cstr(&enc, f->key, f->key);
            break;
        case K_BOOL:
            hop_enc_bool(&enc, f->key, !(f->bit == HOP_F_REQUEUE)); // requeue defaults to true
            break;
        case K_MAP:
            hop_enc_raw(&enc, f->key, "\x81\xa1k\x01", 4);
            break;
        case K_ARRAY:
            hop_enc_raw(&enc, f->key, "\x91\x01", 2);
            break;
        }
        size_t size;
        const void *data = hop_enc_end(&enc, &size);
        hop_wire_t w;
        char err[128];
        assert_int_equal(hop_wire_decode(&w, data, size, err, sizeof err), 0);
        assert_int_equal(w.cmd, HOP_CMD_STATUS);
        assert_true(w.has == f->bit); // this field and no other
        const char *at = (const char *)&w + f->offset;
        switch (f->kind) {
        case K_UINT: {
            uint64_t v;
            memcpy(&v, at, sizeof v);
            assert_int_equal(v, 1000 + i);
            break;
        }
        case K_STR: {
            hop_str_t v;
            memcpy(&v, at, sizeof v);
            assert_int_equal(v.len, len);
            assert_memory_equal(v.ptr, f->key, len);
            break;
        }
        case K_BOOL:
            assert_int_equal(*(const bool *)at, !(f->bit == HOP_F_REQUEUE));
            break;
        case K_MAP:
        case K_ARRAY: {
            hop_span_t v;
            memcpy(&v, at, sizeof v);
            assert_int_equal(v.len, f->kind == K_MAP ? 4 : 2);
            break;
        }
        }
    }
    hop_enc_fini(&enc);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_uint_forms_match_msgpack),
        cmocka_unit_test(test_str_forms_match_msgpack),
        cmocka_unit_test(test_raw_and_nested_maps_match_msgpack),
        cmocka_unit_test(test_batch_append_lays_out_records),
        cmocka_unit_test(test_every_field_is_found_by_its_name),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
