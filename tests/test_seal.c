/* SPDX-License-Identifier: MIT */
/*
 * Sealing (src/seal.h): what is sealed opens only as what it was.
 *
 * Run with --bench for the cost of sealing a page next to compressing it.
 */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "codec.h"
#include "seal.h"
#include "upager.h"
#include "util.h"

static void fill(char *p, unsigned seed)
{
	/* Half words, half random bytes: compresses about 2x. */
	for (size_t i = 0; i < PAGE_SIZE; i++)
		p[i] = i % 2 ? (char)('a' + (i / 7) % 5) :
			       (char)((seed + i) * 2654435761u >> 13);
}

START_TEST(test_round_trip_and_binding)
{
	struct seal *s, *other;
	static char page[PAGE_SIZE], sealed[PAGE_SIZE + SEAL_TAG],
		out[PAGE_SIZE];
	size_t len;

	ck_assert_int_eq(seal_create(&s), 0);
	ck_assert_int_eq(seal_create(&other), 0);
	ck_assert_uint_ne(seal_id(s), seal_id(other));
	fill(page, 1);
	len = seal_encrypt(s, 5, 9, page, PAGE_SIZE, sealed);
	ck_assert_uint_eq(len, PAGE_SIZE + SEAL_TAG);
	ck_assert(memcmp(sealed, page, PAGE_SIZE) != 0);
	ck_assert_int_eq(seal_decrypt(s, 5, 9, sealed, len, out), PAGE_SIZE);
	ck_assert(memcmp(out, page, PAGE_SIZE) == 0);
	/* Another index, another version, another runtime: none opens. */
	ck_assert_int_eq(seal_decrypt(s, 6, 9, sealed, len, out), -EBADMSG);
	ck_assert_int_eq(seal_decrypt(s, 5, 8, sealed, len, out), -EBADMSG);
	ck_assert_int_eq(seal_decrypt(other, 5, 9, sealed, len, out),
			 -EBADMSG);
	/* One bit flipped anywhere, the tag included. */
	for (size_t i = 0; i < len; i += 509) {
		sealed[i] ^= 1;
		ck_assert_int_eq(seal_decrypt(s, 5, 9, sealed, len, out),
				 -EBADMSG);
		sealed[i] ^= 1;
	}
	ck_assert_int_eq(seal_decrypt(s, 5, 9, sealed, SEAL_TAG - 1, out),
			 -EBADMSG);
	seal_destroy(s);
	seal_destroy(other);
}
END_TEST

static double us_since(const struct timespec *t0, int n)
{
	struct timespec t1;

	clock_gettime(CLOCK_MONOTONIC, &t1);
	return ((double)(t1.tv_sec - t0->tv_sec) * 1e9 +
		(double)(t1.tv_nsec - t0->tv_nsec)) / 1e3 / n;
}

/* Per page: lz4 compression, sealing its output, sealing a raw page. */
static int bench(void)
{
	static char page[PAGE_SIZE], z[CODEC_RAW_LIMIT],
		sealed[PAGE_SIZE + SEAL_TAG];
	struct codec *c;
	struct seal *s;
	struct timespec t0;
	size_t zlen = 0;
	const int n = 20000;

	if (codec_create(UPG_CODEC_LZ4, &c) || seal_create(&s))
		return 1;
	fill(page, 3);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int i = 0; i < n; i++) {
		page[i % PAGE_SIZE]++;
		zlen = codec_compress(c, page, z);
	}
	printf("lz4 compress:          %.2f us/page (%zu bytes out)\n",
	       us_since(&t0, n), zlen);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int i = 0; i < n; i++)
		seal_encrypt(s, 1, (uint64_t)i, z, zlen, sealed);
	printf("seal compressed page:  %.2f us/page (%s)\n", us_since(&t0, n),
	       seal_algorithm(s));
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int i = 0; i < n; i++)
		seal_encrypt(s, 1, (uint64_t)i, page, PAGE_SIZE, sealed);
	printf("seal raw 4 KiB page:   %.2f us/page\n", us_since(&t0, n));
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int i = 0; i < n; i++)
		if (seal_decrypt(s, 1, (uint64_t)(n - 1), sealed,
				 PAGE_SIZE + SEAL_TAG, page) < 0)
			return 1;
	printf("open raw 4 KiB page:   %.2f us/page\n", us_since(&t0, n));
	seal_destroy(s);
	codec_destroy(c);
	return 0;
}

int main(int argc, char **argv)
{
	Suite *s = suite_create("seal");
	TCase *tc = tcase_create("seal");
	SRunner *sr;
	int failed;

	if (argc > 1 && !strcmp(argv[1], "--bench"))
		return bench();
	tcase_add_test(tc, test_round_trip_and_binding);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
