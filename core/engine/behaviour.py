"""Behaviour per member and per card, summed from the journal by the rollup tailer.

The rollup tailer (core/engine/rollups.py) calls `Behaviour.block` for every journal
block it sums and puts `Behaviour.puts` in the SAME write transaction that moves
`rollup_meta.seq`: the behaviour tables are exactly those of the seq the rollups cover
(crash-consistent), they are dropped and summed again by `Rollups.rebuild`, and they are
part of `rollups.digest`. docs/internals/reports.md gives the definitions and the why,
docs/internals/storage.md the byte layout.

Tables (every number an int64; keys big-endian so LMDB order is numeric order):

    beh_members  u64 block of member ids -> rows TOTAL_ROW (id, TOTAL_COLS), sorted
                 by id (lifetime totals; blocks of core.engine.card_blocks)
    beh_cards    u64 block of card nos   -> the same, per card
    beh_days     (u32 day, u32 member id >> DAY_BUCKET_SHIFT) -> rows (u64 member,
                 DAY_COLS), sorted by member
    beh_stores   (u64 member, u32 store)    -> STORE_COLS
    beh_cats     (u64 member, u16 category) -> CAT_COLS
    beh_act_first u64 bucket of the member key -> rows ACT_FIRST_ROW, sorted by (key,
                 store of issue)                           (member activity)
    beh_act_days (u32 day, u64 bucket of the member key) -> rows ACT_ROW, sorted by
                 (key, store of issue)

Member activity (core.domain.reports.member_activity_report) counts per (member key,
store of issue of the card): the member key is the record's after-image member_id, or
-card_no for a card without one (every OK card record, as the sales rollups take them);
beh_act_first holds the first day such a record was seen and the first day of a visit
(day + 1 each, 0: none yet), beh_act_days the visits per day. The bucket of a key is its
64 bits as unsigned >> ACT_BUCKET_SHIFT.

What counts (only records the engine applied, result OK; a member is the after-image's
member_id, cards without one count only per card):
- a visit: a SWIPE or USE_COUNT card record (a supplementary card's SUPP_DEBIT is the
  primary's side of a swipe already counted on the supplementary card: not counted);
- spend (fen): a SWIPE's payable_fen - coupon_fen (what the member paid), less every
  REFUND's amount_fen, on the day of that record; swipes: SWIPE records;
- recharges: RECHARGE records and their principal_delta_fen;
- points earned: a SWIPE's points_delta + offset_points (its points before the offset),
  and the positive points_delta of any other record but a REFUND; points redeemed: a
  SWIPE's offset_points and the points a GIFT_REDEEM took (-points_delta);
- coupons redeemed: COUPON_REDEEM records less COUPON_RESTORE records, filed under the
  card of the record and the member of the card record they belong to (ref_seq);
- day: (time_s + tz_offset_s) // 86400, the chain's day (as the rollups).
"""

from __future__ import annotations

import numpy as np

from core.engine import _tally, card_blocks
from core.engine.storage import group_runs, stable_argsort
from core.records import OpType, PointsOp, RecordKind, Result

MEMBERS_DB = "beh_members"
CARDS_DB = "beh_cards"
DAYS_DB = "beh_days"
STORES_DB = "beh_stores"
CATS_DB = "beh_cats"
ACT_FIRST_DB = "beh_act_first"
ACT_DAYS_DB = "beh_act_days"
BEHAVIOUR_DBS = (MEMBERS_DB, CARDS_DB, DAYS_DB, STORES_DB, CATS_DB, ACT_FIRST_DB, ACT_DAYS_DB)
# A visit: a member came and was served (a supplementary card's swipe is its own SWIPE
# record; the SUPP_DEBIT on its primary is not a second visit).
VISIT_OPS = (OpType.SWIPE, OpType.USE_COUNT)
ACT_KEY = np.dtype([("key", ">i8"), ("issue_store", ">u4")])
ACT_FIRST_ROW = np.dtype([("key", "<i8"), ("issue_store", "<u4"), ("first_seen", "<i8"),
                          ("first_visit", "<i8")])
ACT_ROW = np.dtype([("key", "<i8"), ("issue_store", "<u4"), ("visits", "<i8")])
# Activity rows are kept in blocks of 65,536 member keys (as beh_days): a flush rewrites
# the blocks it moves, a report reads a few values, not one per member.
ACT_BUCKET_SHIFT = 16

# first_day / last_day are day + 1 (0: no visit yet); the rest are sums.
TOTAL_COLS = ("first_day", "last_day", "visits", "swipes", "spend_fen", "refunds",
              "refund_fen", "recharges", "recharge_fen", "points_earned",
              "points_redeemed", "coupons_redeemed")
DAY_COLS = ("visits", "swipes", "spend_fen")
STORE_COLS = ("visits", "spend_fen")
CAT_COLS = ("swipes", "spend_fen")
TOTAL = np.dtype([(c, "<i8") for c in TOTAL_COLS])
# A row of beh_members / beh_cards, stored in blocks of ids (core.engine.card_blocks).
TOTAL_ROW = np.dtype([("id", "<u8"), ("v", "<i8", (len(TOTAL_COLS),))])
DAY_ROW = np.dtype([("member", "<u8"), ("v", "<i8", (len(DAY_COLS),))])
STORE_KEY = np.dtype([("member", ">u8"), ("store", ">u4")])
CAT_KEY = np.dtype([("member", ">u8"), ("category", ">u2")])
_NT = len(TOTAL_COLS)
# A day's rows are kept in blocks of 65,536 member ids, so that a flush rewrites the
# blocks of the members it touched, not the whole day (32 MB at 1,000,000 visits a day).
DAY_BUCKET_SHIFT = 16
_MINMAX = 2          # the first two total columns merge by min / max, the others add

_SWIPE, _USE, _REFUND = int(OpType.SWIPE), int(OpType.USE_COUNT), int(OpType.REFUND)
_RECHARGE = int(OpType.RECHARGE)
_REDEEM, _RESTORE = int(OpType.COUPON_REDEEM), int(OpType.COUPON_RESTORE)
_GIFT = int(PointsOp.GIFT_REDEEM)
# The record codes _tally.behaviour_block reads (its docstring gives the order).
_CODES = np.array([Result.OK, RecordKind.KIND_CARD, _SWIPE, _USE, _REFUND, _RECHARGE, _GIFT],
                  np.int64)


# How each total column merges (_tally.Sums): first_day the least set day, last_day the
# greatest, the rest summed.
_TOTAL_OPS = (_tally.MIN_POSITIVE, _tally.MAX) + (_tally.SUM,) * (_NT - _MINMAX)


class Behaviour:
    """Rows of the journal blocks a flush reads, then the puts that merge them into the
    tables (read in the tailer's read transaction: the tailer is their only writer)."""

    def __init__(self) -> None:
        # The flush's rows, merged as they come (_tally.Sums; keys of two words). The
        # tables are kept from flush to flush, emptied by clear (their room is what the
        # largest flush needed, which it held anyway).
        self._sums = {
            MEMBERS_DB: _tally.Sums(_TOTAL_OPS), CARDS_DB: _tally.Sums(_TOTAL_OPS),
            DAYS_DB: _tally.Sums((_tally.SUM,) * len(DAY_COLS)),      # (day, member)
            STORES_DB: _tally.Sums((_tally.SUM,) * len(STORE_COLS)),  # (member, store)
            CATS_DB: _tally.Sums((_tally.SUM,) * len(CAT_COLS)),      # (member, category)
        }

    def clear(self) -> None:
        for sums in self._sums.values():
            sums.clear()

    def block(self, store, txn, block: np.ndarray, tz: int) -> None:
        """Add one journal block's rows: its card records in one pass in C
        (_tally.behaviour_block), its coupon redemptions and restores here."""
        s = self._sums
        _tally.behaviour_block(np.ascontiguousarray(block), int(tz), _CODES, s[CARDS_DB],
                               s[MEMBERS_DB], s[DAYS_DB], s[STORES_DB], s[CATS_DB])
        op = block["op_type"]
        ci = np.flatnonzero((block["result"] == Result.OK)
                            & (block["kind"] == RecordKind.KIND_COUPON)
                            & ((op == _REDEEM) | (op == _RESTORE)))
        if len(ci) == 0:
            return
        # A coupon record counts only coupons_redeemed, under its card and the member of
        # the card record it belongs to.
        vals = np.zeros((len(ci), _NT), np.int64)
        vals[:, 11] = np.where(op[ci] == _REDEEM, 1, -1)
        member = self._coupon_members(store, txn, block, block["ref_seq"][ci])
        s[CARDS_DB].add(np.ascontiguousarray(block["card_no"][ci], np.uint64),
                        np.zeros(len(ci), np.uint64), vals)
        has = np.flatnonzero(member != 0)
        if len(has):
            s[MEMBERS_DB].add(np.ascontiguousarray(member[has]), np.zeros(len(has), np.uint64),
                              np.ascontiguousarray(vals[has]))

    @staticmethod
    def _coupon_members(store, txn, block: np.ndarray, refs: np.ndarray) -> np.ndarray:
        """The member of the card record each coupon record belongs to (its ref_seq):
        in this block when it is there, else read from the journal."""
        first = int(block[0]["seq"])
        out = np.zeros(len(refs), np.uint64)
        idx = refs.astype(np.int64) - first
        inb = (idx >= 0) & (idx < len(block))
        inb[inb] = block["kind"][idx[inb]] == RecordKind.KIND_CARD
        out[inb] = block["after"]["member_id"][idx[inb]]
        for j in np.flatnonzero(~inb).tolist():
            rec = store.journal_record(txn, int(refs[j])) if int(refs[j]) else None
            if rec is not None and int(rec["kind"]) == RecordKind.KIND_CARD:
                out[j] = rec["after"]["member_id"]
        return out

    # --- the merge ---------------------------------------------------------------------

    def puts(self, store, txn) -> dict[str, list[tuple[bytes, bytes]]]:
        """The (key, value) pairs that merge this flush's rows into the tables, read
        from txn; clears the rows."""
        out: dict[str, list[tuple[bytes, bytes]]] = {}
        for table in (MEMBERS_DB, CARDS_DB):
            sums = self._sums[table]
            if not len(sums):
                continue
            # The blocks of ids the rows fall in (card_blocks), read once and rewritten:
            # the stored rows merged with the flush's in place, in one walk in C.
            ids, order = sums.sorted_ids()
            old = card_blocks.read_blocks(txn, store.db[table], card_blocks.blocks_of(ids),
                                          TOTAL_ROW)
            at = sums.merge_into(old, order)
            new = np.flatnonzero(at < 0)
            if len(new) == 0:       # every id stored (the steady state): old is the blocks
                out[table] = card_blocks.puts(old, old["id"], old, one_per_id=True)
                continue
            _, vals = sums.rows()
            rows = np.zeros(len(ids), TOTAL_ROW)
            has = np.flatnonzero(at >= 0)
            rows[has] = old[at[has]]
            rows["id"][new] = ids[new]
            rows["v"][new] = vals[order[new]]
            out[table] = card_blocks.puts(old, ids, rows, one_per_id=True)
        if len(self._sums[DAYS_DB]):
            k, v = self._sums[DAYS_DB].rows()
            d, m = k[:, 0].astype(np.int64), k[:, 1]
            pairs = []
            bucket = (m >> np.uint64(DAY_BUCKET_SHIFT)).astype(np.int64)
            # The (day, bucket) blocks: one sort of the rows by them, then a run each.
            order, starts = group_runs(d, bucket)
            d, bucket, m, v = d[order], bucket[order], m[order], v[order]
            for a, b in zip(starts.tolist(), [*starts[1:].tolist(), len(d)], strict=True):
                dm, dv = m[a:b], v[a:b]
                key = int(d[a]).to_bytes(4, "big") + int(bucket[a]).to_bytes(4, "big")
                raw = txn.get(key, db=store.db[DAYS_DB])
                if raw is not None:
                    rows = np.frombuffer(bytes(raw), DAY_ROW)
                    dm = np.concatenate((rows["member"], dm))
                    dv = np.concatenate((rows["v"].astype(np.int64), dv))
                # A member's rows summed: by a radix sort of the member ids (as uint64),
                # not np.unique (numpy 2's is a hash, many times slower than a sort on
                # uint64 ids) and np.add.at.
                o = stable_argsort(dm)
                dm = dm[o]
                first = np.flatnonzero(np.concatenate(([True], dm[1:] != dm[:-1])))
                rows = np.zeros(len(first), DAY_ROW)
                rows["member"], rows["v"] = dm[first], np.add.reduceat(dv[o], first, axis=0)
                pairs.append((key, rows.tobytes()))
            out[DAYS_DB] = pairs
        for table, dtype, field in ((STORES_DB, STORE_KEY, "store"), (CATS_DB, CAT_KEY, "category")):
            if not len(self._sums[table]):
                continue
            k, vals = self._sums[table].rows()
            order = np.lexsort((k[:, 1], k[:, 0]))        # LMDB's order of the keys
            keys = np.zeros(len(k), dtype)
            keys["member"], keys[field] = k[order, 0], k[order, 1]
            vals = vals[order]
            kb = np.ascontiguousarray(keys).view(np.uint8).reshape(len(keys), -1)
            bkeys = [r.tobytes() for r in kb]
            old = dict(txn.cursor(db=store.db[table]).getmulti(bkeys))
            ncol = vals.shape[1]
            if old:
                for j, k in enumerate(bkeys):
                    o = old.get(k)
                    if o is not None:
                        vals[j] += np.frombuffer(bytes(o), "<i8")
            body = vals.astype("<i8").tobytes()
            w = ncol * 8
            out[table] = [(k, body[j * w:(j + 1) * w]) for j, k in enumerate(bkeys)]
        self.clear()
        return out


# --- member activity ------------------------------------------------------------------

def _first_rows(key, issue, seen, visit) -> np.ndarray:
    """ACT_FIRST_ROW rows, one per (key, issue store) sorted by them, the days (+ 1, 0:
    none) merged: the earliest of the set ones."""
    order, starts = group_runs(key, issue)
    big = np.iinfo(np.int64).max
    rows = np.zeros(len(starts), ACT_FIRST_ROW)
    at = order[starts]
    rows["key"], rows["issue_store"] = key[at], issue[at]
    for name, col in (("first_seen", seen), ("first_visit", visit)):
        m = np.minimum.reduceat(np.where(col > 0, col, big)[order], starts)
        rows[name] = np.where(m == big, 0, m)
    return rows


def _act_keys(key: np.ndarray, issue: np.ndarray) -> np.ndarray:
    k = np.zeros(len(key), ACT_KEY)
    k["key"], k["issue_store"] = key, issue
    return k


def _bucket(key: np.ndarray) -> np.ndarray:
    return key.astype(np.int64).view(np.uint64) >> np.uint64(ACT_BUCKET_SHIFT)


def _moves_nothing(old: np.ndarray, key, issue, seen, visit) -> bool:
    """Whether merging pairs (key, issue store; sorted, distinct) and their days into a
    beh_act_first block's rows old leaves them as they are: every pair stored, under a
    key stored once, and no day set earlier than the stored one (the steady state: known
    members coming back). Decided without sorting the block."""
    if len(old) == 0:
        return False
    keys = old["key"]
    lo = np.searchsorted(keys, key, "left")
    if not (np.searchsorted(keys, key, "right") - lo == 1).all():
        return False                # a new key, or one with several stores: merge
    if not (old["issue_store"][lo] == issue).all():
        return False
    s0, v0 = old["first_seen"][lo], old["first_visit"][lo]
    return bool(((seen == 0) | ((s0 > 0) & (s0 <= seen))).all()
                and ((visit == 0) | ((v0 > 0) & (v0 <= visit))).all())


def _runs(*cols: np.ndarray):
    """(indices, the values of cols there) of each distinct row of cols (1-D integer
    arrays), in order of first appearance. Rows sorted by their key (activity_of's
    order: the blocks of a key are contiguous) are cut into runs without a sort; other
    rows are grouped by a stable sort first."""
    n = len(cols[0])
    change = np.zeros(n, bool)
    change[0] = True
    for c in cols:
        change[1:] |= c[1:] != c[:-1]
    starts = np.flatnonzero(change)
    heads = [c[starts].tolist() for c in cols]
    if len(set(zip(*heads, strict=True))) != len(starts):      # a row in two runs
        order, starts = group_runs(*(c.astype(np.int64) for c in cols))
        heads = [c[order[starts]].tolist() for c in cols]
    else:
        order = None
    ends = [*starts[1:].tolist(), n]
    for j, (a, b) in enumerate(zip(starts.tolist(), ends, strict=True)):
        at = slice(a, b) if order is None else order[a:b]
        yield at, tuple(h[j] for h in heads)


def activity_puts(store, txn, stretch) -> dict[str, list[tuple[bytes, bytes]]]:
    """The puts that merge a stretch's member activity (rollups.activity_of) into
    beh_act_first (only the pairs whose days are new or earlier) and beh_act_days (the
    (day, bucket) blocks it touches, rewritten whole), read from txn."""
    (fk, fi, fs, fv), (dd, dk, di, dn) = stretch
    out: dict[str, list[tuple[bytes, bytes]]] = {}
    if len(fk):
        bk = _bucket(fk)
        pairs = []
        for at, (b,) in _runs(bk):
            bkey = int(b).to_bytes(8, "big")
            raw = txn.get(bkey, db=store.db[ACT_FIRST_DB])
            old = np.frombuffer(bytes(raw), ACT_FIRST_ROW) if raw is not None \
                else np.zeros(0, ACT_FIRST_ROW)
            if _moves_nothing(old, fk[at], fi[at], fs[at], fv[at]):
                continue            # every pair stored, no day earlier: the merge is old
            rows = _first_rows(
                np.concatenate((old["key"].astype(np.int64), fk[at])),
                np.concatenate((old["issue_store"].astype(np.int64), fi[at])),
                np.concatenate((old["first_seen"].astype(np.int64), fs[at])),
                np.concatenate((old["first_visit"].astype(np.int64), fv[at])))
            body = rows.tobytes()
            if raw is None or body != bytes(raw):      # a block nothing moved is not put
                pairs.append((bkey, body))
        out[ACT_FIRST_DB] = pairs
    if len(dd):
        bk = _bucket(dk)
        pairs = []
        for at, (day, b) in _runs(dd, bk):
            bkey = int(day).to_bytes(4, "big") + int(b).to_bytes(8, "big")
            k, i, n = dk[at], di[at], dn[at]
            raw = txn.get(bkey, db=store.db[ACT_DAYS_DB])
            if raw is not None:
                rows = np.frombuffer(bytes(raw), ACT_ROW)
                k = np.concatenate((rows["key"].astype(np.int64), k))
                i = np.concatenate((rows["issue_store"].astype(np.int64), i))
                n = np.concatenate((rows["visits"].astype(np.int64), n))
            order, starts = group_runs(k, i)
            rows = np.zeros(len(starts), ACT_ROW)
            rows["key"], rows["issue_store"] = k[order][starts], i[order][starts]
            rows["visits"] = np.add.reduceat(n[order], starts)
            pairs.append((bkey, rows.tobytes()))
        out[ACT_DAYS_DB] = pairs
    return out


def _day_rows(txn, db, row, day_from: int, day_to: int) -> tuple[np.ndarray, list]:
    """The rows (dtype row) of a table keyed by a 4-byte big-endian day first, of days
    [day_from, day_to): (each row's day, the rows of each key read)."""
    cur = txn.cursor(db=db)
    days, rows = [], []
    if cur.set_range(max(0, int(day_from)).to_bytes(4, "big")):
        for k, v in cur:
            day = int.from_bytes(bytes(k)[:4], "big")
            if day >= day_to:
                break
            r = np.frombuffer(bytes(v), row)
            rows.append(r)
            days.append(np.full(len(r), day, np.int64))
    return (np.concatenate(days) if days else np.zeros(0, np.int64)), rows


def read_activity(store, txn, day_from: int, day_to: int):
    """(first: key, issue store, first_seen, first_visit as stored, every pair),
    (visits: day, key, issue store, visits of days [day_from, day_to))."""
    cur = txn.cursor(db=store.db[ACT_FIRST_DB])
    f = np.frombuffer(b"".join(bytes(v) for v in cur.iternext(keys=False, values=True)),
                      ACT_FIRST_ROW)
    first = (f["key"].astype(np.int64), f["issue_store"].astype(np.int64),
             f["first_seen"].astype(np.int64), f["first_visit"].astype(np.int64))
    d, rows = _day_rows(txn, store.db[ACT_DAYS_DB], ACT_ROW, day_from, day_to)
    r = np.concatenate(rows) if rows else np.zeros(0, ACT_ROW)
    return first, (d, r["key"].astype(np.int64), r["issue_store"].astype(np.int64),
                   r["visits"].astype(np.int64))


def activity_matrix(first, visits, day_from: int, day_to: int) -> np.ndarray:
    """Per (member key, issue store) known before day_to: (key, issue store, first day
    seen, first visit day (int64 max: none before day_to), visits in [day_from, day_to)),
    sorted by (key, issue store). first and visits as read_activity gives them (the
    tail of the journal merged in: first rows may repeat a pair, visit rows too)."""
    fk, fi, fs, fv = first
    order, starts = group_runs(fk, fi)
    big = np.iinfo(np.int64).max
    if len(starts):
        fs_ = np.where(fs[order] > 0, fs[order], big)
        fv_ = np.where(fv[order] > 0, fv[order], big)
        seen = np.minimum.reduceat(fs_, starts)
        fvis = np.minimum.reduceat(fv_, starts)
        k, i = fk[order][starts], fi[order][starts]
    else:
        k = i = seen = fvis = np.zeros(0, np.int64)
    keep = (seen != big) & (seen - 1 < day_to)
    k, i, seen, fvis = k[keep], i[keep], seen[keep] - 1, fvis[keep]
    fvis = np.where((fvis != big) & (fvis - 1 < day_to), fvis - 1, big)
    vd, vk, vi, vn = visits
    win = (vd >= day_from) & (vd < day_to)
    n = np.zeros(len(k), np.int64)
    if win.any():
        o, st = group_runs(vk[win], vi[win])
        sk, si = vk[win][o][st], vi[win][o][st]
        sn = np.add.reduceat(vn[win][o], st)
        # Each visit pair's row (a visit is a record: its pair has a first row).
        both = np.concatenate((_act_keys(k, i), _act_keys(sk, si))).view("V12")
        _, inv = np.unique(both, return_inverse=True)
        row = np.full(len(both), -1, np.int64)
        row[inv[:len(k)]] = np.arange(len(k))
        pos = row[inv[len(k):]]
        if (pos < 0).any():
            raise RuntimeError("member activity: a visit without its member's first row")
        n[pos] = sn
    return np.stack([k, i, seen, fvis, n], axis=1)


# --- reading ------------------------------------------------------------------------------

def _fixed(txn, db, width: int) -> tuple[bytes, bytes]:
    cur = txn.cursor(db=db)
    keys = b"".join(bytes(k) for k in cur.iternext(keys=True, values=False))
    cur = txn.cursor(db=db)
    vals = b"".join(bytes(v) for v in cur.iternext(keys=False, values=True))
    return keys, vals


def read_totals(store, txn, table: str = MEMBERS_DB) -> tuple[np.ndarray, np.ndarray]:
    """(ids ascending, n x TOTAL_COLS int64) of a totals table."""
    rows = card_blocks.read_all(txn, store.db[table], TOTAL_ROW)
    return rows["id"].astype(np.uint64), rows["v"].astype(np.int64).reshape(-1, _NT)


def read_total(store, txn, key: int, table: str = MEMBERS_DB) -> dict[str, int] | None:
    rows = card_blocks.read_one(txn, store.db[table], int(key), TOTAL_ROW)
    if len(rows) == 0:
        return None
    return dict(zip(TOTAL_COLS, rows["v"][0].tolist(), strict=True))


def totals_puts(ids: np.ndarray, vals: np.ndarray) -> list[tuple[bytes, bytes]]:
    """The values that store totals (ids distinct, ascending; n x TOTAL_COLS) in an
    empty beh_members or beh_cards (a bench loading synthetic totals)."""
    rows = np.zeros(len(ids), TOTAL_ROW)
    rows["id"], rows["v"] = ids, vals
    return card_blocks.puts(np.zeros(0, TOTAL_ROW), np.asarray(ids, np.uint64), rows)


def read_days(store, txn, day_from: int, day_to: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(day, member, n x DAY_COLS) of days [day_from, day_to)."""
    d, rows = _day_rows(txn, store.db[DAYS_DB], DAY_ROW, day_from, day_to)
    if not rows:
        return np.zeros(0, np.int64), np.zeros(0, np.uint64), np.zeros((0, len(DAY_COLS)), np.int64)
    r = np.concatenate(rows)
    return d, r["member"].astype(np.uint64), r["v"].astype(np.int64)


def read_keyed(store, txn, table: str) -> tuple[np.ndarray, np.ndarray]:
    """(keys, n x cols int64) of beh_stores or beh_cats."""
    dtype, ncol = (STORE_KEY, len(STORE_COLS)) if table == STORES_DB else (CAT_KEY, len(CAT_COLS))
    keys, vals = _fixed(txn, store.db[table], dtype.itemsize)
    return (np.frombuffer(keys, dtype).copy(),
            np.frombuffer(vals, "<i8").reshape(-1, ncol).copy())


def favourite(keys: np.ndarray, vals: np.ndarray, field: str) -> tuple[np.ndarray, np.ndarray]:
    """(member ids, the favourite store or category of each): the most visits (stores) or
    swipes (categories), then the most spend, then the lowest id."""
    if len(keys) == 0:
        return np.zeros(0, np.uint64), np.zeros(0, np.int64)
    m = keys["member"].astype(np.uint64)
    f = keys[field].astype(np.int64)
    order = np.lexsort((f, -vals[:, 1], -vals[:, 0], m))
    ms = m[order]
    first = np.concatenate(([True], ms[1:] != ms[:-1]))
    return ms[first], f[order][first]
