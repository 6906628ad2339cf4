// tests/integration/test_rates.c - what `hopper list queues` and `hopper status` add for
// operators (issue 7): smoothed publish/deliver/ack rates, --columns and --sort, and memory
// (RSS beside the bodies and records the broker knows it holds).
//
// Rates are checked for being there and in the right range, never for timing precision.
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "cli_helpers.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WAIT_MS 20000

static hop_client_t *s_client;

#define CHECK(expr)                                                                                \
    do {                                                                                           \
        int rc_ = (expr);                                                                          \
        if (rc_ != HOP_OK)                                                                         \
            fail_msg("%s -> %d (%s): %s", #expr, rc_, hop_strerror(rc_),                           \
                     hop_client_error(s_client));                                                  \
    } while (0)

static int
s_teardown(void **state)
{
    hop_client_destroy(&s_client);
    return cx_teardown(state);
}

static void
s_connect(fx_t *fx)
{
    s_client = hop_client_new();
    hop_client_set_name(s_client, "rates");
    hop_client_set_timeout(s_client, WAIT_MS);
    CHECK(hop_client_connect(s_client, harness_broker_endpoint(fx->broker)));
}

static double
s_real(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    if (!json_is_number(v))
        fail_msg("no number '%s'", key);
    return json_number_value(v);
}

// Waits until the queue's three rates (and the broker's) are all above zero.
typedef struct {
    fx_t *fx;
    const char *queue;
} s_rates_arg_t;

static bool
s_rates_up(void *arg)
{
    s_rates_arg_t *a = arg;
    json_t *list = cx_parse(CLI_OK(a->fx, "list", "queues", "--json"));
    json_t *q = cx_find(list, "name", a->queue);
    bool up = q && s_real(q, "publish_rate") > 0 && s_real(q, "deliver_rate") > 0 &&
              s_real(q, "ack_rate") > 0;
    json_decref(list);
    if (!up)
        return false;
    json_t *status = cx_parse(CLI_OK(a->fx, "status", "--json"));
    up = s_real(status, "publish_rate") > 0 && s_real(status, "deliver_rate") > 0 &&
         s_real(status, "ack_rate") > 0;
    json_decref(status);
    return up;
}

// A steady trickle for about two seconds shows as rates above zero, no higher than what was
// sent (a rate is per second, sampled over at least a second) and of the right order.
static void
test_rates_follow_steady_traffic(void **state)
{
    fx_t *fx = *state;
    s_connect(fx);
    CHECK(hop_client_declare_queue(s_client, "rated", 0, NULL, 0));
    // A new queue starts at zero.
    json_t *list = cx_parse(CLI_OK(fx, "list", "queues", "--json"));
    json_t *q = cx_find(list, "name", "rated");
    assert_non_null(q);
    assert_true(json_is_real(json_object_get(q, "publish_rate")));
    assert_true(s_real(q, "publish_rate") == 0);
    json_decref(list);

    uint64_t start = harness_now_ms();
    long sent = 0;
    while (harness_now_ms() - start < 2000) {
        CHECK(hop_client_publish(s_client, "", "rated", "tick", 4, NULL));
        sent++;
        hop_delivery_t *d = NULL;
        CHECK(hop_client_get(s_client, "rated", 0, &d));
        CHECK(hop_client_ack(s_client, d->tag, false));
        hop_delivery_destroy(&d);
        harness_pause_ms(10); // pacing the trickle, not waiting for anything
    }
    double per_second = (double)sent * 1000.0 / (double)(harness_now_ms() - start);
    s_rates_arg_t arg = {fx, "rated"};
    assert_true(harness_wait_until(s_rates_up, &arg, WAIT_MS));
    list = cx_parse(CLI_OK(fx, "list", "queues", "--json"));
    q = cx_find(list, "name", "rated");
    const char *keys[] = {"publish_rate", "deliver_rate", "ack_rate"};
    for (int i = 0; i < 3; i++) {
        double rate = s_real(q, keys[i]);
        if (rate > (double)sent || rate < per_second / 20)
            fail_msg("%s %.2f for %ld messages at %.1f/s", keys[i], rate, sent, per_second);
    }
    json_decref(list);
    // The table shows them with two decimals.
    const char *table = CLI_OK(fx, "list", "queues");
    assert_non_null(strstr(table, "PUBLISH/S"));
    assert_non_null(strstr(table, "ACK/S"));
}

// The whitespace-separated words of line number n (0 = header) of text, joined by '|'.
static char *
s_row(const char *text, int n, char *out, size_t size)
{
    const char *line = text;
    for (int i = 0; i < n && line; i++) {
        line = strchr(line, '\n');
        line = line ? line + 1 : NULL;
    }
    assert_non_null(line);
    size_t at = 0;
    out[0] = '\0';
    for (const char *p = line; *p && *p != '\n';) {
        while (*p == ' ')
            p++;
        if (!*p || *p == '\n')
            break;
        if (at && at + 1 < size)
            out[at++] = '|';
        while (*p && *p != ' ' && *p != '\n' && at + 1 < size)
            out[at++] = *p++;
        out[at] = '\0';
    }
    return out;
}

static bool
s_counted(void *arg)
{
    fx_t *fx = arg;
    return cx_queue_field(fx, "c.big", "messages_ready") == 3 &&
           cx_queue_field(fx, "c.mid", "dropped") == 1 &&
           cx_queue_field(fx, "c.small", "messages_ready") == 1;
}

// --columns picks and orders the table's columns (also fields the default table leaves out);
// --sort orders the rows, numbers largest first, and the --json items too.
static void
test_columns_and_sort(void **state)
{
    fx_t *fx = *state;
    CLI_OK(fx, "declare", "queue", "c.small");
    CLI_OK(fx, "declare", "queue", "c.mid", "--max-length", "2");
    CLI_OK(fx, "declare", "queue", "c.big");
    CLI_OK(fx, "publish", "", "c.small", "s");
    for (int i = 0; i < 3; i++) {
        CLI_OK(fx, "publish", "", "c.mid", "mm");
        CLI_OK(fx, "publish", "", "c.big", "bbb");
    }
    assert_true(harness_wait_until(s_counted, fx, WAIT_MS));

    char row[256];
    const char *table =
        CLI_OK(fx, "list", "queues", "--columns",
               "name,ready,bytes_ready,dropped,dead_lettered,oldest_ready_ms", "--sort", "ready");
    assert_string_equal(s_row(table, 0, row, sizeof row),
                        "NAME|READY|BYTES_READY|DROPPED|DEAD_LETTERED|OLDEST_READY_MS");
    assert_non_null(strstr(s_row(table, 1, row, sizeof row), "c.big|3|9|0|0|"));
    assert_non_null(strstr(s_row(table, 2, row, sizeof row), "c.mid|2|4|1|0|"));
    assert_non_null(strstr(s_row(table, 3, row, sizeof row), "c.small|1|1|0|0|"));
    // Headers in any case, a flag, an argument, and a text sort (A to Z).
    table = CLI_OK(fx, "list", "queues", "--columns", "NAME,durable,Max_Length,publish/s", "--sort",
                   "name");
    assert_string_equal(s_row(table, 0, row, sizeof row), "NAME|DURABLE|MAX_LENGTH|PUBLISH/S");
    assert_string_equal(s_row(table, 1, row, sizeof row), "c.big|no|-|0.00");
    assert_string_equal(s_row(table, 2, row, sizeof row), "c.mid|no|2|0.00");
    // --json keeps every field, in --sort order.
    json_t *list = cx_parse(CLI_OK(fx, "list", "queues", "--sort", "bytes_ready", "--json"));
    assert_int_equal(json_array_size(list), 3);
    assert_string_equal(cx_str(json_array_get(list, 0), "name"), "c.big");
    assert_string_equal(cx_str(json_array_get(list, 2), "name"), "c.small");
    assert_non_null(json_object_get(json_array_get(list, 0), "oldest_ready_ms"));
    json_decref(list);
    // Other lists take them too.
    table = CLI_OK(fx, "list", "exchanges", "--columns", "name,type", "--sort", "name");
    assert_string_equal(s_row(table, 0, row, sizeof row), "NAME|TYPE");
    // Unknown columns and fields are usage errors that list the right ones.
    CLI_EXIT(fx, 2, "list", "queues", "--columns", "name,bogus");
    assert_non_null(strstr(fx->last.err, "no column 'bogus'"));
    assert_non_null(strstr(fx->last.err, "oldest_ready_ms"));
    CLI_EXIT(fx, 2, "list", "queues", "--columns", "name,,ready");
    CLI_EXIT(fx, 2, "list", "queues", "--sort", "flags");
    CLI_EXIT(fx, 2, "list", "queues", "--sort", "bogus");
    assert_int_equal(PLAIN(fx, "list", "--help"), 0);
    assert_non_null(strstr(fx->last.out, "--columns"));
}

typedef struct {
    fx_t *fx;
    json_int_t bytes, records;
} s_memory_arg_t;

static bool
s_memory_is(void *arg)
{
    s_memory_arg_t *a = arg;
    json_t *status = cx_parse(CLI_OK(a->fx, "status", "--json"));
    bool same = cx_int(status, "messages_bytes") == a->bytes &&
                cx_int(status, "message_records") == a->records;
    json_decref(status);
    return same;
}

// status shows RSS and what the broker holds: the bodies in queues, each message once however
// many queues hold it, and the message records alive.
static void
test_status_memory(void **state)
{
    fx_t *fx = *state;
    json_t *status = cx_parse(CLI_OK(fx, "status", "--json"));
    assert_true(cx_int(status, "rss_bytes") > 0);
    assert_int_equal(cx_int(status, "messages_bytes"), 0);
    assert_int_equal(cx_int(status, "message_records"), 0);
    json_decref(status);

    char body[101];
    memset(body, 'x', 100);
    body[100] = '\0';
    CLI_OK(fx, "declare", "queue", "m.one");
    CLI_OK(fx, "declare", "queue", "m.two");
    CLI_OK(fx, "declare", "exchange", "m.fan", "--type", "fanout");
    CLI_OK(fx, "bind", "m.one", "m.fan");
    CLI_OK(fx, "bind", "m.two", "m.fan");
    for (int i = 0; i < 3; i++)
        CLI_OK(fx, "publish", "", "m.one", body);
    s_memory_arg_t arg = {fx, 300, 3};
    assert_true(harness_wait_until(s_memory_is, &arg, WAIT_MS));
    body[50] = '\0';
    CLI_OK(fx, "publish", "m.fan", "", body); // in two queues, held once
    arg = (s_memory_arg_t){fx, 350, 4};
    assert_true(harness_wait_until(s_memory_is, &arg, WAIT_MS));
    // Gone from m.one: the fanout message is still in m.two.
    CLI_OK(fx, "purge", "m.one");
    arg = (s_memory_arg_t){fx, 50, 1};
    assert_true(harness_wait_until(s_memory_is, &arg, WAIT_MS));
    CLI_OK(fx, "purge", "m.two");
    arg = (s_memory_arg_t){fx, 0, 0};
    assert_true(harness_wait_until(s_memory_is, &arg, WAIT_MS));
    // The table shows them as key: value lines.
    const char *text = CLI_OK(fx, "status");
    assert_non_null(strstr(text, "messages_bytes:"));
    assert_non_null(strstr(text, "message_records:"));
    assert_non_null(strstr(text, "rss_bytes:"));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_rates_follow_steady_traffic, cx_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_columns_and_sort, cx_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_status_memory, cx_setup, s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
