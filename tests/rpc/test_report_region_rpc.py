"""Region managers through the real server on loopback: an operator created (CreateOperator)
with a home region reads every report rolled up over exactly the stores of that region,
one of them, and nothing else; another region or a store outside it, existing or not,
is PERMISSION_DENIED OTHER_REGION; the chain-wide reconciliation is refused. A store
manager is held to their store, HQ sees everything."""

from __future__ import annotations

import os

import grpc
import pytest
from harness import tagged_op
from rpc_chain import operators, region_with_stores
from test_admin_rpc import Env, bootstrap, cid, failure
from test_report_rpc import rpc, table, window

from core.domain import reports
from core.records import CardStatus, OpType, Result
from server.mms_pb import admin_pb2, report_pb2, report_pb2_grpc

NORTH_STORES, SOUTH_STORE = (11, 12), 13


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    e = Env(str(tmp_path_factory.mktemp("region-reports")))
    bootstrap(e)
    e.north = region_with_stores(e, NORTH_STORES, "North", node_id=2)
    e.south = region_with_stores(e, (SOUTH_STORE,), "South", node_id=3)
    rm = e.call("root", "CreateOperator", admin_pb2.CreateOperatorRequest(
        client_id=cid(), login="rm", password="password-1", role="region_manager",
        home_region_id=e.north)).operator
    assert (rm.role, rm.home_store_id, rm.home_region_id) == ("region_manager", 0, e.north)
    operators(e, (("mgr11", "store_manager", 11), ("fin", "finance", 0)), login=False)
    for login in ("rm", "mgr11", "fin"):
        e.login(login)
    eng = e.engine
    # Cards 1, 2 issued and recharged at 11, card 3 at 13; swipes in all three stores,
    # card 1 spends at 13 (South) money recharged at 11 (North), a refund at 12, a
    # card lost at 13.
    for card, store in ((1, 11), (2, 11), (3, 13), (4, 13)):
        assert eng.issue_cards([card], os.urandom(16), store_id=store).result().code == Result.OK
        r = eng.recharge(card, 50_000, os.urandom(16), store_id=store).result()
        assert r.codes[0] == Result.OK
    for tag, card, amount, store, items in (("a", 1, 3_000, 11, [(5, 3_000, 1, 1)]),
                                            ("b", 2, 4_000, 12, [(6, 4_000, 4, 2)]),
                                            ("c", 1, 1_500, 13, [(7, 1_500, 1, 3)]),
                                            ("d", 3, 2_500, 13, [(7, 2_500, 1, 3)])):
        r = eng.submit(*tagged_op(tag, card, amount, store=store, operator=7, items=items)).result()
        assert r.codes[0] == Result.OK
    r = eng.submit(*tagged_op("r", 2, 1_000, OpType.REFUND, ref="b", store=12)).result()
    assert r.codes[0] == Result.OK
    assert eng.set_card_status(4, CardStatus.LOST, os.urandom(16)).result().code == Result.OK
    e.report = report_pb2_grpc.ReportServiceStub(e.channel)
    yield e
    e.close()


def _core(env, method: str, stores):
    """What the core function answers for the given stores (None: the chain)."""
    frm, to = window()
    eng = env.engine
    if method == "Sales":
        return reports.sales_report(eng, frm, to, ("store",), stores=stores)
    if method == "TopSkus":
        return reports.top_skus(eng, frm, to, 10, stores=stores)
    if method in ("Points", "PointsExpiry"):
        fn = reports.points_report if method == "Points" else reports.expiry_forecast
        return fn(eng, stores=stores)
    fn, by_store = {
        "Liability": (reports.liability_report, True),
        "Settlement": (reports.settlement_report, False),
        "Coupons": (reports.coupon_report, False),
        "Commission": (reports.commission_from_rollups, False),
        "CardStats": (reports.card_stats_report, True),
        "MemberActivity": (reports.member_activity_report, True),
        "VisitFrequency": (reports.visit_frequency_report, True),
        "RechargeSettlement": (reports.recharge_settlement_report, False),
    }[method]
    if by_store:   # a scoped request gets rows per store (server.rpc.report)
        return fn(eng, frm, to, by_store=stores is not None, stores=stores)
    return fn(eng, frm, to, stores=stores)


# Every table RPC of ReportService (Reconcile is the chain's: its own test below).
TABLE_RPCS = ("Sales", "TopSkus", "Liability", "Settlement", "Coupons", "Commission", "Points",
              "PointsExpiry", "CardStats", "MemberActivity", "VisitFrequency",
              "RechargeSettlement")


def test_every_report_rpc_is_a_method_of_the_service():
    from server.rpc.report import ReportService

    names = {m for m in dir(ReportService) if m[0].isupper()}
    assert names == set(TABLE_RPCS) | {"Reconcile"}


@pytest.mark.parametrize("method", TABLE_RPCS)
def test_region_manager_reads_exactly_their_region(env, method):
    north = frozenset(NORTH_STORES)
    kw = {"by": ["store"]} if method == "Sales" else {}
    mine = rpc(env, "rm", method, **kw)
    assert mine.store_id == 0
    assert table(mine) == _core(env, method, north)
    # One store of the region, by its id.
    one = rpc(env, "rm", method, store_id=12, **kw)
    assert one.store_id == 12 and table(one) == _core(env, method, frozenset({12}))
    # Naming their own region is the same as naming nothing.
    assert table(rpc(env, "rm", method, region_id=env.north, **kw)) == table(mine)
    # HQ's answer for the same region is the region manager's.
    assert table(rpc(env, "fin", method, region_id=env.north, **kw)) == table(mine)
    # Another region's store, a store that does not exist, another region, a region
    # that does not exist: one answer, which does not tell them apart.
    for bad in ({"store_id": SOUTH_STORE}, {"store_id": 424_242}, {"region_id": env.south},
                {"region_id": 4_242}, {"store_id": 11, "region_id": env.south}):
        code, reason = failure(rpc, env, "rm", method, **bad, **kw)
        assert (code, reason) == (grpc.StatusCode.PERMISSION_DENIED, "OTHER_REGION"), bad
    # A store manager keeps their store: not their region, not another store.
    for bad in ({"store_id": 12}, {"region_id": env.north}):
        code, reason = failure(rpc, env, "mgr11", method, **bad, **kw)
        assert (code, reason) == (grpc.StatusCode.PERMISSION_DENIED, "OTHER_STORE"), bad
    assert table(rpc(env, "mgr11", method, **kw)) == _core(env, method, frozenset({11}))


def test_the_region_figures_leave_out_the_other_region(env):
    rows = table(rpc(env, "rm", "Sales", by=["store"]))
    assert {r["store"]: r["gross_fen"] for r in rows} == {11: 3_000, 12: 4_000}
    everyone = table(rpc(env, "fin", "Sales", by=["store"]))
    assert {r["store"] for r in everyone} == {11, 12, 13}
    by_region = table(rpc(env, "rm", "Sales", by=["region"]))
    assert [(r["region"], r["gross_fen"]) for r in by_region] == [(env.north, 7_000)]
    cards = table(rpc(env, "rm", "CardStats"))
    assert cards and {r["issue_store"] for r in cards} <= set(NORTH_STORES)
    assert sum(r["lost"] for r in cards) == 0      # the lost card is South's
    # Money recharged at 11 and spent at 13 is a pair with one side in the region.
    pairs = {(r["recharge_store"], r["spend_store"]) for r in
             table(rpc(env, "rm", "RechargeSettlement"))}
    assert (11, 13) in pairs and (13, 13) not in pairs


def test_region_manager_does_nothing_else(env):
    code, reason = failure(env.report.Reconcile, report_pb2.ReconcileRequest(),
                           metadata=env.md("rm"), timeout=30)
    assert (code, reason) == (grpc.StatusCode.PERMISSION_DENIED, "CHAIN_ROLE_REQUIRED")
    assert env.report.Reconcile(report_pb2.ReconcileRequest(), metadata=env.md("fin"),
                                timeout=30).ok
    code, reason = failure(env.call, "rm", "SearchMembers", admin_pb2.SearchMembersRequest())
    assert (code, reason) == (grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_NOT_GRANTED")
    code, reason = failure(env.call, "rm", "CreateOperator", admin_pb2.CreateOperatorRequest(
        client_id=cid(), login="rm2", password="password-1", role="cashier", home_store_id=11))
    assert (code, reason) == (grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_NOT_GRANTED")
    # The one-store commission report of AdminService: a store of the region, or nothing.
    now = env.engine.clock()
    ok = env.call("rm", "CommissionReport", admin_pb2.CommissionReportRequest(
        store_id=11, since_s=now - 86_400, until_s=now + 1))
    assert ok.store_id == 11 and [r.swipes for r in ok.rows] == [1]
    for store, want in ((13, "OTHER_REGION"), (0, "REGION_REQUIRED")):
        code, reason = failure(env.call, "rm", "CommissionReport",
                               admin_pb2.CommissionReportRequest(
                                   store_id=store, since_s=now - 86_400, until_s=now + 1))
        assert (code, reason) == (grpc.StatusCode.PERMISSION_DENIED, want)


def test_a_region_manager_needs_a_region(env):
    for kw in ({}, {"home_region_id": 11}, {"home_region_id": 9_999},
               {"home_region_id": env.north, "home_store_id": 11}):
        code, _ = failure(env.call, "root", "CreateOperator", admin_pb2.CreateOperatorRequest(
            client_id=cid(), login="rm-bad", password="password-1", role="region_manager", **kw))
        assert code in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.INVALID_ARGUMENT)
    code, reason = failure(env.call, "mgr11", "CreateOperator", admin_pb2.CreateOperatorRequest(
        client_id=cid(), login="rm-by-mgr", password="password-1", role="region_manager",
        home_region_id=env.north))
    assert code == grpc.StatusCode.PERMISSION_DENIED
