// tests/unit/test_config.c - hopperd's config file and flag values (bus/config.h): every key,
// comments, later settings winning, bad lines refused with their number, metrics addresses.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "store.h"
#include "util.h"

static char s_path[64];

// Writes text to a fresh temporary file, whose name is left in s_path.
static const char *
s_file(const char *text)
{
    strcpy(s_path, "/tmp/hop_test_config_XXXXXX");
    int fd = mkstemp(s_path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return s_path;
}

static int
s_load(hop_config_t *config, const char *text, char *err, size_t err_size)
{
    int rc = hop_config_load(config, s_file(text), err, err_size);
    unlink(s_path);
    return rc;
}

static void
test_every_key_is_read(void **state)
{
    (void)state;
    hop_config_t *config = hop_config_new();
    char err[512] = "";
    int rc = s_load(config,
                    "# hopperd.conf\n"
                    "\n"
                    "bind = tcp://127.0.0.1:7000\n"
                    "  data-dir=/var/lib/hopper  \n"
                    "fsync = every 20\n"
                    "segment-size = 65536\n"
                    "heartbeat = 2000\n"
                    "max-message = 1024 # bytes\n"
                    "sndhwm = 500\n"
                    "ack-timeout = 60000\n"
                    "flow-messages = 100\n"
                    "flow-bytes = 0\n"
                    "log-level = debug\n"
                    "metrics = 127.0.0.1:15680\n",
                    err, sizeof err);
    assert_int_equal(rc, 0);
    const hop_broker_config_t *c = hop_config_broker(config);
    assert_string_equal(c->bind, "tcp://127.0.0.1:7000");
    assert_string_equal(c->data_dir, "/var/lib/hopper");
    assert_int_equal(c->fsync, HOP_FSYNC_EVERY);
    assert_int_equal(c->fsync_ms, 20);
    assert_int_equal(c->segment_size, 65536);
    assert_int_equal(c->heartbeat_ms, 2000);
    assert_int_equal(c->max_message, 1024);
    assert_int_equal(c->sndhwm, 500);
    assert_int_equal(c->ack_timeout_ms, 60000);
    assert_int_equal(c->flow_messages, 100);
    assert_true(c->flow_bytes == UINT64_MAX); // 0 turns it off
    assert_int_equal(hop_config_log_level(config), HOP_DEBUG);
    assert_string_equal(c->metrics, "127.0.0.1:15680");
    hop_config_destroy(&config);
    assert_null(config);
}

static void
test_unset_keys_stay_default(void **state)
{
    (void)state;
    hop_config_t *config = hop_config_new();
    char err[512];
    assert_int_equal(s_load(config, "# nothing but a comment\n\n   \n", err, sizeof err), 0);
    const hop_broker_config_t *c = hop_config_broker(config);
    assert_null(c->bind);
    assert_null(c->data_dir);
    assert_null(c->metrics);
    assert_int_equal(c->heartbeat_ms, 0);
    assert_int_equal(hop_config_log_level(config), -1);
    hop_config_destroy(&config);
}

static void
test_later_setting_wins(void **state)
{
    (void)state;
    hop_config_t *config = hop_config_new();
    char err[512];
    assert_int_equal(
        s_load(config, "heartbeat = 2000\ndata-dir = /a\nfsync = never\n", err, sizeof err), 0);
    // As main.c applies flags after the file.
    assert_int_equal(hop_config_set(config, "heartbeat", "3000", err, sizeof err), 0);
    assert_int_equal(hop_config_set(config, "data-dir", "/b", err, sizeof err), 0);
    assert_int_equal(hop_config_set(config, "fsync", "always", err, sizeof err), 0);
    const hop_broker_config_t *c = hop_config_broker(config);
    assert_int_equal(c->heartbeat_ms, 3000);
    assert_string_equal(c->data_dir, "/b");
    assert_int_equal(c->fsync, HOP_FSYNC_ALWAYS);
    hop_config_destroy(&config);
}

static void
test_bad_value_names_line(void **state)
{
    (void)state;
    hop_config_t *config = hop_config_new();
    char err[512];
    assert_int_equal(
        s_load(config, "# ok\nbind = tcp://127.0.0.1:1\nheartbeat = fast\n", err, sizeof err), -1);
    char want[128];
    snprintf(want, sizeof want, "%s:3: heartbeat needs a number", s_path);
    assert_non_null(strstr(err, want));
    assert_non_null(strstr(err, "'fast'"));
    hop_config_destroy(&config);
}

static void
test_unknown_key_refused(void **state)
{
    (void)state;
    hop_config_t *config = hop_config_new();
    char err[512];
    assert_int_equal(s_load(config, "bind = tcp://127.0.0.1:1\nport = 5\n", err, sizeof err), -1);
    assert_non_null(strstr(err, ":2: unknown key 'port'"));
    hop_config_destroy(&config);
}

static void
test_line_without_equals_refused(void **state)
{
    (void)state;
    hop_config_t *config = hop_config_new();
    char err[512];
    assert_int_equal(s_load(config, "heartbeat 2000\n", err, sizeof err), -1);
    assert_non_null(strstr(err, ":1: expected 'key = value'"));
    assert_int_equal(s_load(config, "= 5\n", err, sizeof err), -1);
    assert_non_null(strstr(err, ":1: missing key"));
    assert_int_equal(s_load(config, "\n\nbind =   # nothing\n", err, sizeof err), -1);
    assert_non_null(strstr(err, ":3: bind needs a value"));
    hop_config_destroy(&config);
}

static void
test_bad_enums_and_ranges_refused(void **state)
{
    (void)state;
    hop_config_t *config = hop_config_new();
    char err[512];
    assert_int_equal(hop_config_set(config, "fsync", "sometimes", err, sizeof err), -1);
    assert_int_equal(hop_config_set(config, "fsync", "every", err, sizeof err), -1);
    assert_int_equal(hop_config_set(config, "fsync", "every 0", err, sizeof err), -1);
    assert_int_equal(hop_config_set(config, "log-level", "loud", err, sizeof err), -1);
    assert_int_equal(hop_config_set(config, "heartbeat", "99", err, sizeof err), -1);
    assert_int_equal(hop_config_set(config, "heartbeat", "-1000", err, sizeof err), -1);
    assert_int_equal(hop_config_set(config, "sndhwm", "0", err, sizeof err), -1);
    assert_int_equal(hop_config_set(config, "ack-timeout", "999", err, sizeof err), -1);
    assert_int_equal(hop_config_set(config, "segment-size", "4095", err, sizeof err), -1);
    assert_int_equal(hop_config_set(config, "segment-size", "1073741825", err, sizeof err), -1);
    assert_int_equal(hop_config_set(config, "metrics", "example.com:80", err, sizeof err), -1);
    assert_non_null(strstr(err, "no name lookups"));
    assert_int_equal(hop_config_set(config, "metrics", "127.0.0.1:65536", err, sizeof err), -1);
    hop_config_destroy(&config);
}

static void
test_hash_inside_value_is_kept(void **state)
{
    (void)state;
    hop_config_t *config = hop_config_new();
    char err[512];
    assert_int_equal(s_load(config, "data-dir = /srv/a#b # the store\n", err, sizeof err), 0);
    assert_string_equal(hop_config_broker(config)->data_dir, "/srv/a#b");
    hop_config_destroy(&config);
}

static void
test_missing_file_refused(void **state)
{
    (void)state;
    hop_config_t *config = hop_config_new();
    char err[512];
    assert_int_equal(hop_config_load(config, "/nonexistent/hopperd.conf", err, sizeof err), -1);
    assert_non_null(strstr(err, "/nonexistent/hopperd.conf: No such file"));
    hop_config_destroy(&config);
}

static void
test_metrics_addresses(void **state)
{
    (void)state;
    struct sockaddr_storage addr;
    socklen_t len;
    bool loopback;
    char err[256];
    assert_int_equal(hop_config_address("127.0.0.1:15680", &addr, &len, &loopback, err, 256), 0);
    assert_true(loopback);
    assert_int_equal(addr.ss_family, AF_INET);
    assert_int_equal(hop_config_address("15680", &addr, &len, &loopback, err, 256), 0);
    assert_true(loopback); // a bare port never means every interface
    assert_int_equal(hop_config_address(":0", &addr, &len, &loopback, err, 256), 0);
    assert_true(loopback);
    assert_int_equal(hop_config_address("localhost:1", &addr, &len, &loopback, err, 256), 0);
    assert_true(loopback);
    assert_int_equal(hop_config_address("[::1]:9", &addr, &len, &loopback, err, 256), 0);
    assert_true(loopback);
    assert_int_equal(addr.ss_family, AF_INET6);
    // Other addresses are served only because they were spelled out (and then warned about).
    assert_int_equal(hop_config_address("0.0.0.0:15680", &addr, &len, &loopback, err, 256), 0);
    assert_false(loopback);
    assert_int_equal(hop_config_address("[::]:15680", &addr, &len, &loopback, err, 256), 0);
    assert_false(loopback);
    assert_int_equal(hop_config_address("10.0.0.1:x", &addr, &len, &loopback, err, 256), -1);
    assert_int_equal(hop_config_address("::1:80", &addr, &len, &loopback, err, 256), -1);
    assert_int_equal(hop_config_address("", &addr, &len, &loopback, err, 256), -1);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_key_is_read),
        cmocka_unit_test(test_unset_keys_stay_default),
        cmocka_unit_test(test_later_setting_wins),
        cmocka_unit_test(test_bad_value_names_line),
        cmocka_unit_test(test_unknown_key_refused),
        cmocka_unit_test(test_line_without_equals_refused),
        cmocka_unit_test(test_bad_enums_and_ranges_refused),
        cmocka_unit_test(test_hash_inside_value_is_kept),
        cmocka_unit_test(test_missing_file_refused),
        cmocka_unit_test(test_metrics_addresses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
