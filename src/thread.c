/* SPDX-License-Identifier: MIT */
/*
 * upager's own threads: how they start.
 *
 * Signals.  The creator blocks every signal around pthread_create, so a
 * thread of ours has them all blocked from its first instruction; a
 * process-directed signal (kill, alarm, a terminal's ^C) then goes to a
 * thread of the program, or stays pending for its sigwait or signalfd, as
 * without upager.  Ours still take what no thread can refuse: SIGKILL,
 * SIGSTOP, a fault in our own code (SIGSEGV, SIGBUS), and glibc's two
 * internal signals, which pthread_sigmask leaves open (setuid() and its
 * kin signal every thread to change its credentials too).
 */
#include <signal.h>

#include "thread.h"

int thread_start(pthread_t *thread, void *(*fn)(void *), void *arg,
		 const char *name)
{
	sigset_t all, old;
	int err;

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	err = pthread_create(thread, NULL, fn, arg);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (err)
		return -err;
	pthread_setname_np(*thread, name);
	return 0;
}
