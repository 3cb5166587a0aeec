"""The staff commission report (core.domain.reports) over a real engine's journal: swipes,
count-card uses and refunds per operator, a refund attributed to the operator of the
swipe it reverses (even one before the window), the time window [since, until) and the
store filter, coupons taken out of the sales, and the window bounds."""

from __future__ import annotations

import os

import pytest
from harness import tagged_op

from core import Engine, RulesConfig
from core.domain.reports import REPORT_WINDOW_MAX_S, commission_report
from core.records import OpType, Result
from core.rules import CommissionRule, CouponTemplate, LevelRule

T0 = 1_780_000_000
RULES = RulesConfig(
    levels=(LevelRule("regular"),), commission_bp=100,
    commission_rules=(CommissionRule("category", 3, bp=500),
                      CommissionRule("category", 9, fixed_fen=800)),
    coupon_templates=(CouponTemplate(1, "10 yuan off", "fixed", value_fen=1_000),))
CASHIER_A, CASHIER_B, MANAGER = 7, 8, 9


class Clock:
    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def op(eng, clock, at, tag, card, amount, op_type=OpType.SWIPE, *, store, operator,
       category=0, ref=None, coupon=None):
    clock.now = at
    res = eng.submit(*tagged_op(tag, card, amount, op_type, store=store, operator=operator,
                                category=category, ref=ref,
                                coupons=() if coupon is None else (coupon,))).result()
    assert int(res.codes[0]) == Result.OK
    return int(res.record(0)["commission_fen"])


@pytest.fixture(scope="module")
def eng(tmp_path_factory):
    clock = Clock(T0 - 200)
    e = Engine(str(tmp_path_factory.mktemp("reports")), rules=RULES, clock=clock)
    e.issue_cards([1, 2], os.urandom(16)).result()
    e.issue_cards([3], os.urandom(16), count_service=9, count_uses=5).result()
    for card in (1, 2):
        assert e.recharge(card, 100_000, os.urandom(16), store_id=11,
                          operator_id=CASHIER_B).result().codes[0] == Result.OK
    coupon = e.issue_coupons(1, [2], os.urandom(16)).result().value["coupon_ids"][0]
    # Before the window: A's swipe at store 11 (5% of category 3).
    assert op(e, clock, T0 - 100, "old", 1, 10_000, store=11, operator=CASHIER_A,
              category=3) == 500
    # In the window [T0, T0 + 1000).
    assert op(e, clock, T0, "sale", 1, 20_000, store=11, operator=CASHIER_A, category=3) == 1_000
    assert op(e, clock, T0 + 10, "b1", 2, 5_000, store=12, operator=CASHIER_B, category=4) == 50
    assert op(e, clock, T0 + 20, "a2", 2, 999, store=12, operator=CASHIER_A, category=4) == 9
    # The manager refunds 4,000 of the old swipe and 5,000 of the sale: both give back
    # cashier A's commission, in proportion: 4,000 * 500 // 10,000 and 5,000 * 1,000 // 20,000.
    assert op(e, clock, T0 + 30, "r-old", 1, 4_000, OpType.REFUND, store=11, operator=MANAGER,
              ref="old") == -200
    assert op(e, clock, T0 + 40, "r-sale", 1, 5_000, OpType.REFUND, store=11, operator=MANAGER,
              ref="sale") == -250
    # Two uses of a count card's service 9: a fixed 800 fen each.
    assert op(e, clock, T0 + 50, "use", 3, 2, OpType.USE_COUNT, store=12, operator=CASHIER_B,
              category=9) == 1_600
    # A 10-yuan coupon on a 30-yuan swipe: 20 yuan paid, 1% of it.
    assert op(e, clock, T0 + 60, "cpn", 2, 3_000, store=12, operator=CASHIER_B, category=4,
              coupon=coupon) == 20
    clock.now = T0 + 70
    e.recharge(2, 1_000, os.urandom(16), store_id=12, operator_id=CASHIER_A).result()
    # At the window's end (excluded: until is exclusive).
    assert op(e, clock, T0 + 1_000, "late", 2, 1_000, store=12, operator=CASHIER_B) == 10
    yield e
    e.close()


def row(operator, swipes, uses, refunds, sales, commission):
    return {"operator_id": operator, "swipes": swipes, "uses": uses, "refunds": refunds,
            "sales_fen": sales, "commission_fen": commission}


def test_rows_per_operator_with_refunds_on_the_swiper(eng):
    assert commission_report(eng, T0, T0 + 1_000) == [
        row(CASHIER_A, 2, 0, 2, 20_000 + 999 - 4_000 - 5_000, 1_000 + 9 - 200 - 250),
        row(CASHIER_B, 2, 1, 0, 5_000 + 2_000, 50 + 1_600 + 20),
    ]


def test_store_filter_uses_each_records_store(eng):
    assert commission_report(eng, T0, T0 + 1_000, store_id=11) == [
        row(CASHIER_A, 1, 0, 2, 20_000 - 9_000, 1_000 - 450)]
    assert commission_report(eng, T0, T0 + 1_000, store_id=12) == [
        row(CASHIER_A, 1, 0, 0, 999, 9), row(CASHIER_B, 2, 1, 0, 7_000, 1_670)]
    assert commission_report(eng, T0, T0 + 1_000, store_id=13) == []


def test_window_bounds_are_since_inclusive_until_exclusive(eng):
    assert commission_report(eng, T0 - 100, T0 + 1) == [row(CASHIER_A, 2, 0, 0, 30_000, 1_500)]
    assert commission_report(eng, T0 + 1_000, T0 + 1_001) == [row(CASHIER_B, 1, 0, 0, 1_000, 10)]
    assert commission_report(eng, T0 + 30, T0 + 40) == [row(CASHIER_A, 0, 0, 1, -4_000, -200)]
    assert commission_report(eng, T0 + 2_000, T0 + 3_000) == []
    assert commission_report(eng, T0 - 10 * 86_400, T0 - 10 * 86_400 + REPORT_WINDOW_MAX_S) != []


@pytest.mark.parametrize("since,until", [
    (T0, T0), (T0, T0 - 1), (-1, 10), (T0, T0 + REPORT_WINDOW_MAX_S + 1), (T0, float(T0 + 1)),
    (True, 10),
])
def test_bad_windows_are_refused(eng, since, until):
    with pytest.raises(ValueError):
        commission_report(eng, since, until)


def test_a_too_long_window_is_named_in_whole_days_and_seconds(eng):
    with pytest.raises(ValueError, match=r"at most 366 days, not 366 days and 1 s$"):
        commission_report(eng, T0, T0 + REPORT_WINDOW_MAX_S + 1)
