/* SPDX-License-Identifier: MIT */
/*
 * The interposers' edge cases, run under LD_PRELOAD=libupager-preload.so
 * with a small budget (meson sets the environment), so that pages are
 * evicted between writing and reading them back.  Check forks a child per
 * test: every test also exercises the fork handlers.
 *
 * Whether memory is managed is read from /proc/self/maps: the managed heap
 * is one mapping of UPAGER_PRELOAD_HEAP bytes.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define MIB ((size_t)1 << 20)
#define PAGE 4096
#define HEAP_MIN ((uint64_t)1 << 30)	/* the managed heap is larger */

/* Size of the mapping that holds p (0 if none). */
static uint64_t mapping_size(const void *p)
{
	FILE *f = fopen("/proc/self/maps", "re");
	unsigned long lo, hi;
	char line[512];
	uint64_t size = 0;

	ck_assert(f);
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%lx-%lx", &lo, &hi) == 2 &&
		    (uintptr_t)p >= lo && (uintptr_t)p < hi) {
			size = hi - lo;
			break;
		}
	}
	fclose(f);
	return size;
}

static bool managed(const void *p)
{
	return mapping_size(p) >= HEAP_MIN;
}

static uint64_t word(uint64_t page, uint64_t tag)
{
	return (page + 1) * 0x9e3779b97f4a7c15ull ^ tag;
}

/* Page i of a buffer holds words made of (i, tag): fill_at and check_at
 * work on [from, from + len) of the buffer at base. */
static void fill_at(void *base, size_t from, size_t len, uint64_t tag)
{
	for (size_t off = from; off < from + len; off += PAGE)
		for (size_t i = 0; i < PAGE / 8; i += 64)
			((uint64_t *)((char *)base + off))[i] =
				word(off / PAGE, tag) + i;
}

/* First bad page index or -1. */
static long check_at(const void *base, size_t from, size_t len, uint64_t tag)
{
	for (size_t off = from; off < from + len; off += PAGE)
		for (size_t i = 0; i < PAGE / 8; i += 64)
			if (((const uint64_t *)((const char *)base + off))[i] !=
			    word(off / PAGE, tag) + i)
				return (long)(off / PAGE);
	return -1;
}

static void fill(void *p, size_t len, uint64_t tag)
{
	fill_at(p, 0, len, tag);
}

static long check(const void *p, size_t len, uint64_t tag)
{
	return check_at(p, 0, len, tag);
}

static long check_zero(const void *p, size_t len)
{
	for (size_t off = 0; off < len; off += 8)
		if (*(const uint64_t *)((const char *)p + off))
			return (long)(off / PAGE);
	return -1;
}

static void *map_anon(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	ck_assert(p != MAP_FAILED);
	return p;
}

START_TEST(malloc_is_managed)
{
	char *p = malloc(8 * MIB), *q = calloc(1, 100);

	ck_assert_msg(managed(p), "malloc'd memory is not in the managed heap");
	ck_assert(managed(q));
	fill(p, 8 * MIB, 1);
	ck_assert_int_eq(check(p, 8 * MIB, 1), -1);
	free(p);
	free(q);
}
END_TEST

START_TEST(dontneed_reads_zeros)
{
	size_t len = 64 * MIB;
	char *p = map_anon(len);

	ck_assert(managed(p));
	/* 64 MiB through a 16 MiB budget: most pages are in the store now. */
	fill(p, len, 2);
	ck_assert_int_eq(madvise(p + len / 2, len / 4, MADV_DONTNEED), 0);
	ck_assert_int_eq(madvise(p + len / 4 * 3, len / 4, MADV_FREE), 0);
	ck_assert_int_eq(check(p, len / 2, 2), -1);
	ck_assert_msg(check_zero(p + len / 2, len / 2) == -1,
		      "a dropped page came back from the store");
	fill_at(p, len / 2, len / 2, 3);
	ck_assert_int_eq(check_at(p, len / 2, len / 2, 3), -1);
	ck_assert_int_eq(munmap(p, len), 0);
}
END_TEST

START_TEST(map_fixed_anonymous_over_managed)
{
	size_t len = 32 * MIB;
	char *p = map_anon(len), *q;

	fill(p, len, 4);
	q = mmap(p + 8 * MIB, 8 * MIB, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	ck_assert_ptr_eq(q, p + 8 * MIB);
	ck_assert(managed(q));
	ck_assert_int_eq(check_zero(q, 8 * MIB), -1);
	ck_assert_int_eq(check(p, 8 * MIB, 4), -1);
	ck_assert_int_eq(check_at(p, 16 * MIB, 16 * MIB, 4), -1);
	ck_assert_int_eq(munmap(p, len), 0);
}
END_TEST

START_TEST(map_fixed_file_over_managed)
{
	size_t len = 16 * MIB;
	char *p = map_anon(len), *q;
	int fd = memfd_create("upager-test", MFD_CLOEXEC);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ftruncate(fd, MIB), 0);
	ck_assert_int_eq(pwrite(fd, "file page", 9, PAGE), 9);
	fill(p, len, 5);
	q = mmap(p + 4 * MIB, MIB, PROT_READ, MAP_SHARED | MAP_FIXED, fd, 0);
	ck_assert_ptr_eq(q, p + 4 * MIB);
	ck_assert_int_eq(memcmp(q + PAGE, "file page", 9), 0);
	ck_assert_int_eq(check(p, 4 * MIB, 5), -1);
	ck_assert_int_eq(check_at(p, 5 * MIB, 11 * MIB, 5), -1);
	/* The hole stays the file's; the rest is freed. */
	ck_assert_int_eq(munmap(p, len), 0);
	close(fd);
}
END_TEST

START_TEST(mremap_grow_and_shrink)
{
	char *p = map_anon(8 * MIB), *q, *r;

	fill(p, 8 * MIB, 6);
	q = mremap(p, 8 * MIB, 4 * MIB, 0);
	ck_assert_ptr_eq(q, p);
	ck_assert_int_eq(check(q, 4 * MIB, 6), -1);
	/* Grow: in place if the range after it is free, else moved. */
	r = mremap(q, 4 * MIB, 48 * MIB, MREMAP_MAYMOVE);
	ck_assert(r != MAP_FAILED);
	ck_assert(managed(r));
	ck_assert_int_eq(check(r, 4 * MIB, 6), -1);
	ck_assert_int_eq(check_zero(r + 4 * MIB, 44 * MIB), -1);
	fill(r, 48 * MIB, 7);
	/* Grow without moving over a neighbour that is in use: refused. */
	q = map_anon(4 * MIB);
	if (q == r + 48 * MIB) {
		errno = 0;
		ck_assert(mremap(r, 48 * MIB, 64 * MIB, 0) == MAP_FAILED);
		ck_assert_int_eq(errno, ENOMEM);
	}
	ck_assert_int_eq(check(r, 48 * MIB, 7), -1);
	ck_assert_int_eq(munmap(q, 4 * MIB), 0);
	ck_assert_int_eq(munmap(r, 48 * MIB), 0);
}
END_TEST

START_TEST(partial_munmap)
{
	size_t len = 24 * MIB;
	char *p = map_anon(len), *q;

	fill(p, len, 8);
	ck_assert_int_eq(munmap(p + 8 * MIB, 8 * MIB), 0);
	ck_assert_int_eq(check(p, 8 * MIB, 8), -1);
	ck_assert_int_eq(check_at(p, 16 * MIB, 8 * MIB, 8), -1);
	/* The freed middle is handed out again, and reads as zeros. */
	q = map_anon(8 * MIB);
	ck_assert(managed(q));
	ck_assert_int_eq(check_zero(q, 8 * MIB), -1);
	ck_assert_int_eq(munmap(q, 8 * MIB), 0);
	ck_assert_int_eq(munmap(p, 8 * MIB), 0);
	ck_assert_int_eq(munmap(p + 16 * MIB, 8 * MIB), 0);
}
END_TEST

#define THREADS 4
#define SLOTS 2048

static void *stress(void *arg)
{
	uint64_t seed = (uintptr_t)arg * 2654435761u + 1;
	static __thread struct { uint64_t *p; size_t n; } slot[SLOTS];
	long bad = 0;

	for (int op = 0; op < 40000; op++) {
		size_t i, n;

		seed = seed * 6364136223846793005ull + 1442695040888963407ull;
		i = (seed >> 33) % SLOTS;
		if (slot[i].p) {
			for (size_t k = 0; k < slot[i].n; k += 512)
				bad += slot[i].p[k] != (uintptr_t)&slot[i] + k;
			free(slot[i].p);
			slot[i].p = NULL;
			continue;
		}
		/* Mostly small, some large (jemalloc large extents). */
		n = (seed >> 20) % 16 == 0 ? (seed >> 40) % (1 << 13) + 1
					    : (seed >> 40) % 512 + 1;
		slot[i].p = (seed >> 24) % 4 ? malloc(n * 8)
					     : realloc(NULL, n * 8);
		slot[i].n = n;
		for (size_t k = 0; k < n; k += 512)
			slot[i].p[k] = (uintptr_t)&slot[i] + k;
	}
	for (size_t i = 0; i < SLOTS; i++)
		free(slot[i].p);
	return (void *)bad;
}

START_TEST(threaded_allocator_stress)
{
	pthread_t t[THREADS];
	void *bad;

	for (uintptr_t i = 0; i < THREADS; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, stress,
						(void *)i), 0);
	for (int i = 0; i < THREADS; i++) {
		ck_assert_int_eq(pthread_join(t[i], &bad), 0);
		ck_assert_msg(bad == NULL, "thread %d saw %ld bad words", i,
			      (long)(uintptr_t)bad);
	}
}
END_TEST

START_TEST(fork_sees_evicted_pages)
{
	size_t len = 48 * MIB;
	char *p = malloc(len);
	int status;
	pid_t pid;

	fill(p, len, 9);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		char *q = malloc(32 * MIB);
		pid_t g;

		/* The child reads, allocates, writes and forks again. */
		fill(q, 32 * MIB, 10);
		if (check(p, len, 9) != -1 || check(q, 32 * MIB, 10) != -1)
			_exit(1);
		fill(p, len / 2, 11);
		g = fork();
		if (g == 0)
			_exit(check(p, len / 2, 11) == -1 &&
			      check_at(p, len / 2, len / 2, 9) == -1 ? 0 : 2);
		if (g < 0 || waitpid(g, &status, 0) != g)
			_exit(3);
		_exit(WIFEXITED(status) ? WEXITSTATUS(status) : 4);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		      "child status %#x", status);
	/* The parent's memory is its own. */
	ck_assert_int_eq(check(p, len, 9), -1);
	free(p);
}
END_TEST

static sigjmp_buf probe_jmp;

static void on_probe_signal(int sig)
{
	siglongjmp(probe_jmp, sig);
}

/* Page `page` of p read in a child whose fork may have failed: 0 when it
 * holds (page, tag), 1 when the read is refused with SIGSEGV or SIGBUS,
 * 2 when it reads anything else (wrong data: the one outcome never
 * allowed). */
static int probe(const char *p, size_t page, uint64_t tag)
{
	struct sigaction sa = { .sa_handler = on_probe_signal };
	int rc;

	sigaction(SIGSEGV, &sa, NULL);
	sigaction(SIGBUS, &sa, NULL);
	if (sigsetjmp(probe_jmp, 1) == 0)
		rc = check_at(p, page * PAGE, PAGE, tag) == -1 ? 0 : 2;
	else
		rc = 1;
	signal(SIGSEGV, SIG_DFL);
	signal(SIGBUS, SIG_DFL);
	return rc;
}

/*
 * fork() when the process has no file descriptor left (the parent cannot
 * make the socket that carries stored pages to the child, and the child
 * cannot open a userfaultfd or a swap file of its own): a child without
 * a pager exits at once with status 127 and says so (its allocator's
 * memory is managed: it could not run on); a child with a pager but not
 * its parent's stored pages gets a signal on them, never zeros.  The
 * parent loses nothing.  With one descriptor free, the same.
 */
START_TEST(fork_without_descriptors)
{
	size_t len = 48 * MIB, npages = len / PAGE;
	char *p = malloc(len);
	struct rlimit old, lim;
	int fds[4096], n = 0, status;
	pid_t pid;

	fill(p, len, 12);
	ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &old), 0);
	lim = old;
	lim.rlim_cur = 256;
	ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &lim), 0);
	while (n < (int)(sizeof(fds) / sizeof(fds[0])) &&
	       (fds[n] = dup(0)) >= 0)
		n++;
	ck_assert_int_eq(errno, EMFILE);
	if (_i == 1)
		close(fds[--n]);	/* one descriptor free */
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		/* The first page was written first: evicted long since.
		 * The last was written last: most likely still resident. */
		int first = probe(p, 0, 12), last = probe(p, npages - 1, 12);

		_exit(first == 1 && last != 2 ? 0 : 10 + first * 3 + last);
	}
	while (n > 0)
		close(fds[--n]);
	ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &old), 0);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFEXITED(status) && (WEXITSTATUS(status) == 0 ||
					    WEXITSTATUS(status) == 127),
		      "child status %#x (10 + 3 * first page + last page; "
		      "0 read right, 1 signal, 2 wrong data)", status);
	ck_assert_int_eq(check(p, len, 12), -1);
	free(p);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("preload");
	TCase *tc = tcase_create("interpose");

	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, malloc_is_managed);
	tcase_add_test(tc, dontneed_reads_zeros);
	tcase_add_test(tc, map_fixed_anonymous_over_managed);
	tcase_add_test(tc, map_fixed_file_over_managed);
	tcase_add_test(tc, mremap_grow_and_shrink);
	tcase_add_test(tc, partial_munmap);
	tcase_add_test(tc, threaded_allocator_stress);
	tcase_add_test(tc, fork_sees_evicted_pages);
	tcase_add_loop_test(tc, fork_without_descriptors, 0, 2);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr;
	int failed, fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC);

	if (fd < 0) {
		printf("SKIP: no userfaultfd here (%s)\n", strerror(errno));
		return 77;
	}
	close(fd);
	if (!getenv("LD_PRELOAD") || !strstr(getenv("LD_PRELOAD"),
					     "libupager-preload.so")) {
		printf("SKIP: run me with LD_PRELOAD=libupager-preload.so\n");
		return 77;
	}
	sr = srunner_create(suite());
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
