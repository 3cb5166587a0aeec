"""A defect the session-10 review (hrev3) found in core/engine/rollup_worker.py (hun's
file this session); the test fails until it is fixed (the hrev3 report).

WorkerProcess.flush waits for the worker's answer with no bound (rollup_worker.receive:
os.readv on the pipe), so a worker that stops answering without dying (SIGSTOP, a
deadlock, a swap storm) holds the tailer's thread for good: the rollups stop moving with
rollups_failing still 0, and Engine.close() (which joins that thread) never returns. The
bound asked for: the worker is taken for dead after a bound (killed, WorkerDied, started
again), so close() returns."""

from __future__ import annotations

import contextlib
import os
import signal
import threading

import pytest
from common import patience_s
from harness import tagged_op
from test_rollups import Clock, assert_rollups_match, open_engine, setup_cards

from core.records import Result
from server.tools.cluster import wait_for


@pytest.mark.slow  # a failure waits out its bound (minutes under load)
def test_close_returns_while_the_rollup_worker_is_stopped(tmp_path, monkeypatch):
    monkeypatch.setenv("MMS_ROLLUPS_WORKER", "1")
    eng = open_engine(str(tmp_path / "d"), Clock())
    setup_cards(eng)
    assert_rollups_match(eng)
    pid = eng.rollups.worker_pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    closer = None
    try:
        # A record for the tailer to flush: its FLUSH goes to the stopped worker.
        assert eng.submit(*tagged_op("stopped", 1, 100)).result().codes[0] == Result.OK
        wait_for(lambda: eng.rollups._lock.locked(), 30, "the tailer's flush to begin")
        closer = threading.Thread(target=eng.close, daemon=True)
        closer.start()
        closer.join(patience_s(60))
        assert not closer.is_alive(), "Engine.close() waits for good on a stopped worker"
    finally:
        with contextlib.suppress(ProcessLookupError):   # killed and reaped by the tailer
            os.kill(pid, signal.SIGKILL)        # unsticks the tailer either way
        if closer is not None:
            closer.join(patience_s(60))
        else:
            eng.close()
