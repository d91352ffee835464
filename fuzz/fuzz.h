/* SPDX-License-Identifier: MIT */
/*
 * What the libFuzzer targets share.  Each target is one file with
 * LLVMFuzzerTestOneInput; a broken property aborts (libFuzzer reports it
 * as a crash and saves the input).
 */
#ifndef UPAGER_FUZZ_H
#define UPAGER_FUZZ_H

#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* stderr as it was before libFuzzer's -close_fd_mask closed it (that
 * option silences the parsers' messages, not the findings). */
static int fuzz_stderr = 2;

__attribute__((constructor)) static void fuzz_keep_stderr(void)
{
	fuzz_stderr = fcntl(2, F_DUPFD_CLOEXEC, 3);
}

/* Abort with the broken property: an input that breaks it is a finding. */
#define FUZZ_ASSERT(cond)                                                     \
	do {                                                                  \
		if (!(cond)) {                                                \
			dprintf(fuzz_stderr, "%s:%d: property broken: %s\n",  \
				__FILE__, __LINE__, #cond);                   \
			abort();                                              \
		}                                                             \
	} while (0)

#define FUZZ_MAX_ARGS 32

/*
 * A command line from the input: argv[0] is `prog`, then the input's
 * NUL-separated strings (at most FUZZ_MAX_ARGS - 2 of them), copied into
 * one allocation of exactly their size so that reading past one is caught.
 * Returns argc; free *buf afterwards.
 */
static inline int fuzz_argv(const uint8_t *data, size_t size,
			    const char *prog, char **argv, char **buf)
{
	int argc = 0;

	*buf = malloc(size + 1);
	if (!*buf)
		abort();
	memcpy(*buf, data, size);
	(*buf)[size] = '\0';
	argv[argc++] = (char *)prog;
	for (size_t at = 0; at < size && argc < FUZZ_MAX_ARGS - 1;
	     at += strlen(*buf + at) + 1)
		argv[argc++] = *buf + at;
	argv[argc] = NULL;
	return argc;
}

#endif
