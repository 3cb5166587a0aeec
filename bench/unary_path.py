"""The server's own CPU per unary Swipe, without gRPC's: `PosService.Swipe` through the
request guard and `rpc_method`, called in-process on a real engine, `--concurrent`
calls per loop turn (what coalescing sees from that many tills).

    python3 bench/unary_path.py [--calls 20000] [--concurrent 16] [--fsync] [--repeat 5]

Prints the event loop's CPU per call (time.thread_time on the loop thread), the whole
process's CPU per call, each engine thread's (applier, committer, publisher, from /proc)
and the calls per second, the best of --repeat rounds: the
minimum is what the code costs, the rest is the other agents on the machine. A figure
to compare versions of the handler path with (docs/benchmarks.md, issue 15); it is no
substitute for `mms bench grpc --unary --ceiling`, which includes gRPC.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import threading
import time

import grpc
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from core import Engine, EngineConfig  # noqa: E402
from core.domain.chain import token_digest  # noqa: E402
from server.mms_pb import pos_pb2  # noqa: E402
from server.rpc.auth import Registry, Terminal  # noqa: E402
from server.rpc.bridge import Bridge  # noqa: E402
from server.rpc.constants import POS  # noqa: E402
from server.rpc.guard import RequestGuard  # noqa: E402
from server.rpc.metrics import Metrics  # noqa: E402
from server.rpc.pos import PosService  # noqa: E402

TOKEN = "unary-path-bench-token"


class Context:
    """What the handlers ask of a grpc.aio ServicerContext on the OK path."""

    _md = (("authorization", f"Bearer {TOKEN}"),)

    def invocation_metadata(self):
        return self._md

    def time_remaining(self):
        return None

    async def abort(self, code, details, trailing_metadata=()):
        raise RuntimeError(f"aborted: {code} {details}")

    def code(self):
        return None


def build(data: str, fsync: bool, role: bool, rollups: bool = True):
    cfg = EngineConfig(sync=fsync, rollups=rollups)
    engine = Engine(data, config=cfg)
    cards = np.arange(1_000_000, 1_000_000 + 1000, dtype=np.uint64)
    engine.issue_cards(cards, b"unary-path-issue").result()
    for i, c in enumerate(cards.tolist()):
        engine.recharge(c, 10_000_000, (i + 1).to_bytes(16, "big")).result()
    metrics = Metrics()
    registry = Registry([Terminal(7, 1, token_digest(TOKEN).hex(), "pos")])
    pos = PosService(Bridge(engine), registry, metrics)
    if role:
        from server.rpc.role import NodeRole

        pos.role = NodeRole.single()
    guard = RequestGuard(metrics, frozenset({POS}))
    h = grpc.unary_unary_rpc_method_handler(
        pos.Swipe, request_deserializer=pos_pb2.SwipeRequest.FromString,
        response_serializer=pos_pb2.SwipeResponse.SerializeToString)
    wrapped = guard.wrap(f"/{POS}/Swipe", h)
    return engine, cards, wrapped


async def round_(wrapped, cards, calls: int, concurrent: int, first_id: int) -> tuple[float, float, float]:
    ctx = Context()
    reqs = [pos_pb2.SwipeRequest(client_id=(first_id + i).to_bytes(16, "big"),
                                 card_no=int(cards[i % len(cards)]), amount_fen=1,
                                 store_id=1).SerializeToString() for i in range(calls)]
    ser = wrapped.response_serializer
    fn = wrapped.unary_unary

    async def one(raw):
        return ser(await fn(raw, ctx))

    t0, c0, p0 = time.perf_counter(), time.thread_time(), time.process_time()
    th0 = thread_cpu()
    for k in range(0, calls, concurrent):
        await asyncio.gather(*(one(r) for r in reqs[k:k + concurrent]))
    th1 = thread_cpu()
    return (time.thread_time() - c0, time.process_time() - p0, time.perf_counter() - t0,
            {n: th1[n] - th0.get(n, 0.0) for n in th1})


_TICK = os.sysconf("SC_CLK_TCK")


def thread_cpu() -> dict[str, float]:
    """CPU seconds (user + system) of each named thread of this process but the loop's
    (the engine's applier, committer, publisher, rollup tailer), from /proc."""
    out: dict[str, float] = {}
    for t in threading.enumerate():
        if t is threading.main_thread() or t.native_id is None:
            continue
        try:
            with open(f"/proc/self/task/{t.native_id}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
        except FileNotFoundError:
            continue
        out[t.name] = out.get(t.name, 0.0) + (int(fields[11]) + int(fields[12])) / _TICK
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=20_000)
    ap.add_argument("--concurrent", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--fsync", action="store_true")
    ap.add_argument("--no-rollups", action="store_true", help="the engine without its rollup tailer")
    ap.add_argument("--role", action="store_true", help="a NodeRole on the service (as [ha])")
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="mms-unary-path-") as tmp:
        engine, cards, wrapped = build(os.path.join(tmp, "data"), a.fsync, a.role, not a.no_rollups)
        try:
            runs = [asyncio.run(round_(wrapped, cards, a.calls, a.concurrent, (r + 1) << 40))
                    for r in range(a.repeat)]
        finally:
            engine.close()
    loop = min(r[0] for r in runs)
    proc = min(r[1] for r in runs)
    wall = min(r[2] for r in runs)
    # Each engine thread's CPU per call, in the round of least process CPU.
    best = min(runs, key=lambda r: r[1])[3]
    print(json.dumps({"calls": a.calls, "concurrent": a.concurrent, "fsync": a.fsync, "rollups": not a.no_rollups,
                      "loop_us_per_call": round(loop / a.calls * 1e6, 1),
                      "process_us_per_call": round(proc / a.calls * 1e6, 1),
                      "calls_per_s": round(a.calls / wall),
                      "threads_us_per_call": {n: round(v / a.calls * 1e6, 1)
                                              for n, v in sorted(best.items()) if v},
                      "load": os.getloadavg()[0]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
