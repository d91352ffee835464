/* SPDX-License-Identifier: MIT */
/*
 * upager-run: run an unmodified program with its heap and large anonymous
 * mappings paged by upager.
 *
 *   upager-run [options] [--] program [args...]
 *   upager-run --check [options] [program]
 *
 * Options become UPAGER_* variables (checked here with the library's own
 * option table, as are UPAGER_* variables already set, so a bad value
 * fails before the program starts), the preload library is put first in
 * LD_PRELOAD, and the program is exec'd: same pid, and its exit status is
 * upager-run's, as with env(1) and nice(1).  Exit statuses of its own:
 * 125 (upager-run failed: a bad option, or --strict and upager cannot
 * manage the program), 126 (the program cannot be executed), 127 (not
 * found).
 *
 * The library is looked for in $UPAGER_PRELOAD_LIB, next to this program,
 * in the build tree layout (../src/preload/), then in the install libdir.
 */
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "program.h"
#include "run_options.h"
#include "upager.h"

#define LIB_NAME "libupager-preload.so"

#ifndef UPAGER_LIBDIR
#define UPAGER_LIBDIR "/usr/local/lib"
#endif

static void die_usage(const char *fmt, const char *arg)
{
	run_usage_error(fmt, arg);
	exit(RUN_EXIT_USAGE);
}

static bool try_lib(char *out, size_t len, const char *dir, const char *sub)
{
	if (snprintf(out, len, "%s%s/%s", dir, sub, LIB_NAME) >= (int)len)
		return false;
	return access(out, R_OK) == 0;
}

static void find_lib(char *out, size_t len)
{
	const char *env = getenv("UPAGER_PRELOAD_LIB");
	char self[PATH_MAX];
	ssize_t n;

	if (env && *env) {
		if (access(env, R_OK) < 0)
			die_usage("UPAGER_PRELOAD_LIB='%s' cannot be read", env);
		snprintf(out, len, "%s", env);
		return;
	}
	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n > 0) {
		self[n] = '\0';
		*strrchr(self, '/') = '\0';
		if (try_lib(out, len, self, "") ||
		    try_lib(out, len, self, "/../src/preload") ||
		    try_lib(out, len, self, "/../lib") ||
		    (*UPAGER_PRELOAD_RELDIR &&
		     try_lib(out, len, self, "/" UPAGER_PRELOAD_RELDIR)))
			return;
	}
	if (try_lib(out, len, UPAGER_LIBDIR, ""))
		return;
	die_usage("cannot find %s (set UPAGER_PRELOAD_LIB)", LIB_NAME);
}

/*
 * UPAGER_RESOLVE=thread cannot be had here: faults are then resolved in
 * the faulting thread, and the kernel's own accesses to a page not in
 * memory fail with EFAULT instead of waiting for it.  A program that
 * does not know it is managed hands its heap to the kernel all the time
 * (read(2) into a malloc'd buffer, a futex in a heap object).  The value
 * was checked with the others (upg_options_from_env).
 */
static void refuse_thread_mode(const struct upg_options *o)
{
	if (o->resolve != UPG_RESOLVE_THREAD)
		return;
	fprintf(stderr,
		"upager-run: UPAGER_RESOLVE=%s is not accepted: with faults "
		"resolved in the faulting thread, system calls that read or "
		"write a page not in memory fail with EFAULT, and an unmodified "
		"program passes its heap to such calls; only programs written "
		"for it (the upager API) can use it. Unset UPAGER_RESOLVE or "
		"set it to 'handler'.\n", getenv("UPAGER_RESOLVE"));
	exit(RUN_EXIT_USAGE);
}

/* Ours first, then whatever the user preloads already. */
static void set_preload(const char *lib)
{
	const char *old = getenv("LD_PRELOAD");
	size_t len = strlen(lib) + (old ? strlen(old) : 0) + 2;
	char *v = malloc(len);

	if (!v) {
		perror("upager-run");
		exit(RUN_EXIT_USAGE);
	}
	snprintf(v, len, "%s%s%s", lib, old && *old ? ":" : "",
		 old ? old : "");
	setenv("LD_PRELOAD", v, 1);
	free(v);
}

/*
 * Before exec: what keeps upager from managing the program.  Without
 * --strict the program runs anyway, unmanaged (the preload library says
 * so itself when userfaultfd is refused); with it, upager-run fails.
 */
static void check_before_run(const char *name, bool strict)
{
	struct program p;
	int n;

	program_inspect(name, &p);
	if (p.err)
		return;		/* execvp says why, with 126 or 127 */
	n = program_report(&p, stderr, strict ? "upager-run: "
					      : "upager-run: warning: ");
	if (n && !strict)
		fprintf(stderr, "upager-run: warning: %s runs unmanaged\n",
			name);
	if (strict && (n || check_uffd(stderr) < 0)) {
		fprintf(stderr, "upager-run: --strict: not running %s\n", name);
		exit(RUN_EXIT_USAGE);
	}
}

/* What the options set goes to the program's environment.  Statistics
 * asked for here are the started process's own (the preload library
 * writes them in that pid only, not in its forked children). */
static void export_options(const struct run_args *a)
{
	char pid[32];

	for (int i = 0; i < a->nenv; i++) {
		if (setenv(a->env[i].var, a->env[i].value, 1) < 0) {
			perror("upager-run: setenv");
			exit(RUN_EXIT_USAGE);
		}
		if (!strcmp(a->env[i].var, "UPAGER_STATS")) {
			snprintf(pid, sizeof(pid), "%ld", (long)getpid());
			setenv("UPAGER_STATS_PID", pid, 1);
		}
	}
}

int main(int argc, char **argv)
{
	struct run_args a;
	char lib[PATH_MAX];
	int rc = run_parse(argc, argv, &a);

	if (rc)
		return rc > 0 ? 0 : RUN_EXIT_USAGE;
	if (a.check)
		return check_run(&a.opts, a.prog < argc ? argv[a.prog] : NULL,
				 stdout);
	refuse_thread_mode(&a.opts);
	export_options(&a);
	find_lib(lib, sizeof(lib));
	check_before_run(argv[a.prog], a.strict);
	set_preload(lib);
	execvp(argv[a.prog], &argv[a.prog]);
	fprintf(stderr, "upager-run: cannot run '%s': %s\n", argv[a.prog],
		strerror(errno));
	return errno == ENOENT ? RUN_EXIT_NOT_FOUND : RUN_EXIT_CANNOT_RUN;
}
