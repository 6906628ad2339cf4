// cli/json.h - msgpack <-> JSON for the hopper CLI (jansson on one side, msgpack bytes on the
// other). Not on any hot path: the CLI converts what it prints and what the user types.
//
// msgpack -> JSON mapping:
//   nil, bool, str, array     -> null, true/false, string, array
//   int (fits in int64)       -> integer
//   uint above INT64_MAX      -> decimal string (JSON tools read numbers as doubles and would
//                                round it; the string keeps every digit)
//   float32/float64           -> real; NaN and infinities (no JSON form) -> null
//   bin                       -> base64 string (RFC 4648, padded)
//   ext                       -> null
//   str that is not UTF-8     -> string with each invalid byte replaced by U+FFFD
//   map                       -> object, in the map's order; a non-string key becomes its
//                                compact JSON text (1 -> "1", true -> "true", nil -> "null");
//                                a repeated key keeps the last value
// JSON -> msgpack: null, true/false, integer (uint when >= 0, else int), real (float64),
// string (str), array, object (map with str keys).
#ifndef HOP_CLI_JSON_H_INCLUDED
#define HOP_CLI_JSON_H_INCLUDED

#include <jansson.h>
#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>

#define HOP_JSON_DEPTH 64 // nesting limit in both directions

// Decodes exactly one msgpack value filling data[0, size) and returns it as a new JSON
// reference. Returns NULL when data is empty, is not valid msgpack, has trailing bytes, or
// nests deeper than HOP_JSON_DEPTH. Never trusts a length prefix beyond the bytes present.
json_t *hop_json_from_msgpack(const void *data, size_t size);

// Appends json as one msgpack value to buffer. Returns 0, or -1 when it nests deeper than
// HOP_JSON_DEPTH (buffer then holds a partial value; the caller discards it).
int hop_json_to_msgpack(const json_t *json, msgpack_sbuffer *buffer);

// Returns a new JSON string holding data as padded base64.
json_t *hop_json_base64(const void *data, size_t size);

// Returns a new JSON string holding data as text: valid UTF-8 is kept, each invalid byte
// becomes U+FFFD. Never returns NULL (aborts on out of memory).
json_t *hop_json_text(const void *data, size_t size);

// True when data[0, size) is valid UTF-8 (no overlongs, no surrogates, nothing above
// U+10FFFF). Embedded NULs are valid.
bool hop_json_utf8_valid(const void *data, size_t size);

#endif
