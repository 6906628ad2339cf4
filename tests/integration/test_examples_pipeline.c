// tests/integration/test_examples_pipeline.c - examples/pipeline (bounded producer/consumer):
// the queue overflows, producers are refused and retry, and the counts it prints match exactly:
// per producer, per consumer, in total, and against the broker's own counters.
#include "test_examples_util.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PRODUCERS 3
#define CONSUMERS 2
#define MESSAGES  500 // per producer

static void
test_pipeline_counts_match_despite_rejections(void **state)
{
    fx_t *fx = *state;
    ex_proc_t *run = ex_start("pipeline", false, "pipeline/pipeline", "--producers", "3",
                              "--consumers", "2", "--messages", "500", "--work-ms", "2", NULL);
    EX_CHECK(ex_wait_exit(run, 25000) == 0, "pipeline did not exit 0");
    char *out = ex_output(run);

    // producer N: sent S (refused R times, each retried)
    uint64_t refused_sum = 0;
    const char *at = out;
    for (int i = 1; i <= PRODUCERS; i++) {
        char prefix[32];
        snprintf(prefix, sizeof prefix, "producer %d: ", i);
        at = strstr(out, prefix);
        uint64_t sent = 0, refused = 0;
        EX_CHECK(at && sscanf(at + strlen(prefix), "sent %" SCNu64 " (refused %" SCNu64, &sent,
                              &refused) == 2,
                 "no line for producer %d", i);
        EX_CHECK(sent == MESSAGES, "producer %d sent %" PRIu64, i, sent);
        refused_sum += refused;
    }
    // consumer N: received R (...)
    uint64_t received_sum = 0;
    for (int i = 1; i <= CONSUMERS; i++) {
        char prefix[32];
        snprintf(prefix, sizeof prefix, "consumer %d: ", i);
        at = strstr(out, prefix);
        uint64_t received = 0;
        EX_CHECK(at && sscanf(at + strlen(prefix), "received %" SCNu64, &received) == 1,
                 "no line for consumer %d", i);
        EX_CHECK(received > 0, "consumer %d received nothing: prefetch 1 shares the work", i);
        received_sum += received;
    }
    EX_CHECK(received_sum == PRODUCERS * MESSAGES, "consumers received %" PRIu64, received_sum);
    // total: sent S, received R, refused F, lost L, duplicated D
    uint64_t sent = 0, received = 0, refused = 0, lost = 1, duplicated = 1;
    at = strstr(out, "total: ");
    EX_CHECK(at && sscanf(at,
                          "total: sent %" SCNu64 ", received %" SCNu64 ", refused %" SCNu64
                          ", lost %" SCNu64 ", duplicated %" SCNu64,
                          &sent, &received, &refused, &lost, &duplicated) == 5,
             "no total line");
    EX_CHECK(sent == PRODUCERS * MESSAGES && received == sent && lost == 0 && duplicated == 0,
             "totals do not match");
    EX_CHECK(refused == refused_sum, "refused %" PRIu64 " in total, %" PRIu64 " per producer",
             refused, refused_sum);
    EX_CHECK(refused > 0, "the queue never overflowed: nothing was refused");
    free(out);

    // The broker counted the same: every refused publish, every message in and out once.
    hop_client_t *c = sx_client(fx, "check", 0);
    assert_int_equal(sx_queue_stat(c, "pipeline.buffer", "rejected_publishes"), refused);
    assert_int_equal(sx_queue_stat(c, "pipeline.buffer", "published"), sent);
    assert_int_equal(sx_queue_stat(c, "pipeline.buffer", "acked"), sent);
    assert_int_equal(sx_queue_stat(c, "pipeline.buffer", "messages"), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_pipeline_counts_match_despite_rejections, ex_setup,
                                        ex_teardown),
    };
    return cmocka_run_group_tests_name("integration.examples_pipeline", tests, NULL, NULL);
}
