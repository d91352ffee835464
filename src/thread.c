/* SPDX-License-Identifier: MIT */
/*
 * upager's own threads: how they start, and why the process still ends
 * when the program's last thread does.
 *
 * Signals.  The creator blocks every signal around pthread_create, so a
 * thread of ours has them all blocked from its first instruction; a
 * process-directed signal (kill, alarm, a terminal's ^C) then goes to a
 * thread of the program, or stays pending for its sigwait or signalfd, as
 * without upager.  Ours still take what no thread can refuse: SIGKILL,
 * SIGSTOP, a fault in our own code (SIGSEGV, SIGBUS), and glibc's two
 * internal signals, which pthread_sigmask leaves open (setuid() and its
 * kin signal every thread to change its credentials too).
 *
 * Exit.  glibc ends the process when its last thread ends (main calls
 * pthread_exit, then the other threads return), but it counts ours, which
 * never end.  So a watcher thread ends it in their place.  The first
 * thread_start on the main thread marks that thread with a thread-specific
 * value, whose destructor (main_exiting) runs as the main thread exits by
 * pthread_exit (or, in a forked child, by returning from its start
 * routine), never in exit().  There the main thread takes a robust mutex,
 * which the kernel marks abandoned once the thread is gone, and starts the
 * watcher if threads of ours are alive (if not, the next one started
 * does).  The watcher waits for the mutex (a pidfd of the main thread,
 * even with PIDFD_THREAD, wakes only when the whole process has ended:
 * seen on Linux 6.18), then lists /proc/self/task and sleeps in poll() on
 * a pidfd (PIDFD_THREAD, Linux 6.9) of each program thread it finds alive,
 * until none is; then it calls exit(0), as glibc's last thread would:
 * atexit handlers and destructors run (on the watcher, every signal
 * blocked) while the fault handlers serve them.  While the main thread
 * lives none of this costs anything.  Where the kernel cannot wake the
 * watcher, it looks once a second instead (log level info says so):
 * upager first started on another thread than the main one (the watcher
 * then starts at once), or no PIDFD_THREAD.
 *
 * A program thread is any thread of the process that is neither ours
 * (own[]: registered by tid from its first line of ours to its last) nor
 * an io_uring worker (the kernel's).  A forked child has another pid: the
 * slots of the parent's threads are free there, and its first thread of
 * ours marks the thread that forked (the child's main thread).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "log.h"
#include "mem.h"
#include "thread.h"

#ifndef PIDFD_THREAD
#define PIDFD_THREAD O_EXCL	/* <linux/pidfd.h>, Linux 6.9 */
#endif
#define PF_IO_WORKER 0x10	/* /proc/<tid>/stat flags: an io_uring worker */

#define OWN_MAX 512
#define PID_BITS 0xffffffff00000000ull
#define RETRY_US 10000		/* a thread of ours is starting: look again */

/* pid << 32 | tid of each thread of ours, until it returns; a slot that
 * holds another pid (a forked parent's thread, or 0) is free. */
static _Atomic uint64_t own[OWN_MAX];
/* pid << 32 | how many threads of ours are between pthread_create and
 * their slot: the watcher cannot tell them from the program's. */
static _Atomic uint64_t starting;
/* pid << 32 | how far this process is: */
enum life {
	L_MARKED = 1,	/* the main thread carries main_key */
	L_EXITING,	/* main_exiting ran: main holds main_alive */
	L_WATCHED,	/* the watcher is started */
};
static _Atomic uint64_t life;
static pthread_once_t key_once = PTHREAD_ONCE_INIT;
static pthread_key_t main_key;
static bool have_key;
static pthread_mutex_t main_alive;

static uint64_t pid_key(void)
{
	return (uint64_t)getpid() << 32;
}

static int own_add(pid_t tid)
{
	static _Atomic bool warned;
	uint64_t key = pid_key();

	for (int i = 0; i < OWN_MAX; i++) {
		uint64_t old = atomic_load(&own[i]);

		if ((old & PID_BITS) != key &&
		    atomic_compare_exchange_strong(&own[i], &old,
						   key | (uint32_t)tid))
			return i;
	}
	if (!atomic_exchange(&warned, true))
		log_warn("more than %d upager threads: the process will not "
			 "end when its last thread does", OWN_MAX);
	return -1;
}

static bool own_find(uint64_t key)
{
	for (int i = 0; i < OWN_MAX; i++)
		if (atomic_load(&own[i]) == key)
			return true;
	return false;
}

static void starting_add(int d)
{
	uint64_t key = pid_key(), old = atomic_load(&starting), n;

	do {
		uint32_t count = (old & PID_BITS) == key ? (uint32_t)old : 0;

		n = key | (uint32_t)(count + d);
	} while (!atomic_compare_exchange_weak(&starting, &old, n));
}

static bool any_starting(uint64_t key)
{
	uint64_t v = atomic_load(&starting);

	return (v & PID_BITS) == key && (uint32_t)v;
}

struct start {
	void *(*fn)(void *);
	void *arg;
};

static void *trampoline(void *p)
{
	struct start s = *(struct start *)p;
	int slot = own_add(gettid());
	void *ret;

	starting_add(-1);
	mem_free(p, sizeof(s));
	ret = s.fn(s.arg);
	if (slot >= 0)
		atomic_store(&own[slot], 0);
	return ret;
}

static int spawn(pthread_t *thread, void *(*fn)(void *), void *arg,
		 const char *name)
{
	struct start *s = mem_alloc(sizeof(*s));
	sigset_t all, old;
	int err;

	if (!s)
		return -ENOMEM;
	s->fn = fn;
	s->arg = arg;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	starting_add(1);
	err = pthread_create(thread, NULL, trampoline, s);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (err) {
		starting_add(-1);
		mem_free(s, sizeof(*s));
		return -err;
	}
	pthread_setname_np(*thread, name);
	return 0;
}

/* ------------------------------------------------------------------ */
/* The exit watcher                                                    */
/* ------------------------------------------------------------------ */

enum task { TASK_GONE, TASK_LIVE, TASK_IO };

/* What /proc says of thread tid of this process; LIVE when it cannot
 * tell (never end the process on a doubt). */
static enum task task_state(pid_t tid)
{
	char path[64], buf[512], state;
	unsigned flags;
	const char *p;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/self/task/%d/stat", (int)tid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT || errno == ESRCH ? TASK_GONE
							 : TASK_LIVE;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n < 0 && errno == ESRCH)
		return TASK_GONE;
	if (n <= 0)
		return TASK_LIVE;
	buf[n] = '\0';
	/* "tid (comm) state ppid pgrp session tty tpgid flags ...": comm
	 * may hold anything, parentheses too. */
	p = strrchr(buf, ')');
	if (!p || sscanf(p + 1, " %c %*d %*d %*d %*d %*d %u", &state,
			 &flags) != 2)
		return TASK_LIVE;
	if (state == 'Z' || state == 'X')
		return TASK_GONE;
	return flags & PF_IO_WORKER ? TASK_IO : TASK_LIVE;
}

#define MAX_DEAD 64

/* Program threads a look found listed but dead (exiting, for a moment). */
struct look {
	pid_t dead[MAX_DEAD];
	unsigned ndead;
};

/* One program thread found alive (the last check is after `starting`:
 * a thread of ours registers before it leaves `starting`). */
static pid_t judge_live(uint64_t key, pid_t tid)
{
	if (any_starting(key))
		return -EAGAIN;
	return own_find(key | (uint32_t)tid) ? 0 : tid;
}

/*
 * List this process's threads.  Returns a live program thread, 0 if none
 * is alive (lk->dead holds those listed dead), -EAGAIN if that cannot be
 * told yet, or -errno if /proc cannot be read.
 */
static pid_t look_once(struct look *lk)
{
	char buf[16384];
	uint64_t key = pid_key();
	int fd = open("/proc/self/task", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	pid_t found = 0;
	ssize_t n;

	if (fd < 0)
		return -errno;
	lk->ndead = 0;
	while (!found && (n = getdents64(fd, buf, sizeof(buf))) > 0) {
		for (ssize_t off = 0; off < n && !found;) {
			struct dirent64 *d = (struct dirent64 *)(buf + off);
			pid_t tid = (pid_t)atoi(d->d_name);

			off += d->d_reclen;
			/* The main thread has exited (wait_main), even if
			 * /proc does not say so yet. */
			if (tid <= 0 || (uint64_t)tid == key >> 32 ||
			    own_find(key | (uint32_t)tid))
				continue;
			switch (task_state(tid)) {
			case TASK_LIVE:
				found = judge_live(key, tid);
				break;
			case TASK_GONE:
				if (lk->ndead == MAX_DEAD)
					found = -EAGAIN;
				else
					lk->dead[lk->ndead++] = tid;
				break;
			case TASK_IO:
				break;
			}
		}
	}
	if (!found && n < 0)
		found = -errno;
	close(fd);
	return found;
}

static bool seen_dead(const struct look *lk, pid_t tid)
{
	for (unsigned i = 0; i < lk->ndead; i++)
		if (lk->dead[i] == tid)
			return true;
	return false;
}

/*
 * A live program thread, 0 if there is none, or -errno as look_once().
 * A listing is no snapshot: a thread may start another and exit while the
 * first look goes by, and that look sees neither alive.  So a second look:
 * every program thread alive while it lists is in its listing; if each it
 * lists was already seen dead by the first, none was alive, and none can
 * start again (only a program thread starts one).
 */
static pid_t program_thread(void)
{
	struct look a, b;
	pid_t t = look_once(&a);

	if (t == 0)
		t = look_once(&b);
	for (unsigned i = 0; t == 0 && i < b.ndead; i++)
		if (!seen_dead(&a, b.dead[i]))
			t = -EAGAIN;
	return t;
}

/* Return when thread tid of this process, not its main thread, has
 * exited. */
static void wait_exit(pid_t tid)
{
	static bool warned;
	struct pollfd pfd = { .events = POLLIN };

	pfd.fd = (int)syscall(SYS_pidfd_open, tid, PIDFD_THREAD);
	if (pfd.fd >= 0) {
		/* Still ours after pidfd_open: not a tid reused elsewhere. */
		if (task_state(tid) != TASK_GONE)
			while (poll(&pfd, 1, -1) < 0 && errno == EINTR)
				;
		close(pfd.fd);
		return;
	}
	if (!warned && errno != ESRCH) {
		warned = true;
		log_info("no pidfd of a thread (%s): looking once a second "
			 "whether the program's threads have ended",
			 strerror(errno));
	}
	while (task_state(tid) != TASK_GONE)
		sleep(1);
}

static void wait_main(bool held)
{
	if (held) {
		pthread_mutex_lock(&main_alive);	/* EOWNERDEAD */
		return;
	}
	log_info("upager started on a thread other than the main one: "
		 "looking once a second whether the main thread has ended");
	while (task_state(getpid()) != TASK_GONE)
		sleep(1);
}

/*
 * End the process in the program's place.  Its atexit handlers and
 * destructors run here and may touch managed memory: with
 * UPAGER_RESOLVE=thread this thread then resolves its own faults, in the
 * SIGBUS handler, which a blocked SIGBUS would never reach.
 */
static _Noreturn void exit_for_program(void)
{
	sigset_t bus;

	sigemptyset(&bus);
	sigaddset(&bus, SIGBUS);
	pthread_sigmask(SIG_UNBLOCK, &bus, NULL);
	exit(0);
}

/* arg: whether the main thread holds main_alive. */
static void *watch_main(void *arg)
{
	bool warned = false;
	pid_t t;

	wait_main(arg != NULL);
	for (;;) {
		t = program_thread();
		if (t == 0)
			exit_for_program();
		if (t > 0) {
			wait_exit(t);
		} else if (t == -EAGAIN) {
			usleep(RETRY_US);
		} else {
			if (!warned)
				log_warn("cannot list this process's threads "
					 "(%s): looking again every second",
					 strerror(-t));
			warned = true;
			sleep(1);
		}
	}
}

static void start_watcher(bool main_held)
{
	pthread_t w;
	int err = spawn(&w, watch_main, main_held ? &main_alive : NULL,
			"upager-watch");

	if (err)
		log_warn("cannot start the exit watcher (%s): the process will "
			 "not end when its last thread does", strerror(-err));
	else
		pthread_detach(w);
}

static bool ours_alive(uint64_t key)
{
	if (any_starting(key))
		return true;
	for (int i = 0; i < OWN_MAX; i++)
		if ((atomic_load(&own[i]) & PID_BITS) == key)
			return true;
	return false;
}

/* main_key's destructor, on the main thread as it exits. */
static void main_exiting(void *unused)
{
	uint64_t key = pid_key(), cur = key | L_MARKED;
	pthread_mutexattr_t a;

	/* Not a copy of the mark that a forked child inherited unused. */
	if (atomic_load(&life) != cur)
		return;
	pthread_mutexattr_init(&a);
	pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
	pthread_mutex_init(&main_alive, &a);
	pthread_mutexattr_destroy(&a);
	pthread_mutex_lock(&main_alive);
	atomic_store(&life, key | L_EXITING);
	/* Either this sees a thread being started, or its thread_start
	 * sees L_EXITING (both sides write, then read). */
	cur = key | L_EXITING;
	if (ours_alive(key) &&
	    atomic_compare_exchange_strong(&life, &cur, key | L_WATCHED))
		start_watcher(true);
}

static void make_key(void)
{
	have_key = pthread_key_create(&main_key, main_exiting) == 0;
}

int thread_start(pthread_t *thread, void *(*fn)(void *), void *arg,
		 const char *name)
{
	uint64_t key = pid_key(), cur = atomic_load(&life);
	int err;

	if ((cur & PID_BITS) != key) {
		/* The first thread of ours in this process. */
		pthread_once(&key_once, make_key);
		if (gettid() == getpid() && have_key &&
		    pthread_setspecific(main_key, &main_key) == 0)
			atomic_compare_exchange_strong(&life, &cur,
						       key | L_MARKED);
		else if (atomic_compare_exchange_strong(&life, &cur,
							key | L_WATCHED))
			start_watcher(false);
	}
	err = spawn(thread, fn, arg, name);
	/* The main thread has exited with no thread of ours alive. */
	cur = key | L_EXITING;
	if (atomic_compare_exchange_strong(&life, &cur, key | L_WATCHED))
		start_watcher(true);
	return err;
}
