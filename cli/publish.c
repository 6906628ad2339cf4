// cli/publish.c - `hopper publish`: a body from the command line, all of stdin, or one
// message per line of stdin; JSON bodies sent as msgpack; one wait for the broker at the
// end so that an asynchronous refusal is reported before we exit. With --confirm (and
// --mandatory) that wait is for the broker's confirm of every message, and a message it
// refused or returned makes the exit code 1.
#include "cli.h"
#include "json.h"

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum {
    S_OPT_LINES = 1,
    S_OPT_HEADER,
    S_OPT_COUNT,
    S_OPT_REPLY_TO,
    S_OPT_CORRELATION_ID,
    S_OPT_CONTENT_TYPE,
    S_OPT_MESSAGE_ID,
    S_OPT_CONFIRM,
    S_OPT_MANDATORY,
    S_OPT_EXPIRATION,
    S_OPT_PRIORITY,
    S_OPT_PERSISTENT,
};

#define S_MAX_REASONS  4     // distinct refusal reasons named in the summary
#define S_MAX_RETURNED 10    // returned messages reported one by one
#define S_CONFIRM_WAIT 65536 // unconfirmed publishes that make us wait before sending more

// Why the broker refused some messages.
typedef struct {
    int code;
    char text[256];
} s_reason_t;

typedef struct {
    hop_cli_t *cli;
    hop_client_t *client;
    const char *exchange;
    const char *routing_key;
    hop_props_t props;
    long count;              // copies of each message
    msgpack_sbuffer packed;  // a --json body as msgpack, reused
    unsigned long published; // messages sent so far
    hop_publish_opts_t opts; // --mandatory, --persistent, --expiration, --priority
    bool confirm;            // --confirm (or --mandatory): wait for every confirm
    uint64_t refused;        // messages the broker refused (negative confirms)
    s_reason_t reasons[S_MAX_REASONS];
    size_t reason_count;
    uint64_t returned; // mandatory messages that matched no queue
} s_publisher_t;

static const char *
s_publish_hint(const s_publisher_t *self, int code, char *buffer, size_t size)
{
    switch (code) {
    case HOP_CODE_NOT_FOUND:
        snprintf(buffer, size, "Declare it first: hopper declare exchange %s --type direct",
                 self->exchange);
        return buffer;
    case HOP_CODE_CONTENT_TOO_LARGE:
        return "The body is larger than the broker accepts (hopperd --max-message)";
    case HOP_CODE_ACCESS_REFUSED:
        return "That exchange does not accept publishes";
    case HOP_CODE_RESOURCE_ERROR:
        return "Make room in the queue (consume or purge it; see: hopper list queues) or "
               "declare it with a higher --max-length / --max-length-bytes, then publish the "
               "refused messages again";
    default:
        return NULL;
    }
}

static int
s_publish_fail(s_publisher_t *self, int rc)
{
    char hint[HOP_NAME_MAX + 160];
    return hop_cli_fail(
        self->cli, self->client, rc,
        s_publish_hint(self, hop_client_error_code(self->client), hint, sizeof hint),
        "publish to exchange '%s'", self->exchange);
}

// The text of a refusal without the SDK's "broker: 506 resource-error: " prefix.
static const char *
s_refusal_text(int code, const char *text)
{
    if (!text || !*text)
        return code ? hop_code_name(code) : "the connection was lost";
    char prefix[64];
    snprintf(prefix, sizeof prefix, "broker: %d %s: ", code, hop_code_name(code));
    return strncmp(text, prefix, strlen(prefix)) == 0 ? text + strlen(prefix) : text;
}

// Keeps the reason of a negative confirm (one may cover several messages: those lost with a
// connection; hop_client_wait_confirms counts them).
static void
s_on_confirm(hop_client_t *client, uint64_t seq, bool multiple, bool ok, int code, const char *text,
             void *arg)
{
    (void)client;
    (void)seq;
    (void)multiple;
    s_publisher_t *self = arg;
    if (ok)
        return;
    text = s_refusal_text(code, text);
    for (size_t i = 0; i < self->reason_count; i++)
        if (self->reasons[i].code == code && strcmp(self->reasons[i].text, text) == 0)
            return;
    if (self->reason_count < S_MAX_REASONS) {
        s_reason_t *reason = &self->reasons[self->reason_count++];
        reason->code = code;
        snprintf(reason->text, sizeof reason->text, "%s", text);
    }
}

// Reports a mandatory message that matched no queue (the first few one by one).
static void
s_on_return(hop_client_t *client, const hop_delivery_t *returned, int code, const char *text,
            void *arg)
{
    (void)client;
    s_publisher_t *self = arg;
    if (++self->returned > S_MAX_RETURNED)
        return;
    if (text && *text) // the broker's text names the exchange and the key
        fprintf(stderr, "hopper: message returned: %s (%d %s)\n", s_refusal_text(code, text), code,
                hop_code_name(code));
    else
        fprintf(stderr,
                "hopper: message returned: exchange '%s' routed it to no queue (routing key "
                "'%s') (%d %s)\n",
                returned->exchange ? returned->exchange : self->exchange,
                returned->routing_key ? returned->routing_key : self->routing_key, code,
                hop_code_name(code));
}

// Waits for the confirm of every message published so far, as long as confirms keep coming:
// a large batch may take longer than --timeout to confirm in full, but a broker that confirms
// nothing for --timeout ms is reported (exit 3). Refusals are counted in self->refused.
static int
s_confirm_wait(s_publisher_t *self)
{
    uint64_t waiting = hop_client_unconfirmed(self->client);
    for (;;) {
        uint64_t nacked = 0;
        int rc = hop_client_wait_confirms(self->client, self->cli->timeout_ms, &nacked);
        self->refused += nacked;
        if (rc == HOP_OK || rc == HOP_ENACKED)
            return HOP_EXIT_OK;
        uint64_t left = hop_client_unconfirmed(self->client);
        if (rc == HOP_ETIMEOUT && left > 0 && left < waiting) {
            waiting = left; // progress: wait on
            continue;
        }
        if (rc == HOP_ETIMEOUT)
            return hop_cli_fail(self->cli, self->client, rc, NULL, "confirm %llu of %lu messages",
                                (unsigned long long)left, self->published);
        return s_publish_fail(self, rc);
    }
}

// Says what the broker refused or returned: exit 1 if anything, else 0.
static int
s_confirm_report(s_publisher_t *self)
{
    int exit_code = HOP_EXIT_OK;
    if (self->returned > S_MAX_RETURNED)
        fprintf(stderr, "hopper: ... and %llu more messages returned\n",
                (unsigned long long)(self->returned - S_MAX_RETURNED));
    if (self->refused) {
        fprintf(stderr,
                "hopper: cannot publish to exchange '%s': the broker refused %llu of %lu "
                "message%s: ",
                self->exchange, (unsigned long long)self->refused, self->published,
                self->published == 1 ? "" : "s");
        if (self->reason_count == 0) { // no callback for them: take the SDK's summary
            self->reasons[0].code = hop_client_error_code(self->client);
            snprintf(self->reasons[0].text, sizeof self->reasons[0].text, "%s",
                     s_refusal_text(self->reasons[0].code, hop_client_error(self->client)));
            self->reason_count = 1;
        }
        for (size_t i = 0; i < self->reason_count; i++) {
            const s_reason_t *reason = &self->reasons[i];
            fprintf(stderr, "%s%s", i ? "; " : "", reason->text);
            if (reason->code)
                fprintf(stderr, " (%d %s)", reason->code, hop_code_name(reason->code));
        }
        char hint[HOP_NAME_MAX + 200];
        const char *h = self->reasons[0].code
                            ? s_publish_hint(self, self->reasons[0].code, hint, sizeof hint)
                            : "The connection to the broker was lost before it confirmed them: "
                              "publish them again";
        fprintf(stderr, "%s%s\n", h ? ". " : "", h ? h : "");
        exit_code = HOP_EXIT_REFUSED;
    }
    if (self->returned) {
        fprintf(stderr,
                "hopper: %llu of %lu message%s matched no queue and %s returned (--mandatory). ",
                (unsigned long long)self->returned, self->published,
                self->published == 1 ? "" : "s", self->returned == 1 ? "was" : "were");
        if (self->exchange[0] == '\0')
            fprintf(stderr, "There is no queue '%s': declare it first: hopper declare queue %s\n",
                    self->routing_key, self->routing_key);
        else
            fprintf(stderr,
                    "Bind a queue that matches routing key '%s' to exchange '%s' (see: hopper "
                    "list bindings)\n",
                    self->routing_key, self->exchange);
        exit_code = HOP_EXIT_REFUSED;
    }
    return exit_code;
}

// Publishes one body count times, converted to msgpack first under --json. where names the
// body in messages ("" or " on line N").
static int
s_publish_body(s_publisher_t *self, const char *body, size_t size, const char *where)
{
    if (self->cli->json) {
        json_error_t error;
        json_t *json = json_loadb(body, size, JSON_DECODE_ANY | JSON_ALLOW_NUL, &error);
        if (!json && *where) // a line of --lines: jansson's line number is always 1
            return hop_cli_usage(self->cli,
                                 "the body%s is not valid JSON: %s (column %d); drop --json to "
                                 "send it as it is",
                                 where, error.text, error.column);
        if (!json)
            return hop_cli_usage(self->cli,
                                 "the body is not valid JSON: %s (line %d, column %d); drop "
                                 "--json to send it as it is",
                                 error.text, error.line, error.column);
        msgpack_sbuffer_clear(&self->packed);
        int rc = hop_json_to_msgpack(json, &self->packed);
        json_decref(json);
        if (rc)
            return hop_cli_usage(self->cli, "the JSON body%s nests deeper than %d levels", where,
                                 HOP_JSON_DEPTH);
        body = self->packed.data;
        size = self->packed.size;
    }
    for (long i = 0; i < self->count; i++) {
        int rc = hop_client_publish_ex(self->client, self->exchange, self->routing_key, body, size,
                                       &self->props, &self->opts, NULL);
        if (rc != HOP_OK)
            return s_publish_fail(self, rc);
        self->published++;
        // The SDK keeps a flag per unconfirmed publish: settle them now and then.
        if (self->confirm && hop_client_unconfirmed(self->client) >= S_CONFIRM_WAIT &&
            (rc = s_confirm_wait(self)) != HOP_EXIT_OK)
            return rc;
    }
    return HOP_EXIT_OK;
}

// One message per line of stdin, without its line ending. Under --json blank lines are
// skipped (JSON Lines files often end with one).
static int
s_publish_lines(s_publisher_t *self)
{
    char *line = NULL;
    size_t capacity = 0;
    ssize_t len;
    unsigned long number = 0;
    int exit_code = HOP_EXIT_OK;
    while (exit_code == HOP_EXIT_OK && (len = getline(&line, &capacity, stdin)) >= 0) {
        number++;
        if (len > 0 && line[len - 1] == '\n')
            len--;
        if (len > 0 && line[len - 1] == '\r')
            len--;
        if (self->cli->json && strspn(line, " \t") == (size_t)len)
            continue;
        char where[48];
        snprintf(where, sizeof where, " on line %lu", number);
        exit_code = s_publish_body(self, line, (size_t)len, where);
    }
    if (exit_code == HOP_EXIT_OK && ferror(stdin)) {
        fprintf(stderr, "hopper: cannot read stdin: %s\n", strerror(errno));
        exit_code = HOP_EXIT_REFUSED;
    }
    free(line);
    return exit_code;
}

// Reads all of stdin into a new buffer. Returns NULL (and reports) on a read error.
static char *
s_read_stdin(size_t *size_p)
{
    size_t capacity = 4096;
    size_t size = 0;
    char *data = malloc(capacity);
    assert(data);
    size_t n;
    while ((n = fread(data + size, 1, capacity - size, stdin)) > 0) {
        size += n;
        if (size == capacity) {
            capacity *= 2;
            data = realloc(data, capacity);
            assert(data);
        }
    }
    if (ferror(stdin)) {
        fprintf(stderr, "hopper: cannot read stdin: %s\n", strerror(errno));
        free(data);
        return NULL;
    }
    *size_p = size;
    return data;
}

// Waits for the broker once, so that an asynchronous refusal of a publish (unknown exchange,
// body too large) is reported before we exit. Publishing through the default exchange to a
// queue that does not exist is not an error in AMQP (the message is dropped), but it is
// almost always a mistake, so we check for the queue and warn.
static int
s_publish_confirm(s_publisher_t *self)
{
    int rc;
    if (self->exchange[0] == '\0' && self->routing_key[0] &&
        strlen(self->routing_key) <= HOP_NAME_MAX) {
        rc = hop_client_declare_queue(self->client, self->routing_key, HOP_PASSIVE, NULL, 0);
        int code = rc == HOP_OK ? 0 : hop_client_error_code(self->client);
        if (code == HOP_CODE_NOT_FOUND) {
            fprintf(stderr,
                    "hopper: warning: there is no queue '%s', so the default exchange dropped "
                    "the message%s. Declare it first: hopper declare queue %s\n",
                    self->routing_key, self->published == 1 ? "" : "s", self->routing_key);
            return HOP_EXIT_OK;
        }
        if (code == HOP_CODE_RESOURCE_LOCKED || code == HOP_CODE_ACCESS_REFUSED)
            return HOP_EXIT_OK; // the queue exists; it is just not ours to look at
    } else {
        void *status = NULL;
        size_t size = 0;
        rc = hop_client_status(self->client, &status, &size);
        free(status);
    }
    return rc == HOP_OK ? HOP_EXIT_OK : s_publish_fail(self, rc);
}

int
hop_cli_publish(hop_cli_t *cli, int argc, char **argv)
{
    static const hop_cli_opt_t opts[] = {
        {"--lines", false, S_OPT_LINES},
        {"--header", true, S_OPT_HEADER},
        {"--count", true, S_OPT_COUNT},
        {"--reply-to", true, S_OPT_REPLY_TO},
        {"--correlation-id", true, S_OPT_CORRELATION_ID},
        {"--content-type", true, S_OPT_CONTENT_TYPE},
        {"--message-id", true, S_OPT_MESSAGE_ID},
        {"--confirm", false, S_OPT_CONFIRM},
        {"--mandatory", false, S_OPT_MANDATORY},
        {"--expiration", true, S_OPT_EXPIRATION},
        {"--priority", true, S_OPT_PRIORITY},
        {"--persistent", false, S_OPT_PERSISTENT},
        {NULL, false, 0},
    };
    s_publisher_t self = {.cli = cli, .count = 1};
    const char *positional[3];
    int positional_count = 0;
    bool lines = false;
    // At most one header per word of the command line.
    hop_header_t *headers = calloc((size_t)argc + 1, sizeof *headers);
    char **header_copies = calloc((size_t)argc + 1, sizeof *header_copies);
    assert(headers && header_copies);
    size_t header_count = 0;
    int exit_code = HOP_EXIT_OK;

    hop_cli_args_t args = {.argc = argc, .argv = argv};
    const char *value;
    int id;
    while (exit_code == HOP_EXIT_OK &&
           (id = hop_cli_next(cli, &args, opts, &value)) != HOP_CLI_ARG_END) {
        switch (id) {
        case HOP_CLI_ARG_ERROR:
            exit_code = HOP_EXIT_USAGE;
            break;
        case HOP_CLI_ARG_POSITIONAL:
            if (positional_count == 3)
                exit_code = hop_cli_usage(cli, "publish takes EXCHANGE ROUTING_KEY [BODY]; "
                                               "quote a BODY that has spaces");
            else
                positional[positional_count++] = value;
            break;
        case S_OPT_LINES:
            lines = true;
            break;
        case S_OPT_HEADER: {
            const char *equals = strchr(value, '=');
            if (!equals || equals == value) {
                exit_code = hop_cli_usage(cli, "--header needs KEY=VALUE, not '%s'", value);
                break;
            }
            char *copy = strdup(value);
            assert(copy);
            copy[equals - value] = '\0';
            header_copies[header_count] = copy;
            headers[header_count].key = copy;
            headers[header_count].value = copy + (equals - value) + 1;
            header_count++;
            break;
        }
        case S_OPT_COUNT:
            exit_code = hop_cli_number(cli, "--count", value, 1, LONG_MAX, &self.count);
            break;
        case S_OPT_REPLY_TO:
            self.props.reply_to = value;
            break;
        case S_OPT_CORRELATION_ID:
            self.props.correlation_id = value;
            break;
        case S_OPT_CONTENT_TYPE:
            self.props.content_type = value;
            break;
        case S_OPT_MESSAGE_ID:
            self.props.message_id = value;
            break;
        case S_OPT_CONFIRM:
            self.confirm = true;
            break;
        case S_OPT_MANDATORY:
            self.opts.mandatory = true;
            self.confirm = true; // a return is only known for sure once the confirm came
            break;
        case S_OPT_PERSISTENT:
            self.opts.persistent = true;
            break;
        case S_OPT_EXPIRATION: {
            long ms;
            exit_code = hop_cli_number(cli, "--expiration", value, 1, LONG_MAX, &ms);
            self.opts.expiration = (uint64_t)ms;
            break;
        }
        case S_OPT_PRIORITY: {
            long priority;
            exit_code = hop_cli_number(cli, "--priority", value, 0, 255, &priority);
            self.opts.priority = (uint8_t)priority;
            break;
        }
        }
    }
    if (exit_code == HOP_EXIT_OK && positional_count < 2)
        exit_code = hop_cli_usage(cli, "publish needs EXCHANGE ROUTING_KEY [BODY] (use \"\" for "
                                       "the default exchange)");
    if (exit_code == HOP_EXIT_OK && lines && positional_count == 3)
        exit_code = hop_cli_usage(cli, "--lines reads the messages from stdin; drop BODY");
    self.props.headers = headers;
    self.props.header_count = header_count;
    if (cli->json && !self.props.content_type)
        self.props.content_type = "application/msgpack";

    // The whole body is read (and checked, under --json) before connecting, so that bad
    // input never leaves half a job done. --lines streams instead.
    char *body = NULL;
    size_t body_size = 0;
    if (exit_code == HOP_EXIT_OK && positional_count == 2 && isatty(STDIN_FILENO))
        fprintf(stderr,
                "hopper: reading the %s from the terminal; end with Ctrl-D (or give "
                "BODY as an argument)\n",
                lines ? "messages, one per line," : "message body");
    if (exit_code == HOP_EXIT_OK && positional_count == 2 && !lines) {
        body = s_read_stdin(&body_size);
        if (!body)
            exit_code = HOP_EXIT_REFUSED;
    } else if (exit_code == HOP_EXIT_OK && positional_count == 3) {
        body = strdup(positional[2]);
        assert(body);
        body_size = strlen(body);
    }
    if (exit_code == HOP_EXIT_OK && body && cli->json) {
        json_error_t error;
        json_t *json = json_loadb(body, body_size, JSON_DECODE_ANY | JSON_ALLOW_NUL, &error);
        if (!json)
            exit_code = hop_cli_usage(cli,
                                      "the body is not valid JSON: %s (line %d, column %d); drop "
                                      "--json to send it as it is",
                                      error.text, error.line, error.column);
        json_decref(json);
    }

    if (exit_code == HOP_EXIT_OK) {
        self.exchange = positional[0];
        self.routing_key = positional[1];
        msgpack_sbuffer_init(&self.packed);
        exit_code = hop_cli_connect(cli, &self.client);
        if (exit_code == HOP_EXIT_OK && self.confirm) {
            hop_client_on_confirm(self.client, s_on_confirm, &self);
            hop_client_on_return(self.client, s_on_return, &self);
            int rc = hop_client_confirm_select(self.client);
            if (rc != HOP_OK)
                exit_code = hop_cli_fail(cli, self.client, rc, NULL, "turn on publisher confirms");
        }
        if (self.client && exit_code == HOP_EXIT_OK) {
            exit_code = body ? s_publish_body(&self, body, body_size, "") : s_publish_lines(&self);
            if (exit_code == HOP_EXIT_OK && self.confirm)
                exit_code = s_confirm_wait(&self);
            if (exit_code == HOP_EXIT_OK && self.confirm)
                exit_code = s_confirm_report(&self);
            // A mandatory publish reports its own returns; else check for a missing queue.
            if (exit_code == HOP_EXIT_OK && !self.opts.mandatory)
                exit_code = s_publish_confirm(&self);
        }
        hop_client_destroy(&self.client);
        msgpack_sbuffer_destroy(&self.packed);
    }
    free(body);
    for (size_t i = 0; i < header_count; i++)
        free(header_copies[i]);
    free(header_copies);
    free(headers);
    return exit_code;
}
