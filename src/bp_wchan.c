/* The worker's side of the task channel (bp_wchan.h): decisions and
 * timers only. Owns no memory; must not do I/O, read a clock or log. */
#include <string.h>

#include "bp_wchan.h"

static int64_t dead_ms(const struct bp_wchan *c)
{
    return (int64_t)c->c.hb_ms * c->c.liveness;
}

void bp_wchan_init(struct bp_wchan *c, const struct bp_wchan_cfg *cfg, int64_t now)
{
    memset(c, 0, sizeof *c);
    c->c = *cfg;
    c->state = BP_WC_HELLO;
    c->start = now;
    c->heard = now;
    c->next_hello = now;
    c->next_hb = INT64_MAX;
    c->rtt_ms = 1.0;
}

int bp_wchan_on_msg(struct bp_wchan *c, const struct bp_msg *m, int64_t now)
{
    int what = 0;
    c->heard = now;
    if (c->state != BP_WC_ACTIVE && m->type != BP_MSG_RESYNC) {
        c->state = BP_WC_ACTIVE;
        c->ever_connected = 1;
        c->hello_out = 0;
        c->backoff_ms = 0;
        c->next_hb = now; /* a first heartbeat at once: the RTT sizes --prefetch auto */
        what |= BP_WC_CONNECTED;
    }
    switch (m->type) {
    case BP_MSG_TASKS:
        c->batch = m->batch;
        c->credit_out -= m->n;
        if (c->credit_out < 0)
            c->credit_out = 0;
        break;
    case BP_MSG_HEARTBEAT: {
        uint64_t echo = bp_msg_u64(m, 8);
        if (echo && echo <= (uint64_t)now + 1) {
            double rtt = (double)((uint64_t)now - (echo & ~(uint64_t)1));
            c->rtt_ms = c->rtt_ms > 0 ? 0.8 * c->rtt_ms + 0.2 * rtt : (rtt > 0 ? rtt : 0.1);
        }
        break;
    }
    case BP_MSG_RESYNC:
        /* The ventilator does not know this session (it restarted, or gave
         * us up for dead): what we queued was given to others. */
        if (c->state == BP_WC_ACTIVE)
            c->lost_since = now; /* --host-timeout counts from here */
        c->state = BP_WC_HELLO;
        c->credit_out = 0;
        c->hello_out = 0;
        c->next_hello = now;
        what |= BP_WC_DROP;
        break;
    default:
        break;
    }
    return what;
}

int bp_wchan_on_timer(struct bp_wchan *c, int64_t now)
{
    int what = 0;
    int silent = c->state == BP_WC_ACTIVE && now - c->heard >= dead_ms(c);
    int unanswered = c->state == BP_WC_HELLO && c->hello_out && now >= c->next_reopen;
    if (silent || unanswered) {
        if (silent) {
            c->lost_since = now;
            what |= BP_WC_SILENT;
        } else {
            c->backoff_ms = c->backoff_ms ? c->backoff_ms * 2 : dead_ms(c);
            if (c->backoff_ms > c->c.max_backoff_ms)
                c->backoff_ms = c->c.max_backoff_ms;
        }
        c->state = BP_WC_HELLO;
        c->credit_out = 0;
        c->hello_out = 0;
        c->heard = now;
        c->next_hello = now;
        what |= BP_WC_REOPEN | BP_WC_DROP;
    }
    if (c->c.host_timeout_ms > 0 && c->state != BP_WC_ACTIVE && !c->gave_up) {
        int64_t since = c->ever_connected ? c->lost_since : c->start;
        if (now - since >= c->c.host_timeout_ms) {
            c->gave_up = 1;
            what |= BP_WC_GIVE_UP;
        }
    }
    return what;
}

int bp_wchan_due(const struct bp_wchan *c, int64_t now)
{
    if (c->state == BP_WC_HELLO && now >= c->next_hello)
        return BP_MSG_HELLO;
    if (c->state == BP_WC_ACTIVE && now >= c->next_hb)
        return BP_MSG_HEARTBEAT;
    return 0;
}

void bp_wchan_hello_sent(struct bp_wchan *c, int64_t now, int64_t credit, int ok)
{
    if (!ok) {
        c->next_hello = now + 100; /* a full pipe: soon again */
        return;
    }
    /* One HELLO per connection; no answer within the backoff: a new one. */
    c->next_hello = INT64_MAX;
    c->hello_out = 1;
    c->credit_out = credit;
    if (!c->backoff_ms)
        c->backoff_ms = dead_ms(c);
    c->next_reopen = now + c->backoff_ms;
}

void bp_wchan_hb_sent(struct bp_wchan *c, int64_t now)
{
    c->next_hb = now + c->c.hb_ms;
}

int64_t bp_wchan_grant(const struct bp_wchan *c, int64_t room)
{
    if (c->state != BP_WC_ACTIVE)
        return 0;
    int64_t g = room - c->credit_out;
    return g > 0 ? g : 0;
}

void bp_wchan_granted(struct bp_wchan *c, int64_t grant)
{
    c->credit_out += grant;
}

int64_t bp_wchan_next_deadline(const struct bp_wchan *c)
{
    int64_t n = INT64_MAX;
    if (c->state == BP_WC_ACTIVE) {
        n = c->next_hb;
        if (c->heard + dead_ms(c) < n)
            n = c->heard + dead_ms(c);
        return n;
    }
    n = c->next_hello;
    if (c->hello_out && c->next_reopen < n)
        n = c->next_reopen;
    if (c->c.host_timeout_ms > 0 && !c->gave_up) {
        int64_t since = c->ever_connected ? c->lost_since : c->start;
        if (since + c->c.host_timeout_ms < n)
            n = since + c->c.host_timeout_ms;
    }
    return n;
}
