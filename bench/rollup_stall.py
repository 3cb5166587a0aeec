"""What single swipes wait for while the rollup tailer flushes (issues 11 and 15): a
diagnostic, not a test.

An engine in this process (a copy of a prepared table of --cards cards), swipes of one
op each submitted open-loop at --rate per second for --seconds (as unary Swipe calls
reach the writer), with the rollups on (their flushes computed in the tailer's thread),
on with the worker process computing them (core.engine.rollup_worker), and off
(--phases on,worker,off), each phase in a fresh copy. Measured in the same phase:

- every swipe's latency, submit to answer (p50 / p99 / max);
- every LMDB write transaction of every thread (the env's begin is wrapped): its wait
  for the write lock (begin(write=True) to its return) and its hold (from then to the
  commit's end), per thread; for the committer, the share of its lock waits that fell
  while the tailer held the lock;
- every tailer flush (Rollups.on_flush, rollups.flush_stats): records, values and bytes
  put per table, the compute before the write transaction (wall and thread CPU), the
  lock hold split into the puts and the commit (its fsync);
- the GIL: a thread that sleeps 1 ms in a loop records every gap over --gil-gap-ms
  (a gap is a time no Python thread let it run: a call holding the GIL);
- with --py-spy PATH, `py-spy record --gil` of the phase (raw stacks of what held the
  GIL; --spy-cpu: of every thread) into --out-dir;
- the tailer thread's CPU (/proc) per record it summed of the phase, the worker
  process's (worker phase), and this process's CPU per swipe (all its threads).

    python3 bench/rollup_stall.py --cards 10000 --rate 2000 --seconds 6 --rounds 2

Prints one JSON line per phase (distributions in ms) and, with --flushes, one per flush.
Times are floats: durations, no money.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

from core import Engine, EngineConfig
from core.records import OpType
from server.tools.bench_engine import _ops, prepare


def _pct(xs, *qs) -> list[float]:
    if not len(xs):
        return [0.0] * len(qs)
    a = np.asarray(xs, float) * 1000
    return [round(float(np.percentile(a, q)), 3) for q in qs]


def _dist(xs) -> dict:
    p50, p99 = _pct(xs, 50, 99)
    return {"n": len(xs), "p50": p50, "p99": p99,
            "max": round(max(xs) * 1000, 3) if len(xs) else 0.0}


class _Txn:
    def __init__(self, txn, rec) -> None:
        self._txn, self._rec = txn, rec

    def __enter__(self):
        return self._txn.__enter__()

    def __exit__(self, *exc):
        try:
            return self._txn.__exit__(*exc)
        finally:
            self._rec.append(time.perf_counter())


class _Env:
    """The store's lmdb.Environment, with every write transaction's lock wait and hold
    recorded as (thread name, asked, got, ended)."""

    def __init__(self, env, log: list) -> None:
        self._env, self._log = env, log

    def __getattr__(self, name):
        return getattr(self._env, name)

    def begin(self, *a, **k):
        if not k.get("write"):
            return self._env.begin(*a, **k)
        ask = time.perf_counter()
        txn = self._env.begin(*a, **k)
        rec = [threading.current_thread().name, ask, time.perf_counter()]
        self._log.append(rec)
        return _Txn(txn, rec)


def _ticker(stop: threading.Event, gaps: list, over_s: float) -> None:
    last = time.perf_counter()
    while not stop.is_set():
        time.sleep(0.001)
        now = time.perf_counter()
        if now - last - 0.001 > over_s:
            gaps.append((last, now - last - 0.001))
        last = now


def _thread_cpu_s(name: str) -> float:
    """User + system CPU seconds of this process's thread of that name (0: none)."""
    tick = os.sysconf("SC_CLK_TCK")
    for t in threading.enumerate():
        if t.name == name and t.native_id is not None:
            try:
                with open(f"/proc/self/task/{t.native_id}/stat") as f:
                    parts = f.read().rsplit(")", 1)[1].split()
                return (int(parts[11]) + int(parts[12])) / tick
            except OSError:
                return 0.0
    return 0.0


def _overlap(a0: float, a1: float, spans: list[tuple[float, float]]) -> float:
    return sum(max(0.0, min(a1, e) - max(a0, s)) for s, e in spans)


def _pid_cpu_s(pid: int | None) -> float:
    """User + system CPU seconds of a process (0: none, or gone)."""
    if pid is None:
        return 0.0
    try:
        with open(f"/proc/{pid}/stat") as f:
            parts = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


def phase(seed_dir: str, work: str, args, mode: str, rnd: int) -> dict:
    path = os.path.join(work, "run")
    shutil.rmtree(path, ignore_errors=True)
    shutil.copytree(seed_dir, path)
    rollups = mode != "off"
    eng = Engine(path, config=EngineConfig(rollups=rollups, rollups_worker=mode == "worker"))
    txns: list = []
    eng.store.env = _Env(eng.store.env, txns)
    flushes: list[dict] = []
    if eng.rollups is not None:
        eng.rollups.on_flush = flushes.append
    # Let the tailer sum the prepared table's journal before the clock starts.
    if eng.rollups is not None:
        with eng.store.read() as txn:
            eng.rollups.wait_for(eng.store.last_seq(txn))
    rng = np.random.default_rng(rnd)
    n = int(args.rate * args.seconds)
    ops = _ops(rng, n + 1, args.cards, 0xC000_0000 + rnd * 10**7
               + {"on": 0, "worker": 3 * 10**6, "off": 5 * 10**6}[mode], OpType.SWIPE, 1_000, 50_000)
    if eng.rollups is not None:
        # One swipe summed before the clock starts: the worker (started by the tailer's
        # first flush) is running when the phase begins, so its CPU is the phase's.
        eng.submit(ops[n:]).result()
        with eng.store.read() as txn:
            eng.rollups.wait_for(eng.store.last_seq(txn))
    lat = np.zeros(n)
    done = threading.Semaphore(0)

    def answered(j: int, t: float):
        def cb(_f):
            lat[j] = time.perf_counter() - t
            done.release()
        return cb

    stop, gaps = threading.Event(), []
    tick = threading.Thread(target=_ticker, args=(stop, gaps, args.gil_gap_ms / 1000),
                            daemon=True)
    spy = None
    if args.py_spy:
        out = os.path.join(args.out_dir, f"gil_{mode}_{rnd}.txt")
        spy = subprocess.Popen([args.py_spy, "record", *([] if args.spy_cpu else ["--gil"]), "--threads", "-r", "200",
                                "-f", "raw", "-o", out, "-p", str(os.getpid()),
                                "-d", str(int(args.seconds) + 1)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)
    txns.clear()
    flushes.clear()
    tick.start()
    load0 = os.getloadavg()[0]
    cpu0 = _thread_cpu_s("mms-rollups")
    worker = eng.rollups.worker_pid if eng.rollups is not None else None
    wcpu0, pcpu0 = _pid_cpu_s(worker), time.process_time()
    seq0 = eng.rollups.seq if eng.rollups is not None else 0
    t0 = time.perf_counter()
    skipped = 0
    for j in range(n):
        due = t0 + j / args.rate
        now = time.perf_counter()
        if due > now:
            time.sleep(due - now)
        elif now - due > 0.05:
            skipped += 1
        s = time.perf_counter()
        eng.submit(ops[j:j + 1]).add_done_callback(answered(j, s))
    for _ in range(n):
        done.acquire()
    t1 = time.perf_counter()
    if eng.rollups is not None:     # the tailer's CPU for what it summed of the phase
        with eng.store.read() as txn:
            eng.rollups.wait_for(eng.store.last_seq(txn))
    tailer_cpu = _thread_cpu_s("mms-rollups") - cpu0
    process_cpu = time.process_time() - pcpu0
    worker_cpu = _pid_cpu_s(worker) - wcpu0 if worker == (
        eng.rollups.worker_pid if eng.rollups is not None else None) else float("nan")
    summed = (eng.rollups.seq - seq0) if eng.rollups is not None else 0
    stop.set()
    tick.join()
    if spy is not None:
        spy.wait()
    eng.close()
    shutil.rmtree(path, ignore_errors=True)
    tailer = [(r[2], r[3]) for r in txns if r[0] == "mms-rollups" and len(r) == 4]
    commits = [r for r in txns if r[0] != "mms-rollups" and len(r) == 4]
    waits = [r[2] - r[1] for r in commits]
    behind = [_overlap(r[1], r[2], tailer) for r in commits]
    fl = [f for f in flushes if t0 <= f["t_start"] <= t1]
    by_table: dict[str, list[int]] = {}
    for f in fl:
        for t, b in f["bytes"].items():
            by_table.setdefault(t, []).append(b)
    row = {
        "rollups": mode, "round": rnd, "load": [round(load0, 2), round(os.getloadavg()[0], 2)],
        "swipes_per_s": round(n / (t1 - t0)), "skipped_sends": skipped,
        "swipe_ms": _dist(lat),
        "commit_lock_wait_ms": _dist(waits),
        "commit_lock_wait_behind_tailer_ms": _dist(behind),
        "commit_hold_ms": _dist([r[3] - r[2] for r in commits]),
        "tailer_hold_ms": _dist([e - s for s, e in tailer]),
        "gil_gaps_ms": _dist([g for _t, g in gaps]),
        "gil_gap_total_ms": round(sum(g for _t, g in gaps) * 1000, 1),
        "flushes": len(fl),
        "tailer_cpu_s": round(tailer_cpu, 3),
        "tailer_us_per_record": round(tailer_cpu / summed * 1e6, 2) if summed else 0.0,
        "worker_cpu_s": round(worker_cpu, 3) if worker is not None else 0.0,
        "process_cpu_us_per_swipe": round(process_cpu / n * 1e6, 1),
    }
    if fl:
        row.update({
            "flush_records": _dist([f["records"] / 1000 for f in fl]),
            "flush_compute_ms": _dist([f["compute_s"] for f in fl]),
            "flush_compute_cpu_ms": _dist([f["compute_cpu_s"] for f in fl]),
            # The worker phase: the worker's own compute (compute_ms above is the
            # tailer's wait for it, compute_cpu_ms the tailer's CPU receiving it).
            **({"worker_compute_ms": _dist([f["worker_compute_s"] for f in fl]),
                "worker_compute_cpu_ms": _dist([f["worker_compute_cpu_s"] for f in fl])}
               if "worker_compute_s" in fl[0] else {}),
            "flush_puts_ms": _dist([f["puts_s"] for f in fl]),
            "flush_commit_ms": _dist([f["commit_s"] for f in fl]),
            "flush_values": round(float(np.mean([sum(f["puts"].values()) for f in fl]))),
            "flush_bytes_by_table": {t: round(float(np.mean(b))) for t, b in
                                     sorted(by_table.items(), key=lambda x: -np.mean(x[1]))},
            # GIL gaps that fell inside a flush's compute, its hold, or neither.
            "gil_gap_ms_in_compute": round(sum(
                g for t, g in gaps if any(f["t_start"] <= t <= f["t_lock"] for f in fl)) * 1000, 1),
            "gil_gap_ms_in_hold": round(sum(
                g for t, g in gaps if any(f["t_lock"] <= t <= f["t_end"] for f in fl)) * 1000, 1),
        })
    if args.flushes:
        for f in fl:
            print(json.dumps({k: (round(v * 1000, 3) if k.endswith("_s") else v)
                              for k, v in f.items() if not k.startswith("t_")}), flush=True)
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cards", type=int, default=10_000)
    ap.add_argument("--rate", type=float, default=2000.0)
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--phases", default="on,worker,off",
                    help="any of on (in the tailer's thread), worker, off, in order")
    ap.add_argument("--gil-gap-ms", type=float, default=2.0)
    ap.add_argument("--flushes", action="store_true", help="print every flush too")
    ap.add_argument("--py-spy", default="", help="py-spy binary: record --gil each phase")
    ap.add_argument("--spy-cpu", action="store_true",
                    help="with --py-spy: sample every thread's stack, not only the GIL's holder")
    ap.add_argument("--out-dir", default=".")
    ap.add_argument("--dir", default="", help="work directory (default: a temporary one)")
    args = ap.parse_args(argv)
    with contextlib.ExitStack() as stack:
        work = args.dir or stack.enter_context(tempfile.TemporaryDirectory(prefix="mms-stall-"))
        seed_dir = os.path.join(work, f"seed{args.cards}")
        if not os.path.exists(seed_dir):      # a --dir keeps its prepared table for reuse
            prepare(seed_dir, args.cards, 4096)
        for rnd in range(args.rounds):
            for p in args.phases.split(","):
                print(json.dumps(phase(seed_dir, work, args, p, rnd)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
