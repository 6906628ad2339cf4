// cli/publish.c - `hopper publish`: a body from the command line, all of stdin, or one
// message per line of stdin; JSON bodies sent as msgpack; one wait for the broker at the
// end so that an asynchronous refusal is reported before we exit.
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
};

typedef struct {
    hop_cli_t *cli;
    hop_client_t *client;
    const char *exchange;
    const char *routing_key;
    hop_props_t props;
    long count;              // copies of each message
    msgpack_sbuffer packed;  // a --json body as msgpack, reused
    unsigned long published; // messages sent so far
} s_publisher_t;

static const char *
s_publish_hint(const s_publisher_t *self, char *buffer, size_t size)
{
    switch (hop_client_error_code(self->client)) {
    case HOP_CODE_NOT_FOUND:
        snprintf(buffer, size, "Declare it first: hopper declare exchange %s --type direct",
                 self->exchange);
        return buffer;
    case HOP_CODE_CONTENT_TOO_LARGE:
        return "The body is larger than the broker accepts (hopperd --max-message)";
    case HOP_CODE_ACCESS_REFUSED:
        return "That exchange does not accept publishes";
    default:
        return NULL;
    }
}

static int
s_publish_fail(s_publisher_t *self, int rc)
{
    char hint[HOP_NAME_MAX + 160];
    return hop_cli_fail(self->cli, self->client, rc, s_publish_hint(self, hint, sizeof hint),
                        "publish to exchange '%s'", self->exchange);
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
        int rc = hop_client_publish(self->client, self->exchange, self->routing_key, body, size,
                                    &self->props);
        if (rc != HOP_OK)
            return s_publish_fail(self, rc);
        self->published++;
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
        if (exit_code == HOP_EXIT_OK) {
            exit_code = body ? s_publish_body(&self, body, body_size, "") : s_publish_lines(&self);
            if (exit_code == HOP_EXIT_OK)
                exit_code = s_publish_confirm(&self);
            hop_client_destroy(&self.client);
        }
        msgpack_sbuffer_destroy(&self.packed);
    }
    free(body);
    for (size_t i = 0; i < header_count; i++)
        free(header_copies[i]);
    free(header_copies);
    free(headers);
    return exit_code;
}
