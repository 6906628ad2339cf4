// tests/integration/harness.h - what every integration test needs: a real hopperd on a free
// port with a fresh data directory, the CLI run as a child with a deadline, waits that poll a
// condition until a deadline, and small msgpack lookups for reading list/status replies.
//
// Brokers and temp directories are registered as they are made and removed at exit (atexit,
// SIGINT/SIGTERM) even when a test fails half-way; every child gets PR_SET_PDEATHSIG so that
// a test killed outright (ctest timeout, ASan abort) does not leave a hopperd behind. Start
// brokers from the main thread: the death signal follows the thread that forked.
#ifndef HOP_HARNESS_H_INCLUDED
#define HOP_HARNESS_H_INCLUDED

#include "codec.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define HARNESS_START_TIMEOUT_MS 15000 // hopperd must print its endpoint within this
#define HARNESS_STOP_TIMEOUT_MS  15000 // SIGTERM, then SIGKILL after this

// ---------------------------------------------------------------------------------------
// Brokers

typedef struct {
    int heartbeat_ms;        // --heartbeat; 0 = the broker's default
    long max_message;        // --max-message; 0 = the broker's default
    const char *log_level;   // --log-level; NULL = "info"
    int sndhwm;              // --sndhwm; 0 = the broker's default
    long flow_messages;      // --flow-messages; 0 = the broker's default, -1 = off
    const char *data_dir;    // --data-dir; NULL = data/ in the broker's temp directory (which
                             // is removed with it; a directory given here is the test's)
    const char *const *args; // more flags, NULL-terminated (at most 8); borrowed: they must
                             // outlive the broker object, restarts use them too
} harness_opts_t;

typedef struct harness_broker harness_broker_t;

// Starts hopperd on tcp://127.0.0.1:0 with a fresh temp data directory and reads the
// endpoint it prints. opts may be NULL. Returns NULL (and says why on stderr, with the
// broker's log) when it does not come up within HARNESS_START_TIMEOUT_MS.
harness_broker_t *harness_broker_start(const harness_opts_t *opts);
// Stops the broker if it runs, removes its temp directory, frees. Accepts NULL.
void harness_broker_destroy(harness_broker_t **self_p);

// "tcp://127.0.0.1:PORT", valid while the broker object lives (also across restarts).
const char *harness_broker_endpoint(const harness_broker_t *self);
const char *harness_broker_data_dir(const harness_broker_t *self);
int harness_broker_pid(const harness_broker_t *self); // -1 when not running
// True while the process runs (reaps it when it has exited).
bool harness_broker_alive(harness_broker_t *self);

// SIGTERM, wait up to timeout_ms, then SIGKILL. Returns the exit status (0 = clean; under
// ASan a leak or error makes it non-zero), 128 + signal when it died of one (or had to be
// killed), -1 when it was not running.
int harness_broker_stop(harness_broker_t *self, int timeout_ms);
// kill -9 and reap. Returns 0, or -1 when it was not running.
int harness_broker_kill(harness_broker_t *self);
// Starts the broker again on the same endpoint and data directory (stopping it first with
// SIGTERM if it runs). Returns 0, or -1 if it does not come up.
int harness_broker_restart(harness_broker_t *self);
// Copies the broker's log (its stderr, across restarts) to out, prefixed.
void harness_broker_dump_log(const harness_broker_t *self, FILE *out);
// Ends a test's broker: it must still be running (else its log is dumped) and must exit
// cleanly on SIGTERM (under ASan: without leaks or errors). Destroys it either way and sets
// *self_p to NULL. Returns 0, or -1 when either check failed. Accepts NULL.
int harness_broker_finish(harness_broker_t **self_p);
// Resident set size of the broker process in KiB (from /proc), or -1.
long harness_broker_rss_kb(const harness_broker_t *self);

// ---------------------------------------------------------------------------------------
// Child processes

typedef struct {
    int status;      // exit status; 128 + signal if killed; -1 if it could not start
    bool timed_out;  // killed at the deadline
    char *out;       // stdout, NUL-terminated (never NULL after harness_run)
    size_t out_len;  //
    char *err;       // stderr, NUL-terminated
    size_t err_len;  //
    long elapsed_ms; // from spawn to exit
} harness_run_t;

// Runs argv (argv[0] is a path) with input on stdin (NULL = empty), capturing stdout and
// stderr, killing it at timeout_ms. Returns result->status.
int harness_run(char *const argv[], const void *input, size_t input_len, int timeout_ms,
                harness_run_t *result);
void harness_run_fini(harness_run_t *result);

// Starts argv in the background (stdin from /dev/null, stdout and stderr shared with the test).
// Returns its pid, or -1. It is killed at exit if still running.
int harness_spawn(char *const argv[]);
// Waits up to timeout_ms for pid to exit. Returns its status as harness_run does, or -2 on
// timeout (it is then still running).
int harness_reap(int pid, int timeout_ms);
// kill -9 pid and reap it. Returns its status (128 + 9 normally).
int harness_kill9(int pid);
// The path of the running test binary (for spawning itself as a helper process).
const char *harness_self_path(void);

// The hopper CLI, or NULL when this build has none.
const char *harness_cli_path(void);
const char *harness_hopperd_path(void);

// ---------------------------------------------------------------------------------------
// Time and waiting

uint64_t harness_now_ms(void); // monotonic
// Pauses for ms. Only for polling loops with a deadline, never as synchronisation.
void harness_pause_ms(int ms);
typedef bool(harness_pred_fn)(void *arg);
// Polls pred every few ms until it returns true (-> true) or timeout_ms passes (-> false).
bool harness_wait_until(harness_pred_fn *pred, void *arg, int timeout_ms);

// A fresh directory (mkdtemp under $TMPDIR or /tmp), removed with its contents at exit.
// Returns a static-lifetime string owned by the harness.
const char *harness_tempdir(void);
// rm -rf path. Returns 0 or -1.
int harness_rmtree(const char *path);
// Stops every broker and child still running and removes every temp directory. Runs at exit;
// safe to call more than once.
void harness_cleanup(void);

// ---------------------------------------------------------------------------------------
// Reading msgpack replies (list items, status maps). All return false when absent or of
// another type.

// Positions *value at the value of key in the map at data.
bool harness_map_find(const void *data, size_t size, const char *key, hop_mp_t *value);
bool harness_map_uint(const void *data, size_t size, const char *key, uint64_t *out);
bool harness_map_bool(const void *data, size_t size, const char *key, bool *out);
// Copies a string value, NUL-terminated and truncated to out_size.
bool harness_map_str(const void *data, size_t size, const char *key, char *out, size_t out_size);
// Number of elements of the msgpack array at data, or -1.
long harness_items_count(const void *items, size_t size);
// Finds, in an array of maps, the first map whose string field key equals value; *map and
// *map_size then span that map.
bool harness_items_find(const void *items, size_t size, const char *key, const char *value,
                        const void **map, size_t *map_size);
// harness_items_find then harness_map_uint of field (e.g. queues/"name"/"q1"/"consumers").
bool harness_items_uint(const void *items, size_t size, const char *key, const char *value,
                        const char *field, uint64_t *out);

#endif
