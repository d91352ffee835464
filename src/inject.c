/* SPDX-License-Identifier: MIT */
/* Fault injection for tests (inject.h).  Any thread may pass a point; the
 * count is taken with a CAS, so `count` hits fail, no more. */
#include <stdatomic.h>

#include "inject.h"

struct point {
	_Atomic int arg;
	_Atomic int err;
	_Atomic unsigned left;
};

_Atomic unsigned inject_armed;
static struct point points[INJECT_NPOINTS];

static void rearm_summary(void)
{
	unsigned any = 0;

	for (int i = 0; i < INJECT_NPOINTS; i++)
		any |= atomic_load(&points[i].left) != 0;
	atomic_store(&inject_armed, any);
}

void inject_arm(enum inject_point p, int arg, int err, unsigned count)
{
	atomic_store(&points[p].left, 0);
	atomic_store(&points[p].arg, arg);
	atomic_store(&points[p].err, err);
	atomic_store(&points[p].left, count);
	rearm_summary();
}

void inject_reset(void)
{
	for (int i = 0; i < INJECT_NPOINTS; i++)
		atomic_store(&points[i].left, 0);
	rearm_summary();
}

int inject_hit(enum inject_point p, int arg)
{
	struct point *pt = &points[p];
	unsigned left = atomic_load(&pt->left);
	int want = atomic_load(&pt->arg);

	if (want >= 0 && want != arg)
		return 0;
	do {
		if (left == 0)
			return 0;
	} while (!atomic_compare_exchange_weak(&pt->left, &left, left - 1));
	if (left == 1)
		rearm_summary();
	return -atomic_load(&pt->err);
}
