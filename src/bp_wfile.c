/* The worker's files on its disk (bp_wfile.h): replacement strings, the
 * scratch directories, the base-file cache and the --return files. Owns
 * no socket and no clock; must not log. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bp_frame.h"
#include "bp_internal.h"
#include "bp_path.h"
#include "bp_sha256.h"
#include "bp_wfile.h"

#define SUBST_MAX ((size_t)1 << 20)

/* A growable string. */
struct sbuf {
    char *p;
    size_t len, cap;
    int err;
};

static void sb_add(struct sbuf *b, const char *s, size_t n)
{
    if (b->err)
        return;
    if (b->len + n + 1 > SUBST_MAX) {
        b->err = BP_ETOOBIG;
        return;
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->err = BP_ENOMEM;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static int safe_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '+' || c == '.' || c == '/' || c == '-';
}

/* Appends v (n bytes), shell-quoted as GNU parallel quotes it. */
static void sb_quoted(struct sbuf *b, const char *v, size_t n)
{
    int safe = n > 0;
    for (size_t i = 0; i < n && safe; i++)
        safe = safe_char((unsigned char)v[i]);
    if (safe) {
        sb_add(b, v, n);
        return;
    }
    sb_add(b, "'", 1);
    for (size_t i = 0; i < n; i++) {
        if (v[i] == '\'')
            sb_add(b, "'\"'\"'", 5);
        else
            sb_add(b, v + i, 1);
    }
    sb_add(b, "'", 1);
}

/* The replacement string at s, if any: its length and which (0 {}, 1
 * {/}, 2 {.}, 3 {/.}, 4 {#}). Returns 0 when s starts none. */
static size_t repl_at(const char *s, int *which)
{
    static const char *const r[] = {"{}", "{/}", "{.}", "{/.}", "{#}"};
    for (int i = 4; i >= 0; i--) {
        size_t l = strlen(r[i]);
        if (strncmp(s, r[i], l) == 0) {
            *which = i;
            return l;
        }
    }
    return 0;
}

int bp_wfile_has_repl(const char *s)
{
    int which;
    for (; *s; s++)
        if (*s == '{' && repl_at(s, &which))
            return 1;
    return 0;
}

/* The value of replacement which for name: [*v, *v + *n). */
static void repl_value(int which, const char *name, size_t len, const char **v, size_t *n)
{
    size_t base = len;
    while (base > 0 && name[base - 1] != '/')
        base--;
    size_t end = len;
    if (which == 2 || which == 3) { /* without the extension */
        size_t dot = len;
        while (dot > base && name[dot - 1] != '.')
            dot--;
        if (dot > base)
            end = dot - 1;
    }
    *v = which == 1 || which == 3 ? name + base : name;
    *n = end - (size_t)(*v - name);
}

int bp_wfile_subst(const char *s, const char *name, size_t name_len, uint64_t seq, int quote,
                   char **out)
{
    struct sbuf b = {0};
    sb_add(&b, "", 0);
    while (*s) {
        int which;
        size_t l = *s == '{' ? repl_at(s, &which) : 0;
        if (!l) {
            sb_add(&b, s++, 1);
            continue;
        }
        s += l;
        if (which == 4) {
            char num[24];
            int k = snprintf(num, sizeof num, "%llu", (unsigned long long)seq);
            sb_add(&b, num, (size_t)k);
            continue;
        }
        const char *v;
        size_t n;
        repl_value(which, name, name_len, &v, &n);
        if (quote)
            sb_quoted(&b, v, n);
        else
            sb_add(&b, v, n);
    }
    if (b.err) {
        free(b.p);
        return b.err;
    }
    *out = b.p;
    return BP_OK;
}

const char *bp_wfile_scratch_base(const char *opt)
{
    if (opt && *opt)
        return opt;
    const char *t = getenv("TMPDIR");
    return t && *t ? t : "/tmp";
}

int bp_wfile_scratch_make(const char *base, uint64_t id, uint16_t attempt, char *path, size_t cap)
{
    int k = snprintf(path, cap, "%s/bp-%ld-%llu.%u", base, (long)getpid(), (unsigned long long)id,
                     (unsigned)attempt);
    if (k < 0 || (size_t)k >= cap)
        return -ENAMETOOLONG;
    if (mkdir(path, 0700) != 0) {
        if (errno != EEXIST)
            return -errno;
        (void)bp_path_rmtree(path); /* a task of ours that crashed half-way */
        if (mkdir(path, 0700) != 0)
            return -errno;
    }
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

/* The pid in a name bp-<pid>-..., or 0. */
static long scratch_pid(const char *n)
{
    if (strncmp(n, "bp-", 3) != 0)
        return 0;
    long pid = 0;
    const char *p = n + 3;
    for (; *p >= '0' && *p <= '9' && pid < 100000000; p++)
        pid = pid * 10 + (*p - '0');
    return *p == '-' ? pid : 0;
}

int bp_wfile_scratch_sweep(const char *base)
{
    DIR *d = opendir(base);
    if (!d)
        return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        long pid = scratch_pid(e->d_name);
        if (pid <= 0 || pid == (long)getpid() || kill((pid_t)pid, 0) == 0 || errno != ESRCH)
            continue;
        char path[4096];
        if (snprintf(path, sizeof path, "%s/%s", base, e->d_name) >= (int)sizeof path)
            continue;
        struct stat st;
        if (lstat(path, &st) == 0 && S_ISDIR(st.st_mode) && st.st_uid == getuid() &&
            bp_path_rmtree(path) == 0)
            n++;
    }
    closedir(d);
    return n;
}

/* mkdir -p for a cache directory (0700 for what it makes). */
static int mkdirs(const char *path)
{
    char p[4096];
    if (snprintf(p, sizeof p, "%s", path) >= (int)sizeof p)
        return -1;
    for (char *s = p + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = '\0';
        if (mkdir(p, 0700) != 0 && errno != EEXIST)
            return -1;
        *s = '/';
    }
    if (mkdir(p, 0700) != 0 && errno != EEXIST)
        return -1;
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode) && access(p, W_OK) == 0 ? 0 : -1;
}

int bp_wfile_cache_dir(const char *opt, const char *scratch, char *out, size_t cap)
{
    const char *xdg = getenv("XDG_CACHE_HOME");
    const char *home = getenv("HOME");
    for (int i = 0; i < 4; i++) {
        int k = -1;
        if (i == 0 && opt && *opt)
            k = snprintf(out, cap, "%s", opt);
        else if (i == 1 && !(opt && *opt) && xdg && *xdg == '/')
            k = snprintf(out, cap, "%s/boardpipe", xdg);
        else if (i == 2 && !(opt && *opt) && home && *home == '/')
            k = snprintf(out, cap, "%s/.cache/boardpipe", home);
        else if (i == 3)
            k = snprintf(out, cap, "%s/boardpipe-cache-%ld", scratch, (long)getuid());
        if (k > 0 && (size_t)k < cap && mkdirs(out) == 0)
            return BP_OK;
        if (i == 0 && opt && *opt)
            return BP_EIO; /* the one asked for: no fallback */
    }
    return BP_EIO;
}

int bp_wfile_sha256_fd(int fd, uint8_t out[32])
{
    struct bp_sha256 s;
    uint8_t buf[16384];
    off_t off = 0;
    bp_sha256_init(&s);
    for (;;) {
        ssize_t r = pread(fd, buf, sizeof buf, off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return BP_EIO;
        if (r == 0)
            break;
        bp_sha256_update(&s, buf, (size_t)r);
        off += r;
    }
    bp_sha256_final(&s, out);
    return BP_OK;
}

int bp_wfile_unchanged(int fd, uint64_t size, int64_t mtime_ns)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return 0;
    int64_t m = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
    return (uint64_t)st.st_size == size && m == mtime_ns;
}

void bp_wfile_close_rets(struct bp_wret *rets, int n)
{
    for (int i = 0; i < n; i++) {
        if (rets[i].fd >= 0)
            close(rets[i].fd);
        rets[i].fd = -1;
    }
}

/* What collect() is filling. */
struct coll {
    int dirfd;
    int max_files;
    int64_t max_size;
    struct bp_wret *out;
    int n;
    int reason;
    char *why;
    size_t why_cap;
};

static int coll_fail(struct coll *c, int reason, const char *name, const char *what)
{
    char show[200];
    bp_printable(show, sizeof show, name, strlen(name) > 150 ? 150 : strlen(name));
    snprintf(c->why, c->why_cap, "return file %s: %s", show, what);
    c->reason = reason;
    return BP_EIO;
}

/* Adds the file name (relative to the scratch directory). literal: it
 * was named as such, so a missing one fails. */
static int coll_add(struct coll *c, const char *name, int literal)
{
    for (int i = 0; i < c->n; i++)
        if (strcmp(c->out[i].name, name) == 0)
            return BP_OK;
    if (bp_path_check(name, strlen(name), 0) != BP_OK)
        return coll_fail(c, BP_FE_NAME, name, "not a plain relative name");
    int fd = bp_path_open_beneath(c->dirfd, name, O_RDONLY | O_NONBLOCK, 0, 0);
    if (fd == -ENOENT)
        return literal ? coll_fail(c, BP_FE_MISSING, name, "missing (the command did not make it)")
                       : BP_OK;
    if (fd < 0)
        return coll_fail(c, fd == -ELOOP || fd == -ENOTDIR ? BP_FE_NAME : BP_FE_READ, name,
                         fd == -ELOOP ? "a symlink (refused)" : strerror(-fd));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return coll_fail(c, BP_FE_NAME, name, "not a regular file");
    }
    if (st.st_size > c->max_size) {
        close(fd);
        return coll_fail(c, BP_FE_SIZE, name, "over --max-return-size");
    }
    if (c->n >= c->max_files) {
        close(fd);
        return coll_fail(c, BP_FE_COUNT, name, "more files than --max-return-files");
    }
    struct bp_wret *r = &c->out[c->n++];
    snprintf(r->name, sizeof r->name, "%s", name);
    r->fd = fd;
    r->size = (uint64_t)st.st_size;
    r->mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
    return BP_OK;
}

/* The glob metacharacters of dir escaped with '\', then '/'. */
static int glob_prefix(const char *dir, char *out, size_t cap)
{
    size_t k = 0;
    for (const char *s = dir; *s; s++) {
        if (k + 3 >= cap)
            return -1;
        if (strchr("*?[\\", *s))
            out[k++] = '\\';
        out[k++] = *s;
    }
    out[k++] = '/';
    out[k] = '\0';
    return (int)k;
}

static int coll_glob(struct coll *c, const char *dir, const char *pat)
{
    char full[8192];
    int k = glob_prefix(dir, full, sizeof full);
    if (k < 0 || snprintf(full + k, sizeof full - (size_t)k, "%s", pat) >= (int)sizeof full - k)
        return coll_fail(c, BP_FE_NAME, pat, "pattern too long");
    glob_t g;
    int rc = glob(full, 0, NULL, &g);
    if (rc == GLOB_NOMATCH)
        return BP_OK;
    if (rc != 0)
        return coll_fail(c, BP_FE_READ, pat, "glob failed");
    size_t skip = strlen(dir) + 1;
    for (size_t i = 0; i < g.gl_pathc && rc == BP_OK; i++)
        if (strlen(g.gl_pathv[i]) > skip)
            rc = coll_add(c, g.gl_pathv[i] + skip, 0);
    globfree(&g);
    return rc;
}

int bp_wfile_collect(int dirfd, const char *dir, const struct bp_strlist *pats, const char *name,
                     size_t name_len, uint64_t seq, int max_files, int64_t max_size,
                     struct bp_wret *out, int *n, int *reason, char *why, size_t why_cap)
{
    struct coll c = {.dirfd = dirfd,
                     .max_files = max_files,
                     .max_size = max_size,
                     .out = out,
                     .why = why,
                     .why_cap = why_cap};
    int rc = BP_OK;
    for (int i = 0; i < pats->n && rc == BP_OK; i++) {
        char *p = NULL;
        rc = bp_wfile_subst(pats->v[i], name, name_len, seq, 0, &p);
        if (rc != BP_OK) {
            coll_fail(&c, BP_FE_NAME, pats->v[i], "pattern too long");
            break;
        }
        rc = strpbrk(p, "*?[") ? coll_glob(&c, dir, p) : coll_add(&c, p, 1);
        free(p);
    }
    *reason = c.reason;
    if (rc != BP_OK) {
        bp_wfile_close_rets(out, c.n);
        *n = 0;
        return BP_EIO;
    }
    *n = c.n;
    return BP_OK;
}
