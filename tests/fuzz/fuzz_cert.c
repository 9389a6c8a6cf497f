/* Fuzz target: the certificate reader (bp_cert_load) on any file, as a
 * public and as a secret certificate. A board's or the allowlist's key
 * files come from other machines: a bad one must be refused with a reason,
 * never crash or be half-read. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "bp.h"
#include "bp_curve.h"
#include "fuzz.h"

static char path[256];

static void cleanup(void)
{
    if (path[0])
        unlink(path);
}

/* A loaded key must be whole Z85 that decodes, and a secret must match. */
static void check(const struct bp_cert *c, int secret)
{
    uint8_t raw[32];
    if (strlen(c->pub) != BP_Z85_KEY || !zmq_z85_decode(raw, c->pub))
        abort();
    if (secret) {
        char derived[BP_Z85_KEY + 1];
        if (zmq_curve_public(derived, c->sec) != 0 || strcmp(derived, c->pub) != 0)
            abort();
    } else if (c->sec[0]) {
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!path[0]) {
        const char *tmp = getenv("TMPDIR");
        snprintf(path, sizeof path, "%s/bp-fuzz-cert-%ld", tmp && *tmp ? tmp : "/tmp",
                 (long)getpid());
        atexit(cleanup);
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || (size && write(fd, data, size) != (ssize_t)size) || close(fd) != 0)
        abort();
    char err[600];
    for (int secret = 0; secret < 2; secret++) {
        struct bp_cert c;
        int rc = bp_cert_load(path, secret, &c, err, sizeof err);
        if (rc == BP_OK)
            check(&c, secret);
        else if (!err[0] || strchr(err, '\n') || c.pub[0] || c.sec[0])
            abort(); /* refused: one line, nothing left in c */
    }
    return 0;
}

/* Two key pairs made once, in czmq's layout and variants of it. */
size_t fuzz_seed(int i, uint8_t *buf, size_t cap)
{
    static char pub[41], sec[41];
    if (!pub[0] && (!bp_curve_available() || zmq_curve_keypair(pub, sec) != 0))
        return 0;
    int n;
    switch (i) {
    case 0:
        n = snprintf((char *)buf, cap,
                     "#   ****  Generated on 2026-01-01 by czmq  ****\n\nmetadata\n"
                     "    name = \"board\"\ncurve\n    public-key = \"%s\"\n"
                     "    secret-key = \"%s\"\n",
                     pub, sec);
        break;
    case 1:
        n = snprintf((char *)buf, cap, "curve\n    public-key = \"%s\"\n", pub);
        break;
    case 2:
        n = snprintf((char *)buf, cap, "curve\r\n\tpublic-key=%s\r\n\tsecret-key='%s'\r\n", pub,
                     sec);
        break;
    default:
        return 0;
    }
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}
