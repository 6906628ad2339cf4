// bus/util.h - logging, allocation and clocks shared by the broker's modules.
#ifndef HOP_UTIL_H_INCLUDED
#define HOP_UTIL_H_INCLUDED

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

typedef enum { HOP_ERROR = 0, HOP_WARN = 1, HOP_INFO = 2, HOP_DEBUG = 3 } hop_level_t;

extern hop_level_t hop_log_level;

// Parses "error", "warn", "info", "debug"; -1 when unknown.
int hop_log_level_parse(const char *name);
// One structured line on stderr: time, level, component, then the formatted text
// (by convention key=value pairs). The level is tested before formatting.
#define hop_log(level, component, ...)                                                             \
    do {                                                                                           \
        if ((level) <= hop_log_level)                                                              \
            hop_log_write((level), (component), __VA_ARGS__);                                      \
    } while (0)
void hop_log_write(hop_level_t level, const char *component, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

// Allocation that aborts on out of memory: limits are checked before calling these.
void *hop_malloc(size_t size);
void *hop_calloc(size_t count, size_t size);
void *hop_realloc(void *ptr, size_t size);
char *hop_strndup(const char *str, size_t len);

// Milliseconds on CLOCK_MONOTONIC, and since the Unix epoch.
uint64_t hop_now_ms(void);
// Microseconds on CLOCK_MONOTONIC, for timings finer than a millisecond (fsync, replay).
uint64_t hop_now_us(void);
uint64_t hop_wall_ms(void);
// Resident set size of this process in bytes (from /proc/self/statm), 0 if unknown.
uint64_t hop_rss_bytes(void);

#endif
