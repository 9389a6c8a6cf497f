/* File descriptors: the process's limit, and what a host does when they
 * run out. */
#ifndef BP_FD_H
#define BP_FD_H

#include <stdint.h>

/* Raises the soft RLIMIT_NOFILE to the hard limit (capped at the kernel's
 * fs.nr_open), as nginx, Redis and Go's runtime do, and reserves one
 * descriptor for bp_fd_accept(). *soft and *hard (either may be NULL) get
 * the limits in force afterwards. Returns BP_OK, or BP_EIO when the limit
 * could not be read or raised (the old one then stays; *soft says it). */
int bp_nofile_raise(uint64_t *soft, uint64_t *hard);

/* Puts back the soft limit bp_nofile_raise() found, as Go does for the
 * programs it starts: a command run by a worker gets the limit the worker
 * was given (some programs walk every descriptor up to it). A no-op when
 * nothing was raised. Async-signal-safe: for a forked child before exec. */
void bp_nofile_restore(void);

/* accept4(2) for a listening socket, as libzmq's I/O thread calls it (the
 * tools define accept4() and accept() as this: see tool_common.c). When the process is out of
 * descriptors (EMFILE/ENFILE), a connection waiting is accepted with the
 * reserved descriptor and closed at once, so the listening socket does not
 * stay readable and the caller does not spin on it; the failure is still
 * returned. The first such refusal logs one warning, the next accepted
 * connection one line saying how many were refused meanwhile. */
int bp_fd_accept(int fd, void *addr, void *addrlen, int flags);

/* Connections refused for want of descriptors since the process started. */
uint64_t bp_fd_refused(void);

#endif
