/* SPDX-License-Identifier: MIT */
/*
 * upager-run --check: whether this machine, this user and a program can
 * run under upager, one line per finding, before anything runs.
 */
#ifndef UPAGER_TOOLS_CHECK_H
#define UPAGER_TOOLS_CHECK_H

#include <stdio.h>

#include "upager.h"

/* Write the findings to f for options o and program (NULL: the machine
 * only).  Returns 0 if upager-run can run it, 1 if not. */
int check_run(const struct upg_options *o, const char *program, FILE *f);

/* Whether this process can open the full userfaultfd; if not, one line to
 * f saying why and how an administrator can allow it.  0 or -errno. */
int check_uffd(FILE *f);

#endif
