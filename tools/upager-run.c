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
#include <getopt.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "config.h"
#include "program.h"
#include "upager.h"

#define LIB_NAME "libupager-preload.so"
/* As env(1), nice(1) and timeout(1). */
#define EXIT_FAIL 125
#define EXIT_CANNOT_RUN 126
#define EXIT_NOT_FOUND 127

#ifndef UPAGER_LIBDIR
#define UPAGER_LIBDIR "/usr/local/lib"
#endif

static void usage(FILE *f)
{
	fprintf(f,
		"usage: upager-run [options] [--] program [args...]\n"
		"       upager-run --check [options] [program]\n"
		"\n"
		"Run program with its heap (malloc) and its large private anonymous\n"
		"mappings managed by upager: zero-filled on demand, kept within the\n"
		"memory limit by a compressed swap store.\n"
		"\n"
		"  -m, --mem-limit SIZE  budget of resident memory plus compressed RAM\n"
		"                        tier (e.g. 256M, 2G); 0 = unlimited\n"
		"  -d, --swap-dir DIR    directory of the (unlinked) swap file\n"
		"  -c, --codec NAME      lz4, zstd or none\n"
		"  -s, --stats[=FILE]    write statistics at exit to FILE (default\n"
		"                        stderr)\n"
		"  -j, --json            statistics as JSON (implies --stats)\n"
		"      --check           say whether this machine, this user and\n"
		"                        program (looked up in PATH) can run under\n"
		"                        upager, one line per finding; exit 0 if\n"
		"                        so, 1 if not\n"
		"      --strict          exit %d instead of running the program\n"
		"                        unmanaged when upager cannot manage it\n"
		"                        (no userfaultfd; statically linked,\n"
		"                        set-uid or Go programs)\n"
		"  -h, --help            this text\n"
		"  -V, --version         the version\n"
		"\n"
		"Every upager option can also be set in the environment:\n",
		EXIT_FAIL);
	options_describe(f);
	fprintf(f,
		"\n"
		"Exit status: the program's own (it replaces upager-run, so a\n"
		"shell reports death by signal N as 128+N); %d if upager-run\n"
		"fails (a bad option; --strict and upager cannot manage the\n"
		"program), %d if the program cannot be executed, %d if it is not\n"
		"found, as with env(1).\n", EXIT_FAIL, EXIT_CANNOT_RUN,
		EXIT_NOT_FOUND);
}

static void die_usage(const char *fmt, const char *arg)
{
	fprintf(stderr, "upager-run: ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, "\nTry 'upager-run --help'.\n");
	exit(EXIT_FAIL);
}

/* Check value with the library's table, then export it. */
static void set_option(struct upg_options *o, const char *var,
		       const char *value)
{
	if (upg_options_set(o, var, value) < 0)
		exit(EXIT_FAIL);	/* the library said why */
	if (setenv(var, value, 1) < 0) {
		perror("upager-run: setenv");
		exit(EXIT_FAIL);
	}
}

static void check_dir(const char *dir)
{
	struct stat st;

	if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode))
		die_usage("--swap-dir '%s' is not a directory", dir);
	if (access(dir, W_OK | X_OK) < 0)
		die_usage("--swap-dir '%s' is not writable", dir);
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
	exit(EXIT_FAIL);
}

/* Ours first, then whatever the user preloads already. */
static void set_preload(const char *lib)
{
	const char *old = getenv("LD_PRELOAD");
	size_t len = strlen(lib) + (old ? strlen(old) : 0) + 2;
	char *v = malloc(len);

	if (!v) {
		perror("upager-run");
		exit(EXIT_FAIL);
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
		exit(EXIT_FAIL);
	}
}

int main(int argc, char **argv)
{
	enum { OPT_CHECK = 256, OPT_STRICT };
	static const struct option longopts[] = {
		{ "mem-limit", required_argument, NULL, 'm' },
		{ "swap-dir", required_argument, NULL, 'd' },
		{ "codec", required_argument, NULL, 'c' },
		{ "stats", optional_argument, NULL, 's' },
		{ "json", no_argument, NULL, 'j' },
		{ "check", no_argument, NULL, OPT_CHECK },
		{ "strict", no_argument, NULL, OPT_STRICT },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	struct upg_options o;
	const char *stats = NULL, *swap_dir = NULL;
	char lib[PATH_MAX], pid[32];
	bool json = false, check = false, strict = false;
	int c;

	upg_options_init(&o);
	/* Variables the user set are checked here too: a bad one is ours
	 * to report, not a program running unmanaged. */
	if (upg_options_from_env(&o) < 0)
		return EXIT_FAIL;	/* the library said why */
	/* '+': stop at the program name, its options are its own. */
	while ((c = getopt_long(argc, argv, "+m:d:c:s::jhV", longopts,
				NULL)) != -1) {
		switch (c) {
		case 'm':
			set_option(&o, "UPAGER_MEM_LIMIT", optarg);
			break;
		case 'd':
			swap_dir = optarg;
			set_option(&o, "UPAGER_SWAP_DIR", optarg);
			break;
		case 'c':
			set_option(&o, "UPAGER_CODEC", optarg);
			break;
		case 's':
			stats = optarg && *optarg ? optarg : "stderr";
			break;
		case 'j':
			json = true;
			break;
		case OPT_CHECK:
			check = true;
			break;
		case OPT_STRICT:
			strict = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("upager-run %s\n", upg_version());
			return 0;
		default:
			fprintf(stderr, "Try 'upager-run --help'.\n");
			return EXIT_FAIL;
		}
	}
	/* --check reports a bad directory as a finding. */
	if (check)
		return check_run(&o, optind < argc ? argv[optind] : NULL,
				 stdout);
	if (swap_dir)
		check_dir(swap_dir);
	if (optind >= argc)
		die_usage("%s", "no program to run");
	refuse_thread_mode(&o);
	if (json) {
		set_option(&o, "UPAGER_STATS_FORMAT", "json");
		stats = stats ? stats : "stderr";
	}
	if (stats) {
		set_option(&o, "UPAGER_STATS", stats);
		snprintf(pid, sizeof(pid), "%ld", (long)getpid());
		setenv("UPAGER_STATS_PID", pid, 1);
	}
	find_lib(lib, sizeof(lib));
	check_before_run(argv[optind], strict);
	set_preload(lib);
	execvp(argv[optind], &argv[optind]);
	fprintf(stderr, "upager-run: cannot run '%s': %s\n", argv[optind],
		strerror(errno));
	return errno == ENOENT ? EXIT_NOT_FOUND : EXIT_CANNOT_RUN;
}
