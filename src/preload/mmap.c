/* SPDX-License-Identifier: MIT */
/*
 * mmap, munmap, mremap and madvise: large private anonymous mappings are
 * carved from the reservation, and every call that touches the reservation
 * keeps upager's page table true.
 *
 *  - mmap(hint or NULL, len >= UPAGER_PRELOAD_MIN_MMAP, RW or NONE,
 *    PRIVATE|ANONYMOUS): a free range of the reservation (it reads as
 *    zeros); the hint is not honoured, which mmap allows.  PROT_NONE is
 *    how runtimes reserve address space to commit later (HotSpot's heap,
 *    V8's pages): the range gets that protection for real, so a stray
 *    access faults as the runtime expects, and is managed once committed.
 *  - MAP_FIXED over the reservation: a private anonymous RW or PROT_NONE
 *    mapping is emulated (the range is dropped: zeros, as the kernel would
 *    give, and takes that protection): that is how HotSpot commits and
 *    uncommits.  Any other mapping is made for real and the range becomes
 *    a hole that upager never touches again.
 *  - mprotect: made for real on the reservation's mapping (the kernel
 *    splits it, the userfaultfd registration stays): V8 commits with
 *    mprotect to RW, HotSpot guards the heap's base with PROT_NONE.  Pages
 *    with contents keep them whatever the protection; those in a mapping
 *    that is not RW stay resident (the evictor's UFFDIO_MOVE wants the
 *    staging area's protection) until it is RW again.
 *  - munmap: dropped (zeros, stored copies discarded) and freed for reuse.
 *    The range stays mapped: a use after munmap reads zeros instead of
 *    faulting.
 *  - madvise DONTNEED/FREE: dropped; advice that would change the
 *    reservation's mapping (DONTFORK, HUGEPAGE, ...) is ignored there.
 *  - mremap: shrink frees the tail, grow extends in place when the next
 *    range is free, else (MREMAP_MAYMOVE) copies to a new range.
 *
 * Calls from this library (upager's own memory, the evictor's madvise) and
 * from libjemalloc (its unmanaged arenas and metadata) pass straight
 * through, by their return address.  Everything is raw system calls: no
 * dlsym, which allocates and deadlocks inside jemalloc's initialisation.
 *
 * Locking: calls that change managed ranges hold pl.lock for reading, so
 * the fork prepare handler (write) sees none half done.
 */
#undef _FILE_OFFSET_BITS
#include <errno.h>
#include <stdarg.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "preload.h"
#include "util.h"

void *sys_mmap(void *addr, size_t len, int prot, int flags, int fd, long off)
{
	return (void *)syscall(SYS_mmap, addr, len, prot, flags, fd, off);
}

int sys_munmap(void *addr, size_t len)
{
	return (int)syscall(SYS_munmap, addr, len);
}

int sys_madvise(void *addr, size_t len, int advice)
{
	return (int)syscall(SYS_madvise, addr, len, advice);
}

static void *sys_mremap(void *old, size_t old_len, size_t new_len, int flags,
			void *new_addr)
{
	return (void *)syscall(SYS_mremap, old, old_len, new_len, flags,
			       new_addr);
}

static int sys_mprotect(void *addr, size_t len, int prot)
{
	return (int)syscall(SYS_mprotect, addr, len, prot);
}

/* A range given back to the reservation is RW again for its next user,
 * if the program ever protected part of the reservation otherwise. */
static void unprotect(uintptr_t a, size_t len)
{
	if (atomic_load_explicit(&pl.protected, memory_order_acquire))
		sys_mprotect((void *)a, len, PROT_READ | PROT_WRITE);
}

/* Give a range of the reservation the protection the program asked for. */
static int protect(uintptr_t a, size_t len, int prot)
{
	if (prot != (PROT_READ | PROT_WRITE))
		atomic_store_explicit(&pl.protected, true,
				      memory_order_release);
	else if (!atomic_load_explicit(&pl.protected, memory_order_acquire))
		return 0;	/* the whole reservation is RW */
	return sys_mprotect((void *)a, len, prot) ? -errno : 0;
}

static size_t page_round(size_t len)
{
	return (len + PAGE_SIZE - 1) & PAGE_MASK;
}

void heap_drop(uintptr_t a, size_t len)
{
	upg_region_drop(pl.heap, a - pl.base, len);
}

void heap_release(uintptr_t a, size_t len)
{
	heap_drop(a, len);
	unprotect(a, len);
	rsv_release(a, len);
}

/* The part of [a, a + len) inside the reservation, clipped. */
static bool clip(uintptr_t a, size_t len, uintptr_t *s, uintptr_t *e)
{
	*s = MAX(a, pl.base);
	*e = MIN(a + len, pl.end);
	return a + len > a && *s < *e;
}

static bool passes_through(const void *ret)
{
	return !pl_ready() || pl_internal_caller(ret);
}

/* The protections a managed range may have from its mmap: read-write,
 * or none (a reservation, committed later). */
static bool managed_prot(int prot)
{
	return prot == (PROT_READ | PROT_WRITE) || prot == PROT_NONE;
}

static bool private_anon(int flags)
{
	return (flags & MAP_TYPE) == MAP_PRIVATE && (flags & MAP_ANONYMOUS);
}

/* addr, if any, is a hint: not honoured. */
static bool manageable(size_t len, int prot, int flags)
{
	const int bad = MAP_FIXED | MAP_FIXED_NOREPLACE | MAP_STACK |
			MAP_HUGETLB | MAP_GROWSDOWN | MAP_POPULATE | MAP_LOCKED;

	return pl.min_mmap && len >= pl.min_mmap && managed_prot(prot) &&
	       private_anon(flags) && !(flags & bad);
}

/* Pieces of a range for munmap/madvise/MAP_FIXED: holes are real mappings
 * of the application, the rest is ours. */
enum piece_op { OP_UNMAP, OP_DROP, OP_FORGET, OP_FRESH, OP_PROTECT };

struct piece_ctx {
	enum piece_op op;
	int arg;	/* OP_DROP: the advice; OP_FRESH, OP_PROTECT: prot */
	int flags;	/* OP_FRESH: the mmap flags */
	int err;	/* first error, -errno */
};

static void piece(uintptr_t a, size_t len, bool hole, void *arg)
{
	struct piece_ctx *c = arg;

	if (hole) {
		if (c->op == OP_UNMAP)
			sys_munmap((void *)a, len);
		else if (c->op == OP_DROP)
			sys_madvise((void *)a, len, c->arg);
		else if (c->op == OP_PROTECT && sys_mprotect((void *)a, len,
							     c->arg))
			c->err = c->err ? c->err : -errno;
		else if (c->op == OP_FRESH &&
			 sys_mmap((void *)a, len, c->arg, c->flags, -1, 0) ==
				 MAP_FAILED)
			c->err = c->err ? c->err : -errno;
		return;
	}
	switch (c->op) {
	case OP_UNMAP:
		heap_release(a, len);
		break;
	case OP_DROP:
		heap_drop(a, len);
		break;
	case OP_FORGET:
		upg_region_forget(pl.heap, a - pl.base, len);
		rsv_add_hole(a, len);
		break;
	case OP_FRESH:
		/* Dropped while it has its old protection (a drop of an
		 * inaccessible range works as well), then the new one. */
		heap_drop(a, len);
		/* fall through */
	case OP_PROTECT: {
		int rc = protect(a, len, c->arg);

		c->err = c->err ? c->err : rc;
		break;
	}
	}
}

/* Returns the first error of the pieces' system calls, -errno. */
static int for_pieces(uintptr_t s, uintptr_t e, enum piece_op op, int arg,
		      int flags)
{
	struct piece_ctx c = { op, arg, flags, 0 };

	rsv_pieces(s, e - s, piece, &c);
	return c.err;
}

/* MAP_FIXED over the reservation. */
static void *map_fixed(void *addr, size_t len, int prot, int flags, int fd,
		       off_t off)
{
	uintptr_t a = (uintptr_t)addr, s, e;
	void *p;

	if (a & ~PAGE_MASK) {
		errno = EINVAL;
		return MAP_FAILED;
	}
	len = page_round(len);
	clip(a, len, &s, &e);
	pthread_rwlock_rdlock(&pl.lock);
	if (s == a && e == a + len && managed_prot(prot) &&
	    private_anon(flags)) {
		/* Fresh zero pages where they were: stays managed (a hole
		 * in it is mapped for real, and stays a hole). */
		int err = for_pieces(s, e, OP_FRESH, prot, flags);

		rsv_take(s, e - s);
		pthread_rwlock_unlock(&pl.lock);
		if (err) {
			errno = -err;
			return MAP_FAILED;
		}
		return addr;
	}
	for_pieces(s, e, OP_FORGET, 0, 0);
	p = sys_mmap(addr, len, prot, flags, fd, off);
	pthread_rwlock_unlock(&pl.lock);
	return p;
}

static void *mmap_managed(void *addr, size_t len, int prot, int flags,
			  int fd, off_t off)
{
	uintptr_t s, e, a;

	if ((flags & (MAP_FIXED | MAP_FIXED_NOREPLACE)) == MAP_FIXED &&
	    clip((uintptr_t)addr, len, &s, &e))
		return map_fixed(addr, len, prot, flags, fd, off);
	if (!manageable(len, prot, flags))
		return sys_mmap(addr, len, prot, flags, fd, off);
	len = page_round(len);
	pthread_rwlock_rdlock(&pl.lock);
	a = rsv_alloc(len, PAGE_SIZE);
	if (a && protect(a, len, prot)) {
		/* No more mappings (vm.max_map_count): the kernel's. */
		rsv_release(a, len);
		a = 0;
	}
	pthread_rwlock_unlock(&pl.lock);
	return a ? (void *)a : sys_mmap(addr, len, prot, flags, fd, off);
}

EXPORT void *mmap(void *addr, size_t len, int prot, int flags, int fd,
		  off_t off)
{
	if (passes_through(__builtin_return_address(0)))
		return sys_mmap(addr, len, prot, flags, fd, off);
	return mmap_managed(addr, len, prot, flags, fd, off);
}

EXPORT void *mmap64(void *addr, size_t len, int prot, int flags, int fd,
		    off_t off) __attribute__((alias("mmap")));

static int munmap_managed(void *addr, size_t len)
{
	uintptr_t a = (uintptr_t)addr, s, e;

	if (!clip(a, page_round(len), &s, &e))
		return sys_munmap(addr, len);
	if ((a & ~PAGE_MASK) || !len) {
		errno = EINVAL;
		return -1;
	}
	len = page_round(len);
	if (a < s)
		sys_munmap(addr, s - a);
	if (a + len > e)
		sys_munmap((void *)e, a + len - e);
	pthread_rwlock_rdlock(&pl.lock);
	for_pieces(s, e, OP_UNMAP, 0, 0);
	pthread_rwlock_unlock(&pl.lock);
	return 0;
}

EXPORT int munmap(void *addr, size_t len)
{
	if (passes_through(__builtin_return_address(0)))
		return sys_munmap(addr, len);
	return munmap_managed(addr, len);
}

static bool advice_drops(int advice)
{
	return advice == MADV_DONTNEED || advice == MADV_FREE;
}

/* Advice that only informs the kernel's own paging: harmless to pass. */
static bool advice_harmless(int advice)
{
	return advice == MADV_NORMAL || advice == MADV_RANDOM ||
	       advice == MADV_SEQUENTIAL || advice == MADV_WILLNEED;
}

EXPORT int madvise(void *addr, size_t len, int advice)
{
	const void *ret = __builtin_return_address(0);
	uintptr_t a = (uintptr_t)addr, s, e;

	if (passes_through(ret) || !clip(a, page_round(len), &s, &e) ||
	    advice_harmless(advice))
		return sys_madvise(addr, len, advice);
	if (a & ~PAGE_MASK) {
		errno = EINVAL;
		return -1;
	}
	len = page_round(len);
	if (a < s)
		sys_madvise(addr, s - a, advice);
	if (a + len > e)
		sys_madvise((void *)e, a + len - e, advice);
	if (advice_drops(advice)) {
		pthread_rwlock_rdlock(&pl.lock);
		for_pieces(s, e, OP_DROP, advice, 0);
		pthread_rwlock_unlock(&pl.lock);
	}
	return 0;
}

EXPORT int mprotect(void *addr, size_t len, int prot)
{
	const void *ret = __builtin_return_address(0);
	uintptr_t a = (uintptr_t)addr, s, e;
	int err;

	if (passes_through(ret) || !clip(a, page_round(len), &s, &e))
		return sys_mprotect(addr, len, prot);
	if (a & ~PAGE_MASK) {
		errno = EINVAL;
		return -1;
	}
	len = page_round(len);
	if (a < s && sys_mprotect(addr, s - a, prot))
		return -1;
	if (a + len > e && sys_mprotect((void *)e, a + len - e, prot))
		return -1;
	pthread_rwlock_rdlock(&pl.lock);
	err = for_pieces(s, e, OP_PROTECT, prot, 0);
	pthread_rwlock_unlock(&pl.lock);
	if (err) {
		errno = -err;
		return -1;
	}
	return 0;
}

static void note_hole(uintptr_t a, size_t len, bool hole, void *arg)
{
	*(bool *)arg |= hole;
}

/* A foreign mapping (MAP_FIXED over the reservation) is the kernel's to
 * remap. */
static bool any_hole(uintptr_t s, uintptr_t e)
{
	bool hole = false;

	rsv_pieces(s, e - s, note_hole, &hole);
	return hole;
}

/* mremap of a managed range; pl.lock held for reading. */
static void *remap_managed(uintptr_t old, size_t old_len, size_t new_len,
			   int flags)
{
	uintptr_t n;

	if (new_len <= old_len) {
		if (new_len < old_len)
			heap_release(old + new_len, old_len - new_len);
		return (void *)old;
	}
	if (old + new_len <= pl.end &&
	    rsv_take_exact(old + old_len, new_len - old_len))
		return (void *)old;
	if (!(flags & MREMAP_MAYMOVE)) {
		errno = ENOMEM;
		return MAP_FAILED;
	}
	n = rsv_alloc(new_len, PAGE_SIZE);
	if (!n) {
		errno = ENOMEM;
		return MAP_FAILED;
	}
	/* Through faults: evicted pages come back one at a time and the
	 * copies are evicted as the budget requires. */
	memcpy((void *)n, (void *)old, old_len);
	heap_release(old, old_len);
	return (void *)n;
}

EXPORT void *mremap(void *old, size_t old_len, size_t new_len, int flags, ...)
{
	const void *ret = __builtin_return_address(0);
	uintptr_t a = (uintptr_t)old, s, e;
	void *new_addr = NULL, *p;
	va_list ap;

	if (flags & MREMAP_FIXED) {
		va_start(ap, flags);
		new_addr = va_arg(ap, void *);
		va_end(ap);
	}
	if (passes_through(ret) || !clip(a, page_round(old_len), &s, &e) ||
	    any_hole(s, e))
		return sys_mremap(old, old_len, new_len, flags, new_addr);
	old_len = page_round(old_len);
	new_len = page_round(new_len);
	if ((a & ~PAGE_MASK) || s != a || e != a + old_len || !new_len ||
	    !old_len || (flags & ~(MREMAP_MAYMOVE | MREMAP_FIXED))) {
		/* Straddles the reservation's edge, or DONTUNMAP: the
		 * kernel could not do it on one mapping either. */
		errno = EINVAL;
		return MAP_FAILED;
	}
	if (flags & MREMAP_FIXED) {
		p = mmap_managed(new_addr, new_len, PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
		if (p != MAP_FAILED) {
			memcpy(p, old, MIN(old_len, new_len));
			munmap_managed(old, old_len);
		}
		return p;
	}
	pthread_rwlock_rdlock(&pl.lock);
	p = remap_managed(a, old_len, new_len, flags);
	pthread_rwlock_unlock(&pl.lock);
	return p;
}
