/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "stats.h"
#include "util.h"

static unsigned bucket_of(uint64_t v)
{
	unsigned msb;

	if (v < (1u << HIST_SUB_BITS))
		return (unsigned)v;
	msb = 63u - (unsigned)__builtin_clzll(v);
	return ((msb - HIST_SUB_BITS + 1) << HIST_SUB_BITS) +
	       (unsigned)((v >> (msb - HIST_SUB_BITS)) &
			  ((1u << HIST_SUB_BITS) - 1));
}

/* Midpoint of bucket b: the inverse of bucket_of. */
static uint64_t bucket_mid(unsigned b)
{
	unsigned group = b >> HIST_SUB_BITS, sub, shift;

	if (group == 0)
		return b;
	sub = b & ((1u << HIST_SUB_BITS) - 1);
	shift = group - 1;
	return (((uint64_t)(1u << HIST_SUB_BITS) + sub) << shift) +
	       ((UINT64_C(1) << shift) >> 1);
}

uint64_t hist_bucket_max(unsigned b)
{
	unsigned group = b >> HIST_SUB_BITS;

	if (group == 0)
		return b;
	/* The midpoint plus half the width, minus one. */
	return bucket_mid(b) + ((UINT64_C(1) << (group - 1)) -
				((UINT64_C(1) << (group - 1)) >> 1)) - 1;
}

#define LOAD(x) atomic_load_explicit(&(x), memory_order_relaxed)

void hist_merge(struct hist *dst, const struct hist *src)
{
	for (unsigned b = 0; b < HIST_BUCKETS; b++)
		atomic_init(&dst->bucket[b],
			    LOAD(dst->bucket[b]) + LOAD(src->bucket[b]));
	atomic_init(&dst->count, LOAD(dst->count) + LOAD(src->count));
	atomic_init(&dst->sum, LOAD(dst->sum) + LOAD(src->sum));
	atomic_init(&dst->max, MAX(LOAD(dst->max), LOAD(src->max)));
}

void hist_copy(struct hist *dst, const struct hist *src)
{
	memset(dst, 0, sizeof(*dst));
	hist_merge(dst, src);
}

void hist_record(struct hist *h, uint64_t ns)
{
	uint64_t max = atomic_load_explicit(&h->max, memory_order_relaxed);

	atomic_fetch_add_explicit(&h->bucket[bucket_of(ns)], 1,
				  memory_order_relaxed);
	atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&h->sum, ns, memory_order_relaxed);
	while (ns > max && !atomic_compare_exchange_weak_explicit(
				   &h->max, &max, ns, memory_order_relaxed,
				   memory_order_relaxed))
		;
}

uint64_t hist_quantile(const struct hist *h, double q)
{
	uint64_t total = 0, seen = 0, rank;

	for (unsigned b = 0; b < HIST_BUCKETS; b++)
		total += atomic_load_explicit(&h->bucket[b],
					      memory_order_relaxed);
	if (total == 0)
		return 0;
	rank = (uint64_t)(q * (double)total);
	if (rank >= total)
		rank = total - 1;
	for (unsigned b = 0; b < HIST_BUCKETS; b++) {
		seen += atomic_load_explicit(&h->bucket[b],
					     memory_order_relaxed);
		if (seen > rank) {
			uint64_t mid = bucket_mid(b);
			uint64_t max = atomic_load_explicit(
				&h->max, memory_order_relaxed);

			return mid < max ? mid : max;
		}
	}
	return atomic_load_explicit(&h->max, memory_order_relaxed);
}

void hist_summary(const struct hist *h, struct upg_latency *out)
{
	out->count = atomic_load_explicit(&h->count, memory_order_relaxed);
	out->p50_ns = hist_quantile(h, 0.50);
	out->p90_ns = hist_quantile(h, 0.90);
	out->p99_ns = hist_quantile(h, 0.99);
	out->p999_ns = hist_quantile(h, 0.999);
	out->max_ns = atomic_load_explicit(&h->max, memory_order_relaxed);
	out->mean_ns = out->count ? atomic_load_explicit(&h->sum,
							 memory_order_relaxed) /
					    out->count
				  : 0;
}

void counters_export(const struct counters *c, struct upg_stats *st)
{
	int64_t resident = LOAD(c->pages_resident);

	st->faults_total = 0;
	for (int k = 0; k < UPG_FAULT_NKINDS; k++) {
		st->faults[k] = LOAD(c->faults[k]);
		st->faults_total += st->faults[k];
	}
	st->faults_spurious = LOAD(c->faults_spurious);
	st->pages_zero_mapped = LOAD(c->pages_zero_mapped);
	st->pages_filled = LOAD(c->pages_filled);
	st->pages_resident = resident > 0 ? (uint64_t)resident : 0;
	st->pages_reserved = (uint64_t)MAX(LOAD(c->pages_reserved), 0);
	st->reservations_reclaimed = LOAD(c->reservations_reclaimed);
	st->pages_vanished = LOAD(c->pages_vanished);
	st->swapin_clustered = LOAD(c->swapin_clustered);
	st->evictions_clean = LOAD(c->evictions_clean);
	st->evictions_dirty = LOAD(c->evictions_dirty);
	st->refaults = LOAD(c->refaults);
	st->over_budget = LOAD(c->over_budget);
	st->poisoned = LOAD(c->poisoned);
	st->snapshots = (uint64_t)MAX(LOAD(c->snapshots), 0);
	st->snapshot_pages = (uint64_t)MAX(LOAD(c->snapshot_pages), 0);
	st->snapshot_preserved = LOAD(c->snapshot_preserved);
	st->snapshot_shared = LOAD(c->snapshot_shared);
	st->file_pages_read = LOAD(c->file_pages_read);
	st->file_readahead = LOAD(c->file_readahead);
	st->file_pages_written = LOAD(c->file_pages_written);
	st->file_past_eof = LOAD(c->file_past_eof);
	st->file_pages_kept = LOAD(c->file_pages_kept);
	st->file_copy_hits = LOAD(c->file_copy_hits);
	st->managed_peak_bytes = LOAD(c->managed_peak);
}

/* A bounded appender: formatting never overruns, the length is kept. */
struct out {
	char *buf;
	size_t len, pos;
};

__attribute__((format(printf, 2, 3))) static void put(struct out *o,
						      const char *fmt, ...)
{
	va_list ap;
	int n;

	if (o->pos + 1 >= o->len)
		return;
	va_start(ap, fmt);
	n = vsnprintf(o->buf + o->pos, o->len - o->pos, fmt, ap);
	va_end(ap);
	if (n > 0)
		o->pos = MIN(o->pos + (size_t)n, o->len - 1);
}

/* The scalar counters, in print order, with their names. */
#define SCALARS(X)                                                            \
	X(regions) X(faults_total) X(faults_spurious) X(pages_zero_mapped)    \
	X(pages_filled) X(pages_resident) X(pages_reserved)                    \
	X(reservations_reclaimed) X(pagetable_bytes)                           \
	X(evictions_clean) X(evictions_dirty) X(store_bytes_in)                \
	X(store_bytes_stored) X(store_ram_bytes) X(store_disk_bytes)           \
	X(swapin_clustered) X(refaults) X(over_budget) X(poisoned)            \
	X(pages_vanished) X(snapshots)                                         \
	X(snapshot_pages) X(snapshot_preserved) X(snapshot_shared)            \
	X(file_pages_read) X(file_readahead) X(file_pages_written)            \
	X(file_past_eof) X(file_pages_kept) X(file_copy_hits)                 \
	X(managed_peak_bytes) X(process_peak_rss)                \
	X(store_ram_objects) X(store_disk_objects) X(store_remote_objects)    \
	X(store_remote_bytes) X(swapin_from_ram) X(swapin_from_disk)          \
	X(swapin_from_remote) X(remote_sets) X(remote_refused)                \
	X(remote_gets) X(remote_misses) X(remote_errors) X(remote_timeouts)   \
	X(remote_batches) X(remote_rounds) X(remote_lost) X(seal_errors) \
	X(store_promoted) X(store_ram_limit) X(probation_pages)                \
	X(probation_aged) X(swapin_from_probation) X(swapin_segment_reused)

static double ratio(const struct upg_stats *st)
{
	return st->store_bytes_stored
		       ? (double)st->store_bytes_in / (double)st->store_bytes_stored
		       : 0.0;
}

static void format_text(const struct upg_stats *st, struct out *o)
{
	put(o, "upager statistics\n");
#define TEXT(f) put(o, "  %-20s %llu\n", #f, (unsigned long long)st->f);
	SCALARS(TEXT)
#undef TEXT
	put(o, "  %-20s %.2f\n", "compression_ratio", ratio(st));
	/* How much of the process upager governed: memory it does not
	 * manage (code, stacks, other allocators, its own tables) is the
	 * rest of the peak. */
	put(o, "  managed: %.1f MiB at most of peak RSS %.1f MiB (%.0f%%)\n",
	    (double)st->managed_peak_bytes / (1 << 20),
	    (double)st->process_peak_rss / (1 << 20),
	    st->process_peak_rss ? 100.0 * (double)st->managed_peak_bytes /
					   (double)st->process_peak_rss
				 : 0.0);
	put(o, "  %-12s %10s %9s %9s %9s %9s %9s (ns)\n", "fault kind",
	    "count", "p50", "p90", "p99", "p99.9", "max");
	for (int k = 0; k < UPG_FAULT_NKINDS; k++) {
		const struct upg_latency *l = &st->latency[k];

		put(o, "  %-12s %10llu %9llu %9llu %9llu %9llu %9llu\n",
		    upg_fault_kind_name(k), (unsigned long long)st->faults[k],
		    (unsigned long long)l->p50_ns,
		    (unsigned long long)l->p90_ns,
		    (unsigned long long)l->p99_ns,
		    (unsigned long long)l->p999_ns,
		    (unsigned long long)l->max_ns);
	}
}

static void format_json(const struct upg_stats *st, struct out *o)
{
	put(o, "{");
#define JSON(f) put(o, "\"%s\":%llu,", #f, (unsigned long long)st->f);
	SCALARS(JSON)
#undef JSON
	put(o, "\"compression_ratio\":%.3f,\"faults\":{", ratio(st));
	for (int k = 0; k < UPG_FAULT_NKINDS; k++) {
		const struct upg_latency *l = &st->latency[k];

		put(o,
		    "%s\"%s\":{\"count\":%llu,\"p50_ns\":%llu,\"p90_ns\":%llu,"
		    "\"p99_ns\":%llu,\"p999_ns\":%llu,\"max_ns\":%llu,"
		    "\"mean_ns\":%llu}",
		    k ? "," : "", upg_fault_kind_name(k),
		    (unsigned long long)st->faults[k],
		    (unsigned long long)l->p50_ns,
		    (unsigned long long)l->p90_ns,
		    (unsigned long long)l->p99_ns,
		    (unsigned long long)l->p999_ns,
		    (unsigned long long)l->max_ns,
		    (unsigned long long)l->mean_ns);
	}
	put(o, "}}\n");
}

int stats_format(const struct upg_stats *st, int format, char *buf,
		 size_t len)
{
	struct out o = { buf, len, 0 };

	if (len == 0)
		return -EINVAL;
	buf[0] = '\0';
	if (format == UPG_STATS_TEXT)
		format_text(st, &o);
	else if (format == UPG_STATS_JSON)
		format_json(st, &o);
	else
		return -EINVAL;
	return (int)o.pos;
}

static const char *const kind_names[UPG_FAULT_NKINDS] = {
	[UPG_FAULT_ZERO_READ] = "zero_read",
	[UPG_FAULT_ZERO_WRITE] = "zero_write",
	[UPG_FAULT_SWAPIN_RAM] = "swapin_ram",
	[UPG_FAULT_SWAPIN_DISK] = "swapin_disk",
	[UPG_FAULT_FILE] = "file",
	[UPG_FAULT_WP] = "wp",
};

const char *upg_fault_kind_name(int kind)
{
	return kind >= 0 && kind < UPG_FAULT_NKINDS ? kind_names[kind] : "?";
}
