/*
 * The worker's side of the task channel, sans I/O: when to say HELLO and
 * how long to wait for an answer (backoff 1 x liveness, doubling up to
 * 30 s), when a heartbeat is due, when the ventilator counts as gone
 * (silent for --liveness x --heartbeat: the caller drops its queue and
 * opens a new connection), RESYNC, the credit granted and not yet used,
 * the round-trip time, and when a --once worker gives up (--host-timeout).
 * It owns no socket, reads no clock and never logs: the worker hands it
 * what the ventilator sent and the time, builds and sends what it says is
 * due, and sleeps until bp_wchan_next_deadline(). So a 60-second outage
 * is a unit test of microseconds (tests/test_wchan.c).
 */
#ifndef BP_WCHAN_H
#define BP_WCHAN_H

#include <stdint.h>

#include "bp_frame.h"

struct bp_wchan_cfg {
    int hb_ms;           /* --heartbeat (1000) */
    int liveness;        /* --liveness (3) */
    int max_backoff_ms;  /* longest wait for an answer to HELLO (30000) */
    int host_timeout_ms; /* give up after this long without a ventilator; 0: never */
};

enum bp_wchan_state { BP_WC_HELLO = 0, BP_WC_ACTIVE = 1 };

/* What the caller must do after an event (bits). */
enum {
    BP_WC_CONNECTED = 1, /* the ventilator answered: the channel is active */
    BP_WC_DROP = 2,      /* drop the queued, unstarted tasks (others get them) */
    BP_WC_REOPEN = 4,    /* close the connection and open a new one; a HELLO is then due */
    BP_WC_GIVE_UP = 8,   /* no ventilator for host_timeout_ms: stop */
    BP_WC_SILENT = 16    /* (with REOPEN) it was active and went silent: worth a log line */
};

struct bp_wchan {
    struct bp_wchan_cfg c;
    int state;          /* BP_WC_HELLO or BP_WC_ACTIVE */
    int ever_connected; /* the ventilator answered at least once */
    int gave_up;
    int hello_out;      /* a HELLO went out on this connection, unanswered */
    int64_t start;      /* when the channel was made */
    int64_t heard;      /* the ventilator's last message */
    int64_t lost_since; /* when it was last lost (--host-timeout counts from there) */
    int64_t next_hb, next_hello, next_reopen, backoff_ms;
    int64_t credit_out; /* credit granted and not used by tasks yet */
    double rtt_ms;      /* moving average of the heartbeat round trip */
    uint64_t batch;     /* of the newest tasks */
};

/* A channel about to say its first HELLO (due at now). */
void bp_wchan_init(struct bp_wchan *c, const struct bp_wchan_cfg *cfg, int64_t now);

/* A message from the ventilator, decoded. Returns what to do (BP_WC_*
 * bits): CONNECTED when it made the channel active, DROP on RESYNC (the
 * ventilator lost track of us; a HELLO is then due at once). TASKS spend
 * the credit granted; a heartbeat's echo gives the round-trip time. */
int bp_wchan_on_msg(struct bp_wchan *c, const struct bp_msg *m, int64_t now);

/* Time passed. Returns REOPEN|DROP (|SILENT) when the ventilator went
 * silent or a HELLO stayed unanswered for the backoff: the caller opens a
 * new connection (a ventilator still hearing the old one must not count
 * on tasks we dropped), and a HELLO is due at once; each unanswered one
 * doubles the wait, up to max_backoff_ms. GIVE_UP (once) when
 * host_timeout_ms passed without a ventilator. Else 0. */
int bp_wchan_on_timer(struct bp_wchan *c, int64_t now);

/* The message due now: BP_MSG_HELLO, BP_MSG_HEARTBEAT or 0. */
int bp_wchan_due(const struct bp_wchan *c, int64_t now);

/* A HELLO went out (ok) with credit, or could not be sent now (a full
 * pipe: tried again in 100 ms). */
void bp_wchan_hello_sent(struct bp_wchan *c, int64_t now, int64_t credit, int ok);

/* A heartbeat went out. */
void bp_wchan_hb_sent(struct bp_wchan *c, int64_t now);

/* Credit to grant now for room free task places (the window less what the
 * worker holds): what room leaves beyond the credit already out, 0 unless
 * active. */
int64_t bp_wchan_grant(const struct bp_wchan *c, int64_t room);

/* grant was sent in a CREDIT. */
void bp_wchan_granted(struct bp_wchan *c, int64_t grant);

/* When bp_wchan_on_timer() or a message is next due (the caller's own
 * timers aside). */
int64_t bp_wchan_next_deadline(const struct bp_wchan *c);

#endif
