/* The raw libzmq worker for scripts/bench: the guide's taskwork in C. PULL
 * connects to IN, PUSH connects to OUT; each frame is upper-cased (ASCII, as
 * boardpipe's built-in "upper") and sent on, after SLEEP_MS if given. An
 * empty frame is the end marker: it is passed on. As in the guide, the
 * worker runs until it is killed.
 * Usage: raw_worker IN OUT [SLEEP_MS] */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <zmq.h>

static void die(const char *what)
{
    fprintf(stderr, "raw_worker: %s: %s\n", what, zmq_strerror(zmq_errno()));
    exit(1);
}

int main(int argc, char **argv)
{
    if (argc < 3 || argc > 4) {
        fprintf(stderr, "usage: raw_worker IN OUT [SLEEP_MS]\n");
        return 2;
    }
    long sleep_ms = argc > 3 ? strtol(argv[3], NULL, 10) : 0;
    void *ctx = zmq_ctx_new();
    void *pull = zmq_socket(ctx, ZMQ_PULL);
    void *push = zmq_socket(ctx, ZMQ_PUSH);
    if (!pull || !push)
        die("zmq_socket");
    int linger = -1;
    zmq_setsockopt(push, ZMQ_LINGER, &linger, sizeof linger);
    if (zmq_connect(pull, argv[1]))
        die(argv[1]);
    if (zmq_connect(push, argv[2]))
        die(argv[2]);
    for (;;) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, pull, 0) < 0)
            die("recv");
        size_t n = zmq_msg_size(&m);
        unsigned char *d = zmq_msg_data(&m);
        for (size_t i = 0; i < n; i++)
            if (d[i] >= 'a' && d[i] <= 'z')
                d[i] = (unsigned char)(d[i] - 'a' + 'A');
        if (n && sleep_ms > 0) {
            struct timespec ts = {sleep_ms / 1000, (sleep_ms % 1000) * 1000000L};
            nanosleep(&ts, NULL);
        }
        if (zmq_msg_send(&m, push, 0) < 0)
            die("send");
    }
}
