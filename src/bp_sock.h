/* The one place where boardpipe creates and configures ZeroMQ sockets,
 * and sends/receives its two-frame messages. */
#ifndef BP_SOCK_H
#define BP_SOCK_H

#include <stddef.h>
#include <zmq.h>

#include "bp_frame.h"

struct bp_sockcfg {
    int linger_ms;
    int64_t max_msg; /* ZMQ_MAXMSGSIZE; 0: unlimited */
    int sndhwm;      /* 0: libzmq's default */
    int rcvhwm;
    int immediate;         /* ZMQ_IMMEDIATE: queue only to completed connections */
    const char *subscribe; /* SUB only */
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

/* Sends header h and payload as one two-frame message. flags: ZMQ_DONTWAIT
 * or 0. Returns BP_OK, BP_ETIMEDOUT (EAGAIN), BP_EINTR or BP_EZMQ. */
int bp_send(void *sock, const struct bp_hdr *h, const void *payload, size_t len, int flags);

/* Like bp_send() (h given) or bp_send_raw() (h NULL), but sends the payload
 * message itself without copying; on BP_OK it is left empty, otherwise it
 * is untouched and can be sent again. */
int bp_send_msg(void *sock, const struct bp_hdr *h, zmq_msg_t *payload, int flags);

/* Sends one raw frame (tutorial mode). Same returns as bp_send(). */
int bp_send_raw(void *sock, const void *payload, size_t len, int flags);

/* Receives one message. On BP_OK, *h is decoded and payload holds the
 * second frame (the caller passes an initialised zmq_msg_t and keeps
 * ownership). A message that is not exactly header + payload, or whose
 * header does not decode, is consumed whole and BP_EPROTO/BP_EVERSION is
 * returned. BP_ETIMEDOUT (nothing there with ZMQ_DONTWAIT), BP_EINTR and
 * BP_EZMQ as for bp_send(). */
int bp_recv(void *sock, struct bp_hdr *h, zmq_msg_t *payload, int flags);

/* Receives a one-frame raw message into payload. A multi-frame message is
 * consumed whole and BP_EPROTO returned. */
int bp_recv_raw(void *sock, zmq_msg_t *payload, int flags);

#endif
