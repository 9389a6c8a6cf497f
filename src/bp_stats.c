/* Batch statistics (bp_stats.h): counts, per-worker tallies, rate, ETA
 * and the progress line's text. Owns its table of workers; must not do
 * I/O or read a clock (times come in as arguments). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bp_stats.h"

void bp_stats_init(struct bp_stats *s, int64_t now)
{
    memset(s, 0, sizeof *s);
    s->start_ms = now;
}

void bp_stats_free(struct bp_stats *s)
{
    free(s->w);
    s->w = NULL;
    s->nw = s->capw = 0;
}

static struct bp_wstat *find(struct bp_stats *s, const char *wid)
{
    if (s->last < s->nw && !strcmp(s->w[s->last].id, wid))
        return &s->w[s->last];
    for (int i = 0; i < s->nw; i++)
        if (!strcmp(s->w[i].id, wid)) {
            s->last = i;
            return &s->w[i];
        }
    return NULL;
}

int bp_stats_add(struct bp_stats *s, const char *wid, int ok)
{
    if (ok)
        s->ok++;
    else
        s->failed++;
    struct bp_wstat *w = find(s, wid);
    if (!w) {
        if (s->nw >= BP_STATS_MAX_WORKERS)
            wid = "(others)";
        w = find(s, wid);
    }
    if (!w) {
        if (s->nw == s->capw) {
            int cap = s->capw ? s->capw * 2 : 8;
            struct bp_wstat *p = realloc(s->w, (size_t)cap * sizeof *p);
            if (!p)
                return BP_ENOMEM;
            s->w = p;
            s->capw = cap;
        }
        w = &s->w[s->nw];
        memset(w, 0, sizeof *w);
        snprintf(w->id, sizeof w->id, "%s", wid);
        s->last = s->nw++;
    }
    if (ok)
        w->ok++;
    else
        w->failed++;
    return BP_OK;
}

void bp_stats_time(struct bp_stats *s, int64_t ms)
{
    if (s->last < s->nw)
        s->w[s->last].ms += ms;
}

double bp_stats_rate(const struct bp_stats *s, int64_t now)
{
    int64_t dt = now - s->start_ms;
    if (dt <= 0)
        return 0;
    return (double)(s->ok + s->failed) * 1000.0 / (double)dt;
}

void bp_stats_progress(const struct bp_stats *s, int64_t total, int64_t now, char *buf, size_t len)
{
    int64_t done = s->ok + s->failed;
    double rate = bp_stats_rate(s, now);
    if (total < 0) {
        snprintf(buf, len, "%lld done  %.1f/s", (long long)done, rate);
        return;
    }
    char eta[32] = "--:--";
    if (rate > 0 && total >= done) {
        long long sec = (long long)((double)(total - done) / rate + 0.5);
        if (sec >= 3600)
            snprintf(eta, sizeof eta, "%lld:%02lld:%02lld", sec / 3600, sec / 60 % 60, sec % 60);
        else
            snprintf(eta, sizeof eta, "%lld:%02lld", sec / 60, sec % 60);
    }
    snprintf(buf, len, "%lld/%lld  %.1f/s  ETA %s", (long long)done, (long long)total, rate, eta);
}
