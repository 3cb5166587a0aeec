"""Card types and the card lifecycle (core/domain/cards.py): issue with fees, replacement,
annual fees, expiry to dormant, renewal, supplementary cards. After every op the
journal must add up: for each card the deltas over its journal equal its state."""

import json

import numpy as np
from common import cid
from engine_ops import client_op

from core import Engine
from core.domain.cards import (
    CardKind,
    CardOp,
    CardType,
    card_history,
    charge_annual_fees,
    expire_dormant,
    get_card_type,
    issue,
    issue_cards,
    list_card_types,
    pay_annual_fee,
    predecessors,
    put_card_type,
    renew,
    replace,
    set_supp_limit,
    supplementary_cards,
)
from core.records import CardStatus, OpType, Result
from core.rules import add_years

DAY = 86_400
T0 = 1_700_000_000  # 2023-11-14


def years(t_s: int, n: int) -> int:
    """n calendar years after t_s in the chain's time zone (UTC+8)."""
    return add_years(t_s, n, 8 * 3600)


class Clock:
    def __init__(self, now=T0):
        self.now = now

    def __call__(self):
        return self.now



def journal_adds_up(eng):
    """For every card: the sum of principal, bonus and points deltas over its journal is
    its state, the newest record's after-image is the card, its lots sum to its points."""
    cards = eng.cards_snapshot().copy()
    for card in cards:
        no = int(card["card_no"])
        recs = eng.card_journal(no, limit=1_000_000)
        assert len(recs), no
        assert int(recs["principal_delta_fen"].sum()) == int(card["principal_fen"]), no
        assert int(recs["bonus_delta_fen"].sum()) == int(card["bonus_fen"]), no
        assert int(recs["points_delta"].sum()) == int(card["points"]), no
        assert recs[0]["after"].tobytes() == card.tobytes(), no
        assert int(card["points"]) == sum(int(card[n]) for n in (
            "lot0_points", "lot1_points", "lot2_points", "permanent_points")), no
        assert int(card["principal_fen"]) >= 0 and int(card["bonus_fen"]) >= 0, no
    return True


def state(eng):
    """Everything an op could change: the card table and the journal's end."""
    return eng.cards_snapshot().copy().tobytes(), eng.stats()["last_seq"]


STORED = CardType(type_id=1, name="储值卡", kind=CardKind.STORED_VALUE, issue_fee_fen=500,
                  annual_fee_fen=2_000, supp_annual_fee_fen=800)
SUPP = CardType(type_id=5, name="附属卡", kind=CardKind.SUPPLEMENTARY, supp_annual_fee_fen=800)
COUNT = CardType(type_id=4, name="洗车10次", kind=CardKind.COUNT, count_service=7,
                 count_uses=10, recharge_allowed=False)


def setup_types(eng):
    for t in (STORED, SUPP, COUNT):
        assert eng and put_card_type(eng, t, cid()).result().code == Result.OK


def recharge(eng, no, fen):
    res = eng.recharge(no, fen, cid()).result()
    assert res.codes[0] == Result.OK


# --- card types ------------------------------------------------------------------------


def test_card_type_defaults_and_registry(eng):
    t = CardType(type_id=9, name="plain")
    # Two calendar years, not 730 days (issue 8, item 4).
    assert (t.validity_years, t.validity_days, t.replacement_fee_fen) == (2, 0, 1_000)
    res = put_card_type(eng, t, cid()).result()
    assert res.code == Result.OK and res.value == {"type_id": 9, "created": True}
    assert get_card_type(eng, 9) == t
    changed = CardType(type_id=9, name="plain", annual_fee_fen=100)
    res = put_card_type(eng, changed, cid()).result()
    assert res.value["created"] is False
    assert json.loads(res.detail)["before"]["annual_fee_fen"] == 0
    assert [x.type_id for x in list_card_types(eng)] == [9]


def test_card_type_invalid_is_rejected(eng):
    for bad in (CardType(type_id=0, name="x"), CardType(type_id=2, name=""),
                CardType(type_id=2, name="x", issue_fee_fen=-1),
                CardType(type_id=2, name="x", kind=CardKind.COUNT),
                CardType(type_id=2, name="x", count_uses=3)):
        res = put_card_type(eng, bad, cid()).result()
        assert res.code == Result.INVALID_ARGUMENT and res.reason == "CARD_TYPE_INVALID"
    assert list_card_types(eng) == []


def test_recharge_limited_to_the_types_stores_and_operators(tmp_path, clock):
    """The engine enforces a card type's recharge limit inside the recharge: a wrong
    store or operator gets RECHARGE_NOT_ALLOWED and changes nothing; the limit survives
    a restart and a changed type applies from its commit on."""
    path = str(tmp_path / "d")
    eng = Engine(path, clock=clock)
    limited = CardType(type_id=3, name="store card", recharge_store_ids=(11,),
                       recharge_operator_ids=(5, 6))
    assert put_card_type(eng, limited, cid()).result().code == Result.OK
    setup_types(eng)
    issue(eng, 30, cid(), type_id=3).result()
    issue(eng, 40, cid(), type_id=4).result()           # count card: no recharge at all
    assert issue(eng, 10, cid(), type_id=1, paid_fen=2_500).result().code == Result.OK

    def code(no, store, op):
        return int(eng.recharge(no, 1_000, cid(), store_id=store, operator_id=op).result().codes[0])

    before = state(eng)
    assert code(30, 12, 5) == Result.RECHARGE_NOT_ALLOWED
    assert code(30, 11, 7) == Result.RECHARGE_NOT_ALLOWED
    assert code(40, 11, 5) == Result.RECHARGE_NOT_ALLOWED
    assert state(eng) == before
    assert code(30, 11, 5) == Result.OK and code(30, 11, 6) == Result.OK
    assert code(10, 99, 99) == Result.OK
    eng.close()

    eng = Engine(path, clock=clock)
    assert code(30, 12, 5) == Result.RECHARGE_NOT_ALLOWED
    assert code(40, 1, 1) == Result.RECHARGE_NOT_ALLOWED
    opened = CardType(type_id=3, name="store card")
    assert put_card_type(eng, opened, cid()).result().code == Result.OK
    assert code(30, 12, 7) == Result.OK
    assert int(eng.card(30)["principal_fen"]) == 3_000
    assert journal_adds_up(eng)
    eng.close()


# --- issue -----------------------------------------------------------------------------


def test_issue_charges_fees_from_paid_amount_and_opens_the_rest(eng, clock):
    setup_types(eng)
    res = issue(eng, 100, cid(), type_id=1, member_id=7, paid_fen=10_000).result()
    assert res.code == Result.OK
    assert res.value == {"cards": 1, "card_no": 100, "fees_fen": 2_500, "deposit_fen": 7_500,
                         "expires_at_s": years(T0, 2), "level": 0, "count_uses": 0}
    card = eng.card(100)
    assert card["principal_fen"] == 7_500 and card["bonus_fen"] == 0
    assert card["expires_at_s"] == years(T0, 2)  # valid two years
    assert card["fee_paid_until_s"] == years(T0, 1)
    assert card["member_id"] == 7 and card["status"] == CardStatus.ACTIVE
    ops = [int(r["op_type"]) for r in eng.card_journal(100)][::-1]
    assert ops == [OpType.ISSUE, CardOp.ISSUE_FEE, CardOp.ANNUAL_FEE, CardOp.OPENING_DEPOSIT]
    fees = [r for r in eng.card_journal(100) if r["op_type"] == CardOp.ISSUE_FEE]
    assert int(fees[0]["amount_fen"]) == 500 and int(fees[0]["op_flags"]) == 1
    assert journal_adds_up(eng)


def test_issue_rejects_unpaid_fee_and_changes_nothing(eng):
    setup_types(eng)
    before = state(eng)
    res = issue(eng, 100, cid(), type_id=1, paid_fen=2_499).result()
    assert res.code == Result.INSUFFICIENT_BALANCE and res.reason == "FEE_NOT_PAID"
    assert state(eng) == before and eng.card(100) is None
    assert issue(eng, 100, cid(), type_id=77).result().reason == "CARD_TYPE_NOT_FOUND"
    assert issue(eng, 101, cid(), type_id=4, paid_fen=1).result().reason == "DEPOSIT_NOT_ALLOWED"
    assert state(eng) == before


def test_issue_is_idempotent_by_client_id(eng):
    setup_types(eng)
    c = cid()
    first = issue(eng, 100, c, type_id=1, paid_fen=3_000).result()
    again = issue(eng, 100, c, type_id=1, paid_fen=3_000).result()
    assert again.code == Result.OK and again.replayed and again.value == first.value
    assert eng.card(100)["principal_fen"] == 500
    assert len(eng.card_journal(100)) == 4
    assert issue(eng, 100, cid(), type_id=1, paid_fen=3_000).result().code == Result.CARD_EXISTS


def test_count_card_gets_service_and_uses(eng):
    setup_types(eng)
    assert issue(eng, 40, cid(), type_id=4).result().code == Result.OK
    card = eng.card(40)
    assert card["count_service"] == 7 and card["count_uses"] == 10


def test_batch_issue_applies_the_type_to_every_card_all_or_none(eng, clock):
    setup_types(eng)
    nos = list(range(1_000, 1_200))
    res = issue_cards(eng, nos, cid(), type_id=1, member_ids=list(range(1, 201)),
                      paid_fen=3_000).result()
    assert res.code == Result.OK and res.value["cards"] == 200
    for no in (1_000, 1_199):
        card = eng.card(no)
        assert (card["principal_fen"], card["expires_at_s"], card["fee_paid_until_s"]) == (
            500, years(T0, 2), years(T0, 1))
        ops = [int(r["op_type"]) for r in eng.card_journal(no)][::-1]
        assert ops == [OpType.ISSUE, CardOp.ISSUE_FEE, CardOp.ANNUAL_FEE,
                       CardOp.OPENING_DEPOSIT]
    assert eng.card(1_199)["member_id"] == 200
    assert journal_adds_up(eng)
    # One existing card in a batch refuses the whole batch.
    before = state(eng)
    res = issue_cards(eng, [2_000, 1_000, 2_001], cid(), type_id=1, paid_fen=3_000).result()
    assert res.code == Result.CARD_EXISTS and state(eng) == before
    assert eng.card(2_000) is None
    assert issue_cards(eng, [2_000], cid(), member_ids=[1, 2]).result().reason == \
        "COLUMN_LENGTH"


def test_type_zero_is_the_default_type(eng):
    res = issue_cards(eng, [7], cid()).result()
    assert res.code == Result.OK and res.value["fees_fen"] == 0
    card = eng.card(7)
    assert card["expires_at_s"] == years(T0, 2) and card["type_id"] == 0


def test_fees_on_balance_and_from_a_supplementary_cards_primary(eng):
    setup_types(eng)
    on_balance = CardType(type_id=2, name="fees from deposit", issue_fee_fen=500,
                          annual_fee_fen=2_000, fees_on_balance=True)
    supp = CardType(type_id=6, name="family", kind=CardKind.SUPPLEMENTARY,
                    supp_annual_fee_fen=800, issue_fee_fen=100, fees_on_balance=True)
    for t in (on_balance, supp):
        assert put_card_type(eng, t, cid()).result().code == Result.OK
    res = issue_cards(eng, [100], cid(), type_id=2, paid_fen=10_000).result()
    assert (res.value["fees_fen"], res.value["deposit_fen"]) == (2_500, 10_000)
    assert eng.card(100)["principal_fen"] == 7_500
    assert issue_cards(eng, [101], cid(), type_id=2, paid_fen=2_499).result().reason == \
        "FEE_NOT_COVERED"
    res = issue_cards(eng, [200, 201], cid(), type_id=6, primary_card_no=100,
                      supp_limit_fen=1_000).result()
    assert res.code == Result.OK
    assert eng.card(100)["principal_fen"] == 7_500 - 2 * 900
    assert [int(eng.card(n)["supp_limit_fen"]) for n in (200, 201)] == [1_000, 1_000]
    before = state(eng)
    nos = list(range(300, 310))                  # 10 x 900 > the 5,700 left on the primary
    assert issue_cards(eng, nos, cid(), type_id=6, primary_card_no=100).result().reason == \
        "FEE_NOT_COVERED"
    assert state(eng) == before
    assert journal_adds_up(eng)
    bad = CardType(type_id=8, name="x", kind=CardKind.COUNT, count_service=1, count_uses=1,
                   fees_on_balance=True)
    assert put_card_type(eng, bad, cid()).result().reason == "CARD_TYPE_INVALID"


def test_card_type_validity_days_or_years(eng):
    assert CardType(type_id=3, name="x", validity_days=90, validity_years=0).problems() == []
    assert "not both" in CardType(type_id=3, name="x", validity_days=90).problems()[0]
    # A type stored before validity_years existed keeps the days it says.
    old = CardType.from_dict({"type_id": 3, "name": "old", "validity_days": 730})
    assert (old.validity_days, old.validity_years) == (730, 0)
    assert old.valid_until(T0, 8 * 3600) == T0 + 730 * DAY
    assert CardType(type_id=3, name="x", validity_years=0).valid_until(T0, 0) == 0


def test_history_follows_replacements_in_pages(eng, clock):
    setup_types(eng)
    issue(eng, 100, cid(), type_id=1, paid_fen=20_000).result()
    for fen in (100, 200, 300):
        assert eng.swipe(100, fen, cid()).result().codes[0] == Result.OK
    replace(eng, 100, 101, cid()).result()
    assert eng.swipe(101, 400, cid()).result().codes[0] == Result.OK
    replace(eng, 101, 102, cid()).result()
    assert eng.swipe(102, 500, cid()).result().codes[0] == Result.OK
    whole, nxt = card_history(eng, 102, 1_000)
    assert nxt == 0
    expect = np.concatenate([eng.card_journal(n, 1_000) for n in (102, 101, 100)])
    assert whole["seq"].tolist() == expect["seq"].tolist()
    assert whole["seq"].tolist() == sorted(whole["seq"].tolist(), reverse=True)
    for size in (1, 2, 5, 7):
        got, before = [], 0
        while True:
            page, before = card_history(eng, 102, size, before)
            assert len(page) <= size
            got += page["seq"].tolist()
            if not before:
                break
        assert got == whole["seq"].tolist()
    # Without replacements it is the card's own journal.
    own, _ = card_history(eng, 100, 1_000)
    assert own["seq"].tolist() == eng.card_journal(100, 1_000)["seq"].tolist()
    assert card_history(eng, 999, 10)[0].size == 0


# --- supplementary cards ---------------------------------------------------------------


def test_supplementary_card_issue_and_limit(eng):
    setup_types(eng)
    issue(eng, 100, cid(), type_id=1, paid_fen=2_500).result()
    res = issue(eng, 200, cid(), type_id=5, primary_card_no=100, supp_limit_fen=50_000,
                paid_fen=800).result()
    assert res.code == Result.OK
    card = eng.card(200)
    assert card["primary_card_no"] == 100 and card["supp_limit_fen"] == 50_000
    assert supplementary_cards(eng, 100) == [200]
    assert set_supp_limit(eng, 200, 20_000, cid()).result().code == Result.OK
    assert eng.card(200)["supp_limit_fen"] == 20_000
    assert set_supp_limit(eng, 100, 1, cid()).result().reason == "NOT_SUPPLEMENTARY"
    # A primary must exist and not be supplementary; only supplementary types take one.
    assert issue(eng, 201, cid(), type_id=5).result().reason == "PRIMARY_NOT_FOUND"
    assert issue(eng, 202, cid(), type_id=5, primary_card_no=200).result().reason == \
        "PRIMARY_INVALID"
    assert issue(eng, 203, cid(), type_id=1, paid_fen=2_500,
                 primary_card_no=100).result().reason == "NOT_SUPPLEMENTARY"
    assert journal_adds_up(eng)


# --- replacement -----------------------------------------------------------------------


def loaded_card(eng, clock, no=100):
    """A card with principal, bonus, points in two lots, a level and period counters."""
    setup_types(eng)
    issue(eng, no, cid(), type_id=1, member_id=42, paid_fen=2_500).result()
    from core import RulesConfig
    from core.rules import BonusTier
    eng.set_rules(RulesConfig(tiers=(BonusTier(100_000, 20_000),)), cid()).result()
    recharge(eng, no, 1_200_000)                 # principal 1,200,000 bonus 20,000
    assert eng.swipe(no, 1_000_000, cid()).result().codes[0] == Result.OK  # 10,000 points
    clock.now += 70 * DAY                         # into 2024: a second lot
    assert eng.swipe(no, 10_000, cid()).result().codes[0] == Result.OK
    return eng.card(no)


def test_replacement_moves_everything_and_charges_10_yuan(eng, clock):
    old = loaded_card(eng, clock)
    assert old["level"] == 1 and old["lot0_points"] and old["lot1_points"]
    eng.set_pin(100, "1234", cid()).result()
    eng.set_card_status(100, CardStatus.LOST, cid()).result()
    old = eng.card(100)
    res = replace(eng, 100, 101, cid()).result()
    assert res.code == Result.OK and res.value["fee_fen"] == 1_000  # the seed's 10 yuan
    o, n = eng.card(100), eng.card(101)
    assert o["status"] == CardStatus.CANCELLED and o["replaced_by"] == 101
    assert o["principal_fen"] == o["bonus_fen"] == o["points"] == 0
    assert n["status"] == CardStatus.ACTIVE
    assert n["principal_fen"] == old["principal_fen"] - 1_000  # principal first
    assert n["bonus_fen"] == old["bonus_fen"]
    for f in ("points", "lot_year", "lot0_points", "lot1_points", "permanent_points", "level",
              "level_expires_at_s", "period_spend_fen", "period_points", "level_period_start_s",
              "expires_at_s", "member_id", "type_id", "pin_hash", "fee_paid_until_s"):
        assert n[f] == old[f], f
    assert predecessors(eng, 101) == [100]
    # The old card's record takes everything out, the new card's puts it in.
    rec_old = eng.card_journal(100, 1)[0]
    assert rec_old["op_type"] == CardOp.REPLACE
    assert int(rec_old["principal_delta_fen"]) == -int(old["principal_fen"])
    assert int(rec_old["points_delta"]) == -int(old["points"])
    assert journal_adds_up(eng)
    # The old card is unusable; the new one works with the old PIN.
    assert eng.swipe(100, 100, cid()).result().codes[0] == Result.CARD_CANCELLED


def test_replacement_fee_from_bonus_when_principal_short(eng):
    setup_types(eng)
    issue(eng, 100, cid(), type_id=1, paid_fen=2_900).result()  # principal 400
    from core import RulesConfig
    from core.rules import BonusTier
    eng.set_rules(RulesConfig(tiers=(BonusTier(100, 5_000),)), cid()).result()
    recharge(eng, 100, 100)                                      # principal 500, bonus 5,000
    replace(eng, 100, 101, cid()).result()
    n = eng.card(101)
    assert (n["principal_fen"], n["bonus_fen"]) == (0, 4_500)
    assert journal_adds_up(eng)


def test_replacement_rejected_when_balance_cannot_pay_unless_external(eng):
    setup_types(eng)
    issue(eng, 100, cid(), type_id=1, paid_fen=3_000).result()  # principal 500 < 1,000
    before = state(eng)
    res = replace(eng, 100, 101, cid()).result()
    assert res.code == Result.INSUFFICIENT_BALANCE and res.reason == "FEE_NOT_COVERED"
    assert state(eng) == before and eng.card(101) is None
    res = replace(eng, 100, 101, cid(), fee_external=True).result()
    assert res.code == Result.OK
    assert eng.card(101)["principal_fen"] == 500
    fee = eng.card_journal(101, 1)[0]
    assert fee["op_type"] == CardOp.REPLACEMENT_FEE and int(fee["op_flags"]) == 1
    assert journal_adds_up(eng)


def test_replacement_rules_and_idempotency(eng, clock):
    loaded_card(eng, clock)
    issue(eng, 300, cid(), type_id=1, paid_fen=2_500).result()
    before = state(eng)
    assert replace(eng, 100, 300, cid()).result().code == Result.CARD_EXISTS
    assert replace(eng, 100, 100, cid()).result().code == Result.CARD_NO_INVALID
    assert replace(eng, 999, 301, cid()).result().code == Result.CARD_NOT_FOUND
    eng.set_card_status(300, CardStatus.FROZEN, cid()).result()
    assert replace(eng, 300, 301, cid()).result().reason == "CARD_NOT_REPLACEABLE"
    after_freeze = state(eng)
    assert after_freeze[1] == before[1] + 1
    c = cid()
    first = replace(eng, 100, 101, c).result()
    again = replace(eng, 100, 101, c).result()
    assert again.replayed and again.value == first.value
    assert replace(eng, 100, 102, cid()).result().reason == "CARD_NOT_REPLACEABLE"
    assert eng.card(102) is None
    assert journal_adds_up(eng)


def test_replacement_repoints_supplementary_cards(eng):
    setup_types(eng)
    issue(eng, 100, cid(), type_id=1, paid_fen=10_000).result()
    issue(eng, 200, cid(), type_id=5, primary_card_no=100, supp_limit_fen=5_000,
          paid_fen=800).result()
    replace(eng, 100, 101, cid()).result()
    assert eng.card(200)["primary_card_no"] == 101
    assert supplementary_cards(eng, 101) == [200]
    assert journal_adds_up(eng)


def test_replacement_survives_restart(tmp_path, clock):
    path = str(tmp_path / "d")
    eng = Engine(path, clock=clock)
    setup_types(eng)
    issue(eng, 100, cid(), type_id=1, paid_fen=20_000).result()
    replace(eng, 100, 101, cid()).result()
    want = (eng.card(100), eng.card(101))
    eng.close()
    eng = Engine(path, clock=clock)
    assert (eng.card(100), eng.card(101)) == want
    assert journal_adds_up(eng)
    eng.close()


# --- annual fee ------------------------------------------------------------------------


def test_annual_fee_from_balance_extends_a_year(eng, clock):
    setup_types(eng)
    issue(eng, 100, cid(), type_id=1, paid_fen=10_000).result()   # principal 7,500
    res = pay_annual_fee(eng, 100, cid()).result()
    assert res.code == Result.OK
    card = eng.card(100)
    assert card["fee_paid_until_s"] == years(T0, 2)
    assert card["principal_fen"] == 5_500
    assert journal_adds_up(eng)


def test_annual_fee_run_charges_due_cards_once(eng, clock):
    setup_types(eng)
    issue(eng, 100, cid(), type_id=1, paid_fen=10_000).result()    # can pay
    issue(eng, 101, cid(), type_id=1, paid_fen=3_000).result()     # 500 fen: cannot
    issue(eng, 200, cid(), type_id=5, primary_card_no=100, paid_fen=800).result()
    issue(eng, 102, cid(), type_id=1, paid_fen=2_500).result()
    eng.set_card_status(102, CardStatus.FROZEN, cid()).result()    # not active: skipped
    clock.now += 366 * DAY
    res = charge_annual_fees(eng, cid()).result()
    assert res.code == Result.OK
    assert res.value == {"charged": 2, "fees_fen": 2_800, "unpaid_cards": [101]}
    assert eng.card(100)["principal_fen"] == 7_500 - 2_000 - 800
    assert eng.card(100)["fee_paid_until_s"] == years(T0, 2)
    assert eng.card(200)["fee_paid_until_s"] == years(T0, 2)
    assert eng.card(101)["principal_fen"] == 500
    again = charge_annual_fees(eng, cid()).result()
    assert again.value["charged"] == 0
    assert journal_adds_up(eng)


def test_annual_fee_rejections_change_nothing(eng):
    setup_types(eng)
    issue(eng, 100, cid(), type_id=1, paid_fen=2_500).result()     # balance 0
    issue(eng, 40, cid(), type_id=4).result()
    before = state(eng)
    assert pay_annual_fee(eng, 100, cid()).result().reason == "FEE_NOT_COVERED"
    assert pay_annual_fee(eng, 40, cid()).result().reason == "NO_ANNUAL_FEE"
    assert state(eng) == before
    assert pay_annual_fee(eng, 100, cid(), external=True).result().code == Result.OK
    assert journal_adds_up(eng)


# --- expiry to dormant and renewal ------------------------------------------------------


def test_expiry_to_dormant_keeps_balance_and_points(eng, clock):
    setup_types(eng)
    issue(eng, 100, cid(), type_id=1, paid_fen=12_500).result()
    assert eng.swipe(100, 5_000, cid()).result().codes[0] == Result.OK
    issue(eng, 101, cid(), type_id=1, paid_fen=2_500).result()
    clock.now = years(T0, 2) - 1
    assert expire_dormant(eng, cid()).result().value == {"cards": 0}
    clock.now = years(T0, 2)                                         # two years on
    before = eng.card(100)
    res = expire_dormant(eng, cid()).result()
    assert res.value == {"cards": 2}
    card = eng.card(100)
    assert card["status"] == CardStatus.DORMANT
    assert card["principal_fen"] == before["principal_fen"] and card["points"] == 50
    assert eng.card_journal(100, 1)[0]["op_type"] == CardOp.EXPIRE_DORMANT
    assert eng.swipe(100, 100, cid()).result().codes[0] == Result.CARD_DORMANT
    assert expire_dormant(eng, cid()).result().value == {"cards": 0}
    assert journal_adds_up(eng)


def test_renewal_reactivates_with_new_validity_and_fee(eng, clock):
    setup_types(eng)
    put_card_type(eng, CardType(type_id=1, name="储值卡", renewal_fee_fen=300), cid()).result()
    issue(eng, 100, cid(), type_id=1, paid_fen=5_000).result()
    before = state(eng)
    assert renew(eng, 100, cid()).result().reason == "CARD_NOT_RENEWABLE"
    assert state(eng) == before
    clock.now = T0 + 800 * DAY
    expire_dormant(eng, cid()).result()
    c = cid()
    res = renew(eng, 100, c).result()
    assert res.code == Result.OK and res.value == {"expires_at_s": years(clock.now, 2),
                                                   "fee_fen": 300}
    assert renew(eng, 100, c).result().replayed
    card = eng.card(100)
    assert card["status"] == CardStatus.ACTIVE and card["principal_fen"] == 4_700
    assert eng.swipe(100, 100, cid()).result().codes[0] == Result.OK
    assert journal_adds_up(eng)


def test_renewal_of_an_expired_active_card_and_external_fee(eng, clock):
    setup_types(eng)
    issue(eng, 100, cid(), type_id=1, paid_fen=2_500).result()      # balance 0
    clock.now = T0 + 731 * DAY
    assert renew(eng, 100, cid(), fee_fen=500).result().reason == "FEE_NOT_COVERED"
    res = renew(eng, 100, cid(), fee_fen=500, fee_external=True, validity_days=365).result()
    assert res.code == Result.OK and eng.card(100)["expires_at_s"] == clock.now + 365 * DAY
    assert journal_adds_up(eng)


def test_replacement_moves_unused_coupons(tmp_path, clock):
    """Coupons not yet redeemed follow the card to its replacement (and keep their
    id, template, validity and issue record); a redeemed one stays in the old card's
    history. The old card can no longer use them; the new card can, after a restart
    too."""
    import numpy as np

    from core import RulesConfig
    from core.records import OP
    from core.rules import CouponTemplate
    path = str(tmp_path / "d")
    rules = RulesConfig(coupon_templates=(CouponTemplate(1, "5 yuan off", "fixed",
                                                         value_fen=500, stackable=True),))
    eng = Engine(path, clock=clock, rules=rules)
    eng.issue_cards([100], cid()).result()
    recharge(eng, 100, 50_000)
    ids = eng.issue_coupons(1, [100, 100, 100], cid()).result().value["coupon_ids"]

    def swipe_with(card, coupon_ids):
        ops = np.zeros(1, dtype=OP)
        c = cid()
        ops["client_hi"], ops["client_lo"] = (int.from_bytes(c[:8], "big"),
                                              int.from_bytes(c[8:], "big"))
        ops["card_no"], ops["amount_fen"], ops["op_type"] = card, 2_000, OpType.SWIPE
        ops["coupons_n"] = len(coupon_ids)
        return int(eng.submit(ops, None, np.array(coupon_ids, np.uint64)).result().codes[0])

    assert swipe_with(100, [ids[0]]) == Result.OK
    before = {c["coupon_id"]: c for c in eng.coupons_of(100)}
    res = replace(eng, 100, 101, cid()).result()
    assert res.code == Result.OK and res.value["coupons"] == ids[1:]
    assert [c["coupon_id"] for c in eng.coupons_of(100)] == [ids[0]]
    moved = eng.coupons_of(101)
    assert [c["coupon_id"] for c in moved] == ids[1:]
    for c in moved:
        kept = {k: v for k, v in before[c["coupon_id"]].items() if k != "card_no"}
        assert {k: v for k, v in c.items() if k != "card_no"} == kept
    assert swipe_with(100, [ids[1]]) == Result.CARD_CANCELLED
    assert swipe_with(101, [ids[0]]) == Result.COUPON_NOT_FOUND   # redeemed: stayed behind
    eng.close()

    eng = Engine(path, clock=clock)
    assert [c["coupon_id"] for c in eng.coupons_of(101)] == ids[1:]
    assert swipe_with(101, [ids[1], ids[2]]) == Result.OK
    assert int(eng.card(101)["principal_fen"]) == 50_000 - 1_500 - 1_000 - 1_000
    assert journal_adds_up(eng)
    eng.close()


def test_refund_after_replacement_goes_to_the_new_card(tmp_path, clock):
    """A swipe made before a replacement is refunded on the card that replaced it (also
    after a second replacement): the money, the points and the coupon come back there.
    The cancelled old card cannot take a refund, and an unrelated card is a mismatch.
    A supplementary card's swipe is paid back to its primary's replacement."""
    import numpy as np

    from core import RulesConfig
    from core.rules import CouponTemplate
    rules = RulesConfig(coupon_templates=(CouponTemplate(1, "5 off", "fixed", value_fen=500),))
    eng = Engine(str(tmp_path / "d"), clock=clock, rules=rules)
    eng.issue_cards([100, 300], cid()).result()
    recharge(eng, 100, 50_000)
    coupon = eng.issue_coupons(1, [100], cid()).result().value["coupon_ids"][0]

    def op(card, amount, op_type, client, *, ref=None, coupons=()):
        ops = client_op(card, amount, op_type, client, ref)
        ops["coupons_n"] = len(coupons)
        got = eng.submit(ops, None, np.array(coupons, np.uint64) if coupons else None).result()
        return int(got.codes[0])

    sale = cid()
    assert op(100, 10_000, OpType.SWIPE, sale, coupons=(coupon,)) == Result.OK   # pays 9,500
    card = eng.card(100)
    assert (card["principal_fen"], card["points"]) == (40_500, 95)
    assert replace(eng, 100, 101, cid(), fee_external=True).result().code == Result.OK
    assert replace(eng, 101, 102, cid(), fee_external=True).result().code == Result.OK
    before = state(eng)
    assert op(100, 9_500, OpType.REFUND, cid(), ref=sale) == Result.CARD_CANCELLED
    assert op(300, 9_500, OpType.REFUND, cid(), ref=sale) == Result.REFUND_CARD_MISMATCH
    assert state(eng) == before
    assert op(102, 9_500, OpType.REFUND, cid(), ref=sale) == Result.OK
    now = eng.card(102)
    assert (now["principal_fen"], now["points"]) == (50_000, 0)
    assert [c["coupon_status"] for c in eng.coupons_of(102)] == [1]   # back, on card 102
    assert eng.coupons_of(100) == []

    # A supplementary card's swipe, then the primary is replaced: the refund pays the
    # new primary back.
    setup_types(eng)
    assert issue(eng, 200, cid(), type_id=5, primary_card_no=102,
                 paid_fen=800).result().code == Result.OK
    supp_sale = cid()
    assert op(200, 2_000, OpType.SWIPE, supp_sale) == Result.OK
    assert eng.card(102)["principal_fen"] == 48_000
    assert replace(eng, 102, 103, cid(), fee_external=True).result().code == Result.OK
    assert op(200, 2_000, OpType.REFUND, cid(), ref=supp_sale) == Result.OK
    assert eng.card(103)["principal_fen"] == 50_000
    assert journal_adds_up(eng)
    eng.close()
