// sdk/client_topology.c - exchanges, queues and bindings (declare, delete, purge, bind,
// unbind) and inspection (list, status, raw calls). See client.c for the request core and how
// asynchronous errors are reported.
#include "client_internal.h"

#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// ---------------------------------------------------------------------------------------
// Operations without checks, shared by the public verbs, subscribe, request and reconnect

// Writes the queue arguments that are set (PROTOCOL.md 4.3): an argument left out accepts
// whatever is in force, so an unset one must not travel as 0.
static void
s_enc_queue_args(hop_enc_t *enc, const hop_queue_args_t *args)
{
    const struct {
        const char *key;
        uint64_t value;
    } numbers[] = {
        {"max_length", args->max_length},           {"max_length_bytes", args->max_length_bytes},
        {"message_ttl", args->message_ttl},         {"expires", args->expires},
        {"max_deliveries", args->max_deliveries},   {"retry_delay", args->retry_delay},
        {"retry_delay_max", args->retry_delay_max}, {"max_priority", args->max_priority},
        {"ack_timeout", args->ack_timeout},
    };
    for (size_t i = 0; i < sizeof numbers / sizeof numbers[0]; i++)
        if (numbers[i].value)
            hop_enc_uint(enc, numbers[i].key, numbers[i].value);
    if (args->overflow)
        hop_enc_cstr(enc, "overflow", args->overflow);
    // "" is set: the default exchange.
    if (args->dead_letter_exchange)
        hop_enc_cstr(enc, "dead_letter_exchange", args->dead_letter_exchange);
    if (args->dead_letter_key)
        hop_enc_cstr(enc, "dead_letter_key", args->dead_letter_key);
}

int
hop_client_do_declare_queue(hop_client_t *self, const char *name, int flags,
                            const hop_queue_args_t *args, char *name_out, size_t name_out_size,
                            uint64_t *messages_out, uint64_t *consumers_out)
{
    uint64_t id = hop_client_begin(self, HOP_CMD_QUEUE_DECLARE);
    hop_enc_cstr(&self->enc, "queue", name);
    if (flags & HOP_DURABLE)
        hop_enc_bool(&self->enc, "durable", true);
    if (flags & HOP_EXCLUSIVE)
        hop_enc_bool(&self->enc, "exclusive", true);
    if (flags & HOP_AUTO_DELETE)
        hop_enc_bool(&self->enc, "auto_delete", true);
    if (flags & HOP_PASSIVE)
        hop_enc_bool(&self->enc, "passive", true);
    if (args)
        s_enc_queue_args(&self->enc, args);
    hop_inmsg_t reply;
    int rc = hop_client_call(self, id, HOP_CMD_QUEUE_OK, "queue.declare", &reply);
    if (rc)
        return rc;
    const hop_wire_t *w = &reply.wire;
    if (messages_out)
        *messages_out = w->messages;
    if (consumers_out)
        *consumers_out = w->consumers;
    // A server-named queue is only known from the reply; else the name is the one we sent.
    if (w->queue.ptr)
        rc = hop_client_copy_out(self, name_out, name_out_size, "queue name", w->queue.ptr,
                                 w->queue.len);
    else
        rc = hop_client_copy_out(self, name_out, name_out_size, "queue name", name, strlen(name));
    hop_inmsg_close(&reply);
    return rc;
}

int
hop_client_do_bind(hop_client_t *self, hop_cmd_t cmd, const char *queue, const char *exchange,
                   const char *key)
{
    uint64_t id = hop_client_begin(self, cmd);
    hop_enc_cstr(&self->enc, "queue", queue);
    hop_enc_cstr(&self->enc, "exchange", exchange);
    hop_enc_cstr(&self->enc, "key", key);
    return hop_client_call_ok(self, id, HOP_CMD_OK, hop_cmd_name(cmd), NULL);
}

int
hop_client_do_delete_queue(hop_client_t *self, const char *name, int flags, uint64_t *messages_out)
{
    uint64_t id = hop_client_begin(self, HOP_CMD_QUEUE_DELETE);
    hop_enc_cstr(&self->enc, "queue", name);
    if (flags & HOP_IF_UNUSED)
        hop_enc_bool(&self->enc, "if_unused", true);
    if (flags & HOP_IF_EMPTY)
        hop_enc_bool(&self->enc, "if_empty", true);
    return hop_client_call_ok(self, id, HOP_CMD_OK, "queue.delete", messages_out);
}

// ---------------------------------------------------------------------------------------
// Topology

int
hop_client_declare_exchange(hop_client_t *self, const char *name, const char *type, int flags)
{
    assert(self);
    int rc = hop_client_check_name(self, "exchange name", name);
    if (rc == HOP_OK)
        rc = hop_client_check_flags(self, flags, HOP_DURABLE | HOP_AUTO_DELETE | HOP_PASSIVE,
                                    "hop_client_declare_exchange");
    if (rc == HOP_OK && !type && !(flags & HOP_PASSIVE))
        rc = hop_client_fail(self, HOP_EINVAL, 0, "exchange type is NULL (direct, fanout, topic)");
    if (rc == HOP_OK && type)
        rc = hop_client_check_name(self, "exchange type", type);
    if (rc == HOP_OK)
        rc = hop_client_ready(self, true);
    if (rc)
        return rc;
    uint64_t id = hop_client_begin(self, HOP_CMD_EXCHANGE_DECLARE);
    hop_enc_cstr(&self->enc, "exchange", name);
    if (type)
        hop_enc_cstr(&self->enc, "type", type);
    if (flags & HOP_DURABLE)
        hop_enc_bool(&self->enc, "durable", true);
    if (flags & HOP_AUTO_DELETE)
        hop_enc_bool(&self->enc, "auto_delete", true);
    if (flags & HOP_PASSIVE)
        hop_enc_bool(&self->enc, "passive", true);
    return hop_client_sync(self,
                           hop_client_call_ok(self, id, HOP_CMD_OK, "exchange.declare", NULL));
}

int
hop_client_delete_exchange(hop_client_t *self, const char *name, int flags)
{
    assert(self);
    int rc = hop_client_check_name(self, "exchange name", name);
    if (rc == HOP_OK)
        rc = hop_client_check_flags(self, flags, HOP_IF_UNUSED, "hop_client_delete_exchange");
    if (rc == HOP_OK)
        rc = hop_client_ready(self, true);
    if (rc)
        return rc;
    uint64_t id = hop_client_begin(self, HOP_CMD_EXCHANGE_DELETE);
    hop_enc_cstr(&self->enc, "exchange", name);
    if (flags & HOP_IF_UNUSED)
        hop_enc_bool(&self->enc, "if_unused", true);
    return hop_client_sync(self, hop_client_call_ok(self, id, HOP_CMD_OK, "exchange.delete", NULL));
}

int
hop_client_declare_queue(hop_client_t *self, const char *name, int flags, char *name_out,
                         size_t name_out_size)
{
    return hop_client_declare_queue_ex(self, name, flags, name_out, name_out_size, NULL, NULL);
}

int
hop_client_declare_queue_ex(hop_client_t *self, const char *name, int flags, char *name_out,
                            size_t name_out_size, uint64_t *messages_out, uint64_t *consumers_out)
{
    return hop_client_declare_queue_args(self, name, flags, NULL, name_out, name_out_size,
                                         messages_out, consumers_out);
}

// The ranges PROTOCOL.md 4.3 gives; the broker decides the rest.
static int
s_check_queue_args(hop_client_t *self, const hop_queue_args_t *args)
{
    if (!args)
        return HOP_OK;
    if (args->overflow && strcmp(args->overflow, "drop-head") != 0 &&
        strcmp(args->overflow, "reject-publish") != 0)
        return hop_client_fail(self, HOP_EINVAL, 0,
                               "queue argument overflow is '%.*s': it must be drop-head or "
                               "reject-publish",
                               HOP_NAME_MAX, args->overflow);
    if (args->max_priority > 255)
        return hop_client_fail(self, HOP_EINVAL, 0,
                               "queue argument max_priority is %" PRIu64 ": it must be 1 to 255 "
                               "(0: no priorities)",
                               args->max_priority);
    if (args->ack_timeout && args->ack_timeout < 1000)
        return hop_client_fail(self, HOP_EINVAL, 0,
                               "queue argument ack_timeout is %" PRIu64 " ms: it must be at least "
                               "1000 ms (0: the broker's default)",
                               args->ack_timeout);
    int rc = HOP_OK;
    if (args->dead_letter_exchange)
        rc = hop_client_check_name(self, "queue argument dead_letter_exchange",
                                   args->dead_letter_exchange);
    if (rc == HOP_OK && args->dead_letter_key)
        rc = hop_client_check_name(self, "queue argument dead_letter_key", args->dead_letter_key);
    return rc;
}

int
hop_client_declare_queue_args(hop_client_t *self, const char *name, int flags,
                              const hop_queue_args_t *args, char *name_out, size_t name_out_size,
                              uint64_t *messages_out, uint64_t *consumers_out)
{
    assert(self);
    int rc = hop_client_check_name(self, "queue name", name);
    if (rc == HOP_OK)
        rc = hop_client_check_flags(self, flags,
                                    HOP_DURABLE | HOP_EXCLUSIVE | HOP_AUTO_DELETE | HOP_PASSIVE,
                                    "hop_client_declare_queue");
    if (rc == HOP_OK)
        rc = s_check_queue_args(self, args);
    if (rc == HOP_OK)
        rc = hop_client_ready(self, true);
    if (rc)
        return rc;
    return hop_client_sync(self,
                           hop_client_do_declare_queue(self, name, flags, args, name_out,
                                                       name_out_size, messages_out, consumers_out));
}

int
hop_client_delete_queue(hop_client_t *self, const char *name, int flags, uint64_t *messages_out)
{
    assert(self);
    int rc = hop_client_check_name(self, "queue name", name);
    if (rc == HOP_OK)
        rc = hop_client_check_flags(self, flags, HOP_IF_UNUSED | HOP_IF_EMPTY,
                                    "hop_client_delete_queue");
    if (rc == HOP_OK)
        rc = hop_client_ready(self, true);
    if (rc)
        return rc;
    return hop_client_sync(self, hop_client_do_delete_queue(self, name, flags, messages_out));
}

int
hop_client_purge_queue(hop_client_t *self, const char *name, uint64_t *messages_out)
{
    assert(self);
    int rc = hop_client_check_name(self, "queue name", name);
    if (rc == HOP_OK)
        rc = hop_client_ready(self, true);
    if (rc)
        return rc;
    uint64_t id = hop_client_begin(self, HOP_CMD_QUEUE_PURGE);
    hop_enc_cstr(&self->enc, "queue", name);
    return hop_client_sync(self,
                           hop_client_call_ok(self, id, HOP_CMD_OK, "queue.purge", messages_out));
}

static int
s_check_binding(hop_client_t *self, const char *queue, const char *exchange, const char *key)
{
    int rc = hop_client_check_name(self, "queue name", queue);
    if (rc == HOP_OK)
        rc = hop_client_check_name(self, "exchange name", exchange);
    if (rc == HOP_OK && key)
        rc = hop_client_check_name(self, "binding key", key);
    return rc ? rc : hop_client_ready(self, true);
}

int
hop_client_bind(hop_client_t *self, const char *queue, const char *exchange, const char *key)
{
    assert(self);
    int rc = s_check_binding(self, queue, exchange, key);
    return rc ? rc
              : hop_client_sync(self,
                                hop_client_do_bind(self, HOP_CMD_QUEUE_BIND, queue, exchange, key));
}

int
hop_client_unbind(hop_client_t *self, const char *queue, const char *exchange, const char *key)
{
    assert(self);
    int rc = s_check_binding(self, queue, exchange, key);
    return rc ? rc
              : hop_client_sync(
                    self, hop_client_do_bind(self, HOP_CMD_QUEUE_UNBIND, queue, exchange, key));
}

// ---------------------------------------------------------------------------------------
// Inspection

static void *
s_memdup(const void *data, size_t size)
{
    void *copy = malloc(size ? size : 1);
    if (!copy)
        abort();
    if (size)
        memcpy(copy, data, size);
    return copy;
}

int
hop_client_list(hop_client_t *self, const char *what, void **items_p, size_t *size_p)
{
    assert(self);
    if (items_p)
        *items_p = NULL;
    if (size_p)
        *size_p = 0;
    if (!items_p || !size_p)
        return hop_client_fail(self, HOP_EINVAL, 0, "items_p or size_p is NULL");
    int rc = hop_client_check_name(self, "list subject", what);
    if (rc == HOP_OK)
        rc = hop_client_ready(self, true);
    if (rc)
        return rc;
    uint64_t id = hop_client_begin(self, HOP_CMD_LIST);
    hop_enc_cstr(&self->enc, "what", what);
    hop_inmsg_t reply;
    rc = hop_client_call(self, id, HOP_CMD_LIST_OK, "list", &reply);
    if (rc)
        return rc;
    static const uint8_t empty_array = 0x90;
    const hop_span_t *items = &reply.wire.items;
    *size_p = items->ptr ? items->len : 1;
    *items_p = s_memdup(items->ptr ? items->ptr : &empty_array, *size_p);
    hop_inmsg_close(&reply);
    if ((rc = hop_client_take_async(self))) {
        free(*items_p);
        *items_p = NULL;
        *size_p = 0;
    }
    return rc;
}

// Copies a header map without its cmd and id entries. Returns NULL if it is malformed.
static void *
s_map_without_cmd_id(const void *data, size_t size, size_t *size_out)
{
    uint8_t *out = malloc(size + 5);
    if (!out)
        abort();
    size_t used = 5; // room for the largest map header, moved into place at the end
    hop_mp_t mp;
    hop_mp_init(&mp, data, size);
    uint32_t count, kept = 0;
    if (hop_mp_map(&mp, &count))
        goto bad;
    for (uint32_t i = 0; i < count; i++) {
        const uint8_t *start = mp.p;
        const char *key = NULL;
        uint32_t len = 0;
        if (hop_mp_str(&mp, &key, &len) && hop_mp_skip(&mp))
            goto bad;
        if (hop_mp_skip(&mp))
            goto bad;
        if (key &&
            ((len == 3 && memcmp(key, "cmd", 3) == 0) || (len == 2 && memcmp(key, "id", 2) == 0)))
            continue;
        memcpy(out + used, start, (size_t)(mp.p - start));
        used += (size_t)(mp.p - start);
        kept++;
    }
    uint8_t head[5];
    size_t head_size;
    if (kept < 16) {
        head[0] = (uint8_t)(0x80 | kept);
        head_size = 1;
    } else if (kept < 65536) {
        head[0] = 0xde;
        head[1] = (uint8_t)(kept >> 8);
        head[2] = (uint8_t)kept;
        head_size = 3;
    } else {
        head[0] = 0xdf;
        for (int i = 0; i < 4; i++)
            head[1 + i] = (uint8_t)(kept >> (24 - 8 * i));
        head_size = 5;
    }
    memcpy(out + 5 - head_size, head, head_size);
    memmove(out, out + 5 - head_size, used - (5 - head_size));
    *size_out = used - (5 - head_size);
    return out;
bad:
    free(out);
    return NULL;
}

int
hop_client_status(hop_client_t *self, void **map_p, size_t *size_p)
{
    assert(self);
    if (map_p)
        *map_p = NULL;
    if (size_p)
        *size_p = 0;
    if (!map_p || !size_p)
        return hop_client_fail(self, HOP_EINVAL, 0, "map_p or size_p is NULL");
    int rc = hop_client_ready(self, true);
    if (rc)
        return rc;
    uint64_t id = hop_client_begin(self, HOP_CMD_STATUS);
    hop_inmsg_t reply;
    rc = hop_client_call(self, id, HOP_CMD_STATUS_OK, "status", &reply);
    if (rc)
        return rc;
    *map_p = s_map_without_cmd_id(reply.head, reply.head_size, size_p);
    hop_inmsg_close(&reply);
    if (!*map_p)
        return hop_client_fail(self, HOP_EPROTO, 0, "malformed status-ok from the broker");
    if ((rc = hop_client_take_async(self))) {
        free(*map_p);
        *map_p = NULL;
        *size_p = 0;
    }
    return rc;
}

// Raw calls: the header is sent as given. With reply_p NULL nothing is awaited. Otherwise the
// call waits for the reply whose id is the header's (0 when it has none or does not decode:
// the broker answers undecodable headers with id 0) and returns HOP_OK with the reply header,
// whatever its cmd, `error` included: a raw caller wants to see the broker's answer. A reply
// body (get-ok) is dropped.
int
hop_client_call_raw(hop_client_t *self, const void *header, size_t header_size, const void *body,
                    size_t body_size, void **reply_p, size_t *reply_size_p)
{
    assert(self);
    if (reply_p)
        *reply_p = NULL;
    if (reply_size_p)
        *reply_size_p = 0;
    if (!header || !header_size)
        return hop_client_fail(self, HOP_EINVAL, 0, "header is NULL or empty");
    if (!body && body_size)
        return hop_client_fail(self, HOP_EINVAL, 0, "body is NULL but body_size is %zu", body_size);
    if (reply_p && !reply_size_p)
        return hop_client_fail(self, HOP_EINVAL, 0, "reply_size_p is NULL");
    int rc = hop_client_ready(self, reply_p != NULL);
    if (rc)
        return rc;
    hop_wire_t wire;
    uint64_t id = hop_wire_decode(&wire, header, header_size, NULL, 0) == 0 ? wire.id : 0;
    // Alone, never in a batch: the broker must see the message exactly as the caller wrote it
    // (it may be a hello, a batch of its own, or a test of how the broker handles bad input).
    rc = hop_client_send(self, header, header_size, body, body_size, body != NULL, true);
    if (rc || !reply_p)
        return rc;
    hop_inmsg_t reply;
    rc = hop_client_wait(self, id, HOP_RAW_REPLY, "the raw request", &reply);
    if (rc)
        return rc;
    *reply_size_p = reply.head_size;
    *reply_p = s_memdup(reply.head, *reply_size_p);
    hop_inmsg_close(&reply);
    if ((rc = hop_client_take_async(self))) {
        free(*reply_p);
        *reply_p = NULL;
        *reply_size_p = 0;
    }
    return rc;
}

// ---------------------------------------------------------------------------------------
// Peek and unacked deliveries (issue 7)

// Reads a msgpack bin (any width). Returns 0, or -1 when the next value is not a bin.
static int
s_mp_bin(hop_mp_t *mp, const uint8_t **data, uint32_t *len)
{
    const uint8_t *p = mp->p;
    size_t avail = (size_t)(mp->end - p);
    if (avail < 2 || *p < 0xc4 || *p > 0xc6)
        return -1;
    size_t width = (size_t)1 << (*p - 0xc4); // 1, 2 or 4 length bytes
    if (avail < 1 + width)
        return -1;
    uint32_t n = 0;
    for (size_t i = 0; i < width; i++)
        n = n << 8 | p[1 + i];
    if (avail - 1 - width < n)
        return -1;
    *data = p + 1 + width;
    *len = n;
    mp->p = p + 1 + width + n;
    return 0;
}

// Finds the keys of a peek item the wire decoder does not know: body (bin) and size. Returns 0
// or -1 when the item is malformed.
static int
s_peek_fields(const uint8_t *item, size_t size, const uint8_t **body, uint32_t *body_len,
              uint64_t *whole)
{
    hop_mp_t mp;
    hop_mp_init(&mp, item, size);
    uint32_t count;
    if (hop_mp_map(&mp, &count))
        return -1;
    *body = NULL;
    *body_len = 0;
    *whole = 0;
    for (uint32_t i = 0; i < count; i++) {
        const char *key;
        uint32_t len;
        if (hop_mp_str(&mp, &key, &len))
            return -1;
        int rc;
        if (len == 4 && memcmp(key, "body", 4) == 0)
            rc = s_mp_bin(&mp, body, body_len);
        else if (len == 4 && memcmp(key, "size", 4) == 0)
            rc = hop_mp_uint(&mp, whole);
        else
            rc = hop_mp_skip(&mp);
        if (rc)
            return -1;
    }
    if (*whole < *body_len)
        *whole = *body_len;
    return 0;
}

void
hop_client_peek_free(hop_delivery_t ***deliveries_p, size_t count)
{
    if (!deliveries_p || !*deliveries_p)
        return;
    for (size_t i = 0; i < count; i++)
        hop_delivery_destroy(&(*deliveries_p)[i]);
    free(*deliveries_p);
    *deliveries_p = NULL;
}

int
hop_client_peek(hop_client_t *self, const char *queue, size_t count, hop_delivery_t ***deliveries_p,
                size_t *count_p)
{
    assert(self);
    if (deliveries_p)
        *deliveries_p = NULL;
    if (count_p)
        *count_p = 0;
    if (!deliveries_p || !count_p)
        return hop_client_fail(self, HOP_EINVAL, 0, "deliveries_p or count_p is NULL");
    int rc = hop_client_check_name(self, "queue name", queue);
    if (rc == HOP_OK)
        rc = hop_client_ready(self, true);
    if (rc)
        return rc;
    uint64_t id = hop_client_begin(self, HOP_CMD_PEEK);
    hop_enc_cstr(&self->enc, "queue", queue);
    if (count)
        hop_enc_uint(&self->enc, "count", count);
    hop_inmsg_t reply;
    rc = hop_client_call(self, id, HOP_CMD_PEEK_OK, "peek", &reply);
    if (rc)
        return rc;
    hop_mp_t mp;
    hop_mp_init(&mp, reply.wire.items.ptr, reply.wire.items.ptr ? reply.wire.items.len : 0);
    uint32_t n = 0;
    if (reply.wire.items.ptr && hop_mp_array(&mp, &n))
        rc = HOP_EPROTO;
    hop_delivery_t **out = calloc(n ? n : 1, sizeof *out);
    if (!out)
        abort();
    size_t got = 0;
    for (uint32_t i = 0; i < n && rc == HOP_OK; i++) {
        const uint8_t *item = mp.p;
        hop_wire_t iw;
        const uint8_t *body;
        uint32_t body_len;
        uint64_t whole;
        if (hop_mp_skip(&mp) ||
            s_peek_fields(item, (size_t)(mp.p - item), &body, &body_len, &whole) ||
            hop_wire_decode(&iw, item, (size_t)(mp.p - item), NULL, 0) == HOP_CODE_FRAME_ERROR) {
            rc = HOP_EPROTO;
            break;
        }
        zmq_msg_t frame;
        if (zmq_msg_init_size(&frame, body_len))
            abort();
        if (body_len)
            memcpy(zmq_msg_data(&frame), body, body_len);
        hop_delivery_t *d = hop_delivery_parse(&iw, &frame, NULL);
        zmq_msg_close(&frame);
        d->message_count = reply.wire.messages;
        d->body_whole_size = (size_t)whole;
        out[got++] = d;
    }
    hop_inmsg_close(&reply);
    if (rc) {
        hop_client_peek_free(&out, got);
        return hop_client_fail(self, HOP_EPROTO, 0, "malformed peek-ok from the broker");
    }
    if ((rc = hop_client_take_async(self))) {
        hop_client_peek_free(&out, got);
        return rc;
    }
    *deliveries_p = out;
    *count_p = got;
    return HOP_OK;
}

int
hop_client_list_unacked(hop_client_t *self, const char *queue, void **items_p, size_t *size_p,
                        size_t *left_off_p)
{
    assert(self);
    if (items_p)
        *items_p = NULL;
    if (size_p)
        *size_p = 0;
    if (left_off_p)
        *left_off_p = 0;
    if (!items_p || !size_p)
        return hop_client_fail(self, HOP_EINVAL, 0, "items_p or size_p is NULL");
    int rc = queue ? hop_client_check_name(self, "queue name", queue) : HOP_OK;
    if (rc == HOP_OK)
        rc = hop_client_ready(self, true);
    if (rc)
        return rc;
    uint64_t id = hop_client_begin(self, HOP_CMD_LIST);
    hop_enc_cstr(&self->enc, "what", "unacked");
    if (queue)
        hop_enc_cstr(&self->enc, "queue", queue);
    hop_inmsg_t reply;
    rc = hop_client_call(self, id, HOP_CMD_LIST_OK, "list unacked", &reply);
    if (rc)
        return rc;
    static const uint8_t empty_array = 0x90;
    const hop_span_t *items = &reply.wire.items;
    *size_p = items->ptr ? items->len : 1;
    *items_p = s_memdup(items->ptr ? items->ptr : &empty_array, *size_p);
    // left_off: deliveries the reply had no room for (the newest ones).
    hop_mp_t mp;
    hop_mp_init(&mp, reply.head, reply.head_size);
    uint32_t count = 0;
    hop_mp_map(&mp, &count);
    for (uint32_t i = 0; i < count; i++) {
        const char *key;
        uint32_t len;
        uint64_t value;
        if (hop_mp_str(&mp, &key, &len))
            break;
        if (len == 8 && memcmp(key, "left_off", 8) == 0 && hop_mp_uint(&mp, &value) == 0) {
            if (left_off_p)
                *left_off_p = (size_t)value;
        } else if (hop_mp_skip(&mp)) {
            break;
        }
    }
    hop_inmsg_close(&reply);
    if ((rc = hop_client_take_async(self))) {
        free(*items_p);
        *items_p = NULL;
        *size_p = 0;
    }
    return rc;
}
