/* SPDX-License-Identifier: MIT */
/*
 * What preload mode needs of a program: found in PATH as execvp(3) finds
 * it, dynamically linked (ld.so is what loads the preload library), not
 * run in secure mode (set-uid, set-gid, file capabilities: ld.so then
 * ignores LD_PRELOAD), the machine's own 64-bit code, and allocating
 * through libc (a Go binary has an allocator of its own).
 */
#ifndef UPAGER_TOOLS_PROGRAM_H
#define UPAGER_TOOLS_PROGRAM_H

#include <limits.h>
#include <stdbool.h>
#include <stdio.h>

struct program {
	char path[PATH_MAX];	/* as found in PATH */
	int err;		/* 0, -ENOENT (not found), -EACCES, ... */
	char shebang[PATH_MAX];	/* a script's interpreter ("#!" line) */
	char interp[PATH_MAX];	/* PT_INTERP: the dynamic loader */
	bool script;		/* path is a "#!" script; the rest is about
				 * its interpreter */
	bool elf;		/* an ELF file (of the interpreter for a script) */
	bool foreign;		/* 32-bit, or another machine's code */
	bool is_static;		/* no PT_INTERP: ld.so never runs */
	bool secure;		/* set-uid/set-gid to another user, or file
				 * capabilities: AT_SECURE */
	bool go;		/* .go.buildinfo, Go build ID note, or
				 * runtime.main */
	char go_why[64];	/* which of those was seen */
	char secure_why[64];
};

/* Look name up as execvp would and inspect what would run.  Fills *p;
 * p->err says whether it was found.  Never fails otherwise: what cannot be
 * read is simply not reported. */
void program_inspect(const char *name, struct program *p);

/* One line "<prefix><reason>" to f for each thing that keeps preload mode
 * from managing the program (not found included); the count of them. */
int program_report(const struct program *p, FILE *f, const char *prefix);

#endif
