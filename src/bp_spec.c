/* Speculative execution policy (bp_spec.h): the option, the histogram of
 * task times, the straggler threshold. Pure: no clock, no I/O. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bp_spec.h"

void bp_spec_defaults(struct bp_spec_cfg *c)
{
    c->quantile_pm = 750;
    c->mult_pct = 200;
    c->min_ms = 1000;
}

/* A decimal number at *s, up to a ',' or the end. Returns 0 or -1. */
static int number(const char **s, double *v)
{
    char *end;
    errno = 0;
    *v = strtod(*s, &end);
    if (end == *s || errno || *v != *v)
        return -1;
    *s = end;
    return 0;
}

static int parse_min(const char *s, int *ms)
{
    double v;
    if (number(&s, &v) || v < 0)
        return -1;
    double scale = 1000;
    if (!strcmp(s, "ms"))
        scale = 1;
    else if (!strcmp(s, "m"))
        scale = 60000;
    else if (*s && strcmp(s, "s") != 0)
        return -1;
    v *= scale;
    if (v > 86400000.0)
        return -1;
    *ms = (int)v;
    return 0;
}

int bp_spec_parse(const char *s, struct bp_spec_cfg *c, char *err, size_t errlen)
{
    static const char want[] = "expected 'off' or QUANTILE,MULTIPLIER[,MIN] "
                               "(e.g. 0.75,2,1s; QUANTILE in (0,1], MULTIPLIER in [1,100])";
    if (!s || !strcmp(s, "off")) {
        c->quantile_pm = 0;
        return 0;
    }
    double q, m;
    const char *p = s;
    struct bp_spec_cfg n;
    bp_spec_defaults(&n);
    if (number(&p, &q) || *p != ',' || q <= 0 || q > 1)
        goto bad;
    p++;
    if (number(&p, &m) || (*p && *p != ',') || m < 1 || m > 100)
        goto bad;
    if (*p == ',' && parse_min(p + 1, &n.min_ms))
        goto bad;
    n.quantile_pm = (int)(q * 1000 + 0.5);
    if (n.quantile_pm < 1)
        n.quantile_pm = 1;
    n.mult_pct = (int)(m * 100 + 0.5);
    *c = n;
    return 0;
bad:
    snprintf(err, errlen, "%s, got '%s'", want, s);
    return -1;
}

/* Bucket of ms: 4 per doubling above 4 ms, one each below. */
static int bucket(uint64_t ms)
{
    if (ms < 4)
        return (int)ms;
    int msb = 63 - __builtin_clzll(ms); /* >= 2 */
    int frac = (int)((ms >> (msb - 2)) & 3);
    int b = msb * 4 + frac - 4;
    return b < BP_SPEC_BUCKETS ? b : BP_SPEC_BUCKETS - 1;
}

/* The smallest ms in bucket b (the inverse of bucket()). */
static int64_t bucket_low(int b)
{
    if (b < 4)
        return b;
    int msb = (b + 4) / 4;
    int frac = (b + 4) % 4;
    return (int64_t)(((uint64_t)(4 + frac)) << (msb - 2));
}

void bp_spec_note(struct bp_spec_hist *h, int64_t ms)
{
    h->b[bucket(ms < 0 ? 0 : (uint64_t)ms)]++;
    h->n++;
}

int64_t bp_spec_median(const struct bp_spec_hist *h)
{
    if (!h->n)
        return -1;
    uint64_t half = (h->n + 1) / 2, seen = 0;
    for (int b = 0; b < BP_SPEC_BUCKETS; b++) {
        seen += h->b[b];
        if (seen >= half)
            return bucket_low(b);
    }
    return bucket_low(BP_SPEC_BUCKETS - 1);
}

int64_t bp_spec_threshold(const struct bp_spec_cfg *c, const struct bp_spec_hist *h,
                          int64_t finished, int64_t total)
{
    if (c->quantile_pm <= 0 || total <= 0 || !h->n)
        return -1;
    if (finished * 1000 < (int64_t)c->quantile_pm * total)
        return -1;
    int64_t t = bp_spec_median(h) * c->mult_pct / 100;
    return t > c->min_ms ? t : c->min_ms;
}
