/* SPDX-License-Identifier: MIT */
/*
 * io_uring access to the swap file.
 *
 * liburing rings are not thread-safe, so the file is served by a small pool
 * of rings, each behind its own mutex that its user holds from submission to
 * completion (so no one ever reaps another's completion):
 *  - one writer ring with two registered segment-sized buffers, for the
 *    store's put path (segment writes, compaction reads), which the store
 *    already serialises with its put lock;
 *  - IO_NREADERS reader rings with one registered IO_READ_MAX buffer
 *    each, for page-ins (a whole segment): a store_get takes a free one
 *    (or waits for one), so up to IO_NREADERS page-ins are in flight at
 *    once and no reader waits behind the writer.  What a reader's buffer
 *    holds stays there, labelled by its user (io_reader_set_tag), until
 *    its next read: the store reads from it again instead of the file.
 * The file is registered with every ring; all I/O is READ_FIXED/WRITE_FIXED.
 */
#ifndef UPAGER_IO_H
#define UPAGER_IO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define IO_NREADERS 4
#define IO_READ_MAX ((size_t)128 << 10)	/* largest read of a reader */
#define IO_NO_TAG UINT64_MAX		/* a reader's buffer holds nothing */

/* The writer's registered buffers. */
enum io_wbuf {
	IO_WBUF_SEG = 0,	/* the segment being filled for the disk */
	IO_WBUF_GC = 1,		/* a segment read back for compaction */
	IO_NWBUF
};

/* Fault injection (tests): the next read or write fails with -EIO, not made;
 * IO_FAIL_NONE cancels what is pending. */
enum io_fail {
	IO_FAIL_NONE = 0,
	IO_FAIL_READ = 1,
	IO_FAIL_WRITE = 2,
};

struct io;
struct io_reader;

/* Set up the rings over `fd`, with writer buffers of `wbuf_size` bytes
 * (a multiple of 4 KiB).  Where no ring can be had (io_uring disabled or
 * filtered, RLIMIT_MEMLOCK), the same calls use pread/pwrite instead
 * (io_is_sync), said once in the log.  -ENOMEM. */
int io_create(int fd, size_t wbuf_size, struct io **out);
bool io_is_sync(const struct io *io);

/* All `len` bytes between p and offset off of fd with pwrite (write) or
 * pread, resumed after short transfers and EINTR: 0, or -errno (-EIO
 * for an end of file). */
int pio_full(int fd, bool write, void *p, uint64_t off, size_t len);
void io_destroy(struct io *io);

/* The writer's buffer `which` (page-aligned, wbuf_size bytes). */
void *io_wbuf(struct io *io, enum io_wbuf which);

/* Write or read `len` bytes (4 KiB multiples) between the start of writer
 * buffer `which` and file offset `off`.  Caller serialises writer use. */
int io_write(struct io *io, enum io_wbuf which, uint64_t off, size_t len);
int io_read(struct io *io, enum io_wbuf which, uint64_t off, size_t len);

/* Take a reader ring (waits if all are busy); give it back with
 * io_reader_put.  io_reader_read fills its buffer with the `len` bytes
 * (4 KiB multiple, at most IO_READ_MAX) at `off`; the buffer stays valid
 * until io_reader_put. */
struct io_reader *io_reader_get(struct io *io);
int io_reader_read(struct io_reader *r, uint64_t off, size_t len);
const void *io_reader_buf(const struct io_reader *r);
void io_reader_put(struct io_reader *r);

/* Label what r's buffer holds after a read (IO_NO_TAG: nothing); a read
 * clears the label.  Caller has r taken. */
void io_reader_set_tag(struct io_reader *r, uint64_t tag);
/* The reader whose buffer holds `tag`, taken (io_reader_put it), or NULL
 * if none does. */
struct io_reader *io_reader_find(struct io *io, uint64_t tag);
/* Forget every label: the file changed under them (tests tampering with
 * it), or the next reads must go to the file (io_inject). */
void io_forget(struct io *io);

/* Also forgets every label, so that the failing read is made. */
void io_inject(struct io *io, enum io_fail what);

#endif
