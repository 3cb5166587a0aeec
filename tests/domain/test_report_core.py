"""The reports over the rollups agree with sums taken straight from the journal; the
liability identity holds on every day and closes on the card table; the commission
report from the rollups equals the journal scan over whole days."""

from __future__ import annotations

import datetime

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from rollup_reference import whole_journal
from test_rollups import SUPP, T0, action, run_workload

from core.domain import reports
from core.records import OpType, Result

TZ = 8 * 3600
FIXED = [("swipe", 1, 3000, 1, 1, True, False, 0, False), ("coupon", 2),
         ("swipe", 2, 3000, 2, 2, True, False, 0, True), ("refund", 0, 500), ("use", 2, 1),
         ("replace", 3), ("swipe", SUPP, 1000, 1, 1, False, True, 0, False),
         ("swipe", SUPP, 1000, 3, 1, False, False, 0, False), ("recharge", 7, 100, 1),
         ("restart",), ("time", 86_400), ("swipe", 101, 100, 2, 3, False, False, 0, False),
         ("swipe", 4, 2222, 3, 4, True, False, 0, False), ("refund", 1, 100)]
FROM, TO = "2025-11-30", "2025-12-10"


def iso(t: int) -> str:
    return datetime.datetime.fromtimestamp(t + TZ, datetime.UTC).date().isoformat()


@pytest.fixture(scope="module")
def eng(tmp_path_factory):
    e, _ = run_workload(str(tmp_path_factory.mktemp("r")), FIXED)
    yield e
    e.close()


def ok_records(eng):
    j, items = whole_journal(eng.store)
    return j[(j["result"] == Result.OK) & (j["kind"] == 0)], items


def test_sales_by_store_equals_the_journal(eng):
    j, _ = ok_records(eng)
    rows = reports.sales_report(eng, FROM, TO, by=("store",))
    assert rows, "the workload sold something"
    for row in rows:
        mine = j[j["store_id"] == row["store"]]
        sw = mine[mine["op_type"] == OpType.SWIPE]
        rf = mine[mine["op_type"] == OpType.REFUND]
        pay = mine[np.isin(mine["op_type"], (OpType.SWIPE, OpType.SUPP_DEBIT))]
        assert row["count"] == len(sw)
        assert row["gross_fen"] == int(sw["amount_fen"].sum())
        assert row["discount_fen"] == int(sw["discount_fen"].sum())
        assert row["coupon_fen"] == int(sw["coupon_fen"].sum())
        assert row["principal_fen"] == -int(np.minimum(pay["principal_delta_fen"], 0).sum())
        assert row["refund_fen"] == int(rf["amount_fen"].sum())
        assert row["net_fen"] == row["gross_fen"] - row["discount_fen"] - row["coupon_fen"] - row["refund_fen"]
        # What was paid after discounts and coupons is paid by exactly one means.
        assert (row["principal_fen"] + row["bonus_fen"] + row["external_fen"] + row["offset_fen"]
                == row["gross_fen"] - row["discount_fen"] - row["coupon_fen"])
    total = reports.sales_report(eng, FROM, TO, by=())
    assert total[0]["count"] == sum(r["count"] for r in rows)
    by_day = reports.sales_report(eng, FROM, TO, by=("day", "hour"))
    assert len({r["day"] for r in by_day}) == 2 and all(0 <= r["hour"] < 24 for r in by_day)
    assert sum(r["gross_fen"] for r in by_day) == total[0]["gross_fen"]
    one = reports.sales_report(eng, FROM, TO, by=("store",), stores={2})
    assert [r["store"] for r in one] == [2]


def test_region_grouping_and_bad_input(eng):
    rows = reports.sales_report(eng, FROM, TO, by=("region",), region_of=lambda s: 100 + s % 2)
    assert {r["region"] for r in rows} <= {100, 101}
    for bad, reason in ((("bogus",), "GROUP_INVALID"), (("region",), "GROUP_INVALID")):
        with pytest.raises(reports.ReportError) as e:
            reports.sales_report(eng, FROM, TO, by=bad)
        assert e.value.reason == reason
    with pytest.raises(reports.ReportError) as e:
        reports.sales_report(eng, "2025-12-10", FROM)
    assert e.value.reason == "WINDOW_INVALID"
    with pytest.raises(reports.ReportError) as e:
        reports.sales_report(eng, "2025-13-01", TO)
    assert e.value.reason == "DATE_INVALID"


def test_top_skus(eng):
    top = reports.top_skus(eng, FROM, TO, 1)
    _, items = ok_records(eng)
    amounts: dict[int, int] = {}
    for row in items:
        amounts[int(row["item"]["sku"])] = amounts.get(int(row["item"]["sku"]), 0) + int(row["item"]["amount_fen"])
    best = max(amounts.values())
    assert len(top) == 1 and top[0]["amount_fen"] == best


def check_liability(eng, date_from, date_to):
    rows = reports.liability_report(eng, date_from, date_to)
    prev = None
    for r in rows:
        for kind in ("principal", "bonus"):
            f = lambda t: r[f"{kind}_{t}_fen"]  # noqa: E731,B023
            assert f("closing") == (f("opening") + f("recharged") - f("spent") + f("refunds")
                                    - f("fees") - f("expired") + f("other"))
            if prev is not None:
                assert f("opening") == prev[f"{kind}_closing_fen"]
        prev = r
    cards = eng.cards_snapshot()
    assert rows[-1]["principal_closing_fen"] == int(cards["principal_fen"].astype(np.int64).sum())
    assert rows[-1]["bonus_closing_fen"] == int(cards["bonus_fen"].astype(np.int64).sum())
    by_store = reports.liability_report(eng, date_from, date_to, by_store=True)
    last = [r for r in by_store if r["day"] == rows[-1]["day"]]
    assert sum(r["principal_closing_fen"] for r in last) == rows[-1]["principal_closing_fen"]
    rec = reports.reconcile(eng)
    assert rec["ok"] and rec["principal_rollup_fen"] == rows[-1]["principal_closing_fen"]
    return rows


def test_liability_identity_every_day_and_closing_equals_the_cards(eng):
    rows = check_liability(eng, FROM, TO)
    assert len(rows) == 10 and rows[0]["principal_opening_fen"] == 0
    assert any(r["principal_recharged_fen"] for r in rows) and any(r["principal_spent_fen"] for r in rows)


@settings(max_examples=8, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
@given(st.lists(action, min_size=1, max_size=30))
def test_liability_identity_on_random_workloads(tmp_path_factory, actions):
    e, clock = run_workload(str(tmp_path_factory.mktemp("l")), actions)
    try:
        check_liability(e, iso(T0 - 86_400), iso(clock.t + 86_400))
    finally:
        e.close()


def test_settlement_pairs_cross_store_spending(eng):
    rows = reports.settlement_report(eng, FROM, TO)
    assert rows and all(r["issue_store"] != r["spend_store"] for r in rows)
    j, _ = ok_records(eng)
    # Cards 1-4 were issued at store 1: spending at store 2 or 3 is owed between stores.
    spent_elsewhere = j[np.isin(j["op_type"], (OpType.SWIPE, OpType.SUPP_DEBIT, OpType.USE_COUNT))
                        & (j["store_id"] != 1) & np.isin(j["card_no"], (1, 2, 3, 4, 6))]
    pair = [r for r in rows if r["issue_store"] == 1]
    assert sum(r["principal_fen"] for r in pair) == -int(
        np.minimum(spent_elsewhere["principal_delta_fen"], 0).sum())


def test_commission_from_rollups_equals_the_journal_scan(eng):
    day0 = datetime.date.fromisoformat(FROM)
    since = int(datetime.datetime(day0.year, day0.month, day0.day, tzinfo=datetime.UTC).timestamp()) - TZ
    scan = reports.commission_report(eng, since, since + 10 * 86_400)
    assert scan and reports.commission_from_rollups(eng, FROM, TO) == scan


def test_coupon_report(eng):
    rows = reports.coupon_report(eng, FROM, TO)
    assert rows == [{"template_id": 1, "issued": 1, "redeemed": 1, "restored": 0,
                     "redeemed_fen": 500}]


@settings(max_examples=8, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(action, min_size=1, max_size=25), st.lists(st.integers(1, 4), max_size=6))
@example(actions=[("swipe", 1, 3000, 1, 1, True, False, 0, False)], later=[2])
def test_points_by_lot_and_the_expiry_forecast_match_what_happens(actions, later):
    """Points by lot sum to the card table; the forecast made in 2026 is, per store of
    issue, what the expiry run at 1 January 2027 clears."""
    import tempfile

    from harness import tag_id

    from core.domain import points
    from core.engine import rollups

    with tempfile.TemporaryDirectory() as d:
        eng, clock = run_workload(d, actions)
        try:
            clock.t = max(clock.t, 1_767_225_600 + 86_400)       # into 2026 (UTC+8)
            for k, card in enumerate(later):
                eng.swipe(card, 1_000 + k, tag_id(f"late{k}"), store_id=3).result()
            cards = eng.cards_snapshot()
            lots = reports.points_report(eng)
            assert sum(r["points"] for r in lots) == int(cards["points"].astype(np.int64).sum())
            for store in (1, 2, 3):
                mine = reports.points_report(eng, stores={store})
                assert mine == [r for r in lots if r["issue_store"] == store]
            forecast = reports.expiry_forecast(eng)
            assert all(r["day"] == 20261231 for r in forecast)
            eng.rollups.wait_for(eng.stats()["last_seq"])
            with eng.store.read() as txn:
                issue = rollups.load_issue_map(eng.store, txn)
            clock.t = 1_798_761_600 - 8 * 3600 + 1                  # 2027-01-01 00:00:01 local
            r = points.expire_points(eng, tag_id("expire")).result()
            assert r.code == Result.OK
            j, _ = whole_journal(eng.store)
            run = j[(j["op_type"] == OpType.EXPIRE_POINTS) & (j["result"] == Result.OK)]
            got: dict[int, int] = {}
            if len(run):
                st_ = issue.lookup_many(run["card_no"].astype(np.uint64),
                                        np.ones(len(run), np.uint64))
                for s, delta in zip(np.maximum(st_, 0).tolist(), run["points_delta"].tolist(),
                                    strict=True):
                    got[s] = got.get(s, 0) - delta
            want: dict[int, int] = {}
            for row in forecast:
                want[row["issue_store"]] = want.get(row["issue_store"], 0) + row["expiring_points"]
            assert {k: v for k, v in got.items() if v} == want
            assert r.value["expired_points"] == sum(want.values())
        finally:
            eng.close()


def test_points_lots_and_forecast_values(tmp_path):
    from harness import tag_id

    eng, clock = run_workload(str(tmp_path), [("swipe", 1, 3000, 1, 1, True, False, 0, False)])
    try:
        clock.t = 1_767_225_600 + 86_400                           # 2026-01-02 (UTC+8)
        eng.swipe(2, 5_000, tag_id("x"), store_id=3).result()
        # 30 points earned on card 1 in 2025, 50 on card 2 in 2026; both issued at store 1.
        assert reports.points_report(eng) == [
            {"issue_store": 1, "level": 0, "lot_year": 2025, "cards": 1, "points": 30},
            {"issue_store": 1, "level": 0, "lot_year": 2026, "cards": 1, "points": 50}]
        assert reports.expiry_forecast(eng) == [
            {"issue_store": 1, "level": 0, "cards": 1, "expiring_points": 30, "points": 30,
             "day": 20261231}]
        assert reports.expiry_forecast(eng, stores={2}) == []
    finally:
        eng.close()


def test_commission_report_of_a_window_opening_before_a_western_zones_epoch(tmp_path):
    """A window from the first hours of 1970 in a zone west of UTC (local time before
    the epoch, which the rollups' unsigned day cannot key): the journal scan's rows,
    not an OverflowError (which CommissionReport answered INVALID_ARGUMENT: a valid
    window refused)."""
    import dataclasses

    from harness import tag_id
    from test_rollups import RULES, Clock, setup_cards

    from core.engine.writer import Engine, EngineConfig

    clock = Clock()
    clock.t = 100
    eng = Engine(str(tmp_path), config=EngineConfig(checkpoint_ops=50),
                 rules=dataclasses.replace(RULES, tz_offset_s=-5 * 3600), clock=clock)
    try:
        setup_cards(eng)
        assert eng.swipe(1, 1_000, tag_id("early"), store_id=1).result().codes[0] == Result.OK
        eng.rollups.wait_for(eng.stats()["last_seq"])
        for since, until in ((1, 5 * 3600), (0, 30 * 3600 + 7), (50, 3 * 86_400)):
            want = reports.commission_scan(eng, since, until)
            assert want and reports.commission_report(eng, since, until) == want
    finally:
        eng.close()
