#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""upager-run names a program LD_PRELOAD cannot reach, before it runs.

    run_check.py UPAGER_RUN

A statically linked program (built here with cc -static) under a memory
limit is refused with the reason (exit 2) instead of running with the
budget ignored; without a limit it runs, unmanaged, after a warning; a
script is judged by its interpreter; a dynamically linked program runs
with no word.  No C compiler or static libc is a skip (exit 77).
"""
import os
import shutil
import subprocess
import sys
import tempfile

SKIP = 77


def run(argv):
    p = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    return p.returncode, p.stdout, p.stderr


def main():
    upager_run = sys.argv[1]
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        print("SKIP: no C compiler (Debian package gcc)")
        sys.exit(SKIP)
    tmp = tempfile.mkdtemp(prefix="upager-check-")
    try:
        src = os.path.join(tmp, "hi.c")
        prog = os.path.join(tmp, "hi-static")
        open(src, "w").write('#include <stdio.h>\n'
                             'int main(void) { puts("hi"); return 0; }\n')
        if subprocess.run([cc, "-static", "-o", prog, src]).returncode:
            print("SKIP: cc -static failed (Debian package libc6-dev)")
            sys.exit(SKIP)
        script = os.path.join(tmp, "hi.sh")
        open(script, "w").write(f"#!{prog}\n")
        os.chmod(script, 0o755)

        for target in (prog, script):
            rc, out, err = run([upager_run, "--mem-limit", "64M", "--",
                                target])
            assert rc == 2 and out == "", (target, rc, out, err)
            assert "statically linked" in err and "cannot run" in err, err
        rc, out, err = run([upager_run, "--", prog])
        assert rc == 0 and out == "hi\n", (rc, out, err)
        assert "runs unmanaged" in err and "statically linked" in err, err
        rc, out, err = run([upager_run, "--mem-limit", "64M", "--",
                            "echo", "dynamic"])
        assert rc == 0 and out == "dynamic\n" and err == "", (rc, out, err)
        print("ok")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
