// sdk/client_io.h - private to client_io.c and client_outbox.c: the connection's socket and
// what travels through it.
//
// Who owns the socket. Whoever holds `lock` does; in steady state that is the user thread, for
// the length of one socket operation (a publish writes to the socket on the caller's thread, a
// receive reads from it: zmtp.h), so the mutex is uncontended and costs two atomic
// instructions. The I/O thread (client_io.c) takes it only when it has something to do: every
// half heartbeat interval, to send a heartbeat when nothing was sent for the interval, to read
// the socket when the user thread has not (a consumer busy in a handler), and to say the broker
// is lost when nothing was heard for its timeout (with trylock: a user thread in a call does
// these itself); and, waiting for the lock, when the user thread left messages in the outbox.
// A user thread that waits inside the SDK holds the socket while it polls, but never longer
// than half a heartbeat interval at a time, and sends the outbox itself before it polls. No
// callback of the application ever runs with the lock held.
//
// Batching (PROTOCOL.md 2.1). A message goes to the socket at once, as it is, when nothing waits
// before it and the previous message went at least HOP_IO_PACE_NS earlier: an idle client adds
// no latency. A caller that publishes faster than that fills the outbox instead: messages are
// appended to the newest chunk's records (one copy), and the user thread writes the outbox in
// one system call when a chunk is full, when its oldest message is HOP_IO_PACE_NS old, and
// before it waits for anything. One system call per batch instead of one per message, and a
// batch waits at most HOP_IO_PACE_NS while the caller keeps calling. For a caller that stops
// calling with messages in the outbox, the I/O thread is woken once (`watching`); it looks at
// the outbox after HOP_IO_PACE_NS, then at growing intervals up to HOP_IO_NAP_MAX_NS, and writes
// it only once its oldest message is older than the user thread would have let it get. So the
// two threads never contend for the socket while the caller is busy.
#ifndef HOP_CLIENT_IO_H_INCLUDED
#define HOP_CLIENT_IO_H_INCLUDED

#include "client_internal.h"
#include "zmtp.h"

#include <pthread.h>
#include <stdatomic.h>

// A message closer than this to the previous one is batched, and a batch is written once its
// oldest message is this old.
#define HOP_IO_PACE_NS 40000
// The I/O thread looks at a non-empty outbox at least this often.
#define HOP_IO_NAP_MAX_NS 200000
// Messages the I/O thread reads ahead for a user thread that is away, at most. Past it they
// stay in the kernel's socket buffers, which push back to the broker (whose pipe to us fills, so
// it pauses the consumer), as when nothing reads at all: a slow handler never makes the
// client's memory grow without bound.
#define HOP_IO_STASH_MAX 1024

// What waits in the outbox, in order: a run of records that may go as one batch (count > 0),
// or one message that travels on its own (count 0: marked alone, a large body, or an empty
// body frame).
typedef struct hop_chunk {
    struct hop_chunk *next;
    msgpack_sbuffer records; // count > 0: the records, back to back (PROTOCOL.md 2.1)
    uint32_t count;          // records in it; 0 for a message of its own
    zmq_msg_t frame[2];      // count 0: header, body
    int frames;              // count 0: frames in use
    size_t bytes;            // of its messages, headers and bodies (for box_bytes)
} hop_chunk_t;

// A message the I/O thread read while the user thread was away, kept for it in order.
typedef struct hop_stashed {
    struct hop_stashed *next;
    zmq_msg_t frame[2]; // header, body
    int frames;         // 1 or 2
    bool extra;         // it had more than two frames (dropped)
} hop_stashed_t;

struct hop_client_io {
    pthread_mutex_t lock; // its holder owns the socket and every field below but term/watching
    hop_zmtp_t *conn;     // the broker connection
    int fd;               // its descriptor, polled by the I/O thread without the lock
    int wake[2];          // pipe: the user thread wakes the I/O thread (term, outbox pending)
    pthread_t thread;     // runs s_io_run (client_io.c)
    atomic_bool term;     // the I/O thread ends
    atomic_bool watching; // the outbox holds messages: the I/O thread sends them
    int heartbeat_ms;     // send a heartbeat after this long without sending
    int timeout_ms;       // the broker is lost after this long without hearing it

    // The outbox (client_outbox.c)
    hop_chunk_t *box_head; // oldest
    hop_chunk_t *box_tail; // newest, the one appended to
    hop_chunk_t *box_free; // chunks to reuse
    unsigned box_spare;    // chunks in box_free
    hop_chunk_t *done;     // the last chunk taken, back to box_free at the next take
    size_t box_bytes;      // of the messages in the outbox's chunks (at most HOP_IO_BOX_MAX)
    zmq_msg_t out[2];      // the message (or batch) the socket has not taken yet
    int out_frames;        // frames of out in use; 0 = none
    uint64_t put_at;       // ns, CLOCK_MONOTONIC: when the last message was put (pacing)
    uint64_t box_since;    // ns: when the outbox last stopped being empty

    // Messages read by the I/O thread, oldest first
    hop_stashed_t *stash_head;
    hop_stashed_t *stash_tail;
    size_t stash_count; // at most HOP_IO_STASH_MAX

    // Liveness. Counters instead of a clock read per message: whoever looks at the clock
    // (s_liveness) notes the time at which it saw them change.
    uint64_t rx, tx;           // messages received, sent (heartbeats included)
    uint64_t rx_seen, tx_seen; // their values at the last look
    int64_t heard_at;          // ms: when rx was last seen to change
    int64_t sent_at;           // ms: when tx was last seen to change
    bool lost;                 // nothing heard for timeout_ms, or the socket failed
    int error;                 // errno the socket failed with (0: it did not)
};

// Nanoseconds on CLOCK_MONOTONIC.
uint64_t hop_io_now_ns(void);

// The socket failed with errno: the connection is lost, and the user thread reports it once it
// has read what came before. The first failure is kept (the caller holds the lock).
void hop_io_failed(hop_client_io_t *self);

// client_outbox.c (the caller holds the lock)

// Sends a message now if nothing waits before it and the client is not publishing fast (the
// pacing above), else queues it.
void hop_io_put(hop_client_io_t *self, const void *header, size_t header_size, const void *body,
                size_t body_size, bool has_body, bool alone);
// Sends queued messages until the socket would block. Returns messages sent.
int hop_io_flush(hop_client_io_t *self);
// Whether messages wait in the outbox.
bool hop_io_pending(const hop_client_io_t *self);
// Reads what the socket has into the stash, up to HOP_IO_STASH_MAX (broker heartbeats are
// dropped).
void hop_io_stash_all(hop_client_io_t *self);
// For a user thread that does not read: what arrived goes into the stash, so that broker
// heartbeats count; with the stash full, it stays in the socket but counts as a sign of life.
void hop_io_read_ahead(hop_client_io_t *self);
// Moves the oldest stashed message into msg (as hop_inmsg_recv). Returns 0, 1, or -1 when
// the stash is empty.
int hop_io_unstash(hop_client_io_t *self, hop_inmsg_t *msg);
// Frees the outbox and the stash.
void hop_io_free_queues(hop_client_io_t *self);

#endif
