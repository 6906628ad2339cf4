// bus/broker.h - hopperd's broker: one reactor thread over a ROUTER socket.
#ifndef HOP_BROKER_H_INCLUDED
#define HOP_BROKER_H_INCLUDED

#include <stddef.h>
#include <stdint.h>

typedef struct {
    const char *bind;        // ZeroMQ endpoint; port 0 or * picks a free port
    const char *data_dir;    // created if missing, locked while the broker runs
    uint32_t heartbeat_ms;   // default heartbeat interval offered to clients
    size_t max_message;      // largest body accepted, bytes
    int sndhwm;              // ZeroMQ messages queued per connection before its consumers stall
    uint64_t ack_timeout_ms; // default ack deadline of deliveries
    uint64_t flow_messages;  // ready messages in a queue that pause its publishers; 0: never
    uint64_t flow_bytes;     // ready bytes in a queue that pause its publishers; 0: never
    int fsync;               // HOP_FSYNC_* of bus/store.h: always (default), every, never
    uint32_t fsync_ms;       // fsync every: the interval
    uint32_t segment_size;   // bytes per segment file of the store; 0: its default (64 MiB)
    const char *metrics;     // HOST:PORT of the Prometheus endpoint (bus/metrics.h); NULL: off
    uint32_t queue_window;   // ready messages a durable queue keeps in memory before the rest
                             // stay on disk (bus/spill.h); 0: the default, UINT32_MAX: never
} hop_broker_config_t;

#define HOP_DEFAULT_BIND          "tcp://127.0.0.1:5680"
#define HOP_DEFAULT_DATA_DIR      "./var/hopper"
#define HOP_DEFAULT_HEARTBEAT     1000
#define HOP_DEFAULT_MAX_MESSAGE   (8u * 1024 * 1024)
#define HOP_DEFAULT_SNDHWM        1000
#define HOP_DEFAULT_ACK_TIMEOUT   (30u * 60 * 1000) // 30 minutes, as RabbitMQ
#define HOP_DEFAULT_FLOW_MESSAGES 50000
#define HOP_DEFAULT_FLOW_BYTES    (64u * 1024 * 1024)

typedef struct hop_broker hop_broker_t;

// Binds and prepares the broker. Returns NULL with a reason in err (address in use, data
// directory locked by another hopperd, ...).
hop_broker_t *hop_broker_new(const hop_broker_config_t *config, char *err, size_t err_size);
void hop_broker_destroy(hop_broker_t **self_p);
// The endpoint actually bound (with the real port). Borrowed.
const char *hop_broker_endpoint(const hop_broker_t *self);
// The metrics URL (http://HOST:PORT/metrics, the real port), or NULL when off. Borrowed.
const char *hop_broker_metrics_url(const hop_broker_t *self);
// Serves until SIGINT/SIGTERM. Returns 0.
int hop_broker_run(hop_broker_t *self);

#endif
