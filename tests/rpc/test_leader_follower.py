"""LeaderFollower and its blocking counterpart against a real gRPC server on loopback
that refuses like a standby in a takeover: NOT_LEADER naming a leader that is dead (no
server at its address). The call follows for as long as its timeout allows, not for a
fixed count of tries (CI run 3 of session 10: 16 tries spent in a long takeover, and a
till got UNAVAILABLE for an op the new leader would have answered)."""

from __future__ import annotations

import asyncio
import os

import grpc
import pytest

from server import client
from server.client import LeaderFollower, SyncFollowingStub, error_reason
from server.mms_pb import pos_pb2, pos_pb2_grpc
from server.rpc.errors import RpcFailure
from server.tools.cluster import free_ports


class Standby(pos_pb2_grpc.PosServiceServicer):
    """Refuses `refusals` Recharges with NOT_LEADER naming `dead`, then answers."""

    def __init__(self, refusals: int, dead: str) -> None:
        self.refusals = refusals
        self.dead = dead
        self.calls = 0
        self.ids: set[bytes] = set()

    def Recharge(self, request, context):
        self.calls += 1
        self.ids.add(request.client_id)
        if self.calls <= self.refusals:
            f = RpcFailure(grpc.StatusCode.UNAVAILABLE, "NOT_LEADER", "a standby",
                           {"leader": self.dead})
            context.abort_with_status(_Status(f))
        return pos_pb2.RechargeResponse()


class _Status(grpc.Status):
    def __init__(self, f: RpcFailure) -> None:
        self.code, self.details, self.trailing_metadata = f.code, f.message, \
            f.trailing_metadata()


@pytest.fixture
def standby():
    from concurrent import futures

    made = []

    def make(refusals: int):
        live, dead = free_ports(2)
        servicer = Standby(refusals, f"127.0.0.1:{dead}")
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        pos_pb2_grpc.add_PosServiceServicer_to_server(servicer, server)
        server.add_insecure_port(f"127.0.0.1:{live}")
        server.start()
        made.append(server)
        return servicer, f"127.0.0.1:{live}"

    yield make
    for s in made:
        s.stop(None)


@pytest.fixture
def quick_pauses(monkeypatch):
    monkeypatch.setattr(client, "LEADER_RETRY_PAUSE_S", 0.001)
    monkeypatch.setattr(client, "LEADER_RETRY_PAUSE_MAX_S", 0.002)


def _recharge(target: str, **kw):
    req = pos_pb2.RechargeRequest(client_id=os.urandom(16), card_no=1, amount_fen=1)

    async def go():
        async with LeaderFollower([target]) as f:
            return await f.call("pos", "Recharge", req, **kw), f.redirects
    return asyncio.run(go())


def test_a_takeover_longer_than_sixteen_tries_is_followed_to_its_end(standby, quick_pauses):
    # Each refusal names the dead node, which is then tried and does not answer: two
    # tries a round, so 20 refusals are 40 tries, past the old bound of 16.
    servicer, target = standby(20)
    _reply, redirects = _recharge(target, timeout=30)
    assert servicer.calls == 21 and redirects == 40
    assert len(servicer.ids) == 1  # the same request, so the same client id, every time


def test_the_blocking_client_follows_the_same_way(standby, quick_pauses):
    servicer, target = standby(20)
    stub = SyncFollowingStub([target])
    try:
        stub.Recharge(pos_pb2.RechargeRequest(client_id=os.urandom(16), card_no=1,
                                              amount_fen=1), timeout=30)
    finally:
        stub.close()
    assert servicer.calls == 21 and len(servicer.ids) == 1


def test_a_call_ends_with_the_refusal_once_its_timeout_is_spent(standby, monkeypatch):
    # Pauses of 50 ms: a 0.5 s timeout ends the call after about ten rounds, long before
    # LEADER_ATTEMPTS_MAX, with the last refusal's status.
    monkeypatch.setattr(client, "LEADER_RETRY_PAUSE_S", 0.05)
    monkeypatch.setattr(client, "LEADER_RETRY_PAUSE_MAX_S", 0.05)
    servicer, target = standby(10**6)
    with pytest.raises(grpc.RpcError) as e:
        _recharge(target, timeout=0.5)
    assert e.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    assert 1 <= servicer.calls < client.LEADER_ATTEMPTS_MAX // 2


def test_tries_are_bounded_whatever_the_time(standby, quick_pauses):
    servicer, target = standby(10**6)
    with pytest.raises(grpc.RpcError) as e:
        _recharge(target, timeout=600)
    assert error_reason(e.value) in ("NOT_LEADER", "UNAVAILABLE")
    # Half the tries go to the standby, half to the dead node it names.
    assert servicer.calls == client.LEADER_ATTEMPTS_MAX // 2
