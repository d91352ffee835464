/* SPDX-License-Identifier: MIT */
/* Unit tests of the software page table. */
#include <pthread.h>

#include "pagetable.h"
#include "testlib.h"

const bool test_needs_uffd = false;

START_TEST(levels_follow_size)
{
	struct pagetable pt;

	ck_assert_int_eq(pt_init(&pt, 0), -EINVAL);
	ck_assert_int_eq(pt_init(&pt, PT_MAX_PAGES + 1), -EINVAL);
	ck_assert_int_eq(pt_init(&pt, 1), 0);
	ck_assert_int_eq(pt.levels, 1);
	ck_assert_int_eq(pt_init(&pt, 512), 0);
	ck_assert_int_eq(pt.levels, 1);
	ck_assert_int_eq(pt_init(&pt, 513), 0);
	ck_assert_int_eq(pt.levels, 2);
	ck_assert_int_eq(pt_init(&pt, (64 * TIB) / TPAGE), 0);
	ck_assert_int_eq(pt.levels, 4);
}
END_TEST

START_TEST(entries_start_empty_and_keep_values)
{
	struct pagetable pt;
	uint64_t n = UINT64_C(1) << 30;

	ck_assert_int_eq(pt_init(&pt, n), 0);
	ck_assert_ptr_null(pt_entry(&pt, 12345, false));
	ck_assert_uint_eq(pt_get(&pt, 12345), PTE_EMPTY);
	ck_assert_ptr_null(pt_entry(&pt, n, true));
	for (uint64_t i = 0; i < n; i += n / 7 + 3) {
		_Atomic pte_t *e = pt_entry(&pt, i, true);

		ck_assert_ptr_nonnull(e);
		ck_assert_uint_eq(*e, PTE_EMPTY);
		*e = pte_make(PTE_STORED, PTE_DIRTY, i + 1);
	}
	for (uint64_t i = 0; i < n; i += n / 7 + 3) {
		pte_t v = pt_get(&pt, i);

		ck_assert_int_eq(pte_state(v), PTE_STORED);
		ck_assert_uint_eq(v & PTE_DIRTY, PTE_DIRTY);
		ck_assert_uint_eq(pte_payload(v), i + 1);
		/* The neighbours share the leaf but were never set. */
		ck_assert_uint_eq(pt_get(&pt, i ^ 1), PTE_EMPTY);
	}
	pt_fini(&pt);
	ck_assert_uint_eq(pt.bytes, 0);
}
END_TEST

START_TEST(payload_uses_all_48_bits)
{
	pte_t v = pte_make(PTE_FILE, PTE_BUSY | PTE_WP, PTE_PAYLOAD_MAX);

	ck_assert_int_eq(pte_state(v), PTE_FILE);
	ck_assert_uint_eq(pte_payload(v), PTE_PAYLOAD_MAX);
	ck_assert_uint_eq(v & PTE_FLAGS_MASK, PTE_BUSY | PTE_WP);
	v = pte_with_state(v, PTE_RESIDENT);
	ck_assert_int_eq(pte_state(v), PTE_RESIDENT);
	ck_assert_uint_eq(pte_payload(v), PTE_PAYLOAD_MAX);
}
END_TEST

START_TEST(sparse_table_is_cheap)
{
	struct pagetable pt;

	/* 64 TiB, ten pages touched far apart: four nodes per page at most. */
	ck_assert_int_eq(pt_init(&pt, (64 * TIB) / TPAGE), 0);
	for (uint64_t i = 0; i < 10; i++)
		ck_assert_ptr_nonnull(pt_entry(&pt, i * (pt.npages / 10), true));
	ck_assert_uint_le(pt.bytes, 10 * 4 * TPAGE);
	pt_fini(&pt);
}
END_TEST

START_TEST(trylock_excludes)
{
	struct pagetable pt;
	_Atomic pte_t *e;
	pte_t old;

	ck_assert_int_eq(pt_init(&pt, 16), 0);
	e = pt_entry(&pt, 3, true);
	*e = pte_make(PTE_RESIDENT, 0, 0);
	ck_assert(pte_trylock(e, &old));
	ck_assert_int_eq(pte_state(old), PTE_RESIDENT);
	ck_assert(!pte_trylock(e, &old));
	ck_assert_uint_eq(old & PTE_BUSY, PTE_BUSY);
	pte_unlock(e, pte_make(PTE_STORED, PTE_BUSY, 9));
	ck_assert_uint_eq(*e & PTE_BUSY, 0);
	ck_assert(pte_trylock(e, &old));
	ck_assert_uint_eq(pte_payload(old), 9);
	pt_fini(&pt);
}
END_TEST

struct walk_acc {
	uint64_t leaves, set;
};

static int count_leaf(uint64_t first, _Atomic pte_t *leaf, void *arg)
{
	struct walk_acc *acc = arg;

	acc->leaves++;
	for (unsigned i = 0; i < PT_FANOUT; i++)
		acc->set += leaf[i] != PTE_EMPTY;
	(void)first;
	return 0;
}

START_TEST(walk_visits_existing_leaves_in_range)
{
	struct pagetable pt;
	struct walk_acc acc = { 0, 0 };

	ck_assert_int_eq(pt_init(&pt, 1u << 24), 0);
	for (uint64_t i = 0; i < 8; i++)
		*pt_entry(&pt, i * 100000, true) = pte_make(PTE_ZERO, 0, 0);
	ck_assert_int_eq(pt_walk(&pt, 0, pt.npages, count_leaf, &acc), 0);
	ck_assert_uint_eq(acc.leaves, 8);
	ck_assert_uint_eq(acc.set, 8);
	acc = (struct walk_acc){ 0, 0 };
	/* [100000, 300001) holds the leaves of pages 100000..300000. */
	pt_walk(&pt, 100000, 300001, count_leaf, &acc);
	ck_assert_uint_eq(acc.set, 3);
	pt_fini(&pt);
}
END_TEST

/* Threads race to create leaves and bump counters in shared entries with
 * CAS: every increment must be there at the end, none lost or doubled. */
#define CONC_THREADS 4
#define CONC_OPS 200000
#define CONC_PAGES (1u << 20)

struct conc_arg {
	struct pagetable *pt;
	uint64_t seed;
	uint64_t *per_page;	/* this thread's increments, by page % 4096 */
};

static void *conc_worker(void *p)
{
	struct conc_arg *a = p;

	for (unsigned n = 0; n < CONC_OPS; n++) {
		uint64_t idx = rnd(&a->seed) % CONC_PAGES;
		_Atomic pte_t *e = pt_entry(a->pt, idx, true);
		pte_t old = *e;

		while (!pte_cas(e, &old,
				pte_make(PTE_RESIDENT, 0, pte_payload(old) + 1)))
			;
		a->per_page[idx % 4096]++;
	}
	return NULL;
}

static int sum_leaf(uint64_t first, _Atomic pte_t *leaf, void *arg)
{
	uint64_t *sums = arg;

	for (unsigned i = 0; i < PT_FANOUT; i++)
		sums[(first + i) % 4096] += pte_payload(leaf[i]);
	return 0;
}

START_TEST(concurrent_updates_lose_nothing)
{
	static uint64_t per_page[CONC_THREADS][4096], sums[4096];
	struct conc_arg args[CONC_THREADS];
	pthread_t th[CONC_THREADS];
	struct pagetable pt;

	ck_assert_int_eq(pt_init(&pt, CONC_PAGES), 0);
	for (int t = 0; t < CONC_THREADS; t++) {
		args[t] = (struct conc_arg){ &pt, 0x1234567ull * (t + 1),
					     per_page[t] };
		pthread_create(&th[t], NULL, conc_worker, &args[t]);
	}
	for (int t = 0; t < CONC_THREADS; t++)
		pthread_join(th[t], NULL);
	pt_walk(&pt, 0, pt.npages, sum_leaf, sums);
	for (int i = 0; i < 4096; i++) {
		uint64_t want = 0;

		for (int t = 0; t < CONC_THREADS; t++)
			want += per_page[t][i];
		ck_assert_uint_eq(sums[i], want);
	}
	/* Racing creators must not leak nodes: at most one leaf per 512
	 * pages plus the interior nodes. */
	ck_assert_uint_le(pt.bytes, (CONC_PAGES / 512 + 1 + 4) * TPAGE);
	pt_fini(&pt);
}
END_TEST

Suite *make_suite(void)
{
	Suite *s = suite_create("pagetable");

	ADD_TEST(s, levels_follow_size, 60);
	ADD_TEST(s, entries_start_empty_and_keep_values, 60);
	ADD_TEST(s, payload_uses_all_48_bits, 60);
	ADD_TEST(s, sparse_table_is_cheap, 60);
	ADD_TEST(s, trylock_excludes, 60);
	ADD_TEST(s, walk_visits_existing_leaves_in_range, 60);
	ADD_TEST(s, concurrent_updates_lose_nothing, 60);
	return s;
}
