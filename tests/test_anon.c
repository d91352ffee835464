/* SPDX-License-Identifier: MIT */
/* Anonymous regions through the real kernel: demand-zero paging, data
 * integrity under threads, many and huge regions, and bad arguments. */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testlib.h"

const bool test_needs_uffd = true;

START_TEST(untouched_reads_zero_then_writes_stick)
{
	struct upg_runtime *rt = test_runtime(1, 0);
	struct upg_region *r;
	struct upg_stats st;
	size_t npages = 4096;
	char *p;

	p = test_region(rt, npages * TPAGE, &r);
	ck_assert_ptr_nonnull(p);
	ck_assert_uint_eq(upg_region_size(r), npages * TPAGE);
	for (size_t i = 0; i < npages; i += 7)
		ck_assert(page_is_zero(p + i * TPAGE));
	st = test_stats(rt);
	ck_assert_uint_gt(st.faults[UPG_FAULT_ZERO_READ], 0);
	/* Fault-around: fewer faults than pages read. */
	ck_assert_uint_lt(st.faults[UPG_FAULT_ZERO_READ], npages / 7);
	ck_assert_uint_eq(st.pages_resident, 0);
	for (size_t i = 0; i < npages; i += 3)
		fill_page(p + i * TPAGE, i, 1);
	for (size_t i = 0; i < npages; i++) {
		if (i % 3 == 0)
			ck_assert_msg(check_page(p + i * TPAGE, i, 1), "page %zu", i);
		else
			ck_assert_msg(page_is_zero(p + i * TPAGE), "page %zu", i);
	}
	st = test_stats(rt);
	ck_assert_uint_ge(st.pages_resident, npages / 3);
	ck_assert_uint_eq(st.regions, 1);
	ck_assert_uint_gt(st.latency[UPG_FAULT_ZERO_READ].count, 0);
	ck_assert_uint_le(st.latency[UPG_FAULT_ZERO_READ].p50_ns,
			  st.latency[UPG_FAULT_ZERO_READ].p99_ns);
	ck_assert_int_eq(upg_region_destroy(r), 0);
	ck_assert_uint_eq(test_stats(rt).pages_resident, 0);
	upg_runtime_destroy(rt);
}
END_TEST

START_TEST(sequential_access_faults_less)
{
	struct upg_runtime *rt = test_runtime(1, 0);
	struct upg_region *r;
	struct upg_stats st;
	size_t npages = 16384;
	char *p;

	p = test_region(rt, npages * TPAGE, &r);
	for (size_t i = 0; i < npages / 2; i++)
		fill_page(p + i * TPAGE, i, 2);
	for (size_t i = npages / 2; i < npages; i++)
		ck_assert(page_is_zero(p + i * TPAGE));
	for (size_t i = 0; i < npages / 2; i++)
		ck_assert(check_page(p + i * TPAGE, i, 2));
	st = test_stats(rt);
	ck_assert_uint_lt(st.faults[UPG_FAULT_ZERO_WRITE], npages / 2 / 4);
	ck_assert_uint_lt(st.faults[UPG_FAULT_ZERO_READ], npages / 2 / 16);
	upg_runtime_destroy(rt);
}
END_TEST

/*
 * First writes in bulk (reserve.h): a write fault fills its window with
 * zeroed pages, and each later fault in a 2 MiB block a window four times
 * what the block has in use, so writing every page of a region in random
 * order takes a few faults a block (three here), not 512; every page reads
 * back exactly.
 */
START_TEST(first_writes_fill_their_block)
{
	struct upg_runtime *rt = test_runtime(1, 0);
	struct upg_region *r;
	size_t npages = 16384, blocks = npages / 512;
	size_t *order = malloc(npages * sizeof(*order));
	uint64_t seed = 7, faults;
	char *p = test_region(rt, npages * TPAGE, &r);

	ck_assert_ptr_nonnull(order);
	for (size_t i = 0; i < npages; i++)
		order[i] = i;
	for (size_t i = npages - 1; i > 0; i--) {
		size_t j = rnd(&seed) % (i + 1), t = order[i];

		order[i] = order[j];
		order[j] = t;
	}
	for (size_t i = 0; i < npages; i++)
		fill_page(p + order[i] * TPAGE, order[i], 5);
	faults = test_stats(rt).faults[UPG_FAULT_ZERO_WRITE];
	ck_assert_msg(faults <= 4 * blocks,
		      "%llu write faults for %zu blocks",
		      (unsigned long long)faults, blocks);
	for (size_t i = 0; i < npages; i++)
		ck_assert_msg(check_page(p + i * TPAGE, i, 5), "page %zu", i);
	ck_assert_uint_eq(test_stats(rt).pages_resident, npages);
	free(order);
	upg_runtime_destroy(rt);
}
END_TEST

/* ...but a block touched once holds its fault-around window, not 2 MiB:
 * a sparse program is not charged 512 pages for each page it writes. */
START_TEST(sparse_first_writes_stay_small)
{
	struct upg_runtime *rt = test_runtime(1, 0);
	struct upg_region *r;
	size_t blocks = 64, npages = blocks * 512;
	char *p = test_region(rt, npages * TPAGE, &r);
	struct upg_options o;

	upg_options_init(&o);
	for (size_t b = 0; b < blocks; b++)
		fill_page(p + (b * 512 + 100) * TPAGE, b, 6);
	ck_assert_uint_le(test_resident_pages(p, npages), blocks * o.fault_around);
	ck_assert_uint_le(test_stats(rt).pages_resident, blocks * o.fault_around);
	for (size_t b = 0; b < blocks; b++) {
		ck_assert(check_page(p + (b * 512 + 100) * TPAGE, b, 6));
		ck_assert(page_is_zero(p + (b * 512 + 101) * TPAGE));
	}
	upg_runtime_destroy(rt);
}
END_TEST

/* Four threads write patterns to random pages of a 1 GiB region and read
 * them back; each thread owns the pages congruent to its number, and reads
 * any page of the others, which must hold zeros or a whole pattern. */
#define RW_THREADS 4
#define RW_OPS 60000

struct rw_arg {
	char *base;
	size_t npages;
	unsigned id;
	uint32_t *tags;		/* last tag written per page, 0 = never */
	_Atomic uint64_t torn;
};

static void *rw_worker(void *p)
{
	struct rw_arg *a = p;
	uint64_t seed = 0x9e3779b9u * (a->id + 1);

	for (unsigned n = 1; n <= RW_OPS; n++) {
		size_t page = rnd(&seed) % a->npages;
		char *addr = a->base + page * TPAGE;

		page -= page % RW_THREADS;
		page += a->id;
		if (page >= a->npages)
			continue;
		addr = a->base + page * TPAGE;
		switch (rnd(&seed) % 3) {
		case 0:
			fill_page(addr, page, n);
			a->tags[page] = n;
			break;
		case 1:
			if (a->tags[page] ? !check_page(addr, page, a->tags[page])
					  : !page_is_zero(addr))
				a->torn++;
			break;
		default: {
			/* Another thread's page: read the first word; a torn
			 * or wrong page would not pass check below. */
			volatile uint64_t *w = (uint64_t *)(a->base +
				(rnd(&seed) % a->npages) * TPAGE);
			(void)*w;
		}
		}
	}
	return NULL;
}

static void threads_random_pages(unsigned handlers)
{
	struct upg_runtime *rt = test_runtime(handlers, 0);
	struct upg_region *r;
	struct rw_arg args[RW_THREADS];
	pthread_t th[RW_THREADS];
	size_t npages = GIB / TPAGE;
	uint32_t *tags = calloc(npages, sizeof(*tags));
	char *p;

	p = test_region(rt, GIB, &r);
	for (unsigned t = 0; t < RW_THREADS; t++) {
		args[t] = (struct rw_arg){ p, npages, t, tags, 0 };
		ck_assert_int_eq(pthread_create(&th[t], NULL, rw_worker,
						&args[t]), 0);
	}
	for (unsigned t = 0; t < RW_THREADS; t++) {
		pthread_join(th[t], NULL);
		ck_assert_uint_eq(args[t].torn, 0);
	}
	for (size_t i = 0; i < npages; i++) {
		if (tags[i])
			ck_assert_msg(check_page(p + i * TPAGE, i, tags[i]),
				      "page %zu", i);
		else if (i % 97 == 0)
			ck_assert_msg(page_is_zero(p + i * TPAGE), "page %zu", i);
	}
	free(tags);
	upg_runtime_destroy(rt);
}

START_TEST(four_threads_one_gib_one_handler)
{
	threads_random_pages(1);
}
END_TEST

START_TEST(four_threads_one_gib_three_handlers)
{
	threads_random_pages(3);
}
END_TEST

/* Many threads fault the same page at once: each gets it exactly once. */
#define SAME_THREADS 8
static char *same_page;
static pthread_barrier_t same_barrier;

static void *same_worker(void *arg)
{
	uintptr_t id = (uintptr_t)arg;

	pthread_barrier_wait(&same_barrier);
	if (id % 2)
		__atomic_fetch_add((uint64_t *)same_page, 1, __ATOMIC_SEQ_CST);
	else
		(void)*(volatile uint64_t *)(same_page + 8);
	return NULL;
}

START_TEST(racing_faults_on_one_page)
{
	struct upg_runtime *rt = test_runtime(2, 0);
	struct upg_region *r;
	pthread_t th[SAME_THREADS];

	ck_assert_int_eq(upg_anon_create(rt, 64 * TPAGE, 0, &r), 0);
	for (int round = 0; round < 32; round++) {
		same_page = (char *)upg_region_addr(r) + (size_t)round * 2 * TPAGE;
		pthread_barrier_init(&same_barrier, NULL, SAME_THREADS);
		for (uintptr_t t = 0; t < SAME_THREADS; t++)
			pthread_create(&th[t], NULL, same_worker, (void *)t);
		for (int t = 0; t < SAME_THREADS; t++)
			pthread_join(th[t], NULL);
		pthread_barrier_destroy(&same_barrier);
		ck_assert_uint_eq(*(uint64_t *)same_page, SAME_THREADS / 2);
	}
	upg_runtime_destroy(rt);
}
END_TEST

START_TEST(thousand_regions_alive)
{
	struct upg_runtime *rt = test_runtime(1, 0);
	static struct upg_region *rs[1000];
	const size_t pages = 8;

	for (int i = 0; i < 1000; i++) {
		ck_assert_int_eq(upg_anon_create(rt, pages * TPAGE, 0, &rs[i]), 0);
		for (size_t j = 0; j < pages; j += 3)
			fill_page((char *)upg_region_addr(rs[i]) + j * TPAGE,
				  j, (uint64_t)i + 1);
	}
	ck_assert_uint_eq(test_stats(rt).regions, 1000);
	for (int i = 0; i < 1000; i++) {
		char *p = upg_region_addr(rs[i]);

		for (size_t j = 0; j < pages; j++) {
			if (j % 3 == 0)
				ck_assert_msg(check_page(p + j * TPAGE, j,
							 (uint64_t)i + 1),
					      "region %d page %zu", i, j);
			else
				ck_assert(page_is_zero(p + j * TPAGE));
		}
	}
	for (int i = 0; i < 1000; i += 2)
		ck_assert_int_eq(upg_region_destroy(rs[i]), 0);
	ck_assert_uint_eq(test_stats(rt).regions, 500);
	/* The survivors are intact after their neighbours went. */
	for (int i = 1; i < 1000; i += 2)
		ck_assert(check_page(upg_region_addr(rs[i]), 0, (uint64_t)i + 1));
	upg_runtime_destroy(rt);
}
END_TEST

/* Under ThreadSanitizer the program's mappings get about 1.5 TiB of the
 * address space (the rest is its shadow): a 64 TiB mmap fails there, so
 * that build tries a region as large as it can have. */
#if defined(__SANITIZE_THREAD__)
#define HUGE_REGION (256 * GIB)
#else
#define HUGE_REGION (64 * TIB)
#endif

START_TEST(region_of_64_tib)
{
	struct upg_runtime *rt = test_runtime(1, 0);
	struct upg_region *r;
	struct upg_stats st;
	size_t size = HUGE_REGION, npages = size / TPAGE;
	long rss_before = rss_kib();
	char *p;

	p = test_region(rt, size, &r);
	for (size_t i = 0; i < 10; i++) {
		size_t page = i * (npages / 10) + i;

		fill_page(p + page * TPAGE, page, 64);
	}
	ck_assert(page_is_zero(p + size - TPAGE));
	for (size_t i = 0; i < 10; i++) {
		size_t page = i * (npages / 10) + i;

		ck_assert(check_page(p + page * TPAGE, page, 64));
	}
	st = test_stats(rt);
	/* Kilobytes of page table, not gigabytes: at most four nodes for
	 * each page touched. */
	ck_assert_uint_le(st.pagetable_bytes, 11 * 4 * TPAGE);
	ck_assert_int_lt(rss_kib() - rss_before, 8 * 1024);
	ck_assert_int_eq(upg_region_destroy(r), 0);
	upg_runtime_destroy(rt);
}
END_TEST

START_TEST(bad_arguments_are_einval)
{
	struct upg_runtime *rt = test_runtime(1, 0);
	struct upg_region *r;
	struct upg_stats st;

	ck_assert_int_eq(upg_runtime_create(NULL, NULL), -EINVAL);
	ck_assert_int_eq(upg_anon_create(rt, 0, 0, &r), -EINVAL);
	ck_assert_int_eq(upg_anon_create(rt, SIZE_MAX, 0, &r), -EINVAL);
	ck_assert_int_eq(upg_anon_create(rt, SIZE_MAX - 4000, 0, &r), -EINVAL);
	ck_assert_int_eq(upg_anon_create(rt, UPG_REGION_MAX + 1, 0, &r),
			 -EINVAL);
	ck_assert_int_eq(upg_anon_create(NULL, 4096, 0, &r), -EINVAL);
	ck_assert_int_eq(upg_anon_create(rt, 4096, 0, NULL), -EINVAL);
	ck_assert_int_eq(upg_anon_create(rt, 4096, 0x80, &r), -EINVAL);
	ck_assert_int_eq(upg_region_destroy(NULL), -EINVAL);
	ck_assert_ptr_null(upg_region_addr(NULL));
	ck_assert_uint_eq(upg_region_size(NULL), 0);
	ck_assert_int_eq(upg_stats_get(NULL, &st), -EINVAL);
	ck_assert_int_eq(upg_stats_get(rt, NULL), -EINVAL);
	ck_assert_int_eq(upg_stats_print(rt, NULL, UPG_STATS_TEXT), -EINVAL);
	ck_assert_int_eq(upg_stats_print(rt, stdout, 42), -EINVAL);
	ck_assert_int_eq(upg_region_stats_get(NULL, &st), -EINVAL);

	/* A size that is not a page multiple is rounded up. */
	ck_assert_int_eq(upg_anon_create(rt, 5000, 0, &r), 0);
	ck_assert_uint_eq(upg_region_size(r), 2 * TPAGE);
	ck_assert_int_eq(upg_region_destroy(r), 0);
	/* Destroy twice, and use after destroy: refused, not a crash. */
	ck_assert_int_eq(upg_region_destroy(r), -EINVAL);
	ck_assert_ptr_null(upg_region_addr(r));
	ck_assert_uint_eq(upg_region_size(r), 0);
	ck_assert_int_eq(upg_region_stats_get(r, &st), -EINVAL);
	upg_runtime_destroy(rt);
	upg_runtime_destroy(NULL);
}
END_TEST

START_TEST(runtime_destroy_takes_live_regions)
{
	struct upg_runtime *rt = test_runtime(2, 0);
	struct upg_region *r[3];
	unsigned char vec;
	void *addr[3];

	for (int i = 0; i < 3; i++) {
		ck_assert_int_eq(upg_anon_create(rt, 64 * TPAGE, 0, &r[i]), 0);
		addr[i] = upg_region_addr(r[i]);
		fill_page(addr[i], 0, 5);
	}
	upg_runtime_destroy(rt);
	for (int i = 0; i < 3; i++) {
		/* The memory is gone (mincore fails on unmapped ranges)... */
		ck_assert_int_eq(mincore(addr[i], TPAGE, &vec), -1);
		ck_assert_int_eq(errno, ENOMEM);
		/* ...and the handles are dead. */
		ck_assert_int_eq(upg_region_destroy(r[i]), -EINVAL);
	}
}
END_TEST

START_TEST(stats_print_formats)
{
	struct upg_runtime *rt = test_runtime(1, 0);
	struct upg_region *r;
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	int n;

	ck_assert_int_eq(upg_anon_create(rt, 16 * TPAGE, 0, &r), 0);
	fill_page(upg_region_addr(r), 0, 1);
	test_wait_faults(rt, UPG_FAULT_ZERO_WRITE, 1);
	n = upg_stats_print(rt, f, UPG_STATS_JSON);
	fflush(f);
	ck_assert_int_gt(n, 0);
	ck_assert_uint_eq((size_t)n, len);
	ck_assert_ptr_nonnull(strstr(buf, "\"zero_write\":{\"count\":1,"));
	ck_assert_ptr_nonnull(strstr(buf, "\"regions\":1,"));
	ck_assert_int_eq(buf[0], '{');
	ck_assert_int_eq(buf[len - 2], '}');
	fclose(f);
	free(buf);
	f = open_memstream(&buf, &len);
	ck_assert_int_gt(upg_stats_print(rt, f, UPG_STATS_TEXT), 0);
	fflush(f);
	ck_assert_ptr_nonnull(strstr(buf, "zero_write"));
	ck_assert_ptr_nonnull(strstr(buf, "p99.9"));
	fclose(f);
	free(buf);
	upg_runtime_destroy(rt);
}
END_TEST

/* A child process must never see region memory without a pager. */
START_TEST(fork_child_does_not_inherit)
{
	struct upg_runtime *rt = test_runtime(1, 0);
	struct upg_region *r;
	int status;
	pid_t pid;
	char *p;

	p = test_region(rt, 16 * TPAGE, &r);
	fill_page(p, 0, 9);
	pid = fork();
	if (pid == 0) {
		signal(SIGSEGV, SIG_DFL);
		(void)*(volatile char *)p;
		_exit(0);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFSIGNALED(status));
	ck_assert_int_eq(WTERMSIG(status), SIGSEGV);
	ck_assert(check_page(p, 0, 9));
	upg_runtime_destroy(rt);
}
END_TEST

/* The kernel itself faults on region memory (copy_to_user in read(2)). */
START_TEST(kernel_mode_faults_are_served)
{
	struct upg_runtime *rt = test_runtime(1, 0);
	struct upg_region *r;
	char src[3 * 4096], *p;
	int fds[2];

	p = test_region(rt, 16 * TPAGE, &r);
	for (size_t i = 0; i < sizeof(src); i++)
		src[i] = (char)(i * 7 + 1);
	ck_assert_int_eq(pipe(fds), 0);
	ck_assert_int_eq(write(fds[1], src, sizeof(src)), (ssize_t)sizeof(src));
	ck_assert_int_eq(read(fds[0], p + 100, sizeof(src)), (ssize_t)sizeof(src));
	ck_assert_mem_eq(p + 100, src, sizeof(src));
	/* And the kernel reads it back out (copy_from_user). */
	ck_assert_int_eq(write(fds[1], p + 100, sizeof(src)), (ssize_t)sizeof(src));
	ck_assert_int_eq(read(fds[0], src, sizeof(src)), (ssize_t)sizeof(src));
	ck_assert_mem_eq(p + 100, src, sizeof(src));
	close(fds[0]);
	close(fds[1]);
	upg_runtime_destroy(rt);
}
END_TEST

/* The system's CPU latency target (PM QoS), in us; false if unreadable. */
static bool cpu_latency(int32_t *us)
{
	int fd = open("/dev/cpu_dma_latency", O_RDONLY | O_CLOEXEC);
	bool ok = fd >= 0 && read(fd, us, sizeof(*us)) == sizeof(*us);

	if (fd >= 0)
		close(fd);
	return ok;
}

/*
 * UPAGER_IDLE_POLL=1 holds a CPU latency request of 0 for the runtime's
 * life and gives it back at destroy; where it may not (not root, or no
 * /dev/cpu_dma_latency), the runtime comes up all the same and serves
 * faults.
 */
START_TEST(idle_poll_holds_latency_request)
{
	/* Root, and a kernel with the PM QoS device. */
	bool can = geteuid() == 0 &&
		   access("/dev/cpu_dma_latency", W_OK) == 0;
	struct upg_options o;
	struct upg_runtime *rt;
	struct upg_region *r;
	int32_t before = -1, held = -1, after = -1;
	char *p;

	ck_assert(!can || cpu_latency(&before));
	upg_options_init(&o);
	o.idle_poll = 1;
	rt = test_runtime_opts(&o);
	p = test_region(rt, 4 * TPAGE, &r);
	p[TPAGE] = 42;
	ck_assert_int_eq(p[TPAGE] + p[0], 42);
	if (can) {
		ck_assert(cpu_latency(&held));
		ck_assert_int_eq(held, 0);
	}
	upg_runtime_destroy(rt);
	if (can) {
		ck_assert(cpu_latency(&after));
		ck_assert_int_eq(after, before);
	}
}
END_TEST

Suite *make_suite(void)
{
	Suite *s = suite_create("anon");

	ADD_TEST(s, untouched_reads_zero_then_writes_stick, 120);
	ADD_TEST(s, first_writes_fill_their_block, 120);
	ADD_TEST(s, sparse_first_writes_stay_small, 60);
	ADD_TEST(s, sequential_access_faults_less, 120);
	ADD_TEST(s, four_threads_one_gib_one_handler, 120);
	ADD_TEST(s, four_threads_one_gib_three_handlers, 120);
	ADD_TEST(s, racing_faults_on_one_page, 120);
	ADD_TEST(s, thousand_regions_alive, 120);
	ADD_TEST(s, region_of_64_tib, 120);
	ADD_TEST(s, bad_arguments_are_einval, 120);
	ADD_TEST(s, runtime_destroy_takes_live_regions, 120);
	ADD_TEST(s, stats_print_formats, 120);
	ADD_TEST(s, fork_child_does_not_inherit, 120);
	ADD_TEST(s, kernel_mode_faults_are_served, 120);
	ADD_TEST(s, idle_poll_holds_latency_request, 120);
	return s;
}
