/* SPDX-License-Identifier: MIT */
/*
 * File regions through the real kernel and real files under /var/tmp:
 * contents read exactly under a budget smaller than the file; written
 * pages reach the file on sync and on eviction (shared) and never
 * (private); read-only regions refuse writes; the end of the file, a
 * truncation underneath, two regions over one file; bad arguments.
 * Every file is checked with read(2), never through the region itself.
 */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pagetable.h"
#include "runtime.h"
#include "store.h"
#include "testlib.h"

const bool test_needs_uffd = true;

/* ---- helpers ---- */

struct tfile {
	char dir[64], path[96];
	int fd;
	size_t npages;
};

typedef void fill_fn(void *page, uint64_t pageno, uint64_t tag);

/* A page that compresses about 30 to 1: its first 64 bytes stamped as
 * fill_page stamps them, repeated. */
static void fill_text(void *page, uint64_t pageno, uint64_t tag)
{
	uint64_t *w = page;

	for (unsigned i = 0; i < TPAGE / 8; i++)
		w[i] = pattern(pageno, tag, i % 8);
}

static bool check_text(const void *page, uint64_t pageno, uint64_t tag)
{
	char want[TPAGE];

	fill_text(want, pageno, tag);
	return memcmp(page, want, TPAGE) == 0;
}

/* A file of npages pages, page i stamped fill(i, tag), plus `tail` bytes
 * of page npages stamped the same way. */
static void tfile_fill(struct tfile *t, size_t npages, size_t tail,
		       uint64_t tag, fill_fn *fill)
{
	char page[TPAGE];

	strcpy(t->dir, "/var/tmp/upg-file-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(t->dir));
	snprintf(t->path, sizeof(t->path), "%s/data", t->dir);
	t->fd = open(t->path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	ck_assert_int_ge(t->fd, 0);
	t->npages = npages;
	for (size_t i = 0; i <= npages; i++) {
		size_t len = i < npages ? TPAGE : tail;

		if (len == 0)
			break;
		fill(page, i, tag);
		ck_assert_int_eq(pwrite(t->fd, page, len, (off_t)(i * TPAGE)),
				 (ssize_t)len);
	}
	ck_assert_int_eq(fsync(t->fd), 0);
}

static void tfile_make(struct tfile *t, size_t npages, size_t tail,
		       uint64_t tag)
{
	tfile_fill(t, npages, tail, tag, fill_page);
}

static void tfile_remove(struct tfile *t)
{
	close(t->fd);
	unlink(t->path);
	rmdir(t->dir);
}

/* Page i of the file, read with pread. */
static void tfile_page(const struct tfile *t, size_t i, char *page)
{
	ck_assert_int_eq(pread(t->fd, page, TPAGE, (off_t)(i * TPAGE)),
			 (ssize_t)TPAGE);
}

static char *map(struct upg_runtime *rt, const struct tfile *t, off_t off,
		 size_t size, unsigned flags, struct upg_region **r)
{
	int err = upg_file_create(rt, t->fd, off, size, flags, r);

	ck_assert_msg(err == 0, "upg_file_create: %s", strerror(-err));
	return upg_region_addr(*r);
}

/* ---- reading ---- */

/* Random reads over a file four times the budget: every page exact,
 * clean pages dropped and read again, the budget kept. */
START_TEST(random_reads_beyond_budget)
{
	const uint64_t budget = 4 * MIB;
	struct upg_runtime *rt = test_runtime(2, budget);
	struct tfile t;
	struct upg_region *r;
	struct upg_stats st;
	uint64_t seed = 0x2545f491;
	char *p;

	tfile_make(&t, 4 * budget / TPAGE, 0, 1);
	p = map(rt, &t, 0, t.npages * TPAGE, UPG_FILE_PRIVATE, &r);
	for (unsigned n = 0; n < 12000; n++) {
		size_t i = rnd(&seed) % t.npages;

		ck_assert_msg(check_page(p + i * TPAGE, i, 1), "page %zu", i);
	}
	st = test_stats(rt);
	ck_assert_uint_gt(st.faults[UPG_FAULT_FILE], 1000);
	ck_assert_uint_gt(st.evictions_clean, 1000);
	ck_assert_uint_eq(st.evictions_dirty, 0);
	ck_assert_uint_le(st.pages_resident * TPAGE, budget);
	/* The dropped pages really left memory, not only the counters. */
	ck_assert_uint_le(test_resident_pages(p, t.npages) * TPAGE, budget);
	ck_assert_uint_eq(st.file_pages_written, 0);
	ck_assert_uint_eq(st.store_bytes_in, 0);
	ck_assert_int_eq(upg_region_destroy(r), 0);
	upg_runtime_destroy(rt);
	tfile_remove(&t);
}
END_TEST

/* Two threads reading pages of a region at random, checking each. */
struct reader {
	pthread_t thread;
	const char *base;
	size_t npages;
	uint64_t seed;
	unsigned n, bad;
};

static void *read_loop(void *arg)
{
	struct reader *rd = arg;

	for (unsigned k = 0; k < rd->n; k++) {
		size_t i = rnd(&rd->seed) % rd->npages;

		rd->bad += !check_text(rd->base + i * TPAGE, i, 11);
	}
	return NULL;
}

/*
 * A compressible file four times the budget, read at random by two
 * threads: clean pages evicted leave compressed copies in the RAM tier,
 * later faults are served from them, every byte exact, and the copies
 * are never written to the swap file nor over the budget.
 */
START_TEST(random_reads_keep_copies)
{
	const uint64_t budget = 4 * MIB;
	struct upg_runtime *rt = test_runtime(2, budget);
	struct reader rd[2];
	struct tfile t;
	struct upg_region *r;
	struct upg_stats st;
	char *p;

	tfile_fill(&t, 4 * budget / TPAGE, 0, 11, fill_text);
	p = map(rt, &t, 0, t.npages * TPAGE, UPG_FILE_READONLY, &r);
	for (unsigned k = 0; k < 2; k++) {
		rd[k] = (struct reader){ .base = p, .npages = t.npages,
					 .seed = 77 + k, .n = 10000 };
		ck_assert_int_eq(pthread_create(&rd[k].thread, NULL,
						read_loop, &rd[k]), 0);
	}
	for (unsigned k = 0; k < 2; k++) {
		pthread_join(rd[k].thread, NULL);
		ck_assert_uint_eq(rd[k].bad, 0);
	}
	st = test_stats(rt);
	ck_assert_uint_gt(st.file_pages_kept, 1000);
	ck_assert_uint_gt(st.file_copy_hits, 1000);
	/* A copy comes back as a swap-in. */
	ck_assert_uint_ge(st.faults[UPG_FAULT_SWAPIN_RAM] +
				  st.faults[UPG_FAULT_SWAPIN_DISK],
			  st.file_copy_hits);
	ck_assert_uint_eq(st.store_disk_bytes, 0);
	ck_assert_uint_eq(st.evictions_dirty, 0);
	ck_assert_uint_le(st.pages_resident * TPAGE + st.store_ram_bytes,
			  budget);
	ck_assert_uint_le(test_resident_pages(p, t.npages) * TPAGE, budget);
	/* Scanned pages are not worth a copy: one read, then gone. */
	ck_assert_int_eq(upg_region_destroy(r), 0);
	st = test_stats(rt);
	p = map(rt, &t, 0, t.npages * TPAGE, UPG_FILE_READONLY, &r);
	for (size_t i = 0; i < t.npages; i++)
		ck_assert_msg(check_text(p + i * TPAGE, i, 11), "page %zu", i);
	ck_assert_uint_le(test_stats(rt).file_pages_kept - st.file_pages_kept,
			  8);
	ck_assert_uint_gt(test_stats(rt).evictions_clean - st.evictions_clean,
			  t.npages / 2);
	ck_assert_int_eq(upg_region_destroy(r), 0);
	upg_runtime_destroy(rt);
	tfile_remove(&t);
}
END_TEST

/* Kept copies of pages the file no longer covers are not served: past
 * the new end SIGBUS, the new last page read again and zero-padded; a
 * corrupt copy is read from the file instead. */
START_TEST(truncated_under_copies)
{
	const size_t npages = 1024, keep = 512;
	struct upg_runtime *rt = test_runtime(1, 1 * MIB);
	struct tfile t;
	struct upg_region *r;
	size_t past = 0, below = 0;
	char page[TPAGE], *p;
	uint64_t seed = 5;

	tfile_fill(&t, npages, 0, 12, fill_text);
	p = map(rt, &t, 0, npages * TPAGE, UPG_FILE_PRIVATE, &r);
	for (unsigned k = 0; k < 4 * npages; k++) {
		size_t i = rnd(&seed) % npages;

		ck_assert(check_text(p + i * TPAGE, i, 12));
	}
	/* Copies on both sides of the coming end. */
	for (size_t i = 0; i < npages; i++) {
		pte_t e = pt_get(&r->pt, i);

		if (pte_state(e) != PTE_STORED || !(e & PTE_FILECOPY))
			continue;
		if (i > keep && !past)
			past = i;
		if (i < keep)
			below = i;
	}
	ck_assert_msg(past && below, "no copies kept (past %zu below %zu)",
		      past, below);
	/* A copy found corrupt is not served, nor is its page lost: the
	 * file still has it. */
	ck_assert_int_eq(store_corrupt(rt->store,
				       pte_payload(pt_get(&r->pt, below))), 0);
	ck_assert(check_text(p + below * TPAGE, below, 12));
	ck_assert_uint_eq(test_stats(rt).poisoned, 0);
	below = 0;
	for (size_t i = 0; i < keep; i++) {
		pte_t e = pt_get(&r->pt, i);

		if (pte_state(e) == PTE_STORED && (e & PTE_FILECOPY))
			below = i;
	}
	ck_assert(below);
	ck_assert_int_eq(ftruncate(t.fd, (off_t)(keep * TPAGE + 10)), 0);
	ck_assert(touch_bus(p + past * TPAGE));
	ck_assert_uint_eq(test_stats(rt).file_past_eof, 1);
	ck_assert(check_text(p + below * TPAGE, below, 12));
	fill_text(page, keep, 12);
	ck_assert_int_eq(memcmp(p + keep * TPAGE, page, 10), 0);
	for (size_t i = 10; i < TPAGE; i++)
		ck_assert_int_eq(p[keep * TPAGE + i], 0);
	upg_runtime_destroy(rt);
	tfile_remove(&t);
}
END_TEST

static struct upg_stats scan(unsigned handlers, int advice, size_t npages)
{
	struct upg_runtime *rt = test_runtime(handlers, 0);
	struct tfile t;
	struct upg_region *r;
	struct upg_stats st;
	char *p;

	tfile_make(&t, npages, 0, 2);
	p = map(rt, &t, 0, npages * TPAGE, UPG_FILE_READONLY, &r);
	ck_assert_int_eq(upg_region_advise(r, advice), 0);
	for (size_t i = 0; i < npages; i++)
		ck_assert_msg(check_page(p + i * TPAGE, i, 2), "page %zu", i);
	/* A handler counts after it wakes the thread: destroying waits
	 * for it to be done. */
	ck_assert_int_eq(upg_region_destroy(r), 0);
	st = test_stats(rt);
	ck_assert_uint_eq(st.file_pages_read, npages);
	upg_runtime_destroy(rt);
	tfile_remove(&t);
	return st;
}

/* In-order faults grow a read-ahead window; RANDOM turns it off;
 * SEQUENTIAL reads 8 MiB per fault from the first. */
START_TEST(read_ahead_follows_advice)
{
	const size_t npages = 8 * MIB / TPAGE;
	struct upg_stats st;

	st = scan(1, UPG_ADVICE_NORMAL, npages);
	ck_assert_uint_lt(st.faults[UPG_FAULT_FILE], npages / 32);
	ck_assert_uint_gt(st.file_readahead, npages / 2);
	st = scan(2, UPG_ADVICE_RANDOM, npages);
	ck_assert_uint_ge(st.faults[UPG_FAULT_FILE], npages);
	ck_assert_uint_eq(st.file_readahead, 0);
	st = scan(1, UPG_ADVICE_SEQUENTIAL, npages);
	ck_assert_uint_le(st.faults[UPG_FAULT_FILE], npages / 2048 + 2);
}
END_TEST

/* The page holding the end of the file is zero-padded; pages wholly past
 * it get SIGBUS; writes past the end never grow the file. */
START_TEST(end_of_file_zero_padded)
{
	struct upg_runtime *rt = test_runtime(1, 0);
	struct tfile t;
	struct upg_region *r;
	char page[TPAGE], *p;
	struct stat sb;

	tfile_make(&t, 5, 100, 3);
	p = map(rt, &t, 0, 8 * TPAGE, UPG_FILE_SHARED, &r);
	fill_page(page, 5, 3);
	ck_assert_int_eq(memcmp(p + 5 * TPAGE, page, 100), 0);
	for (size_t i = 100; i < TPAGE; i++)
		ck_assert_int_eq(p[5 * TPAGE + i], 0);
	ck_assert(check_page(p + 4 * TPAGE, 4, 3));
	ck_assert(touch_bus(p + 6 * TPAGE));
	ck_assert(touch_bus(p + 7 * TPAGE + 5));
	ck_assert(touch_bus(p + 6 * TPAGE)); /* and again */
	ck_assert_uint_eq(test_stats(rt).file_past_eof, 2);
	memset(p + 5 * TPAGE, 0x5a, TPAGE);
	ck_assert_int_eq(upg_region_sync(r), 0);
	ck_assert_int_eq(fstat(t.fd, &sb), 0);
	ck_assert_int_eq(sb.st_size, 5 * TPAGE + 100);
	ck_assert_int_eq(pread(t.fd, page, TPAGE, 5 * TPAGE), 100);
	for (size_t i = 0; i < 100; i++)
		ck_assert_int_eq(page[i], 0x5a);
	upg_runtime_destroy(rt);
	tfile_remove(&t);
}
END_TEST

/* The file shrinks underneath: pages past the new end get SIGBUS when
 * first read, the new last page is zero-padded, pages in memory stay. */
START_TEST(truncated_file_sigbus)
{
	struct upg_runtime *rt = test_runtime(1, 0);
	struct tfile t;
	struct upg_region *r;
	char page[TPAGE], *p;

	tfile_make(&t, 16, 0, 4);
	p = map(rt, &t, 0, 16 * TPAGE, UPG_FILE_PRIVATE, &r);
	ck_assert_int_eq(upg_region_advise(r, UPG_ADVICE_RANDOM), 0);
	for (size_t i = 0; i < 4; i++)
		ck_assert(check_page(p + i * TPAGE, i, 4));
	ck_assert_int_eq(ftruncate(t.fd, 8 * TPAGE + 10), 0);
	ck_assert(check_page(p + 2 * TPAGE, 2, 4));
	ck_assert(check_page(p + 7 * TPAGE, 7, 4));
	fill_page(page, 8, 4);
	ck_assert_int_eq(memcmp(p + 8 * TPAGE, page, 10), 0);
	for (size_t i = 10; i < TPAGE; i++)
		ck_assert_int_eq(p[8 * TPAGE + i], 0);
	ck_assert(touch_bus(p + 9 * TPAGE));
	ck_assert(touch_bus(p + 15 * TPAGE + 4000));
	ck_assert_uint_eq(test_stats(rt).file_past_eof, 2);
	upg_runtime_destroy(rt);
	tfile_remove(&t);
}
END_TEST

/* ---- writing ---- */

/* Written pages reach the file on sync, and only they: the file equals
 * the expected image, read with read(2). */
START_TEST(shared_sync_writes_file)
{
	struct upg_runtime *rt = test_runtime(2, 0);
	const size_t npages = 2048;
	uint8_t *tags = calloc(npages, 1);
	struct tfile t;
	struct upg_region *r;
	uint64_t seed = 77;
	char page[TPAGE], *p;

	tfile_make(&t, npages, 0, 1);
	p = map(rt, &t, 0, npages * TPAGE, UPG_FILE_SHARED, &r);
	for (unsigned round = 2; round < 5; round++) {
		for (unsigned n = 0; n < 300; n++) {
			size_t i = rnd(&seed) % npages;

			fill_page(p + i * TPAGE, i, round);
			tags[i] = (uint8_t)round;
		}
		/* Some pages only read, some untouched. */
		for (size_t i = 0; i < npages; i += 7)
			ck_assert(check_page(p + i * TPAGE, i,
					     tags[i] ? tags[i] : 1));
		ck_assert_int_eq(upg_region_sync(r), 0);
		for (size_t i = 0; i < npages; i++) {
			tfile_page(&t, i, page);
			ck_assert_msg(check_page(page, i, tags[i] ? tags[i] : 1),
				      "round %u page %zu", round, i);
		}
	}
	/* Nothing dirty: a sync writes nothing. */
	{
		uint64_t before = test_stats(rt).file_pages_written;

		ck_assert_int_eq(upg_region_sync(r), 0);
		ck_assert_uint_eq(test_stats(rt).file_pages_written, before);
	}
	upg_runtime_destroy(rt);
	tfile_remove(&t);
	free(tags);
}
END_TEST

/* Dirty pages evicted under the budget go to the file, not the store;
 * destroying the region writes back what is left. */
START_TEST(shared_eviction_writes_back)
{
	const uint64_t budget = 4 * MIB;
	struct upg_runtime *rt = test_runtime(1, budget);
	struct tfile t;
	struct upg_region *r;
	struct upg_stats st;
	char page[TPAGE], *p;

	tfile_make(&t, 4 * budget / TPAGE, 0, 1);
	p = map(rt, &t, 0, t.npages * TPAGE, UPG_FILE_SHARED, &r);
	for (size_t i = 0; i < t.npages; i++)
		fill_page(p + i * TPAGE, i, 5);
	for (size_t i = 0; i < t.npages; i++)
		ck_assert_msg(check_page(p + i * TPAGE, i, 5), "page %zu", i);
	st = test_stats(rt);
	ck_assert_uint_gt(st.evictions_dirty, t.npages / 2);
	ck_assert_uint_ge(st.file_pages_written, st.evictions_dirty);
	ck_assert_uint_eq(st.store_bytes_in, 0);
	ck_assert_uint_le(st.pages_resident * TPAGE, budget);
	/* No sync: destroy writes the resident dirty pages back. */
	ck_assert_int_eq(upg_region_destroy(r), 0);
	for (size_t i = 0; i < t.npages; i++) {
		tfile_page(&t, i, page);
		ck_assert_msg(check_page(page, i, 5), "page %zu", i);
	}
	upg_runtime_destroy(rt);
	tfile_remove(&t);
}
END_TEST

/* A private region never writes its file, under eviction and sync. */
START_TEST(private_never_changes_file)
{
	const uint64_t budget = 4 * MIB;
	struct upg_runtime *rt = test_runtime(1, budget);
	struct tfile t;
	struct upg_region *r;
	struct upg_stats st;
	char page[TPAGE], *p;

	tfile_make(&t, 4 * budget / TPAGE, 0, 1);
	p = map(rt, &t, 0, t.npages * TPAGE, UPG_FILE_PRIVATE, &r);
	for (size_t i = 0; i < t.npages; i += 2)
		fill_page(p + i * TPAGE, i, 6);
	memset(p + TPAGE, 0, TPAGE);	/* an all-zero written page */
	for (size_t i = 0; i < t.npages; i++) {
		uint64_t tag = i % 2 ? 1 : 6;

		if (i == 1)
			ck_assert(page_is_zero(p + TPAGE));
		else
			ck_assert_msg(check_page(p + i * TPAGE, i, tag),
				      "page %zu", i);
	}
	ck_assert_int_eq(upg_region_sync(r), 0);
	st = test_stats(rt);
	ck_assert_uint_gt(st.evictions_dirty, t.npages / 4);
	ck_assert_uint_gt(st.store_bytes_in, 0);
	ck_assert_uint_eq(st.file_pages_written, 0);
	ck_assert_int_eq(upg_region_destroy(r), 0);
	for (size_t i = 0; i < t.npages; i++) {
		tfile_page(&t, i, page);
		ck_assert_msg(check_page(page, i, 1), "page %zu", i);
	}
	upg_runtime_destroy(rt);
	tfile_remove(&t);
}
END_TEST

/* Runs in a child made before any runtime: a write to a read-only region
 * gets SIGSEGV, as with a read-only mmap; reads work. */
START_TEST(readonly_write_sigsegv)
{
	struct tfile t;
	int status;
	pid_t pid;

	tfile_make(&t, 8, 0, 7);
	pid = fork();
	if (pid == 0) {
		struct upg_runtime *rt = test_runtime(1, 0);
		struct upg_region *r;
		char *p = map(rt, &t, 0, 8 * TPAGE, UPG_FILE_READONLY, &r);

		signal(SIGSEGV, SIG_DFL);
		if (!check_page(p + 3 * TPAGE, 3, 7))
			_exit(2);
		p[3 * TPAGE] = 1;
		_exit(0);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV,
		      "child status %#x", status);
	tfile_remove(&t);
}
END_TEST

/* Two regions over one file, at different offsets: each reads the file;
 * a change synced through one is read by the other's first touch. */
START_TEST(two_regions_one_file)
{
	struct upg_runtime *rt = test_runtime(2, 0);
	struct tfile t;
	struct upg_region *a, *b;
	char *pa, *pb;

	tfile_make(&t, 64, 0, 8);
	pa = map(rt, &t, 0, 64 * TPAGE, UPG_FILE_SHARED, &a);
	pb = map(rt, &t, 16 * TPAGE, 48 * TPAGE, UPG_FILE_READONLY, &b);
	ck_assert_int_eq(upg_region_advise(b, UPG_ADVICE_RANDOM), 0);
	for (size_t i = 0; i < 16; i++) {
		ck_assert(check_page(pa + i * TPAGE, i, 8));
		ck_assert(check_page(pb + i * TPAGE, i + 16, 8));
	}
	fill_page(pa + 40 * TPAGE, 40, 9);
	ck_assert_int_eq(upg_region_sync(a), 0);
	ck_assert(check_page(pb + 24 * TPAGE, 40, 9));
	ck_assert(check_page(pb + 25 * TPAGE, 41, 8));
	ck_assert_int_eq(upg_region_destroy(b), 0);
	ck_assert(check_page(pa + 40 * TPAGE, 40, 9));
	ck_assert_int_eq(upg_region_destroy(a), 0);
	upg_runtime_destroy(rt);
	tfile_remove(&t);
}
END_TEST

/* ---- a sync racing writers loses no write ---- */

struct writer {
	char *base;
	size_t npages;
	_Atomic bool stop;
	uint32_t *tags;
};

static void *write_loop(void *arg)
{
	struct writer *w = arg;
	uint64_t seed = 99;

	for (uint32_t n = 10; !atomic_load(&w->stop); n++) {
		size_t i = rnd(&seed) % w->npages;

		fill_page(w->base + i * TPAGE, i, n);
		w->tags[i] = n;
	}
	return NULL;
}

START_TEST(sync_racing_writers_loses_nothing)
{
	struct upg_runtime *rt = test_runtime(2, 2 * MIB);
	struct writer w = { .npages = 1024 };
	struct tfile t;
	struct upg_region *r;
	char page[TPAGE];
	pthread_t th;

	w.tags = calloc(w.npages, sizeof(*w.tags));
	tfile_make(&t, w.npages, 0, 1);
	w.base = map(rt, &t, 0, w.npages * TPAGE, UPG_FILE_SHARED, &r);
	ck_assert_int_eq(pthread_create(&th, NULL, write_loop, &w), 0);
	for (int i = 0; i < 30; i++)
		ck_assert_int_eq(upg_region_sync(r), 0);
	atomic_store(&w.stop, true);
	pthread_join(th, NULL);
	ck_assert_int_eq(upg_region_sync(r), 0);
	for (size_t i = 0; i < w.npages; i++) {
		tfile_page(&t, i, page);
		ck_assert_msg(check_page(page, i, w.tags[i] ? w.tags[i] : 1),
			      "page %zu", i);
	}
	ck_assert_int_eq(upg_region_destroy(r), 0);
	upg_runtime_destroy(rt);
	tfile_remove(&t);
	free(w.tags);
}
END_TEST

/* ---- arguments ---- */

START_TEST(bad_arguments)
{
	struct upg_runtime *rt = test_runtime(1, 0);
	struct upg_region *r = NULL, *anon;
	struct tfile t;
	int ro, wo, app, dir;

	tfile_make(&t, 4, 0, 1);
	ck_assert_int_eq(upg_file_create(NULL, t.fd, 0, TPAGE, UPG_FILE_SHARED, &r), -EINVAL);
	ck_assert_int_eq(upg_file_create(rt, t.fd, 0, TPAGE, UPG_FILE_SHARED, NULL), -EINVAL);
	ck_assert_int_eq(upg_file_create(rt, -1, 0, TPAGE, UPG_FILE_SHARED, &r), -EINVAL);
	ck_assert_int_eq(upg_file_create(rt, 1000, 0, TPAGE, UPG_FILE_SHARED, &r), -EINVAL);
	ck_assert_int_eq(upg_file_create(rt, t.fd, 100, TPAGE, UPG_FILE_SHARED, &r), -EINVAL);
	ck_assert_int_eq(upg_file_create(rt, t.fd, -4096, TPAGE, UPG_FILE_SHARED, &r), -EINVAL);
	ck_assert_int_eq(upg_file_create(rt, t.fd, 0, 0, UPG_FILE_SHARED, &r), -EINVAL);
	ck_assert_int_eq(upg_file_create(rt, t.fd, 0, TPAGE, 0, &r), -EINVAL);
	ck_assert_int_eq(upg_file_create(rt, t.fd, 0, TPAGE, 0x100, &r), -EINVAL);
	ck_assert_int_eq(upg_file_create(rt, t.fd, 0, TPAGE, UPG_FILE_SHARED | UPG_FILE_PRIVATE, &r), -EINVAL);
	ck_assert_int_eq(upg_file_create(rt, t.fd, 0, UPG_REGION_MAX + 1, UPG_FILE_SHARED, &r), -EINVAL);
	dir = open(t.dir, O_RDONLY | O_DIRECTORY);
	ck_assert_int_eq(upg_file_create(rt, dir, 0, TPAGE, UPG_FILE_PRIVATE, &r), -EINVAL);
	ck_assert_ptr_null(r);
	/* Access modes: shared and writable needs O_RDWR without O_APPEND. */
	ro = open(t.path, O_RDONLY);
	wo = open(t.path, O_WRONLY);
	app = open(t.path, O_RDWR | O_APPEND);
	ck_assert_int_eq(upg_file_create(rt, ro, 0, TPAGE, UPG_FILE_SHARED, &r), -EACCES);
	ck_assert_int_eq(upg_file_create(rt, wo, 0, TPAGE, UPG_FILE_PRIVATE, &r), -EACCES);
	ck_assert_int_eq(upg_file_create(rt, app, 0, TPAGE, UPG_FILE_SHARED, &r), -EACCES);
	ck_assert_int_eq(upg_file_create(rt, ro, 0, TPAGE, UPG_FILE_PRIVATE, &r), 0);
	/* The region keeps its own descriptor. */
	close(ro);
	ck_assert(check_page(upg_region_addr(r), 0, 1));
	ck_assert_int_eq(upg_region_sync(r), 0);
	ck_assert_int_eq(upg_region_advise(r, 3), -EINVAL);
	ck_assert_int_eq(upg_region_advise(NULL, UPG_ADVICE_RANDOM), -EINVAL);
	ck_assert_int_eq(upg_region_sync(NULL), -EINVAL);
	ck_assert_int_eq(upg_anon_create(rt, TPAGE, 0, &anon), 0);
	ck_assert_int_eq(upg_region_sync(anon), -EINVAL);
	ck_assert_int_eq(upg_region_advise(anon, UPG_ADVICE_SEQUENTIAL), 0);
	ck_assert_int_eq(upg_region_destroy(r), 0);
	ck_assert_int_eq(upg_region_sync(r), -EINVAL);
	close(wo);
	close(app);
	close(dir);
	ck_assert_int_eq(upg_region_destroy(anon), 0);
	upg_runtime_destroy(rt);
	tfile_remove(&t);
}
END_TEST

Suite *make_suite(void)
{
	Suite *s = suite_create("file");

	ADD_TEST(s, random_reads_beyond_budget, 120);
	ADD_TEST(s, random_reads_keep_copies, 120);
	ADD_TEST(s, truncated_under_copies, 60);
	ADD_TEST(s, read_ahead_follows_advice, 120);
	ADD_TEST(s, end_of_file_zero_padded, 60);
	ADD_TEST(s, truncated_file_sigbus, 60);
	ADD_TEST(s, shared_sync_writes_file, 120);
	ADD_TEST(s, shared_eviction_writes_back, 120);
	ADD_TEST(s, private_never_changes_file, 120);
	ADD_TEST(s, readonly_write_sigsegv, 60);
	ADD_TEST(s, two_regions_one_file, 60);
	ADD_TEST(s, sync_racing_writers_loses_nothing, 120);
	ADD_TEST(s, bad_arguments, 60);
	return s;
}
