// cli/messages.c - the commands that take messages: consume, subscribe and get, peek (which
// only looks at them), and how a delivery is printed (publish is in publish.c).
//
// A delivery prints as one line, so that `hopper consume q | while read ...` works:
//   human:  [EXCHANGE -> ROUTING_KEY] tag=N redelivered=yes|no count=N [priority=P]
//           [deaths=REASON:QUEUE:COUNT,...] BODY
//   (peek: no tag, and cut=SHOWN/WHOLE before a body the broker sent only the start of)
//   --json: one JSON object per line (JSON Lines), see s_delivery_json.
// The body is read, in this order: as msgpack when content_type says so and it decodes; as
// text when it is valid UTF-8; as msgpack when it is exactly one msgpack value; else as bytes.
// Text comes before the msgpack guess because short text is often valid msgpack too ("5" is
// the integer 53), while msgpack maps, arrays and strings start with bytes that UTF-8 forbids.
#include "cli.h"
#include "json.h"

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum {
    S_OPT_COUNT = 1,
    S_OPT_PREFETCH,
    S_OPT_NO_ACK,
    S_OPT_IDLE_TIMEOUT,
    S_OPT_NACK,
    S_OPT_REJECT,
    S_OPT_REQUEUE,
    S_OPT_EXCLUSIVE,
    S_OPT_RETRY_IN,
    S_OPT_ACK_TIMEOUT,
};

// Where a printed delivery came from: what its line shows differs a little.
typedef enum {
    S_FROM_CONSUME, // a consumer's: consumer tag and delivery tag
    S_FROM_GET,     // get: delivery tag and message_count, no consumer
    S_FROM_PEEK,    // peek: no tag (nothing was delivered), message_count, cut bodies
} s_from_t;

#define S_POLL_MS          200 // how often a waiting consumer looks at the stop flag
#define S_DEFAULT_PREFETCH 100
#define S_EXACT_COUNT      100  // --count up to this: prefetch 1 (see hop_cli_consume)
#define S_MIN_ACK_TIMEOUT  1000 // ms; the broker refuses shorter ack deadlines

// ---------------------------------------------------------------------------------------
// Printing deliveries

static bool
s_is_msgpack_type(const char *content_type)
{
    static const char *const types[] = {"application/msgpack", "application/x-msgpack"};
    for (size_t i = 0; content_type && i < sizeof types / sizeof types[0]; i++) {
        size_t len = strlen(types[i]);
        if (strncmp(content_type, types[i], len) == 0 &&
            (content_type[len] == '\0' || content_type[len] == ';'))
            return true;
    }
    return false;
}

// Returns the body as a new JSON value; *encoding says how it was read: "msgpack", "text"
// (a string) or "base64" (a string of the bytes in base64).
static json_t *
s_body_json(const hop_delivery_t *delivery, const char **encoding)
{
    const void *body = delivery->body_size ? delivery->body : "";
    size_t size = delivery->body_size;
    json_t *value;
    if (s_is_msgpack_type(delivery->props.content_type) &&
        (value = hop_json_from_msgpack(body, size))) {
        *encoding = "msgpack";
        return value;
    }
    if (hop_json_utf8_valid(body, size)) {
        *encoding = "text";
        return hop_json_text(body, size);
    }
    if ((value = hop_json_from_msgpack(body, size))) {
        *encoding = "msgpack";
        return value;
    }
    *encoding = "base64";
    return hop_json_base64(body, size);
}

static void
s_set_text(json_t *object, const char *key, const char *value)
{
    if (value)
        json_object_set_new(object, key, hop_json_text(value, strlen(value)));
}

// The props as received (minus headers, printed on their own), or as the SDK parsed them.
static json_t *
s_properties_json(const hop_delivery_t *delivery)
{
    json_t *props = NULL;
    if (delivery->props_raw && delivery->props_raw_size)
        props = hop_json_from_msgpack(delivery->props_raw, delivery->props_raw_size);
    if (json_is_object(props)) {
        json_object_del(props, "headers");
        return props;
    }
    json_decref(props);
    props = json_object();
    const hop_props_t *p = &delivery->props;
    s_set_text(props, "content_type", p->content_type);
    s_set_text(props, "content_encoding", p->content_encoding);
    s_set_text(props, "message_id", p->message_id);
    s_set_text(props, "correlation_id", p->correlation_id);
    s_set_text(props, "reply_to", p->reply_to);
    s_set_text(props, "type", p->type);
    s_set_text(props, "app_id", p->app_id);
    if (p->timestamp)
        json_object_set_new(props, "timestamp", json_integer((json_int_t)p->timestamp));
    return props;
}

static json_t *
s_headers_json(const hop_delivery_t *delivery)
{
    json_t *headers = NULL;
    if (delivery->headers_raw && delivery->headers_raw_size)
        headers = hop_json_from_msgpack(delivery->headers_raw, delivery->headers_raw_size);
    if (json_is_object(headers))
        return headers;
    json_decref(headers);
    headers = json_object();
    for (size_t i = 0; i < delivery->props.header_count; i++)
        s_set_text(headers, delivery->props.headers[i].key, delivery->props.headers[i].value);
    return headers;
}

// The death records of a dead-lettered message, newest first: [{reason, queue, exchange,
// routing_key, time, count}, ...].
static json_t *
s_deaths_json(const hop_delivery_t *delivery)
{
    json_t *deaths = json_array();
    for (size_t i = 0; i < delivery->death_count; i++) {
        const hop_death_t *death = &delivery->deaths[i];
        json_t *record = json_object();
        s_set_text(record, "reason", death->reason ? death->reason : "");
        s_set_text(record, "queue", death->queue ? death->queue : "");
        s_set_text(record, "exchange", death->exchange ? death->exchange : "");
        s_set_text(record, "routing_key", death->routing_key ? death->routing_key : "");
        json_object_set_new(record, "time", json_integer((json_int_t)death->time));
        json_object_set_new(record, "count", json_integer((json_int_t)death->count));
        json_array_append_new(deaths, record);
    }
    return deaths;
}

// One delivery as a JSON object: consumer (consume only), exchange, routing_key, delivery_tag
// (not for peek), redelivered, delivery_count, message_count (get and peek), priority and deaths
// (when present), headers, properties, body and body_encoding, and for peek body_size and
// body_truncated (the body holds only the first bytes).
static json_t *
s_delivery_json(const hop_delivery_t *delivery, s_from_t from)
{
    const char *encoding;
    json_t *body = s_body_json(delivery, &encoding);
    json_t *object = json_object();
    if (from == S_FROM_CONSUME && delivery->consumer)
        s_set_text(object, "consumer", delivery->consumer);
    s_set_text(object, "exchange", delivery->exchange ? delivery->exchange : "");
    s_set_text(object, "routing_key", delivery->routing_key ? delivery->routing_key : "");
    if (from != S_FROM_PEEK)
        json_object_set_new(object, "delivery_tag", json_integer((json_int_t)delivery->tag));
    json_object_set_new(object, "redelivered", json_boolean(delivery->redelivered));
    json_object_set_new(object, "delivery_count", json_integer(delivery->delivery_count));
    if (from != S_FROM_CONSUME)
        json_object_set_new(object, "message_count",
                            json_integer((json_int_t)delivery->message_count));
    if (delivery->priority)
        json_object_set_new(object, "priority", json_integer(delivery->priority));
    if (delivery->death_count)
        json_object_set_new(object, "deaths", s_deaths_json(delivery));
    json_object_set_new(object, "headers", s_headers_json(delivery));
    json_object_set_new(object, "properties", s_properties_json(delivery));
    json_object_set_new(object, "body", body);
    json_object_set_new(object, "body_encoding", json_string(encoding));
    if (from == S_FROM_PEEK) {
        size_t whole = delivery->body_whole_size;
        json_object_set_new(object, "body_size", json_integer((json_int_t)whole));
        json_object_set_new(object, "body_truncated", json_boolean(whole > delivery->body_size));
    }
    return object;
}

// True when text prints as one clean line: no control characters but tab.
static bool
s_is_printable(const char *text, size_t size)
{
    for (size_t i = 0; i < size; i++) {
        unsigned char c = (unsigned char)text[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return false;
    }
    return size > 0;
}

// Prints a delivery on one line of stdout and flushes. Returns 0, or -1 when stdout failed.
static int
s_print_delivery(const hop_cli_t *cli, const hop_delivery_t *delivery, s_from_t from)
{
    if (cli->json) {
        json_t *object = s_delivery_json(delivery, from);
        char *text = json_dumps(object, JSON_COMPACT | JSON_REAL_PRECISION(17));
        json_decref(object);
        if (text)
            puts(text);
        free(text);
    } else {
        const char *encoding;
        json_t *body = s_body_json(delivery, &encoding);
        const char *exchange =
            delivery->exchange && *delivery->exchange ? delivery->exchange : "(default)";
        printf("[%s -> %s] ", exchange, delivery->routing_key ? delivery->routing_key : "");
        if (from != S_FROM_PEEK)
            printf("tag=%llu ", (unsigned long long)delivery->tag);
        printf("redelivered=%s count=%lu ", delivery->redelivered ? "yes" : "no",
               (unsigned long)delivery->delivery_count);
        if (delivery->priority)
            printf("priority=%u ", (unsigned)delivery->priority);
        for (size_t i = 0; i < delivery->death_count; i++) {
            const hop_death_t *death = &delivery->deaths[i];
            printf("%s%s:%s:%llu", i ? "," : "deaths=", death->reason ? death->reason : "",
                   death->queue ? death->queue : "", (unsigned long long)death->count);
        }
        if (delivery->death_count)
            putchar(' ');
        if (from == S_FROM_PEEK && delivery->body_whole_size > delivery->body_size)
            printf("cut=%zu/%zu ", delivery->body_size, delivery->body_whole_size);
        if (strcmp(encoding, "base64") == 0) {
            // Hex reads better than base64 in a terminal; --json gives base64.
            const unsigned char *bytes = delivery->body;
            fputs("hex:", stdout);
            for (size_t i = 0; i < delivery->body_size; i++)
                printf("%02x", bytes[i]);
            putchar('\n');
        } else if (strcmp(encoding, "text") == 0 &&
                   s_is_printable(json_string_value(body), json_string_length(body))) {
            fwrite(json_string_value(body), 1, json_string_length(body), stdout);
            putchar('\n');
        } else {
            // msgpack as compact JSON; text with newlines or control bytes as a JSON string
            char *text = json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(17));
            puts(text ? text : "null");
            free(text);
        }
        json_decref(body);
    }
    return fflush(stdout) == 0 && !ferror(stdout) ? 0 : -1;
}

// Reports a failed write to stdout; a reader that went away (| head) is a normal end.
static int
s_output_failed(void)
{
    int err = errno;
    clearerr(stdout); // reported here, not again by main
    if (err == EPIPE)
        return HOP_EXIT_OK;
    fprintf(stderr, "hopper: cannot write to stdout: %s\n", strerror(err));
    return HOP_EXIT_REFUSED;
}

// ---------------------------------------------------------------------------------------
// Settling: --no-ack, --nack, --reject, --requeue, --retry-in (consume and get)

typedef enum {
    S_SETTLE_ACK,
    S_SETTLE_NACK,
    S_SETTLE_REJECT,
    S_SETTLE_RETRY,
    S_SETTLE_NONE
} s_settle_how_t;

typedef struct {
    s_settle_how_t how;
    bool requeue;      // with nack/reject
    uint64_t retry_ms; // with retry: ready again after this long
} s_settle_t;

static int
s_parse_settle(hop_cli_t *cli, const hop_cli_parsed_t *parsed, s_settle_t *settle)
{
    bool nack = parsed->set[S_OPT_NACK];
    bool reject = parsed->set[S_OPT_REJECT];
    bool retry = parsed->set[S_OPT_RETRY_IN];
    memset(settle, 0, sizeof *settle);
    settle->requeue = parsed->set[S_OPT_REQUEUE];
    if (nack + reject + retry > 1)
        return hop_cli_usage(cli, "choose one of --nack, --reject and --retry-in");
    if (parsed->set[S_OPT_NO_ACK] && (nack || reject || retry))
        return hop_cli_usage(cli, "with --no-ack the broker settles each message as it sends "
                                  "it; drop --nack/--reject/--retry-in, or drop --no-ack");
    if (settle->requeue && !nack && !reject)
        return hop_cli_usage(cli, "--requeue goes with --nack or --reject (--retry-in requeues "
                                  "by itself)");
    if (retry) {
        long ms;
        if (hop_cli_number(cli, "--retry-in", parsed->value[S_OPT_RETRY_IN], 0, LONG_MAX, &ms) !=
            HOP_EXIT_OK)
            return HOP_EXIT_USAGE;
        settle->retry_ms = (uint64_t)ms;
    }
    settle->how = nack                        ? S_SETTLE_NACK
                  : reject                    ? S_SETTLE_REJECT
                  : retry                     ? S_SETTLE_RETRY
                  : parsed->set[S_OPT_NO_ACK] ? S_SETTLE_NONE
                                              : S_SETTLE_ACK;
    return HOP_EXIT_OK;
}

static int
s_settle(hop_client_t *client, const s_settle_t *settle, uint64_t tag)
{
    switch (settle->how) {
    case S_SETTLE_ACK:
        return hop_client_ack(client, tag, false);
    case S_SETTLE_NACK:
        return hop_client_nack(client, tag, false, settle->requeue);
    case S_SETTLE_REJECT:
        return hop_client_reject(client, tag, settle->requeue);
    case S_SETTLE_RETRY:
        return hop_client_retry_later(client, tag, settle->retry_ms);
    case S_SETTLE_NONE:
        break;
    }
    return HOP_OK;
}

// ---------------------------------------------------------------------------------------
// Consuming: consume and subscribe

static volatile sig_atomic_t s_stop;

static void
s_on_signal(int signum)
{
    if (s_stop)
        _exit(128 + signum); // a second Ctrl-C while we wind down: stop at once
    s_stop = 1;
}

// Blocks SIGINT/SIGTERM so that the threads the SDK starts inherit the mask and the handler
// runs on this thread only; s_catch_signals installs it and unblocks.
static void
s_block_signals(sigset_t *old)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, old);
}

static void
s_catch_signals(const sigset_t *old)
{
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = s_on_signal;
    sigemptyset(&action.sa_mask);
    sigaction(SIGINT, &action, NULL);
    sigaction(SIGTERM, &action, NULL);
    pthread_sigmask(SIG_SETMASK, old, NULL);
}

static int64_t
s_now_ms(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

typedef struct {
    hop_cli_t *cli;
    hop_client_t *client;
    const char *source;  // "queue 'jobs'", for messages
    long count;          // stop after this many messages (0: no limit)
    long idle_ms;        // stop after this long without one (0: never)
    s_settle_t settle;   // what to do with each message once printed
    bool ack_on_arrival; // ack before printing (see hop_cli_consume)
} s_consumer_t;

// A message we held past its ack deadline went back to the queue (or was dead-lettered); our
// settle of it will be refused. Say so now, while it is clear which message it was.
static void
s_on_revoked(hop_client_t *client, const char *consumer, uint64_t tag, void *arg)
{
    (void)client;
    s_consumer_t *self = arg;
    fprintf(stderr,
            "hopper: warning: the broker revoked message tag=%llu of consumer %s on %s: it was "
            "not settled within its ack deadline, so it went back to the queue (or was "
            "dead-lettered). Raise --ack-timeout if handling takes this long\n",
            (unsigned long long)tag, consumer ? consumer : "", self->source);
}

// True when stdout is a pipe whose reader has gone (hopper consume q | head -1): stop now
// rather than at the next message's failed write, which may never come.
static bool
s_reader_gone(void)
{
    struct pollfd out = {.fd = STDOUT_FILENO, .events = POLLOUT};
    return poll(&out, 1, 0) == 1 && (out.revents & (POLLERR | POLLHUP));
}

// Receives, prints and settles one delivery, waiting up to wait ms. Returns HOP_EXIT_OK with
// *got telling whether a message came, or the exit code to stop with.
static int
s_consume_one(s_consumer_t *self, int wait, bool *got)
{
    *got = false;
    hop_delivery_t *delivery = NULL;
    int rc = hop_client_receive(self->client, &delivery, wait);
    if (rc == HOP_ETIMEOUT || (rc != HOP_OK && s_stop)) // a signal may cut the wait short
        return HOP_EXIT_OK;
    if (rc != HOP_OK)
        return hop_cli_fail(self->cli, self->client, rc, NULL, "consume from %s", self->source);
    *got = true;
    if (self->ack_on_arrival)
        rc = hop_client_ack(self->client, delivery->tag, false);
    if (rc == HOP_OK && s_print_delivery(self->cli, delivery, S_FROM_CONSUME) != 0) {
        // Not settled: the message goes back to the queue when we cancel.
        hop_delivery_destroy(&delivery);
        return s_output_failed();
    }
    if (rc == HOP_OK && !self->ack_on_arrival)
        rc = s_settle(self->client, &self->settle, delivery->tag);
    hop_delivery_destroy(&delivery);
    if (rc != HOP_OK)
        return hop_cli_fail(self->cli, self->client, rc, NULL, "settle a message from %s",
                            self->source);
    return HOP_EXIT_OK;
}

// Prints and settles deliveries until the count, the idle timeout, a signal, a reader that
// went away, or an error.
static int
s_consume_loop(s_consumer_t *self)
{
    long received = 0;
    int64_t last = s_now_ms();
    int exit_code = HOP_EXIT_OK;
    while (exit_code == HOP_EXIT_OK && !s_stop && (self->count == 0 || received < self->count)) {
        int wait = S_POLL_MS;
        if (self->idle_ms) {
            int64_t left = last + self->idle_ms - s_now_ms();
            if (left <= 0) {
                if (self->count)
                    fprintf(stderr, "hopper: no message for %ld ms; stopping after %ld of %ld\n",
                            self->idle_ms, received, self->count);
                break;
            }
            if (left < wait)
                wait = (int)left;
        }
        bool got;
        exit_code = s_consume_one(self, wait, &got);
        if (got) {
            received++;
            last = s_now_ms();
        } else if (exit_code == HOP_EXIT_OK && s_reader_gone()) {
            break;
        }
    }
    return exit_code;
}

static const hop_cli_opt_t s_consume_opts[] = {
    {"--count", true, S_OPT_COUNT},
    {"--prefetch", true, S_OPT_PREFETCH},
    {"--no-ack", false, S_OPT_NO_ACK},
    {"--idle-timeout", true, S_OPT_IDLE_TIMEOUT},
    {"--timeout-idle", true, S_OPT_IDLE_TIMEOUT},
    {"--nack", false, S_OPT_NACK},
    {"--reject", false, S_OPT_REJECT},
    {"--requeue", false, S_OPT_REQUEUE},
    {"--exclusive", false, S_OPT_EXCLUSIVE},
    {"--retry-in", true, S_OPT_RETRY_IN},
    {"--ack-timeout", true, S_OPT_ACK_TIMEOUT},
    {NULL, false, 0},
};

// Reads --count and --idle-timeout.
static int
s_parse_limits(hop_cli_t *cli, const hop_cli_parsed_t *parsed, s_consumer_t *consumer)
{
    if (parsed->set[S_OPT_COUNT] && hop_cli_number(cli, "--count", parsed->value[S_OPT_COUNT], 1,
                                                   LONG_MAX, &consumer->count) != HOP_EXIT_OK)
        return HOP_EXIT_USAGE;
    if (parsed->set[S_OPT_IDLE_TIMEOUT] &&
        hop_cli_number(cli, "--idle-timeout", parsed->value[S_OPT_IDLE_TIMEOUT], 1, LONG_MAX,
                       &consumer->idle_ms) != HOP_EXIT_OK)
        return HOP_EXIT_USAGE;
    return HOP_EXIT_OK;
}

int
hop_cli_consume(hop_cli_t *cli, int argc, char **argv)
{
    hop_cli_parsed_t parsed;
    if (hop_cli_parse(cli, argc, argv, s_consume_opts, 1, 1, "QUEUE", &parsed) != HOP_EXIT_OK)
        return HOP_EXIT_USAGE;
    const char *queue = parsed.positional[0];
    s_consumer_t consumer = {.cli = cli};
    long prefetch = S_DEFAULT_PREFETCH;
    if (s_parse_limits(cli, &parsed, &consumer) != HOP_EXIT_OK ||
        s_parse_settle(cli, &parsed, &consumer.settle) != HOP_EXIT_OK)
        return HOP_EXIT_USAGE;
    if (parsed.set[S_OPT_PREFETCH] &&
        hop_cli_number(cli, "--prefetch", parsed.value[S_OPT_PREFETCH], 0, INT32_MAX, &prefetch) !=
            HOP_EXIT_OK)
        return HOP_EXIT_USAGE;
    long ack_timeout = 0;
    if (parsed.set[S_OPT_ACK_TIMEOUT]) {
        if (parsed.set[S_OPT_NO_ACK])
            return hop_cli_usage(cli, "--ack-timeout is the deadline for acknowledging a "
                                      "message; with --no-ack there is none. Drop one of them");
        if (hop_cli_number(cli, "--ack-timeout", parsed.value[S_OPT_ACK_TIMEOUT], S_MIN_ACK_TIMEOUT,
                           LONG_MAX, &ack_timeout) != HOP_EXIT_OK)
            return HOP_EXIT_USAGE;
    }
    int flags = parsed.set[S_OPT_EXCLUSIVE] ? HOP_EXCLUSIVE : 0;
    // Each ack frees credit and the broker fills it at once, so when we stop after --count
    // messages, up to prefetch more have been sent to us: cancelling hands them back flagged
    // redelivered (as in AMQP). For a few messages a prefetch of 1 keeps that to one; for
    // many, the round trip per message would cost more than it saves.
    if (consumer.count && consumer.count <= S_EXACT_COUNT && !parsed.set[S_OPT_PREFETCH])
        prefetch = 1;
    if (consumer.settle.how == S_SETTLE_NONE && consumer.count) {
        // A no-ack consumer gets everything the queue holds at once, and what arrives beyond
        // the count would be lost. Acking on arrival keeps prefetch in force.
        consumer.ack_on_arrival = true;
    } else if (consumer.settle.how == S_SETTLE_NONE) {
        flags |= HOP_NO_ACK;
    }
    char source[HOP_NAME_MAX + 16];
    snprintf(source, sizeof source, "queue '%s'", queue);
    char hint[HOP_NAME_MAX + 64];
    snprintf(hint, sizeof hint, "Declare it first: hopper declare queue %s", queue);
    consumer.source = source;

    sigset_t old;
    s_block_signals(&old);
    int exit_code = hop_cli_connect(cli, &consumer.client);
    if (exit_code != HOP_EXIT_OK) {
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        return exit_code;
    }
    hop_client_on_revoked(consumer.client, s_on_revoked, &consumer);
    char tag[HOP_NAME_MAX + 1] = "";
    int rc = hop_client_consume_ex(consumer.client, queue, NULL, (int)prefetch, flags,
                                   (uint64_t)ack_timeout, tag, sizeof tag);
    s_catch_signals(&old);
    if (rc != HOP_OK) {
        const char *h = NULL;
        switch (hop_client_error_code(consumer.client)) {
        case HOP_CODE_NOT_FOUND:
            h = hint;
            break;
        case HOP_CODE_RESOURCE_LOCKED:
            h = "It is exclusive to another connection";
            break;
        case HOP_CODE_ACCESS_REFUSED:
            h = "Another consumer holds it exclusively, or it has consumers and you asked for "
                "--exclusive (see: hopper list consumers)";
            break;
        }
        exit_code = hop_cli_fail(cli, consumer.client, rc, h, "consume from queue '%s'", queue);
        hop_client_destroy(&consumer.client);
        return exit_code;
    }
    if (isatty(STDERR_FILENO))
        fprintf(stderr, "hopper: consuming from queue '%s' as %s (Ctrl-C to stop)\n", queue, tag);
    exit_code = s_consume_loop(&consumer);
    // Cancelling waits for the broker, so it also reports a refused ack sent before it. Not
    // after the connection was lost (already reported): the call would connect again first,
    // and a broker that is gone would keep us waiting for the whole --timeout.
    if (hop_client_connected(consumer.client)) {
        rc = hop_client_cancel(consumer.client, tag);
        if (rc != HOP_OK && exit_code == HOP_EXIT_OK)
            exit_code = hop_cli_fail(cli, consumer.client, rc, NULL, "cancel consumer %s", tag);
    }
    hop_client_destroy(&consumer.client);
    return exit_code;
}

int
hop_cli_subscribe(hop_cli_t *cli, int argc, char **argv)
{
    static const hop_cli_opt_t opts[] = {
        {"--count", true, S_OPT_COUNT},
        {"--idle-timeout", true, S_OPT_IDLE_TIMEOUT},
        {"--timeout-idle", true, S_OPT_IDLE_TIMEOUT},
        {NULL, false, 0},
    };
    hop_cli_parsed_t parsed;
    if (hop_cli_parse(cli, argc, argv, opts, 1, 2, "EXCHANGE [PATTERN]", &parsed) != HOP_EXIT_OK)
        return HOP_EXIT_USAGE;
    const char *exchange = parsed.positional[0];
    const char *pattern = parsed.positional_count > 1 ? parsed.positional[1] : NULL;
    s_consumer_t consumer = {.cli = cli, .settle = {.how = S_SETTLE_NONE}};
    if (s_parse_limits(cli, &parsed, &consumer) != HOP_EXIT_OK)
        return HOP_EXIT_USAGE;
    char source[HOP_NAME_MAX + 16];
    snprintf(source, sizeof source, "exchange '%s'", exchange);
    consumer.source = source;

    sigset_t old;
    s_block_signals(&old);
    int exit_code = hop_cli_connect(cli, &consumer.client);
    if (exit_code != HOP_EXIT_OK) {
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        return exit_code;
    }
    char queue[HOP_NAME_MAX + 1] = "";
    int rc = hop_client_subscribe(consumer.client, exchange, pattern, queue, sizeof queue);
    s_catch_signals(&old);
    if (rc != HOP_OK) {
        char hint[HOP_NAME_MAX + 64];
        const char *h = NULL;
        if (hop_client_error_code(consumer.client) == HOP_CODE_NOT_FOUND) {
            snprintf(hint, sizeof hint, "Declare it first: hopper declare exchange %s --type topic",
                     exchange);
            h = hint;
        } else if (hop_client_error_code(consumer.client) == HOP_CODE_ACCESS_REFUSED) {
            h = "The default exchange \"\" takes no bindings; consume the queue instead: hopper "
                "consume QUEUE";
        }
        exit_code =
            hop_cli_fail(cli, consumer.client, rc, h, "subscribe to exchange '%s'", exchange);
        hop_client_destroy(&consumer.client);
        return exit_code;
    }
    if (isatty(STDERR_FILENO))
        fprintf(stderr,
                "hopper: subscribed to exchange '%s'%s%s%s through queue %s (Ctrl-C to "
                "stop)\n",
                exchange, pattern ? " with pattern '" : "", pattern ? pattern : "",
                pattern ? "'" : "", queue);
    exit_code = s_consume_loop(&consumer);
    // The subscription queue is exclusive and auto-delete: closing the client removes it.
    hop_client_destroy(&consumer.client);
    return exit_code;
}

int
hop_cli_get(hop_cli_t *cli, int argc, char **argv)
{
    static const hop_cli_opt_t opts[] = {
        {"--no-ack", false, S_OPT_NO_ACK},    {"--nack", false, S_OPT_NACK},
        {"--reject", false, S_OPT_REJECT},    {"--requeue", false, S_OPT_REQUEUE},
        {"--retry-in", true, S_OPT_RETRY_IN}, {NULL, false, 0},
    };
    hop_cli_parsed_t parsed;
    if (hop_cli_parse(cli, argc, argv, opts, 1, 1, "QUEUE", &parsed) != HOP_EXIT_OK)
        return HOP_EXIT_USAGE;
    const char *queue = parsed.positional[0];
    s_settle_t settle;
    if (s_parse_settle(cli, &parsed, &settle) != HOP_EXIT_OK)
        return HOP_EXIT_USAGE;

    hop_client_t *client;
    int exit_code = hop_cli_connect(cli, &client);
    if (exit_code != HOP_EXIT_OK)
        return exit_code;
    hop_delivery_t *delivery = NULL;
    int rc = hop_client_get(client, queue, settle.how == S_SETTLE_NONE ? HOP_NO_ACK : 0, &delivery);
    if (rc == HOP_EEMPTY) {
        fprintf(stderr, "hopper: queue '%s' is empty\n", queue);
    } else if (rc != HOP_OK) {
        char hint[HOP_NAME_MAX + 64];
        const char *h = NULL;
        if (hop_client_error_code(client) == HOP_CODE_NOT_FOUND) {
            snprintf(hint, sizeof hint, "Declare it first: hopper declare queue %s", queue);
            h = hint;
        } else if (hop_client_error_code(client) == HOP_CODE_RESOURCE_LOCKED) {
            h = "It is exclusive to another connection";
        }
        exit_code = hop_cli_fail(cli, client, rc, h, "get from queue '%s'", queue);
    } else if (s_print_delivery(cli, delivery, S_FROM_GET) != 0) {
        exit_code = s_output_failed(); // unsettled: back to the queue when we close
    } else {
        rc = s_settle(client, &settle, delivery->tag);
        if (rc != HOP_OK)
            exit_code = hop_cli_fail(cli, client, rc, NULL, "settle the message");
    }
    hop_delivery_destroy(&delivery);
    hop_client_destroy(&client);
    return exit_code;
}

// ---------------------------------------------------------------------------------------
// Peek

#define S_PEEK_DEFAULT 10
#define S_PEEK_MAX     1000 // what the broker shows at most

int
hop_cli_peek(hop_cli_t *cli, int argc, char **argv)
{
    static const hop_cli_opt_t opts[] = {{"--count", true, S_OPT_COUNT}, {NULL, false, 0}};
    hop_cli_parsed_t parsed;
    if (hop_cli_parse(cli, argc, argv, opts, 1, 1, "QUEUE", &parsed) != HOP_EXIT_OK)
        return HOP_EXIT_USAGE;
    const char *queue = parsed.positional[0];
    long count = S_PEEK_DEFAULT;
    if (parsed.set[S_OPT_COUNT] && hop_cli_number(cli, "--count", parsed.value[S_OPT_COUNT], 1,
                                                  S_PEEK_MAX, &count) != HOP_EXIT_OK)
        return HOP_EXIT_USAGE;

    hop_client_t *client;
    int exit_code = hop_cli_connect(cli, &client);
    if (exit_code != HOP_EXIT_OK)
        return exit_code;
    hop_delivery_t **deliveries = NULL;
    size_t got = 0;
    int rc = hop_client_peek(client, queue, (size_t)count, &deliveries, &got);
    if (rc != HOP_OK) {
        int code = hop_client_error_code(client);
        const char *h = code == HOP_CODE_NOT_FOUND ? "See the queues with: hopper list queues"
                        : code == HOP_CODE_RESOURCE_LOCKED ? "It is exclusive to another connection"
                                                           : NULL;
        exit_code = hop_cli_fail(cli, client, rc, h, "peek at queue '%s'", queue);
    } else {
        for (size_t i = 0; i < got && exit_code == HOP_EXIT_OK; i++)
            if (s_print_delivery(cli, deliveries[i], S_FROM_PEEK) != 0)
                exit_code = s_output_failed();
        uint64_t ready = got ? deliveries[0]->message_count : 0;
        // To stderr: stdout stays one message per line for scripts.
        if (exit_code == HOP_EXIT_OK && !cli->json && got == 0)
            fprintf(stderr, "hopper: queue '%s' has no ready messages\n", queue);
        else if (exit_code == HOP_EXIT_OK && !cli->json && ready > got)
            fprintf(stderr, "hopper: showed %zu of %llu ready messages in '%s'\n", got,
                    (unsigned long long)ready, queue);
    }
    hop_client_peek_free(&deliveries, got);
    hop_client_destroy(&client);
    return exit_code;
}
