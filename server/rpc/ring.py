"""The shared-memory ring between a gRPC front-end process and the writer (`mms serve
--front-ends N`, server/rpc/front.py): the front end writes plain Swipe and Recharge ops
as OP rows, the writer submits them to its one engine and writes a RESULT row for each
once its commit is durable.

One ring per front end: a file in a private directory (on /dev/shm where there is one)
that both processes map, and a pipe each way, woken once per batch. A pipe, not an
eventfd: its end tells the other side that a process is gone (the writer restarts a
front end whose pipe ended; a front end stops when the writer's pipe ends).

    header   8 x uint64: op_head (rows written by the front end), op_tail (rows taken by
             the writer), res_head (results written by the writer), slots, magic, the
             front end's bound port, 0, 0
    ops      slots x OP (96 bytes), row i in slot i % slots
    results  slots x RESULT_ROW (256 bytes), the answer of row i in slot i % slots

Counters only grow; op_tail <= op_head and res_head <= op_tail always. A row is written,
then op_head moves, then the pipe is written (a system call: what the writer reads after
it sees the byte is the rows); the same the other way for results. The front end keeps
one batch in flight (what `SINGLE_SUBMISSIONS_MAX` is to the one-process bridge) and
gathers the ops that arrive meanwhile, so slots = the engine's batch_ops_max is room for
any batch; the ops it gathers are bounded by its share of inflight_ops_max.
"""

from __future__ import annotations

import asyncio
import json
import mmap
import os
import time

import grpc
import numpy as np

from core.records import OP, SINGLE_OP, OpType, Result
from server.rpc.codec import SingleResults
from server.rpc.constants import POS, SINGLE_SUBMISSIONS_MAX
from server.rpc.errors import RpcFailure, result_status
from server.rpc.instrumentation import unexpected

# Header words (uint64).
OP_HEAD, OP_TAIL, RES_HEAD, SLOTS, MAGIC, PORT = range(6)
HEADER_WORDS = 8
RING_MAGIC = 0x6D6D_7352_696E_6701  # "mmsRing", version 1
# A result row: an engine result (code, replayed, and when OK the reply's wire bytes) or
# a failure of the whole submission (a gRPC status, reason, message and metadata as JSON).
RESULT_BODY_BYTES = 248
RESULT_ROW = np.dtype([("kind", np.uint8), ("code", np.uint8), ("replayed", np.uint8),
                       ("_pad", np.uint8), ("length", np.uint32),
                       ("body", np.uint8, (RESULT_BODY_BYTES,))])
assert RESULT_ROW.itemsize == 256
_BODY_OFFSET = RESULT_ROW.fields["body"][1]
_RESULT_OK = int(Result.OK)
KIND_RESULT, KIND_FAILURE = 0, 1
# A SwipeResponse or RechargeResponse is at most 15 varint fields of an OpResult (a tag
# of 1-2 bytes and a value of at most 10 each) inside one length-delimited field: it fits.
assert 3 + 15 * 12 <= RESULT_BODY_BYTES


# The calls a front end answered itself, without the writer (a body that does not
# decode, a bad field, its in-flight bound, a passed deadline): counts by method and
# gRPC status, which the writer adds to its grpc_server_* (WriterRings.fold).
REFUSAL_METHODS = {int(OpType.SWIPE): 0, int(OpType.RECHARGE): 1}
_METHOD_NAMES = ("Swipe", "Recharge")
_CODES = {c.value[0]: c for c in grpc.StatusCode}
STATUS_CODES = max(_CODES) + 1


def ring_bytes(slots: int) -> int:
    return (HEADER_WORDS * 8 + slots * (OP.itemsize + RESULT_ROW.itemsize)
            + len(_METHOD_NAMES) * STATUS_CODES * 8)


class Ring:
    """One ring's memory, mapped: `header` (uint64), `ops` (OP rows, also seen as
    SINGLE_OP rows through `single`) and `results` (RESULT_ROW)."""

    def __init__(self, path: str, slots: int, *, create: bool) -> None:
        if slots < 1:
            raise ValueError("a ring holds at least one slot")
        self.path = path
        size = ring_bytes(slots)
        flags = os.O_RDWR | (os.O_CREAT | os.O_EXCL if create else 0)
        fd = os.open(path, flags, 0o600)
        try:
            if create:
                os.ftruncate(fd, size)
            elif os.fstat(fd).st_size != size:
                raise ValueError(f"{path}: not a ring of {slots} slots")
            self._map = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        buf = memoryview(self._map)
        self.header = np.frombuffer(buf, dtype=np.uint64, count=HEADER_WORDS)
        at = HEADER_WORDS * 8
        self.ops = np.frombuffer(buf, dtype=OP, count=slots, offset=at)
        self.single = self.ops.view(SINGLE_OP)
        at += slots * OP.itemsize
        self.results = np.frombuffer(buf, dtype=RESULT_ROW, count=slots, offset=at)
        at += slots * RESULT_ROW.itemsize
        self.refusals = np.frombuffer(buf, dtype=np.uint64, count=len(_METHOD_NAMES) * STATUS_CODES,
                                      offset=at).reshape(len(_METHOD_NAMES), STATUS_CODES)
        self.slots = slots
        if create:
            self.header[SLOTS] = slots
            self.header[MAGIC] = RING_MAGIC
        elif int(self.header[MAGIC]) != RING_MAGIC or int(self.header[SLOTS]) != slots:
            raise ValueError(f"{path}: not a ring of {slots} slots")

    def indices(self, start: int, stop: int) -> np.ndarray:
        """The slots of rows start..stop-1."""
        return np.arange(start, stop, dtype=np.int64) % self.slots

    def close(self) -> None:
        """Unmap the ring, or leave that to the last view of it still held (a row being
        read): the memory goes with it."""
        del self.header, self.ops, self.single, self.results, self.refusals
        try:
            self._map.close()
        except BufferError:
            pass


def failure_body(code: grpc.StatusCode, reason: str, message: str,
                 metadata: dict[str, str]) -> bytes:
    """A failure as the body of a result row: JSON, the message cut to fit the row (the
    code and reason always travel; metadata that cannot fit is left out)."""
    doc = {"c": code.name, "r": reason, "m": message, "md": metadata}
    raw = json.dumps(doc, separators=(",", ":")).encode()
    while len(raw) > RESULT_BODY_BYTES and (doc["m"] or doc["md"]):
        if doc["m"]:
            doc["m"] = doc["m"][: len(doc["m"]) // 2]
        else:
            doc["md"] = {}
        raw = json.dumps(doc, separators=(",", ":")).encode()
    return raw


def parse_failure(body: bytes) -> tuple[grpc.StatusCode, str, str, dict[str, str]]:
    doc = json.loads(body)
    return grpc.StatusCode[doc["c"]], doc["r"], doc["m"], dict(doc["md"])


def set_nonblocking(*fds: int) -> None:
    for fd in fds:
        os.set_blocking(fd, False)


def _wake(fd: int) -> bool:
    """One byte down a pipe; False when its reader is gone."""
    try:
        os.write(fd, b"\x01")
    except BlockingIOError:  # the pipe holds unread wake-ups already: the reader will look
        pass
    except (BrokenPipeError, OSError):
        return False
    return True


def _drain(fd: int) -> bytes | None:
    """What a pipe holds (b"" at its end), or None when it holds nothing yet."""
    try:
        return os.read(fd, 4096)
    except BlockingIOError:
        return None


# --- the front end's side ----------------------------------------------------------------

class WriterGone(RpcFailure):
    def __init__(self) -> None:
        super().__init__(grpc.StatusCode.UNAVAILABLE, "WRITER_GONE",
                         "this front end lost its writer process; send the call again "
                         "(with the same client id: it applies at most once)")


class FrontSide:
    """A front end's end of its ring, on its event loop: single ops gather while one
    batch is in the ring, as the bridge gathers them in one process; a batch is written
    as rows at once, and its answers are read at once when the writer's byte comes.
    pending_max bounds the ops gathered and in the ring (the front end's share of
    inflight_ops_max): past it a call is refused RESOURCE_EXHAUSTED / INFLIGHT_LIMIT."""

    def __init__(self, ring: Ring, to_writer: int, from_writer: int, pending_max: int,
                 on_writer_gone=None) -> None:
        self.ring = ring
        self.to_writer = to_writer
        self.from_writer = from_writer
        self.pending_max = pending_max
        self.on_writer_gone = on_writer_gone or (lambda: None)
        self.accepting = True
        self.writer_gone = False
        self._rows: list[tuple] = []
        self._waiters: list = []
        self._flying: list | None = None  # the waiters of the batch in the ring
        self._scheduled = False
        self._head = int(ring.header[OP_HEAD])
        self._res_tail = int(ring.header[RES_HEAD])

    @property
    def pending(self) -> int:
        return len(self._rows) + (len(self._flying) if self._flying is not None else 0)

    def refused(self, op_type: int, code: grpc.StatusCode) -> None:
        """Count a call this front end answered itself with code (not OK)."""
        self.ring.refusals[REFUSAL_METHODS[int(op_type)], code.value[0]] += 1

    def attach(self, loop) -> None:
        self._loop = loop
        loop.add_reader(self.from_writer, self._readable)

    def start_one(self, row: tuple, context):
        """Queue one op (a SINGLE_OP row): a loop future of (kind, code, replayed, body)."""
        if self.writer_gone:
            raise WriterGone()
        if not self.accepting:
            raise RpcFailure(grpc.StatusCode.UNAVAILABLE, "SHUTTING_DOWN",
                             "the server is stopping")
        rem = context.time_remaining()
        if rem is not None and rem <= 0:
            raise RpcFailure(grpc.StatusCode.DEADLINE_EXCEEDED, "DEADLINE_EXCEEDED",
                             "the deadline passed before the ops were submitted")
        if self.pending + 1 > self.pending_max:
            raise RpcFailure(grpc.StatusCode.RESOURCE_EXHAUSTED, "INFLIGHT_LIMIT",
                             f"{self.pending} ops in flight at this front end, limit "
                             f"{self.pending_max}")
        fut = self._loop.create_future()
        self._rows.append(row)
        self._waiters.append(fut)
        if self._flying is None and not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._flush)
        return fut

    def _flush(self) -> None:
        self._scheduled = False
        if self._flying is not None or not self._rows or self.writer_gone:
            return
        k = min(len(self._rows), self.ring.slots)
        rows, self._rows = self._rows[:k], self._rows[k:]
        waiters, self._waiters = self._waiters[:k], self._waiters[k:]
        start = self._head % self.ring.slots
        if start + k <= self.ring.slots:
            self.ring.single[start:start + k] = rows
        else:
            first = self.ring.slots - start
            self.ring.single[start:] = rows[:first]
            self.ring.single[:k - first] = rows[first:]
        self._head += k
        self.ring.header[OP_HEAD] = self._head
        self._flying = waiters
        if not _wake(self.to_writer):
            self._lost()

    def _readable(self) -> None:
        got = _drain(self.from_writer)
        if got is None:
            return
        if got == b"":
            self._lost()
            return
        head = int(self.ring.header[RES_HEAD])
        if self._flying is None or head == self._res_tail:
            return
        n = min(head - self._res_tail, len(self._flying))
        rows = self.ring.results[self.ring.indices(self._res_tail, self._res_tail + n)]  # a copy
        self._res_tail += n
        # The writer may answer a batch in parts (its submission was full before the
        # whole batch fit): the rest stays in the ring until its answers come.
        waiters, rest = self._flying[:n], self._flying[n:]
        self._flying = rest or None
        if self._rows and self._flying is None:  # the next batch goes before these answers
            self._flush()
        kinds, codes, replayed = rows["kind"].tolist(), rows["code"].tolist(), rows["replayed"].tolist()
        lengths, bodies = rows["length"].tolist(), rows["body"]
        for j in range(n):
            w = waiters[j]
            if not w.done():
                w.set_result((kinds[j], codes[j], replayed[j], bodies[j, :lengths[j]].tobytes()))

    def _lost(self) -> None:
        """The writer's pipe ended: every waiting call hears UNAVAILABLE (WRITER_GONE)."""
        if self.writer_gone:
            return
        self.writer_gone = True
        try:
            self._loop.remove_reader(self.from_writer)
        except (ValueError, OSError):
            pass
        for w in (*(self._flying or ()), *self._waiters):
            if not w.done():
                w.set_exception(WriterGone())
        self._flying, self._rows, self._waiters = None, [], []
        self.on_writer_gone()


# --- the writer's side -------------------------------------------------------------------

class _NoDeadline:
    """The context of a ring batch in the bridge: each front end checked its calls'
    deadlines before it wrote their rows."""

    @staticmethod
    def time_remaining():
        return None


class RingLink:
    """The writer's end of one front end's ring."""

    def __init__(self, ring: Ring, from_front: int, to_front: int, on_gone) -> None:
        self.ring = ring
        self.from_front = from_front
        self.to_front = to_front
        self.on_gone = on_gone
        self.taken = int(ring.header[OP_TAIL])
        self.in_flight = False
        self.gone = False
        self.ready = None  # a loop future: the front end wrote its first byte (it listens)
        self.folded = np.zeros_like(ring.refusals)  # the refusals counted in the metrics
        self._res_view = memoryview(ring.results.view(np.uint8).reshape(-1))

    def waiting(self) -> int:
        return 0 if self.gone or self.in_flight else int(self.ring.header[OP_HEAD]) - self.taken

    def close(self) -> None:
        for fd in (self.from_front, self.to_front):
            try:
                os.close(fd)
            except OSError:
                pass
        self._res_view.release()
        self.ring.close()


class WriterRings:
    """Every front end's ring, on the writer's event loop: the waiting rows of every ring
    go to the engine as one submission (at most SINGLE_SUBMISSIONS_MAX at a time, as the
    bridge's single ops), through the bridge (its in-flight bound, the engine's
    back-pressure); each ring's RESULT rows are written when the submission's future
    resolves, which is after its commit is durable, and each front end is woken once.
    A node that must not take writes (role) answers the whole batch NOT_LEADER, before
    the submission and again before the answers leave, as rpc_method does."""

    def __init__(self, bridge, metrics, role=None) -> None:
        self.bridge = bridge
        self.metrics = metrics
        self.role = role
        self.links: list[RingLink] = []
        self._submitting = 0
        self._scheduled = False

    def add(self, link: RingLink, loop) -> RingLink:
        link.ready = loop.create_future()
        self.links.append(link)
        loop.add_reader(link.from_front, self._readable, link)
        return link

    def _readable(self, link: RingLink) -> None:
        got = _drain(link.from_front)
        if got is None:
            return
        if got == b"":
            self._lost(link)
            return
        if not link.ready.done():
            link.ready.set_result(None)
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def fold(self, links: list[RingLink] | None = None) -> None:
        """Add the front ends' own refusals since the last fold to grpc_server_*."""
        for link in self.links if links is None else links:
            now = link.ring.refusals.copy()
            delta = now - link.folded
            if not delta.any():
                continue
            link.folded = now
            for m, code in zip(*np.nonzero(delta), strict=True):
                st = self.metrics.calls("unary", POS, _METHOD_NAMES[m])
                n = int(delta[m, code])
                st.started += n
                for _ in range(n):
                    st.handled(_CODES[int(code)], 0.0)

    async def folding(self, interval_s: float) -> None:
        """fold() every interval_s, until cancelled."""
        while True:
            await asyncio.sleep(interval_s)
            self.fold()

    def _lost(self, link: RingLink) -> None:
        self.fold([link])
        link.gone = True
        asyncio.get_running_loop().remove_reader(link.from_front)
        self.links.remove(link)
        if not link.ready.done():
            link.ready.set_exception(OSError("the front end ended before it listened"))
        if not link.in_flight:
            link.close()
        link.on_gone()

    def _flush(self) -> None:
        self._scheduled = False
        if self._submitting >= SINGLE_SUBMISSIONS_MAX:
            return
        room = self.bridge.batch_ops_max
        parts: list[tuple[RingLink, np.ndarray]] = []
        for link in self.links:
            k = min(link.waiting(), room)
            if k <= 0:
                continue
            parts.append((link, link.ring.indices(link.taken, link.taken + k)))
            link.taken += k
            link.ring.header[OP_TAIL] = link.taken
            link.in_flight = True
            room -= k
            if room == 0:
                break
        if not parts:
            return
        ops = (parts[0][0].ring.ops[parts[0][1]] if len(parts) == 1 else
               np.concatenate([link.ring.ops[idx] for link, idx in parts]))
        t0 = time.perf_counter()
        try:
            if self.role is not None:
                self.role.check_writable()
            fut = self.bridge.start(ops, _NoDeadline)
        except RpcFailure as e:
            self._answer(parts, ops, None, e, t0)
            return
        self._submitting += 1
        fut.add_done_callback(lambda f: self._settled(parts, ops, f, t0))

    def _settled(self, parts, ops: np.ndarray, fut, t0: float) -> None:
        self._submitting -= 1
        exc = fut.exception()
        failure = None
        if exc is not None:
            failure = exc if isinstance(exc, RpcFailure) else unexpected(POS, "Swipe", exc)
        elif self.role is not None:
            try:
                self.role.check_writable()
            except RpcFailure as e:
                failure = e
        self._answer(parts, ops, None if failure is not None else SingleResults(fut.result()),
                     failure, t0)
        if not self._scheduled:
            self._flush()

    def _answer(self, parts, ops: np.ndarray, res: SingleResults | None,
                failure: RpcFailure | None, t0: float) -> None:
        """Each ring's RESULT rows, its res_head moved, its front end woken; the calls
        counted in grpc_server_* as the one-process server counts them."""
        if res is not None:
            replies = res.replies()
            codes = np.asarray(res.codes, dtype=np.uint8)
            replayed = np.asarray(res.replayed, dtype=np.uint8)
        else:
            body = failure_body(failure.code, failure.reason, failure.message, failure.metadata)
        off = 0
        for link, idx in parts:
            k = len(idx)
            if not link.gone:
                out = link.ring.results
                if res is not None:
                    out["kind"][idx] = KIND_RESULT
                    out["code"][idx] = codes[off:off + k]
                    out["replayed"][idx] = replayed[off:off + k]
                    lengths = np.zeros(k, dtype=np.uint32)
                    view = link._res_view
                    for j, slot in enumerate(idx.tolist()):
                        if codes[off + j] == _RESULT_OK:
                            b = replies[off + j]
                            at = slot * RESULT_ROW.itemsize + _BODY_OFFSET
                            view[at:at + len(b)] = b
                            lengths[j] = len(b)
                    out["length"][idx] = lengths
                else:
                    out["kind"][idx] = KIND_FAILURE
                    out["length"][idx] = len(body)
                    out["body"][idx, :len(body)] = np.frombuffer(body, dtype=np.uint8)
                link.ring.header[RES_HEAD] = int(link.ring.header[RES_HEAD]) + k
                link.in_flight = False
                _wake(link.to_front)
            else:
                link.close()
            off += k
        self._count(ops, res, failure, time.perf_counter() - t0)

    def _count(self, ops: np.ndarray, res, failure, seconds: float) -> None:
        kinds = ops["op_type"]
        for op_type, method in ((OpType.SWIPE, "Swipe"), (OpType.RECHARGE, "Recharge")):
            mine = np.flatnonzero(kinds == op_type)
            if len(mine) == 0:
                continue
            st = self.metrics.calls("unary", POS, method)
            st.started += len(mine)
            if failure is not None:
                for _ in range(len(mine)):
                    st.handled(failure.code, seconds)
                continue
            for code in np.asarray(res.codes)[mine].tolist():
                if code == _RESULT_OK:
                    st.handled_ok(seconds)
                else:
                    st.handled(result_status(code), seconds)
