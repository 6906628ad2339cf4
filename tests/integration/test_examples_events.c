// tests/integration/test_examples_events.c - examples/events (topic exchange): orders publishes
// created/paid/shipped for 10 orders; billing (order.paid) gets exactly the 10 payments,
// shipping (order.*) and audit (#) exactly all 30 events, each in publishing order.
#include "test_examples_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ORDERS 10

static const char *const s_steps[] = {"order.created", "order.paid", "order.shipped"};

// A service: its binding, and what it says for each step (NULL: it does not get that step).
typedef struct {
    const char *name;
    const char *pattern;
    const char *actions[3];
} s_service_t;

static const s_service_t s_billing = {"billing", "order.paid", {NULL, "invoice sent", NULL}};
static const s_service_t s_shipping = {
    "shipping", "order.*", {"stock reserved", "parcel packed", "tracking number sent"}};
static const s_service_t s_audit = {"audit", "#", {"recorded", "recorded", "recorded"}};

// The service's whole output must be exactly its share of the events, in publishing order.
static void
s_expect_events(ex_proc_t *proc, const s_service_t *service)
{
    char *expected = calloc(1, 4096);
    char *end = expected;
    end += sprintf(end, "%s: listening for '%s' on exchange shop (queue shop.%s)\n", service->name,
                   service->pattern, service->name);
    int handled = 0;
    for (int order = 1; order <= ORDERS; order++)
        for (int step = 0; step < 3; step++)
            if (service->actions[step]) {
                end += sprintf(end, "%s: %s order %d: %s\n", service->name, s_steps[step], order,
                               service->actions[step]);
                handled++;
            }
    sprintf(end, "%s: handled %d events\n", service->name, handled);
    char *out = ex_output(proc);
    bool same = strcmp(out, expected) == 0;
    free(out);
    EX_CHECK(same, "%s's output differs; expected:\n%s", service->name, expected);
    free(expected);
}

static bool
s_queues_drained(void *arg)
{
    hop_client_t *c = arg;
    const char *queues[] = {"shop.billing", "shop.shipping", "shop.audit"};
    for (int i = 0; i < 3; i++)
        if (sx_queue_stat(c, queues[i], "messages") != 0)
            return false;
    return true;
}

static void
test_events_each_service_gets_its_share(void **state)
{
    fx_t *fx = *state;
    ex_proc_t *billing = ex_start("billing", false, "events/billing", NULL);
    ex_proc_t *shipping = ex_start("shipping", false, "events/shipping", NULL);
    ex_proc_t *audit = ex_start("audit", false, "events/audit", NULL);
    ex_expect_output(billing, "listening", 1);
    ex_expect_output(shipping, "listening", 1);
    ex_expect_output(audit, "listening", 1);

    ex_proc_t *orders =
        ex_start("orders", false, "events/orders", "--count", "10", "--interval-ms", "0", NULL);
    EX_CHECK(ex_wait_exit(orders, EX_WAIT_MS) == 0, "orders did not exit 0");
    char *out = ex_output(orders);
    EX_CHECK(strstr(out, "orders: published 30 events, 0 of them unrouted\n"), "orders said: %s",
             out);
    free(out);

    // Everything was delivered and acked (confirms: the broker had all 30 before orders exited).
    ex_expect_output(billing, "billing: order.", ORDERS);
    ex_expect_output(shipping, "shipping: order.", 3 * ORDERS);
    ex_expect_output(audit, "audit: order.", 3 * ORDERS);
    hop_client_t *c = sx_client(fx, "check", 0);
    EX_CHECK(harness_wait_until(s_queues_drained, c, EX_WAIT_MS), "events left in the queues");
    EX_CHECK(ex_stop(billing) == 0 && ex_stop(shipping) == 0 && ex_stop(audit) == 0,
             "a service did not exit cleanly");

    s_expect_events(billing, &s_billing);
    s_expect_events(shipping, &s_shipping);
    s_expect_events(audit, &s_audit);
    assert_int_equal(sx_queue_stat(c, "shop.billing", "acked"), ORDERS);
    assert_int_equal(sx_queue_stat(c, "shop.shipping", "acked"), 3 * ORDERS);
    assert_int_equal(sx_queue_stat(c, "shop.audit", "acked"), 3 * ORDERS);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_events_each_service_gets_its_share, ex_setup,
                                        ex_teardown),
    };
    return cmocka_run_group_tests_name("integration.examples_events", tests, NULL, NULL);
}
