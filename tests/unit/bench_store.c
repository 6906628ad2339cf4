// tests/unit/bench_store.c - append + fsync throughput of the store, driven the way the broker
// will drive it: a loop that appends up to 256 records per turn, commits at the end of the
// turn, waits on hop_store_fd() when it may not append more, and counts a record confirmed
// once hop_store_durable() covers it. `window` bounds the records appended but not yet
// confirmed, like publishers waiting for confirms. Not a test: no assertions on speed.
//
//   bench_store [dir] [records]      (dir defaults to a fresh directory under /tmp)
#define _DEFAULT_SOURCE // mkdtemp
#include "store.h"
#include "util.h"

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double
s_clock(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double
s_now(void)
{
    return s_clock(CLOCK_MONOTONIC);
}

// CPU time of the calling thread: what appending costs the broker's loop, without the time
// the two other threads (writer, kernel writeback) take it off the CPU on a small machine.
static double
s_cpu(void)
{
    return s_clock(CLOCK_THREAD_CPUTIME_ID);
}

static void
s_run(const char *base, hop_fsync_t policy, uint32_t ms, size_t len, uint64_t n, uint64_t window)
{
    char dir[512];
    snprintf(dir, sizeof dir, "%s/%s-%u-%zu-%llu", base, hop_store_fsync_name(policy), ms, len,
             (unsigned long long)window);
    hop_store_options_t opt = {.fsync = policy, .fsync_ms = ms};
    char why[256];
    hop_store_t *store = hop_store_new(dir, &opt, NULL, why, sizeof why);
    if (!store || hop_store_replay(store, NULL, NULL, NULL) != 0) {
        fprintf(stderr, "bench_store: %s\n", why);
        exit(1);
    }
    uint8_t *payload = calloc(1, len);
    hop_store_pos_t *ring = malloc(window * sizeof *ring); // positions not yet confirmed
    uint64_t appended = 0, confirmed = 0;
    uint32_t size = HOP_STORE_SIZE(len);
    double t0 = s_now(), append_s = 0;
    while (confirmed < n) {
        double a0 = s_cpu();
        for (int turn = 0; turn < 256 && appended < n && appended - confirmed < window; turn++) {
            if (hop_store_append(store, HOP_REC_MESSAGE, appended, payload, len,
                                 &ring[appended % window]) != 0)
                break;
            appended++;
        }
        hop_store_commit(store);
        append_s += s_cpu() - a0;
        hop_store_pos_t durable = hop_store_durable(store);
        while (confirmed < appended && HOP_STORE_COVERS(durable, ring[confirmed % window], size))
            confirmed++;
        if (appended - confirmed == window || appended == n) {
            struct pollfd pfd = {.fd = hop_store_fd(store), .events = POLLIN};
            poll(&pfd, 1, 100);
            hop_store_poll(store);
        }
    }
    double elapsed = s_now() - t0;
    hop_store_stats_t st;
    hop_store_stats(store, &st);
    char name[32];
    if (policy == HOP_FSYNC_EVERY)
        snprintf(name, sizeof name, "every %u ms", ms);
    else
        snprintf(name, sizeof name, "%s", hop_store_fsync_name(policy));
    printf("%-12s %6zu B  window %6llu  %9.0f rec/s  %7.1f MB/s  %6.0f fsync/s  %7.1f rec/fsync"
           "  fsync last %5llu us max %6llu us  append+commit %4.0f ns/rec (CPU)\n",
           name, len, (unsigned long long)window, (double)n / elapsed,
           (double)n * size / elapsed / 1e6, (double)st.fsyncs / elapsed,
           st.fsyncs ? (double)n / (double)st.fsyncs : 0.0, (unsigned long long)st.last_fsync_us,
           (unsigned long long)st.max_fsync_us, append_s / (double)n * 1e9);
    fflush(stdout);
    hop_store_destroy(&store);
    free(payload);
    free(ring);
}

int
main(int argc, char **argv)
{
    hop_log_level = HOP_WARN;
    char tmp[] = "/tmp/hop-bench-store-XXXXXX";
    const char *base = argc > 1 ? argv[1] : mkdtemp(tmp);
    uint64_t n = argc > 2 ? strtoull(argv[2], NULL, 10) : 1000000;
    printf("store benchmark in %s (%llu records per run; delete the directory afterwards)\n", base,
           (unsigned long long)n);
    size_t sizes[] = {100, 4096};
    for (size_t s = 0; s < 2; s++) {
        uint64_t count = sizes[s] > 1000 ? n / 10 : n;
        s_run(base, HOP_FSYNC_ALWAYS, 0, sizes[s], count / 100 > 5000 ? 5000 : count / 100, 1);
        s_run(base, HOP_FSYNC_ALWAYS, 0, sizes[s], count, 1000);
        s_run(base, HOP_FSYNC_ALWAYS, 0, sizes[s], count, 100000);
        s_run(base, HOP_FSYNC_EVERY, 10, sizes[s], count, 1000);
        s_run(base, HOP_FSYNC_EVERY, 10, sizes[s], count, 100000);
        s_run(base, HOP_FSYNC_NEVER, 0, sizes[s], count, 100000);
    }
    return 0;
}
