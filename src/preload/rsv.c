/* SPDX-License-Identifier: MIT */
/*
 * The reservation's range allocator: address-ordered first fit over a
 * sorted array of free ranges, and a short list of holes (foreign mappings
 * the application put over the reservation with MAP_FIXED).
 *
 * Locking: rsv_lock guards both arrays.  It is a leaf: callers may hold
 * jemalloc's locks (extent hooks) or pl.lock (interposers), and nothing is
 * taken under it except mem.c's class locks, which are leaves too.  The
 * arrays live in upager's own memory (mem.c), never in the process heap.
 */
#include <string.h>

#include "mem.h"
#include "preload.h"
#include "util.h"

struct range {
	uintptr_t start, end;
};

struct set {
	struct range *v;
	size_t n, cap;
};

static pthread_mutex_t rsv_lock = PTHREAD_MUTEX_INITIALIZER;
static struct set free_set, holes;

static int set_reserve(struct set *s, size_t more)
{
	size_t cap = s->cap ? s->cap : 256;
	struct range *v;

	if (s->n + more <= s->cap)
		return 0;
	while (cap < s->n + more)
		cap *= 2;
	v = mem_alloc(cap * sizeof(*v));
	if (!v)
		return -1;
	if (s->n)
		memcpy(v, s->v, s->n * sizeof(*v));
	mem_free(s->v, s->cap * sizeof(*v));
	s->v = v;
	s->cap = cap;
	return 0;
}

/* Index of the first range whose end is > a. */
static size_t first_after(const struct set *s, uintptr_t a)
{
	size_t lo = 0, hi = s->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (s->v[mid].end <= a)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Replace v[i, j) by the k ranges of r. */
static void splice(struct set *s, size_t i, size_t j, const struct range *r,
		   size_t k)
{
	memmove(&s->v[i + k], &s->v[j], (s->n - j) * sizeof(s->v[0]));
	memcpy(&s->v[i], r, k * sizeof(*r));
	s->n = s->n - (j - i) + k;
}

/* Remove [a, b) from the set, whatever of it is there. */
static int set_remove(struct set *s, uintptr_t a, uintptr_t b)
{
	size_t i = first_after(s, a), j = i;
	struct range keep[2];
	size_t k = 0;

	while (j < s->n && s->v[j].start < b)
		j++;
	if (i == j)
		return 0;
	if (set_reserve(s, 1))
		return -1;
	if (s->v[i].start < a)
		keep[k++] = (struct range){ s->v[i].start, a };
	if (s->v[j - 1].end > b)
		keep[k++] = (struct range){ b, s->v[j - 1].end };
	splice(s, i, j, keep, k);
	return 0;
}

/* Add [a, b), merging with what it overlaps or touches. */
static int set_add(struct set *s, uintptr_t a, uintptr_t b)
{
	size_t i, j;
	struct range r = { a, b };

	if (set_reserve(s, 1))
		return -1;
	i = first_after(s, a ? a - 1 : 0);
	j = i;
	while (j < s->n && s->v[j].start <= b) {
		r.start = MIN(r.start, s->v[j].start);
		r.end = MAX(r.end, s->v[j].end);
		j++;
	}
	splice(s, i, j, &r, 1);
	return 0;
}

int rsv_init(uintptr_t base, size_t len)
{
	return set_add(&free_set, base, base + len);
}

uintptr_t rsv_alloc(size_t len, size_t align)
{
	uintptr_t a = 0;

	pthread_mutex_lock(&rsv_lock);
	for (size_t i = 0; i < free_set.n; i++) {
		uintptr_t s = (free_set.v[i].start + align - 1) & ~(align - 1);

		if (s < free_set.v[i].end && free_set.v[i].end - s >= len) {
			if (set_remove(&free_set, s, s + len) == 0)
				a = s;
			break;
		}
	}
	pthread_mutex_unlock(&rsv_lock);
	return a;
}

bool rsv_take_exact(uintptr_t a, size_t len)
{
	bool ok;
	size_t i;

	pthread_mutex_lock(&rsv_lock);
	i = first_after(&free_set, a);
	ok = i < free_set.n && free_set.v[i].start <= a &&
	     free_set.v[i].end >= a + len &&
	     set_remove(&free_set, a, a + len) == 0;
	pthread_mutex_unlock(&rsv_lock);
	return ok;
}

void rsv_take(uintptr_t a, size_t len)
{
	pthread_mutex_lock(&rsv_lock);
	set_remove(&free_set, a, a + len);
	pthread_mutex_unlock(&rsv_lock);
}

void rsv_release(uintptr_t a, size_t len)
{
	pthread_mutex_lock(&rsv_lock);
	set_add(&free_set, a, a + len);
	pthread_mutex_unlock(&rsv_lock);
}

void rsv_add_hole(uintptr_t a, size_t len)
{
	pthread_mutex_lock(&rsv_lock);
	set_remove(&free_set, a, a + len);
	set_add(&holes, a, a + len);
	pthread_mutex_unlock(&rsv_lock);
}

void rsv_pieces(uintptr_t a, size_t len, rsv_piece_fn fn, void *arg)
{
	struct range parts[64];
	bool hole[64];
	uintptr_t end = a + len, at = a;
	size_t n = 0, i;

	/* Holes are few: collect the pieces under the lock, act outside. */
	pthread_mutex_lock(&rsv_lock);
	for (i = first_after(&holes, a); i < holes.n && at < end; i++) {
		uintptr_t hs = MAX(holes.v[i].start, at);
		uintptr_t he = MIN(holes.v[i].end, end);

		if (hs >= end || n + 2 > ARRAY_SIZE(parts))
			break;
		if (hs > at) {
			parts[n] = (struct range){ at, hs };
			hole[n++] = false;
		}
		parts[n] = (struct range){ hs, he };
		hole[n++] = true;
		at = he;
	}
	pthread_mutex_unlock(&rsv_lock);
	if (at < end) {
		parts[n] = (struct range){ at, end };
		hole[n++] = false;
	}
	for (i = 0; i < n; i++)
		fn(parts[i].start, parts[i].end - parts[i].start, hole[i], arg);
}
