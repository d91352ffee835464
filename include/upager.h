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
 *
 * upager's own threads (fault handlers, the evictor, an exit watcher)
 * block every signal from their first instruction, so a signal sent to
 * the process reaches only the program's threads, or stays pending for its
 * sigwait() or signalfd.  They still take what no thread can block:
 * SIGKILL, SIGSTOP, a fault in their own code, and glibc's internal
 * signals (setuid() and its kin use one to change every thread's
 * credentials).  Nor do they keep the process alive: when the program's
 * last thread ends (main having called pthread_exit), the watcher calls
 * exit(0) as glibc would, so atexit handlers and destructors run, on the
 * watcher, while faults are still served; one may call
 * upg_runtime_destroy().
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

/*
 * Who resolves a fault (UPAGER_RESOLVE).
 *
 * UPG_RESOLVE_THREAD: the faulting thread resolves its own fault in a
 * SIGBUS handler upager installs (UFFD_FEATURE_SIGBUS), with no hand-off
 * to a handler thread and no wake-up.  The evictor thread stays.  Rules:
 *  - The kernel's own accesses to a page that is not in memory (never
 *    touched, or evicted) are not served: the system call fails with
 *    EFAULT (read(2) or recv(2) into an untouched managed buffer, write(2)
 *    from an evicted one, a futex word in an evicted page; io_uring and
 *    O_DIRECT likewise).  Touch such buffers first, or keep them out of
 *    managed memory.  upager-run refuses the mode for this reason.
 *  - The handler is installed for the process (SA_SIGINFO | SA_ONSTACK,
 *    every signal blocked while it runs; the thread's alternate signal
 *    stack is used if it has one).  A SIGBUS that is not a fault on
 *    managed memory (a poisoned page, a file mapping past its end, an
 *    address outside every region, kill(2)) goes to the handler installed
 *    before upager's, or ends the process as SIGBUS by default would.  A
 *    handler installed after upager's must chain to the one it replaced
 *    (sa_sigaction of its old action), as usual.
 *  - A thread that blocks SIGBUS, or whose stack is managed memory, must
 *    not touch managed memory: the kernel then ends the process.
 */
enum upg_resolve {
	UPG_RESOLVE_HANDLER = 0, /* default: handler threads (UPAGER_HANDLERS) */
	UPG_RESOLVE_THREAD = 1,	 /* the faulting thread, in a SIGBUS handler */
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
	uint32_t fault_around;	/* never-touched pages made present around the
				 * first touch of a 2 MiB block (the rest of
				 * the block from its second touch on; fewer
				 * near the budget), 1..512
				 * (UPAGER_FAULT_AROUND) */
	const char *stats_path;	/* where upg_runtime_destroy writes the stats:
				 * NULL = nowhere, "stderr", or a file path,
				 * in which each %p is the process id
				 * (UPAGER_STATS) */
	int stats_format;	/* UPG_STATS_TEXT or UPG_STATS_JSON */
	int policy;		/* enum upg_policy (UPAGER_POLICY) */
	uint32_t spin_us;	/* after serving faults, a handler keeps polling
				 * this long before it sleeps, 0..1000
				 * (UPAGER_SPIN_US) */
	uint32_t idle_poll;	/* 1: while the runtime lives, hold a CPU latency
				 * request of 0 (/dev/cpu_dma_latency, root) so
				 * idle CPUs poll instead of halting; 0 or 1
				 * (UPAGER_IDLE_POLL) */
	/* Preload mode only (libupager-preload.so); the library ignores them. */
	uint64_t preload_heap;	/* address space reserved for the managed heap
				 * and mappings (UPAGER_PRELOAD_HEAP) */
	uint64_t preload_min_mmap; /* smallest private anonymous mmap that is
				    * managed, 0 = none (UPAGER_PRELOAD_MIN_MMAP) */
	uint32_t ram_tier;	/* percent of mem_limit the compressed RAM tier
				 * may hold before pages go to the swap file,
				 * at least (see ram_tier_max); 0..90,
				 * default 25 (UPAGER_RAM_TIER) */
	uint32_t user_mode_only; /* 1: accept a user-mode-only userfaultfd
				  * when the full kind is refused; 0 or 1,
				  * default 0 (UPAGER_USER_MODE_ONLY).  See
				  * "Without privilege" below. */
	const char *stats_dir;	/* where the live statistics file read by
				 * upager-stat goes: NULL = the default
				 * (/run/upager for root, else
				 * $XDG_RUNTIME_DIR/upager or /tmp/upager-UID),
				 * a directory (created 0700 if missing), or
				 * "off": none (UPAGER_STATS_DIR) */
	/*
	 * Far memory: a tier of the store on a memcached cluster, between the
	 * RAM tier and the swap file.  Objects leaving the RAM tier go to the
	 * cluster in batches (one network round trip per batch of up to 256
	 * objects), sealed (below); what the cluster refuses (servers run
	 * with -M, full) goes to the swap file.  Keys are
	 * "upg:<16 hex: random runtime id>:<hex object index>"; a forked
	 * child has its own id; upg_runtime_destroy deletes every key.
	 */
	const char *remote;	/* "host:port[,host:port...]", NULL or "" =
				 * no remote tier (UPAGER_REMOTE) */
	uint32_t remote_replicas; /* extra copies on the next servers of the
				   * ketama ring, below the number of servers,
				   * default 0 (UPAGER_REMOTE_REPLICAS) */
	uint32_t remote_timeout_ms; /* bound of one batch, get or multi-get;
				     * a server that misses it is skipped for
				     * 2 s; 1..60000, default 2000
				     * (UPAGER_REMOTE_TIMEOUT_MS) */
	uint32_t remote_optional; /* 1: a cluster that does not answer at
				   * start is a warning (the local tiers
				   * only), 0: an error, default 0
				   * (UPAGER_REMOTE_OPTIONAL) */
	/*
	 * 1: seal what goes to the swap file as well (the remote tier always
	 * is): compressed, then encrypted and authenticated with AES-256-GCM
	 * (XChaCha20-Poly1305 without AES-NI) under a per-runtime key from
	 * getrandom held in locked memory left out of core dumps.  A page
	 * that does not open is poisoned (SIGBUS).  Default 0
	 * (UPAGER_ENCRYPT).
	 */
	uint32_t encrypt;
	int32_t resolve;	/* enum upg_resolve (UPAGER_RESOLVE) */
	uint32_t ram_tier_max;	/* percent of mem_limit the RAM tier may grow
				 * to while swap-ins from the swap file (or
				 * the cluster) are common and pages compress
				 * well, shrinking back to ram_tier when they
				 * are not; at most ram_tier: fixed; 0..90,
				 * default 25: fixed (UPAGER_RAM_TIER_MAX) */
	uint32_t probation;	/* percent of mem_limit kept for the youngest
				 * evicted pages uncompressed (a touch soon
				 * after eviction then costs a copy, not a
				 * decompression), besides the RAM tier;
				 * 0..50, default 0: none (UPAGER_PROBATION) */
	uint32_t reserved32;	/* zero */
	uint64_t reserved[3];	/* zero; room to grow (the struct keeps its
				 * size: probation took a reserved word) */
};

/*
 * Without privilege.  The full userfaultfd, which upager uses by default,
 * also reports the faults the kernel takes on the process's behalf (a
 * read(2) into a buffer whose page is not present waits while upager
 * brings the page in).  Opening it takes one of: the CAP_SYS_PTRACE
 * capability, `sysctl vm.unprivileged_userfaultfd=1`, or read-write
 * access to /dev/userfaultfd (a udev rule can give it to a group).
 * Without them upg_runtime_create() fails with -EPERM and a message that
 * names these three.
 *
 * A program that sets user_mode_only (or UPAGER_USER_MODE_ONLY=1) accepts
 * instead, when all of those are refused, the user-mode-only kind
 * (UFFD_USER_MODE_ONLY), which any process may open.  What changes: only
 * faults taken by the program's own instructions are served.  A system
 * call or any other kernel access to a page of a region that is not
 * present -- never touched, or evicted to the swap store -- or that upager
 * keeps write-protected (swapped in by a read and not written since, under
 * a snapshot) is not served and fails with EFAULT: read(2) or recv(2) into
 * such a buffer, write(2) from it, a futex on it, io_uring buffers.  Touch
 * the pages first (one write per page), or keep such buffers outside
 * regions.  Everything else
 * is the same, fork() included (upg_fork_child() gives the child a
 * user-mode-only userfaultfd of its own; the kernel's
 * UFFD_FEATURE_EVENT_FORK, which needs CAP_SYS_PTRACE, is never used).
 * The full kind is still taken when it is allowed.  Preload mode
 * (upager-run) ignores this option: it cannot know what an unmodified
 * program hands to the kernel.
 */

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
 *            a seccomp filter); or see user_mode_only ("Without
 *            privilege" above);
 *   -ENOSYS  the kernel has no userfaultfd;
 *   -ENOENT, -ENOTDIR, -EACCES, -EROFS, -EOPNOTSUPP  with a budget, the
 *            swap directory (UPAGER_SWAP_DIR) is missing, not a directory,
 *            not writable by this user, or has no O_TMPFILE; checked
 *            first, and the message names it;
 *   -ENOMEM, -EAGAIN  memory or threads could not be had.
 * Without io_uring the swap file is read with pread/pwrite (a warning).
 * Failures met while running, and what each costs: README.md, "When
 * things fail".
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
 * A UPG_FILE_SHARED region's written pages are first written back to its
 * file (without fdatasync: call upg_region_sync() for that), as munmap(2)
 * leaves them to the kernel's write-back; an error doing so is logged.
 * Returns 0, or -EINVAL if region is NULL or already destroyed.  Region
 * handles live in memory that upager never unmaps and are recycled
 * oldest-first, so a second destroy is reliably -EINVAL until the handle
 * is recycled by a later upg_anon_create().
 */
UPG_API int upg_region_destroy(struct upg_region *region);

/* ------------------------------------------------------------------ */
/* Snapshots and clones                                                */
/* ------------------------------------------------------------------ */

/*
 * A snapshot is a region's contents frozen at one instant, kept copy-on-
 * write: taking one costs time in proportion to the region's populated
 * pages; afterwards the first write to each page saves its old contents
 * (compressed, in the swap store, so they count against the budget and can
 * go to disk; pages already stored are shared by reference, never copied).
 * Several snapshots of one region may exist at once, each independent.
 *
 * Handles are type-stable, like regions: a dropped snapshot's handle reads
 * as dead (-EINVAL) until it is recycled by a much later take.
 *
 * Memory that is MADV_DONTNEED'd (or munmap'd) by the application behind
 * upager's back loses the snapshot's view of those pages.
 */
struct upg_snapshot;

/*
 * Take a snapshot of `region`.  Application threads need not stop: the
 * snapshot is the region as it was at one instant during the call (the end
 * of its write-protect pass); a thread that writes a page already
 * protected, or faults on the region, waits until the call returns.  A
 * runtime without a budget gets a swap store on its first snapshot.
 *
 * Returns 0 and sets *out, or:
 *   -EINVAL      region is NULL or destroyed, or out is NULL;
 *   -EOPNOTSUPP  region is a clone (snapshots of clones are not
 *                supported), or the kernel cannot write-protect it;
 *   -ENOMEM      no memory for the snapshot's metadata;
 *   other        -errno of creating the store or of UFFDIO_WRITEPROTECT.
 */
UPG_API UPG_NODISCARD int upg_snapshot_take(struct upg_region *region,
					    struct upg_snapshot **out);

/*
 * Copy `len` bytes of the snapshot from `offset` into buf.  Any offset and
 * length within the region.  buf may be any memory, including another
 * upager region.  May run while the region is written.
 *
 * Returns 0, or:
 *   -EINVAL  snap is NULL or dropped, buf is NULL with len > 0, or
 *            [offset, offset + len) is not inside the region;
 *   -EIO     a page of the snapshot is lost (its copy could not be stored,
 *            or its stored copy is unreadable); bytes before it are copied;
 *   -ENOMEM  no memory for a bounce page.
 */
UPG_API UPG_NODISCARD int upg_snapshot_read(struct upg_snapshot *snap,
					    size_t offset, void *buf,
					    size_t len);

/*
 * Roll the snapshot's region back to the snapshot.  Pages written since
 * are replaced (lazily: stored pages are shared with the snapshot, read
 * back on their next access); other snapshots of the region keep their own
 * view; the snapshot stays valid and can be restored again.
 *
 * The caller must keep the region's users quiet during the call: a write
 * made while it runs may be kept or lost, page by page.  Faults on the
 * region wait until it returns.
 *
 * Returns 0, or:
 *   -EINVAL  snap is NULL or dropped;
 *   -ENODEV  its region was destroyed;
 *   -EIO     some pages of the snapshot were lost: those pages of the
 *            region are poisoned (access gets SIGBUS), the rest restored;
 *   -ENOMEM  no memory for the region's page table.
 */
UPG_API UPG_NODISCARD int upg_snapshot_restore(struct upg_snapshot *snap);

/*
 * Release a snapshot: its stored pages are freed (store occupancy goes
 * down), unless a clone still reads them, in which case they are freed
 * with the last such clone.  The handle is invalid from the call on.
 * Must not run concurrently with another call on the same snapshot.
 *
 * Returns 0, or -EINVAL if snap is NULL or already dropped.
 */
UPG_API int upg_snapshot_drop(struct upg_snapshot *snap);

/*
 * Create a new anonymous region whose contents are the snapshot's, copy-
 * on-write as fork() gives a child: pages are brought in on first access
 * (stored ones shared by reference until written); writing the clone
 * changes neither the snapshot nor its region, and the clone stays valid
 * after the snapshot is dropped or its region destroyed.  Destroy it with
 * upg_region_destroy().
 *
 * Returns 0 and sets *out, or -EINVAL (snap NULL or dropped, out NULL), or
 * the errors of upg_anon_create().
 */
UPG_API UPG_NODISCARD int upg_region_clone(struct upg_snapshot *snap,
					   struct upg_region **out);
/* File regions                                                        */
/* ------------------------------------------------------------------ */

/* Flags of upg_file_create(): exactly one of SHARED and PRIVATE, or
 * READONLY alone or with one of them. */
#define UPG_FILE_SHARED 0x1u	/* writes go back to the file (sync, eviction) */
#define UPG_FILE_PRIVATE 0x2u	/* writes stay in memory and the swap store */
#define UPG_FILE_READONLY 0x4u	/* mapped read-only: a write gets SIGSEGV */

/*
 * Create a region of `size` bytes (rounded up to whole pages) whose pages
 * are the file's bytes from `offset` on, read by upager's handlers on first
 * access, like mmap(2) of the file, but counted in the budget and the
 * statistics.
 *
 * fd is duplicated (close-on-exec) and kept for the region's life: the
 * caller may close its own.  It must be a regular file opened for reading,
 * and for reading and writing (without O_APPEND) when the region is
 * UPG_FILE_SHARED and not UPG_FILE_READONLY.
 *
 * Contents and outcomes:
 *  - the page holding the end of the file reads the file's bytes, then
 *    zeros up to the page's end; writes past the end of the file are never
 *    written to it (they stay in memory, as with mmap);
 *  - a page wholly past the end of the file when it is first read (the
 *    region is larger than the file, or the file was truncated underneath)
 *    gets SIGBUS, as mmap gives, and keeps getting it for the region's
 *    life.  Pages already in memory when the file is truncated keep their
 *    contents until evicted; a dirty one past the new end is discarded
 *    when written back, as the kernel discards it;
 *  - an I/O error reading the page gets SIGBUS to the accessing thread;
 *  - UPG_FILE_SHARED: written pages go back to the file on
 *    upg_region_sync() and when evicted under the budget; the file is
 *    never extended;
 *  - UPG_FILE_PRIVATE: the file is never written; written pages are
 *    evicted to the swap store like anonymous memory;
 *  - UPG_FILE_READONLY: the region is mapped PROT_READ, so a write gets
 *    SIGSEGV (SEGV_ACCERR), exactly as with a read-only mmap.
 *  - Unwritten pages are dropped under the budget and read again later;
 *    those read at random (not by read-ahead) first leave a compressed
 *    copy in the store's RAM tier if they compress to half a page or
 *    less, and a later fault is served from it instead of the file while
 *    the tier has room for it (file_pages_kept, file_copy_hits).  A copy
 *    behaves as a resident page would, except that a page the file no
 *    longer covers (truncated underneath) is read from the file again.
 *  - Regions are not coherent with each other nor with write(2) to the
 *    file: a region sees a change made elsewhere only in pages it reads
 *    after the change reached the file (as MAP_PRIVATE does).
 * The region must not be mprotect()ed, remapped or madvise()d.  Fork: as
 * for upg_anon_create(), a child does not inherit the region.
 *
 * Returns 0 and sets *out, or:
 *   -EINVAL  rt or out is NULL; fd is negative, not open or not a regular
 *            file; offset is negative or not a multiple of the page size;
 *            size is 0 or exceeds UPG_REGION_MAX; offset + size overflows;
 *            flags is 0, has unknown bits, or has both SHARED and PRIVATE;
 *   -EACCES  fd is not open for reading, or the region is shared and
 *            writable and fd is not open for writing or is O_APPEND;
 *   -EMFILE, -ENFILE  no descriptor for the duplicate;
 *   -ENOMEM  no address space or metadata memory;
 *   other    -errno of UFFDIO_REGISTER.
 */
UPG_API UPG_NODISCARD int upg_file_create(struct upg_runtime *rt, int fd,
					  off_t offset, size_t size,
					  unsigned flags,
					  struct upg_region **out);

/*
 * Write every page of a UPG_FILE_SHARED region written since it was last
 * written back to the file, then fdatasync(2) it, like msync(MS_SYNC).
 * Each page is write-protected before it is copied, so a write made during
 * the sync is never lost: it dirties the page again for the next sync.
 * Pages written concurrently with the sync may or may not be included.
 * Returns 0 (also for private and read-only file regions, which never
 * write their file), or:
 *   -EINVAL  region is NULL, destroyed, or not a file region;
 *   other    -errno of pwrite(2) or fdatasync(2) (-EIO, -ENOSPC, ...):
 *            pages not written stay dirty and the next sync retries them.
 */
UPG_API UPG_NODISCARD int upg_region_sync(struct upg_region *region);

/* Access patterns for upg_region_advise(). */
enum upg_advice {
	UPG_ADVICE_NORMAL = 0,	   /* default: read-ahead grows while faults
				    * come in order (1 page when random, up
				    * to 2 MiB) */
	UPG_ADVICE_RANDOM = 1,	   /* no read-ahead: one page per fault */
	UPG_ADVICE_SEQUENTIAL = 2, /* 8 MiB read per fault from the first
				    * (windows stay under 1/16 of a budget) */
};

/*
 * Tell upager how the region will be accessed, like madvise(2)'s
 * MADV_NORMAL/RANDOM/SEQUENTIAL, for the whole region.  It steers the
 * read-ahead of file regions; anonymous regions accept it and are not
 * affected (yet).  Returns 0, or -EINVAL if region is NULL or destroyed
 * or advice is unknown.
 */
UPG_API int upg_region_advise(struct upg_region *region, int advice);
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
	uint64_t snapshots;		/* snapshots alive (a dropped one that
					 * a clone still reads counts too) */
	uint64_t snapshot_pages;	/* pages snapshots hold apart from their
					 * region: zeros, copies, shared objects */
	uint64_t snapshot_preserved;	/* pages copied into the store on the
					 * first write after a snapshot */
	uint64_t snapshot_shared;	/* stored pages a snapshot or clone took
					 * by reference instead of a copy */
	uint64_t file_pages_read;	/* file pages read and installed */
	uint64_t file_readahead;	/* ...of them, read ahead of a fault */
	uint64_t file_pages_written;	/* pages written back to their file */
	uint64_t file_past_eof;		/* accesses past the end of a file:
					 * SIGBUS */
	uint64_t file_pages_kept;	/* clean file pages evicted into the
					 * RAM tier compressed, not dropped */
	uint64_t file_copy_hits;	/* file faults served from such a
					 * copy instead of the file */
	uint64_t pages_reserved;	/* pages mapped to the zero page ahead
					 * of their first write, charged to
					 * the budget as if resident */
	uint64_t reservations_reclaimed; /* ...of them, taken back unwritten
					 * by the evictor */
	uint64_t swapin_clustered;	/* stored pages brought back with a
					 * faulting neighbour, no fault of
					 * their own */
	uint64_t pages_vanished;	/* resident pages found gone at a
					 * fault, read as zeros: the program
					 * dropped them behind upager
					 * (MADV_DONTNEED); in preload mode,
					 * where drops go through upager, and
					 * in any region the program never
					 * drops, a page lost: report it */
	uint64_t managed_peak_bytes;	/* the most bytes charged to the
					 * budget at once (resident, reserved,
					 * RAM tier); 0 in a region's stats */
	uint64_t process_peak_rss;	/* the process's peak resident set
					 * (getrusage), bytes; 0 in a
					 * region's stats */
	/* The store per tier: objects held now, and swap-ins served. */
	uint64_t store_ram_objects, store_disk_objects, store_remote_objects;
	uint64_t store_remote_bytes;	/* sealed bytes on the cluster */
	uint64_t swapin_from_ram, swapin_from_disk, swapin_from_remote;
	/* The remote tier (UPAGER_REMOTE). */
	uint64_t remote_sets;		/* objects stored (copies count once) */
	uint64_t remote_refused;	/* ...refused (full, or down): to the
					 * swap file instead */
	uint64_t remote_gets, remote_misses; /* key lookups, not found */
	uint64_t remote_errors, remote_timeouts; /* server failures */
	uint64_t remote_batches;	/* eviction batches sent */
	uint64_t remote_rounds;		/* network round trips, all calls */
	uint64_t remote_lost;		/* objects no copy of came back */
	uint64_t seal_errors;		/* sealed objects that did not open */
	uint64_t store_promoted;	/* stored copies of clean pages
					 * evicted brought back from the swap
					 * file into the RAM tier */
	uint64_t store_ram_limit;	/* what the RAM tier may hold now
					 * (UPAGER_RAM_TIER..._MAX of the
					 * budget, adapted) */
	/* The probation list (UPAGER_PROBATION). */
	uint64_t probation_pages;	/* pages on it now */
	uint64_t probation_aged;	/* compressed when they aged out */
	uint64_t swapin_from_probation;	/* swap-ins it served (counted in
					 * swapin_from_ram too) */
	uint64_t swapin_segment_reused;	/* swap-ins from a swap-file
					 * segment read whole for an earlier
					 * one, no read of their own (counted
					 * in swapin_from_ram too) */
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
 * Live statistics: while a runtime lives, a thread of its own refreshes a
 * copy of these statistics (with the raw latency histograms) every 250 ms
 * in a file that upager-stat reads: <pid>-<n>.stats in the directory of
 * upg_options.stats_dir (UPAGER_STATS_DIR), created mode 0700, the file
 * 0600, so only its user (and root) can read it.  The fault path does not
 * change: no syscall, no extra write.  The file is removed by
 * upg_runtime_destroy() and at exit; one left by a killed process is
 * recognised as stale (its process no longer maps it) and removed by the
 * next runtime to start there or by upager-stat.  A child forked with
 * upg_fork_child() publishes a file of its own.  stats_dir "off" (or
 * UPAGER_STATS_DIR=off) publishes nothing.  A directory that cannot be
 * used is logged (a warning when it was asked for, info for the default)
 * and the runtime runs unpublished.
 */

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
