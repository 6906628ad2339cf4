// bus/store_writer.c - the writer thread: writes committed chunks in log order and fsyncs them
// as the policy says. Group commit falls out of the loop: while one fsync runs, the reactor
// keeps committing, and the next round writes all of that and covers it with one fsync.
//
// Failures. A write that fails (a full disk, an I/O error) is cut back to the last whole chunk
// written, so no partial record stays in the file, and retried every RETRY_MS until it goes
// through: positions already handed out stay valid and the log keeps its order. An fsync that
// fails is different: Linux may have dropped the dirty pages it could not write and a second
// fsync would "succeed" without them, so the store stops writing for good (HOP_STORE_EIO) and
// the operator restarts it; replay then keeps what the checksums prove is on disk.
#include "store_internal.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    int fd;             // segment file being written, or -1
    uint32_t seg;       // its id
    uint64_t size;      // its size
    bool dirty;         // written since its last fsync
    bool stalled;       // the last write failed; retry at retry_at
    uint64_t retry_at;  // monotonic us
    uint64_t last_sync; // monotonic us of the last fsync
} s_writer_t;

static void
s_wait(hop_store_t *self, uint64_t deadline_us)
{
    if (deadline_us == UINT64_MAX) {
        pthread_cond_wait(&self->writer_cv, &self->mu);
        return;
    }
    struct timespec ts = {.tv_sec = (time_t)(deadline_us / 1000000),
                          .tv_nsec = (long)(deadline_us % 1000000) * 1000};
    pthread_cond_timedwait(&self->writer_cv, &self->mu, &ts);
}

// An fsync failed: nothing more is written (see the top of the file).
static void
s_fatal(hop_store_t *self, uint32_t seg, int rc)
{
    hop_log(HOP_ERROR, "store",
            "fsync of segment %08u failed (%s): the store stops writing; check the disk and "
            "restart hopperd, which keeps every record the checksums prove intact",
            seg, hop_store_strerror(rc));
    atomic_store(&self->failed, true);
    atomic_store(&self->error, HOP_STORE_EIO);
    hop_store_notify(self);
}

// fsyncs the segment being written; publishes the synced position.
static int
s_sync(hop_store_t *self, s_writer_t *w)
{
    uint64_t target = atomic_load(&self->written);
    uint64_t us = 0;
    int rc = hop_store_sync_fd(self, w->fd, false, &us);
    if (rc) {
        s_fatal(self, w->seg, rc);
        return rc;
    }
    w->dirty = false;
    w->last_sync = hop_now_us();
    atomic_store(&self->last_fsync_us, us);
    if (us > atomic_load(&self->max_fsync_us))
        atomic_store(&self->max_fsync_us, us);
    hop_histogram_record(&self->fsync_us, &hop_histogram_fsync_us, us);
    atomic_store(&self->synced, target);
    return 0;
}

// Makes w->fd the file of segment seg, creating it when the chunk is its first.
static int
s_open(hop_store_t *self, s_writer_t *w, const hop_store_chunk_t *chunk)
{
    if (w->fd >= 0 && w->seg == chunk->seg)
        return 0;
    if (w->fd >= 0) {
        // The finished segment is fsynced before any later record can be reported synced.
        if (w->dirty && self->opt.fsync != HOP_FSYNC_NEVER && s_sync(self, w))
            return HOP_STORE_EIO;
        close(w->fd);
        w->fd = -1;
    }
    bool create = chunk->start == SEG_HEADER && chunk->written == 0;
    char *path = hop_store_seg_path(self, chunk->seg, "log");
    int fd = open(path, O_WRONLY | O_CLOEXEC | (create ? O_CREAT | O_TRUNC : 0), 0644);
    free(path);
    if (fd < 0)
        return hop_store_errno_rc(errno);
    struct stat st;
    if (fstat(fd, &st) < 0) {
        close(fd);
        return HOP_STORE_EIO;
    }
    w->size = (uint64_t)st.st_size;
    if (create) {
        uint8_t hdr[SEG_HEADER];
        hop_store_put_shdr(hdr, chunk->seg, 0);
        int rc = hop_store_write_at(self, fd, hdr, SEG_HEADER, 0, &w->size);
        if (rc == 0 && self->opt.fsync != HOP_FSYNC_NEVER) {
            // The new name must be durable before records in the file are reported synced.
            rc = hop_store_sync_fd(self, self->dir_fd, true, NULL);
            if (rc) {
                close(fd);
                s_fatal(self, chunk->seg, rc);
                return HOP_STORE_EIO;
            }
        }
        if (rc) {
            close(fd);
            return rc;
        }
    }
    w->fd = fd;
    w->seg = chunk->seg;
    return 0;
}

// Writes chunk bytes [written, to). On failure the file is cut back to chunk->written.
static int
s_write(hop_store_t *self, s_writer_t *w, hop_store_chunk_t *chunk, uint32_t to)
{
    int rc = s_open(self, w, chunk);
    if (rc)
        return rc;
    uint64_t at = (uint64_t)chunk->start + chunk->written;
    rc = hop_store_write_at(self, w->fd, chunk->data + chunk->written, to - chunk->written, at,
                            &w->size);
    if (rc) {
        if (w->size > at) {
            if (ftruncate(w->fd, (off_t)at) == 0) {
                atomic_fetch_sub(&self->file_bytes, w->size - at);
                w->size = at;
            } // else the retry overwrites the partial bytes, and checksums guard a crash
        }
        return rc;
    }
    atomic_fetch_add(&self->written_bytes, to - chunk->written);
    chunk->written = to;
    atomic_store(&self->written, HOP_STORE_POS(chunk->seg, chunk->start + to));
    w->dirty = true;
    return 0;
}

// Takes a written chunk off the queue into the pool (or frees it). Under mu.
static void
s_recycle(hop_store_t *self, hop_store_chunk_t *chunk)
{
    self->q_head = chunk->next;
    if (!self->q_head)
        self->q_tail = NULL;
    if (chunk->cap == CHUNK_SIZE && self->npool < POOL_MAX) {
        chunk->next = self->pool;
        self->pool = chunk;
        self->npool++;
    } else {
        free(chunk);
    }
}

// One round: writes what was committed in the chunks queued when it started. Returns 0 or the
// error of a failed write. Called without mu.
static int
s_round(hop_store_t *self, s_writer_t *w, hop_store_chunk_t *chunk, hop_store_chunk_t *last)
{
    while (chunk) {
        uint32_t to = atomic_load_explicit(&chunk->committed, memory_order_acquire);
        if (to > chunk->written) {
            int rc = s_write(self, w, chunk, to);
            if (rc)
                return rc;
        }
        pthread_mutex_lock(&self->mu);
        hop_store_chunk_t *next = chunk == last ? NULL : chunk->next;
        if (chunk->sealed && chunk->written == atomic_load(&chunk->committed))
            s_recycle(self, chunk); // chunks finish in order: it is the queue's head
        pthread_mutex_unlock(&self->mu);
        chunk = next;
    }
    return 0;
}

void *
hop_store_writer_main(void *arg)
{
    hop_store_t *self = arg;
    const hop_fsync_t policy = self->opt.fsync;
    const uint64_t every = (uint64_t)self->opt.fsync_ms * 1000;
    s_writer_t w = {.fd = -1, .last_sync = hop_now_us()};
    pthread_mutex_lock(&self->mu);
    for (;;) {
        for (;;) {
            if (atomic_load(&self->failed)) {
                if (self->stop)
                    goto out;
                s_wait(self, UINT64_MAX);
                continue;
            }
            uint64_t now = hop_now_us();
            bool write = w.stalled ? self->kick || now >= w.retry_at || self->stop : self->work;
            bool sync = w.dirty && policy == HOP_FSYNC_EVERY && now >= w.last_sync + every;
            if (write || sync || self->stop)
                break;
            uint64_t deadline = w.stalled ? w.retry_at : UINT64_MAX;
            if (w.dirty && policy == HOP_FSYNC_EVERY && w.last_sync + every < deadline)
                deadline = w.last_sync + every;
            s_wait(self, deadline);
        }
        bool stopping = self->stop;
        self->work = self->kick = false;
        hop_store_chunk_t *first = self->q_head, *last = self->q_tail;
        pthread_mutex_unlock(&self->mu);

        uint64_t before = atomic_load(&self->written);
        int rc = s_round(self, &w, first, last);
        if (rc && !atomic_load(&self->failed)) {
            if (!w.stalled)
                hop_log(HOP_ERROR, "store",
                        "writing to segment %08u failed (%s): persistent publishes are refused "
                        "and writes retried every %d ms until it succeeds",
                        w.seg, hop_store_strerror(rc), RETRY_MS);
            w.stalled = true;
            w.retry_at = hop_now_us() + RETRY_MS * 1000;
            atomic_store(&self->error, rc);
            hop_store_notify(self);
        } else if (!rc && w.stalled) {
            hop_log(HOP_INFO, "store", "writes to segment %08u go through again", w.seg);
            w.stalled = false;
            atomic_store(&self->error, 0);
            hop_store_notify(self);
        }
        uint64_t now = hop_now_us();
        if (w.dirty && !atomic_load(&self->failed) &&
            (policy == HOP_FSYNC_ALWAYS ||
             (policy == HOP_FSYNC_EVERY && (stopping || now >= w.last_sync + every)))) {
            if (s_sync(self, &w) == 0 && policy == HOP_FSYNC_ALWAYS)
                hop_store_notify(self);
        }
        if (policy != HOP_FSYNC_ALWAYS && atomic_load(&self->written) != before)
            hop_store_notify(self);

        pthread_mutex_lock(&self->mu);
        if (stopping && (!self->q_head || rc || atomic_load(&self->failed))) {
            if (self->q_head && !atomic_load(&self->failed))
                hop_log(HOP_ERROR, "store", "closing with unwritten records (%s): they are lost",
                        hop_store_strerror(rc));
            break;
        }
    }
out:
    pthread_mutex_unlock(&self->mu);
    if (w.fd >= 0)
        close(w.fd);
    return NULL;
}
