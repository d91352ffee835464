/* SPDX-License-Identifier: MIT */
/* The runtime: create, destroy, statistics. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include "config.h"
#include "evict.h"
#include "file.h"
#include "log.h"
#include "mem.h"
#include "pagemap.h"
#include "publish.h"
#include "runtime.h"
#include "sigbus.h"
#include "store.h"
#include "tier.h"
#include "uffd.h"
#include "util.h"

const char *upg_version(void)
{
	return "0.1.0";
}

static int copy_string(char *dst, size_t len, const char *src,
		       const char *what)
{
	if (!src) {
		dst[0] = '\0';
		return 0;
	}
	if (strlen(src) >= len) {
		log_error("%s is longer than %zu bytes", what, len - 1);
		return -EINVAL;
	}
	strcpy(dst, src);
	return 0;
}

static int resolve_options(const struct upg_options *in, struct upg_runtime *rt)
{
	struct upg_options opts;
	int err;

	if (in) {
		opts = *in;
	} else {
		upg_options_init(&opts);
		err = upg_options_from_env(&opts);
		if (err < 0)
			return err;
	}
	err = options_validate(&opts);
	if (!err)
		err = copy_string(rt->swap_dir, sizeof(rt->swap_dir),
				  opts.swap_dir, "the swap directory");
	if (!err)
		err = copy_string(rt->stats_path, sizeof(rt->stats_path),
				  opts.stats_path, "the statistics path");
	if (!err)
		err = copy_string(rt->stats_dir, sizeof(rt->stats_dir),
				  opts.stats_dir, "the statistics directory");
	if (!err)
		err = copy_string(rt->remote, sizeof(rt->remote), opts.remote,
				  "the remote server list");
	if (err)
		return err;
	opts.remote = rt->remote[0] ? rt->remote : NULL;
	opts.swap_dir = rt->swap_dir;
	opts.stats_path = rt->stats_path[0] ? rt->stats_path : NULL;
	opts.stats_dir = rt->stats_dir[0] ? rt->stats_dir : NULL;
	rt->opts = opts;
	log_set_level(opts.log_level);
	return 0;
}

/* Memory the handler reads and maps, outside any region. */
int map_private_pages(struct upg_runtime *rt)
{
	void *zero = mmap(NULL, ZERO_MAX_PAGES * PAGE_SIZE, PROT_READ,
			  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	void *bell = mmap(NULL, PAGE_SIZE, PROT_READ,
			  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	bool wp;
	int err = 0;

	if (zero == MAP_FAILED || bell == MAP_FAILED) {
		err = -ENOMEM;
	} else {
		madvise(bell, PAGE_SIZE, MADV_DONTFORK);
		err = uffd_register(rt->uffd, bell, PAGE_SIZE, &wp);
	}
	rt->zero_src = zero == MAP_FAILED ? NULL : zero;
	rt->doorbell = bell == MAP_FAILED ? NULL : bell;
	return err;
}

static void unmap_private_pages(struct upg_runtime *rt)
{
	if (rt->zero_src)
		munmap((void *)rt->zero_src, ZERO_MAX_PAGES * PAGE_SIZE);
	if (rt->doorbell)
		munmap(rt->doorbell, PAGE_SIZE);
}

/*
 * With a budget, pages go to a store whose RAM tier takes up to
 * UPAGER_RAM_TIER percent of it at first (a quarter by default), and
 * between that and UPAGER_RAM_TIER_MAX as the evictor adapts it (tier.h);
 * resident pages have the rest, and all of it while the tier is empty.  A
 * bigger tier turns disk reads into RAM-tier swap-ins but leaves fewer
 * pages resident, so more accesses fault: it pays where a fault costs much
 * less than a disk read (README, "Budget and swap store", has the
 * measurements).
 */
int store_start(struct upg_runtime *rt)
{
	struct store_config cfg = {
		.codec = rt->opts.codec,
		.ram_limit = rt->opts.mem_limit / 100 * rt->opts.ram_tier,
		.ram_max = tier_max(&rt->opts),
		.swap_dir = rt->swap_dir,
		.swap_size = rt->opts.swap_size,
		.drop = file_copy_drop,
		.remote = rt->opts.remote,
		.remote_replicas = rt->opts.remote_replicas,
		.remote_timeout_ms = rt->opts.remote_timeout_ms,
		.remote_optional = rt->opts.remote_optional,
		.encrypt = rt->opts.encrypt,
		.probation = rt->opts.mem_limit / 100 * rt->opts.probation,
	};
	int err;

	if (rt->opts.mem_limit == 0)
		return 0;
	err = store_create(&cfg, &rt->store);
	if (err && rt->opts.remote && err != -ENOENT && err != -EACCES &&
	    err != -EOPNOTSUPP)
		log_error("cannot start the store with the remote tier %s: %s",
			  rt->opts.remote, strerror(-err));
	else if (err)
		log_error("cannot create the swap file in UPAGER_SWAP_DIR=%s: "
			  "%s (it takes an existing directory this user can "
			  "write, on a file system with O_TMPFILE: tmpfs, "
			  "ext4, xfs, btrfs)", rt->swap_dir,
			  err == -EOPNOTSUPP ? "no O_TMPFILE there"
					     : strerror(-err));
	return err;
}

int runtime_uffd_open(struct upg_runtime *rt)
{
	uint64_t want = UFFD_WANTED_FEATURES;

	if (rt->opts.resolve == UPG_RESOLVE_THREAD)
		want |= UFFD_FEATURE_SIGBUS;
	return uffd_open(&rt->uffd, want, &rt->features,
			 rt->opts.user_mode_only, &rt->user_only);
}

/*
 * UPAGER_RESOLVE=thread starts no handler thread: with UFFD_FEATURE_SIGBUS
 * the kernel queues no fault message, and upager asks for no events
 * (uffd.h), so one would have nothing to read.  The evictor is started
 * either way.
 */
int resolvers_start(struct upg_runtime *rt)
{
	if (rt->opts.resolve == UPG_RESOLVE_THREAD)
		return sigbus_start(rt);
	return handlers_start(rt);
}

void resolvers_stop(struct upg_runtime *rt)
{
	sigbus_stop(rt);
	handlers_stop(rt);
}

#define HIST_BYTES (UPG_FAULT_NKINDS * sizeof(struct hist))

/*
 * UPAGER_IDLE_POLL: a CPU latency (PM QoS) request of 0, held while the
 * descriptor is open, keeps every idle CPU in its polling state.  Each
 * fault hands off twice between threads; where idle CPUs halt (a VM's
 * haltpoll driver with guest_halt_poll_ns 0), each hand-off otherwise
 * waits for a halted vCPU to wake: measured on such a guest, a zero fill
 * of 107 us became 14 us.  It costs power, or host CPU time, on every CPU
 * of the machine, hence opt-in.  Not holding it is not an error.
 */
static int idle_poll_hold(void)
{
	int32_t zero = 0;
	int fd = open("/dev/cpu_dma_latency", O_WRONLY | O_CLOEXEC);

	if (fd >= 0 && write(fd, &zero, sizeof(zero)) == sizeof(zero))
		return fd;
	log_warn("UPAGER_IDLE_POLL=1: cannot hold a CPU latency request on "
		 "/dev/cpu_dma_latency: %s%s; idle CPUs may halt",
		 strerror(errno), errno == EACCES ? " (needs root)" : "");
	if (fd >= 0)
		close(fd);
	return -1;
}

static void runtime_free(struct upg_runtime *rt)
{
	if (rt->store)
		store_destroy(rt->store);
	unmap_private_pages(rt);
	if (rt->uffd >= 0)
		close(rt->uffd);
	if (rt->pagemap_fd >= 0)
		close(rt->pagemap_fd);
	if (rt->idle_poll_fd >= 0)
		close(rt->idle_poll_fd);
	pthread_rwlock_destroy(&rt->regions_lock);
	mem_free(rt->hist, HIST_BYTES);
	mem_free(rt, sizeof(*rt));
}

int upg_runtime_create(const struct upg_options *opts,
		       struct upg_runtime **out)
{
	struct upg_runtime *rt;
	int err;

	if (!out)
		return -EINVAL;
	rt = mem_alloc(sizeof(*rt));
	if (!rt)
		return -ENOMEM;
	rt->uffd = -1;
	rt->idle_poll_fd = -1;
	rt->pagemap_fd = pagemap_open();
	if (rt->pagemap_fd < 0)
		log_info("no PAGEMAP_SCAN (%s): pages written after a read "
			 "are not counted as resident", strerror(-rt->pagemap_fd));
	pthread_rwlock_init(&rt->regions_lock, NULL);
	rt->hist = mem_alloc(HIST_BYTES);
	err = rt->hist ? resolve_options(opts, rt) : -ENOMEM;
	if (!err && rt->opts.idle_poll)
		rt->idle_poll_fd = idle_poll_hold();
	/* The swap directory first: a wrong one is the user's to fix,
	 * whatever userfaultfd says after. */
	if (!err)
		err = store_start(rt);
	if (!err)
		err = runtime_uffd_open(rt);
	if (!err)
		err = map_private_pages(rt);
	if (!err)
		err = resolvers_start(rt);
	if (!err)
		err = evictor_start(rt);
	if (err) {
		resolvers_stop(rt);
		runtime_free(rt);
		return err;
	}
	publish_start(rt);
	log_debug("runtime up: %suserfaultfd features %#llx, %u handler(s)",
		  rt->user_only ? "user-mode-only " : "",
		  (unsigned long long)rt->features, rt->nhandlers);
	*out = rt;
	return 0;
}

/* The path with each "%p" replaced by the process id, so that every
 * process of a program (gcc's cc1 and as) writes its own. */
static const char *stats_expand(const char *path, char *buf, size_t len)
{
	size_t n = 0;

	if (!strstr(path, "%p"))
		return path;
	for (const char *s = path; *s && n < len; s++) {
		if (s[0] == '%' && s[1] == 'p') {
			n += (size_t)snprintf(buf + n, len - n, "%ld",
					      (long)getpid());
			s++;
		} else {
			buf[n++] = *s;
		}
	}
	if (n >= len)
		return path;	/* too long: unexpanded, still a path */
	buf[n] = '\0';
	return buf;
}

int upg_stats_write(struct upg_runtime *rt)
{
	const char *path = rt ? rt->opts.stats_path : NULL;
	char buf[4096];
	FILE *f;
	int rc;

	if (!path)
		return 0;
	path = stats_expand(path, buf, sizeof(buf));
	if (strcmp(path, "stderr") == 0 || strcmp(path, "1") == 0)
		return MIN(upg_stats_print(rt, stderr, rt->opts.stats_format), 0);
	if (strcmp(path, "stdout") == 0)
		return MIN(upg_stats_print(rt, stdout, rt->opts.stats_format), 0);
	f = fopen(path, "we");
	if (!f) {
		log_warn("cannot write statistics to %s: %s", path,
			 strerror(errno));
		return -EIO;
	}
	rc = upg_stats_print(rt, f, rt->opts.stats_format);
	fclose(f);
	return MIN(rc, 0);
}

void upg_runtime_destroy(struct upg_runtime *rt)
{
	size_t alive;

	if (!rt)
		return;
	publish_stop(rt);
	upg_stats_write(rt);
	alive = regions_destroy_all(rt);
	if (alive)
		log_warn("runtime destroyed with %zu region(s) still alive: "
			 "they were destroyed and their memory unmapped",
			 alive);
	evictor_stop(rt);
	resolvers_stop(rt);
	runtime_free(rt);
}

int upg_stats_get(struct upg_runtime *rt, struct upg_stats *st)
{
	struct upg_stats tmp;
	struct rusage ru;

	if (!rt || !st)
		return -EINVAL;
	memset(&tmp, 0, sizeof(tmp));
	tmp.size = sizeof(tmp);
	for (int k = 0; k < UPG_FAULT_NKINDS; k++)
		hist_summary(&rt->hist[k], &tmp.latency[k]);
	pthread_rwlock_rdlock(&rt->regions_lock);
	tmp.regions = (uint32_t)rt->nregions;
	for (size_t i = 0; i < rt->nregions; i++) {
		region_sync_written(rt->regions[i]);
		tmp.pagetable_bytes += atomic_load(&rt->regions[i]->pt.bytes);
	}
	pthread_rwlock_unlock(&rt->regions_lock);
	/* Reconciling may have moved pages to RESIDENT: count after it. */
	counters_export(&rt->ctr, &tmp);
	if (getrusage(RUSAGE_SELF, &ru) == 0)
		tmp.process_peak_rss = (uint64_t)ru.ru_maxrss << 10;
	if (rt->store) {
		struct store_stats ss;

		store_get_stats(rt->store, &ss);
		tmp.store_bytes_in = ss.bytes_in;
		tmp.store_bytes_stored = ss.bytes_stored;
		tmp.store_ram_bytes = ss.ram_bytes;
		tmp.store_disk_bytes = ss.disk_bytes;
		tmp.store_ram_objects = ss.ram_objects;
		tmp.store_disk_objects = ss.disk_objects;
		tmp.store_remote_objects = ss.remote_objects;
		tmp.store_remote_bytes = ss.remote_bytes;
		tmp.swapin_from_ram = ss.reads_ram;
		tmp.swapin_from_disk = ss.reads_disk;
		tmp.swapin_from_remote = ss.reads_remote;
		tmp.remote_sets = ss.remote.sets;
		tmp.remote_refused = ss.remote_refused;
		tmp.remote_gets = ss.remote.gets;
		tmp.remote_misses = ss.remote.misses;
		tmp.remote_errors = ss.remote.errors;
		tmp.remote_timeouts = ss.remote.timeouts;
		tmp.remote_batches = ss.remote.batches;
		tmp.remote_rounds = ss.remote.rounds;
		tmp.remote_lost = ss.remote_lost;
		tmp.seal_errors = ss.seal_errors;
		tmp.probation_pages = ss.probation_pages;
		tmp.probation_aged = ss.probation_aged;
		tmp.swapin_from_probation = ss.reads_probation;
		tmp.swapin_segment_reused = ss.reads_reread;
		tmp.store_promoted = ss.promoted;
		tmp.store_ram_limit = store_ram_limit(rt->store);
	}
	/* Only now touch the caller's memory: it may be managed. */
	memcpy(st, &tmp, sizeof(tmp));
	return 0;
}

int upg_stats_print(struct upg_runtime *rt, FILE *f, int format)
{
	struct upg_stats st;
	char buf[8192];
	int len, err;

	if (!rt || !f)
		return -EINVAL;
	err = upg_stats_get(rt, &st);
	if (err)
		return err;
	len = stats_format(&st, format, buf, sizeof(buf));
	if (len < 0)
		return len;
	if (fwrite(buf, 1, (size_t)len, f) != (size_t)len || fflush(f))
		return -EIO;
	return len;
}
