/* The raw libzmq sink for scripts/bench: the guide's tasksink in C. PULL
 * binds ENDPOINT and writes each frame as a line to OUTPUT ('-' = stdout)
 * until it has one empty frame (end marker) per worker.
 * Usage: raw_sink ENDPOINT OUTPUT [WORKERS] */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

static void die(const char *what)
{
    fprintf(stderr, "raw_sink: %s: %s\n", what, zmq_strerror(zmq_errno()));
    exit(1);
}

int main(int argc, char **argv)
{
    if (argc < 3 || argc > 4) {
        fprintf(stderr, "usage: raw_sink ENDPOINT OUTPUT [WORKERS]\n");
        return 2;
    }
    long workers = argc > 3 ? strtol(argv[3], NULL, 10) : 1;
    FILE *out = strcmp(argv[2], "-") ? fopen(argv[2], "w") : stdout;
    if (!out) {
        perror(argv[2]);
        return 1;
    }
    void *ctx = zmq_ctx_new();
    void *pull = zmq_socket(ctx, ZMQ_PULL);
    if (!pull)
        die("zmq_socket");
    if (zmq_bind(pull, argv[1]))
        die(argv[1]);
    long results = 0, ends = 0;
    zmq_msg_t m;
    zmq_msg_init(&m);
    while (ends < workers) {
        if (zmq_msg_recv(&m, pull, 0) < 0)
            die("recv");
        size_t n = zmq_msg_size(&m);
        if (!n) {
            ends++;
            continue;
        }
        if (fwrite(zmq_msg_data(&m), 1, n, out) != n || putc('\n', out) == EOF) {
            perror(argv[2]);
            return 1;
        }
        results++;
    }
    zmq_msg_close(&m);
    if (fclose(out)) {
        perror(argv[2]);
        return 1;
    }
    zmq_close(pull);
    zmq_ctx_term(ctx);
    fprintf(stderr, "raw_sink: %ld results\n", results);
    return 0;
}
