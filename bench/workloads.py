# SPDX-License-Identifier: MIT
"""Inputs of the real programs that run under upager-run.

Shared by the preload tests (tests/preload/run_program.py), which check
that the programs' outputs are unchanged under a budget, and by
`upager-bench --programs` (programs.py), which times them.  Every input
is made from a seed: the same arguments give the same bytes.
"""
import os
import random

# A Python program that builds many small objects: tuples, strings, ints,
# dicts.  Its argument is the number of rows; the objects of one row take
# about PY_ROW_BYTES of heap.
PY_OBJECTS = r'''
import sys, hashlib, gc
n = int(sys.argv[1])
# Full collections walk every container: under any pager that is a sweep of
# the whole heap per collection.  The test is about the objects.
gc.disable()
rows = [(i, "row-%d-%s" % (i, "x" * (i % 23)), i * 7 % 1000, {"k": i})
        for i in range(n)]
# One more pass over all of it, in the order it was made.
h = hashlib.sha256()
total = 0
for r in rows:
    h.update(r[1].encode())
    total += r[0] + r[2] + len(r[3])
print(len(rows), total, h.hexdigest(), rows[-1][1])
'''
PY_ROW_BYTES = 420


def sqlite_script(n):
    """SQL that builds an n-row table in memory with two indexes, then
    aggregates, groups and orders it."""
    return f"""
PRAGMA cache_size = -1000000;
CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, v INTEGER, pad BLOB);
WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < {n})
INSERT INTO t SELECT i, 'name-' || (i * 7919 % {n}), i * 31 % 1000,
	zeroblob(200) FROM c;
CREATE INDEX t_name ON t(name);
CREATE INDEX t_v ON t(v);
SELECT count(*), sum(v), min(name), max(name) FROM t;
SELECT v, count(*) FROM t GROUP BY v ORDER BY v LIMIT 5;
SELECT name FROM t ORDER BY name LIMIT 3 OFFSET {n // 2};
"""


def in_child(fn, *args):
    """Run fn in a child process.  The peak RSS the kernel reports for a
    program includes the peak of the process it was forked from; making
    a large input here would raise the caller's."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            fn(*args)
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status):
        raise RuntimeError(f"making the input with {fn.__name__} failed")


def words(rng, n):
    return ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz")
                    for _ in range(rng.randint(3, 10))) for _ in range(n)]


def text_file(path, size, seed):
    """Lines of six words of a 5000-word vocabulary and a number, like a
    log file: about 3 to 1 under lz4, in an order sort must change."""
    rng = random.Random(seed)
    vocab = words(rng, 5000)
    with open(path, "w") as f:
        n = 0
        while n < size:
            # A thousand lines a call: choices() is much faster per word
            # than choice(), and 100 MiB takes seconds, not a minute.
            picks = rng.choices(vocab, k=6000)
            lines = "".join(
                " ".join(picks[i:i + 6]) + " %d\n" % rng.randrange(10**9)
                for i in range(0, 6000, 6))
            f.write(lines)
            n += len(lines)


def repeated_file(path, size, seed):
    """A 4000-byte block of random text repeated to size bytes."""
    rng = random.Random(seed)
    block = "".join(rng.choice("abcdefghij klmnop\n") for _ in range(4000))
    with open(path, "w") as f:
        for _ in range(size // len(block)):
            f.write(block)
