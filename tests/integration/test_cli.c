// tests/integration/test_cli.c - the `hopper` CLI against a real hopperd: every command's help,
// exit codes (0 ok, 1 refused, 2 usage, 3 unreachable), topology and messages end to end for
// each exchange type, the --json output (parsed with jansson), and the delivery guarantees:
// queue arguments, confirms, mandatory returns, dead letters, retries and priorities.
//
// Each CLI run is a child process with a deadline (harness_run); stdout and stderr are kept
// apart, so a test can require that a command which failed said why on stderr.
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "harness.h"
#include "hopper.h"
#include "raw.h"

#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RUN_MS   30000   // deadline of one CLI run
#define TIMEOUT  "10000" // --timeout of CLI runs against a live broker
#define IDLE     "20000" // --idle-timeout of consume/subscribe: never hang a test forever
#define MAX_ARGS 48

typedef struct {
    harness_broker_t *broker;
    harness_run_t last; // the last run; its output stays valid until the next one
} fx_t;

static int
setup(void **state)
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

static int
setup_small(void **state)
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

static int
teardown(void **state)
{
    fx_t *fx = *state;
    if (!fx)
        return 0;
    harness_run_fini(&fx->last);
    // A test may stop the broker on purpose; one that runs must still exit cleanly.
    int rc = harness_broker_pid(fx->broker) > 0 ? harness_broker_finish(&fx->broker) : 0;
    harness_broker_destroy(&fx->broker);
    free(fx);
    *state = NULL;
    return rc;
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

static void
s_print_last(const fx_t *fx)
{
    fprintf(stderr, "stdout: %s\nstderr: %s\n", fx->last.out, fx->last.err);
}

// Runs against the broker and expects exit status want; returns stdout.
static const char *
s_expect(fx_t *fx, int want, const char *input, ...)
{
    va_list ap;
    va_start(ap, input);
    int status = s_vrun(fx, true, input, ap);
    va_end(ap);
    if (status != want) {
        s_print_last(fx);
        fail_msg("exit status %d, expected %d", status, want);
    }
    if (want != 0 && strncmp(fx->last.err, "hopper: ", 8) != 0) {
        s_print_last(fx);
        fail_msg("a failing command must say why on stderr");
    }
    return fx->last.out;
}

#define CLI_OK(fx, ...)           s_expect((fx), 0, NULL, __VA_ARGS__, (const char *)NULL)
#define CLI_OK_IN(fx, input, ...) s_expect((fx), 0, (input), __VA_ARGS__, (const char *)NULL)
#define CLI_EXIT(fx, code, ...)   s_expect((fx), (code), NULL, __VA_ARGS__, (const char *)NULL)

// Runs without --broker (help, usage errors). Returns the exit status.
static int
s_plain(fx_t *fx, ...)
{
    va_list ap;
    va_start(ap, fx);
    int status = s_vrun(fx, false, NULL, ap);
    va_end(ap);
    return status;
}

#define PLAIN(fx, ...) s_plain((fx), __VA_ARGS__, (const char *)NULL)

// Parses one JSON document (objects, arrays, ...).
static json_t *
s_parse(const char *text)
{
    json_error_t error;
    json_t *json = json_loads(text, JSON_DECODE_ANY, &error);
    if (!json)
        fail_msg("not JSON (%s at line %d): %s", error.text, error.line, text);
    return json;
}

// Parses one JSON object per line into an array.
static json_t *
s_parse_lines(const char *text)
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

static json_t *
s_find(json_t *array, const char *key, const char *value)
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

static json_int_t
s_int(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    if (!json_is_integer(v))
        fail_msg("field '%s' is missing or not an integer", key);
    return json_integer_value(v);
}

static const char *
s_str(json_t *obj, const char *key)
{
    const char *s = json_string_value(json_object_get(obj, key));
    if (!s)
        fail_msg("field '%s' is missing or not a string", key);
    return s;
}

// A field of one queue in `list queues --json`.
static json_int_t
s_queue_field(fx_t *fx, const char *queue, const char *field)
{
    json_t *list = s_parse(CLI_OK(fx, "list", "queues", "--json"));
    json_t *q = s_find(list, "name", queue);
    if (!q)
        fail_msg("queue '%s' not in list queues --json: %s", queue, fx->last.out);
    json_int_t v = s_int(q, field);
    json_decref(list);
    return v;
}

// Consumes n messages from queue with --json; returns them as an array.
static json_t *
s_consume(fx_t *fx, const char *queue, int n)
{
    char count[16];
    snprintf(count, sizeof count, "%d", n);
    json_t *msgs = s_parse_lines(
        CLI_OK(fx, "consume", queue, "--count", count, "--idle-timeout", IDLE, "--json"));
    if ((int)json_array_size(msgs) != n)
        fail_msg("consume --count %d printed %zu messages: %s", n, json_array_size(msgs),
                 fx->last.out);
    return msgs;
}

// The bodies of consumed messages joined by ','.
static char *
s_bodies(json_t *msgs, char *out, size_t size)
{
    out[0] = '\0';
    size_t i;
    json_t *m;
    json_array_foreach(msgs, i, m)
    {
        size_t len = strlen(out);
        snprintf(out + len, size - len, "%s%s", i ? "," : "", s_str(m, "body"));
    }
    return out;
}

// ---------------------------------------------------------------------------------------
// Help, usage, exit codes

// Whether text mentions "usage" in any case.
static bool
s_has_usage(const char *text)
{
    for (; *text; text++)
        if ((text[0] | 0x20) == 'u' && strncmp(text + 1, "sage", 4) == 0)
            return true;
    return false;
}

static void
test_help_of_every_command_exits_0(void **state)
{
    fx_t *fx = *state;
    static const char *const commands[][2] = {
        {"declare", NULL},   {"declare", "exchange"}, {"declare", "queue"}, {"delete", NULL},
        {"delete", "queue"}, {"delete", "exchange"},  {"bind", NULL},       {"unbind", NULL},
        {"purge", NULL},     {"publish", NULL},       {"consume", NULL},    {"subscribe", NULL},
        {"get", NULL},       {"list", NULL},          {"status", NULL},     {"bench", NULL},
        {"help", NULL},
    };
    assert_int_equal(PLAIN(fx, "--help"), 0);
    assert_non_null(strstr(fx->last.out, "Usage"));
    assert_int_equal(PLAIN(fx, "-h"), 0);
    assert_int_equal(PLAIN(fx, "help"), 0);
    assert_int_equal(PLAIN(fx, "--version"), 0);
    assert_non_null(strstr(fx->last.out, "hopper"));
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        const char *cmd = commands[i][0], *sub = commands[i][1];
        int status = sub ? PLAIN(fx, cmd, sub, "--help") : PLAIN(fx, cmd, "--help");
        if (status != 0 || !s_has_usage(fx->last.out)) {
            s_print_last(fx);
            fail_msg("hopper %s %s --help: exit %d", cmd, sub ? sub : "", status);
        }
        // help COMMAND says the same thing
        if (!sub && strcmp(cmd, "help") != 0) {
            status = PLAIN(fx, "help", cmd);
            if (status != 0 || !s_has_usage(fx->last.out))
                fail_msg("hopper help %s: exit %d", cmd, status);
        }
    }
}

static void
test_usage_errors_exit_2(void **state)
{
    fx_t *fx = *state;
    CLI_EXIT(fx, 2, "frobnicate");
    CLI_EXIT(fx, 2, "declare");
    CLI_EXIT(fx, 2, "declare", "exchange", "x"); // no --type
    CLI_EXIT(fx, 2, "declare", "exchange", "x", "--type", "headers");
    CLI_EXIT(fx, 2, "declare", "queue");
    CLI_EXIT(fx, 2, "declare", "queue", "q", "--bogus-flag");
    CLI_EXIT(fx, 2, "bind", "only-a-queue");
    CLI_EXIT(fx, 2, "publish");
    CLI_EXIT(fx, 2, "consume", "q", "--count", "abc");
    CLI_EXIT(fx, 2, "consume", "q", "--prefetch", "-1");
    CLI_EXIT(fx, 2, "list", "bananas");
    CLI_EXIT(fx, 2, "delete", "table", "t");
    CLI_EXIT(fx, 2, "publish", "--json", "", "q", "{not json");
    CLI_EXIT(fx, 2, "--timeout", "0", "status");
    CLI_EXIT(fx, 2, "status", "extra-argument");
    assert_int_equal(PLAIN(fx, (const char *)NULL), 2); // no command at all
    // None of that reached the broker.
    json_t *list = s_parse(CLI_OK(fx, "list", "queues", "--json"));
    assert_int_equal(json_array_size(list), 0);
    json_decref(list);
}

static void
test_broker_refusals_exit_1(void **state)
{
    fx_t *fx = *state;
    CLI_OK(fx, "declare", "queue", "q1");
    CLI_EXIT(fx, 1, "bind", "q1", "no-such-exchange", "--key", "k");
    assert_non_null(strstr(fx->last.err, "no-such-exchange"));
    CLI_EXIT(fx, 1, "bind", "no-such-queue", "amq.direct");
    CLI_EXIT(fx, 1, "declare", "queue", "q1", "--durable"); // other properties
    CLI_EXIT(fx, 1, "declare", "queue", "missing", "--passive");
    CLI_EXIT(fx, 1, "declare", "exchange", "missing", "--passive");
    CLI_EXIT(fx, 1, "declare", "exchange", "amq.mine", "--type", "direct");
    CLI_EXIT(fx, 1, "delete", "queue", "missing");
    CLI_EXIT(fx, 1, "delete", "exchange", "amq.topic");
    CLI_EXIT(fx, 1, "publish", "no-such-exchange", "k", "body");
    CLI_EXIT(fx, 1, "consume", "missing", "--count", "1", "--idle-timeout", "1000");
    CLI_EXIT(fx, 1, "get", "missing");
    CLI_EXIT(fx, 1, "purge", "missing");
    CLI_OK(fx, "publish", "", "q1", "m");
    CLI_EXIT(fx, 1, "delete", "queue", "q1", "--if-empty");
    assert_int_equal(s_queue_field(fx, "q1", "messages_ready"), 1);
}

// `hopper publish --help`: "a refusal (unknown exchange, body too large) ends in exit 1".
static void
test_body_over_max_message_exits_1(void **state)
{
    fx_t *fx = *state;
    CLI_OK(fx, "declare", "queue", "small");
    char body[1025 + 1];
    memset(body, 'b', sizeof body - 1);
    body[sizeof body - 1] = '\0';
    body[1024] = '\0';
    CLI_OK_IN(fx, body, "publish", "", "small"); // exactly the limit
    body[1024] = 'b';
    CLI_EXIT(fx, 1, "publish", "", "small", body);
    assert_int_equal(s_queue_field(fx, "small", "messages_ready"), 1);
}

static void
test_unreachable_broker_exits_3(void **state)
{
    fx_t *fx = *state;
    char endpoint[256];
    snprintf(endpoint, sizeof endpoint, "%s", harness_broker_endpoint(fx->broker));
    assert_int_equal(harness_broker_stop(fx->broker, HARNESS_STOP_TIMEOUT_MS), 0);
    // Nothing listens on that port now.
    static const char *const commands[][4] = {
        {"status", NULL},          {"list", "queues"}, {"declare", "queue", "q"},
        {"publish", "", "q", "m"}, {"get", "q"},       {"consume", "q"},
    };
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        const char *const *c = commands[i];
        int status = PLAIN(fx, "--broker", endpoint, "--timeout", "500", c[0], c[1], c[2], c[3]);
        if (status != 3) {
            s_print_last(fx);
            fail_msg("hopper %s against a closed port: exit %d, expected 3", c[0], status);
        }
        assert_non_null(strstr(fx->last.err, endpoint));
        print_message("hopper %s %s: exit 3 after %ld ms\n", c[0], c[1] ? c[1] : "",
                      fx->last.elapsed_ms);
    }
}

// ---------------------------------------------------------------------------------------
// Topology and messages

static void
test_queue_lifecycle(void **state)
{
    fx_t *fx = *state;
    assert_string_equal(CLI_OK(fx, "declare", "queue", "jobs"), "jobs\n");
    CLI_OK(fx, "declare", "queue", "jobs"); // idempotent
    const char *generated = CLI_OK(fx, "declare", "queue", "");
    assert_true(strncmp(generated, "amq.gen-", 8) == 0);

    // publish: the body as an argument, and from stdin byte for byte.
    CLI_OK(fx, "publish", "", "jobs", "from an argument");
    CLI_OK_IN(fx, "from stdin\nwith two lines\n", "publish", "", "jobs");
    json_t *q = s_parse(CLI_OK(fx, "declare", "queue", "jobs", "--passive", "--json"));
    assert_string_equal(s_str(q, "queue"), "jobs");
    assert_int_equal(s_int(q, "messages"), 2);
    assert_int_equal(s_int(q, "consumers"), 0);
    json_decref(q);

    json_t *list = s_parse(CLI_OK(fx, "list", "queues", "--json"));
    json_t *item = s_find(list, "name", "jobs");
    assert_non_null(item);
    assert_true(json_is_false(json_object_get(item, "durable")));
    assert_int_equal(s_int(item, "messages_ready"), 2);
    assert_int_equal(s_int(item, "messages_unacked"), 0);
    assert_int_equal(s_int(item, "consumers"), 0);
    json_decref(list);

    json_t *msgs = s_consume(fx, "jobs", 2);
    json_t *m = json_array_get(msgs, 0);
    assert_string_equal(s_str(m, "body"), "from an argument");
    assert_string_equal(s_str(m, "exchange"), "");
    assert_string_equal(s_str(m, "routing_key"), "jobs");
    assert_true(json_is_false(json_object_get(m, "redelivered")));
    assert_int_equal(s_int(m, "delivery_count"), 1);
    assert_string_equal(s_str(m, "body_encoding"), "text");
    m = json_array_get(msgs, 1);
    assert_string_equal(s_str(m, "body"), "from stdin\nwith two lines\n");
    json_decref(msgs);
    assert_int_equal(s_queue_field(fx, "jobs", "messages"), 0);
    assert_int_equal(s_queue_field(fx, "jobs", "acked"), 2);

    // get: empty is not an error; a message comes with message_count.
    assert_string_equal(CLI_OK(fx, "get", "jobs"), "");
    assert_non_null(strstr(fx->last.err, "empty"));
    CLI_OK(fx, "publish", "", "jobs", "one");
    CLI_OK(fx, "publish", "", "jobs", "two");
    json_t *got = s_parse(CLI_OK(fx, "get", "jobs", "--json"));
    assert_string_equal(s_str(got, "body"), "one");
    assert_int_equal(s_int(got, "message_count"), 1);
    json_decref(got);
    // peek: reject with requeue leaves it at the head, redelivered
    got = s_parse(CLI_OK(fx, "get", "jobs", "--reject", "--requeue", "--json"));
    assert_string_equal(s_str(got, "body"), "two");
    json_decref(got);
    got = s_parse(CLI_OK(fx, "get", "jobs", "--json"));
    assert_string_equal(s_str(got, "body"), "two");
    assert_true(json_is_true(json_object_get(got, "redelivered")));
    assert_int_equal(s_int(got, "delivery_count"), 2);
    json_decref(got);

    // purge and delete report counts.
    for (int i = 0; i < 3; i++)
        CLI_OK(fx, "publish", "", "jobs", "x");
    json_t *purged = s_parse(CLI_OK(fx, "purge", "jobs", "--json"));
    assert_int_equal(s_int(purged, "messages"), 3);
    json_decref(purged);
    CLI_OK(fx, "publish", "", "jobs", "x");
    json_t *deleted = s_parse(CLI_OK(fx, "delete", "queue", "jobs", "--json"));
    assert_int_equal(s_int(deleted, "messages"), 1);
    json_decref(deleted);
    CLI_EXIT(fx, 1, "declare", "queue", "jobs", "--passive");

    json_t *status = s_parse(CLI_OK(fx, "status", "--json"));
    assert_string_equal(s_str(status, "endpoint"), harness_broker_endpoint(fx->broker));
    assert_true(s_int(status, "published") == 8);
    assert_true(s_int(status, "uptime_ms") >= 0);
    json_decref(status);
    assert_non_null(strstr(CLI_OK(fx, "status"), harness_broker_endpoint(fx->broker)));
}

static void
test_direct_exchange(void **state)
{
    fx_t *fx = *state;
    CLI_OK(fx, "declare", "exchange", "orders", "--type", "direct");
    CLI_OK(fx, "declare", "queue", "paid");
    CLI_OK(fx, "declare", "queue", "shipped");
    CLI_OK(fx, "bind", "paid", "orders", "--key", "order.paid");
    CLI_OK(fx, "bind", "shipped", "orders", "--key", "order.shipped");
    CLI_OK(fx, "publish", "orders", "order.paid", "p1");
    CLI_OK(fx, "publish", "orders", "order.shipped", "s1");
    CLI_OK(fx, "publish", "orders", "order.refunded", "nobody");
    CLI_OK(fx, "publish", "orders", "order.paid", "p2");
    char bodies[256];
    json_t *msgs = s_consume(fx, "paid", 2);
    assert_string_equal(s_bodies(msgs, bodies, sizeof bodies), "p1,p2");
    assert_string_equal(s_str(json_array_get(msgs, 0), "exchange"), "orders");
    assert_string_equal(s_str(json_array_get(msgs, 0), "routing_key"), "order.paid");
    json_decref(msgs);
    msgs = s_consume(fx, "shipped", 1);
    assert_string_equal(s_bodies(msgs, bodies, sizeof bodies), "s1");
    json_decref(msgs);
    assert_int_equal(s_queue_field(fx, "paid", "messages"), 0);
    assert_int_equal(s_queue_field(fx, "shipped", "messages"), 0);
    json_t *exchanges = s_parse(CLI_OK(fx, "list", "exchanges", "--json"));
    json_t *x = s_find(exchanges, "name", "orders");
    assert_non_null(x);
    assert_string_equal(s_str(x, "type"), "direct");
    assert_int_equal(s_int(x, "bindings"), 2);
    assert_int_equal(s_int(x, "unroutable"), 1);
    json_decref(exchanges);
    // unbind, then the key no longer routes
    CLI_OK(fx, "unbind", "paid", "orders", "--key", "order.paid");
    CLI_OK(fx, "publish", "orders", "order.paid", "p3");
    assert_int_equal(s_queue_field(fx, "paid", "messages"), 0);
    CLI_EXIT(fx, 1, "delete", "exchange", "orders", "--if-unused");
    CLI_OK(fx, "delete", "exchange", "orders");
    CLI_EXIT(fx, 1, "declare", "exchange", "orders", "--passive");
}

static void
test_fanout_exchange(void **state)
{
    fx_t *fx = *state;
    CLI_OK(fx, "declare", "exchange", "news", "--type", "fanout");
    CLI_OK(fx, "declare", "queue", "reader-1");
    CLI_OK(fx, "declare", "queue", "reader-2");
    CLI_OK(fx, "bind", "reader-1", "news");
    CLI_OK(fx, "bind", "reader-2", "news", "--key", "ignored");
    CLI_OK(fx, "publish", "news", "", "first");
    CLI_OK(fx, "publish", "news", "any.key", "second");
    char bodies[256];
    for (int i = 1; i <= 2; i++) {
        char queue[16];
        snprintf(queue, sizeof queue, "reader-%d", i);
        json_t *msgs = s_consume(fx, queue, 2);
        assert_string_equal(s_bodies(msgs, bodies, sizeof bodies), "first,second");
        json_decref(msgs);
        assert_int_equal(s_queue_field(fx, queue, "messages"), 0);
    }
    json_t *bindings = s_parse(CLI_OK(fx, "list", "bindings", "--json"));
    assert_non_null(s_find(bindings, "queue", "reader-2"));
    json_decref(bindings);
}

static void
test_topic_exchange(void **state)
{
    fx_t *fx = *state;
    CLI_OK(fx, "declare", "exchange", "logs", "--type", "topic");
    CLI_OK(fx, "declare", "queue", "errors");
    CLI_OK(fx, "declare", "queue", "app");
    CLI_OK(fx, "bind", "errors", "logs", "--key", "*.*.error");
    CLI_OK(fx, "bind", "app", "logs", "--key", "app.#");
    const char *keys[] = {"app.web.error", "app.web.info", "app", "sys.disk.error", "app.a.b.c"};
    for (int i = 0; i < 5; i++)
        CLI_OK(fx, "publish", "logs", keys[i], keys[i]);
    char bodies[256];
    json_t *msgs = s_consume(fx, "errors", 2);
    assert_string_equal(s_bodies(msgs, bodies, sizeof bodies), "app.web.error,sys.disk.error");
    json_decref(msgs);
    msgs = s_consume(fx, "app", 4);
    assert_string_equal(s_bodies(msgs, bodies, sizeof bodies),
                        "app.web.error,app.web.info,app,app.a.b.c");
    json_decref(msgs);
    assert_int_equal(s_queue_field(fx, "errors", "messages"), 0);
    assert_int_equal(s_queue_field(fx, "app", "messages"), 0);
}

static void
test_default_exchange(void **state)
{
    fx_t *fx = *state;
    CLI_OK(fx, "declare", "queue", "inbox");
    CLI_OK(fx, "publish", "", "inbox", "by name");
    // To a queue that does not exist: dropped, with a warning, exit 0.
    CLI_OK(fx, "publish", "", "no-such-queue", "lost");
    assert_non_null(strstr(fx->last.err, "no-such-queue"));
    json_t *msgs = s_consume(fx, "inbox", 1);
    assert_string_equal(s_str(json_array_get(msgs, 0), "body"), "by name");
    assert_string_equal(s_str(json_array_get(msgs, 0), "routing_key"), "inbox");
    json_decref(msgs);
    CLI_EXIT(fx, 1, "bind", "inbox", "", "--key", "x"); // the default exchange takes no binding
}

static void
test_publish_options(void **state)
{
    fx_t *fx = *state;
    CLI_OK(fx, "declare", "queue", "opts");
    CLI_OK_IN(fx, "a\nb\nc\n", "publish", "", "opts", "--lines");
    CLI_OK(fx, "publish", "", "opts", "copy", "--count", "3");
    CLI_OK(fx, "publish", "", "opts", "tagged", "--header", "tenant=acme", "--header", "try=2",
           "--content-type", "text/plain", "--message-id", "m-7", "--correlation-id", "c-9");
    CLI_OK(fx, "publish", "", "opts", "--json", "{\"id\": 42, \"items\": [1, 2]}");
    assert_int_equal(s_queue_field(fx, "opts", "messages_ready"), 8);
    json_t *msgs = s_consume(fx, "opts", 8);
    char bodies[256];
    json_t *tail = json_array();
    for (size_t i = 0; i < 6; i++)
        json_array_append(tail, json_array_get(msgs, i));
    assert_string_equal(s_bodies(tail, bodies, sizeof bodies), "a,b,c,copy,copy,copy");
    json_decref(tail);
    json_t *tagged = json_array_get(msgs, 6);
    assert_string_equal(s_str(tagged, "body"), "tagged");
    json_t *headers = json_object_get(tagged, "headers");
    assert_string_equal(s_str(headers, "tenant"), "acme");
    assert_string_equal(s_str(headers, "try"), "2");
    json_t *props = json_object_get(tagged, "properties");
    assert_string_equal(s_str(props, "content_type"), "text/plain");
    assert_string_equal(s_str(props, "message_id"), "m-7");
    assert_string_equal(s_str(props, "correlation_id"), "c-9");
    json_t *packed = json_array_get(msgs, 7);
    assert_string_equal(s_str(packed, "body_encoding"), "msgpack");
    json_t *body = json_object_get(packed, "body");
    assert_int_equal(s_int(body, "id"), 42);
    assert_int_equal(json_array_size(json_object_get(body, "items")), 2);
    json_decref(msgs);
}

static void
test_consume_count_leaves_the_rest(void **state)
{
    fx_t *fx = *state;
    CLI_OK(fx, "declare", "queue", "rest");
    CLI_OK(fx, "publish", "", "rest", "m", "--count", "5");
    json_t *msgs = s_consume(fx, "rest", 2);
    json_decref(msgs);
    // The consumer is gone; nothing it did not print stays unacked or marked delivered.
    assert_int_equal(s_queue_field(fx, "rest", "messages_ready"), 3);
    assert_int_equal(s_queue_field(fx, "rest", "messages_unacked"), 0);
    assert_int_equal(s_queue_field(fx, "rest", "consumers"), 0);
    assert_int_equal(s_queue_field(fx, "rest", "acked"), 2);
    // --nack --requeue puts them back.
    msgs = s_parse_lines(CLI_OK(fx, "consume", "rest", "--count", "1", "--nack", "--requeue",
                                "--idle-timeout", IDLE, "--json"));
    assert_int_equal(json_array_size(msgs), 1);
    json_decref(msgs);
    assert_int_equal(s_queue_field(fx, "rest", "messages_ready"), 3);
}

// list shows messages held by a consumer that is not the CLI.
static void
test_list_counts_with_a_consumer_holding_messages(void **state)
{
    fx_t *fx = *state;
    CLI_OK(fx, "declare", "queue", "held", "--durable");
    CLI_OK(fx, "publish", "", "held", "m", "--count", "5");
    raw_t *holder = raw_new(harness_broker_endpoint(fx->broker));
    assert_non_null(holder);
    assert_int_equal(raw_hello(holder, 60000, "cli-test-holder"), 0);
    assert_int_equal(raw_consume(holder, "held", "holding", 2, false, NULL, 0), 0);
    for (int i = 0; i < 2; i++) {
        raw_msg_t *m = raw_next(holder, HOP_CMD_DELIVER, 10000);
        assert_non_null(m);
        raw_msg_destroy(&m);
    }
    json_t *list = s_parse(CLI_OK(fx, "list", "queues", "--json"));
    json_t *q = s_find(list, "name", "held");
    assert_non_null(q);
    assert_true(json_is_true(json_object_get(q, "durable")));
    assert_int_equal(s_int(q, "messages_ready"), 3);
    assert_int_equal(s_int(q, "messages_unacked"), 2);
    assert_int_equal(s_int(q, "messages"), 5);
    assert_int_equal(s_int(q, "consumers"), 1);
    json_decref(list);
    list = s_parse(CLI_OK(fx, "list", "consumers", "--json"));
    json_t *c = s_find(list, "consumer", "holding");
    assert_non_null(c);
    assert_string_equal(s_str(c, "queue"), "held");
    assert_int_equal(s_int(c, "unacked"), 2);
    assert_int_equal(s_int(c, "prefetch"), 2);
    json_decref(list);
    list = s_parse(CLI_OK(fx, "list", "connections", "--json"));
    assert_non_null(s_find(list, "name", "cli-test-holder"));
    json_decref(list);
    // The table form names the queue too.
    assert_non_null(strstr(CLI_OK(fx, "list", "queues"), "held"));
    raw_destroy(&holder);
}

// subscribe runs in a thread (its CLI process blocks) while the main thread publishes.
typedef struct {
    fx_t *fx;
    harness_run_t run;
    int status;
} s_subscriber_t;

static void *
s_subscribe_thread(void *arg)
{
    s_subscriber_t *s = arg;
    char *argv[] = {(char *)harness_cli_path(),
                    "--broker",
                    (char *)harness_broker_endpoint(s->fx->broker),
                    "--timeout",
                    TIMEOUT,
                    "subscribe",
                    "events",
                    "order.*",
                    "--count",
                    "2",
                    "--idle-timeout",
                    IDLE,
                    "--json",
                    NULL};
    s->status = harness_run(argv, NULL, 0, RUN_MS, &s->run);
    return NULL;
}

static bool
s_subscription_bound(void *arg)
{
    fx_t *fx = arg;
    json_t *list = s_parse(CLI_OK(fx, "list", "bindings", "--json"));
    bool bound = s_find(list, "exchange", "events") != NULL;
    json_decref(list);
    return bound;
}

static void
test_subscribe(void **state)
{
    fx_t *fx = *state;
    CLI_OK(fx, "declare", "exchange", "events", "--type", "topic");
    s_subscriber_t sub = {.fx = fx};
    pthread_t thread;
    assert_int_equal(pthread_create(&thread, NULL, s_subscribe_thread, &sub), 0);
    bool bound = harness_wait_until(s_subscription_bound, fx, 20000);
    if (bound) {
        CLI_OK(fx, "publish", "events", "order.created", "c1");
        CLI_OK(fx, "publish", "events", "user.created", "not for this subscriber");
        CLI_OK(fx, "publish", "events", "order.paid", "p1");
    }
    pthread_join(thread, NULL);
    assert_true(bound);
    if (sub.status != 0)
        fail_msg("subscribe: exit %d: %s", sub.status, sub.run.err);
    json_t *msgs = s_parse_lines(sub.run.out);
    harness_run_fini(&sub.run);
    char bodies[256];
    assert_string_equal(s_bodies(msgs, bodies, sizeof bodies), "c1,p1");
    json_decref(msgs);
    // Its private queue went away with it.
    json_t *list = s_parse(CLI_OK(fx, "list", "queues", "--json"));
    assert_int_equal(json_array_size(list), 0);
    json_decref(list);
}

// ---------------------------------------------------------------------------------------
// Delivery guarantees (issue 4)

// Waits until a queue's field in `list queues --json` reaches want.
typedef struct {
    fx_t *fx;
    const char *queue;
    const char *field;
    json_int_t want;
} s_field_wait_t;

static bool
s_field_reached(void *arg)
{
    s_field_wait_t *w = arg;
    json_t *list = s_parse(CLI_OK(w->fx, "list", "queues", "--json"));
    json_t *v = json_object_get(s_find(list, "name", w->queue), w->field);
    bool reached = json_is_integer(v) && json_integer_value(v) == w->want;
    json_decref(list);
    return reached;
}

static void
s_wait_field(fx_t *fx, const char *queue, const char *field, json_int_t want)
{
    s_field_wait_t w = {fx, queue, field, want};
    if (!harness_wait_until(s_field_reached, &w, 20000))
        fail_msg("queue '%s': %s never became %lld: %s", queue, field, (long long)want,
                 fx->last.out);
}

static void
test_help_names_the_delivery_flags(void **state)
{
    fx_t *fx = *state;
    static const char *const expected[][12] = {
        {"declare queue", "--max-length N", "--max-length-bytes B",
         "--overflow drop-head|reject-publish", "--message-ttl MS", "--expires MS",
         "--max-deliveries N", "--dead-letter-exchange X", "--dead-letter-key K",
         "--retry-backoff INITIAL[:MAX]", "--max-priority P", "--ack-timeout MS"},
        {"publish", "--confirm", "--mandatory", "--expiration MS", "--priority P", "--persistent"},
        {"consume", "--nack", "--reject", "--requeue", "--retry-in MS", "--ack-timeout MS",
         "deaths="},
        {"get", "--retry-in MS", "deaths"},
        {"list", "messages_delayed", "dead_lettered", "DELAYED", "DEAD_LETTERED", "ARGUMENTS"},
        {"status", "returned", "confirmed", "rejected_publishes", "dead_lettered", "dropped",
         "expired", "revoked", "messages_delayed"},
    };
    for (size_t i = 0; i < sizeof expected / sizeof expected[0]; i++) {
        char command[32];
        snprintf(command, sizeof command, "%s", expected[i][0]);
        char *sub = strchr(command, ' ');
        if (sub)
            *sub++ = '\0';
        int status = sub ? PLAIN(fx, command, sub, "--help") : PLAIN(fx, command, "--help");
        assert_int_equal(status, 0);
        for (size_t j = 1; j < 12 && expected[i][j]; j++)
            if (!strstr(fx->last.out, expected[i][j]))
                fail_msg("hopper %s --help does not mention '%s'", expected[i][0], expected[i][j]);
    }
}

static void
test_delivery_usage_errors_exit_2(void **state)
{
    fx_t *fx = *state;
    CLI_EXIT(fx, 2, "declare", "queue", "q", "--overflow", "drop-tail");
    CLI_EXIT(fx, 2, "declare", "queue", "q", "--max-length", "0");
    CLI_EXIT(fx, 2, "declare", "queue", "q", "--max-length", "ten");
    CLI_EXIT(fx, 2, "declare", "queue", "q", "--max-priority", "256");
    CLI_EXIT(fx, 2, "declare", "queue", "q", "--ack-timeout", "999");
    CLI_EXIT(fx, 2, "declare", "queue", "q", "--retry-backoff", "5000:1000");
    assert_non_null(strstr(fx->last.err, "MAX"));
    CLI_EXIT(fx, 2, "declare", "queue", "q", "--retry-backoff", "1000:");
    CLI_EXIT(fx, 2, "declare", "queue", "q", "--dead-letter-key", "k");
    assert_non_null(strstr(fx->last.err, "--dead-letter-exchange"));
    CLI_EXIT(fx, 2, "declare", "queue", "q", "--passive", "--max-length", "5");
    CLI_EXIT(fx, 2, "publish", "", "q", "m", "--priority", "256");
    CLI_EXIT(fx, 2, "publish", "", "q", "m", "--expiration", "-5");
    CLI_EXIT(fx, 2, "consume", "q", "--retry-in", "1000", "--nack");
    CLI_EXIT(fx, 2, "consume", "q", "--retry-in", "1000", "--no-ack");
    CLI_EXIT(fx, 2, "consume", "q", "--retry-in", "soon");
    CLI_EXIT(fx, 2, "consume", "q", "--requeue");
    CLI_EXIT(fx, 2, "consume", "q", "--ack-timeout", "10");
    CLI_EXIT(fx, 2, "consume", "q", "--ack-timeout", "5000", "--no-ack");
    CLI_EXIT(fx, 2, "get", "q", "--retry-in", "100", "--reject");
    json_t *list = s_parse(CLI_OK(fx, "list", "queues", "--json"));
    assert_int_equal(json_array_size(list), 0);
    json_decref(list);
}

static void
test_declare_queue_arguments_show_in_list(void **state)
{
    fx_t *fx = *state;
    CLI_OK(fx, "declare", "queue", "args", "--max-length", "100", "--max-length-bytes", "65536",
           "--overflow", "reject-publish", "--message-ttl", "600000", "--expires", "3600000",
           "--max-deliveries", "5", "--dead-letter-exchange", "", "--dead-letter-key", "args.dead",
           "--retry-backoff", "1000:60000", "--max-priority", "10", "--ack-timeout", "120000");
    json_t *list = s_parse(CLI_OK(fx, "list", "queues", "--json"));
    json_t *q = s_find(list, "name", "args");
    assert_non_null(q);
    assert_int_equal(s_int(q, "max_length"), 100);
    assert_int_equal(s_int(q, "max_length_bytes"), 65536);
    assert_string_equal(s_str(q, "overflow"), "reject-publish");
    assert_int_equal(s_int(q, "message_ttl"), 600000);
    assert_int_equal(s_int(q, "expires"), 3600000);
    assert_int_equal(s_int(q, "max_deliveries"), 5);
    assert_string_equal(s_str(q, "dead_letter_exchange"), "");
    assert_string_equal(s_str(q, "dead_letter_key"), "args.dead");
    assert_int_equal(s_int(q, "retry_delay"), 1000);
    assert_int_equal(s_int(q, "retry_delay_max"), 60000);
    assert_int_equal(s_int(q, "max_priority"), 10);
    assert_int_equal(s_int(q, "ack_timeout"), 120000);
    assert_int_equal(s_int(q, "messages_delayed"), 0);
    assert_int_equal(s_int(q, "dead_lettered"), 0);
    json_decref(list);
    // The table: the new counters and the arguments, named as the options that set them.
    const char *table = CLI_OK(fx, "list", "queues");
    assert_non_null(strstr(table, "DELAYED"));
    assert_non_null(strstr(table, "DEAD_LETTERED"));
    assert_non_null(strstr(table, "max-length=100"));
    assert_non_null(strstr(table, "overflow=reject-publish"));
    assert_non_null(strstr(table, "retry-backoff=1000:60000"));
    assert_non_null(strstr(table, "dead-letter-exchange=\"\""));
    // The same declare again is fine, leaving arguments out too; another value is refused.
    CLI_OK(fx, "declare", "queue", "args", "--max-length", "100", "--overflow", "reject-publish");
    CLI_OK(fx, "declare", "queue", "args");
    CLI_EXIT(fx, 1, "declare", "queue", "args", "--max-length", "200");
    assert_non_null(strstr(fx->last.err, "406"));
    assert_non_null(strstr(fx->last.err, "hopper delete queue args"));
    // A queue with no arguments shows none.
    CLI_OK(fx, "declare", "queue", "plain");
    list = s_parse(CLI_OK(fx, "list", "queues", "--json"));
    assert_null(json_object_get(s_find(list, "name", "plain"), "max_length"));
    json_decref(list);
}

// The default overflow drops the oldest ready message.
static void
test_max_length_drops_the_head(void **state)
{
    fx_t *fx = *state;
    CLI_OK(fx, "declare", "queue", "head", "--max-length", "2");
    CLI_OK_IN(fx, "1\n2\n3\n", "publish", "", "head", "--lines", "--confirm");
    assert_int_equal(s_queue_field(fx, "head", "messages_ready"), 2);
    assert_int_equal(s_queue_field(fx, "head", "dropped"), 1);
    char bodies[64];
    json_t *msgs = s_consume(fx, "head", 2);
    assert_string_equal(s_bodies(msgs, bodies, sizeof bodies), "2,3");
    json_decref(msgs);
}

static void
test_publish_confirm_to_a_full_reject_publish_queue_exits_1(void **state)
{
    fx_t *fx = *state;
    CLI_OK(fx, "declare", "queue", "bounded", "--max-length", "3", "--overflow", "reject-publish");
    CLI_OK(fx, "publish", "", "bounded", "first", "--confirm", "--persistent");
    CLI_EXIT(fx, 1, "publish", "", "bounded", "more", "--confirm", "--count", "5");
    // How many, of how many, and why.
    if (!strstr(fx->last.err, "refused 3 of 5") || !strstr(fx->last.err, "506")) {
        s_print_last(fx);
        fail_msg("publish --confirm to a full queue must say how many were refused and why");
    }
    assert_non_null(strstr(fx->last.err, "--max-length"));
    assert_int_equal(s_queue_field(fx, "bounded", "messages_ready"), 3);
    assert_int_equal(s_queue_field(fx, "bounded", "rejected_publishes"), 3);
    // Without --confirm nobody is told: exit 0, and the queue still holds exactly 3.
    CLI_OK(fx, "publish", "", "bounded", "unconfirmed");
    assert_int_equal(s_queue_field(fx, "bounded", "messages_ready"), 3);
    json_t *status = s_parse(CLI_OK(fx, "status", "--json"));
    assert_int_equal(s_int(status, "rejected_publishes"), 4);
    assert_true(s_int(status, "confirmed") >= 1);
    json_decref(status);
    // Room again: confirmed.
    json_decref(s_consume(fx, "bounded", 1));
    CLI_OK(fx, "publish", "", "bounded", "fits", "--confirm");
    assert_int_equal(s_queue_field(fx, "bounded", "messages_ready"), 3);
    // An unknown exchange is a refusal too.
    CLI_EXIT(fx, 1, "publish", "no-such-exchange", "k", "m", "--confirm");
    assert_non_null(strstr(fx->last.err, "no-such-exchange"));
}

static void
test_publish_mandatory_without_a_route_exits_1(void **state)
{
    fx_t *fx = *state;
    CLI_OK(fx, "declare", "exchange", "nowhere", "--type", "direct");
    CLI_EXIT(fx, 1, "publish", "nowhere", "k", "lost", "--mandatory");
    if (!strstr(fx->last.err, "returned") || !strstr(fx->last.err, "312")) {
        s_print_last(fx);
        fail_msg("a returned message must be reported on stderr");
    }
    assert_non_null(strstr(fx->last.err, "nowhere"));
    // Through the default exchange to a queue that does not exist, likewise.
    CLI_EXIT(fx, 1, "publish", "", "no-such-queue", "lost", "--mandatory");
    // With a route it is delivered and exits 0.
    CLI_OK(fx, "declare", "queue", "somewhere");
    CLI_OK(fx, "bind", "somewhere", "nowhere", "--key", "k");
    CLI_OK(fx, "publish", "nowhere", "k", "found", "--mandatory");
    assert_int_equal(s_queue_field(fx, "somewhere", "messages_ready"), 1);
    json_t *status = s_parse(CLI_OK(fx, "status", "--json"));
    assert_int_equal(s_int(status, "returned"), 2);
    static const char *const totals[] = {
        "confirmed", "rejected_publishes", "dead_lettered", "dropped", "expired",
        "revoked",   "messages_delayed"};
    for (size_t i = 0; i < sizeof totals / sizeof totals[0]; i++)
        s_int(status, totals[i]);
    json_decref(status);
    assert_non_null(strstr(CLI_OK(fx, "status"), "rejected_publishes:"));
}

static void
test_consume_reject_dead_letters_with_a_death_record(void **state)
{
    fx_t *fx = *state;
    CLI_OK(fx, "declare", "queue", "work.dead");
    CLI_OK(fx, "declare", "queue", "work", "--dead-letter-exchange", "", "--dead-letter-key",
           "work.dead");
    CLI_OK(fx, "publish", "", "work", "job-1");
    CLI_OK(fx, "publish", "", "work", "job-2");
    json_decref(s_consume(fx, "work", 1)); // acked: not a dead letter
    json_t *msgs = s_parse_lines(CLI_OK(fx, "consume", "work", "--count", "1", "--reject",
                                        "--idle-timeout", IDLE, "--json"));
    assert_int_equal(json_array_size(msgs), 1);
    json_decref(msgs);
    assert_int_equal(s_queue_field(fx, "work", "messages"), 0);
    assert_int_equal(s_queue_field(fx, "work", "dead_lettered"), 1);
    assert_int_equal(s_queue_field(fx, "work.dead", "messages_ready"), 1);
    // The text output shows the death record; --reject --requeue keeps it for the JSON look.
    const char *line = CLI_OK(fx, "get", "work.dead", "--reject", "--requeue");
    if (!strstr(line, "deaths=rejected:work:1") || !strstr(line, "job-2")) {
        s_print_last(fx);
        fail_msg("get does not show the death record");
    }
    msgs = s_consume(fx, "work.dead", 1);
    json_t *m = json_array_get(msgs, 0);
    assert_string_equal(s_str(m, "body"), "job-2");
    assert_string_equal(s_str(m, "routing_key"), "work.dead");
    json_t *deaths = json_object_get(m, "deaths");
    assert_int_equal(json_array_size(deaths), 1);
    json_t *death = json_array_get(deaths, 0);
    assert_string_equal(s_str(death, "reason"), "rejected");
    assert_string_equal(s_str(death, "queue"), "work");
    assert_string_equal(s_str(death, "exchange"), "");
    assert_string_equal(s_str(death, "routing_key"), "work");
    assert_int_equal(s_int(death, "count"), 1);
    assert_true(s_int(death, "time") > 0);
    json_decref(msgs);
}

static void
test_delivery_limit_and_expiry_dead_letter(void **state)
{
    fx_t *fx = *state;
    CLI_OK(fx, "declare", "queue", "graveyard");
    CLI_OK(fx, "declare", "queue", "flaky", "--max-deliveries", "2", "--dead-letter-exchange", "",
           "--dead-letter-key", "graveyard");
    CLI_OK(fx, "publish", "", "flaky", "poison");
    for (int i = 0; i < 2; i++)
        json_decref(s_parse_lines(CLI_OK(fx, "consume", "flaky", "--count", "1", "--nack",
                                         "--requeue", "--idle-timeout", IDLE, "--json")));
    assert_int_equal(s_queue_field(fx, "flaky", "messages"), 0);
    json_t *got = s_parse(CLI_OK(fx, "get", "graveyard", "--json"));
    assert_string_equal(s_str(got, "body"), "poison");
    assert_string_equal(s_str(json_array_get(json_object_get(got, "deaths"), 0), "reason"),
                        "delivery-limit");
    json_decref(got);
    // A per-message TTL: nobody consumes it, so it expires into the graveyard.
    CLI_OK(fx, "declare", "queue", "short", "--dead-letter-exchange", "", "--dead-letter-key",
           "graveyard");
    CLI_OK(fx, "publish", "", "short", "stale", "--expiration", "50", "--confirm");
    s_wait_field(fx, "graveyard", "messages_ready", 1);
    assert_int_equal(s_queue_field(fx, "short", "expired"), 1);
    got = s_parse(CLI_OK(fx, "get", "graveyard", "--json"));
    assert_string_equal(s_str(got, "body"), "stale");
    json_t *death = json_array_get(json_object_get(got, "deaths"), 0);
    assert_string_equal(s_str(death, "reason"), "expired");
    assert_string_equal(s_str(death, "queue"), "short");
    json_decref(got);
}

static void
test_consume_retry_in_delays_the_message(void **state)
{
    fx_t *fx = *state;
    CLI_OK(fx, "declare", "queue", "later");
    CLI_OK(fx, "publish", "", "later", "in-a-minute");
    json_decref(s_parse_lines(CLI_OK(fx, "consume", "later", "--count", "1", "--retry-in", "60000",
                                     "--idle-timeout", IDLE, "--json")));
    // Back in the queue, but not ready: list shows it delayed.
    assert_int_equal(s_queue_field(fx, "later", "messages_delayed"), 1);
    assert_int_equal(s_queue_field(fx, "later", "messages_ready"), 0);
    assert_int_equal(s_queue_field(fx, "later", "messages_unacked"), 0);
    assert_int_equal(s_queue_field(fx, "later", "messages"), 1);
    assert_non_null(strstr(CLI_OK(fx, "list", "queues"), "DELAYED"));
    // A short delay: it comes back, redelivered, while the other one still waits.
    CLI_OK(fx, "publish", "", "later", "soon");
    json_decref(s_parse_lines(CLI_OK(fx, "consume", "later", "--count", "1", "--retry-in", "100",
                                     "--idle-timeout", IDLE, "--json")));
    json_t *msgs = s_consume(fx, "later", 1);
    json_t *m = json_array_get(msgs, 0);
    assert_string_equal(s_str(m, "body"), "soon");
    assert_true(json_is_true(json_object_get(m, "redelivered")));
    assert_int_equal(s_int(m, "delivery_count"), 2);
    json_decref(msgs);
    assert_int_equal(s_queue_field(fx, "later", "messages_delayed"), 1);
    // get --retry-in hands one back too.
    CLI_OK(fx, "publish", "", "later", "peeked");
    CLI_OK(fx, "get", "later", "--retry-in", "60000");
    assert_int_equal(s_queue_field(fx, "later", "messages_delayed"), 2);
    // An ack deadline on the consumer is accepted.
    CLI_OK(fx, "publish", "", "later", "acked");
    msgs = s_parse_lines(CLI_OK(fx, "consume", "later", "--count", "1", "--ack-timeout", "5000",
                                "--idle-timeout", IDLE, "--json"));
    assert_string_equal(s_str(json_array_get(msgs, 0), "body"), "acked");
    json_decref(msgs);
}

static void
test_priorities_are_shown_and_respected(void **state)
{
    fx_t *fx = *state;
    CLI_OK(fx, "declare", "queue", "urgent", "--max-priority", "10");
    CLI_OK(fx, "publish", "", "urgent", "low", "--priority", "1", "--confirm");
    CLI_OK(fx, "publish", "", "urgent", "none", "--confirm");
    CLI_OK(fx, "publish", "", "urgent", "high", "--priority", "9", "--confirm");
    const char *line = CLI_OK(fx, "get", "urgent");
    if (!strstr(line, "priority=9") || !strstr(line, "high")) {
        s_print_last(fx);
        fail_msg("get does not show the priority");
    }
    json_t *msgs = s_consume(fx, "urgent", 2);
    char bodies[64];
    assert_string_equal(s_bodies(msgs, bodies, sizeof bodies), "low,none");
    assert_int_equal(s_int(json_array_get(msgs, 0), "priority"), 1);
    assert_null(json_object_get(json_array_get(msgs, 1), "priority"));
    json_decref(msgs);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_help_of_every_command_exits_0, setup, teardown),
        cmocka_unit_test_setup_teardown(test_usage_errors_exit_2, setup, teardown),
        cmocka_unit_test_setup_teardown(test_broker_refusals_exit_1, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unreachable_broker_exits_3, setup, teardown),
        cmocka_unit_test_setup_teardown(test_body_over_max_message_exits_1, setup_small, teardown),
        cmocka_unit_test_setup_teardown(test_queue_lifecycle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_direct_exchange, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fanout_exchange, setup, teardown),
        cmocka_unit_test_setup_teardown(test_topic_exchange, setup, teardown),
        cmocka_unit_test_setup_teardown(test_default_exchange, setup, teardown),
        cmocka_unit_test_setup_teardown(test_publish_options, setup, teardown),
        cmocka_unit_test_setup_teardown(test_consume_count_leaves_the_rest, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_counts_with_a_consumer_holding_messages, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_subscribe, setup, teardown),
        cmocka_unit_test_setup_teardown(test_help_names_the_delivery_flags, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delivery_usage_errors_exit_2, setup, teardown),
        cmocka_unit_test_setup_teardown(test_declare_queue_arguments_show_in_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_max_length_drops_the_head, setup, teardown),
        cmocka_unit_test_setup_teardown(test_publish_confirm_to_a_full_reject_publish_queue_exits_1,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_publish_mandatory_without_a_route_exits_1, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_consume_reject_dead_letters_with_a_death_record, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_delivery_limit_and_expiry_dead_letter, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_consume_retry_in_delays_the_message, setup, teardown),
        cmocka_unit_test_setup_teardown(test_priorities_are_shown_and_respected, setup, teardown),
    };
    return cmocka_run_group_tests_name("integration.cli", tests, NULL, NULL);
}
