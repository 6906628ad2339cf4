// bus/store_internal.h - what the store's files (store.c, store_io.c, store_replay.c,
// store_writer.c, store_janitor.c) share. Not for the broker: it uses store.h only.
//
// Who touches what. The reactor (the thread that calls the API) owns the segment table, the
// head and the open chunk. The writer thread owns its file descriptor and what it has written
// of each chunk. The janitor owns the job it is running. Everything they exchange goes through
// the fields marked "under mu" or atomics.
#ifndef HOP_STORE_INTERNAL_H_INCLUDED
#define HOP_STORE_INTERNAL_H_INCLUDED

#include "histogram.h"
#include "store.h"
#include "util.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

// On-disk format (docs/ARCHITECTURE.md, "Storage").
#define SEG_HEADER  32         // segment file header; the first record starts here
#define SEG_MAGIC   "HOPPERLG" // 8 bytes
#define SEG_VERSION 1
#define REC_HEADER  HOP_STORE_HEADER
#define REC_MAX     (1u << 30) // format limit on a payload; max_record is the policy
#define REC_KILL    0x01       // flags: the record kills (tseg, torig)
#define BIT_SHIFT                                                                                  \
    5 // gen-0 dead bits are indexed by offset >> 5: records are at
      // least 40 bytes apart, so no two share a bit

#define CHUNK_SIZE (256 * 1024) // write buffer unit
#define POOL_MAX   32           // free chunks kept
#define RETRY_MS   100          // a stalled write is retried this often

// A record header, decoded.
typedef struct {
    uint32_t hcrc, pcrc, len, orig;
    uint8_t type, flags;
    uint16_t reserved;
    uint32_t tsize, tseg, torig;
    uint64_t key;
} hop_store_rhdr_t;

// Tombstones in a segment whose targets are in segment `target`: they die (their bytes become
// dead) when that segment is next compacted or deleted. `pending` counts those written while
// the target segment was being compacted: their targets were copied, so they survive it.
typedef struct {
    uint32_t target;
    uint64_t bytes;
    uint64_t pending;
} hop_store_tomb_t;

// One segment file, as the reactor sees it.
typedef struct {
    uint32_t id;
    uint32_t gen;            // times compacted (0: offsets are original positions)
    uint64_t size;           // bytes: the file's, or appended so far for the active segment
    uint64_t end;            // end of the readable records (< size only when damaged)
    uint64_t dead;           // dead bytes in [SEG_HEADER, size)
    uint64_t *bits;          // dead records: gen 0 by offset >> BIT_SHIFT, else by index
    uint32_t nbits;          // bits allocated (a multiple of 64)
    uint32_t *orig;          // gen > 0: original offset of each record in the file, sorted
    uint32_t *phys;          // gen > 0: its offset in the file now
    uint32_t count, cap;     // gen > 0: records in the file
    hop_store_tomb_t *tombs; // live tombstones here, grouped by their target's segment
    uint32_t ntombs, tombs_cap;
    int fd;          // read-only descriptor, -1 until first needed
    bool compacting; // a compaction job has it
    bool bad;        // compaction failed on its contents: never try again
} hop_store_seg_t;

// A write buffer: records for one segment, contiguous from file offset `start`. Chunks sit in
// the writer's queue from the moment the reactor starts filling one: the writer writes up to
// `committed`, the reactor appends beyond it; a sealed chunk receives nothing more and is
// recycled once written.
typedef struct hop_store_chunk {
    struct hop_store_chunk *next; // queue or pool link (under mu)
    uint32_t seg;                 // segment id
    uint32_t start;               // file offset of data[0]
    uint32_t cap;                 // bytes of data
    uint32_t used;                // reactor: bytes appended
    _Atomic uint32_t committed;   // reactor -> writer: bytes the writer may write
    uint32_t written;             // writer: bytes written
    bool sealed;                  // under mu: committed is final
    uint8_t data[];
} hop_store_chunk_t;

// A segment's table, as a compaction job sees the others (to tell whether a tombstone's
// target is still on disk).
typedef struct {
    uint32_t id, gen;
    const uint32_t *orig;
    uint32_t count;
} hop_store_segref_t;

typedef enum { JOB_UNLINK, JOB_COMPACT } hop_store_job_kind_t;

// Work for the janitor, and its result.
typedef struct hop_store_job {
    struct hop_store_job *next;
    hop_store_job_kind_t kind;
    uint32_t seg, gen;  // the segment and its generation at job time
    uint64_t size, end; // its bytes and readable end
    // compaction input (the tables are borrowed: nothing frees them while a job runs)
    uint64_t *bits; // owned snapshot of the dead bits
    uint32_t nbits;
    const uint32_t *orig, *phys; // gen > 0
    uint32_t count;
    hop_store_segref_t *others; // owned, sorted by id
    uint32_t nothers;
    // result
    int rc;
    uint32_t *new_orig, *new_phys, new_count;
    uint64_t new_size;
    hop_store_tomb_t *new_tombs;
    uint32_t new_ntombs;
    int new_fd;
} hop_store_job_t;

struct hop_store {
    char *dir;               // data directory
    char *segdir;            // dir/segments
    hop_store_options_t opt; // with defaults filled in
    int lock_fd;             // dir/LOCK, flocked
    int dir_fd;              // segments directory, for fsync after create/rename/unlink
    int pipe_r, pipe_w;      // progress notifications to the reactor
    atomic_bool signaled;    // a byte is in the pipe

    // Reactor only.
    hop_store_seg_t **segs; // by increasing id
    uint32_t nsegs, segs_cap;
    uint32_t head_seg;       // segment of the next record (the active segment)
    uint32_t head_off;       // its offset
    hop_store_chunk_t *cur;  // open chunk (also the queue's tail), or NULL
    uint64_t appended_bytes; // record bytes appended since open
    uint64_t appended;       // records appended since open
    uint64_t compactions, deletions, reclaimed;
    bool replayed;        // replay ran: threads started, appends allowed
    bool maint_due;       // something changed that may make a segment deletable
    uint32_t written_seg; // segment of the written position at the last poll
    bool compacting;      // a compaction job is out
    uint32_t jobs_out;    // jobs handed to the janitor and not yet back
    bool warned_release;  // a bad release was logged
    // Read-ahead for hop_store_read: one window of one segment file, as read. Spilled messages
    // are read back in log order, so most reads are served from here (bus/paging.c).
    uint8_t *ra_buf;  // RA_SIZE bytes, or NULL until the first read
    uint32_t ra_seg;  // the segment id, 0: empty
    uint32_t ra_gen;  // its generation when read (a compaction moves records)
    uint64_t ra_phys; // file offset of ra_buf[0]
    uint32_t ra_len;  // bytes in ra_buf

    // Shared, under mu.
    pthread_mutex_t mu;
    pthread_cond_t writer_cv;  // work for the writer
    pthread_cond_t janitor_cv; // work for the janitor
    hop_store_chunk_t *q_head; // chunks to write, oldest first; q_tail == cur or sealed
    hop_store_chunk_t *q_tail;
    hop_store_chunk_t *pool; // free chunks of CHUNK_SIZE
    uint32_t npool;
    bool work;                         // the reactor committed or sealed since the writer looked
    bool stop;                         // destroy: threads finish up and exit
    bool kick;                         // faults changed: retry a stalled write now
    hop_store_job_t *jobs, *jobs_tail; // for the janitor
    hop_store_job_t *done, *done_tail; // finished jobs for the reactor

    // Atomics: written by the threads, read anywhere.
    _Atomic uint64_t written;       // position: end of what was written
    _Atomic uint64_t synced;        // position: end of what was fsynced
    _Atomic uint64_t written_bytes; // record bytes written (pending = appended - written)
    _Atomic uint64_t file_bytes;    // bytes of segment (and temporary) files
    _Atomic uint64_t fsyncs, last_fsync_us, max_fsync_us;
    hop_histogram_t fsync_us;    // the writer's segment fsyncs (recorded by the writer only)
    _Atomic int error;           // 0, HOP_STORE_ENOSPC (stalled), HOP_STORE_EIO
    atomic_bool failed;          // an fsync failed: nothing more is written
    atomic_bool stopping;        // the janitor abandons a compaction
    _Atomic uint64_t disk_limit; // fault: segment files may not grow past this (0: off)
    atomic_int fsync_failures;   // fault: the next n fsyncs fail

    pthread_t writer, janitor;
    bool threads; // started
};

// store_io.c: encoding, checksums, file helpers, segment bookkeeping.
void hop_store_put_rhdr(uint8_t *out, const hop_store_rhdr_t *h); // fills in hcrc
bool hop_store_get_rhdr(const uint8_t *in, hop_store_rhdr_t *h);  // false: bad hcrc
void hop_store_put_shdr(uint8_t *out, uint32_t id, uint32_t gen);
// 1: sound, 0: damaged, -1: a version this code does not know.
int hop_store_get_shdr(const uint8_t *in, uint32_t id, uint32_t *gen_p);
char *hop_store_seg_path(const hop_store_t *self, uint32_t id, const char *suffix);
int hop_store_errno_rc(int err); // errno -> hop_store_err_t
// pwrite all of buf at off, honouring the disk_limit fault. *size_p is the file's size, kept up
// to date, and file_bytes grows with it. Returns 0 or a hop_store_err_t.
int hop_store_write_at(hop_store_t *self, int fd, const void *buf, size_t len, uint64_t off,
                       uint64_t *size_p);
// fdatasync (or fsync for a directory), honouring the fsync_failures fault; counts it.
int hop_store_sync_fd(hop_store_t *self, int fd, bool dir, uint64_t *us_p);
void hop_store_notify(hop_store_t *self);

hop_store_seg_t *hop_store_seg_new(uint32_t id, uint32_t gen);
void hop_store_seg_destroy(hop_store_seg_t **seg_p);
hop_store_seg_t *hop_store_seg_find(const hop_store_t *self, uint32_t id);
void hop_store_seg_insert(hop_store_t *self, hop_store_seg_t *seg); // keeps ids sorted
// Index of orig in a gen > 0 table, or -1.
int64_t hop_store_seg_index(const uint32_t *orig, uint32_t count, uint32_t off);
// Whether the record with original offset off is in the segment's file now.
bool hop_store_seg_has(const hop_store_seg_t *seg, uint32_t off);
// Dead bit of the record at original offset off: 1 dead, 0 live, -1 not in the file.
int hop_store_seg_dead(const hop_store_seg_t *seg, uint32_t off);
// Marks it dead and counts size; false when it was dead already or is not in the file.
bool hop_store_seg_kill(hop_store_seg_t *seg, uint32_t off, uint32_t size);
void hop_store_seg_add_tomb(hop_store_seg_t *seg, uint32_t target, uint64_t bytes, bool pending);
// Dead bytes, plus tombstones that kill records of their own segment (as good as dead).
uint64_t hop_store_seg_reclaimable(const hop_store_seg_t *seg);
// Appends (orig, phys) to a gen > 0 table.
void hop_store_seg_add_record(hop_store_seg_t *seg, uint32_t orig, uint32_t phys);

// A sequential reader over a file, for replay and compaction.
typedef struct {
    int fd;
    uint64_t size; // file size
    uint8_t *buf;
    size_t cap;
    uint64_t base; // file offset of buf[0]
    size_t len;    // bytes in buf
} hop_store_reader_t;
void hop_store_reader_init(hop_store_reader_t *r, int fd, uint64_t size);
void hop_store_reader_fini(hop_store_reader_t *r);
// Pointer to [off, off + n) of the file, or NULL when the file is shorter (*rc_p = 0) or a read
// failed (*rc_p < 0).
const uint8_t *hop_store_reader_get(hop_store_reader_t *r, uint64_t off, size_t n, int *rc_p);

// store_writer.c, store_janitor.c: the threads.
void *hop_store_writer_main(void *arg);
void *hop_store_janitor_main(void *arg);
// store_janitor.c, on the reactor: deletes dead segments and starts a compaction when one is
// due; installs a finished compaction; frees a job.
void hop_store_maintain(hop_store_t *self);
void hop_store_install(hop_store_t *self, hop_store_job_t *job);
void hop_store_job_destroy(hop_store_job_t **job_p);
// store.c: starts the threads (after replay).
int hop_store_start(hop_store_t *self);

#endif
