"""Benchmarks of the report rollups (docs/internals/reports.md); figures, no asserts.

    python3 bench/bench_reports.py --cards 100000 --ops 1000000 --runs 3

1. `mms bench engine`'s durable swipe run (server.tools.bench_engine.run_engine) with the rollups'
   tailer on and off, alternating, in one run: the cost of keeping the rollups.
2. A rebuild of the rollups from the journal that run wrote (records/s).
3. The same report (staff commission over the window, and sales by store and day)
   from the rollups and by scanning the journal, p50 of --repeat calls each.
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


def _p50(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cards", type=int, default=100_000)
    ap.add_argument("--ops", type=int, default=500_000)
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--dir", default=None)
    ap.add_argument("--workload", choices=WORKLOADS, default="realistic")
    a = ap.parse_args(argv)
    base = tempfile.mkdtemp(prefix="mms-bench-reports-", dir=a.dir)
    out: dict = {"cards": a.cards, "ops": a.ops, "workload": a.workload, "cpus": os.cpu_count(),
                 "loadavg": os.getloadavg()}
    try:
        seed = os.path.join(base, "seed")
        prepare(seed, a.cards, a.batch)
        on, off = [], []
        keep = None
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
        out["swipes_per_s_rollups_on"] = statistics.median(on)
        out["swipes_per_s_rollups_off"] = statistics.median(off)
        out["rollups_cost_ratio"] = 1 - out["swipes_per_s_rollups_on"] / out["swipes_per_s_rollups_off"]
        eng = Engine(keep, config=EngineConfig(checkpoint_ops=10**12))
        try:
            with eng.store.read() as txn:
                n_rec = eng.store.last_seq(txn)
            t = time.perf_counter()
            eng.rollups.rebuild()
            rebuild_s = time.perf_counter() - t
            out["journal_records"] = n_rec
            out["rebuild_s"] = rebuild_s
            out["rebuild_records_per_s"] = n_rec / rebuild_s
            today = datetime.datetime.now(TZ).date()
            frm, to = (today - datetime.timedelta(days=1)).isoformat(), (today + datetime.timedelta(days=1)).isoformat()
            since = int(datetime.datetime.combine(today - datetime.timedelta(days=1),
                                                  datetime.time(), TZ).timestamp())
            out["commission_rollups_p50_s"] = _p50(
                lambda: reports.commission_from_rollups(eng, frm, to), a.repeat)
            out["commission_scan_p50_s"] = _p50(
                lambda: reports.commission_scan(eng, since, since + 2 * 86_400), a.repeat)
            out["commission_admin_rpc_core_p50_s"] = _p50(
                lambda: reports.commission_report(eng, since + 1, since + 2 * 86_400 - 1), a.repeat)
            out["commission_scan_over_rollups"] = out["commission_scan_p50_s"] / out["commission_rollups_p50_s"]
            out["sales_by_store_day_rollups_p50_s"] = _p50(
                lambda: reports.sales_report(eng, frm, to, by=("store", "day")), a.repeat)
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
