// tests/unit/test_cli_json.c - msgpack <-> JSON conversion of the hopper CLI (cli/json.c).
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "json.h"

// Decodes size bytes and returns the compact JSON text (caller frees), or NULL.
static char *
s_decode_text(const void *data, size_t size)
{
    json_t *json = hop_json_from_msgpack(data, size);
    if (!json)
        return NULL;
    char *text = json_dumps(json, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(17));
    json_decref(json);
    return text;
}

static void
s_assert_decodes(const void *data, size_t size, const char *expected)
{
    char *text = s_decode_text(data, size);
    assert_non_null(text);
    assert_string_equal(text, expected);
    free(text);
}

#define S_ASSERT_DECODES(bytes, expected) s_assert_decodes(bytes, sizeof(bytes) - 1, expected)

static void
test_decodes_scalars(void **state)
{
    (void)state;
    S_ASSERT_DECODES("\xc0", "null");
    S_ASSERT_DECODES("\xc2", "false");
    S_ASSERT_DECODES("\xc3", "true");
    S_ASSERT_DECODES("\x05", "5");
    S_ASSERT_DECODES("\x7f", "127");
    S_ASSERT_DECODES("\xff", "-1");
    S_ASSERT_DECODES("\xe0", "-32");
}

static void
test_decodes_integers_of_every_width(void **state)
{
    (void)state;
    S_ASSERT_DECODES("\xcc\xff", "255");
    S_ASSERT_DECODES("\xcd\x01\x00", "256");
    S_ASSERT_DECODES("\xce\x00\x01\x00\x00", "65536");
    S_ASSERT_DECODES("\xcf\x00\x00\x00\x01\x00\x00\x00\x00", "4294967296");
    S_ASSERT_DECODES("\xd0\x80", "-128");
    S_ASSERT_DECODES("\xd1\xff\x7f", "-129");
    S_ASSERT_DECODES("\xd2\x80\x00\x00\x00", "-2147483648");
    S_ASSERT_DECODES("\xd3\x80\x00\x00\x00\x00\x00\x00\x00", "-9223372036854775808");
    S_ASSERT_DECODES("\xcf\x7f\xff\xff\xff\xff\xff\xff\xff", "9223372036854775807");
}

static void
test_decodes_uint_above_int64_as_decimal_string(void **state)
{
    (void)state;
    S_ASSERT_DECODES("\xcf\xff\xff\xff\xff\xff\xff\xff\xff", "\"18446744073709551615\"");
    S_ASSERT_DECODES("\xcf\x80\x00\x00\x00\x00\x00\x00\x00", "\"9223372036854775808\"");
}

static void
test_decodes_floats(void **state)
{
    (void)state;
    S_ASSERT_DECODES("\xca\x3f\xc0\x00\x00", "1.5"); // float32
    S_ASSERT_DECODES("\xcb\x40\x09\x21\xfb\x54\x44\x2d\x18", "3.1415926535897931");
    S_ASSERT_DECODES("\xcb\x7f\xf8\x00\x00\x00\x00\x00\x00", "null"); // NaN
    S_ASSERT_DECODES("\xca\xff\x80\x00\x00", "null");                 // -infinity
}

static void
test_decodes_strings(void **state)
{
    (void)state;
    S_ASSERT_DECODES("\xa5hello", "\"hello\"");
    S_ASSERT_DECODES("\xa0", "\"\"");
    S_ASSERT_DECODES("\xd9\x03\xc3\xa9!", "\"\xc3\xa9!\"");
    S_ASSERT_DECODES("\xda\x00\x02hi", "\"hi\"");
    S_ASSERT_DECODES("\xdb\x00\x00\x00\x02hi", "\"hi\"");
    S_ASSERT_DECODES("\xa3"
                     "a\0b",
                     "\"a\\u0000b\"");
}

static void
test_replaces_invalid_utf8_in_strings(void **state)
{
    (void)state;
    S_ASSERT_DECODES("\xa3"
                     "a\xff"
                     "b",
                     "\"a\xef\xbf\xbd"
                     "b\"");
    S_ASSERT_DECODES("\xa2\xc3(", "\"\xef\xbf\xbd(\""); // a lead byte without its follower
}

static void
test_decodes_bin_as_base64(void **state)
{
    (void)state;
    S_ASSERT_DECODES("\xc4\x03"
                     "foo",
                     "\"Zm9v\"");
    S_ASSERT_DECODES("\xc5\x00\x01\xff", "\"/w==\"");
    S_ASSERT_DECODES("\xc6\x00\x00\x00\x00", "\"\"");
}

static void
test_decodes_ext_as_null(void **state)
{
    (void)state;
    S_ASSERT_DECODES("\xd4\x01\x02", "null");
    S_ASSERT_DECODES("\xd8\x01"
                     "0123456789abcdef",
                     "null");
    S_ASSERT_DECODES("\xc7\x02\x05xy", "null");
    S_ASSERT_DECODES("\x92\xd5\x01\x00\x00\x01", "[null,1]");
}

static void
test_decodes_maps_in_order(void **state)
{
    (void)state;
    S_ASSERT_DECODES("\x83\xa1z\x01\xa1"
                     "a\x92\x02\xc3\xa1m\x80",
                     "{\"z\":1,\"a\":[2,true],\"m\":{}}");
    S_ASSERT_DECODES("\xde\x00\x01\xa1k\xdc\x00\x01\xc0", "{\"k\":[null]}");
}

static void
test_stringifies_non_string_keys(void **state)
{
    (void)state;
    S_ASSERT_DECODES("\x84\x01\xa1"
                     "a\xc3\x02\xc0\x03\xff\x04",
                     "{\"1\":\"a\",\"true\":2,\"null\":3,\"-1\":4}");
    S_ASSERT_DECODES("\x81\x92\x01\x02\xc0", "{\"[1,2]\":null}");
    S_ASSERT_DECODES("\x81\xc4\x01\xff\x01", "{\"/w==\":1}");
}

static void
test_repeated_key_keeps_the_last_value(void **state)
{
    (void)state;
    S_ASSERT_DECODES("\x82\xa1k\x01\xa1k\x02", "{\"k\":2}");
}

static void
test_rejects_what_is_not_exactly_one_value(void **state)
{
    (void)state;
    assert_null(hop_json_from_msgpack("", 0));
    assert_null(hop_json_from_msgpack("\x01\x02", 2));     // two values
    assert_null(hop_json_from_msgpack("hello", 5));        // five fixints
    assert_null(hop_json_from_msgpack("\xc1", 1));         // never used
    assert_null(hop_json_from_msgpack("\xa5hell", 5));     // short string
    assert_null(hop_json_from_msgpack("\xcd\x01", 2));     // short uint16
    assert_null(hop_json_from_msgpack("\x92\x01", 2));     // short array
    assert_null(hop_json_from_msgpack("\x81\xa1k", 3));    // key without value
    assert_null(hop_json_from_msgpack("\xd4\x01", 2));     // short fixext
    assert_null(hop_json_from_msgpack("\xc7\x01\x05", 3)); // ext without data
    assert_null(hop_json_from_msgpack("\xc4\x05"
                                      "ab",
                                      4)); // short bin
}

static void
test_rejects_lengths_beyond_the_bytes_without_allocating(void **state)
{
    (void)state;
    // A billion elements claimed in five bytes: refused before anything is allocated.
    assert_null(hop_json_from_msgpack("\xdd\x40\x00\x00\x00", 5));
    assert_null(hop_json_from_msgpack("\xdf\xff\xff\xff\xff\x01\x01", 7));
    assert_null(hop_json_from_msgpack("\xdb\xff\xff\xff\xff"
                                      "abc",
                                      8));
    assert_null(hop_json_from_msgpack("\xc6\xff\xff\xff\xff"
                                      "abc",
                                      8));
    assert_null(hop_json_from_msgpack("\xc9\xff\xff\xff\xff\x01"
                                      "abc",
                                      9));
}

static void
test_rejects_nesting_deeper_than_the_limit(void **state)
{
    (void)state;
    uint8_t data[HOP_JSON_DEPTH + 2];
    // HOP_JSON_DEPTH nested arrays: the innermost holds nothing.
    memset(data, 0x91, HOP_JSON_DEPTH - 1);
    data[HOP_JSON_DEPTH - 1] = 0x90;
    json_t *json = hop_json_from_msgpack(data, HOP_JSON_DEPTH);
    assert_non_null(json);
    json_decref(json);
    // One more level is refused.
    memset(data, 0x91, HOP_JSON_DEPTH);
    data[HOP_JSON_DEPTH] = 0x90;
    assert_null(hop_json_from_msgpack(data, HOP_JSON_DEPTH + 1));
}

// Encodes the JSON text and returns the msgpack bytes in a new sbuffer.
static msgpack_sbuffer
s_encode_text(const char *text)
{
    json_error_t error;
    json_t *json = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &error);
    assert_non_null(json);
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init(&buffer);
    assert_int_equal(hop_json_to_msgpack(json, &buffer), 0);
    json_decref(json);
    return buffer;
}

static void
s_assert_encodes(const char *text, const void *expected, size_t size)
{
    msgpack_sbuffer buffer = s_encode_text(text);
    assert_int_equal(buffer.size, size);
    assert_memory_equal(buffer.data, expected, size);
    msgpack_sbuffer_destroy(&buffer);
}

#define S_ASSERT_ENCODES(text, bytes) s_assert_encodes(text, bytes, sizeof(bytes) - 1)

static void
test_encodes_scalars_in_their_smallest_form(void **state)
{
    (void)state;
    S_ASSERT_ENCODES("null", "\xc0");
    S_ASSERT_ENCODES("true", "\xc3");
    S_ASSERT_ENCODES("false", "\xc2");
    S_ASSERT_ENCODES("5", "\x05");
    S_ASSERT_ENCODES("300", "\xcd\x01\x2c");
    S_ASSERT_ENCODES("-1", "\xff");
    S_ASSERT_ENCODES("-200", "\xd1\xff\x38");
    S_ASSERT_ENCODES("1.5", "\xcb\x3f\xf8\x00\x00\x00\x00\x00\x00");
    S_ASSERT_ENCODES("\"hi\"", "\xa2hi");
}

static void
test_encodes_objects_and_arrays(void **state)
{
    (void)state;
    S_ASSERT_ENCODES("{\"b\": [1, \"x\"], \"a\": {}}", "\x82\xa1"
                                                       "b\x92\x01\xa1x\xa1"
                                                       "a\x80");
    S_ASSERT_ENCODES("[]", "\x90");
    // A key with a NUL in it (jansson's parser refuses those; its API takes them).
    json_t *json = json_object();
    json_object_setn_new(json, "a\0b", 3, json_integer(1));
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init(&buffer);
    assert_int_equal(hop_json_to_msgpack(json, &buffer), 0);
    assert_int_equal(buffer.size, 6);
    assert_memory_equal(buffer.data,
                        "\x81\xa3"
                        "a\0b\x01",
                        6);
    msgpack_sbuffer_destroy(&buffer);
    json_decref(json);
}

static void
test_round_trips_json(void **state)
{
    (void)state;
    const char *documents[] = {
        "{\"id\":42,\"total\":9.5,\"tags\":[\"a\",\"b\"],\"paid\":false,\"note\":null}",
        "[1,-1,9223372036854775807,-9223372036854775808,\"\xc3\xa9t\xc3\xa9\"]",
        "\"just a string\"",
        "{\"nested\":{\"deeper\":{\"deepest\":[[[]]]}}}",
    };
    for (size_t i = 0; i < sizeof documents / sizeof documents[0]; i++) {
        msgpack_sbuffer buffer = s_encode_text(documents[i]);
        char *text = s_decode_text(buffer.data, buffer.size);
        assert_non_null(text);
        assert_string_equal(text, documents[i]);
        free(text);
        msgpack_sbuffer_destroy(&buffer);
    }
}

static void
test_refuses_to_encode_nesting_deeper_than_the_limit(void **state)
{
    (void)state;
    json_t *json = json_array();
    for (int i = 0; i < HOP_JSON_DEPTH; i++) {
        json_t *outer = json_array();
        json_array_append_new(outer, json);
        json = outer;
    }
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init(&buffer);
    assert_int_equal(hop_json_to_msgpack(json, &buffer), -1);
    msgpack_sbuffer_destroy(&buffer);
    json_decref(json);
}

static void
test_base64_matches_rfc4648(void **state)
{
    (void)state;
    const char *vectors[][2] = {
        {"", ""},
        {"f", "Zg=="},
        {"fo", "Zm8="},
        {"foo", "Zm9v"},
        {"foob", "Zm9vYg=="},
        {"fooba", "Zm9vYmE="},
        {"foobar", "Zm9vYmFy"},
    };
    for (size_t i = 0; i < sizeof vectors / sizeof vectors[0]; i++) {
        json_t *text = hop_json_base64(vectors[i][0], strlen(vectors[i][0]));
        assert_string_equal(json_string_value(text), vectors[i][1]);
        json_decref(text);
    }
}

static void
test_utf8_validation(void **state)
{
    (void)state;
    assert_true(hop_json_utf8_valid("", 0));
    assert_true(hop_json_utf8_valid("plain", 5));
    assert_true(hop_json_utf8_valid("a\0b", 3));
    assert_true(hop_json_utf8_valid("\xc3\xa9", 2));          // e acute
    assert_true(hop_json_utf8_valid("\xe2\x82\xac", 3));      // euro sign
    assert_true(hop_json_utf8_valid("\xf0\x9f\x90\x87", 4));  // rabbit
    assert_true(hop_json_utf8_valid("\xf4\x8f\xbf\xbf", 4));  // U+10FFFF
    assert_false(hop_json_utf8_valid("\x80", 1));             // lone continuation
    assert_false(hop_json_utf8_valid("\xc0\xaf", 2));         // overlong '/'
    assert_false(hop_json_utf8_valid("\xe0\x80\xaf", 3));     // overlong '/'
    assert_false(hop_json_utf8_valid("\xed\xa0\x80", 3));     // surrogate
    assert_false(hop_json_utf8_valid("\xf4\x90\x80\x80", 4)); // above U+10FFFF
    assert_false(hop_json_utf8_valid("\xe2\x82", 2));         // truncated
    assert_false(hop_json_utf8_valid("\x81\xa1"
                                     "a\x01",
                                     4)); // a msgpack map
}

static void
test_text_replaces_each_invalid_byte(void **state)
{
    (void)state;
    json_t *text = hop_json_text("ok\xff\xfe!", 5);
    assert_string_equal(json_string_value(text), "ok\xef\xbf\xbd\xef\xbf\xbd!");
    json_decref(text);
    text = hop_json_text("", 0);
    assert_string_equal(json_string_value(text), "");
    json_decref(text);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decodes_scalars),
        cmocka_unit_test(test_decodes_integers_of_every_width),
        cmocka_unit_test(test_decodes_uint_above_int64_as_decimal_string),
        cmocka_unit_test(test_decodes_floats),
        cmocka_unit_test(test_decodes_strings),
        cmocka_unit_test(test_replaces_invalid_utf8_in_strings),
        cmocka_unit_test(test_decodes_bin_as_base64),
        cmocka_unit_test(test_decodes_ext_as_null),
        cmocka_unit_test(test_decodes_maps_in_order),
        cmocka_unit_test(test_stringifies_non_string_keys),
        cmocka_unit_test(test_repeated_key_keeps_the_last_value),
        cmocka_unit_test(test_rejects_what_is_not_exactly_one_value),
        cmocka_unit_test(test_rejects_lengths_beyond_the_bytes_without_allocating),
        cmocka_unit_test(test_rejects_nesting_deeper_than_the_limit),
        cmocka_unit_test(test_encodes_scalars_in_their_smallest_form),
        cmocka_unit_test(test_encodes_objects_and_arrays),
        cmocka_unit_test(test_round_trips_json),
        cmocka_unit_test(test_refuses_to_encode_nesting_deeper_than_the_limit),
        cmocka_unit_test(test_base64_matches_rfc4648),
        cmocka_unit_test(test_utf8_validation),
        cmocka_unit_test(test_text_replaces_each_invalid_byte),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
