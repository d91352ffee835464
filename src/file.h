/* SPDX-License-Identifier: MIT */
/*
 * File regions: pages read from a file by the handlers, written back to it
 * (shared regions) on upg_region_sync() and on eviction.
 *
 * The memory is private anonymous memory registered like an anonymous
 * region (regular-file mappings cannot take missing faults); the file is
 * read with io_uring into a per-handler bounce buffer, and the pages are
 * installed with UFFDIO_COPY, write-protected so the first write is seen.
 *
 * Page-table states of a file region:
 *   EMPTY, FILE          contents in the file (never read / dropped clean);
 *   RESIDENT|CACHED      mapped write-protected, the file's copy is valid:
 *                        dropped without writing (payload 0: the backing
 *                        copy is the file; a nonzero payload is a store
 *                        handle, as in anonymous regions);
 *   RESIDENT|DIRTY       written since read or last written back;
 *   RESIDENT|CACHED|DIRTY  being written back by upg_region_sync(): a write
 *                        meanwhile clears CACHED (wp_fault), so the sync
 *                        knows not to call the page clean;
 *   STORED, ZERO         private regions only: written pages evicted to the
 *                        store (ZERO: evicted all-zero);
 *   STORED|FILECOPY      a clean page read at random (installed RANDOM)
 *                        and evicted: a compressed copy of the file's page
 *                        in the store's RAM tier, which the store drops
 *                        (the entry reads FILE again) when it needs room.
 *                        Served by a swap-in, after a check that the file
 *                        still covers the page; the copy goes on the
 *                        swap-in (the page is again RESIDENT|CACHED).
 */
#ifndef UPAGER_FILE_H
#define UPAGER_FILE_H

#include <stdbool.h>
#include <stdint.h>

#include "runtime.h"

struct file_io;

/* Does the file serve a missing fault on an entry in state `old`? */
static inline bool file_serves(const struct upg_region *r, pte_t old)
{
	return r->file && (pte_state(old) == PTE_EMPTY ||
			   pte_state(old) == PTE_FILE);
}

/*
 * Serve a missing fault on page idx of a file region, whose entry the
 * caller locked (old: its value, EMPTY or FILE): read the page and the
 * read-ahead window that follows it, install them, unlock.  *fio is the
 * calling handler's I/O context, created on first use (freed with
 * file_io_destroy).  Handler threads only.  Returns 0 or -errno (the page
 * is then left as it was, or poisoned: SIGBUS).
 */
int file_fault(struct file_io **fio, struct upg_region *r, uint64_t idx,
	       _Atomic pte_t *e, pte_t old, bool write);
void file_io_destroy(struct file_io *fio);

enum file_evict_result {
	FILE_EVICT_STORE,	/* not for the file: the store path takes it */
	FILE_EVICT_CLEAN,	/* clean: zap it with the batch, then *val */
	FILE_EVICT_GONE,	/* the page left memory; unlock with *val */
	FILE_EVICT_STAYED,	/* the page stays; unlock with *val */
};

/*
 * Evictor thread, entry locked (value old): say a clean page can go (the
 * caller zaps it with its batch: one TLB flush for many, and may keep a
 * compressed copy of it first), or write a dirty page of a shared region
 * back to the file through the registered staging page (so no write can
 * land meanwhile).  Counts what it did,
 * except a clean page: the batch counts it when it zaps it.
 */
enum file_evict_result file_evict(struct upg_region *r, uint64_t idx,
				  pte_t old, void *staging, pte_t *val);

/* The store's drop function (store_config.drop): the entry `owner` lets
 * go of its compressed copy `handle` and reads FILE again, unless it is
 * busy or names something else now. */
bool file_copy_drop(void *owner, uint64_t handle);

/* May the compressed copy of page idx still be served?  Not when the file
 * was truncated below the page's end: the page is read again (SIGBUS past
 * the new end, the zero padding of a new last page). */
bool file_copy_fresh(const struct upg_region *r, uint64_t idx);

/* upg_region_destroy, region still linked: write back dirty pages. */
void file_flush(struct upg_region *r);
/* Region teardown, unlinked and unmapped: close the file, free the map. */
void file_release(struct upg_region *r);

#endif
