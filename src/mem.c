/* SPDX-License-Identifier: MIT */
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>

#include "mem.h"
#include "util.h"

/* Size classes: 64, 128, ..., 4096 bytes.  Larger sizes are mapped. */
#define MIN_SHIFT 6
#define MAX_SHIFT 12
#define NCLASSES (MAX_SHIFT - MIN_SHIFT + 1)
#define CHUNK_SIZE ((size_t)256 << 10)

struct free_obj {
	struct free_obj *next;
};

struct size_class {
	pthread_mutex_t lock;
	struct free_obj *free;
};

static struct size_class classes[NCLASSES] = {
	[0 ... NCLASSES - 1] = { .lock = PTHREAD_MUTEX_INITIALIZER },
};
static _Atomic uint64_t in_use;

static void *map_anon(size_t size)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		return NULL;
	return p;
}

static int class_of(size_t size)
{
	int shift = MIN_SHIFT;

	while (((size_t)1 << shift) < size)
		shift++;
	return shift - MIN_SHIFT;
}

/* Carve a fresh chunk into objects of class c; called with c's lock held. */
static int refill(struct size_class *sc, size_t obj)
{
	char *chunk = map_anon(CHUNK_SIZE);

	if (!chunk)
		return -1;
	for (size_t off = CHUNK_SIZE; off >= obj; off -= obj) {
		struct free_obj *o = (struct free_obj *)(chunk + off - obj);

		o->next = sc->free;
		sc->free = o;
	}
	return 0;
}

void *mem_alloc(size_t size)
{
	struct size_class *sc;
	struct free_obj *o;
	size_t obj;

	if (size == 0)
		size = 1;
	if (size > ((size_t)1 << MAX_SHIFT)) {
		size_t len = (size + PAGE_SIZE - 1) & PAGE_MASK;
		void *p = map_anon(len);

		if (p)
			atomic_fetch_add_explicit(&in_use, len,
						  memory_order_relaxed);
		return p;
	}
	sc = &classes[class_of(size)];
	obj = (size_t)1 << (class_of(size) + MIN_SHIFT);
	pthread_mutex_lock(&sc->lock);
	if (!sc->free && refill(sc, obj) < 0) {
		pthread_mutex_unlock(&sc->lock);
		return NULL;
	}
	o = sc->free;
	sc->free = o->next;
	pthread_mutex_unlock(&sc->lock);
	memset(o, 0, obj);
	atomic_fetch_add_explicit(&in_use, obj, memory_order_relaxed);
	return o;
}

void mem_free(void *p, size_t size)
{
	struct size_class *sc;
	struct free_obj *o = p;
	size_t obj;

	if (!p)
		return;
	if (size == 0)
		size = 1;
	if (size > ((size_t)1 << MAX_SHIFT)) {
		size_t len = (size + PAGE_SIZE - 1) & PAGE_MASK;

		munmap(p, len);
		atomic_fetch_sub_explicit(&in_use, len, memory_order_relaxed);
		return;
	}
	sc = &classes[class_of(size)];
	obj = (size_t)1 << (class_of(size) + MIN_SHIFT);
	pthread_mutex_lock(&sc->lock);
	o->next = sc->free;
	sc->free = o;
	pthread_mutex_unlock(&sc->lock);
	atomic_fetch_sub_explicit(&in_use, obj, memory_order_relaxed);
}

#define HUGE_SIZE ((size_t)2 << 20)

static size_t io_len(size_t size)
{
	return (size + HUGE_SIZE - 1) & ~(HUGE_SIZE - 1);
}

void *mem_alloc_io(size_t size)
{
	size_t len = io_len(size);
	char *raw = map_anon(len + HUGE_SIZE), *p;
	size_t head;

	if (!raw)
		return NULL;
	/* Trim the mapping to len bytes on a 2 MiB boundary. */
	p = (char *)(((uintptr_t)raw + HUGE_SIZE - 1) &
		     ~(uintptr_t)(HUGE_SIZE - 1));
	head = (size_t)(p - raw);
	if (head)
		munmap(raw, head);
	munmap(p + len, HUGE_SIZE - head);
	/* A hint: without THP the buffer is still correct, only slower. */
	(void)madvise(p, len, MADV_HUGEPAGE);
	atomic_fetch_add_explicit(&in_use, len, memory_order_relaxed);
	return p;
}

void mem_free_io(void *p, size_t size)
{
	if (!p)
		return;
	munmap(p, io_len(size));
	atomic_fetch_sub_explicit(&in_use, io_len(size), memory_order_relaxed);
}

uint64_t mem_in_use(void)
{
	return atomic_load_explicit(&in_use, memory_order_relaxed);
}
