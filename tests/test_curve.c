/* Unit tests for CURVE security (bp_curve.c): key pairs in zcert format,
 * certificate checks, the allowlist, and the ZAP handler admitting,
 * refusing and reloading keys over a real loopback handshake. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include "bp.h"
#include "bp_curve.h"
#include "bp_internal.h"

static char dir[64];

static void rm_tree(const char *d)
{
    DIR *dd = opendir(d);
    if (!dd)
        return;
    struct dirent *e;
    while ((e = readdir(dd)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        char p[512];
        snprintf(p, sizeof p, "%s/%s", d, e->d_name);
        struct stat st;
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
            rm_tree(p);
        else
            unlink(p);
    }
    closedir(dd);
    rmdir(d);
}

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/bp-test-curve-XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    if (dir[0])
        rm_tree(dir);
    dir[0] = '\0';
    return 0;
}

static void path_of(char *buf, size_t len, const char *name)
{
    snprintf(buf, len, "%s/%s", dir, name);
}

static void write_file(const char *name, const char *text, mode_t mode)
{
    char p[256];
    path_of(p, sizeof p, name);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, mode);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    assert_int_equal(fchmod(fd, mode), 0);
    close(fd);
}

static void t_keygen(void **state)
{
    (void)state;
    char name[256], p[256], err[320];
    path_of(name, sizeof name, "board");
    assert_int_equal(bp_keygen(name, err, sizeof err), BP_OK);
    struct stat st;
    path_of(p, sizeof p, "board.key_secret");
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    struct bp_cert sec, pub;
    assert_int_equal(bp_cert_load(p, 1, &sec, err, sizeof err), BP_OK);
    path_of(p, sizeof p, "board.key");
    assert_int_equal(bp_cert_load(p, 0, &pub, err, sizeof err), BP_OK);
    assert_string_equal(sec.pub, pub.pub);
    assert_int_equal(strlen(sec.sec), BP_Z85_KEY);
    assert_string_equal(pub.sec, "");
    /* The public file holds no secret. */
    assert_int_not_equal(bp_cert_load(p, 1, &pub, err, sizeof err), BP_OK);
    assert_non_null(strstr(err, "secret-key"));

    /* Never overwritten, and a refusal leaves the old pair as it was. */
    assert_int_equal(bp_keygen(name, err, sizeof err), BP_EIO);
    assert_non_null(strstr(err, "exists"));
    struct bp_cert again;
    path_of(p, sizeof p, "board.key_secret");
    assert_int_equal(bp_cert_load(p, 1, &again, err, sizeof err), BP_OK);
    assert_string_equal(again.sec, sec.sec);

    /* Only the secret half there: the public one is not left behind. */
    path_of(p, sizeof p, "half.key_secret");
    write_file("half.key_secret", "x", 0600);
    path_of(name, sizeof name, "half");
    assert_int_equal(bp_keygen(name, err, sizeof err), BP_EIO);
    path_of(p, sizeof p, "half.key");
    assert_int_not_equal(access(p, F_OK), 0);

    /* Two pairs differ. */
    path_of(name, sizeof name, "other");
    assert_int_equal(bp_keygen(name, err, sizeof err), BP_OK);
    path_of(p, sizeof p, "other.key");
    struct bp_cert o;
    assert_int_equal(bp_cert_load(p, 0, &o, err, sizeof err), BP_OK);
    assert_string_not_equal(o.pub, sec.pub);
}

static void t_cert_checks(void **state)
{
    (void)state;
    char pub[41], sec[41], pub2[41], sec2[41], text[1024], p[256], err[320];
    assert_int_equal(zmq_curve_keypair(pub, sec), 0);
    assert_int_equal(zmq_curve_keypair(pub2, sec2), 0);
    struct bp_cert c;

    /* czmq's own layout, with metadata and comments. */
    snprintf(text, sizeof text,
             "#   ****  Generated on 2016-01-01 by czmq  ****\n"
             "#   ZeroMQ CURVE **Secret** Certificate\n\n"
             "metadata\n    name = \"board-7\"\ncurve\n"
             "    public-key = \"%s\"\n    secret-key = \"%s\"\n",
             pub, sec);
    write_file("ok.key_secret", text, 0600);
    path_of(p, sizeof p, "ok.key_secret");
    assert_int_equal(bp_cert_load(p, 1, &c, err, sizeof err), BP_OK);
    assert_string_equal(c.pub, pub);
    assert_string_equal(c.sec, sec);

    /* Group- or world-readable secrets are refused, with the fix. */
    write_file("open.key_secret", text, 0640);
    path_of(p, sizeof p, "open.key_secret");
    assert_int_equal(bp_cert_load(p, 1, &c, err, sizeof err), BP_EUSAGE);
    assert_non_null(strstr(err, "chmod 600"));
    write_file("world.key_secret", text, 0604);
    path_of(p, sizeof p, "world.key_secret");
    assert_int_equal(bp_cert_load(p, 1, &c, err, sizeof err), BP_EUSAGE);
    /* ... but a public certificate may be world-readable. */
    assert_int_equal(bp_cert_load(p, 0, &c, err, sizeof err), BP_OK);

    /* A public key that is not the secret's. */
    snprintf(text, sizeof text, "curve\n    public-key = \"%s\"\n    secret-key = \"%s\"\n", pub2,
             sec);
    write_file("mixed.key_secret", text, 0600);
    path_of(p, sizeof p, "mixed.key_secret");
    assert_int_equal(bp_cert_load(p, 1, &c, err, sizeof err), BP_EUSAGE);
    assert_non_null(strstr(err, "does not belong"));

    /* Malformed keys and files. */
    static const char *bad[] = {
        "curve\n    public-key = \"short\"\n",
        "curve\n    public-key = \"0123456789012345678901234567890123456789X\"\n",
        "curve\n    public-key = \"~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~\"\n",
        "curve\n    public-key = \n",
        "curve\n    publickey = \"rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7\"\n",
        "",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_file("bad.key", bad[i], 0644);
        path_of(p, sizeof p, "bad.key");
        assert_int_equal(bp_cert_load(p, 0, &c, err, sizeof err), BP_EUSAGE);
        assert_string_equal(c.pub, "");
    }
    /* Binary data, a directory, a missing file. */
    char bin[64] = "curve\n    public-key = \"";
    bin[30] = '\0';
    path_of(p, sizeof p, "bin.key");
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, bin, sizeof bin), (ssize_t)sizeof bin);
    close(fd);
    assert_int_equal(bp_cert_load(p, 0, &c, err, sizeof err), BP_EUSAGE);
    assert_int_not_equal(bp_cert_load(dir, 0, &c, err, sizeof err), BP_OK);
    path_of(p, sizeof p, "missing.key");
    assert_int_equal(bp_cert_load(p, 0, &c, err, sizeof err), BP_EIO);
    assert_non_null(strstr(err, "missing.key"));

    /* Unquoted values are read too (hand-written files). */
    snprintf(text, sizeof text, "curve\n  public-key=%s\n", pub);
    write_file("plain.key", text, 0644);
    path_of(p, sizeof p, "plain.key");
    assert_int_equal(bp_cert_load(p, 0, &c, err, sizeof err), BP_OK);
    assert_string_equal(c.pub, pub);

    char fp[16];
    uint8_t raw[32];
    assert_non_null(zmq_z85_decode(raw, pub));
    bp_key_fingerprint(raw, fp, sizeof fp);
    assert_int_equal(strlen(fp), 12);
    assert_memory_equal(fp, pub, 12);
}

/* Writes a key pair under dir/sub/NAME via bp_keygen and loads it. */
static void make_pair(const char *sub, const char *name, struct bp_cert *c)
{
    char base[256], p[300], err[320];
    snprintf(base, sizeof base, "%s/%s/%s", dir, sub, name);
    assert_int_equal(bp_keygen(base, err, sizeof err), BP_OK);
    snprintf(p, sizeof p, "%s.key_secret", base);
    assert_int_equal(bp_cert_load(p, 1, c, err, sizeof err), BP_OK);
}

static void t_allowlist(void **state)
{
    (void)state;
    char p[256], err[320];
    path_of(p, sizeof p, "allow");
    assert_int_equal(mkdir(p, 0755), 0);
    struct bp_cert a, b, other;
    make_pair("allow", "a", &a);
    make_pair("allow", "b", &b);
    path_of(p, sizeof p, "keys");
    assert_int_equal(mkdir(p, 0755), 0);
    make_pair("keys", "other", &other);
    write_file("allow/broken.key", "curve\n    public-key = \"nope\"\n", 0644);
    write_file("allow/README", "not a key\n", 0644);

    int bad = -1;
    path_of(p, sizeof p, "allow");
    struct bp_allow *al = bp_allow_load(p, &bad, err, sizeof err);
    assert_non_null(al);
    /* a.key and b.key; the secrets and README are not keys, broken.key is bad. */
    assert_int_equal(bp_allow_count(al), 2);
    assert_int_equal(bad, 1);
    uint8_t k[32];
    assert_non_null(zmq_z85_decode(k, a.pub));
    assert_true(bp_allow_has(al, k));
    assert_non_null(zmq_z85_decode(k, b.pub));
    assert_true(bp_allow_has(al, k));
    assert_non_null(zmq_z85_decode(k, other.pub));
    assert_false(bp_allow_has(al, k));
    bp_allow_destroy(&al);
    assert_null(al);

    path_of(p, sizeof p, "nowhere");
    assert_null(bp_allow_load(p, &bad, err, sizeof err));
    assert_non_null(strstr(err, "nowhere"));
    /* An empty directory admits nobody, and is no error. */
    path_of(p, sizeof p, "empty");
    assert_int_equal(mkdir(p, 0755), 0);
    al = bp_allow_load(p, NULL, err, sizeof err);
    assert_non_null(al);
    assert_int_equal(bp_allow_count(al), 0);
    assert_false(bp_allow_has(al, k));
    bp_allow_destroy(&al);
}

/* A CURVE client socket with key pair c, pinned to server. */
static void *client(void *ctx, const struct bp_cert *c, const char *server, const char *ep)
{
    void *s = zmq_socket(ctx, ZMQ_DEALER);
    assert_non_null(s);
    int zero = 0;
    assert_int_equal(zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero), 0);
    assert_int_equal(zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, server, 40), 0);
    assert_int_equal(zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, c->pub, 40), 0);
    assert_int_equal(zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, c->sec, 40), 0);
    assert_int_equal(zmq_connect(s, ep), 0);
    return s;
}

/* Sends from cl and waits up to ms for the server to receive it. Returns
 * 1 when it arrived (and checks its User-Id is want_uid), 0 if not. */
static int round_trip(void *srv, void *cl, const char *want_uid, int ms)
{
    assert_int_equal(zmq_send(cl, "hi", 2, ZMQ_DONTWAIT) == 2 || errno == EAGAIN, 1);
    zmq_pollitem_t it = {.socket = srv, .events = ZMQ_POLLIN};
    if (zmq_poll(&it, 1, ms) <= 0)
        return 0;
    zmq_msg_t rid, m;
    zmq_msg_init(&rid);
    zmq_msg_init(&m);
    assert_true(zmq_msg_recv(&rid, srv, 0) >= 0);
    assert_true(zmq_msg_recv(&m, srv, 0) >= 0);
    const char *uid = zmq_msg_gets(&m, "User-Id");
    assert_non_null(uid);
    assert_string_equal(uid, want_uid);
    zmq_msg_close(&rid);
    zmq_msg_close(&m);
    return 1;
}

static void t_zap(void **state)
{
    (void)state;
    char p[256], err[320];
    path_of(p, sizeof p, "allow");
    assert_int_equal(mkdir(p, 0755), 0);
    path_of(p, sizeof p, "keys");
    assert_int_equal(mkdir(p, 0755), 0);
    struct bp_cert host, good, bad;
    make_pair("keys", "host", &host);
    make_pair("allow", "good", &good);
    make_pair("keys", "bad", &bad);

    void *ctx = zmq_ctx_new();
    assert_non_null(ctx);
    static volatile sig_atomic_t reload;
    reload = 0;
    path_of(p, sizeof p, "allow");
    struct bp_zap *z = bp_zap_new(ctx, p, host.pub, &reload, err, sizeof err);
    assert_non_null(z);
    assert_int_equal(bp_zap_allowed(z), 1);
    /* One handler per context. */
    assert_null(bp_zap_new(ctx, p, NULL, NULL, err, sizeof err));
    assert_non_null(strstr(err, "another handler"));

    void *srv = zmq_socket(ctx, ZMQ_ROUTER);
    int one = 1, zero = 0;
    assert_int_equal(zmq_setsockopt(srv, ZMQ_LINGER, &zero, sizeof zero), 0);
    assert_int_equal(zmq_setsockopt(srv, ZMQ_CURVE_SERVER, &one, sizeof one), 0);
    assert_int_equal(zmq_setsockopt(srv, ZMQ_CURVE_SECRETKEY, host.sec, 40), 0);
    assert_int_equal(zmq_setsockopt(srv, ZMQ_ZAP_DOMAIN, "boardpipe", 9), 0);
    assert_int_equal(zmq_bind(srv, "tcp://127.0.0.1:*"), 0);
    char ep[128];
    size_t n = sizeof ep;
    assert_int_equal(zmq_getsockopt(srv, ZMQ_LAST_ENDPOINT, ep, &n), 0);

    /* Listed key: in, with its key as User-Id. The host's own key: in. */
    void *cg = client(ctx, &good, host.pub, ep);
    assert_int_equal(round_trip(srv, cg, good.pub, 20000), 1);
    void *ch = client(ctx, &host, host.pub, ep);
    assert_int_equal(round_trip(srv, ch, host.pub, 20000), 1);
    assert_int_equal(bp_zap_refused(z), 0);

    /* Unknown key: nothing gets through, and it is counted. */
    void *cb = client(ctx, &bad, host.pub, ep);
    for (int i = 0; i < 200 && bp_zap_refused(z) == 0; i++)
        usleep(50000);
    assert_true(bp_zap_refused(z) >= 1);
    assert_int_equal(round_trip(srv, cb, bad.pub, 300), 0);

    /* Revoke good, reload: the open connection stays, a new one is refused. */
    path_of(p, sizeof p, "allow/good.key");
    assert_int_equal(unlink(p), 0);
    reload = 1;
    for (int i = 0; i < 200 && bp_zap_allowed(z) != 0; i++)
        usleep(50000);
    assert_int_equal(bp_zap_allowed(z), 0);
    assert_int_equal(reload, 0);
    assert_int_equal(round_trip(srv, cg, good.pub, 20000), 1);
    int64_t before = bp_zap_refused(z);
    void *cg2 = client(ctx, &good, host.pub, ep);
    for (int i = 0; i < 200 && bp_zap_refused(z) == before; i++)
        usleep(50000);
    assert_true(bp_zap_refused(z) > before);
    assert_int_equal(round_trip(srv, cg2, good.pub, 300), 0);

    /* A client pinned to another server key never gets in. */
    void *cw = client(ctx, &host, good.pub, ep);
    assert_int_equal(round_trip(srv, cw, host.pub, 500), 0);

    zmq_close(cw);
    zmq_close(cg2);
    zmq_close(cb);
    zmq_close(ch);
    zmq_close(cg);
    zmq_close(srv);
    bp_zap_destroy(&z);
    assert_null(z);
    bp_zap_destroy(&z); /* twice: harmless */
    assert_int_equal(zmq_ctx_term(ctx), 0);
}

int main(void)
{
    bp_log_init("test_curve", BP_LOG_ERROR);
    /* A libzmq without CURVE: a failure where this build expects CURVE
     * (every build of this project has it), else a skip CTest counts as
     * one (SKIP_RETURN_CODE 77), never a pass. */
    if (!bp_curve_available()) {
        if (BP_EXPECT_CURVE) {
            printf("FAIL: this libzmq has no CURVE, and this build expects it "
                   "(BP_EXPECT_CURVE)\n");
            return 1;
        }
        printf("SKIP: this libzmq has no CURVE (built with BP_EXPECT_CURVE=OFF)\n");
        return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(t_keygen, setup, teardown),
        cmocka_unit_test_setup_teardown(t_cert_checks, setup, teardown),
        cmocka_unit_test_setup_teardown(t_allowlist, setup, teardown),
        cmocka_unit_test_setup_teardown(t_zap, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
