// examples/tasks/api.c - tasks-api: the HTTP front of a task queue (the long-running-job
// pattern). A request that would take seconds is not done while the client waits: it is
// queued as a job, answered at once with the job's id, and the client asks about it later.
//
//     tasks-api [--port N]            (default 8080; 0 picks a free port)
//
//     POST /jobs              body: the job's input
//                             -> 202 {"id":"ID","status":"queued"}, Location: /jobs/ID
//     GET  /jobs/ID           -> 200 {"id":"ID","status":S,"attempts":N,"result":...}
//                                S is queued, running, done or failed; a failed job says
//                                "error" instead of "result"
//     GET  /jobs/ID?wait=SEC  the same, once the job is done or failed, or after SEC seconds
//                             (at most 60): a long poll
//
// Jobs go to a durable queue that tasks-worker processes consume; the workers report back over
// the bus (tasks.h), and this process keeps every job's state in memory.
#include "tasks.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_JOBS 10000     // jobs remembered; then POST answers 503
#define MAX_BODY (1 << 16) // bytes of a job's input
#define MAX_WAIT 60        // seconds a long poll may wait

typedef enum { JOB_QUEUED, JOB_RUNNING, JOB_DONE, JOB_FAILED } s_state_t;
static const char *const s_state_names[] = {"queued", "running", "done", "failed"};

typedef struct {
    char id[32];
    s_state_t state;
    unsigned attempts; // attempts started so far
    char *result;      // done: the result; otherwise the last error, or NULL
} s_job_t;

// What the HTTP threads (one per connection) and the bus thread (main) share.
static struct {
    pthread_mutex_t lock;         // guards the fields below up to publisher
    pthread_cond_t changed;       // signalled when a job changes state, or when stopping
    s_job_t *jobs;                // MAX_JOBS of them, count in use
    size_t count;                 //
    bool stopping;                // wake and end the long polls
    unsigned nonce;               // makes ids unique across runs
    pthread_mutex_t publish_lock; // one HTTP thread at a time uses the publisher
    hop_client_t *publisher;      // publishes jobs, in confirm mode
} s_api = {.lock = PTHREAD_MUTEX_INITIALIZER, .publish_lock = PTHREAD_MUTEX_INITIALIZER};

static volatile sig_atomic_t s_stop; // set by SIGINT/SIGTERM

static void
s_on_signal(int sig)
{
    (void)sig;
    s_stop = 1;
}

// Jobs -----------------------------------------------------------------------------------

// The job with id, or NULL. Call with the lock held.
static s_job_t *
s_job_find(const char *id)
{
    for (size_t i = 0; i < s_api.count; i++)
        if (strcmp(s_api.jobs[i].id, id) == 0)
            return &s_api.jobs[i];
    return NULL;
}

// Sets text as the job's result or error. Call with the lock held.
static void
s_job_text(s_job_t *job, const void *text, size_t size)
{
    free(job->result);
    job->result = malloc(size + 1);
    memcpy(job->result, text, size);
    job->result[size] = '\0';
}

// The job as JSON. Call with the lock held.
static json_t *
s_job_json(const s_job_t *job)
{
    json_t *json = json_pack("{s:s, s:s, s:I}", "id", job->id, "status", s_state_names[job->state],
                             "attempts", (json_int_t)job->attempts);
    if (job->result)
        json_object_set_new(json, job->state == JOB_DONE ? "result" : "error",
                            json_string(job->result));
    return json;
}

// One event from a worker, or a dead-lettered job (tasks.h).
static void
s_on_event(const hop_delivery_t *d)
{
    bool dead = strcmp(d->routing_key, "job.dead") == 0;
    const char *id = dead ? d->props.message_id : hop_delivery_header(d, "job");
    const char *attempt = hop_delivery_header(d, "attempt");
    unsigned n = attempt ? (unsigned)atoi(attempt) : 0;
    pthread_mutex_lock(&s_api.lock);
    s_job_t *job = id ? s_job_find(id) : NULL;
    // Events of one job arrive in the order they happened, but a job can be run twice (a
    // worker that died after reporting): once final, a job stays as it is, and the events of
    // an earlier attempt change nothing. (A dead letter is the job itself: no attempt header.)
    if (job && job->state != JOB_DONE && job->state != JOB_FAILED && (dead || n >= job->attempts)) {
        if (dead) {
            job->state = JOB_FAILED; // keeps the last attempt's error
            printf("tasks-api: job %s failed after %u attempts\n", job->id, job->attempts);
        } else if (strcmp(d->routing_key, "job.running") == 0) {
            job->state = JOB_RUNNING;
            job->attempts = n;
            printf("tasks-api: job %s running (attempt %u)\n", job->id, n);
        } else if (strcmp(d->routing_key, "job.failed") == 0) {
            job->state = JOB_QUEUED; // until the queue retries it, or dead-letters it
            s_job_text(job, d->body, d->body_size);
            printf("tasks-api: job %s attempt %u failed: %s\n", job->id, n, job->result);
        } else if (strcmp(d->routing_key, "job.done") == 0) {
            job->state = JOB_DONE;
            s_job_text(job, d->body, d->body_size);
            printf("tasks-api: job %s done\n", job->id);
        }
        pthread_cond_broadcast(&s_api.changed);
    }
    pthread_mutex_unlock(&s_api.lock);
}

// HTTP -----------------------------------------------------------------------------------

// Sends json (taken) with status.
static enum MHD_Result
s_respond(struct MHD_Connection *conn, unsigned status, json_t *json, const char *location)
{
    char *text = json_dumps(json, JSON_COMPACT);
    json_decref(json);
    size_t size = strlen(text);
    text = realloc(text, size + 2); // a final newline, for curl users
    memcpy(text + size, "\n", 2);
    struct MHD_Response *response =
        MHD_create_response_from_buffer(size + 1, text, MHD_RESPMEM_MUST_FREE);
    MHD_add_response_header(response, "Content-Type", "application/json");
    if (location)
        MHD_add_response_header(response, "Location", location);
    enum MHD_Result result = MHD_queue_response(conn, status, response);
    MHD_destroy_response(response);
    return result;
}

static enum MHD_Result
s_error(struct MHD_Connection *conn, unsigned status, const char *text)
{
    return s_respond(conn, status, json_pack("{s:s}", "error", text), NULL);
}

static enum MHD_Result
s_post_job(struct MHD_Connection *conn, const char *input, size_t size)
{
    if (size == 0)
        return s_error(conn, MHD_HTTP_BAD_REQUEST, "POST the job's input as the request body");
    pthread_mutex_lock(&s_api.lock);
    s_job_t *job = s_api.count < MAX_JOBS ? &s_api.jobs[s_api.count] : NULL;
    if (job) {
        // In the table before it is published: its first event may come back at once.
        snprintf(job->id, sizeof job->id, "%08x-%zu", s_api.nonce, ++s_api.count);
        job->state = JOB_QUEUED;
        printf("tasks-api: job %s submitted: \"%.*s\"\n", job->id, (int)size, input);
    }
    pthread_mutex_unlock(&s_api.lock);
    if (!job)
        return s_error(conn, MHD_HTTP_SERVICE_UNAVAILABLE, "too many jobs: restart tasks-api");

    // Publish and wait for the broker's confirm before answering 202: the id we hand out must
    // name a job that is safely in the queue. The message id carries the job id.
    hop_props_t props = {.message_id = job->id, .content_type = "text/plain"};
    hop_publish_opts_t opts = {.persistent = true}; // a durable queue's job is worth keeping
    pthread_mutex_lock(&s_api.publish_lock);
    int rc =
        hop_client_publish_ex(s_api.publisher, "", TASKS_QUEUE, input, size, &props, &opts, NULL);
    if (rc == HOP_OK)
        rc = hop_client_wait_confirms(s_api.publisher, 5000, NULL);
    char why[256];
    snprintf(why, sizeof why, "cannot queue the job: %s", hop_client_error(s_api.publisher));
    pthread_mutex_unlock(&s_api.publish_lock);

    pthread_mutex_lock(&s_api.lock);
    if (rc != HOP_OK) {
        job->state = JOB_FAILED;
        s_job_text(job, why, strlen(why));
    }
    json_t *json = s_job_json(job);
    pthread_mutex_unlock(&s_api.lock);
    if (rc != HOP_OK) {
        json_decref(json);
        printf("tasks-api: job %s failed: %s\n", job->id, why);
        return s_error(conn, MHD_HTTP_SERVICE_UNAVAILABLE, why);
    }
    char location[64];
    snprintf(location, sizeof location, "/jobs/%s", job->id);
    json_object_del(json, "attempts");
    return s_respond(conn, MHD_HTTP_ACCEPTED, json, location);
}

static enum MHD_Result
s_get_job(struct MHD_Connection *conn, const char *id)
{
    const char *wait = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "wait");
    int seconds = wait ? atoi(wait) : 0;
    seconds = seconds < 0 ? 0 : seconds > MAX_WAIT ? MAX_WAIT : seconds;
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += seconds;

    pthread_mutex_lock(&s_api.lock);
    s_job_t *job = s_job_find(id);
    // A long poll: rather than the client asking again and again, its request is held until
    // the job is done or failed (or the wait is over). Each connection has a thread of its
    // own, so waiting here holds up nobody else.
    int rc = 0;
    while (job && job->state != JOB_DONE && job->state != JOB_FAILED && !s_api.stopping &&
           rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&s_api.changed, &s_api.lock, &deadline);
    json_t *json = job ? s_job_json(job) : NULL;
    pthread_mutex_unlock(&s_api.lock);
    if (!json)
        return s_error(conn, MHD_HTTP_NOT_FOUND, "no such job");
    return s_respond(conn, MHD_HTTP_OK, json, NULL);
}

// A POST body, collected from the pieces libmicrohttpd hands over.
typedef struct {
    size_t size;
    bool too_big;
    char data[MAX_BODY];
} s_body_t;

static enum MHD_Result
s_handle(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
         const char *version, const char *upload, size_t *upload_size, void **state)
{
    (void)cls, (void)version;
    if (strcmp(method, "POST") == 0 && strcmp(url, "/jobs") == 0) {
        // Called first with the headers, then once per piece of body, then once more with
        // none: that is when the request is complete and we answer.
        s_body_t *body = *state;
        if (!body) {
            *state = calloc(1, sizeof *body);
            return *state ? MHD_YES : MHD_NO;
        }
        if (*upload_size) {
            if (body->size + *upload_size > MAX_BODY)
                body->too_big = true;
            else {
                memcpy(body->data + body->size, upload, *upload_size);
                body->size += *upload_size;
            }
            *upload_size = 0;
            return MHD_YES;
        }
        if (body->too_big)
            return s_error(conn, MHD_HTTP_CONTENT_TOO_LARGE, "a job's input is at most 64 KiB");
        return s_post_job(conn, body->data, body->size);
    }
    if (strcmp(method, "GET") == 0 && strncmp(url, "/jobs/", 6) == 0)
        return s_get_job(conn, url + 6);
    return s_error(conn, MHD_HTTP_NOT_FOUND, "try POST /jobs or GET /jobs/ID");
}

static void
s_completed(void *cls, struct MHD_Connection *conn, void **state,
            enum MHD_RequestTerminationCode why)
{
    (void)cls, (void)conn, (void)why;
    free(*state); // a POST's body
    *state = NULL;
}

// Main: the bus thread -------------------------------------------------------------------

static hop_client_t *
s_connect(const char *name, int *rc)
{
    hop_client_t *client = hop_client_new();
    hop_client_set_name(client, name);
    if (*rc == HOP_OK)
        *rc = hop_client_connect(client, NULL); // $HOPPER_BROKER, else tcp://127.0.0.1:5680
    return client;
}

int
main(int argc, char **argv)
{
    int port = 8080;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--port") == 0 && i + 1 < argc)
            port = atoi(argv[++i]);
        else
            port = -1;
    }
    if (port < 0 || port > 65535) {
        fprintf(stderr, "usage: tasks-api [--port N]\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    struct sigaction sa = {.sa_handler = s_on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    pthread_condattr_t attr; // long polls count their wait on the monotonic clock
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&s_api.changed, &attr);
    pthread_condattr_destroy(&attr);
    s_api.jobs = calloc(MAX_JOBS, sizeof *s_api.jobs);
    s_api.nonce = (unsigned)time(NULL) ^ (unsigned)getpid() << 16;

    // Two clients, one per role: a client serves one thread at a time, and this thread
    // waits for events on its own client while HTTP threads publish on the other.
    int rc = HOP_OK;
    hop_client_t *events = s_connect("tasks-api events", &rc);
    s_api.publisher = s_connect("tasks-api jobs", &rc);
    if (rc == HOP_OK)
        rc = tasks_declare(events);
    if (rc == HOP_OK)
        rc = hop_client_confirm_select(s_api.publisher);
    // The events come to a private queue: server-named, exclusive to this process and deleted
    // with it (they describe this process's jobs). No-ack: they are worth nothing after a crash.
    char queue[HOP_NAME_MAX + 1];
    if (rc == HOP_OK)
        rc = hop_client_declare_queue(events, "", HOP_EXCLUSIVE | HOP_AUTO_DELETE, queue,
                                      sizeof queue);
    if (rc == HOP_OK)
        rc = hop_client_bind(events, queue, TASKS_EVENTS, "job.#");
    if (rc == HOP_OK)
        rc = hop_client_consume(events, queue, NULL, 0, HOP_NO_ACK, NULL, 0);
    struct MHD_Daemon *http = NULL;
    if (rc == HOP_OK) {
        struct sockaddr_in addr = {.sin_family = AF_INET,
                                   .sin_port = htons((uint16_t)port),
                                   .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        http = MHD_start_daemon(
            MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_ERROR_LOG,
            (uint16_t)port, NULL, NULL, s_handle, NULL, MHD_OPTION_SOCK_ADDR, &addr,
            MHD_OPTION_NOTIFY_COMPLETED, s_completed, NULL, MHD_OPTION_END);
        const union MHD_DaemonInfo *info =
            http ? MHD_get_daemon_info(http, MHD_DAEMON_INFO_BIND_PORT) : NULL;
        if (info)
            printf("tasks-api: listening on http://127.0.0.1:%u\n", (unsigned)info->port);
        else {
            fprintf(stderr, "tasks-api: cannot listen on port %d\n", port);
            if (http)
                MHD_stop_daemon(http);
            http = NULL;
        }
    } else {
        hop_client_t *failed = hop_client_error(events)[0] ? events : s_api.publisher;
        fprintf(stderr, "tasks-api: %s\n", hop_client_error(failed));
    }

    while (http && !s_stop) {
        hop_delivery_t *d;
        int got = hop_client_receive(events, &d, 500);
        if (got == HOP_OK) {
            s_on_event(d);
            hop_delivery_destroy(&d);
        } else if (got != HOP_ETIMEOUT) {
            fprintf(stderr, "tasks-api: %s\n", hop_client_error(events));
            rc = got;
            break;
        }
    }
    pthread_mutex_lock(&s_api.lock);
    s_api.stopping = true; // ends the long polls, so that the HTTP threads can be joined
    pthread_cond_broadcast(&s_api.changed);
    pthread_mutex_unlock(&s_api.lock);
    if (http)
        MHD_stop_daemon(http);
    hop_client_destroy(&events);
    hop_client_destroy(&s_api.publisher);
    for (size_t i = 0; i < s_api.count; i++)
        free(s_api.jobs[i].result);
    free(s_api.jobs);
    pthread_cond_destroy(&s_api.changed);
    return rc == HOP_OK && http ? 0 : 1;
}
