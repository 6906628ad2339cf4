// tests/unit/test_zmtp.c - libhopper's ZMTP transport (sdk/zmtp.h) against a real libzmq
// ROUTER: handshake, short and long frames both ways, dropped extra frames, PING answered,
// the peer closing, a peer that is not ZMTP, endpoints, retrying a broker that starts late,
// and a full socket.
#include "zmtp.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

typedef struct {
    void *ctx;
    void *router;
    char endpoint[128];
} s_peer_t;

static int64_t
s_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
s_sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

// A ROUTER bound to bind, with n integer options {option, value} set first.
static void
s_router_with(s_peer_t *p, const char *bind, const int (*opts)[2], int n)
{
    p->ctx = zmq_ctx_new();
    p->router = zmq_socket(p->ctx, ZMQ_ROUTER);
    int zero = 0;
    zmq_setsockopt(p->router, ZMQ_LINGER, &zero, sizeof zero);
    for (int i = 0; i < n; i++)
        zmq_setsockopt(p->router, opts[i][0], &opts[i][1], sizeof opts[i][1]);
    assert_int_equal(zmq_bind(p->router, bind), 0);
    size_t size = sizeof p->endpoint;
    zmq_getsockopt(p->router, ZMQ_LAST_ENDPOINT, p->endpoint, &size);
}

static void
s_router(s_peer_t *p, const char *bind)
{
    s_router_with(p, bind, NULL, 0);
}

static void
s_router_close(s_peer_t *p)
{
    if (p->router)
        zmq_close(p->router);
    zmq_ctx_term(p->ctx);
}

static hop_zmtp_t *
s_connect(const char *endpoint)
{
    char err[256];
    bool invalid;
    hop_zmtp_t *conn = hop_zmtp_connect(endpoint, s_now() + 5000, err, sizeof err, &invalid);
    if (!conn)
        fail_msg("connect %s: %s", endpoint, err);
    return conn;
}

// Receives one message on the client, waiting up to 5 s. Returns frames (as hop_zmtp_recv).
static int
s_recv(hop_zmtp_t *conn, zmq_msg_t *frames, int max, int *extra)
{
    int64_t deadline = s_now() + 5000;
    for (;;) {
        int n = hop_zmtp_recv(conn, frames, max, extra);
        if (n != 0 || s_now() > deadline)
            return n;
        struct pollfd p = {hop_zmtp_fd(conn), POLLIN, 0};
        poll(&p, 1, 100);
    }
}

static void
s_send(hop_zmtp_t *conn, const char *a, const char *b)
{
    struct iovec iov[2] = {{(void *)a, strlen(a)}, {(void *)b, b ? strlen(b) : 0}};
    assert_int_equal(hop_zmtp_send(conn, iov, b ? 2 : 1), 0);
}

// Receives [routing id, frames...] on the ROUTER. Returns the frames after the id.
static int
s_router_recv(s_peer_t *p, zmq_msg_t *id, zmq_msg_t *frames, int max)
{
    zmq_msg_init(id);
    assert_true(zmq_msg_recv(id, p->router, 0) >= 0);
    int n = 0;
    bool more = zmq_msg_more(id);
    while (more) {
        assert_true(n < max);
        zmq_msg_init(&frames[n]);
        assert_true(zmq_msg_recv(&frames[n], p->router, 0) >= 0);
        more = zmq_msg_more(&frames[n]);
        n++;
    }
    return n;
}

static void
s_close_all(zmq_msg_t *frames, int n)
{
    for (int i = 0; i < n; i++)
        zmq_msg_close(&frames[i]);
}

static void
s_assert_frame(zmq_msg_t *frame, const void *data, size_t size)
{
    assert_int_equal(zmq_msg_size(frame), size);
    assert_memory_equal(zmq_msg_data(frame), data, size);
}

// ---------------------------------------------------------------------------------------

static void
test_messages_both_ways(void **state)
{
    (void)state;
    s_peer_t p;
    s_router(&p, "tcp://127.0.0.1:*");
    hop_zmtp_t *conn = s_connect(p.endpoint);
    s_send(conn, "header", "body");
    s_send(conn, "alone", NULL);
    zmq_msg_t id, f[4];
    assert_int_equal(s_router_recv(&p, &id, f, 4), 2);
    s_assert_frame(&f[0], "header", 6);
    s_assert_frame(&f[1], "body", 4);
    s_close_all(f, 2);
    zmq_msg_close(&id);
    assert_int_equal(s_router_recv(&p, &id, f, 4), 1);
    s_assert_frame(&f[0], "alone", 5);
    s_close_all(f, 1);
    // Back: a short frame, a long one (past 255 bytes), and an empty one.
    char big[300];
    memset(big, 'b', sizeof big);
    zmq_msg_t copy;
    zmq_msg_init(&copy);
    zmq_msg_copy(&copy, &id);
    zmq_msg_send(&id, p.router, ZMQ_SNDMORE);
    zmq_send(p.router, "h", 1, ZMQ_SNDMORE);
    zmq_send(p.router, big, sizeof big, 0);
    zmq_msg_send(&copy, p.router, ZMQ_SNDMORE);
    zmq_send(p.router, "", 0, 0);
    zmq_msg_t in[2];
    int extra = -1;
    assert_int_equal(s_recv(conn, in, 2, &extra), 2);
    assert_int_equal(extra, 0);
    s_assert_frame(&in[0], "h", 1);
    s_assert_frame(&in[1], big, sizeof big);
    s_close_all(in, 2);
    assert_int_equal(s_recv(conn, in, 2, &extra), 1);
    assert_int_equal(zmq_msg_size(&in[0]), 0);
    s_close_all(in, 1);
    assert_int_equal(hop_zmtp_recv(conn, in, 2, &extra), 0); // nothing more
    hop_zmtp_destroy(&conn);
    assert_null(conn);
    s_router_close(&p);
}

static void
test_large_frames_and_extra_frames(void **state)
{
    (void)state;
    s_peer_t p;
    s_router(&p, "tcp://127.0.0.1:*");
    hop_zmtp_t *conn = s_connect(p.endpoint);
    size_t size = 3 << 20; // larger than the read buffer: read straight into the frame
    char *big = malloc(size);
    for (size_t i = 0; i < size; i++)
        big[i] = (char)(i * 7);
    struct iovec iov[2] = {{"hdr", 3}, {big, size}};
    assert_int_equal(hop_zmtp_send(conn, iov, 2), 0);
    zmq_msg_t id, f[4];
    // The kernel may not take 3 MiB at once: keep writing while the ROUTER reads.
    while (hop_zmtp_pending(conn)) {
        assert_true(hop_zmtp_flush(conn) >= 0);
        zmq_pollitem_t item = {p.router, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&item, 1, 10) > 0)
            break;
    }
    while (hop_zmtp_flush(conn) > 0)
        s_sleep_ms(1);
    assert_int_equal(s_router_recv(&p, &id, f, 4), 2);
    s_assert_frame(&f[1], big, size);
    s_close_all(f, 2);
    // Back: the same 3 MiB, then a message of four frames to a reader that keeps two.
    zmq_msg_t copy;
    zmq_msg_init(&copy);
    zmq_msg_copy(&copy, &id);
    zmq_msg_send(&id, p.router, ZMQ_SNDMORE);
    zmq_send(p.router, "h", 1, ZMQ_SNDMORE);
    zmq_send(p.router, big, size, 0);
    zmq_msg_send(&copy, p.router, ZMQ_SNDMORE);
    zmq_send(p.router, "1", 1, ZMQ_SNDMORE);
    zmq_send(p.router, "2", 1, ZMQ_SNDMORE);
    zmq_send(p.router, "3", 1, ZMQ_SNDMORE);
    zmq_send(p.router, "4", 1, 0);
    zmq_msg_t in[2];
    int extra = -1;
    assert_int_equal(s_recv(conn, in, 2, &extra), 2);
    s_assert_frame(&in[1], big, size);
    s_close_all(in, 2);
    assert_int_equal(s_recv(conn, in, 2, &extra), 2);
    assert_int_equal(extra, 2);
    s_assert_frame(&in[0], "1", 1);
    s_assert_frame(&in[1], "2", 1);
    s_close_all(in, 2);
    free(big);
    hop_zmtp_destroy(&conn);
    s_router_close(&p);
}

// A ROUTER with ZMTP heartbeats closes a peer that does not answer its PINGs within the
// timeout: still connected well past it means we answered.
static void
test_ping_is_answered(void **state)
{
    (void)state;
    s_peer_t p;
    const int opts[][2] = {{ZMQ_HEARTBEAT_IVL, 20}, {ZMQ_HEARTBEAT_TIMEOUT, 100}};
    s_router_with(&p, "tcp://127.0.0.1:*", opts, 2);
    hop_zmtp_t *conn = s_connect(p.endpoint);
    s_send(conn, "hi", NULL);
    zmq_msg_t id, f[2];
    assert_int_equal(s_router_recv(&p, &id, f, 2), 1);
    s_close_all(f, 1);
    int64_t until = s_now() + 600;
    zmq_msg_t in[2];
    int extra;
    while (s_now() < until) {
        assert_int_equal(hop_zmtp_recv(conn, in, 2, &extra), 0); // PINGs only
        struct pollfd pf = {hop_zmtp_fd(conn), POLLIN, 0};
        poll(&pf, 1, 10);
    }
    zmq_msg_send(&id, p.router, ZMQ_SNDMORE);
    zmq_send(p.router, "still here", 10, 0);
    assert_int_equal(s_recv(conn, in, 2, &extra), 1);
    s_assert_frame(&in[0], "still here", 10);
    s_close_all(in, 1);
    hop_zmtp_destroy(&conn);
    s_router_close(&p);
}

static void
test_peer_closing_fails_the_connection(void **state)
{
    (void)state;
    s_peer_t p;
    s_router(&p, "tcp://127.0.0.1:*");
    hop_zmtp_t *conn = s_connect(p.endpoint);
    zmq_close(p.router);
    p.router = NULL;
    zmq_msg_t in[2];
    int extra;
    assert_int_equal(s_recv(conn, in, 2, &extra), -1);
    assert_int_equal(errno, ECONNRESET);
    // Failed for good: every call says so.
    assert_int_equal(hop_zmtp_recv(conn, in, 2, &extra), -1);
    struct iovec iov = {"x", 1};
    assert_int_equal(hop_zmtp_send(conn, &iov, 1), -1);
    assert_int_not_equal(errno, EAGAIN);
    hop_zmtp_destroy(&conn);
    s_router_close(&p);
}

// A TCP socket bound to a free loopback port, which goes into a.
static int
s_loopback(struct sockaddr_in *a)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    memset(a, 0, sizeof *a);
    a->sin_family = AF_INET;
    a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof *a;
    assert_int_equal(bind(fd, (struct sockaddr *)a, sizeof *a), 0);
    getsockname(fd, (struct sockaddr *)a, &len);
    return fd;
}

// A listener that answers like an HTTP server.
static void *
s_http(void *arg)
{
    int lfd = *(int *)arg;
    int fd = accept(lfd, NULL, NULL);
    if (fd >= 0) {
        const char *reply = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"
                            "and more bytes to make up a greeting's 64 of them......";
        char buf[256];
        if (recv(fd, buf, sizeof buf, 0) < 0 || send(fd, reply, strlen(reply), 0) < 0) {
            // The test fails on its own.
        }
        s_sleep_ms(200);
        close(fd);
    }
    return NULL;
}

static void
test_a_peer_that_is_not_zmtp_is_refused(void **state)
{
    (void)state;
    struct sockaddr_in a;
    int lfd = s_loopback(&a);
    assert_int_equal(listen(lfd, 4), 0);
    pthread_t t;
    pthread_create(&t, NULL, s_http, &lfd);
    char endpoint[64], err[256];
    snprintf(endpoint, sizeof endpoint, "tcp://127.0.0.1:%d", ntohs(a.sin_port));
    bool invalid = true;
    hop_zmtp_t *conn = hop_zmtp_connect(endpoint, s_now() + 3000, err, sizeof err, &invalid);
    assert_null(conn);
    assert_false(invalid);
    assert_int_equal(errno, EPROTO);
    assert_non_null(strstr(err, "not a ZMTP 3 endpoint"));
    pthread_join(t, NULL);
    close(lfd);
}

static void
test_invalid_endpoints(void **state)
{
    (void)state;
    const char *bad[] = {"udp://127.0.0.1:5",
                         "tcp://127.0.0.1",
                         "tcp://127.0.0.1:0",
                         "tcp://127.0.0.1:99999",
                         "tcp://:5",
                         "tcp://127.0.0.1:5x",
                         "ipc://",
                         "tcp://no-such-host.invalid:5"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char err[256] = "";
        bool invalid = false;
        assert_null(hop_zmtp_connect(bad[i], s_now() + 1000, err, sizeof err, &invalid));
        assert_true(invalid);
        assert_true(strlen(err) > 0);
    }
}

static void
test_nobody_listening_times_out(void **state)
{
    (void)state;
    char err[256];
    bool invalid = true;
    int64_t start = s_now();
    assert_null(hop_zmtp_connect("tcp://127.0.0.1:1", start + 200, err, sizeof err, &invalid));
    assert_false(invalid);
    assert_int_equal(errno, ETIMEDOUT);
    assert_true(s_now() - start >= 150); // it kept trying until the deadline
}

typedef struct {
    char bind[64];
    s_peer_t peer;
} s_late_t;

static void *
s_late_router(void *arg)
{
    s_late_t *late = arg;
    s_sleep_ms(300);
    s_router(&late->peer, late->bind);
    return NULL;
}

static void
test_a_broker_that_starts_late_is_found(void **state)
{
    (void)state;
    // A free port: bound and released.
    struct sockaddr_in a;
    close(s_loopback(&a));
    s_late_t late;
    snprintf(late.bind, sizeof late.bind, "tcp://127.0.0.1:%d", ntohs(a.sin_port));
    pthread_t t;
    pthread_create(&t, NULL, s_late_router, &late);
    hop_zmtp_t *conn = s_connect(late.bind);
    pthread_join(t, NULL);
    s_send(conn, "late", NULL);
    zmq_msg_t id, f[2];
    assert_int_equal(s_router_recv(&late.peer, &id, f, 2), 1);
    s_assert_frame(&f[0], "late", 4);
    s_close_all(f, 1);
    zmq_msg_close(&id);
    hop_zmtp_destroy(&conn);
    s_router_close(&late.peer);
}

static void
test_ipc_endpoint(void **state)
{
    (void)state;
    char path[64], bind[80];
    snprintf(path, sizeof path, "/tmp/hop-test-zmtp-%d", (int)getpid());
    snprintf(bind, sizeof bind, "ipc://%s", path);
    s_peer_t p;
    s_router(&p, bind);
    hop_zmtp_t *conn = s_connect(bind);
    s_send(conn, "over", "ipc");
    zmq_msg_t id, f[2];
    assert_int_equal(s_router_recv(&p, &id, f, 2), 2);
    s_assert_frame(&f[1], "ipc", 3);
    s_close_all(f, 2);
    zmq_msg_close(&id);
    hop_zmtp_destroy(&conn);
    s_router_close(&p);
    unlink(path);
}

// A ROUTER that reads nothing: the kernel's buffers fill, a send is refused with EAGAIN and
// nothing is lost or reordered once the ROUTER reads.
static void
test_full_socket_refuses_then_delivers_in_order(void **state)
{
    (void)state;
    s_peer_t p;
    const int opts[][2] = {{ZMQ_RCVHWM, 1}, {ZMQ_RCVBUF, 4096}};
    s_router_with(&p, "tcp://127.0.0.1:*", opts, 2);
    hop_zmtp_t *conn = s_connect(p.endpoint);
    enum { S_BODY = 16 << 10 };
    char *body = calloc(1, S_BODY);
    uint32_t sent = 0;
    for (; sent < 100000; sent++) {
        memcpy(body, &sent, sizeof sent);
        struct iovec iov = {body, S_BODY};
        if (hop_zmtp_send(conn, &iov, 1) < 0) {
            assert_int_equal(errno, EAGAIN);
            break;
        }
    }
    assert_true(sent > 0 && sent < 100000); // refused before 1.6 GB
    assert_true(hop_zmtp_pending(conn));
    for (uint32_t i = 0; i < sent; i++) {
        zmq_msg_t id, f[2];
        zmq_pollitem_t item = {p.router, 0, ZMQ_POLLIN, 0};
        while (zmq_poll(&item, 1, 1) == 0)
            assert_true(hop_zmtp_flush(conn) >= 0);
        assert_int_equal(s_router_recv(&p, &id, f, 2), 1);
        assert_int_equal(zmq_msg_size(&f[0]), S_BODY);
        uint32_t seq;
        memcpy(&seq, zmq_msg_data(&f[0]), sizeof seq);
        assert_int_equal(seq, i);
        s_close_all(f, 1);
        zmq_msg_close(&id);
    }
    assert_false(hop_zmtp_pending(conn));
    free(body);
    hop_zmtp_destroy(&conn);
    s_router_close(&p);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_messages_both_ways),
        cmocka_unit_test(test_large_frames_and_extra_frames),
        cmocka_unit_test(test_ping_is_answered),
        cmocka_unit_test(test_peer_closing_fails_the_connection),
        cmocka_unit_test(test_a_peer_that_is_not_zmtp_is_refused),
        cmocka_unit_test(test_invalid_endpoints),
        cmocka_unit_test(test_nobody_listening_times_out),
        cmocka_unit_test(test_a_broker_that_starts_late_is_found),
        cmocka_unit_test(test_ipc_endpoint),
        cmocka_unit_test(test_full_socket_refuses_then_delivers_in_order),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
