"""An independent recomputation of the rollups from a whole journal (tests only).

Where core.engine.rollups sums block by block and keeps a card -> store map as it goes, this
takes the entire journal at once: numpy picks the records and the first record of each
card, and plain Python ints sum the rows under keys packed with struct. The two must
agree byte for byte."""

from __future__ import annotations

import struct

import numpy as np

from core.engine import card_blocks
from core.engine.rollups import (
    CARD_EVENTS_DB,
    CARD_STATUS_DB,
    CARDS_DB,
    COUPONS_DB,
    JOURNAL_ITEM,
    JOURNAL_ITEMS_DB,
    SALES_DB,
    SKU_DB,
    STATUS_ROW,
    decode_blocks,
    encode_blocks,
)
from core.engine.storage import from_be
from core.records import COUPON, JOURNAL, CardOp, CardStatus, OpFlag, OpType, RecordKind, Result


def whole_journal(store) -> tuple[np.ndarray, np.ndarray]:
    with store.read() as txn:
        blocks = [np.frombuffer(v, JOURNAL) for _k, v in txn.cursor(db=store.db["journal"])]
        items = [np.frombuffer(v, JOURNAL_ITEM)
                 for _k, v in txn.cursor(db=store.db[JOURNAL_ITEMS_DB])]
    j = np.concatenate(blocks) if blocks else np.zeros(0, JOURNAL)
    it = np.concatenate(items) if items else np.zeros(0, JOURNAL_ITEM)
    return j, it


def stored(store) -> dict[str, dict[bytes, bytes]]:
    """The stored rows as {key bytes: int64 LE column bytes}, blocks decoded; also the
    stored blocks are checked to be what their rows encode (sorted, distinct keys)."""
    out: dict[str, dict[bytes, bytes]] = {}
    with store.read() as txn:
        for name in (SALES_DB, SKU_DB, COUPONS_DB, CARD_EVENTS_DB):
            raw = [(bytes(k), bytes(v)) for k, v in txn.cursor(db=store.db[name])]
            keys, vals = decode_blocks(name, raw)
            kb = [k.tobytes() for k in keys]
            assert kb == sorted(set(kb)), name
            assert encode_blocks(name, keys, vals) == raw, name
            out[name] = {k: v.astype("<i8").tobytes() for k, v in zip(kb, vals, strict=True)}
        out[CARDS_DB] = {bytes(k): bytes(v) for k, v in txn.cursor(db=store.db[CARDS_DB])}
        # rollup_card_status: blocks of card numbers (card_blocks), each holding its
        # cards' rows sorted, each card once; as {card u64 BE: its status byte}.
        status = {}
        for k, v in txn.cursor(db=store.db[CARD_STATUS_DB]):
            rows = np.frombuffer(bytes(v), STATUS_ROW)
            assert (rows["id"] >> np.uint64(card_blocks.BLOCK_SHIFT) == from_be(bytes(k))).all()
            assert (np.diff(rows["id"].astype(np.int64)) > 0).all()
            status.update({struct.pack(">Q", int(c)): bytes([int(st)])
                           for c, st in zip(rows["id"], rows["status"], strict=True)})
        out[CARD_STATUS_DB] = status
    return out


def _add(table: dict, key: bytes, vals: list[int]) -> None:
    row = table.setdefault(key, [0] * len(vals))
    for i, v in enumerate(vals):
        row[i] += v


def recompute(store, tz: int) -> dict[str, dict[bytes, bytes]]:
    j, items = whole_journal(store)
    assert np.all(np.diff(j["seq"].astype(np.int64)) == 1)
    ok = j["result"] == Result.OK
    cardrec = ok & (j["kind"] == RecordKind.KIND_CARD) & (j["card_no"] != 0)
    # A card's store of issue: the store of its first record with prev_seq 0.
    firsts = np.flatnonzero(cardrec & (j["prev_seq"] == 0))
    _, idx = np.unique(j["card_no"][firsts], return_index=True)
    first_at = {int(j["card_no"][i]): (int(j["seq"][i]), int(j["store_id"][i]))
                for i in firsts[idx]}
    operator_of = dict(zip(j["seq"].tolist(), j["operator_id"].tolist(), strict=True))
    sales: dict[bytes, list[int]] = {}
    for r in j[cardrec]:
        seq, card = int(r["seq"]), int(r["card_no"])
        f = first_at.get(card)
        issue = f[1] if f is not None and seq >= f[0] else 0
        new = 1 if f is not None and f[0] == seq else 0
        op = int(r["op_type"])
        operator = int(r["operator_id"])
        if op == OpType.REFUND:
            operator = operator_of.get(int(r["ref_seq"]), operator)
        t = int(r["time_s"]) + tz
        key = struct.pack(">IBIIIBHBBI", t // 86_400, (t % 86_400) // 3_600, int(r["store_id"]),
                          int(r["terminal_id"]), operator, int(r["level_before"]),
                          int(r["category"]), op, int(r["after"]["status"]), issue)
        pd, bd, pts = int(r["principal_delta_fen"]), int(r["bonus_delta_fen"]), int(r["points_delta"])
        payable, coupon, offset = int(r["payable_fen"]), int(r["coupon_fen"]), int(r["offset_fen"])
        ext = payable - coupon - offset if int(r["op_flags"]) & OpFlag.PAY_EXTERNAL else 0
        _add(sales, key, [1, int(r["amount_fen"]), int(r["discount_fen"]), payable, coupon,
                          offset, int(r["offset_points"]), max(pd, 0), max(-pd, 0), max(bd, 0),
                          max(-bd, 0), max(pts, 0), max(-pts, 0), int(r["commission_fen"]), ext,
                          new, 1 if coupon > 0 else 0])
    coupons: dict[bytes, list[int]] = {}
    after_off, tpl_off = JOURNAL.fields["after"][1], COUPON.fields["template_id"][1]
    for r in j[ok & (j["kind"] == RecordKind.KIND_COUPON)]:
        raw = r.tobytes()
        tpl = int.from_bytes(raw[after_off + tpl_off:after_off + tpl_off + 4], "little")
        key = struct.pack(">IIIB", (int(r["time_s"]) + tz) // 86_400, int(r["store_id"]), tpl,
                          int(r["op_type"]))
        _add(coupons, key, [1, int(r["amount_fen"])])
    sku: dict[bytes, list[int]] = {}
    first_seq = int(j["seq"][0]) if len(j) else 1
    for row in items:
        r = j[int(row["seq"]) - first_seq]
        it = row["item"]
        key = struct.pack(">IIHQB", (int(r["time_s"]) + tz) // 86_400, int(r["store_id"]),
                          int(it["category"]), int(it["sku"]), int(r["op_type"]))
        _add(sku, key, [1, int(it["qty"]), int(it["amount_fen"])])
    events, status = card_events(j, cardrec, first_at, tz)
    pack = lambda t: {k: struct.pack(f"<{len(v)}q", *v) for k, v in t.items()}  # noqa: E731
    cards = {struct.pack(">Q", c): struct.pack(">I", s) for c, (_q, s) in first_at.items()}
    return {SALES_DB: pack(sales), SKU_DB: pack(sku), COUPONS_DB: pack(coupons), CARDS_DB: cards,
            CARD_EVENTS_DB: pack({k: v for k, v in events.items() if any(v)}),
            CARD_STATUS_DB: status}


def card_events(j, cardrec, first_at, tz) -> tuple[dict, dict]:
    """rollup_card_events and rollup_card_status, one Python step a record: the status
    before is the after-image of the record the record's prev_seq names."""
    by_seq = {int(r["seq"]): r for r in j[cardrec]}
    events: dict[bytes, list[int]] = {}
    last: dict[int, int] = {}
    for r in j[cardrec]:
        seq, card = int(r["seq"]), int(r["card_no"])
        f = first_at.get(card)
        issue = f[1] if f is not None and seq >= f[0] else 0
        prev = int(r["prev_seq"])
        before = None if prev == 0 else int(by_seq[prev]["after"]["status"])
        after, op = int(r["after"]["status"]), int(r["op_type"])
        moved = after if before != after else None
        replaced = moved == CardStatus.CANCELLED and op == CardOp.REPLACE
        was = before is not None and before != CardStatus.CANCELLED
        key = struct.pack(">II", (int(r["time_s"]) + tz) // 86_400, issue)
        _add(events, key, [int(before is None), int(moved == CardStatus.CANCELLED and not replaced),
                           int(op == CardOp.RENEW), int(replaced),
                           int(moved == CardStatus.DORMANT), int(moved == CardStatus.LOST),
                           int(after != CardStatus.CANCELLED) - int(was)])
        last[card] = after
    return events, {struct.pack(">Q", c): bytes([s]) for c, s in last.items()}
