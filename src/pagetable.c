/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <sched.h>

#include "mem.h"
#include "pagetable.h"

#define NODE_BYTES (PT_FANOUT * sizeof(void *))
_Static_assert(NODE_BYTES == PT_FANOUT * sizeof(pte_t),
	       "nodes and leaves share one allocation size");

int pt_init(struct pagetable *pt, uint64_t npages)
{
	int levels = 1;

	if (npages == 0 || npages > PT_MAX_PAGES)
		return -EINVAL;
	while (npages > (UINT64_C(1) << (PT_BITS * levels)))
		levels++;
	atomic_init(&pt->root, NULL);
	atomic_init(&pt->bytes, 0);
	pt->npages = npages;
	pt->levels = levels;
	return 0;
}

static unsigned slot_of(uint64_t idx, int level)
{
	return (unsigned)(idx >> (PT_BITS * (level - 1))) & (PT_FANOUT - 1);
}

/* The node in *slot, allocated if missing and create is set.  Two threads
 * may race to fill a slot: the loser frees its node and uses the winner's. */
static void *get_node(struct pagetable *pt, void *_Atomic *slot, bool create)
{
	void *node = atomic_load_explicit(slot, memory_order_acquire);
	void *expected = NULL;

	if (node || !create)
		return node;
	node = mem_alloc(NODE_BYTES);
	if (!node)
		return NULL;
	if (!atomic_compare_exchange_strong_explicit(slot, &expected, node,
						     memory_order_acq_rel,
						     memory_order_acquire)) {
		mem_free(node, NODE_BYTES);
		return expected;
	}
	atomic_fetch_add_explicit(&pt->bytes, NODE_BYTES, memory_order_relaxed);
	return node;
}

_Atomic pte_t *pt_entry(struct pagetable *pt, uint64_t idx, bool create)
{
	void *_Atomic *slot = &pt->root;

	if (idx >= pt->npages)
		return NULL;
	for (int level = pt->levels;; level--) {
		void *node = get_node(pt, slot, create);

		if (!node)
			return NULL;
		if (level == 1)
			return &((_Atomic pte_t *)node)[slot_of(idx, 1)];
		slot = &((void *_Atomic *)node)[slot_of(idx, level)];
	}
}

pte_t pt_get(struct pagetable *pt, uint64_t idx)
{
	_Atomic pte_t *e = pt_entry(pt, idx, false);

	return e ? atomic_load_explicit(e, memory_order_acquire) : PTE_EMPTY;
}

bool pte_trylock(_Atomic pte_t *e, pte_t *old)
{
	*old = atomic_load_explicit(e, memory_order_acquire);
	do {
		if (*old & PTE_BUSY)
			return false;
	} while (!pte_cas(e, old, *old | PTE_BUSY));
	return true;
}

void pte_unlock(_Atomic pte_t *e, pte_t val)
{
	atomic_store_explicit(e, val & ~PTE_BUSY, memory_order_release);
}

static int walk(void *node, int level, uint64_t base, uint64_t from,
		uint64_t to, pt_leaf_fn fn, void *arg)
{
	uint64_t span = UINT64_C(1) << (PT_BITS * (level - 1));

	if (level == 1)
		return fn(base, node, arg);
	for (unsigned i = 0; i < PT_FANOUT; i++) {
		uint64_t lo = base + i * span;
		void *child;
		int rc;

		if (lo >= to)
			break;
		if (lo + span <= from)
			continue;
		child = atomic_load_explicit(&((void *_Atomic *)node)[i],
					     memory_order_acquire);
		if (!child)
			continue;
		rc = walk(child, level - 1, lo, from, to, fn, arg);
		if (rc)
			return rc;
	}
	return 0;
}

int pt_walk(struct pagetable *pt, uint64_t from, uint64_t to, pt_leaf_fn fn,
	    void *arg)
{
	void *root = atomic_load_explicit(&pt->root, memory_order_acquire);

	if (!root || from >= to)
		return 0;
	return walk(root, pt->levels, 0, from, to < pt->npages ? to : pt->npages, fn,
		    arg);
}

static void free_tree(void *node, int level)
{
	if (level > 1) {
		for (unsigned i = 0; i < PT_FANOUT; i++) {
			void *child = atomic_load_explicit(
				&((void *_Atomic *)node)[i],
				memory_order_relaxed);

			if (child)
				free_tree(child, level - 1);
		}
	}
	mem_free(node, NODE_BYTES);
}

void pt_fini(struct pagetable *pt)
{
	void *root = atomic_exchange(&pt->root, NULL);

	if (root)
		free_tree(root, pt->levels);
	atomic_store(&pt->bytes, 0);
}
