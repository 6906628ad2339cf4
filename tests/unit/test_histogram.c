// tests/unit/test_histogram.c - latency histograms: which bucket a value lands in (le is
// inclusive), cumulative reads, the two bucket tables, and a read racing a recording thread.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdbool.h>
#include <string.h>

#include "histogram.h"

static const hop_histogram_bounds_t s_bounds = {.n = 3, .per_second = 1000, .le = {1, 10, 100}};

static void
test_bound_is_inclusive(void **state)
{
    (void)state;
    assert_int_equal(hop_histogram_bucket(&s_bounds, 0), 0);
    assert_int_equal(hop_histogram_bucket(&s_bounds, 1), 0);
    assert_int_equal(hop_histogram_bucket(&s_bounds, 2), 1);
    assert_int_equal(hop_histogram_bucket(&s_bounds, 10), 1);
    assert_int_equal(hop_histogram_bucket(&s_bounds, 11), 2);
    assert_int_equal(hop_histogram_bucket(&s_bounds, 100), 2);
}

static void
test_above_last_bound_goes_to_inf(void **state)
{
    (void)state;
    assert_int_equal(hop_histogram_bucket(&s_bounds, 101), 3);
    assert_int_equal(hop_histogram_bucket(&s_bounds, UINT64_MAX), 3);
}

static void
test_zeroed_histogram_reads_empty(void **state)
{
    (void)state;
    hop_histogram_t h;
    memset(&h, 0, sizeof h);
    hop_histogram_snapshot_t snap;
    hop_histogram_read(&h, &s_bounds, &snap);
    assert_int_equal(snap.n, 3);
    assert_int_equal(snap.per_second, 1000);
    assert_int_equal(snap.count, 0);
    assert_int_equal(snap.sum, 0);
    for (uint32_t i = 0; i <= snap.n; i++)
        assert_int_equal(snap.cumulative[i], 0);
}

static void
test_read_is_cumulative_with_count_and_sum(void **state)
{
    (void)state;
    hop_histogram_t h;
    memset(&h, 0, sizeof h);
    const uint64_t values[] = {0, 1, 5, 10, 50, 1000, 7};
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++)
        hop_histogram_record(&h, &s_bounds, values[i]);
    hop_histogram_snapshot_t snap;
    hop_histogram_read(&h, &s_bounds, &snap);
    assert_int_equal(snap.cumulative[0], 2); // 0, 1
    assert_int_equal(snap.cumulative[1], 5); // + 5, 10, 7
    assert_int_equal(snap.cumulative[2], 6); // + 50
    assert_int_equal(snap.cumulative[3], 7); // + 1000
    assert_int_equal(snap.count, 7);
    assert_int_equal(snap.sum, 0 + 1 + 5 + 10 + 50 + 1000 + 7);
    assert_memory_equal(snap.le, s_bounds.le, sizeof snap.le);
}

static void
s_check_table(const hop_histogram_bounds_t *b, uint64_t first, uint64_t last)
{
    assert_true(b->n > 0 && b->n <= HOP_HISTOGRAM_MAX);
    assert_true(b->per_second > 0 && 1000000 % b->per_second == 0);
    assert_int_equal(b->le[0], first);
    assert_int_equal(b->le[b->n - 1], last);
    for (uint32_t i = 1; i < b->n; i++)
        assert_true(b->le[i] > b->le[i - 1]);
}

static void
test_tables_increase_over_the_documented_range(void **state)
{
    (void)state;
    s_check_table(&hop_histogram_fsync_us, 100, 1000000); // 0.0001 s .. 1 s
    assert_int_equal(hop_histogram_fsync_us.per_second, 1000000);
    s_check_table(&hop_histogram_wait_ms, 1, 60000); // 0.001 s .. 60 s
    assert_int_equal(hop_histogram_wait_ms.per_second, 1000);
}

#define S_RECORDS 200000

static void *
s_recorder(void *arg)
{
    hop_histogram_t *h = arg;
    for (uint64_t i = 0; i < S_RECORDS; i++)
        hop_histogram_record(h, &hop_histogram_fsync_us, (i * 7919) % 2000000);
    return NULL;
}

// The store's writer records while the reactor scrapes: every read stays cumulative, its count
// is its +Inf bucket, and counts never go back.
static void
test_read_during_recording_stays_consistent(void **state)
{
    (void)state;
    static hop_histogram_t h;
    memset(&h, 0, sizeof h);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, s_recorder, &h), 0);
    uint64_t last = 0;
    for (int r = 0; r < 2000; r++) {
        hop_histogram_snapshot_t snap;
        hop_histogram_read(&h, &hop_histogram_fsync_us, &snap);
        for (uint32_t i = 1; i <= snap.n; i++)
            assert_true(snap.cumulative[i] >= snap.cumulative[i - 1]);
        assert_int_equal(snap.count, snap.cumulative[snap.n]);
        assert_true(snap.count >= last);
        last = snap.count;
    }
    pthread_join(t, NULL);
    hop_histogram_snapshot_t snap;
    hop_histogram_read(&h, &hop_histogram_fsync_us, &snap);
    assert_int_equal(snap.count, S_RECORDS);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bound_is_inclusive),
        cmocka_unit_test(test_above_last_bound_goes_to_inf),
        cmocka_unit_test(test_zeroed_histogram_reads_empty),
        cmocka_unit_test(test_read_is_cumulative_with_count_and_sum),
        cmocka_unit_test(test_tables_increase_over_the_documented_range),
        cmocka_unit_test(test_read_during_recording_stays_consistent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
