"""`mms bench grpc`: end-to-end load through gRPC against a server on loopback.

Without --target it starts `mms serve` as a child process on an empty data directory
(fsync on, as in production), issues and funds --cards cards, then drives either
--streams bidirectional SwipeStream calls with --batch swipes per batch, or --streams
concurrent callers of unary Swipe. Every swipe carries a fresh client id, so each one
is a real, durable debit. Latency is per call (unary) or per batch round trip (streams).

Unary load comes from one of two drivers: `--driver python` (grpc.aio in this process,
one core's worth of client on a 2-core machine) or `--driver native` (server/tools/loadgen.cc,
compiled on first use; when it cannot be built, a message says why and the Python
driver runs instead). Both count a swipe only when its call ended with status OK. With
the child server, `server_ok` is the server's own count of OK Swipe calls during the
load (its grpc_server_handled metric), a check on the client's count.

With `--ceiling` (unary only), the same run then drives, with the same driver, callers
and seconds, a no-op grpc.aio server on the same stubs and server options
(server/tools/noop_server.py: its Swipe answers OK with an empty result at once), after
the mms server has stopped, and reports `ceiling_per_s` (its OK calls per second),
`ceiling_p50_ms`, `ceiling_p99_ms` and `ratio` = swipes_per_s / ceiling_per_s: the share
of what grpcio itself allows this client on this machine. The ceiling is always driven
as fast as possible (no --rate): it is the most the client and grpcio can do. With
--rate, the no-op is then driven once more at that rate: `ceiling_at_rate_swipes_per_s`,
`_p50_ms`, `_p99_ms` and `_cpu_us_per_call`, what gRPC alone costs a call (and its tail)
when calls come spread out, beside mms's at the same rate.
`--ceiling-processes N` runs N no-op servers on one port (SO_REUSEPORT, one process and
event loop each; `ceiling_processes` in the result): the ceiling of N front-end processes,
which a multi-process mms would be measured against.

`--front-ends N` starts the child server as `mms serve --front-ends N` (N gRPC
front-end processes on its port, server/rpc/front.py). Every run reports the process CPU
per OK call: `server_cpu_us_per_call` (the writer: the whole server without front ends),
`front_cpu_us_per_call` (the front ends together) and `ceiling_cpu_us_per_call` (the
no-op servers together), from /proc over the load; with the native driver also
`client_cpu_us_per_call` (and `ceiling_client_cpu_us_per_call`), the load client's own.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import sys
import tempfile
import time
import urllib.request

import grpc
import numpy as np

from core.records import new_client_id, new_client_ids
from server.client import (
    FollowingStub,
    LeaderFollower,
    aio_channel,
    auth,
    resolve_leader,
    split_targets,
    stubs,
)
from server.mms_pb import pos_pb2, types_pb2
from server.rpc._wire import varint
from server.tools import loadgen
from server.tools.launch import ChildServer, TerminalSpec, issue_and_fund
from server.tools.noop_server import NOOP_PROCESSES_MAX, NoopGroup

# Batches a stream keeps in flight: enough to cover one round trip and one commit.
STREAM_PIPELINE = 4
# Distinct request templates per stream (card and amount columns), reused round robin.
TEMPLATES = 8
SWIPE_AMOUNT_FEN_MAX = 5_000
FUND_FEN = 100_000_000
CARD_BASE = 10_000_000
# Latency samples kept, so a long run cannot grow memory without end.
SAMPLES_MAX = 1_000_000


class Recorder:
    def __init__(self) -> None:
        self.latencies_s: list[float] = []
        self.ok = 0
        self.rejected = 0
        self.errors: dict[str, int] = {}

    def add(self, seconds: float) -> None:
        if len(self.latencies_s) < SAMPLES_MAX:
            self.latencies_s.append(seconds)

    def summary(self, elapsed_s: float, mode: str, streams: int, batch: int) -> dict:
        lat = np.array(self.latencies_s) if self.latencies_s else np.zeros(1)
        return {
            "mode": mode, "streams": streams, "batch": batch if mode == "stream" else 1,
            "seconds": round(elapsed_s, 3), "swipes": self.ok, "rejected": self.rejected,
            "swipes_per_s": round(self.ok / elapsed_s, 1) if elapsed_s else 0.0,
            "p50_ms": round(float(np.percentile(lat, 50)) * 1e3, 3),
            "p99_ms": round(float(np.percentile(lat, 99)) * 1e3, 3),
            "max_ms": round(float(lat.max()) * 1e3, 3),
            "calls": len(self.latencies_s), "errors": self.errors,
        }


def stream_request_bytes(batch_id: int, client_ids: bytes, columns_tail: bytes) -> bytes:
    """SwipeStreamRequest(batch_id, swipes=SwipeColumns(client_ids, ...)) as protobuf
    writes it, columns_tail being the serialised SwipeColumns without its client_ids: the
    client writes each batch's bytes without a message copy and its serialisation, so
    that on a 2-core machine it takes less of the cores the server is measured on."""
    cols = b"\x0a" + varint(len(client_ids)) + client_ids + columns_tail
    head = b"\x08" + varint(batch_id) if batch_id else b""
    return head + b"\x12" + varint(len(cols)) + cols


def _read_varint(buf: bytes, at: int) -> tuple[int, int]:
    v = shift = 0
    while True:
        b = buf[at]
        at += 1
        v |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return v, at


def stream_reply_counts(raw: bytes) -> tuple[int, int, int]:
    """(batch_id, OK count, op count) of a SwipeStreamResponse. The codes are read as
    bytes when the reply starts with them as protobuf writes it (every code is below 128,
    a one-byte varint); any other layout is parsed by protobuf."""
    try:
        at, batch_id = 0, 0
        if raw[0] == 0x08:
            batch_id, at = _read_varint(raw, 1)
        if raw[at] == 0x12:
            _, at = _read_varint(raw, at + 1)
            if raw[at] == 0x0A:
                n, at = _read_varint(raw, at + 1)
                codes = np.frombuffer(raw, dtype=np.uint8, count=n, offset=at)
                if not (codes & 0x80).any():
                    return batch_id, int(np.count_nonzero(codes == types_pb2.RESULT_OK)), n
    except IndexError:
        pass
    resp = pos_pb2.SwipeStreamResponse.FromString(raw)
    codes = np.array(resp.results.codes, dtype=np.uint8)
    return resp.batch_id, int((codes == types_pb2.RESULT_OK).sum()), len(codes)


async def _stream_worker(channel, token: str, cards: np.ndarray, batch: int, deadline: float,
                         rec: Recorder, rng: np.random.Generator) -> None:
    templates = []
    for _ in range(TEMPLATES):
        nos = rng.choice(cards, size=batch).tolist()
        amounts = rng.integers(1, SWIPE_AMOUNT_FEN_MAX, size=batch).tolist()
        templates.append(types_pb2.SwipeColumns(card_nos=nos, amount_fen=amounts)
                         .SerializeToString())
    sent_at: dict[int, float] = {}
    window = asyncio.Semaphore(STREAM_PIPELINE)
    # Raw bytes both ways (no serializers): stream_request_bytes and stream_reply_counts.
    call = channel.stream_stream("/mms.v1.PosService/SwipeStream")(metadata=auth(token))

    async def writer() -> None:
        i = 1
        while time.monotonic() < deadline:
            await window.acquire()
            req = stream_request_bytes(i, new_client_ids(batch), templates[i % TEMPLATES])
            sent_at[i] = time.perf_counter()
            await call.write(req)
            i += 1
        await call.done_writing()

    task = asyncio.create_task(writer())
    try:
        async for raw in call:
            batch_id, ok, n = stream_reply_counts(raw)
            rec.add(time.perf_counter() - sent_at.pop(batch_id))
            rec.ok += ok
            rec.rejected += n - ok
            window.release()
        await task
    except grpc.aio.AioRpcError as e:
        rec.errors[e.code().name] = rec.errors.get(e.code().name, 0) + 1
        task.cancel()


async def _unary_worker(pos, token: str, cards: np.ndarray, deadline: float, rec: Recorder,
                        rng: np.random.Generator, interval_s: float) -> None:
    md = auth(token)
    nos = rng.choice(cards, size=4096).tolist()
    amounts = rng.integers(1, SWIPE_AMOUNT_FEN_MAX, size=4096).tolist()
    i = 0
    next_at = time.monotonic()
    while True:
        now = time.monotonic()
        if now >= deadline:
            break
        if interval_s:
            if next_at > now:
                await asyncio.sleep(next_at - now)
            next_at += interval_s
        t0 = time.perf_counter()
        try:
            await pos.Swipe(pos_pb2.SwipeRequest(client_id=new_client_id(), card_no=nos[i % 4096],
                                                 amount_fen=amounts[i % 4096]), metadata=md)
            rec.ok += 1
        except grpc.aio.AioRpcError as e:
            rec.rejected += 1
            rec.errors[e.code().name] = rec.errors.get(e.code().name, 0) + 1
        rec.add(time.perf_counter() - t0)
        i += 1


async def run_load(target: str, token: str, cards: np.ndarray, *, streams: int, seconds: float,
                   batch: int, unary: bool, rate: float = 0.0) -> dict:
    rec = Recorder()
    rng = np.random.default_rng(7)
    # `--target` may name every node of a pair or trio: streams open on the leader, and
    # unary calls follow NOT_LEADER (same client id) if the leader moves during the run.
    targets = split_targets(target)
    follower = LeaderFollower(targets)
    target = await resolve_leader(follower, token)
    # One channel per stream: one HTTP/2 connection each, as separate tills would have.
    channels = [aio_channel(target) for _ in range(max(1, streams))]
    tills: list[LeaderFollower] = []
    try:
        start = time.monotonic()
        deadline = start + seconds
        if unary:
            interval = streams / rate if rate > 0 else 0.0
            tills = [LeaderFollower([target, *targets]) for _ in channels]
            jobs = [_unary_worker(FollowingStub(f, "pos"), token, cards, deadline, rec, rng,
                                  interval) for f in tills]
        else:
            jobs = [_stream_worker(ch, token, cards, batch, deadline, rec, rng)
                    for ch in channels]
        await asyncio.gather(*jobs)
        elapsed = time.monotonic() - start
    finally:
        for ch in channels:
            await ch.close()
        for f in (follower, *tills):
            await f.close()
    out = rec.summary(elapsed, "unary" if unary else "stream", streams, batch)
    if unary and rate:
        out["offered_per_s"] = rate
    return out


async def _setup(target: str, admin_token: str, pos_token: str, n_cards: int) -> np.ndarray:
    cards = list(range(CARD_BASE, CARD_BASE + n_cards))
    async with aio_channel(target) as ch:
        pos, admin = stubs(ch)
        await issue_and_fund(admin, pos, admin_token, pos_token, cards, FUND_FEN)
    return np.array(cards, dtype=np.uint64)


def swipes_ok_on_server(metrics_url: str) -> int:
    """The server's count of unary Swipe calls that ended OK (its /metrics)."""
    with urllib.request.urlopen(metrics_url, timeout=10) as r:
        text = r.read().decode()
    for line in text.splitlines():
        if (line.startswith("grpc_server_handled_total{") and 'grpc_method="Swipe"' in line
                and 'grpc_code="OK"' in line and 'grpc_type="unary"' in line):
            return int(float(line.rsplit(" ", 1)[1]))
    return 0


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def child_pids(pid: int) -> list[int]:
    """The children of a process (a server's front ends)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except FileNotFoundError:
        return []


def cpu_seconds(pids: list[int]) -> float:
    """User and system CPU time of the processes so far (their own, not their children's)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
        except FileNotFoundError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / _CLOCK_TICKS


def add_cpu(result: dict, key: str, seconds: float) -> None:
    """CPU per OK call in us (one process's, or several's): the steadier figure on a
    shared machine."""
    calls = result.get("server_ok") or result.get("swipes") or 0
    result[key] = round(seconds / calls * 1e6, 1) if calls else 0.0


def _native_binary() -> str | None:
    """The native driver, or None after saying on stderr why it cannot be used."""
    try:
        return loadgen.build()
    except loadgen.NativeUnavailable as e:
        print(f"mms bench grpc: the native driver is unavailable ({e}); "
              "using the Python driver", file=sys.stderr)
        return None


def _load(args, target: str, token: str, cards: np.ndarray, native: str | None,
          rate: float | None = None) -> dict:
    rate = args.rate if rate is None else rate
    if native is not None:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        report = loadgen.run(native, target, token, streams=args.streams, seconds=args.seconds,
                             rate=rate, card_base=int(cards[0]), cards=len(cards),
                             amount_max=SWIPE_AMOUNT_FEN_MAX)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)  # the client, once it ended
        result = loadgen.summary(report, streams=args.streams, rate=rate)
        add_cpu(result, "client_cpu_us_per_call", after.ru_utime + after.ru_stime
                - before.ru_utime - before.ru_stime)
        return result
    result = asyncio.run(run_load(target, token, cards, streams=args.streams,
                                  seconds=args.seconds, batch=args.batch, unary=args.unary,
                                  rate=rate))
    if args.unary:
        result["driver"] = "python"
    return result


def _ceiling(args, cards: np.ndarray, native: str | None) -> dict:
    """The same driver and callers against the no-op server (or --ceiling-processes of them
    on one port), as fast as they go; with --rate, then once more at that rate (`at_rate`:
    what gRPC alone costs a call when calls come one by one, the CPU per call that mms's
    at the same rate is to be read against)."""
    processes = getattr(args, "ceiling_processes", 1)
    with NoopGroup(processes) as noop:
        pids = [c.proc.pid for c in noop.children]
        cpu0 = cpu_seconds(pids)
        result = _load(args, noop.target, "noop", cards, native, rate=0.0)
        add_cpu(result, "cpu_us_per_call", cpu_seconds(pids) - cpu0)
        if args.rate:
            cpu0 = cpu_seconds(pids)
            result["at_rate"] = _load(args, noop.target, "noop", cards, native)
            add_cpu(result["at_rate"], "cpu_us_per_call", cpu_seconds(pids) - cpu0)
    result["processes"] = processes
    return result


def add_ceiling(result: dict, ceiling: dict) -> None:
    """Put the no-op server's figures beside mms's: ceiling_per_s, its latencies, ratio."""
    result["ceiling_per_s"] = ceiling["swipes_per_s"]
    result["ceiling_p50_ms"] = ceiling["p50_ms"]
    result["ceiling_p99_ms"] = ceiling["p99_ms"]
    result["ceiling_errors"] = ceiling["errors"]
    result["ceiling_processes"] = ceiling["processes"]
    result["ceiling_cpu_us_per_call"] = ceiling["cpu_us_per_call"]
    if "client_cpu_us_per_call" in ceiling:
        result["ceiling_client_cpu_us_per_call"] = ceiling["client_cpu_us_per_call"]
    at_rate = ceiling.get("at_rate")
    if at_rate is not None:
        # The no-op at mms's --rate: its rate served, latencies and CPU per call.
        for key in ("swipes_per_s", "p50_ms", "p99_ms", "cpu_us_per_call"):
            result[f"ceiling_at_rate_{key}"] = at_rate[key]
        result["ceiling_at_rate_errors"] = at_rate["errors"]
    # A ratio of two timings (float is right: no money here).
    result["ratio"] = (round(result["swipes_per_s"] / ceiling["swipes_per_s"], 3)
                       if ceiling["swipes_per_s"] else 0.0)


def main_grpc(args) -> int:
    if not 1 <= args.batch <= 4096 or args.streams < 1 or args.seconds <= 0:
        print("mms bench grpc: --batch 1..4096, --streams >= 1, --seconds > 0", file=sys.stderr)
        return 2
    driver = getattr(args, "driver", "python")
    if driver == "native" and not args.unary:
        print("mms bench grpc: --driver native drives unary Swipe only (add --unary)",
              file=sys.stderr)
        return 2
    ceiling = getattr(args, "ceiling", False)
    if ceiling and not args.unary:
        print("mms bench grpc: --ceiling measures unary Swipe only (add --unary)",
              file=sys.stderr)
        return 2
    processes = getattr(args, "ceiling_processes", 1)
    if not 1 <= processes <= NOOP_PROCESSES_MAX or (processes != 1 and not ceiling):
        print(f"mms bench grpc: --ceiling-processes N (1 to {NOOP_PROCESSES_MAX}) goes with "
              "--ceiling", file=sys.stderr)
        return 2
    native = _native_binary() if driver == "native" else None
    if args.target:
        if not args.token:
            print("mms bench grpc: --target needs --token", file=sys.stderr)
            return 2
        cards = np.arange(CARD_BASE, CARD_BASE + args.cards, dtype=np.uint64)
        result = _load(args, args.target, args.token, cards, native)
    else:
        with tempfile.TemporaryDirectory(prefix="mms-bench-") as tmp:
            terms = [TerminalSpec(1, 0, "admin"), TerminalSpec(2, 1, "pos")]
            front_ends = getattr(args, "front_ends", 0)
            with ChildServer(tmp, terms, extra={"front_ends": front_ends} if front_ends
                             else None) as child:
                cards = asyncio.run(_setup(child.target, child.token("admin"),
                                           child.token("pos"), args.cards))
                before = swipes_ok_on_server(child.metrics_url) if args.unary else 0
                writer, fronts = [child.proc.pid], child_pids(child.proc.pid)
                cpu0 = cpu_seconds(writer), cpu_seconds(fronts)
                result = _load(args, child.target, child.token("pos"), cards, native)
                cpu1 = cpu_seconds(writer), cpu_seconds(fronts)
                if args.unary:
                    result["server_ok"] = swipes_ok_on_server(child.metrics_url) - before
                result["front_ends"] = front_ends
                # The server's process CPU per OK call: the writer's (the whole server
                # without front ends) and its front ends' together.
                add_cpu(result, "server_cpu_us_per_call", cpu1[0] - cpu0[0])
                if front_ends:
                    add_cpu(result, "front_cpu_us_per_call", cpu1[1] - cpu0[1])
    if ceiling:
        add_ceiling(result, _ceiling(args, cards, native))
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:>14}: {v}")
    return 0
