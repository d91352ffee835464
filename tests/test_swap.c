/* SPDX-License-Identifier: MIT */
/*
 * The budget, the evictor and the swap store through the real kernel and a
 * real swap file: data written is read back exactly while pages are evicted
 * and swapped in under threads; the budget holds; codecs, zero and
 * incompressible pages; full store, I/O errors and corruption each have
 * their documented outcome.
 *
 * UPAGER_TEST_SCALE (default 1) multiplies sizes and operations; the 'slow'
 * suite runs this program with a larger scale.
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pagetable.h"
#include "runtime.h"
#include "store.h"
#include "testlib.h"

const bool test_needs_uffd = true;

static unsigned scale(void)
{
	const char *s = getenv("UPAGER_TEST_SCALE");
	int v = s ? atoi(s) : 1;

	return v > 0 ? (unsigned)v : 1;
}

/* Default options with a budget and the tests' swap directory. */
static void swap_options(struct upg_options *o, uint64_t limit)
{
	upg_options_init(o);
	o->mem_limit = limit;
	o->swap_dir = getenv("UPAGER_TEST_SWAP_DIR") ?: "/var/tmp";
}

static struct upg_runtime *swap_runtime(uint64_t limit, int codec,
					uint64_t swap_size, int full_policy,
					unsigned handlers)
{
	struct upg_options o;

	swap_options(&o, limit);
	o.codec = codec;
	o.handlers = handlers;
	o.full_policy = full_policy;
	if (swap_size)
		o.swap_size = swap_size;
	return test_runtime_opts(&o);
}

/* A compressible but not trivial page: one word in `every` random, the
 * rest alike (text-like at 4; about 5 to 1 under lz4 at 16). */
static uint64_t word_of(uint64_t pageno, uint64_t tag, unsigned i,
			unsigned every)
{
	return i % every == 0 ? pattern(pageno, tag, i) : pageno + tag;
}

static void fill_words(void *page, uint64_t pageno, uint64_t tag,
		       unsigned every)
{
	uint64_t *w = page;

	for (unsigned i = 0; i < TPAGE / 8; i++)
		w[i] = word_of(pageno, tag, i, every);
}

static bool check_words(const void *page, uint64_t pageno, uint64_t tag,
			unsigned every)
{
	const uint64_t *w = page;

	for (unsigned i = 0; i < TPAGE / 8; i++)
		if (w[i] != word_of(pageno, tag, i, every))
			return false;
	return true;
}

static void fill_text(void *page, uint64_t pageno, uint64_t tag)
{
	fill_words(page, pageno, tag, 4);
}

static bool check_text(const void *page, uint64_t pageno, uint64_t tag)
{
	return check_words(page, pageno, tag, 4);
}

/* ---- integrity under pressure: 4 threads, region 8x the budget ---- */

struct rw_arg {
	char *base;
	size_t npages;
	unsigned id, ops;
	uint32_t *tags;
	uint64_t bad;
};

static void *rw_worker(void *p)
{
	struct rw_arg *a = p;
	uint64_t seed = 0x51ed27u * (a->id + 1);

	for (unsigned n = 1; n <= a->ops; n++) {
		size_t page = rnd(&seed) % a->npages;
		char *addr;

		page = page - page % 4 + a->id;
		if (page >= a->npages)
			continue;
		addr = a->base + page * TPAGE;
		if (rnd(&seed) % 2) {
			fill_text(addr, page, n);
			a->tags[page] = n;
		} else if (a->tags[page] ? !check_text(addr, page, a->tags[page])
					 : !page_is_zero(addr)) {
			a->bad++;
		}
	}
	return NULL;
}

static void pressure(uint64_t budget, int codec, unsigned handlers,
		     unsigned ops)
{
	struct upg_runtime *rt = swap_runtime(budget, codec, 0,
					      UPG_FULL_OVERCOMMIT, handlers);
	size_t size = 8 * budget, npages = size / TPAGE;
	uint32_t *tags = calloc(npages, sizeof(*tags));
	struct rw_arg args[4];
	pthread_t th[4];
	struct upg_region *r;
	struct upg_stats st;
	char *p;

	p = test_region(rt, size, &r);
	/* Fill it all first so the working set is really 8x the budget. */
	for (size_t i = 0; i < npages; i++) {
		fill_text(p + i * TPAGE, i, 1);
		tags[i] = 1;
	}
	for (unsigned t = 0; t < 4; t++) {
		args[t] = (struct rw_arg){ p, npages, t, ops, tags, 0 };
		pthread_create(&th[t], NULL, rw_worker, &args[t]);
	}
	for (unsigned t = 0; t < 4; t++) {
		pthread_join(th[t], NULL);
		ck_assert_uint_eq(args[t].bad, 0);
	}
	for (size_t i = 0; i < npages; i++)
		ck_assert_msg(check_text(p + i * TPAGE, i, tags[i]),
			      "page %zu differs from tag %u", i, tags[i]);
	st = test_stats(rt);
	ck_assert_uint_gt(st.evictions_dirty, npages / 2);
	ck_assert_uint_gt(st.faults[UPG_FAULT_SWAPIN_RAM] +
				  st.faults[UPG_FAULT_SWAPIN_DISK],
			  npages / 2);
	ck_assert_uint_eq(st.poisoned, 0);
	ck_assert_uint_eq(st.over_budget, 0);
	if (codec != UPG_CODEC_NONE)
		ck_assert_uint_lt(st.store_bytes_stored, st.store_bytes_in / 2);
	free(tags);
	upg_runtime_destroy(rt);
}

START_TEST(integrity_under_pressure_lz4)
{
	pressure(16 * MIB * scale(), UPG_CODEC_LZ4, 1, 10000 * scale());
}
END_TEST

START_TEST(integrity_under_pressure_zstd_two_handlers)
{
	pressure(8 * MIB * scale(), UPG_CODEC_ZSTD, 2, 8000 * scale());
}
END_TEST

START_TEST(integrity_under_pressure_no_codec)
{
	pressure(8 * MIB * scale(), UPG_CODEC_NONE, 1, 8000 * scale());
}
END_TEST

/* ---- the budget holds: resident memory sampled while it runs ---- */

START_TEST(budget_holds)
{
	const uint64_t budget = 32 * MIB;
	struct upg_runtime *rt = swap_runtime(budget, UPG_CODEC_LZ4, 0,
					      UPG_FULL_OVERCOMMIT, 1);
	size_t size = 8 * budget, npages = size / TPAGE;
	struct upg_region *r;
	struct sampler s;
	uint64_t seed = 42;
	long base_rss;
	char *p;

	p = test_region(rt, size, &r);
	base_rss = rss_kib();
	sampler_start(&s, rt, p, npages);
	for (size_t i = 0; i < npages; i++)
		fill_text(p + i * TPAGE, i, 7);
	for (size_t n = 0; n < npages / 2 * scale(); n++) {
		size_t i = rnd(&seed) % npages;

		ck_assert(check_text(p + i * TPAGE, i, 7));
	}
	sampler_stop(&s);
	fprintf(stderr, "budget_holds: peak region+RAM tier %ld KiB, "
		"peak RSS growth %ld KiB, budget %llu KiB\n",
		atomic_load(&s.peak_kib), atomic_load(&s.peak_rss_kib) - base_rss,
		(unsigned long long)(budget / 1024));
	sampled_within(&s, budget);
	/* The whole process, within the budget plus a fixed overhead
	 * (metadata, the store's buffers, the sampler's vector); see
	 * RSS_GOVERNED for why not under AddressSanitizer. */
	if (RSS_GOVERNED)
		ck_assert_msg(atomic_load(&s.peak_rss_kib) - base_rss <=
				      (long)(budget / 1024) + 12 * 1024,
			      "peak RSS grew by %ld KiB with a budget of %llu "
			      "KiB", atomic_load(&s.peak_rss_kib) - base_rss,
			      (unsigned long long)(budget / 1024));
	ck_assert_uint_le(test_stats(rt).pages_resident * TPAGE, budget);
	upg_runtime_destroy(rt);
}
END_TEST

/*
 * Reservations (reserve.h) hold the budget with writers racing the
 * evictor's scan: four threads read pages first (the zero page mapped over
 * their windows), then write them, which the kernel serves without a fault
 * and upager learns only at its next scan.  What the budget governs, sampled
 * as in budget_holds, never passes it; every byte reads back.
 */
struct racer {
	char *p;
	size_t npages;
	unsigned id;
};

#define RACERS 4

/* ThreadSanitizer makes every access of this thrash (a region 8x the
 * budget) some fifty times dearer: a tenth of the rounds still races the
 * same writers against the same evictor, within its time limit. */
#if defined(__SANITIZE_THREAD__)
#define RACER_ROUNDS 20
#else
#define RACER_ROUNDS 200
#endif

static void *racer_main(void *arg)
{
	struct racer *a = arg;
	uint64_t seed = 1000 + a->id;

	for (unsigned round = 0; round < RACER_ROUNDS * scale(); round++) {
		size_t lo = rnd(&seed) % (a->npages / 64) * 64;

		for (size_t i = lo; i < lo + 64; i++)
			if (!check_text(a->p + i * TPAGE, i, 0) &&
			    !page_is_zero(a->p + i * TPAGE))
				return (void *)1;
		for (size_t i = lo + a->id; i < lo + 64; i += RACERS)
			fill_text(a->p + i * TPAGE, i, 0);
	}
	return NULL;
}

START_TEST(reservations_hold_budget_with_racing_writers)
{
	const uint64_t budget = 16 * MIB;
	struct upg_runtime *rt = swap_runtime(budget, UPG_CODEC_LZ4, 0,
					      UPG_FULL_OVERCOMMIT, 2);
	size_t npages = 8 * budget / TPAGE;
	struct upg_region *r;
	struct racer a[RACERS];
	pthread_t t[RACERS];
	struct sampler s;
	char *p = test_region(rt, npages * TPAGE, &r);
	void *bad;

	sampler_start(&s, rt, p, npages);
	for (unsigned i = 0; i < RACERS; i++) {
		a[i] = (struct racer){ p, npages, i };
		ck_assert_int_eq(pthread_create(&t[i], NULL, racer_main, &a[i]),
				 0);
	}
	for (unsigned i = 0; i < RACERS; i++) {
		ck_assert_int_eq(pthread_join(t[i], &bad), 0);
		ck_assert_msg(!bad, "racer %u read a torn page", i);
	}
	sampler_stop(&s);
	fprintf(stderr, "racing writers: peak region+RAM tier %ld KiB, budget "
		"%llu KiB, %llu reservations reclaimed\n",
		atomic_load(&s.peak_kib), (unsigned long long)(budget / 1024),
		(unsigned long long)test_stats(rt).reservations_reclaimed);
	sampled_within(&s, budget);
	for (size_t i = 0; i < npages; i++)
		ck_assert_msg(check_text(p + i * TPAGE, i, 0) ||
			      page_is_zero(p + i * TPAGE), "page %zu", i);
	ck_assert_uint_gt(test_stats(rt).evictions_dirty, 0);
	upg_runtime_destroy(rt);
}
END_TEST

/*
 * Pages read first (the zero page mapped) and written later are copied by
 * the kernel without a fault.  They were charged when mapped
 * (reservations), and the evictor learns they were written from the
 * hardware page table on its own (nobody asks for statistics here): what
 * the budget governs stays within it, and every byte reads back.
 */
START_TEST(written_after_read_counts_against_budget)
{
	const uint64_t budget = 8 * MIB;
	struct upg_runtime *rt = swap_runtime(budget, UPG_CODEC_LZ4, 0,
					      UPG_FULL_OVERCOMMIT, 1);
	size_t npages = 4 * budget / TPAGE;
	struct upg_region *r;
	struct sampler s;
	char *p = test_region(rt, npages * TPAGE, &r);

	sampler_start(&s, rt, p, npages);
	for (size_t i = 0; i < npages; i++)
		(void)*(volatile char *)(p + i * TPAGE);
	for (size_t i = 0; i < npages; i++)
		fill_page(p + i * TPAGE, i, 9);
	sampler_stop(&s);
	sampled_within(&s, budget);
	for (size_t i = 0; i < npages; i++)
		ck_assert_msg(check_page(p + i * TPAGE, i, 9), "page %zu", i);
	ck_assert_uint_gt(test_stats(rt).evictions_dirty, npages / 2);
	upg_runtime_destroy(rt);
}
END_TEST

/* ---- zero and incompressible pages ---- */

/* Write pages of one kind through a region 4x an 8 MiB budget, check
 * them all back and return the statistics. */
static struct upg_stats through_budget(bool zero)
{
	const uint64_t budget = 8 * MIB;
	struct upg_runtime *rt = swap_runtime(budget, UPG_CODEC_LZ4, 0,
					      UPG_FULL_OVERCOMMIT, 1);
	size_t npages = 4 * budget / TPAGE;
	struct upg_region *r;
	struct upg_stats st;
	char *p = test_region(rt, npages * TPAGE, &r);

	for (size_t i = 0; i < npages; i++) {
		if (zero)
			memset(p + i * TPAGE, 0, TPAGE); /* written, all zero */
		else
			fill_page(p + i * TPAGE, i, 3);	/* random-looking */
	}
	for (size_t i = 0; i < npages; i++)
		ck_assert(zero ? page_is_zero(p + i * TPAGE)
			       : check_page(p + i * TPAGE, i, 3));
	st = test_stats(rt);
	ck_assert_uint_gt(st.evictions_dirty, npages / 2);
	upg_runtime_destroy(rt);
	return st;
}

START_TEST(zero_pages_store_nothing)
{
	ck_assert_uint_eq(through_budget(true).store_bytes_in, 0);
}
END_TEST

START_TEST(incompressible_pages_stored_raw)
{
	struct upg_stats st = through_budget(false);

	ck_assert_uint_gt(st.store_bytes_in, 0);
	/* Raw: nothing gained, and no more than a small header lost. */
	ck_assert_uint_ge(st.store_bytes_stored, st.store_bytes_in);
	ck_assert_uint_le(st.store_bytes_stored,
			  st.store_bytes_in + st.store_bytes_in / 50);
}
END_TEST

/* ---- a full store ---- */

START_TEST(full_store_overcommits_and_loses_nothing)
{
	const uint64_t budget = 4 * MIB;
	struct upg_runtime *rt = swap_runtime(budget, UPG_CODEC_NONE, MIB,
					      UPG_FULL_OVERCOMMIT, 1);
	size_t npages = 6 * budget / TPAGE;
	struct upg_region *r;
	struct upg_stats st;
	char *p;

	p = test_region(rt, npages * TPAGE, &r);
	for (size_t i = 0; i < npages; i++)
		fill_page(p + i * TPAGE, i, 5);
	for (size_t i = 0; i < npages; i++)
		ck_assert_msg(check_page(p + i * TPAGE, i, 5), "page %zu", i);
	st = test_stats(rt);
	ck_assert_uint_gt(st.over_budget, 0);
	ck_assert_uint_eq(st.poisoned, 0);
	upg_runtime_destroy(rt);
}
END_TEST

/* Runs in a child: the strict policy kills the writer with SIGBUS. */
START_TEST(full_store_strict_policy_sigbus)
{
	int status;
	pid_t pid = fork();

	if (pid == 0) {
		const uint64_t budget = 4 * MIB;
		struct upg_runtime *rt;
		struct upg_region *r;
		char *p;

		signal(SIGBUS, SIG_DFL);
		rt = swap_runtime(budget, UPG_CODEC_NONE, MIB, UPG_FULL_SIGBUS,
				  1);
		if (upg_anon_create(rt, 8 * budget, 0, &r))
			_exit(2);
		p = upg_region_addr(r);
		for (size_t i = 0; i < 8 * budget / TPAGE; i++)
			fill_page(p + i * TPAGE, i, 5);
		_exit(0);	/* never reached: the store cannot hold it */
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGBUS,
		      "child status %#x", status);
}
END_TEST

/* ---- lost stored copies: SIGBUS, never wrong data ---- */


/* The first STORED entry of the region and its page index. */
static int first_stored(struct upg_region *r, uint64_t *idx, uint64_t *h)
{
	for (uint64_t i = 0; i < r->npages; i++) {
		pte_t e = pt_get(&r->pt, i);

		if (pte_state(e) == PTE_STORED) {
			*idx = i;
			*h = pte_payload(e);
			return 0;
		}
	}
	return -1;
}

/* A runtime with a 4 MiB budget and a region four times that, every page
 * filled with text stamped with `tag` (most of it stored by now). */
static char *stored_region(uint64_t tag, struct upg_runtime **rt,
			   struct upg_region **r, size_t *npages)
{
	const uint64_t budget = 4 * MIB;
	char *p;

	*rt = swap_runtime(budget, UPG_CODEC_LZ4, 0, UPG_FULL_OVERCOMMIT, 1);
	*npages = 4 * budget / TPAGE;
	p = test_region(*rt, *npages * TPAGE, r);
	for (size_t i = 0; i < *npages; i++)
		fill_text(p + i * TPAGE, i, tag);
	return p;
}

static void lost_copy(bool io_error)
{
	struct upg_runtime *rt;
	struct upg_region *r;
	size_t npages;
	uint64_t idx, h;
	char *p = stored_region(11, &rt, &r, &npages);

	ck_assert_int_eq(first_stored(r, &idx, &h), 0);
	if (io_error) {
		ck_assert_int_eq(store_flush(rt->store), 0);
		store_inject(rt->store, STORE_INJECT_READ_EIO);
	} else {
		ck_assert_int_eq(store_corrupt(rt->store, h), 0);
	}
	ck_assert(touch_bus(p + idx * TPAGE));
	/* Again: still poisoned, never zeros or stale data. */
	ck_assert(touch_bus(p + idx * TPAGE + 100));
	ck_assert_uint_eq(test_stats(rt).poisoned, 1);
	/* Every other page is intact. */
	for (size_t i = 0; i < npages; i++)
		if (i != idx)
			ck_assert_msg(check_text(p + i * TPAGE, i, 11),
				      "page %zu", i);
	upg_runtime_destroy(rt);
}

START_TEST(corrupt_object_poisons_page)
{
	lost_copy(false);
}
END_TEST

START_TEST(read_error_poisons_page)
{
	lost_copy(true);
}
END_TEST

/* Is every page of [lo, hi) of r STORED? */
static bool all_stored(struct upg_region *r, uint64_t lo, uint64_t hi)
{
	for (uint64_t i = lo; i < hi; i++)
		if (pte_state(pt_get(&r->pt, i)) != PTE_STORED)
			return false;
	return true;
}

/*
 * A corrupt object inside a run read in order: the read-ahead fetches the
 * run together, finds the bad copy and leaves its page stored (no SIGBUS
 * for a page nobody touched); touching it then gets SIGBUS, and every
 * page around it reads back exactly.
 */
START_TEST(corrupt_object_in_read_ahead)
{
	struct upg_runtime *rt;
	struct upg_region *r;
	struct store_stats ss;
	size_t npages;
	uint64_t bad = 0;
	char *p = stored_region(13, &rt, &r, &npages);

	for (uint64_t i = 32; i + 16 < npages && !bad; i++)
		if (all_stored(r, i - 32, i + 16))
			bad = i;
	ck_assert_msg(bad, "no run of 48 stored pages");
	ck_assert_int_eq(store_corrupt(rt->store,
				       pte_payload(pt_get(&r->pt, bad))), 0);
	/* In order up to it: the windows grow to take it in with others. */
	for (uint64_t i = bad - 32; i < bad; i++)
		ck_assert_msg(check_text(p + i * TPAGE, i, 13), "page %llu",
			      (unsigned long long)i);
	store_get_stats(rt->store, &ss);
	ck_assert_uint_eq(ss.checksum_errors, 1);
	ck_assert_uint_eq(pte_state(pt_get(&r->pt, bad)), PTE_STORED);
	ck_assert_uint_eq(test_stats(rt).poisoned, 0);
	ck_assert(touch_bus(p + bad * TPAGE));
	ck_assert_uint_eq(test_stats(rt).poisoned, 1);
	for (uint64_t i = bad + 1; i < bad + 16; i++)
		ck_assert_msg(check_text(p + i * TPAGE, i, 13), "page %llu",
			      (unsigned long long)i);
	upg_runtime_destroy(rt);
}
END_TEST

/* ---- swap-in clusters and copies (cluster.h, swapcopy.h) ---- */

static uint64_t swapin_faults(struct upg_runtime *rt)
{
	struct upg_stats st = test_stats(rt);

	return st.faults[UPG_FAULT_SWAPIN_RAM] + st.faults[UPG_FAULT_SWAPIN_DISK];
}

/*
 * Pages read back near each other, but not in address order (here from
 * the top down, which the in-order read-ahead never takes): each fault
 * brings back its stored neighbours, so far fewer faults than pages, and
 * every page reads back exactly.
 */
START_TEST(swapins_come_in_clusters)
{
	struct upg_runtime *rt;
	struct upg_region *r;
	size_t npages;
	char *p = stored_region(17, &rt, &r, &npages);
	uint64_t before = swapin_faults(rt), faults, pages = npages / 2;

	for (size_t i = pages; i-- > 0;)
		ck_assert_msg(check_text(p + i * TPAGE, i, 17), "page %zu", i);
	faults = swapin_faults(rt) - before;
	ck_assert_uint_gt(test_stats(rt).swapin_clustered, pages / 2);
	ck_assert_msg(faults < pages / 4, "%llu swap-in faults for %llu pages",
		      (unsigned long long)faults, (unsigned long long)pages);
	upg_runtime_destroy(rt);
}
END_TEST

/*
 * A program that writes what it swaps in: after a few, pages come back
 * writable with their stored copies let go, instead of write-protected
 * (one write-protect fault each); what they hold then is stored again on
 * eviction, so every byte of a second pass reads back.
 */
START_TEST(written_swapins_come_back_writable)
{
	struct upg_runtime *rt;
	struct upg_region *r;
	size_t npages;
	char *p = stored_region(19, &rt, &r, &npages);
	uint64_t wp, swapped;

	for (int pass = 0; pass < 2; pass++)
		for (size_t i = 0; i < npages; i++) {
			ck_assert_msg(check_text(p + i * TPAGE, i, 19 + pass),
				      "page %zu pass %d", i, pass);
			fill_text(p + i * TPAGE, i, 20 + pass);
		}
	for (size_t i = 0; i < npages; i++)
		ck_assert_msg(check_text(p + i * TPAGE, i, 21), "page %zu", i);
	wp = test_stats(rt).faults[UPG_FAULT_WP];
	swapped = swapin_faults(rt) + test_stats(rt).swapin_clustered;
	ck_assert_uint_gt(swapped, npages);
	ck_assert_msg(wp < swapped / 4, "%llu write-protect faults for %llu "
		      "pages swapped in", (unsigned long long)wp,
		      (unsigned long long)swapped);
	upg_runtime_destroy(rt);
}
END_TEST

/*
 * UPAGER_RAM_TIER bounds the compressed RAM tier: with a region four times
 * the budget filled, the tier holds up to its share of the budget and the
 * rest of the stored pages is on disk; 0 sends every stored page to disk.
 * Every page reads back either way.
 */
#define TIER_BUDGET (8 * MIB)
#define TIER_PAGES (4 * TIER_BUDGET / TPAGE)

/* A region four times an 8 MiB budget, filled with fill_words(every, tag),
 * the RAM tier between pct and max_pct of the budget. */
static char *tier_region(unsigned pct, unsigned max_pct, unsigned every,
			 uint64_t tag, struct upg_runtime **rt)
{
	struct upg_options o;
	struct upg_region *r;
	char *p;

	swap_options(&o, TIER_BUDGET);
	o.ram_tier = pct;
	o.ram_tier_max = max_pct;
	*rt = test_runtime_opts(&o);
	p = test_region(*rt, TIER_PAGES * TPAGE, &r);
	for (size_t i = 0; i < TIER_PAGES; i++)
		fill_words(p + i * TPAGE, i, tag, every);
	return p;
}

static void ram_tier_share(unsigned pct)
{
	const uint64_t budget = TIER_BUDGET;
	/* Segments being filled or written sit in RAM whatever the share. */
	const uint64_t slack = 1 * MIB;
	size_t npages = TIER_PAGES;
	struct upg_runtime *rt;
	struct upg_stats st;
	char *p = tier_region(pct, pct, 4, 17, &rt);

	st = test_stats(rt);
	ck_assert_uint_le(st.store_ram_bytes, budget / 100 * pct + slack);
	/* Filled to its share when there is enough to store. */
	if (pct)
		ck_assert_uint_ge(st.store_ram_bytes, budget / 100 * pct / 2);
	for (size_t i = 0; i < npages; i++)
		ck_assert_msg(check_text(p + i * TPAGE, i, 17), "page %zu", i);
	upg_runtime_destroy(rt);
}

START_TEST(ram_tier_share_is_honoured)
{
	ram_tier_share(0);
	ram_tier_share(50);
	ram_tier_share(75);
}
END_TEST

/*
 * UPAGER_PROBATION: the youngest evicted pages wait uncompressed.  A
 * region four times the budget written, then read twice at random and
 * rewritten in part: every byte reads back, some swap-ins come from the
 * probation list and older pages were compressed off it, and resident
 * pages plus the RAM tier plus the list stay within the budget.
 */
START_TEST(probation_serves_recent_evictions)
{
	struct upg_options o;
	struct upg_runtime *rt;
	struct upg_region *r;
	struct upg_stats st;
	struct sampler smp;
	size_t npages = TIER_PAGES;
	uint64_t rng = 11;
	char *p;

	swap_options(&o, TIER_BUDGET);
	o.probation = 12;
	rt = test_runtime_opts(&o);
	p = test_region(rt, npages * TPAGE, &r);
	sampler_start(&smp, rt, p, npages);
	for (size_t i = 0; i < npages; i++)
		fill_words(p + i * TPAGE, i, 29, 16);
	for (int pass = 0; pass < 2; pass++)
		for (size_t k = 0; k < npages; k++) {
			size_t i = rnd(&rng) % npages;

			ck_assert_msg(check_words(p + i * TPAGE, i, 29, 16),
				      "page %zu pass %d", i, pass);
		}
	for (size_t i = 0; i < npages; i += 3)
		fill_words(p + i * TPAGE, i, 31, 16);
	for (size_t i = 0; i < npages; i++)
		ck_assert_msg(check_words(p + i * TPAGE, i, i % 3 ? 29 : 31,
					  16), "page %zu at the end", i);
	sampler_stop(&smp);
	st = test_stats(rt);
	fprintf(stderr, "probation: %llu swap-ins from it, %llu aged out, "
		"%llu pages on it; peak region+RAM %ld KiB of %llu\n",
		(unsigned long long)st.swapin_from_probation,
		(unsigned long long)st.probation_aged,
		(unsigned long long)st.probation_pages,
		atomic_load(&smp.peak_kib),
		(unsigned long long)(TIER_BUDGET / 1024));
	ck_assert_uint_gt(st.swapin_from_probation, 0);
	ck_assert_uint_gt(st.probation_aged, 0);
	ck_assert_uint_le(st.probation_pages, TIER_BUDGET / 100 * 12 / TPAGE);
	sampled_within(&smp, TIER_BUDGET);
	upg_runtime_destroy(rt);
}
END_TEST

/*
 * UPAGER_RAM_TIER_MAX: a program reading at random over a region four
 * times the budget, from pages that compress well, with the tier starting
 * at a quarter: swap-ins from the swap file make the tier grow, and clean
 * pages whose copies are on disk are brought back into it as they are
 * evicted, so later passes read less from disk.  Every byte reads back,
 * and resident pages plus the tier stay within the budget.
 */
START_TEST(ram_tier_grows_for_disk_reads)
{
	const uint64_t budget = TIER_BUDGET, slack = 1 * MIB;
	size_t npages = TIER_PAGES;
	uint64_t disk_first = 0, disk_last = 0, grown = 0, rng = 42;
	struct upg_runtime *rt;
	struct upg_stats st;
	char *p = tier_region(25, 75, 16, 23, &rt);

	for (int pass = 0; pass < 6; pass++) {
		uint64_t before = test_stats(rt).swapin_from_disk;

		for (size_t k = 0; k < npages; k++) {
			size_t i = rnd(&rng) % npages;

			ck_assert_msg(check_words(p + i * TPAGE, i, 23, 16),
				      "page %zu pass %d", i, pass);
		}
		st = test_stats(rt);
		ck_assert_uint_le(st.pages_resident * TPAGE + st.store_ram_bytes,
				  budget + slack);
		if (pass == 0)
			disk_first = st.swapin_from_disk - before;
		disk_last = st.swapin_from_disk - before;
		if (st.store_ram_limit > grown)
			grown = st.store_ram_limit;
	}
	st = test_stats(rt);
	/* It may shrink back once disk reads are rare. */
	ck_assert_msg(grown > budget / 100 * 25,
		      "the RAM tier stayed at %llu bytes",
		      (unsigned long long)grown);
	ck_assert_uint_gt(st.store_promoted, 0);
	ck_assert_msg(disk_last * 2 < disk_first,
		      "disk reads: %llu in the first pass, %llu in the last",
		      (unsigned long long)disk_first,
		      (unsigned long long)disk_last);
	for (size_t i = 0; i < npages; i++)
		ck_assert_msg(check_words(p + i * TPAGE, i, 23, 16), "page %zu", i);
	upg_runtime_destroy(rt);
}
END_TEST

/* ---- churn: the swap file stays within its bound ---- */

START_TEST(churn_stays_within_swap_bound)
{
	const uint64_t budget = 4 * MIB, swap = 24 * MIB;
	struct upg_runtime *rt = swap_runtime(budget, UPG_CODEC_NONE, swap,
					      UPG_FULL_OVERCOMMIT, 1);
	size_t npages = 4 * budget / TPAGE;	/* 16 MiB raw: fits once */
	struct upg_region *r;
	struct store_stats ss;
	struct upg_stats st;
	char *p;

	p = test_region(rt, npages * TPAGE, &r);
	for (unsigned round = 1; round <= 5; round++) {
		for (size_t i = 0; i < npages; i++)
			fill_page(p + i * TPAGE, i, round);
		store_get_stats(rt->store, &ss);
		ck_assert_uint_le(ss.file_bytes, swap);
	}
	for (size_t i = 0; i < npages; i++)
		ck_assert(check_page(p + i * TPAGE, i, 5));
	st = test_stats(rt);
	/* 5 rounds of 16 MiB went through a 24 MiB file: space was reused. */
	ck_assert_uint_gt(st.evictions_dirty, 4 * npages);
	ck_assert_uint_eq(st.over_budget, 0);
	upg_runtime_destroy(rt);
}
END_TEST

/* Destroying a region gives its stored pages back. */
START_TEST(destroy_frees_stored_pages)
{
	struct upg_runtime *rt = swap_runtime(4 * MIB, UPG_CODEC_LZ4, 0,
					      UPG_FULL_OVERCOMMIT, 1);
	struct upg_region *r;
	struct store_stats ss;
	size_t npages = 16 * MIB / TPAGE;
	char *p;

	p = test_region(rt, npages * TPAGE, &r);
	for (size_t i = 0; i < npages; i++)
		fill_text(p + i * TPAGE, i, 2);
	store_get_stats(rt->store, &ss);
	ck_assert_uint_gt(ss.objects, npages / 2);
	ck_assert_int_eq(upg_region_destroy(r), 0);
	store_get_stats(rt->store, &ss);
	ck_assert_uint_eq(ss.objects, 0);
	upg_runtime_destroy(rt);
}
END_TEST

Suite *make_suite(void)
{
	Suite *s = suite_create("swap");

	ADD_TEST(s, integrity_under_pressure_lz4, 600);
	ADD_TEST(s, integrity_under_pressure_zstd_two_handlers, 600);
	ADD_TEST(s, integrity_under_pressure_no_codec, 600);
	ADD_TEST(s, budget_holds, 600);
	ADD_TEST(s, reservations_hold_budget_with_racing_writers, 600);
	ADD_TEST(s, written_after_read_counts_against_budget, 600);
	ADD_TEST(s, zero_pages_store_nothing, 600);
	ADD_TEST(s, incompressible_pages_stored_raw, 600);
	ADD_TEST(s, full_store_overcommits_and_loses_nothing, 600);
	ADD_TEST(s, full_store_strict_policy_sigbus, 600);
	ADD_TEST(s, corrupt_object_poisons_page, 600);
	ADD_TEST(s, read_error_poisons_page, 600);
	ADD_TEST(s, corrupt_object_in_read_ahead, 600);
	ADD_TEST(s, swapins_come_in_clusters, 600);
	ADD_TEST(s, written_swapins_come_back_writable, 600);
	ADD_TEST(s, ram_tier_share_is_honoured, 600);
	ADD_TEST(s, ram_tier_grows_for_disk_reads, 600);
	ADD_TEST(s, probation_serves_recent_evictions, 600);
	ADD_TEST(s, churn_stays_within_swap_bound, 600);
	ADD_TEST(s, destroy_frees_stored_pages, 600);
	return s;
}
