/* Descriptors (bp_fd.h): the raised RLIMIT_NOFILE and the one put back
 * for commands, the spare descriptor and the refusing accept. Owns the
 * spare descriptor and the refusal counts; must not touch ZeroMQ (it only
 * answers libzmq's accept calls), and bp_nofile_restore() must stay
 * async-signal-safe. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "bp.h"
#include "bp_fd.h"
#include "bp_internal.h"

/* The descriptor kept free for refusing a connection when the rest are in
 * use (the "idle descriptor" of libuv and libev); -1 while lent out. */
static int spare = -1;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_uint_fast64_t refused;
static atomic_int short_of;       /* refusing since the last accepted connection */
static uint64_t refused_at_start; /* refused when this shortage began */
static int64_t warned_ms = -1;    /* when the last shortage was logged */
static int warned;                /* this shortage was logged */
static struct rlimit found;       /* before bp_nofile_raise() raised it */
static int raised;

/* The kernel's ceiling for any RLIMIT_NOFILE (fs.nr_open). */
static rlim_t nr_open(void)
{
    rlim_t v = 1048576; /* the kernel's default */
    char buf[32];
    int fd = open("/proc/sys/fs/nr_open", O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
    if (fd >= 0)
        close(fd);
    if (n > 0) { /* no fscanf: it would link musl's whole scanf (3 KB) for one number */
        buf[n] = '\0';
        char *end;
        errno = 0;
        unsigned long long x = strtoull(buf, &end, 10);
        if (!errno && end != buf && x > 0)
            v = (rlim_t)x;
    }
    return v;
}

static void reserve(void)
{
    if (spare < 0)
        spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

int bp_nofile_raise(uint64_t *soft, uint64_t *hard)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return BP_EIO;
    int rc = BP_OK;
    rlim_t want = rl.rlim_max, cap = nr_open();
    if (want == RLIM_INFINITY || want > cap)
        want = cap;
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < want) {
        struct rlimit n = {.rlim_cur = want, .rlim_max = rl.rlim_max};
        if (setrlimit(RLIMIT_NOFILE, &n) == 0) {
            if (!raised)
                found = rl;
            raised = 1;
            rl.rlim_cur = want;
        } else
            rc = BP_EIO;
    }
    pthread_mutex_lock(&lock);
    reserve();
    pthread_mutex_unlock(&lock);
    if (soft)
        *soft = rl.rlim_cur == RLIM_INFINITY ? UINT64_MAX : (uint64_t)rl.rlim_cur;
    if (hard)
        *hard = rl.rlim_max == RLIM_INFINITY ? UINT64_MAX : (uint64_t)rl.rlim_max;
    return rc;
}

void bp_nofile_restore(void)
{
    if (raised)
        (void)setrlimit(RLIMIT_NOFILE, &found);
}

static long raw_accept(int fd, void *addr, void *addrlen, int flags)
{
    return syscall(SYS_accept4, fd, addr, addrlen, flags);
}

/* Out of descriptors: takes the waiting connection with the spare one and
 * closes it (its peer sees the connection end), then keeps the spare
 * again. Called with the lock held. */
static void refuse_one(int fd)
{
    /* Linux takes the descriptor before it looks for a connection: the
     * accept below would block on a blocking socket (libzmq's listeners
     * are; it accepts when epoll says one waits) with nobody waiting. */
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, 0) != 1 || !(p.revents & POLLIN))
        return;
    reserve(); /* lent out and not yet back: maybe one came free */
    if (spare >= 0) {
        close(spare);
        spare = -1;
        long c = raw_accept(fd, NULL, NULL, SOCK_CLOEXEC);
        if (c >= 0) {
            close((int)c);
            atomic_fetch_add(&refused, 1);
        }
        reserve();
    }
    if (spare < 0) {
        /* Another thread took the descriptor we freed: nothing left to
         * refuse with. Slow the caller's retries down instead. */
        struct timespec ts = {0, 10000000L}; /* 10 ms */
        nanosleep(&ts, NULL);
    }
}

static void shortage_begins(void)
{
    refused_at_start = atomic_load(&refused);
    int64_t now = bp_now_ms();
    /* Peers that come and go make at most one warning a minute. */
    warned = warned_ms < 0 || now - warned_ms >= 60000;
    if (warned) {
        warned_ms = now;
        struct rlimit rl;
        char lim[32] = "?";
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
            snprintf(lim, sizeof lim, "%llu", (unsigned long long)rl.rlim_cur);
        bp_log(BP_LOG_WARN,
               "out of file descriptors (limit %s): new connections are refused until peers "
               "leave (raise LimitNOFILE= / ulimit -Hn)",
               lim);
    }
    atomic_store(&short_of, 1);
}

int bp_fd_accept(int fd, void *addr, void *addrlen, int flags)
{
    long c = raw_accept(fd, addr, addrlen, flags);
    if (c >= 0) {
        if (atomic_load(&short_of)) {
            pthread_mutex_lock(&lock);
            if (atomic_exchange(&short_of, 0) && warned)
                bp_log(BP_LOG_INFO,
                       "file descriptors free again: accepting connections (%llu refused)",
                       (unsigned long long)(atomic_load(&refused) - refused_at_start));
            pthread_mutex_unlock(&lock);
        }
        return (int)c;
    }
    int e = errno;
    if (e == EMFILE || e == ENFILE) {
        pthread_mutex_lock(&lock);
        if (!atomic_load(&short_of))
            shortage_begins();
        refuse_one(fd);
        pthread_mutex_unlock(&lock);
    }
    errno = e;
    return -1;
}

uint64_t bp_fd_refused(void)
{
    return atomic_load(&refused);
}
