#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "bp_internal.h"
#include "bp_sock.h"

void *bp_ctx_new(void)
{
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGCHLD);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    void *ctx = zmq_ctx_new();
    /* libzmq starts its threads lazily, with the first socket: make one now
     * so they inherit the blocked mask. */
    void *probe = ctx ? zmq_socket(ctx, ZMQ_PAIR) : NULL;
    if (probe)
        zmq_close(probe);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (ctx && !probe) {
        zmq_ctx_term(ctx);
        return NULL;
    }
    return ctx;
}

static int setint(void *s, int opt, int v)
{
    return zmq_setsockopt(s, opt, &v, sizeof v);
}

void *bp_sock_open(void *ctx, int type, const char *endpoint, int bind,
                   const struct bp_sockcfg *cfg, char *err, size_t errlen)
{
    void *s = bp_sock_new(ctx, type, cfg, err, errlen);
    if (s && bp_sock_attach(&s, endpoint, bind, err, errlen) != BP_OK)
        return NULL;
    return s;
}

void *bp_sock_new(void *ctx, int type, const struct bp_sockcfg *cfg, char *err, size_t errlen)
{
    void *s = zmq_socket(ctx, type);
    if (!s) {
        snprintf(err, errlen, "cannot create socket: %s", zmq_strerror(errno));
        return NULL;
    }
    int rc = setint(s, ZMQ_LINGER, cfg->linger_ms);
    if (rc == 0 && cfg->max_msg > 0)
        rc = zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &cfg->max_msg, sizeof cfg->max_msg);
    if (rc == 0 && cfg->sndhwm > 0)
        rc = setint(s, ZMQ_SNDHWM, cfg->sndhwm);
    if (rc == 0 && cfg->rcvhwm > 0)
        rc = setint(s, ZMQ_RCVHWM, cfg->rcvhwm);
    if (rc == 0 && cfg->immediate)
        rc = setint(s, ZMQ_IMMEDIATE, 1);
    if (rc == 0 && type == ZMQ_SUB)
        rc = zmq_setsockopt(s, ZMQ_SUBSCRIBE, cfg->subscribe ? cfg->subscribe : "",
                            cfg->subscribe ? strlen(cfg->subscribe) : 0);
    if (rc != 0) {
        snprintf(err, errlen, "cannot configure socket: %s", zmq_strerror(errno));
        zmq_close(s);
        return NULL;
    }
    return s;
}

int bp_sock_attach(void **sock, const char *endpoint, int bind, char *err, size_t errlen)
{
    void *s = *sock;
    int rc = bind ? zmq_bind(s, endpoint) : zmq_connect(s, endpoint);
    if (rc != 0) {
        int e = errno;
        const char *why = zmq_strerror(e);
        if (e == EINVAL)
            why = "invalid endpoint (expected e.g. tcp://host:port)";
        else if (e == EPROTONOSUPPORT)
            why = "unsupported transport";
        snprintf(err, errlen, "cannot %s %s: %s", bind ? "bind" : "connect", endpoint, why);
        bp_sock_close(sock);
        return BP_EZMQ;
    }
    return BP_OK;
}

void bp_sock_close(void **sock)
{
    if (sock && *sock) {
        zmq_close(*sock);
        *sock = NULL;
    }
}

int bp_sock_endpoint(void *sock, char *buf, size_t len)
{
    size_t n = len;
    if (zmq_getsockopt(sock, ZMQ_LAST_ENDPOINT, buf, &n) != 0)
        return BP_EZMQ;
    return BP_OK;
}

static int map_errno(void)
{
    switch (errno) {
    case EAGAIN:
        return BP_ETIMEDOUT;
    case EINTR:
        return BP_EINTR;
    default:
        return BP_EZMQ;
    }
}

/* Queues the header frame of a two-frame message. Both frames form one
 * atomic message: once the header is queued the payload cannot fail for
 * lack of room. */
static int send_header(void *sock, const struct bp_hdr *h, int flags)
{
    uint8_t buf[BP_HDR_MAX];
    size_t n;
    int rc = bp_hdr_encode(h, buf, sizeof buf, &n);
    if (rc != BP_OK)
        return rc;
    if (zmq_send(sock, buf, n, flags | ZMQ_SNDMORE) < 0)
        return map_errno();
    return BP_OK;
}

int bp_send(void *sock, const struct bp_hdr *h, const void *payload, size_t len, int flags)
{
    int rc = send_header(sock, h, flags);
    if (rc != BP_OK)
        return rc;
    if (zmq_send(sock, payload, len, flags) < 0)
        return map_errno();
    return BP_OK;
}

int bp_send_msg(void *sock, const struct bp_hdr *h, zmq_msg_t *payload, int flags)
{
    if (h) {
        int rc = send_header(sock, h, flags);
        if (rc != BP_OK)
            return rc;
        flags = 0;
    }
    if (zmq_msg_send(payload, sock, flags) < 0)
        return map_errno();
    return BP_OK;
}

int bp_send_raw(void *sock, const void *payload, size_t len, int flags)
{
    if (zmq_send(sock, payload, len, flags) < 0)
        return map_errno();
    return BP_OK;
}

/* Reads and discards the rest of a multi-frame message. */
static void drain(void *sock, zmq_msg_t *m)
{
    while (zmq_msg_more(m)) {
        if (zmq_msg_recv(m, sock, 0) < 0)
            break;
    }
}

int bp_recv(void *sock, struct bp_hdr *h, zmq_msg_t *payload, int flags)
{
    zmq_msg_t head;
    zmq_msg_init(&head);
    if (zmq_msg_recv(&head, sock, flags) < 0) {
        int rc = map_errno();
        zmq_msg_close(&head);
        return rc;
    }
    int rc = bp_hdr_decode(h, zmq_msg_data(&head), zmq_msg_size(&head));
    if (!zmq_msg_more(&head)) {
        zmq_msg_close(&head);
        return rc == BP_OK ? BP_EPROTO : rc;
    }
    zmq_msg_close(&head);
    /* Once the first frame is in, the rest of the message is too. */
    if (zmq_msg_recv(payload, sock, 0) < 0)
        return map_errno();
    if (zmq_msg_more(payload)) {
        drain(sock, payload);
        return BP_EPROTO;
    }
    return rc;
}

int bp_recv_raw(void *sock, zmq_msg_t *payload, int flags)
{
    if (zmq_msg_recv(payload, sock, flags) < 0)
        return map_errno();
    if (zmq_msg_more(payload)) {
        drain(sock, payload);
        return BP_EPROTO;
    }
    return BP_OK;
}
