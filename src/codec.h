/* SPDX-License-Identifier: MIT */
/*
 * Page codecs of the store (lz4, zstd, none) and the object checksum.
 *
 * Contexts never call malloc: the lz4 state and the zstd workspaces come
 * from mem_alloc.  Compression has one context, used by one thread at a
 * time (the store calls it under its put lock).  Decompression is safe from
 * any number of threads: lz4 needs no state, zstd takes one of a small pool
 * of contexts, each behind its own mutex.
 */
#ifndef UPAGER_CODEC_H
#define UPAGER_CODEC_H

#include <stddef.h>
#include <stdint.h>

/* A page whose compressed form is not below this is stored raw. */
#define CODEC_RAW_LIMIT (3 * 4096 / 4)

struct codec;

/* -EINVAL unknown codec, -ENOMEM. */
int codec_create(int codec, struct codec **out);
void codec_destroy(struct codec *c);

/* Compress the 4 KiB `page` into `dst` (CODEC_RAW_LIMIT bytes).  Returns the
 * compressed length, or 0 if the page does not compress below
 * CODEC_RAW_LIMIT (always 0 for the codec "none").  One caller at a time. */
size_t codec_compress(struct codec *c, const void *page, void *dst);

/* Decompress `len` bytes into the 4 KiB `page`.  Any thread.  -EBADMSG if
 * the data does not decode to exactly one page. */
int codec_decompress(struct codec *c, const void *src, size_t len,
		     void *page);

/* xxHash32 of `len` bytes. */
uint32_t codec_checksum(const void *p, size_t len, uint32_t seed);

#endif
