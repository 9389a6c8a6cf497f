/*
 * The worker's files on its own disk (docs/wire-format.md, "Files"): GNU
 * parallel's replacement strings in --exec and --return, the per-attempt
 * scratch directory, the base-file cache, and the --return files
 * collected after a task. Touches files only: no socket, no clock, no
 * logging (failures come back as text for the task's result).
 *
 * Replacement strings: {} the shipped name, {/} its last component, {.}
 * the name without its extension, {/.} the last component without its
 * extension, {#} the sequence number (task id + 1). An extension is what
 * follows the last '.' of the last component (GNU parallel's
 * s:\.[^/.]*$::). In a command, values are shell-quoted the way GNU
 * parallel does: as they are when made only of [A-Za-z0-9_+./-] (and not
 * empty), else in single quotes, each ' written as '"'"'.
 */
#ifndef BP_WFILE_H
#define BP_WFILE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "bp.h"

/* Whether s holds a replacement string. */
int bp_wfile_has_repl(const char *s);

/* Writes s with its replacement strings filled in for name (name_len
 * bytes) and seq into *out (malloc'd, NUL-terminated; the caller frees).
 * quote: shell-quote the values (a command), else raw (a --return
 * pattern). Returns BP_OK, BP_ENOMEM or BP_ETOOBIG (over 1 MiB). */
int bp_wfile_subst(const char *s, const char *name, size_t name_len, uint64_t seq, int quote,
                   char **out);

/* Where task directories go: --scratch, else $TMPDIR, else /tmp. */
const char *bp_wfile_scratch_base(const char *opt);

/* Makes base/bp-<pid>-<id>.<attempt> (mode 0700; an old one of that name
 * is removed first) and writes its path into path (cap bytes). Returns an
 * O_DIRECTORY descriptor or -errno. */
int bp_wfile_scratch_make(const char *base, uint64_t id, uint16_t attempt, char *path, size_t cap);

/* Removes base/bp-<pid>-* directories whose worker pid is dead (left by
 * a crashed worker). Returns how many were removed. */
int bp_wfile_scratch_sweep(const char *base);

/* The base-file cache directory: --cache-dir, else $XDG_CACHE_HOME/boardpipe,
 * else ~/.cache/boardpipe, else <scratch>/boardpipe-cache; made (0700) if
 * missing. Writes it into out. Returns BP_OK or BP_EIO (none usable). */
int bp_wfile_cache_dir(const char *opt, const char *scratch, char *out, size_t cap);

/* SHA-256 of fd's bytes from offset 0 (pread, a small buffer). Returns
 * BP_OK or BP_EIO. */
int bp_wfile_sha256_fd(int fd, uint8_t out[32]);

/* One file to return. */
struct bp_wret {
    char name[1025]; /* relative to the scratch directory, checked */
    int fd;          /* open O_RDONLY, no symlink followed */
    uint64_t size;
    int64_t mtime_ns;
};

/* Collects the --return files of a task: each pattern (replacement
 * strings filled in raw; glob(3) patterns when they hold * ? or [) under
 * the scratch directory dirfd / dir. A literal name that is missing, a
 * name that is not a regular file reached without symlinks, more than
 * max_files files or one over max_size fails: returns BP_EIO with the
 * reason in why and *reason a BP_FE_* code (files opened so far closed).
 * A glob that matches nothing adds nothing. Names are returned once, in
 * pattern order (glob's sorted order within one). Returns BP_OK with *n. */
int bp_wfile_collect(int dirfd, const char *dir, const struct bp_strlist *pats, const char *name,
                     size_t name_len, uint64_t seq, int max_files, int64_t max_size,
                     struct bp_wret *out, int *n, int *reason, char *why, size_t why_cap);

/* Closes the files of rets[0..n). */
void bp_wfile_close_rets(struct bp_wret *rets, int n);

/* Whether fd still has size and mtime_ns (a file being sent). */
int bp_wfile_unchanged(int fd, uint64_t size, int64_t mtime_ns);

#endif
