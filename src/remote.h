/* SPDX-License-Identifier: MIT */
/*
 * The remote tier's client: a memcached cluster, routed with libmemcached's
 * consistent hashing (ketama), spoken to in the binary protocol.
 *
 * Batches are the point: remote_set sends every item of a batch to its
 * servers (pipelined SETs, one NOOP fence per server) and then reads the
 * replies, so a batch costs one network round trip whatever its size, and
 * each item gets its own outcome (stored, refused because the server is
 * full, failed).  libmemcached's buffered sets would pipeline too, but
 * their replies are read and dropped behind the caller's back, and a
 * refused page must go to the swap file instead.  remote_get is the same
 * with quiet GETs (a miss has no reply).
 *
 * Keys: "upg:<16 hex digits: runtime id>:<hex key>", with `key` the
 * store's object index.  Copy c of a key (0 = primary, 1..replicas) lives
 * on the c-th server after the key's ketama server.
 *
 * Bounded waits: one deadline per call (timeout_ms); a server that misses
 * it, or whose connection fails, is marked dead for REMOTE_RETRY_MS and
 * skipped (its items fail at once) until then.
 *
 * Threads: any thread may call at once; each call takes one of a few
 * channels (a connection per server each) for its duration.
 */
#ifndef UPAGER_REMOTE_H
#define UPAGER_REMOTE_H

#include <stdint.h>

#define REMOTE_RETRY_MS 2000	/* a dead server is tried again after this */
#define REMOTE_KEY_MAX 48

struct remote;

struct remote_config {
	const char *servers;	/* "host:port[,host:port...]" */
	unsigned replicas;	/* extra copies, < number of servers */
	unsigned timeout_ms;	/* bound of one call */
	uint64_t id;		/* runtime id: the key prefix */
};

/* One item of a batch.  For remote_set: val/len in, res out (0 stored,
 * -ENOSPC refused: server full, -EIO or -ETIMEDOUT).  For remote_get: buf/
 * cap in, res out (the value's length, -ENOENT missing, -E2BIG longer than
 * cap, -EIO or -ETIMEDOUT).  server: the server of the copy, out. */
struct remote_item {
	uint64_t key;
	const void *val;
	void *buf;
	uint32_t len, cap;
	int res;
	int server;
};

struct remote_stats {
	uint64_t sets, set_bytes, set_refused, gets, get_bytes, misses;
	uint64_t errors, timeouts, deletes;
	uint64_t rounds;	/* network round trips (calls that did I/O) */
	uint64_t batches;	/* remote_set calls */
};

/* -EINVAL bad server list (logged: the value and what is accepted),
 * -EHOSTUNREACH no server answered, -ENOMEM.  Servers that do not answer
 * while others do are logged and marked dead. */
int remote_create(const struct remote_config *cfg, struct remote **out);
void remote_destroy(struct remote *r);

/* Store copies 0..replicas of every item: res 0 if at least one copy was
 * stored.  The keys del[0..ndel) are deleted first, in the same round. */
void remote_set(struct remote *r, struct remote_item *it, unsigned n,
		const uint64_t *del, unsigned ndel);
/* Fetch copy `copy` of every item. */
void remote_get(struct remote *r, unsigned copy, struct remote_item *it,
		unsigned n);
/* Delete every copy of the keys (quiet, best effort). */
void remote_delete(struct remote *r, const uint64_t *keys, unsigned n);

unsigned remote_replicas(const struct remote *r);
/* "host:port" of a server, for log lines. */
const char *remote_server_name(const struct remote *r, int server);
void remote_key(const struct remote *r, uint64_t key, char *out);
void remote_get_stats(struct remote *r, struct remote_stats *out);

#endif
