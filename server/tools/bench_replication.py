"""`mms bench grpc --replication none,async,sync`: the same streamed durable swipes
against a lone primary (none) and against a primary with a standby on loopback in async
and in sync mode, in one run; each mode's swipes/s and its ratio to none.

Each mode gets fresh data directories, a primary (`mms serve` with a replication token)
and, but for none, a standby (`mms serve --standby-of`) that bootstraps from it before
the load starts. All processes share this machine: the ratios say what replication costs
here, not on two hosts."""

from __future__ import annotations

import asyncio
import json
import os
import resource
import tempfile
import time

import numpy as np

from server.tools.bench import _setup, run_load
from server.tools.launch import ChildServer, TerminalSpec

MODES = ("none", "async", "sync")


def _cpu_s(pid: int) -> float:
    """A process's CPU time so far (user + system, all its threads), from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    """A process's live child processes (the primary's rollup worker)."""
    out: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out.extend(int(c) for c in f.read().split())
    except OSError:
        pass
    return out


def _children_cpu_s(pid: int) -> dict[int, float]:
    """CPU time so far of each live child of pid (a child gone meanwhile is not counted)."""
    out: dict[int, float] = {}
    for child in _children(pid):
        try:
            out[child] = _cpu_s(child)
        except OSError:
            pass
    return out


def _own_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _host_busy_s() -> float:
    """CPU time every process on the host has used (all cores, /proc/stat; idle and
    iowait excluded): less this run's own processes, what others took meanwhile."""
    with open("/proc/stat") as f:
        cpu = [int(v) for v in f.readline().split()[1:]]
    idle = cpu[3] + cpu[4]
    return (sum(cpu[:8]) - idle) / os.sysconf("SC_CLK_TCK")


# The disk's sync latency where the run's stores are, measured just before its load:
# FSYNC_PROBES fdatasyncs of FSYNC_PROBE_BYTES each (its median, in ms). On a shared
# host it moves several times over within a minute, and a durable run's rate with it.
FSYNC_PROBES = 16
FSYNC_PROBE_BYTES = 256 << 10


def _fsync_probe_ms(directory: str) -> float:
    path = os.path.join(directory, "fsync-probe")
    buf = os.urandom(FSYNC_PROBE_BYTES)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        took = []
        for _ in range(FSYNC_PROBES):
            os.pwrite(fd, buf, 0)
            t = time.perf_counter()
            os.fdatasync(fd)
            took.append(time.perf_counter() - t)
    finally:
        os.close(fd)
        os.unlink(path)
    return round(float(np.median(took)) * 1e3, 3)


# A mode may carry a variant after a colon: "sync:norollups" runs both nodes with
# [engine] rollups = false (no rollup tailer, so none of its frames: a flush at a high
# swipe rate is MBs the standby writes and fsyncs, and a sync group commit behind it
# waits for it); its ratio is to "none:norollups" of the same run.
VARIANTS = {"": None, "norollups": {"rollups": False}}


def _split_label(label: str) -> tuple[str, str]:
    mode, _, variant = label.partition(":")
    return mode, variant


def _mode_run(args, label: str) -> dict:
    mode, variant = _split_label(label)
    engine = VARIANTS[variant]
    with tempfile.TemporaryDirectory(prefix=f"mms-bench-{mode}-") as tmp:
        token_file = os.path.join(tmp, "replication.token")
        with open(token_file, "w") as f:
            f.write(os.urandom(16).hex() + "\n")
        terms = [TerminalSpec(1, 0, "admin"), TerminalSpec(2, 1, "pos")]
        os.makedirs(os.path.join(tmp, "p"))
        extra = {} if mode == "none" else {"replication": {"token_file": token_file, "mode": mode}}
        with ChildServer(os.path.join(tmp, "p"), terms, extra=extra, engine=engine) as primary:
            standby = None
            if mode != "none":
                os.makedirs(os.path.join(tmp, "s"))
                standby = ChildServer(os.path.join(tmp, "s"), terms, engine=engine, extra={
                    "replication": {"token_file": token_file,
                                    "standby_of": primary.target}}).start()
            try:
                cards = asyncio.run(_setup(primary.target, primary.token("admin"),
                                           primary.token("pos"), args.cards))
                procs = {"primary": primary.proc.pid}
                if standby is not None:
                    procs["standby"] = standby.proc.pid
                out_probe = _fsync_probe_ms(tmp)
                before = {k: _cpu_s(pid) for k, pid in procs.items()}
                kids0 = {k: _children_cpu_s(pid) for k, pid in procs.items()}
                client0 = _own_cpu_s()
                host0, wall0 = _host_busy_s(), time.monotonic()
                out = asyncio.run(run_load(primary.target, primary.token("pos"), cards,
                                           streams=args.streams, seconds=args.seconds,
                                           batch=args.batch, unary=False))
                # CPU per swipe of each process over the load (microseconds): on one
                # host the standby's share is taken from the primary and the client.
                ops = max(1, out.get("swipes", 0) + out.get("rejected", 0))
                cpu = {k: _cpu_s(pid) - before[k] for k, pid in procs.items()}
                for k, pid in procs.items():
                    # Its child processes apart (the primary's rollup worker, with
                    # [engine] rollups_worker): CPU the process's own figure leaves out.
                    kids = _children_cpu_s(pid)
                    if kids:
                        cpu[f"{k}_children"] = sum(v - kids0[k].get(c, 0.0) for c, v in kids.items())
                cpu["client"] = _own_cpu_s() - client0
                out["cpu_us_per_op"] = {k: round(v * 1e6 / ops, 3) for k, v in cpu.items()}
                # Every process of the run together: what a swipe costs here (a figure
                # that holds at any load, where swipes/s do not).
                out["cpu_us_per_op"]["all"] = round(sum(cpu.values()) * 1e6 / ops, 3)
                out["loadavg"] = os.getloadavg()[0]
                # Cores this run's processes kept busy, and what the rest of the host
                # took meanwhile: a run slower at the same CPU per swipe was starved
                # (others' share up) or waited on the disk (fsync_probe_ms up).
                wall = time.monotonic() - wall0
                others = _host_busy_s() - host0 - sum(cpu.values())
                out["own_cores"] = round(sum(cpu.values()) / wall, 3)
                out["others_cores"] = round(max(0.0, others) / wall, 3)
                out["fsync_probe_ms"] = out_probe
            finally:
                if standby is not None:
                    standby.terminate()
        out["replication"] = label
        return out


def main_pair(args) -> int:
    """Modes run in the order given; a mode may repeat (none,async,sync,none,async,sync:
    on a busy machine interleaved repeats say more than one run each). Each mode's
    swipes/s is the median of its runs, and the ratios are to none's median."""
    modes = [m.strip() for m in args.replication.split(",") if m.strip()]
    parts = [_split_label(m) for m in modes]
    if (not modes or {m for m, _v in parts} - set(MODES) or {v for _m, v in parts} - set(VARIANTS)
            or args.unary or args.target):
        print("mms bench grpc: --replication takes none,async,sync, each optionally :norollups "
              "(streams only, no --target)")
        return 2
    runs = [_mode_run(args, m) for m in modes]
    per_mode = {m: sorted(r["swipes_per_s"] for r in runs if r["replication"] == m)
                for m in dict.fromkeys(modes)}
    medians = {m: float(np.median(v)) for m, v in per_mode.items()}
    # Each process's CPU per swipe, the median of the mode's runs (µs).
    cpu_medians: dict = {}
    for m in per_mode:
        mine = [r["cpu_us_per_op"] for r in runs if r["replication"] == m]
        keys = dict.fromkeys(k for c in mine for k in c)
        cpu_medians[m] = {k: float(np.median([c.get(k, 0.0) for c in mine])) for k in keys}
    result: dict = {"runs": runs, "median_swipes_per_s": medians,
                    "median_cpu_us_per_op": cpu_medians}
    for m in medians:
        mode, variant = _split_label(m)
        base = "none" + (f":{variant}" if variant else "")
        if mode != "none" and medians.get(base):
            result[f"{m}_vs_{base}"] = round(medians[m] / medians[base], 3)
    if args.json:
        print(json.dumps(result))
    else:
        for r in runs:
            cpu = ", ".join(f"{k} {v}" for k, v in r["cpu_us_per_op"].items())
            print(f"{r['replication']:>6}: {r['swipes_per_s']} swipes/s, batch p50 {r['p50_ms']} ms, "
                  f"p99 {r['p99_ms']} ms, errors {r['errors']}; CPU us/op: {cpu}; "
                  f"load {r['loadavg']:.2f}; cores own {r['own_cores']} others "
                  f"{r['others_cores']}; fsync {r['fsync_probe_ms']} ms")
        for k, v in result.items():
            if k not in ("runs", "median_cpu_us_per_op"):
                print(f"{k:>20}: {v}")
        for m, v in cpu_medians.items():
            print(f"{m:>20}: CPU us/op (medians) " + ", ".join(f"{k} {x:.3f}" for k, x in v.items()))
    return 0
