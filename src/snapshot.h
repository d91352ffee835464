/* SPDX-License-Identifier: MIT */
/*
 * Copy-on-write snapshots and clones: what the fault handler, the evictor
 * and region teardown call.  The design is in snapshot.c.
 *
 * The one rule the hooks keep: a snapshot entry of page i changes only
 * while the region's entry i is locked (BUSY), so whoever holds that lock
 * sees a stable answer to "does a snapshot still read page i through the
 * region?".
 */
#ifndef UPAGER_SNAPSHOT_H
#define UPAGER_SNAPSHOT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "pagetable.h"

struct upg_region;
struct upg_runtime;
struct upg_snapshot;

/* Per-region snapshot state, embedded in struct upg_region. */
struct region_snap {
	/* The gate: handlers inside resolve() on this region are counted in
	 * inflight; an API call that changes the snapshot list (take, drop,
	 * restore) closes it and waits for inflight to drain.  Faults that
	 * arrive while it is closed are left asleep and woken on opening. */
	_Atomic uint32_t inflight;
	_Atomic bool closed;
	/* Snapshots that may still read pages through this region.  Changed
	 * only with the gate closed and snap_lock held; read by handlers
	 * inside the gate and by API threads holding snap_lock. */
	struct upg_snapshot *_Atomic list;
	/* A clone: the snapshot whose view its untouched pages have. */
	struct upg_snapshot *origin;
};

/* Handler side of the gate: false means the fault must be left asleep (the
 * thread is woken when the gate opens). */
bool snap_gate_enter(struct upg_region *r);
void snap_gate_exit(struct upg_region *r);

/*
 * Page idx of r is about to change: a write to a present page (wp_fault),
 * a fill of an EMPTY one (its contents are zeros), a restore.  Its contents
 * (entry value `old`, entry locked by the caller) go to every snapshot
 * that still reads the page through the region: one copy in the store at
 * most, referenced by each; a stored page only gains references.  A no-op
 * without snapshots.  Caller: a handler inside the gate, or a thread
 * holding snap_lock with the gate closed.
 */
void snap_preserve(struct upg_region *r, uint64_t idx, pte_t old);

/* A clone's never-touched page: where its contents are. */
enum origin_kind {
	ORIGIN_ZERO,	/* zeros */
	ORIGIN_STORED,	/* *handle, one reference taken for the caller */
	ORIGIN_PAGE,	/* copied into the bounce page */
	ORIGIN_LOST,	/* the snapshot lost it: poison */
	ORIGIN_BUSY,	/* the source entry is locked: retry later */
};
enum origin_kind snap_origin_page(struct upg_region *clone, uint64_t idx,
				  void *bounce, uint64_t *handle);

/* What a clone's page dropped by the evictor as all zeros becomes: ZERO
 * (reads zeros) rather than EMPTY, which on a clone means "the snapshot's
 * page". */
static inline pte_t snap_zero_pte(const struct region_snap *sn)
{
	return pte_make(sn->origin ? PTE_ZERO : PTE_EMPTY, 0, 0);
}

/* Region teardown (no handler can reach r any more): snapshots of r keep
 * their view (materialised: stored pages referenced, resident ones copied
 * into the store); a clone gives its snapshot back. */
void snap_region_gone(struct upg_region *r);
/* Runtime teardown: every snapshot of rt is released, nothing copied. */
void snap_teardown_all(struct upg_runtime *rt);

#endif
