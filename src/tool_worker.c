#include <stdio.h>
#include <string.h>
#include "bp.h"
int main(int argc, char **argv)
{
    char buf[256];
    if (argc > 1 && strcmp(argv[1], "--version") == 0) {
        bp_version_format(buf, sizeof buf, "worker");
        fputs(buf, stdout);
    }
    return 0;
}
