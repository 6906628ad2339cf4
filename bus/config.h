// bus/config.h - hopperd's settings, from a config file (`key = value` lines) and from flags.
// Both go through hop_config_set, so a value means the same thing in either place; keys are
// the flags' names without the dashes (bind, data-dir, fsync, heartbeat, ...).
#ifndef HOP_CONFIG_H_INCLUDED
#define HOP_CONFIG_H_INCLUDED

#include "broker.h"

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

typedef struct hop_config hop_config_t;

hop_config_t *hop_config_new(void);
void hop_config_destroy(hop_config_t **self_p);

// Sets key to the text of value, checked as the flag of that name checks it ("every MS" for
// fsync). A later set of the same key wins. Returns 0, or -1 with the reason in err.
int hop_config_set(hop_config_t *self, const char *key, const char *value, char *err,
                   size_t err_size);
// Reads a config file: one `key = value` per line; blank lines and lines starting with '#'
// are skipped; a value may end with a `# comment` after a space. Stops at the first bad line.
// Returns 0, or -1 with "PATH:LINE: reason" (or "PATH: reason" when unreadable) in err.
int hop_config_load(hop_config_t *self, const char *path, char *err, size_t err_size);

// The settings for hop_broker_new; its strings are borrowed from self.
const hop_broker_config_t *hop_config_broker(const hop_config_t *self);
// The log level set (HOP_ERROR..HOP_DEBUG), or -1 when none was.
int hop_config_log_level(const hop_config_t *self);

// Parses a metrics address: "HOST:PORT", "[IPV6]:PORT" or "PORT" (then 127.0.0.1). HOST is an
// IP literal or "localhost"; no name lookup. PORT 0 picks a free port. Sets *loopback when the
// address is a loopback one. Returns 0, or -1 with the reason in err.
int hop_config_address(const char *text, struct sockaddr_storage *addr, socklen_t *addr_len,
                       bool *loopback, char *err, size_t err_size);

#endif
