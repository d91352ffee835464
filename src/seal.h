/* SPDX-License-Identifier: MIT */
/*
 * Sealing: authenticated encryption of every object that leaves the
 * process (the remote tier always, the swap file with UPAGER_ENCRYPT=1).
 *
 * AES-256-GCM where the CPU has AES-NI and PCLMUL, else
 * XChaCha20-Poly1305 (libsodium).  One key per seal (per store, so per
 * runtime; a forked child's runtime makes its own), from getrandom, in a
 * page that is locked (never swapped) and excluded from core dumps, never
 * written anywhere.  The associated data binds the seal's random id (the
 * runtime), the object's key index and its version, so a value of another
 * index, an older version of the same index, another runtime's value or a
 * tampered one fails to open.  The nonce is the version: callers give each
 * distinct plaintext a distinct version (the store's put counter).
 *
 * Every function may be called from any thread at once: the key is
 * read-only after seal_create.
 */
#ifndef UPAGER_SEAL_H
#define UPAGER_SEAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SEAL_TAG 16		/* bytes a sealed object adds */
#define SEAL_ID 8		/* bytes of the random runtime id */

struct seal;

/* -ENOMEM, -EIO (getrandom or libsodium failed). */
int seal_create(struct seal **out);
void seal_destroy(struct seal *s);
/* "aes256gcm" or "xchacha20poly1305". */
const char *seal_algorithm(const struct seal *s);
/* The random id, also the prefix of the remote keys. */
uint64_t seal_id(const struct seal *s);

/* Encrypt in[0..len) into out[0..len + SEAL_TAG).  Returns len + SEAL_TAG. */
size_t seal_encrypt(const struct seal *s, uint64_t idx, uint64_t ver,
		  const void *in, size_t len, void *out);
/* Decrypt and check in[0..len) into out[0..len - SEAL_TAG).  Returns the
 * plaintext length, or -EBADMSG when it does not open. */
int seal_decrypt(const struct seal *s, uint64_t idx, uint64_t ver,
	      const void *in, size_t len, void *out);

#endif
