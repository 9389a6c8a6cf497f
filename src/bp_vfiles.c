/* The ventilator's files (bp_vfiles.h). Every chunk is read with a fresh
 * open + fstat + pread: a file that changed since its descriptor was made
 * is caught at every chunk (size or mtime), and nothing stays open, so
 * 100 000 tasks cost no descriptors. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bp_path.h"
#include "bp_sha256.h"
#include "bp_vfiles.h"

struct base {
    char *path;
    uint64_t size, mtime_ns;
};

struct bp_vfiles {
    struct base base[BP_MAX_BASEFILES];
    uint32_t nbase;
    struct bp_pack bpk; /* a BASE message; its body is what the dispatcher sends */
    uint8_t desc[BP_FDESC_FIXED + BP_NAME_MAX + PATH_MAX];
    struct bp_vfiles_stats st;
};

static uint64_t mtime_ns(const struct stat *st)
{
    return (uint64_t)st->st_mtim.tv_sec * 1000000000u + (uint64_t)st->st_mtim.tv_nsec;
}

/* The name a path is shipped under: the path itself (without a leading
 * "./") when it is relative and a valid name, else its last component. */
static int ship_name(const char *path, size_t len, const char **name, size_t *nlen)
{
    while (len > 2 && path[0] == '.' && path[1] == '/') { /* find . prints ./a/b */
        path += 2;
        len -= 2;
    }
    if (bp_path_check(path, len, 0) == BP_OK) {
        *name = path;
        *nlen = len;
        return BP_OK;
    }
    size_t i = len;
    while (i > 0 && path[i - 1] == '/')
        i--;
    size_t end = i;
    while (i > 0 && path[i - 1] != '/')
        i--;
    *name = path + i;
    *nlen = end - i;
    return bp_path_check(*name, *nlen, 1);
}

/* Hashes base file i (already stat'ed through fd). */
static int hash_base(int fd, uint8_t sha[BP_SHA256_LEN])
{
    struct bp_sha256 h;
    bp_sha256_init(&h);
    uint8_t buf[65536];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        if (n == 0)
            break;
        bp_sha256_update(&h, buf, (size_t)n);
    }
    bp_sha256_final(&h, sha);
    return 0;
}

static int add_base(struct bp_vfiles *vf, const char *path, char *err, size_t errlen)
{
    const char *name;
    size_t nlen;
    if (ship_name(path, strlen(path), &name, &nlen) != BP_OK) {
        snprintf(err, errlen, "--basefile %s: no file name to send it under", path);
        return BP_EUSAGE;
    }
    for (uint32_t i = 0; i < vf->nbase; i++) {
        const char *o;
        size_t ol;
        (void)ship_name(vf->base[i].path, strlen(vf->base[i].path), &o, &ol);
        if (ol == nlen && !memcmp(o, name, nlen)) {
            snprintf(err, errlen, "--basefile %s: a base file named '%.*s' is already given", path,
                     (int)nlen, name);
            return BP_EUSAGE;
        }
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    uint8_t sha[BP_SHA256_LEN];
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || hash_base(fd, sha) != 0) {
        snprintf(err, errlen, "--basefile %s: %s", path,
                 fd >= 0 && !S_ISREG(st.st_mode) ? "not a regular file" : strerror(errno));
        if (fd >= 0)
            close(fd);
        return BP_EUSAGE;
    }
    close(fd);
    struct base *b = &vf->base[vf->nbase];
    b->path = strdup(path);
    if (!b->path)
        return BP_ENOMEM;
    b->size = (uint64_t)st.st_size;
    b->mtime_ns = mtime_ns(&st);
    vf->nbase++;
    bp_pack_base(&vf->bpk, sha, b->size, name, (uint16_t)nlen);
    return BP_OK;
}

struct bp_vfiles *bp_vfiles_new(const struct bp_strlist *basefiles, char *err, size_t errlen)
{
    struct bp_vfiles *vf = calloc(1, sizeof *vf);
    if (!vf) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    bp_pack_init(&vf->bpk);
    bp_pack_begin(&vf->bpk, BP_MSG_BASE, 0);
    int n = basefiles ? basefiles->n : 0;
    if (n > BP_MAX_BASEFILES)
        n = BP_MAX_BASEFILES;
    for (int i = 0; i < n; i++)
        if (add_base(vf, basefiles->v[i], err, errlen) != BP_OK) {
            bp_vfiles_destroy(&vf);
            return NULL;
        }
    if (bp_pack_finish(&vf->bpk) != BP_OK) {
        snprintf(err, errlen, "out of memory");
        bp_vfiles_destroy(&vf);
        return NULL;
    }
    return vf;
}

void bp_vfiles_destroy(struct bp_vfiles **vfp)
{
    if (!vfp || !*vfp)
        return;
    struct bp_vfiles *vf = *vfp;
    for (uint32_t i = 0; i < vf->nbase; i++)
        free(vf->base[i].path);
    bp_pack_free(&vf->bpk);
    free(vf);
    *vfp = NULL;
}

void bp_vfiles_base(const struct bp_vfiles *vf, const uint8_t **body, size_t *len, uint32_t *n)
{
    *body = vf->bpk.p + BP_MSG_HDR;
    *len = vf->bpk.len - BP_MSG_HDR;
    *n = vf->nbase;
}

int bp_vfiles_describe(struct bp_vfiles *vf, const char *rec, size_t len, const uint8_t **desc,
                       size_t *dlen, int *err)
{
    char path[PATH_MAX];
    if (len == 0 || len >= sizeof path || memchr(rec, '\0', len)) {
        *err = len ? ENAMETOOLONG : ENOENT;
        return BP_EIO;
    }
    memcpy(path, rec, len);
    path[len] = '\0';
    struct stat st;
    if (stat(path, &st) != 0 || access(path, R_OK) != 0) {
        *err = errno;
        return BP_EIO;
    }
    const char *name;
    size_t nlen;
    if (!S_ISREG(st.st_mode) || ship_name(path, len, &name, &nlen) != BP_OK) {
        *err = S_ISDIR(st.st_mode) ? EISDIR : EINVAL;
        return BP_EIO;
    }
    *dlen = bp_file_desc_build(vf->desc, sizeof vf->desc, (uint64_t)st.st_size, mtime_ns(&st), name,
                               nlen, rec, len);
    *desc = vf->desc;
    if (!*dlen) {
        *err = EINVAL;
        return BP_EIO;
    }
    return BP_OK;
}

/* Where r's bytes come from: the path (NUL-terminated into buf) and what
 * the file must still look like. Returns 0, or -1 when r names nothing. */
static int source(const struct bp_vfiles *vf, const struct bp_fetch_req *r, char *buf, size_t cap,
                  uint64_t *size, uint64_t *mtime)
{
    if (r->f.kind == BP_FK_BASE) {
        const struct base *b = &vf->base[r->f.id];
        snprintf(buf, cap, "%s", b->path);
        *size = b->size;
        *mtime = b->mtime_ns;
        return 0;
    }
    struct bp_file_desc fd;
    if (bp_file_desc_parse(r->data, r->len, &fd) != BP_OK || fd.path_len >= cap)
        return -1;
    memcpy(buf, fd.path, fd.path_len);
    buf[fd.path_len] = '\0';
    *size = fd.size;
    *mtime = fd.mtime_ns;
    return 0;
}

/* Reads len bytes at off of the file described into dst. Returns a
 * BP_CK_* status and, for an error, *code. */
static int read_part(const char *path, uint64_t size, uint64_t mtime, uint64_t off, uint8_t *dst,
                     uint32_t len, uint32_t *code)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        *code = (uint32_t)errno;
        if (fd >= 0)
            close(fd);
        return BP_CK_ERROR;
    }
    int status = BP_CK_DATA;
    if ((uint64_t)st.st_size != size || mtime_ns(&st) != mtime)
        status = BP_CK_CHANGED;
    for (uint32_t got = 0; status == BP_CK_DATA && got < len;) {
        ssize_t n = pread(fd, dst + got, len - got, (off_t)(off + got));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            *code = (uint32_t)errno;
            status = BP_CK_ERROR;
        } else if (n == 0) {
            status = BP_CK_CHANGED; /* shorter than it was */
        } else {
            got += (uint32_t)n;
        }
    }
    close(fd);
    return status;
}

int bp_vfiles_chunk(struct bp_vfiles *vf, const struct bp_fetch_req *r, uint64_t batch,
                    struct bp_pack *pk)
{
    struct bp_chunk c = {.id = r->f.id,
                         .attempt = r->f.attempt,
                         .kind = r->f.kind,
                         .status = BP_CK_REFUSED,
                         .offset = r->f.offset};
    char path[PATH_MAX];
    uint64_t size = 0, mtime = 0;
    if (!r->refused && source(vf, r, path, sizeof path, &size, &mtime) == 0) {
        c.status = BP_CK_DATA;
        if (c.offset > size) {
            c.status = BP_CK_ERROR;
            c.code = EINVAL;
        } else {
            c.len = size - c.offset < r->f.len ? (uint32_t)(size - c.offset) : r->f.len;
        }
    }
    bp_pack_begin(pk, BP_MSG_CHUNK, batch);
    uint8_t *dst = bp_pack_chunk_reserve(pk, &c);
    if (!dst)
        return -1;
    if (c.status == BP_CK_DATA)
        c.status = (uint8_t)read_part(path, size, mtime, c.offset, dst, c.len, &c.code);
    if (c.status != BP_CK_DATA) { /* no data: rebuild the fixed part alone */
        c.len = 0;
        bp_pack_begin(pk, BP_MSG_CHUNK, batch);
        bp_pack_chunk_reserve(pk, &c);
    }
    if (bp_pack_finish(pk) != BP_OK)
        return -1;
    int first = c.status == BP_CK_DATA && c.offset == 0;
    if (c.kind == BP_FK_BASE)
        vf->st.base_sent += first;
    else
        vf->st.files += first;
    if (c.kind == BP_FK_TASK && c.status == BP_CK_DATA)
        vf->st.bytes += c.len;
    vf->st.changed += c.status == BP_CK_CHANGED;
    vf->st.errors += c.status == BP_CK_ERROR;
    vf->st.refused += c.status == BP_CK_REFUSED;
    return c.status;
}

void bp_vfiles_stats(const struct bp_vfiles *vf, struct bp_vfiles_stats *s)
{
    *s = vf->st;
}
