/* SPDX-License-Identifier: MIT */
/* Unit tests of the live statistics files: stale ones cleaned, a format
 * not ours refused, a record read whole. */
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "statsfile.h"
#include "testlib.h"

const bool test_needs_uffd = false;

static char dir[PATH_MAX];

static void make_dir(void)
{
	snprintf(dir, sizeof(dir), "/tmp/upager-statsfile-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void remove_dir(void)
{
	char cmd[PATH_MAX + 16];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	ck_assert_int_eq(system(cmd), 0);
}

static bool exists(const char *name)
{
	char path[PATH_MAX * 2];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return access(path, F_OK) == 0;
}

/* Write f as the file `name` of dir; return its descriptor. */
static int put_file(const char *name, const struct statsfile *f)
{
	char path[PATH_MAX * 2];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pwrite(fd, f, sizeof(*f), 0), (ssize_t)sizeof(*f));
	return fd;
}

/* A pid that surely is no process now: a child that has been reaped. */
static pid_t dead_pid(void)
{
	pid_t pid = fork();

	ck_assert_int_ge(pid, 0);
	if (pid == 0)
		_exit(0);
	ck_assert_int_eq(waitpid(pid, NULL, 0), pid);
	return pid;
}

START_TEST(stale_files_are_cleaned)
{
	static struct statsfile f;
	pid_t dead = dead_pid(), self = getpid();
	char n_dead[64], n_unmapped[64], n_live[64], t_dead[64], t_live[64];
	void *map;
	int fd;

	make_dir();
	statsfile_init(&f, self, "test");
	snprintf(n_dead, sizeof(n_dead), "%d-0.stats", (int)dead);
	snprintf(n_unmapped, sizeof(n_unmapped), "%d-7.stats", (int)self);
	snprintf(n_live, sizeof(n_live), "%d-8.stats", (int)self);
	snprintf(t_dead, sizeof(t_dead), ".%d-1.tmp", (int)dead);
	snprintf(t_live, sizeof(t_live), ".%d-2.tmp", (int)self);
	close(put_file(n_dead, &f));
	/* Our pid, but no mapping: what an image before exec() left. */
	close(put_file(n_unmapped, &f));
	/* Ours and mapped: a live runtime's. */
	fd = put_file(n_live, &f);
	map = mmap(NULL, sizeof(f), PROT_READ, MAP_SHARED, fd, 0);
	ck_assert_ptr_ne(map, MAP_FAILED);
	close(fd);
	close(put_file(t_dead, &f));
	close(put_file(t_live, &f));
	close(put_file("notes.txt", &f));

	ck_assert_int_eq(statsfile_clean(dir), 3);
	ck_assert(!exists(n_dead));
	ck_assert(!exists(n_unmapped));
	ck_assert(!exists(t_dead));
	ck_assert(exists(n_live));
	ck_assert(exists(t_live));
	ck_assert(exists("notes.txt"));
	/* Unmapped, it is stale too. */
	munmap(map, sizeof(f));
	ck_assert_int_eq(statsfile_clean(dir), 1);
	ck_assert(!exists(n_live));
	remove_dir();
}
END_TEST

START_TEST(names_parse)
{
	pid_t pid;
	unsigned n;

	ck_assert(statsfile_name("123-4.stats", &pid, &n));
	ck_assert_int_eq(pid, 123);
	ck_assert_uint_eq(n, 4);
	ck_assert(!statsfile_name("123-4.stats~", &pid, &n));
	ck_assert(!statsfile_name("123.stats", &pid, &n));
	ck_assert(!statsfile_name("0-1.stats", &pid, &n));
	ck_assert(!statsfile_name(".123-4.tmp", &pid, &n));
	ck_assert(!statsfile_name("x123-4.stats", &pid, &n));
}
END_TEST

START_TEST(other_formats_are_refused)
{
	static struct statsfile f, out;
	int dirfd, fd;

	make_dir();
	dirfd = open(dir, O_RDONLY | O_DIRECTORY);
	ck_assert_int_ge(dirfd, 0);
	statsfile_init(&f, getpid(), "test");
	f.data.stats.faults_total = 42;
	close(put_file("1-0.stats", &f));
	ck_assert_int_eq(statsfile_read(dirfd, "1-0.stats", &out), 0);
	ck_assert_uint_eq(out.data.stats.faults_total, 42);
	ck_assert_str_eq(out.command, "test");

	f.version = STATSFILE_VERSION + 1;
	close(put_file("2-0.stats", &f));
	ck_assert_int_eq(statsfile_read(dirfd, "2-0.stats", &out), -EPROTO);
	ck_assert_uint_eq(out.version, STATSFILE_VERSION + 1);

	f.version = STATSFILE_VERSION;
	memcpy(f.magic, "NOTOURS", 8);
	close(put_file("3-0.stats", &f));
	ck_assert_int_eq(statsfile_read(dirfd, "3-0.stats", &out), -EPROTO);

	/* A shorter record (another version's): its header is read. */
	memcpy(f.magic, STATSFILE_MAGIC, 8);
	f.version = 0;
	fd = put_file("4-0.stats", &f);
	ck_assert_int_eq(ftruncate(fd, 100), 0);
	close(fd);
	ck_assert_int_eq(statsfile_read(dirfd, "4-0.stats", &out), -EPROTO);
	ck_assert_uint_eq(out.version, 0);

	/* A writer that died inside a refresh: never readable. */
	f.version = STATSFILE_VERSION;
	atomic_store(&f.seq, 1);
	close(put_file("5-0.stats", &f));
	ck_assert_int_eq(statsfile_read(dirfd, "5-0.stats", &out), -EAGAIN);
	close(dirfd);
	remove_dir();
}
END_TEST

Suite *make_suite(void)
{
	Suite *s = suite_create("statsfile");

	ADD_TEST(s, stale_files_are_cleaned, 30);
	ADD_TEST(s, names_parse, 10);
	ADD_TEST(s, other_formats_are_refused, 30);
	return s;
}
