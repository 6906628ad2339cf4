// cli/bench_flow.c - the flow workloads of `hopper bench`: pubsub (W1/W2), queue (W3) and
// latency (W5). Publisher and consumer threads, each with its own hop_client_t, around one
// exchange; rates are taken with CLOCK_MONOTONIC from the first publish to the last delivery;
// latency pacing uses absolute-deadline clock_nanosleep. Every payload carries a sequence
// number, so every run also checks that no message was lost or delivered twice.
#include "bench_common.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_POLL_MS 100 // consumers re-check their stop conditions this often

// ---------------------------------------------------------------------------------------
// Flow runs (pubsub, queue, latency): publisher and consumer threads around one exchange.

typedef struct s_flow s_flow_t;

// One client thread of a flow run: a publisher or a consumer.
typedef struct {
    s_flow_t *flow; // the run
    int index;      // among the publishers or among the consumers
    bool publisher;
    pthread_t thread;
    bool running;           // the thread was started (and must be joined)
    long first;             // publisher: first sequence number it sends
    long count;             // publisher: how many it sends
    atomic_long sent;       // publisher: sent so far (updated every 1024)
    long stalls;            // publisher: publishes refused with HOP_EFULL and retried
    int64_t t_end;          // publisher: after its last publish
    long expect;            // consumer: distinct messages it should get (pubsub, latency)
    uint64_t *seen;         // pubsub consumer: bitmap of sequence numbers received
    atomic_long got;        // consumer: distinct messages received
    long dup, bad;          // consumer: second copies; wrong size or sequence number
    long reordered;         // pubsub consumer: sequence numbers that went backwards
    long redelivered;       // consumer: deliveries flagged redelivered
    long next_seq;          // pubsub consumer: the sequence number expected next
    _Atomic int64_t t_last; // consumer: when the last delivery arrived
    uint64_t ack_tag;       // queue consumer: last delivery tag not yet acked
    long unacked;           // queue consumer: deliveries since the last ack
} s_actor_t;

struct s_flow {
    hop_bench_ctl_t ctl;
    const hop_bench_opts_t *o;
    int workload;                    // HOP_BENCH_PUBSUB, HOP_BENCH_QUEUE or HOP_BENCH_LATENCY
    char label[64];                  // W1, W2, W3-ack1, W5, ...
    char exchange[HOP_NAME_MAX + 1]; // where publishers publish
    char key[HOP_NAME_MAX + 1];      // routing key; also the subscribers' pattern
    char queue[HOP_NAME_MAX + 1];    // queue: the work queue
    long total;                      // messages published in all
    size_t size;                     // payload bytes
    atomic_int ready;                // threads connected (and subscribed) or failed
    atomic_int finished;             // threads done
    atomic_int publishing;           // publishers not done yet
    atomic_bool go;                  // start publishing
    _Atomic int64_t t_pub_done;      // when the last publisher finished; 0 before
    int64_t t0;                      // just before the first publish
    _Atomic uint64_t *shared_seen;   // queue: bitmap shared by every consumer
    atomic_long shared_got;          // queue: distinct messages received by all consumers
    int64_t *lat;                    // latency: receive - send per sequence number, -1 = none
    s_actor_t *actors;               // npub publishers, then ncons consumers
    int npub, ncons;
};

static void
s_wait_go(s_flow_t *flow)
{
    while (!atomic_load(&flow->go) && !hop_bench_stopped(&flow->ctl))
        hop_bench_sleep(200 * 1000);
}

static void
s_count(atomic_long *counter)
{
    atomic_store_explicit(counter, atomic_load_explicit(counter, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

// The consumer has everything it waits for (or the run stopped).
static bool
s_consumer_done(s_actor_t *a)
{
    s_flow_t *flow = a->flow;
    if (hop_bench_stopped(&flow->ctl))
        return true;
    if (flow->workload == HOP_BENCH_QUEUE)
        return atomic_load_explicit(&flow->shared_got, memory_order_relaxed) >= flow->total;
    return atomic_load_explicit(&a->got, memory_order_relaxed) >= a->expect;
}

// Publishing is over and no consumer heard anything for HOP_BENCH_SILENCE_NS: the rest is lost.
static bool
s_flow_silent(s_flow_t *flow)
{
    int64_t last = atomic_load(&flow->t_pub_done);
    if (last == 0)
        return false;
    for (int i = flow->npub; i < flow->npub + flow->ncons; i++) {
        int64_t t = atomic_load_explicit(&flow->actors[i].t_last, memory_order_relaxed);
        last = t > last ? t : last;
    }
    return hop_bench_now() - last > HOP_BENCH_SILENCE_NS;
}

static int
s_on_delivery(hop_client_t *client, const hop_delivery_t *d, void *arg)
{
    s_actor_t *a = arg;
    s_flow_t *flow = a->flow;
    int64_t now = hop_bench_now(), sent, seq;
    atomic_store_explicit(&a->t_last, now, memory_order_relaxed);
    if (d->redelivered)
        a->redelivered++;
    if (d->body_size != flow->size || !d->body) {
        a->bad++;
    } else {
        memcpy(&sent, d->body, 8);
        memcpy(&seq, (const char *)d->body + 8, 8);
        uint64_t bit = 1ULL << (seq & 63);
        if (seq < 0 || seq >= flow->total) {
            a->bad++;
        } else if (flow->workload == HOP_BENCH_PUBSUB) {
            if (a->seen[seq >> 6] & bit) {
                a->dup++;
            } else {
                a->seen[seq >> 6] |= bit;
                a->reordered += seq < a->next_seq;
                a->next_seq = seq + 1;
                s_count(&a->got);
            }
        } else if (flow->workload == HOP_BENCH_QUEUE) {
            if (atomic_fetch_or_explicit(&flow->shared_seen[seq >> 6], bit, memory_order_relaxed) &
                bit) {
                a->dup++;
            } else {
                s_count(&a->got);
                atomic_fetch_add_explicit(&flow->shared_got, 1, memory_order_relaxed);
            }
        } else if (flow->lat[seq] >= 0) {
            a->dup++;
        } else {
            flow->lat[seq] = now - sent;
            s_count(&a->got);
        }
    }
    if (flow->workload == HOP_BENCH_QUEUE) {
        a->ack_tag = d->tag;
        if (++a->unacked >= flow->o->ack_every) {
            int rc = hop_client_ack(client, d->tag, flow->o->ack_every > 1);
            a->unacked = 0;
            if (rc != HOP_OK)
                hop_bench_fail(&flow->ctl, rc, "consumer %d: ack: %s", a->index,
                               hop_bench_errtext(client, rc));
        }
    }
    return s_consumer_done(a);
}

static void *
s_consumer_main(void *arg)
{
    s_actor_t *a = arg;
    s_flow_t *flow = a->flow;
    char name[64];
    snprintf(name, sizeof name, "bench-consumer-%d", a->index);
    hop_client_t *client = hop_bench_client_open_or_fail(&flow->ctl, name);
    if (client) {
        int rc =
            flow->workload == HOP_BENCH_QUEUE
                ? hop_client_consume(client, flow->queue, NULL, (int)flow->o->prefetch, 0, NULL, 0)
                : hop_client_subscribe(client, flow->exchange, flow->key, NULL, 0);
        if (rc != HOP_OK) {
            hop_bench_fail(&flow->ctl, rc, "%s: cannot %s %s: %s", name,
                           flow->workload == HOP_BENCH_QUEUE ? "consume" : "subscribe to",
                           flow->workload == HOP_BENCH_QUEUE ? flow->queue : flow->exchange,
                           hop_bench_errtext(client, rc));
            hop_client_destroy(&client);
        }
    }
    atomic_fetch_add(&flow->ready, 1);
    if (client) {
        s_wait_go(flow);
        while (!s_consumer_done(a) && !s_flow_silent(flow)) {
            int rc = hop_client_dispatch(client, s_on_delivery, a, S_POLL_MS);
            if (rc != HOP_OK && rc != HOP_ETIMEOUT) {
                hop_bench_fail(&flow->ctl, rc, "%s: %s", name, hop_bench_errtext(client, rc));
                break;
            }
        }
        if (a->unacked > 0 && !hop_bench_stopped(&flow->ctl)) {
            int rc = hop_client_ack(client, a->ack_tag, true);
            if (rc != HOP_OK)
                hop_bench_fail(&flow->ctl, rc, "%s: ack: %s", name, hop_bench_errtext(client, rc));
        }
        hop_client_destroy(&client);
    }
    atomic_fetch_add(&flow->finished, 1);
    return NULL;
}

// Publishes one message, retrying while the client's queue is full.
static int
s_publish(s_actor_t *a, hop_client_t *client, const char *body)
{
    s_flow_t *flow = a->flow;
    int rc;
    while ((rc = hop_client_publish(client, flow->exchange, flow->key, body, flow->size, NULL)) ==
               HOP_EFULL &&
           !hop_bench_stopped(&flow->ctl)) {
        a->stalls++;
        hop_bench_sleep(20 * 1000);
    }
    if (rc != HOP_OK)
        hop_bench_fail(&flow->ctl, rc, "publisher %d: publish: %s", a->index,
                       hop_bench_errtext(client, rc));
    return rc;
}

static void *
s_publisher_main(void *arg)
{
    s_actor_t *a = arg;
    s_flow_t *flow = a->flow;
    char name[64];
    snprintf(name, sizeof name, "bench-publisher-%d", a->index);
    hop_client_t *client = hop_bench_client_open_or_fail(&flow->ctl, name);
    char *body = calloc(1, flow->size);
    if (!body)
        abort();
    atomic_fetch_add(&flow->ready, 1);
    long i = 0;
    if (client) {
        s_wait_go(flow);
        if (flow->workload == HOP_BENCH_LATENCY) {
            // As shared/peers W5: absolute deadlines, so one late wake-up does not shift the
            // rest; the timestamp is taken right before the publish call.
            int64_t period = (int64_t)(HOP_BENCH_NS / flow->o->rate),
                    next = hop_bench_now() + HOP_BENCH_MS;
            // Periods under 100 us are paced in bursts: a sleep only when ahead of time, and
            // then for 100 us, so at most 10,000 sleeps a second. A clock_nanosleep costs tens
            // of microseconds of system time on a VM: one per message would cap the rate far
            // below what the latency curve asks for (and spinning would take a core).
            bool sleeps = period >= 100 * 1000;
            for (i = 0; i < a->count && !hop_bench_stopped(&flow->ctl); i++) {
                if (sleeps)
                    hop_bench_sleep_until(next);
                else if (hop_bench_now() < next)
                    hop_bench_sleep_until(next + 100 * 1000);
                next += period;
                int64_t t = hop_bench_now(), seq = a->first + i;
                memcpy(body, &t, 8);
                memcpy(body + 8, &seq, 8);
                if (s_publish(a, client, body) != HOP_OK)
                    break;
                atomic_store_explicit(&a->sent, i + 1, memory_order_relaxed);
            }
        } else {
            for (i = 0; i < a->count; i++) {
                int64_t seq = a->first + i;
                memcpy(body + 8, &seq, 8);
                if (s_publish(a, client, body) != HOP_OK)
                    break;
                if ((i & 1023) == 1023) {
                    atomic_store_explicit(&a->sent, i + 1, memory_order_relaxed);
                    if (hop_bench_stopped(&flow->ctl))
                        break;
                }
            }
        }
    }
    a->t_end = hop_bench_now();
    atomic_store(&a->sent, i);
    if (atomic_fetch_sub(&flow->publishing, 1) == 1)
        atomic_store(&flow->t_pub_done, hop_bench_now());
    if (client && !hop_bench_stopped(&flow->ctl)) {
        // One round trip after the last publish: the broker has read every publish before it
        // answers, and an asynchronous refusal (unknown exchange) surfaces here. A timeout
        // only means the broker is still working through a backlog.
        void *map = NULL;
        size_t size = 0;
        int rc = hop_client_status(client, &map, &size);
        free(map);
        if (rc != HOP_OK && rc != HOP_ETIMEOUT)
            hop_bench_fail(&flow->ctl, rc, "%s: %s", name, hop_bench_errtext(client, rc));
    }
    hop_client_destroy(&client);
    free(body);
    atomic_fetch_add(&flow->finished, 1);
    return NULL;
}

static bool
s_start(s_flow_t *flow, s_actor_t *a)
{
    int err =
        pthread_create(&a->thread, NULL, a->publisher ? s_publisher_main : s_consumer_main, a);
    if (err) {
        hop_bench_fail(&flow->ctl, HOP_ENOMEM, "cannot start a thread: %s", strerror(err));
        return false;
    }
    a->running = true;
    return true;
}

// Consumers first (they must be subscribed before the first publish), then publishers; go;
// progress until every thread is done.
static void
s_flow_run(s_flow_t *flow)
{
    int started = 0;
    for (int i = flow->npub; i < flow->npub + flow->ncons && !hop_bench_stopped(&flow->ctl); i++)
        started += s_start(flow, &flow->actors[i]);
    while (atomic_load(&flow->ready) < started)
        hop_bench_sleep(HOP_BENCH_MS);
    for (int i = 0; i < flow->npub && !hop_bench_stopped(&flow->ctl); i++)
        started += s_start(flow, &flow->actors[i]);
    while (atomic_load(&flow->ready) < started)
        hop_bench_sleep(HOP_BENCH_MS);

    flow->t0 = hop_bench_now();
    atomic_store(&flow->go, true);
    hop_bench_progress_t progress;
    hop_bench_progress_init(&progress);
    const char *verb = flow->workload == HOP_BENCH_QUEUE ? "consumed" : "delivered";
    long expected = flow->workload == HOP_BENCH_PUBSUB ? flow->total * flow->ncons : flow->total;
    while (atomic_load(&flow->finished) < started) {
        hop_bench_sleep(50 * HOP_BENCH_MS);
        if (hop_bench_interrupted && !hop_bench_stopped(&flow->ctl))
            hop_bench_fail(&flow->ctl, HOP_OK, "interrupted");
        long sent = 0, got = 0;
        for (int i = 0; i < flow->npub + flow->ncons; i++)
            if (i < flow->npub)
                sent += atomic_load_explicit(&flow->actors[i].sent, memory_order_relaxed);
            else
                got += atomic_load_explicit(&flow->actors[i].got, memory_order_relaxed);
        double rate = hop_bench_progress_due(&progress, (double)got);
        if (rate >= 0)
            hop_bench_progress_print(&progress, "%s: published %s/%s, %s %s/%s, %s msgs/s",
                                     flow->label, hop_bench_num(sent), hop_bench_num(flow->total),
                                     verb, hop_bench_num(got), hop_bench_num(expected),
                                     hop_bench_num(rate));
    }
    hop_bench_progress_end(&progress);
    for (int i = 0; i < flow->npub + flow->ncons; i++)
        if (flow->actors[i].running)
            pthread_join(flow->actors[i].thread, NULL);
}

static double
s_pct_us(const int64_t *sorted, size_t n, double p)
{
    return n ? (double)sorted[(size_t)(p * (double)(n - 1))] / 1000.0 : 0;
}

// Prints the figures of a latency run; returns the JSON fields through obj.
static void
s_report_latency(s_flow_t *flow, json_t *obj, long got)
{
    const hop_bench_opts_t *o = flow->o;
    long warm = (long)(o->rate / 10); // the first 0.1 s, as shared/peers
    if (warm >= flow->total)
        warm = 0;
    size_t n = 0;
    for (long i = warm; i < flow->total; i++)
        if (flow->lat[i] >= 0)
            flow->lat[n++] = flow->lat[i];
    qsort(flow->lat, n, sizeof *flow->lat, hop_bench_cmp_i64);
    static const struct {
        const char *name, *metric, *json;
        double p;
    } pcts[] = {{"p50", "p50_us", "p50_us", 0.50},
                {"p90", "p90_us", "p90_us", 0.90},
                {"p99", "p99_us", "p99_us", 0.99},
                {"p99.9", "p99.9_us", "p99_9_us", 0.999},
                {"max", "max_us", "max_us", 1.0}};
    if (!o->json)
        printf("  samples    %s (first %s dropped as warm-up)\n  latency  ",
               hop_bench_num((double)n), hop_bench_num((double)warm));
    for (size_t k = 0; k < sizeof pcts / sizeof *pcts; k++) {
        double us = s_pct_us(flow->lat, n, pcts[k].p);
        if (!o->json)
            printf("  %s %.1f", pcts[k].name, us);
        hop_bench_jreal(obj, pcts[k].json, us);
        if (n)
            hop_bench_result(o, flow->label, pcts[k].metric, us);
    }
    if (!o->json)
        printf(" µs\n");
    hop_bench_jint(obj, "received", got);
    hop_bench_jint(obj, "samples", (long long)n);
    hop_bench_jint(obj, "warmup_dropped", warm);
}

static const char *
s_flow_name(int workload)
{
    return workload == HOP_BENCH_PUBSUB  ? "pubsub"
           : workload == HOP_BENCH_QUEUE ? "queue"
                                         : "latency";
}

// Prints the figures of a flow run and fills obj; returns the exit code.
static int
s_flow_report(s_flow_t *flow, int64_t rss, int64_t left, json_t *obj)
{
    const hop_bench_opts_t *o = flow->o;
    long sent = 0, got = 0, dup = 0, bad = 0, reordered = 0, redelivered = 0, stalls = 0;
    int64_t t_pub = flow->t0, t_last = flow->t0;
    for (int i = 0; i < flow->npub + flow->ncons; i++) {
        s_actor_t *a = &flow->actors[i];
        if (a->publisher) {
            sent += atomic_load(&a->sent);
            stalls += a->stalls;
            t_pub = a->t_end > t_pub ? a->t_end : t_pub;
            continue;
        }
        got += atomic_load(&a->got);
        dup += a->dup;
        bad += a->bad;
        reordered += a->reordered;
        redelivered += a->redelivered;
        int64_t t = atomic_load(&a->t_last);
        t_last = t > t_last ? t : t_last;
    }
    // Against what was really published: a run cut short by an error loses nothing unsent.
    long expected = flow->workload == HOP_BENCH_PUBSUB ? sent * flow->ncons : sent;
    long lost = expected - got;
    bool is_queue = flow->workload == HOP_BENCH_QUEUE;
    const char *verb = is_queue ? "consumed" : "delivered";
    if (!o->json && flow->workload != HOP_BENCH_LATENCY) {
        printf("  published  %13s msgs in %7.3f s  %11s msgs/s\n", hop_bench_num(sent),
               hop_bench_secs(t_pub - flow->t0),
               hop_bench_num(hop_bench_per_sec(sent, t_pub - flow->t0)));
        printf("  %-9s  %13s msgs in %7.3f s  %11s msgs/s  (first publish -> last %s)\n", verb,
               hop_bench_num(got), hop_bench_secs(t_last - flow->t0),
               hop_bench_num(hop_bench_per_sec(got, t_last - flow->t0)),
               is_queue ? "consumed" : "delivery");
    } else if (!o->json) {
        printf("  sent       %s at %s msgs/s for %.1f s\n", hop_bench_num(sent),
               hop_bench_num(o->rate), o->duration);
    }
    if (flow->workload == HOP_BENCH_LATENCY) {
        hop_bench_jint(obj, "sent", sent);
        // What the pacing achieved: at rates near the maximum it can fall short of o->rate.
        hop_bench_jreal(obj, "publish_msgs_s", hop_bench_per_sec(sent, t_pub - flow->t0));
        s_report_latency(flow, obj, got);
    } else {
        hop_bench_jint(obj, "published", sent);
        hop_bench_jreal(obj, "publish_seconds", hop_bench_secs(t_pub - flow->t0));
        hop_bench_jreal(obj, "publish_msgs_s", hop_bench_per_sec(sent, t_pub - flow->t0));
        hop_bench_jint(obj, verb, got);
        hop_bench_jreal(obj, "seconds", hop_bench_secs(t_last - flow->t0));
        hop_bench_jreal(obj, is_queue ? "consumed_msgs_s" : "delivered_msgs_s",
                        hop_bench_per_sec(got, t_last - flow->t0));
        hop_bench_result(o, flow->label, is_queue ? "consumed_msgs_s" : "delivered_msgs_s",
                         hop_bench_per_sec(got, t_last - flow->t0));
        hop_bench_result(o, flow->label, "publish_msgs_s",
                         hop_bench_per_sec(sent, t_pub - flow->t0));
    }
    if (!o->json) {
        printf("  lost %s, duplicated %s", hop_bench_num(lost), hop_bench_num(dup));
        if (bad)
            printf(", corrupt %s", hop_bench_num(bad));
        if (reordered)
            printf(", out of order %s", hop_bench_num(reordered));
        if (redelivered)
            printf(", redelivered %s", hop_bench_num(redelivered));
        if (left > 0)
            printf(", left in the queue %s", hop_bench_num(left));
        printf("\n");
        if (stalls)
            printf("  publisher  %s publishes refused (client queue full) and retried\n",
                   hop_bench_num(stalls));
        printf("  broker     RSS %s after the run\n", hop_bench_mib(rss));
    }
    hop_bench_jint(obj, "lost", lost);
    hop_bench_jint(obj, "duplicated", dup);
    hop_bench_jint(obj, "corrupt", bad);
    if (flow->workload == HOP_BENCH_PUBSUB)
        hop_bench_jint(obj, "out_of_order", reordered);
    if (is_queue) {
        hop_bench_jint(obj, "redelivered", redelivered);
        hop_bench_jint(obj, "left_in_queue", left);
    }
    hop_bench_jint(obj, "publish_stalls", stalls);
    hop_bench_jint(obj, "broker_rss_bytes", rss);
    hop_bench_result(o, flow->label, "lost_msgs", (double)lost);
    hop_bench_result(o, flow->label, "dup_msgs", (double)dup);
    if (rss >= 0)
        hop_bench_result(o, flow->label, "broker_rss_kib", (double)rss / 1024);
    return lost || dup || bad ? HOP_BENCH_EXIT_LOST : HOP_BENCH_EXIT_OK;
}

// Runs pubsub, queue or latency with options o; fills obj; returns the exit code.
int
hop_bench_run_flow(int workload, const hop_bench_opts_t *o, const char *endpoint, int timeout_ms,
                   json_t *obj)
{
    s_flow_t *flow = calloc(1, sizeof *flow);
    if (!flow)
        abort();
    hop_bench_ctl_init(&flow->ctl, endpoint, timeout_ms);
    flow->o = o;
    flow->workload = workload;
    flow->size = (size_t)o->size;
    if (workload == HOP_BENCH_PUBSUB) {
        flow->npub = 1;
        flow->ncons = (int)o->subscribers;
        flow->total = o->count;
        hop_bench_unique(flow->exchange, sizeof flow->exchange, "bench.fanout");
        if (o->subscribers == 1 || o->subscribers == 4)
            snprintf(flow->label, sizeof flow->label, "W%d", o->subscribers == 1 ? 1 : 2);
        else
            snprintf(flow->label, sizeof flow->label, "W2-subs%ld", o->subscribers);
    } else if (workload == HOP_BENCH_QUEUE) {
        flow->npub = (int)o->producers;
        flow->ncons = (int)o->consumers;
        flow->total = o->count;
        hop_bench_unique(flow->queue, sizeof flow->queue, "bench.queue");
        snprintf(flow->key, sizeof flow->key, "%s", flow->queue); // via the default exchange
        int n = snprintf(flow->label, sizeof flow->label, "W3");
        if (o->producers != 1 || o->consumers != 1)
            n += snprintf(flow->label + n, sizeof flow->label - n, "-p%ldc%ld", o->producers,
                          o->consumers);
        n += snprintf(flow->label + n, sizeof flow->label - n, "-ack%ld", o->ack_every);
        if (o->prefetch != 1000)
            snprintf(flow->label + n, sizeof flow->label - n, "-pf%ld", o->prefetch);
    } else {
        flow->npub = flow->ncons = 1;
        flow->total = (long)(o->rate * o->duration);
        snprintf(flow->exchange, sizeof flow->exchange, "amq.direct");
        hop_bench_unique(flow->key, sizeof flow->key, "bench.lat");
        snprintf(flow->label, sizeof flow->label, "W5");
    }
    if (o->name)
        snprintf(flow->label, sizeof flow->label, "%s", o->name);
    atomic_init(&flow->publishing, flow->npub);
    flow->actors = calloc((size_t)(flow->npub + flow->ncons), sizeof *flow->actors);
    size_t words = ((size_t)flow->total + 63) / 64;
    if (workload == HOP_BENCH_QUEUE)
        flow->shared_seen = calloc(words, sizeof *flow->shared_seen);
    if (workload == HOP_BENCH_LATENCY) {
        flow->lat = malloc((size_t)flow->total * sizeof *flow->lat);
        for (long i = 0; flow->lat && i < flow->total; i++)
            flow->lat[i] = -1;
    }
    if (!flow->actors || (workload == HOP_BENCH_QUEUE && !flow->shared_seen) ||
        (workload == HOP_BENCH_LATENCY && !flow->lat))
        abort();
    for (int i = 0; i < flow->npub + flow->ncons; i++) {
        s_actor_t *a = &flow->actors[i];
        a->flow = flow;
        a->publisher = i < flow->npub;
        a->index = a->publisher ? i : i - flow->npub;
        if (a->publisher) {
            a->first = flow->total * a->index / flow->npub;
            a->count = flow->total * (a->index + 1) / flow->npub - a->first;
        } else {
            a->expect = flow->total;
            if (workload == HOP_BENCH_PUBSUB && !(a->seen = calloc(words, sizeof *a->seen)))
                abort();
        }
    }

    hop_bench_jstr(obj, "workload", s_flow_name(workload));
    hop_bench_jstr(obj, "label", flow->label);
    hop_bench_jint(obj, "size", o->size);
    if (!o->json) {
        if (workload == HOP_BENCH_PUBSUB)
            printf("pubsub %s: 1 publisher -> %d subscriber%s on fanout %s, %s msgs of %ld B\n",
                   flow->label, flow->ncons, flow->ncons > 1 ? "s" : "", flow->exchange,
                   hop_bench_num(flow->total), o->size);
        else if (workload == HOP_BENCH_QUEUE)
            printf("queue %s: %d producer%s -> queue %s -> %d consumer%s (prefetch %ld, ack %s%s), "
                   "%s msgs of %ld B\n",
                   flow->label, flow->npub, flow->npub > 1 ? "s" : "", flow->queue, flow->ncons,
                   flow->ncons > 1 ? "s" : "", o->prefetch,
                   o->ack_every > 1 ? "multiple every " : "each",
                   o->ack_every > 1 ? hop_bench_num(o->ack_every) : "", hop_bench_num(flow->total),
                   o->size);
        else
            printf("latency %s: %s msgs/s for %.1f s of %ld B, amq.direct -> exclusive queue\n",
                   flow->label, hop_bench_num(o->rate), o->duration, o->size);
        fflush(stdout);
    }
    if (workload == HOP_BENCH_PUBSUB) {
        hop_bench_jint(obj, "subscribers", flow->ncons);
        hop_bench_jint(obj, "count", flow->total);
    } else if (workload == HOP_BENCH_QUEUE) {
        hop_bench_jint(obj, "producers", flow->npub);
        hop_bench_jint(obj, "consumers", flow->ncons);
        hop_bench_jint(obj, "prefetch", o->prefetch);
        hop_bench_jint(obj, "ack_every", o->ack_every);
        hop_bench_jint(obj, "count", flow->total);
    } else {
        hop_bench_jreal(obj, "rate", o->rate);
        hop_bench_jreal(obj, "duration", o->duration);
    }

    // The admin connection sets up and tears down the topology and reads the broker's RSS.
    hop_client_t *admin = hop_bench_client_open_or_fail(&flow->ctl, "bench-admin");
    int rc = HOP_OK;
    if (admin && workload == HOP_BENCH_PUBSUB)
        rc = hop_client_declare_exchange(admin, flow->exchange, "fanout", 0);
    if (admin && workload == HOP_BENCH_QUEUE &&
        (rc = hop_client_declare_queue(admin, flow->queue, 0, NULL, 0)) == HOP_OK)
        rc = hop_client_purge_queue(admin, flow->queue, NULL);
    if (rc != HOP_OK)
        hop_bench_fail(&flow->ctl, rc, "cannot declare %s: %s",
                       workload == HOP_BENCH_QUEUE ? flow->queue : flow->exchange,
                       hop_bench_errtext(admin, rc));
    if (!hop_bench_stopped(&flow->ctl))
        s_flow_run(flow);
    int64_t rss = -1;
    uint64_t left = 0;
    hop_bench_broker_status(admin, &rss, NULL);
    if (admin && workload == HOP_BENCH_PUBSUB)
        hop_client_delete_exchange(admin, flow->exchange, 0);
    if (admin && workload == HOP_BENCH_QUEUE)
        hop_client_delete_queue(admin, flow->queue, 0, &left);
    hop_client_destroy(&admin);

    // A run that never started has no figures, only its error.
    int code = flow->t0 ? s_flow_report(flow, rss, (int64_t)left, obj) : HOP_BENCH_EXIT_OK;
    if (flow->ctl.error[0]) {
        fprintf(stderr, "hopper bench %s: %s\n", s_flow_name(workload), flow->ctl.error);
        hop_bench_jstr(obj, "error", flow->ctl.error);
        code = hop_bench_interrupted ? HOP_BENCH_EXIT_INTERRUPTED : flow->ctl.exit_code;
    }
    json_object_set_new(obj, "ok", json_boolean(code == HOP_BENCH_EXIT_OK));
    for (int i = 0; i < flow->npub + flow->ncons; i++)
        free(flow->actors[i].seen);
    free(flow->actors);
    free(flow->shared_seen);
    free(flow->lat);
    pthread_mutex_destroy(&flow->ctl.lock);
    free(flow);
    return code;
}
