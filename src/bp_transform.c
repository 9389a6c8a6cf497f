/* The built-in transforms (bp_transform.h), each in place and keeping the
 * length. Owns nothing; must not allocate or do I/O. */
#include <string.h>

#include "bp_transform.h"

/* ASCII only: tasks are bytes, and locale-dependent case mapping would make
 * results differ between boards. */
static void t_upper(const uint8_t *in, size_t len, uint8_t *out)
{
    for (size_t i = 0; i < len; i++) {
        uint8_t c = in[i];
        out[i] = (c >= 'a' && c <= 'z') ? (uint8_t)(c - 32) : c;
    }
}

static void t_lower(const uint8_t *in, size_t len, uint8_t *out)
{
    for (size_t i = 0; i < len; i++) {
        uint8_t c = in[i];
        out[i] = (c >= 'A' && c <= 'Z') ? (uint8_t)(c + 32) : c;
    }
}

static void t_echo(const uint8_t *in, size_t len, uint8_t *out)
{
    if (in != out)
        memmove(out, in, len);
}

static void t_reverse(const uint8_t *in, size_t len, uint8_t *out)
{
    if (in != out)
        memmove(out, in, len);
    for (size_t i = 0, j = len; i + 1 < j; i++, j--) {
        uint8_t t = out[i];
        out[i] = out[j - 1];
        out[j - 1] = t;
    }
}

static const struct bp_transform transforms[] = {
    {"upper", t_upper},
    {"lower", t_lower},
    {"echo", t_echo},
    {"reverse", t_reverse},
};

const struct bp_transform *bp_transform_find(const char *name)
{
    for (size_t i = 0; i < sizeof transforms / sizeof transforms[0]; i++)
        if (!strcmp(transforms[i].name, name))
            return &transforms[i];
    return NULL;
}

const char *bp_transform_names(void)
{
    return "upper, lower, echo, reverse";
}
