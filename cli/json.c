// cli/json.c - msgpack <-> JSON for the hopper CLI; the mapping is in json.h.
//
// Decoding walks the bytes with its own bounds-checked reader instead of msgpack_unpack:
// message bodies are arbitrary bytes that we merely *try* as msgpack, and msgpack-c
// allocates an array's or map's slots from its declared length before checking that the
// bytes exist, so five bytes claiming a billion elements would cost gigabytes. Here a length
// is trusted only when that many elements could still fit in the bytes left.
#include "json.h"

#include <assert.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const uint8_t *p;   // next byte
    const uint8_t *end; // one past the last byte
} s_reader_t;

static json_t *s_decode(s_reader_t *reader, int depth);

// Takes the next n bytes; -1 if fewer are left.
static int
s_take(s_reader_t *reader, size_t n, const uint8_t **bytes)
{
    if ((size_t)(reader->end - reader->p) < n)
        return -1;
    *bytes = reader->p;
    reader->p += n;
    return 0;
}

static size_t
s_left(const s_reader_t *reader)
{
    return (size_t)(reader->end - reader->p);
}

// Reads a big-endian unsigned integer of width bytes (1, 2, 4 or 8).
static int
s_take_uint(s_reader_t *reader, size_t width, uint64_t *value)
{
    const uint8_t *bytes;
    if (s_take(reader, width, &bytes))
        return -1;
    uint64_t v = 0;
    for (size_t i = 0; i < width; i++)
        v = (v << 8) | bytes[i];
    *value = v;
    return 0;
}

// Returns the length of the valid UTF-8 sequence at p (1 to 4), or 0 if it is invalid.
static size_t
s_utf8_seq(const uint8_t *p, size_t n)
{
    uint8_t c = p[0];
    if (c < 0x80)
        return 1;
    if (c < 0xc2) // a continuation byte, or the lead of an overlong 2-byte form
        return 0;
    if (c < 0xe0)
        return n >= 2 && (p[1] & 0xc0) == 0x80 ? 2 : 0;
    if (c < 0xf0) {
        if (n < 3 || (p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80)
            return 0;
        if ((c == 0xe0 && p[1] < 0xa0) || (c == 0xed && p[1] >= 0xa0))
            return 0; // overlong, or a UTF-16 surrogate
        return 3;
    }
    if (c < 0xf5) {
        if (n < 4 || (p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80 || (p[3] & 0xc0) != 0x80)
            return 0;
        if ((c == 0xf0 && p[1] < 0x90) || (c == 0xf4 && p[1] >= 0x90))
            return 0; // overlong, or above U+10FFFF
        return 4;
    }
    return 0;
}

bool
hop_json_utf8_valid(const void *data, size_t size)
{
    assert(data || size == 0);
    const uint8_t *p = data;
    size_t i = 0;
    while (i < size) {
        size_t n = s_utf8_seq(p + i, size - i);
        if (n == 0)
            return false;
        i += n;
    }
    return true;
}

json_t *
hop_json_text(const void *data, size_t size)
{
    assert(data || size == 0);
    if (hop_json_utf8_valid(data, size)) {
        json_t *text = json_stringn(size ? data : "", size);
        assert(text);
        return text;
    }
    // Each invalid byte becomes the 3-byte U+FFFD, so 3 x size is always enough.
    const uint8_t *p = data;
    uint8_t *out = malloc(3 * size);
    assert(out);
    size_t len = 0;
    size_t i = 0;
    while (i < size) {
        size_t n = s_utf8_seq(p + i, size - i);
        if (n == 0) {
            memcpy(out + len, "\xef\xbf\xbd", 3);
            len += 3;
            i++;
        } else {
            memcpy(out + len, p + i, n);
            len += n;
            i += n;
        }
    }
    json_t *text = json_stringn((const char *)out, len);
    free(out);
    assert(text);
    return text;
}

json_t *
hop_json_base64(const void *data, size_t size)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    assert(data || size == 0);
    const uint8_t *p = data;
    size_t len = (size + 2) / 3 * 4;
    char *out = malloc(len + 1);
    assert(out);
    size_t o = 0;
    for (size_t i = 0; i < size; i += 3) {
        uint32_t group = (uint32_t)p[i] << 16;
        if (i + 1 < size)
            group |= (uint32_t)p[i + 1] << 8;
        if (i + 2 < size)
            group |= p[i + 2];
        out[o++] = alphabet[(group >> 18) & 63];
        out[o++] = alphabet[(group >> 12) & 63];
        out[o++] = i + 1 < size ? alphabet[(group >> 6) & 63] : '=';
        out[o++] = i + 2 < size ? alphabet[group & 63] : '=';
    }
    json_t *text = json_stringn(out, len);
    free(out);
    assert(text);
    return text;
}

static json_t *
s_decode_str(s_reader_t *reader, uint64_t len)
{
    const uint8_t *bytes;
    if (len > s_left(reader) || s_take(reader, (size_t)len, &bytes))
        return NULL;
    return hop_json_text(bytes, (size_t)len);
}

static json_t *
s_decode_bin(s_reader_t *reader, uint64_t len)
{
    const uint8_t *bytes;
    if (len > s_left(reader) || s_take(reader, (size_t)len, &bytes))
        return NULL;
    return hop_json_base64(bytes, (size_t)len);
}

// ext: a type byte then len bytes of data, neither of which JSON can say anything about.
static json_t *
s_decode_ext(s_reader_t *reader, uint64_t len)
{
    const uint8_t *bytes;
    if (len > s_left(reader) || s_take(reader, (size_t)len + 1, &bytes))
        return NULL;
    return json_null();
}

static json_t *
s_decode_array(s_reader_t *reader, uint64_t count, int depth)
{
    if (count > s_left(reader)) // every element takes at least one byte
        return NULL;
    json_t *array = json_array();
    for (uint64_t i = 0; i < count; i++) {
        json_t *item = s_decode(reader, depth + 1);
        if (!item || json_array_append_new(array, item)) {
            json_decref(array);
            return NULL;
        }
    }
    return array;
}

// A map key becomes the object key: strings as they are, anything else as its JSON text.
static json_t *
s_decode_map(s_reader_t *reader, uint64_t count, int depth)
{
    if (count > s_left(reader) / 2) // every key and every value takes at least one byte
        return NULL;
    json_t *object = json_object();
    for (uint64_t i = 0; i < count; i++) {
        json_t *key = s_decode(reader, depth + 1);
        json_t *value = key ? s_decode(reader, depth + 1) : NULL;
        if (!value) {
            json_decref(key);
            json_decref(object);
            return NULL;
        }
        int rc;
        if (json_is_string(key)) {
            rc = json_object_setn_new(object, json_string_value(key), json_string_length(key),
                                      value);
        } else {
            char *text = json_dumps(key, JSON_COMPACT | JSON_ENCODE_ANY);
            rc = text ? json_object_set_new(object, text, value) : -1;
            if (!text)
                json_decref(value);
            free(text);
        }
        json_decref(key);
        if (rc) {
            json_decref(object);
            return NULL;
        }
    }
    return object;
}

static json_t *
s_decode_real(double value)
{
    return isfinite(value) ? json_real(value) : json_null();
}

static json_t *
s_decode(s_reader_t *reader, int depth)
{
    const uint8_t *bytes;
    if (depth > HOP_JSON_DEPTH || s_take(reader, 1, &bytes))
        return NULL;
    uint8_t byte = bytes[0];
    if (byte <= 0x7f)
        return json_integer(byte);
    if (byte >= 0xe0)
        return json_integer((int8_t)byte);
    if (byte <= 0x8f)
        return s_decode_map(reader, byte & 0x0f, depth);
    if (byte <= 0x9f)
        return s_decode_array(reader, byte & 0x0f, depth);
    if (byte <= 0xbf)
        return s_decode_str(reader, byte & 0x1f);

    uint64_t n;
    switch (byte) {
    case 0xc0:
        return json_null();
    case 0xc2:
        return json_false();
    case 0xc3:
        return json_true();
    case 0xc4: // bin 8/16/32
    case 0xc5:
    case 0xc6:
        return s_take_uint(reader, (size_t)1 << (byte - 0xc4), &n) ? NULL : s_decode_bin(reader, n);
    case 0xc7: // ext 8/16/32
    case 0xc8:
    case 0xc9:
        return s_take_uint(reader, (size_t)1 << (byte - 0xc7), &n) ? NULL : s_decode_ext(reader, n);
    case 0xca: { // float 32
        if (s_take_uint(reader, 4, &n))
            return NULL;
        uint32_t bits = (uint32_t)n;
        float value;
        memcpy(&value, &bits, sizeof value);
        return s_decode_real(value);
    }
    case 0xcb: { // float 64
        if (s_take_uint(reader, 8, &n))
            return NULL;
        double value;
        memcpy(&value, &n, sizeof value);
        return s_decode_real(value);
    }
    case 0xcc: // uint 8/16/32/64
    case 0xcd:
    case 0xce:
    case 0xcf:
        if (s_take_uint(reader, (size_t)1 << (byte - 0xcc), &n))
            return NULL;
        if (n > INT64_MAX) {
            char digits[24];
            snprintf(digits, sizeof digits, "%llu", (unsigned long long)n);
            return json_string(digits);
        }
        return json_integer((json_int_t)n);
    case 0xd0: // int 8/16/32/64: sign-extend from the width read
    case 0xd1:
    case 0xd2:
    case 0xd3: {
        size_t width = (size_t)1 << (byte - 0xd0);
        if (s_take_uint(reader, width, &n))
            return NULL;
        int64_t value;
        if (width == 8)
            memcpy(&value, &n, sizeof value);
        else if (n >> (8 * width - 1))
            value = (int64_t)n - ((int64_t)1 << (8 * width));
        else
            value = (int64_t)n;
        return json_integer((json_int_t)value);
    }
    case 0xd4: // fixext 1/2/4/8/16
    case 0xd5:
    case 0xd6:
    case 0xd7:
    case 0xd8:
        return s_decode_ext(reader, (uint64_t)1 << (byte - 0xd4));
    case 0xd9: // str 8/16/32
    case 0xda:
    case 0xdb:
        return s_take_uint(reader, (size_t)1 << (byte - 0xd9), &n) ? NULL : s_decode_str(reader, n);
    case 0xdc: // array 16/32
    case 0xdd:
        return s_take_uint(reader, (size_t)2 << (byte - 0xdc), &n)
                   ? NULL
                   : s_decode_array(reader, n, depth);
    case 0xde: // map 16/32
    case 0xdf:
        return s_take_uint(reader, (size_t)2 << (byte - 0xde), &n) ? NULL
                                                                   : s_decode_map(reader, n, depth);
    default: // 0xc1 is never used
        return NULL;
    }
}

json_t *
hop_json_from_msgpack(const void *data, size_t size)
{
    assert(data || size == 0);
    if (size == 0)
        return NULL;
    s_reader_t reader = {.p = data, .end = (const uint8_t *)data + size};
    json_t *json = s_decode(&reader, 1);
    if (json && reader.p != reader.end) {
        json_decref(json); // trailing bytes: not exactly one value
        return NULL;
    }
    return json;
}

static int
s_encode(json_t *json, msgpack_packer *packer, int depth)
{
    if (depth > HOP_JSON_DEPTH)
        return -1;
    switch (json_typeof(json)) {
    case JSON_OBJECT: {
        const char *key;
        size_t key_len;
        json_t *value;
        if (msgpack_pack_map(packer, json_object_size(json)))
            return -1;
        json_object_keylen_foreach(json, key, key_len, value)
        {
            if (msgpack_pack_str(packer, key_len) || msgpack_pack_str_body(packer, key, key_len) ||
                s_encode(value, packer, depth + 1))
                return -1;
        }
        return 0;
    }
    case JSON_ARRAY: {
        size_t index;
        json_t *value;
        if (msgpack_pack_array(packer, json_array_size(json)))
            return -1;
        json_array_foreach(json, index, value)
        {
            if (s_encode(value, packer, depth + 1))
                return -1;
        }
        return 0;
    }
    case JSON_STRING: {
        size_t len = json_string_length(json);
        return msgpack_pack_str(packer, len) ||
                       msgpack_pack_str_body(packer, json_string_value(json), len)
                   ? -1
                   : 0;
    }
    case JSON_INTEGER: {
        json_int_t value = json_integer_value(json);
        if (value >= 0)
            return msgpack_pack_uint64(packer, (uint64_t)value) ? -1 : 0;
        return msgpack_pack_int64(packer, (int64_t)value) ? -1 : 0;
    }
    case JSON_REAL:
        return msgpack_pack_double(packer, json_real_value(json)) ? -1 : 0;
    case JSON_TRUE:
        return msgpack_pack_true(packer) ? -1 : 0;
    case JSON_FALSE:
        return msgpack_pack_false(packer) ? -1 : 0;
    case JSON_NULL:
        return msgpack_pack_nil(packer) ? -1 : 0;
    }
    return -1;
}

int
hop_json_to_msgpack(const json_t *json, msgpack_sbuffer *buffer)
{
    assert(json);
    assert(buffer);
    msgpack_packer packer;
    msgpack_packer_init(&packer, buffer, msgpack_sbuffer_write);
    // jansson's iteration API takes non-const pointers; nothing here modifies json.
    return s_encode((json_t *)json, &packer, 1);
}
