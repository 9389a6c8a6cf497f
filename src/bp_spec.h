/*
 * Speculative execution (stragglers), the policy half: when may a task
 * still running be started again on an idle worker? Spark's rule: once a
 * quantile of the batch's tasks have finished, a task running longer than
 * multiplier x the median task time (and at least a minimum) is a
 * straggler. Pure: no clock, no I/O; bp_dispatch does the mechanics.
 *
 * Task times go into a log-scaled histogram (4 buckets per doubling, so
 * the median is known within about 19 %): fixed size, whatever the batch.
 */
#ifndef BP_SPEC_H
#define BP_SPEC_H

#include <stddef.h>
#include <stdint.h>

#define BP_SPEC_BUCKETS 132

struct bp_spec_cfg {
    int quantile_pm; /* tasks finished, per mille of the batch, before any copy (0: off) */
    int mult_pct;    /* a straggler runs longer than mult_pct % of the median */
    int min_ms;      /* ... and longer than this */
};

struct bp_spec_hist {
    uint32_t b[BP_SPEC_BUCKETS];
    uint64_t n;
};

/* The defaults: on, quantile 0.75, multiplier 2, minimum 1 s (more
 * conservative than Spark's 0.75 / 1.5 / 100 ms). */
void bp_spec_defaults(struct bp_spec_cfg *c);

/* Parses --speculate: "off", or "QUANTILE,MULTIPLIER[,MIN]" with QUANTILE
 * in (0, 1], MULTIPLIER in [1, 100], MIN a duration (250ms, 2s, 1m; plain
 * seconds; default 1s; at most 1 day). Returns 0 with *c set, or -1 with a
 * reason in err (c unchanged). */
int bp_spec_parse(const char *s, struct bp_spec_cfg *c, char *err, size_t errlen);

/* Counts one finished task that took ms (negative counts as 0). */
void bp_spec_note(struct bp_spec_hist *h, int64_t ms);

/* The median of the times counted (the lower bound of its bucket), -1
 * when none was. */
int64_t bp_spec_median(const struct bp_spec_hist *h);

/* How long a task must have run to be a straggler now, given finished of
 * total tasks finished; -1 when speculation is off or it is too early
 * (fewer than the quantile finished, or no time counted yet). */
int64_t bp_spec_threshold(const struct bp_spec_cfg *c, const struct bp_spec_hist *h,
                          int64_t finished, int64_t total);

#endif
