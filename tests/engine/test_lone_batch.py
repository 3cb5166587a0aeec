"""A batch alone in the writer (nothing in the pipeline, nothing queued behind it) is
committed, made durable and answered by the applier itself (Engine._commit_alone): the
committer and the publisher are not woken for it. It is answered only after its commit
and an fsync that covers its meta page; a burst still goes down the pipeline; a failed
fsync fails the batch and the writer goes on from the durable state."""

import os
import threading

import numpy as np
from engine_ops import ops_for

from core import Engine, EngineConfig
from core.records import OpType, Result


class _Env:
    """The store's environment, recording per write commit its thread and per fsync the
    commits it covers; `durable` is the number of commits an fsync has covered."""

    def __init__(self, env) -> None:
        self._env = env
        self.lock = threading.Lock()
        self.commits: list[str] = []      # the committing thread's name, in order
        self.durable = 0
        self.fail_sync = 0                # fsyncs to fail from now on

    def __getattr__(self, attr):
        return getattr(self._env, attr)

    def begin(self, *a, write=False, **kw):
        txn = self._env.begin(*a, write=write, **kw)
        return _Txn(txn, self) if write else txn

    def sync(self, force=False):
        with self.lock:
            upto = len(self.commits)
            if self.fail_sync:
                self.fail_sync -= 1
                raise OSError(5, "fsync failed (test)")
        self._env.sync(force)
        with self.lock:
            self.durable = max(self.durable, upto)


class _Txn:
    def __init__(self, txn, env: _Env) -> None:
        self._txn, self._env = txn, env

    def __getattr__(self, attr):
        return getattr(self._txn, attr)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            self._txn.abort()
            return
        self._txn.commit()
        with self._env.lock:
            self._env.commits.append(threading.current_thread().name)


def _ops(cards, ns: int, start: int = 0, op_type=OpType.SWIPE, amount: int = 100) -> np.ndarray:
    return ops_for(cards, amount, op_type, ns, start)


def _engine(tmp_path) -> tuple[Engine, _Env]:
    eng = Engine(str(tmp_path), config=EngineConfig(batch_ops_max=64, rollups=False))
    assert eng.store.lazy_meta
    cards = np.arange(1, 65, dtype=np.uint64)
    eng.issue_cards(cards, os.urandom(16)).result()
    eng.submit(_ops(cards, 1, op_type=OpType.RECHARGE, amount=10_000_000)).result()
    env = _Env(eng.store.env)
    eng.store.env = env
    return eng, env


def test_a_lone_batch_is_committed_made_durable_and_answered_by_the_applier(tmp_path):
    eng, env = _engine(tmp_path)
    seen = []

    def answered(fut):
        # On the thread that resolves it: its commit must be covered by an fsync by now.
        with env.lock:
            seen.append((threading.current_thread().name, len(env.commits), env.durable))

    try:
        for k in range(20):
            fut = eng.submit(_ops(np.array([1 + k % 64], np.uint64), 10 + k))
            fut.add_done_callback(answered)
            res = fut.result()
            assert res.codes.tolist() == [Result.OK]
    finally:
        eng.close()
    assert len(seen) == 20
    for thread, commits, durable in seen:
        assert thread == "mms-applier"
        assert durable == commits       # nothing answered before an fsync covered it
    # Each lone batch: one commit, on the applier; the committer never ran one.
    assert env.commits[:20] == ["mms-applier"] * 20


def test_a_burst_still_goes_down_the_pipeline(tmp_path):
    """Submissions queued behind one another are not alone: the committer commits them
    while the applier applies the next (durability under bursts:
    test_commit_durability.py)."""
    eng, env = _engine(tmp_path)
    try:
        cards = np.arange(1, 65, dtype=np.uint64)
        futs = [eng.submit(_ops(cards, 100, k * 64)) for k in range(48)]
        for f in futs:
            assert (f.result().codes == Result.OK).all()
    finally:
        eng.close()
    assert "mms-committer" in env.commits


def test_a_failed_fsync_fails_the_lone_batch_and_the_writer_goes_on(tmp_path):
    eng, env = _engine(tmp_path)
    try:
        env.fail_sync = 1
        fut = eng.submit(_ops(np.array([3], np.uint64), 50))
        exc = fut.exception(timeout=30)
        assert isinstance(exc, OSError) and "fsync failed" in str(exc)
        # The writer reloads the durable state and takes the next op; the same client id
        # again is answered from what is durable (committed, its fsync failed: replayed
        # or applied, never applied twice).
        again = eng.submit(_ops(np.array([3], np.uint64), 50)).result()
        assert again.codes.tolist() == [Result.OK]
        after = eng.submit(_ops(np.array([4], np.uint64), 51)).result()
        assert after.codes.tolist() == [Result.OK]
        debits = [r for r in eng.card_journal(3) if int(r["op_type"]) == OpType.SWIPE]
        assert len(debits) == 1
    finally:
        eng.close()


def test_ops_that_come_during_a_lone_commit_send_the_next_batches_down_the_pipeline(tmp_path):
    """A submission made while the applier commits a batch alone (a stream's next batch)
    is not committed alone after it: it goes to the committer, which overlaps such
    batches and serves them one fsync each; once the committer finds nothing behind a
    commit, a lone batch is the applier's again."""
    eng, env = _engine(tmp_path)
    later = []
    orig = _Txn.__exit__

    def exit_and_submit(self, exc_type, exc, tb):
        out = orig(self, exc_type, exc, tb)
        if not later:   # during the first commit: another submission arrives
            later.append(eng.submit(_ops(np.array([9], np.uint64), 201)))
        return out

    try:
        _Txn.__exit__ = exit_and_submit
        first = eng.submit(_ops(np.array([8], np.uint64), 200))
        assert first.result().codes.tolist() == [Result.OK]
        assert later[0].result().codes.tolist() == [Result.OK]
        _Txn.__exit__ = orig
        # Lone submissions again: the committer found nothing behind its commit, so they
        # are the applier's (the first at once, unless the committer looked in the few
        # us between the applier's put and its next take: then the one after).
        for k in range(3):
            res = eng.submit(_ops(np.array([10 + k], np.uint64), 202 + k)).result()
            assert res.codes.tolist() == [Result.OK]
    finally:
        _Txn.__exit__ = orig
        eng.close()
    assert env.commits[:2] == ["mms-applier", "mms-committer"]
    assert "mms-applier" in env.commits[2:5]
    assert env.commits[4] == "mms-applier"
