/* SPDX-License-Identifier: MIT */
/*
 * libupager-preload.so: what its files share.
 *
 * The library exports the malloc family (malloc.c) and mmap, munmap,
 * mremap, madvise and mprotect (mmap.c), and nothing else (preload.sym).
 * Memory comes from one large upager region, "the reservation", reserved
 * when the library starts (init.c) and carved by a range allocator (rsv.c)
 * for two users: jemalloc arenas whose extent hooks take their extents
 * from it (arena.c), and large private anonymous mmaps.  Free ranges of the reservation always
 * read as zeros (they were dropped with upg_region_drop when freed).
 *
 * Unmanaged memory: everything allocated before the runtime is up, jemalloc's
 * arena 0 and metadata (arenas are created with metadata_use_hooks off), and
 * upager's own memory (mem.c, direct mmaps that the interposer passes
 * through because they come from this library's or jemalloc's code).
 */
#ifndef UPAGER_PRELOAD_H
#define UPAGER_PRELOAD_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "upager.h"

#define IE __attribute__((tls_model("initial-exec")))
#define EXPORT __attribute__((visibility("default")))

/* Per-thread allocation state (malloc.c); odd values take the fast path. */
enum {
	T_NEW = 0,	/* not bound to a managed arena yet */
	T_BOUND = 1,	/* bound to a managed arena */
	T_INTERNAL = 2,	/* inside upager: unmanaged arena 0, no tcache */
	T_OFF = 3,	/* preload mode is off: jemalloc's defaults */
};
extern __thread unsigned char pl_tstate IE;

struct preload {
	_Atomic int state;		/* enum pl_state */
	struct upg_runtime *rt;
	struct upg_region *heap;	/* the reservation */
	uintptr_t base, end;		/* its address range */
	uint64_t min_mmap;		/* smallest managed mmap, 0 = none */
	uint64_t mem_limit;		/* the budget, 0 = none */
	/* Set once the program gave part of the reservation a protection
	 * other than RW (mmap.c): ranges freed are made RW again. */
	_Atomic bool protected;
	/* Interposer calls that change managed ranges hold this for reading;
	 * the fork prepare handler for writing (so none is half done). */
	pthread_rwlock_t lock;
};

enum pl_state { PL_STARTING = 0, PL_READY = 1, PL_OFF = 2 };

extern struct preload pl;

static inline bool pl_ready(void)
{
	return atomic_load_explicit(&pl.state, memory_order_acquire) ==
	       PL_READY;
}

static inline bool in_heap(uintptr_t a)
{
	return a - pl.base < pl.end - pl.base;
}

/* Run upager code on this thread without handing it managed memory. */
static inline unsigned char pl_enter_internal(void)
{
	unsigned char saved = pl_tstate;

	pl_tstate = T_INTERNAL;
	return saved;
}

static inline void pl_leave_internal(unsigned char saved)
{
	pl_tstate = saved;
}

/* init.c: true if the caller's return address lies in this library,
 * libjemalloc, libc or ld.so: their mmaps are never managed. */
bool pl_internal_caller(const void *ret);
/* True if it lies in libc or ld.so: their allocations (FILE objects, locale
 * data, NSS, DTVs) stay unmanaged, because glibc touches some of them in a
 * forked child before any atfork handler has given it a pager, and in every
 * new thread before it runs a line of ours. */
bool pl_libc_caller(const void *ret);
/* One line on stderr, without malloc. */
void pl_say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* arena.c */
int arenas_create(void);
/* Bind the calling thread to a managed arena (round robin). */
int arena_bind_thread(void);

/* rsv.c: the reservation's range allocator.  All under its own mutex,
 * which is a leaf lock (taken inside jemalloc's locks and pl.lock). */
int rsv_init(uintptr_t base, size_t len);
/* A free range of len bytes aligned to align (page multiples); 0 if none. */
uintptr_t rsv_alloc(size_t len, size_t align);
/* Take [a, a + len) if all of it is free. */
bool rsv_take_exact(uintptr_t a, size_t len);
/* Take whatever of [a, a + len) is free (MAP_FIXED over it). */
void rsv_take(uintptr_t a, size_t len);
/* Give [a, a + len) back; parts already free are fine.  The caller has
 * dropped its pages first. */
void rsv_release(uintptr_t a, size_t len);
/* Mark [a, a + len) as a foreign mapping: never free again. */
void rsv_add_hole(uintptr_t a, size_t len);
/* Call fn on each maximal piece of [a, a + len), telling holes apart. */
typedef void (*rsv_piece_fn)(uintptr_t a, size_t len, bool hole, void *arg);
void rsv_pieces(uintptr_t a, size_t len, rsv_piece_fn fn, void *arg);

/* mmap.c: drop [a, a + len) of the reservation (zeros) and free it. */
void heap_release(uintptr_t a, size_t len);
void heap_drop(uintptr_t a, size_t len);
/* Raw system calls, never interposed. */
void *sys_mmap(void *addr, size_t len, int prot, int flags, int fd, long off);
int sys_munmap(void *addr, size_t len);
int sys_madvise(void *addr, size_t len, int advice);

#endif
