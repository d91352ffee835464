#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""`meson install --destdir` puts upager where a package would, and it works.

  check_install.py --meson MESON --build BUILD --sources SRC --cc CC
                   --prefix P --libdir L --bindir B --includedir I
                   --mandir M [--cflags F] [--preload] [--run-preload]

Installs the build into a temporary destdir and checks: the shared library
with its soname links and its soname, the static library, the header,
upager.pc, the tools (upager-stat too once tools/upager-stat.c exists),
the preload library where upager-run looks for it, and every page of man/
in its section.  Then it builds examples/lazy_array.c against the destdir
with pkg-config, runs it with LD_LIBRARY_PATH there (checking the loader
took the installed library) and checks its output; runs the installed
upager-run --help and --version, and shows that the installed upager-run
finds the installed preload library.
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

failures = []


def fail(msg):
    failures.append(msg)
    print("FAIL: " + msg)


def check(cond, msg):
    if not cond:
        fail(msg)
    return cond


def run(cmd, env=None, **kw):
    print("$ " + " ".join(cmd))
    return subprocess.run(cmd, env=env, capture_output=True, text=True,
                          errors="replace", **kw)


def soname(path):
    r = run(["readelf", "-d", path])
    m = re.search(r"\(SONAME\).*\[(.*)\]", r.stdout)
    return m.group(1) if m else None


def lazy_array_sum():
    """What examples/lazy_array.c prints as its sum: a[i] = 3i + 1 at each
    GiB of a 64 GiB array of uint64_t, plus one untouched element (0)."""
    step = (1 << 30) // 8
    return sum(i * 3 + 1 for i in range(0, 64 * (1 << 30) // 8, step))


def check_files(a, root):
    libdir = root + os.path.join(a.prefix, a.libdir)
    bindir = root + os.path.join(a.prefix, a.bindir)
    incdir = root + os.path.join(a.prefix, a.includedir)
    mandir = root + os.path.join(a.prefix, a.mandir)

    real = os.path.join(libdir, "libupager.so." + a.version)
    so = "libupager.so." + a.version.split(".")[0]
    if check(os.path.isfile(real) and not os.path.islink(real),
             "no shared library %s" % real):
        check(soname(real) == so, "soname of %s is %s, expected %s"
              % (real, soname(real), so))
    for link, to in ((so, "libupager.so." + a.version),
                     ("libupager.so", so)):
        p = os.path.join(libdir, link)
        check(os.path.islink(p) and os.readlink(p) == to,
              "%s should be a symlink to %s" % (p, to))
    check(os.path.isfile(os.path.join(libdir, "libupager.a")),
          "no static library libupager.a in %s" % libdir)
    pc = os.path.join(libdir, "pkgconfig", "upager.pc")
    check(os.path.isfile(pc), "no %s" % pc)
    with open(os.path.join(a.sources, "include", "upager.h"), "rb") as f:
        header = f.read()
    h = os.path.join(incdir, "upager.h")
    check(os.path.isfile(h) and open(h, "rb").read() == header,
          "%s missing or not the source header" % h)

    tools = ["upager-run", "upager-bench"]
    if os.path.exists(os.path.join(a.sources, "tools", "upager-stat.c")):
        tools.append("upager-stat")
    for t in tools:
        p = os.path.join(bindir, t)
        check(os.path.isfile(p) and os.access(p, os.X_OK),
              "no executable %s" % p)
    preload = os.path.join(libdir, "upager", "libupager-preload.so")
    if a.preload:
        check(os.path.isfile(preload), "no preload library %s" % preload)

    pages = sorted(p for p in os.listdir(os.path.join(a.sources, "man"))
                   if re.search(r"\.[1-8]$", p))
    for page in pages:
        p = os.path.join(mandir, "man" + page.rsplit(".", 1)[1], page)
        check(os.path.isfile(p), "man page %s not installed as %s"
              % (page, p))
    # A .so page resolves in the installed tree.
    if shutil.which("man"):
        r = run(["man", "-l", "man3/upg_runtime_destroy.3"], cwd=mandir,
                env=dict(os.environ, MANWIDTH="80"))
        check(r.returncode == 0 and "upg_runtime_create" in r.stdout,
              "installed upg_runtime_destroy(3) does not show "
              "upg_runtime_create(3): %s" % r.stderr.strip())
    return libdir, bindir, preload


def check_example(a, root, libdir, tmp):
    env = dict(os.environ,
               PKG_CONFIG_PATH=os.path.join(libdir, "pkgconfig"),
               PKG_CONFIG_SYSROOT_DIR=root)
    r = run(["pkg-config", "--modversion", "upager"], env=env)
    check(r.stdout.strip() == a.version, "pkg-config --modversion upager: "
          "%r, expected %s (%s)" % (r.stdout.strip(), a.version,
                                   r.stderr.strip()))
    r = run(["pkg-config", "--cflags", "--libs", "upager"], env=env)
    if not check(r.returncode == 0, "pkg-config --cflags --libs upager: %s"
                 % r.stderr.strip()):
        return
    flags = r.stdout.split()
    check(any(f.startswith("-I" + root) for f in flags) or
          not any(f.startswith("-I") for f in flags),
          "pkg-config points outside the destdir: %s" % r.stdout.strip())
    check(any(f.startswith("-L" + root) for f in flags),
          "pkg-config gives no -L into the destdir: %s" % r.stdout.strip())
    exe = os.path.join(tmp, "lazy_array")
    r = run(a.cc + ["-std=gnu11", "-Wall", "-Wextra", "-Werror"] +
            a.cflags + ["-o", exe,
                        os.path.join(a.sources, "examples", "lazy_array.c")]
            + flags)
    if not check(r.returncode == 0, "building lazy_array.c against the "
                 "destdir failed:\n%s" % r.stderr):
        return
    env = dict(os.environ, LD_LIBRARY_PATH=libdir)
    r = run(["ldd", exe], env=env)
    check(os.path.join(libdir, "libupager.so.") in r.stdout,
          "lazy_array does not load the installed library:\n%s" % r.stdout)
    r = run([exe], env=env, timeout=120)
    if r.returncode == 77:
        print("lazy_array skipped (no userfaultfd): %s" % r.stderr.strip())
        return
    lines = r.stdout.splitlines()
    check(r.returncode == 0 and lines and re.fullmatch(
        r"64 GiB array at 0x[0-9a-f]+: touched 64 elements, sum %d"
        % lazy_array_sum(), lines[0]) is not None,
        "lazy_array: rc %d, output:\n%s%s" % (r.returncode, r.stdout,
                                              r.stderr))
    r = run([exe, "--json"], env=env, timeout=120)
    try:
        st = json.loads(r.stdout.splitlines()[-1])
    except (ValueError, IndexError):
        fail("lazy_array --json: no JSON statistics:\n%s%s"
             % (r.stdout, r.stderr))
        return
    # A fault is counted after its thread is woken, so the last ones may
    # be missing from statistics read right after them.
    check(r.returncode == 0 and st["regions"] == 1 and
          1 <= st["faults"]["zero_write"]["count"] <= 64,
          "lazy_array --json: unexpected statistics %s" % r.stdout)


def check_run(a, bindir, preload, tmp):
    run_bin = os.path.join(bindir, "upager-run")
    r = run([run_bin, "--help"])
    check(r.returncode == 0 and r.stdout.startswith("usage: upager-run")
          and "UPAGER_MEM_LIMIT" in r.stdout,
          "installed upager-run --help: rc %d\n%s%s" % (r.returncode,
                                                       r.stdout, r.stderr))
    r = run([run_bin, "--version"])
    check(r.returncode == 0 and a.version in r.stdout,
          "installed upager-run --version: rc %d %r" % (r.returncode,
                                                       r.stdout))
    if not a.preload:
        return
    # It looks for the library before it executes the program: a program
    # that does not exist gets 127 only once the library was found.
    env = dict(os.environ)
    env.pop("UPAGER_PRELOAD_LIB", None)
    r = run([run_bin, "--", os.path.join(tmp, "no-such-program")], env=env)
    check(r.returncode == 127, "installed upager-run did not find the "
          "installed preload library: rc %d %s" % (r.returncode,
                                                   r.stderr.strip()))
    if a.run_preload:
        # The program sees which library it was given (UPAGER_PRELOAD=0:
        # loaded, managing nothing).
        env["UPAGER_PRELOAD"] = "0"
        r = run([run_bin, "--", "env"], env=env)
        got = re.search(r"^LD_PRELOAD=([^:\n]*)", r.stdout, re.M)
        check(r.returncode == 0 and got and
              os.path.realpath(got.group(1)) == os.path.realpath(preload),
              "installed upager-run preloads %s, expected %s (rc %d %s)"
              % (got.group(1) if got else None, preload, r.returncode,
                 r.stderr.strip()))


def main():
    ap = argparse.ArgumentParser()
    for opt in ("meson", "build", "sources", "prefix", "libdir", "bindir",
                "includedir", "mandir", "version"):
        ap.add_argument("--" + opt, required=True)
    ap.add_argument("--cc", required=True, action="append")
    ap.add_argument("--cflags", action="append", default=[])
    ap.add_argument("--preload", action="store_true",
                    help="the preload library is built")
    ap.add_argument("--run-preload", action="store_true",
                    help="programs here can load it (no sanitizer)")
    a = ap.parse_args()

    for tool in ("pkg-config", "readelf", "ldd"):
        if not shutil.which(tool):
            print("SKIP: %s is not installed" % tool)
            return 77
    with tempfile.TemporaryDirectory(prefix="upager-install-") as tmp:
        root = os.path.join(tmp, "destdir")
        r = run([a.meson, "install", "-C", a.build, "--destdir", root,
                 "--no-rebuild", "--skip-subprojects"])
        if r.returncode != 0:
            fail("meson install failed:\n%s%s" % (r.stdout, r.stderr))
        else:
            libdir, bindir, preload = check_files(a, root)
            check_example(a, root, libdir, tmp)
            check_run(a, bindir, preload, tmp)
    if failures:
        print("%d problem(s)" % len(failures))
        return 1
    print("installed tree complete; lazy_array builds and runs against it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
