/*
 * SHA-256 (FIPS 180-4), for the content hash of base files: the key of a
 * board's cache. Small and dependency-free, since the host build does not
 * link libsodium. Pure: no I/O, no allocation.
 */
#ifndef BP_SHA256_H
#define BP_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define BP_SHA256_LEN 32

struct bp_sha256 {
    uint32_t h[8];
    uint64_t bytes;
    uint8_t buf[64];
    size_t fill;
};

/* Starts a hash. */
void bp_sha256_init(struct bp_sha256 *s);
/* Adds len bytes. */
void bp_sha256_update(struct bp_sha256 *s, const void *p, size_t len);
/* Writes the digest into out and leaves s spent (init again to reuse). */
void bp_sha256_final(struct bp_sha256 *s, uint8_t out[BP_SHA256_LEN]);
/* Writes the 64 lower-case hex digits of a digest and a NUL into hex. */
void bp_sha256_hex(const uint8_t d[BP_SHA256_LEN], char hex[2 * BP_SHA256_LEN + 1]);

#endif
