/*
 * Heat (worker --max-temp): a board over its limit asks for no more work
 * until it has cooled BP_HEAT_HYST_MC below it; running tasks go on. The
 * policy is pure: the worker reads the thermal file and hands the text
 * over.
 */
#ifndef BP_HEAT_H
#define BP_HEAT_H

#include <stddef.h>

#define BP_HEAT_HYST_MC 5000 /* cool again below max - 5 °C */

struct bp_heat {
    long max_mc;  /* the limit in millidegrees C (0: off) */
    long last_mc; /* the last reading (0: none) */
    int hot;      /* over the limit, not cooled yet */
    int bad;      /* the last reading could not be parsed */
};

/* Off with max_c 0, else a limit of max_c °C. */
void bp_heat_init(struct bp_heat *h, int max_c);

/* A reading: the text of a thermal file (millidegrees C, as in
 * /sys/class/thermal/thermal_zone0/temp; "61234\n"), len bytes. Text
 * that is no number leaves the state as it is and sets bad. Returns 1
 * when hot changed. */
int bp_heat_note(struct bp_heat *h, const char *text, size_t len);

#endif
