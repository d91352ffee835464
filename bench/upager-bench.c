/* SPDX-License-Identifier: MIT */
/*
 * upager-bench: what a user-space fault costs on this machine and kernel,
 * next to the kernel doing the same job in the same run.
 *
 *   upager-bench                       every scenario, a table
 *   upager-bench --quick --json r.json under 30 seconds, and JSON
 *   upager-bench --programs [OPTION]... real programs (programs.c)
 *
 * See --help for the options and bench.h for how a run is organised.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"
#include "options.h"

/* Random touches the kernel and upager sides share, per round. */
static uint64_t splitmix(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/*
 * The touches of one round.  Sequential: every page in order.  Random: one
 * page in each fault-around window, windows shuffled, so that every touch
 * is a fault on both sides (upager maps a read fault's whole window).
 */
/* Swap rows: touches spread over the working set by the row's pattern. */
static void plan_swap_round(const struct bench *b, const struct row *row,
			    uint64_t n, uint64_t seed, uint64_t *off,
			    struct round *rd)
{
	uint64_t pages = swap_ws(b, row->sc) / b->page, hot = pages / 5;

	for (uint64_t i = 0; i < n; i++) {
		uint64_t x = splitmix(&seed);

		switch (row->sc->pattern) {
		case TOUCH_SCAN:
			off[i] = i % pages;
			break;
		case TOUCH_HOT:
			off[i] = x % 5 ? x % hot : hot + x % (pages - hot);
			break;
		default:
			off[i] = x % pages;
		}
		off[i] *= b->page;
	}
	*rd = (struct round){ .row = row, .len = pages * b->page, .off = off,
			      .n = n, .write = false };
}

static void plan_round(const struct bench *b, const struct row *row,
		       unsigned r, uint64_t *off, struct round *rd)
{
	uint64_t seed = b->cfg.seed ^ ((uint64_t)(row - b->rows) << 32) ^ r;
	uint64_t stride = row->sc->sequential ? 1 : b->opts.fault_around;
	uint64_t n = row->count / b->cfg.rounds + (r < row->count %
							   b->cfg.rounds);

	if (row->sc->ws_quarters) {
		plan_swap_round(b, row, n, seed, off, rd);
		return;
	}
	if (row->sc->take) {	/* n snapshots of one populated region */
		*rd = (struct round){ .row = row, .len = b->cfg.snap_size,
				      .off = off, .n = n };
		return;
	}
	for (uint64_t i = 0; i < n; i++)
		off[i] = i;
	for (uint64_t i = n; !row->sc->sequential && i > 1; i--) {
		uint64_t j = splitmix(&seed) % i, t = off[i - 1];

		off[i - 1] = off[j];
		off[j] = t;
	}
	for (uint64_t i = 0; i < n; i++)
		off[i] = (off[i] * stride + splitmix(&seed) % stride) * b->page;
	*rd = (struct round){ .row = row, .len = n * stride * b->page,
			      .off = off, .n = n, .write = row->sc->write };
}

static bool is_tty;

static void progress(const struct bench *b, const struct row *row,
		     unsigned r, int side)
{
	if (!is_tty)
		return;
	fprintf(stderr, "\r\033[K[%zu/%zu] %-12s round %u/%u: %s",
		(size_t)(row - b->rows) + 1, b->nrows, row->name, r + 1,
		b->cfg.rounds, side_name(side));
}

/* Without a terminal, one line per row, so logs stay readable. */
static void progress_done(const struct bench *b, const struct row *row)
{
	if (is_tty)
		fprintf(stderr, "\r\033[K");
	else
		fprintf(stderr, "upager-bench: [%zu/%zu] %s done\n",
			(size_t)(row - b->rows) + 1, b->nrows, row->name);
}

typedef int (*side_fn)(struct row *, const struct round *, struct side *);

static side_fn side_function(const struct row *row, int side)
{
	return side == SIDE_UPAGER ? row->sc->upager : row->sc->kernel;
}

/* Decide whether a side can run and give it room for its samples. */
static void side_prepare(const struct bench *b, struct row *row, int side)
{
	struct side *s = &row->side[side];
	const struct scenario *sc = row->sc;

	s->available = true;
	/* Without userfaultfd, that is the reason for every upager side. */
	if (side == SIDE_UPAGER && b->no_uffd[0]) {
		side_unavailable(s, "%s", b->no_uffd);
		return;
	}
	if (!side_function(row, side)) {
		side_unavailable(s, "%s", side == SIDE_UPAGER
				 ? sc->upager_missing : sc->kernel_missing);
		return;
	}
	s->ns = alloc_populated(row->count * sizeof(s->ns[0]));
	if (!s->ns)
		side_unavailable(s, "no memory for %llu samples",
				 (unsigned long long)row->count);
}

static int runtime_start(const struct bench *b, struct row *row)
{
	struct upg_options o = b->opts;
	struct side *s = &row->side[SIDE_UPAGER];
	int err;

	if (!s->available)
		return 0;
	o.handlers = row->threads;
	if (row->sc->ws_quarters) {
		const char *why;

		o.mem_limit = b->cfg.budget;
		o.swap_dir = b->cfg.swap_dir;
		o.remote = row->remote = remote_hosts(b, row->sc, &why);
		if (why) {
			side_unavailable(s, "%s", why);
			return -ENOTSUP;
		}
	}
	err = upg_runtime_create(&o, &row->rt);
	if (err)
		side_unavailable(s, "upg_runtime_create: %s (%s)",
				 strerror(-err), upg_last_error());
	return err;
}

/* Keep upager's own count and latency of the row's faults, then stop. */
static void runtime_stop(struct row *row)
{
	struct upg_stats st = { .size = sizeof(st) };

	if (row->rt && !upg_stats_get(row->rt, &st)) {
		row->handler_faults = st.faults[row->sc->kind];
		row->handler = st.latency[row->sc->kind];
		row->remote_sets += st.remote_sets;
		row->remote_batches += st.remote_batches;
		row->remote_rounds += st.remote_rounds;
		row->swapin_from_remote += st.swapin_from_remote;
		row->remote_lost += st.remote_lost;
	}
	upg_runtime_destroy(row->rt);
	row->rt = NULL;
}

static void run_side(const struct bench *b, struct row *row, unsigned r,
		     const struct round *rd, int side)
{
	struct side *s = &row->side[side];

	if (!s->available)
		return;
	progress(b, row, r, side);
	side_function(row, side)(row, rd, s);
}

/* Sides alternate which goes first, so neither always follows the other's
 * unmapping or always meets a warm cache. */
static int run_row(struct bench *b, struct row *row)
{
	uint64_t most = row->count / b->cfg.rounds + 1;
	uint64_t *off = alloc_populated(most * sizeof(*off));
	struct round rd;

	if (!off)
		return -ENOMEM;
	for (int side = 0; side < NSIDES; side++)
		side_prepare(b, row, side);
	runtime_start(b, row);
	for (unsigned r = 0; r < b->cfg.rounds; r++) {
		plan_round(b, row, r, off, &rd);
		run_side(b, row, r, &rd, r % 2 ? SIDE_KERNEL : SIDE_UPAGER);
		run_side(b, row, r, &rd, r % 2 ? SIDE_UPAGER : SIDE_KERNEL);
	}
	runtime_stop(row);
	for (int side = 0; side < NSIDES; side++)
		summarize(&row->side[side], row->sc->take ? b->cfg.snap_size
								   : b->page);
	free_populated(off, most * sizeof(*off));
	progress_done(b, row);
	return 0;
}

static bool selected(const struct config *cfg, const struct scenario *sc)
{
	const char *p = cfg->scenarios;

	if (!p)
		return true;
	do {
		size_t len = strcspn(p, ",");

		if (scenario_find(p, len) == sc)
			return true;
		p += len;
	} while (*p++);
	return false;
}

static void add_row(struct bench *b, const struct scenario *sc,
		    unsigned threads)
{
	struct row *row = &b->rows[b->nrows++];

	row->sc = sc;
	row->threads = threads;
	row->budget = b->cfg.budget;
	row->count = sc->sequential ? b->cfg.size / b->page * b->cfg.rounds
				    : b->cfg.faults;
	if (sc->pattern == TOUCH_SCAN)	/* the working set once a round */
		row->count = swap_ws(b, sc) / b->page * b->cfg.rounds;
	if (sc->take)
		row->count = SNAP_TAKES * b->cfg.rounds;
	if (sc->scaling)
		snprintf(row->name, sizeof(row->name), "%s-%u", sc->name,
			 threads);
	else
		snprintf(row->name, sizeof(row->name), "%s", sc->name);
}

/*
 * The scaling scenario runs 1, 2, 4, ... threads and then --threads: at
 * most log2(MAX_THREADS) + 1 rows for a scenario.
 */
static int make_rows(struct bench *b)
{
	b->rows = calloc(nscenarios * 7, sizeof(*b->rows));
	if (!b->rows)
		return -ENOMEM;
	for (size_t i = 0; i < nscenarios; i++) {
		const struct scenario *sc = &scenarios[i];
		unsigned t = 1;

		if (!selected(&b->cfg, sc))
			continue;
		for (; sc->scaling && t < b->cfg.threads; t *= 2)
			add_row(b, sc, t);
		add_row(b, sc, sc->scaling ? b->cfg.threads : 1);
	}
	return 0;
}

/* Leave a reason instead of failing each row when uffd is missing. */
static void probe_uffd(struct bench *b)
{
	struct upg_options o = b->opts;
	struct upg_runtime *rt;
	int err;

	o.log_level = UPG_LOG_NONE;
	err = upg_runtime_create(&o, &rt);
	if (!err) {
		upg_runtime_destroy(rt);
		return;
	}
	snprintf(b->no_uffd, sizeof(b->no_uffd),
		 "userfaultfd is unavailable: %s",
		 upg_last_error()[0] ? upg_last_error() : strerror(-err));
}

/*
 * --idle-poll: while the descriptor stays open, the kernel keeps every
 * idle CPU in its polling state (PM QoS, as tuned's latency-performance
 * profile does), so waking a thread costs no exit from a halted CPU.  Kept
 * open until the process exits.
 */
static int hold_idle_poll(void)
{
	int32_t zero = 0;
	int fd = open("/dev/cpu_dma_latency", O_WRONLY | O_CLOEXEC);

	if (fd < 0 || write(fd, &zero, sizeof(zero)) != sizeof(zero)) {
		fprintf(stderr, "upager-bench: --idle-poll: cannot hold a CPU "
			"latency request of 0 on /dev/cpu_dma_latency: %s%s\n",
			strerror(errno), errno == EACCES ? " (needs root)" : "");
		if (fd >= 0)
			close(fd);
		return -errno;
	}
	return 0;
}

static int setup(struct bench *b, int argc, char **argv)
{
	struct options o = { .page = (size_t)sysconf(_SC_PAGESIZE) };
	int err = options_parse(argc, argv, &o);

	if (err)
		return err;
	b->cfg = o.cfg;
	b->page = o.page;
	if (b->cfg.idle_poll && hold_idle_poll() < 0)
		return -EINVAL;
	upg_options_init(&b->opts);
	if (upg_options_from_env(&b->opts) < 0)
		return -EINVAL;	/* the library named the variable */
	if (o.codec >= 0)
		b->opts.codec = o.codec;
	if (o.resolve >= 0)
		b->opts.resolve = o.resolve;
	probe_uffd(b);
	b->clock_ns = clock_cost_ns();
	return make_rows(b);
}

static int write_outputs(const struct bench *b)
{
	int err = 0;

	if (b->cfg.json && report_json(b, b->cfg.json) < 0)
		err = 1;
	if (b->cfg.csv && report_csv(b, b->cfg.csv) < 0)
		err = 1;
	if (b->cfg.plot && report_plot(b, b->cfg.plot) < 0)
		err = 1;
	return err;
}

int main(int argc, char **argv)
{
	struct bench b = { 0 };
	int err;

	if (argc > 1 && !strcmp(argv[1], "--programs"))
		return programs_run(argc - 1, argv + 1,
				    (size_t)sysconf(_SC_PAGESIZE));
	err = setup(&b, argc, argv);
	if (err)
		return err > 0 ? 0 : 2;
	is_tty = isatty(STDERR_FILENO);
	for (size_t i = 0; i < b.nrows && !err; i++) {
		err = run_row(&b, &b.rows[i]);
		if (err)
			fprintf(stderr, "upager-bench: %s: %s\n",
				b.rows[i].name, strerror(-err));
	}
	if (!err) {
		report_table(&b);
		err = write_outputs(&b);
	}
	free(b.rows);
	return err ? 1 : 0;
}
