// cli/main.c - `hopper`, the command-line client of the Hopper message bus: global options,
// dispatch to the commands (topology.c, publish.c, messages.c, inspect.c, top.c, trace.c, help.c,
// bench.c), and what every command shares: the option parser, connecting, and turning SDK errors
// into messages that say what went wrong and what to do, with a stable exit code.
#include "bench.h"
#include "cli.h"

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#ifndef HOP_VERSION
#define HOP_VERSION "0.1.0"
#endif

enum { S_OPT_BROKER = 1000, S_OPT_TIMEOUT, S_OPT_JSON, S_OPT_VERSION };

// Options every command accepts, before or after the command word.
static const hop_cli_opt_t s_global_opts[] = {
    {"--broker", true, S_OPT_BROKER},
    {"--timeout", true, S_OPT_TIMEOUT},
    {"--json", false, S_OPT_JSON},
    {NULL, false, 0},
};

typedef int(s_command_fn)(hop_cli_t *cli, int argc, char **argv);

static const struct {
    const char *name;
    s_command_fn *run;
} s_commands[] = {
    {"declare", hop_cli_declare}, {"delete", hop_cli_delete},       {"bind", hop_cli_bind},
    {"unbind", hop_cli_unbind},   {"purge", hop_cli_purge},         {"publish", hop_cli_publish},
    {"consume", hop_cli_consume}, {"subscribe", hop_cli_subscribe}, {"get", hop_cli_get},
    {"list", hop_cli_list},       {"status", hop_cli_status},       {"peek", hop_cli_peek},
    {"top", hop_cli_top},         {"move", hop_cli_move},           {"replay", hop_cli_replay},
    {"trace", hop_cli_trace},
};

static const hop_cli_opt_t *
s_find_opt(const hop_cli_opt_t *opts, const char *word, size_t len)
{
    for (; opts && opts->name; opts++)
        if (strlen(opts->name) == len && memcmp(opts->name, word, len) == 0)
            return opts;
    return NULL;
}

int
hop_cli_next(hop_cli_t *cli, hop_cli_args_t *args, const hop_cli_opt_t *opts, const char **value)
{
    assert(cli);
    assert(args);
    assert(value);
    while (args->index < args->argc) {
        char *word = args->argv[args->index++];
        *value = NULL;
        // "-" alone is a word like any other; "--" ends the options.
        if (args->positional_only || word[0] != '-' || word[1] == '\0') {
            *value = word;
            return HOP_CLI_ARG_POSITIONAL;
        }
        if (strcmp(word, "--") == 0) {
            args->positional_only = true;
            continue;
        }
        const char *equals = strncmp(word, "--", 2) == 0 ? strchr(word, '=') : NULL;
        size_t len = equals ? (size_t)(equals - word) : strlen(word);
        const hop_cli_opt_t *opt = s_find_opt(opts, word, len);
        if (!opt)
            opt = s_find_opt(s_global_opts, word, len);
        if (!opt) {
            hop_cli_usage(cli, "unknown option '%.*s'", (int)len, word);
            return HOP_CLI_ARG_ERROR;
        }
        if (opt->has_value) {
            if (equals)
                *value = equals + 1;
            else if (args->index < args->argc)
                *value = args->argv[args->index++];
            else {
                hop_cli_usage(cli, "option %s needs a value", opt->name);
                return HOP_CLI_ARG_ERROR;
            }
        } else if (equals) {
            hop_cli_usage(cli, "option %s takes no value", opt->name);
            return HOP_CLI_ARG_ERROR;
        }
        long number;
        switch (opt->id) {
        case S_OPT_BROKER:
            if (!**value) {
                hop_cli_usage(cli, "--broker needs an endpoint such as tcp://127.0.0.1:5680");
                return HOP_CLI_ARG_ERROR;
            }
            cli->endpoint = *value;
            break;
        case S_OPT_TIMEOUT:
            if (hop_cli_number(cli, "--timeout", *value, 1, INT_MAX, &number) != HOP_EXIT_OK)
                return HOP_CLI_ARG_ERROR;
            cli->timeout_ms = (int)number;
            break;
        case S_OPT_JSON:
            cli->json = true;
            break;
        default:
            return opt->id;
        }
    }
    return HOP_CLI_ARG_END;
}

int
hop_cli_parse(hop_cli_t *cli, int argc, char **argv, const hop_cli_opt_t *opts, int min, int max,
              const char *synopsis, hop_cli_parsed_t *parsed)
{
    assert(max <= HOP_CLI_MAX_POSITIONAL);
    memset(parsed, 0, sizeof *parsed);
    hop_cli_args_t args = {.argc = argc, .argv = argv};
    const char *value;
    int id;
    int count = 0;
    while ((id = hop_cli_next(cli, &args, opts, &value)) != HOP_CLI_ARG_END) {
        if (id == HOP_CLI_ARG_ERROR)
            return HOP_EXIT_USAGE;
        if (id == HOP_CLI_ARG_POSITIONAL) {
            if (count < HOP_CLI_MAX_POSITIONAL)
                parsed->positional[count] = value;
            count++;
            continue;
        }
        assert(id > 0 && id < HOP_CLI_MAX_OPT);
        parsed->set[id] = true;
        parsed->value[id] = value;
    }
    if (count < min || count > max) {
        if (max == 0)
            return hop_cli_usage(cli, "%s takes no arguments besides options (got '%s')",
                                 cli->command, parsed->positional[0]);
        return hop_cli_usage(cli, "%s needs %s (got %d argument%s)", cli->command, synopsis, count,
                             count == 1 ? "" : "s");
    }
    parsed->positional_count = count;
    return HOP_EXIT_OK;
}

int
hop_cli_number(const hop_cli_t *cli, const char *option, const char *value, long min, long max,
               long *number)
{
    assert(option);
    assert(value);
    assert(number);
    char *end;
    errno = 0;
    long parsed = strtol(value, &end, 10);
    if (errno || end == value || *end || parsed < min || parsed > max) {
        if (max == LONG_MAX || max == INT_MAX)
            return hop_cli_usage(cli, "%s needs a whole number >= %ld, not '%s'", option, min,
                                 value);
        return hop_cli_usage(cli, "%s needs a whole number from %ld to %ld, not '%s'", option, min,
                             max, value);
    }
    *number = parsed;
    return HOP_EXIT_OK;
}

int
hop_cli_usage(const hop_cli_t *cli, const char *format, ...)
{
    va_list ap;
    va_start(ap, format);
    fputs("hopper: ", stderr);
    vfprintf(stderr, format, ap);
    va_end(ap);
    if (cli && cli->command)
        fprintf(stderr, "\nRun 'hopper %s --help' for usage.\n", cli->command);
    else
        fputs("\nRun 'hopper --help' for usage.\n", stderr);
    return HOP_EXIT_USAGE;
}

int
hop_cli_connect(hop_cli_t *cli, hop_client_t **client_p)
{
    assert(cli);
    assert(client_p);
    hop_client_t *client = hop_client_new();
    hop_client_set_timeout(client, cli->timeout_ms);
    char name[64];
    snprintf(name, sizeof name, "hopper %s", cli->command ? cli->command : "");
    hop_client_set_name(client, name);
    int rc = hop_client_connect(client, cli->endpoint);
    if (rc == HOP_OK) {
        *client_p = client;
        return HOP_EXIT_OK;
    }
    int exit_code;
    if (rc == HOP_EINVAL) {
        fprintf(stderr,
                "hopper: '%s' is not a broker endpoint (%s). Use tcp://HOST:PORT, e.g. --broker "
                "tcp://127.0.0.1:5680\n",
                cli->endpoint, hop_client_error(client));
        exit_code = HOP_EXIT_USAGE;
    } else if (rc == HOP_ECONNECT || rc == HOP_ETIMEOUT || rc == HOP_ECLOSED) {
        fprintf(stderr,
                "hopper: cannot reach broker at %s within %d ms — is hopperd running? start it "
                "with scripts/run.sh (or point --broker / $HOPPER_BROKER at it)\n",
                cli->endpoint, cli->timeout_ms);
        exit_code = HOP_EXIT_UNREACHABLE;
    } else {
        fprintf(stderr, "hopper: the broker at %s refused the connection: %s\n", cli->endpoint,
                hop_client_error(client));
        exit_code = HOP_EXIT_REFUSED;
    }
    hop_client_destroy(&client);
    *client_p = NULL;
    return exit_code;
}

int
hop_cli_fail(const hop_cli_t *cli, hop_client_t *client, int rc, const char *hint,
             const char *action, ...)
{
    assert(cli);
    assert(rc != HOP_OK);
    const char *text = client ? hop_client_error(client) : "";
    if (!text || !*text)
        text = hop_strerror(rc);
    int code = client ? hop_client_error_code(client) : 0;
    // The SDK words a refusal "broker: 404 not-found: no queue 'x'"; we print the broker's
    // text first and its code after, so drop that prefix.
    if (code) {
        char prefix[64];
        snprintf(prefix, sizeof prefix, "broker: %d %s: ", code, hop_code_name(code));
        if (strncmp(text, prefix, strlen(prefix)) == 0)
            text += strlen(prefix);
    }

    fputs("hopper: cannot ", stderr);
    va_list ap;
    va_start(ap, action);
    vfprintf(stderr, action, ap);
    va_end(ap);

    switch (rc) {
    case HOP_ETIMEOUT:
        fprintf(stderr,
                ": the broker at %s did not answer within %d ms. Is it overloaded or stopped? "
                "Check with: hopper status (or raise --timeout)\n",
                cli->endpoint, cli->timeout_ms);
        return HOP_EXIT_UNREACHABLE;
    case HOP_ECONNECT:
    case HOP_ECLOSED:
        if (strstr(text, cli->endpoint)) // the SDK's text already names the broker
            fprintf(stderr, ": %s. Is hopperd still running?\n", text);
        else
            fprintf(stderr,
                    ": lost the connection to the broker at %s (%s). Is hopperd still running?\n",
                    cli->endpoint, text);
        return HOP_EXIT_UNREACHABLE;
    case HOP_EINVAL:
        fprintf(stderr, ": %s\n", text);
        return HOP_EXIT_USAGE;
    default:
        if (code)
            fprintf(stderr, ": %s (%d %s)", text, code, hop_code_name(code));
        else
            fprintf(stderr, ": %s", text);
        if (hint)
            fprintf(stderr, ". %s", hint);
        fputc('\n', stderr);
        return HOP_EXIT_REFUSED;
    }
}

// True when word is a global option that takes a value as the next word.
static bool
s_global_takes_value(const char *word)
{
    return strcmp(word, "--broker") == 0 || strcmp(word, "--timeout") == 0;
}

// Finds -h/--help anywhere before "--" and prints the help of the command it follows
// ("hopper declare queue --help" -> topic "declare queue"). Returns -1 when there is none.
static int
s_help_flag(int argc, char **argv)
{
    bool found = false;
    for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++)
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0)
            found = true;
    if (!found)
        return -1;
    const char *words[2] = {NULL, NULL};
    int count = 0;
    for (int i = 1; i < argc && count < 2 && strcmp(argv[i], "--") != 0; i++) {
        if (argv[i][0] == '-') {
            if (s_global_takes_value(argv[i]))
                i++;
            continue;
        }
        words[count++] = argv[i];
    }
    if (!words[0]) {
        hop_cli_help(NULL, stdout);
        return HOP_EXIT_OK;
    }
    if (strcmp(words[0], "bench") == 0)
        return -1; // bench parses its own --help
    char topic[128];
    snprintf(topic, sizeof topic, "%s%s%s", words[0], words[1] ? " " : "",
             words[1] ? words[1] : "");
    if (!hop_cli_help(topic, stdout))
        return hop_cli_usage(NULL, "unknown command '%s'", words[0]);
    return HOP_EXIT_OK;
}

// `hopper help [COMMAND [SUBCOMMAND]]`
static int
s_help_command(hop_cli_t *cli, int argc, char **argv)
{
    if (argc == 0) {
        hop_cli_help(NULL, stdout);
        return HOP_EXIT_OK;
    }
    if (strcmp(argv[0], "bench") == 0) {
        char *help_argv[] = {"bench", "--help", NULL};
        return hop_bench_main(2, help_argv, cli->endpoint, cli->timeout_ms);
    }
    char topic[128];
    snprintf(topic, sizeof topic, "%s%s%s", argv[0], argc > 1 ? " " : "", argc > 1 ? argv[1] : "");
    if (!hop_cli_help(topic, stdout))
        return hop_cli_usage(NULL, "no help on '%s': there is no such command", argv[0]);
    return HOP_EXIT_OK;
}

// `hopper [--json] bench ARGS`: bench parses its own options (its argv[0] is "bench"); a
// --json given before the command is passed on to it.
static int
s_bench(const hop_cli_t *cli, int argc, char **argv)
{
    char **bench_argv = calloc((size_t)argc + 3, sizeof *bench_argv);
    assert(bench_argv);
    int bench_argc = 0;
    bench_argv[bench_argc++] = "bench";
    for (int i = 0; i < argc; i++)
        bench_argv[bench_argc++] = argv[i];
    if (cli->json)
        bench_argv[bench_argc++] = "--json";
    int exit_code = hop_bench_main(bench_argc, bench_argv, cli->endpoint, cli->timeout_ms);
    free(bench_argv);
    return exit_code;
}

// Flushes stdout and reports a failed write (a closed pipe is not worth a message).
static int
s_finish_output(int exit_code)
{
    errno = 0;
    if (fflush(stdout) == 0 && !ferror(stdout))
        return exit_code;
    if (errno != EPIPE)
        fprintf(stderr, "hopper: cannot write the output: %s\n", strerror(errno));
    return exit_code ? exit_code : HOP_EXIT_REFUSED;
}

int
main(int argc, char **argv)
{
    // A reader that goes away (hopper consume q | head -1) must not kill us between printing
    // a message and settling it: writes fail with EPIPE instead and the command stops.
    signal(SIGPIPE, SIG_IGN);

    int help = s_help_flag(argc, argv);
    if (help >= 0)
        return s_finish_output(help);

    hop_cli_t cli = {.timeout_ms = HOP_CLI_DEFAULT_TIMEOUT};
    const char *env = getenv("HOPPER_BROKER");
    cli.endpoint = env && *env ? env : HOP_DEFAULT_ENDPOINT;

    static const hop_cli_opt_t opts[] = {{"--version", false, S_OPT_VERSION}, {NULL, false, 0}};
    hop_cli_args_t args = {.argc = argc, .argv = argv, .index = 1};
    const char *command = NULL;
    const char *value;
    int id;
    while (!command && (id = hop_cli_next(&cli, &args, opts, &value)) != HOP_CLI_ARG_END) {
        if (id == HOP_CLI_ARG_ERROR)
            return HOP_EXIT_USAGE;
        if (id == S_OPT_VERSION) {
            printf("hopper %s (protocol %d)\n", HOP_VERSION, HOP_PROTOCOL_VERSION);
            return s_finish_output(HOP_EXIT_OK);
        }
        command = value;
    }
    if (!command) {
        hop_cli_help(NULL, stderr);
        return HOP_EXIT_USAGE;
    }
    int rest_argc = argc - args.index;
    char **rest_argv = argv + args.index;

    if (strcmp(command, "help") == 0)
        return s_finish_output(s_help_command(&cli, rest_argc, rest_argv));
    if (strcmp(command, "bench") == 0)
        return s_finish_output(s_bench(&cli, rest_argc, rest_argv));
    for (size_t i = 0; i < sizeof s_commands / sizeof s_commands[0]; i++) {
        if (strcmp(command, s_commands[i].name) == 0) {
            cli.command = command;
            return s_finish_output(s_commands[i].run(&cli, rest_argc, rest_argv));
        }
    }
    return hop_cli_usage(NULL,
                         "unknown command '%s'. The commands are: declare, delete, bind, "
                         "unbind, purge, publish, consume, subscribe, get, peek, list, status, "
                         "top, move, replay, trace, bench, help",
                         command);
}
