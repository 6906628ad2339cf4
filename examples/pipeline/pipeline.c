// examples/pipeline/pipeline.c - a bounded producer/consumer pipeline that loses nothing.
//
//     pipeline [--producers N] [--consumers N] [--messages N] [--work-ms MS]
//
// Producers (threads) publish {producer_id, value, timestamp} as msgpack into a queue that holds
// at most 100 messages; consumers (threads) take them out, each one at a time, and pretend to
// work on each for --work-ms. The producers are faster, so the queue fills up and the broker
// refuses what does not fit; a producer hears of it through a negative publisher confirm, waits
// a little and sends the same message again. At the end the program prints what each producer
// sent, what each consumer received and the totals, which match exactly.
#include <hopper.h>

#include <msgpack.h>

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define QUEUE       "pipeline.buffer"
#define QUEUE_LIMIT 100 // messages the queue may hold
#define MAX_THREADS 64

typedef struct {
    int id;
    pthread_t thread;
    uint64_t count;   // producer: messages confirmed; consumer: messages received
    uint64_t refused; // producer: negative confirms, each followed by a retry
    uint64_t waited;  // consumer: ms its messages spent between publish and receipt, summed
    int rc;           // HOP_OK, or what stopped the thread
} s_worker_t;

// What the threads share.
static struct {
    int producers;          // how many
    int messages;           // per producer
    long work_ms;           // a consumer's work per message
    atomic_int producing;   // producers still running
    atomic_ullong sent;     // messages confirmed, all producers
    atomic_ullong received; // messages received, all consumers
    atomic_uint *seen;      // [(producer_id - 1) * messages + value]: times received
} s_run;

static uint64_t
s_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void
s_sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = ms % 1000 * 1000000L};
    nanosleep(&ts, NULL);
}

// One client per thread: a client is used by one thread at a time (like an AMQP channel).
static hop_client_t *
s_connect(const char *role, int id, int *rc)
{
    char name[64];
    snprintf(name, sizeof name, "pipeline-%s-%d", role, id);
    hop_client_t *client = hop_client_new();
    hop_client_set_name(client, name);
    *rc = hop_client_connect(client, NULL); // $HOPPER_BROKER, else tcp://127.0.0.1:5680
    return client;
}

static void *
s_produce(void *arg)
{
    s_worker_t *self = arg;
    hop_client_t *client = s_connect("producer", self->id, &self->rc);
    // Confirm mode: the broker answers every publish, positively once the message is in the
    // queue, negatively when it refused it (here: the queue was full). Without confirms a
    // refused message would be gone without the producer ever knowing.
    if (self->rc == HOP_OK)
        self->rc = hop_client_confirm_select(client);
    hop_props_t props = {.content_type = "application/msgpack"};
    msgpack_sbuffer buffer; // one buffer for all messages, cleared each time
    msgpack_sbuffer_init(&buffer);
    msgpack_packer packer;
    msgpack_packer_init(&packer, &buffer, msgpack_sbuffer_write);
    for (int value = 0; value < s_run.messages && self->rc == HOP_OK; value++) {
        msgpack_sbuffer_clear(&buffer);
        msgpack_pack_map(&packer, 3);
        msgpack_pack_str_with_body(&packer, "producer_id", 11);
        msgpack_pack_int(&packer, self->id);
        msgpack_pack_str_with_body(&packer, "value", 5);
        msgpack_pack_int(&packer, value);
        msgpack_pack_str_with_body(&packer, "timestamp", 9);
        msgpack_pack_uint64(&packer, s_now_ms());
        long backoff_ms = 1;
        for (;;) {
            // One message at a time, waiting for its confirm, keeps the example short; a
            // faster producer keeps a window of unconfirmed messages (hop_client_on_confirm).
            uint64_t refused = 0;
            self->rc = hop_client_publish(client, "", QUEUE, buffer.data, buffer.size, &props);
            if (self->rc == HOP_OK)
                self->rc = hop_client_wait_confirms(client, 10000, &refused);
            if (self->rc != HOP_ENACKED)
                break;
            // Refused (or lost with the connection): wait for the consumers to make room,
            // longer each time, and send the same message again.
            self->refused += refused;
            s_sleep_ms(backoff_ms);
            backoff_ms = backoff_ms * 2 < 100 ? backoff_ms * 2 : 100;
        }
        if (self->rc == HOP_OK) {
            self->count++;
            s_run.sent++;
        }
    }
    if (self->rc != HOP_OK)
        fprintf(stderr, "pipeline: producer %d: %s\n", self->id, hop_client_error(client));
    msgpack_sbuffer_destroy(&buffer);
    hop_client_destroy(&client);
    s_run.producing--;
    return NULL;
}

// The unsigned field key of the msgpack map obj, or -1.
static int64_t
s_field(const msgpack_object *obj, const char *key)
{
    if (obj->type != MSGPACK_OBJECT_MAP)
        return -1;
    for (uint32_t i = 0; i < obj->via.map.size; i++) {
        const msgpack_object_kv *kv = &obj->via.map.ptr[i];
        if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == strlen(key) &&
            memcmp(kv->key.via.str.ptr, key, kv->key.via.str.size) == 0)
            return kv->val.type == MSGPACK_OBJECT_POSITIVE_INTEGER ? (int64_t)kv->val.via.u64 : -1;
    }
    return -1;
}

// Records one message; false when it is not one of ours.
static bool
s_record(s_worker_t *self, const msgpack_object *obj)
{
    int64_t producer = s_field(obj, "producer_id");
    int64_t value = s_field(obj, "value");
    int64_t timestamp = s_field(obj, "timestamp");
    if (producer < 1 || producer > s_run.producers || value < 0 || value >= s_run.messages ||
        timestamp < 0)
        return false;
    s_run.seen[(producer - 1) * s_run.messages + value]++;
    uint64_t now = s_now_ms();
    self->waited += now > (uint64_t)timestamp ? now - (uint64_t)timestamp : 0;
    return true;
}

static void *
s_consume(void *arg)
{
    s_worker_t *self = arg;
    hop_client_t *client = s_connect("consumer", self->id, &self->rc);
    // Prefetch 1: the broker sends this consumer a new message only once it acked the last
    // one, so messages go to whichever consumer is free (fair dispatch) instead of queueing
    // up in a busy consumer's buffer while another consumer idles.
    if (self->rc == HOP_OK)
        self->rc = hop_client_consume(client, QUEUE, NULL, 1, 0, NULL, 0);
    msgpack_unpacked unpacked; // reused for every message
    msgpack_unpacked_init(&unpacked);
    uint64_t idle_since = s_now_ms();
    while (self->rc == HOP_OK) {
        hop_delivery_t *d;
        int rc = hop_client_receive(client, &d, 100);
        if (rc == HOP_ETIMEOUT) {
            // Done once the producers are and everything they sent has arrived (or, should
            // something be missing, after 2 s of silence: the totals will show it).
            if (s_run.producing == 0 &&
                (s_run.received >= s_run.sent || s_now_ms() - idle_since > 2000))
                break;
            continue;
        }
        self->rc = rc;
        if (rc != HOP_OK)
            break;
        idle_since = s_now_ms();
        if (msgpack_unpack_next(&unpacked, d->body, d->body_size, NULL) == MSGPACK_UNPACK_SUCCESS &&
            s_record(self, &unpacked.data)) {
            s_sleep_ms(s_run.work_ms); // the work
            self->count++;
            s_run.received++;
        } else
            fprintf(stderr, "pipeline: consumer %d: dropping a message that is not ours\n",
                    self->id);
        self->rc = hop_client_ack(client, d->tag, false);
        hop_delivery_destroy(&d);
    }
    if (self->rc != HOP_OK)
        fprintf(stderr, "pipeline: consumer %d: %s\n", self->id, hop_client_error(client));
    msgpack_unpacked_destroy(&unpacked);
    hop_client_destroy(&client);
    return NULL;
}

// Declares the bounded queue and empties it, so that the counts start from zero.
static int
s_prepare_queue(void)
{
    int rc;
    hop_client_t *client = s_connect("setup", 0, &rc);
    // reject-publish: a full queue refuses new messages (the publisher gets a negative
    // confirm) rather than dropping its oldest one (drop-head, the default), so that back
    // pressure reaches the producers and nothing is thrown away.
    hop_queue_args_t args = {.max_length = QUEUE_LIMIT, .overflow = "reject-publish"};
    if (rc == HOP_OK)
        rc = hop_client_declare_queue_args(client, QUEUE, 0, &args, NULL, 0, NULL, NULL);
    if (rc == HOP_OK)
        rc = hop_client_purge_queue(client, QUEUE, NULL);
    if (rc != HOP_OK)
        fprintf(stderr, "pipeline: %s\n", hop_client_error(client));
    hop_client_destroy(&client);
    return rc;
}

int
main(int argc, char **argv)
{
    int consumers = 2;
    s_run.producers = 3;
    s_run.messages = 1000;
    s_run.work_ms = 2;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--producers") == 0 && i + 1 < argc)
            s_run.producers = atoi(argv[++i]);
        else if (strcmp(argv[i], "--consumers") == 0 && i + 1 < argc)
            consumers = atoi(argv[++i]);
        else if (strcmp(argv[i], "--messages") == 0 && i + 1 < argc)
            s_run.messages = atoi(argv[++i]);
        else if (strcmp(argv[i], "--work-ms") == 0 && i + 1 < argc)
            s_run.work_ms = atol(argv[++i]);
        else
            s_run.producers = 0; // usage
    }
    int producers = s_run.producers;
    if (producers < 1 || producers > MAX_THREADS || consumers < 1 || consumers > MAX_THREADS ||
        s_run.messages < 1) {
        fprintf(stderr,
                "usage: pipeline [--producers 1..%d] [--consumers 1..%d] [--messages N] "
                "[--work-ms MS]\n",
                MAX_THREADS, MAX_THREADS);
        return 2;
    }
    if (s_prepare_queue() != HOP_OK)
        return 1;
    s_run.seen = calloc((size_t)producers * (size_t)s_run.messages, sizeof *s_run.seen);
    s_worker_t producer[MAX_THREADS] = {{0}}, consumer[MAX_THREADS] = {{0}};
    s_run.producing = producers;
    for (int i = 0; i < consumers; i++) {
        consumer[i].id = i + 1;
        pthread_create(&consumer[i].thread, NULL, s_consume, &consumer[i]);
    }
    for (int i = 0; i < producers; i++) {
        producer[i].id = i + 1;
        pthread_create(&producer[i].thread, NULL, s_produce, &producer[i]);
    }

    uint64_t sent = 0, received = 0, refused = 0, lost = 0, duplicated = 0;
    bool failed = false;
    for (int i = 0; i < producers; i++) {
        pthread_join(producer[i].thread, NULL);
        printf("producer %d: sent %" PRIu64 " (refused %" PRIu64 " times, each retried)\n",
               producer[i].id, producer[i].count, producer[i].refused);
        sent += producer[i].count;
        refused += producer[i].refused;
        failed |= producer[i].rc != HOP_OK;
    }
    for (int i = 0; i < consumers; i++) {
        pthread_join(consumer[i].thread, NULL);
        uint64_t n = consumer[i].count;
        printf("consumer %d: received %" PRIu64 " (%" PRIu64 " ms in the queue on average)\n",
               consumer[i].id, n, n ? consumer[i].waited / n : 0);
        received += n;
        failed |= consumer[i].rc != HOP_OK;
    }
    for (size_t i = 0; i < (size_t)producers * (size_t)s_run.messages; i++) {
        lost += s_run.seen[i] == 0;
        duplicated += s_run.seen[i] > 1 ? s_run.seen[i] - 1 : 0;
    }
    printf("total: sent %" PRIu64 ", received %" PRIu64 ", refused %" PRIu64 ", lost %" PRIu64
           ", duplicated %" PRIu64 "\n",
           sent, received, refused, lost, duplicated);
    free(s_run.seen);
    return !failed && sent == received && lost == 0 && duplicated == 0 ? 0 : 1;
}
