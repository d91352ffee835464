/* SPDX-License-Identifier: MIT */
/*
 * Command line.  A bad value is an error naming the option, the value and
 * what is accepted; nothing is guessed.
 */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "bench.h"
#include "options.h"

#define MAX_FAULTS UINT64_C(100000000)
#define MAX_SIZE (UINT64_C(64) << 30)
#define MAX_ROUNDS 1000

static const char *const codec_names[] = {
	[UPG_CODEC_LZ4] = "lz4", [UPG_CODEC_ZSTD] = "zstd",
	[UPG_CODEC_NONE] = "none",
};

static const char *const resolve_names[] = {
	[UPG_RESOLVE_HANDLER] = "handler", [UPG_RESOLVE_THREAD] = "thread",
};

static const char usage[] =
"Usage: upager-bench [OPTION]...\n"
"  or:  upager-bench --programs [OPTION]...\n"
"Measure page-fault latency of upager next to the kernel doing the same job,\n"
"in the same run, in alternating rounds.\n"
"\n"
"  --programs          first and alone of these options: time real programs\n"
"                      (python3, sort, sqlite3, xz) plain, under upager-run\n"
"                      and under the kernel with the same memory limit; the\n"
"                      options after it are its own (upager-bench --programs\n"
"                      --help)\n"
"  --quick             a run of under 30 seconds: fewer faults, smaller\n"
"                      passes (explicit options still win)\n"
"  --faults N          touches per random and thread-scaling scenario and\n"
"                      side (default 200000; quick 10000)\n"
"  --size SIZE         memory of each sequential pass, e.g. 256M (default\n"
"                      256M; quick 32M); K, M, G suffixes are powers of 2\n"
"  --snapshot-size SIZE\n"
"                      region of the snap-take scenario (default 1G;\n"
"                      quick 64M)\n"
"  --rounds N          rounds per scenario; sides alternate within each\n"
"                      (default 10; quick 4)\n"
"  --threads N         most faulting threads of the scaling scenario: it runs\n"
"                      1, 2, 4, ... up to N, with as many upager handlers\n"
"                      (default twice the CPUs, at most 64)\n"
"  --budget SIZE       memory limit of the swap and file-* scenarios,\n"
"                      upager's and the kernel's (a memory cgroup); their\n"
"                      working sets are 1.25 to 3 times it (default 64M;\n"
"                      quick 16M)\n"
"  --swap-dir DIR      where upager's swap file goes (default /var/tmp; a\n"
"                      tmpfs such as /dev/shm keeps it in RAM, like zram)\n"
"  --remote HOSTS      host:port[,host:port...] of memcached servers (run\n"
"                      with -M): the remote tier of upager's store in the\n"
"                      swapin-remote, swap-random and swap-scan rows;\n"
"                      without it swapin-remote starts three of its own on\n"
"                      loopback (memcached must be installed)\n"
"  --idle-poll         keep idle CPUs polling for the run (a CPU latency\n"
"                      request of 0 on /dev/cpu_dma_latency; root): a\n"
"                      hand-off then wakes no halted CPU, on both sides\n"
"  --resolve MODE      who resolves upager's faults: handler (handler\n"
"                      threads, the default) or thread (the faulting thread,\n"
"                      in a SIGBUS handler); or UPAGER_RESOLVE\n"
"  --codec NAME        swap-store codec: lz4, zstd or none (default: lz4, or\n"
"                      UPAGER_CODEC)\n"
"  --scenarios LIST    comma-separated scenarios to run (default all):\n"
"                      %s\n"
"  --seed N            seed of the random touch orders (default 1)\n"
"  --json FILE         write the results as JSON\n"
"  --csv FILE          write the results as CSV\n"
"  --plot FILE         draw the latency CDFs with gnuplot, FILE ending in\n"
"                      .svg or .png\n"
"  --help              show this help\n"
"  --version           show the version\n"
"\n"
"The UPAGER_* environment variables set upager's other options (for\n"
"example UPAGER_FAULT_AROUND).  Ratios are upager over the kernel.\n";

enum { OPT_QUICK = 256, OPT_PROGRAMS, OPT_IDLE_POLL, OPT_FAULTS, OPT_SIZE, OPT_SNAP_SIZE, OPT_ROUNDS, OPT_THREADS,
       OPT_CODEC, OPT_RESOLVE, OPT_BUDGET, OPT_SWAP_DIR, OPT_REMOTE, OPT_SCENARIOS, OPT_SEED, OPT_JSON, OPT_CSV, OPT_PLOT,
       OPT_HELP, OPT_VERSION };

#define ARG(name, id) { name, required_argument, NULL, id }
#define FLAG(name, id) { name, no_argument, NULL, id }

static const struct option longopts[] = {
	FLAG("quick", OPT_QUICK), FLAG("programs", OPT_PROGRAMS),
	FLAG("idle-poll", OPT_IDLE_POLL),
	ARG("faults", OPT_FAULTS),
	ARG("size", OPT_SIZE), ARG("snapshot-size", OPT_SNAP_SIZE),
	ARG("rounds", OPT_ROUNDS),
	ARG("threads", OPT_THREADS), ARG("codec", OPT_CODEC),
	ARG("resolve", OPT_RESOLVE),
	ARG("budget", OPT_BUDGET), ARG("swap-dir", OPT_SWAP_DIR),
	ARG("remote", OPT_REMOTE),
	ARG("scenarios", OPT_SCENARIOS), ARG("seed", OPT_SEED),
	ARG("json", OPT_JSON), ARG("csv", OPT_CSV), ARG("plot", OPT_PLOT),
	FLAG("help", OPT_HELP), FLAG("version", OPT_VERSION),
	{ NULL, 0, NULL, 0 },
};

/* host:port[,host:port...]: what the remote tier can be given (whether
 * the servers answer is the first swap row's to find out). */
static bool check_hosts(const char *s)
{
	while (*s) {
		const char *colon = strchr(s, ':'), *end = strchr(s, ',');
		char *stop;
		long port;

		end = end ? end : s + strlen(s);
		if (!colon || colon == s || colon >= end)
			return false;
		errno = 0;
		port = strtol(colon + 1, &stop, 10);
		if (errno || stop != end || colon + 1 == end || port < 1 ||
		    port > 65535)
			return false;
		s = *end ? end + 1 : end;
		if (*end && !*s)
			return false;	/* a trailing comma */
	}
	return true;
}

static int bad(const char *opt, const char *value, const char *accepted)
{
	fprintf(stderr, "upager-bench: %s: '%s' is not accepted; expected %s\n",
		opt, value, accepted);
	return -EINVAL;
}

/* A whole number in [min, max], with an optional K/M/G/T suffix
 * (powers of 2, "KiB" and "KB" alike) if `suffix`. */
static int parse_u64(const char *s, uint64_t min, uint64_t max, bool suffix,
		     uint64_t *out)
{
	static const char units[] = "KMGT";
	const char *u;
	char *end;
	uint64_t v;

	errno = 0;
	if (*s < '0' || *s > '9')
		return -EINVAL;
	v = strtoull(s, &end, 10);
	if (errno)
		return -EINVAL;
	/* toupper, not "& ~0x20": that maps ' ' to '\0', which strchr
	 * finds (as a fifth unit, 2^50). */
	if (suffix && *end &&
	    (u = strchr(units, toupper((unsigned char)*end)))) {
		unsigned shift = 10 * (unsigned)(u - units + 1);

		if (v > (UINT64_MAX >> shift))
			return -EINVAL;
		v <<= shift;
		end++;
		if (!strcasecmp(end, "iB") || !strcasecmp(end, "B"))
			end += strlen(end);
	}
	if (*end || v < min || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

static int parse_number(const char *opt, const char *s, uint64_t min,
			uint64_t max, uint64_t *out)
{
	char accepted[96];

	if (!parse_u64(s, min, max, false, out))
		return 0;
	snprintf(accepted, sizeof(accepted),
		 "a whole number from %" PRIu64 " to %" PRIu64, min, max);
	return bad(opt, s, accepted);
}

static int parse_size(const char *opt, const char *s, size_t page,
		      uint64_t *out)
{
	if (!parse_u64(s, page, MAX_SIZE, true, out)) {
		*out = (*out + page - 1) / page * page;
		return 0;
	}
	return bad(opt, s, "a size from 4K to 64G, such as 256M");
}

/* The index of s in names[0..n), or a bad value of option opt. */
static int parse_name(const char *opt, const char *s,
		      const char *const *names, size_t n,
		      const char *accepted, int *out)
{
	for (size_t i = 0; i < n; i++) {
		if (!strcmp(s, names[i])) {
			*out = (int)i;
			return 0;
		}
	}
	return bad(opt, s, accepted);
}

#define PARSE_NAME(opt, s, names, accepted, out)                              \
	parse_name(opt, s, names, sizeof(names) / sizeof(names[0]),           \
		   accepted, out)

const char *resolve_name(int resolve)
{
	return resolve == UPG_RESOLVE_THREAD ? "thread" : "handler";
}

const char *codec_name(int codec)
{
	return codec >= 0 && codec <= UPG_CODEC_NONE ? codec_names[codec]
						     : "?";
}

static void scenario_names(char *buf, size_t len)
{
	size_t at = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < nscenarios && at < len; i++)
		at += (size_t)snprintf(buf + at, len - at, "%s%s",
				       i ? ", " : "", scenarios[i].name);
}

/* Every name of the list must be a scenario. */
static int check_scenarios(const char *list)
{
	const char *p = list;
	char accepted[256];

	do {
		size_t len = strcspn(p, ",");

		if (!scenario_find(p, len)) {
			char name[64];

			snprintf(name, sizeof(name), "%.*s", (int)len, p);
			scenario_names(accepted, sizeof(accepted));
			fprintf(stderr, "upager-bench: --scenarios: '%s' is not "
				"a scenario; accepted: %s\n", name, accepted);
			return -EINVAL;
		}
		p += len;
	} while (*p++);
	return 0;
}

static bool ends_with(const char *s, const char *end)
{
	size_t n = strlen(s), m = strlen(end);

	return n > m && !strcmp(s + n - m, end);
}

/* gnuplot picks its terminal from the name. */
static int check_plot(const char *path)
{
	if (ends_with(path, ".svg") || ends_with(path, ".png"))
		return 0;
	return bad("--plot", path, "a file name ending in .svg or .png");
}

static void print_usage(void)
{
	char names[256];

	scenario_names(names, sizeof(names));
	printf(usage, names);
}

/* Values not given on the command line; --quick picks smaller ones. */
static void apply_defaults(struct config *cfg, const struct given *given)
{
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	uint64_t threads = cpus > 0 ? 2 * (uint64_t)cpus : 4;

	if (!given->faults)
		cfg->faults = cfg->quick ? 10000 : 200000;
	if (!given->size)
		cfg->size = (cfg->quick ? 32 : 256) << 20;
	if (!given->snap_size)
		cfg->snap_size = (uint64_t)(cfg->quick ? 64 : 1024) << 20;
	if (!given->rounds)
		cfg->rounds = cfg->quick ? 4 : 10;
	if (!given->threads)
		cfg->threads = (unsigned)(threads < MAX_THREADS ? threads
							        : MAX_THREADS);
	if (!given->seed)
		cfg->seed = 1;
	if (!given->budget)
		cfg->budget = (uint64_t)(cfg->quick ? 16 : 64) << 20;
	if (!cfg->swap_dir)
		cfg->swap_dir = "/var/tmp";
}

static int parse_one(int opt, const char *arg, struct options *o)
{
	struct config *cfg = &o->cfg;
	uint64_t v;
	int err = 0;

	switch (opt) {
	case OPT_QUICK:
		cfg->quick = true;
		break;
	case OPT_PROGRAMS:	/* main() takes it when it comes first */
		fprintf(stderr, "upager-bench: --programs must come first: the "
			"options after it are its own (see upager-bench "
			"--programs --help)\n");
		err = -EINVAL;
		break;
	case OPT_IDLE_POLL:
		cfg->idle_poll = true;
		break;
	case OPT_FAULTS:
		err = parse_number("--faults", arg, 1, MAX_FAULTS,
				   &cfg->faults);
		o->given.faults = true;
		break;
	case OPT_SIZE:
		err = parse_size("--size", arg, o->page, &cfg->size);
		o->given.size = true;
		break;
	case OPT_SNAP_SIZE:
		err = parse_size("--snapshot-size", arg, o->page,
				 &cfg->snap_size);
		o->given.snap_size = true;
		break;
	case OPT_ROUNDS:
		err = parse_number("--rounds", arg, 1, MAX_ROUNDS, &v);
		cfg->rounds = (unsigned)v;
		o->given.rounds = true;
		break;
	case OPT_THREADS:
		err = parse_number("--threads", arg, 1, MAX_THREADS, &v);
		cfg->threads = (unsigned)v;
		o->given.threads = true;
		break;
	case OPT_CODEC:
		err = PARSE_NAME("--codec", arg, codec_names,
				 "lz4, zstd or none", &o->codec);
		break;
	case OPT_RESOLVE:
		err = PARSE_NAME("--resolve", arg, resolve_names,
				 "handler or thread", &o->resolve);
		break;
	case OPT_BUDGET:
		err = parse_size("--budget", arg, o->page, &cfg->budget);
		o->given.budget = true;
		break;
	case OPT_SWAP_DIR:
		cfg->swap_dir = arg;
		break;
	case OPT_REMOTE:
		err = check_hosts(arg) ? 0 : bad("--remote", arg,
			"host:port[,host:port...], each port 1 to 65535");
		cfg->remote = arg;
		break;
	case OPT_SCENARIOS:
		err = check_scenarios(arg);
		cfg->scenarios = arg;
		break;
	case OPT_SEED:
		err = parse_number("--seed", arg, 0, UINT64_MAX, &cfg->seed);
		o->given.seed = true;
		break;
	case OPT_JSON:
		cfg->json = arg;
		break;
	case OPT_CSV:
		cfg->csv = arg;
		break;
	case OPT_PLOT:
		err = check_plot(arg);
		cfg->plot = arg;
		break;
	}
	return err;
}

static int unknown(char **argv, int opt)
{
	const char *arg = argv[optind - 1];

	if (opt == ':')
		fprintf(stderr, "upager-bench: %s needs a value (see --help)\n",
			arg);
	else
		fprintf(stderr, "upager-bench: unknown option '%s' (see "
			"--help)\n", arg);
	return -EINVAL;
}

/*
 * Fill *o from the command line.  Returns 0 to run, 1 when --help or
 * --version was answered, -EINVAL (with the message printed) otherwise.
 */
int options_parse(int argc, char **argv, struct options *o)
{
	int opt, err = 0;

	opterr = 0;
	o->codec = -1;
	o->resolve = -1;
	while (!err &&
	       (opt = getopt_long(argc, argv, ":", longopts, NULL)) != -1) {
		if (opt == OPT_HELP) {
			print_usage();
			return 1;
		}
		if (opt == OPT_VERSION) {
			printf("upager-bench %s (libupager %s)\n", BENCH_VERSION,
			       upg_version());
			return 1;
		}
		err = opt < OPT_QUICK ? unknown(argv, opt)
				      : parse_one(opt, optarg, o);
	}
	if (!err && optind < argc) {
		fprintf(stderr, "upager-bench: unexpected argument '%s' (see "
			"--help)\n", argv[optind]);
		err = -EINVAL;
	}
	if (!err)
		apply_defaults(&o->cfg, &o->given);
	return err;
}
