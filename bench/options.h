/* SPDX-License-Identifier: MIT */
#ifndef UPAGER_BENCH_OPTIONS_H
#define UPAGER_BENCH_OPTIONS_H

#include "bench.h"

/* Which values the command line gave, so --quick does not override them. */
struct given {
	bool faults, size, snap_size, rounds, threads, seed, budget;
};

struct options {
	struct config cfg;
	struct given given;
	size_t page;		/* in: the page size, for --size */
	int codec;		/* -1 unless --codec was given */
	int resolve;		/* -1 unless --resolve was given */
};

int options_parse(int argc, char **argv, struct options *o);
const char *codec_name(int codec);
const char *resolve_name(int resolve);

#endif
