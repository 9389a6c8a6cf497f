/* Names from peers and files beneath a directory (bp_path.h). The checks
 * are pure; the *_beneath() calls walk one component at a time with
 * O_NOFOLLOW, since a name that passed the check may still meet a symlink
 * someone planted in the tree. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bp.h"
#include "bp_path.h"

int bp_path_check(const char *name, size_t len, int one_part)
{
    if (len == 0 || len > BP_NAME_MAX || name[0] == '/')
        return BP_EPROTO;
    if (len >= 4 && memcmp(name, ".bp-", 4) == 0)
        return BP_EPROTO;
    size_t start = 0, parts = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && name[i] == '\0')
            return BP_EPROTO;
        if (i < len && name[i] != '/')
            continue;
        size_t n = i - start;
        if (n == 0 || n > 255 || (n == 1 && name[start] == '.') ||
            (n == 2 && name[start] == '.' && name[start + 1] == '.'))
            return BP_EPROTO;
        if (++parts > (one_part ? 1u : (size_t)BP_NAME_PARTS))
            return BP_EPROTO;
        start = i + 1;
    }
    return BP_OK;
}

int bp_path_copy(char *buf, const char *name, size_t len, int one_part)
{
    if (bp_path_check(name, len, one_part) != BP_OK)
        return BP_EPROTO;
    memcpy(buf, name, len);
    buf[len] = '\0';
    return BP_OK;
}

/* Opens (creating when asked) directory part of len bytes beneath fd. */
static int step(int fd, const char *part, size_t len, int mkdirs)
{
    char c[256];
    memcpy(c, part, len);
    c[len] = '\0';
    int d = openat(fd, c, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (d < 0 && errno == ENOENT && mkdirs) {
        if (mkdirat(fd, c, 0755) != 0 && errno != EEXIST)
            return -errno;
        d = openat(fd, c, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    }
    return d < 0 ? -errno : d;
}

int bp_path_parent_beneath(int dirfd, const char *name, int mkdirs, const char **leaf)
{
    *leaf = name;
    int fd = fcntl(dirfd, F_DUPFD_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    const char *p = name;
    for (const char *s; (s = strchr(p, '/')) != NULL; p = s + 1) {
        if (s - p > 255) {
            close(fd);
            return -ENAMETOOLONG;
        }
        int d = step(fd, p, (size_t)(s - p), mkdirs);
        close(fd);
        if (d < 0)
            return d;
        fd = d;
    }
    *leaf = p;
    return fd;
}

int bp_path_open_beneath(int dirfd, const char *name, int flags, mode_t mode, int mkdirs)
{
    const char *leaf = name;
    int d = bp_path_parent_beneath(dirfd, name, mkdirs, &leaf);
    if (d < 0)
        return d;
    int fd = openat(d, leaf, flags | O_NOFOLLOW | O_CLOEXEC, mode);
    int e = errno;
    close(d);
    return fd < 0 ? -e : fd;
}

/* Empties the directory open as fd (which it closes). */
static int rm_in(int fd)
{
    DIR *dir = fdopendir(fd);
    if (!dir) {
        int e = errno;
        close(fd);
        return -e;
    }
    int rc = 0;
    for (struct dirent *e; (e = readdir(dir)) != NULL;) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        if (unlinkat(dirfd(dir), e->d_name, 0) == 0)
            continue;
        if (errno == EISDIR || errno == EPERM) {
            int sub =
                openat(dirfd(dir), e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            int r = sub < 0 ? -errno : rm_in(sub);
            if (r == 0 && unlinkat(dirfd(dir), e->d_name, AT_REMOVEDIR) != 0)
                r = -errno;
            if (r && !rc)
                rc = r;
        } else if (!rc) {
            rc = -errno;
        }
    }
    closedir(dir);
    return rc;
}

int bp_path_rmtree(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : -errno;
    int rc = rm_in(fd);
    if (rmdir(dir) != 0 && !rc)
        rc = -errno;
    return rc;
}

int bp_path_same_bytes(int a, int b)
{
    struct stat sa, sb;
    if (fstat(a, &sa) != 0 || fstat(b, &sb) != 0)
        return -errno;
    if (sa.st_size != sb.st_size)
        return 0;
    char x[8192], y[8192];
    for (off_t off = 0; off < sa.st_size;) {
        ssize_t n = pread(a, x, sizeof x, off);
        if (n <= 0)
            return n < 0 ? -errno : 0;
        ssize_t m = pread(b, y, (size_t)n, off);
        if (m != n)
            return m < 0 ? -errno : 0;
        if (memcmp(x, y, (size_t)n) != 0)
            return 0;
        off += n;
    }
    return 1;
}
