/* SPDX-License-Identifier: MIT */
/*
 * upager's own threads: every one is started here, so that none takes a
 * signal meant for the program (thread.c says how).
 */
#ifndef UPAGER_THREAD_H
#define UPAGER_THREAD_H

#include <pthread.h>

/*
 * Start fn(arg) on a new thread named `name` (at most 15 characters, for
 * top, perf and gdb) with every signal blocked from its first instruction.
 * The caller's signal mask is unchanged on return.  The thread may be
 * joined as usual.
 * Returns 0, or -errno of pthread_create (-EAGAIN).
 */
int thread_start(pthread_t *thread, void *(*fn)(void *), void *arg,
		 const char *name);

#endif
