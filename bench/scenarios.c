/* SPDX-License-Identifier: MIT */
/*
 * The scenarios: what each side does in one round.  Every round maps fresh
 * memory, so every touch of a first-touch scenario meets a page that was
 * never touched, and unmaps it again outside the measurement.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"

/* How one side gets fresh memory and gives it back. */
struct memory {
	int (*map)(struct row *row, size_t len, struct side *s, char **base,
		   void **handle);
	void (*unmap)(char *base, size_t len, void *handle);
};

static int upager_map(struct row *row, size_t len, struct side *s,
		      char **base, void **handle)
{
	struct upg_region *r;
	int err = upg_anon_create(row->rt, len, UPG_ANON_DEFAULT, &r);

	if (err) {
		side_unavailable(s, "upg_anon_create of %zu bytes: %s (%s)",
				 len, strerror(-err), upg_last_error());
		return err;
	}
	*base = upg_region_addr(r);
	*handle = r;
	return 0;
}

static void upager_unmap(char *base, size_t len, void *handle)
{
	upg_region_destroy(handle);
}

/* THP off, as upager regions have it: both sides fault 4 KiB pages. */
static int kernel_map(struct row *row, size_t len, struct side *s,
		      char **base, void **handle)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	if (p == MAP_FAILED) {
		side_unavailable(s, "mmap of %zu bytes: %s", len,
				 strerror(errno));
		return -errno;
	}
	if (madvise(p, len, MADV_NOHUGEPAGE)) {
		side_unavailable(s, "madvise(MADV_NOHUGEPAGE): %s",
				 strerror(errno));
		munmap(p, len);
		return -errno;
	}
	*base = p;
	*handle = NULL;
	return 0;
}

static void kernel_unmap(char *base, size_t len, void *handle)
{
	munmap(base, len);
}

static const struct memory upager_memory = { upager_map, upager_unmap };
static const struct memory kernel_memory = { kernel_map, kernel_unmap };

static int first_touch(struct row *row, const struct round *rd,
		       struct side *s, const struct memory *m)
{
	char *base;
	void *handle;
	int err = m->map(row, rd->len, s, &base, &handle);

	if (err)
		return err;
	err = touch_round(rd, base, s);
	m->unmap(base, rd->len, handle);
	return err;
}

static int first_touch_upager(struct row *row, const struct round *rd,
			      struct side *s)
{
	return first_touch(row, rd, s, &upager_memory);
}

static int first_touch_kernel(struct row *row, const struct round *rd,
			      struct side *s)
{
	return first_touch(row, rd, s, &kernel_memory);
}

#define MIN_SZ(a, b) ((size_t)(a) < (size_t)(b) ? (size_t)(a) : (size_t)(b))

/* Fresh memory with every page written once, untimed. */
static int map_populated(const struct memory *m, struct row *row,
			 const struct round *rd, struct side *s, char **base,
			 void **handle)
{
	int err = m->map(row, rd->len, s, base, handle);

	for (size_t off = 0; !err && off < rd->len; off += 4096)
		(*base)[off] = (char)(off >> 12 | 1);
	return err;
}

/*
 * Copy-on-write, upager: a populated region is snapshotted, then each
 * touch is the first write to a protected page (the old contents go to
 * the snapshot, then the write proceeds).
 */
static int cow_upager(struct row *row, const struct round *rd,
		      struct side *s)
{
	struct upg_snapshot *snap;
	char *base;
	void *handle;
	int err = map_populated(&upager_memory, row, rd, s, &base, &handle);

	if (err)
		return err;
	err = upg_snapshot_take(handle, &snap);
	if (err) {
		side_unavailable(s, "upg_snapshot_take: %s", strerror(-err));
	} else {
		err = touch_round(rd, base, s);
		upg_snapshot_drop(snap);
	}
	upager_unmap(base, rd->len, handle);
	return err;
}

/* Copy-on-write, kernel: the same writes while a forked child that shares
 * every page waits. */
static int cow_kernel(struct row *row, const struct round *rd,
		      struct side *s)
{
	char *base;
	void *handle;
	int fds[2], err = map_populated(&kernel_memory, row, rd, s, &base,
					&handle);
	pid_t pid;
	char c;

	if (err)
		return err;
	if (pipe(fds)) {
		err = -errno;
		goto out;
	}
	pid = fork();
	if (pid == 0) {
		close(fds[1]);
		_exit(read(fds[0], &c, 1) < 0);	/* until the parent is done */
	}
	close(fds[0]);
	err = pid < 0 ? -errno : touch_round(rd, base, s);
	close(fds[1]);
	if (pid > 0)
		waitpid(pid, NULL, 0);
out:
	kernel_unmap(base, rd->len, handle);
	return err;
}

/*
 * Taking a snapshot, next to fork(): both sides hold the round's memory,
 * every page written.  upager snapshots the region (dropped again, untimed);
 * the kernel forks, timed until fork returns in the parent, the child
 * exiting at once.  Each repetition costs what the first did: a dropped
 * snapshot's pages are protected again by the next take, and the kernel
 * copies the page tables of every fork.
 */
static int take_upager(struct row *row, const struct round *rd,
		       struct side *s)
{
	struct upg_snapshot *snap;
	char *base;
	void *handle;
	int err = sample_room(rd, s);

	if (!err)
		err = map_populated(&upager_memory, row, rd, s, &base,
				    &handle);
	if (err)
		return err;
	for (uint64_t i = 0; i < rd->n; i++) {
		uint64_t t0 = clock_ns();

		err = upg_snapshot_take(handle, &snap);
		if (err) {
			side_unavailable(s, "upg_snapshot_take: %s",
					 strerror(-err));
			break;
		}
		sample_add(s, clock_ns() - t0);
		upg_snapshot_drop(snap);
	}
	upager_unmap(base, rd->len, handle);
	return err;
}

static int take_kernel(struct row *row, const struct round *rd,
		       struct side *s)
{
	char *base;
	void *handle;
	int err = sample_room(rd, s);

	if (!err)
		err = map_populated(&kernel_memory, row, rd, s, &base,
				    &handle);
	if (err)
		return err;
	for (uint64_t i = 0; i < rd->n; i++) {
		uint64_t t0 = clock_ns();
		pid_t pid = fork();

		if (pid == 0)
			_exit(0);
		if (pid < 0) {
			err = -errno;
			side_unavailable(s, "fork: %s", strerror(errno));
			break;
		}
		sample_add(s, clock_ns() - t0);
		waitpid(pid, NULL, 0);
	}
	kernel_unmap(base, rd->len, handle);
	return err;
}

/*
 * File faults: the round's bytes in a file of their own under /var/tmp (a
 * real disk here), its page cache dropped before each side reads it.  The
 * "file" row: random advice on both sides, so that one touch is one read of
 * one page.  The file-* rows: a file twice the budget, upager's budget and
 * the kernel's memory cgroup limit alike, random advice for random reads
 * and default advice (each side's read-ahead) for scans.
 */

/* Text: words of a small vocabulary, like a log file; lz4 compresses a
 * page of it about 2.4 to 1. */
static void fill_text(char *buf, size_t len, uint64_t seed)
{
	static const char vocab[] = "page fault store segment compress the "
				    "of userfaultfd handler evict ring block "
				    "swap memory latency thread a and is zstd ";
	uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
	size_t i = 0, at;

	while (i < len) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		/* The word around a random letter, with its space. */
		for (at = x % (sizeof(vocab) - 1); at && vocab[at - 1] != ' ';)
			at--;
		do
			buf[i++] = vocab[at];
		while (vocab[at++] != ' ' && i < len);
	}
}

static int file_prepare(size_t len, struct side *s)
{
	char path[] = "/var/tmp/upager-bench-XXXXXX";
	char *buf = NULL;
	int fd = mkstemp(path);

	if (fd < 0) {
		side_unavailable(s, "cannot create %s: %s", path,
				 strerror(errno));
		return -errno;
	}
	unlink(path);
	buf = malloc(1 << 20);
	for (size_t off = 0; buf && off < len; off += 1 << 20) {
		fill_text(buf, 1 << 20, off >> 20);
		if (pwrite(fd, buf, MIN_SZ(1 << 20, len - off), (off_t)off) < 0)
			break;
	}
	free(buf);
	fdatasync(fd);
	posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
	return fd;
}

static bool random_reads(const struct round *rd)
{
	return rd->row->sc->pattern == TOUCH_UNIFORM;
}

static int file_upager(struct row *row, const struct round *rd,
		       struct side *s)
{
	struct upg_region *r;
	int fd = file_prepare(rd->len, s), err;

	if (fd < 0)
		return fd;
	err = upg_file_create(row->rt, fd, 0, rd->len, UPG_FILE_READONLY, &r);
	if (err) {
		side_unavailable(s, "upg_file_create: %s", strerror(-err));
	} else {
		upg_region_advise(r, random_reads(rd) ? UPG_ADVICE_RANDOM
						      : UPG_ADVICE_NORMAL);
		err = touch_round(rd, upg_region_addr(r), s);
		upg_region_destroy(r);
	}
	close(fd);
	return err;
}

/* The kernel's side of the file rows: a read-only mmap of the file. */
static int file_map(const struct round *rd, void *arg, char **base)
{
	*base = mmap(NULL, rd->len, PROT_READ, MAP_PRIVATE, *(int *)arg, 0);
	if (*base == MAP_FAILED)
		return -errno;
	if (random_reads(rd))
		madvise(*base, rd->len, MADV_RANDOM);
	return 0;
}

static int file_kernel(struct row *row, const struct round *rd,
		       struct side *s)
{
	int fd = file_prepare(rd->len, s), err;
	char *p;

	if (fd < 0)
		return fd;
	if (row->sc->ws_quarters) {
		err = kernel_in_cgroup(row, rd, s, file_map, &fd, false);
	} else if ((err = file_map(rd, &fd, &p))) {
		side_unavailable(s, "mmap of the file: %s", strerror(-err));
	} else {
		err = touch_round(rd, p, s);
		munmap(p, rd->len);
	}
	close(fd);
	return err;
}

#define FIRST_TOUCH .upager = first_touch_upager, .kernel = first_touch_kernel
#define SWAP .upager = swap_upager, .kernel = swap_kernel

const struct scenario scenarios[] = {
	{ .name = "zero-read", .title = "first touch, read, random order",
	  .kind = UPG_FAULT_ZERO_READ, FIRST_TOUCH },
	{ .name = "zero-write", .title = "first touch, write, random order",
	  .write = true, .kind = UPG_FAULT_ZERO_WRITE, FIRST_TOUCH },
	{ .name = "seq-read", .title = "first touch, read, sequential",
	  .sequential = true, .kind = UPG_FAULT_ZERO_READ, FIRST_TOUCH },
	{ .name = "seq-write", .title = "first touch, write, sequential",
	  .write = true, .sequential = true, .kind = UPG_FAULT_ZERO_WRITE,
	  FIRST_TOUCH },
	{ .name = "scale", .title = "thread scaling: first-touch writes, "
				    "random order",
	  .write = true, .scaling = true, .kind = UPG_FAULT_ZERO_WRITE,
	  FIRST_TOUCH },
	/* Kernel side of these: the same in a memory cgroup limited to the
	 * budget, with zram (lz4) as swap. */
	{ .name = "swapin-ram", .title = "random reads, working set 1.25x "
					 "the budget (upager: RAM tier)",
	  .ws_quarters = 5, .kind = UPG_FAULT_SWAPIN_RAM, SWAP },
	{ .name = "swapin-disk", .title = "random reads, working set 3x the "
					  "budget (upager: swap file)",
	  .ws_quarters = 12, .kind = UPG_FAULT_SWAPIN_DISK, SWAP },
	{ .name = "swapin-remote", .title = "random reads, working set 3x "
					    "the budget (upager: memcached "
					    "cluster, --remote or three of "
					    "its own)",
	  .ws_quarters = 12, .remote = true, .kind = UPG_FAULT_SWAPIN_DISK,
	  SWAP },
	{ .name = "swap-random", .title = "random reads, working set 2x the "
					  "budget",
	  .ws_quarters = 8, .remote_given = true,
	  .kind = UPG_FAULT_SWAPIN_DISK, SWAP },
	{ .name = "swap-scan", .title = "sequential scans, working set 2x the "
					"budget",
	  .ws_quarters = 8, .pattern = TOUCH_SCAN, .sequential = true,
	  .remote_given = true, .kind = UPG_FAULT_SWAPIN_DISK, SWAP },
	{ .name = "swap-hot", .title = "reads, 80% to a fifth of a working "
				       "set 2x the budget",
	  .ws_quarters = 8, .pattern = TOUCH_HOT,
	  .kind = UPG_FAULT_SWAPIN_DISK, SWAP },
	{ .name = "file", .title = "file fault, cold page cache",
	  .kind = UPG_FAULT_FILE, .upager = file_upager,
	  .kernel = file_kernel },
	{ .name = "file-random", .title = "random reads of a file 2x the "
					  "budget, cold page cache",
	  .ws_quarters = 8, .kind = UPG_FAULT_FILE, .upager = file_upager,
	  .kernel = file_kernel },
	{ .name = "file-scan", .title = "sequential scans of a file 2x the "
					"budget, cold page cache",
	  .ws_quarters = 8, .pattern = TOUCH_SCAN, .sequential = true,
	  .kind = UPG_FAULT_FILE, .upager = file_upager,
	  .kernel = file_kernel },
	{ .name = "cow", .title = "write to a snapshotted page "
				  "(kernel: copy-on-write after fork)",
	  .write = true, .kind = UPG_FAULT_WP, .upager = cow_upager,
	  .kernel = cow_kernel },
	{ .name = "snap-take", .title = "snapshot of a populated region of "
					"--snapshot-size (kernel: fork of a "
					"process holding it); a sample is one "
					"snapshot, MB/s is of the region",
	  .take = true, .kind = UPG_FAULT_WP, .upager = take_upager,
	  .kernel = take_kernel },
};

const size_t nscenarios = sizeof(scenarios) / sizeof(scenarios[0]);

const struct scenario *scenario_find(const char *name, size_t len)
{
	for (size_t i = 0; i < nscenarios; i++)
		if (strlen(scenarios[i].name) == len &&
		    !strncmp(scenarios[i].name, name, len))
			return &scenarios[i];
	return NULL;
}
