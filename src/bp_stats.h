/* Batch statistics: counts, per-worker tallies, rate and ETA. */
#ifndef BP_STATS_H
#define BP_STATS_H

#include <stddef.h>
#include <stdint.h>

#include "bp.h"

/* Distinct workers tracked by name; more are counted under "(others)". */
#define BP_STATS_MAX_WORKERS 256

struct bp_wstat {
    char id[BP_ID_MAX + 1];
    int64_t ok, failed;
    int64_t ms; /* task time the worker reported, summed */
};

struct bp_stats {
    int64_t start_ms;
    int64_t ok, failed;
    struct bp_wstat *w;
    int nw, capw;
    int last; /* index of the last worker hit: results come in runs */
};

/* Starts an empty tally at time now (ms). */
void bp_stats_init(struct bp_stats *s, int64_t now);

/* Frees the per-worker table. */
void bp_stats_free(struct bp_stats *s);

/* Counts one result of worker wid. Returns BP_OK or BP_ENOMEM (the
 * totals are still counted). */
int bp_stats_add(struct bp_stats *s, const char *wid, int ok);

/* Adds ms of reported task time to the worker of the last bp_stats_add(). */
void bp_stats_time(struct bp_stats *s, int64_t ms);

/* Tasks per second since start (0 before any time has passed). */
double bp_stats_rate(const struct bp_stats *s, int64_t now);

/* Formats "done/total  rate/s  ETA m:ss" (total < 0: unknown) into buf. */
void bp_stats_progress(const struct bp_stats *s, int64_t total, int64_t now, char *buf, size_t len);

#endif
