/* SPDX-License-Identifier: MIT */
/*
 * UPAGER_RESOLVE=thread: faulting threads resolve their own faults in a
 * SIGBUS handler (sigbus.c says how, and what it may and may not do).
 */
#ifndef UPAGER_SIGBUS_H
#define UPAGER_SIGBUS_H

struct upg_runtime;

/*
 * Serve rt's faults in the threads that take them: install the process's
 * SIGBUS handler (once) and list rt among the runtimes it serves.  rt's
 * userfaultfd must have UFFD_FEATURE_SIGBUS.  In a forked child, called
 * again for the inherited runtime: its contexts are made anew.
 * Returns 0, -EOPNOTSUPP (no UFFD_FEATURE_SIGBUS), -EMFILE (too many
 * runtimes in this mode), -ENOMEM, or -errno of sigaction.
 */
int sigbus_start(struct upg_runtime *rt);

/* Stop serving rt: once it returns no thread is inside rt's faults.  The
 * handler stays installed (it passes on what is not ours).  No-op for a
 * runtime not started. */
void sigbus_stop(struct upg_runtime *rt);

#endif
