// cli/top.c - `hopper top`: a live full-screen view of the broker, redrawn every --interval ms:
// broker totals from `status` (connections, messages, rates, memory) above a table of queues
// from `list queues` (depth, consumers, rates). Drawn with ncurses, so it works on any
// terminal terminfo knows; `q` or Ctrl-C leaves it and gives the terminal back as it was.
#include "cli.h"
#include "json.h"

#include <curses.h>
#include <errno.h>
#include <locale.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define S_INTERVAL_DEFAULT 1000 // ms
#define S_INTERVAL_MIN     100  // the broker samples its rates once a second anyway

// Set by SIGINT/SIGTERM: leave at the next turn (getch returns early, interrupted).
static volatile sig_atomic_t s_stop;

static void
s_on_signal(int sig)
{
    (void)sig;
    s_stop = 1;
}

// What one refresh fetched: the status map and the queue items, or an error text.
typedef struct {
    json_t *status;
    json_t *queues;
    char error[256];
} s_view_t;

static uint64_t
s_uint(const json_t *obj, const char *key)
{
    const json_t *v = json_object_get(obj, key);
    return json_is_integer(v) && json_integer_value(v) > 0 ? (uint64_t)json_integer_value(v) : 0;
}

static double
s_real(const json_t *obj, const char *key)
{
    const json_t *v = json_object_get(obj, key);
    return json_is_number(v) ? json_number_value(v) : 0;
}

// "12.3 MiB" from a byte count.
static const char *
s_bytes(uint64_t bytes, char *out, size_t size)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double value = (double)bytes;
    size_t unit = 0;
    while (value >= 1024 && unit + 1 < sizeof units / sizeof units[0]) {
        value /= 1024;
        unit++;
    }
    if (unit == 0)
        snprintf(out, size, "%llu B", (unsigned long long)bytes);
    else
        snprintf(out, size, "%.1f %s", value, units[unit]);
    return out;
}

// "3d04h", "1h02m", "5m07s", "12s" from milliseconds.
static const char *
s_duration(uint64_t ms, char *out, size_t size)
{
    uint64_t s = ms / 1000;
    if (s >= 86400)
        snprintf(out, size, "%llud%02lluh", (unsigned long long)(s / 86400),
                 (unsigned long long)(s % 86400 / 3600));
    else if (s >= 3600)
        snprintf(out, size, "%lluh%02llum", (unsigned long long)(s / 3600),
                 (unsigned long long)(s % 3600 / 60));
    else if (s >= 60)
        snprintf(out, size, "%llum%02llus", (unsigned long long)(s / 60),
                 (unsigned long long)(s % 60));
    else
        snprintf(out, size, "%llus", (unsigned long long)s);
    return out;
}

// Fetches status and list queues into view (replacing what it held). Returns HOP_OK or the
// failed call's code, with view->error saying what failed.
static int
s_fetch(hop_client_t *client, s_view_t *view)
{
    json_decref(view->status);
    json_decref(view->queues);
    view->status = view->queues = NULL;
    view->error[0] = '\0';
    void *data = NULL;
    size_t size = 0;
    int rc = hop_client_status(client, &data, &size);
    if (rc == HOP_OK)
        view->status = hop_json_from_msgpack(data, size);
    free(data);
    data = NULL;
    if (rc == HOP_OK && (rc = hop_client_list(client, "queues", &data, &size)) == HOP_OK)
        view->queues = hop_json_from_msgpack(data, size);
    free(data);
    if (rc != HOP_OK)
        snprintf(view->error, sizeof view->error, "%s", hop_client_error(client));
    else if (!json_is_object(view->status) || !json_is_array(view->queues)) {
        snprintf(view->error, sizeof view->error,
                 "the broker's answer is not what status and list queues send (a broker bug)");
        rc = HOP_EPROTO;
    }
    return rc;
}

// Queue rows by name: a steady order to watch (the numbers move, the rows do not).
static int
s_by_name(const void *a, const void *b)
{
    const char *x = json_string_value(json_object_get(*(json_t *const *)a, "name"));
    const char *y = json_string_value(json_object_get(*(json_t *const *)b, "name"));
    return strcmp(x ? x : "", y ? y : "");
}

static void
s_draw_totals(const hop_cli_t *cli, const json_t *st, int interval_ms)
{
    char a[32], b[32], c[32];
    const char *server = json_string_value(json_object_get(st, "server"));
    attron(A_BOLD);
    mvprintw(0, 0, "hopper top - %s", cli->endpoint);
    attroff(A_BOLD);
    printw("  %s  up %s  (q quits, every %d ms)", server ? server : "?",
           s_duration(s_uint(st, "uptime_ms"), a, sizeof a), interval_ms);
    mvprintw(1, 0, "connections %llu  consumers %llu  queues %llu  exchanges %llu",
             (unsigned long long)s_uint(st, "connections"),
             (unsigned long long)s_uint(st, "consumers"), (unsigned long long)s_uint(st, "queues"),
             (unsigned long long)s_uint(st, "exchanges"));
    mvprintw(2, 0,
             "messages ready %llu  unacked %llu  delayed %llu    publish/s %.2f  deliver/s %.2f  "
             "ack/s %.2f",
             (unsigned long long)s_uint(st, "messages_ready"),
             (unsigned long long)s_uint(st, "messages_unacked"),
             (unsigned long long)s_uint(st, "messages_delayed"), s_real(st, "publish_rate"),
             s_real(st, "deliver_rate"), s_real(st, "ack_rate"));
    mvprintw(3, 0, "memory rss %s  messages %s in %llu records    disk %s", //
             s_bytes(s_uint(st, "rss_bytes"), a, sizeof a),
             s_bytes(s_uint(st, "messages_bytes"), b, sizeof b),
             (unsigned long long)s_uint(st, "message_records"),
             s_bytes(s_uint(st, "disk_bytes"), c, sizeof c));
    mvprintw(4, 0, "dead-lettered %llu  dropped %llu  expired %llu  unroutable %llu",
             (unsigned long long)s_uint(st, "dead_lettered"),
             (unsigned long long)s_uint(st, "dropped"), (unsigned long long)s_uint(st, "expired"),
             (unsigned long long)s_uint(st, "unroutable"));
}

static void
s_draw_queues(json_t *queues)
{
    size_t n = json_array_size(queues);
    json_t **rows = calloc(n ? n : 1, sizeof *rows);
    if (!rows)
        return;
    int name_width = 5;
    for (size_t i = 0; i < n; i++) {
        rows[i] = json_array_get(queues, i);
        int len = (int)json_string_length(json_object_get(rows[i], "name"));
        if (len > name_width)
            name_width = len;
    }
    qsort(rows, n, sizeof *rows, s_by_name);
    // The numbers take about 70 columns; a long name gets what is left, at least 16.
    int room = COLS - 72;
    if (name_width > room)
        name_width = room < 16 ? 16 : room;
    int y = 6;
    attron(A_REVERSE);
    mvprintw(y, 0, "%-*s %9s %9s %9s %10s %10s %10s %9s", name_width, "QUEUE", "READY", "UNACKED",
             "CONSUMERS", "PUBLISH/S", "DELIVER/S", "ACK/S", "OLDEST_MS");
    clrtoeol();
    attroff(A_REVERSE);
    for (size_t i = 0; i < n; i++) {
        if (++y >= LINES - 1 && i + 1 < n) {
            mvprintw(y, 0, "... %zu more queues (hopper list queues shows them all)", n - i);
            break;
        }
        const json_t *q = rows[i];
        const char *name = json_string_value(json_object_get(q, "name"));
        mvprintw(y, 0, "%-*.*s %9llu %9llu %9llu %10.2f %10.2f %10.2f %9llu", name_width,
                 name_width, name && *name ? name : "\"\"",
                 (unsigned long long)s_uint(q, "messages_ready"),
                 (unsigned long long)s_uint(q, "messages_unacked"),
                 (unsigned long long)s_uint(q, "consumers"), s_real(q, "publish_rate"),
                 s_real(q, "deliver_rate"), s_real(q, "ack_rate"),
                 (unsigned long long)s_uint(q, "oldest_ready_ms"));
    }
    free(rows);
}

static void
s_draw(const hop_cli_t *cli, s_view_t *view, int interval_ms)
{
    erase();
    s_draw_totals(cli, view->status, interval_ms);
    s_draw_queues(view->queues);
    refresh();
}

int
hop_cli_top(hop_cli_t *cli, int argc, char **argv)
{
    enum { S_OPT_INTERVAL = 1 };
    static const hop_cli_opt_t opts[] = {{"--interval", true, S_OPT_INTERVAL}, {NULL, false, 0}};
    hop_cli_parsed_t parsed;
    if (hop_cli_parse(cli, argc, argv, opts, 0, 0, "", &parsed) != HOP_EXIT_OK)
        return HOP_EXIT_USAGE;
    long interval = S_INTERVAL_DEFAULT;
    if (parsed.set[S_OPT_INTERVAL] &&
        hop_cli_number(cli, "--interval", parsed.value[S_OPT_INTERVAL], S_INTERVAL_MIN, 3600000,
                       &interval) != HOP_EXIT_OK)
        return HOP_EXIT_USAGE;
    if (cli->json)
        return hop_cli_usage(cli, "top is for people; for programs use hopper status --json and "
                                  "hopper list queues --json");
    if (!isatty(STDIN_FILENO) || !isatty(STDOUT_FILENO))
        return hop_cli_usage(cli, "top needs a terminal (stdin and stdout); for a snapshot use "
                                  "hopper status and hopper list queues");

    // Ctrl-C and kill end the loop (ncurses then restores the terminal). The client's I/O
    // thread starts with them blocked, so that they reach this thread and cut getch short.
    sigset_t stop_signals, old_mask;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_signals, &old_mask);
    hop_client_t *client;
    int exit_code = hop_cli_connect(cli, &client);
    struct sigaction sa, old_int, old_term;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = s_on_signal; // no SA_RESTART: getch returns at once
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
    s_view_t view = {NULL, NULL, ""};
    if (exit_code != HOP_EXIT_OK)
        goto done;
    int rc = s_fetch(client, &view);
    if (rc != HOP_OK) {
        exit_code = hop_cli_fail(cli, client, rc, NULL, "get the broker's status");
        goto done;
    }

    setlocale(LC_ALL, ""); // UTF-8 queue names draw as text
    // newterm rather than initscr: an unknown $TERM is an error to report, not an exit.
    SCREEN *screen = newterm(NULL, stdout, stdin);
    if (!screen) {
        const char *term = getenv("TERM");
        fprintf(stderr,
                "hopper: cannot drive the terminal (TERM=%s): set TERM to a terminal "
                "type terminfo knows, e.g. TERM=xterm\n",
                term ? term : "");
        exit_code = HOP_EXIT_USAGE;
        goto done;
    }
    cbreak(); // keys one at a time; Ctrl-C still signals
    noecho();
    keypad(stdscr, TRUE);
    curs_set(0);
    timeout((int)interval); // getch waits at most one interval
    while (!s_stop) {
        if (rc == HOP_OK)
            s_draw(cli, &view, (int)interval);
        else {
            // Keep the last figures out of sight: they are stale. Retry on the next turn.
            erase();
            mvprintw(0, 0, "hopper top - %s: %s", cli->endpoint, view.error);
            mvprintw(1, 0, "retrying every %ld ms (q quits)", interval);
            refresh();
        }
        int key = getch();
        if (key == 'q' || key == 'Q' || s_stop)
            break;
        // The interval passed, the window changed size or a key was pressed: refresh now.
        rc = s_fetch(client, &view);
    }
    endwin();
    delscreen(screen);
done:
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    json_decref(view.status);
    json_decref(view.queues);
    hop_client_destroy(&client);
    return exit_code;
}
