/* sink: see 'sink --help'. All the work is in the library (bp_*). */
#include "tool_common.h"

int main(int argc, char *argv[])
{
    return tool_main(BP_ROLE_SINK, bp_sink_run, bp_usage_sink, "sink", argc, argv);
}
