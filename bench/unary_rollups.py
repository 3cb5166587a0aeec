"""Unary Swipe at a fixed offered rate against a fresh `mms serve` child with the rollups
in a given mode (issues 11, 15; h11w): a diagnostic, not a test. Runs under whichever
venv is active, so the code before a change runs it from its own worktree's venv.

    python3 bench/unary_rollups.py MODE [ROUNDS]     MODE: worker | thread | off | on

worker: [engine] rollups_worker = true; thread: rollups_worker = false; off: rollups =
false; on: the build's default (a build before the worker has no rollups_worker).
Prints one JSON line a round: served/s, p50/p99/max (ms), the server process's CPU per
OK call (us), the rollup worker's (its child), and the load average.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile

from server.tools import bench, loadgen
from server.tools.launch import ChildServer, TerminalSpec

ENGINE = {"worker": {"rollups_worker": True}, "thread": {"rollups_worker": False},
          "off": {"rollups": False}, "on": {}}


def children(pid: int) -> list[int]:
    """The children of every thread of a process (the rollup worker is the tailer
    thread's: /proc/PID/task/PID/children lists the main thread's only)."""
    out = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(p) for p in f.read().split()]
        except FileNotFoundError:
            continue
    return out


def main() -> None:
    mode = sys.argv[1]
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    native = loadgen.build()
    for _ in range(rounds):
        with tempfile.TemporaryDirectory(prefix="mms-unary-rollups-") as tmp:
            terms = [TerminalSpec(1, 0, "admin"), TerminalSpec(2, 1, "pos")]
            with ChildServer(tmp, terms, engine=ENGINE[mode] or None) as child:
                cards = asyncio.run(bench._setup(child.target, child.token("admin"),
                                                 child.token("pos"), 10_000))
                before = bench.swipes_ok_on_server(child.metrics_url)
                kids = children(child.proc.pid)
                load0 = os.getloadavg()[0]
                cpu0, kid0 = bench.cpu_seconds([child.proc.pid]), bench.cpu_seconds(kids)
                rep = loadgen.run(native, child.target, child.token("pos"), streams=32,
                                  seconds=6.0, rate=2000.0, card_base=int(cards[0]),
                                  cards=len(cards), amount_max=bench.SWIPE_AMOUNT_FEN_MAX)
                cpu1, kid1 = bench.cpu_seconds([child.proc.pid]), bench.cpu_seconds(kids)
                ok = bench.swipes_ok_on_server(child.metrics_url) - before
                s = loadgen.summary(rep, streams=32, rate=2000.0)
                print(json.dumps({
                    "mode": mode, "per_s": s["swipes_per_s"], "p50_ms": s["p50_ms"],
                    "p99_ms": s["p99_ms"], "max_ms": s["max_ms"], "ok": ok,
                    "server_cpu_us_per_call": round((cpu1 - cpu0) / ok * 1e6, 1) if ok else 0,
                    "children": len(kids),
                    "children_cpu_us_per_call": round((kid1 - kid0) / ok * 1e6, 1) if ok else 0,
                    "load": [round(load0, 2), round(os.getloadavg()[0], 2)]}), flush=True)


if __name__ == "__main__":
    main()
