"""rpc_method's unary path (server/rpc/instrumentation.py): a write on a node that does
not lead is refused NOT_LEADER before its handler runs, a lease lost while the handler
ran turns its answer into NOT_LEADER, reads and role-less (single) services pass, and
every call is counted once in the per-call metrics."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from server.rpc.constants import POS
from server.rpc.errors import RpcFailure
from server.rpc.instrumentation import rpc_method
from server.rpc.metrics import Metrics
from server.rpc.role import Leader, NodeRole


class Clock:
    def __init__(self, t: float = 100.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class Aborted(Exception):
    pass


class Context:
    def __init__(self) -> None:
        self.aborted: tuple | None = None

    def time_remaining(self):
        return None

    def code(self):
        return None

    async def abort(self, code, message, trailing=()):
        self.aborted = (code, message, dict(trailing))
        raise Aborted(code)


class Service:
    def __init__(self, role) -> None:
        self.metrics = Metrics()
        self.role = role
        self.ran = 0
        self.during = None  # called inside the handler

    @rpc_method(POS, "Swipe", "unary")
    async def Swipe(self, request, context):
        self.ran += 1
        if self.during is not None:
            self.during()
        return b"answer"

    @rpc_method(POS, "GetCard", "unary")
    async def GetCard(self, request, context):
        self.ran += 1
        return b"card"


def call(coro):
    return asyncio.run(coro)


def reason(ctx: Context) -> str:
    from google.rpc import error_details_pb2, status_pb2

    st = status_pb2.Status.FromString(ctx.aborted[2]["grpc-status-details-bin"])
    info = error_details_pb2.ErrorInfo()
    st.details[0].Unpack(info)
    return info.reason


def test_a_standby_refuses_a_write_before_its_handler_runs_and_serves_reads():
    role = NodeRole("b", "127.0.0.1:2", clock=Clock())
    role.become_standby(Leader("a", "127.0.0.1:1", 3))
    svc, ctx = Service(role), Context()
    with pytest.raises(Aborted):
        call(svc.Swipe(None, ctx))
    assert svc.ran == 0
    assert ctx.aborted[0] == grpc.StatusCode.UNAVAILABLE and reason(ctx) == "NOT_LEADER"
    assert call(svc.GetCard(None, Context())) == b"card"  # reads on every node
    st = svc.metrics.calls("unary", POS, "Swipe")
    assert st.started == 1 and st.ok == 0 and st.codes == {grpc.StatusCode.UNAVAILABLE: 1}


def test_a_lease_lost_during_the_handler_answers_not_leader_not_ok():
    clock = Clock()
    role = NodeRole("a", "127.0.0.1:1", margin_s=0.5, clock=clock)
    role.become_primary(4, lease_sent_at=100.0, ttl_s=2.0)
    svc, ctx = Service(role), Context()
    assert call(svc.Swipe(None, ctx)) == b"answer"

    def expire() -> None:
        clock.t = 102.0

    svc.during = expire
    with pytest.raises(Aborted):
        call(svc.Swipe(None, ctx))
    assert svc.ran == 2 and reason(ctx) == "NOT_LEADER"
    st = svc.metrics.calls("unary", POS, "Swipe")
    assert (st.started, st.ok, sum(st.codes.values())) == (2, 1, 1)


def test_a_single_server_has_no_role_to_ask_and_counts_each_call_once():
    svc = Service(None)
    for _ in range(3):
        assert call(svc.Swipe(None, Context())) == b"answer"
    st = svc.metrics.calls("unary", POS, "Swipe")
    assert (st.started, st.ok, st.codes) == (3, 3, {})
    assert sum(st.buckets) == 3


def test_a_failure_is_its_status_and_counted_by_code():
    svc = Service(NodeRole.single())

    def refuse() -> None:
        raise RpcFailure(grpc.StatusCode.FAILED_PRECONDITION, "RESULT_CARD_FROZEN", "card frozen")

    svc.during = refuse
    ctx = Context()
    with pytest.raises(Aborted):
        call(svc.Swipe(None, ctx))
    assert ctx.aborted[0] == grpc.StatusCode.FAILED_PRECONDITION
    assert reason(ctx) == "RESULT_CARD_FROZEN"
    assert svc.metrics.calls("unary", POS, "Swipe").codes == {
        grpc.StatusCode.FAILED_PRECONDITION: 1}
