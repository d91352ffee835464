/* SPDX-License-Identifier: MIT */
/*
 * upager-run's command line, apart from main() so that it can be fuzzed
 * (fuzz/fuzz_run_options.c): parsing prints its errors and returns,
 * it never exits, exports or execs.
 */
#ifndef UPAGER_RUN_OPTIONS_H
#define UPAGER_RUN_OPTIONS_H

#include "upager.h"

#define RUN_EXIT_USAGE 2	/* upager-run's exit status for a bad option */
#define RUN_MAX_ENV 5	/* variables the options set: one slot each */

struct run_args {
	struct upg_options opts;	/* the values, checked by the library */
	struct {
		const char *var, *value;
	} env[RUN_MAX_ENV];		/* to export, each variable once */
	int nenv;
	int prog;			/* argv index of the program */
};

/* Parse argv into *a.  0: run argv[a->prog]; 1: --help or --version was
 * answered on stdout; -EINVAL: a bad option, said on stderr. */
int run_parse(int argc, char **argv, struct run_args *a);

/* Say "upager-run: " fmt (with arg) and where help is, on stderr.
 * Returns -EINVAL. */
int run_usage_error(const char *fmt, const char *arg);

#endif
