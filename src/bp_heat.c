/* Heat policy (bp_heat.h): a limit with hysteresis. Pure. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "bp_heat.h"

void bp_heat_init(struct bp_heat *h, int max_c)
{
    memset(h, 0, sizeof *h);
    h->max_mc = (long)max_c * 1000;
}

int bp_heat_note(struct bp_heat *h, const char *text, size_t len)
{
    char buf[32];
    if (h->max_mc <= 0)
        return 0;
    if (len >= sizeof buf)
        len = sizeof buf - 1;
    memcpy(buf, text, len);
    buf[len] = '\0';
    char *end;
    errno = 0;
    long v = strtol(buf, &end, 10);
    int none = end == buf;
    while (*end == '\n' || *end == ' ')
        end++;
    h->bad = none || *end || errno != 0;
    if (h->bad)
        return 0;
    h->last_mc = v;
    int was = h->hot;
    if (!h->hot && v >= h->max_mc)
        h->hot = 1;
    else if (h->hot && v < h->max_mc - BP_HEAT_HYST_MC)
        h->hot = 0;
    return h->hot != was;
}
