/* SPDX-License-Identifier: MIT */
/*
 * upager's own memory: metadata, page tables, bounce buffers.
 *
 * It never comes from the process's malloc (in preload mode that malloc is
 * served from managed memory, which the fault handler must never touch) and
 * never from a managed region.  Small sizes come from size-class slabs carved
 * out of private mappings; large ones are mapped directly.  Memory is zeroed.
 * Callers give the size back when freeing, as the kernel's kfree_sized does.
 */
#ifndef UPAGER_MEM_H
#define UPAGER_MEM_H

#include <stddef.h>
#include <stdint.h>

void *mem_alloc(size_t size);
void mem_free(void *p, size_t size);
/*
 * An I/O buffer: 2 MiB-aligned and backed by transparent huge pages where
 * the kernel allows (MADV_HUGEPAGE), so that an O_DIRECT transfer into it
 * is a few physically contiguous segments instead of one per 4 KiB page.
 * On a virtio disk that is what bounds a large read (measured: 8 MiB
 * O_DIRECT reads, 600 MB/s into 4 KiB pages, 1500 MB/s into huge pages).
 * Free with mem_free_io and the same size.
 */
void *mem_alloc_io(size_t size);
void mem_free_io(void *p, size_t size);
/* Bytes currently handed out (for the statistics). */
uint64_t mem_in_use(void);

#endif
