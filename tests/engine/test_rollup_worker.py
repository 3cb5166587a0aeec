"""The rollup worker process (core.engine.rollup_worker): flushes computed there are
the bytes of flushes computed in the tailer's thread, its messages round-trip, a map
grown by the engine is re-adopted, and a rebuild restarts it on fresh maps."""

from __future__ import annotations

import os

import numpy as np
import pytest
from harness import tagged_op
from test_rollups import Clock, assert_rollups_match, open_engine, run_workload, setup_cards

from core import Engine, EngineConfig
from core.engine import rollup_worker, rollups
from core.records import Result

MAP_BYTES = 1 << 21
# A fixed workload of every kind of record (test_rollups' actions), with a restart.
ACTIONS = [
    ("swipe", 1, 3_000, 1, 0, True, False, 0, False), ("recharge", 2, 20_000, 2),
    ("coupon", 3), ("swipe", 3, 900, 2, 1, False, True, 1, True), ("refund", 0, 500),
    ("use", 2, 1), ("replace", 4), ("time", 86_400), ("swipe", 5, 700, 3, 2, True, False, 0, False),
    ("restart",), ("swipe", 2, 1_200, 1, 3, True, False, 2, False), ("refund", 1, 100),
    ("swipe", 7, 100, 1, 0, False, False, 0, False), ("time", 3_600), ("use", 1, 2),
]


def workload_digest(path: str, monkeypatch, worker: bool) -> tuple[str, set[int]]:
    monkeypatch.setenv("MMS_ROLLUPS_WORKER", "1" if worker else "0")
    eng, _ = run_workload(path, ACTIONS)
    try:
        assert_rollups_match(eng)
        pids = {eng.rollups.worker_pid} - {None}
        return rollups.digest(eng.store), pids
    finally:
        eng.close()


def test_flushes_by_the_worker_are_the_bytes_of_flushes_in_process(tmp_path, monkeypatch):
    by_worker, pids = workload_digest(str(tmp_path / "w"), monkeypatch, True)
    in_process, none = workload_digest(str(tmp_path / "p"), monkeypatch, False)
    assert pids and not none                    # the first really had a worker
    assert by_worker == in_process
    # ... and both are a rebuild's bytes (in this process, from seq 0).
    monkeypatch.setenv("MMS_ROLLUPS_WORKER", "0")
    eng = open_engine(str(tmp_path / "w"), Clock())
    try:
        eng.rollups.rebuild()
        assert rollups.digest(eng.store) == by_worker
    finally:
        eng.close()


def test_a_result_message_round_trips():
    cards = np.array([7, 2**63 + 5], np.uint64)
    stores = np.array([3, 2**32 - 1], np.uint32)
    puts = {rollups.SALES_DB: [(b"\0\1", b"abc"), (b"\0\2", memoryview(b"de"))],
            rollups.SKU_DB: [], rollups.CARDS_DB: [(b"k" * 8, b"")]}
    parts = rollup_worker.encode_result(puts, [(cards[:1], stores[:1]), (cards[1:], stores[1:])],
                                        upto=41, n=9, compute_s=0.5, compute_cpu_s=0.25)
    r, w = os.pipe()
    try:
        rollup_worker.send(w, rollup_worker.RESULT, *parts)
        kind, body = rollup_worker.receive(r)
        os.close(w)
        w = -1
        assert rollup_worker.receive(r) is None           # the pipe's end
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)
    assert kind == rollup_worker.RESULT
    got = rollup_worker.decode_result(body)
    assert (got.upto, got.n, got.compute_s, got.compute_cpu_s) == (41, 9, 0.5, 0.25)
    assert {t: [(bytes(k), bytes(v)) for k, v in p] for t, p in got.puts.items()} == {
        rollups.SALES_DB: [(b"\0\1", b"abc"), (b"\0\2", b"de")], rollups.CARDS_DB: [(b"k" * 8, b"")]}
    (gc, gs), = got.new_cards
    assert gc.tolist() == cards.tolist() and gs.tolist() == stores.tolist()


def test_a_message_over_the_bound_is_refused(monkeypatch):
    monkeypatch.setattr(rollups, "ROLLUP_WORKER_MESSAGE_BYTES_MAX", 10)
    r, w = os.pipe()
    try:
        try:
            rollup_worker.send(w, rollup_worker.RESULT, b"x" * 11)
        except ValueError as exc:
            assert "over the bound" in str(exc)
        else:
            raise AssertionError("an 11-byte message went out under a 10-byte bound")
    finally:
        os.close(r)
        os.close(w)


def test_the_worker_follows_a_grown_map_and_a_rebuild(tmp_path, monkeypatch):
    monkeypatch.setenv("MMS_ROLLUPS_WORKER", "1")
    eng = open_engine(str(tmp_path / "d"), Clock(), map_size_bytes=MAP_BYTES)
    try:
        setup_cards(eng)
        assert_rollups_match(eng)
        first = eng.rollups.worker_pid
        assert first is not None
        # Swipes with line items until the engine has grown the map (MDB_MAP_FULL) past
        # the size the worker opened it at, the rollups current after each step.
        k = 0
        while eng.store.env.info()["map_size"] == MAP_BYTES:
            assert k < 100_000, "the map never grew"
            futures = [eng.submit(*tagged_op(f"g{k + j}", 1 + j % 4, 1, store=1, operator=1,
                                             items=[(9 + j % 50, 1, 1, 1)]))
                       for j in range(500)]
            assert {f.result().codes[0] for f in futures} == {Result.OK}
            k += len(futures)
            assert_rollups_match(eng)
        assert_rollups_match(eng)
        assert eng.rollups.worker_pid == first and eng.rollups.error is None
        before = rollups.digest(eng.store)
        eng.rollups.rebuild()                   # a fresh worker, on the rows rebuilt
        assert rollups.digest(eng.store) == before
        assert eng.rollups.worker_starts == 2 and eng.rollups.worker_restarts == 0
        assert eng.rollups.worker_pid not in (None, first)
    finally:
        eng.close()


def test_the_worker_runs_at_the_configured_niceness_above_the_engine(tmp_path, monkeypatch):
    """EngineConfig.rollups_worker_nice: the worker's niceness is the engine process's
    plus it (os.nice, capped at 19 by the kernel); 0 leaves it at the engine's."""
    monkeypatch.setenv("MMS_ROLLUPS_WORKER", "1")
    base = os.getpriority(os.PRIO_PROCESS, 0)
    for i, nice in enumerate((3, 0)):
        eng = open_engine(str(tmp_path / f"d{i}"), Clock(), rollups_worker_nice=nice)
        try:
            setup_cards(eng)
            assert_rollups_match(eng)       # the worker has computed a flush
            pid = eng.rollups.worker_pid
            assert pid is not None and pid != os.getpid()
            assert os.getpriority(os.PRIO_PROCESS, pid) == min(19, base + nice)
        finally:
            eng.close()


def test_a_niceness_outside_0_to_19_is_refused(tmp_path):
    assert EngineConfig().rollups_worker_nice == 10
    for bad in (-1, 20):
        with pytest.raises(ValueError, match="rollups_worker_nice"):
            Engine(str(tmp_path / f"d{bad}"), config=EngineConfig(rollups_worker_nice=bad))
    assert not os.path.exists(tmp_path / "d20" / "data.mdb")
