/* SPDX-License-Identifier: MIT */
/*
 * Swap-in clusters: a fault on a stored page brings back, in the same round
 * trip, the stored pages around it.  The evictor's hand sweeps in address
 * order, so pages next to each other in the address space were mostly
 * evicted together and sit side by side in the store: the cluster is
 * usually one read of the swap file (store_get_ahead), or decompressions
 * from the RAM tier, and one round trip instead of one per page.
 *
 * Which pages: while faults come in address order, a run ahead of the
 * fault that doubles each time (read-ahead, up to FILL_MAX_PAGES);
 * otherwise the aligned block around the fault, whose size adapts to how
 * close together the region's swap-ins fall, as the kernel's VMA-based
 * swap read-ahead does: near the last one, it doubles; far, it halves, so
 * a program that touches its memory at random does not pay for
 * neighbours it never uses.
 */
#ifndef UPAGER_CLUSTER_H
#define UPAGER_CLUSTER_H

#include <stdatomic.h>
#include <stdint.h>

#include "pagetable.h"

struct upg_region;

/* Per region; a hint shared by the handlers, not state: races only make
 * one cluster larger or smaller than it would be. */
struct cluster_state {
	_Atomic uint64_t last;		/* page of the last swap-in */
	_Atomic uint32_t window;	/* pages of the next cluster */
};

/*
 * Lock the stored pages of idx's cluster.  On entry e[0] and old[0] hold
 * idx's locked entry (STORED); on return e[1..n), old[1..n) and page[0..n)
 * hold the others, locked, and their page indices.  Returns n (1: idx
 * alone).  Pages another thread holds are left out.
 */
unsigned cluster_lock(struct upg_region *r, uint64_t idx, _Atomic pte_t **e,
		      pte_t *old, uint64_t *page);

#endif
