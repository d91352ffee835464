#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""upager-bench --programs: real programs, plain, under upager-run and
under the kernel with the same memory limit, timed as a user feels it.

Run by `upager-bench --programs [OPTION]...`, which passes the path of
the built upager-run and what it reports of the machine.  Each program
runs plain (its peak RSS sets the limits), under upager-run with a budget
of 1.5x and of 0.5x that peak, and in a memory cgroup limited to 0.5x
with zswap in front of a swap file (and, second, with zram) as its swap.
Every output is checked against the plain run's.  See --help.
"""
import argparse
import json
import os
import re
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time

import workloads

MIB = 1 << 20
PAGE = os.sysconf("SC_PAGE_SIZE")
TIME = "/usr/bin/time"
# A run's changes to the machine, as root: STATE_DIR/STATE_PREFIX<pid>.json
STATE_DIR = "/run"
STATE_PREFIX = "upager-bench-programs-"
CGROUP_V1 = "/sys/fs/cgroup/memory"
CGROUP_V2 = "/sys/fs/cgroup"
ZSWAP = "/sys/module/zswap/parameters"
ZRAM = "/sys/block/zram0"
ZRAM_DEV = "/dev/zram0"
SWAP_PRIO = "32767"
# How often the kernel side's swap pool is sampled for its peak.
SAMPLE_S = 0.1
PROG = "upager-bench --programs"


def log(msg):
    print(f"{PROG}: {msg}", file=sys.stderr, flush=True)


def read(path, default=""):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return default


def write(path, value):
    with open(path, "w") as f:
        f.write(str(value))


def command(argv):
    """Run a set-up command; its error output if it failed, else ''."""
    p = subprocess.run(argv, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, text=True)
    return (p.stderr.strip() or f"exit {p.returncode}") if p.returncode \
        else ""


def active_swaps():
    lines = read("/proc/swaps").splitlines()[1:]
    return [line.split()[0] for line in lines if line.split()]


# ----------------------------------------------------------------------
# What a run changes on the machine, and how it is undone
# ----------------------------------------------------------------------

class Undo:
    """Every change to the machine, newest last.  As root, kept in a file
    of STATE_DIR too, so that what a run killed by SIGKILL left is undone
    by the next run (the zswap parameter goes back to the value it had)."""

    def __init__(self):
        self.items = []
        self.path = os.path.join(STATE_DIR, f"{STATE_PREFIX}{os.getpid()}"
                                 ".json") if os.geteuid() == 0 else None

    def save(self):
        if not self.path:
            return
        if self.items:
            with open(self.path, "w") as f:
                json.dump(self.items, f)
        elif os.path.exists(self.path):
            os.unlink(self.path)

    def push(self, kind, arg):
        self.items.append([kind, arg])
        self.save()

    def pop(self, kind, arg):
        """Undo one change now."""
        self.items.remove([kind, arg])
        try_undo(kind, arg)
        self.save()

    def all(self):
        # Processes first: a swap area in use is slow to turn off.
        for kind, arg in self.items:
            if kind == "cgroup":
                kill_cgroup(arg)
        while self.items:
            try_undo(*self.items.pop())
        self.save()


def kill_cgroup(path):
    for _ in range(50):
        pids = read(os.path.join(path, "cgroup.procs")).split()
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.02)


def try_undo(kind, arg):
    try:
        undo_one(kind, arg)
    except OSError as e:
        log(f"could not undo {kind} {arg}: {e}")


def undo_one(kind, arg):
    if kind == "zswap":
        write(os.path.join(ZSWAP, "enabled"), arg)
    elif kind == "swapon" and arg in active_swaps():
        command(["swapoff", arg])
    elif kind == "file" and os.path.exists(arg):
        os.unlink(arg)
    elif kind == "dir":
        shutil.rmtree(arg, ignore_errors=True)
    elif kind == "zram":
        if ZRAM_DEV in active_swaps():
            command(["swapoff", ZRAM_DEV])
        write(os.path.join(ZRAM, "reset"), "1")
    elif kind == "cgroup" and os.path.isdir(arg):
        kill_cgroup(arg)
        for _ in range(50):	# the last tasks may take a moment to go
            try:
                os.rmdir(arg)
                return
            except OSError:
                time.sleep(0.02)
        os.rmdir(arg)


def recover():
    """Undo what killed runs left.  Returns why the kernel sides cannot
    run if another run is using the kernel set-up now."""
    busy = ""
    for name in os.listdir(STATE_DIR):
        m = re.fullmatch(STATE_PREFIX + r"(\d+)\.json", name)
        if not m:
            continue
        pid = int(m.group(1))
        if "programs.py" in read(f"/proc/{pid}/cmdline"):
            busy = (f"another {PROG} (pid {pid}) is using the kernel "
                    "set-up (zswap, swap, cgroups)")
            continue
        dead = Undo()
        dead.path = os.path.join(STATE_DIR, name)
        try:
            with open(dead.path) as f:
                dead.items = json.load(f)
        except (OSError, ValueError):
            pass
        log(f"undoing what a killed run (pid {pid}) left: {dead.items}")
        dead.all()
        dead.save()
    return busy


# ----------------------------------------------------------------------
# The kernel side: a memory cgroup, zswap in front of a swap file, zram
# ----------------------------------------------------------------------

class Cgroup:
    """Memory cgroups of either version, one per run: its peak is then the
    run's own.  On cgroup v1 zswap's compressed pool is not charged to the
    cgroup; on v2 it is (Linux 5.19 on), as upager's RAM tier is charged
    to upager's budget."""

    def __init__(self, undo):
        self.undo, self.n, self.reason = undo, 0, ""
        if os.path.exists(os.path.join(CGROUP_V1, "memory.limit_in_bytes")):
            self.version, self.root = 1, CGROUP_V1
        elif "memory" in read(os.path.join(CGROUP_V2,
                                           "cgroup.subtree_control")).split():
            self.version, self.root = 2, CGROUP_V2
        else:
            self.version, self.root = 0, None
            self.reason = ("no memory cgroup controller (v1 at "
                           f"{CGROUP_V1}, or v2 enabled in "
                           f"{CGROUP_V2}/cgroup.subtree_control)")
        if os.geteuid() != 0:
            self.reason = "the kernel side needs root (memory cgroups, swap)"

    def describe(self):
        if self.version == 1:
            return ("memory cgroup v1, memory.limit_in_bytes = the limit, "
                    "memory.memsw unset")
        return ("memory cgroup v2, memory.max = the limit, memory.swap.max "
                "and memory.zswap.max unset")

    def zswap_charged(self):
        return self.version == 2

    def create(self, limit):
        self.n += 1
        path = os.path.join(self.root, f"upager-bench-programs-{os.getpid()}"
                            f"-{self.n}")
        os.mkdir(path)
        self.undo.push("cgroup", path)
        write(os.path.join(path, "memory.limit_in_bytes" if self.version == 1
                           else "memory.max"), limit)
        return path

    def stats(self, path):
        """Peak usage, major faults (swap-ins) and OOM kills of a run."""
        peak = read(os.path.join(path, "memory.max_usage_in_bytes"
                                 if self.version == 1 else "memory.peak"))
        stat = dict(line.split() for line in read(
            os.path.join(path, "memory.stat")).splitlines())
        events = read(os.path.join(path, "memory.oom_control"
                                   if self.version == 1 else "memory.events"))
        kills = re.search(r"^oom_kill (\d+)", events, re.M)
        return {"cgroup_peak": int(peak) if peak else None,
                "pgmajfault": int(stat.get("pgmajfault", 0)),
                "oom_kills": int(kills.group(1)) if kills else None}


class Zswap:
    """zswap enabled around each kernel run, in front of a swap file in
    upager's swap directory (the same disk as upager's swap file)."""

    def __init__(self, undo, swap_dir):
        self.undo = undo
        self.file = os.path.join(swap_dir, f"upager-bench-programs-"
                                 f"{os.getpid()}.swap")
        self.device = self.file
        self.size = 0
        self.reason = "" if os.path.exists(os.path.join(
            ZSWAP, "enabled")) else f"no zswap ({ZSWAP} is missing)"

    def describe(self):
        p = {k: read(os.path.join(ZSWAP, k)) for k in
             ("compressor", "max_pool_percent", "shrinker_enabled")}
        return (f"zswap ({p['compressor']}, max_pool_percent "
                f"{p['max_pool_percent']}, shrinker_enabled "
                f"{p['shrinker_enabled']}) in front of a swap file in "
                f"{os.path.dirname(self.file)}")

    def make_file(self, size):
        """A swap file of at least size bytes (made once per size)."""
        if self.size >= size:
            return ""
        self.drop_file()
        self.undo.push("file", self.file)
        fd = os.open(self.file, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o600)
        try:
            os.posix_fallocate(fd, 0, size)
        finally:
            os.close(fd)
        err = command(["mkswap", self.file])
        if not err:
            self.size = size
        return err and f"mkswap {self.file}: {err}"

    def drop_file(self):
        if self.size:
            self.undo.pop("file", self.file)
            self.size = 0

    def on(self, size):
        err = self.make_file(size)
        if err:
            return err
        self.undo.push("swapon", self.file)
        err = command(["swapon", "-p", SWAP_PRIO, self.file])
        if err:
            return f"swapon {self.file}: {err}"
        self.undo.push("zswap", read(os.path.join(ZSWAP, "enabled")))
        write(os.path.join(ZSWAP, "enabled"), "Y")
        return ""

    def off(self):
        for kind, arg in reversed(list(self.undo.items)):
            if kind in ("zswap", "swapon"):
                self.undo.pop(kind, arg)

    @staticmethod
    def pool():
        """Bytes in zswap's pool now (the whole machine's)."""
        m = re.search(r"^Zswap:\s+(\d+) kB", read("/proc/meminfo"), re.M)
        return int(m.group(1)) * 1024 if m else 0


class Zram:
    """zram0 (lz4) as the only swap, set up around each kernel run, as
    upager-bench's swap rows do.  Its pool is never charged to a cgroup."""

    def __init__(self, undo):
        self.undo, self.device = undo, ZRAM_DEV
        self.reason = self.busy()

    @staticmethod
    def busy():
        if not os.path.isdir(ZRAM):
            return "no zram device (modprobe zram)"
        if ZRAM_DEV in active_swaps() or read(
                os.path.join(ZRAM, "disksize"), "0") != "0":
            return (f"{ZRAM_DEV} is in use (by another benchmark? or left "
                    f"by a killed run: swapoff {ZRAM_DEV})")
        return ""

    @staticmethod
    def describe():
        return "zram (lz4)"

    def on(self, size):
        busy = self.busy()	# someone may have taken it since the start
        if busy:
            return busy
        self.undo.push("zram", None)
        write(os.path.join(ZRAM, "reset"), "1")
        try:
            write(os.path.join(ZRAM, "comp_algorithm"), "lz4")
            write(os.path.join(ZRAM, "disksize"), size)
        except OSError as e:
            return f"cannot configure {ZRAM} (lz4, disksize): {e}"
        return (command(["mkswap", ZRAM_DEV]) or
                command(["swapon", "-p", SWAP_PRIO, ZRAM_DEV]))

    def off(self):
        self.undo.pop("zram", None)

    @staticmethod
    def pool():
        """The most memory zram used since it was set up."""
        f = read(os.path.join(ZRAM, "mm_stat")).split()
        return int(f[4]) if len(f) > 4 else 0


# ----------------------------------------------------------------------
# The programs
# ----------------------------------------------------------------------

def program(name, package, path=None):
    prog = shutil.which(name, path=path)
    if not prog:
        raise LookupError(f"no {name} (Debian package {package})")
    return prog


def python3(tmp, size):
    # Debian's python3, not whatever python3 runs this script.
    py = program("python3", "python3", "/usr/bin:/bin")
    script = os.path.join(tmp, "objects.py")
    with open(script, "w") as f:
        f.write(workloads.PY_OBJECTS)
    return [py, script, str(max(1, size // workloads.PY_ROW_BYTES))], None


def sort(tmp, size):
    prog = program("sort", "coreutils")
    path = os.path.join(tmp, "lines.txt")
    workloads.in_child(workloads.text_file, path, size, 1)
    # A buffer of four times the input, so the sort stays in memory on
    # any machine (sort sizes its default buffer by the RAM it sees).
    return [prog, "-S", f"{4 * size // 1024}K", "--parallel=2", path], None


def sqlite3(tmp, rows):
    prog = program("sqlite3", "sqlite3")
    sql = os.path.join(tmp, "work.sql")
    with open(sql, "w") as f:
        f.write(workloads.sqlite_script(rows))
    return [prog, ":memory:"], sql


def xz(tmp, size):
    prog = program("xz", "xz-utils")
    path = os.path.join(tmp, "input.txt")
    workloads.in_child(workloads.text_file, path, size, 3)
    return [prog, "-9", "-T1", "-c", path], None


# name: (make, title, size option, unit, default, quick)
WORKLOADS = {
    "python3": (python3, "a Python script building small objects",
                "--python-size", "bytes", 300 * MIB, 24 * MIB),
    "sort": (sort, "sort of a text file, in memory", "--sort-size", "bytes",
             100 * MIB, 6 * MIB),
    "sqlite3": (sqlite3, "sqlite3 :memory: table with two indexes, "
                "aggregated and ordered", "--sqlite-rows", "rows", 400000,
                30000),
    "xz": (xz, "xz -9 of a text file", "--xz-size", "bytes", 8 * MIB,
           256 << 10),
}


def describe_size(name, value):
    unit = WORKLOADS[name][3]
    if unit == "rows":
        return f"{value} rows"
    if name == "python3":
        return f"{value // MIB} MiB of objects"
    return f"{value / MIB:g} MiB of text"


# ----------------------------------------------------------------------
# One run
# ----------------------------------------------------------------------

running = None		# the process group of the program running now


def run_once(argv, stdin, env, timeout, tmp, cgroup=None, pool=None):
    """Run argv under GNU time (so that its ru_maxrss is the program's
    own, not raised by this process's, as a fork from here would be),
    its output hashed on the way by sha256sum (so that no output file
    is charged to a cgroup).  Returns a dict describing the run."""
    global running
    rss_file = os.path.join(tmp, "rss")
    err_file = os.path.join(tmp, "stderr")
    cmd = [TIME, "-q", "-f", "%M", "-o", rss_file, "--"] + argv
    if cgroup:	# join the cgroup, then become the program
        cmd = ["/bin/sh", "-c", 'echo $$ > "$0" && exec "$@"',
               os.path.join(cgroup, "cgroup.procs")] + cmd
    if os.path.exists(rss_file):
        os.unlink(rss_file)
    r, w = os.pipe()
    hasher = subprocess.Popen(["sha256sum"], stdin=r, stdout=subprocess.PIPE,
                              text=True)
    fin = open(stdin, "rb") if stdin else subprocess.DEVNULL
    with open(err_file, "wb") as ferr:
        t0 = time.monotonic()
        p = subprocess.Popen(cmd, stdin=fin, stdout=w, stderr=ferr, env=env,
                             start_new_session=True)
        running = p.pid
    os.close(r)
    os.close(w)
    if stdin:
        fin.close()
    pidfd = os.pidfd_open(p.pid)
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    deadline = t0 + timeout if timeout else None
    pool_peak, timed_out = 0, False
    while True:
        wait_s = deadline - time.monotonic() if deadline else None
        if pool:
            wait_s = SAMPLE_S if wait_s is None else min(wait_s, SAMPLE_S)
            pool_peak = max(pool_peak, pool())
        if poller.poll(None if wait_s is None else max(0, wait_s) * 1000):
            break
        if deadline and time.monotonic() >= deadline:
            timed_out = True
            break
    wall = time.monotonic() - t0
    if timed_out:
        os.killpg(p.pid, signal.SIGKILL)
        if cgroup:
            kill_cgroup(cgroup)
    p.wait()
    running = None
    os.close(pidfd)
    digest = hasher.communicate()[0].split()[0]
    rss = read(rss_file).splitlines()
    run = {"wall_s": round(timeout if timed_out else wall, 4),
           "exit": p.returncode,
           "peak_rss": int(rss[-1]) * 1024 if rss and rss[-1].isdigit()
           else None,
           "output_sha256": digest if p.returncode == 0 else None}
    if pool:
        run["swap_pool_peak"] = max(pool_peak, pool())
    if timed_out:
        run["result"] = "timeout"
    elif p.returncode:
        run["result"] = "failed"
        tail = read(err_file)[-400:]
        run["detail"] = (f"exit {p.returncode}" if p.returncode > 0 else
                         f"killed by signal {-p.returncode}") + \
            (f": {tail}" if tail else "")
    else:
        run["result"] = "ok"
    return run


def upager_stats(path):
    """The few of upager's statistics that say what it did."""
    try:
        with open(path) as f:
            st = json.load(f)
    except (OSError, ValueError):
        return None
    f = st["faults"]
    return {"faults": st["faults_total"],
            "evictions": st["evictions_clean"] + st["evictions_dirty"],
            "swapins": f["swapin_ram"]["count"] + f["swapin_disk"]["count"],
            "refaults": st["refaults"], "poisoned": st["poisoned"],
            "store_ram_bytes": st["store_ram_bytes"],
            "store_disk_bytes": st["store_disk_bytes"]}


# ----------------------------------------------------------------------
# Sides
# ----------------------------------------------------------------------

SIDES = ["plain", "upager-fit", "upager-pressure", "kernel-zswap",
         "kernel-zram"]


class Side:
    def __init__(self, key, label, fraction):
        self.key, self.label, self.fraction = key, label, fraction
        self.limit = None
        self.reason = ""
        self.runs = []

    def more(self):
        """Whether to run again: a side that timed out would only time out
        again, and one that failed says so already."""
        return not self.reason and all(r["result"] == "ok" for r in self.runs)

    def summary(self):
        """The median of the runs, None if one failed.  A median taken
        from a timed-out run is a lower bound (such a run is the longest
        of all: it ran for the whole timeout)."""
        done = [r for r in self.runs if r["result"] in ("ok", "timeout")]
        if not done or len(done) < len(self.runs):
            return None
        done.sort(key=lambda r: r["wall_s"])
        mid = done[(len(done) - 1) // 2:len(done) // 2 + 1]
        peaks = [r["peak_rss"] for r in done if r["peak_rss"]]
        return {"wall_s": round(sum(r["wall_s"] for r in mid) / len(mid), 4),
                "bound": ">" if any(r["result"] == "timeout" for r in mid)
                else "=", "peak_rss": median(peaks)}


def median(values):
    v = sorted(values)
    return (v[(len(v) - 1) // 2] + v[len(v) // 2]) // 2 if v else None


def ratio(a, b):
    """a over b, where either may be a lower bound."""
    if not a or not b or not b["wall_s"]:
        return None
    if a["bound"] == ">" and b["bound"] == ">":
        return None
    bound = ">" if a["bound"] == ">" else "<" if b["bound"] == ">" else "="
    return {"value": round(a["wall_s"] / b["wall_s"], 3), "bound": bound}


class Bench:
    def __init__(self, args, info):
        self.args, self.info = args, info
        self.undo = Undo()
        self.busy = recover() if self.undo.path else ""
        self.env = {k: v for k, v in os.environ.items()
                    # meson's MALLOC_PERTURB_ makes glibc's malloc (the plain
                    # run's) write every page it hands out
                    if k != "MALLOC_PERTURB_"}
        self.env["LC_ALL"] = "C"
        self.upager_reason = self.probe_upager()
        self.kernel_reason = ""
        self.cg = self.zswap = self.zram = None
        if any(s.startswith("kernel") for s in args.sides):
            self.kernel_setup()
        self.failed = False

    def probe_upager(self):
        """Why upager cannot run here, said once instead of by every run."""
        try:
            p = subprocess.run([self.args.upager_run, "true"], text=True,
                               stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, env=self.env)
        except OSError as e:
            return f"cannot run {self.args.upager_run}: {e}"
        return p.stderr.strip() if p.returncode or \
            "userfaultfd is not available" in p.stderr else ""

    def kernel_setup(self):
        self.cg = Cgroup(self.undo)
        self.kernel_reason = self.cg.reason or self.busy
        self.zswap = Zswap(self.undo, self.args.swap_dir)
        self.zram = Zram(self.undo)

    def side_reason(self, key):
        if key.startswith("upager"):
            return self.upager_reason
        if key == "kernel-zswap":
            return self.kernel_reason or self.zswap.reason
        if key == "kernel-zram":
            return self.kernel_reason or self.zram.reason
        return ""

    def upager_argv(self, side, argv, stats):
        cmd = [self.args.upager_run, "--mem-limit", str(side.limit),
               "--swap-dir", self.args.swap_dir, f"--stats={stats}", "--json"]
        if self.args.codec:
            cmd += ["--codec", self.args.codec]
        return cmd + ["--"] + argv

    def run_side(self, side, argv, stdin, timeout, peak, tmp):
        if side.key == "plain":
            return run_once(argv, stdin, self.env, None, tmp)
        if side.key.startswith("upager"):
            stats = os.path.join(tmp, "stats.json")
            if os.path.exists(stats):
                os.unlink(stats)
            run = run_once(self.upager_argv(side, argv, stats), stdin,
                           self.env, timeout, tmp)
            run["upager"] = upager_stats(stats)
            return run
        return self.run_kernel(side, argv, stdin, timeout, peak, tmp)

    def run_kernel(self, side, argv, stdin, timeout, peak, tmp):
        swap = self.zswap if side.key == "kernel-zswap" else self.zram
        # Room for every page the program has, and some.
        size = (peak + 64 * MIB) // PAGE * PAGE
        cg = self.cg.create(side.limit)
        try:
            err = swap.on(size)
            if err:
                side.reason = err
                return None
            others = [s for s in active_swaps() if s != swap.device]
            run = run_once(argv, stdin, self.env, timeout, tmp, cg,
                           swap.pool)
            run.update(self.cg.stats(cg))
            if others:
                run["note"] = ("other swap areas were active: " +
                               ", ".join(others))
            if run["oom_kills"]:
                run["result"] = "failed"
                run["detail"] = "killed by the cgroup's OOM killer"
            return run
        finally:
            swap.off()
            self.undo.pop("cgroup", cg)

    def check(self, side, run, ref):
        """An output differing from the plain run's is a failure, as is a
        plain or upager run that did not finish well."""
        if run["result"] == "ok" and run["output_sha256"] != ref:
            run["result"] = "mismatch"
            run["detail"] = (f"output {run['output_sha256']} differs from "
                             f"the plain run's {ref}")
        if run["result"] in ("failed", "mismatch") and \
                not side.key.startswith("kernel"):
            self.failed = True

    def program(self, name):
        make, title, opt, _, default, quick = WORKLOADS[name]
        size = getattr(self.args, opt[2:].replace("-", "_"))
        if size is None:
            size = quick if self.args.quick else default
        sides = [Side(k, label(k, self.args), fraction(k, self.args))
                 for k in ["plain"] + self.args.sides]
        res = {"name": name, "title": title,
               "size": size, "size_unit": WORKLOADS[name][3],
               "description": describe_size(name, size)}
        tmp = tempfile.mkdtemp(prefix=STATE_PREFIX, dir=self.args.swap_dir)
        self.undo.push("dir", tmp)
        try:
            argv, stdin = make(tmp, size)
            res["command"] = " ".join(argv[:1] + [os.path.basename(a)
                                                  for a in argv[1:]])
            if stdin:
                res["command"] += " < " + os.path.basename(stdin)
            self.measure(name, sides, argv, stdin, tmp, res)
        except (LookupError, RuntimeError) as e:
            res["unavailable"] = str(e)
            log(f"{name}: {e}")
            return res
        finally:
            if self.zswap:
                self.zswap.drop_file()
            self.undo.pop("dir", tmp)
        res["sides"] = [side_json(s) for s in sides]
        ratios(res["sides"])
        return res

    def measure(self, name, sides, argv, stdin, tmp, res):
        plain = sides[0]
        for rep in range(self.args.runs):
            # Each round starts one side later, so that none always runs
            # first or always follows the same neighbour; the plain run
            # opens the first round: its peak sets the limits.
            order = sides[rep % len(sides):] + sides[:rep % len(sides)]
            for side in order:
                if not side.more():
                    continue
                log(f"{name}: {side.label}, run {len(side.runs) + 1}")
                run = self.run_side(side, argv, stdin, res.get("timeout_s"),
                                    res.get("plain_peak"), tmp)
                if run is None:
                    continue
                side.runs.append(run)
                if side is plain and rep == 0:
                    if not self.first_plain(sides, run, res):
                        return
                self.check(side, run, plain.runs[0]["output_sha256"])

    def first_plain(self, sides, run, res):
        """Set the limits and the timeout from the first plain run."""
        if run["result"] != "ok" or not run["peak_rss"]:
            for s in sides[1:]:
                s.reason = "the plain run failed"
            sides[0].reason = run.get("detail", "no peak RSS")
            self.failed = True
            return False
        res["plain_peak"] = run["peak_rss"]
        t = self.args.timeout
        res["timeout_s"] = round(t[1] if t[0] == "s" else
                                 max(t[1] * run["wall_s"], 60), 3)
        for s in sides[1:]:
            s.limit = -(-int(run["peak_rss"] * s.fraction) // PAGE) * PAGE
            s.reason = self.side_reason(s.key)
        return True


def label(key, args):
    f = f"{fraction(key, args):g}x"
    return {"plain": "plain", "upager-fit": f"upager {f}",
            "upager-pressure": f"upager {f}",
            "kernel-zswap": f"kernel+zswap {f}",
            "kernel-zram": f"kernel+zram {f}"}[key]


def fraction(key, args):
    return {"plain": 1.0, "upager-fit": args.fit}.get(key, args.pressure)


def side_json(s):
    d = {"side": s.key, "label": s.label, "available": not s.reason,
         "limit": s.limit, "runs": s.runs}
    if s.reason:
        d["reason"] = s.reason
    d["summary"] = s.summary()
    # Of the runs that finished: a run that failed or timed out gave no
    # output to compare.
    done = [r for r in s.runs if r["result"] in ("ok", "mismatch")]
    d["outputs_match"] = (all(r["result"] == "ok" for r in done)
                          if done else None)
    return d


def ratios(sides):
    """Each side's wall time over the plain run's; upager's over the
    kernel's with the same limit."""
    by = {s["side"]: s["summary"] for s in sides}
    for s in sides:
        s["ratio"] = {"plain": ratio(s["summary"], by.get("plain"))}
        if s["side"] == "upager-pressure":
            for k in ("kernel-zswap", "kernel-zram"):
                s["ratio"][k] = ratio(s["summary"], by.get(k))


# ----------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------

def fmt_ratio(r):
    if not r:
        return "-"
    return ("" if r["bound"] == "=" else r["bound"] + " ") + \
        f"{r['value']:.2f}"


def fmt_mib(v):
    return f"{v / MIB:.1f}" if v else "-"


def header(b):
    a, info = b.args, b.info
    lines = [f"upager-bench {info['version']} (libupager "
             f"{info['libupager']}) on {info['machine']}, {info['cpus']} "
             f"CPUs, {info['page_size']}-byte pages",
             cpu_idle(b),
             f"THP {read('/sys/kernel/mm/transparent_hugepage/enabled')} "
             "(as the system has it, every side); LC_ALL=C; upager codec "
             f"{a.codec or os.environ.get('UPAGER_CODEC', 'lz4')}, swap "
             f"file in {a.swap_dir}"]
    if b.cg and not b.cg.reason:
        pool = ("is charged to the cgroup (cgroup v2), as" if
                b.cg.zswap_charged() else "is NOT charged to the cgroup "
                f"(cgroup v{b.cg.version}), while")
        lines.append(f"kernel: {b.cg.describe()}; {b.zswap.describe()}: "
                     f"its pool {pool} upager's RAM tier counts in its "
                     f"budget; second, {b.zram.describe()}, whose pool is "
                     "never charged")
    lines.append(f"{a.runs} runs per side, sides in turn, medians; timeout "
                 f"{timeout_text(a.timeout)}; a side that times out is not "
                 "run again")
    return lines


def cpu_idle(b):
    return (b.info["cpu_idle_state"] + "; idle CPUs " +
            ("poll (--idle-poll)" if b.args.idle_poll else "may sleep"))


def timeout_text(t):
    return f"{t[1]:g} s" if t[0] == "s" else \
        f"{t[1]:g}x the plain run, at least 60 s"


def print_table(b, results):
    for line in header(b):
        print(line)
    print()
    print(f"{'program':9} {'side':20} {'limit':>7} {'wall s':>9} {'runs':>6} "
          f"{'peak RSS':>9} {'cg peak':>8} {'pool':>7} {'x plain':>8}  "
          "output")
    for res in results:
        if "unavailable" in res:
            print(f"{res['name']:9} unavailable: {res['unavailable']}")
            continue
        for i, s in enumerate(res["sides"]):
            print_side(res["name"] if i == 0 else "", s)
        up = next((s for s in res["sides"] if s["side"] ==
                   "upager-pressure"), None)
        if up and any(up["ratio"].get(k) for k in ("kernel-zswap",
                                                   "kernel-zram")):
            print(f"{'':9} {up['label']} over the kernel's: " + ", ".join(
                f"{fmt_ratio(up['ratio'][k])} ({k[7:]})"
                for k in ("kernel-zswap", "kernel-zram")
                if up["ratio"].get(k)))
    print()
    print("wall s: median of the runs (> : a run timed out); peak RSS: the "
          "program's ru_maxrss; cg peak: the kernel side's cgroup peak; "
          "pool: the most\nRAM its zswap or zram pool took, not counted in "
          "the cgroup on v1 (zswap: the whole machine's); x plain: wall "
          "time over the plain run's")
    for res in results:
        if "unavailable" not in res:
            print(f"  {res['name']:8} {res['title']}, "
                  f"{res['description']}: {res['command']}")
    for res in results:
        for s in res.get("sides", []):
            for note in sorted({r["note"] for r in s["runs"] if "note" in r}):
                print(f"note: {res['name']} {s['label']}: {note}")


def print_side(name, s):
    sm = s["summary"]
    row = f"{name:9} {s['label']:20} {fmt_mib(s['limit']):>7}"
    if not s["available"]:
        print(f"{row} unavailable: {s['reason']}")
        return
    runs = s["runs"]
    kern = median(r["cgroup_peak"] for r in runs if r.get("cgroup_peak"))
    pool = [r.get("swap_pool_peak") for r in runs if "swap_pool_peak" in r]
    wall = (("> " if sm["bound"] == ">" else "") + f"{sm['wall_s']:.2f}"
            if sm else "-")
    nto = sum(r["result"] == "timeout" for r in runs)
    out = "; ".join(sorted({r.get("detail", r["result"]) for r in runs
                            if r["result"] not in ("ok", "timeout")}))
    if s["outputs_match"] and not out:
        out = "the reference" if s["side"] == "plain" else "same"
    elif s["outputs_match"] is None and not out:
        out = "timed out"
    print(f"{row} {wall:>9} {len(runs):>3}{' t/o' if nto else '    '}"
          f"{fmt_mib(sm and sm['peak_rss']):>9} "
          f"{fmt_mib(kern):>8} "
          f"{fmt_mib(max(pool) if pool else 0):>7} "
          f"{fmt_ratio(s['ratio']['plain']):>8}  {out}")


def write_json(b, results, path):
    a = b.args
    d = {k: b.info[k] for k in ("tool", "version", "libupager", "machine",
                                "cpus", "page_size")}
    d["cpu_idle"] = cpu_idle(b)
    d["thp"] = read("/sys/kernel/mm/transparent_hugepage/enabled")
    d["config"] = {"quick": a.quick, "idle_poll": a.idle_poll,
                   "runs": a.runs, "fit": a.fit, "pressure": a.pressure,
                   "timeout": {"seconds": a.timeout[1]} if a.timeout[0] == "s"
                   else {"times_plain": a.timeout[1], "at_least_s": 60},
                   "codec": a.codec or os.environ.get("UPAGER_CODEC", "lz4"),
                   "swap_dir": a.swap_dir, "sides": ["plain"] + a.sides}
    if b.cg:
        d["kernel"] = {"available": not b.kernel_reason,
                       "reason": b.kernel_reason or None,
                       "cgroup": b.cg.version,
                       "zswap_pool_charged": b.cg.zswap_charged(),
                       "zram_pool_charged": False}
        if not b.kernel_reason:
            d["kernel"]["zswap"] = b.zswap.describe()
    d["programs"] = results
    with open(path, "w") as f:
        json.dump(d, f, indent=1)
        f.write("\n")


# ----------------------------------------------------------------------
# Options
# ----------------------------------------------------------------------

def size_arg(s):
    m = re.fullmatch(r"(\d+)([KMG]?)(i?B)?", s, re.I)
    if not m or (m.group(3) and not m.group(2)):
        raise argparse.ArgumentTypeError(
            f"'{s}' is not accepted; expected a size such as 100M")
    v = int(m.group(1)) << {"": 0, "K": 10, "M": 20, "G": 30}[
        m.group(2).upper()]
    if not v:
        raise argparse.ArgumentTypeError(f"'{s}' is not accepted; expected "
                                         "a size above 0")
    return v


def count_arg(s):
    if not s.isdigit() or not int(s):
        raise argparse.ArgumentTypeError(
            f"'{s}' is not accepted; expected a whole number above 0")
    return int(s)


def fraction_arg(s):
    try:
        v = float(s)
        if 0 < v <= 100:
            return v
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(
        f"'{s}' is not accepted; expected a factor such as 0.5")


def timeout_arg(s):
    try:
        v = float(s[:-1] if s.endswith("x") else s)
        if v > 0:
            return ("x" if s.endswith("x") else "s", v)
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(
        f"'{s}' is not accepted; expected seconds (90) or a factor of the "
        "plain run's time (10x)")


def list_arg(choices):
    def parse(s):
        items = s.split(",")
        for i in items:
            if i not in choices:
                raise argparse.ArgumentTypeError(
                    f"'{i}' is not accepted; expected some of "
                    + ", ".join(choices))
        return items
    return parse


class Parser(argparse.ArgumentParser):
    def error(self, message):
        print(f"{PROG}: {message} (see --help)", file=sys.stderr)
        sys.exit(2)


def parse_args(argv):
    p = Parser(prog=PROG, allow_abbrev=False, description="Run real "
               "programs plain, under upager-run with a budget of 1.5x and "
               "of 0.5x their plain peak RSS, and in a memory cgroup "
               "limited to 0.5x with zswap (then zram) as "
               "swap; print wall time, peak RSS and the ratios; check every "
               "output against the plain run's.",
               epilog="Kernel sides need root; the zswap parameter, swap "
               "file, zram and cgroups they set up are undone at exit, on "
               "SIGINT, SIGTERM and SIGHUP, and (after SIGKILL) by the next "
               "run.  Exit status: 0, or 1 if a plain or upager run failed "
               "or gave another output.")
    p.add_argument("--upager-run", required=True, help=argparse.SUPPRESS)
    p.add_argument("--info", type=json.loads, help=argparse.SUPPRESS)
    p.add_argument("--quick", action="store_true",
                   help="small inputs (seconds a run); explicit sizes win")
    p.add_argument("--workloads", type=list_arg(list(WORKLOADS)),
                   default=list(WORKLOADS), metavar="LIST",
                   help="programs to run, comma-separated (default all: "
                   + ", ".join(WORKLOADS) + ")")
    p.add_argument("--sides", type=list_arg(SIDES[1:]), default=SIDES[1:],
                   metavar="LIST", help="sides besides plain (default all: "
                   + ", ".join(SIDES[1:]) + ")")
    for name, (_, _, opt, unit, default, quick) in WORKLOADS.items():
        p.add_argument(opt, type=size_arg if unit == "bytes" else count_arg,
                       metavar="SIZE" if unit == "bytes" else "N",
                       help=f"{name}: {describe_size(name, default)} "
                       f"(quick: {describe_size(name, quick)})")
    p.add_argument("--runs", type=count_arg, default=3, metavar="N",
                   help="runs per side; the median counts (default 3)")
    p.add_argument("--timeout", type=timeout_arg, default=("x", 10.0),
                   metavar="T",
                   help="kill a run (not a plain one) after T seconds, or "
                   "after a factor of the first plain run's time, such as "
                   "10x (at least 60 s); default 10x")
    p.add_argument("--fit", type=fraction_arg, default=1.5, metavar="F",
                   help="upager's roomy budget, times the plain peak "
                   "(default 1.5)")
    p.add_argument("--pressure", type=fraction_arg, default=0.5,
                   metavar="F", help="the tight limit of upager and the "
                   "kernel, times the plain peak (default 0.5)")
    p.add_argument("--swap-dir", default="/var/tmp", metavar="DIR",
                   help="upager's swap file and the kernel's swap file go "
                   "there, the inputs too (default /var/tmp)")
    p.add_argument("--codec", metavar="NAME",
                   help="upager's codec: lz4, zstd or none")
    p.add_argument("--idle-poll", action="store_true",
                   help="keep idle CPUs polling for the run (a CPU latency "
                   "request of 0; root), on every side")
    p.add_argument("--json", metavar="FILE", help="write the results as JSON")
    a = p.parse_args(argv)
    if not os.path.isdir(a.swap_dir):
        p.error(f"--swap-dir: '{a.swap_dir}' is not a directory")
    return a


def hold_idle_poll():
    """A CPU latency request of 0, held while the descriptor is open."""
    fd = os.open("/dev/cpu_dma_latency", os.O_WRONLY)
    os.write(fd, struct.pack("i", 0))
    return fd


def on_signal(sig, frame):
    raise SystemExit(128 + sig)


def main():
    args = parse_args(sys.argv[1:])
    info = args.info or {"tool": "upager-bench", "version": "?",
                         "libupager": "?", "machine": os.uname().sysname,
                         "cpus": os.cpu_count(), "page_size": PAGE,
                         "cpu_idle_state": "cpuidle unknown"}
    if not os.path.exists(TIME):
        log(f"needs {TIME} (Debian package time) for each run's peak RSS")
        return 2
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    if args.idle_poll:
        try:
            hold_idle_poll()
        except OSError as e:
            log(f"--idle-poll: cannot hold a CPU latency request of 0 on "
                f"/dev/cpu_dma_latency: {e}")
            return 2
    b = Bench(args, info)
    try:
        results = [b.program(name) for name in args.workloads]
    finally:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT,
                                                  signal.SIGTERM,
                                                  signal.SIGHUP})
        if running:
            os.killpg(running, signal.SIGKILL)
        b.undo.all()
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT,
                                                    signal.SIGTERM,
                                                    signal.SIGHUP})
    print_table(b, results)
    if args.json:
        write_json(b, results, args.json)
    return 1 if b.failed else 0


if __name__ == "__main__":
    sys.exit(main())
