/* SPDX-License-Identifier: MIT */
/*
 * The remote tier for the swap rows: `--remote HOSTS`, or, for the
 * swapin-remote row without it, three memcached servers of our own on
 * loopback (-M: they refuse rather than evict, as upager's tier wants),
 * started on first use.  They get SIGTERM when upager-bench ends, however
 * it ends (PR_SET_PDEATHSIG), and are killed and reaped at a normal exit.
 */
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"

#define SERVERS 3
#define SERVER_MIB "256"

static struct {
	bool tried;
	char hosts[128];
	char reason[REASON_LEN];
	pid_t pid[SERVERS];
} own;

/* A loopback port nobody listens on now. */
static int free_port(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET,
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), port = -1;

	if (fd >= 0 && !bind(fd, (struct sockaddr *)&a, len) &&
	    !getsockname(fd, (struct sockaddr *)&a, &len))
		port = ntohs(a.sin_port);
	if (fd >= 0)
		close(fd);
	return port;
}

static bool answers(int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET,
				 .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool ok = fd >= 0 && !connect(fd, (struct sockaddr *)&a, sizeof(a));

	if (fd >= 0)
		close(fd);
	return ok;
}

static void stop_servers(void)
{
	for (int i = 0; i < SERVERS; i++)
		if (own.pid[i] > 0) {
			kill(own.pid[i], SIGKILL);
			waitpid(own.pid[i], NULL, 0);
			own.pid[i] = 0;
		}
}

static pid_t start_server(const char *bin, int port)
{
	char p[16];
	pid_t pid;

	snprintf(p, sizeof(p), "%d", port);
	pid = fork();
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		execl(bin, bin, "-M", "-m", SERVER_MIB, "-l", "127.0.0.1",
		      "-p", p, "-U", "0", "-u", "nobody", (char *)NULL);
		_exit(127);
	}
	return pid;
}

static const char *memcached_path(void)
{
	static const char *const dirs[] = { "/usr/bin", "/usr/local/bin",
					    "/usr/sbin", NULL };
	static char path[64];

	for (int i = 0; dirs[i]; i++) {
		snprintf(path, sizeof(path), "%s/memcached", dirs[i]);
		if (!access(path, X_OK))
			return path;
	}
	return NULL;
}

static bool start_own(void)
{
	const char *bin = memcached_path();
	size_t len = 0;

	if (!bin) {
		snprintf(own.reason, sizeof(own.reason), "no memcached binary "
			 "(Debian package memcached), and no --remote");
		return false;
	}
	atexit(stop_servers);
	for (int i = 0; i < SERVERS; i++) {
		int port = free_port(), tries;

		own.pid[i] = port > 0 ? start_server(bin, port) : -1;
		for (tries = 0; own.pid[i] > 0 && tries < 200 && !answers(port);
		     tries++)
			usleep(10000);
		if (own.pid[i] <= 0 || tries == 200) {
			snprintf(own.reason, sizeof(own.reason), "memcached on "
				 "port %d did not start", port);
			stop_servers();
			return false;
		}
		len += (size_t)snprintf(own.hosts + len, sizeof(own.hosts) - len,
					"%s127.0.0.1:%d", i ? "," : "", port);
	}
	return true;
}

const char *remote_hosts(const struct bench *b, const struct scenario *sc,
			 const char **reason)
{
	*reason = NULL;
	if (b->cfg.remote && (sc->remote || sc->remote_given))
		return b->cfg.remote;
	if (!sc->remote)
		return NULL;
	if (!own.tried) {
		own.tried = true;
		if (!start_own())
			own.hosts[0] = '\0';
	}
	if (!own.hosts[0])
		*reason = own.reason;
	return own.hosts[0] ? own.hosts : NULL;
}
