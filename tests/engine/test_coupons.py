"""Coupons: templates, issue within quantity and budget, redemption inside the swipe,
restoration on a full refund, and the journal/recovery of their state."""

import os

import numpy as np
import pytest
from harness import tag_id, tagged_op

from core import Engine, EngineConfig, RulesConfig
from core.records import CardStatus, CouponStatus, OpType, Result
from core.rules import CouponTemplate, LevelRule

NOW = 1_780_000_000


class Clock:
    def __init__(self, now=NOW):
        self.now = now

    def __call__(self):
        return self.now


cid, op = tag_id, tagged_op


def run(eng, *args, **kw):
    ops, items, coupons = op(*args, **kw)
    return eng.submit(ops, items, coupons).result()


TEMPLATES = (
    CouponTemplate(1, "10 yuan off", "fixed", value_fen=1_000),
    CouponTemplate(2, "spend 100 save 20", "threshold", value_fen=2_000, min_spend_fen=10_000),
    CouponTemplate(3, "20% off, at most 5 yuan", "percent", percent_bp=8_000, max_off_fen=500,
                   stackable=True),
    CouponTemplate(4, "free coffee", "gift", value_fen=1_500, gift_sku=555),
    CouponTemplate(5, "store 7 only", "fixed", value_fen=300, stores=(7,), stackable=True),
    CouponTemplate(6, "silver only", "fixed", value_fen=300, levels=(1,)),
    CouponTemplate(7, "drinks only", "fixed", value_fen=5_000, categories=(3,)),
    CouponTemplate(8, "limited", "fixed", value_fen=100, total_quantity=2),
    CouponTemplate(9, "budgeted", "fixed", value_fen=400, budget_fen=1_000),
)
RULES = RulesConfig(levels=(LevelRule("regular"), LevelRule("silver", up_points=10**9)),
                    coupon_templates=TEMPLATES)


@pytest.fixture
def eng(tmp_path):
    e = Engine(str(tmp_path), rules=RULES, clock=Clock(), config=EngineConfig(checkpoint_ops=5))
    e.issue_cards([1, 2], os.urandom(16)).result()
    e.recharge(1, 100_000, os.urandom(16)).result()
    yield e
    e.close()


def give(eng, template, card=1):
    res = eng.issue_coupons(template, [card], os.urandom(16)).result()
    assert res.code == Result.OK, res
    return res.value["coupon_ids"][0]


def test_fixed_coupon_is_redeemed_inside_the_swipe_once(eng):
    c = give(eng, 1)
    r = run(eng, "s1", 1, 5_000, coupons=[c])
    cols = r.columns()
    assert r.codes[0] == Result.OK
    assert (cols["coupon_fen"][0], cols["principal_delta_fen"][0]) == (1_000, -4_000)
    assert cols["points_delta"][0] == 40  # points on the 40 yuan paid
    coupon = eng.coupon(c)
    assert coupon["coupon_status"] == CouponStatus.COUPON_REDEEMED
    assert coupon["redeemed_seq"] == int(r.seq[0]) and coupon["redeemed_fen"] == 1_000
    assert run(eng, "s2", 1, 5_000, coupons=[c]).codes[0] == Result.COUPON_USED


def test_threshold_percent_and_gift_coupons(eng):
    t = give(eng, 2)
    assert run(eng, "short", 1, 9_999, coupons=[t]).codes[0] == Result.COUPON_NOT_APPLICABLE
    assert run(eng, "enough", 1, 10_000, coupons=[t]).columns()["coupon_fen"][0] == 2_000
    p = give(eng, 3)
    assert run(eng, "pct", 1, 1_999, coupons=[p]).columns()["coupon_fen"][0] == 399  # floor(399.8)
    p2 = give(eng, 3)
    assert run(eng, "pct-cap", 1, 10_000, coupons=[p2]).columns()["coupon_fen"][0] == 500
    g = give(eng, 4)
    assert run(eng, "no-gift", 1, 2_000, coupons=[g]).codes[0] == Result.COUPON_NOT_APPLICABLE
    r = run(eng, "gift", 1, 3_200, coupons=[g], items=[(555, 1_200, 1, 0), (1, 2_000, 1, 0)])
    assert r.columns()["coupon_fen"][0] == 1_200


def test_scope_of_store_level_and_category(eng):
    s = give(eng, 5)
    assert run(eng, "elsewhere", 1, 1_000, coupons=[s], store=8).codes[0] == Result.COUPON_NOT_APPLICABLE
    assert run(eng, "store7", 1, 1_000, coupons=[s], store=7).codes[0] == Result.OK
    lv = give(eng, 6)
    assert run(eng, "regular", 1, 1_000, coupons=[lv]).codes[0] == Result.COUPON_NOT_APPLICABLE
    d = give(eng, 7)
    r = run(eng, "drinks", 1, 9_000, coupons=[d], items=[(1, 2_000, 1, 3), (2, 7_000, 1, 4)])
    assert r.columns()["coupon_fen"][0] == 2_000  # only the drinks line is eligible


def test_validity_window_stacking_and_ownership(eng):
    c = give(eng, 1)
    eng.clock.now += 30 * 86_400
    assert run(eng, "late", 1, 5_000, coupons=[c]).codes[0] == Result.COUPON_EXPIRED
    eng.clock.now = NOW
    a, b = give(eng, 1), give(eng, 1)
    assert run(eng, "two-fixed", 1, 5_000, coupons=[a, b]).codes[0] == Result.COUPON_NOT_STACKABLE
    p, s = give(eng, 3), give(eng, 5)
    r = run(eng, "stack", 1, 5_000, coupons=[p, s], store=7)
    assert r.codes[0] == Result.OK and r.columns()["coupon_fen"][0] == 500 + 300
    other = give(eng, 1, card=2)
    assert run(eng, "not-mine", 1, 5_000, coupons=[other]).codes[0] == Result.COUPON_NOT_FOUND
    assert run(eng, "twice", 1, 5_000, coupons=[a, a]).codes[0] == Result.COUPON_USED
    assert run(eng, "unknown", 1, 5_000, coupons=[999_999]).codes[0] == Result.COUPON_NOT_FOUND


def test_card_and_pin_are_checked_before_the_coupons(eng):
    """The swipe's order holds with coupons named: the card's status and its PIN come
    before the coupons, and a wrong PIN is journalled (it counts toward the lockout) even
    when the coupon is unknown or used. (Regression: coupon ownership and use were
    checked first, so a frozen card, a missing or locked PIN answered COUPON_USED or
    COUPON_NOT_FOUND, and a wrong PIN with a bad coupon was not counted.)"""
    c = give(eng, 1)
    assert run(eng, "use", 1, 5_000, coupons=[c]).codes[0] == Result.OK
    assert eng.set_pin(1, "1234", os.urandom(16)).result().code == Result.OK
    assert run(eng, "no-pin", 1, 5_000, coupons=[c]).codes[0] == Result.PIN_REQUIRED
    r = run(eng, "wrong-pin", 1, 5_000, coupons=[999_999], pin="9999")
    assert r.codes[0] == Result.PIN_WRONG and r.seq[0] != 0
    assert eng.card(1)["pin_failures"] == 1
    assert run(eng, "right-pin", 1, 5_000, coupons=[c], pin="1234").codes[0] == Result.COUPON_USED
    assert eng.card(1)["pin_failures"] == 1  # a rejected swipe keeps nothing, not even the reset
    assert eng.set_card_status(1, CardStatus.FROZEN, os.urandom(16)).result().code == Result.OK
    assert run(eng, "frozen", 1, 5_000, coupons=[c], pin="1234").codes[0] == Result.CARD_FROZEN


def test_one_coupon_in_two_ops_of_one_batch(eng):
    c = give(eng, 1)
    a = op("b1", 1, 5_000, coupons=[c])
    b = op("b2", 1, 5_000, coupons=[c])
    ops = np.concatenate([a[0], b[0]])
    ops["coupons_off"] = [0, 1]
    res = eng.submit(ops, None, np.array([c, c], dtype=np.uint64)).result()
    assert list(res.codes) == [Result.OK, Result.COUPON_USED]


def test_full_refund_restores_the_coupon_and_returns_only_what_was_paid(eng):
    before = eng.card(1)
    c = give(eng, 1)
    eng.recharge(1, 1, os.urandom(16)).result()
    run(eng, "earn", 1, 100_000 - 6_000)  # leaves 60 yuan and 940 points
    base = eng.card(1)
    s = run(eng, "s", 1, 5_000, coupons=[c], offset=200)
    assert s.columns()["principal_delta_fen"][0] == -(5_000 - 1_000 - 200)
    assert run(eng, "half", 1, 1_000, OpType.REFUND, ref="s").codes[0] == Result.OK
    assert eng.coupon(c)["coupon_status"] == CouponStatus.COUPON_REDEEMED
    assert run(eng, "over", 1, 3_000 + 1, OpType.REFUND, ref="s").codes[0] == Result.REFUND_EXCEEDS_PAID
    assert run(eng, "rest", 1, 3_000, OpType.REFUND, ref="s").codes[0] == Result.OK
    after = eng.card(1)
    for k in ("principal_fen", "bonus_fen", "points", "spend_total_fen"):
        assert after[k] == base[k], k
    assert eng.coupon(c)["coupon_status"] == CouponStatus.COUPON_ISSUED
    assert before["card_no"] == 1
    # The restored coupon can be used again.
    assert run(eng, "again", 1, 5_000, coupons=[c]).codes[0] == Result.OK


def test_order_paid_wholly_by_a_coupon_is_reversed_with_a_zero_refund(eng, tmp_path):
    """Template 1 takes 10 yuan off an 8-yuan order: nothing is paid, so nothing can be
    refunded in money; a refund of 0 reverses it (once) and puts the coupon back."""
    c = give(eng, 1)
    base = eng.card(1)
    s = run(eng, "free", 1, 800, coupons=[c])
    assert s.codes[0] == Result.OK and int(s.record(0)["coupon_fen"]) == 800
    assert run(eng, "one", 1, 1, OpType.REFUND, ref="free").codes[0] == Result.REFUND_EXCEEDS_PAID
    assert run(eng, "neg", 1, -1, OpType.REFUND, ref="free").codes[0] == Result.AMOUNT_NOT_POSITIVE
    assert run(eng, "void", 1, 0, OpType.REFUND, ref="free").codes[0] == Result.OK
    assert eng.coupon(c)["coupon_status"] == CouponStatus.COUPON_ISSUED
    assert run(eng, "void2", 1, 0, OpType.REFUND, ref="free").codes[0] == Result.REFUND_EXCEEDS_PAID
    for k in ("principal_fen", "bonus_fen", "points", "spend_total_fen"):
        assert eng.card(1)[k] == base[k], k
    # A paid swipe's refund of 0 is still refused.
    run(eng, "paid", 1, 500)
    assert run(eng, "zero", 1, 0, OpType.REFUND, ref="paid").codes[0] == Result.AMOUNT_NOT_POSITIVE
    # The reversal is remembered across a restart (checkpointed or replayed).
    eng.close()
    again = Engine(str(tmp_path), rules=RULES, clock=Clock(), config=EngineConfig(checkpoint_ops=5))
    try:
        assert run(again, "void3", 1, 0, OpType.REFUND, ref="free").codes[0] == \
            Result.REFUND_EXCEEDS_PAID
    finally:
        again.close()


def test_quantity_and_budget_bound_issuing(eng):
    assert eng.issue_coupons(8, [1, 2], os.urandom(16)).result().code == Result.OK
    r = eng.issue_coupons(8, [1], os.urandom(16)).result()
    assert (r.code, r.reason) == (Result.FAILED_PRECONDITION, "QUANTITY_EXHAUSTED")
    assert eng.issue_coupons(9, [1, 2], os.urandom(16)).result().code == Result.OK
    r = eng.issue_coupons(9, [1], os.urandom(16)).result()
    assert (r.code, r.reason) == (Result.FAILED_PRECONDITION, "BUDGET_EXHAUSTED")
    r = eng.issue_coupons(77, [1], os.urandom(16)).result()
    assert (r.code, r.reason) == (Result.NOT_FOUND, "TEMPLATE_NOT_FOUND")
    retry = cid("issue-once")
    first = eng.issue_coupons(1, [1], retry).result()
    again = eng.issue_coupons(1, [1], retry).result()
    assert again.replayed and again.value == first.value


def test_coupon_state_survives_restart(tmp_path):
    clock = Clock()
    e = Engine(str(tmp_path), rules=RULES, clock=clock, config=EngineConfig(checkpoint_ops=4))
    e.issue_cards([1], os.urandom(16)).result()
    e.recharge(1, 100_000, os.urandom(16)).result()
    ids = e.issue_coupons(1, [1, 1, 1], os.urandom(16)).result().value["coupon_ids"]
    run(e, "u1", 1, 5_000, coupons=[ids[0]])
    e._poisoned = RuntimeError("simulated crash: skip the closing checkpoint")
    e.close()
    e = Engine(str(tmp_path), rules=RULES, clock=clock)
    assert e.coupon(ids[0])["coupon_status"] == CouponStatus.COUPON_REDEEMED
    assert e.coupon(ids[1])["coupon_status"] == CouponStatus.COUPON_ISSUED
    assert run(e, "u1-again", 1, 5_000, coupons=[ids[0]]).codes[0] == Result.COUPON_USED
    assert run(e, "u2", 1, 5_000, coupons=[ids[1]]).codes[0] == Result.OK
    assert len(e.coupons_of(1)) == 3
    e.close()


def test_coupon_table_grows_past_its_first_capacity(tmp_path):
    clock = Clock()
    e = Engine(str(tmp_path), rules=RULES, clock=clock,
               config=EngineConfig(initial_card_capacity=16, checkpoint_ops=1_000))
    e.issue_cards([1, 2], os.urandom(16)).result()
    e.recharge(1, 100_000, os.urandom(16)).result()
    ids = e.issue_coupons(1, [1] * 40, os.urandom(16)).result().value["coupon_ids"]
    ids += e.issue_coupons(1, [2] * 30, os.urandom(16)).result().value["coupon_ids"]
    assert run(e, "last", 1, 5_000, coupons=[ids[39]]).codes[0] == Result.OK
    e.close()
    e = Engine(str(tmp_path), rules=RULES, clock=clock)
    assert len(e.coupons_of(1)) == 40 and len(e.coupons_of(2)) == 30
    assert e.coupon(ids[39])["coupon_status"] == CouponStatus.COUPON_REDEEMED
    assert e.coupon(ids[69])["coupon_status"] == CouponStatus.COUPON_ISSUED
    e.close()


def test_coupon_ids_follow_the_highest_one_also_after_a_restart_and_a_reserve(tmp_path):
    """put_coupons numbers from the highest id in the table (kept incrementally,
    _max_coupon_id): ids never repeat across ops, a restart (recovery from checkpoint and
    journal) and a reserve_coupons that regrows the tables (which keeps every row)."""
    path = str(tmp_path / "ids")
    e = Engine(path, rules=RULES, clock=Clock(), config=EngineConfig(checkpoint_ops=3))
    e.issue_cards([1, 2, 3], os.urandom(16)).result()
    got = []
    for cards in ([1, 2], [3], [1, 1, 2]):
        got += e.issue_coupons(1, cards, os.urandom(16)).result().value["coupon_ids"]
    assert got == list(range(1, 7))
    e.close()
    e = Engine(path, rules=RULES, clock=Clock(), config=EngineConfig(checkpoint_ops=3))
    try:
        before = e.coupons_snapshot().copy()
        cap = len(e._coupons)

        def reserve(ctx):
            e.reserve_coupons(4 * cap)
            ctx.detail = {}
            return None

        assert e.admin(os.urandom(16), OpType.SET_STATUS, reserve).result().code == Result.OK
        assert len(e._coupons) >= 4 * cap + 6 and len(e._coupons_work) == len(e._coupons)
        assert np.array_equal(e.coupons_snapshot(), before)
        got = e.issue_coupons(1, [2, 3], os.urandom(16)).result().value["coupon_ids"]
        assert got == [7, 8] and e.coupon(8)["card_no"] == 3 and e.coupon(1)["card_no"] == 1
    finally:
        e.close()
