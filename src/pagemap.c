/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include <linux/fs.h>

#include "pagemap.h"
#include "util.h"

/* From Linux 6.7's linux/fs.h, newer than the build machine's headers. */
#ifndef PAGEMAP_SCAN
#define PAGE_IS_PRESENT (1 << 3)
#define PAGE_IS_PFNZERO (1 << 5)
struct page_region {
	uint64_t start, end, categories;
};
struct pm_scan_arg {
	uint64_t size, flags, start, end, walk_end, vec, vec_len, max_pages;
	uint64_t category_inverted, category_mask, category_anyof_mask;
	uint64_t return_mask;
};
#define PAGEMAP_SCAN _IOWR('f', 16, struct pm_scan_arg)
#endif

int pagemap_open(void)
{
	int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	struct pm_scan_arg probe = { .size = sizeof(probe) };

	if (fd < 0)
		return -errno;
	/* An empty range tells whether the ioctl exists. */
	if (ioctl(fd, PAGEMAP_SCAN, &probe) < 0 && errno == ENOTTY) {
		close(fd);
		return -ENOTTY;
	}
	return fd;
}

/* /proc/pid/pagemap: one 64-bit word per page. */
#define PM_PRESENT (UINT64_C(1) << 63)
#define PM_EXCLUSIVE (UINT64_C(1) << 56)

int pagemap_shared(int fd, uintptr_t addr)
{
	uint64_t word;
	off_t at = (off_t)(addr >> PAGE_SHIFT) * (off_t)sizeof(word);
	ssize_t n;

	if (fd < 0)
		return -EBADF;
	n = pread(fd, &word, sizeof(word), at);
	if (n != (ssize_t)sizeof(word))
		return n < 0 ? -errno : -EIO;
	return (word & PM_PRESENT) && !(word & PM_EXCLUSIVE);
}

int pagemap_written(int fd, uintptr_t start, uintptr_t end, pagemap_run_fn fn,
		    void *arg)
{
	struct page_region vec[64];
	struct pm_scan_arg a = {
		.size = sizeof(a),
		.vec = (uintptr_t)vec,
		.vec_len = ARRAY_SIZE(vec),
		.category_mask = PAGE_IS_PRESENT | PAGE_IS_PFNZERO,
		.category_inverted = PAGE_IS_PFNZERO,
		.return_mask = PAGE_IS_PRESENT,
	};

	while (start < end) {
		long n;

		a.start = start;
		a.end = end;
		n = ioctl(fd, PAGEMAP_SCAN, &a);
		if (n < 0)
			return -errno;
		for (long i = 0; i < n; i++)
			fn(vec[i].start, (vec[i].end - vec[i].start) >> PAGE_SHIFT,
			   arg);
		if (a.walk_end <= start)
			break;
		start = a.walk_end;
	}
	return 0;
}
