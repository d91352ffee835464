/* SPDX-License-Identifier: MIT */
/* Live statistics files: the format, the directory, reading, cleaning. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "statsfile.h"
#include "util.h"

/* Changing the layout?  Bump STATSFILE_VERSION, then this size. */
_Static_assert(sizeof(struct statsfile) == 50264,
	       "struct statsfile changed: bump STATSFILE_VERSION");

void statsfile_init(struct statsfile *f, pid_t pid, const char *command)
{
	memset(f, 0, sizeof(*f));
	memcpy(f->magic, STATSFILE_MAGIC, sizeof(f->magic));
	f->version = STATSFILE_VERSION;
	f->size = sizeof(*f);
	f->stats_size = sizeof(struct upg_stats);
	f->hist_buckets = HIST_BUCKETS;
	f->nkinds = UPG_FAULT_NKINDS;
	f->pid = pid;
	snprintf(f->command, sizeof(f->command), "%s", command ? command : "");
}

static bool owned_dir(const char *path, uid_t uid)
{
	struct stat st;

	return path && path[0] == '/' && stat(path, &st) == 0 &&
	       S_ISDIR(st.st_mode) && st.st_uid == uid;
}

int statsdir_path(char *out, size_t len, const char *dir, uid_t uid,
		  const char *xdg)
{
	int n;

	if (dir && *dir)
		n = snprintf(out, len, "%s", dir);
	else if (uid == 0)
		n = snprintf(out, len, "/run/upager");
	else if (owned_dir(xdg, uid))
		n = snprintf(out, len, "%s/upager", xdg);
	else
		n = snprintf(out, len, "/tmp/upager-%u", (unsigned)uid);
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

int statsdir_prepare(const char *dir, bool strict, const char **why)
{
	struct stat st;

	*why = "";
	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		*why = "cannot create it";
		return -errno;
	}
	if (lstat(dir, &st) < 0) {
		*why = "cannot stat it";
		return -errno;
	}
	if (!S_ISDIR(st.st_mode)) {
		*why = "it is not a directory";
		return -ENOTDIR;
	}
	if (st.st_uid != geteuid()) {
		*why = "it belongs to another user";
		return -EPERM;
	}
	/* A default directory we own but others may enter: ours to fix. */
	if (strict && (st.st_mode & 077) && chmod(dir, 0700) < 0) {
		*why = "it is open to other users and cannot be made 0700";
		return -errno;
	}
	return 0;
}

bool statsfile_name(const char *name, pid_t *pid, unsigned *n)
{
	int p, end = 0;
	unsigned k;

	if (sscanf(name, "%d-%u" STATSFILE_SUFFIX "%n", &p, &k, &end) != 2 ||
	    end == 0 || name[end] != '\0' || p <= 0)
		return false;
	*pid = p;
	*n = k;
	return true;
}

int dir_each(int dirfd, int (*fn)(const char *name, void *arg), void *arg)
{
	char buf[4096] __attribute__((aligned(8)));
	long n;
	int rc = 0;

	if (lseek(dirfd, 0, SEEK_SET) < 0)
		return -errno;
	while (rc == 0 && (n = syscall(SYS_getdents64, dirfd, buf,
				       sizeof(buf))) > 0) {
		for (long pos = 0; pos < n && rc == 0;) {
			/* struct linux_dirent64: ino, off, reclen, type, name */
			unsigned short reclen;

			memcpy(&reclen, buf + pos + 16, sizeof(reclen));
			rc = fn(buf + pos + 19, arg);
			pos += reclen;
		}
	}
	return rc;
}

/* Does any line of /proc/pid/maps map device dev, inode ino? */
static bool maps_hold(pid_t pid, dev_t dev, ino_t ino)
{
	char path[64], buf[8192];
	size_t have = 0;
	bool skip = false, found = false;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno != ENOENT && errno != ESRCH;
	while (!found && (n = read(fd, buf + have, sizeof(buf) - 1 - have)) > 0) {
		char *line = buf, *nl;

		have += (size_t)n;
		buf[have] = '\0';
		while (!found && (nl = strchr(line, '\n'))) {
			unsigned maj, mnr;
			unsigned long long inode;

			*nl = '\0';
			/* start-end perms offset maj:min inode path */
			if (!skip && sscanf(line, "%*x-%*x %*s %*x %x:%x %llu",
					    &maj, &mnr, &inode) == 3)
				found = inode == ino &&
					makedev(maj, mnr) == dev;
			skip = false;
			line = nl + 1;
		}
		have -= (size_t)(line - buf);
		memmove(buf, line, have);
		if (have == sizeof(buf) - 1) {
			/* A line longer than buf: its start was parsed. */
			have = 0;
			skip = true;
		}
	}
	close(fd);
	return found;
}

static bool pid_dead(pid_t pid)
{
	return kill(pid, 0) < 0 && errno == ESRCH;
}

bool statsfile_live(int dirfd, const char *name, pid_t pid)
{
	struct stat st;

	if (pid_dead(pid))
		return false;
	if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return false;
	return maps_hold(pid, st.st_dev, st.st_ino);
}

struct clean {
	int dirfd, removed;
};

/* A publisher writes ".<pid>-<n>.tmp", then renames it: a leftover one
 * is stale once its pid is gone. */
static bool stale_tmp(const char *name)
{
	int p, end = 0;

	return sscanf(name, ".%d-%*u.tmp%n", &p, &end) == 1 && end &&
	       name[end] == '\0' && p > 0 && pid_dead(p);
}

static int clean_one(const char *name, void *arg)
{
	struct clean *c = arg;
	pid_t pid;
	unsigned n;

	if ((statsfile_name(name, &pid, &n) &&
	     !statsfile_live(c->dirfd, name, pid)) || stale_tmp(name))
		c->removed += unlinkat(c->dirfd, name, 0) == 0;
	return 0;
}

int statsfile_clean(const char *dir)
{
	struct clean c = { open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), 0 };
	int rc;

	if (c.dirfd < 0)
		return -errno;
	rc = dir_each(c.dirfd, clean_one, &c);
	close(c.dirfd);
	return rc < 0 ? rc : c.removed;
}

/* Seqlock read: copy the data between two equal, even sequence numbers.
 * The writer holds it odd for one memcpy; a reader that never sees it
 * even for a whole second found a writer that died inside one. */
static int read_data(const struct statsfile *f, struct statsfile_data *out)
{
	for (int tries = 0; tries < 1000; tries++) {
		uint32_t s1 = atomic_load_explicit(&f->seq,
						   memory_order_acquire);

		if (!(s1 & 1)) {
			memcpy(out, (const void *)&f->data, sizeof(*out));
			atomic_thread_fence(memory_order_acquire);
			if (atomic_load_explicit(&f->seq,
						 memory_order_relaxed) == s1)
				return 0;
		}
		usleep(1000);
	}
	return -EAGAIN;
}

static bool same_format(const struct statsfile *f)
{
	return memcmp(f->magic, STATSFILE_MAGIC, sizeof(f->magic)) == 0 &&
	       f->version == STATSFILE_VERSION && f->size == sizeof(*f) &&
	       f->stats_size == sizeof(struct upg_stats) &&
	       f->hist_buckets == HIST_BUCKETS &&
	       f->nkinds == UPG_FAULT_NKINDS;
}

int statsfile_read(int dirfd, const char *name, struct statsfile *out)
{
	const struct statsfile *f;
	struct stat st;
	int fd, err = 0;

	fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	memset(out, 0, sizeof(*out));
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return -EPROTO;
	}
	/* A shorter file of another version: its header is all we read. */
	if ((size_t)st.st_size < sizeof(*out)) {
		ssize_t n = pread(fd, out, offsetof(struct statsfile, seq), 0);

		close(fd);
		if (n < (ssize_t)offsetof(struct statsfile, seq))
			memset(out, 0, sizeof(*out));
		return -EPROTO;
	}
	f = mmap(NULL, sizeof(*f), PROT_READ, MAP_SHARED, fd, 0);
	close(fd);
	if (f == MAP_FAILED)
		return -errno;
	memcpy(out, f, offsetof(struct statsfile, seq));
	if (!same_format(f))
		err = -EPROTO;
	else
		err = read_data(f, &out->data);
	munmap((void *)f, sizeof(*f));
	return err;
}
