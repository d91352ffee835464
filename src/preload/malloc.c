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

static int __attribute__((noinline)) flags_slow(void)
{
	int state = atomic_load_explicit(&pl.state, memory_order_acquire);

	if (pl_tstate == T_INTERNAL)
		return MALLOCX_ARENA(0) | MALLOCX_TCACHE_NONE;
	if (state == PL_STARTING)
		return 0;	/* not managed yet; bind on a later call */
	if (state == PL_OFF || arena_bind_thread() < 0) {
		pl_tstate = T_OFF;
		return 0;
	}
	pl_tstate = T_BOUND;
	return 0;
}

/* jemalloc flags for this thread's allocations. */
static inline int tflags(void)
{
	if (likely(pl_tstate & 1))
		return 0;
	return flags_slow();
}

static void *alloc(size_t size, int flags)
{
	void *p = mallocx(size ? size : 1, tflags() | flags);

	if (unlikely(!p))
		errno = ENOMEM;
	return p;
}

EXPORT void *malloc(size_t size)
{
	return alloc(size, 0);
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
	return alloc(total, MALLOCX_ZERO);
}

EXPORT void *realloc(void *p, size_t size)
{
	void *q;

	if (!p)
		return malloc(size);
	if (size == 0) {
		free(p);
		return NULL;
	}
	q = rallocx(p, size, tflags());
	if (!q)
		errno = ENOMEM;
	return q;
}

EXPORT void *reallocarray(void *p, size_t n, size_t size)
{
	size_t total;

	if (__builtin_mul_overflow(n, size, &total)) {
		errno = ENOMEM;
		return NULL;
	}
	return realloc(p, total);
}

static bool pow2(size_t a)
{
	return a && !(a & (a - 1));
}

static void *aligned(size_t align, size_t size)
{
	if (align <= sizeof(void *) * 2)
		return alloc(size, 0);
	return alloc(size, MALLOCX_ALIGN(align));
}

EXPORT int posix_memalign(void **out, size_t align, size_t size)
{
	void *p;
	int saved = errno;

	if (!pow2(align) || align % sizeof(void *))
		return EINVAL;
	p = aligned(align, size);
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
	return aligned(align, size);
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
	return aligned(a, size);
}

EXPORT void *valloc(size_t size)
{
	return aligned(PAGE_SIZE, size);
}

EXPORT void *pvalloc(size_t size)
{
	size_t len = (size + PAGE_SIZE - 1) & PAGE_MASK;

	if (len < size) {
		errno = ENOMEM;
		return NULL;
	}
	return aligned(PAGE_SIZE, len ? len : PAGE_SIZE);
}

EXPORT size_t malloc_usable_size(void *p)
{
	return p ? sallocx(p, 0) : 0;
}
