/* worker: see 'worker --help'. All the work is in the library (bp_*). */
#include "tool_common.h"

int main(int argc, char *argv[])
{
    return tool_main(BP_ROLE_WORKER, bp_worker_run, bp_usage_worker, "worker", argc, argv);
}
