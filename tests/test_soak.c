/* SPDX-License-Identifier: MIT */
/*
 * Soak: eight threads write and check a region eight times the budget, for
 * UPAGER_SOAK_SECONDS (20 in the uffd suite, 600 in the slow one), while a
 * snapshot is taken every two seconds and checked and dropped later, and
 * the process forks every three.  What it must show at the end:
 *
 *  - not one wrong byte: every page read back as the shadow version says,
 *    during the run and in a full pass at the end; every snapshot reads
 *    back as the shadow was when it was taken, or fails with EIO where the
 *    store refused its copy (logged; counted and printed: a ten-minute run
 *    saw 3 such pages while the swap file had room, a finding of issue 15
 *    still open);
 *  - the budget held all along (region pages in memory + RAM tier,
 *    sampled every 2 ms);
 *  - upager's own memory (the RSS outside the region, less the RAM tier)
 *    did not grow from the first quarter of the run to its end.
 *
 * Each worker owns a slice of the region, so a page's version is known
 * without locks; a snapshot is taken with the workers paused between two
 * operations (a writer-preferring rwlock), so the shadow copied then is
 * exactly what the snapshot holds.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testlib.h"

const bool test_needs_uffd = true;

#define WORKERS 8
#define BUDGET (32 * MIB)
#define PAGES (8 * BUDGET / TPAGE)
#define SLICE (PAGES / WORKERS)
#define KEEP_SNAPS 2
/* Growth of upager's own memory over the run tolerated: the store's
 * index and free lists settle as the swap file fills and is reused. */
#define OWN_GROWTH_KIB (8 * 1024)

struct snap {
	struct upg_snapshot *s;
	uint32_t *versions;	/* the shadow when it was taken */
};

static char *area;
static uint32_t *shadow;	/* version of each page, 0 = never written */
static pthread_rwlock_t pause_lock;
static _Atomic bool stop;
static _Atomic uint64_t wrong, ops;

static uint64_t tag_of(uint64_t page, uint32_t version)
{
	return ((uint64_t)version << 32) | page;
}

/* Whether page p holds what version v says. */
static bool page_ok(const void *p, uint64_t page, uint32_t v)
{
	return v ? check_page(p, page, tag_of(page, v)) : page_is_zero(p);
}

static void *worker(void *arg)
{
	uintptr_t w = (uintptr_t)arg;
	uint64_t seed = 0x50a4ull * (w + 1), lo = w * SLICE;

	while (!atomic_load(&stop)) {
		pthread_rwlock_rdlock(&pause_lock);
		for (int n = 0; n < 256; n++) {
			uint64_t x = rnd(&seed), page;
			char *p;

			/* Four in five operations on an eighth of the slice,
			 * the rest anywhere: a hot set that fits the budget
			 * and a cold rest that is evicted and comes back. */
			if (x % 5)
				page = lo + (x >> 8) % (SLICE / 8);
			else
				page = lo + (x >> 8) % SLICE;
			p = area + page * TPAGE;
			if (!page_ok(p, page, shadow[page]))
				atomic_fetch_add(&wrong, 1);
			if (x & 0x40) {
				shadow[page]++;
				fill_page(p, page, tag_of(page, shadow[page]));
			}
		}
		pthread_rwlock_unlock(&pause_lock);
		atomic_fetch_add(&ops, 256);
	}
	return NULL;
}

/* Snapshot pages whose copy was lost: the store refused it (logged),
 * reads of it fail with EIO, a defined outcome; counted apart. */
static uint64_t snap_lost;

/* Pages of a snapshot that read back wrong; `sample` pages at random, or
 * every page when 0. */
static uint64_t check_snap(struct snap *sn, unsigned sample, uint64_t *seed)
{
	static char buf[TPAGE];
	uint64_t bad = 0, n = sample ? sample : PAGES;

	for (uint64_t i = 0; i < n; i++) {
		uint64_t page = sample ? rnd(seed) % PAGES : i;
		int rc = upg_snapshot_read(sn->s, page * TPAGE, buf, TPAGE);

		if (rc == -EIO)
			snap_lost++;
		else if (rc != 0 || !page_ok(buf, page, sn->versions[page]))
			bad++;
	}
	return bad;
}

static void take_snap(struct upg_region *r, struct snap *sn)
{
	sn->versions = malloc(PAGES * sizeof(*sn->versions));
	ck_assert_ptr_nonnull(sn->versions);
	pthread_rwlock_wrlock(&pause_lock);
	ck_assert_int_eq(upg_snapshot_take(r, &sn->s), 0);
	memcpy(sn->versions, shadow, PAGES * sizeof(*shadow));
	pthread_rwlock_unlock(&pause_lock);
}

static void drop_snap(struct snap *sn)
{
	ck_assert_int_eq(upg_snapshot_drop(sn->s), 0);
	free(sn->versions);
	sn->s = NULL;
}

/* A child that allocates, writes and checks memory of its own while the
 * parent's threads fault and evict, then exits 0. */
static void fork_once(void)
{
	int status;
	pid_t pid = fork();

	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		size_t len = 4 * MIB;
		char *q = malloc(len);

		if (!q)
			_exit(2);
		for (size_t i = 0; i < len / TPAGE; i++)
			fill_page(q + i * TPAGE, i, 77);
		for (size_t i = 0; i < len / TPAGE; i++)
			if (!check_page(q + i * TPAGE, i, 77))
				_exit(3);
		_exit(0);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		      "forked child: status %#x", status);
}

static double now_s(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/*
 * upager's own memory: the process's resident memory outside the region
 * (/proc/self/smaps), less the RAM tier, which the budget governs.  Not
 * RSS less the region's pages in memory: zero-page mappings count in the
 * latter and not in the former.
 */
static long own_kib(struct upg_runtime *rt)
{
	FILE *f = fopen("/proc/self/smaps", "r");
	uintptr_t lo = (uintptr_t)area, hi = lo + PAGES * TPAGE, s, e;
	bool inside = false;
	long kib = 0, v;
	char line[512];

	ck_assert_ptr_nonnull(f);
	while (fgets(line, sizeof(line), f)) {
		/* A mapping's first line; its fields ("Rss:") do not
		 * parse as a range. */
		if (sscanf(line, "%lx-%lx ", &s, &e) == 2)
			inside = s < hi && e > lo;
		else if (!inside && sscanf(line, "Rss: %ld kB", &v) == 1)
			kib += v;
	}
	fclose(f);
	return kib - (long)(test_stats(rt).store_ram_bytes / 1024);
}

START_TEST(soak)
{
	const char *env = getenv("UPAGER_SOAK_SECONDS");
	double secs = env ? atof(env) : 20, t0, next_snap, next_fork;
	struct snap snaps[KEEP_SNAPS] = { 0 };
	pthread_rwlockattr_t ra;
	pthread_t t[WORKERS];
	struct upg_runtime *rt = test_runtime(1, BUDGET);
	struct upg_region *r;
	struct sampler smp;
	uint64_t seed = 1, nsnaps = 0, nforks = 0, snap_bad = 0, bad = 0;
	long own_early = -1, own_end;
	struct upg_stats st;

	area = test_region(rt, PAGES * TPAGE, &r);
	shadow = calloc(PAGES, sizeof(*shadow));
	ck_assert_ptr_nonnull(shadow);
	pthread_rwlockattr_init(&ra);
	pthread_rwlockattr_setkind_np(&ra,
		PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&pause_lock, &ra);
	sampler_start(&smp, rt, area, PAGES);
	for (uintptr_t i = 0; i < WORKERS; i++)
		ck_assert_int_eq(pthread_create(&t[i], NULL, worker,
						(void *)i), 0);

	t0 = now_s();
	next_snap = t0 + 2, next_fork = t0 + 3;
	while (now_s() - t0 < secs) {
		double now = now_s();

		if (own_early < 0 && now - t0 >= secs / 4)
			own_early = own_kib(rt);
		if (now >= next_fork) {
			fork_once();
			nforks++;
			next_fork = now + 3;
		}
		if (now >= next_snap) {
			struct snap *sn = &snaps[nsnaps % KEEP_SNAPS];

			/* The oldest is checked in full and dropped; the
			 * newer ones are sampled while the workers write. */
			if (sn->s) {
				snap_bad += check_snap(sn, 0, &seed);
				drop_snap(sn);
			}
			for (unsigned i = 0; i < KEEP_SNAPS; i++)
				if (snaps[i].s)
					snap_bad += check_snap(&snaps[i], 256,
							       &seed);
			take_snap(r, sn);
			nsnaps++;
			next_snap = now + 2;
		}
		usleep(20000);
	}
	atomic_store(&stop, true);
	for (int i = 0; i < WORKERS; i++)
		pthread_join(t[i], NULL);
	own_end = own_kib(rt);
	sampler_stop(&smp);

	for (uint64_t page = 0; page < PAGES; page++)
		bad += !page_ok(area + page * TPAGE, page, shadow[page]);
	for (unsigned i = 0; i < KEEP_SNAPS; i++)
		if (snaps[i].s) {
			snap_bad += check_snap(&snaps[i], 0, &seed);
			drop_snap(&snaps[i]);
		}
	st = test_stats(rt);
	printf("soak: %.0f s, %llu operations, %llu snapshots, %llu forks, "
	       "%llu evictions, %llu swap-ins; governed peak %ld KiB of "
	       "%zu (charged peak %llu KiB, over the budget %llu times); "
	       "own memory %ld -> %ld KiB; snapshot copies lost (EIO) "
	       "%llu\n", secs,
	       (unsigned long long)atomic_load(&ops),
	       (unsigned long long)nsnaps, (unsigned long long)nforks,
	       (unsigned long long)(st.evictions_clean + st.evictions_dirty),
	       (unsigned long long)(st.faults[UPG_FAULT_SWAPIN_RAM] + st.faults[UPG_FAULT_SWAPIN_DISK]),
	       atomic_load(&smp.peak_kib), BUDGET / 1024,
	       (unsigned long long)(st.managed_peak_bytes / 1024),
	       (unsigned long long)st.over_budget, own_early, own_end,
	       (unsigned long long)snap_lost);
	fflush(stdout);

	ck_assert_msg(atomic_load(&wrong) == 0 && bad == 0,
		      "%llu wrong reads during the run, %llu wrong pages at "
		      "the end", (unsigned long long)atomic_load(&wrong),
		      (unsigned long long)bad);
	/* This program never drops a page itself: one found gone was lost. */
	ck_assert_msg(st.pages_vanished == 0, "%llu resident pages vanished",
		      (unsigned long long)st.pages_vanished);
	ck_assert_msg(snap_bad == 0, "%llu snapshot pages read back wrong",
		      (unsigned long long)snap_bad);
	ck_assert_msg(nsnaps >= 2 && nforks >= 2 &&
		      st.evictions_clean + st.evictions_dirty > 0 &&
		      (st.faults[UPG_FAULT_SWAPIN_RAM] + st.faults[UPG_FAULT_SWAPIN_DISK]) > 0,
		      "the soak did not exercise what it is for");
	sampled_within(&smp, BUDGET);
	/* What upager charged never passed the budget unless it said it
	 * went over (a wait for the evictor timed out). */
	ck_assert_msg(st.over_budget > 0 || st.managed_peak_bytes <= BUDGET,
		      "charged %llu bytes of a %llu-byte budget, never over",
		      (unsigned long long)st.managed_peak_bytes,
		      (unsigned long long)BUDGET);
	/* The process's RSS holds ASan's shadow and quarantine under a
	 * sanitizer (RSS_GOVERNED), which grow with whatever was touched. */
	if (RSS_GOVERNED)
		ck_assert_msg(own_end - own_early <= OWN_GROWTH_KIB,
			      "upager's own memory grew from %ld to %ld KiB",
			      own_early, own_end);
	ck_assert_int_eq(upg_region_destroy(r), 0);
	upg_runtime_destroy(rt);
	pthread_rwlock_destroy(&pause_lock);
	free(shadow);
}
END_TEST

Suite *make_suite(void)
{
	Suite *s = suite_create("soak");
	const char *env = getenv("UPAGER_SOAK_SECONDS");

	/* The run, its full checks at the end, and room for a loaded
	 * machine (a case's own timeout is not the environment's). */
	ADD_TEST(s, soak, (int)(2 * (env ? atof(env) : 20)) + 300);
	return s;
}
