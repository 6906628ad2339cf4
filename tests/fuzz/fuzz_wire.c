// tests/fuzz/fuzz_wire.c - libFuzzer target for everything the broker decodes from a client:
// a header frame (hop_wire_decode) and a batch records frame (hop_batch_next + decode of
// each record). Build: cmake -DHOP_FUZZ=ON with clang; run: ./fuzz_wire -max_total_time=60
#include "codec.h"

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    hop_wire_t w;
    char err[256];
    // As a header frame.
    if (hop_wire_decode(&w, data, size, err, sizeof err) == 0 && w.has & HOP_F_PROPS) {
        hop_mp_t mp;
        hop_mp_init(&mp, w.props.ptr, w.props.len);
        if (hop_mp_skip(&mp) != 0 || !hop_mp_at_end(&mp))
            __builtin_trap(); // a decoded props span must be exactly one well-formed value
    }
    // As a batch records frame.
    hop_batch_t it;
    hop_batch_init(&it, data, size);
    const uint8_t *h, *b;
    uint32_t hl, bl;
    while (hop_batch_next(&it, &h, &hl, &b, &bl) == 1) {
        if (h < data || h + hl > data + size || (b && (b < data || b + bl > data + size)))
            __builtin_trap(); // spans must stay inside the frame
        hop_wire_decode(&w, h, hl, err, sizeof err);
    }
    return 0;
}
