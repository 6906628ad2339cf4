// tests/integration/test_examples_coffee.c - examples/coffee (request/reply): 3 baristas and 50
// customers at once, every customer answered right and exactly once, the orders spread over
// the baristas; then a barista killed (SIGKILL) in the middle of an order, which another
// barista makes instead, once.
#include "test_examples_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BARISTAS  3
#define CUSTOMERS 50

static const char *
s_answer(const char *order)
{
    if (strcmp(order, "1") == 0)
        return "espresso";
    if (strcmp(order, "2") == 0)
        return "latte";
    if (strcmp(order, "3") == 0)
        return "cappuccino";
    return "Sorry, we don't have that option";
}

static void
s_start_baristas(ex_proc_t *baristas[BARISTAS])
{
    for (int i = 0; i < BARISTAS; i++) {
        char name[16];
        snprintf(name, sizeof name, "b%d", i + 1);
        // Every barista stalls on slowpoke's order, but only on its first delivery: whichever
        // gets it first freezes, and the one that gets it again makes it.
        baristas[i] = ex_start(name, false, "coffee/barista", "--name", name, "--brew-ms", "20",
                               "--stall-on", "slowpoke", NULL);
    }
    for (int i = 0; i < BARISTAS; i++)
        ex_expect_output(baristas[i], "ready for orders", 1);
}

// Starts customers c00..c(n-1), each ordering one thing ("1" to "4": "4" is not on the menu).
static void
s_start_customers(ex_proc_t *customers[], int n, char orders[][4])
{
    for (int i = 0; i < n; i++) {
        char name[16];
        snprintf(name, sizeof name, "c%02d", i);
        snprintf(orders[i], sizeof orders[i], "%d", i % 4 + 1);
        customers[i] =
            ex_start(name, false, "coffee/customer", "--timeout", "20000", name, orders[i], NULL);
    }
}

// Each customer exits 0 having printed exactly the right answer.
static void
s_check_customers(ex_proc_t *customers[], int n, char orders[][4])
{
    for (int i = 0; i < n; i++) {
        int status = ex_wait_exit(customers[i], EX_WAIT_MS + 5000);
        char *out = ex_output(customers[i]);
        char want[512];
        snprintf(want, sizeof want, "%s: ordered \"%s\": %s\n", customers[i]->name, orders[i],
                 s_answer(orders[i]));
        bool right = strcmp(out, want) == 0;
        free(out);
        EX_CHECK(status == 0 && right, "customer %s: status %d, expected output '%s'",
                 customers[i]->name, status, want);
    }
}

// Stops the baristas still running (they must exit 0) and returns their output, concatenated.
static char *
s_stop_baristas(ex_proc_t *baristas[BARISTAS], int served[BARISTAS])
{
    size_t size = 1;
    char *all = calloc(1, size);
    for (int i = 0; i < BARISTAS; i++) {
        if (baristas[i]->pid > 0)
            EX_CHECK(ex_stop(baristas[i]) == 0, "%s did not exit cleanly", baristas[i]->name);
        char *out = ex_output(baristas[i]);
        served[i] = ex_count(out, " ordered \"");
        all = realloc(all, size + strlen(out));
        memcpy(all + size - 1, out, strlen(out) + 1);
        size += strlen(out);
        free(out);
    }
    return all;
}

static void
test_coffee_fifty_customers_three_baristas(void **state)
{
    fx_t *fx = *state;
    ex_proc_t *baristas[BARISTAS], *customers[CUSTOMERS];
    char orders[CUSTOMERS][4];
    s_start_baristas(baristas);
    s_start_customers(customers, CUSTOMERS, orders);
    s_check_customers(customers, CUSTOMERS, orders);

    int served[BARISTAS];
    char *all = s_stop_baristas(baristas, served);
    // Each order was made exactly once, and every barista made some (prefetch 1: an order
    // goes to a free barista).
    EX_CHECK(ex_count(all, " ordered \"") == CUSTOMERS, "baristas served %d orders, not %d",
             ex_count(all, " ordered \""), CUSTOMERS);
    for (int i = 0; i < CUSTOMERS; i++) {
        char who[96];
        snprintf(who, sizeof who, ": %s ordered", customers[i]->name);
        EX_CHECK(ex_count(all, who) == 1, "%s was served %d times", customers[i]->name,
                 ex_count(all, who));
    }
    EX_CHECK(ex_count(all, "[redelivered]") == 0, "an order was redelivered");
    for (int i = 0; i < BARISTAS; i++)
        EX_CHECK(served[i] >= 1, "%s served no order", baristas[i]->name);
    free(all);

    hop_client_t *c = sx_client(fx, "check", 0);
    assert_int_equal(sx_queue_stat(c, "coffee.orders", "messages"), 0);
    assert_int_equal(sx_queue_stat(c, "coffee.orders", "acked"), CUSTOMERS);
}

static void
test_coffee_barista_killed_mid_order(void **state)
{
    fx_t *fx = *state;
    ex_proc_t *baristas[BARISTAS];
    s_start_baristas(baristas);
    ex_proc_t *slowpoke =
        ex_start("slowpoke", false, "coffee/customer", "--timeout", "20000", "slowpoke", "3", NULL);
    // Whoever took slowpoke's order is stuck on it; kill it there.
    int stuck = -1;
    uint64_t deadline = harness_now_ms() + EX_WAIT_MS;
    while (stuck < 0 && harness_now_ms() < deadline)
        for (int i = 0; i < BARISTAS && stuck < 0; i++)
            if (ex_wait_output(baristas[i], "stalling on slowpoke's order", 1, 10))
                stuck = i;
    EX_CHECK(stuck >= 0, "no barista took slowpoke's order");
    // Other customers keep ordering meanwhile.
    enum { OTHERS = 12 };
    ex_proc_t *customers[OTHERS];
    char orders[OTHERS][4];
    s_start_customers(customers, OTHERS, orders);
    ex_kill(baristas[stuck]);

    // The broker notices the dead barista (heartbeats) and hands the order to another one.
    EX_CHECK(ex_wait_exit(slowpoke, EX_WAIT_MS + 5000) == 0, "slowpoke got no answer");
    char *out = ex_output(slowpoke);
    EX_CHECK(strcmp(out, "slowpoke: ordered \"3\": cappuccino\n") == 0, "slowpoke got '%s'", out);
    free(out);
    s_check_customers(customers, OTHERS, orders);

    int served[BARISTAS];
    char *all = s_stop_baristas(baristas, served);
    EX_CHECK(served[stuck] == 0, "the killed barista served an order");
    // Made once, by a barista that knew it was a redelivery.
    EX_CHECK(ex_count(all, ": slowpoke ordered \"3\": cappuccino [redelivered]\n") == 1 &&
                 ex_count(all, ": slowpoke ordered") == 1,
             "slowpoke's order was not made exactly once, after redelivery");
    EX_CHECK(ex_count(all, " ordered \"") == OTHERS + 1, "%d orders served, not %d",
             ex_count(all, " ordered \""), OTHERS + 1);
    free(all);

    hop_client_t *c = sx_client(fx, "check", 0);
    assert_int_equal(sx_queue_stat(c, "coffee.orders", "messages"), 0);
    assert_int_equal(sx_queue_stat(c, "coffee.orders", "acked"), OTHERS + 1);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_coffee_fifty_customers_three_baristas, ex_setup,
                                        ex_teardown),
        cmocka_unit_test_setup_teardown(test_coffee_barista_killed_mid_order, ex_setup,
                                        ex_teardown),
    };
    return cmocka_run_group_tests_name("integration.examples_coffee", tests, NULL, NULL);
}
