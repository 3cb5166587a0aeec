"""Leadership through real `mms serve` processes on a real three-member etcd: one node
wins and takes writes; the others answer UNAVAILABLE / NOT_LEADER naming it and still
serve reads; a client that follows NOT_LEADER retries with the same client id and the op
is applied once."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from common import cid
from etcd_harness import (
    CARDS,
    FUND_FEN,
    TAKEOVER_TIMEOUT_S,
    TERMINALS,
    balance,
    etcd_cluster,
    leader_of,
    not_leader_of,
    seed_nodes,
    start_nodes,
    wait_for,
)

from server.client import LeaderFollower, auth, error_info
from server.mms_pb import admin_pb2, admin_pb2_grpc, pos_pb2


@pytest.fixture(scope="module")
def trio(tmp_path_factory):
    base = tmp_path_factory.mktemp("trio")
    etcd = etcd_cluster(str(base / "etcd"))
    nodes = []
    try:
        nodes = start_nodes(seed_nodes(str(base), ["a", "b", "c"]), etcd, "nodes")
        wait_for(lambda: leader_of(nodes), TAKEOVER_TIMEOUT_S, "a leader")
        yield nodes
    finally:
        for n in nodes:
            n.stop()
        etcd.stop()


def test_one_node_leads_and_the_others_name_it(trio):
    leader = leader_of(trio)
    assert [n for n in trio if n.is_leader()] == [leader]
    assert leader.leader_epoch() == 1
    code, reason, _ = not_leader_of(leader.address, CARDS[0], cid("leads-ok"))
    assert code == grpc.StatusCode.OK
    for n in trio:
        if n is leader:
            continue
        wait_for(lambda n=n: n.lines(f"leader={leader.name}"), TAKEOVER_TIMEOUT_S,
                 "the standby to learn the leader")
        code, reason, meta = not_leader_of(n.address, CARDS[1], cid(f"refused-{n.name}"))
        assert (code, reason) == (grpc.StatusCode.UNAVAILABLE, "NOT_LEADER")
        assert meta["leader"] == leader.address and meta["leader_name"] == leader.name
        assert meta["epoch"] == "1"
        # A standby serves reads; the refused write changed nothing there.
        assert balance(n.address, CARDS[1]) == FUND_FEN
        # The admin service's writes are refused the same way (one check for both).
        with grpc.insecure_channel(n.address) as ch:
            with pytest.raises(grpc.RpcError) as e:
                admin_pb2_grpc.AdminServiceStub(ch).IssueCards(admin_pb2.IssueCardsRequest(
                    client_id=cid(f"issue-{n.name}"), card_nos=[77], member_ids=[77]),
                    metadata=auth(TERMINALS[0].token), timeout=10)
        assert error_info(e.value) == ("NOT_LEADER", {**meta})


def test_a_client_follows_not_leader_with_the_same_id_and_applies_once(trio):
    leader = leader_of(trio)
    standby = next(n for n in trio if n is not leader)
    card = CARDS[2]
    before = balance(leader.address, card)
    request = pos_pb2.RechargeRequest(client_id=cid("follow-once"), card_no=card, amount_fen=250)

    async def go():
        async with LeaderFollower([standby.address]) as f:
            first = await f.call("pos", "Recharge", request, metadata=auth(TERMINALS[1].token),
                                 timeout=10)
            assert f.target == leader.address and f.redirects == 1
        # A second client, also sent to the standby first, retries the same id.
        async with LeaderFollower([standby.address]) as f:
            again = await f.call("pos", "Recharge", request, metadata=auth(TERMINALS[1].token),
                                 timeout=10)
        return first, again

    first, again = asyncio.run(go())
    assert not first.result.replayed and again.result.replayed
    assert again.result.seq == first.result.seq
    assert balance(leader.address, card) == before + 250
    assert balance(standby.address, card) == FUND_FEN  # the standby applied nothing


def test_reads_are_not_redirected(trio):
    leader = leader_of(trio)
    for n in trio:
        assert balance(n.address, CARDS[3]) == FUND_FEN
    assert leader is not None


def test_mms_replay_given_a_standby_first_applies_once_on_the_leader(trio, tmp_path, capsys):
    from server.cli.main import main

    leader = leader_of(trio)
    standby = next(n for n in trio if n is not leader)
    card = CARDS[4]
    csv = tmp_path / "recharges.csv"
    csv.write_text("client_id,card_no,amount_fen\n"
                   f"lead-r-1,{card},300\nlead-r-2,{card},400\n")
    argv = ["replay", str(csv), "--target", f"{standby.address},{leader.address}",
            "--token", TERMINALS[1].token, "--restart"]
    assert main(argv) == 0
    assert "2 applied" in capsys.readouterr().out
    assert main(argv) == 0  # the same rows again: recognised by their ids, nothing applied
    assert "2 already applied" in capsys.readouterr().out
    assert balance(leader.address, card) == FUND_FEN + 700
    assert balance(standby.address, card) == FUND_FEN


def test_bench_load_given_a_standby_runs_on_the_leader(trio):
    import numpy as np

    from server.tools.bench import run_load

    leader = leader_of(trio)
    standby = next(n for n in trio if n is not leader)
    cards = np.array(CARDS[10:12], dtype=np.uint64)
    for unary in (True, False):
        out = asyncio.run(run_load(f"{standby.address},{leader.address}", TERMINALS[1].token,
                                   cards, streams=1, seconds=0.5, batch=8, unary=unary))
        # Cards funded with 1,000 yuan run dry (FAILED_PRECONDITION); none went elsewhere.
        assert out["swipes"] > 0 and set(out["errors"]) <= {"FAILED_PRECONDITION"}, out
    assert balance(leader.address, CARDS[10]) < FUND_FEN  # the swipes debited the leader
    assert balance(standby.address, CARDS[10]) == FUND_FEN
