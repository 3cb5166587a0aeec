"""Replication: every committed LMDB write transaction of the primary, shipped as one
frame and written by the standby in one transaction of its own (docs/internals/replication.md).

Primary side (`Feed`): the engine's Store is wrapped so that each write transaction
records what it wrote, (database, key, value) or (database, key, delete) or (database,
drop); at commit the list becomes one frame of bytes with its frame number, epoch and
journal seq range. Every frame also writes meta `repl_frame` (its number) and
`repl_epoch`, so the position and the epoch are durable with the data, on both sides.
Hot group commits, cold admin ops, checkpoint rounds and the rollup tailer's
transactions are all frames, in commit order (LMDB runs one write transaction at a
time; the frame number is taken under that lock).

Standby side (`Replica`): a frame is checked (epoch not older than the applied one,
number exactly the next), written in one fsync'd transaction, and its journal blocks
are published into the in-memory tables with the engine's own recovery code
(`Engine._publish_committed`, what `_recover` runs over the journal tail), so the
standby's databases equal the primary's key by key and its card table is what a
recovery of them would build.
"""

from __future__ import annotations

import collections
import logging
import os
import shutil
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import lmdb
import numpy as np

from core.engine._framepack import pack, seqs_contiguous, unpack
from core.engine.storage import MAX_DBS, MAX_READERS, Store, from_be, u64
from core.engine.writer import Engine, EngineConfig, _facts
from core.records import JOURNAL
from core.rules import RulesConfig

log = logging.getLogger("mms.replication")

MODES = ("async", "sync")
ON_STANDBY_LOST = ("wait", "async")

# Frames kept in memory for standbys to catch up from (bytes); a standby further
# behind bootstraps from a hot copy again.
FEED_BUFFER_BYTES = 256 << 20
# In sync mode with on_standby_lost="async": how long an acknowledgement waits for the
# standby before the feed falls back to async (and counts it).
SYNC_TIMEOUT_S = 2.0
# How often a waiting acknowledgement looks at the close flag.
WAIT_POLL_S = 0.05

FRAME_MAGIC = 0x4D4D5246  # "MMRF"
FRAME_VERSION = 1
# magic, version, flags, epoch, frame number, first seq, last seq, commit time ns, entries
_HEADER = struct.Struct("<IHHQQQQQI")
# op, name length, key length, value length
_ENTRY = struct.Struct("<BBII")
PUT, DELETE, DROP, DROP_DELETE = 1, 2, 3, 4
# A journal block's put, its value packed (core/engine/_framepack.pyx: the first record,
# then only the bytes in which the others differ from it, ~8x smaller for swipes);
# decode_frame gives it back as a PUT of the exact block. A standby of a version before
# it refuses such a frame (FRAME_INVALID) rather than write the packed bytes.
PUT_PACKED = 5
# The largest journal block a frame carries packed (bytes once unpacked, ~161,000
# records). The primary sends a larger block plain, so a standby can refuse a packed
# block above it: a few hundred bytes on the wire cannot ask it for gigabytes.
PACKED_BLOCK_BYTES_MAX = 64 << 20
_OPS = (PUT, DELETE, DROP, DROP_DELETE, PUT_PACKED)

META_FRAME = b"repl_frame"
META_EPOCH = b"repl_epoch"
# meta b"repl_epoch_start/" + u64 BE epoch -> u64 BE the first frame of that epoch (the
# epoch history: a rejoining node whose last frame is at or past the next epoch's
# start wrote a tail the new primary never had).
META_EPOCH_START = b"repl_epoch_start/"
_JOURNAL_DB = b"journal"


class ReplicationError(RuntimeError):
    """A frame or a subscription that cannot be applied; reason is machine-readable."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class StaleEpoch(ReplicationError):
    def __init__(self, message: str) -> None:
        super().__init__("STALE_EPOCH", message)


@dataclass(frozen=True)
class Frame:
    epoch: int
    number: int
    first_seq: int  # 0 when the frame holds no journal block
    last_seq: int
    time_ns: int
    entries: list  # (op, db name bytes, key, value) with memoryviews into the frame

    def puts(self, name: str) -> list:
        """The values this frame put into database name, in order."""
        raw = name.encode()
        return [v for op, n, _k, v in self.entries if op == PUT and n == raw]


def encode_frame(epoch: int, number: int, first_seq: int, last_seq: int, time_ns: int,
                 entries: list) -> bytes:
    return b"".join(_frame_parts(epoch, number, first_seq, last_seq, time_ns, entries)[0])


def _frame_parts(epoch: int, number: int, first_seq: int, last_seq: int, time_ns: int,
                 entries: list) -> tuple[list, int]:
    """The frame's pieces, to be joined, and its length."""
    parts = [_HEADER.pack(FRAME_MAGIC, FRAME_VERSION, 0, epoch, number, first_seq, last_seq,
                          time_ns, len(entries))]
    size = _HEADER.size + _ENTRY.size * len(entries)
    for op, name, key, value in entries:
        lk, lv = len(key), len(value)
        parts.append(_ENTRY.pack(op, len(name), lk, lv))
        parts.append(name)
        parts.append(key)
        parts.append(value)
        size += len(name) + lk + lv
    return parts, size


def decode_frame(data: bytes) -> Frame:
    view = memoryview(data)
    if len(view) < _HEADER.size:
        raise ReplicationError("FRAME_INVALID", "frame shorter than its header")
    magic, version, _flags, epoch, number, first, last, t, n = _HEADER.unpack_from(view, 0)
    if magic != FRAME_MAGIC or version != FRAME_VERSION:
        raise ReplicationError("FRAME_INVALID", f"frame magic {magic:#x} version {version}")
    off, entries = _HEADER.size, []
    for _ in range(n):
        if off + _ENTRY.size > len(view):
            raise ReplicationError("FRAME_INVALID", "frame cut inside an entry")
        op, ln, lk, lv = _ENTRY.unpack_from(view, off)
        off += _ENTRY.size
        if off + ln + lk + lv > len(view) or op not in _OPS:
            raise ReplicationError("FRAME_INVALID", "frame entry out of bounds")
        name = bytes(view[off:off + ln])
        key = view[off + ln:off + ln + lk]
        value = view[off + ln + lk:off + ln + lk + lv]
        off += ln + lk + lv
        if op == PUT_PACKED:
            # The exact block, in a new writable buffer (the publish views it as is).
            try:
                value = unpack(value, PACKED_BLOCK_BYTES_MAX)
            except ValueError as e:
                raise ReplicationError("FRAME_INVALID", f"a packed journal block: {e}") from None
            if name != _JOURNAL_DB or len(value) % JOURNAL.itemsize:
                raise ReplicationError("FRAME_INVALID", "a packed entry that is not a journal block")
            op = PUT
        entries.append((op, name, key, value))
    if off != len(view):
        raise ReplicationError("FRAME_INVALID", "bytes after the last entry")
    return Frame(epoch, number, first, last, t, entries)


def _bytes(b) -> bytes:
    return b if isinstance(b, bytes) else bytes(memoryview(b))


def _value(b):
    """A value as the frame will hold it: bytes as they are, any other buffer (the
    journal block's numpy view) by reference, not copied; the writer never changes a
    buffer it has put. The frame's join is the one copy."""
    return b if isinstance(b, bytes) else memoryview(b).cast("B")


# --- primary: capture ---------------------------------------------------------------

class _CaptureCursor:
    def __init__(self, cur, txn: _CaptureTxn, name: bytes) -> None:
        self._cur, self._txn, self._name = cur, txn, name

    def __getattr__(self, attr):
        return getattr(self._cur, attr)

    def __iter__(self):
        return iter(self._cur)

    def put(self, key, value, dupdata=False, overwrite=True, append=False):
        ok = self._cur.put(key, value, dupdata=dupdata, overwrite=overwrite, append=append)
        if ok:
            self._txn._ops.append((PUT, self._name, _bytes(key), _value(value)))
        return ok

    def putmulti(self, items, dupdata=False, overwrite=True, append=False):
        if not overwrite:
            done = sum(1 for k, v in items if self.put(k, v, dupdata, False, append))
            return done, done
        pairs = [(_bytes(k), _bytes(v)) for k, v in items]
        res = self._cur.putmulti(pairs, dupdata=dupdata, overwrite=True, append=append)
        self._txn._ops.extend((PUT, self._name, k, v) for k, v in pairs)
        return res

    def replace(self, key, value):
        old = self._cur.replace(key, value)
        self._txn._ops.append((PUT, self._name, _bytes(key), _bytes(value)))
        return old

    def delete(self, dupdata=False):
        key = _bytes(self._cur.key())
        ok = self._cur.delete(dupdata=dupdata)
        if ok:
            self._txn._ops.append((DELETE, self._name, key, b""))
        return ok

    def pop(self, key):
        old = self._cur.pop(key)
        if old is not None:
            self._txn._ops.append((DELETE, self._name, _bytes(key), b""))
        return old


class _CaptureTxn:
    """A write transaction that records its writes for the feed; commit ships them."""

    def __init__(self, txn: lmdb.Transaction, env: _CaptureEnv) -> None:
        self._txn = txn
        self._env = env
        self._ops: list = []

    def __getattr__(self, attr):
        return getattr(self._txn, attr)

    def __enter__(self) -> _CaptureTxn:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self._txn.abort()

    def _name(self, db) -> bytes:
        return self._env.name_of(db)

    def put(self, key, value, dupdata=False, overwrite=True, append=False, db=None):
        ok = self._txn.put(key, value, dupdata=dupdata, overwrite=overwrite, append=append, db=db)
        if ok:
            self._ops.append((PUT, self._name(db), _bytes(key), _value(value)))
        return ok

    def replace(self, key, value, db=None):
        old = self._txn.replace(key, value, db=db)
        self._ops.append((PUT, self._name(db), _bytes(key), _bytes(value)))
        return old

    def delete(self, key, value=b"", db=None):
        ok = self._txn.delete(key, value, db=db)
        if ok:
            self._ops.append((DELETE, self._name(db), _bytes(key), b""))
        return ok

    def pop(self, key, db=None):
        old = self._txn.pop(key, db=db)
        if old is not None:
            self._ops.append((DELETE, self._name(db), _bytes(key), b""))
        return old

    def drop(self, db, delete=True):
        name = self._name(db)
        self._txn.drop(db, delete=delete)
        self._ops.append((DROP_DELETE if delete else DROP, name, b"", b""))

    def cursor(self, db=None):
        return _CaptureCursor(self._txn.cursor(db=db), self, self._name(db))

    def abort(self) -> None:
        self._txn.abort()

    def commit(self) -> None:
        if not self._ops:
            self._txn.commit()
            return
        self._env.feed._commit(self._txn, self._ops)


class _CaptureEnv:
    """The Store's environment as the engine sees it: write transactions are captured;
    read transactions and everything else are LMDB's own."""

    def __init__(self, env: lmdb.Environment, feed: Feed, store: Store) -> None:
        self._env = env
        self.feed = feed
        self._store = store
        self._names: dict = {}

    def __getattr__(self, attr):
        return getattr(self._env, attr)

    def name_of(self, db) -> bytes:
        name = self._names.get(db)
        if name is None:
            for n, handle in self._store.db.items():
                self._names[handle] = n.encode()
            name = self._names.get(db)
            if name is None:
                raise ReplicationError("DB_UNKNOWN", "a write to a database the store did not open by name")
        return name

    def begin(self, db=None, parent=None, write=False, buffers=False):
        txn = self._env.begin(db=db, parent=parent, write=write, buffers=buffers)
        return _CaptureTxn(txn, self) if write else txn

    def open_db(self, key=None, txn=None, **kw):
        real = txn._txn if isinstance(txn, _CaptureTxn) else txn
        handle = self._env.open_db(key, txn=real, **kw)
        if key is not None:
            self._names[handle] = bytes(key)
        return handle

    def copy(self, path, compact=False, txn=None):
        return self._env.copy(path, compact=compact, txn=txn)


class Feed:
    """The primary's commit feed: frames in commit order, kept in memory for standbys
    (FEED_BUFFER_BYTES), and what they confirmed. mode "sync": an acknowledgement waits
    for the standby's confirmation of its frame (Engine._ack_loop asks wait_confirmed);
    on_standby_lost "wait" keeps it waiting, "async" waits timeout_s and then goes on
    asynchronously (`fallbacks` counts it) until a standby has caught up again."""

    def __init__(self, epoch: int = 1, *, mode: str = "async", on_standby_lost: str = "wait",
                 timeout_s: float = SYNC_TIMEOUT_S, buffer_bytes: int = FEED_BUFFER_BYTES,
                 clock_ns: Callable[[], int] = time.time_ns) -> None:
        if mode not in MODES or on_standby_lost not in ON_STANDBY_LOST:
            raise ValueError(f"mode one of {MODES}, on_standby_lost one of {ON_STANDBY_LOST}")
        if epoch < 1 or timeout_s <= 0 or buffer_bytes < 1:
            raise ValueError("epoch >= 1, timeout_s > 0, buffer_bytes >= 1")
        self.epoch = int(epoch)
        self.mode = mode
        self.sync = mode == "sync"
        self.on_standby_lost = on_standby_lost
        self.timeout_s = timeout_s
        self.buffer_bytes = buffer_bytes
        self._clock_ns = clock_ns
        self._lock = threading.Lock()           # frame numbers in commit order
        shared = threading.RLock()
        self._cond = threading.Condition(shared)    # frames, confirmations (the acker waits)
        # New frames, on the same lock (wait_frames waits): a commit wakes no acknowledgement
        # waiting in wait_confirmed, which only a confirmation (or its poll) moves.
        self._framed = threading.Condition(shared)
        # (number, last_seq, time_ns, frame, wire): wire is the message that carries the
        # frame alone to a standby, built in the same join as the frame (frame is a view
        # into it), or None (frames from before an envelope was set, preloaded ones).
        self._frames: collections.deque = collections.deque()
        # envelope(frame length, primary seq) -> (prefix, suffix): set by the replication
        # service (server/rpc/replication.py), which knows the message's wire format.
        self.envelope: Callable[[int, int], tuple[bytes, bytes]] | None = None
        self._bytes = 0
        self._local = threading.local()
        self.store: Store | None = None
        self.next_frame = 1
        self.last_committed = 0
        self.last_seq = 0
        self.confirmed = 0
        self.confirmed_seq = 0
        self.standbys = 0
        self.degraded = False       # sync mode fallen back to async
        self.fallbacks = 0
        self.held = 0               # acknowledgements waiting for the standby now
        self._listeners: list[Callable[[], None]] = []

    def preload(self, frames) -> None:
        """Before attach: frames (number, last_seq, time_ns, bytes), consecutive, that
        this store already holds (a promoted standby's recent ones), so the other
        standbys can catch up from before the promotion."""
        for f in frames:
            self._frames.append((*f[:4], f[4] if len(f) > 4 else None))
            self._bytes += len(f[3])
        while self._bytes > self.buffer_bytes and len(self._frames) > 1:
            self._bytes -= len(self._frames.popleft()[3])

    # --- attaching ----------------------------------------------------------------

    def attach(self, store: Store) -> None:
        """Called by Engine before recovery: capture the store's writes, and stamp this
        feed's epoch into the data (refused if the data has a newer one)."""
        self.store = store
        with store.read() as txn:
            stored_epoch = store.meta_int(txn, META_EPOCH)
            self.next_frame = store.meta_int(txn, META_FRAME) + 1
            self.last_seq = store.last_seq(txn)
        if stored_epoch > self.epoch:
            raise StaleEpoch(f"{store.path} holds epoch {stored_epoch}; this primary was "
                             f"given epoch {self.epoch}")
        self.last_committed = self.confirmed = self.next_frame - 1
        self.confirmed_seq = self.last_seq
        while self._frames and self._frames[-1][0] > self.last_committed:
            self._bytes -= len(self._frames.pop()[3])  # never ahead of the store
        store.env = _CaptureEnv(store.env, self, store)
        if stored_epoch != self.epoch:
            with store.env.begin(write=True) as txn:
                txn.put(META_EPOCH_START + u64(self.epoch), u64(self.next_frame),
                        db=store.db["meta"])

    # --- commits (any writer thread, inside its write transaction) -----------------

    def _commit(self, txn: lmdb.Transaction, ops: list) -> None:
        meta = self.store.db["meta"]
        with self._lock:
            number = self.next_frame
            ops.append((PUT, b"meta", META_FRAME, u64(number)))
            ops.append((PUT, b"meta", META_EPOCH, u64(self.epoch)))
            txn.put(META_FRAME, u64(number), db=meta)
            txn.put(META_EPOCH, u64(self.epoch), db=meta)
            first = last = 0
            for i, (op, name, key, value) in enumerate(ops):
                if name == _JOURNAL_DB and op == PUT:
                    last = from_be(key)
                    n = len(value) // JOURNAL.itemsize
                    if not first:
                        first = last - n + 1
                    if (n > 1 and len(value) == n * JOURNAL.itemsize
                            and len(value) <= PACKED_BLOCK_BYTES_MAX):
                        # Shipped packed: the bytes on the wire cost gRPC CPU on both
                        # sides, ~1 ns a byte each; a swipe's record differs from the
                        # block's first in ~51 of its 416 bytes.
                        ops[i] = (PUT_PACKED, name, key, pack(value, JOURNAL.itemsize))
            now = self._clock_ns()
            parts, size = _frame_parts(self.epoch, number, first, last, now, ops)
            envelope = self.envelope
            if envelope is None:
                frame, wire = b"".join(parts), None
            else:
                # The frame and the message that carries it in one join, no second copy.
                prefix, suffix = envelope(size, last or self.last_seq)
                wire = b"".join([prefix, *parts, suffix])
                frame = memoryview(wire)[len(prefix):len(prefix) + size]
            txn.commit()
            self.next_frame = number + 1
            self._local.frame = number
            with self._cond:
                self._frames.append((number, last, now, frame, wire))
                self._bytes += len(frame)
                while self._bytes > self.buffer_bytes and len(self._frames) > 1:
                    self._bytes -= len(self._frames.popleft()[3])
                self.last_committed = number
                if last:
                    self.last_seq = last
                self._framed.notify_all()
            for fn in list(self._listeners):
                fn()

    def last_frame(self) -> int:
        """The frame this thread committed last (0 if none)."""
        return getattr(self._local, "frame", 0)

    def add_listener(self, fn: Callable[[], None]) -> None:
        """fn() runs after every frame (in the committing thread; keep it short)."""
        self._listeners.append(fn)

    def remove_listener(self, fn: Callable[[], None]) -> None:
        if fn in self._listeners:
            self._listeners.remove(fn)

    # --- standbys ------------------------------------------------------------------

    def frames_after(self, number: int, max_bytes: int) -> list[bytes]:
        """Frames with numbers above number, oldest first, up to max_bytes (at least
        one). ReplicationError BEHIND_FEED when the oldest needed is no longer kept."""
        return [f for _n, f, _wire in self.wires_after(number, max_bytes)[0]]

    def wires_after(self, number: int, max_bytes: int) -> tuple[list[tuple], int, int]:
        """frames_after's frames as (number, frame, wire or None), with the feed's last
        committed frame and last seq as they were then: a wire whose frame is that last
        one carries that seq (it is the one sent as it is)."""
        with self._cond:
            if number >= self.last_committed:
                return [], self.last_committed, self.last_seq
            if not self._frames or self._frames[0][0] > number + 1:
                raise ReplicationError("BEHIND_FEED", f"frame {number + 1} is no longer in the "
                                       "primary's feed; bootstrap from a hot copy")
            start = number + 1 - self._frames[0][0]
            out, size = [], 0
            for i in range(start, len(self._frames)):
                item = self._frames[i]
                f = item[3]
                if out and size + len(f) > max_bytes:
                    break
                out.append((item[0], f, item[4]))
                size += len(f)
            return out, self.last_committed, self.last_seq

    def wait_frames(self, number: int, timeout_s: float) -> bool:
        """Wait until a frame after number is committed (or timeout); True if one is."""
        with self._framed:
            return self._framed.wait_for(lambda: self.last_committed > number, timeout_s)

    def standby_joined(self) -> None:
        with self._cond:
            self.standbys += 1

    def standby_left(self) -> None:
        with self._cond:
            self.standbys -= 1
            self._cond.notify_all()

    def confirm(self, number: int) -> None:
        """A standby has made frames up to number durable."""
        with self._cond:
            if number <= self.confirmed:
                return
            self.confirmed = number
            # The newest journal seq in the frames up to number: read back from it
            # (frames are consecutive), not from the oldest kept.
            frames = self._frames
            if frames:
                i = min(number - frames[0][0], len(frames) - 1)
                while i >= 0 and frames[i][0] <= number:
                    if frames[i][1]:
                        self.confirmed_seq = max(self.confirmed_seq, frames[i][1])
                        break
                    i -= 1
            if self.degraded and number >= self.last_committed:
                self.degraded = False
                log.warning("replication: the standby caught up; sync again")
            self._cond.notify_all()

    def wait_confirmed(self, number: int, abandoned: Callable[[], bool]) -> bool:
        """In the acker: may the commit of frame number be acknowledged? Async: at once.
        Sync: once a standby confirmed it; if none does within timeout_s and
        on_standby_lost is "async", the feed falls back to async. False: abandoned
        (the engine is closing) before either."""
        if not self.sync:
            return True
        with self._cond:
            self.held += 1
            try:
                t0 = time.monotonic()
                while self.confirmed < number:
                    if self.degraded:
                        return True
                    if abandoned():
                        return False
                    if (self.on_standby_lost == "async"
                            and time.monotonic() - t0 >= self.timeout_s):
                        self.degraded = True
                        self.fallbacks += 1
                        log.error("replication: no standby confirmed frame %d within %.1f s; "
                                  "acknowledging asynchronously", number, self.timeout_s)
                        return True
                    self._cond.wait(WAIT_POLL_S)
                return True
            finally:
                self.held -= 1

    def status(self) -> dict:
        """For metrics: mode, standbys, lag in records and seconds."""
        with self._cond:
            lag_s = 0.0
            for n, _last, t, _f, _w in self._frames:
                if n > self.confirmed:
                    lag_s = max(0.0, (self._clock_ns() - t) / 1e9)
                    break
            mode = "async" if not self.sync else ("sync_degraded" if self.degraded else "sync")
            return {"mode": mode, "epoch": self.epoch, "standbys": self.standbys,
                    "last_frame": self.last_committed, "confirmed_frame": self.confirmed,
                    "last_seq": self.last_seq, "lag_records": max(0, self.last_seq - self.confirmed_seq),
                    "lag_seconds": lag_s, "fallbacks": self.fallbacks, "acks_held": self.held}


# --- hot copy -----------------------------------------------------------------------

def hot_copy(store: Store, dest_dir: str) -> tuple[int, int]:
    """A consistent copy of a live store for a new standby (one read transaction);
    returns (frame, epoch) it holds: the standby follows from frame + 1."""
    os.makedirs(dest_dir, exist_ok=True)
    with store.read() as txn:
        frame = store.meta_int(txn, META_FRAME)
        epoch = store.meta_int(txn, META_EPOCH)
        store.env.copy(dest_dir, compact=True, txn=txn)
    return frame, epoch


def read_position(data_dir: str) -> tuple[int, int] | None:
    """(frame, epoch) a data directory has applied, or None when it holds no store."""
    if not os.path.exists(os.path.join(data_dir, "data.mdb")):
        return None
    env = lmdb.open(data_dir, readonly=True, lock=True, max_dbs=MAX_DBS,
                    max_readers=MAX_READERS, create=False)
    try:
        meta = env.open_db(b"meta", create=False)
        with env.begin() as txn:
            f, e = txn.get(META_FRAME, db=meta), txn.get(META_EPOCH, db=meta)
        return (from_be(f) if f else 0, from_be(e) if e else 0)
    finally:
        env.close()


def epoch_start(store: Store, epoch: int) -> int:
    """The first frame of epoch (0: the data never had it)."""
    with store.read() as txn:
        return store.meta_int(txn, META_EPOCH_START + u64(epoch))


def diverged(store: Store, frame: int, epoch: int) -> bool:
    """Has a node whose last frame is frame, written in epoch, a tail this store never
    had? True when a later epoch of this store starts at or before that frame."""
    with store.read() as txn:
        cur = txn.cursor(db=store.db["meta"])
        prefix = META_EPOCH_START
        if not cur.set_range(prefix + u64(epoch + 1)):
            return False
        for key, value in cur:
            key = bytes(key)
            if not key.startswith(prefix):
                break
            if from_be(value) <= frame:
                return True
    return False


def wipe(data_dir: str) -> None:
    """Remove a store's files (a standby about to bootstrap again)."""
    for name in ("data.mdb", "lock.mdb"):
        path = os.path.join(data_dir, name)
        if os.path.exists(path):
            os.unlink(path)


def install_copy(src_dir: str, data_dir: str) -> None:
    """Move a received hot copy into place (data_dir empty of a store)."""
    os.makedirs(data_dir, exist_ok=True)
    wipe(data_dir)
    with open(os.path.join(src_dir, "data.mdb"), "rb") as f:
        os.fsync(f.fileno())
    os.replace(os.path.join(src_dir, "data.mdb"), os.path.join(data_dir, "data.mdb"))
    fd = os.open(data_dir, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    shutil.rmtree(src_dir, ignore_errors=True)


# --- standby: apply -----------------------------------------------------------------

class Replica:
    """A standby's store: an Engine opened as a standby (readable, refusing ops) and
    the frames written into it. One thread applies; readers read the engine."""

    def __init__(self, data_dir: str, *, config: EngineConfig | None = None,
                 leader: str = "", observer: object | None = None,
                 before_commit: Callable[[Frame], None] | None = None,
                 after_commit: Callable[[Frame], None] | None = None,
                 rules: RulesConfig | None = None) -> None:
        """rules: the rules a store without any starts with (a new [ha] node's, which
        may become the first primary; a replicated store has the primary's)."""
        self.data_dir = data_dir
        self.config = config or EngineConfig()
        self.engine = Engine(data_dir, config=self.config, standby=True, leader=leader,
                             observer=observer, rules=rules)
        with self.engine.store.read() as txn:
            self.applied_frame = self.engine.store.meta_int(txn, META_FRAME)
            self.applied_epoch = self.engine.store.meta_int(txn, META_EPOCH)
        self.applied_time_ns = 0
        # The frames applied lately, as received: a promotion hands them to its Feed.
        self.recent: collections.deque = collections.deque()
        self._recent_bytes = 0
        self.buffer_bytes = FEED_BUFFER_BYTES
        # Test hooks: inside each frame's transaction before its commit; after the
        # transaction's commit, before it is confirmed (its last frame).
        self.before_commit = before_commit
        self.after_commit = after_commit
        self._listeners: list[Callable[[Frame, set], None]] = []

    @property
    def applied_seq(self) -> int:
        return self.engine._last_seq

    def add_listener(self, fn: Callable[[Frame, set], None]) -> None:
        """fn(frame, names of the databases it wrote) after each applied frame."""
        self._listeners.append(fn)

    def check(self, frame: Frame) -> None:
        self._check(frame, self.applied_frame, self.applied_epoch)

    @staticmethod
    def _check(frame: Frame, applied_frame: int, applied_epoch: int) -> None:
        if frame.epoch < applied_epoch:
            raise StaleEpoch(f"frame {frame.number} is of epoch {frame.epoch}; this standby "
                             f"has applied epoch {applied_epoch}")
        if frame.number != applied_frame + 1:
            raise ReplicationError("FRAME_GAP", f"frame {frame.number} after applied frame "
                                   f"{applied_frame}")

    def apply(self, data: bytes) -> Frame:
        """Write one frame durably (one transaction) and publish its journal blocks;
        ReplicationError (nothing written) for a stale epoch or a gap."""
        return self.apply_many([data])[-1]

    def apply_many(self, datas: list, durable: Callable[[int], None] | None = None) -> list[Frame]:
        """Write consecutive frames durably in one transaction (one fsync: what a standby
        that is behind receives in one message) and publish them in order; the store
        ends as if each had been applied alone (the same writes in the same order, the
        position that of the last). ReplicationError (nothing written) if any is of a
        stale epoch, out of order, or malformed. durable(last frame number) runs right
        after the commit, before the publish: a standby confirms there, so the
        in-memory publish is not on a sync acknowledgement's path."""
        frames = [decode_frame(d) for d in datas]
        applied_frame, applied_epoch = self.applied_frame, self.applied_epoch
        for frame in frames:
            self._check(frame, applied_frame, applied_epoch)
            applied_frame, applied_epoch = frame.number, frame.epoch
            for op, name, _key, value in frame.entries:
                if name == _JOURNAL_DB and op == PUT:
                    # The publish below trusts a block's seqs to be contiguous (as the
                    # primary's commit made them): checked before anything is written.
                    if not seqs_contiguous(value, JOURNAL.itemsize):
                        raise ReplicationError("FRAME_INVALID", f"frame {frame.number}: a "
                                               "journal block whose seqs are not contiguous")
        store = self.engine.store
        while True:
            try:
                with store.env.begin(write=True) as txn:
                    handles: dict = {}
                    for frame in frames:
                        for op, name, key, value in frame.entries:
                            db = handles.get(name)
                            if db is None:
                                db = handles[name] = store.named_db(name.decode(), txn)
                            if op == PUT:
                                txn.put(key, value, db=db)
                            elif op == DELETE:
                                txn.delete(key, db=db)
                            else:
                                txn.drop(db, delete=op == DROP_DELETE)
                                if op == DROP_DELETE:
                                    store.db.pop(name.decode(), None)
                                    handles.pop(name, None)
                        if self.before_commit is not None:
                            self.before_commit(frame)
                break
            except lmdb.MapFullError:
                store.grow()
        if self.after_commit is not None:
            self.after_commit(frames[-1])
        if durable is not None:
            durable(frames[-1].number)
        for frame, data in zip(frames, datas, strict=True):
            self._publish(frame)
            if self.recent and self.recent[-1][0] != frame.number - 1:
                self.recent.clear()
                self._recent_bytes = 0
            self.recent.append((frame.number, frame.last_seq, frame.time_ns, data))
            self._recent_bytes += len(data)
            while self._recent_bytes > self.buffer_bytes and len(self.recent) > 1:
                self._recent_bytes -= len(self.recent.popleft()[3])
            self.applied_frame = frame.number
            self.applied_epoch = frame.epoch
            self.applied_time_ns = frame.time_ns
        return frames

    def _publish(self, frame: Frame) -> None:
        eng = self.engine
        names = {name for _op, name, _k, _v in frame.entries}
        for op, name, _key, value in frame.entries:
            if name == _JOURNAL_DB and op == PUT:
                # The publish needs a writable array: an unpacked block is a new
                # bytearray, viewed as it is; any other is copied as bytes, then viewed
                # (a copy of the structured dtype goes field by field, 15x slower).
                if isinstance(value, bytearray):
                    block = np.frombuffer(value, dtype=JOURNAL)
                else:
                    block = np.frombuffer(value, dtype=np.uint8).copy().view(JOURNAL)
                # No id block: a standby never checkpoints by itself (cleared below).
                # No client id indexed: it takes no op and never prunes them (they would
                # only grow); a promotion opens a primary that rebuilds them from the store.
                eng._publish_committed(block, None, claim_ids=True,
                                       facts=_facts(block, with_ids=False), index_ids=False)
        eng._next_seq = eng._last_seq + 1
        # The standby never checkpoints by itself (a promotion reopens from the store):
        # drop the bookkeeping a checkpoint would consume.
        eng._pending_ids.clear()
        eng._pending_refunds.clear()
        eng._dirty[:] = 0
        eng._coupon_dirty[:] = 0
        keys = {bytes(k) for op, n, k, _v in frame.entries if n == b"meta"}
        if b"checkpoint_seq" in keys:
            with eng.store.read() as txn:
                eng._checkpoint_seq = eng.store.meta_int(txn, b"checkpoint_seq")
        if b"rules_version" in keys or b"card_types" in names:
            with eng.store.read() as txn:
                version = eng.store.meta_int(txn, b"rules_version")
                raw = txn.get(version.to_bytes(4, "big"), db=eng.store.db["rules"])
            eng._type_limits = eng._load_type_limits()
            if raw is not None:
                eng._rules_config = RulesConfig.from_json(raw)
            eng._rules = eng._rules_config.compile(eng._pin_key, eng._type_limits)
        decoded = {n.decode() for n in names}
        for fn in list(self._listeners):
            try:
                fn(frame, decoded)
            except Exception:
                log.exception("standby listener failed")

    def close(self) -> None:
        self.engine.close()

    def promote(self, epoch: int, *, config: EngineConfig | None = None,
                feed: Feed | None = None, **engine_kw) -> Engine:
        """Close the standby engine and open a primary Engine on the same store with
        the new epoch (which must be newer than every epoch applied); the recovery of
        a primary's open rebuilds everything in memory from the store."""
        if epoch <= self.applied_epoch:
            raise StaleEpoch(f"promotion to epoch {epoch}; epoch {self.applied_epoch} "
                             "was applied already")
        self.engine.close()
        feed = feed or Feed(epoch)
        if feed.epoch != epoch:
            raise ValueError("the feed's epoch is not the promotion's")
        feed.preload(self.recent)
        return Engine(self.data_dir, config=config or self.config, feed=feed, **engine_kw)
