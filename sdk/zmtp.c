// sdk/zmtp.c - ZMTP 3.0 as a DEALER over a plain stream socket (zmtp.h says why).
//
// The wire (rfc.zeromq.org/spec/23): both peers send a 64-byte greeting (signature, version,
// mechanism "NULL", as-server, filler), then a READY command carrying their metadata
// (Socket-Type, Identity); after that, frames. A frame is one flags byte (bit 0 MORE, bit 1
// LONG, bit 2 COMMAND), its size in one byte or, with LONG, eight bytes in network order, then
// its bytes. A message is a run of frames whose last one has MORE clear.
#include "zmtp.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define S_IN_CAP     (64 << 10) // read buffer; larger frame bodies are read straight into their frame
#define S_DIRECT_MIN (16 << 10) // a body at least this big skips the read buffer
#define S_KEEP       4          // frames of one message kept, at most
#define S_CMD_MAX    512        // a command frame larger than this breaks the protocol here
#define S_RETRY_MS   50         // between connection attempts
#define S_FLAG_MORE  0x01
#define S_FLAG_LONG  0x02
#define S_FLAG_CMD   0x04

struct hop_zmtp {
    int fd;
    bool failed; // the connection broke: every call fails from now on
    int error;   // errno it broke with

    // Bytes taken for sending that the kernel has not taken yet: [out_at, out_size)
    uint8_t *out;
    size_t out_at, out_size, out_cap;

    // Bytes read and not parsed yet: [in_at, in_end) of in
    uint8_t *in;
    size_t in_at, in_end;

    // The frame being read
    bool in_frame; // its header was parsed; left bytes of it are still to come
    bool more;     // more frames follow it in its message
    bool command;  // a command frame, collected in cmd
    uint64_t left; // bytes of it still to come
    uint8_t *dst;  // where they go (NULL: dropped)
    uint8_t cmd[S_CMD_MAX];
    size_t cmd_size;

    // The message being read
    zmq_msg_t part[S_KEEP];
    int parts; // frames kept in part
    int extra; // frames dropped past the caller's max
};

static int64_t
s_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int
s_fail(hop_zmtp_t *self, int error)
{
    if (!self->failed) {
        self->failed = true;
        self->error = error;
    }
    errno = self->error;
    return -1;
}

// ---------------------------------------------------------------------------------------
// Connecting

// Waits until fd is ready for events or deadline passes. Returns 1, 0 on timeout, -1 on error.
static int
s_wait(int fd, short events, int64_t deadline)
{
    for (;;) {
        int64_t left = deadline - s_now();
        if (left <= 0)
            return 0;
        struct pollfd p = {fd, events, 0};
        int n = poll(&p, 1, (int)(left > 1000000 ? 1000000 : left));
        if (n > 0)
            return 1;
        if (n < 0 && errno != EINTR)
            return -1;
    }
}

static int
s_write_all(int fd, const void *data, size_t size, int64_t deadline)
{
    const uint8_t *p = data;
    while (size > 0) {
        ssize_t n = send(fd, p, size, MSG_NOSIGNAL);
        if (n > 0) {
            p += n;
            size -= (size_t)n;
        } else if (n < 0 && errno != EAGAIN && errno != EINTR)
            return -1;
        else if (n < 0 && errno == EAGAIN && s_wait(fd, POLLOUT, deadline) <= 0)
            return errno = ETIMEDOUT, -1;
    }
    return 0;
}

static int
s_read_all(int fd, void *data, size_t size, int64_t deadline)
{
    uint8_t *p = data;
    while (size > 0) {
        ssize_t n = recv(fd, p, size, 0);
        if (n > 0) {
            p += n;
            size -= (size_t)n;
        } else if (n == 0)
            return errno = ECONNRESET, -1;
        else if (errno != EAGAIN && errno != EINTR)
            return -1;
        else if (errno == EAGAIN && s_wait(fd, POLLIN, deadline) <= 0)
            return errno = ETIMEDOUT, -1;
    }
    return 0;
}

// Parses endpoint into an address list (freed by the caller with freeaddrinfo, or, for ipc,
// a single static entry). Returns 0, or -1 with the reason in err.
static int
s_resolve(const char *endpoint, struct addrinfo **list, struct sockaddr_un *un, char *err,
          size_t err_size)
{
    if (strncmp(endpoint, "ipc://", 6) == 0) {
        const char *path = endpoint + 6;
        if (!*path || strlen(path) >= sizeof un->sun_path) {
            snprintf(err, err_size, "ipc path must be 1 to %zu bytes", sizeof un->sun_path - 1);
            return -1;
        }
        memset(un, 0, sizeof *un);
        un->sun_family = AF_UNIX;
        memcpy(un->sun_path, path, strlen(path));
        *list = NULL;
        return 0;
    }
    if (strncmp(endpoint, "tcp://", 6) != 0) {
        snprintf(err, err_size, "the SDK connects over tcp://host:port or ipc://path");
        return -1;
    }
    const char *hostport = endpoint + 6;
    const char *colon = strrchr(hostport, ':');
    if (!colon || colon == hostport || !colon[1]) {
        snprintf(err, err_size, "expected tcp://host:port");
        return -1;
    }
    char host[256], port[16];
    const char *h = hostport;
    size_t hlen = (size_t)(colon - hostport);
    if (*h == '[' && hlen >= 2 && h[hlen - 1] == ']') {
        h++;
        hlen -= 2;
    }
    char *end;
    long p = strtol(colon + 1, &end, 10);
    if (*end || p < 1 || p > 65535 || hlen == 0 || hlen >= sizeof host) {
        snprintf(err, err_size, "expected tcp://host:port with a port from 1 to 65535");
        return -1;
    }
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    snprintf(port, sizeof port, "%ld", p);
    struct addrinfo hints = {0};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    int rc = getaddrinfo(host, port, &hints, list);
    if (rc) {
        snprintf(err, err_size, "cannot resolve '%s': %s", host, gai_strerror(rc));
        return -1;
    }
    return 0;
}

// One connection attempt to addr. Returns the connected socket, or -1 (errno).
static int
s_dial(int family, const struct sockaddr *addr, socklen_t len, int64_t deadline)
{
    int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, addr, len) < 0) {
        if (errno != EINPROGRESS) {
            int e = errno;
            close(fd);
            return errno = e, -1;
        }
        int e = 0;
        socklen_t elen = sizeof e;
        int w = s_wait(fd, POLLOUT, deadline);
        if (w <= 0)
            e = w == 0 ? ETIMEDOUT : errno;
        else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &elen) < 0)
            e = errno;
        if (e) {
            close(fd);
            return errno = e, -1;
        }
    }
    if (family != AF_UNIX) {
        int one = 1; // a message goes when sent: the SDK batches by itself (client_outbox.c)
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    return fd;
}

// Writes one command frame (short: commands here are small) into buf. Returns its size.
static size_t
s_command(uint8_t *buf, const char *name, const uint8_t *body, size_t body_size)
{
    size_t name_len = strlen(name);
    size_t size = 1 + name_len + body_size;
    buf[0] = S_FLAG_CMD;
    buf[1] = (uint8_t)size;
    buf[2] = (uint8_t)name_len;
    memcpy(buf + 3, name, name_len);
    if (body_size)
        memcpy(buf + 3 + name_len, body, body_size);
    return 2 + size;
}

// Greeting and READY both ways, before deadline.
static int
s_handshake(int fd, int64_t deadline, char *err, size_t err_size)
{
    uint8_t greeting[64] = {0xff, 0, 0, 0, 0, 0, 0, 0, 1, 0x7f, 3, 0, 'N', 'U', 'L', 'L'};
    uint8_t peer[64];
    if (s_write_all(fd, greeting, sizeof greeting, deadline) ||
        s_read_all(fd, peer, sizeof peer, deadline)) {
        snprintf(err, err_size, "no ZMTP greeting: %s", strerror(errno));
        return -1;
    }
    if (peer[0] != 0xff || peer[9] != 0x7f || peer[10] < 3 || memcmp(peer + 12, "NULL\0", 5)) {
        snprintf(err, err_size, "the peer is not a ZMTP 3 endpoint with the NULL mechanism");
        return errno = EPROTO, -1;
    }
    // Metadata: Socket-Type DEALER and an empty Identity (the ROUTER names us itself).
    static const uint8_t meta[] = {11,  'S', 'o', 'c', 'k', 'e', 't', '-', 'T', 'y', 'p', 'e',
                                   0,   0,   0,   6,   'D', 'E', 'A', 'L', 'E', 'R', 8,   'I',
                                   'd', 'e', 'n', 't', 'i', 't', 'y', 0,   0,   0,   0};
    uint8_t ready[64];
    size_t size = s_command(ready, "READY", meta, sizeof meta);
    if (s_write_all(fd, ready, size, deadline)) {
        snprintf(err, err_size, "cannot send READY: %s", strerror(errno));
        return -1;
    }
    // The peer's READY: one short or long command frame.
    uint8_t head[9];
    if (s_read_all(fd, head, 2, deadline)) {
        snprintf(err, err_size, "no READY from the peer: %s", strerror(errno));
        return -1;
    }
    uint64_t len = head[1];
    if (head[0] & S_FLAG_LONG) {
        if (s_read_all(fd, head + 2, 7, deadline)) {
            snprintf(err, err_size, "no READY from the peer: %s", strerror(errno));
            return -1;
        }
        len = 0;
        for (int i = 1; i < 9; i++)
            len = len << 8 | head[i];
    }
    uint8_t body[4096];
    if (!(head[0] & S_FLAG_CMD) || len < 6 || len > sizeof body ||
        s_read_all(fd, body, (size_t)len, deadline) || body[0] != 5 ||
        memcmp(body + 1, "READY", 5) != 0) {
        snprintf(err, err_size, "the peer did not complete the ZMTP handshake");
        return errno = EPROTO, -1;
    }
    return 0;
}

hop_zmtp_t *
hop_zmtp_connect(const char *endpoint, int64_t deadline, char *err, size_t err_size, bool *invalid)
{
    *invalid = false;
    struct addrinfo *list = NULL;
    struct sockaddr_un un;
    if (s_resolve(endpoint, &list, &un, err, err_size)) {
        *invalid = true;
        errno = EINVAL;
        return NULL;
    }
    int fd = -1;
    int last = ETIMEDOUT;
    while (fd < 0) {
        if (list) {
            for (struct addrinfo *a = list; a && fd < 0; a = a->ai_next)
                fd = s_dial(a->ai_family, a->ai_addr, a->ai_addrlen, deadline);
        } else
            fd = s_dial(AF_UNIX, (const struct sockaddr *)&un, sizeof un, deadline);
        if (fd >= 0)
            break;
        last = errno;
        // Nobody listens yet (or the address cannot be reached now): try again, as libzmq
        // would, until the deadline.
        int64_t left = deadline - s_now();
        if (left <= 0)
            break;
        struct timespec pause = {0, (left < S_RETRY_MS ? left : S_RETRY_MS) * 1000000L};
        nanosleep(&pause, NULL);
    }
    if (list)
        freeaddrinfo(list);
    if (fd < 0) {
        snprintf(err, err_size, "%s", strerror(last));
        errno = ETIMEDOUT;
        return NULL;
    }
    if (s_handshake(fd, deadline, err, err_size)) {
        int e = errno;
        close(fd);
        errno = e;
        return NULL;
    }
    hop_zmtp_t *self = calloc(1, sizeof *self);
    if (!self)
        abort();
    self->fd = fd;
    self->in = malloc(S_IN_CAP);
    if (!self->in)
        abort();
    for (int i = 0; i < S_KEEP; i++)
        zmq_msg_init(&self->part[i]);
    return self;
}

void
hop_zmtp_destroy(hop_zmtp_t **self_p)
{
    hop_zmtp_t *self = *self_p;
    if (!self)
        return;
    close(self->fd);
    for (int i = 0; i < S_KEEP; i++)
        zmq_msg_close(&self->part[i]);
    free(self->out);
    free(self->in);
    free(self);
    *self_p = NULL;
}

int
hop_zmtp_fd(const hop_zmtp_t *self)
{
    return self->fd;
}

// ---------------------------------------------------------------------------------------
// Sending

// Keeps bytes the kernel did not take.
static void
s_keep(hop_zmtp_t *self, const void *data, size_t size)
{
    if (self->out_at == self->out_size)
        self->out_at = self->out_size = 0;
    if (self->out_size + size > self->out_cap) {
        size_t cap = self->out_cap ? self->out_cap : 4096;
        while (cap < self->out_size + size)
            cap *= 2;
        self->out = realloc(self->out, cap);
        if (!self->out)
            abort();
        self->out_cap = cap;
    }
    memcpy(self->out + self->out_size, data, size);
    self->out_size += size;
}

bool
hop_zmtp_pending(const hop_zmtp_t *self)
{
    return self->out_at < self->out_size;
}

int
hop_zmtp_flush(hop_zmtp_t *self)
{
    if (self->failed)
        return s_fail(self, 0);
    while (self->out_at < self->out_size) {
        ssize_t n = send(self->fd, self->out + self->out_at, self->out_size - self->out_at,
                         MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0)
            self->out_at += (size_t)n;
        else if (errno == EAGAIN)
            return 1;
        else if (errno != EINTR)
            return s_fail(self, errno);
    }
    self->out_at = self->out_size = 0;
    // A large buffer once needed (a big message into a full socket) is not kept.
    if (self->out_cap > (256 << 10)) {
        free(self->out);
        self->out = NULL;
        self->out_cap = 0;
    }
    return 0;
}

int
hop_zmtp_send(hop_zmtp_t *self, const struct iovec *frames, int n)
{
    if (self->failed)
        return s_fail(self, 0);
    int rc = hop_zmtp_flush(self);
    if (rc < 0)
        return -1;
    if (rc > 0)
        return errno = EAGAIN, -1;
    enum { S_MAX = 8 };
    if (n < 1 || n > S_MAX)
        return errno = EINVAL, -1;
    uint8_t heads[S_MAX][9];
    struct iovec iov[2 * S_MAX];
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        uint64_t size = frames[i].iov_len;
        uint8_t flags = i + 1 < n ? S_FLAG_MORE : 0;
        size_t hsize;
        if (size > 255) {
            heads[i][0] = flags | S_FLAG_LONG;
            for (int b = 0; b < 8; b++)
                heads[i][1 + b] = (uint8_t)(size >> (56 - 8 * b));
            hsize = 9;
        } else {
            heads[i][0] = flags;
            heads[i][1] = (uint8_t)size;
            hsize = 2;
        }
        iov[2 * i] = (struct iovec){heads[i], hsize};
        iov[2 * i + 1] = frames[i];
        total += hsize + size;
    }
    struct msghdr mh = {0};
    mh.msg_iov = iov;
    mh.msg_iovlen = (size_t)(2 * n);
    ssize_t sent;
    do
        sent = sendmsg(self->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
    while (sent < 0 && errno == EINTR);
    if (sent < 0) {
        if (errno != EAGAIN)
            return s_fail(self, errno);
        sent = 0;
    }
    if ((size_t)sent == total)
        return 0;
    // The rest waits for the kernel: the message counts as taken.
    size_t skip = (size_t)sent;
    for (int i = 0; i < 2 * n; i++) {
        if (skip >= iov[i].iov_len) {
            skip -= iov[i].iov_len;
            continue;
        }
        s_keep(self, (const uint8_t *)iov[i].iov_base + skip, iov[i].iov_len - skip);
        skip = 0;
    }
    return 0;
}

// ---------------------------------------------------------------------------------------
// Receiving

bool
hop_zmtp_buffered(const hop_zmtp_t *self)
{
    return self->in_at < self->in_end;
}

// Reads up to size bytes into dst. Returns the bytes read, 0 when none were there, -1 when the
// connection is closed or failed.
static ssize_t
s_recv(hop_zmtp_t *self, void *dst, size_t size)
{
    for (;;) {
        ssize_t n = recv(self->fd, dst, size, MSG_DONTWAIT);
        if (n > 0)
            return n;
        if (n == 0)
            return s_fail(self, ECONNRESET);
        if (errno == EAGAIN)
            return 0;
        if (errno != EINTR)
            return s_fail(self, errno);
    }
}

// Reads what the kernel has into the buffer. Returns 1 when bytes came, 0 when none were there,
// -1 when the connection is closed or failed.
static int
s_read(hop_zmtp_t *self)
{
    if (self->in_at == self->in_end)
        self->in_at = self->in_end = 0;
    else if (self->in_at > 0 && S_IN_CAP - self->in_end < 64) {
        memmove(self->in, self->in + self->in_at, self->in_end - self->in_at);
        self->in_end -= self->in_at;
        self->in_at = 0;
    }
    ssize_t n = s_recv(self, self->in + self->in_end, S_IN_CAP - self->in_end);
    if (n <= 0)
        return (int)n;
    self->in_end += (size_t)n;
    return 1;
}

// A whole command frame arrived: PING is answered, ERROR ends the connection, the rest is
// ignored (ZMTP says a peer may send commands we do not know).
static int
s_on_command(hop_zmtp_t *self)
{
    const uint8_t *c = self->cmd;
    size_t size = self->cmd_size;
    if (size < 1 || (size_t)c[0] + 1 > size)
        return s_fail(self, EPROTO);
    size_t name_len = c[0];
    const uint8_t *body = c + 1 + name_len;
    size_t body_size = size - 1 - name_len;
    if (name_len == 4 && memcmp(c + 1, "PING", 4) == 0 && body_size >= 2) {
        // PONG carries the PING's context back (up to 16 bytes after its 2-byte TTL).
        size_t ctx = body_size - 2 > 16 ? 16 : body_size - 2;
        uint8_t pong[32];
        size_t n = s_command(pong, "PONG", body + 2, ctx);
        s_keep(self, pong, n);
        return hop_zmtp_flush(self) < 0 ? -1 : 0;
    }
    if (name_len == 5 && memcmp(c + 1, "ERROR", 5) == 0)
        return s_fail(self, ECONNRESET);
    return 0;
}

int
hop_zmtp_recv(hop_zmtp_t *self, zmq_msg_t *frames, int max, int *extra)
{
    if (self->failed)
        return s_fail(self, 0);
    if (max > S_KEEP)
        max = S_KEEP;
    bool fresh = false; // a read in this call came back short: the kernel has nothing more
    for (;;) {
        size_t avail = self->in_end - self->in_at;
        if (self->in_frame) {
            if (self->left > 0 && avail > 0) {
                size_t take = self->left < avail ? (size_t)self->left : avail;
                if (self->dst) {
                    memcpy(self->dst, self->in + self->in_at, take);
                    self->dst += take;
                }
                self->in_at += take;
                self->left -= take;
                continue;
            }
            if (self->left > 0) {
                if (fresh)
                    return 0;
                if (self->dst && self->left >= S_DIRECT_MIN) {
                    // A large body goes straight into its frame.
                    ssize_t n = s_recv(self, self->dst, (size_t)self->left);
                    if (n <= 0)
                        return (int)n;
                    self->dst += n;
                    self->left -= (uint64_t)n;
                    continue;
                }
                int r = s_read(self);
                if (r <= 0)
                    return r;
                fresh = self->in_end < S_IN_CAP;
                continue;
            }
            // The frame is complete.
            self->in_frame = false;
            if (self->command) {
                if (s_on_command(self) < 0)
                    return -1;
                continue;
            }
            if (self->more)
                continue;
            int n = self->parts;
            for (int i = 0; i < n; i++) {
                zmq_msg_init(&frames[i]);
                zmq_msg_move(&frames[i], &self->part[i]);
            }
            *extra = self->extra;
            self->parts = 0;
            self->extra = 0;
            return n;
        }
        // A frame header: 2 bytes, or 9 with LONG.
        size_t need = avail >= 1 && (self->in[self->in_at] & S_FLAG_LONG) ? 9 : 2;
        if (avail < need) {
            if (fresh)
                return 0;
            int r = s_read(self);
            if (r <= 0)
                return r;
            fresh = self->in_end < S_IN_CAP;
            continue;
        }
        const uint8_t *h = self->in + self->in_at;
        uint8_t flags = h[0];
        uint64_t size = h[1];
        if (need == 9) {
            size = 0;
            for (int i = 1; i < 9; i++)
                size = size << 8 | h[i];
        }
        self->in_at += need;
        if ((flags & ~(S_FLAG_MORE | S_FLAG_LONG | S_FLAG_CMD)) || size > HOP_ZMTP_FRAME_MAX)
            return s_fail(self, EPROTO);
        self->in_frame = true;
        self->left = size;
        self->command = flags & S_FLAG_CMD;
        if (self->command) {
            if ((flags & S_FLAG_MORE) || self->parts || size > S_CMD_MAX)
                return s_fail(self, EPROTO);
            self->cmd_size = (size_t)size;
            self->dst = self->cmd;
            continue;
        }
        self->more = flags & S_FLAG_MORE;
        if (self->parts < max) {
            zmq_msg_t *part = &self->part[self->parts++];
            zmq_msg_close(part);
            if (zmq_msg_init_size(part, (size_t)size))
                abort(); // out of memory
            self->dst = zmq_msg_data(part);
        } else {
            self->extra++;
            self->dst = NULL;
        }
    }
}
