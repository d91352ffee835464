/* SPDX-License-Identifier: MIT */
/*
 * The probation list (probation.h): a slab of page slots, a stack of free
 * slots (the most recently freed is reused first, so the slab's touched
 * part stays as small as the list's use) and a FIFO of the handles put,
 * oldest first.  A handle whose page left early stays queued until it is
 * dequeued and found gone; the queue has room for two handles a slot, so
 * that dequeuing the stale ones always makes room.
 */
#include <errno.h>

#include "mem.h"
#include "probation.h"
#include "util.h"

struct probation {
	char *pages;
	uint32_t nslots;
	uint32_t hiwater;	/* slots [0, hiwater) were used at least once */
	uint32_t *free;		/* stack of free slots below hiwater */
	uint32_t nfree;
	uint64_t *queue;	/* ring of handles, oldest at head */
	uint32_t qcap, qhead, qlen;
};

int probation_create(uint64_t bytes, struct probation **out)
{
	struct probation *p;
	uint64_t n = bytes / PAGE_SIZE;

	*out = NULL;
	if (n == 0)
		return 0;
	if (n > UINT32_MAX / 2)
		return -EINVAL;
	p = mem_alloc(sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->nslots = (uint32_t)n;
	p->qcap = 2 * p->nslots;
	p->pages = mem_alloc(n * PAGE_SIZE);
	p->free = mem_alloc(n * sizeof(*p->free));
	p->queue = mem_alloc(p->qcap * sizeof(*p->queue));
	if (!p->pages || !p->free || !p->queue) {
		probation_destroy(p);
		return -ENOMEM;
	}
	*out = p;
	return 0;
}

void probation_destroy(struct probation *p)
{
	if (!p)
		return;
	mem_free(p->pages, (size_t)p->nslots * PAGE_SIZE);
	mem_free(p->free, p->nslots * sizeof(*p->free));
	mem_free(p->queue, p->qcap * sizeof(*p->queue));
	mem_free(p, sizeof(*p));
}

int32_t probation_take(struct probation *p)
{
	if (p->nfree)
		return (int32_t)p->free[--p->nfree];
	if (p->hiwater < p->nslots) {
		/* Read without the lock by probation_bytes. */
		__atomic_store_n(&p->hiwater, p->hiwater + 1, __ATOMIC_RELAXED);
		return (int32_t)(p->hiwater - 1);
	}
	return -1;
}

void probation_queue(struct probation *p, uint64_t handle)
{
	p->queue[(p->qhead + p->qlen) % p->qcap] = handle;
	p->qlen++;
}

uint64_t probation_oldest(struct probation *p)
{
	uint64_t h;

	if (p->qlen == 0)
		return 0;
	h = p->queue[p->qhead];
	p->qhead = (p->qhead + 1) % p->qcap;
	p->qlen--;
	return h;
}

bool probation_has_room(const struct probation *p)
{
	return (p->nfree || p->hiwater < p->nslots) && p->qlen < p->qcap;
}

void probation_release(struct probation *p, uint32_t slot)
{
	p->free[p->nfree++] = slot;
}

char *probation_page(struct probation *p, uint32_t slot)
{
	return p->pages + (size_t)slot * PAGE_SIZE;
}

uint64_t probation_pages(const struct probation *p)
{
	return p ? p->hiwater - p->nfree : 0;
}

uint64_t probation_bytes(const struct probation *p)
{
	return p ? (uint64_t)__atomic_load_n(&p->hiwater, __ATOMIC_RELAXED) *
			   PAGE_SIZE
		 : 0;
}
