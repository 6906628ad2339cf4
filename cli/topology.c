// cli/topology.c - the commands that shape the broker: declare, delete, bind, unbind, purge.
// Each makes one synchronous call; on success they print only what the broker returned
// (a queue's name, a message count), so that scripts can use the output.
#include "cli.h"
#include "json.h"

#include <assert.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

enum {
    S_OPT_TYPE = 1,
    S_OPT_DURABLE,
    S_OPT_EXCLUSIVE,
    S_OPT_AUTO_DELETE,
    S_OPT_PASSIVE,
    S_OPT_IF_EMPTY,
    S_OPT_IF_UNUSED,
    S_OPT_KEY,
    // declare queue: queue arguments
    S_OPT_MAX_LENGTH,
    S_OPT_MAX_LENGTH_BYTES,
    S_OPT_OVERFLOW,
    S_OPT_MESSAGE_TTL,
    S_OPT_EXPIRES,
    S_OPT_MAX_DELIVERIES,
    S_OPT_DEAD_LETTER_EXCHANGE,
    S_OPT_DEAD_LETTER_KEY,
    S_OPT_RETRY_BACKOFF,
    S_OPT_MAX_PRIORITY,
    S_OPT_ACK_TIMEOUT,
};

#define S_MIN_ACK_TIMEOUT 1000 // ms; the broker refuses shorter ack deadlines

// Prints a JSON document on its own line.
static void
s_print_json(json_t **json_p)
{
    char *text = json_dumps(*json_p, JSON_COMPACT | JSON_ENCODE_ANY);
    if (text)
        puts(text);
    free(text);
    json_decref(*json_p);
    *json_p = NULL;
}

// Says what to do about a refusal of a request about queue name.
static const char *
s_queue_hint(hop_client_t *client, char *buffer, size_t size, const char *name)
{
    switch (hop_client_error_code(client)) {
    case HOP_CODE_NOT_FOUND:
        snprintf(buffer, size, "Declare it first: hopper declare queue %s", name);
        return buffer;
    case HOP_CODE_RESOURCE_LOCKED:
        return "It is exclusive to another connection: only that connection may use it";
    default:
        return NULL;
    }
}

static int
s_declare_exchange(hop_cli_t *cli, int argc, char **argv)
{
    static const hop_cli_opt_t opts[] = {
        {"--type", true, S_OPT_TYPE},
        {"--durable", false, S_OPT_DURABLE},
        {"--auto-delete", false, S_OPT_AUTO_DELETE},
        {"--passive", false, S_OPT_PASSIVE},
        {NULL, false, 0},
    };
    hop_cli_parsed_t parsed;
    if (hop_cli_parse(cli, argc, argv, opts, 1, 1, "NAME", &parsed) != HOP_EXIT_OK)
        return HOP_EXIT_USAGE;
    const char *name = parsed.positional[0];
    const char *type = parsed.value[S_OPT_TYPE];
    bool passive = parsed.set[S_OPT_PASSIVE];
    if (!type && !passive)
        return hop_cli_usage(cli, "declare exchange needs --type direct, fanout or topic");
    if (type && strcmp(type, "direct") != 0 && strcmp(type, "fanout") != 0 &&
        strcmp(type, "topic") != 0)
        return hop_cli_usage(cli, "--type must be direct, fanout or topic, not '%s'", type);
    int flags = (parsed.set[S_OPT_DURABLE] ? HOP_DURABLE : 0) |
                (parsed.set[S_OPT_AUTO_DELETE] ? HOP_AUTO_DELETE : 0) | (passive ? HOP_PASSIVE : 0);

    hop_client_t *client;
    int exit_code = hop_cli_connect(cli, &client);
    if (exit_code != HOP_EXIT_OK)
        return exit_code;
    // A passive declare ignores the type; the SDK still wants a valid one.
    int rc = hop_client_declare_exchange(client, name, type ? type : "direct", flags);
    if (rc != HOP_OK) {
        char hint[HOP_NAME_MAX + 128];
        const char *h = NULL;
        switch (hop_client_error_code(client)) {
        case HOP_CODE_NOT_FOUND:
            snprintf(hint, sizeof hint,
                     "Declare it first: hopper declare exchange %s --type direct", name);
            h = hint;
            break;
        case HOP_CODE_PRECONDITION_FAILED:
            snprintf(
                hint, sizeof hint,
                "It exists with other properties (see: hopper list exchanges); declare it "
                "with the same --type and flags, or delete it first: hopper delete exchange %s",
                name);
            h = hint;
            break;
        }
        exit_code = hop_cli_fail(cli, client, rc, h, "declare exchange '%s'", name);
    }
    hop_client_destroy(&client);
    return exit_code;
}

// Reads --retry-backoff INITIAL[:MAX] (ms) into retry_delay and retry_delay_max.
static int
s_parse_backoff(hop_cli_t *cli, const char *value, hop_queue_args_t *args)
{
    char initial[32];
    const char *colon = strchr(value, ':');
    size_t len = colon ? (size_t)(colon - value) : strlen(value);
    if (len == 0 || len >= sizeof initial || (colon && !colon[1]))
        return hop_cli_usage(cli,
                             "--retry-backoff needs INITIAL or INITIAL:MAX in ms (e.g. 1000 or "
                             "1000:60000), not '%s'",
                             value);
    memcpy(initial, value, len);
    initial[len] = '\0';
    long delay;
    if (hop_cli_number(cli, "--retry-backoff INITIAL", initial, 1, LONG_MAX, &delay) != HOP_EXIT_OK)
        return HOP_EXIT_USAGE;
    long max = delay;
    if (colon &&
        hop_cli_number(cli, "--retry-backoff MAX", colon + 1, 1, LONG_MAX, &max) != HOP_EXIT_OK)
        return HOP_EXIT_USAGE;
    if (max < delay)
        return hop_cli_usage(cli,
                             "--retry-backoff %s: MAX (%ld ms) is below INITIAL (%ld ms); the "
                             "delay doubles from INITIAL up to MAX",
                             value, max, delay);
    args->retry_delay = (uint64_t)delay;
    args->retry_delay_max = colon ? (uint64_t)max : 0;
    return HOP_EXIT_OK;
}

// Reads the queue arguments of declare queue. *any says whether one was given.
static int
s_parse_queue_args(hop_cli_t *cli, const hop_cli_parsed_t *parsed, hop_queue_args_t *args,
                   bool *any)
{
    memset(args, 0, sizeof *args);
    *any = false;
    // 0 means "not set" in hop_queue_args_t, so none of these can be asked for as 0.
    const struct {
        int id;
        const char *option;
        long min;
        long max;
        uint64_t *field;
    } numbers[] = {
        {S_OPT_MAX_LENGTH, "--max-length", 1, LONG_MAX, &args->max_length},
        {S_OPT_MAX_LENGTH_BYTES, "--max-length-bytes", 1, LONG_MAX, &args->max_length_bytes},
        {S_OPT_MESSAGE_TTL, "--message-ttl", 1, LONG_MAX, &args->message_ttl},
        {S_OPT_EXPIRES, "--expires", 1, LONG_MAX, &args->expires},
        {S_OPT_MAX_DELIVERIES, "--max-deliveries", 1, LONG_MAX, &args->max_deliveries},
        {S_OPT_MAX_PRIORITY, "--max-priority", 1, 255, &args->max_priority},
        {S_OPT_ACK_TIMEOUT, "--ack-timeout", S_MIN_ACK_TIMEOUT, LONG_MAX, &args->ack_timeout},
    };
    for (size_t i = 0; i < sizeof numbers / sizeof numbers[0]; i++) {
        if (!parsed->set[numbers[i].id])
            continue;
        long number;
        if (hop_cli_number(cli, numbers[i].option, parsed->value[numbers[i].id], numbers[i].min,
                           numbers[i].max, &number) != HOP_EXIT_OK)
            return HOP_EXIT_USAGE;
        *numbers[i].field = (uint64_t)number;
        *any = true;
    }
    const char *overflow = parsed->value[S_OPT_OVERFLOW];
    if (overflow) {
        if (strcmp(overflow, "drop-head") != 0 && strcmp(overflow, "reject-publish") != 0)
            return hop_cli_usage(cli, "--overflow must be drop-head or reject-publish, not '%s'",
                                 overflow);
        args->overflow = overflow;
        *any = true;
    }
    if (parsed->set[S_OPT_RETRY_BACKOFF]) {
        if (s_parse_backoff(cli, parsed->value[S_OPT_RETRY_BACKOFF], args) != HOP_EXIT_OK)
            return HOP_EXIT_USAGE;
        *any = true;
    }
    args->dead_letter_exchange = parsed->value[S_OPT_DEAD_LETTER_EXCHANGE];
    args->dead_letter_key = parsed->value[S_OPT_DEAD_LETTER_KEY];
    if (args->dead_letter_key && !args->dead_letter_exchange)
        return hop_cli_usage(cli, "--dead-letter-key goes with --dead-letter-exchange (use "
                                  "--dead-letter-exchange \"\" for the default exchange)");
    if (args->dead_letter_exchange)
        *any = true;
    return HOP_EXIT_OK;
}

static int
s_declare_queue(hop_cli_t *cli, int argc, char **argv)
{
    static const hop_cli_opt_t opts[] = {
        {"--durable", false, S_OPT_DURABLE},
        {"--exclusive", false, S_OPT_EXCLUSIVE},
        {"--auto-delete", false, S_OPT_AUTO_DELETE},
        {"--passive", false, S_OPT_PASSIVE},
        {"--max-length", true, S_OPT_MAX_LENGTH},
        {"--max-length-bytes", true, S_OPT_MAX_LENGTH_BYTES},
        {"--overflow", true, S_OPT_OVERFLOW},
        {"--message-ttl", true, S_OPT_MESSAGE_TTL},
        {"--expires", true, S_OPT_EXPIRES},
        {"--max-deliveries", true, S_OPT_MAX_DELIVERIES},
        {"--dead-letter-exchange", true, S_OPT_DEAD_LETTER_EXCHANGE},
        {"--dead-letter-key", true, S_OPT_DEAD_LETTER_KEY},
        {"--retry-backoff", true, S_OPT_RETRY_BACKOFF},
        {"--max-priority", true, S_OPT_MAX_PRIORITY},
        {"--ack-timeout", true, S_OPT_ACK_TIMEOUT},
        {NULL, false, 0},
    };
    hop_cli_parsed_t parsed;
    if (hop_cli_parse(cli, argc, argv, opts, 1, 1, "NAME (\"\" for a server-named queue)",
                      &parsed) != HOP_EXIT_OK)
        return HOP_EXIT_USAGE;
    const char *name = parsed.positional[0];
    int flags = (parsed.set[S_OPT_DURABLE] ? HOP_DURABLE : 0) |
                (parsed.set[S_OPT_EXCLUSIVE] ? HOP_EXCLUSIVE : 0) |
                (parsed.set[S_OPT_AUTO_DELETE] ? HOP_AUTO_DELETE : 0) |
                (parsed.set[S_OPT_PASSIVE] ? HOP_PASSIVE : 0);
    hop_queue_args_t args;
    bool any_args;
    if (s_parse_queue_args(cli, &parsed, &args, &any_args) != HOP_EXIT_OK)
        return HOP_EXIT_USAGE;
    if (any_args && (flags & HOP_PASSIVE))
        return hop_cli_usage(cli, "--passive only checks that the queue exists and ignores queue "
                                  "arguments; drop --passive, or drop the arguments");

    hop_client_t *client;
    int exit_code = hop_cli_connect(cli, &client);
    if (exit_code != HOP_EXIT_OK)
        return exit_code;
    char queue[HOP_NAME_MAX + 1] = "";
    uint64_t messages = 0;
    uint64_t consumers = 0;
    int rc = hop_client_declare_queue_args(client, name, flags, any_args ? &args : NULL, queue,
                                           sizeof queue, &messages, &consumers);
    if (rc != HOP_OK) {
        char hint[HOP_NAME_MAX + 200];
        const char *h = s_queue_hint(client, hint, sizeof hint, name);
        if (hop_client_error_code(client) == HOP_CODE_PRECONDITION_FAILED) {
            snprintf(hint, sizeof hint,
                     "It exists with other properties or arguments (see: hopper list queues "
                     "--json); declare it with the same flags and arguments, or delete it first: "
                     "hopper delete queue %s",
                     name);
            h = hint;
        }
        exit_code = hop_cli_fail(cli, client, rc, h, "declare queue '%s'", name);
    } else if (cli->json) {
        json_t *json =
            json_pack("{s:o, s:I, s:I}", "queue", hop_json_text(queue, strlen(queue)), "messages",
                      (json_int_t)messages, "consumers", (json_int_t)consumers);
        s_print_json(&json);
    } else {
        puts(queue);
    }
    hop_client_destroy(&client);
    return exit_code;
}

int
hop_cli_declare(hop_cli_t *cli, int argc, char **argv)
{
    if (argc > 0 && strcmp(argv[0], "exchange") == 0) {
        cli->command = "declare exchange";
        return s_declare_exchange(cli, argc - 1, argv + 1);
    }
    if (argc > 0 && strcmp(argv[0], "queue") == 0) {
        cli->command = "declare queue";
        return s_declare_queue(cli, argc - 1, argv + 1);
    }
    return hop_cli_usage(cli, "declare what? Say 'hopper declare exchange NAME --type TYPE' or "
                              "'hopper declare queue NAME'");
}

static int
s_delete_queue(hop_cli_t *cli, int argc, char **argv)
{
    static const hop_cli_opt_t opts[] = {
        {"--if-empty", false, S_OPT_IF_EMPTY},
        {"--if-unused", false, S_OPT_IF_UNUSED},
        {NULL, false, 0},
    };
    hop_cli_parsed_t parsed;
    if (hop_cli_parse(cli, argc, argv, opts, 1, 1, "NAME", &parsed) != HOP_EXIT_OK)
        return HOP_EXIT_USAGE;
    const char *name = parsed.positional[0];
    int flags = (parsed.set[S_OPT_IF_EMPTY] ? HOP_IF_EMPTY : 0) |
                (parsed.set[S_OPT_IF_UNUSED] ? HOP_IF_UNUSED : 0);

    hop_client_t *client;
    int exit_code = hop_cli_connect(cli, &client);
    if (exit_code != HOP_EXIT_OK)
        return exit_code;
    uint64_t messages = 0;
    int rc = hop_client_delete_queue(client, name, flags, &messages);
    if (rc != HOP_OK) {
        char hint[HOP_NAME_MAX + 160];
        const char *h = s_queue_hint(client, hint, sizeof hint, name);
        if (hop_client_error_code(client) == HOP_CODE_NOT_FOUND)
            h = "See the queues there are: hopper list queues";
        else if (hop_client_error_code(client) == HOP_CODE_PRECONDITION_FAILED) {
            snprintf(hint, sizeof hint,
                     "It still has %s (see: hopper list queues); drop the --if-* flag to delete "
                     "it anyway",
                     flags == HOP_IF_EMPTY    ? "messages"
                     : flags == HOP_IF_UNUSED ? "consumers"
                                              : "messages or consumers");
            h = hint;
        }
        exit_code = hop_cli_fail(cli, client, rc, h, "delete queue '%s'", name);
    } else if (cli->json) {
        json_t *json = json_pack("{s:o, s:I}", "queue", hop_json_text(name, strlen(name)),
                                 "messages", (json_int_t)messages);
        s_print_json(&json);
    } else {
        printf("deleted queue '%s' and its %" PRIu64 " message%s\n", name, messages,
               messages == 1 ? "" : "s");
    }
    hop_client_destroy(&client);
    return exit_code;
}

static int
s_delete_exchange(hop_cli_t *cli, int argc, char **argv)
{
    static const hop_cli_opt_t opts[] = {
        {"--if-unused", false, S_OPT_IF_UNUSED},
        {NULL, false, 0},
    };
    hop_cli_parsed_t parsed;
    if (hop_cli_parse(cli, argc, argv, opts, 1, 1, "NAME", &parsed) != HOP_EXIT_OK)
        return HOP_EXIT_USAGE;
    const char *name = parsed.positional[0];

    hop_client_t *client;
    int exit_code = hop_cli_connect(cli, &client);
    if (exit_code != HOP_EXIT_OK)
        return exit_code;
    int rc =
        hop_client_delete_exchange(client, name, parsed.set[S_OPT_IF_UNUSED] ? HOP_IF_UNUSED : 0);
    if (rc != HOP_OK) {
        const char *h = NULL;
        switch (hop_client_error_code(client)) {
        case HOP_CODE_NOT_FOUND:
            h = "See the exchanges there are: hopper list exchanges";
            break;
        case HOP_CODE_PRECONDITION_FAILED:
            h = "It still has bindings (see: hopper list bindings); drop --if-unused to delete "
                "it and its bindings anyway";
            break;
        }
        exit_code = hop_cli_fail(cli, client, rc, h, "delete exchange '%s'", name);
    }
    hop_client_destroy(&client);
    return exit_code;
}

int
hop_cli_delete(hop_cli_t *cli, int argc, char **argv)
{
    if (argc > 0 && strcmp(argv[0], "queue") == 0) {
        cli->command = "delete queue";
        return s_delete_queue(cli, argc - 1, argv + 1);
    }
    if (argc > 0 && strcmp(argv[0], "exchange") == 0) {
        cli->command = "delete exchange";
        return s_delete_exchange(cli, argc - 1, argv + 1);
    }
    return hop_cli_usage(cli, "delete what? Say 'hopper delete queue NAME' or 'hopper delete "
                              "exchange NAME'");
}

static int
s_binding(hop_cli_t *cli, int argc, char **argv, bool bind)
{
    static const hop_cli_opt_t opts[] = {
        {"--key", true, S_OPT_KEY},
        {NULL, false, 0},
    };
    hop_cli_parsed_t parsed;
    if (hop_cli_parse(cli, argc, argv, opts, 2, 2, "QUEUE EXCHANGE", &parsed) != HOP_EXIT_OK)
        return HOP_EXIT_USAGE;
    const char *queue = parsed.positional[0];
    const char *exchange = parsed.positional[1];
    const char *key = parsed.value[S_OPT_KEY] ? parsed.value[S_OPT_KEY] : "";

    hop_client_t *client;
    int exit_code = hop_cli_connect(cli, &client);
    if (exit_code != HOP_EXIT_OK)
        return exit_code;
    int rc = bind ? hop_client_bind(client, queue, exchange, key)
                  : hop_client_unbind(client, queue, exchange, key);
    if (rc != HOP_OK) {
        const char *h = NULL;
        switch (hop_client_error_code(client)) {
        case HOP_CODE_NOT_FOUND:
            h = "Both must exist: see hopper list queues and hopper list exchanges";
            break;
        case HOP_CODE_RESOURCE_LOCKED:
            h = "The queue is exclusive to another connection";
            break;
        }
        exit_code =
            hop_cli_fail(cli, client, rc, h, "%s queue '%s' %s exchange '%s' (key '%s')",
                         bind ? "bind" : "unbind", queue, bind ? "to" : "from", exchange, key);
    }
    hop_client_destroy(&client);
    return exit_code;
}

int
hop_cli_bind(hop_cli_t *cli, int argc, char **argv)
{
    return s_binding(cli, argc, argv, true);
}

int
hop_cli_unbind(hop_cli_t *cli, int argc, char **argv)
{
    return s_binding(cli, argc, argv, false);
}

int
hop_cli_purge(hop_cli_t *cli, int argc, char **argv)
{
    hop_cli_parsed_t parsed;
    if (hop_cli_parse(cli, argc, argv, NULL, 1, 1, "QUEUE", &parsed) != HOP_EXIT_OK)
        return HOP_EXIT_USAGE;
    const char *name = parsed.positional[0];

    hop_client_t *client;
    int exit_code = hop_cli_connect(cli, &client);
    if (exit_code != HOP_EXIT_OK)
        return exit_code;
    uint64_t messages = 0;
    int rc = hop_client_purge_queue(client, name, &messages);
    if (rc != HOP_OK) {
        char hint[HOP_NAME_MAX + 64];
        const char *h = s_queue_hint(client, hint, sizeof hint, name);
        exit_code = hop_cli_fail(cli, client, rc, h, "purge queue '%s'", name);
    } else if (cli->json) {
        json_t *json = json_pack("{s:o, s:I}", "queue", hop_json_text(name, strlen(name)),
                                 "messages", (json_int_t)messages);
        s_print_json(&json);
    } else {
        printf("purged %" PRIu64 " message%s from queue '%s'\n", messages, messages == 1 ? "" : "s",
               name);
    }
    hop_client_destroy(&client);
    return exit_code;
}
