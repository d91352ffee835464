/* SPDX-License-Identifier: MIT */
/*
 * upager-run's command line (tools/run_options.c, run_parse()).
 *
 * Input: the arguments, NUL-separated.  Properties: a command line that
 * parses names a program (--check may not) and gives options the library
 * accepts, each variable exported once with a value it accepts again.
 * This is the parser upager-run's main() calls.
 */
#include <errno.h>
#include <getopt.h>

#include "config.h"
#include "fuzz.h"
#include "log.h"
#include "run_options.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	log_set_level(UPG_LOG_NONE);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *argv[FUZZ_MAX_ARGS], *buf;
	int argc = fuzz_argv(data, size, "upager-run", argv, &buf);
	struct run_args a;
	int err;

	optind = 0;		/* getopt starts afresh */
	err = run_parse(argc, argv, &a);
	FUZZ_ASSERT(err == 0 || err == 1 || err == -EINVAL);
	if (err == 0) {
		struct upg_options again;

		/* --check may name no program; a run always names one. */
		FUZZ_ASSERT(a.prog > 0 && (a.prog < argc ||
					   (a.check && a.prog == argc)));
		FUZZ_ASSERT(a.check || a.prog < argc);
		FUZZ_ASSERT(options_validate(&a.opts) == 0);
		FUZZ_ASSERT(a.nenv >= 0 && a.nenv <= RUN_MAX_ENV);
		upg_options_init(&again);
		for (int i = 0; i < a.nenv; i++) {
			for (int j = 0; j < i; j++)
				FUZZ_ASSERT(strcmp(a.env[i].var,
						   a.env[j].var) != 0);
			FUZZ_ASSERT(upg_options_set(&again, a.env[i].var,
						    a.env[i].value) == 0);
		}
	}
	free(buf);
	return 0;
}
