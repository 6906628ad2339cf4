// bus/histogram.c - bucket tables and reading (recording is inline in histogram.h).
#include "histogram.h"

#include <assert.h>
#include <string.h>

// The le values Prometheus client libraries use for latencies, trimmed to what each clock
// can tell apart: an fsync is timed in µs, a wait in the broker's ms.
const hop_histogram_bounds_t hop_histogram_fsync_us = {
    .n = 12,
    .per_second = 1000000,
    .le = {100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 1000000},
};

const hop_histogram_bounds_t hop_histogram_wait_ms = {
    .n = 14,
    .per_second = 1000,
    .le = {1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000},
};

void
hop_histogram_read(const hop_histogram_t *self, const hop_histogram_bounds_t *bounds,
                   hop_histogram_snapshot_t *snap)
{
    assert(self);
    assert(bounds && bounds->n <= HOP_HISTOGRAM_MAX);
    assert(snap);
    memset(snap, 0, sizeof *snap);
    snap->n = bounds->n;
    snap->per_second = bounds->per_second;
    memcpy(snap->le, bounds->le, sizeof snap->le);
    // Not one atomic snapshot: a record racing with the read may show in the buckets and not
    // yet in the sum (or the reverse). The buckets stay cumulative and the count exact.
    snap->sum = atomic_load_explicit(&self->sum, memory_order_relaxed);
    uint64_t total = 0;
    for (uint32_t i = 0; i <= bounds->n; i++) {
        total += atomic_load_explicit(&self->counts[i], memory_order_relaxed);
        snap->cumulative[i] = total;
    }
    snap->count = total;
}
