/* The tools' shared main() body (not part of the library). */
#ifndef TOOL_COMMON_H
#define TOOL_COMMON_H

#include "bp.h"

/* Parses options, installs SIGINT/SIGTERM handlers, runs the role, prints
 * --help/--version to stdout and errors to stderr, and returns the
 * process exit code. */
int tool_main(enum bp_role role, const char *prog, int argc, char *argv[]);

#endif
