// tests/integration/cli_helpers.c - what the CLI integration tests share (see cli_helpers.h).
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "cli_helpers.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ARGS 48 // words of one CLI command line

// ---------------------------------------------------------------------------------------
// Fixture

int
cx_setup(void **state)
{
    fx_t *fx = calloc(1, sizeof *fx);
    if (!fx)
        return -1;
    fx->broker = harness_broker_start(NULL);
    if (!fx->broker) {
        free(fx);
        return -1;
    }
    *state = fx;
    return 0;
}

int
cx_setup_small(void **state)
{
    fx_t *fx = calloc(1, sizeof *fx);
    if (!fx)
        return -1;
    harness_opts_t opts = {.max_message = 1024};
    fx->broker = harness_broker_start(&opts);
    if (!fx->broker) {
        free(fx);
        return -1;
    }
    *state = fx;
    return 0;
}

int
cx_teardown(void **state)
{
    fx_t *fx = *state;
    if (!fx)
        return 0;
    harness_run_fini(&fx->last);
    for (int i = 0; i < CX_CLIENTS; i++)
        hop_client_destroy(&fx->clients[i]);
    // A test may stop the broker on purpose; one that runs must still exit cleanly.
    int rc = harness_broker_pid(fx->broker) > 0 ? harness_broker_finish(&fx->broker) : 0;
    harness_broker_destroy(&fx->broker);
    free(fx);
    *state = NULL;
    return rc;
}

hop_client_t *
cx_client(fx_t *fx, const char *name)
{
    for (int i = 0; i < CX_CLIENTS; i++) {
        if (fx->clients[i])
            continue;
        hop_client_t *c = hop_client_new();
        hop_client_set_name(c, name);
        hop_client_set_timeout(c, 20000);
        fx->clients[i] = c;
        CX_CHECK(c, hop_client_connect(c, harness_broker_endpoint(fx->broker)));
        return c;
    }
    fail_msg("more than %d clients", CX_CLIENTS);
    return NULL;
}

// ---------------------------------------------------------------------------------------
// Running the CLI

// Runs `hopper [--broker EP --timeout T] args...` (args end with NULL) with input on stdin.
// Returns the exit status; the output is in fx->last.
static int
s_vrun(fx_t *fx, bool with_broker, const char *input, va_list ap)
{
    const char *cli = harness_cli_path();
    assert_non_null(cli);
    char *argv[MAX_ARGS];
    int argc = 0;
    argv[argc++] = (char *)cli;
    if (with_broker) {
        argv[argc++] = "--broker";
        argv[argc++] = (char *)harness_broker_endpoint(fx->broker);
        argv[argc++] = "--timeout";
        argv[argc++] = TIMEOUT;
    }
    const char *arg;
    while ((arg = va_arg(ap, const char *))) {
        assert_true(argc < MAX_ARGS - 1);
        argv[argc++] = (char *)arg;
    }
    argv[argc] = NULL;
    harness_run_fini(&fx->last);
    int status = harness_run(argv, input, input ? strlen(input) : 0, RUN_MS, &fx->last);
    if (fx->last.timed_out) {
        fprintf(stderr, "hopper");
        for (int i = 1; i < argc; i++)
            fprintf(stderr, " '%s'", argv[i]);
        fprintf(stderr, ": still running after %d ms\nstderr: %s\n", RUN_MS, fx->last.err);
        fail_msg("a CLI run hung");
    }
    return status;
}

void
cx_print_last(const fx_t *fx)
{
    fprintf(stderr, "stdout: %s\nstderr: %s\n", fx->last.out, fx->last.err);
}

// Runs against the broker and expects exit status want; returns stdout.
const char *
cx_expect(fx_t *fx, int want, const char *input, ...)
{
    va_list ap;
    va_start(ap, input);
    int status = s_vrun(fx, true, input, ap);
    va_end(ap);
    if (status != want) {
        cx_print_last(fx);
        fail_msg("exit status %d, expected %d", status, want);
    }
    if (want != 0 && strncmp(fx->last.err, "hopper: ", 8) != 0) {
        cx_print_last(fx);
        fail_msg("a failing command must say why on stderr");
    }
    return fx->last.out;
}

// Runs without --broker (help, usage errors). Returns the exit status.
int
cx_plain(fx_t *fx, ...)
{
    va_list ap;
    va_start(ap, fx);
    int status = s_vrun(fx, false, NULL, ap);
    va_end(ap);
    return status;
}

// Parses one JSON document (objects, arrays, ...).
json_t *
cx_parse(const char *text)
{
    json_error_t error;
    json_t *json = json_loads(text, JSON_DECODE_ANY, &error);
    if (!json)
        fail_msg("not JSON (%s at line %d): %s", error.text, error.line, text);
    return json;
}

// Parses one JSON object per line into an array.
json_t *
cx_parse_lines(const char *text)
{
    json_t *array = json_array();
    const char *line = text;
    while (*line) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        if (len) {
            json_error_t error;
            json_t *obj = json_loadb(line, len, 0, &error);
            if (!obj)
                fail_msg("line is not JSON (%s): %.*s", error.text, (int)len, line);
            json_array_append_new(array, obj);
        }
        line += len + (end ? 1 : 0);
    }
    return array;
}

json_t *
cx_find(json_t *array, const char *key, const char *value)
{
    size_t i;
    json_t *item;
    json_array_foreach(array, i, item)
    {
        const char *s = json_string_value(json_object_get(item, key));
        if (s && strcmp(s, value) == 0)
            return item;
    }
    return NULL;
}

json_int_t
cx_int(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    if (!json_is_integer(v))
        fail_msg("field '%s' is missing or not an integer", key);
    return json_integer_value(v);
}

const char *
cx_str(json_t *obj, const char *key)
{
    const char *s = json_string_value(json_object_get(obj, key));
    if (!s)
        fail_msg("field '%s' is missing or not a string", key);
    return s;
}

// A field of one queue in `list queues --json`.
json_int_t
cx_queue_field(fx_t *fx, const char *queue, const char *field)
{
    json_t *list = cx_parse(CLI_OK(fx, "list", "queues", "--json"));
    json_t *q = cx_find(list, "name", queue);
    if (!q)
        fail_msg("queue '%s' not in list queues --json: %s", queue, fx->last.out);
    json_int_t v = cx_int(q, field);
    json_decref(list);
    return v;
}

// Consumes n messages from queue with --json; returns them as an array.
json_t *
cx_consume(fx_t *fx, const char *queue, int n)
{
    char count[16];
    snprintf(count, sizeof count, "%d", n);
    json_t *msgs = cx_parse_lines(
        CLI_OK(fx, "consume", queue, "--count", count, "--idle-timeout", IDLE, "--json"));
    if ((int)json_array_size(msgs) != n)
        fail_msg("consume --count %d printed %zu messages: %s", n, json_array_size(msgs),
                 fx->last.out);
    return msgs;
}

// The bodies of consumed messages joined by ','.
char *
cx_bodies(json_t *msgs, char *out, size_t size)
{
    out[0] = '\0';
    size_t i;
    json_t *m;
    json_array_foreach(msgs, i, m)
    {
        size_t len = strlen(out);
        snprintf(out + len, size - len, "%s%s", i ? "," : "", cx_str(m, "body"));
    }
    return out;
}
