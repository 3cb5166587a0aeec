"""The C helpers of a hot batch's publish (writer._facts, writer.journal_items) against
the numpy they replace."""

import numpy as np
import pytest

from core import _fastpath
from core.engine.rollups import JOURNAL_ITEM
from core.engine.storage import IDS_DTYPE
from core.engine.writer import _facts, journal_items
from core.records import ITEM, JOURNAL, OP, RESULT, OpType, RecordKind, Result


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
