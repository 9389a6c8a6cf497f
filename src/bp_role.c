#include <errno.h>
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
