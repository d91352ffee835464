/* SPDX-License-Identifier: MIT */
/*
 * upager-run: run an unmodified program with its heap and large anonymous
 * mappings paged by upager.
 *
 *   upager-run [options] [--] program [args...]
 *
 * Options become UPAGER_* variables (checked here with the library's own
 * option table, so a bad value fails before the program starts), the
 * preload library is put first in LD_PRELOAD, and the program is exec'd:
 * same pid, and its exit status is upager-run's.
 *
 * The library is looked for in $UPAGER_PRELOAD_LIB, next to this program,
 * in the build tree layout (../src/preload/), in the installed layout
 * relative to this program (UPAGER_PRELOAD_RELDIR: a tree installed with
 * --destdir, or moved, finds its own), then in the install libdir.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "run_options.h"

#define LIB_NAME "libupager-preload.so"

#ifndef UPAGER_LIBDIR
#define UPAGER_LIBDIR "/usr/local/lib/upager"
#endif
#ifndef UPAGER_PRELOAD_RELDIR
#define UPAGER_PRELOAD_RELDIR "../lib/upager"
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

int main(int argc, char **argv)
{
	struct run_args a;
	char lib[PATH_MAX], pid[32];
	int err = run_parse(argc, argv, &a);

	if (err)
		return err > 0 ? 0 : RUN_EXIT_USAGE;
	for (int i = 0; i < a.nenv; i++) {
		if (setenv(a.env[i].var, a.env[i].value, 1) < 0) {
			perror("upager-run: setenv");
			return RUN_EXIT_USAGE;
		}
	}
	if (a.opts.stats_path) {
		snprintf(pid, sizeof(pid), "%ld", (long)getpid());
		setenv("UPAGER_STATS_PID", pid, 1);
	}
	find_lib(lib, sizeof(lib));
	set_preload(lib);
	execvp(argv[a.prog], &argv[a.prog]);
	fprintf(stderr, "upager-run: cannot run '%s': %s\n", argv[a.prog],
		strerror(errno));
	return errno == ENOENT ? 127 : 126;
}
