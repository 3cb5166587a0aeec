"""The swipe's domain features in the fast path: PIN, line items, member prices,
multipliers, points offset, points lots and their expiry, count cards."""

import calendar
import os

import numpy as np
import pytest
from common import cid

from core import Engine, RulesConfig
from core.domain.points import expire_points, outbox, remind_expiring_points
from core.records import ITEM, OP, CardStatus, ItemFlag, OpFlag, OpType, Result
from core.rules import LevelRule


def ts(y, m, d, h=12):
    """Unix seconds of a Beijing-time wall clock."""
    return calendar.timegm((y, m, d, h, 0, 0)) - 8 * 3600


class Clock:
    def __init__(self, now):
        self.now = now

    def __call__(self):
        return self.now



def swipe(eng, card, amount, tag, *, items=None, offset=0, pin=None, store=0, category=0,
          flags=0, op_type=OpType.SWIPE):
    ops = np.zeros(1, dtype=OP)
    op = ops[0]
    op["client_hi"], op["client_lo"] = int.from_bytes(cid(tag)[:8], "big"), int.from_bytes(cid(tag)[8:], "big")
    op["card_no"], op["amount_fen"], op["op_type"] = card, amount, op_type
    op["points_offset"], op["store_id"], op["category"], op["op_flags"] = offset, store, category, flags
    if pin is not None:
        op["pin"], op["pin_len"] = int(pin), len(pin)
    arr = None
    if items:
        arr = np.zeros(len(items), dtype=ITEM)
        for i, (sku, amt, qty, cat, iflags) in enumerate(items):
            arr[i] = (sku, amt, qty, cat, iflags, 0)
        op["items_off"], op["items_n"] = 0, len(items)
    return eng.submit(ops, arr).result()


@pytest.fixture
def clock():
    return Clock(ts(2026, 6, 1))


def make(tmp_path, clock, rules=None, balance=1_000_000, card=1, **issue):
    eng = Engine(str(tmp_path), rules=rules or RulesConfig(), clock=clock)
    eng.issue_cards([card], os.urandom(16), **issue).result()
    if balance:
        eng.recharge(card, balance, os.urandom(16)).result()
    return eng


def test_pin_is_required_checked_and_locks_after_five_failures(tmp_path, clock):
    eng = make(tmp_path, clock)
    assert eng.set_pin(1, "123456", os.urandom(16)).result().code == Result.OK
    assert eng.card(1)["pin_hash"] != 0 and "123456" not in str(eng.card(1))
    last = eng.stats()["last_seq"]
    assert swipe(eng, 1, 100, "nopin").codes[0] == Result.PIN_REQUIRED
    assert eng.stats()["last_seq"] == last  # a missing PIN changes nothing
    wrong = swipe(eng, 1, 100, "w1", pin="000000")
    assert wrong.codes[0] == Result.PIN_WRONG
    assert eng.card(1)["pin_failures"] == 1 and eng.card(1)["principal_fen"] == 1_000_000
    # A retry of the same attempt is the same attempt: replayed, not counted twice.
    again = swipe(eng, 1, 100, "w1", pin="000000")
    assert again.replayed[0] == 1 and again.codes[0] == Result.PIN_WRONG
    assert eng.card(1)["pin_failures"] == 1
    for k in range(2, 5):
        assert swipe(eng, 1, 100, f"w{k}", pin="000000").codes[0] == Result.PIN_WRONG
    assert swipe(eng, 1, 100, "w5", pin="000000").codes[0] == Result.PIN_LOCKED
    assert eng.card(1)["pin_locked_until_s"] == clock.now + 1800
    assert swipe(eng, 1, 100, "right-but-locked", pin="123456").codes[0] == Result.PIN_LOCKED
    eng.close()
    eng = Engine(str(tmp_path), clock=clock)  # the lockout survives a restart
    assert swipe(eng, 1, 100, "still-locked", pin="123456").codes[0] == Result.PIN_LOCKED
    clock.now += 1800
    ok = swipe(eng, 1, 100, "after-lock", pin="123456")
    assert ok.codes[0] == Result.OK and eng.card(1)["pin_failures"] == 0
    # A PIN with a leading zero is not the same PIN without it.
    eng.set_pin(1, "0123", os.urandom(16)).result()
    assert swipe(eng, 1, 100, "no-zero", pin="123").codes[0] == Result.PIN_WRONG
    assert swipe(eng, 1, 100, "zero", pin="0123").codes[0] == Result.OK
    eng.close()


def test_line_items_must_add_up(tmp_path, clock):
    eng = make(tmp_path, clock)
    r = swipe(eng, 1, 1_000, "bad", items=[(1, 600, 1, 0, 0), (2, 300, 1, 0, 0)])
    assert r.codes[0] == Result.ITEMS_INVALID
    r = swipe(eng, 1, 1_000, "zero-qty", items=[(1, 1_000, 0, 0, 0)])
    assert r.codes[0] == Result.ITEMS_INVALID
    with pytest.raises(ValueError):  # offsets past the items array never reach the engine
        ops = np.zeros(1, dtype=OP)
        ops["client_lo"], ops["card_no"], ops["amount_fen"], ops["op_type"] = 5, 1, 1, 1
        ops["items_n"] = 3
        eng.submit(ops, np.zeros(2, dtype=ITEM))
    eng.close()


def test_level_discount_rounds_per_line_and_member_price_replaces_it(tmp_path, clock):
    rules = RulesConfig(levels=(LevelRule("regular", discount_bp=9_500),),
                        member_prices=((777, (300,)),))
    eng = make(tmp_path, clock, rules)
    # Lines of 1,001 and 1,001 fen at 95%: 950.95 -> 951 each (half up), 1,902 in all;
    # sku 777: 2 units at a member price of 300 instead of 2 x 500 = 1,000.
    r = swipe(eng, 1, 3_002, "lines", items=[(1, 1_001, 1, 0, 0), (2, 1_001, 1, 0, 0),
                                             (777, 1_000, 2, 0, 0)])
    cols = r.columns()
    assert r.codes[0] == Result.OK
    assert cols["payable_fen"][0] == 951 + 951 + 600
    assert cols["discount_fen"][0] == 3_002 - 2_502
    # A member price above the shelf price is never charged.
    r = swipe(eng, 1, 200, "cheap-shelf", items=[(777, 200, 1, 0, 0)])
    assert r.columns()["payable_fen"][0] == 200
    eng.close()


def test_points_multipliers_exclusions_and_group_buy(tmp_path, clock):
    rules = RulesConfig(levels=(LevelRule("regular"),), no_points_categories=(9,),
                        category_points_mult_bp=((5, 20_000),), store_points_mult_bp=((42, 15_000),))
    eng = make(tmp_path, clock, rules)
    # 100 yuan in category 5 (2x) + 50 yuan in category 9 (none) + 30 yuan special item.
    r = swipe(eng, 1, 18_000, "mix", items=[(1, 10_000, 1, 5, 0), (2, 5_000, 1, 9, 0),
                                            (3, 3_000, 1, 0, ItemFlag.ITEM_NO_POINTS)])
    assert r.columns()["points_delta"][0] == 200
    # The same basket at store 42 (1.5x): floor(200 * 1.5) = 300.
    r = swipe(eng, 1, 18_000, "mix42", store=42, items=[(1, 10_000, 1, 5, 0), (2, 5_000, 1, 9, 0),
                                                        (3, 3_000, 1, 0, ItemFlag.ITEM_NO_POINTS)])
    assert r.columns()["points_delta"][0] == 300
    # Below one yuan earns nothing; a group-buy order earns nothing.
    assert swipe(eng, 1, 99, "tiny").columns()["points_delta"][0] == 0
    assert swipe(eng, 1, 10_000, "group", flags=OpFlag.GROUP_BUY).columns()["points_delta"][0] == 0
    eng.close()


def test_points_offset_is_the_cashiers_choice_within_the_caps(tmp_path, clock):
    eng = make(tmp_path, clock, RulesConfig(levels=(LevelRule("regular"),)))
    swipe(eng, 1, 500_000, "earn")  # 5,000 points
    assert eng.card(1)["points"] == 5_000
    # 150 points = 1.50 yuan off a 10 yuan order; points are earned on the 8.50 paid.
    r = swipe(eng, 1, 1_000, "offset", offset=150)
    cols = r.columns()
    assert r.codes[0] == Result.OK
    assert (cols["payable_fen"][0], int(r.record(0)["offset_fen"])) == (1_000, 150)
    assert cols["principal_delta_fen"][0] == -850
    assert cols["points_delta"][0] == 8 - 150
    # At most half the order (default cap): 501 points on 10 yuan is over the cap.
    assert swipe(eng, 1, 1_000, "over", offset=501).codes[0] == Result.OFFSET_OVER_CAP
    assert swipe(eng, 1, 1_000, "neg", offset=-1).codes[0] == Result.OFFSET_INVALID
    assert swipe(eng, 1, 10**6, "toomany", offset=10_000).codes[0] == Result.INSUFFICIENT_POINTS
    eng.close()


def test_offset_must_be_whole_fen_and_can_be_switched_off(tmp_path, clock):
    eng = make(tmp_path, clock, RulesConfig(levels=(LevelRule("regular"),), offset_points_per_yuan=300))
    swipe(eng, 1, 500_000, "earn")
    assert swipe(eng, 1, 1_000, "third", offset=100).codes[0] == Result.OFFSET_INVALID
    assert swipe(eng, 1, 1_000, "whole", offset=300).codes[0] == Result.OK
    eng.set_rules(RulesConfig(levels=(LevelRule("regular"),), offset_points_per_yuan=0), os.urandom(16)).result()
    assert swipe(eng, 1, 1_000, "off", offset=100).codes[0] == Result.OFFSET_NOT_ALLOWED
    eng.close()


def test_annual_rolling_expiry_of_points(tmp_path, clock):
    """Earned in 2026: valid to 31 Dec 2027, cleared at 00:00 on 1 Jan 2028 (Beijing)."""
    eng = make(tmp_path, clock, RulesConfig(levels=(LevelRule("regular"),)))
    swipe(eng, 1, 100_000, "2026")  # 1,000 points in the 2026 lot
    clock.now = ts(2027, 3, 1)
    swipe(eng, 1, 50_000, "2027")  # 500 points in the 2027 lot
    card = eng.card(1)
    assert (card["lot_year"], card["lot0_points"], card["lot1_points"]) == (2026, 1_000, 500)
    # Offsets spend the oldest points first.
    swipe(eng, 1, 1_000, "spend", offset=200)
    card = eng.card(1)
    assert (card["lot0_points"], card["lot1_points"]) == (800, 500 + 8)
    # Reminders before the end of 2027 name the 2026 points.
    clock.now = ts(2027, 12, 1)
    assert remind_expiring_points(eng, os.urandom(16)).result().value == {"notices": 1}
    notices = outbox(eng)
    assert notices[0]["points"] == 800 and notices[0]["expires_on"] == "2027-12-31"
    # 23:59 on 31 Dec 2027 (Beijing): still valid.
    clock.now = ts(2027, 12, 31, 23) + 59 * 60
    assert expire_points(eng, os.urandom(16)).result().value == {"expired_points": 0, "cards": 0}
    # 00:00 on 1 Jan 2028: the 2026 lot is gone, the 2027 lot stays.
    clock.now = ts(2028, 1, 1, 0)
    res = expire_points(eng, os.urandom(16)).result()
    assert res.value == {"expired_points": 800, "cards": 1}
    card = eng.card(1)
    assert (card["points"], card["lot_year"], card["lot0_points"]) == (508, 2027, 508)
    # A second run the same year clears nothing more.
    assert expire_points(eng, os.urandom(16)).result().value["expired_points"] == 0
    rec = eng.card_journal(1, 1)[0]
    assert int(rec["op_type"]) == OpType.EXPIRE_POINTS and int(rec["points_delta"]) == -800
    eng.close()


def test_count_card_spends_uses_of_its_service(tmp_path, clock):
    eng = make(tmp_path, clock, balance=0, count_service=7, count_uses=10)
    r = swipe(eng, 1, 3, "wash", op_type=OpType.USE_COUNT, category=7)
    assert r.codes[0] == Result.OK and eng.card(1)["count_uses"] == 7
    assert swipe(eng, 1, 1, "other", op_type=OpType.USE_COUNT, category=8).codes[0] == Result.SERVICE_MISMATCH
    assert swipe(eng, 1, 8, "toomany", op_type=OpType.USE_COUNT, category=7).codes[0] == Result.INSUFFICIENT_USES
    eng.set_card_status(1, CardStatus.FROZEN, os.urandom(16)).result()
    assert swipe(eng, 1, 1, "frozen", op_type=OpType.USE_COUNT, category=7).codes[0] == Result.CARD_FROZEN
    eng.close()
