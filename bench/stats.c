/* SPDX-License-Identifier: MIT */
/* Exact percentiles of the stored samples, and the ratios to the kernel. */
#include <stdlib.h>

#include "bench.h"

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

/*
 * Nearest rank: the smallest sample with at least `per10k` / 10000 of the
 * samples at or below it.  Integer arithmetic, so p99.9 of 1000 samples is
 * the largest one, not a rounding accident; and the percentiles of one
 * sorted array can only be ordered.
 */
static uint64_t rank(const uint64_t *sorted, uint64_t n, uint64_t per10k)
{
	uint64_t k = (n * per10k + 9999) / 10000;

	return sorted[k ? k - 1 : 0];
}

/* Sorts s->ns in place (the plot reads it sorted too).  A sample is one
 * page touched, or one snapshot of a region: bytes_per_sample. */
void summarize(struct side *s, uint64_t bytes_per_sample)
{
	struct summary *m = &s->sum;
	double total = 0;

	*m = (struct summary){ .count = s->n };
	if (!s->available || !s->n)
		return;
	qsort(s->ns, s->n, sizeof(s->ns[0]), cmp_u64);
	for (uint64_t i = 0; i < s->n; i++)
		total += (double)s->ns[i];
	m->p50 = rank(s->ns, s->n, 5000);
	m->p90 = rank(s->ns, s->n, 9000);
	m->p99 = rank(s->ns, s->n, 9900);
	m->p999 = rank(s->ns, s->n, 9990);
	m->max = s->ns[s->n - 1];
	m->mean = total / (double)s->n;
	if (s->wall_ns) {
		m->per_sec = (double)s->n * 1e9 / (double)s->wall_ns;
		m->mb_per_sec = m->per_sec * (double)bytes_per_sample / 1e6;
	}
}

static bool both(const struct row *row)
{
	const struct side *u = &row->side[SIDE_UPAGER];
	const struct side *k = &row->side[SIDE_KERNEL];

	return u->available && k->available && u->sum.count && k->sum.count;
}

/*
 * p50: upager's median over the kernel's, below 1 is faster than the
 * kernel.  throughput: upager's pages per second over the kernel's, above 1
 * is faster.  Only where both sides measured something.
 */
struct ratios row_ratios(const struct row *row)
{
	const struct summary *u = &row->side[SIDE_UPAGER].sum;
	const struct summary *k = &row->side[SIDE_KERNEL].sum;
	struct ratios r = { 0 };

	if (!both(row))
		return r;
	r.has_p50 = k->p50 > 0;
	r.p50 = r.has_p50 ? (double)u->p50 / (double)k->p50 : 0;
	r.has_throughput = k->per_sec > 0 && u->per_sec > 0;
	r.throughput = r.has_throughput ? u->per_sec / k->per_sec : 0;
	return r;
}
