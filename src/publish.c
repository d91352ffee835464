/* SPDX-License-Identifier: MIT */
/*
 * The publisher thread: live statistics for upager-stat.
 *
 * Why a periodic snapshot and not the counters themselves in a shared
 * mapping: the fault path stays exactly as it is (its relaxed atomics in
 * memory private to the process), the file's layout is not struct
 * counters', and a fork needs no remapping of live counters.  The price
 * is one refresh per PUBLISH_MS on this thread: upg_stats_get() plus the
 * histograms copied (about 50 KiB).  Measured with a 1 TiB region, 8192
 * pages touched under a 16 MiB budget, on a 2-vCPU guest at load 47: a
 * median of 54 us, p90 97 us; four a second, about 0.02 % of a CPU.  A reader sees values up
 * to PUBLISH_MS old, and all of one refresh (the seqlock), never a mix.
 *
 * Files are written as ".<pid>-<n>.tmp", filled, then renamed, so that a
 * cleaner in another process never sees a named file that its process
 * does not map yet (statsfile_live).  The mapping is MADV_DONTFORK: a
 * child never writes its parent's file, and publishes its own.
 *
 * Threads: rt->publisher is set and cleared by the thread that creates,
 * destroys or forks the runtime; p->lock guards p->stop only.  The live[]
 * slots let the exit destructor remove this process's files when a
 * program exits without destroying its runtimes (preload mode never does).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "mem.h"
#include "publish.h"
#include "runtime.h"
#include "statsfile.h"
#include "store.h"
#include "thread.h"
#include "util.h"

struct publisher {
	struct upg_runtime *rt;
	pid_t pid;			/* the process the file belongs to */
	struct statsfile *map;		/* the file, MAP_SHARED */
	char dir[PATH_MAX];
	char path[PATH_MAX];
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t wake;		/* CLOCK_MONOTONIC */
	bool stop;
	uint64_t win_start, win_faults;	/* the fault rate's window */
	double rate;
	struct statsfile_data scratch;	/* built here, then copied */
};

#define LIVE_MAX 64
static struct publisher *_Atomic live[LIVE_MAX];
static _Atomic unsigned file_seq;
/* Set once this process image has cleaned (a forked child inherits it:
 * its parent did; an exec'd image starts clean). */
static _Atomic bool cleaned;

static void live_add(struct publisher *p)
{
	for (unsigned i = 0; i < LIVE_MAX; i++) {
		struct publisher *old = atomic_load(&live[i]);

		/* A slot of a parent's publisher is free in a child. */
		if ((!old || old->pid != p->pid) &&
		    atomic_compare_exchange_strong(&live[i], &old, p))
			return;
	}
}

static void live_del(struct publisher *p)
{
	for (unsigned i = 0; i < LIVE_MAX; i++) {
		struct publisher *old = p;

		if (atomic_compare_exchange_strong(&live[i], &old, NULL))
			return;
	}
}

/* At exit: this process's files go, even if its runtimes live on into
 * later destructors (their threads keep writing an unlinked file). */
__attribute__((destructor)) static void publish_exit(void)
{
	pid_t self = getpid();

	for (unsigned i = 0; i < LIVE_MAX; i++) {
		struct publisher *p = atomic_load(&live[i]);

		if (p && p->pid == self)
			unlink(p->path);
	}
}

static void refresh(struct publisher *p)
{
	struct upg_runtime *rt = p->rt;
	struct statsfile_data *d = &p->scratch;
	struct timespec ts;
	uint64_t now = now_ns();
	uint32_t seq;

	upg_stats_get(rt, &d->stats);
	for (int k = 0; k < UPG_FAULT_NKINDS; k++)
		hist_copy(&d->hist[k], &rt->hist[k]);
	d->store_pages = 0;
	if (rt->store) {
		struct store_stats ss;

		store_get_stats(rt->store, &ss);
		d->store_pages = ss.objects;
	}
	d->mem_limit = rt->opts.mem_limit;
	if (now - p->win_start >= 1000000000u) {
		p->rate = (double)(d->stats.faults_total - p->win_faults) *
			  1e9 / (double)(now - p->win_start);
		p->win_start = now;
		p->win_faults = d->stats.faults_total;
	}
	d->fault_rate = p->rate;
	clock_gettime(CLOCK_REALTIME, &ts);
	d->updated_ns = (uint64_t)ts.tv_sec * 1000000000u +
			(uint64_t)ts.tv_nsec;

	/* Seqlock write: odd, the copy, even again (statsfile.c reads). */
	seq = atomic_load_explicit(&p->map->seq, memory_order_relaxed);
	atomic_store_explicit(&p->map->seq, seq + 1, memory_order_relaxed);
	atomic_thread_fence(memory_order_release);
	memcpy((void *)&p->map->data, d, sizeof(*d));
	atomic_store_explicit(&p->map->seq, seq + 2, memory_order_release);
}

static void *publisher_main(void *arg)
{
	struct publisher *p = arg;
	struct timespec until;

	pthread_mutex_lock(&p->lock);
	while (!p->stop) {
		clock_gettime(CLOCK_MONOTONIC, &until);
		until.tv_nsec += PUBLISH_MS * 1000000L;
		until.tv_sec += until.tv_nsec / 1000000000L;
		until.tv_nsec %= 1000000000L;
		while (!p->stop &&
		       pthread_cond_timedwait(&p->wake, &p->lock, &until) == 0)
			;
		if (p->stop)
			break;
		pthread_mutex_unlock(&p->lock);
		refresh(p);
		pthread_mutex_lock(&p->lock);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

/* Create, fill and map the file under a temporary name, then rename it. */
static int create_file(struct publisher *p)
{
	char tmp[PATH_MAX];
	unsigned n = atomic_fetch_add(&file_seq, 1);
	struct timespec ts;
	void *map;
	int fd, err = 0;

	if (snprintf(tmp, sizeof(tmp), "%s/.%d-%u.tmp", p->dir, (int)p->pid,
		     n) >= (int)sizeof(tmp) ||
	    snprintf(p->path, sizeof(p->path), "%s/%d-%u" STATSFILE_SUFFIX,
		     p->dir, (int)p->pid, n) >= (int)sizeof(p->path))
		return -ENAMETOOLONG;
	fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC,
		  0600);
	if (fd < 0)
		return -errno;
	if (fchmod(fd, 0600) < 0 ||
	    ftruncate(fd, sizeof(struct statsfile)) < 0)
		err = -errno;
	map = err ? MAP_FAILED
		  : mmap(NULL, sizeof(struct statsfile),
			 PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (!err && map == MAP_FAILED)
		err = -errno;
	if (err) {
		unlink(tmp);
		return err;
	}
	madvise(map, sizeof(struct statsfile), MADV_DONTFORK);
	p->map = map;
	statsfile_init(p->map, p->pid, program_invocation_short_name);
	clock_gettime(CLOCK_REALTIME, &ts);
	p->map->started_ns = (uint64_t)ts.tv_sec * 1000000000u +
			     (uint64_t)ts.tv_nsec;
	p->win_start = now_ns();
	refresh(p);
	if (rename(tmp, p->path) < 0) {
		err = -errno;
		unlink(tmp);
	}
	return err;
}

static void publisher_free(struct publisher *p)
{
	if (p->map)
		munmap(p->map, sizeof(struct statsfile));
	pthread_cond_destroy(&p->wake);
	pthread_mutex_destroy(&p->lock);
	mem_free(p, sizeof(*p));
}

/* Start publishing into dir (already resolved). */
static void start_in(struct upg_runtime *rt, const char *dir, bool strict)
{
	struct publisher *p;
	pthread_condattr_t ca;
	const char *why;
	int err;

	p = mem_alloc(sizeof(*p));
	if (!p)
		return;
	p->rt = rt;
	p->pid = getpid();
	snprintf(p->dir, sizeof(p->dir), "%s", dir);
	pthread_mutex_init(&p->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&p->wake, &ca);
	pthread_condattr_destroy(&ca);
	err = statsdir_prepare(dir, strict, &why);
	if (err) {
		/* Only an explicit directory is worth a warning. */
		upg_log(strict ? UPG_LOG_INFO : UPG_LOG_WARN,
			"statistics directory %s: %s (%s): upager-stat will "
			"not see this process", dir, why, strerror(-err));
		goto fail;
	}
	/* Once per process image: what earlier ones left behind. */
	if (!atomic_exchange(&cleaned, true))
		statsfile_clean(dir);
	err = create_file(p);
	if (!err)
		err = thread_start(&p->thread, publisher_main, p,
				   "upager-stats");
	if (err) {
		log_warn("cannot publish statistics in %s: %s", dir,
			 strerror(-err));
		if (p->map)
			unlink(p->path);
		goto fail;
	}
	live_add(p);
	rt->publisher = p;
	return;
fail:
	publisher_free(p);
}

void publish_start(struct upg_runtime *rt)
{
	const char *opt = rt->stats_dir;
	char dir[PATH_MAX];

	if (strcmp(opt, STATSFILE_OFF) == 0)
		return;
	if (statsdir_path(dir, sizeof(dir), opt, geteuid(),
			  getenv("XDG_RUNTIME_DIR")) < 0) {
		log_warn("statistics directory name too long: not published");
		return;
	}
	start_in(rt, dir, !*opt);
}

void publish_stop(struct upg_runtime *rt)
{
	struct publisher *p = rt->publisher;

	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	p->stop = true;
	pthread_cond_signal(&p->wake);
	pthread_mutex_unlock(&p->lock);
	pthread_join(p->thread, NULL);
	live_del(p);
	unlink(p->path);
	rt->publisher = NULL;
	publisher_free(p);
}

void publish_fork_child(struct upg_runtime *rt)
{
	struct publisher *old = rt->publisher;
	char dir[PATH_MAX];

	if (!old)
		return;
	/* The parent's: its thread is not here, its lock may be held and
	 * its mapping was not inherited.  Only its memory is ours. */
	live_del(old);
	memcpy(dir, old->dir, sizeof(dir));
	mem_free(old, sizeof(*old));
	rt->publisher = NULL;
	start_in(rt, dir, !*rt->stats_dir);
}
