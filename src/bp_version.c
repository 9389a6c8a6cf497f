/* The --version text (bp_version.h): boardpipe's version and revision,
 * libzmq's version and the build target. Must not print (the tool does). */
#include <stdio.h>
#include <zmq.h>

#include "bp.h"
#include "bp_revision.h"
#include "bp_version.h"

int bp_version_format(char *buf, size_t len, const char *prog)
{
    int major, minor, patch;
    zmq_version(&major, &minor, &patch);
    /* The license line says where the packages put the license and the
     * notices of the code linked in (cmake/BpPackage.cmake). */
    int n = snprintf(
        buf, len,
        "%s (boardpipe) %s (git %s)\nlibzmq %d.%d.%d\ntarget %s%s%s\n"
        "license MIT; notices (libzmq LGPL-3.0+, musl, LLVM) in /usr/share/doc/boardpipe/\n",
        prog, BP_VERSION_STRING, BP_REVISION_STRING, major, minor, patch, BP_TARGET_STRING,
        BP_TARGET_CPU_STRING[0] ? " cpu " : "", BP_TARGET_CPU_STRING);
    return (n < 0 || (size_t)n >= len) ? -1 : n;
}
