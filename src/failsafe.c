/* SPDX-License-Identifier: MIT */
/* Failing closed (failsafe.h). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>

#include "failsafe.h"
#include "log.h"
#include "uffd.h"
#include "util.h"

void runtime_fail(struct upg_runtime *rt, const char *fmt, ...)
{
	char why[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	if (atomic_exchange(&rt->failed, true))
		return;
	log_error("%s; upager fails closed: from now on an access to a page "
		  "it does not hold in memory gets SIGBUS, never zeros",
		  why);
}

bool fail_fault(struct upg_runtime *rt, uintptr_t addr, bool wp)
{
	void *page = (void *)page_align_down(addr);
	int rc;

	if (wp) {
		rc = uffd_writeprotect(rt->uffd, page, PAGE_SIZE, false, false);
	} else {
		/* Counted first: the thread, once woken, may look.
		 * EEXIST: a page is there after all (fill() woke the
		 * thread): it finds it when it runs again. */
		counter_add(&rt->ctr.poisoned, 1);
		rc = uffd_poison(rt->uffd, page, PAGE_SIZE);
	}
	if (rc == 0 || rc == -EEXIST)
		return !wp && rc == 0;
	uffd_wake(rt->uffd, page, PAGE_SIZE);
	return true;
}
