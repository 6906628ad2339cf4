// cli/topology.c - the commands that shape the broker: declare, delete, bind, unbind, purge.
// Each makes one synchronous call; on success they print only what the broker returned
// (a queue's name, a message count), so that scripts can use the output.
#include "cli.h"
#include "json.h"

#include <assert.h>
#include <inttypes.h>
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
};

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

static int
s_declare_queue(hop_cli_t *cli, int argc, char **argv)
{
    static const hop_cli_opt_t opts[] = {
        {"--durable", false, S_OPT_DURABLE},
        {"--exclusive", false, S_OPT_EXCLUSIVE},
        {"--auto-delete", false, S_OPT_AUTO_DELETE},
        {"--passive", false, S_OPT_PASSIVE},
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

    hop_client_t *client;
    int exit_code = hop_cli_connect(cli, &client);
    if (exit_code != HOP_EXIT_OK)
        return exit_code;
    char queue[HOP_NAME_MAX + 1] = "";
    uint64_t messages = 0;
    uint64_t consumers = 0;
    int rc = hop_client_declare_queue_ex(client, name, flags, queue, sizeof queue, &messages,
                                         &consumers);
    if (rc != HOP_OK) {
        char hint[HOP_NAME_MAX + 160];
        const char *h = s_queue_hint(client, hint, sizeof hint, name);
        if (hop_client_error_code(client) == HOP_CODE_PRECONDITION_FAILED) {
            snprintf(hint, sizeof hint,
                     "It exists with other properties (see: hopper list queues); declare it "
                     "with the same flags, or delete it first: hopper delete queue %s",
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
