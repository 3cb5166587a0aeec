"""The vectorised FIFO of the settlement rollup (core.engine.rollup_lots._fifo) gives the
pieces and the lots PrincipalLots gives one record at a time, on random interleavings of
recharges, spends and fees over several cards with stored lots."""

from __future__ import annotations

from collections import deque

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from core.engine import rollup_lots
from core.records import JOURNAL, OpType

CARDS = (3, 7, 11)
step = st.tuples(st.sampled_from(CARDS), st.sampled_from(["recharge", "swipe", "fee"]),
                 st.integers(1, 5_000), st.integers(1, 4))


def records(steps, stored):
    """Journal records of the steps; a take never exceeds the card's principal (the
    engine's invariant), so it is cut to what the card holds."""
    bal = {c: sum(f for _, f in stored.get(c, [])) for c in CARDS}
    out = []
    for k, (card, kind, fen, store) in enumerate(steps):
        if kind == "recharge":
            d, op = fen, OpType.RECHARGE
        else:
            d = -min(fen, bal[card])
            op = OpType.SWIPE if kind == "swipe" else OpType.ADJUST
            if d == 0:
                continue
        bal[card] += d
        out.append((k + 1, card, d, store, op))
    r = np.zeros(len(out), JOURNAL)
    for i, (seq, card, d, store, op) in enumerate(out):
        r[i]["seq"], r[i]["card_no"], r[i]["principal_delta_fen"] = seq, card, d
        r[i]["store_id"], r[i]["op_type"] = store, op
    return r


@settings(max_examples=200, deadline=None)
@given(st.lists(step, max_size=60),
       st.dictionaries(st.sampled_from(CARDS),
                       st.lists(st.tuples(st.integers(1, 4), st.integers(1, 3_000)),
                                max_size=3)))
def test_fifo_equals_the_rule(steps, stored_t):
    stored = {c: [list(p) for p in lots] for c, lots in stored_t.items()}
    r = records(steps, stored)
    if len(r) == 0:
        return
    want_pieces = []
    rule = rollup_lots.PrincipalLots(
        lambda rec, s, f, kind: want_pieces.append((int(rec["seq"]), s, f)))
    rule.lots = {c: deque([list(p) for p in lots]) for c, lots in stored.items()}
    for rec in r:
        rule.apply(rec)
    (idx, lot_store, fen, have), after = rollup_lots._fifo(r, stored)
    assert have.all()
    got = sorted(zip(r["seq"][idx].tolist(), lot_store.tolist(), fen.tolist(), strict=True),
                 key=lambda x: x[0])
    # Per record, oldest lot first: the rule's order.
    assert got == sorted(want_pieces, key=lambda x: x[0])
    for c in set(r["card_no"].tolist()):
        assert after[c] == [list(p) for p in rule.lots.get(c, [])], c
