// cli/ops.c - `hopper move` and `hopper replay`: republish the ready messages of a queue to an
// exchange, or dead letters to where they first came from. The broker moves each message
// atomically (hop_client_move); the CLI asks in rounds of S_ROUND messages, so that the broker
// never stalls on a huge queue and an interrupted run leaves every message in exactly one place.
#include "cli.h"

#include <stdio.h>
#include <string.h>

#define S_ROUND 1000 // messages per request

enum { S_OPT_KEY = 1, S_OPT_COUNT, S_OPT_FILTER };

// Runs rounds of opts (opts->count: 0 for all) on queue and prints the totals.
static int
s_run(hop_cli_t *cli, const char *queue, hop_move_opts_t *opts, long count)
{
    hop_client_t *client;
    int exit_code = hop_cli_connect(cli, &client);
    if (exit_code != HOP_EXIT_OK)
        return exit_code;
    uint64_t moved = 0, limit = count > 0 ? (uint64_t)count : UINT64_MAX;
    hop_move_result_t r = {0};
    bool first = true;
    for (;;) {
        uint64_t want = limit - moved < S_ROUND ? limit - moved : S_ROUND;
        opts->count = (size_t)want;
        int rc = hop_client_move(client, queue, opts, &r);
        if (rc != HOP_OK) {
            int code = hop_client_error_code(client);
            const char *h = code == HOP_CODE_NOT_FOUND ? "See them with: hopper list queues; "
                                                         "hopper list exchanges"
                            : code == HOP_CODE_RESOURCE_LOCKED
                                ? "The queue is exclusive to another connection"
                                : NULL;
            exit_code = hop_cli_fail(cli, client, rc, h, "%s from queue '%s'",
                                     opts->replay ? "replay" : "move", queue);
            if (moved)
                fprintf(stderr, "hopper: %llu messages were moved before that\n",
                        (unsigned long long)moved);
            hop_client_destroy(&client);
            return exit_code;
        }
        // Without --count, what was ready at the start: messages that a route brings back into
        // the queue are not moved round again.
        if (first && count <= 0)
            limit = r.moved + r.left;
        first = false;
        moved += r.moved;
        if (r.moved < want || moved >= limit)
            break;
    }
    if (cli->json)
        printf("{\"moved\":%llu,\"skipped\":%llu,\"left\":%llu}\n", (unsigned long long)moved,
               (unsigned long long)r.skipped, (unsigned long long)r.left);
    else
        printf("moved %llu, skipped %llu, left %llu\n", (unsigned long long)moved,
               (unsigned long long)r.skipped, (unsigned long long)r.left);
    hop_client_destroy(&client);
    return fflush(stdout) == 0 ? HOP_EXIT_OK : HOP_EXIT_REFUSED;
}

static int
s_count(hop_cli_t *cli, const hop_cli_parsed_t *parsed, long *count)
{
    *count = 0;
    if (!parsed->set[S_OPT_COUNT])
        return HOP_EXIT_OK;
    return hop_cli_number(cli, "--count", parsed->value[S_OPT_COUNT], 1, 2147483647L, count);
}

int
hop_cli_move(hop_cli_t *cli, int argc, char **argv)
{
    static const hop_cli_opt_t opts[] = {{"--key", true, S_OPT_KEY},
                                         {"--count", true, S_OPT_COUNT},
                                         {"--filter", true, S_OPT_FILTER},
                                         {NULL, false, 0}};
    hop_cli_parsed_t parsed;
    if (hop_cli_parse(cli, argc, argv, opts, 2, 2, "SOURCE DEST_EXCHANGE", &parsed) != HOP_EXIT_OK)
        return HOP_EXIT_USAGE;
    long count;
    if (s_count(cli, &parsed, &count) != HOP_EXIT_OK)
        return HOP_EXIT_USAGE;
    hop_move_opts_t mo = {.exchange = parsed.positional[1]};
    if (parsed.set[S_OPT_KEY])
        mo.key = parsed.value[S_OPT_KEY];
    char header[256];
    if (parsed.set[S_OPT_FILTER]) {
        const char *f = parsed.value[S_OPT_FILTER];
        const char *eq = strchr(f, '=');
        if (!eq || eq == f || (size_t)(eq - f) >= sizeof header)
            return hop_cli_usage(cli, "--filter takes HEADER=VALUE, got '%s'", f);
        memcpy(header, f, (size_t)(eq - f));
        header[eq - f] = '\0';
        mo.filter_header = header;
        mo.filter_value = eq + 1;
    }
    return s_run(cli, parsed.positional[0], &mo, count);
}

int
hop_cli_replay(hop_cli_t *cli, int argc, char **argv)
{
    static const hop_cli_opt_t opts[] = {{"--count", true, S_OPT_COUNT}, {NULL, false, 0}};
    hop_cli_parsed_t parsed;
    if (hop_cli_parse(cli, argc, argv, opts, 1, 1, "DEAD_LETTER_QUEUE", &parsed) != HOP_EXIT_OK)
        return HOP_EXIT_USAGE;
    long count;
    if (s_count(cli, &parsed, &count) != HOP_EXIT_OK)
        return HOP_EXIT_USAGE;
    hop_move_opts_t mo = {.replay = true};
    return s_run(cli, parsed.positional[0], &mo, count);
}
