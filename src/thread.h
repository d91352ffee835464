/* SPDX-License-Identifier: MIT */
/*
 * upager's own threads: every one is started here, so that none takes a
 * signal meant for the program and none keeps the process alive once the
 * program's last thread has ended (thread.c says how).
 */
#ifndef UPAGER_THREAD_H
#define UPAGER_THREAD_H

#include <pthread.h>

/*
 * Start fn(arg) on a new thread named `name` (at most 15 characters, for
 * top, perf and gdb) with every signal blocked from its first instruction.
 * The first call of a process, on its main thread, marks that thread so
 * that its exit starts the exit watcher (thread.c).  The caller's signal
 * mask is unchanged on return.  The thread may be joined as usual;
 * fn must return, not call pthread_exit (its end is recorded on return).
 * Returns 0, or -ENOMEM or -errno of pthread_create (-EAGAIN).
 */
int thread_start(pthread_t *thread, void *(*fn)(void *), void *arg,
		 const char *name);

#endif
