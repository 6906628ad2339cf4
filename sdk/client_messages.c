// sdk/client_messages.c - messages in and out: publish, consumers (consume, cancel,
// subscribe, and re-creating them on reconnect), receive/dispatch, acknowledgements, get, and
// request/reply. See client.c for the request core and how asynchronous errors are reported.
#include "client_internal.h"

#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// ---------------------------------------------------------------------------------------
// Publishing

static int
s_check_props(hop_client_t *self, const hop_props_t *props)
{
    if (!props)
        return HOP_OK;
    if (props->header_count && !props->headers)
        return hop_client_fail(self, HOP_EINVAL, 0, "props: %zu headers but headers is NULL",
                               props->header_count);
    for (size_t i = 0; i < props->header_count; i++)
        if (!props->headers[i].key)
            return hop_client_fail(self, HOP_EINVAL, 0, "props: header %zu has a NULL key", i);
    return HOP_OK;
}

// Writes props as PROTOCOL.md section 5's map, with only the fields that are set.
static void
s_enc_props(hop_enc_t *enc, const hop_props_t *props, const char *reply_to, const char *corr)
{
    const char *fields[][2] = {
        {"content_type", props ? props->content_type : NULL},
        {"content_encoding", props ? props->content_encoding : NULL},
        {"message_id", props ? props->message_id : NULL},
        {"correlation_id", corr    ? corr
                           : props ? props->correlation_id
                                   : NULL},
        {"reply_to", reply_to ? reply_to
                     : props  ? props->reply_to
                              : NULL},
        {"type", props ? props->type : NULL},
        {"app_id", props ? props->app_id : NULL},
    };
    bool any = props && (props->timestamp || props->header_count);
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
        any = any || fields[i][1];
    if (!any)
        return;
    hop_enc_map_begin(enc, "props");
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
        if (fields[i][1])
            hop_enc_cstr(enc, fields[i][0], fields[i][1]);
    if (props && props->timestamp)
        hop_enc_uint(enc, "timestamp", props->timestamp);
    if (props && props->header_count) {
        hop_enc_map_begin(enc, "headers");
        for (size_t i = 0; i < props->header_count; i++)
            hop_enc_cstr(enc, props->headers[i].key, props->headers[i].value);
        hop_enc_map_end(enc);
    }
    hop_enc_map_end(enc);
}

// Publishes without the connection checks; reply_to/corr override props' when not NULL. opts
// may be NULL. In confirm mode the publish is numbered (its seq in *seq_out, may be NULL).
static int
s_publish(hop_client_t *self, const char *exchange, const char *routing_key, const void *body,
          size_t body_size, const hop_props_t *props, const hop_publish_opts_t *opts,
          const char *reply_to, const char *corr, uint64_t *seq_out)
{
    // The broker would refuse it with 311: say so without sending the bytes, the same way.
    if (self->max_message && body_size > self->max_message)
        return hop_client_fail(self, HOP_EBROKER, HOP_CODE_CONTENT_TOO_LARGE,
                               "body of %zu bytes is over the broker's max_message (%" PRIu64
                               "): 311 content-too-large",
                               body_size, self->max_message);
    uint64_t seq;
    int rc = hop_client_confirm_next(self, &seq);
    if (rc)
        return rc;
    // No id: the broker's answer to a failed publish comes back with id 0, an asynchronous
    // error (in confirm mode: its negative confirm). Each publish has a header of its own, in a
    // batch too, so its seq travels with it. The encoder and the outbox reuse their buffers: no
    // malloc of ours per publish.
    hop_enc_begin(&self->enc, HOP_CMD_PUBLISH);
    hop_enc_cstr(&self->enc, "exchange", exchange);
    hop_enc_cstr(&self->enc, "key", routing_key);
    if (seq)
        hop_enc_uint(&self->enc, "seq", seq);
    if (opts) {
        if (opts->mandatory)
            hop_enc_bool(&self->enc, "mandatory", true);
        if (opts->persistent)
            hop_enc_bool(&self->enc, "persistent", true);
        if (opts->expiration)
            hop_enc_uint(&self->enc, "expiration", opts->expiration);
        if (opts->priority)
            hop_enc_uint(&self->enc, "priority", opts->priority);
    }
    s_enc_props(&self->enc, props, reply_to, corr);
    rc = hop_client_send_header(self, body, body_size, true);
    if (rc == HOP_OK && seq)
        hop_client_confirm_sent(self, seq); // tracked once it is on its way, never before
    if (seq_out)
        *seq_out = rc == HOP_OK ? seq : 0;
    return rc;
}

static int
s_check_publish(hop_client_t *self, const char *exchange, const char *routing_key, const void *body,
                size_t body_size, const hop_props_t *props)
{
    int rc = hop_client_check_name(self, "exchange name", exchange);
    if (rc == HOP_OK && routing_key)
        rc = hop_client_check_name(self, "routing key", routing_key);
    if (rc == HOP_OK && !body && body_size)
        rc = hop_client_fail(self, HOP_EINVAL, 0, "body is NULL but body_size is %zu", body_size);
    return rc ? rc : s_check_props(self, props);
}

int
hop_client_publish(hop_client_t *self, const char *exchange, const char *routing_key,
                   const void *body, size_t body_size, const hop_props_t *props)
{
    return hop_client_publish_ex(self, exchange, routing_key, body, body_size, props, NULL, NULL);
}

// Flow control (PROTOCOL.md 6.3): the broker asked us to pause because a queue we publish to
// is over its watermark. Wait for it to say "resume" (buffering deliveries meanwhile) for up
// to the client's timeout; then the publish fails with HOP_EFULL, so that an application that
// also consumes on this client can go and ack.
static int
s_wait_resumed(hop_client_t *self)
{
    int64_t deadline = hop_client_now() + self->timeout_ms;
    while (self->paused) {
        hop_inmsg_t msg;
        int rc = hop_client_step(self, deadline, NULL, &msg);
        if (rc == HOP_ETIMEOUT)
            return hop_client_fail(self, HOP_EFULL, 0,
                                   "publishing paused by the broker for %d ms: %s (consume "
                                   "faster, bound the queue with max-length, or retry later)",
                                   self->timeout_ms, self->paused_why);
        if (rc < 0)
            return rc;
    }
    return HOP_OK;
}

int
hop_client_publish_ex(hop_client_t *self, const char *exchange, const char *routing_key,
                      const void *body, size_t body_size, const hop_props_t *props,
                      const hop_publish_opts_t *opts, uint64_t *seq_out)
{
    assert(self);
    if (seq_out)
        *seq_out = 0;
    int rc = s_check_publish(self, exchange, routing_key, body, body_size, props);
    // Looking at the pipes costs a system call inside libzmq: a fast publisher does it every
    // 64 publishes, which still notices errors, confirms and a lost connection promptly.
    if (rc == HOP_OK && (!self->io || (++self->publishes & 63) == 0))
        rc = hop_client_ready(self, false);
    if (rc == HOP_OK && self->paused)
        rc = s_wait_resumed(self);
    if (rc == HOP_OK)
        rc = s_publish(self, exchange, routing_key, body, body_size, props, opts, NULL, NULL,
                       seq_out);
    if (self->ev_head)
        hop_client_fire(self);
    return rc;
}

// ---------------------------------------------------------------------------------------
// Consumer records, and re-creating them on reconnect

static int
s_consume(hop_client_t *self, const char *queue, const char *tag, int prefetch, int flags,
          uint64_t ack_timeout, char *tag_out, size_t tag_out_size)
{
    uint64_t id = hop_client_begin(self, HOP_CMD_CONSUME);
    hop_enc_cstr(&self->enc, "queue", queue);
    if (tag && *tag)
        hop_enc_cstr(&self->enc, "consumer", tag);
    if (prefetch > 0)
        hop_enc_uint(&self->enc, "prefetch", (uint64_t)prefetch);
    if (flags & HOP_NO_ACK)
        hop_enc_bool(&self->enc, "no_ack", true);
    if (flags & HOP_EXCLUSIVE)
        hop_enc_bool(&self->enc, "exclusive", true);
    if (ack_timeout)
        hop_enc_uint(&self->enc, "ack_timeout", ack_timeout);
    hop_inmsg_t reply;
    int rc = hop_client_call(self, id, HOP_CMD_CONSUME_OK, "consume", &reply);
    if (rc)
        return rc;
    const hop_wire_t *w = &reply.wire;
    if (w->consumer.ptr)
        rc = hop_client_copy_out(self, tag_out, tag_out_size, "consumer tag", w->consumer.ptr,
                                 w->consumer.len);
    else if (tag && *tag)
        rc = hop_client_copy_out(self, tag_out, tag_out_size, "consumer tag", tag, strlen(tag));
    else
        rc = hop_client_fail(self, HOP_EPROTO, 0, "consume-ok without a consumer tag");
    hop_inmsg_close(&reply);
    return rc;
}

static int
s_cancel(hop_client_t *self, const char *tag)
{
    uint64_t id = hop_client_begin(self, HOP_CMD_CANCEL);
    hop_enc_cstr(&self->enc, "consumer", tag);
    return hop_client_call_ok(self, id, HOP_CMD_OK, "cancel", NULL);
}

// A server-named subscription queue bound to exchange, consumed with no-ack. The queue name
// goes to queue (HOP_NAME_MAX + 1 bytes), the tag in force to tag_out.
static int
s_subscribe(hop_client_t *self, const char *exchange, const char *pattern, const char *tag,
            char *queue, char *tag_out)
{
    int rc = hop_client_do_declare_queue(self, "", HOP_EXCLUSIVE | HOP_AUTO_DELETE, NULL, queue,
                                         HOP_NAME_MAX + 1, NULL, NULL);
    if (rc)
        return rc;
    rc = hop_client_do_bind(self, HOP_CMD_QUEUE_BIND, queue, exchange, pattern);
    if (rc == HOP_OK)
        rc = s_consume(self, queue, tag, 0, HOP_NO_ACK, 0, tag_out, HOP_NAME_MAX + 1);
    if (rc && rc != HOP_ECONNECT) {
        // Auto-delete only starts with a first consumer: remove the orphan ourselves, keeping
        // the error that matters.
        char error[HOP_ERROR_MAX];
        int code = self->error_code;
        snprintf(error, sizeof error, "%s", self->error);
        hop_client_do_delete_queue(self, queue, 0, NULL);
        hop_client_fail(self, rc, code, "%s", error);
    }
    return rc;
}

static hop_consumer_rec_t *
s_remember(hop_client_t *self, const char *tag, const char *queue, int prefetch, int flags,
           uint64_t ack_timeout)
{
    hop_consumer_rec_t *rec = calloc(1, sizeof *rec);
    if (!rec)
        abort();
    snprintf(rec->tag, sizeof rec->tag, "%s", tag);
    snprintf(rec->queue, sizeof rec->queue, "%s", queue);
    rec->prefetch = prefetch;
    rec->flags = flags;
    rec->ack_timeout = ack_timeout;
    rec->next = self->consumers;
    self->consumers = rec;
    return rec;
}

void
hop_client_forget_all(hop_client_t *self)
{
    while (self->consumers) {
        hop_consumer_rec_t *rec = self->consumers;
        self->consumers = rec->next;
        free(rec);
    }
    self->reply_queue[0] = '\0';
    self->reply_tag[0] = '\0';
}

int
hop_client_reconnect(hop_client_t *self)
{
    int rc = hop_client_open(self);
    if (rc)
        return rc;
    // The reply queue was exclusive to the old connection: the next request makes a new one.
    self->reply_queue[0] = '\0';
    self->reply_tag[0] = '\0';
    hop_consumer_rec_t **at = &self->consumers;
    while (*at) {
        hop_consumer_rec_t *rec = *at;
        char queue[HOP_NAME_MAX + 1], tag[HOP_NAME_MAX + 1];
        if (rec->subscription) {
            rc = s_subscribe(self, rec->exchange, rec->pattern, rec->tag, queue, tag);
            if (rc == HOP_OK)
                memcpy(rec->queue, queue, sizeof queue); // a new server-named queue
        } else
            rc = s_consume(self, rec->queue, rec->tag, rec->prefetch, rec->flags, rec->ack_timeout,
                           NULL, 0);
        if (rc == HOP_ECONNECT)
            return rc; // lost again; the records stay for the next attempt
        if (rc) {
            hop_client_async(self, rc, self->error_code,
                             "consumer '%s' on queue '%s' could not be restored after "
                             "reconnecting: %s",
                             rec->tag, rec->queue, self->error);
            *at = rec->next;
            free(rec);
            continue;
        }
        at = &rec->next;
    }
    return HOP_OK;
}

// ---------------------------------------------------------------------------------------
// Consuming

int
hop_client_consume(hop_client_t *self, const char *queue, const char *tag, int prefetch, int flags,
                   char *tag_out, size_t tag_out_size)
{
    return hop_client_consume_ex(self, queue, tag, prefetch, flags, 0, tag_out, tag_out_size);
}

int
hop_client_consume_ex(hop_client_t *self, const char *queue, const char *tag, int prefetch,
                      int flags, uint64_t ack_timeout_ms, char *tag_out, size_t tag_out_size)
{
    assert(self);
    int rc = hop_client_check_name(self, "queue name", queue);
    if (rc == HOP_OK && tag)
        rc = hop_client_check_name(self, "consumer tag", tag);
    if (rc == HOP_OK && prefetch < 0)
        rc = hop_client_fail(self, HOP_EINVAL, 0, "prefetch is negative (%d)", prefetch);
    if (rc == HOP_OK)
        rc = hop_client_check_flags(self, flags, HOP_NO_ACK | HOP_EXCLUSIVE, "hop_client_consume");
    if (rc == HOP_OK && ack_timeout_ms && ack_timeout_ms < 1000)
        rc = hop_client_fail(self, HOP_EINVAL, 0,
                             "ack_timeout_ms is %" PRIu64 ": it must be at least 1000 ms (0: the "
                             "queue's or the broker's default)",
                             ack_timeout_ms);
    if (rc == HOP_OK)
        rc = hop_client_ready(self, true);
    if (rc)
        return rc;
    char in_force[HOP_NAME_MAX + 1];
    rc = s_consume(self, queue, tag, prefetch, flags, ack_timeout_ms, in_force, sizeof in_force);
    if (rc)
        return rc;
    s_remember(self, in_force, queue, prefetch, flags, ack_timeout_ms);
    return hop_client_copy_out(self, tag_out, tag_out_size, "consumer tag", in_force,
                               strlen(in_force));
}

int
hop_client_cancel(hop_client_t *self, const char *tag)
{
    assert(self);
    int rc = hop_client_check_name(self, "consumer tag", tag);
    if (rc == HOP_OK)
        rc = hop_client_ready(self, true);
    if (rc)
        return rc;
    rc = s_cancel(self, tag);
    if (rc == HOP_OK || rc == HOP_ENOTFOUND)
        hop_client_forget(self, tag, strlen(tag)); // either way it is not ours any more
    return rc;
}

int
hop_client_subscribe(hop_client_t *self, const char *exchange, const char *pattern, char *queue_out,
                     size_t queue_out_size)
{
    assert(self);
    int rc = hop_client_check_name(self, "exchange name", exchange);
    if (rc == HOP_OK && pattern)
        rc = hop_client_check_name(self, "pattern", pattern);
    if (rc == HOP_OK)
        rc = hop_client_ready(self, true);
    if (rc)
        return rc;
    // "#" matches every routing key of a topic exchange and a fanout exchange ignores keys,
    // so it is the one default that works for both without knowing the exchange's type. A
    // direct exchange matches keys literally: subscribing to one needs an explicit key.
    if (!pattern || !*pattern)
        pattern = "#";
    char queue[HOP_NAME_MAX + 1], tag[HOP_NAME_MAX + 1];
    rc = s_subscribe(self, exchange, pattern, NULL, queue, tag);
    if (rc)
        return rc;
    hop_consumer_rec_t *rec = s_remember(self, tag, queue, 0, HOP_NO_ACK, 0);
    rec->subscription = true;
    snprintf(rec->exchange, sizeof rec->exchange, "%s", exchange);
    snprintf(rec->pattern, sizeof rec->pattern, "%s", pattern);
    return hop_client_copy_out(self, queue_out, queue_out_size, "queue name", queue, strlen(queue));
}

int
hop_client_receive(hop_client_t *self, hop_delivery_t **delivery_p, int timeout_ms)
{
    assert(self);
    if (!delivery_p)
        return hop_client_fail(self, HOP_EINVAL, 0, "delivery_p is NULL");
    *delivery_p = NULL;
    if (timeout_ms < -1)
        return hop_client_fail(self, HOP_EINVAL, 0, "timeout_ms is %d (-1 = forever)", timeout_ms);
    // Connected, the loop below does what hop_client_ready would (absorbing what arrived),
    // without looking at the pipes twice more per message.
    int rc = self->io ? hop_client_take_async(self) : hop_client_ready(self, true);
    if (rc)
        return rc;
    // The clock is read only once there is nothing buffered: most calls return at once.
    int64_t deadline = 0;
    bool timed = false;
    for (;;) {
        if (self->ev_head)
            hop_client_fire(self); // what arrived before the delivery is heard of first
        if ((*delivery_p = hop_client_pop(self)))
            return HOP_OK;
        if (self->async_rc)
            return hop_client_take_async(self);
        if (!timed && !self->in_batch) { // a batch's next record needs no deadline
            deadline = timeout_ms < 0 ? -1 : hop_client_now() + timeout_ms;
            timed = true;
        }
        hop_inmsg_t msg;
        rc = hop_client_step(self, deadline, NULL, &msg);
        if (rc == HOP_ETIMEOUT)
            return hop_client_fail(self, HOP_ETIMEOUT, 0, "no delivery within %d ms", timeout_ms);
        if (rc < 0)
            return rc;
    }
}

int
hop_client_dispatch(hop_client_t *self, hop_handler_fn *handler, void *arg, int timeout_ms)
{
    assert(self);
    if (!handler)
        return hop_client_fail(self, HOP_EINVAL, 0, "handler is NULL");
    for (;;) {
        hop_delivery_t *delivery;
        int rc = hop_client_receive(self, &delivery, timeout_ms);
        if (rc)
            return rc;
        int stop = handler(self, delivery, arg);
        hop_delivery_recycle(&delivery, &self->spare);
        if (stop)
            return HOP_OK;
    }
}

// Sends ack / nack / reject (multiple, requeue: -1 = absent; delay NULL = absent). Tags of an
// earlier connection, and tags the broker revoked, are refused here: on this connection they
// would name other messages, or earn a 406 that arrives later as an asynchronous error.
static int
s_settle(hop_client_t *self, hop_cmd_t cmd, uint64_t tag, int multiple, int requeue,
         const uint64_t *delay)
{
    int rc = hop_client_ready(self, false);
    if (rc)
        return rc;
    if ((tag & ~HOP_TAG_MASK) != self->gen)
        return hop_client_fail(self, HOP_EPRECOND, 0,
                               "delivery tag %" PRIu64 " belongs to an earlier connection: the "
                               "broker returned that message to its queue when it was lost",
                               tag);
    if (self->revoked_used && hop_client_was_revoked(self, tag))
        return hop_client_fail(self, HOP_EPRECOND, 0,
                               "delivery tag %" PRIu64 " was revoked by the broker: not acked "
                               "within its ack deadline; the message went back to its queue",
                               tag);
    hop_enc_begin(&self->enc, cmd);
    hop_enc_uint(&self->enc, "tag", tag & HOP_TAG_MASK);
    if (multiple >= 0)
        hop_enc_bool(&self->enc, "multiple", multiple);
    if (requeue >= 0)
        hop_enc_bool(&self->enc, "requeue", requeue);
    if (delay)
        hop_enc_uint(&self->enc, "delay", *delay);
    return hop_client_send_header(self, NULL, 0, false);
}

int
hop_client_ack(hop_client_t *self, uint64_t tag, bool multiple)
{
    assert(self);
    return s_settle(self, HOP_CMD_ACK, tag, multiple, -1, NULL);
}

int
hop_client_nack(hop_client_t *self, uint64_t tag, bool multiple, bool requeue)
{
    assert(self);
    return s_settle(self, HOP_CMD_NACK, tag, multiple, requeue, NULL);
}

int
hop_client_reject(hop_client_t *self, uint64_t tag, bool requeue)
{
    assert(self);
    return s_settle(self, HOP_CMD_REJECT, tag, -1, requeue, NULL);
}

int
hop_client_retry_later(hop_client_t *self, uint64_t tag, uint64_t delay_ms)
{
    assert(self);
    // Always with delay, 0 included: without it the queue's retry_delay would apply.
    return s_settle(self, HOP_CMD_NACK, tag, -1, true, &delay_ms);
}

int
hop_client_get(hop_client_t *self, const char *queue, int flags, hop_delivery_t **delivery_p)
{
    assert(self);
    if (delivery_p)
        *delivery_p = NULL;
    int rc = delivery_p ? hop_client_check_name(self, "queue name", queue)
                        : hop_client_fail(self, HOP_EINVAL, 0, "delivery_p is NULL");
    if (rc == HOP_OK)
        rc = hop_client_check_flags(self, flags, HOP_NO_ACK, "hop_client_get");
    if (rc == HOP_OK)
        rc = hop_client_ready(self, true);
    if (rc)
        return rc;
    uint64_t id = hop_client_begin(self, HOP_CMD_GET);
    hop_enc_cstr(&self->enc, "queue", queue);
    if (flags & HOP_NO_ACK)
        hop_enc_bool(&self->enc, "no_ack", true);
    hop_inmsg_t reply;
    rc = hop_client_call(self, id, HOP_ANY_REPLY, "get", &reply);
    if (rc)
        return rc;
    if (reply.wire.cmd == HOP_CMD_GET_OK) {
        hop_delivery_t *d = hop_inmsg_delivery(&reply, NULL);
        d->tag = (d->tag & HOP_TAG_MASK) | self->gen;
        *delivery_p = d;
    } else if (reply.wire.cmd == HOP_CMD_GET_EMPTY)
        rc = hop_client_fail(self, HOP_EEMPTY, 0, "queue '%s' has no ready message", queue);
    else
        rc = hop_client_fail(self, HOP_EPROTO, 0, "broker answered get with '%s'",
                             hop_cmd_name(reply.wire.cmd));
    hop_inmsg_close(&reply);
    hop_client_fire(self);
    return rc;
}

// ---------------------------------------------------------------------------------------
// Request/reply

int
hop_client_request(hop_client_t *self, const char *exchange, const char *routing_key,
                   const void *body, size_t body_size, const hop_props_t *props, int timeout_ms,
                   hop_delivery_t **reply_p)
{
    assert(self);
    if (reply_p)
        *reply_p = NULL;
    int rc = reply_p ? s_check_publish(self, exchange, routing_key, body, body_size, props)
                     : hop_client_fail(self, HOP_EINVAL, 0, "reply_p is NULL");
    if (rc == HOP_OK && timeout_ms < -1)
        rc = hop_client_fail(self, HOP_EINVAL, 0, "timeout_ms is %d (-1 = forever)", timeout_ms);
    if (rc == HOP_OK)
        rc = hop_client_ready(self, true);
    if (rc)
        return rc;
    if (!self->reply_queue[0]) {
        // One private queue per client for all its requests, made on first use.
        char queue[HOP_NAME_MAX + 1], tag[HOP_NAME_MAX + 1];
        rc = hop_client_do_declare_queue(self, "", HOP_EXCLUSIVE | HOP_AUTO_DELETE, NULL, queue,
                                         sizeof queue, NULL, NULL);
        if (rc == HOP_OK)
            rc = s_consume(self, queue, NULL, 0, HOP_NO_ACK, 0, tag, sizeof tag);
        if (rc)
            return rc;
        memcpy(self->reply_queue, queue, sizeof queue);
        memcpy(self->reply_tag, tag, sizeof tag);
    }
    char corr[32];
    snprintf(corr, sizeof corr, "%s-%" PRIu64, self->corr_prefix, ++self->corr_seq);
    rc = s_publish(self, exchange, routing_key, body, body_size, props, NULL, self->reply_queue,
                   corr, NULL);
    if (rc)
        return rc;
    int64_t deadline = timeout_ms < 0 ? -1 : hop_client_now() + timeout_ms;
    self->await_corr = corr;
    while (!self->reply_slot) {
        hop_inmsg_t msg;
        rc = hop_client_step(self, deadline, NULL, &msg);
        if (rc == HOP_ETIMEOUT)
            rc = hop_client_fail(self, HOP_ETIMEOUT, 0, "no reply to the request within %d ms",
                                 timeout_ms);
        if (rc < 0)
            break;
    }
    self->await_corr = NULL;
    if (rc == HOP_OK) {
        *reply_p = self->reply_slot;
        self->reply_slot = NULL;
    }
    // Only now that the reply is out of the way: a callback may make a request of its own.
    hop_client_fire(self);
    return rc < 0 ? rc : HOP_OK;
}

int
hop_client_reply(hop_client_t *self, const hop_delivery_t *request, const void *body,
                 size_t body_size, const hop_props_t *props)
{
    assert(self);
    if (!request)
        return hop_client_fail(self, HOP_EINVAL, 0, "request is NULL");
    const char *reply_to = request->props.reply_to;
    if (!reply_to || !*reply_to)
        return hop_client_fail(self, HOP_EINVAL, 0, "the request has no reply_to");
    int rc = s_check_publish(self, "", reply_to, body, body_size, props);
    if (rc == HOP_OK)
        rc = hop_client_ready(self, false);
    if (rc)
        return rc;
    // The default exchange routes to the queue named by the routing key; a correlation id of
    // "" still goes out as one so the requester can tell the reply is not another message.
    const char *corr = request->props.correlation_id ? request->props.correlation_id : "";
    return s_publish(self, "", reply_to, body, body_size, props, NULL, NULL, corr, NULL);
}
