/* SPDX-License-Identifier: MIT */
/*
 * The malloc family, exported so that it wins over glibc's for the program,
 * its libraries, libc itself and ld.so.  Thin wrappers over jemalloc's
 * *allocx API with glibc's edge semantics: malloc(0) is a unique pointer,
 * calloc and reallocarray check for overflow, realloc(p, 0) frees, bad
 * alignments give EINVAL, free keeps errno.
 *
 * Which arena: a thread is bound to a managed arena on its first call once
 * the runtime is up; before that (start-up, libc's and ld.so's early
 * allocations) everything goes to jemalloc's automatic, unmanaged arenas.
 * Upager's own code runs with the thread marked T_INTERNAL: arena 0 without
 * a tcache, so it can never be handed managed memory.
 */
#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include <jemalloc/jemalloc.h>

#include "preload.h"
#include "util.h"

__thread unsigned char pl_tstate IE;

#define UNMANAGED (MALLOCX_ARENA(0) | MALLOCX_TCACHE_NONE)

static int __attribute__((noinline)) flags_slow(const void *ret)
{
	int state = atomic_load_explicit(&pl.state, memory_order_acquire);

	if (pl_tstate == T_INTERNAL)
		return UNMANAGED;
	if (pl_tstate == T_BOUND)
		return UNMANAGED;	/* a libc caller, see tflags */
	if (state == PL_STARTING)
		return 0;	/* not managed yet; bind on a later call */
	if (state == PL_OFF || arena_bind_thread() < 0) {
		pl_tstate = T_OFF;
		return 0;
	}
	pl_tstate = T_BOUND;
	return pl_libc_caller(ret) ? UNMANAGED : 0;
}

/* jemalloc flags for an allocation by this thread, called from ret. */
static inline int tflags(const void *ret)
{
	if (likely(pl_tstate == T_OFF ||
		   (pl_tstate == T_BOUND && !pl_libc_caller(ret))))
		return 0;
	return flags_slow(ret);
}

#define CALLER __builtin_return_address(0)

static inline void *alloc(size_t size, int flags, const void *ret)
{
	void *p = mallocx(size ? size : 1, tflags(ret) | flags);

	if (unlikely(!p))
		errno = ENOMEM;
	return p;
}

EXPORT void *malloc(size_t size)
{
	return alloc(size, 0, CALLER);
}

EXPORT void free(void *p)
{
	int saved;

	if (!p)
		return;
	saved = errno;
	dallocx(p, pl_tstate == T_INTERNAL ? MALLOCX_TCACHE_NONE : 0);
	errno = saved;
}

EXPORT void *calloc(size_t n, size_t size)
{
	size_t total;

	if (__builtin_mul_overflow(n, size, &total)) {
		errno = ENOMEM;
		return NULL;
	}
	return alloc(total, MALLOCX_ZERO, CALLER);
}

static void *do_realloc(void *p, size_t size, const void *ret)
{
	void *q;

	if (!p)
		return alloc(size, 0, ret);
	if (size == 0) {
		free(p);
		return NULL;
	}
	q = rallocx(p, size, tflags(ret));
	if (!q)
		errno = ENOMEM;
	return q;
}

EXPORT void *realloc(void *p, size_t size)
{
	return do_realloc(p, size, CALLER);
}

EXPORT void *reallocarray(void *p, size_t n, size_t size)
{
	size_t total;

	if (__builtin_mul_overflow(n, size, &total)) {
		errno = ENOMEM;
		return NULL;
	}
	return do_realloc(p, total, CALLER);
}

static bool pow2(size_t a)
{
	return a && !(a & (a - 1));
}

static inline void *aligned(size_t align, size_t size, const void *ret)
{
	if (align <= sizeof(void *) * 2)
		return alloc(size, 0, ret);
	return alloc(size, MALLOCX_ALIGN(align), ret);
}

EXPORT int posix_memalign(void **out, size_t align, size_t size)
{
	void *p;
	int saved = errno;

	if (!pow2(align) || align % sizeof(void *))
		return EINVAL;
	p = aligned(align, size, CALLER);
	if (!p) {
		errno = saved;
		return ENOMEM;
	}
	*out = p;
	return 0;
}

EXPORT void *aligned_alloc(size_t align, size_t size)
{
	if (!pow2(align)) {
		errno = EINVAL;
		return NULL;
	}
	return aligned(align, size, CALLER);
}

/* glibc rounds a memalign alignment up to a power of two. */
EXPORT void *memalign(size_t align, size_t size)
{
	size_t a = sizeof(void *) * 2;

	if (align > (SIZE_MAX >> 1) + 1) {
		errno = EINVAL;
		return NULL;
	}
	while (a < align)
		a <<= 1;
	return aligned(a, size, CALLER);
}

EXPORT void *valloc(size_t size)
{
	return aligned(PAGE_SIZE, size, CALLER);
}

EXPORT void *pvalloc(size_t size)
{
	size_t len = (size + PAGE_SIZE - 1) & PAGE_MASK;

	if (len < size) {
		errno = ENOMEM;
		return NULL;
	}
	return aligned(PAGE_SIZE, len ? len : PAGE_SIZE, CALLER);
}

EXPORT size_t malloc_usable_size(void *p)
{
	return p ? sallocx(p, 0) : 0;
}
