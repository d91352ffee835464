/* SPDX-License-Identifier: MIT */
/*
 * Copy-on-write snapshots and clones.
 *
 * A snapshot has a page table of its own over the region's pages.  An
 * EMPTY entry means "not diverged": the snapshot's page is the region's,
 * which has not changed since the snapshot was taken.  A diverged entry is
 * the snapshot's own: ZERO (zeros, nothing stored), STORED(h) (one
 * reference to store object h) or POISONED (no copy could be made: reads
 * fail with -EIO, never give wrong data).  A snapshot entry changes only
 * while the region's entry of that page is locked (BUSY).
 *
 * Invariant: while a linked snapshot is undiverged at page i, the region's
 * page i is absent (EMPTY, STORED: any access is a missing fault) or
 * present and uffd-write-protected, so nothing changes it without a
 * handler (or restore) calling snap_preserve() first:
 *  - the first write to a protected page: wp_fault() preserves, then
 *    un-protects;
 *  - a fill of an EMPTY page: the snapshots record zeros first;
 *  - swap-in installs pages write-protected (CACHED), as it always did;
 *  - eviction needs nothing: MOVE takes the page away (STORED(h) still
 *    holds the contents) and the later write shares h by reference; a put
 *    that fails copies the page back write-protected (evict.c);
 *  - restore preserves for the other snapshots before it replaces a page.
 *
 * The instant of a snapshot.  upg_snapshot_take() closes the region's gate
 * (handlers finish the faults they are resolving on the region; faults that
 * arrive later stay asleep), links the snapshot, walks the page table once
 * and write-protects the present pages under their BUSY bits, then opens
 * the gate and wakes the sleepers.  Application threads are not stopped:
 * they keep writing present pages until their page is protected, after
 * which their writes fault and wait at the gate.  So the snapshot is the
 * region at one instant T, the end of the protection pass: a page
 * protected at t < T was not written between t and T, and a page absent at
 * T could only change through a fault, which waited.  (fork() has the same
 * instant: the parent's faults wait on mmap_lock.)  Cost: O(populated
 * pages); never-touched pages need no protection (their first access is a
 * missing fault, which records zeros), which gives what WP_UNPOPULATED
 * markers would without a marker per page of the region.
 *
 * Locking: snap_lock (a mutex) serialises the API calls that change
 * snapshots (take, drop, restore, clone, teardown); order snap_lock ->
 * regions_lock -> BUSY.  Handlers never take snap_lock.  A thread that
 * waits for a BUSY bit here holds no BUSY bit itself, and BUSY is only held
 * by upager threads for a bounded time, never across an application fault.
 */
#include <errno.h>
#include <sched.h>
#include <string.h>
#include <sys/mman.h>

#include "log.h"
#include "mem.h"
#include "reserve.h"
#include "runtime.h"
#include "snapshot.h"
#include "store.h"
#include "uffd.h"
#include "util.h"

#define SNAP_ALIVE 0x50414e53u	/* "SNAP" */
#define SNAP_DEAD 0x44414544u	/* "DEAD" */
#define SNAP_ALLOC 256		/* mem_alloc class that holds a snapshot */
#define RECYCLE_MIN 64		/* dead snapshots kept before one is reused */
/* RAM tier of the store a runtime without a budget gets for snapshots. */
#define SNAP_STORE_RAM (64 * (uint64_t)1 << 20)

struct upg_snapshot {
	_Atomic uint32_t magic;
	uint32_t refs;			/* the handle + one per clone (snap_lock) */
	bool broken;			/* an entry could not be recorded */
	struct upg_runtime *rt;
	/* NULL once the region is destroyed; changed with regions_lock held
	 * for writing, read with it held for reading. */
	struct upg_region *region;
	size_t size;
	struct pagetable pt;
	struct upg_snapshot *_Atomic next;	/* in region->snap.list */
	struct upg_snapshot *all_next;	/* in all_snaps */
	struct upg_snapshot *recycle_next;
};
_Static_assert(sizeof(struct upg_snapshot) <= SNAP_ALLOC, "snapshot too big");

static pthread_mutex_t snap_lock = PTHREAD_MUTEX_INITIALIZER;
/* Under snap_lock: every snapshot not yet released, and the dead ones
 * waiting to be reused (oldest first, so a stale handle stays dead). */
static struct upg_snapshot *all_snaps;
static struct upg_snapshot *recycle_head, *recycle_tail;
static size_t recycle_count;

static void *page_of(const struct upg_region *r, uint64_t idx)
{
	return (void *)(r->start + (idx << PAGE_SHIFT));
}

static bool region_ok(const struct upg_region *r)
{
	return r && atomic_load(&((struct upg_region *)r)->magic) ==
			    REGION_ALIVE;
}

static bool snap_ok(const struct upg_snapshot *s)
{
	return s && atomic_load(&((struct upg_snapshot *)s)->magic) ==
			    SNAP_ALIVE;
}

static void add_pages(struct upg_runtime *rt, int64_t n)
{
	atomic_fetch_add_explicit(&rt->ctr.snapshot_pages, n,
				  memory_order_relaxed);
}

/* ------------------------------------------------------------------ */
/* The gate                                                            */
/* ------------------------------------------------------------------ */

/* seq_cst on both sides: a handler increments inflight then reads closed,
 * a closer sets closed then reads inflight, so one of them sees the other. */
bool snap_gate_enter(struct upg_region *r)
{
	atomic_fetch_add(&r->snap.inflight, 1);
	if (!atomic_load(&r->snap.closed))
		return true;
	atomic_fetch_sub(&r->snap.inflight, 1);
	return false;
}

void snap_gate_exit(struct upg_region *r)
{
	atomic_fetch_sub(&r->snap.inflight, 1);
}

/* Caller holds snap_lock.  Handlers inside finish (they never wait for us). */
static void gate_close(struct upg_region *r)
{
	atomic_store(&r->snap.closed, true);
	while (atomic_load(&r->snap.inflight))
		sched_yield();
}

/* The faults left asleep while the gate was closed fault again now.  A
 * handler that read `closed` before it was cleared read the message after
 * its thread went to sleep, so this wake reaches that thread. */
static void gate_open(struct upg_region *r)
{
	atomic_store(&r->snap.closed, false);
	uffd_wake(r->rt->uffd, (void *)r->start, r->size);
}

/* Lock an entry whose holder is an upager thread that will let go soon. */
static pte_t lock_wait(_Atomic pte_t *e)
{
	pte_t old;

	while (!pte_trylock(e, &old))
		sched_yield();
	return old;
}

/* ------------------------------------------------------------------ */
/* Preserving                                                          */
/* ------------------------------------------------------------------ */

/* One change of region page idx: what the snapshots keep of it is made
 * once (val), then referenced by each snapshot that needs it. */
struct keep {
	struct upg_region *r;
	uint64_t idx;
	pte_t old;	/* the region's entry, locked */
	pte_t val;	/* 0 until made */
};

static pte_t share(struct upg_region *r, uint64_t handle)
{
	store_ref(r->rt->store, handle);
	COUNT(r, snapshot_shared, 1);
	return pte_make(PTE_STORED, 0, handle);
}

/* The first snapshot's value, with the reference it owns. */
static pte_t keep_first(struct keep *k)
{
	struct upg_region *r = k->r;
	const void *page = page_of(r, k->idx);
	uint64_t handle;

	switch (pte_state(k->old)) {
	case PTE_EMPTY:
		return pte_make(PTE_ZERO, 0, 0);
	case PTE_STORED:
		return share(r, pte_payload(k->old));
	case PTE_RESIDENT:
		if (k->old & PTE_CACHED)
			return share(r, pte_payload(k->old));
		/* fall through */
	case PTE_ZERO:
		/* Present and write-protected, and we hold its entry: it
		 * neither changes nor goes while we read it. */
		if (store_page_is_zero(page))
			return pte_make(PTE_ZERO, 0, 0);
		if (store_put(r->rt->store, page, &handle) == 0) {
			COUNT(r, snapshot_preserved, 1);
			return pte_make(PTE_STORED, 0, handle);
		}
		log_error("snapshot: no room in the store for the page at %p: "
			  "the snapshot's copy is lost (reads of it fail with "
			  "EIO)", page);
		return pte_make(PTE_POISONED, 0, 0);
	default:
		return pte_make(PTE_POISONED, 0, 0);
	}
}

static void keep_in(struct keep *k, struct upg_snapshot *s)
{
	_Atomic pte_t *e = pt_entry(&s->pt, k->idx, true);

	if (!e) {
		log_error("snapshot: no memory for its page table: the "
			  "snapshot is lost");
		s->broken = true;
		return;
	}
	if (!k->val)
		k->val = keep_first(k);
	else if (pte_state(k->val) == PTE_STORED)
		share(k->r, pte_payload(k->val));
	atomic_store_explicit(e, k->val, memory_order_release);
	add_pages(s->rt, 1);
}

static bool needs(struct upg_snapshot *s, uint64_t idx)
{
	return pt_get(&s->pt, idx) == PTE_EMPTY;
}

/*
 * What a snapshot sees at a page, from its own entry v and the region's
 * (locked) entry old: EMPTY = zeros, ZERO or RESIDENT = the region's page
 * (present and protected), STORED = that handle, POISONED = lost.
 */
static pte_t view_of(pte_t v, pte_t old)
{
	if (v)
		return pte_state(v) == PTE_ZERO ? PTE_EMPTY : v;
	if (old & PTE_CACHED)
		return pte_make(PTE_STORED, 0, pte_payload(old));
	return old & ~PTE_BUSY;
}

void snap_preserve(struct upg_region *r, uint64_t idx, pte_t old)
{
	struct upg_snapshot *s = atomic_load_explicit(&r->snap.list,
						      memory_order_acquire);
	struct keep k = { r, idx, old & ~PTE_BUSY, 0 };

	for (; s; s = s->next)
		if (needs(s, idx))
			keep_in(&k, s);
}

/* ------------------------------------------------------------------ */
/* Snapshot objects                                                    */
/* ------------------------------------------------------------------ */

static struct upg_snapshot *snap_alloc(void)
{
	struct upg_snapshot *s = NULL;

	if (recycle_count > RECYCLE_MIN) {
		s = recycle_head;
		recycle_head = s->recycle_next;
		if (!recycle_head)
			recycle_tail = NULL;
		recycle_count--;
		memset((char *)s + sizeof(s->magic), 0,
		       sizeof(*s) - sizeof(s->magic));
		return s;
	}
	return mem_alloc(SNAP_ALLOC);
}

static int release_leaf(uint64_t first, _Atomic pte_t *leaf, void *arg)
{
	struct upg_snapshot *s = arg;
	int64_t n = 0;

	(void)first;
	for (unsigned i = 0; i < PT_FANOUT; i++) {
		pte_t v = atomic_load(&leaf[i]);

		if (pte_state(v) == PTE_STORED)
			store_free(s->rt->store, pte_payload(v));
		n += v != PTE_EMPTY;
	}
	add_pages(s->rt, -n);
	return 0;
}

/* Unlinked from everything: give back its references and its memory. */
static void snap_release(struct upg_snapshot *s)
{
	struct upg_snapshot **p = &all_snaps;

	while (*p != s)
		p = &(*p)->all_next;
	*p = s->all_next;
	pt_walk(&s->pt, 0, s->pt.npages, release_leaf, s);
	pt_fini(&s->pt);
	atomic_fetch_sub(&s->rt->ctr.snapshots, 1);
	atomic_store(&s->magic, SNAP_DEAD);
	s->recycle_next = NULL;
	if (recycle_tail)
		recycle_tail->recycle_next = s;
	else
		recycle_head = s;
	recycle_tail = s;
	recycle_count++;
}

static void list_unlink(struct upg_region *r, struct upg_snapshot *s)
{
	struct upg_snapshot *_Atomic *p = &r->snap.list;

	while (atomic_load(p) != s)
		p = &atomic_load(p)->next;
	atomic_store(p, s->next);
}

/* Drop one reference (snap_lock held); the last one unlinks and releases. */
static void snap_put(struct upg_snapshot *s)
{
	struct upg_region *r = s->region;

	if (--s->refs)
		return;
	if (r) {
		gate_close(r);
		list_unlink(r, s);
		gate_open(r);
	}
	snap_release(s);
}

/* Snapshots keep their pages in the store; a runtime without a budget has
 * none until its first snapshot.  Caller holds snap_lock. */
static int need_store(struct upg_runtime *rt)
{
	struct store_config cfg = {
		.codec = rt->opts.codec,
		.ram_limit = SNAP_STORE_RAM,
		.swap_dir = rt->swap_dir,
		.swap_size = rt->opts.swap_size,
	};
	struct store *st;
	int err;

	if (rt->store)
		return 0;
	err = store_create(&cfg, &st);
	if (err) {
		log_error("snapshot: cannot create a store in %s: %s",
			  rt->swap_dir, strerror(-err));
		return err;
	}
	/* Handlers read rt->store only for entries that name a handle, made
	 * after this store (release) and read by them with acquire. */
	__atomic_store_n(&rt->store, st, __ATOMIC_RELEASE);
	return 0;
}

/* ------------------------------------------------------------------ */
/* Take                                                                */
/* ------------------------------------------------------------------ */

struct take {
	struct upg_region *r;
	struct upg_snapshot *s;
	int err;
};

static bool needs_protection(pte_t v)
{
	return pte_state(v) == PTE_ZERO ||
	       (pte_state(v) == PTE_RESIDENT && !(v & PTE_CACHED));
}

/* Protect [first, first + n), whose entries we hold, then release them. */
static int protect_run(struct upg_region *r, _Atomic pte_t *e, uint64_t first,
		       uint64_t n)
{
	int rc = uffd_writeprotect(r->rt->uffd, page_of(r, first),
				   n << PAGE_SHIFT, true, false);

	for (uint64_t i = 0; i < n; i++)
		pte_unlock(&e[i], atomic_load(&e[i]));
	return rc;
}

/*
 * One leaf: present pages are protected in runs (one ioctl and TLB flush
 * per run), each under its BUSY bit so the evictor cannot take it away
 * between our look and the ioctl (a protect of an absent page would plant
 * a marker).  Stored pages, and CACHED ones (protected already, their
 * contents are their handle), are shared at once.
 */
static int take_leaf(uint64_t first, _Atomic pte_t *leaf, void *arg)
{
	struct take *t = arg;
	uint64_t run = 0, n = MIN(PT_FANOUT, t->r->npages - first);
	int rc;

	for (uint64_t i = 0; i <= n; i++) {
		struct keep k = { t->r, first + i, 0, 0 };

		if (i < n && atomic_load(&leaf[i]) != PTE_EMPTY) {
			k.old = lock_wait(&leaf[i]);
			if (needs_protection(k.old)) {
				run++;
				continue;
			}
			if (pte_state(k.old) == PTE_STORED ||
			    (k.old & PTE_CACHED))
				keep_in(&k, t->s);
			pte_unlock(&leaf[i], k.old);
		}
		if (!run)
			continue;
		rc = protect_run(t->r, &leaf[i - run], first + i - run, run);
		run = 0;
		if (rc) {
			t->err = rc;
			return 1;
		}
	}
	return 0;
}

int upg_snapshot_take(struct upg_region *r, struct upg_snapshot **out)
{
	struct upg_snapshot *s = NULL;
	struct take t;
	int err;

	if (!region_ok(r) || !out)
		return -EINVAL;
	if (!r->wp || r->snap.origin)
		return -EOPNOTSUPP;
	pthread_mutex_lock(&snap_lock);
	err = region_ok(r) ? need_store(r->rt) : -EINVAL;
	if (!err)
		s = snap_alloc();
	if (!err && !s)
		err = -ENOMEM;
	if (err)
		goto out;
	*s = (struct upg_snapshot){ .refs = 1, .rt = r->rt, .region = r,
				    .size = r->size };
	(void)pt_init(&s->pt, r->npages);	/* npages is valid: r has it */
	s->all_next = all_snaps;
	all_snaps = s;
	atomic_fetch_add(&r->rt->ctr.snapshots, 1);
	atomic_store(&s->magic, SNAP_ALIVE);

	gate_close(r);
	s->next = atomic_load(&r->snap.list);
	atomic_store(&r->snap.list, s);
	t = (struct take){ r, s, 0 };
	pt_walk(&r->pt, 0, r->npages, take_leaf, &t);
	if (t.err || s->broken) {
		/* Pages protected so far only cost one spurious fault. */
		list_unlink(r, s);
		err = t.err ? t.err : -ENOMEM;
	}
	gate_open(r);
	if (err)
		snap_release(s);
	else
		*out = s;
out:
	pthread_mutex_unlock(&snap_lock);
	return err;
}

/* ------------------------------------------------------------------ */
/* Read                                                                */
/* ------------------------------------------------------------------ */

/*
 * Page idx of the snapshot into `page` (upager's own memory).  Under
 * regions_lock (read) so the region cannot be unmapped under us, and the
 * region's entry locked, so the snapshot entry and the page are stable.
 * A stored page is read after both are let go, through a reference.
 */
static int read_page(struct upg_snapshot *s, uint64_t idx, void *page)
{
	struct upg_runtime *rt = s->rt;
	_Atomic pte_t *re = NULL;
	pte_t old = PTE_EMPTY, v;
	uint64_t handle = 0;
	int err = 0;

	pthread_rwlock_rdlock(&rt->regions_lock);
	if (s->region)
		re = pt_entry(&s->region->pt, idx, false);
	if (re)
		old = lock_wait(re);
	v = view_of(pt_get(&s->pt, idx), old);
	switch (pte_state(v)) {
	case PTE_EMPTY:
		memset(page, 0, PAGE_SIZE);
		break;
	case PTE_ZERO:
	case PTE_RESIDENT:
		memcpy(page, page_of(s->region, idx), PAGE_SIZE);
		break;
	case PTE_STORED:
		handle = pte_payload(v);
		store_ref(rt->store, handle);
		break;
	default:
		err = -EIO;
		break;
	}
	if (re)
		pte_unlock(re, old);
	pthread_rwlock_unlock(&rt->regions_lock);
	if (handle) {
		err = store_get(rt->store, handle, page, NULL);
		store_free(rt->store, handle);
		err = err < 0 ? -EIO : 0;
	}
	return err;
}

int upg_snapshot_read(struct upg_snapshot *s, size_t offset, void *buf,
		      size_t len)
{
	char *bounce, *dst = buf;
	int err = 0;

	if (!snap_ok(s) || (!buf && len) || offset > s->size ||
	    len > s->size - offset)
		return -EINVAL;
	if (s->broken)
		return -EIO;
	bounce = mem_alloc(PAGE_SIZE);
	if (!bounce)
		return -ENOMEM;
	while (len && !err) {
		size_t in = offset & (PAGE_SIZE - 1);
		size_t n = MIN(len, PAGE_SIZE - in);

		err = read_page(s, offset >> PAGE_SHIFT, bounce);
		/* Only now, holding nothing, touch the caller's buffer: it
		 * may be managed memory whose fault needs a handler. */
		if (!err)
			memcpy(dst, bounce + in, n);
		dst += n, offset += n, len -= n;
	}
	mem_free(bounce, PAGE_SIZE);
	return err;
}

/* ------------------------------------------------------------------ */
/* Restore                                                             */
/* ------------------------------------------------------------------ */

/* The region's page goes: its memory and its stored copy.  Entry locked. */
static void drop_region_page(struct upg_region *r, uint64_t idx, pte_t old)
{
	enum pte_state st = pte_state(old);

	if (st == PTE_STORED || (old & PTE_CACHED))
		store_free(r->rt->store, pte_payload(old));
	page_uncharge(r, old);
	if (st == PTE_RESIDENT || st == PTE_ZERO || st == PTE_POISONED)
		madvise(page_of(r, idx), PAGE_SIZE, MADV_DONTNEED);
}

struct restore {
	struct upg_snapshot *s;
	struct upg_region *r;
	int err;
};

static int restore_leaf(uint64_t first, _Atomic pte_t *leaf, void *arg)
{
	struct restore *rs = arg;
	struct upg_region *r = rs->r;

	for (unsigned i = 0; i < PT_FANOUT; i++) {
		uint64_t idx = first + i;
		_Atomic pte_t *re;
		pte_t old, v = atomic_load(&leaf[i]), val;

		if (v == PTE_EMPTY)
			continue;	/* the region still has it */
		re = pt_entry(&r->pt, idx, true);
		if (!re) {
			rs->err = -ENOMEM;
			return 1;
		}
		old = lock_wait(re);
		/* The other snapshots keep what the region has now. */
		snap_preserve(r, idx, old);
		drop_region_page(r, idx, old);
		if (pte_state(v) == PTE_STORED) {
			store_ref(r->rt->store, pte_payload(v));
			val = pte_make(PTE_STORED, 0, pte_payload(v));
		} else if (pte_state(v) == PTE_ZERO) {
			val = PTE_EMPTY;
		} else {
			val = pte_make(PTE_POISONED, 0, 0);
			rs->err = -EIO;
		}
		pte_unlock(re, val);
	}
	return 0;
}

int upg_snapshot_restore(struct upg_snapshot *s)
{
	struct restore rs = { s, NULL, 0 };

	if (!snap_ok(s))
		return -EINVAL;
	pthread_mutex_lock(&snap_lock);
	rs.r = s->region;
	if (!snap_ok(s) || !rs.r) {
		rs.err = snap_ok(s) ? -ENODEV : -EINVAL;
		goto out;
	}
	if (s->broken) {
		rs.err = -EIO;
		goto out;
	}
	gate_close(rs.r);
	pt_walk(&s->pt, 0, s->pt.npages, restore_leaf, &rs);
	gate_open(rs.r);
out:
	pthread_mutex_unlock(&snap_lock);
	return rs.err;
}

/* ------------------------------------------------------------------ */
/* Drop, clone                                                         */
/* ------------------------------------------------------------------ */

int upg_snapshot_drop(struct upg_snapshot *s)
{
	uint32_t alive = SNAP_ALIVE;

	/* Two racing drops: one wins the CAS, the other gets -EINVAL. */
	if (!s || !atomic_compare_exchange_strong(&s->magic, &alive,
						  SNAP_DEAD))
		return -EINVAL;
	pthread_mutex_lock(&snap_lock);
	snap_put(s);
	pthread_mutex_unlock(&snap_lock);
	return 0;
}

int upg_region_clone(struct upg_snapshot *s, struct upg_region **out)
{
	struct upg_region *c;
	int err;

	if (!snap_ok(s) || !out)
		return -EINVAL;
	pthread_mutex_lock(&snap_lock);
	err = snap_ok(s) ? upg_anon_create(s->rt, s->size, 0, &c) : -EINVAL;
	if (!err) {
		/* Nobody knows c's address yet; the lock publishes origin
		 * to the handlers that will serve its faults. */
		pthread_rwlock_wrlock(&s->rt->regions_lock);
		c->snap.origin = s;
		pthread_rwlock_unlock(&s->rt->regions_lock);
		s->refs++;
		*out = c;
	}
	pthread_mutex_unlock(&snap_lock);
	return err;
}

/*
 * A handler, holding the clone's entry idx and regions_lock (read): where
 * the snapshot's page idx is.  Through the region, under its entry lock
 * (only tried: a handler never waits for one).
 */
enum origin_kind snap_origin_page(struct upg_region *c, uint64_t idx,
				  void *bounce, uint64_t *handle)
{
	struct upg_snapshot *s = c->snap.origin;
	struct upg_region *r = s->region;
	_Atomic pte_t *re = r ? pt_entry(&r->pt, idx, false) : NULL;
	enum origin_kind kind;
	pte_t old = PTE_EMPTY, v;

	if (re && !pte_trylock(re, &old))
		return ORIGIN_BUSY;
	v = view_of(pt_get(&s->pt, idx), old);
	switch (pte_state(v)) {
	case PTE_EMPTY:
		kind = ORIGIN_ZERO;
		break;
	case PTE_ZERO:
	case PTE_RESIDENT:
		memcpy(bounce, page_of(r, idx), PAGE_SIZE);
		kind = ORIGIN_PAGE;
		break;
	case PTE_STORED:
		*handle = pte_payload(v);
		store_ref(c->rt->store, *handle);
		COUNT(c, snapshot_shared, 1);
		kind = ORIGIN_STORED;
		break;
	default:
		kind = ORIGIN_LOST;
		break;
	}
	if (re)
		pte_unlock(re, old);
	return kind;
}

/* ------------------------------------------------------------------ */
/* Teardown                                                            */
/* ------------------------------------------------------------------ */

static int materialize_leaf(uint64_t first, _Atomic pte_t *leaf, void *arg)
{
	struct upg_region *r = arg;

	for (unsigned i = 0; i < PT_FANOUT && first + i < r->npages; i++) {
		pte_t old;

		if (atomic_load(&leaf[i]) == PTE_EMPTY)
			continue;	/* zeros: what undiverged means now */
		old = lock_wait(&leaf[i]);
		snap_preserve(r, first + i, old);
		pte_unlock(&leaf[i], old);
	}
	return 0;
}

void snap_region_gone(struct upg_region *r)
{
	struct upg_runtime *rt = r->rt;
	struct upg_snapshot *s;

	pthread_mutex_lock(&snap_lock);
	if (r->snap.origin) {
		snap_put(r->snap.origin);
		r->snap.origin = NULL;
	}
	if (atomic_load(&r->snap.list)) {
		/* Unlinked: no handler reaches r; its memory is still there.
		 * The snapshots copy what they still read through it. */
		pt_walk(&r->pt, 0, r->npages, materialize_leaf, r);
		pthread_rwlock_wrlock(&rt->regions_lock);
		for (s = atomic_load(&r->snap.list); s; s = s->next)
			s->region = NULL;
		atomic_store(&r->snap.list, NULL);
		pthread_rwlock_unlock(&rt->regions_lock);
	}
	pthread_mutex_unlock(&snap_lock);
}

void snap_teardown_all(struct upg_runtime *rt)
{
	struct upg_snapshot **p;

	pthread_mutex_lock(&snap_lock);
	pthread_rwlock_wrlock(&rt->regions_lock);
	for (size_t i = 0; i < rt->nregions; i++) {
		rt->regions[i]->snap.origin = NULL;
		atomic_store(&rt->regions[i]->snap.list, NULL);
	}
	pthread_rwlock_unlock(&rt->regions_lock);
	for (p = &all_snaps; *p;) {
		if ((*p)->rt == rt)
			snap_release(*p);	/* unlinks *p */
		else
			p = &(*p)->all_next;
	}
	pthread_mutex_unlock(&snap_lock);
}
