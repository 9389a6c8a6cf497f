/* CURVE security: key pairs in czmq's zcert text format, the host's
 * allowlist of boards' public keys, and a ZAP handler (the guide's
 * Ironhouse pattern) that admits only those keys. */
#ifndef BP_CURVE_H
#define BP_CURVE_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#define BP_Z85_KEY 40 /* a 32-byte CURVE key in Z85 */

/* One certificate: the public key, and the secret key when loaded from a
 * secret certificate. Keys are NUL-terminated Z85 text. */
struct bp_cert {
    char pub[BP_Z85_KEY + 1];
    char sec[BP_Z85_KEY + 1]; /* "" for a public certificate */
};

/* Whether this libzmq can do CURVE (zmq_has("curve")). */
int bp_curve_available(void);

/* bp_keygen() (bp.h) writes key pairs: NAME.key (public, 0644) and
 * NAME.key_secret (0600); on failure nothing is left behind. */

/* Reads a zcert file into *c. want_secret: the file must hold a secret key
 * and must not be readable by group or others. The file is read up to
 * 64 KiB; keys are checked to decode. Returns BP_OK or BP_EUSAGE/BP_EIO
 * with a one-line reason in err. */
int bp_cert_load(const char *path, int want_secret, struct bp_cert *c, char *err, size_t errlen);

/* A set of allowed public keys (32 bytes each), loaded from a directory. */
struct bp_allow;

/* Loads every "*.key" file of dir (secret certificates and other files
 * are skipped; at most 4096 keys). Returns NULL with a reason in err when
 * the directory cannot be read; a directory with no keys is valid (it
 * admits no board). *bad (may be NULL) gets the number of files skipped
 * as unreadable or malformed. Free with bp_allow_destroy(). */
struct bp_allow *bp_allow_load(const char *dir, int *bad, char *err, size_t errlen);
void bp_allow_destroy(struct bp_allow **a);
size_t bp_allow_count(const struct bp_allow *a);

/* Whether the 32-byte key is in the set. */
int bp_allow_has(const struct bp_allow *a, const uint8_t key[32]);

/* Fills buf (>= 13 bytes) with a short, printable fingerprint of a key for
 * logs: the first 12 Z85 characters. */
void bp_key_fingerprint(const uint8_t key[32], char *buf, size_t len);

/* The ZAP handler: a thread answering libzmq's authentication requests for
 * every socket of ctx that is a CURVE server. It admits keys listed in
 * allow_dir plus self (the host's own public key, Z85; may be NULL), and
 * sets each admitted peer's User-Id to its Z85 public key. A refused peer
 * is counted and logged once per key and once per address. When *reload
 * (may be NULL) becomes non-zero the thread resets it and reloads the
 * directory; connected peers stay, a removed key is refused at its next
 * connection. Returns NULL with a reason in err (e.g. another handler
 * serves this context already). */
struct bp_zap;
struct bp_zap *bp_zap_new(void *ctx, const char *allow_dir, const char *self,
                          volatile sig_atomic_t *reload, char *err, size_t errlen);

/* Stops the thread and frees everything; sets *z to NULL. */
void bp_zap_destroy(struct bp_zap **z);

/* Peers refused so far, and how many keys the allowlist holds. */
int64_t bp_zap_refused(struct bp_zap *z);
size_t bp_zap_allowed(struct bp_zap *z);

#endif
