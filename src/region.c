/* SPDX-License-Identifier: MIT */
/*
 * Regions: creation, lookup by address, destruction.
 *
 * Region structs live in upager's own memory and are never returned to it:
 * a destroyed one is marked DEAD and queued for reuse oldest-first, so a
 * stale handle (destroy twice, use after destroy) reads a DEAD marker and
 * gets -EINVAL instead of touching freed memory.
 */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#include "file.h"
#include "log.h"
#include "mem.h"
#include "pagemap.h"
#include "reserve.h"
#include "runtime.h"
#include "store.h"
#include "uffd.h"
#include "util.h"

#define REGION_ALLOC 1024	/* mem_alloc class that holds a region */
_Static_assert(sizeof(struct upg_region) <= REGION_ALLOC, "region too big");

static pthread_mutex_t recycle_lock = PTHREAD_MUTEX_INITIALIZER;
static struct upg_region *recycle_head, *recycle_tail;
static size_t recycle_count;
/* Keep this many dead regions before reusing one, so a stale handle stays
 * recognisably dead for a long while. */
#define RECYCLE_MIN 64

static struct upg_region *region_alloc(void)
{
	struct upg_region *r = NULL;

	pthread_mutex_lock(&recycle_lock);
	if (recycle_count > RECYCLE_MIN) {
		r = recycle_head;
		recycle_head = r->recycle_next;
		if (!recycle_head)
			recycle_tail = NULL;
		recycle_count--;
	}
	pthread_mutex_unlock(&recycle_lock);
	if (r) {
		memset((char *)r + sizeof(r->magic), 0,
		       sizeof(*r) - sizeof(r->magic));
		return r;
	}
	return mem_alloc(REGION_ALLOC);
}

static void region_recycle(struct upg_region *r)
{
	atomic_store(&r->magic, REGION_DEAD);
	r->recycle_next = NULL;
	pthread_mutex_lock(&recycle_lock);
	if (recycle_tail)
		recycle_tail->recycle_next = r;
	else
		recycle_head = r;
	recycle_tail = r;
	recycle_count++;
	pthread_mutex_unlock(&recycle_lock);
}

/* Index of the first region whose start is > addr.  Lock held. */
static size_t upper_bound(struct upg_runtime *rt, uintptr_t addr)
{
	size_t lo = 0, hi = rt->nregions;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (rt->regions[mid]->start <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Caller holds regions_lock (either mode). */
struct upg_region *region_lookup(struct upg_runtime *rt, uintptr_t addr)
{
	size_t i = upper_bound(rt, addr);
	struct upg_region *r;

	if (i == 0)
		return NULL;
	r = rt->regions[i - 1];
	return addr - r->start < r->size ? r : NULL;
}

static int table_insert(struct upg_runtime *rt, struct upg_region *r)
{
	size_t i;

	if (rt->nregions == rt->regions_cap) {
		size_t cap = rt->regions_cap ? rt->regions_cap * 2 : 64;
		struct upg_region **t = mem_alloc(cap * sizeof(*t));

		if (!t)
			return -ENOMEM;
		if (rt->nregions)
			memcpy(t, rt->regions, rt->nregions * sizeof(*t));
		mem_free(rt->regions, rt->regions_cap * sizeof(*t));
		rt->regions = t;
		rt->regions_cap = cap;
	}
	i = upper_bound(rt, r->start);
	memmove(&rt->regions[i + 1], &rt->regions[i],
		(rt->nregions - i) * sizeof(r));
	rt->regions[i] = r;
	rt->nregions++;
	return 0;
}

static void table_remove(struct upg_runtime *rt, struct upg_region *r)
{
	size_t i = upper_bound(rt, r->start);

	if (i == 0 || rt->regions[i - 1] != r)
		return;
	memmove(&rt->regions[i - 1], &rt->regions[i],
		(rt->nregions - i) * sizeof(r));
	rt->nregions--;
}

int region_create(struct upg_runtime *rt, size_t len, int prot,
		  unsigned flags, struct file_map *file,
		  struct upg_region **out)
{
	struct upg_region *r;
	void *mem;
	bool wp;
	int err;

	r = region_alloc();
	if (!r)
		return -ENOMEM;
	err = pt_init(&r->pt, len >> PAGE_SHIFT);
	if (err)
		goto fail_region;
	mem = mmap(NULL, len, prot,
		   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (mem == MAP_FAILED) {
		err = -errno;
		goto fail_region;
	}
	/* Huge pages would be split by our 4 KiB installs anyway; a child
	 * process must not see this memory without a pager behind it. */
	madvise(mem, len, MADV_NOHUGEPAGE);
	madvise(mem, len, MADV_DONTFORK);
	err = uffd_register(rt->uffd, mem, len, &wp);
	if (err) {
		log_error("cannot register a region of %zu bytes with "
			  "userfaultfd: %s", len, strerror(-err));
		goto fail_map;
	}
	r->rt = rt;
	r->wp = wp;
	r->flags = flags;
	r->file = file;
	r->start = (uintptr_t)mem;
	r->size = len;
	r->npages = len >> PAGE_SHIFT;
	atomic_store(&r->magic, REGION_ALIVE);

	pthread_rwlock_wrlock(&rt->regions_lock);
	err = table_insert(rt, r);
	pthread_rwlock_unlock(&rt->regions_lock);
	if (err)
		goto fail_register;
	*out = r;
	return 0;

fail_register:
	uffd_unregister(rt->uffd, mem, len);
fail_map:
	munmap(mem, len);
fail_region:
	region_recycle(r);
	return err;
}

int upg_anon_create(struct upg_runtime *rt, size_t size, unsigned flags,
		    struct upg_region **out)
{
	if (!rt || !out || size == 0 || size > UPG_REGION_MAX ||
	    (flags & ~UPG_ANON_NOEVICT))
		return -EINVAL;
	return region_create(rt, (size + PAGE_SIZE - 1) & PAGE_MASK,
			     PROT_READ | PROT_WRITE, flags, NULL, out);
}

static bool region_alive(const struct upg_region *r)
{
	return r && atomic_load(&((struct upg_region *)r)->magic) ==
			    REGION_ALIVE;
}

void *upg_region_addr(const struct upg_region *r)
{
	return region_alive(r) ? (void *)r->start : NULL;
}

size_t upg_region_size(const struct upg_region *r)
{
	return region_alive(r) ? r->size : 0;
}

/* Entries that hold a reference to a stored copy (a CACHED page of a file
 * region with payload 0 is backed by its file, not the store). */
static bool holds_handle(pte_t e)
{
	return pte_state(e) == PTE_STORED ||
	       (pte_state(e) == PTE_RESIDENT && (e & PTE_CACHED) &&
		pte_payload(e));
}

/* Exchanged, not read: the store may be dropping a copy an entry names
 * (file_copy_drop), and exactly one of the two must let go of it. */
static int release_leaf(uint64_t first, _Atomic pte_t *leaf, void *arg)
{
	struct store *st = arg;

	(void)first;
	for (unsigned i = 0; i < PT_FANOUT; i++) {
		pte_t e = atomic_exchange(&leaf[i], PTE_EMPTY);

		if (holds_handle(e))
			store_free(st, pte_payload(e));
	}
	return 0;
}

/* Unlinked already: no handler can reach r any more. */
static void region_teardown(struct upg_region *r)
{
	struct upg_runtime *rt = r->rt;
	int64_t resident = atomic_load(&r->ctr.pages_resident);
	int64_t reserved = atomic_load(&r->ctr.pages_reserved);

	/* Snapshots of r copy what they still read through it; a clone lets
	 * go of its snapshot. */
	snap_region_gone(r);
	/* Unregistering wakes any thread still waiting on a fault here. */
	uffd_unregister(rt->uffd, (void *)r->start, r->size);
	munmap((void *)r->start, r->size);
	if (r->file)
		file_release(r);
	if (rt->store)
		pt_walk(&r->pt, 0, r->npages, release_leaf, rt->store);
	atomic_fetch_sub(&rt->ctr.pages_resident, resident);
	atomic_fetch_sub(&rt->ctr.pages_reserved, reserved);
	pt_fini(&r->pt);
	region_recycle(r);
}

int upg_region_destroy(struct upg_region *r)
{
	uint32_t alive = REGION_ALIVE;
	struct upg_runtime *rt;

	/* The CAS makes two racing destroys safe: one wins, one gets EINVAL. */
	if (!r || !atomic_compare_exchange_strong(&r->magic, &alive,
						  REGION_DEAD))
		return -EINVAL;
	rt = r->rt;
	if (r->file)
		file_flush(r);
	/* Once we hold the write lock, no handler is inside a batch that
	 * could be using r; after unlinking, none can find it. */
	pthread_rwlock_wrlock(&rt->regions_lock);
	table_remove(rt, r);
	pthread_rwlock_unlock(&rt->regions_lock);
	region_teardown(r);
	return 0;
}

size_t regions_destroy_all(struct upg_runtime *rt)
{
	size_t n = 0;

	/* Snapshots go first, whole: nothing is worth copying now. */
	snap_teardown_all(rt);
	for (;;) {
		struct upg_region *r = NULL;

		pthread_rwlock_rdlock(&rt->regions_lock);
		if (rt->nregions)
			r = rt->regions[rt->nregions - 1];
		pthread_rwlock_unlock(&rt->regions_lock);
		if (!r)
			break;
		if (upg_region_destroy(r) == 0)
			n++;
	}
	mem_free(rt->regions, rt->regions_cap * sizeof(*rt->regions));
	rt->regions = NULL;
	rt->regions_cap = 0;
	return n;
}

static void mark_written(uintptr_t addr, uint64_t npages, void *arg)
{
	struct upg_region *r = arg;
	uint64_t first = (addr - r->start) >> PAGE_SHIFT;

	for (uint64_t i = first; i < first + npages; i++) {
		_Atomic pte_t *e = pt_entry(&r->pt, i, false);
		pte_t old = e ? atomic_load(e) : PTE_EMPTY;

		/* BUSY entries belong to someone else: next scan.  The
		 * page was just written: referenced, for the policy. */
		if (!pte_reserved(old) || (old & PTE_BUSY))
			continue;
		if (pte_cas(e, &old,
			    pte_make(PTE_RESIDENT, PTE_DIRTY | PTE_REF, 0)))
			reserve_written(r);
	}
}

void region_sync_written(struct upg_region *r)
{
	if (r->rt->pagemap_fd >= 0)
		pagemap_written(r->rt->pagemap_fd, r->start, r->start + r->size,
				mark_written, r);
}

int upg_region_stats_get(const struct upg_region *r, struct upg_stats *st)
{
	struct upg_stats tmp;

	if (!region_alive(r) || !st)
		return -EINVAL;
	memset(&tmp, 0, sizeof(tmp));
	tmp.size = sizeof(tmp);
	tmp.regions = 1;
	pthread_rwlock_rdlock(&r->rt->regions_lock);
	region_sync_written((struct upg_region *)r);
	pthread_rwlock_unlock(&r->rt->regions_lock);
	counters_export(&r->ctr, &tmp);
	tmp.pagetable_bytes = atomic_load(&((struct upg_region *)r)->pt.bytes);
	memcpy(st, &tmp, sizeof(tmp));
	return 0;
}
