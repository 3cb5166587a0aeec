"""The LMDB environment of mms: its named databases, their keys and values.

Layout (docs/internals/storage.md says the same, with the reasons):

- meta     b"format" -> u32 BE; b"checkpoint_seq" -> u64 BE; b"n_cards" -> u64 BE;
           b"rules_version" -> u32 BE.
- journal  key: u64 BE seq of the block's last record -> value: the records of one group
           commit, concatenated JournalRec (416 bytes each), seqs contiguous.
- cards    key: u64 BE chunk number -> value: CHUNK_CARDS Card records (256 bytes each)
           of slots chunk*CHUNK_CARDS..; the card table as of meta checkpoint_seq.
- ids      key: u64 BE checkpoint seq -> value: i64 LE unix seconds, then (hi, lo, v)
           u64 LE triples: the client ids first seen between two checkpoints, where
           v = seq << 8 | result of the id's first record.
- rules    key: u32 BE version -> value: the RulesConfig as JSON.
- events   key: u64 BE seq of the journal record of an admin op -> value: JSON detail.
- coupons  key: u64 BE chunk number -> value: Coupon records (64 bytes) of slots
           chunk*256..; the coupon table as of checkpoint_seq (meta n_coupons).
- refunds  key: u64 BE seq of a swipe -> value: u64 BE fen refunded of it so far, as of
           the checkpoint (the journal tail's REFUND records add to it on recovery).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator

import lmdb
import numpy as np

from core.records import CARD, JOURNAL, table_zeros

FORMAT_VERSION = 1
CHUNK_SHIFT = 8
CHUNK_CARDS = 1 << CHUNK_SHIFT
# Named databases: the engine's own plus those admin modules open (members, chain...).
MAX_DBS = 64
# Readers beyond this wait in LMDB's reader table; 126 is LMDB's default and enough for
# the server's read paths plus tools reading a live environment.
MAX_READERS = 126
# Card types (core/domain/cards.py writes them; the engine reads their recharge limits).
CARD_TYPES_DB = "card_types"
IDS_DTYPE = np.dtype([("hi", "<u8"), ("lo", "<u8"), ("seq", "<u8")])

_U64 = ">Q"


def take(records: np.ndarray, sel: np.ndarray) -> np.ndarray:
    """records[sel] for a structured array (journal records), copied as whole opaque
    rows: numpy's field-by-field copy of a nested record dtype costs ~1.3 us a record,
    a copy of the same bytes ~0.1."""
    w = records.dtype.itemsize
    return np.ascontiguousarray(records).view(f"V{w}")[sel].view(records.dtype)


def stable_argsort(keys: np.ndarray) -> np.ndarray:
    """np.argsort(keys, kind="stable") of non-negative integer keys, as an LSD radix sort
    of 16-bit digits (numpy's stable sort is a radix sort for 16-bit keys, a timsort for
    wider ones: ~15 ms against ~300 ms for 1,000,000 card numbers). As many passes as
    the keys' range (max - min) has 16-bit digits."""
    if len(keys) == 0:
        return np.zeros(0, np.intp)
    if keys.dtype.kind == "i":
        k = (keys.astype(np.int64) - keys.min()).view(np.uint64)
    else:
        k = keys.astype(np.uint64)
        lo = k.min()
        if lo:
            k = k - lo
    top, shift, order = int(k.max()), 0, None
    while True:
        digit = ((k if order is None else k[order]) >> np.uint64(shift)).astype(np.uint16)
        if order is None or digit.min() != digit.max():    # a constant digit orders nothing
            o = np.argsort(digit, kind="stable")
            order = o if order is None else order[o]
        shift += 16
        if top >> shift == 0:
            return order


def unique_ids(ids) -> np.ndarray:
    """The sorted distinct values of ids as uint64: np.unique's result, by a sort and a
    mask (targeted plans' id sets, the rollup tailer's cards). np.unique (numpy 2.x,
    hash-based) took 0.7-1.9 s for 1,000,000 ids and held the GIL for up to 190 ms at a
    time, which stalled the swipes' threads while a plan froze its audience
    (bench/bench_plans.py --timeline); np.sort takes ~10 ms."""
    a = np.sort(np.asarray(ids, dtype=np.uint64), kind="stable")
    if len(a) < 2:
        return a
    keep = np.empty(len(a), bool)
    keep[0] = True
    np.not_equal(a[1:], a[:-1], out=keep[1:])
    return a[keep]


def stable_lexsort(columns) -> np.ndarray:
    """np.lexsort(columns) (the last column the primary key) of non-negative or signed
    integer columns, by stable_argsort passes."""
    order = None
    for col in columns:
        o = stable_argsort(col if order is None else col[order])
        order = o if order is None else order[o]
    return order


def packed_key(cols) -> np.ndarray | None:
    """One int64 per row ordered as the rows of cols (int64 each, the first the primary
    key), when their ranges multiply to less than 2**62; else None."""
    packed, span = None, 1
    for c in reversed(cols):
        lo, hi = int(c.min()), int(c.max())
        width = hi - lo + 1
        if span * width >= 2**62:
            return None
        part = (c - lo) * span if span > 1 else c - lo
        packed = part if packed is None else packed + part
        span *= width
    return packed


def group_runs(*cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The order that sorts rows by cols (int64 each, the first the primary key; stable)
    and the starts of the runs of equal rows in that order."""
    if len(cols[0]) == 0:
        return np.zeros(0, np.intp), np.zeros(0, np.intp)
    one = packed_key(cols)
    if one is not None:
        order = stable_argsort(one)
        s = one[order]
        change = np.empty(len(s), bool)
        change[0] = True
        change[1:] = s[1:] != s[:-1]
        return order, np.flatnonzero(change)
    order = stable_lexsort(cols[::-1])
    change = np.zeros(len(order), bool)
    change[0] = True
    for c in cols:
        cs = c[order]
        change[1:] |= cs[1:] != cs[:-1]
    return order, np.flatnonzero(change)


def u64(x: int) -> bytes:
    return int(x).to_bytes(8, "big")


def u64_keys(xs: np.ndarray) -> list[bytes]:
    """[u64(x) for x in xs], from one buffer (a per-flush list of thousands of keys)."""
    raw = np.ascontiguousarray(xs, dtype=">u8").tobytes()
    return [raw[j:j + 8] for j in range(0, len(raw), 8)]


def u32(x: int) -> bytes:
    return int(x).to_bytes(4, "big")


def from_be(b: bytes) -> int:
    return int.from_bytes(b, "big")


class _Gate:
    """Lets many read transactions run while keeping them out of a map resize, which
    LMDB allows only when this process has no transaction open."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._resizing = False

    @contextlib.contextmanager
    def reading(self) -> Iterator[None]:
        with self._cond:
            while self._resizing:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if self._readers == 0:
                    self._cond.notify_all()

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._cond:
            self._resizing = True
            while self._readers:
                self._cond.wait()
        try:
            yield
        finally:
            with self._cond:
                self._resizing = False
                self._cond.notify_all()


class Store:
    """One LMDB environment. Only the engine's writer thread writes."""

    def __init__(self, path: str, *, map_size_bytes: int, sync: bool = True,
                 readonly: bool = False, lazy_meta: bool = False) -> None:
        """lazy_meta (with sync): a commit fsyncs its data pages but not its meta page
        (LMDB's MDB_NOMETASYNC), one fsync per commit instead of two. Such a commit is
        durable only once a later fsync of the file has run: the next commit's, or
        flush(). LMDB never reuses the pages of the two newest commits, so a crash before
        that falls back to the commit before it, whole (docs/internals/storage.md,
        "One fsync per group commit"). The caller must not acknowledge a commit before
        either has happened."""
        if not readonly:
            os.makedirs(path, exist_ok=True)
        self.path = path
        self.lazy_meta = bool(sync and lazy_meta and not readonly)
        self.env = lmdb.open(
            path, map_size=map_size_bytes, max_dbs=MAX_DBS, max_readers=MAX_READERS,
            sync=sync, metasync=sync and not self.lazy_meta, readahead=False,
            readonly=readonly, lock=True,
        )
        self.gate = _Gate()
        names = ("meta", "journal", "cards", "ids", "rules", "events", "refunds", "coupons")
        if readonly:
            self.db = {n: self.env.open_db(n.encode(), create=False) for n in names}
        else:
            with self.env.begin(write=True) as txn:
                self.db = {n: self.env.open_db(n.encode(), txn=txn) for n in names}
                fmt = txn.get(b"format", db=self.db["meta"])
                if fmt is None:
                    txn.put(b"format", u32(FORMAT_VERSION), db=self.db["meta"])
                elif from_be(fmt) != FORMAT_VERSION:
                    raise RuntimeError(f"{path}: data format {from_be(fmt)}, this build reads {FORMAT_VERSION}")

    def close(self) -> None:
        if self.lazy_meta:
            self.flush()
        self.env.close()

    def flush(self) -> None:
        """Make every commit so far durable: with lazy_meta, an fsync of the file (the
        last commit's meta page); a no-op otherwise (each commit fsyncs its own)."""
        if self.lazy_meta:
            self.env.sync(True)

    def named_db(self, name: str, txn: lmdb.Transaction | None = None):
        """The handle of a named database, opened (and created) on first use; pass the
        writer's transaction when called inside one."""
        handle = self.db.get(name)
        if handle is None:
            handle = self.env.open_db(name.encode(), txn=txn)
            self.db[name] = handle
        return handle

    @contextlib.contextmanager
    def read(self) -> Iterator[lmdb.Transaction]:
        with self.gate.reading():
            with self.env.begin() as txn:
                yield txn

    def grow(self) -> int:
        """Double the map; called by the writer after MDB_MAP_FULL, with no write open."""
        with self.gate.exclusive():
            size = self.env.info()["map_size"] * 2
            self.env.set_mapsize(size)
            return size

    def map_usage(self) -> tuple[int, int]:
        info, stat = self.env.info(), self.env.stat()
        return info["map_size"], (info["last_pgno"] + 1) * stat["psize"]

    # --- meta -------------------------------------------------------------------------

    def meta_int(self, txn: lmdb.Transaction, key: bytes, default: int = 0) -> int:
        v = txn.get(key, db=self.db["meta"])
        return default if v is None else from_be(v)

    # --- journal ----------------------------------------------------------------------

    def put_journal(self, txn: lmdb.Transaction, recs: np.ndarray) -> None:
        last = int(recs[-1]["seq"])
        # py-lmdb copies from the buffer itself: no tobytes() copy of the block first.
        if not txn.put(u64(last), np.ascontiguousarray(recs).view(np.uint8),
                       db=self.db["journal"], append=True):
            raise RuntimeError(f"journal block {last} already exists")

    def last_seq(self, txn: lmdb.Transaction) -> int:
        cur = txn.cursor(db=self.db["journal"])
        return from_be(cur.key()) if cur.last() else 0

    def journal_blocks(self, txn: lmdb.Transaction, after_seq: int) -> Iterator[np.ndarray]:
        """Blocks holding records with seq > after_seq, ascending; records of a block
        at or before after_seq are cut off. Arrays are read-only views of LMDB copies."""
        cur = txn.cursor(db=self.db["journal"])
        if not cur.set_range(u64(after_seq + 1)):
            return
        for _key, value in cur:
            block = np.frombuffer(value, dtype=JOURNAL)
            if int(block[0]["seq"]) <= after_seq:
                block = block[block["seq"] > after_seq]
            yield block

    def journal_record(self, txn: lmdb.Transaction, seq: int) -> np.void | None:
        cur = txn.cursor(db=self.db["journal"])
        if seq <= 0 or not cur.set_range(u64(seq)):
            return None
        block = np.frombuffer(cur.value(), dtype=JOURNAL)
        i = seq - int(block[0]["seq"])
        if i < 0 or i >= len(block):
            return None
        rec = block[i].copy()
        assert int(rec["seq"]) == seq, "journal seqs inside a block are contiguous"
        return rec

    # --- checkpoint -------------------------------------------------------------------

    def write_chunk(self, txn: lmdb.Transaction, db: str, table: np.ndarray, n: int,
                    k: int) -> None:
        """Write chunk k of an in-memory table (cards, coupons) holding n rows."""
        lo = k << CHUNK_SHIFT
        hi = min(lo + CHUNK_CARDS, n)
        if hi > lo:
            txn.put(u64(k), table[lo:hi].tobytes(), db=self.db[db])

    def write_checkpoint_mark(self, txn: lmdb.Transaction, ids: np.ndarray, seq: int,
                              now_s: int, n_cards: int, n_coupons: int) -> None:
        """Close a checkpoint at seq: the client ids first seen since the previous one,
        and the meta keys recovery starts from."""
        if len(ids):
            txn.put(u64(seq), int(now_s).to_bytes(8, "little", signed=True) + ids.tobytes(),
                    db=self.db["ids"])
        txn.put(b"checkpoint_seq", u64(seq), db=self.db["meta"])
        # The engine's clock at the checkpoint: a restarted engine times the next one
        # from here, not from its own start.
        txn.put(b"checkpoint_time_s", u64(max(0, int(now_s))), db=self.db["meta"])
        txn.put(b"n_cards", u64(n_cards), db=self.db["meta"])
        txn.put(b"n_coupons", u64(n_coupons), db=self.db["meta"])

    def load_chunks(self, txn: lmdb.Transaction, db: str, dtype: np.dtype, n: int,
                    capacity: int) -> np.ndarray:
        table = table_zeros(max(capacity, n), dtype)  # rows on cache lines
        for key, value in txn.cursor(db=self.db[db]):
            lo = from_be(key) << CHUNK_SHIFT
            chunk = np.frombuffer(value, dtype=dtype)
            hi = min(lo + len(chunk), n)
            if hi > lo:
                table[lo:hi] = chunk[: hi - lo]
        return table

    def load_cards(self, txn: lmdb.Transaction, n_cards: int, capacity: int) -> np.ndarray:
        return self.load_chunks(txn, "cards", CARD, n_cards, capacity)

    def load_ids(self, txn: lmdb.Transaction, not_before_s: int) -> tuple[np.ndarray, list[bytes]]:
        """Client ids of blocks written at or after not_before_s, and the keys of the
        blocks that are older (for the caller to drop)."""
        keep, expired = [], []
        for key, value in txn.cursor(db=self.db["ids"]):
            written = int.from_bytes(value[:8], "little", signed=True)
            if written < not_before_s:
                expired.append(bytes(key))
            else:
                keep.append(np.frombuffer(value[8:], dtype=IDS_DTYPE))
        ids = np.concatenate(keep) if keep else np.zeros(0, dtype=IDS_DTYPE)
        return ids, expired
