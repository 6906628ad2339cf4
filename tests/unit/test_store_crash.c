// tests/unit/test_store_crash.c - kill -9 in the middle of writing: a child process appends,
// commits and reports through a pipe the last record the store called durable; the parent
// kills it at a random moment, reopens the store and checks that the log is an unbroken prefix
// of what was appended that holds every record reported durable. Real files in /tmp.
#define _DEFAULT_SOURCE // kill, usleep
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "store.h"
#include "store_helpers.h"
#include "util.h"

#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

// The child: appends records 0, 1, 2, ... (key i, payload sh_fill(i) of i % 300 bytes, every
// tenth one killing the record before it), commits every 16, and writes the key of the last
// durable record to fd whenever it grows. Never returns.
static void
s_child(const char *dir, hop_fsync_t policy, int fd)
{
    hop_log_level = HOP_ERROR;
    hop_store_options_t opt = {.fsync = policy, .fsync_ms = 5, .segment_size = 64 * 1024};
    hop_store_t *store = hop_store_new(dir, &opt, NULL, NULL, 0);
    if (!store || hop_store_replay(store, NULL, NULL, NULL) != 0)
        _exit(2);
    enum { RING = 4096 };
    static hop_store_pos_t pos[RING];
    static uint32_t size[RING];
    uint64_t next = 0, reported = 0;
    uint8_t buf[300];
    for (;;) {
        for (int k = 0; k < 16; k++, next++) {
            uint64_t pending = next - reported;
            if (pending >= RING - 1)
                break;
            size_t len = next % 300;
            sh_fill(buf, len, next);
            struct iovec iov = {buf, len};
            bool kill = next % 10 == 9;
            hop_store_pos_t prev = pos[(next - 1) % RING];
            int rc = hop_store_appendv(store, 1, next, &iov, 1, kill ? prev : HOP_STORE_NOPOS,
                                       kill ? size[(next - 1) % RING] : 0, &pos[next % RING]);
            if (rc)
                _exit(3);
            size[next % RING] = HOP_STORE_SIZE(len);
        }
        hop_store_commit(store);
        struct pollfd pfd = {.fd = hop_store_fd(store), .events = POLLIN};
        poll(&pfd, 1, next - reported >= RING - 1 ? 100 : 0);
        hop_store_poll(store);
        hop_store_pos_t durable = hop_store_durable(store);
        uint64_t high = reported;
        while (high < next && HOP_STORE_COVERS(durable, pos[high % RING], size[high % RING]))
            high++;
        if (high > reported) {
            reported = high;
            uint64_t last = high - 1;
            if (write(fd, &last, sizeof last) != sizeof last)
                _exit(4);
        }
    }
}

static void
s_crash_once(hop_fsync_t policy, unsigned seed)
{
    char *dir = sh_tmpdir();
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        s_child(dir, policy, fds[1]);
    }
    close(fds[1]);
    srand(seed);
    // Let it run until it reported something, then a random while longer.
    uint64_t durable = UINT64_MAX, key;
    while (durable == UINT64_MAX && read(fds[0], &key, sizeof key) == sizeof key)
        durable = key;
    assert_true(durable != UINT64_MAX);
    usleep((useconds_t)(1000 + rand() % 150000));
    kill(pid, SIGKILL);
    int status;
    waitpid(pid, &status, 0);
    assert_true(WIFSIGNALED(status));
    while (read(fds[0], &key, sizeof key) == sizeof key)
        durable = key;
    close(fds[0]);

    sh_log_t log = {0};
    hop_store_replay_t rep;
    hop_log_level = HOP_ERROR; // a torn tail is expected now and then
    hop_store_options_t opt = {.segment_size = 64 * 1024};
    hop_store_t *store = sh_open(dir, &opt, &log, &rep);
    hop_log_level = HOP_WARN;
    assert_int_equal(rep.corrupt, 0);
    assert_true(log.count > durable);
    uint8_t want[300];
    for (size_t i = 0; i < log.count; i++) {
        sh_rec_t *r = &log.recs[i];
        assert_int_equal(r->key, i); // an unbroken prefix, in order
        assert_int_equal(r->len, i % 300);
        sh_fill(want, r->len, i);
        assert_memory_equal(r->payload, want, r->len);
        if (i % 10 == 9)
            assert_int_equal(r->kills, log.recs[i - 1].pos);
    }
    print_message("fsync %s: killed after %llu durable records, replayed %zu, cut %llu bytes\n",
                  hop_store_fsync_name(policy), (unsigned long long)durable + 1, log.count,
                  (unsigned long long)rep.cut_bytes);
    // The store goes on from there.
    hop_store_pos_t pos = sh_append(store, 1, log.count, 5);
    assert_true(sh_sync(store, 5000));
    hop_store_destroy(&store);
    store = sh_open(dir, &opt, &log, NULL);
    assert_int_equal(log.recs[log.count - 1].pos, pos);
    hop_store_destroy(&store);
    sh_log_clear(&log);
    sh_rmrf(&dir);
}

static void
test_kill_9_keeps_a_prefix_with_every_durable_record(void **state)
{
    (void)state;
    unsigned seed = (unsigned)time(NULL);
    print_message("seed %u\n", seed);
    for (int i = 0; i < 8; i++)
        s_crash_once(i % 2 ? HOP_FSYNC_NEVER : HOP_FSYNC_ALWAYS, seed + (unsigned)i);
}

int
main(void)
{
    hop_log_level = HOP_WARN;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kill_9_keeps_a_prefix_with_every_durable_record),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
