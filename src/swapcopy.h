/* SPDX-License-Identifier: MIT */
/*
 * Whether a page swapped in keeps its stored copy.
 *
 * Kept, the page is installed write-protected (PTE_CACHED): if it is
 * evicted unwritten it is dropped without being compressed and stored
 * again, but its first write is a write-protect fault, a round trip
 * through a handler.  For a program that writes most of what it reads
 * back (a Python heap: every access moves a reference count) those faults
 * cost far more than storing the pages again: measured on python3 at half
 * its peak, 110,245 write-protect faults for 127,000 pages swapped in.
 *
 * So each region counts, of its pages installed with their copy, how many
 * were written and how many were dropped clean, and installs writable
 * (the copy let go) while writes win by SWAPCOPY_BIAS to one.  One page in
 * SWAPCOPY_SAMPLE keeps its copy whatever the counts, so they follow a
 * program whose habits change.  Counts are halved past SWAPCOPY_WINDOW:
 * recent behaviour weighs most.  Racy by design: a hint, not state.
 */
#ifndef UPAGER_SWAPCOPY_H
#define UPAGER_SWAPCOPY_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "util.h"

#define SWAPCOPY_BIAS 2
#define SWAPCOPY_SAMPLE 16
#define SWAPCOPY_WINDOW 4096

struct swapcopy {
	_Atomic uint32_t written, dropped, installs;
};

static inline void swapcopy_count(struct swapcopy *s, _Atomic uint32_t *c)
{
	tally_count(c, &s->written, &s->dropped, SWAPCOPY_WINDOW);
}

/* A page installed with its copy was written (write-protect fault). */
static inline void swapcopy_written(struct swapcopy *s)
{
	swapcopy_count(s, &s->written);
}

/* A page installed with its copy was evicted unwritten. */
static inline void swapcopy_dropped(struct swapcopy *s)
{
	swapcopy_count(s, &s->dropped);
}

/* Should the page being swapped in keep its stored copy? */
static inline bool swapcopy_keep(struct swapcopy *s)
{
	uint32_t n = atomic_fetch_add_explicit(&s->installs, 1,
					       memory_order_relaxed);

	return n % SWAPCOPY_SAMPLE == 0 ||
	       atomic_load_explicit(&s->written, memory_order_relaxed) <=
		       SWAPCOPY_BIAS *
			       atomic_load_explicit(&s->dropped,
						    memory_order_relaxed);
}

#endif
