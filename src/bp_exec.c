#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bp_exec.h"
#include "bp_frame.h"
#include "bp_internal.h"

extern char **environ;

/* After the child exits, how long its pipes may stay open (held by a
 * background grandchild) before the job is finished without them. */
#define BP_DRAIN_MS 500

void bp_job_init(struct bp_job *j, size_t max_out)
{
    memset(j, 0, sizeof *j);
    j->fd_in = j->fd_out = j->fd_err = -1;
    j->max_out = max_out;
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

int bp_job_start(struct bp_job *j, const char *cmd, const void *in, size_t len, int timeout_ms,
                 int64_t now)
{
    int pin[2] = {-1, -1}, pout[2] = {-1, -1}, perr[2] = {-1, -1};
    j->in = in;
    j->in_len = len;
    j->in_off = 0;
    j->out_len = 0;
    j->overflow = 0;
    j->tail_len = 0;
    j->timed_out = j->killed = j->exited = 0;
    j->exit_seen = 0;
    j->next_check = 0;
    j->check_step = 1;
    j->done = 0;
    j->deadline = timeout_ms > 0 ? now + timeout_ms : 0;

    if (pipe2(pin, O_CLOEXEC) || pipe2(pout, O_CLOEXEC) || pipe2(perr, O_CLOEXEC)) {
        int e = errno;
        char m[128];
        snprintf(m, sizeof m, "boardpipe: cannot create pipes: %s", strerror(e));
        close_fd(&pin[0]), close_fd(&pin[1]), close_fd(&pout[0]), close_fd(&pout[1]);
        close_fd(&perr[0]), close_fd(&perr[1]);
        tail_msg(j, m);
        finish(j, BP_ST_EXECERR, e);
        return BP_OK;
    }

    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, pin[0], 0);
    posix_spawn_file_actions_adddup2(&fa, pout[1], 1);
    posix_spawn_file_actions_adddup2(&fa, perr[1], 2);
    posix_spawnattr_init(&at);
    /* Own process group, so a timeout kills the whole pipeline the shell
     * started; default signal dispositions and an empty mask, whatever the
     * worker itself ignores or blocks. */
    sigset_t none, def;
    sigemptyset(&none);
    sigemptyset(&def);
    sigaddset(&def, SIGPIPE);
    sigaddset(&def, SIGINT);
    sigaddset(&def, SIGTERM);
    sigaddset(&def, SIGCHLD);
    posix_spawnattr_setsigmask(&at, &none);
    posix_spawnattr_setsigdefault(&at, &def);
    posix_spawnattr_setpgroup(&at, 0);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
                                      POSIX_SPAWN_SETSIGDEF);
    char *argv[] = {"sh", "-c", (char *)cmd, NULL};
    pid_t pid;
    int rc = posix_spawn(&pid, "/bin/sh", &fa, &at, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    close(pin[0]);
    close(pout[1]);
    close(perr[1]);
    if (rc != 0) {
        char m[128];
        snprintf(m, sizeof m, "boardpipe: cannot run /bin/sh: %s", strerror(rc));
        close(pin[1]);
        close(pout[0]);
        close(perr[0]);
        tail_msg(j, m);
        finish(j, BP_ST_EXECERR, rc);
        return BP_OK;
    }
    j->pid = pid;
    j->fd_in = pin[1];
    j->fd_out = pout[0];
    j->fd_err = perr[0];
    fcntl(j->fd_in, F_SETFL, O_NONBLOCK);
    fcntl(j->fd_out, F_SETFL, O_NONBLOCK);
    fcntl(j->fd_err, F_SETFL, O_NONBLOCK);
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
    }
}

static void kill_group(struct bp_job *j)
{
    if (j->pid > 0 && !j->exited) {
        kill(-j->pid, SIGKILL);
        kill(j->pid, SIGKILL);
    }
}

void bp_job_interrupt(struct bp_job *j)
{
    if (j->done)
        return;
    j->killed = 1;
    kill_group(j);
}

static void conclude(struct bp_job *j)
{
    int st = j->wstatus;
    if (j->killed) {
        tail_msg(j, "\nboardpipe: task interrupted: worker stopping");
        finish(j, BP_ST_INTERRUPTED, WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
    } else if (j->timed_out) {
        tail_msg(j, "\nboardpipe: task timed out and was killed");
        finish(j, BP_ST_TIMEOUT, WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
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
    if (j->deadline && now >= j->deadline && !j->timed_out && !j->exited) {
        j->timed_out = 1;
        kill_group(j);
    }
    int pipes_open = j->fd_out >= 0 || j->fd_err >= 0;
    if (!j->exited && (!pipes_open || j->timed_out || j->killed || now >= j->next_check)) {
        pid_t r = waitpid(j->pid, &j->wstatus, WNOHANG);
        if (r == j->pid || (r < 0 && errno == ECHILD)) {
            j->exited = 1;
            j->exit_seen = now;
            if (r < 0)
                j->wstatus = 0;
        }
    }
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
    if (!pipes_open) {
        /* Pipes closed, child not yet reaped: usually microseconds away.
         * Back off from 1 ms so a child that closed its output early and
         * goes on running costs little. */
        j->next_check = now + j->check_step;
        if (j->check_step < 100)
            j->check_step *= 2;
        *wake_ms = j->next_check;
    } else {
        /* A child may exit while a grandchild holds its pipes: look now
         * and then without waiting on the pipes. */
        if (now >= j->next_check)
            j->next_check = now + 250;
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
            waitpid(j->pid, &j->wstatus, 0);
    }
    close_fd(&j->fd_in);
    close_fd(&j->fd_out);
    close_fd(&j->fd_err);
    free(j->out);
    j->out = NULL;
    j->out_cap = j->out_len = 0;
}
