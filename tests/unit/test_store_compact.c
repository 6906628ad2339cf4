// tests/unit/test_store_compact.c - reclaiming space: dead segments deleted, mostly-dead ones
// compacted in place with positions kept, tombstones kept exactly as long as their targets,
// records that die during a compaction, and a randomized run against a model that reopens the
// store again and again. Real files in /tmp.
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

#define SEG_HEADER 32
#define PER_SEG    40 // records of 60-byte payload (100 bytes) in a 4096-byte segment

static hop_store_options_t s_opt = {.segment_size = 4096};

static void
s_expect_read(hop_store_t *store, hop_store_pos_t pos, uint64_t key, size_t len)
{
    uint8_t buf[256], want[256];
    sh_fill(want, len, key);
    assert_int_equal(hop_store_read(store, pos, HOP_STORE_SIZE(len), buf, sizeof buf), len);
    assert_memory_equal(buf, want, len);
}

static size_t
s_find(const sh_log_t *log, hop_store_pos_t pos)
{
    for (size_t i = 0; i < log->count; i++)
        if (log->recs[i].pos == pos)
            return i;
    return SIZE_MAX;
}

// Deletion ---------------------------------------------------------------------------------

static void
test_dead_segments_are_deleted(void **state)
{
    (void)state;
    char *dir = sh_tmpdir();
    hop_store_t *store = sh_open(dir, &s_opt, NULL, NULL);
    hop_store_pos_t pos[3 * PER_SEG + 1];
    for (uint64_t i = 0; i <= 3 * PER_SEG; i++)
        pos[i] = sh_append(store, 1, i, 60);
    assert_int_equal(HOP_STORE_POS_SEG(pos[3 * PER_SEG]), 4);
    assert_true(sh_settle(store, 5000));
    hop_store_stats_t before;
    hop_store_stats(store, &before);
    for (int i = 0; i < 2 * PER_SEG; i++)
        hop_store_release(store, pos[i], HOP_STORE_SIZE(60));
    assert_true(sh_settle(store, 5000));
    hop_store_stats_t st;
    hop_store_stats(store, &st);
    assert_int_equal(st.deletions, 2);
    assert_int_equal(st.segments, 2);
    assert_int_equal(sh_dir_segments(dir), 2);
    assert_int_equal(st.disk_bytes, sh_dir_bytes(dir));
    assert_int_equal(before.disk_bytes - st.disk_bytes, 2 * (SEG_HEADER + PER_SEG * 100));
    assert_int_equal(st.reclaimed_bytes, before.disk_bytes - st.disk_bytes);
    s_expect_read(store, pos[2 * PER_SEG], 2 * PER_SEG, 60);
    hop_store_destroy(&store);
    sh_log_t log = {0};
    store = sh_open(dir, &s_opt, &log, NULL);
    assert_int_equal(log.count, PER_SEG + 1);
    assert_int_equal(log.recs[0].pos, pos[2 * PER_SEG]);
    hop_store_destroy(&store);
    sh_log_clear(&log);
    sh_rmrf(&dir);
}

static void
test_active_segment_is_kept_until_it_rolls_over(void **state)
{
    (void)state;
    char *dir = sh_tmpdir();
    hop_store_t *store = sh_open(dir, &s_opt, NULL, NULL);
    hop_store_pos_t pos[PER_SEG];
    for (uint64_t i = 0; i < 10; i++)
        pos[i] = sh_append(store, 1, i, 60);
    for (int i = 0; i < 10; i++)
        hop_store_release(store, pos[i], HOP_STORE_SIZE(60));
    assert_true(sh_settle(store, 5000));
    hop_store_stats_t st;
    hop_store_stats(store, &st);
    assert_int_equal(st.deletions + st.compactions, 0); // all dead, but appends go there
    assert_int_equal(sh_dir_segments(dir), 1);
    for (uint64_t i = 10; i < PER_SEG; i++)
        pos[i] = sh_append(store, 1, i, 60);
    sh_append(store, 1, 0, 60); // rolls over into segment 2
    assert_true(sh_settle(store, 5000));
    hop_store_stats(store, &st);
    assert_int_equal(st.segments, 2);
    assert_int_equal(st.deletions + st.compactions, 0); // a quarter dead: left alone
    for (int i = 10; i < PER_SEG; i++)
        hop_store_release(store, pos[i], HOP_STORE_SIZE(60));
    assert_true(sh_settle(store, 5000));
    hop_store_stats(store, &st);
    assert_int_equal(st.deletions, 1);
    assert_int_equal(st.segments, 1);
    hop_store_destroy(&store);
    sh_rmrf(&dir);
}

// Tombstones --------------------------------------------------------------------------------

static void
test_tombstone_is_kept_while_its_target_is_on_disk(void **state)
{
    (void)state;
    char *dir = sh_tmpdir();
    hop_store_t *store = sh_open(dir, &s_opt, NULL, NULL);
    hop_store_pos_t seg1[PER_SEG], seg2[PER_SEG];
    seg1[0] = sh_append(store, 1, 0, 120); // the message that gets acked; fills segment 1
    for (uint64_t i = 1; i < PER_SEG; i++)
        seg1[i] = sh_append(store, 1, i, 60);
    hop_store_pos_t ack = sh_kill(store, 0, seg1[0], HOP_STORE_SIZE(120));
    assert_int_equal(HOP_STORE_POS_SEG(ack), 2);
    for (uint64_t i = 1; i < PER_SEG; i++)
        seg2[i] = sh_append(store, 1, 100 + i, 60);
    assert_int_equal(HOP_STORE_POS_SEG(sh_append(store, 1, 999, 200)), 3); // 2 is not active
    for (int i = 1; i < PER_SEG; i++)
        hop_store_release(store, seg2[i], HOP_STORE_SIZE(60));
    assert_true(sh_settle(store, 5000));
    // Segment 2 is all dead but the ack, whose message is still in segment 1: compacted to
    // just the ack, not deleted.
    hop_store_stats_t st;
    hop_store_stats(store, &st);
    assert_int_equal(st.deletions, 0);
    assert_int_equal(st.compactions, 1);
    char *path = sh_seg_path(dir, 2);
    assert_int_equal(sh_file_size(path), SEG_HEADER + HOP_STORE_HEADER);
    hop_store_destroy(&store);

    sh_log_t log = {0};
    store = sh_open(dir, &s_opt, &log, NULL);
    size_t msg = s_find(&log, seg1[0]), kill = s_find(&log, ack);
    assert_true(msg < kill && kill != SIZE_MAX);
    assert_int_equal(log.recs[kill].kills, seg1[0]);
    assert_int_equal(log.count, PER_SEG + 2);
    // Once the message's segment goes, the ack goes too.
    for (int i = 1; i < PER_SEG; i++)
        hop_store_release(store, seg1[i], HOP_STORE_SIZE(60));
    assert_true(sh_settle(store, 5000));
    hop_store_stats(store, &st);
    assert_int_equal(st.deletions, 2);
    assert_int_equal(sh_file_size(path), -1);
    assert_int_equal(sh_dir_segments(dir), 1);
    hop_store_destroy(&store);
    store = sh_open(dir, &s_opt, &log, NULL);
    assert_int_equal(log.count, 1);
    assert_int_equal(log.recs[0].key, 999);
    hop_store_destroy(&store);
    sh_log_clear(&log);
    free(path);
    sh_rmrf(&dir);
}

// Compaction --------------------------------------------------------------------------------

static void
test_compaction_keeps_live_records_at_their_positions(void **state)
{
    (void)state;
    char *dir = sh_tmpdir();
    hop_store_t *store = sh_open(dir, &s_opt, NULL, NULL);
    hop_store_pos_t pos[PER_SEG], tail[5];
    for (uint64_t i = 0; i < PER_SEG; i++)
        pos[i] = sh_append(store, 1, i, 60);
    for (uint64_t i = 0; i < 5; i++)
        tail[i] = sh_append(store, 2, 1000 + i, 60);
    assert_true(sh_settle(store, 5000));
    for (int i = 0; i < PER_SEG; i++)
        if (i % 3)
            hop_store_release(store, pos[i], HOP_STORE_SIZE(60)); // 26 of 40 die
    assert_true(sh_settle(store, 5000));
    hop_store_stats_t st;
    hop_store_stats(store, &st);
    assert_int_equal(st.compactions, 1);
    char *path = sh_seg_path(dir, 1);
    assert_int_equal(sh_file_size(path), SEG_HEADER + 14 * 100);
    assert_int_equal(st.disk_bytes, sh_dir_bytes(dir));
    uint8_t buf[64];
    for (int i = 0; i < PER_SEG; i++) {
        if (i % 3)
            assert_int_equal(hop_store_read(store, pos[i], HOP_STORE_SIZE(60), buf, 64),
                             HOP_STORE_ENOTFOUND);
        else
            s_expect_read(store, pos[i], (uint64_t)i, 60);
    }
    for (int round = 0; round < 2; round++) {
        hop_store_destroy(&store);
        sh_log_t log = {0};
        store = sh_open(dir, &s_opt, &log, NULL);
        size_t live = round == 0 ? 14 : 5;
        assert_int_equal(log.count, live + 5);
        for (size_t k = 0, i = 0; i < PER_SEG; i++) {
            if (i % 3 || (round == 1 && i % 9 != 0))
                continue;
            assert_int_equal(log.recs[k++].pos, pos[i]); // same positions after a restart
            s_expect_read(store, pos[i], i, 60);
        }
        assert_int_equal(log.recs[live].pos, tail[0]);
        sh_log_clear(&log);
        if (round == 1)
            break;
        // Compact the compacted segment again: 8 of its 14 die.
        for (int i = 0; i < PER_SEG; i += 3)
            if (i % 9)
                hop_store_release(store, pos[i], HOP_STORE_SIZE(60));
        assert_true(sh_settle(store, 5000));
        hop_store_stats(store, &st);
        assert_int_equal(st.compactions, 1);
        assert_int_equal(sh_file_size(path), SEG_HEADER + 5 * 100);
        for (int i = 0; i < PER_SEG; i += 9)
            s_expect_read(store, pos[i], (uint64_t)i, 60);
    }
    hop_store_destroy(&store);
    free(path);
    sh_rmrf(&dir);
}

static void
test_records_that_die_during_a_compaction_stay_dead(void **state)
{
    (void)state;
    char *dir = sh_tmpdir();
    hop_store_t *store = sh_open(dir, &s_opt, NULL, NULL);
    hop_store_pos_t pos[PER_SEG];
    for (uint64_t i = 0; i < PER_SEG; i++)
        pos[i] = sh_append(store, 1, i, 60);
    hop_store_pos_t later = sh_append(store, 1, 500, 60); // segment 2
    assert_true(sh_settle(store, 5000));
    for (int i = 0; i < 30; i++)
        hop_store_release(store, pos[i], HOP_STORE_SIZE(60));
    hop_store_poll(store); // hands the compaction to the janitor with a snapshot of what is dead
    hop_store_stats_t st;
    hop_store_stats(store, &st);
    assert_int_equal(st.jobs, 1);
    // Now, while it runs: one record is released, another killed by a tombstone.
    hop_store_release(store, pos[30], HOP_STORE_SIZE(60));
    hop_store_pos_t ack = sh_kill(store, 31, pos[31], HOP_STORE_SIZE(60));
    assert_true(sh_settle(store, 5000));
    hop_store_stats(store, &st);
    assert_int_equal(st.compactions, 1);
    uint8_t buf[64];
    assert_int_equal(hop_store_read(store, pos[30], HOP_STORE_SIZE(60), buf, 64),
                     HOP_STORE_ENOTFOUND);
    assert_int_equal(hop_store_read(store, pos[31], HOP_STORE_SIZE(60), buf, 64),
                     HOP_STORE_ENOTFOUND);
    for (int i = 32; i < PER_SEG; i++)
        s_expect_read(store, pos[i], (uint64_t)i, 60);
    // Live: 8 records in segment 1, `later`, and the tombstone (its target is still on disk).
    assert_int_equal(st.live_bytes, 9 * 100 + HOP_STORE_HEADER);
    hop_store_destroy(&store);

    sh_log_t log = {0};
    store = sh_open(dir, &s_opt, &log, NULL);
    size_t killed = s_find(&log, pos[31]), tomb = s_find(&log, ack);
    assert_true(killed < tomb && tomb != SIZE_MAX);
    assert_true(s_find(&log, pos[30]) != SIZE_MAX); // copied: the caller releases it again
    assert_true(s_find(&log, later) != SIZE_MAX);
    hop_store_release(store, pos[30], HOP_STORE_SIZE(60));
    hop_store_stats(store, &st);
    assert_int_equal(st.live_bytes, 9 * 100 + HOP_STORE_HEADER);
    hop_store_destroy(&store);
    sh_log_clear(&log);
    sh_rmrf(&dir);
}

static void
test_disk_use_follows_the_backlog(void **state)
{
    (void)state;
    char *dir = sh_tmpdir();
    hop_store_t *store = sh_open(dir, &s_opt, NULL, NULL);
    enum { N = 6000, LAG = 25 };
    static hop_store_pos_t pos[N];
    for (uint64_t i = 0; i < N; i++) {
        pos[i] = sh_append(store, HOP_REC_MESSAGE, i, 60);
        if (i >= LAG)
            sh_kill(store, i - LAG, pos[i - LAG], HOP_STORE_SIZE(60)); // acks trail by LAG
        if (i % 50 == 0) {
            hop_store_commit(store);
            hop_store_poll(store);
        }
    }
    for (uint64_t i = N - LAG; i < N; i++)
        sh_kill(store, i, pos[i], HOP_STORE_SIZE(60));
    // Everything is acked: beyond the active segment, nothing needs to stay.
    sh_append(store, 9, 0, 3000); // pushes the last acks out of the active segment
    sh_append(store, 9, 0, 3000);
    assert_true(sh_settle(store, 10000));
    hop_store_stats_t st;
    hop_store_stats(store, &st);
    assert_true(st.deletions > 100);
    assert_true(st.segments <= 3);
    assert_true(st.disk_bytes <= 3 * 4096);
    hop_store_destroy(&store);
    sh_log_t log = {0};
    store = sh_open(dir, &s_opt, &log, NULL);
    for (size_t i = 0; i < log.count; i++)
        if (log.recs[i].type == HOP_REC_MESSAGE) // a replayed message is followed by its ack
            for (size_t k = i + 1;; k++) {
                assert_true(k < log.count);
                if (log.recs[k].kills == log.recs[i].pos)
                    break;
            }
    hop_store_destroy(&store);
    sh_log_clear(&log);
    sh_rmrf(&dir);
}

// Randomized, against a model --------------------------------------------------------------

enum { M_MSG = 1, M_ACK = 2, M_UPD = 3 };

typedef struct {
    hop_store_pos_t pos;
    uint32_t len;
    uint8_t kind;
    bool live;              // MSG/UPD: not acked or released
    int32_t killer;         // MSG: index of its ACK, or -1
    hop_store_pos_t target; // ACK: the message
} m_rec_t;

static uint64_t s_rng = 0x2545F4914F6CDD1Dull;

static uint64_t
s_rand(void)
{
    s_rng ^= s_rng << 13;
    s_rng ^= s_rng >> 7;
    s_rng ^= s_rng << 17;
    return s_rng;
}

static int32_t
s_pick_live(const m_rec_t *m, uint32_t n, uint8_t kind)
{
    if (!n)
        return -1;
    for (int tries = 0; tries < 8; tries++) {
        uint32_t i = n - 1 - (uint32_t)(s_rand() % (n < 400 ? n : 400)); // mostly recent
        if (s_rand() % 4 == 0)
            i = (uint32_t)(s_rand() % n); // sometimes old
        if (m[i].live && (kind == 0 || m[i].kind == kind))
            return (int32_t)i;
    }
    return -1;
}

// Reopens the store and checks the replay against the model; releases again what the model
// says is dead but came back without a tombstone (what a broker does after replay).
static uint64_t s_compactions, s_deletions; // over every open of the randomized run

static hop_store_t *
s_reopen_and_check(hop_store_t *store, const char *dir, m_rec_t *m, uint32_t n)
{
    hop_store_stats_t st;
    hop_store_stats(store, &st);
    s_compactions += st.compactions;
    s_deletions += st.deletions;
    hop_store_destroy(&store);
    sh_log_t log = {0};
    store = sh_open(dir, &s_opt, &log, NULL);
    // Index the model by position: positions are unique and increasing in append order.
    size_t found = 0;
    for (size_t i = 0; i < log.count; i++) {
        sh_rec_t *r = &log.recs[i];
        assert_false(r->corrupt);
        uint32_t a = 0, b = n;
        while (a < b) {
            uint32_t mid = (a + b) / 2;
            if (m[mid].pos < r->pos)
                a = mid + 1;
            else
                b = mid;
        }
        assert_true(a < n && m[a].pos == r->pos); // nothing appears that was not appended
        m_rec_t *x = &m[a];
        assert_int_equal(r->type, x->kind);
        assert_int_equal(r->len, x->len);
        if (x->kind == M_ACK) {
            assert_int_equal(r->kills, x->target);
            continue;
        }
        uint8_t want[256];
        sh_fill(want, x->len, a);
        assert_memory_equal(r->payload, want, x->len);
        if (x->live) {
            found++;
            continue;
        }
        if (x->killer >= 0) { // acked: its ack must follow, or replay would resurrect it
            size_t k = s_find(&log, m[x->killer].pos);
            assert_true(k != SIZE_MAX && k > i);
            continue;
        }
        hop_store_release(store, r->pos, HOP_STORE_SIZE(x->len)); // released before
    }
    size_t live = 0;
    for (uint32_t i = 0; i < n; i++)
        live += m[i].kind != M_ACK && m[i].live;
    assert_int_equal(found, live); // every live record came back
    sh_log_clear(&log);
    return store;
}

static void
test_random_workload_matches_model(void **state)
{
    (void)state;
    char *dir = sh_tmpdir();
    hop_store_t *store = sh_open(dir, &s_opt, NULL, NULL);
    enum { STEPS = 30000 };
    m_rec_t *m = calloc(STEPS, sizeof *m);
    uint32_t n = 0;
    for (int step = 0; step < STEPS; step++) {
        uint64_t r = s_rand() % 100;
        int32_t i;
        if (r < 45 || n == 0) {
            uint32_t len = (uint32_t)(s_rand() % 200);
            m[n] = (m_rec_t){.kind = r % 3 ? M_MSG : M_UPD, .len = len, .live = true, .killer = -1};
            m[n].pos = sh_append(store, m[n].kind, n, len);
            n++;
        } else if (r < 75 && (i = s_pick_live(m, n, M_MSG)) >= 0) {
            m[n] = (m_rec_t){.kind = M_ACK, .target = m[i].pos, .killer = -1};
            m[n].pos = sh_kill(store, n, m[i].pos, HOP_STORE_SIZE(m[i].len));
            m[i].live = false;
            m[i].killer = (int32_t)n;
            n++;
        } else if ((i = s_pick_live(m, n, 0)) >= 0 && m[i].kind != M_ACK) {
            hop_store_release(store, m[i].pos, HOP_STORE_SIZE(m[i].len));
            m[i].live = false;
        }
        if (step % 25 == 0) {
            hop_store_commit(store);
            hop_store_poll(store);
        }
        if (step % 3000 == 2999) {
            assert_true(sh_settle(store, 10000));
            for (uint32_t k = 0; k < n; k++)
                if (m[k].live && m[k].kind != M_ACK && s_rand() % 8 == 0)
                    s_expect_read(store, m[k].pos, k, m[k].len);
            store = s_reopen_and_check(store, dir, m, n);
        }
    }
    // Everything dies: disk use falls to about the active segment.
    for (uint32_t k = 0; k < n; k++) {
        if (!m[k].live || m[k].kind == M_ACK)
            continue;
        if (m[k].kind == M_MSG)
            sh_kill(store, k, m[k].pos, HOP_STORE_SIZE(m[k].len));
        else
            hop_store_release(store, m[k].pos, HOP_STORE_SIZE(m[k].len));
        m[k].live = false;
    }
    for (int k = 0; k < 3; k++)
        sh_append(store, 9, 0, 3000); // filler, so the last acks leave the active segment
    assert_true(sh_settle(store, 10000));
    hop_store_stats_t st;
    hop_store_stats(store, &st);
    s_compactions += st.compactions;
    s_deletions += st.deletions;
    print_message("model: %u records, %llu compactions, %llu deletions, %llu bytes left in %u "
                  "segments\n",
                  n, (unsigned long long)s_compactions, (unsigned long long)s_deletions,
                  (unsigned long long)st.disk_bytes, st.segments);
    assert_true(s_compactions > 10);
    assert_true(s_deletions > 10);
    assert_true(st.deletions > 10);
    assert_true(st.disk_bytes <= 4 * 4096);
    hop_store_destroy(&store);
    free(m);
    sh_rmrf(&dir);
}

int
main(void)
{
    hop_log_level = HOP_WARN;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dead_segments_are_deleted),
        cmocka_unit_test(test_active_segment_is_kept_until_it_rolls_over),
        cmocka_unit_test(test_tombstone_is_kept_while_its_target_is_on_disk),
        cmocka_unit_test(test_compaction_keeps_live_records_at_their_positions),
        cmocka_unit_test(test_records_that_die_during_a_compaction_stay_dead),
        cmocka_unit_test(test_disk_use_follows_the_backlog),
        cmocka_unit_test(test_random_workload_matches_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
