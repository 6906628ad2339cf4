// tests/unit/store_helpers.h - what the store tests share: temporary directories, opening with
// a replay that keeps copies of the records, waiting for the store's threads with a deadline,
// and poking at segment files.
#ifndef HOP_STORE_HELPERS_H_INCLUDED
#define HOP_STORE_HELPERS_H_INCLUDED

#include "store.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

// A replayed record, copied.
typedef struct {
    hop_store_pos_t pos;
    uint32_t size;
    uint8_t type;
    uint64_t key;
    hop_store_pos_t kills;
    uint32_t kills_size;
    uint8_t *payload; // NULL when corrupt
    uint32_t len;
    bool corrupt;
} sh_rec_t;

typedef struct {
    sh_rec_t *recs;
    size_t count, cap;
} sh_log_t;

void sh_log_clear(sh_log_t *log);
// The replay callback that fills a sh_log_t.
int sh_collect(void *arg, const hop_store_record_t *rec);

// A fresh directory under /tmp; sh_rmrf removes it and frees the string.
char *sh_tmpdir(void);
void sh_rmrf(char **dir_p);
// Copies every file of src/segments into dst/segments (dst is created).
void sh_copy_segments(const char *src, const char *dst);

// Opens dir with options (NULL: defaults), replays into log (may be NULL) and report (may be
// NULL). Fails the test on error.
hop_store_t *sh_open(const char *dir, const hop_store_options_t *options, sh_log_t *log,
                     hop_store_replay_t *report);

// Deterministic payload for record i: length len, bytes derived from i.
void sh_fill(uint8_t *buf, size_t len, uint64_t i);
// Appends a record of len bytes made by sh_fill(key); returns its position.
hop_store_pos_t sh_append(hop_store_t *store, uint8_t type, uint64_t key, size_t len);
// Appends a tombstone killing (pos, size).
hop_store_pos_t sh_kill(hop_store_t *store, uint64_t key, hop_store_pos_t pos, uint32_t size);

// Polls the store until pred holds or timeout_ms passes; returns pred's last value.
bool sh_until(hop_store_t *store, bool (*pred)(hop_store_t *store, void *arg), void *arg,
              int timeout_ms);
// Commits and waits until everything appended is durable.
bool sh_sync(hop_store_t *store, int timeout_ms);
// Waits until the store's error is rc.
bool sh_wait_error(hop_store_t *store, int rc, int timeout_ms);
// Waits until the janitor has nothing out and nothing is due: deletions and compactions done.
bool sh_settle(hop_store_t *store, int timeout_ms);

// Segment files.
char *sh_seg_path(const char *dir, uint32_t seg);
long sh_file_size(const char *path); // -1 when missing
void sh_truncate(const char *path, long size);
void sh_flip(const char *path, long offset);
uint64_t sh_dir_bytes(const char *dir); // sum of segments/*.log sizes
uint32_t sh_dir_segments(const char *dir);

#endif
