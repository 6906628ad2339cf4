// tests/unit/test_codec_enc.c - the encoder's own msgpack writers (sdk/codec.c) against
// msgpack-c: every string and integer size boundary gives the same bytes as msgpack_pack_*,
// buffers grow, and batch records are laid out as PROTOCOL.md 2.1 says.
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "codec.h"

#include <msgpack.h>
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

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_uint_forms_match_msgpack),
        cmocka_unit_test(test_str_forms_match_msgpack),
        cmocka_unit_test(test_raw_and_nested_maps_match_msgpack),
        cmocka_unit_test(test_batch_append_lays_out_records),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
