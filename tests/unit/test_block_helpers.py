"""The C helpers of a hot batch's publish (writer._facts, writer.journal_items) against
the numpy they replace."""

import numpy as np
import pytest

from core import _fastpath
from core.engine.rollups import JOURNAL_ITEM
from core.engine.storage import IDS_DTYPE
from core.engine.writer import _facts, journal_items
from core.records import COUPON, ITEM, JOURNAL, OP, RESULT, OpType, RecordKind, Result


def test_block_facts_fills_the_id_block_and_counts_refunds_and_coupons():
    rng = np.random.default_rng(3)
    recs = np.zeros(300, dtype=JOURNAL)
    recs["seq"] = np.arange(1, 301)
    recs["client_hi"] = rng.integers(0, 2**63, 300, dtype=np.uint64)
    recs["client_lo"] = rng.integers(0, 2**63, 300, dtype=np.uint64)
    recs["result"] = rng.integers(1, 30, 300)
    recs["op_type"] = OpType.SWIPE
    recs["op_type"][[5, 77, 290]] = OpType.REFUND
    recs["ref_seq"][[5, 77, 290]] = [3, 4, 9]
    recs["amount_fen"][[5, 77, 290]] = [100, 200, 300]
    recs["kind"][[6, 8]] = RecordKind.KIND_COUPON
    ids = np.empty(300, dtype=IDS_DTYPE)
    assert _fastpath.block_facts(recs, 300, ids) == (3, 2)
    assert (ids["hi"] == recs["client_hi"]).all() and (ids["lo"] == recs["client_lo"]).all()
    assert (ids["seq"] == (recs["seq"] << np.uint64(8)) | recs["result"].astype(np.uint64)).all()
    facts = _facts(recs)
    assert facts.refunds == [(3, 100), (4, 200), (9, 300)] and facts.has_coupons
    assert not _facts(recs[10:70]).has_coupons and _facts(recs[10:70]).refunds == []
    with pytest.raises(ValueError):
        _fastpath.block_facts(recs, 301, ids)


def _numpy_items(ops, results, lines):
    n = ops["items_n"].astype(np.int64)
    take = np.flatnonzero((n > 0) & (results["code"] == Result.OK) & (results["replayed"] == 0))
    counts, starts = n[take], ops["items_off"][take].astype(np.int64)
    ends = np.cumsum(counts)
    idx = np.arange(int(counts.sum()), dtype=np.int64) + np.repeat(starts - (ends - counts), counts)
    out = np.empty(len(idx), dtype=JOURNAL_ITEM)
    out["seq"] = np.repeat(results["seq"][take], counts)
    out["item"] = lines[idx]
    return out


def test_journal_items_keeps_the_lines_of_applied_ops_in_op_order():
    rng = np.random.default_rng(4)
    n = 200
    ops = np.zeros(n, dtype=OP)
    ops["items_n"] = rng.integers(0, 5, n)
    ops["items_off"] = np.concatenate([[0], np.cumsum(ops["items_n"])[:-1]])
    lines = np.zeros(int(ops["items_n"].sum()), dtype=ITEM)
    lines["sku"] = np.arange(1, len(lines) + 1)
    lines["amount_fen"] = rng.integers(1, 10_000, len(lines))
    results = np.zeros(n, dtype=RESULT)
    results["seq"] = np.arange(1, n + 1) * 3
    results["code"] = np.where(rng.random(n) < 0.8, Result.OK, Result.INSUFFICIENT_BALANCE)
    results["replayed"] = rng.random(n) < 0.1
    got = journal_items(ops, results, lines)
    want = _numpy_items(ops, results, lines)
    assert len(want) > 100 and got.tobytes() == want.tobytes()
    results["code"] = Result.INSUFFICIENT_BALANCE
    assert journal_items(ops, results, lines) is None
    results["code"] = Result.OK
    results["replayed"][-1] = 0
    ops["items_n"][-1] = 60  # past the lines
    with pytest.raises(ValueError):
        journal_items(ops, results, lines)


def _coupon_block(ids: list[int], slots_of: dict[int, int]):
    """A block of card and coupon records; the coupon records' after-images name ids,
    their slots (as apply_batch gives them) come from slots_of."""
    recs = np.zeros(2 * len(ids), dtype=JOURNAL)
    slots = np.zeros(len(recs), dtype=np.int64)
    after = JOURNAL.fields["after"][1]
    raw = recs.view(np.uint8).reshape(len(recs), JOURNAL.itemsize)
    for k, cid in enumerate(ids):
        recs["kind"][2 * k + 1] = RecordKind.KIND_COUPON
        slots[2 * k] = 99  # a card record's slot is the card's: not looked at here
        cp = np.zeros(1, dtype=COUPON)
        cp["coupon_id"], cp["card_no"], cp["coupon_status"] = cid, 7, 2
        cp["redeemed_fen"] = 10 * cid
        raw[2 * k + 1, after:after + COUPON.itemsize] = cp.view(np.uint8)
        slots[2 * k + 1] = slots_of[cid]
    return recs, slots


def test_publish_coupons_by_slots_copies_as_by_the_index_and_refuses_a_wrong_slot():
    table = np.zeros(8, dtype=COUPON)
    table["coupon_id"][:5] = [11, 12, 13, 14, 15]
    index = _fastpath.KeyMap(16)
    for slot in range(5):
        index.insert(0, int(table["coupon_id"][slot]), slot)
    recs, slots = _coupon_block([13, 11], {11: 0, 13: 2})
    by_index, by_slots = table.copy(), table.copy()
    dirty = np.zeros(1, dtype=np.uint8)
    assert _fastpath.publish_coupons(recs, len(recs), by_index, index, 5, None, 4) == 5
    assert _fastpath.publish_coupons(recs, len(recs), by_slots, index, 5, dirty, 4, slots,
                                     release_gil=True) == 5
    assert (by_slots == by_index).all() and dirty[0] == 1
    assert list(by_slots["redeemed_fen"][:5]) == [110, 0, 130, 0, 0]
    # A slot that does not hold the record's coupon, or lies past the coupons: refused.
    for wrong in ({11: 1, 13: 2}, {11: 0, 13: 5}, {11: -1, 13: 2}):
        recs, slots = _coupon_block([13, 11], wrong)
        with pytest.raises(ValueError):
            _fastpath.publish_coupons(recs, len(recs), table.copy(), index, 5, None, 4, slots,
                                      release_gil=True)
    with pytest.raises(ValueError):  # copying without the GIL needs the slots
        _fastpath.publish_coupons(recs, len(recs), table.copy(), index, 5, None, 4,
                                  release_gil=True)
