/* One --exec task under a guard process (bp_exec.h): the pipes, the
 * guard's fork, the command's process group and how the job ended. Owns
 * the job's pipes, processes and stdout buffer; must not log or touch a
 * socket (the worker polls the pipes), and the guard's code after the fork
 * makes async-signal-safe calls only. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bp_exec.h"
#include "bp_fd.h"
#include "bp_frame.h"
#include "bp_internal.h"

extern char **environ;

/* After the command ended and its group was killed, how long its pipes may
 * stay open (held by a process that left the group) before the job is
 * finished without them. */
#define BP_DRAIN_MS 500

/* With all three pipes open the status pipe is not polled (no room): look
 * at it this often. */
#define BP_STATUS_POLL_MS 250

/* Guard -> worker messages: two int32, kind and value. */
enum { G_STARTED = 1, G_SETUP_ERR, G_EXEC_ERR, G_EXITED };

/* The guard's fds: 0-2 the task's pipes, this one the status pipe. */
#define G_ST_FD 3

/* Sent to the guard by the kernel when the worker dies. Catchable, so the
 * guard can kill its group; the handler checks the worker really died, so
 * a `kill 0` from the task itself is harmless. */
#define G_DEATH_SIG SIGTERM

void bp_job_init(struct bp_job *j, size_t max_out)
{
    memset(j, 0, sizeof *j);
    j->fd_in = j->fd_out = j->fd_err = j->fd_st = -1;
    j->in_file = -1;
    j->max_out = max_out;
}

void bp_job_set_dir(struct bp_job *j, const char *cwd, int in_file)
{
    j->cwd = cwd;
    j->in_file = in_file;
}

void bp_job_set_shell(struct bp_job *j, const char *path)
{
    j->shell = path;
}

void bp_job_set_mem_limit(struct bp_job *j, uint64_t bytes)
{
    j->mem_limit = bytes;
}

static void close_fd(int *fd)
{
    if (*fd >= 0) {
        close(*fd);
        *fd = -1;
    }
}

static void finish(struct bp_job *j, int status, int code)
{
    close_fd(&j->fd_in);
    close_fd(&j->fd_out);
    close_fd(&j->fd_err);
    close_fd(&j->fd_st);
    j->pid = 0;
    j->done = 1;
    j->status = status;
    j->code = code;
}

static void tail_add(struct bp_job *j, const char *s, size_t n)
{
    if (n >= sizeof j->tail) {
        memcpy(j->tail, s + (n - sizeof j->tail), sizeof j->tail);
        j->tail_len = sizeof j->tail;
        return;
    }
    if (j->tail_len + n > sizeof j->tail) {
        size_t drop = j->tail_len + n - sizeof j->tail;
        memmove(j->tail, j->tail + drop, j->tail_len - drop);
        j->tail_len -= drop;
    }
    memcpy(j->tail + j->tail_len, s, n);
    j->tail_len += n;
}

static void tail_msg(struct bp_job *j, const char *msg)
{
    tail_add(j, msg, strlen(msg));
}

/* ---- The guard. It is forked from a possibly multi-threaded worker and
 * never execs, so it only makes async-signal-safe calls: no stdio, no
 * malloc, no locks. ---- */

static pid_t g_parent; /* the worker, as seen before the fork */
static int g_st = -1;  /* status pipe (moves to G_ST_FD) */
/* RLIMIT_DATA for the command (0: none) */
static uint64_t g_mem_limit;

static void g_on_death_sig(int sig)
{
    (void)sig;
    /* The kernel reparents the guard before it sends the signal, so a
     * changed parent means the worker is gone (a thread of the worker
     * exiting reparents to another thread of the same process). */
    if (getppid() != g_parent)
        kill(0, SIGKILL);
}

static void g_send(int kind, int val)
{
    int32_t m[2] = {kind, val};
    ssize_t w;
    do
        w = write(g_st, m, sizeof m);
    while (w < 0 && errno == EINTR);
    /* Nobody to report to: the worker is gone, and so goes the task. */
    if (w != (ssize_t)sizeof m)
        kill(0, SIGKILL);
}

static _Noreturn void g_fail(int kind, int err)
{
    g_send(kind, err);
    _exit(127);
}

/* Parses a decimal fd name from /proc/self/fd; -1 if it is not one. */
static int g_fd_name(const char *s)
{
    int fd = 0;
    if (!*s)
        return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || fd > 100000000)
            return -1;
        fd = fd * 10 + (*s - '0');
    }
    return fd;
}

/* Closes every fd from lowfd up. The guard never execs, so close-on-exec
 * does not help it: it would hold the worker's sockets and, worse, pipe
 * ends of its own job and of the others (the write end of a stdin: that
 * `cat` would never see the end of its input). */
static void g_close_from(int lowfd)
{
#ifdef SYS_close_range
    if (syscall(SYS_close_range, (unsigned)lowfd, ~0U, 0U) == 0)
        return;
#endif
    /* Kernels before 5.9: list /proc/self/fd with the raw syscall
     * (opendir allocates). */
    int d = open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (d >= 0) {
        union {
            char b[2048];
            uint64_t align;
        } buf;
        long n;
        while ((n = syscall(SYS_getdents64, d, buf.b, sizeof buf.b)) > 0) {
            for (long off = 0; off + 19 < n;) {
                unsigned short reclen; /* struct linux_dirent64: d_reclen at 16, name at 19 */
                memcpy(&reclen, buf.b + off + 16, sizeof reclen);
                if (reclen == 0)
                    break;
                int fd = g_fd_name(buf.b + off + 19);
                if (fd >= lowfd && fd != d)
                    close(fd);
                off += reclen;
            }
        }
        close(d);
        if (n == 0)
            return;
    }
    struct rlimit rl;
    rlim_t max = 65536;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
        max = rl.rlim_cur < (1u << 20) ? rl.rlim_cur : (1u << 20);
    for (rlim_t fd = (rlim_t)lowfd; fd < max; fd++)
        close((int)fd);
}

/* Default dispositions for everything the worker ignores or handles: the
 * guard must not run the worker's handlers, and the shell must not inherit
 * SIG_IGN (SIGPIPE). sigaction fails for the signals libc keeps for
 * itself; that is fine. */
static void g_default_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_DFL;
    sigemptyset(&sa.sa_mask);
    for (int s = 1; s < NSIG; s++)
        if (s != SIGKILL && s != SIGSTOP)
            (void)sigaction(s, &sa, NULL);
}

/* fds 0-2: the task's pipes; G_ST_FD: status (close-on-exec, so the shell
 * does not get it); nothing else. Copies above 10 first, so no dup2
 * overwrites a source still to be copied. */
static void g_arrange_fds(int in, int out, int err, int st)
{
    int fds[4] = {in, out, err, st};
    for (int i = 0; i < 4; i++)
        if ((fds[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 10)) < 0)
            g_fail(G_SETUP_ERR, errno);
    for (int i = 0; i < 3; i++)
        if (dup2(fds[i], i) != i)
            g_fail(G_SETUP_ERR, errno);
    if (dup3(fds[3], G_ST_FD, O_CLOEXEC) != G_ST_FD)
        g_fail(G_SETUP_ERR, errno);
    g_st = G_ST_FD;
    g_close_from(G_ST_FD + 1);
}

/* Leads a process group of its own and dies with the worker (parent). */
static void g_lead_group(pid_t parent)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    if (setpgid(0, 0) != 0)
        g_fail(G_SETUP_ERR, errno);
    sa.sa_handler = g_on_death_sig;
    if (sigaction(G_DEATH_SIG, &sa, NULL) != 0)
        g_fail(G_SETUP_ERR, errno);
    if (prctl(PR_SET_PDEATHSIG, G_DEATH_SIG, 0, 0, 0) != 0)
        g_fail(G_SETUP_ERR, errno);
    /* The worker may have died before prctl: then no signal comes. */
    if (getppid() != parent)
        _exit(127);
}

/* In the shell's child: default death signal, no signal blocked, exec.
 * A failed exec writes its errno to xp (the guard sees EOF otherwise). */
static _Noreturn void g_exec_shell(const char *shell, const char *cmd, int xp)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_DFL;
    sigemptyset(&sa.sa_mask);
    (void)sigaction(G_DEATH_SIG, &sa, NULL); /* cannot fail: set before */
    sigset_t none;
    sigemptyset(&none);
    (void)sigprocmask(SIG_SETMASK, &none, NULL); /* cannot fail */
    bp_nofile_restore();                         /* commands get the limit the worker was given */
    struct rlimit rl = {.rlim_cur = (rlim_t)g_mem_limit, .rlim_max = (rlim_t)g_mem_limit};
    char *argv[] = {"sh", "-c", (char *)cmd, NULL};
    /* (set here, in the command's process: not in an emulated guard) */
    if (!g_mem_limit || setrlimit(RLIMIT_DATA, &rl) == 0)
        execve(shell, argv, environ);
    int e = errno;
    (void)!write(xp, &e, sizeof e);
    _exit(127);
}

/* Forks the shell and returns its pid once its exec worked; reports a
 * failed fork or exec to the worker and exits. The guard keeps none of
 * the task's pipes: the worker must see their ends when the command's
 * processes close them. */
static pid_t g_start_shell(const char *shell, const char *cmd)
{
    /* Tells the guard whether the exec worked: EOF, or the errno. */
    int xp[2];
    if (pipe2(xp, O_CLOEXEC) != 0)
        g_fail(G_SETUP_ERR, errno);
    pid_t sh = fork();
    if (sh == 0)
        g_exec_shell(shell, cmd, xp[1]);
    int fork_err = errno;
    close(xp[1]);
    close(0);
    close(1);
    close(2);
    if (sh < 0)
        g_fail(G_SETUP_ERR, fork_err);
    int e = 0;
    ssize_t r;
    do
        r = read(xp[0], &e, sizeof e);
    while (r < 0 && errno == EINTR);
    close(xp[0]);
    if (r == (ssize_t)sizeof e) {
        int st_sh;
        while (waitpid(sh, &st_sh, 0) < 0 && errno == EINTR)
            ;
        g_fail(G_EXEC_ERR, e);
    }
    return sh;
}

/* Runs in the forked child; all signals are blocked on entry. */
static _Noreturn void guard(pid_t parent, const struct bp_job *j, const char *cmd, int in, int out,
                            int err, int st)
{
    g_parent = parent;
    g_mem_limit = j->mem_limit;
    g_st = st;
    g_default_signals();
    g_arrange_fds(j->in_file >= 0 ? j->in_file : in, out, err, st);
    g_lead_group(parent);
    if (j->cwd && chdir(j->cwd) != 0)
        g_fail(G_SETUP_ERR, errno);
    const char *shell = j->shell ? j->shell : "/bin/sh";
    pid_t sh = g_start_shell(shell, cmd);
    g_send(G_STARTED, 0);

    sigset_t mask;
    sigfillset(&mask);
    sigdelset(&mask, G_DEATH_SIG);
    (void)sigprocmask(SIG_SETMASK, &mask, NULL); /* cannot fail */
    int st_sh;
    while (waitpid(sh, &st_sh, 0) < 0)
        if (errno != EINTR)
            kill(0, SIGKILL); /* cannot happen: sh is our child */
    g_send(G_EXITED, st_sh);
    /* Stay, holding the group id, until the worker kills the group (or
     * dies, and the death signal handler does). */
    for (;;)
        pause();
}

/* ---- The worker's side ---- */

static void start_error(struct bp_job *j, int code, const char *what, const char *shell)
{
    char m[256];
    if (shell)
        snprintf(m, sizeof m, "boardpipe: cannot run %s: %s", shell, strerror(code));
    else
        snprintf(m, sizeof m, "boardpipe: cannot start task: %s: %s", what ? what : "?",
                 strerror(code));
    tail_msg(j, m);
    finish(j, BP_ST_EXECERR, code);
}

static void kill_group(struct bp_job *j)
{
    /* Only while the guard is unreaped: its pid is then still taken, so
     * the group id names our group and no other. ESRCH (every member
     * already dead) is fine. */
    if (j->pid > 0 && !j->exited) {
        (void)kill(-j->pid, SIGKILL);
        (void)kill(j->pid, SIGKILL);
        j->sig_sent = SIGKILL;
    }
}

static void reap_blocking(struct bp_job *j)
{
    int st;
    while (waitpid(j->pid, &st, 0) < 0 && errno == EINTR)
        ;
    j->exited = 1;
}

/* The job's state for a new command (its buffers are kept). */
static void job_reset(struct bp_job *j, const void *in, size_t len, int timeout_ms, int64_t now)
{
    j->in = in;
    j->in_len = len;
    j->in_off = 0;
    j->out_len = 0;
    j->overflow = 0;
    j->tail_len = 0;
    j->timed_out = j->killed = j->ended = j->exited = j->st_got = j->sig_sent = 0;
    j->wstatus = 0;
    j->exit_seen = 0;
    j->next_check = now + BP_STATUS_POLL_MS;
    j->check_step = 1;
    j->done = 0;
    j->deadline = timeout_ms > 0 ? now + timeout_ms : 0;
}

/* The four pipes between worker and guard: [0] read end, [1] write end. */
enum { P_IN, P_OUT, P_ERR, P_ST, N_PIPES };

static void close_pipes(int p[N_PIPES][2])
{
    for (int i = 0; i < N_PIPES; i++) {
        close_fd(&p[i][0]);
        close_fd(&p[i][1]);
    }
}

/* Forks the guard with the child's pipe ends, and gives the job the
 * worker's ends. Returns 0, or an errno value with *what the failed call
 * (every pipe then closed). */
static int fork_guard(struct bp_job *j, const char *cmd, int p[N_PIPES][2], const char **what)
{
    /* The child starts with every signal blocked, so none of the worker's
     * handlers runs in it before the guard resets them. */
    sigset_t all, old;
    sigfillset(&all);
    int rc = pthread_sigmask(SIG_BLOCK, &all, &old);
    pid_t parent = getpid();
    pid_t pid = rc == 0 ? fork() : -1;
    if (pid == 0)
        guard(parent, j, cmd, p[P_IN][0], p[P_OUT][1], p[P_ERR][1], p[P_ST][1]);
    int e = rc ? rc : errno;
    if (rc == 0)
        (void)pthread_sigmask(SIG_SETMASK, &old, NULL); /* cannot fail: old is valid */
    close_fd(&p[P_IN][0]);
    close_fd(&p[P_OUT][1]);
    close_fd(&p[P_ERR][1]);
    close_fd(&p[P_ST][1]);
    if (pid < 0) {
        close_pipes(p);
        *what = rc ? "pthread_sigmask" : "fork";
        return e;
    }
    j->pid = pid;
    j->fd_in = p[P_IN][1];
    j->fd_out = p[P_OUT][0];
    j->fd_err = p[P_ERR][0];
    j->fd_st = p[P_ST][0];
    return 0;
}

/* Waits for the guard's word that the shell was exec'd. Returns 0 then;
 * otherwise the group is killed, the guard reaped and the job done with
 * the reason, and it returns -1. */
static int await_guard(struct bp_job *j, const char *shell)
{
    int32_t m[2] = {0, 0};
    ssize_t r;
    do
        r = read(j->fd_st, m, sizeof m);
    while (r < 0 && errno == EINTR);
    if (r == (ssize_t)sizeof m && m[0] == G_STARTED)
        return 0;
    int e = r < 0 ? errno : EIO;
    kill_group(j);
    reap_blocking(j);
    if (r == (ssize_t)sizeof m && m[0] == G_EXEC_ERR)
        start_error(j, m[1], NULL, shell);
    else if (r == (ssize_t)sizeof m && m[0] == G_SETUP_ERR)
        start_error(j, m[1], "guard process", NULL);
    else
        start_error(j, e, "guard process died", NULL);
    return -1;
}

int bp_job_start(struct bp_job *j, const char *cmd, const void *in, size_t len, int timeout_ms,
                 int64_t now)
{
    int p[N_PIPES][2] = {{-1, -1}, {-1, -1}, {-1, -1}, {-1, -1}};
    job_reset(j, in, len, timeout_ms, now);
    const char *shell = j->shell ? j->shell : "/bin/sh";

    if (pipe2(p[P_IN], O_CLOEXEC) || pipe2(p[P_OUT], O_CLOEXEC) || pipe2(p[P_ERR], O_CLOEXEC) ||
        pipe2(p[P_ST], O_CLOEXEC)) {
        int e = errno;
        close_pipes(p);
        start_error(j, e, "cannot create pipes", NULL);
        return BP_OK;
    }
    const char *what = NULL;
    int e = fork_guard(j, cmd, p, &what);
    if (j->in_file >= 0)
        j->in_len = 0; /* stdin is the file: nothing to write */
    j->cwd = NULL;
    j->in_file = -1;
    if (e) {
        start_error(j, e, what, NULL);
        return BP_OK;
    }
    if (await_guard(j, shell) != 0)
        return BP_OK;
    if (fcntl(j->fd_in, F_SETFL, O_NONBLOCK) || fcntl(j->fd_out, F_SETFL, O_NONBLOCK) ||
        fcntl(j->fd_err, F_SETFL, O_NONBLOCK) || fcntl(j->fd_st, F_SETFL, O_NONBLOCK)) {
        e = errno;
        kill_group(j);
        reap_blocking(j);
        start_error(j, e, "fcntl", NULL);
        return BP_OK;
    }
    if (j->in_len == 0)
        close_fd(&j->fd_in);
    return BP_OK;
}

int bp_job_pollitems(const struct bp_job *j, zmq_pollitem_t *items)
{
    int n = 0;
    if (j->done)
        return 0;
    if (j->fd_in >= 0)
        items[n++] = (zmq_pollitem_t){.socket = NULL, .fd = j->fd_in, .events = ZMQ_POLLOUT};
    if (j->fd_out >= 0)
        items[n++] = (zmq_pollitem_t){.socket = NULL, .fd = j->fd_out, .events = ZMQ_POLLIN};
    if (j->fd_err >= 0)
        items[n++] = (zmq_pollitem_t){.socket = NULL, .fd = j->fd_err, .events = ZMQ_POLLIN};
    /* The caller has room for 3: the status pipe gets a slot once one of
     * the others is closed (stdin, usually, soon after the start). */
    if (j->fd_st >= 0 && n < 3)
        items[n++] = (zmq_pollitem_t){.socket = NULL, .fd = j->fd_st, .events = ZMQ_POLLIN};
    return n;
}

static void read_out(struct bp_job *j)
{
    for (;;) {
        if (j->out_cap - j->out_len < 4096 && j->out_cap < j->max_out + 1) {
            size_t cap = j->out_cap ? j->out_cap * 2 : 8192;
            if (cap > j->max_out + 1)
                cap = j->max_out + 1;
            uint8_t *p = realloc(j->out, cap);
            if (p) {
                j->out = p;
                j->out_cap = cap;
            }
        }
        uint8_t scratch[4096];
        uint8_t *dst = scratch;
        size_t room = sizeof scratch;
        if (j->out && j->out_len < j->out_cap) {
            dst = j->out + j->out_len;
            room = j->out_cap - j->out_len;
        }
        ssize_t r = read(j->fd_out, dst, room);
        if (r > 0) {
            if (dst == scratch) {
                j->overflow = 1;
            } else {
                j->out_len += (size_t)r;
                if (j->out_len > j->max_out)
                    j->overflow = 1;
            }
            continue;
        }
        if (r == 0 || (errno != EAGAIN && errno != EINTR))
            close_fd(&j->fd_out);
        return;
    }
}

static void read_err(struct bp_job *j)
{
    char buf[1024];
    for (;;) {
        ssize_t r = read(j->fd_err, buf, sizeof buf);
        if (r > 0) {
            tail_add(j, buf, (size_t)r);
            continue;
        }
        if (r == 0 || (errno != EAGAIN && errno != EINTR))
            close_fd(&j->fd_err);
        return;
    }
}

static void write_in(struct bp_job *j)
{
    while (j->in_off < j->in_len) {
        ssize_t w = write(j->fd_in, j->in + j->in_off, j->in_len - j->in_off);
        if (w > 0) {
            j->in_off += (size_t)w;
            continue;
        }
        if (w < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        break; /* EPIPE: the command does not read its input; fine */
    }
    close_fd(&j->fd_in);
}

/* Reads the guard's report, if there is one. The status pipe closes after
 * it: the command is over. EOF without a report means the guard died. */
static void read_status(struct bp_job *j)
{
    int32_t m[2];
    ssize_t r = read(j->fd_st, m, sizeof m);
    if (r < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (r == (ssize_t)sizeof m && m[0] == G_EXITED) {
        j->wstatus = m[1];
        j->st_got = 1;
    }
    close_fd(&j->fd_st);
}

void bp_job_io(struct bp_job *j, const zmq_pollitem_t *items, int n)
{
    for (int i = 0; i < n; i++) {
        if (!items[i].revents)
            continue;
        if (items[i].fd == j->fd_in && j->fd_in >= 0)
            write_in(j);
        else if (items[i].fd == j->fd_out && j->fd_out >= 0)
            read_out(j);
        else if (items[i].fd == j->fd_err && j->fd_err >= 0)
            read_err(j);
        else if (items[i].fd == j->fd_st && j->fd_st >= 0)
            read_status(j);
    }
}

/* Kills the group: from here the job only waits for the guard's death. */
static void end_group(struct bp_job *j, int64_t now)
{
    if (j->ended)
        return;
    j->ended = 1;
    j->exit_seen = now;
    j->check_step = 1;
    kill_group(j);
}

void bp_job_interrupt(struct bp_job *j)
{
    if (j->done)
        return;
    j->killed = 1;
    end_group(j, bp_now_ms());
}

static void conclude(struct bp_job *j)
{
    int st = j->wstatus;
    if (j->killed) {
        tail_msg(j, "\nboardpipe: task interrupted: worker stopping");
        finish(j, BP_ST_INTERRUPTED, WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
    } else if (j->timed_out) {
        tail_msg(j, "\nboardpipe: task timed out and was killed");
        /* The code is the signal sent, whatever the guard managed to
         * report before it died of it. */
        finish(j, BP_ST_TIMEOUT, j->sig_sent ? j->sig_sent : SIGKILL);
    } else if (WIFSIGNALED(st)) {
        finish(j, BP_ST_SIGNALED, WTERMSIG(st));
    } else if (WEXITSTATUS(st) != 0) {
        finish(j, BP_ST_FAILED, WEXITSTATUS(st));
    } else if (j->overflow) {
        char m[96];
        snprintf(m, sizeof m, "boardpipe: output larger than %zu bytes", j->max_out);
        tail_msg(j, m);
        finish(j, BP_ST_TOOBIG, 0);
    } else {
        finish(j, BP_ST_OK, 0);
    }
}

int bp_job_check(struct bp_job *j, int64_t now, int64_t *wake_ms)
{
    *wake_ms = 0;
    if (j->done)
        return 1;
    if (j->deadline && now >= j->deadline && !j->timed_out && !j->ended) {
        j->timed_out = 1;
        end_group(j, now);
    }
    if (j->fd_st >= 0)
        read_status(j);
    if (j->fd_st < 0)
        end_group(j, now); /* the shell exited (or the guard died) */
    if (j->ended && !j->exited) {
        int st;
        pid_t r = waitpid(j->pid, &st, WNOHANG);
        if (r == j->pid || (r < 0 && errno == ECHILD)) {
            j->exited = 1;
            /* Killed by us, the guard's own status tells nothing; it is
             * the status unless the guard died before reporting. */
            if (!j->st_got)
                j->wstatus = r == j->pid ? st : 0;
        }
    }
    int pipes_open = j->fd_out >= 0 || j->fd_err >= 0;
    if (j->exited) {
        if (!pipes_open || now - j->exit_seen >= BP_DRAIN_MS || j->timed_out || j->killed) {
            /* Read what is already in the pipes before closing them. */
            if (j->fd_out >= 0)
                read_out(j);
            if (j->fd_err >= 0)
                read_err(j);
            conclude(j);
            return 1;
        }
        *wake_ms = j->exit_seen + BP_DRAIN_MS;
        return 0;
    }
    if (j->ended) {
        /* SIGKILLed guard: reapable within moments. Back off from 1 ms so
         * one stuck in the kernel costs little. */
        j->next_check = now + j->check_step;
        if (j->check_step < 100)
            j->check_step *= 2;
        *wake_ms = j->next_check;
        return 0;
    }
    if (j->fd_in >= 0 && j->fd_out >= 0 && j->fd_err >= 0) {
        /* The status pipe is not polled (see bp_job_pollitems). */
        if (now >= j->next_check)
            j->next_check = now + BP_STATUS_POLL_MS;
        *wake_ms = j->next_check;
    }
    if (j->deadline && !j->timed_out && (*wake_ms == 0 || j->deadline < *wake_ms))
        *wake_ms = j->deadline;
    return 0;
}

const uint8_t *bp_job_result(const struct bp_job *j, size_t *len)
{
    if (j->status == BP_ST_OK) {
        size_t n = j->out_len;
        /* Like $(cmd): one trailing newline is the line end, not data. */
        if (n && j->out[n - 1] == '\n')
            n--;
        *len = n;
        return j->out ? j->out : (const uint8_t *)"";
    }
    *len = j->tail_len;
    return (const uint8_t *)j->tail;
}

void bp_job_release(struct bp_job *j)
{
    if (j->pid > 0 && !j->done) {
        kill_group(j);
        if (!j->exited)
            reap_blocking(j);
        j->pid = 0;
    }
    close_fd(&j->fd_in);
    close_fd(&j->fd_out);
    close_fd(&j->fd_err);
    close_fd(&j->fd_st);
    free(j->out);
    j->out = NULL;
    j->out_cap = j->out_len = 0;
}

void bp_job_term(struct bp_job *j)
{
    /* The guard ignores SIGTERM (it acts only on its parent's death), so
     * the command sees it and the job ends with its status. */
    if (!j->done && j->pid > 0 && !j->ended)
        (void)kill(-j->pid, SIGTERM);
}
