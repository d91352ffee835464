/* SPDX-License-Identifier: MIT */
/* Small helpers shared by every subsystem. */
#ifndef UPAGER_UTIL_H
#define UPAGER_UTIL_H

#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#define PAGE_SHIFT 12
#define PAGE_SIZE ((size_t)1 << PAGE_SHIFT)
#define PAGE_MASK (~(PAGE_SIZE - 1))

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))
#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

/*
 * Count one of a pair of competing tallies (*c is a or b), halving both
 * once *c passes `window`, so that recent events weigh most.  Relaxed and
 * racy by design: the tallies are hints (swapcopy.h, store.c).
 */
static inline void tally_count(_Atomic uint32_t *c, _Atomic uint32_t *a,
			       _Atomic uint32_t *b, uint32_t window)
{
	if (atomic_fetch_add_explicit(c, 1, memory_order_relaxed) > window) {
		atomic_store_explicit(a, atomic_load(a) / 2,
				      memory_order_relaxed);
		atomic_store_explicit(b, atomic_load(b) / 2,
				      memory_order_relaxed);
	}
}

/* Symbols other files of the library may call; hidden from users. */
#define HIDDEN __attribute__((visibility("hidden")))

static inline uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline uintptr_t page_align_down(uintptr_t a)
{
	return a & PAGE_MASK;
}

#endif
