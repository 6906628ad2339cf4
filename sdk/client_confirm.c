// sdk/client_confirm.c - delivery guarantees on the client side: publisher confirms
// (PROTOCOL.md 4.4), returned mandatory messages, revoked deliveries (4.5), and the
// application's callbacks for them.
//
// Confirms. In confirm mode every publish carries a seq: 1, 2, 3, ... for the client's life (a
// new connection goes on counting, so a number never names two publishes). Pending seqs live in
// a ring of flags indexed by seq, one byte per publish, allocated once and doubled when the
// window from the oldest pending seq to the newest outgrows it: no malloc per publish. A
// `confirm` settles one seq, or with `multiple` every pending seq up to its own; a negative one
// is counted and its reason kept until hop_client_wait_confirms reports it. When the
// connection is lost, the broker's answers for the pending seqs are lost with it: they count as
// refused (code 0) and the application should publish them again.
//
// Callbacks. The receive pump only records what happened (an event); hop_client_fire runs the
// callbacks at safe points of client calls (the start of a call, the loops of receive,
// dispatch, request and wait_confirms, after a publish), never inside the pump or a reconnect
// and never on the I/O thread, so a callback may itself call the client (publish again, ack).
#include "client_internal.h"

#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_RING_MIN 1024 // pending flags allocated by confirm_select

// ---------------------------------------------------------------------------------------
// Events

// A record for a new event at the tail of the queue: reused, or allocated once.
static hop_event_t *
s_event(hop_client_t *self, hop_event_kind_t kind)
{
    hop_event_t *ev = self->ev_free;
    if (ev)
        self->ev_free = ev->next;
    else if (!(ev = malloc(sizeof *ev)))
        abort();
    ev->next = NULL;
    ev->kind = kind;
    ev->number = 0;
    ev->multiple = false;
    ev->ok = false;
    ev->code = 0;
    ev->returned = NULL;
    ev->text[0] = '\0';
    if (self->ev_tail)
        self->ev_tail->next = ev;
    else
        self->ev_head = ev;
    self->ev_tail = ev;
    return ev;
}

static void
s_event_text(hop_event_t *ev, hop_str_t text)
{
    snprintf(ev->text, sizeof ev->text, "%.*s", (int)text.len, text.ptr ? text.ptr : "");
}

void
hop_client_fire(hop_client_t *self)
{
    if (self->firing)
        return;
    self->firing = true;
    hop_event_t *ev;
    while ((ev = self->ev_head)) {
        self->ev_head = ev->next;
        if (!self->ev_head)
            self->ev_tail = NULL;
        // The callback in force now: one unset meanwhile is not called.
        switch (ev->kind) {
        case HOP_EVENT_CONFIRM:
            if (self->confirm_fn)
                self->confirm_fn(self, ev->number, ev->multiple, ev->ok, ev->code, ev->text,
                                 self->confirm_arg);
            break;
        case HOP_EVENT_RETURN:
            if (self->return_fn)
                self->return_fn(self, ev->returned, ev->code, ev->text, self->return_arg);
            hop_delivery_destroy(&ev->returned);
            break;
        case HOP_EVENT_REVOKED:
            if (self->revoked_fn)
                self->revoked_fn(self, ev->text, ev->number, self->revoked_arg);
            break;
        }
        ev->next = self->ev_free;
        self->ev_free = ev;
    }
    self->firing = false;
}

void
hop_client_confirm_fini(hop_client_t *self)
{
    hop_event_t *ev;
    while ((ev = self->ev_head)) {
        self->ev_head = ev->next;
        hop_delivery_destroy(&ev->returned);
        free(ev);
    }
    self->ev_tail = NULL;
    while ((ev = self->ev_free)) {
        self->ev_free = ev->next;
        free(ev);
    }
    free(self->conf_ring);
    self->conf_ring = NULL;
}

// ---------------------------------------------------------------------------------------
// Confirm mode and the pending seqs

int
hop_client_confirm_select(hop_client_t *self)
{
    assert(self);
    if (self->confirm)
        return HOP_OK;
    self->conf_ring = calloc(S_RING_MIN, 1);
    if (!self->conf_ring)
        abort();
    self->conf_cap = S_RING_MIN;
    self->conf_base = self->pub_seq + 1;
    self->confirm = true;
    return HOP_OK;
}

void
hop_client_on_confirm(hop_client_t *self, hop_confirm_fn *fn, void *arg)
{
    assert(self);
    self->confirm_fn = fn;
    self->confirm_arg = arg;
}

void
hop_client_on_return(hop_client_t *self, hop_return_fn *fn, void *arg)
{
    assert(self);
    self->return_fn = fn;
    self->return_arg = arg;
}

void
hop_client_on_revoked(hop_client_t *self, hop_revoked_fn *fn, void *arg)
{
    assert(self);
    self->revoked_fn = fn;
    self->revoked_arg = arg;
}

uint64_t
hop_client_unconfirmed(const hop_client_t *self)
{
    assert(self);
    return self->unconfirmed;
}

static uint8_t *
s_flag(hop_client_t *self, uint64_t seq)
{
    return &self->conf_ring[seq & (self->conf_cap - 1)];
}

int
hop_client_confirm_next(hop_client_t *self, uint64_t *seq)
{
    *seq = 0;
    if (!self->confirm)
        return HOP_OK;
    uint64_t next = self->pub_seq + 1;
    uint64_t window = next - self->conf_base + 1;
    if (window > self->conf_cap) {
        uint64_t cap = self->conf_cap * 2;
        if (cap > HOP_CONFIRM_WINDOW)
            return hop_client_fail(self, HOP_ENOMEM, 0,
                                   "publish %" PRIu64 " is still unconfirmed %u publishes later: "
                                   "call hop_client_wait_confirms before publishing more",
                                   self->conf_base, HOP_CONFIRM_WINDOW);
        uint8_t *ring = calloc(cap, 1);
        if (!ring)
            abort();
        for (uint64_t s = self->conf_base; s <= self->pub_seq; s++)
            ring[s & (cap - 1)] = *s_flag(self, s);
        free(self->conf_ring);
        self->conf_ring = ring;
        self->conf_cap = cap;
    }
    *seq = next;
    return HOP_OK;
}

void
hop_client_confirm_sent(hop_client_t *self, uint64_t seq)
{
    assert(self->confirm);
    assert(seq == self->pub_seq + 1);
    self->pub_seq = seq;
    *s_flag(self, seq) = 1;
    self->unconfirmed++;
}

// Moves conf_base past the settled seqs at the front of the window.
static void
s_advance(hop_client_t *self)
{
    while (self->conf_base <= self->pub_seq && !*s_flag(self, self->conf_base))
        self->conf_base++;
}

// Settles seq, or with multiple every pending seq up to it. Returns how many were pending and
// the first of them in *first.
static uint64_t
s_settle(hop_client_t *self, uint64_t seq, bool multiple, uint64_t *first)
{
    uint64_t settled = 0;
    *first = 0;
    if (seq < self->conf_base)
        return 0;
    uint64_t from = multiple ? self->conf_base : seq;
    uint64_t to = seq < self->pub_seq ? seq : self->pub_seq;
    for (uint64_t s = from; s <= to; s++) {
        uint8_t *flag = s_flag(self, s);
        if (*flag) {
            *flag = 0;
            if (!settled)
                *first = s;
            settled++;
        }
    }
    self->unconfirmed -= settled;
    s_advance(self);
    return settled;
}

// Counts refused publishes; the first since the last wait_confirms gives the reason.
static void s_nacked(hop_client_t *self, uint64_t count, uint64_t first, int code, const char *fmt,
                     ...) __attribute__((format(printf, 5, 6)));

static void
s_nacked(hop_client_t *self, uint64_t count, uint64_t first, int code, const char *fmt, ...)
{
    if (!self->nacked) {
        va_list args;
        va_start(args, fmt);
        vsnprintf(self->nack_why, sizeof self->nack_why, fmt, args);
        va_end(args);
        self->nack_seq = first;
        self->nack_code = code;
    }
    self->nacked += count;
}

void
hop_client_take_confirm(hop_client_t *self, const hop_wire_t *wire)
{
    if (!self->confirm || !(wire->has & HOP_F_SEQ))
        return; // not ours to judge: a broker that confirms what we did not ask for
    uint64_t first;
    uint64_t settled = s_settle(self, wire->seq, wire->multiple, &first);
    if (!settled)
        return; // a duplicate
    int code = wire->code > 999 ? 999 : (int)wire->code;
    if (wire->nack)
        s_nacked(self, settled, first, code, "was refused by the broker: %d %s: %.*s", code,
                 hop_code_name(code), (int)wire->text.len, wire->text.ptr ? wire->text.ptr : "");
    if (!self->confirm_fn)
        return;
    hop_event_t *ev = s_event(self, HOP_EVENT_CONFIRM);
    ev->number = wire->seq;
    ev->multiple = wire->multiple;
    ev->ok = !wire->nack;
    ev->code = wire->nack ? code : 0;
    s_event_text(ev, wire->text);
}

void
hop_client_confirm_lost(hop_client_t *self)
{
    if (!self->confirm || !self->unconfirmed)
        return;
    uint64_t last = self->pub_seq, first;
    uint64_t settled = s_settle(self, last, true, &first);
    s_nacked(self, settled, first, 0, "was lost with the connection (%s): publish it again",
             self->error);
    if (!self->confirm_fn)
        return;
    hop_event_t *ev = s_event(self, HOP_EVENT_CONFIRM);
    ev->number = last;
    ev->multiple = true;
    snprintf(ev->text, sizeof ev->text, "not confirmed: %.*s", HOP_EVENT_TEXT - 32, self->error);
}

int
hop_client_wait_confirms(hop_client_t *self, int timeout_ms, uint64_t *nacked_out)
{
    assert(self);
    if (nacked_out)
        *nacked_out = 0;
    if (!self->confirm)
        return hop_client_fail(self, HOP_EINVAL, 0,
                               "not in confirm mode: call hop_client_confirm_select first");
    if (timeout_ms < -1)
        return hop_client_fail(self, HOP_EINVAL, 0, "timeout_ms is %d (-1 = forever)", timeout_ms);
    // Nothing pending needs no connection: a lost one has settled its publishes as refused.
    if (self->io)
        hop_client_drain(self);
    hop_client_fire(self);
    int rc = hop_client_take_async(self);
    if (rc)
        return rc;
    int64_t deadline = timeout_ms < 0 ? -1 : hop_client_now() + timeout_ms;
    while (self->unconfirmed) {
        hop_inmsg_t msg;
        rc = hop_client_step(self, deadline, NULL, &msg);
        hop_client_fire(self);
        if (rc == HOP_ETIMEOUT && self->unconfirmed == 1)
            return hop_client_fail(self, HOP_ETIMEOUT, 0,
                                   "publish %" PRIu64 " still unconfirmed after %d ms",
                                   self->conf_base, timeout_ms);
        if (rc == HOP_ETIMEOUT)
            return hop_client_fail(self, HOP_ETIMEOUT, 0,
                                   "%" PRIu64 " publishes still unconfirmed after %d ms (the "
                                   "oldest is %" PRIu64 ")",
                                   self->unconfirmed, timeout_ms, self->conf_base);
        if (rc < 0 && self->unconfirmed)
            return rc; // cannot happen: a lost connection settles everything pending
    }
    uint64_t nacked = self->nacked;
    if (!nacked)
        return HOP_OK;
    if (nacked_out)
        *nacked_out = nacked;
    self->nacked = 0;
    if (nacked == 1)
        return hop_client_fail(self, HOP_ENACKED, self->nack_code, "publish %" PRIu64 " %s",
                               self->nack_seq, self->nack_why);
    return hop_client_fail(self, HOP_ENACKED, self->nack_code,
                           "%" PRIu64 " publishes were not confirmed; the first, publish %" PRIu64
                           ", %s",
                           nacked, self->nack_seq, self->nack_why);
}

// ---------------------------------------------------------------------------------------
// Returns and revoked deliveries

void
hop_client_take_return(hop_client_t *self, hop_inmsg_t *msg)
{
    if (!self->return_fn)
        return; // nobody listens: dropped, as the application chose
    hop_event_t *ev = s_event(self, HOP_EVENT_RETURN);
    ev->code = msg->wire.code > 999 ? 999 : (int)msg->wire.code;
    s_event_text(ev, msg->wire.text);
    ev->returned = hop_inmsg_delivery(msg, NULL);
    ev->returned->tag = 0; // nothing to settle
}

bool
hop_client_was_revoked(const hop_client_t *self, uint64_t tag)
{
    for (unsigned i = 0; i < self->revoked_used; i++)
        if (self->revoked[i] == tag)
            return true;
    return false;
}

void
hop_client_take_revoked(hop_client_t *self, const hop_wire_t *wire)
{
    uint64_t tag = (wire->tag & HOP_TAG_MASK) | self->gen;
    if (!hop_client_was_revoked(self, tag)) {
        self->revoked[self->revoked_next] = tag;
        self->revoked_next = (self->revoked_next + 1) % HOP_REVOKED_MAX;
        if (self->revoked_used < HOP_REVOKED_MAX)
            self->revoked_used++;
    }
    // Still buffered: the application has not seen it and must not work on a message the
    // broker has given back to its queue (it is delivered again, maybe to someone else).
    hop_delivery_node_t *prev = NULL;
    for (hop_delivery_node_t *node = self->head; node; prev = node, node = node->next) {
        if (node->pub.tag != tag)
            continue;
        if (prev)
            prev->next = node->next;
        else
            self->head = node->next;
        if (self->tail == node)
            self->tail = prev;
        hop_delivery_t *d = &node->pub;
        hop_delivery_destroy(&d);
        break;
    }
    if (!self->revoked_fn)
        return;
    hop_event_t *ev = s_event(self, HOP_EVENT_REVOKED);
    ev->number = tag;
    s_event_text(ev, wire->consumer);
}
