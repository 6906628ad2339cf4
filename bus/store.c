// bus/store.c - the store's API on the reactor side: open and lock, append into chunks, commit
// to the writer, release, read back, poll for progress, delete dead segments and start and
// install compactions. The threads live in store_writer.c and store_janitor.c, replay in
// store_replay.c, the format in store_io.c.
#define _DEFAULT_SOURCE // flock, preadv
#include "store_internal.h"
#include "util.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

const char *
hop_store_strerror(int rc)
{
    switch (rc) {
    case HOP_STORE_OK:
        return "ok";
    case HOP_STORE_EINVAL:
        return "invalid argument";
    case HOP_STORE_EFULL:
        return "too many bytes waiting to be written";
    case HOP_STORE_ENOSPC:
        return "disk full";
    case HOP_STORE_EIO:
        return "I/O error";
    case HOP_STORE_ELOCKED:
        return "data directory in use";
    case HOP_STORE_ECORRUPT:
        return "record failed its checksum";
    case HOP_STORE_ENOTFOUND:
        return "no such record";
    default:
        return "unknown error";
    }
}

const char *
hop_store_fsync_name(hop_fsync_t policy)
{
    switch (policy) {
    case HOP_FSYNC_ALWAYS:
        return "always";
    case HOP_FSYNC_EVERY:
        return "every";
    case HOP_FSYNC_NEVER:
        return "never";
    }
    return "?";
}

// Opening ----------------------------------------------------------------------------------

static void
s_options(hop_store_options_t *o, const hop_store_options_t *in)
{
    if (in)
        *o = *in;
    else
        memset(o, 0, sizeof *o);
    if (o->fsync > HOP_FSYNC_NEVER)
        o->fsync = HOP_FSYNC_ALWAYS;
    if (!o->fsync_ms)
        o->fsync_ms = 100;
    if (!o->segment_size)
        o->segment_size = 64u << 20;
    if (o->segment_size < 4096)
        o->segment_size = 4096;
    if (o->segment_size > (1u << 30))
        o->segment_size = 1u << 30;
    if (!o->max_record || o->max_record > REC_MAX)
        o->max_record = o->max_record ? REC_MAX : 64u << 20;
    if (!o->max_pending)
        o->max_pending = (uint64_t)64 << 20;
    if (!o->compact_percent)
        o->compact_percent = 50;
}

// mkdir -p; 0 or errno.
static int
s_mkdirs(const char *path)
{
    char *copy = hop_strndup(path, strlen(path));
    int rc = 0;
    for (char *p = copy + 1;; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char c = *p;
        *p = '\0';
        if (mkdir(copy, 0755) < 0 && errno != EEXIST) {
            rc = errno;
            break;
        }
        *p = c;
        if (c == '\0')
            break;
    }
    free(copy);
    return rc;
}

static void
s_fail(int *rc_p, int rc, char *why, size_t why_size, const char *fmt, const char *a, const char *b)
{
    if (rc_p)
        *rc_p = rc;
    if (why && why_size)
        snprintf(why, why_size, fmt, a, b);
}

// Takes dir/LOCK. flock, not fcntl locks: those do not conflict within one process, and a
// test (or a broker bug) opening the directory twice must be refused too.
static int
s_lock(hop_store_t *self, char *why, size_t why_size, int *rc_p)
{
    size_t len = strlen(self->dir) + 8;
    char *path = hop_malloc(len);
    snprintf(path, len, "%s/LOCK", self->dir);
    self->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (self->lock_fd < 0) {
        s_fail(rc_p, HOP_STORE_EIO, why, why_size, "cannot open %s: %s", path, strerror(errno));
        free(path);
        return -1;
    }
    if (flock(self->lock_fd, LOCK_EX | LOCK_NB) < 0) {
        if (errno != EWOULDBLOCK) {
            s_fail(rc_p, HOP_STORE_EIO, why, why_size, "cannot lock %s: %s", path, strerror(errno));
            free(path);
            return -1;
        }
        char pid[32] = "";
        ssize_t n = pread(self->lock_fd, pid, sizeof pid - 1, 0);
        pid[n > 0 ? n : 0] = '\0';
        pid[strcspn(pid, "\n")] = '\0';
        s_fail(rc_p, HOP_STORE_ELOCKED, why, why_size,
               "data directory %s is in use by process %s (another hopperd?)", self->dir,
               *pid ? pid : "?");
        free(path);
        return -1;
    }
    free(path);
    char pid[32];
    int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(self->lock_fd, 0) < 0 || pwrite(self->lock_fd, pid, (size_t)n, 0) < 0) {
        // The pid is only a hint for the operator; the lock is what counts.
    }
    return 0;
}

hop_store_t *
hop_store_new(const char *dir, const hop_store_options_t *options, int *rc_p, char *why,
              size_t why_size)
{
    assert(dir);
    if (!*dir) {
        s_fail(rc_p, HOP_STORE_EINVAL, why, why_size, "%s%s", "no data directory given", "");
        return NULL;
    }
    hop_store_t *self = hop_calloc(1, sizeof *self);
    self->dir = hop_strndup(dir, strlen(dir));
    size_t len = strlen(dir) + 16;
    self->segdir = hop_malloc(len);
    snprintf(self->segdir, len, "%s/segments", dir);
    s_options(&self->opt, options);
    self->lock_fd = self->dir_fd = self->pipe_r = self->pipe_w = -1;
    pthread_mutex_init(&self->mu, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&self->writer_cv, &attr);
    pthread_cond_init(&self->janitor_cv, &attr);
    pthread_condattr_destroy(&attr);

    int err = s_mkdirs(self->segdir);
    if (err) {
        s_fail(rc_p, HOP_STORE_EIO, why, why_size, "cannot create %s: %s", self->segdir,
               strerror(err));
        goto fail;
    }
    if (s_lock(self, why, why_size, rc_p) < 0)
        goto fail;
    self->dir_fd = open(self->segdir, O_RDONLY | O_CLOEXEC);
    int fds[2];
    if (self->dir_fd < 0 || pipe(fds) < 0) {
        s_fail(rc_p, HOP_STORE_EIO, why, why_size, "cannot open %s: %s", self->segdir,
               strerror(errno));
        goto fail;
    }
    self->pipe_r = fds[0];
    self->pipe_w = fds[1];
    for (int i = 0; i < 2; i++) {
        fcntl(fds[i], F_SETFL, fcntl(fds[i], F_GETFL) | O_NONBLOCK);
        fcntl(fds[i], F_SETFD, FD_CLOEXEC);
    }
    if (rc_p)
        *rc_p = 0;
    return self;
fail:
    hop_store_destroy(&self);
    return NULL;
}

static void
s_chunks_free(hop_store_chunk_t *chunk)
{
    while (chunk) {
        hop_store_chunk_t *next = chunk->next;
        free(chunk);
        chunk = next;
    }
}

void
hop_store_destroy(hop_store_t **self_p)
{
    hop_store_t *self = *self_p;
    if (!self)
        return;
    if (self->threads) {
        hop_store_commit(self);
        pthread_mutex_lock(&self->mu);
        if (self->cur)
            self->cur->sealed = true;
        self->stop = true;
        self->work = true;
        atomic_store(&self->stopping, true);
        pthread_cond_signal(&self->writer_cv);
        pthread_cond_signal(&self->janitor_cv);
        pthread_mutex_unlock(&self->mu);
        pthread_join(self->writer, NULL);
        pthread_join(self->janitor, NULL);
    }
    s_chunks_free(self->q_head);
    s_chunks_free(self->pool);
    for (hop_store_job_t *job = self->jobs, *next; job; job = next) {
        next = job->next;
        hop_store_job_destroy(&job);
    }
    for (hop_store_job_t *job = self->done, *next; job; job = next) {
        next = job->next;
        hop_store_job_destroy(&job);
    }
    for (uint32_t i = 0; i < self->nsegs; i++)
        hop_store_seg_destroy(&self->segs[i]);
    free(self->segs);
    free(self->ra_buf);
    int fds[] = {self->dir_fd, self->pipe_r, self->pipe_w, self->lock_fd};
    for (size_t i = 0; i < sizeof fds / sizeof fds[0]; i++)
        if (fds[i] >= 0)
            close(fds[i]); // closing the lock file releases the flock
    pthread_mutex_destroy(&self->mu);
    pthread_cond_destroy(&self->writer_cv);
    pthread_cond_destroy(&self->janitor_cv);
    free(self->dir);
    free(self->segdir);
    free(self);
    *self_p = NULL;
}

int
hop_store_start(hop_store_t *self)
{
    assert(!self->threads);
    self->replayed = true;
    if (pthread_create(&self->writer, NULL, hop_store_writer_main, self) != 0)
        return HOP_STORE_EIO;
    if (pthread_create(&self->janitor, NULL, hop_store_janitor_main, self) != 0) {
        pthread_mutex_lock(&self->mu);
        self->stop = true;
        pthread_cond_signal(&self->writer_cv);
        pthread_mutex_unlock(&self->mu);
        pthread_join(self->writer, NULL);
        return HOP_STORE_EIO;
    }
    self->threads = true;
    return 0;
}

// Appending --------------------------------------------------------------------------------

// Seals the open chunk (the writer may write all of it) and queues a fresh one for a record of
// size bytes at the head.
static void
s_chunk_next(hop_store_t *self, uint32_t size)
{
    pthread_mutex_lock(&self->mu);
    if (self->cur) {
        atomic_store_explicit(&self->cur->committed, self->cur->used, memory_order_release);
        self->cur->sealed = true;
        self->work = true;
        pthread_cond_signal(&self->writer_cv);
    }
    hop_store_chunk_t *chunk = NULL;
    if (size <= CHUNK_SIZE && self->pool) {
        chunk = self->pool;
        self->pool = chunk->next;
        self->npool--;
    }
    pthread_mutex_unlock(&self->mu);
    uint32_t cap = size > CHUNK_SIZE ? size : CHUNK_SIZE;
    if (!chunk)
        chunk = hop_malloc(sizeof *chunk + cap);
    chunk->next = NULL;
    chunk->seg = self->head_seg;
    chunk->start = self->head_off;
    chunk->cap = cap;
    chunk->used = 0;
    atomic_init(&chunk->committed, 0);
    chunk->written = 0;
    chunk->sealed = false;
    pthread_mutex_lock(&self->mu);
    if (self->q_tail)
        self->q_tail->next = chunk;
    else
        self->q_head = chunk;
    self->q_tail = chunk;
    pthread_mutex_unlock(&self->mu);
    self->cur = chunk;
}

// Starts the next segment: the writer creates its file when it reaches its first chunk.
static void
s_roll(hop_store_t *self)
{
    self->head_seg++;
    self->head_off = SEG_HEADER;
    hop_store_seg_insert(self, hop_store_seg_new(self->head_seg, 0));
    self->maint_due = true;
}

int
hop_store_appendv(hop_store_t *self, uint8_t type, uint64_t key, const struct iovec *iov,
                  int iovcnt, hop_store_pos_t kills, uint32_t kills_size, hop_store_pos_t *pos_p)
{
    assert(self);
    assert(self->replayed);
    assert(iovcnt >= 0 && (iov || iovcnt == 0));
    if (type == 0)
        return HOP_STORE_EINVAL;
    uint64_t len = 0;
    for (int i = 0; i < iovcnt; i++)
        len += iov[i].iov_len;
    if (len > self->opt.max_record)
        return HOP_STORE_EINVAL;
    if (atomic_load(&self->failed))
        return HOP_STORE_EIO;
    uint32_t size = HOP_STORE_SIZE(len);
    uint64_t pending = self->appended_bytes - atomic_load(&self->written_bytes);
    if (pending + size > self->opt.max_pending)
        return HOP_STORE_EFULL;
    hop_store_seg_t *target = NULL;
    if (kills != HOP_STORE_NOPOS) {
        target = hop_store_seg_find(self, HOP_STORE_POS_SEG(kills));
        if (!target || kills_size < REC_HEADER ||
            hop_store_seg_dead(target, HOP_STORE_POS_OFF(kills)) != 0)
            return HOP_STORE_EINVAL;
    }
    if (self->head_off > SEG_HEADER && (uint64_t)self->head_off + size > self->opt.segment_size)
        s_roll(self);
    if (!self->cur || self->cur->seg != self->head_seg || self->cur->used + size > self->cur->cap)
        s_chunk_next(self, size);

    hop_store_chunk_t *chunk = self->cur;
    uint8_t *out = chunk->data + chunk->used;
    uint8_t *payload = out + REC_HEADER;
    for (int i = 0; i < iovcnt; i++) {
        if (iov[i].iov_len)
            memcpy(payload, iov[i].iov_base, iov[i].iov_len);
        payload += iov[i].iov_len;
    }
    hop_store_rhdr_t h = {.pcrc = hop_crc32c(0, out + REC_HEADER, (size_t)len),
                          .len = (uint32_t)len,
                          .orig = self->head_off,
                          .type = type,
                          .key = key};
    if (target) {
        h.flags = REC_KILL;
        h.tsize = kills_size;
        h.tseg = HOP_STORE_POS_SEG(kills);
        h.torig = HOP_STORE_POS_OFF(kills);
    }
    hop_store_put_rhdr(out, &h);

    hop_store_pos_t pos = HOP_STORE_POS(self->head_seg, self->head_off);
    chunk->used += size;
    self->head_off += size;
    hop_store_seg_t *head = self->segs[self->nsegs - 1];
    assert(head->id == self->head_seg);
    head->size = head->end = self->head_off;
    self->appended_bytes += size;
    self->appended++;
    if (target) {
        hop_store_seg_kill(target, HOP_STORE_POS_OFF(kills), kills_size);
        hop_store_seg_add_tomb(head, target->id, size, target->compacting);
        self->maint_due = true;
    }
    if (pos_p)
        *pos_p = pos;
    return 0;
}

int
hop_store_append(hop_store_t *self, uint8_t type, uint64_t key, const void *payload, size_t len,
                 hop_store_pos_t *pos_p)
{
    struct iovec iov = {.iov_base = (void *)payload, .iov_len = len};
    return hop_store_appendv(self, type, key, &iov, len ? 1 : 0, HOP_STORE_NOPOS, 0, pos_p);
}

int
hop_store_commit(hop_store_t *self)
{
    assert(self);
    if (atomic_load(&self->failed))
        return HOP_STORE_EIO;
    hop_store_chunk_t *chunk = self->cur;
    if (chunk && atomic_load_explicit(&chunk->committed, memory_order_relaxed) != chunk->used) {
        atomic_store_explicit(&chunk->committed, chunk->used, memory_order_release);
        pthread_mutex_lock(&self->mu);
        self->work = true;
        pthread_cond_signal(&self->writer_cv);
        pthread_mutex_unlock(&self->mu);
    }
    return 0;
}

void
hop_store_release(hop_store_t *self, hop_store_pos_t pos, uint32_t size)
{
    assert(self);
    hop_store_seg_t *seg = hop_store_seg_find(self, HOP_STORE_POS_SEG(pos));
    if (!seg || size < REC_HEADER || !hop_store_seg_kill(seg, HOP_STORE_POS_OFF(pos), size)) {
        // A caller's bookkeeping mistake. Not an assert: a broker must not crash-loop on its
        // own log at every start; the only cost is space reclaimed late or early.
        if (!self->warned_release)
            hop_log(HOP_ERROR, "store",
                    "release of %u:%u (%u bytes): not a live record; further ones not logged",
                    HOP_STORE_POS_SEG(pos), HOP_STORE_POS_OFF(pos), size);
        self->warned_release = true;
        return;
    }
    self->maint_due = true;
}

// Reading ----------------------------------------------------------------------------------

static int64_t
s_check(const uint8_t *hdr, const void *payload, uint32_t off, uint32_t len)
{
    hop_store_rhdr_t h;
    if (!hop_store_get_rhdr(hdr, &h) || h.len != len || h.orig != off ||
        h.pcrc != hop_crc32c(0, payload, len))
        return HOP_STORE_ECORRUPT;
    return len;
}

// Copies a record that is still in a chunk; false when the writer has written it meanwhile.
static bool
s_read_chunk(hop_store_t *self, uint32_t seg, uint32_t off, uint8_t *hdr, void *buf, uint32_t len)
{
    bool found = false;
    pthread_mutex_lock(&self->mu);
    for (hop_store_chunk_t *c = self->q_head; c; c = c->next) {
        if (c->seg == seg && off >= c->start && off + REC_HEADER + len <= c->start + c->used) {
            memcpy(hdr, c->data + (off - c->start), REC_HEADER);
            memcpy(buf, c->data + (off - c->start) + REC_HEADER, len);
            found = true;
            break;
        }
    }
    pthread_mutex_unlock(&self->mu);
    return found;
}

// Reads len bytes at off; 0, or -1 with errno set (0 when the file ends first).
static int
s_pread_all(int fd, void *buf, size_t len, uint64_t off)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = pread(fd, (uint8_t *)buf + done, len - done, (off_t)(off + done));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            if (n == 0)
                errno = 0;
            return -1;
        }
        done += (size_t)n;
    }
    return 0;
}

#define RA_SIZE (128u << 10) // read-ahead window: about a thousand 100-byte messages

// Copies a small record [phys, phys + REC_HEADER + len) of seg from the read-ahead window,
// reading the window at phys first when it does not hold it. False when the record is too
// large for the window or the file ends before it (the caller reads it itself).
static bool
s_read_ahead(hop_store_t *self, const hop_store_seg_t *seg, uint64_t phys, uint8_t *hdr, void *buf,
             uint32_t len)
{
    uint64_t size = (uint64_t)REC_HEADER + len;
    if (size > RA_SIZE / 4)
        return false;
    bool hit = self->ra_seg == seg->id && self->ra_gen == seg->gen && phys >= self->ra_phys &&
               phys + size <= self->ra_phys + self->ra_len;
    if (!hit) {
        if (!self->ra_buf)
            self->ra_buf = hop_malloc(RA_SIZE);
        // Only what the writer has finished: the window must not keep half a record that is
        // being written at the end of the active segment.
        hop_store_pos_t written = atomic_load(&self->written);
        ssize_t n = pread(seg->fd, self->ra_buf, RA_SIZE, (off_t)phys);
        self->ra_seg = 0;
        if (seg->gen == 0 && HOP_STORE_POS_SEG(written) == seg->id && n > 0)
            n = HOP_STORE_POS_OFF(written) > phys
                    ? (ssize_t)(HOP_STORE_POS_OFF(written) - phys < (uint64_t)n
                                    ? HOP_STORE_POS_OFF(written) - phys
                                    : (uint64_t)n)
                    : 0;
        if (n < (ssize_t)size)
            return false;
        self->ra_seg = seg->id;
        self->ra_gen = seg->gen;
        self->ra_phys = phys;
        self->ra_len = (uint32_t)n;
    }
    const uint8_t *at = self->ra_buf + (phys - self->ra_phys);
    memcpy(hdr, at, REC_HEADER);
    memcpy(buf, at + REC_HEADER, len);
    return true;
}

int64_t
hop_store_read(hop_store_t *self, hop_store_pos_t pos, uint32_t size, void *buf, size_t cap)
{
    assert(self);
    if (size < REC_HEADER || cap < size - REC_HEADER || (size - REC_HEADER && !buf))
        return HOP_STORE_EINVAL;
    uint32_t len = size - REC_HEADER, off = HOP_STORE_POS_OFF(pos);
    hop_store_seg_t *seg = hop_store_seg_find(self, HOP_STORE_POS_SEG(pos));
    if (!seg || hop_store_seg_dead(seg, off) != 0)
        return HOP_STORE_ENOTFOUND;
    uint8_t hdr[REC_HEADER];
    uint32_t phys = off;
    if (seg->gen > 0) {
        phys = seg->phys[hop_store_seg_index(seg->orig, seg->count, off)];
    } else if (!HOP_STORE_COVERS(atomic_load(&self->written), pos, size)) {
        if (s_read_chunk(self, seg->id, off, hdr, buf, len))
            return s_check(hdr, buf, off, len);
    }
    if (seg->fd < 0) {
        char *path = hop_store_seg_path(self, seg->id, "log");
        seg->fd = open(path, O_RDONLY | O_CLOEXEC);
        free(path);
        if (seg->fd < 0)
            return HOP_STORE_EIO;
    }
    if (s_read_ahead(self, seg, phys, hdr, buf, len))
        return s_check(hdr, buf, off, len);
    struct iovec iov[2] = {{hdr, REC_HEADER}, {buf, len}};
    if (preadv(seg->fd, iov, 2, (off_t)phys) != (ssize_t)size) {
        // Short or interrupted: once more, piece by piece, to tell a short file from an error.
        if (s_pread_all(seg->fd, hdr, REC_HEADER, phys) < 0 ||
            s_pread_all(seg->fd, buf, len, phys + REC_HEADER) < 0)
            return errno == 0 ? HOP_STORE_ECORRUPT : HOP_STORE_EIO;
    }
    return s_check(hdr, buf, off, len);
}

// Progress and maintenance -----------------------------------------------------------------

int
hop_store_fd(const hop_store_t *self)
{
    assert(self);
    return self->pipe_r;
}

hop_store_pos_t
hop_store_durable(const hop_store_t *self)
{
    assert(self);
    return self->opt.fsync == HOP_FSYNC_ALWAYS ? atomic_load(&self->synced)
                                               : atomic_load(&self->written);
}

int
hop_store_error(const hop_store_t *self)
{
    assert(self);
    return atomic_load(&self->error);
}

int
hop_store_poll(hop_store_t *self)
{
    assert(self);
    assert(self->replayed);
    atomic_store(&self->signaled, false);
    char buf[64];
    while (read(self->pipe_r, buf, sizeof buf) > 0) {
    }
    pthread_mutex_lock(&self->mu);
    hop_store_job_t *done = self->done;
    self->done = self->done_tail = NULL;
    pthread_mutex_unlock(&self->mu);
    while (done) {
        hop_store_job_t *job = done;
        done = job->next;
        self->jobs_out--;
        if (job->kind == JOB_COMPACT)
            hop_store_install(self, job);
        hop_store_job_destroy(&job);
    }
    uint32_t written_seg = HOP_STORE_POS_SEG(atomic_load(&self->written));
    if (written_seg != self->written_seg) {
        self->written_seg = written_seg; // the segments before it are complete files now
        self->maint_due = true;
    }
    if (self->maint_due)
        hop_store_maintain(self);
    return atomic_load(&self->error);
}

void
hop_store_stats(const hop_store_t *self, hop_store_stats_t *stats)
{
    assert(self);
    assert(stats);
    memset(stats, 0, sizeof *stats);
    stats->disk_bytes = atomic_load(&self->file_bytes);
    for (uint32_t i = 0; i < self->nsegs; i++) {
        const hop_store_seg_t *seg = self->segs[i];
        uint64_t bytes = seg->size - SEG_HEADER, dead = hop_store_seg_reclaimable(seg);
        stats->live_bytes += dead < bytes ? bytes - dead : 0;
    }
    stats->segments = self->nsegs;
    stats->pending_bytes = self->appended_bytes - atomic_load(&self->written_bytes);
    stats->head = HOP_STORE_POS(self->head_seg, self->head_off);
    stats->written = atomic_load(&self->written);
    stats->synced = atomic_load(&self->synced);
    stats->durable = hop_store_durable(self);
    stats->appended = self->appended;
    stats->fsyncs = atomic_load(&self->fsyncs);
    stats->last_fsync_us = atomic_load(&self->last_fsync_us);
    stats->max_fsync_us = atomic_load(&self->max_fsync_us);
    stats->compactions = self->compactions;
    stats->deletions = self->deletions;
    stats->reclaimed_bytes = self->reclaimed;
    stats->jobs = self->jobs_out;
    stats->error = atomic_load(&self->error);
}

void
hop_store_fsync_histogram(const hop_store_t *self, hop_histogram_snapshot_t *snap)
{
    assert(self);
    hop_histogram_read(&self->fsync_us, &hop_histogram_fsync_us, snap);
}

void
hop_store_set_faults(hop_store_t *self, const hop_store_faults_t *faults)
{
    assert(self);
    assert(faults);
    atomic_store(&self->disk_limit, faults->disk_limit);
    atomic_store(&self->fsync_failures, faults->fsync_failures);
    pthread_mutex_lock(&self->mu);
    self->kick = true;
    pthread_cond_signal(&self->writer_cv);
    pthread_mutex_unlock(&self->mu);
}
