/* SPDX-License-Identifier: MIT */
/*
 * upager: a user-space pager built on userfaultfd.
 *
 * This is the whole public API.  Every function returns 0 (or a count) on
 * success and a negative errno value on failure; none of them sets errno or
 * aborts the process.  Handles are opaque.  Plain-data structs carry a
 * `size` field first (set by their init function) so they can grow without
 * breaking callers built against an older header.
 *
 * Threads: every function may be called from any thread, concurrently,
 * unless its description says otherwise.  A region's memory may be used by
 * any number of threads while the runtime's handler threads serve its
 * faults.
 */
#ifndef UPAGER_H
#define UPAGER_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(UPAGER_BUILDING) && defined(__GNUC__)
#define UPG_API __attribute__((visibility("default")))
#else
#define UPG_API
#endif

#if defined(__GNUC__)
#define UPG_NODISCARD __attribute__((warn_unused_result))
#else
#define UPG_NODISCARD
#endif

/* Version of this header: major * 10000 + minor * 100 + patch. */
#define UPG_VERSION 100
/* The version string of the library actually linked ("0.1.0"). */
UPG_API const char *upg_version(void);

/* ------------------------------------------------------------------ */
/* Options                                                             */
/* ------------------------------------------------------------------ */

/* Codecs of the swap store (UPAGER_CODEC). */
enum upg_codec {
	UPG_CODEC_LZ4 = 0,	/* default: fast, ~2-3x on typical heaps */
	UPG_CODEC_ZSTD = 1,	/* slower, better ratio */
	UPG_CODEC_NONE = 2,	/* store pages raw */
};

/* What happens when the budget is exhausted and the store is full. */
enum upg_full_policy {
	UPG_FULL_OVERCOMMIT = 0, /* default: exceed the budget, warn once, count */
	UPG_FULL_SIGBUS = 1,	 /* strict: the faulting thread gets SIGBUS */
};

/* Replacement policies (UPAGER_POLICY). */
enum upg_policy {
	UPG_POLICY_CLOCK = 0,	/* default: second chance for pages faulted in
				 * or written since the hand last passed */
	UPG_POLICY_FIFO = 1,	/* evict in address sweep order, no second chance */
};

/* Log levels (UPAGER_LOG). */
enum upg_log_level {
	UPG_LOG_NONE = 0,
	UPG_LOG_ERROR = 1,
	UPG_LOG_WARN = 2,	/* default */
	UPG_LOG_INFO = 3,
	UPG_LOG_DEBUG = 4,
};

/* Output formats of upg_stats_print(). */
#define UPG_STATS_TEXT 0
#define UPG_STATS_JSON 1

/*
 * Runtime options.  Always start from upg_options_init(), then change
 * fields or apply the environment with upg_options_from_env().
 * Strings are copied by upg_runtime_create(); they need to live only until
 * it returns.
 */
struct upg_options {
	uint32_t size;		/* sizeof(struct upg_options), set by init */
	uint32_t handlers;	/* fault-handling threads, 1..64 (UPAGER_HANDLERS) */
	uint64_t mem_limit;	/* budget in bytes, 0 = unlimited (UPAGER_MEM_LIMIT) */
	uint64_t swap_size;	/* bound of the swap file in bytes (UPAGER_SWAP_SIZE) */
	const char *swap_dir;	/* directory of the swap file (UPAGER_SWAP_DIR) */
	int codec;		/* enum upg_codec (UPAGER_CODEC) */
	int full_policy;	/* enum upg_full_policy (UPAGER_FULL_POLICY) */
	int log_level;		/* enum upg_log_level (UPAGER_LOG) */
	uint32_t fault_around;	/* pages mapped per zero-page read fault, 1..512
				 * (UPAGER_FAULT_AROUND) */
	const char *stats_path;	/* where upg_runtime_destroy writes the stats:
				 * NULL = nowhere, "stderr", or a file path
				 * (UPAGER_STATS) */
	int stats_format;	/* UPG_STATS_TEXT or UPG_STATS_JSON */
	int policy;		/* enum upg_policy (UPAGER_POLICY) */
	/* Preload mode only (libupager-preload.so); the library ignores them. */
	uint64_t preload_heap;	/* address space reserved for the managed heap
				 * and mappings (UPAGER_PRELOAD_HEAP) */
	uint64_t preload_min_mmap; /* smallest private anonymous mmap that is
				    * managed, 0 = none (UPAGER_PRELOAD_MIN_MMAP) */
	uint64_t reserved[6];	/* zero; room to grow */
};

/* Fill *opts with the defaults.  Never fails. */
UPG_API void upg_options_init(struct upg_options *opts);

/*
 * Apply the UPAGER_* environment variables to *opts.
 *
 * All variables are validated before any field is changed: on error *opts is
 * left exactly as it was.  A bad value is reported on stderr (and through
 * upg_last_error()) naming the variable, the value and what is accepted.
 *
 * Returns the number of variables applied, -EINVAL if opts is NULL or a
 * variable has a bad value.
 */
UPG_API UPG_NODISCARD int upg_options_from_env(struct upg_options *opts);

/*
 * Parse one option given by its variable name ("UPAGER_MEM_LIMIT") and
 * textual value into *opts, with the same validation as the environment.
 * Returns 0, -EINVAL for a bad value or NULL argument, -ENOENT for an
 * unknown name.
 */
UPG_API UPG_NODISCARD int upg_options_set(struct upg_options *opts,
					  const char *name, const char *value);

/*
 * The message of the last error reported by this library on the calling
 * thread ("" if none).  The string stays valid until the next upager call on
 * this thread.
 */
UPG_API const char *upg_last_error(void);

/* ------------------------------------------------------------------ */
/* Runtime                                                             */
/* ------------------------------------------------------------------ */

struct upg_runtime;

/*
 * Create a runtime: a userfaultfd, its handler threads and an empty set of
 * regions.  NULL opts means the defaults plus the environment.
 *
 * Returns 0 and sets *out, or:
 *   -EINVAL  out is NULL, or an option is out of range;
 *   -EPERM   userfaultfd is not permitted: the message (upg_last_error(),
 *            also logged) says what to change (CAP_SYS_PTRACE,
 *            vm.unprivileged_userfaultfd, permissions of /dev/userfaultfd,
 *            a seccomp filter);
 *   -ENOSYS  the kernel has no userfaultfd;
 *   -ENOMEM, -EAGAIN  memory or threads could not be had.
 */
UPG_API UPG_NODISCARD int upg_runtime_create(const struct upg_options *opts,
					     struct upg_runtime **out);

/*
 * Destroy a runtime.  Regions still alive are destroyed first, as if by
 * upg_region_destroy(): their memory is unmapped and their handles become
 * invalid (a warning names how many there were).  If the options asked for
 * statistics, they are written before anything is torn down.
 * NULL is ignored.  Must not be called while other threads still use the
 * runtime or its regions.
 */
UPG_API void upg_runtime_destroy(struct upg_runtime *rt);

/* ------------------------------------------------------------------ */
/* Regions                                                             */
/* ------------------------------------------------------------------ */

struct upg_region;

/* Flags of upg_anon_create(). */
#define UPG_ANON_DEFAULT 0u
#define UPG_ANON_NOEVICT 0x1u	/* never evict this region's pages */

/*
 * Create an anonymous region of `size` bytes (rounded up to whole pages),
 * readable and writable, whose pages read as zero until written and are
 * allocated on first write.  Address space is reserved, memory is not: a
 * 64 TiB region whose program touches ten pages costs kilobytes.
 *
 * Returns 0 and sets *out, or:
 *   -EINVAL  rt or out is NULL, size is 0, rounding size overflows, size
 *            exceeds UPG_REGION_MAX, or flags has unknown bits;
 *   -ENOMEM  no address space or metadata memory;
 *   other    -errno of UFFDIO_REGISTER (e.g. -ENOMEM at vm.max_map_count).
 *
 * Fork: region memory is not inherited by child processes (MADV_DONTFORK):
 * the child gets SIGSEGV if it touches it, never stale or zeroed data.
 */
#define UPG_REGION_MAX ((size_t)1 << 47)	/* 128 TiB */
UPG_API UPG_NODISCARD int upg_anon_create(struct upg_runtime *rt, size_t size,
					  unsigned flags,
					  struct upg_region **out);

/* Start address of the region, NULL if region is NULL or destroyed. */
UPG_API void *upg_region_addr(const struct upg_region *region);

/* Size of the region in bytes (a multiple of the page size), 0 if NULL. */
UPG_API size_t upg_region_size(const struct upg_region *region);

/*
 * Destroy a region: unmap its memory and release its pages, including what
 * it holds in the swap store.  Threads must no longer use its memory.
 * Returns 0, or -EINVAL if region is NULL or already destroyed.  Region
 * handles live in memory that upager never unmaps and are recycled
 * oldest-first, so a second destroy is reliably -EINVAL until the handle
 * is recycled by a later upg_anon_create().
 */
UPG_API int upg_region_destroy(struct upg_region *region);

/* ------------------------------------------------------------------ */
/* Managed sub-ranges and fork (allocators, preload mode)              */
/* ------------------------------------------------------------------ */

/*
 * Drop the pages of [offset, offset + len) of a region, as MADV_DONTNEED
 * does to ordinary private anonymous memory: from now on they read as
 * zeros, their copies in the swap store are discarded and their memory is
 * no longer counted against the budget.  The range stays registered and
 * usable.  Call this instead of madvise(MADV_DONTNEED) or MADV_FREE on region
 * memory: those alone leave the stored copies, which a later fault would
 * bring back.
 *
 * Threads: any thread, concurrently with faults on the region; the caller
 * waits (spins) only while a handler or the evictor is working on one of
 * the pages.  It never touches the region's memory itself, so it may be
 * called from an allocator's extent hooks.
 * Returns 0, or -EINVAL if region is destroyed or NULL, or offset or len is
 * not page-aligned, or the range is not inside the region.
 */
UPG_API int upg_region_drop(struct upg_region *region, size_t offset,
			    size_t len);

/*
 * The application mapped something else over [offset, offset + len) of the
 * region (mmap with MAP_FIXED): the range is no longer the region's memory.
 * Its stored copies are discarded and its entries marked so that no fault,
 * fault-around or eviction ever acts on it again.  The mapping itself is the
 * caller's business (call this before or after the MAP_FIXED mmap).
 * Returns 0 or -EINVAL as upg_region_drop().
 */
UPG_API int upg_region_forget(struct upg_region *region, size_t offset,
			      size_t len);

/*
 * Let child processes inherit the region (undo the default MADV_DONTFORK).
 * Only correct together with upg_fork_prepare/parent/child around every
 * fork(), which give the child a runtime of its own that serves the
 * inherited pages, including those in the swap store at the time of fork.
 * Returns 0, -EINVAL for a destroyed or NULL region, or -errno of madvise.
 */
UPG_API int upg_region_inherit(struct upg_region *region);

/*
 * fork() support: call upg_fork_prepare() in the pthread_atfork prepare
 * handler, upg_fork_parent() in the parent handler and upg_fork_child() in
 * the child handler (the child must not touch inherited region memory
 * before it returns).
 *
 * prepare: quiesces the handlers and the evictor (no page is half-evicted
 *   or half-filled at fork) and takes a reference on every stored page.
 *   Threads faulting on region memory wait until upg_fork_parent().
 * parent: lets the handlers and evictor go on, then streams the stored
 *   pages to the child through a socket and drops the references.
 * child: builds a new runtime in place: a new userfaultfd with every
 *   inherited region registered again (regions not inherited are
 *   forgotten), new handler and evictor threads, a new swap store into
 *   which the streamed pages are stored again (compressed), so the child
 *   sees exactly the parent's memory and stays within the same budget.
 *   Pages resident at fork are shared copy-on-write as usual.
 *
 * Cost: the forking thread of the parent decompresses and sends every
 * stored page once, and the child compresses it again before fork()
 * returns in the child: about 1-2 us per stored page, i.e. 0.3-0.5 s per
 * GiB held in the store.  Regions and threads of the parent are not
 * waited for beyond the quiescing.  _Fork(), vfork()+exec and clone()
 * without the atfork handlers are not covered (vfork shares the memory and
 * is fine; the others see evicted pages as zeros).
 *
 * upg_fork_prepare returns 0 or -ENOMEM/-errno of socketpair (then the
 * caller should not fork, or the child gets no stored pages);
 * upg_fork_child returns 0 or -errno: the child has no working runtime and
 * must not touch region memory (exit or exec).
 */
UPG_API int upg_fork_prepare(struct upg_runtime *rt);
UPG_API void upg_fork_parent(struct upg_runtime *rt);
UPG_API int upg_fork_child(struct upg_runtime *rt);

/* ------------------------------------------------------------------ */
/* Statistics                                                          */
/* ------------------------------------------------------------------ */

/* Fault kinds, the index of upg_stats.faults[] and .latency[]. */
enum upg_fault_kind {
	UPG_FAULT_ZERO_READ = 0,  /* never-touched page read: zero page mapped */
	UPG_FAULT_ZERO_WRITE,	  /* never-touched page written: zeroed page */
	UPG_FAULT_SWAPIN_RAM,	  /* stored page, from the compressed RAM tier */
	UPG_FAULT_SWAPIN_DISK,	  /* stored page, read from the swap file */
	UPG_FAULT_FILE,		  /* file page read from its file */
	UPG_FAULT_WP,		  /* write to a write-protected page */
	UPG_FAULT_NKINDS
};

/* Latency summary of one fault kind, in nanoseconds, measured from the
 * handler's read of the fault message to the wake of the faulting thread. */
struct upg_latency {
	uint64_t count;
	uint64_t p50_ns, p90_ns, p99_ns, p999_ns, max_ns;
	uint64_t mean_ns;
};

struct upg_stats {
	uint32_t size;			/* sizeof(struct upg_stats) */
	uint32_t regions;		/* regions alive */
	uint64_t faults[UPG_FAULT_NKINDS]; /* messages served, by kind */
	uint64_t faults_total;
	uint64_t faults_spurious;	/* already resolved by someone else */
	uint64_t pages_zero_mapped;	/* pages mapped to the zero page */
	uint64_t pages_filled;		/* pages installed with contents */
	uint64_t pages_resident;	/* resident pages upager knows of */
	uint64_t pagetable_bytes;	/* memory of the software page tables */
	uint64_t evictions_clean;
	uint64_t evictions_dirty;
	uint64_t store_bytes_in;	/* page bytes given to the store */
	uint64_t store_bytes_stored;	/* their compressed size */
	uint64_t store_ram_bytes;	/* RAM tier occupancy */
	uint64_t store_disk_bytes;	/* swap file occupancy */
	uint64_t refaults;		/* evicted pages faulted back soon */
	uint64_t over_budget;		/* times the budget had to be exceeded */
	uint64_t poisoned;		/* pages poisoned (lost data: SIGBUS) */
	struct upg_latency latency[UPG_FAULT_NKINDS];
	uint64_t reserved[16];
};

/* Name of a fault kind ("zero_read", ...), or "?" if out of range. */
UPG_API const char *upg_fault_kind_name(int kind);

/*
 * Fill *st with a snapshot of the runtime's counters and latency summaries.
 * Counters are read without stopping the handlers: each is exact, the set
 * is not one instant.  Returns 0, or -EINVAL if an argument is NULL.
 */
UPG_API int upg_stats_get(struct upg_runtime *rt, struct upg_stats *st);

/*
 * The counters of one region (latency fields are left zero).
 * Returns 0, or -EINVAL if an argument is NULL or region was destroyed.
 */
UPG_API int upg_region_stats_get(const struct upg_region *region,
				 struct upg_stats *st);

/*
 * Write the statistics to f as text (UPG_STATS_TEXT) or one JSON object
 * (UPG_STATS_JSON).  Returns the number of bytes written, -EINVAL for a
 * NULL argument or an unknown format, -EIO if the write failed.
 */
UPG_API int upg_stats_print(struct upg_runtime *rt, FILE *f, int format);

/*
 * Write the statistics where the options ask (stats_path, stats_format),
 * now, as upg_runtime_destroy() does, without destroying anything: for a
 * program that exits with the runtime still in use.  Returns 0 (also when
 * no statistics were asked for) or -EIO.
 */
UPG_API int upg_stats_write(struct upg_runtime *rt);

#ifdef __cplusplus
}
#endif

#endif /* UPAGER_H */
