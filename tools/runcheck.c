/* SPDX-License-Identifier: MIT */
/*
 * Can LD_PRELOAD reach the program at all?  upager-run asks before it
 * execs, so that a program whose memory upager cannot manage is named up
 * front, with the reason, instead of running with the budget silently
 * ignored:
 *
 *  - statically linked: no dynamic loader reads LD_PRELOAD;
 *  - set-user-ID or set-group-ID for another user: the loader runs it in
 *    secure mode and ignores LD_PRELOAD;
 *  - a Go program: its runtime maps and unmaps memory with raw system
 *    calls, never through libc, so nothing of it would be managed.
 *
 * A script (#!) is judged by its interpreter.  Anything unreadable or not
 * ELF is left for exec to judge.
 */
#include <elf.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runcheck.h"

/* The file exec would run for `prog` (PATH searched as execvp does). */
static bool resolve(const char *prog, char *out, size_t len)
{
	const char *path = getenv("PATH");
	char dirs[4096], *save = NULL;

	if (strchr(prog, '/'))
		return snprintf(out, len, "%s", prog) < (int)len;
	snprintf(dirs, sizeof(dirs), "%s", path ? path : "/usr/bin:/bin");
	for (char *d = strtok_r(dirs, ":", &save); d;
	     d = strtok_r(NULL, ":", &save)) {
		if (snprintf(out, len, "%s/%s", *d ? d : ".", prog) <
			    (int)len &&
		    access(out, X_OK) == 0)
			return true;
	}
	return false;
}

static bool read_at(int fd, void *buf, size_t len, off_t off)
{
	return pread(fd, buf, len, off) == (ssize_t)len;
}

/* True if the ELF file has a section called `name`. */
static bool has_section(int fd, const Elf64_Ehdr *eh, const char *name)
{
	Elf64_Shdr strtab, sh;
	char got[32];
	size_t n = strlen(name) + 1;

	if (eh->e_shentsize != sizeof(sh) || eh->e_shstrndx >= eh->e_shnum ||
	    !read_at(fd, &strtab, sizeof(strtab),
		     (off_t)(eh->e_shoff + eh->e_shstrndx * sizeof(sh))))
		return false;
	for (unsigned i = 0; i < eh->e_shnum && i < 4096; i++) {
		if (!read_at(fd, &sh, sizeof(sh),
			     (off_t)(eh->e_shoff + i * sizeof(sh))) ||
		    sh.sh_name >= strtab.sh_size || n > sizeof(got))
			continue;
		if (pread(fd, got, n, (off_t)(strtab.sh_offset + sh.sh_name)) ==
			    (ssize_t)n &&
		    memcmp(got, name, n) == 0)
			return true;
	}
	return false;
}

static bool has_interp(int fd, const Elf64_Ehdr *eh)
{
	Elf64_Phdr ph;

	if (eh->e_phentsize != sizeof(ph))
		return true;	/* not ours to judge */
	for (unsigned i = 0; i < eh->e_phnum; i++) {
		if (!read_at(fd, &ph, sizeof(ph),
			     (off_t)(eh->e_phoff + i * sizeof(ph))))
			return true;
		if (ph.p_type == PT_INTERP)
			return true;
	}
	return false;
}

static int check_elf(int fd, const struct stat *st, char *why, size_t len)
{
	Elf64_Ehdr eh;

	if (!read_at(fd, &eh, sizeof(eh), 0) ||
	    memcmp(eh.e_ident, ELFMAG, SELFMAG) ||
	    eh.e_ident[EI_CLASS] != ELFCLASS64)
		return 0;
	if ((st->st_mode & S_ISUID) && st->st_uid != getuid()) {
		snprintf(why, len, "it is set-user-ID, and the loader ignores "
			 "LD_PRELOAD for such programs");
		return 1;
	}
	if ((st->st_mode & S_ISGID) && st->st_gid != getgid()) {
		snprintf(why, len, "it is set-group-ID, and the loader ignores "
			 "LD_PRELOAD for such programs");
		return 1;
	}
	if (!has_interp(fd, &eh)) {
		snprintf(why, len, "it is statically linked: no dynamic loader "
			 "reads LD_PRELOAD");
		return 1;
	}
	if (has_section(fd, &eh, ".go.buildinfo")) {
		snprintf(why, len, "it is a Go program: the Go runtime maps its "
			 "memory with raw system calls, which LD_PRELOAD cannot "
			 "see");
		return 1;
	}
	return 0;
}

int run_check(const char *prog, char *why, size_t len)
{
	char path[PATH_MAX], head[PATH_MAX + 2];
	struct stat st;
	int rc = 0;

	for (int depth = 0; depth < 4; depth++) {
		int fd;
		ssize_t n;

		if (!resolve(prog, path, sizeof(path)))
			return 0;
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			return 0;
		if (fstat(fd, &st) < 0) {
			close(fd);
			return 0;
		}
		n = pread(fd, head, sizeof(head) - 1, 0);
		if (n > 2 && head[0] == '#' && head[1] == '!') {
			/* The interpreter, up to the first blank. */
			head[n] = '\0';
			close(fd);
			prog = head + 2 + strspn(head + 2, " \t");
			head[2 + strspn(head + 2, " \t") +
			     strcspn(prog, " \t\n")] = '\0';
			if (!*prog)
				return 0;
			continue;
		}
		rc = check_elf(fd, &st, why, len);
		close(fd);
		return rc;
	}
	return 0;
}
