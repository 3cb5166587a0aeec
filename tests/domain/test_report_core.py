"""The reports over the rollups agree with sums taken straight from the journal; the
liability identity holds on every day and closes on the card table; the commission
report from the rollups equals the journal scan over whole days."""

from __future__ import annotations

import datetime

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
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
