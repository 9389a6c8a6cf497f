/* Runs one task through '/bin/sh -c CMD': task on stdin, result from
 * stdout, a tail of stderr kept for failure reports. Non-blocking: the
 * worker's poll loop drives the pipes of all running jobs.
 *
 * Each task runs under a small guard process forked from the worker: the
 * guard leads a process group of its own, starts the shell in it, reports
 * the shell's exit status through a pipe and then waits to be killed. The
 * worker ends every job, however it ends, by SIGKILLing the whole group
 * while the guard is still unreaped (so the group id cannot have been
 * reused), and the guard kills the group itself if the worker dies (parent
 * death signal). So no process a task started outlives its job or the
 * worker, unless it left the group (setsid, setpgid). */
#ifndef BP_EXEC_H
#define BP_EXEC_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <zmq.h>

#define BP_ERR_TAIL 512

struct bp_job {
    pid_t pid;                 /* the guard = the group id; 0 when none */
    int fd_in, fd_out, fd_err; /* -1 once closed */
    int fd_st;                 /* status pipe from the guard; -1 once closed */
    const char *shell;         /* NULL: /bin/sh (see bp_job_set_shell) */
    uint64_t mem_limit;        /* the command's RLIMIT_DATA (0: none) */
    const char *cwd;           /* the next command's directory (NULL: the worker's) */
    int in_file;               /* the next command's stdin (-1: the task bytes) */
    const uint8_t *in;         /* task bytes, owned by the caller until done */
    size_t in_len, in_off;
    uint8_t *out; /* stdout, reused across tasks (owned by the job) */
    size_t out_len, out_cap, max_out;
    int overflow; /* stdout went past max_out */
    char tail[BP_ERR_TAIL];
    size_t tail_len;
    int64_t deadline;   /* kill after this (ms, bp_now_ms clock); 0: none */
    int64_t next_check; /* next look at the guard without a pipe event */
    int check_step;
    int64_t exit_seen; /* when the group was killed, pipes maybe still open */
    int timed_out, killed;
    /* The signal the group was killed with, or 0. */
    int sig_sent;
    int ended;  /* the group was killed: command over, timeout or interrupt */
    int exited; /* the guard was reaped */
    int st_got; /* wstatus is the shell's, as the guard reported it */
    int wstatus;
    int done;
    int status; /* BP_ST_* once done */
    int code;   /* exit status or signal number (BP_ST_TIMEOUT: the signal sent) */
};

/* Initialises an idle job; max_out bounds the collected stdout. */
void bp_job_init(struct bp_job *j, size_t max_out);

/* Runs the job's next commands as `path -c CMD` instead of /bin/sh (NULL:
 * back to /bin/sh). path must stay valid while the job is in use. */
void bp_job_set_shell(struct bp_job *j, const char *path);

/* Each later command runs with RLIMIT_DATA (its heap and private
 * mappings) at bytes, 0: no limit (--task-memory). A limit that cannot be
 * set fails the command as an exec-error. */
void bp_job_set_mem_limit(struct bp_job *j, uint64_t bytes);

/* The next bp_job_start() runs its command in directory cwd (NULL: the
 * worker's) with stdin the open file in_file (-1: the task bytes through
 * a pipe). Both are used once; the caller keeps in_file open until the
 * start and closes it then (the command has its own copy). */
void bp_job_set_dir(struct bp_job *j, const char *cwd, int in_file);

/* Frees the job's buffers; kills the process group of a command still
 * running and reaps its guard. */
void bp_job_release(struct bp_job *j);

/* Starts cmd with in[0..len) on its stdin. timeout_ms 0 means none. in must
 * stay valid until the job is done. Returns BP_OK; if the command cannot be
 * started the job is done at once with status BP_ST_EXECERR, code an errno
 * value and the reason in the result. Blocks until the shell has been
 * exec'd (as posix_spawn does). */
int bp_job_start(struct bp_job *j, const char *cmd, const void *in, size_t len, int timeout_ms,
                 int64_t now);

/* Adds the job's open pipes to items (room for 3). Returns how many. */
int bp_job_pollitems(const struct bp_job *j, zmq_pollitem_t *items);

/* Moves bytes on whichever of the job's pipes items report ready. */
void bp_job_io(struct bp_job *j, const zmq_pollitem_t *items, int n);

/* Reaps, times out and finishes the job. Returns 1 when j->done, and sets
 * *wake_ms to when it wants to be checked again (0: only on pipe events).
 * When it returns 1 the job's whole process group has been sent SIGKILL
 * and the guard reaped. */
int bp_job_check(struct bp_job *j, int64_t now, int64_t *wake_ms);

/* Kills the job's process group (the task is then reported interrupted). */
void bp_job_interrupt(struct bp_job *j);

/* The bytes to report: stdout if status is ok, else the stderr tail. */
const uint8_t *bp_job_result(const struct bp_job *j, size_t *len);

/* Asks the job's process group to stop (SIGTERM), as GNU parallel's
 * --halt now does; the job then ends with whatever status the command
 * gives. Nothing happens if the command is over. */
void bp_job_term(struct bp_job *j);

#endif
