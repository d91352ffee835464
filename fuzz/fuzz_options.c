/* SPDX-License-Identifier: MIT */
/*
 * The library's option parser: upg_options_set() and the same value
 * through the environment (upg_options_from_env()).
 *
 * Input: "NAME=VALUE" (VALUE up to the end or the first NUL).
 * Properties: both ways agree (same result, same options); an accepted
 * value passes options_validate(); a refused one leaves the options as
 * they were and its error names the variable.  And the VALUE as a size
 * (parse_size()): if accepted, it is its digits times 1, 1K, 1M, 1G or
 * 1T, never a product that wrapped around.
 */
#include <errno.h>
#include <string.h>

#include "config.h"
#include "fuzz.h"
#include "log.h"
#include "upager.h"

extern char **environ;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	/* Only the variable under test may be set; no log lines per run
	 * (the last error is kept all the same). */
	for (char **e = environ; *e;) {
		if (strncmp(*e, "UPAGER_", 7) == 0) {
			char name[256];

			snprintf(name, sizeof(name), "%.*s",
				 (int)strcspn(*e, "="), *e);
			unsetenv(name);
			e = environ;
		} else {
			e++;
		}
	}
	log_set_level(UPG_LOG_NONE);
	return 0;
}

/* String options are pointers: equal when their strings are. */
static void same_string(const char **a, const char *b)
{
	FUZZ_ASSERT(!*a == !b);
	FUZZ_ASSERT(!*a || strcmp(*a, b) == 0);
	*a = b;
}

static void same_options(struct upg_options a, struct upg_options b)
{
	same_string(&a.swap_dir, b.swap_dir);
	same_string(&a.stats_path, b.stats_path);
	same_string(&a.stats_dir, b.stats_dir);
	same_string(&a.remote, b.remote);
	FUZZ_ASSERT(memcmp(&a, &b, sizeof(a)) == 0);
}

static void size_scaled(const char *value)
{
	unsigned long long digits;
	uint64_t v, unit;

	if (parse_size(value, &v) < 0)
		return;
	digits = strtoull(value, NULL, 10);
	if (digits == 0) {
		FUZZ_ASSERT(v == 0);
		return;
	}
	unit = v / digits;
	FUZZ_ASSERT(v % digits == 0);
	FUZZ_ASSERT(unit == 1 || unit == UINT64_C(1) << 10 ||
		    unit == UINT64_C(1) << 20 || unit == UINT64_C(1) << 30 ||
		    unit == UINT64_C(1) << 40);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct upg_options set, env, init;
	char *name, *value, *eq;
	int rs, re;

	name = malloc(size + 1);
	if (!name)
		abort();
	memcpy(name, data, size);
	name[size] = '\0';
	eq = strchr(name, '=');
	value = eq ? eq + 1 : name + strlen(name);
	if (eq)
		*eq = '\0';

	upg_options_init(&init);
	set = env = init;
	rs = upg_options_set(&set, name, value);
	FUZZ_ASSERT(rs == 0 || rs == -EINVAL || rs == -ENOENT);
	if (rs == 0)
		FUZZ_ASSERT(options_validate(&set) == 0);
	else
		same_options(set, init);
	if (rs == -EINVAL)
		FUZZ_ASSERT(strstr(upg_last_error(), name) != NULL);

	/* The environment: names that are options only (setenv refuses
	 * "" and names with '=', which the input cannot hold here). */
	if (rs != -ENOENT && setenv(name, value, 1) == 0) {
		re = upg_options_from_env(&env);
		FUZZ_ASSERT(re == (rs == 0 ? 1 : -EINVAL));
		same_options(env, set);
		unsetenv(name);
	}
	size_scaled(value);
	free(name);
	return 0;
}
