#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Run `upager-bench --quick` and check what it reports.

    bench_check.py PATH-TO-UPAGER-BENCH

Every scenario must have a kernel baseline or an explicit unavailable
reason; counts must be as asked, percentiles ordered, ratios positive; the
CSV must hold the same rows; bad options must fail naming option and value.
Exits 77 (skipped) when userfaultfd is unavailable here.
"""
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile

SKIP = 77
PCTS = ["p50_ns", "p90_ns", "p99_ns", "p999_ns", "max_ns"]
ALL = ["zero-read", "zero-write", "seq-read", "seq-write", "scale",
       "swapin-ram", "swapin-disk", "swapin-remote", "swap-random",
       "swap-scan", "swap-hot",
       "file", "file-random", "file-scan", "cow", "snap-take"]
failures = []


def check(ok, what):
    if not ok:
        failures.append(what)


def expected_count(row, cfg, page):
    if row["scenario"].startswith("seq-"):
        return cfg["size"] // page * cfg["rounds"]
    if row["scenario"] == "snap-take":  # each side snapshots (forks)
        return cfg["snapshot_takes"] * cfg["rounds"]
    if row["scenario"] in ("swap-scan", "file-scan"):  # twice the budget
        return 2 * cfg["budget"] // page * cfg["rounds"]
    return cfg["faults"]


def check_side(name, side, asked):
    if not side["available"]:
        check(side.get("reason"), f"{name}: unavailable without a reason")
        return
    check(side["count"] == asked,
          f"{name}: count {side['count']}, asked {asked}")
    values = [side[p] for p in PCTS]
    check(values == sorted(values), f"{name}: percentiles not ordered "
          f"{values}")
    check(values[0] > 0, f"{name}: p50 is 0")
    check(side["per_sec"] > 0, f"{name}: throughput {side['per_sec']}")


def check_row(row, cfg, page):
    name = row["name"]
    asked = expected_count(row, cfg, page)
    check(row["asked"] == asked, f"{name}: asked {row['asked']} != {asked}")
    for s in ("upager", "kernel"):
        check_side(f"{name}/{s}", row[s], asked)
    both = row["upager"]["available"] and row["kernel"]["available"]
    for key, r in row["ratio"].items():
        if both:
            check(r is not None and r > 0, f"{name}: ratio {key} = {r}")
        else:
            check(r is None, f"{name}: ratio {key} without both sides")


def check_scaling(rows, cfg):
    threads = sorted(r["threads"] for r in rows if r["scenario"] == "scale")
    want = [t for t in (1, 2, 4, 8, 16, 32) if t < cfg["threads"]]
    check(threads == want + [cfg["threads"]], f"scale rows {threads}")


def check_json(path):
    with open(path) as f:
        d = json.load(f)
    cfg, page, rows = d["config"], d["page_size"], d["scenarios"]
    check("MADV_NOHUGEPAGE" in d["thp"], "THP setting not stated")
    check("idle CPUs may sleep" in d["cpu_idle"] and
          cfg["idle_poll"] is False,
          f"CPU idle not stated: {d['cpu_idle']!r}, {cfg['idle_poll']!r}")
    check(sorted({r["scenario"] for r in rows}) == sorted(ALL),
          f"scenarios {[r['scenario'] for r in rows]}")
    for row in rows:
        check_row(row, cfg, page)
    check_scaling(rows, cfg)
    return rows


def check_csv(path, rows):
    with open(path, newline="") as f:
        lines = list(csv.DictReader(f))
    check(len(lines) == 2 * len(rows), f"CSV has {len(lines)} lines")
    for line in lines:
        check(line["available"] == "1" or line["reason"],
              f"CSV {line['name']}/{line['side']}: no reason")


def uffd_missing(rows):
    return all(not r["upager"]["available"] and
               r["upager"]["reason"].startswith("userfaultfd is unavailable")
               for r in rows)


def check_bad_options(bench):
    for args, words in ((["--faults", "0"], ["--faults", "'0'"]),
                        (["--codec", "zip"], ["--codec", "'zip'", "lz4"]),
                        (["--scenarios", "zero-read,nope"],
                         ["--scenarios", "'nope'", "zero-write"]),
                        (["--size", "12X"], ["--size", "'12X'"]),
                        (["--snapshot-size", "1Q"],
                         ["--snapshot-size", "'1Q'"]),
                        (["--budget", "x"], ["--budget", "'x'"]),
                        (["--plot", "x.pdf"], ["--plot", ".svg"]),
                        (["--remote", "localhost"],
                         ["--remote", "'localhost'", "host:port"]),
                        (["--remote", "h:1,h:0"], ["--remote", "'h:1,h:0'"]),
                        (["--frobnicate"], ["--frobnicate"])):
        p = subprocess.run([bench] + args, capture_output=True, text=True)
        check(p.returncode != 0, f"{args}: exit 0")
        check(all(w in p.stderr for w in words),
              f"{args}: message {p.stderr.strip()!r} lacks {words}")


def check_remote(rows):
    """swapin-remote ran against memcached servers of its own (the bench
    starts them when memcached is installed, as scripts/setup does): its
    swap-ins came from the cluster, none was lost, and the servers are
    gone."""
    row = next((r for r in rows if r["scenario"] == "swapin-remote"), None)
    check(row is not None, "no swapin-remote row")
    if row is None or uffd_missing(rows):
        return
    if not shutil.which("memcached"):
        check(not row["upager"]["available"] and
              "memcached" in row["upager"]["reason"],
              f"swapin-remote without memcached: {row['upager']}")
        return
    remote = row.get("remote")
    check(remote is not None and remote["swapins"] > 0 and
          remote["batches"] > 0 and remote["lost"] == 0,
          f"swapin-remote's remote tier: {remote}")
    left = subprocess.run(["pgrep", "-x", "memcached"], capture_output=True,
                          text=True).stdout.split()
    check(not left or not remote or all(
        str(p) not in remote["hosts"] for p in left),
        "memcached servers left running")


def main():
    bench = sys.argv[1]
    check_bad_options(bench)
    with tempfile.TemporaryDirectory() as tmp:
        out = {ext: os.path.join(tmp, "r." + ext)
               for ext in ("json", "csv", "svg")}
        subprocess.run([bench, "--quick", "--json", out["json"],
                        "--csv", out["csv"], "--plot", out["svg"]],
                       check=True, timeout=120)
        rows = check_json(out["json"])
        check_csv(out["csv"], rows)
        check_remote(rows)
        if shutil.which("gnuplot"):
            check(os.path.getsize(out["svg"]) > 0, "empty plot")
    for f in failures:
        print("FAIL:", f)
    if failures:
        return 1
    if uffd_missing(rows):
        print("SKIP:", rows[0]["upager"]["reason"])
        return SKIP
    print(f"ok: {len(rows)} rows checked")
    return 0


if __name__ == "__main__":
    sys.exit(main())
