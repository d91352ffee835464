/* SPDX-License-Identifier: MIT */
/*
 * A program that keeps faulting, for upager-stat's test.
 *
 *   churn MIB [--fork]
 *
 * Allocates MIB MiB (malloc: under upager-run, the managed heap; built
 * with -DUPG_EMBEDDED, a region of its own runtime, options from the
 * UPAGER_* environment), writes every page, prints "ready PID" once that
 * pass is done, then keeps checking and rewriting every page, pass after
 * pass, until its stdin closes.  With a budget below MIB it swaps all
 * along.  --fork: after the first pass a child does the same on its copy
 * (printing "child PID ready"); the parent waits for it at the end.
 * Exit 0, or 3 if a page did not read back what was written.
 */
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#ifdef UPG_EMBEDDED
#include <pthread.h>
#include <upager.h>

static struct upg_runtime *rt;

static void prepare(void)
{
	if (upg_fork_prepare(rt))
		abort();
}

static void parent(void)
{
	upg_fork_parent(rt);
}

static void child(void)
{
	if (upg_fork_child(rt))
		_exit(4);
}

static uint64_t *get_memory(size_t bytes)
{
	struct upg_options o;
	struct upg_region *r;

	upg_options_init(&o);
	if (upg_options_from_env(&o) < 0 || upg_runtime_create(&o, &rt) ||
	    upg_anon_create(rt, bytes, 0, &r) || upg_region_inherit(r)) {
		fprintf(stderr, "churn: no upager: %s\n", upg_last_error());
		exit(77);
	}
	pthread_atfork(prepare, parent, child);
	return upg_region_addr(r);
}
#else
static uint64_t *get_memory(size_t bytes)
{
	uint64_t *m = malloc(bytes);

	if (!m) {
		perror("churn: malloc");
		exit(1);
	}
	return m;
}
#endif

#define WORDS_PER_PAGE (4096 / sizeof(uint64_t))

static uint64_t value(size_t page, unsigned pass)
{
	uint64_t z = page * 0x9e3779b97f4a7c15ull + pass;

	/* splitmix64's finaliser: no pattern for the codec to find. */
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static int stdin_closed(void)
{
	struct pollfd p = { .fd = 0, .events = POLLIN };
	char c;

	return poll(&p, 1, 0) > 0 && read(0, &c, 1) <= 0;
}

/* Check what pass-1 wrote into a few words of each page, write pass. */
static void one_pass(uint64_t *m, size_t pages, unsigned pass)
{
	for (size_t i = 0; i < pages; i++) {
		uint64_t *w = m + i * WORDS_PER_PAGE;

		if (pass > 0 && (w[0] != value(i, pass - 1) ||
				 w[WORDS_PER_PAGE - 1] != value(i, pass - 1))) {
			fprintf(stderr, "churn %d: page %zu reads %#llx, "
				"wrote %#llx\n", (int)getpid(), i,
				(unsigned long long)w[0],
				(unsigned long long)value(i, pass - 1));
			exit(3);
		}
		/* Half random, half zeros: compresses about 2:1. */
		for (size_t j = 0; j < WORDS_PER_PAGE; j += 2)
			w[j] = value(i, pass) + j;
		w[0] = value(i, pass);
		w[WORDS_PER_PAGE - 1] = value(i, pass);
	}
}

int main(int argc, char **argv)
{
	size_t pages = (argc > 1 ? strtoull(argv[1], NULL, 10) : 64) << 8;
	int do_fork = argc > 2 && strcmp(argv[2], "--fork") == 0;
	uint64_t *m = get_memory(pages * 4096);
	unsigned pass = 0;
	pid_t kid = 0;
	int status;

	one_pass(m, pages, pass++);
	printf("ready %d\n", (int)getpid());
	fflush(stdout);
	if (do_fork) {
		kid = fork();
		if (kid < 0) {
			perror("churn: fork");
			return 1;
		}
		if (kid == 0) {
			printf("child %d ready\n", (int)getpid());
			fflush(stdout);
		}
	}
	while (!stdin_closed())
		one_pass(m, pages, pass++);
	if (kid > 0) {
		if (waitpid(kid, &status, 0) < 0 || !WIFEXITED(status))
			return 1;
		return WEXITSTATUS(status);
	}
	return 0;
}
