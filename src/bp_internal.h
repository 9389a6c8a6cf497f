/* Internal helpers shared by the library's modules (not installed API). */
#ifndef BP_INTERNAL_H
#define BP_INTERNAL_H

#include <stdarg.h>
#include <stdint.h>

#include "bp.h"

#if defined(__GNUC__)
#define BP_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define BP_PRINTF(a, b)
#endif

/* Logs one line to stderr as "prog: message" if level is enabled. */
void bp_log(int level, const char *fmt, ...) BP_PRINTF(2, 3);
int bp_log_enabled(int level);
const char *bp_log_prog(void);

/* Monotonic clock in milliseconds. */
int64_t bp_now_ms(void);

/* Wall clock: milliseconds since the epoch (for logs such as --joblog). */
int64_t bp_wall_ms(void);

/* Writes at most max bytes of s into buf as a printable one-line string
 * (control bytes escaped). Always NUL-terminates when len > 0. */
void bp_printable(char *buf, size_t len, const void *s, size_t max);

#endif
