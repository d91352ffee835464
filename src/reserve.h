/* SPDX-License-Identifier: MIT */
/*
 * First touches in bulk: one fault on a never-touched page makes the
 * never-touched pages around it (its window) present too, so that the
 * program's next touches there need no round trip through a handler.
 *
 *  - A write fills the window with zeroed pages (one UFFDIO_COPY a run):
 *    they are resident, charged like any other, and the program's writes
 *    to them fault nowhere.  Why not the zero page, whose first write the
 *    kernel would serve itself: measured on the 2-vCPU PVM guest this was
 *    built on, that copy-on-write costs 55 us a page (a TLB flush with an
 *    IPI to the other vCPU, and the shadow page table's update), the
 *    kernel's own first touch 14-18 us, a page filled in bulk 6.6-7.3 us.
 *  - A read maps the zero page over the window: no memory until written.
 *    A zero-mapped page can become resident without upager seeing it, so
 *    it is charged as if it were: a reservation, PTE_ZERO with PTE_ZMAP.
 *    resident + reserved + RAM tier <= budget stays a hard rule; the
 *    evictor learns written ones from the hardware page table
 *    (region_sync_written) and takes the others back by moving them out,
 *    like any page: a zero page stores nothing.  A ZERO entry without
 *    ZMAP means zeros with nothing mapped (an evicted zero page of a file
 *    region or clone) and is not charged.
 *
 * The window is UPAGER_FAULT_AROUND pages on a 2 MiB block's first touch
 * and, on each later fault in the block, four times the pages the block
 * has in use (aligned, at most the block): a block used densely is whole
 * after a few faults, one used sparsely is not made to hold 2 MiB for a
 * few pages, as transparent huge pages would.  It shrinks as the budget's
 * headroom does, down to the faulting page alone.
 */
#ifndef UPAGER_RESERVE_H
#define UPAGER_RESERVE_H

#include <stdint.h>

#include "runtime.h"

static inline bool pte_reserved(pte_t e)
{
	return pte_state(e) == PTE_ZERO && (e & PTE_ZMAP);
}

static inline void region_add_reserved(struct upg_region *r, int64_t n)
{
	atomic_fetch_add_explicit(&r->ctr.pages_reserved, n,
				  memory_order_relaxed);
	atomic_fetch_add_explicit(&r->rt->ctr.pages_reserved, n,
				  memory_order_relaxed);
}

/* The page whose entry was `old` left memory (evicted, dropped): give back
 * what it was charged, as a resident page or a reservation. */
static inline void page_uncharge(struct upg_region *r, pte_t old)
{
	if (pte_state(old) == PTE_RESIDENT)
		region_add_resident(r, -1);
	else if (pte_reserved(old))
		region_add_reserved(r, -1);
}

/* A reservation was written (the kernel copied the zero page): its charge
 * moves from reserved to resident, added first so that budget_usage never
 * misses it in between. */
static inline void reserve_written(struct upg_region *r)
{
	region_add_resident(r, 1);
	region_add_reserved(r, -1);
}

/* The window a first touch of page idx works on: [*lo, *hi), aligned to
 * its size. */
void reserve_window(struct upg_region *r, uint64_t idx, uint64_t *lo,
		    uint64_t *hi);

enum reserve_kind {
	RESERVE_ZERO,	/* map the zero page: reservations */
	RESERVE_FILL,	/* install zeroed pages: resident */
};

/*
 * Make the never-touched pages of [lo, hi) that nobody holds present, as
 * `kind` says, one ioctl a run, and charge them.  The caller may hold
 * some pages of the window already, EMPTY and locked: [own_lo, own_hi) is
 * skipped, or, with map_own, mapped too (and unlocked as reservations).
 * Returns the pages mapped, or -errno when the caller's own pages could not
 * be (their entries are then unlocked EMPTY; the others are always
 * released).  Caller holds regions_lock for reading.
 */
int64_t reserve_map(struct upg_region *r, uint64_t lo, uint64_t hi,
		    uint64_t own_lo, uint64_t own_hi, bool map_own,
		    enum reserve_kind kind);

#endif
