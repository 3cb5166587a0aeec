"""tests/common.py's bounds on a child's events: patience_s grows with the load, and a
child still running past wait_exit's bound prints its threads' stacks and ends."""

import os
import signal
import subprocess
import sys

from common import FAULTHANDLER_ENV, patience_s, wait_exit


def test_patience_is_the_bound_on_a_spare_core_and_grows_with_the_load(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setattr(os, "getloadavg", lambda: (1.0, 0.0, 0.0))
    assert patience_s(60) == 60
    monkeypatch.setattr(os, "getloadavg", lambda: (9.0, 0.0, 0.0))
    assert patience_s(60) == 270


def test_a_child_past_its_bound_prints_its_stacks():
    proc = subprocess.Popen([sys.executable, "-c", "import time\ndef stuck():\n"
                             "    time.sleep(600)\nprint('ready', flush=True)\nstuck()"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **FAULTHANDLER_ENV})
    assert proc.stdout.readline() == "ready\n"     # it reached the point it hangs at
    assert wait_exit(proc, 0.01) == -signal.SIGABRT
    err = proc.stderr.read()
    proc.stdout.close()
    proc.stderr.close()
    assert "Fatal Python error: Aborted" in err and "in stuck" in err, err


def test_a_child_that_ends_gives_its_code():
    proc = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    assert wait_exit(proc, 60) == 3
