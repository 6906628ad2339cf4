// tests/integration/cli_helpers.h - what the CLI integration tests share (test_cli.c,
// test_cli_delivery.c): a fixture with a broker, running the `hopper` CLI against it as a child
// process with a deadline, and reading its --json output with jansson. The helpers fail the
// running test with cmocka: main thread only.
#ifndef HOP_CLI_HELPERS_H_INCLUDED
#define HOP_CLI_HELPERS_H_INCLUDED

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "harness.h"
#include "hopper.h"

#include <jansson.h>
#include <stdbool.h>

#define RUN_MS  30000   // deadline of one CLI run
#define TIMEOUT "10000" // --timeout of CLI runs against a live broker
#define IDLE    "20000" // --idle-timeout of consume/subscribe: never hang a test forever

#define CX_CLIENTS 4 // SDK clients a test may open beside the CLI (cx_client)

typedef struct {
    harness_broker_t *broker;
    harness_run_t last;                // the last run; its output stays valid until the next one
    hop_client_t *clients[CX_CLIENTS]; // opened by cx_client, destroyed by cx_teardown
} fx_t;

// Fails the test with the client's error when expr is not HOP_OK.
#define CX_CHECK(client, expr)                                                                     \
    do {                                                                                           \
        int rc_ = (expr);                                                                          \
        if (rc_ != HOP_OK)                                                                         \
            fail_msg("%s -> %d (%s): %s", #expr, rc_, hop_strerror(rc_),                           \
                     hop_client_error(client));                                                    \
    } while (0)

// A broker with default options.
int cx_setup(void **state);
// A broker with --max-message 1024.
int cx_setup_small(void **state);
// Frees the last run and the clients; a broker still running must exit cleanly (a test may
// stop it).
int cx_teardown(void **state);
// An SDK client connected to the fixture's broker (timeout 20 s), destroyed at teardown.
hop_client_t *cx_client(fx_t *fx, const char *name);

// Runs `hopper --broker EP --timeout TIMEOUT args...` (args end with NULL) with input on stdin
// (may be NULL) and expects exit status want; a failing command must say why on stderr.
// Returns stdout (valid until the next run).
const char *cx_expect(fx_t *fx, int want, const char *input, ...);
#define CLI_OK(fx, ...)           cx_expect((fx), 0, NULL, __VA_ARGS__, (const char *)NULL)
#define CLI_OK_IN(fx, input, ...) cx_expect((fx), 0, (input), __VA_ARGS__, (const char *)NULL)
#define CLI_EXIT(fx, code, ...)   cx_expect((fx), (code), NULL, __VA_ARGS__, (const char *)NULL)
// Runs without --broker (help, usage errors); args end with NULL. Returns the exit status;
// the output is in fx->last.
int cx_plain(fx_t *fx, ...);
#define PLAIN(fx, ...) cx_plain((fx), __VA_ARGS__, (const char *)NULL)
// Prints the last run's stdout and stderr on stderr.
void cx_print_last(const fx_t *fx);

// Parses one JSON document (objects, arrays, ...). Fails the test when it is not JSON.
json_t *cx_parse(const char *text);
// Parses one JSON object per line into an array.
json_t *cx_parse_lines(const char *text);
// The first object of array whose string key equals value (borrowed), or NULL.
json_t *cx_find(json_t *array, const char *key, const char *value);
// An integer / string field that must be there.
json_int_t cx_int(json_t *obj, const char *key);
const char *cx_str(json_t *obj, const char *key);
// A field of one queue in `list queues --json`.
json_int_t cx_queue_field(fx_t *fx, const char *queue, const char *field);
// Consumes n messages from queue with --json; returns them as an array.
json_t *cx_consume(fx_t *fx, const char *queue, int n);
// The bodies of consumed messages joined by ','.
char *cx_bodies(json_t *msgs, char *out, size_t size);

#endif
