/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include <lz4.h>
#define ZSTD_STATIC_LINKING_ONLY
#include <zstd.h>

#include "codec.h"
#include "mem.h"
#include "upager.h"
#include "util.h"

/* zstd level 1: pages are small and the fault path decompresses; stronger
 * levels buy little on 4 KiB inputs. */
#define ZSTD_LEVEL 1
/* Decompression contexts for zstd: enough for the handler threads of a
 * small machine; more threads take turns (a decompression is a few µs). */
#define NDCTX 4

struct dctx_slot {
	pthread_mutex_t lock;
	ZSTD_DCtx *dctx;
	void *mem;
};

struct codec {
	int codec;
	void *cmem;		/* lz4 state or zstd CCtx workspace */
	size_t cmem_size;
	ZSTD_CCtx *cctx;
	size_t dmem_size;
	_Atomic unsigned next;	/* where the next decompressor starts looking */
	struct dctx_slot d[NDCTX];
};

static int zstd_setup(struct codec *c)
{
	ZSTD_compressionParameters cp = ZSTD_getCParams(ZSTD_LEVEL, PAGE_SIZE, 0);

	c->cmem_size = ZSTD_estimateCCtxSize_usingCParams(cp);
	c->cmem = mem_alloc(c->cmem_size);
	if (!c->cmem)
		return -ENOMEM;
	c->cctx = ZSTD_initStaticCCtx(c->cmem, c->cmem_size);
	if (!c->cctx)
		return -ENOMEM;
	/* Trim the frame: the store knows the size and checksums itself. */
	ZSTD_CCtx_setParameter(c->cctx, ZSTD_c_compressionLevel, ZSTD_LEVEL);
	ZSTD_CCtx_setParameter(c->cctx, ZSTD_c_contentSizeFlag, 0);
	ZSTD_CCtx_setParameter(c->cctx, ZSTD_c_dictIDFlag, 0);

	c->dmem_size = ZSTD_estimateDCtxSize();
	for (int i = 0; i < NDCTX; i++) {
		struct dctx_slot *s = &c->d[i];

		s->mem = mem_alloc(c->dmem_size);
		if (!s->mem)
			return -ENOMEM;
		s->dctx = ZSTD_initStaticDCtx(s->mem, c->dmem_size);
		if (!s->dctx)
			return -ENOMEM;
	}
	return 0;
}

int codec_create(int codec, struct codec **out)
{
	struct codec *c;
	int err = 0;

	if (codec != UPG_CODEC_LZ4 && codec != UPG_CODEC_ZSTD &&
	    codec != UPG_CODEC_NONE)
		return -EINVAL;
	c = mem_alloc(sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->codec = codec;
	for (int i = 0; i < NDCTX; i++)
		pthread_mutex_init(&c->d[i].lock, NULL);
	if (codec == UPG_CODEC_LZ4) {
		c->cmem_size = (size_t)LZ4_sizeofState();
		c->cmem = mem_alloc(c->cmem_size);
		if (!c->cmem)
			err = -ENOMEM;
	} else if (codec == UPG_CODEC_ZSTD) {
		err = zstd_setup(c);
	}
	if (err) {
		codec_destroy(c);
		return err;
	}
	*out = c;
	return 0;
}

void codec_destroy(struct codec *c)
{
	if (!c)
		return;
	for (int i = 0; i < NDCTX; i++) {
		mem_free(c->d[i].mem, c->dmem_size);
		pthread_mutex_destroy(&c->d[i].lock);
	}
	mem_free(c->cmem, c->cmem_size);
	mem_free(c, sizeof(*c));
}

size_t codec_compress(struct codec *c, const void *page, void *dst)
{
	size_t n;
	int r;

	switch (c->codec) {
	case UPG_CODEC_LZ4:
		/* A capacity below the page makes lz4 give up (0) as soon as
		 * the output would not fit: incompressible pages cost less. */
		r = LZ4_compress_fast_extState(c->cmem, page, dst,
					       (int)PAGE_SIZE,
					       CODEC_RAW_LIMIT - 1, 1);
		return r > 0 ? (size_t)r : 0;
	case UPG_CODEC_ZSTD:
		n = ZSTD_compress2(c->cctx, dst, CODEC_RAW_LIMIT - 1, page,
				   PAGE_SIZE);
		return ZSTD_isError(n) ? 0 : n;
	default:
		return 0;
	}
}

/* Take a zstd decompression context: the first free one, else wait for
 * one (round robin so that waiters spread). */
static struct dctx_slot *dctx_get(struct codec *c)
{
	unsigned start = atomic_fetch_add_explicit(&c->next, 1,
						   memory_order_relaxed);

	for (unsigned i = 0; i < NDCTX; i++) {
		struct dctx_slot *s = &c->d[(start + i) % NDCTX];

		if (pthread_mutex_trylock(&s->lock) == 0)
			return s;
	}
	pthread_mutex_lock(&c->d[start % NDCTX].lock);
	return &c->d[start % NDCTX];
}

int codec_decompress(struct codec *c, const void *src, size_t len,
		     void *page)
{
	struct dctx_slot *s;
	size_t n;
	int r;

	switch (c->codec) {
	case UPG_CODEC_LZ4:
		r = LZ4_decompress_safe(src, page, (int)len, (int)PAGE_SIZE);
		return r == (int)PAGE_SIZE ? 0 : -EBADMSG;
	case UPG_CODEC_ZSTD:
		s = dctx_get(c);
		n = ZSTD_decompressDCtx(s->dctx, page, PAGE_SIZE, src, len);
		pthread_mutex_unlock(&s->lock);
		return n == PAGE_SIZE ? 0 : -EBADMSG;
	default:
		return -EBADMSG;	/* "none" stores every page raw */
	}
}

/* xxHash32 (Yann Collet's algorithm, BSD-licensed reference). */
#define P1 0x9E3779B1u
#define P2 0x85EBCA77u
#define P3 0xC2B2AE3Du
#define P4 0x27D4EB2Fu
#define P5 0x165667B1u

static inline uint32_t rotl32(uint32_t x, int r)
{
	return (x << r) | (x >> (32 - r));
}

static inline uint32_t read32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, sizeof(v));
	return v;
}

static inline uint32_t round32(uint32_t acc, uint32_t in)
{
	return rotl32(acc + in * P2, 13) * P1;
}

uint32_t codec_checksum(const void *p, size_t len, uint32_t seed)
{
	const uint8_t *b = p, *end = b + len;
	uint32_t h;

	if (len >= 16) {
		uint32_t v1 = seed + P1 + P2, v2 = seed + P2, v3 = seed,
			 v4 = seed - P1;

		for (; b + 16 <= end; b += 16) {
			v1 = round32(v1, read32(b));
			v2 = round32(v2, read32(b + 4));
			v3 = round32(v3, read32(b + 8));
			v4 = round32(v4, read32(b + 12));
		}
		h = rotl32(v1, 1) + rotl32(v2, 7) + rotl32(v3, 12) +
		    rotl32(v4, 18);
	} else {
		h = seed + P5;
	}
	h += (uint32_t)len;
	for (; b + 4 <= end; b += 4)
		h = rotl32(h + read32(b) * P3, 17) * P4;
	for (; b < end; b++)
		h = rotl32(h + *b * P5, 11) * P1;
	h ^= h >> 15;
	h *= P2;
	h ^= h >> 13;
	h *= P3;
	h ^= h >> 16;
	return h;
}
