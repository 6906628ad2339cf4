// cli/inspect.c - `hopper list` and `hopper status`: what the broker holds, as an aligned
// table (or key: value lines) for people and as JSON for programs. The JSON output carries
// every key the broker sent, converted from msgpack (cli/json.h); the table picks columns.
#include "cli.h"
#include "json.h"

#include <assert.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

// One column of a table: which key it shows and how.
typedef struct {
    const char *header;
    const char *key;       // NULL: a column built from several keys (see header)
    bool right;            // right-align (numbers)
    bool default_exchange; // "" names the default exchange: show "(default)"
} s_column_t;

#define S_MAX_COLUMNS 32 // default or chosen with --columns
#define S_MAX_EXTRA   24
#define S_FLAGS       "FLAGS"     // the boolean flag_keys that are true
#define S_ARGUMENTS   "ARGUMENTS" // the queue arguments that are set, as declare flags

typedef struct {
    const char *what;                    // the list subject, as the broker names it
    const char *singular;                // accepted too: "hopper list queue"
    const char *flag_keys[4];            // boolean keys shown in the FLAGS column
    s_column_t columns[S_MAX_COLUMNS];   // the default table; ends with a NULL header
    const char *extra_keys[S_MAX_EXTRA]; // keys not in the default table (for --columns, --sort)
} s_table_t;

static const s_table_t s_tables[] = {
    {"queues",
     "queue",
     {"durable", "exclusive", "auto_delete", NULL},
     {{"NAME", "name", false, false},
      {"READY", "messages_ready", true, false},
      {"UNACKED", "messages_unacked", true, false},
      {"DELAYED", "messages_delayed", true, false},
      {"DEAD_LETTERED", "dead_lettered", true, false},
      {"CONSUMERS", "consumers", true, false},
      {"PUBLISHED", "published", true, false},
      {"DELIVERED", "delivered", true, false},
      {"ACKED", "acked", true, false},
      {"PUBLISH/S", "publish_rate", true, false},
      {"DELIVER/S", "deliver_rate", true, false},
      {"ACK/S", "ack_rate", true, false},
      {S_FLAGS, NULL, false, false},
      {S_ARGUMENTS, NULL, false, false},
      {NULL, NULL, false, false}},
     {"messages",
      "bytes_ready",
      "messages_paged",
      "oldest_ready_ms",
      "dropped",
      "expired",
      "rejected_publishes",
      "max_length",
      "max_length_bytes",
      "overflow",
      "message_ttl",
      "expires",
      "max_deliveries",
      "dead_letter_exchange",
      "dead_letter_key",
      "retry_delay",
      "retry_delay_max",
      "max_priority",
      "ack_timeout",
      NULL}},
    {"exchanges",
     "exchange",
     {"durable", "auto_delete", NULL, NULL},
     {{"NAME", "name", false, true},
      {"TYPE", "type", false, false},
      {"BINDINGS", "bindings", true, false},
      {"PUBLISHED", "published", true, false},
      {"UNROUTABLE", "unroutable", true, false},
      {S_FLAGS, NULL, false, false},
      {NULL, NULL, false, false}},
     {NULL}},
    {"bindings",
     "binding",
     {NULL, NULL, NULL, NULL},
     {{"EXCHANGE", "exchange", false, true},
      {"QUEUE", "queue", false, false},
      {"KEY", "key", false, false},
      {NULL, NULL, false, false}},
     {NULL}},
    {"consumers",
     "consumer",
     {"no_ack", "exclusive", NULL, NULL},
     {{"QUEUE", "queue", false, false},
      {"CONSUMER", "consumer", false, false},
      {"CONNECTION", "connection", false, false},
      {"PREFETCH", "prefetch", true, false},
      {"UNACKED", "unacked", true, false},
      {"DELIVERED", "delivered", true, false},
      {"ACK_TIMEOUT_MS", "ack_timeout", true, false},
      {S_FLAGS, NULL, false, false},
      {NULL, NULL, false, false}},
     {NULL}},
    {"connections",
     "connection",
     {NULL, NULL, NULL, NULL},
     {{"CONNECTION", "connection", false, false},
      {"NAME", "name", false, false},
      {"PEER", "peer", false, false},
      {"HEARTBEAT_MS", "heartbeat", true, false},
      {"LAST_SEEN_MS", "last_seen_ms", true, false},
      {"CONSUMERS", "consumers", true, false},
      {"UNACKED", "unacked", true, false},
      {"AGE_MS", "connected_ms", true, false},
      {NULL, NULL, false, false}},
     {"paused", "paused_by", NULL}},
    {"unacked",
     "unacked",
     {NULL, NULL, NULL, NULL},
     {{"QUEUE", "queue", false, false},
      {"CONSUMER", "consumer", false, false},
      {"CONNECTION", "connection", false, false},
      {"TAG", "tag", true, false},
      {"AGE_MS", "delivered_ms_ago", true, false},
      {"COUNT", "count", true, false},
      {NULL, NULL, false, false}},
     {NULL}},
};

// `list unacked --sort`: the order of the rows.
static const char *s_sort_key; // the item key rows sort by; NULL: age (oldest first)

static int
s_unacked_cmp(const void *a, const void *b)
{
    const json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
    if (s_sort_key) {
        const char *sx = json_string_value(json_object_get(x, s_sort_key));
        const char *sy = json_string_value(json_object_get(y, s_sort_key));
        int c = strcmp(sx ? sx : "", sy ? sy : "");
        if (c)
            return c;
    }
    json_int_t ax = json_integer_value(json_object_get(x, "delivered_ms_ago"));
    json_int_t ay = json_integer_value(json_object_get(y, "delivered_ms_ago"));
    if (ax != ay)
        return ax > ay ? -1 : 1;
    json_int_t tx = json_integer_value(json_object_get(x, "tag"));
    json_int_t ty = json_integer_value(json_object_get(y, "tag"));
    return tx < ty ? -1 : tx > ty;
}

// Sorts the unacked items by sort ("age", "queue", "consumer" or "connection"; ties oldest
// first), and for the table names a get's delivery "(get)" instead of an empty consumer.
static void
s_unacked_prepare(json_t *items, const char *sort, bool table)
{
    size_t n = json_array_size(items);
    json_t **rows = calloc(n ? n : 1, sizeof *rows);
    assert(rows);
    for (size_t i = 0; i < n; i++) {
        rows[i] = json_incref(json_array_get(items, i));
        if (table && json_string_length(json_object_get(rows[i], "consumer")) == 0)
            json_object_set_new(rows[i], "consumer", json_string("(get)"));
    }
    s_sort_key = sort && strcmp(sort, "age") != 0 ? sort : NULL;
    qsort(rows, n, sizeof *rows, s_unacked_cmp);
    json_array_clear(items);
    for (size_t i = 0; i < n; i++)
        json_array_append_new(items, rows[i]);
    free(rows);
}

// Renders a scalar for a table cell or a status line; returns a malloc'd string.
static char *
s_cell_text(const json_t *value, bool default_exchange)
{
    if (!value)
        return strdup("-");
    if (json_is_string(value)) {
        if (json_string_length(value) == 0)
            return strdup(default_exchange ? "(default)" : "\"\"");
        return strdup(json_string_value(value));
    }
    if (json_is_boolean(value))
        return strdup(json_is_true(value) ? "yes" : "no");
    if (json_is_real(value)) { // rates: two decimals, as the broker rounds them
        char text[64];
        snprintf(text, sizeof text, "%.2f", json_real_value(value));
        return strdup(text);
    }
    char *text = json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(17));
    return text ? text : strdup("?");
}

// "durable,auto-delete" from the flag keys that are true, or "-".
static char *
s_flags_text(const json_t *item, const char *const *flag_keys)
{
    char text[128] = "";
    for (int i = 0; i < 4 && flag_keys[i]; i++) {
        if (!json_is_true(json_object_get(item, flag_keys[i])))
            continue;
        if (*text)
            strcat(text, ",");
        size_t at = strlen(text);
        strcat(text, flag_keys[i]);
        for (char *c = text + at; *c; c++)
            if (*c == '_')
                *c = '-';
    }
    return strdup(*text ? text : "-");
}

// "max-length=1000 overflow=reject-publish ..." from the queue arguments that are set, named
// as the options of hopper declare queue that set them, or "-".
static char *
s_arguments_text(const json_t *item)
{
    static const struct {
        const char *key;
        const char *option;
    } args[] = {
        {"max_length", "max-length"},
        {"max_length_bytes", "max-length-bytes"},
        {"overflow", "overflow"},
        {"message_ttl", "message-ttl"},
        {"expires", "expires"},
        {"max_deliveries", "max-deliveries"},
        {"dead_letter_exchange", "dead-letter-exchange"},
        {"dead_letter_key", "dead-letter-key"},
        {"retry_delay", "retry-backoff"},
        {"max_priority", "max-priority"},
        {"ack_timeout", "ack-timeout"},
    };
    size_t size = 0;
    char *text = NULL;
    FILE *out = open_memstream(&text, &size);
    assert(out);
    for (size_t i = 0; i < sizeof args / sizeof args[0]; i++) {
        const json_t *value = json_object_get(item, args[i].key);
        if (!value)
            continue;
        char *cell = s_cell_text(value, false);
        fprintf(out, "%s%s=%s", ftell(out) ? " " : "", args[i].option, cell);
        free(cell);
        // retry-backoff=INITIAL:MAX, as the option takes it, when MAX is not INITIAL
        const json_t *max = json_object_get(item, "retry_delay_max");
        if (strcmp(args[i].key, "retry_delay") == 0 && json_is_integer(max) &&
            !json_equal((json_t *)max, (json_t *)value)) {
            cell = s_cell_text(max, false);
            fprintf(out, ":%s", cell);
            free(cell);
        }
    }
    bool empty = ftell(out) == 0;
    fclose(out);
    if (empty) {
        free(text);
        return strdup("-");
    }
    return text;
}

// The columns of a table: the default ones, or those --columns chose.
typedef struct {
    s_column_t column[S_MAX_COLUMNS];
    char header[S_MAX_COLUMNS][48]; // for a key that is not a default column: the key in caps
    int count;
} s_columns_t;

static bool
s_word_is(const char *word, size_t len, const char *name)
{
    return strlen(name) == len && strncasecmp(word, name, len) == 0;
}

// Resolves a --columns or --sort word to a column of table: a default column by its header
// or key ("ready", "messages_ready"), or any other key an item has ("oldest_ready_ms", a flag,
// a queue argument). header is filled for the latter. Returns false when there is none.
static bool
s_column_find(const s_table_t *table, const char *word, size_t len, s_column_t *out, char *header,
              size_t header_size)
{
    for (int c = 0; c < S_MAX_COLUMNS && table->columns[c].header; c++) {
        const s_column_t *column = &table->columns[c];
        if (s_word_is(word, len, column->header) ||
            (column->key && s_word_is(word, len, column->key))) {
            *out = *column;
            return true;
        }
    }
    const char *key = NULL;
    for (int i = 0; !key && i < 4 && table->flag_keys[i]; i++)
        if (s_word_is(word, len, table->flag_keys[i]))
            key = table->flag_keys[i];
    for (int i = 0; !key && i < S_MAX_EXTRA && table->extra_keys[i]; i++)
        if (s_word_is(word, len, table->extra_keys[i]))
            key = table->extra_keys[i];
    if (!key)
        return false;
    snprintf(header, header_size, "%s", key);
    for (char *c = header; *c; c++)
        *c = (char)toupper((unsigned char)*c);
    *out = (s_column_t){header, key, false, false};
    return true;
}

// The words --columns and --sort take for table, as "name, messages_ready, ...".
static const char *
s_fields_text(const s_table_t *table)
{
    static char text[1024];
    size_t at = 0;
    text[0] = '\0';
#define S_ADD(word)                                                                                \
    at += (size_t)snprintf(text + at, at < sizeof text ? sizeof text - at : 0, "%s%s",             \
                           at ? ", " : "", (word))
    for (int c = 0; c < S_MAX_COLUMNS && table->columns[c].header; c++)
        S_ADD(table->columns[c].key ? table->columns[c].key : table->columns[c].header);
    for (int i = 0; i < 4 && table->flag_keys[i]; i++)
        S_ADD(table->flag_keys[i]);
    for (int i = 0; i < S_MAX_EXTRA && table->extra_keys[i]; i++)
        S_ADD(table->extra_keys[i]);
#undef S_ADD
    return text;
}

// Fills columns from --columns "a,b,c" (NULL: the default table). Reports and returns
// HOP_EXIT_USAGE for an unknown or empty word.
static int
s_columns_parse(const hop_cli_t *cli, const s_table_t *table, const char *spec,
                s_columns_t *columns)
{
    memset(columns, 0, sizeof *columns);
    if (!spec) {
        while (columns->count < S_MAX_COLUMNS && table->columns[columns->count].header) {
            columns->column[columns->count] = table->columns[columns->count];
            columns->count++;
        }
        return HOP_EXIT_OK;
    }
    for (const char *word = spec;;) {
        const char *comma = strchr(word, ',');
        size_t len = comma ? (size_t)(comma - word) : strlen(word);
        if (columns->count == S_MAX_COLUMNS)
            return hop_cli_usage(cli, "--columns takes at most %d columns", S_MAX_COLUMNS);
        int n = columns->count;
        if (len == 0 || !s_column_find(table, word, len, &columns->column[n], columns->header[n],
                                       sizeof columns->header[n])) {
            return hop_cli_usage(cli,
                                 "%s have no column '%.*s'; the columns are %s (or a header of "
                                 "the table, in any case)",
                                 table->what, (int)len, word, s_fields_text(table));
        }
        columns->count++;
        if (!comma)
            return HOP_EXIT_OK;
        word = comma + 1;
    }
}

// --sort FIELD of the lists other than unacked: numbers largest first, text in order, rows
// without the field last, ties in the broker's order.
static const char *s_order_key;

typedef struct {
    json_t *item;
    size_t index;
} s_row_t;

static int
s_row_cmp(const void *a, const void *b)
{
    const s_row_t *x = a, *y = b;
    const json_t *vx = json_object_get(x->item, s_order_key);
    const json_t *vy = json_object_get(y->item, s_order_key);
    int c = 0;
    if (!vx != !vy)
        c = vx ? -1 : 1;
    else if (json_is_number(vx) && json_is_number(vy)) {
        double dx = json_number_value(vx), dy = json_number_value(vy);
        c = dx > dy ? -1 : dx < dy;
    } else if (json_is_string(vx) && json_is_string(vy))
        c = strcmp(json_string_value(vx), json_string_value(vy));
    else if (json_is_boolean(vx) && json_is_boolean(vy))
        c = json_is_true(vy) - json_is_true(vx);
    if (c)
        return c;
    return x->index < y->index ? -1 : x->index > y->index;
}

static void
s_items_sort(json_t *items, const char *key)
{
    size_t n = json_array_size(items);
    s_row_t *rows = calloc(n ? n : 1, sizeof *rows);
    assert(rows);
    for (size_t i = 0; i < n; i++)
        rows[i] = (s_row_t){json_incref(json_array_get(items, i)), i};
    s_order_key = key;
    qsort(rows, n, sizeof *rows, s_row_cmp);
    json_array_clear(items);
    for (size_t i = 0; i < n; i++)
        json_array_append_new(items, rows[i].item);
    free(rows);
}

static void
s_print_table(const s_table_t *table, const s_columns_t *chosen, const json_t *items)
{
    int columns = chosen->count;
    size_t rows = json_array_size(items);
    char **cells = calloc((rows + 1) * (size_t)columns, sizeof *cells);
    size_t width[S_MAX_COLUMNS];
    assert(cells);
    bool right[S_MAX_COLUMNS];
    for (int c = 0; c < columns; c++) {
        cells[c] = strdup(chosen->column[c].header);
        width[c] = strlen(cells[c]);
        right[c] = chosen->column[c].right;
    }
    for (size_t r = 0; r < rows; r++) {
        const json_t *item = json_array_get(items, r);
        for (int c = 0; c < columns; c++) {
            const s_column_t *column = &chosen->column[c];
            const json_t *value = column->key ? json_object_get(item, column->key) : NULL;
            if (json_is_number(value))
                right[c] = true; // a number in any row: the column is aligned right
            char *text;
            if (column->key)
                text = s_cell_text(json_object_get(item, column->key), column->default_exchange);
            else if (strcmp(column->header, S_ARGUMENTS) == 0)
                text = s_arguments_text(item);
            else
                text = s_flags_text(item, table->flag_keys);
            cells[(r + 1) * (size_t)columns + (size_t)c] = text;
            if (strlen(text) > width[c])
                width[c] = strlen(text);
        }
    }
    for (size_t r = 0; r <= rows; r++) {
        for (int c = 0; c < columns; c++) {
            const char *text = cells[r * (size_t)columns + (size_t)c];
            bool last = c == columns - 1;
            int pad = (int)width[c];
            if (right[c])
                printf("%*s%s", pad, text, last ? "" : "  ");
            else if (last)
                fputs(text, stdout);
            else
                printf("%-*s  ", pad, text);
        }
        putchar('\n');
    }
    for (size_t i = 0; i < (rows + 1) * (size_t)columns; i++)
        free(cells[i]);
    free(cells);
}

static void
s_print_json(const json_t *json)
{
    // 15 digits: the broker's rates (rounded to 0.01) print as 7.89, not 7.8899999999999997.
    char *text = json_dumps(json, JSON_INDENT(2) | JSON_ENCODE_ANY | JSON_REAL_PRECISION(15));
    if (text)
        puts(text);
    free(text);
}

enum { S_OPT_SORT = 1, S_OPT_COLUMNS };

int
hop_cli_list(hop_cli_t *cli, int argc, char **argv)
{
    static const hop_cli_opt_t opts[] = {
        {"--sort", true, S_OPT_SORT}, {"--columns", true, S_OPT_COLUMNS}, {NULL, false, 0}};
    hop_cli_parsed_t parsed;
    if (hop_cli_parse(cli, argc, argv, opts, 1, 2,
                      "what to list: queues, exchanges, bindings, consumers, connections or "
                      "unacked [QUEUE]",
                      &parsed) != HOP_EXIT_OK)
        return HOP_EXIT_USAGE;
    const char *what = parsed.positional[0];
    const s_table_t *table = NULL;
    for (size_t i = 0; i < sizeof s_tables / sizeof s_tables[0]; i++)
        if (strcmp(what, s_tables[i].what) == 0 || strcmp(what, s_tables[i].singular) == 0)
            table = &s_tables[i];
    if (!table)
        return hop_cli_usage(cli,
                             "cannot list '%s': say queues, exchanges, bindings, consumers, "
                             "connections or unacked",
                             what);
    bool unacked = strcmp(table->what, "unacked") == 0;
    const char *queue = parsed.positional_count > 1 ? parsed.positional[1] : NULL;
    const char *sort = parsed.value[S_OPT_SORT];
    if (queue && !unacked)
        return hop_cli_usage(cli, "only 'list unacked' takes a queue; 'list %s' lists them all",
                             table->what);
    if (unacked && sort && strcmp(sort, "age") != 0 && strcmp(sort, "queue") != 0 &&
        strcmp(sort, "consumer") != 0 && strcmp(sort, "connection") != 0)
        return hop_cli_usage(cli, "--sort takes age, queue, consumer or connection, not '%s'",
                             sort);
    s_column_t sort_column = {NULL, NULL, false, false};
    char sort_header[48];
    if (!unacked && sort &&
        (!s_column_find(table, sort, strlen(sort), &sort_column, sort_header, sizeof sort_header) ||
         !sort_column.key)) {
        return hop_cli_usage(cli, "--sort needs a column of %s, not '%s': one of %s", table->what,
                             sort, s_fields_text(table));
    }
    s_columns_t columns;
    if (s_columns_parse(cli, table, parsed.value[S_OPT_COLUMNS], &columns) != HOP_EXIT_OK)
        return HOP_EXIT_USAGE;

    hop_client_t *client;
    int exit_code = hop_cli_connect(cli, &client);
    if (exit_code != HOP_EXIT_OK)
        return exit_code;
    void *data = NULL;
    size_t size = 0;
    size_t left_off = 0;
    int rc = unacked ? hop_client_list_unacked(client, queue, &data, &size, &left_off)
                     : hop_client_list(client, table->what, &data, &size);
    if (rc != HOP_OK) {
        const char *hint = hop_client_error_code(client) == HOP_CODE_NOT_FOUND
                               ? "See the queues with: hopper list queues"
                               : NULL;
        exit_code = hop_cli_fail(cli, client, rc, hint, "list %s%s%s%s", table->what,
                                 queue ? " of queue '" : "", queue ? queue : "", queue ? "'" : "");
    } else {
        json_t *items = hop_json_from_msgpack(data, size);
        if (!json_is_array(items)) {
            fprintf(stderr,
                    "hopper: cannot list %s: the broker's answer is not a msgpack array "
                    "(a broker bug; please report it)\n",
                    table->what);
            exit_code = HOP_EXIT_REFUSED;
        } else {
            if (unacked)
                s_unacked_prepare(items, sort, !cli->json);
            else if (sort_column.key)
                s_items_sort(items, sort_column.key);
            if (cli->json)
                s_print_json(items);
            else
                s_print_table(table, &columns, items);
            if (left_off)
                fprintf(stderr,
                        "hopper: %zu newer unacked deliveries did not fit in the broker's "
                        "answer%s\n",
                        left_off, queue ? "" : "; name a queue to see fewer at a time");
        }
        json_decref(items);
    }
    free(data);
    hop_client_destroy(&client);
    return exit_code;
}

int
hop_cli_status(hop_cli_t *cli, int argc, char **argv)
{
    hop_cli_parsed_t parsed;
    if (hop_cli_parse(cli, argc, argv, NULL, 0, 0, "", &parsed) != HOP_EXIT_OK)
        return HOP_EXIT_USAGE;
    hop_client_t *client;
    int exit_code = hop_cli_connect(cli, &client);
    if (exit_code != HOP_EXIT_OK)
        return exit_code;
    void *data = NULL;
    size_t size = 0;
    int rc = hop_client_status(client, &data, &size);
    if (rc != HOP_OK) {
        exit_code = hop_cli_fail(cli, client, rc, NULL, "get the broker's status");
    } else {
        json_t *status = hop_json_from_msgpack(data, size);
        if (!json_is_object(status)) {
            fprintf(stderr, "hopper: cannot get the broker's status: its answer is not a msgpack "
                            "map (a broker bug; please report it)\n");
            exit_code = HOP_EXIT_REFUSED;
        } else if (cli->json) {
            s_print_json(status);
        } else {
            size_t width = 0;
            const char *key;
            json_t *value;
            json_object_foreach(status, key, value)
            {
                if (strlen(key) > width)
                    width = strlen(key);
            }
            json_object_foreach(status, key, value)
            {
                char *text = s_cell_text(value, false);
                printf("%s:%*s %s\n", key, (int)(width - strlen(key)), "", text);
                free(text);
            }
        }
        json_decref(status);
    }
    free(data);
    hop_client_destroy(&client);
    return exit_code;
}
