// tests/integration/test_lifecycle.c - hopperd's own life: a stop request at any moment after
// it says it listens is a clean shutdown (exit 0), and a data directory is used by one broker
// at a time.
#include "harness.h"

#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

// A supervisor may send SIGTERM the moment the broker reports it is listening. The broker
// once printed that line before installing its handlers, so an early SIGTERM killed it
// (exit 143) instead of stopping it; under load this showed as a flaky CLI test.
static void
test_sigterm_right_after_start_is_a_clean_exit(void **state)
{
    (void)state;
    for (int i = 0; i < 20; i++) {
        harness_broker_t *broker = harness_broker_start(NULL);
        assert_non_null(broker);
        assert_int_equal(harness_broker_stop(broker, HARNESS_STOP_TIMEOUT_MS), 0);
        harness_broker_destroy(&broker);
    }
}

static void
test_sigint_is_a_clean_exit(void **state)
{
    (void)state;
    harness_broker_t *broker = harness_broker_start(NULL);
    assert_non_null(broker);
    int pid = harness_broker_pid(broker);
    assert_true(pid > 0);
    assert_int_equal(kill(pid, SIGINT), 0);
    assert_int_equal(harness_reap(pid, HARNESS_STOP_TIMEOUT_MS), 0);
    harness_broker_destroy(&broker);
}

static void
test_second_broker_on_same_data_dir_refuses(void **state)
{
    (void)state;
    harness_broker_t *broker = harness_broker_start(NULL);
    assert_non_null(broker);
    char *const argv[] = {
        (char *)harness_hopperd_path(),          "--bind", "tcp://127.0.0.1:0", "--data-dir",
        (char *)harness_broker_data_dir(broker), NULL};
    harness_run_t run;
    assert_int_equal(harness_run(argv, NULL, 0, 10000, &run), 1);
    assert_non_null(strstr(run.err, "in use by another hopperd"));
    assert_null(strstr(run.out, "listening"));
    harness_run_fini(&run);
    // The first one is unharmed, and once it is gone the directory can be used again.
    assert_int_equal(harness_broker_finish(&broker), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sigterm_right_after_start_is_a_clean_exit),
        cmocka_unit_test(test_sigint_is_a_clean_exit),
        cmocka_unit_test(test_second_broker_on_same_data_dir_refuses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
