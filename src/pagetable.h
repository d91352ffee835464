/* SPDX-License-Identifier: MIT */
/*
 * The software page table: the single source of truth of where each page of
 * a region lives.
 *
 * A radix tree over the region-relative page index, 9 bits per level like
 * the x86-64 hardware table, sized to the region (a 2 MiB region is one leaf,
 * a 64 TiB region four levels).  Interior nodes and leaves are allocated on
 * first use with a compare-and-swap, so lookups never lock and a sparse
 * region costs only the leaves it touched.
 *
 * Each entry is one atomic 64-bit word: state, flags and payload.  Every
 * transition is a compare-and-swap on one entry.  The BUSY flag is the
 * per-entry lock: whoever sets it (a fault handler filling the page, the
 * evictor writing it out) owns the page until it clears it; others retry
 * later.  Only upager's own threads ever hold BUSY, never an application
 * thread, so waiting for it cannot deadlock a handler.
 */
#ifndef UPAGER_PAGETABLE_H
#define UPAGER_PAGETABLE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

/* States (bits 0-3). */
enum pte_state {
	PTE_EMPTY = 0,	  /* never touched: reads as zeros */
	PTE_ZERO = 1,	  /* mapped to the kernel's zero page */
	PTE_RESIDENT = 2, /* a private page with contents is mapped */
	PTE_STORED = 3,	  /* contents in the swap store (payload = handle) */
	PTE_FILE = 4,	  /* contents in the backing file */
	PTE_POISONED = 5, /* contents lost: access gets SIGBUS */
};

/* Flags (bits 4-15). */
#define PTE_BUSY	(UINT64_C(1) << 4)  /* a fill or eviction is in flight */
#define PTE_DIRTY	(UINT64_C(1) << 5)  /* written since last stored */
#define PTE_REF		(UINT64_C(1) << 6)  /* referenced (replacement policy) */
#define PTE_WP		(UINT64_C(1) << 7)  /* write-protected (snapshot) */
#define PTE_SHARED	(UINT64_C(1) << 8)  /* payload shared with a snapshot */
#define PTE_PINNED	(UINT64_C(1) << 9)  /* never evict */
#define PTE_CACHED	(UINT64_C(1) << 10) /* resident, payload still valid */
/* Bits 11-12: age, laps of the eviction hand a page survives without a
 * reference; set when an evicted page faults back soon (it is hot). */
#define PTE_AGE_SHIFT	11
#define PTE_AGE_MASK	(UINT64_C(3) << PTE_AGE_SHIFT)
#define PTE_AGE_HOT	PTE_AGE_MASK
/* File regions (file.h): a page read at random, whose clean copy is worth
 * keeping compressed when it is evicted; and, on a STORED entry, that the
 * object is such a copy of the file's page, which the store may drop (the
 * entry then reads FILE). */
#define PTE_RANDOM	(UINT64_C(1) << 13)
#define PTE_FILECOPY	(UINT64_C(1) << 14)
/* On a ZERO entry: the zero page is mapped there, a reservation charged to
 * the budget (reserve.h).  Without it, ZERO means zeros, nothing mapped. */
#define PTE_ZMAP	(UINT64_C(1) << 15)

#define PTE_STATE_MASK	UINT64_C(0xf)
#define PTE_FLAGS_MASK	UINT64_C(0xfff0)
#define PTE_PAYLOAD_SHIFT 16
#define PTE_PAYLOAD_MAX ((UINT64_C(1) << 48) - 1)

typedef uint64_t pte_t;

static inline enum pte_state pte_state(pte_t e)
{
	return (enum pte_state)(e & PTE_STATE_MASK);
}

static inline uint64_t pte_payload(pte_t e)
{
	return e >> PTE_PAYLOAD_SHIFT;
}

static inline pte_t pte_make(enum pte_state s, uint64_t flags, uint64_t payload)
{
	return (pte_t)s | (flags & PTE_FLAGS_MASK) |
	       (payload << PTE_PAYLOAD_SHIFT);
}

static inline pte_t pte_with_state(pte_t e, enum pte_state s)
{
	return (e & ~PTE_STATE_MASK) | (pte_t)s;
}

#define PT_BITS 9
#define PT_FANOUT (1u << PT_BITS)
#define PT_MAX_LEVELS 4
/* Pages a table can index: 2^36, i.e. 256 TiB of 4 KiB pages. */
#define PT_MAX_PAGES (UINT64_C(1) << (PT_BITS * PT_MAX_LEVELS))

struct pagetable {
	void *_Atomic root;
	uint64_t npages;
	int levels;
	_Atomic uint64_t bytes;	/* memory held by nodes and leaves */
};

/* Set up an empty table for npages pages (1..PT_MAX_PAGES). -EINVAL. */
int pt_init(struct pagetable *pt, uint64_t npages);
/* Free every node.  No other thread may use the table any more. */
void pt_fini(struct pagetable *pt);

/*
 * The entry of page `idx`.  With create, missing nodes are allocated (NULL
 * only when memory is exhausted); without, NULL means the page was never
 * touched (its entry would read PTE_EMPTY).
 */
_Atomic pte_t *pt_entry(struct pagetable *pt, uint64_t idx, bool create);

/* The value of page idx's entry; PTE_EMPTY for pages without a leaf. */
pte_t pt_get(struct pagetable *pt, uint64_t idx);

/* Compare-and-swap: true and the entry holds `new`, or false and *old is
 * refreshed with the current value. */
static inline bool pte_cas(_Atomic pte_t *e, pte_t *old, pte_t new)
{
	return atomic_compare_exchange_strong_explicit(
		e, old, new, memory_order_acq_rel, memory_order_acquire);
}

/*
 * Take the per-entry lock if the entry is not BUSY: sets BUSY and returns
 * true with *old the value before.  False if someone else holds it (*old
 * then shows their value).
 */
bool pte_trylock(_Atomic pte_t *e, pte_t *old);
/* Store `val` (without BUSY) as the entry's new value: releases the lock. */
void pte_unlock(_Atomic pte_t *e, pte_t val);

/*
 * Call fn for every leaf that exists and overlaps [from, to): with the
 * index of its first entry and its 512 entries.  Stops and returns fn's
 * value when it is nonzero.  Safe against concurrent pt_entry(create).
 */
typedef int (*pt_leaf_fn)(uint64_t first, _Atomic pte_t *leaf, void *arg);
int pt_walk(struct pagetable *pt, uint64_t from, uint64_t to, pt_leaf_fn fn,
	    void *arg);

#endif
