// tests/unit/test_store.c - the message store: checksums, append/commit/replay, torn and
// corrupt logs, segment rollover, fsync policies, reads by position, stats, and a full disk or
// failing fsync. Compaction and deletion are in test_store_compact.c. Real files in /tmp.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "store.h"
#include "store_helpers.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SEG_HEADER 32 // the segment file header (docs/ARCHITECTURE.md, "Storage")

static hop_store_options_t
s_small(uint32_t segment_size)
{
    return (hop_store_options_t){.segment_size = segment_size};
}

// Checksums and opening ---------------------------------------------------------------------

static void
test_crc32c_known_values(void **state)
{
    (void)state;
    assert_int_equal(hop_crc32c(0, "123456789", 9), 0xE3069283u);
    assert_int_equal(hop_crc32c(0, "", 0), 0);
    uint8_t zeros[32] = {0};
    assert_int_equal(hop_crc32c(0, zeros, 32), 0x8A9136AAu); // RFC 3720 B.4
    // Chaining over pieces equals one pass, at every split and alignment.
    uint8_t buf[300];
    sh_fill(buf, sizeof buf, 7);
    uint32_t whole = hop_crc32c(0, buf, sizeof buf);
    for (size_t cut = 0; cut <= sizeof buf; cut += 13)
        assert_int_equal(hop_crc32c(hop_crc32c(0, buf, cut), buf + cut, sizeof buf - cut), whole);
}

static void
test_new_creates_layout_and_locks(void **state)
{
    (void)state;
    char *dir = sh_tmpdir();
    char sub[512];
    snprintf(sub, sizeof sub, "%s/a/b", dir);
    hop_store_t *store = sh_open(sub, NULL, NULL, NULL);
    char path[600];
    snprintf(path, sizeof path, "%s/segments", sub);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_true(S_ISDIR(st.st_mode));

    int rc = 0;
    char why[256] = "";
    assert_null(hop_store_new(sub, NULL, &rc, why, sizeof why));
    assert_int_equal(rc, HOP_STORE_ELOCKED);
    assert_non_null(strstr(why, "in use by process"));
    hop_store_destroy(&store);
    assert_null(store);
    store = sh_open(sub, NULL, NULL, NULL); // the lock went with the first store
    hop_store_destroy(&store);
    hop_store_destroy(&store); // accepts NULL
    sh_rmrf(&dir);
}

static void
test_empty_store_starts_at_first_segment(void **state)
{
    (void)state;
    char *dir = sh_tmpdir();
    hop_store_replay_t rep;
    hop_store_t *store = sh_open(dir, NULL, NULL, &rep);
    assert_int_equal(rep.records, 0);
    assert_int_equal(rep.cut_at, HOP_STORE_NOPOS);
    hop_store_stats_t st;
    hop_store_stats(store, &st);
    assert_int_equal(st.head, HOP_STORE_POS(1, SEG_HEADER));
    assert_int_equal(st.durable, st.head);
    hop_store_destroy(&store);
    sh_rmrf(&dir);
}

// Append, commit, replay ------------------------------------------------------------------

static void
test_replay_returns_records_in_order(void **state)
{
    (void)state;
    char *dir = sh_tmpdir();
    hop_store_t *store = sh_open(dir, NULL, NULL, NULL);
    enum { N = 2000 };
    hop_store_pos_t pos[N];
    for (uint64_t i = 0; i < N; i++) {
        pos[i] = sh_append(store, (uint8_t)(1 + i % 9), i * 1000003, i % 301);
        if (i % 97 == 0)
            hop_store_commit(store);
    }
    assert_true(sh_sync(store, 5000));
    hop_store_destroy(&store);

    sh_log_t log = {0};
    hop_store_replay_t rep;
    store = sh_open(dir, NULL, &log, &rep);
    assert_int_equal(log.count, N);
    assert_int_equal(rep.records, N);
    assert_int_equal(rep.corrupt, 0);
    assert_int_equal(rep.cut_bytes, 0);
    uint8_t buf[400];
    for (uint64_t i = 0; i < N; i++) {
        sh_rec_t *r = &log.recs[i];
        assert_int_equal(r->pos, pos[i]);
        assert_int_equal(r->type, 1 + i % 9);
        assert_int_equal(r->key, i * 1000003);
        assert_int_equal(r->len, i % 301);
        assert_int_equal(r->kills, HOP_STORE_NOPOS);
        assert_false(r->corrupt);
        sh_fill(buf, r->len, r->key);
        assert_memory_equal(r->payload, buf, r->len);
    }
    // Appends go on after the replayed records.
    hop_store_pos_t next = sh_append(store, 1, 42, 10);
    assert_true(next > pos[N - 1]);
    assert_true(sh_sync(store, 5000));
    hop_store_destroy(&store);
    store = sh_open(dir, NULL, &log, NULL);
    assert_int_equal(log.count, N + 1);
    assert_int_equal(log.recs[N].pos, next);
    hop_store_destroy(&store);
    sh_log_clear(&log);
    sh_rmrf(&dir);
}

static void
test_appendv_pieces_and_kill_fields_replay(void **state)
{
    (void)state;
    char *dir = sh_tmpdir();
    hop_store_t *store = sh_open(dir, NULL, NULL, NULL);
    struct iovec iov[3] = {{"meta:", 5}, {"", 0}, {"body-bytes", 10}};
    hop_store_pos_t msg, ack;
    assert_int_equal(hop_store_appendv(store, HOP_REC_MESSAGE, 9, iov, 3, HOP_STORE_NOPOS, 0, &msg),
                     0);
    ack = sh_kill(store, 9, msg, HOP_STORE_SIZE(15));
    assert_true(sh_sync(store, 5000));
    hop_store_destroy(&store);

    sh_log_t log = {0};
    store = sh_open(dir, NULL, &log, NULL);
    assert_int_equal(log.count, 2);
    assert_int_equal(log.recs[0].len, 15);
    assert_memory_equal(log.recs[0].payload, "meta:body-bytes", 15);
    assert_int_equal(log.recs[1].pos, ack);
    assert_int_equal(log.recs[1].type, HOP_REC_ACK);
    assert_int_equal(log.recs[1].kills, msg);
    assert_int_equal(log.recs[1].kills_size, HOP_STORE_SIZE(15));
    assert_int_equal(log.recs[1].len, 0);
    // The kill was applied again by replay: the message is dead.
    uint8_t buf[16];
    assert_int_equal(hop_store_read(store, msg, HOP_STORE_SIZE(15), buf, sizeof buf),
                     HOP_STORE_ENOTFOUND);
    hop_store_destroy(&store);
    sh_log_clear(&log);
    sh_rmrf(&dir);
}

// Reads in log order are served from a read-ahead window; records written after the window was
// read are read again, not taken as missing or torn, and reads out of order still work.
static void
test_read_ahead_follows_appends(void **state)
{
    (void)state;
    char *dir = sh_tmpdir();
    hop_store_options_t opt = s_small(1 << 20);
    hop_store_t *store = sh_open(dir, &opt, NULL, NULL);
    enum { N = 400 };
    hop_store_pos_t pos[N];
    uint8_t buf[200], want[200];
    for (uint64_t i = 0; i < N / 2; i++)
        pos[i] = sh_append(store, 1, i, 100);
    assert_true(sh_sync(store, 5000));
    for (uint64_t i = 0; i < 50; i++) // loads a window that ends at the last written record
        assert_int_equal(hop_store_read(store, pos[i], HOP_STORE_SIZE(100), buf, sizeof buf), 100);
    for (uint64_t i = N / 2; i < N; i++)
        pos[i] = sh_append(store, 1, i, 100);
    assert_true(sh_sync(store, 5000));
    for (uint64_t k = 0; k < 2 * N; k++) {
        uint64_t i = k < N ? k : (k * 7919) % N; // in order, then scattered
        sh_fill(want, 100, i);
        memset(buf, 0, sizeof buf);
        assert_int_equal(hop_store_read(store, pos[i], HOP_STORE_SIZE(100), buf, sizeof buf), 100);
        assert_memory_equal(buf, want, 100);
    }
    hop_store_destroy(&store);
    sh_rmrf(&dir);
}

static void
test_read_back_by_position(void **state)
{
    (void)state;
    char *dir = sh_tmpdir();
    hop_store_options_t opt = s_small(8192);
    hop_store_t *store = sh_open(dir, &opt, NULL, NULL);
    enum { N = 300 };
    hop_store_pos_t pos[N];
    uint8_t buf[600], want[600];
    for (uint64_t i = 0; i < N; i++)
        pos[i] = sh_append(store, 1, i, 1 + i % 500);
    // Not committed yet: served from the write buffer.
    for (uint64_t i = 0; i < N; i++) {
        size_t len = 1 + i % 500;
        sh_fill(want, len, i);
        assert_int_equal(hop_store_read(store, pos[i], HOP_STORE_SIZE(len), buf, sizeof buf), len);
        assert_memory_equal(buf, want, len);
    }
    assert_true(sh_sync(store, 5000));
    for (int round = 0; round < 2; round++) {
        for (uint64_t i = 0; i < N; i++) {
            size_t len = 1 + i % 500;
            sh_fill(want, len, i);
            memset(buf, 0, sizeof buf);
            assert_int_equal(hop_store_read(store, pos[i], HOP_STORE_SIZE(len), buf, sizeof buf),
                             len);
            assert_memory_equal(buf, want, len);
        }
        hop_store_destroy(&store);
        store = sh_open(dir, &opt, NULL, NULL);
    }
    // Too small a buffer, a wrong size, released, unknown.
    assert_int_equal(hop_store_read(store, pos[5], HOP_STORE_SIZE(6), buf, 5), HOP_STORE_EINVAL);
    assert_int_equal(hop_store_read(store, pos[5], HOP_STORE_SIZE(7), buf, sizeof buf),
                     HOP_STORE_ECORRUPT);
    hop_store_release(store, pos[5], HOP_STORE_SIZE(6));
    assert_int_equal(hop_store_read(store, pos[5], HOP_STORE_SIZE(6), buf, sizeof buf),
                     HOP_STORE_ENOTFOUND);
    assert_int_equal(hop_store_read(store, HOP_STORE_POS(999, 32), 50, buf, sizeof buf),
                     HOP_STORE_ENOTFOUND);
    hop_store_destroy(&store);
    sh_rmrf(&dir);
}

static void
test_invalid_appends_are_refused(void **state)
{
    (void)state;
    char *dir = sh_tmpdir();
    hop_store_options_t opt = {.max_record = 1000};
    hop_store_t *store = sh_open(dir, &opt, NULL, NULL);
    hop_store_pos_t pos;
    uint8_t big[1001] = {0};
    assert_int_equal(hop_store_append(store, 0, 1, "x", 1, &pos), HOP_STORE_EINVAL);
    assert_int_equal(hop_store_append(store, 1, 1, big, 1001, &pos), HOP_STORE_EINVAL);
    assert_int_equal(hop_store_append(store, 1, 1, big, 1000, &pos), 0);
    // Kills must name a live record.
    assert_int_equal(hop_store_appendv(store, 2, 1, NULL, 0, HOP_STORE_POS(77, 32), 40, &pos),
                     HOP_STORE_EINVAL);
    hop_store_pos_t msg = sh_append(store, 1, 2, 10);
    sh_kill(store, 2, msg, HOP_STORE_SIZE(10));
    assert_int_equal(hop_store_appendv(store, 2, 1, NULL, 0, msg, HOP_STORE_SIZE(10), &pos),
                     HOP_STORE_EINVAL);
    hop_store_destroy(&store);
    sh_rmrf(&dir);
}

// Torn and corrupt logs ---------------------------------------------------------------------

// Five records; the last is 100 bytes. Returns the directory; *last_p is its position.
static char *
s_five(hop_store_pos_t *last_p)
{
    char *dir = sh_tmpdir();
    hop_store_t *store = sh_open(dir, NULL, NULL, NULL);
    for (uint64_t i = 0; i < 4; i++)
        sh_append(store, 1, i, 20 + i);
    *last_p = sh_append(store, 1, 4, 100);
    assert_true(sh_sync(store, 5000));
    hop_store_destroy(&store);
    return dir;
}

static void
test_torn_tail_is_cut_at_every_offset(void **state)
{
    (void)state;
    hop_store_pos_t last;
    char *base = s_five(&last);
    long start = HOP_STORE_POS_OFF(last), end = start + HOP_STORE_SIZE(100);
    char *seg = sh_seg_path(base, 1);
    assert_int_equal(sh_file_size(seg), end);
    free(seg);
    hop_log_level = HOP_ERROR; // one warning per cut is expected
    for (long cut = start + 1; cut < end; cut++) {
        char *dir = sh_tmpdir();
        sh_copy_segments(base, dir);
        char *path = sh_seg_path(dir, 1);
        sh_truncate(path, cut);
        sh_log_t log = {0};
        hop_store_replay_t rep;
        hop_store_t *store = sh_open(dir, NULL, &log, &rep);
        assert_int_equal(log.count, 4);
        assert_int_equal(rep.cut_at, last);
        assert_int_equal(rep.cut_bytes, cut - start);
        assert_int_equal(sh_file_size(path), start);
        // Appends go where the torn record was, and survive a reopen.
        assert_int_equal(sh_append(store, 3, 99, 7), last);
        assert_true(sh_sync(store, 5000));
        hop_store_destroy(&store);
        store = sh_open(dir, NULL, &log, &rep);
        assert_int_equal(log.count, 5);
        assert_int_equal(log.recs[4].key, 99);
        assert_int_equal(rep.cut_bytes, 0);
        hop_store_destroy(&store);
        sh_log_clear(&log);
        free(path);
        sh_rmrf(&dir);
    }
    hop_log_level = HOP_WARN;
    sh_rmrf(&base);
}

// Ten records of 50 bytes in segment 1; returns the directory and their positions.
static char *
s_ten(hop_store_pos_t *pos)
{
    char *dir = sh_tmpdir();
    hop_store_t *store = sh_open(dir, NULL, NULL, NULL);
    for (uint64_t i = 0; i < 10; i++)
        pos[i] = sh_append(store, 1, i, 50);
    assert_true(sh_sync(store, 5000));
    hop_store_destroy(&store);
    return dir;
}

static void
test_corrupt_payload_inside_log_is_reported_and_skipped(void **state)
{
    (void)state;
    hop_store_pos_t pos[10];
    char *dir = s_ten(pos);
    char *path = sh_seg_path(dir, 1);
    long size = sh_file_size(path);
    sh_flip(path, HOP_STORE_POS_OFF(pos[5]) + HOP_STORE_HEADER + 20);
    sh_log_t log = {0};
    hop_store_replay_t rep;
    hop_log_level = HOP_ERROR; // the error line is expected
    hop_store_t *store = sh_open(dir, NULL, &log, &rep);
    assert_int_equal(log.count, 10);
    assert_int_equal(rep.corrupt, 1);
    assert_int_equal(rep.cut_bytes, 0);
    for (int i = 0; i < 10; i++) {
        assert_int_equal(log.recs[i].pos, pos[i]);
        assert_int_equal(log.recs[i].key, (uint64_t)i); // the header is still trusted
        assert_int_equal(log.recs[i].corrupt, i == 5);
        assert_int_equal(log.recs[i].payload == NULL, i == 5);
    }
    assert_int_equal(sh_file_size(path), size); // nothing cut
    uint8_t buf[64];
    assert_int_equal(hop_store_read(store, pos[5], HOP_STORE_SIZE(50), buf, sizeof buf),
                     HOP_STORE_ENOTFOUND); // dead
    assert_int_equal(hop_store_read(store, pos[6], HOP_STORE_SIZE(50), buf, sizeof buf), 50);
    hop_store_destroy(&store);
    hop_log_level = HOP_WARN;
    sh_log_clear(&log);
    free(path);
    sh_rmrf(&dir);
}

static void
test_corrupt_header_in_last_segment_cuts_there(void **state)
{
    (void)state;
    hop_store_pos_t pos[10];
    char *dir = s_ten(pos);
    char *path = sh_seg_path(dir, 1);
    long size = sh_file_size(path);
    sh_flip(path, HOP_STORE_POS_OFF(pos[5]) + 9); // the length field
    sh_log_t log = {0};
    hop_store_replay_t rep;
    hop_log_level = HOP_ERROR;
    hop_store_t *store = sh_open(dir, NULL, &log, &rep);
    assert_int_equal(log.count, 5);
    assert_int_equal(rep.cut_at, pos[5]);
    assert_int_equal(rep.cut_bytes, size - HOP_STORE_POS_OFF(pos[5]));
    assert_int_equal(sh_file_size(path), HOP_STORE_POS_OFF(pos[5]));
    assert_int_equal(sh_append(store, 1, 50, 5), pos[5]);
    assert_true(sh_sync(store, 5000));
    hop_store_destroy(&store);
    store = sh_open(dir, NULL, &log, &rep);
    assert_int_equal(log.count, 6);
    hop_store_destroy(&store);
    hop_log_level = HOP_WARN;
    sh_log_clear(&log);
    free(path);
    sh_rmrf(&dir);
}

static void
test_corrupt_last_record_is_a_torn_tail(void **state)
{
    (void)state;
    hop_store_pos_t pos[10];
    char *dir = s_ten(pos);
    char *path = sh_seg_path(dir, 1);
    sh_flip(path, HOP_STORE_POS_OFF(pos[9]) + HOP_STORE_HEADER + 49);
    sh_log_t log = {0};
    hop_store_replay_t rep;
    hop_log_level = HOP_ERROR;
    hop_store_t *store = sh_open(dir, NULL, &log, &rep);
    assert_int_equal(log.count, 9); // not reported as corrupt: cut as a tail
    assert_int_equal(rep.corrupt, 0);
    assert_int_equal(rep.cut_at, pos[9]);
    assert_int_equal(sh_file_size(path), HOP_STORE_POS_OFF(pos[9]));
    hop_store_destroy(&store);
    hop_log_level = HOP_WARN;
    sh_log_clear(&log);
    free(path);
    sh_rmrf(&dir);
}

static void
test_damaged_older_segment_keeps_later_segments(void **state)
{
    (void)state;
    char *dir = sh_tmpdir();
    hop_store_options_t opt = s_small(4096);
    hop_store_t *store = sh_open(dir, &opt, NULL, NULL);
    enum { N = 200 };
    hop_store_pos_t pos[N];
    for (uint64_t i = 0; i < N; i++)
        pos[i] = sh_append(store, 1, i, 60);
    assert_true(sh_sync(store, 5000));
    hop_store_destroy(&store);
    assert_true(HOP_STORE_POS_SEG(pos[N - 1]) >= 3);
    // Damage the header of the 10th record of segment 1.
    char *path = sh_seg_path(dir, 1);
    long size = sh_file_size(path);
    sh_flip(path, HOP_STORE_POS_OFF(pos[10]) + 13);
    sh_log_t log = {0};
    hop_store_replay_t rep;
    hop_log_level = HOP_ERROR; // the error line is expected
    store = sh_open(dir, &opt, &log, &rep);
    hop_log_level = HOP_WARN;
    assert_int_equal(rep.damaged, 1);
    assert_int_equal(rep.cut_at, HOP_STORE_NOPOS); // the tail was fine
    size_t lost = 0;
    while (HOP_STORE_POS_SEG(pos[10 + lost]) == 1)
        lost++;
    assert_int_equal(log.count, N - lost);
    for (size_t i = 0; i < log.count; i++)
        assert_int_equal(log.recs[i].pos, pos[i < 10 ? i : i + lost]);
    assert_int_equal(sh_file_size(path), size); // kept for the operator
    hop_store_destroy(&store);
    sh_log_clear(&log);
    free(path);
    sh_rmrf(&dir);
}

static void
test_torn_segment_header_is_removed(void **state)
{
    (void)state;
    hop_store_pos_t pos[10];
    char *dir = s_ten(pos);
    char *path = sh_seg_path(dir, 2);
    FILE *f = fopen(path, "w");
    fwrite("HOPPER", 1, 6, f); // a crash right after creating segment 2
    fclose(f);
    char leftover[512];
    snprintf(leftover, sizeof leftover, "%s/segments/00000001.compact", dir);
    f = fopen(leftover, "w");
    fclose(f);
    sh_log_t log = {0};
    hop_store_replay_t rep;
    hop_log_level = HOP_ERROR;
    hop_store_t *store = sh_open(dir, NULL, &log, &rep);
    hop_log_level = HOP_WARN;
    assert_int_equal(log.count, 10);
    assert_int_equal(rep.cut_at, HOP_STORE_POS(2, 0));
    assert_int_equal(sh_file_size(path), -1);
    assert_int_equal(sh_file_size(leftover), -1);
    assert_int_equal(HOP_STORE_POS_SEG(sh_append(store, 1, 1, 1)), 3);
    assert_true(sh_sync(store, 5000));
    hop_store_destroy(&store);
    store = sh_open(dir, NULL, &log, NULL);
    assert_int_equal(log.count, 11);
    hop_store_destroy(&store);
    sh_log_clear(&log);
    free(path);
    sh_rmrf(&dir);
}

// Segments ----------------------------------------------------------------------------------

static void
test_segments_roll_over_at_their_size(void **state)
{
    (void)state;
    char *dir = sh_tmpdir();
    hop_store_options_t opt = s_small(4096);
    hop_store_t *store = sh_open(dir, &opt, NULL, NULL);
    enum { N = 400 };
    hop_store_pos_t pos[N + 1];
    for (uint64_t i = 0; i < N; i++)
        pos[i] = sh_append(store, 1, i, 100);
    pos[N] = sh_append(store, 1, N, 10000); // larger than a segment: one of its own
    assert_true(sh_sync(store, 5000));
    uint32_t last = HOP_STORE_POS_SEG(pos[N]);
    assert_int_equal(HOP_STORE_POS_OFF(pos[N]), SEG_HEADER);
    for (uint32_t seg = 1; seg < last; seg++) {
        char *path = sh_seg_path(dir, seg);
        long size = sh_file_size(path);
        assert_true(size <= 4096);
        if (seg + 1 < last) // full ones; the one before the large record may not be
            assert_true(size > 4096 - (long)HOP_STORE_SIZE(100));
        free(path);
    }
    hop_store_stats_t st;
    hop_store_stats(store, &st);
    assert_int_equal(st.segments, last);
    assert_int_equal(sh_dir_segments(dir), last);
    uint8_t *buf = malloc(10000), *want = malloc(10000);
    sh_fill(want, 10000, N);
    assert_int_equal(hop_store_read(store, pos[N], HOP_STORE_SIZE(10000), buf, 10000), 10000);
    assert_memory_equal(buf, want, 10000);
    hop_store_destroy(&store);

    sh_log_t log = {0};
    store = sh_open(dir, &opt, &log, NULL);
    assert_int_equal(log.count, N + 1);
    for (size_t i = 0; i <= N; i++)
        assert_int_equal(log.recs[i].pos, pos[i]);
    // The full segment is not appended to: the next record starts a new one.
    assert_int_equal(HOP_STORE_POS_SEG(sh_append(store, 1, 1, 1)), last + 1);
    hop_store_destroy(&store);
    sh_log_clear(&log);
    free(buf);
    free(want);
    sh_rmrf(&dir);
}

// Fsync policies ----------------------------------------------------------------------------

static void
test_fsync_always_syncs_on_commit(void **state)
{
    (void)state;
    char *dir = sh_tmpdir();
    hop_store_options_t opt = {.fsync = HOP_FSYNC_ALWAYS, .segment_size = 4096};
    hop_store_t *store = sh_open(dir, &opt, NULL, NULL);
    int commits = 0;
    hop_store_pos_t pos = 0;
    for (uint64_t i = 0; i < 500; i++) {
        pos = sh_append(store, 1, i, 100);
        hop_store_commit(store);
        commits++;
    }
    assert_true(sh_sync(store, 5000));
    hop_store_stats_t st;
    hop_store_stats(store, &st);
    assert_true(HOP_STORE_COVERS(hop_store_durable(store), pos, HOP_STORE_SIZE(100)));
    assert_int_equal(st.synced, st.head);
    assert_int_equal(st.durable, st.synced);
    assert_true(st.fsyncs >= 1);
    // Group commit: never more than one fsync per commit plus one per new segment (file and
    // directory).
    assert_true(st.fsyncs <= (uint64_t)commits + 2 * st.segments);
    hop_store_destroy(&store);
    sh_rmrf(&dir);
}

static void
test_fsync_never_makes_no_fsync(void **state)
{
    (void)state;
    char *dir = sh_tmpdir();
    hop_store_options_t opt = {.fsync = HOP_FSYNC_NEVER, .segment_size = 4096};
    hop_store_t *store = sh_open(dir, &opt, NULL, NULL);
    for (uint64_t i = 0; i < 300; i++) {
        sh_append(store, 1, i, 100);
        hop_store_commit(store);
    }
    assert_true(sh_sync(store, 5000)); // durable = written to the OS
    hop_store_stats_t st;
    hop_store_stats(store, &st);
    assert_int_equal(st.fsyncs, 0);
    assert_int_equal(st.written, st.head);
    assert_true(st.segments > 3);
    hop_store_destroy(&store);
    sh_log_t log = {0};
    store = sh_open(dir, &opt, &log, NULL);
    assert_int_equal(log.count, 300);
    hop_store_stats(store, &st);
    assert_int_equal(st.fsyncs, 0);
    hop_store_destroy(&store);
    sh_log_clear(&log);
    sh_rmrf(&dir);
}

static bool
s_synced_all(hop_store_t *store, void *arg)
{
    (void)arg;
    hop_store_stats_t st;
    hop_store_stats(store, &st);
    return st.synced == st.head;
}

static void
test_fsync_every_ms_syncs_later(void **state)
{
    (void)state;
    char *dir = sh_tmpdir();
    hop_store_options_t opt = {.fsync = HOP_FSYNC_EVERY, .fsync_ms = 30};
    hop_store_t *store = sh_open(dir, &opt, NULL, NULL);
    for (uint64_t i = 0; i < 100; i++)
        sh_append(store, 1, i, 100);
    assert_true(sh_sync(store, 5000)); // durable once written
    assert_true(sh_until(store, s_synced_all, NULL, 5000));
    hop_store_stats_t st;
    hop_store_stats(store, &st);
    assert_true(st.fsyncs >= 1);
    uint64_t before = st.fsyncs;
    // More writes in quick succession share the next timed fsync.
    for (uint64_t i = 0; i < 50; i++) {
        sh_append(store, 1, i, 100);
        hop_store_commit(store);
    }
    assert_true(sh_until(store, s_synced_all, NULL, 5000));
    hop_store_stats(store, &st);
    assert_true(st.fsyncs > before && st.fsyncs <= before + 50);
    hop_store_destroy(&store);
    sh_rmrf(&dir);
}

// Stats ------------------------------------------------------------------------------------

static void
test_stats_report_disk_and_live_bytes(void **state)
{
    (void)state;
    char *dir = sh_tmpdir();
    hop_store_options_t opt = s_small(4096);
    hop_store_t *store = sh_open(dir, &opt, NULL, NULL);
    hop_store_pos_t pos[100];
    for (uint64_t i = 0; i < 100; i++)
        pos[i] = sh_append(store, 1, i, 60);
    assert_true(sh_sync(store, 5000));
    hop_store_stats_t st;
    hop_store_stats(store, &st);
    assert_int_equal(st.disk_bytes, sh_dir_bytes(dir));
    assert_int_equal(st.segments, sh_dir_segments(dir));
    assert_int_equal(st.live_bytes, 100 * HOP_STORE_SIZE(60));
    assert_int_equal(st.appended, 100);
    assert_int_equal(st.pending_bytes, 0);
    assert_int_equal(st.error, 0);
    assert_true(st.last_fsync_us <= st.max_fsync_us);
    hop_store_release(store, pos[99], HOP_STORE_SIZE(60));
    hop_store_stats(store, &st);
    assert_int_equal(st.live_bytes, 99 * HOP_STORE_SIZE(60));
    assert_string_equal(hop_store_fsync_name(HOP_FSYNC_EVERY), "every");
    assert_string_equal(hop_store_strerror(HOP_STORE_ENOSPC), "disk full");
    hop_store_destroy(&store);
    sh_rmrf(&dir);
}

// Failing disks ----------------------------------------------------------------------------

static void
test_full_disk_stalls_then_recovers(void **state)
{
    (void)state;
    char *dir = sh_tmpdir();
    hop_store_options_t opt = {.segment_size = 8192, .max_pending = 16384};
    hop_store_t *store = sh_open(dir, &opt, NULL, NULL);
    hop_store_pos_t first = sh_append(store, 1, 0, 100);
    assert_true(sh_sync(store, 5000));
    hop_store_stats_t st;
    hop_store_stats(store, &st);
    // Room for about seven more records, then the disk is full.
    hop_store_set_faults(store, &(hop_store_faults_t){.disk_limit = st.disk_bytes + 1000});
    hop_log_level = HOP_ERROR; // error lines are expected
    uint64_t n = 1;
    int rc = 0;
    for (; n < 1000; n++) {
        hop_store_pos_t pos;
        uint8_t buf[100];
        sh_fill(buf, sizeof buf, n);
        rc = hop_store_append(store, 1, n, buf, sizeof buf, &pos);
        if (rc)
            break;
        hop_store_commit(store);
    }
    // Appends are taken until max_pending bytes wait, then refused.
    assert_int_equal(rc, HOP_STORE_EFULL);
    assert_true(sh_wait_error(store, HOP_STORE_ENOSPC, 5000));
    assert_int_equal(hop_store_poll(store), HOP_STORE_ENOSPC);
    hop_store_stats(store, &st);
    assert_true(st.durable < st.head);
    assert_true(st.pending_bytes > 0);
    // What is on disk ends on a whole record: the failed write was cut back.
    char *path = sh_seg_path(dir, 1);
    long size = sh_file_size(path);
    assert_true(size <= (long)(SEG_HEADER + 8 * HOP_STORE_SIZE(100)));
    assert_int_equal((size - SEG_HEADER) % HOP_STORE_SIZE(100), 0);
    assert_true(st.disk_bytes <= st.durable - HOP_STORE_POS(1, 0) + 1000);
    // Space comes back: everything gets written, in order.
    hop_store_set_faults(store, &(hop_store_faults_t){0});
    assert_true(sh_wait_error(store, 0, 5000));
    assert_true(sh_sync(store, 5000));
    hop_log_level = HOP_WARN;
    hop_store_destroy(&store);
    sh_log_t log = {0};
    store = sh_open(dir, &opt, &log, NULL);
    assert_int_equal(log.count, n);
    assert_int_equal(log.recs[0].pos, first);
    for (size_t i = 0; i < log.count; i++)
        assert_int_equal(log.recs[i].key, i);
    hop_store_destroy(&store);
    sh_log_clear(&log);
    free(path);
    sh_rmrf(&dir);
}

static void
test_failed_fsync_stops_writing(void **state)
{
    (void)state;
    char *dir = sh_tmpdir();
    hop_store_t *store = sh_open(dir, NULL, NULL, NULL);
    sh_append(store, 1, 0, 10);
    assert_true(sh_sync(store, 5000));
    hop_store_set_faults(store, &(hop_store_faults_t){.fsync_failures = 1});
    hop_log_level = HOP_ERROR; // error lines are expected
    hop_store_pos_t pos = sh_append(store, 1, 1, 10);
    hop_store_commit(store);
    assert_true(sh_wait_error(store, HOP_STORE_EIO, 5000));
    hop_log_level = HOP_WARN;
    assert_false(HOP_STORE_COVERS(hop_store_durable(store), pos, HOP_STORE_SIZE(10)));
    assert_int_equal(hop_store_append(store, 1, 2, "x", 1, &pos), HOP_STORE_EIO);
    assert_int_equal(hop_store_commit(store), HOP_STORE_EIO);
    hop_store_destroy(&store);
    // A restart keeps what the checksums prove is there (here: both, the page cache has them).
    sh_log_t log = {0};
    store = sh_open(dir, NULL, &log, NULL);
    assert_int_equal(log.count, 2);
    assert_int_equal(hop_store_error(store), 0);
    hop_store_destroy(&store);
    sh_log_clear(&log);
    sh_rmrf(&dir);
}

int
main(void)
{
    hop_log_level = HOP_WARN; // no "replayed ..." line per open
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc32c_known_values),
        cmocka_unit_test(test_new_creates_layout_and_locks),
        cmocka_unit_test(test_empty_store_starts_at_first_segment),
        cmocka_unit_test(test_replay_returns_records_in_order),
        cmocka_unit_test(test_appendv_pieces_and_kill_fields_replay),
        cmocka_unit_test(test_read_back_by_position),
        cmocka_unit_test(test_read_ahead_follows_appends),
        cmocka_unit_test(test_invalid_appends_are_refused),
        cmocka_unit_test(test_torn_tail_is_cut_at_every_offset),
        cmocka_unit_test(test_corrupt_payload_inside_log_is_reported_and_skipped),
        cmocka_unit_test(test_corrupt_header_in_last_segment_cuts_there),
        cmocka_unit_test(test_corrupt_last_record_is_a_torn_tail),
        cmocka_unit_test(test_damaged_older_segment_keeps_later_segments),
        cmocka_unit_test(test_torn_segment_header_is_removed),
        cmocka_unit_test(test_segments_roll_over_at_their_size),
        cmocka_unit_test(test_fsync_always_syncs_on_commit),
        cmocka_unit_test(test_fsync_never_makes_no_fsync),
        cmocka_unit_test(test_fsync_every_ms_syncs_later),
        cmocka_unit_test(test_stats_report_disk_and_live_bytes),
        cmocka_unit_test(test_full_disk_stalls_then_recovers),
        cmocka_unit_test(test_failed_fsync_stops_writing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
