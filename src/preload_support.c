/* SPDX-License-Identifier: MIT */
/*
 * Managed sub-ranges: what an allocator built on a region needs to keep the
 * page table true when the application gives memory back (MADV_DONTNEED,
 * munmap, MAP_FIXED over it).
 *
 * Locking: each page is taken with its entry's BUSY bit, in ascending
 * order, a leaf at a time; the holder of BUSY may be a handler or the
 * evictor (which never wait for us) or another drop (which takes them in
 * the same order), so spinning on BUSY cannot deadlock.  No lock other
 * than BUSY is held, so this may run inside jemalloc's extent hooks.
 */
#include <errno.h>
#include <sched.h>
#include <sys/mman.h>

#include "reserve.h"
#include "runtime.h"
#include "store.h"
#include "uffd.h"
#include "util.h"

/* What became of a dropped range's entries. */
enum drop_mode {
	DROP_ZERO,	/* the pages read as zeros from now on */
	DROP_FORGET,	/* not ours any more: never touch them again */
};

struct drop {
	struct upg_region *r;
	uint64_t from, to;	/* page indices */
	enum drop_mode mode;
};

/* Entry of a page that is no longer the region's memory: not EMPTY, so no
 * fault-around includes it; not RESIDENT, so the evictor skips it. */
#define PTE_FOREIGN pte_make(PTE_POISONED, PTE_PINNED, 0)

static void lock_spin(_Atomic pte_t *e, pte_t *old)
{
	while (!pte_trylock(e, old))
		sched_yield();
}

static void release_entry(struct upg_region *r, pte_t old)
{
	struct store *st = r->rt->store;

	if (st && (pte_state(old) == PTE_STORED ||
		   (pte_state(old) == PTE_RESIDENT && (old & PTE_CACHED))))
		store_free(st, pte_payload(old));
	page_uncharge(r, old);
}

/*
 * One leaf: lock the entries of [lo, hi), throw the hardware pages away in
 * one madvise, then publish the new state.  Write protection is lifted
 * first: a protected page dropped would leave a uffd-wp marker behind, on
 * which a zero-page install fails.
 */
static int drop_leaf(uint64_t first, _Atomic pte_t *leaf, void *arg)
{
	struct drop *d = arg;
	struct upg_region *r = d->r;
	uint64_t lo = MAX(first, d->from), hi = MIN(first + PT_FANOUT, d->to);
	void *addr = (void *)(r->start + (lo << PAGE_SHIFT));
	size_t len = (hi - lo) << PAGE_SHIFT;
	pte_t old, val = d->mode == DROP_ZERO ? PTE_EMPTY : PTE_FOREIGN;

	if (lo >= hi)
		return 0;
	for (uint64_t i = lo; i < hi; i++) {
		lock_spin(&leaf[i - first], &old);
		release_entry(r, old);
	}
	if (d->mode == DROP_ZERO) {
		if (r->wp)
			uffd_writeprotect(r->rt->uffd, addr, len, false, true);
		madvise(addr, len, MADV_DONTNEED);
	}
	for (uint64_t i = lo; i < hi; i++)
		pte_unlock(&leaf[i - first], val);
	return 0;
}

static bool range_ok(const struct upg_region *r, size_t off, size_t len)
{
	return r && atomic_load(&((struct upg_region *)r)->magic) ==
			    REGION_ALIVE &&
	       !(off & ~PAGE_MASK) && !(len & ~PAGE_MASK) && off <= r->size &&
	       len <= r->size - off;
}

static int drop_range(struct upg_region *r, size_t off, size_t len,
		      enum drop_mode mode)
{
	struct drop d = { r, off >> PAGE_SHIFT, (off + len) >> PAGE_SHIFT,
			  mode };

	if (!range_ok(r, off, len))
		return -EINVAL;
	if (mode == DROP_FORGET) {
		/* Every entry must exist to carry the mark. */
		for (uint64_t i = d.from; i < d.to; i += PT_FANOUT - i % PT_FANOUT)
			if (!pt_entry(&r->pt, i, true))
				return -ENOMEM;
	}
	pt_walk(&r->pt, d.from, d.to, drop_leaf, &d);
	return 0;
}

int upg_region_drop(struct upg_region *r, size_t off, size_t len)
{
	return drop_range(r, off, len, DROP_ZERO);
}

int upg_region_forget(struct upg_region *r, size_t off, size_t len)
{
	return drop_range(r, off, len, DROP_FORGET);
}

int upg_region_inherit(struct upg_region *r)
{
	if (!range_ok(r, 0, 0))
		return -EINVAL;
	if (madvise((void *)r->start, r->size, MADV_DOFORK))
		return -errno;
	return 0;
}
