// bus/store_io.c - the store's building blocks: CRC-32C, record and segment headers, file
// writes and syncs (with the test faults), a sequential reader, and per-segment bookkeeping
// (dead bits, compacted segments' offset tables, tombstone groups).
#include "store_internal.h"
#include "util.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

// CRC-32C ----------------------------------------------------------------------------------
// Castagnoli polynomial, reflected. Slicing-by-8 in portable C (about 1.5 GB/s), and the SSE4.2
// instruction where the CPU has it (several times faster): replay checks every byte of the log.

static uint32_t s_crc_table[8][256];
static pthread_once_t s_crc_once = PTHREAD_ONCE_INIT;
static bool s_crc_hw;

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <nmmintrin.h>
__attribute__((target("sse4.2"))) static uint32_t
s_crc_sse42(uint32_t crc, const uint8_t *p, size_t len)
{
    uint64_t c = crc;
    while (len && ((uintptr_t)p & 7)) {
        c = _mm_crc32_u8((uint32_t)c, *p++);
        len--;
    }
    while (len >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        c = _mm_crc32_u64(c, v);
        p += 8;
        len -= 8;
    }
    while (len--)
        c = _mm_crc32_u8((uint32_t)c, *p++);
    return (uint32_t)c;
}
#endif

static void
s_crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        s_crc_table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++)
            s_crc_table[t][i] =
                (s_crc_table[t - 1][i] >> 8) ^ s_crc_table[0][s_crc_table[t - 1][i] & 0xff];
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    s_crc_hw = __builtin_cpu_supports("sse4.2");
#endif
}

static uint32_t
s_crc_soft(uint32_t c, const uint8_t *p, size_t len)
{
    while (len && ((uintptr_t)p & 7)) {
        c = s_crc_table[0][(c ^ *p++) & 0xff] ^ (c >> 8);
        len--;
    }
    while (len >= 8) {
        uint32_t lo = c ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                           (uint32_t)p[3] << 24);
        c = s_crc_table[7][lo & 0xff] ^ s_crc_table[6][(lo >> 8) & 0xff] ^
            s_crc_table[5][(lo >> 16) & 0xff] ^ s_crc_table[4][lo >> 24] ^ s_crc_table[3][p[4]] ^
            s_crc_table[2][p[5]] ^ s_crc_table[1][p[6]] ^ s_crc_table[0][p[7]];
        p += 8;
        len -= 8;
    }
    while (len--)
        c = s_crc_table[0][(c ^ *p++) & 0xff] ^ (c >> 8);
    return c;
}

uint32_t
hop_crc32c(uint32_t crc, const void *data, size_t len)
{
    pthread_once(&s_crc_once, s_crc_init);
    const uint8_t *p = data;
    uint32_t c = ~crc;
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    if (s_crc_hw)
        return ~s_crc_sse42(c, p, len);
#endif
    return ~s_crc_soft(c, p, len);
}

// Headers (little-endian) ------------------------------------------------------------------

static void
s_put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void
s_put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void
s_put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t
s_get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t
s_get64(const uint8_t *p)
{
    return (uint64_t)s_get32(p) | (uint64_t)s_get32(p + 4) << 32;
}

void
hop_store_put_rhdr(uint8_t *out, const hop_store_rhdr_t *h)
{
    s_put32(out + 4, h->pcrc);
    s_put32(out + 8, h->len);
    s_put32(out + 12, h->orig);
    out[16] = h->type;
    out[17] = h->flags;
    s_put16(out + 18, h->reserved);
    s_put32(out + 20, h->tsize);
    s_put32(out + 24, h->tseg);
    s_put32(out + 28, h->torig);
    s_put64(out + 32, h->key);
    s_put32(out, hop_crc32c(0, out + 4, REC_HEADER - 4));
}

bool
hop_store_get_rhdr(const uint8_t *in, hop_store_rhdr_t *h)
{
    h->hcrc = s_get32(in);
    h->pcrc = s_get32(in + 4);
    h->len = s_get32(in + 8);
    h->orig = s_get32(in + 12);
    h->type = in[16];
    h->flags = in[17];
    h->reserved = (uint16_t)(in[18] | in[19] << 8);
    h->tsize = s_get32(in + 20);
    h->tseg = s_get32(in + 24);
    h->torig = s_get32(in + 28);
    h->key = s_get64(in + 32);
    return h->hcrc == hop_crc32c(0, in + 4, REC_HEADER - 4);
}

void
hop_store_put_shdr(uint8_t *out, uint32_t id, uint32_t gen)
{
    memset(out, 0, SEG_HEADER);
    memcpy(out, SEG_MAGIC, 8);
    s_put32(out + 8, SEG_VERSION);
    s_put32(out + 12, id);
    s_put32(out + 16, gen);
    s_put32(out + 28, hop_crc32c(0, out, 28));
}

int
hop_store_get_shdr(const uint8_t *in, uint32_t id, uint32_t *gen_p)
{
    if (memcmp(in, SEG_MAGIC, 8) != 0 || s_get32(in + 28) != hop_crc32c(0, in, 28))
        return 0;
    if (s_get32(in + 8) != SEG_VERSION)
        return -1;
    if (s_get32(in + 12) != id)
        return 0;
    *gen_p = s_get32(in + 16);
    return 1;
}

// Files ------------------------------------------------------------------------------------

char *
hop_store_seg_path(const hop_store_t *self, uint32_t id, const char *suffix)
{
    size_t len = strlen(self->segdir) + 32;
    char *path = hop_malloc(len);
    snprintf(path, len, "%s/%08u.%s", self->segdir, id, suffix);
    return path;
}

int
hop_store_errno_rc(int err)
{
#ifdef EDQUOT
    if (err == EDQUOT)
        return HOP_STORE_ENOSPC;
#endif
    return err == ENOSPC ? HOP_STORE_ENOSPC : HOP_STORE_EIO;
}

int
hop_store_write_at(hop_store_t *self, int fd, const void *buf, size_t len, uint64_t off,
                   uint64_t *size_p)
{
    size_t allowed = len;
    bool full = false;
    uint64_t limit = atomic_load(&self->disk_limit);
    if (limit) {
        // Simulated full disk: overwrites are free, growth must fit under the limit.
        uint64_t overwrite = off < *size_p ? *size_p - off : 0;
        uint64_t growth = off + len > *size_p ? off + len - *size_p : 0;
        uint64_t used = atomic_load(&self->file_bytes);
        if (used + growth > limit) {
            uint64_t room = limit > used ? limit - used : 0;
            allowed = (size_t)(overwrite + room < len ? overwrite + room : len);
            full = true;
        }
    }
    const uint8_t *p = buf;
    size_t done = 0;
    int rc = 0;
    while (done < allowed) {
        ssize_t n = pwrite(fd, p + done, allowed - done, (off_t)(off + done));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            rc = hop_store_errno_rc(errno);
            break;
        }
        done += (size_t)n;
    }
    if (off + done > *size_p) {
        atomic_fetch_add(&self->file_bytes, off + done - *size_p);
        *size_p = off + done;
    }
    if (rc == 0 && full)
        rc = HOP_STORE_ENOSPC;
    return rc;
}

int
hop_store_sync_fd(hop_store_t *self, int fd, bool dir, uint64_t *us_p)
{
    atomic_fetch_add(&self->fsyncs, 1);
    int left = atomic_load(&self->fsync_failures);
    while (left > 0)
        if (atomic_compare_exchange_weak(&self->fsync_failures, &left, left - 1))
            return HOP_STORE_EIO;
    uint64_t t0 = hop_now_us();
    int rc = dir ? fsync(fd) : fdatasync(fd);
    if (us_p)
        *us_p = hop_now_us() - t0;
    return rc == 0 ? 0 : hop_store_errno_rc(errno);
}

void
hop_store_notify(hop_store_t *self)
{
    if (!atomic_exchange(&self->signaled, true)) {
        if (write(self->pipe_w, "!", 1) < 0) {
            // The pipe is full: the reactor has bytes to read already.
        }
    }
}

// Sequential reader ------------------------------------------------------------------------

void
hop_store_reader_init(hop_store_reader_t *r, int fd, uint64_t size)
{
    memset(r, 0, sizeof *r);
    r->fd = fd;
    r->size = size;
}

void
hop_store_reader_fini(hop_store_reader_t *r)
{
    free(r->buf);
    r->buf = NULL;
}

const uint8_t *
hop_store_reader_get(hop_store_reader_t *r, uint64_t off, size_t n, int *rc_p)
{
    *rc_p = 0;
    if (off + n > r->size)
        return NULL;
    if (off >= r->base && off + n <= r->base + r->len)
        return r->buf + (off - r->base);
    if (n > r->cap || !r->buf) {
        size_t cap = n > (1u << 20) ? n : (1u << 20);
        free(r->buf);
        r->buf = hop_malloc(cap);
        r->cap = cap;
    }
    r->base = off;
    r->len = 0;
    while (r->len < r->cap && r->base + r->len < r->size) {
        ssize_t got = pread(r->fd, r->buf + r->len, r->cap - r->len, (off_t)(r->base + r->len));
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            *rc_p = hop_store_errno_rc(errno);
            return NULL;
        }
        if (got == 0)
            break; // the file shrank under us: treat as its end
        r->len += (size_t)got;
    }
    return r->len >= n ? r->buf : NULL;
}

// Segments ---------------------------------------------------------------------------------

hop_store_seg_t *
hop_store_seg_new(uint32_t id, uint32_t gen)
{
    hop_store_seg_t *seg = hop_calloc(1, sizeof *seg);
    seg->id = id;
    seg->gen = gen;
    seg->size = SEG_HEADER;
    seg->end = SEG_HEADER;
    seg->fd = -1;
    return seg;
}

void
hop_store_seg_destroy(hop_store_seg_t **seg_p)
{
    hop_store_seg_t *seg = *seg_p;
    if (!seg)
        return;
    if (seg->fd >= 0)
        close(seg->fd);
    free(seg->bits);
    free(seg->orig);
    free(seg->phys);
    free(seg->tombs);
    free(seg);
    *seg_p = NULL;
}

hop_store_seg_t *
hop_store_seg_find(const hop_store_t *self, uint32_t id)
{
    uint32_t lo = 0, hi = self->nsegs;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (self->segs[mid]->id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < self->nsegs && self->segs[lo]->id == id ? self->segs[lo] : NULL;
}

void
hop_store_seg_insert(hop_store_t *self, hop_store_seg_t *seg)
{
    if (self->nsegs == self->segs_cap) {
        self->segs_cap = self->segs_cap ? self->segs_cap * 2 : 16;
        self->segs = hop_realloc(self->segs, self->segs_cap * sizeof *self->segs);
    }
    uint32_t i = self->nsegs;
    while (i > 0 && self->segs[i - 1]->id > seg->id) {
        self->segs[i] = self->segs[i - 1];
        i--;
    }
    self->segs[i] = seg;
    self->nsegs++;
}

int64_t
hop_store_seg_index(const uint32_t *orig, uint32_t count, uint32_t off)
{
    uint32_t lo = 0, hi = count;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (orig[mid] < off)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < count && orig[lo] == off ? (int64_t)lo : -1;
}

// The bit that stands for the record at original offset off, or -1 when it is not in the file.
static int64_t
s_bit(const hop_store_seg_t *seg, uint32_t off)
{
    if (seg->gen == 0)
        return off >= SEG_HEADER && off < seg->end ? (int64_t)(off >> BIT_SHIFT) : -1;
    return hop_store_seg_index(seg->orig, seg->count, off);
}

bool
hop_store_seg_has(const hop_store_seg_t *seg, uint32_t off)
{
    return s_bit(seg, off) >= 0;
}

int
hop_store_seg_dead(const hop_store_seg_t *seg, uint32_t off)
{
    int64_t bit = s_bit(seg, off);
    if (bit < 0)
        return -1;
    if ((uint64_t)bit >= seg->nbits)
        return 0;
    return (seg->bits[bit / 64] >> (bit % 64)) & 1;
}

static void
s_bits_grow(hop_store_seg_t *seg, uint64_t need)
{
    if (need <= seg->nbits)
        return;
    uint64_t nbits = seg->nbits ? seg->nbits : 4096;
    while (nbits < need)
        nbits *= 2;
    seg->bits = hop_realloc(seg->bits, (size_t)(nbits / 64) * sizeof(uint64_t));
    memset(seg->bits + seg->nbits / 64, 0, (size_t)((nbits - seg->nbits) / 64) * sizeof(uint64_t));
    seg->nbits = (uint32_t)nbits;
}

bool
hop_store_seg_kill(hop_store_seg_t *seg, uint32_t off, uint32_t size)
{
    int64_t bit = s_bit(seg, off);
    if (bit < 0)
        return false;
    s_bits_grow(seg, (uint64_t)bit + 1);
    uint64_t mask = (uint64_t)1 << (bit % 64);
    if (seg->bits[bit / 64] & mask)
        return false;
    seg->bits[bit / 64] |= mask;
    seg->dead += size;
    return true;
}

void
hop_store_seg_add_tomb(hop_store_seg_t *seg, uint32_t target, uint64_t bytes, bool pending)
{
    hop_store_tomb_t *t = NULL;
    for (uint32_t i = 0; i < seg->ntombs; i++)
        if (seg->tombs[i].target == target)
            t = &seg->tombs[i];
    if (!t) {
        if (seg->ntombs == seg->tombs_cap) {
            seg->tombs_cap = seg->tombs_cap ? seg->tombs_cap * 2 : 4;
            seg->tombs = hop_realloc(seg->tombs, seg->tombs_cap * sizeof *seg->tombs);
        }
        t = &seg->tombs[seg->ntombs++];
        *t = (hop_store_tomb_t){.target = target};
    }
    if (pending)
        t->pending += bytes;
    else
        t->bytes += bytes;
}

void
hop_store_seg_add_record(hop_store_seg_t *seg, uint32_t orig, uint32_t phys)
{
    if (seg->count == seg->cap) {
        seg->cap = seg->cap ? seg->cap * 2 : 1024;
        seg->orig = hop_realloc(seg->orig, seg->cap * sizeof *seg->orig);
        seg->phys = hop_realloc(seg->phys, seg->cap * sizeof *seg->phys);
    }
    seg->orig[seg->count] = orig;
    seg->phys[seg->count] = phys;
    seg->count++;
}

// Dead bytes, plus tombstones that kill records of their own segment: deleting or compacting
// the segment takes tombstone and target away together, so they are as good as dead.
uint64_t
hop_store_seg_reclaimable(const hop_store_seg_t *seg)
{
    uint64_t dead = seg->dead;
    for (uint32_t k = 0; k < seg->ntombs; k++)
        if (seg->tombs[k].target == seg->id)
            dead += seg->tombs[k].bytes;
    return dead;
}
