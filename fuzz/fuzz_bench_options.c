/* SPDX-License-Identifier: MIT */
/*
 * upager-bench's command line (bench/options.c, options_parse()).
 *
 * Input: the arguments, NUL-separated.  Properties: a command line that
 * parses gives values within what --help promises (sizes whole pages
 * from one page to 64G, counts within their ranges, a codec named).
 */
#include <errno.h>
#include <getopt.h>

#include "fuzz.h"
#include "options.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *argv[FUZZ_MAX_ARGS], *buf;
	int argc = fuzz_argv(data, size, "upager-bench", argv, &buf);
	struct options o = { .page = 4096 };
	const struct config *cfg = &o.cfg;
	int err;

	optind = 0;		/* getopt starts afresh */
	err = options_parse(argc, argv, &o);
	FUZZ_ASSERT(err == 0 || err == 1 || err == -EINVAL);
	if (err == 0) {
		FUZZ_ASSERT(cfg->faults >= 1 && cfg->faults <= 100000000);
		FUZZ_ASSERT(cfg->size >= 4096 && cfg->size % 4096 == 0 &&
			    cfg->size <= (UINT64_C(64) << 30));
		FUZZ_ASSERT(cfg->snap_size >= 4096 &&
			    cfg->snap_size % 4096 == 0 &&
			    cfg->snap_size <= (UINT64_C(64) << 30));
		FUZZ_ASSERT(cfg->budget >= 4096 && cfg->budget % 4096 == 0 &&
			    cfg->budget <= (UINT64_C(64) << 30));
		FUZZ_ASSERT(cfg->rounds >= 1 && cfg->rounds <= 1000);
		FUZZ_ASSERT(cfg->threads >= 1 && cfg->threads <= MAX_THREADS);
		FUZZ_ASSERT(cfg->swap_dir);
		FUZZ_ASSERT(o.codec == -1 || strcmp(codec_name(o.codec), "?"));
	}
	free(buf);
	return 0;
}
