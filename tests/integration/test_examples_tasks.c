// tests/integration/test_examples_tasks.c - examples/tasks (HTTP task service), over real HTTP
// from a small socket client: POST /jobs answers 202 with an id, every job reaches a final
// state through long polls (done with its result after one attempt, or, for the job made to
// fail, failed after exactly 3 attempts and dead-lettered), unknown ids are 404.
#include "test_examples_util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define WORKERS 3
#define JOBS    6 // the last one fails on purpose

typedef struct {
    int status;         // HTTP status, or -1 when there was no valid answer
    char location[128]; // the Location header, or ""
    json_t *body;       // the JSON body, or NULL
} s_http_t;

// One HTTP/1.0 request (the connection closes after the answer), waiting up to 30 s.
static s_http_t
s_http(int port, const char *method, const char *path, const char *body)
{
    s_http_t result = {.status = -1};
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct timeval timeout = {.tv_sec = 30};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    struct sockaddr_in addr = {.sin_family = AF_INET,
                               .sin_port = htons((uint16_t)port),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
        close(fd);
        return result;
    }
    char request[1024];
    int len = snprintf(request, sizeof request,
                       "%s %s HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: %zu\r\n\r\n%s", method,
                       path, body ? strlen(body) : 0, body ? body : "");
    assert_int_equal(write(fd, request, (size_t)len), len);
    static char response[65536];
    size_t size = 0;
    ssize_t n;
    while (size < sizeof response - 1 &&
           (n = read(fd, response + size, sizeof response - 1 - size)) != 0) {
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            break;
        size += (size_t)n;
    }
    close(fd);
    response[size] = '\0';
    const char *head_end = strstr(response, "\r\n\r\n");
    if (sscanf(response, "HTTP/1.%*d %d", &result.status) != 1 || !head_end) {
        result.status = -1;
        return result;
    }
    const char *location = strstr(response, "\r\nLocation: ");
    if (location && location < head_end)
        sscanf(location + 12, "%127[^\r]", result.location);
    result.body = json_loads(head_end + 4, 0, NULL);
    return result;
}

static const char *
s_str(json_t *object, const char *key)
{
    const char *value = json_string_value(json_object_get(object, key));
    return value ? value : "";
}

static void
test_tasks_every_job_reaches_a_final_state(void **state)
{
    fx_t *fx = *state;
    ex_proc_t *workers[WORKERS];
    for (int i = 0; i < WORKERS; i++) {
        char name[16];
        snprintf(name, sizeof name, "w%d", i + 1);
        workers[i] =
            ex_start(name, false, "tasks/tasks-worker", "--name", name, "--job-ms", "300", NULL);
        ex_expect_output(workers[i], "ready for jobs", 1);
    }
    ex_proc_t *api = ex_start("tasks-api", false, "tasks/tasks-api", "--port", "0", NULL);
    ex_expect_output(api, "listening on http://127.0.0.1:", 1);
    char *out = ex_output(api);
    int port = 0;
    const char *at = strstr(out, "127.0.0.1:");
    EX_CHECK(at && sscanf(at, "127.0.0.1:%d", &port) == 1 && port > 0, "no port in '%s'", out);
    free(out);

    // Submit: 202 at once, with the job's id and where to ask about it.
    const char *inputs[JOBS] = {"make it loud", "hello",  "job three",
                                "four",         "fifth!", "fail: this one never works"};
    char ids[JOBS][64];
    for (int i = 0; i < JOBS; i++) {
        s_http_t r = s_http(port, "POST", "/jobs", inputs[i]);
        EX_CHECK(r.status == 202 && r.body, "POST /jobs '%s': status %d", inputs[i], r.status);
        snprintf(ids[i], sizeof ids[i], "%s", s_str(r.body, "id"));
        char location[128];
        snprintf(location, sizeof location, "/jobs/%.63s", ids[i]);
        EX_CHECK(*ids[i] && strcmp(r.location, location) == 0, "POST: id '%s', Location '%s'",
                 ids[i], r.location);
        json_decref(r.body);
    }

    // Every job ends, each as it should; the long poll returns once it has.
    for (int i = 0; i < JOBS; i++) {
        char path[128];
        snprintf(path, sizeof path, "/jobs/%.63s?wait=25", ids[i]);
        s_http_t r = s_http(port, "GET", path, NULL);
        EX_CHECK(r.status == 200 && r.body, "GET %s: status %d", path, r.status);
        char *text = json_dumps(r.body, JSON_COMPACT);
        json_int_t attempts = json_integer_value(json_object_get(r.body, "attempts"));
        if (i < JOBS - 1) {
            char upper[64];
            size_t n = strlen(inputs[i]);
            for (size_t k = 0; k <= n; k++)
                upper[k] = (char)(inputs[i][k] >= 'a' && inputs[i][k] <= 'z' ? inputs[i][k] - 32
                                                                             : inputs[i][k]);
            EX_CHECK(strcmp(s_str(r.body, "status"), "done") == 0 &&
                         strcmp(s_str(r.body, "result"), upper) == 0 && attempts == 1,
                     "job %s: %s", ids[i], text);
        } else
            EX_CHECK(strcmp(s_str(r.body, "status"), "failed") == 0 && attempts == 3 &&
                         *s_str(r.body, "error"),
                     "the failing job: %s", text);
        free(text);
        json_decref(r.body);
    }

    s_http_t r = s_http(port, "GET", "/jobs/no-such-job", NULL);
    EX_CHECK(r.status == 404, "GET of an unknown job: %d", r.status);
    json_decref(r.body);
    r = s_http(port, "POST", "/jobs", "");
    EX_CHECK(r.status == 400, "POST of an empty job: %d", r.status);
    json_decref(r.body);

    // The failing job ran on the workers exactly 3 times, then was dead-lettered, once.
    char *all = calloc(1, 1);
    for (int i = 0; i < WORKERS; i++) {
        char *text = ex_output(workers[i]);
        all = realloc(all, strlen(all) + strlen(text) + 1);
        strcat(all, text);
        free(text);
    }
    for (int n = 1; n <= 4; n++) {
        char failed[128];
        snprintf(failed, sizeof failed, "job %s, attempt %d failed\n", ids[JOBS - 1], n);
        EX_CHECK(ex_count(all, failed) == (n <= 3), "'%s' %d times", failed, ex_count(all, failed));
    }
    free(all);
    hop_client_t *c = sx_client(fx, "check", 0);
    assert_int_equal(sx_queue_stat(c, "tasks.dead", "messages"), 1);
    assert_int_equal(sx_queue_stat(c, "tasks.jobs", "messages"), 0);
    assert_int_equal(sx_queue_stat(c, "tasks.jobs", "dead_lettered"), 1);
    assert_int_equal(sx_queue_stat(c, "tasks.jobs", "acked"), JOBS - 1);
    hop_delivery_t *dead = NULL;
    CHECK(c, hop_client_get(c, "tasks.dead", 0, &dead));
    assert_string_equal(dead->props.message_id, ids[JOBS - 1]);
    assert_int_equal(dead->death_count, 1);
    assert_string_equal(dead->deaths[0].reason, "delivery-limit");
    hop_delivery_destroy(&dead);

    EX_CHECK(ex_stop(api) == 0, "tasks-api did not exit cleanly");
    for (int i = 0; i < WORKERS; i++)
        EX_CHECK(ex_stop(workers[i]) == 0, "%s did not exit cleanly", workers[i]->name);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_tasks_every_job_reaches_a_final_state, ex_setup,
                                        ex_teardown),
    };
    return cmocka_run_group_tests_name("integration.examples_tasks", tests, NULL, NULL);
}
