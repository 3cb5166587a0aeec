"""SIGKILL a standby mid-apply (inside a frame's transaction, or after its commit and
before its confirmation): started again, it resumes from its own last applied frame,
and its journal has no gap and no record twice, and every database equals the
primary's. The child reports the point it reached and waits there to be killed."""

from __future__ import annotations

import asyncio
import os
import queue
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from core import Engine, read_position
from server.rpc.constants import REPLICATION_CONNECT_TIMEOUT_S
from server.rpc.replication import Standby, status_of
from server.tools.cluster import bound_s
from server.tools.launch import ChildServer
from tests.common import ROOT
from tests.engine.test_replication import assert_same, dump_dir
from tests.rpc.test_replication_rpc import (
    CATCH_UP_TIMEOUT_S,
    TOKEN,
    _primary,
    _setup,
    _workload,
)

# Frames the child applies after its bootstrap before it stops.
FRAMES_BEFORE_KILL = 5
FOLLOW_AGAIN_MAX = 5


def _primary_status(primary: ChildServer) -> dict:
    return status_of(primary.target, TOKEN, bound_s(REPLICATION_CONNECT_TIMEOUT_S))


def _follow_to(standby: Standby, frame: int) -> None:
    """Follow until the standby has applied frame; then stop following."""
    done = threading.Event()
    standby.replica.add_listener(lambda f, _n: done.set() if f.number >= frame else None)
    if standby.replica.applied_frame >= frame:
        done.set()
    standby.start()
    assert done.wait(bound_s(CATCH_UP_TIMEOUT_S)), "the standby caught up"
    standby.stop()


def _line(proc: subprocess.Popen, prefix: str, log_path, *, fields: int = 1):
    """The child's next line starting with prefix: its first word after the prefix (or
    its first fields words, a list). A child that does not print it within
    bound_s(CATCH_UP_TIMEOUT_S) fails the test with the tail of its log, rather than hanging it."""
    lines: queue.Queue = queue.Queue()

    def read() -> None:
        for line in proc.stdout:
            lines.put(line)
            if line.startswith(prefix):
                return
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + bound_s(CATCH_UP_TIMEOUT_S)
    while (left := deadline - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=left)
        except queue.Empty:
            break
        if line is None:
            break
        if line.startswith(prefix):
            words = line.split()[1:1 + fields]
            return words[0] if fields == 1 else words
    with open(log_path, errors="replace") as f:
        tail = f.read()[-4000:]
    raise AssertionError(f"the child did not print {prefix!r}; its log ends:\n{tail}")


def _resume_and_compare(primary: ChildServer, data: str, frame: int) -> None:
    """Start the killed standby's store again: it resumes from its own frame, its journal
    has no gap and no record twice, every database equals the primary's, and what a
    recovery of its store builds is what it served."""
    _workload(primary.target, primary.token("pos"), primary.token("admin"), 10, 8)
    resumed = Standby(data, primary.target, token=TOKEN, start=False)
    assert resumed.replica.applied_frame == frame
    _follow_to(resumed, _primary_status(primary)["frame"])
    assert resumed.error is None
    journal = resumed.engine.journal(1, 10**7)
    seqs = journal["seq"].astype(np.int64)
    assert len(seqs) and seqs[0] == 1 and bool(np.all(np.diff(seqs) == 1)), "no gap, no twice"
    cards = {int(no): resumed.engine.card(int(no)) for no in np.unique(journal["card_no"]) if no}
    resumed.close()
    # Equal to the primary at the same frame (the primary is idle now; should its
    # rollups or a checkpoint commit meanwhile, follow once more and compare again).
    for _ in range(FOLLOW_AGAIN_MAX):
        mine, theirs = dump_dir(data), dump_dir(primary.data)
        now = _primary_status(primary)["frame"]
        if now == read_position(data)[0]:
            break
        again = Standby(data, primary.target, token=TOKEN, start=False)
        _follow_to(again, now)
        again.close()
    else:
        raise AssertionError("the primary kept committing")
    assert_same(theirs, mine)
    # And what recovery builds from the standby's store is what it served.
    eng = Engine(data)
    assert {no: eng.card(no) for no in cards} == cards
    for no, card in cards.items():
        mine = journal[journal["card_no"] == no]
        assert card["principal_fen"] == int(mine["principal_delta_fen"].sum())
    eng.close()


@pytest.mark.parametrize("stage", ["before", "after"])
def test_standby_killed_mid_apply_resumes_without_gap_or_duplicate(tmp_path, stage):
    primary: ChildServer = _primary(tmp_path, mode="async")
    data = str(tmp_path / "standby-data")
    child = None
    log_path = tmp_path / "child.log"
    child_log = open(log_path, "w")
    try:
        asyncio.run(_setup(primary.target, primary.token("admin"), primary.token("pos")))
        at = _primary_status(primary)["frame"]
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        child = subprocess.Popen(
            [sys.executable, str(ROOT / "tests" / "crash" / "replication_child.py"), data,
             primary.target, TOKEN, str(at + FRAMES_BEFORE_KILL), stage],
            stdout=subprocess.PIPE, stderr=child_log, text=True, env=env, cwd=str(ROOT))
        start = int(_line(child, "following", log_path))
        assert start >= at
        _workload(primary.target, primary.token("pos"), primary.token("admin"), 30, 7)
        paused = int(_line(child, "paused", log_path))
        assert paused == at + FRAMES_BEFORE_KILL
        child.kill()
        child.wait()
        frame, _epoch = read_position(data)
        # Its own last applied position: the killed frame is in it only when it committed.
        assert frame == (paused if stage == "after" else paused - 1)
        _resume_and_compare(primary, data, frame)
    finally:
        if child is not None:
            if child.poll() is None:
                child.kill()
                child.wait()
            child.stdout.close()
        child_log.close()
        assert primary.terminate() == 0


@pytest.mark.parametrize("stage", ["before", "after"])
def test_standby_killed_in_a_transaction_of_frames_received_apart_resumes_exactly(tmp_path, stage):
    """Frames that arrived one a message while the standby committed are written in one
    transaction and confirmed once: killed inside it, none of them is in the store;
    killed after its commit and before the confirmation, all of them are; either way it
    resumes from there without a gap or a record twice, equal to the primary."""
    primary: ChildServer = _primary(tmp_path, mode="async")
    data = str(tmp_path / "standby-data")
    child = None
    log_path = tmp_path / "child.log"
    child_log = open(log_path, "w")
    try:
        asyncio.run(_setup(primary.target, primary.token("admin"), primary.token("pos")))
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        child = subprocess.Popen(
            [sys.executable, str(ROOT / "tests" / "crash" / "replication_merge_child.py"), data,
             primary.target, TOKEN, stage],
            stdout=subprocess.PIPE, stderr=child_log, text=True, env=env, cwd=str(ROOT))
        start = int(_line(child, "following", log_path))
        _workload(primary.target, primary.token("pos"), primary.token("admin"), 30, 7)
        last, first = (int(w) for w in _line(child, "paused", log_path, fields=2))
        assert first > start and last > first, "one transaction of several frames"
        child.kill()
        child.wait()
        frame, _epoch = read_position(data)
        assert frame == (last if stage == "after" else first - 1)
        _resume_and_compare(primary, data, frame)
    finally:
        if child is not None:
            if child.poll() is None:
                child.kill()
                child.wait()
            child.stdout.close()
        child_log.close()
        assert primary.terminate() == 0
