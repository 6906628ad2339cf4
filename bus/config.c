// bus/config.c - hopperd's settings from a file and from flags (see config.h).
#include "config.h"
#include "store.h"
#include "util.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct hop_config {
    hop_broker_config_t broker; // what hop_broker_new gets; strings point at the fields below
    char *bind;                 // owned copies of the string settings
    char *data_dir;
    char *metrics;
    int log_level; // -1: not set
};

hop_config_t *
hop_config_new(void)
{
    hop_config_t *self = hop_calloc(1, sizeof *self);
    self->log_level = -1;
    return self;
}

void
hop_config_destroy(hop_config_t **self_p)
{
    assert(self_p);
    hop_config_t *self = *self_p;
    if (!self)
        return;
    free(self->bind);
    free(self->data_dir);
    free(self->metrics);
    free(self);
    *self_p = NULL;
}

const hop_broker_config_t *
hop_config_broker(const hop_config_t *self)
{
    assert(self);
    return &self->broker;
}

int
hop_config_log_level(const hop_config_t *self)
{
    assert(self);
    return self->log_level;
}

static int
s_number(const char *key, const char *text, unsigned long long lo, unsigned long long hi,
         unsigned long long *out, char *err, size_t err_size)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno || *end || end == text || text[0] == '-' || text[0] == '+' || text[0] == ' ' ||
        v < lo || v > hi) {
        snprintf(err, err_size, "%s needs a number from %llu to %llu, got '%s'", key, lo, hi, text);
        return -1;
    }
    *out = v;
    return 0;
}

static void
s_keep(char **slot, const char **field, const char *value)
{
    free(*slot);
    *slot = hop_strndup(value, strlen(value));
    *field = *slot;
}

int
hop_config_address(const char *text, struct sockaddr_storage *addr, socklen_t *addr_len,
                   bool *loopback, char *err, size_t err_size)
{
    assert(text && addr && addr_len && loopback);
    char host[64] = "127.0.0.1";
    const char *port = text;
    const char *colon = strrchr(text, ':');
    if (colon) {
        size_t len = (size_t)(colon - text);
        if (len >= sizeof host) {
            snprintf(err, err_size, "metrics address '%s': host too long", text);
            return -1;
        }
        if (len) { // ":PORT" keeps loopback
            memcpy(host, text, len);
            host[len] = '\0';
        }
        port = colon + 1;
    }
    unsigned long long n;
    char why[128];
    if (s_number("the port", port, 0, 65535, &n, why, sizeof why) < 0) {
        snprintf(err, err_size, "metrics address '%s': %s (use HOST:PORT)", text, why);
        return -1;
    }
    memset(addr, 0, sizeof *addr);
    struct sockaddr_in *v4 = (struct sockaddr_in *)addr;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)addr;
    size_t hlen = strlen(host);
    if (strcmp(host, "localhost") == 0)
        strcpy(host, "127.0.0.1");
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)n);
        *addr_len = sizeof *v4;
        *loopback = (ntohl(v4->sin_addr.s_addr) >> 24) == 127;
        return 0;
    }
    if (hlen > 2 && host[0] == '[' && host[hlen - 1] == ']') {
        host[hlen - 1] = '\0';
        if (inet_pton(AF_INET6, host + 1, &v6->sin6_addr) == 1) {
            v6->sin6_family = AF_INET6;
            v6->sin6_port = htons((uint16_t)n);
            *addr_len = sizeof *v6;
            *loopback = IN6_IS_ADDR_LOOPBACK(&v6->sin6_addr);
            return 0;
        }
    }
    snprintf(err, err_size,
             "metrics address '%s': the host must be an IPv4 address, [IPv6] or localhost "
             "(no name lookups)",
             text);
    return -1;
}

int
hop_config_set(hop_config_t *self, const char *key, const char *value, char *err, size_t err_size)
{
    assert(self && key && value);
    hop_broker_config_t *c = &self->broker;
    unsigned long long n;
    if (strcmp(key, "bind") == 0 || strcmp(key, "data-dir") == 0) {
        if (!*value) {
            snprintf(err, err_size, "%s needs a value", key);
            return -1;
        }
        if (key[0] == 'b')
            s_keep(&self->bind, &c->bind, value);
        else
            s_keep(&self->data_dir, &c->data_dir, value);
    } else if (strcmp(key, "metrics") == 0) {
        struct sockaddr_storage addr;
        socklen_t len;
        bool loopback;
        if (hop_config_address(value, &addr, &len, &loopback, err, err_size) < 0)
            return -1;
        s_keep(&self->metrics, &c->metrics, value);
    } else if (strcmp(key, "heartbeat") == 0) {
        if (s_number(key, value, 100, 60000, &n, err, err_size) < 0)
            return -1;
        c->heartbeat_ms = (uint32_t)n;
    } else if (strcmp(key, "max-message") == 0) {
        if (s_number(key, value, 1, 1ull << 30, &n, err, err_size) < 0)
            return -1;
        c->max_message = (size_t)n;
    } else if (strcmp(key, "sndhwm") == 0) {
        if (s_number(key, value, 1, 10000000, &n, err, err_size) < 0)
            return -1;
        c->sndhwm = (int)n;
    } else if (strcmp(key, "ack-timeout") == 0) {
        if (s_number(key, value, 1000, UINT32_MAX, &n, err, err_size) < 0)
            return -1;
        c->ack_timeout_ms = n;
    } else if (strcmp(key, "flow-messages") == 0 || strcmp(key, "flow-bytes") == 0) {
        if (s_number(key, value, 0, 1ull << 40, &n, err, err_size) < 0)
            return -1;
        uint64_t v = n ? n : UINT64_MAX; // 0 turns it off (0 in the broker config: default)
        if (key[5] == 'm')
            c->flow_messages = v;
        else
            c->flow_bytes = v;
    } else if (strcmp(key, "fsync") == 0) {
        if (strcmp(value, "always") == 0) {
            c->fsync = HOP_FSYNC_ALWAYS;
        } else if (strcmp(value, "never") == 0) {
            c->fsync = HOP_FSYNC_NEVER;
        } else if (strncmp(value, "every ", 6) == 0) {
            const char *ms = value + 6;
            while (*ms == ' ')
                ms++;
            if (s_number("fsync every", ms, 1, 60000, &n, err, err_size) < 0)
                return -1;
            c->fsync = HOP_FSYNC_EVERY;
            c->fsync_ms = (uint32_t)n;
        } else {
            snprintf(err, err_size, "fsync is always, every MS or never; got '%s'", value);
            return -1;
        }
    } else if (strcmp(key, "segment-size") == 0) {
        // The store's own bounds: a header and a record must fit, offsets are 32-bit.
        if (s_number(key, value, 4096, 1u << 30, &n, err, err_size) < 0)
            return -1;
        c->segment_size = (uint32_t)n;
    } else if (strcmp(key, "queue-window") == 0) {
        if (s_number(key, value, 0, 100000000, &n, err, err_size) < 0)
            return -1;
        c->queue_window = n ? (uint32_t)n : UINT32_MAX; // 0 keeps everything in memory
    } else if (strcmp(key, "log-level") == 0) {
        int level = hop_log_level_parse(value);
        if (level < 0) {
            snprintf(err, err_size, "log-level is error, warn, info or debug; got '%s'", value);
            return -1;
        }
        self->log_level = level;
    } else {
        snprintf(err, err_size,
                 "unknown key '%s' (keys: bind, data-dir, fsync, segment-size, queue-window, "
                 "heartbeat, max-message, sndhwm, ack-timeout, flow-messages, flow-bytes, "
                 "log-level, metrics)",
                 key);
        return -1;
    }
    return 0;
}

// Trims spaces and tabs at both ends, in place.
static char *
s_trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t len = strlen(s);
    while (len && (s[len - 1] == ' ' || s[len - 1] == '\t' || s[len - 1] == '\r'))
        s[--len] = '\0';
    return s;
}

static int
s_line(hop_config_t *self, char *line, char *err, size_t err_size)
{
    char *eq = strchr(line, '=');
    if (!eq) {
        snprintf(err, err_size, "expected 'key = value'");
        return -1;
    }
    *eq = '\0';
    char *key = s_trim(line);
    char *value = eq + 1;
    // A comment after the value starts with " #" (a value itself may hold '#', e.g. a path).
    for (char *p = value; *p; p++)
        if (*p == '#' && (p == value || p[-1] == ' ' || p[-1] == '\t')) {
            *p = '\0';
            break;
        }
    value = s_trim(value);
    if (!*key) {
        snprintf(err, err_size, "missing key before '='");
        return -1;
    }
    if (!*value) {
        snprintf(err, err_size, "%s needs a value", key);
        return -1;
    }
    return hop_config_set(self, key, value, err, err_size);
}

int
hop_config_load(hop_config_t *self, const char *path, char *err, size_t err_size)
{
    assert(self && path);
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, err_size, "%s: %s", path, strerror(errno));
        return -1;
    }
    char line[4096];
    char why[512];
    unsigned number = 0;
    int rc = 0;
    while (fgets(line, sizeof line, f)) {
        number++;
        size_t len = strlen(line);
        if (len == sizeof line - 1 && line[len - 1] != '\n' && !feof(f)) {
            snprintf(err, err_size, "%s:%u: line longer than %zu bytes", path, number,
                     sizeof line - 2);
            rc = -1;
            break;
        }
        if (len && line[len - 1] == '\n')
            line[--len] = '\0';
        char *text = s_trim(line);
        if (!*text || *text == '#')
            continue;
        if (s_line(self, text, why, sizeof why) < 0) {
            snprintf(err, err_size, "%s:%u: %s", path, number, why);
            rc = -1;
            break;
        }
    }
    if (rc == 0 && ferror(f)) {
        snprintf(err, err_size, "%s: %s", path, strerror(errno));
        rc = -1;
    }
    fclose(f);
    return rc;
}
