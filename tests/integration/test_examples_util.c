// tests/integration/test_examples_util.c - see test_examples_util.h.
#include "test_examples_util.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#ifndef EXAMPLES_DIR
#error "EXAMPLES_DIR must name the directory of the built examples (tests/CMakeLists.txt)"
#endif

#define EX_MAX_PROCS 128
#define EX_MAX_ARGS  16

static ex_proc_t s_procs[EX_MAX_PROCS]; // this test's processes
static int s_proc_count;
static const char *s_dir; // this test's temp directory, for the output files

int
ex_setup(void **state)
{
    fx_t *fx = calloc(1, sizeof *fx);
    harness_opts_t opts = {.heartbeat_ms = 200};
    if (!fx || !(fx->broker = harness_broker_start(&opts)) || !(s_dir = harness_tempdir())) {
        free(fx);
        return -1;
    }
    setenv("HOPPER_BROKER", harness_broker_endpoint(fx->broker), 1);
    s_proc_count = 0;
    *state = fx;
    return 0;
}

int
ex_teardown(void **state)
{
    for (int i = 0; i < s_proc_count; i++) {
        if (s_procs[i].pid > 0)
            ex_kill(&s_procs[i]);
        if (s_procs[i].stdin_fd >= 0)
            close(s_procs[i].stdin_fd);
    }
    s_proc_count = 0;
    return sx_teardown(state);
}

ex_proc_t *
ex_start(const char *name, bool with_stdin, const char *program, ...)
{
    assert_true(s_proc_count < EX_MAX_PROCS);
    ex_proc_t *proc = &s_procs[s_proc_count++];
    memset(proc, 0, sizeof *proc);
    snprintf(proc->name, sizeof proc->name, "%s", name);
    snprintf(proc->out_path, sizeof proc->out_path, "%s/%s.out", s_dir, name);
    proc->stdin_fd = -1;
    proc->status = -1;

    char path[512];
    snprintf(path, sizeof path, "%s/%s", EXAMPLES_DIR, program);
    char *argv[EX_MAX_ARGS + 2] = {path};
    va_list args;
    va_start(args, program);
    int argc = 1;
    const char *arg;
    while ((arg = va_arg(args, const char *)) && argc <= EX_MAX_ARGS)
        argv[argc++] = (char *)arg;
    va_end(args);
    assert_null(arg);

    int in[2] = {-1, -1};
    int out = open(proc->out_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    assert_true(out >= 0);
    if (with_stdin) {
        assert_int_equal(pipe(in), 0);
        fcntl(in[1], F_SETFD, FD_CLOEXEC);
    } else
        in[0] = open("/dev/null", O_RDONLY);
    assert_true(in[0] >= 0);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); // dies with the test, whatever happens to it
        if (getppid() != parent)
            _exit(127);
        signal(SIGPIPE, SIG_DFL);
        dup2(in[0], 0);
        dup2(out, 1);
        execv(argv[0], argv);
        fprintf(stderr, "%s: cannot run %s: %s\n", name, argv[0], strerror(errno));
        _exit(127);
    }
    close(in[0]);
    close(out);
    proc->stdin_fd = in[1];
    proc->pid = pid;
    if (pid < 0)
        ex_fail("cannot fork for %s: %s", name, strerror(errno));
    return proc;
}

char *
ex_output(const ex_proc_t *proc)
{
    FILE *f = fopen(proc->out_path, "r");
    size_t size = 0, cap = 4096;
    char *text = malloc(cap);
    assert_non_null(text);
    size_t n;
    while (f && (n = fread(text + size, 1, cap - size - 1, f)) > 0) {
        size += n;
        if (cap - size < 1024) {
            cap *= 2;
            text = realloc(text, cap);
            assert_non_null(text);
        }
    }
    if (f)
        fclose(f);
    text[size] = '\0';
    return text;
}

int
ex_count(const char *text, const char *needle)
{
    int count = 0;
    size_t len = strlen(needle);
    for (const char *at = strstr(text, needle); at; at = strstr(at + len, needle))
        count++;
    return count;
}

bool
ex_wait_output(const ex_proc_t *proc, const char *needle, int count, int timeout_ms)
{
    uint64_t deadline = harness_now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        char *text = ex_output(proc);
        int found = ex_count(text, needle);
        free(text);
        if (found >= count)
            return true;
        if (harness_now_ms() >= deadline)
            return false;
        harness_pause_ms(10);
    }
}

void
ex_expect_output(const ex_proc_t *proc, const char *needle, int count)
{
    if (!ex_wait_output(proc, needle, count, EX_WAIT_MS))
        ex_fail("%s did not print '%s' %d time(s) within %d ms", proc->name, needle, count,
                EX_WAIT_MS);
}

void
ex_write(ex_proc_t *proc, const char *text)
{
    assert_true(proc->stdin_fd >= 0);
    size_t len = strlen(text);
    assert_int_equal(write(proc->stdin_fd, text, len), (ssize_t)len);
}

void
ex_close_stdin(ex_proc_t *proc)
{
    if (proc->stdin_fd >= 0)
        close(proc->stdin_fd);
    proc->stdin_fd = -1;
}

int
ex_wait_exit(ex_proc_t *proc, int timeout_ms)
{
    if (proc->pid > 0) {
        int status = harness_reap(proc->pid, timeout_ms);
        if (status == -2)
            return -2;
        proc->status = status;
        proc->pid = -1;
    }
    return proc->status;
}

int
ex_stop(ex_proc_t *proc)
{
    if (proc->pid > 0)
        kill(proc->pid, SIGTERM);
    int status = ex_wait_exit(proc, EX_WAIT_MS);
    if (status == -2)
        ex_fail("%s ignored SIGTERM for %d ms", proc->name, EX_WAIT_MS);
    return status;
}

void
ex_kill(ex_proc_t *proc)
{
    if (proc->pid > 0)
        proc->status = harness_kill9(proc->pid);
    proc->pid = -1;
}

void
ex_fail_at(const char *file, int line, const char *format, ...)
{
    char message[1024];
    va_list args;
    va_start(args, format);
    vsnprintf(message, sizeof message, format, args);
    va_end(args);
    for (int i = 0; i < s_proc_count; i++) {
        char *text = ex_output(&s_procs[i]);
        fprintf(stderr, "---- %s (pid %d, status %d) ----\n%s", s_procs[i].name, s_procs[i].pid,
                s_procs[i].status, text);
        free(text);
    }
    print_error("ERROR: %s\n", message);
    _fail(file, line);
    abort(); // not reached: _fail jumps back to cmocka
}
