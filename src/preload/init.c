/* SPDX-License-Identifier: MIT */
/*
 * Start-up, exit and fork of the preload library.
 *
 * Start-up (constructor, main thread, before main): options from UPAGER_*,
 * the runtime, the reservation (one region of UPAGER_PRELOAD_HEAP bytes,
 * inherited by children), the managed arenas, the fork handlers; then the
 * state goes READY and threads bind to managed arenas on their next
 * allocation.  Whatever fails, the program runs on unmanaged: one line on
 * stderr says why.  Allocations made before READY (ld.so, libc, jemalloc's
 * own start, our start-up itself) are unmanaged and stay so.
 *
 * Exit (destructor): statistics, if asked for, and the remote tier's keys
 * deleted.  The runtime is never torn down: destructors and atexit
 * handlers that run later still use the heap.
 *
 * Fork: the handlers are registered after jemalloc's (jemalloc registers
 * its own during its initialisation, which precedes ours), so our prepare
 * runs before jemalloc locks its arenas and our child handler after it has
 * reinitialised them: upg_fork_child() may start threads, whose creation
 * allocates.
 */
#include <errno.h>
#include <link.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jemalloc/jemalloc.h>

#include "log.h"
#include "runtime.h"
#include "store.h"
#include "preload.h"
#include "util.h"

struct preload pl = { .lock = PTHREAD_RWLOCK_INITIALIZER };

/* Executable segments of this library and libjemalloc (own), and of libc
 * and ld.so (sys). */
struct text {
	uintptr_t lo, hi;
};
static struct text own[8], sys_text[8];
static unsigned nown, nsys;
static bool forked_child;
static __thread unsigned char fork_saved IE;

void pl_say(const char *fmt, ...)
{
	char line[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	n = MIN(n, (int)sizeof(line) - 2);
	line[n++] = '\n';
	if (write(STDERR_FILENO, line, (size_t)n) < 0)
		return;
}

static bool in_text(const struct text *t, unsigned n, uintptr_t a)
{
	for (unsigned i = 0; i < n; i++)
		if (a - t[i].lo < t[i].hi - t[i].lo)
			return true;
	return false;
}

bool pl_internal_caller(const void *ret)
{
	return in_text(own, nown, (uintptr_t)ret) ||
	       in_text(sys_text, nsys, (uintptr_t)ret);
}

bool pl_libc_caller(const void *ret)
{
	return in_text(sys_text, nsys, (uintptr_t)ret);
}

static bool object_holds(const struct dl_phdr_info *info, uintptr_t addr)
{
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		uintptr_t lo = info->dlpi_addr + ph->p_vaddr;

		if (ph->p_type == PT_LOAD && addr - lo < ph->p_memsz)
			return true;
	}
	return false;
}

static void add_text(const struct dl_phdr_info *info, struct text *t,
		     unsigned *n)
{
	for (int i = 0; i < info->dlpi_phnum && *n < 8; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];

		if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X))
			continue;
		t[*n].lo = info->dlpi_addr + ph->p_vaddr;
		t[*n].hi = t[*n].lo + ph->p_memsz;
		(*n)++;
	}
}

static int find_text(struct dl_phdr_info *info, size_t size, void *arg)
{
	const uintptr_t *probes = arg;
	const char *name = info->dlpi_name ? info->dlpi_name : "";

	if (object_holds(info, probes[0]) || object_holds(info, probes[1]))
		add_text(info, own, &nown);
	else if (object_holds(info, probes[2]) || strstr(name, "/ld-linux"))
		add_text(info, sys_text, &nsys);
	return 0;
}

static void fork_prepare(void)
{
	if (!pl_ready())
		return;
	fork_saved = pl_enter_internal();
	pthread_rwlock_wrlock(&pl.lock);
	upg_fork_prepare(pl.rt);
}

static void fork_parent(void)
{
	if (!pl_ready())
		return;
	upg_fork_parent(pl.rt);
	pthread_rwlock_unlock(&pl.lock);
	pl_leave_internal(fork_saved);
}

static void fork_child(void)
{
	if (!pl_ready())
		return;
	/* Held for writing by the parent's forking thread, which is us; a
	 * fresh lock is simpler than reasoning about glibc's owner ids. */
	pthread_rwlock_init(&pl.lock, NULL);
	forked_child = true;
	if (upg_fork_child(pl.rt)) {
		pl_say("upager: the child process has no pager; it exits");
		_exit(127);
	}
	pl_leave_internal(fork_saved);
}

/* The reservation: as large as asked, or as large as the kernel allows. */
static int reserve(uint64_t size)
{
	int err;

	for (;;) {
		err = upg_anon_create(pl.rt, size, 0, &pl.heap);
		if (err != -ENOMEM || size <= ((uint64_t)1 << 30))
			break;
		size /= 2;
	}
	if (err)
		return err;
	err = upg_region_inherit(pl.heap);
	if (err)
		return err;
	pl.base = (uintptr_t)upg_region_addr(pl.heap);
	pl.end = pl.base + upg_region_size(pl.heap);
	return rsv_init(pl.base, pl.end - pl.base) ? -ENOMEM : 0;
}

static int start(void)
{
	const uintptr_t probes[3] = { (uintptr_t)&start, (uintptr_t)&mallocx,
				      (uintptr_t)&fopen };
	const char *env = getenv("UPAGER_PRELOAD");
	struct upg_options o;
	int level, err;

	if (env && strcmp(env, "0") == 0)
		return -ECANCELED;
	upg_options_init(&o);
	if (upg_options_from_env(&o) < 0) {
		pl_say("upager: %s runs unmanaged", program_invocation_short_name);
		return -EINVAL;
	}
	/* A program's heap goes to the kernel (read(2), futexes), which
	 * would get EFAULT on pages not in memory (upager.h). */
	if (o.resolve == UPG_RESOLVE_THREAD) {
		pl_say("upager: UPAGER_RESOLVE=thread is for programs written "
		       "for it, not preload (system calls on a page not in "
		       "memory would fail with EFAULT): %s runs unmanaged",
		       program_invocation_short_name);
		return -EINVAL;
	}
	/* The program may hand the heap to the kernel (read(2) into a
	 * malloc'd buffer): only the full kind serves that. */
	if (o.user_mode_only)
		pl_say("upager: UPAGER_USER_MODE_ONLY is ignored in preload "
		       "mode: %s may give the kernel memory that is not "
		       "resident", program_invocation_short_name);
	o.user_mode_only = 0;
	dl_iterate_phdr(find_text, (void *)probes);
	/* One line if userfaultfd is missing, not the runtime's several. */
	level = o.log_level;
	o.log_level = UPG_LOG_NONE;
	err = upg_runtime_create(&o, &pl.rt);
	log_set_level(level);
	if (err) {
		pl_say("upager: %s (%s): %s runs unmanaged",
		       err == -ENOSYS || err == -EPERM
			       ? "userfaultfd is not available"
			       : "cannot start",
		       upg_last_error(), program_invocation_short_name);
		return err;
	}
	err = reserve(o.preload_heap);
	if (!err)
		err = arenas_create();
	if (err) {
		pl_say("upager: cannot set up the managed heap (%s): %s runs "
		       "unmanaged", strerror(-err), program_invocation_short_name);
		return err;
	}
	pl.min_mmap = o.preload_min_mmap;
	pl.mem_limit = o.mem_limit;
	pthread_atfork(fork_prepare, fork_parent, fork_child);
	return 0;
}

__attribute__((constructor)) static void preload_start(void)
{
	unsigned char saved = pl_enter_internal();
	int err = start();

	pl_leave_internal(saved);
	atomic_store_explicit(&pl.state, err ? PL_OFF : PL_READY,
			      memory_order_release);
}

/* Statistics at exit: in the process the launcher started (it sets
 * UPAGER_STATS_PID; the same pid after exec), not in its forked children
 * or other programs it runs, which would overwrite them; in every program
 * it runs if the path names each process's file ("%p": the pid). */
static bool stats_here(void)
{
	const char *pid = getenv("UPAGER_STATS_PID");
	const char *path = getenv("UPAGER_STATS");

	if (path && strstr(path, "%p"))
		return true;
	return !forked_child && (!pid || atol(pid) == (long)getpid());
}

__attribute__((destructor)) static void preload_stop(void)
{
	unsigned char saved;

	if (!pl.rt || !pl_ready())
		return;
	saved = pl_enter_internal();
	if (stats_here())
		upg_stats_write(pl.rt);
	/* Every process, forked children too (each has keys of its own):
	 * nothing of it stays on the cluster after it.  A child ended with
	 * _exit() runs no destructor; README "Far memory" says so. */
	store_release_remote(pl.rt->store);
	pl_leave_internal(saved);
}
