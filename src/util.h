/* SPDX-License-Identifier: MIT */
/* Small helpers shared by every subsystem. */
#ifndef UPAGER_UTIL_H
#define UPAGER_UTIL_H

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
