/* SPDX-License-Identifier: MIT */
/*
 * UPAGER_RESOLVE=thread: the faulting thread resolves its own fault.
 *
 * The runtime's userfaultfd is opened with UFFD_FEATURE_SIGBUS: a fault on
 * a registered page that is missing or write-protected raises SIGBUS
 * (BUS_ADRERR) in the faulting thread instead of queueing a message for a
 * handler thread.  The handler here finds the region, borrows a fault
 * context and makes the decision a handler thread makes (fault_serve());
 * when it returns, the access runs again and finds its page.  No hand-off,
 * no wake-up.  The price, which upager.h documents: the kernel's own
 * accesses to a page that is not there fail with EFAULT.
 *
 * Which SIGBUS is ours: one the kernel raised for a fault (BUS_ADRERR) at
 * an address inside a region of a runtime in this mode.  Anything else --
 * a poisoned page (BUS_MCEERR_AR: hardware, or UFFDIO_POISON of a page
 * whose stored copy was lost), a file mapping past its end, an address
 * outside every region, kill(2) -- goes to the action that was in place
 * before ours, or gets the default action (the process ends with SIGBUS).
 *
 * Async-signal safety.  The handler runs on a program thread, wherever
 * that thread touched managed memory: inside malloc, stdio, a lock of the
 * program's.  So it takes nothing the program can hold: no malloc (fault
 * contexts come from a pool, their memory straight from mmap), no stdio
 * (log.c formats on the stack and write(2)s), no lock of the program's.
 * The locks it takes are upager's own -- regions_lock for reading, the
 * page-table entries' BUSY bits, the store's, the evictor's and mem.c's
 * mutexes -- which upager's code never holds while touching managed
 * memory, so the code this handler interrupted cannot be holding them.
 * Every signal is blocked while it runs (sa_mask), so no handler of the
 * program runs on top of it and faults on an entry this thread holds.
 * errno is kept.  An entry that is BUSY (the evictor, another thread) or
 * a snapshot gate that is closed is not waited for: the thread yields and
 * returns, and the access faults again.  The handler uses the thread's
 * alternate signal stack when it has one (SA_ONSTACK).
 *
 * Runtimes in this mode are listed in a fixed table the handler reads
 * without a lock: each slot counts the handlers using it, and sigbus_stop
 * clears the slot and waits for its count to drain.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include "log.h"
#include "mem.h"
#include "runtime.h"
#include "sigbus.h"
#include "uffd.h"
#include "util.h"

#define RUNTIMES_MAX 64
#define CONTEXTS 64		/* one bit each in sigbus_pool.busy */

/* Fault contexts faulting threads borrow; each made on its first loan
 * (mmap only, so that may happen in the handler). */
struct sigbus_pool {
	_Atomic uint64_t busy;	/* bit i: ctx[i] is lent */
	struct fault_ctx ctx[CONTEXTS];
};

static struct {
	_Atomic(struct upg_runtime *) rt;
	_Atomic unsigned users;	/* handlers looking at rt */
} slots[RUNTIMES_MAX];
static _Atomic unsigned nslots;	/* slots ever used are below this */

static pthread_mutex_t install_lock = PTHREAD_MUTEX_INITIALIZER;
static struct sigaction prev;	/* the action ours replaced; set once */
static _Atomic bool installed;

static struct fault_ctx *ctx_borrow(struct sigbus_pool *p, unsigned *slot)
{
	uint64_t busy = atomic_load(&p->busy);

	for (;;) {
		unsigned i;

		if (busy == UINT64_MAX) {
			/* CONTEXTS threads inside faults: they hold no lock
			 * we would need to get one back. */
			sched_yield();
			busy = atomic_load(&p->busy);
			continue;
		}
		i = (unsigned)__builtin_ctzll(~busy);
		if (!atomic_compare_exchange_weak(&p->busy, &busy,
						  busy | (UINT64_C(1) << i)))
			continue;
		if (!p->ctx[i].bounce && fault_ctx_init(&p->ctx[i]) < 0) {
			atomic_fetch_and(&p->busy, ~(UINT64_C(1) << i));
			return NULL;
		}
		*slot = i;
		return &p->ctx[i];
	}
}

static void ctx_return(struct sigbus_pool *p, unsigned slot)
{
	atomic_fetch_and(&p->busy, ~(UINT64_C(1) << slot));
}

/*
 * Write or read, and write-protect fault or missing page.  x86-64 puts
 * the page-fault error code in the signal frame (bit 0: the page was
 * present, so only a write-protect fault can have brought it here; bit 1:
 * a write).  Elsewhere a present page means write-protect, and a missing
 * one is served as a write (a written page serves a read too).
 */
static void access_of(const void *ucv, uintptr_t addr, bool *write, bool *wp)
{
#if defined(__x86_64__)
	const ucontext_t *uc = ucv;
	unsigned long err = (unsigned long)uc->uc_mcontext.gregs[REG_ERR];

	(void)addr;
	*write = err & 2;
	*wp = (err & 1) && *write;
#else
	unsigned char v = 0;

	(void)ucv;
	*wp = mincore((void *)page_align_down(addr), PAGE_SIZE, &v) == 0 &&
	      (v & 1);
	*write = true;
#endif
}

/* Serve the fault if addr is in a region of rt (returns whether it is);
 * *ours: served, false if its page is poisoned (the SIGBUS is then the
 * program's). */
static bool serve_in(struct upg_runtime *rt, uintptr_t addr, bool write,
		     bool wp, uint64_t t0, bool *ours)
{
	enum fault_result res = FAULT_BUSY;
	struct upg_region *r;
	struct fault_ctx *c;
	unsigned slot;

	pthread_rwlock_rdlock(&rt->regions_lock);
	r = region_lookup(rt, addr);
	if (r) {
		c = ctx_borrow(rt->sigbus, &slot);
		if (c) {
			res = fault_serve(c, r, addr, write, wp, t0);
			ctx_return(rt->sigbus, slot);
		}
	}
	pthread_rwlock_unlock(&rt->regions_lock);
	/* Not resolved yet: let the owner of the entry (or of the snapshot
	 * gate) run before the access faults again. */
	if (r && (res == FAULT_BUSY || res == FAULT_GATED))
		sched_yield();
	*ours = r && res != FAULT_POISONED;
	return r != NULL;
}

static bool serve(uintptr_t addr, const void *uc)
{
	uint64_t t0 = now_ns();
	unsigned n = atomic_load(&nslots);
	bool write, wp, ours = false, found = false;

	access_of(uc, addr, &write, &wp);
	for (unsigned i = 0; i < n && !found; i++) {
		struct upg_runtime *rt;

		atomic_fetch_add(&slots[i].users, 1);
		rt = atomic_load(&slots[i].rt);
		if (rt)
			found = serve_in(rt, addr, write, wp, t0, &ours);
		atomic_fetch_sub(&slots[i].users, 1);
	}
	return ours;
}

/*
 * Not ours: what would have happened without us.  The previous handler
 * runs with the signal mask the kernel would have given it (the
 * interrupted mask, its sa_mask, and the signal unless SA_NODEFER).  With
 * no handler, a fault gets the default action: the access runs again
 * with SIGBUS at SIG_DFL, and the kernel ends the process as it would
 * have; a SIGBUS sent by kill(2) is sent again, or dropped if it was
 * ignored.
 */
static void chain(int sig, siginfo_t *si, void *ucv)
{
	const struct sigaction p = prev;
	ucontext_t *uc = ucv;
	sigset_t mask;

	if (!(p.sa_flags & SA_SIGINFO) &&
	    (p.sa_handler == SIG_DFL || p.sa_handler == SIG_IGN)) {
		struct sigaction dfl;

		if (p.sa_handler == SIG_IGN && si->si_code <= 0)
			return;
		memset(&dfl, 0, sizeof(dfl));
		dfl.sa_handler = SIG_DFL;
		sigaction(sig, &dfl, NULL);
		if (si->si_code <= 0)
			raise(sig);	/* pending until we return */
		return;
	}
	mask = uc->uc_sigmask;
	sigorset(&mask, &mask, &p.sa_mask);
	if (!(p.sa_flags & SA_NODEFER))
		sigaddset(&mask, sig);
	else
		sigdelset(&mask, sig);
	pthread_sigmask(SIG_SETMASK, &mask, NULL);
	if (p.sa_flags & SA_SIGINFO)
		p.sa_sigaction(sig, si, ucv);
	else
		p.sa_handler(sig);
}

static void on_sigbus(int sig, siginfo_t *si, void *uc)
{
	int saved = errno;
	bool ours = si->si_code == BUS_ADRERR &&
		    serve((uintptr_t)si->si_addr, uc);

	/* Before chaining: the program's handler sees the errno of the code
	 * it interrupted (and may never return here: siglongjmp). */
	errno = saved;
	if (!ours)
		chain(sig, si, uc);
}

/* Caller holds install_lock. */
static int install(void)
{
	struct sigaction sa, cur;

	if (atomic_load(&installed)) {
		if (sigaction(SIGBUS, NULL, &cur) == 0 &&
		    (!(cur.sa_flags & SA_SIGINFO) ||
		     cur.sa_sigaction != on_sigbus))
			log_warn("UPAGER_RESOLVE=thread: the SIGBUS handler "
				 "upager installed was replaced; faults on "
				 "managed memory are served only if the new "
				 "handler passes SIGBUS on to the one it "
				 "replaced");
		return 0;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_sigbus;
	sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
	sigfillset(&sa.sa_mask);
	if (sigaction(SIGBUS, &sa, &prev) < 0) {
		int err = -errno;

		log_error("UPAGER_RESOLVE=thread: cannot install the SIGBUS "
			  "handler: %s", strerror(-err));
		return err;
	}
	atomic_store(&installed, true);
	return 0;
}

/* Caller holds install_lock.  rt's slot (a forked child finds its
 * runtime listed already), else a free one; -1 if none. */
static int slot_for(struct upg_runtime *rt)
{
	unsigned n = atomic_load(&nslots);
	int free = -1;

	for (unsigned i = 0; i < n; i++) {
		struct upg_runtime *cur = atomic_load(&slots[i].rt);

		if (cur == rt)
			return (int)i;
		if (!cur && free < 0)
			free = (int)i;
	}
	if (free < 0 && n < RUNTIMES_MAX)
		free = (int)n;
	return free;
}

int sigbus_start(struct upg_runtime *rt)
{
	struct sigbus_pool *pool;
	int err, i;

	if (!(rt->features & UFFD_FEATURE_SIGBUS)) {
		log_error("UPAGER_RESOLVE=thread needs UFFD_FEATURE_SIGBUS "
			  "(Linux 4.14), which this kernel did not grant");
		return -EOPNOTSUPP;
	}
	pool = mem_alloc(sizeof(*pool));
	if (!pool)
		return -ENOMEM;
	pthread_mutex_lock(&install_lock);
	err = install();
	i = err ? -1 : slot_for(rt);
	if (!err && i < 0) {
		log_error("UPAGER_RESOLVE=thread: more than %d runtimes in "
			  "this mode", RUNTIMES_MAX);
		err = -EMFILE;
	}
	if (!err) {
		/* In a forked child the parent's pool is abandoned: its file
		 * rings are shared with the parent, and loans of threads
		 * that are not here would never come back.  So are counts
		 * of handlers that are not here. */
		rt->sigbus = pool;
		if (atomic_load(&slots[i].rt) == rt)
			atomic_store(&slots[i].users, 0);
		atomic_store(&slots[i].rt, rt);
		if ((unsigned)i == atomic_load(&nslots))
			atomic_store(&nslots, (unsigned)i + 1);
	}
	pthread_mutex_unlock(&install_lock);
	if (err)
		mem_free(pool, sizeof(*pool));
	return err;
}

void sigbus_stop(struct upg_runtime *rt)
{
	struct sigbus_pool *pool = rt->sigbus;
	unsigned n = atomic_load(&nslots);

	if (!pool)
		return;
	for (unsigned i = 0; i < n; i++) {
		if (atomic_load(&slots[i].rt) != rt)
			continue;
		atomic_store(&slots[i].rt, NULL);
		while (atomic_load(&slots[i].users))
			sched_yield();
	}
	for (unsigned i = 0; i < CONTEXTS; i++)
		if (pool->ctx[i].bounce)
			fault_ctx_fini(&pool->ctx[i]);
	mem_free(pool, sizeof(*pool));
	rt->sigbus = NULL;
}
