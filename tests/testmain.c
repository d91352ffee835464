/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testlib.h"

struct upg_runtime *test_runtime(unsigned handlers, uint64_t mem_limit)
{
	struct upg_options o;
	struct upg_runtime *rt = NULL;
	int err;

	upg_options_init(&o);
	o.handlers = handlers;
	o.mem_limit = mem_limit;
	err = upg_runtime_create(&o, &rt);
	ck_assert_msg(err == 0, "upg_runtime_create: %s (%s)", strerror(-err),
		      upg_last_error());
	return rt;
}

void fill_page(void *page, uint64_t pageno, uint64_t tag)
{
	uint64_t *w = page;

	for (unsigned i = 0; i < TPAGE / 8; i++)
		w[i] = pattern(pageno, tag, i);
}

bool check_page(const void *page, uint64_t pageno, uint64_t tag)
{
	const uint64_t *w = page;

	for (unsigned i = 0; i < TPAGE / 8; i++)
		if (w[i] != pattern(pageno, tag, i))
			return false;
	return true;
}

bool page_is_zero(const void *page)
{
	const uint64_t *w = page;

	for (unsigned i = 0; i < TPAGE / 8; i++)
		if (w[i])
			return false;
	return true;
}

long rss_kib(void)
{
	char line[256];
	long kib = -1;
	FILE *f = fopen("/proc/self/status", "r");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
			break;
	fclose(f);
	return kib;
}

/* Skip (77) when this kernel or sandbox gives no userfaultfd. */
static void probe_uffd(void)
{
	struct upg_options o;
	struct upg_runtime *rt;
	int err;

	upg_options_init(&o);
	o.log_level = UPG_LOG_NONE;
	err = upg_runtime_create(&o, &rt);
	if (err == -ENOSYS || err == -EPERM) {
		printf("SKIP: userfaultfd is not available here: %s\n",
		       upg_last_error());
		exit(TEST_SKIP);
	}
	if (err) {
		printf("FAIL: cannot create a runtime: %s\n", strerror(-err));
		exit(1);
	}
	upg_runtime_destroy(rt);
}

int main(void)
{
	SRunner *sr;
	int failed;

	if (test_needs_uffd)
		probe_uffd();
	sr = srunner_create(make_suite());
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
