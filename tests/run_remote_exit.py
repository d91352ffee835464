#!/usr/bin/env python3
"""A program under upager-run with its cold pages on a memcached cluster
leaves nothing there when it exits: the preload library never destroys its
runtime, so its destructor deletes the keys (store_release_remote), in the
parent and in a child that exits normally.  Output identical to the plain
run's, pages really went to the cluster, and every server is empty after.

usage: run_remote_exit.py UPAGER_RUN"""
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

PROGRAM = r"""
import hashlib, os, sys
blocks = [(b"%08d" % i) * 512 for i in range(12000)]       # 48 MiB
h = hashlib.sha256()
for b in blocks:
    h.update(b)
pid = os.fork()
if pid == 0:                     # a child that exits normally
    blocks[7] = b"x" * 4096
    print("child", hashlib.sha256(b"".join(blocks[:2000])).hexdigest())
    sys.exit(0)
os.waitpid(pid, 0)
print("parent", h.hexdigest())
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def items(port):
    """curr_items of the server on port."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"stats\r\n")
        data = b""
        while not data.endswith(b"END\r\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    for line in data.decode().split("\r\n"):
        if line.startswith("STAT curr_items "):
            return int(line.split()[2])
    raise RuntimeError(f"no curr_items from port {port}")


def wait_up(port):
    for _ in range(100):
        try:
            items(port)
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"memcached on port {port} did not start")


def main():
    upager_run = sys.argv[1]
    memcached = shutil.which("memcached")
    if not memcached:
        print("SKIP: no memcached binary (Debian package memcached)")
        return 77
    ports = [free_port() for _ in range(3)]
    servers = [subprocess.Popen([memcached, "-u", "root", "-M", "-m", "64",
                                 "-l", "127.0.0.1", "-p", str(p)])
               for p in ports]
    try:
        for p in ports:
            wait_up(p)
        with tempfile.TemporaryDirectory() as tmp:
            stats = os.path.join(tmp, "stats.json")
            plain = subprocess.run([sys.executable, "-c", PROGRAM],
                                   capture_output=True, text=True,
                                   check=True).stdout
            env = dict(os.environ,
                       UPAGER_REMOTE=",".join(f"127.0.0.1:{p}"
                                              for p in ports))
            run = subprocess.run([upager_run, "-m", "12M", "--json",
                                  f"--stats={stats}", "--", sys.executable,
                                  "-c", PROGRAM], capture_output=True,
                                 text=True, env=env, timeout=240)
            if run.returncode != 0 or run.stdout != plain:
                print(f"FAIL: status {run.returncode}, output\n{run.stdout}"
                      f"expected\n{plain}stderr\n{run.stderr}")
                return 1
            with open(stats) as f:
                st = json.load(f)
            sets = st.get("remote_sets", 0)
            if sets < 1000:
                print(f"FAIL: only {sets} objects went to the cluster")
                return 1
        left = {p: items(p) for p in ports}
        if any(left.values()):
            print(f"FAIL: keys left on the servers after exit: {left} "
                  f"({sets} set by the parent)")
            return 1
        print(f"ok: {sets} objects on the cluster, none left after exit")
        return 0
    finally:
        for s in servers:
            s.kill()
            s.wait()


if __name__ == "__main__":
    sys.exit(main())
