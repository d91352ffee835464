/* SPDX-License-Identifier: MIT */
/* The RAM tier's share of the budget: see tier.h.  Evictor thread only. */
#include "log.h"
#include "tier.h"
#include "upager.h"
#include "util.h"

/* A window ends after WINDOW_SWAPINS swap-ins, or after WINDOW_NS with
 * at least MIN_SWAPINS (fewer tell nothing): a program that swaps much
 * gets there in milliseconds, one that swaps little is left alone. */
#define WINDOW_SWAPINS 128
#define WINDOW_NS 1000000000ull
#define MIN_SWAPINS 32
#define STEPS 8		/* a step is this fraction of the budget */

uint64_t tier_max(const struct upg_options *o)
{
	/* No RAM tier asked for: none grows. */
	return o->ram_tier ? o->mem_limit / 100 *
				     MAX(o->ram_tier_max, o->ram_tier)
			   : 0;
}

void tier_init(struct tier *t, const struct upg_options *o)
{
	*t = (struct tier){ 0 };
	t->min = t->limit = o->mem_limit / 100 * o->ram_tier;
	t->max = tier_max(o);
	t->step = o->mem_limit / STEPS;
}

void tier_adapt(struct tier *t, struct store *st)
{
	struct store_stats ss;
	uint64_t now = now_ns(), near0, far0, near, far, in, stored;
	uint64_t limit = t->limit;
	bool packs;

	if (t->max <= t->min)
		return;
	store_reads(st, &near0, &far0);
	near = near0 - t->near0;
	far = far0 - t->far0;
	if (near + far < WINDOW_SWAPINS && now - t->win_start < WINDOW_NS)
		return;
	t->win_start = now;
	t->near0 = near0;
	t->far0 = far0;
	if (near + far < MIN_SWAPINS)
		return;
	store_get_stats(st, &ss);
	/* How well what is stored now compresses: this window's puts, or
	 * all of them if it had none. */
	in = ss.bytes_in - t->in0;
	stored = ss.bytes_stored - t->stored0;
	if (!stored) {
		in = ss.bytes_in;
		stored = ss.bytes_stored;
	}
	t->in0 = ss.bytes_in;
	t->stored0 = ss.bytes_stored;
	/* Compressed 1.5 to 1 or better: 2 * in >= 3 * stored. */
	packs = 2 * in >= 3 * stored;
	if (far * 4 >= near && packs)
		limit = MIN(limit + t->step, t->max);
	else if (far * 16 < near || !packs)
		limit = limit > t->min + t->step ? limit - t->step : t->min;
	log_debug("tier: swap-ins %llu from RAM, %llu far; %llu bytes put as "
		  "%llu; RAM tier limit %llu",
		  (unsigned long long)near, (unsigned long long)far,
		  (unsigned long long)in, (unsigned long long)stored,
		  (unsigned long long)limit);
	if (limit != t->limit) {
		t->limit = limit;
		store_set_ram_limit(st, limit);
	}
}
