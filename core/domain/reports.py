"""Reports: staff commission per operator, and the reports from the rollups.

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

Cost. commission_report reads the window's whole hours from the rollups (below) and
scans only the partial hours at its ends; what follows is the cost of that scan
(commission_scan). The journal is keyed by seq, not time, so a scan walks the block index of the
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

from core.idsets import unique_ids
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
        days, rest_s = divmod(int(until_s - since_s), 86_400)
        raise ValueError(f"a report covers at most {REPORT_WINDOW_MAX_S // 86_400} days, "
                         f"not {days} days and {rest_s} s")


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
    COMMISSION_FIELDS, as ints. Raises ValueError for a bad window (check_window).

    The whole hours of the window (in the rollups' time zone) come from the rollups;
    only the partial hours at either end, if any, are scanned from the journal
    (commission_scan). Both file a record under the same rules, so the answer is the
    scan's over the whole window, to the fen."""
    check_window(since_s, until_s)
    since_s, until_s = int(since_s), int(until_s)
    with engine.store.read() as txn:
        raw = txn.get(b"tz_offset_s", db=engine.store.db[_ru.ROLLUP_META_DB])
    tz = int.from_bytes(raw, "big", signed=True) if raw is not None else _tz(engine)
    h1 = since_s + (-(since_s + tz)) % 3_600          # first hour boundary >= since
    h2 = until_s - (until_s + tz) % 3_600             # last hour boundary <= until
    # A window opening before the zone's epoch (1970, west of UTC) has hours the
    # rollups' unsigned day cannot key: the journal answers it whole.
    if h2 - h1 < 3_600 or since_s + tz < 0:
        return commission_scan(engine, since_s, until_s, store_id)
    totals: dict[int, list[int]] = {}

    def add(rows) -> None:
        for r in rows:
            row = totals.setdefault(r["operator_id"], [0] * (len(COMMISSION_FIELDS) - 1))
            for j, f in enumerate(COMMISSION_FIELDS[1:]):
                row[j] += r[f]

    # A partial hour with no stored sales row has no record in the journal the rollups
    # cover: only the tail after it is scanned (not every block's first and last page
    # from seq 0, a disk read each from a cold page cache on a large journal).
    if h1 > since_s:
        add(commission_scan(engine, since_s, h1, store_id,
                            after_seq=_empty_hour_covered(engine, tz, (h1 + tz) // 3_600 - 1)))
    if until_s > h2:
        add(commission_scan(engine, h2, until_s, store_id,
                            after_seq=_empty_hour_covered(engine, tz, (h2 + tz) // 3_600)))
    add(_commission_hours(engine, tz, (h1 + tz) // 3_600, (h2 + tz) // 3_600, store_id))
    return [dict(zip(COMMISSION_FIELDS, (k, *totals[k]), strict=True)) for k in sorted(totals)]


def _empty_hour_covered(engine, tz: int, hour: int) -> int:
    """The seq the rollups cover if they hold no sales row in local hour `hour` (hours
    since the epoch in their zone tz): no card record of that hour lies at or before it.
    0 otherwise (or with no rollups in this format): scan from the start."""
    with engine.store.read() as txn:
        seq = _ru.covered_seq(engine.store, txn)
        if seq == 0:
            return 0
        prefix = int(hour // 24).to_bytes(4, "big") + int(hour % 24).to_bytes(1, "big")
        cur = txn.cursor(db=engine.store.db[_ru.SALES_DB])
        if cur.set_range(prefix) and bytes(cur.key()[:len(prefix)]) == prefix:
            return 0
        return seq


def commission_scan(engine, since_s: int, until_s: int,
                    store_id: int | None = None, *, after_seq: int = 0) -> list[dict]:
    """commission_report by scanning the journal over [since_s, until_s) (the records
    after after_seq: the caller knows none before it falls in the window)."""
    check_window(since_s, until_s)
    since_s, until_s = int(since_s), int(until_s)
    store = engine.store
    totals: dict[int, list[int]] = {}
    swiper: dict[int, int] = {}                     # swipe seq -> its operator_id
    with _zero_copy_read(store) as txn:
        for block in store.journal_blocks(txn, int(after_seq)):
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


# --- reports from the rollups (docs/internals/reports.md) ------------------------------

import datetime  # noqa: E402

from core.engine import behaviour as _behaviour  # noqa: E402
from core.engine import rollup_lots as _lots  # noqa: E402
from core.engine import rollups as _ru  # noqa: E402
from core.records import OP_NAMES  # noqa: E402

# The longest window of days one rollup report may cover (ten years).
ROLLUP_WINDOW_MAX_DAYS = 3_660
# Rows one report returns at most (a top-N, a by-hour-by-operator breakdown).
REPORT_ROWS_MAX = 100_000

SALES_GROUPS = ("store", "region", "day", "hour", "terminal", "operator", "level", "category")
SALES_FIELDS = ("count", "gross_fen", "discount_fen", "coupon_fen", "offset_fen",
                "principal_fen", "bonus_fen", "external_fen", "refund_count", "refund_fen",
                "net_fen")
SKU_FIELDS = ("sku", "category", "lines", "qty", "amount_fen")
LIABILITY_TERMS = ("opening", "recharged", "spent", "refunds", "fees", "expired", "other",
                   "closing")
LIABILITY_FIELDS = ("day", "issue_store",
                    *(f"principal_{t}_fen" for t in LIABILITY_TERMS),
                    *(f"bonus_{t}_fen" for t in LIABILITY_TERMS))
SETTLEMENT_FIELDS = ("issue_store", "spend_store", "count", "principal_fen", "bonus_fen",
                     "refund_principal_fen", "refund_bonus_fen", "net_fen")
COUPON_FIELDS = ("template_id", "issued", "redeemed", "restored", "redeemed_fen")
ROLLUP_COMMISSION_FIELDS = COMMISSION_FIELDS


class ReportError(ValueError):
    """Bad report input; reason is machine-readable (the gRPC ErrorInfo reason)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def parse_day(text: str) -> int:
    """An ISO date (the chain's time zone) as a rollup day number."""
    try:
        return _ru.day_of(datetime.date.fromisoformat(str(text)))
    except ValueError:
        raise ReportError("DATE_INVALID", f"not an ISO date (YYYY-MM-DD): {text!r}") from None


def day_window(date_from: str, date_to: str) -> tuple[int, int]:
    """[from, to) as day numbers; to is exclusive."""
    a, b = parse_day(date_from), parse_day(date_to)
    if b <= a:
        raise ReportError("WINDOW_INVALID", f"--to ({date_to}) must be after --from ({date_from})")
    if b - a > ROLLUP_WINDOW_MAX_DAYS:
        raise ReportError("WINDOW_INVALID", f"a report covers at most {ROLLUP_WINDOW_MAX_DAYS} days")
    return a, b


def yyyymmdd(day: int) -> int:
    d = _ru.date_of(day)
    return d.year * 10_000 + d.month * 100 + d.day


def _rows(engine, table: str, day_from: int, day_to: int, stores, store_field: str = "store"):
    keys, vals = _ru.snapshot(engine.store, _tz(engine), table, day_from, day_to)
    if stores is not None:
        keep = np.isin(keys[store_field].astype(np.int64), np.array(sorted(stores), np.int64))
        keys, vals = keys[keep], vals[keep]
    return keys, vals


def _tz(engine) -> int:
    return engine.rollups.tz if engine.rollups is not None else engine.rules.tz_offset_s


def _group(columns: list[np.ndarray], vals: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """Sum vals (n x c int64) by the tuple of columns (int64 each)."""
    if not columns:
        return [], vals.sum(axis=0, dtype=np.int64)[None, :]
    if len(vals) == 0:
        return [c[:0] for c in columns], vals
    order = np.lexsort(columns[::-1])
    cols = [c[order] for c in columns]
    change = np.zeros(len(order), bool)
    change[0] = True
    for c in cols:
        change[1:] |= c[1:] != c[:-1]
    starts = np.flatnonzero(change)
    return [c[starts] for c in cols], np.add.reduceat(vals[order], starts, axis=0)


def _col(name: str) -> int:
    return _ru.SALES_COLS.index(name)


def _group_columns(keys: np.ndarray, by, region_of) -> list[np.ndarray]:
    out = []
    for g in by:
        if g not in SALES_GROUPS:
            raise ReportError("GROUP_INVALID", f"cannot group by {g!r}; one of {', '.join(SALES_GROUPS)}")
        if g == "region":
            if region_of is None:
                raise ReportError("GROUP_INVALID", "grouping by region needs the chain")
            stores = keys["store"].astype(np.int64)
            uniq = unique_ids(stores, np.int64)
            regions = np.array([region_of(int(s)) for s in uniq], np.int64)
            out.append(regions[np.searchsorted(uniq, stores)] if len(uniq) else stores)
        elif g == "day":
            out.append(keys["day"].astype(np.int64))
        else:
            out.append(keys[g].astype(np.int64))
    return out


def _finish(by, cols, sums, fields, day_cols=("day",)) -> list[dict]:
    rows = []
    names = list(by)
    for i in range(len(sums)):
        row = {}
        for n, c in zip(names, cols, strict=True):
            row[n] = yyyymmdd(int(c[i])) if n in day_cols else int(c[i])
        row.update(zip(fields, (int(v) for v in sums[i]), strict=True))
        rows.append(row)
    if len(rows) > REPORT_ROWS_MAX:
        raise ReportError("TOO_MANY_ROWS", f"more than {REPORT_ROWS_MAX} rows: group by less")
    return rows


def sales_report(engine, date_from: str, date_to: str, by=("store",), *, stores=None,
                 region_of=None) -> list[dict]:
    """Sales per group of `by` over [date_from, date_to) (ISO dates, chain time zone),
    restricted to stores (None: all). Fields SALES_FIELDS, integers in fen."""
    a, b = day_window(date_from, date_to)
    keys, vals = _rows(engine, _ru.SALES_DB, a, b, stores)
    op = keys["op_type"]
    sw, sd, rf = op == OpType.SWIPE, op == OpType.SUPP_DEBIT, op == OpType.REFUND
    v = lambda name: vals[:, _col(name)]  # noqa: E731
    pay = sw | sd
    out = np.stack([
        np.where(sw, v("n"), 0), np.where(sw, v("amount_fen"), 0),
        np.where(sw, v("discount_fen"), 0), np.where(sw, v("coupon_fen"), 0),
        np.where(sw, v("offset_fen"), 0), np.where(pay, v("principal_out_fen"), 0),
        np.where(pay, v("bonus_out_fen"), 0), np.where(sw, v("external_fen"), 0),
        np.where(rf, v("n"), 0), np.where(rf, v("amount_fen"), 0),
        np.where(sw, v("amount_fen") - v("discount_fen") - v("coupon_fen"), 0)
        - np.where(rf, v("amount_fen"), 0)], axis=1) if len(vals) else np.zeros((0, 11), np.int64)
    keep = sw | sd | rf
    by = tuple(by)
    cols, sums = _group(_group_columns(keys[keep], by, region_of), out[keep])
    return _finish(by, cols, sums, SALES_FIELDS)


def top_skus(engine, date_from: str, date_to: str, n: int = 10, *, stores=None) -> list[dict]:
    """The n skus with the largest line amounts sold (SWIPE lines) in the window."""
    a, b = day_window(date_from, date_to)
    if not 1 <= int(n) <= REPORT_ROWS_MAX:
        raise ReportError("TOP_INVALID", f"top must be 1..{REPORT_ROWS_MAX}")
    keys, vals = _rows(engine, _ru.SKU_DB, a, b, stores)
    sw = keys["op_type"] == OpType.SWIPE
    cols, sums = _group([keys["sku"][sw].astype(np.int64), keys["category"][sw].astype(np.int64)],
                        vals[sw])
    order = np.lexsort((cols[0], -sums[:, 2])) if len(sums) else np.zeros(0, np.int64)
    order = order[:int(n)]
    return [{"sku": int(cols[0][i]), "category": int(cols[1][i]), "lines": int(sums[i, 0]),
             "qty": int(sums[i, 1]), "amount_fen": int(sums[i, 2])} for i in order]


def _liability_class(op_types: np.ndarray) -> dict[str, np.ndarray]:
    names = np.array([OP_NAMES.get(int(t), "").lower() for t in op_types.tolist()], dtype=object)
    fee = np.array(["fee" in n for n in names], bool)
    expired = np.array([("expire" in n or "forfeit" in n) for n in names], bool)
    deposit = np.array(["deposit" in n for n in names], bool)
    recharge = (op_types == OpType.RECHARGE) | deposit
    spend = np.isin(op_types, (OpType.SWIPE, OpType.SUPP_DEBIT, OpType.USE_COUNT))
    refund = op_types == OpType.REFUND
    return {"recharge": recharge, "spend": spend, "refund": refund, "fee": fee & ~recharge,
            "expired": expired & ~fee & ~recharge}


def _liability_terms(keys, vals, kind: str) -> np.ndarray:
    """n x 6 int64: recharged, spent, refunds, fees, expired, other (signed net)."""
    c = _liability_class(keys["op_type"].astype(np.int64))
    pin, pout = vals[:, _col(f"{kind}_in_fen")], vals[:, _col(f"{kind}_out_fen")]
    net = pin - pout
    spend_in = c["spend"] & ~c["refund"]
    recharged = np.where(c["recharge"], net, 0)
    spent = np.where(c["spend"], pout, 0)
    refunds = np.where(c["refund"], net, 0) + np.where(spend_in, pin, 0)
    fees = np.where(c["fee"], -net, 0)
    expired = np.where(c["expired"], -net, 0)
    known = c["recharge"] | c["spend"] | c["refund"] | c["fee"] | c["expired"]
    other = np.where(known, 0, net)
    return np.stack([recharged, spent, refunds, fees, expired, other], axis=1)


def liability_report(engine, date_from: str, date_to: str, *, by_store: bool = False,
                     stores=None) -> list[dict]:
    """Stored value owed to members, per day of [date_from, date_to) (and per store of
    issue with by_store): opening + recharged - spent + refunds - fees - expired + other
    = closing, for principal and bonus apart. Fields LIABILITY_FIELDS; issue_store 0
    when not by store. `other` is every other change (replacements move a balance from
    the old card to the new, admin adjustments)."""
    a, b = day_window(date_from, date_to)
    keys, vals = _rows(engine, _ru.SALES_DB, 0, b, stores, "issue_store")
    days = np.arange(a, b, dtype=np.int64)
    k_issue = keys["issue_store"].astype(np.int64) if by_store else np.zeros(len(keys), np.int64)
    issues = unique_ids(k_issue, np.int64)
    if not by_store:
        issues = np.zeros(1, np.int64)
    kday = keys["day"].astype(np.int64)
    rows: dict[tuple[int, int], dict] = {}
    per = {}
    for kind in ("principal", "bonus"):
        terms = _liability_terms(keys, vals, kind)
        flow = terms[:, 0] - terms[:, 1] + terms[:, 2] - terms[:, 3] - terms[:, 4] + terms[:, 5]
        per[kind] = (terms, flow)
    for s in issues.tolist():
        mine = k_issue == s
        for kind in ("principal", "bonus"):
            terms, flow = per[kind]
            opening = int(flow[mine & (kday < a)].sum())
            inwin = mine & (kday >= a)
            cols, sums = _group([kday[inwin]], terms[inwin])
            by_day = {int(d): sums[i] for i, d in enumerate(cols[0].tolist())} if cols else {}
            for d in days.tolist():
                t = by_day.get(d, np.zeros(6, np.int64))
                closing = opening + int(t[0] - t[1] + t[2] - t[3] - t[4] + t[5])
                row = rows.setdefault((d, s), {"day": yyyymmdd(d), "issue_store": s})
                for name, value in zip(LIABILITY_TERMS, (opening, *map(int, t), closing),
                                       strict=True):
                    row[f"{kind}_{name}_fen"] = value
                opening = closing
    out = [rows[k] for k in sorted(rows)]
    if len(out) > REPORT_ROWS_MAX:
        raise ReportError("TOO_MANY_ROWS", f"more than {REPORT_ROWS_MAX} rows")
    return [{f: r[f] for f in LIABILITY_FIELDS} for r in out]


def reconcile(engine) -> dict:
    """The liability as the rollups (and the journal tail) sum it, against the card
    table, to the fen: {principal_rollup_fen, principal_cards_fen, bonus_..., ok}."""
    keys, vals = _ru.snapshot(engine.store, _tz(engine), _ru.SALES_DB, 0, 2**32 - 1)
    cards = engine.cards_snapshot()
    out = {}
    for kind, field in (("principal", "principal_fen"), ("bonus", "bonus_fen")):
        out[f"{kind}_rollup_fen"] = int(vals[:, _col(f"{kind}_in_fen")].sum()
                                        - vals[:, _col(f"{kind}_out_fen")].sum())
        out[f"{kind}_cards_fen"] = int(cards[field].astype(np.int64).sum())
    out["ok"] = (out["principal_rollup_fen"] == out["principal_cards_fen"]
                 and out["bonus_rollup_fen"] == out["bonus_cards_fen"])
    return out


def settlement_report(engine, date_from: str, date_to: str, *, stores=None) -> list[dict]:
    """Stored value of cards issued at one store spent (and refunded) at another, per
    (issue_store, spend_store) pair: what the spending store owes back or is owed.
    stores restricts to pairs where either side is in it."""
    a, b = day_window(date_from, date_to)
    keys, vals = _rows(engine, _ru.SALES_DB, a, b, None)
    op = keys["op_type"]
    issue, spend = keys["issue_store"].astype(np.int64), keys["store"].astype(np.int64)
    take = np.isin(op, (OpType.SWIPE, OpType.SUPP_DEBIT, OpType.USE_COUNT, OpType.REFUND))
    take &= issue != spend
    if stores is not None:
        s = np.array(sorted(stores), np.int64)
        take &= np.isin(issue, s) | np.isin(spend, s)
    v = lambda name: vals[:, _col(name)]  # noqa: E731
    spent = np.isin(op, (OpType.SWIPE, OpType.SUPP_DEBIT, OpType.USE_COUNT))
    out = np.stack([np.where(op == OpType.SWIPE, v("n"), 0), v("principal_out_fen"),
                    v("bonus_out_fen"), v("principal_in_fen"), v("bonus_in_fen"),
                    np.where(spent | (op == OpType.REFUND),
                             v("principal_out_fen") + v("bonus_out_fen")
                             - v("principal_in_fen") - v("bonus_in_fen"), 0)], axis=1)
    cols, sums = _group([issue[take], spend[take]], out[take])
    return _finish(("issue_store", "spend_store"), cols, sums, SETTLEMENT_FIELDS[2:], day_cols=())


def _commission_hours(engine, tz: int, hour_from: int, hour_to: int,
                      store_id: int | None) -> list[dict]:
    """The commission rows of local hours [hour_from, hour_to) (hours since the epoch in
    the rollups' zone) from the rollups and the journal tail."""
    keys, vals = _ru.snapshot(engine.store, tz, _ru.SALES_DB, hour_from // 24,
                              -(-hour_to // 24))
    hour = keys["day"].astype(np.int64) * 24 + keys["hour"].astype(np.int64)
    keep = (hour >= hour_from) & (hour < hour_to)
    if store_id is not None:
        keep &= keys["store"].astype(np.int64) == int(store_id)
    return _commission_rows(keys[keep], vals[keep])


def commission_from_rollups(engine, date_from: str, date_to: str, *, stores=None) -> list[dict]:
    """The commission report (COMMISSION_FIELDS) over whole days, from the rollups."""
    a, b = day_window(date_from, date_to)
    keys, vals = _rows(engine, _ru.SALES_DB, a, b, stores)
    return _commission_rows(keys, vals)


def _commission_rows(keys: np.ndarray, vals: np.ndarray) -> list[dict]:
    op = keys["op_type"]
    sw, us, rf = op == OpType.SWIPE, op == OpType.USE_COUNT, op == OpType.REFUND
    v = lambda name: vals[:, _col(name)]  # noqa: E731
    out = np.stack([np.where(sw, v("n"), 0), np.where(us, v("n"), 0), np.where(rf, v("n"), 0),
                    np.where(sw, v("payable_fen") - v("coupon_fen"), 0)
                    - np.where(rf, v("amount_fen"), 0),
                    np.where(sw | us | rf, v("commission_fen"), 0)], axis=1)
    keep = sw | us | rf
    cols, sums = _group([keys["operator"][keep].astype(np.int64)], out[keep])
    return _finish(("operator_id",), cols, sums, COMMISSION_FIELDS[1:], day_cols=())


def coupon_report(engine, date_from: str, date_to: str, *, stores=None) -> list[dict]:
    """Per coupon template: issued, redeemed, restored (by refunds), what they took."""
    a, b = day_window(date_from, date_to)
    keys, vals = _rows(engine, _ru.COUPONS_DB, a, b, stores)
    op = keys["op_type"]
    out = np.stack([np.where(op == OpType.COUPON_ISSUE, vals[:, 0], 0),
                    np.where(op == OpType.COUPON_REDEEM, vals[:, 0], 0),
                    np.where(op == OpType.COUPON_RESTORE, vals[:, 0], 0),
                    np.where(op == OpType.COUPON_REDEEM, vals[:, 1], 0)
                    - np.where(op == OpType.COUPON_RESTORE, vals[:, 1], 0)], axis=1)
    cols, sums = _group([keys["template_id"].astype(np.int64)], out)
    return _finish(("template_id",), cols, sums, COUPON_FIELDS[1:], day_cols=())


# --- points: liability by lot year and the expiry forecast (the card table) ----------

POINTS_FIELDS = ("issue_store", "level", "lot_year", "cards", "points")
EXPIRY_FIELDS = ("issue_store", "level", "cards", "expiring_points", "points", "day")


def _issue_stores(engine, card_nos: np.ndarray) -> np.ndarray:
    """Each card's store of issue: rollup_cards, and the first records of the journal
    tail the tailer has not summed yet (0 for a card neither names)."""
    from core.records import RecordKind, Result
    store = engine.store
    with store.read() as txn:
        m = _ru.load_issue_map(store, txn)
        for block in store.journal_blocks(txn, _ru.covered_seq(store, txn)):
            first = block[(block["result"] == Result.OK) & (block["kind"] == RecordKind.KIND_CARD)
                          & (block["card_no"] != 0) & (block["prev_seq"] == 0)]
            if len(first):
                c = first["card_no"].astype(np.uint64)
                ones = np.ones(len(c), np.uint64)
                new = m.lookup_many(c, ones) < 0
                _, once = np.unique(c[new], return_index=True)
                idx = np.flatnonzero(new)[once]
                m.insert_many(c[idx], ones[idx], first["store_id"][idx].astype(np.int64))
    got = m.lookup_many(card_nos.astype(np.uint64), np.ones(len(card_nos), np.uint64))
    return np.where(got >= 0, got, 0).astype(np.int64)


def _live_cards(engine, stores):
    cards = engine.cards_snapshot().copy()
    cards = cards[cards["card_no"] != 0]
    issue = _issue_stores(engine, cards["card_no"])
    if stores is not None:
        keep = np.isin(issue, np.array(sorted(stores), np.int64))
        cards, issue = cards[keep], issue[keep]
    return cards, issue


def points_report(engine, *, stores=None) -> list[dict]:
    """Points owed to members now, per (store of issue, level, lot year): the card
    table's lots (lot_year, lot_year + 1, lot_year + 2) and, as lot_year 0, the points
    that never expire. cards counts the cards holding points in that lot. The sum of
    points over the rows is the card table's points. stores restricts to cards issued
    there."""
    from core.domain.points import LOTS
    cards, issue = _live_cards(engine, stores)
    level = cards["level"].astype(np.int64)
    base = cards["lot_year"].astype(np.int64)
    cols, pts = [], []
    for j, name in enumerate(LOTS):
        cols.append(np.where(base > 0, base + j, 0))
        pts.append(cards[name].astype(np.int64))
    cols.append(np.zeros(len(cards), np.int64))
    pts.append(cards["permanent_points"].astype(np.int64))
    year, points = np.concatenate(cols), np.concatenate(pts)
    keep = points != 0
    k = [np.tile(issue, len(cols))[keep], np.tile(level, len(cols))[keep], year[keep]]
    vals = np.stack([np.ones(int(keep.sum()), np.int64), points[keep]], axis=1)
    g, sums = _group(k, vals)
    return _finish(("issue_store", "level", "lot_year"), g, sums, POINTS_FIELDS[3:], day_cols=())


def expiry_forecast(engine, *, stores=None) -> list[dict]:
    """What the points expiry run at the next year end (00:00 on 1 January, chain
    time) will clear, per (store of issue, level): exactly what core.domain.points'
    run computes (its own _shift), on the card table as it is now. day is the last
    day the points are valid (31 December); points is what those cards hold in all."""
    from core.domain.points import _shift
    rules = engine.rules
    cards, issue = _live_cards(engine, stores)
    year = _fastpath.year_of(engine.clock(), rules.tz_offset_s)
    if rules.points_valid_years == 0:
        expired = np.zeros(len(cards), np.int64)
    else:
        _, expired = _shift(cards, year + 1 - rules.points_valid_years)
    vals = np.stack([(expired > 0).astype(np.int64), expired,
                     np.where(expired > 0, cards["points"].astype(np.int64), 0)], axis=1)
    g, sums = _group([issue, cards["level"].astype(np.int64)], vals)
    keep = sums[:, 0] > 0
    last = yyyymmdd(_ru.day_of(datetime.date(year, 12, 31)))
    rows = _finish(("issue_store", "level"), [c[keep] for c in g], sums[keep],
                   EXPIRY_FIELDS[2:5], day_cols=())
    for r in rows:
        r["day"] = last
    return rows


from core import _fastpath  # noqa: E402

# --- card statistics per month (computed from the journal, exact) --------------------

CARD_STATS_FIELDS = ("month", "issue_store", "issued", "cancelled", "renewed", "replaced",
                     "dormant", "lost", "in_circulation")
# A card counts as in circulation while it exists and is not CANCELLED (LOST, FROZEN and
# DORMANT cards still hold what members are owed).
_OUT_OF_CIRCULATION = -1   # the "status" of a card before its first record


def _card_blocks(engine):
    """The OK card records (kind CARD, card_no != 0) of the whole journal, one block at a
    time in seq order, in one zero-copy read transaction: (records, card_no as uint64,
    ones, first (a card's first record: prev_seq 0), each record's store of issue (the
    store of its card's first record; 0 for a card whose first record is not OK))."""
    store = engine.store
    issue = _fastpath.KeyMap()         # card_no -> store of its first record
    with _zero_copy_read(store) as txn:
        for block in store.journal_blocks(txn, 0):
            b = block[(block["result"] == Result.OK) & (block["kind"] == RecordKind.KIND_CARD)
                      & (block["card_no"] != 0)]
            if len(b) == 0:
                continue
            c = b["card_no"].astype(np.uint64)
            ones = np.ones(len(c), np.uint64)
            first = b["prev_seq"] == 0
            if first.any():
                issue.insert_many(c[first], ones[first], b["store_id"][first].astype(np.int64))
            st = issue.lookup_many(c, ones)
            yield b, c, ones, first, np.where(st >= 0, st, 0).astype(np.int64)


def _card_events(engine, until_day: int, tz: int):
    """Every OK card record of the journal with day < until_day, as per-record arrays:
    (day, issue_store, issued, cancelled, renewed, replaced, dormant, lost, circ_delta).

    One scan of the journal from seq 1 in seq order (_card_blocks). A record's status
    before is the after-image status of the card's previous record (the one its prev_seq
    names): the scan keeps each card's last status in a KeyMap, which holds exactly that
    record's status because records of a card are met in seq order."""
    from core.domain.cards import CardOp
    from core.records import CardStatus
    last = _fastpath.KeyMap()          # card_no -> status after its latest record
    parts = []
    for b, c, ones, first, issue_st in _card_blocks(engine):
        after = b["after"]["status"].astype(np.int64)
        # Status before: the previous record of the same card in this block, else the map.
        order = np.lexsort((np.arange(len(c)), c))
        cs = c[order]
        head = np.ones(len(cs), bool)
        head[1:] = cs[1:] != cs[:-1]
        before_s = np.empty(len(cs), np.int64)
        before_s[1:] = after[order][:-1]
        got = last.lookup_many(cs[head], ones[head])
        before_s[head] = np.where(got >= 0, got, _OUT_OF_CIRCULATION)
        before = np.empty(len(c), np.int64)
        before[order] = before_s
        before[first] = _OUT_OF_CIRCULATION
        tail = np.ones(len(cs), bool)
        tail[:-1] = cs[1:] != cs[:-1]
        last.insert_many(cs[tail], ones[tail], after[order][tail], overwrite=True)
        day = (b["time_s"].astype(np.int64) + tz) // 86_400
        keep = day < until_day
        if not keep.any():
            continue
        op = b["op_type"].astype(np.int64)
        newly = np.where(before != after, after, _OUT_OF_CIRCULATION)  # the status moved to
        in_before = (before != _OUT_OF_CIRCULATION) & (before != CardStatus.CANCELLED)
        in_after = after != CardStatus.CANCELLED
        replaced = (newly == CardStatus.CANCELLED) & (op == CardOp.REPLACE)
        cols = np.stack([day, issue_st,
                         first.astype(np.int64),
                         ((newly == CardStatus.CANCELLED) & ~replaced).astype(np.int64),
                         (op == CardOp.RENEW).astype(np.int64),
                         replaced.astype(np.int64),
                         (newly == CardStatus.DORMANT).astype(np.int64),
                         (newly == CardStatus.LOST).astype(np.int64),
                         in_after.astype(np.int64) - in_before.astype(np.int64)], axis=1)
        parts.append(cols[keep])
    return np.concatenate(parts) if parts else np.zeros((0, 9), np.int64)


def _month_of(day: int) -> int:
    d = _ru.date_of(day)
    return d.year * 100 + d.month


def card_stats_report(engine, date_from: str, date_to: str, *, by_store: bool = False,
                      stores=None) -> list[dict]:
    """Card statistics per calendar month of [date_from, date_to) (a month cut by the
    window counts the window's days only), and per store of issue with by_store:
    cards issued (a card's first record: a replacement's new card counts here too),
    cancelled (status to CANCELLED other than by REPLACE), renewed (RENEW records),
    replaced (the old card of a REPLACE), gone dormant (status to DORMANT), reported
    lost (status to LOST), and in circulation (cards that exist and are not CANCELLED)
    at the end of the month's last day in the window. month is YYYYMM. From the
    rollups (rollup_card_events: one row per day and store of issue, every day before
    the window for the opening circulation) plus the journal's tail: exact to the last
    commit. stores restricts to cards issued there. card_stats_scan is the same report
    by a scan of the whole journal."""
    a, b = day_window(date_from, date_to)
    keys, vals = _ru.snapshot(engine.store, _tz(engine), _ru.CARD_EVENTS_DB, 0, b)
    ev = np.column_stack([keys["day"].astype(np.int64), keys["issue_store"].astype(np.int64),
                          vals]) if len(keys) else np.zeros((0, 9), np.int64)
    return _card_stats_rows(ev, a, b, by_store, stores)


def card_stats_scan(engine, date_from: str, date_to: str, *, by_store: bool = False,
                    stores=None) -> list[dict]:
    """card_stats_report computed by scanning the journal from seq 1 (cost linear in
    the journal): the check of the rollups and the benchmark's baseline."""
    a, b = day_window(date_from, date_to)
    return _card_stats_rows(_card_events(engine, b, _tz(engine)), a, b, by_store, stores)


def _card_stats_rows(ev: np.ndarray, a: int, b: int, by_store: bool, stores) -> list[dict]:
    """The report's rows of card events ev (n x 9: day, issue_store, the seven
    CARD_EVENTS_COLS; per record or summed per day, the same) for days [a, b)."""
    if stores is not None:
        ev = ev[np.isin(ev[:, 1], np.array(sorted(stores), np.int64))]
    if not by_store:
        ev = ev.copy()
        ev[:, 1] = 0
    before = ev[ev[:, 0] < a]
    ev = ev[ev[:, 0] >= a]
    circ: dict[int, int] = {}
    for s, d in zip(before[:, 1].tolist(), before[:, 8].tolist(), strict=True):
        circ[s] = circ.get(s, 0) + d
    months = sorted({_month_of(d) for d in range(a, b)})
    month = np.array([_month_of(int(d)) for d in ev[:, 0].tolist()], np.int64)
    cols, sums = _group([month, ev[:, 1]], ev[:, 2:])
    got = {(int(m), int(s)): sums[i]
           for i, (m, s) in enumerate(zip(cols[0].tolist(), cols[1].tolist(), strict=True))}
    issues = sorted(set(circ) | {s for _, s in got} | ({0} if not by_store else set()))
    rows = []
    for s in issues:
        n = circ.get(s, 0)
        for m in months:
            t = got.get((m, s), np.zeros(7, np.int64))
            n += int(t[6])
            rows.append({"month": m, "issue_store": s, **dict(zip(
                CARD_STATS_FIELDS[2:8], (int(x) for x in t[:6]), strict=True)),
                "in_circulation": n})
    rows.sort(key=lambda r: (r["month"], r["issue_store"]))
    if len(rows) > REPORT_ROWS_MAX:
        raise ReportError("TOO_MANY_ROWS", f"more than {REPORT_ROWS_MAX} rows")
    return rows


# --- member activity over a window (from the behaviour rollups, exact) ----------------

MEMBER_ACTIVITY_FIELDS = ("issue_store", "members", "new_members", "active", "active_bp",
                          "visits", "first_visit", "repeat", "first_visit_bp", "repeat_bp")
VISIT_FREQUENCY_FIELDS = ("issue_store", "visit_count", "members", "visits")
# What counts as a visit: one place, the tailer's (core.engine.behaviour).
VISIT_OPS = _behaviour.VISIT_OPS
_NEVER = np.iinfo(np.int64).max


def _bp(part: int, whole: int) -> int:
    """part / whole in basis points, rounded down (0 when whole is 0)."""
    return part * 10_000 // whole if whole else 0


def _member_days(engine, a: int, b: int, tz: int) -> np.ndarray:
    """Per (member, issue_store): (member key, issue_store, first day seen, first visit
    day, visits in [a, b)) over the journal's records with day < b. The member key is
    the record's after-image member_id, or -card_no for a card with no member."""
    parts = []
    for rec, c, _ones, _first, issue_st in _card_blocks(engine):
        day = (rec["time_s"].astype(np.int64) + tz) // 86_400
        keep = day < b
        if not keep.any():
            continue
        mid = rec["after"]["member_id"].astype(np.int64)
        key = np.where(mid != 0, mid, -c.astype(np.int64))
        visit = np.isin(rec["op_type"], VISIT_OPS)
        vday = np.where(visit, day, _NEVER)
        inwin = (visit & (day >= a)).astype(np.int64)
        parts.append(np.stack([key, issue_st, day, vday, inwin], axis=1)[keep])
    if not parts:
        return np.zeros((0, 5), np.int64)
    rows = np.concatenate(parts)
    order = np.lexsort((rows[:, 1], rows[:, 0]))
    rows = rows[order]
    change = np.ones(len(rows), bool)
    change[1:] = (rows[1:, 0] != rows[:-1, 0]) | (rows[1:, 1] != rows[:-1, 1])
    starts = np.flatnonzero(change)
    return np.stack([rows[starts, 0], rows[starts, 1],
                     np.minimum.reduceat(rows[:, 2], starts),
                     np.minimum.reduceat(rows[:, 3], starts),
                     np.add.reduceat(rows[:, 4], starts)], axis=1)


def _members_in_scope(engine, date_from, date_to, by_store, stores, scan=False):
    a, b = day_window(date_from, date_to)
    if scan:
        m = _member_days(engine, a, b, _tz(engine))
    else:
        m = _ru.member_activity(engine.store, _tz(engine), a, b)
    if stores is not None:
        m = m[np.isin(m[:, 1], np.array(sorted(stores), np.int64))]
    if not by_store:
        # A member with cards of several stores is one member of the chain: fold the
        # stores (first days the earliest, visits summed).
        m = m.copy()
        m[:, 1] = 0
        if len(m):
            order = np.lexsort((m[:, 1], m[:, 0]))
            m = m[order]
            change = np.ones(len(m), bool)
            change[1:] = m[1:, 0] != m[:-1, 0]
            s = np.flatnonzero(change)
            m = np.stack([m[s, 0], m[s, 1], np.minimum.reduceat(m[:, 2], s),
                          np.minimum.reduceat(m[:, 3], s), np.add.reduceat(m[:, 4], s)], axis=1)
    return a, m


def member_activity_report(engine, date_from: str, date_to: str, *, by_store: bool = False,
                           stores=None, scan: bool = False) -> list[dict]:
    """Member activity over [date_from, date_to), in total or per store of issue of the
    member's cards (by_store; a member holding cards of two stores counts in both):
    members = members known by the window's end (a card record naming them before
    date_to); new_members = those first named inside the window; active = members with
    a visit (a SWIPE or USE_COUNT, OK) in the window, visits = those visits;
    first_visit = active members whose first visit ever is in the window, repeat =
    active members who visited before it (first_visit + repeat = active). The _bp
    columns are shares in basis points rounded down: active of members, first_visit and
    repeat of active. A member is the card's member_id, or the card itself when it has
    none. Exact to the last commit: from the tailer's activity tables (beh_act_first,
    beh_act_days) and the journal's tail; with scan, from a scan of the whole journal
    (member_activity_scan, the check). stores restricts to cards issued there."""
    a, m = _members_in_scope(engine, date_from, date_to, by_store, stores, scan)
    groups = sorted(set(m[:, 1].tolist())) if by_store else [0]
    rows = []
    for s in groups:
        g = m[m[:, 1] == s]
        members = len(g)
        new = int(np.count_nonzero(g[:, 2] >= a))
        act = g[g[:, 4] > 0]
        first = int(np.count_nonzero(act[:, 3] >= a))
        active = len(act)
        rows.append({"issue_store": s, "members": members, "new_members": new,
                     "active": active, "active_bp": _bp(active, members),
                     "visits": int(act[:, 4].sum()), "first_visit": first,
                     "repeat": active - first, "first_visit_bp": _bp(first, active),
                     "repeat_bp": _bp(active - first, active)})
    if len(rows) > REPORT_ROWS_MAX:
        raise ReportError("TOO_MANY_ROWS", f"more than {REPORT_ROWS_MAX} rows")
    return rows


def visit_frequency_report(engine, date_from: str, date_to: str, *, by_store: bool = False,
                           stores=None, scan: bool = False) -> list[dict]:
    """The visits-per-member distribution over [date_from, date_to): one row per number
    of visits a member made in the window (visit_count 1, 2, ...; members without a
    visit are the members - active of member_activity_report), with how many members
    made exactly that many and their visits in all. Same members, scope and visits as
    member_activity_report (scan likewise)."""
    _a, m = _members_in_scope(engine, date_from, date_to, by_store, stores, scan)
    act = m[m[:, 4] > 0]
    cols, sums = _group([act[:, 1], act[:, 4]],
                        np.stack([np.ones(len(act), np.int64), act[:, 4]], axis=1))
    return _finish(VISIT_FREQUENCY_FIELDS[:2], cols, sums, VISIT_FREQUENCY_FIELDS[2:],
                   day_cols=())


def member_activity_scan(engine, date_from: str, date_to: str, **kw) -> list[dict]:
    """member_activity_report by a scan of the whole journal (the check of the rollup)."""
    return member_activity_report(engine, date_from, date_to, scan=True, **kw)


def visit_frequency_scan(engine, date_from: str, date_to: str, **kw) -> list[dict]:
    """visit_frequency_report by a scan of the whole journal."""
    return visit_frequency_report(engine, date_from, date_to, scan=True, **kw)


# --- settlement by recharge store: principal as FIFO lots (from the journal, exact) ---

RECHARGE_SETTLEMENT_FIELDS = ("recharge_store", "spend_store", "count", "spent_fen",
                              "refunded_fen", "other_fen", "net_fen")


# The rule, one place: core.engine.rollup_lots (the tailer keeps it as a rollup).
PrincipalLots = _lots.PrincipalLots


def recharge_settlement_report(engine, date_from: str, date_to: str, *, stores=None
                               ) -> list[dict]:
    """Principal recharged at one store and spent at another (跨店结算), per
    (recharge_store, spend_store) pair, over the records of [date_from, date_to), by
    the FIFO-lot rule of PrincipalLots: spent_fen what the pair's spends took from the
    recharge store's lots, refunded_fen what refunds put back on them, other_fen fees,
    expiries and adjustments taken from them at that store, net_fen = spent - refunded;
    count the spend records. Pairs of one store (what stayed home) are rows too. Bonus
    is not settled (it was never paid for). stores restricts to pairs where either side
    is in it. From the rollups (rollup_settlement, kept by the tailer replaying the
    lots) plus the journal's tail replayed over the stored lots: exact to the last
    commit. recharge_settlement_scan is the same report by a replay of the whole
    journal."""
    a, b = day_window(date_from, date_to)
    keys, vals = _ru.snapshot(engine.store, _tz(engine), _lots.SETTLEMENT_DB, a, b)
    cols, sums = _group([keys["recharge_store"].astype(np.int64),
                         keys["spend_store"].astype(np.int64)], vals)
    pairs = {(int(rs), int(ss)): [int(x) for x in v]
             for rs, ss, v in zip(cols[0].tolist(), cols[1].tolist(), sums, strict=True)}
    return _settlement_rows(pairs, stores)


def recharge_settlement_scan(engine, date_from: str, date_to: str, *, stores=None
                             ) -> list[dict]:
    """recharge_settlement_report by replaying the whole journal (the check of the
    rollups and the benchmark's baseline)."""
    a, b = day_window(date_from, date_to)
    tz = _tz(engine)
    sums: dict[tuple[int, int], list[int]] = {}
    counted: set[tuple[int, int, int]] = set()
    idx = {"spent": 1, "refunded": 2, "other": 3}

    def on_piece(r, lot_store: int, fen: int, kind: str) -> None:
        day = (int(r["time_s"]) + tz) // 86_400
        if not a <= day < b:
            return
        pair = (lot_store, int(r["store_id"]))
        row = sums.setdefault(pair, [0, 0, 0, 0])
        row[idx[kind]] += fen
        if kind == "spent" and (int(r["seq"]), *pair) not in counted:
            counted.add((int(r["seq"]), *pair))
            row[0] += 1

    lots = PrincipalLots(on_piece)
    for rec, *_ in _card_blocks(engine):
        moving = rec[(rec["principal_delta_fen"] != 0) | (rec["op_type"] == OpType.REFUND)]
        for r in moving:
            lots.apply(r)
    return _settlement_rows(sums, stores)


def _settlement_rows(sums: dict[tuple[int, int], list[int]], stores) -> list[dict]:
    keep = None if stores is None else set(stores)
    rows = []
    for (rs, ss), (n, spent, refunded, other) in sorted(sums.items()):
        if keep is not None and rs not in keep and ss not in keep:
            continue
        rows.append({"recharge_store": rs, "spend_store": ss, "count": n, "spent_fen": spent,
                     "refunded_fen": refunded, "other_fen": other,
                     "net_fen": spent - refunded})
    if len(rows) > REPORT_ROWS_MAX:
        raise ReportError("TOO_MANY_ROWS", f"more than {REPORT_ROWS_MAX} rows")
    return rows
