/* SPDX-License-Identifier: MIT */
/* Unit tests of thread_start: the signal masks of the new thread and of
 * its creator. */
#include <pthread.h>
#include <signal.h>
#include <string.h>

#include "testlib.h"
#include "thread.h"

const bool test_needs_uffd = false;

static void *mask_of(void *arg)
{
	pthread_sigmask(SIG_BLOCK, NULL, arg);
	return NULL;
}

START_TEST(new_thread_blocks_every_signal)
{
	sigset_t mask, theirs;
	pthread_t t;

	sigemptyset(&mask);
	sigaddset(&mask, SIGUSR1);
	ck_assert_int_eq(pthread_sigmask(SIG_SETMASK, &mask, NULL), 0);
	ck_assert_int_eq(thread_start(&t, mask_of, &theirs, "upager-test"), 0);
	ck_assert_int_eq(pthread_join(t, NULL), 0);
	for (int sig = 1; sig <= SIGRTMAX; sig++) {
		/* Nobody can block these; glibc keeps 32 and 33. */
		if (sig == SIGKILL || sig == SIGSTOP ||
		    (sig > SIGSYS && sig < SIGRTMIN))
			continue;
		ck_assert_msg(sigismember(&theirs, sig) == 1,
			      "signal %d (%s) is not blocked", sig,
			      strsignal(sig));
	}
	/* The creator's mask is its own again. */
	ck_assert_int_eq(pthread_sigmask(SIG_BLOCK, NULL, &mask), 0);
	ck_assert_int_eq(sigismember(&mask, SIGUSR1), 1);
	ck_assert_int_eq(sigismember(&mask, SIGTERM), 0);
}
END_TEST

Suite *make_suite(void)
{
	Suite *s = suite_create("thread");

	ADD_TEST(s, new_thread_blocks_every_signal, 30);
	return s;
}
