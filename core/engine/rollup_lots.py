"""Settlement by recharge store as a rollup: each card's principal as FIFO lots
[recharge store, fen], replayed by the rollup tailer in the same transaction that moves
the rollup seq, so that recharge_settlement_report reads rows instead of replaying the
whole journal on every call.

docs/internals/reports.md ("Settlement by recharge store") gives the rule and the why.
The rule is PrincipalLots (one place: the report's journal scan uses it too); this
module keeps its state in LMDB between flushes and turns its pieces into rows:

    rollup_settlement (day)        -> rows of SETTLEMENT_KEY rest + SETTLEMENT_COLS
    rollup_lots       u64 block of card_no -> rows LOT_ROW (card, store, fen) sorted by
                      card, each card's lots oldest first (core.engine.card_blocks)
    rollup_lot_taken  u64 seq      -> the pieces a spend took (for its refunds)
    rollup_lot_refund u64 seq      -> u64 the swipe a REFUND refunds
    rollup_lot_moving u64 card_no  -> the lots a REPLACE hands to this new card

A block of emptied queues or a hand-over taken is b"" (not deleted): which keys
exist and what they hold depends only on the journal, never on how it was cut into
flushes, so a rebuild gives the same bytes (rollups.digest).
"""

from __future__ import annotations

from collections import deque

import numpy as np

from core.engine import _tally, card_blocks
from core.engine.storage import group_runs, stable_argsort, take, u64
from core.idsets import unique_ids
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
# A row of rollup_lots: a card's lot, stored in blocks of card numbers
# (core.engine.card_blocks), a card's lots oldest first.
LOT_ROW = np.dtype([("id", "<u8"), ("store", "<u4"), ("fen", "<i8")])

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


# The fields of a journal record the replay reads (PrincipalLots reads them by name): the
# OK card records that move principal, and every REFUND (a supplementary card's refund
# names it), picked by _tally.card_columns.
LOT_REC = np.dtype([("seq", "<u8"), ("time_s", "<i8"), ("card_no", "<u8"),
                    ("principal_delta_fen", "<i8"), ("store_id", "<u4"), ("op_type", "u1"),
                    ("ref_seq", "<u8"), ("after", [("replaced_by", "<u8")])])


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


# The pieces spends took, for their refunds: one LMDB value per 2**TAKEN_CHUNK_BITS seqs
# of the spend's key (its seq; a SUPP_DEBIT's: the supplementary card's swipe), holding
# (key, store, fen) sorted by key, a spend's pieces oldest lot first. A flush rewrites
# the few chunks its spends fall in instead of one put per spend.
TAKEN_CHUNK_BITS = 16
TAKEN = np.dtype([("seq", "<u8"), ("store", "<u4"), ("fen", "<i8")])


class _Taken:
    """The taken chunks a stretch touches, decoded; written back whole."""

    def __init__(self, txn, db) -> None:
        self.txn, self.db = txn, db
        self.chunks: dict[int, np.ndarray] = {}
        self.dirty: set[int] = set()

    def chunk(self, c: int) -> np.ndarray:
        got = self.chunks.get(c)
        if got is None:
            raw = self.txn.get(u64(c), db=self.db)
            got = self.chunks[c] = np.frombuffer(bytes(raw), TAKEN) if raw else np.zeros(0, TAKEN)
        return got

    def get(self, keys) -> dict[int, list[list[int]]]:
        out: dict[int, list[list[int]]] = {}
        for k in sorted(keys):
            a = self.chunk(k >> TAKEN_CHUNK_BITS)
            lo, hi = np.searchsorted(a["seq"], [k, k + 1])
            if hi > lo:
                out[k] = [[int(s), int(f)] for s, f in zip(a["store"][lo:hi].tolist(),
                                                          a["fen"][lo:hi].tolist(), strict=True)]
        return out

    def put(self, entries: np.ndarray, replaced: set[int] = frozenset(),
            spends: np.ndarray | None = None) -> None:
        """Add entries (TAKEN, keys new or in replaced) and drop the old entries of the
        keys in replaced. spends: the keys of every spend (a spend that took nothing has
        no entry). Every chunk a spend's key falls in is written, empty or not, so which
        chunks exist depends on the journal only, never on the flushes."""
        s = entries["seq"]
        if len(s) > 1 and not (s[1:] >= s[:-1]).all():    # the fast path's come sorted
            entries = take(entries, stable_argsort(s))
        of = (entries["seq"] >> np.uint64(TAKEN_CHUNK_BITS)).astype(np.int64)
        chunks = {k >> TAKEN_CHUNK_BITS for k in replaced}
        if len(of):                                  # of is sorted
            chunks |= set(of[np.concatenate(([True], of[1:] != of[:-1]))].tolist())
        if spends is not None and len(spends):
            sc = spends.astype(np.int64) >> TAKEN_CHUNK_BITS     # few distinct chunks
            lo = int(sc.min())
            chunks |= set((np.flatnonzero(np.bincount(sc - lo)) + lo).tolist())
        drop = np.array(sorted(replaced), np.uint64)
        for c in chunks:
            old = self.chunk(c)
            if len(drop):
                old = old[~np.isin(old["seq"], drop)]
            a, b = np.searchsorted(of, [c, c + 1])
            mine = entries[a:b]
            if len(old) and len(mine) and old["seq"][-1] >= mine["seq"][0]:
                both = np.concatenate((old, mine))
                self.chunks[c] = take(both, stable_argsort(both["seq"]))
            else:
                self.chunks[c] = np.concatenate((old, mine))
            self.dirty.add(c)

    def puts(self) -> list[tuple[bytes, bytes]]:
        return [(u64(c), self.chunks[c].tobytes()) for c in sorted(self.dirty)]


def _fifo(recs: np.ndarray, stored: dict[int, list[list[int]]]):
    """_fifo_arrays with the stored lots and the lots after as {card: [[store, fen]]}."""
    items = [(c, p) for c, lots in sorted(stored.items()) for p in lots]
    st = np.zeros(len(items), _STORED)
    if items:
        st["card"] = [c for c, _ in items]
        st["store"] = [p[0] for _, p in items]
        st["fen"] = [p[1] for _, p in items]
    *_, cards, lc, ls, lf, pieces = _fifo_arrays(recs, st)
    after: dict[int, list[list[int]]] = {int(c): [] for c in cards.tolist()}
    for c, s, f in zip(lc.tolist(), ls.tolist(), lf.tolist(), strict=True):
        after[c].append([s, f])
    return pieces, after


# Stored lots as arrays: the card, then its PIECE.
_STORED = np.dtype([("card", "<i8"), ("store", "<i8"), ("fen", "<i8")])


def _stored_of(old: np.ndarray, cards: np.ndarray) -> np.ndarray:
    """The lots of cards (sorted, distinct) among old (LOT_ROW rows of their blocks) as
    _STORED rows, each card's in order."""
    sel = old[np.isin(old["id"], cards)] if len(old) else old
    out = np.zeros(len(sel), _STORED)
    out["card"], out["store"], out["fen"] = sel["id"], sel["store"], sel["fen"]
    return out


def _lot_rows(cards, stores, fens) -> np.ndarray:
    rows = np.zeros(len(cards), LOT_ROW)
    rows["id"], rows["store"], rows["fen"] = cards, stores, fens
    return rows


def read_lots(store, txn) -> dict[int, np.ndarray]:
    """Every card's stored lots (PIECE rows, oldest first); cards with none left absent."""
    rows = card_blocks.read_all(txn, store.db[LOTS_DB], LOT_ROW)
    order, starts = group_runs(rows["id"].astype(np.int64))
    ends = np.append(starts[1:], len(rows)).tolist()
    out = {}
    for a, b in zip(starts.tolist(), ends, strict=True):
        p = np.zeros(b - a, PIECE)
        p["store"], p["fen"] = rows["store"][a:b], rows["fen"][a:b]
        out[int(rows["id"][a])] = p
    return out


# The record codes _tally.fifo_settle reads: the spends (a SUPP_DEBIT's taken key is the
# supplementary card's swipe, its ref_seq).
_SETTLE_CODES = np.array([OpType.SWIPE, OpType.SUPP_DEBIT, OpType.USE_COUNT], np.int64)
assert tuple(_SETTLE_CODES.tolist()) == tuple(int(o) for o in _SPEND_OPS)


def _fifo_arrays(recs: np.ndarray, stored: np.ndarray, tz: int = 0):
    """PrincipalLots for cards whose records in a stretch only add principal as new lots
    and take it oldest lot first (no refund, replacement or hand-over), in one pass in C
    (_tally.fifo_settle: a queue per card, its stored lots then its records in seq order). recs:
    LOT_REC rows (or journal records) in seq order; stored: the cards' lots as _STORED
    rows (by card, in order). Returns fifo_settle's results, the pieces last."""
    if recs.dtype != LOT_REC:
        lot = np.zeros(len(recs), LOT_REC)
        for name in LOT_REC.names:
            if name != "after":
                lot[name] = recs[name]
        lot["after"]["replaced_by"] = recs["after"]["replaced_by"]
        recs = lot
    recs = np.ascontiguousarray(recs)
    cards, card_of = _tally.fast_cards(recs, np.zeros(len(recs), np.uint8))
    return _tally.fifo_settle(recs, card_of, cards, np.ascontiguousarray(stored["card"], np.int64),
                              np.ascontiguousarray(stored["store"], np.int64),
                              np.ascontiguousarray(stored["fen"], np.int64), int(tz), _SETTLE_CODES)


def replay(store, txn, recs: list[np.ndarray], tz: int
           ) -> tuple[np.ndarray, np.ndarray, dict[str, list[tuple[bytes, bytes]]]]:
    """Replay a stretch's lot records (seq order) over the lots stored as of the
    stretch's start (read in txn). Returns the settlement rows (keys, n x 4 int64, one
    per (day, recharge store, spend store)) and the state puts per database.

    Cards with a refund, a replacement's hand-over (either side) or a SUPP_DEBIT that
    adds principal in the stretch go through PrincipalLots one record at a time; the
    others (nearly every card: recharges and spends) through _fifo, vectorised. Cards
    are independent but for those links, which the first group holds on both sides."""
    empty = (np.zeros(0, SETTLEMENT_KEY), np.zeros((0, len(SETTLEMENT_COLS)), np.int64))
    if not recs:
        return *empty, {}
    r = np.concatenate(recs)
    if len(r) == 0:
        return *empty, {}
    db = store.db
    op = r["op_type"]
    card = r["card_no"].astype(np.int64)
    delta = r["principal_delta_fen"].astype(np.int64)
    linked = (op == OpType.REFUND) | ((op == OpType.SUPP_DEBIT) & (delta > 0))
    repl = (op == CardOp.REPLACE) & (r["after"]["replaced_by"] != 0)
    targets = set(r["after"]["replaced_by"][repl].tolist())
    adding = unique_ids(card[(delta > 0) & ~linked]).tolist()
    moving = _load(txn, db[MOVING_DB], set(adding) | targets, _pieces)
    slow_cards = set(card[linked | repl].tolist()) | targets | set(moving)
    slow = np.isin(card, np.array(sorted(slow_cards), np.int64)) if slow_cards \
        else np.zeros(len(r), bool)
    taken = _Taken(txn, db[TAKEN_DB])
    # The lots' blocks of every card of the stretch (core.engine.card_blocks), read once.
    old_lots = card_blocks.read_blocks(txn, db[LOTS_DB], card_blocks.blocks_of(card),
                                       LOT_ROW)
    lot_ids: list[np.ndarray] = []
    lot_rows: list[np.ndarray] = []
    rows: list[np.ndarray] = []          # n x 6: day, lot store, spend store, count, col, fen
    summed: list[tuple[np.ndarray, np.ndarray]] = []    # (n x 3 keys, n x 4 SETTLEMENT_COLS)
    puts: dict[str, list[tuple[bytes, bytes]]] = {REFUND_DB: [], MOVING_DB: []}
    # --- the vectorised cards ---
    fcards, card_of = _tally.fast_cards(r, slow.view(np.uint8))
    if len(fcards):
        stored = _stored_of(old_lots, fcards)
        # One pass in C in seq order over a queue of lots per card (its stored lots
        # first); the pieces summed per (day, lot store, spend store) (a spend counts
        # once per record and lot store), the spends' taken entries in seq order.
        fkeys, fvals, traw, spend_keys, fcards, lc, ls, lf, _ = _tally.fifo_settle(
            r, card_of, fcards, np.ascontiguousarray(stored["card"], np.int64),
            np.ascontiguousarray(stored["store"], np.int64),
            np.ascontiguousarray(stored["fen"], np.int64), int(tz), _SETTLE_CODES)
        summed.append((fkeys, fvals))
        taken.put(np.frombuffer(traw, TAKEN), spends=spend_keys)
        lot_ids.append(np.asarray(fcards, np.uint64))
        lot_rows.append(_lot_rows(lc, ls, lf))
    # --- the linked cards, one record at a time ---
    sl = np.flatnonzero(slow)
    if len(sl):
        sr = take(r, sl)
        sop, sdelta = op[sl], delta[sl]
        refunds = sr[sop == OpType.REFUND]
        supp = sr[sop == OpType.SUPP_DEBIT]
        own = dict(zip(refunds["seq"].tolist(), refunds["ref_seq"].tolist(), strict=True))
        refund_of = _load(txn, db[REFUND_DB], set(supp["ref_seq"].tolist()) - set(own),
                          lambda v: int.from_bytes(bytes(v), "big"))
        spend_keys = set(sr["ref_seq"][(sop == OpType.SUPP_DEBIT) & (sdelta < 0)].tolist())
        swipes = (set(refunds["ref_seq"].tolist()) | set(supp["ref_seq"].tolist())
                  | set(refund_of.values()) | spend_keys) - {0}
        lots = PrincipalLots(None)
        st = _stored_of(old_lots, unique_ids(card[sl]))
        lots.lots = {}
        for c, s, f in zip(st["card"].tolist(), st["store"].tolist(), st["fen"].tolist(),
                           strict=True):
            lots._queue(c).append([s, f])
        before = taken.get(swipes)
        lots.taken = {k: [list(p) for p in v] for k, v in before.items()}
        lots.refund_of = refund_of
        lots.moving = _Moving(moving)
        slow_rows: list[tuple[int, int, int, int, int, int]] = []
        counted: set[tuple[int, int, int]] = set()

        def on_piece(rec, lot_store: int, fen: int, kind: str) -> None:
            spend = int(rec["store_id"])
            n = 0
            if kind == "spent":
                pair = (int(rec["seq"]), lot_store, spend)
                if pair not in counted:
                    counted.add(pair)
                    n = 1
            slow_rows.append(((int(rec["time_s"]) + tz) // 86_400, lot_store, spend, n,
                              _KIND_COL[kind], fen))

        lots.on_piece = on_piece
        for rec in sr:
            lots.apply(rec)
        if slow_rows:
            rows.append(np.array(slow_rows, np.int64))
        changed = {k for k, v in lots.taken.items() if before.get(k) != v}
        ent = [(k, s, f) for k in sorted(changed) for s, f in lots.taken[k]]
        e = np.zeros(len(ent), TAKEN)
        if ent:
            e["seq"] = [x[0] for x in ent]
            e["store"] = [x[1] for x in ent]
            e["fen"] = [x[2] for x in ent]
        taken.put(e, changed)
        cs = sorted(lots.lots)
        lot_ids.append(np.array(cs, np.uint64))
        lot_rows.append(_lot_rows([c for c in cs for _ in lots.lots[c]],
                                  [p[0] for c in cs for p in lots.lots[c]],
                                  [p[1] for c in cs for p in lots.lots[c]]))
        puts[REFUND_DB] = [(u64(s), u64(w)) for s, w in sorted(lots.refund_of.items())]
        puts[MOVING_DB] = sorted([(u64(c), _raw(p)) for c, p in lots.moving.items()]
                                 + [(u64(c), b"") for c in lots.moving.taken_keys
                                    if c not in lots.moving])
    if lot_ids:
        ids = np.concatenate(lot_ids)
        new = np.concatenate(lot_rows)
        if len(lot_rows) > 1:           # fast and slow cards are distinct: by card, stable
            new = new[stable_argsort(new["id"])]
            ids = np.sort(ids)
        puts[LOTS_DB] = card_blocks.puts(old_lots, ids, new)
    puts[TAKEN_DB] = taken.puts()
    for a in rows:                       # the slow pieces in the summed form
        v = np.zeros((len(a), len(SETTLEMENT_COLS)), np.int64)
        v[:, 0] = a[:, 3]
        for c in (1, 2, 3):
            v[:, c] = np.where(a[:, 4] == c, a[:, 5], 0)
        summed.append((np.ascontiguousarray(a[:, :3]), v))
    if not summed:
        return *empty, puts
    k = np.concatenate([x[0] for x in summed])
    v = np.concatenate([x[1] for x in summed])
    if len(k) == 0:
        return *empty, puts
    # One row per (day, recharge store, spend store) (a few thousand groups).
    order, starts = group_runs(k[:, 0], k[:, 1], k[:, 2])
    at = order[starts]
    keys = np.zeros(len(starts), SETTLEMENT_KEY)
    keys["day"], keys["recharge_store"], keys["spend_store"] = k[at, 0], k[at, 1], k[at, 2]
    vals = np.add.reduceat(v[order], starts, axis=0)
    return keys, vals, puts
