// bus/main.c - hopperd: command line, then the broker's reactor until SIGINT/SIGTERM.
#include "broker.h"
#include "util.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
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
            "  --log-level LEVEL     error, warn, info or debug (default info)\n"
            "  -h, --help            show this help\n"
            "  --version             show the version\n"
            "\n"
            "On start it prints one line on stdout: \"hopperd listening on ENDPOINT\".\n"
            "Logs go to stderr. SIGINT or SIGTERM stops it cleanly.\n",
            HOP_DEFAULT_BIND, HOP_DEFAULT_DATA_DIR, HOP_DEFAULT_BIND, HOP_DEFAULT_DATA_DIR,
            HOP_DEFAULT_HEARTBEAT, HOP_DEFAULT_MAX_MESSAGE, HOP_DEFAULT_SNDHWM,
            HOP_DEFAULT_ACK_TIMEOUT, HOP_DEFAULT_FLOW_MESSAGES, HOP_DEFAULT_FLOW_BYTES);
}

static int
s_number(const char *flag, const char *text, unsigned long long lo, unsigned long long hi,
         unsigned long long *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno || *end || end == text || text[0] == '-' || v < lo || v > hi) {
        fprintf(stderr, "hopperd: %s needs a number from %llu to %llu, got '%s'\n", flag, lo, hi,
                text);
        return -1;
    }
    *out = v;
    return 0;
}

int
main(int argc, char **argv)
{
    hop_broker_config_t config = {0};
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        const char *value = i + 1 < argc ? argv[i + 1] : NULL;
        unsigned long long n;
        if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
            s_usage(stdout);
            return 0;
        }
        if (strcmp(arg, "--version") == 0) {
            printf("hopperd %s (protocol 1)\n", HOP_VERSION);
            return 0;
        }
        bool takes_value = strcmp(arg, "--bind") == 0 || strcmp(arg, "--data-dir") == 0 ||
                           strcmp(arg, "--heartbeat") == 0 || strcmp(arg, "--max-message") == 0 ||
                           strcmp(arg, "--log-level") == 0 || strcmp(arg, "--sndhwm") == 0 ||
                           strcmp(arg, "--ack-timeout") == 0 ||
                           strcmp(arg, "--flow-messages") == 0 ||
                           strcmp(arg, "--flow-bytes") == 0 || strcmp(arg, "--fsync") == 0;
        if (!takes_value) {
            fprintf(stderr, "hopperd: unknown option '%s' (see hopperd --help)\n", arg);
            return 2;
        }
        if (!value) {
            fprintf(stderr, "hopperd: %s needs a value (see hopperd --help)\n", arg);
            return 2;
        }
        i++;
        if (strcmp(arg, "--bind") == 0)
            config.bind = value;
        else if (strcmp(arg, "--data-dir") == 0)
            config.data_dir = value;
        else if (strcmp(arg, "--heartbeat") == 0) {
            if (s_number(arg, value, 100, 60000, &n))
                return 2;
            config.heartbeat_ms = (uint32_t)n;
        } else if (strcmp(arg, "--max-message") == 0) {
            if (s_number(arg, value, 1, 1ull << 30, &n))
                return 2;
            config.max_message = (size_t)n;
        } else if (strcmp(arg, "--sndhwm") == 0) {
            if (s_number(arg, value, 1, 10000000, &n))
                return 2;
            config.sndhwm = (int)n;
        } else if (strcmp(arg, "--ack-timeout") == 0) {
            if (s_number(arg, value, 1000, UINT32_MAX, &n))
                return 2;
            config.ack_timeout_ms = n;
        } else if (strcmp(arg, "--fsync") == 0) {
            if (strcmp(value, "always") == 0)
                config.fsync = 0;
            else if (strcmp(value, "never") == 0)
                config.fsync = 2;
            else if (strcmp(value, "every") == 0 && i + 1 < argc) {
                if (s_number("--fsync every", argv[++i], 1, 60000, &n))
                    return 2;
                config.fsync = 1;
                config.fsync_ms = (uint32_t)n;
            } else {
                fprintf(stderr, "hopperd: --fsync is always, every MS or never; got '%s'\n", value);
                return 2;
            }
        } else if (strcmp(arg, "--flow-messages") == 0 || strcmp(arg, "--flow-bytes") == 0) {
            if (s_number(arg, value, 0, 1ull << 40, &n))
                return 2;
            uint64_t v = n ? n : UINT64_MAX; // 0 turns it off
            if (arg[7] == 'm')
                config.flow_messages = v;
            else
                config.flow_bytes = v;
        } else {
            int level = hop_log_level_parse(value);
            if (level < 0) {
                fprintf(stderr, "hopperd: --log-level is error, warn, info or debug; got '%s'\n",
                        value);
                return 2;
            }
            hop_log_level = (hop_level_t)level;
        }
    }
    char err[512];
    hop_broker_t *broker = hop_broker_new(&config, err, sizeof err);
    if (!broker) {
        fprintf(stderr, "hopperd: %s\n", err);
        return 1;
    }
    hop_log(HOP_INFO, "broker", "hopperd %s listening endpoint=%s data_dir=%s", HOP_VERSION,
            hop_broker_endpoint(broker), config.data_dir ? config.data_dir : HOP_DEFAULT_DATA_DIR);
    printf("hopperd listening on %s\n", hop_broker_endpoint(broker));
    fflush(stdout);
    int rc = hop_broker_run(broker);
    hop_broker_destroy(&broker);
    return rc;
}
