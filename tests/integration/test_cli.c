// tests/integration/test_cli.c - the `hopper` CLI against a real hopperd: every command's help,
// exit codes (0 ok, 1 refused, 2 usage, 3 unreachable), and topology and messages end to end
// for each exchange type, with the --json output parsed with jansson. The delivery guarantees
// are in test_cli_delivery.c; cli_helpers.h has what both share.
//
// Each CLI run is a child process with a deadline (harness_run); stdout and stderr are kept
// apart, so a test can require that a command which failed said why on stderr.
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "cli_helpers.h"
#include "raw.h"

#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

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
            cx_print_last(fx);
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
    json_t *list = cx_parse(CLI_OK(fx, "list", "queues", "--json"));
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
    assert_int_equal(cx_queue_field(fx, "q1", "messages_ready"), 1);
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
    assert_int_equal(cx_queue_field(fx, "small", "messages_ready"), 1);
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
            cx_print_last(fx);
            fail_msg("hopper %s against a closed port: exit %d, expected 3", c[0], status);
        }
        assert_non_null(strstr(fx->last.err, endpoint));
        print_message("hopper %s %s: exit 3 after %ld ms\n", c[0], c[1] ? c[1] : "",
                      fx->last.elapsed_ms);
    }
}

// A broker killed under a running `hopper consume`: it says the connection was lost and exits
// 3 at once, without trying to reach the dead broker again for its --timeout (10 s here).
static void
test_consume_exits_3_when_the_broker_is_killed(void **state)
{
    fx_t *fx = *state;
    hop_client_t *c = cx_client(fx, "watch");
    CX_CHECK(c, hop_client_declare_queue(c, "kq", 0, NULL, 0));
    char *argv[] = {(char *)harness_cli_path(),
                    "--broker",
                    (char *)harness_broker_endpoint(fx->broker),
                    "--timeout",
                    TIMEOUT,
                    "consume",
                    "kq",
                    NULL};
    int pid = harness_spawn(argv);
    assert_true(pid > 0);
    uint64_t deadline = harness_now_ms() + RUN_MS;
    while (cx_queue_field(fx, "kq", "consumers") < 1 && harness_now_ms() < deadline)
        nanosleep(&(struct timespec){0, 20 * 1000 * 1000}, NULL);
    assert_int_equal(cx_queue_field(fx, "kq", "consumers"), 1);
    assert_int_equal(harness_broker_kill(fx->broker), 0);
    int status = harness_reap(pid, 5000); // well under the 10 s a reconnect attempt would take
    if (status == -2)
        harness_kill9(pid);
    assert_int_equal(status, 3);
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
    json_t *q = cx_parse(CLI_OK(fx, "declare", "queue", "jobs", "--passive", "--json"));
    assert_string_equal(cx_str(q, "queue"), "jobs");
    assert_int_equal(cx_int(q, "messages"), 2);
    assert_int_equal(cx_int(q, "consumers"), 0);
    json_decref(q);

    json_t *list = cx_parse(CLI_OK(fx, "list", "queues", "--json"));
    json_t *item = cx_find(list, "name", "jobs");
    assert_non_null(item);
    assert_true(json_is_false(json_object_get(item, "durable")));
    assert_int_equal(cx_int(item, "messages_ready"), 2);
    assert_int_equal(cx_int(item, "messages_unacked"), 0);
    assert_int_equal(cx_int(item, "consumers"), 0);
    json_decref(list);

    json_t *msgs = cx_consume(fx, "jobs", 2);
    json_t *m = json_array_get(msgs, 0);
    assert_string_equal(cx_str(m, "body"), "from an argument");
    assert_string_equal(cx_str(m, "exchange"), "");
    assert_string_equal(cx_str(m, "routing_key"), "jobs");
    assert_true(json_is_false(json_object_get(m, "redelivered")));
    assert_int_equal(cx_int(m, "delivery_count"), 1);
    assert_string_equal(cx_str(m, "body_encoding"), "text");
    m = json_array_get(msgs, 1);
    assert_string_equal(cx_str(m, "body"), "from stdin\nwith two lines\n");
    json_decref(msgs);
    assert_int_equal(cx_queue_field(fx, "jobs", "messages"), 0);
    assert_int_equal(cx_queue_field(fx, "jobs", "acked"), 2);

    // get: empty is not an error; a message comes with message_count.
    assert_string_equal(CLI_OK(fx, "get", "jobs"), "");
    assert_non_null(strstr(fx->last.err, "empty"));
    CLI_OK(fx, "publish", "", "jobs", "one");
    CLI_OK(fx, "publish", "", "jobs", "two");
    json_t *got = cx_parse(CLI_OK(fx, "get", "jobs", "--json"));
    assert_string_equal(cx_str(got, "body"), "one");
    assert_int_equal(cx_int(got, "message_count"), 1);
    json_decref(got);
    // peek: reject with requeue leaves it at the head, redelivered
    got = cx_parse(CLI_OK(fx, "get", "jobs", "--reject", "--requeue", "--json"));
    assert_string_equal(cx_str(got, "body"), "two");
    json_decref(got);
    got = cx_parse(CLI_OK(fx, "get", "jobs", "--json"));
    assert_string_equal(cx_str(got, "body"), "two");
    assert_true(json_is_true(json_object_get(got, "redelivered")));
    assert_int_equal(cx_int(got, "delivery_count"), 2);
    json_decref(got);

    // purge and delete report counts.
    for (int i = 0; i < 3; i++)
        CLI_OK(fx, "publish", "", "jobs", "x");
    json_t *purged = cx_parse(CLI_OK(fx, "purge", "jobs", "--json"));
    assert_int_equal(cx_int(purged, "messages"), 3);
    json_decref(purged);
    CLI_OK(fx, "publish", "", "jobs", "x");
    json_t *deleted = cx_parse(CLI_OK(fx, "delete", "queue", "jobs", "--json"));
    assert_int_equal(cx_int(deleted, "messages"), 1);
    json_decref(deleted);
    CLI_EXIT(fx, 1, "declare", "queue", "jobs", "--passive");

    json_t *status = cx_parse(CLI_OK(fx, "status", "--json"));
    assert_string_equal(cx_str(status, "endpoint"), harness_broker_endpoint(fx->broker));
    assert_true(cx_int(status, "published") == 8);
    assert_true(cx_int(status, "uptime_ms") >= 0);
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
    json_t *msgs = cx_consume(fx, "paid", 2);
    assert_string_equal(cx_bodies(msgs, bodies, sizeof bodies), "p1,p2");
    assert_string_equal(cx_str(json_array_get(msgs, 0), "exchange"), "orders");
    assert_string_equal(cx_str(json_array_get(msgs, 0), "routing_key"), "order.paid");
    json_decref(msgs);
    msgs = cx_consume(fx, "shipped", 1);
    assert_string_equal(cx_bodies(msgs, bodies, sizeof bodies), "s1");
    json_decref(msgs);
    assert_int_equal(cx_queue_field(fx, "paid", "messages"), 0);
    assert_int_equal(cx_queue_field(fx, "shipped", "messages"), 0);
    json_t *exchanges = cx_parse(CLI_OK(fx, "list", "exchanges", "--json"));
    json_t *x = cx_find(exchanges, "name", "orders");
    assert_non_null(x);
    assert_string_equal(cx_str(x, "type"), "direct");
    assert_int_equal(cx_int(x, "bindings"), 2);
    assert_int_equal(cx_int(x, "unroutable"), 1);
    json_decref(exchanges);
    // unbind, then the key no longer routes
    CLI_OK(fx, "unbind", "paid", "orders", "--key", "order.paid");
    CLI_OK(fx, "publish", "orders", "order.paid", "p3");
    assert_int_equal(cx_queue_field(fx, "paid", "messages"), 0);
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
        json_t *msgs = cx_consume(fx, queue, 2);
        assert_string_equal(cx_bodies(msgs, bodies, sizeof bodies), "first,second");
        json_decref(msgs);
        assert_int_equal(cx_queue_field(fx, queue, "messages"), 0);
    }
    json_t *bindings = cx_parse(CLI_OK(fx, "list", "bindings", "--json"));
    assert_non_null(cx_find(bindings, "queue", "reader-2"));
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
    json_t *msgs = cx_consume(fx, "errors", 2);
    assert_string_equal(cx_bodies(msgs, bodies, sizeof bodies), "app.web.error,sys.disk.error");
    json_decref(msgs);
    msgs = cx_consume(fx, "app", 4);
    assert_string_equal(cx_bodies(msgs, bodies, sizeof bodies),
                        "app.web.error,app.web.info,app,app.a.b.c");
    json_decref(msgs);
    assert_int_equal(cx_queue_field(fx, "errors", "messages"), 0);
    assert_int_equal(cx_queue_field(fx, "app", "messages"), 0);
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
    json_t *msgs = cx_consume(fx, "inbox", 1);
    assert_string_equal(cx_str(json_array_get(msgs, 0), "body"), "by name");
    assert_string_equal(cx_str(json_array_get(msgs, 0), "routing_key"), "inbox");
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
    assert_int_equal(cx_queue_field(fx, "opts", "messages_ready"), 8);
    json_t *msgs = cx_consume(fx, "opts", 8);
    char bodies[256];
    json_t *tail = json_array();
    for (size_t i = 0; i < 6; i++)
        json_array_append(tail, json_array_get(msgs, i));
    assert_string_equal(cx_bodies(tail, bodies, sizeof bodies), "a,b,c,copy,copy,copy");
    json_decref(tail);
    json_t *tagged = json_array_get(msgs, 6);
    assert_string_equal(cx_str(tagged, "body"), "tagged");
    json_t *headers = json_object_get(tagged, "headers");
    assert_string_equal(cx_str(headers, "tenant"), "acme");
    assert_string_equal(cx_str(headers, "try"), "2");
    json_t *props = json_object_get(tagged, "properties");
    assert_string_equal(cx_str(props, "content_type"), "text/plain");
    assert_string_equal(cx_str(props, "message_id"), "m-7");
    assert_string_equal(cx_str(props, "correlation_id"), "c-9");
    json_t *packed = json_array_get(msgs, 7);
    assert_string_equal(cx_str(packed, "body_encoding"), "msgpack");
    json_t *body = json_object_get(packed, "body");
    assert_int_equal(cx_int(body, "id"), 42);
    assert_int_equal(json_array_size(json_object_get(body, "items")), 2);
    json_decref(msgs);
}

static void
test_consume_count_leaves_the_rest(void **state)
{
    fx_t *fx = *state;
    CLI_OK(fx, "declare", "queue", "rest");
    CLI_OK(fx, "publish", "", "rest", "m", "--count", "5");
    json_t *msgs = cx_consume(fx, "rest", 2);
    json_decref(msgs);
    // The consumer is gone; nothing it did not print stays unacked or marked delivered.
    assert_int_equal(cx_queue_field(fx, "rest", "messages_ready"), 3);
    assert_int_equal(cx_queue_field(fx, "rest", "messages_unacked"), 0);
    assert_int_equal(cx_queue_field(fx, "rest", "consumers"), 0);
    assert_int_equal(cx_queue_field(fx, "rest", "acked"), 2);
    // --nack --requeue puts them back.
    msgs = cx_parse_lines(CLI_OK(fx, "consume", "rest", "--count", "1", "--nack", "--requeue",
                                 "--idle-timeout", IDLE, "--json"));
    assert_int_equal(json_array_size(msgs), 1);
    json_decref(msgs);
    assert_int_equal(cx_queue_field(fx, "rest", "messages_ready"), 3);
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
    json_t *list = cx_parse(CLI_OK(fx, "list", "queues", "--json"));
    json_t *q = cx_find(list, "name", "held");
    assert_non_null(q);
    assert_true(json_is_true(json_object_get(q, "durable")));
    assert_int_equal(cx_int(q, "messages_ready"), 3);
    assert_int_equal(cx_int(q, "messages_unacked"), 2);
    assert_int_equal(cx_int(q, "messages"), 5);
    assert_int_equal(cx_int(q, "consumers"), 1);
    json_decref(list);
    list = cx_parse(CLI_OK(fx, "list", "consumers", "--json"));
    json_t *c = cx_find(list, "consumer", "holding");
    assert_non_null(c);
    assert_string_equal(cx_str(c, "queue"), "held");
    assert_int_equal(cx_int(c, "unacked"), 2);
    assert_int_equal(cx_int(c, "prefetch"), 2);
    json_decref(list);
    list = cx_parse(CLI_OK(fx, "list", "connections", "--json"));
    assert_non_null(cx_find(list, "name", "cli-test-holder"));
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
    json_t *list = cx_parse(CLI_OK(fx, "list", "bindings", "--json"));
    bool bound = cx_find(list, "exchange", "events") != NULL;
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
    json_t *msgs = cx_parse_lines(sub.run.out);
    harness_run_fini(&sub.run);
    char bodies[256];
    assert_string_equal(cx_bodies(msgs, bodies, sizeof bodies), "c1,p1");
    json_decref(msgs);
    // Its private queue went away with it.
    json_t *list = cx_parse(CLI_OK(fx, "list", "queues", "--json"));
    assert_int_equal(json_array_size(list), 0);
    json_decref(list);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_help_of_every_command_exits_0, cx_setup, cx_teardown),
        cmocka_unit_test_setup_teardown(test_usage_errors_exit_2, cx_setup, cx_teardown),
        cmocka_unit_test_setup_teardown(test_broker_refusals_exit_1, cx_setup, cx_teardown),
        cmocka_unit_test_setup_teardown(test_unreachable_broker_exits_3, cx_setup, cx_teardown),
        cmocka_unit_test_setup_teardown(test_consume_exits_3_when_the_broker_is_killed, cx_setup,
                                        cx_teardown),
        cmocka_unit_test_setup_teardown(test_body_over_max_message_exits_1, cx_setup_small,
                                        cx_teardown),
        cmocka_unit_test_setup_teardown(test_queue_lifecycle, cx_setup, cx_teardown),
        cmocka_unit_test_setup_teardown(test_direct_exchange, cx_setup, cx_teardown),
        cmocka_unit_test_setup_teardown(test_fanout_exchange, cx_setup, cx_teardown),
        cmocka_unit_test_setup_teardown(test_topic_exchange, cx_setup, cx_teardown),
        cmocka_unit_test_setup_teardown(test_default_exchange, cx_setup, cx_teardown),
        cmocka_unit_test_setup_teardown(test_publish_options, cx_setup, cx_teardown),
        cmocka_unit_test_setup_teardown(test_consume_count_leaves_the_rest, cx_setup, cx_teardown),
        cmocka_unit_test_setup_teardown(test_list_counts_with_a_consumer_holding_messages, cx_setup,
                                        cx_teardown),
        cmocka_unit_test_setup_teardown(test_subscribe, cx_setup, cx_teardown),
    };
    return cmocka_run_group_tests_name("integration.cli", tests, NULL, NULL);
}
