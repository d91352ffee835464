/* SPDX-License-Identifier: MIT */
/*
 * The compressed page store: a RAM tier of compressed objects in front of a
 * swap file written and read with io_uring.
 *
 * Contract with the rest of upager (evict.c, fault.c, snapshot.c):
 *  - A handle is a nonzero 48-bit number naming one stored page.  It stays
 *    valid, wherever the store moves the object (RAM tier -> disk,
 *    compaction), until its last reference is dropped with store_free().
 *  - All-zero pages are never given to the store: callers detect them
 *    (store_page_is_zero) and keep them as ZERO entries in the page table.
 *  - Every function may be called from several threads at once (handler
 *    threads call store_get, the evictor calls store_put, any thread may call
 *    store_free).  The store never touches memory other than its own and the
 *    buffers passed in, and never calls the process's malloc (which may be
 *    managed by upager in preload mode): its memory comes from mem.h.
 *  - Buffers passed in are plain memory that cannot fault into upager
 *    (bounce buffers, or present write-protected pages).
 */
#ifndef UPAGER_STORE_H
#define UPAGER_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "remote.h"

#define STORE_HANDLE_BITS 48
#define STORE_HANDLE_MAX ((UINT64_C(1) << STORE_HANDLE_BITS) - 1)

struct store;

struct store_config {
	int codec;		/* enum upg_codec */
	uint64_t ram_limit;	/* bytes the RAM tier may hold before objects go
				 * to disk; 0 = no RAM tier (straight to disk) */
	uint64_t ram_max;	/* most store_set_ram_limit may give it (below
				 * ram_limit: ram_limit) */
	const char *swap_dir;	/* directory for the O_TMPFILE swap file */
	uint64_t swap_size;	/* bound of the swap file in bytes */
	/* Asked, with the store's lock held, before a copy (store_put_copy)
	 * is dropped: true if `owner` let go of `handle` (it no longer names
	 * it anywhere; the store then reclaims it without a store_free).
	 * Must not call the store.  NULL: no copies. */
	bool (*drop)(void *owner, uint64_t handle);
	/* The remote tier (remote.h): "host:port,..." or NULL for none.
	 * Objects leaving the RAM tier go there, sealed, and to the swap
	 * file when the cluster refuses them. */
	const char *remote;
	unsigned remote_replicas, remote_timeout_ms;
	bool remote_optional;	/* no server answers: warn, go without */
	bool encrypt;		/* seal what goes to the swap file too */
	uint64_t probation;	/* bytes of the probation list (probation.h),
				 * 0: none */
};

struct store_stats {
	uint64_t objects;	/* live handles */
	uint64_t bytes_in;	/* page bytes put (cumulative) */
	uint64_t bytes_stored;	/* compressed bytes put (cumulative) */
	uint64_t raw_pages;	/* pages stored raw (did not compress) */
	uint64_t ram_bytes;	/* bytes held in RAM now: the tier's live
				 * objects and the probation list's slots */
	uint64_t disk_bytes;	/* live compressed bytes on disk now */
	uint64_t file_bytes;	/* size of the swap file now */
	uint64_t reads_ram, reads_disk;
	uint64_t compactions;
	uint64_t promoted;	/* disk objects brought back to RAM */
	uint64_t copies;	/* live objects put with store_put_copy */
	uint64_t dropped;	/* copies dropped (cumulative) */
	uint64_t io_errors, checksum_errors;
	bool sync_io;		/* no io_uring: pread/pwrite (io.h) */
	uint64_t ram_objects, disk_objects;	/* live objects per tier */
	uint64_t remote_objects, remote_bytes;	/* on the cluster now */
	uint64_t remote_refused;	/* objects the cluster did not take */
	uint64_t reads_remote;		/* objects read back from it */
	uint64_t remote_lost;		/* no copy came back that opened */
	uint64_t seal_errors;		/* sealed objects that did not open */
	uint64_t probation_pages;	/* pages on probation now */
	uint64_t probation_aged;	/* compressed when they aged out */
	uint64_t reads_probation;	/* reads served from probation */
	uint64_t reads_reread;		/* from a segment a reader read whole
					 * for an earlier read (counted in
					 * reads_ram) */
	uint64_t reads_whole;		/* swap-file reads of a whole
					 * segment (the others read blocks) */
	struct remote_stats remote;	/* the client's counters */
};

/*
 * The process is exiting without destroying the store (the preload library
 * never tears its runtime down: later destructors still use the heap):
 * delete every key it has on the cluster now and push nothing more there
 * (what leaves the RAM tier goes to the swap file).  A page whose only copy
 * was on the cluster is then lost: read, it is poisoned.  Any thread.
 */
void store_release_remote(struct store *st);

/* Create a store.  -EINVAL bad config, -ENOENT/-EACCES/-ENOTDIR/-EROFS
 * swap_dir, -EOPNOTSUPP no O_TMPFILE there, -ENOMEM.  Without io_uring it
 * works with pread/pwrite (io.h). */
int store_create(const struct store_config *cfg, struct store **out);
void store_destroy(struct store *st);

/* True if the 4 KiB page is all zeros (fast, word-at-a-time). */
bool store_page_is_zero(const void *page);

/* Store one 4 KiB page; sets *handle.  -ENOSPC when both tiers are full.
 * -EIO when the swap file cannot be written and the RAM tier is over its
 * limit: pages already stored stay readable from RAM, the write is retried
 * by the next store_put or store_flush. */
int store_put(struct store *st, const void *page, uint64_t *handle);

/*
 * Store a page that can be had again elsewhere (a clean page of a file) as
 * a copy: kept in the RAM tier while it has room, and when the tier
 * overflows dropped rather than written to the swap file, if the config's
 * drop(owner, handle) lets it go (a copy it refuses, or one shared with
 * store_ref, is kept like any object).  -E2BIG when the page does not
 * compress to half a page or less (not worth its RAM), -EOPNOTSUPP when
 * the store has no RAM tier or no drop function, else as store_put.
 */
int store_put_copy(struct store *st, const void *page, void *owner,
		   uint64_t *handle);

/* Read the page of `handle` into the 4 KiB buffer `page`.  Sets *from_disk
 * (may be NULL) to whether it needed a read from the swap file.
 * -EIO on an I/O error, -EBADMSG on a checksum mismatch (the page is lost:
 * the caller poisons it), -EINVAL for a bad handle. */
int store_get(struct store *st, uint64_t handle, void *page, bool *from_disk);

/*
 * A page as the store keeps it, for fork(), which hands every stored page
 * to the child's store: store_get_packed reads the page of `handle` into
 * the 4 KiB `buf` checked (opened, if sealed) but not decompressed, and
 * sets *len (PAGE_SIZE: stored raw); errors as store_get.
 * store_put_packed stores such bytes as a new object of a store with the
 * same codec, as store_put would have (-EINVAL for a length no page
 * packs to); store_unpack decodes them into a page (-EILSEQ if they do
 * not make one).
 */
int store_get_packed(struct store *st, uint64_t handle, void *buf,
		     size_t *len);
int store_put_packed(struct store *st, const void *src, size_t len,
		     uint64_t *handle);
int store_unpack(struct store *st, const void *src, size_t len, void *page);

/*
 * Read-ahead: fetch the pages of handles[0..n) (n <= STORE_AHEAD_MAX) into
 * pages + i * 4 KiB, those in the RAM tier from RAM and those on disk with
 * a single read: the ones in the first such object's segment, which is
 * read whole (and kept by the reader for the next reads of it).  res[i] is
 * 0 for a page fetched from RAM (or from a segment read before), 1 for one
 * read from the disk, -EAGAIN for one not
 * fetched by this call (on disk elsewhere, or its segment moved
 * meanwhile), or store_get's error for one read and found bad.  Pages
 * stored in eviction order sit together, so an in-order run usually comes
 * back with one read.
 */
#define STORE_AHEAD_MAX 16
void store_get_ahead(struct store *st, const uint64_t *handles, unsigned n,
		     char *pages, int *res);
/* The same, each page packed as store_get_packed gives it, its length in
 * lens[i] (fork's transfer, which reads every stored page). */
void store_get_ahead_packed(struct store *st, const uint64_t *handles,
			    unsigned n, char *bufs, size_t *lens, int *res);

/*
 * Check one stored object of `len` bytes against its checksum and decode
 * it into the 4 KiB `page` (len == PAGE_SIZE: stored raw) with codec `c`.
 * Any bytes are safe: nothing outside src[0..len) is read, nothing outside
 * the page written.  0, -EBADMSG on a checksum mismatch (page untouched),
 * -EILSEQ when the length is not that of an object or the bytes do not
 * decode to exactly one page.  store_get's decoder; exposed for the fuzz
 * target (fuzz/fuzz_store.c).
 */
struct codec;
int store_decode(struct codec *c, const void *src, size_t len, uint32_t csum,
		 void *page);

/* Take one more reference to a handle (snapshots share stored pages). */
void store_ref(struct store *st, uint64_t handle);
/* Drop one reference; the object's space is reclaimed with the last one. */
void store_free(struct store *st, uint64_t handle);

void store_get_stats(struct store *st, struct store_stats *out);
/*
 * A far object whose page the caller still holds: worth bringing back into
 * the RAM tier (store_promote) if it is on the swap file (not the cluster,
 * not a copy) and the tier has room under its limit now.  Cheap.
 */
bool store_promotable(struct store *st, uint64_t handle);
/*
 * Store `page`, the contents of handle's object, again in the RAM tier and
 * repoint the handle there, so its next read needs no disk; the disk copy
 * is let go.  1 if done, 0 if the object is no longer on the swap file
 * (freed, moved, read back), -errno as store_put.  Holders of the handle
 * see no change but where it is read from.
 */
int store_promote(struct store *st, uint64_t handle, const void *page);

/* Objects read back so far from the RAM tier, and from the swap file and
 * the cluster together.  Cheap (relaxed loads, no lock). */
void store_reads(struct store *st, uint64_t *ram, uint64_t *far);
/* Memory the RAM tier holds now: its segments, holes left by freed
 * objects included (at least the compressed bytes it holds).  Cheap
 * (relaxed loads), for the budget check on every fault. */
uint64_t store_ram_bytes(struct store *st);
/* Move the RAM tier's limit (at most the config's ram_max); a lower one is
 * reached at the next segment sealed, by writing the oldest out.  Any
 * thread. */
void store_set_ram_limit(struct store *st, uint64_t bytes);
uint64_t store_ram_limit(struct store *st);

/* Test hooks (used by tests only). */
enum store_fault_inject {
	STORE_INJECT_NONE = 0,
	STORE_INJECT_READ_EIO,	/* the next disk read completes with -EIO */
	STORE_INJECT_WRITE_EIO,	/* the next disk write completes with -EIO */
};
void store_inject(struct store *st, enum store_fault_inject what);
/* Flip one byte of the stored object (wherever it lives). -EINVAL if none. */
int store_corrupt(struct store *st, uint64_t handle);
/* Push every RAM-tier object to disk now (so tests can exercise disk reads).
 * -EIO if the write failed: the objects stay in RAM, readable. */
int store_flush(struct store *st);

#endif
