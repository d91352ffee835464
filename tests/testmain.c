/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "testlib.h"

/* UPAGER_TEST_RESOLVE=thread runs a program's tests with faults resolved
 * in the faulting thread (meson.build). */
struct upg_runtime *test_runtime_opts(const struct upg_options *o)
{
	const char *resolve = getenv("UPAGER_TEST_RESOLVE");
	struct upg_options tmp = *o;
	struct upg_runtime *rt = NULL;
	int err;

	if (resolve)
		ck_assert_int_eq(upg_options_set(&tmp, "UPAGER_RESOLVE",
						 resolve), 0);
	err = upg_runtime_create(&tmp, &rt);

	ck_assert_msg(err == 0, "upg_runtime_create: %s (%s)", strerror(-err),
		      upg_last_error());
	return rt;
}

struct upg_runtime *test_runtime(unsigned handlers, uint64_t mem_limit)
{
	struct upg_options o;

	upg_options_init(&o);
	o.handlers = handlers;
	o.mem_limit = mem_limit;
	/* Where the swap file goes: a tmpfs makes the slow suites faster. */
	if (getenv("UPAGER_TEST_SWAP_DIR"))
		o.swap_dir = getenv("UPAGER_TEST_SWAP_DIR");
	return test_runtime_opts(&o);
}

struct upg_stats test_stats(struct upg_runtime *rt)
{
	struct upg_stats st;

	ck_assert_int_eq(upg_stats_get(rt, &st), 0);
	return st;
}

size_t test_resident_pages(void *p, size_t npages)
{
	unsigned char *vec = calloc(npages, 1);
	size_t n = 0;

	ck_assert_ptr_nonnull(vec);
	ck_assert_int_eq(mincore(p, npages * TPAGE, vec), 0);
	for (size_t i = 0; i < npages; i++)
		n += vec[i] & 1;
	free(vec);
	return n;
}

void test_wait_faults(struct upg_runtime *rt, int kind, uint64_t n)
{
	for (int i = 0; i < 2000 && test_stats(rt).faults[kind] < n; i++)
		usleep(1000);
}

char *test_region(struct upg_runtime *rt, size_t size, struct upg_region **r)
{
	int err = upg_anon_create(rt, size, 0, r);

	ck_assert_msg(err == 0, "upg_anon_create(%zu): %s", size,
		      strerror(-err));
	return upg_region_addr(*r);
}

void fill_page(void *page, uint64_t pageno, uint64_t tag)
{
	uint64_t *w = page;

	for (unsigned i = 0; i < TPAGE / 8; i++)
		w[i] = pattern(pageno, tag, i);
}

bool check_page(const void *page, uint64_t pageno, uint64_t tag)
{
	const uint64_t *w = page;

	for (unsigned i = 0; i < TPAGE / 8; i++)
		if (w[i] != pattern(pageno, tag, i))
			return false;
	return true;
}

bool page_is_zero(const void *page)
{
	const uint64_t *w = page;

	for (unsigned i = 0; i < TPAGE / 8; i++)
		if (w[i])
			return false;
	return true;
}

static sigjmp_buf bus_jmp;

static void on_sigbus(int sig)
{
	(void)sig;
	siglongjmp(bus_jmp, 1);
}

bool touch_bus(volatile char *addr)
{
	struct sigaction sa = { .sa_handler = on_sigbus }, old;
	bool bus = false;

	sigaction(SIGBUS, &sa, &old);
	if (sigsetjmp(bus_jmp, 1) == 0)
		(void)*addr;
	else
		bus = true;
	sigaction(SIGBUS, &old, NULL);
	return bus;
}

/* Without stdio: a sampler calls this every few milliseconds, and heap
 * buffers would count in the very figure it measures (under ASan, its
 * quarantine keeps every freed one). */
long rss_kib(void)
{
	char buf[4096];
	int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
	ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof(buf) - 1);
	const char *line;

	if (fd >= 0)
		close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	line = strstr(buf, "VmRSS:");
	return line ? strtol(line + 6, NULL, 10) : -1;
}

/* The RAM tier's bytes now; -1 on error. */
static long tier_bytes(struct upg_runtime *rt)
{
	struct upg_stats st;

	st.size = sizeof(st);
	return upg_stats_get(rt, &st) < 0 ? -1 : (long)st.store_ram_bytes;
}

/*
 * The tier is read before and after the region and the smaller is taken:
 * a page evicted while mincore walks the region may be seen there and then
 * again, compressed, in the tier (a sampler descheduled on a loaded
 * machine saw megabytes so); taken this way it is counted once, and a
 * page moving either way is at worst missed for its compressed size.
 */
long sampler_governed_kib(struct sampler *s)
{
	long before = tier_bytes(s->rt), after;
	size_t n = 0;

	if (before < 0 || mincore(s->p, s->npages * TPAGE, s->vec) < 0)
		return -1;
	for (size_t i = 0; i < s->npages; i++)
		n += s->vec[i] & 1;
	after = tier_bytes(s->rt);
	if (after < 0)
		return -1;
	return (long)((n * TPAGE + (size_t)(before < after ? before : after)) /
		      1024);
}

static void *sampler_main(void *arg)
{
	struct sampler *s = arg;

	while (atomic_load(&s->on)) {
		long kib = sampler_governed_kib(s), rss = rss_kib();

		if (kib > atomic_load(&s->peak_kib))
			atomic_store(&s->peak_kib, kib);
		if (rss > atomic_load(&s->peak_rss_kib))
			atomic_store(&s->peak_rss_kib, rss);
		usleep(2000);
	}
	return NULL;
}

void sampler_start(struct sampler *s, struct upg_runtime *rt, char *p,
			  size_t npages)
{
	s->rt = rt;
	s->p = p;
	s->npages = npages;
	s->vec = calloc(npages, 1);
	ck_assert_ptr_nonnull(s->vec);
	atomic_store(&s->peak_kib, 0);
	atomic_store(&s->peak_rss_kib, rss_kib());
	atomic_store(&s->on, true);
	ck_assert_int_eq(pthread_create(&s->thread, NULL, sampler_main, s), 0);
}

void sampler_stop(struct sampler *s)
{
	atomic_store(&s->on, false);
	pthread_join(s->thread, NULL);
	free(s->vec);
}

/* What the budget governs, exactly, stayed within it: the region's pages
 * in memory and the RAM tier, sampled apart (not atomically together:
 * 1 MiB of slack for pages that move between the two while sampled). */
void sampled_within(struct sampler *s, uint64_t budget)
{
	ck_assert_msg(atomic_load(&s->peak_kib) <= (long)(budget / 1024) + 1024,
		      "region pages + RAM tier peaked at %ld KiB with a budget "
		      "of %llu KiB", atomic_load(&s->peak_kib),
		      (unsigned long long)(budget / 1024));
}

/* Skip (77) when this kernel or sandbox gives no userfaultfd. */
static void probe_uffd(void)
{
	struct upg_options o;
	struct upg_runtime *rt;
	int err;

	upg_options_init(&o);
	o.log_level = UPG_LOG_NONE;
	err = upg_runtime_create(&o, &rt);
	if (err == -ENOSYS || err == -EPERM) {
		printf("SKIP: userfaultfd is not available here: %s\n",
		       upg_last_error());
		exit(TEST_SKIP);
	}
	if (err) {
		printf("FAIL: cannot create a runtime: %s\n", strerror(-err));
		exit(1);
	}
	upg_runtime_destroy(rt);
}

int main(void)
{
	SRunner *sr;
	int failed;

	if (test_needs_uffd)
		probe_uffd();
	sr = srunner_create(make_suite());
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
