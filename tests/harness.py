"""Test helpers that drive core._fastpath directly on numpy arrays (no LMDB), and
convert between the engine's records and the plain dicts of tests/reference.py."""

from __future__ import annotations

import numpy as np

from core import _fastpath
from core.engine.storage import CHUNK_SHIFT
from core.records import (
    CARD,
    COUPON,
    ITEM,
    JOURNAL,
    OP,
    RESULT,
    OpType,
    RecordKind,
    card_to_dict,
    coupon_of,
    coupon_to_dict,
    journal_to_dict,
)

CARD_FIELDS = [n for n in CARD.names if not n.startswith("_")]
OP_FIELDS = [n for n in OP.names if not n.startswith("_")]
COUPON_FIELDS = [n for n in COUPON.names if not n.startswith("_")]


def blank_card(card_no: int, **fields: int) -> dict:
    card = dict.fromkeys(CARD_FIELDS, 0)
    card.update(card_no=card_no, status=1)
    card.update(fields)
    return card


def make_op(client: int | tuple[int, int], card_no: int, amount_fen: int, op_type: int = 1,
            **fields: int) -> dict:
    hi, lo = client if isinstance(client, tuple) else (0, client)
    op = dict.fromkeys(OP_FIELDS, 0)
    op.update(client_hi=hi, client_lo=lo, card_no=card_no, amount_fen=amount_fen,
              op_type=op_type)
    op.update(fields)
    return op


def tag_id(tag: str) -> bytes:
    """A readable 16-byte client id: the tag, padded with dots."""
    return tag.encode().ljust(16, b".")[:16]


def tagged_op(tag: str, card: int, amount: int, op_type: int = OpType.SWIPE, *, coupons=(),
              ref: str | None = None, offset: int = 0, store: int = 0, operator: int = 0,
              category: int = 0, items=None, pin: str | None = None
              ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """One op as Engine.submit takes it (ops, items, coupon ids): client id from tag, a
    refund's target from ref, items as (sku, amount_fen, qty, category) tuples."""
    ops = np.zeros(1, dtype=OP)
    c = tag_id(tag)
    ops["client_hi"], ops["client_lo"] = int.from_bytes(c[:8], "big"), int.from_bytes(c[8:], "big")
    ops["card_no"], ops["amount_fen"], ops["op_type"] = card, amount, op_type
    ops["points_offset"], ops["store_id"], ops["category"] = offset, store, category
    ops["operator_id"] = operator
    ops["coupons_off"], ops["coupons_n"] = 0, len(coupons)
    if pin is not None:
        ops["pin"], ops["pin_len"] = int(pin), len(pin)
    if ref is not None:
        r = tag_id(ref)
        ops["ref_hi"], ops["ref_lo"] = int.from_bytes(r[:8], "big"), int.from_bytes(r[8:], "big")
    arr = None
    if items:
        arr = np.zeros(len(items), dtype=ITEM)
        for i, (sku, amt, qty, cat) in enumerate(items):
            arr[i] = (sku, amt, qty, cat, 0, 0)
        ops["items_off"], ops["items_n"] = 0, len(items)
    return ops, arr, (np.array(coupons, dtype=np.uint64) if coupons else None)


def records_array(rows: list[dict], dtype: np.dtype) -> np.ndarray:
    """Rows (ops, items, coupons, cards) as an array of dtype; fields a row leaves out
    are zero."""
    arr = np.zeros(len(rows), dtype=dtype)
    for i, row in enumerate(rows):
        for name, value in row.items():
            arr[i][name] = value
    return arr


def ops_array(ops: list[dict]) -> np.ndarray:
    return records_array(ops, OP)


def items_array(items: list[dict]) -> np.ndarray:
    return records_array(items, ITEM)


def coupons_array(coupons: list[dict]) -> np.ndarray:
    return records_array(coupons, COUPON)


def cards_array(cards: list[dict]) -> np.ndarray:
    return records_array(cards, CARD)


def record_dict(rec: np.void) -> dict:
    """A journal record as the reference shapes it (reserved fields must be zero): a
    coupon record's after-image is its coupon (the bytes past it zero)."""
    for name in JOURNAL.names:
        if name.startswith("_"):
            assert int(rec[name]) == 0, name
    out = journal_to_dict(rec)
    if int(rec["kind"]) == RecordKind.KIND_COUPON:
        assert not any(rec["after"].tobytes()[COUPON.itemsize:]), "coupon after-image tail"
        out["after"] = coupon_to_dict(coupon_of(rec))
    return out


class FastPath:
    """The committed state the engine keeps in memory, without LMDB: a card table, its
    index, the client-id index, the journal (records by seq, for refunds) and the map of
    what each swipe had refunded; apply() runs apply_batch and then publish(), passing
    line items, the refund targets and the refunded map as the engine does."""

    def __init__(self, cards: list[dict], known: dict[tuple[int, int], object] | None = None,
                 batch_ops_max: int = 4096, next_seq: int = 1,
                 coupons: list[dict] | None = None) -> None:
        self.cards = cards_array(cards)
        self.card_index = _fastpath.KeyMap(max(16, len(cards)))
        for slot, card in enumerate(cards):
            self.card_index.insert(0, card["card_no"], slot)
        self.id_index = _fastpath.KeyMap(1024)
        # The id index keeps seq << 8 | result of an id's first record; a known id given
        # as a bare seq is of an op that was accepted (OK), else it is (seq, result).
        for (hi, lo), value in (known or {}).items():
            seq, result = value if isinstance(value, tuple) else (value, 1)
            self.id_index.insert(hi, lo, _fastpath.pack_id_value(seq, result))
        self.batcher = _fastpath.Batcher(batch_ops_max)
        self.dirty = np.zeros((len(cards) >> CHUNK_SHIFT) + 1, dtype=np.uint8)
        self.next_seq = next_seq
        self.journal: dict[int, np.void] = {}
        self.refunded = _fastpath.KeyMap(16)
        # The coupon table and its index (coupon_id -> slot); hot ops never add coupons.
        self.coupons = coupons_array(coupons or [])
        self.coupon_index = _fastpath.KeyMap(max(16, len(self.coupons)))
        for slot, cp in enumerate(coupons or []):
            self.coupon_index.insert(0, cp["coupon_id"], slot)

    def refund_targets(self, arr: np.ndarray) -> tuple[np.ndarray | None, tuple | None]:
        """What Engine._refund_targets does: for each REFUND op, the committed record of
        the op its ref_hi/ref_lo names (by the id index), or a zero row; and the coupons
        that op redeemed (the coupon records right after it with its client id)."""
        idx = np.flatnonzero(arr["op_type"] == OpType.REFUND)
        if len(idx) == 0:
            return None, None
        refs = np.zeros(len(arr), dtype=JOURNAL)
        offs = np.zeros(len(arr), dtype=np.uint32)
        counts = np.zeros(len(arr), dtype=np.uint8)
        coupon_ids: list[int] = []
        for i in idx.tolist():
            prior = self.id_index.lookup(int(arr[i]["ref_hi"]), int(arr[i]["ref_lo"]))
            if prior < 0 or (prior >> 8) not in self.journal:
                continue
            seq = prior >> 8
            refs[i] = self.journal[seq]
            offs[i] = len(coupon_ids)
            nxt = self.journal.get(seq + 1)
            while (nxt is not None and int(nxt["kind"]) == RecordKind.KIND_COUPON
                   and int(nxt["client_hi"]) == int(refs[i]["client_hi"])
                   and int(nxt["client_lo"]) == int(refs[i]["client_lo"])):
                coupon_ids.append(int(coupon_of(nxt)["coupon_id"]))
                counts[i] += 1
                nxt = self.journal.get(int(nxt["seq"]) + 1)
        return refs, (np.array(coupon_ids, dtype=np.uint64), offs, counts)

    def apply(self, ops: list[dict] | np.ndarray, rules: _fastpath.Rules, now_s: int,
              items: list[dict] | np.ndarray | None = None,
              coupon_ids: list[int] | np.ndarray | None = None
              ) -> tuple[list[tuple[int, int, int]], list[dict], np.ndarray, np.ndarray]:
        arr = ops if isinstance(ops, np.ndarray) else ops_array(ops)
        lines = None
        if items is not None:
            lines = items if isinstance(items, np.ndarray) else items_array(items)
        ids = None if coupon_ids is None else np.asarray(coupon_ids, dtype=np.uint64)
        n = len(arr)
        refs, ref_coupons = self.refund_targets(arr)
        # A refund or a supplementary card's swipe may add its primary card's record; a
        # coupon named is redeemed (and may be restored in the same batch).
        room = 2 * n + 2 * (0 if ids is None else len(ids))
        room += 0 if ref_coupons is None else len(ref_coupons[0])
        recs = np.zeros(max(room, 1), dtype=JOURNAL)
        results = np.zeros(max(n, 1), dtype=RESULT)
        n_recs = self.batcher.apply_batch(arr, self.cards, self.card_index, self.id_index,
                                          rules, now_s, self.next_seq, recs, results, None,
                                          lines, refs, self.refunded,
                                          self.coupons if len(self.coupons) else None,
                                          self.coupon_index, ids,
                                          *(ref_coupons or (None, None, None)))
        card_recs = np.ascontiguousarray(recs[:n_recs][recs[:n_recs]["kind"] == RecordKind.KIND_CARD])
        n_cards = _fastpath.publish(card_recs, len(card_recs), self.cards, self.card_index,
                                    self.id_index, len(self.cards), self.dirty, CHUNK_SHIFT)
        assert n_cards == len(self.cards), "a hot op never adds a card"
        if len(self.coupons):
            n_coupons = _fastpath.publish_coupons(recs, n_recs, self.coupons, self.coupon_index,
                                                  len(self.coupons), None, CHUNK_SHIFT)
            assert n_coupons == len(self.coupons), "a hot op never adds a coupon"
        for rec in recs[:n_recs]:
            self.journal[int(rec["seq"])] = rec.copy()
        self.next_seq += n_recs
        out = [(int(r["code"]), int(r["replayed"]), int(r["seq"])) for r in results[:n]]
        return out, [record_dict(r) for r in recs[:n_recs]], results[:n], recs[:n_recs]

    def refunded_dict(self) -> dict[int, int]:
        _his, los, vals = self.refunded.items()
        return {int(k): int(v) for k, v in zip(los, vals, strict=True)}

    def card(self, card_no: int) -> dict | None:
        slot = self.card_index.lookup(0, card_no)
        return None if slot < 0 else card_to_dict(self.cards[slot])

    def card_dicts(self) -> dict[int, dict]:
        return {int(c["card_no"]): card_to_dict(c) for c in self.cards}

    def coupon_dicts(self) -> dict[int, dict]:
        return {int(c["coupon_id"]): coupon_to_dict(c) for c in self.coupons}
