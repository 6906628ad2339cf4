// sdk/client.c - libhopper's connection: the client object, settings, connect, argument checks
// and the request core the other verbs share (client_topology.c, client_messages.c): requests
// go straight to the socket (client_io.c).
//
// Requests get increasing ids; a call waits for the reply carrying its id for the client's
// timeout, buffering deliveries that arrive meanwhile for hop_client_receive.
//
// Asynchronous errors. publish, ack, nack and reject have no reply on success, so the broker's
// error for one of them (unknown exchange, unknown tag) arrives later, as does an error for a
// request that timed out, and a `cancelled` for one of our consumers. The client keeps the
// first such error (hop_client_error shows it at once) until a call that waits for the broker
// reports it:
//  - any waiting call that finds one pending when it starts returns it and does nothing else;
//  - declare/delete/purge/bind/unbind, list, status and call_raw are sync points: the broker
//    answers in order, so errors for earlier commands arrive before their reply, and they
//    return such an error instead of HOP_OK (their own work was done; list/status/call_raw
//    then free their output);
//  - consume, subscribe, cancel, get and request keep it pending for the next call, because
//    reporting their success as a failure would invite a retry that repeats their effect;
//  - receive and dispatch return it as soon as it arrives.
// publish, ack, nack and reject never wait, so they never return it. In confirm mode a publish
// is never answered with `error`: its failure is its negative confirm (client_confirm.c).
//
// Callbacks (confirms, returns, revoked deliveries) never run inside the receive pump: the pump
// records an event and hop_client_fire runs the callbacks where the client is in a steady state
// (hop_client_ready at the start of a call, hop_client_sync at the end of one, the loops of
// receive and wait_confirms, after a publish), so a callback may call the client itself.
//
// Reconnect. A connection is lost when the broker is silent past its timeout (the I/O thread
// says so) or answers 505 unexpected-frame (it forgot us, e.g. it restarted). A call that finds
// out while it waits returns HOP_ECONNECT; with reconnect on, the next call (or one that finds
// the loss already reported when it starts) opens a new connection (a new routing id), says hello
// and re-issues every consumer with its tag, prefetch and flags
// (subscriptions get a new server-named queue, declared and bound again). A consumer that
// cannot be restored is dropped and reported as an asynchronous error. Delivery tags carry
// the connection's generation in their top 16 bits so that an ack for a delivery of an old
// connection fails locally with HOP_EPRECOND instead of settling an unrelated message.
#include "client_internal.h"

#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

const char *
hop_strerror(int err)
{
    switch (err) {
    case HOP_OK:
        return "success";
    case HOP_EINVAL:
        return "invalid argument";
    case HOP_ENOMEM:
        return "out of memory or over a limit";
    case HOP_EFULL:
        return "queue or buffer full";
    case HOP_ETIMEOUT:
        return "timed out";
    case HOP_ECONNECT:
        return "broker unreachable or connection lost";
    case HOP_EPROTO:
        return "protocol error";
    case HOP_ENOTFOUND:
        return "not found";
    case HOP_EREFUSED:
        return "access refused or resource locked";
    case HOP_EPRECOND:
        return "precondition failed";
    case HOP_EBROKER:
        return "broker error";
    case HOP_EEMPTY:
        return "queue empty";
    case HOP_ECLOSED:
        return "not connected";
    case HOP_ENACKED:
        return "published message refused by the broker (negative confirm)";
    default:
        return "unknown error";
    }
}

static char *
s_strdup(const char *str)
{
    char *copy = strdup(str);
    if (!copy)
        abort();
    return copy;
}

// ---------------------------------------------------------------------------------------
// Argument checks: outside input is reported, never asserted.

int
hop_client_check_name(hop_client_t *self, const char *what, const char *name)
{
    if (!name)
        return hop_client_fail(self, HOP_EINVAL, 0, "%s is NULL", what);
    size_t len = strlen(name);
    if (len > HOP_NAME_MAX)
        return hop_client_fail(self, HOP_EINVAL, 0, "%s is %zu bytes long (at most %d)", what, len,
                               HOP_NAME_MAX);
    return HOP_OK;
}

int
hop_client_check_flags(hop_client_t *self, int flags, int allowed, const char *call)
{
    if (flags & ~allowed)
        return hop_client_fail(self, HOP_EINVAL, 0, "%s: flags 0x%x are not valid here", call,
                               (unsigned)(flags & ~allowed));
    return HOP_OK;
}

int
hop_client_copy_out(hop_client_t *self, char *out, size_t out_size, const char *what,
                    const char *ptr, size_t len)
{
    if (!out)
        return HOP_OK;
    if (out_size <= len) {
        if (out_size)
            out[0] = '\0';
        return hop_client_fail(self, HOP_EINVAL, 0, "%s '%.*s' does not fit in %zu bytes", what,
                               (int)len, ptr ? ptr : "", out_size);
    }
    if (len)
        memcpy(out, ptr, len);
    out[len] = '\0';
    return HOP_OK;
}

// ---------------------------------------------------------------------------------------
// Requests

// Starts a request header with a fresh id in self->enc.
uint64_t
hop_client_begin(hop_client_t *self, hop_cmd_t cmd)
{
    uint64_t id = self->next_id++;
    if (id == 0) // 0 is what the broker uses when it cannot tell the id
        id = self->next_id++;
    hop_enc_begin(&self->enc, cmd);
    hop_enc_uint(&self->enc, "id", id);
    return id;
}

// Sends the header in self->enc (and body when has_body).
int
hop_client_send_header(hop_client_t *self, const void *body, size_t body_size, bool has_body)
{
    size_t size;
    const void *header = hop_enc_end(&self->enc, &size);
    if (size > HOP_HEADER_MAX)
        return hop_client_fail(self, HOP_EINVAL, 0,
                               "message header is %zu bytes encoded (at most %d): props too big",
                               size, HOP_HEADER_MAX);
    return hop_client_send(self, header, size, body, body_size, has_body, false);
}

// Waits for the reply to request id. Returns HOP_OK with *reply open (the caller closes it),
// or an error (an `error` reply mapped, HOP_ETIMEOUT, HOP_ECONNECT, HOP_EPROTO when the reply
// is not `expect`). A 505 always means the broker forgot this connection.
int
hop_client_wait(hop_client_t *self, uint64_t id, hop_cmd_t expect, const char *what,
                hop_inmsg_t *reply)
{
    int64_t deadline = hop_client_now() + self->timeout_ms;
    for (;;) {
        int rc = hop_client_step(self, deadline, &id, reply);
        if (rc == 1)
            break;
        if (rc == HOP_ETIMEOUT)
            return hop_client_fail(self, HOP_ETIMEOUT, 0, "no reply to %s from %s within %d ms",
                                   what, self->endpoint, self->timeout_ms);
        if (rc < 0)
            return rc;
    }
    const hop_wire_t *w = &reply->wire;
    int rc = HOP_OK;
    if (w->cmd == HOP_CMD_ERROR && w->code == HOP_CODE_UNEXPECTED_FRAME)
        rc = hop_client_lost(self, HOP_CODE_UNEXPECTED_FRAME,
                             "connection to %s lost: the broker no longer knows this "
                             "connection (restarted?): %.*s",
                             self->endpoint, (int)w->text.len, w->text.ptr ? w->text.ptr : "");
    else if (expect == HOP_RAW_REPLY)
        rc = HOP_OK;
    else if (w->cmd == HOP_CMD_ERROR)
        rc = hop_client_broker_error(self, w);
    else if (expect != HOP_ANY_REPLY && w->cmd != expect)
        rc = hop_client_fail(self, HOP_EPROTO, 0, "broker answered %s with '%s'", what,
                             hop_cmd_name(w->cmd));
    if (rc)
        hop_inmsg_close(reply);
    return rc;
}

// Sends the request in self->enc and waits for its reply.
int
hop_client_call(hop_client_t *self, uint64_t id, hop_cmd_t expect, const char *what,
                hop_inmsg_t *reply)
{
    int rc = hop_client_send_header(self, NULL, 0, false);
    return rc ? rc : hop_client_wait(self, id, expect, what, reply);
}

// Sends the request in self->enc and waits for a reply that carries nothing we need.
int
hop_client_call_ok(hop_client_t *self, uint64_t id, hop_cmd_t expect, const char *what,
                   uint64_t *messages_out)
{
    hop_inmsg_t reply;
    int rc = hop_client_call(self, id, expect, what, &reply);
    if (rc)
        return rc;
    if (messages_out)
        *messages_out = reply.wire.messages;
    hop_inmsg_close(&reply);
    return HOP_OK;
}

// A sync point's result: its own error, else a pending asynchronous error, else HOP_OK. The end
// of a public call, so the callbacks of what arrived meanwhile run here.
int
hop_client_sync(hop_client_t *self, int rc)
{
    hop_client_fire(self);
    return rc ? rc : hop_client_take_async(self);
}

// Makes sure a call can talk to the broker: absorbs what already arrived, reconnects a lost
// connection when allowed, and (for calls that wait) reports a pending asynchronous error.
int
hop_client_ready(hop_client_t *self, bool waits)
{
    if (self->io)
        hop_client_drain(self);
    // Before reconnecting: a lost connection's refused publishes are heard of first.
    hop_client_fire(self);
    if (!self->io) {
        if (!self->lost)
            return hop_client_fail(self, HOP_ECLOSED, 0, "not connected");
        if (!self->reconnect)
            return hop_client_fail(self, HOP_ECLOSED, 0,
                                   "not connected: the connection to %s was lost", self->endpoint);
        int rc = hop_client_reconnect(self);
        if (rc)
            return rc;
    }
    return waits ? hop_client_take_async(self) : HOP_OK;
}

// ---------------------------------------------------------------------------------------
// Lifecycle and settings

hop_client_t *
hop_client_new(void)
{
    hop_client_t *self = calloc(1, sizeof *self);
    if (!self)
        abort();
    self->timeout_ms = HOP_DEFAULT_TIMEOUT;
    self->reconnect = true;
    self->next_id = 1;
    zmq_msg_init(&self->in_records);
    hop_client_proc_ref();
    hop_enc_init(&self->enc);
    // Correlation ids must not collide between clients sharing a reply path; they need not be
    // unpredictable, so time, pid and address mixed through splitmix64 do.
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t x = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^ (uint64_t)getpid() << 40 ^
                 (uint64_t)(uintptr_t)self;
    x += 0x9e3779b97f4a7c15u;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9u;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebu;
    x ^= x >> 31;
    snprintf(self->corr_prefix, sizeof self->corr_prefix, "%08" PRIx32, (uint32_t)x);
    return self;
}

void
hop_client_destroy(hop_client_t **self_p)
{
    assert(self_p);
    hop_client_t *self = *self_p;
    if (!self)
        return;
    if (self->io) {
        // Politely: the broker requeues our unacked deliveries and answers once it has
        // handled everything we sent before.
        uint64_t id = hop_client_begin(self, HOP_CMD_CLOSE);
        if (hop_client_send_header(self, NULL, 0, false) == HOP_OK) {
            int wait = self->timeout_ms < 1000 ? self->timeout_ms : 1000;
            int64_t deadline = hop_client_now() + wait;
            hop_inmsg_t reply;
            int rc;
            while ((rc = hop_client_step(self, deadline, &id, &reply)) == 0)
                ;
            if (rc == 1)
                hop_inmsg_close(&reply);
        }
        hop_client_shut(self);
    }
    hop_client_forget_all(self);
    hop_client_confirm_fini(self);
    zmq_msg_close(&self->in_records);
    free(self->spare);
    hop_enc_fini(&self->enc);
    free(self->name);
    free(self->endpoint);
    hop_client_proc_unref();
    free(self);
    *self_p = NULL;
}

void
hop_client_set_timeout(hop_client_t *self, int timeout_ms)
{
    assert(self);
    // Not a way to wait forever: a request without an answer must end.
    self->timeout_ms = timeout_ms > 0 ? timeout_ms : HOP_DEFAULT_TIMEOUT;
}

void
hop_client_set_heartbeat(hop_client_t *self, int interval_ms)
{
    assert(self);
    self->heartbeat_ms = interval_ms > 0 ? interval_ms : 0; // the broker checks the range
}

void
hop_client_set_name(hop_client_t *self, const char *name)
{
    assert(self);
    free(self->name);
    self->name = name ? s_strdup(name) : NULL; // checked by connect
}

void
hop_client_set_reconnect(hop_client_t *self, bool reconnect)
{
    assert(self);
    self->reconnect = reconnect;
}

int
hop_client_connect(hop_client_t *self, const char *endpoint)
{
    assert(self);
    if (self->io)
        return hop_client_fail(self, HOP_EINVAL, 0, "already connected to %s", self->endpoint);
    if (!endpoint) {
        endpoint = getenv("HOPPER_BROKER");
        if (!endpoint || !*endpoint)
            endpoint = HOP_DEFAULT_ENDPOINT;
    }
    if (strlen(endpoint) > 1024)
        return hop_client_fail(self, HOP_EINVAL, 0, "broker endpoint is too long");
    if (self->name && strlen(self->name) > HOP_NAME_MAX)
        return hop_client_fail(self, HOP_EINVAL, 0, "client name is %zu bytes long (at most %d)",
                               strlen(self->name), HOP_NAME_MAX);
    free(self->endpoint);
    self->endpoint = s_strdup(endpoint);
    // A new session: consumers and errors of an earlier, lost one do not carry over.
    hop_client_forget_all(self);
    self->lost = false;
    self->async_rc = 0;
    self->async_more = 0;
    return hop_client_open(self);
}

bool
hop_client_connected(const hop_client_t *self)
{
    assert(self);
    return self->io != NULL;
}

const char *
hop_client_error(const hop_client_t *self)
{
    assert(self);
    return self->error;
}

int
hop_client_error_code(const hop_client_t *self)
{
    assert(self);
    return self->error_code;
}
