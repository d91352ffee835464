/* SPDX-License-Identifier: MIT */
/* A runtime publishes its statistics while it lives, where it is told,
 * and not at all when told "off". */
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "statsfile.h"
#include "testlib.h"

const bool test_needs_uffd = true;

static char base[PATH_MAX], dir[PATH_MAX + 8];

/* A fresh directory name whose parent exists: the runtime creates it. */
static void make_dirs(void)
{
	snprintf(base, sizeof(base), "/tmp/upager-publish-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(base));
	snprintf(dir, sizeof(dir), "%s/stats", base);
}

static void remove_dirs(void)
{
	char cmd[PATH_MAX + 16];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", base);
	ck_assert_int_eq(system(cmd), 0);
}

/* The one statistics file in dir, "" if none; fails on more. */
static void only_file(char *out, size_t len)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	pid_t pid;
	unsigned n;

	out[0] = '\0';
	if (!d)
		return;
	while ((e = readdir(d))) {
		if (!statsfile_name(e->d_name, &pid, &n))
			continue;
		ck_assert_msg(!out[0], "two files: %s, %s", out, e->d_name);
		ck_assert_int_eq(pid, getpid());
		snprintf(out, len, "%s", e->d_name);
	}
	closedir(d);
}

START_TEST(publishes_while_alive)
{
	static struct statsfile f;
	struct upg_options o;
	struct upg_runtime *rt;
	struct upg_region *r;
	char name[256], path[PATH_MAX * 2];
	struct stat st;
	char *p;
	int dirfd;

	make_dirs();
	upg_options_init(&o);
	o.stats_dir = dir;
	rt = test_runtime_opts(&o);
	only_file(name, sizeof(name));
	ck_assert_msg(name[0], "no statistics file in %s", dir);
	ck_assert_int_eq(stat(dir, &st), 0);
	ck_assert_uint_eq(st.st_mode & 0777, 0700);
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_uint_eq(st.st_mode & 0777, 0600);

	p = test_region(rt, 64 * TPAGE, &r);
	for (int i = 0; i < 64; i++)
		p[i * TPAGE] = 1;
	dirfd = open(dir, O_RDONLY | O_DIRECTORY);
	ck_assert_int_ge(dirfd, 0);
	/* Refreshed every PUBLISH_MS: within seconds, even loaded. */
	for (int i = 0; i < 300; i++) {
		ck_assert_int_eq(statsfile_read(dirfd, name, &f), 0);
		if (f.data.stats.faults_total == test_stats(rt).faults_total &&
		    f.data.stats.regions == 1)
			break;
		usleep(20000);
	}
	ck_assert_uint_eq(f.data.stats.faults_total,
			  test_stats(rt).faults_total);
	ck_assert_uint_ge(f.data.stats.faults_total, 1);
	ck_assert_uint_eq(atomic_load(&f.data.hist[UPG_FAULT_ZERO_WRITE].count),
			  f.data.stats.faults[UPG_FAULT_ZERO_WRITE]);
	ck_assert_int_eq(f.pid, getpid());
	ck_assert(statsfile_live(dirfd, name, getpid()));
	close(dirfd);

	upg_runtime_destroy(rt);
	only_file(name, sizeof(name));
	ck_assert_msg(!name[0], "%s left after destroy", name);
	remove_dirs();
}
END_TEST

START_TEST(off_publishes_nothing)
{
	struct upg_options o;
	struct upg_runtime *rt;
	char name[256];

	make_dirs();
	ck_assert_int_eq(mkdir(dir, 0700), 0);
	upg_options_init(&o);
	setenv("UPAGER_STATS_DIR", "off", 1);
	ck_assert_int_eq(upg_options_from_env(&o), 1);
	unsetenv("UPAGER_STATS_DIR");
	ck_assert_str_eq(o.stats_dir, "off");
	rt = test_runtime_opts(&o);
	only_file(name, sizeof(name));
	ck_assert(!name[0]);
	upg_runtime_destroy(rt);
	remove_dirs();
}
END_TEST

/* A directory that cannot be had costs the statistics, not the runtime. */
START_TEST(unusable_dir_is_not_fatal)
{
	struct upg_options o;
	struct upg_runtime *rt;

	upg_options_init(&o);
	o.stats_dir = "/proc/upager-no-such-dir";
	o.log_level = UPG_LOG_NONE;
	rt = test_runtime_opts(&o);
	upg_runtime_destroy(rt);
}
END_TEST

Suite *make_suite(void)
{
	Suite *s = suite_create("publish");

	ADD_TEST(s, publishes_while_alive, 60);
	ADD_TEST(s, off_publishes_nothing, 30);
	ADD_TEST(s, unusable_dir_is_not_fatal, 30);
	return s;
}
