/* bp_fd: the descriptor limit is raised to the hard limit, and a process
 * out of descriptors refuses a waiting connection instead of leaving it
 * queued (which made libzmq's I/O thread spin). Each case runs in a child
 * process: limits lowered there stay there. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bp.h"
#include "bp_fd.h"

/* Runs fn in a child; its exit status is the line of the first failed
 * check (0: all held). */
static void in_child(int (*fn)(void))
{
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(fn());
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    if (WEXITSTATUS(st) != 0)
        print_error("check failed at test_fd.c:%d (mod 256)\n", WEXITSTATUS(st));
    assert_int_equal(WEXITSTATUS(st), 0);
}

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "failed: %s (errno %d)\n", #c, errno);                                 \
            return __LINE__ & 0xff ? __LINE__ & 0xff : 1;                                          \
        }                                                                                          \
    } while (0)

static int raise_soft(void)
{
    struct rlimit rl;
    CHECK(getrlimit(RLIMIT_NOFILE, &rl) == 0);
    CHECK(rl.rlim_max == RLIM_INFINITY || rl.rlim_max > 64);
    struct rlimit low = {.rlim_cur = 64, .rlim_max = rl.rlim_max};
    CHECK(setrlimit(RLIMIT_NOFILE, &low) == 0);
    uint64_t soft = 0, hard = 0;
    CHECK(bp_nofile_raise(&soft, &hard) == BP_OK);
    struct rlimit now;
    CHECK(getrlimit(RLIMIT_NOFILE, &now) == 0);
    CHECK(now.rlim_max == rl.rlim_max); /* the hard limit is left alone */
    CHECK(now.rlim_cur > 64);           /* raised... */
    CHECK(rl.rlim_max == RLIM_INFINITY || now.rlim_cur == rl.rlim_max); /* ...to the hard one */
    CHECK(soft == (uint64_t)now.rlim_cur);
    CHECK(rl.rlim_max == RLIM_INFINITY || hard == (uint64_t)rl.rlim_max);
    /* A descriptor beyond the old limit can be had now. */
    int fds[80], z = open("/dev/null", O_RDONLY);
    int i;
    CHECK(z >= 0);
    for (i = 0; i < 80; i++) {
        fds[i] = dup(z);
        CHECK(fds[i] >= 0);
    }
    while (i-- > 0)
        close(fds[i]);
    /* What a worker's command gets: the limit found at the start. */
    bp_nofile_restore();
    CHECK(getrlimit(RLIMIT_NOFILE, &now) == 0);
    CHECK(now.rlim_cur == 64 && now.rlim_max == rl.rlim_max);
    return 0;
}

static void t_raise_soft(void **state)
{
    (void)state;
    in_child(raise_soft);
}

static int hard_is_soft(void)
{
    struct rlimit low = {.rlim_cur = 64, .rlim_max = 64};
    CHECK(setrlimit(RLIMIT_NOFILE, &low) == 0);
    uint64_t soft = 0, hard = 0;
    CHECK(bp_nofile_raise(&soft, &hard) == BP_OK); /* nothing to raise: no error */
    CHECK(soft == 64 && hard == 64);
    struct rlimit now;
    CHECK(getrlimit(RLIMIT_NOFILE, &now) == 0);
    CHECK(now.rlim_cur == 64 && now.rlim_max == 64);
    return 0;
}

static void t_hard_is_soft(void **state)
{
    (void)state;
    in_child(hard_is_soft);
}

/* A listening socket on loopback, blocking as libzmq's are. */
static int listener(uint16_t *port)
{
    int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t n = sizeof a;
    if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof a) != 0 || listen(l, 16) != 0 ||
        getsockname(l, (struct sockaddr *)&a, &n) != 0)
        return -1;
    *port = ntohs(a.sin_port);
    return l;
}

static int dial(uint16_t port)
{
    int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {
        .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK), .sin_port = htons(port)};
    if (c < 0 || connect(c, (struct sockaddr *)&a, sizeof a) != 0)
        return -1;
    return c;
}

static int readable(int fd, int ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    return poll(&p, 1, ms) == 1 && (p.revents & POLLIN);
}

static int refuses_when_out(void)
{
    struct rlimit rl;
    CHECK(getrlimit(RLIMIT_NOFILE, &rl) == 0);
    struct rlimit low = {.rlim_cur = 64, .rlim_max = rl.rlim_max};
    CHECK(setrlimit(RLIMIT_NOFILE, &low) == 0);
    CHECK(bp_nofile_raise(NULL, NULL) == BP_OK); /* reserves the spare */
    CHECK(setrlimit(RLIMIT_NOFILE, &low) == 0);  /* and back down to 64 */
    uint16_t port = 0, eport = 0;
    int l = listener(&port), le = listener(&eport);
    CHECK(l >= 0 && le >= 0);
    int c1 = dial(port), c2 = dial(port);
    CHECK(c1 >= 0 && c2 >= 0);
    /* Fill every descriptor left. */
    int fill[64], n = 0, z = open("/dev/null", O_RDONLY);
    CHECK(z >= 0);
    while (n < 64 && (fill[n] = dup(z)) >= 0)
        n++;
    CHECK(n < 64 && errno == EMFILE);
    CHECK(readable(l, 5000));
    uint64_t before = bp_fd_refused();
    /* Nobody waiting on a blocking listener: the error, at once (the
     * refusal must not wait for a connection). */
    CHECK(bp_fd_accept(le, NULL, NULL, SOCK_CLOEXEC) < 0 && errno == EMFILE);
    CHECK(bp_fd_refused() == before);
    /* Out of descriptors: the call fails as accept4 would... */
    errno = 0;
    CHECK(bp_fd_accept(l, NULL, NULL, SOCK_CLOEXEC) < 0 && errno == EMFILE);
    /* ...but the first connection waiting was taken off the queue and
     * closed: its peer sees the end, and the count says so. */
    CHECK(bp_fd_refused() == before + 1);
    char b;
    CHECK(readable(c1, 5000) && recv(c1, &b, 1, 0) <= 0);
    CHECK(bp_fd_accept(l, NULL, NULL, SOCK_CLOEXEC) < 0 && errno == EMFILE);
    CHECK(bp_fd_refused() == before + 2);
    /* Nothing left waiting: a poller is not woken again and again. */
    CHECK(!readable(l, 200));
    /* Descriptors come free (one for the dialling end, in this same
     * process): the next peer is accepted. */
    close(fill[--n]);
    close(fill[--n]);
    int c3 = dial(port);
    CHECK(c3 >= 0);
    CHECK(readable(l, 5000));
    int a = bp_fd_accept(l, NULL, NULL, SOCK_CLOEXEC);
    CHECK(a >= 0);
    CHECK(send(c3, "x", 1, 0) == 1 && readable(a, 5000) && recv(a, &b, 1, 0) == 1 && b == 'x');
    return 0;
}

static void t_refuses_when_out(void **state)
{
    (void)state;
    in_child(refuses_when_out);
}

static int other_errors_pass(void)
{
    /* Not a socket: the error is the caller's, nothing refused. */
    uint64_t before = bp_fd_refused();
    int p[2];
    CHECK(pipe(p) == 0);
    errno = 0;
    CHECK(bp_fd_accept(p[0], NULL, NULL, 0) < 0 && errno == ENOTSOCK);
    CHECK(bp_fd_refused() == before);
    return 0;
}

static void t_other_errors_pass(void **state)
{
    (void)state;
    in_child(other_errors_pass);
}

int main(void)
{
    bp_log_init("test_fd", BP_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_raise_soft),
        cmocka_unit_test(t_hard_is_soft),
        cmocka_unit_test(t_refuses_when_out),
        cmocka_unit_test(t_other_errors_pass),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
