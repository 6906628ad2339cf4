// tests/integration/test_cli_delivery.c - the delivery guarantees through the `hopper` CLI
// against a real hopperd: the flags in help and their usage errors, queue arguments shown in
// list, confirms, mandatory returns, dead letters with death records, delivery limits, expiry,
// retries and priorities. cli_helpers.h has the fixture and the run and JSON helpers.
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "cli_helpers.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

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
    json_t *list = cx_parse(CLI_OK(w->fx, "list", "queues", "--json"));
    json_t *v = json_object_get(cx_find(list, "name", w->queue), w->field);
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
    json_t *list = cx_parse(CLI_OK(fx, "list", "queues", "--json"));
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
    json_t *list = cx_parse(CLI_OK(fx, "list", "queues", "--json"));
    json_t *q = cx_find(list, "name", "args");
    assert_non_null(q);
    assert_int_equal(cx_int(q, "max_length"), 100);
    assert_int_equal(cx_int(q, "max_length_bytes"), 65536);
    assert_string_equal(cx_str(q, "overflow"), "reject-publish");
    assert_int_equal(cx_int(q, "message_ttl"), 600000);
    assert_int_equal(cx_int(q, "expires"), 3600000);
    assert_int_equal(cx_int(q, "max_deliveries"), 5);
    assert_string_equal(cx_str(q, "dead_letter_exchange"), "");
    assert_string_equal(cx_str(q, "dead_letter_key"), "args.dead");
    assert_int_equal(cx_int(q, "retry_delay"), 1000);
    assert_int_equal(cx_int(q, "retry_delay_max"), 60000);
    assert_int_equal(cx_int(q, "max_priority"), 10);
    assert_int_equal(cx_int(q, "ack_timeout"), 120000);
    assert_int_equal(cx_int(q, "messages_delayed"), 0);
    assert_int_equal(cx_int(q, "dead_lettered"), 0);
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
    list = cx_parse(CLI_OK(fx, "list", "queues", "--json"));
    assert_null(json_object_get(cx_find(list, "name", "plain"), "max_length"));
    json_decref(list);
}

// The default overflow drops the oldest ready message.
static void
test_max_length_drops_the_head(void **state)
{
    fx_t *fx = *state;
    CLI_OK(fx, "declare", "queue", "head", "--max-length", "2");
    CLI_OK_IN(fx, "1\n2\n3\n", "publish", "", "head", "--lines", "--confirm");
    assert_int_equal(cx_queue_field(fx, "head", "messages_ready"), 2);
    assert_int_equal(cx_queue_field(fx, "head", "dropped"), 1);
    char bodies[64];
    json_t *msgs = cx_consume(fx, "head", 2);
    assert_string_equal(cx_bodies(msgs, bodies, sizeof bodies), "2,3");
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
        cx_print_last(fx);
        fail_msg("publish --confirm to a full queue must say how many were refused and why");
    }
    assert_non_null(strstr(fx->last.err, "--max-length"));
    assert_int_equal(cx_queue_field(fx, "bounded", "messages_ready"), 3);
    assert_int_equal(cx_queue_field(fx, "bounded", "rejected_publishes"), 3);
    // Without --confirm nobody is told: exit 0, and the queue still holds exactly 3.
    CLI_OK(fx, "publish", "", "bounded", "unconfirmed");
    assert_int_equal(cx_queue_field(fx, "bounded", "messages_ready"), 3);
    json_t *status = cx_parse(CLI_OK(fx, "status", "--json"));
    assert_int_equal(cx_int(status, "rejected_publishes"), 4);
    assert_true(cx_int(status, "confirmed") >= 1);
    json_decref(status);
    // Room again: confirmed.
    json_decref(cx_consume(fx, "bounded", 1));
    CLI_OK(fx, "publish", "", "bounded", "fits", "--confirm");
    assert_int_equal(cx_queue_field(fx, "bounded", "messages_ready"), 3);
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
        cx_print_last(fx);
        fail_msg("a returned message must be reported on stderr");
    }
    assert_non_null(strstr(fx->last.err, "nowhere"));
    // Through the default exchange to a queue that does not exist, likewise.
    CLI_EXIT(fx, 1, "publish", "", "no-such-queue", "lost", "--mandatory");
    // With a route it is delivered and exits 0.
    CLI_OK(fx, "declare", "queue", "somewhere");
    CLI_OK(fx, "bind", "somewhere", "nowhere", "--key", "k");
    CLI_OK(fx, "publish", "nowhere", "k", "found", "--mandatory");
    assert_int_equal(cx_queue_field(fx, "somewhere", "messages_ready"), 1);
    json_t *status = cx_parse(CLI_OK(fx, "status", "--json"));
    assert_int_equal(cx_int(status, "returned"), 2);
    static const char *const totals[] = {
        "confirmed", "rejected_publishes", "dead_lettered", "dropped", "expired",
        "revoked",   "messages_delayed"};
    for (size_t i = 0; i < sizeof totals / sizeof totals[0]; i++)
        cx_int(status, totals[i]);
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
    json_decref(cx_consume(fx, "work", 1)); // acked: not a dead letter
    json_t *msgs = cx_parse_lines(CLI_OK(fx, "consume", "work", "--count", "1", "--reject",
                                         "--idle-timeout", IDLE, "--json"));
    assert_int_equal(json_array_size(msgs), 1);
    json_decref(msgs);
    assert_int_equal(cx_queue_field(fx, "work", "messages"), 0);
    assert_int_equal(cx_queue_field(fx, "work", "dead_lettered"), 1);
    assert_int_equal(cx_queue_field(fx, "work.dead", "messages_ready"), 1);
    // The text output shows the death record; --reject --requeue keeps it for the JSON look.
    const char *line = CLI_OK(fx, "get", "work.dead", "--reject", "--requeue");
    if (!strstr(line, "deaths=rejected:work:1") || !strstr(line, "job-2")) {
        cx_print_last(fx);
        fail_msg("get does not show the death record");
    }
    msgs = cx_consume(fx, "work.dead", 1);
    json_t *m = json_array_get(msgs, 0);
    assert_string_equal(cx_str(m, "body"), "job-2");
    assert_string_equal(cx_str(m, "routing_key"), "work.dead");
    json_t *deaths = json_object_get(m, "deaths");
    assert_int_equal(json_array_size(deaths), 1);
    json_t *death = json_array_get(deaths, 0);
    assert_string_equal(cx_str(death, "reason"), "rejected");
    assert_string_equal(cx_str(death, "queue"), "work");
    assert_string_equal(cx_str(death, "exchange"), "");
    assert_string_equal(cx_str(death, "routing_key"), "work");
    assert_int_equal(cx_int(death, "count"), 1);
    assert_true(cx_int(death, "time") > 0);
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
        json_decref(cx_parse_lines(CLI_OK(fx, "consume", "flaky", "--count", "1", "--nack",
                                          "--requeue", "--idle-timeout", IDLE, "--json")));
    assert_int_equal(cx_queue_field(fx, "flaky", "messages"), 0);
    json_t *got = cx_parse(CLI_OK(fx, "get", "graveyard", "--json"));
    assert_string_equal(cx_str(got, "body"), "poison");
    assert_string_equal(cx_str(json_array_get(json_object_get(got, "deaths"), 0), "reason"),
                        "delivery-limit");
    json_decref(got);
    // A per-message TTL: nobody consumes it, so it expires into the graveyard.
    CLI_OK(fx, "declare", "queue", "short", "--dead-letter-exchange", "", "--dead-letter-key",
           "graveyard");
    CLI_OK(fx, "publish", "", "short", "stale", "--expiration", "50", "--confirm");
    s_wait_field(fx, "graveyard", "messages_ready", 1);
    assert_int_equal(cx_queue_field(fx, "short", "expired"), 1);
    got = cx_parse(CLI_OK(fx, "get", "graveyard", "--json"));
    assert_string_equal(cx_str(got, "body"), "stale");
    json_t *death = json_array_get(json_object_get(got, "deaths"), 0);
    assert_string_equal(cx_str(death, "reason"), "expired");
    assert_string_equal(cx_str(death, "queue"), "short");
    json_decref(got);
}

static void
test_consume_retry_in_delays_the_message(void **state)
{
    fx_t *fx = *state;
    CLI_OK(fx, "declare", "queue", "later");
    CLI_OK(fx, "publish", "", "later", "in-a-minute");
    json_decref(cx_parse_lines(CLI_OK(fx, "consume", "later", "--count", "1", "--retry-in", "60000",
                                      "--idle-timeout", IDLE, "--json")));
    // Back in the queue, but not ready: list shows it delayed.
    assert_int_equal(cx_queue_field(fx, "later", "messages_delayed"), 1);
    assert_int_equal(cx_queue_field(fx, "later", "messages_ready"), 0);
    assert_int_equal(cx_queue_field(fx, "later", "messages_unacked"), 0);
    assert_int_equal(cx_queue_field(fx, "later", "messages"), 1);
    assert_non_null(strstr(CLI_OK(fx, "list", "queues"), "DELAYED"));
    // A short delay: it comes back, redelivered, while the other one still waits.
    CLI_OK(fx, "publish", "", "later", "soon");
    json_decref(cx_parse_lines(CLI_OK(fx, "consume", "later", "--count", "1", "--retry-in", "100",
                                      "--idle-timeout", IDLE, "--json")));
    json_t *msgs = cx_consume(fx, "later", 1);
    json_t *m = json_array_get(msgs, 0);
    assert_string_equal(cx_str(m, "body"), "soon");
    assert_true(json_is_true(json_object_get(m, "redelivered")));
    assert_int_equal(cx_int(m, "delivery_count"), 2);
    json_decref(msgs);
    assert_int_equal(cx_queue_field(fx, "later", "messages_delayed"), 1);
    // get --retry-in hands one back too.
    CLI_OK(fx, "publish", "", "later", "peeked");
    CLI_OK(fx, "get", "later", "--retry-in", "60000");
    assert_int_equal(cx_queue_field(fx, "later", "messages_delayed"), 2);
    // An ack deadline on the consumer is accepted.
    CLI_OK(fx, "publish", "", "later", "acked");
    msgs = cx_parse_lines(CLI_OK(fx, "consume", "later", "--count", "1", "--ack-timeout", "5000",
                                 "--idle-timeout", IDLE, "--json"));
    assert_string_equal(cx_str(json_array_get(msgs, 0), "body"), "acked");
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
        cx_print_last(fx);
        fail_msg("get does not show the priority");
    }
    json_t *msgs = cx_consume(fx, "urgent", 2);
    char bodies[64];
    assert_string_equal(cx_bodies(msgs, bodies, sizeof bodies), "low,none");
    assert_int_equal(cx_int(json_array_get(msgs, 0), "priority"), 1);
    assert_null(json_object_get(json_array_get(msgs, 1), "priority"));
    json_decref(msgs);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_help_names_the_delivery_flags, cx_setup, cx_teardown),
        cmocka_unit_test_setup_teardown(test_delivery_usage_errors_exit_2, cx_setup, cx_teardown),
        cmocka_unit_test_setup_teardown(test_declare_queue_arguments_show_in_list, cx_setup,
                                        cx_teardown),
        cmocka_unit_test_setup_teardown(test_max_length_drops_the_head, cx_setup, cx_teardown),
        cmocka_unit_test_setup_teardown(test_publish_confirm_to_a_full_reject_publish_queue_exits_1,
                                        cx_setup, cx_teardown),
        cmocka_unit_test_setup_teardown(test_publish_mandatory_without_a_route_exits_1, cx_setup,
                                        cx_teardown),
        cmocka_unit_test_setup_teardown(test_consume_reject_dead_letters_with_a_death_record,
                                        cx_setup, cx_teardown),
        cmocka_unit_test_setup_teardown(test_delivery_limit_and_expiry_dead_letter, cx_setup,
                                        cx_teardown),
        cmocka_unit_test_setup_teardown(test_consume_retry_in_delays_the_message, cx_setup,
                                        cx_teardown),
        cmocka_unit_test_setup_teardown(test_priorities_are_shown_and_respected, cx_setup,
                                        cx_teardown),
    };
    return cmocka_run_group_tests_name("integration.cli_delivery", tests, NULL, NULL);
}
