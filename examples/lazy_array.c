/* SPDX-License-Identifier: MIT */
/*
 * A 64 GiB lazy array: address space for 2^33 uint64_t, of which the
 * program touches a few pages.  Untouched parts read as zero and cost
 * nothing; the statistics show what was actually faulted in.
 *
 *   ./lazy_array            # text statistics
 *   ./lazy_array --json     # JSON statistics
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <upager.h>

#define GIB ((size_t)1 << 30)

int main(int argc, char **argv)
{
	int format = argc > 1 && !strcmp(argv[1], "--json") ? UPG_STATS_JSON
							     : UPG_STATS_TEXT;
	struct upg_runtime *rt;
	struct upg_region *region;
	size_t n = 64 * GIB / sizeof(uint64_t);
	uint64_t *a, sum = 0;
	int err;

	err = upg_runtime_create(NULL, &rt);
	if (err) {
		fprintf(stderr, "lazy_array: no runtime: %s (%s)\n",
			strerror(-err), upg_last_error());
		return err == -ENOSYS || err == -EPERM ? 77 : 1;
	}
	err = upg_anon_create(rt, n * sizeof(uint64_t), UPG_ANON_DEFAULT,
			      &region);
	if (err) {
		fprintf(stderr, "lazy_array: no region: %s\n", strerror(-err));
		upg_runtime_destroy(rt);
		return 1;
	}
	a = upg_region_addr(region);

	/* Write a few scattered elements, one per GiB. */
	for (size_t i = 0; i < n; i += GIB / sizeof(uint64_t))
		a[i] = i * 3 + 1;
	/* Read them back, plus neighbours that were never written. */
	for (size_t i = 0; i < n; i += GIB / sizeof(uint64_t)) {
		if (a[i] != i * 3 + 1 || a[i + 1] != 0) {
			fprintf(stderr, "lazy_array: wrong value at %zu\n", i);
			return 1;
		}
		sum += a[i];
	}
	/* A read of an untouched page maps the zero page: no memory used. */
	sum += a[n - 1];

	printf("64 GiB array at %p: touched %zu elements, sum %llu\n",
	       (void *)a, n / (GIB / sizeof(uint64_t)),
	       (unsigned long long)sum);
	upg_stats_print(rt, stdout, format);
	upg_region_destroy(region);
	upg_runtime_destroy(rt);
	return 0;
}
