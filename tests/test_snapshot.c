/* SPDX-License-Identifier: MIT */
/*
 * Copy-on-write snapshots and clones through the real kernel, all under a
 * budget smaller than the region (pages are evicted, swapped in and shared
 * with snapshots by reference while the tests run): a snapshot taken while
 * four threads write is the region at one instant; restore, clones, several
 * snapshots, drop giving the store back; bad arguments.
 *
 * UPAGER_TEST_SCALE (default 1) multiplies sizes; the 'slow' suite runs
 * this program with a larger scale.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pagetable.h"
#include "runtime.h"
#include "store.h"
#include "testlib.h"
#include "util.h"

const bool test_needs_uffd = true;

static unsigned scale(void)
{
	const char *s = getenv("UPAGER_TEST_SCALE");
	int v = s ? atoi(s) : 1;

	return v > 0 ? (unsigned)v : 1;
}

/* Compressible, page- and tag-specific contents; tag 0 means zeros. */
static void fill_tag(void *page, uint64_t pageno, uint64_t tag)
{
	uint64_t *w = page;

	if (tag == 0) {
		memset(page, 0, TPAGE);
		return;
	}
	for (unsigned i = 0; i < TPAGE / 8; i++)
		w[i] = (i % 4 == 0) ? pattern(pageno, tag, i) : pageno + tag;
}

static bool is_tag(const void *page, uint64_t pageno, uint64_t tag)
{
	const uint64_t *w = page;

	if (tag == 0)
		return page_is_zero(page);
	for (unsigned i = 0; i < TPAGE / 8; i++)
		if (w[i] != ((i % 4 == 0) ? pattern(pageno, tag, i)
					  : pageno + tag))
			return false;
	return true;
}

/* The snapshot's page i, read into a private page. */
static bool snap_is_tag(struct upg_snapshot *s, size_t i, uint64_t tag)
{
	static _Thread_local uint64_t page[TPAGE / 8];

	ck_assert_int_eq(upg_snapshot_read(s, i * TPAGE, page, TPAGE), 0);
	return is_tag(page, i, tag);
}

static uint64_t store_objects(struct upg_runtime *rt)
{
	struct store_stats ss;

	store_get_stats(rt->store, &ss);
	return ss.objects;
}

/* With its region gone, nothing may be left in the store: every reference
 * a snapshot took was given back. */
static void destroy_leaves_nothing(struct upg_runtime *rt, struct upg_region *r)
{
	ck_assert_int_eq(upg_region_destroy(r), 0);
	ck_assert_uint_eq(store_objects(rt), 0);
	ck_assert_uint_eq(test_stats(rt).snapshot_pages, 0);
}

/* ---- a snapshot taken while 4 threads write is one instant ---- */

/*
 * Each writer owns the pages p with p % 4 == id and writes them whole, in
 * random order, numbering its writes k = 1, 2, ...: word 0 = k, word 1 =
 * the page, the others a function of both.  Words are stored in order, so
 * at any instant a page is one write's, or (the write in progress) a
 * prefix of write k over the rest of the page's previous write.  The log
 * says which page write k went to, so for each writer we can check that
 * there is one m (writes done at the instant) that explains every one of
 * its pages in the snapshot, with before <= m <= after, the writes done
 * when take() was called and when it returned.  A snapshot whose pages
 * were captured at different moments fails this as soon as a writer wrote
 * an early-protected page after a late-protected one.
 */
#define WRITERS 4
#define LOG_MAX (1u << 21)

static uint64_t word_of(uint64_t page, uint64_t k, unsigned i)
{
	return i == 0 ? k : i == 1 ? page : pattern(page, k, i);
}

struct writer {
	char *base;
	size_t npages;
	unsigned id;
	uint32_t *log;		/* log[k] = page of write k (k >= 1) */
	_Atomic uint32_t done;	/* writes completed */
	_Atomic bool *stop;
};

static void write_gen(char *page, uint64_t pageno, uint64_t k)
{
	volatile uint64_t *w = (volatile uint64_t *)page;

	for (unsigned i = 0; i < TPAGE / 8; i++)
		w[i] = word_of(pageno, k, i);
}

static void *writer_main(void *arg)
{
	struct writer *w = arg;
	uint64_t seed = 0x9e3779b9u * (w->id + 1), mine = w->npages / WRITERS;

	for (uint32_t k = 1; k < LOG_MAX && !atomic_load(w->stop); k++) {
		/* Mostly a hot eighth that stays resident (writes land
		 * during the take), sometimes anywhere (swap-ins). */
		uint64_t span = rnd(&seed) % 8 ? mine / 8 : mine;
		uint64_t page = (rnd(&seed) % span) * WRITERS + w->id;

		write_gen(w->base + page * TPAGE, page, k);
		w->log[k] = (uint32_t)page;
		atomic_store_explicit(&w->done, k, memory_order_release);
	}
	return NULL;
}

/* The interval of m that explains `page` showing contents `got`. */
static void explain(const struct writer *w, const uint32_t *prev,
		    const uint32_t *next, const uint32_t *first, uint64_t page,
		    const uint64_t *got, uint64_t *lo, uint64_t *hi)
{
	uint64_t k = got[0], old;
	unsigned j = 0;

	ck_assert_msg(k <= atomic_load(&w->done) && (k == 0 || w->log[k] == page),
		      "page %llu holds write %llu, not one of its writes",
		      (unsigned long long)page, (unsigned long long)k);
	while (j < TPAGE / 8 && got[j] == word_of(page, k, j))
		j++;
	if (j == TPAGE / 8) {
		/* Write k complete: at the instant, k done, the next not. */
		uint64_t nk = k ? next[k] : first[page];

		*lo = MAX(*lo, k);
		*hi = MIN(*hi, nk ? nk - 1 : UINT64_MAX);
		return;
	}
	/* Write k in progress: a prefix of k over the previous write. */
	ck_assert_msg(k > 0, "page %llu is garbage", (unsigned long long)page);
	old = prev[k];
	for (; j < TPAGE / 8; j++)
		ck_assert_msg(got[j] == word_of(page, old, j),
			      "page %llu word %u is neither write %llu nor %llu",
			      (unsigned long long)page, j,
			      (unsigned long long)k, (unsigned long long)old);
	*lo = MAX(*lo, k - 1);
	*hi = MIN(*hi, k - 1);
}

static void check_instant(const struct writer *w, const char *snap,
			  uint32_t before, uint32_t after)
{
	uint32_t n = atomic_load(&w->done);
	uint32_t *prev = calloc(n + 1, 4), *next = calloc(n + 1, 4);
	uint32_t *last = calloc(w->npages, 4);
	uint64_t lo = before, hi = after;

	for (uint32_t k = 1; k <= n; k++) {
		prev[k] = last[w->log[k]];
		last[w->log[k]] = k;
	}
	memset(last, 0, w->npages * 4);
	for (uint32_t k = n; k >= 1; k--) {
		next[k] = last[w->log[k]];
		last[w->log[k]] = k;
	}
	for (uint64_t p = w->id; p < w->npages; p += WRITERS)
		explain(w, prev, next, last, p,
			(const uint64_t *)(snap + p * TPAGE), &lo, &hi);
	ck_assert_msg(lo <= hi,
		      "writer %u: no single instant explains the snapshot "
		      "(needs m in [%llu, %llu]; take saw %u..%u)",
		      w->id, (unsigned long long)lo, (unsigned long long)hi,
		      before, after);
	free(prev);
	free(next);
	free(last);
}

START_TEST(take_while_writing_is_one_instant)
{
	const uint64_t budget = 4 * MIB * scale();
	struct upg_runtime *rt = test_runtime(2, budget);
	size_t size = 4 * budget, npages = size / TPAGE;
	struct writer w[WRITERS];
	pthread_t th[WRITERS];
	uint32_t before[WRITERS], after[WRITERS];
	_Atomic bool stop = false;
	struct upg_region *r, *dst;
	struct upg_snapshot *s;
	struct upg_stats st;
	char *p, *d;

	ck_assert_int_eq(upg_anon_create(rt, size, 0, &r), 0);
	ck_assert_int_eq(upg_anon_create(rt, size, 0, &dst), 0);
	p = upg_region_addr(r);
	for (size_t i = 0; i < npages; i++)
		write_gen(p + i * TPAGE, i, 0);
	for (unsigned t = 0; t < WRITERS; t++) {
		w[t] = (struct writer){ .base = p, .npages = npages, .id = t,
					.log = calloc(LOG_MAX, 4),
					.stop = &stop };
		pthread_create(&th[t], NULL, writer_main, &w[t]);
	}
	usleep(200 * 1000);
	for (unsigned t = 0; t < WRITERS; t++)
		before[t] = atomic_load(&w[t].done);
	ck_assert_int_eq(upg_snapshot_take(r, &s), 0);
	for (unsigned t = 0; t < WRITERS; t++)
		after[t] = atomic_load(&w[t].done);
	/* Read it back while they keep writing, into managed memory. */
	d = upg_region_addr(dst);
	ck_assert_int_eq(upg_snapshot_read(s, 0, d, size), 0);
	usleep(100 * 1000);
	atomic_store(&stop, true);
	for (unsigned t = 0; t < WRITERS; t++) {
		pthread_join(th[t], NULL);
		ck_assert_msg(before[t] > 0 && after[t] + 1000 <
				  atomic_load(&w[t].done),
			      "writer %u did not write around the take", t);
		check_instant(&w[t], d, before[t], after[t]);
	}
	st = test_stats(rt);
	fprintf(stderr, "instant: %u..%u writes at take; wp faults %llu, "
		"preserved %llu, shared %llu\n", before[0], after[0],
		(unsigned long long)st.faults[UPG_FAULT_WP],
		(unsigned long long)st.snapshot_preserved,
		(unsigned long long)st.snapshot_shared);
	ck_assert_uint_gt(st.faults[UPG_FAULT_WP], 0);
	ck_assert_uint_gt(st.snapshot_preserved, 0);
	ck_assert_uint_gt(st.snapshot_shared, 0);	/* evicted at take */
	ck_assert_uint_eq(st.snapshots, 1);
	ck_assert_uint_eq(st.poisoned, 0);
	/* The region itself holds every writer's last write. */
	for (unsigned t = 0; t < WRITERS; t++) {
		uint32_t *last = calloc(npages, 4);

		for (uint32_t k = 1; k <= atomic_load(&w[t].done); k++)
			last[w[t].log[k]] = k;
		for (size_t i = t; i < npages; i += WRITERS)
			ck_assert_uint_eq(((uint64_t *)(p + i * TPAGE))[0],
					  last[i]);
		free(last);
		free(w[t].log);
	}
	ck_assert_int_eq(upg_snapshot_drop(s), 0);
	upg_runtime_destroy(rt);
}
END_TEST

/* ---- restore ---- */

/* Tag of page i in the first image: every 8th page never touched. */
static uint64_t tag1(size_t i)
{
	return i % 8 == 5 ? 0 : 1;
}

static char *filled_region(struct upg_runtime *rt, size_t npages,
			   struct upg_region **r)
{
	char *p;

	ck_assert_int_eq(upg_anon_create(rt, npages * TPAGE, 0, r), 0);
	p = upg_region_addr(*r);
	for (size_t i = 0; i < npages; i++)
		if (tag1(i))
			fill_tag(p + i * TPAGE, i, tag1(i));
	return p;
}

START_TEST(restore_equals_snapshot)
{
	const uint64_t budget = 2 * MIB * scale();
	struct upg_runtime *rt = test_runtime(1, budget);
	size_t npages = 4 * budget / TPAGE;
	struct upg_region *r;
	struct upg_snapshot *s;
	char *p = filled_region(rt, npages, &r);

	ck_assert_int_eq(upg_snapshot_take(r, &s), 0);
	for (unsigned round = 2; round <= 3; round++) {
		for (size_t i = 0; i < npages; i++) {
			if (i % 3 == 0)
				fill_tag(p + i * TPAGE, i, round);
			else if (i % 7 == 0)
				memset(p + i * TPAGE, 0, TPAGE);
		}
		ck_assert(is_tag(p + 3 * TPAGE, 3, round));
		ck_assert_int_eq(upg_snapshot_restore(s), 0);
		for (size_t i = 0; i < npages; i++) {
			ck_assert_msg(is_tag(p + i * TPAGE, i, tag1(i)),
				      "round %u: region page %zu not restored",
				      round, i);
			ck_assert(snap_is_tag(s, i, tag1(i)));
		}
	}
	ck_assert_uint_eq(test_stats(rt).poisoned, 0);
	ck_assert_int_eq(upg_snapshot_drop(s), 0);
	destroy_leaves_nothing(rt, r);
	upg_runtime_destroy(rt);
}
END_TEST

/* ---- clones ---- */

static uint64_t clone_tag(size_t i)
{
	return i % 3 == 0 ? 3 : tag1(i);
}

START_TEST(clone_is_copy_on_write)
{
	const uint64_t budget = 2 * MIB * scale();
	struct upg_runtime *rt = test_runtime(2, budget);
	size_t npages = 4 * budget / TPAGE;
	struct upg_region *r, *c;
	struct upg_snapshot *s;
	char *p = filled_region(rt, npages, &r), *q;

	ck_assert_int_eq(upg_snapshot_take(r, &s), 0);
	ck_assert_int_eq(upg_region_clone(s, &c), 0);
	q = upg_region_addr(c);
	ck_assert_uint_eq(upg_region_size(c), upg_region_size(r));
	/* The clone reads the snapshot (half of it for now). */
	for (size_t i = 0; i < npages; i += 2)
		ck_assert_msg(is_tag(q + i * TPAGE, i, tag1(i)), "clone %zu", i);
	/* Both sides write. */
	for (size_t i = 0; i < npages; i++) {
		if (i % 2 == 0)
			fill_tag(p + i * TPAGE, i, 2);
		if (i % 3 == 0)
			fill_tag(q + i * TPAGE, i, 3);
	}
	for (size_t i = 0; i < npages; i++) {
		ck_assert_msg(is_tag(p + i * TPAGE, i, i % 2 ? tag1(i) : 2),
			      "region %zu", i);
		ck_assert_msg(snap_is_tag(s, i, tag1(i)), "snapshot %zu", i);
		if (i % 2 == 0)
			ck_assert_msg(is_tag(q + i * TPAGE, i, clone_tag(i)),
				      "clone %zu", i);
	}
	/* The clone outlives its snapshot and the snapshot's region: the
	 * odd pages it never touched are still the snapshot's. */
	ck_assert_int_eq(upg_snapshot_drop(s), 0);
	ck_assert_int_eq(upg_region_destroy(r), 0);
	for (size_t i = 1; i < npages; i += 2)
		ck_assert_msg(is_tag(q + i * TPAGE, i, clone_tag(i)),
			      "clone %zu after drop", i);
	ck_assert_uint_gt(test_stats(rt).snapshot_shared, 0);
	ck_assert_int_eq(upg_region_destroy(c), 0);
	/* Every reference given back. */
	ck_assert_uint_eq(store_objects(rt), 0);
	ck_assert_uint_eq(test_stats(rt).snapshot_pages, 0);
	upg_runtime_destroy(rt);
}
END_TEST

/* ---- several snapshots ---- */

/* Tag of page i after round n (round 1 = the first image). */
static uint64_t tag_at(size_t i, unsigned n)
{
	for (; n >= 2; n--)
		if (i % n == 0)
			return n;
	return tag1(i);
}

START_TEST(three_snapshots_each_their_own)
{
	const uint64_t budget = 2 * MIB * scale();
	struct upg_runtime *rt = test_runtime(1, budget);
	size_t npages = 4 * budget / TPAGE;
	struct upg_snapshot *s[3];
	struct upg_region *r;
	char *p = filled_region(rt, npages, &r);

	for (unsigned n = 1; n <= 4; n++) {
		if (n > 1)
			for (size_t i = 0; i < npages; i += n)
				fill_tag(p + i * TPAGE, i, n);
		if (n <= 3)
			ck_assert_int_eq(upg_snapshot_take(r, &s[n - 1]), 0);
	}
	ck_assert_uint_eq(test_stats(rt).snapshots, 3);
	for (unsigned n = 1; n <= 3; n++)
		for (size_t i = 0; i < npages; i++)
			ck_assert_msg(snap_is_tag(s[n - 1], i, tag_at(i, n)),
				      "snapshot %u page %zu", n, i);
	for (size_t i = 0; i < npages; i++)
		ck_assert(is_tag(p + i * TPAGE, i, tag_at(i, 4)));
	/* Dropping the middle one leaves the others intact. */
	ck_assert_int_eq(upg_snapshot_drop(s[1]), 0);
	for (size_t i = 0; i < npages; i++) {
		ck_assert(snap_is_tag(s[0], i, tag_at(i, 1)));
		ck_assert(snap_is_tag(s[2], i, tag_at(i, 3)));
	}
	ck_assert_int_eq(upg_snapshot_drop(s[0]), 0);
	ck_assert_int_eq(upg_snapshot_drop(s[2]), 0);
	destroy_leaves_nothing(rt, r);
	upg_runtime_destroy(rt);
}
END_TEST

/* ---- drop gives the store back ---- */

START_TEST(drop_frees_stored_pages)
{
	const uint64_t budget = 2 * MIB * scale();
	struct upg_runtime *rt = test_runtime(1, budget);
	size_t npages = 4 * budget / TPAGE;
	struct store_stats held, after;
	struct upg_region *r;
	struct upg_snapshot *s;
	struct upg_stats st;
	char *p = filled_region(rt, npages, &r);

	ck_assert_int_eq(upg_snapshot_take(r, &s), 0);
	for (size_t i = 0; i < npages; i++)
		fill_tag(p + i * TPAGE, i, 9);
	store_get_stats(rt->store, &held);
	st = test_stats(rt);
	/* Every page diverged: the snapshot holds all of them. */
	ck_assert_uint_eq(st.snapshot_pages, npages);
	ck_assert_uint_gt(held.objects, npages);
	ck_assert_int_eq(upg_snapshot_drop(s), 0);
	store_get_stats(rt->store, &after);
	/* The region's own stored pages stay; the snapshot's went. */
	ck_assert_uint_lt(after.objects, held.objects - npages / 2);
	ck_assert_uint_lt(after.ram_bytes + after.disk_bytes,
			  held.ram_bytes + held.disk_bytes);
	st = test_stats(rt);
	ck_assert_uint_eq(st.snapshots, 0);
	ck_assert_uint_eq(st.snapshot_pages, 0);
	destroy_leaves_nothing(rt, r);
	upg_runtime_destroy(rt);
}
END_TEST

/* ---- arguments, handles, a runtime without a budget ---- */

START_TEST(bad_arguments_and_stale_handles)
{
	struct upg_runtime *rt = test_runtime(1, 0);
	struct upg_region *r, *c;
	struct upg_snapshot *s, *s2;
	char buf[3 * 4096];
	char *p;

	ck_assert_int_eq(upg_anon_create(rt, 16 * TPAGE, 0, &r), 0);
	p = upg_region_addr(r);
	for (size_t i = 0; i < 16; i++)
		fill_tag(p + i * TPAGE, i, 1);
	ck_assert_int_eq(upg_snapshot_take(NULL, &s), -EINVAL);
	ck_assert_int_eq(upg_snapshot_take(r, NULL), -EINVAL);
	ck_assert_int_eq(upg_snapshot_take(r, &s), 0);	/* no budget: ok */
	ck_assert_int_eq(upg_snapshot_read(NULL, 0, buf, 1), -EINVAL);
	ck_assert_int_eq(upg_snapshot_read(s, 0, NULL, 1), -EINVAL);
	ck_assert_int_eq(upg_snapshot_read(s, 16 * TPAGE, buf, 1), -EINVAL);
	ck_assert_int_eq(upg_snapshot_read(s, 15 * TPAGE, buf, TPAGE + 1),
			 -EINVAL);
	ck_assert_int_eq(upg_snapshot_read(s, SIZE_MAX, buf, 2), -EINVAL);
	ck_assert_int_eq(upg_snapshot_read(s, 16 * TPAGE, buf, 0), 0);
	ck_assert_int_eq(upg_snapshot_restore(NULL), -EINVAL);
	ck_assert_int_eq(upg_snapshot_drop(NULL), -EINVAL);
	ck_assert_int_eq(upg_region_clone(NULL, &c), -EINVAL);
	ck_assert_int_eq(upg_region_clone(s, NULL), -EINVAL);
	/* An unaligned read across pages, after the region changed. */
	fill_tag(p + 4 * TPAGE, 4, 2);
	ck_assert_int_eq(upg_snapshot_read(s, 3 * TPAGE + 100, buf,
					   2 * TPAGE), 0);
	{
		uint64_t want[3 * 4096 / 8];

		fill_tag(want, 3, 1);
		fill_tag((char *)want + TPAGE, 4, 1);
		fill_tag((char *)want + 2 * TPAGE, 5, 1);
		ck_assert_int_eq(memcmp(buf, (char *)want + 100, 2 * TPAGE), 0);
	}
	/* Clones cannot be snapshotted. */
	ck_assert_int_eq(upg_region_clone(s, &c), 0);
	ck_assert_int_eq(upg_snapshot_take(c, &s2), -EOPNOTSUPP);
	ck_assert(is_tag((char *)upg_region_addr(c) + 4 * TPAGE, 4, 1));
	/* The region goes: the snapshot keeps its view, cannot restore. */
	ck_assert_int_eq(upg_region_destroy(r), 0);
	ck_assert_int_eq(upg_snapshot_take(r, &s2), -EINVAL);
	ck_assert_int_eq(upg_snapshot_restore(s), -ENODEV);
	ck_assert_int_eq(upg_snapshot_read(s, 4 * TPAGE, buf, TPAGE), 0);
	ck_assert(is_tag(buf, 4, 1));
	ck_assert_int_eq(upg_snapshot_drop(s), 0);
	ck_assert_int_eq(upg_snapshot_drop(s), -EINVAL);
	ck_assert_int_eq(upg_snapshot_read(s, 0, buf, 1), -EINVAL);
	ck_assert_int_eq(upg_snapshot_restore(s), -EINVAL);
	ck_assert_int_eq(upg_region_clone(s, &c), -EINVAL);
	/* The clone still reads it. */
	ck_assert(is_tag((char *)upg_region_addr(c) + 9 * TPAGE, 9, 1));
	/* The clone is left alive on purpose: runtime teardown releases it
	 * and the dropped snapshot it still holds. */
	upg_runtime_destroy(rt);
}
END_TEST

Suite *make_suite(void)
{
	Suite *s = suite_create("snapshot");

	ADD_TEST(s, take_while_writing_is_one_instant, 600);
	ADD_TEST(s, restore_equals_snapshot, 600);
	ADD_TEST(s, clone_is_copy_on_write, 600);
	ADD_TEST(s, three_snapshots_each_their_own, 600);
	ADD_TEST(s, drop_frees_stored_pages, 600);
	ADD_TEST(s, bad_arguments_and_stale_handles, 600);
	return s;
}
