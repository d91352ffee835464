#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The manual pages: each renders without a warning, and none falls behind.

  check_man.py --pages BUILD/man --sources SRC --lib libupager.so

Every page configured into BUILD/man (one per file of SRC/man) is rendered
by Debian's man (`man --warnings -l`, 80 columns) and by groff with every
warning on (`groff -t -ww -man -z`); any warning, a line wider than 80
columns or a placeholder left unconfigured fails.  A `.so` page must name
a page that lists it in its NAME line.  Then what the code has must be in
the pages:
  - every symbol the library exports (and every UPG_API function of the
    header, every name of libupager.sym) is named by some section 3 page;
  - every option of src/config.c's table is an entry of upager(7)'s
    ENVIRONMENT with its default and the values it accepts, and every
    UPAGER_* variable the code reads with getenv() is documented there;
  - every field of struct upg_stats is described in its STATISTICS.
Exit 77 (skip) when man or groff is missing.
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

WIDTH = 80
failures = []


def fail(msg):
    failures.append(msg)
    print("FAIL: " + msg)


def run(cmd, cwd=None):
    env = dict(os.environ, MANWIDTH=str(WIDTH), LC_ALL="C.UTF-8",
               MAN_DISABLE_SECCOMP="1")
    env.pop("MANPAGER", None)
    env.pop("PAGER", None)
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True,
                          text=True, errors="replace")


def so_target(text):
    m = re.match(r"\.so\s+(\S+)\s*$", text.strip())
    return m.group(1) if m and len(text.strip().splitlines()) == 1 else None


def name_line(text):
    """The names of a page's NAME section ("a, b \\- what")."""
    m = re.search(r"^\.SH NAME\n(.*?)\s\\-\s", text, re.M | re.S)
    if not m:
        return []
    return [n.strip().replace("\\-", "-") for n in m.group(1).split(",")]


def render(path, cwd):
    """Warnings and over-wide lines of one page, as a list of messages."""
    out = []
    r = run(["man", "--warnings", "-E", "UTF-8", "-l", path], cwd=cwd)
    if r.returncode != 0 or r.stderr.strip():
        out.append("man --warnings: rc %d: %s" % (r.returncode,
                                                   r.stderr.strip()))
    if not r.stdout.strip():
        out.append("man renders nothing")
    for n, line in enumerate(r.stdout.splitlines(), 1):
        if len(line) > WIDTH:
            out.append("rendered line %d is %d columns wide (> %d): %r"
                       % (n, len(line), WIDTH, line.strip()[:60]))
    with open(os.path.join(cwd, path)) as f:
        text = f.read()
    if so_target(text) is None:
        r = run(["groff", "-t", "-ww", "-man", "-z", path], cwd=cwd)
        if r.returncode != 0 or r.stderr.strip():
            out.append("groff -ww: rc %d: %s" % (r.returncode,
                                                 r.stderr.strip()))
    return out


def section(text, title):
    m = re.search(r"^\.SH %s\n(.*?)(?=^\.SH |\Z)" % re.escape(title), text,
                  re.M | re.S)
    return m.group(1) if m else ""


def words(text):
    """Roff text as plain words, for looking names up."""
    text = re.sub(r"\\f[BIRP]|\\\*\(\w\w|\\&|\\%", "", text)
    text = text.replace("\\-", "-").replace("\\~", " ")
    return {w.rstrip(".") for w in re.findall(r"[A-Za-z0-9_./-]+", text)}


def exported_symbols(lib):
    r = subprocess.run(["nm", "-D", "--defined-only", lib],
                       capture_output=True, text=True)
    if r.returncode != 0:
        fail("nm -D %s: %s" % (lib, r.stderr.strip()))
        return set()
    syms = set()
    for line in r.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] in "TWDBRV" and \
                not parts[2].startswith("UPAGER_"):
            syms.add(parts[2].split("@")[0])
    return syms


def config_options(src):
    """(variable, type, min, max, enum names, default) of config.c's table."""
    with open(os.path.join(src, "src", "config.c")) as f:
        text = f.read()
    enums = {m.group(1): re.findall(r'"([^"]+)"', m.group(2)) for m in
             re.finditer(r"const char \*const (\w+)\[\] = \{(.*?)\};",
                         text, re.S)}
    table = re.search(r"static const struct opt options\[\] = \{(.*?)\n\};",
                      text, re.S)
    if not table:
        fail("src/config.c: no options[] table found")
        return []
    opts = []
    for m in re.finditer(
            r'\{\s*"(UPAGER_\w+)",\s*OPT_(\w+),\s*FIELD\(\w+\),\s*'
            r'([^,]+),\s*([^,]+),\s*(\w+),\s*"([^"]*)"', table.group(1)):
        env, typ, lo, hi, names, default = m.groups()
        opts.append((env, typ, lo.strip(), hi.strip(),
                     enums.get(names, []), default))
    listed = re.findall(r'\{\s*"(UPAGER_\w+)"', table.group(1))
    for env in sorted(set(listed) - {o[0] for o in opts}):
        fail("src/config.c: cannot read the entry of %s (the check needs "
             "updating)" % env)
        opts.append((env, "?", "", "", [], ""))
    return opts


def getenv_names(src):
    names = set()
    for top in ("src", "tools"):
        for dirpath, _, files in os.walk(os.path.join(src, top)):
            for fn in files:
                if fn.endswith((".c", ".h")):
                    with open(os.path.join(dirpath, fn)) as f:
                        names.update(re.findall(
                            r'getenv\("(UPAGER_\w+)"\)', f.read()))
    return names


def env_entries(text):
    """upager(7)'s ENVIRONMENT: variable -> its paragraph."""
    env = section(text, "ENVIRONMENT")
    entries = {}
    for m in re.finditer(r"^\.TP\n([^\n]*)\n(.*?)(?=^\.TP\n|\Z)", env,
                         re.M | re.S):
        tag = re.search(r"(UPAGER_\w+)", m.group(1))
        if tag:
            entries[tag.group(1)] = m.group(2)
    return entries


def check_environment(src, text):
    entries = env_entries(text)
    for env, typ, lo, hi, names, default in config_options(src):
        para = entries.get(env)
        if para is None:
            fail("upager.7: %s (src/config.c) has no entry in ENVIRONMENT"
                 % env)
            continue
        w = words(para)
        if default and not re.search(r"Default\s*\\fB%s\\fP"
                                     % re.escape(default), para):
            fail("upager.7: %s: default is %s in src/config.c, the page "
                 "does not say \"Default \\fB%s\\fP\"" % (env, default,
                                                          default))
        if typ == "UINT":
            for bound in (lo, hi):
                if bound.isdigit() and bound not in w:
                    fail("upager.7: %s accepts %s to %s (src/config.c); "
                         "the page does not say %s" % (env, lo, hi, bound))
        for name in names:
            if name not in w:
                fail("upager.7: %s accepts %s; the page does not name it"
                     % (env, name))
    for env in sorted(getenv_names(src) - set(entries)):
        fail("upager.7: %s is read with getenv() but not documented in "
             "ENVIRONMENT" % env)


def check_statistics(src, text):
    with open(os.path.join(src, "include", "upager.h")) as f:
        header = f.read()
    m = re.search(r"struct upg_stats \{(.*?)\n\};", header, re.S)
    if not m:
        fail("include/upager.h: struct upg_stats not found")
        return
    body = re.sub(r"/\*.*?\*/", "", m.group(1), flags=re.S)
    fields = re.findall(r"(\w+)(?:\[[^\]]*\])?;", body)
    w = words(section(text, "STATISTICS"))
    for field in fields:
        if field not in ("size", "reserved") and field not in w:
            fail("upager.7: STATISTICS does not describe struct upg_stats."
                 "%s" % field)


def api_names(src, lib):
    with open(os.path.join(src, "include", "upager.h")) as f:
        header = f.read()
    names = set(re.findall(r"UPG_API\b[^;(]*?\b(upg_\w+)\s*\(", header,
                           re.S))
    with open(os.path.join(src, "src", "libupager.sym")) as f:
        sym = f.read()
    globs = []
    for m in re.finditer(r"global:(.*?)(?:local:|\})", sym, re.S):
        for entry in re.findall(r"([\w*?]+)\s*;", m.group(1)):
            if "*" in entry or "?" in entry:
                globs.append(entry)
            else:
                names.add(entry)
    exported = exported_symbols(lib)
    if not exported:
        fail("%s exports nothing" % lib)
    for s in sorted(exported - names):
        fail("%s exports %s, which include/upager.h does not declare with "
             "UPG_API" % (os.path.basename(lib), s))
    return names | exported


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pages", required=True, help="configured pages")
    ap.add_argument("--sources", required=True, help="source root")
    ap.add_argument("--lib", required=True, help="the built libupager.so")
    a = ap.parse_args()

    for tool in ("man", "groff", "nm"):
        if not shutil.which(tool):
            print("SKIP: %s is not installed (scripts/setup installs it)"
                  % tool)
            return 77

    src_pages = sorted(p for p in os.listdir(os.path.join(a.sources, "man"))
                       if re.search(r"\.[1-8]$", p))
    texts = {}
    with tempfile.TemporaryDirectory() as tree:
        # man1/, man3/, man7/ as installed, so `.so man3/x.3` resolves.
        for page in src_pages:
            path = os.path.join(a.pages, page)
            if not os.path.exists(path):
                fail("%s is in man/ but not configured (man/meson.build)"
                     % page)
                continue
            with open(path) as f:
                texts[page] = f.read()
            sect = os.path.join(tree, "man" + page.rsplit(".", 1)[1])
            os.makedirs(sect, exist_ok=True)
            shutil.copy(path, sect)
        for page, text in texts.items():
            left = re.findall(r"@[A-Z_]+@", text)
            if left:
                fail("%s: %s not configured" % (page, ", ".join(left)))
            target = so_target(text)
            if target is not None:
                tname = os.path.basename(target)
                if tname not in texts:
                    fail("%s: .so %s: no such page" % (page, target))
                elif page.rsplit(".", 1)[0] not in name_line(texts[tname]):
                    fail("%s: %s does not list it in its NAME line"
                         % (page, tname))
            elif page.rsplit(".", 1)[0] not in name_line(text):
                fail("%s: its NAME line does not name it" % page)
            sect = "man" + page.rsplit(".", 1)[1]
            for msg in render(os.path.join(sect, page), cwd=tree):
                fail("%s: %s" % (page, msg))
            print("rendered %s" % page)

    documented = set()
    for page, text in texts.items():
        if page.endswith(".3"):
            documented.update(name_line(text))
        for name in name_line(text):
            if page.endswith(".3") and name + ".3" not in texts:
                fail("%s names %s, which has no page (add a .so page)"
                     % (page, name))
    for name in sorted(api_names(a.sources, a.lib) - documented):
        fail("%s is exported but no section 3 page names it" % name)

    upager7 = texts.get("upager.7")
    if upager7 is None:
        fail("no upager.7")
    else:
        check_environment(a.sources, upager7)
        check_statistics(a.sources, upager7)

    if failures:
        print("%d problem(s)" % len(failures))
        return 1
    print("%d pages render cleanly; API, options and statistics all "
          "documented" % len(texts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
