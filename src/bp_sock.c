/* The one place that creates and configures ZeroMQ sockets, and sends
 * and receives boardpipe's messages (bp_sock.h). Owns the sockets it
 * creates until they are closed; must not read message bodies or log
 * (errors go back as codes and messages). */
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
    /* The limit applies to the handshake too, and CURVE's commands are a
     * few hundred bytes. */
    int64_t max_msg = cfg->max_msg;
    if (cfg->curve_secret && max_msg > 0 && max_msg < 1024)
        max_msg = 1024;
    if (rc == 0 && max_msg > 0)
        rc = zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &max_msg, sizeof max_msg);
    if (rc == 0 && cfg->sndhwm > 0)
        rc = setint(s, ZMQ_SNDHWM, cfg->sndhwm);
    if (rc == 0 && cfg->rcvhwm > 0)
        rc = setint(s, ZMQ_RCVHWM, cfg->rcvhwm);
    if (rc == 0 && cfg->immediate)
        rc = setint(s, ZMQ_IMMEDIATE, 1);
    if (rc == 0 && cfg->reconnect_ms > 0)
        rc = setint(s, ZMQ_RECONNECT_IVL, cfg->reconnect_ms);
    if (rc == 0 && cfg->reconnect_ms > 0)
        rc = setint(s, ZMQ_RECONNECT_IVL_MAX, 1000);
    if (rc == 0 && cfg->handshake_ms > 0)
        rc = setint(s, ZMQ_HANDSHAKE_IVL, cfg->handshake_ms);
    if (rc == 0 && cfg->ping_ms > 0)
        rc = setint(s, ZMQ_HEARTBEAT_IVL, cfg->ping_ms);
    if (rc == 0 && cfg->ping_ms > 0 && cfg->ping_timeout_ms > 0)
        rc = setint(s, ZMQ_HEARTBEAT_TIMEOUT, cfg->ping_timeout_ms);
    if (rc == 0 && cfg->router_mandatory)
        rc = setint(s, ZMQ_ROUTER_MANDATORY, 1);
    if (rc == 0 && cfg->curve_secret && cfg->curve_server) {
        rc = setint(s, ZMQ_CURVE_SERVER, 1);
        if (rc == 0)
            rc = zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, cfg->curve_secret,
                                strlen(cfg->curve_secret));
        /* A ZAP domain makes libzmq ask the handler about every peer. */
        if (rc == 0)
            rc = zmq_setsockopt(s, ZMQ_ZAP_DOMAIN, "boardpipe", 9);
    } else if (rc == 0 && cfg->curve_secret) {
        rc = zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, cfg->curve_serverkey,
                            cfg->curve_serverkey ? strlen(cfg->curve_serverkey) : 0);
        if (rc == 0)
            rc = zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, cfg->curve_public,
                                strlen(cfg->curve_public));
        if (rc == 0)
            rc = zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, cfg->curve_secret,
                                strlen(cfg->curve_secret));
    }
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

int bp_send_raw(void *sock, const void *payload, size_t len, int flags)
{
    if (zmq_send(sock, payload, len, flags) < 0)
        return errno == EHOSTUNREACH ? BP_EIO : map_errno();
    return BP_OK;
}

int bp_send_to(void *router, const void *rid, size_t rid_len, const void *buf, size_t len,
               int flags)
{
    if (zmq_send(router, rid, rid_len, flags | ZMQ_SNDMORE) < 0)
        return errno == EHOSTUNREACH ? BP_EIO : map_errno();
    /* Once the routing frame is accepted the body cannot fail for room. */
    if (zmq_send(router, buf, len, flags) < 0)
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

int bp_recv_from(void *router, zmq_msg_t *rid, zmq_msg_t *msg, int flags)
{
    if (zmq_msg_recv(rid, router, flags) < 0)
        return map_errno();
    if (!zmq_msg_more(rid))
        return BP_EPROTO;
    /* Once the first frame is in, the rest of the message is too. */
    if (zmq_msg_recv(msg, router, 0) < 0)
        return map_errno();
    if (zmq_msg_more(msg)) {
        drain(router, msg);
        return BP_EPROTO;
    }
    return BP_OK;
}

static int events(void *sock)
{
    int ev = 0;
    size_t n = sizeof ev;
    if (zmq_getsockopt(sock, ZMQ_EVENTS, &ev, &n) != 0)
        return 0;
    return ev;
}

int bp_sock_writable(void *sock)
{
    return (events(sock) & ZMQ_POLLOUT) != 0;
}

int bp_sock_readable(void *sock)
{
    return (events(sock) & ZMQ_POLLIN) != 0;
}
