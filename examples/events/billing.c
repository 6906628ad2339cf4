// examples/events/billing.c - the billing service: invoices an order once it is paid.
//
//     billing
//
// It binds "order.paid": of all the shop's events, only payments reach it.
#include "service.h"

static const char *
s_handle(const char *routing_key)
{
    (void)routing_key; // always "order.paid": the binding saw to that
    return "invoice sent";
}

int
main(void)
{
    return events_serve("billing", "order.paid", s_handle);
}
