"""A single server becomes a cluster (docs/operating.md, "From a single server to a
cluster"): a `mms serve` without [ha] holds a chain's data; it is stopped and started
again with [ha] and [replication] over the same data directory, becomes the first leader
with that data, and two new nodes with empty data directories bootstrap from it by hot
copy and follow. Then every node holds the same data, database by database, the cards
keep their balances, a write through any node lands once on the leader, and when the
leader is killed a new one takes over with everything acknowledged. Real `mms serve`
processes on a real etcd; every wait is on an observable condition."""

from __future__ import annotations

import asyncio
import os
import shutil

from etcd_harness import (
    CARDS,
    FUND_FEN,
    LEASE_TTL_S,
    TAKEOVER_TIMEOUT_S,
    TERMINALS,
    balance,
    dumps_at_one_frame,
    etcd_cluster,
    leader_of,
    nodes_on,
    seeded_data,
    wait_for,
)

from server.client import LeaderFollower, auth
from server.mms_pb import pos_pb2
from server.rpc.replication import status_of
from server.tools.cluster import REPLICATION_TOKEN, Node
from tests.engine.test_replication import assert_same

REPLICATION = {"mode": "sync", "on_standby_lost": "wait"}


def _recharge(targets: list[str], card_no: int, amount: int, client_id: bytes):
    async def go():
        async with LeaderFollower(targets) as f:
            r = await f.call("pos", "Recharge", pos_pb2.RechargeRequest(
                client_id=client_id, card_no=card_no, amount_fen=amount),
                metadata=auth(TERMINALS[1].token), timeout=30)
            return r, f.target
    return asyncio.run(go())


def _converged(nodes: list[Node]) -> dict:
    """Every node's databases once Status says all are at the leader's frame (taken
    between two such answers, so no frame landed meanwhile)."""
    def same_frame():
        st = [status_of(n.address, REPLICATION_TOKEN) for n in nodes]
        primaries = [s for s in st if s["role"] == "primary"]
        if len(primaries) != 1 or any(s["frame"] != primaries[0]["frame"] for s in st):
            return None
        return primaries[0]["frame"]

    return dumps_at_one_frame(nodes, same_frame)


def _same_everywhere(nodes: list[Node]) -> dict:
    got = _converged(nodes)
    ref = next(iter(got.values()))
    for d in got.values():
        assert_same(ref, d)
    return ref


def test_a_single_server_restarted_with_ha_leads_and_new_nodes_bootstrap_from_it(tmp_path):
    single = seeded_data(str(tmp_path / "single"))
    before = {no: FUND_FEN for no in CARDS}
    etcd = etcd_cluster(str(tmp_path / "etcd"))
    with nodes_on(etcd) as nodes:
        # The operator's step 1: the same data directory, now with [ha] and a token.
        os.makedirs(tmp_path / "a")
        shutil.move(single, tmp_path / "a" / "data")
        a = Node(str(tmp_path / "a"), "a", etcd.endpoints, TERMINALS, lease_ttl_s=LEASE_TTL_S,
                 cluster="grow", replication=REPLICATION).start()
        nodes.append(a)
        wait_for(a.is_leader, TAKEOVER_TIMEOUT_S, "the converted node to lead")
        assert {no: balance(a.address, no) for no in CARDS} == before
        # Step 2: new nodes, empty data directories: they bootstrap from the leader.
        for name in ("b", "c"):
            nodes.append(Node(str(tmp_path / name), name, etcd.endpoints, TERMINALS,
                              lease_ttl_s=LEASE_TTL_S, cluster="grow",
                              replication=REPLICATION).start())
        assert leader_of(nodes) is a
        _same_everywhere(nodes)
        for n in nodes:
            assert {no: balance(n.address, no) for no in CARDS} == before, n.name
        # A write sent to a new node follows NOT_LEADER to the converted one, lands once.
        targets = [n.address for n in nodes]
        cid = os.urandom(16)
        first, where = _recharge([nodes[1].address] + targets, CARDS[0], 500, cid)
        assert where == a.address and not first.result.replayed
        ref = _same_everywhere(nodes)
        assert all(balance(n.address, CARDS[0]) == FUND_FEN + 500 for n in nodes)
        assert ref["journal"], "the converted node's journal is everyone's"
        # The cluster fails over with the single server's data and the write.
        a.kill()
        new = wait_for(lambda: leader_of(nodes[1:]), TAKEOVER_TIMEOUT_S, "a new leader")
        again, where = _recharge([n.address for n in nodes[1:]], CARDS[0], 500, cid)
        assert again.result.replayed and again.result.seq == first.result.seq
        assert where == new.address
        assert balance(new.address, CARDS[0]) == FUND_FEN + 500
        assert all(balance(new.address, no) == FUND_FEN for no in CARDS[1:])


def test_a_single_servers_store_joining_a_cluster_that_has_a_leader_is_refused_not_overwritten(
        tmp_path):
    """The wrong order: a cluster already leads (over empty data) when the single
    server's store starts with [ha]. It must not follow (that would replace its data
    with the leader's): it says NOT_A_REPLICA, keeps serving its own data as reads, and
    the leader is untouched."""
    single = seeded_data(str(tmp_path / "single"))
    etcd = etcd_cluster(str(tmp_path / "etcd"), members=1)
    with nodes_on(etcd) as nodes:
        b = Node(str(tmp_path / "b"), "b", etcd.endpoints, TERMINALS, lease_ttl_s=LEASE_TTL_S,
                 cluster="wrong", replication=REPLICATION).start()
        nodes.append(b)
        wait_for(b.is_leader, TAKEOVER_TIMEOUT_S, "the empty node to lead")
        os.makedirs(tmp_path / "a")
        shutil.move(single, tmp_path / "a" / "data")
        a = Node(str(tmp_path / "a"), "a", etcd.endpoints, TERMINALS, lease_ttl_s=LEASE_TTL_S,
                 cluster="wrong", replication=REPLICATION).start()
        nodes.append(a)
        st = wait_for(lambda: (lambda s: s if s["error_reason"] else None)(
            status_of(a.address, REPLICATION_TOKEN)), TAKEOVER_TIMEOUT_S, "a's refusal")
        assert st["role"] == "standby" and st["error_reason"] == "NOT_A_REPLICA", st
        assert "From a single server to a cluster" in st["error_message"]
        assert {no: balance(a.address, no) for no in CARDS} == {no: FUND_FEN for no in CARDS}
        assert leader_of(nodes) is b
        assert status_of(b.address, REPLICATION_TOKEN)["seq"] == 0
