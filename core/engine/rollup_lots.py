"""Settlement by recharge store as a rollup: each card's principal as FIFO lots
[recharge store, fen], replayed by the rollup tailer in the same transaction that moves
the rollup seq, so that recharge_settlement_report reads rows instead of replaying the
whole journal on every call.

docs/internals/reports.md ("Settlement by recharge store") gives the rule and the why.
The rule is PrincipalLots (one place: the report's journal scan uses it too); this
module keeps its state in LMDB between flushes and turns its pieces into rows:

    rollup_settlement (day)        -> rows of SETTLEMENT_KEY rest + SETTLEMENT_COLS
    rollup_lots       u64 card_no  -> the card's lots, oldest first (PIECE each)
    rollup_lot_taken  u64 seq      -> the pieces a spend took (for its refunds)
    rollup_lot_refund u64 seq      -> u64 the swipe a REFUND refunds
    rollup_lot_moving u64 card_no  -> the lots a REPLACE hands to this new card

A value of an emptied queue or of a hand-over taken is b"" (not deleted): which keys
exist and what they hold depends only on the journal, never on how it was cut into
flushes, so a rebuild gives the same bytes (rollups.digest).
"""

from __future__ import annotations

from collections import deque

import numpy as np

from core.engine.storage import u64
from core.records import CardOp, OpType

SETTLEMENT_DB = "rollup_settlement"
LOTS_DB = "rollup_lots"
TAKEN_DB = "rollup_lot_taken"
REFUND_DB = "rollup_lot_refund"
MOVING_DB = "rollup_lot_moving"
STATE_DBS = (LOTS_DB, TAKEN_DB, REFUND_DB, MOVING_DB)

# Per (day of the record, recharge store of the lot, store of the record).
SETTLEMENT_KEY = np.dtype([("day", ">u4"), ("recharge_store", ">u4"), ("spend_store", ">u4")])
# count: the spend records of the pair; the fen that spends took from the pair's lots,
# that refunds put back on them, that other outflows (fees, expiries) took.
SETTLEMENT_COLS = ("count", "spent_fen", "refunded_fen", "other_fen")
PIECE = np.dtype([("store", "<u4"), ("fen", "<i8")])

_SPEND_OPS = (OpType.SWIPE, OpType.SUPP_DEBIT, OpType.USE_COUNT)
_KIND_COL = {"spent": 1, "refunded": 2, "other": 3}


class PrincipalLots:
    """Each card's principal as lots [recharge store, fen], oldest first, replayed from
    the journal in seq order (the attribution rule of recharge_settlement_report):

    - principal coming in (principal_delta_fen > 0) is a new lot at the record's store,
      except: a REFUND (and the SUPP_DEBIT that refunds a supplementary card's swipe)
      puts back what the refunded swipe took, newest piece first, at the front of the
      queue with the pieces' own recharge stores (anything beyond what the swipe took
      from principal is a new lot at the refunding store); the new card of a
      replacement takes over the old card's lots (the REPLACE record that empties the
      old card names it in replaced_by);
    - principal going out takes the oldest lots first. A spend (SWIPE, SUPP_DEBIT,
      USE_COUNT) is remembered per swipe so that its refunds can put it back.

    on_piece(record, lot store, fen, kind) is called for every piece that moves:
    kind "spent", "refunded" or "other" (fees, expiries, adjustments)."""

    def __init__(self, on_piece) -> None:
        self._deque = deque
        self.lots: dict[int, deque] = {}
        self.taken: dict[int, list[list[int]]] = {}   # swipe seq -> pieces [store, fen]
        self.refund_of: dict[int, int] = {}           # refund seq -> the swipe it refunds
        self.moving: dict[int, list[list[int]]] = {}  # new card -> the old card's lots
        self.on_piece = on_piece

    def _queue(self, card: int):
        q = self.lots.get(card)
        if q is None:
            q = self.lots[card] = self._deque()
        return q

    def apply(self, r) -> None:
        card, delta, op = int(r["card_no"]), int(r["principal_delta_fen"]), int(r["op_type"])
        seq, ref = int(r["seq"]), int(r["ref_seq"])
        if op == OpType.REFUND:
            self.refund_of[seq] = ref
        if delta == 0:
            return
        q = self._queue(card)
        if delta > 0:
            if op == OpType.REFUND or (op == OpType.SUPP_DEBIT and ref in self.refund_of):
                swipe = ref if op == OpType.REFUND else self.refund_of[ref]
                pieces = self.taken.get(swipe, [])
                back = delta
                while back and pieces:
                    p = pieces[-1]
                    n = min(back, p[1])
                    p[1] -= n
                    back -= n
                    if p[1] == 0:
                        pieces.pop()
                    if q and q[0][0] == p[0]:
                        q[0][1] += n
                    else:
                        q.appendleft([p[0], n])
                    self.on_piece(r, p[0], n, "refunded")
                if back:
                    q.append([int(r["store_id"]), back])
                    self.on_piece(r, int(r["store_id"]), back, "refunded")
                return
            moved = self.moving.pop(card, None)
            if moved:
                q.extend(moved)
                delta -= sum(p[1] for p in moved)
            if delta > 0:
                q.append([int(r["store_id"]), delta])
            return
        out = -delta
        if op == CardOp.REPLACE and int(r["after"]["replaced_by"]):
            moved = []
            while out and q:
                n = min(out, q[0][1])
                moved.append([q[0][0], n])
                q[0][1] -= n
                out -= n
                if q[0][1] == 0:
                    q.popleft()
            self.moving[int(r["after"]["replaced_by"])] = moved
            return
        spend = op in _SPEND_OPS
        key = ref if op == OpType.SUPP_DEBIT else seq
        pieces = self.taken.setdefault(key, []) if spend else None
        while out and q:
            n = min(out, q[0][1])
            s = q[0][0]
            q[0][1] -= n
            out -= n
            if q[0][1] == 0:
                q.popleft()
            if pieces is not None:
                pieces.append([s, n])
            self.on_piece(r, s, n, "spent" if spend else "other")
        if out:
            # Principal going out beyond every lot cannot happen (principal >= 0); if a
            # journal holds it, it is attributed to store 0 so the sums still balance.
            self.on_piece(r, 0, out, "spent" if spend else "other")

    def balance(self, card: int) -> int:
        return sum(p[1] for p in self.lots.get(card, ()))


def lot_records(block: np.ndarray, sel: np.ndarray) -> np.ndarray:
    """The records of block[sel] (OK card records) the lots replay looks at: those that
    move principal, and every REFUND (a supplementary card's refund names it)."""
    b = block[sel]
    return b[(b["principal_delta_fen"] != 0) | (b["op_type"] == OpType.REFUND)].copy()


def _pieces(raw) -> list[list[int]]:
    a = np.frombuffer(bytes(raw), PIECE)
    return [[s, f] for s, f in zip(a["store"].tolist(), a["fen"].tolist(), strict=True)]


def _raw(pieces) -> bytes:
    a = np.zeros(len(pieces), PIECE)
    if len(pieces):
        a["store"] = [p[0] for p in pieces]
        a["fen"] = [p[1] for p in pieces]
    return a.tobytes()


class _Moving(dict):
    """PrincipalLots.moving that remembers the hand-overs taken (written as b"")."""

    def __init__(self, *a) -> None:
        super().__init__(*a)
        self.taken_keys: set[int] = set()

    def pop(self, key, default=None):
        if key in self:
            self.taken_keys.add(key)
        return super().pop(key, default)


def _load(txn, db, keys, decode) -> dict:
    if not keys:
        return {}
    got = txn.cursor(db=db).getmulti([u64(k) for k in sorted(keys)])
    return {int.from_bytes(bytes(k), "big"): decode(v) for k, v in got if len(v)}


def replay(store, txn, recs: list[np.ndarray], tz: int
           ) -> tuple[np.ndarray, np.ndarray, dict[str, list[tuple[bytes, bytes]]]]:
    """Replay a stretch's lot records (seq order) over the lots stored as of the
    stretch's start (read in txn). Returns the settlement rows (keys, n x 4 int64, one
    per record piece: rollups reduces them) and the state puts per database."""
    empty = (np.zeros(0, SETTLEMENT_KEY), np.zeros((0, len(SETTLEMENT_COLS)), np.int64))
    if not recs:
        return *empty, {}
    r = np.concatenate(recs)
    if len(r) == 0:
        return *empty, {}
    db = store.db
    op = r["op_type"]
    cards = set(r["card_no"].tolist())
    targets = set(r["after"]["replaced_by"][op == CardOp.REPLACE].tolist()) - {0}
    refunds = r[op == OpType.REFUND]
    supp = r[op == OpType.SUPP_DEBIT]
    own_refunds = dict(zip(refunds["seq"].tolist(), refunds["ref_seq"].tolist(), strict=True))
    refund_of = _load(txn, db[REFUND_DB], set(supp["ref_seq"].tolist()) - set(own_refunds),
                      lambda v: int.from_bytes(bytes(v), "big"))
    swipes = (set(refunds["ref_seq"].tolist()) | set(supp["ref_seq"].tolist())
              | set(refund_of.values()))
    lots = PrincipalLots(None)
    lots.lots = {c: deque(p) for c, p in _load(txn, db[LOTS_DB], cards, _pieces).items()}
    lots.taken = _load(txn, db[TAKEN_DB], swipes, _pieces)
    lots.refund_of = refund_of
    lots.moving = _Moving(_load(txn, db[MOVING_DB], cards | targets, _pieces))
    rows: list[tuple[int, int, int, int, int]] = []
    counted: set[tuple[int, int, int]] = set()

    def on_piece(rec, lot_store: int, fen: int, kind: str) -> None:
        spend = int(rec["store_id"])
        n = 0
        if kind == "spent":
            pair = (int(rec["seq"]), lot_store, spend)
            if pair not in counted:
                counted.add(pair)
                n = 1
        rows.append(((int(rec["time_s"]) + tz) // 86_400, lot_store, spend, n,
                     _KIND_COL[kind], fen))

    lots.on_piece = on_piece
    for rec in r:
        lots.apply(rec)
    puts = {
        LOTS_DB: [(u64(c), _raw(q)) for c, q in sorted(lots.lots.items())],
        TAKEN_DB: [(u64(s), _raw(p)) for s, p in sorted(lots.taken.items())],
        REFUND_DB: [(u64(s), u64(w)) for s, w in sorted(lots.refund_of.items())],
        MOVING_DB: sorted([(u64(c), _raw(p)) for c, p in lots.moving.items()]
                          + [(u64(c), b"") for c in lots.moving.taken_keys
                             if c not in lots.moving]),
    }
    if not rows:
        return *empty, puts
    a = np.array(rows, np.int64)
    keys = np.zeros(len(a), SETTLEMENT_KEY)
    keys["day"], keys["recharge_store"], keys["spend_store"] = a[:, 0], a[:, 1], a[:, 2]
    vals = np.zeros((len(a), len(SETTLEMENT_COLS)), np.int64)
    vals[:, 0] = a[:, 3]
    vals[np.arange(len(a)), a[:, 4]] = a[:, 5]
    return keys, vals, puts
