/* SPDX-License-Identifier: MIT */
/* The results as a terminal table, JSON and CSV. */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "bench.h"
#include "options.h"

/* "Linux 6.18.0 x86_64": three utsname fields and their spaces. */
#define MACHINE_LEN (3 * sizeof(((struct utsname *)0)->release) + 3)
#define IDLE_STATE_LEN 150	/* cpuidle's driver, governor, poll time */
#define IDLE_LEN (IDLE_STATE_LEN + 42)

/* The numbers of one side, as JSON keys and CSV columns alike. */
static const struct field {
	const char *name;
	size_t offset;
	bool is_double;
} fields[] = {
#define U64(name, f) { name, offsetof(struct summary, f), false }
#define DBL(name, f) { name, offsetof(struct summary, f), true }
	U64("count", count), U64("p50_ns", p50), U64("p90_ns", p90),
	U64("p99_ns", p99), U64("p999_ns", p999), U64("max_ns", max),
	DBL("mean_ns", mean), DBL("per_sec", per_sec),
	DBL("mb_per_sec", mb_per_sec),
#undef U64
#undef DBL
};

#define NFIELDS (sizeof(fields) / sizeof(fields[0]))

static void print_field(FILE *f, const struct summary *m,
			const struct field *fd)
{
	const char *p = (const char *)m + fd->offset;

	if (fd->is_double)
		fprintf(f, "%.1f", *(const double *)p);
	else
		fprintf(f, "%llu", (unsigned long long)*(const uint64_t *)p);
}

/* The first line of a sysfs file, without its newline; "" if none. */
static void sysfs_line(const char *path, char *buf, size_t len)
{
	FILE *f = fopen(path, "r");

	buf[0] = '\0';
	if (f && fgets(buf, (int)len, f))
		buf[strcspn(buf, "\n")] = '\0';
	if (f)
		fclose(f);
}

/*
 * What an idle CPU does on this machine.  Every user-space fault hands off
 * twice between threads; where idle CPUs halt at once (a VM's haltpoll
 * driver with guest_halt_poll_ns 0), each hand-off waits for a halted CPU
 * to wake, which the kernel's own fault never does.
 */
static void cpu_idle_state(char *buf, size_t len)
{
	char drv[32], gov[32], poll_ns[32];

	sysfs_line("/sys/devices/system/cpu/cpuidle/current_driver", drv,
		   sizeof(drv));
	sysfs_line("/sys/devices/system/cpu/cpuidle/current_governor_ro", gov,
		   sizeof(gov));
	if (!gov[0])
		sysfs_line("/sys/devices/system/cpu/cpuidle/current_governor",
			   gov, sizeof(gov));
	sysfs_line("/sys/module/haltpoll/parameters/guest_halt_poll_ns",
		   poll_ns, sizeof(poll_ns));
	snprintf(buf, len, "cpuidle driver %s, governor %s%s%s",
		 drv[0] ? drv : "none", gov[0] ? gov : "none",
		 poll_ns[0] ? ", guest_halt_poll_ns " : "", poll_ns);
}

/* The state, and whether this run keeps idle CPUs polling. */
static void cpu_idle(const struct bench *b, char *buf, size_t len)
{
	char state[IDLE_STATE_LEN];

	cpu_idle_state(state, sizeof(state));
	snprintf(buf, len, "%s; idle CPUs %s", state,
		 b->cfg.idle_poll ? "poll (--idle-poll)" : "may sleep");
}

const char *side_name(int side)
{
	return side == SIDE_UPAGER ? "upager" : "kernel";
}

static void machine(char *buf, size_t len)
{
	struct utsname u;

	if (uname(&u))
		snprintf(buf, len, "Linux");
	else
		snprintf(buf, len, "%s %s %s", u.sysname, u.release, u.machine);
}

/* ------------------------------------------------------------------ */
/* Terminal                                                            */
/* ------------------------------------------------------------------ */

static void print_header(const struct bench *b)
{
	char mach[MACHINE_LEN], idle[IDLE_LEN];

	machine(mach, sizeof(mach));
	printf("upager-bench %s (libupager %s) on %s, %ld CPUs, %zu-byte "
	       "pages\n", BENCH_VERSION, upg_version(), mach,
	       sysconf(_SC_NPROCESSORS_ONLN), b->page);
	printf("THP off on both sides (MADV_NOHUGEPAGE); upager fault-around "
	       "%u pages, codec %s, %s\n",
	       b->opts.fault_around, codec_name(b->opts.codec),
	       b->opts.resolve == UPG_RESOLVE_THREAD
		       ? "faults resolved in the faulting thread (--resolve "
			 "thread)"
		       : "one handler per faulting thread");
	cpu_idle(b, idle, sizeof(idle));
	printf("%s\n", idle);
	printf("%u rounds per scenario, sides alternating; random scenarios "
	       "touch one page per %u-page window\n", b->cfg.rounds,
	       b->opts.fault_around);
	printf("Latency per touch, timed by the touching thread, in us (each "
	       "includes one clock read: %llu ns)\n\n",
	       (unsigned long long)b->clock_ns);
	printf("%-13s %-6s %9s %8s %8s %8s %8s %9s %11s %8s %6s %6s\n",
	       "scenario", "side", "count", "p50", "p90", "p99", "p99.9",
	       "max", "pages/s", "MB/s", "x p50", "x tput");
}

static void print_ratio(double r, bool ok)
{
	if (ok)
		printf(" %6.2f", r);
	else
		printf(" %6s", "-");
}

static void print_side(const struct row *row, int side)
{
	const struct side *s = &row->side[side];
	const struct summary *m = &s->sum;
	struct ratios r = row_ratios(row);

	printf("%-13s %-6s", side == SIDE_UPAGER ? row->name : "",
	       side_name(side));
	if (!s->available) {
		printf(" unavailable: %s\n", s->reason);
		return;
	}
	printf(" %9llu %8.2f %8.2f %8.2f %8.2f %9.2f %11.0f %8.1f",
	       (unsigned long long)m->count, m->p50 / 1e3, m->p90 / 1e3,
	       m->p99 / 1e3, m->p999 / 1e3, m->max / 1e3, m->per_sec,
	       m->mb_per_sec);
	if (side == SIDE_UPAGER) {
		print_ratio(r.p50, r.has_p50);
		print_ratio(r.throughput, r.has_throughput);
	}
	printf("\n");
}

static void print_legend(const struct bench *b)
{
	const struct scenario *last = NULL;

	printf("\nx p50 = upager p50 / kernel p50 (below 1: upager faster); "
	       "x tput = upager pages/s / kernel pages/s (above 1: upager "
	       "faster)\n");
	for (size_t i = 0; i < b->nrows; i++) {
		if (b->rows[i].sc == last)
			continue;
		last = b->rows[i].sc;
		printf("  %-13s %s\n", last->name, last->title);
	}
}

/* What the rows with a remote tier sent and fetched, over all rounds. */
static void print_remote(const struct bench *b)
{
	for (size_t i = 0; i < b->nrows; i++) {
		const struct row *row = &b->rows[i];

		if (!row->remote)
			continue;
		printf("%s remote tier (%s): %llu objects set in %llu eviction "
		       "batches (one round trip each), %llu network round "
		       "trips in all (gets included), %llu swap-ins from the "
		       "cluster, %llu lost\n", row->name, row->remote,
		       (unsigned long long)row->remote_sets,
		       (unsigned long long)row->remote_batches,
		       (unsigned long long)row->remote_rounds,
		       (unsigned long long)row->swapin_from_remote,
		       (unsigned long long)row->remote_lost);
	}
}

void report_table(const struct bench *b)
{
	print_header(b);
	for (size_t i = 0; i < b->nrows; i++)
		for (int side = 0; side < NSIDES; side++)
			print_side(&b->rows[i], side);
	print_legend(b);
	print_remote(b);
	fflush(stdout);
}

/* ------------------------------------------------------------------ */
/* JSON                                                                */
/* ------------------------------------------------------------------ */

static void json_string(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			fprintf(f, "\\%c", *s);
		else if ((unsigned char)*s < 0x20)
			fprintf(f, "\\u%04x", *s);
		else
			fputc(*s, f);
	}
	fputc('"', f);
}

/* What upager saw of the same faults, next to what the threads saw. */
static void json_handler(FILE *f, const struct row *row)
{
	const struct upg_latency *l = &row->handler;

	fprintf(f, ", \"handler\": {\"kind\": \"%s\", \"faults\": %llu, "
		"\"p50_ns\": %llu, \"p99_ns\": %llu}",
		upg_fault_kind_name(row->sc->kind),
		(unsigned long long)row->handler_faults,
		(unsigned long long)l->p50_ns, (unsigned long long)l->p99_ns);
}

static void json_side(FILE *f, const struct row *row, int side)
{
	const struct side *s = &row->side[side];

	fprintf(f, "{\"available\": %s", s->available ? "true" : "false");
	if (!s->available) {
		fprintf(f, ", \"reason\": ");
		json_string(f, s->reason);
	}
	for (size_t i = 0; s->available && i < NFIELDS; i++) {
		fprintf(f, ", \"%s\": ", fields[i].name);
		print_field(f, &s->sum, &fields[i]);
	}
	if (s->available && side == SIDE_UPAGER)
		json_handler(f, row);
	fputc('}', f);
}

static void json_ratio(FILE *f, const char *name, double r, bool ok)
{
	if (ok)
		fprintf(f, "\"%s\": %.4f", name, r);
	else
		fprintf(f, "\"%s\": null", name);
}

static void json_row(FILE *f, const struct row *row)
{
	struct ratios r = row_ratios(row);

	fprintf(f, "    {\"name\": ");
	json_string(f, row->name);
	fprintf(f, ", \"scenario\": ");
	json_string(f, row->sc->name);
	fprintf(f, ", \"title\": ");
	json_string(f, row->sc->title);
	fprintf(f, ", \"threads\": %u, \"handlers\": %u, \"asked\": %llu,\n",
		row->threads, row->threads, (unsigned long long)row->count);
	for (int side = 0; side < NSIDES; side++) {
		fprintf(f, "     \"%s\": ", side_name(side));
		json_side(f, row, side);
		fprintf(f, ",\n");
	}
	if (row->remote) {
		fprintf(f, "     \"remote\": {\"hosts\": ");
		json_string(f, row->remote);
		fprintf(f, ", \"sets\": %llu, \"batches\": %llu, "
			"\"round_trips\": %llu, \"swapins\": %llu, "
			"\"lost\": %llu},\n",
			(unsigned long long)row->remote_sets,
			(unsigned long long)row->remote_batches,
			(unsigned long long)row->remote_rounds,
			(unsigned long long)row->swapin_from_remote,
			(unsigned long long)row->remote_lost);
	}
	fprintf(f, "     \"ratio\": {");
	json_ratio(f, "p50", r.p50, r.has_p50);
	fprintf(f, ", ");
	json_ratio(f, "throughput", r.throughput, r.has_throughput);
	fprintf(f, "}}");
}

/* What every report of upager-bench opens with: the tool and the machine. */
static void json_machine(FILE *f, size_t page)
{
	char mach[MACHINE_LEN];

	machine(mach, sizeof(mach));
	fprintf(f, "\"tool\": \"upager-bench\", \"version\": \"%s\", "
		"\"libupager\": \"%s\",\n  \"machine\": ", BENCH_VERSION,
		upg_version());
	json_string(f, mach);
	fprintf(f, ", \"cpus\": %ld, \"page_size\": %zu",
		sysconf(_SC_NPROCESSORS_ONLN), page);
}

/* The same for programs.py, which writes the --programs report, with what
 * idle CPUs do (it says itself whether it keeps them polling). */
void report_info(FILE *f, size_t page)
{
	char idle[IDLE_STATE_LEN];

	cpu_idle_state(idle, sizeof(idle));
	fputc('{', f);
	json_machine(f, page);
	fprintf(f, ", \"cpu_idle_state\": ");
	json_string(f, idle);
	fputc('}', f);
}

static void json_config(FILE *f, const struct bench *b)
{
	const struct config *c = &b->cfg;
	char idle[IDLE_LEN];

	cpu_idle(b, idle, sizeof(idle));
	fprintf(f, "  ");
	json_machine(f, b->page);
	fprintf(f, ", \"thp\": \"off on both sides (MADV_NOHUGEPAGE)\", "
		"\"clock_read_ns\": %llu,\n  \"cpu_idle\": ",
		(unsigned long long)b->clock_ns);
	json_string(f, idle);
	fprintf(f, ",\n");
	fprintf(f, "  \"config\": {\"quick\": %s, \"idle_poll\": %s, "
		"\"faults\": %llu, \"size\": "
		"%llu, \"snapshot_size\": %llu, \"snapshot_takes\": %u, "
		"\"rounds\": %u, \"threads\": %u, \"seed\": %llu, "
		"\"codec\": \"%s\", \"resolve\": \"%s\", "
		"\"fault_around\": %u, \"budget\": %llu, \"swap_dir\": ",
		c->quick ? "true" : "false", c->idle_poll ? "true" : "false",
		(unsigned long long)c->faults,
		(unsigned long long)c->size,
		(unsigned long long)c->snap_size, SNAP_TAKES, c->rounds, c->threads,
		(unsigned long long)c->seed, codec_name(b->opts.codec),
		resolve_name(b->opts.resolve), b->opts.fault_around, (unsigned long long)c->budget);
	json_string(f, c->swap_dir);
	fprintf(f, "},\n");
}

static int close_report(FILE *f, const char *path)
{
	int err = ferror(f) ? -EIO : 0;

	if (fclose(f) && !err)
		err = -errno;
	if (err)
		fprintf(stderr, "upager-bench: writing %s failed: %s\n", path,
			strerror(-err));
	return err;
}

static FILE *open_report(const char *path)
{
	FILE *f = fopen(path, "w");

	if (!f)
		fprintf(stderr, "upager-bench: cannot write %s: %s\n", path,
			strerror(errno));
	return f;
}

int report_json(const struct bench *b, const char *path)
{
	FILE *f = open_report(path);

	if (!f)
		return -EIO;
	fprintf(f, "{\n");
	json_config(f, b);
	fprintf(f, "  \"scenarios\": [\n");
	for (size_t i = 0; i < b->nrows; i++) {
		json_row(f, &b->rows[i]);
		fprintf(f, "%s\n", i + 1 < b->nrows ? "," : "");
	}
	fprintf(f, "  ]\n}\n");
	return close_report(f, path);
}

/* ------------------------------------------------------------------ */
/* CSV                                                                 */
/* ------------------------------------------------------------------ */

/* Quoted, with quotes doubled (RFC 4180). */
static void csv_string(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		if (*s == '"')
			fputc('"', f);
		fputc(*s, f);
	}
	fputc('"', f);
}

/* Ratios stand on the upager line only. */
static void csv_ratio(FILE *f, double r, bool ok)
{
	if (ok)
		fprintf(f, ",%.4f", r);
	else
		fputc(',', f);
}

static void csv_side(FILE *f, const struct row *row, int side)
{
	const struct side *s = &row->side[side];
	struct ratios r = row_ratios(row);
	bool up = side == SIDE_UPAGER;

	fprintf(f, "%s,%s,%u,%s,%d,", row->name, row->sc->name, row->threads,
		side_name(side), s->available);
	csv_string(f, s->available ? "" : s->reason);
	for (size_t i = 0; i < NFIELDS; i++) {
		fputc(',', f);
		if (s->available)
			print_field(f, &s->sum, &fields[i]);
	}
	csv_ratio(f, r.p50, up && r.has_p50);
	csv_ratio(f, r.throughput, up && r.has_throughput);
	fputc('\n', f);
}

int report_csv(const struct bench *b, const char *path)
{
	FILE *f = open_report(path);

	if (!f)
		return -EIO;
	fprintf(f, "name,scenario,threads,side,available,reason");
	for (size_t i = 0; i < NFIELDS; i++)
		fprintf(f, ",%s", fields[i].name);
	fprintf(f, ",ratio_p50,ratio_throughput\n");
	for (size_t i = 0; i < b->nrows; i++)
		for (int side = 0; side < NSIDES; side++)
			csv_side(f, &b->rows[i], side);
	return close_report(f, path);
}
