// examples/tasks/tasks.h - what the HTTP front (tasks-api) and the workers (tasks-worker)
// agree on: the names on the bus and the arguments of the jobs queue.
//
// A job travels as a message on TASKS_QUEUE: its body is the job's input, its message_id the
// job id. Workers report on the topic exchange TASKS_EVENTS, with headers "job" (the id) and
// "attempt" (1, 2, ...):
//   job.running  an attempt started
//   job.failed   an attempt failed (body: the error); the queue retries it later...
//   job.dead     ...unless that was the last attempt: the broker dead-letters the job itself
//                here (message_id: the job id), and keeps a copy in TASKS_DEAD
//   job.done     the job succeeded (body: the result)
#ifndef TASKS_H_INCLUDED
#define TASKS_H_INCLUDED

#include <hopper.h>

#define TASKS_QUEUE    "tasks.jobs"   // durable queue of jobs waiting for a worker
#define TASKS_EVENTS   "tasks.events" // topic exchange of job events
#define TASKS_DEAD     "tasks.dead"   // durable queue of jobs that failed every attempt
#define TASKS_ATTEMPTS 3              // attempts before a job is dead-lettered

// Declares the exchange and both queues with their bindings (declaring is idempotent, so
// both programs do it and either may start first). Returns HOP_OK or an error code.
int tasks_declare(hop_client_t *client);

#endif
