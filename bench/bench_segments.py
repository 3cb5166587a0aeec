"""Benchmarks of segments, rule tags and RFM classes (core/domain/segments.py); figures,
no asserts.

    python3 bench/bench_segments.py --members 1000000 --repeat 5

On synthetic columns of --members members (profile index, cards, behaviour with about
--visit-days per-day rows a member over the last year), p50 of --repeat runs each:

1. rfm_tags: RFM classes (quantile thresholds) plus three rule tags (spent >= X in 90
   days, no visit for 60 days, birthday this month) for every member, the per-day
   windows recomputed each run (the columns are rebuilt when the tailer's seq moves).
2. count5: a five-condition segment count (gender, age band, level, spend in 90 days,
   days since the last visit), the windows and the card columns recomputed each run
   (a record was published and the tailer moved); count5_warm with both cached;
   count5_after_commit after a commit of 200 swipes (card columns patched,
   CardCols.refreshed; behaviour reused as a server read does for SEGMENT_READ_STALE_S).
3. load: the behaviour columns read from LMDB (the tailer's tables written with the
   same synthetic rows), what a moved seq costs once.
The ceiling is one pass of numpy over the same rows (a count_nonzero of five compares
of int64 columns already in memory): the ratios say how far each is from it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time

import numpy as np

from core import Engine, EngineConfig
from core.domain import segments as seg
from core.engine import behaviour as beh
from core.records import CARD
from core.rules import RulesConfig


class SyntheticSegments(seg.Segments):
    """Segments over columns made in memory (no engine reads on the count path)."""

    def __init__(self, n: int, visit_days: int, rng: np.random.Generator, today: int) -> None:
        self.n, self._today = n, today
        self.members = None
        self.snap = {"n": n, "status": np.ones(n, np.uint8),
                     "store": rng.integers(1, 200, n).astype(np.uint32),
                     "birthday": (rng.integers(1950, 2005, n) * 10_000 + rng.integers(1, 13, n) * 100
                                  + rng.integers(1, 29, n)).astype(np.int32),
                     "tags": np.zeros((n, 1), np.uint64), "tag_bit": {}}
        self.prof = seg.ProfileCols(1, np.where(rng.random(n) < 0.5, b"M", b"F").astype("S1"),
                                    np.full(n, "store", object), np.full(n, today - 400, np.int64), {})
        m = n * visit_days
        self.day_row = rng.integers(0, n, m).astype(np.int64)
        self.day_day = today - rng.integers(0, seg.WINDOW_DAYS_MAX, m).astype(np.int64)
        v = np.zeros((m, len(beh.DAY_COLS)), np.int64)
        v[:, 0] = 1
        v[:, 1] = 1
        v[:, 2] = rng.integers(100, 50_000, m)
        self.day_v = v
        tot = np.zeros((n, len(beh.TOTAL_COLS)), np.int64)
        last = np.full(n, -1, np.int64)
        np.maximum.at(last, self.day_row, self.day_day)
        first = np.full(n, 1 << 40, np.int64)
        np.minimum.at(first, self.day_row, self.day_day)
        seen = last >= 0
        tot[:, 0] = np.where(seen, first + 1, 0)
        tot[:, 1] = np.where(seen, last + 1, 0)
        np.add.at(tot[:, 2], self.day_row, 1)
        tot[:, 3] = tot[:, 2]
        np.add.at(tot[:, 4], self.day_row, v[:, 2])
        self.totals = tot
        cards = np.zeros(n, CARD)
        cards["member_id"] = np.arange(1, n + 1)
        cards["level"] = rng.integers(0, 4, n)
        cards["principal_fen"] = rng.integers(0, 100_000, n)
        self.card_table = cards
        self.seq, self._rng = 1, rng
        self.cfg = dict(seg.DEFAULT_RFM)
        self.beh_cols = None
        self.card_cols = None

    def fresh(self) -> None:
        """New behaviour and card columns, as after the tailer moved and a record was
        published (the sort of the day rows by member is load(), not timed here)."""
        self.card_cols = None
        self.beh_cols = seg.BehaviourCols(1, self._today, self.n, self.totals, self.day_row,
                                          self.day_day, self.day_v, np.full(self.n, -1, np.int64),
                                          np.full(self.n, -1, np.int64), {})

    def today(self) -> int:
        return self._today

    def _index(self):
        return self.snap

    def _n(self, snap):
        return self.n

    def behaviour(self, n, today, stale_s=0.0):
        return self.beh_cols

    def _profile(self):
        return self.prof

    def _cards(self, n):
        if self.card_cols is None:       # rebuilt after each fresh(), as after a publish
            self.card_cols = seg.CardCols(self.card_table, n, self.seq)
        elif self.card_cols.seq != self.seq:   # a commit since: patched (Segments._cards)
            self.card_cols = self.card_cols.refreshed(self.card_table, n, self.seq)
        return self.card_cols

    def commit(self, k: int = 200) -> None:
        """A commit of k swipes on k cards (balances and visits move, the odd level),
        published as the next seq; the behaviour columns stay (a server read reuses them
        for SEGMENT_READ_STALE_S)."""
        self.seq += 1
        rows = self._rng.choice(self.n, k, replace=False)
        self.card_table["principal_fen"][rows] -= 1
        self.card_table["level"][rows[:2]] = 3
        self.card_table["last_seq"][rows] = self.seq

    def rfm_config(self):
        return self.cfg

    def rule_tag_members(self, name):
        return np.zeros(0, np.uint64)


FIVE = {"all": [{"field": "gender", "op": "eq", "value": "F"},
                {"field": "age", "op": "between", "value": [25, 45]},
                {"field": "level", "op": "gte", "value": 1},
                {"field": "spend_90d", "op": "gte", "value": 20_000},
                {"field": "days_since_visit", "op": "lt", "value": 60}]}
RULES = [{"field": "spend_90d", "op": "gte", "value": 500_000},
         {"field": "days_since_visit", "op": "gte", "value": 60},
         {"field": "birthday_month", "op": "eq", "value": "current"}]


def _p50(fn, repeat: int, before=None) -> float:
    times = []
    for _ in range(repeat):
        if before is not None:
            before()
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _load_from_lmdb(s: SyntheticSegments, repeat: int, base: str) -> float:
    eng = Engine(os.path.join(base, "data"), config=EngineConfig(rollups=True), rules=RulesConfig())
    try:
        store = eng.store
        ids = np.arange(1, s.n + 1, dtype=np.uint64)
        order = np.lexsort((s.day_row, s.day_day))
        dd, dr, dv = s.day_day[order], s.day_row[order], s.day_v[order]
        bk = (dr + 1) >> beh.DAY_BUCKET_SHIFT
        with store.env.begin(write=True) as txn:
            txn.cursor(db=store.db[beh.MEMBERS_DB]).putmulti(beh.totals_puts(ids, s.totals),
                                                             append=True)
            cuts = np.flatnonzero((np.diff(dd) != 0) | (np.diff(bk) != 0)) + 1
            for a, b in zip(np.concatenate(([0], cuts)).tolist(), np.concatenate((cuts, [len(dd)])).tolist(),
                            strict=True):
                rows = np.zeros(b - a, beh.DAY_ROW)
                rows["member"], rows["v"] = dr[a:b] + 1, dv[a:b]
                txn.put(int(dd[a]).to_bytes(4, "big") + int(bk[a]).to_bytes(4, "big"),
                        rows.tobytes(), db=store.db[beh.DAYS_DB])

        def load():
            with store.read() as txn:
                seg.load_behaviour(store, txn, s._today, s.n)
        return _p50(load, repeat)
    finally:
        eng.close()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--members", type=int, default=1_000_000)
    ap.add_argument("--visit-days", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--no-load", action="store_true", help="skip the LMDB load figure")
    ap.add_argument("--dir", default=None)
    a = ap.parse_args(argv)
    rng = np.random.default_rng(12)
    today = 20_423
    out: dict = {"members": a.members, "day_rows": a.members * a.visit_days,
                 "cpus": os.cpu_count(), "loadavg_before": os.getloadavg()}
    s = SyntheticSegments(a.members, a.visit_days, rng, today)
    s.fresh()
    cols = [s.totals[:, k] for k in range(5)]

    def ceiling():
        m = cols[0] > 0
        for c in cols[1:]:
            m &= c >= 1
        return int(np.count_nonzero(m))

    def rfm_tags():
        cls, _ = s.rfm(today=today)
        return cls, [s.mask(seg.validate_definition(r), today=today) for r in RULES]

    five = seg.validate_definition(FIVE)
    out["ceiling_s"] = _p50(ceiling, a.repeat)
    out["rfm_tags_s"] = _p50(rfm_tags, a.repeat, s.fresh)
    out["count5_s"] = _p50(lambda: seg.count(s, five, today=today), a.repeat, s.fresh)
    s.fresh()
    seg.count(s, five, today=today)
    out["count5_warm_s"] = _p50(lambda: seg.count(s, five, today=today), a.repeat)
    out["count5_after_commit_s"] = _p50(lambda: seg.count(s, five, today=today), a.repeat,
                                        s.commit)
    out["count5_members"] = seg.count(s, five, today=today)
    out["rfm_classes"] = {c.name.lower(): int(n) for c, n in
                          zip(seg.RfmClass, np.bincount(s.rfm(today=today)[0], minlength=8)[1:], strict=True)}
    if not a.no_load:
        base = tempfile.mkdtemp(prefix="mms-bench-segments-", dir=a.dir)
        try:
            out["load_s"] = _load_from_lmdb(s, max(1, a.repeat // 2), base)
        finally:
            shutil.rmtree(base, ignore_errors=True)
    for k in ("rfm_tags_s", "count5_s", "count5_warm_s", "count5_after_commit_s", "load_s"):
        if k in out:
            out[k.replace("_s", "_ratio_to_ceiling")] = round(out[k] / out["ceiling_s"], 1)
    out["loadavg_after"] = os.getloadavg()
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
