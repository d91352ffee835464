/* SPDX-License-Identifier: MIT */
/*
 * fork(): the child gets a runtime of its own over the inherited regions.
 *
 * Without UFFD_FEATURE_EVENT_FORK (which would make the parent's handler
 * serve the child forever) the kernel drops the userfaultfd registration
 * in the child, and every page that was in the store reads as zeros there.
 * So around fork:
 *
 *  prepare (forking thread): take regions_lock for writing, which waits
 *    until no handler is inside a batch and the evictor is between rounds:
 *    no page is half-evicted (its data in the staging page, which is not
 *    inherited) or half-filled.  Take a store reference on every STORED
 *    page and remember (region, entry, handle).
 *  parent: release regions_lock (the parent runs on at once), stream each
 *    remembered page to the child over a socket as the store keeps it
 *    (checked, opened if sealed, still compressed: store_get_packed), then
 *    drop the references.
 *  child: a new userfaultfd, every inherited region registered again, a
 *    new store; each streamed page is stored again in it as it came
 *    (store_put_packed: no compression again) and its entry repointed;
 *    then new handler and evictor threads.
 *
 * The inherited store object is abandoned in the child, never used: its
 * io_uring rings are shared with the parent (their memory is MAP_SHARED)
 * and its locks may be held by threads that do not exist there.
 *
 * Locking: fork_lock serialises prepare..parent/child (glibc already runs
 * the atfork handlers of two forks one after the other).  Entries are
 * taken with BUSY while their reference is taken, because a concurrent
 * upg_region_drop (from an allocator hook) may free the handle.
 */
#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <stddef.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "evict.h"
#include "log.h"
#include "mem.h"
#include "pagemap.h"
#include "publish.h"
#include "reserve.h"
#include "runtime.h"
#include "store.h"
#include "thread.h"
#include "uffd.h"
#include "util.h"

struct fork_item {
	struct upg_region *r;
	uint64_t idx;		/* page index in r */
	uint64_t handle;	/* in the parent's store */
};

/* One record on the socket: a status and a length, then that many bytes
 * of the packed page. */
struct fork_record {
	int32_t status;		/* 0, or -errno of store_get: page lost */
	uint32_t len;		/* bytes of page[] that follow (status 0) */
	char page[PAGE_SIZE];
};
#define RECORD_HEAD offsetof(struct fork_record, page)

/* Records go by the socket in batches of this many bytes at most: most
 * packed pages are small, and a system call each would cost more than the
 * page (on a PVM guest, 1-2 us a call). */
#define STREAM_BYTES (64 * 1024)

/* A batch of records on its way, in either direction. */
struct stream {
	char *buf;		/* STREAM_BYTES */
	size_t len;		/* bytes in buf */
	size_t pos;		/* receiving: bytes of buf consumed */
};

static pthread_mutex_t fork_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
	struct fork_item *items;
	size_t n, cap;
	int sock[2];		/* [0] parent's end, [1] child's end */
	bool partial;		/* prepare failed: items do not cover every
				 * stored page */
} fk = { .sock = { -1, -1 } };

static int items_push(struct upg_region *r, uint64_t idx, uint64_t h)
{
	if (fk.n == fk.cap) {
		size_t cap = fk.cap ? fk.cap * 2 : 1024;
		struct fork_item *t = mem_alloc(cap * sizeof(*t));

		if (!t)
			return -ENOMEM;
		if (fk.n)
			memcpy(t, fk.items, fk.n * sizeof(*t));
		mem_free(fk.items, fk.cap * sizeof(*t));
		fk.items = t;
		fk.cap = cap;
	}
	fk.items[fk.n++] = (struct fork_item){ r, idx, h };
	return 0;
}

static void items_free(void)
{
	mem_free(fk.items, fk.cap * sizeof(*fk.items));
	fk.items = NULL;
	fk.n = fk.cap = 0;
}

struct collect {
	struct upg_region *r;
	struct store *st;
	int err;
};

static int collect_leaf(uint64_t first, _Atomic pte_t *leaf, void *arg)
{
	struct collect *c = arg;
	pte_t old;

	for (unsigned i = 0; i < PT_FANOUT && !c->err; i++) {
		if (pte_state(atomic_load(&leaf[i])) != PTE_STORED)
			continue;
		while (!pte_trylock(&leaf[i], &old))
			sched_yield();	/* a drop in progress: short */
		if (pte_state(old) == PTE_STORED) {
			c->err = items_push(c->r, first + i, pte_payload(old));
			if (!c->err)
				store_ref(c->st, pte_payload(old));
		}
		pte_unlock(&leaf[i], old);
	}
	return c->err;
}

static void close_pair(void)
{
	for (int i = 0; i < 2; i++) {
		if (fk.sock[i] >= 0)
			close(fk.sock[i]);
		fk.sock[i] = -1;
	}
}

int upg_fork_prepare(struct upg_runtime *rt)
{
	struct collect c = { NULL, rt ? rt->store : NULL, 0 };

	if (!rt)
		return -EINVAL;
	pthread_mutex_lock(&fork_lock);
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fk.sock) < 0) {
		c.err = -errno;
		fk.sock[0] = fk.sock[1] = -1;
	}
	/* From here until upg_fork_parent, faults wait. */
	pthread_rwlock_wrlock(&rt->regions_lock);
	for (size_t i = 0; c.st && !c.err && i < rt->nregions; i++) {
		c.r = rt->regions[i];
		pt_walk(&c.r->pt, 0, c.r->npages, collect_leaf, &c);
	}
	fk.partial = c.err != 0;
	if (c.err)
		log_error("fork: cannot prepare the child's pages (%s): pages "
			  "in the swap store will be lost in the child (SIGBUS "
			  "on access there)", strerror(-c.err));
	return c.err;
}

static bool stream_flush(struct stream *out)
{
	ssize_t n = out->len ? send(fk.sock[0], out->buf, out->len,
				    MSG_NOSIGNAL) : 0;

	/* EPIPE: fork failed, or the child died. */
	if (n != (ssize_t)out->len)
		return false;
	out->len = 0;
	return true;
}

/* Queue one record: the page packed in buf (len bytes), or status < 0. */
static bool send_one(struct stream *out, int status, const char *buf,
		     size_t len)
{
	struct fork_record head = { .status = status,
				    .len = status ? 0 : (uint32_t)len };

	if (out->len + RECORD_HEAD + head.len > STREAM_BYTES &&
	    !stream_flush(out))
		return false;
	memcpy(out->buf + out->len, &head, RECORD_HEAD);
	memcpy(out->buf + out->len + RECORD_HEAD, buf, head.len);
	out->len += RECORD_HEAD + head.len;
	return true;
}

/* Every remembered page to the child, packed, STORE_AHEAD_MAX at a time:
 * pages evicted together sit together in the swap file, and come with one
 * read (a page the read-ahead did not bring is read on its own). */
static void send_pages(struct upg_runtime *rt)
{
	struct stream out = { mem_alloc(STREAM_BYTES), 0, 0 };
	char *bufs = mem_alloc(STORE_AHEAD_MAX * PAGE_SIZE);
	bool sending = out.buf && bufs && fk.sock[0] >= 0 && !fk.partial;

	for (size_t i = 0; i < fk.n; i += STORE_AHEAD_MAX) {
		unsigned n = (unsigned)MIN(fk.n - i, STORE_AHEAD_MAX);
		uint64_t handles[STORE_AHEAD_MAX];
		size_t lens[STORE_AHEAD_MAX];
		int res[STORE_AHEAD_MAX];

		for (unsigned k = 0; k < n; k++)
			handles[k] = fk.items[i + k].handle;
		if (sending)
			store_get_ahead_packed(rt->store, handles, n, bufs,
					       lens, res);
		for (unsigned k = 0; k < n && sending; k++) {
			char *buf = bufs + (size_t)k * PAGE_SIZE;

			if (res[k] == -EAGAIN)
				res[k] = store_get_packed(rt->store, handles[k],
							  buf, &lens[k]);
			sending = send_one(&out, res[k] < 0 ? res[k] : 0, buf,
					   lens[k]);
		}
		for (unsigned k = 0; k < n; k++)
			store_free(rt->store, handles[k]);
	}
	if (sending)
		stream_flush(&out);
	mem_free(bufs, STORE_AHEAD_MAX * PAGE_SIZE);
	mem_free(out.buf, STREAM_BYTES);
}

void upg_fork_parent(struct upg_runtime *rt)
{
	if (!rt)
		return;
	if (fk.sock[1] >= 0)
		close(fk.sock[1]);
	fk.sock[1] = -1;
	pthread_rwlock_unlock(&rt->regions_lock);
	send_pages(rt);
	close_pair();
	items_free();
	pthread_mutex_unlock(&fork_lock);
}

/* ------------------------------------------------------------------ */
/* The child                                                           */
/* ------------------------------------------------------------------ */

static bool alive(const struct upg_region *r)
{
	return atomic_load(&((struct upg_region *)r)->magic) == REGION_ALIVE;
}

/* Register every inherited region with the new userfaultfd; forget the
 * others (MADV_DONTFORK: not mapped here).  The store is not there yet, so
 * forgetting frees none of the parent's handles. */
static int register_regions(struct upg_runtime *rt)
{
	struct upg_region *gone[64];
	size_t ngone;

	do {
		ngone = 0;
		for (size_t i = 0; i < rt->nregions; i++) {
			struct upg_region *r = rt->regions[i];

			if (uffd_register(rt->uffd, (void *)r->start, r->size,
					  &r->wp) == 0)
				continue;
			if (ngone < ARRAY_SIZE(gone))
				gone[ngone++] = r;
		}
		for (size_t i = 0; i < ngone; i++)
			upg_region_destroy(gone[i]);
	} while (ngone == ARRAY_SIZE(gone));
	return 0;
}

/* A page streamed from the parent: store it again, or if the new store has
 * no room, install it (over budget rather than lost).  `page`: room to
 * unpack it.  Not ok (rec and page may then be NULL): poisoned, never
 * left naming a handle of the parent's store. */
static void adopt(struct upg_runtime *rt, struct fork_item *it,
		  struct fork_record *rec, bool ok, char *page)
{
	struct upg_region *r = it->r;
	pte_t old = pte_make(PTE_STORED, 0, it->handle), val;
	void *addr = (void *)(r->start + (it->idx << PAGE_SHIFT));
	_Atomic pte_t *e;
	uint64_t h;

	if (!alive(r))
		return;
	e = pt_entry(&r->pt, it->idx, false);
	if (!e || atomic_load(e) != old)
		return;	/* dropped while the fork was under way */
	if (!ok || rec->status < 0) {
		val = pte_make(PTE_POISONED, 0, 0);
	} else if (store_put_packed(rt->store, rec->page, rec->len, &h) == 0) {
		val = pte_make(PTE_STORED, 0, h);
	} else if (store_unpack(rt->store, rec->page, rec->len, page) == 0 &&
		   uffd_copy(rt->uffd, addr, page, PAGE_SIZE, false) == 0) {
		val = pte_make(PTE_RESIDENT, PTE_DIRTY | PTE_REF, 0);
		region_add_resident(r, 1);
	} else {
		val = pte_make(PTE_POISONED, 0, 0);
	}
	atomic_store(e, val);
}

/* Prepare failed: the child's entries that are still STORED name handles
 * of the parent's store, which the child's new store would read as its
 * own (wrong data).  Every one becomes POISONED, before any page is
 * adopted (adopting gives new handles).  Counts into *(size_t *)arg. */
static int orphan_leaf(uint64_t first, _Atomic pte_t *leaf, void *arg)
{
	(void)first;
	for (unsigned i = 0; i < PT_FANOUT; i++)
		if (pte_state(atomic_load(&leaf[i])) == PTE_STORED) {
			atomic_store(&leaf[i], pte_make(PTE_POISONED, 0, 0));
			++*(size_t *)arg;
		}
	return 0;
}

/* Copy the next n bytes of the stream to dst, receiving more as needed;
 * false if the parent's end closed first. */
static bool stream_take(struct stream *in, void *dst, size_t n)
{
	while (n) {
		size_t k;

		if (in->pos == in->len) {
			ssize_t got = recv(fk.sock[1], in->buf, STREAM_BYTES, 0);

			if (got <= 0 && !(got < 0 && errno == EINTR))
				return false;
			in->len = got > 0 ? (size_t)got : 0;
			in->pos = 0;
			continue;
		}
		k = MIN(n, in->len - in->pos);
		memcpy(dst, in->buf + in->pos, k);
		in->pos += k;
		dst = (char *)dst + k;
		n -= k;
	}
	return true;
}

/* One record from the parent; false if the stream broke or made no
 * sense (the rest is lost). */
static bool receive_one(struct stream *in, struct fork_record *rec)
{
	if (!stream_take(in, rec, RECORD_HEAD))
		return false;
	if (rec->status < 0)
		return rec->len == 0;
	if (rec->len == 0 || rec->len > PAGE_SIZE)
		return false;
	return stream_take(in, rec->page, rec->len);
}

static void receive_pages(struct upg_runtime *rt)
{
	struct fork_record *rec = mem_alloc(sizeof(*rec));
	struct stream in = { mem_alloc(STREAM_BYTES), 0, 0 };
	char *page = mem_alloc(PAGE_SIZE);
	bool ok = rec && in.buf && page && fk.sock[1] >= 0;
	size_t lost = 0;

	if (fk.partial) {
		for (size_t i = 0; i < rt->nregions; i++)
			pt_walk(&rt->regions[i]->pt, 0, rt->regions[i]->npages,
				orphan_leaf, &lost);
		fk.n = 0;
	}
	for (size_t i = 0; i < fk.n; i++) {
		if (ok)
			ok = receive_one(&in, rec);
		lost += !ok;
		adopt(rt, &fk.items[i], rec, ok, page);
	}
	if (lost)
		log_error("fork: %zu stored page(s) did not reach the child: "
			  "they are poisoned (SIGBUS on access)", lost);
	mem_free(page, PAGE_SIZE);
	mem_free(in.buf, STREAM_BYTES);
	mem_free(rec, sizeof(*rec));
}

/*
 * Entries as the child must see them: one left BUSY by a thread that does
 * not exist here was being dropped (an allocator purge racing the fork):
 * finish the drop.  A page that was resident with a stored copy keeps only
 * the page: the copy was the parent's.
 */
static int repair_leaf(uint64_t first, _Atomic pte_t *leaf, void *arg)
{
	struct upg_region *r = arg;

	for (unsigned i = 0; i < PT_FANOUT; i++) {
		pte_t e = atomic_load(&leaf[i]);
		void *addr = (void *)(r->start + ((first + i) << PAGE_SHIFT));

		if (e & PTE_BUSY) {
			madvise(addr, PAGE_SIZE, MADV_DONTNEED);
			page_uncharge(r, e);
			e = PTE_EMPTY;
		} else if (pte_state(e) == PTE_RESIDENT && (e & PTE_CACHED)) {
			e = pte_make(PTE_RESIDENT, PTE_DIRTY | PTE_REF, 0);
		} else {
			continue;
		}
		atomic_store(&leaf[i], e);
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* Serving faults until a handler is up                                */
/* ------------------------------------------------------------------ */

/*
 * A new thread touches managed memory before it runs a line of ours:
 * glibc's start_thread reads the locale, which the program may have
 * allocated (in the managed heap) after upager started.  So while the new
 * handlers start, the forking thread serves faults itself, simply: every
 * page it resolves is installed with its contents.  A helper thread
 * touches the doorbell, which only a real handler resolves (we wake it
 * without resolving); when the helper returns, a handler is up.
 */
static int assist_one(struct upg_runtime *rt, uintptr_t addr, void *bounce)
{
	struct upg_region *r = region_lookup(rt, addr);
	_Atomic pte_t *e;
	const void *src = rt->zero_src;
	pte_t old;
	int rc;

	e = r ? pt_entry(&r->pt, (addr - r->start) >> PAGE_SHIFT, true) : NULL;
	if (!e || !pte_trylock(e, &old))
		return uffd_wake(rt->uffd, (void *)addr, PAGE_SIZE);
	if (pte_state(old) == PTE_STORED) {
		if (store_get(rt->store, pte_payload(old), bounce, NULL) < 0) {
			pte_unlock(e, old);
			return uffd_wake(rt->uffd, (void *)addr, PAGE_SIZE);
		}
		src = bounce;
	} else if (pte_state(old) != PTE_EMPTY) {
		pte_unlock(e, old);	/* a handler's business */
		return uffd_wake(rt->uffd, (void *)addr, PAGE_SIZE);
	}
	rc = uffd_copy(rt->uffd, (void *)addr, src, PAGE_SIZE, false);
	if (rc < 0 && rc != -EEXIST) {
		pte_unlock(e, old);
		return rc;
	}
	if (pte_state(old) == PTE_STORED)
		store_free(rt->store, pte_payload(old));
	region_add_resident(r, 1);
	pte_unlock(e, pte_make(PTE_RESIDENT, PTE_DIRTY | PTE_REF, 0));
	return 0;
}

static void *ring_doorbell(void *arg)
{
	struct upg_runtime *rt = arg;

	(void)*(volatile char *)rt->doorbell;
	/* A handler mapped it: unmap it, or handlers_stop's touch would not
	 * fault and the child's upg_runtime_destroy would wait forever. */
	madvise(rt->doorbell, PAGE_SIZE, MADV_DONTNEED);
	return NULL;
}

static void assist_until_up(struct upg_runtime *rt)
{
	void *bounce = mem_alloc(PAGE_SIZE);
	struct pollfd pfd = { .fd = rt->uffd, .events = POLLIN };
	struct uffd_msg msg;
	struct iovec iov = { &msg, sizeof(msg) };
	pthread_t helper;

	if (!bounce || thread_start(&helper, ring_doorbell, rt, "upager-bell"))
		goto out;
	while (pthread_tryjoin_np(helper, NULL) != 0) {
		/* RWF_NOWAIT: a handler may take the message after poll. */
		if (poll(&pfd, 1, 1) > 0 &&
		    preadv2(rt->uffd, &iov, 1, -1, RWF_NOWAIT) == sizeof(msg) &&
		    msg.event == UFFD_EVENT_PAGEFAULT) {
			uintptr_t a = page_align_down(msg.arg.pagefault.address);

			pthread_rwlock_rdlock(&rt->regions_lock);
			if (a == (uintptr_t)rt->doorbell)
				uffd_wake(rt->uffd, rt->doorbell, PAGE_SIZE);
			else
				assist_one(rt, a, bounce);
			pthread_rwlock_unlock(&rt->regions_lock);
		}
	}
out:
	mem_free(bounce, PAGE_SIZE);
}

static int rebuild(struct upg_runtime *rt)
{
	int err;

	close(rt->uffd);
	if (rt->pagemap_fd >= 0)
		close(rt->pagemap_fd);
	rt->pagemap_fd = pagemap_open();
	/* The parent's threads are not here: forget them and their locks. */
	pthread_rwlock_init(&rt->regions_lock, NULL);
	atomic_store(&rt->stopping, false);
	rt->handlers = NULL;
	rt->nhandlers = 0;
	rt->evictor = NULL;
	rt->store = NULL;
	munmap((void *)rt->zero_src, ZERO_MAX_PAGES * PAGE_SIZE);
	err = runtime_uffd_open(rt);
	if (!err)
		err = map_private_pages(rt);
	if (!err)
		err = register_regions(rt);
	if (!err)
		err = store_start(rt);
	return err;
}

/*
 * The child has no pager: no fault on its managed memory would be served,
 * and an unregistered range reads a missing page as zeros.  So nothing of
 * it stays accessible: an access is SIGSEGV, never wrong data.
 */
static void fail_closed(struct upg_runtime *rt, int err)
{
	for (size_t i = 0; i < rt->nregions; i++)
		mprotect((void *)rt->regions[i]->start, rt->regions[i]->size,
			 PROT_NONE);
	log_error("fork: the child has no pager (%s): its managed memory is "
		  "made inaccessible (SIGSEGV on access)", strerror(-err));
}

int upg_fork_child(struct upg_runtime *rt)
{
	int err;

	if (!rt)
		return -EINVAL;
	pthread_mutex_init(&fork_lock, NULL);
	if (fk.sock[0] >= 0)
		close(fk.sock[0]);
	fk.sock[0] = -1;
	err = rebuild(rt);
	if (!err) {
		receive_pages(rt);
		for (size_t i = 0; i < rt->nregions; i++)
			pt_walk(&rt->regions[i]->pt, 0, rt->regions[i]->npages,
				repair_leaf, rt->regions[i]);
		err = resolvers_start(rt);
	}
	if (!err)
		err = evictor_start(rt);
	/* UPAGER_RESOLVE=thread: new threads serve their own faults. */
	if (!err && rt->opts.resolve != UPG_RESOLVE_THREAD)
		assist_until_up(rt);
	if (!err)
		publish_fork_child(rt);
	close_pair();
	items_free();
	if (err)
		fail_closed(rt, err);
	return err;
}
