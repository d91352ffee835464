#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""upager-run's conventions and --check.

    run_launcher.py UPAGER_RUN [--preload-runs]

Exit statuses as env(1) gives them: 125 for upager-run's own failures (a
bad option or UPAGER_* variable, no program, a bad --swap-dir, --strict
with a program upager cannot manage), 126 for a program that cannot be
executed, 127 for one not found, otherwise the program's own (a signal
kills the process itself: the shell says 128+N).  --help and --version
on stdout with status 0.

--check, on programs compiled here: dynamic (0), -static (1), Go-like
(a .go.buildinfo section added with objcopy, or a runtime.main symbol;
dynamic and static: 1), set-uid to another user (1), a script (its
interpreter decides), not found (1); a swap directory that cannot be
used (1 with a budget, 0 with a warning without).  A machine where
--check itself says no (no userfaultfd) skips (77) that part.

Without --preload-runs (a sanitizer build, whose preload library cannot
be loaded into uninstrumented programs) the programs run with libc as the
"preload library": this tests the launcher, not the library.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile

SKIP = 77
TIMEOUT = 120
failures = []

HELLO = '#include <stdio.h>\nint main(void) { puts("hello"); return 0; }\n'
GO_SYMBOL = r'''
#include <stdio.h>
void go_main(void) __asm__("runtime.main");
void go_main(void) { puts("hello"); }
int main(void) { go_main(); return 0; }
'''


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


def run(argv, env=None, **kw):
    p = subprocess.run(argv, env=env, capture_output=True, timeout=TIMEOUT,
                       **kw)
    out = p.stdout.decode(errors="replace")
    err = p.stderr.decode(errors="replace")
    print(f"$ {' '.join(argv)}  -> {p.returncode}\n{out}{err}", end="")
    return p.returncode, out, err


def libc_path():
    for line in open("/proc/self/maps"):
        m = re.search(r"(/\S*/libc\.so\.6)$", line.strip())
        if m:
            return m.group(1)
    return None


def base_env(preload_runs):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("UPAGER_") and k != "LD_PRELOAD"}
    if not preload_runs:
        env["UPAGER_PRELOAD_LIB"] = libc_path()
    return env


def conventions(ur, env, tmp):
    rc, out, err = run([ur, "--help"], env)
    check(rc == 0 and out.startswith("usage: upager-run") and not err,
          "--help: stdout, 0")
    rc, out, err = run([ur, "--version"], env)
    check(rc == 0 and re.match(r"upager-run \d+\.\d+", out) and not err,
          "--version: stdout, 0")

    for argv, extra, what in (
            (["--bogus", "true"], {}, "an unknown option"),
            (["--mem-limit", "lots", "true"], {}, "a bad --mem-limit"),
            (["true"], {"UPAGER_CODEC": "foo"}, "a bad UPAGER_CODEC"),
            ([], {}, "no program"),
            (["--swap-dir", "/nonexistent", "true"], {}, "a bad --swap-dir")):
        rc, _, err = run([ur] + argv, dict(env, **extra))
        check(rc == 125 and err, f"{what}: 125 with a message")

    noexec = os.path.join(tmp, "noexec")
    open(noexec, "w").write("#!/bin/sh\nexit 0\n")
    os.chmod(noexec, 0o644)
    for argv, want, what in (
            (["/nonexistent/prog"], 127, "a path that does not exist"),
            (["no-such-program-upager"], 127, "a name not in PATH"),
            ([noexec], 126, "a file without execute permission"),
            ([tmp], 126, "a directory")):
        rc, _, err = run([ur] + argv, env)
        check(rc == want and "cannot run" in err, f"{what}: {want}")

    rc, _, _ = run([ur, "sh", "-c", "exit 7"], env)
    check(rc == 7, "the program's status: 7")
    rc, _, _ = run([ur, "sh", "-c", "kill -TERM $$"], env)
    check(rc == -15, "killed by SIGTERM: the process dies of it")
    rc, out, _ = run(["sh", "-c", f"'{ur}' sh -c 'kill -TERM $$'; echo $?"],
                     env)
    check(out.strip().endswith("143"), "a shell reports 128+15")


def compile_programs(tmp):
    """{name: path} of the test programs, or None without a compiler."""
    cc = shutil.which("cc") or shutil.which("gcc")
    objcopy = shutil.which("objcopy")
    if not cc or not objcopy:
        return None
    src = os.path.join(tmp, "hello.c")
    open(src, "w").write(HELLO)
    gosrc = os.path.join(tmp, "gosym.c")
    open(gosrc, "w").write(GO_SYMBOL)
    info = os.path.join(tmp, "buildinfo")
    open(info, "wb").write(b"\xff Go buildinf:\x08\x02")
    p = {k: os.path.join(tmp, k) for k in (
        "dynamic", "static", "go-dynamic", "go-static", "go-symbol",
        "setuid")}
    cmds = [
        [cc, "-o", p["dynamic"], src],
        [cc, "-static", "-o", p["static"], src],
        [objcopy, "--add-section", f".go.buildinfo={info}", p["dynamic"],
         p["go-dynamic"]],
        [objcopy, "--add-section", f".go.buildinfo={info}", p["static"],
         p["go-static"]],
        [cc, "-o", p["go-symbol"], gosrc],
    ]
    for c in cmds:
        if subprocess.run(c, capture_output=True).returncode != 0:
            print(f"cannot build: {' '.join(c)}")
            return None
    shutil.copy2(p["dynamic"], p["setuid"])
    os.chown(p["setuid"], 65534, 65534)
    os.chmod(p["setuid"], 0o4755)
    script = os.path.join(tmp, "script")
    open(script, "w").write("#!/bin/sh\necho hello\n")
    os.chmod(script, 0o755)
    p["script"] = script
    script = os.path.join(tmp, "script-static")
    open(script, "w").write(f"#!{p['static']}\n")
    os.chmod(script, 0o755)
    p["script-static"] = script
    return p


def findings(out):
    """Every line but the last is a finding with a verdict."""
    lines = out.splitlines()
    return lines and all(re.match(r"(ok  |info|warn|no  )  \S", l)
                         for l in lines[:-1])


def check_mode(ur, env, tmp):
    rc, out, _ = run([ur, "--check"], env)
    if rc != 0:
        return f"upager-run --check says this machine cannot run upager"
    check(findings(out) and "can run programs here" in out and
          re.search(r"UFFDIO_MOVE (yes|no), UFFDIO_POISON (yes|no), "
                    r"WP_ASYNC (yes|no)", out) and "io_uring" in out and
          "swap directory" in out, "--check: the machine's findings, 0")
    progs = compile_programs(tmp)
    if progs is None:
        return "no C compiler with -static and objcopy"
    cases = (
        ("dynamic", 0, ["dynamically linked"]),
        ("static", 1, ["is statically linked"]),
        ("go-dynamic", 1, ["is a Go program (a .go.buildinfo section)"]),
        ("go-static", 1, ["is statically linked", "is a Go program"]),
        ("go-symbol", 1, ["is a Go program (a runtime.main symbol)"]),
        ("setuid", 1, ["is set-uid (to uid 65534)", "secure mode"]),
        ("script", 0, ["a script run by /bin/sh"]),
        ("script-static", 1, ["is statically linked"]),
    )
    for name, want, says in cases:
        rc, out, _ = run([ur, "--check", progs[name]], env)
        check(rc == want and findings(out) and all(s in out for s in says),
              f"--check {name}: {want}, says {says}")
    rc, out, _ = run([ur, "--check", "no-such-program-upager"], env)
    check(rc == 1 and "not found" in out, "--check not found: 1")
    bad = dict(env, UPAGER_SWAP_DIR="/nonexistent")
    rc, out, _ = run([ur, "--check", progs["dynamic"]], bad)
    check(rc == 0 and re.search(r"^warn  swap directory /nonexistent", out,
                                re.M), "--check bad swap dir, no budget: 0")
    rc, out, _ = run([ur, "-m", "64M", "--check", progs["dynamic"]], bad)
    check(rc == 1 and re.search(r"^no    swap directory /nonexistent", out,
                                re.M), "--check bad swap dir, budget: 1")

    rc, out, err = run([ur, progs["static"]], env)
    check(rc == 0 and out == "hello\n" and "runs unmanaged" in err,
          "a static program runs unmanaged, with a warning")
    rc, out, err = run([ur, "--strict", progs["go-dynamic"]], env)
    check(rc == 125 and not out and "is a Go program" in err,
          "--strict with a Go program: 125")
    rc, out, err = run([ur, "--strict", progs["dynamic"]], env)
    check(rc == 0 and out == "hello\n", "--strict with a dynamic program: runs")
    return None


def main():
    ur = os.path.abspath(sys.argv[1])
    preload_runs = "--preload-runs" in sys.argv[2:]
    env = base_env(preload_runs)
    tmp = tempfile.mkdtemp(prefix="upager-launcher-")
    try:
        conventions(ur, env, tmp)
        skipped = check_mode(ur, env, tmp) if os.geteuid() == 0 else \
            "needs root (a set-uid test program)"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if failures:
        sys.exit("FAIL: " + "; ".join(failures))
    if skipped:
        print(f"SKIP: --check part: {skipped}")
        sys.exit(SKIP)
    print("all launcher checks passed")


if __name__ == "__main__":
    main()
