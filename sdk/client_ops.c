// sdk/client_ops.c - operating on stored messages: move and replay (PROTOCOL.md 4.8), and
// turning message tracing on or off (4.9).
#include "client_internal.h"

#include <assert.h>
#include <string.h>

// Reads moved, skipped and left from a move-ok header. Returns 0, or -1 when malformed.
static int
s_move_ok(const uint8_t *head, size_t size, hop_move_result_t *r)
{
    hop_mp_t mp;
    hop_mp_init(&mp, head, size);
    uint32_t n;
    if (hop_mp_map(&mp, &n))
        return -1;
    for (uint32_t i = 0; i < n; i++) {
        const char *k;
        uint32_t kl;
        if (hop_mp_str(&mp, &k, &kl))
            return -1;
        uint64_t *at = kl == 5 && memcmp(k, "moved", 5) == 0     ? &r->moved
                       : kl == 7 && memcmp(k, "skipped", 7) == 0 ? &r->skipped
                       : kl == 4 && memcmp(k, "left", 4) == 0    ? &r->left
                                                                 : NULL;
        if (at ? hop_mp_uint(&mp, at) : hop_mp_skip(&mp))
            return -1;
    }
    return 0;
}

int
hop_client_move(hop_client_t *self, const char *queue, const hop_move_opts_t *opts,
                hop_move_result_t *result)
{
    assert(self);
    if (result)
        memset(result, 0, sizeof *result);
    if (!opts || !result)
        return hop_client_fail(self, HOP_EINVAL, 0, "opts or result is NULL");
    if (!opts->replay && !opts->exchange)
        return hop_client_fail(self, HOP_EINVAL, 0, "a move needs an exchange (or replay)");
    if (opts->replay && (opts->exchange || opts->key))
        return hop_client_fail(self, HOP_EINVAL, 0,
                               "replay takes no exchange or key: its death records say where");
    if (!opts->filter_header != !opts->filter_value)
        return hop_client_fail(self, HOP_EINVAL, 0, "filter_header and filter_value go together");
    int rc = hop_client_check_name(self, "queue name", queue);
    if (rc == HOP_OK && opts->exchange && opts->exchange[0])
        rc = hop_client_check_name(self, "exchange name", opts->exchange);
    if (rc == HOP_OK)
        rc = hop_client_ready(self, true);
    if (rc)
        return rc;
    uint64_t id = hop_client_begin(self, HOP_CMD_MOVE);
    hop_enc_cstr(&self->enc, "queue", queue);
    if (opts->exchange)
        hop_enc_cstr(&self->enc, "exchange", opts->exchange);
    if (opts->key)
        hop_enc_cstr(&self->enc, "key", opts->key);
    if (opts->count)
        hop_enc_uint(&self->enc, "count", opts->count);
    if (opts->filter_header) {
        hop_enc_cstr(&self->enc, "filter_header", opts->filter_header);
        hop_enc_cstr(&self->enc, "filter_value", opts->filter_value);
    }
    if (opts->replay)
        hop_enc_bool(&self->enc, "replay", true);
    hop_inmsg_t reply;
    rc = hop_client_call(self, id, HOP_CMD_MOVE_OK, "move", &reply);
    if (rc)
        return rc;
    rc = s_move_ok(reply.head, reply.head_size, result);
    hop_inmsg_close(&reply);
    if (rc)
        return hop_client_fail(self, HOP_EPROTO, 0, "malformed move-ok from the broker");
    return hop_client_take_async(self);
}

int
hop_client_trace(hop_client_t *self, bool on, const char *exchange)
{
    assert(self);
    int rc = exchange ? hop_client_check_name(self, "exchange name", exchange) : HOP_OK;
    if (rc == HOP_OK)
        rc = hop_client_ready(self, true);
    if (rc)
        return rc;
    uint64_t id = hop_client_begin(self, HOP_CMD_TRACE);
    hop_enc_bool(&self->enc, "on", on);
    if (exchange)
        hop_enc_cstr(&self->enc, "exchange", exchange);
    hop_inmsg_t reply;
    rc = hop_client_call(self, id, HOP_CMD_OK, "trace", &reply);
    if (rc)
        return rc;
    hop_inmsg_close(&reply);
    return hop_client_take_async(self);
}
