// tests/integration/test_examples_util.h - what the tests of the example programs (examples/)
// share: a broker fixture, the example programs started as child processes with their stdout
// in a file (and optionally a pipe as stdin), and waits on that output with a deadline.
//
// Children find the broker through $HOPPER_BROKER, set by the fixture. They get
// PR_SET_PDEATHSIG, and whatever still runs at teardown is killed, so a failed test leaves
// nothing behind. Their stderr is the test's own, so that what they say (and what ASan says)
// shows in the test log. cmocka asserts: main thread only.
#ifndef HOP_TEST_EXAMPLES_UTIL_H_INCLUDED
#define HOP_TEST_EXAMPLES_UTIL_H_INCLUDED

#include "sdk_helpers.h"

#include <stdbool.h>

#define EX_WAIT_MS 20000 // longest wait for any one thing an example should do

// One example process.
typedef struct {
    char name[64];      // for messages
    int pid;            // -1 once it has been reaped
    int stdin_fd;       // write end of its stdin pipe, or -1
    char out_path[512]; // the file its stdout goes to
    int status;         // exit status once reaped (as harness_run reports it)
} ex_proc_t;

// Fixtures: a broker (with a 200 ms heartbeat, so that a killed process is noticed within
// about a second) and $HOPPER_BROKER pointing at it. The state is an fx_t (sdk_helpers.h).
int ex_setup(void **state);
int ex_teardown(void **state);

// Starts examples/PROGRAM (e.g. "coffee/barista") with the arguments that follow, up to a
// NULL. with_stdin: its stdin is a pipe (ex_write, ex_close_stdin), otherwise /dev/null.
// Fails the test if it cannot start. The process belongs to the fixture.
ex_proc_t *ex_start(const char *name, bool with_stdin, const char *program, ...);
// Everything it wrote to stdout so far, NUL-terminated; the caller frees it.
char *ex_output(const ex_proc_t *proc);
// Occurrences of needle in text.
int ex_count(const char *text, const char *needle);
// Waits until its output contains needle at least count times; false after timeout_ms.
bool ex_wait_output(const ex_proc_t *proc, const char *needle, int count, int timeout_ms);
// Fails the test unless the output shows needle count times within EX_WAIT_MS.
void ex_expect_output(const ex_proc_t *proc, const char *needle, int count);
void ex_write(ex_proc_t *proc, const char *text);
void ex_close_stdin(ex_proc_t *proc);
// Waits up to timeout_ms for it to exit. Returns its status, or -2 if it still runs.
int ex_wait_exit(ex_proc_t *proc, int timeout_ms);
// SIGTERM, then waits for it to exit (fails the test after EX_WAIT_MS). Returns its status.
int ex_stop(ex_proc_t *proc);
// SIGKILL and reap.
void ex_kill(ex_proc_t *proc);
// Prints every process's output so far on stderr, then fails the test with the message at
// file:line (use ex_fail).
void ex_fail_at(const char *file, int line, const char *format, ...)
    __attribute__((format(printf, 3, 4), noreturn));
#define ex_fail(...) ex_fail_at(__FILE__, __LINE__, __VA_ARGS__)

#define EX_CHECK(cond, ...)                                                                        \
    do {                                                                                           \
        if (!(cond))                                                                               \
            ex_fail(__VA_ARGS__);                                                                  \
    } while (0)

#endif
