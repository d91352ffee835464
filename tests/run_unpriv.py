#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""upager without privilege: tests/unpriv.c and upager-run run as nobody.

    run_unpriv.py UNPRIV UPAGER_RUN [--preload-runs]

As root: sets vm.unprivileged_userfaultfd=0 (saved and restored), copies
the programs where nobody can run them, and runs as nobody (setpriv
--reuid=nobody --regid=nogroup --clear-groups):
  - unpriv refused / user-mode / fork (see unpriv.c);
  - upager-run --strict: status 125 and a message naming the three ways
    an administrator can allow userfaultfd, UPAGER_USER_MODE_ONLY=1 or
    not; upager-run --check: status 1 and the same;
  - with --preload-runs (a build whose preload library loads into any
    program): upager-run without --strict runs the program unmanaged,
    status 0, saying why.
Then with /dev/userfaultfd given to nogroup (mode and group restored
after): unpriv full, upager-run --check status 0 (and --strict runs).
Not root, no nobody, no setpriv or a sysctl that cannot be set: skip (77).
"""
import os
import shutil
import stat
import subprocess
import sys
import tempfile

SKIP = 77
SYSCTL = "/proc/sys/vm/unprivileged_userfaultfd"
DEV = "/dev/userfaultfd"
TIMEOUT = 120
THREE_WAYS = ("sysctl vm.unprivileged_userfaultfd=1", "udev rule",
              "/dev/userfaultfd", "CAP_SYS_PTRACE")
failures = []


def skip(why):
    print(f"SKIP: {why}")
    sys.exit(SKIP)


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


def as_nobody(argv, env_extra=None, cwd="/"):
    env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C"}
    for k in ("ASAN_OPTIONS", "UBSAN_OPTIONS"):
        if k in os.environ:
            env[k] = os.environ[k]
    env.update(env_extra or {})
    cmd = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
           "--inh-caps=-all", "--"] + argv
    p = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True,
                       timeout=TIMEOUT)
    out = p.stdout.decode(errors="replace")
    err = p.stderr.decode(errors="replace")
    print(f"$ {' '.join(argv)}  -> {p.returncode}\n{out}{err}", end="")
    return p.returncode, out, err


def names_three_ways(text):
    return all(w in text for w in THREE_WAYS)


def unprivileged(unpriv, run, swap, preload_runs):
    env = {"UPAGER_SWAP_DIR": swap}
    rc, _, _ = as_nobody([unpriv, "refused"], env)
    check(rc == 0, "library without UPAGER_USER_MODE_ONLY: -EPERM, three ways")
    rc, _, _ = as_nobody([unpriv, "user-mode"],
                         dict(env, UPAGER_USER_MODE_ONLY="1"))
    check(rc == 0, "library with UPAGER_USER_MODE_ONLY=1: faults served, "
          "read(2) EFAULT")
    # ThreadSanitizer kills a child of a multi-threaded fork that starts
    # a thread, as this one's runtime does: not run there.
    if os.environ.get("UPAGER_TEST_TSAN") == "1":
        print("skip fork in user-mode-only mode: ThreadSanitizer build")
    else:
        rc, _, _ = as_nobody([unpriv, "fork"], env)
        check(rc == 0, "fork in user-mode-only mode")

    for extra in ({}, {"UPAGER_USER_MODE_ONLY": "1"}):
        rc, _, err = as_nobody([run, "--strict", "true"], dict(env, **extra))
        check(rc == 125 and names_three_ways(err),
              f"upager-run --strict {extra}: 125 and the three ways")
    rc, out, _ = as_nobody([run, "--check", "true"], env)
    check(rc == 1 and names_three_ways(out) and
          "no    userfaultfd" in out, "upager-run --check: 1, three ways")
    if preload_runs:
        rc, out, err = as_nobody([run, "echo", "hi"],
                                 dict(env, UPAGER_USER_MODE_ONLY="1"))
        check(rc == 0 and out == "hi\n" and "runs unmanaged" in err and
              names_three_ways(err) and "ignored in preload mode" in err,
              "upager-run without --strict: runs unmanaged, says why")


def with_device(unpriv, run, swap, preload_runs):
    env = {"UPAGER_SWAP_DIR": swap}
    rc, _, _ = as_nobody([unpriv, "full"], env)
    check(rc == 0, "/dev/userfaultfd usable: the full kind is taken")
    rc, out, _ = as_nobody([run, "--check", "true"], env)
    check(rc == 0 and "this user can open it" in out,
          "upager-run --check with /dev/userfaultfd usable: 0")
    if preload_runs:
        rc, out, err = as_nobody([run, "--strict", "echo", "hi"], env)
        check(rc == 0 and out == "hi\n" and "unmanaged" not in err,
              "upager-run --strict with /dev/userfaultfd usable: runs")


def main():
    unpriv, run = sys.argv[1:3]
    preload_runs = "--preload-runs" in sys.argv[3:]
    if os.geteuid() != 0:
        skip("needs root (to become nobody and set the sysctl)")
    if not shutil.which("setpriv"):
        skip("no setpriv (util-linux)")
    try:
        import pwd
        pwd.getpwnam("nobody")
    except KeyError:
        skip("no user nobody")
    try:
        saved = open(SYSCTL).read().strip()
        open(SYSCTL, "w").write("0")
    except OSError as e:
        skip(f"cannot set vm.unprivileged_userfaultfd: {e}")
    dev = os.stat(DEV) if os.path.exists(DEV) else None
    tmp = tempfile.mkdtemp(prefix="upager-unpriv-")
    try:
        os.chmod(tmp, 0o755)
        # The build tree may not be reachable by nobody: copies.
        progs = []
        for src in (unpriv, run):
            dst = os.path.join(tmp, os.path.basename(src))
            shutil.copy2(src, dst)
            progs.append(dst)
        lib = os.path.join(os.path.dirname(run), "..", "src", "preload",
                           "libupager-preload.so")
        if os.path.exists(lib):
            shutil.copy2(lib, tmp)	# found next to upager-run
        swap = os.path.join(tmp, "swap")
        os.mkdir(swap)
        os.chown(swap, 65534, 65534)
        unprivileged(progs[0], progs[1], swap, preload_runs)
        if dev is None:
            print("no /dev/userfaultfd: its case is not run")
        else:
            os.chown(DEV, 0, 65534)
            os.chmod(DEV, 0o660)
            try:
                with_device(progs[0], progs[1], swap, preload_runs)
            finally:
                os.chown(DEV, dev.st_uid, dev.st_gid)
                os.chmod(DEV, stat.S_IMODE(dev.st_mode))
    finally:
        open(SYSCTL, "w").write(saved)
        shutil.rmtree(tmp, ignore_errors=True)
    if failures:
        sys.exit("FAIL: " + "; ".join(failures))
    print("all unprivileged checks passed")


if __name__ == "__main__":
    main()
