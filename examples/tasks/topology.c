// examples/tasks/topology.c - the task queue's exchange and queues; see tasks.h.
#include "tasks.h"

int
tasks_declare(hop_client_t *client)
{
    int rc = hop_client_declare_exchange(client, TASKS_EVENTS, "topic", HOP_DURABLE);
    // The jobs queue, durable like the jobs it holds, and with a retry policy of its own:
    // - retry_delay: a job a worker hands back (nack with requeue) is ready again only after
    //   1 s, then 2 s, 4 s...: whatever made it fail gets time to recover, and meanwhile the
    //   workers go on with other jobs;
    // - max_deliveries: after TASKS_ATTEMPTS attempts the job is not requeued but dead-lettered,
    //   republished to TASKS_EVENTS with key job.dead, so that a job that can never succeed
    //   does not come back forever.
    hop_queue_args_t args = {.retry_delay = 1000,
                             .retry_delay_max = 8000,
                             .max_deliveries = TASKS_ATTEMPTS,
                             .dead_letter_exchange = TASKS_EVENTS,
                             .dead_letter_key = "job.dead"};
    if (rc == HOP_OK)
        rc = hop_client_declare_queue_args(client, TASKS_QUEUE, HOP_DURABLE, &args, NULL, 0, NULL,
                                           NULL);
    // Dead jobs are kept for a human to look at: hopper get tasks.dead --json
    if (rc == HOP_OK)
        rc = hop_client_declare_queue(client, TASKS_DEAD, HOP_DURABLE, NULL, 0);
    if (rc == HOP_OK)
        rc = hop_client_bind(client, TASKS_DEAD, TASKS_EVENTS, "job.dead");
    return rc;
}
