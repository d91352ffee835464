/* SPDX-License-Identifier: MIT */
/*
 * The remote tier's client (see remote.h).
 *
 * libmemcached keeps the server list and the ketama continuum; the data
 * path speaks the binary protocol on sockets of its own, so that a batch
 * is pipelined with an outcome per item and every wait has a deadline.
 *
 * Channels: NCHAN sets of connections, one per server each, each under its
 * own mutex for the whole of a call (a call never holds two).  The put
 * path (store's put_lock) and handler threads take whichever is free.
 * Server state (dead_until) is atomic and shared by all channels.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libmemcached/memcached.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "mem.h"
#include "remote.h"
#include "util.h"

#define NCHAN 8
#define MAX_SERVERS 64
#define IN_SIZE ((size_t)64 << 10)
#define FENCE UINT32_MAX	/* opaque of the NOOP that ends a pipeline */
#define DEL_OPAQUE (UINT32_MAX - 1)

enum { OP_GET = 0x00, OP_SET = 0x01, OP_NOOP = 0x0a, OP_GETQ = 0x09,
       OP_DELETEQ = 0x14 };
enum { ST_OK = 0, ST_NOT_FOUND = 1, ST_E2BIG = 3, ST_ENOMEM = 0x82 };

struct hdr {
	uint8_t magic, opcode;
	uint16_t keylen;
	uint8_t extlen, datatype;
	uint16_t status;	/* vbucket in requests */
	uint32_t bodylen, opaque;
	uint64_t cas;
};

struct conn {
	int fd;
	bool used;		/* has requests in this call */
	char *out, *in;
	size_t out_len, out_cap, in_pos, in_len;
};

struct chan {
	pthread_mutex_t lock;
	struct conn c[MAX_SERVERS];
};

struct server {
	struct sockaddr_storage addr;
	socklen_t alen;
	char name[80];
	_Atomic uint64_t dead_until;	/* ns, CLOCK_MONOTONIC */
};

struct remote {
	memcached_st *mc;
	pthread_mutex_t hash_lock;	/* the continuum */
	unsigned nservers, replicas, timeout_ms;
	uint64_t id;
	struct server srv[MAX_SERVERS];
	struct chan ch[NCHAN];
	_Atomic uint64_t sets, set_bytes, set_refused, gets, get_bytes;
	_Atomic uint64_t misses, errors, timeouts, deletes, rounds, batches;
};

static inline void add(_Atomic uint64_t *c, uint64_t n)
{
	atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

/* ---- connections (the channel's lock) ---------------------------------- */

static void conn_close(struct conn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->in_pos = c->in_len = 0;
}

/* Wait for `ev` on fd until the deadline.  -ETIMEDOUT past it. */
static int wait_fd(int fd, short ev, uint64_t deadline)
{
	for (;;) {
		uint64_t now = now_ns();
		struct pollfd p = { .fd = fd, .events = ev };
		int rc;

		if (now >= deadline)
			return -ETIMEDOUT;
		rc = poll(&p, 1, (int)((deadline - now + 999999) / 1000000));
		if (rc > 0)
			return 0;
		if (rc < 0 && errno != EINTR)
			return -errno;
	}
}

static int conn_open(struct server *s, struct conn *c, uint64_t deadline)
{
	int one = 1, err = 0;
	socklen_t len = sizeof(err);

	if (c->fd >= 0)
		return 0;
	if (!c->in) {
		c->in = mem_alloc(IN_SIZE);
		if (!c->in)
			return -ENOMEM;
	}
	c->fd = socket(s->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK |
		       SOCK_CLOEXEC, 0);
	if (c->fd < 0)
		return -errno;
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(c->fd, (struct sockaddr *)&s->addr, s->alen) == 0)
		return 0;
	if (errno != EINPROGRESS)
		err = -errno;
	else
		err = wait_fd(c->fd, POLLOUT, deadline);
	if (!err && getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0)
		err = -err;
	if (err)
		conn_close(c);
	return err;
}

static int out_reserve(struct conn *c, size_t more)
{
	size_t cap = c->out_cap ? c->out_cap : 16384;
	char *p;

	if (c->out_len + more <= c->out_cap)
		return 0;
	while (cap < c->out_len + more)
		cap *= 2;
	p = mem_alloc(cap);
	if (!p)
		return -ENOMEM;
	if (c->out_len)
		memcpy(p, c->out, c->out_len);
	mem_free(c->out, c->out_cap);
	c->out = p;
	c->out_cap = cap;
	return 0;
}

/* Append one request. */
static int req(struct conn *c, uint8_t op, uint32_t opaque, const char *key,
	       const void *ext, uint8_t elen, const void *val, uint32_t vlen)
{
	size_t klen = key ? strlen(key) : 0;
	struct hdr h = {
		.magic = 0x80, .opcode = op, .keylen = htons((uint16_t)klen),
		.extlen = elen, .bodylen = htonl((uint32_t)(elen + klen + vlen)),
		.opaque = opaque,
	};
	char *p;

	if (out_reserve(c, sizeof(h) + elen + klen + vlen))
		return -ENOMEM;
	p = c->out + c->out_len;
	memcpy(p, &h, sizeof(h));
	/* Parts may be absent (NULL, 0): memcpy must not see them. */
	if (elen)
		memcpy(p + sizeof(h), ext, elen);
	if (klen)
		memcpy(p + sizeof(h) + elen, key, klen);
	if (vlen)
		memcpy(p + sizeof(h) + elen + klen, val, vlen);
	c->out_len += sizeof(h) + elen + klen + vlen;
	c->used = true;
	return 0;
}

static int conn_send(struct conn *c, uint64_t deadline)
{
	size_t done = 0;

	while (done < c->out_len) {
		ssize_t n = send(c->fd, c->out + done, c->out_len - done,
				 MSG_NOSIGNAL | MSG_DONTWAIT);
		int err;

		if (n > 0) {
			done += (size_t)n;
			continue;
		}
		if (n < 0 && errno != EAGAIN && errno != EINTR)
			return -errno;
		err = wait_fd(c->fd, POLLOUT, deadline);
		if (err)
			return err;
	}
	c->out_len = 0;
	return 0;
}

/* Read exactly n bytes into dst (NULL: skip them). */
static int conn_read(struct conn *c, void *dst, size_t n, uint64_t deadline)
{
	while (n) {
		size_t take = MIN(n, c->in_len - c->in_pos);
		ssize_t got;
		int err;

		if (take) {
			if (dst)
				memcpy(dst, c->in + c->in_pos, take);
			dst = dst ? (char *)dst + take : NULL;
			c->in_pos += take;
			n -= take;
			continue;
		}
		c->in_pos = c->in_len = 0;
		got = recv(c->fd, c->in, IN_SIZE, MSG_DONTWAIT);
		if (got > 0) {
			c->in_len = (size_t)got;
			continue;
		}
		if (got == 0)
			return -ECONNRESET;
		if (errno != EAGAIN && errno != EINTR)
			return -errno;
		err = wait_fd(c->fd, POLLIN, deadline);
		if (err)
			return err;
	}
	return 0;
}

/* ---- servers ------------------------------------------------------------- */

static bool server_dead(struct server *s)
{
	uint64_t until = atomic_load_explicit(&s->dead_until,
					      memory_order_relaxed);

	return until && now_ns() < until;
}

static void server_fail(struct remote *r, unsigned i, struct conn *c, int err)
{
	struct server *s = &r->srv[i];

	if (!server_dead(s))
		log_error("remote: server %s %s; its pages are read from "
			  "replicas or lost, new ones go elsewhere for %d ms",
			  s->name, err == -ETIMEDOUT ? "timed out" :
			  strerror(-err), REMOTE_RETRY_MS);
	atomic_store(&s->dead_until, now_ns() +
		     (uint64_t)REMOTE_RETRY_MS * 1000000);
	add(err == -ETIMEDOUT ? &r->timeouts : &r->errors, 1);
	conn_close(c);
	c->out_len = 0;
}

void remote_key(const struct remote *r, uint64_t key, char *out)
{
	snprintf(out, REMOTE_KEY_MAX, "upg:%016" PRIx64 ":%" PRIx64, r->id,
		 key);
}

static unsigned server_of(struct remote *r, const char *key, unsigned copy)
{
	uint32_t h;

	pthread_mutex_lock(&r->hash_lock);
	h = memcached_generate_hash(r->mc, key, strlen(key));
	pthread_mutex_unlock(&r->hash_lock);
	return (h + copy) % r->nservers;
}

static struct chan *chan_get(struct remote *r)
{
	for (unsigned i = 0; i < NCHAN; i++)
		if (pthread_mutex_trylock(&r->ch[i].lock) == 0)
			return &r->ch[i];
	pthread_mutex_lock(&r->ch[gettid() % NCHAN].lock);
	return &r->ch[gettid() % NCHAN];
}

static void chan_put(struct chan *ch)
{
	pthread_mutex_unlock(&ch->lock);
}

/* ---- one round: requests out to every server, then the replies ---------- */

enum kind { K_SET, K_GET, K_DELETE };

/* Queue the request for copy `copy` of item i on its server's conn;
 * *server (may be NULL) is set to that server.  Returns 0, -EHOSTDOWN if
 * it is marked dead, or why it cannot be reached. */
static int queue_one(struct remote *r, struct chan *ch, enum kind kind,
		     unsigned copy, uint32_t opaque, uint64_t key,
		     const struct remote_item *it, uint64_t deadline,
		     int *server)
{
	static const uint32_t set_ext[2] = { 0, 0 };	/* flags, no expiry */
	char k[REMOTE_KEY_MAX];
	unsigned s;
	struct conn *c;
	int err;

	remote_key(r, key, k);
	s = server_of(r, k, copy);
	c = &ch->c[s];
	if (server)
		*server = (int)s;
	if (server_dead(&r->srv[s]))
		return -EHOSTDOWN;
	err = conn_open(&r->srv[s], c, deadline);
	if (err) {
		server_fail(r, s, c, err);
		return err;
	}
	if (kind == K_SET)
		err = req(c, OP_SET, opaque, k, set_ext, sizeof(set_ext),
			  it->val, it->len);
	else if (kind == K_GET)
		err = req(c, OP_GETQ, opaque, k, NULL, 0, NULL, 0);
	else
		err = req(c, OP_DELETEQ, opaque, k, NULL, 0, NULL, 0);
	return err;
}

/* One reply to item `it` of a set or get.  Returns 0, or a conn error. */
static int take_reply(struct remote *r, struct conn *c, enum kind kind,
		      const struct hdr *h, struct remote_item *it,
		      uint64_t deadline)
{
	uint32_t body = ntohl(h->bodylen);
	uint32_t vlen = body - h->extlen - ntohs(h->keylen);
	int err;

	if (kind != K_GET || ntohs(h->status) != ST_OK)
		return conn_read(c, NULL, body, deadline);
	err = conn_read(c, NULL, body - vlen, deadline);
	if (err)
		return err;
	if (vlen > it->cap) {
		it->res = -E2BIG;
		return conn_read(c, NULL, vlen, deadline);
	}
	err = conn_read(c, it->buf, vlen, deadline);
	if (!err) {
		it->res = (int)vlen;
		add(&r->get_bytes, vlen);
	}
	return err;
}

static void set_outcome(struct remote *r, struct remote_item *it,
			uint16_t status)
{
	if (status == ST_OK) {
		it->res = 0;
	} else if (it->res != 0) {
		it->res = status == ST_ENOMEM || status == ST_E2BIG ? -ENOSPC :
								      -EIO;
		add(it->res == -ENOSPC ? &r->set_refused : &r->errors, 1);
	}
}

/* Read replies on conn s until its fence. */
static int drain(struct remote *r, struct conn *c, enum kind kind,
		 struct remote_item *it, unsigned n, uint64_t deadline)
{
	for (;;) {
		struct hdr h;
		uint32_t i;
		int err;

		err = conn_read(c, &h, sizeof(h), deadline);
		if (!err && h.magic != 0x81)
			err = -EPROTO;
		if (err)
			return err;
		i = h.opaque;
		if (i == FENCE && h.opcode == OP_NOOP)
			return conn_read(c, NULL, ntohl(h.bodylen), deadline);
		if (i >= n || kind == K_DELETE) {
			err = conn_read(c, NULL, ntohl(h.bodylen), deadline);
		} else {
			if (kind == K_SET)
				set_outcome(r, &it[i], ntohs(h.status));
			err = take_reply(r, c, kind, &h, &it[i], deadline);
		}
		if (err)
			return err;
	}
}

/* Items of server s that got no answer because it failed. */
static void fail_items(struct remote_item *it, unsigned n, enum kind kind,
		       int s, int err)
{
	for (unsigned i = 0; it && i < n; i++)
		if (kind == K_GET && it[i].server == s && it[i].res == -ENOENT)
			it[i].res = err;
}

static void round_trip(struct remote *r, struct chan *ch, enum kind kind,
		       struct remote_item *it, unsigned n, uint64_t deadline)
{
	bool any = false;

	for (unsigned s = 0; s < r->nservers; s++) {
		struct conn *c = &ch->c[s];
		int err;

		if (!c->used)
			continue;
		any = true;
		err = req(c, OP_NOOP, FENCE, NULL, NULL, 0, NULL, 0);
		if (!err)
			err = conn_send(c, deadline);
		if (err) {
			server_fail(r, s, c, err);
			fail_items(it, n, kind, (int)s, err);
			c->used = false;
		}
	}
	for (unsigned s = 0; s < r->nservers; s++) {
		struct conn *c = &ch->c[s];
		int err;

		if (!c->used)
			continue;
		c->used = false;
		err = drain(r, c, kind, it, n, deadline);
		if (err) {
			server_fail(r, s, c, err);
			fail_items(it, n, kind, (int)s, err);
		}
	}
	if (any)
		add(&r->rounds, 1);
}

/* Deletes ride in the same pipelines as the sets, ahead of them (a key
 * deleted and set again in one batch ends set); their replies (only
 * failures: they are quiet) carry DEL_OPAQUE and are skipped. */
static void queue_deletes(struct remote *r, struct chan *ch,
			  const uint64_t *keys, unsigned n, uint64_t deadline)
{
	for (unsigned i = 0; i < n; i++)
		for (unsigned copy = 0; copy <= r->replicas; copy++)
			queue_one(r, ch, K_DELETE, copy, DEL_OPAQUE, keys[i],
				  NULL, deadline, NULL);
	add(&r->deletes, n);
}

void remote_set(struct remote *r, struct remote_item *it, unsigned n,
		const uint64_t *del, unsigned ndel)
{
	uint64_t deadline = now_ns() + (uint64_t)r->timeout_ms * 1000000;
	struct chan *ch = chan_get(r);

	queue_deletes(r, ch, del, ndel, deadline);

	for (unsigned i = 0; i < n; i++) {
		it[i].res = -EIO;
		it[i].server = -1;
		for (unsigned copy = 0; copy <= r->replicas; copy++)
			queue_one(r, ch, K_SET, copy, i, it[i].key, &it[i],
				  deadline, copy ? NULL : &it[i].server);
	}
	round_trip(r, ch, K_SET, it, n, deadline);
	chan_put(ch);
	add(&r->batches, 1);
	for (unsigned i = 0; i < n; i++) {
		if (it[i].res == 0) {
			add(&r->sets, 1);
			add(&r->set_bytes, it[i].len);
		}
	}
}

void remote_get(struct remote *r, unsigned copy, struct remote_item *it,
		unsigned n)
{
	uint64_t deadline = now_ns() + (uint64_t)r->timeout_ms * 1000000;
	struct chan *ch = chan_get(r);

	for (unsigned i = 0; i < n; i++) {
		int err = queue_one(r, ch, K_GET, copy, i, it[i].key, &it[i],
				    deadline, &it[i].server);

		it[i].res = err ? err : -ENOENT;
	}
	round_trip(r, ch, K_GET, it, n, deadline);
	chan_put(ch);
	add(&r->gets, n);
	for (unsigned i = 0; i < n; i++)
		add(&r->misses, it[i].res == -ENOENT);
}

void remote_delete(struct remote *r, const uint64_t *keys, unsigned n)
{
	uint64_t deadline = now_ns() + (uint64_t)r->timeout_ms * 1000000;
	struct chan *ch = chan_get(r);

	queue_deletes(r, ch, keys, n, deadline);
	round_trip(r, ch, K_DELETE, NULL, 0, deadline);
	chan_put(ch);
}

unsigned remote_replicas(const struct remote *r)
{
	return r->replicas;
}

const char *remote_server_name(const struct remote *r, int server)
{
	return server >= 0 && (unsigned)server < r->nservers ?
		       r->srv[server].name : "(no server)";
}

void remote_get_stats(struct remote *r, struct remote_stats *out)
{
	*out = (struct remote_stats){
		.sets = atomic_load(&r->sets),
		.set_bytes = atomic_load(&r->set_bytes),
		.set_refused = atomic_load(&r->set_refused),
		.gets = atomic_load(&r->gets),
		.get_bytes = atomic_load(&r->get_bytes),
		.misses = atomic_load(&r->misses),
		.errors = atomic_load(&r->errors),
		.timeouts = atomic_load(&r->timeouts),
		.deletes = atomic_load(&r->deletes),
		.rounds = atomic_load(&r->rounds),
		.batches = atomic_load(&r->batches),
	};
}

/* ---- creation ------------------------------------------------------------ */

static int bad_list(const char *list, const char *why)
{
	log_error("UPAGER_REMOTE=\"%s\": %s; accepted: host:port[,host:port"
		  "...], at most %d servers", list, why, MAX_SERVERS);
	return -EINVAL;
}

/* Parse "host:port,..." into libmemcached's list and our addresses. */
static int add_servers(struct remote *r, const char *list)
{
	const char *p = list;

	while (*p) {
		char host[64], port[8];
		const char *end = strchr(p, ','), *colon;
		struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai;
		size_t len = end ? (size_t)(end - p) : strlen(p);
		unsigned long pn;
		char *e;
		struct server *s;

		colon = memrchr(p, ':', len);
		if (!colon || colon == p || (size_t)(colon - p) >= sizeof(host) ||
		    len - (size_t)(colon - p) - 1 >= sizeof(port) ||
		    r->nservers == MAX_SERVERS)
			return bad_list(list, "not host:port");
		memcpy(host, p, (size_t)(colon - p));
		host[colon - p] = '\0';
		memcpy(port, colon + 1, len - (size_t)(colon - p) - 1);
		port[len - (size_t)(colon - p) - 1] = '\0';
		pn = strtoul(port, &e, 10);
		if (*e || !*port || pn == 0 || pn > 65535)
			return bad_list(list, "a port is not 1..65535");
		if (getaddrinfo(host, port, &hints, &ai))
			return bad_list(list, "a host does not resolve");
		s = &r->srv[r->nservers++];
		memcpy(&s->addr, ai->ai_addr, ai->ai_addrlen);
		s->alen = ai->ai_addrlen;
		freeaddrinfo(ai);
		snprintf(s->name, sizeof(s->name), "%s:%s", host, port);
		if (memcached_server_add(r->mc, host, (in_port_t)pn) !=
		    MEMCACHED_SUCCESS)
			return -ENOMEM;
		p += len + (end != NULL);
	}
	return r->nservers ? 0 : bad_list(list, "no server");
}

/* NOOP every server: how many answer. */
static unsigned probe(struct remote *r)
{
	uint64_t deadline = now_ns() + (uint64_t)r->timeout_ms * 1000000;
	struct chan *ch = &r->ch[0];
	unsigned up = 0;

	for (unsigned s = 0; s < r->nservers; s++) {
		int err = conn_open(&r->srv[s], &ch->c[s], deadline);

		if (err)
			server_fail(r, s, &ch->c[s], err);
		else
			ch->c[s].used = true;
	}
	round_trip(r, ch, K_DELETE, NULL, 0, deadline);
	for (unsigned s = 0; s < r->nservers; s++)
		up += !server_dead(&r->srv[s]);
	return up;
}

int remote_create(const struct remote_config *cfg, struct remote **out)
{
	struct remote *r;
	int err;

	if (!cfg->servers || !*cfg->servers)
		return bad_list("", "empty");
	r = mem_alloc(sizeof(*r));
	if (!r)
		return -ENOMEM;
	pthread_mutex_init(&r->hash_lock, NULL);
	for (unsigned i = 0; i < NCHAN; i++) {
		pthread_mutex_init(&r->ch[i].lock, NULL);
		for (unsigned s = 0; s < MAX_SERVERS; s++)
			r->ch[i].c[s].fd = -1;
	}
	r->timeout_ms = cfg->timeout_ms;
	r->id = cfg->id;
	r->mc = memcached_create(NULL);
	err = r->mc ? 0 : -ENOMEM;
	if (!err) {
		memcached_behavior_set(r->mc, MEMCACHED_BEHAVIOR_KETAMA, 1);
		memcached_behavior_set(r->mc,
				MEMCACHED_BEHAVIOR_BINARY_PROTOCOL, 1);
		err = add_servers(r, cfg->servers);
	}
	if (!err && cfg->replicas >= r->nservers) {
		log_error("UPAGER_REMOTE_REPLICAS=%u: must be below the number "
			  "of servers (%u)", cfg->replicas, r->nservers);
		err = -EINVAL;
	}
	r->replicas = cfg->replicas;
	if (!err && probe(r) == 0) {
		log_error("remote: no server of \"%s\" answers", cfg->servers);
		err = -EHOSTUNREACH;
	}
	if (err) {
		remote_destroy(r);
		return err;
	}
	*out = r;
	return 0;
}

void remote_destroy(struct remote *r)
{
	if (!r)
		return;
	for (unsigned i = 0; i < NCHAN; i++) {
		for (unsigned s = 0; s < MAX_SERVERS; s++) {
			struct conn *c = &r->ch[i].c[s];

			conn_close(c);
			mem_free(c->in, c->in ? IN_SIZE : 0);
			mem_free(c->out, c->out_cap);
		}
		pthread_mutex_destroy(&r->ch[i].lock);
	}
	if (r->mc)
		memcached_free(r->mc);
	pthread_mutex_destroy(&r->hash_lock);
	mem_free(r, sizeof(*r));
}
