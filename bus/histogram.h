// bus/histogram.h - fixed-bucket latency histograms for the Prometheus endpoint: fsync
// durations (the store's writer thread) and publish-to-deliver waits (the reactor).
//
// A histogram is a value embedded in its owner (all zero: empty) and its bucket bounds are a
// separate constant table, so that an owner allocated with calloc needs no set-up. Recording
// is a comparison chain and two counter bumps: cheap enough for the delivery path. One thread
// records into a histogram; any thread may read it (the counters are relaxed atomics, which
// cost a single writer nothing over plain integers).
#ifndef HOP_HISTOGRAM_H_INCLUDED
#define HOP_HISTOGRAM_H_INCLUDED

#include <stdatomic.h>
#include <stdint.h>

#define HOP_HISTOGRAM_MAX 16 // finite bounds at most; the +Inf bucket comes on top

// Bucket upper bounds ("le", inclusive), increasing, in the unit the values are recorded in.
typedef struct {
    uint32_t n;                     // finite bounds
    uint64_t per_second;            // units per second: 1000000 for µs, 1000 for ms
    uint64_t le[HOP_HISTOGRAM_MAX]; // upper bounds
} hop_histogram_bounds_t;

// fsync durations in µs: 100 µs .. 1 s.
extern const hop_histogram_bounds_t hop_histogram_fsync_us;
// Publish-to-deliver waits in ms (the broker's clock): 1 ms .. 60 s.
extern const hop_histogram_bounds_t hop_histogram_wait_ms;

typedef struct {
    _Atomic uint64_t counts[HOP_HISTOGRAM_MAX + 1]; // per bucket, not cumulative; [n]: +Inf
    _Atomic uint64_t sum;                           // of the recorded values
} hop_histogram_t;

// What a reader sees: cumulative counts, as the exposition format wants them.
typedef struct {
    uint32_t n;                                 // finite bounds (as in the bounds table)
    uint64_t per_second;                        // unit of le and sum
    uint64_t le[HOP_HISTOGRAM_MAX];             // bounds
    uint64_t cumulative[HOP_HISTOGRAM_MAX + 1]; // values <= le[i]; [n]: all (+Inf)
    uint64_t count;                             // == cumulative[n]
    uint64_t sum;
} hop_histogram_snapshot_t;

// Index of the bucket value falls in: the first bound >= value, or bounds->n (+Inf).
static inline uint32_t
hop_histogram_bucket(const hop_histogram_bounds_t *bounds, uint64_t value)
{
    uint32_t i = 0;
    while (i < bounds->n && value > bounds->le[i])
        i++;
    return i;
}

// Counts value. Only one thread may record into a histogram.
static inline void
hop_histogram_record(hop_histogram_t *self, const hop_histogram_bounds_t *bounds, uint64_t value)
{
    _Atomic uint64_t *c = &self->counts[hop_histogram_bucket(bounds, value)];
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1,
                          memory_order_relaxed);
    atomic_store_explicit(&self->sum,
                          atomic_load_explicit(&self->sum, memory_order_relaxed) + value,
                          memory_order_relaxed);
}

// Reads the histogram into snap, from any thread. The count is the sum of the buckets, so it
// always equals the +Inf bucket; the sum may trail a record made during the read by one value.
void hop_histogram_read(const hop_histogram_t *self, const hop_histogram_bounds_t *bounds,
                        hop_histogram_snapshot_t *snap);

#endif
