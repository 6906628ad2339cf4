// cli/bench_persistent.c - the persistent workload of `hopper bench` (W4 of shared/peers): a
// durable queue, persistent messages published in confirm mode with at most --window
// unconfirmed, then a new consumer connection drains the queue with one ack per message. The
// two phases are timed and reported apart, with the fsyncs the broker did meanwhile (status
// `fsyncs`), since group commit is what makes confirmed publishing fast or slow.
//
// One thread does it all: the producer and then the consumer are its own hop_client_t each,
// used in turn by the main thread, which also prints progress. Every payload carries a
// sequence number (bytes 8-15), so the drain also checks that nothing was lost or doubled.
#include "bench_common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#define S_POLL_MS  100                 // the consumer re-checks its stop conditions this often
#define S_STALL_NS (10 * HOP_BENCH_NS) // no confirm for this long fails the produce phase

// What the broker's status says about its store; -1 / "" when it does not say.
typedef struct {
    char policy[32];    // "always", "every 100 ms", "never"; "" without a store
    int64_t fsyncs;     // fsyncs since the broker started
    int64_t disk_bytes; // on disk in the data directory
    int64_t rss;        // the broker's resident set
} s_store_t;

// One run.
typedef struct {
    hop_bench_ctl_t ctl;
    const hop_bench_opts_t *o;
    char label[64];                // W4, ...
    char queue[HOP_NAME_MAX + 1];  // the durable queue, fresh per run
    size_t size;                   // payload bytes
    long total;                    // messages to publish
    hop_bench_progress_t progress; // of the phase running
    // produce phase
    long sent;           // publishes accepted by the client
    long confirmed;      // positive confirms
    long nacked;         // negative confirms (refused or lost with the connection)
    long stalls;         // publishes refused with HOP_EFULL (flow control) and retried
    long waits;          // times the window was full
    int64_t t0;          // just before the first publish
    int64_t t_confirmed; // when the last confirm came
    // consume phase
    uint64_t *seen;   // bitmap of sequence numbers received
    long got;         // distinct messages received
    long dup, bad;    // second copies; wrong size or sequence number
    long redelivered; // deliveries flagged redelivered
    int64_t t_cons0;  // just before the consume request
    int64_t t_last;   // when the last delivery arrived
    uint64_t queued;  // ready in the queue between the phases
} s_run_t;

// ---------------------------------------------------------------------------------------
// The broker's status

typedef struct {
    s_store_t *st;
    uint64_t fsync_ms;
} s_store_read_t;

static void
s_store_one(const msgpack_object *k, const msgpack_object *v, void *arg)
{
    s_store_read_t *r = arg;
    s_store_t *st = r->st;
    if (v->type == MSGPACK_OBJECT_STR && hop_bench_key_is(k, "fsync"))
        snprintf(st->policy, sizeof st->policy, "%.*s", (int)v->via.str.size, v->via.str.ptr);
    if (v->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return;
    if (hop_bench_key_is(k, "fsyncs"))
        st->fsyncs = (int64_t)v->via.u64;
    else if (hop_bench_key_is(k, "fsync_ms"))
        r->fsync_ms = v->via.u64;
    else if (hop_bench_key_is(k, "disk_bytes"))
        st->disk_bytes = (int64_t)v->via.u64;
    else if (hop_bench_key_is(k, "rss_bytes") && v->via.u64 > 0)
        st->rss = (int64_t)v->via.u64;
}

// Reads the store's figures from the broker's status into st (all unknown on failure).
static void
s_store_read(hop_client_t *admin, s_store_t *st)
{
    memset(st, 0, sizeof *st);
    st->fsyncs = st->disk_bytes = st->rss = -1;
    s_store_read_t r = {st, 0};
    hop_bench_status_each(admin, s_store_one, &r);
    if (r.fsync_ms && strcmp(st->policy, "every") == 0)
        snprintf(st->policy, sizeof st->policy, "every %llu ms", (unsigned long long)r.fsync_ms);
}

// ---------------------------------------------------------------------------------------
// Produce: persistent publishes, at most --window of them unconfirmed

// Settles what the broker confirmed, waiting up to timeout_ms (0: only what has arrived).
// Returns false when the run must stop.
static bool
s_settle(s_run_t *r, hop_client_t *pub, int timeout_ms)
{
    uint64_t nacked = 0;
    int rc = hop_client_wait_confirms(pub, timeout_ms, &nacked);
    r->confirmed = r->sent - (long)hop_client_unconfirmed(pub) - r->nacked - (long)nacked;
    if (rc == HOP_OK || rc == HOP_ETIMEOUT)
        return true;
    r->nacked += (long)nacked;
    // A refused persistent message was not stored (a full disk, say): the run has failed.
    hop_bench_fail(&r->ctl, rc == HOP_ENACKED ? HOP_EBROKER : rc, "producer: %s",
                   hop_bench_errtext(pub, rc));
    return false;
}

static void
s_produce_progress(s_run_t *r)
{
    double rate = hop_bench_progress_due(&r->progress, (double)r->confirmed);
    if (rate >= 0)
        hop_bench_progress_print(&r->progress, "%s: published %s/%s, confirmed %s, %s msgs/s",
                                 r->label, hop_bench_num(r->sent), hop_bench_num(r->total),
                                 hop_bench_num(r->confirmed), hop_bench_num(rate));
}

static void
s_produce(s_run_t *r, hop_client_t *pub)
{
    int rc = hop_client_confirm_select(pub);
    if (rc != HOP_OK) {
        hop_bench_fail(&r->ctl, rc, "producer: confirm mode: %s", hop_bench_errtext(pub, rc));
        return;
    }
    const hop_publish_opts_t opts = {.persistent = true};
    char *body = calloc(1, r->size);
    if (!body)
        abort();
    long window = r->o->window;
    int64_t t_heard = hop_bench_now(), last_confirmed = 0;
    hop_bench_progress_init(&r->progress);
    r->t0 = hop_bench_now();
    while (!hop_bench_stopped(&r->ctl)) {
        if (hop_bench_interrupted) {
            hop_bench_fail(&r->ctl, HOP_OK, "interrupted");
            break;
        }
        long unconfirmed = (long)hop_client_unconfirmed(pub);
        if (r->sent < r->total && unconfirmed < window) {
            int64_t seq = r->sent;
            memcpy(body + 8, &seq, 8);
            rc = hop_client_publish_ex(pub, "", r->queue, body, r->size, NULL, &opts, NULL);
            if (rc == HOP_EFULL) {
                r->stalls++; // paused by flow control for the client's timeout: try again
                continue;
            }
            if (rc != HOP_OK) {
                hop_bench_fail(&r->ctl, rc, "producer: publish: %s", hop_bench_errtext(pub, rc));
                break;
            }
            if ((++r->sent & 255) == 0) {
                r->confirmed = r->sent - (long)hop_client_unconfirmed(pub) - r->nacked;
                s_produce_progress(r);
            }
            continue;
        }
        if (unconfirmed == 0)
            break; // all sent, all confirmed
        // The window is full (or everything is sent): take what has arrived; only when that
        // frees nothing, wait. The SDK has no "wait for the next confirm": a 1 ms slice is
        // the shortest wait it offers, and it returns early once all are confirmed.
        r->waits++;
        if (!s_settle(r, pub, 0))
            break;
        bool full = (long)hop_client_unconfirmed(pub) >= window;
        if ((full || r->sent == r->total) && !s_settle(r, pub, 1))
            break;
        int64_t now = hop_bench_now();
        if (r->confirmed != last_confirmed) {
            last_confirmed = r->confirmed;
            t_heard = now;
        } else if (now - t_heard > S_STALL_NS) {
            hop_bench_fail(&r->ctl, HOP_ETIMEOUT,
                           "producer: no confirm for %.0f s (%s of %s confirmed, %ld waiting)",
                           hop_bench_secs(S_STALL_NS), hop_bench_num(r->confirmed),
                           hop_bench_num(r->sent), (long)hop_client_unconfirmed(pub));
            break;
        }
        s_produce_progress(r);
    }
    r->t_confirmed = hop_bench_now();
    r->confirmed = r->sent - (long)hop_client_unconfirmed(pub) - r->nacked;
    hop_bench_progress_end(&r->progress);
    free(body);
}

// ---------------------------------------------------------------------------------------
// Consume: a new connection drains the queue, one ack per message

static int
s_on_delivery(hop_client_t *client, const hop_delivery_t *d, void *arg)
{
    s_run_t *r = arg;
    r->t_last = hop_bench_now();
    r->redelivered += d->redelivered;
    int64_t seq = -1;
    if (d->body_size == r->size && d->body)
        memcpy(&seq, (const char *)d->body + 8, 8);
    if (seq < 0 || seq >= r->sent) {
        r->bad++;
    } else if (r->seen[seq >> 6] & (1ULL << (seq & 63))) {
        r->dup++;
    } else {
        r->seen[seq >> 6] |= 1ULL << (seq & 63);
        r->got++;
    }
    int rc = hop_client_ack(client, d->tag, false);
    if (rc != HOP_OK)
        hop_bench_fail(&r->ctl, rc, "consumer: ack: %s", hop_bench_errtext(client, rc));
    if ((r->got & 1023) == 0) {
        double rate = hop_bench_progress_due(&r->progress, (double)r->got);
        if (rate >= 0)
            hop_bench_progress_print(&r->progress, "%s: consumed %s/%s, %s msgs/s", r->label,
                                     hop_bench_num(r->got), hop_bench_num(r->confirmed),
                                     hop_bench_num(rate));
    }
    return r->got >= r->confirmed || hop_bench_stopped(&r->ctl);
}

static void
s_consume(s_run_t *r)
{
    hop_client_t *cons = hop_bench_client_open_or_fail(&r->ctl, "bench-consumer");
    if (!cons)
        return;
    hop_bench_progress_init(&r->progress);
    r->t_cons0 = r->t_last = hop_bench_now();
    int rc = hop_client_consume(cons, r->queue, NULL, (int)r->o->prefetch, 0, NULL, 0);
    if (rc != HOP_OK)
        hop_bench_fail(&r->ctl, rc, "consumer: cannot consume %s: %s", r->queue,
                       hop_bench_errtext(cons, rc));
    while (!hop_bench_stopped(&r->ctl) && r->got < r->confirmed) {
        if (hop_bench_interrupted) {
            hop_bench_fail(&r->ctl, HOP_OK, "interrupted");
            break;
        }
        rc = hop_client_dispatch(cons, s_on_delivery, r, S_POLL_MS);
        if (rc != HOP_OK && rc != HOP_ETIMEOUT) {
            hop_bench_fail(&r->ctl, rc, "consumer: %s", hop_bench_errtext(cons, rc));
            break;
        }
        if (hop_bench_now() - r->t_last > HOP_BENCH_SILENCE_NS)
            break; // the rest is lost
    }
    hop_bench_progress_end(&r->progress);
    hop_client_destroy(&cons); // after its acks: the queue is empty when it is deleted
}

// ---------------------------------------------------------------------------------------
// Report

// Prints the figures and fills obj; returns the exit code.
static int
s_report(s_run_t *r, const s_store_t *s0, const s_store_t *s1, const s_store_t *s2, uint64_t left,
         json_t *obj)
{
    const hop_bench_opts_t *o = r->o;
    int64_t t_prod = r->t_confirmed - r->t0, t_cons = r->t_last - r->t_cons0;
    double prod_rate = hop_bench_per_sec((double)r->confirmed, t_prod);
    double cons_rate = hop_bench_per_sec((double)r->got, t_cons);
    bool fsync_known = s0->fsyncs >= 0 && s1->fsyncs >= 0;
    int64_t f_prod = fsync_known ? s1->fsyncs - s0->fsyncs : -1;
    int64_t f_cons = fsync_known && s2->fsyncs >= 0 && r->t_cons0 ? s2->fsyncs - s1->fsyncs : -1;
    // A run stopped early (an error, Ctrl-C) cannot tell a loss from what it did not drain.
    bool drained = r->t_cons0 && !hop_bench_stopped(&r->ctl);
    long lost = drained ? r->confirmed - r->got : 0;
    if (!o->json) {
        printf("  broker     fsync %s\n", s0->policy[0] ? s0->policy : "unknown (no store?)");
        printf("  produced   %13s msgs in %7.3f s  %11s msgs/s  (first publish -> last confirm)\n",
               hop_bench_num((double)r->confirmed), hop_bench_secs(t_prod),
               hop_bench_num(prod_rate));
        if (r->t_cons0)
            printf("  consumed   %13s msgs in %7.3f s  %11s msgs/s  (consumer start -> last "
                   "consumed)\n",
                   hop_bench_num((double)r->got), hop_bench_secs(t_cons), hop_bench_num(cons_rate));
        if (f_prod >= 0)
            printf("  fsyncs     produce %s (%s/s, %.1f msgs each)", hop_bench_num((double)f_prod),
                   hop_bench_num(hop_bench_per_sec(f_prod, t_prod)),
                   f_prod ? (double)r->confirmed / (double)f_prod : 0.0);
        if (f_prod >= 0 && f_cons >= 0)
            printf(", consume %s (%s/s)", hop_bench_num((double)f_cons),
                   hop_bench_num(hop_bench_per_sec(f_cons, t_cons)));
        if (f_prod >= 0)
            printf("\n");
        if (drained)
            printf("  lost %s, duplicated %s", hop_bench_num(lost), hop_bench_num(r->dup));
        else
            printf("  stopped before the queue was drained: duplicated %s", hop_bench_num(r->dup));
        if (r->bad)
            printf(", corrupt %s", hop_bench_num(r->bad));
        if (r->nacked)
            printf(", refused %s", hop_bench_num(r->nacked));
        if (r->redelivered)
            printf(", redelivered %s", hop_bench_num(r->redelivered));
        if (left > 0)
            printf(", left in the queue %s", hop_bench_num((double)left));
        printf("\n");
        if (r->queued != (uint64_t)r->confirmed && r->t_cons0)
            printf("  queue      held %s after the produce phase, not %s\n",
                   hop_bench_num((double)r->queued), hop_bench_num((double)r->confirmed));
        if (r->stalls)
            printf("  producer   %s publishes paused by flow control and retried\n",
                   hop_bench_num(r->stalls));
        printf("  broker     RSS %s after the run; disk %s after the produce phase\n",
               hop_bench_mib(s2->rss), hop_bench_mib(s1->disk_bytes));
    }
    hop_bench_jstr(obj, "fsync", s0->policy);
    hop_bench_jint(obj, "published", r->sent);
    hop_bench_jint(obj, "confirmed", r->confirmed);
    hop_bench_jint(obj, "nacked", r->nacked);
    hop_bench_jreal(obj, "produce_seconds", hop_bench_secs(t_prod));
    hop_bench_jreal(obj, "produce_confirmed_msgs_s", prod_rate);
    hop_bench_jint(obj, "queued", (long long)r->queued);
    hop_bench_jint(obj, "consumed", r->got);
    hop_bench_jreal(obj, "consume_seconds", hop_bench_secs(t_cons));
    hop_bench_jreal(obj, "consume_msgs_s", cons_rate);
    hop_bench_jint(obj, "msgs_per_fsync", f_prod > 0 ? r->confirmed / f_prod : 0);
    hop_bench_jint(obj, "produce_fsyncs", f_prod);
    hop_bench_jreal(obj, "produce_fsyncs_s", hop_bench_per_sec(f_prod > 0 ? f_prod : 0, t_prod));
    hop_bench_jint(obj, "consume_fsyncs", f_cons);
    hop_bench_jreal(obj, "consume_fsyncs_s", hop_bench_per_sec(f_cons > 0 ? f_cons : 0, t_cons));
    hop_bench_jint(obj, "window_waits", r->waits);
    hop_bench_jint(obj, "lost", lost);
    hop_bench_jint(obj, "duplicated", r->dup);
    hop_bench_jint(obj, "corrupt", r->bad);
    hop_bench_jint(obj, "redelivered", r->redelivered);
    hop_bench_jint(obj, "left_in_queue", (long long)left);
    hop_bench_jint(obj, "publish_stalls", r->stalls);
    hop_bench_jint(obj, "broker_rss_bytes", s2->rss);
    hop_bench_jint(obj, "broker_disk_bytes", s1->disk_bytes);
    // Metric names as shared/peers' W4, so that the lines aggregate beside theirs.
    hop_bench_result(o, r->label, "produce_confirmed_msgs_s", prod_rate);
    if (r->t_cons0)
        hop_bench_result(o, r->label, "consume_msgs_s", cons_rate);
    if (f_prod >= 0)
        hop_bench_result(o, r->label, "fsyncs_s", hop_bench_per_sec(f_prod, t_prod));
    hop_bench_result(o, r->label, "lost_msgs", (double)lost);
    hop_bench_result(o, r->label, "dup_msgs", (double)r->dup);
    if (s2->rss >= 0)
        hop_bench_result(o, r->label, "broker_rss_kib", (double)s2->rss / 1024);
    return lost || r->dup || r->bad ? HOP_BENCH_EXIT_LOST : HOP_BENCH_EXIT_OK;
}

// ---------------------------------------------------------------------------------------
// Entry point

int
hop_bench_run_persistent(const hop_bench_opts_t *o, const char *endpoint, int timeout_ms,
                         json_t *obj)
{
    s_run_t *r = calloc(1, sizeof *r);
    if (!r)
        abort();
    hop_bench_ctl_init(&r->ctl, endpoint, timeout_ms);
    r->o = o;
    r->size = (size_t)o->size;
    r->total = o->count;
    hop_bench_unique(r->queue, sizeof r->queue, "bench.durable");
    int n = snprintf(r->label, sizeof r->label, "W4");
    if (o->window != 1000)
        n += snprintf(r->label + n, sizeof r->label - n, "-w%ld", o->window);
    if (o->prefetch != 1000)
        snprintf(r->label + n, sizeof r->label - n, "-pf%ld", o->prefetch);
    if (o->name)
        snprintf(r->label, sizeof r->label, "%s", o->name);
    if (!(r->seen = calloc(((size_t)r->total + 63) / 64, sizeof *r->seen)))
        abort();

    hop_bench_jstr(obj, "workload", "persistent");
    hop_bench_jstr(obj, "label", r->label);
    hop_bench_jint(obj, "size", o->size);
    hop_bench_jint(obj, "count", r->total);
    hop_bench_jint(obj, "window", o->window);
    hop_bench_jint(obj, "prefetch", o->prefetch);
    if (!o->json) {
        printf("persistent %s: durable queue %s, %s persistent msgs of %ld B in confirm mode "
               "(window %s), then 1 consumer (prefetch %ld, ack each)\n",
               r->label, r->queue, hop_bench_num(r->total), o->size, hop_bench_num(o->window),
               o->prefetch);
        fflush(stdout);
    }

    // The admin connection declares and deletes the queue and reads the broker's status.
    hop_client_t *admin = hop_bench_client_open_or_fail(&r->ctl, "bench-admin");
    hop_client_t *pub = admin ? hop_bench_client_open_or_fail(&r->ctl, "bench-producer") : NULL;
    int rc = HOP_OK;
    if (pub && (rc = hop_client_declare_queue(admin, r->queue, HOP_DURABLE, NULL, 0)) == HOP_OK)
        rc = hop_client_purge_queue(admin, r->queue, NULL);
    if (rc != HOP_OK)
        hop_bench_fail(&r->ctl, rc, "cannot declare the durable queue %s: %s", r->queue,
                       hop_bench_errtext(admin, rc));
    s_store_t s0, s1, s2;
    s_store_read(admin, &s0);
    if (!hop_bench_stopped(&r->ctl))
        s_produce(r, pub);
    s_store_read(admin, &s1);
    hop_client_destroy(&pub);
    if (!hop_bench_stopped(&r->ctl) &&
        (rc = hop_client_declare_queue_ex(admin, r->queue, HOP_DURABLE | HOP_PASSIVE, NULL, 0,
                                          &r->queued, NULL)) != HOP_OK)
        hop_bench_fail(&r->ctl, rc, "queue %s after the produce phase: %s", r->queue,
                       hop_bench_errtext(admin, rc));
    if (!hop_bench_stopped(&r->ctl))
        s_consume(r);
    s_store_read(admin, &s2);
    uint64_t left = 0;
    if (admin)
        hop_client_delete_queue(admin, r->queue, 0, &left);
    hop_client_destroy(&admin);

    // A run that never started has no figures, only its error.
    int code = r->t0 ? s_report(r, &s0, &s1, &s2, left, obj) : HOP_BENCH_EXIT_OK;
    if (r->ctl.error[0]) {
        fprintf(stderr, "hopper bench persistent: %s\n", r->ctl.error);
        hop_bench_jstr(obj, "error", r->ctl.error);
        code = hop_bench_interrupted ? HOP_BENCH_EXIT_INTERRUPTED : r->ctl.exit_code;
    }
    json_object_set_new(obj, "ok", json_boolean(code == HOP_BENCH_EXIT_OK));
    free(r->seen);
    pthread_mutex_destroy(&r->ctl.lock);
    free(r);
    return code;
}
