// examples/events/shipping.c - the shipping service: follows each order through its life.
//
//     shipping
//
// It binds "order.*": every event about an order ("*" matches exactly one word), but it
// would not get "order.item.added" (two words after "order") if the shop ever sent one.
#include "service.h"

#include <string.h>

static const char *
s_handle(const char *routing_key)
{
    if (strcmp(routing_key, "order.created") == 0)
        return "stock reserved";
    if (strcmp(routing_key, "order.paid") == 0)
        return "parcel packed";
    if (strcmp(routing_key, "order.shipped") == 0)
        return "tracking number sent";
    return "ignored";
}

int
main(void)
{
    return events_serve("shipping", "order.*", s_handle);
}
