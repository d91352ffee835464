/* SPDX-License-Identifier: MIT */
/*
 * The probation list: the youngest stored pages, kept uncompressed.
 *
 * An evicted page is out of the program's reach either way; kept here it
 * costs a whole page of the budget instead of its compressed size, and in
 * return a touch soon after its eviction (the touch that says the clock
 * chose badly) costs a copy, not a decompression, and the evictor does
 * not compress a page it will be asked for again at once.  A page that
 * stays untouched until the list is full is compressed then, as the
 * oldest, and joins the RAM tier (VMS's free and modified lists, where a
 * page trimmed from a working set waited before it went to disk).
 *
 * The store keeps the list: an object on probation has the handle of any
 * other object, and every store function serves it, so the page table and
 * the paths that walk it (fork, snapshots, unregister) never see the
 * difference.  Sized by UPAGER_PROBATION, percent of the budget, counted
 * against the budget with the RAM tier; 0 (the default) turns it off.
 *
 * Locking is the store's (store.c): slots are taken and pages written with
 * put_lock held (one writer), the slot table changed with the store's lock
 * held for writing, a slot's page read with it held for reading.
 */
#ifndef UPAGER_PROBATION_H
#define UPAGER_PROBATION_H

#include <stdbool.h>
#include <stdint.h>

struct probation;

/* A list of `bytes` / 4 KiB pages (NULL and 0 for none); -ENOMEM. */
int probation_create(uint64_t bytes, struct probation **out);
void probation_destroy(struct probation *p);

/* A free slot, or -1 when every slot holds a page (age the oldest out
 * first).  put_lock and the store's lock for writing. */
int32_t probation_take(struct probation *p);
/* The page of `handle` now lies in a slot taken above (the object table
 * says which): queue it as the youngest.  put_lock. */
void probation_queue(struct probation *p, uint64_t handle);
/* Dequeue the oldest queued handle (0 when none).  It may have been freed
 * or aged out since: the caller asks the object table.  put_lock. */
uint64_t probation_oldest(struct probation *p);
/* Room for one more page without ageing one out first (a free slot and
 * room in the queue).  put_lock. */
bool probation_has_room(const struct probation *p);
/* The slot's page left (freed, or aged out).  The store's lock for
 * writing. */
void probation_release(struct probation *p, uint32_t slot);

/* The 4 KiB page of a slot. */
char *probation_page(struct probation *p, uint32_t slot);
/* Pages held now (slots with a page), and the memory the list holds:
 * every slot ever used, as the kernel keeps them. */
uint64_t probation_pages(const struct probation *p);
uint64_t probation_bytes(const struct probation *p);

#endif
