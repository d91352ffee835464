/* SPDX-License-Identifier: MIT */
/*
 * Managed jemalloc arenas: their extent hooks carve extents out of the
 * reservation, so every application allocation lives in upager memory.
 *
 * The arenas are created with experimental.arenas_create_ext and
 * metadata_use_hooks = false: their metadata comes from jemalloc's default
 * hooks (plain mmap), unmanaged like arena 0 and the base allocator.
 * Application threads are bound to them with thread.arena on their first
 * allocation after start-up (malloc.c); a bound thread's huge allocations
 * stay in its arena too (jemalloc bypasses the huge arena for manual ones).
 *
 * Hook rules (jemalloc runs them under its own locks, with reentrancy
 * raised): no malloc, no stdio, no waiting on anything but BUSY entries and
 * the range allocator's leaf lock.  The hooks follow jemalloc 5.3's
 * contract: false means success; dalloc and decommit opt out (the extent
 * is retained and reused), purge_forced drops the pages (zeros, stored
 * copies discarded), split always works, merge only within one side of the
 * reservation's boundary.
 */
#include <errno.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#include <jemalloc/jemalloc.h>

#include "preload.h"
#include "util.h"

#define MAX_ARENAS 16
/* Dirty pages go back to upager (dropped) after this long unused. */
#define DIRTY_DECAY_MS 1000

static unsigned arena_ind[MAX_ARENAS];
static unsigned narenas;
static _Atomic unsigned next_arena;
static _Atomic bool warned_full;

/* Once the reservation is full, extents come from plain mmap. */
static void *alloc_unmanaged(size_t size, size_t align)
{
	size_t len = size + align - PAGE_SIZE;
	char *p = sys_mmap(NULL, len, PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	uintptr_t a;

	if (p == MAP_FAILED)
		return NULL;
	if (!atomic_exchange(&warned_full, true))
		pl_say("upager: the managed heap (UPAGER_PRELOAD_HEAP) is full: "
		       "further memory is not managed");
	a = ((uintptr_t)p + align - 1) & ~(align - 1);
	if (a > (uintptr_t)p)
		sys_munmap(p, a - (uintptr_t)p);
	if ((uintptr_t)p + len > a + size)
		sys_munmap((void *)(a + size), (uintptr_t)p + len - a - size);
	return (void *)a;
}

static void *hook_alloc(extent_hooks_t *h, void *new_addr, size_t size,
			size_t align, bool *zero, bool *commit, unsigned ind)
{
	uintptr_t a;

	align = MAX(align, PAGE_SIZE);
	if (new_addr) {
		/* Growing in place: only if the range right there is free. */
		if (!in_heap((uintptr_t)new_addr) ||
		    !rsv_take_exact((uintptr_t)new_addr, size))
			return NULL;
		a = (uintptr_t)new_addr;
	} else {
		a = rsv_alloc(size, align);
		if (!a)
			return alloc_unmanaged(size, align);
	}
	/* Free ranges of the reservation read as zeros. */
	*zero = true;
	*commit = true;
	return (void *)a;
}

static bool hook_dalloc(extent_hooks_t *h, void *addr, size_t size,
			bool committed, unsigned ind)
{
	return true;	/* opt out: jemalloc retains the extent */
}

static void hook_destroy(extent_hooks_t *h, void *addr, size_t size,
			 bool committed, unsigned ind)
{
	if (in_heap((uintptr_t)addr))
		heap_release((uintptr_t)addr, size);
	else
		sys_munmap(addr, size);
}

static bool hook_commit(extent_hooks_t *h, void *addr, size_t size,
			size_t off, size_t len, unsigned ind)
{
	return false;	/* memory is committed on demand by faults */
}

static bool hook_decommit(extent_hooks_t *h, void *addr, size_t size,
			  size_t off, size_t len, unsigned ind)
{
	return true;	/* opt out: jemalloc purges instead */
}

static bool hook_purge_forced(extent_hooks_t *h, void *addr, size_t size,
			      size_t off, size_t len, unsigned ind)
{
	uintptr_t a = (uintptr_t)addr + off;

	if (in_heap(a))
		heap_drop(a, len);
	else
		sys_madvise((void *)a, len, MADV_DONTNEED);
	return false;
}

static bool hook_split(extent_hooks_t *h, void *addr, size_t size,
		       size_t size_a, size_t size_b, bool committed,
		       unsigned ind)
{
	return false;
}

static bool hook_merge(extent_hooks_t *h, void *addr_a, size_t size_a,
		       void *addr_b, size_t size_b, bool committed,
		       unsigned ind)
{
	return in_heap((uintptr_t)addr_a) != in_heap((uintptr_t)addr_b);
}

static extent_hooks_t hooks = {
	.alloc = hook_alloc,
	.dalloc = hook_dalloc,
	.destroy = hook_destroy,
	.commit = hook_commit,
	.decommit = hook_decommit,
	.purge_lazy = NULL,
	.purge_forced = hook_purge_forced,
	.split = hook_split,
	.merge = hook_merge,
};

/* jemalloc 5.3's arena_config_t (internal, not in the installed header);
 * a size mismatch makes the mallctl fail with EINVAL, not misbehave. */
struct arena_config {
	extent_hooks_t *extent_hooks;
	bool metadata_use_hooks;
};

static int arena_set(unsigned ind, const char *what, ssize_t v)
{
	char name[64];

	snprintf(name, sizeof(name), "arena.%u.%s", ind, what);
	return mallctl(name, NULL, NULL, &v, sizeof(v));
}

static int arena_new(unsigned *ind)
{
	struct arena_config cfg = { &hooks, false };
	size_t sz = sizeof(*ind);
	int err;

	err = mallctl("experimental.arenas_create_ext", ind, &sz, &cfg,
		      sizeof(cfg));
	if (err)
		return -err;
	arena_set(*ind, "dirty_decay_ms", DIRTY_DECAY_MS);
	arena_set(*ind, "muzzy_decay_ms", 0);
	return 0;
}

int arenas_create(void)
{
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	unsigned want = ncpu < 1 ? 1 : ncpu > MAX_ARENAS ? MAX_ARENAS
							 : (unsigned)ncpu;
	int err = 0;

	while (narenas < want) {
		err = arena_new(&arena_ind[narenas]);
		if (err)
			break;
		narenas++;
	}
	return narenas ? 0 : err;
}

int arena_bind_thread(void)
{
	unsigned ind;

	if (!narenas)
		return -ENOENT;
	ind = arena_ind[atomic_fetch_add(&next_arena, 1) % narenas];
	return -mallctl("thread.arena", NULL, NULL, &ind, sizeof(ind));
}
