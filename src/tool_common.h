/* The tools' shared main() body (not part of the library). */
#ifndef TOOL_COMMON_H
#define TOOL_COMMON_H

#include "bp.h"

/* A role's run function: bp_ventilator_run, bp_worker_run or bp_sink_run. */
typedef int (*tool_run_fn)(const struct bp_opts *o, const struct bp_io *io, struct bp_report *rep);
/* A role's --help text: bp_usage_ventilator, bp_usage_worker or bp_usage_sink. */
typedef const char *(*tool_usage_fn)(void);

/* Parses options, installs SIGINT/SIGTERM handlers, runs the role, prints
 * --help/--version to stdout and errors to stderr, and returns the
 * process exit code.
 *
 * The caller passes its role's run function and --help text, so that each
 * binary refers to its own role only and the static link leaves the other
 * roles' code and texts out: a worker does not carry the ventilator and the
 * sink (about 60 KB), nor their help (about 9 KB). */
int tool_main(enum bp_role role, tool_run_fn run, tool_usage_fn usage, const char *prog, int argc,
              char *argv[]);

#endif
