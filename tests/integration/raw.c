// tests/integration/raw.c - the bare protocol client of the integration tests. See raw.h.
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "raw.h"
#include "harness.h"
#include "hopper.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct raw {
    void *ctx;          // private ZeroMQ context
    void *sock;         // the DEALER
    hop_enc_t enc;      // reused for every header built
    uint64_t next_id;   // next request id
    uint64_t last_id;   // id of the last request begun
    raw_msg_t *head;    // received and not yet taken, in arrival order
    raw_msg_t **tail_p; // where the next one is linked
    bool unbatch;       // said batch:true: split received batches into their records
    size_t batches;     // batches received
    size_t records;     // records they carried
};

raw_t *
raw_new(const char *endpoint)
{
    raw_t *self = calloc(1, sizeof *self);
    assert(self);
    self->ctx = zmq_ctx_new();
    self->sock = zmq_socket(self->ctx, ZMQ_DEALER);
    int zero = 0;
    zmq_setsockopt(self->sock, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(self->sock, ZMQ_SNDHWM, &zero, sizeof zero);
    zmq_setsockopt(self->sock, ZMQ_RCVHWM, &zero, sizeof zero);
    if (zmq_connect(self->sock, endpoint) < 0) {
        fprintf(stderr, "raw: connect %s: %s\n", endpoint, zmq_strerror(zmq_errno()));
        zmq_close(self->sock);
        zmq_ctx_term(self->ctx);
        free(self);
        return NULL;
    }
    hop_enc_init(&self->enc);
    self->next_id = 1;
    self->tail_p = &self->head;
    return self;
}

void
raw_destroy(raw_t **self_p)
{
    assert(self_p);
    raw_t *self = *self_p;
    if (!self)
        return;
    while (self->head) {
        raw_msg_t *msg = self->head;
        self->head = msg->next;
        raw_msg_destroy(&msg);
    }
    zmq_close(self->sock);
    zmq_ctx_term(self->ctx);
    hop_enc_fini(&self->enc);
    free(self);
    *self_p = NULL;
}

void
raw_msg_destroy(raw_msg_t **msg_p)
{
    assert(msg_p);
    raw_msg_t *msg = *msg_p;
    if (!msg)
        return;
    zmq_msg_close(&msg->header);
    zmq_msg_close(&msg->body);
    free(msg);
    *msg_p = NULL;
}

// Sending ---------------------------------------------------------------------------------

uint64_t
raw_next_id(raw_t *self)
{
    self->last_id = self->next_id++;
    return self->last_id;
}

uint64_t
raw_last_id(const raw_t *self)
{
    return self->last_id;
}

hop_enc_t *
raw_begin(raw_t *self, hop_cmd_t cmd)
{
    hop_enc_begin(&self->enc, cmd);
    hop_enc_uint(&self->enc, "id", raw_next_id(self));
    return &self->enc;
}

hop_enc_t *
raw_begin_noid(raw_t *self, hop_cmd_t cmd)
{
    hop_enc_begin(&self->enc, cmd);
    return &self->enc;
}

int
raw_send_frames(raw_t *self, const void *const *frames, const size_t *sizes, int n)
{
    for (int i = 0; i < n; i++)
        if (zmq_send(self->sock, frames[i], sizes[i], i + 1 < n ? ZMQ_SNDMORE : 0) < 0) {
            fprintf(stderr, "raw: send: %s\n", zmq_strerror(zmq_errno()));
            return -1;
        }
    return 0;
}

int
raw_send_enc(raw_t *self, const void *body, size_t body_size)
{
    size_t size;
    const void *header = hop_enc_end(&self->enc, &size);
    const void *frames[2] = {header, body ? body : ""};
    size_t sizes[2] = {size, body ? body_size : 0};
    return raw_send_frames(self, frames, sizes, body ? 2 : 1);
}

void
raw_heartbeat(raw_t *self)
{
    raw_begin_noid(self, HOP_CMD_HEARTBEAT);
    raw_send_enc(self, NULL, 0);
}

// Receiving -------------------------------------------------------------------------------

static void
s_append(raw_t *self, raw_msg_t *msg)
{
    *self->tail_p = msg;
    self->tail_p = &msg->next;
}

// Decodes a message's header in place (wire borrows it).
static void
s_decode(raw_msg_t *msg)
{
    char err[256];
    msg->decode_rc = hop_wire_decode(&msg->wire, zmq_msg_data(&msg->header),
                                     zmq_msg_size(&msg->header), err, sizeof err);
    if (msg->decode_rc)
        fprintf(stderr, "raw: batch record rejected by hop_wire_decode: %s\n", err);
}

// Appends each record of a batch as a message of its own (header and body copied).
static void
s_unbatch(raw_t *self, const raw_msg_t *batch)
{
    self->batches++;
    hop_batch_t it;
    hop_batch_init(&it, zmq_msg_data((zmq_msg_t *)&batch->body),
                   zmq_msg_size((zmq_msg_t *)&batch->body));
    const uint8_t *h, *b;
    uint32_t hl, bl;
    int rc;
    while ((rc = hop_batch_next(&it, &h, &hl, &b, &bl)) == 1) {
        raw_msg_t *msg = calloc(1, sizeof *msg);
        assert(msg);
        zmq_msg_init_size(&msg->header, hl);
        memcpy(zmq_msg_data(&msg->header), h, hl);
        msg->frames = 2;
        msg->has_body = true;
        zmq_msg_init_size(&msg->body, bl);
        if (bl)
            memcpy(zmq_msg_data(&msg->body), b, bl);
        s_decode(msg);
        self->records++;
        s_append(self, msg);
    }
    if (rc < 0)
        fprintf(stderr, "raw: a batch record runs past the batch frame\n");
}

// Receives one message if one arrives within timeout_ms (0 = only what is there) and appends
// it to the pending list. Returns 1 if one was added, 0 otherwise.
static int
s_recv_one(raw_t *self, int timeout_ms)
{
    zmq_pollitem_t item = {.socket = self->sock, .events = ZMQ_POLLIN};
    if (zmq_poll(&item, 1, timeout_ms) <= 0)
        return 0;
    raw_msg_t *msg = calloc(1, sizeof *msg);
    assert(msg);
    zmq_msg_init(&msg->header);
    zmq_msg_init(&msg->body);
    if (zmq_msg_recv(&msg->header, self->sock, ZMQ_DONTWAIT) < 0) {
        raw_msg_destroy(&msg);
        return 0;
    }
    msg->frames = 1;
    bool more = zmq_msg_more(&msg->header);
    if (more) {
        zmq_msg_recv(&msg->body, self->sock, 0);
        msg->has_body = true;
        msg->frames++;
        more = zmq_msg_more(&msg->body);
    }
    while (more) {
        zmq_msg_t junk;
        zmq_msg_init(&junk);
        zmq_msg_recv(&junk, self->sock, 0);
        more = zmq_msg_more(&junk);
        zmq_msg_close(&junk);
        msg->frames++;
    }
    char err[256];
    msg->decode_rc = hop_wire_decode(&msg->wire, zmq_msg_data(&msg->header),
                                     zmq_msg_size(&msg->header), err, sizeof err);
    if (msg->decode_rc) {
        // Keep it usable by tests: take cmd and id straight from the map, so that a reply the
        // codec rejects still answers its request (the test then checks the decode itself).
        fprintf(stderr, "raw: message from the broker rejected by hop_wire_decode: %s\n", err);
        const void *data = zmq_msg_data(&msg->header);
        size_t size = zmq_msg_size(&msg->header);
        char cmd[32];
        memset(&msg->wire, 0, sizeof msg->wire);
        if (harness_map_str(data, size, "cmd", cmd, sizeof cmd))
            msg->wire.cmd = hop_cmd_parse(cmd, strlen(cmd));
        if (harness_map_uint(data, size, "id", &msg->wire.id))
            msg->wire.has |= HOP_F_ID;
    }
    if (msg->decode_rc == 0 && msg->wire.cmd == HOP_CMD_HEARTBEAT) {
        raw_msg_destroy(&msg);
        return 1;
    }
    if (self->unbatch && msg->decode_rc == 0 && msg->wire.cmd == HOP_CMD_BATCH && msg->has_body) {
        s_unbatch(self, msg);
        raw_msg_destroy(&msg);
        return 1;
    }
    s_append(self, msg);
    return 1;
}

static bool
s_is_push(const raw_msg_t *msg)
{
    return msg->wire.cmd == HOP_CMD_DELIVER || msg->wire.cmd == HOP_CMD_CANCELLED ||
           msg->wire.cmd == HOP_CMD_HEARTBEAT;
}

typedef bool(s_match_fn)(const raw_msg_t *msg, uint64_t arg);

static bool
s_match_reply(const raw_msg_t *msg, uint64_t id)
{
    return !s_is_push(msg) && (msg->wire.has & HOP_F_ID) && msg->wire.id == id;
}

static bool
s_match_cmd(const raw_msg_t *msg, uint64_t cmd)
{
    return msg->decode_rc == 0 && msg->wire.cmd == (hop_cmd_t)cmd;
}

static bool
s_match_any(const raw_msg_t *msg, uint64_t unused)
{
    (void)msg, (void)unused;
    return true;
}

static raw_msg_t *
s_take(raw_t *self, s_match_fn *match, uint64_t arg)
{
    for (raw_msg_t **at = &self->head; *at; at = &(*at)->next) {
        raw_msg_t *msg = *at;
        if (!match(msg, arg))
            continue;
        *at = msg->next;
        if (self->tail_p == &msg->next)
            self->tail_p = at;
        msg->next = NULL;
        return msg;
    }
    return NULL;
}

static raw_msg_t *
s_wait(raw_t *self, s_match_fn *match, uint64_t arg, int timeout_ms)
{
    uint64_t deadline = harness_now_ms() + (uint64_t)timeout_ms;
    while (true) {
        // Drain what is already there first so that arrival order is kept.
        while (s_recv_one(self, 0))
            ;
        raw_msg_t *msg = s_take(self, match, arg);
        if (msg)
            return msg;
        uint64_t now = harness_now_ms();
        if (now >= deadline)
            return NULL;
        s_recv_one(self, (int)(deadline - now));
    }
}

raw_msg_t *
raw_reply(raw_t *self, uint64_t id, int timeout_ms)
{
    return s_wait(self, s_match_reply, id, timeout_ms);
}

raw_msg_t *
raw_next(raw_t *self, hop_cmd_t cmd, int timeout_ms)
{
    return s_wait(self, s_match_cmd, (uint64_t)cmd, timeout_ms);
}

raw_msg_t *
raw_any(raw_t *self, int timeout_ms)
{
    return s_wait(self, s_match_any, 0, timeout_ms);
}

size_t
raw_pending(raw_t *self, hop_cmd_t cmd)
{
    while (s_recv_one(self, 0))
        ;
    size_t n = 0;
    for (raw_msg_t *msg = self->head; msg; msg = msg->next)
        n += s_match_cmd(msg, (uint64_t)cmd);
    return n;
}

raw_msg_t *
raw_call(raw_t *self)
{
    if (raw_send_enc(self, NULL, 0) < 0)
        return NULL;
    return raw_reply(self, self->last_id, RAW_TIMEOUT_MS);
}

// Shorthands ------------------------------------------------------------------------------

// Sends the request being built and returns 0 / the error code / -1, freeing the reply.
static int
s_call_code(raw_t *self, raw_msg_t **reply_p)
{
    raw_msg_t *reply = raw_call(self);
    if (!reply)
        return -1;
    int code = reply->wire.cmd == HOP_CMD_ERROR ? (int)reply->wire.code : 0;
    if (reply_p)
        *reply_p = reply;
    else
        raw_msg_destroy(&reply);
    return code;
}

// hello, with batch:true when batch (the client then splits the batches it receives).
static int
s_hello(raw_t *self, uint64_t heartbeat_ms, const char *name, bool batch)
{
    hop_enc_t *enc = raw_begin(self, HOP_CMD_HELLO);
    hop_enc_uint(enc, "version", HOP_PROTOCOL_VERSION);
    if (heartbeat_ms)
        hop_enc_uint(enc, "heartbeat", heartbeat_ms);
    if (name)
        hop_enc_cstr(enc, "name", name);
    if (batch) {
        hop_enc_bool(enc, "batch", true);
        self->unbatch = true;
    }
    raw_msg_t *reply = NULL;
    int code = s_call_code(self, &reply);
    if (code == 0 && reply->wire.cmd != HOP_CMD_HELLO_OK)
        code = -1;
    raw_msg_destroy(&reply);
    return code;
}

int
raw_hello(raw_t *self, uint64_t heartbeat_ms, const char *name)
{
    return s_hello(self, heartbeat_ms, name, false);
}

int
raw_hello_batch(raw_t *self, uint64_t heartbeat_ms, const char *name)
{
    return s_hello(self, heartbeat_ms, name, true);
}

size_t
raw_batches(raw_t *self, size_t *records)
{
    while (s_recv_one(self, 0))
        ;
    if (records)
        *records = self->records;
    return self->batches;
}

int
raw_queue_declare(raw_t *self, const char *queue, bool durable, bool exclusive, bool auto_delete,
                  bool passive)
{
    hop_enc_t *enc = raw_begin(self, HOP_CMD_QUEUE_DECLARE);
    hop_enc_cstr(enc, "queue", queue);
    hop_enc_bool(enc, "durable", durable);
    hop_enc_bool(enc, "exclusive", exclusive);
    hop_enc_bool(enc, "auto_delete", auto_delete);
    hop_enc_bool(enc, "passive", passive);
    return s_call_code(self, NULL);
}

int
raw_exchange_declare(raw_t *self, const char *exchange, const char *type, bool durable,
                     bool auto_delete, bool passive)
{
    hop_enc_t *enc = raw_begin(self, HOP_CMD_EXCHANGE_DECLARE);
    hop_enc_cstr(enc, "exchange", exchange);
    if (type)
        hop_enc_cstr(enc, "type", type);
    hop_enc_bool(enc, "durable", durable);
    hop_enc_bool(enc, "auto_delete", auto_delete);
    hop_enc_bool(enc, "passive", passive);
    return s_call_code(self, NULL);
}

int
raw_bind(raw_t *self, const char *queue, const char *exchange, const char *key)
{
    hop_enc_t *enc = raw_begin(self, HOP_CMD_QUEUE_BIND);
    hop_enc_cstr(enc, "queue", queue);
    hop_enc_cstr(enc, "exchange", exchange);
    hop_enc_cstr(enc, "key", key);
    return s_call_code(self, NULL);
}

int
raw_queue_delete(raw_t *self, const char *queue, bool if_unused, bool if_empty)
{
    hop_enc_t *enc = raw_begin(self, HOP_CMD_QUEUE_DELETE);
    hop_enc_cstr(enc, "queue", queue);
    hop_enc_bool(enc, "if_unused", if_unused);
    hop_enc_bool(enc, "if_empty", if_empty);
    return s_call_code(self, NULL);
}

int
raw_consume(raw_t *self, const char *queue, const char *tag, uint64_t prefetch, bool no_ack,
            char *tag_out, size_t tag_out_size)
{
    hop_enc_t *enc = raw_begin(self, HOP_CMD_CONSUME);
    hop_enc_cstr(enc, "queue", queue);
    if (tag)
        hop_enc_cstr(enc, "consumer", tag);
    hop_enc_uint(enc, "prefetch", prefetch);
    hop_enc_bool(enc, "no_ack", no_ack);
    raw_msg_t *reply = NULL;
    int code = s_call_code(self, &reply);
    if (code == 0 && reply->wire.cmd != HOP_CMD_CONSUME_OK)
        code = -1;
    if (code == 0 && tag_out)
        raw_str(reply->wire.consumer, tag_out, tag_out_size);
    raw_msg_destroy(&reply);
    return code;
}

int
raw_cancel(raw_t *self, const char *tag)
{
    hop_enc_t *enc = raw_begin(self, HOP_CMD_CANCEL);
    hop_enc_cstr(enc, "consumer", tag);
    return s_call_code(self, NULL);
}

int
raw_publish(raw_t *self, const char *exchange, const char *key, const void *body, size_t body_size)
{
    hop_enc_t *enc = raw_begin_noid(self, HOP_CMD_PUBLISH);
    hop_enc_cstr(enc, "exchange", exchange);
    hop_enc_cstr(enc, "key", key);
    return raw_send_enc(self, body ? body : "", body ? body_size : 0);
}

int
raw_ack(raw_t *self, uint64_t tag, bool multiple)
{
    hop_enc_t *enc = raw_begin_noid(self, HOP_CMD_ACK);
    hop_enc_uint(enc, "tag", tag);
    if (multiple)
        hop_enc_bool(enc, "multiple", true);
    return raw_send_enc(self, NULL, 0);
}

int
raw_nack(raw_t *self, uint64_t tag, bool multiple, bool requeue)
{
    hop_enc_t *enc = raw_begin_noid(self, HOP_CMD_NACK);
    hop_enc_uint(enc, "tag", tag);
    hop_enc_bool(enc, "multiple", multiple);
    hop_enc_bool(enc, "requeue", requeue);
    return raw_send_enc(self, NULL, 0);
}

raw_msg_t *
raw_list(raw_t *self, const char *what)
{
    hop_enc_t *enc = raw_begin(self, HOP_CMD_LIST);
    hop_enc_cstr(enc, "what", what);
    raw_msg_t *reply = raw_call(self);
    if (reply && reply->wire.cmd != HOP_CMD_LIST_OK)
        raw_msg_destroy(&reply);
    return reply;
}

raw_msg_t *
raw_status(raw_t *self)
{
    raw_begin(self, HOP_CMD_STATUS);
    raw_msg_t *reply = raw_call(self);
    if (reply && reply->wire.cmd != HOP_CMD_STATUS_OK)
        raw_msg_destroy(&reply);
    return reply;
}

bool
raw_queue_stat(raw_t *self, const char *queue, const char *field, uint64_t *out)
{
    raw_msg_t *list = raw_list(self, "queues");
    if (!list)
        return false;
    bool found =
        harness_items_uint(list->wire.items.ptr, list->wire.items.len, "name", queue, field, out);
    raw_msg_destroy(&list);
    return found;
}

// Reading ---------------------------------------------------------------------------------

const char *
raw_body(const raw_msg_t *msg, char *buf, size_t size)
{
    size_t len = msg->has_body ? zmq_msg_size((zmq_msg_t *)&msg->body) : 0;
    if (len > size - 1)
        len = size - 1;
    if (len)
        memcpy(buf, zmq_msg_data((zmq_msg_t *)&msg->body), len);
    buf[len] = '\0';
    return buf;
}

bool
raw_body_is(const raw_msg_t *msg, const char *text)
{
    size_t len = msg->has_body ? zmq_msg_size((zmq_msg_t *)&msg->body) : 0;
    return len == strlen(text) && memcmp(zmq_msg_data((zmq_msg_t *)&msg->body), text, len) == 0;
}

const char *
raw_str(hop_str_t s, char *buf, size_t size)
{
    size_t len = s.ptr ? s.len : 0;
    if (len > size - 1)
        len = size - 1;
    if (len)
        memcpy(buf, s.ptr, len);
    buf[len] = '\0';
    return buf;
}

bool
raw_str_is(hop_str_t s, const char *text)
{
    size_t len = strlen(text);
    return (s.ptr ? s.len : 0) == len && (len == 0 || memcmp(s.ptr, text, len) == 0);
}

// Test helpers ----------------------------------------------------------------------------

static int
s_fx_setup(void **state, const harness_opts_t *opts, bool batch)
{
    raw_fx_t *fx = calloc(1, sizeof *fx);
    if (!fx)
        return -1;
    fx->broker = harness_broker_start(opts);
    if (!fx->broker) {
        free(fx);
        return -1;
    }
    fx->a = raw_new(harness_broker_endpoint(fx->broker));
    fx->b = raw_new(harness_broker_endpoint(fx->broker));
    *state = fx;
    fx->batch = batch;
    int (*hello)(raw_t *, uint64_t, const char *) = batch ? raw_hello_batch : raw_hello;
    if (!fx->a || !fx->b || hello(fx->a, RAW_HB_LONG, "a") || hello(fx->b, RAW_HB_LONG, "b")) {
        fprintf(stderr, "setup: hello failed\n");
        return -1;
    }
    return 0;
}

int
raw_fx_setup(void **state)
{
    return s_fx_setup(state, NULL, false);
}

int
raw_fx_setup_small(void **state)
{
    harness_opts_t opts = {.max_message = RAW_SMALL_MAX};
    return s_fx_setup(state, &opts, false);
}

int
raw_fx_setup_batch(void **state)
{
    return s_fx_setup(state, NULL, true);
}

int
raw_fx_teardown(void **state)
{
    raw_fx_t *fx = *state;
    if (!fx)
        return 0;
    raw_destroy(&fx->a);
    raw_destroy(&fx->b);
    // The broker must still be up, and must exit cleanly (under ASan: without leaks).
    int rc = harness_broker_finish(&fx->broker);
    free(fx);
    *state = NULL;
    return rc;
}

// A passive declare of an exchange that always exists: its reply comes after everything the
// broker sent c before.
void
raw_sync(raw_t *c)
{
    assert_int_equal(raw_exchange_declare(c, "amq.direct", NULL, false, false, true), 0);
}

void
raw_publish_text(raw_t *c, const char *exchange, const char *key, const char *body,
                 const raw_pub_t *o)
{
    hop_enc_t *enc = raw_begin_noid(c, HOP_CMD_PUBLISH);
    hop_enc_cstr(enc, "exchange", exchange);
    hop_enc_cstr(enc, "key", key);
    if (o && o->seq)
        hop_enc_uint(enc, "seq", o->seq);
    if (o && o->mandatory)
        hop_enc_bool(enc, "mandatory", true);
    if (o && o->has_expiration)
        hop_enc_uint(enc, "expiration", o->expiration);
    if (o && o->priority)
        hop_enc_uint(enc, "priority", o->priority);
    if (o && o->message_id) {
        hop_enc_map_begin(enc, "props");
        hop_enc_cstr(enc, "content_type", "text/plain");
        hop_enc_cstr(enc, "message_id", o->message_id);
        hop_enc_map_end(enc);
    }
    assert_int_equal(raw_send_enc(c, body, strlen(body)), 0);
}

raw_msg_t *
raw_deliver(raw_t *c)
{
    raw_msg_t *m = raw_next(c, HOP_CMD_DELIVER, RAW_TIMEOUT_MS);
    if (!m)
        fail_msg("no delivery within %d ms", RAW_TIMEOUT_MS);
    return m;
}

void
raw_check_delivery(const raw_msg_t *m, const char *text, bool redelivered, uint64_t count)
{
    char buf[256];
    if (!raw_body_is(m, text))
        fail_msg("expected message '%s', got '%s'", text, raw_body(m, buf, sizeof buf));
    assert_true(m->wire.has & HOP_F_TAG);
    if (m->wire.redelivered != redelivered || m->wire.count != count)
        fail_msg("message '%s': expected redelivered=%d count=%llu, got redelivered=%d count=%llu",
                 text, redelivered, (unsigned long long)count, m->wire.redelivered,
                 (unsigned long long)m->wire.count);
}

uint64_t
raw_expect_deliver(raw_t *c, const char *text, bool redelivered, uint64_t count)
{
    raw_msg_t *m = raw_deliver(c);
    raw_check_delivery(m, text, redelivered, count);
    uint64_t tag = m->wire.tag;
    raw_msg_destroy(&m);
    return tag;
}

void
raw_expect_no_delivery(raw_t *c)
{
    raw_sync(c);
    size_t n = raw_pending(c, HOP_CMD_DELIVER);
    if (n) {
        raw_msg_t *m = raw_next(c, HOP_CMD_DELIVER, 0);
        char buf[256];
        fail_msg("%zu unexpected deliveries, the first '%s' (count %llu)", n,
                 raw_body(m, buf, sizeof buf), (unsigned long long)m->wire.count);
    }
}

void
raw_expect_no_error(raw_t *c)
{
    raw_sync(c);
    raw_msg_t *m = raw_pending(c, HOP_CMD_ERROR) ? raw_next(c, HOP_CMD_ERROR, 0) : NULL;
    if (m) {
        char text[512];
        fail_msg("unexpected error %d: %s", (int)m->wire.code,
                 raw_str(m->wire.text, text, sizeof text));
    }
}

raw_msg_t *
raw_get(raw_t *c, const char *queue, bool no_ack)
{
    hop_enc_t *enc = raw_begin(c, HOP_CMD_GET);
    hop_enc_cstr(enc, "queue", queue);
    hop_enc_bool(enc, "no_ack", no_ack);
    raw_msg_t *m = raw_call(c);
    assert_non_null(m);
    return m;
}

char *
raw_drain(raw_t *c, const char *queue, char *out, size_t size)
{
    out[0] = '\0';
    while (true) {
        raw_msg_t *m = raw_get(c, queue, true);
        if (m->wire.cmd == HOP_CMD_GET_EMPTY) {
            raw_msg_destroy(&m);
            return out;
        }
        assert_int_equal(m->wire.cmd, HOP_CMD_GET_OK);
        char body[256];
        raw_body(m, body, sizeof body);
        size_t len = strlen(out);
        snprintf(out + len, size - len, "%s%s", len ? "," : "", body);
        raw_msg_destroy(&m);
    }
}

uint64_t
raw_qstat(raw_t *c, const char *queue, const char *field)
{
    uint64_t value = 0;
    if (!raw_queue_stat(c, queue, field, &value))
        fail_msg("queue '%s' not listed (or no uint field '%s')", queue, field);
    return value;
}

uint64_t
raw_status_uint(raw_t *c, const char *field)
{
    raw_msg_t *m = raw_status(c);
    assert_non_null(m);
    uint64_t value = 0;
    bool found =
        harness_map_uint(zmq_msg_data(&m->header), zmq_msg_size(&m->header), field, &value);
    raw_msg_destroy(&m);
    if (!found)
        fail_msg("status has no uint field '%s'", field);
    return value;
}
