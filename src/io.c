/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <liburing.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "inject.h"
#include "io.h"
#include "log.h"
#include "mem.h"
#include "util.h"

/* A segment goes out as a batch of WRITE_FIXEDs of at most this size,
 * submitted with one io_uring_enter. */
#define IO_CHUNK ((size_t)64 << 10)
#define IO_QD 8

struct io_reader {
	pthread_mutex_t lock;	/* held from submission to completion */
	struct io_uring ring;
	bool ready;
	char *buf;		/* registered buffer 0 */
	size_t buf_size;
	struct io *io;
	/* What buf holds (io_reader_set_tag): written with lock held, read
	 * without it by io_reader_find, which checks again holding it. */
	_Atomic uint64_t tag;
};

struct io {
	struct io_reader w;	/* the writer: buffers IO_WBUF_SEG, _GC */
	struct io_reader r[IO_NREADERS];
	char *arena;		/* every registered buffer, one mapping */
	size_t arena_size;
	size_t wbuf_size;
	int fd;
	bool sync;		/* no io_uring: pread/pwrite (io_create) */
	_Atomic int werr;	/* the writer's error last logged, or 0 */
	_Atomic unsigned next;
	_Atomic int fail_read, fail_write;
};

static int ring_init(struct io_reader *r, int fd, struct iovec *iov,
		     unsigned niov, unsigned entries)
{
	int err = inject_check(INJECT_RING_SETUP, 0);

	if (err)
		return err;
	/* COOP_TASKRUN: the thread that submits is the one that waits, so
	 * there is no need to interrupt it for completions.  No SQPOLL (a
	 * core spinning), no SINGLE_ISSUER (several threads take turns). */
	err = io_uring_queue_init(entries, &r->ring, IORING_SETUP_COOP_TASKRUN);
	if (err == -EINVAL)
		err = io_uring_queue_init(entries, &r->ring, 0);
	if (err < 0)
		return err;
	r->ready = true;
	err = io_uring_register_files(&r->ring, &fd, 1);
	if (err < 0)
		return err;
	return io_uring_register_buffers(&r->ring, iov, niov);
}

static void ring_drop(struct io_reader *r)
{
	if (r->ready)
		io_uring_queue_exit(&r->ring);
	r->ready = false;
}

/*
 * No io_uring (kernel.io_uring_disabled, a seccomp filter such as a
 * container's default one, a kernel without it, registered buffers over
 * RLIMIT_MEMLOCK): the same transfers with pread/pwrite, synchronous, on
 * the same buffers and locks.  Slower under many concurrent page-ins,
 * never wrong; said once at warning level.
 */
static void fall_back(struct io *io, int err)
{
	ring_drop(&io->w);
	for (unsigned i = 0; i < IO_NREADERS; i++)
		ring_drop(&io->r[i]);
	io->sync = true;
	log_warn("no io_uring for the swap file (%s%s): it is read and "
		 "written with pread/pwrite instead", strerror(-err),
		 err == -EPERM ? ": kernel.io_uring_disabled, or a seccomp "
				 "filter" : "");
}

int io_create(int fd, size_t wbuf_size, struct io **out)
{
	struct iovec iov[IO_NWBUF];
	struct io *io;
	int err;

	io = mem_alloc(sizeof(*io));
	if (!io)
		return -ENOMEM;
	io->wbuf_size = wbuf_size;
	io->fd = fd;
	io->arena_size = IO_NWBUF * wbuf_size + IO_NREADERS * IO_READ_MAX;
	io->arena = mem_alloc(io->arena_size);
	if (!io->arena) {
		err = -ENOMEM;
		goto fail;
	}
	for (unsigned i = 0; i < IO_NWBUF; i++)
		iov[i] = (struct iovec){ io->arena + i * wbuf_size, wbuf_size };
	io->w.buf = io->arena;
	io->w.buf_size = wbuf_size;
	io->w.io = io;
	pthread_mutex_init(&io->w.lock, NULL);
	for (unsigned i = 0; i < IO_NREADERS; i++) {
		struct io_reader *r = &io->r[i];

		r->buf = io->arena + IO_NWBUF * wbuf_size + i * IO_READ_MAX;
		r->buf_size = IO_READ_MAX;
		r->io = io;
		atomic_store(&r->tag, IO_NO_TAG);
		pthread_mutex_init(&r->lock, NULL);
	}
	err = ring_init(&io->w, fd, iov, IO_NWBUF, IO_QD);
	for (unsigned i = 0; i < IO_NREADERS && !err; i++) {
		struct io_reader *r = &io->r[i];

		iov[0] = (struct iovec){ r->buf, IO_READ_MAX };
		err = ring_init(r, fd, iov, 1, IO_READ_MAX / IO_CHUNK);
	}
	if (err)
		fall_back(io, err);
	*out = io;
	return 0;
fail:
	io_destroy(io);
	return err;
}

static void ring_exit(struct io_reader *r)
{
	ring_drop(r);
	if (r->io)
		pthread_mutex_destroy(&r->lock);
}

void io_destroy(struct io *io)
{
	if (!io)
		return;
	ring_exit(&io->w);
	for (unsigned i = 0; i < IO_NREADERS; i++)
		ring_exit(&io->r[i]);
	mem_free(io->arena, io->arena_size);
	mem_free(io, sizeof(*io));
}

void *io_wbuf(struct io *io, enum io_wbuf which)
{
	return io->arena + (size_t)which * io->wbuf_size;
}

/* Submit up to IO_QD chunks from `pos` and wait for them all.  Returns the
 * bytes done in order from `pos` (a short chunk ends the count), or -errno. */
static long xfer_batch(struct io_reader *r, bool write, unsigned bi,
		       char *buf, uint64_t off, size_t len)
{
	long got[IO_QD];
	unsigned n = 0;
	long done = 0;
	int err = 0, sub;

	for (size_t pos = 0; pos < len && n < IO_QD; pos += IO_CHUNK, n++) {
		struct io_uring_sqe *sqe = io_uring_get_sqe(&r->ring);
		unsigned c = (unsigned)MIN(IO_CHUNK, len - pos);

		if (write)
			io_uring_prep_write_fixed(sqe, 0, buf + pos, c,
						  off + pos, (int)bi);
		else
			io_uring_prep_read_fixed(sqe, 0, buf + pos, c,
						 off + pos, (int)bi);
		sqe->flags |= IOSQE_FIXED_FILE;
		io_uring_sqe_set_data64(sqe, n);
	}
	sub = io_uring_submit_and_wait(&r->ring, n);
	if (sub < 0)
		return sub;
	for (int i = 0; i < sub && err >= 0; i++) {
		struct io_uring_cqe *cqe;

		do
			err = io_uring_wait_cqe(&r->ring, &cqe);
		while (err == -EINTR);
		if (err < 0)
			break;
		got[cqe->user_data] = cqe->res;
		io_uring_cqe_seen(&r->ring, cqe);
	}
	if (err < 0)
		return err;
	if ((unsigned)sub < n)	/* not expected: the ring has room for all */
		return -EIO;
	for (unsigned i = 0; i < n; i++) {
		long want = (long)MIN(IO_CHUNK, len - i * IO_CHUNK);

		if (got[i] < 0)
			return got[i];
		done += got[i];
		if (got[i] < want)
			break;
	}
	return done;
}

int pio_full(int fd, bool write, void *p, uint64_t off, size_t len)
{
	char *buf = p;

	while (len > 0) {
		ssize_t n = write ? pwrite(fd, buf, len, (off_t)off)
				  : pread(fd, buf, len, (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		buf += n;
		off += (uint64_t)n;
		len -= (size_t)n;
	}
	return 0;
}

/* Move `len` bytes, resubmitting after short transfers. */
static int xfer(struct io_reader *r, bool write, unsigned bi, char *buf,
		uint64_t off, size_t len)
{
	/* An injected failure (tests): the transfer is not even made, so
	 * nothing of it reaches the file or the buffer. */
	if (atomic_exchange(write ? &r->io->fail_write : &r->io->fail_read,
			    0))
		return -EIO;
	if (r->io->sync)	/* the fallback (fall_back) */
		return pio_full(r->io->fd, write, buf, off, len);
	while (len > 0) {
		long n = xfer_batch(r, write, bi, buf, off, len);

		if (n < 0)
			return (int)n;
		if (n == 0)	/* end of file, or a device that gives up */
			return -EIO;
		buf += n;
		off += (uint64_t)n;
		len -= (size_t)n;
	}
	return 0;
}

static int writer_xfer(struct io *io, bool write, enum io_wbuf which,
		       uint64_t off, size_t len)
{
	int err;

	pthread_mutex_lock(&io->w.lock);
	err = xfer(&io->w, write, which, io_wbuf(io, which), off, len);
	pthread_mutex_unlock(&io->w.lock);
	/* The store retries a failed write at each write-out (a full file
	 * system fails them all): said once, until one succeeds. */
	if (err && atomic_exchange(&io->werr, err) != err)
		log_error("swap file %s of %zu bytes at %llu failed: %s; "
			  "stored pages stay in the RAM tier (said once "
			  "until a write succeeds)", write ? "write" : "read",
			  len, (unsigned long long)off, strerror(-err));
	else if (!err && write && atomic_exchange(&io->werr, 0))
		log_warn("swap file writes succeed again");
	return err;
}

int io_write(struct io *io, enum io_wbuf which, uint64_t off, size_t len)
{
	return writer_xfer(io, true, which, off, len);
}

int io_read(struct io *io, enum io_wbuf which, uint64_t off, size_t len)
{
	return writer_xfer(io, false, which, off, len);
}

struct io_reader *io_reader_get(struct io *io)
{
	unsigned start = atomic_fetch_add_explicit(&io->next, 1,
						   memory_order_relaxed);
	struct io_reader *r;

	for (unsigned i = 0; i < IO_NREADERS; i++) {
		r = &io->r[(start + i) % IO_NREADERS];
		if (pthread_mutex_trylock(&r->lock) == 0)
			return r;
	}
	r = &io->r[start % IO_NREADERS];
	pthread_mutex_lock(&r->lock);
	return r;
}

int io_reader_read(struct io_reader *r, uint64_t off, size_t len)
{
	int err;

	atomic_store(&r->tag, IO_NO_TAG);
	err = len <= r->buf_size ? xfer(r, false, 0, r->buf, off, len)
				 : -EINVAL;
	if (err)
		log_error("swap file read of %zu bytes at %llu failed: %s",
			  len, (unsigned long long)off, strerror(-err));
	return err;
}

const void *io_reader_buf(const struct io_reader *r)
{
	return r->buf;
}

void io_reader_put(struct io_reader *r)
{
	pthread_mutex_unlock(&r->lock);
}

void io_reader_set_tag(struct io_reader *r, uint64_t tag)
{
	atomic_store(&r->tag, tag);
}

struct io_reader *io_reader_find(struct io *io, uint64_t tag)
{
	for (unsigned i = 0; i < IO_NREADERS; i++) {
		struct io_reader *r = &io->r[i];

		if (atomic_load_explicit(&r->tag, memory_order_relaxed) != tag)
			continue;
		pthread_mutex_lock(&r->lock);
		if (atomic_load(&r->tag) == tag)
			return r;
		pthread_mutex_unlock(&r->lock);
	}
	return NULL;
}

void io_forget(struct io *io)
{
	for (unsigned i = 0; i < IO_NREADERS; i++)
		atomic_store(&io->r[i].tag, IO_NO_TAG);
}

bool io_is_sync(const struct io *io)
{
	return io->sync;
}

void io_inject(struct io *io, enum io_fail what)
{
	io_forget(io);
	atomic_store(&io->fail_read, what == IO_FAIL_READ);
	atomic_store(&io->fail_write, what == IO_FAIL_WRITE);
}
