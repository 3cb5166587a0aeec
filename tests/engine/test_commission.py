"""Staff commission (domain.md §9, §4): per line by sku, then category, then the
default share, on what the member paid for the line; journalled with the swipe as
commission_fen for the op's operator; refunds give back the same shares; a count
card's use earns its service's fixed amount per use."""

import os

import pytest
from harness import tagged_op

from core import Engine, RulesConfig
from core.records import OpType, Result
from core.rules import CommissionRule, LevelRule, RulesError

NOW = 1_780_000_000
RULES = RulesConfig(
    levels=(LevelRule("regular"),), commission_bp=100,
    commission_rules=(CommissionRule("sku", 777, fixed_fen=50),
                      CommissionRule("category", 3, bp=500),
                      CommissionRule("category", 9, fixed_fen=800)))


def submit(eng, tag, card, amount, op_type=OpType.SWIPE, **kw):
    """The op's result code and the commission its record carries."""
    res = eng.submit(*tagged_op(tag, card, amount, op_type, operator=7, **kw)).result()
    rec = res.record(0)
    return int(res.codes[0]), (int(rec["commission_fen"]) if rec is not None else None)


@pytest.fixture
def eng(tmp_path):
    e = Engine(str(tmp_path / "d"), rules=RULES, clock=lambda: NOW)
    e.issue_cards([1], os.urandom(16)).result()
    e.issue_cards([2], os.urandom(16), count_service=9, count_uses=5).result()
    assert e.recharge(1, 100_000, os.urandom(16)).result().codes[0] == Result.OK
    e.swipe(1, 20_000, os.urandom(16)).result()  # 200 points, some to offset below
    yield e
    e.close()


def test_per_line_rules_on_what_was_paid(eng):
    # Payable 6,000; a 100-point offset is 100 fen, shared out floored like the points:
    # sku 777 (2 x, fixed 50): 100; category 3 at 5%: floor((3,000 - 50) * 5%) = 147;
    # the rest at the default 1%: floor((1,000 - 16) * 1%) = 9.
    code, commission = submit(eng, "basket", 1, 6_000, offset=100,
                              items=[(777, 2_000, 2, 1), (1, 3_000, 1, 3), (2, 1_000, 1, 2)])
    assert (code, commission) == (Result.OK, 100 + 147 + 9)
    # Without items the swipe is one line of its category.
    assert submit(eng, "plain", 1, 10_000, category=3) == (Result.OK, 500)
    assert submit(eng, "default", 1, 999, category=4) == (Result.OK, 9)


def test_refunds_give_back_exactly_the_commission(eng):
    code, commission = submit(eng, "sale", 1, 6_000, offset=100,
                              items=[(777, 2_000, 2, 1), (1, 3_000, 1, 3), (2, 1_000, 1, 2)])
    assert code == Result.OK and commission == 256
    _, first = submit(eng, "r1", 1, 3_333, OpType.REFUND, ref="sale")
    _, second = submit(eng, "r2", 1, 1, OpType.REFUND, ref="sale")
    _, rest = submit(eng, "r3", 1, 6_000 - 3_334, OpType.REFUND, ref="sale")
    assert first == -(3_333 * 256 // 6_000)
    assert first + second + rest == -256                 # exactly what the swipe earned


def test_count_card_use_earns_the_service_fixed_amount(eng):
    assert submit(eng, "wash", 2, 2, OpType.USE_COUNT, category=9) == (Result.OK, 1_600)


def test_commission_survives_restart_and_recharges_earn_none(tmp_path):
    path = str(tmp_path / "d")
    e = Engine(path, rules=RULES, clock=lambda: NOW)
    e.issue_cards([1], os.urandom(16)).result()
    res = e.recharge(1, 100_000, os.urandom(16)).result()
    assert int(res.record(0)["commission_fen"]) == 0
    assert submit(e, "s", 1, 10_000, category=3) == (Result.OK, 500)
    e.close()
    e = Engine(path)
    assert int(e.card_journal(1, 1)[0]["commission_fen"]) == 500
    e.close()


def test_commission_past_the_amount_bound_is_refused(tmp_path):
    rules = RulesConfig(levels=(LevelRule("regular"),), max_amount_fen=100_000,
                        commission_rules=(CommissionRule("sku", 5, fixed_fen=1_000),))
    e = Engine(str(tmp_path / "d"), rules=rules, clock=lambda: NOW)
    try:
        e.issue_cards([1], os.urandom(16)).result()
        e.recharge(1, 100_000, os.urandom(16)).result()
        before = e.card(1)
        code, _ = submit(e, "big", 1, 1_000, items=[(5, 1_000, 101, 0)])
        assert code == Result.AMOUNT_TOO_LARGE and e.card(1) == before
    finally:
        e.close()


@pytest.mark.parametrize("bad", [
    RulesConfig(commission_bp=10_001),
    RulesConfig(commission_rules=(CommissionRule("store", 1, bp=1),)),
    RulesConfig(commission_rules=(CommissionRule("category", 70_000, bp=1),)),
    RulesConfig(commission_rules=(CommissionRule("sku", 0, bp=1),)),
    RulesConfig(commission_rules=(CommissionRule("sku", 1, fixed_fen=-1),)),
    RulesConfig(commission_rules=(CommissionRule("sku", 1, bp=1), CommissionRule("sku", 1, bp=2))),
])
def test_bad_commission_rules_are_refused(bad):
    with pytest.raises(RulesError):
        bad.validate()


def test_rules_round_trip_through_json():
    assert RulesConfig.from_json(RULES.to_json()) == RULES
