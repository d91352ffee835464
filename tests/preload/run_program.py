#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Run a real program with and without upager-run and compare.

    run_program.py UPAGER_RUN WORKLOAD [--scale N]

The workload runs once plainly and once under `upager-run --mem-limit B`
with a budget well below the plain run's peak.  The test passes when the
outputs are byte for byte the same, the statistics show evictions and
swap-ins, and the peak resident memory (ru_maxrss of the child, which
covers its waited-for children too) stays near the budget.  A missing
program, or a machine without userfaultfd, is a skip (exit 77).
"""
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

# The programs' inputs are made as upager-bench --programs makes them.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "..", "bench"))
from workloads import (PY_OBJECTS, in_child, repeated_file,  # noqa: E402
                       sqlite_script, text_file)

SKIP = 77
MIB = 1 << 20
# Above the budget a process also holds what upager does not manage: its
# binary and libraries, jemalloc's metadata, upager's page tables and
# buffers, the interpreter's start-up heap.
SLACK = 48 * MIB


def skip(why):
    print(f"SKIP: {why}")
    sys.exit(SKIP)


def run_rss(argv, stdin_path=None):
    """Run argv; return (stdout, stderr, status, peak RSS bytes, seconds).
    The peak is wait4's ru_maxrss: the program's and its children's."""
    # meson sets MALLOC_PERTURB_, which makes glibc's malloc (the plain
    # run's) write every page it hands out: not the program's own peak.
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_PERTURB_"}
    t0 = time.monotonic()
    fin = open(stdin_path, "rb") if stdin_path else subprocess.DEVNULL
    outf = tempfile.TemporaryFile()
    errf = tempfile.TemporaryFile()
    p = subprocess.Popen(argv, stdin=fin, stdout=outf, stderr=errf, env=env)
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    outf.seek(0)
    errf.seek(0)
    return (outf.read(), errf.read(), p.returncode, ru.ru_maxrss * 1024,
            time.monotonic() - t0)


# ----------------------------------------------------------------------
# Workloads: each returns ([steps], budget bytes); a step is (argv, stdin
# path or None, path to save its stdout to or None).  "{mode}" in a step
# is "plain" or "upager", so each run works on its own files.
# ----------------------------------------------------------------------

PY_FORK = r'''
import hashlib, os, sys
n = int(sys.argv[1]) << 20
buf = bytearray(n)
for i in range(0, n, 4096):
    buf[i:i + 16] = (b"%016d" % (i * 2654435761 % 10**16))
want = hashlib.sha256(buf).hexdigest()
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(r)
    got = hashlib.sha256(buf).hexdigest()
    # The child keeps allocating and forks again.
    more = [bytes(100) + b"%d" % i for i in range(100000)]
    pid2 = os.fork()
    if pid2 == 0:
        buf[0] ^= 1
        buf[0] ^= 1
        os.write(w, hashlib.sha256(buf).hexdigest().encode() + b"\n")
        os._exit(0)
    os.waitpid(pid2, 0)
    os.write(w, got.encode() + b" %d\n" % len(more))
    os._exit(0)
os.close(w)
out = b""
while True:
    chunk = os.read(r, 4096)
    if not chunk:
        break
    out += chunk
os.waitpid(pid, 0)
lines = sorted(out.decode().split())
print(want, lines)
'''

# A multiprocessing pool started with fork, eight workers at a time, each
# checksumming a buffer that is mostly swapped out (issue 15's fork under
# load), while a thread of the parent keeps allocating and writing, so the
# parent's evictor runs across every fork.
PY_POOL = r'''
import hashlib, multiprocessing as mp, sys, threading
n = int(sys.argv[1]) << 20
buf = bytearray(n)
for i in range(0, n, 4096):
    buf[i:i + 16] = (b"%016d" % (i * 2654435761 % 10**16))
want = hashlib.sha256(buf).hexdigest()

def work(k):
    # The worker's copy is its own: a write shows there and nowhere else.
    at = (k * 7919 * 4096) % n
    buf[at] ^= 0xff
    mine = buf[at]
    buf[at] ^= 0xff
    return hashlib.sha256(buf).hexdigest(), mine

stop = threading.Event()
def churn():
    keep = []
    while not stop.is_set():
        keep.append(b"c" * (256 << 10))
        del keep[:-32]
t = threading.Thread(target=churn)
t.start()
ctx = mp.get_context("fork")
rounds = []
for _ in range(2):
    with ctx.Pool(8) as pool:
        rounds.append(pool.map(work, range(8)))
stop.set()
t.join()
for r in rounds:
    print(want, sorted(set(h for h, _ in r)), [m for _, m in r])
print(hashlib.sha256(buf).hexdigest())
'''


def program(name, package, path=None):
    """The program's path, or skip the test naming its Debian package."""
    prog = shutil.which(name, path=path)
    if not prog:
        skip(f"no {path + ':' if path else ''}{name} (Debian package "
             f"{package})")
    return prog


def python_script(tmp, name, text):
    """The command line that runs `text` saved as tmp/name by Debian's
    python3 (the one the preload library was tested with)."""
    py = program("python3", "python3", "/usr/bin:/bin")
    script = os.path.join(tmp, name)
    open(script, "w").write(text)
    return [py, script]


def python3(tmp, scale):
    cmd = python_script(tmp, "objects.py", PY_OBJECTS)
    return [(cmd + [str(300000 * scale)], None, None)], 64 * MIB * scale


def sort(tmp, scale):
    prog = program("sort", "coreutils")
    path = os.path.join(tmp, "lines.txt")
    in_child(text_file, path, 32 * MIB * scale, 1)
    return [([prog, "--parallel=2", path], None, None)], 40 * MIB * scale


def xz(tmp, scale):
    prog = program("xz", "xz-utils")
    # Text that repeats a 4000-byte block: -9's match finder then walks
    # its tables near the current position (a few hundred MiB of them for
    # 16 MiB of input), instead of at random, which any pager below the
    # working set turns into one fault per input byte.
    path = os.path.join(tmp, "input.txt")
    in_child(repeated_file, path, 16 * MIB * scale, 3)
    packed = os.path.join(tmp, "{mode}.xz")
    return [([prog, "-9", "-T1", "-c", path], None, packed),
            ([prog, "-dc", packed], None, None)], 32 * MIB * scale


def sqlite3(tmp, scale):
    prog = program("sqlite3", "sqlite3")
    n = 250000 * scale
    sql = os.path.join(tmp, "work.sql")
    open(sql, "w").write(sqlite_script(n))
    return [([prog, ":memory:"], sql, None)], 40 * MIB * scale


def fork(tmp, scale):
    cmd = python_script(tmp, "fork.py", PY_FORK)
    return [(cmd + [str(96 * scale)], None, None)], 32 * MIB * scale


def pool(tmp, scale):
    cmd = python_script(tmp, "pool.py", PY_POOL)
    return [(cmd + [str(48 * scale)], None, None)], 24 * MIB * scale


WORKLOADS = {"python3": python3, "sort": sort, "xz": xz, "sqlite3": sqlite3,
             "fork": fork, "pool": pool}


def swapins(st):
    f = st["faults"]
    return f["swapin_ram"]["count"] + f["swapin_disk"]["count"]


def run_steps(steps, mode, prefix, tmp):
    """Run the steps; return their outputs, the peak RSS, the time and the
    statistics summed over the steps."""
    outs, peak, secs, total = [], 0, 0.0, {"ev": 0, "in": 0, "poisoned": 0,
                                           "vanished": 0}
    for i, (argv, stdin, save) in enumerate(steps):
        argv = [a.replace("{mode}", mode) for a in argv]
        stats = os.path.join(tmp, f"stats-{i}.json")
        cmd = prefix(stats) + argv
        out, err, rc, rss, t = run_rss(cmd, stdin)
        if err:
            print(f"{mode} step {i} stderr:", err.decode(errors="replace"))
        assert rc == 0, f"{mode} step {i} failed ({rc})"
        if save:
            open(save.replace("{mode}", mode), "wb").write(out)
        outs.append(out)
        peak = max(peak, rss)
        secs += t
        if mode == "upager":
            st = json.load(open(stats))
            total["ev"] += st["evictions_clean"] + st["evictions_dirty"]
            total["in"] += swapins(st)
            total["poisoned"] += st["poisoned"]
            total["vanished"] += st["pages_vanished"]
    return outs, peak, secs, total


def main():
    upager_run, name = sys.argv[1], sys.argv[2]
    scale = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    tmp = tempfile.mkdtemp(prefix="upager-preload-")
    try:
        steps, budget = WORKLOADS[name](tmp, scale)
        # Is userfaultfd there?  The library says so on one line.
        _, err, _, _, _ = run_rss([upager_run, "true"])
        if b"userfaultfd is not available" in err:
            skip(err.decode().strip())

        out0, rss0, t0, _ = run_steps(steps, "plain", lambda s: [], tmp)
        out1, rss1, t1, st = run_steps(
            steps, "upager",
            lambda s: [upager_run, "--mem-limit", str(budget), "--swap-dir",
                       tmp, f"--stats={s}", "--json", "--"], tmp)
        print(f"{name}: plain {t0:.1f} s, peak {rss0 / MIB:.0f} MiB; "
              f"upager {t1:.1f} s, peak {rss1 / MIB:.0f} MiB, "
              f"budget {budget / MIB:.0f} MiB; evictions {st['ev']}, "
              f"swap-ins {st['in']}")
        for i, (a, b) in enumerate(zip(out0, out1)):
            assert a == b, (
                f"step {i}: outputs differ: "
                f"{hashlib.sha256(a).hexdigest()} plain, "
                f"{hashlib.sha256(b).hexdigest()} under upager\n"
                f"plain: {a[:300]!r}\nupager: {b[:300]!r}")
        assert budget * 1.5 < rss0, "the budget is not well below the peak"
        assert st["ev"] > 0, "no evictions"
        assert st["in"] > 0, "no swap-ins"
        assert st["poisoned"] == 0, "pages were lost"
        # Preload mode sees every drop the program makes (madvise, munmap,
        # MAP_FIXED): a resident page found gone was lost by upager.
        assert st["vanished"] == 0, f"{st['vanished']} pages vanished"
        assert rss1 <= budget + SLACK, (
            f"peak RSS {rss1 / MIB:.0f} MiB is not near the budget")
        print("ok")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
