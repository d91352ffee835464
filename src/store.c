/* SPDX-License-Identifier: MIT */
/*
 * The compressed page store.
 *
 * Layout.  Objects (compressed pages, or raw ones) are packed into 4 KiB
 * blocks that no object crosses, blocks into 128 KiB segments.  A handle is
 * (generation << 32 | index) into an object table whose entry says where the
 * object is now (segment, offset, length) and its checksum, so the store may
 * move objects without the callers noticing.  Each segment keeps a summary
 * (the indices appended to it) so that it can be emptied without a search.
 *
 * Tiers.  New objects go into the open segment (RAM).  A full open segment
 * is sealed onto the RAM FIFO, which holds at most ram_limit / 128 KiB
 * segments.  Beyond that, the oldest RAM segment is emptied: its live
 * objects are copied (still compressed) into the disk-bound segment
 * ("dopen", which lives in a registered buffer of the writer ring) and,
 * when that is full, it is written to a free slot of the swap file with one
 * batch of WRITE_FIXEDs.  Besides the ram_limit segments, the RAM tier uses
 * two staging segments (open and dopen).  The swap file has
 * swap_size / 128 KiB slots and never grows beyond them.  A page-in from
 * the file reads its object's whole segment into a reader's buffer, which
 * keeps it for the next page-ins of that segment (seg_reader).
 *
 * Compaction.  Disk segments count their live bytes.  When a new dopen
 * would leave fewer than GC_RESERVE free slots, or when less than half the
 * bytes of the used slots are live, the sparsest disk segments are read back
 * (one READ_FIXED each) and their live objects copied into dopen; their
 * slots are then reused.  Compaction may use the reserved slot, so it can
 * always finish a victim.  A segment whose objects are all freed is
 * released at once.
 *
 * Locks.
 *  - put_lock serialises the writers: store_put, store_flush, store_corrupt
 *    and the compaction they run.  It guards the open and dopen segments'
 *    contents, every summary and the writer ring, and is held across disk
 *    writes and compaction reads.
 *  - lock (rwlock, writers preferred) guards the object table, segment
 *    states and buffers, the FIFO, the slot map and the counters.  It is
 *    never held across disk I/O.  store_get holds it for reading while it
 *    decodes a RAM-tier object (so the buffer cannot go away under it) and,
 *    for a disk object, only to find it and afterwards to check that its
 *    segment was not recycled while the read was in flight (epoch).
 *  Order: put_lock, then lock; a reader ring, then lock.
 *
 * Failures.  A failed segment write leaves the segment in RAM, readable,
 * and is retried at the next write-out; store_put returns -EIO meanwhile
 * once the RAM tier is over its limit.  A failed read returns -EIO and the
 * object stays.  A checksum mismatch returns -EBADMSG.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "codec.h"
#include "io.h"
#include "log.h"
#include "mem.h"
#include "probation.h"
#include "remote.h"
#include "seal.h"
#include "store.h"
#include "upager.h"
#include "util.h"

#define SEG_SIZE ((size_t)128 << 10)
#define SEG_NONE UINT32_MAX
#define SEG_REMOTE (UINT32_MAX - 1)	/* obj.seg of an object on the cluster */
#define SEG_PROBATION (UINT32_MAX - 2)	/* obj.seg of one on probation: obj.off
					 * is its slot (probation.h) */
#define PUSH_MAX 256		/* objects per remote batch */
#define PUSH_BUF (SEG_SIZE + PUSH_MAX * SEAL_TAG)
#define DELQ_MAX 512		/* remote deletes waiting for the next batch */
#define GC_RESERVE 1		/* free slots only compaction may take */
#define GC_MAX_VICTIMS 16	/* per compaction run */
#define MAX_SEGS (UINT32_C(1) << 24)

#define TAB_SHIFT 12		/* object table: chunks of 4096 entries */
#define TAB_CHUNK (UINT32_C(1) << TAB_SHIFT)
#define TAB_DIR (UINT32_C(1) << 16)

enum seg_state { SEG_FREE, SEG_OPEN, SEG_DOPEN, SEG_RAM, SEG_DISK, SEG_BUSY };

struct obj {
	uint32_t seg;		/* segment; next free index when free */
	uint32_t off;		/* byte offset in the segment */
	uint32_t csum;		/* of the stored bytes */
	uint32_t refs;		/* 0: free */
	uint16_t len;		/* stored bytes; PAGE_SIZE: raw (plus SEAL_TAG
				 * when sealed) */
	uint16_t gen;		/* bumped when freed, so stale handles fail */
	uint8_t sealed;		/* encrypted (seal.h): on the cluster, or in
				 * the swap file with encrypt */
	uint64_t ver;		/* put counter: the seal's version */
	void *owner;		/* a copy (store_put_copy): whom to ask before
				 * dropping it; NULL: kept until freed */
};

struct seg {
	uint8_t state;
	uint32_t epoch;		/* bumped when released */
	int32_t slot;		/* disk slot, or -1 */
	uint32_t live;		/* bytes of live objects */
	uint32_t nobj;		/* live objects */
	uint32_t used;		/* append cursor, block tails included */
	uint32_t prev, next;	/* RAM FIFO, or free list (next) */
	char *buf;		/* contents in RAM, NULL when only on disk */
	uint32_t *sum;		/* indices appended (put_lock) */
	uint32_t nsum, sum_cap;
};

struct store {
	pthread_mutex_t put_lock;
	pthread_rwlock_t lock;
	int fd;
	struct io *io;
	struct codec *codec;
	bool (*drop)(void *owner, uint64_t handle);

	struct obj **dir;	/* object table chunks */
	uint32_t nidx;		/* indices handed out (0 is never used) */
	uint32_t free_idx;	/* free list of indices, 0 = empty */

	struct seg *segs;
	uint32_t nsegs, free_seg;
	uint32_t fifo_head, fifo_tail, fifo_count;
	/* Segments the RAM FIFO may hold: moved within [0, ram_cap_max] by
	 * store_set_ram_limit (the evictor) while writers read it. */
	_Atomic uint32_t ram_cap;
	uint32_t ram_cap_max;
	uint32_t open, dopen;	/* put_lock */
	bool in_gc;		/* put_lock */

	uint64_t *slot_map;
	uint32_t nslots, free_slots;

	uint64_t objects, bytes_in, bytes_stored, raw_pages;
	uint64_t ram_bytes, disk_bytes, file_bytes, compactions;
	uint64_t promoted;	/* objects brought back to RAM (lock) */
	uint64_t copies, dropped;
	uint64_t ram_objects, disk_objects;
	_Atomic uint64_t reads_ram, reads_disk, io_errors, checksum_errors;

	/* Sealing and the remote tier (NULL when off). */
	struct seal *seal;
	struct remote *remote;
	bool encrypt;		/* seal what goes to the swap file */
	uint64_t ver;		/* put_lock */
	uint64_t remote_objects, remote_bytes, remote_refused;
	uint32_t remote_hiwater;	/* highest index ever pushed */
	bool remote_closed;	/* swept at exit: push nothing more (put_lock) */
	_Atomic uint64_t reads_remote, remote_lost, seal_errors;
	uint64_t delq[DELQ_MAX];	/* lock */
	uint32_t ndelq;
	char *pushbuf;			/* put_lock */
	struct remote_item *items;	/* put_lock */
	uint32_t *push_idx;		/* put_lock */

	struct probation *prob;	/* NULL: none */
	uint64_t aged;		/* objects compressed off probation (lock) */
	_Atomic uint64_t reads_probation;
	_Atomic uint64_t reads_reread;	/* from a segment read before */
	_Atomic uint64_t reads_whole;	/* segments read whole */
	/* Whether whole-segment reads pay (whole_pays). */
	_Atomic uint32_t seg_misses, whole_reads, whole_reused;

	char scratch[CODEC_RAW_LIMIT];	/* compressed output (put_lock) */
};

static inline void wrlock(struct store *st)
{
	pthread_rwlock_wrlock(&st->lock);
}

static inline void rdlock(struct store *st)
{
	pthread_rwlock_rdlock(&st->lock);
}

static inline void unlock(struct store *st)
{
	pthread_rwlock_unlock(&st->lock);
}

static inline void count(_Atomic uint64_t *c)
{
	atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

/* Writes (under the lock) of what store_ram_bytes() reads without it:
 * atomic, so that its relaxed loads are not a data race. */
#define SET_RELAXED(field, v) __atomic_store_n(&(field), (v), __ATOMIC_RELAXED)

bool store_page_is_zero(const void *page)
{
	const uint64_t *w = page;

	for (size_t i = 0; i < PAGE_SIZE / 8; i += 8) {
		if (w[i] | w[i + 1] | w[i + 2] | w[i + 3] | w[i + 4] |
		    w[i + 5] | w[i + 6] | w[i + 7])
			return false;
	}
	return true;
}

/* ---- object table (lock) ---------------------------------------------- */

static inline struct obj *obj_at(struct store *st, uint32_t idx)
{
	return &st->dir[idx >> TAB_SHIFT][idx & (TAB_CHUNK - 1)];
}

/* The live object of `handle`, or NULL.  lock held. */
static struct obj *obj_lookup(struct store *st, uint64_t handle)
{
	uint32_t idx = (uint32_t)handle;
	struct obj *o;

	if (idx == 0 || idx >= st->nidx || handle > STORE_HANDLE_MAX)
		return NULL;
	o = obj_at(st, idx);
	if (!o->refs || o->gen != (uint16_t)(handle >> 32))
		return NULL;
	return o;
}

/* A free index, its chunk mapped.  lock held for writing. */
static int obj_new(struct store *st, uint32_t *idx)
{
	uint32_t i = st->free_idx;
	struct obj **chunk;

	if (i) {
		st->free_idx = obj_at(st, i)->seg;
		*idx = i;
		return 0;
	}
	i = st->nidx;
	if (i >= TAB_DIR * TAB_CHUNK)
		return -ENOSPC;
	chunk = &st->dir[i >> TAB_SHIFT];
	if (!*chunk) {
		*chunk = mem_alloc(TAB_CHUNK * sizeof(struct obj));
		if (!*chunk)
			return -ENOMEM;
	}
	st->nidx++;
	*idx = i;
	return 0;
}

static void obj_del(struct store *st, uint32_t idx)
{
	struct obj *o = obj_at(st, idx);

	o->refs = 0;
	o->owner = NULL;
	o->gen++;
	o->seg = st->free_idx;
	st->free_idx = idx;
}

/* The last reference to live object idx is gone (its bytes already
 * taken off its segment).  lock held for writing. */
static void obj_forget(struct store *st, uint32_t idx)
{
	st->objects--;
	st->copies -= obj_at(st, idx)->owner != NULL;
	obj_del(st, idx);
}

/* ---- segments and slots (lock) ----------------------------------------- */

static inline struct seg *seg_of(struct store *st, uint32_t id)
{
	return &st->segs[id];
}

static void live_add(struct store *st, struct seg *s, int64_t delta,
		     int32_t nobj)
{
	s->live += (uint32_t)delta;
	s->nobj += (uint32_t)nobj;
	if (s->buf) {
		SET_RELAXED(st->ram_bytes, st->ram_bytes + (uint64_t)delta);
		st->ram_objects += (uint64_t)(int64_t)nobj;
	} else {
		st->disk_bytes += (uint64_t)delta;
		st->disk_objects += (uint64_t)(int64_t)nobj;
	}
}

/* Change where a segment's contents live, moving its bytes between the
 * tiers' counters. */
static void seg_set_buf(struct store *st, struct seg *s, char *buf)
{
	int64_t live = s->live;
	int32_t nobj = (int32_t)s->nobj;

	live_add(st, s, -live, -nobj);
	s->buf = buf;
	live_add(st, s, live, nobj);
}

static int slot_alloc(struct store *st)
{
	for (uint32_t w = 0; w * 64 < st->nslots; w++) {
		uint64_t bits = st->slot_map[w];

		if (~bits) {
			int b = __builtin_ctzll(~bits);

			st->slot_map[w] |= UINT64_C(1) << b;
			st->free_slots--;
			return (int)(w * 64 + (uint32_t)b);
		}
	}
	return -1;
}

static void slot_free(struct store *st, int slot)
{
	st->slot_map[slot / 64] &= ~(UINT64_C(1) << (slot % 64));
	st->free_slots++;
}

static uint32_t seg_alloc(struct store *st, enum seg_state state, char *buf)
{
	uint32_t id = st->free_seg;
	struct seg *s;

	if (id == SEG_NONE)
		return SEG_NONE;
	s = seg_of(st, id);
	st->free_seg = s->next;
	s->state = state;
	s->slot = -1;
	s->live = s->used = s->nobj = 0;
	s->buf = buf;
	s->nsum = 0;
	return id;
}

static void fifo_remove(struct store *st, struct seg *s)
{
	if (s->prev != SEG_NONE)
		seg_of(st, s->prev)->next = s->next;
	else
		st->fifo_head = s->next;
	if (s->next != SEG_NONE)
		seg_of(st, s->next)->prev = s->prev;
	else
		st->fifo_tail = s->prev;
	SET_RELAXED(st->fifo_count, st->fifo_count - 1);
}

/* Append at the tail (sealing) or put back at the head (a failed write-out
 * of the oldest). */
static void fifo_add(struct store *st, uint32_t id, bool head)
{
	struct seg *s = seg_of(st, id);

	s->state = SEG_RAM;
	s->prev = head ? SEG_NONE : st->fifo_tail;
	s->next = head ? st->fifo_head : SEG_NONE;
	if (s->prev != SEG_NONE)
		seg_of(st, s->prev)->next = id;
	else
		st->fifo_head = id;
	if (s->next != SEG_NONE)
		seg_of(st, s->next)->prev = id;
	else
		st->fifo_tail = id;
	SET_RELAXED(st->fifo_count, st->fifo_count + 1);
}

/* Give a segment back: its memory (unless it is the writer's registered
 * buffer), its slot, its summary. */
static void seg_release(struct store *st, uint32_t id)
{
	struct seg *s = seg_of(st, id);

	if (s->state == SEG_RAM)
		fifo_remove(st, s);
	if (s->buf && s->state != SEG_DOPEN)
		mem_free(s->buf, SEG_SIZE);
	if (s->slot >= 0)
		slot_free(st, s->slot);
	mem_free(s->sum, s->sum_cap * sizeof(uint32_t));
	s->sum = NULL;
	s->nsum = s->sum_cap = 0;
	s->buf = NULL;
	s->state = SEG_FREE;
	s->epoch++;
	s->next = st->free_seg;
	st->free_seg = id;
}

/* Return a segment taken for emptying to where it was, or release it if
 * its objects were freed meanwhile. */
static void seg_unbusy(struct store *st, uint32_t id)
{
	struct seg *s = seg_of(st, id);

	if (s->live == 0)
		seg_release(st, id);
	else if (s->buf)
		fifo_add(st, id, true);
	else
		s->state = SEG_DISK;
}

/* ---- appending (put_lock) ------------------------------------------------ */

/* Offset where `len` bytes would go in segment `id` (no object crosses a
 * block), or -1 if they do not fit or there is no such segment. */
static long seg_fit(struct store *st, uint32_t id, size_t len)
{
	size_t pos;

	if (id == SEG_NONE)
		return -1;
	pos = seg_of(st, id)->used;

	/* A sealed raw page is the one object longer than a block: it
	 * starts at one and ends in the next. */
	if ((pos & (PAGE_SIZE - 1)) + MIN(len, PAGE_SIZE) > PAGE_SIZE ||
	    (len > PAGE_SIZE && (pos & (PAGE_SIZE - 1))))
		pos = (pos + PAGE_SIZE - 1) & PAGE_MASK;
	return pos + len <= SEG_SIZE ? (long)pos : -1;
}

/* Make room for one more summary entry, so that publishing cannot fail. */
static int sum_reserve(struct seg *s)
{
	uint32_t cap = s->sum_cap ? s->sum_cap * 2 : 64;
	uint32_t *sum;

	if (s->nsum < s->sum_cap)
		return 0;
	sum = mem_alloc(cap * sizeof(*sum));
	if (!sum)
		return -ENOMEM;
	if (s->sum) {
		memcpy(sum, s->sum, s->nsum * sizeof(*sum));
		mem_free(s->sum, s->sum_cap * sizeof(*sum));
	}
	s->sum = sum;
	s->sum_cap = cap;
	return 0;
}

/* Record that object idx now lives at (id, pos).  lock held for writing. */
static void obj_place(struct store *st, uint32_t idx, uint32_t id, long pos)
{
	struct obj *o = obj_at(st, idx);
	struct seg *s = seg_of(st, id);

	o->seg = id;
	o->off = (uint32_t)pos;
	s->used = (uint32_t)pos + o->len;
	s->sum[s->nsum++] = idx;
	live_add(st, s, o->len, 1);
}

static bool gc_wanted(struct store *st)
{
	uint32_t used;
	bool want;

	rdlock(st);
	used = st->nslots - st->free_slots;
	want = st->free_slots <= GC_RESERVE ||
	       (used >= 4 && st->disk_bytes * 2 < (uint64_t)used * SEG_SIZE);
	unlock(st);
	return want;
}

static int compact(struct store *st);

/* Open a new disk-bound segment on a free slot.  Outside compaction the
 * last GC_RESERVE slots are left for compaction, which runs first if slots
 * are short or the disk is mostly dead bytes. */
static int dopen_new(struct store *st)
{
	uint32_t id;
	int err = 0;

	if (!st->in_gc && gc_wanted(st)) {
		compact(st);
		if (st->dopen != SEG_NONE)	/* compaction left one open */
			return 0;
	}
	wrlock(st);
	if (st->free_slots <= (st->in_gc ? 0 : GC_RESERVE)) {
		err = -ENOSPC;
	} else {
		id = seg_alloc(st, SEG_DOPEN, io_wbuf(st->io, IO_WBUF_SEG));
		if (id == SEG_NONE) {
			err = -ENOSPC;
		} else {
			seg_of(st, id)->slot = slot_alloc(st);
			st->dopen = id;
		}
	}
	unlock(st);
	return err;
}

/* Write dopen to its slot; on success it becomes a disk segment. */
static int dopen_write(struct store *st)
{
	struct seg *d = seg_of(st, st->dopen);
	size_t len = ((size_t)d->used + PAGE_SIZE - 1) & PAGE_MASK;
	uint64_t off = (uint64_t)d->slot * SEG_SIZE;
	int err;

	err = io_write(st->io, IO_WBUF_SEG, off, len);
	if (err) {
		count(&st->io_errors);
		return -EIO;
	}
	wrlock(st);
	seg_set_buf(st, d, NULL);
	d->state = SEG_DISK;
	st->file_bytes = MAX(st->file_bytes, off + len);
	if (d->live == 0)
		seg_release(st, st->dopen);
	st->dopen = SEG_NONE;
	unlock(st);
	return 0;
}

/* Find room for `len` bytes in dopen, writing out a full one first. */
static long dopen_room(struct store *st, size_t len)
{
	for (int tries = 0; tries < 3; tries++) {
		long pos = seg_fit(st, st->dopen, len);
		int err;

		if (pos >= 0)
			return pos;
		if (st->dopen != SEG_NONE) {
			err = dopen_write(st);
			if (err)
				return err;
		}
		err = dopen_new(st);
		if (err)
			return err;
	}
	return -ENOSPC;
}

/*
 * A copy about to leave its segment is dropped instead, if its owner lets
 * go (the owner then names the file, not the handle).  Only while it has
 * one reference: store_ref makes an object a keeper.  The owner's answer
 * and the object's end are one step under the lock, so a store_free
 * racing with it finds either a live object or none.  True if dropped.
 */
static bool drop_copy(struct store *st, uint32_t id, uint32_t idx)
{
	struct obj *o = obj_at(st, idx);
	bool dropped;

	wrlock(st);
	dropped = o->refs == 1 && o->seg == id && o->owner &&
		  st->drop(o->owner, (uint64_t)o->gen << 32 | idx);
	if (dropped) {
		live_add(st, seg_of(st, id), -(int64_t)o->len, -1);
		obj_forget(st, idx);
		st->dropped++;
	}
	unlock(st);
	return dropped;
}

/* Copy object idx, if it still lives in segment `id` (whose contents are at
 * `src`), into dopen, without decompressing it; a copy its owner lets go
 * of is dropped instead. */
static int migrate_obj(struct store *st, uint32_t id, const char *src,
		       uint32_t idx)
{
	struct obj *o = obj_at(st, idx);
	uint32_t off, len;
	uint64_t ver;
	struct seg *d;
	bool live, copy, seal;
	long pos;
	int err;

	/* Only this thread (put_lock) moves objects or reuses indices, so
	 * what we read here stays true, except that the object may be
	 * freed meanwhile: checked again when publishing. */
	rdlock(st);
	live = o->refs && o->seg == id;
	copy = o->owner != NULL;
	off = o->off;
	len = o->len;
	ver = o->ver;
	/* With encrypt, what leaves the RAM tier for the file is sealed
	 * here (compaction moves objects already sealed). */
	seal = st->encrypt && !o->sealed;
	unlock(st);
	if (!live || (copy && drop_copy(st, id, idx)))
		return 0;
	if (seal) {
		len = (uint32_t)seal_encrypt(st->seal, idx, ver, src + off, len,
					   st->pushbuf);
		src = st->pushbuf;
		off = 0;
	}
	pos = dopen_room(st, len);
	if (pos < 0)
		return (int)pos;
	d = seg_of(st, st->dopen);
	err = sum_reserve(d);
	if (err)
		return err;
	memcpy(d->buf + pos, src + off, len);
	wrlock(st);
	if (o->refs && o->seg == id) {
		live_add(st, seg_of(st, id), -(int64_t)o->len, -1);
		o->len = (uint16_t)len;
		o->sealed |= seal;
		obj_place(st, idx, st->dopen, pos);
	}
	unlock(st);
	return 0;
}

/* Move every live object of the busy segment `id` into dopen. */
static int migrate(struct store *st, uint32_t id, const char *src)
{
	struct seg *s = seg_of(st, id);

	for (uint32_t i = 0; i < s->nsum; i++) {
		int err = migrate_obj(st, id, src, s->sum[i]);

		if (err)
			return err;
	}
	return 0;
}

/* The disk segment with the fewest live bytes, at most max_live, marked
 * busy; SEG_NONE if there is none. */
static uint32_t pick_victim(struct store *st, uint32_t max_live)
{
	uint32_t best = SEG_NONE;

	wrlock(st);
	for (uint32_t i = 0; i < st->nsegs; i++) {
		struct seg *s = seg_of(st, i);

		if (s->state == SEG_DISK && s->live <= max_live &&
		    (best == SEG_NONE || s->live < seg_of(st, best)->live))
			best = i;
	}
	if (best != SEG_NONE)
		seg_of(st, best)->state = SEG_BUSY;
	unlock(st);
	return best;
}

/* Empty one disk segment into dopen and free its slot. */
static int compact_one(struct store *st, uint32_t max_live)
{
	uint32_t id = pick_victim(st, max_live);
	struct seg *v;
	int err;

	if (id == SEG_NONE)
		return -ENOSPC;
	v = seg_of(st, id);
	/* Its slot and contents stay until released below: readers may
	 * still read it from disk meanwhile. */
	err = io_read(st->io, IO_WBUF_GC, (uint64_t)v->slot * SEG_SIZE,
		      ((size_t)v->used + PAGE_SIZE - 1) & PAGE_MASK);
	if (err)
		count(&st->io_errors);
	else
		err = migrate(st, id, io_wbuf(st->io, IO_WBUF_GC));
	wrlock(st);
	if (err) {
		seg_unbusy(st, id);
	} else {
		seg_release(st, id);
		st->compactions++;
	}
	unlock(st);
	return err;
}

/* Free slots by emptying the sparsest disk segments: up to 3/4 live when
 * slots are short, up to 1/2 when only utilisation is low. */
static int compact(struct store *st)
{
	int err = 0;

	st->in_gc = true;
	for (int n = 0; n < GC_MAX_VICTIMS && gc_wanted(st); n++) {
		uint32_t max_live;

		rdlock(st);
		max_live = st->free_slots <= GC_RESERVE ? SEG_SIZE * 3 / 4 :
							  SEG_SIZE / 2;
		unlock(st);
		err = compact_one(st, max_live);
		if (err)
			break;
	}
	st->in_gc = false;
	return err;
}

/* ---- the remote tier (put_lock) ------------------------------------------ */

/* An index freed and reused within one segment is twice in its summary:
 * sent once. */
static bool in_batch(const struct store *st, unsigned n, uint32_t idx)
{
	for (unsigned k = 0; k < n; k++)
		if (st->push_idx[k] == idx)
			return true;
	return false;
}

/* Seal the next live objects of busy segment `id` (from summary entry *i
 * on) into the push buffer, at most PUSH_MAX.  Returns how many. */
static unsigned push_fill(struct store *st, uint32_t id, const char *src,
			  uint32_t *i)
{
	struct seg *s = seg_of(st, id);
	size_t used = 0;
	unsigned n = 0;

	for (; *i < s->nsum && n < PUSH_MAX; (*i)++) {
		uint32_t idx = s->sum[*i];
		struct obj *o = obj_at(st, idx);
		uint32_t off, len;
		uint64_t ver;
		bool live, copy;

		rdlock(st);
		live = o->refs && o->seg == id;
		copy = o->owner != NULL;
		off = o->off;
		len = o->len;
		ver = o->ver;
		unlock(st);
		if (!live || in_batch(st, n, idx) ||
		    (copy && drop_copy(st, id, idx)))
			continue;
		if (used + len + SEAL_TAG > PUSH_BUF)
			break;
		st->items[n] = (struct remote_item){
			.key = idx, .val = st->pushbuf + used,
			.len = (uint32_t)seal_encrypt(st->seal, idx, ver,
						    src + off, len,
						    st->pushbuf + used),
		};
		st->push_idx[n] = idx;
		used += st->items[n].len;
		n++;
	}
	return n;
}

/* Move the objects the cluster stored to the remote tier; one freed
 * meanwhile has its key deleted with the next batch. */
static unsigned push_publish(struct store *st, uint32_t id, unsigned n)
{
	unsigned stored = 0;

	wrlock(st);
	for (unsigned k = 0; k < n; k++) {
		struct obj *o = obj_at(st, st->push_idx[k]);

		/* A set that timed out may have been stored all the
		 * same: its key is swept at destroy too. */
		st->remote_hiwater = MAX(st->remote_hiwater, st->push_idx[k]);
		if (st->items[k].res)
			continue;
		stored++;
		if (!o->refs || o->seg != id) {
			if (st->ndelq < DELQ_MAX)
				st->delq[st->ndelq++] = st->push_idx[k];
			continue;
		}
		live_add(st, seg_of(st, id), -(int64_t)o->len, -1);
		o->seg = SEG_REMOTE;
		o->len = (uint16_t)st->items[k].len;
		o->sealed = 1;
		st->remote_objects++;
		st->remote_bytes += o->len;
	}
	st->remote_refused += n - stored;
	unlock(st);
	return stored;
}

/*
 * Push the live objects of busy RAM segment `id` to the cluster, sealed,
 * PUSH_MAX per batch (one network round trip each, the deletes of freed
 * remote objects riding along).  What the cluster refuses (full, or its
 * server down) stays in the segment for migrate() to write to the file;
 * after a batch it refused entirely, the rest of the segment goes there
 * too.
 */
static void push_seg(struct store *st, uint32_t id, const char *src)
{
	uint64_t del[DELQ_MAX];
	uint32_t i = 0;
	unsigned n, ndel;

	for (;;) {
		n = push_fill(st, id, src, &i);
		wrlock(st);
		ndel = st->ndelq;
		memcpy(del, st->delq, ndel * sizeof(del[0]));
		st->ndelq = 0;
		unlock(st);
		if (!n && !ndel)
			return;
		remote_set(st->remote, st->items, n, del, ndel);
		if (!n || !push_publish(st, id, n))
			return;
	}
}

/* Write out the oldest RAM segments until at most `target` remain. */
static int shrink_ram(struct store *st, uint32_t target)
{
	for (;;) {
		uint32_t id;
		int err;

		wrlock(st);
		id = st->fifo_count > target ? st->fifo_head : SEG_NONE;
		if (id != SEG_NONE) {
			fifo_remove(st, seg_of(st, id));
			seg_of(st, id)->state = SEG_BUSY;
		}
		unlock(st);
		if (id == SEG_NONE)
			return 0;
		if (st->remote && !st->remote_closed)
			push_seg(st, id, seg_of(st, id)->buf);
		err = migrate(st, id, seg_of(st, id)->buf);
		wrlock(st);
		if (err)
			seg_unbusy(st, id);
		else
			seg_release(st, id);
		unlock(st);
		if (err)
			return err;
	}
}

/* Seal the open segment onto the RAM FIFO. */
static void seal_open(struct store *st)
{
	if (st->open == SEG_NONE)
		return;
	wrlock(st);
	if (seg_of(st, st->open)->live)
		fifo_add(st, st->open, false);
	else
		seg_release(st, st->open);
	SET_RELAXED(st->open, SEG_NONE);
	unlock(st);
}

/* Find room for `len` bytes in the open segment, sealing a full one and
 * writing out the oldest RAM segments beyond the limit. */
static long open_room(struct store *st, size_t len)
{
	long pos = seg_fit(st, st->open, len);
	char *buf;
	int err;

	if (pos >= 0)
		return pos;
	/* A write-out failed last time: do not grow the RAM tier further
	 * until it succeeds. */
	err = shrink_ram(st, atomic_load_explicit(&st->ram_cap,
						  memory_order_relaxed));
	if (err)
		return err;
	buf = mem_alloc(SEG_SIZE);
	if (!buf)
		return -ENOMEM;
	seal_open(st);
	wrlock(st);
	SET_RELAXED(st->open, seg_alloc(st, SEG_OPEN, buf));
	unlock(st);
	if (st->open == SEG_NONE) {
		mem_free(buf, SEG_SIZE);
		return -ENOSPC;
	}
	/* Errors here are retried by the next seal, above. */
	err = shrink_ram(st, atomic_load_explicit(&st->ram_cap,
						  memory_order_relaxed));
	if (err && err != -ENOSPC)
		log_warn("store: RAM tier over its limit: %s", strerror(-err));
	return 0;
}

/* ---- the API ------------------------------------------------------------- */

/* A copy is worth its RAM only when it takes at most half a page. */
#define COPY_MAX_LEN (PAGE_SIZE / 2)

/* Place `len` bytes of a packed page (compressed, or raw when len is
 * PAGE_SIZE) in the open segment as a new object.  Caller holds put_lock. */
static int put_packed(struct store *st, const void *src, size_t len,
		      void *owner, uint64_t *handle)
{
	uint32_t csum = codec_checksum(src, len, 0), idx;
	struct seg *s;
	long pos;
	int err;

	pos = open_room(st, len);
	if (pos < 0)
		return (int)pos;
	s = seg_of(st, st->open);
	err = sum_reserve(s);
	if (err)
		return err;
	memcpy(s->buf + pos, src, len);

	wrlock(st);
	err = obj_new(st, &idx);
	if (!err) {
		struct obj *o = obj_at(st, idx);

		o->refs = 1;
		o->len = (uint16_t)len;
		o->csum = csum;
		o->owner = owner;
		o->sealed = 0;
		o->ver = ++st->ver;
		obj_place(st, idx, st->open, pos);
		st->objects++;
		st->copies += owner != NULL;
		st->bytes_in += PAGE_SIZE;
		st->bytes_stored += len;
		st->raw_pages += len == PAGE_SIZE;
		*handle = (uint64_t)o->gen << 32 | idx;
	}
	unlock(st);
	return err;
}

/* Compress `page` (raw if it does not shrink) into the open segment,
 * where it is not placed yet: *len and *csum describe the bytes at the
 * position returned.  Negative errno if there is no room.  Caller holds
 * put_lock. */
static long open_append(struct store *st, const void *page, size_t *len,
			uint32_t *csum)
{
	const void *src;
	long pos;
	int err;

	*len = codec_compress(st->codec, page, st->scratch);
	src = *len ? st->scratch : page;
	*len = *len ? *len : PAGE_SIZE;
	*csum = codec_checksum(src, *len, 0);
	pos = open_room(st, *len);
	err = pos < 0 ? (int)pos : sum_reserve(seg_of(st, st->open));
	if (err)
		return err;
	memcpy(seg_of(st, st->open)->buf + pos, src, *len);
	return pos;
}

/* The oldest object on probation, `handle`, is compressed into the open
 * segment, unless it left meanwhile.  Caller holds put_lock: nothing else
 * writes slots or moves objects, so the slot's page stays as it is. */
static int age_out(struct store *st, uint64_t handle)
{
	uint32_t idx = (uint32_t)handle, slot, csum;
	struct obj *o;
	size_t len;
	long pos;

	rdlock(st);
	o = obj_lookup(st, handle);
	slot = o && o->seg == SEG_PROBATION ? o->off : UINT32_MAX;
	unlock(st);
	if (slot == UINT32_MAX)
		return 0;
	pos = open_append(st, probation_page(st->prob, slot), &len, &csum);
	if (pos < 0) {
		/* Kept on probation, queued again: the next put retries. */
		probation_queue(st->prob, handle);
		return (int)pos;
	}
	wrlock(st);
	/* Freed meanwhile (its slot released then): the bytes just copied
	 * are left unplaced and the next put writes over them. */
	o = obj_lookup(st, handle);
	if (o && o->seg == SEG_PROBATION) {
		o->len = (uint16_t)len;
		o->csum = csum;
		obj_place(st, idx, st->open, pos);
		probation_release(st->prob, slot);
		st->bytes_stored += len;
		st->raw_pages += len == PAGE_SIZE;
		st->aged++;
	}
	unlock(st);
	return 0;
}

/* Put a page on probation, ageing the oldest out first when the list is
 * full.  Caller holds put_lock. */
static int put_young(struct store *st, const void *page, uint64_t *handle)
{
	uint32_t csum = codec_checksum(page, PAGE_SIZE, 0), idx;
	struct obj *o;
	int32_t slot;
	int err;

	for (;;) {
		uint64_t oldest;

		/* store_free gives slots back under the lock. */
		wrlock(st);
		slot = probation_has_room(st->prob) ? probation_take(st->prob)
						    : -1;
		unlock(st);
		if (slot >= 0)
			break;
		oldest = probation_oldest(st->prob);
		err = oldest ? age_out(st, oldest) : -ENOSPC;
		if (err)
			return err;
	}
	memcpy(probation_page(st->prob, (uint32_t)slot), page, PAGE_SIZE);
	wrlock(st);
	err = obj_new(st, &idx);
	if (err) {
		probation_release(st->prob, (uint32_t)slot);
	} else {
		o = obj_at(st, idx);
		o->refs = 1;
		o->len = PAGE_SIZE;
		o->csum = csum;
		o->owner = NULL;
		o->sealed = 0;
		o->ver = ++st->ver;
		o->seg = SEG_PROBATION;
		o->off = (uint32_t)slot;
		st->objects++;
		st->bytes_in += PAGE_SIZE;
		*handle = (uint64_t)o->gen << 32 | idx;
		probation_queue(st->prob, *handle);
	}
	unlock(st);
	return err;
}

static int put(struct store *st, const void *page, void *owner,
	       uint64_t *handle)
{
	size_t len;
	int err = -E2BIG;

	pthread_mutex_lock(&st->put_lock);
	if (st->prob && !owner) {
		err = put_young(st, page, handle);
		pthread_mutex_unlock(&st->put_lock);
		return err;
	}
	len = codec_compress(st->codec, page, st->scratch);
	if (!owner || (len != 0 && len <= COPY_MAX_LEN))
		err = len ? put_packed(st, st->scratch, len, owner, handle) :
			    put_packed(st, page, PAGE_SIZE, owner, handle);
	pthread_mutex_unlock(&st->put_lock);
	return err;
}

int store_put(struct store *st, const void *page, uint64_t *handle)
{
	return put(st, page, NULL, handle);
}

int store_put_packed(struct store *st, const void *src, size_t len,
		     uint64_t *handle)
{
	int err;

	if (len == 0 || len > PAGE_SIZE)
		return -EINVAL;
	pthread_mutex_lock(&st->put_lock);
	err = put_packed(st, src, len, NULL, handle);
	pthread_mutex_unlock(&st->put_lock);
	return err;
}

/* Decode `len` packed bytes of a page (PAGE_SIZE: raw) into `page`. */
static int unpack(struct codec *c, const void *src, size_t len, void *page)
{
	if (len == PAGE_SIZE) {
		memcpy(page, src, PAGE_SIZE);
		return 0;
	}
	return codec_decompress(c, src, len, page) ? -EILSEQ : 0;
}

int store_unpack(struct store *st, const void *src, size_t len, void *page)
{
	if (len == 0 || len > PAGE_SIZE)
		return -EILSEQ;
	return unpack(st->codec, src, len, page);
}

int store_put_copy(struct store *st, const void *page, void *owner,
		   uint64_t *handle)
{
	if (!st->drop || !st->ram_cap_max || !owner)
		return -EOPNOTSUPP;
	return put(st, page, owner, handle);
}

/* Checked before decoding: the codecs are not asked to make sense of
 * bytes that are not what was stored. */
static int check(const void *src, size_t len, uint32_t csum)
{
	if (len == 0 || len > PAGE_SIZE)
		return -EILSEQ;
	return codec_checksum(src, len, 0) != csum ? -EBADMSG : 0;
}

int store_decode(struct codec *c, const void *src, size_t len, uint32_t csum,
		 void *page)
{
	int err = check(src, len, csum);

	return err ? err : unpack(c, src, len, page);
}

/* Open (sealed) or check, and decode, `len` stored bytes of object o into
 * `page`; with `packed`, copy them there checked but still compressed, and
 * set *packed to their length.  -EBADMSG when they do not open or match:
 * `where` says whence, for the log. */
static int bytes_decode(struct store *st, const char *src, size_t len,
			const struct obj *o, uint64_t handle, void *page,
			size_t *packed, const char *where)
{
	char plain[PAGE_SIZE];
	uint32_t csum = o->csum;
	int err;

	if (o->sealed) {
		err = seal_decrypt(st->seal, (uint32_t)handle, o->ver, src, len,
				plain);
		if (err < 0) {
			count(&st->seal_errors);
			log_error("store: handle %#llx from %s does not open "
				  "(tampered, stale, or another key's value)",
				  (unsigned long long)handle, where);
			return -EBADMSG;
		}
		/* Opened: authenticated, which a checksum adds nothing to. */
		src = plain;
		len = (size_t)err;
		csum = codec_checksum(src, len, 0);
	}
	if (packed) {
		err = check(src, len, csum);
		if (!err) {
			memcpy(page, src, len);
			*packed = len;
		}
	} else {
		err = store_decode(st->codec, src, len, csum, page);
	}
	if (err == -EBADMSG) {
		count(&st->checksum_errors);
		log_error("store: checksum mismatch, handle %#llx from %s",
			  (unsigned long long)handle, where);
	} else if (err) {
		log_error("store: handle %#llx does not decompress",
			  (unsigned long long)handle);
	}
	/* Either way the page is lost: one error for the caller. */
	return err ? -EBADMSG : 0;
}

/* Check and decode a stored object into `page` (packed: as bytes_decode). */
static int obj_decode(struct store *st, const char *src, const struct obj *o,
		      uint64_t handle, void *page, size_t *packed)
{
	return bytes_decode(st, src, o->len, o, handle, page, packed,
			    "the store");
}

/* Where the bytes of object o (not on the cluster) are in RAM: its
 * probation slot or its RAM-tier segment; NULL when it is on disk.  Lock
 * held: the buffer stays while it is. */
static char *obj_in_ram(struct store *st, const struct obj *o)
{
	struct seg *s;

	if (o->seg == SEG_PROBATION)
		return probation_page(st->prob, o->off);
	s = seg_of(st, o->seg);
	return s->buf ? s->buf + o->off : NULL;
}

/* Decode object o from RAM (obj_in_ram) and count the read. */
static int ram_decode(struct store *st, const char *src, const struct obj *o,
		      uint64_t handle, void *page, size_t *packed)
{
	count(&st->reads_ram);
	if (o->seg == SEG_PROBATION)
		count(&st->reads_probation);
	return obj_decode(st, src, o, handle, page, packed);
}

/* Decode a value fetched from copy `copy` on the cluster, logging why
 * one is not the object.  res: remote_item.res. */
static int remote_decode(struct store *st, const struct obj *o,
			 uint64_t handle, const struct remote_item *it,
			 unsigned copy, void *page, size_t *packed, bool quiet)
{
	char where[128];

	snprintf(where, sizeof(where), "server %s (copy %u)",
		 remote_server_name(st->remote, it->server), copy);
	if (it->res >= 0)
		return bytes_decode(st, it->buf, (size_t)it->res, o, handle,
				    page, packed, where);
	if (quiet)
		return it->res;
	log_error("store: handle %#llx not read from %s: %s",
		  (unsigned long long)handle, where,
		  it->res == -ENOENT ? "missing (server restarted, evicted "
				       "or deleted)" :
		  it->res == -EHOSTDOWN ? "server marked dead after a failure" :
		  it->res == -ETIMEDOUT ? "timed out" : strerror(-it->res));
	return it->res;
}

/* Read a remote object: its primary copy, then its replicas.  -EBADMSG
 * (the caller poisons the page) when no copy opens. */
static int get_remote(struct store *st, uint64_t handle, struct obj copy,
		      void *page, size_t *packed)
{
	char buf[PAGE_SIZE + SEAL_TAG];

	for (unsigned c = 0; c <= remote_replicas(st->remote); c++) {
		struct remote_item it = { .key = (uint32_t)handle, .buf = buf,
					  .cap = sizeof(buf) };

		remote_get(st->remote, c, &it, 1);
		if (remote_decode(st, &copy, handle, &it, c, page, packed,
				  false) == 0) {
			count(&st->reads_remote);
			return 0;
		}
	}
	count(&st->remote_lost);
	return -EBADMSG;
}

/* What a page-in wants of a disk segment: the blocks [lo, hi) its
 * objects lie in, or the whole segment (used bytes) if that pays. */
struct seg_read {
	uint32_t id, epoch, used;
	int slot;		/* -1: none */
	uint32_t lo, hi;
};

/* Add the blocks of object o to sr's span. */
static void seg_read_add(struct seg_read *sr, const struct obj *o)
{
	uint32_t lo = o->off & (uint32_t)PAGE_MASK;
	uint32_t hi = (o->off + o->len + (uint32_t)PAGE_SIZE - 1) &
		      (uint32_t)PAGE_MASK;

	sr->lo = MIN(sr->lo, lo);
	sr->hi = MAX(sr->hi, hi);
}

/* The label of a segment's contents in a reader's buffer: which segment
 * and which epoch (a released segment's id and slot are reused). */
static uint64_t seg_tag(const struct seg_read *sr)
{
	return (uint64_t)sr->epoch << 32 | sr->id;
}

/*
 * Whether the next read of a segment should read it whole.  Pages evicted
 * together come back together, so the next page-ins after one from the
 * swap file are mostly from the same segment: of the reads of python3 and
 * sqlite3 at half their peak, 87% and 78% were of the segment read just
 * before, 92% and 95% of one of the last four (the four readers).  A
 * whole segment (128 KiB) takes 83 us to read on this machine's disk
 * where one block takes 49, so it pays when at least three page-ins in
 * four whole reads find their segment held; reads at random over a large
 * working set find none, and there it cost swap-random 13% of its
 * throughput.  Counted over the last WHOLE_WINDOW whole reads; while it
 * does not pay, one read in WHOLE_SAMPLE is whole all the same, so that
 * the counts follow the program.  Racy by design: a hint.
 */
#define WHOLE_WINDOW 64
#define WHOLE_SAMPLE 8

static bool whole_pays(struct store *st)
{
	uint32_t n = atomic_fetch_add_explicit(&st->seg_misses, 1,
					       memory_order_relaxed);

	return n % WHOLE_SAMPLE == 0 ||
	       4 * atomic_load_explicit(&st->whole_reused,
					memory_order_relaxed) >=
		       3 * atomic_load_explicit(&st->whole_reads,
						memory_order_relaxed);
}

static void whole_count(struct store *st, _Atomic uint32_t *c)
{
	tally_count(c, &st->whole_reads, &st->whole_reused, WHOLE_WINDOW);
}

/*
 * A reader holding what sr wants, taken: one that read the whole segment
 * for an earlier page-in, or one that reads it now (*read; *err says how
 * the read went), whole if that pays, else only sr's span.  *base: where
 * in the segment the reader's buffer starts.
 */
static struct io_reader *seg_reader(struct store *st,
				    const struct seg_read *sr, uint32_t *base,
				    int *err, bool *read)
{
	struct io_reader *r = io_reader_find(st->io, seg_tag(sr));
	bool whole;

	*err = 0;
	*base = 0;
	*read = r == NULL;
	if (r) {
		whole_count(st, &st->whole_reused);
		return r;
	}
	whole = whole_pays(st);
	*base = whole ? 0 : sr->lo;
	r = io_reader_get(st->io);
	*err = io_reader_read(r, (uint64_t)sr->slot * SEG_SIZE + *base,
			      whole ? ((size_t)sr->used + PAGE_SIZE - 1) &
					      PAGE_MASK
				    : sr->hi - sr->lo);
	if (*err) {
		count(&st->io_errors);
	} else if (whole) {
		io_reader_set_tag(r, seg_tag(sr));
		whole_count(st, &st->whole_reads);
		count(&st->reads_whole);
	}
	return r;
}

/*
 * Decode object `copy` from r's buffer, which holds its segment as it was
 * at `epoch` (seg_reader; `read`: read for this call; err: how the read
 * went).  Returns 1 if the segment was released since (the object moved:
 * the bytes may be another's), -EIO for a failed read, else as
 * obj_decode.  Caller holds the read lock.
 */
static int decode_read(struct store *st, const struct io_reader *r,
		       uint32_t base, bool read, int err,
		       const struct obj *copy, uint32_t epoch,
		       uint64_t handle, void *page, size_t *packed)
{
	if (seg_of(st, copy->seg)->epoch != epoch)
		return 1;
	if (err)
		return -EIO;
	count(read ? &st->reads_disk : &st->reads_reread);
	if (!read)
		count(&st->reads_ram);
	return obj_decode(st, (const char *)io_reader_buf(r) +
				      (copy->off - base),
			  copy, handle, page, packed);
}

/* Read a disk object through a reader.  Returns 1 if its segment was
 * recycled meanwhile (the object moved: look it up again). */
static int get_disk(struct store *st, uint64_t handle, struct obj copy,
		    const struct seg_read *sr, void *page, size_t *packed,
		    bool *from_disk)
{
	struct io_reader *r;
	uint32_t base;
	bool read;
	int err;

	r = seg_reader(st, sr, &base, &err, &read);
	if (from_disk)
		*from_disk = read;
	rdlock(st);
	err = decode_read(st, r, base, read, err, &copy, sr->epoch, handle,
			  page, packed);
	unlock(st);
	io_reader_put(r);
	return err;
}

static int get(struct store *st, uint64_t handle, void *page,
	       bool *from_disk, size_t *packed)
{
	struct obj *o, copy;
	struct seg_read sr;
	struct seg *s;
	const char *src;
	int err;

	do {
		rdlock(st);
		o = obj_lookup(st, handle);
		if (!o) {
			unlock(st);
			return -EINVAL;
		}
		if (o->seg == SEG_REMOTE) {
			copy = *o;
			unlock(st);
			if (from_disk)
				*from_disk = true;
			return get_remote(st, handle, copy, page, packed);
		}
		src = obj_in_ram(st, o);
		if (src) {
			/* Decoded in place; the read lock keeps the buffer. */
			err = ram_decode(st, src, o, handle, page, packed);
			unlock(st);
			if (from_disk)
				*from_disk = false;
			return err;
		}
		s = seg_of(st, o->seg);
		copy = *o;
		sr = (struct seg_read){ o->seg, s->epoch, s->used, s->slot,
					UINT32_MAX, 0 };
		seg_read_add(&sr, o);
		unlock(st);
		err = get_disk(st, handle, copy, &sr, page, packed, from_disk);
	} while (err == 1);
	return err;
}

int store_get(struct store *st, uint64_t handle, void *page, bool *from_disk)
{
	return get(st, handle, page, from_disk, NULL);
}

int store_get_packed(struct store *st, uint64_t handle, void *buf,
		     size_t *len)
{
	return get(st, handle, buf, NULL, len);
}

/* An object of a read-ahead on disk: where it was when looked up. */
struct ahead_obj {
	struct obj copy;
	uint32_t epoch;
	bool want;
	bool remote;		/* on the cluster: fetched by one multi-get */
};

/* Decode the objects in the RAM tier, and pick the disk objects that one
 * read fetches, those of the first one's segment (*sr; slot -1 if there
 * is none).  Caller holds the read lock. */
static void ahead_span(struct store *st, const uint64_t *handles, unsigned n,
		       char *pages, size_t *lens, int *res,
		       struct ahead_obj *a, struct seg_read *sr)
{
	sr->slot = -1;
	for (unsigned i = 0; i < n; i++) {
		struct obj *o = obj_lookup(st, handles[i]);
		const char *src;
		struct seg *s;

		res[i] = -EAGAIN;
		if (!o) {
			res[i] = -EINVAL;
			continue;
		}
		if (o->seg == SEG_REMOTE) {
			a[i] = (struct ahead_obj){ *o, 0, false, true };
			continue;
		}
		src = obj_in_ram(st, o);
		if (src) {
			res[i] = ram_decode(st, src, o, handles[i],
					    pages + (size_t)i * PAGE_SIZE,
					    lens ? &lens[i] : NULL);
			continue;
		}
		s = seg_of(st, o->seg);
		if (sr->slot < 0)
			*sr = (struct seg_read){ o->seg, s->epoch, s->used,
						 s->slot, UINT32_MAX, 0 };
		else if (o->seg != sr->id)
			continue;
		seg_read_add(sr, o);
		a[i] = (struct ahead_obj){ *o, s->epoch, true, false };
	}
}

/* The read-ahead's objects on the cluster, with one multi-get of their
 * primary copies.  One that does not come stays -EAGAIN: its own fault
 * tries the replicas, and reports it lost. */
static void ahead_remote(struct store *st, const uint64_t *handles,
			 unsigned n, char *pages, size_t *lens, int *res,
			 const struct ahead_obj *a)
{
	char buf[STORE_AHEAD_MAX][PAGE_SIZE + SEAL_TAG];
	struct remote_item it[STORE_AHEAD_MAX];
	unsigned map[STORE_AHEAD_MAX], m = 0;

	for (unsigned i = 0; i < n; i++) {
		if (!a[i].remote)
			continue;
		it[m] = (struct remote_item){ .key = (uint32_t)handles[i],
					      .buf = buf[m],
					      .cap = sizeof(buf[m]) };
		map[m++] = i;
	}
	if (!m)
		return;
	remote_get(st->remote, 0, it, m);
	for (unsigned k = 0; k < m; k++) {
		unsigned i = map[k];

		/* Not logged: its own fault tries again, and logs. */
		if (remote_decode(st, &a[i].copy, handles[i], &it[k], 0,
				  pages + (size_t)i * PAGE_SIZE,
				  lens ? &lens[i] : NULL, true) == 0) {
			count(&st->reads_remote);
			res[i] = 1;
		}
	}
}

static void get_ahead(struct store *st, const uint64_t *handles, unsigned n,
		      char *pages, size_t *lens, int *res)
{
	struct ahead_obj a[STORE_AHEAD_MAX] = { 0 };
	struct io_reader *r;
	struct seg_read sr;
	uint32_t base;
	bool read;
	int err;

	n = MIN(n, STORE_AHEAD_MAX);
	rdlock(st);
	ahead_span(st, handles, n, pages, lens, res, a, &sr);
	unlock(st);
	if (st->remote)
		ahead_remote(st, handles, n, pages, lens, res, a);
	if (sr.slot < 0)
		return;
	r = seg_reader(st, &sr, &base, &err, &read);
	rdlock(st);
	for (unsigned i = 0; i < n; i++) {
		int rc;

		if (!a[i].want)
			continue;
		rc = decode_read(st, r, base, read, err, &a[i].copy,
				 a[i].epoch, handles[i],
				 pages + (size_t)i * PAGE_SIZE,
				 lens ? &lens[i] : NULL);
		/* Moved during the read: simply not read ahead.  1 for a
		 * page that needed the read, as for any from the disk. */
		res[i] = rc == 1 ? -EAGAIN : rc ?: read;
	}
	unlock(st);
	io_reader_put(r);
}

void store_get_ahead(struct store *st, const uint64_t *handles, unsigned n,
		     char *pages, int *res)
{
	get_ahead(st, handles, n, pages, NULL, res);
}

void store_get_ahead_packed(struct store *st, const uint64_t *handles,
			    unsigned n, char *bufs, size_t *lens, int *res)
{
	get_ahead(st, handles, n, bufs, lens, res);
}

void store_ref(struct store *st, uint64_t handle)
{
	struct obj *o;

	wrlock(st);
	o = obj_lookup(st, handle);
	if (o && o->refs < UINT32_MAX)
		o->refs++;
	if (o && o->owner) {
		/* Shared now: its owner is no longer the only one to ask. */
		o->owner = NULL;
		st->copies--;
	}
	unlock(st);
	if (!o)
		log_warn("store: ref of bad handle %#llx",
			 (unsigned long long)handle);
}

bool store_promotable(struct store *st, uint64_t handle)
{
	struct obj *o;
	bool far;

	if (store_ram_bytes(st) + 2 * SEG_SIZE > store_ram_limit(st))
		return false;
	rdlock(st);
	o = obj_lookup(st, handle);
	far = o && !o->owner && o->seg != SEG_REMOTE &&
	      o->seg != SEG_PROBATION && seg_of(st, o->seg)->state == SEG_DISK;
	unlock(st);
	return far;
}

/* Take the object out of its disk segment, to be placed anew; a segment
 * left empty frees its slot.  lock held for writing. */
static void leave_disk(struct store *st, struct obj *o)
{
	struct seg *s = seg_of(st, o->seg);

	live_add(st, s, -(int64_t)o->len, -1);
	if (s->live == 0)
		seg_release(st, o->seg);
}

int store_promote(struct store *st, uint64_t handle, const void *page)
{
	uint32_t idx = (uint32_t)handle, csum, from;
	struct obj *o;
	size_t len;
	long pos;
	int err = 0;

	pthread_mutex_lock(&st->put_lock);
	rdlock(st);
	o = obj_lookup(st, handle);
	from = o ? o->seg : SEG_NONE;
	unlock(st);
	if (from == SEG_NONE || from == SEG_REMOTE || from == SEG_PROBATION ||
	    seg_of(st, from)->state != SEG_DISK)
		goto out;
	pos = open_append(st, page, &len, &csum);
	if (pos < 0) {
		err = (int)pos;
		goto out;
	}
	wrlock(st);
	/* Freed, or moved by compaction, meanwhile: the bytes just copied
	 * are left unplaced and the next put writes over them. */
	o = obj_lookup(st, handle);
	if (o && o->seg == from && seg_of(st, from)->state == SEG_DISK) {
		leave_disk(st, o);
		o->len = (uint16_t)len;
		o->csum = csum;
		o->sealed = 0;
		o->ver = ++st->ver;
		obj_place(st, idx, st->open, pos);
		st->promoted++;
		err = 1;
	}
	unlock(st);
out:
	pthread_mutex_unlock(&st->put_lock);
	return err;
}

void store_free(struct store *st, uint64_t handle)
{
	struct obj *o;
	struct seg *s;

	wrlock(st);
	o = obj_lookup(st, handle);
	if (o && o->refs == 1 && o->seg == SEG_REMOTE) {
		/* Its key goes with the next batch, or at destroy. */
		st->remote_objects--;
		st->remote_bytes -= o->len;
		if (st->ndelq < DELQ_MAX)
			st->delq[st->ndelq++] = (uint32_t)handle;
		obj_forget(st, (uint32_t)handle);
	} else if (o && --o->refs == 0 && o->seg == SEG_PROBATION) {
		probation_release(st->prob, o->off);
		obj_forget(st, (uint32_t)handle);
	} else if (o && o->refs == 0) {
		s = seg_of(st, o->seg);
		live_add(st, s, -(int64_t)o->len, -1);
		/* Open, dopen and busy segments belong to the put path. */
		if (s->live == 0 && (s->state == SEG_RAM ||
				     s->state == SEG_DISK))
			seg_release(st, o->seg);
		obj_forget(st, (uint32_t)handle);
	}
	unlock(st);
	if (!o)
		log_warn("store: free of bad handle %#llx",
			 (unsigned long long)handle);
}

void store_set_ram_limit(struct store *st, uint64_t bytes)
{
	uint64_t cap = MIN(bytes / SEG_SIZE, (uint64_t)st->ram_cap_max);

	/* Lowered, the tier drains to its new size at the next seal. */
	atomic_store_explicit(&st->ram_cap, (uint32_t)cap,
			      memory_order_relaxed);
}

uint64_t store_ram_limit(struct store *st)
{
	return (uint64_t)atomic_load_explicit(&st->ram_cap,
					      memory_order_relaxed) * SEG_SIZE;
}

uint64_t store_ram_bytes(struct store *st)
{
	/* Updated under the store lock; torn-free relaxed reads are all the
	 * budget check needs.  The segments' memory, not only their live
	 * bytes: objects freed (a page written, a copy faulted back) leave
	 * holes that stay allocated until the segment leaves the RAM tier. */
	uint64_t live = __atomic_load_n(&st->ram_bytes, __ATOMIC_RELAXED);
	uint64_t held = __atomic_load_n(&st->fifo_count, __ATOMIC_RELAXED) +
			(__atomic_load_n(&st->open, __ATOMIC_RELAXED) !=
			 SEG_NONE);

	return MAX(live, held * SEG_SIZE) + probation_bytes(st->prob);
}

void store_reads(struct store *st, uint64_t *ram, uint64_t *far)
{
	*ram = atomic_load_explicit(&st->reads_ram, memory_order_relaxed);
	*far = atomic_load_explicit(&st->reads_disk, memory_order_relaxed) +
	       atomic_load_explicit(&st->reads_remote, memory_order_relaxed);
}

void store_get_stats(struct store *st, struct store_stats *out)
{
	rdlock(st);
	*out = (struct store_stats){
		.objects = st->objects,
		.bytes_in = st->bytes_in,
		.bytes_stored = st->bytes_stored,
		.raw_pages = st->raw_pages,
		.ram_bytes = st->ram_bytes + probation_bytes(st->prob),
		.disk_bytes = st->disk_bytes,
		.file_bytes = st->file_bytes,
		.reads_ram = atomic_load(&st->reads_ram),
		.reads_disk = atomic_load(&st->reads_disk),
		.compactions = st->compactions,
		.promoted = st->promoted,
		.copies = st->copies,
		.dropped = st->dropped,
		.io_errors = atomic_load(&st->io_errors),
		.checksum_errors = atomic_load(&st->checksum_errors),
		.sync_io = io_is_sync(st->io),
		.ram_objects = st->ram_objects,
		.disk_objects = st->disk_objects,
		.remote_objects = st->remote_objects,
		.remote_bytes = st->remote_bytes,
		.remote_refused = st->remote_refused,
		.reads_remote = atomic_load(&st->reads_remote),
		.remote_lost = atomic_load(&st->remote_lost),
		.seal_errors = atomic_load(&st->seal_errors),
		.probation_pages = probation_pages(st->prob),
		.probation_aged = st->aged,
		.reads_probation = atomic_load(&st->reads_probation),
		.reads_reread = atomic_load(&st->reads_reread),
		.reads_whole = atomic_load(&st->reads_whole),
	};
	unlock(st);
	if (st->remote)
		remote_get_stats(st->remote, &out->remote);
}

int store_flush(struct store *st)
{
	int err;

	pthread_mutex_lock(&st->put_lock);
	seal_open(st);
	err = shrink_ram(st, 0);
	if (!err && st->dopen != SEG_NONE)
		err = dopen_write(st);
	pthread_mutex_unlock(&st->put_lock);
	return err;
}

void store_inject(struct store *st, enum store_fault_inject what)
{
	if (what == STORE_INJECT_READ_EIO)
		io_inject(st->io, IO_FAIL_READ);
	else if (what == STORE_INJECT_WRITE_EIO)
		io_inject(st->io, IO_FAIL_WRITE);
	else
		io_inject(st->io, IO_FAIL_NONE);
}

/* Flip a byte of a disk object: read its block, change it, write it. */
static int corrupt_disk(struct store *st, int slot, uint32_t off)
{
	uint64_t block = (uint64_t)slot * SEG_SIZE + (off & PAGE_MASK);
	char *buf = io_wbuf(st->io, IO_WBUF_GC);
	int err;

	err = io_read(st->io, IO_WBUF_GC, block, PAGE_SIZE);
	if (err)
		return err;
	buf[off & (PAGE_SIZE - 1)] ^= 0x5a;
	return io_write(st->io, IO_WBUF_GC, block, PAGE_SIZE);
}

int store_corrupt(struct store *st, uint64_t handle)
{
	struct obj *o;
	char *p;
	int err = 0, slot = -1;
	uint32_t off = 0;

	/* put_lock: no one copies or writes the object meanwhile. */
	pthread_mutex_lock(&st->put_lock);
	wrlock(st);
	o = obj_lookup(st, handle);
	if (!o) {
		err = -EINVAL;
	} else if (o->seg == SEG_REMOTE) {
		err = -EOPNOTSUPP;	/* tests tamper on the server */
	} else if ((p = obj_in_ram(st, o))) {
		p[0] ^= 0x5a;
	} else {
		off = o->off;
		slot = seg_of(st, o->seg)->slot;
	}
	unlock(st);
	if (slot >= 0)
		err = corrupt_disk(st, slot, off);
	/* Readers holding the segment hold it as it was. */
	io_forget(st->io);
	pthread_mutex_unlock(&st->put_lock);
	return err;
}

/* ---- creation ------------------------------------------------------------ */

/* The seal and the remote tier, when asked for.  A cluster that does not
 * answer is an error, or with remote_optional a warning and no tier. */
static int store_start_sealed(struct store *st, const struct store_config *cfg)
{
	bool remote = cfg->remote && *cfg->remote;
	struct remote_config rc = {
		.servers = cfg->remote,
		.replicas = cfg->remote_replicas,
		.timeout_ms = cfg->remote_timeout_ms,
	};
	int err;

	st->encrypt = cfg->encrypt;
	if (!remote && !cfg->encrypt)
		return 0;
	err = seal_create(&st->seal);
	if (!err) {
		st->pushbuf = mem_alloc(PUSH_BUF);
		st->items = mem_alloc(PUSH_MAX * sizeof(*st->items));
		st->push_idx = mem_alloc(PUSH_MAX * sizeof(*st->push_idx));
		if (!st->pushbuf || !st->items || !st->push_idx)
			err = -ENOMEM;
	}
	if (err || !remote)
		return err;
	rc.id = seal_id(st->seal);
	err = remote_create(&rc, &st->remote);
	if (err == -EHOSTUNREACH && cfg->remote_optional) {
		log_warn("remote tier off: no server of \"%s\" answers; "
			 "pages go to the swap file", cfg->remote);
		return 0;
	}
	return err;
}

/* Delete every key this store may have left on the cluster: all indices
 * ever pushed (a freed object whose delete did not fit the queue, too). */
static void remote_sweep(struct store *st)
{
	uint64_t keys[PUSH_MAX];
	unsigned n = 0;

	for (uint32_t idx = 1; idx <= st->remote_hiwater; idx++) {
		keys[n++] = idx;
		if (n == PUSH_MAX || idx == st->remote_hiwater) {
			remote_delete(st->remote, keys, n);
			n = 0;
		}
	}
}

void store_release_remote(struct store *st)
{
	if (!st || !st->remote)
		return;
	/* put_lock: no push is in flight, and none starts after. */
	pthread_mutex_lock(&st->put_lock);
	if (!st->remote_closed) {
		st->remote_closed = true;
		remote_sweep(st);
	}
	pthread_mutex_unlock(&st->put_lock);
}

static int open_swap(const char *dir)
{
	int fd;

	/* O_DIRECT keeps swapped pages out of the page cache; not every
	 * file system has it. */
	fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC | O_DIRECT, 0600);
	if (fd < 0 && errno == EINVAL)
		fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd >= 0)
		return fd;
	if (errno == EISDIR || errno == EOPNOTSUPP || errno == EINVAL)
		return -EOPNOTSUPP;
	return -errno;
}

static int store_alloc_tables(struct store *st, uint32_t ram_cap,
			      uint32_t ram_cap_max, uint32_t nslots)
{
	atomic_init(&st->ram_cap, ram_cap);
	st->ram_cap_max = ram_cap_max;
	st->nslots = st->free_slots = nslots;
	st->nsegs = ram_cap_max + nslots + 8;
	st->segs = mem_alloc(st->nsegs * sizeof(struct seg));
	st->slot_map = mem_alloc((nslots / 64 + 1) * sizeof(uint64_t));
	st->dir = mem_alloc(TAB_DIR * sizeof(struct obj *));
	if (!st->segs || !st->slot_map || !st->dir)
		return -ENOMEM;
	for (uint32_t i = 0; i < st->nsegs; i++) {
		st->segs[i].state = SEG_FREE;
		st->segs[i].next = i + 1 < st->nsegs ? i + 1 : SEG_NONE;
	}
	st->free_seg = 0;
	st->fifo_head = st->fifo_tail = SEG_NONE;
	st->open = st->dopen = SEG_NONE;
	st->nidx = 1;
	return 0;
}

int store_create(const struct store_config *cfg, struct store **out)
{
	pthread_rwlockattr_t attr;
	uint64_t ram_cap, ram_cap_max, nslots;
	struct store *st;
	int err;

	if (!cfg || !out || !cfg->swap_dir)
		return -EINVAL;
	ram_cap = cfg->ram_limit / SEG_SIZE;
	nslots = cfg->swap_size / SEG_SIZE;
	/* Below GC_RESERVE + 1 slots only compaction could write. */
	if (nslots > MAX_SEGS || (cfg->swap_size && nslots <= GC_RESERVE))
		return -EINVAL;
	ram_cap = MIN(ram_cap, MAX_SEGS);
	ram_cap_max = MIN(MAX(cfg->ram_max, cfg->ram_limit) / SEG_SIZE,
			  MAX_SEGS);
	st = mem_alloc(sizeof(*st));
	if (!st)
		return -ENOMEM;
	pthread_mutex_init(&st->put_lock, NULL);
	/* Writers preferred: the evictor must not starve behind a stream of
	 * page-ins. */
	pthread_rwlockattr_init(&attr);
	pthread_rwlockattr_setkind_np(&attr,
			PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&st->lock, &attr);
	pthread_rwlockattr_destroy(&attr);
	st->fd = -1;
	st->drop = cfg->drop;

	err = codec_create(cfg->codec, &st->codec);
	if (!err)
		err = store_alloc_tables(st, (uint32_t)ram_cap,
					 (uint32_t)ram_cap_max,
					 (uint32_t)nslots);
	if (!err) {
		st->fd = open_swap(cfg->swap_dir);
		err = st->fd < 0 ? st->fd : 0;
	}
	if (!err)
		err = io_create(st->fd, SEG_SIZE, &st->io);
	if (!err)
		err = store_start_sealed(st, cfg);
	if (!err)
		err = probation_create(cfg->probation, &st->prob);
	if (err) {
		store_destroy(st);
		return err;
	}
	*out = st;
	return 0;
}

void store_destroy(struct store *st)
{
	if (!st)
		return;
	if (st->remote) {
		if (!st->remote_closed)
			remote_sweep(st);
		remote_destroy(st->remote);
	}
	seal_destroy(st->seal);
	probation_destroy(st->prob);
	mem_free(st->pushbuf, PUSH_BUF);
	mem_free(st->items, PUSH_MAX * sizeof(*st->items));
	mem_free(st->push_idx, PUSH_MAX * sizeof(*st->push_idx));
	for (uint32_t i = 0; st->segs && i < st->nsegs; i++) {
		struct seg *s = &st->segs[i];

		if (s->state != SEG_FREE)
			seg_release(st, i);
	}
	for (uint32_t c = 0; st->dir && c < TAB_DIR && st->dir[c]; c++)
		mem_free(st->dir[c], TAB_CHUNK * sizeof(struct obj));
	mem_free(st->dir, TAB_DIR * sizeof(struct obj *));
	mem_free(st->slot_map, (st->nslots / 64 + 1) * sizeof(uint64_t));
	mem_free(st->segs, st->nsegs * sizeof(struct seg));
	io_destroy(st->io);
	if (st->fd >= 0)
		close(st->fd);
	codec_destroy(st->codec);
	pthread_rwlock_destroy(&st->lock);
	pthread_mutex_destroy(&st->put_lock);
	mem_free(st, sizeof(*st));
}
