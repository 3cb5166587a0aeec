"""Failover with replication, end to end (issue 14 §6): three real `mms serve` nodes with
[ha] and sync replication on a real three-member etcd (lease TTL 2 s), on loopback.

Tills keep swiping and recharging through LeaderFollower, each op with its own client id
retried with that same id until it is answered. The leader is SIGKILLed ten times (the
killed node restarted each time, to rejoin as a standby of the new leader) and once
SIGSTOPped past its lease. After each failover, with the load paused:

- no acknowledged op is lost: every op a till was answered OK for is in the new
  leader's journal at the seq it was answered with, same client id, same result;
- none is applied twice: each client id has one record in every journal;
- every card's balance equals the sum of its journal on every node (as GetCard serves it);
- every node holds the same data, database by database (dumps in one read transaction
  each, taken while Status says every node is at the same frame before and after);
- the stopped old primary acknowledged nothing after its lease could have expired.

Every wait is on an observable condition with a bound (a leader line, a Status frame,
an answer), never a sleep. One lease TTL of 2 s makes each takeover ~2-3 s."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import statistics
import threading
import time

import grpc
import numpy as np
from etcd_harness import (
    LEASE_TTL_S,
    TAKEOVER_TIMEOUT_S,
    TERMINALS,
    dumps_at_one_frame,
    etcd_cluster,
    leader_of,
    nodes_on,
    restart,
    resume_fenced,
    wait_for,
)

from core.records import JOURNAL, RecordKind, Result, split_client_id
from server.client import CHANNEL_OPTIONS, LeaderFollower, auth, error_info
from server.mms_pb import admin_pb2, pos_pb2, pos_pb2_grpc
from server.rpc.replication import status_of
from server.tools.cluster import REPLICATION_TOKEN, Node, bound_s
from server.tools.launch import issue_and_fund
from tests.engine.test_replication import assert_same, dump_dir

KILLS = 10
TILLS = 3
CARDS = list(range(7_100, 7_100 + TILLS))
PROBE_CARDS = list(range(7_200, 7_200 + KILLS + 2))
FUND_FEN = 10_000_000
CALL_TIMEOUT_S = 30.0
# A till gives up on one attempt after this and sends the same op again (with the same
# id), as a POS would: an attempt sent to a stopped node must not hold it for long.
TILL_ATTEMPT_TIMEOUT_S = 3.0
REPLICATION = {"mode": "sync", "on_standby_lost": "wait"}
# Ops each till gets acknowledged between two failovers (the load is really running).
OPS_PER_ROUND = 5
PHONE = "13800138000"


def _following(targets: list[str], service: str, method: str, request, token: str):
    async def go():
        async with LeaderFollower(targets) as f:
            r = await f.call(service, method, request, metadata=auth(token),
                             timeout=bound_s(CALL_TIMEOUT_S))
            return r, f.target
    return asyncio.run(go())


class Tills:
    """Tills that swipe and recharge their own card through LeaderFollower; an op not
    answered (a timeout, the follower giving up) is sent again with the same id. What
    each was answered, per client id. `paused` holds them between ops."""

    def __init__(self, targets: list[str]) -> None:
        self.targets = targets
        self.stop = threading.Event()
        self.run = threading.Event()
        self.run.set()
        self.idle = [threading.Event() for _ in CARDS]
        self.acked: dict[bytes, tuple] = {}  # id -> (card, op, amount, OpResult, node)
        self.lock = threading.Lock()
        self.errors: list[str] = []
        self.threads = [threading.Thread(target=self._till, args=(i,)) for i in range(TILLS)]

    def _till(self, i: int) -> None:
        asyncio.run(self._loop(i))

    async def _loop(self, i: int) -> None:
        md = auth(TERMINALS[1].token)
        async with LeaderFollower(self.targets) as f:
            k = 0
            while not self.stop.is_set():
                if not self.run.is_set():
                    self.idle[i].set()
                    await asyncio.to_thread(self.run.wait, CALL_TIMEOUT_S)
                    continue
                self.idle[i].clear()
                client_id = os.urandom(16)
                swipe = k % 2 == 1
                amount = 3 if swipe else 7
                req = (pos_pb2.SwipeRequest(client_id=client_id, card_no=CARDS[i], amount_fen=amount)
                       if swipe else
                       pos_pb2.RechargeRequest(client_id=client_id, card_no=CARDS[i],
                                               amount_fen=amount))
                while True:  # the same id until answered
                    try:
                        r = await f.call("pos", "Swipe" if swipe else "Recharge", req,
                                         metadata=md, timeout=TILL_ATTEMPT_TIMEOUT_S)
                        break
                    except grpc.RpcError as e:
                        self.errors.append(f"{e.code().name} {error_info(e)[0]}")
                        if e.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                            f.skip_target()  # a stopped node: the next one, same id
                        if self.stop.is_set():
                            return
                with self.lock:
                    self.acked[client_id] = (CARDS[i], "swipe" if swipe else "recharge",
                                             amount, r.result, f.target)
                k += 1

    def count(self) -> int:
        with self.lock:
            return len(self.acked)

    def pause(self) -> None:
        for e in self.idle:
            e.clear()
        self.run.clear()
        for i, e in enumerate(self.idle):
            if not e.wait(bound_s(2 * CALL_TIMEOUT_S)):
                raise TimeoutError(f"till {i} did not pause")

    def resume(self) -> None:
        self.run.set()

    def __enter__(self) -> Tills:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.run.set()
        for t in self.threads:
            t.join(bound_s(2 * CALL_TIMEOUT_S))


def _status(node: Node) -> dict | None:
    try:
        return status_of(node.address, REPLICATION_TOKEN, timeout_s=5)
    except grpc.RpcError:
        return None


def _journal(dump: dict) -> np.ndarray:
    blocks = [np.frombuffer(v, dtype=JOURNAL) for _k, v in sorted(dump.get("journal", {}).items())]
    return np.concatenate(blocks) if blocks else np.zeros(0, JOURNAL)


def _card_balance(target: str, card_no: int) -> int:
    with grpc.insecure_channel(target, options=CHANNEL_OPTIONS) as ch:
        r = pos_pb2_grpc.PosServiceStub(ch).GetCard(pos_pb2.GetCardRequest(card_no=card_no),
                                                    metadata=auth(TERMINALS[1].token), timeout=10)
        return int(r.card.principal_fen) + int(r.card.bonus_fen)


def _converged(nodes: list[Node], leader: Node) -> dict[str, dict]:
    """Once every node is at the leader's frame: each node's dump, taken while Status says
    all are at one frame before and after (so the dumps are of one state)."""
    def same_frame():
        st = [_status(n) for n in nodes]
        if any(s is None for s in st):
            return None
        lead = next(s for n, s in zip(nodes, st, strict=True) if n is leader)
        if lead["role"] != "primary" or any(s["frame"] != lead["frame"] for s in st):
            return None
        return lead["frame"]

    return dumps_at_one_frame(nodes, same_frame)


def _check(nodes: list[Node], leader: Node, tills: Tills) -> None:
    """The invariants after a failover, with the load paused."""
    got = _converged(nodes, leader)
    ref = got[leader.name]
    for name, d in got.items():
        assert_same(ref, d), name
    journal = _journal(ref)
    cards = journal[journal["kind"] == RecordKind.KIND_CARD]
    by_seq = {int(r["seq"]): r for r in cards}
    # No acknowledged op lost: at its seq, with its id and its result.
    with tills.lock:
        acked = dict(tills.acked)
    for client_id, (card, _op, _amount, res, _node) in acked.items():
        assert res.code == Result.OK, (card, res)
        rec = by_seq.get(int(res.seq))
        assert rec is not None, f"acknowledged op at seq {res.seq} is not in the journal"
        hi, lo = split_client_id(client_id)
        assert (int(rec["client_hi"]), int(rec["client_lo"])) == (hi, lo)
        assert int(rec["card_no"]) == card and int(rec["result"]) == int(res.code)
        assert int(rec["principal_delta_fen"]) == res.principal_delta_fen
        assert int(rec["bonus_delta_fen"]) == res.bonus_delta_fen
    # None applied twice: a till's op (one record) has exactly one record with its id;
    # any id's records are one op's (consecutive seqs: an IssueCards has one per card).
    ids = (cards["client_hi"].astype(object) * (1 << 64)
           + cards["client_lo"].astype(object)).tolist()
    seqs_of: dict[int, list[int]] = {}
    for i, seq in zip(ids, cards["seq"].tolist(), strict=True):
        seqs_of.setdefault(i, []).append(int(seq))
    for client_id in acked:
        hi, lo = split_client_id(client_id)
        assert len(seqs_of[hi * (1 << 64) + lo]) == 1, "an acknowledged op applied twice"
    for i, seqs in seqs_of.items():
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), f"id {i:#x} applied twice"
    # Every card's balance equals its journal, on every node.
    for card in CARDS + PROBE_CARDS:
        mine = cards[cards["card_no"] == card]
        total = int(mine["principal_delta_fen"].sum() + mine["bonus_delta_fen"].sum())
        for n in nodes:
            assert _card_balance(n.address, card) == total, (n.name, card)


def _start(tmp_path, etcd, names=("a", "b", "c"), rules: dict | None = None) -> list[Node]:
    nodes = []
    for name in names:
        nodes.append(Node(str(tmp_path / name), name, etcd.endpoints, TERMINALS,
                          lease_ttl_s=LEASE_TTL_S, cluster="repl", replication=REPLICATION,
                          rules=rules).start())
    return nodes


def _seed(targets: list[str]) -> None:
    async def go():
        async with LeaderFollower(targets) as f:
            class Via:
                def __init__(self, service):
                    self.service = service

                def __getattr__(self, method):
                    async def call(req, **kw):
                        return await f.call(self.service, method, req, **kw)
                    return call
            await issue_and_fund(Via("admin"), Via("pos"), TERMINALS[0].token,
                                 TERMINALS[1].token, CARDS + PROBE_CARDS, FUND_FEN)
    asyncio.run(go())


def _seeded_trio(tmp_path, etcd, nodes: list[Node]) -> tuple[list[str], Node]:
    """Three nodes started into nodes, the cards seeded through the leader: every node's
    address, and the leader."""
    nodes.extend(_start(tmp_path, etcd))
    targets = [n.address for n in nodes]
    leader = wait_for(lambda: leader_of(nodes), TAKEOVER_TIMEOUT_S, "a leader")
    _seed(targets)
    return targets, leader


def _kill_under_load(nodes: list[Node], leader: Node, tills: Tills) -> tuple[float, Node]:
    """Once the tills have had a round of ops acknowledged, SIGKILL the leader: when
    (monotonic), and the node that leads next (a later epoch)."""
    n0 = tills.count()
    wait_for(lambda: tills.count() >= n0 + OPS_PER_ROUND * TILLS, TAKEOVER_TIMEOUT_S,
             "the load to be acknowledged")
    epoch = leader.leader_epoch()
    t_kill = time.monotonic()
    leader.kill()
    others = [n for n in nodes if n is not leader]
    new = wait_for(lambda: next((n for n in others if n.leader_epoch()
                                 and n.leader_epoch() > epoch), None),
                   TAKEOVER_TIMEOUT_S, "a new leader")
    return t_kill, new


def _latest_leader(nodes: list[Node]) -> Node | None:
    """The node that took office at the highest epoch (the leader now, or the last one)."""
    led = [(n.leader_epoch(), n) for n in nodes if n.leader_epoch()]
    return max(led, key=lambda x: x[0])[1] if led else None


def _restart_following(nodes: list[Node], dead: Node, leader: Node) -> Node:
    """Start the killed node again in its place in nodes; until it follows the leader:
    leader, or a node that took over from it meanwhile (under load a new leader's lease
    can expire before the restart is done). That leader."""
    i = nodes.index(dead)
    nodes[i] = restart(dead)

    def following():
        now = _latest_leader(nodes)
        return now if now is not None and now is not nodes[i] and nodes[i].lines(
            f"leader={now.name} address={now.address} epoch={now.leader_epoch()}") else None

    return wait_for(following, TAKEOVER_TIMEOUT_S, "the restarted node to follow")


def test_sigkill_the_leader_ten_times_and_sigstop_it_once(tmp_path):
    etcd = etcd_cluster(str(tmp_path / "etcd"))
    with nodes_on(etcd) as nodes:
        targets, leader = _seeded_trio(tmp_path, etcd, nodes)
        epochs = [leader.leader_epoch()]
        takeover_s: list[float] = []
        with Tills(targets) as tills:
            for k in range(KILLS):
                t_kill, new = _kill_under_load(nodes, leader, tills)
                # A probe with one id, sent to the dead node first, lands once.
                req = pos_pb2.RechargeRequest(client_id=os.urandom(16),
                                              card_no=PROBE_CARDS[k], amount_fen=100 + k)
                first, target = _following([leader.address] + targets, "pos", "Recharge",
                                           req, TERMINALS[1].token)
                takeover_s.append(time.monotonic() - t_kill)
                assert target == new.address and not first.result.replayed
                again, _ = _following(targets, "pos", "Recharge", req, TERMINALS[1].token)
                assert again.result.replayed and again.result.seq == first.result.seq
                epochs.append(new.leader_epoch())
                leader = _restart_following(nodes, leader, new)
                t_check = time.monotonic()
                tills.pause()
                _check(nodes, leader, tills)
                tills.resume()
                print(f"kill {k + 1}: takeover {takeover_s[-1]:.2f} s, rejoin "
                      f"{t_check - t_kill - takeover_s[-1]:.2f} s, checks "
                      f"{time.monotonic() - t_check:.2f} s, {tills.count()} acked")
            # One new epoch per kill, each above the last. Not necessarily dense: an epoch
            # won and lost before its winner took office (its lease expired while it
            # promoted, under load) is used by nobody (docs/internals/leadership.md).
            assert len(epochs) == KILLS + 1 and epochs == sorted(set(epochs)), epochs
            print(f"epochs {epochs}")
            print(f"takeover (kill -> new leader acknowledging) over {KILLS} kills: "
                  f"p50 {statistics.median(takeover_s):.2f} s, max {max(takeover_s):.2f} s")
            _sigstop(nodes, leader, tills, targets)
        assert len(tills.acked) > OPS_PER_ROUND * TILLS * KILLS


def _field(line: str, name: str) -> float:
    return float(line.split(f"{name}=")[1].split()[0])


def _sigstop(nodes: list[Node], old: Node, tills: Tills, targets: list[str]) -> None:
    """SIGSTOP the leader past its lease while a till bound to it keeps sending; the
    others elect a new leader; SIGCONT: the old one acknowledged nothing after, rejoins
    as a standby (discarding any tail) and every node converges."""
    others = [n for n in nodes if n is not old]
    answers: list[tuple[float, float, str]] = []  # (sent, answered, what)
    oked: dict[bytes, int] = {}  # the bound till's acknowledged ops: id -> seq
    stop = threading.Event()

    def till() -> None:
        with grpc.insecure_channel(old.address, options=CHANNEL_OPTIONS) as ch:
            stub = pos_pb2_grpc.PosServiceStub(ch)
            while not stop.is_set():
                sent = time.monotonic()
                client_id = os.urandom(16)
                try:
                    r = stub.Recharge(pos_pb2.RechargeRequest(
                        client_id=client_id, card_no=PROBE_CARDS[-1], amount_fen=1),
                        metadata=auth(TERMINALS[1].token), timeout=bound_s(CALL_TIMEOUT_S))
                    oked[client_id] = int(r.result.seq)
                    answers.append((sent, time.monotonic(), "OK"))
                except grpc.RpcError as e:
                    answers.append((sent, time.monotonic(), error_info(e)[0] or e.code().name))

    bound = threading.Thread(target=till)
    bound.start()
    try:
        wait_for(lambda: sum(a == "OK" for *_, a in answers) >= 5, TAKEOVER_TIMEOUT_S,
                 "acks from the primary")
        n0 = tills.count()
        old.signal(signal.SIGSTOP)
        t_stop = time.monotonic()
        epoch = old.leader_epoch()
        new = wait_for(lambda: next((n for n in others if n.leader_epoch()
                                     and n.leader_epoch() > epoch), None),
                       TAKEOVER_TIMEOUT_S, "a new leader")
        won_after = _field(new.lines("mms: leadership: leader")[-1], "won_after")
        wait_for(lambda: tills.count() > n0 + TILLS, TAKEOVER_TIMEOUT_S,
                 "the tills to be acknowledged by the new leader")
        t_cont, fenced = resume_fenced(old, new)
        wait_for(lambda: any(s > t_cont for s, _a, _w in answers), TAKEOVER_TIMEOUT_S,
                 "an answer to a request sent after SIGCONT")
    finally:
        stop.set()
        bound.join(bound_s(2 * CALL_TIMEOUT_S))
    assert _field(fenced[0], "gate_closed_at") < won_after, (fenced, won_after)
    oks = [(s, a) for s, a, w in answers if w == "OK"]
    # Decided while the lease held: sent before the pause; at most the one in flight
    # then is answered after the rival won (docs/internals/leadership.md); every
    # request sent after SIGCONT is NOT_LEADER.
    assert oks and all(s < t_stop for s, _a in oks), (oks[-3:], t_stop)
    assert sum(a > won_after for _s, a in oks) <= 1, (oks[-3:], won_after)
    after = [w for s, _a, w in answers if s > t_cont]
    assert after and set(after) <= {"NOT_LEADER"}, after
    tills.pause()
    _check(nodes, new, tills)
    # The bound till's OKs were acknowledged by the old primary in sync mode: each is
    # on the new leader too, at its seq, with its id.
    journal = _journal(dump_dir(new.child.data))
    by_seq = {int(r["seq"]): r for r in journal}
    assert len(oked) == len(oks)
    for client_id, seq in oked.items():
        rec = by_seq.get(seq)
        assert rec is not None and int(rec["card_no"]) == PROBE_CARDS[-1], seq
        assert (int(rec["client_hi"]), int(rec["client_lo"])) == split_client_id(client_id)
    tills.resume()


def test_a_standby_searches_new_members_and_a_promoted_one_reads_them(tmp_path):
    """The member search index of a standby follows the frames it applies, and pii.key
    reaches a standby with its hot copy, so a promoted standby decrypts members. The
    config's [rules] are what a new cluster's first leader starts with, on every node."""
    etcd = etcd_cluster(str(tmp_path / "etcd"))
    with nodes_on(etcd) as nodes:
        nodes.extend(_start(tmp_path, etcd, ("a", "b"), rules={"points_per_yuan_bp": 25_000}))
        leader = wait_for(lambda: leader_of(nodes), TAKEOVER_TIMEOUT_S, "a leader")
        standby = next(n for n in nodes if n is not leader)
        wait_for(lambda: (_status(standby) or {}).get("frame", 0) > 0, TAKEOVER_TIMEOUT_S,
                 "the standby to bootstrap")
        with open(os.path.join(leader.child.data, "pii.key"), "rb") as f:
            leader_key = f.read()
        with open(os.path.join(standby.child.data, "pii.key"), "rb") as f:
            assert f.read() == leader_key
        targets = [n.address for n in nodes]
        token_path = os.path.join(leader.child.data, "bootstrap.token")
        with open(token_path) as f:
            boot = f.read().strip()
        _following(targets, "admin", "Bootstrap", admin_pb2.BootstrapRequest(
            client_id=os.urandom(16), chain_name="C", admin_login="root",
            admin_password="pw-root-12345", admin_name="Root"), boot)
        r, _ = _following(targets, "admin", "Login", admin_pb2.LoginRequest(
            login="root", password="pw-root-12345"), "")
        session = r.session_token
        created, _ = _following(targets, "admin", "CreateMember", admin_pb2.CreateMemberRequest(
            client_id=os.urandom(16), profile=admin_pb2.MemberProfile(
                name="Zhang Wei", phone=PHONE)), session)

        def found_on(node: Node):
            with grpc.insecure_channel(node.address, options=CHANNEL_OPTIONS) as ch:
                from server.mms_pb import admin_pb2_grpc
                stub = admin_pb2_grpc.AdminServiceStub(ch)
                got = stub.SearchMembers(admin_pb2.SearchMembersRequest(name="Zhang"),
                                         metadata=auth(session), timeout=10)
                return [m.member_id for m in got.members]

        # The standby's search finds the member created after it started.
        wait_for(lambda: found_on(standby) == [created.member_id], TAKEOVER_TIMEOUT_S,
                 "the standby's search to find the new member")
        leader.kill()
        wait_for(lambda: standby.is_leader(), TAKEOVER_TIMEOUT_S, "the standby to lead")
        r, target = _following([standby.address], "admin", "FindMemberByPhone",
                               admin_pb2.FindMemberByPhoneRequest(phone=PHONE), session)
        assert target == standby.address and r.member.member_id == created.member_id
        # Masked from the plaintext: decrypted with the key that came with the hot copy.
        assert r.member.profile.phone.endswith(PHONE[-4:])
        rules, _ = _following([standby.address], "admin", "GetRules",
                              admin_pb2.GetRulesRequest(), session)
        assert json.loads(rules.rules_json)["points_per_yuan_bp"] == 25_000


# Takeovers in the test below: each one a write that needs the other standby to follow.
RESUBSCRIBE_KILLS = 4


def test_after_each_takeover_the_other_standby_follows_and_a_sync_write_is_acknowledged(tmp_path):
    """Sync replication with on_standby_lost = "wait" (REPLICATION): after the leader is
    SIGKILLed, the new leader holds every acknowledgement until a standby confirms it,
    and its only standby is the node that did not win. So a write sent through that
    standby after the takeover (NOT_LEADER, then the new leader) is acknowledged only
    once that standby has followed the new leader: the takeover of `mms cluster demo`
    whose write ended DEADLINE_EXCEEDED. Tills keep writing through every kill, so
    frames are in flight when it dies. Each round: the write is acknowledged within the
    bound, by the new leader, and the other standby's Status names the new leader, has
    no refusal and reaches the leader's frame. The bounds are generous (waits on events,
    nothing timed)."""
    etcd = etcd_cluster(str(tmp_path / "etcd"))
    with nodes_on(etcd) as nodes:
        targets, leader = _seeded_trio(tmp_path, etcd, nodes)
        with Tills(targets) as tills:
            for k in range(RESUBSCRIBE_KILLS):
                _t_kill, new = _kill_under_load(nodes, leader, tills)
                standby = next(n for n in nodes if n is not new and n is not leader)
                req = pos_pb2.RechargeRequest(client_id=os.urandom(16),
                                              card_no=PROBE_CARDS[k], amount_fen=100 + k)
                r, target = _following([standby.address], "pos", "Recharge", req,
                                       TERMINALS[1].token)
                assert target == new.address and not r.result.replayed
                st = wait_for(lambda new=new, standby=standby: (
                    (s := _status(standby)) and s["primary"] == new.address
                    and (lead := _status(new)) and s["frame"] >= lead["frame"] and s),
                    TAKEOVER_TIMEOUT_S, "the other standby at the new leader's frame")
                assert st["role"] == "standby" and not st["error_reason"], st
                leader = _restart_following(nodes, leader, new)
