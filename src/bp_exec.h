/* Runs one task through '/bin/sh -c CMD': task on stdin, result from
 * stdout, a tail of stderr kept for failure reports. Non-blocking: the
 * worker's poll loop drives the pipes of all running jobs. */
#ifndef BP_EXEC_H
#define BP_EXEC_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <zmq.h>

#define BP_ERR_TAIL 512

struct bp_job {
    pid_t pid;                 /* 0 when no child is running */
    int fd_in, fd_out, fd_err; /* -1 once closed */
    const uint8_t *in;         /* task bytes, owned by the caller until done */
    size_t in_len, in_off;
    uint8_t *out; /* stdout, reused across tasks (owned by the job) */
    size_t out_len, out_cap, max_out;
    int overflow; /* stdout went past max_out */
    char tail[BP_ERR_TAIL];
    size_t tail_len;
    int64_t deadline;   /* kill after this (ms, bp_now_ms clock); 0: none */
    int64_t next_check; /* next waitpid() try once the pipes are closed */
    int check_step;
    int64_t exit_seen; /* when the child was reaped, pipes maybe still open */
    int timed_out, killed, exited;
    int wstatus;
    int done;
    int status; /* BP_ST_* once done */
    int code;   /* exit status or signal number */
};

/* Initialises an idle job; max_out bounds the collected stdout. */
void bp_job_init(struct bp_job *j, size_t max_out);

/* Frees the job's buffers; kills and reaps a child still running. */
void bp_job_release(struct bp_job *j);

/* Starts cmd with in[0..len) on its stdin. timeout_ms 0 means none. in must
 * stay valid until the job is done. Returns BP_OK; if the command cannot be
 * started the job is done at once with status BP_ST_EXECERR. */
int bp_job_start(struct bp_job *j, const char *cmd, const void *in, size_t len, int timeout_ms,
                 int64_t now);

/* Adds the job's open pipes to items (room for 3). Returns how many. */
int bp_job_pollitems(const struct bp_job *j, zmq_pollitem_t *items);

/* Moves bytes on whichever of the job's pipes items report ready. */
void bp_job_io(struct bp_job *j, const zmq_pollitem_t *items, int n);

/* Reaps, times out and finishes the job. Returns 1 when j->done, and sets
 * *wake_ms to when it wants to be checked again (0: only on pipe events). */
int bp_job_check(struct bp_job *j, int64_t now, int64_t *wake_ms);

/* Kills the job's process group (the task is then reported interrupted). */
void bp_job_interrupt(struct bp_job *j);

/* The bytes to report: stdout if status is ok, else the stderr tail. */
const uint8_t *bp_job_result(const struct bp_job *j, size_t *len);

#endif
