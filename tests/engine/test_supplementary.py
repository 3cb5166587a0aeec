"""Supplementary cards spend from their primary card's balance, within their limit;
a refund pays the primary back; the journal adds up per card."""

import os

import numpy as np
import pytest
from common import cid

from core import Engine, RulesConfig
from core.records import OP, CardStatus, OpType, Result
from core.rules import LevelRule

PRIMARY, SUPP = 1, 2



def op(eng, tag, card, amount, op_type=OpType.SWIPE, ref=None):
    ops = np.zeros(1, dtype=OP)
    c = cid(tag)
    ops["client_hi"], ops["client_lo"] = int.from_bytes(c[:8], "big"), int.from_bytes(c[8:], "big")
    ops["card_no"], ops["amount_fen"], ops["op_type"] = card, amount, op_type
    if ref:
        r = cid(ref)
        ops["ref_hi"], ops["ref_lo"] = int.from_bytes(r[:8], "big"), int.from_bytes(r[8:], "big")
    return eng.submit(ops).result()


def issue_supplementary(eng, limit_fen):
    def build(ctx):
        card = ctx.card(SUPP)
        card["primary_card_no"], card["supp_limit_fen"] = PRIMARY, limit_fen
        ctx.emit(OpType.SET_STATUS, card)
        return {}

    assert eng.admin(os.urandom(16), OpType.SET_STATUS, build).result().code == Result.OK


@pytest.fixture
def eng(tmp_path):
    e = Engine(str(tmp_path), rules=RulesConfig(levels=(LevelRule("regular"),)))
    e.issue_cards([PRIMARY, SUPP], os.urandom(16)).result()
    e.recharge(PRIMARY, 10_000, os.urandom(16)).result()
    issue_supplementary(e, 3_000)
    yield e
    e.close()


def books_add_up(eng):
    journal = eng.journal(1, 10**6)
    for no in (PRIMARY, SUPP):
        mine = journal[(journal["card_no"] == no) & (journal["kind"] == 0)]
        card = eng.card(no)
        assert card["principal_fen"] == int(mine["principal_delta_fen"].sum())
        assert card["bonus_fen"] == int(mine["bonus_delta_fen"].sum())
        assert card["points"] == int(mine["points_delta"].sum())


def test_supplementary_swipe_pays_from_the_primary(eng):
    r = op(eng, "s1", SUPP, 1_200)
    assert r.codes[0] == Result.OK
    assert eng.card(PRIMARY)["principal_fen"] == 8_800
    supp = eng.card(SUPP)
    assert (supp["principal_fen"], supp["supp_spent_fen"], supp["points"]) == (0, 1_200, 12)
    # The primary's side is a record of its own, pointing at the swipe.
    rec = eng.card_journal(PRIMARY, 1)[0]
    assert int(rec["op_type"]) == OpType.SUPP_DEBIT and int(rec["ref_seq"]) == int(r.seq[0])
    assert int(rec["principal_delta_fen"]) == -1_200
    books_add_up(eng)


def test_the_limit_and_the_primarys_state_bind(eng):
    assert op(eng, "a", SUPP, 2_000).codes[0] == Result.OK
    assert op(eng, "b", SUPP, 1_001).codes[0] == Result.SUPP_LIMIT_EXCEEDED
    assert op(eng, "c", SUPP, 1_000).codes[0] == Result.OK
    issue_supplementary(eng, 0)  # no limit: the primary's balance is the bound
    assert op(eng, "d", SUPP, 7_001).codes[0] == Result.INSUFFICIENT_BALANCE
    eng.set_card_status(PRIMARY, CardStatus.FROZEN, os.urandom(16)).result()
    assert op(eng, "e", SUPP, 100).codes[0] == Result.CARD_FROZEN
    books_add_up(eng)


def test_refund_pays_the_primary_back(eng):
    op(eng, "s1", SUPP, 2_000)
    assert op(eng, "r1", SUPP, 500, OpType.REFUND, ref="s1").codes[0] == Result.OK
    assert eng.card(PRIMARY)["principal_fen"] == 8_500
    assert eng.card(SUPP)["supp_spent_fen"] == 1_500
    assert op(eng, "r2", SUPP, 1_500, OpType.REFUND, ref="s1").codes[0] == Result.OK
    assert eng.card(PRIMARY)["principal_fen"] == 10_000
    supp = eng.card(SUPP)
    assert (supp["supp_spent_fen"], supp["points"], supp["spend_total_fen"]) == (0, 0, 0)
    books_add_up(eng)


def test_swipe_and_refund_of_a_supplementary_card_in_one_batch(eng):
    ops = np.zeros(2, dtype=OP)
    for k, (tag, typ, amt) in enumerate((("s", OpType.SWIPE, 900), ("r", OpType.REFUND, 900))):
        c = cid(tag)
        ops[k]["client_hi"], ops[k]["client_lo"] = int.from_bytes(c[:8], "big"), int.from_bytes(c[8:], "big")
        ops[k]["card_no"], ops[k]["amount_fen"], ops[k]["op_type"] = SUPP, amt, typ
    s = cid("s")
    ops[1]["ref_hi"], ops[1]["ref_lo"] = int.from_bytes(s[:8], "big"), int.from_bytes(s[8:], "big")
    res = eng.submit(ops).result()
    assert list(res.codes) == [Result.OK, Result.OK]
    assert eng.card(PRIMARY)["principal_fen"] == 10_000
    books_add_up(eng)
