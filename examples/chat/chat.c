// examples/chat/chat.c - a terminal chat room on a fanout exchange.
//
//     chat ROOM NICK
//
// Type a line and press Enter: everyone in ROOM sees it as "<NICK> line". Ctrl-D or Ctrl-C
// leaves. Others joining and leaving are announced as "* NICK joined" and "* NICK left".
//
// A room is a fanout exchange, "chat.ROOM": it copies each message to every queue bound to it,
// whatever the routing key. Each client has a queue of its own bound to its room, so each
// client gets a copy of every line said there, and nothing said in other rooms.
#include <hopper.h>

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static atomic_bool s_quit; // Ctrl-C, or we are leaving: the listener stops

static void
s_on_signal(int sig)
{
    (void)sig;
    s_quit = true; // the main thread's read is interrupted (no SA_RESTART) and sees it
}

typedef struct {
    hop_client_t *client; // the listener's own client
    const char *me;       // our sender id: our own lines come back to us too
} s_listener_t;

// The listener thread: prints what others say in the room.
static void *
s_listen(void *arg)
{
    s_listener_t *self = arg;
    while (!s_quit) {
        hop_delivery_t *d;
        int rc = hop_client_receive(self->client, &d, 200);
        if (rc == HOP_ETIMEOUT)
            continue; // look at s_quit now and then
        if (rc != HOP_OK) {
            fprintf(stderr, "chat: %s\n", hop_client_error(self->client));
            break;
        }
        const char *nick = hop_delivery_header(d, "nick");
        const char *type = d->props.type ? d->props.type : "";
        bool mine = d->props.app_id && strcmp(d->props.app_id, self->me) == 0;
        if (nick && !mine) {
            if (strcmp(type, "join") == 0 || strcmp(type, "leave") == 0)
                printf("* %s %s\n", nick, strcmp(type, "join") == 0 ? "joined" : "left");
            else
                printf("<%s> %.*s\n", nick, (int)d->body_size, (const char *)d->body);
        }
        hop_delivery_destroy(&d);
    }
    return NULL;
}

static hop_client_t *
s_connect(const char *name, int *rc)
{
    hop_client_t *client = hop_client_new();
    hop_client_set_name(client, name);
    if (*rc == HOP_OK)
        *rc = hop_client_connect(client, NULL); // $HOPPER_BROKER, else tcp://127.0.0.1:5680
    return client;
}

// Says something in the room: text with our nickname in a header, type "say", "join" or
// "leave". The routing key is ignored by a fanout exchange.
static int
s_say(hop_client_t *client, const char *exchange, const char *nick, const char *me,
      const char *type, const char *text)
{
    hop_header_t header = {"nick", nick};
    hop_props_t props = {.type = type, .app_id = me, .headers = &header, .header_count = 1};
    return hop_client_publish(client, exchange, "", text, strlen(text), &props);
}

int
main(int argc, char **argv)
{
    if (argc != 3 || !*argv[1] || !*argv[2]) {
        fprintf(stderr, "usage: chat ROOM NICK\n");
        return 2;
    }
    const char *room = argv[1], *nick = argv[2];
    char exchange[HOP_NAME_MAX + 1], me[64];
    snprintf(exchange, sizeof exchange, "chat.%s", room);
    snprintf(me, sizeof me, "chat-%d-%lld", (int)getpid(), (long long)time(NULL));
    setvbuf(stdout, NULL, _IOLBF, 0);

    // Signals go to the main thread only: the threads started below (ours and the clients'
    // I/O threads) inherit this mask, and the main thread unblocks them afterwards.
    sigset_t signals, old;
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &signals, &old);

    // Two clients, because a client serves one thread at a time: the listener thread
    // receives on one while this thread blocks reading the keyboard and talks on the other.
    int rc = HOP_OK;
    hop_client_t *talk = s_connect(nick, &rc);
    hop_client_t *listen = s_connect(nick, &rc);
    char queue[HOP_NAME_MAX + 1];
    if (rc == HOP_OK)
        rc = hop_client_declare_exchange(listen, exchange, "fanout", 0);
    // Our queue: server-named (""), exclusive (only this connection may use it: nobody else
    // reads our copy of the room) and auto-delete (it goes away when we do, so a client that
    // left does not keep collecting messages nobody will read).
    if (rc == HOP_OK)
        rc = hop_client_declare_queue(listen, "", HOP_EXCLUSIVE | HOP_AUTO_DELETE, queue,
                                      sizeof queue);
    if (rc == HOP_OK)
        rc = hop_client_bind(listen, queue, exchange, "");
    // No-ack: a chat line is worth showing once, not worth redelivering.
    if (rc == HOP_OK)
        rc = hop_client_consume(listen, queue, NULL, 0, HOP_NO_ACK, NULL, 0);
    // (hop_client_subscribe(listen, exchange, NULL, ...) does these three steps in one call.)
    if (rc != HOP_OK) {
        hop_client_t *failed = hop_client_error(talk)[0] ? talk : listen; // the one that failed
        fprintf(stderr, "chat: %s\n", hop_client_error(failed));
        hop_client_destroy(&listen);
        hop_client_destroy(&talk);
        return 1;
    }
    s_listener_t listener = {listen, me};
    pthread_t thread;
    pthread_create(&thread, NULL, s_listen, &listener);
    struct sigaction sa = {.sa_handler = s_on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);

    // Bound before announcing: from here on we miss nothing said in the room.
    printf("* you are %s in room %s (Ctrl-D to leave)\n", nick, room);
    rc = s_say(talk, exchange, nick, me, "join", "");
    char *line = NULL;
    size_t size = 0;
    ssize_t len;
    while (rc == HOP_OK && !s_quit && (len = getline(&line, &size, stdin)) > 0) {
        if (line[len - 1] == '\n')
            line[--len] = '\0';
        if (len > 0)
            rc = s_say(talk, exchange, nick, me, "say", line);
    }
    if (rc == HOP_OK)
        rc = s_say(talk, exchange, nick, me, "leave", "");
    if (rc != HOP_OK)
        fprintf(stderr, "chat: %s\n", hop_client_error(talk));
    free(line);
    s_quit = true;
    pthread_join(thread, NULL);
    hop_client_destroy(&listen); // our queue is deleted with it (auto-delete)
    hop_client_destroy(&talk);   // a polite close: the leave notice is sent first
    return rc == HOP_OK ? 0 : 1;
}
