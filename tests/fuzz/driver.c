/* A standalone driver for the fuzz targets where libFuzzer is not there
 * (gcc, zig cross builds under qemu): a seeded, bounded loop of mutated
 * seeds and random inputs, each handed to LLVMFuzzerTestOneInput; crashes
 * and sanitizer reports fail the test. Files named on the command line are
 * run first (a crash input to replay).
 *   fuzz_x [RUNS [SEED]] [FILE...]   (RUNS default 20000) */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"

#define MAX_INPUT 8192

static uint64_t rng_state;

static uint32_t rnd(void)
{
    /* xorshift64*: reproducible on every target from the printed seed */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (uint32_t)((rng_state * 0x2545F4914F6CDD1Dull) >> 32);
}

static size_t mutate(uint8_t *b, size_t len, size_t cap)
{
    int n = 1 + (int)(rnd() % 4);
    for (int k = 0; k < n; k++) {
        switch (rnd() % 6) {
        case 0: /* flip a bit */
            if (len)
                b[rnd() % len] ^= (uint8_t)(1u << (rnd() % 8));
            break;
        case 1: /* an interesting byte */
            if (len) {
                static const uint8_t v[] = {0, 1, 0x7f, 0x80, 0xff, 2, 40, 41};
                b[rnd() % len] = v[rnd() % sizeof v];
            }
            break;
        case 2: /* cut */
            if (len)
                len = rnd() % len;
            break;
        case 3: /* grow with random bytes */
            for (int g = (int)(rnd() % 16); g > 0 && len < cap; g--)
                b[len++] = (uint8_t)rnd();
            break;
        case 4: /* a big-endian u32 set to an edge value */
            if (len >= 4) {
                static const uint32_t e[] = {0, 1, 0xffffffffu, 0x7fffffffu, 0x10000, 13, 12};
                size_t at = rnd() % (len - 3);
                uint32_t x = e[rnd() % (sizeof e / sizeof e[0])];
                b[at] = (uint8_t)(x >> 24);
                b[at + 1] = (uint8_t)(x >> 16);
                b[at + 2] = (uint8_t)(x >> 8);
                b[at + 3] = (uint8_t)x;
            }
            break;
        default: /* duplicate a slice */
            if (len && len < cap) {
                size_t from = rnd() % len, n2 = 1 + rnd() % (len - from);
                if (n2 > cap - len)
                    n2 = cap - len;
                memmove(b + len, b + from, n2);
                len += n2;
            }
            break;
        }
    }
    return len;
}

static int run_file(const char *path, uint8_t *buf)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "fuzz: cannot read %s: %s\n", path, strerror(errno));
        return 1;
    }
    size_t n = fread(buf, 1, MAX_INPUT, f);
    fclose(f);
    LLVMFuzzerTestOneInput(buf, n);
    return 0;
}

int main(int argc, char **argv)
{
    static uint8_t buf[MAX_INPUT], seed[MAX_INPUT];
    long runs = 20000;
    unsigned long long s = 0x5eed;
    int a = 1;
    if (a < argc && argv[a][0] >= '0' && argv[a][0] <= '9') {
        char *end;
        runs = strtol(argv[a], &end, 10);
        if (*end || runs < 0) {
            fprintf(stderr, "fuzz: bad run count '%s'\n", argv[a]);
            return 2;
        }
        a++;
        if (a < argc && argv[a][0] >= '0' && argv[a][0] <= '9') {
            s = strtoull(argv[a], &end, 0);
            if (*end) {
                fprintf(stderr, "fuzz: bad seed '%s'\n", argv[a]);
                return 2;
            }
            a++;
        }
    }
    for (; a < argc; a++)
        if (run_file(argv[a], buf))
            return 1;
    rng_state = s ? s : 1;
    int nseeds = 0;
    while (nseeds < 1000 && fuzz_seed(nseeds, seed, sizeof seed))
        nseeds++;
    for (int i = 0; i < nseeds; i++) {
        size_t n = fuzz_seed(i, buf, sizeof buf);
        LLVMFuzzerTestOneInput(buf, n); /* each seed as it is */
    }
    for (long r = 0; r < runs; r++) {
        size_t n;
        if (nseeds && rnd() % 4) {
            n = fuzz_seed((int)(rnd() % (uint32_t)nseeds), buf, sizeof buf);
            n = mutate(buf, n, sizeof buf);
        } else {
            n = rnd() % 512;
            for (size_t k = 0; k < n; k++)
                buf[k] = (uint8_t)rnd();
        }
        LLVMFuzzerTestOneInput(buf, n);
    }
    printf("fuzz: %d seeds, %ld runs (seed 0x%llx): no crash\n", nseeds, runs, s);
    return 0;
}
