/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "run_options.h"

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
		RUN_EXIT_USAGE);
	options_describe(f);
	fprintf(f,
		"\n"
		"Exit status: the program's own (it replaces upager-run, so a\n"
		"shell reports death by signal N as 128+N); %d if upager-run\n"
		"fails (a bad option; --strict and upager cannot manage the\n"
		"program), %d if the program cannot be executed, %d if it is not\n"
		"found, as with env(1).\n", RUN_EXIT_USAGE, RUN_EXIT_CANNOT_RUN,
		RUN_EXIT_NOT_FOUND);
}

int run_usage_error(const char *fmt, const char *arg)
{
	fprintf(stderr, "upager-run: ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, "\nTry 'upager-run --help'.\n");
	return -EINVAL;
}

/* Check value with the library's table (which says what is wrong), then
 * note it for export, replacing an earlier value of the same variable. */
static int set_option(struct run_args *a, const char *var, const char *value)
{
	int i;

	if (upg_options_set(&a->opts, var, value) < 0)
		return -EINVAL;
	for (i = 0; i < a->nenv && strcmp(a->env[i].var, var); i++)
		;
	if (i == a->nenv)
		a->nenv++;
	a->env[i].var = var;
	a->env[i].value = value;
	return 0;
}

static int check_dir(const char *dir)
{
	struct stat st;

	if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode))
		return run_usage_error("--swap-dir '%s' is not a directory", dir);
	if (access(dir, W_OK | X_OK) < 0)
		return run_usage_error("--swap-dir '%s' is not writable", dir);
	return 0;
}

int run_parse(int argc, char **argv, struct run_args *a)
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
	const char *stats = NULL, *swap_dir = NULL;
	bool json = false;
	int c, err = 0;

	memset(a, 0, sizeof(*a));
	upg_options_init(&a->opts);
	/* Variables the user set are checked here too: a bad one is ours
	 * to report, not a program running unmanaged. */
	if (upg_options_from_env(&a->opts) < 0)
		return -EINVAL;		/* the library said why */
	/* '+': stop at the program name, its options are its own. */
	while (!err && (c = getopt_long(argc, argv, "+m:d:c:s::jhV", longopts,
					NULL)) != -1) {
		switch (c) {
		case 'm':
			err = set_option(a, "UPAGER_MEM_LIMIT", optarg);
			break;
		case 'd':
			swap_dir = optarg;
			err = set_option(a, "UPAGER_SWAP_DIR", optarg);
			break;
		case 'c':
			err = set_option(a, "UPAGER_CODEC", optarg);
			break;
		case 's':
			stats = optarg && *optarg ? optarg : "stderr";
			break;
		case 'j':
			json = true;
			break;
		case OPT_CHECK:
			a->check = true;
			break;
		case OPT_STRICT:
			a->strict = true;
			break;
		case 'h':
			usage(stdout);
			return 1;
		case 'V':
			printf("upager-run %s\n", upg_version());
			return 1;
		default:
			fprintf(stderr, "Try 'upager-run --help'.\n");
			return -EINVAL;
		}
	}
	if (err)
		return err;
	a->prog = optind;
	/* --check reports a bad directory, or no program, as a finding. */
	if (a->check)
		return 0;
	if (swap_dir && (err = check_dir(swap_dir)))
		return err;
	if (optind >= argc)
		return run_usage_error("%s", "no program to run");
	if (json) {
		err = set_option(a, "UPAGER_STATS_FORMAT", "json");
		stats = stats ? stats : "stderr";
	}
	if (!err && stats)
		err = set_option(a, "UPAGER_STATS", stats);
	return err;
}
