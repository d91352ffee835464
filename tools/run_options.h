/* SPDX-License-Identifier: MIT */
/*
 * upager-run's command line, apart from main() so that it can be fuzzed
 * (fuzz/fuzz_run_options.c): parsing prints its errors and returns,
 * it never exits, exports or execs.
 */
#ifndef UPAGER_RUN_OPTIONS_H
#define UPAGER_RUN_OPTIONS_H

#include "upager.h"

#include <stdbool.h>

/* As env(1), nice(1) and timeout(1): upager-run failed (a bad option;
 * --strict and upager cannot manage the program), the program cannot be
 * executed, it is not found. */
#define RUN_EXIT_USAGE 125
#define RUN_EXIT_CANNOT_RUN 126
#define RUN_EXIT_NOT_FOUND 127
#define RUN_MAX_ENV 5	/* variables the options set: one slot each */

struct run_args {
	/* UPAGER_* from the environment, then the options: the values,
	 * checked by the library. */
	struct upg_options opts;
	struct {
		const char *var, *value;
	} env[RUN_MAX_ENV];		/* to export, each variable once */
	int nenv;
	int prog;	/* argv index of the program; argc if none (--check) */
	bool check;	/* --check: report, run nothing */
	bool strict;	/* --strict: fail rather than run unmanaged */
};

/* Parse argv into *a.  0: run argv[a->prog] (or check it); 1: --help or
 * --version was answered on stdout; -EINVAL: a bad option or UPAGER_*
 * variable, said on stderr. */
int run_parse(int argc, char **argv, struct run_args *a);

/* Say "upager-run: " fmt (with arg) and where help is, on stderr.
 * Returns -EINVAL. */
int run_usage_error(const char *fmt, const char *arg);

#endif
