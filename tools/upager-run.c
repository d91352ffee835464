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

#include "config.h"
#include "upager.h"

#define LIB_NAME "libupager-preload.so"
#define EXIT_USAGE 2

#ifndef UPAGER_LIBDIR
#define UPAGER_LIBDIR "/usr/local/lib/upager"
#endif
#ifndef UPAGER_PRELOAD_RELDIR
#define UPAGER_PRELOAD_RELDIR "../lib/upager"
#endif

static void usage(FILE *f)
{
	fprintf(f,
		"usage: upager-run [options] [--] program [args...]\n"
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
		"  -h, --help            this text\n"
		"  -V, --version         the version\n"
		"\n"
		"Every upager option can also be set in the environment:\n");
	options_describe(f);
	fprintf(f,
		"\n"
		"The exit status is the program's; 126 or 127 if it cannot be run\n"
		"(as with env(1)), %d for a bad option.\n", EXIT_USAGE);
}

static void die_usage(const char *fmt, const char *arg)
{
	fprintf(stderr, "upager-run: ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, "\nTry 'upager-run --help'.\n");
	exit(EXIT_USAGE);
}

/* Check value with the library's table, then export it. */
static void set_option(struct upg_options *o, const char *var,
		       const char *value)
{
	if (upg_options_set(o, var, value) < 0)
		exit(EXIT_USAGE);	/* the library said why */
	if (setenv(var, value, 1) < 0) {
		perror("upager-run: setenv");
		exit(EXIT_USAGE);
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
 * (read(2) into a malloc'd buffer, a futex in a heap object).
 */
static void refuse_thread_mode(void)
{
	const char *v = getenv("UPAGER_RESOLVE");
	struct upg_options o;

	upg_options_init(&o);
	if (!v)
		return;
	if (upg_options_set(&o, "UPAGER_RESOLVE", v) < 0)
		exit(EXIT_USAGE);	/* the library said why */
	if (o.resolve != UPG_RESOLVE_THREAD)
		return;
	fprintf(stderr,
		"upager-run: UPAGER_RESOLVE=%s is not accepted: with faults "
		"resolved in the faulting thread, system calls that read or "
		"write a page not in memory fail with EFAULT, and an unmodified "
		"program passes its heap to such calls; only programs written "
		"for it (the upager API) can use it. Unset UPAGER_RESOLVE or "
		"set it to 'handler'.\n", v);
	exit(EXIT_USAGE);
}

/* Ours first, then whatever the user preloads already. */
static void set_preload(const char *lib)
{
	const char *old = getenv("LD_PRELOAD");
	size_t len = strlen(lib) + (old ? strlen(old) : 0) + 2;
	char *v = malloc(len);

	if (!v) {
		perror("upager-run");
		exit(EXIT_USAGE);
	}
	snprintf(v, len, "%s%s%s", lib, old && *old ? ":" : "",
		 old ? old : "");
	setenv("LD_PRELOAD", v, 1);
	free(v);
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "mem-limit", required_argument, NULL, 'm' },
		{ "swap-dir", required_argument, NULL, 'd' },
		{ "codec", required_argument, NULL, 'c' },
		{ "stats", optional_argument, NULL, 's' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	struct upg_options o;
	const char *stats = NULL;
	char lib[PATH_MAX], pid[32];
	bool json = false;
	int c;

	upg_options_init(&o);
	/* '+': stop at the program name, its options are its own. */
	while ((c = getopt_long(argc, argv, "+m:d:c:s::jhV", longopts,
				NULL)) != -1) {
		switch (c) {
		case 'm':
			set_option(&o, "UPAGER_MEM_LIMIT", optarg);
			break;
		case 'd':
			check_dir(optarg);
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
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("upager-run %s\n", upg_version());
			return 0;
		default:
			fprintf(stderr, "Try 'upager-run --help'.\n");
			return EXIT_USAGE;
		}
	}
	if (optind >= argc)
		die_usage("%s", "no program to run");
	refuse_thread_mode();
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
	set_preload(lib);
	execvp(argv[optind], &argv[optind]);
	fprintf(stderr, "upager-run: cannot run '%s': %s\n", argv[optind],
		strerror(errno));
	return errno == ENOENT ? 127 : 126;
}
