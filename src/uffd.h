/* SPDX-License-Identifier: MIT */
/*
 * The userfaultfd layer: open, handshake, feature probe, and one wrapper per
 * ioctl.  The wrappers handle the kernel's odd cases in one place:
 *  - partial progress (EAGAIN with bytes done): retried from where it stopped;
 *  - EAGAIN with no progress (mmap_changing): retried after a yield;
 *  - EEXIST (someone else installed a page): the rest of the range is still
 *    filled, the waiters are woken, and -EEXIST is returned so the caller
 *    can count a spurious fault;
 *  - the result fields read as signed (older kernels report 0, newer ones
 *    -EAGAIN, for no progress).
 * Every function returns 0 or -errno.
 */
#ifndef UPAGER_UFFD_H
#define UPAGER_UFFD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <linux/userfaultfd.h>

/* Definitions newer than the build machine's kernel headers (Debian 12 ships
 * 6.1 headers; the kernels we run on have these). */
#ifndef UFFD_FEATURE_WP_UNPOPULATED
#define UFFD_FEATURE_WP_UNPOPULATED (1 << 13)
#endif
#ifndef UFFD_FEATURE_POISON
#define UFFD_FEATURE_POISON (1 << 14)
#endif
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC (1 << 15)
#endif
#ifndef UFFD_FEATURE_MOVE
#define UFFD_FEATURE_MOVE (1 << 16)
#endif
#ifndef _UFFDIO_POISON
#define _UFFDIO_POISON (0x08)
struct uffdio_poison {
	struct uffdio_range range;
#define UFFDIO_POISON_MODE_DONTWAKE ((__u64)1 << 0)
	__u64 mode;
	__s64 updated;
};
#define UFFDIO_POISON _IOWR(UFFDIO, _UFFDIO_POISON, struct uffdio_poison)
#endif
#ifndef _UFFDIO_MOVE
#define _UFFDIO_MOVE (0x05)
struct uffdio_move {
	__u64 dst;
	__u64 src;
	__u64 len;
#define UFFDIO_MOVE_MODE_DONTWAKE ((__u64)1 << 0)
#define UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES ((__u64)1 << 1)
	__u64 mode;
	__s64 move;
};
#define UFFDIO_MOVE _IOWR(UFFDIO, _UFFDIO_MOVE, struct uffdio_move)
#endif

/* Features upager asks for when the kernel has them.  No EVENT_* features:
 * upager makes the unmap/remove calls on its regions itself, and a handler
 * that had to read its own events would deadlock on them. */
#define UFFD_WANTED_FEATURES                                                  \
	(UFFD_FEATURE_PAGEFAULT_FLAG_WP | UFFD_FEATURE_THREAD_ID |            \
	 UFFD_FEATURE_WP_UNPOPULATED | UFFD_FEATURE_POISON |                  \
	 UFFD_FEATURE_MOVE)

#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif

/* The three ways an administrator can allow the full kind, said in every
 * "cannot open" message (the library's and upager-run's). */
#define UFFD_ADMIN_HINT                                                       \
	"an administrator can allow it in one of three ways: "                \
	"`sysctl vm.unprivileged_userfaultfd=1` (every user); a udev rule "   \
	"giving a group read-write access to /dev/userfaultfd (KERNEL==\""    \
	"userfaultfd\", GROUP=\"upager\", MODE=\"0660\") with this user in "  \
	"it; or the CAP_SYS_PTRACE capability (e.g. systemd's "              \
	"AmbientCapabilities=CAP_SYS_PTRACE)"

/*
 * Open a userfaultfd (the syscall, then /dev/userfaultfd) and do the API
 * handshake asking for `want` (UFFD_WANTED_FEATURES, and UFFD_FEATURE_SIGBUS
 * when faulting threads resolve their own faults) & what the kernel offers.
 * Sets *fd and *features (what the kernel granted).  If both are refused
 * and user_ok, opens a user-mode-only one (UFFD_USER_MODE_ONLY, which
 * needs no privilege) and sets *user_only: faults the kernel takes in
 * system calls are then not reported to us, the call fails with EFAULT.
 * On failure, the thread's last error says why and what to change.
 */
int uffd_open(int *fd, uint64_t want, uint64_t *features, bool user_ok,
	      bool *user_only);

/* How each way of opening fares for this process (upager-run --check):
 * 0 or -errno each; features: what UFFDIO_API offers on the first kind
 * that opened, 0 if none did. */
struct uffd_access {
	int syscall;		/* userfaultfd(2), full kind */
	int dev;		/* /dev/userfaultfd */
	int user_only;		/* userfaultfd(UFFD_USER_MODE_ONLY) */
	uint64_t features;
};
void uffd_probe(struct uffd_access *a);

/* The number in a /proc file: at its start (key NULL), or after the line
 * start `key` ("Seccomp:"); -1 if there is none. */
int proc_int(const char *path, const char *key);

/* Seccomp field of /proc/self/status: 0 off, 1 strict, 2 filter; -1 if
 * unknown. */
int uffd_seccomp_mode(void);

/* Register [addr, addr+len) for missing faults, and write-protect faults when
 * the kernel can (sets *wp).  Unregister undoes it and wakes waiters. */
int uffd_register(int fd, void *addr, size_t len, bool *wp);
int uffd_unregister(int fd, void *addr, size_t len);

/* Fill operations.  Each wakes the waiters of the range when done. */
int uffd_copy(int fd, void *dst, const void *src, size_t len, bool wp);
int uffd_zeropage(int fd, void *dst, size_t len);
int uffd_poison(int fd, void *dst, size_t len);
/* Move pages from src (anonymous, private) to dst (registered).  Without
 * wake: the caller wakes when its bookkeeping is done.  *moved (may be
 * NULL): the bytes moved, all of len or those before the page that
 * failed.  One call for a run costs one TLB flush where a call a page
 * costs one each. */
int uffd_move(int fd, void *dst, void *src, size_t len, size_t *moved);

int uffd_wake(int fd, void *addr, size_t len);
/* Set (wp true) or clear write protection; clearing wakes unless dontwake. */
int uffd_writeprotect(int fd, void *addr, size_t len, bool wp, bool dontwake);

#endif
