/* SPDX-License-Identifier: MIT */
/*
 * The runtime and its regions: what every subsystem shares.
 *
 * Locking:
 *  - rt->regions_lock (rwlock) guards the sorted region table.  Handler
 *    threads hold it for reading across one batch of faults, so a region
 *    cannot be torn down under a handler; upg_region_destroy() takes it for
 *    writing to unlink the region.  No thread touches managed memory or a
 *    caller's pointer while holding it, so a faulting thread can never be
 *    the one a handler waits for.
 *  - Page-table entries are guarded by their own BUSY bit (pagetable.h).
 *  - Counters are relaxed atomics.
 */
#ifndef UPAGER_RUNTIME_H
#define UPAGER_RUNTIME_H

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cluster.h"
#include "pagetable.h"
#include "snapshot.h"
#include "stats.h"
#include "swapcopy.h"
#include "upager.h"

#define REGION_ALIVE 0x52474e41u /* "ANGR" */
#define REGION_DEAD 0x44414544u	 /* "DEAD" */

/* The most pages one swap-in reads ahead, and zero source pages. */
#define FILL_MAX_PAGES 16
/* The most pages one first touch maps to the zero page (reserve.h). */
#define ZERO_MAX_PAGES 512

/* A sequential-access detector: one per region and direction. */
struct seq_state {
	_Atomic uint64_t next;	/* page expected next if sequential */
	_Atomic uint32_t window;	/* current window in pages */
};

struct file_map;

struct upg_region {
	_Atomic uint32_t magic;
	unsigned flags;
	bool wp;		/* registered for write-protect faults too */
	struct file_map *file;	/* file regions: the file (file.h), else NULL */
	_Atomic int advice;	/* enum upg_advice */
	struct upg_runtime *rt;
	uintptr_t start;
	size_t size;
	uint64_t npages;
	struct pagetable pt;
	struct counters ctr;
	struct seq_state seq_read;	/* swap-in read-ahead */
	struct cluster_state cluster;	/* swap-in clusters */
	struct swapcopy swapcopy;	/* keep copies of swap-ins? */
	struct region_snap snap;	/* snapshot.h */
	/* Evictor only: clean file pages that did not compress enough to be
	 * kept in a row, and evictions since (evict.c, keep_copy). */
	uint32_t copy_refusals, copy_skips;
	struct upg_region *recycle_next;
};

struct handler;
struct evictor;
struct store;
struct sigbus_pool;

struct upg_runtime {
	int uffd;
	int pagemap_fd;		/* /proc/self/pagemap, -1 without PAGEMAP_SCAN */
	int idle_poll_fd;	/* /dev/cpu_dma_latency held at 0, or -1 */
	uint64_t features;
	bool user_only;		/* a UFFD_USER_MODE_ONLY userfaultfd */
	struct upg_options opts;
	char swap_dir[PATH_MAX];
	char stats_path[PATH_MAX];
	char stats_dir[PATH_MAX];	/* opts.stats_dir, "" = the default */
	char remote[1024];	/* UPAGER_REMOTE's server list */

	pthread_rwlock_t regions_lock;
	struct upg_region **regions;	/* sorted by start */
	size_t nregions, regions_cap;

	struct handler *handlers;
	unsigned nhandlers;
	/* UPAGER_RESOLVE=thread: no handler threads; faulting threads borrow
	 * a fault context from here (sigbus.c). */
	struct sigbus_pool *sigbus;
	_Atomic bool stopping;
	/* A thread of ours stopped unasked: faults get SIGBUS (failsafe.h). */
	_Atomic bool failed;
	void *doorbell;		/* one registered page: touched to stop handlers */
	const void *zero_src;	/* FILL_MAX_PAGES zero pages, never managed */

	struct store *store;	/* NULL without a budget */
	struct evictor *evictor;

	struct counters ctr;
	struct hist *hist;	/* [UPG_FAULT_NKINDS] */
	struct publisher *publisher;	/* live statistics (publish.h) */
};

static inline void region_add_resident(struct upg_region *r, int64_t n)
{
	atomic_fetch_add_explicit(&r->ctr.pages_resident, n,
				  memory_order_relaxed);
	atomic_fetch_add_explicit(&r->rt->ctr.pages_resident, n,
				  memory_order_relaxed);
}

static inline void add_count(struct upg_region *r, size_t off, uint64_t n)
{
	counter_add((_Atomic uint64_t *)((char *)&r->ctr + off), n);
	counter_add((_Atomic uint64_t *)((char *)&r->rt->ctr + off), n);
}

/* Count n events of `field` (struct counters) in the region and runtime. */
#define COUNT(r, field, n) add_count(r, offsetof(struct counters, field), n)

/* region.c */
/* Map len bytes (a page multiple) with prot, register them and publish the
 * region; `file` (NULL for anonymous memory) is attached before. */
int region_create(struct upg_runtime *rt, size_t len, int prot,
		  unsigned flags, struct file_map *file,
		  struct upg_region **out);
/* Reconcile ZERO entries with the hardware page table: pages the kernel
 * copied on a write become RESIDENT and DIRTY.  Caller holds regions_lock. */
void region_sync_written(struct upg_region *r);
struct upg_region *region_lookup(struct upg_runtime *rt, uintptr_t addr);
/* Destroy every region (runtime teardown); returns how many there were. */
size_t regions_destroy_all(struct upg_runtime *rt);

/* runtime.c */
/* Map the zero source and the doorbell page (registered); fork.c calls it
 * again in a child, where the doorbell (MADV_DONTFORK) is gone. */
int map_private_pages(struct upg_runtime *rt);
/* Create rt->store when the options set a budget. */
int store_start(struct upg_runtime *rt);
/* Open rt->uffd with the features rt's options need (UFFD_FEATURE_SIGBUS
 * for UPAGER_RESOLVE=thread); fork.c opens the child's with it. */
int runtime_uffd_open(struct upg_runtime *rt);
/* Start whatever resolves rt's faults: handler threads, or for
 * UPAGER_RESOLVE=thread the SIGBUS handler (sigbus.h); stop undoes it. */
int resolvers_start(struct upg_runtime *rt);
void resolvers_stop(struct upg_runtime *rt);

/* fault.c */
int handlers_start(struct upg_runtime *rt);
void handlers_stop(struct upg_runtime *rt);

/* What a resolver owns while it serves a fault: each handler thread has
 * one; a thread resolving its own fault borrows one (sigbus.c). */
struct file_io;
struct fault_ctx {
	void *bounce;		/* FILL_MAX_PAGES pages stored pages are read
				 * into */
	struct file_io *fio;	/* file reads (file.c), made on first use */
};
/* 0, or -ENOMEM. */
int fault_ctx_init(struct fault_ctx *c);
void fault_ctx_fini(struct fault_ctx *c);

enum fault_result {
	FAULT_DONE,	/* resolved; or poisoned, and the access gets SIGBUS */
	FAULT_BUSY,	/* its entry is BUSY (another resolver, the evictor):
			 * serve it again shortly */
	FAULT_GATED,	/* a snapshot of r is being taken, dropped or
			 * restored: again once its gate opens */
	FAULT_POISONED,	/* the page is poisoned: the access gets SIGBUS,
			 * which is the program's */
};

/*
 * Serve a fault at addr of r, from the software page table: the one
 * decision both resolvers make, handler threads (uffd messages) and
 * faulting threads (sigbus.c).  `write`: a write access; `wp`: a
 * write-protect fault; t0: when it was taken (its latency is counted).
 * Caller holds rt->regions_lock for reading.  Takes no lock the program
 * can hold and touches no managed memory.
 */
enum fault_result fault_serve(struct fault_ctx *c, struct upg_region *r,
			      uintptr_t addr, bool write, bool wp, uint64_t t0);

/* Count a fault of `kind` in the region and the runtime, with its latency. */
void fault_account(struct upg_runtime *rt, struct upg_region *r, int kind,
		   uint64_t ns);

#endif
