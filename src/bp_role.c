/* What the three role loops share (bp_role.h): socket settings from the
 * options, the stop flag, the progress line, waiting to send, batch ids,
 * and CURVE set-up with its monitor. Owns no state of a run; must not make
 * protocol decisions (the state machines and role loops do). */
#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <stdio.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "bp_frame.h"
#include "bp_internal.h"
#include "bp_role.h"

struct bp_sockcfg bp_role_sockcfg(const struct bp_opts *o)
{
    struct bp_sockcfg c = {0};
    c.linger_ms = o->linger_ms;
    /* Room for the header frame on top of the payload limit. */
    c.max_msg = o->max_msg + BP_MSG_HDR + 64;
    /* A worker started before its host connects within milliseconds of
     * the bind, not at libzmq's next 100 ms retry; backoff to 1 s. */
    c.reconnect_ms = 10;
    if (o->role != BP_ROLE_WORKER) {
        /* Every peer holds a descriptor of the host's. One that does not
         * finish the ZMTP handshake goes after 10 s (libzmq's default:
         * 30 s); one that finished it but answers no ZMTP PING (sent every
         * 10 s by libzmq's I/O thread, which a real board answers even
         * while busy or between tasks) after 60 s more. A peer that
         * answers pings but never says HELLO is not bounded by libzmq: see
         * README, Security. */
        c.handshake_ms = 10000;
        c.ping_ms = 10000;
        c.ping_timeout_ms = 60000;
    }
    return c;
}

int bp_role_stopped(const struct bp_io *io)
{
    return io && io->stop && *io->stop;
}

int bp_role_progress(const struct bp_opts *o)
{
    if (o->progress >= 0)
        return o->progress;
    return o->log_level > BP_LOG_ERROR && isatty(STDERR_FILENO);
}

void bp_role_progress_line(const char *text)
{
    if (text)
        fprintf(stderr, "\r%s: %s\033[K", bp_log_prog(), text);
    else
        fputs("\r\033[K", stderr);
    fflush(stderr);
}

int bp_role_wait_out(void *sock, const struct bp_io *io, int timeout_ms)
{
    int64_t deadline = timeout_ms >= 0 ? bp_now_ms() + timeout_ms : -1;
    for (;;) {
        if (bp_role_stopped(io))
            return BP_EINTR;
        long slice = 500;
        if (deadline >= 0) {
            int64_t left = deadline - bp_now_ms();
            if (left <= 0)
                return BP_ETIMEDOUT;
            if (left < slice)
                slice = (long)left;
        }
        zmq_pollitem_t it = {.socket = sock, .events = ZMQ_POLLOUT};
        int rc = zmq_poll(&it, 1, slice);
        if (rc < 0 && errno != EINTR)
            return BP_EZMQ;
        if (rc > 0 && (it.revents & ZMQ_POLLOUT))
            return BP_OK;
    }
}

uint64_t bp_role_batch_id(void)
{
    uint64_t id = 0;
    if (getrandom(&id, sizeof id, GRND_NONBLOCK) != (ssize_t)sizeof id) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        id = (uint64_t)ts.tv_sec * 1000000007u ^ (uint64_t)ts.tv_nsec << 20 ^ (uint64_t)getpid();
    }
    return id ? id : 1;
}

/* Whether a bind endpoint is reachable from this host only. */
static int local_only(const char *ep)
{
    if (!ep || strncmp(ep, "tcp://", 6) != 0)
        return 1; /* inproc://, ipc:// */
    const char *h = ep + 6;
    return !strncmp(h, "127.", 4) || !strncmp(h, "localhost:", 10) || !strncmp(h, "[::1]:", 6);
}

int bp_role_sec_open(struct bp_role_sec *s, const struct bp_opts *o, void *ctx,
                     const struct bp_io *io)
{
    memset(s, 0, sizeof *s);
    if (!o->curve_secret) {
        if (o->role != BP_ROLE_WORKER && !local_only(o->bind))
            bp_log(BP_LOG_WARN,
                   "plain mode on %s: anyone who can reach it can %s (see --curve-secret)", o->bind,
                   o->role == BP_ROLE_VENTILATOR ? "take tasks" : "send results");
        return BP_OK;
    }
    char err[320];
    if (!bp_curve_available()) {
        bp_log(BP_LOG_ERROR, "--curve-secret: this libzmq was built without CURVE");
        return BP_EUSAGE;
    }
    int rc = bp_cert_load(o->curve_secret, 1, &s->me, err, sizeof err);
    if (rc == BP_OK && o->role == BP_ROLE_WORKER)
        rc = bp_cert_load(o->curve_server, 0, &s->server, err, sizeof err);
    else
        s->server = s->me;
    if (rc != BP_OK) {
        bp_log(BP_LOG_ERROR, "%s", err);
        return rc;
    }
    if (o->role != BP_ROLE_WORKER) {
        volatile sig_atomic_t *reload = io ? io->reload : NULL;
        s->zap = bp_zap_new(ctx, o->curve_allow, s->me.pub, reload, err, sizeof err);
        if (!s->zap) {
            bp_log(BP_LOG_ERROR, "--curve-allow: %s", err);
            memset(&s->me, 0, sizeof s->me);
            return BP_EUSAGE;
        }
        bp_log(BP_LOG_DEBUG, "CURVE on: host key %.12s, %zu boards allowed", s->me.pub,
               bp_zap_allowed(s->zap));
    }
    s->on = 1;
    return BP_OK;
}

void bp_role_sec_close(struct bp_role_sec *s)
{
    bp_zap_destroy(&s->zap);
    memset(s, 0, sizeof *s);
}

void bp_role_sec_server(const struct bp_role_sec *s, struct bp_sockcfg *c)
{
    if (!s->on)
        return;
    c->curve_server = 1;
    c->curve_public = s->me.pub;
    c->curve_secret = s->me.sec;
}

void bp_role_sec_client(const struct bp_role_sec *s, struct bp_sockcfg *c)
{
    if (!s->on)
        return;
    c->curve_server = 0;
    c->curve_public = s->me.pub;
    c->curve_secret = s->me.sec;
    c->curve_serverkey = s->server.pub;
}

int bp_secmon_open(struct bp_secmon *m, const struct bp_role_sec *s, void *ctx, void *sock)
{
    memset(m, 0, sizeof *m);
    if (!s->on)
        return BP_OK;
    char ep[64];
    snprintf(ep, sizeof ep, "inproc://bp-secmon-%p", sock);
    int ev = ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
             ZMQ_EVENT_HANDSHAKE_FAILED_AUTH | ZMQ_EVENT_HANDSHAKE_SUCCEEDED;
    if (zmq_socket_monitor(sock, ep, ev) != 0)
        return BP_EZMQ;
    m->pair = zmq_socket(ctx, ZMQ_PAIR);
    int linger = 0;
    if (!m->pair || zmq_setsockopt(m->pair, ZMQ_LINGER, &linger, sizeof linger) != 0 ||
        zmq_connect(m->pair, ep) != 0) {
        bp_secmon_close(m, sock);
        return BP_EZMQ;
    }
    return BP_OK;
}

void bp_secmon_close(struct bp_secmon *m, void *sock)
{
    if (sock && m->pair)
        zmq_socket_monitor(sock, NULL, 0);
    if (m->pair)
        zmq_close(m->pair);
    m->pair = NULL;
}

void bp_secmon_poll(struct bp_secmon *m, const char *what)
{
    if (!m->pair)
        return;
    for (;;) {
        zmq_msg_t a, b;
        zmq_msg_init(&a);
        zmq_msg_init(&b);
        if (zmq_msg_recv(&a, m->pair, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&a);
            zmq_msg_close(&b);
            return;
        }
        int more = zmq_msg_more(&a);
        if (more)
            (void)zmq_msg_recv(&b, m->pair, 0);
        if (zmq_msg_size(&a) >= 6) {
            const uint8_t *p = zmq_msg_data(&a);
            uint16_t ev = (uint16_t)(p[0] | p[1] << 8);
            uint32_t val =
                (uint32_t)p[2] | (uint32_t)p[3] << 8 | (uint32_t)p[4] << 16 | (uint32_t)p[5] << 24;
            if (ev == ZMQ_EVENT_HANDSHAKE_SUCCEEDED) {
                m->said = 0;
            } else if (!m->said) {
                m->said = 1;
                if (ev == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH)
                    bp_log(BP_LOG_ERROR,
                           "%s refused this board's key (status %u): is its public "
                           "certificate in the host's --curve-allow directory?",
                           what, (unsigned)val);
                else
                    bp_log(BP_LOG_ERROR,
                           "CURVE handshake with %s failed: wrong --curve-server key, or the "
                           "host is not in CURVE mode",
                           what);
            }
        }
        zmq_msg_close(&a);
        zmq_msg_close(&b);
    }
}

long bp_role_timeout(int64_t now, int64_t wake, long cap)
{
    if (wake <= now)
        return 0;
    return wake - now < cap ? (long)(wake - now) : cap;
}

int bp_role_ctx(const struct bp_io *io, void **ctx, int *own)
{
    *ctx = io && io->zmq_ctx ? io->zmq_ctx : NULL;
    *own = 0;
    if (*ctx)
        return BP_OK;
    *ctx = bp_ctx_new();
    if (!*ctx) {
        bp_log(BP_LOG_ERROR, "cannot create ZeroMQ context: %s", zmq_strerror(errno));
        return BP_EZMQ;
    }
    *own = 1;
    return BP_OK;
}

void bp_role_note_malformed(int64_t n, int rc, const char *from, const char *hint)
{
    if (n <= 5 || bp_log_enabled(BP_LOG_DEBUG))
        bp_log(BP_LOG_WARN, "dropped %s message%s (%" PRId64 " so far)%s",
               rc == BP_EVERSION ? "other-version" : "malformed", from, n,
               hint && (rc == BP_EVERSION || n == 1) ? hint : "");
}
