// tests/integration/sdk_helpers.c - see sdk_helpers.h.
#include "sdk_helpers.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// ---------------------------------------------------------------------------------------
// Fixture: a broker; every client made through sx_client is destroyed at sx_teardown.

int
sx_setup(void **state)
{
    return sx_start(state, NULL);
}

int
sx_start(void **state, const harness_opts_t *opts)
{
    fx_t *fx = calloc(1, sizeof *fx);
    if (!fx)
        return -1;
    fx->broker = harness_broker_start(opts);
    if (!fx->broker) {
        free(fx);
        return -1;
    }
    *state = fx;
    return 0;
}

int
sx_teardown(void **state)
{
    fx_t *fx = *state;
    if (!fx)
        return 0;
    for (int i = 0; i < MAX_CLIENTS; i++)
        hop_client_destroy(&fx->clients[i]);
    int rc = harness_broker_finish(&fx->broker);
    free(fx);
    *state = NULL;
    return rc;
}

hop_client_t *
sx_client(fx_t *fx, const char *name, int heartbeat_ms)
{
    int slot = 0;
    while (slot < MAX_CLIENTS && fx->clients[slot])
        slot++;
    assert_true(slot < MAX_CLIENTS);
    hop_client_t *c = hop_client_new();
    hop_client_set_timeout(c, WAIT_MS);
    hop_client_set_name(c, name);
    if (heartbeat_ms)
        hop_client_set_heartbeat(c, heartbeat_ms);
    fx->clients[slot] = c;
    CHECK(c, hop_client_connect(c, harness_broker_endpoint(fx->broker)));
    return c;
}

// ---------------------------------------------------------------------------------------
// Helpers

long
sx_body_seq(const hop_delivery_t *d)
{
    char buf[32];
    size_t n = d->body_size < sizeof buf - 1 ? d->body_size : sizeof buf - 1;
    memcpy(buf, d->body, n);
    buf[n] = '\0';
    char *end;
    long v = strtol(buf, &end, 10);
    return end == buf ? -1 : v;
}

bool
sx_body_is(const hop_delivery_t *d, const char *text)
{
    return d->body_size == strlen(text) && memcmp(d->body, text, d->body_size) == 0;
}

void
sx_publish_text(hop_client_t *c, const char *exchange, const char *key, const char *text)
{
    CHECK(c, hop_client_publish(c, exchange, key, text, strlen(text), NULL));
}

hop_delivery_t *
sx_receive(hop_client_t *c)
{
    hop_delivery_t *d = NULL;
    CHECK(c, hop_client_receive(c, &d, WAIT_MS));
    return d;
}

void
sx_expect_body(hop_client_t *c, const char *text)
{
    hop_delivery_t *d = sx_receive(c);
    if (!sx_body_is(d, text))
        fail_msg("expected '%s', got '%.*s'", text, (int)d->body_size, (const char *)d->body);
    hop_delivery_destroy(&d);
}

// A round trip: the broker handled everything c sent before, and c buffered everything the
// broker sent it before the reply.
void
sx_sync(hop_client_t *c)
{
    CHECK(c, hop_client_declare_exchange(c, "amq.direct", "direct", HOP_PASSIVE));
}

void
sx_expect_nothing(hop_client_t *c)
{
    sx_sync(c);
    hop_delivery_t *d = NULL;
    int rc = hop_client_receive(c, &d, 0);
    if (rc == HOP_OK)
        fail_msg("unexpected delivery '%.*s'", (int)d->body_size, (const char *)d->body);
    assert_int_equal(rc, HOP_ETIMEOUT);
}

// A uint field of the list item whose key equals value.
bool
sx_list_uint(hop_client_t *c, const char *what, const char *key, const char *value,
             const char *field, uint64_t *out)
{
    void *items = NULL;
    size_t size = 0;
    CHECK(c, hop_client_list(c, what, &items, &size));
    bool found = harness_items_uint(items, size, key, value, field, out);
    free(items);
    return found;
}

uint64_t
sx_queue_stat(hop_client_t *c, const char *queue, const char *field)
{
    uint64_t v = 0;
    if (!sx_list_uint(c, "queues", "name", queue, field, &v))
        fail_msg("queue '%s' not listed, or without '%s'", queue, field);
    return v;
}
