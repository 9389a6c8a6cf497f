/* Built-in per-task transforms (no process spawned). */
#ifndef BP_TRANSFORM_H
#define BP_TRANSFORM_H

#include <stddef.h>
#include <stdint.h>

/* Writes the transform of in[0..len) into out, which holds at least len
 * bytes (every built-in keeps the length). in and out may be the same. */
typedef void (*bp_transform_fn)(const uint8_t *in, size_t len, uint8_t *out);

struct bp_transform {
    const char *name;
    bp_transform_fn fn;
};

/* Looks a built-in up by name. Returns NULL if there is none. */
const struct bp_transform *bp_transform_find(const char *name);

/* Static comma-separated list of the built-in names, for messages. */
const char *bp_transform_names(void);

#endif
