"""`mms demo`: a demo chain on a local server with a simulated POS fleet.

The server runs as a child process (`mms serve`, fsync on) so the fleet, driven here
with asyncio, is a real gRPC client: store gateways stream batches of swipes, tills
call unary Swipe, service desks recharge, and a small share of the traffic is bad on
purpose (unknown cards, zero amounts, a till claiming another store, a revoked token)
so the summary shows rejects by reason.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
import tempfile
import time
from collections import Counter

import grpc
import numpy as np

from core.records import new_client_id, new_client_ids
from server.client import (
    FollowingStub,
    LeaderFollower,
    aio_channel,
    auth,
    error_reason,
    stubs,
)
from server.mms_pb import pos_pb2, types_pb2
from server.rpc.auth import revoke_terminal
from server.tools.launch import ChildServer, TerminalSpec, issue_and_fund

REGIONS = {"North": (101, 102, 103), "South": (201, 202, 203)}
TILLS_PER_STORE = 4
CARD_BASE = 8_800_000_000
GATEWAY_BATCH = 200
GATEWAY_PIPELINE = 2
# A gateway sends at most one batch per interval: six gateways offer up to 30,000
# swipes/s, far above a real chain's peak, and leave the tills CPU to answer quickly
# (`mms bench grpc` measures the ceiling).
GATEWAY_INTERVAL_S = 0.04
# A till's pause between customers (scanning, packing, paying).
TILL_PAUSE_S = 0.01
# Share of till calls that are bad on purpose.
BAD_SHARE = 0.03
PROGRESS_EVERY_S = 0.5
PLAIN_PROGRESS_EVERY_S = 5.0
SAMPLES_MAX = 500_000

DEMO_RULES = {
    "points_per_yuan_bp": 10_000,
    "recharge_points_per_yuan_bp": 5_000,
    "tiers": [{"min_pay_fen": 10_000, "bonus_fen": 1_000},
              {"min_pay_fen": 50_000, "bonus_fen": 8_000, "points": 100},
              {"min_pay_fen": 100_000, "bonus_fen": 20_000, "points": 300}],
}


def chain_terminals() -> list[TerminalSpec]:
    terms = [TerminalSpec(1, 0, "admin", "HQ/admin")]
    for region, stores in REGIONS.items():
        for store in stores:
            for k in range(1, TILLS_PER_STORE + 1):
                terms.append(TerminalSpec(store * 10 + k, store, "pos", f"{region}/{store}/till-{k}"))
    terms.append(TerminalSpec(9, 101, "pos", "North/101/revoked"))
    return terms


class Tally:
    def __init__(self) -> None:
        self.swipes_stream = 0
        self.swipes_unary = 0
        self.recharges = 0
        self.rejects: Counter = Counter()
        self.unary_ms: list[float] = []
        self.batch_ms: list[float] = []

    def sample(self, where: list[float], ms: float) -> None:
        if len(where) < SAMPLES_MAX:
            where.append(ms)

    @property
    def swipes(self) -> int:
        return self.swipes_stream + self.swipes_unary


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else 0.0


async def gateway(pos, token: str, store: int, cards: list[int], stop: float, t: Tally,
                  rng: random.Random) -> None:
    sent: dict[int, float] = {}
    window = asyncio.Semaphore(GATEWAY_PIPELINE)
    call = pos.SwipeStream(metadata=auth(token))

    async def writer() -> None:
        i = 0
        next_at = time.monotonic()
        while time.monotonic() < stop:
            await window.acquire()
            next_at += GATEWAY_INTERVAL_S
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            nos = rng.choices(cards, k=GATEWAY_BATCH)
            if rng.random() < 0.2:
                nos[0] = 1  # an unknown card now and then
            amounts = [rng.randint(100, 8_000) for _ in range(GATEWAY_BATCH)]
            sent[i] = time.perf_counter()
            await call.write(pos_pb2.SwipeStreamRequest(
                batch_id=i, store_id=store, swipes=types_pb2.SwipeColumns(
                    client_ids=new_client_ids(GATEWAY_BATCH), card_nos=nos, amount_fen=amounts,
                    category=[rng.randrange(20)] * GATEWAY_BATCH)))
            i += 1
        await call.done_writing()

    task = asyncio.create_task(writer())
    async for resp in call:
        t.sample(t.batch_ms, (time.perf_counter() - sent.pop(resp.batch_id)) * 1e3)
        codes = np.array(resp.results.codes, dtype=np.uint8)
        values, counts = np.unique(codes, return_counts=True)
        for v, c in zip(values.tolist(), counts.tolist(), strict=True):
            if v == types_pb2.RESULT_OK:
                t.swipes_stream += c
            else:
                t.rejects[types_pb2.Result.Name(v)] += c
        window.release()
    await task


async def till(pos, token: str, bad_token: str, store: int, cards: list[int], stop: float,
               t: Tally, rng: random.Random) -> None:
    while time.monotonic() < stop:
        req = pos_pb2.SwipeRequest(client_id=new_client_id(), card_no=rng.choice(cards),
                                   amount_fen=rng.randint(100, 8_000), store_id=store)
        md = auth(token)
        if rng.random() < BAD_SHARE:
            kind = rng.randrange(4)
            if kind == 0:
                req.card_no = 424_242
            elif kind == 1:
                req.amount_fen = 0
            elif kind == 2:
                req.store_id = store + 1
            else:
                md = auth(bad_token)
        t0 = time.perf_counter()
        try:
            await pos.Swipe(req, metadata=md)
            t.swipes_unary += 1
        except grpc.aio.AioRpcError as e:
            t.rejects[error_reason(e)] += 1
        t.sample(t.unary_ms, (time.perf_counter() - t0) * 1e3)
        await asyncio.sleep(TILL_PAUSE_S)


async def desk(pos, token: str, cards: list[int], stop: float, t: Tally,
               rng: random.Random) -> None:
    while time.monotonic() < stop:
        amount = rng.choice((5_000, 10_000, 20_000, 50_000, 100_000))
        try:
            await pos.Recharge(pos_pb2.RechargeRequest(
                client_id=new_client_id(), card_no=rng.choice(cards), amount_fen=amount),
                metadata=auth(token))
            t.recharges += 1
        except grpc.aio.AioRpcError as e:
            t.rejects[error_reason(e)] += 1
        await asyncio.sleep(0.02)


async def progress(t: Tally, start: float, stop: float, out) -> None:
    tty = out.isatty()
    every = PROGRESS_EVERY_S if tty else PLAIN_PROGRESS_EVERY_S
    while True:
        await asyncio.sleep(every)
        el = time.monotonic() - start
        line = (f"{el:5.1f}s  swipes {t.swipes:>10,} ({t.swipes / el:>9,.0f}/s)  "
                f"recharges {t.recharges:>6,}  rejects {sum(t.rejects.values()):>7,}  "
                f"till p99 {pct(t.unary_ms[-2000:], 99):5.1f} ms")
        if tty:
            print("\r" + line, end="", file=out, flush=True)
        else:
            print(line, file=out, flush=True)
        if time.monotonic() >= stop:
            return


async def drive(child: ChildServer, terms: list[TerminalSpec], n_cards: int, seconds: float,
                out) -> Tally:
    cards = list(range(CARD_BASE, CARD_BASE + n_cards))
    rng = random.Random(2024)
    # Most members have paid in; one in fifty has an empty card and will be refused.
    funds = [rng.choice((1_000_000, 2_000_000, 5_000_000)) if i % 50 else 0
             for i in range(n_cards)]
    admin_token = child.token("admin")
    pos_terms = [x for x in terms if x.role == "pos" and not x.name.endswith("revoked")]
    revoked = next(x for x in terms if x.name.endswith("revoked"))
    async with aio_channel(child.target) as ch:
        pos, admin = stubs(ch)
        t0 = time.monotonic()
        await issue_and_fund(admin, pos, admin_token, pos_terms[0].token, cards, funds)
        print(f"created {len(REGIONS)} regions, {sum(map(len, REGIONS.values()))} stores, "
              f"{len(pos_terms)} tills, {n_cards:,} members with cards "
              f"({time.monotonic() - t0:.1f} s)", file=out, flush=True)
    # Revoke one terminal to show UNAUTHENTICATED among the rejects.
    revoke_terminal(child.terminals_file, revoked.terminal_id)
    await asyncio.sleep(1.1)  # the registry re-reads its file at most once a second

    t = Tally()
    start = time.monotonic()
    stop = start + seconds
    channels = [aio_channel(child.target) for _ in range(4)]
    # Tills and desks send their unary calls through followers: against a pair or trio a
    # call refused with NOT_LEADER goes again, same client id, to the leader it names.
    followers = [LeaderFollower([child.target]) for _ in range(2)]
    jobs = []
    stores = sorted({x.store_id for x in pos_terms})
    for i, store in enumerate(stores):
        term = next(x for x in pos_terms if x.store_id == store)
        jobs.append(gateway(stubs(channels[i % 2])[0], term.token, store, cards, stop, t,
                            random.Random(i)))
    for i, term in enumerate(pos_terms):
        jobs.append(till(FollowingStub(followers[i % 2], "pos"), term.token, revoked.token,
                         term.store_id, cards, stop, t, random.Random(100 + i)))
    for i in range(2):
        jobs.append(desk(FollowingStub(followers[1], "pos"), pos_terms[i].token, cards, stop, t,
                         random.Random(200 + i)))
    prog = asyncio.create_task(progress(t, start, stop, out))
    try:
        await asyncio.gather(*jobs)
    finally:
        prog.cancel()
        for ch in channels:
            await ch.close()
        for f in followers:
            await f.close()
    t.elapsed_s = time.monotonic() - start  # type: ignore[attr-defined]
    if out.isatty():
        print(file=out)
    return t


def summary(t: Tally, child: ChildServer, out) -> None:
    el = t.elapsed_s  # type: ignore[attr-defined]
    print(f"\nmms demo: {el:.1f} s of simulated trading", file=out)
    print(f"  swipes applied   {t.swipes:>12,}  {t.swipes / el:>10,.0f}/s  "
          f"(streamed {t.swipes_stream:,}, unary {t.swipes_unary:,})", file=out)
    print(f"  recharges        {t.recharges:>12,}", file=out)
    print(f"  unary Swipe      p50 {pct(t.unary_ms, 50):6.2f} ms   p99 {pct(t.unary_ms, 99):6.2f} ms",
          file=out)
    print(f"  stream batch     p50 {pct(t.batch_ms, 50):6.2f} ms   p99 {pct(t.batch_ms, 99):6.2f} ms"
          f"   ({GATEWAY_BATCH} swipes per batch)", file=out)
    print(f"  rejects          {sum(t.rejects.values()):>12,}", file=out)
    for reason, n in t.rejects.most_common():
        print(f"    {reason:<32} {n:>10,}", file=out)
    print(f"  metrics          {child.metrics_url}", file=out)
    print(f"  gRPC             {child.target} (reflection on; tokens hashed in "
          f"{child.terminals_file})", file=out, flush=True)


def main_demo(args) -> int:
    out = sys.stdout
    tmp = None
    if args.data:
        os.makedirs(args.data, exist_ok=True)
        work = args.data
    else:
        tmp = tempfile.mkdtemp(prefix="mms-demo-")
        work = tmp
    terms = chain_terminals()
    child = ChildServer(work, terms, rules=DEMO_RULES, listen=args.listen, metrics=args.metrics)
    child.start()
    print(f"mms demo: server on {child.target}, data in {child.data}", file=out, flush=True)
    rc = 0
    try:
        t = asyncio.run(drive(child, terms, args.cards, args.seconds, out))
        summary(t, child, out)
        if args.keep:
            admin = next(x for x in terms if x.role == "admin")
            till_ = next(x for x in terms if x.role == "pos")
            print(f"\nstill serving (--keep); a till token: {till_.token}\n"
                  f"admin token: {admin.token}\nCtrl-C to stop.", file=out, flush=True)

            def on_term(signum, frame):
                raise KeyboardInterrupt

            signal.signal(signal.SIGTERM, on_term)
            try:
                while child.proc is not None and child.proc.poll() is None:
                    time.sleep(1.0)
            except KeyboardInterrupt:
                pass
    finally:
        rc_child = child.terminate()
        if rc_child != 0:
            print(f"mms demo: the server exited with {rc_child}", file=sys.stderr)
            rc = 1
        if tmp is not None:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
    return rc
