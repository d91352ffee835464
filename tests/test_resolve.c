/* SPDX-License-Identifier: MIT */
/*
 * UPAGER_RESOLVE=thread: faults resolved in the faulting thread's SIGBUS
 * handler.  Data written is read back exactly (also under the write
 * protection of a snapshot, on a thread with an alternate signal stack,
 * with errno kept); no handler thread runs; the kernel's own access to a
 * missing page fails with EFAULT, as documented; a SIGBUS that is not a
 * fault on managed memory (outside every region, sent by kill, a poisoned
 * page) reaches the program's handler, or ends the process as SIGBUS does
 * by default.  The swap and stress suites run again in this mode too
 * (meson.build: UPAGER_TEST_RESOLVE).
 */
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pagetable.h"
#include "runtime.h"
#include "store.h"
#include "testlib.h"

const bool test_needs_uffd = true;

static struct upg_runtime *thread_runtime(uint64_t limit)
{
	struct upg_options o;

	upg_options_init(&o);
	ck_assert_int_eq(upg_options_set(&o, "UPAGER_RESOLVE", "thread"), 0);
	o.mem_limit = limit;
	o.swap_dir = getenv("UPAGER_TEST_SWAP_DIR") ?: "/var/tmp";
	return test_runtime_opts(&o);
}

/* Threads of this process whose name starts with `prefix`. */
static int threads_named(const char *prefix)
{
	DIR *d = opendir("/proc/self/task");
	struct dirent *de;
	int n = 0;

	ck_assert_ptr_nonnull(d);
	while ((de = readdir(d))) {
		char path[300], name[32] = "";
		FILE *f;

		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/self/task/%s/comm",
			 de->d_name);
		f = fopen(path, "r");
		if (!f)
			continue;
		if (fgets(name, sizeof(name), f) &&
		    !strncmp(name, prefix, strlen(prefix)))
			n++;
		fclose(f);
	}
	closedir(d);
	return n;
}

START_TEST(faults_served_in_the_faulting_thread)
{
	struct upg_runtime *rt = thread_runtime(0);
	struct upg_region *r, *r2;
	const size_t npages = 2048;
	char *p = test_region(rt, npages * TPAGE, &r);
	char *q = test_region(rt, npages * TPAGE, &r2);
	struct upg_stats st;

	ck_assert_int_eq(threads_named("upager-fault"), 0);
	for (size_t i = 0; i < npages; i += 3)
		ck_assert(page_is_zero(q + i * TPAGE));
	for (size_t i = 0; i < npages; i++)
		fill_page(p + i * TPAGE, i, 1);
	for (size_t i = 0; i < npages; i++)
		ck_assert_msg(check_page(p + i * TPAGE, i, 1), "page %zu", i);
	/* Counted at once: the thread served them itself. */
	st = test_stats(rt);
	ck_assert_uint_gt(st.faults[UPG_FAULT_ZERO_READ], 0);
	ck_assert_uint_gt(st.faults[UPG_FAULT_ZERO_WRITE], 0);
	upg_runtime_destroy(rt);
}
END_TEST

/* Copy-on-write of a snapshot: write-protect faults, served here too. */
START_TEST(snapshot_write_protect_faults)
{
	struct upg_runtime *rt = thread_runtime(0);
	struct upg_region *r;
	struct upg_snapshot *snap;
	const size_t npages = 256;
	char *p = test_region(rt, npages * TPAGE, &r);
	char *buf = malloc(TPAGE);

	for (size_t i = 0; i < npages; i++)
		fill_page(p + i * TPAGE, i, 2);
	ck_assert_int_eq(upg_snapshot_take(r, &snap), 0);
	for (size_t i = 0; i < npages; i++)
		fill_page(p + i * TPAGE, i, 3);
	ck_assert_uint_ge(test_stats(rt).faults[UPG_FAULT_WP], npages);
	for (size_t i = 0; i < npages; i++) {
		ck_assert(check_page(p + i * TPAGE, i, 3));
		ck_assert_int_eq(upg_snapshot_read(snap, i * TPAGE, buf, TPAGE),
				 0);
		ck_assert_msg(check_page(buf, i, 2), "snapshot page %zu", i);
	}
	ck_assert_int_eq(upg_snapshot_drop(snap), 0);
	free(buf);
	upg_runtime_destroy(rt);
}
END_TEST

/* The documented rule: the kernel does not wait for a missing page. */
START_TEST(kernel_access_to_missing_page_is_efault)
{
	struct upg_runtime *rt = thread_runtime(0);
	struct upg_region *r;
	char *p = test_region(rt, 4 * TPAGE, &r);
	int fds[2];

	ck_assert_int_eq(pipe(fds), 0);
	ck_assert_int_eq(write(fds[1], "upager", 6), 6);
	errno = 0;
	ck_assert_int_eq(read(fds[0], p, 6), -1);
	ck_assert_int_eq(errno, EFAULT);
	/* From a missing page too. */
	errno = 0;
	ck_assert_int_eq(write(fds[1], p + 2 * TPAGE, 6), -1);
	ck_assert_int_eq(errno, EFAULT);
	/* Touched first, the buffer works. */
	p[0] = 1;
	ck_assert_int_eq(read(fds[0], p, 6), 6);
	ck_assert(!memcmp(p, "upager", 6));
	close(fds[0]);
	close(fds[1]);
	upg_runtime_destroy(rt);
}
END_TEST

/* ---- SIGBUS that is not ours: to the program's handler ---- */

static sigjmp_buf jmp;
static volatile sig_atomic_t got_code, got_errno;

/* ThreadSanitizer sets errno to 99 before any signal handler runs, to
 * catch handlers that spoil it: there, what the program's handler sees is
 * ThreadSanitizer's, and the check is left out. */
#if defined(__SANITIZE_THREAD__)
#define check_handler_errno(e) ((void)(e))
#else
#define check_handler_errno(e) ck_assert_int_eq(got_errno, (e))
#endif
static void *volatile got_addr;
static char *volatile got_stack;	/* a local of the handler's */

static void program_handler(int sig, siginfo_t *si, void *uc)
{
	char here;

	(void)sig;
	(void)uc;
	got_stack = &here;
	got_errno = errno;
	got_code = si->si_code;
	got_addr = si->si_addr;
	siglongjmp(jmp, 1);
}

static void install_program_handler(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = program_handler;
	sa.sa_flags = SA_SIGINFO;
	sigemptyset(&sa.sa_mask);
	ck_assert_int_eq(sigaction(SIGBUS, &sa, NULL), 0);
}

/* Touch addr; true if the program's handler got a SIGBUS for it. */
static bool program_got_bus(volatile char *addr)
{
	got_code = 0;
	got_addr = NULL;
	if (sigsetjmp(jmp, 1) == 0) {
		(void)*addr;
		return false;
	}
	return true;
}

/* A file mapping past its end: SIGBUS (BUS_ADRERR) outside any region. */
static char *past_eof(void)
{
	int fd = memfd_create("past-eof", MFD_CLOEXEC);
	char *m;

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ftruncate(fd, TPAGE), 0);
	m = mmap(NULL, 2 * TPAGE, PROT_READ, MAP_SHARED, fd, 0);
	ck_assert_ptr_ne(m, MAP_FAILED);
	close(fd);
	return m + TPAGE;
}

START_TEST(other_sigbus_reaches_program_handler)
{
	struct upg_runtime *rt;
	struct upg_region *r;
	char *p, *eof = past_eof();

	install_program_handler();
	rt = thread_runtime(0);
	p = test_region(rt, 16 * TPAGE, &r);
	ck_assert(!program_got_bus(p));
	ck_assert(program_got_bus(eof));
	ck_assert_int_eq(got_code, BUS_ADRERR);
	ck_assert_ptr_eq(got_addr, eof);
	/* Sent, not raised by a fault. */
	got_code = 0;
	if (sigsetjmp(jmp, 1) == 0) {
		raise(SIGBUS);
		ck_abort_msg("raise(SIGBUS) came back");
	}
	ck_assert_int_eq(got_code, SI_TKILL);
	/* Managed memory is still served, and the program's handler still
	 * gets what is not: the order of the two does not matter. */
	for (size_t i = 0; i < 16; i++)
		fill_page(p + i * TPAGE, i, 4);
	ck_assert(program_got_bus(eof));
	for (size_t i = 0; i < 16; i++)
		ck_assert(check_page(p + i * TPAGE, i, 4));
	upg_runtime_destroy(rt);
	ck_assert(program_got_bus(eof));
}
END_TEST

/* Without a handler of the program's, such a SIGBUS ends the process. */
START_TEST(other_sigbus_without_handler_kills)
{
	int status;
	pid_t pid = fork();

	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		char *eof = past_eof();
		struct upg_runtime *rt;
		struct upg_region *r;
		char *p;

		signal(SIGBUS, SIG_DFL);
		rt = thread_runtime(0);
		p = test_region(rt, 16 * TPAGE, &r);
		fill_page(p, 0, 5);
		if (!check_page(p, 0, 5))
			_exit(3);
		(void)*(volatile char *)eof;
		_exit(0);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGBUS,
		      "child status %#x", status);
}
END_TEST

/*
 * A page whose stored copy is lost is poisoned: the access gets SIGBUS
 * (BUS_MCEERR_AR), which is the program's, never served as a fault nor
 * answered with wrong data.
 */
START_TEST(poisoned_page_reaches_program_handler)
{
	const uint64_t budget = 4 * MIB;
	const size_t npages = 4 * budget / TPAGE;
	struct upg_runtime *rt;
	struct upg_region *r;
	uint64_t idx = UINT64_MAX;
	char *p;

	install_program_handler();
	rt = thread_runtime(budget);
	p = test_region(rt, npages * TPAGE, &r);
	for (size_t i = 0; i < npages; i++)
		fill_page(p + i * TPAGE, i, 6);
	for (uint64_t i = 0; i < npages && idx == UINT64_MAX; i++)
		if (pte_state(pt_get(&r->pt, i)) == PTE_STORED)
			idx = i;
	ck_assert_uint_ne(idx, UINT64_MAX);
	ck_assert_int_eq(store_corrupt(rt->store,
				       pte_payload(pt_get(&r->pt, idx))), 0);
	errno = EDOM;
	ck_assert(program_got_bus(p + idx * TPAGE + 8));
	/* It sees the errno of the code it interrupted. */
	check_handler_errno(EDOM);
	errno = EDOM;
	ck_assert(program_got_bus(p + idx * TPAGE + 16));
	check_handler_errno(EDOM);
	/* BUS_ADRERR where the kernel has no CONFIG_MEMORY_FAILURE. */
	ck_assert_msg(got_code == BUS_MCEERR_AR || got_code == BUS_ADRERR,
		      "si_code %d", got_code);
	ck_assert_ptr_eq((void *)((uintptr_t)got_addr & ~(TPAGE - 1)),
			 p + idx * TPAGE);
	ck_assert(program_got_bus(p + idx * TPAGE));
	ck_assert_uint_eq(test_stats(rt).poisoned, 1);
	for (size_t i = 0; i < npages; i++)
		if (i != idx)
			ck_assert_msg(check_page(p + i * TPAGE, i, 6),
				      "page %zu", i);
	upg_runtime_destroy(rt);
}
END_TEST

/* ---- the handler on the program's thread: errno, alternate stack ---- */

struct alt_arg {
	char *p, *eof;
	size_t npages;
	bool errno_kept, data_ok, on_alt_stack;
};

static void *alt_stack_thread(void *arg)
{
	struct alt_arg *a = arg;
	stack_t ss = { .ss_size = 64 * KIB };
	bool kept = true, ok = true;

	ss.ss_sp = malloc(ss.ss_size);
	ck_assert_ptr_nonnull(ss.ss_sp);
	ck_assert_int_eq(sigaltstack(&ss, NULL), 0);
	for (size_t i = 0; i < a->npages; i++) {
		volatile char *page = a->p + i * TPAGE;

		errno = EDOM;
		atomic_signal_fence(memory_order_seq_cst);
		page[1] = (char)i;	/* a fault, served on the alt stack */
		atomic_signal_fence(memory_order_seq_cst);
		kept &= errno == EDOM;
		ok &= page[1] == (char)i;
	}
	/* The program's handler, called from ours, runs on our stack. */
	a->on_alt_stack = program_got_bus(a->eof) &&
			  got_stack >= (char *)ss.ss_sp &&
			  got_stack < (char *)ss.ss_sp + ss.ss_size;
	ss.ss_flags = SS_DISABLE;
	sigaltstack(&ss, NULL);
	free(ss.ss_sp);
	a->errno_kept = kept;
	a->data_ok = ok;
	return NULL;
}

START_TEST(errno_kept_and_alternate_stack_used)
{
	struct alt_arg a = { .npages = 512, .eof = past_eof() };
	struct upg_runtime *rt;
	struct upg_region *r;
	pthread_t t;

	install_program_handler();
	rt = thread_runtime(0);
	a.p = test_region(rt, a.npages * TPAGE, &r);
	ck_assert_int_eq(pthread_create(&t, NULL, alt_stack_thread, &a), 0);
	ck_assert_int_eq(pthread_join(t, NULL), 0);
	ck_assert(a.errno_kept);
	ck_assert(a.data_ok);
	ck_assert(a.on_alt_stack);
	upg_runtime_destroy(rt);
}
END_TEST

/* Bad values name the variable and what is accepted. */
START_TEST(bad_value_is_named)
{
	struct upg_options o;

	upg_options_init(&o);
	ck_assert_int_eq(o.resolve, UPG_RESOLVE_HANDLER);
	ck_assert_int_eq(upg_options_set(&o, "UPAGER_RESOLVE", "inline"),
			 -EINVAL);
	ck_assert_ptr_nonnull(strstr(upg_last_error(), "UPAGER_RESOLVE"));
	ck_assert_ptr_nonnull(strstr(upg_last_error(), "handler or thread"));
	ck_assert_int_eq(o.resolve, UPG_RESOLVE_HANDLER);
}
END_TEST

Suite *make_suite(void)
{
	Suite *s = suite_create("resolve");

	ADD_TEST(s, faults_served_in_the_faulting_thread, 60);
	ADD_TEST(s, snapshot_write_protect_faults, 60);
	ADD_TEST(s, kernel_access_to_missing_page_is_efault, 60);
	ADD_TEST(s, other_sigbus_reaches_program_handler, 60);
	ADD_TEST(s, other_sigbus_without_handler_kills, 60);
	ADD_TEST(s, poisoned_page_reaches_program_handler, 120);
	ADD_TEST(s, errno_kept_and_alternate_stack_used, 60);
	ADD_TEST(s, bad_value_is_named, 30);
	return s;
}
