/* SPDX-License-Identifier: MIT */
/*
 * The memory budget and the evictor.
 *
 * usage = resident managed pages + reservations (zero-mapped pages,
 * reserve.h) + the memory of the store's RAM tier.  An
 * evictor thread wakes when usage passes the high watermark and evicts to
 * the low one.  Faults never wait for it unless usage is at the limit
 * itself; then the faulting page waits (bounded) for room, and if none
 * comes, the full policy decides: overcommit (warn once, count) or SIGBUS.
 *
 * Eviction protocol (MOVE): lock the entry (BUSY), UFFDIO_MOVE the page
 * into a registered staging page, so from that instant any access faults
 * and waits for the entry; compress from staging into the store; set the
 * entry STORED; unlock.  A page swapped in is installed write-protected and
 * keeps its stored copy (CACHED): until it is written it is dropped without
 * being stored again.
 */
#ifndef UPAGER_EVICT_H
#define UPAGER_EVICT_H

#include <stdbool.h>
#include <stdint.h>

struct upg_runtime;
struct upg_region;

int evictor_start(struct upg_runtime *rt);
void evictor_stop(struct upg_runtime *rt);

/* Bytes counted against the budget now. */
uint64_t budget_usage(struct upg_runtime *rt);
/* Bytes left below the limit (0 over it; UINT64_MAX without a budget). */
uint64_t budget_headroom(struct upg_runtime *rt);

/*
 * Called while resolving a fault (fault_serve), before installing
 * `npages` new pages.  Returns true when they may be installed (waking the
 * evictor past the high watermark, waiting for it at the limit), false
 * when the budget is exhausted, the store is full and the policy is
 * SIGBUS.  The check and the charge are one step: concurrent faults never
 * both take the last room.  The charge stays in flight, counted in
 * budget_usage, until the fault's end: by then the pages it installed are
 * counted as resident or reserved.
 */
bool budget_charge(struct upg_runtime *rt, uint64_t npages);
/* End of a fault: give back what this thread charged for it (installed
 * pages are counted as resident or reserved by now; the rest never came). */
void budget_settle(struct upg_runtime *rt);

/* Record that page idx of r was evicted (for refault detection), and ask
 * whether a swap-in of it now is a refault. */
void ghost_note_evicted(struct upg_runtime *rt, uintptr_t addr);
bool ghost_is_refault(struct upg_runtime *rt, uintptr_t addr);

#endif
