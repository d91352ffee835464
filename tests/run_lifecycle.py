#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Run a mode of tests/lifecycle.c plainly, then with upager, and compare.

    run_lifecycle.py MODE PROGRAM --upager-run UPAGER_RUN
    run_lifecycle.py MODE PROGRAM --embedded EMBEDDED_PROGRAM [--resolve thread]

PROGRAM must exit 0 plainly.  With upager (PROGRAM under upager-run, or
the embedded build, which creates its own runtime), without a budget and
with one below its data, it must exit 0 too, print the same (its atexit
line included) and write its statistics to stderr; with the budget, pages
must have been evicted.  A run that does not end in TIMEOUT seconds is
killed with everything it started and fails the test.  A machine without
userfaultfd is a skip (77), and so are exit-main and fork-thread in a
ThreadSanitizer build (UPAGER_TEST_TSAN=1), which cannot run them even
plainly: its background thread keeps a process alive after the program's
last thread exits, and it kills a child of a multi-threaded fork that
starts a thread.
"""
import os
import re
import signal
import subprocess
import sys

SKIP = 77
TIMEOUT = 60
BUDGET = "16M"	# below the program's 32 MiB of data


def run(argv, env):
    """(status, stdout, stderr) of argv; killed, with its children, if it
    does not end in time."""
    p = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = p.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
        sys.exit(f"FAIL: {' '.join(argv)} did not end in {TIMEOUT} s\n"
                 f"stdout: {out.decode(errors='replace')}\n"
                 f"stderr: {err.decode(errors='replace')}")
    return p.returncode, out, err


def evictions(stats):
    return sum(int(n) for n in re.findall(
        rb"evictions_(?:clean|dirty) +(\d+)", stats))


def main():
    mode, prog, how, tool = sys.argv[1:5]
    if os.environ.get("UPAGER_TEST_TSAN") == "1" and mode in (
            "exit-main", "fork-thread"):
        print(f"SKIP: {mode} under ThreadSanitizer: its runtime's own "
              "thread and its refusal of threads after a multi-threaded "
              "fork change what this mode tests, plainly too")
        sys.exit(SKIP)
    resolve = sys.argv[6] if sys.argv[5:6] == ["--resolve"] else None
    # Only the options this test sets: not the caller's.
    env = {k: v for k, v in os.environ.items() if not k.startswith("UPAGER_")}
    rc, want, err = run([prog, mode], env)
    assert rc == 0 and b"atexit" in want, (
        f"plain run: status {rc}\n{want.decode()}{err.decode()}")

    for budget in (None, BUDGET):
        e = dict(env)
        if how == "--upager-run":
            argv = [tool, "--stats"]
            argv += ["--mem-limit", budget] if budget else []
            argv += ["--", prog, mode]
        else:
            argv = [tool, mode]
            e["UPAGER_STATS"] = "stderr"
            if resolve:
                e["UPAGER_RESOLVE"] = resolve
            if budget:
                e["UPAGER_MEM_LIMIT"] = budget
        rc, out, err = run(argv, e)
        what = " ".join(argv)
        if budget and how == "--embedded":
            what = f"UPAGER_MEM_LIMIT={budget} {what}"
        if rc == SKIP or b"userfaultfd is not available" in err:
            print(f"SKIP: {(out + err).decode(errors='replace').strip()}")
            sys.exit(SKIP)
        print(f"{what}: status {rc}")
        sys.stdout.write(out.decode(errors="replace"))
        assert rc == 0, f"status {rc}, not 0\n{err.decode(errors='replace')}"
        assert out == want, (f"output differs from the plain run's:\n"
                             f"{want.decode(errors='replace')}")
        assert b"upager statistics" in err, (
            f"no statistics\n{err.decode(errors='replace')}")
        assert not budget or evictions(err) > 0, "no page was evicted"
    print("ok")


if __name__ == "__main__":
    main()
