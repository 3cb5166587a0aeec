"""Levels (core/domain/levels.py): manual change with reason and approver, the review at the
end of a level's validity (the seed: gold below 50,000 yuan keep -> silver; no spend ->
membership ends), and the level history read from the journal."""

import json

import numpy as np
from common import cid
from test_cards_lifecycle import journal_adds_up, state

from core import Engine
from core.domain.cards import replace
from core.domain.levels import (
    CARD_FLAG_MEMBERSHIP_LAPSED,
    LevelOp,
    level_history,
    readmit,
    review_levels,
    set_level,
)
from core.records import ITEM, OP, CardStatus, OpType, Result
from core.rules import BonusTier, LevelRule, RulesConfig, add_years

DAY = 86_400
T0 = 1_700_000_000
SILVER, GOLD = 1, 2


def years(t_s: int, n: int = 2) -> int:
    """n calendar years later in the chain's time zone (levels last two years)."""
    return add_years(t_s, n, RulesConfig().tz_offset_s)


END1 = years(T0)      # the first level period of a card that went gold at T0 ends here
END2 = years(END1)    # ... and the second


def gold_card(eng, no, spend_fen_after=0, clock=None):
    """A card that reached gold at T0 by points (50,000 yuan paid), then spent
    spend_fen_after in its new period (counters reset by a first review)."""
    eng.issue_cards([no], cid()).result()
    assert eng.recharge(no, 100_000_000, cid()).result().codes[0] == Result.OK
    assert eng.swipe(no, 5_000_000, cid()).result().codes[0] == Result.OK
    card = eng.card(no)
    assert card["level"] == GOLD and card["level_expires_at_s"] == years(clock.now)
    return card


def test_manual_change_needs_reason_and_a_different_approver(eng):
    eng.issue_cards([1], cid()).result()
    before = state(eng)
    for kwargs, reason in (
            ({"reason": " ", "requester_id": 5, "approver_id": 6}, "REASON_REQUIRED"),
            ({"reason": "vip", "requester_id": 5, "approver_id": 0}, "APPROVER_REQUIRED"),
            ({"reason": "vip", "requester_id": 5, "approver_id": 5}, "APPROVER_IS_REQUESTER")):
        res = set_level(eng, 1, GOLD, cid(), **kwargs).result()
        assert res.code != Result.OK and res.reason == reason
    assert set_level(eng, 1, 9, cid(), reason="x", requester_id=5,
                     approver_id=6).result().reason == "LEVEL_INVALID"
    assert set_level(eng, 1, 0, cid(), reason="x", requester_id=5,
                     approver_id=6).result().reason == "LEVEL_UNCHANGED"
    assert state(eng) == before


def test_manual_change_is_recorded_as_such(eng, clock):
    eng.issue_cards([1], cid()).result()
    c = cid()
    res = set_level(eng, 1, GOLD, c, reason="key account", requester_id=5,
                    approver_id=6).result()
    assert res.code == Result.OK
    assert set_level(eng, 1, GOLD, c, reason="key account", requester_id=5,
                     approver_id=6).result().replayed
    card = eng.card(1)
    assert card["level"] == GOLD and card["level_expires_at_s"] == END1
    rec = eng.card_journal(1, 1)[0]
    assert rec["op_type"] == LevelOp.LEVEL_MANUAL and rec["level_before"] == 0
    assert int(rec["operator_id"]) == 5
    detail = json.loads(res.detail)
    assert detail["reason"] == "key account" and detail["approver_id"] == 6
    assert detail["before"]["level"] == 0 and detail["after"]["level"] == GOLD
    hist = level_history(eng, 1)
    assert hist[0]["op"] == "LEVEL_MANUAL" and hist[0]["reason"] == "key account"
    assert hist[0]["approver_id"] == 6 and hist[0]["requester_id"] == 5
    assert (hist[0]["level_before"], hist[0]["level_after"]) == (0, GOLD)
    assert journal_adds_up(eng)


def test_review_gold_below_keep_goes_to_silver(eng, clock):
    # The seed: gold keeps at 50,000 yuan spend in the period; 20,000 yuan -> silver.
    gold_card(eng, 1, clock=clock)
    gold_card(eng, 2, clock=clock)
    gold_card(eng, 3, clock=clock)
    gold_card(eng, 4, clock=clock)
    clock.now = END1
    res = review_levels(eng, cid()).result()           # every period spend was 50,000 yuan
    assert res.value == {"reviewed": 4, "kept": 4, "downgraded": 0, "lapsed": 0}
    # A new period: card 1 pays 19,000 yuan (gold's 5% off), card 2 4,750, card 3
    # 57,000, card 4 nothing.
    for no, fen in ((1, 2_000_000), (2, 500_000), (3, 6_000_000)):
        assert eng.swipe(no, fen, cid(), flags=1).result().codes[0] == Result.OK
    assert [eng.card(n)["period_spend_fen"] for n in (1, 2, 3)] == [1_900_000, 475_000,
                                                                     5_700_000]
    clock.now = END1 + 100
    assert review_levels(eng, cid()).result().value["reviewed"] == 0  # not yet due
    clock.now = END2
    before = {n: eng.card(n) for n in (1, 2, 3, 4)}
    res = review_levels(eng, cid()).result()
    assert res.value == {"reviewed": 4, "kept": 1, "downgraded": 2, "lapsed": 1}
    c1, c2, c3, c4 = (eng.card(n) for n in (1, 2, 3, 4))
    assert c1["level"] == SILVER and c1["level_expires_at_s"] == years(clock.now)
    assert c2["level"] == 0 and c2["level_expires_at_s"] == 0
    assert c3["level"] == GOLD and c3["level_expires_at_s"] == years(clock.now)
    # No spend at all in the period: the membership ends (level 0 and the flag); the
    # card keeps its money and stays usable.
    assert c4["level"] == 0 and c4["flags"] & CARD_FLAG_MEMBERSHIP_LAPSED
    assert c4["status"] == CardStatus.ACTIVE
    assert c4["principal_fen"] == before[4]["principal_fen"]
    for c in (c1, c2, c3, c4):
        assert c["period_spend_fen"] == c["period_points"] == c["period_recharge_fen"] == 0
        assert c["level_period_start_s"] == clock.now
        assert c["points"] == before[int(c["card_no"])]["points"]  # points are not levels
    rec = eng.card_journal(1, 1)[0]
    assert rec["op_type"] == LevelOp.LEVEL_REVIEW and int(rec["amount_fen"]) == 1_900_000
    assert int(rec["payable_fen"]) == 5_000_000 and rec["level_before"] == GOLD
    # Idempotent: a rerun (a new client id) finds nothing due.
    again = state(eng)
    assert review_levels(eng, cid()).result().value["reviewed"] == 0
    assert state(eng)[0] == again[0]
    assert journal_adds_up(eng)
    # The history tells each step with its reason.
    hist = level_history(eng, 1)
    assert [(h["op"], h["level_before"], h["level_after"]) for h in hist] == [
        ("LEVEL_REVIEW", GOLD, SILVER), ("LEVEL_REVIEW", GOLD, GOLD), ("SWIPE", 0, GOLD)]
    assert "below the keep threshold" in hist[0]["reason"]
    assert hist[2]["reason"] == "automatic upgrade"
    assert "membership ended" in level_history(eng, 4)[0]["reason"]


def test_review_judges_spend_never_balance_or_points(eng, clock):
    gold_card(eng, 1, clock=clock)
    clock.now = END1
    review_levels(eng, cid()).result()
    # Lots of points and balance, but only 100 yuan spent in the period.
    assert eng.swipe(1, 10_000, cid()).result().codes[0] == Result.OK
    clock.now = END2
    assert eng.card(1)["points"] > 50_000 and eng.card(1)["principal_fen"] > 0
    review_levels(eng, cid()).result()
    assert eng.card(1)["level"] == 0


def test_review_skips_cancelled_and_dormant_and_is_idempotent_by_id(eng, clock):
    gold_card(eng, 1, clock=clock)
    gold_card(eng, 2, clock=clock)
    eng.set_card_status(2, CardStatus.CANCELLED, cid()).result()
    clock.now = END1
    c = cid()
    first = review_levels(eng, c).result()
    assert first.value["reviewed"] == 1
    again = review_levels(eng, c).result()
    assert again.replayed and again.value == first.value
    assert eng.card(2)["level"] == GOLD


def test_manual_change_clears_lapsed_flag(eng, clock):
    gold_card(eng, 1, clock=clock)
    clock.now = END1
    review_levels(eng, cid()).result()
    clock.now = END2
    review_levels(eng, cid()).result()
    assert eng.card(1)["flags"] & CARD_FLAG_MEMBERSHIP_LAPSED
    res = set_level(eng, 1, 0, cid(), reason="reinstated", requester_id=1, approver_id=2).result()
    assert res.code == Result.OK and not eng.card(1)["flags"] & CARD_FLAG_MEMBERSHIP_LAPSED


def lapsed_card(tmp_path, clock, rules):
    """An engine with rules and card 1 whose membership ended (flag set by a review)."""
    eng = Engine(str(tmp_path / "lapsed"), clock=clock, rules=rules)
    eng.issue_cards([1], cid()).result()
    assert eng.recharge(1, 1_000_000, cid()).result().codes[0] == Result.OK
    assert eng.swipe(1, 100_000, cid(), flags=1).result().codes[0] == Result.OK
    assert eng.card(1)["level"] == 1
    clock.now = eng.card(1)["level_expires_at_s"]
    review_levels(eng, cid()).result()                       # spend 1,000 yuan: kept
    clock.now = eng.card(1)["level_expires_at_s"]
    assert review_levels(eng, cid()).result().value["lapsed"] == 1
    assert eng.card(1)["flags"] & CARD_FLAG_MEMBERSHIP_LAPSED
    return eng


def test_a_lapsed_card_pays_shelf_prices_and_earns_nothing(tmp_path, clock):
    rules = RulesConfig(
        levels=(LevelRule("regular", discount_bp=9_000),
                LevelRule("silver", discount_bp=8_000, up_spend_fen=50_000,
                          keep_spend_fen=50_000, validity_years=1)),
        member_prices=((555, (700, 600)),), tiers=(BonusTier(10_000, 1_000),),
        recharge_points_per_yuan_bp=10_000)
    eng = lapsed_card(tmp_path, clock, rules)
    try:
        before = eng.card(1)
        # The regular level's 10% off and sku 555's member price do not apply; no points.
        r = eng.swipe(1, 10_000, cid()).result()
        c = r.columns()
        assert (int(r.codes[0]), int(c["payable_fen"][0]), int(c["points_delta"][0])) == (
            Result.OK, 10_000, 0)
        ops = np.zeros(1, dtype=OP)
        ops[0]["client_hi"], ops[0]["client_lo"] = 1, 2
        ops[0]["card_no"], ops[0]["amount_fen"], ops[0]["op_type"] = 1, 1_000, OpType.SWIPE
        ops[0]["items_n"] = 1
        items = np.zeros(1, dtype=ITEM)
        items[0]["sku"], items[0]["amount_fen"], items[0]["qty"] = 555, 1_000, 1
        r = eng.submit(ops, items).result()
        assert int(r.codes[0]) == Result.OK and int(r.columns()["payable_fen"][0]) == 1_000
        # A recharge still gets its bonus (the recharge's), but no points (a member's).
        r = eng.recharge(1, 10_000, cid()).result()
        assert int(r.columns()["bonus_delta_fen"][0]) == 1_000
        assert int(r.columns()["points_delta"][0]) == 0
        # Spend while lapsed does not upgrade it, though it passes the threshold.
        assert eng.swipe(1, 60_000, cid()).result().codes[0] == Result.OK
        card = eng.card(1)
        assert card["level"] == 0 and card["points"] == before["points"]
        assert card["period_spend_fen"] >= 50_000
        # Make-up points earn nothing either.
        from core.domain.points_admin import make_up_points
        res = make_up_points(eng, 1, "R-1", 10_000, clock.now - 10, cid(),
                             receipt_store_id=1).result()
        assert res.code == Result.OK and res.value["points_earned"] == 0
        # Re-admitted: a new period from level 0; member prices and points again.
        assert readmit(eng, 1, cid(), reason=" ").result().reason == "REASON_REQUIRED"
        res = readmit(eng, 1, cid(), reason="back", operator_id=3).result()
        assert res.code == Result.OK and res.value == {"level": 0}
        card = eng.card(1)
        assert not card["flags"] & CARD_FLAG_MEMBERSHIP_LAPSED
        assert card["period_spend_fen"] == 0 and card["level_period_start_s"] == clock.now
        assert eng.card_journal(1, 1)[0]["op_type"] == LevelOp.LEVEL_READMIT
        r = eng.swipe(1, 10_000, cid()).result().columns()
        assert int(r["payable_fen"][0]) == 9_000 and int(r["points_delta"][0]) == 90
        assert readmit(eng, 1, cid(), reason="again").result().reason == "NOT_LAPSED"
        assert level_history(eng, 1)[0]["reason"] == "re-admitted: back"
        assert journal_adds_up(eng)
    finally:
        eng.close()


def test_level_history_follows_replacement(eng, clock):
    gold_card(eng, 1, clock=clock)
    assert replace(eng, 1, 2, cid()).result().code == Result.OK
    set_level(eng, 2, SILVER, cid(), reason="complaint", requester_id=3, approver_id=4).result()
    hist = level_history(eng, 2)
    assert [(h["card_no"], h["op"]) for h in hist] == [(2, "LEVEL_MANUAL"), (1, "SWIPE")]
    assert level_history(eng, 2, follow_replacements=False)[-1]["op"] == "LEVEL_MANUAL"
    assert journal_adds_up(eng)
