// bus/timers.c - what happens with time rather than with traffic, checked on every tick
// (100 ms): stalled consumers retried, delayed messages made ready, expired messages removed,
// deliveries past their ack deadline revoked, unused queues with `expires` deleted
// (PROTOCOL.md 6.5); and once a second the publish/deliver/ack rates sampled (PROTOCOL.md 4.7).
#include "broker_internal.h"
#include "util.h"

#include <stdio.h>

// The ack deadline of an unacked entry; 0 when it has none (get, no-ack).
static uint64_t
s_deadline(const hop_broker_t *self, const hop_queue_t *queue, const hop_entry_t *entry)
{
    if (!entry->consumer || entry->noack)
        return 0;
    if (entry->consumer->ack_timeout)
        return entry->consumer->ack_timeout;
    return queue->args.ack_timeout ? queue->args.ack_timeout : self->config.ack_timeout_ms;
}

// Revokes an unacked delivery past its deadline: the consumer is told, the tag forgotten (a late
// ack then fails with "revoked"), and the message returned to its queue.
static void
s_revoke(hop_broker_t *self, hop_queue_t *queue, hop_entry_t *entry, uint64_t deadline)
{
    hop_consumer_t *c = entry->consumer;
    hop_conn_t *conn = c->conn;
    uint64_t tag = entry->tag;
    hop_log(HOP_WARN, "deliver",
            "ack deadline passed queue=%s conn=%s consumer=%s tag=%llu deadline_ms=%llu: "
            "revoked, the message returns to the queue",
            queue->name, conn->label, c->tag, (unsigned long long)tag,
            (unsigned long long)deadline);
    hop_conn_untrack(conn, tag);
    hop_conn_revoke(conn, tag);
    c->unacked--;
    self->revoked++;
    hop_enc_begin(&self->enc, HOP_CMD_REVOKED);
    hop_enc_cstr(&self->enc, "consumer", c->tag);
    hop_enc_uint(&self->enc, "tag", tag);
    char text[160];
    snprintf(text, sizeof text, "not acked within its ack deadline of %llu ms",
             (unsigned long long)deadline);
    hop_enc_cstr(&self->enc, "text", text);
    hop_broker_send(self, conn, NULL);
    hop_deliver_return(self, queue, entry, 0);
    // Offer it to the other consumers first: this one may well be stuck.
    if (queue->consumers == c)
        queue->consumers = c->next;
}

// Revokes the deliveries of queue past their deadline. The unacked list is in delivery order,
// so the walk stops at the first entry younger than the shortest deadline in force.
static bool
s_revoke_overdue(hop_broker_t *self, hop_queue_t *queue)
{
    if (!queue->unacked.head)
        return false;
    uint64_t shortest =
        queue->args.ack_timeout ? queue->args.ack_timeout : self->config.ack_timeout_ms;
    hop_consumer_t *c = queue->consumers;
    for (size_t i = 0; c && i < queue->consumer_count; i++, c = c->next)
        if (c->ack_timeout && c->ack_timeout < shortest)
            shortest = c->ack_timeout;
    bool any = false;
    for (hop_entry_t *e = queue->unacked.head, *next; e; e = next) {
        next = e->next;
        uint64_t age = self->now - e->at;
        if (age < shortest)
            break;
        uint64_t deadline = s_deadline(self, queue, e);
        if (deadline && age >= deadline) {
            s_revoke(self, queue, e, deadline);
            any = true;
        }
    }
    return any;
}

// The head of a level's ready list, reading spilled messages back when it ran dry.
static hop_entry_t *
s_head(hop_queue_t *queue, uint32_t level)
{
    hop_list_t *list = hop_queue_list(queue, level);
    if (!list->head && queue->spills)
        hop_queue_fill(queue, level, 0);
    return list->head;
}

// Makes due delayed entries ready and expires heads. Returns true when something became ready.
static bool
s_timers(hop_broker_t *self, hop_queue_t *queue)
{
    bool ready = false;
    while (queue->delayed.head && queue->delayed.head->at <= self->now) {
        hop_queue_undelay(queue, queue->delayed.head);
        ready = true;
    }
    // Expiry at the head of each priority level (RabbitMQ expires at the head too).
    if (queue->args.has_ttl || queue->ready_count) {
        for (uint32_t l = 0; l < hop_queue_nlevels(queue); l++) {
            hop_entry_t *e;
            while ((e = s_head(queue, l)) && e->expires_at < self->now) {
                hop_queue_remove(queue, e);
                hop_deliver_dead_letter(self, queue, e, "expired");
            }
        }
    }
    return ready;
}

// Rates ------------------------------------------------------------------------------------

#define S_RATE_EVERY_MS 1000 // how often the counters are sampled
#define S_RATE_TAU_MS   2000 // smoothing time constant: a steady rate shows within seconds

// Rate sampling of one tick: whether to sample, and the weight of the new sample.
typedef struct {
    bool on;        // this tick samples
    double seconds; // since the last sample
    double alpha;   // weight of the new sample in the moving average
} s_sample_t;

// Whether this tick samples the rates. The first sample only takes the counters (recovered
// messages must not show as a burst of publishes).
static s_sample_t
s_sample_begin(hop_broker_t *self, bool *first)
{
    s_sample_t sample = {false, 0, 0};
    *first = self->rate_at == 0;
    if (!*first && self->now - self->rate_at < S_RATE_EVERY_MS)
        return sample;
    uint64_t elapsed = *first ? S_RATE_EVERY_MS : self->now - self->rate_at;
    self->rate_at = self->now ? self->now : 1;
    sample.on = true;
    sample.seconds = (double)elapsed / 1000.0;
    // 1 - exp(-elapsed / tau), to first order: no libm, and exact enough for a display.
    sample.alpha = (double)elapsed / (double)(S_RATE_TAU_MS + elapsed);
    return sample;
}

// The exponentially weighted moving average rate updated with count's growth since *last.
static double
s_rate(const s_sample_t *sample, double rate, uint64_t count, uint64_t *last, bool first)
{
    // A counter only grows; a take undone in the same turn never shows between samples.
    uint64_t delta = count > *last ? count - *last : 0;
    *last = count;
    if (first)
        return 0;
    return rate + sample->alpha * ((double)delta / sample->seconds - rate);
}

static void
s_sample_queue(const s_sample_t *sample, hop_queue_t *q, bool first)
{
    q->publish_rate = s_rate(sample, q->publish_rate, q->published, &q->rate_published, first);
    q->deliver_rate = s_rate(sample, q->deliver_rate, q->delivered, &q->rate_delivered, first);
    q->ack_rate = s_rate(sample, q->ack_rate, q->acked, &q->rate_acked, first);
}

bool
hop_deliver_unstall(hop_broker_t *self, hop_queue_t *q)
{
    (void)self;
    if (!q->ready_count || !q->consumers)
        return false;
    bool any = false;
    hop_consumer_t *c = q->consumers;
    do {
        if (c->stalled && !c->conn->dead) {
            c->stalled = false;
            any = true;
        }
        c = c->next;
    } while (c != q->consumers);
    return any;
}

void
hop_deliver_tick(hop_broker_t *self)
{
    size_t cursor = 0;
    void *value;
    hop_queue_t *unused[64]; // queues past their `expires`, deleted after the walk
    size_t n_unused = 0;
    bool first;
    s_sample_t sample = s_sample_begin(self, &first);
    if (sample.on) {
        self->publish_rate =
            s_rate(&sample, self->publish_rate, self->published, &self->rate_published, first);
        self->deliver_rate =
            s_rate(&sample, self->deliver_rate, self->delivered, &self->rate_delivered, first);
        self->ack_rate = s_rate(&sample, self->ack_rate, self->acked, &self->rate_acked, first);
    }
    while (hop_map_next(self->queues, &cursor, NULL, NULL, &value)) {
        hop_queue_t *q = value;
        if (q->deleting)
            continue;
        if (sample.on)
            s_sample_queue(&sample, q, first);
        bool any = s_timers(self, q);
        if (q->spills)
            hop_paging_write_out(self, q);
        any |= s_revoke_overdue(self, q);
        if (q->args.expires && q->consumer_count == 0 &&
            n_unused < sizeof unused / sizeof unused[0] &&
            self->now - q->last_used >= q->args.expires)
            unused[n_unused++] = q;
        // Consumers whose pipes were full get another chance every tick.
        any |= hop_deliver_unstall(self, q);
        if (any && q->ready_count && q->consumers)
            hop_deliver_dispatch(self, q);
    }
    for (size_t i = 0; i < n_unused; i++) {
        hop_log(HOP_INFO, "topology", "queue expired name=%s unused_ms=%llu: deleted",
                unused[i]->name, (unsigned long long)(self->now - unused[i]->last_used));
        hop_topology_delete_queue(self, unused[i]);
    }
}
