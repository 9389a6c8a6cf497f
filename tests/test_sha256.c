/* bp_sha256 against the FIPS 180-4 / NIST test vectors, fed whole and in
 * odd pieces (the block buffer's edges). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "bp.h"
#include "bp_sha256.h"

static void hex_of(const void *p, size_t len, size_t step, char hex[65])
{
    struct bp_sha256 h;
    uint8_t d[BP_SHA256_LEN];
    bp_sha256_init(&h);
    for (size_t off = 0; off < len; off += step)
        bp_sha256_update(&h, (const uint8_t *)p + off, len - off < step ? len - off : step);
    bp_sha256_final(&h, d);
    bp_sha256_hex(d, hex);
}

static void t_vectors(void **state)
{
    (void)state;
    static const struct {
        const char *in, *out;
    } v[] = {
        {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
        {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
        {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
         "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
        {"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrl"
         "m"
         "nopqrsmnopqrstnopqrstu",
         "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"},
    };
    char hex[65];
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
        for (size_t step = 1; step <= 130; step += 7) {
            hex_of(v[i].in, strlen(v[i].in), step, hex);
            assert_string_equal(hex, v[i].out);
        }
}

static void t_million_a(void **state)
{
    (void)state;
    static uint8_t a[1000000];
    memset(a, 'a', sizeof a);
    char hex[65];
    hex_of(a, sizeof a, 65537, hex);
    assert_string_equal(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(t_vectors),
        cmocka_unit_test(t_million_a),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
