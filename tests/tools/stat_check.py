#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""upager-stat reads a program while it runs.

  stat_check.py UPAGER_STAT CHURN [--upager-run RUN]

Starts churn (tests/tools/churn.c) with a 16 MiB budget over 48 MiB, so it
swaps all along, and forking a child: under upager-run when RUN is given
(CHURN is then the plain build), else CHURN is the embedded build.  Then:
--help/--version and bad arguments; two --json reads whose counters move;
the forked child's own file; the list; --prometheus, every line a comment
or `name{labels} value`, the histogram consistent; --watch; that another
user cannot read it (as nobody, when root); that a pid not under upager
is refused; that the files go when the program exits; and that a killed
program's file is recognised as stale and removed.
"""
import json
import os
import re
import select
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time

BUDGET = 16 << 20
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what, flush=True)
    return cond


def tool(*args, user=None):
    cmd = [STAT, *args]
    if user:
        cmd = ["setpriv", "--reuid=" + user, "--regid=nogroup",
               "--clear-groups", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def read_json(pid, *args):
    r = tool(*args, "--json", str(pid))
    check(r.returncode == 0, f"--json {pid}: status {r.returncode}: {r.stderr}")
    return json.loads(r.stdout)


def start(size, fork, stats_dir=None):
    args = [CHURN, str(size)] + (["--fork"] if fork else [])
    env = dict(os.environ)
    if stats_dir:
        env["UPAGER_STATS_DIR"] = stats_dir
    if RUN:
        args = [RUN, "-m", str(BUDGET)] + args
    else:
        env["UPAGER_MEM_LIMIT"] = str(BUDGET)
    p = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         env=env, text=True)
    return p


def wait_line(p, pattern, timeout=180):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        r, _, _ = select.select([p.stdout], [], [], 1)
        if r:
            line = p.stdout.readline()
            if not line:
                break
            m = re.match(pattern, line)
            if m:
                return int(m.group(1))
    sys.exit(f"churn did not print {pattern!r} (status {p.poll()})")


def wait_until(cond, timeout=60):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.2)
    return False


PROM_LINE = re.compile(
    r'^[a-zA-Z_:][a-zA-Z0-9_:]*'
    r'(\{[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*"'
    r'(,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*")*\})?'
    r' (-?[0-9.eE+-]+|\+Inf|-Inf|NaN)$')


def check_prometheus(text, pid):
    lines = text.splitlines()
    check(lines, "--prometheus printed nothing")
    buckets = {}
    counts = {}
    types = {}
    for line in lines:
        if line.startswith("#"):
            m = re.match(r"^# (HELP|TYPE) (\S+) (.+)$", line)
            check(m, f"prometheus comment malformed: {line!r}")
            if m and m.group(1) == "TYPE":
                types[m.group(2)] = m.group(3)
            continue
        if not check(PROM_LINE.match(line), f"prometheus line: {line!r}"):
            continue
        check(f'pid="{pid}"' in line, f"no pid label: {line!r}")
        m = re.match(r'^upager_fault_latency_seconds_bucket\{.*kind="(\w+)",'
                     r'le="([^"]+)"\} (\d+)$', line)
        if m:
            buckets.setdefault(m.group(1), []).append(
                (m.group(2), int(m.group(3))))
        m = re.match(r'^upager_fault_latency_seconds_count\{.*kind="(\w+)"\}'
                     r' (\d+)$', line)
        if m:
            counts[m.group(1)] = int(m.group(2))
    for name, t in types.items():
        check(name.startswith("upager_"), f"{name} lacks the upager_ prefix")
        check((t == "counter") == name.endswith("_total"),
              f"{name} is a {t}: counters and only they end in _total")
    for name in ("upager_pgfault_total", "upager_pgmajfault_total",
                 "upager_pswpin_total", "upager_pswpout_total",
                 "upager_workingset_refault_total", "upager_resident_bytes"):
        check(name in types, f"--prometheus has no {name}")
    check(types.get("upager_fault_latency_seconds") == "histogram",
          "upager_fault_latency_seconds is not a histogram")
    check(buckets.get("zero_write"), "no zero_write latency buckets")
    for kind, b in buckets.items():
        values = [v for _, v in b]
        check(values == sorted(values), f"{kind}: buckets not cumulative")
        check(b[-1][0] == "+Inf", f"{kind}: last bucket is not +Inf")
        check(b[-1][1] == counts.get(kind),
              f"{kind}: +Inf bucket {b[-1][1]} != _count {counts.get(kind)}")


def main():
    global STAT, CHURN, RUN
    STAT, CHURN = sys.argv[1], sys.argv[2]
    RUN = sys.argv[4] if len(sys.argv) > 4 and sys.argv[3] == "--upager-run" \
        else None

    r = tool("--help")
    check(r.returncode == 0 and "usage: upager-stat" in r.stdout and
          "--prometheus" in r.stdout and not r.stderr, "--help")
    r = tool("--version")
    check(r.returncode == 0 and r.stdout.startswith("upager-stat "),
          "--version")
    r = tool("--watch=0", "1")
    check(r.returncode == 2 and "--watch='0'" in r.stderr,
          f"--watch=0: {r.returncode} {r.stderr}")
    r = tool("pid1")
    check(r.returncode == 2 and "'pid1' is not a process id" in r.stderr,
          f"bad pid: {r.returncode} {r.stderr}")
    r = tool(str(os.getpid()))
    check(r.returncode == 1 and "not running under upager" in r.stderr,
          f"a pid not under upager: {r.returncode} {r.stderr}")

    p = start(48, fork=True)
    pid = wait_line(p, r"^ready (\d+)")
    child = wait_line(p, r"^child (\d+) ready")
    print(f"churn {pid}, child {child}", flush=True)

    # Two reads while it runs: the counters move.
    j1 = read_json(pid)
    check(wait_until(lambda: read_json(pid)["pgfault"] > j1["pgfault"] and
                     read_json(pid)["pswpout"] > j1["pswpout"]),
          "counters did not move between two reads")
    j2 = read_json(pid)
    print("first read: pgfault %d pswpout %d; second: pgfault %d pswpout %d"
          % (j1["pgfault"], j1["pswpout"], j2["pgfault"], j2["pswpout"]))
    check(j2["pid"] == pid and j2["budget_bytes"] == BUDGET,
          f"pid/budget: {j2['pid']} {j2['budget_bytes']}")
    check(j2["pswpout"] > 0 and j2["stored_bytes"] > 0,
          "nothing swapped out under a budget a third of the data")
    check(j2["stats"]["faults_total"] == j2["pgfault"], "stats.faults_total")
    for f in j2["files"]:
        st = os.stat(f)
        check(stat.S_IMODE(st.st_mode) == 0o600, f"{f} mode {st.st_mode:o}")
        dmode = stat.S_IMODE(os.stat(os.path.dirname(f)).st_mode)
        check(dmode == 0o700, f"{os.path.dirname(f)} mode {dmode:o}")

    # The forked child publishes a file of its own.
    c = read_json(child)
    check(c["pid"] == child and set(c["files"]).isdisjoint(j2["files"]),
          f"child's files {c['files']} vs parent's {j2['files']}")

    r = tool()
    rows = [line.split()[0] for line in r.stdout.splitlines()[1:]]
    check(r.returncode == 0 and str(pid) in rows and str(child) in rows,
          f"list: {r.stdout}")
    r = tool("--json")
    check(r.returncode == 0 and
          {pid, child} <= {x["pid"] for x in json.loads(r.stdout)},
          "--json list")

    r = tool("--prometheus", str(pid))
    check(r.returncode == 0, f"--prometheus: {r.stderr}")
    check_prometheus(r.stdout, pid)

    r = tool("--watch=0.5", "--count=3", str(pid))
    lines = r.stdout.splitlines()
    check(r.returncode == 0 and len(lines) == 4 and "faults/s" in lines[0],
          f"--watch: {r.returncode} {r.stdout} {r.stderr}")

    # Another user: refused, with a reason.
    if os.geteuid() == 0 and shutil.which("setpriv"):
        r = tool(str(pid), user="nobody")
        print("as nobody:", r.returncode, r.stderr.strip())
        check(r.returncode == 1 and "belongs to another user" in r.stderr,
              f"nobody reading {pid}: {r.returncode} {r.stderr}")
        d = os.path.dirname(j2["files"][0])
        r = tool("--dir", d, user="nobody")
        check(r.returncode == 1 and "Permission denied" in r.stderr,
              f"nobody listing {d}: {r.returncode} {r.stderr}")
    else:
        print("not root or no setpriv: another user's access not checked")

    p.stdin.close()
    check(p.wait(timeout=300) == 0, f"churn exit status {p.returncode}")
    gone = j2["files"] + c["files"]
    check(wait_until(lambda: not any(os.path.exists(f) for f in gone), 10),
          f"files left after exit: {gone}")

    # A killed program's file stays, and is recognised as stale.  In a
    # directory of its own: a program starting elsewhere would clean the
    # default one too.
    d = tempfile.mkdtemp(prefix="upager-stat-test-")
    k = start(8, fork=False, stats_dir=d)
    kpid = wait_line(k, r"^ready (\d+)")
    kfiles = read_json(kpid, "--dir", d)["files"]
    k.send_signal(signal.SIGKILL)
    k.wait()
    check(kfiles and all(os.path.exists(f) for f in kfiles),
          "no file after SIGKILL")
    r = tool("--dir", d, str(kpid))
    check(r.returncode == 1 and "no process" in r.stderr,
          f"a dead pid: {r.returncode} {r.stderr}")
    r = tool("--dir", d)
    check(r.returncode == 0 and str(kpid) not in r.stdout,
          f"a killed process listed: {r.stdout}")
    check(not any(os.path.exists(f) for f in kfiles),
          f"stale files not removed: {kfiles}")
    shutil.rmtree(d)

    if failures:
        sys.exit(f"{len(failures)} check(s) failed")
    print("ok")


main()
