"""A timeline of what the engine's threads did during a bench phase, and which of it the
slowest swipe submissions waited through (bench/bench_plans.py --timeline).

Wraps, on one engine instance only (bench code, never the server): the hot group commit
(`_commit`, with the checkpoint round's chunks written inside it), the cold ops
(`_run_cold`: a plan's start, the steps of its freeze and its chunks, with their build
and commit), a standalone
checkpoint round (`_advance_round`), the lazy-meta fsync (`store.flush`), the pipeline
drain before a cold op (`_drain`) and the rollup tailer's flush (`_flush_once`) and its
write transaction (`_write`). Each event is (kind, start, end) in perf_counter seconds.

Also every LMDB write commit (the transaction's exit, its data fsync included) as
`txn_commit_<thread>`, every `store.flush` as `fsync_meta_<thread>` besides
`fsync_meta`, an fsync the committer runs for a commit nothing followed
(`_made_durable`) as `own_fsync_chunk` (a handed-over plan chunk, writer._hand_over)
or `own_fsync_hot`, and `chunk_fsync` for every fsync a plan chunk pays itself: its
commit (in the applier) and its meta fsync (in the applier before the hand-over, in
the committer's `own_fsync_chunk` after it); `join_hot` / `join_hot_none` for each
chunk that had a swipe batch joined to its commit or not (writer._join_hot).
"""

from __future__ import annotations

import threading
import time

import numpy as np


class Timeline:
    def __init__(self, eng) -> None:
        self.events: list[tuple[str, float, float]] = []
        self._lock = threading.Lock()
        self._eng = eng
        self._saved: list[tuple[object, str]] = []
        self._wrap(eng, "_commit", self._hot_kind)
        self._wrap(eng, "_run_cold", self._cold_kind)
        self._wrap(eng, "_advance_round", lambda *a, **k: "round_standalone")
        self._wrap(eng, "_drain", lambda *a, **k: "drain")
        self._wrap(eng.store, "flush", lambda *a, **k: "fsync_meta")
        self._wrap(eng, "_round_writes", lambda *a, **k: "round_writes")
        self._wrap(eng.store, "write_checkpoint_mark", lambda *a, **k: "checkpoint_mark")
        self._wrap(eng.store, "put_journal", lambda *a, **k: "put_journal")
        self._wrap(eng.store, "write_chunk", lambda txn, db, *a, **k: f"write_chunk_{db}")
        if hasattr(eng, "_join_hot"):
            self._wrap_join(eng)
        if hasattr(eng, "_made_durable"):
            self._wrap(eng, "_made_durable", self._own_kind, also=self._own_chunk)
        self._env = eng.store.env
        eng.store.env = _TimedEnv(self._env, self._add)
        if getattr(eng, "rollups", None) is not None:
            self._wrap(eng.rollups, "_flush_once", lambda *a, **k: "rollup_flush")
            self._wrap(eng.rollups, "_write", lambda *a, **k: "rollup_write_txn")

    @staticmethod
    def _hot_kind(recs, extra=None, **_kw) -> str:
        return "hot_commit+round" if extra is not None else "hot_commit"

    @staticmethod
    def _own_kind(done) -> str:
        return "own_fsync_chunk" if getattr(done[0], "cold", None) is not None else "own_fsync_hot"

    @staticmethod
    def _own_chunk(done) -> str | None:
        return "chunk_fsync" if getattr(done[0], "cold", None) is not None else None

    def _add(self, kind: str, t0: float, t1: float) -> None:
        with self._lock:
            self.events.append((kind, t0, t1))
            if kind == "txn_commit_mms-applier":
                # The applier commits only for cold ops (a plan's chunks during a run;
                # its start once) and standalone checkpoint rounds.
                self.events.append(("chunk_fsync", t0, t1))

    @staticmethod
    def _cold_kind(item) -> str:
        from core.domain.plans import CampaignOp
        if item.op_type == CampaignOp.PLAN_RUN_CHUNK:
            return "plan_chunk"
        if item.op_type == CampaignOp.PLAN_RUN_START:
            return "plan_start"
        if item.op_type == getattr(CampaignOp, "PLAN_RUN_FREEZE", -1):
            return "plan_freeze"        # a bounded step of the start (plans._freeze)
        return "cold_other"

    def _wrap_join(self, eng) -> None:
        """writer._join_hot: join_hot (a batch joined to a chunk's commit) or
        join_hot_none (none was queued), so the count of each shows how often."""
        inner, events, lock = eng._join_hot, self.events, self._lock

        def wrapped(*a, **k):
            t0 = time.perf_counter()
            joined = inner(*a, **k)
            with lock:
                events.append(("join_hot" if joined is not None else "join_hot_none", t0,
                               time.perf_counter()))
            return joined

        eng._join_hot = wrapped
        self._saved.append((eng, "_join_hot"))

    def _wrap(self, obj, name: str, kind, also=None) -> None:
        inner = getattr(obj, name)
        events, lock = self.events, self._lock

        def wrapped(*a, **k):
            t0 = time.perf_counter()
            try:
                return inner(*a, **k)
            finally:
                t1 = time.perf_counter()
                more = also(*a, **k) if also is not None else None
                with lock:
                    events.append((kind(*a, **k), t0, t1))
                    if name == "flush" and obj is self._eng.store:
                        thread = threading.current_thread().name
                        events.append((f"fsync_meta_{thread}", t0, t1))
                        if thread == "mms-applier":
                            events.append(("chunk_fsync", t0, t1))
                    if more is not None:
                        events.append((more, t0, t1))

        setattr(obj, name, wrapped)
        self._saved.append((obj, name))

    def close(self) -> None:
        self._eng.store.env = self._env
        for obj, name in self._saved:
            try:
                delattr(obj, name)
            except AttributeError:
                pass

    def dump(self, path: str, t_from: float, swipes: list[tuple[float, float]]) -> None:
        """Every event and submission, in ms from t_from, as JSON lines."""
        import json
        with open(path, "w") as f:
            for kind, s, e in sorted(self.events, key=lambda x: x[1]):
                f.write(json.dumps([kind, round((s - t_from) * 1000, 3), round((e - s) * 1000, 3)]) + "\n")
            for s, e in swipes:
                f.write(json.dumps(["swipe", round((s - t_from) * 1000, 3), round((e - s) * 1000, 3)]) + "\n")

    def blame(self, swipes: list[tuple[float, float]], t_from: float, t_to: float,
              q: float = 0.99) -> dict:
        """For the submissions at or above the q quantile of latency: the share of their
        wait that each kind of event overlapped (a swipe can overlap several), and for
        every kind its count, p50/p99/max duration and total seconds in [t_from, t_to]."""
        ev = [e for e in self.events if e[2] >= t_from and e[1] <= t_to]
        out: dict = {"kinds": {}}
        for kind in sorted({e[0] for e in ev}):
            d = np.array([e[2] - e[1] for e in ev if e[0] == kind]) * 1000
            out["kinds"][kind] = {"n": len(d), "p50_ms": round(float(np.quantile(d, 0.5)), 2),
                                  "p99_ms": round(float(np.quantile(d, 0.99)), 2),
                                  "max_ms": round(float(d.max()), 2),
                                  "total_s": round(float(d.sum()) / 1000, 3)}
        if not swipes:
            return out
        lat = np.array([b - a for a, b in swipes])
        cut = float(np.quantile(lat, q))
        slow = [s for s in swipes if s[1] - s[0] >= cut]
        share: dict[str, float] = {}
        for a, b in slow:
            for kind, s, e in ev:
                ov = min(b, e) - max(a, s)
                if ov > 0:
                    share[kind] = share.get(kind, 0.0) + ov / (b - a)
        out["slow_cut_ms"] = round(cut * 1000, 2)
        out["slow_n"] = len(slow)
        out["slow_overlap_share"] = {k: round(v / len(slow), 3) for k, v in
                                     sorted(share.items(), key=lambda kv: -kv[1])}
        # The slowest five, each with what it overlapped (ms of overlap by kind).
        worst = []
        for a, b in sorted(slow, key=lambda s: s[0] - s[1])[:5]:
            ov: dict[str, float] = {}
            for kind, s, e in ev:
                o = min(b, e) - max(a, s)
                if o > 0:
                    ov[kind] = ov.get(kind, 0.0) + o * 1000
            worst.append({"at_s": round(a - t_from, 3), "ms": round((b - a) * 1000, 1),
                          "overlap_ms": {k: round(v, 1) for k, v in sorted(ov.items(), key=lambda kv: -kv[1])}})
        out["slowest"] = worst
        return out


class _TimedEnv:
    """The store's LMDB environment with each write transaction's commit (its exit)
    timed as txn_commit_<thread>; the transaction itself is LMDB's own (open_db and
    the cursors need the real type)."""

    def __init__(self, env, add) -> None:
        self._env, self._add = env, add

    def __getattr__(self, attr):
        return getattr(self._env, attr)

    def begin(self, *a, write: bool = False, **kw):
        txn = self._env.begin(*a, write=write, **kw)
        return _TimedTxn(txn, self._add) if write else txn


class _TimedTxn:
    def __init__(self, txn, add) -> None:
        self._txn, self._add = txn, add

    def __getattr__(self, attr):
        return getattr(self._txn, attr)

    def __enter__(self):
        return self._txn.__enter__()

    def __exit__(self, *exc):
        t0 = time.perf_counter()
        try:
            return self._txn.__exit__(*exc)
        finally:
            self._add(f"txn_commit_{threading.current_thread().name}", t0, time.perf_counter())
