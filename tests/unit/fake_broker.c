// tests/unit/fake_broker.c - a scripted fake hopperd for the libhopper unit tests: a ROUTER
// socket on a thread of the test, answering from a script keyed on names (see fake_broker.h).
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "fake_broker.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void
fb_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

// Waits up to deadline_ms for *counter to reach at least want.
bool
fb_wait_for(atomic_int *counter, int want, int deadline_ms)
{
    for (int waited = 0; waited < deadline_ms; waited += 10) {
        if (atomic_load(counter) >= want)
            return true;
        fb_sleep_ms(10);
    }
    return atomic_load(counter) >= want;
}

const char fb_heartbeat_bytes[] = "\x81\xa3"
                                  "cmd"
                                  "\xa9"
                                  "heartbeat";

static void
s_fake_send_n(fb_broker_t *self, zmq_msg_t *rid, hop_enc_t *enc, const void *body, size_t body_size)
{
    size_t size;
    const void *header = hop_enc_end(enc, &size);
    zmq_send(self->router, zmq_msg_data(rid), zmq_msg_size(rid), ZMQ_SNDMORE);
    zmq_send(self->router, header, size, body ? ZMQ_SNDMORE : 0);
    if (body)
        zmq_send(self->router, body, body_size, 0);
}

static void
s_fake_send(fb_broker_t *self, zmq_msg_t *rid, hop_enc_t *enc, const char *body)
{
    s_fake_send_n(self, rid, enc, body, body ? strlen(body) : 0);
}

// Appends the header in enc and body as one record to records.
static void
s_record(msgpack_sbuffer *records, uint32_t *count, hop_enc_t *enc, const void *body,
         size_t body_size)
{
    size_t size;
    const void *header = hop_enc_end(enc, &size);
    hop_batch_append(records, header, size, body, body_size);
    (*count)++;
}

// Sends the records as a batch announcing count of them.
static void
s_fake_send_batch(fb_broker_t *self, zmq_msg_t *rid, hop_enc_t *enc, msgpack_sbuffer *records,
                  uint32_t count)
{
    hop_enc_begin(enc, HOP_CMD_BATCH);
    hop_enc_uint(enc, "count", count);
    size_t size;
    const void *header = hop_enc_end(enc, &size);
    zmq_send(self->router, zmq_msg_data(rid), zmq_msg_size(rid), ZMQ_SNDMORE);
    zmq_send(self->router, header, size, ZMQ_SNDMORE);
    zmq_send(self->router, records->data, records->size, 0);
}

static void
s_enc_deliver(hop_enc_t *enc, uint64_t tag)
{
    hop_enc_begin(enc, HOP_CMD_DELIVER);
    hop_enc_cstr(enc, "consumer", "ctag-b");
    hop_enc_uint(enc, "tag", tag);
    hop_enc_cstr(enc, "exchange", "ex");
    hop_enc_cstr(enc, "key", "k");
    hop_enc_uint(enc, "count", 1);
}

// Answers queue.declare "batch" with one batch: three deliveries (the second with a body too
// large to be copied), a heartbeat, the reply, a fourth delivery and an asynchronous error.
static void
s_fake_batch_reply(fb_broker_t *self, zmq_msg_t *rid, const hop_wire_t *w, hop_enc_t *enc)
{
    msgpack_sbuffer records;
    msgpack_sbuffer_init(&records);
    uint32_t count = 0;
    s_enc_deliver(enc, 1);
    hop_enc_map_begin(enc, "props");
    hop_enc_cstr(enc, "content_type", "text/plain");
    hop_enc_map_end(enc);
    s_record(&records, &count, enc, "one", 3);
    s_enc_deliver(enc, 2);
    static char big[HOP_BATCH_BODY_MAX + 1000];
    memset(big, 'b', sizeof big);
    s_record(&records, &count, enc, big, sizeof big);
    hop_enc_begin(enc, HOP_CMD_HEARTBEAT);
    s_record(&records, &count, enc, NULL, 0);
    hop_enc_begin(enc, HOP_CMD_QUEUE_OK);
    hop_enc_uint(enc, "id", w->id);
    hop_enc_cstr(enc, "queue", "batch");
    s_record(&records, &count, enc, NULL, 0);
    s_enc_deliver(enc, 3);
    s_record(&records, &count, enc, "three", 5);
    hop_enc_begin(enc, HOP_CMD_ERROR);
    hop_enc_uint(enc, "id", 0);
    hop_enc_uint(enc, "code", 404);
    hop_enc_cstr(enc, "text", "no exchange 'gone'");
    s_record(&records, &count, enc, NULL, 0);
    s_fake_send_batch(self, rid, enc, &records, count);
    msgpack_sbuffer_destroy(&records);
}

// Answers queue.declare "badbatch" with a batch that announces 3 records and holds 2
// deliveries, then the reply on its own.
static void
s_fake_bad_batch_reply(fb_broker_t *self, zmq_msg_t *rid, const hop_wire_t *w, hop_enc_t *enc)
{
    msgpack_sbuffer records;
    msgpack_sbuffer_init(&records);
    uint32_t count = 0;
    s_enc_deliver(enc, 1);
    s_record(&records, &count, enc, "x", 1);
    s_enc_deliver(enc, 2);
    s_record(&records, &count, enc, "y", 1);
    s_fake_send_batch(self, rid, enc, &records, count + 1);
    msgpack_sbuffer_destroy(&records);
    hop_enc_begin(enc, HOP_CMD_QUEUE_OK);
    hop_enc_uint(enc, "id", w->id);
    s_fake_send(self, rid, enc, NULL);
}

// Answers get "bget" with a batch: a delivery, then the get-ok.
static void
s_fake_batch_get(fb_broker_t *self, zmq_msg_t *rid, const hop_wire_t *w, hop_enc_t *enc)
{
    msgpack_sbuffer records;
    msgpack_sbuffer_init(&records);
    uint32_t count = 0;
    s_enc_deliver(enc, 5);
    s_record(&records, &count, enc, "d", 1);
    hop_enc_begin(enc, HOP_CMD_GET_OK);
    hop_enc_uint(enc, "id", w->id);
    hop_enc_uint(enc, "tag", 6);
    hop_enc_cstr(enc, "key", "bget");
    s_record(&records, &count, enc, "g", 1);
    s_fake_send_batch(self, rid, enc, &records, count);
    msgpack_sbuffer_destroy(&records);
}

bool
fb_wire_is(hop_str_t str, const char *value)
{
    return str.ptr && str.len == strlen(value) && memcmp(str.ptr, value, str.len) == 0;
}

// Checks the order of burst messages and how they came.
static void
s_fake_burst(fb_broker_t *self, const hop_wire_t *w, const uint8_t *body, size_t body_size,
             bool batched)
{
    long seq = -1;
    if (w->cmd == HOP_CMD_PUBLISH && fb_wire_is(w->exchange, "burst") && body_size >= 4)
        seq = (long)((uint32_t)body[0] << 24 | (uint32_t)body[1] << 16 | (uint32_t)body[2] << 8 |
                     body[3]);
    else if (w->cmd == HOP_CMD_ACK && w->tag >= FB_BURST_TAG)
        seq = (long)(w->tag - FB_BURST_TAG);
    else
        return;
    int at = atomic_load(&self->seen);
    if (seq != at || at >= FB_BURST) {
        atomic_fetch_add(&self->out_of_order, 1);
        return;
    }
    self->how[at] = batched ? 2 : 1;
    self->body_size[at] = (uint32_t)body_size;
    atomic_fetch_add(&self->seen, 1); // publishes how[at] to the test thread
}

// Keeps the header of a command from the client for the test to decode.
static void
s_fake_note(fb_broker_t *self, const hop_wire_t *w, const uint8_t *head, size_t head_size,
            bool batched)
{
    if (head_size <= sizeof self->last[0]) {
        memcpy(self->last[w->cmd], head, head_size);
        self->last_size[w->cmd] = head_size;
    }
    int n = atomic_load(&self->pubs);
    if (w->cmd == HOP_CMD_PUBLISH && fb_wire_is(w->exchange, "c") && n < FB_PUBS &&
        head_size <= sizeof self->pub_head[0]) {
        memcpy(self->pub_head[n], head, head_size);
        self->pub_size[n] = head_size;
        self->pub_batched[n] = batched;
        atomic_fetch_add(&self->pubs, 1); // publishes the copy to the test thread
    }
    atomic_fetch_add(&self->count[w->cmd], 1);
}

static void
s_enc_confirm(hop_enc_t *enc, uint64_t seq, bool multiple, bool nack)
{
    hop_enc_begin(enc, HOP_CMD_CONFIRM);
    hop_enc_uint(enc, "seq", seq);
    hop_enc_bool(enc, "multiple", multiple);
    if (nack) {
        hop_enc_bool(enc, "nack", true);
        hop_enc_uint(enc, "code", 506);
        hop_enc_cstr(enc, "text", "queue 'jobs' is full");
    }
}

static void
s_enc_return(hop_enc_t *enc, const hop_wire_t *w)
{
    hop_enc_begin(enc, HOP_CMD_RETURN);
    hop_enc_uint(enc, "code", 312);
    hop_enc_cstr(enc, "text", "NO_ROUTE");
    hop_enc_str(enc, "exchange", w->exchange.ptr, w->exchange.len);
    hop_enc_str(enc, "key", w->key.ptr, w->key.len);
    if (w->has & HOP_F_SEQ)
        hop_enc_uint(enc, "seq", w->seq);
    hop_enc_map_begin(enc, "props");
    hop_enc_cstr(enc, "content_type", "text/plain");
    hop_enc_map_end(enc);
}

static void
s_enc_revoked(hop_enc_t *enc, uint64_t tag)
{
    hop_enc_begin(enc, HOP_CMD_REVOKED);
    hop_enc_cstr(enc, "consumer", "ctag-r");
    hop_enc_uint(enc, "tag", tag);
    hop_enc_cstr(enc, "text", "not acked within 1000 ms");
}

// Publishes to exchange "c": the routing key picks the answer. "hold": none; "ok": a confirm of
// its seq; "all": a multiple confirm up to its seq; "nack": a negative confirm (506); "ret": a
// return with its body, then a confirm of its seq (when it has one); "batch": one batch of a
// negative confirm of seq - 2, a return, a revoked delivery (tag 9) and a multiple confirm up to
// its seq; "flood": FB_FLOOD deliveries (tags 1, 2, ...; the ROUTER drops what the client's
// pipe cannot take). Publishes without a seq get no confirm.
static bool
s_fake_confirm(fb_broker_t *self, zmq_msg_t *rid, const hop_wire_t *w, const uint8_t *body,
               size_t body_size, hop_enc_t *enc)
{
    bool has_seq = w->has & HOP_F_SEQ;
    if (fb_wire_is(w->key, "flood")) {
        for (uint64_t tag = 1; tag <= FB_FLOOD; tag++) {
            s_enc_deliver(enc, tag);
            s_fake_send(self, rid, enc, NULL);
        }
        return true;
    }
    if (fb_wire_is(w->key, "batch")) {
        msgpack_sbuffer records;
        msgpack_sbuffer_init(&records);
        uint32_t count = 0;
        s_enc_confirm(enc, w->seq - 2, false, true);
        s_record(&records, &count, enc, NULL, 0);
        s_enc_return(enc, w);
        s_record(&records, &count, enc, body, body_size);
        s_enc_revoked(enc, 9);
        s_record(&records, &count, enc, NULL, 0);
        s_enc_confirm(enc, w->seq, true, false);
        s_record(&records, &count, enc, NULL, 0);
        s_fake_send_batch(self, rid, enc, &records, count);
        msgpack_sbuffer_destroy(&records);
        return true;
    }
    if (fb_wire_is(w->key, "ret")) {
        s_enc_return(enc, w);
        s_fake_send_n(self, rid, enc, body ? body : (const uint8_t *)"", body_size);
    }
    if (!has_seq || fb_wire_is(w->key, "hold"))
        return fb_wire_is(w->key, "ret");
    s_enc_confirm(enc, w->seq, fb_wire_is(w->key, "all"), fb_wire_is(w->key, "nack"));
    s_fake_send(self, rid, enc, NULL);
    return true;
}

// consume: consume-ok with the tag asked for, else "ctag-r". Queue "rq" then gets delivery 1
// ("work").
static void
s_fake_consume(fb_broker_t *self, zmq_msg_t *rid, const hop_wire_t *w, hop_enc_t *enc)
{
    hop_enc_begin(enc, HOP_CMD_CONSUME_OK);
    hop_enc_uint(enc, "id", w->id);
    if (w->consumer.len)
        hop_enc_str(enc, "consumer", w->consumer.ptr, w->consumer.len);
    else
        hop_enc_cstr(enc, "consumer", "ctag-r");
    s_fake_send(self, rid, enc, NULL);
    if (fb_wire_is(w->queue, "rq")) {
        s_enc_deliver(enc, 1);
        s_fake_send(self, rid, enc, "work");
    }
}

// Answers queue.declare "rq2" with one batch: deliveries 2 and 3, the revocation of 2, then
// the reply (deliveries that arrive while the application waits for a reply are buffered).
static void
s_fake_revoke_batch_reply(fb_broker_t *self, zmq_msg_t *rid, const hop_wire_t *w, hop_enc_t *enc)
{
    msgpack_sbuffer records;
    msgpack_sbuffer_init(&records);
    uint32_t count = 0;
    s_enc_deliver(enc, 2);
    s_record(&records, &count, enc, "two", 3);
    s_enc_deliver(enc, 3);
    s_record(&records, &count, enc, "three", 5);
    s_enc_revoked(enc, 2);
    s_record(&records, &count, enc, NULL, 0);
    hop_enc_begin(enc, HOP_CMD_QUEUE_OK);
    hop_enc_uint(enc, "id", w->id);
    hop_enc_cstr(enc, "queue", "rq2");
    s_record(&records, &count, enc, NULL, 0);
    s_fake_send_batch(self, rid, enc, &records, count);
    msgpack_sbuffer_destroy(&records);
}

// Encodes the death array of the "dead" get and of the parsing tests: two records, newest first,
// with an entry that is not a map between them.
void
fb_enc_deaths(hop_enc_t *enc)
{
    hop_enc_array_begin(enc, "death", 3);
    hop_enc_map_begin(enc, NULL);
    hop_enc_cstr(enc, "reason", "expired");
    hop_enc_cstr(enc, "queue", "jobs");
    hop_enc_cstr(enc, "exchange", "");
    hop_enc_cstr(enc, "key", "jobs.eu");
    hop_enc_uint(enc, "time", 1700000000123);
    hop_enc_uint(enc, "count", 2);
    hop_enc_cstr(enc, "future", "ignored");
    hop_enc_map_end(enc);
    msgpack_pack_int(hop_enc_packer(enc), 5); // not a map: skipped
    hop_enc_map_begin(enc, NULL);
    hop_enc_cstr(enc, "reason", "rejected");
    hop_enc_cstr(enc, "queue", "work");
    hop_enc_uint(enc, "exchange", 3); // mistyped: read as absent
    hop_enc_uint(enc, "time", 1700000000000);
    hop_enc_uint(enc, "count", 1);
    hop_enc_map_end(enc);
}

// Answers one command. Returns whether it sent anything.
static bool
s_fake_answer(fb_broker_t *self, zmq_msg_t *rid, const hop_wire_t *w, const uint8_t *body,
              size_t body_size, hop_enc_t *enc)
{
    switch (w->cmd) {
    case HOP_CMD_HELLO:
        atomic_fetch_add(&self->hellos, 1);
        snprintf(self->name, sizeof self->name, "%.*s", (int)w->name.len,
                 w->name.ptr ? w->name.ptr : "");
        self->hello_batch = w->batch;
        hop_enc_begin(enc, HOP_CMD_HELLO_OK);
        hop_enc_uint(enc, "id", w->id);
        hop_enc_uint(enc, "version", 1);
        hop_enc_cstr(enc, "server", "fake");
        hop_enc_uint(enc, "heartbeat", 100);
        hop_enc_uint(enc, "timeout", 500);
        hop_enc_uint(enc, "max_message", self->max_message ? self->max_message : 1000);
        break;
    case HOP_CMD_HEARTBEAT:
        atomic_fetch_add(&self->heartbeats, 1);
        return false;
    case HOP_CMD_QUEUE_DECLARE: {
        if (fb_wire_is(w->queue, "batch")) {
            s_fake_batch_reply(self, rid, w, enc);
            return true;
        }
        if (fb_wire_is(w->queue, "rq2")) {
            s_fake_revoke_batch_reply(self, rid, w, enc);
            return true;
        }
        if (fb_wire_is(w->queue, "badbatch")) {
            s_fake_bad_batch_reply(self, rid, w, enc);
            return true;
        }
        if (fb_wire_is(w->queue, "revoke")) {
            s_enc_revoked(enc, 1); // before the reply, as the broker's timer may fire
            s_fake_send(self, rid, enc, NULL);
        }
        if (fb_wire_is(w->queue, "typo")) {
            // A reply with a mistyped field placed before its id (a newer or buggier broker).
            hop_enc_begin(enc, HOP_CMD_QUEUE_OK);
            hop_enc_cstr(enc, "messages", "many");
            hop_enc_uint(enc, "id", w->id);
            hop_enc_cstr(enc, "queue", "typo");
            break;
        }
        int code = 0;
        if (w->queue.len == 4 && w->queue.ptr[0] == 'e')
            code = atoi(w->queue.ptr + 1); // "e404" answers error 404
        if (code) {
            hop_enc_begin(enc, HOP_CMD_ERROR);
            hop_enc_uint(enc, "id", w->id);
            hop_enc_uint(enc, "code", (uint64_t)code);
            char text[64];
            snprintf(text, sizeof text, "no queue '%.*s'", (int)w->queue.len, w->queue.ptr);
            hop_enc_cstr(enc, "text", text);
        } else {
            hop_enc_begin(enc, HOP_CMD_QUEUE_OK);
            hop_enc_uint(enc, "id", w->id);
            hop_enc_str(enc, "queue", w->queue.len ? w->queue.ptr : "amq.gen-1",
                        w->queue.len ? w->queue.len : 9);
            hop_enc_uint(enc, "messages", 0);
            hop_enc_uint(enc, "consumers", 0);
        }
        break;
    }
    case HOP_CMD_PUBLISH:
        if (fb_wire_is(w->exchange, "c"))
            return s_fake_confirm(self, rid, w, body, body_size, enc);
        if (!(w->exchange.len == 4 && memcmp(w->exchange.ptr, "nope", 4) == 0))
            return false;
        hop_enc_begin(enc, HOP_CMD_ERROR);
        hop_enc_uint(enc, "id", 0);
        hop_enc_uint(enc, "code", 404);
        hop_enc_cstr(enc, "text", "no exchange 'nope'");
        break;
    case HOP_CMD_CONSUME:
        s_fake_consume(self, rid, w, enc);
        return true;
    case HOP_CMD_GET:
        if (fb_wire_is(w->queue, "bget")) {
            s_fake_batch_get(self, rid, w, enc);
            return true;
        }
        if (fb_wire_is(w->queue, "dead")) {
            hop_enc_begin(enc, HOP_CMD_GET_OK);
            hop_enc_uint(enc, "id", w->id);
            hop_enc_uint(enc, "tag", 8);
            hop_enc_cstr(enc, "exchange", "dlx");
            hop_enc_cstr(enc, "key", "jobs.eu");
            hop_enc_uint(enc, "priority", 7);
            fb_enc_deaths(enc);
            s_fake_send(self, rid, enc, "dead");
            return true;
        }
        hop_enc_begin(enc, HOP_CMD_GET_OK);
        hop_enc_uint(enc, "id", w->id);
        hop_enc_uint(enc, "tag", 7);
        hop_enc_cstr(enc, "exchange", "");
        hop_enc_cstr(enc, "key", "q");
        hop_enc_uint(enc, "messages", 0);
        // Queue "hb" holds a message whose body looks exactly like a heartbeat header.
        s_fake_send(self, rid, enc,
                    w->queue.len == 2 && memcmp(w->queue.ptr, "hb", 2) == 0 ? fb_heartbeat_bytes
                                                                            : "payload");
        return true;
    case HOP_CMD_CLOSE:
        atomic_fetch_add(&self->closes, 1);
        hop_enc_begin(enc, HOP_CMD_CLOSE_OK);
        hop_enc_uint(enc, "id", w->id);
        break;
    default:
        return false;
    }
    s_fake_send(self, rid, enc, NULL);
    return true;
}

// Handles one message from the client: its records one by one when it is a batch. Returns
// whether it sent anything.
static bool
s_fake_handle(fb_broker_t *self, zmq_msg_t *frames, int n, hop_enc_t *enc)
{
    hop_wire_t wire;
    if (hop_wire_decode(&wire, zmq_msg_data(&frames[1]), zmq_msg_size(&frames[1]), NULL, 0))
        return false;
    const uint8_t *body = n >= 3 ? zmq_msg_data(&frames[2]) : NULL;
    size_t body_size = n >= 3 ? zmq_msg_size(&frames[2]) : 0;
    if (wire.cmd != HOP_CMD_BATCH) {
        s_fake_note(self, &wire, zmq_msg_data(&frames[1]), zmq_msg_size(&frames[1]), false);
        s_fake_burst(self, &wire, body, body_size, false);
        return s_fake_answer(self, &frames[0], &wire, body, body_size, enc);
    }
    atomic_fetch_add(&self->batches, 1);
    bool sent = false;
    uint64_t records = 0;
    hop_batch_t batch;
    hop_batch_init(&batch, body, body_size);
    const uint8_t *head, *rec_body;
    uint32_t head_size, rec_body_size;
    int rc;
    while ((rc = hop_batch_next(&batch, &head, &head_size, &rec_body, &rec_body_size)) == 1) {
        records++;
        hop_wire_t rec;
        if (hop_wire_decode(&rec, head, head_size, NULL, 0) || rec.cmd == HOP_CMD_BATCH ||
            rec.cmd == HOP_CMD_HELLO)
            break;
        s_fake_note(self, &rec, head, head_size, true);
        s_fake_burst(self, &rec, rec_body, rec_body_size, true);
        sent |= s_fake_answer(self, &frames[0], &rec, rec_body, rec_body_size, enc);
    }
    // The client never batches a lone message, nor more than 256.
    if (rc != 0 || records != wire.count || records < 2 || records > 256)
        atomic_fetch_add(&self->out_of_order, 1000);
    return sent;
}

static void *
s_fake_run(void *arg)
{
    fb_broker_t *self = arg;
    hop_enc_t enc;
    hop_enc_init(&enc);
    zmq_msg_t rid; // routing id of the last client heard, for heartbeats
    zmq_msg_init(&rid);
    bool known = false;
    int64_t last_sent = hop_client_now();
    zmq_pollitem_t item = {self->router, 0, ZMQ_POLLIN, 0};
    while (!atomic_load(&self->stop)) {
        if (atomic_load(&self->paused)) {
            fb_sleep_ms(2);
            last_sent = hop_client_now();
            continue;
        }
        if (atomic_load(&self->deaf)) {
            fb_sleep_ms(2);
            if (known && hop_client_now() - last_sent >= 100) {
                hop_enc_begin(&enc, HOP_CMD_HEARTBEAT);
                s_fake_send(self, &rid, &enc, NULL);
                last_sent = hop_client_now();
            }
            continue;
        }
        zmq_poll(&item, 1, 20);
        bool silent = atomic_load(&self->silent);
        while (true) {
            zmq_msg_t frames[3];
            int n = 0;
            zmq_msg_init(&frames[0]);
            if (zmq_msg_recv(&frames[0], self->router, ZMQ_DONTWAIT) < 0) {
                zmq_msg_close(&frames[0]);
                break;
            }
            n = 1;
            while (zmq_msg_more(&frames[n - 1])) {
                zmq_msg_t *into = &frames[n < 3 ? n : 2];
                if (n >= 3)
                    zmq_msg_close(into);
                zmq_msg_init(into);
                zmq_msg_recv(into, self->router, 0);
                if (n < 3)
                    n++;
            }
            if (!silent && n >= 2) {
                if (s_fake_handle(self, frames, n, &enc))
                    last_sent = hop_client_now();
                zmq_msg_close(&rid);
                zmq_msg_init(&rid);
                zmq_msg_copy(&rid, &frames[0]);
                known = true;
            }
            for (int i = 0; i < n; i++)
                zmq_msg_close(&frames[i]);
        }
        if (!silent && known && hop_client_now() - last_sent >= 100) {
            hop_enc_begin(&enc, HOP_CMD_HEARTBEAT);
            s_fake_send(self, &rid, &enc, NULL);
            last_sent = hop_client_now();
        }
    }
    zmq_msg_close(&rid);
    hop_enc_fini(&enc);
    return NULL;
}

int
fb_setup(void **state)
{
    fb_broker_t *self = calloc(1, sizeof *self);
    self->ctx = zmq_ctx_new();
    self->router = zmq_socket(self->ctx, ZMQ_ROUTER);
    int zero = 0;
    zmq_setsockopt(self->router, ZMQ_LINGER, &zero, sizeof zero);
    if (zmq_bind(self->router, "tcp://127.0.0.1:*"))
        return -1;
    size_t size = sizeof self->endpoint;
    zmq_getsockopt(self->router, ZMQ_LAST_ENDPOINT, self->endpoint, &size);
    pthread_create(&self->thread, NULL, s_fake_run, self);
    *state = self;
    return 0;
}

int
fb_teardown(void **state)
{
    fb_broker_t *self = *state;
    atomic_store(&self->stop, true);
    pthread_join(self->thread, NULL);
    zmq_close(self->router);
    zmq_ctx_term(self->ctx);
    free(self);
    return 0;
}

hop_client_t *
fb_connect(fb_broker_t *fake)
{
    hop_client_t *client = hop_client_new();
    hop_client_set_timeout(client, 1000);
    hop_client_set_name(client, "unit");
    assert_int_equal(hop_client_connect(client, fake->endpoint), HOP_OK);
    return client;
}

// Decodes publish i to exchange "c" as the fake broker received it.
void
fb_pub(fb_broker_t *fake, int i, hop_wire_t *wire)
{
    assert_true(i < atomic_load(&fake->pubs));
    assert_int_equal(hop_wire_decode(wire, fake->pub_head[i], fake->pub_size[i], NULL, 0), 0);
    assert_int_equal(wire->cmd, HOP_CMD_PUBLISH);
}

// Decodes the last header of cmd the fake broker received, once it has seen at least n.
void
fb_last(fb_broker_t *fake, hop_cmd_t cmd, int n, hop_wire_t *wire)
{
    assert_true(fb_wait_for(&fake->count[cmd], n, 5000));
    assert_int_equal(hop_wire_decode(wire, fake->last[cmd], fake->last_size[cmd], NULL, 0), 0);
    assert_int_equal(wire->cmd, cmd);
}
