// bus/store_janitor.c - reclaiming space. On the reactor: finding segments that are all dead
// (deleted) or mostly dead (compacted), handing them to the janitor thread, and installing what
// it did. On the janitor thread: unlinking and compacting.
//
// Compaction rewrites a segment in place: its live records, byte for byte and in the same
// order, go to NNNNNNNN.compact, which is fsynced and renamed over the segment. Keeping the
// order (rather than copying live records to the head of the log) is what keeps replay right:
// a record never moves past another that supersedes or kills it. Records keep their original
// offset in their header, so positions stay valid; the reactor installs the new offset table.
//
// A tombstone is copied while the record it killed is still on disk: in this segment (then it
// was dead at the snapshot and is dropped now, and so is the tombstone) or in another one
// (present unless that one was deleted, or compacted since the tombstone was written).
#include "store_internal.h"
#include "util.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define OUT_BUF (1u << 20)

// Janitor thread: the jobs ------------------------------------------------------------------

static void
s_unlink(hop_store_t *self, hop_store_job_t *job)
{
    char *path = hop_store_seg_path(self, job->seg, "log");
    if (unlink(path) == 0) {
        atomic_fetch_sub(&self->file_bytes, job->size);
        // Durable before any tombstone that targeted it is dropped by a later job.
        if (self->opt.fsync != HOP_FSYNC_NEVER)
            hop_store_sync_fd(self, self->dir_fd, true, NULL);
    } else if (errno != ENOENT) {
        hop_log(HOP_WARN, "store", "cannot delete %s: %s", path, strerror(errno));
    }
    free(path);
}

static bool
s_snap_dead(const hop_store_job_t *job, int64_t bit)
{
    return bit >= 0 && (uint64_t)bit < job->nbits && (job->bits[bit / 64] >> (bit % 64)) & 1;
}

// Is the record a tombstone h kills still on disk after this compaction?
static bool
s_target_kept(const hop_store_job_t *job, const hop_store_rhdr_t *h)
{
    if (h->tseg == job->seg) {
        int64_t bit;
        if (job->gen == 0)
            bit = h->torig >= SEG_HEADER && h->torig < job->end ? (int64_t)(h->torig >> BIT_SHIFT)
                                                                : -1;
        else
            bit = hop_store_seg_index(job->orig, job->count, h->torig);
        return bit >= 0 && !s_snap_dead(job, bit);
    }
    uint32_t lo = 0, hi = job->nothers;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (job->others[mid].id < h->tseg)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == job->nothers || job->others[lo].id != h->tseg)
        return false; // deleted
    const hop_store_segref_t *ref = &job->others[lo];
    return ref->gen == 0 || hop_store_seg_index(ref->orig, ref->count, h->torig) >= 0;
}

typedef struct {
    hop_store_t *store;
    int fd;
    uint64_t size; // file size
    uint8_t *buf;
    size_t used;
    uint64_t off; // file offset of buf[0]
} s_out_t;

static int
s_flush(s_out_t *out)
{
    if (!out->used)
        return 0;
    int rc = hop_store_write_at(out->store, out->fd, out->buf, out->used, out->off, &out->size);
    out->off += out->used;
    out->used = 0;
    return rc;
}

static int
s_put(s_out_t *out, const uint8_t *data, size_t len)
{
    if (out->used + len > OUT_BUF) {
        int rc = s_flush(out);
        if (rc)
            return rc;
    }
    if (len > OUT_BUF) {
        int rc = hop_store_write_at(out->store, out->fd, data, len, out->off, &out->size);
        out->off += len;
        return rc;
    }
    memcpy(out->buf + out->used, data, len);
    out->used += len;
    return 0;
}

// Copies the live records of job->seg into tmp. Fills the result into `result` (a scratch
// segment: its orig/phys table and tombstone groups). Returns 0 or an error.
static int
s_copy(hop_store_t *self, hop_store_job_t *job, int in_fd, s_out_t *out, hop_store_seg_t *result)
{
    uint8_t hdr[SEG_HEADER];
    hop_store_put_shdr(hdr, job->seg, job->gen + 1);
    int rc = s_put(out, hdr, SEG_HEADER);
    hop_store_reader_t reader;
    hop_store_reader_init(&reader, in_fd, job->end);
    uint64_t p = SEG_HEADER;
    uint32_t index = 0;
    while (rc == 0 && p < job->end) {
        if (atomic_load(&self->stopping)) {
            rc = HOP_STORE_EIO;
            break;
        }
        const uint8_t *bytes = hop_store_reader_get(&reader, p, REC_HEADER, &rc);
        hop_store_rhdr_t h;
        if (!bytes || !hop_store_get_rhdr(bytes, &h) || p + REC_HEADER + h.len > job->end ||
            (job->gen == 0 ? h.orig != p : index >= job->count || job->orig[index] != h.orig)) {
            rc = rc ? rc : HOP_STORE_ECORRUPT; // it parsed at replay: the file changed since
            break;
        }
        uint32_t size = REC_HEADER + h.len;
        int64_t bit = job->gen == 0 ? (int64_t)(p >> BIT_SHIFT) : (int64_t)index;
        bool keep = !s_snap_dead(job, bit) && (!(h.flags & REC_KILL) || s_target_kept(job, &h));
        if (keep) {
            bytes = hop_store_reader_get(&reader, p, size, &rc);
            if (!bytes) {
                rc = rc ? rc : HOP_STORE_ECORRUPT;
                break;
            }
            hop_store_seg_add_record(result, h.orig, (uint32_t)(out->off + out->used));
            if (h.flags & REC_KILL)
                hop_store_seg_add_tomb(result, h.tseg, size, false);
            rc = s_put(out, bytes, size);
        }
        p += size;
        index++;
    }
    hop_store_reader_fini(&reader);
    if (rc == 0)
        rc = s_flush(out);
    return rc;
}

static void
s_compact(hop_store_t *self, hop_store_job_t *job)
{
    char *path = hop_store_seg_path(self, job->seg, "log");
    char *tmp = hop_store_seg_path(self, job->seg, "compact");
    hop_store_seg_t *result = hop_store_seg_new(job->seg, job->gen + 1);
    s_out_t out = {.store = self, .fd = -1};
    int in_fd = open(path, O_RDONLY | O_CLOEXEC);
    int rc = in_fd < 0 ? hop_store_errno_rc(errno) : 0;
    if (rc == 0) {
        out.fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        rc = out.fd < 0 ? hop_store_errno_rc(errno) : 0;
    }
    if (rc == 0) {
        out.buf = hop_malloc(OUT_BUF);
        rc = s_copy(self, job, in_fd, &out, result);
    }
    // The new file must be on disk before its name replaces the old one, whatever the
    // policy: it holds old, confirmed records.
    if (rc == 0)
        rc = hop_store_sync_fd(self, out.fd, false, NULL);
    if (rc == 0 && rename(tmp, path) < 0)
        rc = hop_store_errno_rc(errno);
    if (rc == 0) {
        hop_store_sync_fd(self, self->dir_fd, true, NULL);
        atomic_fetch_sub(&self->file_bytes, job->size);
        job->new_fd = open(path, O_RDONLY | O_CLOEXEC);
        if (job->new_fd < 0)
            hop_log(HOP_WARN, "store", "cannot reopen %s: %s", path, strerror(errno));
        job->new_size = out.size;
        job->new_count = result->count;
        job->new_orig = result->orig;
        job->new_phys = result->phys;
        job->new_tombs = result->tombs;
        job->new_ntombs = result->ntombs;
        result->orig = result->phys = NULL;
        result->tombs = NULL;
    } else if (out.fd >= 0) {
        unlink(tmp);
        atomic_fetch_sub(&self->file_bytes, out.size);
    }
    job->rc = rc;
    if (in_fd >= 0)
        close(in_fd);
    if (out.fd >= 0)
        close(out.fd);
    free(out.buf);
    hop_store_seg_destroy(&result);
    free(path);
    free(tmp);
}

// Reactor side: scheduling jobs and taking their results -------------------------------------

void
hop_store_job_destroy(hop_store_job_t **job_p)
{
    hop_store_job_t *job = *job_p;
    if (!job)
        return;
    free(job->bits);
    free(job->others);
    free(job->new_orig);
    free(job->new_phys);
    free(job->new_tombs);
    if (job->new_fd >= 0)
        close(job->new_fd);
    free(job);
    *job_p = NULL;
}

static void
s_job_queue(hop_store_t *self, hop_store_job_t *job)
{
    self->jobs_out++;
    pthread_mutex_lock(&self->mu);
    if (self->jobs_tail)
        self->jobs_tail->next = job;
    else
        self->jobs = job;
    self->jobs_tail = job;
    pthread_cond_signal(&self->janitor_cv);
    pthread_mutex_unlock(&self->mu);
}

// Tombstones elsewhere that target seg die (died) or survive into its next generation.
static void
s_tombs_settle(hop_store_t *self, uint32_t target, bool died)
{
    for (uint32_t i = 0; i < self->nsegs; i++) {
        hop_store_seg_t *s = self->segs[i];
        for (uint32_t k = 0; k < s->ntombs; k++) {
            hop_store_tomb_t *t = &s->tombs[k];
            if (t->target != target)
                continue;
            if (died) {
                s->dead += t->bytes;
                t->bytes = t->pending;
            } else {
                t->bytes += t->pending;
            }
            t->pending = 0;
            if (t->bytes == 0)
                *t-- = s->tombs[--s->ntombs];
        }
    }
}

// Forgets segment i (all dead) and has the janitor unlink its file.
static void
s_delete(hop_store_t *self, uint32_t i)
{
    hop_store_seg_t *seg = self->segs[i];
    memmove(&self->segs[i], &self->segs[i + 1], (self->nsegs - i - 1) * sizeof *self->segs);
    self->nsegs--;
    s_tombs_settle(self, seg->id, true); // nothing is pending: no compaction is out
    hop_store_job_t *job = hop_calloc(1, sizeof *job);
    job->kind = JOB_UNLINK;
    job->seg = seg->id;
    job->size = seg->size;
    job->new_fd = -1;
    self->deletions++;
    self->reclaimed += seg->size;
    hop_log(HOP_DEBUG, "store", "segment %08u: all dead, deleting (%llu bytes)", seg->id,
            (unsigned long long)seg->size);
    hop_store_seg_destroy(&seg);
    s_job_queue(self, job);
}

static void
s_compact_start(hop_store_t *self, hop_store_seg_t *seg)
{
    hop_store_job_t *job = hop_calloc(1, sizeof *job);
    job->kind = JOB_COMPACT;
    job->seg = seg->id;
    job->gen = seg->gen;
    job->size = seg->size;
    job->end = seg->end;
    job->new_fd = -1;
    if (seg->nbits) {
        job->bits = hop_malloc(seg->nbits / 8);
        memcpy(job->bits, seg->bits, seg->nbits / 8);
        job->nbits = seg->nbits;
    }
    job->orig = seg->orig;
    job->phys = seg->phys;
    job->count = seg->count;
    job->others = hop_calloc(self->nsegs, sizeof *job->others);
    for (uint32_t i = 0; i < self->nsegs; i++) {
        hop_store_seg_t *s = self->segs[i];
        if (s == seg)
            continue;
        job->others[job->nothers++] =
            (hop_store_segref_t){.id = s->id, .gen = s->gen, .orig = s->orig, .count = s->count};
    }
    seg->compacting = true;
    self->compacting = true;
    hop_log(HOP_DEBUG, "store", "segment %08u: %llu of %llu bytes dead, compacting", seg->id,
            (unsigned long long)seg->dead, (unsigned long long)(seg->size - SEG_HEADER));
    s_job_queue(self, job);
}

// Installs a finished compaction: the new generation's table, with the records that died
// while the janitor copied them marked dead again.
void
hop_store_install(hop_store_t *self, hop_store_job_t *job)
{
    hop_store_seg_t *seg = hop_store_seg_find(self, job->seg);
    assert(seg && seg->compacting);
    seg->compacting = false;
    self->compacting = false;
    self->maint_due = true;
    s_tombs_settle(self, seg->id, job->rc == 0);
    if (job->rc != 0) {
        hop_log(HOP_WARN, "store", "segment %08u: compaction failed: %s%s", seg->id,
                hop_store_strerror(job->rc), job->rc == HOP_STORE_ECORRUPT ? " (not retried)" : "");
        seg->bad = job->rc == HOP_STORE_ECORRUPT;
        return;
    }
    uint32_t n = job->new_count;
    uint32_t nbits = (n + 63) / 64 * 64;
    uint64_t *bits = nbits ? hop_calloc(nbits / 64, sizeof *bits) : NULL;
    uint64_t dead = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (hop_store_seg_dead(seg, job->new_orig[i]) != 1)
            continue;
        bits[i / 64] |= (uint64_t)1 << (i % 64);
        dead += (i + 1 < n ? job->new_phys[i + 1] : job->new_size) - job->new_phys[i];
    }
    self->reclaimed += seg->size - job->new_size;
    self->compactions++;
    hop_log(HOP_DEBUG, "store", "segment %08u: compacted to generation %u, %llu -> %llu bytes",
            seg->id, job->gen + 1, (unsigned long long)seg->size,
            (unsigned long long)job->new_size);
    free(seg->bits);
    free(seg->orig);
    free(seg->phys);
    free(seg->tombs);
    seg->bits = bits;
    seg->nbits = nbits;
    seg->orig = job->new_orig;
    seg->phys = job->new_phys;
    seg->count = seg->cap = n;
    seg->tombs = job->new_tombs;
    seg->ntombs = seg->tombs_cap = job->new_ntombs;
    job->new_orig = job->new_phys = NULL;
    job->new_tombs = NULL;
    seg->gen = job->gen + 1;
    seg->size = seg->end = job->new_size;
    seg->dead = dead;
    if (seg->fd >= 0)
        close(seg->fd);
    seg->fd = job->new_fd;
    job->new_fd = -1;
}

// A segment the janitor may touch: not the active one, and entirely written.
static bool
s_settled(const hop_store_t *self, const hop_store_seg_t *seg, uint32_t written_seg)
{
    return seg->id != self->head_seg && seg->id < written_seg && !seg->compacting;
}

void
hop_store_maintain(hop_store_t *self)
{
    self->maint_due = false;
    if (self->compacting)
        return; // the job reads other segments' tables: nothing goes until it is back
    uint32_t written_seg = HOP_STORE_POS_SEG(atomic_load(&self->written));
    for (uint32_t i = 0; i < self->nsegs;) {
        hop_store_seg_t *seg = self->segs[i];
        if (s_settled(self, seg, written_seg) &&
            hop_store_seg_reclaimable(seg) >= seg->size - SEG_HEADER) {
            s_delete(self, i);
            i = 0; // tombstones elsewhere may have died with it
            continue;
        }
        i++;
    }
    if (self->opt.compact_percent > 100)
        return;
    hop_store_seg_t *best = NULL;
    for (uint32_t i = 0; i < self->nsegs; i++) {
        hop_store_seg_t *seg = self->segs[i];
        if (!s_settled(self, seg, written_seg) || seg->bad)
            continue;
        uint64_t bytes = seg->size - SEG_HEADER, dead = hop_store_seg_reclaimable(seg);
        if (bytes && dead * 100 >= bytes * self->opt.compact_percent &&
            (!best || dead > hop_store_seg_reclaimable(best)))
            best = seg;
    }
    if (best)
        s_compact_start(self, best);
}

// The thread ---------------------------------------------------------------------------------

void *
hop_store_janitor_main(void *arg)
{
    hop_store_t *self = arg;
    pthread_mutex_lock(&self->mu);
    for (;;) {
        while (!self->stop && !self->jobs)
            pthread_cond_wait(&self->janitor_cv, &self->mu);
        hop_store_job_t *job = self->jobs;
        if (!job)
            break; // stopping, and nothing left
        self->jobs = job->next;
        if (!self->jobs)
            self->jobs_tail = NULL;
        job->next = NULL;
        pthread_mutex_unlock(&self->mu);
        if (job->kind == JOB_UNLINK)
            s_unlink(self, job); // even when stopping: cheap, and the space comes back
        else if (atomic_load(&self->stopping))
            job->rc = HOP_STORE_EIO;
        else
            s_compact(self, job);
        pthread_mutex_lock(&self->mu);
        if (self->done_tail)
            self->done_tail->next = job;
        else
            self->done = job;
        self->done_tail = job;
        hop_store_notify(self);
    }
    pthread_mutex_unlock(&self->mu);
    return NULL;
}
