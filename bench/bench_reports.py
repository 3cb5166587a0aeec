"""Benchmarks of the report rollups (docs/internals/reports.md); figures, no asserts.

    python3 bench/bench_reports.py --cards 100000 --ops 1000000 --runs 3

1. `mms bench engine`'s durable swipe run (server.tools.bench_engine.run_engine) with the rollups'
   tailer on and off, alternating, in one run: the cost of keeping the rollups.
2. A rebuild of the rollups from the journal that run wrote (records/s, its wall, process
   and thread CPU), and the rollups' digest after it (rollups.digest).
3. The same report (staff commission over the window, and sales by store and day)
   from the rollups and by scanning the journal, p50 of --repeat calls each; card
   statistics and the settlement by recharge store likewise (the scans: p50 of
   --scan-repeat calls, they read the whole journal).

    python3 bench/bench_reports.py --records 10000000 --cards 100000

--records N builds a journal of N records (the cards' issues and recharges, then
swipes) with the tailer off, skips the on/off runs, and times the rebuild from it and
the reports from the rollups against the scans (the 10,000,000-record targets of
docs/internals/reports.md). Each figure is also printed to stderr as it is measured.

    python3 bench/bench_reports.py --records 10000000 --cards 100000 --journal DIR

--journal DIR runs on a copy of an environment such a run built (DIR/data.mdb, used in
place and changed: the rollups are rebuilt in it) instead of building it again.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import statistics
import sys
import tempfile
import time

from core import Engine, EngineConfig
from core.domain import reports
from core.engine import rollups
from server.tools.bench_engine import WORKLOADS, prepare, run_engine

TZ = datetime.timezone(datetime.timedelta(hours=8))


def _p50(fn, repeat: int, keep: list | None = None) -> float:
    """The median time of repeat calls; keep, when given, gets the last call's result."""
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        got = fn()
        times.append(time.perf_counter() - t)
    if keep is not None:
        keep.append(got)
    return statistics.median(times)


def _note(out: dict, key: str, value) -> None:
    """A figure into out, and at once to stderr: a long run that is stopped keeps what
    it measured."""
    out[key] = value
    print(json.dumps({key: value}), file=sys.stderr, flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cards", type=int, default=100_000)
    ap.add_argument("--ops", type=int, default=500_000)
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--dir", default=None)
    ap.add_argument("--workload", choices=WORKLOADS, default="realistic")
    ap.add_argument("--records", type=int, default=0,
                    help="build a journal of this many records (no on/off runs) and time "
                         "the rebuild and the reports on it")
    ap.add_argument("--scan-repeat", type=int, default=1,
                    help="calls of each journal scan (p50)")
    ap.add_argument("--journal", default=None,
                    help="with --records: a copy of an environment such a run built (its "
                         "data.mdb), used in place instead of building the journal again")
    ap.add_argument("--no-scans", action="store_true",
                    help="skip the journal scans (the rebuild and the reports from the rollups "
                         "only; the scans' figures then come from another run)")
    a = ap.parse_args(argv)
    if a.records:
        # prepare journals 3 records a card (issue, recharge, and what the rules add).
        a.ops, a.runs = max(1, a.records - 3 * a.cards), 0
    base = tempfile.mkdtemp(prefix="mms-bench-reports-", dir=a.dir)
    out: dict = {"cards": a.cards, "ops": a.ops, "workload": a.workload, "cpus": os.cpu_count(),
                 "loadavg": os.getloadavg()}
    try:
        seed = os.path.join(base, "seed")
        on, off = [], []
        keep = None
        if a.journal:
            keep = a.journal
            a.runs = 0
        else:
            prepare(seed, a.cards, a.batch)
        if a.records and not a.journal:
            keep = os.path.join(base, "big")
            shutil.copytree(seed, keep)
            t = time.perf_counter()
            out["build_swipes_per_s"] = run_engine(keep, a.cards, a.ops, a.batch, seed=1,
                                                   rollups=False,
                                                   workload=a.workload)["swipes_per_s"]
            out["build_s"] = time.perf_counter() - t
        for r in range(a.runs):
            for flag, sink in ((True, on), (False, off)) if r % 2 == 0 else ((False, off), (True, on)):
                d = os.path.join(base, f"run{r}-{int(flag)}")
                shutil.copytree(seed, d)
                sink.append(run_engine(d, a.cards, a.ops, a.batch, seed=r + 1,
                                       rollups=flag, workload=a.workload)["swipes_per_s"])
                if flag and keep is None:
                    keep = d
                else:
                    shutil.rmtree(d)
        if on:
            out["swipes_per_s_rollups_on"] = statistics.median(on)
            out["swipes_per_s_rollups_off"] = statistics.median(off)
            out["rollups_cost_ratio"] = 1 - out["swipes_per_s_rollups_on"] / out["swipes_per_s_rollups_off"]
        eng = Engine(keep, config=EngineConfig(checkpoint_ops=10**12))
        try:
            with eng.store.read() as txn:
                n_rec = eng.store.last_seq(txn)
            out["journal_records"] = n_rec
            t = time.perf_counter()
            c = time.process_time()
            ct = time.thread_time()
            eng.rollups.rebuild()
            rebuild_s = time.perf_counter() - t
            _note(out, "rebuild_cpu_s", time.process_time() - c)
            # The rebuild's own thread (the tailer's work, without the engine's threads).
            _note(out, "rebuild_thread_cpu_s", time.thread_time() - ct)
            # Equal digests across runs (and code) mean byte-identical rollups.
            _note(out, "rollups_digest", rollups.digest(eng.store))
            _note(out, "rebuild_s", rebuild_s)
            _note(out, "rebuild_records_per_s", n_rec / rebuild_s)
            _note(out, "loadavg_after_rebuild", os.getloadavg())
            today = datetime.datetime.now(TZ).date()
            frm, to = (today - datetime.timedelta(days=1)).isoformat(), (today + datetime.timedelta(days=1)).isoformat()
            since = int(datetime.datetime.combine(today - datetime.timedelta(days=1),
                                                  datetime.time(), TZ).timestamp())
            out["commission_rollups_p50_s"] = _p50(
                lambda: reports.commission_from_rollups(eng, frm, to), a.repeat)
            out["commission_scan_p50_s"] = float("nan") if a.no_scans else _p50(
                lambda: reports.commission_scan(eng, since, since + 2 * 86_400), a.scan_repeat)
            out["commission_admin_rpc_core_p50_s"] = _p50(
                lambda: reports.commission_report(eng, since + 1, since + 2 * 86_400 - 1), a.repeat)
            out["commission_scan_over_rollups"] = out["commission_scan_p50_s"] / out["commission_rollups_p50_s"]
            out["sales_by_store_day_rollups_p50_s"] = _p50(
                lambda: reports.sales_report(eng, frm, to, by=("store", "day")), a.repeat)
            for k in ("commission_rollups_p50_s", "commission_scan_p50_s",
                      "sales_by_store_day_rollups_p50_s"):
                _note(out, k, out[k])
            month = (today.replace(day=1) - datetime.timedelta(days=1)).replace(day=1).isoformat()
            for name, fast, slow, window in (
                    ("member_activity", reports.member_activity_report,
                     reports.member_activity_scan, (frm, to)),
                    ("visit_frequency", reports.visit_frequency_report,
                     reports.visit_frequency_scan, (frm, to)),
                    ("card_stats", reports.card_stats_report, reports.card_stats_scan,
                     (month, to)),
                    ("recharge_settlement", reports.recharge_settlement_report,
                     reports.recharge_settlement_scan, (frm, to))):
                got, want = [], []
                _note(out, f"{name}_rollups_p50_s",
                      _p50(lambda f=fast, w=window: f(eng, *w), a.repeat, got))
                if a.no_scans:
                    continue
                _note(out, f"{name}_scan_p50_s",
                      _p50(lambda f=slow, w=window: f(eng, *w), a.scan_repeat, want))
                _note(out, f"{name}_rollups_equal_scan", got == want)
                out[f"{name}_scan_over_rollups"] = (out[f"{name}_scan_p50_s"]
                                                    / out[f"{name}_rollups_p50_s"])
            # The other reports of issue 11, from the rollups (p50 of repeat calls).
            uneven = since + 2 * 86_400 - 1_800        # ends mid-hour: a partial hour scanned
            for name, fn in (
                    ("sales_by_hour_operator", lambda: reports.sales_report(
                        eng, frm, to, by=("hour", "operator"))),
                    ("sales_by_level_category", lambda: reports.sales_report(
                        eng, frm, to, by=("level", "category"))),
                    ("sales_by_store_terminal", lambda: reports.sales_report(
                        eng, frm, to, by=("store", "terminal"))),
                    ("top_skus", lambda: reports.top_skus(eng, frm, to, 10)),
                    ("liability", lambda: reports.liability_report(eng, frm, to)),
                    ("liability_by_store", lambda: reports.liability_report(
                        eng, frm, to, by_store=True)),
                    ("settlement", lambda: reports.settlement_report(eng, frm, to)),
                    ("coupons", lambda: reports.coupon_report(eng, frm, to)),
                    ("points", lambda: reports.points_report(eng)),
                    ("expiry_forecast", lambda: reports.expiry_forecast(eng)),
                    ("reconcile", lambda: reports.reconcile(eng)),
                    ("commission_uneven", lambda: reports.commission_report(
                        eng, since + 1_800, uneven)),
                    ("commission_now_uneven", lambda: reports.commission_report(
                        eng, since + 1_800, int(time.time()) - 1))):
                _note(out, f"{name}_rollups_p50_s", _p50(fn, a.repeat))
            with eng.store.read() as txn:
                out["rollup_sales_rows"] = txn.stat(eng.store.db[rollups.SALES_DB])["entries"]
        finally:
            eng.close()
    finally:
        shutil.rmtree(base, ignore_errors=True)
    json.dump(out, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
