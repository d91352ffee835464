/* SPDX-License-Identifier: MIT */
/*
 * Failing closed.  When upager cannot do its job it says why and denies
 * access rather than serve a page it does not have: a fault it cannot
 * resolve gets SIGBUS (UFFDIO_POISON), never a zero page, never an
 * endless wait.
 *
 *  - One fault that cannot be resolved (an ioctl failing with an errno
 *    nothing expects): that thread gets SIGBUS, the page's entry is kept
 *    (its contents stay wherever they were), the runtime goes on.
 *  - One of upager's threads stopping when nobody asked it to (a handler
 *    that cannot read its userfaultfd, the evictor ending its loop):
 *    runtime_fail() logs the reason once and marks the runtime failed.
 *    From then on the handlers answer every fault with fail_fault: SIGBUS
 *    for a page not in memory, write access for a present write-protected
 *    one (its contents are the program's and in place).  Pages in memory
 *    stay readable and writable; nothing is ever zero-filled.  A handler
 *    that dies serves on in this mode itself (fault.c), so faults queued
 *    or to come always find a reader.
 *
 * UPAGER_RESOLVE=thread has no handler threads: each faulting thread
 * resolves its own fault in its SIGBUS handler (sigbus.c) through the same
 * fault_serve(), so the same two rules hold there.  A fault that cannot be
 * resolved poisons the page and the SIGBUS goes to the program (by
 * default, the process ends with SIGBUS) rather than the access faulting
 * again for ever.  The only thread of upager's left to die is the
 * evictor: when it stops, the runtime fails closed as above and every
 * faulting thread answers its own fault with fail_fault from then on; no
 * fault waits for anyone, so none can hang.  INJECT_HANDLER_DIE has no
 * thread to act on in this mode.
 */
#ifndef UPAGER_FAILSAFE_H
#define UPAGER_FAILSAFE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "runtime.h"

/* Mark rt failed; the first call logs "<reason>; upager fails closed ...".
 * Any thread. */
void runtime_fail(struct upg_runtime *rt, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* One relaxed load: cheap enough for every fault. */
static inline bool runtime_failed(struct upg_runtime *rt)
{
	return __builtin_expect(atomic_load_explicit(&rt->failed,
						     memory_order_relaxed), 0);
}

/* Answer the fault at addr without serving it: a missing page is
 * poisoned (the thread gets SIGBUS), a write-protect fault unprotected.
 * Wakes the thread whatever happens.  Returns false when the access will
 * find its page (protection lifted, or a page was there after all), true
 * when it gets SIGBUS or could not be answered: a thread resolving its
 * own fault (sigbus.c) then hands the SIGBUS to the program rather than
 * fault again for ever.  Handler threads and faulting threads. */
bool fail_fault(struct upg_runtime *rt, uintptr_t addr, bool wp);

#endif
