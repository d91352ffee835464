#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Run `upager-bench --programs --quick` and check what it reports.

    bench_programs_check.py PATH-TO-UPAGER-BENCH

Every program and side must be measured or say why not; limits must be
the fractions of the plain peak; no output may differ from the plain
run's, no plain or upager run may fail; a run killed at the timeout must
be reported as such, its ratio a lower bound.  As root, the kernel set-up
(zswap's parameter, the swap file, the cgroups) must be undone after a
run, after SIGTERM, and after SIGKILL by the next run.  Bad options must
fail naming option and value.  Exits 77 (skipped) when upager cannot run
here (no userfaultfd).
"""
import glob
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

SKIP = 77
SIDES = ["plain", "upager-fit", "upager-pressure", "kernel-zswap",
         "kernel-zram"]
PROGRAMS = ["python3", "sort", "sqlite3", "xz"]
RESULTS = ("ok", "timeout", "failed", "mismatch")
STATES = "/run/upager-bench-programs-*.json"
ZSWAP = "/sys/module/zswap/parameters/enabled"
failures = []


def check(ok, what):
    if not ok:
        failures.append(what)


def machine_state():
    """What a run may change and must give back."""
    def read(path):
        try:
            return open(path).read()
        except OSError:
            return None
    return {"zswap": read(ZSWAP), "swaps": read("/proc/swaps"),
            "cgroups": sorted(glob.glob("/sys/fs/cgroup/memory/"
                                        "upager-bench-programs-*")),
            "state files": sorted(glob.glob(STATES)),
            "swap files": sorted(glob.glob("/var/tmp/upager-bench-"
                                           "programs-*"))}


def check_restored(before, when):
    after = machine_state()
    for k, v in before.items():
        check(after[k] == v, f"{when}: {k} not restored: {v!r} -> "
              f"{after[k]!r}")


def check_run(name, run, timeout):
    check(run["result"] in RESULTS, f"{name}: result {run['result']!r}")
    check(run["result"] != "mismatch", f"{name}: {run.get('detail')}")
    if run["result"] == "timeout":
        check(run["wall_s"] == timeout, f"{name}: timed out at "
              f"{run['wall_s']} s, not {timeout}")
    elif run["result"] == "ok":
        check(run["wall_s"] > 0 and run["peak_rss"] > 0,
              f"{name}: wall {run['wall_s']}, peak {run['peak_rss']}")
    else:
        check(run.get("detail"), f"{name}: failed without a reason")


def check_side(prog, side, cfg, page):
    name = f"{prog['name']}/{side['side']}"
    if not side["available"]:
        check(side.get("reason"), f"{name}: unavailable without a reason")
        return
    runs = side["runs"]
    if side["side"] != "plain":
        frac = cfg["fit"] if side["side"] == "upager-fit" else \
            cfg["pressure"]
        want = -(-int(prog["plain_peak"] * frac) // page) * page
        check(side["limit"] == want, f"{name}: limit {side['limit']}, "
              f"not {want}")
    # Runs stop early only after a timeout or a failure.
    check(len(runs) == cfg["runs"] or (runs and runs[-1]["result"] in
                                       ("timeout", "failed")),
          f"{name}: {len(runs)} runs")
    for i, run in enumerate(runs):
        check_run(f"{name} run {i + 1}", run, prog["timeout_s"])
        if side["side"].startswith("kernel") and run.get("cgroup_peak"):
            check(run["cgroup_peak"] <= side["limit"],
                  f"{name}: cgroup peak {run['cgroup_peak']} above the "
                  f"limit {side['limit']}")
    if not side["side"].startswith("kernel"):
        check(all(r["result"] in ("ok", "timeout") for r in runs),
              f"{name}: {[r.get('detail') for r in runs]}")
        check(side["outputs_match"] is not False, f"{name}: outputs differ")
    sm, r = side["summary"], side["ratio"]["plain"]
    if sm:
        # The median: a lower bound if a middle run timed out.
        done = sorted(runs, key=lambda x: x["wall_s"])
        mid = done[(len(done) - 1) // 2:len(done) // 2 + 1]
        bound = ">" if any(x["result"] == "timeout" for x in mid) else "="
        check(sm["bound"] == bound, f"{name}: median bound {sm['bound']}")
        check(r and r["value"] > 0 and r["bound"] == bound,
              f"{name}: ratio {r} for median {sm}")


def check_program(prog, cfg, page):
    if "unavailable" in prog:
        check(prog["unavailable"], f"{prog['name']}: no reason")
        return
    check([s["side"] for s in prog["sides"]] == cfg["sides"],
          f"{prog['name']}: sides {[s['side'] for s in prog['sides']]}")
    check(prog["plain_peak"] > 0, f"{prog['name']}: plain peak")
    plain = prog["sides"][0]
    check(plain["available"] and plain["outputs_match"],
          f"{prog['name']}: plain runs {plain}")
    for side in prog["sides"]:
        check_side(prog, side, cfg, page)


def check_json(path, programs, sides):
    with open(path) as f:
        d = json.load(f)
    for k in ("tool", "version", "libupager", "machine", "cpus",
              "page_size", "cpu_idle", "thp", "config", "programs"):
        check(k in d, f"JSON lacks {k}")
    check(d["tool"] == "upager-bench", f"tool {d['tool']}")
    check("idle CPUs may sleep" in d["cpu_idle"], f"CPU idle not stated: "
          f"{d['cpu_idle']!r}")
    cfg = d["config"]
    check(cfg["sides"] == sides, f"config sides {cfg['sides']}")
    check([p["name"] for p in d["programs"]] == programs,
          f"programs {[p['name'] for p in d['programs']]}")
    if "kernel" in d and d["kernel"]["available"]:
        check(d["kernel"]["zswap_pool_charged"] ==
              (d["kernel"]["cgroup"] == 2), f"kernel: {d['kernel']}")
    for prog in d["programs"]:
        check_program(prog, cfg, d["page_size"])
    return d


def upager_missing(d):
    """Every upager side unavailable for the same reason: no upager here."""
    sides = [s for p in d["programs"] for s in p.get("sides", [])
             if s["side"].startswith("upager")]
    return sides and all(not s["available"] for s in sides) and \
        sides[0]["reason"]


def check_bad_options(bench):
    for args, words in ((["--programs", "--timeout", "0"],
                         ["--timeout", "'0'"]),
                        (["--programs", "--sides", "upager-fit,nope"],
                         ["--sides", "'nope'", "kernel-zswap"]),
                        (["--programs", "--python-size", "12X"],
                         ["--python-size", "'12X'"]),
                        (["--programs", "--frobnicate"], ["--frobnicate"]),
                        (["--quick", "--programs"],
                         ["--programs must come first"])):
        p = subprocess.run([bench] + args, capture_output=True, text=True)
        check(p.returncode != 0, f"{args}: exit 0")
        check(all(w in p.stderr for w in words),
              f"{args}: message {p.stderr.strip()!r} lacks {words}")


def interrupted(bench, sig):
    """Kill a run while its kernel side runs; return its exit status."""
    p = subprocess.Popen([bench, "--programs", "--quick", "--workloads",
                          "python3", "--sides", "kernel-zswap", "--runs",
                          "3"], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and p.poll() is None:
        try:
            if any('"zswap"' in open(f).read() for f in glob.glob(STATES)):
                break
        except OSError:
            pass
        time.sleep(0.01)
    p.send_signal(sig)
    return p.wait(timeout=60)


def check_kernel_undo(bench, before, d):
    """As root, with a kernel side: SIGTERM undoes the set-up at once;
    after SIGKILL the next run does."""
    k = d.get("kernel")
    if os.geteuid() or not k or not k["available"]:
        return ""
    status = interrupted(bench, signal.SIGTERM)
    check(status == 128 + signal.SIGTERM, f"SIGTERM: exit {status}")
    check_restored(before, "after SIGTERM")
    status = interrupted(bench, signal.SIGKILL)
    check(status == -signal.SIGKILL, f"SIGKILL: exit {status}")
    subprocess.run([bench, "--programs", "--quick", "--workloads",
                    "sqlite3", "--sides", "upager-fit", "--runs", "1"],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   timeout=60)
    check_restored(before, "after SIGKILL and another run")
    return ", set-up undone after SIGTERM and SIGKILL"


def main():
    bench = sys.argv[1]
    check_bad_options(bench)
    before = machine_state()
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "r.json")
        p = subprocess.run([bench, "--programs", "--quick", "--timeout", "5",
                            "--json", out], timeout=240)
        check(p.returncode == 0, f"exit {p.returncode}")
        check_restored(before, "after the run")
        d = check_json(out, PROGRAMS, SIDES)
        why = upager_missing(d)
        if why:
            print("SKIP:", why)
            return SKIP
        # A run that cannot finish in time: killed, and said so.
        p = subprocess.run([bench, "--programs", "--quick", "--workloads",
                            "sqlite3", "--sides", "upager-pressure",
                            "--runs", "2", "--timeout", "0.05", "--json",
                            out], timeout=60)
        check(p.returncode == 0, f"timeout run: exit {p.returncode}")
        t = check_json(out, ["sqlite3"], ["plain", "upager-pressure"])
        up = t["programs"][0]["sides"][1]
        check([r["result"] for r in up["runs"]] == ["timeout"],
              f"timeout run: {up['runs']}")
        check(up["ratio"]["plain"] and up["ratio"]["plain"]["bound"] == ">",
              f"timeout run: ratio {up['ratio']}")
        undone = check_kernel_undo(bench, before, d)
    for f in failures:
        print("FAIL:", f)
    if failures:
        return 1
    print(f"ok: {len(d['programs'])} programs checked{undone}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
