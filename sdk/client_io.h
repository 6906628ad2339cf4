// sdk/client_io.h - private to client_io.c and client_outbox.c: the connection's socket and
// what travels through it.
//
// Who owns the DEALER. Whoever holds `lock` does; in steady state that is the user thread, for
// the length of one socket operation (a publish is a zmq_send on the caller's thread, a
// receive a zmq_recv), so the mutex is uncontended and costs two atomic instructions. The
// I/O thread (client_io.c) takes it with trylock only when it has something to do: every half
// heartbeat interval, to send a heartbeat when nothing was sent for the interval, to read the
// socket when the user thread has not (a consumer busy in a handler), and to say the broker is
// lost when nothing was heard for its timeout; and when the outbox still holds messages that
// the socket could not take, as soon as ZeroMQ says it can (it polls the socket's ZMQ_FD
// without the lock, which only reads a file descriptor). A user thread that waits inside the
// SDK holds the socket while it polls, but never longer than half a heartbeat interval at a
// time, and does the same duties itself. No callback of the application ever runs with the
// lock held.
//
// Batching (PROTOCOL.md 2.1). The DEALER has a small send high-water mark, so ZeroMQ refuses a
// message (EAGAIN) once a few are waiting for its I/O thread: that is the sign that the caller
// publishes faster than the socket drains. From then on messages go into the outbox, appended
// to the newest chunk's records (one copy, no ZeroMQ message), and each chunk goes as one
// batch as soon as the socket takes it. An idle socket takes a message at once, as it is.
#ifndef HOP_CLIENT_IO_H_INCLUDED
#define HOP_CLIENT_IO_H_INCLUDED

#include "client_internal.h"

#include <pthread.h>
#include <stdatomic.h>

#define HOP_IO_SNDHWM 16 // messages waiting for ZeroMQ's I/O thread before we batch
// Messages the I/O thread reads ahead for a user thread that is away, at most. Past it they
// stay in ZeroMQ, whose high-water mark pushes back to the broker (which then pauses the
// consumer), as when nothing reads at all: a slow handler never makes the client's memory grow
// without bound.
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
} hop_chunk_t;

// A message the I/O thread read while the user thread was away, kept for it in order.
typedef struct hop_stashed {
    struct hop_stashed *next;
    zmq_msg_t frame[2]; // header, body
    int frames;         // 1 or 2
    bool extra;         // it had more than two frames (dropped)
} hop_stashed_t;

struct hop_client_io {
    pthread_mutex_t lock; // its holder owns the DEALER and every field below but term/watching
    void *dealer;         // the broker connection
    int zfd;              // the DEALER's ZMQ_FD, polled by the I/O thread without the lock
    int wake[2];          // pipe: the user thread wakes the I/O thread (term, outbox pending)
    pthread_t thread;     // runs s_io_run (client_io.c)
    atomic_bool term;     // the I/O thread ends
    atomic_bool watching; // the outbox holds messages the socket refused: watch zfd for them
    int heartbeat_ms;     // send a heartbeat after this long without sending
    int timeout_ms;       // the broker is lost after this long without hearing it

    // The outbox (client_outbox.c)
    hop_chunk_t *box_head; // oldest
    hop_chunk_t *box_tail; // newest, the one appended to
    hop_chunk_t *box_free; // chunks to reuse
    unsigned box_spare;    // chunks in box_free
    hop_chunk_t *done;     // the last chunk taken, back to box_free at the next take
    zmq_msg_t out[2];      // the message (or batch) the DEALER has not accepted yet
    int out_frames;        // frames of out in use; 0 = none
    int out_sent;          // frames of out already sent

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
    bool lost;                 // nothing heard for timeout_ms
};

// client_outbox.c (the caller holds the lock)

// Sends a message now if the socket takes it and nothing waits before it, else queues it.
void hop_io_put(hop_client_io_t *self, const void *header, size_t header_size, const void *body,
                size_t body_size, bool has_body, bool alone);
// Sends queued messages until the DEALER would block. Returns messages sent.
int hop_io_flush(hop_client_io_t *self);
// Whether messages wait in the outbox.
bool hop_io_pending(const hop_client_io_t *self);
// Reads what the DEALER has into the stash, up to HOP_IO_STASH_MAX (broker heartbeats are
// dropped).
void hop_io_stash_all(hop_client_io_t *self);
// Moves the oldest stashed message into msg (as hop_inmsg_recv). Returns 0, 1, or -1 when
// the stash is empty.
int hop_io_unstash(hop_client_io_t *self, hop_inmsg_t *msg);
// Frees the outbox and the stash.
void hop_io_free_queues(hop_client_io_t *self);

#endif
