"""Promotion and rejoining with two in-process nodes over gRPC (no etcd): the standby
is promoted with a new epoch and keeps every acknowledged op; the old primary, which
committed a tail that was never confirmed (so never acknowledged, in sync mode), rejoins
as a standby, discards that tail and ends identical to the new primary; a standby that
has applied the new epoch refuses a primary of the old one (STALE_EPOCH)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time

import grpc
import numpy as np
import pytest

from core import Engine, EngineClosed, Feed, read_position
from core.records import Result
from server.client import error_info
from server.mms_pb import replication_pb2_grpc
from server.rpc.guard import GuardedServer, RequestGuard
from server.rpc.metrics import Metrics
from server.rpc.replication import ReplicatedNode, ReplicationService, Standby, rejoin_as_standby
from tests.common import cid
from tests.engine.test_replication import assert_same, dump_env

TOKEN = "failover-token"
WAIT_S = 60.0


class Node:
    """A ReplicationService over an engine, on its own event loop thread."""

    def __init__(self, engine: Engine | None, servicer=None) -> None:
        """servicer: serve this one instead (a ReplicatedNode's router)."""
        self.engine = engine
        self.servicer = servicer or ReplicationService(engine, TOKEN)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.server = None
        self.addr = asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(WAIT_S)

    async def _start(self) -> str:
        self.server = grpc.aio.server()
        # Through the guard, as mms serve registers it (its serializer lets the frames'
        # wire bytes through).
        guarded = GuardedServer(self.server, RequestGuard(Metrics()))
        replication_pb2_grpc.add_ReplicationServiceServicer_to_server(self.servicer, guarded)
        port = self.server.add_insecure_port("127.0.0.1:0")
        await self.server.start()
        return f"127.0.0.1:{port}"

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(0), self.loop).result(WAIT_S)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


COMPARE_TRIES_MAX = 5


def _until_frame(standby: Standby, frame: int) -> None:
    done = threading.Event()
    standby.replica.add_listener(lambda f, _n: done.set() if f.number >= frame else None)
    if standby.replica.applied_frame >= frame:
        done.set()
    assert done.wait(WAIT_S), f"the standby reached frame {frame}"


def _until(standby: Standby, seq: int) -> None:
    """Wait (bounded) until the standby has applied journal seq."""
    done = threading.Event()
    standby.replica.add_listener(lambda _f, _n: done.set() if standby.replica.applied_seq >= seq else None)
    if standby.replica.applied_seq >= seq:
        done.set()
    assert done.wait(WAIT_S), f"the standby reached seq {seq}"


def test_promote_then_the_old_primary_rejoins_and_discards_its_tail(tmp_path):
    a_dir, b_dir = str(tmp_path / "a"), str(tmp_path / "b")
    old = Engine(a_dir, feed=Feed(1, mode="sync", on_standby_lost="wait"))
    node_a = Node(old)
    b = Standby(b_dir, node_a.addr, token=TOKEN)
    c = Standby(str(tmp_path / "c"), node_a.addr, token=TOKEN)  # a second standby
    # 6,000 cards: one frame of 2.5 MB, more than one chunk on the wire.
    assert old.issue_cards(np.arange(1, 6_001), cid()).result(WAIT_S).code == Result.OK
    acked = []
    for k in range(20):
        r = old.recharge(1 + k % 10, 100 + k, cid()).result(WAIT_S)
        assert r.codes[0] == Result.OK
        acked.append(int(r.seq[0]))
    _until(b, max(acked))
    _until(c, max(acked))
    c.stop()   # c has every acknowledged op, as b has
    # The standby stops confirming: an op commits on the primary and is never acknowledged.
    b.pause_confirms()
    held = old.recharge(1, 55_555, cid())
    _until(b, max(acked) + 1)
    b.stop()   # the standby loses the primary (it has applied the frame, never confirmed it)
    tail = old.recharge(2, 77_777, cid())  # never reaches the standby
    with pytest.raises(concurrent.futures.TimeoutError):
        held.result(0)
    node_a.stop()
    old.close()   # the held acknowledgements are failed, never sent
    for fut in (held, tail):
        with pytest.raises(EngineClosed):
            fut.result(WAIT_S)
    a_frame, a_epoch = read_position(a_dir)
    assert a_epoch == 1 and a_frame > b.replica.applied_frame

    # Promotion: epoch 2, every acknowledged op is there.
    new = b.promote(2, feed=Feed(2, mode="sync", on_standby_lost="wait"))
    for seq in acked:
        assert new.journal_record(seq) is not None
    assert new.card(2)["principal_fen"] == sum(100 + k for k in range(20) if k % 10 == 1)
    node_b = Node(new)
    # The second standby follows the new primary from where it was, same engine.
    c.follow(node_b.addr)
    # The old primary rejoins: DIVERGED (it holds frames the new primary never had), so it
    # discards its store, bootstraps from the new primary and follows.
    a = rejoin_as_standby(a_dir, node_b.addr, token=TOKEN)
    assert a.replica.applied_epoch == 2
    assert a.engine.card(2)["principal_fen"] == new.card(2)["principal_fen"]  # the tail is gone
    r = new.recharge(3, 4_000, cid()).result(WAIT_S)  # sync: a standby (a or c) confirmed it
    assert r.codes[0] == Result.OK
    _until(a, int(r.seq[0]))
    assert a.engine.card(3)["principal_fen"] == new.card(3)["principal_fen"]
    _until(c, int(r.seq[0]))
    assert c.error is None and c.replica.applied_epoch == 2
    assert c.engine.card(3)["principal_fen"] == new.card(3)["principal_fen"]
    c.close()
    # a and the new primary are identical, database by database, at one frame.
    for _ in range(COMPARE_TRIES_MAX):
        frame = new.feed.last_committed
        _until_frame(a, frame)
        theirs, mine = dump_env(new.store.env), dump_env(a.engine.store.env)
        if new.feed.last_committed == frame == a.replica.applied_frame:
            break
    else:
        raise AssertionError("the new primary kept committing")
    assert_same(theirs, mine)
    a.close()
    node_b.stop()
    new.close()
    # A stale primary (epoch 1) cannot feed a standby that has applied epoch 2.
    stale = Engine(str(tmp_path / "stale"), feed=Feed(1))
    node_s = Node(stale)
    try:
        with pytest.raises(grpc.RpcError) as e:
            Standby(a_dir, node_s.addr, token=TOKEN, start=False)
    finally:
        node_s.stop()
        stale.close()
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "epoch 1" in e.value.details() and "epoch 2" in e.value.details()
    assert read_position(a_dir)[1] == 2


def test_a_standby_knows_how_far_behind_the_primary_it_is(tmp_path):
    """primary_seq comes with the frames; ReplicatedNode.lagging (what candidacy asks)
    compares it with the applied seq against the configured bound."""
    eng = Engine(str(tmp_path / "p"), feed=Feed(1))
    node_p = Node(eng)
    node = ReplicatedNode(str(tmp_path / "s"), token=TOKEN, lag_records_max=5)
    try:
        assert node.lagging() == "" and node.position() == (0, 0, 0)
        node.rejoin_as_standby(node_p.addr)   # an empty store: bootstraps, then follows
        wait = threading.Event()
        assert eng.issue_cards(np.arange(1, 11), cid()).result(WAIT_S).code == Result.OK
        r = eng.recharge(1, 500, cid()).result(WAIT_S)
        seq = int(r.seq[0])

        def caught_up():
            st = node.standby
            return st is not None and st.replica.applied_seq >= seq and st.primary_seq >= seq

        deadline = time.monotonic() + WAIT_S
        while not caught_up() and time.monotonic() < deadline:
            wait.wait(0.02)
        assert caught_up(), node.status()
        assert node.standby.primary_seq == eng.feed.last_seq
        assert node.lagging() == ""
        # What it knows the primary had, beyond the bound: it must not campaign.
        node.standby.primary_seq = node.standby.replica.applied_seq + 6
        assert "6 records behind" in node.lagging()
        node.lag_records_max = 0   # no bound configured: always a candidate
        assert node.lagging() == ""
    finally:
        node.close()
        node_p.stop()
        eng.close()


def test_the_server_serves_from_the_engine_swapped_in(tmp_path):
    """MmsServer.swap_engine (what a change of role calls): while the store is closed a
    read answers UNAVAILABLE / NODE_CHANGING_ROLE (never INTERNAL); once the new engine
    is swapped in, the chain (sessions), the members (their search index), reads and
    writes all work from it."""
    from test_admin_rpc import Env, bootstrap

    from server.mms_pb import admin_pb2

    data = str(tmp_path / "d")
    e = Env(data)
    try:
        bootstrap(e)
        m = e.call("root", "CreateMember", admin_pb2.CreateMemberRequest(
            client_id=cid(), profile=admin_pb2.MemberProfile(name="Li Na", phone="13900139000")))
        e.call("root", "IssueCards", admin_pb2.IssueCardsRequest(client_id=cid(), card_nos=[5],
                                                                 member_ids=[m.member_id]))
        journal = admin_pb2.GetCardJournalRequest(card_no=5, limit=10)
        before = e.call("root", "GetCardJournal", journal)
        assert len(before.entries) >= 1
        e.engine.close()   # the old engine closed; the new one not open yet
        with pytest.raises(grpc.RpcError) as err:
            e.call("root", "GetCardJournal", journal)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert error_info(err.value)[0] == "NODE_CHANGING_ROLE"
        e.engine = Engine(data, observer=e.metrics)
        e.server.swap_engine(e.engine)
        assert e.call("root", "GetCardJournal", journal) == before   # the same session
        found = e.call("root", "SearchMembers", admin_pb2.SearchMembersRequest(name="Li"))
        assert [x.member_id for x in found.members] == [m.member_id]
        e.call("root", "IssueCards", admin_pb2.IssueCardsRequest(client_id=cid(), card_nos=[6]))
        assert e.engine.card(6) is not None   # the swapped-in engine took the write
        assert e.members.engine is e.engine and e.chain.engine is e.engine
    finally:
        e.close()


def test_a_new_empty_node_leaves_the_first_leadership_to_a_single_servers_store(tmp_path):
    """A single server's store (journal records, no frame) restarted as an [ha] node is
    ahead of a new node's empty store: the empty one's candidacy defers to it (peer
    rule), and the single server's does not defer to the empty one."""
    single_dir, empty_dir = str(tmp_path / "single"), str(tmp_path / "empty")
    eng = Engine(single_dir)  # no feed: a plain single server
    assert eng.issue_cards(np.arange(1, 6), cid()).result(WAIT_S).code == Result.OK
    eng.close()
    single = ReplicatedNode(single_dir, token=TOKEN)
    empty = ReplicatedNode(empty_dir, token=TOKEN)
    srv_single, srv_empty = Node(None, single.router), Node(None, empty.router)
    try:
        assert single.position()[:2] == (0, 0) and single.position()[2] == 5
        assert empty.position() == (0, 0, 0)
        assert empty.peer_ahead({"single": srv_single.addr}, WAIT_S) == "single"
        assert single.peer_ahead({"empty": srv_empty.addr}, WAIT_S) == ""
        # Promoted (it won), its records are the cluster's first data.
        engine = single.promote(1)
        assert engine.card(3) is not None and engine.feed.last_seq == 5
    finally:
        srv_single.stop()
        srv_empty.stop()
        single.close()
        empty.close()


@pytest.mark.parametrize("mode", ["async", "sync"])
def test_the_primary_says_how_often_to_confirm_and_the_last_frame_is_confirmed(tmp_path, mode):
    """An async primary's acceptance asks for confirmations at most every
    REPLICATION_ASYNC_CONFIRM_MS (they only feed the lag metrics); a sync one for every
    frame at once. Either way the standby's newest frame ends confirmed."""
    from server.mms_pb import replication_pb2
    from server.rpc.constants import REPLICATION_ASYNC_CONFIRM_MS

    eng = Engine(str(tmp_path / "p"), feed=Feed(1, mode=mode))
    node_p = Node(eng)
    standby = None
    try:
        with grpc.insecure_channel(node_p.addr) as ch:
            stop = threading.Event()

            def requests():
                yield replication_pb2.SubscribeRequest(after_frame=eng.feed.last_committed,
                                                       epoch=1, standby="probe")
                stop.wait(WAIT_S)

            call = replication_pb2_grpc.ReplicationServiceStub(ch).Subscribe(
                requests(), metadata=(("authorization", f"Bearer {TOKEN}"),))
            accepted = next(call)
            stop.set()
            call.cancel()
        want = 0 if mode == "sync" else REPLICATION_ASYNC_CONFIRM_MS
        assert accepted.confirm_interval_ms == want and not accepted.data
        standby = Standby(str(tmp_path / "s"), node_p.addr, token=TOKEN)
        assert eng.issue_cards([1, 2, 3], cid()).result(WAIT_S).code == Result.OK
        for k in range(20):
            assert eng.recharge(1 + k % 3, 10, cid()).result(WAIT_S).codes[0] == Result.OK
        last = eng.feed.last_committed
        deadline = time.monotonic() + WAIT_S
        while eng.feed.confirmed < last and time.monotonic() < deadline:
            time.sleep(0.01)
        assert eng.feed.confirmed >= last and eng.feed.status()["lag_records"] == 0
    finally:
        if standby is not None:
            standby.close()
        node_p.stop()
        eng.close()
