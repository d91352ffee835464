/* SPDX-License-Identifier: MIT */
/* Unit tests of the options: defaults, sizes, the environment, errors. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "testlib.h"

const bool test_needs_uffd = false;

START_TEST(defaults_are_sane)
{
	struct upg_options o;

	upg_options_init(&o);
	ck_assert_uint_eq(o.size, sizeof(o));
	ck_assert_uint_eq(o.mem_limit, 0);
	ck_assert_uint_eq(o.handlers, 1);
	ck_assert_int_eq(o.codec, UPG_CODEC_LZ4);
	ck_assert_int_eq(o.full_policy, UPG_FULL_OVERCOMMIT);
	ck_assert_int_eq(options_validate(&o), 0);
}
END_TEST

START_TEST(sizes_parse)
{
	static const struct {
		const char *s;
		uint64_t v;
	} ok[] = {
		{ "0", 0 },	    { "4096", 4096 },	   { "1k", 1024 },
		{ "512M", 512 * MIB }, { "2G", 2 * GIB },	   { "2GiB", 2 * GIB },
		{ "3gb", 3 * GIB }, { "1T", TIB },
	};
	static const char *const bad[] = {
		"", "M", "-1", "1.5G", "12X", "1GG", " 1G", "1G ",
		"99999999999999999999", "17179869184T",
	};
	uint64_t v;

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		ck_assert_msg(parse_size(ok[i].s, &v) == 0, "%s", ok[i].s);
		ck_assert_uint_eq(v, ok[i].v);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(parse_size(bad[i], &v) == -EINVAL, "'%s'", bad[i]);
}
END_TEST

START_TEST(environment_applies)
{
	struct upg_options o;

	upg_options_init(&o);
	setenv("UPAGER_MEM_LIMIT", "256M", 1);
	setenv("UPAGER_CODEC", "zstd", 1);
	setenv("UPAGER_HANDLERS", "3", 1);
	setenv("UPAGER_SWAP_DIR", "/tmp", 1);
	setenv("UPAGER_LOG", "debug", 1);
	ck_assert_int_eq(upg_options_from_env(&o), 5);
	ck_assert_uint_eq(o.mem_limit, 256 * MIB);
	ck_assert_int_eq(o.codec, UPG_CODEC_ZSTD);
	ck_assert_uint_eq(o.handlers, 3);
	ck_assert_str_eq(o.swap_dir, "/tmp");
	ck_assert_int_eq(o.log_level, UPG_LOG_DEBUG);
}
END_TEST

/* Run upg_options_from_env with one bad variable; capture stderr. */
static void expect_bad_env(const char *name, const char *value,
			   const char *accepted)
{
	struct upg_options o, before;
	char err[1024] = { 0 };
	int pipefd[2], saved;
	ssize_t n;

	upg_options_init(&o);
	setenv("UPAGER_MEM_LIMIT", "64M", 1);	/* a good one alongside */
	setenv(name, value, 1);
	before = o;
	ck_assert_int_eq(pipe(pipefd), 0);
	saved = dup(2);
	dup2(pipefd[1], 2);
	ck_assert_int_eq(upg_options_from_env(&o), -EINVAL);
	dup2(saved, 2);
	close(pipefd[1]);
	n = read(pipefd[0], err, sizeof(err) - 1);
	close(pipefd[0]);
	ck_assert_int_gt(n, 0);
	/* Nothing applied, not even the good variable. */
	ck_assert_mem_eq(&o, &before, sizeof(o));
	/* The message names the variable, the value and what is accepted. */
	ck_assert_msg(strstr(err, name), "no name in: %s", err);
	ck_assert_msg(strstr(err, value), "no value in: %s", err);
	ck_assert_msg(strstr(err, accepted), "no '%s' in: %s", accepted, err);
	ck_assert_msg(strstr(upg_last_error(), name), "last error: %s",
		      upg_last_error());
	unsetenv(name);
}

START_TEST(bad_values_are_named)
{
	expect_bad_env("UPAGER_MEM_LIMIT", "12X", "suffix");
	expect_bad_env("UPAGER_CODEC", "gzip", "lz4, zstd or none");
	expect_bad_env("UPAGER_HANDLERS", "0", "from 1 to 64");
	expect_bad_env("UPAGER_HANDLERS", "65", "from 1 to 64");
	expect_bad_env("UPAGER_FAULT_AROUND", "abc", "from 1 to 512");
	expect_bad_env("UPAGER_FULL_POLICY", "panic", "overcommit or sigbus");
	expect_bad_env("UPAGER_SWAP_SIZE", "10", "from 1048576");
	expect_bad_env("UPAGER_LOG", "loud", "none, error, warn, info or debug");
	expect_bad_env("UPAGER_SWAP_DIR", "", "non-empty");
	expect_bad_env("UPAGER_RAM_TIER", "95", "from 0 to 90");
	expect_bad_env("UPAGER_IDLE_POLL", "yes", "from 0 to 1");
}
END_TEST

START_TEST(set_by_name)
{
	struct upg_options o;

	upg_options_init(&o);
	ck_assert_int_eq(upg_options_set(&o, "UPAGER_CODEC", "none"), 0);
	ck_assert_int_eq(o.codec, UPG_CODEC_NONE);
	ck_assert_uint_eq(o.ram_tier, 25);
	ck_assert_uint_eq(o.ram_tier_max, 25);
	ck_assert_int_eq(upg_options_set(&o, "UPAGER_RAM_TIER", "50"), 0);
	ck_assert_uint_eq(o.ram_tier, 50);
	ck_assert_int_eq(upg_options_set(&o, "UPAGER_RAM_TIER_MAX", "75"), 0);
	ck_assert_uint_eq(o.ram_tier_max, 75);
	ck_assert_int_eq(upg_options_set(&o, "UPAGER_RAM_TIER_MAX", "91"),
			 -EINVAL);
	ck_assert_uint_eq(o.probation, 0);
	ck_assert_int_eq(upg_options_set(&o, "UPAGER_PROBATION", "12"), 0);
	ck_assert_uint_eq(o.probation, 12);
	ck_assert_int_eq(upg_options_set(&o, "UPAGER_PROBATION", "51"),
			 -EINVAL);
	ck_assert_int_eq(upg_options_set(&o, "UPAGER_NOPE", "1"), -ENOENT);
	ck_assert_int_eq(upg_options_set(NULL, "UPAGER_CODEC", "none"),
			 -EINVAL);
	ck_assert_int_eq(upg_options_set(&o, "UPAGER_CODEC", NULL), -EINVAL);
	ck_assert_int_eq(upg_options_from_env(NULL), -EINVAL);
}
END_TEST

START_TEST(validate_catches_fields)
{
	struct upg_options o;

	upg_options_init(&o);
	o.handlers = 0;
	ck_assert_int_eq(options_validate(&o), -EINVAL);
	ck_assert_ptr_nonnull(strstr(upg_last_error(), "UPAGER_HANDLERS"));
	upg_options_init(&o);
	o.codec = 7;
	ck_assert_int_eq(options_validate(&o), -EINVAL);
	upg_options_init(&o);
	o.size = 8;
	ck_assert_int_eq(options_validate(&o), -EINVAL);
	/* The probation list and the RAM tier leave resident pages room. */
	upg_options_init(&o);
	o.probation = 50;
	o.ram_tier_max = 40;
	ck_assert_int_eq(options_validate(&o), 0);
	o.ram_tier_max = 41;
	ck_assert_int_eq(options_validate(&o), -EINVAL);
	ck_assert_ptr_nonnull(strstr(upg_last_error(), "UPAGER_PROBATION"));
	o.ram_tier_max = 25;
	o.ram_tier = 41;
	ck_assert_int_eq(options_validate(&o), -EINVAL);
	o.ram_tier = 25;
	o.probation = 51;
	ck_assert_int_eq(options_validate(&o), -EINVAL);
	/* And the runtime refuses such options without crashing. */
	upg_options_init(&o);
	o.fault_around = 0;
	{
		struct upg_runtime *rt = NULL;

		ck_assert_int_eq(upg_runtime_create(&o, &rt), -EINVAL);
		ck_assert_ptr_null(rt);
	}
}
END_TEST

Suite *make_suite(void)
{
	Suite *s = suite_create("config");

	ADD_TEST(s, defaults_are_sane, 30);
	ADD_TEST(s, sizes_parse, 30);
	ADD_TEST(s, environment_applies, 30);
	ADD_TEST(s, bad_values_are_named, 30);
	ADD_TEST(s, set_by_name, 30);
	ADD_TEST(s, validate_catches_fields, 30);
	return s;
}
