/*
 * Names that cross the wire, and files opened beneath a directory without
 * ever leaving it (docs/wire-format.md, "Files").
 *
 * A name from a peer is a relative path: '/'-separated components, none
 * empty, "." or "..", no NUL, at most BP_NAME_PARTS components of at most
 * 255 bytes, BP_NAME_MAX bytes in all, and a first component that does not
 * start with ".bp-". Every other byte is allowed. bp_path_check() decides;
 * the *_beneath() calls then open or create it under a directory
 * descriptor, refusing to follow a symlink at any component, so a hostile
 * name or a symlink planted in the tree cannot reach outside.
 */
#ifndef BP_PATH_H
#define BP_PATH_H

#include <stddef.h>
#include <sys/types.h>

#define BP_NAME_MAX 1024
#define BP_NAME_PARTS 16

/* Checks name (len bytes, not NUL-terminated) against the rules above;
 * one_part: a single component (a base-file name). Returns BP_OK or
 * BP_EPROTO. Pure. */
int bp_path_check(const char *name, size_t len, int one_part);

/* Copies a checked name into buf (BP_NAME_MAX + 1 bytes) with a NUL.
 * Returns BP_OK or BP_EPROTO (bp_path_check() refused it). */
int bp_path_copy(char *buf, const char *name, size_t len, int one_part);

/* Opens the directory that holds name (a checked, NUL-terminated name)
 * beneath dirfd, walking each component with O_NOFOLLOW; mkdirs: create
 * missing directories (0755). *leaf points at name's last component.
 * Returns a new descriptor (the caller closes it; dirfd itself is dup'ed
 * when name has one component) or -errno (ELOOP/ENOTDIR: a symlink or a
 * file in the way). */
int bp_path_parent_beneath(int dirfd, const char *name, int mkdirs, const char **leaf);

/* Opens name beneath dirfd with flags | O_NOFOLLOW | O_CLOEXEC (mode for
 * O_CREAT), creating parent directories when mkdirs. Returns a descriptor
 * or -errno. */
int bp_path_open_beneath(int dirfd, const char *name, int flags, mode_t mode, int mkdirs);

/* Removes dir and everything in it, never following symlinks. Returns 0
 * or -errno of the first failure (it goes on past failures). */
int bp_path_rmtree(const char *dir);

/* Whether two open regular files hold the same bytes (0 no, 1 yes,
 * -errno on a read error). Reads both from offset 0 with pread. */
int bp_path_same_bytes(int fd_a, int fd_b);

#endif
