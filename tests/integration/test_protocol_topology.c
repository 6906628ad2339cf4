// tests/integration/test_protocol_topology.c - hopperd's topology over the raw wire protocol
// (docs/PROTOCOL.md): each exchange type end to end, declares and deletes with their errors,
// server-named queues, properties passed through byte for byte, and list and status.
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "protocol_helpers.h"

#include <msgpack.h>
#include <stdio.h>
#include <string.h>

// ---------------------------------------------------------------------------------------
// Exchanges end to end

static void
test_direct_exchange_exact_key(void **state)
{
    fx_t *fx = *state;
    raw_t *a = fx->a;
    assert_int_equal(raw_exchange_declare(a, "dx", "direct", false, false, false), 0);
    assert_int_equal(raw_queue_declare(a, "d1", false, false, false, false), 0);
    assert_int_equal(raw_queue_declare(a, "d2", false, false, false, false), 0);
    assert_int_equal(raw_bind(a, "d1", "dx", "red"), 0);
    assert_int_equal(raw_bind(a, "d2", "dx", "green"), 0);
    assert_int_equal(raw_bind(a, "d2", "dx", "green"), 0); // binding twice is a no-op
    raw_publish_text(a, "dx", "red", "r1", NULL);
    raw_publish_text(a, "dx", "green", "g1", NULL);
    raw_publish_text(a, "dx", "re", "prefix-not-a-match", NULL);
    raw_publish_text(a, "dx", "red.x", "suffix-not-a-match", NULL);
    raw_publish_text(a, "dx", "RED", "case-matters", NULL);
    raw_publish_text(a, "dx", "red", "r2", NULL);
    char got[512];
    assert_string_equal(raw_drain(a, "d1", got, sizeof got), "r1,r2");
    assert_string_equal(raw_drain(a, "d2", got, sizeof got), "g1");

    // A delivery names the exchange and routing key it came through.
    assert_int_equal(raw_consume(fx->b, "d1", "c", 0, false, NULL, 0), 0);
    raw_publish_text(a, "dx", "red", "r3", NULL);
    raw_msg_t *m = raw_deliver(fx->b);
    assert_true(raw_str_is(m->wire.exchange, "dx"));
    assert_true(raw_str_is(m->wire.key, "red"));
    assert_true(raw_str_is(m->wire.consumer, "c"));
    assert_true(raw_body_is(m, "r3"));
    raw_msg_destroy(&m);

    // The three misses were counted as unroutable.
    raw_msg_t *list = raw_list(a, "exchanges");
    assert_non_null(list);
    uint64_t unroutable = 0, published = 0;
    assert_true(harness_items_uint(list->wire.items.ptr, list->wire.items.len, "name", "dx",
                                   "unroutable", &unroutable));
    assert_true(harness_items_uint(list->wire.items.ptr, list->wire.items.len, "name", "dx",
                                   "published", &published));
    assert_int_equal(unroutable, 3);
    assert_int_equal(published, 7);
    raw_msg_destroy(&list);
}

static void
test_fanout_exchange_two_queues(void **state)
{
    fx_t *fx = *state;
    raw_t *a = fx->a, *b = fx->b;
    assert_int_equal(raw_exchange_declare(a, "fx", "fanout", false, false, false), 0);
    assert_int_equal(raw_queue_declare(a, "f1", false, false, false, false), 0);
    assert_int_equal(raw_queue_declare(a, "f2", false, false, false, false), 0);
    assert_int_equal(raw_bind(a, "f1", "fx", "ignored"), 0);
    assert_int_equal(raw_bind(a, "f2", "fx", ""), 0);
    assert_int_equal(raw_consume(a, "f1", NULL, 0, false, NULL, 0), 0);
    assert_int_equal(raw_consume(b, "f2", NULL, 0, false, NULL, 0), 0);
    for (int i = 0; i < 20; i++) {
        char body[16];
        snprintf(body, sizeof body, "e%d", i);
        raw_publish_text(a, "fx", i % 2 ? "any.key" : "", body, NULL);
    }
    for (int i = 0; i < 20; i++) {
        char body[16];
        snprintf(body, sizeof body, "e%d", i);
        raw_ack(a, raw_expect_deliver(a, body, false, 1), false);
        raw_ack(b, raw_expect_deliver(b, body, false, 1), false);
    }
    raw_expect_no_error(a);
    raw_expect_no_error(b);
    assert_int_equal(raw_qstat(a, "f1", "acked"), 20);
    assert_int_equal(raw_qstat(a, "f2", "acked"), 20);
}

static void
test_topic_exchange_wildcards(void **state)
{
    fx_t *fx = *state;
    raw_t *a = fx->a;
    assert_int_equal(raw_exchange_declare(a, "tx", "topic", false, false, false), 0);
    const char *queues[] = {"t-star", "t-hash", "t-all", "t-mid", "t-exact"};
    const char *patterns[] = {"stock.*.nyse", "stock.#", "#", "*.*.eur", "stock.ibm.nyse"};
    for (int i = 0; i < 5; i++) {
        assert_int_equal(raw_queue_declare(a, queues[i], false, false, false, false), 0);
        assert_int_equal(raw_bind(a, queues[i], "tx", patterns[i]), 0);
    }
    const char *keys[] = {"stock.ibm.nyse",   "stock.ibm",   "stock",
                          "stock.ibm.nyse.x", "bond.x.nyse", "fx.usd.eur",
                          "stockx",           "stock..nyse", "stock.a.b.eur"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        raw_publish_text(a, "tx", keys[i], keys[i], NULL);
    char got[1024];
    assert_string_equal(raw_drain(a, "t-star", got, sizeof got), "stock.ibm.nyse,stock..nyse");
    assert_string_equal(raw_drain(a, "t-hash", got, sizeof got),
                        "stock.ibm.nyse,stock.ibm,stock,stock.ibm.nyse.x,stock..nyse,"
                        "stock.a.b.eur");
    assert_string_equal(raw_drain(a, "t-all", got, sizeof got),
                        "stock.ibm.nyse,stock.ibm,stock,stock.ibm.nyse.x,bond.x.nyse,fx.usd.eur,"
                        "stockx,stock..nyse,stock.a.b.eur");
    assert_string_equal(raw_drain(a, "t-mid", got, sizeof got), "fx.usd.eur");
    assert_string_equal(raw_drain(a, "t-exact", got, sizeof got), "stock.ibm.nyse");

    // amq.topic is predeclared and behaves the same.
    assert_int_equal(raw_bind(a, "t-mid", "amq.topic", "a.#.z"), 0);
    raw_publish_text(a, "amq.topic", "a.z", "a.z", NULL);
    raw_publish_text(a, "amq.topic", "a.b.c.z", "a.b.c.z", NULL);
    raw_publish_text(a, "amq.topic", "a.b.c", "a.b.c", NULL);
    assert_string_equal(raw_drain(a, "t-mid", got, sizeof got), "a.z,a.b.c.z");
}

static void
test_default_exchange_routes_by_queue_name(void **state)
{
    fx_t *fx = *state;
    raw_t *a = fx->a;
    assert_int_equal(raw_queue_declare(a, "by-name", false, false, false, false), 0);
    raw_publish_text(a, "", "by-name", "hello", NULL);
    raw_publish_text(a, "", "no-such-queue", "lost", NULL);
    raw_msg_t *m = raw_get(a, "by-name", false);
    assert_int_equal(m->wire.cmd, HOP_CMD_GET_OK);
    assert_true(raw_body_is(m, "hello"));
    assert_true(raw_str_is(m->wire.exchange, ""));
    assert_true(raw_str_is(m->wire.key, "by-name"));
    raw_ack(a, m->wire.tag, false);
    raw_msg_destroy(&m);
    raw_msg_t *status = raw_status(a);
    assert_non_null(status);
    uint64_t unroutable = 0;
    assert_true(harness_map_uint(zmq_msg_data(&status->header), zmq_msg_size(&status->header),
                                 "unroutable", &unroutable));
    assert_int_equal(unroutable, 1);
    raw_msg_destroy(&status);

    // The default exchange cannot be bound, declared or deleted; amq.* are reserved.
    hop_enc_t *enc = raw_begin(a, HOP_CMD_QUEUE_BIND);
    hop_enc_cstr(enc, "queue", "by-name");
    hop_enc_cstr(enc, "exchange", "");
    hop_enc_cstr(enc, "key", "x");
    px_call_error(a, HOP_CODE_ACCESS_REFUSED);
    assert_int_equal(raw_exchange_declare(a, "", "direct", false, false, false),
                     HOP_CODE_ACCESS_REFUSED);
    assert_int_equal(raw_exchange_declare(a, "amq.mine", "direct", false, false, false),
                     HOP_CODE_ACCESS_REFUSED);
    enc = raw_begin(a, HOP_CMD_EXCHANGE_DELETE);
    hop_enc_cstr(enc, "exchange", "");
    px_call_error(a, HOP_CODE_ACCESS_REFUSED);
    enc = raw_begin(a, HOP_CMD_EXCHANGE_DELETE);
    hop_enc_cstr(enc, "exchange", "amq.fanout");
    px_call_error(a, HOP_CODE_ACCESS_REFUSED);
    // The predeclared exchanges exist (passive) and route.
    assert_int_equal(raw_exchange_declare(a, "amq.direct", NULL, false, false, true), 0);
    assert_int_equal(raw_exchange_declare(a, "amq.fanout", NULL, false, false, true), 0);
    assert_int_equal(raw_bind(a, "by-name", "amq.fanout", ""), 0);
    raw_publish_text(a, "amq.fanout", "whatever", "fanned", NULL);
    char got[256];
    assert_string_equal(raw_drain(a, "by-name", got, sizeof got), "fanned");
}

// ---------------------------------------------------------------------------------------
// Declares and deletes

static void
test_redeclare_with_other_properties_406(void **state)
{
    fx_t *fx = *state;
    raw_t *a = fx->a;
    assert_int_equal(raw_queue_declare(a, "q", false, false, false, false), 0);
    assert_int_equal(raw_queue_declare(a, "q", false, false, false, false), 0); // idempotent
    assert_int_equal(raw_queue_declare(a, "q", true, false, false, false),
                     HOP_CODE_PRECONDITION_FAILED);
    assert_int_equal(raw_queue_declare(a, "q", false, false, true, false),
                     HOP_CODE_PRECONDITION_FAILED);
    assert_int_equal(raw_queue_declare(a, "q", false, true, false, false),
                     HOP_CODE_PRECONDITION_FAILED);
    assert_int_equal(raw_exchange_declare(a, "x", "direct", false, false, false), 0);
    assert_int_equal(raw_exchange_declare(a, "x", "direct", false, false, false), 0);
    assert_int_equal(raw_exchange_declare(a, "x", "fanout", false, false, false),
                     HOP_CODE_PRECONDITION_FAILED);
    assert_int_equal(raw_exchange_declare(a, "x", "direct", true, false, false),
                     HOP_CODE_PRECONDITION_FAILED);
    assert_int_equal(raw_exchange_declare(a, "x", "direct", false, true, false),
                     HOP_CODE_PRECONDITION_FAILED);
    // The error names the property.
    hop_enc_t *enc = raw_begin(a, HOP_CMD_QUEUE_DECLARE);
    hop_enc_cstr(enc, "queue", "q");
    hop_enc_bool(enc, "durable", true);
    raw_msg_t *m = raw_call(a);
    assert_non_null(m);
    char text[512];
    assert_non_null(strstr(raw_str(m->wire.text, text, sizeof text), "durable"));
    raw_msg_destroy(&m);
    // Nothing changed.
    uint64_t durable = 1;
    raw_msg_t *list = raw_list(a, "queues");
    const void *item;
    size_t item_size;
    assert_true(harness_items_find(list->wire.items.ptr, list->wire.items.len, "name", "q", &item,
                                   &item_size));
    bool b = true;
    assert_true(harness_map_bool(item, item_size, "durable", &b));
    durable = b;
    assert_int_equal(durable, 0);
    raw_msg_destroy(&list);
}

static void
test_passive_declare_of_missing_404(void **state)
{
    fx_t *fx = *state;
    raw_t *a = fx->a;
    assert_int_equal(raw_queue_declare(a, "nope", false, false, false, true), HOP_CODE_NOT_FOUND);
    assert_int_equal(raw_exchange_declare(a, "nope", NULL, false, false, true), HOP_CODE_NOT_FOUND);
    // Passive declares create nothing.
    assert_int_equal(raw_queue_declare(a, "nope", false, false, false, true), HOP_CODE_NOT_FOUND);
    // Once declared, passive succeeds and reports counts.
    assert_int_equal(raw_queue_declare(a, "nope", false, false, false, false), 0);
    raw_publish_text(a, "", "nope", "one", NULL);
    hop_enc_t *enc = raw_begin(a, HOP_CMD_QUEUE_DECLARE);
    hop_enc_cstr(enc, "queue", "nope");
    hop_enc_bool(enc, "passive", true);
    hop_enc_bool(enc, "durable", true); // ignored with passive
    raw_msg_t *m = raw_call(a);
    assert_non_null(m);
    assert_int_equal(m->wire.cmd, HOP_CMD_QUEUE_OK);
    assert_true(raw_str_is(m->wire.queue, "nope"));
    assert_int_equal(m->wire.messages, 1);
    assert_int_equal(m->wire.consumers, 0);
    raw_msg_destroy(&m);
}

static void
test_exclusive_queue_used_by_another_connection_405(void **state)
{
    fx_t *fx = *state;
    raw_t *a = fx->a, *b = fx->b;
    assert_int_equal(raw_queue_declare(a, "mine", false, true, false, false), 0);
    assert_int_equal(raw_consume(a, "mine", NULL, 0, false, NULL, 0), 0);
    assert_int_equal(raw_consume(b, "mine", NULL, 0, false, NULL, 0), HOP_CODE_RESOURCE_LOCKED);
    raw_msg_t *m = raw_get(b, "mine", false);
    assert_int_equal(m->wire.cmd, HOP_CMD_ERROR);
    assert_int_equal(m->wire.code, HOP_CODE_RESOURCE_LOCKED);
    raw_msg_destroy(&m);
    assert_int_equal(raw_queue_declare(b, "mine", false, true, false, false),
                     HOP_CODE_RESOURCE_LOCKED);
    assert_int_equal(raw_bind(b, "mine", "amq.direct", "k"), HOP_CODE_RESOURCE_LOCKED);
    assert_int_equal(raw_queue_delete(b, "mine", false, false), HOP_CODE_RESOURCE_LOCKED);
    hop_enc_t *enc = raw_begin(b, HOP_CMD_QUEUE_PURGE);
    hop_enc_cstr(enc, "queue", "mine");
    px_call_error(b, HOP_CODE_RESOURCE_LOCKED);
    // The owner is unaffected.
    assert_true(px_queue_exists(a, "mine"));
    assert_int_equal(raw_bind(a, "mine", "amq.direct", "k"), 0);
    raw_publish_text(b, "amq.direct", "k", "from-b", NULL);
    raw_ack(a, raw_expect_deliver(a, "from-b", false, 1), false);
    raw_expect_no_error(a);
}

static void
test_delete_if_empty_if_unused_406(void **state)
{
    fx_t *fx = *state;
    raw_t *a = fx->a, *b = fx->b;
    assert_int_equal(raw_queue_declare(a, "full", false, false, false, false), 0);
    raw_publish_text(a, "", "full", "m", NULL);
    assert_int_equal(raw_queue_delete(a, "full", false, true), HOP_CODE_PRECONDITION_FAILED);
    assert_true(px_queue_exists(a, "full"));

    // Unacked counts as not empty.
    raw_msg_t *m = raw_get(a, "full", false);
    assert_int_equal(m->wire.cmd, HOP_CMD_GET_OK);
    uint64_t tag = m->wire.tag;
    raw_msg_destroy(&m);
    assert_int_equal(raw_queue_delete(a, "full", false, true), HOP_CODE_PRECONDITION_FAILED);
    raw_ack(a, tag, false);
    assert_int_equal(raw_queue_delete(a, "full", false, true), 0);
    assert_false(px_queue_exists(a, "full"));

    assert_int_equal(raw_queue_declare(a, "used", false, false, false, false), 0);
    assert_int_equal(raw_consume(b, "used", "u", 0, false, NULL, 0), 0);
    assert_int_equal(raw_queue_delete(a, "used", true, false), HOP_CODE_PRECONDITION_FAILED);
    assert_int_equal(raw_cancel(b, "u"), 0);
    assert_int_equal(raw_queue_delete(a, "used", true, false), 0);

    // Exchanges: if_unused refuses while bindings exist.
    assert_int_equal(raw_exchange_declare(a, "xb", "direct", false, false, false), 0);
    assert_int_equal(raw_queue_declare(a, "qb", false, false, false, false), 0);
    assert_int_equal(raw_bind(a, "qb", "xb", "k"), 0);
    hop_enc_t *enc = raw_begin(a, HOP_CMD_EXCHANGE_DELETE);
    hop_enc_cstr(enc, "exchange", "xb");
    hop_enc_bool(enc, "if_unused", true);
    px_call_error(a, HOP_CODE_PRECONDITION_FAILED);
    enc = raw_begin(a, HOP_CMD_EXCHANGE_DELETE);
    hop_enc_cstr(enc, "exchange", "xb");
    m = raw_call(a);
    assert_int_equal(m->wire.cmd, HOP_CMD_OK);
    raw_msg_destroy(&m);
    assert_int_equal(raw_exchange_declare(a, "xb", NULL, false, false, true), HOP_CODE_NOT_FOUND);
    // Deleting what is not there: 404.
    assert_int_equal(raw_queue_delete(a, "never", false, false), HOP_CODE_NOT_FOUND);

    // A plain delete reports how many messages went with the queue.
    assert_int_equal(raw_queue_declare(a, "three", false, false, false, false), 0);
    for (int i = 0; i < 3; i++)
        raw_publish_text(a, "", "three", "x", NULL);
    enc = raw_begin(a, HOP_CMD_QUEUE_DELETE);
    hop_enc_cstr(enc, "queue", "three");
    m = raw_call(a);
    assert_int_equal(m->wire.cmd, HOP_CMD_OK);
    assert_int_equal(m->wire.messages, 3);
    raw_msg_destroy(&m);
}

static void
test_purge_drops_ready_not_unacked(void **state)
{
    fx_t *fx = *state;
    raw_t *a = fx->a;
    assert_int_equal(raw_queue_declare(a, "p", false, false, false, false), 0);
    for (int i = 0; i < 5; i++)
        raw_publish_text(a, "", "p", "x", NULL);
    raw_msg_t *m = raw_get(a, "p", false);
    assert_int_equal(m->wire.cmd, HOP_CMD_GET_OK);
    uint64_t tag = m->wire.tag;
    raw_msg_destroy(&m);
    hop_enc_t *enc = raw_begin(a, HOP_CMD_QUEUE_PURGE);
    hop_enc_cstr(enc, "queue", "p");
    m = raw_call(a);
    assert_int_equal(m->wire.cmd, HOP_CMD_OK);
    assert_int_equal(m->wire.messages, 4);
    raw_msg_destroy(&m);
    assert_int_equal(raw_qstat(a, "p", "messages_ready"), 0);
    assert_int_equal(raw_qstat(a, "p", "messages_unacked"), 1);
    raw_nack(a, tag, false, true);
    assert_int_equal(raw_qstat(a, "p", "messages_ready"), 1);
}

// ---------------------------------------------------------------------------------------
// Naming, properties, inspection

static void
test_server_named_queue(void **state)
{
    fx_t *fx = *state;
    raw_t *a = fx->a;
    hop_enc_t *enc = raw_begin(a, HOP_CMD_QUEUE_DECLARE);
    hop_enc_cstr(enc, "queue", "");
    hop_enc_bool(enc, "exclusive", true);
    raw_msg_t *m = raw_call(a);
    assert_int_equal(m->wire.cmd, HOP_CMD_QUEUE_OK);
    char name[256];
    raw_str(m->wire.queue, name, sizeof name);
    raw_msg_destroy(&m);
    assert_true(strncmp(name, "amq.gen-", 8) == 0);
    // Reachable by its name, passive works on amq. names.
    assert_true(px_queue_exists(a, name));
    raw_publish_text(a, "", name, "to-generated", NULL);
    char got[64];
    assert_string_equal(raw_drain(a, name, got, sizeof got), "to-generated");
    // Two server-named queues differ.
    enc = raw_begin(a, HOP_CMD_QUEUE_DECLARE);
    hop_enc_cstr(enc, "queue", "");
    m = raw_call(a);
    char other[256];
    raw_str(m->wire.queue, other, sizeof other);
    raw_msg_destroy(&m);
    assert_string_not_equal(name, other);
}

static void
test_props_pass_through_byte_for_byte(void **state)
{
    fx_t *fx = *state;
    raw_t *a = fx->a, *b = fx->b;
    assert_int_equal(raw_queue_declare(a, "props", false, false, false, false), 0);
    assert_int_equal(raw_consume(b, "props", NULL, 0, true, NULL, 0), 0);
    // props as a hand-packed map with odd but valid content.
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 4);
    px_pk_cstr(&pk, "content_type");
    px_pk_cstr(&pk, "text/plain");
    px_pk_cstr(&pk, "timestamp");
    msgpack_pack_uint64(&pk, 1700000000123ull);
    px_pk_cstr(&pk, "headers");
    msgpack_pack_map(&pk, 2);
    px_pk_cstr(&pk, "n");
    msgpack_pack_int(&pk, -7);
    px_pk_cstr(&pk, "f");
    msgpack_pack_double(&pk, 2.5);
    px_pk_cstr(&pk, "x-custom");
    msgpack_pack_array(&pk, 2);
    msgpack_pack_true(&pk);
    msgpack_pack_nil(&pk);
    hop_enc_t *enc = raw_begin_noid(a, HOP_CMD_PUBLISH);
    hop_enc_cstr(enc, "exchange", "");
    hop_enc_cstr(enc, "key", "props");
    hop_enc_raw(enc, "props", sb.data, sb.size);
    static const char body[] = "\x00\x01binary\xff body";
    raw_send_enc(a, body, sizeof body);
    // And one without a body frame at all: an empty body.
    enc = raw_begin_noid(a, HOP_CMD_PUBLISH);
    hop_enc_cstr(enc, "exchange", "");
    hop_enc_cstr(enc, "key", "props");
    raw_send_enc(a, NULL, 0);

    raw_msg_t *m = raw_deliver(b);
    assert_true(m->wire.has & HOP_F_PROPS);
    assert_int_equal(m->wire.props.len, sb.size);
    assert_memory_equal(m->wire.props.ptr, sb.data, sb.size);
    assert_true(m->has_body);
    assert_int_equal(zmq_msg_size(&m->body), sizeof body);
    assert_memory_equal(zmq_msg_data(&m->body), body, sizeof body);
    raw_msg_destroy(&m);
    m = raw_deliver(b);
    assert_false(m->wire.has & HOP_F_PROPS);
    assert_int_equal(m->has_body ? zmq_msg_size(&m->body) : 0, 0);
    raw_msg_destroy(&m);
    msgpack_sbuffer_destroy(&sb);
}

static bool
s_items_have(const raw_msg_t *list, const char *const *keys)
{
    hop_mp_t mp;
    hop_mp_init(&mp, list->wire.items.ptr, list->wire.items.len);
    uint32_t count;
    if (hop_mp_array(&mp, &count) || count == 0)
        return false;
    const uint8_t *start = mp.p;
    if (hop_mp_skip(&mp))
        return false;
    for (; *keys; keys++) {
        hop_mp_t v;
        if (!harness_map_find(start, (size_t)(mp.p - start), *keys, &v)) {
            fprintf(stderr, "list item has no key '%s'\n", *keys);
            return false;
        }
    }
    return true;
}

static void
test_list_and_status(void **state)
{
    fx_t *fx = *state;
    raw_t *a = fx->a, *b = fx->b;
    assert_int_equal(raw_exchange_declare(a, "lx", "topic", false, false, false), 0);
    assert_int_equal(raw_queue_declare(a, "lq", false, false, false, false), 0);
    assert_int_equal(raw_bind(a, "lq", "lx", "a.#"), 0);
    assert_int_equal(raw_consume(b, "lq", "lc", 1, false, NULL, 0), 0);
    for (int i = 0; i < 3; i++)
        raw_publish_text(a, "lx", "a.b", "x", NULL);
    raw_sync(a);

    static const char *const queue_keys[] = {
        "name",     "durable",   "exclusive", "auto_delete", "messages_ready", "messages_unacked",
        "messages", "consumers", "published", "delivered",   "acked",          NULL};
    static const char *const exchange_keys[] = {
        "name", "type", "durable", "auto_delete", "bindings", "published", "unroutable", NULL};
    static const char *const binding_keys[] = {"exchange", "queue", "key", NULL};
    static const char *const consumer_keys[] = {"queue",    "consumer",  "connection",
                                                "prefetch", "no_ack",    "exclusive",
                                                "unacked",  "delivered", NULL};
    static const char *const connection_keys[] = {"connection", "name",         "peer",
                                                  "heartbeat",  "last_seen_ms", "consumers",
                                                  "unacked",    "connected_ms", NULL};
    struct {
        const char *what;
        const char *const *keys;
    } subjects[] = {{"queues", queue_keys},
                    {"exchanges", exchange_keys},
                    {"bindings", binding_keys},
                    {"consumers", consumer_keys},
                    {"connections", connection_keys}};
    for (size_t i = 0; i < sizeof subjects / sizeof subjects[0]; i++) {
        raw_msg_t *list = raw_list(a, subjects[i].what);
        assert_non_null(list);
        assert_int_equal(list->wire.id, raw_last_id(a));
        if (!s_items_have(list, subjects[i].keys))
            fail_msg("list %s lacks keys", subjects[i].what);
        raw_msg_destroy(&list);
    }
    assert_int_equal(raw_qstat(a, "lq", "messages_ready"), 2);
    assert_int_equal(raw_qstat(a, "lq", "messages_unacked"), 1);
    assert_int_equal(raw_qstat(a, "lq", "messages"), 3);
    assert_int_equal(raw_qstat(a, "lq", "consumers"), 1);
    assert_int_equal(raw_qstat(a, "lq", "published"), 3);
    assert_int_equal(raw_qstat(a, "lq", "delivered"), 1);
    raw_msg_t *list = raw_list(a, "consumers");
    uint64_t unacked = 0, prefetch = 0;
    assert_true(harness_items_uint(list->wire.items.ptr, list->wire.items.len, "consumer", "lc",
                                   "unacked", &unacked));
    assert_true(harness_items_uint(list->wire.items.ptr, list->wire.items.len, "consumer", "lc",
                                   "prefetch", &prefetch));
    assert_int_equal(unacked, 1);
    assert_int_equal(prefetch, 1);
    raw_msg_destroy(&list);
    list = raw_list(a, "bindings");
    const void *item;
    size_t item_size;
    assert_true(harness_items_find(list->wire.items.ptr, list->wire.items.len, "queue", "lq", &item,
                                   &item_size));
    char key[64];
    assert_true(harness_map_str(item, item_size, "key", key, sizeof key));
    assert_string_equal(key, "a.#");
    raw_msg_destroy(&list);

    raw_msg_t *status = raw_status(a);
    assert_non_null(status);
    const void *map = zmq_msg_data(&status->header);
    size_t size = zmq_msg_size(&status->header);
    static const char *const status_keys[] = {
        "version",        "uptime_ms",        "endpoint",  "data_dir",
        "connections",    "consumers",        "queues",    "exchanges",
        "messages_ready", "messages_unacked", "published", "delivered",
        "acked",          "unroutable",       "rss_bytes", NULL};
    for (const char *const *k = status_keys; *k; k++) {
        hop_mp_t v;
        if (!harness_map_find(map, size, *k, &v))
            fail_msg("status lacks '%s'", *k);
    }
    char endpoint[256];
    assert_true(harness_map_str(map, size, "endpoint", endpoint, sizeof endpoint));
    assert_string_equal(endpoint, harness_broker_endpoint(fx->broker));
    uint64_t connections = 0, ready = 0;
    assert_true(harness_map_uint(map, size, "connections", &connections));
    assert_true(harness_map_uint(map, size, "messages_ready", &ready));
    assert_int_equal(connections, 2);
    assert_int_equal(ready, 2);
    raw_msg_destroy(&status);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_direct_exchange_exact_key, raw_fx_setup,
                                        raw_fx_teardown),
        cmocka_unit_test_setup_teardown(test_fanout_exchange_two_queues, raw_fx_setup,
                                        raw_fx_teardown),
        cmocka_unit_test_setup_teardown(test_topic_exchange_wildcards, raw_fx_setup,
                                        raw_fx_teardown),
        cmocka_unit_test_setup_teardown(test_default_exchange_routes_by_queue_name, raw_fx_setup,
                                        raw_fx_teardown),
        cmocka_unit_test_setup_teardown(test_redeclare_with_other_properties_406, raw_fx_setup,
                                        raw_fx_teardown),
        cmocka_unit_test_setup_teardown(test_passive_declare_of_missing_404, raw_fx_setup,
                                        raw_fx_teardown),
        cmocka_unit_test_setup_teardown(test_exclusive_queue_used_by_another_connection_405,
                                        raw_fx_setup, raw_fx_teardown),
        cmocka_unit_test_setup_teardown(test_delete_if_empty_if_unused_406, raw_fx_setup,
                                        raw_fx_teardown),
        cmocka_unit_test_setup_teardown(test_purge_drops_ready_not_unacked, raw_fx_setup,
                                        raw_fx_teardown),
        cmocka_unit_test_setup_teardown(test_server_named_queue, raw_fx_setup, raw_fx_teardown),
        cmocka_unit_test_setup_teardown(test_props_pass_through_byte_for_byte, raw_fx_setup,
                                        raw_fx_teardown),
        cmocka_unit_test_setup_teardown(test_list_and_status, raw_fx_setup, raw_fx_teardown),
    };
    return cmocka_run_group_tests_name("integration.protocol_topology", tests, NULL, NULL);
}
