/* SPDX-License-Identifier: MIT */
/*
 * Shared by every test program: each defines make_suite() and whether it
 * needs userfaultfd; testmain.c probes the kernel and exits 77 (meson's
 * "skipped") with a message when a needed feature is missing.
 */
#ifndef UPAGER_TESTLIB_H
#define UPAGER_TESTLIB_H

#include <check.h>
#include <pthread.h>
#include <stdatomic.h>
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <upager.h>

#define TEST_SKIP 77

#define KIB ((size_t)1 << 10)
#define MIB ((size_t)1 << 20)
#define GIB ((size_t)1 << 30)
#define TIB ((size_t)1 << 40)
#define TPAGE ((size_t)4096)

/* Each test in its own case named after it, so `CK_RUN_CASE=name` runs
 * just that one. */
#define ADD_TEST(suite, fn, timeout)                                          \
	do {                                                                  \
		TCase *tc_ = tcase_create(#fn);                               \
		tcase_add_test(tc_, fn);                                      \
		tcase_set_timeout(tc_, timeout);                              \
		suite_add_tcase(suite, tc_);                                  \
	} while (0)

/* Defined by each test program. */
Suite *make_suite(void);
extern const bool test_needs_uffd;

/* A runtime with default options (environment ignored) and `handlers`
 * threads; fails the test on error. */
struct upg_runtime *test_runtime(unsigned handlers, uint64_t mem_limit);
/* A runtime with these options; fails the test on error. */
struct upg_runtime *test_runtime_opts(const struct upg_options *o);
/* The runtime's statistics; fails the test on error. */
struct upg_stats test_stats(struct upg_runtime *rt);
/* Pages of [p, p + npages pages) in memory, by the kernel's count
 * (mincore), not upager's. */
size_t test_resident_pages(void *p, size_t npages);
/* Wait (up to 2 s) until `n` faults of `kind` are counted: a handler
 * counts a fault after it has woken the thread that took it. */
void test_wait_faults(struct upg_runtime *rt, int kind, uint64_t n);
/* An anonymous region of `size` bytes and its address. */
char *test_region(struct upg_runtime *rt, size_t size, struct upg_region **r);

/* The 64-bit word i of page `page` stamped with `tag`. */
static inline uint64_t pattern(uint64_t page, uint64_t tag, unsigned i)
{
	uint64_t x = (page * 0x9e3779b97f4a7c15ull) ^ (tag << 32) ^ i;

	x ^= x >> 29;
	return x * 0xbf58476d1ce4e5b9ull;
}

void fill_page(void *page, uint64_t pageno, uint64_t tag);
/* True if the page holds exactly fill_page(pageno, tag). */
bool check_page(const void *page, uint64_t pageno, uint64_t tag);
bool page_is_zero(const void *page);

/* Fast xorshift generator, one state per thread. */
static inline uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* Read the byte at addr; true if that raised SIGBUS (caught). */
bool touch_bus(volatile char *addr);

/* Resident memory of this process in KiB (VmRSS). */
long rss_kib(void);

/* ---- the budget, sampled while a test runs ---- */

/* Under AddressSanitizer the process's RSS also holds the shadow of every
 * managed page touched (an eighth of it, and more for the allocator's own
 * bookkeeping), which the budget does not govern; under ThreadSanitizer,
 * its shadow (four times what is touched) and its access history. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define RSS_GOVERNED false
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define RSS_GOVERNED false
#endif
#endif
#ifndef RSS_GOVERNED
#define RSS_GOVERNED true
#endif

/*
 * Samples, every 2 ms, what the budget governs: the region's pages in
 * memory by the kernel's count (mincore: written pages and zero-page
 * mappings alike) plus the store's RAM tier; and the process's RSS, which
 * bounds it from above in a build without a sanitizer.
 */
struct sampler {
	pthread_t thread;
	struct upg_runtime *rt;
	char *p;
	size_t npages;
	unsigned char *vec;
	_Atomic bool on;
	_Atomic long peak_kib;		/* region + RAM tier */
	_Atomic long peak_rss_kib;	/* whole process */
};


/* What the budget governs now, in KiB: the region's pages in memory plus
 * the RAM tier; -1 on error. */
long sampler_governed_kib(struct sampler *s);
/* Start sampling the region [p, p + npages pages) of rt every 2 ms. */
void sampler_start(struct sampler *s, struct upg_runtime *rt, char *p,
		   size_t npages);
void sampler_stop(struct sampler *s);
/* Fails the test unless the peak of what the budget governs stayed
 * within it (1 MiB of slack for pages between the two while sampled). */
void sampled_within(struct sampler *s, uint64_t budget);

#endif
