"""Rollups: the journal summed into fixed-width integer rows, kept up to date off the
hot path, so a report over any window reads rows instead of records.

docs/internals/reports.md gives the data flow and the why; in short:

- A tailer thread (`mms-rollups`) reads the journal blocks after the seq the rollups
  cover (`rollup_meta` key `seq`), sums them with numpy into rows, and merges the rows
  into its LMDB databases in ONE write transaction that also moves `seq`. A crash
  either commits rows and seq together or neither: nothing is half applied or counted
  twice. The committer only pokes it (an Event) after each durable commit.
- The rows are sums of integers, so how the journal is cut into flushes does not
  change them: `rebuild` (from seq 0) gives byte-identical databases (`digest`).
- A report reads the rows of its window and adds the tail of the journal the tailer
  has not reached yet, in the same read transaction: exact to the last commit.

Tables. A logical row is a key (SALES_KEY, ...; big-endian fields, so byte order is
(day, ...) order) and int64 columns. Rows are stored in blocks: one LMDB value per
block key (the key's first BLOCK_FIELDS fields: (day, hour, store) for sales, (day,
store) for the others) holding every row of that block as a packed array of
(the key's other fields, the columns), sorted by those key bytes. A flush rewrites the
blocks it touches (a few hundred puts), not one put per row.
    rollup_sales   (day, hour, store) -> rows of SALES_KEY rest + SALES_COLS
    rollup_sku     (day, store)       -> rows of SKU_KEY rest + SKU_COLS
    rollup_coupons (day, store)       -> rows of COUPON_KEY rest + COUPON_COLS
    rollup_cards   u64 card_no -> u32 store     the store of a card's first record
    rollup_card_events (day)       -> rows of CARD_EVENTS_KEY rest + CARD_EVENTS_COLS
    rollup_card_status u64 block of card_no -> rows STATUS_ROW (card, its status after
                   its last record), sorted by card (core.engine.card_blocks)
    rollup_settlement (day)        -> rows of rollup_lots.SETTLEMENT_KEY rest + its COLS
    rollup_lots, rollup_lot_*      the FIFO lots' state (core.engine.rollup_lots)
    rollup_meta    seq, tz_offset_s, format
Integers only: every sum is int64.
"""

from __future__ import annotations

import contextlib
import datetime
import gc
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterator

import lmdb
import numpy as np

from core import _fastpath
from core.engine import _tally, behaviour, card_blocks, rollup_lots
from core.engine.storage import from_be, group_runs, stable_lexsort, take, u64
from core.records import (
    COUPON,
    ITEM,
    JOURNAL,
    CardOp,
    CardStatus,
    OpFlag,
    OpType,
    RecordKind,
    Result,
)

log = logging.getLogger("mms.rollups")

# 2: rows stored in blocks (format 1, one LMDB value per row, is dropped and rebuilt).
# 3: the behaviour tables (core/engine/behaviour.py), the card events (rollup_card_events,
# rollup_card_status) and the settlement by recharge store (rollup_settlement and the
# lots' state) added; rollups of format 2 have none of them for the seq they cover, so
# they are dropped and the journal summed again.
# 4: member activity (beh_act_first, beh_act_days) added; format 3 is dropped and the
# journal summed again, as 2 was.
# 5: beh_members, beh_cards, rollup_card_status and rollup_lots stored in blocks of ids
# (core.engine.card_blocks) instead of one LMDB value per card; format 4 is dropped
# and the journal summed again.
ROLLUP_FORMAT = 5
# Journal records summed into one rollup transaction at most (read zero-copy from the
# map; what is held is one sales_sum row per distinct key, ~180 bytes, at most one per
# record): a long catch-up (a rebuild) is many bounded transactions.
ROLLUP_FLUSH_RECORDS_MAX = 1_048_576
# Consecutive journal blocks smaller than this are summed as one run (journal_runs).
ROLLUP_RUN_RECORDS = 4_096
# How long the tailer waits for a poke before it looks at the journal anyway.
ROLLUP_POLL_S = 0.5
# The least time between two flushes of the tailer: the commits landing meanwhile are
# summed in one transaction (one fsync, one rewrite of each block touched), so under
# load the rollups trail the journal by about this much (a report adds the tail).
ROLLUP_FLUSH_INTERVAL_S = 1.0
# Under load the tailer takes at most this share of the wall clock (basis points): after
# a flush that took d seconds it waits d * (10000 - duty) / duty before the next, so the
# writer, on the same cores and the same LMDB write lock, keeps the rest. A longer wait
# sums more commits per flush, and a flush costs a rewrite of every block and card it
# touches (a fixed part per flush that does not grow with its records), so it also
# costs less per record.
ROLLUP_DUTY_BP = 2_500
# The lag bound: never more than this between the end of one flush and the next, and
# a flush that found more than ROLLUP_FLUSH_RECORDS_MAX records waiting (a backlog)
# is followed by the next one after ROLLUP_FLUSH_INTERVAL_S only.
ROLLUP_FLUSH_WAIT_MAX_S = 4.0
# The worker process (core.engine.rollup_worker): the most bytes one message between it
# and the tailer may hold (a flush whose puts are larger is computed again over fewer
# records), and how long the tailer waits after a worker died before it starts another.
ROLLUP_WORKER_MESSAGE_BYTES_MAX = 1 << 30
ROLLUP_WORKER_RESTART_S = 1.0
# While the tailer waits for a worker's answer: a worker whose CPU time has not moved
# for ROLLUP_WORKER_STALL_S (stopped, deadlocked, swapped out) or that has not answered
# within ROLLUP_WORKER_ANSWER_S is taken for dead (killed, started again); a flush of
# ROLLUP_FLUSH_RECORDS_MAX records takes ~2 s of CPU on an idle machine.
ROLLUP_WORKER_STALL_S = 10.0
ROLLUP_WORKER_ANSWER_S = 600.0

ROLLUP_META_DB = "rollup_meta"
SALES_DB = "rollup_sales"
SKU_DB = "rollup_sku"
COUPONS_DB = "rollup_coupons"
CARDS_DB = "rollup_cards"
CARD_EVENTS_DB = "rollup_card_events"
CARD_STATUS_DB = "rollup_card_status"
JOURNAL_ITEMS_DB = "journal_items"

# One line item as journalled: the seq of its swipe's record, then the Item.
JOURNAL_ITEM = np.dtype([("seq", "<u8"), ("item", ITEM)])

# Day = days since 1970-01-01 in the chain's time zone (tz_offset_s east of UTC).
SALES_KEY = np.dtype([
    ("day", ">u4"), ("hour", "u1"), ("store", ">u4"), ("terminal", ">u4"),
    ("operator", ">u4"), ("level", "u1"), ("category", ">u2"), ("op_type", "u1"),
    ("status", "u1"), ("issue_store", ">u4")])
SALES_COLS = (
    "n", "amount_fen", "discount_fen", "payable_fen", "coupon_fen", "offset_fen",
    "offset_points", "principal_in_fen", "principal_out_fen", "bonus_in_fen",
    "bonus_out_fen", "points_in", "points_out", "commission_fen", "external_fen",
    "new_cards", "with_coupon")
SKU_KEY = np.dtype([("day", ">u4"), ("store", ">u4"), ("category", ">u2"), ("sku", ">u8"),
                    ("op_type", "u1")])
SKU_COLS = ("lines", "qty", "amount_fen")
COUPON_KEY = np.dtype([("day", ">u4"), ("store", ">u4"), ("template_id", ">u4"),
                       ("op_type", "u1")])
COUPON_COLS = ("n", "amount_fen")
# Card statistics (core.domain.reports.card_stats_report): per (day, store of issue) the
# records that issued a card, moved it to CANCELLED (other than by REPLACE), renewed it,
# replaced it (the old card of a REPLACE), moved it to DORMANT or LOST, and the change of
# the cards in circulation (+1 a record that leaves a card not CANCELLED that was absent
# or CANCELLED before, -1 the other way). The status before is the card's status after
# its previous record, kept in rollup_card_status (card_event_rows).
CARD_EVENTS_KEY = np.dtype([("day", ">u4"), ("issue_store", ">u4")])
CARD_EVENTS_COLS = ("issued", "cancelled", "renewed", "replaced", "dormant", "lost",
                    "circulation")
# A row of rollup_card_status (blocks of card numbers, core.engine.card_blocks).
STATUS_ROW = np.dtype([("id", "<u8"), ("status", "u1")])
# The "status" of a card before its first record.
NO_CARD = -1
# The record codes _tally.card_columns reads (its docstring gives the order).
_COLUMN_CODES = np.array([Result.OK, RecordKind.KIND_CARD, RecordKind.KIND_COUPON, OpType.REFUND],
                         np.int64)
# The record codes _tally.CardTally reads (its docstring gives the order).
_CARD_CODES = np.array([CardStatus.CANCELLED, CardStatus.DORMANT, CardStatus.LOST, CardOp.REPLACE,
                        CardOp.RENEW, *behaviour.VISIT_OPS], np.int64)

TABLES: dict[str, tuple[np.dtype, tuple[str, ...]]] = {
    SALES_DB: (SALES_KEY, SALES_COLS),
    SKU_DB: (SKU_KEY, SKU_COLS),
    COUPONS_DB: (COUPON_KEY, COUPON_COLS),
    CARD_EVENTS_DB: (CARD_EVENTS_KEY, CARD_EVENTS_COLS),
    rollup_lots.SETTLEMENT_DB: (rollup_lots.SETTLEMENT_KEY, rollup_lots.SETTLEMENT_COLS),
}
# How many leading key fields make a table's block key.
BLOCK_FIELDS = {SALES_DB: 3, SKU_DB: 2, COUPONS_DB: 2, CARD_EVENTS_DB: 1,
                rollup_lots.SETTLEMENT_DB: 1}


class _Layout:
    """A table's block key dtype, its row dtype (the other key fields, then the int64
    columns, packed) and the byte width of the block key."""

    def __init__(self, key: np.dtype, cols: tuple[str, ...], nblock: int) -> None:
        names = key.names
        self.key, self.ncols = key, len(cols)
        self.block = np.dtype([(n, key.fields[n][0]) for n in names[:nblock]])
        self.rest = names[nblock:]
        self.row = np.dtype([*((n, key.fields[n][0]) for n in self.rest),
                             ("v", "<i8", (len(cols),))])
        self.bw = self.block.itemsize


LAYOUTS = {t: _Layout(k, c, BLOCK_FIELDS[t]) for t, (k, c) in TABLES.items()}
ROLLUP_DBS = (ROLLUP_META_DB, SALES_DB, SKU_DB, COUPONS_DB, CARDS_DB, CARD_EVENTS_DB,
              CARD_STATUS_DB, rollup_lots.SETTLEMENT_DB, *rollup_lots.STATE_DBS)
# Behaviour per member and card (core/engine/behaviour.py): summed in the same flushes,
# written in the same transactions, dropped and rebuilt with the rollups.
ROLLUP_DBS += behaviour.BEHAVIOUR_DBS

_AFTER_OFF = JOURNAL.fields["after"][1]
_TPL_OFF = COUPON.fields["template_id"][1]
_EPOCH_ORDINAL = datetime.date(1970, 1, 1).toordinal()


def day_of(date: datetime.date) -> int:
    return date.toordinal() - _EPOCH_ORDINAL


def date_of(day: int) -> datetime.date:
    return datetime.date.fromordinal(int(day) + _EPOCH_ORDINAL)


def _words(keys: np.ndarray) -> np.ndarray:
    """n x w native uint64 whose lexicographic order is the keys' byte order (the keys
    zero-padded to whole 8-byte big-endian words)."""
    n, kw = len(keys), keys.dtype.itemsize
    w = -(-kw // 8)
    raw = np.zeros((n, w * 8), np.uint8)
    raw[:, :kw] = np.ascontiguousarray(keys).view(np.uint8).reshape(n, kw)
    return raw.view(">u8").astype(np.uint64)


def reduce_rows(keys: np.ndarray, vals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct keys (ascending as bytes, i.e. LMDB's order) and the int64 sum of
    vals (n x c) per key. Sorted as a few uint64 words (np.lexsort), never as bytes."""
    if len(keys) == 0:
        return keys, vals
    words = _words(keys)
    order = stable_lexsort(words.T[::-1])
    ws = words[order]
    change = np.ones(len(ws), bool)
    change[1:] = np.any(ws[1:] != ws[:-1], axis=1)
    starts = np.flatnonzero(change)
    return keys[order[starts]], np.add.reduceat(vals[order], starts, axis=0)


def concat(arrays, dtype: np.dtype) -> np.ndarray:
    """np.concatenate that keeps a big-endian key dtype (numpy would make it native)."""
    return np.concatenate(arrays).astype(dtype, copy=False)


def sales_sum() -> _tally.Sums:
    """The table a stretch's sales rows are summed in (_tally.sales_add): four key
    words (sales_words), the SALES_COLS summed."""
    assert len(SALES_COLS) == _tally.SALES_NCOLS
    return _tally.Sums((_tally.SUM,) * len(SALES_COLS), 4096, 4)


def sales_words(keys: np.ndarray) -> np.ndarray:
    """sales_sum's key words of SALES_KEY rows (sales_keys' inverse)."""
    u = lambda n: keys[n].astype(np.uint64)  # noqa: E731
    return np.ascontiguousarray(np.stack([
        u("day") << np.uint64(8) | u("hour"),
        u("store") << np.uint64(32) | u("terminal"),
        u("operator") << np.uint64(32) | u("level") << np.uint64(24)
        | u("category") << np.uint64(8) | u("op_type"),
        u("status") << np.uint64(32) | u("issue_store")], axis=1))


def sales_keys(words: np.ndarray) -> np.ndarray:
    """SALES_KEY rows of sales_sum's key words."""
    w0, w1, w2, w3 = (words[:, i] for i in range(4))
    keys = np.zeros(len(words), SALES_KEY)
    keys["day"], keys["hour"] = w0 >> 8, w0 & 0xFF
    keys["store"], keys["terminal"] = w1 >> 32, w1 & 0xFFFF_FFFF
    keys["operator"], keys["level"] = w2 >> 32, (w2 >> 24) & 0xFF
    keys["category"], keys["op_type"] = (w2 >> 8) & 0xFFFF, w2 & 0xFF
    keys["status"], keys["issue_store"] = w3 >> 32, w3 & 0xFFFF_FFFF
    return keys


class _Parts:
    """Rows of a stretch of journal, not yet reduced."""

    def __init__(self) -> None:
        self.keys: dict[str, list[np.ndarray]] = {t: [] for t in TABLES}
        self.vals: dict[str, list[np.ndarray]] = {t: [] for t in TABLES}
        self.new_cards: list[tuple[np.ndarray, np.ndarray]] = []
        self.sales = sales_sum()
        # The card records of the stretch, for card_event_rows and activity_of: summed
        # as they come, in C.
        self.cards = _tally.CardTally(_CARD_CODES)
        # The records that move principal (and the refunds), for rollup_lots.replay.
        self.lot_recs: list[np.ndarray] = []

    def add(self, table: str, keys: np.ndarray, vals: np.ndarray) -> None:
        if len(keys):
            self.keys[table].append(keys)
            self.vals[table].append(vals)

    def reduced(self, sort_sales: bool = True) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Per table: distinct keys and their sums; ascending, but with sort_sales False
        the sales rows come in any order."""
        out = {}
        if len(self.sales):
            words, vals = self.sales.rows()
            self.add(SALES_DB, sales_keys(words), vals)
            self.sales = sales_sum()
        for t, (kd, cols) in TABLES.items():
            if t == SALES_DB and len(self.keys[t]) == 1 and not sort_sales:
                # Distinct already (sales_sum); merged_blocks sorts them with the old rows.
                out[t] = (self.keys[t][0], self.vals[t][0])
            elif self.keys[t]:
                out[t] = reduce_rows(concat(self.keys[t], kd), np.concatenate(self.vals[t]))
            else:
                out[t] = (np.zeros(0, kd), np.zeros((0, len(cols)), np.int64))
        return out


class Summer:
    """Sums journal blocks into rows. Holds the card -> store-of-issue map, which a
    card's first record (prev_seq 0) defines; refunds are filed under the operator of
    the swipe they reverse (the commission report's rule), found in the journal.

    issue holds only what is committed (rollup_cards): the cards a flush meets for the
    first time go into fresh, which the flush's lookups see too, and move into issue
    with commit_fresh once the flush's transaction has committed; a flush that fails
    leaves issue as the database has it (begin_flush drops fresh)."""

    def __init__(self, store, tz_offset_s: int, issue: _fastpath.KeyMap) -> None:
        self.store = store
        self.tz = int(tz_offset_s)
        self.issue = issue
        self.fresh = _fastpath.KeyMap(1024)
        self._swiper: dict[int, int] = {}

    def begin_flush(self) -> None:
        self.fresh = _fastpath.KeyMap(1024)

    def commit_fresh(self, new_cards) -> None:
        """The cards of a committed flush (its parts.new_cards) into issue."""
        for cards, stores in new_cards:
            self.issue.insert_many(cards, np.ones(len(cards), np.uint64),
                                   stores.astype(np.int64))
        self.fresh = _fastpath.KeyMap(1024)

    def _issue_of(self, card: np.ndarray, ones: np.ndarray) -> np.ndarray:
        known = self.issue.lookup_many(card, ones, release_gil=True)   # the tailer's own maps
        miss = np.flatnonzero(known < 0)
        if len(miss):
            known[miss] = self.fresh.lookup_many(card[miss], ones[miss], release_gil=True)
        return known

    def _refund_operators(self, txn, ref_seqs: np.ndarray, own: np.ndarray) -> np.ndarray:
        out = own.astype(np.uint32).copy()
        for j, ref in enumerate(ref_seqs.tolist()):
            who = self._swiper.get(ref)
            if who is None:
                orig = self.store.journal_record(txn, ref) if ref else None
                who = int(orig["operator_id"]) if orig is not None else int(own[j])
                if len(self._swiper) > 1_000_000:
                    self._swiper.clear()
                self._swiper[ref] = who
            out[j] = who
        return out

    def block(self, txn, block: np.ndarray, items: np.ndarray | None, parts: _Parts,
              pending: dict[int, int] | None = None) -> None:
        """Add one journal block (and its line items) to parts. pending, when given,
        collects new cards without touching self.issue (a report's read-only tail)."""
        block = np.ascontiguousarray(block)
        # One pass in C: the OK card records' columns, the OK coupon records, and the
        # settlement's lot records (rollup_lots.LOT_REC).
        lots = np.empty(len(block), rollup_lots.LOT_REC)
        cols, csel, n_lots = _tally.card_columns(block, _COLUMN_CODES, lots)
        if len(cols[0]):
            self._sales(txn, block, cols, parts, pending)
            parts.lot_recs.append(lots[:n_lots])
        if len(csel):
            raw = take(block, csel).view(np.uint8).reshape(len(csel), -1)
            tpl = np.ascontiguousarray(raw[:, _AFTER_OFF + _TPL_OFF:_AFTER_OFF + _TPL_OFF + 4])
            keys = np.zeros(len(csel), COUPON_KEY)
            keys["day"] = (block["time_s"][csel] + self.tz) // 86_400
            keys["store"] = block["store_id"][csel]
            keys["template_id"] = tpl.view("<u4").ravel()
            keys["op_type"] = block["op_type"][csel]
            vals = np.stack([np.ones(len(csel), np.int64),
                             block["amount_fen"][csel].astype(np.int64)], axis=1)
            parts.add(COUPONS_DB, keys, vals)
        if items is not None and len(items):
            first = int(block[0]["seq"])
            items = items[(items["seq"] >= first) & (items["seq"] <= int(block[-1]["seq"]))]
            if len(items):
                idx = (items["seq"] - first).astype(np.int64)
                it = items["item"]
                keys = np.zeros(len(items), SKU_KEY)
                keys["day"] = (block["time_s"][idx] + self.tz) // 86_400
                keys["store"] = block["store_id"][idx]
                keys["category"] = it["category"]
                keys["sku"] = it["sku"]
                keys["op_type"] = block["op_type"][idx]
                vals = np.stack([np.ones(len(items), np.int64), it["qty"].astype(np.int64),
                                 it["amount_fen"].astype(np.int64)], axis=1)
                parts.add(SKU_DB, keys, vals)

    def _sales(self, txn, block, cols, parts, pending) -> None:
        sel, card, first0, store, operator, op, ref = cols
        ones = np.ones(len(sel), np.uint64)
        known = self._issue_of(card, ones)
        first = first0 & (known < 0)
        if pending is not None:
            for j in np.flatnonzero(known < 0).tolist():
                c = int(card[j])
                if c in pending:
                    known[j] = pending[c]
                    first[j] = False
        if first.any():
            # A card's first record names its store of issue (once, if a block holds two).
            fi = np.flatnonzero(first)
            _, once = np.unique(card[fi], return_index=True)
            dup = np.ones(len(fi), bool)
            dup[once] = False
            first[fi[dup]] = False
            fi = np.flatnonzero(first)
            if pending is None:
                self.fresh.insert_many(card[fi], ones[fi], store[fi].astype(np.int64))
                parts.new_cards.append((card[fi].copy(), store[fi].astype(np.uint32)))
            else:
                pending.update(zip(card[fi].tolist(), store[fi].tolist(), strict=True))
            if pending is None:
                known = self._issue_of(card, ones)
            else:
                known = np.array([pending.get(c, k) if k < 0 else k
                                  for c, k in zip(card.tolist(), known.tolist(), strict=True)],
                                 np.int64)
        rf = np.flatnonzero(op == OpType.REFUND)
        if len(rf):
            operator[rf] = self._refund_operators(txn, ref[rf], operator[rf])
        # Keys and sums of the records themselves: one pass in C (_tally.sales_add).
        issue_store = np.where(known >= 0, known, 0).astype(np.int64)
        _tally.sales_add(parts.sales, block, sel, issue_store, first.view(np.uint8), operator,
                         self.tz, int(OpFlag.PAY_EXTERNAL))
        parts.cards.add(block, sel, issue_store, self.tz)


def card_event_rows(parts: _Parts, status) -> tuple[np.ndarray, np.ndarray]:
    """Add the card events of parts' card records to parts (CARD_EVENTS_DB rows) and
    return the rollup_card_status changes they make: (cards, each one's status after
    its last record) for every card whose status is new or moved, by card. status looks up a
    card's status after its last record before the stretch (lookup_many; < 0: none).
    Nothing here writes: the caller puts the changes (status_puts).

    A record's status before is the after-image of the card's previous record: the
    previous record of the same card in the stretch, else status; NO_CARD for a
    card's first record (prev_seq 0). parts.cards (_tally.CardTally) has the events of
    every record but each card's first in the stretch already; its heads are summed
    here, once their cards' statuses are looked up."""
    tally = parts.cards
    cards = tally.head_cards()
    if len(cards) == 0:
        return np.zeros(0, np.uint64), np.zeros(0, np.int64)
    known = np.asarray(status.lookup_many(cards, np.ones(len(cards), np.uint64)), np.int64)
    moved, final = tally.finish_events(np.ascontiguousarray(known))
    k, vals = tally.events.rows()
    if len(k):
        keys = np.zeros(len(k), CARD_EVENTS_KEY)
        keys["day"], keys["issue_store"] = k[:, 0] >> np.uint64(32), k[:, 0] & np.uint64(0xFFFF_FFFF)
        parts.add(CARD_EVENTS_DB, keys, vals)
    return np.asarray(moved, np.uint64), np.asarray(final, np.int64)


def status_puts(status: _BlockStatus, moved: np.ndarray,
                final: np.ndarray) -> list[tuple[bytes, bytes]]:
    """The rollup_card_status values (blocks of card numbers, core.engine.card_blocks)
    that record final as the status of the cards moved (distinct; by card, among those
    status looked up: their blocks are the ones it read)."""
    if len(moved) == 0:
        return []
    rows = np.zeros(len(moved), STATUS_ROW)
    rows["id"], rows["status"] = moved, final
    return card_blocks.puts(status.rows, rows["id"], rows, one_per_id=True)


def activity_of(parts: _Parts):
    """Member activity of parts' card records (kept by parts.cards, _tally.CardTally):
    (first: key, issue store, first_seen, first_visit, each day + 1 and 0 for none, one
    row per pair, sorted), (visits: day, key, issue store, visits, one row per (day,
    pair) with a visit, sorted)."""
    tally = parts.cards
    k, v = tally.first.rows()
    key, issue = k[:, 0].view(np.int64), k[:, 1].astype(np.int64)
    order, _ = group_runs(key, issue)
    first = (key[order], issue[order], v[order, 0], v[order, 1])
    k, v = tally.visits.rows()
    key, day = k[:, 0].view(np.int64), (k[:, 1] >> np.uint64(32)).astype(np.int64)
    issue = (k[:, 1] & np.uint64(0xFFFF_FFFF)).astype(np.int64)
    order, _ = group_runs(day, key, issue)
    return first, (day[order], key[order], issue[order], v[order, 0])


def member_activity(store, tz: int, day_from: int, day_to: int, txn=None) -> np.ndarray:
    """behaviour.activity_matrix of [day_from, day_to) as of the journal's last commit:
    the stored activity plus the tail the tailer has not summed yet, in one read."""
    if txn is None:
        with store.read() as t:
            return member_activity(store, tz, day_from, day_to, t)
    if format_ok(store, txn):
        first, visits = behaviour.read_activity(store, txn, day_from, day_to)
    else:                       # nothing stored counts: the tail is the whole journal
        z = np.zeros(0, np.int64)
        first, visits = (z, z, z, z), (z, z, z, z)
    tail = list(journal_with_items(store, txn, covered_seq(store, txn)))
    if tail:
        parts = _Parts()
        summer = Summer(store, tz, _tail_issue_map(store, txn))
        pending: dict[int, int] = {}
        for block, items in tail:
            summer.block(txn, block, items, parts, pending)
        tf, tv = activity_of(parts)
        first = tuple(np.concatenate((a, b)) for a, b in zip(first, tf, strict=True))
        visits = tuple(np.concatenate((a, b)) for a, b in zip(visits, tv, strict=True))
    return behaviour.activity_matrix(first, visits, day_from, day_to)


def settlement_rows(parts: _Parts, store, txn, tz: int) -> dict[str, list[tuple[bytes, bytes]]]:
    """Replay parts' lot records over the lots stored as of the stretch's start (read in
    txn): their settlement rows into parts, the lots' state puts returned."""
    recs, parts.lot_recs = parts.lot_recs, []
    keys, vals, puts = rollup_lots.replay(store, txn, recs, tz)
    parts.add(rollup_lots.SETTLEMENT_DB, keys, vals)
    return puts


class _BlockStatus:
    """card -> status after its last summed record, read from rollup_card_status's
    blocks in txn (the tailer's flush and a report's tail): the blocks of the cards
    looked up are read once and kept (rows), for status_puts."""

    def __init__(self, store, txn) -> None:
        self.db, self.txn = store.db[CARD_STATUS_DB], txn
        self.rows = np.zeros(0, STATUS_ROW)

    def lookup_many(self, cards: np.ndarray, _ones: np.ndarray) -> np.ndarray:
        cards = np.asarray(cards, np.uint64)
        rows = self.rows = card_blocks.read_blocks(
            self.txn, self.db, card_blocks.blocks_of(cards), STATUS_ROW)
        at = card_blocks.find(rows, cards)
        out = np.full(len(cards), -1, np.int64)
        ok = at >= 0
        out[ok] = rows["status"][at[ok]]
        return out


def items_of(store, txn, block_key: bytes) -> np.ndarray | None:
    """The line items journalled with the block whose key (last seq) is block_key."""
    db = store.db.get(JOURNAL_ITEMS_DB)
    if db is None:
        return None
    raw = txn.get(block_key, db=db)
    return None if raw is None else np.frombuffer(raw, dtype=JOURNAL_ITEM)


def journal_with_items(store, txn, after_seq: int) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    for block in store.journal_blocks(txn, after_seq):
        if len(block):
            yield block, items_of(store, txn, u64(int(block[-1]["seq"])))


def journal_runs(store, txn, after_seq: int,
                 records: int | None = None) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """journal_with_items with consecutive small blocks (seqs that follow on) joined,
    copied, into runs of at most `records` records: the tailer's per-block work (a few
    dozen numpy calls) then runs once per run, not once per group commit (at 2,000 unary
    swipes/s a commit holds 1-3 records, and that per-block part was most of a flush's
    CPU; docs/benchmarks.md, h11k). The records and items are the same, in order."""
    records = ROLLUP_RUN_RECORDS if records is None else records
    run: list[np.ndarray] = []
    items: list[np.ndarray] = []
    held = 0

    def joined():
        # As bytes: np.concatenate of a nested record dtype promotes its fields per
        # array (~40 us a block, as much as the per-block work it saves).
        block = run[0] if len(run) == 1 else np.frombuffer(b"".join(run), run[0].dtype)
        its = (None if not items else items[0] if len(items) == 1
               else np.frombuffer(b"".join(items), items[0].dtype))
        return block, its

    for block, its in journal_with_items(store, txn, after_seq):
        if run and (held + len(block) > records
                    or int(block[0]["seq"]) != int(run[-1][-1]["seq"]) + 1):
            yield joined()
            run, items, held = [], [], 0
        if len(block) >= records:
            yield block, its
            continue
        run.append(block)
        if its is not None and len(its):
            items.append(its)
        held += len(block)
    if run:
        yield joined()


def ensure_dbs(store) -> None:
    """Open (create) the rollup databases; call before any other thread writes."""
    missing = [n for n in (*ROLLUP_DBS, JOURNAL_ITEMS_DB) if n not in store.db]
    if missing:
        with store.env.begin(write=True) as txn:
            for n in missing:
                store.named_db(n, txn)


def load_issue_map(store, txn) -> _fastpath.KeyMap:
    cur = txn.cursor(db=store.db[CARDS_DB])
    keys = np.frombuffer(b"".join(cur.iternext(keys=True, values=False)), ">u8").astype(np.uint64)
    cur = txn.cursor(db=store.db[CARDS_DB])
    vals = np.frombuffer(b"".join(cur.iternext(keys=False, values=True)), ">u4").astype(np.int64)
    m = _fastpath.KeyMap(max(1024, len(keys)))
    if len(keys):
        m.insert_many(keys, np.ones(len(keys), np.uint64), vals)
    return m


def format_ok(store, txn) -> bool:
    """Whether the stored rollups (if any) are in this module's format."""
    raw = txn.get(b"format", db=store.db[ROLLUP_META_DB])
    return raw is None or from_be(raw) == ROLLUP_FORMAT


def covered_seq(store, txn) -> int:
    """The last journal seq the stored rollups cover (0: none, or an old format)."""
    raw = txn.get(b"seq", db=store.db[ROLLUP_META_DB])
    return 0 if raw is None or not format_ok(store, txn) else from_be(raw)


def digest(store) -> str:
    """BLAKE2b of every rollup database (LMDB order) and the covered seq: equal digests
    mean byte-identical rollups."""
    h = hashlib.blake2b(digest_size=16)
    with store.read() as txn:
        for name in (*TABLES, CARDS_DB, CARD_STATUS_DB, *rollup_lots.STATE_DBS,
                     *behaviour.BEHAVIOUR_DBS):
            h.update(name.encode() + b"\0")
            for k, v in txn.cursor(db=store.db[name]):
                h.update(len(k).to_bytes(4, "big") + k + len(v).to_bytes(4, "big") + v)
        h.update(b"seq" + u64(covered_seq(store, txn)))
    return h.hexdigest()


# --- the cyclic collector during a flush ---------------------------------------------
# A flush builds its puts as lists of (key, value) tuples, up to a few per record of
# ROLLUP_FLUSH_RECORDS_MAX, which live until its write commits. Each is a tracked object:
# the young collections they trigger promote them, and the full collections that
# follow walk all of them (measured: 23 full collections, 2.2 s of a 1M-swipe
# `mms bench engine` run, against 0.47 s of collection in all with it paused). They
# hold no cycles, so reference counting frees them when the flush ends; the collector
# is off meanwhile, for the whole process (cycles made elsewhere wait for the next
# collection), and on again, if it was, once no flush of any tailer is running.
_gc_lock = threading.Lock()
_gc_pausers = 0
_gc_was_enabled = False


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    global _gc_pausers, _gc_was_enabled
    with _gc_lock:
        if _gc_pausers == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_pausers += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_pausers -= 1
            if _gc_pausers == 0 and _gc_was_enabled:
                gc.enable()


def flush_stats(records: int, puts: dict[str, list[tuple[bytes, bytes]]], t0: float,
                c0: float, t1: float, c1: float, timing: tuple[float, ...]) -> dict:
    """What Rollups.on_flush gets of one flush (a diagnostic; seconds as floats, no
    money): its records, per table the values put and their bytes, the wall and thread
    CPU of the compute before the write transaction, the wait for LMDB's write lock,
    its hold (from the lock to the commit's end) split into puts and commit (the
    fsync), and the thread CPU of each."""
    ask, got, put, end, cpu_puts, cpu_commit = timing
    return {"records": records, "t_start": t0, "t_lock": got, "t_end": end,
            "puts": {t: len(p) for t, p in puts.items() if p},
            "bytes": {t: sum(len(v) for _k, v in p) for t, p in puts.items() if p},
            "compute_s": t1 - t0, "compute_cpu_s": c1 - c0, "lock_wait_s": got - ask,
            "hold_s": end - got, "puts_s": put - got, "commit_s": end - put,
            "puts_cpu_s": cpu_puts, "commit_cpu_s": cpu_commit}


def flush_wait_s(took_s: float, records: int) -> float:
    """How long the tailer waits after a flush of records that took took_s seconds
    (ROLLUP_DUTY_BP, bounded by ROLLUP_FLUSH_WAIT_MAX_S; durations in seconds, not
    money)."""
    if records >= ROLLUP_FLUSH_RECORDS_MAX:
        return ROLLUP_FLUSH_INTERVAL_S
    duty = took_s * (10_000 - ROLLUP_DUTY_BP) / ROLLUP_DUTY_BP
    return min(ROLLUP_FLUSH_WAIT_MAX_S, max(ROLLUP_FLUSH_INTERVAL_S, duty))


def compute_flush(store, summer: Summer, beh: behaviour.Behaviour, seq: int,
                  records_max: int):
    """The compute of one flush: the journal after seq (at most about records_max
    records) summed and merged into the stored blocks, read in one read transaction.
    Returns (puts per table, the new cards, the last seq summed, records) or None when
    nothing follows seq. Writes nothing (the tailer's _write does); the same in the
    tailer's thread and in the worker process (core.engine.rollup_worker)."""
    parts, upto, n = _Parts(), seq, 0
    beh.clear()                 # rows of a flush that failed are summed again
    summer.begin_flush()        # and so are its new cards' stores of issue
    # Zero-copy: blocks are views of the map, valid while txn is (nothing of them is
    # kept: Summer copies what it keeps).
    with store.gate.reading(), store.env.begin(buffers=True) as txn:
        runs = journal_runs(store, txn, seq, min(ROLLUP_RUN_RECORDS, records_max))
        for block, items in runs:
            summer.block(txn, block, items, parts)
            beh.block(store, txn, block, summer.tz)
            upto = int(block[-1]["seq"])
            n += len(block)
            if n >= records_max:
                break
        if n == 0:
            return None
        # The blocks are merged here, outside the write transaction: the tailer is the
        # rollups' only writer, so what it read is still theirs, and the write holds
        # LMDB's lock (which the committer needs) only for the puts.
        sales, parts.sales = parts.sales, sales_sum()
        activity = behaviour.activity_puts(store, txn, activity_of(parts))
        known = _BlockStatus(store, txn)
        moved = card_event_rows(parts, known)
        lot_puts = settlement_rows(parts, store, txn, summer.tz)
        puts = {t: merged_blocks(txn, store, t, k, v)
                for t, (k, v) in parts.reduced().items() if t != SALES_DB}
        puts[SALES_DB] = merged_sales(txn, store, sales)
        puts[CARD_STATUS_DB] = status_puts(known, *moved)
        puts.update(lot_puts)
        puts.update(beh.puts(store, txn))
        puts.update(activity)
    return puts, parts.new_cards, upto, n


class WorkerDied(RuntimeError):
    """The rollup worker process ended (or broke its pipe) before answering."""


class Rollups:
    """The tailer: keeps the rollup databases at the journal's end.

    grow is called after MDB_MAP_FULL with no transaction of ours open; in an engine it
    asks the writer to grow the map (nothing else holds a write then)."""

    def __init__(self, store, tz_offset_s: int, *, grow: Callable[[], None] | None = None,
                 last_seq: Callable[[], int] | None = None,
                 worker: Callable[[Rollups], object] | None = None) -> None:
        """worker, when given, starts the process that computes the flushes
        (core.engine.rollup_worker.start: called with this tailer, it returns the
        process's handle: flush, ack, close, pid); without it they are computed here."""
        self.store = store
        self._grow = grow or store.grow
        self._last_seq = last_seq
        ensure_dbs(store)
        with store.read() as txn:
            stale = not format_ok(store, txn)
        if stale:  # rows of an older layout: drop them, the tailer sums the journal again
            log.warning("rollups are in an older format: summing the journal again")
            with store.gate.reading(), store.env.begin(write=True) as txn:
                for name in ROLLUP_DBS:
                    txn.drop(store.db[name], delete=False)
        with store.read() as txn:
            raw = txn.get(b"tz_offset_s", db=store.db[ROLLUP_META_DB])
            self.seq = covered_seq(store, txn)
            # With a worker the card -> store map is the worker's (it loads its own).
            issue = None if worker is not None else load_issue_map(store, txn)
        # The zone the rows were cut in stays theirs: a new zone needs a rebuild.
        self.tz = int.from_bytes(raw, "big", signed=True) if raw is not None else int(tz_offset_s)
        if raw is not None and self.tz != int(tz_offset_s):
            log.warning("rollups are in tz_offset_s %d, the rules say %d: run "
                        "`mms report rebuild` to cut them again", self.tz, tz_offset_s)
        self.summer: Summer | None = None if issue is None else Summer(store, self.tz, issue)
        self.behaviour = behaviour.Behaviour()
        self._worker_factory = worker
        self._worker = None
        self._in_process = False        # the worker failed at close: the last flushes here
        self._restart_at = 0.0
        # Workers started, and started again after one died (metrics).
        self.worker_starts = 0
        self.worker_restarts = 0
        # Test hook (tests/crash/test_rollup_worker_crash.py): a worker started while
        # this is an fd writes b"H" to it once it has computed a flush, and waits there.
        self.worker_hold_fd: int | None = None
        self._lock = threading.Lock()           # one catch-up or rebuild at a time
        self._cond = threading.Condition()
        self._wake = threading.Event()
        self._hurry = threading.Event()         # wait_for / close: skip the flush interval
        self._stop = False
        self._thread: threading.Thread | None = None
        # Test hook: called inside the rollup write transaction, after its puts.
        self.before_commit: Callable[[], None] | None = None
        # Diagnostic hook (bench/rollup_stall.py): called after each flush's commit with
        # a dict of its records, puts, bytes and timings (flush_stats' keys).
        self.on_flush: Callable[[dict], None] | None = None
        self.error: BaseException | None = None

    # --- the thread -----------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="mms-rollups", daemon=True)
        self._thread.start()

    def poke(self) -> None:
        self._wake.set()

    def _loop(self) -> None:
        try:
            self._loop_flushes()
        finally:
            if self._worker_factory is not None:
                # The worker was started by this thread (its PR_SET_PDEATHSIG is tied to
                # it): the last catch-up of close runs here, then the worker stops.
                try:
                    if self._stop:
                        self.catch_up()
                except Exception as exc:
                    self.error = exc
                    log.exception("the rollup worker's last catch-up failed")
                with self._lock:
                    self._stop_worker()

    def _loop_flushes(self) -> None:
        while not self._stop:
            self._wake.wait(ROLLUP_POLL_S)
            self._wake.clear()
            if self._stop:
                break
            t = time.monotonic()
            try:
                n = self.catch_up(once=True)
                self.error = None
            except Exception as exc:  # the journal still holds everything: try again later
                n = 0
                self.error = exc
                log.exception("rollup catch-up failed")
            if n:
                # Let commits gather: the next flush sums all of them at once.
                self._hurry.wait(flush_wait_s(time.monotonic() - t, n))
                self._hurry.clear()

    def close(self) -> None:
        """Stop the thread after a last catch-up (the engine's writer has stopped)."""
        self._stop = True
        self._wake.set()
        self._hurry.set()
        if self._thread is not None:
            self._thread.join()
        if self._worker_factory is not None:
            if not self._pending():
                self._finish_close()
                return
            self._restart_at = 0.0      # what the thread left: a worker of this thread
        try:
            self.catch_up()
        except WorkerDied:
            # No worker to be had: the last records are summed in this process.
            self._in_process = True
            self.catch_up()
        finally:
            with self._lock:
                self._stop_worker()
        self._finish_close()

    def _pending(self) -> bool:
        """Whether the journal holds records after the covered seq."""
        with self.store.read() as txn:
            return self.store.last_seq(txn) > self.seq

    def _finish_close(self) -> None:
        # grow is the engine's bound method and the engine holds this tailer: without
        # this the pair (the engine's tables, the last flush's sums) waits for a full
        # cyclic collection after close (300-600 MB a bench run, docs/benchmarks.md h11k).
        self._grow, self._last_seq = self.store.grow, None
        self.behaviour.clear()

    def wait_for(self, seq: int) -> None:
        """Block until the rollups cover seq (tests, `mms report rebuild`)."""
        with self._cond:
            while self.seq < seq:
                if self._thread is None or not self._thread.is_alive():
                    break
                self._wake.set()
                self._hurry.set()
                self._cond.wait(ROLLUP_POLL_S)
        if self.seq < seq:
            self.catch_up()

    # --- catching up ----------------------------------------------------------------

    def catch_up(self, once: bool = False) -> int:
        """Sum every journal record after the covered seq into the rollups, in bounded
        transactions (with once, one transaction: the thread's pace); returns the
        records summed."""
        done = 0
        with self._lock:
            while True:
                with collector_paused():
                    n = self._flush_once()
                done += n
                if n == 0 or once:
                    return done

    def _flush_once(self) -> int:
        if self._worker_factory is not None and not self._in_process:
            return self._flush_by_worker()
        t0, c0 = time.perf_counter(), time.thread_time()
        if self.summer is None:     # the worker kept it: load it as the rows stand
            with self.store.read() as txn:
                self.summer = Summer(self.store, self.tz, load_issue_map(self.store, txn))
        flush = compute_flush(self.store, self.summer, self.behaviour, self.seq,
                              ROLLUP_FLUSH_RECORDS_MAX)
        if flush is None:
            return 0
        puts, new_cards, upto, n = flush
        t1, c1 = time.perf_counter(), time.thread_time()
        timing = self._write(puts, new_cards, upto)
        if self.on_flush is not None:
            self.on_flush(flush_stats(n, puts, t0, c0, t1, c1, timing))
        # Committed: only now do the in-memory maps move with the database.
        self.summer.commit_fresh(new_cards)
        with self._cond:
            self.seq = upto
            self._cond.notify_all()
        return n

    def _flush_by_worker(self) -> int:
        """One flush computed by the worker process (core.engine.rollup_worker): its
        puts received (the wait in os.read, without the GIL), written here by _write as
        an in-process flush's, then acknowledged, so the worker moves its maps on (and
        reads the blocks it merges into next) only once they are committed. A worker
        that died is started again after ROLLUP_WORKER_RESTART_S; nothing of its flush
        was written, so the next one sums the same records again."""
        worker = self._worker
        if worker is None:
            if time.monotonic() < self._restart_at:
                return 0
            self.worker_starts += 1
            # A start that fails (no fds, no processes) is tried again after the same
            # pause as a death, not at every poll.
            self._restart_at = time.monotonic() + ROLLUP_WORKER_RESTART_S
            worker = self._worker = self._worker_factory(self)
        t0, c0 = time.perf_counter(), time.thread_time()
        try:
            flush = worker.flush(self.seq, ROLLUP_FLUSH_RECORDS_MAX)
        except WorkerDied:
            self._lost_worker()
            raise
        if flush is None:
            return 0
        t1, c1 = time.perf_counter(), time.thread_time()
        try:
            timing = self._write(flush.puts, flush.new_cards, flush.upto)
        except BaseException:
            with contextlib.suppress(WorkerDied):
                worker.ack(False)
            raise
        try:
            worker.ack(True)
        except WorkerDied:
            self._lost_worker()     # committed: the next worker loads what was written
        if self.on_flush is not None:
            stats = flush_stats(flush.n, flush.puts, t0, c0, t1, c1, timing)
            stats["worker_compute_s"], stats["worker_compute_cpu_s"] = flush.compute_s, flush.compute_cpu_s
            self.on_flush(stats)
        self.summer = None          # the parent's maps (a fallback's) are stale now
        with self._cond:
            self.seq = flush.upto
            self._cond.notify_all()
        return flush.n

    def _lost_worker(self) -> None:
        worker, self._worker = self._worker, None
        self.worker_restarts += 1       # the next flush starts another
        self._restart_at = time.monotonic() + ROLLUP_WORKER_RESTART_S
        if worker is not None:
            worker.close()

    def _stop_worker(self) -> None:
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.close()

    @property
    def worker_pid(self) -> int | None:
        """The worker process's pid (None: none running, or in-process compute)."""
        worker = self._worker
        return None if worker is None else worker.pid

    def _write(self, puts: dict[str, list[tuple[bytes, bytes]]], new_cards,
               upto: int) -> tuple[float, ...]:
        """Put the flush in one write transaction with the seq it covers; returns the
        perf_counter times (asked for the write lock, got it, puts done, committed) and
        the thread CPU of the puts and of the commit."""
        store = self.store
        cards = [(u64(c), int(s).to_bytes(4, "big"))
                 for cs, ss in new_cards for c, s in zip(cs.tolist(), ss.tolist(), strict=True)]
        while True:
            try:
                ask = time.perf_counter()
                with store.gate.reading(), store.env.begin(write=True) as txn:
                    got, c0 = time.perf_counter(), time.thread_time()
                    if covered_seq(store, txn) != self.seq:
                        raise RuntimeError("another writer moved the rollups")
                    for table, pairs in puts.items():
                        if pairs:
                            txn.cursor(db=store.db[table]).putmulti(pairs)
                    if cards:
                        txn.cursor(db=store.db[CARDS_DB]).putmulti(cards)
                    meta = store.db[ROLLUP_META_DB]
                    txn.put(b"seq", u64(upto), db=meta)
                    txn.put(b"tz_offset_s", self.tz.to_bytes(8, "big", signed=True), db=meta)
                    txn.put(b"format", ROLLUP_FORMAT.to_bytes(4, "big"), db=meta)
                    if self.before_commit is not None:
                        self.before_commit()
                    put, c1 = time.perf_counter(), time.thread_time()
                return ask, got, put, time.perf_counter(), c1 - c0, time.thread_time() - c1
            except lmdb.MapFullError:
                self._grow()

    def rebuild(self, tz_offset_s: int | None = None) -> int:
        """Empty the rollups and sum the whole journal again (in the zone given, else
        theirs); returns the records summed."""
        with self._lock:
            store = self.store
            with store.gate.reading(), store.env.begin(write=True) as txn:
                for name in ROLLUP_DBS:
                    txn.drop(store.db[name], delete=False)
            if tz_offset_s is not None:
                self.tz = int(tz_offset_s)
            self.summer = Summer(store, self.tz, _fastpath.KeyMap(1024))
            self._stop_worker()         # its maps are of the rows dropped: a fresh one
            with self._cond:
                self.seq = 0
        return self.catch_up()


def _block_starts(lay, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The keys as rows of bytes, and the index of each row that starts a block (a new
    block-key prefix of lay.bw bytes); keys are non-empty, ascending as bytes."""
    raw = np.ascontiguousarray(keys).view(np.uint8).reshape(len(keys), -1)
    pre = np.ascontiguousarray(raw[:, :lay.bw]).view(f"V{lay.bw}").ravel()
    return raw, np.flatnonzero(np.concatenate(([True], pre[1:] != pre[:-1])))


def encode_blocks(table: str, keys: np.ndarray, vals: np.ndarray) -> list[tuple[bytes, bytes]]:
    """(block key, value) pairs of reduced rows (keys distinct, ascending as bytes)."""
    lay = LAYOUTS[table]
    if len(keys) == 0:
        return []
    raw, starts = _block_starts(lay, keys)
    rows = np.zeros(len(keys), lay.row)
    for n in lay.rest:
        rows[n] = keys[n]
    rows["v"] = vals
    body = rows.tobytes()
    rw = lay.row.itemsize
    ends = np.append(starts[1:], len(keys)).tolist()
    return [(raw[a, :lay.bw].tobytes(), body[a * rw:b * rw])
            for a, b in zip(starts.tolist(), ends, strict=True)]


def decode_blocks(table: str, pairs) -> tuple[np.ndarray, np.ndarray]:
    """Full keys and n x c int64 columns of (block key, value) pairs."""
    lay = LAYOUTS[table]
    pres, bodies = [], []
    for k, v in pairs:
        pres.append(bytes(k))
        bodies.append(bytes(v))
    if not pres:
        return np.zeros(0, lay.key), np.zeros((0, lay.ncols), np.int64)
    rows = np.frombuffer(b"".join(bodies), lay.row)
    counts = np.array([len(b) // lay.row.itemsize for b in bodies], np.int64)
    blocks = np.repeat(np.frombuffer(b"".join(pres), lay.block), counts)
    keys = np.zeros(len(rows), lay.key)
    for n in lay.block.names:
        keys[n] = blocks[n]
    for n in lay.rest:
        keys[n] = rows[n]
    return keys, rows["v"].astype(np.int64).reshape(len(rows), lay.ncols)


def merged_blocks(txn, store, table: str, keys: np.ndarray,
                  vals: np.ndarray) -> list[tuple[bytes, bytes]]:
    """The blocks that adding rows (keys, vals: distinct, ascending as bytes, as
    reduce_rows gives them) to the table makes: each block they touch read and the
    rows merged into it (merge_into_blocks)."""
    lay = LAYOUTS[table]
    if len(keys) == 0:
        return []
    raw, starts = _block_starts(lay, keys)
    bkeys = [raw[a, :lay.bw].tobytes() for a in starts.tolist()]
    old = list(txn.cursor(db=store.db[table]).getmulti(bkeys))
    return merge_into_blocks(table, old, keys, vals)


def merge_into_blocks(table: str, old, keys: np.ndarray,
                      vals: np.ndarray) -> list[tuple[bytes, bytes]]:
    """encode_blocks of the stored rows of old ((block key, value) pairs in key order)
    plus the rows (keys, vals: distinct, ascending as bytes), without sorting the stored
    rows again: each block's rows are sorted already, so the new rows are found among
    them by a binary search of their key bytes, added where their key is stored (sums
    checked against int64 overflow, as _tally.Sums) and inserted where it is not. The
    same bytes as decoding, summing, sorting and encoding everything (rebuild's digest);
    at a live flush's few thousand rows it costs a copy of the blocks touched, not a
    sort of every row of the current hour (docs/benchmarks.md, h11k)."""
    lay = LAYOUTS[table]
    if len(keys) == 0:
        return []
    kw, rw = keys.dtype.itemsize, lay.row.itemsize
    keys = np.ascontiguousarray(keys)
    # Fixed-width byte strings compare as memcmp (their trailing NULs are ignored
    # alike): LMDB's order of the full keys.
    full = keys.view(f"S{kw}").ravel()
    rows = np.zeros(len(keys), lay.row)
    for n in lay.rest:
        rows[n] = keys[n]
    rows["v"] = vals
    if old:
        counts = np.array([len(v) // rw for _k, v in old], np.int64)
        have = np.frombuffer(bytearray().join(v for _k, v in old), lay.row)
        raw = np.empty((len(have), kw), np.uint8)
        heads = np.frombuffer(b"".join(bytes(k) for k, _v in old), np.uint8)
        raw[:, :lay.bw] = np.repeat(heads.reshape(len(old), lay.bw), counts, axis=0)
        raw[:, lay.bw:] = have.view(np.uint8).reshape(len(have), rw)[:, :kw - lay.bw]
        have_full = raw.view(f"S{kw}").ravel()
        at = np.searchsorted(have_full, full)
        hit = at < len(have_full)
        hit[hit] = have_full[at[hit]] == full[hit]
        if hit.any():
            a, b = have["v"][at[hit]], rows["v"][hit]
            s = a + b
            if ((a ^ s) & (b ^ s) < 0).any():
                raise OverflowError("a rollup sum overflows int64")
            have["v"][at[hit]] = s
        miss = ~hit
        if miss.any():
            have = np.insert(have, at[miss], rows[miss])
            have_full = np.insert(have_full, at[miss], full[miss])
        rows, full = have, have_full
    pre = np.ascontiguousarray(full).view(np.uint8).reshape(len(rows), kw)[:, :lay.bw]
    pre_v = np.ascontiguousarray(pre).view(f"V{lay.bw}").ravel()
    starts = np.flatnonzero(np.concatenate(([True], pre_v[1:] != pre_v[:-1])))
    # Zero-copy slices of the merged rows (the memoryview keeps them alive until put).
    body = memoryview(np.ascontiguousarray(rows).view(np.uint8).reshape(-1))
    ends = np.append(starts[1:], len(rows)).tolist()
    return [(pre[a].tobytes(), body[a * rw:b * rw])
            for a, b in zip(starts.tolist(), ends, strict=True)]


def merged_sales(txn, store, sales: _tally.Sums) -> list[tuple[bytes, bytes]]:
    """merged_blocks for the sales rows of a flush, still in their sales_sum: only the
    flush's distinct rows are sorted (their key words are in key order), then merged
    into the blocks they touch (merge_into_blocks)."""
    if len(sales) == 0:
        return []
    words, vals = sales.rows()
    order = stable_lexsort(words.T[::-1])
    return merged_blocks(txn, store, SALES_DB, sales_keys(words[order]),
                         np.ascontiguousarray(vals[order]))


def add_rows(txn, store, table: str, keys: np.ndarray, vals: np.ndarray) -> None:
    """Add rows (any order, repeats allowed) to a table inside a write transaction."""
    keys, vals = reduce_rows(concat((keys,), LAYOUTS[table].key), np.asarray(vals, np.int64))
    txn.cursor(db=store.db[table]).putmulti(merged_blocks(txn, store, table, keys, vals))


def read_rows(txn, store, table: str, day_from: int,
              day_to: int) -> tuple[np.ndarray, np.ndarray]:
    """The rows of days [day_from, day_to) of one table (full keys, int64 columns)."""
    if not format_ok(store, txn):
        return decode_blocks(table, ())
    cur = txn.cursor(db=store.db[table])
    pairs = []
    if cur.set_range(int(day_from).to_bytes(4, "big")):
        stop = int(day_to).to_bytes(4, "big")
        for k, v in cur:
            if bytes(k[:4]) >= stop:
                break
            pairs.append((k, v))
    return decode_blocks(table, pairs)


def rows_of(store, table: str, txn=None) -> tuple[np.ndarray, np.ndarray]:
    """Every stored row of a table, without the journal tail."""
    if txn is None:
        with store.read() as t:
            return rows_of(store, table, t)
    return decode_blocks(table, txn.cursor(db=store.db[table]))


def snapshot(store, summer_tz: int, table: str, day_from: int, day_to: int,
             txn=None) -> tuple[np.ndarray, np.ndarray]:
    """The rows of [day_from, day_to) as of the journal's last commit: the stored rows
    plus the tail the tailer has not summed yet, read in one transaction."""
    key_dtype, cols = TABLES[table]
    if txn is None:
        with store.read() as t:
            return snapshot(store, summer_tz, table, day_from, day_to, t)
    keys, vals = read_rows(txn, store, table, day_from, day_to)
    parts = _Parts()
    seq = covered_seq(store, txn)
    tail = list(journal_with_items(store, txn, seq))
    if tail:
        summer = Summer(store, summer_tz, _tail_issue_map(store, txn))
        pending: dict[int, int] = {}
        for block, items in tail:
            summer.block(txn, block, items, parts, pending)
        if table == CARD_EVENTS_DB:
            card_event_rows(parts, _BlockStatus(store, txn))
        if table == rollup_lots.SETTLEMENT_DB:
            settlement_rows(parts, store, txn, summer_tz)
        tk, tv = parts.reduced()[table]
        inwin = (tk["day"] >= day_from) & (tk["day"] < day_to)
        keys, vals = reduce_rows(concat((keys, tk[inwin]), key_dtype),
                                 np.concatenate((vals, tv[inwin])))
    return keys, vals


class _LmdbIssue:
    """A read-only card -> store lookup over rollup_cards, for a report's tail."""

    def __init__(self, store, txn) -> None:
        self.db, self.txn = store.db[CARDS_DB], txn
        self._seen: dict[int, int] = {}         # one read per card of the tail

    def lookup_many(self, cards: np.ndarray, _ones: np.ndarray, release_gil: bool = False) -> np.ndarray:
        uniq, inv = np.unique(cards, return_inverse=True)
        got = np.full(len(uniq), -1, np.int64)
        for j, c in enumerate(uniq.tolist()):
            st = self._seen.get(c)
            if st is None:
                raw = self.txn.get(u64(c), db=self.db)
                st = self._seen[c] = -1 if raw is None else from_be(raw)
            got[j] = st
        return got[inv.ravel()]


def _tail_issue_map(store, txn) -> _LmdbIssue:
    return _LmdbIssue(store, txn)
