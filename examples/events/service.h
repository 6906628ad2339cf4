// examples/events/service.h - what the billing, shipping and audit services share: each one
// binds its own queue to the shop's topic exchange with its own pattern, and handles what
// arrives there.
#ifndef EVENTS_SERVICE_H_INCLUDED
#define EVENTS_SERVICE_H_INCLUDED

#define SHOP_EXCHANGE "shop" // a topic exchange; routing keys are "order.created", ...

// What a service does with one event; returns a short description of it, for the log.
typedef const char *(events_handler_fn)(const char *routing_key);

// Runs service until SIGINT/SIGTERM: declares the exchange and the durable queue
// "shop.SERVICE", binds it with pattern, and calls handler for each event, printing
// "SERVICE: ROUTING_KEY order N: what handler said". Returns the exit status.
int events_serve(const char *service, const char *pattern, events_handler_fn *handler);

#endif
