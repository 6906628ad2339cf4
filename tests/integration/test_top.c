// tests/integration/test_top.c - `hopper top` driven headless (issue 7): run in a
// pseudo-terminal (forkpty) against a real hopperd, it must draw a known queue with its ready
// count, leave with exit 0 on `q` and on Ctrl-C, and give the terminal back (echo and line
// mode on again). Without a terminal it refuses with a usage error.
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "cli_helpers.h"

#include <errno.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#define WAIT_MS 20000
#define QUEUE   "top.jobs"
#define READY   37

// A `hopper top` in a pseudo-terminal: its pid, the pty's master side, and what it drew.
typedef struct {
    pid_t pid;
    int master;
    char screen[1 << 16]; // the output with escape sequences taken out
    size_t len;
    int status; // exit status once reaped, else -1
} s_top_t;

static s_top_t s_top = {.pid = -1, .master = -1};

static int
s_teardown(void **state)
{
    if (s_top.pid > 0) {
        kill(s_top.pid, SIGKILL);
        waitpid(s_top.pid, NULL, 0);
    }
    if (s_top.master >= 0)
        close(s_top.master);
    s_top.pid = -1;
    s_top.master = -1;
    return cx_teardown(state);
}

// Appends output to the screen text with each escape sequence (CSI: ESC [ ... final byte;
// two-byte ones: ESC ( B, ESC =, ...) and control character but newline as one blank: cursor
// moves then still separate what they separated on the screen.
static void
s_put(char c)
{
    if (s_top.len + 1 >= sizeof s_top.screen)
        return;
    s_top.screen[s_top.len++] = c;
    s_top.screen[s_top.len] = '\0';
}

static void
s_take(const char *data, size_t n)
{
    static int state; // 0 text, 1 after ESC, 2 in CSI, 3 after ESC ( or )
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)data[i];
        if (state == 1) {
            state = c == '[' ? 2 : (c == '(' || c == ')') ? 3 : 0;
            if (!state)
                s_put(' ');
            continue;
        }
        if (state == 2 || state == 3) {
            if (state == 3 || (c >= 0x40 && c <= 0x7e)) {
                state = 0;
                s_put(' ');
            }
            continue;
        }
        if (c == 0x1b)
            state = 1;
        else
            s_put(c < 0x20 && c != '\n' ? ' ' : (char)c);
    }
}

// Reads what top drew for up to ms (less when it exits). Returns false when the pty closed.
static bool
s_drain(int ms)
{
    struct pollfd p = {s_top.master, POLLIN, 0};
    if (poll(&p, 1, ms) <= 0)
        return true;
    char buf[4096];
    ssize_t n = read(s_top.master, buf, sizeof buf);
    if (n <= 0)
        return false; // EIO: the child closed its side
    s_take(buf, (size_t)n);
    return true;
}

static void
s_start(fx_t *fx)
{
    struct winsize size = {.ws_row = 30, .ws_col = 132};
    s_top.len = 0;
    s_top.screen[0] = '\0';
    s_top.status = -1;
    pid_t pid = forkpty(&s_top.master, NULL, NULL, &size);
    assert_true(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); // never outlive a test killed outright
        setenv("TERM", "xterm", 1);
        execl(harness_cli_path(), "hopper", "--broker", harness_broker_endpoint(fx->broker),
              "--timeout", TIMEOUT, "top", "--interval", "200", (char *)NULL);
        _exit(127);
    }
    s_top.pid = pid;
}

// True when the screen shows the queue's row with its ready count: "top.jobs" then, past
// blanks, READY.
static bool
s_row_drawn(void)
{
    char want[32];
    snprintf(want, sizeof want, "%d", READY);
    for (const char *at = strstr(s_top.screen, QUEUE); at; at = strstr(at + 1, QUEUE)) {
        const char *p = at + strlen(QUEUE);
        while (*p == ' ')
            p++;
        if (strncmp(p, want, strlen(want)) == 0 && (p[strlen(want)] < '0' || p[strlen(want)] > '9'))
            return true;
    }
    return false;
}

// Waits for the queue's row, or fails showing what was drawn.
static void
s_wait_row(void)
{
    uint64_t deadline = harness_now_ms() + WAIT_MS;
    while (!s_row_drawn() && harness_now_ms() < deadline)
        if (!s_drain(100))
            break;
    if (!s_row_drawn())
        fail_msg("hopper top did not draw '%s' with %d ready; it drew:\n%s", QUEUE, READY,
                 s_top.screen);
}

// Sends keys, then waits for top to exit; returns its exit status.
static int
s_finish(const char *keys)
{
    assert_int_equal(write(s_top.master, keys, strlen(keys)), (ssize_t)strlen(keys));
    uint64_t deadline = harness_now_ms() + WAIT_MS;
    int status = 0;
    pid_t done = 0;
    while ((done = waitpid(s_top.pid, &status, WNOHANG)) == 0 && harness_now_ms() < deadline)
        s_drain(50);
    if (done != s_top.pid)
        fail_msg("hopper top did not exit after %s", keys[0] == 3 ? "Ctrl-C" : keys);
    s_top.pid = -1;
    // The terminal is given back: line mode and echo on again.
    struct termios t;
    assert_int_equal(tcgetattr(s_top.master, &t), 0);
    assert_true(t.c_lflag & ICANON);
    assert_true(t.c_lflag & ECHO);
    close(s_top.master);
    s_top.master = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static void
s_fill_queue(fx_t *fx)
{
    CLI_OK(fx, "declare", "queue", QUEUE);
    char lines[READY * 8 + 1];
    size_t at = 0;
    for (int i = 0; i < READY; i++)
        at += (size_t)snprintf(lines + at, sizeof lines - at, "m%d\n", i);
    CLI_OK_IN(fx, lines, "publish", "", QUEUE, "--lines");
    assert_int_equal(cx_queue_field(fx, QUEUE, "messages_ready"), READY);
}

static void
test_top_draws_queues_and_quits_on_q(void **state)
{
    fx_t *fx = *state;
    s_fill_queue(fx);
    s_start(fx);
    s_wait_row();
    // The broker's totals are on the screen too.
    assert_non_null(strstr(s_top.screen, "hopper top"));
    assert_non_null(strstr(s_top.screen, "READY"));
    assert_non_null(strstr(s_top.screen, "rss"));
    assert_int_equal(s_finish("q"), 0);
}

static void
test_top_quits_on_ctrl_c(void **state)
{
    fx_t *fx = *state;
    s_fill_queue(fx);
    s_start(fx);
    s_wait_row();
    assert_int_equal(s_finish("\x03"), 0);
}

static void
test_top_usage(void **state)
{
    fx_t *fx = *state;
    // The harness runs the CLI on pipes: not a terminal.
    CLI_EXIT(fx, 2, "top");
    assert_non_null(strstr(fx->last.err, "terminal"));
    CLI_EXIT(fx, 2, "top", "--interval", "5");
    CLI_EXIT(fx, 2, "top", "extra");
    assert_int_equal(PLAIN(fx, "top", "--help"), 0);
    assert_non_null(strstr(fx->last.out, "--interval"));
    assert_int_equal(PLAIN(fx, "--help"), 0);
    assert_non_null(strstr(fx->last.out, "top [--interval MS]"));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_top_draws_queues_and_quits_on_q, cx_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_top_quits_on_ctrl_c, cx_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_top_usage, cx_setup, s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
