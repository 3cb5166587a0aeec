"""The engine: one writer thread that owns every LMDB write, group commit, recovery.

Data flow of a batch (docs/internals/architecture.md tells the why):

    submit(ops) -> queue (bounded) -> writer takes up to batch_ops_max ops
      -> Batcher.apply_batch (Cython, nogil): results + journal records with after-images
      -> one LMDB write txn: put the journal block -> commit (fsync)   [committer]
      -> publish (Cython): after-images into the card table            [publisher,
      -> resolve the futures of every submission in the group           while the next
                                                                        batch commits]

The journal is the truth: the card table in LMDB is a checkpoint of it, written every
checkpoint_ops records or checkpoint_interval_s seconds, and recovery replays the journal
after the checkpoint. A commit that fails leaves the table untouched because nothing is
published before the commit returns.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import NoReturn

import lmdb
import numpy as np

from core import _fastpath
from core.engine import rollup_worker
from core.engine.rollups import JOURNAL_ITEM, JOURNAL_ITEMS_DB, Rollups
from core.engine.rollups import ensure_dbs as ensure_rollup_dbs
from core.engine.storage import CARD_TYPES_DB, CHUNK_SHIFT, IDS_DTYPE, Store, from_be, u32, u64
from core.idsets import unique_ids
from core.records import (
    CARD,
    COUPON,
    ITEM,
    JOURNAL,
    OP,
    OP_NAMES,
    PIN_DIGITS_MAX,
    PIN_DIGITS_MIN,
    RESULT,
    SERVICE_COUNT,
    CardStatus,
    CouponStatus,
    OpType,
    RecordKind,
    Result,
    card_move_allowed,
    card_to_dict,
    coupon_of,
    coupon_to_dict,
    is_ascii_digits,
    ops_from_rows,
    split_client_id,
    table_zeros,
)
from core.rules import CouponTemplate, RechargeLimit, RulesConfig, RulesError

log = logging.getLogger("mms.engine")

Clock = Callable[[], int]


def system_clock() -> int:
    return int(time.time())


def _resolve(fut: Future, value: object) -> None:
    """Answer a caller; a caller that cancelled its future simply gets nothing (the op
    itself was applied and stays applied)."""
    if fut.set_running_or_notify_cancel():
        fut.set_result(value)


def _fail(fut: Future, exc: BaseException) -> None:
    if not fut.done() and fut.set_running_or_notify_cancel():
        fut.set_exception(exc)


def _op_code(op_type: int) -> int:
    """An op code an admin op may journal: one of core.records' table, or ValueError
    (a programming error: the code would be journalled without a name)."""
    code = int(op_type)
    if code not in OP_NAMES:
        raise ValueError(f"op type {code} is not in core.records.OP_NAMES")
    return code


class EngineClosed(RuntimeError):
    """The engine no longer takes ops."""


class Overloaded(RuntimeError):
    """The writer's queue is full; the caller should shed load (RESOURCE_EXHAUSTED)."""


class NotLeader(EngineClosed):
    """The engine is a standby (core.engine.replication): it takes no ops. leader is
    the primary's address when known ("" otherwise)."""

    def __init__(self, message: str, leader: str = "") -> None:
        super().__init__(message)
        self.leader = leader


# While the ack gate (Engine.set_ack_gate) says no, the acker looks again this often.
ACK_GATE_POLL_S = 0.005
# Commits whose acknowledgements wait for the gate or the standby, at most; past this
# the committer waits too (back-pressure instead of an unbounded queue).
ACKS_HELD_MAX = 8
# At close, acknowledgements still held this long after the close began are failed with
# EngineClosed (the ops are durable here; a client retries them with the same id).
ACK_CLOSE_GRACE_S = 2.0

# EngineConfig fields renamed so that every limit ends in its unit and then _max; a config
# file with an old name still loads (EngineConfig.from_mapping), with a warning.
RENAMED_FIELDS = {"batch_max": "batch_ops_max", "queue_max_ops": "queue_ops_max",
                  "issue_max_cards": "issue_cards_max"}


def _rollups_worker_default() -> bool:
    """EngineConfig.rollups_worker's default: on, unless MMS_ROLLUPS_WORKER=0."""
    return os.environ.get("MMS_ROLLUPS_WORKER", "1") != "0"


@dataclass(frozen=True)
class EngineConfig:
    # Ops applied under one commit. 4096 amortises one fsync (about 0.5-5 ms here) over
    # enough ops for hundreds of thousands per second while a batch stays ~1.2 MB.
    batch_ops_max: int = 4096
    # Ops waiting for the writer; past this submit() raises Overloaded. 64 batches.
    queue_ops_max: int = 262_144
    # Under load, the writer waits at most this long for a fuller batch; a lone op
    # (no load) never waits.
    commit_window_us: int = 200
    map_size_bytes: int = 1 << 30
    checkpoint_ops: int = 1_000_000
    # Timed from the last checkpoint's wall time (meta checkpoint_time_s), also across
    # restarts, so a server restarted often still checkpoints.
    checkpoint_interval_s: int = 60
    # A recovery that replayed more journal records than this checkpoints before the
    # engine takes any op, so the next start does not replay them again: after any
    # sequence of crashes a start replays at most what one run wrote after its last
    # checkpoint. Replay costs ~18 us a record, so 50,000 is about a second.
    recovery_checkpoint_records: int = 50_000
    # Chunks (256 cards or coupons, up to 64 KiB) a checkpoint round writes per group
    # commit, inside it: 4 MiB more in a commit that writes ~1.7 MB of journal for 4,096
    # ops, so a checkpoint of 1,000,000 cards spreads over ~60 commits instead of
    # stalling one for ~2 s.
    checkpoint_chunks_per_commit: int = 64
    # ... and at most this many times the commit's own journal bytes (at least one chunk):
    # a 20-swipe commit (~8 KB of journal) that carried 64 chunks fsynced 4 MiB for its
    # swipes, which then waited 10-100x their commit (a round after a 1,000,000-coupon
    # plan, bench/bench_plans.py --timeline); a 4,096-op batch still carries ~53.
    checkpoint_round_ratio: int = 2
    # How long a client id stays known after its op. A retry or a replayed bulk file
    # within this window applies nothing twice.
    id_retention_s: int = 30 * 86_400
    # How often the writer forgets the ids past the retention (after a checkpoint), so
    # the id index of a server that runs for months stays the size of the window.
    id_prune_interval_s: int = 86_400
    # Cards issued by one admin op (and so by one IssueCards call): 100,000 card numbers
    # are 800 KB of request, one commit of ~40 MB of records.
    issue_cards_max: int = 100_000
    # Line items in one submission (a batch of 4096 ops with 16 lines each).
    items_max: int = 65_536
    initial_card_capacity: int = 1024
    sync: bool = True
    # One fsync per group commit instead of two (Store lazy_meta): a hot batch is
    # answered once the next batch's commit (or, when none is waiting, an fsync of its
    # own) has made its meta page durable. Only for a primary without a replication
    # feed and with sync on; a standby and a replicated primary keep LMDB's two.
    lazy_meta_sync: bool = True
    # Keep the report rollups (core.engine.rollups) up to date in their own thread.
    rollups: bool = True
    # ... with their flushes computed in a worker process (core.engine.rollup_worker), off
    # this process's GIL; False: in the tailer's thread. The default is True unless the
    # environment says MMS_ROLLUPS_WORKER=0 (the test suite: it opens many engines).
    rollups_worker: bool = dataclasses.field(default_factory=_rollups_worker_default)
    # ... at this niceness above the server's (0..19; the tailer sets it): the swipes come
    # first when both want the cores. At 10 the worker has ~10% of a contended core
    # (CFS weights 110 against 1,024), so it never starves, and all of an idle one: on
    # `mms bench engine` (1,000,000 cards, 2,000,000 ops) the swipes/s with rollups on
    # went from 319,462-354,962 at 0 to 525,937 at 10 and 420,994-443,189 at 19, the
    # time until the rollups were current unchanged (docs/benchmarks.md, session 13).
    rollups_worker_nice: int = 10
    # Background admin ops (Engine.admin(background=True): the chunks of a plan run) wait
    # behind every hot batch and foreground op queued, but never longer than this, so a
    # run under a saturating load still moves. 0 = no priority (FIFO with the rest).
    background_wait_max_ms: int = 100
    # The share of the writer's time (basis points) background ops may take: after one
    # held the writer for h seconds (drain to answer), the next waits h * (10,000 -
    # share) / share, so a plan run leaves the rest to the swipes, their commits and
    # fsyncs, whatever each chunk costs on this machine. 10,000 = no pacing. A plan then
    # takes up to 10,000 / share times its unpaced time: a 1,000,000-member plan took
    # 72.7 s at 3,000 and 49-67 s at 5,000 at load 4-6 (27-44 s unpaced), its target
    # being 60 s, so two thirds (bench/bench_plans.py, docs/benchmarks.md).
    background_share_bp: int = 6_700

    @classmethod
    def from_mapping(cls, values: dict, *, source: str = "[engine]") -> EngineConfig:
        """An EngineConfig from a TOML table, validated: unknown keys are refused by name, and the
        names used before the units went last (RENAMED_FIELDS) are still read, with a
        warning that says the new name."""
        known = {f.name for f in dataclasses.fields(cls)}
        out: dict = {}
        for key, value in values.items():
            new = RENAMED_FIELDS.get(key)
            if new is not None:
                if new in values:
                    raise ValueError(f"{source}: both {key} and its new name {new} are set")
                log.warning("%s: %s is now called %s; the old name will stop working",
                            source, key, new)
                key = new
            if key not in known:
                raise ValueError(f"{source}: unknown key {key!r} (known: {', '.join(sorted(known))})")
            out[key] = value
        cfg = cls(**out)
        # Refused at load, by the file's name, not as a traceback when the engine opens.
        try:
            cfg.validate()
        except (TypeError, ValueError) as exc:     # TypeError: a value of the wrong type
            raise ValueError(f"{source}: {exc}") from None
        return cfg

    def validate(self) -> None:
        if not 1 <= self.batch_ops_max <= 65_536:
            raise ValueError("batch_ops_max must be 1..65536")
        if self.queue_ops_max < self.batch_ops_max:
            raise ValueError("queue_ops_max must be at least batch_ops_max")
        if self.commit_window_us < 0 or self.checkpoint_ops < 1 or self.checkpoint_interval_s < 1:
            raise ValueError("commit_window_us >= 0, checkpoint_ops >= 1, checkpoint_interval_s >= 1")
        if self.recovery_checkpoint_records < 0:
            raise ValueError("recovery_checkpoint_records >= 0")
        if self.checkpoint_chunks_per_commit < 1 or self.id_prune_interval_s < 1:
            raise ValueError("checkpoint_chunks_per_commit >= 1, id_prune_interval_s >= 1")
        if self.checkpoint_round_ratio < 1:
            raise ValueError("checkpoint_round_ratio >= 1")
        if not 0 <= self.background_wait_max_ms <= 60_000:
            raise ValueError("background_wait_max_ms must be 0..60000")
        if not 1 <= self.background_share_bp <= 10_000:
            raise ValueError("background_share_bp must be 1..10000")
        if not 0 <= self.rollups_worker_nice <= 19:
            raise ValueError("rollups_worker_nice must be 0..19")


@dataclass
class CommitInfo:
    n_ops: int
    n_records: int
    n_items: int
    commit_seconds: float
    batch_seconds: float
    codes: np.ndarray
    op_types: np.ndarray
    queue_ops: int
    last_seq: int


# The per-op result columns of BatchResult.columns(), the one list the wire's OpResult
# and OpResultColumns are encoded from: what the record says the op did, then the
# card after it.
_RECORD_COLUMNS = ("amount_fen", "discount_fen", "payable_fen", "coupon_fen", "offset_fen",
                   "principal_delta_fen", "bonus_delta_fen", "points_delta")
_AFTER_COLUMNS = ("principal_fen", "bonus_fen", "points", "level")
RESULT_COLUMNS = _RECORD_COLUMNS + _AFTER_COLUMNS


class BatchResult:
    """Per-op results of one submission. Records of ops replayed from an earlier batch
    are fetched from the journal on first use."""

    def __init__(self, engine: Engine, results: np.ndarray, recs: np.ndarray) -> None:
        self._engine = engine
        self._results = results
        self._recs = recs
        self.codes = results["code"]
        self.replayed = results["replayed"]
        self.seq = results["seq"]

    def __len__(self) -> int:
        return len(self._results)

    def record(self, i: int) -> np.void | None:
        r = self._results[i]
        if int(r["seq"]) == 0:
            return None
        if int(r["rec_index"]) >= 0:
            return self._recs[int(r["rec_index"])]
        return self._engine.journal_record(int(r["seq"]))

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """The per-op results (RESULT rows) and the records they index (rec_index),
        which columns() reads: for an encoder that gathers the columns itself
        (server/rpc/_wire.pyx gather_results)."""
        return self._results, self._recs

    def columns(self) -> dict[str, np.ndarray]:
        n = len(self._results)
        idx = self._results["rec_index"].astype(np.int64)
        here = idx >= 0
        rows = idx[here]
        after = self._recs["after"]
        out: dict[str, np.ndarray] = {}
        # Each column is gathered from its own field: no copy of whole 416-byte records.
        for name in RESULT_COLUMNS:
            col = np.zeros(n, dtype=np.int64)
            col[here] = (self._recs[name] if name in _RECORD_COLUMNS else after[name])[rows]
            out[name] = col
        # Replays of ops committed in earlier batches: rare, read one by one.
        for i in np.flatnonzero(~here & (self.seq > 0)).tolist():
            rec = self.record(i)
            if rec is None:
                continue
            for name in RESULT_COLUMNS:
                out[name][i] = rec[name] if name in _RECORD_COLUMNS else rec["after"][name]
        return out


@dataclass
class AdminResult:
    code: Result
    replayed: bool = False
    seq: int = 0
    detail: str = ""
    value: object = None
    reason: str = ""


@dataclass
class _Hot:
    ops: np.ndarray
    future: Future
    items: np.ndarray | None = None
    coupon_ids: np.ndarray | None = None


@dataclass
class _Cold:
    client: tuple[int, int]
    build: Callable[[AdminContext], object]
    future: Future
    op_type: int
    operator_id: int = 0
    store_id: int = 0
    queued_at: float = 0.0          # monotonic; background ops only
    background: bool = False        # queued in _background (Engine.admin(background=True))


@dataclass
class _Task:
    """Work for the writer that is not an op (creating databases)."""
    run: Callable[[], None]
    future: Future


class AdminRejected(Exception):
    """Raised by AdminContext.reject: the op changes nothing and answers with code."""

    def __init__(self, code: Result, detail: str, reason: str = "") -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.reason = reason or Result(int(code)).name


class AdminContext:
    """What an admin op's build function sees and does. It runs in the writer, inside
    the write transaction, with no hot batch in flight: what it reads is current and
    nothing changes under it."""

    def __init__(self, engine: Engine, txn: lmdb.Transaction, item: _Cold, now: int) -> None:
        self._engine = engine
        self.txn = txn
        self.now = now
        self.operator_id = item.operator_id
        self.store_id = item.store_id
        self.client = item.client
        self.op_type = item.op_type
        self.rules = engine._rules
        self.rules_config = engine._rules_config
        self.detail: dict | None = None
        self._records: list[np.ndarray] = []
        self._n = 0
        self._cards: dict[int, np.void] = {}
        self._after: list[Callable[[], None]] = []
        self._opened: list[str] = []

    def reject(self, code: Result, detail: str, reason: str = "") -> NoReturn:
        """Abort the op: nothing it did commits. reason is a machine-readable word
        (UPPER_SNAKE) for clients; it defaults to the code's name."""
        raise AdminRejected(code, detail, reason)

    @property
    def next_seq(self) -> int:
        """The seq the next record this op emits will get."""
        return self._engine._next_seq + self._n

    def db(self, name: str):
        if name not in self._engine.store.db:
            # A handle opened in a transaction that aborts is closed with it: forget it then.
            self._opened.append(name)
        return self._engine.store.named_db(name, self.txn)

    def get(self, db: str, key: bytes) -> bytes | None:
        return self.txn.get(key, db=self.db(db))

    def put(self, db: str, key: bytes, value: bytes) -> None:
        self.txn.put(key, value, db=self.db(db))

    def delete(self, db: str, key: bytes) -> None:
        self.txn.delete(key, db=self.db(db))

    def after_commit(self, fn: Callable[[], None]) -> None:
        """fn runs after the commit is durable (to update in-memory state)."""
        self._after.append(fn)

    def card(self, card_no: int) -> np.void | None:
        """A copy of the card as this op has left it so far (or as committed)."""
        if card_no in self._cards:
            return self._cards[card_no].copy()
        slot = self._engine._card_index.lookup(0, int(card_no))
        if slot < 0:
            return None
        return self._engine._cards[slot].copy()

    def emit(self, op_type: int, card: np.void | None, **fields: int) -> int:
        """Journal one record: card is the card's after-image (None for ops without a
        card). fields set the record's other columns (amount_fen, points_delta, ...)."""
        rec = np.zeros(1, dtype=JOURNAL)
        seq = self._engine._next_seq + self._n
        rec["seq"], rec["time_s"], rec["op_type"], rec["result"] = seq, self.now, _op_code(op_type), Result.OK
        rec["client_hi"], rec["client_lo"] = self.client
        rec["rules_version"] = self.rules.version
        rec["store_id"], rec["operator_id"] = self.store_id, self.operator_id
        for name, value in fields.items():
            rec[name] = value
        rec["kind"] = RecordKind.KIND_NONE if card is None else RecordKind.KIND_CARD
        if card is not None:
            before = self.card(int(card["card_no"]))
            rec["card_no"] = card["card_no"]
            rec["after"] = card
            rec["prev_seq"] = before["last_seq"] if before is not None else 0
            rec["level_before"] = before["level"] if before is not None else card["level"]
            rec["after"]["last_seq"] = seq
            self._cards[int(card["card_no"])] = rec[0]["after"].copy()
        self._append(rec)
        return seq

    def _new_records(self, n: int, op_type: int) -> tuple[np.ndarray, int]:
        """n journal records of this op with their seqs and common fields set."""
        first = self._engine._next_seq + self._n
        recs = np.zeros(n, dtype=JOURNAL)
        recs["seq"] = np.arange(first, first + n, dtype=np.uint64)
        recs["time_s"], recs["op_type"], recs["result"] = self.now, _op_code(op_type), Result.OK
        recs["client_hi"], recs["client_lo"] = self.client
        recs["rules_version"] = self.rules.version
        recs["store_id"], recs["operator_id"] = self.store_id, self.operator_id
        return recs, first

    def _append(self, recs: np.ndarray) -> None:
        self._records.append(recs)
        self._n += len(recs)

    def emit_cards(self, op_type: int, cards: np.ndarray, *, prev_seq: np.ndarray | None = None,
                   **columns: np.ndarray | int) -> int:
        """Journal one record per new card at once (bulk issue); returns the first seq.
        A later step of the same op on the same new cards passes the seqs of their
        previous records as prev_seq; columns set the records' other fields."""
        recs, first = self._new_records(len(cards), op_type)
        recs["card_no"] = cards["card_no"]
        recs["level_before"] = cards["level"]
        if prev_seq is not None:
            recs["prev_seq"] = prev_seq
        for name, value in columns.items():
            recs[name] = value
        recs["after"] = cards
        recs["after"]["last_seq"] = recs["seq"]
        self._append(recs)
        return first

    def emit_updates(self, op_type: int, cards: np.ndarray, **columns: np.ndarray | int) -> int:
        """Journal one record per existing card at once (bulk runs: points expiry, level
        reviews). cards are after-images of cards this op has not touched yet; columns
        set the records' other fields. Returns the first seq."""
        n = len(cards)
        if n == 0:
            return 0
        recs, first = self._new_records(n, op_type)
        recs["card_no"] = cards["card_no"]
        recs["prev_seq"] = cards["last_seq"]
        # The level before is the committed card's, not the after-image's.
        slots = self._engine._card_index.lookup_many(np.zeros(n, np.uint64),
                                                     cards["card_no"].astype(np.uint64))
        if np.any(slots < 0):
            raise ValueError("emit_updates is for existing cards")
        recs["level_before"] = self._engine._cards["level"][slots]
        for name, value in columns.items():
            recs[name] = value
        recs["after"] = cards
        recs["after"]["last_seq"] = recs["seq"]
        self._append(recs)
        return first

    def emit_coupons(self, op_type: int, coupons: np.ndarray, *, new: bool = True) -> int:
        """Journal one KIND_COUPON record per coupon (its after-image); returns the first
        seq. New coupons' issued_seq is set to their record's seq; changed ones
        (new=False) keep theirs."""
        n = len(coupons)
        recs, first = self._new_records(n, op_type)
        recs["kind"] = RecordKind.KIND_COUPON
        recs["card_no"] = coupons["card_no"]
        coupons = coupons.copy()
        if new:
            coupons["issued_seq"] = recs["seq"]
        after = JOURNAL.fields["after"][1]
        raw = recs.view(np.uint8).reshape(n, JOURNAL.itemsize)
        raw[:, after:after + COUPON.itemsize] = coupons.view(np.uint8).reshape(n, COUPON.itemsize)
        self._append(recs)
        return first

    def card_statuses(self, card_nos: np.ndarray) -> np.ndarray:
        """The status of each card as this op has left it so far (or as committed), at
        once: -1 for a card that does not exist. For bulk ops (plans, coupon issues),
        where ctx.card per card would copy each row."""
        nos = np.asarray(card_nos, dtype=np.uint64)
        slots = self._engine._card_index.lookup_many(np.zeros(len(nos), np.uint64), nos)
        out = np.full(len(nos), -1, np.int64)
        found = slots >= 0
        out[found] = self._engine._cards["status"][slots[found]]
        if self._cards:
            for i in np.flatnonzero(np.isin(nos, np.fromiter(self._cards, np.uint64))).tolist():
                out[i] = int(self._cards[int(nos[i])]["status"])
        return out

    def coupons_of(self, card_no: int) -> np.ndarray:
        """Copies of the coupons held by a card, as committed."""
        table = self._engine._coupons[: self._engine._n_coupons]
        return table[table["card_no"] == int(card_no)].copy()

    def committed_cards(self) -> np.ndarray:
        """The card table as committed (read-only view; nothing is in flight)."""
        view = self._engine._cards[: self._engine._n_cards]
        view.flags.writeable = False
        return view

    def _journal(self) -> np.ndarray:
        if not self._records:
            self.emit(self.op_type, None)
        return self._records[0] if len(self._records) == 1 else np.concatenate(self._records)


@dataclass
class _Round:
    """A checkpoint in progress (Engine._start_round)."""
    seq: int
    now: int
    n_cards: int
    n_coupons: int
    chunks: list[tuple[str, int]]
    ids: np.ndarray
    refunds: list[tuple[int, int]]
    expired: list[bytes]
    done: int = 0


@dataclass
class _Facts:
    """What publishing a block of records needs besides the copy (_facts)."""
    ids: np.ndarray  # IDS_DTYPE, one row per record: the checkpoint's id block
    refunds: list[tuple[int, int]]  # (swipe seq, fen) of each REFUND record
    has_coupons: bool  # a record of kind KIND_COUPON is among them


_REFUND = int(OpType.REFUND)  # a plain int: comparing a numpy column to an IntEnum is slower


def _facts(recs: np.ndarray, with_ids: bool = True) -> _Facts:
    """with_ids False: no id block (a standby, which never checkpoints by itself)."""
    ids = np.empty(len(recs) if with_ids else 0, dtype=IDS_DTYPE)
    if with_ids:
        n_refunds, n_coupons = _fastpath.block_facts(recs, len(recs), ids)
    else:
        n_refunds = int(np.count_nonzero(recs["op_type"] == _REFUND))
        n_coupons = int(np.count_nonzero(recs["kind"] == RecordKind.KIND_COUPON))
    refunds = recs[recs["op_type"] == _REFUND] if n_refunds else ()
    return _Facts(ids, [(int(r["ref_seq"]), int(r["amount_fen"])) for r in refunds],
                  n_coupons > 0)


@dataclass
class _Job:
    items: list[_Hot]
    ops: np.ndarray
    recs: np.ndarray
    slots: np.ndarray
    results: np.ndarray
    t0: float  # perf_counter seconds, for batch timing
    item_recs: np.ndarray | None = None  # the batch's line items as journalled (JOURNAL_ITEM)
    facts: _Facts | None = None  # _facts(recs), worked out by the applier
    cold: _Handed | None = None  # a background admin op committed by the applier (_hand_over)


@dataclass
class _Handed:
    """A background admin op the applier committed and handed to the committer, to be
    made durable by the next commit's fsync (or one of its own), then published and
    answered in commit order (Engine._hand_over)."""
    item: _Cold
    answer: AdminResult
    commit_s: float  # seconds
    n_coupons: int  # coupons in the tables once it is published
    recs: np.ndarray  # its journal records (the job's own are a batch's joined to it, if any)
    facts: _Facts
    t0: float  # perf_counter seconds, when the applier started it


def _resident_copy(table: np.ndarray, used: int) -> np.ndarray:
    """A copy of a table whose rows past used are zero and not resident: np.zeros maps
    zero pages that take memory only when written, where table.copy() would write (and
    keep resident) the whole capacity, headroom included (256 MB per million cards)."""
    out = table_zeros(len(table), table.dtype)
    out[:used] = table[:used]
    return out


def _grown(committed: np.ndarray, work: np.ndarray | None, dirty: np.ndarray, need: int,
           used: int) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """A hot table pair (committed, work) and its dirty chunks with room for need rows,
    doubling; the same arrays when they are big enough. Readers keep a reference to
    whichever array they started with; both hold the committed rows they may read."""
    cap = len(committed)
    if need <= cap:
        return committed, work, dirty
    while cap < need:
        cap *= 2

    def grow(table: np.ndarray) -> np.ndarray:
        bigger = table_zeros(cap, table.dtype)
        bigger[:used] = table[:used]
        return bigger

    bigger_dirty = np.zeros((cap >> CHUNK_SHIFT) + 1, dtype=np.uint8)
    bigger_dirty[: len(dirty)] = dirty
    return grow(committed), (grow(work) if work is not None else None), bigger_dirty


# Batches applied but not yet published (applied, in fsync, committed and waiting for the
# next commit to make it durable (Store lazy_meta), or being published). Four let the
# next batch be applied while one is in fsync, the one before it waits for that fsync
# and the one before that is copied into the card table and answered; more would only
# add latency.
PIPELINE_DEPTH = 4
# How long the committer waits at a time for the batch being applied before it looks
# again (_commit_loop); it waits only while a batch is being applied, and that batch's
# put into the pipe wakes it at once: the timeout only notices a batch that failed.
HELD_WAIT_S = 0.005
# A handed-over background op (Engine._hand_over) with no hot op queued behind it waits
# for the next group commit to make it durable until the next background op is due
# (its pause, background_share_bp), but never longer than this: then an fsync of its
# own. A few swipe submissions' spacing at a light load; a small share's long pause
# (9,999x the hold at 1 bp) must not hold the answer for seconds.
HANDED_WAIT_MAX_S = 0.02


def index_ids(index: _fastpath.KeyMap, hi: np.ndarray, lo: np.ndarray,
              vals: np.ndarray) -> int:
    """Insert client ids into an id index (a key it has keeps its value: the first
    record of an op wins), leaving out the all-zero id, the index's empty key (KeyMap
    refuses it). No op takes that id since e2c45ce (the hot path answers
    CLIENT_ID_INVALID, Engine.admin refuses it), but a data directory written before
    may hold an admin op's records that carry it: they are applied as journalled, their
    id is never known (a retry under it is refused anyway). The one place that rule is
    kept, for the journal tail, the checkpoints' id blocks and a prune's rebuild;
    returns how many rows it left out."""
    zero = (hi == 0) & (lo == 0)
    n_zero = int(np.count_nonzero(zero))
    if n_zero:
        keep = ~zero
        hi, lo, vals = hi[keep], lo[keep], vals[keep]
    if len(hi):
        index.insert_many(np.ascontiguousarray(hi, np.uint64), np.ascontiguousarray(lo, np.uint64),
                          np.ascontiguousarray(vals, np.int64))
    return n_zero


def journal_items(ops: np.ndarray, results: np.ndarray,
                  lines: np.ndarray | None) -> np.ndarray | None:
    """The line items of a batch's applied ops (OK, not replayed) as journalled: each
    line with the seq of its op's record (docs/internals/storage.md, journal_items)."""
    if lines is None or not len(lines):
        return None
    out = np.empty(len(lines), dtype=JOURNAL_ITEM)
    m = _fastpath.journal_items(ops, results, lines, out)
    return out[:m] if m else None


class Engine:
    def __init__(self, path: str, *, config: EngineConfig | None = None,
                 rules: RulesConfig | None = None, clock: Clock | None = None,
                 observer: object | None = None, feed: object | None = None,
                 standby: bool = False, leader: str = "") -> None:
        """feed (core.engine.replication.Feed) ships every write transaction to
        standbys; standby=True opens the directory as a standby: recovered, readable,
        no writer threads, every op refused with NotLeader (leader: the primary)."""
        self.config = config or EngineConfig()
        self.config.validate()
        self.clock: Clock = clock or system_clock
        self.observer = observer
        self.store = Store(path, map_size_bytes=self.config.map_size_bytes, sync=self.config.sync,
                           lazy_meta=self.config.lazy_meta_sync and feed is None and not standby)
        self.feed = feed
        self.standby = standby
        self.leader = leader
        self._ack_gate: Callable[[], bool] | None = None
        self._acks: queue.Queue | None = None
        self._acker: threading.Thread | None = None
        self._acks_closing: float | None = None
        # Commits handed to the acker and commits it has answered: equal when nothing
        # is held, so a commit may be answered at once (_release).
        self._acks_handed = 0
        self._acks_released = 0
        if feed is not None:
            feed.attach(self.store)
        self._batcher = _fastpath.Batcher(self.config.batch_ops_max)
        self._cond = threading.Condition()
        self._queue: collections.deque = collections.deque()
        # Background admin ops (Engine.admin(background=True)), taken after _queue.
        self._background: collections.deque = collections.deque()
        # When the next background op may be taken (monotonic; background_share_bp).
        self._background_ready = 0.0
        self._queued_ops = 0
        self._closing = False
        self._closed = False
        self._commits = 0
        self._last_batch_ops = 0
        self._poisoned: BaseException | None = None
        self._applying = False  # the applier is applying a hot batch (_commit_loop)
        # Whether a batch alone may be committed by the applier (_alone). Cleared when
        # submissions came in while it committed one (a stream's or burst's load, which
        # the pipeline overlaps and serves with one fsync a batch); set again when the
        # committer finds nothing behind a commit (the pipeline ran dry).
        self._lone_ok = True
        # A background op was handed to the committer with hot ops queued behind it: the
        # applier takes them next, so the committer waits for their commit to make the
        # op durable instead of an fsync of its own (_hand_over). Cleared by the applier
        # once it has taken its next work.
        self._hot_next = False
        # ... and with none queued, it waits for one until then at most (monotonic): the
        # pause before the next background op may be taken (background_share_bp), so
        # the wait costs the run no time (_hand_over).
        self._handed_until = 0.0
        self._inflight_lock = threading.Lock()
        self._pipe: queue.Queue = queue.Queue()
        # Committed batches on their way from the committer to the publisher (at most
        # PIPELINE_DEPTH: each holds a pipeline slot until it is published).
        self._published: queue.Queue = queue.Queue()
        self._pipe_slots = threading.Semaphore(PIPELINE_DEPTH)
        self._recover(rules)
        ensure_rollup_dbs(self.store)       # journal_items is written even without rollups
        self.rollups: Rollups | None = None
        self.recovered_records = self._since_checkpoint
        if standby:
            # The standby's databases change only by the primary's transactions (the
            # rollups' too); it writes nothing of its own.
            return
        if feed is not None and getattr(feed, "sync", False):
            self._start_acker()
        if self.config.rollups:
            self.rollups = Rollups(self.store, self._rules_config.tz_offset_s,
                                   grow=self._grow_for_rollups,
                                   worker=(functools.partial(rollup_worker.start,
                                                             nice=self.config.rollups_worker_nice)
                                           if self.config.rollups_worker else None))
        if self.recovered_records > self.config.recovery_checkpoint_records:
            # Before the threads start: nothing else touches the tables yet.
            self._start_round()
            self._advance_round(len(self._round.chunks))
            log.info("checkpointed at %d after replaying %d records", self._checkpoint_seq,
                     self.recovered_records)
        self._committer = threading.Thread(target=self._commit_loop, name="mms-committer",
                                           daemon=True)
        self._publisher = threading.Thread(target=self._publish_loop, name="mms-publisher",
                                           daemon=True)
        self._writer = threading.Thread(target=self._run, name="mms-applier", daemon=True)
        self._publisher.start()
        self._committer.start()
        self._writer.start()
        if self.rollups is not None:
            self.rollups.start()

    def _grow_for_rollups(self) -> None:
        """The rollup tailer met MDB_MAP_FULL: the applier grows the map with nothing in
        flight (no write transaction of this process is open then)."""
        try:
            task = _Task(self.store.grow, Future())
            self._enqueue(task)
            task.future.result()
        except EngineClosed:
            self.store.grow()

    # --- recovery ---------------------------------------------------------------------

    def _recover(self, bootstrap_rules: RulesConfig | None) -> None:
        """Load the checkpoint and replay the journal after it. Readers (Engine.card,
        card_journal, cards_snapshot) go on seeing the previous `_view` until the
        recovered state is whole: a reload after a failed commit rebuilds the tables
        while the server serves reads, and a reader must not see the checkpoint's older
        cards or an index still being filled."""
        self._recovering = True
        now = self.clock()
        with self.store.read() as txn:
            checkpoint_seq = self.store.meta_int(txn, b"checkpoint_seq")
            # A data directory from before checkpoint_time_s: its checkpoint counts as
            # due; a new one has had none yet, and its interval starts now.
            checkpoint_time_s = self.store.meta_int(
                txn, b"checkpoint_time_s",
                now - self.config.checkpoint_interval_s if checkpoint_seq else now)
            n_cards = self.store.meta_int(txn, b"n_cards")
            rules_version = self.store.meta_int(txn, b"rules_version")
            raw_rules = txn.get(u32(rules_version), db=self.store.db["rules"]) if rules_version else None
            # Room for as many cards again: rows past n_cards are zero pages never
            # touched, so the headroom costs address space, not memory (_resident_copy).
            capacity = max(self.config.initial_card_capacity, 2 * n_cards)
            self._cards = self.store.load_cards(txn, n_cards, capacity)
            self._n_cards = n_cards
            # Sized for the cards there are (it doubles itself when half full): sized for
            # the capacity it took 4x the cards in 24-byte slots, ~100 MB per million.
            self._card_index = _fastpath.KeyMap(max(self.config.initial_card_capacity, n_cards))
            if n_cards:
                cols = self._cards[:n_cards]
                self._card_index.insert_many(np.zeros(n_cards, np.uint64),
                                             cols["card_no"].astype(np.uint64),
                                             np.arange(n_cards, dtype=np.int64), True)
            ids, self._expired_id_blocks = self.store.load_ids(txn, now - self.config.id_retention_s)
            self._id_index = _fastpath.KeyMap(max(1024, len(ids)))
            index_ids(self._id_index, ids["hi"], ids["lo"], ids["seq"])
            # Journal records replayed below whose client id is all zero (index_ids).
            self.zero_id_records = 0
            n_coupons = self.store.meta_int(txn, b"n_coupons")
            ccap = max(self.config.initial_card_capacity, 2 * n_coupons)
            self._coupons = self.store.load_chunks(txn, "coupons", COUPON, n_coupons, ccap)
            self._n_coupons = n_coupons
            # The coupons the work table holds past the committed ones: a background op
            # handed to the committer before its publish (_hand_over). Used as
            # max(_n_coupons, _n_coupons_work).
            self._n_coupons_work = 0
            self._coupon_max = (0, 0)       # (rows seen, their highest id): _max_coupon_id
            self._coupon_index = _fastpath.KeyMap(max(self.config.initial_card_capacity, n_coupons))
            if n_coupons:
                self._coupon_index.insert_many(
                    np.zeros(n_coupons, np.uint64),
                    self._coupons["coupon_id"][:n_coupons].astype(np.uint64),
                    np.arange(n_coupons, dtype=np.int64), True)
            self._coupon_dirty = np.zeros((ccap >> CHUNK_SHIFT) + 1, dtype=np.uint8)
            self._coupons_work = None
            self._refunded = _fastpath.KeyMap(1024)
            for key, value in txn.cursor(db=self.store.db["refunds"]):
                self._refunded.insert(0, from_be(key), int.from_bytes(value, "big"))
            self._pending_refunds: list[tuple[int, int]] = []
            self._inflight: dict[int, np.ndarray] = {}
            self._dirty = np.zeros((capacity >> CHUNK_SHIFT) + 1, dtype=np.uint8)
            self._pending_ids: list[np.ndarray] = []
            self._since_checkpoint = 0
            self._round: _Round | None = None
            self._last_id_prune = time.monotonic()
            self._checkpoint_seq = checkpoint_seq
            # The journal tail is published from the checkpoint on, in order.
            self._last_seq = checkpoint_seq
            self._work = None
            for block in self.store.journal_blocks(txn, checkpoint_seq):
                self._publish_committed(block.copy(), None, claim_ids=True)
            self._last_seq = max(self._last_seq, self.store.last_seq(txn))
            self._next_seq = self._last_seq + 1
            self._work = _resident_copy(self._cards, self._n_cards)
            self._coupons_work = _resident_copy(self._coupons, self._n_coupons)
        self._recovering = False
        self._set_view()
        self._pin_key = self._load_pin_key()
        if raw_rules is not None:
            self._rules_config = RulesConfig.from_json(raw_rules)
        else:
            initial = bootstrap_rules or RulesConfig()
            self._rules_config = RulesConfig.from_dict({**initial.to_dict(), "version": 1})
            with self.store.env.begin(write=True) as txn:
                txn.put(u32(1), self._rules_config.to_json(), db=self.store.db["rules"])
                txn.put(b"rules_version", u32(1), db=self.store.db["meta"])
        self._type_limits = self._load_type_limits()
        self._rules = self._rules_config.compile(self._pin_key, self._type_limits)
        # The interval runs from the last checkpoint's time, not from this start.
        self._last_checkpoint_time = time.monotonic() - max(0, now - checkpoint_time_s)
        if self._since_checkpoint:
            log.info("recovered %d records after checkpoint %d", self._since_checkpoint, checkpoint_seq)

    def _load_type_limits(self) -> dict[int, RechargeLimit]:
        """The card types' recharge limits, from the database core/domain/cards.py keeps them in."""
        db = self.store.named_db(CARD_TYPES_DB)
        with self.store.read() as txn:
            return {from_be(k): RechargeLimit.of_card_type(json.loads(v))
                    for k, v in txn.cursor(db=db)}

    def set_type_limit(self, ctx: AdminContext, type_id: int, limit: RechargeLimit) -> None:
        """Inside an admin op that stores a card type: its recharge limit applies from
        that op's commit on."""

        def swap() -> None:
            self._type_limits = {**self._type_limits, int(type_id): limit}
            self._rules = self._rules_config.compile(self._pin_key, self._type_limits)

        self._rules_config.compile(self._pin_key, {int(type_id): limit})  # rejects bad ids
        ctx.after_commit(swap)

    def _load_pin_key(self) -> tuple[int, int]:
        """The secret mixed into every PIN hash: MMS_PIN_KEY (32 hex digits) if set, else
        one made on first open and kept in meta."""
        env = os.environ.get("MMS_PIN_KEY")
        if env:
            raw = bytes.fromhex(env)
            if len(raw) != 16:
                raise ValueError("MMS_PIN_KEY must be 32 hex digits")
        else:
            with self.store.env.begin(write=True) as txn:
                raw = txn.get(b"pin_key", db=self.store.db["meta"])
                if raw is None:
                    raw = os.urandom(16)
                    txn.put(b"pin_key", raw, db=self.store.db["meta"])
        return int.from_bytes(raw[:8], "big"), int.from_bytes(raw[8:], "big")

    # --- publishing -------------------------------------------------------------------
    #
    # Two card tables: `_work` is what the next batch is applied against (it already
    # holds the batches that are still committing), `_cards` only what is durable; the
    # readers see `_cards`. A batch's after-images go into `_work` right after apply and
    # into `_cards` right after its commit.

    def _set_view(self) -> None:
        """What readers see: the committed card table, its index and the number of cards,
        replaced together in one assignment (readers take the tuple once). Not while
        recovering (_recover sets it when done)."""
        if not self._recovering:
            self._view = (self._cards, self._card_index, self._n_cards)

    def _view_slot(self, card_no: int) -> tuple[np.ndarray, int]:
        """The committed table readers see and card_no's slot in it (-1: no such card)."""
        cards, index, n = self._view
        slot = index.lookup(0, int(card_no))
        return cards, (slot if 0 <= slot < n else -1)

    def _ensure_capacity(self, n_more: int) -> None:
        self._cards, self._work, self._dirty = _grown(
            self._cards, self._work, self._dirty, self._n_cards + n_more, self._n_cards)

    def _ensure_coupon_capacity(self, n_more: int) -> None:
        self._coupons, self._coupons_work, self._coupon_dirty = _grown(
            self._coupons, self._coupons_work, self._coupon_dirty,
            self._n_coupons + n_more, self._n_coupons)

    def _publish_committed(self, recs: np.ndarray, slots: np.ndarray | None,
                           claim_ids: bool, facts: _Facts | None = None,
                           index_ids: bool = True, n_coupons: int = 0) -> None:
        """Make durable records visible to readers and to the next checkpoint. Records
        are published in journal order, each once: recs are contiguous and follow the
        last published seq (checked before anything changes). facts: what _facts(recs)
        gives, worked out by the applier while the commit ran (hot batches), so the
        committer's own work after the fsync is the copy and the answers. index_ids
        False: claim_ids claims no client id (a standby's frames: it takes no op, never
        prunes the index, and its promotion rebuilds the index from the store)."""
        n = len(recs)
        if n == 0:
            return
        seqs = recs["seq"]
        # A hot batch's seqs are contiguous by construction (apply_batch numbers them);
        # its ends are checked. Other records (recovery, admin ops, a standby's frames)
        # are checked one by one.
        assert int(seqs[0]) == self._last_seq + 1 and int(seqs[-1]) == self._last_seq + n and (
            facts is not None or n == 1 or bool(np.all(np.diff(seqs) == 1))), \
            f"publish of seqs {int(seqs[0])}..{int(seqs[-1])} ({n} records) after {self._last_seq}"
        if facts is None:
            facts = _facts(recs)
        if claim_ids and index_ids:
            self._claim_ids(recs)
        if claim_ids:
            self._make_room(recs, facts)
        if facts.has_coupons:
            # A hot batch's slots (apply_batch's) locate its coupons: no index probe.
            # A background op handed over (_hand_over) put its new coupons into the
            # index and the work table already: its count comes with it (n_coupons).
            self._n_coupons = max(n_coupons, _fastpath.publish_coupons(
                recs, n, self._coupons, self._coupon_index, self._n_coupons,
                self._coupon_dirty, CHUNK_SHIFT, None if claim_ids else slots))
        self._n_cards = _fastpath.publish(recs, n, self._cards, self._card_index, None,
                                          self._n_cards, self._dirty, CHUNK_SHIFT, slots)
        if claim_ids:  # only these can grow the table or bring new cards
            self._set_view()
        for seq, amount in facts.refunds:
            self._pending_refunds.append((seq, amount))
            if claim_ids:  # recovery and cold ops; hot refunds counted when applied
                self._refunded.insert(0, seq, max(0, self._refunded.lookup(0, seq)) + amount)
        self._pending_ids.append(facts.ids)
        self._since_checkpoint += n
        self._last_seq = int(recs[-1]["seq"])

    def _make_room(self, recs: np.ndarray, facts: _Facts) -> None:
        """Room in the tables (both sides) for the cards and coupons among recs that
        the indexes do not know yet: only admin ops and recovery bring new ones, with
        nothing in flight, so the committer never regrows a table under the applier."""
        # Admin ops and recovery may bring cards the table has not seen (issue,
        # replacement); hot batches never do.
        # Looked up record by record (a hash probe each), deduplicated only when
        # some are unknown: cheaper than sorting every block's card numbers.
        unknown = self._unknown_cards(recs)
        if len(unknown):
            self._ensure_capacity(len(unique_ids(unknown, unknown.dtype)))
        if facts.has_coupons:
            is_coupon = recs["kind"] == RecordKind.KIND_COUPON
            after = JOURNAL.fields["after"][1]
            raw = np.ascontiguousarray(recs[is_coupon]).view(np.uint8).reshape(-1, JOURNAL.itemsize)
            ids = raw[:, after:after + 8].copy().view("<u8").reshape(-1)
            unknown = self._coupon_index.lookup_many(np.zeros(len(ids), np.uint64),
                                                     ids.astype(np.uint64)) < 0
            if unknown.any():
                self._ensure_coupon_capacity(len(unique_ids(ids[unknown], ids.dtype)))

    def _claim_ids(self, recs: np.ndarray) -> None:
        """Each op's first record claims its client id (recovery and admin ops; hot
        batches claimed theirs when applied)."""
        # insert_many goes in record order and keeps a key it has: the first record
        # of each op wins, with no sort to find it.
        n_zero = index_ids(
            self._id_index, recs["client_hi"], recs["client_lo"],
            (recs["seq"] << np.uint64(8)) | recs["result"].astype(np.uint64))
        if n_zero:
            zero = recs["seq"][(recs["client_hi"] == 0) & (recs["client_lo"] == 0)]
            self.zero_id_records += n_zero
            log.warning("journal records %d..%d (%d) carry the all-zero client id (an admin op "
                        "of a build before that id was refused): applied as journalled, the "
                        "id not indexed", int(zero[0]), int(zero[-1]), n_zero)

    def _unknown_cards(self, recs: np.ndarray) -> np.ndarray:
        """The card numbers of recs' card records that the card index does not know."""
        nos = recs["card_no"][recs["kind"] == RecordKind.KIND_CARD].astype(np.uint64)
        return nos[self._card_index.lookup_many(np.zeros(len(nos), np.uint64), nos) < 0]

    def _publish_work(self, recs: np.ndarray, slots: np.ndarray | None, claim_ids: bool,
                      has_coupons: bool | None = None) -> int:
        """Copy recs into the work tables (claim_ids: the id index learns their client
        ids); returns the coupons the work table holds after."""
        if has_coupons is None:
            has_coupons = bool(np.any(recs["kind"] == RecordKind.KIND_COUPON))
        n_work = max(self._n_coupons, self._n_coupons_work)
        if has_coupons:
            # The index learnt new coupons from the committed side (admin) or learns them
            # here (recs of a background op handed over before its publish, _hand_over);
            # both tables share it and the slots, so the count is the larger of the two.
            # A hot batch's coupons are all known (slots from apply_batch): copied without
            # the GIL, like its cards below.
            n_work = _fastpath.publish_coupons(recs, len(recs), self._coupons_work,
                                               self._coupon_index, n_work, None, CHUNK_SHIFT,
                                               slots, release_gil=slots is not None)
            self._n_coupons_work = n_work
        # A hot batch (slots from apply_batch) copies without the GIL: the work table and
        # the id index are the applier's alone, and a hot batch inserts no card into the
        # card index that readers probe. The event loop and the committer run meanwhile.
        _fastpath.publish(recs, len(recs), self._work, self._card_index,
                          self._id_index if claim_ids else None, self._n_cards, None,
                          CHUNK_SHIFT, slots, release_gil=slots is not None)
        return n_work

    # --- submission -------------------------------------------------------------------

    def submit(self, ops: np.ndarray, items: np.ndarray | None = None,
               coupon_ids: np.ndarray | None = None) -> Future:
        """Queue ops (dtype OP) for the writer. items (dtype ITEM) holds the line items
        the ops point into with items_off/items_n; coupon_ids (uint64) the coupons they
        name with coupons_off/coupons_n."""
        if not isinstance(ops, np.ndarray) or ops.dtype != OP or ops.ndim != 1:
            raise ValueError("ops must be a 1-d numpy array of dtype core.records.OP")
        n = len(ops)
        if n == 0 or n > self.config.batch_ops_max:
            raise ValueError(f"a submission holds 1..{self.config.batch_ops_max} ops, not {n}")
        ops = np.ascontiguousarray(ops)
        if items is not None:
            if not isinstance(items, np.ndarray) or items.dtype != ITEM or items.ndim != 1:
                raise ValueError("items must be a 1-d numpy array of dtype core.records.ITEM")
            if len(items) > self.config.items_max:
                raise ValueError(f"a submission holds at most {self.config.items_max} items")
            items = np.ascontiguousarray(items)
        # Without items (or coupon ids) no op may name any: one check instead of three
        # (the plain submissions of unary swipes and streams take this path).
        if items is None:
            if ops["items_n"].any():
                raise ValueError("an op's items_off/items_n point past the items")
        else:
            ends = ops["items_off"].astype(np.int64) + ops["items_n"]
            if np.any((ops["items_n"] > 0) & (ends > len(items))):
                raise ValueError("an op's items_off/items_n point past the items")
        if coupon_ids is None:
            if ops["coupons_n"].any():
                raise ValueError("an op's coupons_off/coupons_n point past the coupon ids")
        else:
            coupon_ids = np.ascontiguousarray(coupon_ids, dtype=np.uint64)
            if coupon_ids.ndim != 1 or len(coupon_ids) > self.config.batch_ops_max:
                raise ValueError(f"at most {self.config.batch_ops_max} coupon ids per submission")
            ends = ops["coupons_off"].astype(np.int64) + ops["coupons_n"]
            if np.any((ops["coupons_n"] > 0) & (ends > len(coupon_ids))):
                raise ValueError("an op's coupons_off/coupons_n point past the coupon ids")
            if np.any(ops["coupons_n"] > _fastpath.COUPONS_PER_OP):
                raise ValueError(f"at most {_fastpath.COUPONS_PER_OP} coupons per op")
        fut: Future = Future()
        if self.standby:
            raise NotLeader("this node is a standby", self.leader)
        with self._cond:
            if self._closing:
                raise EngineClosed("the engine is closed")
            if self._queued_ops + n > self.config.queue_ops_max:
                raise Overloaded(f"{self._queued_ops} ops queued, limit {self.config.queue_ops_max}")
            self._queue.append(_Hot(ops, fut, items, coupon_ids))
            self._queued_ops += n
            self._cond.notify()
        return fut

    def _single(self, op_type: int, card_no: int, amount_fen: int, client_id: bytes,
                store_id: int, terminal_id: int, operator_id: int, category: int,
                flags: int) -> Future:
        hi, lo = split_client_id(client_id)
        return self.submit(ops_from_rows([(hi, lo, card_no, amount_fen, store_id, terminal_id,
                                           operator_id, category, op_type, flags)]))

    def swipe(self, card_no: int, amount_fen: int, client_id: bytes, store_id: int = 0,
              terminal_id: int = 0, operator_id: int = 0, category: int = 0,
              flags: int = 0) -> Future:
        return self._single(OpType.SWIPE, card_no, amount_fen, client_id, store_id,
                            terminal_id, operator_id, category, flags)

    def recharge(self, card_no: int, amount_fen: int, client_id: bytes, store_id: int = 0,
                 terminal_id: int = 0, operator_id: int = 0) -> Future:
        return self._single(OpType.RECHARGE, card_no, amount_fen, client_id, store_id,
                            terminal_id, operator_id, 0, 0)

    # --- admin ops --------------------------------------------------------------------

    def admin(self, client_id: bytes, op_type: int, build: Callable[[AdminContext], object],
              *, operator_id: int = 0, store_id: int = 0, background: bool = False) -> Future:
        """Run an admin op through the writer: build(ctx) checks and changes state inside
        the writer's write transaction; its journal records, database writes and audit
        event commit together, or (ctx.reject / any exception) nothing does. Idempotent
        by client id: a repeat returns the first op's result value. op_type is a code of
        core.records.OP_NAMES (ValueError otherwise, as for ctx.emit*). Returns
        Future[AdminResult]. background: a bulk op that yields to the swipes (a plan
        run's chunk): it runs once nothing else is queued, or after waiting
        config.background_wait_max_ms."""
        background = background and self.config.background_wait_max_ms > 0
        ids = split_client_id(client_id)
        if ids == (0, 0):
            # The id index's empty key (a hot op answers CLIENT_ID_INVALID for it): one
            # committed would fail its claim after the commit and leave the store
            # unopenable, so it is refused before anything is queued.
            raise ValueError("client id must not be all zero")
        item = _Cold(ids, build, Future(), _op_code(op_type),
                     int(operator_id), int(store_id), time.monotonic(), background)
        self._enqueue(item, background=background)
        return item.future

    def _enqueue(self, item: _Cold | _Task, *, background: bool = False) -> None:
        """Queue work that is not a hot op for the writer (admin ops, tasks)."""
        if self.standby:
            raise NotLeader("this node is a standby", self.leader)
        with self._cond:
            if self._closing:
                raise EngineClosed("the engine is closed")
            (self._background if background else self._queue).append(item)
            self._cond.notify()

    def ensure_dbs(self, names: Sequence[str]) -> None:
        """Create named databases (if missing) in the writer, so that only the writer
        ever opens a write transaction. Blocks until done."""
        missing = [n for n in names if n not in self.store.db]
        if not missing:
            return

        def create() -> None:
            with self.store.env.begin(write=True) as txn:
                handles = {n: self.store.env.open_db(n.encode(), txn=txn) for n in missing}
            self.store.db.update(handles)

        if self.standby:  # no writer thread; the primary made them too
            create()
            return
        task = _Task(create, Future())
        self._enqueue(task)
        task.future.result()

    def issue_cards(self, card_nos: Sequence[int] | np.ndarray, client_id: bytes, *,
                    type_id: int = 1, level: int = 0,
                    member_ids: Sequence[int] | np.ndarray | None = None,
                    expires_at_s: int = 0, operator_id: int = 0, store_id: int = 0,
                    count_service: int = 0, count_uses: int = 0) -> Future:
        """Issue active cards as given, no card type applied (tests, benchmarks, tools).
        A count card names its service (1..65535) and its uses. Cards people use are
        issued by core.domain.cards.issue_cards, which applies the card type's rules."""
        nos = np.asarray(card_nos, dtype=np.uint64)
        if not 0 <= count_service < SERVICE_COUNT or not 0 <= count_uses < 2**31:
            raise ValueError("count_service 0..65535, count_uses 0..2^31-1")
        if nos.ndim != 1 or not 1 <= len(nos) <= self.config.issue_cards_max:
            raise ValueError(f"issue 1..{self.config.issue_cards_max} cards at a time")
        members = (np.zeros(len(nos), np.uint64) if member_ids is None
                   else np.asarray(member_ids, dtype=np.uint64))
        if members.shape != nos.shape:
            raise ValueError("member_ids and card_nos differ in length")
        if not 0 <= level < 255 or not 0 <= type_id < 65_536 or expires_at_s < 0:
            raise ValueError("level 0..254, type_id 0..65535, expires_at_s >= 0")

        def build(ctx: AdminContext):
            if np.any(nos == 0):
                ctx.reject(Result.CARD_NO_INVALID, "card number 0 is not valid")
            if len(unique_ids(nos, nos.dtype)) != len(nos):
                ctx.reject(Result.CARD_EXISTS, "the same card number twice in one issue")
            for no in nos.tolist():
                if ctx.card(no) is not None:
                    ctx.reject(Result.CARD_EXISTS, f"card {no} exists")
            if level >= ctx.rules.n_levels:
                ctx.reject(Result.OP_TYPE_INVALID, f"level {level} is not configured")
            after = np.zeros(len(nos), dtype=CARD)
            after["card_no"] = nos
            after["member_id"] = members
            after["type_id"] = type_id
            after["level"] = level
            after["status"] = CardStatus.ACTIVE
            after["expires_at_s"] = expires_at_s
            after["issued_at_s"] = ctx.now
            after["level_period_start_s"] = ctx.now
            after["count_service"] = count_service
            after["count_uses"] = count_uses
            ctx.emit_cards(OpType.ISSUE, after)
            ctx.detail = {"cards": len(nos), "first_card_no": int(nos[0]), "type_id": type_id,
                          "level": level}
            return {"cards": len(nos)}

        return self.admin(client_id, OpType.ISSUE, build, operator_id=operator_id,
                          store_id=store_id)

    def set_card_status(self, card_no: int, status: CardStatus | int, client_id: bytes, *,
                        operator_id: int = 0, store_id: int = 0) -> Future:
        status = CardStatus(int(status))

        def build(ctx: AdminContext):
            card = ctx.card(int(card_no))
            if card is None:
                ctx.reject(Result.CARD_NOT_FOUND, f"card {card_no} not found")
            move = (CardStatus(int(card["status"])), status)
            if not card_move_allowed(move[0], move[1], "operator"):
                ctx.reject(Result.OP_TYPE_INVALID,
                           f"status {move[0].name} -> {move[1].name} is not allowed")
            card["status"] = status
            ctx.emit(OpType.SET_STATUS, card)
            ctx.detail = {"card_no": int(card_no), "before": {"status": move[0].name},
                          "after": {"status": move[1].name}}
            return {"from": move[0].name, "to": move[1].name}

        return self.admin(client_id, OpType.SET_STATUS, build, operator_id=operator_id,
                          store_id=store_id)

    def issue_coupons(self, template_id: int, card_nos: Sequence[int] | np.ndarray,
                      client_id: bytes, *, valid_from_s: int | None = None,
                      operator_id: int = 0, store_id: int = 0) -> Future:
        """Put one coupon of a template on each card (all or none), within the
        template's total quantity and budget. value: {"coupon_ids": [...]}."""
        nos = np.asarray(card_nos, dtype=np.uint64)
        if nos.ndim != 1 or not 1 <= len(nos) <= self.config.issue_cards_max:
            raise ValueError(f"issue to 1..{self.config.issue_cards_max} cards at a time")

        def build(ctx: AdminContext):
            ids = self.put_coupons(ctx, int(template_id), nos, valid_from_s)
            ctx.detail = {"template_id": int(template_id), "coupons": len(ids),
                          "first_coupon_id": ids[0]}
            return {"coupon_ids": ids}

        return self.admin(client_id, OpType.COUPON_ISSUE, build, operator_id=operator_id,
                          store_id=store_id)

    def put_coupons(self, ctx: AdminContext, template_id: int, nos: np.ndarray,
                    valid_from_s: int | None = None) -> list[int]:
        """Inside an admin op: journal one new coupon of a template for each card in nos
        (a card may repeat), within the template's quantity and budget; the ids."""
        tpl = ctx.rules_config.coupon_template(template_id)
        if tpl is None:
            ctx.reject(Result.NOT_FOUND, f"coupon template {template_id} not found",
                       "TEMPLATE_NOT_FOUND")
        uniq = unique_ids(nos, nos.dtype)
        status = ctx.card_statuses(uniq)
        missing, cancelled = uniq[status < 0], uniq[status == CardStatus.CANCELLED]
        if len(missing):
            ctx.reject(Result.CARD_NOT_FOUND, f"card {int(missing[0])} not found")
        if len(cancelled):
            ctx.reject(Result.CARD_CANCELLED, f"card {int(cancelled[0])} is cancelled")
        raw = ctx.get("coupon_stats", u32(template_id))
        issued, face = (int.from_bytes(raw[:8], "big"), int.from_bytes(raw[8:], "big")) if raw else (0, 0)
        n = len(nos)
        if tpl.total_quantity and issued + n > tpl.total_quantity:
            ctx.reject(Result.FAILED_PRECONDITION,
                       f"template {template_id}: {tpl.total_quantity - issued} left", "QUANTITY_EXHAUSTED")
        if tpl.budget_fen and face + n * tpl.face_fen() > tpl.budget_fen:
            ctx.reject(Result.FAILED_PRECONDITION,
                       f"template {template_id}: budget {tpl.budget_fen} fen would be passed",
                       "BUDGET_EXHAUSTED")
        first_id = self._max_coupon_id() + 1
        start = ctx.now if valid_from_s is None else int(valid_from_s)
        coupons = np.zeros(n, dtype=COUPON)
        coupons["coupon_id"] = np.arange(first_id, first_id + n, dtype=np.uint64)
        coupons["card_no"] = nos
        coupons["template_id"] = template_id
        coupons["coupon_status"] = CouponStatus.COUPON_ISSUED
        coupons["valid_from_s"] = start
        coupons["valid_to_s"] = start + tpl.valid_days * 86_400
        ctx.emit_coupons(OpType.COUPON_ISSUE, coupons)
        ctx.put("coupon_stats", u32(template_id),
                (issued + n).to_bytes(8, "big") + (face + n * tpl.face_fen()).to_bytes(8, "big"))
        return list(range(first_id, first_id + n))

    def _max_coupon_id(self) -> int:
        """The highest coupon id in the table (0 when none). Rows keep their id once
        published, so the max over the rows below a count stays true: only the rows
        added since the last call are read (a plan's chunks call this once each; a max
        over the whole table is a pass over ~256 bytes a coupon, ~10 ms at 1,000,000)."""
        n, (seen, top) = self._n_coupons, self._coupon_max
        if n < seen:                        # the table was reloaded (recovery)
            seen, top = 0, 0
        if n > seen:
            top = max(top, int(self._coupons["coupon_id"][seen:n].max()))
            self._coupon_max = (n, top)
        return top

    def reserve_coupons(self, n_more: int) -> None:
        """Inside an admin op (the applier, pipeline drained): room in the coupon tables
        for n_more coupons now, at once, so that a plan run issuing them does not double
        the tables (a copy of every coupon row, twice) midway, holding the writer for it
        while the swipes wait. A no-op when there is room."""
        self._ensure_coupon_capacity(max(0, int(n_more)))

    def coupon(self, coupon_id: int) -> dict | None:
        slot = self._coupon_index.lookup(0, int(coupon_id))
        # The index may know a coupon that is not published yet (_hand_over): past the
        # count it is not there for readers.
        if slot < 0 or slot >= self._n_coupons:
            return None
        return coupon_to_dict(self._coupons[slot].copy())

    def coupons_of(self, card_no: int) -> list[dict]:
        table = self._coupons[: self._n_coupons]
        return [coupon_to_dict(row) for row in table[table["card_no"] == card_no]]

    def set_pin(self, card_no: int, digits: str | None, client_id: bytes, *,
                operator_id: int = 0, store_id: int = 0) -> Future:
        """Set (digits) or clear (None) a card's PIN; clears failures and any lockout.
        Only the salted keyed hash is kept."""
        if digits is not None and (not PIN_DIGITS_MIN <= len(digits) <= PIN_DIGITS_MAX
                                      or not is_ascii_digits(digits)):
            raise ValueError("a PIN is 4 to 9 digits 0-9")

        def build(ctx: AdminContext):
            card = ctx.card(int(card_no))
            if card is None:
                ctx.reject(Result.CARD_NOT_FOUND, f"card {card_no} not found")
            if digits is None:
                card["pin_hash"], card["pin_salt"] = 0, 0
            else:
                salt = int.from_bytes(os.urandom(8), "big")
                card["pin_salt"] = salt
                card["pin_hash"] = _fastpath.pin_hash(self._pin_key[0], self._pin_key[1], salt, digits)
            card["pin_failures"], card["pin_locked_until_s"] = 0, 0
            ctx.emit(OpType.SET_PIN, card)
            ctx.detail = {"card_no": int(card_no), "after": {"pin": "set" if digits else "cleared"}}
            return {"pin": "set" if digits else "cleared"}

        return self.admin(client_id, OpType.SET_PIN, build, operator_id=operator_id,
                          store_id=store_id)

    def set_rules(self, rules: RulesConfig, client_id: bytes, *, operator_id: int = 0) -> Future:
        rules.validate()

        def build(ctx: AdminContext):
            version = self._install_rules(ctx, rules)
            ctx.detail = {"before": {"version": version - 1}, "after": {"version": version}}
            return {"version": version}

        return self.admin(client_id, OpType.SET_RULES, build, operator_id=operator_id)

    def put_coupon_template(self, template: CouponTemplate, client_id: bytes, *,
                            operator_id: int = 0) -> Future:
        """Create or change one coupon template: a new rules version with every other
        rule as it is (read inside the writer, so concurrent changes are not lost).
        Coupons already issued keep their validity window; the template's scope and
        value apply to their next redemption."""

        def build(ctx: AdminContext):
            cfg = ctx.rules_config
            before = cfg.coupon_template(template.template_id)
            others = tuple(t for t in cfg.coupon_templates if t.template_id != template.template_id)
            try:
                new = dataclasses.replace(cfg, coupon_templates=others + (template,))
                new.validate()
            except (RulesError, TypeError) as e:
                ctx.reject(Result.INVALID_ARGUMENT, str(e), "TEMPLATE_INVALID")
            version = self._install_rules(ctx, new)
            ctx.detail = {"template_id": template.template_id, "rules_version": version,
                          "before": dataclasses.asdict(before) if before else None,
                          "after": dataclasses.asdict(template)}
            return {"template_id": template.template_id, "created": before is None,
                    "version": version}

        return self.admin(client_id, OpType.SET_RULES, build, operator_id=operator_id)

    def _install_rules(self, ctx: AdminContext, rules: RulesConfig) -> int:
        """Inside an admin op: journal rules as the next version, in force from the
        commit on. Returns the version."""
        version = ctx.rules.version + 1
        new = RulesConfig.from_dict({**rules.to_dict(), "version": version})
        new.compile(self._pin_key, self._type_limits)  # fails here, not in the swap
        ctx.emit(OpType.SET_RULES, None, amount_fen=version)
        ctx.put("rules", u32(version), new.to_json())
        ctx.put("meta", b"rules_version", u32(version))

        def swap() -> None:
            self._rules_config = new
            self._rules = new.compile(self._pin_key, self._type_limits)

        ctx.after_commit(swap)
        return version

    # --- reads ------------------------------------------------------------------------

    @property
    def rules(self) -> RulesConfig:
        return self._rules_config

    def card(self, card_no: int) -> dict | None:
        cards, slot = self._view_slot(card_no)
        if slot < 0:
            return None
        return card_to_dict(cards[slot].copy())

    def backup(self, dest_dir: str, *, compact: bool = True) -> int:
        """A consistent copy of the environment taken while serving (one LMDB read
        transaction); returns the last journal seq it holds. Opening the copy replays the
        journal after its checkpoint. Another process uses core.engine.backup.backup instead."""
        if os.path.exists(dest_dir) and os.listdir(dest_dir):
            raise FileExistsError(f"{dest_dir} is not empty")
        os.makedirs(dest_dir, exist_ok=True)
        with self.store.read() as txn:
            last = self.store.last_seq(txn)
            self.store.env.copy(dest_dir, compact=compact, txn=txn)
        return last

    def cards_snapshot(self) -> np.ndarray:
        """The committed card table as a read-only numpy view (dtype CARD), for
        vectorised cold paths (search, reports). Rows change in place as commits
        publish; copy what must not move under you."""
        cards, _index, n = self._view
        view = cards[:n]
        view.flags.writeable = False
        return view

    def coupons_snapshot(self) -> np.ndarray:
        """The committed coupon table as a read-only numpy view (dtype COUPON), like
        cards_snapshot (targeted plans' results and triggers)."""
        view = self._coupons[: self._n_coupons]
        view.flags.writeable = False
        return view

    def journal_record(self, seq: int) -> np.void | None:
        with self.store.read() as txn:
            return self.store.journal_record(txn, seq)

    def card_journal(self, card_no: int, limit: int = 50) -> np.ndarray:
        cards, slot = self._view_slot(card_no)
        out = np.zeros(0, dtype=JOURNAL)
        if slot < 0 or limit <= 0:
            return out
        seq = int(cards[slot]["last_seq"])
        found = []
        with self.store.read() as txn:
            while seq and len(found) < limit:
                rec = self.store.journal_record(txn, seq)
                if rec is None:
                    break
                found.append(rec)
                seq = int(rec["prev_seq"])
        return np.array(found, dtype=JOURNAL) if found else out

    def journal(self, from_seq: int, limit: int) -> np.ndarray:
        parts, n = [], 0
        with self.store.read() as txn:
            for block in self.store.journal_blocks(txn, max(0, from_seq - 1)):
                parts.append(block[: limit - n].copy())
                n += len(parts[-1])
                if n >= limit:
                    break
        return np.concatenate(parts) if parts else np.zeros(0, dtype=JOURNAL)

    def stats(self) -> dict:
        size, used = self.store.map_usage()
        with self._cond:
            queued = self._queued_ops
        return {"queue_ops": queued, "last_seq": self._last_seq, "n_cards": self._n_cards,
                "map_size_bytes": size, "map_used_bytes": used, "commits": self._commits,
                "checkpoint_seq": self._checkpoint_seq, "rules_version": self._rules.version,
                "recovered_records": self.recovered_records,
                "zero_id_records": self.zero_id_records, **self._rollup_stats()}

    def _rollup_stats(self) -> dict:
        r = self.rollups
        if r is None:
            return {}
        return {"rollups_seq": r.seq, "rollups_worker_restarts": r.worker_restarts,
                "rollups_failing": int(r.error is not None)}

    # --- the writer -------------------------------------------------------------------
    #
    # Three threads. The applier takes a batch, applies it against `_work` and hands it
    # to the committer; while the committer waits for the fsync, the applier already
    # applies the next batch (the Cython loop and LMDB's commit both run without the
    # GIL). The committer hands each committed batch to the publisher and starts the
    # next commit at once; the publisher copies the batch into `_cards` and resolves its
    # futures (after their own commit, in commit order) meanwhile. Cold (admin) ops run
    # in the applier once the pipeline is empty (nothing applied, committing or being
    # published). If a commit fails, that batch and every batch applied after it fail,
    # and the applier reloads the durable state.

    def _take(self) -> list | None:
        with self._cond:
            while not self._queue and not self._closing:
                if not self._background:
                    self._cond.wait()
                    continue
                pause = self._background_ready - time.monotonic()
                if pause <= 0:
                    break
                self._cond.wait(pause)      # paced (background_share_bp)
            now = time.monotonic()
            if self._background and (self._closing or now >= self._background_ready) and (
                    not self._queue or now - self._background[0].queued_at
                    >= self.config.background_wait_max_ms / 1000):
                return [self._background.popleft()]
            if not self._queue:
                return None
            if not isinstance(self._queue[0], _Hot):
                return [self._queue.popleft()]
            batch_ops_max = self.config.batch_ops_max
            # Under load (the last batch was a quarter full or more) wait a moment for a
            # fuller batch; a lone op is committed at once.
            if (self.config.commit_window_us and self._queued_ops < batch_ops_max // 4
                    and self._last_batch_ops >= batch_ops_max // 4 and not self._closing):
                self._cond.wait(self.config.commit_window_us / 1e6)
            return self._pop_hot()

    def _pop_hot(self) -> list[_Hot]:
        """Under _cond: the hot submissions at the head of the queue, up to
        batch_ops_max ops."""
        items, n = [], 0
        while self._queue and isinstance(self._queue[0], _Hot):
            k = len(self._queue[0].ops)
            if n + k > self.config.batch_ops_max:
                break
            items.append(self._queue.popleft())
            n += k
        self._queued_ops -= n
        return items

    def _refund_targets(self, ops: np.ndarray):
        """For each REFUND op: the record of the swipe it names when that swipe was
        committed or is in flight (a swipe earlier in the same batch is found by the fast
        path itself), the coupons it redeemed and its primary card's record (both follow
        its card record with the same client id). Refunds are rare: a Python loop is fine.
        Returns (refs, prefs, (coupon_ids, offsets, counts)) or Nones."""
        idx = np.flatnonzero(ops["op_type"] == _REFUND)
        if len(idx) == 0:
            return None, None, None
        refs = np.zeros(len(ops), dtype=JOURNAL)
        prefs = np.zeros(len(ops), dtype=JOURNAL)
        offs = np.zeros(len(ops), dtype=np.uint32)
        counts = np.zeros(len(ops), dtype=np.uint8)
        coupon_ids: list[int] = []
        for i in idx.tolist():
            prior = self._id_index.lookup(int(ops[i]["ref_hi"]), int(ops[i]["ref_lo"]))
            if prior < 0:
                continue
            seq = prior >> 8
            rec = self._record_anywhere(seq)
            if rec is None:
                continue
            refs[i] = rec
            offs[i] = len(coupon_ids)
            for k in range(1, _fastpath.COUPONS_PER_OP + 2):
                nxt = self._record_anywhere(seq + k)
                if (nxt is None or int(nxt["client_hi"]) != int(rec["client_hi"])
                        or int(nxt["client_lo"]) != int(rec["client_lo"])):
                    break
                if int(nxt["kind"]) == RecordKind.KIND_COUPON:
                    coupon_ids.append(int(coupon_of(nxt)["coupon_id"]))
                    counts[i] += 1
                elif int(nxt["op_type"]) == OpType.SUPP_DEBIT:
                    prefs[i] = nxt
        return refs, prefs, (np.array(coupon_ids, dtype=np.uint64), offs, counts)

    def _record_anywhere(self, seq: int) -> np.void | None:
        with self._inflight_lock:
            inflight = list(self._inflight.items())
        for first, recs in inflight:
            if first <= seq < first + len(recs):
                return recs[seq - first]
        return self.journal_record(seq)

    @staticmethod
    def _rebase(items: list[_Hot], ops: np.ndarray, attr: str, off: str) -> np.ndarray | None:
        parts, base, k = [], 0, 0
        for it in items:
            m = len(it.ops)
            extra = getattr(it, attr)
            if extra is not None:
                ops[off][k:k + m] += base
                parts.append(extra)
                base += len(extra)
            k += m
        return np.concatenate(parts) if parts else None

    def _drain(self) -> None:
        """Wait until every applied batch has been committed (or failed)."""
        self._pipe.join()

    def _run(self) -> None:
        while True:
            # A free pipeline slot first, then the batch: ops that arrive while the
            # committer is busy make the batch fuller instead of waiting behind it.
            self._pipe_slots.acquire()
            items = self._take()
            if items is None or not isinstance(items[0], _Hot):
                self._hot_next = False      # (a hot batch clears it once being applied)
            if items is None:
                self._pipe_slots.release()
                break
            if self._poisoned is not None:
                self._hot_next = False
                self._drain()
                self._reload()
            try:
                if isinstance(items[0], _Task):
                    self._pipe_slots.release()
                    self._drain()
                    items[0].run()
                    _resolve(items[0].future, None)
                elif isinstance(items[0], _Cold):
                    self._pipe_slots.release()
                    self._drain()
                    if items[0].background and self._yield_background(items[0]):
                        continue
                    held_from = time.monotonic()
                    if not self._run_cold(items[0]):
                        self._maybe_checkpoint()    # (a handed-over op's publisher does)
                    if items[0].background:
                        self._pace_background(time.monotonic() - held_from)
                else:
                    self._applying = True
                    self._hot_next = False
                    try:
                        self._apply_hot(items)
                    finally:
                        self._applying = False
            except BaseException as exc:  # the writer must outlive any one batch
                log.exception("batch failed")
                for it in items:
                    _fail(it.future, exc)
        self._pipe.put(None)
        self._committer.join()
        self._publisher.join()
        if self._poisoned is None:
            try:
                self._checkpoint()
            except Exception:
                log.exception("final checkpoint failed")

    def _pace_background(self, held_s: float) -> None:
        """After a background op held the writer held_s seconds: the next one is taken
        no sooner than its share of the writer's time allows (background_share_bp)."""
        self._background_ready = time.monotonic() + self._pause_s(held_s)

    def _pause_s(self, held_s: float) -> float:
        share = self.config.background_share_bp
        return held_s * (10_000 - share) / share

    def _yield_background(self, item: _Cold) -> bool:
        """A background op was taken with no swipe queued, then waited for the pipeline
        to drain (the commits in flight). Swipes that came meanwhile go first: it goes
        back to the head of its queue (returns True), unless it has already waited
        background_wait_max_ms. A swipe then waits behind one op only if it comes while
        that op is being built or committed."""
        with self._cond:
            if self._queue and (time.monotonic() - item.queued_at
                                < self.config.background_wait_max_ms / 1000):
                self._background.appendleft(item)
                return True
        return False

    def _reload(self) -> None:
        log.warning("reloading durable state after a failed commit: %r", self._poisoned)
        self._recover(None)
        self._poisoned = None

    def _commit(self, recs: np.ndarray, extra: Callable[[lmdb.Transaction], None] | None = None,
                events: dict | None = None,
                item_recs: np.ndarray | None = None) -> float:  # commit seconds
        """Write recs (and extra) in one durable commit; grow the map when full."""
        while True:
            t0 = time.perf_counter()
            try:
                with self.store.env.begin(write=True) as txn:
                    self._write_batch(txn, recs, item_recs)
                    if events is not None:
                        txn.put(u64(int(recs[0]["seq"])), json.dumps(events).encode(),
                                db=self.store.db["events"])
                    if extra is not None:
                        extra(txn)
                return time.perf_counter() - t0
            except lmdb.MapFullError:
                size = self.store.grow()
                log.warning("LMDB map full; grown to %d bytes", size)

    def _write_batch(self, txn: lmdb.Transaction, recs: np.ndarray,
                     item_recs: np.ndarray | None) -> None:
        if len(recs):
            self.store.put_journal(txn, recs)
        if item_recs is not None and len(item_recs):
            # The line items, under the same key as their journal block.
            txn.put(u64(int(recs[-1]["seq"])), np.ascontiguousarray(item_recs).view(np.uint8),
                    db=self.store.db[JOURNAL_ITEMS_DB], append=True)

    def _apply_hot(self, items: list[_Hot]) -> None:
        try:
            job = self._apply(items)
        except BaseException:
            self._pipe_slots.release()
            raise
        if self._alone():
            self._commit_alone(job)
        else:
            self._pipe.put(job)

    def _alone(self) -> bool:
        """Whether the batch just applied is the only work there is: the pipeline holds
        nothing (every batch put in it is published, so none waits for a commit's fsync
        to make it durable) and no submission is queued behind it. Then the applier
        commits and publishes it itself (_commit_alone): the committer and publisher
        would only have run it one after the other, each woken for it. A unary load
        (one submission of single ops at a time, server/rpc/bridge.py) is always alone.
        Not after ops came in during the last batch committed alone (_lone_ok: a
        stream's load, which the pipeline overlaps), until the pipeline runs dry again.
        Not with a replication feed (its frames are the committer's, thread-local) nor
        with an ack gate (the acker's order is kept with the publisher's answers)."""
        return (self._lone_ok and self.feed is None and self._acks is None and not self._queue
                and self._pipe.unfinished_tasks == 0)

    def _commit_alone(self, job: _Job) -> None:
        """Commit, make durable and publish job on this thread (the applier), in the
        order the committer and the publisher keep: its data fsync in the commit, its
        meta page's fsync of its own (Store.lazy_meta: no next commit is coming), then
        the card table and the answers. Nothing is answered before that fsync."""
        try:
            done = self._commit_hot(job)
            if self.store.lazy_meta and done[3] is None and len(job.recs):
                done = self._made_durable(done)
            # Ops that came meanwhile would have been applied while this one committed,
            # and made it durable with their commit: the pipeline's load, not a lone one.
            self._lone_ok = not self._queue
            self._publish_done(done)
        finally:
            self._pipe_slots.release()

    def _apply(self, items: list[_Hot]) -> _Job:
        """Apply a batch against the work side (it then holds the batch); a failure
        once the work side may hold part of it leaves _poisoned set."""
        t0 = time.perf_counter()
        ops = items[0].ops if len(items) == 1 else np.concatenate([it.ops for it in items])
        lines = coupon_ids = None
        if len(items) == 1:
            lines, coupon_ids = items[0].items, items[0].coupon_ids
        elif any(it.items is not None or it.coupon_ids is not None for it in items):
            # One items array and one coupon id array for the batch; each submission's
            # offsets move by its base.
            ops = ops.copy() if ops is items[0].ops else ops
            lines = self._rebase(items, ops, "items", "items_off")
            coupon_ids = self._rebase(items, ops, "coupon_ids", "coupons_off")
        n = len(ops)
        self._last_batch_ops = n
        refs, prefs, ref_coupons = self._refund_targets(ops)
        n_coupon_ids = 0 if coupon_ids is None else len(coupon_ids)
        # One record per op, one more for a supplementary swipe's or a refund's primary
        # card, two per coupon named (redeemed, or restored by a refund in the batch).
        room = 2 * n + 2 * n_coupon_ids + (0 if ref_coupons is None else len(ref_coupons[0]))
        results = np.empty(n, dtype=RESULT)
        recs = np.empty(room, dtype=JOURNAL)
        slots = np.empty(room, dtype=np.int64)
        try:
            n_recs = self._batcher.apply_batch(ops, self._work, self._card_index, self._id_index,
                                               self._rules, self.clock(), self._next_seq, recs,
                                               results, slots, lines, refs, self._refunded,
                                               self._coupons_work, self._coupon_index,
                                               coupon_ids, *(ref_coupons or (None, None, None)),
                                               prefs)
            recs = recs[:n_recs]
            facts = _facts(recs) if n_recs else None
            if n_recs:
                self._publish_work(recs, slots, claim_ids=True, has_coupons=facts.has_coupons)
                with self._inflight_lock:
                    self._inflight[self._next_seq] = recs
                self._next_seq += n_recs
        except BaseException as exc:
            # `_work` may hold part of this batch: start again from the durable state.
            self._poisoned = exc
            raise
        return _Job(items, ops, recs, slots, results, t0, journal_items(ops, results, lines), facts)

    def _commit_loop(self) -> None:
        """The committer: commit each applied batch and hand it to the publisher once it
        is durable, so the next batch's fsync starts while this one's copy into the card
        table and its answers run (the publisher thread). Its pipeline slot and the
        pipe's task_done follow the publish (_publish_loop), so _drain() also waits for it.

        With Store.lazy_meta a commit fsyncs its data but not its meta page: it is
        durable once the next commit's fsync has run (that fsync covers the whole file,
        the earlier meta page too) or an fsync of its own. So a committed batch waits
        (`held`) for the next batch's commit when one is already in the pipe, and gets
        an fsync of its own when none is: one fsync per batch under load, and a lone
        batch is answered after two, as with LMDB's own meta sync."""
        held = None  # committed, its meta page not yet known durable
        try:
            while True:
                if held is None:
                    job = self._pipe.get()
                else:
                    try:
                        # The batch being applied now will come next: its commit's
                        # fsync serves held too, sooner than an fsync of its own
                        # followed by that commit.
                        wait = self._held_wait(held)
                        job = self._pipe.get(timeout=wait) if wait else self._pipe.get_nowait()
                    except queue.Empty:
                        if self._held_wait(held):
                            continue
                        self._published.put(self._made_durable(held))
                        held = None
                        continue
                if job is None:
                    if held is not None:
                        self._published.put(self._made_durable(held))
                    return
                done = self._commit_hot(job)
                if not self._applying and self._pipe.empty() and not self._queue:
                    self._lone_ok = True    # nothing behind it: the pipeline ran dry
                if held is not None:
                    # This commit's fsync ran after held's meta page was written, unless
                    # it wrote nothing or failed: then an fsync of its own.
                    synced = done[3] is None and len(job.recs) > 0 and job.cold is None
                    self._published.put(held if synced else self._made_durable(held))
                    held = None
                if self.store.lazy_meta and done[3] is None and (len(job.recs) or job.cold is not None):
                    held = done
                else:
                    self._published.put(done)
        finally:
            self._published.put(None)

    def _held_wait(self, held: tuple) -> float:
        """How long the committer waits (at a time) for the next commit to make held
        durable before it gives held an fsync of its own; 0: no wait. A batch is being
        applied, or hot ops were queued behind a handed-over op (_hot_next): it comes.
        A handed-over op with none queued waits for one until its pause ends."""
        if self._applying or self._hot_next:
            return HELD_WAIT_S
        if held[0].cold is not None and not self._closing:
            left = self._handed_until - time.monotonic()
            if left > 0:
                return min(HELD_WAIT_S, left)
        return 0.0

    def _made_durable(self, done: tuple) -> tuple:
        """done (a _commit_hot result) after an fsync of the file; failed if that fails."""
        try:
            self.store.flush()
        except BaseException as exc:
            log.exception("fsync after a commit failed; its batch fails")
            self._poisoned = exc
            return done[0], 0.0, 0, exc
        return done

    def _commit_hot(self, job: _Job) -> tuple[_Job, float, int, BaseException | None]:
        """Commit job (unless an earlier commit failed); returns (job, commit seconds,
        the replication frame of its commit, the failure or None)."""
        if self._poisoned is not None:
            return job, 0.0, 0, self._poisoned
        if job.cold is not None:
            return job, job.cold.commit_s, 0, None  # committed by the applier (_hand_over)
        commit_s = 0.0
        upto = [0]

        def round_writes(txn: lmdb.Transaction) -> None:
            upto[0] = self._round_writes(txn, self._round_chunks(len(job.recs)))

        in_round = self._round is not None and len(job.recs) > 0
        try:
            if len(job.recs):
                commit_s = self._commit(job.recs, round_writes if in_round else None,
                                        item_recs=job.item_recs)
            if in_round:
                self._round_committed(upto[0])
        except BaseException as exc:
            log.exception("commit failed; the batches applied after it fail too")
            self._poisoned = exc
            return job, 0.0, 0, exc
        self._commits += 1
        if self.rollups is not None:
            self.rollups.poke()
        # The feed's frame is the committing thread's own (thread-local): read it here.
        frame = self.feed.last_frame() if self.feed is not None else 0
        return job, commit_s, frame, None

    def _publish_loop(self) -> None:
        """The publisher: in commit order, make each committed batch visible (card table,
        id blocks, checkpoint rounds) and answer its callers; then free its pipeline
        slot. A batch whose commit failed is only answered with the failure."""
        while True:
            done = self._published.get()
            if done is None:
                return
            try:
                self._publish_done(done)
            finally:
                self._pipe.task_done()
                self._pipe_slots.release()

    def _publish_done(self, done: tuple) -> None:
        """Publish and answer one durable batch (a _commit_hot result), or answer it with
        its failure (the publisher's, or the applier's for a batch alone)."""
        job, commit_s, frame, failed = done
        if failed is None:
            try:
                self._publish_hot(job, commit_s, frame)
            except BaseException as exc:
                # Durable but not published: the applier reloads the durable
                # state; the callers retry with the same ids and get the answer.
                log.exception("publish failed; reloading the durable state")
                self._poisoned = exc
                failed = exc
        if failed is not None:
            for it in job.items:
                _fail(it.future, failed)
            if job.cold is not None:
                _fail(job.cold.item.future, failed)

    def _publish_hot(self, job: _Job, commit_s: float, frame: int) -> None:
        if job.cold is not None:
            # A handed-over op, then the batch joined to its commit (if any), in order.
            self._publish_handed(job.cold)
            if not job.items:
                try:
                    self._maybe_checkpoint()
                except Exception:
                    log.exception("checkpoint failed; the journal still holds everything")
                return
        if len(job.recs):
            self._publish_committed(job.recs, job.slots, claim_ids=False, facts=job.facts)
            with self._inflight_lock:
                self._inflight.pop(int(job.recs[0]["seq"]), None)
        k, answers = 0, []
        for it in job.items:
            m = len(it.ops)
            answers.append((it.future, BatchResult(self, job.results[k:k + m], job.recs)))
            k += m
        # Counted before answered: a scrape that follows an answer sees its ops.
        self._observe(len(job.ops), len(job.recs), len(job.items), commit_s,
                      time.perf_counter() - job.t0, job.results["code"], job.ops["op_type"])
        self._release(answers, frame)
        try:
            self._maybe_checkpoint()
        except Exception:
            log.exception("checkpoint failed; the journal still holds everything")

    def _run_cold(self, item: _Cold) -> None:
        t0 = time.perf_counter()
        prior = self._id_index.lookup(*item.client)
        if prior >= 0:
            prior >>= 8  # the seq of the first op (the low byte is its result)
            with self.store.read() as txn:
                raw = txn.get(u64(prior), db=self.store.db["events"])
            event = json.loads(raw) if raw else {}
            self._release([(item.future, AdminResult(Result.OK, True, prior, "replayed",
                                                     event.get("result")))])
            return
        now = self.clock()
        while True:
            ctx = None
            joined = None   # a hot batch committed in this op's transaction (_join_hot)
            try:
                t_commit = time.perf_counter()
                with self.store.env.begin(write=True) as txn:
                    ctx = AdminContext(self, txn, item, now)
                    value = item.build(ctx)
                    recs = ctx._journal()
                    self.store.put_journal(txn, recs)
                    event = {"op": OP_NAMES[item.op_type], "time_s": now, "operator_id": item.operator_id,
                             "store_id": item.store_id, "detail": ctx.detail, "result": value}
                    txn.put(u64(int(recs[0]["seq"])), json.dumps(event, default=str).encode(),
                            db=self.store.db["events"])
                    handed = item.background and self._may_hand_over(recs, ctx)
                    if handed:
                        joined = self._join_hot(recs)
                        if joined is not None:
                            # (a failure from here on: _unjoin_hot, once txn is aborted)
                            self._write_batch(txn, joined.recs, joined.item_recs)
                    n_round = len(recs) + (len(joined.recs) if joined is not None else 0)
                    # An open checkpoint round moves in this commit, as in a hot one, not
                    # in a transaction (and fsync) of its own after it.
                    round_upto = (self._round_writes(txn, self._round_chunks(n_round))
                                  if self._round is not None else None)
                commit_s = time.perf_counter() - t_commit
                break
            except BaseException as exc:
                if ctx is not None:
                    for name in ctx._opened:
                        self.store.db.pop(name, None)
                if joined is not None:
                    self._unjoin_hot(joined, exc)
                if isinstance(exc, lmdb.MapFullError):
                    size = self.store.grow()
                    log.warning("LMDB map full; grown to %d bytes", size)
                    continue
                if isinstance(exc, AdminRejected):
                    self._observe(1, 0, 1, 0.0, time.perf_counter() - t0,
                                  np.array([exc.code], np.uint8),
                                  np.array([item.op_type & 0xFF], np.uint8))
                    _resolve(item.future, AdminResult(exc.code, False, 0, exc.detail,
                                                      reason=exc.reason))
                    return
                raise
        answer = AdminResult(Result.OK, False, int(recs[0]["seq"]),
                             json.dumps(ctx.detail, default=str) if ctx.detail else "", value)
        if handed:
            self._hand_over(item, recs, answer, commit_s, round_upto, t0, joined)
            return True
        try:
            self.store.flush()  # durable before it is published and answered (lazy_meta)
        except BaseException as exc:
            self._poisoned = exc  # committed, maybe not durable: reload what is
            raise
        if round_upto is not None:
            self._round_committed(round_upto)
        self._next_seq = int(recs[-1]["seq"]) + 1
        self._publish_committed(recs, None, claim_ids=True)
        self._publish_work(recs, None, claim_ids=False)
        for fn in ctx._after:
            fn()
        self._commits += 1
        if self.rollups is not None:
            self.rollups.poke()
        self._observe_cold(item, len(recs), commit_s, t0)
        self._release([(item.future, answer)])
        return False

    def _observe_cold(self, item: _Cold, n_recs: int, commit_s: float, t0: float) -> None:
        self._observe(1, n_recs, 1, commit_s, time.perf_counter() - t0,
                      np.array([Result.OK], np.uint8), np.array([item.op_type & 0xFF], np.uint8))

    # A background op (a plan's chunk) is not made durable by an fsync of its own while
    # the swipes wait: its commit goes down the hot pipeline as if it were a batch's, so
    # the next group commit's fsync covers its meta page (Store lazy_meta), and it is
    # published and answered after that, in commit order (docs/internals/storage.md,
    # "One fsync per group commit").

    def _may_hand_over(self, recs: np.ndarray, ctx: AdminContext) -> bool:
        """Whether a committed background op may be handed to the committer: only with
        lazy_meta (no replication feed, whose frames are acknowledged per commit), no
        after-commit hook (it changes what the next batch is applied with), no refund
        (its total is the applier's) and no card the tables do not know (a new card
        grows the tables, which only the drained applier may do)."""
        return (self.store.lazy_meta and not ctx._after
                and not np.any(recs["op_type"] == _REFUND) and not len(self._unknown_cards(recs)))

    def _join_hot(self, recs: np.ndarray) -> _Job | None:
        """Inside a handed-over op's transaction, before its commit: the hot batch queued
        behind it (if any, and with no refund: a refund reads the journal), applied
        after it, to be written into the same transaction, so the swipes that came while
        it was built share its commit and fsync instead of waiting for both. The work
        side learns the op first (_teach). None when nothing is queued."""
        with self._cond:
            items = self._pop_hot()
            if any(np.any(it.ops["op_type"] == _REFUND) for it in items):
                self._queue.extendleft(reversed(items))
                self._queued_ops += sum(len(it.ops) for it in items)
                items = []
        if not items:
            return None
        try:
            self._teach(recs, _facts(recs))
            job = self._apply(items)
        except BaseException as exc:
            self._poisoned = exc  # the work side holds the op, maybe part of the batch
            for it in items:
                _fail(it.future, exc)
            raise
        return job

    def _unjoin_hot(self, joined: _Job, exc: BaseException) -> None:
        """The transaction a batch was joined to failed: the work side holds the op and
        the batch, neither durable. Back to the durable state; the batch goes back to
        the head of the queue when the op will be tried again (the map was full), else
        it fails with the op."""
        self._recover(None)
        if isinstance(exc, lmdb.MapFullError):
            with self._cond:
                self._queue.extendleft(reversed(joined.items))
                self._queued_ops += len(joined.ops)
            return
        for it in joined.items:
            _fail(it.future, exc)

    def _teach(self, recs: np.ndarray, facts: _Facts) -> int:
        """The work side learns a handed-over op's records (its client id, its new
        coupons in the index and the work table, its after-images); returns the coupons
        the tables hold once it is published."""
        self._next_seq = int(recs[-1]["seq"]) + 1
        self._make_room(recs, facts)
        self._claim_ids(recs)
        return self._publish_work(recs, None, claim_ids=False, has_coupons=facts.has_coupons)

    def _hand_over(self, item: _Cold, recs: np.ndarray, answer: AdminResult, commit_s: float,
                   round_upto: int | None, t0: float, joined: _Job | None) -> None:
        """In the applier, right after the commit of a background op (pipeline drained):
        the work side learns it now, so the next hot batch is applied after it (its
        client id, its new coupons in the index and the work table, its after-images);
        the committer holds it like a committed batch until an fsync covers it (the next
        batch's commit when hot ops are queued, _hot_next, or come before the pause
        after it ends, _handed_until; else one of its own), and the publisher makes it
        visible to readers and answers it, in commit order."""
        facts = _facts(recs)
        try:
            if round_upto is not None:
                self._round_committed(round_upto)
            # A joined batch was applied after the work side had learnt the op.
            n_coupons = self._teach(recs, facts) if joined is None else self._n_coupons_work
        except BaseException as exc:
            self._poisoned = exc  # committed, the work tables maybe half changed: reload
            raise
        self._commits += 1
        if self.rollups is not None:
            self.rollups.poke()
        with self._cond:
            self._hot_next = bool(self._queue) and isinstance(self._queue[0], _Hot)
        # None queued: the next batch may still come before the next background op is
        # due (_pace_background will set the same pause from the same hold).
        self._handed_until = time.monotonic() + min(HANDED_WAIT_MAX_S,
                                                    self._pause_s(time.perf_counter() - t0))
        self._pipe_slots.acquire()          # free: the pipeline was drained
        job = joined or _Job([], np.zeros(0, OP), np.zeros(0, JOURNAL), None, np.zeros(0, RESULT), t0)
        job.cold = _Handed(item, answer, commit_s, n_coupons, recs, facts, t0)
        self._pipe.put(job)

    def _publish_handed(self, c: _Handed) -> None:
        """The publisher's part of a handed-over op (_hand_over), once durable: the
        committed side (its indexes were taught by the applier), then its answer."""
        self._publish_committed(c.recs, None, claim_ids=True, facts=c.facts,
                                index_ids=False, n_coupons=c.n_coupons)
        self._observe_cold(c.item, len(c.recs), c.commit_s, c.t0)
        self._release([(c.item.future, c.answer)], 0)

    def _observe(self, n_ops: int, n_recs: int, n_items: int, commit_s: float,  # seconds
                 batch_s: float,  # seconds
                 codes: np.ndarray, op_types: np.ndarray) -> None:
        if self.observer is None:
            return
        try:
            self.observer.on_commit(CommitInfo(n_ops, n_recs, n_items, commit_s, batch_s, codes,
                                               op_types, self._queued_ops, self._last_seq))
        except Exception:
            log.exception("observer failed")

    # --- acknowledgements -------------------------------------------------------------
    #
    # A commit's futures resolve at once, unless an ack gate is set (the leader's lease:
    # no acknowledgement while it is not safely valid) or the feed replicates in sync
    # mode (no acknowledgement before the standby confirmed the frame). Then they go to
    # the acker thread in commit order, so the committer goes on with the next batch
    # while the standby's fsync of this one runs: one round trip per group commit.

    def set_ack_gate(self, fn: Callable[[], bool] | None) -> None:
        """Before the futures of a commit resolve, fn() is asked; while it returns False
        they are held (never sent, not failed) and it is asked again every
        ACK_GATE_POLL_S. None removes the gate."""
        self._ack_gate = fn
        if fn is not None:
            self._start_acker()

    def _start_acker(self) -> None:
        with self._inflight_lock:
            if self._acker is not None:
                return
            self._acks = queue.Queue(maxsize=ACKS_HELD_MAX)
            self._acker = threading.Thread(target=self._ack_loop, name="mms-acker", daemon=True)
            self._acker.start()

    def _release(self, answers: list[tuple[Future, object]], frame: int | None = None) -> None:
        """Resolve answers of a commit, or hand them to the acker. frame: the replication
        frame of that commit; None: the commit this thread just made.

        With a gate and no sync standby to wait for, a commit whose gate is open and
        behind which nothing is held resolves here, on the publishing thread: the acker
        (a queue put, a thread wake-up, and the GIL handed over once more per commit)
        is only for answers that must wait. Order holds: nothing is held before them
        (every answer handed to the acker has been released), and the gate is asked
        after the commit, as the acker would ask it."""
        if self._acks is None:
            for fut, value in answers:
                _resolve(fut, value)
            return
        if (self._acks_released == self._acks_handed
                and (self.feed is None or not getattr(self.feed, "sync", False))):
            gate = self._ack_gate
            if gate is None or gate():
                for fut, value in answers:
                    _resolve(fut, value)
                return
        if frame is None:
            frame = self.feed.last_frame() if self.feed is not None else 0
        # Counted by the writer threads one at a time: the publisher for hot commits, the
        # applier for admin ops, which run only once the pipeline has drained.
        self._acks_handed += 1
        self._acks.put((frame, answers))

    def _ack_abandoned(self) -> bool:
        return (self._acks_closing is not None
                and time.monotonic() - self._acks_closing > ACK_CLOSE_GRACE_S)

    def _ack_loop(self) -> None:
        while True:
            item = self._acks.get()
            if item is None:
                return
            frame, answers = item
            released = True
            while True:
                gate = self._ack_gate
                if gate is None or gate():
                    break
                if self._ack_abandoned():
                    released = False
                    break
                time.sleep(ACK_GATE_POLL_S)
            if released and self.feed is not None and frame:
                released = self.feed.wait_confirmed(frame, self._ack_abandoned)
            for fut, value in answers:
                if released:
                    _resolve(fut, value)
                else:
                    _fail(fut, EngineClosed("closed before the commit was acknowledged; "
                                            "retry with the same client id"))
            self._acks_released += 1   # only this thread (the acker) counts up

    # --- checkpoints ------------------------------------------------------------------
    #
    # A checkpoint at seq S is the card and coupon tables as of S, the client ids and
    # refund totals of the records up to S, and meta checkpoint_seq = S; recovery loads it
    # and replays the journal after S. Writing a whole table at once (256 MB at 1,000,000
    # cards, ~2 s) would stall every commit behind it, so a round writes the chunks that
    # were dirty at S a few per group commit, inside that commit's own transaction, and
    # closes with the ids, refunds and meta once all are written. A chunk written later
    # than S holds a newer state than S: replay copies every record's after-image in seq
    # order, so the newest record of each card wins either way; refund totals, which add
    # up, are written exactly as of S.

    def _maybe_checkpoint(self) -> None:
        """Start a round when one is due (the commits that follow, hot or cold, write
        it: _round_chunks)."""
        if self._round is None:
            if (self._since_checkpoint >= self.config.checkpoint_ops
                    or (self._since_checkpoint and time.monotonic() - self._last_checkpoint_time
                        >= self.config.checkpoint_interval_s)):
                self._start_round()

    def _round_chunks(self, n_records: int) -> int:
        """How many chunks of an open round a commit of n_records journal records writes:
        checkpoint_round_ratio times its journal bytes, in chunks of at most 64 KiB, at
        least one and at most checkpoint_chunks_per_commit."""
        want = -(-n_records * JOURNAL.itemsize * self.config.checkpoint_round_ratio
                 // ((1 << CHUNK_SHIFT) * CARD.itemsize))
        return max(1, min(self.config.checkpoint_chunks_per_commit, want))

    def _start_round(self) -> None:
        self._round = _Round(
            seq=self._last_seq, now=self.clock(), n_cards=self._n_cards,
            n_coupons=self._n_coupons,
            chunks=[("cards", int(k)) for k in np.flatnonzero(self._dirty)]
            + [("coupons", int(k)) for k in np.flatnonzero(self._coupon_dirty)],
            ids=np.concatenate(self._pending_ids) if self._pending_ids else np.zeros(0, IDS_DTYPE),
            refunds=self._pending_refunds, expired=list(self._expired_id_blocks))
        self._dirty[:] = 0
        self._coupon_dirty[:] = 0
        self._pending_ids = []
        self._pending_refunds = []
        self._expired_id_blocks = []
        self._since_checkpoint = 0
        self._last_checkpoint_time = time.monotonic()

    def _round_writes(self, txn: lmdb.Transaction, limit: int) -> int:
        """Write the next limit chunks of the open round in txn, and close the round when
        none is left; returns how far the round will be once txn commits."""
        r = self._round
        upto = min(len(r.chunks), r.done + limit)
        for db, k in r.chunks[r.done:upto]:
            table, n = (self._cards, self._n_cards) if db == "cards" else (self._coupons, self._n_coupons)
            self.store.write_chunk(txn, db, table, n, k)
        if upto == len(r.chunks):
            self.store.write_checkpoint_mark(txn, r.ids, r.seq, r.now, r.n_cards, r.n_coupons)
            db = self.store.db["refunds"]
            for ref_seq, amount in r.refunds:
                old = txn.get(u64(ref_seq), db=db)
                total = (int.from_bytes(old, "big") if old else 0) + amount
                txn.put(u64(ref_seq), total.to_bytes(8, "big"), db=db)
            for key in r.expired:
                txn.delete(key, db=self.store.db["ids"])
        return upto

    def _round_committed(self, upto: int) -> None:
        r = self._round
        r.done = upto
        if upto == len(r.chunks):
            self._checkpoint_seq = r.seq
            self._round = None
            if time.monotonic() - self._last_id_prune >= self.config.id_prune_interval_s:
                self._last_id_prune = time.monotonic()
                with self._cond:
                    if not self._closing:
                        self._queue.append(_Task(self._prune_ids, Future()))
                        self._cond.notify()

    def prune_ids(self) -> int:
        """Forget the client ids past the retention now (the writer does it by itself
        every id_prune_interval_s); returns the ids still known."""
        task = _Task(self._prune_ids, Future())
        self._enqueue(task)
        task.future.result()
        return len(self._id_index)

    def _prune_ids(self) -> None:
        """In the writer, with nothing in flight: rebuild the id index from the id blocks
        still inside the retention and the ids not yet written to a block (the open
        checkpoint round's and those after it). Expired blocks are deleted by the next
        checkpoint. A retry of a forgotten id is a new op, as after a restart."""
        now = self.clock()
        with self.store.read() as txn:
            kept, expired = self.store.load_ids(txn, now - self.config.id_retention_s)
        parts = [kept] + ([self._round.ids] if self._round is not None else []) + self._pending_ids
        ids = np.concatenate(parts)
        index = _fastpath.KeyMap(max(1024, len(ids)))
        index_ids(index, ids["hi"], ids["lo"], ids["seq"])
        self._id_index = index
        known = set(self._expired_id_blocks)
        if self._round is not None:
            known |= set(self._round.expired)
        self._expired_id_blocks += [k for k in expired if k not in known]

    def _advance_round(self, limit: int) -> None:
        upto = 0
        while True:
            try:
                with self.store.env.begin(write=True) as txn:
                    upto = self._round_writes(txn, limit)
                break
            except lmdb.MapFullError:
                size = self.store.grow()
                log.warning("LMDB map full; grown to %d bytes", size)
        self._round_committed(upto)

    def _checkpoint(self) -> None:
        """A whole checkpoint now (at close): finish an open round, then one more round
        for what came after it, each in one transaction."""
        for _ in range(2):
            if self._round is None:
                self._start_round()
            self._advance_round(len(self._round.chunks))

    # --- lifecycle --------------------------------------------------------------------

    def close(self) -> None:
        """Stop taking ops, apply and commit everything accepted, checkpoint, close."""
        with self._cond:
            if self._closed:
                return
            self._closing = True
            self._cond.notify_all()
        if self.standby:
            self._closed = True
            self.store.close()
            return
        # From now on an acknowledgement held longer than ACK_CLOSE_GRACE_S is failed:
        # a committer blocked behind held acks (a full _acks) must not hang the close.
        self._acks_closing = time.monotonic()
        self._writer.join()
        if self._acker is not None:
            self._acks.put(None)
            self._acker.join()
        if self.rollups is not None:
            try:
                self.rollups.close()
            except Exception:
                log.exception("final rollup catch-up failed; the journal still holds everything")
        self._closed = True
        self.store.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
