"""ReportService through the real server on loopback: every RPC answers from the
rollups, scoped by role (a store manager sees only their store, HQ roles every store or
one region), with bad input as INVALID_ARGUMENT and a machine-readable reason."""

from __future__ import annotations

import datetime
import os

import grpc
import pytest
from harness import tagged_op
from rpc_chain import operators, region_with_stores
from test_admin_rpc import Env, bootstrap, failure

from core.records import OpType, Result
from server.mms_pb import report_pb2, report_pb2_grpc

TZ = datetime.timezone(datetime.timedelta(hours=8))


def window() -> tuple[str, str]:
    today = datetime.datetime.now(TZ).date()
    return (today - datetime.timedelta(days=1)).isoformat(), (today + datetime.timedelta(days=2)).isoformat()


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    e = Env(str(tmp_path_factory.mktemp("reports")))
    bootstrap(e)
    e.region = region_with_stores(e, (11, 12))
    operators(e, (("mgr11", "store_manager", 11), ("cash11", "cashier", 11), ("fin", "finance", 0)))
    eng = e.engine
    assert eng.issue_cards([1, 2], os.urandom(16), store_id=11).result().code == Result.OK
    for c in (1, 2):
        eng.recharge(c, 50_000, os.urandom(16), store_id=11).result()
    for tag, card, amount, store, items in (("a", 1, 3_000, 11, [(5, 1_000, 1, 1), (6, 2_000, 2, 2)]),
                                            ("b", 2, 4_000, 12, [(6, 4_000, 4, 2)]),
                                            ("c", 1, 1_500, 12, None)):
        r = eng.submit(*tagged_op(tag, card, amount, store=store, operator=7, items=items)).result()
        assert r.codes[0] == Result.OK
    r = eng.submit(*tagged_op("r", 2, 1_000, OpType.REFUND, ref="b", store=12)).result()
    assert r.codes[0] == Result.OK
    e.report = report_pb2_grpc.ReportServiceStub(e.channel)
    yield e
    e.close()


def rpc(env, who, method, **kw):
    frm, to = window()
    kw.setdefault("from_date", frm)
    kw.setdefault("to_date", to)
    return getattr(env.report, method)(report_pb2.ReportRequest(**kw), metadata=env.md(who),
                                       timeout=30)


def table(resp) -> list[dict]:
    return [dict(zip(resp.columns, row.values, strict=True)) for row in resp.rows]


def test_hq_sees_every_store_and_a_region(env):
    rows = table(rpc(env, "fin", "Sales", by=["store"]))
    assert {r["store"]: r["gross_fen"] for r in rows} == {11: 3_000, 12: 5_500}
    assert {r["store"]: r["refund_fen"] for r in rows} == {11: 0, 12: 1_000}
    region = table(rpc(env, "fin", "Sales", by=["region"]))
    assert region == [{**region[0], "region": env.region, "gross_fen": 8_500}]
    assert len(table(rpc(env, "fin", "Sales", by=["store"], region_id=env.region))) == 2


def test_store_manager_sees_only_their_store(env):
    resp = rpc(env, "mgr11", "Sales", by=["store", "day"])
    assert resp.store_id == 11 and {r["store"] for r in table(resp)} == {11}
    code, reason = failure(rpc, env, "mgr11", "Sales", store_id=12)
    assert code == grpc.StatusCode.PERMISSION_DENIED and reason == "OTHER_STORE"
    code, _ = failure(env.report.Reconcile, report_pb2.ReconcileRequest(), metadata=env.md("mgr11"),
                      timeout=30)
    assert code == grpc.StatusCode.PERMISSION_DENIED
    code, _ = failure(rpc, env, "cash11", "Sales")
    assert code == grpc.StatusCode.PERMISSION_DENIED


def test_bad_input_is_invalid_argument_with_a_reason(env):
    for kw, reason in (({"from_date": "2026-02-30"}, "DATE_INVALID"),
                       ({"from_date": "2026-12-02", "to_date": "2026-12-01"}, "WINDOW_INVALID"),
                       ({"by": ["weather"]}, "GROUP_INVALID")):
        code, got = failure(rpc, env, "fin", "Sales", **kw)
        assert (code, got) == (grpc.StatusCode.INVALID_ARGUMENT, reason)


def test_every_report_answers(env):
    top = table(rpc(env, "fin", "TopSkus", top=1))
    assert top == [{"sku": 6, "category": 2, "lines": 2, "qty": 6, "amount_fen": 6_000}]
    liab = table(rpc(env, "fin", "Liability"))
    assert liab[-1]["principal_closing_fen"] == 100_000 - 3_000 - 4_000 - 1_500 + 1_000
    rec = env.report.Reconcile(report_pb2.ReconcileRequest(), metadata=env.md("fin"), timeout=30)
    assert rec.ok and rec.principal_rollup_fen == rec.principal_cards_fen == 92_500
    settle = table(rpc(env, "fin", "Settlement"))
    assert settle == [{"issue_store": 11, "spend_store": 12, "count": 2, "principal_fen": 5_500,
                       "bonus_fen": 0, "refund_principal_fen": 1_000, "refund_bonus_fen": 0,
                       "net_fen": 4_500}]
    comm = table(rpc(env, "fin", "Commission"))
    assert [(r["operator_id"], r["swipes"], r["refunds"]) for r in comm] == [(7, 3, 1)]
    assert table(rpc(env, "fin", "Coupons")) == []


def give_old_points(env) -> int:
    """Cards 3 (store 11) and 4 (store 12) with 70 and 40 points earned last year: the
    lot the next year-end run clears. Returns this year."""
    from core import _fastpath

    eng = env.engine
    year = _fastpath.year_of(eng.clock(), eng.rules.tz_offset_s)
    for card, store, pts in ((3, 11, 70), (4, 12, 40)):
        if eng.card(card) is not None:
            continue
        assert eng.issue_cards([card], os.urandom(16), store_id=store).result().code == Result.OK

        def build(ctx, card=card, pts=pts):
            c = ctx.card(card)
            c["lot_year"], c["lot0_points"], c["points"] = year - 1, pts, pts
            ctx.emit(OpType.ADJUST, c, points_delta=pts)
            return {}

        assert eng.admin(os.urandom(16), OpType.ADJUST, build).result().code == Result.OK
    return year


def test_points_and_the_expiry_forecast_by_scope(env):
    year = give_old_points(env)
    cards = env.engine.cards_snapshot()
    lots = table(rpc(env, "fin", "Points", from_date="", to_date=""))
    assert sum(r["points"] for r in lots) == int(cards["points"].astype("int64").sum())
    assert {"issue_store": 12, "level": 0, "lot_year": year - 1, "cards": 1, "points": 40} in lots
    mine = table(rpc(env, "mgr11", "Points", from_date="", to_date=""))
    assert mine and all(r["issue_store"] == 11 for r in mine)
    assert mine == [r for r in lots if r["issue_store"] == 11]
    fc = table(rpc(env, "fin", "PointsExpiry", from_date="", to_date=""))
    last = year * 10_000 + 1231
    assert [(r["issue_store"], r["expiring_points"], r["day"]) for r in fc] == [
        (11, 70, last), (12, 40, last)]
    assert [r["issue_store"] for r in table(rpc(env, "mgr11", "PointsExpiry"))] == [11]
    code, reason = failure(rpc, env, "mgr11", "PointsExpiry", store_id=12)
    assert code == grpc.StatusCode.PERMISSION_DENIED and reason == "OTHER_STORE"


def test_card_stats_by_scope(env):
    from core.domain import reports
    from core.records import CardStatus

    eng = env.engine
    if eng.card(21) is None:
        assert eng.issue_cards([21], os.urandom(16), store_id=12).result().code == Result.OK
        assert eng.set_card_status(21, CardStatus.LOST, os.urandom(16)).result().code == Result.OK
    frm, to = window()
    rows = table(rpc(env, "fin", "CardStats", by_store=True))
    assert rows == reports.card_stats_report(eng, frm, to, by_store=True)
    assert sum(r["lost"] for r in rows if r["issue_store"] == 12) == 1
    total = table(rpc(env, "fin", "CardStats"))
    cards = eng.cards_snapshot()
    cards = cards[cards["card_no"] != 0]
    # Every card of this server was issued inside the window.
    assert sum(r["issued"] for r in total) == len(cards)
    assert total[-1]["in_circulation"] == int((cards["status"] != CardStatus.CANCELLED).sum())
    mine = table(rpc(env, "mgr11", "CardStats"))
    assert mine and all(r["issue_store"] == 11 for r in mine)
    assert mine == [r for r in rows if r["issue_store"] == 11]
    code, reason = failure(rpc, env, "mgr11", "CardStats", store_id=12)
    assert code == grpc.StatusCode.PERMISSION_DENIED and reason == "OTHER_STORE"
    code, reason = failure(rpc, env, "fin", "CardStats", from_date="2026-13-01")
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "DATE_INVALID")


def test_member_activity_and_visit_frequency_by_scope(env):
    from core.domain import reports

    frm, to = window()
    eng = env.engine
    total = table(rpc(env, "fin", "MemberActivity"))
    assert total == reports.member_activity_report(eng, frm, to)
    # Cards 1 and 2 (no member id: each its own member) swiped in the window, 1 twice.
    assert total[0]["active"] >= 2 and total[0]["visits"] >= 3
    assert total[0]["first_visit"] + total[0]["repeat"] == total[0]["active"]
    by_store = table(rpc(env, "fin", "MemberActivity", by_store=True))
    assert by_store == reports.member_activity_report(eng, frm, to, by_store=True)
    dist = table(rpc(env, "fin", "VisitFrequency"))
    assert dist == reports.visit_frequency_report(eng, frm, to)
    assert sum(r["members"] for r in dist) == total[0]["active"]
    assert sum(r["visits"] for r in dist) == total[0]["visits"]
    mine = table(rpc(env, "mgr11", "MemberActivity"))
    assert mine == [r for r in by_store if r["issue_store"] == 11]
    mine = table(rpc(env, "mgr11", "VisitFrequency"))
    assert mine and all(r["issue_store"] == 11 for r in mine)
    code, reason = failure(rpc, env, "mgr11", "VisitFrequency", store_id=12)
    assert code == grpc.StatusCode.PERMISSION_DENIED and reason == "OTHER_STORE"
    code, reason = failure(rpc, env, "fin", "MemberActivity", to_date="2000-01-01")
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "WINDOW_INVALID")


def test_recharge_settlement_by_scope(env):
    from core.domain import reports

    frm, to = window()
    rows = table(rpc(env, "fin", "RechargeSettlement"))
    assert rows == reports.recharge_settlement_report(env.engine, frm, to)
    # Cards 1 and 2 were recharged at store 11; 30.00 spent at 11, 55.00 at 12, of
    # which 10.00 refunded at 12.
    pairs = {(r["recharge_store"], r["spend_store"]): r for r in rows}
    assert pairs[(11, 11)]["spent_fen"] == 3_000 and pairs[(11, 11)]["count"] == 1
    assert {k: pairs[(11, 12)][k] for k in ("count", "spent_fen", "refunded_fen", "net_fen")} == \
        {"count": 2, "spent_fen": 5_500, "refunded_fen": 1_000, "net_fen": 4_500}
    mine = table(rpc(env, "mgr11", "RechargeSettlement"))
    assert mine == [r for r in rows if 11 in (r["recharge_store"], r["spend_store"])]
    code, reason = failure(rpc, env, "mgr11", "RechargeSettlement", store_id=12)
    assert code == grpc.StatusCode.PERMISSION_DENIED and reason == "OTHER_STORE"
    # The store-of-issue settlement stays its own report.
    assert table(rpc(env, "fin", "Settlement"))[0]["issue_store"] == 11
