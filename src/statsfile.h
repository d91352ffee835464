/* SPDX-License-Identifier: MIT */
/*
 * Live statistics files: one per runtime, named <pid>-<n>.stats, in a
 * directory only its owner can enter (0700; the files are 0600).  A
 * runtime's publisher thread (publish.c) refreshes the record; upager-stat
 * reads it.  This file is what both sides share: the format, the
 * directory, the seqlock read, and telling live files from stale ones.
 *
 * The record is a seqlock-protected copy, not the live counters: the fault
 * path keeps bumping its counters where they are (no shared mapping, no
 * syscall, no extra store), and the format is decoupled from the internal
 * layout of struct counters.  What it costs instead is one refresh per
 * PUBLISH_MS on the publisher thread (see publish.c for the measurement).
 *
 * Format: native byte order and layout (reader and writer are on the same
 * machine), a magic, a version and the sizes the reader checks before
 * anything else; a reader refuses a record whose magic, version or sizes
 * are not its own.
 *
 * Nothing here calls malloc: the library side runs in preload mode, where
 * malloc may hand out managed memory.
 */
#ifndef UPAGER_STATSFILE_H
#define UPAGER_STATSFILE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "stats.h"
#include "upager.h"

#define STATSFILE_MAGIC "UPGSTAT"	/* with its NUL: 8 bytes */
/* Bump on any change of struct statsfile (or of what it embeds: struct
 * upg_stats, struct hist): the _Static_assert in statsfile.c fails until
 * the size there is updated too. */
#define STATSFILE_VERSION 5
#define STATSFILE_SUFFIX ".stats"
#define STATSFILE_OFF "off"	/* UPAGER_STATS_DIR value: publish nothing */
#define PUBLISH_MS 250		/* refresh period of the record */

/* What the publisher refreshes, copied whole under the seqlock. */
struct statsfile_data {
	uint64_t updated_ns;		/* CLOCK_REALTIME of this refresh */
	uint64_t mem_limit;		/* the budget in bytes, 0 = none */
	uint64_t store_pages;		/* pages held in the store now */
	double fault_rate;		/* faults per second, last second */
	struct upg_stats stats;		/* as upg_stats_get() returns it */
	struct hist hist[UPG_FAULT_NKINDS]; /* raw latency histograms (ns) */
};

struct statsfile {
	char magic[8];
	uint32_t version;
	uint32_t size;			/* sizeof(struct statsfile) */
	uint32_t stats_size;		/* sizeof(struct upg_stats) */
	uint32_t hist_buckets;		/* HIST_BUCKETS */
	uint32_t nkinds;		/* UPG_FAULT_NKINDS */
	int32_t pid;
	uint64_t started_ns;		/* CLOCK_REALTIME the runtime started */
	char command[64];		/* the program's short name */
	_Atomic uint32_t seq;		/* odd while data is being written */
	uint32_t pad;
	struct statsfile_data data;
};

/*
 * The directory for a user: `dir` if given (a path; STATSFILE_OFF is the
 * caller's business), else /run/upager for root, $XDG_RUNTIME_DIR/upager
 * when xdg is an absolute directory that uid owns, else /tmp/upager-<uid>.
 * Returns 0 or -ENAMETOOLONG.
 */
int statsdir_path(char *out, size_t len, const char *dir, uid_t uid,
		  const char *xdg);

/*
 * Create the directory (mode 0700) if missing, check it is a directory,
 * not a symlink, owned by the caller, and for a default one (strict) not
 * open to others.  0 or -errno; *why says what was wrong.
 */
int statsdir_prepare(const char *dir, bool strict, const char **why);

/* Parse "<pid>-<n>.stats"; false for any other name. */
bool statsfile_name(const char *name, pid_t *pid, unsigned *n);

/*
 * Is the file `name` in dirfd live: does process pid (still) map it?
 * A dead pid, a reused one, or a process image that exec'd since all say
 * no.  Where that cannot be read (another user's process), yes.
 */
bool statsfile_live(int dirfd, const char *name, pid_t pid);

/*
 * Remove the stale statistics files of dir (and leftovers of a publisher
 * killed half-way).  Returns how many were removed, or -errno if dir
 * cannot be read.
 */
int statsfile_clean(const char *dir);

/* Call fn(name, arg) for each entry of the open directory dirfd, without
 * malloc; stops at, and returns, the first non-zero value of fn. */
int dir_each(int dirfd, int (*fn)(const char *name, void *arg), void *arg);

/*
 * Read a consistent copy of the file `name` in dirfd into *out.
 * Returns 0, or -EPROTO (magic, version or sizes not ours: *out->version
 * and friends are filled so the caller can say which), -EAGAIN (its
 * writer never finished a refresh: it died in one), or -errno of open.
 */
int statsfile_read(int dirfd, const char *name, struct statsfile *out);

/* Fill the constant part of a header for pid. */
void statsfile_init(struct statsfile *f, pid_t pid, const char *command);

#endif
