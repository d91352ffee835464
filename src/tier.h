/* SPDX-License-Identifier: MIT */
/*
 * The RAM tier's share of the budget, adapted to the swap-ins the program
 * causes.
 *
 * The budget pays for resident pages and for the compressed RAM tier
 * alike.  Moving budget from resident pages to the tier leaves fewer pages
 * mapped (more accesses fault, each a cheap RAM-tier swap-in) but holds c
 * times as many stored pages in RAM (c the compression ratio), so fewer
 * swap-ins read the swap file or the cluster (each a far costlier read).
 * For accesses spread over a working set larger than the budget, growing
 * the tier pays while far reads are common and c is well above 1; a hot
 * set that fits the budget wants the tier small, and then swap-ins come
 * mostly from RAM.  So, once per window with enough swap-ins:
 *
 *  - far (disk + remote) reads at least a quarter of the RAM-tier ones,
 *    and stored pages compress 1.5 to 1 or better: grow the tier by an
 *    eighth of the budget;
 *  - far reads under a sixteenth of the RAM-tier ones, or pages that do
 *    not compress: shrink it by as much;
 *
 * between UPAGER_RAM_TIER (where it starts) and UPAGER_RAM_TIER_MAX
 * percent of the budget.  The evictor keeps resident + RAM tier within the
 * budget either way: a bigger tier makes it evict more resident pages.
 * A fixed share cannot be right everywhere: half the budget beats a
 * quarter where faults are cheap (idle CPUs polling), and loses where each
 * fault waits for a halted CPU to wake and the hot set no longer fits
 * (README, "Budget and swap store").  Adapting on far reads grows the tier
 * only where disk reads are common, which a hot set that fits does not
 * cause.  Measured (README): swap-random 0.32-0.35x the kernel's
 * throughput with a fixed quarter, 0.38-0.47x adapting from a quarter to
 * half, 0.55-0.59x with a fixed half; but sort, whose merge passes have
 * locality the swap-in counts do not show, 30% slower adapting.  So it is
 * opt-in (UPAGER_RAM_TIER_MAX above UPAGER_RAM_TIER; the default keeps
 * the tier fixed).
 *
 * Only the evictor thread calls tier_adapt.
 */
#ifndef UPAGER_TIER_H
#define UPAGER_TIER_H

#include <stdint.h>

#include "store.h"

struct upg_options;

struct tier {
	uint64_t min, max, step;	/* bytes of the RAM tier's limit */
	uint64_t limit;			/* now */
	uint64_t win_start;		/* ns */
	uint64_t near0, far0;		/* swap-ins counted at its start */
	uint64_t in0, stored0;		/* bytes put, and their size, then */
};

/* The most the RAM tier may grow to with these options, in bytes (the
 * store's ram_max). */
uint64_t tier_max(const struct upg_options *o);

/* Start at UPAGER_RAM_TIER percent of the budget. */
void tier_init(struct tier *t, const struct upg_options *o);

/* At each evictor wake-up: adapt the limit once a window is over. */
void tier_adapt(struct tier *t, struct store *st);

#endif
