/* SPDX-License-Identifier: MIT */
/*
 * File regions (see file.h for the page states).
 *
 * Reads: a missing fault locks its entry and the EMPTY/FILE entries that
 * follow it (the read-ahead window), reads the window's bytes with
 * CHUNK-sized io_uring reads, INFLIGHT at a time, into the handler's
 * bounce buffer (huge pages: few segments per read), and installs each
 * chunk as it completes: the faulting thread is woken by its chunk while
 * the next is still in flight.  The file is read
 * through a second descriptor opened O_DIRECT when the file system allows
 * it, so the data does not sit in the page cache too (outside the budget).
 *
 * Writes: pages are installed write-protected (CACHED); the first write
 * is a WP fault that makes the page DIRTY (fault.c, wp_fault).  Dirty pages
 * of a shared region are written back by upg_region_sync() (from the
 * region, after re-protecting them) and by the evictor (from the staging
 * page it MOVEd them to); those of a private region go to the swap store.
 *
 * Threads: file_fault runs in handler threads, each with its own ring and
 * bounce buffer (struct file_io); file_evict in the evictor thread;
 * upg_region_sync and file_flush in application threads, which may touch
 * region memory but hold no entry lock while they do.
 */
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "evict.h"
#include "file.h"
#include "io.h"
#include "log.h"
#include "mem.h"
#include "uffd.h"
#include "util.h"

#define RA_INIT 4		/* first window of an in-order run (pages) */
#define RA_NORMAL 1024		/* largest window by default: 4 MiB */
#define RA_SEQ 2048		/* UPG_ADVICE_SEQUENTIAL: 8 MiB */
#define BLK_MAX ((size_t)64 << 10) /* block alignment honoured up to this */
#define CHUNK ((size_t)1 << 20)  /* one read of a window's batch */
#define BOUNCE ((size_t)RA_SEQ * PAGE_SIZE + 2 * BLK_MAX)
#define NCHUNKS ((BOUNCE + CHUNK - 1) / CHUNK)
#define RING_ENTRIES 64
#define INFLIGHT 2		/* chunks queued at once */
_Static_assert(NCHUNKS <= RING_ENTRIES && NCHUNKS <= 64, "ring too small");

#define FILE_FLAGS (UPG_FILE_SHARED | UPG_FILE_PRIVATE | UPG_FILE_READONLY)

struct file_map {
	int fd;			/* dup of the caller's: writes, fstat */
	int rfd;		/* reads: reopened O_DIRECT, or fd */
	uint64_t off;		/* file offset of the region's first byte */
	unsigned flags;		/* UPG_FILE_* */
	size_t blk;		/* I/O alignment: a power of two, 4K..BLK_MAX */
	_Atomic bool warned;	/* a write-back error was logged */
};

/* One per handler thread: only that thread uses it. */
struct file_io {
	struct io_uring ring;
	bool ring_ok;		/* else (no io_uring) pread */
	bool fixed;		/* buf is registered with the ring */
	char *buf;		/* BOUNCE bytes of upager's own memory */
	pte_t old[RA_SEQ];	/* values of the window's locked entries */
};

/* A window being read: pages [idx, idx + n) are locked. */
struct win {
	struct upg_region *r;
	struct file_io *fio;
	uint64_t idx, n;
	uint64_t io_off;	/* file offset of fio->buf[0] */
	size_t io_len;		/* bytes read, a multiple of the block */
	size_t skip;		/* bytes of buf before page idx */
	bool write;		/* the fault at idx is a write */
	bool random;		/* a one-page window: no read-ahead */
	uint64_t installed;
	bool idx_installed;
};

static void *page_addr(const struct upg_region *r, uint64_t idx)
{
	return (void *)(r->start + (idx << PAGE_SHIFT));
}

static bool shared_writable(const struct file_map *fm)
{
	return (fm->flags & UPG_FILE_SHARED) &&
	       !(fm->flags & UPG_FILE_READONLY);
}

/* ------------------------------------------------------------------ */
/* Reading                                                             */
/* ------------------------------------------------------------------ */

static struct file_io *fio_create(void)
{
	struct file_io *fio = mem_alloc(sizeof(*fio));
	struct iovec iov;

	if (!fio)
		return NULL;
	fio->buf = mem_alloc_io(BOUNCE);
	if (!fio->buf) {
		mem_free(fio, sizeof(*fio));
		return NULL;
	}
	/* COOP_TASKRUN: this thread submits and waits, nobody else. */
	if (io_uring_queue_init(RING_ENTRIES, &fio->ring,
				IORING_SETUP_COOP_TASKRUN) == 0 ||
	    io_uring_queue_init(RING_ENTRIES, &fio->ring, 0) == 0) {
		fio->ring_ok = true;
		iov = (struct iovec){ fio->buf, BOUNCE };
		fio->fixed = io_uring_register_buffers(&fio->ring, &iov, 1) == 0;
	} else {
		log_info("no io_uring for file reads: using pread");
	}
	return fio;
}

void file_io_destroy(struct file_io *fio)
{
	if (!fio)
		return;
	if (fio->ring_ok)
		io_uring_queue_exit(&fio->ring);
	mem_free_io(fio->buf, BOUNCE);
	mem_free(fio, sizeof(*fio));
}

/*
 * The read-ahead window for a fault at idx, in pages, kernel-style: one
 * page for a random fault; a run of in-order faults starts at RA_INIT and
 * grows fourfold while small, then twofold, up to RA_NORMAL.  Racy between
 * handlers by design: it is a hint.
 */
static uint32_t ra_window(struct upg_region *r, uint64_t idx)
{
	struct seq_state *s = &r->seq_read;
	uint32_t w = atomic_load_explicit(&s->window, memory_order_relaxed);
	bool seq = idx == atomic_load_explicit(&s->next, memory_order_relaxed);

	switch (atomic_load_explicit(&r->advice, memory_order_relaxed)) {
	case UPG_ADVICE_RANDOM:
		w = 1;
		break;
	case UPG_ADVICE_SEQUENTIAL:
		w = RA_SEQ;
		break;
	default:
		if (!seq)
			w = 1;
		else if (w < RA_INIT)
			w = RA_INIT;
		else
			w = MIN(w < RA_NORMAL / 16 ? w * 4 : w * 2, RA_NORMAL);
	}
	atomic_store_explicit(&s->window, w, memory_order_relaxed);
	/* A window must fit between the evictor's low watermark and the
	 * limit (budget/8), or every fault would wait for room. */
	if (r->rt->opts.mem_limit)
		w = (uint32_t)MIN((uint64_t)w,
				  MAX(r->rt->opts.mem_limit / 16 >> PAGE_SHIFT,
				      1));
	return w;
}

static void unlock_page(struct upg_region *r, uint64_t idx, pte_t val)
{
	pte_unlock(pt_entry(&r->pt, idx, false), val);
}

/* Lock the EMPTY/FILE entries that follow idx without a gap, up to w
 * pages with idx (locked by the caller).  Returns how many are locked. */
static uint64_t lock_window(struct file_io *fio, struct upg_region *r,
			    uint64_t idx, pte_t old, uint32_t w)
{
	uint64_t n = 1, hi = MIN(idx + w, r->npages);

	fio->old[0] = old;
	for (; idx + n < hi; n++) {
		_Atomic pte_t *e = pt_entry(&r->pt, idx + n, true);
		pte_t v;

		if (!e || !pte_trylock(e, &v))
			break;
		if (!file_serves(r, v)) {
			pte_unlock(e, v);
			break;
		}
		fio->old[n] = v;
	}
	return n;
}

static void release_from(struct win *w, uint64_t from)
{
	for (uint64_t p = from; p < w->idx + w->n; p++)
		unlock_page(w->r, p, w->fio->old[p - w->idx]);
	w->n = from - w->idx;
}

static size_t buf_off(const struct win *w, uint64_t p)
{
	return w->skip + ((p - w->idx) << PAGE_SHIFT);
}

/* Install pages [p, p + cnt) from the bounce buffer and unlock them. */
static void install(struct win *w, uint64_t p, uint64_t cnt, bool clean)
{
	struct upg_region *r = w->r;
	int rc = uffd_copy(r->rt->uffd, page_addr(r, p),
			   w->fio->buf + buf_off(w, p), cnt << PAGE_SHIFT,
			   clean);
	bool ok = rc == 0 || rc == -EEXIST;

	for (uint64_t q = p; q < p + cnt; q++) {
		uint64_t flags = (clean ? PTE_CACHED : PTE_DIRTY) |
				 (q == w->idx ? PTE_REF : 0) |
				 (clean && w->random ? PTE_RANDOM : 0);

		unlock_page(r, q, ok ? pte_make(PTE_RESIDENT, flags, 0)
				     : w->fio->old[q - w->idx]);
	}
	if (!ok) {
		log_debug("file page at %p not installed: %s",
			  page_addr(r, p), strerror(-rc));
		return;
	}
	w->installed += cnt;
	w->idx_installed |= w->idx >= p && w->idx < p + cnt;
}

/* A page that could not be read: SIGBUS to the faulting thread (past the
 * end of the file, or an I/O error); a read-ahead page is left alone. */
static void fail(struct win *w, uint64_t p, int err)
{
	struct upg_region *r = w->r;

	unlock_page(r, p, w->fio->old[p - w->idx]);
	if (p != w->idx)
		return;
	if (err == -ENXIO) {
		COUNT(r, file_past_eof, 1);
	} else {
		log_error("reading the file page at %p failed: %s; the "
			  "accessing thread gets SIGBUS", page_addr(r, p),
			  strerror(-err));
		COUNT(r, poisoned, 1);
	}
	uffd_poison(r->rt->uffd, page_addr(r, p), PAGE_SIZE);
}

/*
 * Chunk k of the window completed with res (bytes or -errno): install its
 * pages, the faulting one alone and writable if it is written, the others
 * write-protected in runs.  Bytes past a short read are the end of the
 * file: the page holding it is zero-padded, the pages after it fail.
 */
static void settle(struct win *w, unsigned k, int res)
{
	size_t c0 = (size_t)k * CHUNK, c1 = MIN(c0 + CHUNK, w->io_len);
	size_t valid = res < 0 ? c0 : c0 + (size_t)res;
	bool clean = w->r->wp;
	uint64_t p = w->idx + (c0 > w->skip ? (c0 - w->skip) >> PAGE_SHIFT : 0);
	uint64_t run = 0;

	for (; p < w->idx + w->n && buf_off(w, p) < c1; p++) {
		size_t pb = buf_off(w, p);
		bool alone = w->write && p == w->idx;

		if (run && (pb >= valid || alone)) {
			install(w, p - run, run, clean);
			run = 0;
		}
		if (pb >= valid) {
			fail(w, p, res < 0 ? res : -ENXIO);
			continue;
		}
		if (pb + PAGE_SIZE > valid)
			memset(w->fio->buf + valid, 0, pb + PAGE_SIZE - valid);
		if (alone)
			install(w, p, 1, false);
		else
			run++;
	}
	if (run)
		install(w, p - run, run, clean);
}

static int pread_chunk(const struct win *w, unsigned k)
{
	size_t c0 = (size_t)k * CHUNK;
	ssize_t n;

	do
		n = pread(w->r->file->rfd, w->fio->buf + c0,
			  MIN(CHUNK, w->io_len - c0), (off_t)(w->io_off + c0));
	while (n < 0 && errno == EINTR);
	return n < 0 ? -errno : (int)n;
}

static void prep_chunk(struct win *w, unsigned k)
{
	struct file_io *fio = w->fio;
	struct io_uring_sqe *sqe = io_uring_get_sqe(&fio->ring);
	size_t c0 = (size_t)k * CHUNK;
	unsigned len = (unsigned)MIN(CHUNK, w->io_len - c0);

	if (fio->fixed)
		io_uring_prep_read_fixed(sqe, w->r->file->rfd, fio->buf + c0,
					 len, w->io_off + c0, 0);
	else
		io_uring_prep_read(sqe, w->r->file->rfd, fio->buf + c0, len,
				   w->io_off + c0);
	io_uring_sqe_set_data64(sqe, k);
}

/* Queue chunks from *next until INFLIGHT are in flight. */
static void top_up(struct win *w, unsigned nchunks, unsigned *next,
		   unsigned *inflight)
{
	struct file_io *fio = w->fio;
	unsigned queued = 0;
	int sub;

	while (fio->ring_ok && *next + queued < nchunks &&
	       *inflight + queued < INFLIGHT)
		prep_chunk(w, *next + queued++);
	if (!queued)
		return;
	sub = io_uring_submit(&fio->ring);
	if (sub != (int)queued) {
		/* Not expected.  What was queued may still land in the
		 * buffer, so this ring is not used again; the chunks not
		 * submitted are read with pread. */
		log_warn("io_uring submit of a file read gave %d", sub);
		fio->ring_ok = false;
		queued = sub > 0 ? (unsigned)sub : 0;
	}
	*next += queued;
	*inflight += queued;
}

/*
 * Read the window's chunks, INFLIGHT at a time, and settle each as it
 * completes.  The next chunk is queued before one is installed, so the
 * disk works while pages are copied in: measured over a 128 MiB file, 1 MiB
 * chunks two at a time read 32% faster than 256 KiB chunks all at once
 * (which the block layer merges into one request, so nothing is installed
 * until the whole window is read).  Returns a bitmap of the chunks settled.
 */
static uint64_t read_ring(struct win *w, unsigned nchunks)
{
	struct file_io *fio = w->fio;
	unsigned next = 0, inflight = 0;
	uint64_t done = 0;

	for (top_up(w, nchunks, &next, &inflight); inflight;) {
		struct io_uring_cqe *cqe;
		unsigned k;
		int err, res;

		do
			err = io_uring_wait_cqe(&fio->ring, &cqe);
		while (err == -EINTR);
		if (err < 0) {
			fio->ring_ok = false;
			break;
		}
		k = (unsigned)io_uring_cqe_get_data64(cqe);
		res = cqe->res;
		io_uring_cqe_seen(&fio->ring, cqe);
		inflight--;
		top_up(w, nchunks, &next, &inflight);
		settle(w, k, res);
		done |= UINT64_C(1) << k;
	}
	return done;
}

static void read_window(struct win *w)
{
	unsigned nchunks = (unsigned)((w->io_len + CHUNK - 1) / CHUNK);
	uint64_t done = w->fio->ring_ok ? read_ring(w, nchunks) : 0;

	for (unsigned k = 0; k < nchunks; k++)
		if (!(done & (UINT64_C(1) << k)))
			settle(w, k, pread_chunk(w, k));
}

/* Lay the I/O over the locked pages, aligned to the file's block. */
static void window_span(struct win *w)
{
	const struct file_map *fm = w->r->file;
	uint64_t first = fm->off + (w->idx << PAGE_SHIFT);
	uint64_t end = first + (w->n << PAGE_SHIFT);

	w->io_off = first & ~(uint64_t)(fm->blk - 1);
	w->io_len = (size_t)(((end + fm->blk - 1) & ~(uint64_t)(fm->blk - 1)) -
			     w->io_off);
	w->skip = (size_t)(first - w->io_off);
}

/* Charge the budget for the window, shrinking it to the faulting page if
 * need be.  False: the budget refuses even that (strict policy). */
static bool charge(struct win *w)
{
	struct upg_runtime *rt = w->r->rt;

	if (budget_charge(rt, w->n))
		return true;
	release_from(w, w->idx + 1);
	return budget_charge(rt, 1);
}

int file_fault(struct file_io **fiop, struct upg_region *r, uint64_t idx,
	       _Atomic pte_t *e, pte_t old, bool write)
{
	struct win w = { .r = r, .idx = idx, .write = write };
	void *addr = page_addr(r, idx);
	uint32_t ra;

	if (!*fiop)
		*fiop = fio_create();
	if (!*fiop) {
		/* Let the thread fault again: maybe memory comes back. */
		pte_unlock(e, old);
		return uffd_wake(r->rt->uffd, addr, PAGE_SIZE);
	}
	w.fio = *fiop;
	if (pte_state(old) == PTE_FILE)
		ghost_is_refault(r->rt, (uintptr_t)addr);
	ra = ra_window(r, idx);
	w.random = ra == 1;
	w.n = lock_window(w.fio, r, idx, old, ra);
	atomic_store_explicit(&r->seq_read.next, idx + w.n,
			      memory_order_relaxed);
	if (!charge(&w)) {
		log_error("no memory for the file page at %p: budget exhausted "
			  "and swap store full (UPAGER_FULL_POLICY=sigbus)", addr);
		pte_unlock(e, old);
		COUNT(r, poisoned, 1);
		return uffd_poison(r->rt->uffd, addr, PAGE_SIZE);
	}
	window_span(&w);
	read_window(&w);
	region_add_resident(r, (int64_t)w.installed);
	COUNT(r, pages_filled, w.installed);
	COUNT(r, file_pages_read, w.installed);
	COUNT(r, file_readahead, w.installed - w.idx_installed);
	return 0;
}

/* ------------------------------------------------------------------ */
/* Writing back                                                        */
/* ------------------------------------------------------------------ */

/* Write len bytes from src to the file at region page idx, cut at the
 * file's end: a region never extends its file, and bytes past a
 * truncation are discarded, as the kernel discards them. */
static int write_clipped(struct file_map *fm, uint64_t idx, const char *src,
			 size_t len)
{
	uint64_t off = fm->off + (idx << PAGE_SHIFT);
	struct stat st;

	if (fstat(fm->fd, &st) < 0)
		return -errno;
	if (off >= (uint64_t)st.st_size)
		return 0;
	len = (size_t)MIN((uint64_t)len, (uint64_t)st.st_size - off);
	/* pwrite only reads src. */
	return pio_full(fm->fd, true, (void *)src, off, len);
}

static void warn_write(struct upg_region *r, int err)
{
	if (!atomic_exchange(&r->file->warned, true))
		log_error("writing back a page of the file region at %p "
			  "failed: %s; the page stays dirty",
			  (void *)r->start, strerror(-err));
}

bool file_copy_drop(void *owner, uint64_t handle)
{
	_Atomic pte_t *e = owner;
	pte_t old = atomic_load_explicit(e, memory_order_acquire);

	do {
		/* BUSY: being faulted in or torn down; it stays. */
		if (pte_state(old) != PTE_STORED || !(old & PTE_FILECOPY) ||
		    (old & PTE_BUSY) || pte_payload(old) != handle)
			return false;
	} while (!pte_cas(e, &old, pte_make(PTE_FILE, 0, 0)));
	return true;
}

bool file_copy_fresh(const struct upg_region *r, uint64_t idx)
{
	uint64_t end = r->file->off + ((idx + 1) << PAGE_SHIFT);
	struct stat st;

	return fstat(r->file->fd, &st) == 0 && end <= (uint64_t)st.st_size;
}

enum file_evict_result file_evict(struct upg_region *r, uint64_t idx,
				  pte_t old, void *staging, pte_t *val)
{
	int uffd = r->rt->uffd;
	void *addr = page_addr(r, idx);
	int rc;

	if ((old & PTE_CACHED) && !(old & PTE_DIRTY) && !pte_payload(old)) {
		/* Clean: write-protected since it was read, and a write
		 * would have cleared CACHED under BUSY first. */
		*val = pte_make(PTE_FILE, 0, 0);
		return FILE_EVICT_CLEAN;
	}
	if (!shared_writable(r->file))
		return FILE_EVICT_STORE;
	/* From here on any access faults and waits for the entry. */
	rc = uffd_move(uffd, staging, addr, PAGE_SIZE, NULL);
	if (rc == -ENOENT) {
		/* The application dropped the page itself. */
		*val = pte_make(PTE_FILE, 0, 0);
		return FILE_EVICT_GONE;
	}
	if (rc < 0) {
		/* EBUSY: pinned (O_DIRECT, io_uring buffer): never evict. */
		*val = rc == -EBUSY ? old | PTE_PINNED : old;
		return FILE_EVICT_STAYED;
	}
	rc = write_clipped(r->file, idx, staging, PAGE_SIZE);
	if (rc < 0) {
		/* It goes back, writable after MOVE: dirty, not CACHED. */
		uffd_move(uffd, addr, staging, PAGE_SIZE, NULL);
		warn_write(r, rc);
		*val = (old & ~PTE_CACHED) | PTE_DIRTY;
		return FILE_EVICT_STAYED;
	}
	madvise(staging, PAGE_SIZE, MADV_DONTNEED);
	COUNT(r, evictions_dirty, 1);
	COUNT(r, file_pages_written, 1);
	*val = pte_make(PTE_FILE, 0, 0);
	return FILE_EVICT_GONE;
}

/* Written since read or last written back (or being written back). */
static bool dirty(pte_t e)
{
	return pte_state(e) == PTE_RESIDENT &&
	       (!(e & PTE_CACHED) || (e & PTE_DIRTY));
}

/* Application thread: wait out the handler or evictor that holds it. */
static pte_t lock_wait(_Atomic pte_t *e)
{
	pte_t old;

	while (!pte_trylock(e, &old))
		sched_yield();
	return old;
}

/*
 * The write-back of [idx, idx + n) is over: a page still CACHED|DIRTY was
 * not written meanwhile and becomes clean; on error every page stays
 * dirty (and no longer CACHED: it is write-protected, which wp_fault
 * lifts on the next write).
 */
static void writeback_done(struct upg_region *r, uint64_t idx, uint64_t n,
			   bool ok)
{
	for (uint64_t i = idx; i < idx + n; i++) {
		_Atomic pte_t *e = pt_entry(&r->pt, i, false);
		pte_t old = lock_wait(e);
		bool wb = pte_state(old) == PTE_RESIDENT &&
			  (old & PTE_CACHED) && (old & PTE_DIRTY);

		if (wb)
			old = ok ? old & ~PTE_DIRTY : old & ~PTE_CACHED;
		pte_unlock(e, old);
	}
}

/*
 * Write back the dirty run at leaf[0..] (page idx on), at most `max`
 * entries: lock it, write-protect it, mark it CACHED|DIRTY, unlock, then
 * write it from the region.  Returns the run's length (0: the first page
 * is not dirty any more); *err gets the first error.
 */
static uint64_t writeback_run(struct upg_region *r, uint64_t idx,
			      _Atomic pte_t *leaf, uint64_t max, int *err)
{
	pte_t vals[PT_FANOUT];
	uint64_t n = 0;
	int rc;

	for (; n < max; n++) {
		vals[n] = lock_wait(&leaf[n]);
		if (!dirty(vals[n])) {
			pte_unlock(&leaf[n], vals[n]);
			break;
		}
	}
	if (n == 0)
		return 0;
	rc = uffd_writeprotect(r->rt->uffd, page_addr(r, idx),
			       n << PAGE_SHIFT, true, false);
	for (uint64_t i = 0; i < n; i++)
		pte_unlock(&leaf[i], rc ? vals[i]
					: vals[i] | PTE_CACHED | PTE_DIRTY);
	if (!rc)
		rc = write_clipped(r->file, idx, page_addr(r, idx),
				   n << PAGE_SHIFT);
	writeback_done(r, idx, n, rc == 0);
	if (rc) {
		warn_write(r, rc);
		*err = *err ?: rc;
	} else {
		COUNT(r, file_pages_written, n);
	}
	return n;
}

struct flush {
	struct upg_region *r;
	int err;
};

static int flush_leaf(uint64_t first, _Atomic pte_t *leaf, void *arg)
{
	struct flush *f = arg;
	uint64_t end = MIN((uint64_t)PT_FANOUT, f->r->npages - first);

	for (uint64_t i = 0; i < end;) {
		pte_t e = atomic_load_explicit(&leaf[i], memory_order_relaxed);

		/* A BUSY entry may be a write fault whose writer already
		 * runs (wp_fault lifts protection before it unlocks): look
		 * at it once its owner is done. */
		if (!dirty(e) && !(e & PTE_BUSY)) {
			i++;
			continue;
		}
		i += MAX(writeback_run(f->r, first + i, &leaf[i], end - i,
				       &f->err),
			 1);
	}
	return 0;
}

static int flush(struct upg_region *r)
{
	struct flush f = { r, 0 };

	if (!shared_writable(r->file))
		return 0;
	pt_walk(&r->pt, 0, r->npages, flush_leaf, &f);
	return f.err;
}

void file_flush(struct upg_region *r)
{
	flush(r);
}

static bool alive(const struct upg_region *r)
{
	return r && atomic_load(&((struct upg_region *)r)->magic) ==
			    REGION_ALIVE;
}

int upg_region_sync(struct upg_region *r)
{
	int err;

	if (!alive(r) || !r->file)
		return -EINVAL;
	if (!shared_writable(r->file))
		return 0;
	err = flush(r);
	if (fdatasync(r->file->fd) < 0 && !err)
		err = -errno;
	return err;
}

int upg_region_advise(struct upg_region *r, int advice)
{
	if (!alive(r) || advice < UPG_ADVICE_NORMAL ||
	    advice > UPG_ADVICE_SEQUENTIAL)
		return -EINVAL;
	atomic_store(&r->advice, advice);
	return 0;
}

/* ------------------------------------------------------------------ */
/* Creating and releasing                                              */
/* ------------------------------------------------------------------ */

/* A regular file open for reading, and for writing if `write`. */
static int check_fd(int fd, bool write, struct stat *st)
{
	int fl;

	if (fstat(fd, st) < 0 || !S_ISREG(st->st_mode))
		return -EINVAL;
	fl = fcntl(fd, F_GETFL);
	if (fl < 0)
		return -EINVAL;
	if ((fl & O_PATH) || (fl & O_ACCMODE) == O_WRONLY)
		return -EACCES;
	/* pwrite on an O_APPEND descriptor appends, whatever the offset. */
	if (write && ((fl & O_ACCMODE) != O_RDWR || (fl & O_APPEND)))
		return -EACCES;
	return 0;
}

/* The read descriptor: the same file reopened O_DIRECT, so the data is
 * not cached twice; the shared descriptor where that is refused. */
static int open_reader(int fd)
{
	char path[64];
	int rfd;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	rfd = open(path, O_RDONLY | O_DIRECT | O_CLOEXEC);
	return rfd < 0 ? fd : rfd;
}

static size_t io_block(const struct stat *st)
{
	size_t b = PAGE_SIZE;

	while (b < (size_t)st->st_blksize && b < BLK_MAX)
		b <<= 1;
	return b;
}

static void map_free(struct file_map *fm)
{
	if (fm->rfd >= 0 && fm->rfd != fm->fd)
		close(fm->rfd);
	if (fm->fd >= 0)
		close(fm->fd);
	mem_free(fm, sizeof(*fm));
}

static bool flags_ok(unsigned flags)
{
	const unsigned both = UPG_FILE_SHARED | UPG_FILE_PRIVATE;

	return flags && !(flags & ~FILE_FLAGS) && (flags & both) != both;
}

int upg_file_create(struct upg_runtime *rt, int fd, off_t offset, size_t size,
		    unsigned flags, struct upg_region **out)
{
	struct file_map *fm;
	struct stat st;
	size_t len;
	int err;

	if (!rt || !out || fd < 0 || offset < 0 ||
	    ((uint64_t)offset & (PAGE_SIZE - 1)) || size == 0 ||
	    size > UPG_REGION_MAX || !flags_ok(flags))
		return -EINVAL;
	len = (size + PAGE_SIZE - 1) & PAGE_MASK;
	if ((uint64_t)offset > (uint64_t)INT64_MAX - len)
		return -EINVAL;
	err = check_fd(fd, (flags & UPG_FILE_SHARED) &&
				   !(flags & UPG_FILE_READONLY), &st);
	if (err)
		return err;
	fm = mem_alloc(sizeof(*fm));
	if (!fm)
		return -ENOMEM;
	fm->off = (uint64_t)offset;
	fm->flags = flags;
	fm->blk = io_block(&st);
	fm->rfd = -1;
	fm->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	if (fm->fd < 0) {
		err = -errno;
		goto fail;
	}
	fm->rfd = open_reader(fm->fd);
	err = region_create(rt, len,
			    flags & UPG_FILE_READONLY ? PROT_READ
						      : PROT_READ | PROT_WRITE,
			    0, fm, out);
	if (err)
		goto fail;
	return 0;
fail:
	map_free(fm);
	return err;
}

void file_release(struct upg_region *r)
{
	map_free(r->file);
	r->file = NULL;
}
