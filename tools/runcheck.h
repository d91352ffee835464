/* SPDX-License-Identifier: MIT */
/*
 * upager-run's check, before exec, that LD_PRELOAD can reach the program
 * (runcheck.c says which programs it cannot).
 */
#ifndef UPAGER_RUNCHECK_H
#define UPAGER_RUNCHECK_H

#include <stddef.h>

/* 1 if upager cannot manage prog's memory, with the reason in why; 0 if it
 * can, or if exec will tell (the program is missing or unreadable). */
int run_check(const char *prog, char *why, size_t len);

#endif
