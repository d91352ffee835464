/* SPDX-License-Identifier: MIT */
/*
 * The swap scenarios.  Each round maps a working set larger than the
 * budget, fills it with compressible data (not timed), then times reads
 * spread over it by the scenario's pattern.
 *
 * upager: a runtime whose mem_limit is the budget.  The kernel: a child
 * process in a memory cgroup (v1) limited to the budget, with zram (lz4)
 * as its swap, set up on first use and torn down at exit.  Both sides get
 * the same limit and compress with lz4; zram's compressed pages are not
 * charged to the cgroup, as upager's swap file is not charged to the budget
 * (--swap-dir /dev/shm keeps that file in RAM, as zram keeps its pages).
 * The file-* rows run their kernel side in the same cgroup
 * (kernel_in_cgroup), where the file's page cache is charged; they need
 * no zram, so a machine without it still gets them.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/swap.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"

#define ZRAM "/sys/block/zram0"
#define ZRAM_DEV "/dev/zram0"
#define CGROUP_ROOT "/sys/fs/cgroup/memory"

/* A part of the kernel side's set-up, made once, on first use. */
struct part {
	bool tried, ready;
	char reason[REASON_LEN];	/* why not, when !ready */
};

static struct {
	struct part cg, zram;	/* the memory cgroup; zram as swap */
	volatile sig_atomic_t zram_on;
	pid_t owner;		/* the process that set it up (not a child) */
	volatile pid_t child;	/* the kernel side running in the cgroup */
	char cgroup[128];
} env;

uint64_t swap_ws(const struct bench *b, const struct scenario *sc)
{
	return b->cfg.budget * sc->ws_quarters / 4;
}

static int write_file(const char *path, const char *fmt, ...)
{
	char buf[64];
	va_list ap;
	int fd, n, err = 0;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (write(fd, buf, (size_t)n) != n)
		err = -errno;
	close(fd);
	return err;
}

static bool zram_busy(void)
{
	char line[256];
	bool busy = false;
	FILE *f = fopen("/proc/swaps", "r");

	while (f && fgets(line, sizeof(line), f))
		busy |= !strncmp(line, ZRAM_DEV, strlen(ZRAM_DEV));
	if (f)
		fclose(f);
	return busy;
}

/* Undo the set-up.  Only system calls: it also runs in a signal handler. */
static void teardown(void)
{
	int fd;

	if (getpid() != env.owner)
		return;
	if (env.child > 0) {
		/* A cgroup with a task in it cannot be removed. */
		kill(env.child, SIGKILL);
		waitpid(env.child, NULL, 0);
		env.child = 0;
	}
	if (env.cgroup[0])
		rmdir(env.cgroup);
	env.cgroup[0] = '\0';
	if (!env.zram_on || swapoff(ZRAM_DEV))
		return;
	env.zram_on = 0;
	fd = open(ZRAM "/reset", O_WRONLY | O_CLOEXEC);
	if (fd >= 0) {
		(void)!write(fd, "1", 1);
		close(fd);
	}
}

/* Interrupted (^C, a closed pipe, kill): give zram back before dying, or
 * the next run would find it in use; then die of the same signal. */
static void teardown_on_signal(int sig)
{
	teardown();
	signal(sig, SIG_DFL);
	raise(sig);
}

static void teardown_at_exit(void)
{
	static const int sigs[] = { SIGINT, SIGTERM, SIGHUP, SIGPIPE };
	struct sigaction sa = { .sa_handler = teardown_on_signal };

	env.owner = getpid();
	atexit(teardown);
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		sigaction(sigs[i], &sa, NULL);
}

static bool fail(struct part *p, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(p->reason, sizeof(p->reason), fmt, ap);
	va_end(ap);
	return false;
}

/* Undo, at exit or when killed, whatever was set up. */
static void teardown_once(void)
{
	if (!env.owner)
		teardown_at_exit();
}

/* A cgroup limited to the budget for the kernel side's children. */
static bool cgroup_setup(struct part *p, uint64_t budget)
{
	struct stat st;
	char path[192];

	if (geteuid() != 0)
		return fail(p, "the kernel baseline needs root (a memory "
			    "cgroup)");
	if (stat(CGROUP_ROOT "/memory.limit_in_bytes", &st))
		return fail(p, "no cgroup v1 memory controller at "
			    CGROUP_ROOT);
	teardown_once();
	snprintf(env.cgroup, sizeof(env.cgroup), CGROUP_ROOT "/upager-bench-%d",
		 (int)getpid());
	snprintf(path, sizeof(path), "%s/memory.limit_in_bytes", env.cgroup);
	if (mkdir(env.cgroup, 0755) ||
	    write_file(path, "%llu", (unsigned long long)budget)) {
		fail(p, "cannot set up the memory cgroup %s: %s", env.cgroup,
		     strerror(errno));
		rmdir(env.cgroup);
		env.cgroup[0] = '\0';
		return false;
	}
	return true;
}

/* zram0 as swap, lz4, large enough for every working set. */
static bool zram_setup(struct part *p, uint64_t budget)
{
	struct stat st;

	if (stat(ZRAM, &st))
		return fail(p, "no zram device (modprobe zram)");
	if (zram_busy())
		return fail(p, ZRAM_DEV " is in use as swap already (left by "
			    "a killed run? swapoff " ZRAM_DEV ")");
	teardown_once();
	write_file(ZRAM "/reset", "1");
	if (write_file(ZRAM "/comp_algorithm", "lz4") ||
	    write_file(ZRAM "/disksize", "%llu",
		       (unsigned long long)(4 * budget + (256 << 20))))
		return fail(p, "cannot configure " ZRAM " (lz4, disksize)");
	if (system("mkswap " ZRAM_DEV " >/dev/null 2>&1") ||
	    system("swapon -p 32767 " ZRAM_DEV " 2>/dev/null"))
		return fail(p, "mkswap/swapon " ZRAM_DEV " failed");
	env.zram_on = 1;
	return true;
}

/* Set up a part on first use; false (with p->reason) if it cannot be. */
static bool ready(struct part *p, bool (*setup)(struct part *, uint64_t),
		  uint64_t budget)
{
	if (!p->tried) {
		p->tried = true;
		p->ready = setup(p, budget);
	}
	return p->ready;
}

/* Text-like pages: compress about 3:1 with lz4, like a typical heap. */
static void fill(char *base, size_t len)
{
	for (size_t off = 0; off < len; off += 64) {
		uint64_t *w = (uint64_t *)(base + off);

		w[0] = off * 0x9e3779b97f4a7c15ull;
		for (int i = 1; i < 8; i++)
			w[i] = (off >> 12) + (uint64_t)i;
	}
}

int swap_upager(struct row *row, const struct round *rd, struct side *s)
{
	struct upg_region *r;
	int err = upg_anon_create(row->rt, rd->len, UPG_ANON_DEFAULT, &r);

	if (err) {
		side_unavailable(s, "upg_anon_create: %s", strerror(-err));
		return err;
	}
	fill(upg_region_addr(r), rd->len);
	err = touch_round(rd, upg_region_addr(r), s);
	upg_region_destroy(r);
	return err;
}

/* What the child measured, in memory shared with the parent. */
struct shared {
	uint64_t n, wall_ns;
	int err;
	uint64_t ns[];
};

/* The swap rows' kernel memory: anonymous, filled as upager's is. */
static int anon_map(const struct round *rd, void *arg, char **base)
{
	(void)arg;
	*base = mmap(NULL, rd->len, PROT_READ | PROT_WRITE,
		     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (*base == MAP_FAILED || madvise(*base, rd->len, MADV_NOHUGEPAGE))
		return -errno;
	fill(*base, rd->len);
	return 0;
}

static void child(const struct round *rd, struct shared *sh,
		  cgroup_map_fn map, void *arg)
{
	char path[192];
	char *base;
	struct side cs = { .available = true, .ns = sh->ns };

	snprintf(path, sizeof(path), "%s/cgroup.procs", env.cgroup);
	sh->err = write_file(path, "%d", (int)getpid());
	if (sh->err)
		_exit(1);
	sh->err = map(rd, arg, &base);
	if (sh->err)
		_exit(1);
	sh->err = touch_round(rd, base, &cs);
	sh->n = cs.n;
	sh->wall_ns = cs.wall_ns;
	_exit(sh->err ? 1 : 0);
}

/* Tasks of the cgroup killed by the OOM killer so far; -1 if unknown. */
static long oom_kills(void)
{
	char path[192], line[64];
	long n = -1;
	FILE *f;

	snprintf(path, sizeof(path), "%s/memory.oom_control", env.cgroup);
	f = fopen(path, "r");
	while (f && fgets(line, sizeof(line), f))
		sscanf(line, "oom_kill %ld", &n);
	if (f)
		fclose(f);
	return n;
}

/* Say why the kernel side's child did not finish its round; pid < 0 if
 * it could not be forked or waited for (errno). */
static void child_failed(struct side *s, const struct shared *sh, pid_t pid,
			 int status, long kills_before)
{
	long kills = oom_kills();

	if (pid < 0)
		side_unavailable(s, "cannot fork or wait for the kernel side: "
				 "%s", strerror(errno));
	else if (WIFSIGNALED(status))
		side_unavailable(s, "the kernel side was killed by signal %d "
				 "(%s)%s", WTERMSIG(status),
				 strsignal(WTERMSIG(status)),
				 kills_before >= 0 && kills > kills_before ?
				 ", by its memory cgroup's OOM killer" : "");
	else
		side_unavailable(s, "the kernel side failed: %s (exit %d)",
				 strerror(-sh->err), WEXITSTATUS(status));
}

int kernel_in_cgroup(struct row *row, const struct round *rd,
		     struct side *s, cgroup_map_fn map, void *arg, bool swap)
{
	size_t len = sizeof(struct shared) + rd->n * sizeof(uint64_t);
	struct shared *sh;
	int status = 0;
	long kills;
	pid_t pid;

	if (!ready(&env.cg, cgroup_setup, row->budget)) {
		side_unavailable(s, "%s", env.cg.reason);
		return -ENOTSUP;
	}
	if (swap && !ready(&env.zram, zram_setup, row->budget)) {
		side_unavailable(s, "%s", env.zram.reason);
		return -ENOTSUP;
	}
	/* Shared and populated here, so it is charged to us, not the child. */
	sh = mmap(NULL, len, PROT_READ | PROT_WRITE,
		  MAP_SHARED | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (sh == MAP_FAILED)
		return -errno;
	sh->err = -ECHILD;
	kills = oom_kills();
	pid = fork();
	if (pid == 0)
		child(rd, sh, map, arg);
	env.child = pid;
	if (pid > 0 && waitpid(pid, &status, 0) == pid)
		env.child = 0;
	else	/* not forked (errno), or not waited for: teardown kills it */
		pid = -1;
	if (pid < 0 || !WIFEXITED(status) || WEXITSTATUS(status)) {
		child_failed(s, sh, pid, status, kills);
		munmap(sh, len);
		return -ECHILD;
	}
	memcpy(s->ns + s->n, sh->ns, sh->n * sizeof(uint64_t));
	s->n += sh->n;
	s->wall_ns += sh->wall_ns;
	munmap(sh, len);
	return 0;
}

int swap_kernel(struct row *row, const struct round *rd, struct side *s)
{
	return kernel_in_cgroup(row, rd, s, anon_map, NULL, true);
}
