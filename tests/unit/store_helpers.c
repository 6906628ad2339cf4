// tests/unit/store_helpers.c - see store_helpers.h.
#define _DEFAULT_SOURCE // mkdtemp, dirent
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "store_helpers.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

void
sh_log_clear(sh_log_t *log)
{
    for (size_t i = 0; i < log->count; i++)
        free(log->recs[i].payload);
    free(log->recs);
    memset(log, 0, sizeof *log);
}

int
sh_collect(void *arg, const hop_store_record_t *rec)
{
    sh_log_t *log = arg;
    if (log->count == log->cap) {
        log->cap = log->cap ? log->cap * 2 : 64;
        log->recs = realloc(log->recs, log->cap * sizeof *log->recs);
        assert_non_null(log->recs);
    }
    sh_rec_t *r = &log->recs[log->count++];
    *r = (sh_rec_t){.pos = rec->pos,
                    .size = rec->size,
                    .type = rec->type,
                    .key = rec->key,
                    .kills = rec->kills,
                    .kills_size = rec->kills_size,
                    .len = rec->len,
                    .corrupt = rec->corrupt};
    assert_int_equal(rec->size, HOP_STORE_SIZE(rec->len));
    if (rec->payload) {
        r->payload = malloc(rec->len + 1);
        memcpy(r->payload, rec->payload, rec->len);
    }
    return 0;
}

char *
sh_tmpdir(void)
{
    char *dir = strdup("/tmp/hop-store-XXXXXX");
    assert_non_null(mkdtemp(dir));
    return dir;
}

static void
s_rm_tree(const char *path)
{
    DIR *d = opendir(path);
    if (!d) {
        unlink(path);
        return;
    }
    struct dirent *ent;
    while ((ent = readdir(d))) {
        if (!strcmp(ent->d_name, ".") || !strcmp(ent->d_name, ".."))
            continue;
        char child[4096];
        snprintf(child, sizeof child, "%s/%s", path, ent->d_name);
        s_rm_tree(child);
    }
    closedir(d);
    rmdir(path);
}

void
sh_rmrf(char **dir_p)
{
    if (*dir_p)
        s_rm_tree(*dir_p);
    free(*dir_p);
    *dir_p = NULL;
}

void
sh_copy_segments(const char *src, const char *dst)
{
    char from[4096], to[4096];
    snprintf(to, sizeof to, "%s/segments", dst);
    mkdir(dst, 0755);
    mkdir(to, 0755);
    snprintf(from, sizeof from, "%s/segments", src);
    DIR *d = opendir(from);
    assert_non_null(d);
    struct dirent *ent;
    static char buf[1 << 16];
    while ((ent = readdir(d))) {
        if (ent->d_name[0] == '.')
            continue;
        snprintf(from, sizeof from, "%s/segments/%s", src, ent->d_name);
        snprintf(to, sizeof to, "%s/segments/%s", dst, ent->d_name);
        int in = open(from, O_RDONLY), out = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        assert_true(in >= 0 && out >= 0);
        ssize_t n;
        while ((n = read(in, buf, sizeof buf)) > 0)
            assert_int_equal(write(out, buf, (size_t)n), n);
        close(in);
        close(out);
    }
    closedir(d);
}

hop_store_t *
sh_open(const char *dir, const hop_store_options_t *options, sh_log_t *log,
        hop_store_replay_t *report)
{
    int rc = 0;
    char why[256] = "";
    hop_store_t *store = hop_store_new(dir, options, &rc, why, sizeof why);
    if (!store)
        fail_msg("hop_store_new(%s): %d %s", dir, rc, why);
    if (log)
        sh_log_clear(log);
    assert_int_equal(hop_store_replay(store, log ? sh_collect : NULL, log, report), 0);
    return store;
}

void
sh_fill(uint8_t *buf, size_t len, uint64_t i)
{
    uint64_t x = i * 0x9E3779B97F4A7C15ull + 1;
    for (size_t k = 0; k < len; k++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        buf[k] = (uint8_t)x;
    }
}

hop_store_pos_t
sh_append(hop_store_t *store, uint8_t type, uint64_t key, size_t len)
{
    uint8_t *buf = malloc(len + 1);
    sh_fill(buf, len, key);
    hop_store_pos_t pos = HOP_STORE_NOPOS;
    assert_int_equal(hop_store_append(store, type, key, buf, len, &pos), 0);
    free(buf);
    return pos;
}

hop_store_pos_t
sh_kill(hop_store_t *store, uint64_t key, hop_store_pos_t pos, uint32_t size)
{
    hop_store_pos_t out = HOP_STORE_NOPOS;
    assert_int_equal(hop_store_appendv(store, HOP_REC_ACK, key, NULL, 0, pos, size, &out), 0);
    return out;
}

static uint64_t
s_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

bool
sh_until(hop_store_t *store, bool (*pred)(hop_store_t *store, void *arg), void *arg, int timeout_ms)
{
    uint64_t deadline = s_now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        hop_store_poll(store);
        if (pred(store, arg))
            return true;
        uint64_t now = s_now_ms();
        if (now >= deadline)
            return false;
        // Wake on the store's descriptor, and at least every 10 ms for time-based work.
        struct pollfd pfd = {.fd = hop_store_fd(store), .events = POLLIN};
        int wait = (int)(deadline - now) < 10 ? (int)(deadline - now) : 10;
        poll(&pfd, 1, wait);
    }
}

static bool
s_all_durable(hop_store_t *store, void *arg)
{
    (void)arg;
    hop_store_stats_t st;
    hop_store_stats(store, &st);
    return st.durable == st.head;
}

bool
sh_sync(hop_store_t *store, int timeout_ms)
{
    assert_int_equal(hop_store_commit(store), 0);
    return sh_until(store, s_all_durable, NULL, timeout_ms);
}

static bool
s_has_error(hop_store_t *store, void *arg)
{
    return hop_store_error(store) == *(int *)arg;
}

bool
sh_wait_error(hop_store_t *store, int rc, int timeout_ms)
{
    return sh_until(store, s_has_error, &rc, timeout_ms);
}

// Settled: everything appended is durable and, over two polls (the first may only now see the
// writer finish a segment), no deletion or compaction is out.
static bool
s_settled(hop_store_t *store, void *arg)
{
    (void)arg;
    hop_store_stats_t st;
    hop_store_stats(store, &st);
    if (st.durable != st.head || st.jobs)
        return false;
    hop_store_poll(store);
    hop_store_stats(store, &st);
    return st.jobs == 0;
}

bool
sh_settle(hop_store_t *store, int timeout_ms)
{
    hop_store_commit(store);
    return sh_until(store, s_settled, NULL, timeout_ms);
}

char *
sh_seg_path(const char *dir, uint32_t seg)
{
    char *path = malloc(strlen(dir) + 40);
    sprintf(path, "%s/segments/%08u.log", dir, seg);
    return path;
}

long
sh_file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

void
sh_truncate(const char *path, long size)
{
    assert_int_equal(truncate(path, size), 0);
}

void
sh_flip(const char *path, long offset)
{
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    uint8_t b;
    assert_int_equal(pread(fd, &b, 1, offset), 1);
    b ^= 0x10;
    assert_int_equal(pwrite(fd, &b, 1, offset), 1);
    close(fd);
}

static void
s_dir_scan(const char *dir, uint64_t *bytes, uint32_t *count)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/segments", dir);
    DIR *d = opendir(path);
    assert_non_null(d);
    struct dirent *ent;
    *bytes = 0;
    *count = 0;
    while ((ent = readdir(d))) {
        size_t n = strlen(ent->d_name);
        if (n < 4 || strcmp(ent->d_name + n - 4, ".log") != 0)
            continue;
        snprintf(path, sizeof path, "%s/segments/%s", dir, ent->d_name);
        *bytes += (uint64_t)sh_file_size(path);
        (*count)++;
    }
    closedir(d);
}

uint64_t
sh_dir_bytes(const char *dir)
{
    uint64_t bytes;
    uint32_t count;
    s_dir_scan(dir, &bytes, &count);
    return bytes;
}

uint32_t
sh_dir_segments(const char *dir)
{
    uint64_t bytes;
    uint32_t count;
    s_dir_scan(dir, &bytes, &count);
    return count;
}
