/* SPDX-License-Identifier: MIT */
/*
 * The fault-injection matrix: each failure upager can meet has the outcome
 * README.md ("When things fail") documents, and loses nothing else.
 *
 *   the swap directory missing or not writable -> upg_runtime_create fails,
 *     naming UPAGER_SWAP_DIR, its value and what it takes
 *   the swap file system full (a real 2 MiB tmpfs) -> pages stay in RAM,
 *     the budget goes over (or SIGBUS with the strict policy), one log line
 *   a swap file write error -> the segment stays in RAM, written later
 *   no io_uring (kernel.io_uring_disabled=2, ring setup failing)
 *     -> pread/pwrite, said once
 *   a uffd fill ioctl failing with an errno nothing expects -> that access
 *     gets SIGBUS (a fault), or the page stays (eviction); never zeros
 *   a fault handler or the evictor dying -> the runtime fails closed:
 *     SIGBUS for every page not in memory, the log says why, no hang
 * (Read errors and corrupt objects: test_swap.c, lost_copy.)
 *
 * Tests that need root (mounting, the sysctl, changing user) say SKIP and
 * pass where they cannot run.
 */
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "inject.h"
#include "pagetable.h"
#include "runtime.h"
#include "store.h"
#include "testlib.h"
#include "uffd.h"

const bool test_needs_uffd = true;

#define BUDGET (4 * MIB)

/* ---- helpers ---- */

/* stderr (where upager logs, with write(2)) into a file while a test runs,
 * so that it can check what the log says. */
static int saved_stderr = -1, log_fd = -1;

static void log_capture(void)
{
	char path[] = "/tmp/upager-inject-log-XXXXXX";

	log_fd = mkstemp(path);
	ck_assert_int_ge(log_fd, 0);
	unlink(path);
	saved_stderr = dup(STDERR_FILENO);
	dup2(log_fd, STDERR_FILENO);
}

/* What was logged since log_capture (also shown on the real stderr);
 * free() it. */
static char *log_captured(void)
{
	off_t len = lseek(log_fd, 0, SEEK_END);
	char *buf = malloc((size_t)len + 1);

	ck_assert_ptr_nonnull(buf);
	ck_assert_int_eq(pread(log_fd, buf, (size_t)len, 0), len);
	buf[len] = '\0';
	dup2(saved_stderr, STDERR_FILENO);
	close(saved_stderr);
	close(log_fd);
	if (write(STDERR_FILENO, buf, (size_t)len) < 0)
		buf[len] = '\0';
	return buf;
}

static unsigned count_of(const char *hay, const char *needle)
{
	unsigned n = 0;

	for (const char *p = hay; (p = strstr(p, needle)); p++)
		n++;
	return n;
}

static void budget_options(struct upg_options *o, const char *swap_dir,
			   int policy)
{
	upg_options_init(o);
	o->mem_limit = BUDGET;
	o->codec = UPG_CODEC_NONE;
	o->full_policy = policy;
	o->swap_dir = swap_dir ? swap_dir
			       : getenv("UPAGER_TEST_SWAP_DIR") ?: "/var/tmp";
}

static struct upg_runtime *budget_runtime(void)
{
	struct upg_options o;

	budget_options(&o, NULL, UPG_FULL_OVERCOMMIT);
	return test_runtime_opts(&o);
}

/* A region of `pages` pages, each written with fill_page(i, tag). */
static char *filled(struct upg_runtime *rt, size_t pages, uint64_t tag,
		    unsigned flags, struct upg_region **r)
{
	char *p;

	ck_assert_int_eq(upg_anon_create(rt, pages * TPAGE, flags, r), 0);
	p = upg_region_addr(*r);
	for (size_t i = 0; i < pages; i++)
		fill_page(p + i * TPAGE, i, tag);
	return p;
}

/* Every page of p but `skip` reads back as fill_page(i, tag). */
static void all_intact(const char *p, size_t pages, uint64_t tag,
		       size_t skip)
{
	for (size_t i = 0; i < pages; i++)
		ck_assert_msg(i == skip || check_page(p + i * TPAGE, i, tag),
			      "page %zu differs", i);
}

/* The first page of r whose entry is in `state`, or -1. */
static long page_in(struct upg_region *r, unsigned state)
{
	for (uint64_t i = 0; i < r->npages; i++)
		if (pte_state(pt_get(&r->pt, i)) == state)
			return (long)i;
	return -1;
}

static struct store_stats store_stats(struct upg_runtime *rt)
{
	struct store_stats ss;

	store_get_stats(rt->store, &ss);
	return ss;
}

static bool is_root(const char *test)
{
	if (geteuid() == 0)
		return true;
	printf("SKIP %s: needs root\n", test);
	return false;
}

/* ---- the swap directory ---- */

static void create_fails(const char *dir, int want)
{
	struct upg_options o;
	struct upg_runtime *rt = NULL;
	char what[300];

	budget_options(&o, dir, UPG_FULL_OVERCOMMIT);
	o.log_level = UPG_LOG_NONE;
	ck_assert_int_eq(upg_runtime_create(&o, &rt), want);
	ck_assert_ptr_null(rt);
	snprintf(what, sizeof(what), "UPAGER_SWAP_DIR=%s: %s", dir,
		 strerror(-want));
	ck_assert_msg(strstr(upg_last_error(), what) &&
			      strstr(upg_last_error(), "directory this user "
						       "can write"),
		      "error says: %s", upg_last_error());
}

START_TEST(swap_dir_missing)
{
	create_fails("/nonexistent/upager-swap", -ENOENT);
	create_fails("/proc/self/status", -ENOTDIR);
}
END_TEST

/* As an unprivileged user (nobody), in a child: a directory it cannot
 * write is refused with the reason, before userfaultfd is even tried. */
START_TEST(swap_dir_unwritable_unprivileged)
{
	char dir[] = "/tmp/upager-ro-XXXXXX";
	int status;
	pid_t pid;

	if (!is_root("swap_dir_unwritable_unprivileged")) {
		create_fails("/", -EACCES);
		return;
	}
	ck_assert_ptr_nonnull(mkdtemp(dir));
	ck_assert_int_eq(chmod(dir, 0755), 0);
	pid = fork();
	if (pid == 0) {
		if (setgroups(0, NULL) || setgid(65534) || setuid(65534))
			_exit(3);
		create_fails(dir, -EACCES);
		_exit(0);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	rmdir(dir);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		      "child status %#x", status);
}
END_TEST

/* ---- the swap file system full ---- */

/* A 2 MiB tmpfs at *dir, in a mount namespace of this process alone (the
 * test runs in Check's forked child), gone when it exits. */
static bool small_fs(char *dir)
{
	const char *fork_mode = getenv("CK_FORK");

	if (!is_root("swap_fs_full") || (fork_mode && !strcmp(fork_mode, "no")))
		return false;
	if (unshare(CLONE_NEWNS) ||
	    mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL)) {
		printf("SKIP swap_fs_full: no mount namespace: %s\n",
		       strerror(errno));
		return false;
	}
	ck_assert_ptr_nonnull(mkdtemp(dir));
	ck_assert_msg(mount("tmpfs", dir, "tmpfs", 0, "size=2m,mode=0700") == 0,
		      "mount tmpfs: %s", strerror(errno));
	return true;
}

/*
 * The swap file on a 2 MiB file system, far below UPAGER_SWAP_SIZE: the
 * writes fail with ENOSPC.  Overcommit: every page stays (in memory, in
 * the RAM tier, on the part of the disk written), the budget goes over,
 * and the log says so once, not at every retry.  Strict: the writer gets
 * SIGBUS.
 */
START_TEST(swap_fs_full)
{
	char dir[] = "/tmp/upager-full-XXXXXX";
	const size_t pages = 6 * BUDGET / TPAGE;
	struct upg_options o;
	struct upg_runtime *rt;
	struct upg_region *r;
	struct upg_stats st;
	char *p, *log;
	unsigned nospc;
	int status;
	pid_t pid;

	if (!small_fs(dir))
		return;
	pid = fork();
	if (pid == 0) {
		signal(SIGBUS, SIG_DFL);
		budget_options(&o, dir, UPG_FULL_SIGBUS);
		if (upg_runtime_create(&o, &rt) ||
		    upg_anon_create(rt, pages * TPAGE, 0, &r))
			_exit(2);
		p = upg_region_addr(r);
		for (size_t i = 0; i < pages; i++)
			fill_page(p + i * TPAGE, i, 1);
		_exit(0);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGBUS,
		      "strict policy: child status %#x", status);

	budget_options(&o, dir, UPG_FULL_OVERCOMMIT);
	log_capture();
	rt = test_runtime_opts(&o);
	p = filled(rt, pages, 2, 0, &r);
	all_intact(p, pages, 2, SIZE_MAX);
	log = log_captured();
	st = test_stats(rt);
	ck_assert_uint_gt(st.over_budget, 0);
	ck_assert_uint_eq(st.poisoned, 0);
	ck_assert_uint_gt(store_stats(rt).io_errors, 0);
	ck_assert_uint_gt(store_stats(rt).file_bytes, 0);
	/* Once, and again only after a write succeeded (a slot reused). */
	nospc = count_of(log, "No space left on device");
	ck_assert_msg(nospc >= 1 && nospc <= count_of(log, "succeed again") + 1,
		      "ENOSPC said %u times", nospc);
	free(log);
	upg_runtime_destroy(rt);
	umount(dir);
	rmdir(dir);
}
END_TEST

/* ---- a swap file write error ---- */

/* A runtime with a budget and a region four times that, filled (tag) once
 * arm(rt) has set a failure up: every page reads back, none is poisoned. */
static struct upg_runtime *survives(void (*arm)(struct upg_runtime *rt),
				    uint64_t tag)
{
	const size_t pages = 4 * BUDGET / TPAGE;
	struct upg_runtime *rt = budget_runtime();
	struct upg_region *r;
	char *p;

	arm(rt);
	p = filled(rt, pages, tag, 0, &r);
	all_intact(p, pages, tag, SIZE_MAX);
	ck_assert_uint_eq(test_stats(rt).poisoned, 0);
	return rt;
}

static void fail_a_write(struct upg_runtime *rt)
{
	store_inject(rt->store, STORE_INJECT_WRITE_EIO);
}

/* One segment write fails: its pages stay in the RAM tier, the write is
 * made again later, every page reads back. */
START_TEST(write_error_keeps_pages)
{
	struct upg_runtime *rt = survives(fail_a_write, 3);

	ck_assert_uint_eq(store_stats(rt).io_errors, 1);
	ck_assert_int_eq(store_flush(rt->store), 0);
	ck_assert_uint_gt(store_stats(rt).disk_bytes, 0);
	upg_runtime_destroy(rt);
}
END_TEST

/* ---- no io_uring ---- */

/* The store works through pread/pwrite: pages written to the disk and
 * read back exactly, and a read error still costs only its page. */
static void works_without_uring(struct upg_runtime *rt)
{
	const size_t pages = 4 * BUDGET / TPAGE;
	struct upg_region *r;
	long bad;
	char *p;

	ck_assert(store_stats(rt).sync_io);
	p = filled(rt, pages, 4, 0, &r);
	ck_assert_int_eq(store_flush(rt->store), 0);
	bad = page_in(r, PTE_STORED);
	ck_assert_int_ge(bad, 0);
	store_inject(rt->store, STORE_INJECT_READ_EIO);
	ck_assert(touch_bus(p + bad * TPAGE));
	all_intact(p, pages, 4, (size_t)bad);
	ck_assert_uint_gt(store_stats(rt).reads_disk, 0);
	ck_assert_uint_eq(test_stats(rt).poisoned, 1);
	upg_runtime_destroy(rt);
}

static const int ring_errors[] = { EPERM, ENOMEM, ENOSYS };

START_TEST(ring_setup_fails)
{
	struct upg_runtime *rt;
	char *log;

	inject_arm(INJECT_RING_SETUP, -1, ring_errors[_i], 1);
	log_capture();
	rt = budget_runtime();
	log = log_captured();
	ck_assert_msg(count_of(log, "no io_uring for the swap file") == 1,
		      "log: %s", log);
	free(log);
	works_without_uring(rt);
}
END_TEST

#define URING_SYSCTL "/proc/sys/kernel/io_uring_disabled"
static char uring_saved[16];

/* Put the sysctl back: after the runtime is made, and again (in the
 * runner process, whatever became of the test) in the fixture. */
static void uring_restore(void)
{
	int fd;

	if (!uring_saved[0])
		return;
	fd = open(URING_SYSCTL, O_WRONLY);
	if (fd < 0 || write(fd, uring_saved, strlen(uring_saved)) < 0)
		fprintf(stderr, "cannot restore %s to %s: %s\n", URING_SYSCTL,
			uring_saved, strerror(errno));
	if (fd >= 0)
		close(fd);
}

static void uring_save(void)
{
	int fd = open(URING_SYSCTL, O_RDONLY);
	ssize_t n = fd < 0 ? -1 : read(fd, uring_saved, sizeof(uring_saved) - 1);

	if (fd >= 0)
		close(fd);
	uring_saved[n > 0 ? n : 0] = '\0';
}

/*
 * kernel.io_uring_disabled=2 while the runtime is made (a moment only:
 * the sysctl is the whole machine's, and rings made before it stay).
 */
START_TEST(io_uring_disabled)
{
	struct upg_runtime *rt;
	int fd;

	if (!is_root("io_uring_disabled"))
		return;
	if (!uring_saved[0]) {
		printf("SKIP io_uring_disabled: no %s\n", URING_SYSCTL);
		return;
	}
	fd = open(URING_SYSCTL, O_WRONLY);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, "2", 1), 1);
	close(fd);
	rt = budget_runtime();
	uring_restore();
	works_without_uring(rt);
}
END_TEST

/* ---- a uffd ioctl failing with an unexpected errno ---- */

/*
 * The fill that would serve a fault fails with EIO, once: that access
 * gets SIGBUS, the log says why, and the page keeps its entry; every
 * other page reads back.  _i: a stored page (UFFDIO_COPY), a page never
 * touched (UFFDIO_ZEROPAGE).
 */
START_TEST(fill_fails_sigbus)
{
	const size_t pages = 4 * BUDGET / TPAGE;
	struct upg_runtime *rt = budget_runtime();
	struct upg_region *r, *fresh;
	unsigned state = _i ? PTE_EMPTY : PTE_STORED;
	char *p, *q, *log;
	long idx;

	p = filled(rt, pages, 5, 0, &r);
	ck_assert_int_eq(upg_anon_create(rt, 16 * TPAGE, 0, &fresh), 0);
	q = upg_region_addr(fresh);
	idx = _i ? 3 : page_in(r, PTE_STORED);
	ck_assert_int_ge(idx, 0);
	inject_arm(INJECT_UFFD_FILL, _i ? _IOC_NR(UFFDIO_ZEROPAGE)
					: _IOC_NR(UFFDIO_COPY), EIO, 1);
	log_capture();
	ck_assert(touch_bus((_i ? q : p) + idx * TPAGE));
	log = log_captured();
	inject_reset();
	ck_assert_msg(strstr(log, "not resolved (Input/output error): the "
				  "thread gets SIGBUS"), "log: %s", log);
	free(log);
	ck_assert_uint_eq(pte_state(pt_get(_i ? &fresh->pt : &r->pt,
					   (uint64_t)idx)), state);
	ck_assert_uint_eq(test_stats(rt).poisoned, 1);
	all_intact(p, pages, 5, _i ? SIZE_MAX : (size_t)idx);
	ck_assert(page_is_zero(q + (idx + 1) * TPAGE));
	upg_runtime_destroy(rt);
}
END_TEST

static void fail_moves(struct upg_runtime *rt)
{
	inject_arm(INJECT_UFFD_FILL, _IOC_NR(UFFDIO_MOVE), ENOMEM, 200);
}

/* UFFDIO_MOVE failing (ENOMEM) 200 times while the evictor works: those
 * pages stay where they are; nothing is lost, nothing poisoned. */
START_TEST(move_fails_page_stays)
{
	struct upg_runtime *rt = survives(fail_moves, 6);

	ck_assert_uint_eq(inject_armed, 0);	/* all 200 were hit */
	ck_assert_uint_gt(test_stats(rt).evictions_dirty, 0);
	upg_runtime_destroy(rt);
}
END_TEST

/*
 * The store full (a 1 MiB swap file): the evictor moves a page out, finds
 * no room and puts it back; that UFFDIO_COPY fails once.  The page's
 * contents are gone with the staging page: it reads as SIGBUS, never as
 * zeros, and every other page reads back.
 */
START_TEST(put_back_fails_poisons)
{
	const size_t pages = 6 * BUDGET / TPAGE;
	struct upg_options o;
	struct upg_runtime *rt;
	struct upg_region *r;
	long lost;
	char *p;

	budget_options(&o, NULL, UPG_FULL_OVERCOMMIT);
	o.swap_size = MIB;
	rt = test_runtime_opts(&o);
	p = filled(rt, pages, 7, 0, &r);
	ck_assert_uint_gt(test_stats(rt).over_budget, 0);
	/* Over the budget, the evictor tries again every 20 ms. */
	inject_arm(INJECT_UFFD_FILL, _IOC_NR(UFFDIO_COPY), EIO, 1);
	for (int i = 0; i < 500 && test_stats(rt).poisoned == 0; i++)
		usleep(10000);
	inject_reset();
	ck_assert_uint_eq(test_stats(rt).poisoned, 1);
	lost = page_in(r, PTE_POISONED);
	ck_assert_int_ge(lost, 0);
	ck_assert(touch_bus(p + lost * TPAGE));
	all_intact(p, pages, 7, (size_t)lost);
	upg_runtime_destroy(rt);
}
END_TEST

/* ---- a handler or the evictor dying ---- */

/*
 * After the death (_i 0: the fault handler, as it reads a fault; 1: the
 * evictor): the access that found it gets SIGBUS, as does any page not
 * in memory, stored or never touched; pages in memory keep their
 * contents; the log says which thread and why; the runtime is destroyed
 * without a hang.
 */
START_TEST(thread_death_fails_closed)
{
	const size_t pages = 4 * BUDGET / TPAGE;
	struct upg_runtime *rt = budget_runtime();
	struct upg_region *r, *kept, *fresh;
	char *p, *k, *q, *log;
	long stored;

	p = filled(rt, pages, 8, 0, &r);
	k = filled(rt, 16, 9, UPG_ANON_NOEVICT, &kept);
	ck_assert_int_eq(upg_anon_create(rt, 16 * TPAGE, 0, &fresh), 0);
	q = upg_region_addr(fresh);
	stored = page_in(r, PTE_STORED);
	ck_assert_int_ge(stored, 0);
	log_capture();
	inject_arm(_i ? INJECT_EVICTOR_DIE : INJECT_HANDLER_DIE, -1, EIO, 1);
	for (int i = 0; _i && i < 500 && !atomic_load(&rt->failed); i++)
		usleep(10000);
	ck_assert(touch_bus(p + stored * TPAGE));
	ck_assert(touch_bus(q));
	ck_assert(touch_bus(p + stored * TPAGE));
	all_intact(k, 16, 9, SIZE_MAX);
	fill_page(k, 0, 10);
	ck_assert(check_page(k, 0, 10));
	log = log_captured();
	ck_assert_msg(strstr(log, _i ? "the evictor upager-evict stopped: "
				       "Input/output error"
				     : "fault handler upager-fault0 stopped: "
				       "Input/output error") &&
			      strstr(log, "fails closed"),
		      "log: %s", log);
	free(log);
	ck_assert(atomic_load(&rt->failed));
	ck_assert_uint_ge(test_stats(rt).poisoned, 2);
	upg_runtime_destroy(rt);
}
END_TEST

Suite *make_suite(void)
{
	Suite *s = suite_create("inject");
	TCase *tc;

	ADD_TEST(s, swap_dir_missing, 60);
	ADD_TEST(s, swap_dir_unwritable_unprivileged, 60);
	ADD_TEST(s, swap_fs_full, 300);
	ADD_TEST(s, write_error_keeps_pages, 300);
	tc = tcase_create("ring_setup_fails");
	tcase_add_loop_test(tc, ring_setup_fails, 0, (int)(sizeof(ring_errors) / sizeof(ring_errors[0])));
	tcase_set_timeout(tc, 300);
	suite_add_tcase(s, tc);
	tc = tcase_create("io_uring_disabled");
	tcase_add_unchecked_fixture(tc, uring_save, uring_restore);
	tcase_add_test(tc, io_uring_disabled);
	tcase_set_timeout(tc, 300);
	suite_add_tcase(s, tc);
	tc = tcase_create("fill_fails_sigbus");
	tcase_add_loop_test(tc, fill_fails_sigbus, 0, 2);
	tcase_set_timeout(tc, 300);
	suite_add_tcase(s, tc);
	ADD_TEST(s, move_fails_page_stays, 300);
	ADD_TEST(s, put_back_fails_poisons, 300);
	tc = tcase_create("thread_death_fails_closed");
	tcase_add_loop_test(tc, thread_death_fails_closed, 0, 2);
	tcase_set_timeout(tc, 300);
	suite_add_tcase(s, tc);
	return s;
}
