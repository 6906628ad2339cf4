// examples/tasks/worker.c - tasks-worker: runs the jobs that tasks-api queues.
//
//     tasks-worker [--name NAME] [--job-ms MS]
//
// The job is deliberately slow: it takes MS ms (default 3000), then returns its input in
// capitals. A job whose input starts with "fail" fails on every attempt, to show retries with
// backoff and, after the last attempt, the dead letter. Start as many workers as you like:
// they share the jobs queue.
#include "tasks.h"

#include <ctype.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t s_stop; // set by SIGINT/SIGTERM

static void
s_on_signal(int sig)
{
    (void)sig;
    s_stop = 1;
}

// Waits ms, in short naps so that a stop request is noticed. Returns false when stopping.
static bool
s_work_for(long ms)
{
    for (long slept = 0; slept < ms && !s_stop; slept += 100) {
        long nap = ms - slept < 100 ? ms - slept : 100;
        struct timespec ts = {.tv_sec = 0, .tv_nsec = nap * 1000000L};
        nanosleep(&ts, NULL);
    }
    return !s_stop;
}

// Reports on the job: key is job.running, job.failed or job.done (see tasks.h).
static int
s_report(hop_client_t *client, const char *key, const char *job, unsigned attempt, const char *text)
{
    char number[16];
    snprintf(number, sizeof number, "%u", attempt);
    hop_header_t headers[] = {{"job", job}, {"attempt", number}};
    hop_props_t props = {.headers = headers, .header_count = 2};
    return hop_client_publish(client, TASKS_EVENTS, key, text, strlen(text), &props);
}

static int
s_run(hop_client_t *client, const char *name, const hop_delivery_t *d, long job_ms)
{
    const char *job = d->props.message_id ? d->props.message_id : "?";
    unsigned attempt = d->delivery_count; // 1, 2, ...: the broker counts deliveries for us
    printf("%s: job %s, attempt %u: \"%.*s\"\n", name, job, attempt, (int)d->body_size,
           (const char *)d->body);
    int rc = s_report(client, "job.running", job, attempt, "");
    if (rc != HOP_OK || !s_work_for(job_ms))
        return rc; // stopping: not acked, so the job goes back to the queue when we close
    if (d->body_size >= 4 && memcmp(d->body, "fail", 4) == 0) {
        printf("%s: job %s, attempt %u failed\n", name, job, attempt);
        rc = s_report(client, "job.failed", job, attempt, "this job always fails");
        // Hand it back (nack with requeue): the queue's retry_delay holds it for a while, and
        // after its last attempt the broker dead-letters it instead (tasks.h).
        if (rc == HOP_OK)
            rc = hop_client_nack(client, d->tag, false, true);
        return rc;
    }
    char *result = malloc(d->body_size + 1);
    for (size_t i = 0; i < d->body_size; i++)
        result[i] = (char)toupper(((const unsigned char *)d->body)[i]);
    result[d->body_size] = '\0';
    // The result goes back over the bus, then the ack. The broker handles one connection's
    // messages in order, so the result is routed before the job leaves the queue; a worker that
    // dies in between gets its job run again (at least once), never lost.
    rc = s_report(client, "job.done", job, attempt, result);
    if (rc == HOP_OK)
        rc = hop_client_ack(client, d->tag, false);
    printf("%s: job %s done: \"%s\"\n", name, job, result);
    free(result);
    return rc;
}

int
main(int argc, char **argv)
{
    char name[64];
    snprintf(name, sizeof name, "worker-%d", (int)getpid());
    long job_ms = 3000;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--name") == 0 && i + 1 < argc)
            snprintf(name, sizeof name, "%s", argv[++i]);
        else if (strcmp(argv[i], "--job-ms") == 0 && i + 1 < argc)
            job_ms = atol(argv[++i]);
        else {
            fprintf(stderr, "usage: tasks-worker [--name NAME] [--job-ms MS]\n");
            return 2;
        }
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    struct sigaction sa = {.sa_handler = s_on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    hop_client_t *client = hop_client_new();
    hop_client_set_name(client, name);
    int rc = hop_client_connect(client, NULL); // $HOPPER_BROKER, else tcp://127.0.0.1:5680
    if (rc == HOP_OK)
        rc = tasks_declare(client);
    // Prefetch 1: jobs are slow, so a worker takes one at a time and the next job goes to
    // whichever worker is free, not into the buffer of one that is busy for seconds.
    if (rc == HOP_OK)
        rc = hop_client_consume(client, TASKS_QUEUE, NULL, 1, 0, NULL, 0);
    if (rc == HOP_OK)
        printf("%s: ready for jobs on queue %s\n", name, TASKS_QUEUE);
    while (rc == HOP_OK && !s_stop) {
        hop_delivery_t *d;
        rc = hop_client_receive(client, &d, 500);
        if (rc == HOP_ETIMEOUT) {
            rc = HOP_OK; // nothing yet: look at s_stop, wait again
            continue;
        }
        if (rc == HOP_OK) {
            rc = s_run(client, name, d, job_ms);
            hop_delivery_destroy(&d);
        }
    }
    if (rc != HOP_OK)
        fprintf(stderr, "%s: %s\n", name, hop_client_error(client));
    hop_client_destroy(&client);
    return rc == HOP_OK ? 0 : 1;
}
