"""SIGKILL inside a rollup write transaction (the rows put, the commit not done): the
rollups reopen at the last committed flush, catch up, and equal a rebuild byte for byte
and the independent recomputation."""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys

from common import ROOT  # noqa: E402
from rollup_reference import recompute, stored
from test_behaviour import reference as behaviour_reference
from test_behaviour import stored as behaviour_stored

from core import Engine
from core.engine import rollups

CHILD = pathlib.Path(__file__).resolve().parent / "rollup_crash_child.py"


def test_sigkill_mid_rollup_transaction_neither_half_applies_nor_double_counts(tmp_path):
    path = str(tmp_path / "data")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT), str(ROOT / "tests"), str(CHILD.parent), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, str(CHILD), path, "40"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, cwd=str(ROOT), text=True)
    try:
        flushed = proc.stdout.readline().split()
        assert flushed[0] == "flushed", (flushed, proc.stderr.read())
        reached = proc.stdout.readline().split()
        assert reached == ["in-rollup-txn", flushed[1]], (reached, proc.stderr.read())
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    eng = Engine(path)
    try:
        with eng.store.read() as txn:
            # The killed transaction left nothing: the rollups cover the first flush only.
            assert rollups.covered_seq(eng.store, txn) == int(flushed[1])
            last = eng.store.last_seq(txn)
        assert last > int(flushed[1])
        # The behaviour tables are those of the seq the rollups cover, exactly (read in
        # one transaction: the tailer may have moved on since the open).
        with eng.store.read() as txn:
            covered = rollups.covered_seq(eng.store, txn)
            got = behaviour_stored(eng.store, txn)
        assert got == list(behaviour_reference(eng.store, covered))
        eng.rollups.wait_for(last)
        assert stored(eng.store) == recompute(eng.store, eng.rollups.tz)
        assert behaviour_stored(eng.store) == list(behaviour_reference(eng.store))
        caught_up = rollups.digest(eng.store)
        eng.rollups.rebuild()
        assert rollups.digest(eng.store) == caught_up
    finally:
        eng.close()
