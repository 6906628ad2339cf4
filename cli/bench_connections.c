// cli/bench_connections.c - the connections workload of `hopper bench`: many idle subscribed
// connections and one broadcast; the time until every connection has every message, exactly
// once, and what the connections cost the broker and this process.
#include "bench_common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "bench_fleet.h"

// ---------------------------------------------------------------------------------------
// Connections: many idle subscribed connections, one broadcast. bench_fleet.c holds the
// connections: raw protocol over a few ROUTER sockets, one file descriptor per connection.

#define S_DUP_WINDOW_NS     (200 * HOP_BENCH_MS) // how long to watch for a second copy
#define S_CONN_HEARTBEAT_MS 60000 // the longest the broker grants: idle connections stay idle
#define S_CONN_TIMEOUT_MS   5000  // per setup request, unless --timeout says otherwise

// Raises this process's soft limit of open files to the hard limit, and checks that need
// files fit. Returns 0, or -1 with the numbers and the remedies in why.
static int
s_fds_reserve(long need, long count, char *why, size_t why_size)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return 0; // nothing known: let the opening find out
    if (rl.rlim_cur < rl.rlim_max) {
        struct rlimit raised = {rl.rlim_max, rl.rlim_max};
        if (setrlimit(RLIMIT_NOFILE, &raised) == 0)
            rl = raised;
    }
    if (rl.rlim_cur == RLIM_INFINITY || need <= (long)rl.rlim_cur)
        return 0;
    long fit = count - (need - (long)rl.rlim_cur);
    snprintf(why, why_size,
             "%s connections need about %s open files in this process (one per connection "
             "and %s more), but it may open only %s (ulimit -n, already raised to the hard "
             "limit %s, ulimit -Hn). Raise the hard limit (as root: `ulimit -Hn %ld` in the "
             "shell that runs hopper; LimitNOFILE= for a service; nofile in "
             "/etc/security/limits.conf), ask for at most --count %s, or run several bench "
             "processes at once",
             hop_bench_num(count), hop_bench_num(need), hop_bench_num(need - count),
             hop_bench_num(rl.rlim_cur),
             rl.rlim_max == RLIM_INFINITY ? "unlimited" : hop_bench_num(rl.rlim_max), need,
             hop_bench_num(fit > 0 ? fit : 0));
    return -1;
}

int
hop_bench_run_connections(const hop_bench_opts_t *o, const char *endpoint, int timeout_ms,
                          json_t *obj)
{
    hop_bench_ctl_t ctl;
    hop_bench_ctl_init(&ctl, endpoint, timeout_ms);
    const char *label = o->name ? o->name : "CONN";
    char exchange[HOP_NAME_MAX + 1];
    hop_bench_unique(exchange, sizeof exchange, "bench.conns");
    hop_bench_jstr(obj, "workload", "connections");
    hop_bench_jstr(obj, "label", label);
    hop_bench_jint(obj, "requested", o->count);
    hop_bench_jint(obj, "messages", o->messages);
    hop_bench_jint(obj, "workers", o->workers);
    if (!o->json) {
        printf("connections %s: %s connections, each consuming its own queue bound to fanout "
               "%s; %s broadcast message%s\n",
               label, hop_bench_num(o->count), exchange, hop_bench_num(o->messages),
               o->messages > 1 ? "s" : "");
        fflush(stdout);
    }

    int64_t rss_before = -1, rss_open = -1, rss_after = -1, conns_open = -1;
    int64_t t_open = 0, t_opened = 0, t0 = 0, t_close = 0, t_closed = 0;
    hop_bench_usage_t u0 = {0}, u2 = {0};
    hop_fleet_stats_t st = {0};
    hop_fleet_t *fleet = NULL;
    int64_t *done = NULL;
    size_t ndone = 0;
    long fd_limit = -1, expected = 0;
    bool usage_error = false;
    char err[800];
    hop_client_t *admin = hop_bench_client_open_or_fail(&ctl, "bench-admin");
    int rc = admin ? hop_client_declare_exchange(admin, exchange, "fanout", 0) : HOP_OK;
    if (rc != HOP_OK)
        hop_bench_fail(&ctl, rc, "cannot declare %s: %s", exchange, hop_bench_errtext(admin, rc));
    if (hop_bench_stopped(&ctl))
        goto report;
    hop_bench_broker_status(admin, &rss_before, NULL);

    // Every file this run needs is counted before the first connection: running out midway
    // would leave half a fleet and no clear reason.
    hop_bench_usage(&u0);
    long need = u0.fds + hop_fleet_fds(o->count, (int)o->workers) + 16;
    if (s_fds_reserve(need, o->count, err, sizeof err) < 0) {
        hop_bench_fail(&ctl, HOP_OK, "%s", err);
        usage_error = true;
        goto report;
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
        fd_limit = rl.rlim_cur == RLIM_INFINITY ? -1 : (long)rl.rlim_cur;

    hop_fleet_config_t config = {
        .endpoint = hop_bench_endpoint_text(&ctl),
        .exchange = exchange,
        .name = "bench-conn",
        .count = o->count,
        .workers = (int)o->workers,
        .messages = o->messages,
        .body_size = HOP_BENCH_HEAD,
        .timeout_ms = timeout_ms > 0 ? timeout_ms : S_CONN_TIMEOUT_MS,
        .heartbeat_ms = S_CONN_HEARTBEAT_MS,
    };
    t_open = hop_bench_now();
    fleet = hop_fleet_new(&config, err, sizeof err);
    if (!fleet) {
        hop_bench_fail(&ctl, HOP_ENOMEM, "%s", err);
        goto report;
    }
    hop_bench_progress_t progress;
    hop_bench_progress_init(&progress);
    do {
        hop_bench_sleep(10 * HOP_BENCH_MS);
        if (hop_bench_interrupted && !hop_bench_stopped(&ctl)) {
            hop_bench_fail(&ctl, HOP_OK, "interrupted");
            hop_fleet_stop_opening(fleet);
        }
        hop_fleet_stats(fleet, &st);
        double rate = hop_bench_progress_due(&progress, (double)st.opened);
        if (rate >= 0)
            hop_bench_progress_print(&progress, "%s: opened %s/%s connections, %s/s", label,
                                     hop_bench_num(st.opened), hop_bench_num(o->count),
                                     hop_bench_num(rate));
    } while (st.opening);
    hop_bench_progress_end(&progress);
    t_opened = hop_bench_now();
    hop_bench_usage(&u2);
    hop_bench_broker_status(admin, &rss_open, &conns_open);
    // A failed opening is the run's error, but the connections that did open still get the
    // broadcast: with the broker out of file descriptors, they show what it still does.
    char fleet_error[512];
    int fleet_rc = hop_fleet_error(fleet, fleet_error, sizeof fleet_error);
    if (fleet_error[0] && !hop_bench_stopped(&ctl)) {
        fprintf(stderr, "hopper bench connections: opened only %s of %s\n",
                hop_bench_num(st.opened), hop_bench_num(o->count));
        hop_bench_note(&ctl, fleet_rc, "%s", fleet_error);
    }

    // The broadcast: the admin connection publishes, every connection counts what it gets.
    expected = st.opened * o->messages;
    if (!hop_bench_stopped(&ctl) && st.opened > 0) {
        char body[HOP_BENCH_HEAD] = {0};
        t0 = hop_bench_now();
        for (int64_t seq = 0; seq < o->messages && !hop_bench_stopped(&ctl); seq++) {
            memcpy(body + 8, &seq, 8);
            while ((rc = hop_client_publish(admin, exchange, "", body, HOP_BENCH_HEAD, NULL)) ==
                   HOP_EFULL)
                hop_bench_sleep(20 * 1000);
            if (rc != HOP_OK)
                hop_bench_fail(&ctl, rc, "publish: %s", hop_bench_errtext(admin, rc));
        }
        // One round trip: once status answers, the broker has routed the broadcast and
        // handed every delivery to ZeroMQ (it handles a connection's messages in order), and
        // a refused publish has surfaced. The silence that ends the wait counts from here,
        // so a busy broker or machine is not mistaken for lost messages.
        void *map = NULL;
        size_t size = 0;
        rc = hop_bench_stopped(&ctl) ? HOP_OK : hop_client_status(admin, &map, &size);
        free(map);
        if (rc != HOP_OK && rc != HOP_ETIMEOUT)
            hop_bench_fail(&ctl, rc, "after the broadcast: %s", hop_bench_errtext(admin, rc));
        hop_bench_progress_init(&progress);
        long last = -1;
        int64_t last_change = hop_bench_now();
        while (!hop_bench_stopped(&ctl)) {
            hop_fleet_stats(fleet, &st);
            int64_t now = hop_bench_now();
            if (st.deliveries != last) {
                last = st.deliveries;
                last_change = now;
            }
            if (st.complete >= st.opened || now - last_change > HOP_BENCH_SILENCE_NS)
                break;
            if (hop_bench_interrupted)
                hop_bench_fail(&ctl, HOP_OK, "interrupted");
            double rate = hop_bench_progress_due(&progress, (double)st.deliveries);
            if (rate >= 0)
                hop_bench_progress_print(&progress, "%s: %s/%s deliveries, %s/s", label,
                                         hop_bench_num(st.deliveries), hop_bench_num(expected),
                                         hop_bench_num(rate));
            hop_bench_sleep(200 * 1000);
        }
        hop_bench_progress_end(&progress);
        hop_bench_sleep(S_DUP_WINDOW_NS); // a second copy would arrive about as fast as the first
    }
    t_close = hop_bench_now();
    hop_fleet_close(fleet);
    t_closed = hop_bench_now();
    hop_fleet_stats(fleet, &st);
    if (!(done = malloc((size_t)o->count * sizeof *done)))
        abort();
    for (long i = 0; t0 && i < o->count; i++) {
        int64_t t = hop_fleet_done_at(fleet, i);
        if (t)
            done[ndone++] = t - t0;
    }
    qsort(done, ndone, sizeof *done, hop_bench_cmp_i64);
    fleet_rc = hop_fleet_error(fleet, fleet_error, sizeof fleet_error); // or a later one
    if (fleet_error[0])
        hop_bench_note(&ctl, fleet_rc, "%s", fleet_error);
    // The broker gives freed memory back on its first idle tick (100 ms) after a request, but
    // its ZeroMQ I/O thread frees the buffers of the closed TCP connections some time after
    // the last close-ok: ask again until the RSS stops falling.
    for (int k = 0; k < 12; k++) {
        int64_t prev = rss_after;
        hop_bench_sleep(250 * HOP_BENCH_MS);
        hop_bench_broker_status(admin, &rss_after, NULL);
        if (k > 0 && (rss_after < 0 || rss_after >= prev - prev / 100))
            break;
    }

report:
    if (admin)
        hop_client_delete_exchange(admin, exchange, 0);
    hop_client_destroy(&admin);
    hop_fleet_destroy(&fleet);
    long opened = st.opened;
    long lost = t0 ? expected - st.deliveries : 0;
    double first_ms = ndone ? (double)done[0] / 1e6 : 0;
    double median_ms = ndone ? (double)done[(ndone - 1) / 2] / 1e6 : 0;
    double all_ms = ndone ? (double)done[ndone - 1] / 1e6 : 0;
    double per_conn = opened > 0 && rss_open >= 0 && rss_before >= 0
                          ? (double)(rss_open - rss_before) / (double)opened
                          : -1;
    double client_kib = opened > 0 ? (double)(u2.rss_kib - u0.rss_kib) / (double)opened : 0;
    double fds_per = opened > 0 ? (double)(u2.fds - u0.fds) / (double)opened : 0;
    if (!o->json && t_opened) {
        printf("  opened     %s in %.2f s (%s/s) by %ld worker%s\n", hop_bench_num(opened),
               hop_bench_secs(t_opened - t_open),
               hop_bench_num(hop_bench_per_sec(opened, t_opened - t_open)), o->workers,
               o->workers > 1 ? "s" : "");
        if (t0 && !ndone)
            printf("  broadcast  none of %s connections got it\n", hop_bench_num(opened));
        else if (t0 && o->messages == 1)
            printf("  broadcast  %s of %s connections got it: all in %.2f ms (first %.2f, median "
                   "%.2f)\n",
                   hop_bench_num(st.complete), hop_bench_num(opened), all_ms, first_ms, median_ms);
        else if (t0)
            printf("  broadcast  %s of %s connections got all %s: all in %.2f ms (first %.2f, "
                   "median %.2f); %s deliveries/s\n",
                   hop_bench_num(st.complete), hop_bench_num(opened), hop_bench_num(o->messages),
                   all_ms, first_ms, median_ms,
                   hop_bench_num(all_ms > 0 ? (double)st.deliveries / all_ms * 1e3 : 0));
        printf("  broker     RSS %s before, %s with %s open (%s connections), %s after closing\n",
               hop_bench_mib(rss_before), hop_bench_mib(rss_open), hop_bench_num(opened),
               conns_open < 0 ? "?" : hop_bench_num(conns_open), hop_bench_mib(rss_after));
        if (per_conn >= 0)
            printf("  broker     %.1f KiB RSS per connection%s\n", per_conn / 1024,
                   per_conn < 1024 ? " (memory freed by earlier runs was reused: measure on a "
                                     "freshly started hopperd)"
                                   : "");
        printf("  bench      %s fds open (limit %s), %.2f per connection; %.1f KiB RSS per "
               "connection; %ld threads; closed all in %.2f s\n",
               hop_bench_num(u2.fds), fd_limit < 0 ? "none" : hop_bench_num(fd_limit), fds_per,
               client_kib, u2.threads, hop_bench_secs(t_closed - t_close));
        printf("  lost %s, duplicated %s", hop_bench_num(lost), hop_bench_num(st.dup));
        if (st.bad)
            printf(", corrupt %s", hop_bench_num(st.bad));
        printf("\n");
    }
    hop_bench_jint(obj, "opened", opened);
    hop_bench_jreal(obj, "open_seconds", hop_bench_secs(t_opened - t_open));
    hop_bench_jreal(obj, "open_conns_s", hop_bench_per_sec(opened, t_opened - t_open));
    hop_bench_jint(obj, "received", st.deliveries);
    hop_bench_jint(obj, "complete", st.complete);
    hop_bench_jreal(obj, "broadcast_first_ms", first_ms);
    hop_bench_jreal(obj, "broadcast_median_ms", median_ms);
    hop_bench_jreal(obj, "broadcast_ms", all_ms);
    hop_bench_jint(obj, "broker_connections", conns_open);
    hop_bench_jint(obj, "broker_rss_before_bytes", rss_before);
    hop_bench_jint(obj, "broker_rss_open_bytes", rss_open);
    hop_bench_jint(obj, "broker_rss_after_bytes", rss_after);
    hop_bench_jreal(obj, "broker_rss_per_conn_bytes", per_conn);
    hop_bench_jint(obj, "client_fds", u2.fds);
    hop_bench_jint(obj, "client_fd_limit", fd_limit);
    hop_bench_jreal(obj, "client_fds_per_conn", fds_per);
    hop_bench_jreal(obj, "client_rss_per_conn_kib", client_kib);
    hop_bench_jint(obj, "client_threads", u2.threads);
    hop_bench_jreal(obj, "close_seconds", hop_bench_secs(t_closed - t_close));
    hop_bench_jint(obj, "lost", lost);
    hop_bench_jint(obj, "duplicated", st.dup);
    hop_bench_jint(obj, "corrupt", st.bad);
    if (t_opened) {
        hop_bench_result(o, label, "connections", (double)opened);
        hop_bench_result(o, label, "open_conns_s", hop_bench_per_sec(opened, t_opened - t_open));
        if (ndone)
            hop_bench_result(o, label, "broadcast_ms", all_ms);
        if (per_conn >= 0)
            hop_bench_result(o, label, "broker_rss_per_conn_kib", per_conn / 1024);
        hop_bench_result(o, label, "lost_msgs", (double)lost);
        hop_bench_result(o, label, "dup_msgs", (double)st.dup);
    }
    int code = lost || st.dup || st.bad ? HOP_BENCH_EXIT_LOST : HOP_BENCH_EXIT_OK;
    if (ctl.error[0]) {
        fprintf(stderr, "hopper bench connections: %s\n", ctl.error);
        hop_bench_jstr(obj, "error", ctl.error);
        code = hop_bench_interrupted ? HOP_BENCH_EXIT_INTERRUPTED
               : usage_error         ? HOP_BENCH_EXIT_USAGE
                                     : ctl.exit_code;
    }
    json_object_set_new(obj, "ok", json_boolean(code == HOP_BENCH_EXIT_OK));
    free(done);
    pthread_mutex_destroy(&ctl.lock);
    return code;
}
