// examples/coffee/customer.c - the client side of request/reply: orders coffee and waits for
// each answer, but not forever.
//
//     customer [--timeout MS] NAME ORDER...        e.g.  customer ada 1 3 7
//
// Exits 0 when every order was answered, 1 when one was not within the timeout.
#include "coffee.h"

#include <hopper.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int
main(int argc, char **argv)
{
    int timeout_ms = 10000;
    int first = 1;
    if (argc > 2 && strcmp(argv[1], "--timeout") == 0) {
        timeout_ms = atoi(argv[2]);
        first = 3;
    }
    if (argc - first < 2) {
        fprintf(stderr, "usage: customer [--timeout MS] NAME ORDER...\n");
        return 2;
    }
    const char *name = argv[first];
    setvbuf(stdout, NULL, _IOLBF, 0);

    hop_client_t *client = hop_client_new();
    hop_client_set_name(client, name);
    int rc = hop_client_connect(client, NULL); // $HOPPER_BROKER, else tcp://127.0.0.1:5680
    if (rc == HOP_OK)
        rc = hop_client_declare_queue(client, COFFEE_QUEUE, 0, NULL, 0);
    int unanswered = 0;
    for (int i = first + 1; i < argc && rc == HOP_OK; i++) {
        const char *order = argv[i];
        hop_header_t header = {"customer", name}; // so the barista knows whose order it is
        hop_props_t props = {.headers = &header, .header_count = 1};
        hop_delivery_t *reply;
        // A request publishes the order with reply_to naming a private queue of this client
        // (exclusive: nobody else can read our answers; auto-delete: it goes when we go) and a
        // fresh correlation id, then waits for the message that carries that id back.
        rc = hop_client_request(client, "", COFFEE_QUEUE, order, strlen(order), &props, timeout_ms,
                                &reply);
        if (rc == HOP_ETIMEOUT) {
            printf("%s: ordered \"%s\": no answer within %d ms\n", name, order, timeout_ms);
            unanswered++;
            rc = HOP_OK;
        } else if (rc == HOP_OK) {
            printf("%s: ordered \"%s\": %.*s\n", name, order, (int)reply->body_size,
                   (const char *)reply->body);
            hop_delivery_destroy(&reply);
        }
    }
    if (rc != HOP_OK)
        fprintf(stderr, "%s: %s\n", name, hop_client_error(client));
    hop_client_destroy(&client);
    return rc == HOP_OK && unanswered == 0 ? 0 : 1;
}
