// examples/events/service.c - the consuming loop of the shop's services; see service.h.
#include "service.h"

#include <hopper.h>

#include <signal.h>
#include <stdio.h>

static volatile sig_atomic_t s_stop; // set by SIGINT/SIGTERM

static void
s_on_signal(int sig)
{
    (void)sig;
    s_stop = 1;
}

int
events_serve(const char *service, const char *pattern, events_handler_fn *handler)
{
    setvbuf(stdout, NULL, _IOLBF, 0); // line by line, even into a pipe or a file
    struct sigaction sa = {.sa_handler = s_on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    char queue[HOP_NAME_MAX + 1];
    snprintf(queue, sizeof queue, "shop.%s", service);
    hop_client_t *client = hop_client_new();
    hop_client_set_name(client, service);
    int rc = hop_client_connect(client, NULL); // $HOPPER_BROKER, else tcp://127.0.0.1:5680
    // Both sides declare the exchange: whoever comes first creates it.
    if (rc == HOP_OK)
        rc = hop_client_declare_exchange(client, SHOP_EXCHANGE, "topic", HOP_DURABLE);
    // A named, durable queue per service, not a private one: events that arrive while the
    // service is down (restarting, deploying) wait for it, and several instances of the same
    // service share its queue, each event going to one of them.
    if (rc == HOP_OK)
        rc = hop_client_declare_queue(client, queue, HOP_DURABLE, NULL, 0);
    // The binding is the service's subscription: the exchange routes to this queue every event
    // whose routing key matches pattern ("*" is one word, "#" any number of words).
    if (rc == HOP_OK)
        rc = hop_client_bind(client, queue, SHOP_EXCHANGE, pattern);
    // Prefetch 10 with acks: a few events in flight for speed, and an event this service had
    // not finished when it died goes back to the queue rather than being lost.
    if (rc == HOP_OK)
        rc = hop_client_consume(client, queue, NULL, 10, 0, NULL, 0);
    if (rc == HOP_OK)
        printf("%s: listening for '%s' on exchange %s (queue %s)\n", service, pattern,
               SHOP_EXCHANGE, queue);
    unsigned handled = 0;
    while (rc == HOP_OK && !s_stop) {
        hop_delivery_t *event;
        rc = hop_client_receive(client, &event, 500);
        if (rc == HOP_ETIMEOUT) {
            rc = HOP_OK; // nothing yet: look at s_stop, wait again
            continue;
        }
        if (rc != HOP_OK)
            break;
        const char *order = hop_delivery_header(event, "order");
        const char *what = handler(event->routing_key);
        printf("%s: %s order %s: %s\n", service, event->routing_key, order ? order : "?", what);
        handled++;
        rc = hop_client_ack(client, event->tag, false);
        hop_delivery_destroy(&event);
    }
    if (rc != HOP_OK)
        fprintf(stderr, "%s: %s\n", service, hop_client_error(client));
    else
        printf("%s: handled %u events\n", service, handled);
    hop_client_destroy(&client);
    return rc == HOP_OK ? 0 : 1;
}
