/* The raw libzmq ventilator for scripts/bench: the guide's taskvent in C,
 * without its "press Enter" and its sleeps. PUSH binds ENDPOINT, sends each
 * line of FILE as one frame (newline dropped, empty lines skipped), then one
 * empty frame per worker as the end marker.
 * Usage: raw_vent ENDPOINT FILE [WORKERS]
 * With WORKERS > 1 it first waits until that many peers finished their
 * handshake (a socket monitor), so PUSH's round robin sees all of them.
 * Not a test: it measures nothing itself, scripts/bench times it. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

static void die(const char *what)
{
    fprintf(stderr, "raw_vent: %s: %s\n", what, zmq_strerror(zmq_errno()));
    exit(1);
}

/* Blocks until n peers of the monitored socket completed the handshake. */
static void wait_peers(void *ctx, void *sock, long n)
{
    if (zmq_socket_monitor(sock, "inproc://raw-vent-monitor", ZMQ_EVENT_HANDSHAKE_SUCCEEDED))
        die("zmq_socket_monitor");
    void *mon = zmq_socket(ctx, ZMQ_PAIR);
    if (!mon || zmq_connect(mon, "inproc://raw-vent-monitor"))
        die("monitor connect");
    for (long seen = 0; seen < n;) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, mon, 0) < 0)
            die("monitor recv");
        int more = zmq_msg_more(&m);
        zmq_msg_close(&m);
        if (more) { /* the endpoint frame follows the event frame */
            zmq_msg_init(&m);
            if (zmq_msg_recv(&m, mon, 0) < 0)
                die("monitor recv");
            zmq_msg_close(&m);
        }
        seen++;
    }
    zmq_socket_monitor(sock, NULL, 0);
    zmq_close(mon);
    /* The new pipes reach the socket as commands it reads on its next call. */
    struct timespec ts = {0, 10 * 1000 * 1000};
    nanosleep(&ts, NULL);
}

int main(int argc, char **argv)
{
    if (argc < 3 || argc > 4) {
        fprintf(stderr, "usage: raw_vent ENDPOINT FILE [WORKERS]\n");
        return 2;
    }
    long workers = argc > 3 ? strtol(argv[3], NULL, 10) : 1;
    if (workers < 1)
        workers = 1;
    FILE *in = strcmp(argv[2], "-") ? fopen(argv[2], "r") : stdin;
    if (!in) {
        perror(argv[2]);
        return 1;
    }
    void *ctx = zmq_ctx_new();
    void *push = zmq_socket(ctx, ZMQ_PUSH);
    if (!push)
        die("zmq_socket");
    int linger = -1;
    zmq_setsockopt(push, ZMQ_LINGER, &linger, sizeof linger);
    if (zmq_bind(push, argv[1]))
        die(argv[1]);
    if (workers > 1)
        wait_peers(ctx, push, workers);

    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    long sent = 0;
    while ((len = getline(&line, &cap, in)) > 0) {
        if (line[len - 1] == '\n')
            len--;
        if (len == 0)
            continue;
        if (zmq_send(push, line, (size_t)len, 0) < 0)
            die("send");
        sent++;
    }
    free(line);
    if (in != stdin)
        fclose(in);
    for (long i = 0; i < workers; i++)
        if (zmq_send(push, "", 0, 0) < 0)
            die("send end marker");
    zmq_close(push); /* linger -1: returns, ctx_term waits for delivery */
    zmq_ctx_term(ctx);
    fprintf(stderr, "raw_vent: %ld tasks\n", sent);
    return 0;
}
