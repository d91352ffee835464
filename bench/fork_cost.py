#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The cost of fork() with most of a process's memory in upager's store.

    bench/fork_cost.py UPAGER_RUN [--gib N] [--budget MIB] [--rounds R]

A Python process fills N GiB (a compressible page pattern), then forks R
times a child that exits at once, timing fork() to waitpid().  It runs
plainly and under `upager-run --mem-limit BUDGET`, alternating, and prints
the medians, their ratio, and the seconds per GiB in the store: in preload
mode fork streams every stored page to the child, which stores it again in
a store of its own (src/fork.c), so that is the cost that grows with the
store.  The child's copy is checked too: it hashes a sample of pages, and
the parent compares the hash with its own.
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile

CHILD = r'''
import hashlib, os, sys, time
n = int(sys.argv[1]) << 20
rounds = int(sys.argv[2])
buf = bytearray(n)
for i in range(0, n, 4096):
    buf[i:i + 16] = (b"%016d" % (i * 2654435761 % 10**16))
def sample():
    h = hashlib.sha256()
    for i in range(0, n, 4096 * 251):
        h.update(buf[i:i + 4096])
    return h.hexdigest()
want = sample()
times = []
for _ in range(rounds):
    r, w = os.pipe()
    t0 = time.monotonic()
    pid = os.fork()
    if pid == 0:
        os.write(w, sample().encode())
        os._exit(0)
    os.close(w)
    got = os.read(r, 64).decode()
    os.waitpid(pid, 0)
    times.append(time.monotonic() - t0)
    os.close(r)
    assert got == want, "the child read different pages"
print(" ".join("%.4f" % t for t in times))
'''


def run(argv):
    p = subprocess.run(argv, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"{argv[0]} failed ({p.returncode}): {p.stderr}")
    return [float(t) for t in p.stdout.split()]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("upager_run")
    ap.add_argument("--gib", type=float, default=1.0)
    ap.add_argument("--budget", type=int, default=64, help="MiB")
    ap.add_argument("--rounds", type=int, default=3,
                    help="forks per run, and runs per side")
    a = ap.parse_args()
    mib = int(a.gib * 1024)
    with tempfile.TemporaryDirectory(prefix="upager-fork-") as tmp:
        script = os.path.join(tmp, "fork.py")
        open(script, "w").write(CHILD)
        py = [sys.executable, script, str(mib), str(a.rounds)]
        plain, under = [], []
        for _ in range(a.rounds):
            plain += run(py)
            under += run([a.upager_run, "--mem-limit", f"{a.budget}M",
                          "--swap-dir", tmp, "--"] + py)
    p, u = statistics.median(plain), statistics.median(under)
    gib_stored = mib / 1024 - a.budget / 1024
    print(f"fork of a process with {mib} MiB written, budget {a.budget} "
          f"MiB ({gib_stored:.2f} GiB in the store): plain {p * 1e3:.1f} "
          f"ms, upager {u * 1e3:.1f} ms ({u / p:.0f}x); "
          f"{(u - p) / gib_stored:.2f} s per GiB in the store "
          f"(medians of {len(plain)} forks a side)")


if __name__ == "__main__":
    main()
