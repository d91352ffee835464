/* SPDX-License-Identifier: MIT */
/*
 * upager-bench: fault latency of upager next to the kernel doing the same
 * job in the same run.
 *
 * A run is a list of rows (one per scenario, one per thread count for the
 * scaling scenario).  Each row is measured in rounds; in every round both
 * sides touch the same pages of fresh memory, in alternating order, so that
 * the noise of a shared machine falls on both alike.
 */
#ifndef UPAGER_BENCH_H
#define UPAGER_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include <upager.h>

#define MAX_THREADS 64		/* the most handlers upg_options allows */
#define REASON_LEN 512
#define SNAP_TAKES 3		/* snapshots (forks) per round and side */

enum side_id { SIDE_UPAGER, SIDE_KERNEL, NSIDES };

struct config {
	uint64_t faults;	/* touches per random or scaling row */
	uint64_t size;		/* bytes of each sequential pass */
	uint64_t snap_size;	/* region snapshotted (process forked) */
	unsigned rounds;	/* each row is split in this many rounds */
	unsigned threads;	/* most faulting threads of the scaling rows */
	uint64_t seed;
	uint64_t budget;	/* memory limit of the swap scenarios */
	const char *swap_dir;	/* upager's swap file there */
	const char *remote;	/* --remote HOSTS, or NULL */
	bool quick;
	bool idle_poll;		/* hold a CPU latency request of 0 */
	const char *json, *csv, *plot;
	const char *scenarios;	/* comma-separated names, NULL = all */
};

/* Exact percentiles of one side's samples, in nanoseconds. */
struct summary {
	uint64_t count;
	uint64_t p50, p90, p99, p999, max;
	double mean;
	double per_sec;		/* touches per second of wall time */
	double mb_per_sec;	/* touched pages' bytes per second */
};

struct side {
	bool available;
	char reason[REASON_LEN];	/* why not, when !available */
	uint64_t *ns;		/* one latency per touch, up to `count` */
	uint64_t n;		/* samples taken so far */
	uint64_t wall_ns;	/* time the touching threads ran */
	struct summary sum;
};

struct scenario;

struct row {
	const struct scenario *sc;
	char name[32];
	unsigned threads;	/* faulting threads, and upager handlers */
	uint64_t budget;	/* memory limit, for the swap rows */
	uint64_t count;		/* touches asked of each side */
	struct side side[NSIDES];
	struct upg_runtime *rt;	/* the upager side's, while measured */
	/* upager's own view of the faults: how many it served and its
	 * handler-side latency (read of the message to wake). */
	uint64_t handler_faults;
	struct upg_latency handler;
	/* The remote tier, when the row's store had one. */
	const char *remote;
	uint64_t remote_sets, remote_batches, remote_rounds;
	uint64_t swapin_from_remote, remote_lost;
};

/* What both sides of a row touch in one round. */
struct round {
	const struct row *row;
	size_t len;		/* bytes of fresh memory to map */
	const uint64_t *off;	/* offsets to touch, in this order */
	uint64_t n;
	bool write;
};

struct bench {
	struct config cfg;
	struct upg_options opts;	/* template of every row's runtime */
	char no_uffd[REASON_LEN];	/* set when userfaultfd is unusable */
	size_t page;
	uint64_t clock_ns;		/* cost of one clock read */
	struct row *rows;
	size_t nrows;
};

/*
 * One entry per scenario.  A side without a function is unavailable for
 * the reason given; when the part of upager it needs lands, the entry gets
 * its functions and nothing else changes.
 */
struct scenario {
	const char *name;
	const char *title;
	bool write;
	bool sequential;	/* pages in order, else shuffled windows */
	bool scaling;		/* one row per thread count */
	bool take;		/* one sample per snapshot of snap_size bytes */
	/* Swap scenarios: the working set, in quarters of the budget (0 for
	 * the first-touch ones), and how it is touched. */
	unsigned ws_quarters;
	enum { TOUCH_UNIFORM, TOUCH_SCAN, TOUCH_HOT } pattern;
	bool remote;		/* upager's store has the remote tier */
	bool remote_given;	/* ...when --remote gives one */
	int kind;		/* enum upg_fault_kind upager serves */
	/* Measure one round of this side into s, 0 or -errno with s->reason
	 * set. */
	int (*upager)(struct row *row, const struct round *rd, struct side *s);
	int (*kernel)(struct row *row, const struct round *rd, struct side *s);
	const char *upager_missing, *kernel_missing;
};

extern const struct scenario scenarios[];
extern const size_t nscenarios;
const struct scenario *scenario_find(const char *name, size_t len);

/* swap.c: both sides of the swap scenarios. */
int swap_upager(struct row *row, const struct round *rd, struct side *s);
int swap_kernel(struct row *row, const struct round *rd, struct side *s);
/* Measure one round in a child process in a memory cgroup limited to the
 * row's budget (with zram as swap if `swap`); map() runs in the child and
 * gives the memory to touch.  Also the file rows' kernel side. */
typedef int (*cgroup_map_fn)(const struct round *rd, void *arg, char **base);
int kernel_in_cgroup(struct row *row, const struct round *rd,
		     struct side *s, cgroup_map_fn map, void *arg, bool swap);
/* Working-set bytes of a swap row, and touches of one full scan of it. */
uint64_t swap_ws(const struct bench *b, const struct scenario *sc);

/* remote.c: the hosts of the row's remote tier, NULL for none; *reason
 * says why a row that wants one has none. */
const char *remote_hosts(const struct bench *b, const struct scenario *sc,
			 const char **reason);

/* measure.c */
static inline uint64_t clock_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t clock_cost_ns(void);
void *alloc_populated(size_t len);
void free_populated(void *p, size_t len);
int touch_round(const struct round *rd, char *base, struct side *s);
int sample_room(const struct round *rd, const struct side *s);
void sample_add(struct side *s, uint64_t ns);
void side_unavailable(struct side *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* stats.c */
void summarize(struct side *s, uint64_t bytes_per_sample);
struct ratios {
	double p50, throughput;
	bool has_p50, has_throughput;
};
struct ratios row_ratios(const struct row *row);

/* report.c */
void report_table(const struct bench *b);
int report_json(const struct bench *b, const char *path);
int report_csv(const struct bench *b, const char *path);
const char *side_name(int side);
void report_info(FILE *f, size_t page);

/* programs.c: --programs, real programs run by programs.py. */
int programs_run(int argc, char **argv, size_t page);

/* plot.c */
int report_plot(const struct bench *b, const char *path);

#endif
