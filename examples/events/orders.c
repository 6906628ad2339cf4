// examples/events/orders.c - the orders service: publishes what happens to each order on the
// shop's topic exchange, without knowing who listens.
//
//     orders [--count N] [--interval-ms MS]
//
// For each of N orders (default 5) it publishes "order.created", "order.paid" and
// "order.shipped", waiting MS ms (default 500) between events. The routing key says what
// happened; the exchange hands each event to every service whose binding matches it.
#include "service.h"

#include <hopper.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void
s_sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = ms % 1000 * 1000000L};
    nanosleep(&ts, NULL);
}

// A mandatory event that matched no binding comes back here instead of vanishing.
static void
s_on_return(hop_client_t *client, const hop_delivery_t *event, int code, const char *text,
            void *arg)
{
    (void)client, (void)code, (void)text;
    (*(int *)arg)++;
    printf("orders: nobody listens to %s (start billing, shipping or audit first)\n",
           event->routing_key);
}

int
main(int argc, char **argv)
{
    int count = 5;
    long interval_ms = 500;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--count") == 0 && i + 1 < argc)
            count = atoi(argv[++i]);
        else if (strcmp(argv[i], "--interval-ms") == 0 && i + 1 < argc)
            interval_ms = atol(argv[++i]);
        else {
            fprintf(stderr, "usage: orders [--count N] [--interval-ms MS]\n");
            return 2;
        }
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    static const char *const steps[] = {"order.created", "order.paid", "order.shipped"};

    int returned = 0;
    hop_client_t *client = hop_client_new();
    hop_client_set_name(client, "orders");
    hop_client_on_return(client, s_on_return, &returned);
    int rc = hop_client_connect(client, NULL); // $HOPPER_BROKER, else tcp://127.0.0.1:5680
    if (rc == HOP_OK)
        rc = hop_client_declare_exchange(client, SHOP_EXCHANGE, "topic", HOP_DURABLE);
    // Confirms tell us the broker has every event before we exit; mandatory makes it return an
    // event no binding matched (a typo in a key, or no service started yet) rather than drop it.
    if (rc == HOP_OK)
        rc = hop_client_confirm_select(client);
    hop_publish_opts_t opts = {.mandatory = true};
    for (int order = 1; order <= count && rc == HOP_OK; order++) {
        for (size_t step = 0; step < 3 && rc == HOP_OK; step++) {
            char id[16], body[96];
            snprintf(id, sizeof id, "%d", order);
            snprintf(body, sizeof body, "{\"order\": %d, \"total\": %d.%02d}", order,
                     10 + order % 40, order * 7 % 100);
            hop_header_t header = {"order", id}; // lets services read the id without parsing
            hop_props_t props = {
                .content_type = "application/json", .headers = &header, .header_count = 1};
            rc = hop_client_publish_ex(client, SHOP_EXCHANGE, steps[step], body, strlen(body),
                                       &props, &opts, NULL);
            if (rc == HOP_OK)
                printf("orders: %s order %d\n", steps[step], order);
            if (interval_ms > 0)
                s_sleep_ms(interval_ms);
        }
    }
    if (rc == HOP_OK)
        rc = hop_client_wait_confirms(client, 10000, NULL);
    if (rc == HOP_OK)
        printf("orders: published %d events, %d of them unrouted\n", count * 3, returned);
    else
        fprintf(stderr, "orders: %s\n", hop_client_error(client));
    hop_client_destroy(&client);
    return rc == HOP_OK ? 0 : 1;
}
