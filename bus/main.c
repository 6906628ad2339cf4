// bus/main.c - hopperd: command line, then the broker's reactor until SIGINT/SIGTERM.
#include "broker.h"
#include "config.h"
#include "util.h"

#include <stdio.h>
#include <string.h>

static void
s_usage(FILE *out)
{
    fprintf(out,
            "Usage: hopperd [OPTIONS]\n"
            "\n"
            "The Hopper message broker. With no options it listens on %s and keeps its\n"
            "data in %s.\n"
            "\n"
            "Options:\n"
            "  --bind ENDPOINT       ZeroMQ endpoint to listen on (default %s);\n"
            "                        port 0 picks a free port (printed on stdout)\n"
            "  --data-dir DIR        data directory, created if missing and locked while\n"
            "                        running (default %s)\n"
            "  --heartbeat MS        heartbeat interval offered to clients (default %d);\n"
            "                        a client silent for 5 intervals is declared dead and\n"
            "                        its unacked messages return to their queues\n"
            "  --max-message BYTES   largest message body accepted (default %u)\n"
            "  --sndhwm N            messages (or batches) queued per connection before its\n"
            "                        consumers are paused; they resume as it drains\n"
            "                        (default %d)\n"
            "  --ack-timeout MS      ack deadline of deliveries (default %u, 30 minutes): a\n"
            "                        delivery unacked for longer is revoked and returns to its\n"
            "                        queue; queues and consumers can set their own\n"
            "  --flow-messages N     ready messages in one queue at which its publishers are\n"
            "                        asked to pause (flow control; default %u, 0: never);\n"
            "                        they resume under half of it\n"
            "  --flow-bytes B        the same in bytes of ready bodies (default %u)\n"
            "  --fsync POLICY        when persistent messages are confirmed: always (default:\n"
            "                        after the fsync that covers them; one fsync serves every\n"
            "                        publish made meanwhile), every MS (written at once,\n"
            "                        fsynced every MS ms) or never (written, never fsynced);\n"
            "                        the last two survive kill -9 but not a power cut\n"
            "  --segment-size BYTES  size at which the message log rolls over to a new\n"
            "                        segment file (default 64 MiB, at least 4096); space is\n"
            "                        reclaimed a whole segment at a time\n"
            "  --queue-window N      ready messages a durable queue keeps in memory, per\n"
            "                        priority level (default 4096); past them, persistent\n"
            "                        messages stay on disk and are read back as the queue\n"
            "                        drains, so a queue can be larger than RAM; 0 keeps\n"
            "                        every message in memory\n"
            "  --log-level LEVEL     error, warn, info or debug (default info)\n"
            "  --metrics ADDR        serve Prometheus metrics at http://ADDR/metrics (off by\n"
            "                        default). ADDR is HOST:PORT with HOST an IP address,\n"
            "                        [IPv6] or localhost, or just PORT (then 127.0.0.1);\n"
            "                        a non-loopback HOST (e.g. 0.0.0.0) is served but warned\n"
            "                        about: there is no authentication\n"
            "  --config FILE         read settings from FILE first: one 'key = value' per\n"
            "                        line, keys named like the flags without dashes (bind,\n"
            "                        data-dir, fsync, ..., metrics), '#' comments; flags\n"
            "                        given too override it; a bad line stops the start\n"
            "  -h, --help            show this help\n"
            "  --version             show the version\n"
            "\n"
            "On start it prints one line on stdout: \"hopperd listening on ENDPOINT\", and\n"
            "with --metrics a second one: \"hopperd metrics on URL\". Bad flags or config\n"
            "exit with status 2, a failed start (address in use...) with 1.\n"
            "Logs go to stderr. SIGINT or SIGTERM stops it cleanly.\n",
            HOP_DEFAULT_BIND, HOP_DEFAULT_DATA_DIR, HOP_DEFAULT_BIND, HOP_DEFAULT_DATA_DIR,
            HOP_DEFAULT_HEARTBEAT, HOP_DEFAULT_MAX_MESSAGE, HOP_DEFAULT_SNDHWM,
            HOP_DEFAULT_ACK_TIMEOUT, HOP_DEFAULT_FLOW_MESSAGES, HOP_DEFAULT_FLOW_BYTES);
}

int
main(int argc, char **argv)
{
    // The config file first, wherever --config appears: flags override it.
    hop_config_t *config = hop_config_new();
    char err[768];
    int rc = 2;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            s_usage(stdout);
            rc = 0;
            goto done;
        }
        if (strcmp(argv[i], "--version") == 0) {
            printf("hopperd %s (protocol 1)\n", HOP_VERSION);
            rc = 0;
            goto done;
        }
        if (strcmp(argv[i], "--config") == 0) {
            if (i + 1 == argc) {
                fprintf(stderr, "hopperd: --config needs a file (see hopperd --help)\n");
                goto done;
            }
            if (hop_config_load(config, argv[++i], err, sizeof err) < 0) {
                fprintf(stderr, "hopperd: bad config: %s\n", err);
                goto done;
            }
        }
    }
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--config") == 0) {
            i++;
            continue;
        }
        if (strncmp(arg, "--", 2) != 0 || !arg[2] || strcmp(arg, "--config") == 0) {
            fprintf(stderr, "hopperd: unknown option '%s' (see hopperd --help)\n", arg);
            goto done;
        }
        if (i + 1 == argc) {
            fprintf(stderr, "hopperd: %s needs a value (see hopperd --help)\n", arg);
            goto done;
        }
        const char *value = argv[++i];
        char joined[64];
        if (strcmp(arg, "--fsync") == 0 && strcmp(value, "every") == 0 && i + 1 < argc) {
            snprintf(joined, sizeof joined, "every %s", argv[++i]); // --fsync every MS
            value = joined;
        }
        if (hop_config_set(config, arg + 2, value, err, sizeof err) < 0) {
            if (strncmp(err, "unknown key", 11) == 0)
                fprintf(stderr, "hopperd: unknown option '%s' (see hopperd --help)\n", arg);
            else
                fprintf(stderr, "hopperd: --%s\n", err);
            goto done;
        }
    }
    if (hop_config_log_level(config) >= 0)
        hop_log_level = (hop_level_t)hop_config_log_level(config);
    const hop_broker_config_t *settings = hop_config_broker(config);
    hop_broker_t *broker = hop_broker_new(settings, err, sizeof err);
    if (!broker) {
        fprintf(stderr, "hopperd: %s\n", err);
        rc = 1;
        goto done;
    }
    hop_log(HOP_INFO, "broker", "hopperd %s listening endpoint=%s data_dir=%s", HOP_VERSION,
            hop_broker_endpoint(broker),
            settings->data_dir ? settings->data_dir : HOP_DEFAULT_DATA_DIR);
    printf("hopperd listening on %s\n", hop_broker_endpoint(broker));
    if (hop_broker_metrics_url(broker))
        printf("hopperd metrics on %s\n", hop_broker_metrics_url(broker));
    fflush(stdout);
    rc = hop_broker_run(broker);
    hop_broker_destroy(&broker);
done:
    hop_config_destroy(&config);
    return rc;
}
