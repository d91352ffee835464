/* SPDX-License-Identifier: MIT */
/*
 * upager-run --check (check.h).  Each finding is one line that starts with
 * its verdict:
 *   ok    nothing to change;
 *   info  how things stand, for the reader who must change something;
 *   warn  upager runs, with less (a missing feature, little disk);
 *   no    upager-run cannot manage the program until this changes.
 * Any "no" makes the exit status 1.  Several findings matter only with a
 * budget (the swap store needs io_uring, its directory, UFFDIO_MOVE):
 * without one they are "warn".
 */
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "check.h"
#include "program.h"
#include "uffd.h"

struct report {
	FILE *f;
	int no;			/* "no" findings */
	bool budget;		/* a budget is set: the store is needed */
};

static void say(struct report *r, const char *verdict, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void say(struct report *r, const char *verdict, const char *fmt, ...)
{
	va_list ap;

	r->no += strcmp(verdict, "no") == 0;
	fprintf(r->f, "%-4s  ", verdict);
	va_start(ap, fmt);
	vfprintf(r->f, fmt, ap);
	va_end(ap);
	fputc('\n', r->f);
}

/* "no" if the swap store is needed, else "warn". */
static const char *for_store(const struct report *r)
{
	return r->budget ? "no" : "warn";
}

static const char *err_name(int err)
{
	return err == 0 ? "opens" : strerror(-err);
}

static void uffd_findings(struct report *r, const struct uffd_access *a)
{
	int sysctl = proc_int("/proc/sys/vm/unprivileged_userfaultfd", NULL);
	int seccomp = uffd_seccomp_mode();
	struct stat st;

	say(r, a->syscall == 0 ? "ok" : "info", "userfaultfd(2), full kind: %s",
	    err_name(a->syscall));
	if (sysctl >= 0)
		say(r, "info", "vm.unprivileged_userfaultfd = %d: %s", sysctl,
		    sysctl ? "every user may open the full kind"
			   : "only processes with CAP_SYS_PTRACE may open "
			     "the full kind with the syscall");
	if (stat("/dev/userfaultfd", &st) == 0)
		say(r, a->dev == 0 ? "ok" : "info",
		    "/dev/userfaultfd: mode %04o, uid %u, gid %u: %s",
		    (unsigned)(st.st_mode & 07777), (unsigned)st.st_uid,
		    (unsigned)st.st_gid,
		    a->dev == 0 ? "this user can open it"
				: "this user cannot open it");
	else
		say(r, "info", "/dev/userfaultfd: absent (Linux 6.1+ has it)");
	if (seccomp > 0)
		say(r, "warn", "seccomp: this process runs under a %s; it must "
		    "allow the userfaultfd, io_uring_setup and "
		    "io_uring_enter system calls",
		    seccomp == 1 ? "strict seccomp mode" : "seccomp filter");
	else if (seccomp == 0)
		say(r, "ok", "seccomp: off");
	say(r, "info", "userfaultfd(2), user-mode-only kind: %s%s",
	    err_name(a->user_only),
	    a->user_only == 0 ? " (for programs built on the library that "
				"set UPAGER_USER_MODE_ONLY=1; upager-run never "
				"uses it)" : "");
	if (a->syscall != 0 && a->dev != 0)
		say(r, "no", "userfaultfd: this user cannot open the full "
		    "kind: %s", UFFD_ADMIN_HINT);
}

static void feature_findings(struct report *r, uint64_t f)
{
	struct utsname u;

	uname(&u);
	if (!f) {
		say(r, "info", "kernel %s: features unknown (no userfaultfd "
		    "opened)", u.release);
		return;
	}
	say(r, "info", "kernel %s: UFFDIO_MOVE %s, UFFDIO_POISON %s, "
	    "WP_ASYNC %s, WP_UNPOPULATED %s", u.release,
	    f & UFFD_FEATURE_MOVE ? "yes" : "no",
	    f & UFFD_FEATURE_POISON ? "yes" : "no",
	    f & UFFD_FEATURE_WP_ASYNC ? "yes" : "no",
	    f & UFFD_FEATURE_WP_UNPOPULATED ? "yes" : "no");
	if (!(f & UFFD_FEATURE_MOVE))
		say(r, for_store(r), "no UFFDIO_MOVE (Linux 6.8+): pages "
		    "cannot be evicted, so no budget can be kept");
	if (!(f & UFFD_FEATURE_POISON))
		say(r, "warn", "no UFFDIO_POISON (Linux 6.6+): a page whose "
		    "stored copy is lost cannot be turned into SIGBUS");
	if (!(f & UFFD_FEATURE_WP_UNPOPULATED))
		say(r, "warn", "no UFFD_FEATURE_WP_UNPOPULATED (Linux 6.4+): "
		    "snapshots of never-touched pages are not protected");
}

static void io_uring_findings(struct report *r)
{
	int disabled = proc_int("/proc/sys/kernel/io_uring_disabled", NULL);
	struct io_uring ring;
	int err = io_uring_queue_init(4, &ring, 0);
	char why[96] = "";

	if (disabled >= 0)
		snprintf(why, sizeof(why), " (kernel.io_uring_disabled = %d)",
			 disabled);
	if (err == 0) {
		io_uring_queue_exit(&ring);
		say(r, "ok", "io_uring: a ring can be set up%s", why);
		return;
	}
	say(r, for_store(r), "io_uring: cannot set up a ring: %s%s; the swap "
	    "store needs it%s", strerror(-err), why,
	    disabled == 1 ? " (1: only root and kernel.io_uring_group)" :
	    disabled == 2 ? " (2: disabled for everyone)" : "");
}

static void swap_findings(struct report *r, const struct upg_options *o)
{
	const char *dir = o->swap_dir;
	struct statvfs vfs;
	double gib = 1024.0 * 1024 * 1024, free_b;
	int fd;

	fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd < 0) {
		say(r, for_store(r), "swap directory %s: cannot create the "
		    "swap file there (O_TMPFILE: %s); set UPAGER_SWAP_DIR or "
		    "--swap-dir", dir, strerror(errno));
		return;
	}
	close(fd);
	if (statvfs(dir, &vfs) < 0) {
		say(r, "warn", "swap directory %s: free space unknown (%s)",
		    dir, strerror(errno));
		return;
	}
	free_b = (double)vfs.f_bavail * (double)vfs.f_frsize;
	say(r, free_b >= (double)o->swap_size ? "ok" : "warn",
	    "swap directory %s: %.1f GiB free; the swap file may grow to "
	    "%.1f GiB (UPAGER_SWAP_SIZE)%s", dir, free_b / gib,
	    (double)o->swap_size / gib,
	    free_b >= (double)o->swap_size ? "" :
	    ": when the disk is full, UPAGER_FULL_POLICY applies");
}

static void program_findings(struct report *r, const char *name)
{
	struct program p;
	char *buf = NULL;
	size_t len = 0;
	FILE *m = open_memstream(&buf, &len);
	int n;

	program_inspect(name, &p);
	if (!m)
		return;
	n = program_report(&p, m, "");
	fclose(m);
	/* Each reason becomes a "no" line of its own. */
	for (char *line = buf, *nl; n && line && *line; line = nl + 1) {
		nl = strchr(line, '\n');
		if (!nl)
			break;
		*nl = '\0';
		say(r, "no", "%s", line);
	}
	free(buf);
	if (n)
		return;
	if (p.script)
		say(r, "ok", "%s: a script run by %s, dynamically linked (%s)",
		    p.path, p.shebang, p.interp);
	else if (p.elf)
		say(r, "ok", "%s: dynamically linked (%s)", p.path, p.interp);
	else
		say(r, "warn", "%s: not an ELF program nor a script: "
		    "execvp(3) runs it with /bin/sh", p.path);
}

int check_uffd(FILE *f)
{
	struct uffd_access a;

	uffd_probe(&a);
	if (a.syscall == 0 || a.dev == 0)
		return 0;
	fprintf(f, "upager-run: cannot open userfaultfd (syscall: %s, "
		"/dev/userfaultfd: %s): %s\n", strerror(-a.syscall),
		strerror(-a.dev), UFFD_ADMIN_HINT);
	return a.syscall;
}

int check_run(const struct upg_options *o, const char *program, FILE *f)
{
	struct report r = { .f = f, .budget = o->mem_limit != 0 };
	struct uffd_access a;

	uffd_probe(&a);
	uffd_findings(&r, &a);
	feature_findings(&r, a.features);
	io_uring_findings(&r);
	swap_findings(&r, o);
	if (o->resolve == UPG_RESOLVE_THREAD)
		say(&r, "no", "UPAGER_RESOLVE=thread: not for preload mode "
		    "(system calls given a page not in memory would fail with "
		    "EFAULT); unset it or set it to 'handler'");
	if (program)
		program_findings(&r, program);
	if (r.no)
		fprintf(f, "upager-run cannot %s here: %d finding(s) above "
			"say \"no\"\n", program ? "manage this program"
						: "run programs", r.no);
	else
		fprintf(f, "upager-run can %s here\n",
			program ? "manage this program" : "run programs");
	return r.no ? 1 : 0;
}
