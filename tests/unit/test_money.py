"""The money rules with worked examples, run through the Cython fast path (and, where a
rule is a pure function, through the reference model too)."""

from __future__ import annotations

import dataclasses

import pytest
import reference
from harness import FastPath, blank_card, make_op

from core.records import OpFlag, OpType, Result
from core.rules import BonusTier, LevelRule, RulesConfig, RulesError

NOW = 1_700_000_000
SECONDS_PER_DAY = 86_400
# Two calendar years from NOW (2023-11-15 06:13 in Shanghai) cross 29 February 2024:
# 731 days, not 730 (issue 8, item 4).
TWO_YEARS_S = 731 * SECONDS_PER_DAY
SWIPE, RECHARGE = int(OpType.SWIPE), int(OpType.RECHARGE)


def one_level(discount_bp: int = 10_000, mult_bp: int = 10_000, **rules) -> RulesConfig:
    return RulesConfig(levels=(LevelRule("only", discount_bp=discount_bp, points_mult_bp=mult_bp),),
                       **rules)


def run(rules: RulesConfig, card: dict, ops: list[dict], now: int = NOW):
    """Apply ops to one card through the fast path; check the reference agrees; return
    (results, records, card after)."""
    fast = FastPath([card])
    got, recs, _, _ = fast.apply(ops, rules.compile(), now)
    model = reference.Model(cards={card["card_no"]: dict(card)})
    want, want_recs = model.apply(ops, rules, now)
    assert got == [tuple(int(x) for x in w) for w in want]
    assert recs == want_recs
    after = fast.card(card["card_no"])
    assert after == model.cards[card["card_no"]]
    return got, recs, after


def swipe1(rules: RulesConfig, amount_fen: int, card: dict | None = None, **op) -> dict:
    card = card or blank_card(1, principal_fen=10**9)
    got, recs, _ = run(rules, card, [make_op(1, card["card_no"], amount_fen, SWIPE, **op)])
    assert got[0][0] == Result.OK, got
    return recs[0]


# --- payable after the level discount --------------------------------------------------


@pytest.mark.parametrize("amount, discount_bp, half_up, floor", [
    (10, 9_500, 10, 9),            # 9.5 fen: half up -> 10, floor -> 9
    (30, 9_850, 30, 29),           # 29.55 fen
    (1, 5_000, 1, 0),              # exactly half a fen
    (3, 5_000, 2, 1),              # 1.5 fen
    (1, 9_500, 1, 0),              # 0.95 fen
    (1, 4_999, 0, 0),              # 0.4999 fen: below half rounds down either way
    (10_000, 9_500, 9_500, 9_500),  # exact: no rounding at all
    (19_999, 8_850, 17_699, 17_699),  # 17,699.115 fen
    (12_345, 9_800, 12_098, 12_098),  # 12,098.1 fen
    (12_375, 9_800, 12_128, 12_127),  # 12,127.5 fen: the boundary
    (7, 10_000, 7, 7),             # no discount
    (7, 0, 0, 0),                  # free: nothing to pay
])
def test_payable_rounding(amount, discount_bp, half_up, floor):
    assert reference.payable_fen(amount, discount_bp, "half_up") == half_up
    assert reference.payable_fen(amount, discount_bp, "floor") == floor
    for rounding, want in (("half_up", half_up), ("floor", floor)):
        rec = swipe1(one_level(discount_bp, rounding=rounding), amount)
        assert rec["payable_fen"] == want
        assert rec["discount_fen"] == amount - want
        assert rec["principal_delta_fen"] == -want


def test_payable_at_the_largest_amount():
    rules = one_level(9_999, max_amount_fen=10**13, max_balance_fen=10**15)
    card = blank_card(1, principal_fen=10**15)
    rec = swipe1(rules, 10**13, card)
    assert rec["payable_fen"] == 10**13 * 9_999 // 10_000


# --- points ----------------------------------------------------------------------------


@pytest.mark.parametrize("payable, rate_bp, mult_bp, points", [
    (99, 10_000, 10_000, 0),        # the part below one yuan earns nothing
    (100, 10_000, 10_000, 1),
    (199, 10_000, 10_000, 1),
    (12_345, 10_000, 10_000, 123),
    (300, 10_000, 15_000, 4),       # 3 yuan at 1.5x = 4.5, floored
    (1_000, 10_000, 12_000, 12),
    (1_000, 5_000, 10_000, 5),      # half a point per yuan
    (100, 5_000, 10_000, 0),        # half a point floors to none
    (199, 20_000, 10_000, 2),       # 1.99 yuan = 1 whole yuan at 2 points
    (100_000, 0, 10_000, 0),
    (100_000, 10_000, 0, 0),
    (10**13, 1_000_000, 100_000, 10**11 * 1_000),  # largest rate and multiplier
])
def test_points(payable, rate_bp, mult_bp, points):
    assert reference.points_earned(payable, rate_bp, mult_bp) == points
    rules = one_level(10_000, mult_bp, points_per_yuan_bp=rate_bp, max_amount_fen=10**13,
                      max_balance_fen=10**15)
    rec = swipe1(rules, payable, blank_card(1, principal_fen=10**15))
    assert rec["points_delta"] == points
    assert rec["after"]["points"] == points
    assert rec["after"]["period_points"] == points


def test_points_follow_the_payable_not_the_gross_amount():
    # 105 fen at 5% off pays 99.75 -> 100 fen (half up): one point; floor pays 99: none.
    assert swipe1(one_level(9_500), 105)["points_delta"] == 1
    assert swipe1(one_level(9_500, rounding="floor"), 105)["points_delta"] == 0


def test_no_points_category_still_pays():
    rules = one_level(no_points_categories=(7,))
    rec = swipe1(rules, 10_000, category=7)
    assert rec["points_delta"] == 0 and rec["principal_delta_fen"] == -10_000
    assert rec["after"]["spend_total_fen"] == 10_000
    assert swipe1(rules, 10_000, category=8)["points_delta"] == 100


def test_pay_external_discounts_and_earns_but_does_not_debit():
    rules = one_level(9_000)
    card = blank_card(1)  # no stored value at all
    got, recs, after = run(rules, card, [make_op(1, 1, 2_000, SWIPE, op_flags=OpFlag.PAY_EXTERNAL),
                                         make_op(2, 1, 2_000, SWIPE)])
    assert got[0] == (Result.OK, 0, 1)
    assert got[1] == (Result.INSUFFICIENT_BALANCE, 0, 0)
    assert recs[0]["payable_fen"] == 1_800 and recs[0]["discount_fen"] == 200
    assert recs[0]["principal_delta_fen"] == 0 and recs[0]["bonus_delta_fen"] == 0
    assert after["points"] == 18 and after["spend_total_fen"] == 1_800
    assert after["principal_fen"] == 0 and after["visits"] == 1


# --- principal and bonus ---------------------------------------------------------------


@pytest.mark.parametrize("order, amount, principal_delta, bonus_delta", [
    ("principal_first", 600, -500, -100),
    ("bonus_first", 600, -300, -300),
    ("principal_first", 400, -400, 0),
    ("bonus_first", 200, 0, -200),
    ("principal_first", 800, -500, -300),   # exactly everything
    ("bonus_first", 800, -500, -300),
])
def test_spend_order(order, amount, principal_delta, bonus_delta):
    card = blank_card(1, principal_fen=500, bonus_fen=300)
    rec = swipe1(one_level(spend_order=order), amount, card)
    assert (rec["principal_delta_fen"], rec["bonus_delta_fen"]) == (principal_delta, bonus_delta)
    assert rec["after"]["principal_fen"] == 500 + principal_delta
    assert rec["after"]["bonus_fen"] == 300 + bonus_delta


def test_one_fen_short_is_refused_and_leaves_no_trace():
    card = blank_card(1, principal_fen=500, bonus_fen=300)
    got, recs, after = run(one_level(), card, [make_op(1, 1, 801, SWIPE)])
    assert got == [(Result.INSUFFICIENT_BALANCE, 0, 0)] and recs == []
    assert after == card


# --- recharge bonus tiers --------------------------------------------------------------

TIERS = (BonusTier(10_000, 2_000), BonusTier(50_000, 15_000, points=100),
         BonusTier(100_000, 40_000, points=500))


@pytest.mark.parametrize("paid, bonus, tier_points", [
    (1, 0, 0),
    (9_999, 0, 0),
    (10_000, 2_000, 0),      # exactly at the first tier
    (49_999, 2_000, 0),
    (50_000, 15_000, 100),   # the highest tier reached applies, not the sum
    (99_999, 15_000, 100),
    (100_000, 40_000, 500),
    (10**8, 40_000, 500),
])
def test_recharge_tiers(paid, bonus, tier_points):
    rules = one_level(tiers=TIERS, recharge_points_per_yuan_bp=10_000)
    got, recs, after = run(rules, blank_card(1), [make_op(1, 1, paid, RECHARGE)])
    assert got == [(Result.OK, 0, 1)]
    rec = recs[0]
    assert rec["principal_delta_fen"] == paid and rec["bonus_delta_fen"] == bonus
    assert rec["points_delta"] == paid // 100 + tier_points
    assert rec["payable_fen"] == paid and rec["discount_fen"] == 0
    assert after["principal_fen"] == paid and after["bonus_fen"] == bonus
    assert after["recharge_total_fen"] == paid and after["period_recharge_fen"] == paid
    assert after["visits"] == 0 and after["last_visit_s"] == 0  # a recharge is not a visit


def test_recharge_points_ignore_level_multiplier_and_category():
    rules = one_level(mult_bp=30_000, recharge_points_per_yuan_bp=5_000,
                      no_points_categories=(0,))
    _, recs, _ = run(rules, blank_card(1), [make_op(1, 1, 1_099, RECHARGE)])
    assert recs[0]["points_delta"] == 5  # 10 whole yuan at half a point


def test_recharge_up_to_the_balance_limit():
    rules = one_level(max_balance_fen=100_000, tiers=(BonusTier(10_000, 1_000),))
    card = blank_card(1, principal_fen=80_000, bonus_fen=9_000)
    # 80,000 + 9,000 + 10,000 + 1,000 bonus = exactly the limit.
    got, _, after = run(rules, card, [make_op(1, 1, 10_000, RECHARGE), make_op(2, 1, 1, RECHARGE)])
    assert got == [(Result.OK, 0, 1), (Result.BALANCE_LIMIT, 0, 0)]
    assert after["principal_fen"] + after["bonus_fen"] == 100_000


# --- levels ----------------------------------------------------------------------------


def test_default_levels_are_the_seed_example():
    levels = RulesConfig().levels
    assert [lv.up_points for lv in levels] == [0, 10_000, 50_000]
    # "two years from the upgrade": calendar years, not 730 days (issue 8, item 4).
    assert [(lv.validity_days, lv.validity_years) for lv in levels[1:]] == [(0, 2), (0, 2)]


@pytest.mark.parametrize("points_before, yuan, level, expires", [
    (9_998, 1, 0, 0),                  # 9,999 points: not yet
    (9_999, 1, 1, NOW + TWO_YEARS_S),  # exactly 10,000: silver for two years
    (9_000, 5_000, 1, NOW + TWO_YEARS_S),
    (49_999, 1, 2, NOW + TWO_YEARS_S),  # exactly 50,000 from regular: straight to gold
    (0, 49_999, 1, NOW + TWO_YEARS_S),
])
def test_upgrade_on_points(points_before, yuan, level, expires):
    rules = RulesConfig()  # default levels; regular earns one point per yuan
    card = blank_card(1, principal_fen=10**9, points=points_before, period_points=points_before)
    got, recs, after = run(rules, card, [make_op(1, 1, yuan * 100, SWIPE)])
    assert got[0][0] == Result.OK
    assert after["level"] == level and after["level_expires_at_s"] == expires
    assert recs[0]["level_before"] == 0


def test_silver_to_gold_at_exactly_50000_and_the_new_discount_applies_next():
    rules = RulesConfig()
    card = blank_card(1, principal_fen=10**9, level=1, level_expires_at_s=NOW + 5,
                      points=49_978, period_points=49_978)
    # Silver: 2% off and 1.2x. 1,000 fen pays 980 fen = 9 yuan -> 10.8 -> 10 points: 49,988.
    # 1,100 fen pays 1,078 fen = 10 yuan -> 12 points: exactly 50,000 -> gold from now.
    # Gold: 5% off and 1.5x. 1,000 fen pays 950 fen = 9 yuan -> 13.5 -> 13 points.
    ops = [make_op(1, 1, 1_000, SWIPE), make_op(2, 1, 1_100, SWIPE), make_op(3, 1, 1_000, SWIPE)]
    got, recs, after = run(rules, card, ops, now=NOW + 100)
    assert [r["points_delta"] for r in recs] == [10, 12, 13]
    assert [r["after"]["level"] for r in recs] == [1, 2, 2]
    assert recs[1]["level_before"] == 1 and recs[2]["level_before"] == 2
    assert recs[1]["after"]["period_points"] == 50_000
    assert recs[2]["payable_fen"] == 950  # gold's discount on the very next swipe
    assert after["level_expires_at_s"] == NOW + 100 + TWO_YEARS_S


def test_upgrade_on_spend_and_on_recharge():
    levels = (LevelRule("a"), LevelRule("b", up_spend_fen=5_000, validity_days=1),
              LevelRule("c", up_recharge_fen=100_000))
    rules = RulesConfig(levels=levels)
    card = blank_card(1, principal_fen=10**6, period_spend_fen=4_000)
    _, recs, after = run(rules, card, [make_op(1, 1, 999, SWIPE), make_op(2, 1, 1, SWIPE),
                                       make_op(3, 1, 100_000, RECHARGE)])
    assert [r["after"]["level"] for r in recs] == [0, 1, 2]
    assert recs[1]["after"]["level_expires_at_s"] == NOW + 86_400
    assert after["level_expires_at_s"] == 0  # level c never expires


def test_no_downgrade_and_no_upgrade_past_the_top():
    rules = RulesConfig()
    card = blank_card(1, principal_fen=10**6, level=2, period_points=0)
    _, recs, after = run(rules, card, [make_op(1, 1, 100, SWIPE)])
    assert after["level"] == 2


# --- rules validation ------------------------------------------------------------------

BAD_RULES = [
    {"version": 0}, {"version": 2**32}, {"version": True},
    {"rounding": "banker"}, {"spend_order": "random"},
    {"max_amount_fen": 0}, {"max_amount_fen": 10**13 + 1}, {"max_amount_fen": 1.5},
    {"max_balance_fen": 0}, {"max_balance_fen": 10**15 + 1},
    {"points_per_yuan_bp": -1}, {"points_per_yuan_bp": 1_000_001},
    {"recharge_points_per_yuan_bp": 1_000_001},
    {"levels": ()}, {"levels": tuple(LevelRule(str(i)) for i in range(256))},
    {"levels": (LevelRule("x", discount_bp=10_001),)},
    {"levels": (LevelRule("x", discount_bp=-1),)},
    {"levels": (LevelRule("x", points_mult_bp=100_001),)},
    {"levels": (LevelRule("x", up_points=-1),)},
    {"levels": (LevelRule("x", validity_days=2**62),)},
    {"tiers": (BonusTier(0, 10),)},
    {"tiers": (BonusTier(100, -1),)},
    {"tiers": (BonusTier(100, 10), BonusTier(100, 20))},
    {"tiers": (BonusTier(200, 10), BonusTier(100, 20))},
    {"tiers": (BonusTier(10**13 + 1, 10),)},
    {"tiers": (BonusTier(100, 10, points=10**12 + 1),)},
    {"no_points_categories": (65_536,)}, {"no_points_categories": (-1,)},
]


@pytest.mark.parametrize("change", BAD_RULES, ids=[repr(c)[:50] for c in BAD_RULES])
def test_rules_validation_rejects(change):
    bad = dataclasses.replace(RulesConfig(), **change)
    with pytest.raises(RulesError):
        bad.validate()
    with pytest.raises(RulesError):
        bad.compile()


@pytest.mark.parametrize("days", [(2**63 - 1) // SECONDS_PER_DAY, 2**62 - 1])
def test_level_validity_that_would_overflow_is_refused(days):
    bad = RulesConfig(levels=(LevelRule("a"), LevelRule("b", up_points=1, validity_days=days)))
    with pytest.raises(RulesError):
        bad.validate()


def test_rules_edges_are_accepted_and_round_trip():
    edge = RulesConfig(version=2**32 - 1, max_amount_fen=10**13, max_balance_fen=10**15,
                       points_per_yuan_bp=1_000_000, recharge_points_per_yuan_bp=0,
                       levels=(LevelRule("x", discount_bp=0, points_mult_bp=100_000),),
                       tiers=(BonusTier(1, 0), BonusTier(10**13, 10**13, 10**12)),
                       no_points_categories=(0, 65_535))
    edge.validate()
    edge.compile()
    assert RulesConfig.from_json(edge.to_json()) == edge


def test_rules_from_dict_rejects_unknown_fields():
    with pytest.raises(RulesError):
        RulesConfig.from_dict({"points_per_yuan": 1})
