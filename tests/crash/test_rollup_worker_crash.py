"""The rollup worker process (core.engine.rollup_worker) killed: SIGKILLed with a flush
computed and not yet sent, the tailer starts another that sums the same records again
(nothing was written), and the rollups equal a rebuild and the recomputation; and a
worker whose engine's process is SIGKILLed ends with it."""

from __future__ import annotations

import os
import pathlib
import select
import signal
import subprocess
import sys

from common import ROOT
from rollup_crash_child import write_workload
from rollup_reference import recompute, stored

from core import Engine, EngineConfig
from core.engine import rollup_worker, rollups

CHILD = pathlib.Path(__file__).resolve().parent / "rollup_worker_parent_child.py"
# The bound on a wait for another process (a wait, not a timing: it ends at the event).
WAIT_BOUND_S = 300
TZ = 8 * 3600


def test_sigkill_of_the_worker_mid_flush_is_summed_again_by_the_next(tmp_path):
    eng = Engine(str(tmp_path / "data"), config=EngineConfig(rollups=False))
    held_r, held_w = os.pipe()
    tailer = None
    try:
        last = write_workload(eng, 40)
        tailer = rollups.Rollups(eng.store, TZ, grow=eng.store.grow, worker=rollup_worker.start)
        tailer.worker_hold_fd = held_w      # the first worker stops before it sends
        tailer.start()
        tailer.poke()
        ready, _, _ = select.select([held_r], [], [], WAIT_BOUND_S)
        assert ready and os.read(held_r, 1) == b"H"
        killed = tailer.worker_pid
        assert killed is not None
        tailer.worker_hold_fd = None
        os.kill(killed, signal.SIGKILL)
        tailer.wait_for(last)
        assert tailer.seq == last
        assert tailer.worker_restarts == 1 and tailer.worker_pid not in (None, killed)
        with eng.store.read() as txn:
            assert rollups.covered_seq(eng.store, txn) == last
        assert stored(eng.store) == recompute(eng.store, TZ)
        caught_up = rollups.digest(eng.store)
        tailer.close()
        tailer = None
        again = rollups.Rollups(eng.store, TZ, grow=eng.store.grow)    # in this process
        again.rebuild()
        assert rollups.digest(eng.store) == caught_up
    finally:
        if tailer is not None:
            tailer.close()
        os.close(held_r)
        os.close(held_w)
        eng.close()


def test_the_worker_ends_when_its_engines_process_is_sigkilled(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT), str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, str(CHILD), str(tmp_path / "data")],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env, cwd=str(ROOT), text=True)
    pidfd = None
    try:
        line = proc.stdout.readline().split()
        assert line[:1] == ["worker"], (line, proc.stderr.read())
        worker = int(line[1])
        assert int(line[2]) > 0
        pidfd = os.pidfd_open(worker)
        with open(f"/proc/{worker}/cmdline", "rb") as f:
            assert b"core.engine.rollup_worker" in f.read()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        for f in (proc.stdin, proc.stdout, proc.stderr):
            f.close()
    try:
        ready, _, _ = select.select([pidfd], [], [], WAIT_BOUND_S)
        assert ready, f"rollup worker {worker} outlived its engine's process"
    finally:
        os.close(pidfd)
