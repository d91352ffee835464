/* SPDX-License-Identifier: MIT */
/*
 * Reservations (reserve.h): windows of never-touched pages mapped to the
 * zero page by one fault.  Runs on handler threads, under regions_lock for
 * reading; each page is owned through its entry's BUSY bit while it is
 * mapped, so the evictor and other handlers leave it alone meanwhile.
 */
#include <errno.h>
#include <string.h>

#include "evict.h"
#include "reserve.h"
#include "snapshot.h"
#include "uffd.h"
#include "util.h"

/* Of the headroom left in the budget, the most one window may take: a
 * fault near the limit maps little more than its own page, so the evictor
 * is not made to take back reservations as fast as they are handed out. */
#define HEADROOM_SHARE 8
/* A window is this many times the pages its block has in use. */
#define BLOCK_GROWTH 4

/* How many pages of the 2 MiB block [blk, blk + ZERO_MAX_PAGES) were
 * touched.  A block is one leaf of the page table (its entries are
 * contiguous). */
static uint64_t block_touched(struct upg_region *r, uint64_t blk)
{
	_Atomic pte_t *leaf = pt_entry(&r->pt, blk, false);
	uint64_t n = MIN(r->npages - blk, ZERO_MAX_PAGES), t = 0;

	for (uint64_t i = 0; leaf && i < n; i++)
		t += pte_state(atomic_load_explicit(
			     &leaf[i], memory_order_relaxed)) != PTE_EMPTY;
	return t;
}

void reserve_window(struct upg_region *r, uint64_t idx, uint64_t *lo,
		    uint64_t *hi)
{
	_Static_assert(ZERO_MAX_PAGES == PT_FANOUT, "a block is one leaf");
	uint64_t touched = block_touched(r, idx - idx % ZERO_MAX_PAGES);
	uint64_t w = r->rt->opts.fault_around;
	uint64_t room = budget_headroom(r->rt) >> PAGE_SHIFT;

	/* Each fault in a block makes a window four times what the block
	 * has in use: a dense block is whole after a few faults, a block
	 * used at a quarter density or less never is. */
	while (w < ZERO_MAX_PAGES && w < BLOCK_GROWTH * touched)
		w *= 2;
	w = MAX(MIN(MIN(w, ZERO_MAX_PAGES), room / HEADROOM_SHARE), 1);
	*lo = idx - idx % w;
	*hi = MIN(*lo + w, r->npages);
}

/* Lock the EMPTY entries of [lo, hi) outside [own_lo, own_hi) that nobody
 * holds; bit i of `locked` is set for page lo + i. */
static void lock_empty(struct upg_region *r, uint64_t lo, uint64_t hi,
		       uint64_t own_lo, uint64_t own_hi, uint64_t *locked)
{
	for (uint64_t i = lo; i < hi; i++) {
		_Atomic pte_t *e;
		pte_t old;

		if (i >= own_lo && i < own_hi)
			continue;
		e = pt_entry(&r->pt, i, true);
		if (!e || !pte_trylock(e, &old))
			continue;
		if (pte_state(old) != PTE_EMPTY) {
			pte_unlock(e, old);
			continue;
		}
		snap_preserve(r, i, old);	/* snapshots keep zeros */
		locked[(i - lo) / 64] |= UINT64_C(1) << ((i - lo) % 64);
	}
}

static bool is_locked(const uint64_t *locked, uint64_t bit)
{
	return locked[bit / 64] & (UINT64_C(1) << (bit % 64));
}

static void *page_addr(const struct upg_region *r, uint64_t idx)
{
	return (void *)(r->start + (idx << PAGE_SHIFT));
}

/* Release [lo, lo + n) (entries known to exist) with the value `val`. */
static void release_run(struct upg_region *r, uint64_t lo, uint64_t n,
			pte_t val)
{
	for (uint64_t i = lo; i < lo + n; i++)
		pte_unlock(pt_entry(&r->pt, i, false), val);
}

/* Give up every page locked in `locked` but the caller's own. */
static void release_locked(struct upg_region *r, uint64_t lo, uint64_t hi,
			   uint64_t own_lo, uint64_t own_hi,
			   const uint64_t *locked)
{
	for (uint64_t i = lo; i < hi; i++)
		if ((i < own_lo || i >= own_hi) && is_locked(locked, i - lo))
			release_run(r, i, 1, PTE_EMPTY);
}

/* Set the caller's own pages in `locked`. */
static void mark_own(uint64_t lo, uint64_t own_lo, uint64_t own_hi,
		     uint64_t *locked)
{
	for (uint64_t i = own_lo; i < own_hi; i++)
		locked[(i - lo) / 64] |= UINT64_C(1) << ((i - lo) % 64);
}

/* Zero pages (or zeroed pages) over [i, i + n). */
static int map_run(struct upg_region *r, uint64_t i, uint64_t n,
		   enum reserve_kind kind)
{
	struct upg_runtime *rt = r->rt;

	if (kind == RESERVE_FILL)
		return uffd_copy(rt->uffd, page_addr(r, i), rt->zero_src,
				 n << PAGE_SHIFT, false);
	return uffd_zeropage(rt->uffd, page_addr(r, i), n << PAGE_SHIFT);
}

int64_t reserve_map(struct upg_region *r, uint64_t lo, uint64_t hi,
		    uint64_t own_lo, uint64_t own_hi, bool map_own,
		    enum reserve_kind kind)
{
	struct upg_runtime *rt = r->rt;
	uint64_t locked[ZERO_MAX_PAGES / 64] = { 0 };
	uint64_t own = map_own ? own_hi - own_lo : 0, n = 0, mapped = 0;
	/* Filled pages are referenced like the page that faulted: a block
	 * filled together is then evicted (and stored) together, in order,
	 * and read back together. */
	const pte_t filled = pte_make(PTE_RESIDENT, PTE_DIRTY | PTE_REF, 0);
	const pte_t zmap = pte_make(PTE_ZERO, PTE_ZMAP, 0);
	bool charged = false;
	int err = 0;

	if (map_own)
		mark_own(lo, own_lo, own_hi, locked);
	lock_empty(r, lo, hi, own_lo, own_hi, locked);
	for (uint64_t i = lo; i < hi; i++)
		n += is_locked(locked, i - lo);
	/* Charged as resident pages: each may become one without a fault.
	 * No room for the window: the caller's own pages alone. */
	if (n > own) {
		charged = budget_charge(rt, n);
		if (!charged) {
			release_locked(r, lo, hi, own_lo, own_hi, locked);
			memset(locked, 0, sizeof(locked));
			if (map_own)
				mark_own(lo, own_lo, own_hi, locked);
		}
	}
	if (!charged && own && !budget_charge(rt, own)) {
		release_run(r, own_lo, own, PTE_EMPTY);
		return -ENOMEM;
	}
	for (uint64_t i = lo; i < hi;) {
		uint64_t run = 0;
		int rc;

		while (i + run < hi && is_locked(locked, i + run - lo))
			run++;
		if (run == 0) {
			i++;
			continue;
		}
		rc = map_run(r, i, run, kind);
		if (rc == -ENOENT && map_own && own_lo < i + run &&
		    own_hi > i && run > own_hi - own_lo) {
			/* The run crosses the end of a mapping (the program
			 * changed the protection of part of the region, and
			 * the kernel fills one mapping at a time): the
			 * caller's own pages alone, which lie in the one
			 * that faulted; the rest of the window stays
			 * untouched, as it might be inaccessible. */
			release_run(r, i, own_lo - i, PTE_EMPTY);
			release_run(r, own_hi, i + run - own_hi, PTE_EMPTY);
			i = own_lo;
			run = own_hi - own_lo;
			rc = map_run(r, i, run, kind);
		}
		if (rc < 0 && rc != -EEXIST) {
			/* The range is gone (ENOENT) or the process is
			 * exiting: leave these pages untouched. */
			release_run(r, i, run, PTE_EMPTY);
			if (map_own && own_lo < i + run && own_hi > i)
				err = rc;
		} else {
			release_run(r, i, run, kind == RESERVE_FILL ? filled
								    : zmap);
			mapped += run;
		}
		i += run;
	}
	if (kind == RESERVE_FILL) {
		region_add_resident(r, (int64_t)mapped);
		COUNT(r, pages_filled, mapped);
	} else {
		region_add_reserved(r, (int64_t)mapped);
		COUNT(r, pages_zero_mapped, mapped);
	}
	return err ? err : (int64_t)mapped;
}
