// bus/metrics.h - the Prometheus endpoint of hopperd (`--metrics HOST:PORT`): GET /metrics in
// the text exposition format, served by libmicrohttpd driven from the broker's reactor.
//
// MHD runs without a thread of its own ("external select" over its epoll descriptor): the
// reactor adds hop_metrics_fd to its zmq_poll set and calls hop_metrics_run every turn, so a
// scrape reads the broker's state on the broker's thread and needs no lock or snapshot.
// Everything is non-blocking; a slow HTTP client costs a connection slot, never a stall.
#ifndef HOP_METRICS_H_INCLUDED
#define HOP_METRICS_H_INCLUDED

#include "broker.h"

#include <stdbool.h>
#include <stddef.h>

typedef struct hop_metrics hop_metrics_t;

// Starts listening on address (hop_config_address syntax). A non-loopback address is served
// (it was asked for explicitly) but logged as a warning. Returns NULL with the reason in err.
hop_metrics_t *hop_metrics_new(hop_broker_t *broker, const char *address, char *err,
                               size_t err_size);
void hop_metrics_destroy(hop_metrics_t **self_p);
// "http://HOST:PORT/metrics" with the port actually bound. Borrowed.
const char *hop_metrics_url(const hop_metrics_t *self);
// The descriptor to poll for input (MHD's epoll set).
int hop_metrics_fd(const hop_metrics_t *self);
// Shortens wait_ms (the reactor's poll timeout) to when MHD next needs to run.
long hop_metrics_wait(hop_metrics_t *self, long wait_ms);
// Serves what is ready: call once per loop turn; readable says hop_metrics_fd polled readable.
void hop_metrics_run(hop_metrics_t *self, bool readable);

// Renders the exposition text of broker's state. Returns a string the caller frees; *size
// is set to its length.
char *hop_metrics_render(hop_broker_t *broker, size_t *size);

#endif
