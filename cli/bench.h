// cli/bench.h - `hopper bench`: the load generator and benchmark, built only on the SDK.
//
// Workloads pubsub (W1/W2), queue (W3), persistent (W4), latency (W5), connections and smoke
// reproduce the peer benchmarks of RabbitMQ and NATS so that their figures compare
// (docs/BENCH.md).
#ifndef HOP_BENCH_H_INCLUDED
#define HOP_BENCH_H_INCLUDED

// Runs `hopper bench WORKLOAD [options]`; argv[0] is "bench". endpoint NULL means the SDK
// default ($HOPPER_BROKER or HOP_DEFAULT_ENDPOINT); timeout_ms <= 0 means the SDK default.
// Prints the figures on stdout (a table, or JSON with --json) and progress on stderr.
// Returns the process exit code: 0 ok, 1 messages lost or duplicated (or the broker refused
// something), 2 usage error, 3 broker unreachable or not answering, 130 interrupted.
int hop_bench_main(int argc, char **argv, const char *endpoint, int timeout_ms);

#endif
