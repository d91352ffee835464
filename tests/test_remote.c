/* SPDX-License-Identifier: MIT */
/*
 * The remote tier (UPAGER_REMOTE) on three memcached servers of the test's
 * own, and sealing (UPAGER_ENCRYPT).
 *
 * Each test case starts its servers (memcached -M, loopback, free ports)
 * in an unchecked fixture, in the runner process, and kills them in its
 * teardown, which runs however the test (in a forked child) ended; they
 * also die with the runner (PR_SET_PDEATHSIG).  Skips (77) when the
 * memcached binary is not installed.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testlib.h"

const bool test_needs_uffd = true;

#define NSRV 3
#define BUDGET (2 * MIB)
#define REGION (8 * BUDGET)		/* 8x the budget */
#define NPAGES (REGION / TPAGE)

static pid_t srv_pid[NSRV];
static int srv_port[NSRV];
static int srv_mb = 64;			/* memory of each server */
static char servers[128];		/* "127.0.0.1:p1,..." */

/* ---- servers ------------------------------------------------------------- */

static int free_port(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	port = ntohs(a.sin_port);
	close(fd);
	return port;
}

static int mc_connect(int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET,
				 .sin_port = htons((uint16_t)port) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&a, sizeof(a))) {
		close(fd);
		return -1;
	}
	return fd;
}

static pid_t spawn_memcached(int port)
{
	char p[16], m[16];
	pid_t pid;

	snprintf(p, sizeof(p), "%d", port);
	snprintf(m, sizeof(m), "%d", srv_mb);
	pid = fork();
	if (pid == 0) {
		int null = open("/dev/null", O_RDWR);

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		dup2(null, 1);
		dup2(null, 2);
		execlp("memcached", "memcached", "-M", "-m", m, "-p", p,
		       "-U", "0", "-l", "127.0.0.1", "-t", "1", "-u",
		       geteuid() == 0 ? "root" : "nobody", (char *)NULL);
		_exit(127);
	}
	/* Up when it accepts a connection (5 s at most). */
	for (int i = 0; i < 500; i++) {
		int fd = mc_connect(port);

		if (fd >= 0) {
			close(fd);
			return pid;
		}
		usleep(10000);
	}
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	return -1;
}

/* Kill server i; returns when its port no longer accepts (the test
 * itself, a forked child, cannot reap it: the runner does). */
static void srv_kill(int i)
{
	if (srv_pid[i] > 0) {
		kill(srv_pid[i], SIGKILL);
		waitpid(srv_pid[i], NULL, WNOHANG);
		for (int t = 0; t < 500; t++) {
			int fd = mc_connect(srv_port[i]);

			if (fd < 0)
				break;
			close(fd);
			usleep(10000);
		}
	}
	srv_pid[i] = 0;
}

static void servers_start(void)
{
	size_t len = 0;

	for (int i = 0; i < NSRV; i++) {
		srv_port[i] = free_port();
		srv_pid[i] = spawn_memcached(srv_port[i]);
		len += (size_t)snprintf(servers + len, sizeof(servers) - len,
					"%s127.0.0.1:%d", i ? "," : "",
					srv_port[i]);
	}
}

static void servers_stop(void)
{
	for (int i = 0; i < NSRV; i++)
		srv_kill(i);
}

static void servers_start_small(void)
{
	srv_mb = 2;
	servers_start();
}

static void servers_stop_small(void)
{
	servers_stop();
	srv_mb = 64;
}

/* Send a text-protocol command, read the reply up to `end`. */
static size_t mc_cmd(int port, const void *cmd, size_t cmdlen,
		     const char *end, char *buf, size_t cap)
{
	int fd = mc_connect(port);
	size_t n = 0;

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, cmd, cmdlen), (ssize_t)cmdlen);
	buf[0] = '\0';
	while (n + 1 < cap && !(n >= strlen(end) &&
				!memcmp(buf + n - strlen(end), end,
					strlen(end)))) {
		ssize_t got = read(fd, buf + n, cap - n - 1);

		if (got <= 0)
			break;
		n += (size_t)got;
		buf[n] = '\0';
	}
	close(fd);
	return n;
}

static long mc_items(int port)
{
	char buf[8192];
	const char *s;

	mc_cmd(port, "stats\r\n", 7, "END\r\n", buf, sizeof(buf));
	s = strstr(buf, "STAT curr_items ");
	ck_assert_ptr_nonnull(s);
	return strtol(s + 16, NULL, 10);
}

/* The first `max` keys the server holds (lru_crawler metadump). */
static int mc_keys(int port, char keys[][64], int max)
{
	static char buf[1 << 20];
	char *line, *save;
	int n = 0;

	mc_cmd(port, "lru_crawler metadump all\r\n", 26, "END\r\n", buf,
	       sizeof(buf));
	for (line = strtok_r(buf, "\n", &save); line && n < max;
	     line = strtok_r(NULL, "\n", &save)) {
		char *k = keys[n];

		if (strncmp(line, "key=", 4))
			continue;
		sscanf(line + 4, "%63s", k);
		/* URL-encoded: upager's keys have colons. */
		for (char *c; (c = strstr(k, "%3A"));
		     memmove(c + 1, c + 3, strlen(c + 3) + 1))
			*c = ':';
		n++;
	}
	return n;
}

/* The value of `key` on the server (length returned). */
static size_t mc_get(int port, const char *key, char *val, size_t cap)
{
	char cmd[128], buf[16384];
	unsigned flags, len;
	char *data;
	int cmdlen = snprintf(cmd, sizeof(cmd), "get %s\r\n", key);

	mc_cmd(port, cmd, (size_t)cmdlen, "END\r\n", buf, sizeof(buf));
	ck_assert_msg(sscanf(buf, "VALUE %*s %u %u", &flags, &len) == 2,
		      "no value for %s: %.60s", key, buf);
	ck_assert_uint_le(len, cap);
	data = strstr(buf, "\r\n") + 2;
	memcpy(val, data, len);
	return len;
}

static void mc_set(int port, const char *key, const char *val, size_t len)
{
	char cmd[16384], buf[256];
	int n = snprintf(cmd, sizeof(cmd), "set %s 0 0 %zu\r\n", key, len);

	memcpy(cmd + n, val, len);
	memcpy(cmd + n + len, "\r\n", 2);
	mc_cmd(port, cmd, (size_t)n + len + 2, "\r\n", buf, sizeof(buf));
	ck_assert_str_eq(buf, "STORED\r\n");
}

/* ---- the pager ----------------------------------------------------------- */

static struct upg_runtime *remote_runtime(unsigned handlers,
					  unsigned replicas)
{
	struct upg_options o;

	upg_options_init(&o);
	o.handlers = handlers;
	o.mem_limit = BUDGET;
	o.remote = servers;
	o.remote_replicas = replicas;
	/* Generous: a batch timed out on a loaded machine leaves its pages
	 * in the file and its keys orphaned (swept at destroy), and a test
	 * that picks a key must find a live one. */
	o.remote_timeout_ms = 10000;
	return test_runtime_opts(&o);
}

static void fill(char *p, size_t npages, uint64_t tag)
{
	for (size_t i = 0; i < npages; i++)
		fill_page(p + i * TPAGE, i, tag);
}

/* Touch every page: how many raised SIGBUS; every other one must hold
 * exactly what was written. */
static size_t check_all(char *p, size_t npages, uint64_t tag)
{
	size_t bus = 0;

	for (size_t i = 0; i < npages; i++) {
		if (touch_bus(p + i * TPAGE)) {
			bus++;
			continue;
		}
		ck_assert_msg(check_page(p + i * TPAGE, i, tag),
			      "page %zu reads wrong", i);
	}
	return bus;
}

static long items_total(void)
{
	long n = 0;

	for (int i = 0; i < NSRV; i++)
		n += srv_pid[i] > 0 ? mc_items(srv_port[i]) : 0;
	return n;
}

/* ---- tests --------------------------------------------------------------- */

struct worker {
	char *p;
	size_t first, n;
	uint64_t seed;
};

/* Random writes and reads of one quarter of the region, checked. */
static void *work(void *arg)
{
	struct worker *w = arg;
	uint64_t s = w->seed, *tags = calloc(w->n, sizeof(*tags));

	for (int round = 0; round < 6000; round++) {
		size_t i = rnd(&s) % w->n;
		char *page = w->p + (w->first + i) * TPAGE;

		if (rnd(&s) % 3 == 0 || !tags[i]) {
			tags[i] = round + 1;
			fill_page(page, w->first + i, tags[i]);
		} else if (!check_page(page, w->first + i, tags[i])) {
			free(tags);
			return (void *)1;
		}
	}
	for (size_t i = 0; i < w->n; i++) {
		if (tags[i] && !check_page(w->p + (w->first + i) * TPAGE,
					   w->first + i, tags[i])) {
			free(tags);
			return (void *)1;
		}
	}
	free(tags);
	return NULL;
}

START_TEST(test_integrity_threads)
{
	struct upg_runtime *rt = remote_runtime(2, 0);
	struct upg_region *r;
	char *p = test_region(rt, REGION, &r);
	struct worker w[4];
	pthread_t t[4];
	struct upg_stats st;

	for (int i = 0; i < 4; i++) {
		w[i] = (struct worker){ p, i * NPAGES / 4, NPAGES / 4,
					0x1234567u + (uint64_t)i };
		ck_assert_int_eq(pthread_create(&t[i], NULL, work, &w[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		void *bad;

		pthread_join(t[i], &bad);
		ck_assert_msg(!bad, "thread %d read a wrong page", i);
	}
	st = test_stats(rt);
	ck_assert_uint_gt(st.remote_sets, 0);
	ck_assert_uint_gt(st.swapin_from_remote, 0);
	ck_assert_uint_eq(st.poisoned, 0);
	for (int i = 0; i < NSRV; i++)
		ck_assert_msg(mc_items(srv_port[i]) > 0,
			      "server %d holds no page", i);
	/* Batched: far fewer round trips than objects stored. */
	ck_assert_uint_lt(st.remote_batches * 4, st.remote_sets);
	upg_runtime_destroy(rt);
	ck_assert_int_eq(items_total(), 0);
}
END_TEST

/* Fill 8x the budget; most pages go to the cluster.  Returns once the
 * evictor is done (the remote objects stay put for 200 ms). */
static char *fill_remote(struct upg_runtime *rt, struct upg_region **r,
			 uint64_t tag)
{
	char *p = test_region(rt, REGION, r);
	uint64_t last = UINT64_MAX, now;

	fill(p, NPAGES, tag);
	while ((now = test_stats(rt).store_remote_objects) != last) {
		last = now;
		usleep(200000);
	}
	ck_assert_uint_gt(now, NPAGES / 2);
	/* Nothing read back yet: every round trip so far is an eviction
	 * batch's, but the probe at start. */
	ck_assert_uint_eq(test_stats(rt).remote_rounds,
			  test_stats(rt).remote_batches + 1);
	return p;
}

START_TEST(test_kill_with_replica)
{
	struct upg_runtime *rt = remote_runtime(1, 1);
	struct upg_region *r;
	char *p = fill_remote(rt, &r, 7);

	srv_kill(1);
	ck_assert_uint_eq(check_all(p, NPAGES, 7), 0);
	ck_assert_uint_eq(test_stats(rt).poisoned, 0);
	upg_runtime_destroy(rt);
}
END_TEST

/* Without replicas, the pages on the killed server are lost, and only
 * they: SIGBUS for each, never wrong data. */
static void lose_server(bool restart)
{
	struct upg_runtime *rt = remote_runtime(1, 0);
	struct upg_region *r;
	char *p = fill_remote(rt, &r, 9);
	long on_it = mc_items(srv_port[1]);
	size_t bus;

	ck_assert_int_gt(on_it, 0);
	srv_kill(1);
	if (restart) {
		srv_pid[1] = spawn_memcached(srv_port[1]);
		ck_assert_int_gt(srv_pid[1], 0);
	}
	bus = check_all(p, NPAGES, 9);
	ck_assert_uint_eq(bus, (size_t)on_it);
	ck_assert_uint_eq(test_stats(rt).poisoned, bus);
	/* Lost pages stay lost: a second touch is SIGBUS again. */
	ck_assert_uint_eq(check_all(p, NPAGES, 9), bus);
	upg_runtime_destroy(rt);
}

START_TEST(test_kill_without_replica)
{
	lose_server(false);
}
END_TEST

START_TEST(test_restart_empty)
{
	lose_server(true);
}
END_TEST

/* Overwrite one value behind upager's back (one byte flipped), or copy
 * another key's value over it: that page, and only it, is SIGBUS. */
static void tamper(bool copy)
{
	struct upg_runtime *rt = remote_runtime(1, 0);
	struct upg_region *r;
	char *p = fill_remote(rt, &r, 11);
	char keys[2][64], val[8192];
	size_t len;

	ck_assert_int_eq(mc_keys(srv_port[0], keys, 2), 2);
	len = mc_get(srv_port[0], keys[0], val, sizeof(val));
	if (!copy)
		val[len / 2] ^= 0x20;
	mc_set(srv_port[0], keys[copy ? 1 : 0], val, len);
	ck_assert_uint_eq(check_all(p, NPAGES, 11), 1);
	/* Counted once per read: a read-ahead's and the page's own. */
	ck_assert_uint_ge(test_stats(rt).seal_errors, 1);
	upg_runtime_destroy(rt);
}

START_TEST(test_tampered)
{
	tamper(false);
}
END_TEST

START_TEST(test_copied)
{
	tamper(true);
}
END_TEST

/* A server that accepts and never answers. */
static void *silent(void *arg)
{
	int fd = *(int *)arg, c[16], n = 0;

	while (n < 16 && (c[n] = accept(fd, NULL, NULL)) >= 0)
		n++;
	return NULL;
}

START_TEST(test_silent_server)
{
	struct upg_options o;
	struct upg_runtime *rt;
	struct upg_region *r;
	struct sockaddr_in a = { .sin_family = AF_INET,
				 .sin_port = htons((uint16_t)srv_port[1]) };
	int one = 1, fd;
	pthread_t t;
	char *p;
	uint64_t worst = 0;
	size_t bus = 0;

	upg_options_init(&o);
	o.mem_limit = BUDGET;
	o.remote = servers;
	o.remote_timeout_ms = 200;
	rt = test_runtime_opts(&o);
	p = fill_remote(rt, &r, 13);
	/* Server 1 dies; a listener that never answers takes its port. */
	srv_kill(1);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	ck_assert_int_eq(listen(fd, 64), 0);
	pthread_create(&t, NULL, silent, &fd);
	for (size_t i = 0; i < NPAGES; i++) {
		struct timespec t0, t1;
		uint64_t ns;

		clock_gettime(CLOCK_MONOTONIC, &t0);
		if (touch_bus(p + i * TPAGE))
			bus++;
		else
			ck_assert(check_page(p + i * TPAGE, i, 13));
		clock_gettime(CLOCK_MONOTONIC, &t1);
		ns = (uint64_t)(t1.tv_sec - t0.tv_sec) * 1000000000u +
		     (uint64_t)t1.tv_nsec - (uint64_t)t0.tv_nsec;
		worst = ns > worst ? ns : worst;
		/* Once the first server failure has passed, wait out its
		 * dead time so the silent server is asked again. */
		if (i == NPAGES / 2)
			usleep(2500 * 1000);
	}
	ck_assert_uint_gt(bus, 0);
	/* One timeout per fault at most (200 ms; the page's batch and its
	 * own get), with room for a loaded machine. */
	ck_assert_msg(worst < 1500000000u, "a fault took %llu ms",
		      (unsigned long long)(worst / 1000000));
	ck_assert_uint_gt(test_stats(rt).remote_timeouts, 0);
	upg_runtime_destroy(rt);
	shutdown(fd, SHUT_RDWR);
	close(fd);
	pthread_join(t, NULL);
}
END_TEST

START_TEST(test_unreachable)
{
	struct upg_options o;
	struct upg_runtime *rt = NULL;
	struct upg_region *r;
	char none[64];
	char *p;

	snprintf(none, sizeof(none), "127.0.0.1:%d", free_port());
	upg_options_init(&o);
	o.mem_limit = BUDGET;
	o.remote = none;
	o.log_level = UPG_LOG_NONE;
	ck_assert_int_eq(upg_runtime_create(&o, &rt), -EHOSTUNREACH);
	o.remote_optional = 1;
	rt = test_runtime_opts(&o);
	p = test_region(rt, REGION, &r);
	fill(p, NPAGES, 15);
	ck_assert_uint_eq(check_all(p, NPAGES, 15), 0);
	ck_assert_uint_eq(test_stats(rt).remote_sets, 0);
	upg_runtime_destroy(rt);
	ck_assert_int_eq(upg_options_set(&o, "UPAGER_REMOTE_REPLICAS", "64"),
			 -EINVAL);
}
END_TEST

/* Servers of 2 MB each: they fill up, the swap file takes the rest. */
START_TEST(test_servers_full)
{
	struct upg_runtime *rt = remote_runtime(1, 0);
	struct upg_region *r;
	char *p = test_region(rt, 4 * REGION, &r);
	struct upg_stats st;

	fill(p, 4 * NPAGES, 17);
	ck_assert_uint_eq(check_all(p, 4 * NPAGES, 17), 0);
	st = test_stats(rt);
	ck_assert_uint_gt(st.remote_sets, 0);
	ck_assert_uint_gt(st.remote_refused, 0);
	ck_assert_uint_gt(st.store_disk_objects, 0);
	/* over_budget is not asserted: once in a loaded run the evictor,
	 * waiting on a batch, let a fault go over (see the report). */
	upg_runtime_destroy(rt);
	ck_assert_int_eq(items_total(), 0);
}
END_TEST

/* ---- the sealed swap file ------------------------------------------------ */

#define MARKER "upager-plaintext-marker-7f3a"

/* Pages that compress, each carrying the marker in clear. */
static void fill_marked(char *p, size_t npages)
{
	for (size_t i = 0; i < npages; i++) {
		char *page = p + i * TPAGE;

		memset(page, 'a' + (int)(i % 26), TPAGE);
		snprintf(page + 64, 64, MARKER "%zu", i);
	}
}

/* Does the runtime's swap file (an unlinked file in `dir`) contain the
 * marker?  Found through /proc/self/fd. */
static bool swap_has_marker(const char *dir)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	bool found = false, seen = false;

	ck_assert_ptr_nonnull(d);
	while ((e = readdir(d))) {
		char path[300], link[PATH_MAX];
		ssize_t n;
		int fd;

		snprintf(path, sizeof(path), "/proc/self/fd/%s", e->d_name);
		n = readlink(path, link, sizeof(link) - 1);
		if (n <= 0)
			continue;
		link[n] = '\0';
		if (strncmp(link, dir, strlen(dir)))
			continue;
		seen = true;
		fd = open(path, O_RDONLY);
		ck_assert_int_ge(fd, 0);
		for (;;) {
			static char buf[1 << 20];
			ssize_t got = read(fd, buf, sizeof(buf));

			if (got <= 0)
				break;
			found |= memmem(buf, (size_t)got, MARKER,
					strlen(MARKER)) != NULL;
		}
		close(fd);
	}
	closedir(d);
	ck_assert_msg(seen, "no swap file in %s", dir);
	return found;
}

static void swap_file_case(bool encrypt)
{
	char dir[] = "/var/tmp/upager-remote-XXXXXX";
	struct upg_options o;
	struct upg_runtime *rt;
	struct upg_region *r;
	char *p;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	upg_options_init(&o);
	o.mem_limit = BUDGET;
	o.swap_dir = dir;
	o.encrypt = encrypt;
	rt = test_runtime_opts(&o);
	p = test_region(rt, 4 * REGION, &r);
	fill_marked(p, 4 * NPAGES);
	ck_assert_uint_gt(test_stats(rt).store_disk_objects, NPAGES);
	ck_assert(swap_has_marker(dir) == !encrypt);
	for (size_t i = 0; i < 4 * NPAGES; i++) {
		char want[64];

		snprintf(want, sizeof(want), MARKER "%zu", i);
		ck_assert_msg(!strcmp(p + i * TPAGE + 64, want) &&
			      p[i * TPAGE] == 'a' + (int)(i % 26),
			      "page %zu reads wrong", i);
	}
	ck_assert_uint_eq(test_stats(rt).poisoned, 0);
	upg_runtime_destroy(rt);
	rmdir(dir);
}

START_TEST(test_encrypted_swap_file)
{
	swap_file_case(true);
}
END_TEST

/* The control: without sealing, the test does see the marker. */
START_TEST(test_plain_swap_file)
{
	swap_file_case(false);
}
END_TEST

/* Each case with its own three servers. */
static void add_case(Suite *s, const TTest *t, const char *name, bool small)
{
	TCase *tc = tcase_create(name);

	tcase_add_unchecked_fixture(tc, small ? servers_start_small :
						servers_start,
				    small ? servers_stop_small : servers_stop);
	tcase_add_test(tc, t);
	tcase_set_timeout(tc, 300);
	suite_add_tcase(s, tc);
}

#define ADD_REMOTE(s, fn) add_case(s, fn, #fn, false)

static bool have_memcached(void)
{
	return system("command -v memcached >/dev/null 2>&1") == 0;
}

Suite *make_suite(void)
{
	Suite *s = suite_create("remote");

	if (!have_memcached()) {
		printf("SKIP: the memcached binary is not installed (Debian "
		       "package memcached; scripts/setup installs it)\n");
		exit(TEST_SKIP);
	}
	ADD_REMOTE(s, test_integrity_threads);
	ADD_REMOTE(s, test_kill_with_replica);
	ADD_REMOTE(s, test_kill_without_replica);
	ADD_REMOTE(s, test_restart_empty);
	ADD_REMOTE(s, test_tampered);
	ADD_REMOTE(s, test_copied);
	ADD_REMOTE(s, test_silent_server);
	ADD_REMOTE(s, test_unreachable);
	add_case(s, test_servers_full, "test_servers_full", true);
	ADD_TEST(s, test_encrypted_swap_file, 120);
	ADD_TEST(s, test_plain_swap_file, 120);
	return s;
}
