// sdk/zmtp.h - private to libhopper: the client's end of a broker connection, speaking ZMTP 3.0
// (rfc.zeromq.org/spec/23, the NULL mechanism) as a DEALER over a plain TCP or Unix socket.
//
// Why not a libzmq DEALER. libzmq does every read and write on an I/O thread of its own, so a
// message crosses two more threads in the client than the socket itself requires: publish ->
// ZeroMQ's I/O thread -> broker, and broker -> ZeroMQ's I/O thread -> the thread that asked.
// Each crossing is a wake-up, and at a few thousand messages a second the wake-ups are most of
// a message's latency (ARCHITECTURE.md, "The SDK's transport"). Here the thread that publishes
// writes to the socket and the thread that receives reads from it. The broker still uses
// libzmq's ROUTER: the wire is ZMTP either way.
//
// Scope: exactly what a DEALER talking to hopperd needs. Whole messages (1..n frames) out and
// in; PING answered with PONG; other commands ignored; no reconnect (the SDK opens a new
// connection and says hello again, as it did with a fresh DEALER). Not thread-safe: the
// client's socket lock (client_io.h) serialises its users.
#ifndef HOP_ZMTP_H_INCLUDED
#define HOP_ZMTP_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>
#include <zmq.h>

typedef struct hop_zmtp hop_zmtp_t;

#define HOP_ZMTP_FRAME_MAX ((uint64_t)1 << 31) // a larger frame from the peer fails the connection

// Connects to endpoint ("tcp://host:port", host a name, IPv4 or [IPv6]; or "ipc://path") and
// completes the handshake before deadline (ms on CLOCK_MONOTONIC, as hop_client_now). A refused
// connection is retried every 50 ms until then, as libzmq does, so a broker that is starting
// is found. NULL on failure, with the reason in err and *invalid set when the endpoint itself
// is wrong (no retry can help).
hop_zmtp_t *hop_zmtp_connect(const char *endpoint, int64_t deadline, char *err, size_t err_size,
                             bool *invalid);
void hop_zmtp_destroy(hop_zmtp_t **self_p);

// The socket's descriptor, to poll: POLLIN when hop_zmtp_recv may have something (check
// hop_zmtp_buffered first: a message may wait in our buffer with nothing left in the kernel),
// POLLOUT when hop_zmtp_pending bytes can go.
int hop_zmtp_fd(const hop_zmtp_t *self);

// Sends one message of n frames (n >= 1), written at once as far as the kernel takes it; what
// it does not take is kept and written by the next send or hop_zmtp_flush. Returns 0 when the
// message was taken; -1 with errno EAGAIN when bytes of an earlier message still wait for the
// kernel (nothing taken: poll POLLOUT), or another errno when the connection failed.
int hop_zmtp_send(hop_zmtp_t *self, const struct iovec *frames, int n);
// Writes what waits. Returns 0 when nothing waits any more, 1 when some still does, -1 when
// the connection failed.
int hop_zmtp_flush(hop_zmtp_t *self);
// Whether bytes wait to be written.
bool hop_zmtp_pending(const hop_zmtp_t *self);

// Receives one whole message without waiting: its first max frames into frames (initialised
// here; the caller closes them), counting any further frames (dropped) in *extra. Returns the
// frames stored (>= 1), 0 when no whole message has arrived yet, or -1 when the connection
// is closed or failed (errno: ECONNRESET when the peer closed it, EPROTO when it broke the
// protocol).
int hop_zmtp_recv(hop_zmtp_t *self, zmq_msg_t *frames, int max, int *extra);
// Whether received bytes wait in our buffer (a whole message may be there without a read).
bool hop_zmtp_buffered(const hop_zmtp_t *self);

#endif
