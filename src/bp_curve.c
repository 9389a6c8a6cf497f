/* CURVE keys and admission (bp_curve.h): key pairs on disk, certificate
 * parsing, the allowlist of boards' keys and the ZAP handler thread that
 * applies it. Owns the allowlist and the ZAP thread with its socket; must
 * not touch the roles' sockets or options (a role passes what it needs). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "bp_curve.h"
#include "bp_internal.h"

#define CERT_MAX_BYTES ((size_t)64 * 1024)
#define ALLOW_MAX 4096
#define SEEN_MAX 256 /* refused keys / addresses remembered for logging once */
#define ZAP_ENDPOINT "inproc://zeromq.zap.01"

int bp_curve_available(void)
{
    return zmq_has("curve") != 0;
}

/* ---- certificates ---- */

static int write_all(int fd, const char *s, size_t n)
{
    while (n) {
        ssize_t w = write(fd, s, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        s += w;
        n -= (size_t)w;
    }
    return 0;
}

int bp_keygen(const char *name, char *err, size_t errlen)
{
    char pub[BP_Z85_KEY + 1], sec[BP_Z85_KEY + 1];
    char ppath[PATH_MAX], spath[PATH_MAX];
    if (!name || !*name) {
        snprintf(err, errlen, "--keygen: empty name");
        return BP_EUSAGE;
    }
    if (snprintf(ppath, sizeof ppath, "%s.key", name) >= (int)sizeof ppath ||
        snprintf(spath, sizeof spath, "%s.key_secret", name) >= (int)sizeof spath) {
        snprintf(err, errlen, "--keygen: name too long");
        return BP_EUSAGE;
    }
    if (!bp_curve_available()) {
        snprintf(err, errlen, "this libzmq was built without CURVE");
        return BP_EZMQ;
    }
    if (zmq_curve_keypair(pub, sec) != 0) {
        snprintf(err, errlen, "cannot make a key pair: %s", zmq_strerror(errno));
        return BP_EZMQ;
    }
    char date[32] = "";
    time_t t = time(NULL);
    struct tm tm;
    if (gmtime_r(&t, &tm))
        strftime(date, sizeof date, "%Y-%m-%d %H:%M:%S UTC", &tm);
    char ptext[1024], stext[1024];
    snprintf(ptext, sizeof ptext,
             "#   ****  Generated on %s by boardpipe  ****\n"
             "#   ZeroMQ CURVE Public Certificate\n"
             "#   Exchange securely, or use a secure mechanism to verify the contents\n"
             "#   of this file after exchange.\n"
             "\n"
             "metadata\n"
             "curve\n"
             "    public-key = \"%s\"\n",
             date, pub);
    snprintf(stext, sizeof stext,
             "#   ****  Generated on %s by boardpipe  ****\n"
             "#   ZeroMQ CURVE **Secret** Certificate\n"
             "#   DO NOT PROVIDE THIS FILE TO OTHER USERS nor change its permissions.\n"
             "\n"
             "metadata\n"
             "curve\n"
             "    public-key = \"%s\"\n"
             "    secret-key = \"%s\"\n",
             date, pub, sec);
    int pfd = open(ppath, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (pfd < 0) {
        snprintf(err, errlen, "cannot create %s: %s", ppath,
                 errno == EEXIST ? "it exists (not overwritten)" : strerror(errno));
        return BP_EIO;
    }
    int sfd = open(spath, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (sfd < 0) {
        snprintf(err, errlen, "cannot create %s: %s", spath,
                 errno == EEXIST ? "it exists (not overwritten)" : strerror(errno));
        close(pfd);
        unlink(ppath);
        return BP_EIO;
    }
    int bad = fchmod(sfd, 0600) != 0 || write_all(pfd, ptext, strlen(ptext)) != 0 ||
              write_all(sfd, stext, strlen(stext)) != 0 || fsync(sfd) != 0;
    int e = errno;
    bad |= close(pfd) != 0;
    bad |= close(sfd) != 0;
    memset(sec, 0, sizeof sec);
    memset(stext, 0, sizeof stext);
    if (bad) {
        snprintf(err, errlen, "cannot write %s: %s", name, strerror(e));
        unlink(ppath);
        unlink(spath);
        return BP_EIO;
    }
    return BP_OK;
}

/* Finds "NAME = value" (value optionally quoted) on a line of text. */
static int find_key(const char *text, const char *name, char out[BP_Z85_KEY + 1])
{
    size_t nl = strlen(name);
    for (const char *line = text; line && *line;) {
        const char *p = line;
        while (*p == ' ' || *p == '\t')
            p++;
        const char *next = strchr(line, '\n');
        if (!strncmp(p, name, nl)) {
            p += nl;
            while (*p == ' ' || *p == '\t')
                p++;
            if (*p == '=') {
                p++;
                while (*p == ' ' || *p == '\t')
                    p++;
                int quoted = *p == '"' || *p == '\'';
                char q = *p;
                if (quoted)
                    p++;
                size_t n = 0;
                while (p[n] && p[n] != '\n' && p[n] != '\r' && !(quoted && p[n] == q) &&
                       !(!quoted && (p[n] == ' ' || p[n] == '\t')))
                    n++;
                if (n != BP_Z85_KEY)
                    return -1;
                memcpy(out, p, n);
                out[n] = '\0';
                uint8_t raw[32];
                return zmq_z85_decode(raw, out) ? 0 : -1;
            }
        }
        line = next ? next + 1 : NULL;
    }
    return -1;
}

int bp_cert_load(const char *path, int want_secret, struct bp_cert *c, char *err, size_t errlen)
{
    memset(c, 0, sizeof *c);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return BP_EIO;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "%s: not a regular file", path);
        close(fd);
        return BP_EUSAGE;
    }
    /* Certificates are a few hundred bytes: read what is there, up to the
     * limit (a growing file is cut there, and then fails to parse). */
    size_t cap =
        st.st_size > 0 && (size_t)st.st_size < CERT_MAX_BYTES ? (size_t)st.st_size : CERT_MAX_BYTES;
    char *buf = malloc(cap + 1);
    if (!buf) {
        close(fd);
        snprintf(err, errlen, "out of memory");
        return BP_ENOMEM;
    }
    size_t n = 0;
    for (;;) {
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        n += (size_t)r;
        if (n == cap)
            break;
    }
    close(fd);
    buf[n] = '\0';
    int rc = BP_OK;
    if (memchr(buf, '\0', n)) {
        snprintf(err, errlen, "%s: not a certificate (binary data)", path);
        rc = BP_EUSAGE;
    } else if (find_key(buf, "public-key", c->pub) != 0) {
        snprintf(err, errlen, "%s: no valid public-key (a zcert file from --keygen expected)",
                 path);
        rc = BP_EUSAGE;
    } else if (want_secret && find_key(buf, "secret-key", c->sec) != 0) {
        snprintf(err, errlen, "%s: no valid secret-key (give the NAME.key_secret file)", path);
        rc = BP_EUSAGE;
    }
    if (rc == BP_OK && want_secret && (st.st_mode & 077)) {
        snprintf(err, errlen, "%s: secret key readable by group or others (chmod 600 %s)", path,
                 path);
        rc = BP_EUSAGE;
    }
    if (rc == BP_OK && want_secret) {
        /* The pair must match, or the peer pins a key we cannot serve. */
        char derived[BP_Z85_KEY + 1];
        if (zmq_curve_public(derived, c->sec) != 0 || strcmp(derived, c->pub) != 0) {
            snprintf(err, errlen, "%s: public-key does not belong to secret-key", path);
            rc = BP_EUSAGE;
        }
    }
    memset(buf, 0, n);
    free(buf);
    if (rc != BP_OK)
        memset(c, 0, sizeof *c);
    return rc;
}

/* ---- the allowlist ---- */

struct bp_allow {
    size_t n;
    uint8_t (*keys)[32];
};

static int key_cmp(const void *a, const void *b)
{
    return memcmp(a, b, 32);
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

struct bp_allow *bp_allow_load(const char *dir, int *bad, char *err, size_t errlen)
{
    if (bad)
        *bad = 0;
    DIR *d = opendir(dir);
    if (!d) {
        snprintf(err, errlen, "cannot read directory %s: %s", dir, strerror(errno));
        return NULL;
    }
    struct bp_allow *a = calloc(1, sizeof *a);
    if (a)
        a->keys = calloc(ALLOW_MAX, 32);
    if (!a || !a->keys) {
        closedir(d);
        bp_allow_destroy(&a);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.' || !ends_with(e->d_name, ".key"))
            continue;
        char path[PATH_MAX], why[256];
        struct bp_cert c;
        if (snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >= (int)sizeof path ||
            bp_cert_load(path, 0, &c, why, sizeof why) != BP_OK) {
            if (bad)
                (*bad)++;
            bp_log(BP_LOG_WARN, "allowlist: skipping %s/%s", dir, e->d_name);
            continue;
        }
        if (a->n == ALLOW_MAX) {
            if (bad)
                (*bad)++;
            bp_log(BP_LOG_WARN, "allowlist %s: more than %d keys, the rest skipped", dir,
                   ALLOW_MAX);
            break;
        }
        zmq_z85_decode(a->keys[a->n++], c.pub);
    }
    closedir(d);
    qsort(a->keys, a->n, 32, key_cmp);
    return a;
}

void bp_allow_destroy(struct bp_allow **a)
{
    if (a && *a) {
        free((*a)->keys);
        free(*a);
        *a = NULL;
    }
}

size_t bp_allow_count(const struct bp_allow *a)
{
    return a ? a->n : 0;
}

int bp_allow_has(const struct bp_allow *a, const uint8_t key[32])
{
    return a && a->n && bsearch(key, a->keys, a->n, 32, key_cmp) != NULL;
}

void bp_key_fingerprint(const uint8_t key[32], char *buf, size_t len)
{
    char z[BP_Z85_KEY + 1];
    if (!zmq_z85_encode(z, key, 32))
        snprintf(z, sizeof z, "?");
    snprintf(buf, len, "%.12s", z);
}

/* ---- the ZAP handler ---- */

struct bp_zap {
    void *rep;        /* the handler (the thread's) */
    void *ctl, *ctl2; /* ours / the thread's end of a stop pipe */
    pthread_t th;
    int started;
    char *dir;
    uint8_t self[32];
    int has_self;
    volatile sig_atomic_t *reload;
    pthread_mutex_t mu; /* guards allow and the counts */
    struct bp_allow *allow;
    int64_t refused;
    /* refused keys and addresses already logged */
    uint8_t seen_keys[SEEN_MAX][32];
    int nkeys;
    char seen_addr[SEEN_MAX][48];
    int naddr;
    int quiet; /* said once that further refusals are not logged */
};

static int remember_key(struct bp_zap *z, const uint8_t *k)
{
    for (int i = 0; i < z->nkeys; i++)
        if (!memcmp(z->seen_keys[i], k, 32))
            return 0;
    if (z->nkeys == SEEN_MAX)
        return -1;
    memcpy(z->seen_keys[z->nkeys++], k, 32);
    return 1;
}

static int remember_addr(struct bp_zap *z, const char *a)
{
    for (int i = 0; i < z->naddr; i++)
        if (!strcmp(z->seen_addr[i], a))
            return 0;
    if (z->naddr == SEEN_MAX)
        return -1;
    snprintf(z->seen_addr[z->naddr++], sizeof z->seen_addr[0], "%s", a);
    return 1;
}

static void zap_reload(struct bp_zap *z)
{
    char err[320];
    int bad = 0;
    struct bp_allow *a = bp_allow_load(z->dir, &bad, err, sizeof err);
    if (!a) {
        bp_log(BP_LOG_ERROR, "allowlist not reloaded (the old one stays): %s", err);
        return;
    }
    pthread_mutex_lock(&z->mu);
    struct bp_allow *old = z->allow;
    z->allow = a;
    pthread_mutex_unlock(&z->mu);
    bp_allow_destroy(&old);
    bp_log(BP_LOG_INFO, "allowlist %s reloaded: %zu keys%s", z->dir, bp_allow_count(a),
           bad ? " (some files skipped)" : "");
}

static int send_frame(void *s, const void *p, size_t n, int more)
{
    return zmq_send(s, p, n, more ? ZMQ_SNDMORE : 0) < 0 ? -1 : 0;
}

/* Handles one ZAP request (RFC 27): version, request id, domain, address,
 * routing id, mechanism, credentials. */
static void zap_handle(struct bp_zap *z)
{
    enum { NF = 8, FMAX = 256 };
    char f[NF][FMAX];
    size_t len[NF];
    int nf = 0, more = 1, over = 0;
    while (more) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, z->rep, 0) < 0) {
            zmq_msg_close(&m);
            return;
        }
        more = zmq_msg_more(&m);
        if (nf < NF) {
            size_t n = zmq_msg_size(&m);
            if (n >= FMAX) {
                over = 1;
                n = FMAX - 1;
            }
            memcpy(f[nf], zmq_msg_data(&m), n);
            f[nf][n] = '\0';
            len[nf] = n;
            nf++;
        } else {
            over = 1;
        }
        zmq_msg_close(&m);
    }
    if (nf < 2)
        return; /* cannot even answer it */
    const char *status = "400", *text = "refused";
    char uid[BP_Z85_KEY + 1] = "";
    int curve = nf == 7 && !over && len[0] == 3 && !memcmp(f[0], "1.0", 3) && len[5] == 5 &&
                !memcmp(f[5], "CURVE", 5) && len[6] == 32;
    const uint8_t *key = curve ? (const uint8_t *)f[6] : NULL;
    if (curve) {
        pthread_mutex_lock(&z->mu);
        int ok = (z->has_self && !memcmp(key, z->self, 32)) || bp_allow_has(z->allow, key);
        if (!ok)
            z->refused++;
        pthread_mutex_unlock(&z->mu);
        if (ok) {
            status = "200";
            text = "OK";
            zmq_z85_encode(uid, key, 32);
        }
    } else {
        pthread_mutex_lock(&z->mu);
        z->refused++;
        pthread_mutex_unlock(&z->mu);
    }
    if (status[0] != '2') {
        char addr[48], fp[16] = "(no key)";
        bp_printable(addr, sizeof addr, f[3], nf > 3 ? len[3] : 0);
        int nk = key ? remember_key(z, key) : 0;
        int na = remember_addr(z, addr);
        if (key)
            bp_key_fingerprint(key, fp, sizeof fp);
        if (nk > 0 || na > 0)
            bp_log(BP_LOG_WARN, "refused %s key %s from %s", curve ? "unknown" : "non-CURVE", fp,
                   addr);
        else if ((nk < 0 || na < 0) && !z->quiet) {
            z->quiet = 1;
            bp_log(BP_LOG_WARN, "many refused peers: further ones are counted, not logged");
        }
    }
    /* Reply: version, request id, status code, status text, user id,
     * metadata. */
    if (send_frame(z->rep, "1.0", 3, 1) || send_frame(z->rep, f[1], len[1], 1) ||
        send_frame(z->rep, status, 3, 1) || send_frame(z->rep, text, strlen(text), 1) ||
        send_frame(z->rep, uid, strlen(uid), 1) || send_frame(z->rep, "", 0, 0))
        bp_log(BP_LOG_ERROR, "ZAP reply failed: %s", zmq_strerror(errno));
}

static void *zap_main(void *arg)
{
    struct bp_zap *z = arg;
    for (;;) {
        zmq_pollitem_t it[2] = {{.socket = z->rep, .events = ZMQ_POLLIN},
                                {.socket = z->ctl2, .events = ZMQ_POLLIN}};
        int rc = zmq_poll(it, 2, 250);
        if (rc < 0 && errno != EINTR)
            break;
        if (z->reload && *z->reload) {
            *z->reload = 0;
            zap_reload(z);
        }
        if (rc > 0 && (it[1].revents & ZMQ_POLLIN))
            break;
        if (rc > 0 && (it[0].revents & ZMQ_POLLIN))
            zap_handle(z);
    }
    return NULL;
}

static void zap_free(struct bp_zap *z)
{
    if (z->rep)
        zmq_close(z->rep);
    if (z->ctl)
        zmq_close(z->ctl);
    if (z->ctl2)
        zmq_close(z->ctl2);
    bp_allow_destroy(&z->allow);
    pthread_mutex_destroy(&z->mu);
    free(z->dir);
    free(z);
}

struct bp_zap *bp_zap_new(void *ctx, const char *allow_dir, const char *self,
                          volatile sig_atomic_t *reload, char *err, size_t errlen)
{
    struct bp_zap *z = calloc(1, sizeof *z);
    if (!z) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&z->mu, NULL);
    z->reload = reload;
    z->dir = strdup(allow_dir);
    int bad = 0;
    if (!z->dir || !(z->allow = bp_allow_load(allow_dir, &bad, err, errlen))) {
        if (!z->dir)
            snprintf(err, errlen, "out of memory");
        zap_free(z);
        return NULL;
    }
    if (self && zmq_z85_decode(z->self, self))
        z->has_self = 1;
    char ep[64];
    snprintf(ep, sizeof ep, "inproc://bp-zap-ctl-%p", (void *)z);
    int linger = 0;
    z->rep = zmq_socket(ctx, ZMQ_REP);
    z->ctl = zmq_socket(ctx, ZMQ_PAIR);
    z->ctl2 = zmq_socket(ctx, ZMQ_PAIR);
    if (!z->rep || !z->ctl || !z->ctl2 ||
        zmq_setsockopt(z->rep, ZMQ_LINGER, &linger, sizeof linger) != 0 ||
        zmq_setsockopt(z->ctl, ZMQ_LINGER, &linger, sizeof linger) != 0 ||
        zmq_bind(z->ctl2, ep) != 0 || zmq_connect(z->ctl, ep) != 0) {
        snprintf(err, errlen, "cannot set up the ZAP handler: %s", zmq_strerror(errno));
        zap_free(z);
        return NULL;
    }
    if (zmq_bind(z->rep, ZAP_ENDPOINT) != 0) {
        snprintf(err, errlen, "cannot serve ZAP: %s",
                 errno == EADDRINUSE ? "another handler serves this ZeroMQ context"
                                     : zmq_strerror(errno));
        zap_free(z);
        return NULL;
    }
    if (pthread_create(&z->th, NULL, zap_main, z) != 0) {
        snprintf(err, errlen, "cannot start the ZAP thread");
        zap_free(z);
        return NULL;
    }
    z->started = 1;
    bp_log(BP_LOG_DEBUG, "allowlist %s: %zu keys", allow_dir, bp_allow_count(z->allow));
    if (bad)
        bp_log(BP_LOG_WARN, "allowlist %s: %d files skipped", allow_dir, bad);
    return z;
}

void bp_zap_destroy(struct bp_zap **zp)
{
    if (!zp || !*zp)
        return;
    struct bp_zap *z = *zp;
    if (z->started) {
        /* If the send fails the context is terminating: the thread's poll
         * fails too, and it leaves. */
        (void)zmq_send(z->ctl, "", 0, ZMQ_DONTWAIT);
        pthread_join(z->th, NULL);
    }
    zap_free(z);
    *zp = NULL;
}

int64_t bp_zap_refused(struct bp_zap *z)
{
    if (!z)
        return 0;
    pthread_mutex_lock(&z->mu);
    int64_t n = z->refused;
    pthread_mutex_unlock(&z->mu);
    return n;
}

size_t bp_zap_allowed(struct bp_zap *z)
{
    if (!z)
        return 0;
    pthread_mutex_lock(&z->mu);
    size_t n = bp_allow_count(z->allow);
    pthread_mutex_unlock(&z->mu);
    return n;
}
