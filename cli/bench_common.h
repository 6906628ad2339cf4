// cli/bench_common.h - what the files of `hopper bench` share (internal to the CLI): the
// options of a run, exit codes, clocks, number formatting, RESULT lines and JSON fields,
// progress on stderr, the state every thread of a run shares (the first error), client
// helpers, and the workloads' entry points.
//
// bench.c parses the command line and runs the workloads: the flow runs (pubsub, queue,
// latency) in bench_flow.c, connections in bench_connections.c (whose connections
// bench_fleet.c holds), persistent in bench_persistent.c, and smoke, which runs a little of
// each.
#ifndef HOP_BENCH_COMMON_H_INCLUDED
#define HOP_BENCH_COMMON_H_INCLUDED

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <msgpack.h>

#include "hopper.h"

#define HOP_BENCH_NS 1000000000LL
#define HOP_BENCH_MS 1000000LL
// After the last publish, this much silence ends a run.
#define HOP_BENCH_SILENCE_NS (3 * HOP_BENCH_NS)
// Payload bytes 0-7: send time (ns), 8-15: sequence number.
#define HOP_BENCH_HEAD 16

enum {
    HOP_BENCH_EXIT_OK = 0,
    HOP_BENCH_EXIT_LOST = 1, // lost/duplicated messages, or the broker refused a request
    HOP_BENCH_EXIT_USAGE = 2,
    HOP_BENCH_EXIT_UNREACHABLE = 3,
    HOP_BENCH_EXIT_INTERRUPTED = 130,
};

// Workloads, as bits so that an option can list where it applies.
enum {
    HOP_BENCH_PUBSUB = 1 << 0,
    HOP_BENCH_QUEUE = 1 << 1,
    HOP_BENCH_LATENCY = 1 << 2,
    HOP_BENCH_CONNECTIONS = 1 << 3,
    HOP_BENCH_SMOKE = 1 << 4,
    HOP_BENCH_PERSISTENT = 1 << 5,
};

// The options of one run.
typedef struct {
    long count;        // messages (pubsub, queue) or clients (connections)
    long size;         // payload bytes
    long subscribers;  // pubsub
    long producers;    // queue
    long consumers;    // queue
    long prefetch;     // queue, persistent: unacked deliveries per consumer (0 = unlimited)
    long window;       // persistent: unconfirmed publishes in flight, at most
    long ack_every;    // queue: 1 = ack each message, K = ack(multiple) every K
    long workers;      // connections: threads that hold the connections
    long messages;     // connections: messages broadcast
    double rate;       // latency: messages per second
    double duration;   // latency: seconds
    bool curve;        // latency: at 10, 50 and 90 % of the maximum throughput instead
    double max_rate;   // latency --curve: the maximum (msgs/s); 0 = measure it with a W1 run
    const char *name;  // label in RESULT lines and JSON (default W1, W2, W3-ack1, ...)
    bool json;         // one JSON object on stdout instead of the table
    bool result_lines; // also "RESULT hopper <label> <metric> <value>" lines
    bool help;
} hop_bench_opts_t;

// ---------------------------------------------------------------------------------------
// Workloads: each prints its figures (unless o->json), fills obj with them and returns the
// exit code.

// pubsub, queue or latency (workload: HOP_BENCH_PUBSUB, _QUEUE or _LATENCY), in bench_flow.c.
int hop_bench_run_flow(int workload, const hop_bench_opts_t *o, const char *endpoint,
                       int timeout_ms, json_t *obj);
// connections, in bench_connections.c.
int hop_bench_run_connections(const hop_bench_opts_t *o, const char *endpoint, int timeout_ms,
                              json_t *obj);
// persistent (W4), in bench_persistent.c.
int hop_bench_run_persistent(const hop_bench_opts_t *o, const char *endpoint, int timeout_ms,
                             json_t *obj);

// ---------------------------------------------------------------------------------------
// Small helpers: clocks, formatting, output, /proc

// Set by the Ctrl-C handler: every run winds down, cleans up, and the exit is 130.
extern volatile sig_atomic_t hop_bench_interrupted;

// CLOCK_MONOTONIC in ns, and sleeping on it (an absolute deadline, or a duration).
int64_t hop_bench_now(void);
void hop_bench_sleep_until(int64_t t);
void hop_bench_sleep(int64_t ns);
double hop_bench_secs(int64_t ns);
// count per second over ns; 0 when ns <= 0.
double hop_bench_per_sec(double count, int64_t ns);
// A number rounded to an integer with thousands separators. The result lives in a small ring
// of buffers: up to 8 may appear in one printf. Main thread only.
const char *hop_bench_num(double value);
// Bytes as "12.3 MiB", or "unknown" when negative. A ring of 4 buffers. Main thread only.
const char *hop_bench_mib(int64_t bytes);
// Queues a RESULT line (when o->result_lines) until hop_bench_results_flush prints them after
// the run's table. Main thread only.
void hop_bench_result(const hop_bench_opts_t *o, const char *label, const char *metric,
                      double value);
void hop_bench_results_flush(void);
// Sets one JSON field of obj (reals rounded to 3 decimals).
void hop_bench_jint(json_t *obj, const char *key, long long value);
void hop_bench_jreal(json_t *obj, const char *key, double value);
void hop_bench_jstr(json_t *obj, const char *key, const char *value);
// A unique name per run ("prefix.<pid>.<n>"), so that runs never share (or clean up) each
// other's resources.
void hop_bench_unique(char *buf, size_t size, const char *prefix);
// qsort comparison of int64_t.
int hop_bench_cmp_i64(const void *a, const void *b);

// Progress on stderr: from the third second, once a second on a tty (overwriting the line),
// else one line every 5 s so that logs stay readable.
typedef struct {
    bool tty;
    bool shown;      // a tty line is on screen
    int64_t next;    // when the next line is due
    int64_t start;   // when the phase started
    int64_t last_t;  // for rates between two lines
    double last_val; // value at last_t
} hop_bench_progress_t;

void hop_bench_progress_init(hop_bench_progress_t *p);
// Returns the rate of value since the last line when a line is due, else -1.
double hop_bench_progress_due(hop_bench_progress_t *p, double value);
void hop_bench_progress_print(hop_bench_progress_t *p, const char *fmt, ...);
// Clears the tty line, if one is shown.
void hop_bench_progress_end(hop_bench_progress_t *p);

// What this process uses, for the per-client cost of the connections workload.
typedef struct {
    long fds;     // open file descriptors
    long threads; // threads of this process
    long rss_kib; // resident set
} hop_bench_usage_t;

// Reads them from /proc/self (0 when unknown).
void hop_bench_usage(hop_bench_usage_t *u);

// ---------------------------------------------------------------------------------------
// What every thread of a run shares: where the broker is, and the first error.

typedef struct {
    const char *endpoint; // NULL: the SDK default
    int timeout_ms;       // <= 0: the SDK default
    atomic_bool stop;     // set on the first error or on Ctrl-C: every thread winds down
    pthread_mutex_t lock; // guards error and exit_code
    char error[512];      // the first error, "" if none
    int exit_code;        // what the first error deserves
} hop_bench_ctl_t;

// The caller destroys ctl->lock when the run is over.
void hop_bench_ctl_init(hop_bench_ctl_t *ctl, const char *endpoint, int timeout_ms);
// The run is stopping: an error, or Ctrl-C.
bool hop_bench_stopped(hop_bench_ctl_t *ctl);
// Records the first error (rc: the SDK code, which picks the exit code); the run goes on.
void hop_bench_note(hop_bench_ctl_t *ctl, int rc, const char *fmt, ...);
// Records the first error and stops the run.
void hop_bench_fail(hop_bench_ctl_t *ctl, int rc, const char *fmt, ...);
// The client's last error text, else hop_strerror(rc). client may be NULL.
const char *hop_bench_errtext(hop_client_t *client, int rc);
// The endpoint the clients connect to: ctl's, else $HOPPER_BROKER, else the SDK default.
const char *hop_bench_endpoint_text(const hop_bench_ctl_t *ctl);
// Creates and connects a client named name (no reconnect: a lost connection fails the run).
// A failure fails the run and returns NULL.
hop_client_t *hop_bench_client_open_or_fail(hop_bench_ctl_t *ctl, const char *name);
// Reads rss_bytes and connections from the broker's status; -1 when unknown. admin and
// connections_p may be NULL.
void hop_bench_broker_status(hop_client_t *admin, int64_t *rss_p, int64_t *connections_p);
// Calls fn with each key and value of the broker's status (msgpack objects, valid during the
// call). False when the status could not be read (admin NULL, or the broker did not answer).
typedef void(hop_bench_status_fn)(const msgpack_object *key, const msgpack_object *value,
                                  void *arg);
bool hop_bench_status_each(hop_client_t *admin, hop_bench_status_fn *fn, void *arg);
// Whether a msgpack key is the string name.
bool hop_bench_key_is(const msgpack_object *key, const char *name);

#endif
