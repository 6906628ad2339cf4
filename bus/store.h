// bus/store.h - the message store: an append-only log of checksummed records in segment files,
// with group commit off the caller's thread, replay, and space reclaimed by deleting dead
// segments and compacting mostly-dead ones.
//
// The store knows nothing of queues or messages. A record is a small typed header (type, a
// 64-bit key, optionally the record it kills) and an opaque payload; the broker decides what
// the bytes mean. docs/ARCHITECTURE.md ("Storage") gives the on-disk format and the design.
//
// Threads: every function is called from one thread (the broker's reactor) and none of them
// waits for the disk to sync. Writes and fsyncs happen on the store's writer thread; deletion
// and compaction on its janitor thread. The reactor learns about progress by polling
// hop_store_fd() and calling hop_store_poll().
//
// Positions. Every record is named by a position: its segment id in the high 32 bits and its
// offset in the segment's file when it was first written in the low 32 bits. A position never
// changes, not even when compaction moves the record inside its file, nor across restarts, so
// the broker can keep it in its per-message index for as long as the record lives.
//
// Liveness. Appended records are live until the caller releases them (hop_store_release) or
// another record kills them (a tombstone: hop_store_append with kills set; an ack kills its
// message). The store keeps a tombstone on disk for as long as the record it killed is still
// on disk, so replay always sees both or neither. A segment whose records are all dead is
// deleted; one that is mostly dead is rewritten without its dead records, in place, so log
// order is kept.
#ifndef HOP_STORE_H_INCLUDED
#define HOP_STORE_H_INCLUDED

#include "histogram.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

typedef struct hop_store hop_store_t;

// Errors, all negative. What the disk or the files can cause is a code, never an abort.
typedef enum {
    HOP_STORE_OK = 0,
    HOP_STORE_EINVAL = -101,   // bad argument: type 0, payload larger than max_record, ...
    HOP_STORE_EFULL = -102,    // max_pending bytes are waiting for the writer: retry later
    HOP_STORE_ENOSPC = -103,   // the disk is full: writes are retried until space returns
    HOP_STORE_EIO = -104,      // an I/O error; after a failed fsync the store stops writing
    HOP_STORE_ELOCKED = -105,  // another process has the data directory open
    HOP_STORE_ECORRUPT = -106, // a record read back failed its checksum
    HOP_STORE_ENOTFOUND = -107 // no record at that position (released, or never written)
} hop_store_err_t;

// Returns a short English phrase for a hop_store_err_t ("disk full").
const char *hop_store_strerror(int rc);

typedef uint64_t hop_store_pos_t;
#define HOP_STORE_NOPOS         ((hop_store_pos_t)0)
#define HOP_STORE_POS(seg, off) (((hop_store_pos_t)(seg) << 32) | (uint32_t)(off))
#define HOP_STORE_POS_SEG(pos)  ((uint32_t)((pos) >> 32))
#define HOP_STORE_POS_OFF(pos)  ((uint32_t)(pos))
// Every record has this fixed header before its payload: a record's size on disk is
// HOP_STORE_HEADER + payload length, so the caller can keep payload lengths and derive sizes.
#define HOP_STORE_HEADER    40
#define HOP_STORE_SIZE(len) ((uint32_t)(HOP_STORE_HEADER + (len)))
// A record [pos, pos + size) is durable when the durable position has reached its end.
#define HOP_STORE_COVERS(durable, pos, size) ((pos) + (size) <= (durable))

// Record types the broker writes. The store does not interpret them (it only refuses 0); they
// live here so that every tool reading a data directory agrees on them.
enum {
    HOP_REC_MESSAGE = 1,      // a persistent message in a durable queue (key: message id)
    HOP_REC_ACK = 2,          // kills a MESSAGE: acked, expired, dropped or dead-lettered away
    HOP_REC_UPDATE = 3,       // a message's new state: delivery count, delay-until, deaths
    HOP_REC_EXCHANGE = 4,     // declare a durable exchange
    HOP_REC_EXCHANGE_DEL = 5, // kills an EXCHANGE
    HOP_REC_QUEUE = 6,        // declare a durable queue, with its arguments
    HOP_REC_QUEUE_DEL = 7,    // kills a QUEUE
    HOP_REC_BIND = 8,         // bind a durable queue or exchange to a durable exchange
    HOP_REC_UNBIND = 9,       // kills a BIND
};

typedef enum {
    HOP_FSYNC_ALWAYS = 0, // durable = fsynced: a commit is covered by the next fsync (default)
    HOP_FSYNC_EVERY = 1,  // durable = written to the OS; fsync every fsync_ms
    HOP_FSYNC_NEVER = 2   // durable = written to the OS; never fsync (the OS flushes)
} hop_fsync_t;

// Zero in any field means its default.
typedef struct {
    hop_fsync_t fsync;        // policy (HOP_FSYNC_ALWAYS)
    uint32_t fsync_ms;        // HOP_FSYNC_EVERY: at most this long between fsyncs (100)
    uint32_t segment_size;    // bytes per segment file before rolling over (64 MiB, >= 4 KiB)
    uint32_t max_record;      // largest payload accepted by append (64 MiB)
    uint64_t max_pending;     // bytes appended but not yet written before append says EFULL
                              // (64 MiB: a fraction of a second of disk bandwidth)
    uint32_t compact_percent; // compact a segment once this percentage of it is dead (50);
                              // above 100 disables compaction (deletion still happens)
} hop_store_options_t;

// One record, as replay reports it.
typedef struct {
    hop_store_pos_t pos;   // its position
    uint32_t size;         // its size on disk (header + payload): what release takes
    uint8_t type;          // the type it was appended with
    uint64_t key;          // the key it was appended with
    hop_store_pos_t kills; // the record it kills, or HOP_STORE_NOPOS
    uint32_t kills_size;   // that record's size
    const void *payload;   // its bytes (valid during the callback), NULL when corrupt
    uint32_t len;          // payload length
    bool corrupt;          // the payload failed its checksum: the header fields are sound
                           // (they have their own checksum) but the payload is lost
} hop_store_record_t;

// Called once per record in log order. Returns 0 to go on; anything else stops the replay,
// which returns it. A corrupt record is already dead and its kill was not applied: a caller
// that still trusts it (an ack, say) releases rec->kills itself.
typedef int(hop_store_replay_fn)(void *arg, const hop_store_record_t *rec);

// What replay found.
typedef struct {
    uint64_t records;   // records reported (corrupt ones included)
    uint64_t bytes;     // bytes of segment files read
    uint32_t segments;  // segment files found
    uint64_t corrupt;   // records whose payload failed its checksum (reported, dead)
    uint64_t cut_bytes; // bytes cut from the end of the log (a torn or corrupt tail), plus bytes
                        // made unreadable by a damaged header inside an older segment
    hop_store_pos_t cut_at; // where the log was cut, HOP_STORE_NOPOS when it was not
    uint32_t damaged;       // older segments with an unreadable part (each logged as an error)
    uint64_t elapsed_ms;
} hop_store_replay_t;

typedef struct {
    uint64_t disk_bytes;      // bytes of segment files on disk
    uint64_t live_bytes;      // bytes of records not yet dead (headers included)
    uint32_t segments;        // segment files (the active one included)
    uint64_t pending_bytes;   // appended and not yet written
    hop_store_pos_t head;     // where the next record goes
    hop_store_pos_t written;  // end of what the OS has (survives a crash of this process)
    hop_store_pos_t synced;   // end of what is fsynced (survives a power loss)
    hop_store_pos_t durable;  // what the policy counts as durable: confirm up to here
    uint64_t appended;        // records appended since open
    uint64_t fsyncs;          // fsync/fdatasync calls on segment files and the directory
    uint64_t last_fsync_us;   // duration of the writer's last fsync
    uint64_t max_fsync_us;    // the longest since open
    uint64_t compactions;     // segments rewritten
    uint64_t deletions;       // segments deleted
    uint64_t reclaimed_bytes; // bytes freed by both
    uint32_t jobs;            // deletions and compactions handed to the janitor, not yet back
    int error;                // the writer's current error: 0, ENOSPC (retrying), EIO (stopped)
} hop_store_stats_t;

// Opens the store in dir, creating dir and dir/segments if needed, and locks it against other
// processes. Call hop_store_replay next. Returns NULL on failure with *rc_p (when not NULL) set
// and a sentence for the operator in why (when not NULL): HOP_STORE_ELOCKED "... is in use by
// process 123", HOP_STORE_EIO "cannot create ...: Permission denied".
hop_store_t *hop_store_new(const char *dir, const hop_store_options_t *options, int *rc_p,
                           char *why, size_t why_size);
// Writes out and (unless the policy is never) fsyncs what was appended, stops the threads,
// unlocks the directory, frees everything; sets *self_p to NULL. Accepts NULL.
void hop_store_destroy(hop_store_t **self_p);

// Reads every segment in order and calls fn (may be NULL) for each record. A torn or corrupt
// tail of the last segment is cut off (truncated) and logged; a record whose payload fails its
// checksum inside the log is reported with corrupt set and skipped; an older segment with a
// damaged header keeps what comes before the damage. During and after fn the caller may call
// hop_store_release for records replayed so far. Call exactly once, before anything else; it
// starts the writer and janitor threads. Returns 0, fn's non-zero return, or HOP_STORE_EIO
// (unreadable directory, a segment from a newer format); on an error, destroy the store.
int hop_store_replay(hop_store_t *self, hop_store_replay_fn *fn, void *arg,
                     hop_store_replay_t *report);

// Appends a record: copies the payload into the write buffer and returns its position in
// *pos_p. Does no I/O; the bytes reach the disk after hop_store_commit (or when a buffer
// fills). With kills set (a position and the size of a live record), the new record is a
// tombstone: the killed record is dead from now on, on replay too. Returns 0, HOP_STORE_EINVAL
// (type 0, too large, kills not a live record), HOP_STORE_EFULL (max_pending reached), or
// HOP_STORE_EIO (the store stopped writing after a failed fsync).
int hop_store_append(hop_store_t *self, uint8_t type, uint64_t key, const void *payload, size_t len,
                     hop_store_pos_t *pos_p);
// The same with the payload in pieces and an optional kill (HOP_STORE_NOPOS for none).
int hop_store_appendv(hop_store_t *self, uint8_t type, uint64_t key, const struct iovec *iov,
                      int iovcnt, hop_store_pos_t kills, uint32_t kills_size,
                      hop_store_pos_t *pos_p);
// Hands everything appended so far to the writer thread: one fsync (policy always) will cover
// it and every other commit made while the previous fsync ran. Never waits. Returns 0 or
// HOP_STORE_EIO.
int hop_store_commit(hop_store_t *self);

// Marks a live record dead: its bytes count toward deleting or compacting its segment. size
// is the record's size (HOP_STORE_SIZE of its payload length). A tombstone must not be
// released: it dies when the record it killed leaves the disk. A release that names no live
// record is a caller's bug: logged once and ignored (no assert: a broker must not crash-loop
// on its own log at every start).
void hop_store_release(hop_store_t *self, hop_store_pos_t pos, uint32_t size);

// Reads the payload of the live record at pos (of the given size) into buf (cap bytes) and
// checks it against its checksum. Reads the file on the calling thread (the page cache usually
// has recent records). Returns the payload length, HOP_STORE_EINVAL (cap too small),
// HOP_STORE_ENOTFOUND, HOP_STORE_ECORRUPT or HOP_STORE_EIO.
int64_t hop_store_read(hop_store_t *self, hop_store_pos_t pos, uint32_t size, void *buf,
                       size_t cap);

// A file descriptor that becomes readable when the writer or the janitor made progress: poll
// it (zmq_poll accepts it) and call hop_store_poll when it is.
int hop_store_fd(const hop_store_t *self);
// Takes in the threads' progress: new durable position, finished compactions (installed here),
// and starts deletions and compactions that became due. Cheap; also call it on a timer tick.
// Returns 0 or the writer's current error (HOP_STORE_ENOSPC while retrying, HOP_STORE_EIO).
int hop_store_poll(hop_store_t *self);
// End of the records that the fsync policy counts as durable: a record is durable when
// HOP_STORE_COVERS(hop_store_durable(store), pos, size). Safe to call at any time.
hop_store_pos_t hop_store_durable(const hop_store_t *self);
// The writer's current error: 0, HOP_STORE_ENOSPC (it keeps retrying) or HOP_STORE_EIO. While
// it is not 0, refuse new persistent publishes rather than pile them up.
int hop_store_error(const hop_store_t *self);

void hop_store_stats(const hop_store_t *self, hop_store_stats_t *stats);
// Durations of the writer's segment fsyncs (those that confirms wait for; not the directory's
// nor the janitor's, which fsyncs counts too), in µs buckets. Safe to call at any time.
void hop_store_fsync_histogram(const hop_store_t *self, hop_histogram_snapshot_t *snap);
// "always", "every", "never".
const char *hop_store_fsync_name(hop_fsync_t policy);

// Fault injection for tests. disk_limit: segment files may not grow past this many bytes in
// total (0: no limit); a write that would cross it writes what fits and fails with ENOSPC, as a
// full disk does. fsync_failures: the next n fsyncs fail with EIO. Takes effect at once; the
// writer retries a stalled write right away.
typedef struct {
    uint64_t disk_limit;
    int fsync_failures;
} hop_store_faults_t;
void hop_store_set_faults(hop_store_t *self, const hop_store_faults_t *faults);

// CRC-32C (Castagnoli) of data, continuing from crc (0 to start). Hardware-accelerated where
// the CPU has it.
uint32_t hop_crc32c(uint32_t crc, const void *data, size_t len);

#endif
