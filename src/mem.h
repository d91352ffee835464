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
/* Bytes currently handed out (for the statistics). */
uint64_t mem_in_use(void);

#endif
