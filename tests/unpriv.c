/* SPDX-License-Identifier: MIT */
/*
 * The library run by a user without privilege to open the full
 * userfaultfd (run_unpriv.py starts it as nobody, with
 * vm.unprivileged_userfaultfd=0).  One mode per run:
 *
 *   refused    no UPAGER_USER_MODE_ONLY: upg_runtime_create fails with
 *              -EPERM and a message naming the three ways to allow it;
 *   user-mode  UPAGER_USER_MODE_ONLY=1 (from the environment): the runtime
 *              is user-mode-only; a lazy array larger than the budget is
 *              written and read back exactly (faults served, pages evicted
 *              and swapped in); read(2) into a never-touched page and into
 *              an evicted page, and write(2) from one, fail with EFAULT and
 *              leave the data as it was; once the program wrote the page
 *              again, read(2) into it works;
 *   fork       user_mode_only set in the options struct: a child forked with
 *              upg_fork_* sees exactly the parent's inherited region, stored
 *              pages included, through a user-mode-only userfaultfd of its
 *              own (read(2) into a never-touched page is EFAULT there too);
 *              a region not inherited is destroyed in the child;
 *   full       /dev/userfaultfd made usable by this user, user_mode_only
 *              set: the full kind is taken all the same, and read(2) into a
 *              never-touched page is served.
 *
 * Exit 0 when every check holds, 1 with a message when one does not.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "runtime.h"
#include "upager.h"

#define PAGE 4096UL
#define MIB (1UL << 20)
#define BUDGET (4 * MIB)
#define ARRAY (32 * MIB)

static const char *mode;

static void fail(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));

static void fail(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "unpriv %s: FAIL: ", mode);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

#define CHECK(cond, ...)                                                      \
	do {                                                                  \
		if (!(cond))                                                  \
			fail(__VA_ARGS__);                                    \
	} while (0)

static uint64_t word(size_t page, unsigned i)
{
	return (page * 0x9e3779b97f4a7c15ull) ^ i ^ 0x5a5a0000;
}

static void fill(char *p, size_t page)
{
	uint64_t *w = (uint64_t *)(p + page * PAGE);

	for (unsigned i = 0; i < PAGE / 8; i++)
		w[i] = word(page, i);
}

static bool intact(const char *p, size_t page)
{
	const uint64_t *w = (const uint64_t *)(p + page * PAGE);

	for (unsigned i = 0; i < PAGE / 8; i++)
		if (w[i] != word(page, i))
			return false;
	return true;
}

static bool resident(const void *p)
{
	unsigned char v = 0;

	return mincore((void *)p, PAGE, &v) == 0 && (v & 1);
}

/* read(2) of one page from a pipe into p: 0 or errno. */
static int read_into(void *p)
{
	static char src[PAGE];
	int fds[2], err = 0;

	memset(src, 'x', sizeof(src));
	CHECK(pipe(fds) == 0, "pipe: %s", strerror(errno));
	CHECK(write(fds[1], src, PAGE) == (ssize_t)PAGE, "write to pipe");
	if (read(fds[0], p, PAGE) != (ssize_t)PAGE)
		err = errno ? errno : EIO;
	close(fds[0]);
	close(fds[1]);
	return err;
}

/* write(2) of one page from p into a pipe: 0 or errno. */
static int write_from(const void *p)
{
	int fds[2], err = 0;

	CHECK(pipe(fds) == 0, "pipe: %s", strerror(errno));
	if (write(fds[1], p, PAGE) != (ssize_t)PAGE)
		err = errno ? errno : EIO;
	close(fds[0]);
	close(fds[1]);
	return err;
}

static struct upg_runtime *create(struct upg_options *o)
{
	struct upg_runtime *rt = NULL;
	int err = upg_runtime_create(o, &rt);

	CHECK(err == 0, "upg_runtime_create: %s (%s)", strerror(-err),
	      upg_last_error());
	return rt;
}

static char *region(struct upg_runtime *rt, size_t size,
		    struct upg_region **r)
{
	int err = upg_anon_create(rt, size, 0, r);

	CHECK(err == 0, "upg_anon_create: %s", strerror(-err));
	return upg_region_addr(*r);
}

static int refused(void)
{
	struct upg_runtime *rt = NULL;
	struct upg_options o;
	const char *msg;
	int err;

	upg_options_init(&o);
	o.log_level = UPG_LOG_NONE;
	err = upg_runtime_create(&o, &rt);
	msg = upg_last_error();
	CHECK(err == -EPERM, "upg_runtime_create returned %d (%s), not -EPERM",
	      err, strerror(-err));
	CHECK(strstr(msg, "sysctl vm.unprivileged_userfaultfd=1") &&
	      strstr(msg, "udev rule") && strstr(msg, "/dev/userfaultfd") &&
	      strstr(msg, "CAP_SYS_PTRACE"),
	      "the message does not name the three ways: %s", msg);
	printf("refused as expected: %s\n", msg);
	return 0;
}

static int user_mode(void)
{
	struct upg_options o;
	struct upg_runtime *rt;
	struct upg_region *r;
	struct upg_stats st;
	size_t npages = ARRAY / PAGE, evicted = npages;
	char *p;

	upg_options_init(&o);
	CHECK(upg_options_from_env(&o) >= 1 && o.user_mode_only == 1,
	      "UPAGER_USER_MODE_ONLY=1 was not applied");
	o.mem_limit = BUDGET;
	rt = create(&o);
	CHECK(rt->user_only, "the runtime did not take the user-mode-only kind");
	p = region(rt, ARRAY, &r);

	/* The kernel's own accesses to missing pages are not served. */
	CHECK(read_into(p) == EFAULT, "read(2) into a never-touched page: %s",
	      strerror(read_into(p)));
	CHECK(write_from(p + PAGE) == EFAULT,
	      "write(2) from a never-touched page was not EFAULT");

	/* The program's own are: a lazy array 8x the budget. */
	for (size_t i = 0; i < npages; i++)
		fill(p, i);
	for (size_t i = 0; i < npages; i++)
		CHECK(intact(p, i), "page %zu reads back wrong", i);
	for (size_t i = 0; i < npages && evicted == npages; i++)
		if (!resident(p + i * PAGE))
			evicted = i;
	CHECK(evicted < npages, "no page of %zu was evicted", npages);
	CHECK(read_into(p + evicted * PAGE) == EFAULT,
	      "read(2) into evicted page %zu was not EFAULT", evicted);
	CHECK(intact(p, evicted), "evicted page %zu changed", evicted);
	/* Written again by the program (a page swapped in by a read may stay
	 * write-protected until then): the kernel writes into it. */
	fill(p, evicted);
	CHECK(read_into(p + evicted * PAGE) == 0 &&
	      p[evicted * PAGE + 100] == 'x',
	      "read(2) into a present page failed");
	CHECK(upg_stats_get(rt, &st) == 0, "upg_stats_get");
	CHECK(st.faults[UPG_FAULT_ZERO_WRITE] > 0 &&
	      st.faults[UPG_FAULT_SWAPIN_RAM] + st.faults[UPG_FAULT_SWAPIN_DISK] > 0 &&
	      st.evictions_clean + st.evictions_dirty > 0,
	      "faults not served as expected: zero-write %llu, swap-ins %llu",
	      (unsigned long long)st.faults[UPG_FAULT_ZERO_WRITE],
	      (unsigned long long)(st.faults[UPG_FAULT_SWAPIN_RAM] +
				   st.faults[UPG_FAULT_SWAPIN_DISK]));
	printf("user-mode-only: %zu pages written and read back, %llu "
	       "evicted, %llu swapped in; read(2) into untouched and evicted "
	       "pages: EFAULT\n", npages,
	       (unsigned long long)(st.evictions_clean + st.evictions_dirty),
	       (unsigned long long)(st.faults[UPG_FAULT_SWAPIN_RAM] +
				    st.faults[UPG_FAULT_SWAPIN_DISK]));
	upg_runtime_destroy(rt);
	return 0;
}

static struct upg_runtime *fork_rt;

static void at_prepare(void)
{
	upg_fork_prepare(fork_rt);
}

static void at_parent(void)
{
	upg_fork_parent(fork_rt);
}

static void at_child(void)
{
	if (upg_fork_child(fork_rt))
		_exit(3);
}

static int wait_child(pid_t pid)
{
	int status;

	CHECK(pid >= 0, "fork: %s", strerror(errno));
	CHECK(waitpid(pid, &status, 0) == pid, "waitpid");
	return status;
}

static int fork_mode(void)
{
	struct upg_options o;
	struct upg_region *r, *private;
	size_t npages = ARRAY / PAGE;
	char *p, *q;
	int status;
	pid_t pid;

	upg_options_init(&o);
	o.user_mode_only = 1;
	o.mem_limit = BUDGET;
	if (getenv("UPAGER_SWAP_DIR"))
		o.swap_dir = getenv("UPAGER_SWAP_DIR");
	fork_rt = create(&o);
	CHECK(fork_rt->user_only, "not the user-mode-only kind");
	p = region(fork_rt, ARRAY, &r);
	q = region(fork_rt, 16 * PAGE, &private);
	CHECK(upg_region_inherit(r) == 0, "upg_region_inherit");
	CHECK(pthread_atfork(at_prepare, at_parent, at_child) == 0, "atfork");
	for (size_t i = 0; i < npages - 1; i++)	/* the last stays untouched */
		fill(p, i);
	q[0] = 1;

	pid = fork();
	if (pid == 0) {
		if (!fork_rt->user_only)
			_exit(4);
		for (size_t i = 0; i < npages - 1; i++)
			if (!intact(p, i))
				_exit(5);
		if (read_into(p + (npages - 1) * PAGE) != EFAULT)
			_exit(6);
		/* Not inherited: forgotten (its address may be reused by
		 * the child's own mappings, so no SIGSEGV is promised). */
		if (upg_region_addr(private) != NULL)
			_exit(7);
		_exit(0);
	}
	status = wait_child(pid);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	      "the child saw the inherited region wrong (status %#x: 3 no "
	      "runtime, 4 not user-mode-only, 5 data, 6 read(2) not EFAULT, "
	      "7 region not inherited still there)", status);
	for (size_t i = 0; i < npages - 1; i++)
		CHECK(intact(p, i), "the parent's page %zu changed", i);
	CHECK(q[0] == 1, "the parent's other region changed");
	printf("fork: the child read %zu inherited pages exactly (user-mode-"
	       "only there too), a region not inherited is gone there\n",
	       npages - 1);
	return 0;
}

static int full(void)
{
	struct upg_options o;
	struct upg_runtime *rt;
	struct upg_region *r;
	char *p;

	upg_options_init(&o);
	o.user_mode_only = 1;
	rt = create(&o);
	CHECK(!rt->user_only, "user-mode-only although /dev/userfaultfd is "
	      "usable");
	p = region(rt, 16 * PAGE, &r);
	CHECK(read_into(p) == 0 && p[PAGE - 1] == 'x',
	      "read(2) into a never-touched page failed: %s",
	      strerror(read_into(p)));
	upg_region_destroy(r);
	upg_runtime_destroy(rt);
	printf("full kind through /dev/userfaultfd: read(2) into a "
	       "never-touched page served\n");
	return 0;
}

int main(int argc, char **argv)
{
	mode = argc > 1 ? argv[1] : "";
	if (strcmp(mode, "refused") == 0)
		return refused();
	if (strcmp(mode, "user-mode") == 0)
		return user_mode();
	if (strcmp(mode, "fork") == 0)
		return fork_mode();
	if (strcmp(mode, "full") == 0)
		return full();
	fprintf(stderr, "usage: unpriv refused|user-mode|fork|full\n");
	return 2;
}
