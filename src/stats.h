/* SPDX-License-Identifier: MIT */
/*
 * Counters and latency histograms.
 *
 * Counters are relaxed atomics bumped by the handler threads and the
 * evictor; readers see each one exact but not all at one instant.
 * Histograms are log-linear (HdrHistogram-like): 16 linear sub-buckets per
 * power of two, so a percentile is within 1/32 of the true value, with a
 * fixed 8 KiB per fault kind and a lock-free record.
 */
#ifndef UPAGER_STATS_H
#define UPAGER_STATS_H

#include <stdatomic.h>
#include <stdint.h>

#include "upager.h"

#define HIST_SUB_BITS 4
#define HIST_BUCKETS (64 << HIST_SUB_BITS)

struct hist {
	_Atomic uint64_t bucket[HIST_BUCKETS];
	_Atomic uint64_t count, sum, max;
};

/* The counters kept per runtime and per region. */
struct counters {
	_Atomic uint64_t faults[UPG_FAULT_NKINDS];
	_Atomic uint64_t faults_spurious;
	_Atomic uint64_t pages_zero_mapped;
	_Atomic uint64_t pages_filled;
	_Atomic int64_t pages_resident;
	_Atomic int64_t pages_reserved;	/* zero-mapped, charged (reserve.h) */
	_Atomic uint64_t reservations_reclaimed;
	_Atomic uint64_t pages_vanished;
	_Atomic uint64_t swapin_clustered;
	_Atomic uint64_t evictions_clean, evictions_dirty;
	_Atomic uint64_t refaults;
	_Atomic uint64_t over_budget;
	_Atomic uint64_t poisoned;
	/* Snapshots (snapshot.c). */
	_Atomic int64_t snapshots, snapshot_pages;
	_Atomic uint64_t snapshot_preserved, snapshot_shared;
	_Atomic uint64_t file_pages_read, file_readahead;
	_Atomic uint64_t file_pages_written, file_past_eof;
	_Atomic uint64_t file_pages_kept, file_copy_hits;
};

static inline void counter_add(_Atomic uint64_t *c, uint64_t n)
{
	atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

void hist_record(struct hist *h, uint64_t ns);
/* Summarise: percentiles are bucket midpoints, max and mean exact. */
void hist_summary(const struct hist *h, struct upg_latency *out);
/* The value (bucket midpoint) below which a fraction q of samples lie. */
uint64_t hist_quantile(const struct hist *h, double q);

/* dst = src (dst private to the caller; src may be recorded into). */
void hist_copy(struct hist *dst, const struct hist *src);
/* dst += src, bucket by bucket: histograms of one kind merge exactly. */
void hist_merge(struct hist *dst, const struct hist *src);
/* The largest value bucket b holds (its exclusive bound minus one). */
uint64_t hist_bucket_max(unsigned b);

/* Copy the counters into the public struct (latency left alone). */
void counters_export(const struct counters *c, struct upg_stats *st);

/* Format st as text or JSON into buf; returns the length (truncated to
 * len - 1 if the buffer is short) or -EINVAL for an unknown format. */
int stats_format(const struct upg_stats *st, int format, char *buf,
		 size_t len);

#endif
