"""Reports computed from the journal: staff commission per operator.

`commission_report` answers "what did each operator sell and earn in this window":
one row per operator_id with the OK swipes (SWIPE), count-card uses (USE_COUNT) and
refunds of their swipes, the sales (what members paid: payable_fen - coupon_fen of each
swipe, less every refund's amount_fen) and the commission (the swipes' and uses'
commission_fen plus the refunds' negative commission_fen).

Attribution. A refund belongs to the operator of the swipe it reverses (the record
whose seq is its ref_seq, looked up in the journal even when that swipe is older than
the window), not to whoever keyed it in: its count, its amount and its negative
commission all land on the swiper's row, so a row is that operator's net performance.
Which records count is decided by the refund record itself: its time_s must be in the
window and, with a store, its store_id must be that store. Coupon records
(KIND_COUPON), records without an after-image (KIND_NONE), SUPP_DEBIT records and
rejected ops are never counted. Operator 0 (ops posted without an operator) gets a row
like any other.

Cost. The journal is keyed by seq, not time, so a report walks the block index of the
whole journal from its first block, in one read transaction of its own (zero-copy: the
blocks are numpy views of LMDB's map, never copied). A block whose last record is older
than since_s, or whose first and last are at or after until_s, is skipped after
reading those records (a page or two): about a page per group commit of history outside
the window. A block in the window is read whole (416
bytes a record) and reduced with numpy, per block: no Python step per record except
refunds (one journal lookup each, cached per swipe). So the cost is linear in the
records of the window: a year at 1 M swipes a day is ~150 GB to read, minutes even
from the page cache. That is why a window is at most REPORT_WINDOW_MAX_S (366 days)
and why the server runs the scan in a worker thread. The read transaction stays open
for the whole scan, and LMDB cannot reuse pages freed meanwhile (by checkpoints) until
it ends: run long reports off-peak.
Integers only: every sum is int64 fen.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import lmdb
import numpy as np

from core.records import OpType, RecordKind, Result

# The longest window one report may cover (a year, leap years included).
REPORT_WINDOW_MAX_S = 366 * 86_400

# The columns of a report row, in order.
COMMISSION_FIELDS = ("operator_id", "swipes", "uses", "refunds", "sales_fen", "commission_fen")


def check_window(since_s: int, until_s: int) -> None:
    """Raise ValueError unless [since_s, until_s) is a non-empty window of whole unix
    seconds, not before the epoch, at most REPORT_WINDOW_MAX_S long."""
    for name, v in (("since_s", since_s), ("until_s", until_s)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise ValueError(f"{name} must be an integer of unix seconds, not {v!r}")
    if since_s < 0:
        raise ValueError(f"since_s must not be negative, not {since_s}")
    if until_s <= since_s:
        raise ValueError(f"until_s ({until_s}) must be after since_s ({since_s})")
    if until_s - since_s > REPORT_WINDOW_MAX_S:
        raise ValueError(f"a report covers at most {REPORT_WINDOW_MAX_S // 86_400} days, "
                         f"not {(until_s - since_s) / 86_400:.1f}")


@contextlib.contextmanager
def _zero_copy_read(store) -> Iterator[lmdb.Transaction]:
    """A read transaction whose values are views of the map (not copies), kept out of a
    map resize like Store.read's."""
    with store.gate.reading():
        with store.env.begin(buffers=True) as txn:
            yield txn


def _sum_by(keys: np.ndarray, cols: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
    """The distinct keys (ascending) and each column's int64 sum per key."""
    order = np.argsort(keys, kind="stable")
    k = keys[order]
    starts = np.flatnonzero(np.concatenate(([True], k[1:] != k[:-1])))
    return k[starts], [np.add.reduceat(c[order], starts) for c in cols]


def commission_report(engine, since_s: int, until_s: int,
                      store_id: int | None = None) -> list[dict]:
    """One row per operator_id (ascending) of the journal records with time_s in
    [since_s, until_s), and store_id equal to store_id when given: the fields of
    COMMISSION_FIELDS, as ints. Raises ValueError for a bad window (check_window)."""
    check_window(since_s, until_s)
    since_s, until_s = int(since_s), int(until_s)
    store = engine.store
    totals: dict[int, list[int]] = {}
    swiper: dict[int, int] = {}                     # swipe seq -> its operator_id
    with _zero_copy_read(store) as txn:
        for block in store.journal_blocks(txn, 0):
            # One commit's records share one clock reading: a block wholly outside the
            # window costs the page of its first and last record.
            t = block["time_s"]
            if len(block) == 0 or int(t[-1]) < since_s or min(int(t[0]), int(t[-1])) >= until_s:
                continue
            take = ((t >= since_s) & (t < until_s) & (block["result"] == Result.OK)
                    & (block["kind"] == RecordKind.KIND_CARD))
            if store_id is not None:
                take &= block["store_id"] == store_id
            if not take.any():
                continue
            op = block["op_type"]
            sw = take & (op == OpType.SWIPE)
            us = take & (op == OpType.USE_COUNT)
            rf = np.flatnonzero(take & (op == OpType.REFUND))
            earn = sw | us
            if not earn.any() and len(rf) == 0:
                continue
            # Refunds are few: find each one's swiper in the journal (a Python step each).
            ref_ops = np.zeros(len(rf), dtype=np.int64)
            for j, i in enumerate(rf.tolist()):
                ref = int(block[i]["ref_seq"])
                who = swiper.get(ref)
                if who is None:
                    orig = store.journal_record(txn, ref) if ref else None
                    who = int(orig["operator_id"]) if orig is not None else int(block[i]["operator_id"])
                    swiper[ref] = who
                ref_ops[j] = who
            n_earn = int(np.count_nonzero(earn))
            keys = np.concatenate((block["operator_id"][earn].astype(np.int64), ref_ops))
            ones_rf = np.ones(len(rf), dtype=np.int64)
            cols = [
                np.concatenate((sw[earn].astype(np.int64), np.zeros(len(rf), np.int64))),
                np.concatenate((us[earn].astype(np.int64), np.zeros(len(rf), np.int64))),
                np.concatenate((np.zeros(n_earn, np.int64), ones_rf)),
                np.concatenate((np.where(sw[earn], block["payable_fen"][earn].astype(np.int64)
                                         - block["coupon_fen"][earn].astype(np.int64), 0),
                                -block["amount_fen"][rf].astype(np.int64))),
                np.concatenate((block["commission_fen"][earn].astype(np.int64),
                                block["commission_fen"][rf].astype(np.int64))),
            ]
            ops, sums = _sum_by(keys, cols)
            per_op = np.stack(sums, axis=1).tolist()        # one list of 5 ints per operator
            for k, add in zip(ops.tolist(), per_op, strict=True):
                row = totals.setdefault(k, [0] * len(add))
                for j, v in enumerate(add):
                    row[j] += v
    return [dict(zip(COMMISSION_FIELDS, (k, *totals[k]), strict=True)) for k in sorted(totals)]
