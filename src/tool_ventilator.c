/* ventilator: see 'ventilator --help'. All the work is in the library (bp_*). */
#include "tool_common.h"

int main(int argc, char *argv[])
{
    return tool_main(BP_ROLE_VENTILATOR, bp_ventilator_run, bp_usage_ventilator, "ventilator", argc,
                     argv);
}
