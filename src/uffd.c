/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "inject.h"
#include "log.h"
#include "uffd.h"
#include "util.h"

static int open_syscall(int flags)
{
#ifdef SYS_userfaultfd
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | flags);

	return fd >= 0 ? fd : -errno;
#else
	(void)flags;
	return -ENOSYS;
#endif
}

static int open_dev(void)
{
	int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	int fd, err;

	if (dev < 0)
		return -errno;
	fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC);
	err = fd < 0 ? -errno : fd;
	close(dev);
	return err;
}

static int handshake(int fd, uint64_t want, uint64_t *got)
{
	struct uffdio_api api = { .api = UFFD_API, .features = want };

	if (ioctl(fd, UFFDIO_API, &api) < 0)
		return -errno;
	*got = api.features;
	return 0;
}

/* read(2), not stdio: no malloc, as in the preload library's start. */
int proc_int(const char *path, const char *key)
{
	char buf[4096], *p = buf;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;

	if (fd >= 0)
		close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	while (key && strncmp(p, key, strlen(key)) != 0) {
		p = strchr(p, '\n');
		if (!p)
			return -1;
		p++;
	}
	if (key)
		p += strlen(key);
	return atoi(p);
}

int uffd_seccomp_mode(void)
{
	return proc_int("/proc/self/status", "Seccomp:");
}

static void log_refused(int sys_err, int dev_err)
{
	int mode = uffd_seccomp_mode();

	log_error("cannot open userfaultfd (syscall: %s, /dev/userfaultfd: "
		  "%s): %s%s", strerror(-sys_err), strerror(-dev_err),
		  UFFD_ADMIN_HINT,
		  mode > 0 ? "; this process also runs under a seccomp filter, "
			     "which must allow the userfaultfd syscall" : "");
}

/* The full kind (the syscall, then the device); if both are refused and
 * user_ok, the user-mode-only kind, which needs no privilege. */
static int open_raw(bool user_ok, bool *user_only)
{
	int fd = open_syscall(0);
	int dev_err, ufd;

	*user_only = false;
	if (fd >= 0)
		return fd;
	/* The device works where the syscall is refused for lack of
	 * privilege to catch kernel-mode faults, or filtered by seccomp. */
	dev_err = open_dev();
	if (dev_err >= 0)
		return dev_err;
	if (fd == -ENOSYS && dev_err == -ENOENT) {
		log_error("userfaultfd is not available: this kernel has no "
			  "userfaultfd syscall and no /dev/userfaultfd "
			  "(CONFIG_USERFAULTFD is off)");
		return -ENOSYS;
	}
	if (user_ok && fd == -EPERM) {
		ufd = open_syscall(UFFD_USER_MODE_ONLY);
		if (ufd >= 0) {
			*user_only = true;
			return ufd;
		}
	}
	log_refused(fd, dev_err);
	return fd == -ENOSYS ? -EPERM : fd;
}

int uffd_open(int *fdp, uint64_t want, uint64_t *features, bool user_ok,
	      bool *user_only)
{
	uint64_t avail = 0;
	int fd, err;

	/* A throwaway fd tells which features exist: UFFDIO_API fails as a
	 * whole if asked for one the kernel lacks, and may be called once. */
	fd = open_raw(user_ok, user_only);
	if (fd < 0)
		return fd;
	err = handshake(fd, 0, &avail);
	close(fd);
	if (err < 0) {
		log_error("userfaultfd API handshake failed: %s", strerror(-err));
		return err;
	}
	fd = open_raw(user_ok, user_only);
	if (fd < 0)
		return fd;
	err = handshake(fd, avail & want, features);
	if (err < 0) {
		log_error("userfaultfd API handshake failed: %s", strerror(-err));
		close(fd);
		return err;
	}
	if (*user_only)
		log_info("the full userfaultfd is refused to this process: "
			 "using a user-mode-only one (UPAGER_USER_MODE_ONLY=1); "
			 "system calls given managed memory that is not "
			 "resident fail with EFAULT");
	*fdp = fd;
	return 0;
}

/* Each way on its own, for upager-run --check; no message logged. */
void uffd_probe(struct uffd_access *a)
{
	int fd;

	memset(a, 0, sizeof(*a));
	a->syscall = open_syscall(0);
	a->dev = open_dev();
	a->user_only = open_syscall(UFFD_USER_MODE_ONLY);
	fd = a->syscall >= 0 ? a->syscall : a->dev >= 0 ? a->dev : a->user_only;
	if (fd >= 0 && handshake(fd, 0, &a->features) < 0)
		a->features = 0;
	if (a->syscall >= 0)
		close(a->syscall), a->syscall = 0;
	if (a->dev >= 0)
		close(a->dev), a->dev = 0;
	if (a->user_only >= 0)
		close(a->user_only), a->user_only = 0;
}

int uffd_register(int fd, void *addr, size_t len, bool *wp)
{
	struct uffdio_register reg = {
		.range = { .start = (uintptr_t)addr, .len = len },
		.mode = UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_WP,
	};

	if (ioctl(fd, UFFDIO_REGISTER, &reg) == 0) {
		*wp = true;
		return 0;
	}
	if (errno != EINVAL)
		return -errno;
	/* A kernel without anonymous write-protect support. */
	reg.mode = UFFDIO_REGISTER_MODE_MISSING;
	if (ioctl(fd, UFFDIO_REGISTER, &reg) < 0)
		return -errno;
	*wp = false;
	return 0;
}

int uffd_unregister(int fd, void *addr, size_t len)
{
	struct uffdio_range r = { .start = (uintptr_t)addr, .len = len };

	return ioctl(fd, UFFDIO_UNREGISTER, &r) < 0 ? -errno : 0;
}

int uffd_wake(int fd, void *addr, size_t len)
{
	struct uffdio_range r = { .start = (uintptr_t)addr, .len = len };

	return ioctl(fd, UFFDIO_WAKE, &r) < 0 ? -errno : 0;
}

/*
 * The fill ioctls share one shape: a destination range, a mode, and a
 * signed result that is the bytes done or -errno.  `op` picks the ioctl;
 * this is the one place their EAGAIN/EEXIST/partial cases are handled.
 */
enum fill_op { FILL_COPY, FILL_ZERO, FILL_POISON, FILL_MOVE };

static long fill_once(int fd, enum fill_op op, uintptr_t dst, uintptr_t src,
		      size_t len, uint64_t mode, int *err)
{
	union {
		struct uffdio_copy copy;
		struct uffdio_zeropage zero;
		struct uffdio_poison poison;
		struct uffdio_move move;
	} a;
	unsigned long req;
	__s64 *res;
	int rc;

	memset(&a, 0, sizeof(a));
	switch (op) {
	case FILL_COPY:
		a.copy = (struct uffdio_copy){ dst, src, len, mode, 0 };
		req = UFFDIO_COPY, res = &a.copy.copy;
		break;
	case FILL_ZERO:
		a.zero.range = (struct uffdio_range){ dst, len };
		a.zero.mode = mode;
		req = UFFDIO_ZEROPAGE, res = &a.zero.zeropage;
		break;
	case FILL_POISON:
		a.poison.range = (struct uffdio_range){ dst, len };
		a.poison.mode = mode;
		req = UFFDIO_POISON, res = &a.poison.updated;
		break;
	default:
		a.move = (struct uffdio_move){ dst, src, len, mode, 0 };
		req = UFFDIO_MOVE, res = &a.move.move;
		break;
	}
	rc = inject_check(INJECT_UFFD_FILL, (int)_IOC_NR(req));
	if (rc < 0) {
		/* A test's unexpected errno, as if the kernel gave it. */
		*err = -rc;
		return 0;
	}
	rc = ioctl(fd, req, &a);
	*err = rc < 0 ? errno : 0;
	return *res > 0 ? (long)*res : 0;
}

/* *filled (may be NULL): the bytes done before an error, or all of len. */
static int fill(int fd, enum fill_op op, uintptr_t dst, uintptr_t src,
		size_t len, uint64_t mode, size_t *filled)
{
	int result = 0, err, yields = 0;

	if (filled)
		*filled = 0;
	while (len > 0) {
		long done = fill_once(fd, op, dst, src, len, mode, &err);

		if (done > 0) {
			done = MIN((size_t)done, len);
			dst += done, src += done, len -= done;
			if (filled)
				*filled += (size_t)done;
		}
		if (err == 0 || (err == EAGAIN && done > 0))
			continue;
		if (err == EAGAIN) {
			/* mmap_changing: the layout is moving under us (we use
			 * no events, so it passes on its own). */
			if (++yields > 100000)
				return -EAGAIN;
			sched_yield();
			continue;
		}
		if (err != EEXIST || op == FILL_MOVE)
			return -err;
		/* This page is present already: someone else won.  A failed
		 * ioctl wakes nobody, so wake its waiters, then go on. */
		uffd_wake(fd, (void *)dst, PAGE_SIZE);
		result = -EEXIST;
		dst += PAGE_SIZE, src += PAGE_SIZE, len -= PAGE_SIZE;
	}
	return result;
}

int uffd_copy(int fd, void *dst, const void *src, size_t len, bool wp)
{
	return fill(fd, FILL_COPY, (uintptr_t)dst, (uintptr_t)src, len,
		    wp ? UFFDIO_COPY_MODE_WP : 0, NULL);
}

int uffd_zeropage(int fd, void *dst, size_t len)
{
	return fill(fd, FILL_ZERO, (uintptr_t)dst, 0, len, 0, NULL);
}

int uffd_poison(int fd, void *dst, size_t len)
{
	return fill(fd, FILL_POISON, (uintptr_t)dst, 0, len, 0, NULL);
}

/* Whether the page at addr is mapped (mincore never faults it in). */
static bool page_present(uintptr_t addr)
{
	unsigned char v = 0;

	return mincore((void *)addr, PAGE_SIZE, &v) == 0 && (v & 1);
}

int uffd_move(int fd, void *dst, void *src, size_t len, size_t *moved)
{
	size_t done;
	int rc = fill(fd, FILL_MOVE, (uintptr_t)dst, (uintptr_t)src, len,
		      UFFDIO_MOVE_MODE_DONTWAKE, &done);

	/*
	 * Believe the page tables, not only the error: on this kernel
	 * (6.18) a MOVE retried after EAGAIN was seen to fail with EEXIST
	 * and 0 moved while the page had left its source for the
	 * destination, which the caller would have taken for a page that
	 * stayed, and lost when it cleared the destination.  The caller's
	 * destination is empty before a MOVE, so a page there with none
	 * left at the source was moved.
	 */
	while (rc < 0 && done < len &&
	       page_present((uintptr_t)dst + done) &&
	       !page_present((uintptr_t)src + done)) {
		log_warn("UFFDIO_MOVE of %p failed (%s) but moved the page: "
			 "taken as moved", (void *)((uintptr_t)src + done),
			 strerror(-rc));
		done += PAGE_SIZE;
		if (done == len)
			rc = 0;
	}
	if (moved)
		*moved = done;
	return rc;
}

int uffd_writeprotect(int fd, void *addr, size_t len, bool wp, bool dontwake)
{
	struct uffdio_writeprotect w = {
		.range = { .start = (uintptr_t)addr, .len = len },
		.mode = (wp ? UFFDIO_WRITEPROTECT_MODE_WP : 0) |
			(dontwake ? UFFDIO_WRITEPROTECT_MODE_DONTWAKE : 0),
	};

	while (ioctl(fd, UFFDIO_WRITEPROTECT, &w) < 0) {
		if (errno != EAGAIN)
			return -errno;
		sched_yield();
	}
	return 0;
}
