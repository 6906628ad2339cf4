// tests/integration/harness.c - real hopperd processes, CLI runs and deadline waits for the
// integration tests. See harness.h for the contract.
#include "harness.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef HOPPERD_PATH
#error "HOPPERD_PATH must name the hopperd binary (set by tests/CMakeLists.txt)"
#endif

#define MAX_BROKERS  64
#define MAX_TEMPDIRS 256
#define PATH_SIZE    1024

struct harness_broker {
    pid_t pid;                // -1 when not running
    int out_fd;               // read end of its stdout, kept open while it runs
    char endpoint[256];       // read from its first line; reused by restart
    char dir[PATH_SIZE];      // temp dir holding data/ and hopperd.log
    char data_dir[PATH_SIZE]; // --data-dir
    char log_path[PATH_SIZE]; // its stderr, appended across restarts
    harness_opts_t opts;      // as started
    char log_level[16];       // copy of opts.log_level
};

// Everything made so far, for cleanup at exit. Pids are also kept in a plain array that the
// signal handler can read.
static harness_broker_t *s_brokers[MAX_BROKERS];
static volatile pid_t s_pids[MAX_BROKERS + 8];
static char *s_tempdirs[MAX_TEMPDIRS];
static size_t s_tempdir_count;
static bool s_initialised;

static void
s_on_fatal_signal(int sig)
{
    // Only async-signal-safe calls: kill what we started, then die.
    for (size_t i = 0; i < sizeof s_pids / sizeof s_pids[0]; i++)
        if (s_pids[i] > 0)
            kill(s_pids[i], SIGKILL);
    _exit(128 + sig);
}

static void
s_init(void)
{
    if (s_initialised)
        return;
    s_initialised = true;
    // A child that exits without reading its stdin must not kill us with SIGPIPE.
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = {.sa_handler = s_on_fatal_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    atexit(harness_cleanup);
}

static void
s_track_pid(pid_t pid)
{
    for (size_t i = 0; i < sizeof s_pids / sizeof s_pids[0]; i++)
        if (s_pids[i] <= 0) {
            s_pids[i] = pid;
            return;
        }
}

static void
s_untrack_pid(pid_t pid)
{
    for (size_t i = 0; i < sizeof s_pids / sizeof s_pids[0]; i++)
        if (s_pids[i] == pid)
            s_pids[i] = 0;
}

// Time ----------------------------------------------------------------------------------

uint64_t
harness_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void
harness_pause_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

bool
harness_wait_until(harness_pred_fn *pred, void *arg, int timeout_ms)
{
    assert(pred);
    uint64_t deadline = harness_now_ms() + (uint64_t)timeout_ms;
    while (true) {
        if (pred(arg))
            return true;
        if (harness_now_ms() >= deadline)
            return false;
        harness_pause_ms(5);
    }
}

// Files ---------------------------------------------------------------------------------

int
harness_rmtree(const char *path)
{
    struct stat st;
    if (lstat(path, &st) < 0)
        return errno == ENOENT ? 0 : -1;
    if (!S_ISDIR(st.st_mode))
        return unlink(path);
    DIR *dir = opendir(path);
    if (!dir)
        return -1;
    int rc = 0;
    struct dirent *entry;
    while ((entry = readdir(dir))) {
        if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0)
            continue;
        char child[PATH_SIZE];
        if ((size_t)snprintf(child, sizeof child, "%s/%s", path, entry->d_name) >= sizeof child) {
            rc = -1;
            continue;
        }
        if (harness_rmtree(child) < 0)
            rc = -1;
    }
    closedir(dir);
    if (rmdir(path) < 0)
        rc = -1;
    return rc;
}

const char *
harness_tempdir(void)
{
    s_init();
    assert(s_tempdir_count < MAX_TEMPDIRS);
    const char *base = getenv("TMPDIR");
    if (!base || !*base)
        base = "/tmp";
    char path[PATH_SIZE];
    snprintf(path, sizeof path, "%s/hopper-it-XXXXXX", base);
    if (!mkdtemp(path)) {
        fprintf(stderr, "harness: mkdtemp %s: %s\n", path, strerror(errno));
        return NULL;
    }
    char *copy = strdup(path);
    assert(copy);
    s_tempdirs[s_tempdir_count++] = copy;
    return copy;
}

// Processes -------------------------------------------------------------------------------

static int
s_status_code(int status)
{
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return -1;
}

// Waits for pid until deadline (monotonic ms). Returns the status code, or -2 on timeout.
static int
s_wait_pid(pid_t pid, uint64_t deadline)
{
    while (true) {
        int status;
        pid_t got = waitpid(pid, &status, WNOHANG);
        if (got == pid)
            return s_status_code(status);
        if (got < 0 && errno != EINTR)
            return -1;
        if (harness_now_ms() >= deadline)
            return -2;
        harness_pause_ms(2);
    }
}

// In the child between fork and exec: only async-signal-safe calls.
static void
s_child_prepare(pid_t parent)
{
    // Die with the test: a crashed or timed-out test must not leave processes behind.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(127);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGPIPE, SIG_DFL);
}

static int
s_cloexec_pipe(int fds[2])
{
    if (pipe(fds) < 0)
        return -1;
    fcntl(fds[0], F_SETFD, FD_CLOEXEC);
    fcntl(fds[1], F_SETFD, FD_CLOEXEC);
    return 0;
}

// Reads the broker's first stdout line until deadline. Returns 0 with the endpoint copied.
static int
s_read_endpoint(harness_broker_t *self, uint64_t deadline)
{
    static const char prefix[] = "hopperd listening on ";
    char line[512];
    size_t len = 0;
    while (len < sizeof line - 1) {
        uint64_t now = harness_now_ms();
        if (now >= deadline) {
            fprintf(stderr, "harness: hopperd printed no endpoint within %d ms\n",
                    HARNESS_START_TIMEOUT_MS);
            return -1;
        }
        struct pollfd pfd = {.fd = self->out_fd, .events = POLLIN};
        int rc = poll(&pfd, 1, (int)(deadline - now));
        if (rc < 0 && errno == EINTR)
            continue;
        if (rc <= 0)
            continue;
        ssize_t n = read(self->out_fd, line + len, 1); // one byte: never read past the line
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            fprintf(stderr, "harness: hopperd closed stdout before printing its endpoint\n");
            return -1;
        }
        if (line[len] == '\n') {
            line[len] = '\0';
            if (strncmp(line, prefix, sizeof prefix - 1) != 0) {
                fprintf(stderr, "harness: unexpected first line from hopperd: '%s'\n", line);
                return -1;
            }
            const char *endpoint = line + sizeof prefix - 1;
            size_t endpoint_len = strlen(endpoint);
            if (endpoint_len >= sizeof self->endpoint) {
                fprintf(stderr, "harness: endpoint too long: '%s'\n", endpoint);
                return -1;
            }
            memcpy(self->endpoint, endpoint, endpoint_len + 1);
            return 0;
        }
        len++;
    }
    fprintf(stderr, "harness: hopperd's first line is too long\n");
    return -1;
}

static int
s_spawn(harness_broker_t *self, const char *bind)
{
    char heartbeat[32], max_message[32], sndhwm[32], flow[32];
    char *argv[32];
    int argc = 0;
    argv[argc++] = (char *)HOPPERD_PATH;
    argv[argc++] = "--bind";
    argv[argc++] = (char *)bind;
    argv[argc++] = "--data-dir";
    argv[argc++] = self->data_dir;
    argv[argc++] = "--log-level";
    argv[argc++] = self->log_level;
    if (self->opts.heartbeat_ms > 0) {
        snprintf(heartbeat, sizeof heartbeat, "%d", self->opts.heartbeat_ms);
        argv[argc++] = "--heartbeat";
        argv[argc++] = heartbeat;
    }
    if (self->opts.max_message > 0) {
        snprintf(max_message, sizeof max_message, "%ld", self->opts.max_message);
        argv[argc++] = "--max-message";
        argv[argc++] = max_message;
    }
    if (self->opts.sndhwm > 0) {
        snprintf(sndhwm, sizeof sndhwm, "%d", self->opts.sndhwm);
        argv[argc++] = "--sndhwm";
        argv[argc++] = sndhwm;
    }
    if (self->opts.flow_messages) {
        snprintf(flow, sizeof flow, "%ld",
                 self->opts.flow_messages < 0 ? 0 : self->opts.flow_messages);
        argv[argc++] = "--flow-messages";
        argv[argc++] = flow;
    }
    for (int i = 0; self->opts.args && self->opts.args[i]; i++) {
        assert(i < 8);
        argv[argc++] = (char *)self->opts.args[i];
    }
    argv[argc] = NULL;

    int out[2];
    if (s_cloexec_pipe(out) < 0)
        return -1;
    int log_fd = open(self->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (log_fd < 0 || null_fd < 0) {
        fprintf(stderr, "harness: cannot open %s or /dev/null: %s\n", self->log_path,
                strerror(errno));
        close(out[0]), close(out[1]);
        if (log_fd >= 0)
            close(log_fd);
        if (null_fd >= 0)
            close(null_fd);
        return -1;
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        s_child_prepare(parent);
        dup2(null_fd, 0);
        dup2(out[1], 1);
        dup2(log_fd, 2);
        execv(argv[0], argv);
        _exit(127);
    }
    close(out[1]);
    close(log_fd);
    close(null_fd);
    if (pid < 0) {
        close(out[0]);
        return -1;
    }
    self->pid = pid;
    self->out_fd = out[0];
    s_track_pid(pid);
    if (s_read_endpoint(self, harness_now_ms() + HARNESS_START_TIMEOUT_MS) < 0) {
        harness_broker_kill(self);
        harness_broker_dump_log(self, stderr);
        return -1;
    }
    return 0;
}

harness_broker_t *
harness_broker_start(const harness_opts_t *opts)
{
    s_init();
    size_t slot = 0;
    while (slot < MAX_BROKERS && s_brokers[slot])
        slot++;
    assert(slot < MAX_BROKERS);
    const char *dir = harness_tempdir();
    if (!dir)
        return NULL;
    harness_broker_t *self = calloc(1, sizeof *self);
    assert(self);
    self->pid = -1;
    self->out_fd = -1;
    if (opts)
        self->opts = *opts;
    snprintf(self->log_level, sizeof self->log_level, "%s",
             self->opts.log_level ? self->opts.log_level : "info");
    self->opts.log_level = NULL;
    snprintf(self->dir, sizeof self->dir, "%s", dir);
    if (self->opts.data_dir)
        snprintf(self->data_dir, sizeof self->data_dir, "%s", self->opts.data_dir);
    else
        snprintf(self->data_dir, sizeof self->data_dir, "%s/data", dir);
    snprintf(self->log_path, sizeof self->log_path, "%s/hopperd.log", dir);
    s_brokers[slot] = self;
    if (s_spawn(self, "tcp://127.0.0.1:0") < 0) {
        harness_broker_destroy(&self);
        return NULL;
    }
    return self;
}

void
harness_broker_destroy(harness_broker_t **self_p)
{
    assert(self_p);
    harness_broker_t *self = *self_p;
    if (!self)
        return;
    if (self->pid > 0)
        harness_broker_stop(self, HARNESS_STOP_TIMEOUT_MS);
    for (size_t i = 0; i < MAX_BROKERS; i++)
        if (s_brokers[i] == self)
            s_brokers[i] = NULL;
    harness_rmtree(self->dir);
    free(self);
    *self_p = NULL;
}

const char *
harness_broker_endpoint(const harness_broker_t *self)
{
    return self->endpoint;
}

const char *
harness_broker_data_dir(const harness_broker_t *self)
{
    return self->data_dir;
}

int
harness_broker_pid(const harness_broker_t *self)
{
    return self->pid > 0 ? (int)self->pid : -1;
}

// Forgets the process after it was reaped.
static void
s_reaped(harness_broker_t *self)
{
    s_untrack_pid(self->pid);
    self->pid = -1;
    if (self->out_fd >= 0)
        close(self->out_fd);
    self->out_fd = -1;
}

bool
harness_broker_alive(harness_broker_t *self)
{
    if (self->pid <= 0)
        return false;
    int status;
    pid_t got = waitpid(self->pid, &status, WNOHANG);
    if (got == self->pid) {
        fprintf(stderr, "harness: hopperd pid %d exited with status %d\n", (int)self->pid,
                s_status_code(status));
        s_reaped(self);
        return false;
    }
    return true;
}

int
harness_broker_stop(harness_broker_t *self, int timeout_ms)
{
    if (self->pid <= 0)
        return -1;
    kill(self->pid, SIGTERM);
    int code = s_wait_pid(self->pid, harness_now_ms() + (uint64_t)timeout_ms);
    if (code == -2) {
        fprintf(stderr, "harness: hopperd pid %d ignored SIGTERM for %d ms: killing it\n",
                (int)self->pid, timeout_ms);
        kill(self->pid, SIGKILL);
        s_wait_pid(self->pid, UINT64_MAX);
        code = 128 + SIGKILL;
    }
    if (code != 0)
        harness_broker_dump_log(self, stderr);
    s_reaped(self);
    return code;
}

int
harness_broker_kill(harness_broker_t *self)
{
    if (self->pid <= 0)
        return -1;
    kill(self->pid, SIGKILL);
    s_wait_pid(self->pid, UINT64_MAX);
    s_reaped(self);
    return 0;
}

int
harness_broker_restart(harness_broker_t *self)
{
    if (self->pid > 0)
        harness_broker_stop(self, HARNESS_STOP_TIMEOUT_MS);
    char bind[sizeof self->endpoint];
    snprintf(bind, sizeof bind, "%s", self->endpoint);
    return s_spawn(self, bind);
}

void
harness_broker_dump_log(const harness_broker_t *self, FILE *out)
{
    FILE *log = fopen(self->log_path, "r");
    if (!log)
        return;
    fprintf(out, "---- hopperd log (%s) ----\n", self->log_path);
    char line[1024];
    while (fgets(line, sizeof line, log))
        fprintf(out, "hopperd| %s", line);
    fprintf(out, "---- end of hopperd log ----\n");
    fclose(log);
}

long
harness_broker_rss_kb(const harness_broker_t *self)
{
    if (self->pid <= 0)
        return -1;
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/status", (int)self->pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long kb = -1;
    char line[256];
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0) {
            kb = strtol(line + 6, NULL, 10);
            break;
        }
    fclose(f);
    return kb;
}

// Child runs ------------------------------------------------------------------------------

const char *
harness_hopperd_path(void)
{
    return HOPPERD_PATH;
}

const char *
harness_cli_path(void)
{
#ifdef HOPPER_CLI_PATH
    return HOPPER_CLI_PATH;
#else
    return NULL;
#endif
}

static void
s_append(char **buf, size_t *len, size_t *cap, const char *data, size_t n)
{
    if (*len + n + 1 > *cap) {
        size_t want = *cap ? *cap : 4096;
        while (want < *len + n + 1)
            want *= 2;
        *buf = realloc(*buf, want);
        assert(*buf);
        *cap = want;
    }
    memcpy(*buf + *len, data, n);
    *len += n;
    (*buf)[*len] = '\0';
}

int
harness_run(char *const argv[], const void *input, size_t input_len, int timeout_ms,
            harness_run_t *result)
{
    assert(argv && argv[0]);
    assert(result);
    s_init();
    memset(result, 0, sizeof *result);
    result->status = -1;
    size_t out_cap = 0, err_cap = 0;
    s_append(&result->out, &result->out_len, &out_cap, "", 0);
    s_append(&result->err, &result->err_len, &err_cap, "", 0);

    int in[2], out[2], err[2];
    if (s_cloexec_pipe(in) < 0)
        return -1;
    if (s_cloexec_pipe(out) < 0) {
        close(in[0]), close(in[1]);
        return -1;
    }
    if (s_cloexec_pipe(err) < 0) {
        close(in[0]), close(in[1]), close(out[0]), close(out[1]);
        return -1;
    }
    uint64_t started = harness_now_ms();
    uint64_t deadline = started + (uint64_t)timeout_ms;
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        s_child_prepare(parent);
        dup2(in[0], 0);
        dup2(out[1], 1);
        dup2(err[1], 2);
        execv(argv[0], argv);
        _exit(127);
    }
    close(in[0]), close(out[1]), close(err[1]);
    if (pid < 0) {
        close(in[1]), close(out[0]), close(err[0]);
        return -1;
    }
    s_track_pid(pid);
    fcntl(in[1], F_SETFL, O_NONBLOCK);
    int in_fd = in[1];
    size_t written = 0;
    if (!input || input_len == 0) {
        close(in_fd);
        in_fd = -1;
    }
    int out_fd = out[0], err_fd = err[0];
    while (out_fd >= 0 || err_fd >= 0) {
        uint64_t now = harness_now_ms();
        if (now >= deadline) {
            result->timed_out = true;
            break;
        }
        struct pollfd pfd[3] = {{.fd = out_fd, .events = POLLIN},
                                {.fd = err_fd, .events = POLLIN},
                                {.fd = in_fd, .events = POLLOUT}};
        int rc = poll(pfd, 3, (int)(deadline - now));
        if (rc < 0 && errno != EINTR)
            break;
        if (rc <= 0)
            continue;
        char buf[8192];
        for (int i = 0; i < 2; i++) {
            if (pfd[i].fd < 0 || !(pfd[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            ssize_t n = read(pfd[i].fd, buf, sizeof buf);
            if (n > 0) {
                if (i == 0)
                    s_append(&result->out, &result->out_len, &out_cap, buf, (size_t)n);
                else
                    s_append(&result->err, &result->err_len, &err_cap, buf, (size_t)n);
            } else if (n == 0 || errno != EINTR) {
                close(pfd[i].fd);
                if (i == 0)
                    out_fd = -1;
                else
                    err_fd = -1;
            }
        }
        if (in_fd >= 0 && (pfd[2].revents & (POLLOUT | POLLERR | POLLHUP))) {
            ssize_t n = write(in_fd, (const char *)input + written, input_len - written);
            if (n > 0)
                written += (size_t)n;
            if ((n < 0 && errno != EAGAIN && errno != EINTR) || written == input_len) {
                close(in_fd);
                in_fd = -1;
            }
        }
    }
    if (in_fd >= 0)
        close(in_fd);
    if (out_fd >= 0)
        close(out_fd);
    if (err_fd >= 0)
        close(err_fd);
    int code = result->timed_out ? -2 : s_wait_pid(pid, deadline);
    if (code == -2) {
        result->timed_out = true;
        kill(pid, SIGKILL);
        s_wait_pid(pid, UINT64_MAX);
        code = -1;
    }
    s_untrack_pid(pid);
    result->status = code;
    result->elapsed_ms = (long)(harness_now_ms() - started);
    return code;
}

int
harness_spawn(char *const argv[])
{
    assert(argv && argv[0]);
    s_init();
    int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (null_fd < 0)
        return -1;
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        s_child_prepare(parent);
        dup2(null_fd, 0);
        execv(argv[0], argv);
        _exit(127);
    }
    close(null_fd);
    if (pid > 0)
        s_track_pid(pid);
    return pid > 0 ? (int)pid : -1;
}

int
harness_reap(int pid, int timeout_ms)
{
    int code = s_wait_pid((pid_t)pid, harness_now_ms() + (uint64_t)timeout_ms);
    if (code != -2)
        s_untrack_pid((pid_t)pid);
    return code;
}

int
harness_kill9(int pid)
{
    kill((pid_t)pid, SIGKILL);
    int code = s_wait_pid((pid_t)pid, UINT64_MAX);
    s_untrack_pid((pid_t)pid);
    return code;
}

const char *
harness_self_path(void)
{
    static char path[PATH_SIZE];
    ssize_t n = readlink("/proc/self/exe", path, sizeof path - 1);
    if (n <= 0)
        return NULL;
    path[n] = '\0';
    return path;
}

void
harness_run_fini(harness_run_t *result)
{
    if (!result)
        return;
    free(result->out);
    free(result->err);
    result->out = result->err = NULL;
    result->out_len = result->err_len = 0;
}

void
harness_cleanup(void)
{
    for (size_t i = 0; i < MAX_BROKERS; i++)
        if (s_brokers[i])
            harness_broker_destroy(&s_brokers[i]);
    for (size_t i = 0; i < sizeof s_pids / sizeof s_pids[0]; i++)
        if (s_pids[i] > 0) {
            kill(s_pids[i], SIGKILL);
            s_wait_pid(s_pids[i], UINT64_MAX);
            s_pids[i] = 0;
        }
    for (size_t i = 0; i < s_tempdir_count; i++) {
        harness_rmtree(s_tempdirs[i]);
        free(s_tempdirs[i]);
    }
    s_tempdir_count = 0;
}

// msgpack lookups -------------------------------------------------------------------------

bool
harness_map_find(const void *data, size_t size, const char *key, hop_mp_t *value)
{
    hop_mp_t mp;
    hop_mp_init(&mp, data, size);
    uint32_t count;
    if (!data || hop_mp_map(&mp, &count))
        return false;
    size_t key_len = strlen(key);
    for (uint32_t i = 0; i < count; i++) {
        const char *k;
        uint32_t k_len;
        if (hop_mp_str(&mp, &k, &k_len) == 0) {
            if (k_len == key_len && memcmp(k, key, key_len) == 0) {
                *value = mp;
                return true;
            }
        } else if (hop_mp_skip(&mp))
            return false;
        if (hop_mp_skip(&mp))
            return false;
    }
    return false;
}

bool
harness_map_uint(const void *data, size_t size, const char *key, uint64_t *out)
{
    hop_mp_t v;
    return harness_map_find(data, size, key, &v) && hop_mp_uint(&v, out) == 0;
}

bool
harness_map_bool(const void *data, size_t size, const char *key, bool *out)
{
    hop_mp_t v;
    return harness_map_find(data, size, key, &v) && hop_mp_bool(&v, out) == 0;
}

bool
harness_map_str(const void *data, size_t size, const char *key, char *out, size_t out_size)
{
    hop_mp_t v;
    const char *s;
    uint32_t len;
    if (!harness_map_find(data, size, key, &v) || hop_mp_str(&v, &s, &len))
        return false;
    if (out_size) {
        size_t n = len < out_size - 1 ? len : out_size - 1;
        memcpy(out, s, n);
        out[n] = '\0';
    }
    return true;
}

long
harness_items_count(const void *items, size_t size)
{
    hop_mp_t mp;
    hop_mp_init(&mp, items, size);
    uint32_t count;
    if (!items || hop_mp_array(&mp, &count))
        return -1;
    return (long)count;
}

bool
harness_items_find(const void *items, size_t size, const char *key, const char *value,
                   const void **map, size_t *map_size)
{
    hop_mp_t mp;
    hop_mp_init(&mp, items, size);
    uint32_t count;
    if (!items || hop_mp_array(&mp, &count))
        return false;
    size_t value_len = strlen(value);
    for (uint32_t i = 0; i < count; i++) {
        const uint8_t *start = mp.p;
        if (hop_mp_skip(&mp))
            return false;
        size_t len = (size_t)(mp.p - start);
        hop_mp_t v;
        const char *s;
        uint32_t s_len;
        if (harness_map_find(start, len, key, &v) && hop_mp_str(&v, &s, &s_len) == 0 &&
            s_len == value_len && memcmp(s, value, value_len) == 0) {
            *map = start;
            *map_size = len;
            return true;
        }
    }
    return false;
}

bool
harness_items_uint(const void *items, size_t size, const char *key, const char *value,
                   const char *field, uint64_t *out)
{
    const void *map;
    size_t map_size;
    return harness_items_find(items, size, key, value, &map, &map_size) &&
           harness_map_uint(map, map_size, field, out);
}

int
harness_broker_finish(harness_broker_t **self_p)
{
    if (!self_p || !*self_p)
        return 0;
    int rc = 0;
    if (!harness_broker_alive(*self_p)) {
        fprintf(stderr, "teardown: hopperd is not running any more\n");
        harness_broker_dump_log(*self_p, stderr);
        rc = -1;
    } else if (harness_broker_stop(*self_p, HARNESS_STOP_TIMEOUT_MS) != 0) {
        fprintf(stderr, "teardown: hopperd did not exit cleanly\n");
        rc = -1;
    }
    harness_broker_destroy(self_p);
    return rc;
}
