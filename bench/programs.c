/* SPDX-License-Identifier: MIT */
/*
 * upager-bench --programs: real programs (python3, sort, sqlite3, xz) run
 * plain, under upager-run and under the kernel with the same memory limit.
 * Running programs, cgroups and swap areas is a script's job: programs.py,
 * run here with the path of upager-run and what the other reports say of
 * the machine, so that both reports open alike.
 *
 * Both are looked for where the build puts them (programs.py copied next
 * to upager-bench, upager-run in ../tools), then where they are installed
 * (upager-run next to upager-bench, the script in BENCH_LIBEXECDIR).
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"

#ifndef BENCH_LIBEXECDIR
#define BENCH_LIBEXECDIR "/usr/local/libexec/upager"
#endif

/* dir/name into out if it is there and can be used (access `mode`). */
static bool find(char *out, size_t len, const char *dir, const char *name,
		 int mode)
{
	return snprintf(out, len, "%s/%s", dir, name) < (int)len &&
	       access(out, mode) == 0;
}

static int self_dir(char *dir, size_t len)
{
	ssize_t n = readlink("/proc/self/exe", dir, len - 1);

	if (n <= 0)
		return -errno;
	dir[n] = '\0';
	*strrchr(dir, '/') = '\0';
	return 0;
}

/* The report's opening as JSON, for the script's --info. */
static char *info_json(size_t page)
{
	char *buf = NULL;
	size_t len;
	FILE *f = open_memstream(&buf, &len);

	if (!f)
		return NULL;
	report_info(f, page);
	if (fclose(f)) {
		free(buf);
		return NULL;
	}
	return buf;
}

/*
 * argv[0] is "--programs"; the rest are the script's.  Returns only on
 * failure, with an exit status.
 */
int programs_run(int argc, char **argv, size_t page)
{
	char dir[PATH_MAX], script[PATH_MAX + 16], run[PATH_MAX + 32];
	char **args = calloc((size_t)argc + 7, sizeof(*args));
	char *info = info_json(page);

	if (!args || !info || self_dir(dir, sizeof(dir))) {
		fprintf(stderr, "upager-bench: --programs: %s\n", strerror(errno));
		return 2;
	}
	if (!find(script, sizeof(script), dir, "programs.py", R_OK) &&
	    !find(script, sizeof(script), BENCH_LIBEXECDIR, "programs.py",
		  R_OK)) {
		fprintf(stderr, "upager-bench: --programs: no programs.py in %s "
			"nor in " BENCH_LIBEXECDIR "\n", dir);
		return 2;
	}
	if (!find(run, sizeof(run), dir, "../tools/upager-run", X_OK) &&
	    !find(run, sizeof(run), dir, "upager-run", X_OK)) {
		fprintf(stderr, "upager-bench: --programs: no upager-run in "
			"%s/../tools nor in %s\n", dir, dir);
		return 2;
	}
	args[0] = "python3";
	args[1] = script;
	args[2] = "--upager-run";
	args[3] = run;
	args[4] = "--info";
	args[5] = info;
	memcpy(args + 6, argv + 1, (size_t)(argc - 1) * sizeof(*args));
	execvp(args[0], args);
	fprintf(stderr, "upager-bench: --programs: cannot run python3: %s\n",
		strerror(errno));
	return errno == ENOENT ? 127 : 126;
}
