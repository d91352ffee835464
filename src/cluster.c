/* SPDX-License-Identifier: MIT */
/*
 * Swap-in clusters (cluster.h).  Handler threads only, under regions_lock
 * for reading; entries are taken with their BUSY bit, never waited for.
 */
#include "cluster.h"
#include "runtime.h"
#include "util.h"

/* Swap-ins this many pages apart or closer are "near": the cluster grows. */
#define NEAR_PAGES (4 * FILL_MAX_PAGES)

static bool sequential(struct seq_state *s, uint64_t idx, uint32_t *w)
{
	bool seq = idx == atomic_load_explicit(&s->next, memory_order_relaxed);
	uint32_t cur = atomic_load_explicit(&s->window, memory_order_relaxed);

	*w = seq ? MIN(MAX(cur, 1) * 2, FILL_MAX_PAGES) : 1;
	atomic_store_explicit(&s->window, *w, memory_order_relaxed);
	return seq;
}

static uint32_t adapt(struct cluster_state *c, uint64_t idx)
{
	uint64_t last = atomic_exchange_explicit(&c->last, idx,
						 memory_order_relaxed);
	uint64_t dist = idx > last ? idx - last : last - idx;
	uint32_t w = atomic_load_explicit(&c->window, memory_order_relaxed);

	w = dist <= NEAR_PAGES ? MIN(MAX(w, 1) * 2, FILL_MAX_PAGES)
			       : MAX(w / 2, 1);
	atomic_store_explicit(&c->window, w, memory_order_relaxed);
	return w;
}

/* A page worth bringing along: stored, and not a file page's copy (whose
 * freshness is checked against the file first, on its own fault). */
static bool take(struct upg_region *r, uint64_t i, _Atomic pte_t **e,
		 pte_t *old)
{
	*e = pt_entry(&r->pt, i, false);
	if (!*e || !pte_trylock(*e, old))
		return false;
	if (pte_state(*old) == PTE_STORED && !(*old & PTE_FILECOPY))
		return true;
	pte_unlock(*e, *old);
	return false;
}

unsigned cluster_lock(struct upg_region *r, uint64_t idx, _Atomic pte_t **e,
		      pte_t *old, uint64_t *page)
{
	uint64_t lo, hi;
	unsigned n = 1;
	uint32_t w;

	page[0] = idx;
	if (old[0] & PTE_FILECOPY)
		return 1;
	if (sequential(&r->seq_read, idx, &w)) {
		/* In order: the run that follows, up to its first gap. */
		for (uint64_t i = idx + 1; i < MIN(idx + w, r->npages); i++) {
			if (!take(r, i, &e[n], &old[n]))
				break;
			page[n++] = i;
		}
	} else {
		w = adapt(&r->cluster, idx);
		lo = idx - idx % w;
		hi = MIN(lo + w, r->npages);
		for (uint64_t i = lo; i < hi; i++) {
			if (i == idx || !take(r, i, &e[n], &old[n]))
				continue;
			page[n++] = i;
		}
	}
	atomic_store_explicit(&r->seq_read.next, page[n - 1] + 1,
			      memory_order_relaxed);
	return n;
}
