/* libFuzzer builds only: writes the target's seeds (fuzz_seed) into the
 * directory named by BP_FUZZ_SEED_DIR before libFuzzer reads its corpus
 * there, so long runs start from valid inputs as the CTest driver does. */
#include <stdio.h>
#include <stdlib.h>

#include "fuzz.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *dir = getenv("BP_FUZZ_SEED_DIR");
    static uint8_t buf[8192];
    for (int i = 0; dir && *dir && i < 1000; i++) {
        size_t n = fuzz_seed(i, buf, sizeof buf);
        if (!n)
            break;
        char path[4096];
        snprintf(path, sizeof path, "%s/seed-%d", dir, i);
        FILE *f = fopen(path, "wb");
        if (!f || fwrite(buf, 1, n, f) != n || fclose(f) != 0) {
            fprintf(stderr, "fuzz: cannot write %s\n", path);
            exit(1);
        }
    }
    return 0;
}
