/* SPDX-License-Identifier: MIT */
/*
 * Fault handling: handler threads read batches of uffd messages and resolve
 * each one from the software page table.  fault_serve() is the decision
 * itself, shared with threads that resolve their own faults (sigbus.c,
 * UPAGER_RESOLVE=thread).
 *
 * Rules every path here keeps: a resolver never touches managed memory (its
 * stack, buffers and the zero source are upager's own), never calls the
 * process's malloc, and never waits on anything an application thread may
 * hold.  A page whose entry is BUSY (another resolver or the evictor owns
 * it) is put aside and retried after the rest of the batch.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#include "evict.h"
#include "failsafe.h"
#include "file.h"
#include "inject.h"
#include "log.h"
#include "mem.h"
#include "reserve.h"
#include "runtime.h"
#include "store.h"
#include "thread.h"
#include "uffd.h"
#include "util.h"

#define BATCH 64
#define BOUNCE_BYTES (FILL_MAX_PAGES * PAGE_SIZE)
_Static_assert(FILL_MAX_PAGES <= STORE_AHEAD_MAX, "read-ahead too long");

struct fault {
	struct uffd_msg msg;
	uint64_t t0;		/* when the handler read the message */
};

struct handler {
	struct upg_runtime *rt;
	struct fault_ctx ctx;	/* its bounce pages and file reads */
	pthread_t thread;
	/* Messages whose page was BUSY, retried after the batch. */
	struct fault deferred[BATCH * 2];
	unsigned ndeferred;
	struct uffd_msg msgs[BATCH];
};

void fault_account(struct upg_runtime *rt, struct upg_region *r, int kind,
		   uint64_t ns)
{
	counter_add(&rt->ctr.faults[kind], 1);
	if (r)
		counter_add(&r->ctr.faults[kind], 1);
	hist_record(&rt->hist[kind], ns);
}

int fault_ctx_init(struct fault_ctx *c)
{
	c->fio = NULL;
	c->bounce = mem_alloc(BOUNCE_BYTES);
	return c->bounce ? 0 : -ENOMEM;
}

void fault_ctx_fini(struct fault_ctx *c)
{
	mem_free(c->bounce, BOUNCE_BYTES);
	file_io_destroy(c->fio);
	c->bounce = NULL;
	c->fio = NULL;
}

static void *page_addr(const struct upg_region *r, uint64_t idx)
{
	return (void *)(r->start + (idx << PAGE_SHIFT));
}

/*
 * The budget is exhausted, the store full, and the policy is strict: the
 * faulting thread gets SIGBUS.  The page keeps its state (a poison marker
 * only stands in the hardware table), so nothing stored is lost.
 */
static int refuse(struct upg_region *r, uint64_t idx)
{
	log_error("no memory for the page at %p: budget exhausted and swap "
		  "store full (UPAGER_FULL_POLICY=sigbus)", page_addr(r, idx));
	COUNT(r, poisoned, 1);
	return uffd_poison(r->rt->uffd, page_addr(r, idx), PAGE_SIZE);
}

/*
 * A read of a never-touched page: map the zero page over it and over the
 * never-touched pages of its window (reserve.h).  The zero page costs no
 * memory until written; a write is then an in-kernel copy.
 */
static int zero_read(struct upg_region *r, uint64_t idx)
{
	uint64_t lo, hi;
	int64_t rc;

	reserve_window(r, idx, &lo, &hi);
	rc = reserve_map(r, lo, hi, idx, idx + 1, true, RESERVE_ZERO);
	if (rc == -ENOMEM)
		return refuse(r, idx);
	return rc < 0 ? (int)rc : 0;
}

/*
 * A write to a never-touched page: install a zeroed page (the write then
 * needs no second, copy-on-write fault) and wake the writer, then fill the
 * never-touched rest of its window (reserve.h).  A touch of a neighbour
 * racing the fill faults as usual and finds the page there (remap).
 */
static int zero_write(struct upg_region *r, uint64_t idx)
{
	struct upg_runtime *rt = r->rt;
	uint64_t lo, hi;
	int rc;

	if (!budget_charge(rt, 1)) {
		pte_unlock(pt_entry(&r->pt, idx, false), PTE_EMPTY);
		return refuse(r, idx);
	}
	rc = uffd_copy(rt->uffd, page_addr(r, idx), rt->zero_src, PAGE_SIZE,
		       false);
	if (rc < 0 && rc != -EEXIST) {
		pte_unlock(pt_entry(&r->pt, idx, false), PTE_EMPTY);
		return rc;
	}
	region_add_resident(r, 1);
	COUNT(r, pages_filled, 1);
	pte_unlock(pt_entry(&r->pt, idx, false),
		   pte_make(PTE_RESIDENT, PTE_DIRTY | PTE_REF, 0));
	reserve_window(r, idx, &lo, &hi);
	if (hi - lo > 1)
		reserve_map(r, lo, hi, idx, idx + 1, false, RESERVE_FILL);
	return 0;
}

/*
 * A missing fault on a page whose entry says ZERO or RESIDENT.  Most often
 * a second thread's fault on a page already installed (the install gets
 * EEXIST and wakes it), or a write racing the mapping of its reservation.
 * Otherwise the application dropped the page itself (MADV_DONTNEED), whose
 * contents are then zeros, as the kernel would give; or a ZERO entry with
 * nothing mapped (an evicted zero page of a file region or clone) is read
 * or written again.  Entry locked by the caller; unlocked here.
 */
static int remap(struct upg_region *r, uint64_t idx, _Atomic pte_t *e,
		 pte_t old, bool write)
{
	struct upg_runtime *rt = r->rt;
	bool charged = pte_state(old) == PTE_RESIDENT || pte_reserved(old);
	int rc;

	if (!charged && !budget_charge(rt, 1)) {
		pte_unlock(e, old);
		return refuse(r, idx);
	}
	if (write || pte_state(old) == PTE_RESIDENT)
		rc = uffd_copy(rt->uffd, page_addr(r, idx), rt->zero_src,
			       PAGE_SIZE, false);
	else
		rc = uffd_zeropage(rt->uffd, page_addr(r, idx), PAGE_SIZE);
	if (rc == -EEXIST)
		COUNT(r, faults_spurious, 1);
	if (rc == 0 && pte_state(old) == PTE_RESIDENT) {
		COUNT(r, pages_vanished, 1);
		log_debug("page at %p was resident and is gone: it reads as "
			  "zeros", page_addr(r, idx));
	}
	if (rc < 0 || pte_state(old) == PTE_RESIDENT) {
		pte_unlock(e, old);
		return rc;
	}
	/* A ZERO entry now holds the zero page (read) or a page (write). */
	if (!charged)
		region_add_reserved(r, 1);
	old = pte_make(PTE_ZERO, PTE_ZMAP, 0);
	if (write) {
		reserve_written(r);
		old = pte_make(PTE_RESIDENT, PTE_DIRTY | PTE_REF, 0);
	}
	pte_unlock(e, old);
	return 0;
}

/* A stored page whose copy is lost (I/O error, checksum mismatch): the
 * accessing thread gets SIGBUS, never wrong data.  Unlocks e. */
static int swap_lost(struct upg_region *r, uint64_t idx, _Atomic pte_t *e,
		     pte_t old, int rc)
{
	struct upg_runtime *rt = r->rt;
	void *addr = page_addr(r, idx);

	log_error("page at %p lost: %s of its stored copy; the accessing "
		  "thread gets SIGBUS", addr,
		  rc == -EBADMSG ? "checksum mismatch, or no remote copy "
				   "that opens" : "read error");
	store_free(rt->store, pte_payload(old));
	pte_unlock(e, pte_make(PTE_POISONED, 0, 0));
	COUNT(r, poisoned, 1);
	return uffd_poison(rt->uffd, addr, PAGE_SIZE);
}

/*
 * Whether a stored page about to be installed keeps its stored copy: it
 * is then installed write-protected (CACHED) until written, so an
 * unmodified page is later dropped rather than stored again; or, where
 * most pages swapped in are written soon (swapcopy.h), writable, the copy
 * let go.  Snapshots that read the page through the region must see its
 * first write (they keep the old contents then).
 */
static bool swap_keep(struct upg_region *r, pte_t old)
{
	return r->wp && ((old & PTE_FILECOPY) || atomic_load(&r->snap.list) ||
			 swapcopy_keep(&r->swapcopy));
}

/* The bookkeeping of a stored page now installed (present), writable or
 * write-protected as `keep` said.  Unlocks e. */
static void swap_installed(struct upg_region *r, uint64_t idx,
			   _Atomic pte_t *e, pte_t old, bool keep)
{
	struct upg_runtime *rt = r->rt;
	uint64_t handle = pte_payload(old), hot;

	/* A page evicted and wanted back within a second is hot: the
	 * policy keeps it for a few more laps of its hand. */
	hot = ghost_is_refault(rt, (uintptr_t)page_addr(r, idx)) ? PTE_AGE_HOT
								 : 0;
	region_add_resident(r, 1);
	COUNT(r, pages_filled, 1);
	if (old & PTE_FILECOPY) {
		/* The file backs it again: the copy's RAM is given back
		 * (it is taken anew if the page is evicted clean again). */
		store_free(rt->store, handle);
		COUNT(r, file_copy_hits, 1);
		pte_unlock(e, pte_make(PTE_RESIDENT, PTE_CACHED | PTE_RANDOM |
						     PTE_REF | hot, 0));
		return;
	}
	if (!keep) {
		/* Writes cannot be seen, or here they come to most pages
		 * swapped in (swapcopy.h): the copy is let go now. */
		store_free(rt->store, handle);
		pte_unlock(e, pte_make(PTE_RESIDENT, PTE_DIRTY | PTE_REF | hot,
				       0));
		return;
	}
	pte_unlock(e, pte_make(PTE_RESIDENT, PTE_CACHED | PTE_REF | hot,
			       handle));
}

/* Install a stored page fetched into `page` (swap_keep says how).
 * Unlocks e. */
static int swap_install(struct upg_region *r, uint64_t idx, _Atomic pte_t *e,
			pte_t old, const void *page, bool keep)
{
	int rc = uffd_copy(r->rt->uffd, page_addr(r, idx), page, PAGE_SIZE,
			   keep);

	if (rc < 0 && rc != -EEXIST) {
		pte_unlock(e, old);
		return rc;
	}
	swap_installed(r, idx, e, old, keep);
	return 0;
}

/*
 * Install n pages of a cluster at consecutive indices from idx, fetched
 * into `pages` one after the other, all kept alike: one UFFDIO_COPY for
 * them all, where a COPY each cost an ioctl each (about six a swap-in
 * fault for sqlite3 at half its peak).  A page present already (EEXIST)
 * counts as installed, as in swap_install.  If the COPY fails part way,
 * each page is installed on its own: those it did install report EEXIST.
 * Unlocks the entries.
 */
static void swap_install_run(struct upg_region *r, uint64_t idx,
			     _Atomic pte_t **e, const pte_t *old,
			     const char *pages, unsigned n, bool keep)
{
	int rc = uffd_copy(r->rt->uffd, page_addr(r, idx), pages,
			   (size_t)n * PAGE_SIZE, keep);

	for (unsigned i = 0; i < n; i++) {
		if (rc == 0 || rc == -EEXIST)
			swap_installed(r, idx + i, e[i], old[i], keep);
		else
			swap_install(r, idx + i, e[i], old[i],
				     pages + (size_t)i * PAGE_SIZE, keep);
	}
	COUNT(r, swapin_clustered, n);
}

/* Bring one stored page back through the bounce page.  Entry locked by
 * the caller; unlocked here. */
static int swap_in_one(struct fault_ctx *c, struct upg_region *r,
		       uint64_t idx, _Atomic pte_t *e, pte_t old, int *kind)
{
	struct upg_runtime *rt = r->rt;
	bool from_disk = false;
	int rc;

	if (!budget_charge(rt, 1)) {
		pte_unlock(e, old);
		return refuse(r, idx);
	}
	rc = store_get(rt->store, pte_payload(old), c->bounce, &from_disk);
	*kind = from_disk ? UPG_FAULT_SWAPIN_DISK : UPG_FAULT_SWAPIN_RAM;
	if (rc < 0 && (old & PTE_FILECOPY)) {
		/* Only a copy was lost: the file still has the page. */
		log_warn("compressed copy of the file page at %p unreadable "
			 "(%s): reading the file", page_addr(r, idx),
			 strerror(-rc));
		store_free(rt->store, pte_payload(old));
		*kind = UPG_FAULT_FILE;
		return file_fault(&c->fio, r, idx, e, pte_make(PTE_FILE, 0, 0),
				  false);
	}
	if (rc < 0)
		return swap_lost(r, idx, e, old, rc);
	return swap_install(r, idx, e, old, c->bounce, swap_keep(r, old));
}

/*
 * A stored page faulted: bring it in with its cluster (cluster.h), fetched
 * together: the faulting page first, then the others a run at a time
 * (swap_install_run).  A cluster page that did not come stays stored: its
 * own fault fetches it, or reports it lost.
 */
static int swap_in(struct fault_ctx *c, struct upg_region *r, uint64_t idx,
		   _Atomic pte_t *e, pte_t old, int *kind)
{
	_Atomic pte_t *ents[FILL_MAX_PAGES] = { e };
	pte_t olds[FILL_MAX_PAGES] = { old };
	uint64_t handles[FILL_MAX_PAGES], page[FILL_MAX_PAGES];
	int res[FILL_MAX_PAGES], rc;
	bool keep[FILL_MAX_PAGES];
	unsigned n = cluster_lock(r, idx, ents, olds, page);

	if (n > 1 && !budget_charge(r->rt, n)) {
		for (unsigned i = 1; i < n; i++)
			pte_unlock(ents[i], olds[i]);
		n = 1;
	}
	if (n == 1)
		return swap_in_one(c, r, idx, e, old, kind);
	for (unsigned i = 0; i < n; i++)
		handles[i] = pte_payload(olds[i]);
	store_get_ahead(r->rt->store, handles, n, c->bounce, res);
	*kind = res[0] == 0 ? UPG_FAULT_SWAPIN_RAM : UPG_FAULT_SWAPIN_DISK;
	/* The faulting page first: its thread runs on meanwhile. */
	if (res[0] >= 0)
		rc = swap_install(r, idx, e, old, c->bounce,
				  swap_keep(r, old));
	else if (res[0] == -EIO || res[0] == -EBADMSG)
		rc = swap_lost(r, idx, e, old, res[0]);
	else	/* not fetched with the others: on its own, as ever */
		rc = swap_in_one(c, r, idx, e, old, kind);
	for (unsigned i = 1; i < n; i++)
		keep[i] = res[i] >= 0 && swap_keep(r, olds[i]);
	/* The others in runs of consecutive pages fetched and kept alike. */
	for (unsigned i = 1, k; i < n; i += k) {
		for (k = 1; i + k < n && res[i] >= 0 && res[i + k] >= 0 &&
			    page[i + k] == page[i] + k && keep[i + k] == keep[i];
		     k++)
			;
		if (res[i] >= 0)
			swap_install_run(r, page[i], &ents[i], &olds[i],
					 (char *)c->bounce + i * PAGE_SIZE, k,
					 keep[i]);
		else
			pte_unlock(ents[i], olds[i]);
	}
	return rc;
}

/*
 * A never-touched page of a clone: its contents are its snapshot's.  A
 * stored page is shared by reference and swapped in like any other
 * (CACHED: copied only when written); a page the snapshot still reads
 * through its region is copied.  Entry locked by the caller, unlocked
 * here; -EAGAIN when the source page is busy (retry later).
 */
static int clone_fault(struct fault_ctx *c, struct upg_region *r,
		       uint64_t idx, _Atomic pte_t *e, bool write, int *kind)
{
	struct upg_runtime *rt = r->rt;
	const void *src = c->bounce;
	uint64_t handle;
	int rc;

	*kind = write ? UPG_FAULT_ZERO_WRITE : UPG_FAULT_ZERO_READ;
	switch (snap_origin_page(r, idx, c->bounce, &handle)) {
	case ORIGIN_BUSY:
		pte_unlock(e, PTE_EMPTY);
		return -EAGAIN;
	case ORIGIN_STORED:
		return swap_in_one(c, r, idx, e,
				   pte_make(PTE_STORED, 0, handle), kind);
	case ORIGIN_LOST:
		pte_unlock(e, pte_make(PTE_POISONED, 0, 0));
		COUNT(r, poisoned, 1);
		return uffd_poison(rt->uffd, page_addr(r, idx), PAGE_SIZE);
	case ORIGIN_ZERO:
		if (!write) {
			/* This page alone: an EMPTY neighbour of a clone
			 * reads its snapshot, not zeros. */
			rc = (int)reserve_map(r, idx, idx + 1, idx, idx + 1,
					      true, RESERVE_ZERO);
			return rc == -ENOMEM ? refuse(r, idx) : MIN(rc, 0);
		}
		src = rt->zero_src;
		break;
	case ORIGIN_PAGE:
		break;
	}
	if (!budget_charge(rt, 1)) {
		pte_unlock(e, PTE_EMPTY);
		return refuse(r, idx);
	}
	rc = uffd_copy(rt->uffd, page_addr(r, idx), src, PAGE_SIZE, false);
	if (rc < 0 && rc != -EEXIST) {
		pte_unlock(e, PTE_EMPTY);
		return rc;
	}
	region_add_resident(r, 1);
	COUNT(r, pages_filled, 1);
	pte_unlock(e, pte_make(PTE_RESIDENT, PTE_DIRTY | PTE_REF, 0));
	return 0;
}

/*
 * A write to a write-protected page.  Snapshots that still read the page
 * through the region get its contents first (snapshot.c).  A page swapped
 * in clean loses its
 * stored copy now (the copy goes stale with this write) and becomes dirty;
 * protection is lifted before the entry is released, so the evictor can
 * never drop it as clean after the write lands.  A page that was evicted
 * while the writer waited is gone: waking the writer makes it fault again
 * and be served from the store.
 */
static int wp_fault(struct upg_region *r, uint64_t idx, bool *defer)
{
	struct upg_runtime *rt = r->rt;
	_Atomic pte_t *e = pt_entry(&r->pt, idx, false);
	void *addr = page_addr(r, idx);
	pte_t old;
	int rc;

	if (!e)
		return uffd_writeprotect(rt->uffd, addr, PAGE_SIZE, false,
					 false);
	if (!pte_trylock(e, &old)) {
		*defer = true;
		return 0;
	}
	if (pte_state(old) != PTE_RESIDENT && pte_state(old) != PTE_ZERO) {
		pte_unlock(e, old);
		return uffd_wake(rt->uffd, addr, PAGE_SIZE);
	}
	/* Snapshots that still read this page keep it before the write. */
	snap_preserve(r, idx, old);
	rc = uffd_writeprotect(rt->uffd, addr, PAGE_SIZE, false, false);
	if (old & PTE_CACHED) {
		if (pte_payload(old))	/* 0: the file is the backing copy */
			store_free(rt->store, pte_payload(old));
		swapcopy_written(&r->swapcopy);
		old = pte_make(PTE_RESIDENT, PTE_DIRTY | PTE_REF, 0);
	}
	pte_unlock(e, old);
	return rc;
}

static enum fault_result resolve(struct fault_ctx *c, struct upg_region *r,
				 uintptr_t addr, bool write, bool wp, uint64_t t0)
{
	struct upg_runtime *rt = r->rt;
	uint64_t idx = (addr - r->start) >> PAGE_SHIFT;
	enum fault_result res = FAULT_DONE;
	_Atomic pte_t *e;
	pte_t old;
	int kind, rc = 0;

	if (wp) {
		bool again = false;

		rc = wp_fault(r, idx, &again);
		if (again)
			return FAULT_BUSY;
		kind = UPG_FAULT_WP;
		goto out;
	}
	e = pt_entry(&r->pt, idx, true);
	if (!e || !pte_trylock(e, &old))
		return FAULT_BUSY;	/* no memory for a leaf yet, or BUSY */
	if ((old & PTE_FILECOPY) && !file_copy_fresh(r, idx)) {
		/* Truncated under the copy: the file says what is there. */
		store_free(rt->store, pte_payload(old));
		old = pte_make(PTE_FILE, 0, 0);
	}
	if (file_serves(r, old)) {
		kind = UPG_FAULT_FILE;
		rc = file_fault(&c->fio, r, idx, e, old, write);
		goto out;
	}
	switch (pte_state(old)) {
	case PTE_EMPTY:
		if (r->snap.origin) {
			rc = clone_fault(c, r, idx, e, write, &kind);
			if (rc == -EAGAIN)
				return FAULT_BUSY;
			break;
		}
		snap_preserve(r, idx, old);	/* snapshots keep zeros */
		kind = write ? UPG_FAULT_ZERO_WRITE : UPG_FAULT_ZERO_READ;
		rc = write ? zero_write(r, idx) : zero_read(r, idx);
		break;
	case PTE_STORED:
		rc = swap_in(c, r, idx, e, old, &kind);
		break;
	case PTE_ZERO:
	case PTE_RESIDENT:
		kind = write ? UPG_FAULT_ZERO_WRITE : UPG_FAULT_ZERO_READ;
		rc = remap(r, idx, e, old, write);
		break;
	default:
		/* POISONED, or a state this build cannot serve: the thread
		 * gets SIGBUS, never wrong data.  EEXIST: the marker was
		 * there (a thread resolving its own fault is back at it, the
		 * kernel having raised BUS_ADRERR for it). */
		pte_unlock(e, pte_with_state(old, PTE_POISONED));
		rc = uffd_poison(rt->uffd, (void *)addr, PAGE_SIZE);
		if (rc != -EEXIST)
			COUNT(r, poisoned, 1);
		kind = write ? UPG_FAULT_ZERO_WRITE : UPG_FAULT_ZERO_READ;
		res = FAULT_POISONED;
		break;
	}
out:
	if (rc < 0 && rc != -EEXIST) {
		/* Left alone, the thread would wait (or fault) for ever. */
		log_error("fault at %p not resolved (%s): the thread gets "
			  "SIGBUS", (void *)addr, strerror(-rc));
		if (fail_fault(rt, addr, wp))
			res = FAULT_POISONED;
	}
	fault_account(rt, r, kind, now_ns() - t0);
	return res;
}

enum fault_result fault_serve(struct fault_ctx *c, struct upg_region *r,
			      uintptr_t addr, bool write, bool wp, uint64_t t0)
{
	enum fault_result res;

	/* Failed closed (failsafe.h): answered, not served, in either
	 * mode. */
	if (runtime_failed(r->rt))
		return fail_fault(r->rt, addr, wp) ? FAULT_POISONED
						   : FAULT_DONE;
	/* Closed while a snapshot is taken, dropped or restored: the fault
	 * waits until the gate opens. */
	if (!snap_gate_enter(r))
		return FAULT_GATED;
	res = resolve(c, r, page_align_down(addr), write, wp, t0);
	budget_settle(r->rt);
	snap_gate_exit(r);
	return res;
}

static void defer(struct handler *h, const struct fault *f)
{
	if (h->ndeferred < ARRAY_SIZE(h->deferred)) {
		h->deferred[h->ndeferred++] = *f;
		return;
	}
	/* Too many at once: the thread will fault again when woken, and the
	 * owner of the BUSY entry wakes the page when it is done. */
	uffd_wake(h->rt->uffd, (void *)page_align_down(
				       f->msg.arg.pagefault.address),
		  PAGE_SIZE);
}

/* Returns false when this handler was told to stop. */
static bool handle(struct handler *h, const struct fault *f)
{
	struct upg_runtime *rt = h->rt;
	uintptr_t addr = f->msg.arg.pagefault.address;
	uint64_t flags = f->msg.arg.pagefault.flags;
	struct upg_region *r;

	if (f->msg.event != UFFD_EVENT_PAGEFAULT)
		return true;
	if (page_align_down(addr) == (uintptr_t)rt->doorbell) {
		uffd_zeropage(rt->uffd, rt->doorbell, PAGE_SIZE);
		return !atomic_load(&rt->stopping);
	}
	if (runtime_failed(rt)) {
		fail_fault(rt, addr,
			   f->msg.arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP);
		return true;
	}
	r = region_lookup(rt, addr);
	if (!r) {
		/* The region is being destroyed: unregistering it wakes the
		 * thread, which then faults as on ordinary memory. */
		uffd_wake(rt->uffd, (void *)page_align_down(addr), PAGE_SIZE);
		return true;
	}
	/* FAULT_GATED: the thread sleeps on and is woken when the snapshot
	 * gate opens (gate_open). */
	if (fault_serve(&h->ctx, r, addr, flags & UFFD_PAGEFAULT_FLAG_WRITE,
			flags & UFFD_PAGEFAULT_FLAG_WP, f->t0) == FAULT_BUSY)
		defer(h, f);
	return true;
}

static bool retry_deferred(struct handler *h)
{
	unsigned n = h->ndeferred;
	struct fault again[ARRAY_SIZE(h->deferred)];
	bool go_on = true;

	memcpy(again, h->deferred, n * sizeof(again[0]));
	h->ndeferred = 0;
	for (unsigned i = 0; i < n; i++)
		go_on &= handle(h, &again[i]);
	return go_on;
}

/*
 * Read a batch of messages.  For spin_ns after the last batch, poll with
 * non-blocking reads (RWF_NOWAIT, Linux 6.10+): a fault that comes soon
 * after another then finds the handler awake, without the wake-up of a
 * sleeping thread (in a VM, of an idle vCPU).  Then block in read().
 */
static ssize_t read_batch(struct handler *h, uint64_t *spin_ns, uint64_t last)
{
	struct iovec iov = { h->msgs, sizeof(h->msgs) };
	int fd = h->rt->uffd;

	while (*spin_ns && now_ns() - last < *spin_ns) {
		ssize_t n = preadv2(fd, &iov, 1, -1, RWF_NOWAIT);

		if (n > 0)
			return n;
		if (errno == EOPNOTSUPP) {
			*spin_ns = 0;	/* an older kernel: just sleep */
			break;
		}
		__builtin_ia32_pause();
	}
	return read(fd, h->msgs, sizeof(h->msgs));
}

/*
 * Serve faults until told to stop (returns 0), or until this handler
 * cannot go on: then returns -errno, and *unserved is how many messages
 * of h->msgs it read and did not serve.
 */
static int serve(struct handler *h, size_t *unserved)
{
	struct upg_runtime *rt = h->rt;
	uint64_t spin_ns = (uint64_t)rt->opts.spin_us * 1000, t0 = 0;
	bool go_on = true;
	int err;

	while (go_on) {
		ssize_t n = read_batch(h, &spin_ns, t0);

		t0 = now_ns();

		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			*unserved = 0;
			return -errno;
		}
		err = inject_check(INJECT_HANDLER_DIE, 0);
		if (err) {
			*unserved = (size_t)n / sizeof(h->msgs[0]);
			return err;
		}
		pthread_rwlock_rdlock(&rt->regions_lock);
		for (size_t i = 0; i < (size_t)n / sizeof(h->msgs[0]); i++) {
			struct fault f = { h->msgs[i], t0 };

			go_on &= handle(h, &f);
		}
		while (h->ndeferred && go_on) {
			/* Let the owner of the BUSY entries finish. */
			sched_yield();
			go_on &= retry_deferred(h);
		}
		pthread_rwlock_unlock(&rt->regions_lock);
	}
	return 0;
}

/* Answer the messages h->msgs[0..n) and those deferred as a failed
 * runtime does; false if one was the doorbell telling it to stop. */
static bool answer_failed(struct handler *h, size_t n)
{
	bool go_on = true;

	for (size_t i = 0; i < n; i++) {
		struct fault f = { h->msgs[i], 0 };

		go_on &= handle(h, &f);
	}
	return retry_deferred(h) && go_on;
}

/*
 * The handler could not go on serving (err).  It does not leave: the
 * runtime fails closed (failsafe.h) and this thread answers every fault
 * from then on, those it had read first, until it is told to stop; so no
 * fault ever waits for a reader that is gone.  Only if the userfaultfd
 * cannot be read at all is there nobody to answer them: the process ends
 * (abort) with the reason logged, rather than hang.
 */
static void serve_failed(struct handler *h, size_t unserved, int err)
{
	struct upg_runtime *rt = h->rt;
	bool go_on;

	runtime_fail(rt, "fault handler upager-fault%u stopped: %s",
		     (unsigned)(h - rt->handlers), strerror(-err));
	go_on = answer_failed(h, unserved);
	while (go_on) {
		ssize_t n = read(rt->uffd, h->msgs, sizeof(h->msgs));

		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n < 0) {
			log_error("the userfaultfd cannot be read (%s): no "
				  "fault can be answered; ending the process",
				  strerror(errno));
			abort();
		}
		go_on = answer_failed(h, (size_t)n / sizeof(h->msgs[0]));
	}
}

static void *handler_main(void *arg)
{
	struct handler *h = arg;
	size_t unserved = 0;
	int err = serve(h, &unserved);

	if (err)
		serve_failed(h, unserved, err);
	return NULL;
}

int handlers_start(struct upg_runtime *rt)
{
	unsigned n = rt->opts.handlers;
	char name[16];
	int err;

	rt->handlers = mem_alloc(n * sizeof(struct handler));
	if (!rt->handlers)
		return -ENOMEM;
	for (unsigned i = 0; i < n; i++) {
		struct handler *h = &rt->handlers[i];

		h->rt = rt;
		if (fault_ctx_init(&h->ctx)) {
			handlers_stop(rt);
			return -ENOMEM;
		}
		snprintf(name, sizeof(name), "upager-fault%u", (uint8_t)i);
		err = thread_start(&h->thread, handler_main, h, name);
		if (err) {
			log_error("cannot start a fault handler thread: %s",
				  strerror(-err));
			handlers_stop(rt);
			return err;
		}
		rt->nhandlers++;
	}
	return 0;
}

/*
 * Stop the handlers without a signal or an extra syscall on their fast
 * path: each touch of the doorbell page is a fault that exactly one handler
 * reads; having resolved it, that handler sees `stopping` and exits.  The
 * touches are made one at a time, so every handler gets exactly one.
 */
void handlers_stop(struct upg_runtime *rt)
{
	if (!rt->handlers)
		return;
	atomic_store(&rt->stopping, true);
	for (unsigned i = 0; i < rt->nhandlers; i++) {
		(void)*(volatile char *)rt->doorbell;
		madvise(rt->doorbell, PAGE_SIZE, MADV_DONTNEED);
	}
	for (unsigned i = 0; i < rt->nhandlers; i++)
		pthread_join(rt->handlers[i].thread, NULL);
	for (unsigned i = 0; i < rt->opts.handlers; i++)
		fault_ctx_fini(&rt->handlers[i].ctx);
	rt->nhandlers = 0;
	mem_free(rt->handlers, rt->opts.handlers * sizeof(struct handler));
	rt->handlers = NULL;
}
