// tests/integration/test_trace.c - message tracing (issue 7): with tracing on, the broker's
// route events on amq.hopper.trace name the queues a publish matched, and say why a message was
// dropped (unroutable, overflow, maxlen, ttl) or where it was dead-lettered; with tracing off
// there are none; --exchange limits them to one exchange. Driven through the SDK
// (hop_client_trace, a subscriber on the trace exchange) and the `hopper trace` CLI.
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "cli_helpers.h"
#include "json.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WAIT_MS 20000
#define TRACE   "amq.hopper.trace"

static hop_client_t *s_pub, *s_watch;

#define CHECK(client, expr)                                                                        \
    do {                                                                                           \
        int rc_ = (expr);                                                                          \
        if (rc_ != HOP_OK)                                                                         \
            fail_msg("%s -> %d (%s): %s", #expr, rc_, hop_strerror(rc_),                           \
                     hop_client_error(client));                                                    \
    } while (0)

static hop_client_t *
s_client(fx_t *fx, const char *name)
{
    hop_client_t *c = hop_client_new();
    hop_client_set_name(c, name);
    hop_client_set_timeout(c, WAIT_MS);
    CHECK(c, hop_client_connect(c, harness_broker_endpoint(fx->broker)));
    return c;
}

static int
s_setup(void **state)
{
    int rc = cx_setup(state);
    if (rc)
        return rc;
    fx_t *fx = *state;
    s_pub = s_client(fx, "trace-publisher");
    s_watch = s_client(fx, "trace-watcher");
    CHECK(s_watch, hop_client_subscribe(s_watch, TRACE, "#", NULL, 0));
    return 0;
}

static int
s_teardown(void **state)
{
    hop_client_destroy(&s_pub);
    hop_client_destroy(&s_watch);
    return cx_teardown(state);
}

// The next route event the watcher receives (fails the test after WAIT_MS).
static json_t *
s_event(void)
{
    hop_delivery_t *d = NULL;
    int rc = hop_client_receive(s_watch, &d, WAIT_MS);
    if (rc != HOP_OK)
        fail_msg("no route event within %d ms: %s", WAIT_MS, hop_client_error(s_watch));
    assert_string_equal(d->exchange, TRACE);
    json_t *event = hop_json_from_msgpack(d->body, d->body_size);
    assert_non_null(event);
    assert_true(json_integer_value(json_object_get(event, "time")) > 0);
    hop_delivery_destroy(&d);
    return event;
}

// The event's queues, sorted and joined by ','.
static char *
s_queues(json_t *event, const char *key, char *out, size_t size)
{
    json_t *list = json_object_get(event, key);
    assert_true(json_is_array(list));
    const char *names[16];
    size_t n = json_array_size(list);
    assert_true(n <= 16);
    for (size_t i = 0; i < n; i++)
        names[i] = json_string_value(json_array_get(list, i));
    for (size_t i = 1; i < n; i++)
        for (size_t j = i; j > 0 && strcmp(names[j - 1], names[j]) > 0; j--) {
            const char *t = names[j];
            names[j] = names[j - 1];
            names[j - 1] = t;
        }
    out[0] = '\0';
    for (size_t i = 0; i < n; i++)
        snprintf(out + strlen(out), size - strlen(out), "%s%s", i ? "," : "", names[i]);
    return out;
}

// Takes the next event and checks it: event, exchange, key, queues (sorted, joined by ','),
// dropped (NULL: absent).
static json_t *
s_expect(const char *event, const char *exchange, const char *key, const char *queues,
         const char *dropped)
{
    json_t *ev = s_event();
    char got[256];
    if (strcmp(cx_str(ev, "event"), event) != 0 || strcmp(cx_str(ev, "exchange"), exchange) ||
        strcmp(cx_str(ev, "key"), key) || strcmp(s_queues(ev, "queues", got, sizeof got), queues))
        fail_msg("expected %s %s/%s -> %s, got %s", event, exchange, key, queues,
                 json_dumps(ev, JSON_COMPACT));
    const char *d = json_string_value(json_object_get(ev, "dropped"));
    if (dropped ? !d || strcmp(d, dropped) != 0 : d != NULL)
        fail_msg("expected dropped=%s, got %s", dropped ? dropped : "(none)",
                 json_dumps(ev, JSON_COMPACT));
    return ev;
}

// The event's matched bindings as "queue:key", sorted and joined by ','.
static char *
s_bindings(json_t *event, char *out, size_t size)
{
    json_t *list = json_object_get(event, "bindings");
    char items[16][128];
    size_t n = json_is_array(list) ? json_array_size(list) : 0;
    assert_true(n <= 16);
    for (size_t i = 0; i < n; i++) {
        json_t *b = json_array_get(list, i);
        snprintf(items[i], sizeof items[i], "%s:%s", cx_str(b, "queue"), cx_str(b, "key"));
    }
    qsort(items, n, sizeof items[0], (int (*)(const void *, const void *))strcmp);
    out[0] = '\0';
    for (size_t i = 0; i < n; i++)
        snprintf(out + strlen(out), size - strlen(out), "%s%s", i ? "," : "", items[i]);
    return out;
}

static void
s_publish(const char *exchange, const char *key, const char *body)
{
    CHECK(s_pub, hop_client_publish(s_pub, exchange, key, body, strlen(body), NULL));
}

static void
s_queue(const char *name, const hop_queue_args_t *args)
{
    CHECK(s_pub, hop_client_declare_queue_args(s_pub, name, 0, args, NULL, 0, NULL, NULL));
}

static void
test_events_name_queues_and_drop_reasons(void **state)
{
    (void)state;
    CHECK(s_pub, hop_client_declare_exchange(s_pub, "orders", "topic", 0));
    s_queue("billing", NULL);
    s_queue("shipping", NULL);
    s_queue("audit", NULL);
    CHECK(s_pub, hop_client_bind(s_pub, "billing", "orders", "order.#"));
    CHECK(s_pub, hop_client_bind(s_pub, "shipping", "orders", "order.#"));
    CHECK(s_pub, hop_client_bind(s_pub, "audit", "orders", "order.paid"));
    CHECK(s_pub, hop_client_trace(s_pub, true, NULL));

    // Routed: every queue it matched.
    // Routed: every queue it matched, and the bindings that matched it.
    char got[512];
    s_publish("orders", "order.paid", "1");
    json_t *ev = s_expect("publish", "orders", "order.paid", "audit,billing,shipping", NULL);
    assert_string_equal(s_bindings(ev, got, sizeof got),
                        "audit:order.paid,billing:order.#,shipping:order.#");
    json_decref(ev);
    s_publish("orders", "order.new", "2");
    ev = s_expect("publish", "orders", "order.new", "billing,shipping", NULL);
    assert_string_equal(s_bindings(ev, got, sizeof got), "billing:order.#,shipping:order.#");
    json_decref(ev);
    // Unroutable.
    s_publish("orders", "refund.new", "3");
    json_decref(s_expect("drop", "orders", "refund.new", "", "unroutable"));

    // reject-publish: the second publish is refused by the full queue.
    hop_queue_args_t full = {.max_length = 1, .overflow = "reject-publish"};
    s_queue("full", &full);
    s_publish("", "full", "a");
    json_decref(s_expect("publish", "", "full", "full", NULL));
    s_publish("", "full", "b");
    json_decref(s_expect("drop", "", "full", "full", "overflow"));

    // drop-head: the second publish is stored, and pushes the first out (maxlen).
    hop_queue_args_t head = {.max_length = 1};
    s_queue("head", &head);
    s_publish("", "head", "a");
    json_decref(s_expect("publish", "", "head", "head", NULL));
    s_publish("", "head", "b");
    json_decref(s_expect("publish", "", "head", "head", NULL));
    ev = s_expect("drop", "", "head", "head", "maxlen");
    assert_string_equal(cx_str(ev, "reason"), "maxlen");
    json_decref(ev);

    // TTL, without a dead-letter exchange: dropped, "ttl".
    hop_queue_args_t ttl = {.message_ttl = 50};
    s_queue("short", &ttl);
    s_publish("", "short", "x");
    json_decref(s_expect("publish", "", "short", "short", NULL));
    json_decref(s_expect("expired", "", "short", "short", "ttl"));

    // Dead letters: the message leaves "work" (dead-lettered) and reaches "dlq" through "dlx".
    CHECK(s_pub, hop_client_declare_exchange(s_pub, "dlx", "fanout", 0));
    s_queue("dlq", NULL);
    CHECK(s_pub, hop_client_bind(s_pub, "dlq", "dlx", ""));
    hop_queue_args_t work = {.message_ttl = 50, .dead_letter_exchange = "dlx"};
    s_queue("work", &work);
    s_publish("", "work", "y");
    json_decref(s_expect("publish", "", "work", "work", NULL));
    json_decref(s_expect("expired", "", "work", "work", "dead-lettered"));
    ev = s_expect("dead-letter", "dlx", "work", "dlq", NULL);
    assert_string_equal(cx_str(ev, "queue"), "work");
    assert_string_equal(cx_str(ev, "reason"), "expired");
    json_decref(ev);

    // Publishing to the trace exchange itself is never traced: the next event is the marker.
    s_publish(TRACE, "publish.fake", "loop?");
    hop_delivery_t *fake = NULL; // the watcher hears the publish itself (it is bound with #)
    CHECK(s_watch, hop_client_receive(s_watch, &fake, WAIT_MS));
    assert_string_equal(fake->routing_key, "publish.fake");
    hop_delivery_destroy(&fake);
    s_publish("orders", "order.marker", "m");
    json_decref(s_expect("publish", "orders", "order.marker", "billing,shipping", NULL));
}

static void
test_off_emits_nothing(void **state)
{
    (void)state;
    s_queue("jobs", NULL);
    CHECK(s_pub, hop_client_trace(s_pub, true, NULL));
    CHECK(s_pub, hop_client_trace(s_pub, false, NULL));
    hop_queue_args_t ttl = {.message_ttl = 1, .max_length = 1};
    s_queue("gone", &ttl);
    for (int i = 0; i < 20; i++) {
        s_publish("", "jobs", "quiet");
        s_publish("", "nowhere", "quiet");
        s_publish("", "gone", "quiet");
    }
    // Let the expiries happen while tracing is off: the queue empties.
    uint64_t deadline = harness_now_ms() + WAIT_MS, left = 1;
    while (left && harness_now_ms() < deadline) {
        CHECK(s_pub, hop_client_declare_queue_ex(s_pub, "gone", HOP_PASSIVE, NULL, 0, &left, NULL));
        if (left)
            harness_pause_ms(20);
    }
    assert_int_equal(left, 0);
    // On again: the first event is the marker, so nothing was emitted while off.
    CHECK(s_pub, hop_client_trace(s_pub, true, NULL));
    s_publish("", "jobs", "marker");
    json_decref(s_expect("publish", "", "jobs", "jobs", NULL));
    hop_delivery_t *d = NULL;
    assert_int_equal(hop_client_receive(s_watch, &d, 200), HOP_ETIMEOUT);
}

typedef struct {
    fx_t *fx;
    harness_run_t run;
} s_show_t;

static void *
s_show_thread(void *arg)
{
    s_show_t *show = arg;
    char *argv[] = {(char *)harness_cli_path(),
                    "--broker",
                    (char *)harness_broker_endpoint(show->fx->broker),
                    "--timeout",
                    TIMEOUT,
                    "trace",
                    "show",
                    "--count",
                    "1",
                    "--json",
                    NULL};
    harness_run(argv, NULL, 0, RUN_MS, &show->run);
    return NULL;
}

// Bindings of the trace exchange (the watcher's, and `hopper trace show`'s once it runs).
static bool
s_show_bound(void *arg)
{
    fx_t *fx = arg;
    json_t *bindings = cx_parse(CLI_OK(fx, "list", "bindings", "--json"));
    size_t n = 0, i;
    json_t *b;
    json_array_foreach(bindings, i, b) n += strcmp(cx_str(b, "exchange"), TRACE) == 0;
    json_decref(bindings);
    return n >= 2;
}

static void
test_exchange_filter_and_cli(void **state)
{
    fx_t *fx = *state;
    CHECK(s_pub, hop_client_declare_exchange(s_pub, "a", "fanout", 0));
    CHECK(s_pub, hop_client_declare_exchange(s_pub, "b", "fanout", 0));
    s_queue("qa", NULL);
    s_queue("qb", NULL);
    CHECK(s_pub, hop_client_bind(s_pub, "qa", "a", ""));
    CHECK(s_pub, hop_client_bind(s_pub, "qb", "b", ""));
    assert_string_equal(CLI_OK(fx, "trace", "on", "--exchange", "a"),
                        "tracing on for exchange 'a': read the events with: hopper trace show\n");
    CLI_EXIT(fx, 1, "trace", "on", "--exchange", "no-such-exchange");
    CLI_EXIT(fx, 2, "trace", "sideways");

    s_show_t show = {.fx = fx};
    pthread_t thread;
    assert_int_equal(pthread_create(&thread, NULL, s_show_thread, &show), 0);
    assert_true(harness_wait_until(s_show_bound, fx, WAIT_MS));
    s_publish("b", "k", "not traced");
    s_publish("", "qb", "not traced either");
    s_publish("a", "k", "traced");
    json_decref(s_expect("publish", "a", "k", "qa", NULL));
    pthread_join(thread, NULL);
    assert_int_equal(show.run.status, 0);
    json_t *ev = cx_parse(show.run.out);
    assert_string_equal(cx_str(ev, "event"), "publish");
    assert_string_equal(cx_str(ev, "exchange"), "a");
    json_decref(ev);
    harness_run_fini(&show.run);

    assert_string_equal(CLI_OK(fx, "trace", "off"), "tracing off\n");
    s_publish("a", "k", "off");
    CHECK(s_pub, hop_client_trace(s_pub, true, "b"));
    s_publish("a", "k", "filtered");
    s_publish("b", "k", "marker");
    json_decref(s_expect("publish", "b", "k", "qb", NULL));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_events_name_queues_and_drop_reasons, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(test_off_emits_nothing, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_exchange_filter_and_cli, s_setup, s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
