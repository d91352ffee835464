/* SPDX-License-Identifier: MIT */
/*
 * upager-stat: the statistics of programs running under upager, read from
 * the files their runtimes refresh while they run (src/statsfile.h).
 *
 *   upager-stat [--json | --prometheus] [--watch[=SECONDS]] [PID]
 *
 * A process may hold several runtimes (one file each): they are shown as
 * one, counters summed and latency histograms merged.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "statsfile.h"
#include "upager.h"
#include "util.h"

#define EXIT_TROUBLE 1	/* the process cannot be read */
#define EXIT_USAGE 2
#define MAX_FILES 8

/* One process: its runtimes' records merged. */
struct proc {
	pid_t pid;
	char command[64];
	unsigned runtimes;
	char files[MAX_FILES][48];
	uint64_t started_ns, updated_ns, mem_limit, store_pages;
	double rate;
	struct upg_stats st;
	struct hist hist[UPG_FAULT_NKINDS];
};

struct scan {
	const char *dir;
	int dirfd;
	pid_t only;		/* 0: every process */
	struct proc *procs;
	size_t n, cap;
	char problem[512];	/* why a file of `only` could not be read */
};

static const char *prog = "upager-stat";

static void usage(FILE *f)
{
	fprintf(f,
"usage: upager-stat [options] [PID]\n"
"\n"
"Show what upager is doing in running programs.  Each upager runtime (a\n"
"program under upager-run, or one embedding the library) refreshes its\n"
"statistics every %d ms in a file only its user can read; this reads them.\n"
"\n"
"With no PID, list your processes running under upager, one line each:\n"
"  PID       process id\n"
"  COMMAND   program name\n"
"  BUDGET    memory limit (UPAGER_MEM_LIMIT), - for none\n"
"  RESIDENT  managed memory resident now\n"
"  STORED    pages held in the swap store now, at their uncompressed size\n"
"  RATIO     compression ratio of the pages stored, - before any\n"
"  FAULTS/S  faults upager served per second, over the last second\n"
"With PID, print that process's statistics: the counters below, sizes,\n"
"and per fault kind the count and latency percentiles.  A process with\n"
"several runtimes shows as one: counters summed, histograms merged.\n"
"\n"
"  -j, --json             JSON: one object for PID, an array of them for\n"
"                         the list (per process: the counters below, sizes\n"
"                         in bytes, and \"stats\" as UPAGER_STATS_FORMAT=json)\n"
"  -p, --prometheus       Prometheus text exposition format: upager_ prefix,\n"
"                         base units (bytes, seconds), counters end in _total,\n"
"                         labels pid and command, and the histogram\n"
"                         upager_fault_latency_seconds{kind,le}\n"
"  -w, --watch[=SECONDS]  print again every SECONDS (default 1, from 0.25):\n"
"                         with PID one line per interval like vmstat (the\n"
"                         first since the program started), until it ends;\n"
"                         without, the list redrawn; with --json one object\n"
"                         per line\n"
"  -n, --count=N          with --watch, stop after N updates\n"
"  -d, --dir=DIR          read the files in DIR\n"
"  -h, --help             this text\n"
"  -V, --version          the version\n"
"\n"
"Counters, named as in the kernel's /proc/vmstat where one exists:\n"
"  pgfault             faults upager served, every kind\n"
"  pgmajfault          faults that brought contents back: swap-ins (from the\n"
"                      compressed RAM tier or the swap file) and file reads\n"
"  pswpin              pages brought back from the swap store, with a fault\n"
"                      or clustered with one\n"
"  pswpout             pages written out when evicted: to the swap store\n"
"                      (dirty pages of shared file regions: to their file)\n"
"  workingset_refault  evicted pages faulted back soon after: thrashing\n"
"Fault kinds: zero_read, zero_write (first touch), swapin_ram, swapin_disk,\n"
"file, wp (write-protect: snapshots).  Latency is from the handler reading\n"
"the fault to waking the faulting thread; the Prometheus buckets come from\n"
"upager's log-linear histogram, exact to 1/16 of a value.\n"
"\n"
"Where the files are: DIR, else $UPAGER_STATS_DIR, else /run/upager for\n"
"root, $XDG_RUNTIME_DIR/upager for other users (/tmp/upager-UID without\n"
"it): the directory is 0700, each file <pid>-<n>.stats 0600.  A program\n"
"run with UPAGER_STATS_DIR=off publishes nothing.  Files left by killed\n"
"processes are removed when seen.  Root given the PID of another user's\n"
"process looks where that process publishes.\n"
"\n"
"Exit status: 0; %d if PID is not running under upager, is not yours, or\n"
"its statistics cannot be read; %d for a bad option.\n",
		PUBLISH_MS, EXIT_TROUBLE, EXIT_USAGE);
}

__attribute__((format(printf, 2, 3), noreturn)) static void die(int status,
								const char *fmt,
								...)
{
	va_list ap;

	fprintf(stderr, "%s: ", prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	if (status == EXIT_USAGE)
		fprintf(stderr, "Try 'upager-stat --help'.\n");
	exit(status);
}

/* ------------------------------------------------------------------ */
/* Reading                                                             */
/* ------------------------------------------------------------------ */

/* Add one runtime's record to its process. */
static void merge(struct proc *p, const struct statsfile *f,
		  const char *name)
{
	const uint64_t *src = (const uint64_t *)&f->data.stats.faults;
	uint64_t *dst = (uint64_t *)&p->st.faults;
	size_t words = (sizeof(p->st) - offsetof(struct upg_stats, faults)) /
		       sizeof(uint64_t);

	if (p->runtimes == 0) {
		p->pid = f->pid;
		snprintf(p->command, sizeof(p->command), "%s", f->command);
		p->started_ns = f->started_ns;
		p->st.size = sizeof(p->st);
	}
	if (p->runtimes < MAX_FILES)
		snprintf(p->files[p->runtimes], sizeof(p->files[0]), "%s",
			 name);
	p->runtimes++;
	p->started_ns = MIN(p->started_ns, f->started_ns);
	p->updated_ns = MAX(p->updated_ns, f->data.updated_ns);
	p->mem_limit += f->data.mem_limit;
	p->store_pages += f->data.store_pages;
	p->rate += f->data.fault_rate;
	/* Every field after `regions` is a uint64_t counter: sum them all;
	 * the latency summaries are computed again from the merged
	 * histograms below. */
	for (size_t i = 0; i < words; i++)
		dst[i] += src[i];
	p->st.regions += f->data.stats.regions;
	for (int k = 0; k < UPG_FAULT_NKINDS; k++) {
		hist_merge(&p->hist[k], &f->data.hist[k]);
		hist_summary(&p->hist[k], &p->st.latency[k]);
	}
}

static struct proc *proc_of(struct scan *s, pid_t pid)
{
	for (size_t i = 0; i < s->n; i++)
		if (s->procs[i].pid == pid)
			return &s->procs[i];
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 8;
		struct proc *t = realloc(s->procs, cap * sizeof(*t));

		if (!t)
			die(EXIT_TROUBLE, "out of memory");
		s->procs = t;
		s->cap = cap;
	}
	memset(&s->procs[s->n], 0, sizeof(s->procs[0]));
	s->procs[s->n].pid = pid;
	return &s->procs[s->n++];
}

static int read_one(const char *name, void *arg)
{
	struct scan *s = arg;
	struct statsfile *f;
	pid_t pid;
	unsigned n;
	int err;

	if (!statsfile_name(name, &pid, &n) || (s->only && pid != s->only))
		return 0;
	f = malloc(sizeof(*f));
	if (!f)
		die(EXIT_TROUBLE, "out of memory");
	err = statsfile_read(s->dirfd, name, f);
	if (err == -EPROTO)
		snprintf(s->problem, sizeof(s->problem),
			 "%s/%s is statistics format %.8s version %u (%u "
			 "bytes); this upager-stat (%s) reads %s version %d "
			 "(%zu bytes): use the upager-stat of the upager the "
			 "program runs", s->dir, name,
			 f->magic[0] ? f->magic : "?", f->version, f->size,
			 upg_version(), STATSFILE_MAGIC, STATSFILE_VERSION,
			 sizeof(*f));
	else if (err == -EAGAIN)
		snprintf(s->problem, sizeof(s->problem),
			 "%s/%s is never left complete: its writer seems to "
			 "have died while writing it", s->dir, name);
	else if (err && err != -ENOENT)	/* ENOENT: removed meanwhile */
		snprintf(s->problem, sizeof(s->problem), "cannot read %s/%s: %s",
			 s->dir, name, strerror(-err));
	else if (!err && f->pid == pid)
		merge(proc_of(s, pid), f, name);
	free(f);
	return 0;
}

/* Read the files of dir (of process `only`, or all) into s. */
static int scan_dir(struct scan *s, const char *dir, pid_t only)
{
	int err;

	memset(s->problem, 0, sizeof(s->problem));
	s->dir = dir;
	s->only = only;
	s->n = 0;
	statsfile_clean(dir);
	s->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (s->dirfd < 0)
		return -errno;
	err = dir_each(s->dirfd, read_one, s);
	close(s->dirfd);
	return err;
}

/* ------------------------------------------------------------------ */
/* Which directory, and is this pid one we may read                    */
/* ------------------------------------------------------------------ */

/* The value of `name` in the environment process pid started with. */
static bool environ_of(pid_t pid, const char *name, char *out, size_t len)
{
	char path[64], buf[65536];
	size_t nlen = strlen(name);
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/environ", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = '\0';
	for (char *e = buf; e < buf + n; e += strlen(e) + 1) {
		if (strncmp(e, name, nlen) == 0 && e[nlen] == '=') {
			snprintf(out, len, "%s", e + nlen + 1);
			return true;
		}
	}
	return false;
}

static void command_of(pid_t pid, char *out, size_t len)
{
	char path[64];
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/comm", (int)pid);
	snprintf(out, len, "?");
	f = fopen(path, "re");
	if (f) {
		if (fgets(out, (int)len, f))
			out[strcspn(out, "\n")] = '\0';
		fclose(f);
	}
}

static void resolve_dir(char *out, size_t len, const char *opt, uid_t uid,
			const char *env_dir, const char *xdg)
{
	const char *dir = opt ? opt : env_dir;

	if (dir && strcmp(dir, STATSFILE_OFF) == 0 && !opt)
		die(EXIT_TROUBLE, "UPAGER_STATS_DIR=off: statistics are not "
		    "published; unset it, or give --dir");
	if (statsdir_path(out, len, dir, uid, xdg) < 0)
		die(EXIT_USAGE, "the statistics directory name is too long");
}

/* Check that pid exists and is ours to read; find its directory. */
static void dir_for_pid(pid_t pid, const char *opt, char *dir, size_t len)
{
	char path[64], comm[64], env_dir[PATH_MAX], xdg[PATH_MAX];
	bool has_env, has_xdg;
	struct stat st;

	snprintf(path, sizeof(path), "/proc/%d", (int)pid);
	if (stat(path, &st) < 0)
		die(EXIT_TROUBLE, "no process with pid %d", (int)pid);
	command_of(pid, comm, sizeof(comm));
	if (geteuid() != 0 && st.st_uid != geteuid())
		die(EXIT_TROUBLE, "process %d (%s) belongs to another user "
		    "(uid %u): only that user or root can read its upager "
		    "statistics", (int)pid, comm, (unsigned)st.st_uid);
	if (opt || st.st_uid == geteuid()) {
		resolve_dir(dir, len, opt, geteuid(),
			    getenv("UPAGER_STATS_DIR"),
			    getenv("XDG_RUNTIME_DIR"));
		return;
	}
	/* Root, and another user's process: where that process publishes. */
	has_env = environ_of(pid, "UPAGER_STATS_DIR", env_dir, sizeof(env_dir));
	has_xdg = environ_of(pid, "XDG_RUNTIME_DIR", xdg, sizeof(xdg));
	if (has_env && strcmp(env_dir, STATSFILE_OFF) == 0)
		die(EXIT_TROUBLE, "process %d (%s) runs with "
		    "UPAGER_STATS_DIR=off: it publishes no statistics",
		    (int)pid, comm);
	resolve_dir(dir, len, NULL, st.st_uid, has_env ? env_dir : NULL,
		    has_xdg ? xdg : NULL);
}

/* ------------------------------------------------------------------ */
/* Values                                                              */
/* ------------------------------------------------------------------ */

/* The kernel's names for what upager counts (/proc/vmstat). */
static uint64_t pgmajfault(const struct upg_stats *st)
{
	return st->faults[UPG_FAULT_SWAPIN_RAM] +
	       st->faults[UPG_FAULT_SWAPIN_DISK] + st->faults[UPG_FAULT_FILE];
}

static uint64_t pswpin(const struct upg_stats *st)
{
	return st->faults[UPG_FAULT_SWAPIN_RAM] +
	       st->faults[UPG_FAULT_SWAPIN_DISK] + st->swapin_clustered;
}

static double ratio(const struct upg_stats *st)
{
	return st->store_bytes_stored ? (double)st->store_bytes_in /
						(double)st->store_bytes_stored
				      : 0.0;
}

enum mtype { COUNTER, GAUGE };

/* The headline values of JSON and Prometheus output, in that order. */
struct metric {
	const char *name;	/* JSON key; Prometheus upager_<name>[_total] */
	enum mtype type;
	const char *help;
	double (*get)(const struct proc *p);
};

#define GET(fn, expr)                                                         \
	static double fn(const struct proc *p)                               \
	{                                                                     \
		return (double)(expr);                                       \
	}
GET(m_pgfault, p->st.faults_total)
GET(m_pgmajfault, pgmajfault(&p->st))
GET(m_pswpin, pswpin(&p->st))
GET(m_pswpout, p->st.evictions_dirty)
GET(m_refault, p->st.refaults)
GET(m_budget, p->mem_limit)
GET(m_resident, p->st.pages_resident * PAGE_SIZE)
GET(m_reserved, p->st.pages_reserved * PAGE_SIZE)
GET(m_stored, p->store_pages * PAGE_SIZE)
GET(m_ram, p->st.store_ram_bytes)
GET(m_disk, p->st.store_disk_bytes)
GET(m_ratio, ratio(&p->st))
GET(m_pagetable, p->st.pagetable_bytes)
GET(m_regions, p->st.regions)
GET(m_runtimes, p->runtimes)
GET(m_clean, p->st.evictions_clean)
GET(m_dirty, p->st.evictions_dirty)
GET(m_spurious, p->st.faults_spurious)
GET(m_over, p->st.over_budget)
GET(m_poisoned, p->st.poisoned)
GET(m_file_read, p->st.file_pages_read)
GET(m_file_written, p->st.file_pages_written)
GET(m_snapshots, p->st.snapshots)
GET(m_started, (double)p->started_ns / 1e9)
#undef GET

static const struct metric metrics[] = {
	{ "pgfault", COUNTER, "Page faults served by upager, every kind.",
	  m_pgfault },
	{ "pgmajfault", COUNTER, "Faults that brought contents back: "
	  "swap-ins and file reads.", m_pgmajfault },
	{ "pswpin", COUNTER, "Pages brought back from the swap store.",
	  m_pswpin },
	{ "pswpout", COUNTER, "Pages written out when evicted.",
	  m_pswpout },
	{ "workingset_refault", COUNTER, "Evicted pages faulted back soon "
	  "after.", m_refault },
	{ "evictions_clean", COUNTER, "Pages evicted without a write "
	  "(their stored copy was current).", m_clean },
	{ "evictions_dirty", COUNTER, "Pages evicted and written.", m_dirty },
	{ "faults_spurious", COUNTER, "Faults already resolved by another "
	  "thread.", m_spurious },
	{ "over_budget", COUNTER, "Times the budget had to be exceeded.",
	  m_over },
	{ "poisoned_pages", COUNTER, "Pages whose data was lost (SIGBUS on "
	  "access).", m_poisoned },
	{ "file_pages_read", COUNTER, "File pages read and installed.",
	  m_file_read },
	{ "file_pages_written", COUNTER, "Pages written back to their file.",
	  m_file_written },
	{ "budget_bytes", GAUGE, "Memory limit, 0 for none.", m_budget },
	{ "resident_bytes", GAUGE, "Managed memory resident.", m_resident },
	{ "reserved_bytes", GAUGE, "Zero-mapped pages charged to the budget "
	  "ahead of their first write.", m_reserved },
	{ "stored_bytes", GAUGE, "Pages held in the swap store, at their "
	  "uncompressed size.", m_stored },
	{ "store_ram_bytes", GAUGE, "Compressed bytes in the RAM tier.",
	  m_ram },
	{ "store_disk_bytes", GAUGE, "Compressed bytes in the swap file.",
	  m_disk },
	{ "compression_ratio", GAUGE, "Page bytes stored over their "
	  "compressed size.", m_ratio },
	{ "pagetable_bytes", GAUGE, "Memory of the software page tables.",
	  m_pagetable },
	{ "regions", GAUGE, "Managed regions.", m_regions },
	{ "snapshots", GAUGE, "Snapshots alive.", m_snapshots },
	{ "runtimes", GAUGE, "upager runtimes in the process.", m_runtimes },
	{ "start_time_seconds", GAUGE, "When the first runtime started, in "
	  "seconds since the epoch.", m_started },
};

/* "12.3M": binary units, as free -h. */
static const char *size_str(char *buf, size_t len, uint64_t bytes)
{
	static const char units[] = "BKMGTP";
	double v = (double)bytes;
	int u = 0;

	while (v >= 1024 && u < 5) {
		v /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(buf, len, "%lluB", (unsigned long long)bytes);
	else
		snprintf(buf, len, v < 10 ? "%.1f%c" : "%.0f%c", v, units[u]);
	return buf;
}

/* ------------------------------------------------------------------ */
/* Output                                                              */
/* ------------------------------------------------------------------ */

static void json_string(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c < 0x20)
			printf("\\u%04x", c);
		else
			putchar(c);
	}
	putchar('"');
}

static void print_json(const struct proc *p, const char *dir)
{
	static char buf[16384];
	int len;

	printf("{\"pid\":%d,\"command\":", (int)p->pid);
	json_string(p->command);
	printf(",\"files\":[");
	for (unsigned i = 0; i < MIN(p->runtimes, MAX_FILES); i++) {
		char path[PATH_MAX + 64];

		snprintf(path, sizeof(path), "%s/%s", dir, p->files[i]);
		printf("%s", i ? "," : "");
		json_string(path);
	}
	printf("],\"updated\":%.3f,\"faults_per_second\":%.1f",
	       (double)p->updated_ns / 1e9, p->rate);
	for (size_t i = 0; i < ARRAY_SIZE(metrics); i++)
		printf(",\"%s\":%.15g", metrics[i].name, metrics[i].get(p));
	len = stats_format(&p->st, UPG_STATS_JSON, buf, sizeof(buf));
	while (len > 0 && buf[len - 1] == '\n')
		buf[--len] = '\0';
	printf(",\"stats\":%s}", buf);
}

static void prom_labels(const struct proc *p)
{
	printf("pid=\"%d\",command=\"", (int)p->pid);
	for (const char *s = p->command; *s; s++) {
		if (*s == '"' || *s == '\\')
			printf("\\%c", *s);
		else if (*s == '\n')
			printf("\\n");
		else
			putchar(*s);
	}
	putchar('"');
}

static void prom_family(const char *name, const char *type, const char *help)
{
	printf("# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* Bucket bounds of upager_fault_latency_seconds, in seconds. */
static const double prom_le[] = {
	1e-6, 2e-6, 5e-6, 1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4,
	1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 0.1, 0.2, 0.5, 1,
};

static void prom_histogram(const struct proc *p, int k)
{
	const struct hist *h = &p->hist[k];
	uint64_t cum = 0;
	unsigned b = 0;

	for (size_t i = 0; i <= ARRAY_SIZE(prom_le); i++) {
		bool inf = i == ARRAY_SIZE(prom_le);

		/* Whole buckets at or below the bound. */
		for (; b < HIST_BUCKETS &&
		       (inf || (double)hist_bucket_max(b) <= prom_le[i] * 1e9);
		     b++)
			cum += atomic_load(&h->bucket[b]);
		printf("upager_fault_latency_seconds_bucket{");
		prom_labels(p);
		if (inf)
			printf(",kind=\"%s\",le=\"+Inf\"} %llu\n",
			       upg_fault_kind_name(k), (unsigned long long)cum);
		else
			printf(",kind=\"%s\",le=\"%g\"} %llu\n",
			       upg_fault_kind_name(k), prom_le[i],
			       (unsigned long long)cum);
	}
	printf("upager_fault_latency_seconds_sum{");
	prom_labels(p);
	printf(",kind=\"%s\"} %.9f\n", upg_fault_kind_name(k),
	       (double)atomic_load(&h->sum) / 1e9);
	printf("upager_fault_latency_seconds_count{");
	prom_labels(p);
	printf(",kind=\"%s\"} %llu\n", upg_fault_kind_name(k),
	       (unsigned long long)cum);
}

static void print_prometheus(const struct proc *procs, size_t n)
{
	char name[128];

	for (size_t i = 0; i < ARRAY_SIZE(metrics); i++) {
		const struct metric *m = &metrics[i];

		snprintf(name, sizeof(name), "upager_%s%s", m->name,
			 m->type == COUNTER ? "_total" : "");
		prom_family(name, m->type == COUNTER ? "counter" : "gauge",
			    m->help);
		for (size_t j = 0; j < n; j++) {
			printf("%s{", name);
			prom_labels(&procs[j]);
			printf("} %.15g\n", m->get(&procs[j]));
		}
	}
	prom_family("upager_faults_total", "counter",
		    "Faults served, by kind.");
	for (size_t j = 0; j < n; j++) {
		for (int k = 0; k < UPG_FAULT_NKINDS; k++) {
			printf("upager_faults_total{");
			prom_labels(&procs[j]);
			printf(",kind=\"%s\"} %llu\n", upg_fault_kind_name(k),
			       (unsigned long long)procs[j].st.faults[k]);
		}
	}
	prom_family("upager_fault_latency_seconds", "histogram",
		    "Fault latency, from the handler reading the fault to "
		    "waking the faulting thread, by kind.");
	for (size_t j = 0; j < n; j++)
		for (int k = 0; k < UPG_FAULT_NKINDS; k++)
			prom_histogram(&procs[j], k);
}

static void list_header(void)
{
	printf("%7s %-15s %8s %8s %8s %6s %9s\n", "PID", "COMMAND", "BUDGET",
	       "RESIDENT", "STORED", "RATIO", "FAULTS/S");
}

static void list_line(const struct proc *p)
{
	char budget[16], res[16], stored[16], rat[16];
	double r = ratio(&p->st);

	if (p->mem_limit)
		size_str(budget, sizeof(budget), p->mem_limit);
	else
		snprintf(budget, sizeof(budget), "-");
	if (r > 0)
		snprintf(rat, sizeof(rat), "%.2f", r);
	else
		snprintf(rat, sizeof(rat), "-");
	printf("%7d %-15.15s %8s %8s %8s %6s %9.0f\n", (int)p->pid, p->command,
	       budget, size_str(res, sizeof(res), p->st.pages_resident * PAGE_SIZE),
	       size_str(stored, sizeof(stored), p->store_pages * PAGE_SIZE),
	       rat, p->rate);
}

static double seconds_since(uint64_t realtime_ns)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9 -
	       (double)realtime_ns / 1e9;
}

static void print_text(const struct proc *p)
{
	static char buf[16384];
	char a[16], b[16], c[16], d[16], e[16];

	printf("pid %d (%s): %u runtime%s, up %.1f s, updated %.2f s ago\n",
	       (int)p->pid, p->command, p->runtimes, p->runtimes > 1 ? "s" : "",
	       seconds_since(p->started_ns), seconds_since(p->updated_ns));
	printf("  budget %s, resident %s, stored %s (%s in RAM, %s on disk "
	       "compressed), ratio %.2f, %.0f faults/s\n",
	       p->mem_limit ? size_str(a, sizeof(a), p->mem_limit) : "none",
	       size_str(b, sizeof(b), p->st.pages_resident * PAGE_SIZE),
	       size_str(c, sizeof(c), p->store_pages * PAGE_SIZE),
	       size_str(d, sizeof(d), p->st.store_ram_bytes),
	       size_str(e, sizeof(e), p->st.store_disk_bytes), ratio(&p->st),
	       p->rate);
	for (size_t i = 0; i < 5; i++)	/* the kernel-named counters */
		printf("  %-20s %.0f\n", metrics[i].name, metrics[i].get(p));
	stats_format(&p->st, UPG_STATS_TEXT, buf, sizeof(buf));
	fputs(buf, stdout);
}

/* ------------------------------------------------------------------ */
/* Watching one process, vmstat-style                                  */
/* ------------------------------------------------------------------ */

static uint64_t pgfault(const struct upg_stats *st)
{
	return st->faults_total;
}

static uint64_t pswpout(const struct upg_stats *st)
{
	return st->evictions_dirty;
}

static uint64_t refault(const struct upg_stats *st)
{
	return st->refaults;
}

/* Latency quantile of every fault kind together, between two samples. */
static double interval_us(const struct proc *now, const struct proc *then,
			  double q)
{
	static struct hist d;

	memset(&d, 0, sizeof(d));
	for (int k = 0; k < UPG_FAULT_NKINDS; k++) {
		for (unsigned b = 0; b < HIST_BUCKETS; b++)
			atomic_init(&d.bucket[b],
				    atomic_load(&d.bucket[b]) +
					    atomic_load(&now->hist[k].bucket[b]) -
					    (then ? atomic_load(&then->hist[k].bucket[b])
						  : 0));
		atomic_init(&d.max, MAX(atomic_load(&d.max),
					atomic_load(&now->hist[k].max)));
	}
	return (double)hist_quantile(&d, q) / 1e3;
}

static void watch_line(const struct proc *now, const struct proc *then,
		       unsigned line)
{
	double dt = then ? (double)(now->updated_ns - then->updated_ns) / 1e9
			 : seconds_since(now->started_ns);
	char res[16], stored[16], clock[16];
	time_t t = time(NULL);
	struct tm tm;

	dt = dt > 0 ? dt : 1;
#define RATE(fn) ((double)((fn)(&now->st) - (then ? (fn)(&then->st) : 0)) / dt)
	if (line % 20 == 0)
		printf("%8s %9s %8s %8s %8s %9s %8s %8s %5s %8s %8s\n", "time",
		       "faults/s", "major/s", "swpin/s", "swpout/s",
		       "refault/s", "resident", "stored", "ratio", "p50(us)",
		       "p99(us)");
	localtime_r(&t, &tm);
	strftime(clock, sizeof(clock), "%H:%M:%S", &tm);
	printf("%8s %9.0f %8.0f %8.0f %8.0f %9.0f %8s %8s %5.2f %8.1f %8.1f\n",
	       clock, RATE(pgfault), RATE(pgmajfault), RATE(pswpin), RATE(pswpout),
	       RATE(refault),
	       size_str(res, sizeof(res), now->st.pages_resident * PAGE_SIZE),
	       size_str(stored, sizeof(stored), now->store_pages * PAGE_SIZE),
	       ratio(&now->st), interval_us(now, then, 0.5),
	       interval_us(now, then, 0.99));
#undef RATE
	fflush(stdout);
}

/* ------------------------------------------------------------------ */
/* main                                                                */
/* ------------------------------------------------------------------ */

enum format { F_TEXT, F_JSON, F_PROM };

struct args {
	enum format format;
	bool watch;
	double interval;
	long count;		/* 0: no end */
	const char *dir;
	pid_t pid;		/* 0: the list */
};

static void parse_args(int argc, char **argv, struct args *a)
{
	static const struct option longopts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "prometheus", no_argument, NULL, 'p' },
		{ "watch", optional_argument, NULL, 'w' },
		{ "count", required_argument, NULL, 'n' },
		{ "dir", required_argument, NULL, 'd' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	char *end;
	int c;

	*a = (struct args){ .interval = 1.0 };
	while ((c = getopt_long(argc, argv, "jpw::n:d:hV", longopts,
				NULL)) != -1) {
		switch (c) {
		case 'j':
			a->format = F_JSON;
			break;
		case 'p':
			a->format = F_PROM;
			break;
		case 'w':
			a->watch = true;
			if (!optarg)
				break;
			errno = 0;
			a->interval = strtod(optarg, &end);
			if (errno || end == optarg || *end ||
			    !(a->interval >= PUBLISH_MS / 1e3 &&
			      a->interval <= 86400))
				die(EXIT_USAGE, "--watch='%s' is not valid: "
				    "expected seconds from %g (how often "
				    "programs refresh their statistics) to "
				    "86400, e.g. --watch=2 or --watch=0.5",
				    optarg, PUBLISH_MS / 1e3);
			break;
		case 'n':
			errno = 0;
			a->count = strtol(optarg, &end, 10);
			if (errno || end == optarg || *end || a->count < 1)
				die(EXIT_USAGE, "--count='%s' is not valid: "
				    "expected a whole number from 1", optarg);
			break;
		case 'd':
			a->dir = optarg;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		case 'V':
			printf("upager-stat %s\n", upg_version());
			exit(0);
		default:
			fprintf(stderr, "Try 'upager-stat --help'.\n");
			exit(EXIT_USAGE);
		}
	}
	if (optind < argc) {
		long pid;

		errno = 0;
		pid = strtol(argv[optind], &end, 10);
		if (errno || end == argv[optind] || *end || pid < 1 ||
		    pid > INT_MAX)
			die(EXIT_USAGE, "'%s' is not a process id: expected a "
			    "whole number from 1", argv[optind]);
		a->pid = (pid_t)pid;
		if (optind + 1 < argc)
			die(EXIT_USAGE, "one PID at most ('%s' is one more)",
			    argv[optind + 1]);
	}
	if (a->count && !a->watch)
		die(EXIT_USAGE, "--count='%ld' needs --watch", a->count);
}

static void sleep_for(double seconds)
{
	struct timespec ts = { (time_t)seconds,
			       (long)((seconds - floor(seconds)) * 1e9) };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static void print_all(const struct args *a, const struct scan *s)
{
	if (a->format == F_PROM) {
		print_prometheus(s->procs, s->n);
	} else if (a->format == F_JSON) {
		if (!a->pid)
			putchar('[');
		for (size_t i = 0; i < s->n; i++) {
			printf("%s", i ? "," : "");
			print_json(&s->procs[i], s->dir);
		}
		printf("%s\n", a->pid ? "" : "]");
	} else if (a->pid) {
		print_text(&s->procs[0]);
	} else {
		list_header();
		for (size_t i = 0; i < s->n; i++)
			list_line(&s->procs[i]);
	}
	fflush(stdout);
}

/* Read the process (a->pid) or every one.  False when PID has ended
 * since an earlier sample; exits if it cannot be read. */
static bool sample(const struct args *a, struct scan *s, const char *dir,
		   bool before)
{
	int err = scan_dir(s, dir, a->pid);

	if (err && err != -ENOENT)
		die(EXIT_TROUBLE, "cannot read %s: %s", dir, strerror(-err));
	if (!a->pid || s->n)
		return true;
	/* Its file goes at exit, a moment before the process. */
	if (before && !s->problem[0])
		return false;
	if (s->problem[0])
		die(EXIT_TROUBLE, "%s", s->problem);
	if (kill(a->pid, 0) < 0 && errno == ESRCH)
		die(EXIT_TROUBLE, "no process with pid %d", (int)a->pid);
	{
		char comm[64];

		command_of(a->pid, comm, sizeof(comm));
		die(EXIT_TROUBLE, "process %d (%s) is not running under upager: "
		    "no statistics file of it in %s (run it with upager-run, "
		    "and without UPAGER_STATS_DIR=off or another directory)",
		    (int)a->pid, comm, dir);
	}
}

int main(int argc, char **argv)
{
	struct scan s = { 0 };
	struct proc prev;
	char dir[PATH_MAX];
	struct args a;
	bool have_prev = false;

	parse_args(argc, argv, &a);
	if (a.pid)
		dir_for_pid(a.pid, a.dir, dir, sizeof(dir));
	else
		resolve_dir(dir, sizeof(dir), a.dir, geteuid(),
			    getenv("UPAGER_STATS_DIR"),
			    getenv("XDG_RUNTIME_DIR"));
	for (long i = 0; !a.count || i < a.count; i++) {
		if (i)
			sleep_for(a.interval);
		if (!sample(&a, &s, dir, i > 0)) {
			fprintf(stderr, "%s: process %d ended\n", prog,
				(int)a.pid);
			break;
		}
		if (a.watch && a.pid && a.format == F_TEXT) {
			watch_line(&s.procs[0], have_prev ? &prev : NULL,
				   (unsigned)i);
			prev = s.procs[0];
			have_prev = true;
		} else {
			if (a.watch && !a.pid && a.format == F_TEXT &&
			    isatty(STDOUT_FILENO))
				printf("\033[H\033[2J");
			else if (i && a.format != F_JSON)
				putchar('\n');
			print_all(&a, &s);
		}
		if (!a.watch)
			break;
	}
	free(s.procs);
	return 0;
}
