/* SPDX-License-Identifier: MIT */
/*
 * Sealing with libsodium (see seal.h).  The key page is mapped apart from
 * everything else so that it can be locked and left out of core dumps; it
 * is wiped before it is unmapped.
 */
#include <errno.h>
#include <sodium.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>

#include "log.h"
#include "seal.h"
#include "util.h"

#define KEY_BYTES 32

struct seal {
	uint8_t key[KEY_BYTES];
	uint64_t id;
	bool aes;		/* AES-256-GCM, else XChaCha20-Poly1305 */
};

/* Associated data: what an object is, so that it opens nowhere else. */
struct seal_ad {
	uint64_t id, idx, ver;
};

static int fill_random(void *buf, size_t len)
{
	uint8_t *p = buf;

	while (len) {
		ssize_t n = getrandom(p, len, 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -EIO;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int seal_create(struct seal **out)
{
	struct seal *s;

	if (sodium_init() < 0)
		return -EIO;
	s = mmap(NULL, PAGE_SIZE, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (s == MAP_FAILED)
		return -ENOMEM;
	/* Never swapped, never in a core dump.  mlock may fail without
	 * CAP_IPC_LOCK and a small RLIMIT_MEMLOCK: worth a warning, not a
	 * refusal. */
	if (mlock(s, PAGE_SIZE))
		log_warn("seal: cannot lock the key page: %s",
			 strerror(errno));
	madvise(s, PAGE_SIZE, MADV_DONTDUMP);
	if (fill_random(s->key, sizeof(s->key)) ||
	    fill_random(&s->id, sizeof(s->id))) {
		seal_destroy(s);
		return -EIO;
	}
	s->aes = crypto_aead_aes256gcm_is_available();
	*out = s;
	return 0;
}

void seal_destroy(struct seal *s)
{
	if (!s)
		return;
	sodium_memzero(s, sizeof(*s));
	munlock(s, PAGE_SIZE);
	munmap(s, PAGE_SIZE);
}

const char *seal_algorithm(const struct seal *s)
{
	return s->aes ? "aes256gcm" : "xchacha20poly1305";
}

uint64_t seal_id(const struct seal *s)
{
	return s->id;
}

/* The nonce is the version, zero-padded: unique per plaintext. */
static void nonce_of(uint64_t ver, uint8_t *nonce, size_t len)
{
	memset(nonce, 0, len);
	memcpy(nonce, &ver, sizeof(ver));
}

size_t seal_encrypt(const struct seal *s, uint64_t idx, uint64_t ver,
		  const void *in, size_t len, void *out)
{
	struct seal_ad ad = { s->id, idx, ver };
	uint8_t nonce[crypto_aead_xchacha20poly1305_ietf_NPUBBYTES];
	unsigned long long clen;

	nonce_of(ver, nonce, sizeof(nonce));
	if (s->aes)
		crypto_aead_aes256gcm_encrypt(out, &clen, in, len,
				(const void *)&ad, sizeof(ad), NULL, nonce,
				s->key);
	else
		crypto_aead_xchacha20poly1305_ietf_encrypt(out, &clen, in,
				len, (const void *)&ad, sizeof(ad), NULL,
				nonce, s->key);
	return (size_t)clen;
}

int seal_decrypt(const struct seal *s, uint64_t idx, uint64_t ver,
	      const void *in, size_t len, void *out)
{
	struct seal_ad ad = { s->id, idx, ver };
	uint8_t nonce[crypto_aead_xchacha20poly1305_ietf_NPUBBYTES];
	unsigned long long plen;
	int rc;

	if (len < SEAL_TAG)
		return -EBADMSG;
	nonce_of(ver, nonce, sizeof(nonce));
	if (s->aes)
		rc = crypto_aead_aes256gcm_decrypt(out, &plen, NULL, in, len,
				(const void *)&ad, sizeof(ad), nonce, s->key);
	else
		rc = crypto_aead_xchacha20poly1305_ietf_decrypt(out, &plen,
				NULL, in, len, (const void *)&ad, sizeof(ad),
				nonce, s->key);
	return rc ? -EBADMSG : (int)plen;
}
