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
# "till p99" in the progress lines: over this many of the latest unary Swipe calls.
TILL_P99_WINDOW = 2000
# The demo's back office: its first admin, and one member with a card of their own.
DEMO_ADMIN_LOGIN = "admin"
DEMO_MEMBER = {"name": "Demo Member", "phone": "13800000000"}
DEMO_MEMBER_CARD = CARD_BASE - 1
DEMO_MEMBER_FUND_FEN = 50_000

# The rejects the demo causes on purpose, by the reason the server answers, and why.
INJECTED_REJECTS = {
    "RESULT_CARD_NOT_FOUND": "tills swipe card 424242 and gateways card 1, which no one "
                             "was issued: an unknown card changes nothing",
    "RESULT_AMOUNT_NOT_POSITIVE": "tills send a zero amount: refused before the engine",
    "STORE_MISMATCH": "a till claims the store next to its own: a token works only at "
                      "its store",
    "TOKEN_INVALID": "a till uses a token revoked before trading started",
    "RESULT_INSUFFICIENT_BALANCE": "one member in fifty never paid in; their card "
                                   "cannot pay",
}

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
                f"till p99 {pct(t.unary_ms[-TILL_P99_WINDOW:], 99):5.1f} ms")
        if tty:
            print("\r" + line, end="", file=out, flush=True)
        else:
            print(line, file=out, flush=True)
        if time.monotonic() >= stop:
            return


class BackOffice:
    """The demo chain's admin and its one real member (docs/members.md)."""

    def __init__(self, password: str, member_id: int) -> None:
        self.login = DEMO_ADMIN_LOGIN
        self.password = password
        self.member_id = member_id
        self.phone = DEMO_MEMBER["phone"]
        self.card_no = DEMO_MEMBER_CARD


async def back_office(child: ChildServer, admin, pos, admin_token: str, pos_token: str
                      ) -> BackOffice:
    """Bootstrap the chain (its first admin), enrol one member and give them a funded
    card, so that an admin login and a member lookup work while the demo serves."""
    import secrets

    from server.mms_pb import admin_pb2

    with open(os.path.join(child.data, "bootstrap.token")) as f:
        boot = f.read().strip()
    password = secrets.token_urlsafe(12)
    await admin.Bootstrap(admin_pb2.BootstrapRequest(
        client_id=new_client_id(), chain_name="Demo chain", admin_login=DEMO_ADMIN_LOGIN,
        admin_password=password, admin_name="Demo admin"), metadata=auth(boot))
    session = (await admin.Login(admin_pb2.LoginRequest(
        login=DEMO_ADMIN_LOGIN, password=password))).session_token
    member = await admin.CreateMember(admin_pb2.CreateMemberRequest(
        client_id=new_client_id(), profile=admin_pb2.MemberProfile(**DEMO_MEMBER)),
        metadata=auth(session))
    await admin.IssueCards(admin_pb2.IssueCardsRequest(
        client_id=new_client_id(), card_nos=[DEMO_MEMBER_CARD], member_ids=[member.member_id]),
        metadata=auth(admin_token))
    await pos.Recharge(pos_pb2.RechargeRequest(
        client_id=new_client_id(), card_no=DEMO_MEMBER_CARD, amount_fen=DEMO_MEMBER_FUND_FEN),
        metadata=auth(pos_token))
    return BackOffice(password, member.member_id)


def explain(out) -> None:
    """What the demo does on purpose, before the numbers start."""
    print(f"on purpose, about {BAD_SHARE:.0%} of till calls and some gateway swipes are bad, "
          "so that the rejects show how the server refuses (each changes nothing):", file=out)
    for reason, why in INJECTED_REJECTS.items():
        print(f"  {reason:<28} {why}", file=out)
    print(f"till p99 = the time within which 99% of the last {TILL_P99_WINDOW:,} unary "
          "Swipe calls were answered, as a till sees it (the network round trip and a "
          "durable commit)", file=out, flush=True)


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
        office = await back_office(child, admin, pos, admin_token, pos_terms[0].token)
        print(f"created {len(REGIONS)} regions, {sum(map(len, REGIONS.values()))} stores, "
              f"{len(pos_terms)} tills, {n_cards:,} members with cards "
              f"({time.monotonic() - t0:.1f} s)", file=out, flush=True)
    explain(out)
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
    t.office = office  # type: ignore[attr-defined]
    if out.isatty():
        print(file=out)
    return t


def summary(t: Tally, child: ChildServer, out, *, paths: bool = True) -> None:
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
        why = "on purpose" if reason in INJECTED_REJECTS else "NOT on purpose: see the log"
        print(f"    {reason:<32} {n:>10,}  ({why})", file=out)
    print(f"  metrics          {child.metrics_url}", file=out)
    where = f"; tokens hashed in {child.terminals_file}" if paths else ""
    print(f"  gRPC             {child.target} (reflection on{where})", file=out, flush=True)


def next_commands(child: ChildServer, terms: list[TerminalSpec], office: BackOffice | None
                  ) -> list[tuple[str, str]]:
    """(what it shows, the command): three things to try next. With a server still
    serving (office given): a till token at work, an admin login, a member lookup."""
    if office is None:
        return [("keep the server to try a till token, an admin login and a member lookup",
                 "mms demo --keep"),
                ("this machine's ceiling for unary swipes and streams", "mms bench grpc --seconds 5"),
                ("a chain of your own (docs/operating.md)", "mms serve --data ./mms-data")]
    till_ = next(x for x in terms if x.role == "pos")
    return [(f"a till's token: recharge 10.00 yuan onto the member's card {office.card_no}",
             f"printf 'try-1,{office.card_no},1000\\n' > try.csv && "
             f"mms replay try.csv --target {child.target} --token {till_.token}"),
            (f"log in as the chain's admin ({office.login})",
             f"MMS_PASSWORD={office.password} mms login --target {child.target} "
             f"--login {office.login}"),
            (f"look the member up (after the login; phone {office.phone})",
             f"mms member show {office.member_id}")]


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
    # A temporary directory is deleted when the demo ends: its paths are not worth showing.
    where = (f"data in {child.data}" if tmp is None else
             "data in a temporary directory, deleted when the demo ends (--data DIR keeps it)")
    print(f"mms demo: server on {child.target}, {where}", file=out, flush=True)
    rc = 0
    try:
        t = asyncio.run(drive(child, terms, args.cards, args.seconds, out))
        summary(t, child, out, paths=tmp is None)
        office = t.office if args.keep else None  # type: ignore[attr-defined]
        print("\nnext, try:" if not args.keep else
              "\nstill serving (--keep); in another terminal, try:", file=out)
        for i, (what, command) in enumerate(next_commands(child, terms, office), 1):
            print(f"  {i}. {what}:\n     {command}", file=out)
        if args.keep:
            print("Ctrl-C to stop" + (" (the temporary data directory is deleted then)."
                                      if tmp is not None else "."), file=out, flush=True)

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
