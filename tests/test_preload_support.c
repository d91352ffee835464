/* SPDX-License-Identifier: MIT */
/*
 * The core support preload mode stands on, through the public API, so that
 * it also runs under ASan and UBSan (the preload library itself cannot be
 * loaded into an uninstrumented program with a sanitizer): dropping pages
 * that are in the store, forgetting a range, and fork with evicted pages.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testlib.h"

const bool test_needs_uffd = true;

#define PAGES 4096	/* 16 MiB through a 4 MiB budget */

static struct upg_region *filled_region(struct upg_runtime *rt, char **mem)
{
	struct upg_region *r;

	ck_assert_int_eq(upg_anon_create(rt, PAGES * TPAGE, 0, &r), 0);
	*mem = upg_region_addr(r);
	for (size_t i = 0; i < PAGES; i++)
		fill_page(*mem + i * TPAGE, i, 1);
	return r;
}

static size_t bad_pages(const char *mem, size_t from, size_t to, uint64_t tag)
{
	size_t bad = 0;

	for (size_t i = from; i < to; i++)
		bad += tag ? !check_page(mem + i * TPAGE, i, tag)
			   : !page_is_zero(mem + i * TPAGE);
	return bad;
}

START_TEST(drop_discards_stored_copies)
{
	struct upg_runtime *rt = test_runtime(1, 4 * MIB);
	struct upg_stats st;
	char *mem;
	struct upg_region *r = filled_region(rt, &mem);

	ck_assert_int_eq(upg_stats_get(rt, &st), 0);
	ck_assert_uint_gt(st.evictions_dirty, 0);
	ck_assert_int_eq(upg_region_drop(r, 1024 * TPAGE, 2048 * TPAGE), 0);
	ck_assert_uint_eq(bad_pages(mem, 1024, 3072, 0), 0);
	ck_assert_uint_eq(bad_pages(mem, 0, 1024, 1), 0);
	ck_assert_uint_eq(bad_pages(mem, 3072, PAGES, 1), 0);
	/* Dropped pages are usable again, and evicted again. */
	for (size_t i = 1024; i < 3072; i++)
		fill_page(mem + i * TPAGE, i, 2);
	ck_assert_uint_eq(bad_pages(mem, 1024, 3072, 2), 0);
	ck_assert_int_eq(upg_region_drop(r, 1, TPAGE), -EINVAL);
	ck_assert_int_eq(upg_region_drop(r, 0, (PAGES + 1) * TPAGE), -EINVAL);
	upg_region_destroy(r);
	upg_runtime_destroy(rt);
}
END_TEST

START_TEST(forget_keeps_a_foreign_mapping)
{
	struct upg_runtime *rt = test_runtime(1, 4 * MIB);
	char *mem, *p;
	struct upg_region *r = filled_region(rt, &mem);

	ck_assert_int_eq(upg_region_forget(r, 64 * TPAGE, 64 * TPAGE), 0);
	p = mmap(mem + 64 * TPAGE, 64 * TPAGE, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	ck_assert_ptr_eq(p, mem + 64 * TPAGE);
	memset(p, 0x5a, 64 * TPAGE);
	/* Faults around the hole never step into it. */
	ck_assert_uint_eq(bad_pages(mem, 0, 64, 1), 0);
	ck_assert_uint_eq(bad_pages(mem, 128, PAGES, 1), 0);
	ck_assert_int_eq(p[0], 0x5a);
	upg_region_destroy(r);
	upg_runtime_destroy(rt);
}
END_TEST

/* Half a page of pattern, half of one byte: stored compressed (fork hands
 * the child stored pages as they are kept, compressed or raw). */
static void fill_half(char *page, size_t i)
{
	fill_page(page, i, 5);
	memset(page + TPAGE / 2, (int)(i & 0x7f) | 1, TPAGE / 2);
}

static size_t bad_halves(const char *mem, size_t from, size_t to)
{
	char want[TPAGE];
	size_t bad = 0;

	for (size_t i = from; i < to; i++) {
		fill_half(want, i);
		bad += memcmp(mem + i * TPAGE, want, TPAGE) != 0;
	}
	return bad;
}

START_TEST(fork_child_sees_evicted_pages)
{
	struct upg_runtime *rt = test_runtime(1, 4 * MIB);
	char *mem;
	struct upg_region *r = filled_region(rt, &mem);
	int status;
	pid_t pid;

	/* The upper half compressible, the lower half not. */
	for (size_t i = PAGES / 2; i < PAGES; i++)
		fill_half(mem + i * TPAGE, i);
	ck_assert_int_eq(upg_region_inherit(r), 0);
	ck_assert_int_eq(upg_fork_prepare(rt), 0);
	pid = fork();
	if (pid == 0) {
		if (upg_fork_child(rt))
			_exit(2);
		/* Everything, then writes that get evicted in the child. */
		if (bad_pages(mem, 0, PAGES / 2, 1) ||
		    bad_halves(mem, PAGES / 2, PAGES))
			_exit(3);
		for (size_t i = 0; i < PAGES; i += 2)
			fill_page(mem + i * TPAGE, i, 4);
		for (size_t i = 0; i < PAGES; i += 2)
			if (!check_page(mem + i * TPAGE, i, 4))
				_exit(4);
		_exit(0);
	}
	upg_fork_parent(rt);
	ck_assert_int_gt(pid, 0);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		      "child status %#x", status);
	ck_assert_uint_eq(bad_pages(mem, 0, PAGES / 2, 1), 0);
	ck_assert_uint_eq(bad_halves(mem, PAGES / 2, PAGES), 0);
	upg_region_destroy(r);
	upg_runtime_destroy(rt);
}
END_TEST

/*
 * Pages shared copy-on-write with a forked child still leave memory (MOVE
 * refuses a page that is not exclusive; the evictor copies it out instead).
 * The child keeps its own copies; the parent reads its pages back exactly.
 */
START_TEST(pages_shared_with_a_child_are_evicted)
{
	const size_t budget = 8 * MIB, npages = 4 * MIB / TPAGE;
	struct upg_runtime *rt = test_runtime(1, budget);
	struct upg_region *ra, *rb;
	char *a = test_region(rt, npages * TPAGE, &ra), *b, c = 0;
	int go[2], status;
	pid_t pid;

	for (size_t i = 0; i < npages; i++)
		fill_page(a + i * TPAGE, i, 7);
	ck_assert_int_eq(pipe(go), 0);
	ck_assert_int_eq(upg_region_inherit(ra), 0);
	ck_assert_int_eq(upg_fork_prepare(rt), 0);
	pid = fork();
	if (pid == 0) {
		if (upg_fork_child(rt) || read(go[0], &c, 1) != 1)
			_exit(2);
		for (size_t i = 0; i < npages; i++)
			if (!check_page(a + i * TPAGE, i, 7))
				_exit(1);
		_exit(0);
	}
	upg_fork_parent(rt);
	ck_assert_int_gt(pid, 0);
	/* Four budgets written elsewhere push every page of a out. */
	b = test_region(rt, 4 * budget, &rb);
	for (size_t i = 0; i < 4 * budget / TPAGE; i++)
		fill_page(b + i * TPAGE, i, 8);
	ck_assert_uint_lt(test_resident_pages(a, npages), npages / 4);
	ck_assert_uint_le(test_stats(rt).pages_resident * TPAGE, budget);
	ck_assert_int_eq(write(go[1], &c, 1), 1);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		      "child status %#x", status);
	for (size_t i = 0; i < npages; i++)
		ck_assert_msg(check_page(a + i * TPAGE, i, 7), "page %zu", i);
	close(go[0]);
	close(go[1]);
	upg_runtime_destroy(rt);
}
END_TEST

Suite *make_suite(void)
{
	Suite *s = suite_create("preload_support");

	ADD_TEST(s, drop_discards_stored_copies, 120);
	ADD_TEST(s, forget_keeps_a_foreign_mapping, 120);
	ADD_TEST(s, fork_child_sees_evicted_pages, 120);
	ADD_TEST(s, pages_shared_with_a_child_are_evicted, 120);
	return s;
}
