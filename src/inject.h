/* SPDX-License-Identifier: MIT */
/*
 * Fault injection, for tests only: a test arms a point with an errno and a
 * count, and the next `count` passes through that point fail with it.
 * Outside tests nothing is armed, and each point costs one load of a
 * global and a branch predicted not taken (inject_check), so the hooks
 * stay in the library without weighing on the fault path.  The tests
 * reach inject_arm through the internal static library; the shared
 * library does not export it.
 */
#ifndef UPAGER_INJECT_H
#define UPAGER_INJECT_H

#include <stdatomic.h>

enum inject_point {
	/* A userfaultfd fill ioctl (uffd.c: COPY, ZEROPAGE, POISON, MOVE)
	 * whose _IOC_NR is the point's `arg` fails with the errno, as if the
	 * kernel had returned it, without being made. */
	INJECT_UFFD_FILL,
	/* A fault handler dies after reading a batch, before serving it
	 * (fault.c); errno: what it reports. */
	INJECT_HANDLER_DIE,
	/* The evictor dies at its next wake-up (evict.c). */
	INJECT_EVICTOR_DIE,
	/* Setting up an io_uring ring of the swap store fails (io.c). */
	INJECT_RING_SETUP,
	INJECT_NPOINTS
};

/* Nonzero while any point is armed: the one word the hooks read. */
extern _Atomic unsigned inject_armed;

/* Arm `p`: its next `count` hits with a matching `arg` (or any arg, for
 * arg < 0) fail with -err.  count 0 disarms it. */
void inject_arm(enum inject_point p, int arg, int err, unsigned count);
/* Disarm every point. */
void inject_reset(void);

int inject_hit(enum inject_point p, int arg);

/* 0, or the -errno this pass through `p` must fail with. */
static inline int inject_check(enum inject_point p, int arg)
{
	if (__builtin_expect(atomic_load_explicit(&inject_armed,
						  memory_order_relaxed), 0))
		return inject_hit(p, arg);
	return 0;
}

#endif
