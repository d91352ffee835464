/* SPDX-License-Identifier: MIT */
/*
 * PAGEMAP_SCAN (Linux 6.7): the hardware page table's view of a range in one
 * ioctl.  upager maps the kernel's zero page for reads of untouched memory;
 * a later write is copied in the kernel without telling us, so the page
 * table's ZERO entries are reconciled with what the hardware table says is
 * really present.
 */
#ifndef UPAGER_PAGEMAP_H
#define UPAGER_PAGEMAP_H

#include <stdint.h>

/* Open /proc/self/pagemap; -errno if there is none or no PAGEMAP_SCAN. */
int pagemap_open(void);

/*
 * Call fn(first_page_addr, npages, arg) for each run of pages in
 * [start, end) that are present and not the zero page.  Returns 0, or
 * -errno (-ENOTTY on kernels without PAGEMAP_SCAN).
 */
typedef void (*pagemap_run_fn)(uintptr_t addr, uint64_t npages, void *arg);
int pagemap_written(int fd, uintptr_t start, uintptr_t end, pagemap_run_fn fn,
		    void *arg);

/*
 * 1 if the page at addr is mapped by another process too (shared
 * copy-on-write with a forked child), 0 if by this one alone or not at all,
 * -errno if pagemap cannot tell.
 */
int pagemap_shared(int fd, uintptr_t addr);

#endif
