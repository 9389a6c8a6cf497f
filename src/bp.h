#ifndef BP_H
#define BP_H
#include <stddef.h>
int bp_version_format(char *buf, size_t len, const char *prog);
#endif
