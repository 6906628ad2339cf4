// bus/store_replay.c - reading the log back at start-up.
//
// Segments are read in id order, records in file order, each checked against its header and
// payload checksums. What replay does with a bad record depends on where it is:
// - At the end of the last segment (a torn write after a crash, or garbage after the last good
//   record) the tail is cut: the file is truncated after the last good record and appends
//   continue there. Corrupt records followed by nothing good count as tail.
// - A record whose header is sound but whose payload fails its checksum, with good records
//   after it, is reported to the caller as corrupt (type, key and kill are trustworthy: the
//   header has its own checksum) and skipped.
// - A damaged header inside an older segment makes the rest of that segment unreadable: we
//   can not know where the next record starts, and scanning for something that looks like a
//   header could pick up a record-shaped message body. Those bytes count as dead and the
//   segment is logged as damaged; later segments are read as usual.
// - A segment whose own header is damaged is moved aside (NNNNNNNN.log.damaged) for the
//   operator, or removed when it is the last one (a crash just after creating it).
#define _DEFAULT_SOURCE // DT_* and dirent
#include "store_internal.h"
#include "util.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
    hop_store_t *store;
    hop_store_replay_fn *fn;
    void *arg;
    hop_store_replay_t *rep;
    hop_store_record_t *pending; // corrupt records not yet known to be inside the log
    uint32_t npending, pending_cap;
} s_replay_t;

static int
s_cmp_id(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

// Segment ids in the directory, sorted; removes leftovers of interrupted compactions.
static uint32_t *
s_list(hop_store_t *self, uint32_t *count_p, int *rc_p)
{
    *count_p = 0;
    DIR *dir = opendir(self->segdir);
    if (!dir) {
        *rc_p = HOP_STORE_EIO;
        return NULL;
    }
    uint32_t *ids = NULL, count = 0, cap = 0;
    struct dirent *ent;
    while ((ent = readdir(dir))) {
        const char *name = ent->d_name;
        size_t digits = strspn(name, "0123456789");
        if (digits < 8 || digits > 10)
            continue;
        unsigned long long id = strtoull(name, NULL, 10);
        if (id == 0 || id > UINT32_MAX)
            continue;
        if (strcmp(name + digits, ".compact") == 0) {
            char *path = hop_store_seg_path(self, (uint32_t)id, "compact");
            hop_log(HOP_INFO, "store", "removing %s, left by an interrupted compaction", path);
            unlink(path);
            free(path);
            continue;
        }
        if (strcmp(name + digits, ".log") != 0)
            continue;
        if (count == cap) {
            cap = cap ? cap * 2 : 64;
            ids = hop_realloc(ids, cap * sizeof *ids);
        }
        ids[count++] = (uint32_t)id;
    }
    closedir(dir);
    if (count)
        qsort(ids, count, sizeof *ids, s_cmp_id);
    *count_p = count;
    *rc_p = 0;
    return ids;
}

// Fields a sound header can hold, beyond its checksum.
static bool
s_sane(const hop_store_seg_t *seg, const hop_store_rhdr_t *h, uint64_t p, uint32_t prev_orig)
{
    if (h->type == 0 || h->len > REC_MAX || h->reserved || (h->flags & ~REC_KILL))
        return false;
    if (h->flags & REC_KILL) {
        if (!h->tseg || h->tseg > seg->id || h->tsize < REC_HEADER || h->torig < SEG_HEADER)
            return false;
    } else if (h->tseg || h->torig || h->tsize) {
        return false;
    }
    if (seg->gen == 0)
        return h->orig == p;
    return h->orig > prev_orig && h->orig >= p; // compaction only moves records back
}

static int
s_report(s_replay_t *r, const hop_store_record_t *rec)
{
    r->rep->records++;
    return r->fn ? r->fn(r->arg, rec) : 0;
}

// Reports the pending corrupt records of seg: they are inside the log, not its tail.
static int
s_flush_corrupt(s_replay_t *r, hop_store_seg_t *seg)
{
    int rc = 0;
    for (uint32_t i = 0; i < r->npending && rc == 0; i++) {
        hop_store_record_t *rec = &r->pending[i];
        hop_store_seg_kill(seg, HOP_STORE_POS_OFF(rec->pos), rec->size);
        r->rep->corrupt++;
        hop_log(HOP_ERROR, "store",
                "segment %08u offset %u: a record (type %u, key %llu, %u bytes) failed its "
                "checksum and was skipped",
                seg->id, HOP_STORE_POS_OFF(rec->pos), rec->type, (unsigned long long)rec->key,
                rec->size);
        rc = s_report(r, rec);
    }
    r->npending = 0;
    return rc;
}

// A sound tombstone: kill its target if it is still on disk, else it is dead itself.
static void
s_apply_kill(hop_store_t *self, hop_store_seg_t *seg, const hop_store_rhdr_t *h, uint32_t size)
{
    hop_store_seg_t *target = h->tseg == seg->id ? seg : hop_store_seg_find(self, h->tseg);
    if (target && hop_store_seg_has(target, h->torig)) {
        hop_store_seg_kill(target, h->torig, h->tsize);
        hop_store_seg_add_tomb(seg, target->id, size, false);
    } else {
        hop_store_seg_kill(seg, h->orig, size);
    }
}

// Cuts the last segment after its last good record.
static int
s_cut(s_replay_t *r, hop_store_seg_t *seg, int fd, uint64_t fsize, uint64_t good_end,
      const char *why)
{
    if (ftruncate(fd, (off_t)good_end) < 0) {
        hop_log(HOP_ERROR, "store", "segment %08u: cannot cut its tail: %s", seg->id,
                strerror(errno));
        return HOP_STORE_EIO;
    }
    hop_log(HOP_WARN, "store",
            "segment %08u: cut %llu bytes at offset %llu (%s): records after the last good "
            "one were never confirmed, or the disk damaged them",
            seg->id, (unsigned long long)(fsize - good_end), (unsigned long long)good_end, why);
    r->rep->cut_bytes += fsize - good_end;
    r->rep->cut_at = HOP_STORE_POS(seg->id, good_end);
    while (seg->count && seg->phys[seg->count - 1] >= good_end)
        seg->count--; // gen > 0: corrupt records that were added to the table
    seg->size = seg->end = good_end;
    r->npending = 0;
    return 0;
}

// Reads the records of an open segment. Returns 0, the callback's stop, or an I/O error.
static int
s_records(s_replay_t *r, hop_store_seg_t *seg, int fd, uint64_t fsize, bool last)
{
    hop_store_reader_t reader;
    hop_store_reader_init(&reader, fd, fsize);
    uint64_t p = SEG_HEADER, good_end = SEG_HEADER;
    uint32_t prev_orig = 0;
    const char *why = NULL;
    int rc = 0;
    while (p < fsize) {
        const uint8_t *bytes = hop_store_reader_get(&reader, p, REC_HEADER, &rc);
        hop_store_rhdr_t h;
        if (!bytes) {
            why = "torn record header";
            break;
        }
        if (!hop_store_get_rhdr(bytes, &h) || !s_sane(seg, &h, p, prev_orig)) {
            why = "damaged record header";
            break;
        }
        uint32_t size = REC_HEADER + h.len;
        bytes = p + size <= fsize ? hop_store_reader_get(&reader, p, size, &rc) : NULL;
        if (!bytes) {
            why = "torn record: the file ends inside it";
            break;
        }
        if (seg->gen > 0)
            hop_store_seg_add_record(seg, h.orig, (uint32_t)p);
        seg->end = p + size;
        hop_store_record_t rec = {
            .pos = HOP_STORE_POS(seg->id, h.orig),
            .size = size,
            .type = h.type,
            .key = h.key,
            .kills = h.flags & REC_KILL ? HOP_STORE_POS(h.tseg, h.torig) : HOP_STORE_NOPOS,
            .kills_size = h.tsize,
            .payload = bytes + REC_HEADER,
            .len = h.len,
        };
        if (h.pcrc != hop_crc32c(0, bytes + REC_HEADER, h.len)) {
            rec.payload = NULL;
            rec.corrupt = true;
            if (r->npending == r->pending_cap) {
                r->pending_cap = r->pending_cap ? r->pending_cap * 2 : 8;
                r->pending = hop_realloc(r->pending, r->pending_cap * sizeof *r->pending);
            }
            r->pending[r->npending++] = rec;
        } else {
            rc = s_flush_corrupt(r, seg);
            if (rc)
                break;
            if (h.flags & REC_KILL)
                s_apply_kill(r->store, seg, &h, size);
            rc = s_report(r, &rec);
            if (rc)
                break;
            good_end = p + size;
        }
        prev_orig = h.orig;
        p += size;
    }
    hop_store_reader_fini(&reader);
    if (rc)
        return rc;
    seg->size = fsize;
    if (last && (p < fsize || r->npending))
        return s_cut(r, seg, fd, fsize, good_end, why ? why : "record failed its checksum");
    rc = s_flush_corrupt(r, seg);
    if (p < fsize) {
        hop_log(HOP_ERROR, "store",
                "segment %08u is damaged at offset %llu (%s): the %llu bytes after it are "
                "unreadable and their records lost",
                seg->id, (unsigned long long)p, why, (unsigned long long)(fsize - p));
        r->rep->damaged++;
        r->rep->cut_bytes += fsize - p;
        seg->end = p;
        seg->dead += fsize - p;
    }
    return rc;
}

static int
s_segment(s_replay_t *r, uint32_t id, bool last)
{
    hop_store_t *self = r->store;
    char *path = hop_store_seg_path(self, id, "log");
    int fd = open(path, (last ? O_RDWR : O_RDONLY) | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) {
        hop_log(HOP_ERROR, "store", "cannot open %s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        free(path);
        return HOP_STORE_EIO;
    }
    uint64_t fsize = (uint64_t)st.st_size;
    r->rep->segments++;
    r->rep->bytes += fsize;
    uint8_t hdr[SEG_HEADER];
    uint32_t gen = 0;
    int sound = fsize >= SEG_HEADER && pread(fd, hdr, SEG_HEADER, 0) == SEG_HEADER
                    ? hop_store_get_shdr(hdr, id, &gen)
                    : 0;
    int rc = 0;
    if (sound < 0) {
        hop_log(HOP_ERROR, "store", "%s: unknown format version: written by a newer hopperd?",
                path);
        rc = HOP_STORE_EIO;
    } else if (sound == 0 && last) {
        hop_log(HOP_WARN, "store",
                "%s: header torn (%llu bytes): a crash right after creating "
                "it; removed",
                path, (unsigned long long)fsize);
        unlink(path);
        r->rep->cut_bytes += fsize;
        r->rep->cut_at = HOP_STORE_POS(id, 0);
    } else if (sound == 0) {
        size_t len = strlen(path) + 16;
        char *aside = hop_malloc(len);
        snprintf(aside, len, "%s.damaged", path);
        hop_log(HOP_ERROR, "store",
                "%s: damaged segment header: moved to %s, its records are "
                "lost",
                path, aside);
        if (rename(path, aside) < 0)
            rc = HOP_STORE_EIO;
        free(aside);
        r->rep->damaged++;
        r->rep->cut_bytes += fsize;
    } else {
        hop_store_seg_t *seg = hop_store_seg_new(id, gen);
        hop_store_seg_insert(self, seg);
        posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
        rc = s_records(r, seg, fd, fsize, last);
        atomic_fetch_add(&self->file_bytes, seg->size);
    }
    close(fd);
    free(path);
    return rc;
}

int
hop_store_replay(hop_store_t *self, hop_store_replay_fn *fn, void *arg, hop_store_replay_t *report)
{
    assert(self);
    assert(!self->replayed);
    uint64_t t0 = hop_now_us();
    hop_store_replay_t local;
    hop_store_replay_t *rep = report ? report : &local;
    memset(rep, 0, sizeof *rep);
    s_replay_t r = {.store = self, .fn = fn, .arg = arg, .rep = rep};
    uint32_t count;
    int rc;
    uint32_t *ids = s_list(self, &count, &rc);
    for (uint32_t i = 0; rc == 0 && i < count; i++)
        rc = s_segment(&r, ids[i], i + 1 == count);
    free(r.pending);
    if (rc) {
        free(ids);
        return rc;
    }
    // Appends go on in the last segment, unless it is full or was compacted (its offsets are
    // no longer positions), or into a new one numbered after everything seen.
    hop_store_seg_t *tail = self->nsegs ? self->segs[self->nsegs - 1] : NULL;
    if (tail && tail->gen == 0 && tail->size < self->opt.segment_size &&
        tail->id == ids[count - 1]) {
        self->head_seg = tail->id;
        self->head_off = (uint32_t)tail->size;
    } else {
        self->head_seg = count ? ids[count - 1] + 1 : 1;
        self->head_off = SEG_HEADER;
        hop_store_seg_insert(self, hop_store_seg_new(self->head_seg, 0));
    }
    free(ids);
    hop_store_pos_t head = HOP_STORE_POS(self->head_seg, self->head_off);
    atomic_store(&self->written, head);
    atomic_store(&self->synced, head);
    self->written_seg = self->head_seg;
    self->maint_due = true;
    rep->elapsed_ms = (hop_now_us() - t0) / 1000;
    hop_log(HOP_INFO, "store", "replayed %llu records from %u segments (%llu bytes) in %llu ms",
            (unsigned long long)rep->records, rep->segments, (unsigned long long)rep->bytes,
            (unsigned long long)rep->elapsed_ms);
    return hop_store_start(self);
}
