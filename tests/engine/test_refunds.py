"""Refunds: what a swipe took comes back exactly, in the split it was taken, once."""

import os

import numpy as np
import pytest
from common import cid
from hypothesis import given, settings
from hypothesis import strategies as st

from core import Engine, EngineConfig, RulesConfig
from core.records import OP, OpType, Result
from core.rules import BonusTier, LevelRule


class Clock:
    def __init__(self, now=1_780_000_000):
        self.now = now

    def __call__(self):
        return self.now



def op_row(tag, card, amount, op_type, *, ref=None, offset=0):
    ops = np.zeros(1, dtype=OP)
    c = cid(tag)
    ops["client_hi"], ops["client_lo"] = int.from_bytes(c[:8], "big"), int.from_bytes(c[8:], "big")
    ops["card_no"], ops["amount_fen"], ops["op_type"], ops["points_offset"] = card, amount, op_type, offset
    if ref is not None:
        r = cid(ref)
        ops["ref_hi"], ops["ref_lo"] = int.from_bytes(r[:8], "big"), int.from_bytes(r[8:], "big")
    return ops


def refund(eng, tag, card, amount, ref):
    return eng.submit(op_row(tag, card, amount, OpType.REFUND, ref=ref)).result()


def swipe(eng, tag, card, amount, offset=0):
    return eng.submit(op_row(tag, card, amount, OpType.SWIPE, offset=offset)).result()


RULES = RulesConfig(
    levels=(LevelRule("regular"), LevelRule("silver", discount_bp=9_800, up_points=10_000,
                                             validity_days=730)),
    tiers=(BonusTier(10_000, 2_000),),
)


@pytest.fixture
def eng(tmp_path):
    e = Engine(str(tmp_path), rules=RULES, clock=Clock())
    e.issue_cards([1, 2], os.urandom(16)).result()
    e.recharge(1, 10_000, os.urandom(16)).result()  # 100 yuan paid + 20 bonus
    yield e
    e.close()


def state(e, card=1):
    c = e.card(card)
    return {k: c[k] for k in ("principal_fen", "bonus_fen", "points", "spend_total_fen", "level",
                              "period_spend_fen", "period_points")}


def test_full_refund_returns_exactly_the_split_taken(eng):
    before = state(eng)
    r = swipe(eng, "s1", 1, 11_000)  # 110 yuan: all 100 principal + 10 of the bonus
    assert r.codes[0] == Result.OK
    assert (r.columns()["principal_delta_fen"][0], r.columns()["bonus_delta_fen"][0]) == (-10_000, -1_000)
    back = refund(eng, "r1", 1, 11_000, "s1")
    assert back.codes[0] == Result.OK
    rec = back.record(0)
    assert (int(rec["principal_delta_fen"]), int(rec["bonus_delta_fen"])) == (10_000, 1_000)
    assert int(rec["ref_seq"]) == int(r.seq[0]) and int(rec["op_type"]) == OpType.REFUND
    assert state(eng) == before


def test_partial_refunds_add_up_to_exactly_the_whole(eng):
    before = state(eng)
    swipe(eng, "s1", 1, 1_000)
    got = [refund(eng, f"r{k}", 1, amt, "s1") for k, amt in enumerate((333, 333, 334))]
    assert all(g.codes[0] == Result.OK for g in got)
    assert state(eng) == before
    assert refund(eng, "r9", 1, 1, "s1").codes[0] == Result.REFUND_EXCEEDS_PAID


def test_never_more_than_what_was_paid(eng):
    swipe(eng, "s1", 1, 1_000)
    assert refund(eng, "too-much", 1, 1_001, "s1").codes[0] == Result.REFUND_EXCEEDS_PAID
    assert refund(eng, "half", 1, 500, "s1").codes[0] == Result.OK
    assert refund(eng, "rest+1", 1, 501, "s1").codes[0] == Result.REFUND_EXCEEDS_PAID
    assert refund(eng, "zero", 1, 0, "s1").codes[0] == Result.AMOUNT_NOT_POSITIVE


def test_a_retried_refund_applies_once(eng):
    swipe(eng, "s1", 1, 1_000)
    first = refund(eng, "r1", 1, 400, "s1")
    again = refund(eng, "r1", 1, 400, "s1")
    assert again.replayed[0] == 1 and again.seq[0] == first.seq[0]
    assert eng.card(1)["principal_fen"] == 10_000 - 1_000 + 400


def test_refund_targets_must_be_accepted_swipes_of_the_card(eng):
    swipe(eng, "s1", 1, 1_000)
    eng.recharge(1, 500, cid("rc"))
    assert refund(eng, "a", 1, 100, "nobody").codes[0] == Result.REFUND_TARGET_NOT_FOUND
    assert refund(eng, "b", 1, 100, "rc").codes[0] == Result.REFUND_NOT_REFUNDABLE
    assert refund(eng, "c", 2, 100, "s1").codes[0] == Result.REFUND_CARD_MISMATCH
    # A swipe that was rejected claimed no id, so there is nothing to refund.
    assert swipe(eng, "broke", 2, 100).codes[0] == Result.INSUFFICIENT_BALANCE
    assert refund(eng, "d", 2, 100, "broke").codes[0] == Result.REFUND_TARGET_NOT_FOUND


def test_refund_gives_back_points_and_offsets_and_the_level_they_bought(eng):
    eng.recharge(1, 2_000_000, os.urandom(16)).result()
    swipe(eng, "earn", 1, 500_000)  # 5,000 points
    before = state(eng)
    # 1,000 points off; earns 5,900, so 10,900 points earned in the period: silver.
    r = swipe(eng, "big", 1, 600_000, offset=1_000)
    assert r.columns()["level"][0] == 1
    refund(eng, "undo", 1, 600_000, "big")
    assert state(eng) == before
    assert eng.card(1)["level"] == 0


def test_swipe_and_refund_in_one_batch_and_across_a_restart(tmp_path):
    clock = Clock()
    cfg = EngineConfig(checkpoint_ops=3)
    e = Engine(str(tmp_path), rules=RULES, clock=clock, config=cfg)
    e.issue_cards([1], os.urandom(16)).result()
    e.recharge(1, 10_000, os.urandom(16)).result()
    both = np.concatenate([op_row("s1", 1, 1_000, OpType.SWIPE),
                           op_row("r1", 1, 600, OpType.REFUND, ref="s1")])
    res = e.submit(both).result()
    assert list(res.codes) == [Result.OK, Result.OK]
    e.close()
    e = Engine(str(tmp_path), rules=RULES, clock=clock, config=cfg)
    assert refund(e, "r2", 1, 401, "s1").codes[0] == Result.REFUND_EXCEEDS_PAID
    assert refund(e, "r3", 1, 400, "s1").codes[0] == Result.OK
    assert e.card(1)["principal_fen"] == 10_000
    e.close()


@settings(max_examples=60, deadline=None)
@given(amount=st.integers(1, 50_000), principal=st.integers(0, 60_000),
       cuts=st.lists(st.integers(1, 10_000), min_size=1, max_size=6))
def test_any_series_of_partial_refunds_is_exact(tmp_path_factory, amount, principal, cuts):
    e = Engine(str(tmp_path_factory.mktemp("r")), rules=RULES, clock=Clock())
    e.issue_cards([1], os.urandom(16)).result()
    if principal:
        e.recharge(1, principal, os.urandom(16)).result()
    before = state(e)
    if swipe(e, "s", 1, amount).codes[0] != Result.OK:
        e.close()
        return
    paid = amount
    left = paid
    for k, cut in enumerate(cuts):
        cut = min(cut, left)
        if cut == 0:
            break
        assert refund(e, f"r{k}", 1, cut, "s").codes[0] == Result.OK
        left -= cut
    if left:
        assert refund(e, "last", 1, left, "s").codes[0] == Result.OK
    assert state(e) == before
    e.close()


def test_own_store_flag_refuses_a_refund_of_another_store_sale(eng):
    """REFUND_OWN_STORE (set by the server unless the chain takes cross-store refunds):
    a refund at another store than the swipe's is PERMISSION_DENIED and changes nothing."""
    from core.records import OpFlag

    sale = op_row("s-store", 1, 1_000, OpType.SWIPE)
    sale["store_id"] = 11
    assert eng.submit(sale).result().codes[0] == Result.OK
    before = state(eng)

    def back(tag, store, flags):
        ops = op_row(tag, 1, 500, OpType.REFUND, ref="s-store")
        ops["store_id"], ops["op_flags"] = store, flags
        return eng.submit(ops).result().codes[0]

    assert back("r-other", 12, OpFlag.REFUND_OWN_STORE) == Result.PERMISSION_DENIED
    assert state(eng) == before
    assert back("r-other-any", 12, 0) == Result.OK, "without the flag any store may"
    assert back("r-own", 11, OpFlag.REFUND_OWN_STORE) == Result.OK
