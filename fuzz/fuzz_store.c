/* SPDX-License-Identifier: MIT */
/*
 * The store's object decoder with any bytes (store_decode, what store_get
 * runs on an object read from RAM or from the swap file).
 *
 * Input: one byte choosing the codec, then the stored object's bytes.
 * Properties:
 *  - with the object's right checksum: decoded (0) or refused (-EILSEQ),
 *    a raw (4 KiB) object decoded to itself; never a read outside the
 *    object (AddressSanitizer: the object is an allocation of its size);
 *  - with a wrong checksum: -EBADMSG and the page untouched;
 *  - the input as page contents compresses and decodes back to itself.
 */
#include <errno.h>

#include "codec.h"
#include "fuzz.h"
#include "store.h"
#include "upager.h"
#include "util.h"

static struct codec *codecs[3];
static const int codec_ids[3] = { UPG_CODEC_LZ4, UPG_CODEC_ZSTD,
				  UPG_CODEC_NONE };

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	for (int i = 0; i < 3; i++)
		if (codec_create(codec_ids[i], &codecs[i]))
			abort();
	return 0;
}

/* Decode `obj` as stored with the right checksum and with a wrong one. */
static void decode_any(struct codec *c, const uint8_t *obj, size_t len)
{
	static char page[PAGE_SIZE], canary[PAGE_SIZE];
	uint32_t csum = codec_checksum(obj, len, 0);
	int err;

	memset(page, 0xa5, sizeof(page));
	memset(canary, 0xa5, sizeof(canary));
	err = store_decode(c, obj, len, csum + 1, page);
	FUZZ_ASSERT(err == (len == 0 || len > PAGE_SIZE ? -EILSEQ : -EBADMSG));
	FUZZ_ASSERT(memcmp(page, canary, PAGE_SIZE) == 0);

	err = store_decode(c, obj, len, csum, page);
	FUZZ_ASSERT(err == 0 || err == -EILSEQ);
	if (len == PAGE_SIZE)
		FUZZ_ASSERT(err == 0 && memcmp(page, obj, PAGE_SIZE) == 0);
}

/* The input, repeated to a page, goes through the codec and back. */
static void round_trip(struct codec *c, const uint8_t *data, size_t size)
{
	static char page[PAGE_SIZE], back[PAGE_SIZE], packed[CODEC_RAW_LIMIT];
	size_t len;
	const char *obj;

	for (size_t i = 0; i < PAGE_SIZE; i++)
		page[i] = size ? (char)data[i % size] : 0;
	len = codec_compress(c, page, packed);
	FUZZ_ASSERT(len < CODEC_RAW_LIMIT);
	/* As the store puts it: raw when it does not compress. */
	obj = len ? packed : page;
	len = len ? len : PAGE_SIZE;
	FUZZ_ASSERT(store_decode(c, obj, len, codec_checksum(obj, len, 0),
				 back) == 0);
	FUZZ_ASSERT(memcmp(page, back, PAGE_SIZE) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct codec *c;
	uint8_t *obj;

	if (size < 1)
		return 0;
	c = codecs[data[0] % 3];
	/* A copy of exactly the object's size: a read past it is caught. */
	obj = malloc(size - 1 ? size - 1 : 1);
	if (!obj)
		abort();
	memcpy(obj, data + 1, size - 1);
	decode_any(c, obj, size - 1);
	free(obj);
	round_trip(c, data + 1, size - 1);
	return 0;
}
