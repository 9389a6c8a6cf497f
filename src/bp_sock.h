/* The one place where boardpipe creates and configures ZeroMQ sockets,
 * and sends/receives its two-frame messages. */
#ifndef BP_SOCK_H
#define BP_SOCK_H

#include <stddef.h>
#include <zmq.h>

#include "bp.h"

struct bp_sockcfg {
    int linger_ms;
    int64_t max_msg; /* ZMQ_MAXMSGSIZE; 0: unlimited */
    int sndhwm;      /* 0: libzmq's default */
    int rcvhwm;
    int immediate;         /* ZMQ_IMMEDIATE: queue only to completed connections */
    const char *subscribe; /* SUB only */
    int router_mandatory;  /* ROUTER: unroutable sends fail (EHOSTUNREACH) */
    int reconnect_ms;      /* first reconnect try, doubling up to 1 s (0: libzmq's 100 ms) */
    int handshake_ms;      /* ZMQ_HANDSHAKE_IVL: a peer's ZMTP handshake (0: libzmq's 30 s) */
    int ping_ms;           /* ZMQ_HEARTBEAT_IVL: ZMTP PING every ping_ms (0: none) */
    int ping_timeout_ms;   /* ZMQ_HEARTBEAT_TIMEOUT: drop a peer silent this long after a PING */
    /* CURVE (Z85 keys; NULL: plain). A server needs its secret key (a ZAP
     * handler in the context decides who gets in); a client needs its own
     * pair and the server's public key, which it pins. */
    int curve_server;
    const char *curve_public;
    const char *curve_secret;
    const char *curve_serverkey;
};

/* Creates a ZeroMQ context whose I/O threads have SIGINT/SIGTERM blocked,
 * so those signals interrupt the caller's zmq_poll() instead. Returns NULL
 * on failure. Free with zmq_ctx_term(). */
void *bp_ctx_new(void);

/* Creates a socket of type, applies cfg, then binds (bind != 0) or
 * connects it to endpoint. Returns the socket, or NULL with a one-line
 * reason in err. The caller owns the socket (bp_sock_close). */
void *bp_sock_open(void *ctx, int type, const char *endpoint, int bind,
                   const struct bp_sockcfg *cfg, char *err, size_t errlen);

/* The two halves of bp_sock_open(), for callers that must act between
 * them (e.g. start a monitor before any peer can connect). bp_sock_attach
 * closes the socket and sets *sock to NULL on failure. */
void *bp_sock_new(void *ctx, int type, const struct bp_sockcfg *cfg, char *err, size_t errlen);
int bp_sock_attach(void **sock, const char *endpoint, int bind, char *err, size_t errlen);

/* Closes *sock (if not NULL) and sets it to NULL. */
void bp_sock_close(void **sock);

/* Copies the socket's last bound endpoint (resolves "tcp://x:*") into buf. */
int bp_sock_endpoint(void *sock, char *buf, size_t len);

/* Sends one single-frame message (a v2 message, or a raw string). flags:
 * ZMQ_DONTWAIT or 0. Returns BP_OK, BP_ETIMEDOUT (EAGAIN), BP_EINTR,
 * BP_EIO (ROUTER with ZMQ_ROUTER_MANDATORY: the peer is gone) or BP_EZMQ. */
int bp_send_raw(void *sock, const void *payload, size_t len, int flags);

/* ROUTER: sends buf to the peer with routing id rid. Same returns; an
 * unknown peer (ZMQ_ROUTER_MANDATORY) gives BP_EIO. */
int bp_send_to(void *router, const void *rid, size_t rid_len, const void *buf, size_t len,
               int flags);

/* Receives a one-frame message into payload (an initialised zmq_msg_t the
 * caller owns). A multi-frame message is consumed whole and BP_EPROTO
 * returned. BP_ETIMEDOUT (nothing there with ZMQ_DONTWAIT), BP_EINTR and
 * BP_EZMQ as above. */
int bp_recv_raw(void *sock, zmq_msg_t *payload, int flags);

/* ROUTER: receives [routing id][message] into rid and msg (initialised by
 * the caller). Anything but exactly two frames is consumed whole and
 * BP_EPROTO returned. */
int bp_recv_from(void *router, zmq_msg_t *rid, zmq_msg_t *msg, int flags);

/* Whether sock can take a message now (ZMQ_EVENTS has ZMQ_POLLOUT). */
int bp_sock_writable(void *sock);

/* Whether sock has a message waiting (ZMQ_EVENTS has ZMQ_POLLIN). */
int bp_sock_readable(void *sock);

#endif
