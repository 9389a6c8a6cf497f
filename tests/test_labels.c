/* bp_labels: label blocks from peers, building them, detection on a
 * made-up machine tree, --require parsing and matching. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bp_frame.h"
#include "bp_labels.h"

#define BLOCK(s) (const void *)(s), (sizeof(s) - 1)

static void t_next_checks_entries(void **state)
{
    (void)state;
    /* good, bad name, empty name, value with a control byte, a flag, an
     * unterminated tail */
    static const char b[] = "arch=aarch64\0b@d=1\0=x\0v=a\tb\0camera\0mem=2G\0tail";
    size_t off = 0;
    struct bp_label l;
    assert_int_equal(bp_labels_next(BLOCK(b), &off, &l), 1);
    assert_true(l.name_len == 4 && !memcmp(l.name, "arch", 4));
    assert_true(l.value_len == 7 && !memcmp(l.value, "aarch64", 7));
    assert_int_equal(bp_labels_next(BLOCK(b), &off, &l), 1);
    assert_true(l.name_len == 6 && !memcmp(l.name, "camera", 6) && l.value == NULL);
    assert_int_equal(bp_labels_next(BLOCK(b), &off, &l), 1);
    assert_true(l.name_len == 3 && l.value_len == 2);
    assert_int_equal(bp_labels_next(BLOCK(b), &off, &l), 0);
    /* too long a name or value; an empty block; a lone NUL */
    char big[400];
    memset(big, 'n', 33);
    big[33] = '\0';
    off = 0;
    assert_int_equal(bp_labels_next(big, 34, &off, &l), 0);
    memcpy(big, "v=", 2);
    memset(big + 2, 'x', 256);
    big[258] = '\0';
    off = 0;
    assert_int_equal(bp_labels_next(big, 259, &off, &l), 0);
    big[257] = '\0'; /* 255 bytes of value: fine */
    off = 0;
    assert_int_equal(bp_labels_next(big, 258, &off, &l), 1);
    off = 0;
    assert_int_equal(bp_labels_next("", 0, &off, &l), 0);
    assert_int_equal(bp_labels_next("\0", 1, &off, &l), 0);
    assert_int_equal(bp_labels_find(BLOCK(b), "mem", &l), 1);
    assert_int_equal(bp_labels_find(BLOCK(b), "me", &l), 0);
    assert_int_equal(bp_labels_find(BLOCK(b), "v", &l), 0);
}

static void t_add_and_format(void **state)
{
    (void)state;
    uint8_t b[64];
    size_t n = 0;
    assert_int_equal(bp_labels_add_arg(b, sizeof b, &n, "model=Pi Zero"), 0);
    assert_int_equal(bp_labels_add_arg(b, sizeof b, &n, "hat"), 0);
    assert_int_equal(bp_labels_add(b, sizeof b, &n, "model", "other"), 0); /* first stays */
    assert_int_equal(bp_labels_add_arg(b, sizeof b, &n, "bad name"), -1);
    assert_int_equal(bp_labels_add_arg(b, sizeof b, &n, "=x"), -1);
    assert_int_equal(bp_labels_add_arg(b, sizeof b, &n, "x=a\nb"), -1);
    assert_int_equal(n, 18);
    char out[128];
    assert_string_equal(bp_labels_format(b, n, out, sizeof out), "model=Pi Zero hat");
    /* no room: unchanged */
    assert_int_equal(bp_labels_add(b, 20, &n, "name", "value"), -1);
    assert_int_equal(n, 18);
    assert_string_equal(bp_labels_format(b, n, out, 6), "model");
    /* a full block stays within BP_LABELS_MAX */
    uint8_t big[BP_LABELS_MAX];
    size_t bn = 0;
    int added = 0;
    for (int i = 0; i < 1000; i++) {
        char name[16];
        snprintf(name, sizeof name, "l%d", i);
        if (bp_labels_add(big, sizeof big, &bn, name, "0123456789") == 0)
            added++;
    }
    assert_true(bn <= sizeof big && added > 100 && added < 1000);
}

static void put(const char *path, const char *data, size_t len)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    fclose(f);
}

static void t_detect(void **state)
{
    (void)state;
    char root[] = "/tmp/bp-labels-XXXXXX", p[256];
    assert_non_null(mkdtemp(root));
    uint8_t b[BP_LABELS_MAX];
    size_t n = 0;
    assert_int_equal(bp_labels_add_arg(b, sizeof b, &n, "cores=1"), 0); /* the user wins */
    bp_labels_detect(b, sizeof b, &n, root);
    struct bp_label l;
    assert_int_equal(bp_labels_find(b, n, "arch", &l), 1);
    assert_int_equal(bp_labels_find(b, n, "cores", &l), 1);
    assert_true(l.value_len == 1 && l.value[0] == '1');
    assert_int_equal(bp_labels_find(b, n, "mem", &l), 1);
    assert_true(l.value_len > 6 && l.value[0] >= '1' && l.value[0] <= '9');
    assert_int_equal(bp_labels_find(b, n, "hostname", &l), 1);
    assert_int_equal(bp_labels_find(b, n, "model", &l), 0);
    assert_int_equal(bp_labels_find(b, n, "camera", &l), 0);
    assert_int_equal(bp_labels_find(b, n, "i2c", &l), 0);
    /* a Pi: a device-tree model (NUL-ended), a camera, an I2C bus */
    snprintf(p, sizeof p, "%s/proc", root);
    assert_int_equal(mkdir(p, 0700), 0);
    snprintf(p, sizeof p, "%s/proc/device-tree", root);
    assert_int_equal(mkdir(p, 0700), 0);
    snprintf(p, sizeof p, "%s/proc/device-tree/model", root);
    put(p, "Raspberry Pi Zero W Rev 1.1\0", 28);
    snprintf(p, sizeof p, "%s/dev", root);
    assert_int_equal(mkdir(p, 0700), 0);
    snprintf(p, sizeof p, "%s/dev/video0", root);
    put(p, "", 0);
    snprintf(p, sizeof p, "%s/dev/i2c-1", root);
    put(p, "", 0);
    n = 0;
    bp_labels_detect(b, sizeof b, &n, root);
    assert_int_equal(bp_labels_find(b, n, "model", &l), 1);
    assert_true(l.value_len == 27 && !memcmp(l.value, "Raspberry Pi Zero W Rev 1.1", 27));
    assert_int_equal(bp_labels_find(b, n, "camera", &l), 1);
    assert_null(l.value);
    assert_int_equal(bp_labels_find(b, n, "i2c", &l), 1);
    /* each file removed, then the tree */
    static const char *const rm[] = {"/dev/video0",
                                     "/dev/i2c-1",
                                     "/proc/device-tree/model",
                                     "/proc/device-tree",
                                     "/proc",
                                     "/dev",
                                     ""};
    for (size_t i = 0; i < sizeof rm / sizeof rm[0]; i++) {
        snprintf(p, sizeof p, "%s%s", root, rm[i]);
        assert_int_equal(remove(p), 0);
    }
}

static void t_require(void **state)
{
    (void)state;
    static const char pi5[] = "arch=aarch64\0cores=4\0mem=8589934592\0camera\0model=Pi 5\0";
    static const char zero[] = "arch=armv6l\0cores=1\0mem=512M\0hat=sense\0";
    struct bp_req r;
    char err[256];
    assert_int_equal(bp_req_parse("arch=aarch64,mem>=2G,camera", &r, err, sizeof err), 0);
    assert_int_equal(r.n, 3);
    assert_int_equal(bp_req_match(&r, BLOCK(pi5)), 1);
    assert_int_equal(bp_req_match(&r, BLOCK(zero)), 0);
    static const struct {
        const char *expr;
        int pi5, zero;
    } cases[] = {
        {"mem<1G", 0, 1},        {"mem<=512M", 0, 1},  {"mem=536870912", 0, 1},
        {"mem>0.5g", 1, 0},      {"cores>1", 1, 0},    {"cores=4.0", 1, 0},
        {"arch!=aarch64", 0, 1}, {"hat", 0, 1},        {"hat!=sense", 1, 0},
        {"hat=sense", 0, 1},     {"model=Pi 5", 1, 0}, {"model>4", 0, 0},
        {"camera=yes", 0, 0},    {"nosuch!=1", 1, 1},  {"nosuch<1", 0, 0},
        {"arch>=a", 0, 0},       {"mem>=2X", 0, 0},    {"cores>=1,cores<=4", 1, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_int_equal(bp_req_parse(cases[i].expr, &r, err, sizeof err), 0);
        if (bp_req_match(&r, BLOCK(pi5)) != cases[i].pi5 ||
            bp_req_match(&r, BLOCK(zero)) != cases[i].zero)
            fail_msg("%s", cases[i].expr);
    }
    /* the empty requirement matches everything, even no labels */
    memset(&r, 0, sizeof r);
    assert_int_equal(bp_req_match(&r, "", 0), 1);
    static const char *const bad[] = {
        "",     ",",    "a,",  "=x",  "a=",   "a b",
        "a==b", "a=>1", "a!b", "a@1", "a=\t", "1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        if (bp_req_parse(bad[i], &r, err, sizeof err) != -1 || !err[0])
            fail_msg("accepted: '%s'", bad[i]);
    }
    /* a value of the longest size is fine, one more is not */
    char lv[300] = "v=";
    memset(lv + 2, 'x', 255);
    lv[257] = '\0';
    assert_int_equal(bp_req_parse(lv, &r, err, sizeof err), 0);
    lv[257] = 'x';
    lv[258] = '\0';
    assert_int_equal(bp_req_parse(lv, &r, err, sizeof err), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_next_checks_entries),
        cmocka_unit_test(t_add_and_format),
        cmocka_unit_test(t_detect),
        cmocka_unit_test(t_require),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
