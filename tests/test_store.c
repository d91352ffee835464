/* SPDX-License-Identifier: MIT */
/*
 * Tests of the compressed page store (src/store.h).
 *
 * Run with --bench for a throughput figure instead of the tests.
 * Exits 77 (skip) when io_uring or O_TMPFILE is not available here.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store.h"
#include "upager.h"
#include "util.h"

#define MiB ((uint64_t)1 << 20)
/* What the RAM tier may hold beyond ram_limit: its two staging segments. */
#define RAM_SLACK (256 * 1024)

static char swap_dir[64];

enum kind { K_RANDOM, K_TEXT, K_MIXED, K_ZERO, K_NKINDS };

static uint64_t rng(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* Incompressible bytes. */
static void fill_random(uint8_t *p, uint64_t seed)
{
	uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;

	for (size_t i = 0; i < PAGE_SIZE; i += 8) {
		uint64_t v = rng(&s);

		memcpy(p + i, &v, 8);
	}
}

/* Words of a small vocabulary: compresses about 2-3x. */
static void fill_text(uint8_t *p, uint64_t seed)
{
	static const char *words[] = {
		"page", "fault", "store", "segment", "compress", "the", "of",
		"userfaultfd", "handler", "evict", "ring", "block", "swap",
		"memory", "latency", "thread", "a", "and", "is", "zstd",
	};
	uint64_t s = seed * 0x9E3779B97F4A7C15ull + 7;
	size_t i = 0;

	while (i < PAGE_SIZE) {
		const char *w = words[rng(&s) % ARRAY_SIZE(words)];

		for (; *w && i < PAGE_SIZE; w++)
			p[i++] = (uint8_t)*w;
		if (i < PAGE_SIZE)
			p[i++] = rng(&s) % 9 ? ' ' : '\n';
	}
}

/* A heap-like page: small structs of counters, pointers and zeros. */
static void fill_mixed(uint8_t *p, uint64_t seed)
{
	uint64_t s = seed * 0x9E3779B97F4A7C15ull + 3;

	memset(p, 0, PAGE_SIZE);
	for (size_t i = 0; i < PAGE_SIZE; i += 32) {
		uint64_t v[3] = { 0x7f0000000000ull + (rng(&s) & 0xfff0),
				  rng(&s) % 100, i };

		memcpy(p + i, v, sizeof(v));
	}
}

static void fill_page(uint8_t *p, enum kind k, uint64_t seed)
{
	switch (k) {
	case K_RANDOM:
		fill_random(p, seed);
		break;
	case K_TEXT:
		fill_text(p, seed);
		break;
	case K_MIXED:
		fill_mixed(p, seed);
		break;
	default:
		memset(p, 0, PAGE_SIZE);
		return;
	}
	memcpy(p, &seed, sizeof(seed));	/* every page distinct */
}

static struct store *make_store(int codec, uint64_t ram_limit,
				uint64_t swap_size)
{
	struct store_config cfg = {
		.codec = codec,
		.ram_limit = ram_limit,
		.swap_dir = swap_dir,
		.swap_size = swap_size,
	};
	struct store *st = NULL;
	int err = store_create(&cfg, &st);

	ck_assert_msg(err == 0, "store_create: %d", err);
	return st;
}

static uint64_t put_ok(struct store *st, enum kind k, uint64_t seed)
{
	uint8_t page[PAGE_SIZE];
	uint64_t h = 0;
	int err;

	fill_page(page, k, seed);
	err = store_put(st, page, &h);
	ck_assert_msg(err == 0, "store_put: %d", err);
	ck_assert(h != 0 && h <= STORE_HANDLE_MAX);
	return h;
}

static struct store_stats stats(struct store *st);

/* Read a handle back and compare with the page it was made from.
 * want_disk 1: it is on disk, read now or in a segment a reader read
 * whole for an earlier get (from_disk says whether a read was made). */
static void check_page(struct store *st, uint64_t h, enum kind k,
		       uint64_t seed, int want_disk)
{
	uint8_t want[PAGE_SIZE], got[PAGE_SIZE];
	uint64_t reread = stats(st).reads_reread;
	bool from_disk;
	int err;

	fill_page(want, k, seed);
	err = store_get(st, h, got, &from_disk);
	if (want_disk == 1 && !from_disk) {
		ck_assert_uint_eq(stats(st).reads_reread, reread + 1);
		from_disk = true;
	}
	ck_assert_msg(err == 0, "store_get(%#llx): %d",
		      (unsigned long long)h, err);
	ck_assert_msg(memcmp(want, got, PAGE_SIZE) == 0,
		      "page of seed %llu differs", (unsigned long long)seed);
	if (want_disk >= 0)
		ck_assert_int_eq(from_disk, want_disk);
}

static struct store_stats stats(struct store *st)
{
	struct store_stats s;

	store_get_stats(st, &s);
	return s;
}

/* ---- zero pages ---------------------------------------------------------- */

START_TEST(test_zero_detect)
{
	static uint8_t page[PAGE_SIZE] __attribute__((aligned(4096)));
	size_t where[] = { 0, 1, 7, 8, 63, 64, 2047, 4088, 4095 };

	ck_assert(store_page_is_zero(page));
	for (size_t i = 0; i < ARRAY_SIZE(where); i++) {
		page[where[i]] = 0x01;
		ck_assert_msg(!store_page_is_zero(page), "byte %zu", where[i]);
		page[where[i]] = 0;
	}
	page[4095] = 0x80;
	ck_assert(!store_page_is_zero(page));
}
END_TEST

/* ---- round trips ------------------------------------------------------- */

#define RT_PAGES 200

/* Each codec: every kind of page byte-exact from RAM, then from disk;
 * incompressible ones stored raw. */
START_TEST(test_roundtrip)
{
	int codec = _i;
	struct store *st = make_store(codec, 64 * MiB, 64 * MiB);
	uint64_t h[K_NKINDS][RT_PAGES];
	struct store_stats s;

	for (int k = 0; k < K_NKINDS; k++)
		for (int i = 0; i < RT_PAGES; i++)
			h[k][i] = put_ok(st, k, (uint64_t)(k * 1000 + i));
	for (int k = 0; k < K_NKINDS; k++)
		for (int i = 0; i < RT_PAGES; i++)
			check_page(st, h[k][i], k, (uint64_t)(k * 1000 + i),
				   0);
	s = stats(st);
	ck_assert_uint_eq(s.objects, K_NKINDS * RT_PAGES);
	ck_assert_uint_eq(s.bytes_in, K_NKINDS * RT_PAGES * PAGE_SIZE);
	if (codec == UPG_CODEC_NONE) {
		ck_assert_uint_eq(s.raw_pages, K_NKINDS * RT_PAGES);
		ck_assert_uint_eq(s.bytes_stored, s.bytes_in);
	} else {
		/* Exactly the random pages are raw; the others shrink. */
		ck_assert_uint_eq(s.raw_pages, RT_PAGES);
		ck_assert_uint_lt(s.bytes_stored,
				  RT_PAGES * PAGE_SIZE + s.bytes_in / 2);
	}
	ck_assert_uint_eq(s.ram_bytes, s.bytes_stored);
	ck_assert_uint_eq(s.reads_ram, K_NKINDS * RT_PAGES);

	ck_assert_int_eq(store_flush(st), 0);
	s = stats(st);
	ck_assert_uint_eq(s.ram_bytes, 0);
	ck_assert_uint_eq(s.disk_bytes, s.bytes_stored);
	ck_assert_uint_gt(s.file_bytes, 0);
	for (int k = 0; k < K_NKINDS; k++)
		for (int i = 0; i < RT_PAGES; i++)
			check_page(st, h[k][i], k, (uint64_t)(k * 1000 + i),
				   1);
	/* Read in the order they were put: each segment read once, whole,
	 * and its other pages taken from the reader that read it. */
	s = stats(st);
	ck_assert_uint_eq(s.reads_disk + s.reads_reread, K_NKINDS * RT_PAGES);
	ck_assert_uint_le(s.reads_disk, s.file_bytes / (128 * 1024) + 1);
	store_destroy(st);
}
END_TEST

/* Many pages through a small RAM tier: they spill and come back exact. */
START_TEST(test_spill)
{
	const int n = 20000;
	struct store *st = make_store(UPG_CODEC_LZ4, 1 * MiB, 256 * MiB);
	uint64_t *h = calloc(n, sizeof(*h));
	struct store_stats s;

	for (int i = 0; i < n; i++) {
		h[i] = put_ok(st, i % 3, (uint64_t)i);
		if (i % 1000 == 0)
			ck_assert_uint_le(stats(st).ram_bytes,
					  1 * MiB + RAM_SLACK);
	}
	for (int i = 0; i < n; i++)
		check_page(st, h[i], i % 3, (uint64_t)i, -1);
	s = stats(st);
	ck_assert_uint_gt(s.reads_disk + s.reads_reread, n / 2);
	ck_assert_uint_gt(s.disk_bytes, 0);
	ck_assert_uint_le(s.ram_bytes, 1 * MiB + RAM_SLACK);
	ck_assert_uint_eq(s.ram_bytes + s.disk_bytes, s.bytes_stored);
	ck_assert_uint_le(s.file_bytes, 256 * MiB);
	free(h);
	store_destroy(st);
}
END_TEST

/* ram_limit 0: nothing stays in RAM beyond the staging segments. */
START_TEST(test_no_ram_tier)
{
	const int n = 2000;
	struct store *st = make_store(UPG_CODEC_ZSTD, 0, 64 * MiB);
	uint64_t h[2000];

	for (int i = 0; i < n; i++)
		h[i] = put_ok(st, K_TEXT, (uint64_t)i);
	ck_assert_uint_le(stats(st).ram_bytes, RAM_SLACK);
	for (int i = 0; i < n / 2; i++)
		check_page(st, h[i], K_TEXT, (uint64_t)i, 1);
	for (int i = 0; i < n; i++)
		check_page(st, h[i], K_TEXT, (uint64_t)i, -1);
	store_destroy(st);
}
END_TEST

/* ---- references ---------------------------------------------------------- */

START_TEST(test_refcount)
{
	struct store *st = make_store(UPG_CODEC_LZ4, 4 * MiB, 4 * MiB);
	uint8_t page[PAGE_SIZE];
	uint64_t h = put_ok(st, K_TEXT, 1), h2;

	store_ref(st, h);
	store_ref(st, h);
	ck_assert_uint_eq(stats(st).objects, 1);
	store_free(st, h);
	check_page(st, h, K_TEXT, 1, 0);
	store_free(st, h);
	check_page(st, h, K_TEXT, 1, 0);
	store_free(st, h);
	ck_assert_int_eq(store_get(st, h, page, NULL), -EINVAL);
	ck_assert_uint_eq(stats(st).objects, 0);
	ck_assert_uint_eq(stats(st).ram_bytes, 0);

	/* The index is reused, but the old handle stays invalid. */
	h2 = put_ok(st, K_MIXED, 2);
	ck_assert(h2 != h);
	ck_assert_int_eq(store_get(st, h, page, NULL), -EINVAL);
	store_free(st, h);	/* ignored (logged) */
	check_page(st, h2, K_MIXED, 2, 0);
	ck_assert_int_eq(store_get(st, 0, page, NULL), -EINVAL);
	ck_assert_int_eq(store_get(st, STORE_HANDLE_MAX + 1, page, NULL),
			 -EINVAL);
	ck_assert_int_eq(store_get(st, h2 + 1000, page, NULL), -EINVAL);

	/* A shared page survives its move to disk. */
	store_ref(st, h2);
	ck_assert_int_eq(store_flush(st), 0);
	store_free(st, h2);
	check_page(st, h2, K_MIXED, 2, 1);
	store_free(st, h2);
	ck_assert_uint_eq(stats(st).disk_bytes, 0);
	store_destroy(st);
}
END_TEST

/* ---- copies -------------------------------------------------------------- */

/* The owners of copies: slot i names copy i's handle until it lets go. */
#define NCOPIES 1500
#define REFUSER 7	/* this owner never lets go */
#define NOTHER 5000	/* ordinary pages put after the copies */

static _Atomic uint64_t copy_slot[NCOPIES];
static atomic_int drops_asked;

static bool drop_copy(void *owner, uint64_t handle)
{
	_Atomic uint64_t *slot = owner;
	uint64_t want = handle;

	atomic_fetch_add(&drops_asked, 1);
	if (slot == &copy_slot[REFUSER])
		return false;
	return atomic_compare_exchange_strong(slot, &want, 0);
}

static struct store *make_copy_store(uint64_t ram_limit)
{
	struct store_config cfg = {
		.codec = UPG_CODEC_LZ4,
		.ram_limit = ram_limit,
		.swap_dir = swap_dir,
		.swap_size = 64 * MiB,
		.drop = drop_copy,
	};
	struct store *st = NULL;

	ck_assert_int_eq(store_create(&cfg, &st), 0);
	return st;
}

/*
 * Copies stay in the RAM tier while it has room and are dropped, with
 * their owner's consent, when it overflows: never written to the swap
 * file, never read back as another page.  An owner that refuses, and a
 * copy shared with store_ref, keep theirs readable (on disk if need be).
 */
START_TEST(test_copies)
{
	struct store *st = make_copy_store(4 * MiB), *plain;
	uint8_t page[PAGE_SIZE];
	uint64_t h[NCOPIES], other[NOTHER], dropped = 0;
	struct store_stats s;

	/* What a copy must be: compressible, in a store that can drop it. */
	fill_page(page, K_RANDOM, 1);
	ck_assert_int_eq(store_put_copy(st, page, &copy_slot[0], &h[0]),
			 -E2BIG);
	plain = make_store(UPG_CODEC_LZ4, 1 * MiB, 64 * MiB);
	fill_page(page, K_MIXED, 1);
	ck_assert_int_eq(store_put_copy(plain, page, &copy_slot[0], &h[0]),
			 -EOPNOTSUPP);
	store_destroy(plain);
	plain = make_copy_store(0);
	ck_assert_int_eq(store_put_copy(plain, page, &copy_slot[0], &h[0]),
			 -EOPNOTSUPP);
	store_destroy(plain);
	ck_assert_uint_eq(stats(st).objects, 0);

	for (int i = 0; i < NCOPIES; i++) {
		fill_page(page, K_MIXED, (uint64_t)i);
		ck_assert_int_eq(store_put_copy(st, page, &copy_slot[i], &h[i]),
				 0);
		atomic_store(&copy_slot[i], h[i]);
	}
	ck_assert_uint_eq(stats(st).copies, NCOPIES);
	ck_assert_int_eq(atomic_load(&drops_asked), 0);
	store_ref(st, h[9]);		/* shared: a keeper now */
	store_free(st, h[11]);		/* its owner let go first */
	atomic_store(&copy_slot[11], 0);
	/* Ordinary pages push the oldest segments out of the RAM tier. */
	for (int i = 0; i < NOTHER; i++)
		other[i] = put_ok(st, K_MIXED, 100000 + (uint64_t)i);
	s = stats(st);
	ck_assert_int_gt(atomic_load(&drops_asked), 0);
	ck_assert_uint_le(s.ram_bytes, 4 * MiB + RAM_SLACK);
	for (int i = 0; i < NCOPIES; i++) {
		if (atomic_load(&copy_slot[i]) == 0 && i != 11) {
			ck_assert_int_eq(store_get(st, h[i], page, NULL),
					 -EINVAL);
			dropped++;
		} else if (i != 11) {
			check_page(st, h[i], K_MIXED, (uint64_t)i, -1);
		}
	}
	ck_assert_uint_eq(s.dropped, dropped);
	ck_assert_uint_gt(dropped, NCOPIES / 2);
	ck_assert_uint_eq(atomic_load(&copy_slot[REFUSER]), h[REFUSER]);
	ck_assert_uint_eq(atomic_load(&copy_slot[9]), h[9]);
	ck_assert_uint_eq(s.copies, NCOPIES - 2 - dropped);
	/* The dropped copies' bytes are reclaimed, not written out. */
	ck_assert_uint_lt(s.ram_bytes + s.disk_bytes, s.bytes_stored);
	ck_assert_uint_eq(s.objects, NOTHER + NCOPIES - 1 - dropped);
	for (int i = 0; i < NOTHER; i++)
		check_page(st, other[i], K_MIXED, 100000 + (uint64_t)i, -1);
	for (int i = 0; i < NCOPIES; i++)
		if (atomic_load(&copy_slot[i]))
			store_free(st, h[i]);
	store_free(st, h[9]);		/* the reference store_ref took */
	for (int i = 0; i < NOTHER; i++)
		store_free(st, other[i]);
	s = stats(st);
	ck_assert_uint_eq(s.objects, 0);
	ck_assert_uint_eq(s.copies, 0);
	ck_assert_uint_eq(s.ram_bytes + s.disk_bytes, 0);
	store_destroy(st);
}
END_TEST

/* ---- concurrency --------------------------------------------------------- */

#define CC_STABLE 3000
#define CC_READERS 4

struct cc {
	struct store *st;
	uint64_t h[CC_STABLE];
	atomic_bool stop;
	atomic_int errors;	/* wrong data or a failed get */
	atomic_int put_errors;
	atomic_long reads;
};

static void *cc_reader(void *arg)
{
	struct cc *c = arg;
	uint64_t s = (uint64_t)pthread_self() | 1;
	uint8_t want[PAGE_SIZE], got[PAGE_SIZE];

	while (!atomic_load(&c->stop)) {
		int i = (int)(rng(&s) % CC_STABLE);
		int err = store_get(c->st, c->h[i], got, NULL);

		fill_page(want, i % 3, (uint64_t)i);
		if (err || memcmp(want, got, PAGE_SIZE))
			atomic_fetch_add(&c->errors, 1);
		atomic_fetch_add(&c->reads, 1);
	}
	return NULL;
}

/* The evictor's part: put and free pages of its own, checking some. */
static void *cc_writer(void *arg)
{
	struct cc *c = arg;
	enum { WINDOW = 1500, PUTS = 30000 };
	uint64_t *h = calloc(WINDOW, sizeof(*h)), s = 12345;
	uint8_t want[PAGE_SIZE], got[PAGE_SIZE];

	for (int i = 0; i < PUTS; i++) {
		int slot = (int)(rng(&s) % WINDOW);	/* holes everywhere */
		uint64_t seed = 1000000 + (uint64_t)i;

		if (h[slot])
			store_free(c->st, h[slot]);
		fill_page(want, K_MIXED, seed);
		if (store_put(c->st, want, &h[slot])) {
			atomic_fetch_add(&c->put_errors, 1);
			h[slot] = 0;
			continue;
		}
		if (rng(&s) % 16 == 0 &&
		    (store_get(c->st, h[slot], got, NULL) ||
		     memcmp(want, got, PAGE_SIZE)))
			atomic_fetch_add(&c->errors, 1);
	}
	for (int i = 0; i < WINDOW; i++)
		if (h[i])
			store_free(c->st, h[i]);
	free(h);
	return NULL;
}

START_TEST(test_concurrent)
{
	struct cc *c = calloc(1, sizeof(*c));
	pthread_t r[CC_READERS], w;
	struct store_stats s;

	/* Small RAM tier and file: objects move to disk and get compacted
	 * while the readers read them. */
	c->st = make_store(UPG_CODEC_LZ4, 512 * 1024, 16 * MiB);
	for (int i = 0; i < CC_STABLE; i++)
		c->h[i] = put_ok(c->st, i % 3, (uint64_t)i);
	for (int i = 0; i < CC_READERS; i++)
		pthread_create(&r[i], NULL, cc_reader, c);
	pthread_create(&w, NULL, cc_writer, c);
	pthread_join(w, NULL);
	atomic_store(&c->stop, true);
	for (int i = 0; i < CC_READERS; i++)
		pthread_join(r[i], NULL);
	s = stats(c->st);
	ck_assert_int_eq(atomic_load(&c->errors), 0);
	ck_assert_int_eq(atomic_load(&c->put_errors), 0);
	ck_assert_int_gt(atomic_load(&c->reads), 1000);
	ck_assert_uint_eq(s.objects, CC_STABLE);
	ck_assert_uint_gt(s.reads_disk, 0);
	ck_assert_uint_gt(s.reads_ram, 0);
	ck_assert_uint_gt(s.compactions, 0);
	ck_assert_uint_eq(s.io_errors + s.checksum_errors, 0);
	for (int i = 0; i < CC_STABLE; i++)
		check_page(c->st, c->h[i], i % 3, (uint64_t)i, -1);
	store_destroy(c->st);
	free(c);
}
END_TEST

/* ---- compaction and full stores ---------------------------------------- */

/* Put/free cycles moving 20x the file's size through it: the file stays
 * within its bound and every live page stays exact. */
START_TEST(test_compaction_churn)
{
	const uint64_t swap = 4 * MiB;
	enum { LIVE = 1200, PUTS = 50000 };
	struct store *st = make_store(UPG_CODEC_LZ4, 256 * 1024, swap);
	uint64_t h[LIVE] = { 0 }, seed[LIVE] = { 0 }, s = 99;
	struct store_stats ss;

	for (int i = 0; i < PUTS; i++) {
		int j = (int)(rng(&s) % LIVE);	/* random frees: holes */

		if (h[j])
			store_free(st, h[j]);
		seed[j] = (uint64_t)i;
		h[j] = put_ok(st, K_TEXT, seed[j]);
		if (i % 64 == 0) {
			ss = stats(st);
			ck_assert_uint_le(ss.file_bytes, swap);
			j = (int)(rng(&s) % LIVE);
			if (h[j])
				check_page(st, h[j], K_TEXT, seed[j], -1);
		}
	}
	ss = stats(st);
	ck_assert_uint_gt(ss.bytes_stored, 20 * swap);
	ck_assert_uint_gt(ss.compactions, 0);
	ck_assert_uint_le(ss.file_bytes, swap);
	ck_assert_uint_eq(ss.objects, LIVE);
	for (int j = 0; j < LIVE; j++)
		check_page(st, h[j], K_TEXT, seed[j], -1);
	ck_assert_int_eq(store_flush(st), 0);
	for (int j = 0; j < LIVE; j++)
		check_page(st, h[j], K_TEXT, seed[j], 1);
	ck_assert_uint_le(stats(st).file_bytes, swap);
	store_destroy(st);
}
END_TEST

START_TEST(test_enospc)
{
	const uint64_t swap = 1 * MiB;
	struct store *st = make_store(UPG_CODEC_LZ4, 256 * 1024, swap);
	uint8_t page[PAGE_SIZE];
	uint64_t h[1024];
	int n = 0, err = 0;

	for (n = 0; n < 1024; n++) {
		fill_page(page, K_RANDOM, (uint64_t)n);
		err = store_put(st, page, &h[n]);
		if (err)
			break;
	}
	ck_assert_int_eq(err, -ENOSPC);
	/* Raw pages fill at least the RAM tier and the file but the slot
	 * kept for compaction. */
	ck_assert_int_ge(n, (int)((swap + 256 * 1024) / PAGE_SIZE) - 32);
	ck_assert_uint_le(stats(st).file_bytes, swap);
	ck_assert_int_eq(store_put(st, page, &h[n]), -ENOSPC);
	for (int i = 0; i < n; i++)
		check_page(st, h[i], K_RANDOM, (uint64_t)i, -1);

	/* Freeing every other page makes room again (by compaction). */
	for (int i = 0; i < n; i += 2)
		store_free(st, h[i]);
	for (int i = 0; i < n / 4; i++)
		h[i * 2] = put_ok(st, K_RANDOM, 5000 + (uint64_t)i);
	for (int i = 0; i < n / 4; i++)
		check_page(st, h[i * 2], K_RANDOM, 5000 + (uint64_t)i, -1);
	for (int i = 1; i < n; i += 2)
		check_page(st, h[i], K_RANDOM, (uint64_t)i, -1);
	ck_assert_uint_gt(stats(st).compactions, 0);
	store_destroy(st);
}
END_TEST

/* ---- failures ------------------------------------------------------------ */

START_TEST(test_read_eio)
{
	struct store *st = make_store(UPG_CODEC_LZ4, 4 * MiB, 4 * MiB);
	uint8_t page[PAGE_SIZE];
	uint64_t h = put_ok(st, K_TEXT, 1), h2 = put_ok(st, K_TEXT, 2);
	bool from_disk = false;

	ck_assert_int_eq(store_flush(st), 0);
	store_inject(st, STORE_INJECT_READ_EIO);
	ck_assert_int_eq(store_get(st, h, page, &from_disk), -EIO);
	ck_assert(from_disk);
	ck_assert_uint_eq(stats(st).io_errors, 1);
	/* One read failed; the object is still there. */
	check_page(st, h, K_TEXT, 1, 1);
	check_page(st, h2, K_TEXT, 2, 1);
	ck_assert_uint_eq(stats(st).io_errors, 1);
	store_destroy(st);
}
END_TEST

/* Fetch a run with store_get_ahead; check each page whose result is 1
 * (from the disk) against its seed, and return the results. */
static void get_ahead(struct store *st, const uint64_t *h, unsigned n,
		      int *res)
{
	static uint8_t pages[STORE_AHEAD_MAX * PAGE_SIZE];
	uint8_t want[PAGE_SIZE];

	memset(pages, 0xee, sizeof(pages));
	store_get_ahead(st, h, n, (char *)pages, res);
	for (unsigned i = 0; i < n; i++) {
		if (res[i] < 0)
			continue;
		fill_page(want, K_TEXT, i);
		ck_assert_msg(memcmp(want, pages + i * PAGE_SIZE, PAGE_SIZE) == 0,
			      "read-ahead page %u differs", i);
	}
}

/*
 * Read-ahead of a run stored in order: every page comes back from the
 * disk exactly; a corrupt object in the run is reported and hurts no
 * neighbour; an I/O error fails the run's pages without losing them.
 */
START_TEST(test_get_ahead)
{
	struct store *st = make_store(UPG_CODEC_LZ4, 0, 64 * MiB);
	unsigned n = STORE_AHEAD_MAX;
	uint64_t h[STORE_AHEAD_MAX];
	int res[STORE_AHEAD_MAX];

	for (unsigned i = 0; i < n; i++)
		h[i] = put_ok(st, K_TEXT, i);
	ck_assert_int_eq(store_flush(st), 0);
	get_ahead(st, h, n, res);
	for (unsigned i = 0; i < n; i++)
		ck_assert_int_eq(res[i], 1);
	ck_assert_int_eq(store_corrupt(st, h[5]), 0);
	get_ahead(st, h, n, res);
	for (unsigned i = 0; i < n; i++)
		ck_assert_int_eq(res[i], i == 5 ? -EBADMSG : 1);
	store_inject(st, STORE_INJECT_READ_EIO);
	get_ahead(st, h, n, res);
	for (unsigned i = 0; i < n; i++)
		ck_assert_int_eq(res[i], -EIO);
	ck_assert_uint_eq(stats(st).io_errors, 1);
	/* One read failed; the objects are still there. */
	get_ahead(st, h, n, res);
	for (unsigned i = 0; i < n; i++)
		ck_assert_int_eq(res[i], i == 5 ? -EBADMSG : 1);
	/* A run from the RAM tier, and a bad handle in it. */
	h[0] = put_ok(st, K_TEXT, 0);
	h[1] = put_ok(st, K_TEXT, 1);
	h[2] = 0;
	get_ahead(st, h, 3, res);
	ck_assert_int_eq(res[0], 0);
	ck_assert_int_eq(res[1], 0);
	ck_assert_int_eq(res[2], -EINVAL);
	store_destroy(st);
}
END_TEST

/* A failed segment write keeps its objects in RAM and is retried. */
START_TEST(test_write_eio)
{
	struct store *st = make_store(UPG_CODEC_LZ4, 0, 16 * MiB);
	uint64_t h[100];
	struct store_stats s;

	for (int i = 0; i < 100; i++)
		h[i] = put_ok(st, K_MIXED, (uint64_t)i);
	store_inject(st, STORE_INJECT_WRITE_EIO);
	ck_assert_int_eq(store_flush(st), -EIO);
	s = stats(st);
	ck_assert_uint_eq(s.io_errors, 1);
	ck_assert_uint_eq(s.disk_bytes, 0);
	for (int i = 0; i < 100; i++)
		check_page(st, h[i], K_MIXED, (uint64_t)i, 0);
	ck_assert_int_eq(store_flush(st), 0);
	for (int i = 0; i < 100; i++)
		check_page(st, h[i], K_MIXED, (uint64_t)i, 1);
	store_destroy(st);
}
END_TEST

/* The same on the put path, where write-outs happen behind the puts. */
START_TEST(test_write_eio_put)
{
	enum { N = 3000 };
	struct store *st = make_store(UPG_CODEC_LZ4, 0, 64 * MiB);
	uint64_t h[N];
	int failed = 0;

	for (int i = 0; i < N; i++) {
		uint8_t page[PAGE_SIZE];
		int err;

		if (i == 500)
			store_inject(st, STORE_INJECT_WRITE_EIO);
		fill_page(page, K_TEXT, (uint64_t)i);
		err = store_put(st, page, &h[i]);
		if (err) {
			ck_assert_int_eq(err, -EIO);
			h[i] = 0;
			failed++;
		}
	}
	ck_assert_int_le(failed, 1);
	ck_assert_uint_eq(stats(st).io_errors, 1);
	for (int i = 0; i < N; i++)
		if (h[i])
			check_page(st, h[i], K_TEXT, (uint64_t)i, -1);
	ck_assert_int_eq(store_flush(st), 0);
	for (int i = 0; i < N; i++)
		if (h[i])
			check_page(st, h[i], K_TEXT, (uint64_t)i, 1);
	store_destroy(st);
}
END_TEST

START_TEST(test_corrupt)
{
	struct store *st = make_store(_i, 4 * MiB, 4 * MiB);
	uint64_t ram = put_ok(st, K_TEXT, 1), raw = put_ok(st, K_RANDOM, 2);
	uint64_t disk = put_ok(st, K_MIXED, 3), ok = put_ok(st, K_TEXT, 4);
	uint8_t page[PAGE_SIZE];

	ck_assert_int_eq(store_corrupt(st, ram), 0);
	ck_assert_int_eq(store_get(st, ram, page, NULL), -EBADMSG);
	ck_assert_int_eq(store_corrupt(st, raw), 0);
	ck_assert_int_eq(store_get(st, raw, page, NULL), -EBADMSG);
	ck_assert_uint_eq(stats(st).checksum_errors, 2);
	ck_assert_int_eq(store_flush(st), 0);
	/* Still corrupt after the move to disk. */
	ck_assert_int_eq(store_get(st, ram, page, NULL), -EBADMSG);
	ck_assert_int_eq(store_corrupt(st, disk), 0);
	ck_assert_int_eq(store_get(st, disk, page, NULL), -EBADMSG);
	ck_assert_uint_eq(stats(st).checksum_errors, 4);
	check_page(st, ok, K_TEXT, 4, 1);
	ck_assert_int_eq(store_corrupt(st, 0), -EINVAL);
	store_free(st, ok);
	ck_assert_int_eq(store_corrupt(st, ok), -EINVAL);
	store_destroy(st);
}
END_TEST

START_TEST(test_create_errors)
{
	struct store_config cfg = {
		.codec = UPG_CODEC_LZ4,
		.ram_limit = MiB,
		.swap_dir = swap_dir,
		.swap_size = 4 * MiB,
	};
	struct store *st = NULL;

	cfg.codec = 7;
	ck_assert_int_eq(store_create(&cfg, &st), -EINVAL);
	cfg.codec = UPG_CODEC_LZ4;
	cfg.swap_dir = NULL;
	ck_assert_int_eq(store_create(&cfg, &st), -EINVAL);
	cfg.swap_dir = "/nonexistent/upager";
	ck_assert_int_eq(store_create(&cfg, &st), -ENOENT);
	cfg.swap_dir = swap_dir;
	cfg.swap_size = 4096;
	ck_assert_int_eq(store_create(&cfg, &st), -EINVAL);
	ck_assert_ptr_null(st);
}
END_TEST

/* ---- benchmark (--bench) ------------------------------------------------- */

static double secs(uint64_t t0)
{
	return (double)(now_ns() - t0) / 1e9;
}

static void bench(int codec, const char *name)
{
	enum { N = 100000 };
	struct store_config cfg = {
		.codec = codec,
		.ram_limit = 1024 * MiB,
		.swap_dir = swap_dir,
		.swap_size = 1024 * MiB,
	};
	struct store *st;
	uint64_t *h = calloc(N, sizeof(*h)), t0;
	uint8_t *pages = malloc((size_t)N * PAGE_SIZE);
	uint8_t out[PAGE_SIZE];
	double mb = (double)N * PAGE_SIZE / 1e6, tput;
	struct store_stats s;

	if (store_create(&cfg, &st)) {	/* not in a test: no ck_assert */
		printf("store_create failed\n");
		exit(1);
	}
	for (int i = 0; i < N; i++)
		fill_page(pages + (size_t)i * PAGE_SIZE, i % 3 ? K_TEXT
			  : K_MIXED, (uint64_t)i);
	t0 = now_ns();
	for (int i = 0; i < N; i++)
		store_put(st, pages + (size_t)i * PAGE_SIZE, &h[i]);
	tput = mb / secs(t0);
	t0 = now_ns();
	for (int i = 0; i < N; i++)
		store_get(st, h[i], out, NULL);
	printf("%-4s put %7.0f MB/s  get(RAM) %7.0f MB/s", name, tput,
	       mb / secs(t0));
	t0 = now_ns();
	store_flush(st);
	printf("  flush %6.0f MB/s", mb / secs(t0));
	t0 = now_ns();
	for (int i = 0; i < N; i++)
		store_get(st, h[(i * 7919) % N], out, NULL);
	s = stats(st);
	printf("  get(disk) %6.0f MB/s  ratio %.2f\n", mb / secs(t0),
	       (double)s.bytes_in / (double)s.bytes_stored);
	store_destroy(st);
	free(pages);
	free(h);
}

/* ---- main ---------------------------------------------------------------- */

/* Skip (77) where the store cannot work: no io_uring, no O_TMPFILE. */
static void probe_or_skip(void)
{
	struct io_uring ring;
	int err = io_uring_queue_init(2, &ring, 0), fd;

	if (err == -ENOSYS || err == -EPERM) {
		printf("SKIP: io_uring unavailable (%s)\n", strerror(-err));
		exit(77);
	}
	if (!err)
		io_uring_queue_exit(&ring);
	strcpy(swap_dir, "/tmp/upager-store-XXXXXX");
	if (!mkdtemp(swap_dir)) {
		strcpy(swap_dir, "/var/tmp/upager-store-XXXXXX");
		if (!mkdtemp(swap_dir)) {
			printf("SKIP: no temporary directory\n");
			exit(77);
		}
	}
	fd = open(swap_dir, O_TMPFILE | O_RDWR, 0600);
	if (fd < 0) {
		printf("SKIP: no O_TMPFILE in %s\n", swap_dir);
		rmdir(swap_dir);
		exit(77);
	}
	close(fd);
}

/* fork's transfer: pages read packed from one store (RAM tier and disk,
 * compressible and raw) are stored as they come in another of the same
 * codec and read back exactly; a corrupt object is refused, not passed on. */
START_TEST(test_packed_transfer)
{
	const int n = 3000;
	struct store *from = make_store(_i, 1 * MiB, 64 * MiB);
	struct store *to = make_store(_i, 1 * MiB, 64 * MiB);
	uint64_t *h = calloc(n, sizeof(*h)), *h2 = calloc(n, sizeof(*h2));
	uint8_t buf[PAGE_SIZE], page[PAGE_SIZE], want[PAGE_SIZE];
	size_t len;

	for (int i = 0; i < n; i++)
		h[i] = put_ok(from, i % 3, (uint64_t)i);
	ck_assert_uint_gt(stats(from).disk_objects, 0);
	for (int i = 0; i < n; i++) {
		len = 0;
		ck_assert_int_eq(store_get_packed(from, h[i], buf, &len), 0);
		ck_assert(len > 0 && len <= PAGE_SIZE);
		/* As kept: raw pages whole, others compressed. */
		ck_assert(i % 3 == K_RANDOM || _i == UPG_CODEC_NONE ?
			  len == PAGE_SIZE : len < PAGE_SIZE);
		ck_assert_int_eq(store_unpack(to, buf, len, page), 0);
		fill_page(want, i % 3, (uint64_t)i);
		ck_assert(memcmp(page, want, PAGE_SIZE) == 0);
		ck_assert_int_eq(store_put_packed(to, buf, len, &h2[i]), 0);
	}
	for (int i = 0; i < n; i++)
		check_page(to, h2[i], i % 3, (uint64_t)i, -1);
	ck_assert_uint_eq(stats(to).bytes_stored, stats(from).bytes_stored);
	ck_assert_int_eq(store_put_packed(to, buf, 0, &h2[0]), -EINVAL);
	ck_assert_int_eq(store_put_packed(to, buf, PAGE_SIZE + 1, &h2[0]),
			 -EINVAL);
	ck_assert_int_eq(store_corrupt(from, h[1]), 0);
	ck_assert_int_eq(store_get_packed(from, h[1], buf, &len), -EBADMSG);
	free(h);
	free(h2);
	store_destroy(from);
	store_destroy(to);
}
END_TEST

/*
 * A reader keeps the segment it read whole, and the next gets in it are
 * served from there: one read for forty pages; pages put after the
 * segment was released are read anew, exact.  (A reader's copy taken for
 * a released segment whose id was reused, its epoch not checked, fails
 * test_compaction_churn with a checksum mismatch.)
 */
START_TEST(test_reread_segment)
{
	struct store *st = make_store(UPG_CODEC_LZ4, 0, 4 * MiB);
	uint64_t h[40];

	for (int i = 0; i < 40; i++)
		h[i] = put_ok(st, K_TEXT, (uint64_t)i);
	ck_assert_int_eq(store_flush(st), 0);
	for (int i = 0; i < 40; i++)
		check_page(st, h[i], K_TEXT, (uint64_t)i, 1);
	ck_assert_uint_eq(stats(st).reads_disk, 1);
	ck_assert_uint_eq(stats(st).reads_reread, 39);
	for (int i = 0; i < 40; i++)
		store_free(st, h[i]);
	for (int i = 0; i < 40; i++)
		h[i] = put_ok(st, K_MIXED, (uint64_t)(100 + i));
	ck_assert_int_eq(store_flush(st), 0);
	for (int i = 0; i < 40; i++)
		check_page(st, h[i], K_MIXED, (uint64_t)(100 + i), 1);
	ck_assert_uint_eq(stats(st).reads_disk, 2);
	ck_assert_uint_eq(stats(st).checksum_errors, 0);
	store_destroy(st);
}
END_TEST

/*
 * Whole segments are read only while that pays: pages read one per
 * segment, at random, make the reads of blocks (one whole read in eight
 * still samples); pages read in the order they were stored bring whole
 * reads back, and with them one read per segment.
 */
START_TEST(test_whole_reads_adapt)
{
	enum { SEGS = 64, PER_SEG = 32 };	/* raw pages: one per block */
	struct store *st = make_store(UPG_CODEC_LZ4, 0, 64 * MiB);
	uint64_t *h = calloc(SEGS * PER_SEG, sizeof(*h)), state = 3;
	struct store_stats s0, s1;

	for (int i = 0; i < SEGS * PER_SEG; i++)
		h[i] = put_ok(st, K_RANDOM, (uint64_t)i);
	ck_assert_int_eq(store_flush(st), 0);
	for (int k = 0; k < 4 * SEGS; k++) {
		int i = (int)(rng(&state) % SEGS) * PER_SEG +
			(int)(rng(&state) % PER_SEG);

		check_page(st, h[i], K_RANDOM, (uint64_t)i, 1);
	}
	s0 = stats(st);
	ck_assert_uint_le(s0.reads_whole, 4 * SEGS / 8 + 4);
	/* In order: a whole read, then the rest of the segment from it. */
	for (int i = 0; i < 8 * PER_SEG; i++)
		check_page(st, h[i], K_RANDOM, (uint64_t)i, 1);
	s1 = stats(st);
	ck_assert_uint_ge(s1.reads_reread - s0.reads_reread, 7 * (PER_SEG - 2));
	ck_assert_uint_le(s1.reads_disk - s0.reads_disk, 8 + 8);
	free(h);
	store_destroy(st);
}
END_TEST

/* ---- the probation list --------------------------------------------------- */

#define PROB_SLOTS 64

/*
 * The youngest pages are kept raw on probation and read back from there;
 * the oldest are compressed into the RAM tier as new ones come; a page
 * freed young gives its slot to the next; what the list holds counts as
 * RAM and never grows past its slots.  Checksums, references, packed
 * reads and read-ahead serve young objects as any other.
 */
START_TEST(test_probation)
{
	struct store_config cfg = {
		.codec = UPG_CODEC_LZ4,
		.ram_limit = 1 * MiB,
		.swap_dir = swap_dir,
		.swap_size = 64 * MiB,
		.probation = PROB_SLOTS * PAGE_SIZE,
	};
	const int n = 4000;
	uint64_t *h = calloc(n, sizeof(*h)), rng_state = 7, ahead[4];
	uint8_t page[PAGE_SIZE], want[PAGE_SIZE];
	static uint8_t pages[3 * PAGE_SIZE];
	struct store *st = NULL;
	struct store_stats s;
	int res[4];
	size_t len;

	ck_assert_int_eq(store_create(&cfg, &st), 0);
	for (int i = 0; i < PROB_SLOTS; i++)
		h[i] = put_ok(st, i % 3, (uint64_t)i);
	s = stats(st);
	ck_assert_uint_eq(s.probation_pages, PROB_SLOTS);
	ck_assert_uint_eq(s.probation_aged, 0);
	ck_assert_uint_eq(s.bytes_stored, 0);	/* nothing compressed yet */
	ck_assert_uint_eq(s.ram_bytes, PROB_SLOTS * PAGE_SIZE);
	for (int i = 0; i < PROB_SLOTS; i++)
		check_page(st, h[i], i % 3, (uint64_t)i, 0);
	ck_assert_uint_eq(stats(st).reads_probation, PROB_SLOTS);

	/* As kept: raw. */
	ck_assert_int_eq(store_get_packed(st, h[1], page, &len), 0);
	ck_assert_uint_eq(len, PAGE_SIZE);
	fill_page(want, 1, 1);
	ck_assert(memcmp(page, want, PAGE_SIZE) == 0);

	/* A reference keeps a young page past one free. */
	store_ref(st, h[2]);
	store_free(st, h[2]);
	check_page(st, h[2], 2, 2, 0);

	/* The rest pushes the oldest out, compressed; some are freed young,
	 * their slots reused. */
	for (int i = PROB_SLOTS; i < n; i++) {
		h[i] = put_ok(st, i % 3, (uint64_t)i);
		if (rng(&rng_state) % 4 == 0) {
			int j = i - (int)(rng(&rng_state) % 32);

			if (h[j] && j != 3) {
				store_free(st, h[j]);
				h[j] = 0;
			}
		}
	}
	s = stats(st);
	ck_assert_uint_le(s.probation_pages, PROB_SLOTS);
	ck_assert_uint_gt(s.probation_aged, 0);
	ck_assert_uint_gt(s.disk_objects, 0);
	ck_assert_uint_lt(s.bytes_stored, s.probation_aged * PAGE_SIZE);
	ck_assert_uint_le(store_ram_bytes(st),
			  cfg.ram_limit + RAM_SLACK + PROB_SLOTS * PAGE_SIZE);
	for (int i = 0; i < n; i++)
		if (h[i])
			check_page(st, h[i], i % 3, (uint64_t)i, -1);

	/* Read-ahead over a young, an old and a bad handle. */
	ck_assert(h[n - 1] && h[3]);
	ahead[0] = h[n - 1];
	ahead[1] = h[3];
	ahead[2] = 0;
	store_get_ahead(st, ahead, 3, (char *)pages, res);
	ck_assert_int_eq(res[0], 0);
	ck_assert_int_eq(res[1], 1);	/* from disk */
	ck_assert_int_eq(res[2], -EINVAL);
	fill_page(want, (n - 1) % 3, (uint64_t)(n - 1));
	ck_assert(memcmp(pages, want, PAGE_SIZE) == 0);
	fill_page(want, 0, 3);
	ck_assert(memcmp(pages + PAGE_SIZE, want, PAGE_SIZE) == 0);

	/* A young page tampered with is refused, never returned. */
	ck_assert_int_eq(store_corrupt(st, h[n - 1]), 0);
	ck_assert_int_eq(store_get(st, h[n - 1], page, NULL), -EBADMSG);
	ck_assert_uint_eq(stats(st).checksum_errors, 1);

	/* A flush sends the tier to disk; probation stays in RAM. */
	ck_assert_int_eq(store_flush(st), 0);
	check_page(st, h[n - 2], (n - 2) % 3, (uint64_t)(n - 2), 0);
	for (int i = 0; i < n; i++)
		if (h[i]) {
			store_free(st, h[i]);
			if (i == 2)
				store_free(st, h[i]);
		}
	s = stats(st);
	ck_assert_uint_eq(s.objects, 0);
	ck_assert_uint_eq(s.probation_pages, 0);
	free(h);
	store_destroy(st);
}
END_TEST

static Suite *store_suite(void)
{
	Suite *s = suite_create("store");
	TCase *tc = tcase_create("store");

	tcase_set_timeout(tc, 100);
	tcase_add_test(tc, test_zero_detect);
	tcase_add_loop_test(tc, test_roundtrip, UPG_CODEC_LZ4,
			    UPG_CODEC_NONE + 1);
	tcase_add_test(tc, test_spill);
	tcase_add_test(tc, test_no_ram_tier);
	tcase_add_test(tc, test_refcount);
	tcase_add_test(tc, test_copies);
	tcase_add_test(tc, test_concurrent);
	tcase_add_test(tc, test_compaction_churn);
	tcase_add_test(tc, test_enospc);
	tcase_add_test(tc, test_read_eio);
	tcase_add_test(tc, test_get_ahead);
	tcase_add_test(tc, test_write_eio);
	tcase_add_test(tc, test_write_eio_put);
	tcase_add_loop_test(tc, test_corrupt, UPG_CODEC_LZ4,
			    UPG_CODEC_NONE + 1);
	tcase_add_test(tc, test_create_errors);
	tcase_add_test(tc, test_probation);
	tcase_add_test(tc, test_reread_segment);
	tcase_add_test(tc, test_whole_reads_adapt);
	tcase_add_loop_test(tc, test_packed_transfer, UPG_CODEC_LZ4,
			    UPG_CODEC_NONE + 1);
	suite_add_tcase(s, tc);
	return s;
}

int main(int argc, char **argv)
{
	SRunner *sr;
	int failed;

	probe_or_skip();
	if (argc > 1 && strcmp(argv[1], "--bench") == 0) {
		bench(UPG_CODEC_LZ4, "lz4");
		bench(UPG_CODEC_ZSTD, "zstd");
		rmdir(swap_dir);
		return 0;
	}
	sr = srunner_create(store_suite());
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	rmdir(swap_dir);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
