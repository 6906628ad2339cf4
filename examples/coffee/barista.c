// examples/coffee/barista.c - the service side of request/reply: a barista takes coffee orders
// from a queue and answers each one on the customer's reply queue, with its correlation id.
//
//     barista [--name NAME] [--brew-ms MS] [--stall-on CUSTOMER]
//
// Start as many as you like: they share the queue, and each order goes to exactly one of them.
// --stall-on makes the barista freeze on the first delivery of CUSTOMER's order (never
// answering it), so that you can kill it mid-order and watch another barista make that order.
#include "coffee.h"

#include <hopper.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t s_stop; // set by SIGINT/SIGTERM

static void
s_on_signal(int sig)
{
    (void)sig;
    s_stop = 1;
}

static void
s_sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = ms % 1000 * 1000000L};
    nanosleep(&ts, NULL); // a signal cuts it short; the caller looks at s_stop next
}

// The menu: what an order says, what the customer gets. NULL: not on the menu.
static const char *
s_drink(const void *order, size_t size)
{
    static const char *const menu[][2] = {{"1", "espresso"}, {"2", "latte"}, {"3", "cappuccino"}};
    for (size_t i = 0; i < sizeof menu / sizeof menu[0]; i++)
        if (size == strlen(menu[i][0]) && memcmp(order, menu[i][0], size) == 0)
            return menu[i][1];
    return NULL;
}

static int
s_serve(hop_client_t *client, const char *name, const hop_delivery_t *order, long brew_ms,
        const char *stall_on)
{
    const char *customer = hop_delivery_header(order, "customer");
    if (!customer)
        customer = "someone";
    if (stall_on && strcmp(customer, stall_on) == 0 && !order->redelivered) {
        printf("%s: stalling on %s's order\n", name, customer);
        while (!s_stop)
            s_sleep_ms(1000);
        return HOP_OK; // never acked: when we disconnect, the order goes back to the queue
    }
    const char *drink = s_drink(order->body, order->body_size);
    const char *reply = drink ? drink : "Sorry, we don't have that option";
    if (drink)
        s_sleep_ms(brew_ms);
    // The reply goes to the queue the order names in reply_to, carrying the order's
    // correlation id: that is how the customer tells which of its requests it answers.
    int rc = hop_client_reply(client, order, reply, strlen(reply), NULL);
    // Ack only once the reply is out. If this barista dies before acking, the broker gives the
    // order to another barista, flagged redelivered: no order is lost. (Dying between reply
    // and ack would answer it twice; the customer stops listening after the first answer.)
    if (rc == HOP_OK)
        rc = hop_client_ack(client, order->tag, false);
    if (rc == HOP_OK)
        printf("%s: %s ordered \"%.*s\": %s%s\n", name, customer, (int)order->body_size,
               (const char *)order->body, reply, order->redelivered ? " [redelivered]" : "");
    return rc;
}

int
main(int argc, char **argv)
{
    char name[64];
    snprintf(name, sizeof name, "barista-%d", (int)getpid());
    long brew_ms = 1000;
    const char *stall_on = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--name") == 0 && i + 1 < argc)
            snprintf(name, sizeof name, "%s", argv[++i]);
        else if (strcmp(argv[i], "--brew-ms") == 0 && i + 1 < argc)
            brew_ms = atol(argv[++i]);
        else if (strcmp(argv[i], "--stall-on") == 0 && i + 1 < argc)
            stall_on = argv[++i];
        else {
            fprintf(stderr, "usage: barista [--name NAME] [--brew-ms MS] [--stall-on CUSTOMER]\n");
            return 2;
        }
    }
    setvbuf(stdout, NULL, _IOLBF, 0); // line by line, even into a pipe or a file
    struct sigaction sa = {.sa_handler = s_on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    hop_client_t *client = hop_client_new();
    hop_client_set_name(client, name); // shown by `hopper list connections`
    // NULL: the broker in $HOPPER_BROKER, else tcp://127.0.0.1:5680.
    int rc = hop_client_connect(client, NULL);
    if (rc == HOP_OK)
        rc = hop_client_declare_queue(client, COFFEE_QUEUE, 0, NULL, 0);
    // Prefetch 1: the broker sends this barista its next order only once it has acked the
    // current one. Orders do not pile up at a busy barista while another one stands idle
    // (fair dispatch), and a barista that dies takes at most one order down with it.
    if (rc == HOP_OK)
        rc = hop_client_consume(client, COFFEE_QUEUE, NULL, 1, 0, NULL, 0);
    if (rc == HOP_OK)
        printf("%s: ready for orders on queue %s\n", name, COFFEE_QUEUE);
    while (rc == HOP_OK && !s_stop) {
        hop_delivery_t *order;
        rc = hop_client_receive(client, &order, 500);
        if (rc == HOP_ETIMEOUT) {
            rc = HOP_OK; // nothing yet: look at s_stop, wait again
            continue;
        }
        if (rc == HOP_OK) {
            rc = s_serve(client, name, order, brew_ms, stall_on);
            hop_delivery_destroy(&order);
        }
    }
    if (rc != HOP_OK)
        fprintf(stderr, "%s: %s\n", name, hop_client_error(client));
    hop_client_destroy(&client); // says goodbye: an order we still hold goes back to the queue
    return rc == HOP_OK ? 0 : 1;
}
