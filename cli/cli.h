// cli/cli.h - what the files of the hopper CLI share: the parsed global options, the option
// parser, exit codes, connecting, error reporting, and one entry point per command.
//
// Every command is `int hop_cli_<command>(hop_cli_t *cli, int argc, char **argv)` where argv
// holds the words after the command word; it prints its own errors and returns the process
// exit code.
#ifndef HOP_CLI_H_INCLUDED
#define HOP_CLI_H_INCLUDED

#include "hopper.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>

// Exit codes, the same for every command (documented in every --help).
enum {
    HOP_EXIT_OK = 0,
    HOP_EXIT_REFUSED = 1,     // the broker refused the request, or output failed
    HOP_EXIT_USAGE = 2,       // bad command line or bad input (e.g. invalid JSON body)
    HOP_EXIT_UNREACHABLE = 3, // no answer from the broker within --timeout
};

#define HOP_CLI_DEFAULT_TIMEOUT 5000 // ms

typedef struct {
    const char *endpoint; // --broker, else $HOPPER_BROKER, else HOP_DEFAULT_ENDPOINT
    int timeout_ms;       // --timeout: bound on every wait for the broker
    bool json;            // --json: machine-readable output (and JSON bodies for publish)
    const char *command;  // "declare queue", "consume", ...: for messages and the conn name
} hop_cli_t;

// One option a command accepts besides the global ones.
typedef struct {
    const char *name; // "--count"
    bool has_value;   // takes the next word (or "--count=5")
    int id;           // > 0, returned by hop_cli_next
} hop_cli_opt_t;

// Walks the words of a command line.
typedef struct {
    int argc;
    char **argv;
    int index;            // next word
    bool positional_only; // "--" seen: every later word is positional
} hop_cli_args_t;

enum {
    HOP_CLI_ARG_END = -1,       // no more words
    HOP_CLI_ARG_ERROR = -2,     // bad option; already reported (exit HOP_EXIT_USAGE)
    HOP_CLI_ARG_POSITIONAL = 0, // *value is a positional word
};

// Returns the id of the next command option (*value its value, or NULL), a HOP_CLI_ARG_*
// code, or handles a global option (--broker, --timeout, --json) itself and moves on.
// opts is terminated by an entry with a NULL name; it may be NULL.
int hop_cli_next(hop_cli_t *cli, hop_cli_args_t *args, const hop_cli_opt_t *opts,
                 const char **value);

// The result of hop_cli_parse: positional words, and which options were given (by id).
#define HOP_CLI_MAX_POSITIONAL 4
#define HOP_CLI_MAX_OPT        32 // option ids are below this
typedef struct {
    const char *positional[HOP_CLI_MAX_POSITIONAL];
    int positional_count;
    bool set[HOP_CLI_MAX_OPT];          // option given
    const char *value[HOP_CLI_MAX_OPT]; // its value (the last one when repeated)
} hop_cli_parsed_t;

// Parses a whole command line of a command that takes between min and max positional words
// (named by synopsis, e.g. "QUEUE EXCHANGE", in the error). Returns HOP_EXIT_OK or reports
// and returns HOP_EXIT_USAGE.
int hop_cli_parse(hop_cli_t *cli, int argc, char **argv, const hop_cli_opt_t *opts, int min,
                  int max, const char *synopsis, hop_cli_parsed_t *parsed);

// Parses value as a whole decimal number in [min, max] into *number. Reports and returns
// HOP_EXIT_USAGE on failure, HOP_EXIT_OK on success.
int hop_cli_number(const hop_cli_t *cli, const char *option, const char *value, long min, long max,
                   long *number);

// Reports a usage error ("hopper: <message>" and where to find help); returns HOP_EXIT_USAGE.
int hop_cli_usage(const hop_cli_t *cli, const char *format, ...)
    __attribute__((format(printf, 2, 3)));

// Creates a client, applies --timeout, names the connection after the command and connects.
// On failure reports (unreachable: exit 3) and returns the exit code; *client_p is then NULL.
int hop_cli_connect(hop_cli_t *cli, hop_client_t **client_p);

// Reports a failed SDK call and returns the exit code it deserves: broker refusals
// (HOP_EXIT_REFUSED) print "hopper: cannot <action>: <broker text> (<code> <name>). <hint>";
// timeouts and lost connections print how to check the broker (HOP_EXIT_UNREACHABLE).
// action is a printf format; hint may be NULL.
int hop_cli_fail(const hop_cli_t *cli, hop_client_t *client, int rc, const char *hint,
                 const char *action, ...) __attribute__((format(printf, 5, 6)));

// Writes the help of topic ("consume", "declare queue", ...; NULL for the overview) to out.
// Returns false when there is no such topic.
bool hop_cli_help(const char *topic, FILE *out);

// Commands.
int hop_cli_declare(hop_cli_t *cli, int argc, char **argv);
int hop_cli_delete(hop_cli_t *cli, int argc, char **argv);
int hop_cli_bind(hop_cli_t *cli, int argc, char **argv);
int hop_cli_unbind(hop_cli_t *cli, int argc, char **argv);
int hop_cli_purge(hop_cli_t *cli, int argc, char **argv);
int hop_cli_publish(hop_cli_t *cli, int argc, char **argv);
int hop_cli_consume(hop_cli_t *cli, int argc, char **argv);
int hop_cli_subscribe(hop_cli_t *cli, int argc, char **argv);
int hop_cli_get(hop_cli_t *cli, int argc, char **argv);
int hop_cli_peek(hop_cli_t *cli, int argc, char **argv);
int hop_cli_list(hop_cli_t *cli, int argc, char **argv);
int hop_cli_status(hop_cli_t *cli, int argc, char **argv);
int hop_cli_top(hop_cli_t *cli, int argc, char **argv);    // cli/top.c
int hop_cli_move(hop_cli_t *cli, int argc, char **argv);   // cli/ops.c
int hop_cli_replay(hop_cli_t *cli, int argc, char **argv); // cli/ops.c
int hop_cli_trace(hop_cli_t *cli, int argc, char **argv);  // cli/trace.c

#endif
