// bus/util.c - logging, allocation and clocks.
#include "util.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

hop_level_t hop_log_level = HOP_INFO;

static const char *s_level_names[] = {"error", "warn", "info", "debug"};

int
hop_log_level_parse(const char *name)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(name, s_level_names[i]) == 0)
            return i;
    return -1;
}

void
hop_log_write(hop_level_t level, const char *component, const char *fmt, ...)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char line[1024];
    int n = snprintf(line, sizeof line,
                     "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %-5s %s: ", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     ts.tv_nsec / 1000000, s_level_names[level], component);
    va_list ap;
    va_start(ap, fmt);
    if (n > 0 && (size_t)n < sizeof line)
        vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    // One write per line so that lines from a crash or a pipe never interleave.
    size_t len = strnlen(line, sizeof line - 2);
    line[len++] = '\n';
    if (write(STDERR_FILENO, line, len) < 0) {
        // Nowhere left to report a failing stderr.
    }
}

static void
s_oom(size_t size)
{
    fprintf(stderr, "hopperd: out of memory allocating %zu bytes\n", size);
    abort();
}

void *
hop_malloc(size_t size)
{
    void *p = malloc(size ? size : 1);
    if (!p)
        s_oom(size);
    return p;
}

void *
hop_calloc(size_t count, size_t size)
{
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p)
        s_oom(count * size);
    return p;
}

void *
hop_realloc(void *ptr, size_t size)
{
    void *p = realloc(ptr, size ? size : 1);
    if (!p)
        s_oom(size);
    return p;
}

char *
hop_strndup(const char *str, size_t len)
{
    char *s = hop_malloc(len + 1);
    if (len)
        memcpy(s, str, len);
    s[len] = '\0';
    return s;
}

// Microseconds on clock id: the one place the clocks are read.
static uint64_t
s_clock_us(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

uint64_t
hop_now_us(void)
{
    return s_clock_us(CLOCK_MONOTONIC);
}

uint64_t
hop_now_ms(void)
{
    return s_clock_us(CLOCK_MONOTONIC) / 1000;
}

uint64_t
hop_wall_ms(void)
{
    return s_clock_us(CLOCK_REALTIME) / 1000;
}

uint64_t
hop_rss_bytes(void)
{
    // Opened once and re-read: a broker out of file descriptors must still report its memory.
    static int fd = -1;
    if (fd < 0 && (fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC)) < 0)
        return 0;
    char buf[128];
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    unsigned long size = 0, resident = 0;
    if (sscanf(buf, "%lu %lu", &size, &resident) != 2)
        return 0;
    return (uint64_t)resident * (uint64_t)sysconf(_SC_PAGESIZE);
}
