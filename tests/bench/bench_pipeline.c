/* Throughput of boardpipe's pipeline against raw libzmq, in one process
 * over tcp loopback (threads), so the figures compare within one run:
 *   raw-push-pull   PUSH -> PULL, single-frame messages
 *   raw-pipeline    PUSH -> (PULL, upper-case, PUSH) -> PULL, the tutorial's
 *                   topology without any framing
 *   boardpipe       bp_ventilator_run -> bp_worker_run -> bp_sink_run
 * Usage: bench_pipeline [messages] [size]   (defaults 200000 and 100)
 * Not a test: it passes or fails nothing; it prints messages per second. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "bp.h"

static long n_msgs = 200000;
static size_t msg_size = 100;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) ||
        getsockname(fd, (struct sockaddr *)&a, &len)) {
        perror("free_port");
        exit(1);
    }
    close(fd);
    return ntohs(a.sin_port);
}

static void *must(void *p, const char *what)
{
    if (!p) {
        fprintf(stderr, "bench: %s: %s\n", what, zmq_strerror(zmq_errno()));
        exit(1);
    }
    return p;
}

static void check(int rc, const char *what)
{
    if (rc < 0) {
        fprintf(stderr, "bench: %s: %s\n", what, zmq_strerror(zmq_errno()));
        exit(1);
    }
}

struct raw_args {
    void *ctx;
    char in[64], out[64];
};

/* The raw worker: receive, upper-case in place, send on. */
static void *raw_worker(void *p)
{
    struct raw_args *a = p;
    void *pull = must(zmq_socket(a->ctx, ZMQ_PULL), "socket");
    void *push = must(zmq_socket(a->ctx, ZMQ_PUSH), "socket");
    check(zmq_connect(pull, a->in), "connect");
    check(zmq_connect(push, a->out), "connect");
    zmq_msg_t m;
    zmq_msg_init(&m);
    for (long i = 0; i < n_msgs; i++) {
        check(zmq_msg_recv(&m, pull, 0), "recv");
        unsigned char *d = zmq_msg_data(&m);
        size_t n = zmq_msg_size(&m);
        for (size_t k = 0; k < n; k++)
            if (d[k] >= 'a' && d[k] <= 'z')
                d[k] = (unsigned char)(d[k] - 32);
        check(zmq_msg_send(&m, push, 0), "send");
    }
    zmq_msg_close(&m);
    zmq_close(pull);
    zmq_close(push);
    return NULL;
}

/* Sends n_msgs messages: connects to a->out (raw PUSH->PULL), or binds
 * a->in as the ventilator of the raw pipeline. */
static void *raw_sender(void *p)
{
    struct raw_args *a = p;
    void *push = must(zmq_socket(a->ctx, ZMQ_PUSH), "socket");
    if (a->in[0])
        check(zmq_bind(push, a->in), "bind");
    else
        check(zmq_connect(push, a->out), "connect");
    char *buf = malloc(msg_size);
    memset(buf, 'a', msg_size);
    for (long i = 0; i < n_msgs; i++)
        check(zmq_send(push, buf, msg_size, 0), "send");
    free(buf);
    int linger = -1;
    zmq_setsockopt(push, ZMQ_LINGER, &linger, sizeof linger);
    zmq_close(push);
    return NULL;
}

static double bench_raw(int with_worker)
{
    void *ctx = must(zmq_ctx_new(), "ctx");
    struct raw_args a = {.ctx = ctx};
    void *sink = must(zmq_socket(ctx, ZMQ_PULL), "socket");
    snprintf(a.out, sizeof a.out, "tcp://127.0.0.1:%d", free_port());
    check(zmq_bind(sink, a.out), "bind");
    pthread_t w, s;
    if (with_worker) {
        snprintf(a.in, sizeof a.in, "tcp://127.0.0.1:%d", free_port());
        pthread_create(&w, NULL, raw_worker, &a);
    }
    double t0 = now_s();
    pthread_create(&s, NULL, raw_sender, &a);
    zmq_msg_t m;
    zmq_msg_init(&m);
    for (long got = 0; got < n_msgs; got++)
        check(zmq_msg_recv(&m, sink, 0), "recv");
    double dt = now_s() - t0;
    zmq_msg_close(&m);
    pthread_join(s, NULL);
    if (with_worker)
        pthread_join(w, NULL);
    zmq_close(sink);
    zmq_ctx_term(ctx);
    return (double)n_msgs / dt;
}

struct role {
    struct bp_opts o;
    struct bp_io io;
    struct bp_report rep;
    int rc;
};

static void *run_worker(void *p)
{
    struct role *r = p;
    r->rc = bp_worker_run(&r->o, &r->io, &r->rep);
    return NULL;
}

static void *run_sink(void *p)
{
    struct role *r = p;
    r->rc = bp_sink_run(&r->o, &r->io, &r->rep);
    return NULL;
}

static void parse(struct bp_opts *o, enum bp_role role)
{
    char a0[] = "bench", a1[] = "-q";
    char *argv[] = {a0, a1, NULL};
    char *envp[] = {NULL};
    if (bp_opts_parse(o, role, 2, argv, envp, NULL) != BP_OK) {
        fprintf(stderr, "bench: %s\n", o->err);
        exit(1);
    }
}

static double bench_boardpipe(void)
{
    static char tasks[64], results[64], control[64];
    snprintf(tasks, sizeof tasks, "tcp://127.0.0.1:%d", free_port());
    snprintf(results, sizeof results, "tcp://127.0.0.1:%d", free_port());
    snprintf(control, sizeof control, "tcp://127.0.0.1:%d", free_port());
    /* Input: n_msgs lines of msg_size bytes, from memory. */
    size_t len = (msg_size + 1) * (size_t)n_msgs;
    char *input = malloc(len);
    for (long i = 0; i < n_msgs; i++) {
        memset(input + (size_t)i * (msg_size + 1), 'a', msg_size);
        input[(size_t)i * (msg_size + 1) + msg_size] = '\n';
    }
    FILE *in = fmemopen(input, len, "r");
    FILE *out = fopen("/dev/null", "w");

    struct role sink, worker;
    parse(&sink.o, BP_ROLE_SINK);
    sink.o.bind = results;
    sink.o.control_bind = control;
    sink.o.once = 1;
    sink.o.progress = 0;
    sink.io = (struct bp_io){.out = out};
    parse(&worker.o, BP_ROLE_WORKER);
    worker.o.tasks = tasks;
    worker.o.results = results;
    worker.o.control = control;
    worker.o.once = 1;
    worker.io = (struct bp_io){0};
    pthread_t ts, tw;
    pthread_create(&ts, NULL, run_sink, &sink);
    pthread_create(&tw, NULL, run_worker, &worker);

    struct bp_opts vo;
    parse(&vo, BP_ROLE_VENTILATOR);
    vo.bind = tasks;
    vo.sink = results;
    vo.input = "-";
    vo.wait_workers = 1;
    vo.progress = 0;
    struct bp_io vio = {.in = in};
    struct bp_report vr;
    double t0 = now_s();
    int rc = bp_ventilator_run(&vo, &vio, &vr);
    pthread_join(ts, NULL);
    /* The sink finished when the last result arrived; its own clock
     * (batch begin to last result) is the figure. */
    double dt = sink.rep.elapsed_s > 0 ? sink.rep.elapsed_s : now_s() - t0;
    pthread_join(tw, NULL);
    fclose(in);
    fclose(out);
    free(input);
    if (rc != BP_OK || sink.rc != BP_OK || sink.rep.ok != n_msgs) {
        fprintf(stderr, "bench: boardpipe run failed (vent %d, sink %d, %lld results)\n", rc,
                sink.rc, (long long)sink.rep.ok);
        exit(1);
    }
    return (double)n_msgs / dt;
}

int main(int argc, char **argv)
{
    if (argc > 1)
        n_msgs = strtol(argv[1], NULL, 10);
    if (argc > 2)
        msg_size = (size_t)strtol(argv[2], NULL, 10);
    if (n_msgs <= 0 || msg_size == 0) {
        fprintf(stderr, "usage: bench_pipeline [messages>0] [size>0]\n");
        return 2;
    }
    bp_log_init("bench", BP_LOG_ERROR);
    printf("%ld messages of %zu bytes, tcp loopback, one process\n", n_msgs, msg_size);
    printf("%-16s %12.0f msg/s\n", "raw-push-pull", bench_raw(0));
    printf("%-16s %12.0f msg/s\n", "raw-pipeline", bench_raw(1));
    printf("%-16s %12.0f msg/s\n", "boardpipe", bench_boardpipe());
    return 0;
}
