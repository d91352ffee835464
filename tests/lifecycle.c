/* SPDX-License-Identifier: MIT */
/*
 * A program's life as glibc and the kernel make it, which upager must not
 * change.  run_lifecycle.py runs it plainly, under upager-run, and built
 * with UPG_EMBEDDED (it then creates a runtime of its own, from the
 * environment), and compares.
 *
 *   lifecycle exit-main     main starts a thread and calls pthread_exit;
 *                           that thread starts another and returns, which
 *                           returns too: the process ends, status 0.
 *   lifecycle fork-thread   a thread other than main forks; the child's
 *                           only thread returns: the child ends, status 0
 *                           (the parent waits for it at most 20 s).
 *   lifecycle signalfd      SIGTERM, blocked, is sent to the process and
 *                           read from a signalfd.
 *   lifecycle sigtimedwait  SIGALRM, blocked and with a handler, comes
 *                           from a timer and is then taken by
 *                           sigtimedwait: the handler must not run.
 *
 * The data the threads and the atexit handler read is 32 MiB of heap
 * (managed under upager-run) or of a region (embedded): with a smaller
 * budget it is evicted and read back meanwhile.  At exit the program
 * prints "atexit" and a checksum of it; the embedded program then destroys
 * its runtime, which writes the statistics UPAGER_STATS asks for.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifdef UPG_EMBEDDED
#include <upager.h>

static struct upg_runtime *rt;
static struct upg_region *region;
#endif

#define DATA_WORDS ((size_t)4 << 20)	/* 32 MiB */
#define WAIT_MS 20000

static uint64_t *data;

static void fail(const char *what)
{
	printf("FAIL: %s: %s\n", what, strerror(errno));
	exit(1);
}

static uint64_t checksum(void)
{
	uint64_t sum = 0;

	for (size_t i = 0; i < DATA_WORDS; i += 64)
		sum = sum * 31 + data[i];
	return sum;
}

static void at_exit(void)
{
	printf("atexit %016llx\n", (unsigned long long)checksum());
	fflush(stdout);
#ifdef UPG_EMBEDDED
	upg_region_destroy(region);
	upg_runtime_destroy(rt);
#endif
}

#ifdef UPG_EMBEDDED
static void fork_prepare(void)
{
	if (upg_fork_prepare(rt))
		fail("upg_fork_prepare");
}

static void fork_parent(void)
{
	upg_fork_parent(rt);
}

static void fork_child(void)
{
	if (upg_fork_child(rt))
		_exit(127);
}
#endif

/* The data, written before any signal or thread is in play. */
static void setup(void)
{
#ifdef UPG_EMBEDDED
	int err = upg_runtime_create(NULL, &rt);

	if (err == -ENOSYS || err == -EPERM) {
		printf("SKIP: userfaultfd is not available: %s\n",
		       upg_last_error());
		exit(77);
	}
	if (err || upg_anon_create(rt, DATA_WORDS * 8, 0, &region) ||
	    upg_region_inherit(region) ||
	    pthread_atfork(fork_prepare, fork_parent, fork_child)) {
		printf("FAIL: no runtime or region\n");
		exit(1);
	}
	data = upg_region_addr(region);
#else
	data = malloc(DATA_WORDS * 8);
	if (!data)
		fail("malloc");
#endif
	for (size_t i = 0; i < DATA_WORDS; i++)
		data[i] = i * 0x9e3779b97f4a7c15ull;
	atexit(at_exit);
}

static void *second(void *arg)
{
	usleep(50000);
	printf("thread 2 %016llx\n", (unsigned long long)checksum());
	return arg;
}

static void *first(void *arg)
{
	pthread_t t;

	usleep(100000);	/* main has exited by now */
	printf("thread 1 %016llx\n", (unsigned long long)checksum());
	if (pthread_create(&t, NULL, second, NULL))
		fail("pthread_create");
	pthread_detach(t);
	return arg;
}

static int exit_main(void)
{
	pthread_t t;

	if (pthread_create(&t, NULL, first, NULL))
		fail("pthread_create");
	pthread_exit(NULL);
}

/* Wait for pid at most WAIT_MS: a child that hangs is killed and
 * reported, not waited for forever. */
static void wait_child(pid_t pid)
{
	int status;

	for (int ms = 0; ms < WAIT_MS; ms += 10) {
		pid_t got = waitpid(pid, &status, WNOHANG);

		if (got < 0)
			fail("waitpid");
		if (got == 0) {
			usleep(10000);
			continue;
		}
		if (WIFEXITED(status))
			printf("child exited %d\n", WEXITSTATUS(status));
		else
			printf("child killed by signal %d\n", WTERMSIG(status));
		return;
	}
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	printf("FAIL: the child did not end in %d ms\n", WAIT_MS);
	exit(1);
}

static void *forker(void *arg)
{
	pid_t pid;

	fflush(stdout);
	pid = fork();
	if (pid < 0)
		fail("fork");
	if (pid == 0) {
		/* The child's only thread: when it returns, the child ends. */
		printf("child %016llx\n", (unsigned long long)checksum());
		return arg;
	}
	wait_child(pid);
	return arg;
}

static int fork_thread(void)
{
	pthread_t t;

	if (pthread_create(&t, NULL, forker, NULL) ||
	    pthread_join(t, NULL))
		fail("pthread_create");
	return 0;
}

static void block(int sig, sigset_t *set)
{
	sigemptyset(set);
	sigaddset(set, sig);
	if (sigprocmask(SIG_BLOCK, set, NULL))
		fail("sigprocmask");
}

static int read_signalfd(void)
{
	struct signalfd_siginfo si;
	struct pollfd pfd = { .events = POLLIN };
	sigset_t set;

	block(SIGTERM, &set);
	pfd.fd = signalfd(-1, &set, SFD_CLOEXEC);
	if (pfd.fd < 0)
		fail("signalfd");
	if (kill(getpid(), SIGTERM))
		fail("kill");
	if (poll(&pfd, 1, WAIT_MS) != 1 ||
	    read(pfd.fd, &si, sizeof(si)) != sizeof(si))
		fail("no signal on the signalfd");
	printf("signalfd %s\n", strsignal((int)si.ssi_signo));
	return 0;
}

static volatile sig_atomic_t handled;

static void on_alarm(int sig)
{
	handled = sig;
}

static int take_sigtimedwait(void)
{
	struct sigaction sa = { .sa_handler = on_alarm };
	struct itimerval it = { .it_value = { 0, 20000 } };
	struct timespec ts = { 5, 0 };
	sigset_t set;
	int sig;

	sigaction(SIGALRM, &sa, NULL);
	block(SIGALRM, &set);
	if (setitimer(ITIMER_REAL, &it, NULL))
		fail("setitimer");
	/* The alarm comes while the program works, not in sigtimedwait
	 * (which would take it whatever the other threads block). */
	usleep(100000);
	sig = sigtimedwait(&set, NULL, &ts);
	if (handled) {
		printf("FAIL: the handler took %s\n", strsignal(handled));
		return 1;
	}
	if (sig < 0)
		fail("sigtimedwait");
	printf("sigtimedwait %s\n", strsignal(sig));
	return 0;
}

int main(int argc, char **argv)
{
	static const struct {
		const char *name;
		int (*run)(void);
	} modes[] = {
		{ "exit-main", exit_main },
		{ "fork-thread", fork_thread },
		{ "signalfd", read_signalfd },
		{ "sigtimedwait", take_sigtimedwait },
	};

	for (size_t i = 0; argc == 2 && i < sizeof(modes) / sizeof(modes[0]);
	     i++) {
		if (strcmp(argv[1], modes[i].name) == 0) {
			setup();
			return modes[i].run();
		}
	}
	fprintf(stderr, "usage: lifecycle exit-main|fork-thread|signalfd|"
		"sigtimedwait\n");
	return 2;
}
