// examples/events/audit.c - the audit service: keeps a record of everything.
//
//     audit
//
// It binds "#", which matches every routing key (zero or more words): whatever the shop
// publishes, now or in a later version, audit gets a copy, and nobody had to tell it.
#include "service.h"

static const char *
s_handle(const char *routing_key)
{
    (void)routing_key;
    return "recorded";
}

int
main(void)
{
    return events_serve("audit", "#", s_handle);
}
