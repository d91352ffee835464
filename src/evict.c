/* SPDX-License-Identifier: MIT */
/*
 * The evictor thread, the budget and the replacement policy.
 * See evict.h for the protocol.  Locking: the evictor holds regions_lock
 * for reading while it works on a batch (regions cannot go away under it)
 * and owns each page it evicts through the entry's BUSY bit.  It never
 * waits for a handler and never touches a page it has not locked.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>
#include <time.h>

#include "evict.h"
#include "failsafe.h"
#include "file.h"
#include "inject.h"
#include "log.h"
#include "mem.h"
#include "pagemap.h"
#include "reserve.h"
#include "runtime.h"
#include "store.h"
#include "thread.h"
#include "tier.h"
#include "uffd.h"
#include "util.h"

#define BATCH 64		/* victims chosen per sweep step */
/* A file region whose clean pages did not compress this many times in a
 * row is tried again only every COPY_RETRY-th eviction. */
#define COPY_REFUSALS 16
#define COPY_RETRY 64
#define GHOSTS 8192		/* recently evicted pages remembered */
#define REFAULT_WINDOW_NS 1000000000ull
/* A handler at the limit waits until the evictor makes room, finds the
 * store full or nothing it can evict; this is only a safety net. */
#define WAIT_MAX_MS 1000

struct ghost {
	_Atomic uintptr_t addr;
	_Atomic uint64_t when;
};

struct victim {
	struct upg_region *r;
	uint64_t idx;
};

/*
 * Clean pages of one batch, dropped together: process_madvise() zaps a
 * vector of ranges with a single TLB flush, where madvise() per page
 * would cost an IPI to every CPU of the process for each.  Their entries
 * stay BUSY until the zap is done.
 */
struct zap_batch {
	struct iovec iov[BATCH];
	struct {
		struct upg_region *r;
		_Atomic pte_t *e;
		pte_t old, val;
		bool dirty;	/* its contents were stored for the zap */
	} page[BATCH];
	unsigned n;
};

struct evictor {
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t wake;		/* the evictor waits here */
	pthread_cond_t progress;	/* handlers at the limit wait here */
	/* Serialises charging: the check against the limit and adding the
	 * charge to `inflight` are one step, so two handlers can never both
	 * take the last room.  Held for a few loads; never while waiting. */
	pthread_mutex_t charge_lock;
	/* Pages charged by faults still being resolved (budget_settle). */
	_Atomic uint64_t inflight;
	_Atomic bool stop, kicked;
	_Atomic bool store_full;	/* the last put found no room */
	_Atomic bool stuck;		/* the last round found nothing to evict */
	_Atomic bool warned_full, warned_thrash;
	void *staging;			/* BATCH registered pages MOVEs land in */
	int pidfd;			/* this process, for process_madvise */
	int memfd;			/* /proc/self/mem, or -1 */
	uint64_t limit, high, low;	/* bytes */
	uintptr_t hand;			/* address the sweep resumes at */
	struct ghost ghosts[GHOSTS];
	struct zap_batch zap;		/* the evictor thread's */
	char pages[BATCH * PAGE_SIZE];	/* pages read_pages read */
	struct tier tier;		/* the RAM tier's share (tier.h) */
	/* Thrashing detection over one-second windows. */
	_Atomic uint64_t win_start, win_swapins, win_refaults;
};

/*
 * Any thread.  `inflight` is read first: a fault's install adds its pages
 * to resident (or reserved) before budget_settle takes them out of
 * inflight, so read in this order a page in between is counted twice,
 * never missed.  The evictor stores a page (RAM tier) before it uncharges
 * it, with the same effect.
 */
uint64_t budget_usage(struct upg_runtime *rt)
{
	uint64_t inflight = rt->evictor ? atomic_load(&rt->evictor->inflight)
					 : 0;
	int64_t pages = atomic_load(&rt->ctr.pages_resident) +
			atomic_load(&rt->ctr.pages_reserved) +
			(int64_t)inflight;
	/* Without a budget a snapshot may create the store while a handler
	 * is here (snapshot.c need_store publishes it with release). */
	struct store *st = __atomic_load_n(&rt->store, __ATOMIC_ACQUIRE);

	return (pages > 0 ? (uint64_t)pages << PAGE_SHIFT : 0) +
	       (st ? store_ram_bytes(st) : 0);
}

uint64_t budget_headroom(struct upg_runtime *rt)
{
	uint64_t usage;

	if (!rt->evictor)
		return UINT64_MAX;
	usage = budget_usage(rt);
	return usage < rt->evictor->limit ? rt->evictor->limit - usage : 0;
}

static void kick(struct evictor *ev)
{
	if (atomic_exchange(&ev->kicked, true))
		return;
	pthread_mutex_lock(&ev->lock);
	pthread_cond_signal(&ev->wake);
	pthread_mutex_unlock(&ev->lock);
}

static struct timespec deadline_ms(unsigned ms)
{
	struct timespec t;

	clock_gettime(CLOCK_REALTIME, &t);
	t.tv_nsec += (long)(ms % 1000) * 1000000;
	t.tv_sec += ms / 1000 + t.tv_nsec / 1000000000;
	t.tv_nsec %= 1000000000;
	return t;
}

/* Pages this thread charged for the fault it is resolving. */
static _Thread_local uint64_t charged
	__attribute__((tls_model("initial-exec")));

/* Charge npages if they fit below the limit (or whatever the usage, when
 * forced); *usage is what the usage would be with them. */
static bool try_charge(struct upg_runtime *rt, struct evictor *ev,
		       uint64_t npages, bool force, uint64_t *usage)
{
	bool ok;

	pthread_mutex_lock(&ev->charge_lock);
	*usage = budget_usage(rt) + (npages << PAGE_SHIFT);
	ok = force || *usage <= ev->limit;
	if (ok)
		atomic_fetch_add(&ev->inflight, npages);
	pthread_mutex_unlock(&ev->charge_lock);
	if (ok)
		charged += npages;
	return ok;
}

/* At the limit: wait for the evictor to make room, woken by each batch it
 * finishes, and charge.  ev->lock is held only around the wait, never
 * while touching managed memory, so the evictor can always take it. */
static bool wait_for_room(struct upg_runtime *rt, struct evictor *ev,
			  uint64_t npages, uint64_t *usage)
{
	struct timespec until = deadline_ms(WAIT_MAX_MS);
	bool ok;

	pthread_mutex_lock(&ev->lock);
	while (!(ok = try_charge(rt, ev, npages, false, usage)) &&
	       !atomic_load(&ev->store_full) && !atomic_load(&ev->stuck)) {
		atomic_store(&ev->kicked, true);
		pthread_cond_signal(&ev->wake);
		if (pthread_cond_timedwait(&ev->progress, &ev->lock, &until))
			break;
	}
	pthread_mutex_unlock(&ev->lock);
	return ok || try_charge(rt, ev, npages, false, usage);
}

/* Any thread that charges; a relaxed maximum is enough for statistics. */
static void note_peak(struct upg_runtime *rt, uint64_t usage)
{
	uint64_t peak = atomic_load_explicit(&rt->ctr.managed_peak,
					     memory_order_relaxed);

	while (usage > peak && !atomic_compare_exchange_weak_explicit(
				       &rt->ctr.managed_peak, &peak, usage,
				       memory_order_relaxed,
				       memory_order_relaxed))
		;
}

bool budget_charge(struct upg_runtime *rt, uint64_t npages)
{
	struct evictor *ev = rt->evictor;
	uint64_t usage;
	bool ok;

	if (!ev) {
		note_peak(rt, budget_usage(rt) + (npages << PAGE_SHIFT));
		return true;
	}
	ok = try_charge(rt, ev, npages, false, &usage);
	if (usage > ev->high)
		kick(ev);
	if (!ok && !wait_for_room(rt, ev, npages, &usage)) {
		counter_add(&rt->ctr.over_budget, 1);
		if (rt->opts.full_policy == UPG_FULL_SIGBUS)
			return false;
		if (!atomic_exchange(&ev->warned_full, true))
			log_warn("memory budget of %llu bytes exceeded: the "
				 "swap store is full or nothing can be "
				 "evicted; going over (UPAGER_FULL_POLICY="
				 "sigbus refuses instead)",
				 (unsigned long long)ev->limit);
		try_charge(rt, ev, npages, true, &usage);
	}
	note_peak(rt, usage);
	return true;
}

void budget_settle(struct upg_runtime *rt)
{
	if (charged && rt->evictor)
		atomic_fetch_sub(&rt->evictor->inflight, charged);
	charged = 0;
}

static struct ghost *ghost_slot(struct evictor *ev, uintptr_t addr)
{
	uint64_t h = (addr >> PAGE_SHIFT) * 0x9e3779b97f4a7c15ull;

	return &ev->ghosts[h >> (64 - 13)];
}

void ghost_note_evicted(struct upg_runtime *rt, uintptr_t addr)
{
	struct ghost *g = ghost_slot(rt->evictor, addr);

	atomic_store_explicit(&g->addr, addr, memory_order_relaxed);
	atomic_store_explicit(&g->when, now_ns(), memory_order_relaxed);
}

static void thrash_check(struct upg_runtime *rt, struct evictor *ev,
			 bool refault)
{
	uint64_t now = now_ns(), start = atomic_load(&ev->win_start);
	uint64_t swapins, refaults;

	if (now - start > REFAULT_WINDOW_NS) {
		swapins = atomic_exchange(&ev->win_swapins, 0);
		refaults = atomic_exchange(&ev->win_refaults, 0);
		atomic_store(&ev->win_start, now);
		/* Most swap-ins are of pages evicted within the last second,
		 * and many of them: the working set does not fit. */
		if (refaults > 1000 && refaults * 2 > swapins &&
		    !atomic_exchange(&ev->warned_thrash, true))
			log_warn("thrashing: %llu of %llu swap-ins in the last "
				 "second were pages evicted less than a second "
				 "before; the working set exceeds the budget",
				 (unsigned long long)refaults,
				 (unsigned long long)swapins);
	}
	atomic_fetch_add(&ev->win_swapins, 1);
	if (refault)
		atomic_fetch_add(&ev->win_refaults, 1);
}

bool ghost_is_refault(struct upg_runtime *rt, uintptr_t addr)
{
	struct evictor *ev = rt->evictor;
	struct ghost *g;
	bool refault;

	if (!ev)
		return false;
	g = ghost_slot(ev, addr);
	refault = atomic_load_explicit(&g->addr, memory_order_relaxed) ==
			  addr &&
		  now_ns() - atomic_load_explicit(&g->when,
						  memory_order_relaxed) <
			  REFAULT_WINDOW_NS;
	if (refault)
		counter_add(&rt->ctr.refaults, 1);
	thrash_check(rt, ev, refault);
	return refault;
}

/* ------------------------------------------------------------------ */
/* Choosing victims                                                    */
/* ------------------------------------------------------------------ */

struct sweep {
	struct upg_runtime *rt;
	struct upg_region *r;
	struct victim *v;
	unsigned n, max;
	uint64_t from;		/* first index of interest in this region */
	uint64_t next;		/* where the hand stops */
	bool second_chance;
};

/* Resident pages and reservations (a zero page moved out stores nothing). */
static bool evictable(pte_t e)
{
	return (pte_state(e) == PTE_RESIDENT || pte_reserved(e)) &&
	       !(e & (PTE_BUSY | PTE_PINNED));
}

static int sweep_leaf(uint64_t first, _Atomic pte_t *leaf, void *arg)
{
	struct sweep *s = arg;

	for (unsigned i = 0; i < PT_FANOUT; i++) {
		uint64_t idx = first + i;
		pte_t e;

		if (idx < s->from || idx >= s->r->npages)
			continue;
		e = atomic_load_explicit(&leaf[i], memory_order_relaxed);
		if (!evictable(e))
			continue;
		/* CLOCK: a hot page ages by one lap, a referenced page
		 * loses its bit; both stay this time. */
		if (s->second_chance && (e & PTE_AGE_MASK)) {
			pte_cas(&leaf[i], &e, e - (UINT64_C(1) << PTE_AGE_SHIFT));
			continue;
		}
		if (s->second_chance && (e & PTE_REF)) {
			pte_cas(&leaf[i], &e, e & ~PTE_REF);
			continue;
		}
		s->v[s->n++] = (struct victim){ s->r, idx };
		if (s->n == s->max) {
			s->next = idx + 1;
			return 1;
		}
	}
	return 0;
}

/*
 * Advance the hand over the regions in address order, collecting up to
 * max victims.  Caller holds regions_lock for reading.
 */
static unsigned select_victims(struct upg_runtime *rt, struct evictor *ev,
			       struct victim *v, unsigned max)
{
	struct sweep s = { rt, NULL, v, 0, max, 0, 0,
			   rt->opts.policy != UPG_POLICY_FIFO };
	size_t nr = rt->nregions, start = 0;

	if (nr == 0)
		return 0;
	while (start < nr && rt->regions[start]->start + rt->regions[start]->size
				     <= ev->hand)
		start++;
	/* One lap and a bit: the region the hand is in is visited twice,
	 * its tail first and its head at the end. */
	for (size_t k = 0; k <= nr && s.n < max; k++) {
		struct upg_region *r = rt->regions[(start + k) % nr];

		if (r->flags & UPG_ANON_NOEVICT)
			continue;
		s.r = r;
		s.from = k == 0 && ev->hand > r->start
				 ? (ev->hand - r->start) >> PAGE_SHIFT
				 : 0;
		s.next = r->npages;
		pt_walk(&r->pt, s.from, r->npages, sweep_leaf, &s);
		ev->hand = r->start + (s.next << PAGE_SHIFT);
	}
	return s.n;
}

/* ------------------------------------------------------------------ */
/* Evicting                                                            */
/* ------------------------------------------------------------------ */

static void *page_of(struct upg_region *r, uint64_t idx)
{
	return (void *)(r->start + (idx << PAGE_SHIFT));
}

/* The page whose entry was `old` left memory: publish its new entry and
 * give back its charge. */
static void retire(struct upg_runtime *rt, struct upg_region *r,
		   _Atomic pte_t *e, void *addr, pte_t old, pte_t val)
{
	pte_unlock(e, val);
	page_uncharge(r, old);
	ghost_note_evicted(rt, (uintptr_t)addr);
}

static void zap_flush(struct upg_runtime *rt, struct evictor *ev,
		      struct zap_batch *zb)
{
	ssize_t done = -1;

	if (zb->n == 0)
		return;
	if (ev->pidfd >= 0)
		done = syscall(SYS_process_madvise, ev->pidfd, zb->iov,
			       (size_t)zb->n, MADV_DONTNEED, 0);
	if (done != (ssize_t)(zb->n * PAGE_SIZE))
		for (unsigned i = 0; i < zb->n; i++)
			madvise(zb->iov[i].iov_base, PAGE_SIZE, MADV_DONTNEED);
	for (unsigned i = 0; i < zb->n; i++) {
		struct upg_region *r = zb->page[i].r;
		bool dirty = zb->page[i].dirty;

		retire(rt, r, zb->page[i].e, zb->iov[i].iov_base,
		       zb->page[i].old, zb->page[i].val);
		counter_add(dirty ? &r->ctr.evictions_dirty
				  : &r->ctr.evictions_clean, 1);
		counter_add(dirty ? &rt->ctr.evictions_dirty
				  : &rt->ctr.evictions_clean, 1);
	}
	zb->n = 0;
}

static void zap_add(struct zap_batch *zb, struct upg_region *r,
		    _Atomic pte_t *e, void *addr, pte_t old, pte_t val,
		    bool dirty)
{
	zb->iov[zb->n] = (struct iovec){ addr, PAGE_SIZE };
	zb->page[zb->n].r = r;
	zb->page[zb->n].e = e;
	zb->page[zb->n].old = old;
	zb->page[zb->n].val = val;
	zb->page[zb->n++].dirty = dirty;
}

/* The entry of a page whose contents are at `page`: zeros store nothing,
 * anything else goes to the store.  -ENOSPC if the store is full. */
static int stored_entry(struct upg_runtime *rt, struct upg_region *r,
			const void *page, pte_t *val)
{
	uint64_t handle = 0;
	int rc;

	if (store_page_is_zero(page)) {
		/* EMPTY would read a file region's page from its file. */
		*val = r->file ? pte_make(PTE_ZERO, 0, 0)
			       : snap_zero_pte(&r->snap);
		return 0;
	}
	rc = store_put(rt->store, page, &handle);
	atomic_store(&rt->evictor->store_full, rc < 0);
	if (rc < 0)
		return -ENOSPC;
	*val = pte_make(PTE_STORED, 0, handle);
	return 0;
}

/*
 * Read n pages at addr into ev->pages through /proc/self/mem: the kernel
 * copies them through its own mapping of memory, and fails (EIO) on a page
 * that is not there instead of faulting into our own handlers.  False if
 * it could not.  Evictor thread only; the caller keeps the pages from
 * changing (their entries are ours, BUSY, and they are write-protected or
 * out of the program's reach).
 */
static bool read_pages(struct evictor *ev, const void *addr, unsigned n)
{
	ssize_t len = (ssize_t)n * PAGE_SIZE;

	return ev->memfd >= 0 && pread(ev->memfd, ev->pages, (size_t)len,
				       (off_t)(uintptr_t)addr) == len;
}

/*
 * Where the evictor reads the n pages a MOVE just put in staging `slots`:
 * read_pages' copy.  A load from the staging address would make the
 * hypervisor of a shadow-paged guest (as on the machine upager was
 * measured on) build a mapping for that address first, for every page
 * moved there: store_page_is_zero's first load was then 8.75% of all CPU
 * time of sqlite3 at half its peak, where this read's copy is 1.3%.  The
 * staging address itself if the read fails.
 */
static const char *moved_contents(struct evictor *ev, char *slots,
				  unsigned n)
{
	return read_pages(ev, slots, n) ? ev->pages : slots;
}

/*
 * A clean file page read at random, about to be dropped: keep a compressed
 * copy of it in the store's RAM tier, which a later fault decompresses
 * instead of reading the file, so a budget holds more of a random working
 * set than the kernel's page cache would.  The store drops the copy when
 * its tier needs room (file_copy_drop).  The page is read through
 * /proc/self/mem (read_pages); it cannot change meanwhile: it is
 * write-protected and its entry is ours (BUSY) until the batch's zap.
 * Where pages do not compress, the tries are spaced out.
 */
static void keep_copy(struct upg_runtime *rt, struct evictor *ev,
		      struct upg_region *r, _Atomic pte_t *e, void *addr,
		      pte_t *val)
{
	uint64_t handle;
	int rc;

	if (ev->memfd < 0 || (r->copy_refusals >= COPY_REFUSALS &&
			      r->copy_skips++ % COPY_RETRY))
		return;
	if (!read_pages(ev, addr, 1))
		return;
	rc = store_put_copy(rt->store, ev->pages, (void *)e, &handle);
	r->copy_refusals = rc == -E2BIG ? r->copy_refusals + 1 : 0;
	if (rc)
		return;
	*val = pte_make(PTE_STORED, PTE_FILECOPY, handle);
	COUNT(r, file_pages_kept, 1);
}

/*
 * A clean page about to be dropped whose stored copy is on the swap file,
 * while the RAM tier has room (it grows for programs that read much from
 * disk, tier.h): store it again in the RAM tier, so its next swap-in reads
 * no disk.  Costs a compression here, in the evictor, instead of a disk
 * read in a fault.  The page is read through /proc/self/mem (as keep_copy
 * does); it cannot change meanwhile: it is write-protected and its entry
 * is ours (BUSY) until the batch's zap.
 */
static void promote(struct upg_runtime *rt, struct evictor *ev, void *addr,
		    uint64_t handle)
{
	if (ev->memfd < 0 || !store_promotable(rt->store, handle))
		return;
	if (read_pages(ev, addr, 1))
		store_promote(rt->store, handle, ev->pages);
}

/*
 * A page shared copy-on-write with a forked child cannot be moved out (MOVE
 * wants it exclusive; a DMA-pinned page is never shared, fork copies those).
 * Copy it instead: write-protect it, so that a write now faults and waits
 * on our BUSY bit, read it (read_pages, else through the staging slot),
 * store it and zap our mapping with the batch; the child keeps its own.
 * Entry locked by the caller.
 */
static int evict_shared(struct upg_runtime *rt, struct upg_region *r,
			_Atomic pte_t *e, pte_t old, void *addr, void *slot,
			struct zap_batch *zb)
{
	const char *src = rt->evictor->pages;
	pte_t val;
	int rc = uffd_writeprotect(rt->uffd, addr, PAGE_SIZE, true, false);

	if (rc == 0 && !read_pages(rt->evictor, addr, 1)) {
		/* The staging area is registered (MOVE's destination must
		 * be): the kernel fills the slot, a store into it would
		 * fault. */
		rc = uffd_copy(rt->uffd, slot, addr, PAGE_SIZE, false);
		src = slot;
	}
	if (rc == 0)
		rc = stored_entry(rt, r, src, &val);
	if (rc < 0) {
		/* Protected or not, the page is intact: a write-protect
		 * fault on it is served as any other. */
		pte_unlock(e, old);
		return rc == -ENOSPC ? rc : 0;
	}
	zap_add(zb, r, e, addr, old, val, true);
	return 1;
}

/*
 * The store refused a page moved into `slot`: it goes back to addr,
 * write-protected in one step, as a snapshot may still need it (a MOVE
 * back would come writable), and the entry becomes `back`.  If even that
 * fails, the contents are lost when the staging pages are dropped: the
 * entry says so (an access gets SIGBUS, never the zeros that a RESIDENT
 * entry with no page would give).  True if the page went back.
 */
static bool put_back(struct upg_runtime *rt, struct upg_region *r,
		     _Atomic pte_t *e, pte_t old, void *addr, void *slot,
		     pte_t back)
{
	int rc = uffd_copy(rt->uffd, addr, slot, PAGE_SIZE, r->wp);

	if (rc == 0 || rc == -EEXIST) {
		pte_unlock(e, back);
		return true;
	}
	log_error("page at %p lost: the store had no room for it and it "
		  "could not be put back (%s); an access gets SIGBUS", addr,
		  strerror(-rc));
	COUNT(r, poisoned, 1);
	retire(rt, r, e, addr, old, pte_make(PTE_POISONED, 0, 0));
	return false;
}

/*
 * Take back a reservation: move the page out like any other, so that a
 * write racing us either landed before the move (its page is stored) or
 * faults after it and waits for the entry; what is still the zero page
 * stores nothing and the entry reads zeros again.  Entry locked by the
 * caller.  Returns as evict_one does.
 */
static int reclaim_reserved(struct upg_runtime *rt, struct upg_region *r,
			    _Atomic pte_t *e, pte_t old, void *addr,
			    void *slot)
{
	/* File regions and clones: EMPTY would read the file or snapshot. */
	pte_t val = r->file || r->snap.origin ? pte_make(PTE_ZERO, 0, 0)
					      : PTE_EMPTY;
	int rc = uffd_move(rt->uffd, slot, addr, PAGE_SIZE, NULL);
	const char *src;

	if (rc < 0 && rc != -ENOENT) {
		pte_unlock(e, old);
		return 0;
	}
	/* ENOENT: the program dropped it itself; it reads as zeros. */
	src = rc == 0 ? moved_contents(rt->evictor, slot, 1) : NULL;
	if (src && !store_page_is_zero(src)) {
		rc = stored_entry(rt, r, src, &val);
		if (rc < 0) {
			if (put_back(rt, r, e, old, addr, slot,
				     pte_make(PTE_RESIDENT, PTE_DIRTY, 0)))
				reserve_written(r);
			return rc;
		}
		counter_add(&rt->ctr.evictions_dirty, 1);
		counter_add(&r->ctr.evictions_dirty, 1);
	} else {
		COUNT(r, reservations_reclaimed, 1);
	}
	retire(rt, r, e, addr, old, val);
	return 1;
}

/*
 * A page moved into `slot` (its contents at `src`, moved_contents): store
 * it and retire its entry; or, when the store has no room, nothing is
 * lost: the page goes back where it was (put_back) and its entry is
 * unlocked.  Returns 1, or -ENOSPC.
 */
static int store_moved(struct upg_runtime *rt, struct upg_region *r,
		       _Atomic pte_t *e, pte_t old, void *addr, void *slot,
		       const void *src)
{
	pte_t val;
	int rc = stored_entry(rt, r, src, &val);

	if (rc < 0) {
		put_back(rt, r, e, old, addr, slot, old);
		return rc;
	}
	counter_add(&rt->ctr.evictions_dirty, 1);
	counter_add(&r->ctr.evictions_dirty, 1);
	retire(rt, r, e, addr, old, val);
	return 1;
}

/*
 * Evict page idx of r through the staging page `slot`, which the caller
 * drops with the rest of the batch's (one TLB flush for them all: each
 * flush is an IPI to every CPU running this process, the dominant cost of
 * eviction in a VM).  Returns 1 if the page left memory, 0 if it stayed,
 * -ENOSPC if the store had no room for it.
 */
static int evict_one(struct upg_runtime *rt, struct upg_region *r,
		     uint64_t idx, void *slot, struct zap_batch *zb)
{
	_Atomic pte_t *e = pt_entry(&r->pt, idx, false);
	void *addr = page_of(r, idx);
	pte_t old, val;
	int rc;

	if (!e || !pte_trylock(e, &old))
		return 0;
	if (!evictable(old)) {
		pte_unlock(e, old);
		return 0;
	}
	if (pte_reserved(old))
		return reclaim_reserved(rt, r, e, old, addr, slot);
	if (r->file) {
		switch (file_evict(r, idx, old, slot, &val)) {
		case FILE_EVICT_CLEAN:
			if (old & PTE_RANDOM)
				keep_copy(rt, rt->evictor, r, e, addr, &val);
			zap_add(zb, r, e, addr, old, val, false);
			return 1;
		case FILE_EVICT_GONE:
			goto gone;
		case FILE_EVICT_STAYED:
			pte_unlock(e, val);
			return 0;
		default:	/* private: the store takes it, as below */
			break;
		}
	}
	if (old & PTE_CACHED) {
		swapcopy_dropped(&r->swapcopy);
		promote(rt, rt->evictor, addr, pte_payload(old));
		/* Clean: installed write-protected with its stored copy and
		 * not written since (a write would have cleared CACHED under
		 * BUSY first), so no write can land before the batch's zap. */
		zap_add(zb, r, e, addr, old,
			pte_make(PTE_STORED, 0, pte_payload(old)), false);
		return 1;
	}
	/* From here on any access to the page faults and waits on BUSY. */
	rc = uffd_move(rt->uffd, slot, addr, PAGE_SIZE, NULL);
	if (rc == -ENOENT) {
		/* No page there: the application dropped it itself
		 * (MADV_DONTNEED), so it reads as zeros now. */
		val = snap_zero_pte(&r->snap);
		goto gone;
	}
	if (rc == -EBUSY && r->wp &&
	    pagemap_shared(rt->pagemap_fd, (uintptr_t)addr) == 1)
		return evict_shared(rt, r, e, old, addr, slot, zb);
	if (rc < 0) {
		/* EBUSY: pinned (O_DIRECT, io_uring buffer): never evict. */
		pte_unlock(e, rc == -EBUSY ? old | PTE_PINNED : old);
		return 0;
	}
	return store_moved(rt, r, e, old, addr, slot,
			   moved_contents(rt->evictor, slot, 1));
gone:
	retire(rt, r, e, addr, old, val);
	return 1;
}

/*
 * Evict the n victims at pages idx.. of r (consecutive) with one MOVE: a
 * MOVE a page costs a TLB flush with an IPI to every CPU running the
 * program (47-50 us a page measured on this guest with one other thread
 * running), one MOVE of 64 pages 1.6 us a page.  Only plain anonymous
 * pages (resident, no stored copy) go this way; the run stops at the first
 * other, and whatever the MOVE did not take (a hole, a page pinned or
 * shared with a child) is left unlocked for evict_one.  Returns how many
 * victims it dealt with from the first (0: none, let evict_one try);
 * *gone counts those that left, *err is -ENOSPC if the store filled.
 */
static unsigned evict_run(struct upg_runtime *rt, struct upg_region *r,
			  uint64_t idx, unsigned n, char *slots,
			  unsigned *gone, int *err)
{
	_Atomic pte_t *e[BATCH];
	pte_t old[BATCH];
	size_t moved = 0;
	const char *src;
	unsigned k, m;

	for (k = 0; k < n; k++) {
		e[k] = pt_entry(&r->pt, idx + k, false);
		if (!e[k] || !pte_trylock(e[k], &old[k]))
			break;
		if (pte_state(old[k]) != PTE_RESIDENT ||
		    (old[k] & (PTE_CACHED | PTE_PINNED))) {
			pte_unlock(e[k], old[k]);
			break;
		}
	}
	if (k > 1)
		uffd_move(rt->uffd, slots, page_of(r, idx), k * PAGE_SIZE,
			  &moved);
	m = (unsigned)(moved / PAGE_SIZE);
	src = m ? moved_contents(rt->evictor, slots, m) : slots;
	for (unsigned i = 0; i < m; i++) {
		int rc = store_moved(rt, r, e[i], old[i], page_of(r, idx + i),
				     slots + i * PAGE_SIZE,
				     src + i * PAGE_SIZE);

		if (rc < 0)
			*err = rc;
		*gone += rc == 1;
	}
	for (unsigned i = m; i < k; i++)
		pte_unlock(e[i], old[i]);
	return m;
}

static void wake_waiters(struct evictor *ev)
{
	pthread_mutex_lock(&ev->lock);
	pthread_cond_broadcast(&ev->progress);
	pthread_mutex_unlock(&ev->lock);
}

/* One round: evict until usage is at the low watermark or nothing more
 * can go.  Caller holds regions_lock for reading. */
static void evict_round(struct upg_runtime *rt, struct evictor *ev)
{
	struct zap_batch *zb = &ev->zap;
	struct victim v[BATCH];
	unsigned idle_laps = 0;

	while (budget_usage(rt) > ev->low && !atomic_load(&ev->stop)) {
		unsigned n = select_victims(rt, ev, v, BATCH), gone = 0;
		int rc = 0;

		for (unsigned i = 0, run; i < n && rc != -ENOSPC; i += run) {
			char *slot = (char *)ev->staging + i * PAGE_SIZE;

			/* Victims at consecutive pages leave with one MOVE
			 * (the sweep goes in address order). */
			for (run = 1; i + run < n && v[i + run].r == v[i].r &&
				      v[i + run].idx == v[i].idx + run;
			     run++)
				;
			if (run > 1 && !v[i].r->file)
				run = evict_run(rt, v[i].r, v[i].idx, run, slot,
						&gone, &rc);
			else
				run = 0;
			if (run == 0) {
				rc = evict_one(rt, v[i].r, v[i].idx, slot, zb);
				gone += rc == 1;
				run = 1;
			}
		}
		zap_flush(rt, ev, zb);
		madvise(ev->staging, BATCH * PAGE_SIZE, MADV_DONTNEED);
		wake_waiters(ev);
		if (rc == -ENOSPC)
			return;
		/* CLOCK may need a lap to clear REF bits before it finds a
		 * victim; two laps without one mean nothing can go. */
		if (gone == 0 && ++idle_laps > 2) {
			atomic_store(&ev->stuck, true);
			wake_waiters(ev);
			return;
		}
		atomic_store(&ev->stuck, false);
	}
}

/*
 * Reservations (zero-mapped pages) written since are copied by the kernel
 * without a fault: learn them from the hardware page table at every
 * wake-up (each 20 ms at least), so the policy sees them as resident and
 * written.  They weigh on the budget already, as reservations.  Only
 * regions holding reservations pay the scan.  Caller holds regions_lock
 * for reading.
 */
static void sync_written(struct upg_runtime *rt)
{
	for (size_t i = 0; i < rt->nregions; i++) {
		struct upg_region *r = rt->regions[i];

		if (atomic_load_explicit(&r->ctr.pages_reserved,
					 memory_order_relaxed) > 0)
			region_sync_written(r);
	}
}

static void *evictor_main(void *arg)
{
	struct upg_runtime *rt = arg;
	struct evictor *ev = rt->evictor;

	while (!atomic_load(&ev->stop)) {
		struct timespec until = deadline_ms(20);
		int err = inject_check(INJECT_EVICTOR_DIE, 0);

		if (err) {
			/* Never silently: faults now fail closed. */
			runtime_fail(rt, "the evictor upager-evict stopped: %s",
				     strerror(-err));
			return NULL;
		}

		pthread_mutex_lock(&ev->lock);
		if (!atomic_load(&ev->kicked) && !atomic_load(&ev->stop))
			pthread_cond_timedwait(&ev->wake, &ev->lock, &until);
		atomic_store(&ev->kicked, false);
		pthread_mutex_unlock(&ev->lock);
		pthread_rwlock_rdlock(&rt->regions_lock);
		sync_written(rt);
		if (rt->store)
			tier_adapt(&ev->tier, rt->store);
		if (budget_usage(rt) > ev->high || atomic_load(&ev->kicked))
			evict_round(rt, ev);
		pthread_rwlock_unlock(&rt->regions_lock);
	}
	return NULL;
}

int evictor_start(struct upg_runtime *rt)
{
	struct evictor *ev;
	uint64_t limit = rt->opts.mem_limit;
	bool wp;
	int err;

	if (limit == 0)
		return 0;
	ev = mem_alloc(sizeof(*ev));
	if (!ev)
		return -ENOMEM;
	pthread_mutex_init(&ev->lock, NULL);
	pthread_mutex_init(&ev->charge_lock, NULL);
	pthread_cond_init(&ev->wake, NULL);
	pthread_cond_init(&ev->progress, NULL);
	ev->pidfd = (int)syscall(SYS_pidfd_open, getpid(), 0);
	ev->memfd = open("/proc/self/mem", O_RDONLY | O_CLOEXEC);
	if (ev->memfd < 0)
		log_info("no /proc/self/mem (%s): clean file pages are not "
			 "kept compressed", strerror(errno));
	/* Wake before the limit and evict a little below it, so the
	 * evictor works ahead of the faults and they seldom wait for it.
	 * Not further: what lies between the low watermark and the limit is
	 * budget the program never gets.  7/8 and 3/4 before: sqlite3 with
	 * its plain peak as the budget moved 98-109k pages out in 2.98-3.78
	 * s, now 58-72k in 2.29-2.50 s; swap-random went from 0.39x the
	 * kernel's throughput to 0.52-0.54x (README, "Budget and swap
	 * store"). */
	ev->limit = limit;
	ev->high = limit - limit / 16;
	ev->low = limit - limit / 8;
	tier_init(&ev->tier, &rt->opts);
	/* The staging page must look like region memory to UFFDIO_MOVE:
	 * same protections, registered with the same userfaultfd. */
	ev->staging = mmap(NULL, BATCH * PAGE_SIZE, PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (ev->staging == MAP_FAILED) {
		err = -errno;
		goto fail;
	}
	madvise(ev->staging, BATCH * PAGE_SIZE, MADV_NOHUGEPAGE);
	madvise(ev->staging, BATCH * PAGE_SIZE, MADV_DONTFORK);
	err = uffd_register(rt->uffd, ev->staging, BATCH * PAGE_SIZE, &wp);
	if (err)
		goto fail_map;
	rt->evictor = ev;
	err = thread_start(&ev->thread, evictor_main, rt, "upager-evict");
	if (err) {
		rt->evictor = NULL;
		goto fail_map;
	}
	return 0;

fail_map:
	munmap(ev->staging, BATCH * PAGE_SIZE);
fail:
	if (ev->pidfd >= 0)
		close(ev->pidfd);
	if (ev->memfd >= 0)
		close(ev->memfd);
	mem_free(ev, sizeof(*ev));
	log_error("cannot start the evictor: %s", strerror(-err));
	return err;
}

void evictor_stop(struct upg_runtime *rt)
{
	struct evictor *ev = rt->evictor;

	if (!ev)
		return;
	atomic_store(&ev->stop, true);
	kick(ev);
	pthread_mutex_lock(&ev->lock);
	pthread_cond_signal(&ev->wake);
	pthread_mutex_unlock(&ev->lock);
	pthread_join(ev->thread, NULL);
	munmap(ev->staging, BATCH * PAGE_SIZE);
	pthread_cond_destroy(&ev->wake);
	pthread_cond_destroy(&ev->progress);
	if (ev->pidfd >= 0)
		close(ev->pidfd);
	if (ev->memfd >= 0)
		close(ev->memfd);
	pthread_mutex_destroy(&ev->lock);
	pthread_mutex_destroy(&ev->charge_lock);
	rt->evictor = NULL;
	mem_free(ev, sizeof(*ev));
}
