// cli/bench_fleet.h - many light protocol connections in one process, for `hopper bench
// connections`.
//
// A hop_client_t costs an I/O thread and about six file descriptors, so one process cannot
// hold 10,000 of them under a 20,000-file limit. A fleet speaks the wire protocol itself
// (sdk/codec.h) instead: each worker thread owns one ZeroMQ ROUTER socket that connects to
// the broker once per connection, naming each TCP connection with ZMQ_CONNECT_ROUTING_ID, so
// a connection costs one file descriptor here (a DEALER per connection would cost two: its
// TCP socket and its mailbox). Each connection says hello (batch:false), declares an
// exclusive auto-delete server-named queue, binds it to a fanout exchange and consumes it
// without acks, as hop_client_subscribe does; then it only counts broadcast deliveries and
// sends heartbeats.
#ifndef HOP_BENCH_FLEET_H_INCLUDED
#define HOP_BENCH_FLEET_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct hop_fleet hop_fleet_t;

typedef struct {
    const char *endpoint; // the broker
    const char *exchange; // fanout exchange every connection's queue binds to
    const char *name;     // client name said in hello (hopper list connections shows it)
    long count;           // connections
    int workers;          // threads, each with one ROUTER socket (1 to count)
    long messages;        // broadcast messages each connection expects, sequence 0..messages-1
    size_t body_size;     // their body size; bytes 8-15 of a body hold the sequence number
    int timeout_ms;       // a request unanswered this long fails its connection
    int heartbeat_ms;     // asked in hello (100 to 60,000); sent every half of it
} hop_fleet_config_t;

// Counters, summed over the workers.
typedef struct {
    long started;    // connections whose setup began
    long opened;     // connections set up: consuming
    long failed;     // connections that failed (hop_fleet_error says why for the first)
    long deliveries; // distinct broadcast messages received, over all connections
    long complete;   // connections that have every broadcast message
    long dup;        // second copies of a broadcast message
    long bad;        // deliveries of the wrong size or with an impossible sequence number
    long closed;     // connections closed with close-ok
    bool opening;    // a worker is still opening connections
} hop_fleet_stats_t;

// File descriptors a fleet adds to this process: one per connection, one per worker, and
// the ZeroMQ context's own.
long hop_fleet_fds(long count, int workers);

// Starts the workers, which begin opening the connections at once, a few at a time each so
// that the broker's accept backlog never overflows. The first connection that fails stops
// the opening (those under way finish). Returns NULL with the reason in err when the ZeroMQ
// context or a thread cannot be created.
hop_fleet_t *hop_fleet_new(const hop_fleet_config_t *config, char *err, size_t err_size);
// Closes (hop_fleet_close) if not done yet and frees. Accepts NULL.
void hop_fleet_destroy(hop_fleet_t **self_p);

void hop_fleet_stats(hop_fleet_t *self, hop_fleet_stats_t *stats);
// Opens no more connections; those under way finish (Ctrl-C).
void hop_fleet_stop_opening(hop_fleet_t *self);
// Says close on every connection the broker knows, waits up to timeout_ms for the close-oks,
// then closes the sockets and joins the workers. Stats, done_at and error stay valid.
void hop_fleet_close(hop_fleet_t *self);
// When connection i had every broadcast message (CLOCK_MONOTONIC ns), 0 if it has not. Exact
// once hop_fleet_close returned; before, a value may be missed (read without a lock).
int64_t hop_fleet_done_at(const hop_fleet_t *self, long i);
// Copies the first error into buf ("" if none) and returns its HOP_E* code: HOP_OK when none,
// HOP_ECONNECT / HOP_ETIMEOUT when the broker is unreachable or does not answer, HOP_EBROKER
// when it refused a request, HOP_EPROTO for an undecodable frame.
int hop_fleet_error(hop_fleet_t *self, char *buf, size_t size);

#endif
