/* Helpers shared by the three role loops. */
#ifndef BP_ROLE_H
#define BP_ROLE_H

#include <stdio.h>

#include "bp.h"
#include "bp_curve.h"
#include "bp_sock.h"

/* Socket settings every role starts from, taken from the options. */
struct bp_sockcfg bp_role_sockcfg(const struct bp_opts *o);

/* True once the caller's stop flag is set. */
int bp_role_stopped(const struct bp_io *io);

/* Whether to draw a live progress line on stderr. */
int bp_role_progress(const struct bp_opts *o);

/* Draws (text) or clears (NULL) the progress line on stderr. */
void bp_role_progress_line(const char *text);

/* Waits up to timeout_ms (-1: no limit) until sock can take a message,
 * in slices so *io->stop is noticed. Returns BP_OK, BP_ETIMEDOUT, BP_EINTR
 * (stop flag) or BP_EZMQ. */
int bp_role_wait_out(void *sock, const struct bp_io *io, int timeout_ms);

/* A role's CURVE state: off (plain) unless --curve-secret was given. */
struct bp_role_sec {
    int on;
    struct bp_cert me;     /* our key pair */
    struct bp_cert server; /* the host's public key (host roles: me) */
    struct bp_zap *zap;    /* host roles: the allowlist's ZAP handler */
};

/* Loads the certificates the options name and, for a host role, starts the
 * ZAP handler on ctx (reloaded through io->reload). In plain mode a host
 * role bound beyond loopback says so on stderr. Returns BP_OK, or an error
 * already logged as one line. Release with bp_role_sec_close() after the
 * context's sockets are closed (and before the context is terminated). */
int bp_role_sec_open(struct bp_role_sec *s, const struct bp_opts *o, void *ctx,
                     const struct bp_io *io);
void bp_role_sec_close(struct bp_role_sec *s);

/* Makes c a CURVE server (a bound host socket) or client (a connecting
 * socket that pins s->server); no-ops in plain mode. s must outlive the
 * socket's set-up. */
void bp_role_sec_server(const struct bp_role_sec *s, struct bp_sockcfg *c);
void bp_role_sec_client(const struct bp_role_sec *s, struct bp_sockcfg *c);

/* Watches a connecting CURVE socket's handshakes, so a board with the
 * wrong host key, or one the host does not admit, says so instead of
 * waiting in silence. */
struct bp_secmon {
    void *pair;
    int said; /* logged already */
};

/* Starts watching sock (no-op in plain mode). Returns BP_OK or BP_EZMQ. */
int bp_secmon_open(struct bp_secmon *m, const struct bp_role_sec *s, void *ctx, void *sock);

/* Stops watching (before sock is closed). */
void bp_secmon_close(struct bp_secmon *m, void *sock);

/* Reads the events waiting (never blocks); logs the first failed
 * handshake as one line naming what. */
void bp_secmon_poll(struct bp_secmon *m, const char *what);

/* A fresh 64-bit batch id (random where the system offers it). */
uint64_t bp_role_batch_id(void);

/* The poll timeout (ms) from now to wake (INT64_MAX: none), at most cap;
 * 0 when wake is due. One rule for every role's loop. */
long bp_role_timeout(int64_t now, int64_t wake, long cap);

/* The ZeroMQ context of a role: the caller's (io->zmq_ctx, tests) or a new
 * one (*own = 1: the role terminates it). Returns BP_OK or BP_EZMQ (said). */
int bp_role_ctx(const struct bp_io *io, void **ctx, int *own);

/* Says that a message from `from` was dropped, n being the count so far
 * (one line for each of the first five, all of them with -v -v): rc
 * BP_EVERSION names another protocol version, BP_EPROTO malformed, with
 * hint after the first. */
void bp_role_note_malformed(int64_t n, int rc, const char *from, const char *hint);

#endif
