#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""upager-run refuses UPAGER_RESOLVE=thread (kernel accesses to pages not
in memory would fail with EFAULT in a program that does not know it is
managed): exit 125 naming the variable, and the program never runs;
--check says "no" for it.
A bad value is named too; UPAGER_RESOLVE=handler runs the program."""
import os
import subprocess
import sys
import tempfile

# upager-run's own failures exit 125, as env(1) does.
USAGE = (125,)


def run(upager_run, value, marker):
    env = dict(os.environ, UPAGER_RESOLVE=value, UPAGER_MEM_LIMIT='16M')
    return subprocess.run(
        [upager_run, 'sh', '-c', 'touch "$0"; exit 7', marker],
        env=env, capture_output=True, text=True, timeout=120)


def main():
    upager_run = sys.argv[1]
    with tempfile.TemporaryDirectory() as d:
        marker = os.path.join(d, 'ran')
        p = run(upager_run, 'thread', marker)
        assert p.returncode in USAGE, (p.returncode, p.stderr)
        assert 'UPAGER_RESOLVE=thread' in p.stderr, p.stderr
        assert 'EFAULT' in p.stderr, p.stderr
        assert not os.path.exists(marker), 'the program ran'

        p = run(upager_run, 'sideways', marker)
        assert p.returncode in USAGE, (p.returncode, p.stderr)
        assert "UPAGER_RESOLVE='sideways'" in p.stderr, p.stderr
        assert 'handler or thread' in p.stderr, p.stderr
        assert not os.path.exists(marker), 'the program ran'

        # --check says so too, as a "no" finding.
        env = dict(os.environ, UPAGER_RESOLVE='thread')
        p = subprocess.run([upager_run, '--check'], env=env,
                           capture_output=True, text=True, timeout=120)
        assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
        assert any(l.startswith('no ') and 'UPAGER_RESOLVE=thread' in l
                   for l in p.stdout.splitlines()), p.stdout

        p = run(upager_run, 'handler', marker)
        assert p.returncode == 7, (p.returncode, p.stderr)
        assert os.path.exists(marker), 'the program did not run'
    print('upager-run refuses UPAGER_RESOLVE=thread')


if __name__ == '__main__':
    main()
