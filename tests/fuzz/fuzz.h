/* Fuzz targets: each tests/fuzz/fuzz_<name>.c defines the libFuzzer entry
 * point and a few valid seed inputs. Built with clang's -fsanitize=fuzzer
 * (scripts/fuzz) libFuzzer drives them; everywhere else (every preset's
 * CTest, under qemu too) driver.c runs a bounded, seeded loop of mutated
 * seeds and random inputs. */
#ifndef BP_FUZZ_H
#define BP_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Writes seed number i into buf (cap bytes). Returns its length, or 0
 * when there is no seed i. */
size_t fuzz_seed(int i, uint8_t *buf, size_t cap);

#endif
