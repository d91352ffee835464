/* SPDX-License-Identifier: MIT */
/*
 * In the spirit of the kernel's uffd-stress: pthread mutexes live inside
 * managed pages and are locked by several threads while faults on those
 * pages are being served.  Each lock guards a counter in the same page;
 * a shadow count outside managed memory says what it must read.  A page
 * installed non-atomically, a lost update or a wrong zero page breaks the
 * mutex or the count.
 *
 * The region is bigger than the locking touches at first, so first-touch
 * faults (reads through trylock, writes through lock) keep coming for the
 * whole run; a bouncer thread destroys and recreates a second region at
 * the same time so the region table changes under the handlers.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "testlib.h"

const bool test_needs_uffd = true;

#define LOCKERS 4
#define PAGES 32768		/* 128 MiB */
#define OPS 60000

struct slot {
	pthread_mutex_t lock;
	uint64_t count;
};

static char *area;
static _Atomic uint64_t shadow[PAGES];
static _Atomic bool stop_bouncer;

static struct slot *slot_of(size_t page)
{
	/* Put the mutex at a page-dependent offset, as uffd-stress does. */
	return (struct slot *)(area + page * TPAGE + (page % 32) * 64);
}

static void *locker(void *arg)
{
	uint64_t seed = 0xdeadbeefull * ((uintptr_t)arg + 1);

	for (int n = 0; n < OPS; n++) {
		size_t page = rnd(&seed) % PAGES;
		struct slot *s = slot_of(page);

		if (n % 5 == 0) {
			/* A read-only look first: maps the zero page, and a
			 * zero page is an unlocked mutex. */
			if (pthread_mutex_trylock(&s->lock) == 0) {
				s->count++;
				atomic_fetch_add(&shadow[page], 1);
				pthread_mutex_unlock(&s->lock);
			}
			continue;
		}
		pthread_mutex_lock(&s->lock);
		s->count++;
		atomic_fetch_add(&shadow[page], 1);
		pthread_mutex_unlock(&s->lock);
	}
	return NULL;
}

static void *bouncer(void *arg)
{
	struct upg_runtime *rt = arg;
	uint64_t rounds = 0;

	while (!atomic_load(&stop_bouncer)) {
		struct upg_region *r;
		char *p;

		ck_assert_int_eq(upg_anon_create(rt, 64 * TPAGE, 0, &r), 0);
		p = upg_region_addr(r);
		for (size_t i = 0; i < 64; i += 9)
			fill_page(p + i * TPAGE, i, rounds);
		for (size_t i = 0; i < 64; i += 9)
			ck_assert(check_page(p + i * TPAGE, i, rounds));
		ck_assert_int_eq(upg_region_destroy(r), 0);
		rounds++;
	}
	return (void *)(uintptr_t)rounds;
}

static void stress(unsigned handlers)
{
	struct upg_runtime *rt = test_runtime(handlers, 0);
	struct upg_region *r;
	pthread_t th[LOCKERS], b;
	struct upg_stats st;
	void *rounds;

	ck_assert_int_eq(upg_anon_create(rt, (size_t)PAGES * TPAGE, 0, &r), 0);
	area = upg_region_addr(r);
	memset(shadow, 0, sizeof(shadow));
	atomic_store(&stop_bouncer, false);
	pthread_create(&b, NULL, bouncer, rt);
	for (uintptr_t t = 0; t < LOCKERS; t++)
		pthread_create(&th[t], NULL, locker, (void *)t);
	for (int t = 0; t < LOCKERS; t++)
		pthread_join(th[t], NULL);
	atomic_store(&stop_bouncer, true);
	pthread_join(b, &rounds);
	ck_assert_uint_gt((uintptr_t)rounds, 0);
	for (size_t page = 0; page < PAGES; page++)
		ck_assert_msg(slot_of(page)->count == atomic_load(&shadow[page]),
			      "page %zu: count %llu, expected %llu", page,
			      (unsigned long long)slot_of(page)->count,
			      (unsigned long long)atomic_load(&shadow[page]));
	ck_assert_int_eq(upg_stats_get(rt, &st), 0);
	ck_assert_uint_gt(st.faults[UPG_FAULT_ZERO_WRITE], 100);
	/* Every 2 MiB block of the area faults at least twice (its
	 * first-touch window, then the rest of the block); how many more
	 * come from the bouncer depends on the machine's speed (under
	 * ThreadSanitizer it made fewer than 1000 in all). */
	ck_assert_uint_gt(st.faults_total, 2 * (PAGES / 512));
	upg_runtime_destroy(rt);
}

START_TEST(mutexes_in_managed_pages_one_handler)
{
	stress(1);
}
END_TEST

START_TEST(mutexes_in_managed_pages_four_handlers)
{
	stress(4);
}
END_TEST

Suite *make_suite(void)
{
	Suite *s = suite_create("stress");

	ADD_TEST(s, mutexes_in_managed_pages_one_handler, 240);
	ADD_TEST(s, mutexes_in_managed_pages_four_handlers, 240);
	return s;
}
