/* Helpers shared by the three role loops. */
#ifndef BP_ROLE_H
#define BP_ROLE_H

#include <stdio.h>

#include "bp.h"
#include "bp_sock.h"

/* Socket settings every role starts from, taken from the options. */
struct bp_sockcfg bp_role_sockcfg(const struct bp_opts *o);

/* True once the caller's stop flag is set. */
int bp_role_stopped(const struct bp_io *io);

/* Whether to draw a live progress line on stderr. */
int bp_role_progress(const struct bp_opts *o);

/* Draws (text) or clears (NULL) the progress line on stderr. */
void bp_role_progress_line(const char *text);

/* Waits up to timeout_ms (-1: no limit) until sock can take a message,
 * in slices so *io->stop is noticed. Returns BP_OK, BP_ETIMEDOUT, BP_EINTR
 * (stop flag) or BP_EZMQ. */
int bp_role_wait_out(void *sock, const struct bp_io *io, int timeout_ms);

/* A fresh 64-bit batch id (random where the system offers it). */
uint64_t bp_role_batch_id(void);

#endif
