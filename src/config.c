/* SPDX-License-Identifier: MIT */
/*
 * Options: one table, each entry with its variable, field, accepted values,
 * default and meaning.  upg_options_from_env(), upg_options_set() and the
 * launcher's --help all read this table, so they cannot disagree.
 */
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config.h"
#include "log.h"
#include "util.h"

enum opt_type { OPT_SIZE, OPT_UINT, OPT_ENUM, OPT_STRING };

struct opt {
	const char *env;
	enum opt_type type;
	size_t offset, width;	/* of the field in struct upg_options */
	uint64_t min, max;	/* OPT_SIZE, OPT_UINT */
	const char *const *names; /* OPT_ENUM: value i is names[i] */
	const char *def;	/* default, as text */
	const char *help;
};

#define FIELD(f)                                                              \
	offsetof(struct upg_options, f), sizeof(((struct upg_options *)0)->f)

/* The size is ABI: a program built against an older upager.h passes a
 * struct of this size.  New fields take reserved room, never grow it.
 * (Grown once before the first release, 0.1.0, when the remote tier,
 * the live statistics and the resolve mode had used the room up.) */
#if UINTPTR_MAX == UINT64_MAX
_Static_assert(sizeof(struct upg_options) == 168,
	       "struct upg_options changed size: take reserved room instead");
#endif

static const char *const codec_names[] = { "lz4", "zstd", "none", NULL };
static const char *const full_names[] = { "overcommit", "sigbus", NULL };
static const char *const log_names[] = { "none", "error", "warn", "info",
					  "debug", NULL };
static const char *const format_names[] = { "text", "json", NULL };
static const char *const policy_names[] = { "clock", "fifo", NULL };
static const char *const resolve_names[] = { "handler", "thread", NULL };

#define MIB (UINT64_C(1) << 20)
#define GIB (UINT64_C(1) << 30)

static const struct opt options[] = {
	{ "UPAGER_MEM_LIMIT", OPT_SIZE, FIELD(mem_limit), 0, UINT64_MAX, NULL,
	  "0", "budget for resident pages plus the compressed RAM tier; "
	       "0 = unlimited" },
	{ "UPAGER_SWAP_DIR", OPT_STRING, FIELD(swap_dir), 0, 0, NULL,
	  "/var/tmp", "directory of the (unlinked, private) swap file" },
	{ "UPAGER_RAM_TIER", OPT_UINT, FIELD(ram_tier), 0, 90, NULL, "25",
	  "percent of the budget the compressed RAM tier may hold before "
	  "pages go to the swap file (at least, with UPAGER_RAM_TIER_MAX)" },
	{ "UPAGER_RAM_TIER_MAX", OPT_UINT, FIELD(ram_tier_max), 0, 90, NULL,
	  "25", "percent of the budget the RAM tier may grow to while "
	  "swap-ins from the swap file are common and pages compress well "
	  "(at most UPAGER_RAM_TIER: fixed)" },
	{ "UPAGER_PROBATION", OPT_UINT, FIELD(probation), 0, 50, NULL, "0",
	  "percent of the budget kept for the youngest evicted pages, "
	  "uncompressed, besides the RAM tier (0 = none)" },
	{ "UPAGER_SWAP_SIZE", OPT_SIZE, FIELD(swap_size), MIB, UINT64_MAX,
	  NULL, "8G", "largest size of the swap file" },
	{ "UPAGER_CODEC", OPT_ENUM, FIELD(codec), 0, 0, codec_names, "lz4",
	  "compression of stored pages" },
	{ "UPAGER_FULL_POLICY", OPT_ENUM, FIELD(full_policy), 0, 0, full_names,
	  "overcommit", "when budget and store are both full: exceed the "
			"budget (warn once) or SIGBUS the faulting thread" },
	{ "UPAGER_POLICY", OPT_ENUM, FIELD(policy), 0, 0, policy_names,
	  "clock", "which resident page to evict first" },
	{ "UPAGER_HANDLERS", OPT_UINT, FIELD(handlers), 1, 64, NULL, "1",
	  "fault-handling threads" },
	{ "UPAGER_RESOLVE", OPT_ENUM, FIELD(resolve), 0, 0, resolve_names,
	  "handler", "who resolves a fault: handler threads, or the faulting "
	  "thread in a SIGBUS handler (kernel accesses to pages not in memory "
	  "then fail with EFAULT; not for upager-run)" },
	{ "UPAGER_SPIN_US", OPT_UINT, FIELD(spin_us), 0, 1000, NULL, "0",
	  "microseconds a handler polls for more faults before sleeping" },
	{ "UPAGER_IDLE_POLL", OPT_UINT, FIELD(idle_poll), 0, 1, NULL, "0",
	  "1: keep idle CPUs polling while upager runs (system-wide; a VM "
	  "whose idle vCPUs halt wakes a handler far faster)" },
	{ "UPAGER_FAULT_AROUND", OPT_UINT, FIELD(fault_around), 1, 512, NULL,
	  "16", "never-touched pages made present around a block's first "
	  "touch (the whole 2 MiB block from its second on; fewer near the "
	  "budget)" },
	{ "UPAGER_LOG", OPT_ENUM, FIELD(log_level), 0, 0, log_names, "warn",
	  "log level" },
	{ "UPAGER_STATS", OPT_STRING, FIELD(stats_path), 0, 0, NULL, "",
	  "write statistics at exit: stderr, stdout or a file path (%p in "
	  "it is the process id)" },
	{ "UPAGER_STATS_DIR", OPT_STRING, FIELD(stats_dir), 0, 0, NULL,
	  "/run/upager (root), $XDG_RUNTIME_DIR/upager or /tmp/upager-UID",
	  "directory of the live statistics file that upager-stat reads; "
	  "off = publish none" },
	{ "UPAGER_STATS_FORMAT", OPT_ENUM, FIELD(stats_format), 0, 0,
	  format_names, "text", "format of those statistics" },
	{ "UPAGER_USER_MODE_ONLY", OPT_UINT, FIELD(user_mode_only), 0, 1,
	  NULL, "0", "1: where the full userfaultfd is refused, use a "
	  "user-mode-only one: system calls given managed memory that is not "
	  "resident fail with EFAULT (library only; preload mode ignores it)" },
	{ "UPAGER_PRELOAD_HEAP", OPT_SIZE, FIELD(preload_heap), GIB,
	  UPG_REGION_MAX, NULL, "1T", "preload mode: address space reserved "
	  "for the managed heap and mappings" },
	{ "UPAGER_PRELOAD_MIN_MMAP", OPT_SIZE, FIELD(preload_min_mmap), 0,
	  UINT64_MAX, NULL, "256K", "preload mode: smallest private anonymous "
	  "mmap that is managed; 0 = none" },
	{ "UPAGER_REMOTE", OPT_STRING, FIELD(remote), 0, 0, NULL, "",
	  "host:port[,host:port...] of memcached servers (run with -M): a "
	  "store tier between RAM and the swap file, every object sealed" },
	{ "UPAGER_REMOTE_REPLICAS", OPT_UINT, FIELD(remote_replicas), 0, 63,
	  NULL, "0", "extra copies of each remote object, on other servers "
	  "(fewer than the servers)" },
	{ "UPAGER_REMOTE_TIMEOUT_MS", OPT_UINT, FIELD(remote_timeout_ms), 1,
	  60000, NULL, "2000", "bound of one remote batch or get; a server "
	  "that misses it is skipped for 2 s" },
	{ "UPAGER_REMOTE_OPTIONAL", OPT_UINT, FIELD(remote_optional), 0, 1,
	  NULL, "0", "1: a cluster that does not answer at start is a "
	  "warning, not an error" },
	{ "UPAGER_ENCRYPT", OPT_UINT, FIELD(encrypt), 0, 1, NULL, "0",
	  "1: seal (encrypt and authenticate) what goes to the swap file" },
};

void upg_options_init(struct upg_options *opts)
{
	if (!opts)
		return;
	memset(opts, 0, sizeof(*opts));
	opts->size = sizeof(*opts);
	opts->handlers = 1;
	opts->mem_limit = 0;
	opts->swap_size = 8 * GIB;
	opts->ram_tier = 25;
	opts->ram_tier_max = 25;
	opts->swap_dir = "/var/tmp";
	opts->codec = UPG_CODEC_LZ4;
	opts->full_policy = UPG_FULL_OVERCOMMIT;
	opts->log_level = UPG_LOG_WARN;
	opts->fault_around = 16;
	opts->stats_path = NULL;
	opts->stats_format = UPG_STATS_TEXT;
	opts->preload_heap = 1024 * GIB;
	opts->preload_min_mmap = 256 << 10;
	opts->remote_timeout_ms = 2000;
}

int parse_size(const char *s, uint64_t *out)
{
	unsigned long long v;
	unsigned shift = 0;
	char *end;

	if (!s || *s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		return -EINVAL;
	switch (*end) {
	case 'k': case 'K': shift = 10; end++; break;
	case 'm': case 'M': shift = 20; end++; break;
	case 'g': case 'G': shift = 30; end++; break;
	case 't': case 'T': shift = 40; end++; break;
	default: break;
	}
	if (shift && (*end == 'i' || *end == 'I'))
		end++;
	if (*end == 'b' || *end == 'B')
		end++;
	if (*end != '\0' || (shift && v > (UINT64_MAX >> shift)))
		return -EINVAL;
	*out = (uint64_t)v << shift;
	return 0;
}

static void store_uint(void *field, size_t width, uint64_t v)
{
	if (width == sizeof(uint64_t))
		*(uint64_t *)field = v;
	else if (width == sizeof(uint32_t))
		*(uint32_t *)field = (uint32_t)v;
}

static uint64_t load_uint(const void *field, size_t width)
{
	return width == sizeof(uint64_t) ? *(const uint64_t *)field
					 : *(const uint32_t *)field;
}

/* "lz4, zstd or none" into buf. */
static const char *list_names(const char *const *names, char *buf, size_t len)
{
	size_t pos = 0;

	buf[0] = '\0';
	for (int i = 0; names[i]; i++) {
		const char *sep = i == 0 ? "" : names[i + 1] ? ", " : " or ";
		int n = snprintf(buf + pos, len - pos, "%s%s", sep, names[i]);

		if (n < 0 || (size_t)n >= len - pos)
			break;
		pos += (size_t)n;
	}
	return buf;
}

static int bad_value(const struct opt *o, const char *value)
{
	char names[128];

	switch (o->type) {
	case OPT_SIZE:
		log_error("%s='%s' is not valid: expected a size in bytes with "
			  "an optional K, M, G or T suffix (e.g. 512M, 2G), "
			  "from %llu%s", o->env, value,
			  (unsigned long long)o->min,
			  o->min == 0 ? " (0 = unlimited)" : "");
		break;
	case OPT_UINT:
		log_error("%s='%s' is not valid: expected a whole number from "
			  "%llu to %llu", o->env, value,
			  (unsigned long long)o->min,
			  (unsigned long long)o->max);
		break;
	case OPT_ENUM:
		log_error("%s='%s' is not valid: expected %s", o->env, value,
			  list_names(o->names, names, sizeof(names)));
		break;
	case OPT_STRING:
		log_error("%s='%s' is not valid: expected a non-empty string",
			  o->env, value);
		break;
	}
	return -EINVAL;
}

static int parse_uint(const char *s, uint64_t *out)
{
	unsigned long long v;
	char *end;

	if (!s || *s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end)
		return -EINVAL;
	*out = v;
	return 0;
}

static int apply(const struct opt *o, struct upg_options *opts,
		 const char *value)
{
	void *field = (char *)opts + o->offset;
	uint64_t v;

	switch (o->type) {
	case OPT_SIZE:
	case OPT_UINT:
		if ((o->type == OPT_SIZE ? parse_size(value, &v)
					 : parse_uint(value, &v)) < 0 ||
		    v < o->min || v > o->max)
			return bad_value(o, value);
		store_uint(field, o->width, v);
		return 0;
	case OPT_ENUM:
		for (int i = 0; o->names[i]; i++) {
			if (strcasecmp(value, o->names[i]) == 0) {
				*(int *)field = i;
				return 0;
			}
		}
		return bad_value(o, value);
	case OPT_STRING:
		if (!*value)
			return bad_value(o, value);
		*(const char **)field = value;
		return 0;
	}
	return -EINVAL;
}

int upg_options_set(struct upg_options *opts, const char *name,
		    const char *value)
{
	if (!opts || !name || !value)
		return -EINVAL;
	for (size_t i = 0; i < ARRAY_SIZE(options); i++)
		if (strcmp(options[i].env, name) == 0)
			return apply(&options[i], opts, value);
	set_last_error("%s is not an upager option", name);
	return -ENOENT;
}

int upg_options_from_env(struct upg_options *opts)
{
	struct upg_options tmp;
	int applied = 0;

	if (!opts)
		return -EINVAL;
	tmp = *opts;
	for (size_t i = 0; i < ARRAY_SIZE(options); i++) {
		const char *value = getenv(options[i].env);

		if (!value)
			continue;
		if (apply(&options[i], &tmp, value) < 0)
			return -EINVAL;
		applied++;
	}
	*opts = tmp;
	return applied;
}

int options_validate(const struct upg_options *opts)
{
	char value[32];

	if (opts->size < offsetof(struct upg_options, reserved)) {
		log_error("struct upg_options.size is %u: initialise options "
			  "with upg_options_init()", opts->size);
		return -EINVAL;
	}
	for (size_t i = 0; i < ARRAY_SIZE(options); i++) {
		const struct opt *o = &options[i];
		const void *field = (const char *)opts + o->offset;
		uint64_t v;

		if (o->type == OPT_ENUM) {
			int e = *(const int *)field, n = 0;

			while (o->names[n])
				n++;
			if (e >= 0 && e < n)
				continue;
			v = (uint64_t)(int64_t)e;
		} else if (o->type == OPT_STRING) {
			continue;
		} else {
			v = load_uint(field, o->width);
			if (v >= o->min && v <= o->max)
				continue;
		}
		snprintf(value, sizeof(value), "%lld", (long long)v);
		return bad_value(o, value);
	}
	/* What they leave is the resident pages' share. */
	if (MAX(opts->ram_tier, opts->ram_tier_max) + opts->probation > 90) {
		log_error("UPAGER_PROBATION='%u' is not valid with "
			  "UPAGER_RAM_TIER='%u' and UPAGER_RAM_TIER_MAX='%u': "
			  "the probation list and the largest RAM tier may "
			  "take at most 90 percent of the budget together",
			  opts->probation, opts->ram_tier, opts->ram_tier_max);
		return -EINVAL;
	}
	return 0;
}

void options_describe(FILE *f)
{
	char names[128];

	for (size_t i = 0; i < ARRAY_SIZE(options); i++) {
		const struct opt *o = &options[i];
		const char *accepts = o->type == OPT_SIZE  ? "size (512M, 2G)"
				      : o->type == OPT_UINT ? "number"
				      : o->type == OPT_STRING
					      ? "text"
					      : list_names(o->names, names,
							   sizeof(names));

		fprintf(f, "  %-20s %s (default %s)\n  %-20s   %s\n", o->env,
			accepts, *o->def ? o->def : "none", "", o->help);
	}
}
