/* SPDX-License-Identifier: MIT */
/*
 * The measuring loop, the same for both sides: threads touch their share of
 * a round's pages and time every touch from their own side.
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include "bench.h"

struct worker {
	char *base;
	const uint64_t *off;
	uint64_t n;
	bool write;
	uint64_t *ns;		/* where this worker's samples go */
	uint64_t start, end;
	struct gate *gate;
};

/* Holds the workers until all of them exist, then lets them go together
 * (state 1) or sends them home (-1) if one could not be started. */
struct gate {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int state;
};

void side_unavailable(struct side *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(s->reason, sizeof(s->reason), fmt, ap);
	va_end(ap);
	s->available = false;
}

/*
 * Memory the measuring loop writes to must not fault while it measures:
 * the samples are stored between two clock reads.
 */
void *alloc_populated(size_t len)
{
	void *p = mmap(NULL, len ? len : 1, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

void free_populated(void *p, size_t len)
{
	if (p)
		munmap(p, len ? len : 1);
}

/*
 * The cost of one clock read, which every sample contains once (the clock
 * after one touch is the clock before the next).  Reported so that small
 * latencies can be read against it.
 */
uint64_t clock_cost_ns(void)
{
	enum { N = 100000 };
	uint64_t t0 = clock_ns(), t = t0;

	for (int i = 0; i < N; i++)
		t = clock_ns();
	return (t - t0 + N / 2) / N;
}

/*
 * Each sample runs from the clock read before the touch to the one after
 * it; back to back, so that the samples of a pass add up to its wall time.
 */
static void touch_loop(struct worker *w)
{
	char *base = w->base;
	uint64_t t0 = clock_ns(), t1;

	w->start = t0;
	for (uint64_t i = 0; i < w->n; i++) {
		volatile char *p = base + w->off[i];

		if (w->write)
			*p = 1;
		else
			(void)*p;
		t1 = clock_ns();
		w->ns[i] = t1 - t0;
		t0 = t1;
	}
	w->end = t0;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct gate *g = w->gate;
	int state;

	pthread_mutex_lock(&g->lock);
	while (!g->state)
		pthread_cond_wait(&g->cond, &g->lock);
	state = g->state;
	pthread_mutex_unlock(&g->lock);
	if (state > 0)
		touch_loop(w);
	return NULL;
}

static void gate_open(struct gate *g, int state)
{
	pthread_mutex_lock(&g->lock);
	g->state = state;
	pthread_cond_broadcast(&g->cond);
	pthread_mutex_unlock(&g->lock);
}

/* Deal the round's offsets to the threads in contiguous shares. */
static void deal(const struct round *rd, char *base, uint64_t *ns,
		 struct worker *w, unsigned nthreads, struct gate *gate)
{
	uint64_t at = 0;

	for (unsigned t = 0; t < nthreads; t++) {
		uint64_t n = rd->n / nthreads + (t < rd->n % nthreads);

		w[t] = (struct worker){ .base = base, .off = rd->off + at,
					.n = n, .write = rd->write,
					.ns = ns + at, .gate = gate };
		at += n;
	}
}

/* All threads start touching together, for the scaling rows. */
static int run_workers(struct worker *w, unsigned nthreads, struct gate *g)
{
	pthread_t tid[MAX_THREADS];
	unsigned started;
	int err = 0;

	for (started = 0; started < nthreads && !err; started++)
		err = pthread_create(&tid[started], NULL, worker_main,
				     &w[started]);
	if (err)
		started--;
	gate_open(g, err ? -1 : 1);
	for (unsigned t = 0; t < started; t++)
		pthread_join(tid[t], NULL);
	return -err;
}

/* 0 if the round's samples fit where the row planned room for them. */
int sample_room(const struct round *rd, const struct side *s)
{
	return s->n + rd->n > rd->row->count ? -EOVERFLOW	/* a planning bug */
					     : 0;
}

/* One sample timed by the caller, for rows that do not touch pages. */
void sample_add(struct side *s, uint64_t ns)
{
	s->ns[s->n++] = ns;
	s->wall_ns += ns;
}

/*
 * Touch every offset of the round in `base` with the row's threads, and
 * append the samples and the wall time (first start to last end) to s.
 */
int touch_round(const struct round *rd, char *base, struct side *s)
{
	unsigned nthreads = rd->row->threads;
	struct worker w[MAX_THREADS];
	struct gate gate = { .lock = PTHREAD_MUTEX_INITIALIZER,
			     .cond = PTHREAD_COND_INITIALIZER };
	uint64_t start = UINT64_MAX, end = 0;
	int err;

	if (sample_room(rd, s))
		return -EOVERFLOW;
	deal(rd, base, s->ns + s->n, w, nthreads, &gate);
	err = run_workers(w, nthreads, &gate);
	if (err) {
		side_unavailable(s, "cannot start %u threads: %s", nthreads,
				 strerror(-err));
		return err;
	}
	for (unsigned t = 0; t < nthreads; t++) {
		start = w[t].start < start ? w[t].start : start;
		end = w[t].end > end ? w[t].end : end;
	}
	s->n += rd->n;
	s->wall_ns += end - start;
	return 0;
}
