"""Replication over gRPC (docs/internals/replication.md).

Primary: `ReplicationService` streams the Feed's frames to standbys (Subscribe), takes
their confirmations on the same stream, and streams hot copies (HotCopy).

Standby: `Standby` bootstraps a data directory from a hot copy when it has none (or
when the primary says it diverged or fell behind), then follows the primary in a
thread: each frame is written in one fsync'd transaction (core.Replica) and confirmed.
`Standby.promote(epoch)` turns it into a primary Engine; `rejoin_as_standby` makes an
old primary follow the new one, discarding any tail the new one never had.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import hmac
import inspect
import logging
import os
import queue
import shutil
import tempfile
import threading
import time
from collections.abc import Callable

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from core import (
    Engine,
    EngineConfig,
    Feed,
    Replica,
    ReplicationError,
    diverged,
    hot_copy,
    install_copy,
    read_position,
    wipe,
)
from core.domain.pii import KEY_ENV as PII_KEY_ENV
from core.domain.pii import KEY_FILE as PII_KEY_FILE
from server.mms_pb import replication_pb2, replication_pb2_grpc
from server.rpc import leader
from server.rpc._wire import varint
from server.rpc.constants import (
    REPLICATION,
    REPLICATION_ACCEPT_TIMEOUT_S,
    REPLICATION_APPLY_BYTES_MAX,
    REPLICATION_ASYNC_CONFIRM_MS,
    REPLICATION_ASYNC_GATHER_MS,
    REPLICATION_CHUNK_BYTES,
    REPLICATION_CONNECT_TIMEOUT_S,
    REPLICATION_RECEIVED_MAX,
    REPLICATION_RECONNECT_S,
    REPLICATION_SEND_BYTES_MAX,
)
from server.rpc.errors import RpcFailure
from server.rpc.instrumentation import unexpected

log = logging.getLogger("mms.replication")

TOKEN_ENV = "MMS_REPLICATION_TOKEN"
# Reasons after which a standby does not retry the same primary by itself.
FINAL_REASONS = frozenset({"STALE_EPOCH", "DIVERGED", "BEHIND_FEED", "REPLICATION_TOKEN",
                           "FRAME_GAP", "FRAME_INVALID", "NEEDS_COPY", "NOT_A_REPLICA"})
# Refusals a node in [ha] answers by bootstrapping its store again from the primary: it
# holds frames the primary never had, needs frames the primary no longer keeps, or has
# applied none yet (a new node's empty store).
REBOOTSTRAP_REASONS = frozenset({"DIVERGED", "BEHIND_FEED", "NEEDS_COPY"})


def _fail(code: grpc.StatusCode, reason: str, message: str) -> RpcFailure:
    return RpcFailure(code, reason, message)


async def _abort(context, failure: RpcFailure) -> None:
    await context.abort(failure.code, failure.message, failure.trailing_metadata())


def _answered(fn):
    """A replication method (an async generator or a coroutine) whose unexpected error
    ends its call as instrumentation.unexpected says (INTERNAL with reason INTERNAL, the
    traceback logged on this node), not as grpc's bare UNKNOWN with nothing logged."""
    method = fn.__name__

    async def failed(context, e: Exception) -> None:
        await _abort(context, e if isinstance(e, RpcFailure) else unexpected(REPLICATION, method, e))

    if inspect.isasyncgenfunction(fn):
        @functools.wraps(fn)
        async def streamed(self, request, context):
            try:
                async for item in fn(self, request, context):
                    yield item
            except (asyncio.CancelledError, grpc.aio.AbortError):
                raise
            except Exception as e:
                await failed(context, e)
        return streamed

    @functools.wraps(fn)
    async def answered(self, request, context):
        try:
            return await fn(self, request, context)
        except (asyncio.CancelledError, grpc.aio.AbortError):
            raise
        except Exception as e:
            await failed(context, e)
    return answered


def _authorized(context, token: str | None) -> bool:
    if not token:
        return False
    for key, value in context.invocation_metadata() or ():
        if key == "authorization" and value.startswith("Bearer "):
            return hmac.compare_digest(value[7:].encode(), token.encode())
    return False


_UNAUTH = ("REPLICATION_TOKEN", "a replication call needs authorization: Bearer <the "
           "replication token both nodes are given>")




def frame_envelope(size: int, primary_seq: int) -> tuple[bytes, bytes]:
    """What goes around a frame of size bytes to make it a FrameChunk message on the
    wire (data = the frame, end_of_frame, primary_seq): the Feed joins the frame and
    these once, at commit, and Subscribe sends that as it is (the guard's serializer
    lets bytes through), with no protobuf message built or copied per frame.
    tests/rpc/test_replication_rpc.py checks it parses as FrameChunk."""
    return (b"\x0a" + varint(size),
            b"\x10\x01" + (b"\x18" + varint(primary_seq) if primary_seq else b""))


def _messages(frames: list, last_frame: int, primary_seq: int, batches: bool):
    """The chunks that carry frames ((number, frame, wire) from Feed.wires_after): to a
    standby that takes batches, consecutive frames that fit in one chunk travel together
    (one message, one transaction and one confirmation on the standby); a frame larger
    than a chunk is sliced. A frame alone that is the feed's last goes as the wire its
    commit built (its primary_seq is the feed's now)."""
    group: list = []
    size = 0
    for number, frame, wire in frames:
        if batches and len(frame) <= REPLICATION_CHUNK_BYTES:
            if group and size + len(frame) > REPLICATION_CHUNK_BYTES:
                yield _batch(group, last_frame, primary_seq)
                group, size = [], 0
            group.append((number, frame, wire))
            size += len(frame)
            continue
        if group:
            yield _batch(group, last_frame, primary_seq)
            group, size = [], 0
        if wire is not None and number == last_frame and len(frame) <= REPLICATION_CHUNK_BYTES:
            yield wire
        else:
            yield from _chunks(frame, primary_seq)
    if group:
        yield _batch(group, last_frame, primary_seq)


def _batch(group: list, last_frame: int, primary_seq: int) -> bytes:
    if len(group) == 1:
        number, frame, wire = group[0]
        if wire is not None and number == last_frame:
            return wire
        return _frame_wire(frame, primary_seq)
    frames = [f for _n, f, _w in group]
    return _batch_wire(frames, primary_seq)


def _frame_wire(frame, primary_seq: int) -> bytes:
    """A FrameChunk carrying one whole frame, as its wire bytes. frame is bytes or a
    view: the Feed's frames are views into the wires their commits built, and protobuf
    takes no view (a message built from one raised TypeError in Subscribe, and a
    standby more than one frame behind reconnected forever)."""
    prefix, suffix = frame_envelope(len(frame), primary_seq)
    return b"".join((prefix, frame, suffix))


def _batch_wire(frames: list, primary_seq: int) -> bytes:
    """A FrameChunk carrying consecutive whole frames (data, end_of_frame, primary_seq,
    frame_bytes packed), as its wire bytes: one join of the frames, no message."""
    sizes = b"".join(varint(len(f)) for f in frames)
    return b"".join((b"\x0a", varint(sum(len(f) for f in frames)), *frames, b"\x10\x01",
                     (b"\x18" + varint(primary_seq)) if primary_seq else b"",
                     b"\x22", varint(len(sizes)), sizes))


class _Chunk:
    """A FrameChunk as the standby reads it: data is a view into the received message
    (not a copy: the frame is kept as received, Replica.recent)."""

    __slots__ = ("data", "end_of_frame", "frame_bytes", "primary_seq")
    confirm_interval_ms = 0  # only an accepting chunk has one (parsed by protobuf)

    def __init__(self, data, end_of_frame: bool, primary_seq: int, frame_bytes: list) -> None:
        self.data, self.end_of_frame = data, end_of_frame
        self.primary_seq, self.frame_bytes = primary_seq, frame_bytes


def _read_varint(raw: bytes, off: int) -> tuple[int, int]:
    n = shift = 0
    while True:
        b = raw[off]
        off += 1
        n |= (b & 0x7F) << shift
        if b < 0x80:
            return n, off
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def parse_chunk(raw: bytes):
    """FrameChunk's decoder on the standby: its fields read in place, data a view into
    raw; anything else than FrameChunk's own four fields as Subscribe sends them goes
    to protobuf's parser (so the answer is protobuf's in every case)."""
    try:
        view = memoryview(raw)
        data, eof, seq, sizes = b"", False, 0, []
        off, end = 0, len(raw)
        while off < end:
            tag, off = _read_varint(raw, off)
            if tag == 0x0A:       # 1 data, LEN
                n, off = _read_varint(raw, off)
                if off + n > end:
                    raise ValueError("data past the end")
                data = view[off:off + n]
                off += n
            elif tag == 0x10:     # 2 end_of_frame
                v, off = _read_varint(raw, off)
                eof = v != 0
            elif tag == 0x18:     # 3 primary_seq
                seq, off = _read_varint(raw, off)
            elif tag == 0x22:     # 4 frame_bytes, packed
                n, off = _read_varint(raw, off)
                stop = off + n
                if stop > end:
                    raise ValueError("frame_bytes past the end")
                while off < stop:
                    v, off = _read_varint(raw, off)
                    sizes.append(v)
                if off != stop:
                    raise ValueError("frame_bytes cut")
            else:
                raise ValueError("another field")
        return _Chunk(data, eof, seq, sizes)
    except (ValueError, IndexError):
        return replication_pb2.FrameChunk.FromString(raw)


def _split(data: bytes, sizes) -> list:
    """The frames of a batched chunk (views into data, not copies)."""
    if sum(sizes) != len(data):
        raise ReplicationError("FRAME_INVALID", f"a chunk of {len(data)} bytes said its "
                               f"frames are {sum(sizes)}")
    view, out, off = memoryview(data), [], 0
    for n in sizes:
        out.append(view[off:off + n])
        off += n
    return out


_ENDED = object()  # the call ended by itself (the primary closed the stream)


def _receive(call, received: queue.Queue) -> None:
    """The standby's reader thread: every chunk of call into received (bounded), then
    _ENDED or the call's error."""
    try:
        for chunk in call:
            received.put(chunk)
        received.put(_ENDED)
    except BaseException as e:  # noqa: BLE001 (handed to the applier, raised there)
        received.put(e)


class _Frames:
    """Chunks as they arrive -> whole frames (views into the received messages): a
    batched chunk gives its frames, a frame larger than a chunk is joined from its
    slices. `complete` holds the frames not yet applied, in order."""

    def __init__(self) -> None:
        self.complete: collections.deque = collections.deque()
        self.bytes = 0       # of the complete frames
        self._parts: list = []

    def add(self, chunk) -> None:
        if chunk.frame_bytes:
            if self._parts:
                raise ReplicationError("FRAME_INVALID", "a batch of frames inside a frame")
            for frame in _split(chunk.data, chunk.frame_bytes):
                self._done(frame)
            return
        self._parts.append(chunk.data)
        if chunk.end_of_frame:
            parts, self._parts = self._parts, []
            self._done(parts[0] if len(parts) == 1 else b"".join(parts))

    def _done(self, frame) -> None:
        self.complete.append(frame)
        self.bytes += len(frame)

    def gather(self, received: queue.Queue, heard: Callable, max_bytes: int):
        """Wait for a chunk, then take every chunk already received, until max_bytes of
        complete frames; each chunk is given to heard first. Returns None, or what ended
        the call (_ENDED or its error) once every chunk before it is taken. Waits while
        no frame is complete."""
        self.bytes = sum(len(f) for f in self.complete)
        block = True
        while True:
            try:
                item = received.get() if block else received.get_nowait()
            except queue.Empty:
                return None
            if item is _ENDED or isinstance(item, BaseException):
                return item
            heard(item)
            self.add(item)
            block = not self.complete
            if self.bytes >= max_bytes:
                return None


def _chunks(frame: bytes, primary_seq: int = 0):
    if len(frame) <= REPLICATION_CHUNK_BYTES:  # a group commit's frame: no slicing copy
        yield _frame_wire(frame, primary_seq)
        return
    view = memoryview(frame)
    for off in range(0, max(1, len(view)), REPLICATION_CHUNK_BYTES):
        part = view[off:off + REPLICATION_CHUNK_BYTES]
        yield replication_pb2.FrameChunk(data=bytes(part),
                                         end_of_frame=off + REPLICATION_CHUNK_BYTES >= len(view),
                                         primary_seq=primary_seq)


class ReplicationService(replication_pb2_grpc.ReplicationServiceServicer):
    """The primary's side: Subscribe, HotCopy, Status over the engine's Feed."""

    def __init__(self, engine: Engine, token: str | None) -> None:
        self.engine = engine
        self.feed: Feed = engine.feed
        self.feed.envelope = frame_envelope
        self.token = token
        # Async: how long a caught-up standby's stream waits after a new frame before it
        # sends, gathering the frames of that time into one message (seconds; 0: none).
        self.gather_s = 0.0 if self.feed.sync else REPLICATION_ASYNC_GATHER_MS / 1000

    async def _gather(self) -> None:
        """Async, a caught-up standby: let the frames of the next gather_s join the one
        that woke the stream (they go as one batched message)."""
        await asyncio.sleep(self.gather_s)

    @_answered
    async def Subscribe(self, request_iterator, context):  # noqa: N802 (gRPC's name)
        if not _authorized(context, self.token):
            await _abort(context, _fail(grpc.StatusCode.UNAUTHENTICATED, *_UNAUTH))
        feed = self.feed
        # The guard decodes the stream's messages: read them through the iterator.
        requests = request_iterator.__aiter__()
        try:
            first = await requests.__anext__()
        except StopAsyncIteration:
            return
        if first.epoch > feed.epoch:
            await _abort(context, _fail(grpc.StatusCode.FAILED_PRECONDITION, "STALE_EPOCH",
                                        f"this primary has epoch {feed.epoch}; the standby "
                                        f"has applied epoch {first.epoch}"))
        if first.after_frame > feed.last_committed or diverged(self.engine.store, first.after_frame,
                                                               first.epoch):
            await _abort(context, _fail(grpc.StatusCode.FAILED_PRECONDITION, "DIVERGED",
                                        f"the standby's frame {first.after_frame} of epoch "
                                        f"{first.epoch} is not in this primary's history; "
                                        "bootstrap it again"))
        # The standby holds every frame up to after_frame, durably (its store says so,
        # and they are this primary's): a frame it has only from the hot copy it
        # bootstrapped from is confirmed here, since it never applies (so never
        # confirms) it; in sync mode with "wait" that frame's acks waited for good.
        feed.confirm(first.after_frame)
        loop = asyncio.get_running_loop()
        wake = asyncio.Event()
        gone = False
        # One wake-up of the loop per burst of commits, not per commit: a commit that
        # finds one already asked for adds nothing (the loop reads the feed after it
        # clears the flag, so it sees that commit's frame).
        asked = [False]

        def poke() -> None:
            if not asked[0]:
                asked[0] = True
                loop.call_soon_threadsafe(wake.set)

        async def confirmations() -> None:
            nonlocal gone
            try:
                async for msg in requests:
                    if msg.confirmed_frame:
                        feed.confirm(msg.confirmed_frame)
            finally:
                gone = True
                wake.set()

        feed.add_listener(poke)
        feed.standby_joined()
        reader = asyncio.ensure_future(confirmations())
        log.info("standby %r follows from frame %d", first.standby, first.after_frame)
        pos = first.after_frame
        try:
            yield replication_pb2.FrameChunk(  # accepted, with the seq it has reached
                confirm_interval_ms=0 if feed.sync else REPLICATION_ASYNC_CONFIRM_MS,
                primary_seq=feed.last_seq)
            while not gone:
                wake.clear()
                asked[0] = False
                try:
                    frames, last_frame, last_seq = feed.wires_after(pos, REPLICATION_SEND_BYTES_MAX)
                except ReplicationError as e:
                    await _abort(context, _fail(grpc.StatusCode.FAILED_PRECONDITION, e.reason, str(e)))
                if not frames:
                    await wake.wait()
                    if self.gather_s and first.batches:
                        await self._gather()
                    continue
                for chunk in _messages(frames, last_frame, last_seq, first.batches):
                    yield chunk
                pos += len(frames)
        finally:
            feed.remove_listener(poke)
            feed.standby_left()
            reader.cancel()

    @_answered
    async def HotCopy(self, request, context):  # noqa: N802
        if not _authorized(context, self.token):
            await _abort(context, _fail(grpc.StatusCode.UNAUTHENTICATED, *_UNAUTH))
        loop = asyncio.get_running_loop()
        tmp = tempfile.mkdtemp(prefix="mms-hotcopy-")
        try:
            frame, epoch = await loop.run_in_executor(None, hot_copy, self.engine.store, tmp)
            path = os.path.join(tmp, "data.mdb")
            size = os.path.getsize(path)
            log.info("hot copy for %r: frame %d, %d bytes", request.standby, frame, size)
            with open(path, "rb") as f:
                sent = 0
                yield replication_pb2.CopyChunk(frame=frame, epoch=epoch, size_bytes=size,
                                                pii_key=pii_key_file(self.engine.store.path))
                while True:
                    data = await loop.run_in_executor(None, f.read, REPLICATION_CHUNK_BYTES)
                    if not data:
                        break
                    sent += len(data)
                    yield replication_pb2.CopyChunk(data=data, last=sent >= size)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    @_answered
    async def Status(self, request, context):  # noqa: N802
        if not _authorized(context, self.token):
            await _abort(context, _fail(grpc.StatusCode.UNAUTHENTICATED, *_UNAUTH))
        s = self.feed.status()
        return replication_pb2.ReplicationStatus(
            role="primary", epoch=s["epoch"], frame=s["last_frame"], seq=s["last_seq"],
            mode=s["mode"], standbys=s["standbys"], lag_records=s["lag_records"],
            lag_ms=int(s["lag_seconds"] * 1000))


class StandbyService(replication_pb2_grpc.ReplicationServiceServicer):
    """A standby's side: Status; a standby ships nothing (UNAVAILABLE, NOT_LEADER)."""

    def __init__(self, standby: Standby, token: str | None) -> None:
        self.standby = standby
        self.token = token

    def _not_leader(self) -> RpcFailure:
        return RpcFailure(grpc.StatusCode.UNAVAILABLE, "NOT_LEADER", "this node is a standby",
                          {"leader": self.standby.primary})

    async def Subscribe(self, request_iterator, context):  # noqa: N802
        await _abort(context, self._not_leader())
        yield replication_pb2.FrameChunk()  # never reached: makes this a generator

    async def HotCopy(self, request, context):  # noqa: N802
        await _abort(context, self._not_leader())
        yield replication_pb2.CopyChunk()  # never reached

    async def Status(self, request, context):  # noqa: N802
        if not _authorized(context, self.token):
            await _abort(context, _fail(grpc.StatusCode.UNAUTHENTICATED, *_UNAUTH))
        s = self.standby.status()
        return replication_pb2.ReplicationStatus(
            role="standby", epoch=s["epoch"], frame=s["applied_frame"], seq=s["applied_seq"],
            primary=s["primary"], error_reason=s["error_reason"], error_message=s["error_message"])


# --- the standby's client side --------------------------------------------------------

def _reason(err: grpc.RpcError) -> str:
    try:
        st = rpc_status.from_call(err)
    except Exception:
        st = None
    if st is not None:
        for d in st.details:
            info = error_details_pb2.ErrorInfo()
            if d.Unpack(info):
                return info.reason
    return err.code().name if hasattr(err, "code") else "UNAVAILABLE"


def _channel(addr: str) -> grpc.Channel:
    return grpc.insecure_channel(addr, options=[
        ("grpc.max_receive_message_length", REPLICATION_SEND_BYTES_MAX + REPLICATION_CHUNK_BYTES),
        ("grpc.max_send_message_length", REPLICATION_SEND_BYTES_MAX)])


def pii_key_file(data_dir: str) -> bytes:
    """The member PII key file's bytes (empty when MMS_PII_KEY is set or there is none):
    a hot copy carries it, so a standby promoted later can read the members."""
    if os.environ.get(PII_KEY_ENV):
        return b""
    try:
        with open(os.path.join(data_dir, PII_KEY_FILE), "rb") as f:
            return f.read()
    except FileNotFoundError:
        return b""


def _write_pii_key(data_dir: str, raw: bytes) -> None:
    path = os.path.join(data_dir, PII_KEY_FILE)
    fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(raw)
        f.flush()
        os.fsync(f.fileno())
    os.replace(path + ".tmp", path)


def bootstrap(data_dir: str, primary: str, token: str, name: str = "",
              on_call: Callable | None = None) -> tuple[int, int]:
    """Replace data_dir's store with a hot copy of the primary's, and its pii.key with
    the primary's; (frame, epoch) it holds. on_call(call) is given the HotCopy call
    (whoever must be able to cancel it: a stream with no deadline, from a primary that
    may be stopped)."""
    tmp = data_dir.rstrip("/") + ".hotcopy"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    with _channel(primary) as ch:
        stub = replication_pb2_grpc.ReplicationServiceStub(ch)
        frame = epoch = size = got = 0
        pii_key = b""
        with open(os.path.join(tmp, "data.mdb"), "wb") as f:
            call = stub.HotCopy(replication_pb2.HotCopyRequest(standby=name),
                                metadata=(("authorization", f"Bearer {token}"),))
            if on_call is not None:
                on_call(call)
            for chunk in call:
                if chunk.size_bytes:
                    frame, epoch, size = chunk.frame, chunk.epoch, chunk.size_bytes
                    pii_key = chunk.pii_key
                f.write(chunk.data)
                got += len(chunk.data)
            f.flush()
            os.fsync(f.fileno())
    if not size or got != size:
        raise ReplicationError("HOT_COPY_SHORT", f"hot copy: {got} of {size} bytes")
    install_copy(tmp, data_dir)
    if pii_key:
        _write_pii_key(data_dir, pii_key)
    log.info("bootstrapped %s from %s: frame %d epoch %d, %d bytes", data_dir, primary,
             frame, epoch, size)
    return frame, epoch


class Standby:
    """A standby node's replication: its Replica (an Engine opened as a standby, for
    reads) and the thread that follows the primary.

    At start it subscribes from its own last applied frame; a data directory without a
    store, or one the primary finds DIVERGED or BEHIND_FEED, is replaced by a hot copy
    first. While following, a lost connection is retried every REPLICATION_RECONNECT_S;
    a refusal (STALE_EPOCH: the primary is older than what was applied; a gap; ...) is
    kept in `error` and following stops, reads go on."""

    def __init__(self, data_dir: str, primary: str | None, *, token: str | None = None,
                 config: EngineConfig | None = None, name: str = "",
                 observer: object | None = None,
                 before_commit: Callable | None = None,
                 after_commit: Callable | None = None, start: bool = True, batches: bool = True,
                 on_refused: Callable[[Standby, ReplicationError], None] | None = None,
                 rules: object | None = None, on_call: Callable | None = None) -> None:
        """primary None: an idle standby over data_dir's store (readable, following
        nobody) until follow(primary); [ha] nodes start so, not knowing the leader yet.
        on_call(call): each call made while connecting (the hot copy, the subscription),
        for a node that may have to cancel them (a new leader while they hang)."""
        self.data_dir = data_dir
        self.primary = primary or ""
        # The primary's last committed seq as its latest chunk said (0: none heard yet):
        # how far behind this standby knows it is.
        self.primary_seq = 0
        self.on_refused = on_refused
        self.on_call = on_call
        self.token = token or os.environ.get(TOKEN_ENV, "")
        self.name = name or os.path.basename(os.path.abspath(data_dir))
        self.config = config or EngineConfig()
        self.error: ReplicationError | None = None
        self.connected = False
        self._stop = threading.Event()
        self._confirming = threading.Event()
        self._confirming.set()
        self._acks: queue.Queue | None = None
        # Ask the primary for several waiting frames per message (False: one per
        # message, as a test that stops at one frame's commit needs).
        self.batches = batches
        self._confirm_interval_s = 0.0  # what the primary's acceptance asks
        self._call = None
        self._channel: grpc.Channel | None = None
        self._received: queue.Queue | None = None  # while following with batches
        call = self._open() if primary else None
        self.replica = Replica(data_dir, config=self.config, leader=self.primary,
                               observer=observer, before_commit=before_commit,
                               after_commit=after_commit, rules=rules)
        self.engine = self.replica.engine
        self._thread = threading.Thread(target=self._run, args=(call,), name="mms-standby",
                                        daemon=True)
        if start and primary:
            self._thread.start()

    # --- connecting -------------------------------------------------------------------

    def _subscribe(self, frame: int, epoch: int):
        self._channel = _channel(self.primary)
        # Subscribe with parse_chunk for its answers (the frames stay where they arrived).
        subscribe = self._channel.stream_stream(
            "/mms.v1.ReplicationService/Subscribe",
            request_serializer=replication_pb2.SubscribeRequest.SerializeToString,
            response_deserializer=parse_chunk)
        acks: queue.Queue = queue.Queue()
        self._acks = acks

        def requests():
            yield replication_pb2.SubscribeRequest(after_frame=frame, epoch=epoch,
                                                   standby=self.name, batches=self.batches)
            sent_at = 0.0
            while True:
                item = acks.get()
                # Confirmations queued meanwhile, or until the primary's interval has
                # passed since the last one sent: the newest says all of them.
                due = sent_at + self._confirm_interval_s
                while item is not None:
                    wait = due - time.monotonic()
                    try:
                        nxt = acks.get(timeout=wait) if wait > 0 else acks.get_nowait()
                    except queue.Empty:
                        break
                    item = nxt if nxt is None else max(item, nxt)
                if item is None:
                    return
                sent_at = time.monotonic()
                yield replication_pb2.SubscribeRequest(confirmed_frame=item)

        call = subscribe(requests(), metadata=(("authorization", f"Bearer {self.token}"),))
        self._call = call
        if self.on_call is not None:
            self.on_call(call)
        if self._stop.is_set():  # stop() ran before this call existed: it ends here
            call.cancel()
        # The acceptance within a bound: a primary that is stopped (SIGSTOP, a partition)
        # accepts the connection and never answers, and the stream has no deadline.
        timer = threading.Timer(REPLICATION_ACCEPT_TIMEOUT_S, call.cancel)
        timer.daemon = True
        timer.start()
        try:
            accepted = next(call)  # the primary's acceptance (or its refusal, raised here)
        finally:
            timer.cancel()
        self._confirm_interval_s = accepted.confirm_interval_ms / 1000
        if accepted.primary_seq:  # known at once, even with no frame to send yet
            self.primary_seq = accepted.primary_seq
        log.warning("standby %s: following %s from frame %d epoch %d", self.name,
                    self.primary, frame, epoch)
        return call

    def _close_call(self) -> None:
        if self._acks is not None:
            self._acks.put(None)
        if self._call is not None:
            self._call.cancel()
        if self._channel is not None:
            self._channel.close()
        self._call = self._channel = self._acks = None

    def _open(self):
        """Before the replica opens: the store to follow from, and the accepted call."""
        pos = read_position(self.data_dir)
        if pos is None:
            pos = bootstrap(self.data_dir, self.primary, self.token, self.name, self.on_call)
        try:
            return self._subscribe(*pos)
        except grpc.RpcError as e:
            reason = _reason(e)
            self._close_call()
            if reason not in ("DIVERGED", "BEHIND_FEED"):
                raise
            log.warning("%s: the primary says %s; bootstrapping again", self.data_dir, reason)
            wipe(self.data_dir)
            pos = bootstrap(self.data_dir, self.primary, self.token, self.name, self.on_call)
            return self._subscribe(*pos)

    # --- following --------------------------------------------------------------------

    def _run(self, call) -> None:
        while not self._stop.is_set():
            try:
                if call is None:
                    if self.replica.applied_frame == 0:
                        # Nothing applied yet: only a hot copy brings what the primary
                        # wrote before its feed began (its PIN key, its first rules).
                        if self.replica.applied_seq:
                            raise ReplicationError(
                                "NOT_A_REPLICA", f"{self.data_dir} holds journal records "
                                "but no replication position (a single server's store): "
                                "following would overwrite them. To make it the cluster's "
                                "first leader, start it with [ha] before any other node "
                                "(docs/operating.md, 'From a single server to a "
                                "cluster'); to follow instead, move it away")
                        raise ReplicationError("NEEDS_COPY", "an empty store bootstraps first")
                    call = self._subscribe(self.replica.applied_frame, self.replica.applied_epoch)
                self.connected = True
                self._follow(call)
            except ReplicationError as e:
                self._refused(e)
            except grpc.RpcError as e:
                if self._stop.is_set():
                    break
                reason = _reason(e)
                if reason in FINAL_REASONS:
                    self._refused(ReplicationError(reason, e.details() or reason))
                else:
                    log.warning("standby %s: lost %s (%s); retrying", self.name, self.primary, reason)
            finally:
                self.connected = False
                self._close_call()
                call = None
            self._stop.wait(REPLICATION_RECONNECT_S)

    def _refused(self, e: ReplicationError) -> None:
        log.error("standby %s stops following %s: %s %s", self.name, self.primary, e.reason, e)
        self.error = e
        self._stop.set()
        if self.on_refused is not None:
            self.on_refused(self, e)

    def _follow(self, call) -> None:
        acks = self._acks

        def durable(number: int) -> None:  # committed (fsync'd): confirm before publishing
            if self._confirming.is_set():
                acks.put(number)
        if not self.batches:
            # One frame a transaction, as it arrives (a test that stops at one frame's
            # commit).
            frames = _Frames()
            for chunk in call:
                self._heard(chunk)
                frames.add(chunk)
                while frames.complete:
                    self.replica.apply_many([frames.complete.popleft()], durable)
                if self._stop.is_set():
                    return
            return
        # A reader thread takes the chunks off the call while this one writes: the frames
        # that arrived meanwhile go into the next transaction together (one commit and
        # fsync pair, one confirmation of the last, which says all of them: a sync
        # primary's frames arrive one a message, faster than one commit each).
        received: queue.Queue = queue.Queue(REPLICATION_RECEIVED_MAX)
        self._received = received
        reader = threading.Thread(target=_receive, args=(call, received),
                                  name="mms-standby-receiver", daemon=True)
        reader.start()
        frames = _Frames()
        try:
            while True:
                ended = frames.gather(received, self._heard, REPLICATION_APPLY_BYTES_MAX)
                if frames.complete:
                    batch = list(frames.complete)
                    frames.complete.clear()
                    self.replica.apply_many(batch, durable)
                if ended is not None:
                    # Every frame received before the call ended is applied first (a
                    # promotion stops following once all of them are).
                    if isinstance(ended, BaseException):
                        raise ended
                    return
        finally:
            self._received = None
            call.cancel()
            while reader.is_alive():  # it may wait to put: take until it ends
                try:
                    received.get(timeout=0.05)
                except queue.Empty:
                    pass
            reader.join()

    @property
    def received_waiting(self) -> int:
        """Chunks received from the primary and not yet applied (0 when not following,
        or following one frame a transaction)."""
        received = self._received
        return received.qsize() if received is not None else 0

    def _heard(self, chunk) -> None:
        if chunk.primary_seq:
            self.primary_seq = chunk.primary_seq

    # --- control ----------------------------------------------------------------------

    def start(self) -> None:
        """Start following (a Standby made with start=False)."""
        self._thread.start()

    def follow(self, primary: str) -> None:
        """Follow another primary (after a failover) from this standby's own last
        frame, keeping its engine (and so the server over it). A primary that refuses
        (DIVERGED, BEHIND_FEED: this standby needs a hot copy; see rejoin_as_standby)
        leaves the refusal in `error`, as any refusal."""
        self.stop()
        self.primary = primary
        self.engine.leader = primary
        self.error = None
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, args=(None,), name="mms-standby",
                                        daemon=True)
        self._thread.start()

    def pause_confirms(self) -> None:
        """Apply but do not confirm (tests: a standby whose confirmations are lost)."""
        self._confirming.clear()

    def resume_confirms(self) -> None:
        self._confirming.set()
        acks = self._acks
        if acks is not None:
            acks.put(self.replica.applied_frame)

    def status(self) -> dict:
        e = self.error
        return {"epoch": self.replica.applied_epoch, "applied_frame": self.replica.applied_frame,
                "applied_seq": self.replica.applied_seq, "primary": self.primary,
                "primary_seq": self.primary_seq,
                "lag_records": max(0, self.primary_seq - self.replica.applied_seq),
                "connected": self.connected,
                "error_reason": e.reason if e else "", "error_message": str(e) if e else ""}

    def stop(self) -> None:
        """Stop following (the frame being applied finishes first); reads go on."""
        self._stop.set()
        self._close_call()
        if self._thread.is_alive():
            self._thread.join()

    def close(self) -> None:
        self.stop()
        self.replica.close()

    def promote(self, epoch: int, *, feed: Feed | None = None,
                config: EngineConfig | None = None, **engine_kw) -> Engine:
        """Become the primary: stop following, once every frame received is applied
        (a frame is applied as it arrives; a frame only partly received was never
        confirmed, so no acknowledged op is in it), close the standby engine and open a
        primary Engine on this store with the new epoch (newer than any applied one)."""
        self.stop()
        return self.replica.promote(epoch, feed=feed, config=config or self.config, **engine_kw)


def rejoin_as_standby(data_dir: str, primary_addr: str, *, token: str | None = None,
                      config: EngineConfig | None = None, **kw) -> Standby:
    """An old primary (its Engine closed) follows the new primary: from its own last
    frame when that is in the new primary's history; when it holds a tail the new
    primary never had (frames it wrote after the standby's last, in its old epoch) the
    new primary answers DIVERGED and the whole store is replaced by a hot copy, which
    discards that tail (never acknowledged in sync mode: the standby had not confirmed
    it)."""
    return Standby(data_dir, primary_addr, token=token, config=config, **kw)


# --- a node in [ha] whose role follows leadership ----------------------------------------

class ReplicationRouter(replication_pb2_grpc.ReplicationServiceServicer):
    """The servicer registered once at start; it answers as the node's current side
    (ReplicationService while primary, StandbyService while standby).

    A subscription served by a side that has since been replaced (the node changed
    engine: promoted again at a new epoch, stepped down) is ended with UNAVAILABLE,
    reason ROLE_CHANGED, so that its standby subscribes again, to the new side. Left
    alone it waited for frames of a closed feed for ever: a standby that subscribed to
    a node between its winning a new epoch and its reopening as that epoch's primary
    followed nothing, and in sync mode the primary's acknowledgements waited for it
    (the sigkill failover test's `till 0 did not pause`, session 10)."""

    def __init__(self, target) -> None:
        self._target = target
        self._lock = threading.Lock()
        # Each subscription in flight: its task -> its state (the side serving it, the
        # task's loop, whether it waits for the side's next chunk, whether it is stale).
        self._streams: dict[asyncio.Task, dict] = {}

    @property
    def target(self):
        return self._target

    @target.setter
    def target(self, target) -> None:
        """Answer as target from now on (any thread); end the subscriptions of the sides
        it replaces."""
        with self._lock:
            self._target = target
            stale = [(t, st) for t, st in self._streams.items() if st["side"] is not target]
        for task, st in stale:
            with contextlib.suppress(RuntimeError):  # that loop is closed: the task too
                st["loop"].call_soon_threadsafe(self._retire, task, st)

    @staticmethod
    def _retire(task: asyncio.Task, st: dict) -> None:
        # On the stream's loop. A stream waiting in its side for the next chunk is
        # cancelled there (Subscribe below answers it); one sending a chunk sees `stale`
        # before it asks for the next. Never cancelled inside grpc's own send: a status
        # sent from another task while a send is in flight fails (TOO_MANY_OPERATIONS).
        st["stale"] = True
        if st["waiting"]:
            task.cancel()

    async def Subscribe(self, request_iterator, context):  # noqa: N802
        task = asyncio.current_task()
        with self._lock:
            target = self._target
            st = {"side": target, "loop": asyncio.get_running_loop(), "waiting": False,
                  "stale": False}
            self._streams[task] = st
        chunks = target.Subscribe(request_iterator, context).__aiter__()
        try:
            while True:
                if st["stale"]:
                    await self._role_changed(context)
                st["waiting"] = True
                try:
                    chunk = await chunks.__anext__()
                except StopAsyncIteration:
                    return
                except asyncio.CancelledError:
                    if not st["stale"]:
                        raise
                    task.uncancel()  # our own cancellation (_retire), answered here
                    await self._role_changed(context)
                finally:
                    st["waiting"] = False
                yield chunk
        finally:
            with self._lock:
                self._streams.pop(task, None)
            with contextlib.suppress(Exception):
                await chunks.aclose()  # the side's own clean-up (its feed's listener)

    @staticmethod
    async def _role_changed(context) -> None:
        await _abort(context, _fail(grpc.StatusCode.UNAVAILABLE, "ROLE_CHANGED",
                                    "this node changed role; subscribe again"))

    async def HotCopy(self, request, context):  # noqa: N802
        async for chunk in self.target.HotCopy(request, context):
            yield chunk

    async def Status(self, request, context):  # noqa: N802
        return await self.target.Status(request, context)


class ReplicatedNode:
    """The replication side of a node in [ha] (server/rpc/leader.py's NodeAdapter calls
    `promote` and `rejoin_as_standby`): its engine is a standby's, following the leader,
    or a primary's with a Feed of its epoch, and every change of role hands the server
    the engine to serve from (`on_engine`).

    It starts as an idle standby over its own store (readable; it follows nobody until
    leadership names the leader). Promotion: stop following once every frame received
    is applied, close the standby engine, open a primary one at the new epoch. Stepping
    down: the old primary's engine is closed (its gate shut already, so the
    acknowledgements it still held are failed, never sent), the store reopens as a
    standby and follows the new leader, which answers DIVERGED when this node holds a
    tail it never had: then the store is bootstrapped again from a hot copy (the tail is
    discarded). A standby the leader refuses (DIVERGED, BEHIND_FEED, an empty store) is
    bootstrapped again the same way, in a thread of its own."""

    def __init__(self, data_dir: str, *, token: str, config: EngineConfig | None = None,
                 name: str = "", observer: object | None = None, mode: str = "async",
                 on_standby_lost: str = "wait", timeout_s: float = 2.0,
                 lag_records_max: int = 0, rules: object | None = None) -> None:
        """rules ([rules] of the config): what a new cluster's first primary starts with."""
        self.data_dir = data_dir
        self.token = token
        self.config = config or EngineConfig()
        self.name = name
        self.observer = observer
        self.feed_kw = {"mode": mode, "on_standby_lost": on_standby_lost, "timeout_s": timeout_s}
        # A standby further behind than this (records it knows the primary had and it has
        # not applied) does not campaign; 0: no bound.
        self.lag_records_max = int(lag_records_max)
        self.rules = rules
        self.on_engine: Callable[[Engine], None] | None = None
        self._lock = threading.RLock()
        self._closed = False
        # The calls a bootstrap makes while it holds _lock (primary, call): a new leader
        # cancels those to another primary first, or it would wait for the lock (and
        # leadership with it) as long as a stopped primary's hot copy hangs.
        self._connecting: list[tuple[str, object]] = []
        self._connecting_lock = threading.Lock()
        self.standby: Standby | None = self._standby(None)
        self.engine: Engine = self.standby.engine
        self.router = ReplicationRouter(StandbyService(self.standby, token))

    @property
    def feed(self) -> Feed | None:
        return None if self.standby is not None else self.engine.feed

    def _standby(self, primary: str | None) -> Standby:
        # Not following yet: the server rebinds to its engine first (opening handles
        # while the applier writes could deadlock on LMDB's lock and the GIL).
        def connecting(call, primary=primary) -> None:
            with self._connecting_lock:
                self._connecting = [(p, c) for p, c in self._connecting if not c.done()]
                self._connecting.append((primary, call))

        return Standby(self.data_dir, primary, token=self.token, config=self.config,
                       name=self.name, observer=self.observer, on_refused=self._on_refused,
                       start=False, rules=self.rules, on_call=connecting)

    def _cancel_connecting(self, primary: str) -> None:
        """Cancel the calls still connecting to another primary than primary."""
        with self._connecting_lock:
            stale = [c for p, c in self._connecting if p != primary]
            self._connecting = [(p, c) for p, c in self._connecting if p == primary]
        for call in stale:
            call.cancel()

    def _serve(self, engine: Engine) -> None:
        self.engine = engine
        if self.standby is not None:
            self.router.target = StandbyService(self.standby, self.token)
        else:
            self.router.target = ReplicationService(engine, self.token)
        if self.on_engine is not None:
            self.on_engine(engine)

    # --- what leadership asks (NodeAdapter; each in a thread of its own) ----------------

    def promote(self, epoch: int) -> Engine:
        """Become the primary at epoch: returns once everything received is applied and
        the primary engine, stamping epoch on every commit, is open."""
        with self._lock:
            feed = Feed(epoch, **self.feed_kw)
            standby = self.standby
            try:
                if standby is not None:
                    self.standby = None
                    engine = standby.promote(epoch, feed=feed, observer=self.observer)
                else:  # led before, lost the lease, won again: the same store, a new epoch
                    old = self.engine
                    feed.preload(list(old.feed._frames) if old.feed is not None else [])
                    old.close()
                    engine = Engine(self.data_dir, config=self.config, feed=feed,
                                    observer=self.observer)
            except BaseException:
                # Serve reads again as a standby; leadership campaigns again (or follows).
                log.exception("%s: promotion to epoch %d failed", self.name, epoch)
                if standby is not None and not standby.engine._closed:
                    self.standby = standby  # refused before its engine closed
                else:
                    self.standby = self._standby(None)
                    self._serve(self.standby.engine)
                raise
            log.info("%s promoted at epoch %d: frame %d seq %d", self.name, epoch,
                     feed.last_committed, feed.last_seq)
            self._serve(engine)
            return engine

    def rejoin_as_standby(self, primary: str) -> None:
        """Follow primary: a standby retargets; a primary (fenced) closes its engine and
        reopens the store as a standby first. A bootstrap from another primary that is
        still connecting is cancelled first (it holds the lock)."""
        self._cancel_connecting(primary)
        with self._lock:
            if self._closed:
                return
            if self.standby is None:
                old = self.engine
                old.close()
                self.standby = self._standby(None)
                self._serve(self.standby.engine)
                log.info("%s stepped down: its store reopened as a standby", self.name)
            self.standby.follow(primary)

    def _on_refused(self, standby: Standby, e: ReplicationError) -> None:
        if e.reason in REBOOTSTRAP_REASONS:
            threading.Thread(target=self._rebootstrap, args=(standby, standby.primary),
                             name="mms-rebootstrap", daemon=True).start()

    def _rebootstrap(self, standby: Standby, primary: str) -> None:
        """The store again from primary's hot copy (standby was refused by it)."""
        while True:
            with self._lock:
                if self._closed or self.standby is not standby or standby.primary != primary:
                    return  # promoted, closed or retargeted meanwhile
                standby.close()
                log.warning("%s: bootstrapping again from %s (%s)", self.name, primary,
                            standby.error.reason if standby.error else "")
                try:
                    wipe(self.data_dir)
                    fresh = self._standby(primary)
                except (grpc.RpcError, ReplicationError, OSError) as e:
                    log.error("%s: bootstrap from %s failed (%s); trying again", self.name,
                              primary, e)
                    fresh = self._standby(None)
                    self.standby = fresh
                    self._serve(fresh.engine)
                    fresh.primary = primary
                    standby = fresh
                    ok = False
                else:
                    self.standby = fresh
                    self._serve(fresh.engine)
                    fresh.start()
                    ok = True
            if ok:
                return
            time.sleep(REPLICATION_RECONNECT_S)

    # --- candidacy ---------------------------------------------------------------------

    def position(self) -> tuple[int, int, int]:
        """(epoch, frame, seq) this node has applied (standby) or committed (primary).
        The seq only decides between stores that applied no frame: a single server's
        store with [ha] for the first time (its records, frame 0) is ahead of a new
        node's empty one, so the empty node leaves the first leadership to it."""
        st = self.standby
        if st is not None:
            return st.replica.applied_epoch, st.replica.applied_frame, st.replica.applied_seq
        feed = self.engine.feed
        return (feed.epoch, feed.last_committed, feed.last_seq) if feed is not None else (0, 0, 0)

    def lagging(self) -> str:
        """Why this standby must not campaign now ("" if it may): it knows the primary had
        more than lag_records_max records it has not applied."""
        st = self.standby
        if st is None or not self.lag_records_max:
            return ""
        lag = max(0, st.primary_seq - st.replica.applied_seq)
        if lag > self.lag_records_max:
            return (f"applied seq {st.replica.applied_seq} is {lag} records behind the "
                    f"primary's {st.primary_seq} (bound {self.lag_records_max})")
        return ""

    def peer_ahead(self, peers: dict[str, str], timeout_s: float) -> str:
        """The name of a peer (name -> address) whose (epoch, frame) is past this node's:
        it holds frames this one lacks, perhaps an acknowledged op only it confirmed, so
        it should lead. A peer that does not answer within timeout_s is not counted."""
        mine = self.position()
        for name, addr in sorted(peers.items()):
            try:
                st = status_of(addr, self.token, timeout_s)
            except grpc.RpcError:
                continue
            if (st["epoch"], st["frame"], st["seq"]) > mine:
                log.info("%s: peer %s at epoch %d frame %d is ahead of %s", self.name, name,
                         st["epoch"], st["frame"], mine)
                return name
        return ""

    def status(self) -> dict:
        st = self.standby
        if st is not None:
            return {"role": "standby", **st.status()}
        return {"role": "primary", **(self.engine.feed.status() if self.engine.feed else {})}

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self.standby is not None:
                self.standby.close()
            else:
                self.engine.close()


# --- metrics --------------------------------------------------------------------------

class ReplicationCollector:
    """The replication gauges, read at scrape time from a Feed (primary), a Standby, or
    neither (a primary without replication: mode "none"). Every family is exported on
    every node, so rules and panels can join them."""

    MODES = ("none", "async", "sync", "sync_degraded")

    LEADERSHIP_STATES = ("primary", "standby", "fenced")

    def __init__(self, feed: Feed | None = None, standby: Standby | None = None,
                 engine: Engine | None = None, node: ReplicatedNode | None = None,
                 role: object | None = None) -> None:
        self.feed = feed
        self.standby = standby
        self.engine = engine
        self.node = node    # [ha] with replication: its current side, read at each scrape
        self.role = role    # server/rpc/role.py NodeRole ([ha]), None for a single server

    def describe(self):
        return []

    def collect(self):
        feed, standby = self.feed, self.standby
        if self.node is not None:
            standby = self.node.standby
            feed = self.node.feed
        s = feed.status() if feed is not None else None
        st = standby.status() if standby is not None else None
        yield from self._leadership()
        role = GaugeMetricFamily("mms_replication_role", "1 for this node's role.", labels=["role"])
        role.add_metric(["primary"], 0 if st else 1)
        role.add_metric(["standby"], 1 if st else 0)
        yield role
        mode = GaugeMetricFamily("mms_replication_mode", "1 for the primary's replication mode "
                                 "(sync_degraded: sync fallen back to async; a standby: none).",
                                 labels=["mode"])
        current = s["mode"] if s else "none"
        for m in self.MODES:
            mode.add_metric([m], 1 if current == m else 0)
        yield mode
        if st is not None:
            epoch, seq = st["epoch"], st["applied_seq"]
        elif s is not None:
            epoch, seq = s["epoch"], s["last_seq"]
        else:
            epoch, seq = 0, (self.engine.stats()["last_seq"] if self.engine is not None else 0)
        yield GaugeMetricFamily("mms_replication_epoch", "The epoch this node has (primary) or "
                                "has applied (standby).", value=epoch)
        yield GaugeMetricFamily("mms_replication_applied_seq", "The journal seq this node has "
                                "committed (primary) or applied (standby).", value=seq)
        yield GaugeMetricFamily("mms_replication_primary_connected", "Standby: 1 while it is "
                                "subscribed to its primary.",
                                value=1 if st and st["connected"] else 0)
        yield GaugeMetricFamily("mms_replication_refused", "Standby: 1 when it stopped "
                                "following (a refusal: see the log and ReplicationStatus).",
                                value=1 if st and st["error_reason"] else 0)
        yield GaugeMetricFamily("mms_replication_standbys_connected", "Primary: standbys "
                                "subscribed now.", value=s["standbys"] if s else 0)
        yield GaugeMetricFamily("mms_replication_lag_records", "Primary: journal records "
                                "committed and not yet confirmed by a standby.",
                                value=s["lag_records"] if s else 0)
        yield GaugeMetricFamily("mms_replication_lag_seconds", "Primary: age of the oldest "
                                "frame no standby has confirmed.", value=s["lag_seconds"] if s else 0)
        yield GaugeMetricFamily("mms_replication_acks_held", "Primary: acknowledgements "
                                "waiting for a standby's confirmation now (sync mode).",
                                value=s["acks_held"] if s else 0)
        c = CounterMetricFamily("mms_replication_sync_fallbacks", "Primary: times sync mode "
                                "fell back to async after the timeout.")
        c.add_metric([], s["fallbacks"] if s else 0)
        yield c
        yield GaugeMetricFamily("mms_replication_standby_lag_records", "Standby: journal "
                                "records it knows its primary had and it has not applied.",
                                value=st["lag_records"] if st else 0)

    def _leadership(self):
        """The node's leadership role and epoch (etcd's view, [ha]); a single server is
        primary for good at epoch 0."""
        role = self.role
        state = getattr(role, "state", "primary")
        g = GaugeMetricFamily("mms_leadership_role", "1 for this node's leadership state: "
                              "primary (leads and holds its lease), standby, fenced (led and "
                              "lost its lease).", labels=["state"])
        for name in self.LEADERSHIP_STATES:
            g.add_metric([name], 1 if state == name else 0)
        yield g
        yield GaugeMetricFamily("mms_leadership_epoch", "The epoch this node leads at, or "
                                "the newest leader's epoch it knows (0: none).",
                                value=getattr(role, "epoch", 0) or 0)
        yield GaugeMetricFamily("mms_leadership_ha", "1 when this node runs with [ha] "
                                "(leadership in etcd).", value=1 if role is not None else 0)
        yield GaugeMetricFamily("mms_leadership_abandoned_tasks", "etcd calls given up on "
                                "after their bound and cancellation that have not ended yet.",
                                value=leader.abandoned_tasks())


def status_of(addr: str, token: str, timeout_s: float = REPLICATION_CONNECT_TIMEOUT_S) -> dict:
    """A node's ReplicationStatus as a dict (tools, tests)."""
    with _channel(addr) as ch:
        st = replication_pb2_grpc.ReplicationServiceStub(ch).Status(
            replication_pb2.ReplicationStatusRequest(), timeout=timeout_s,
            metadata=(("authorization", f"Bearer {token}"),))
    return {f.name: getattr(st, f.name) for f in st.DESCRIPTOR.fields}


__all__ = ["ReplicationCollector", "ReplicationService", "Standby", "StandbyService",
           "bootstrap", "rejoin_as_standby", "status_of"]
