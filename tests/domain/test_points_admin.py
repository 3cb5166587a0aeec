"""Points administration (core/domain/points_admin.py): manual adjustment with a reason,
make-up points for a receipt within 24 hours (earning exactly what a swipe earns),
the gift catalogue and redemption oldest lots first."""

import json

from common import cid
from test_cards_lifecycle import journal_adds_up, state

from core import Engine, RulesConfig
from core.domain.points_admin import (
    Gift,
    PointsOp,
    adjust_points,
    get_gift,
    list_gifts,
    make_up_points,
    put_gift,
    receipt_used,
    redeem_gift,
    swipe_points,
)
from core.records import CardStatus, OpFlag, Result

DAY = 86_400
T0 = 1_700_000_000          # 2023-11-14 (UTC+8)
T_2024 = 1_706_000_000      # 2024-01-23



def two_lot_card(eng, clock, no=1):
    """A card with 100 points earned in 2023 and 50 in 2024 (recharged, swiped)."""
    eng.issue_cards([no], cid()).result()
    assert eng.recharge(no, 1_000_000, cid()).result().codes[0] == Result.OK
    assert eng.swipe(no, 10_000, cid()).result().codes[0] == Result.OK
    clock.now = T_2024
    assert eng.swipe(no, 5_000, cid()).result().codes[0] == Result.OK
    card = eng.card(no)
    assert (card["lot_year"], card["lot0_points"], card["lot1_points"]) == (2023, 100, 50)
    return card


# --- manual adjustment -----------------------------------------------------------------


def test_adjust_needs_a_reason_and_changes_nothing_when_rejected(eng, clock):
    two_lot_card(eng, clock)
    before = state(eng)
    assert adjust_points(eng, 1, 10, cid(), reason="").result().reason == "REASON_REQUIRED"
    assert adjust_points(eng, 1, 0, cid(), reason="x").result().reason == "DELTA_INVALID"
    assert adjust_points(eng, 9, 10, cid(), reason="x").result().code == Result.CARD_NOT_FOUND
    res = adjust_points(eng, 1, -151, cid(), reason="x").result()
    assert res.code == Result.INSUFFICIENT_POINTS
    assert state(eng) == before


def test_adjust_positive_into_current_year_negative_oldest_first(eng, clock):
    two_lot_card(eng, clock)
    c = cid()
    res = adjust_points(eng, 1, 30, c, reason="goodwill", operator_id=8).result()
    assert res.code == Result.OK and res.value == {"points": 180, "points_delta": 30}
    assert adjust_points(eng, 1, 30, c, reason="goodwill").result().replayed
    card = eng.card(1)
    assert (card["lot0_points"], card["lot1_points"]) == (100, 80)
    assert card["period_points"] == 150  # adjusted points are not earned points
    res = adjust_points(eng, 1, -120, cid(), reason="returned order").result()
    card = eng.card(1)
    assert (card["lot0_points"], card["lot1_points"], card["points"]) == (0, 60, 60)
    rec = eng.card_journal(1, 1)[0]
    assert rec["op_type"] == PointsOp.POINTS_ADJUST and int(rec["points_delta"]) == -120
    assert json.loads(res.detail)["reason"] == "returned order"
    assert journal_adds_up(eng)


def test_adjust_below_zero_only_when_forced(eng, clock):
    two_lot_card(eng, clock)
    res = adjust_points(eng, 1, -200, cid(), reason="fraud", force=True).result()
    assert res.code == Result.OK
    card = eng.card(1)
    assert card["points"] == -50 and card["permanent_points"] == -50
    assert card["lot0_points"] == card["lot1_points"] == 0
    assert json.loads(res.detail)["forced"] is True
    # The debt cannot be redeemed away.
    put_gift(eng, Gift(1, "umbrella", 10, 5), cid()).result()
    assert redeem_gift(eng, 1, 1, cid()).result().code == Result.INSUFFICIENT_POINTS
    assert journal_adds_up(eng)


# --- make-up points --------------------------------------------------------------------


def test_make_up_earns_exactly_what_a_swipe_earns(eng, clock):
    rules = RulesConfig(points_per_yuan_bp=15_000, category_points_mult_bp=((3, 20_000),),
                        store_points_mult_bp=((77, 12_500),), no_points_categories=(9,))
    assert eng.set_rules(rules, cid()).result().code == Result.OK
    cases = [(12_345, 0, 0), (99, 0, 0), (100_001, 3, 77), (55_555, 9, 0), (1_000_000, 3, 5),
             (777, 3, 77)]
    eng.issue_cards([1, 2], cid(), level=1).result()   # silver: 1.2x points
    for amount, category, store in cases:
        clock.now += 10
        r = eng.swipe(1, amount, cid(), store_id=store, category=category,
                      flags=OpFlag.PAY_EXTERNAL).result()
        assert r.codes[0] == Result.OK
        paid = int(r.columns()["payable_fen"][0])
        before2 = eng.card(2)
        res = make_up_points(eng, 2, f"R{amount}", paid, clock.now - 3600, cid(),
                             receipt_store_id=store, category=category).result()
        assert res.code == Result.OK
        swiped = int(r.columns()["points_delta"][0])
        assert res.value["points_earned"] == swiped == swipe_points(eng.rules, 1, paid,
                                                                    category, store)
        assert eng.card(2)["points"] - before2["points"] == swiped
    c1, c2 = eng.card(1), eng.card(2)
    for f in ("points", "lot0_points", "lot_year", "period_points", "spend_total_fen",
              "period_spend_fen", "visits", "level"):
        assert c1[f] == c2[f], f
    assert journal_adds_up(eng)


def test_make_up_for_a_receipt_only_once_and_within_24_hours(eng, clock):
    eng.issue_cards([1, 2], cid()).result()
    before = state(eng)
    now = clock.now
    res = make_up_points(eng, 1, "A-1", 10_000, now - 24 * 3600 - 1, cid(),
                         receipt_store_id=5).result()
    assert res.code == Result.FAILED_PRECONDITION and res.reason == "RECEIPT_TOO_OLD"
    res = make_up_points(eng, 1, "A-1", 10_000, now + 1, cid(), receipt_store_id=5).result()
    assert res.reason == "RECEIPT_IN_FUTURE"
    assert make_up_points(eng, 1, "", 10_000, now, cid(),
                          receipt_store_id=5).result().reason == "RECEIPT_ID_INVALID"
    assert make_up_points(eng, 1, "A-1", 0, now, cid(),
                          receipt_store_id=5).result().code == Result.AMOUNT_NOT_POSITIVE
    assert state(eng) == before
    c = cid()
    res = make_up_points(eng, 1, "A-1", 10_000, now - 24 * 3600, c, receipt_store_id=5).result()
    assert res.code == Result.OK and res.value["points_earned"] == 100
    assert make_up_points(eng, 1, "A-1", 10_000, now, c, receipt_store_id=5).result().replayed
    # The same receipt never earns twice, on this card or another; under a new id too.
    for card in (1, 2):
        res = make_up_points(eng, card, "A-1", 10_000, now, cid(), receipt_store_id=5).result()
        assert res.code == Result.ALREADY_EXISTS and res.reason == "RECEIPT_USED"
    assert receipt_used(eng, 5, "A-1")["card_no"] == 1
    # The same receipt number at another store is another receipt.
    assert make_up_points(eng, 2, "A-1", 10_000, now, cid(),
                          receipt_store_id=6).result().code == Result.OK
    rec = eng.card_journal(1, 1)[0]
    assert rec["op_type"] == PointsOp.POINTS_MAKE_UP and int(rec["store_id"]) == 5
    assert int(rec["op_flags"]) == OpFlag.PAY_EXTERNAL
    assert eng.card(1)["points"] == 100
    assert journal_adds_up(eng)


def test_make_up_upgrades_like_a_swipe_and_needs_a_usable_card(eng, clock):
    eng.issue_cards([1, 2], cid()).result()
    res = make_up_points(eng, 1, "big", 1_000_000, clock.now, cid(), receipt_store_id=1).result()
    assert res.value["points_earned"] == 10_000 and eng.card(1)["level"] == 1  # silver
    eng.set_card_status(2, CardStatus.FROZEN, cid()).result()
    res = make_up_points(eng, 2, "x", 1_000, clock.now, cid(), receipt_store_id=1).result()
    assert res.code == Result.CARD_FROZEN
    assert receipt_used(eng, 1, "x") is None


# --- gifts -----------------------------------------------------------------------------


def test_gift_catalogue(eng):
    assert put_gift(eng, Gift(1, "car wash", 500, 10), cid()).result().code == Result.OK
    assert put_gift(eng, Gift(2, "parking 1h", 100, 0, active=False), cid()).result().code == \
        Result.OK
    assert put_gift(eng, Gift(3, "", 1, 1), cid()).result().reason == "GIFT_INVALID"
    assert [g.gift_id for g in list_gifts(eng)] == [1, 2]
    assert [g.gift_id for g in list_gifts(eng, active_only=True)] == [1]
    assert get_gift(eng, 1).points_cost == 500 and get_gift(eng, 3) is None


def test_redeem_takes_oldest_points_and_stock_atomically(eng, clock):
    two_lot_card(eng, clock)
    put_gift(eng, Gift(1, "car wash", 60, 3), cid()).result()
    c = cid()
    res = redeem_gift(eng, 1, 1, c, qty=2).result()
    assert res.code == Result.OK and res.value == {"points_cost": 120, "points": 30, "stock": 1,
                                                   "coupon_ids": []}
    assert redeem_gift(eng, 1, 1, c, qty=2).result().replayed
    card = eng.card(1)
    assert (card["lot0_points"], card["lot1_points"]) == (0, 30)  # 2023's lot went first
    assert get_gift(eng, 1).stock == 1
    rec = eng.card_journal(1, 1)[0]
    assert rec["op_type"] == PointsOp.GIFT_REDEEM and int(rec["points_delta"]) == -120
    assert journal_adds_up(eng)


def test_redeem_rejections_change_neither_points_nor_stock(eng, clock):
    two_lot_card(eng, clock)
    eng.issue_cards([2], cid()).result()
    put_gift(eng, Gift(1, "car wash", 100, 1), cid()).result()
    put_gift(eng, Gift(2, "old", 1, 5, active=False), cid()).result()
    before = state(eng)
    assert redeem_gift(eng, 1, 1, cid(), qty=2).result().reason == "OUT_OF_STOCK"
    assert redeem_gift(eng, 2, 1, cid()).result().code == Result.INSUFFICIENT_POINTS
    assert redeem_gift(eng, 1, 2, cid()).result().reason == "GIFT_INACTIVE"
    assert redeem_gift(eng, 1, 9, cid()).result().reason == "GIFT_NOT_FOUND"
    assert redeem_gift(eng, 1, 1, cid(), qty=0).result().reason == "QTY_INVALID"
    eng.set_card_status(1, CardStatus.DORMANT, cid()).result()
    assert redeem_gift(eng, 1, 1, cid()).result().code == Result.CARD_DORMANT
    assert state(eng)[0] != before[0]  # only the status change above
    assert get_gift(eng, 1).stock == 1 and eng.card(1)["points"] == 150


def test_redeem_points_for_coupons(tmp_path, clock):
    """A coupon gift: points buy coupons of a template, put on the card in the same
    commit; a retry gives the same coupons; the template's quantity limit holds (a
    redemption past it takes no points and no stock); the coupon works in a swipe."""
    import numpy as np

    from core.records import OP, OpType
    from core.rules import CouponTemplate
    rules = RulesConfig(coupon_templates=(CouponTemplate(7, "3 yuan off", "fixed", value_fen=300,
                                                         total_quantity=3, stackable=True),))
    eng = Engine(str(tmp_path / "d"), clock=clock, rules=rules)
    try:
        two_lot_card(eng, clock)
        assert put_gift(eng, Gift(5, "bad", 10, 5, coupon_template_id=99), cid()).result() \
            .reason == "TEMPLATE_NOT_FOUND"
        put_gift(eng, Gift(5, "3 yuan coupon", 20, 10, coupon_template_id=7), cid()).result()
        c = cid()
        res = redeem_gift(eng, 1, 5, c, qty=2).result()
        assert res.code == Result.OK and res.value["points_cost"] == 40
        ids = res.value["coupon_ids"]
        assert len(ids) == 2 and redeem_gift(eng, 1, 5, c, qty=2).result().value["coupon_ids"] == ids
        held = eng.coupons_of(1)
        assert sorted(x["coupon_id"] for x in held) == ids
        assert all(x["template_id"] == 7 for x in held)
        before = state(eng)
        res = redeem_gift(eng, 1, 5, cid(), qty=2).result()          # only 1 of 3 left
        assert res.code == Result.FAILED_PRECONDITION and res.reason == "QUANTITY_EXHAUSTED"
        assert state(eng) == before and get_gift(eng, 5).stock == 8
        assert eng.card(1)["points"] == 110
        ops = np.zeros(1, dtype=OP)
        ops["client_lo"], ops["card_no"], ops["amount_fen"] = 77, 1, 1_000
        ops["op_type"], ops["coupons_n"] = OpType.SWIPE, 1
        r = eng.submit(ops, None, np.array(ids[:1], np.uint64)).result()
        assert r.codes[0] == Result.OK and eng.coupon(ids[0])["coupon_status"] == 2
        assert journal_adds_up(eng)
    finally:
        eng.close()


def test_no_transfer_between_cards():
    import core.domain.points_admin as pa
    assert not [n for n in dir(pa) if "transfer" in n.lower()]
    assert not [op for op in PointsOp if "TRANSFER" in op.name]
