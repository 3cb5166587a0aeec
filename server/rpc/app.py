"""The gRPC services over core.Engine, and the server that hosts them.

Every engine call goes through `Bridge`, which bounds in-flight ops, maps engine
back-pressure to RESOURCE_EXHAUSTED and awaits the engine's concurrent future on the
event loop without blocking it. Batches travel as packed columns and become an OP array
with numpy; nothing loops per op in Python on the batch paths.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import time
from dataclasses import dataclass

import grpc
import numpy as np
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2_grpc
from grpc_status import rpc_status

from core import EngineClosed, Overloaded
from core.domain.rbac import PermissionDenied
from core.domain.rbac import authorize as rbac_authorize
from core.records import (
    COUPONS_PER_OP,
    ITEM,
    OP,
    CardFlag,
    ItemFlag,
    OpFlag,
    OpType,
    Result,
    is_ascii_digits,
)
from server.mms_pb import (
    admin_pb2,
    admin_pb2_grpc,
    pos_pb2,
    pos_pb2_grpc,
    report_pb2,
    report_pb2_grpc,
    types_pb2,
)
from server.rpc.auth import ChainTerminals, Registry, Terminal, TerminalSources, bearer_token
from server.rpc.metrics import HttpEndpoint, Metrics

log = logging.getLogger("mms.server")

# The engine's batch_max: one request never needs more than one engine submission.
BATCH_OPS_MAX = 4096
# A full batch request is about 110 KB and its response about 400 KB; 4 MiB leaves room
# for IssueCards and bulk summaries while refusing anything absurd before decoding it.
MESSAGE_BYTES_MAX = 4 * 1024 * 1024
# Ops accepted by this server and not yet answered. Half the engine's queue, so the
# server sheds load before the engine has to.
INFLIGHT_OPS_MAX = 131_072
# Submissions of coalesced single ops (unary Swipe, Recharge) in the engine at once.
# While one is being applied and committed, new single ops gather and go in the next
# submission when it is answered: the engine then takes fewer, fuller batches, and
# every batch costs the writer threads CPU and GIL time (on 2 cores, about 2 ms) that
# the event loop would otherwise have. A lone op still goes at once.
SINGLE_SUBMISSIONS_MAX = 1
# Batches one stream may have submitted and unanswered: enough to keep the writer busy
# across a network round trip, bounded so one stream cannot take the whole budget.
STREAM_PIPELINE_BATCHES_MAX = 8
# Cards one IssueCards call may create.
ISSUE_CARDS_MAX = 100_000
# Rejected rows listed in one BulkRecharge summary (all of them are counted).
BULK_REJECTED_ROWS_MAX = 10_000
# Grace for in-flight RPCs on shutdown before they are cancelled.
SHUTDOWN_GRACE_SECONDS = 10.0
CLIENT_ID_BYTES = 16
ERROR_DOMAIN = "mms.v1"
# Undecodable requests are logged at most this often, as one line with their count
# since the previous line: a fuzzer or a broken client must not fill the disk.
MALFORMED_LOG_INTERVAL_S = 60.0

_CODE_OF_RESULT = {
    Result.CARD_NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    Result.CARD_LOST: grpc.StatusCode.FAILED_PRECONDITION,
    Result.CARD_FROZEN: grpc.StatusCode.FAILED_PRECONDITION,
    Result.CARD_CANCELLED: grpc.StatusCode.FAILED_PRECONDITION,
    Result.CARD_DORMANT: grpc.StatusCode.FAILED_PRECONDITION,
    Result.CARD_EXPIRED: grpc.StatusCode.FAILED_PRECONDITION,
    Result.INSUFFICIENT_BALANCE: grpc.StatusCode.FAILED_PRECONDITION,
    Result.BALANCE_LIMIT: grpc.StatusCode.FAILED_PRECONDITION,
    Result.AMOUNT_NOT_POSITIVE: grpc.StatusCode.INVALID_ARGUMENT,
    Result.AMOUNT_TOO_LARGE: grpc.StatusCode.INVALID_ARGUMENT,
    Result.OP_TYPE_INVALID: grpc.StatusCode.INVALID_ARGUMENT,
    Result.CLIENT_ID_INVALID: grpc.StatusCode.INVALID_ARGUMENT,
    Result.CARD_NO_INVALID: grpc.StatusCode.INVALID_ARGUMENT,
    Result.CARD_EXISTS: grpc.StatusCode.ALREADY_EXISTS,
    Result.RECHARGE_NOT_ALLOWED: grpc.StatusCode.PERMISSION_DENIED,
    # Malformed input is the client's error; everything else (PIN, points, uses,
    # coupons, refunds) is the state of the card or the swipe: FAILED_PRECONDITION.
    Result.ITEMS_INVALID: grpc.StatusCode.INVALID_ARGUMENT,
    Result.OFFSET_INVALID: grpc.StatusCode.INVALID_ARGUMENT,
    Result.COUPONS_INVALID: grpc.StatusCode.INVALID_ARGUMENT,
    # The generic results of admin ops' own refusals (with a reason of the core op).
    Result.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    Result.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    Result.ALREADY_EXISTS: grpc.StatusCode.ALREADY_EXISTS,
    Result.PERMISSION_DENIED: grpc.StatusCode.PERMISSION_DENIED,
}
# docs/api.md's result table lists every Result with this status (tests/test_docs.py).


def result_status(code: int) -> grpc.StatusCode:
    """The gRPC status of a rejected op's engine Result."""
    return _CODE_OF_RESULT.get(Result(int(code)), grpc.StatusCode.FAILED_PRECONDITION)


def result_reason(code: int) -> str:
    """The ErrorInfo reason for an engine Result: its proto enum name."""
    try:
        return types_pb2.Result.Name(int(code))
    except ValueError:
        return f"RESULT_{int(code)}"


class RpcFailure(Exception):
    """A request-level failure: a status code plus a machine-readable reason."""

    def __init__(self, code: grpc.StatusCode, reason: str, message: str,
                 metadata: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.metadata = metadata or {}

    @classmethod
    def of_result(cls, code: int, message: str = "", **metadata: str) -> RpcFailure:
        reason = result_reason(code)
        return cls(result_status(code), reason, message or reason, metadata)

    def trailing_metadata(self):
        info = error_details_pb2.ErrorInfo(reason=self.reason, domain=ERROR_DOMAIN,
                                           metadata=self.metadata)
        detail = any_pb2.Any()
        detail.Pack(info)
        st = status_pb2.Status(code=self.code.value[0], message=self.message, details=[detail])
        return rpc_status.to_status(st).trailing_metadata


def invalid(reason: str, message: str, **metadata: str) -> RpcFailure:
    return RpcFailure(grpc.StatusCode.INVALID_ARGUMENT, reason, message, metadata)


# Journal sequences are int64 (a century of commits at a million a second stays far
# below); a cursor past this names no record and is refused before it is used.
SEQ_MAX = 2**63 - 1


def seq_cursor(value: int, field: str) -> int:
    """A journal cursor from a request (since_seq, after_seq): 0..SEQ_MAX."""
    if not 0 <= int(value) <= SEQ_MAX:
        raise invalid("VALUE_OUT_OF_RANGE", f"{field}: {value} is outside 0..{SEQ_MAX}",
                      field=field)
    return int(value)


def page_limit(value: int, default: int, maximum: int, field: str = "limit") -> int:
    """The page size of a list call: 0 asks for the default, and a value past the
    maximum is refused (LIMIT_INVALID), never silently cut: a caller who asked for more
    than it got would take a short page for the end of the list."""
    limit = int(value) or default
    if not 1 <= limit <= maximum:
        raise invalid("LIMIT_INVALID", f"{field}: {value} is outside 1..{maximum} (0 for "
                      f"{default}); read further pages instead", field=field,
                      limit_max=str(maximum))
    return limit


# --- undecodable requests -------------------------------------------------------------

class MalformedRequest(RpcFailure):
    """A request body (or one message of a stream) that does not decode as its type."""

    def __init__(self, type_name: str, index: int | None = None) -> None:
        where = "the request" if index is None else f"message {index} of the stream"
        meta = {"message_type": type_name}
        if index is not None:
            meta["message_index"] = str(index)
        super().__init__(grpc.StatusCode.INVALID_ARGUMENT, "MALFORMED_REQUEST",
                         f"{where} is not a valid {type_name} (protobuf decoding failed); "
                         "nothing was applied from it", meta)


def _type_name(deserializer) -> str:
    cls = getattr(deserializer, "__self__", None)
    desc = getattr(cls, "DESCRIPTOR", None)
    return getattr(desc, "full_name", None) or "message"


class RequestGuard:
    """Decodes every request of every method itself, so that a body that does not
    decode answers INVALID_ARGUMENT / MALFORMED_REQUEST (before any token check: it
    reveals nothing) instead of gRPC's UNKNOWN with a traceback per request. It counts
    each one (mms_malformed_requests_total, and grpc_server_* for the services `_rpc`
    instruments) and logs them once per MALFORMED_LOG_INTERVAL_S with a count.

    It works on method handlers, so one place covers every service the server hosts:
    `GuardedServer` hands the add_*Servicer_to_server functions a server that wraps
    each handler they register."""

    def __init__(self, metrics: Metrics, instrumented: frozenset[str] = frozenset()) -> None:
        self.metrics = metrics
        self.instrumented = instrumented
        self._unlogged = 0
        self._next_log = 0.0

    def note(self, service: str, method: str) -> None:
        """Count one undecodable request; log the count at most once per interval."""
        self.metrics.malformed.inc()
        self._unlogged += 1
        now = time.monotonic()
        if now >= self._next_log:
            log.warning("refused %d undecodable request(s) with MALFORMED_REQUEST since the "
                        "last such line (latest: %s/%s); this line repeats at most every %g s",
                        self._unlogged, service, method, MALFORMED_LOG_INTERVAL_S)
            self._unlogged = 0
            self._next_log = now + MALFORMED_LOG_INTERVAL_S

    async def _refuse(self, context, service: str, method: str, grpc_type: str,
                      failure: RpcFailure) -> None:
        self.note(service, method)
        if service in self.instrumented:
            m = self.metrics
            m.started_child(grpc_type, service, method).inc()
            m.handled_child(grpc_type, service, method, failure.code).inc()
            m.handling_child(grpc_type, service, method).observe(0.0)
        await context.abort(failure.code, failure.message, failure.trailing_metadata())

    def wrap(self, full_method: str, h: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        deser = h.request_deserializer
        if deser is None:
            return h
        service, _, method = full_method.lstrip("/").rpartition("/")
        type_name = _type_name(deser)
        grpc_type = {(False, False): "unary", (True, False): "client_stream",
                     (False, True): "server_stream", (True, True): "bidi_stream"}[
            (bool(h.request_streaming), bool(h.response_streaming))]
        guard = self
        if not h.request_streaming:
            inner = h.unary_stream if h.response_streaming else h.unary_unary
            if inspect.iscoroutinefunction(inner):
                async def behavior(raw, context):
                    try:
                        request = deser(raw)
                    except Exception:
                        await guard._refuse(context, service, method, grpc_type,
                                            MalformedRequest(type_name))
                    return await inner(request, context)
            elif inspect.isasyncgenfunction(inner):
                async def behavior(raw, context):
                    try:
                        request = deser(raw)
                    except Exception:
                        await guard._refuse(context, service, method, grpc_type,
                                            MalformedRequest(type_name))
                    async for item in inner(request, context):
                        yield item
            else:  # a synchronous handler: not ours to wrap
                return h
            make = (grpc.unary_stream_rpc_method_handler if h.response_streaming
                    else grpc.unary_unary_rpc_method_handler)
            return make(behavior, request_deserializer=None,
                        response_serializer=h.response_serializer)

        inner = h.stream_stream if h.response_streaming else h.stream_unary

        async def decoded(raw_messages):
            i = 0
            async for raw in raw_messages:
                try:
                    msg = deser(raw)
                except Exception:
                    guard.note(service, method)
                    raise MalformedRequest(type_name, i) from None
                i += 1
                yield msg

        async def unhandled(context, e: MalformedRequest) -> None:
            # A handler that is not `_rpc`'s let the refusal through: answer it here.
            await context.abort(e.code, e.message, e.trailing_metadata())

        if inspect.iscoroutinefunction(inner):
            async def behavior(raw_messages, context):
                try:
                    return await inner(decoded(raw_messages), context)
                except MalformedRequest as e:
                    await unhandled(context, e)
        elif inspect.isasyncgenfunction(inner):
            async def behavior(raw_messages, context):
                try:
                    async for item in inner(decoded(raw_messages), context):
                        yield item
                except MalformedRequest as e:
                    await unhandled(context, e)
        else:
            return h
        make = (grpc.stream_stream_rpc_method_handler if h.response_streaming
                else grpc.stream_unary_rpc_method_handler)
        return make(behavior, request_deserializer=None, response_serializer=h.response_serializer)


class _GuardedGeneric(grpc.GenericRpcHandler):
    def __init__(self, inner: grpc.GenericRpcHandler, guard: RequestGuard) -> None:
        self._inner = inner
        self._guard = guard
        self._cache: dict[str, grpc.RpcMethodHandler | None] = {}

    def service(self, handler_call_details):
        name = handler_call_details.method
        if name not in self._cache:
            h = self._inner.service(handler_call_details)
            wrapped = None if h is None else self._guard.wrap(name, h)
            if len(self._cache) < 4096:  # methods of the hosted services, not callers' names
                self._cache[name] = wrapped
            return wrapped
        return self._cache[name]


class GuardedServer:
    """The registration side of a grpc.aio.Server, for add_*Servicer_to_server: every
    handler registered through it decodes its requests through the guard."""

    def __init__(self, server: grpc.aio.Server, guard: RequestGuard) -> None:
        self._server = server
        self._guard = guard

    def add_generic_rpc_handlers(self, handlers) -> None:
        self._server.add_generic_rpc_handlers(tuple(_GuardedGeneric(h, self._guard)
                                                    for h in handlers))

    def add_registered_method_handlers(self, service: str, handlers: dict) -> None:
        self._server.add_registered_method_handlers(
            service, {m: self._guard.wrap(f"/{service}/{m}", h) for m, h in handlers.items()})


def _takes_client_ids(service: str, method: str) -> bool:
    """Whether the method's request carries client ids (at its top or one level down),
    so that a retry with the same ids can tell whether its ops applied."""
    for mod in (pos_pb2, admin_pb2, report_pb2):
        for svc in mod.DESCRIPTOR.services_by_name.values():
            if svc.full_name == service and method in svc.methods_by_name:
                t = svc.methods_by_name[method].input_type
                names = {f.name for f in t.fields}
                for f in t.fields:
                    if f.message_type is not None:
                        names |= {g.name for g in f.message_type.fields}
                return bool(names & {"client_id", "client_ids"})
    return False


# --- instrumentation ------------------------------------------------------------------

def _rpc(service: str, method: str, grpc_type: str):
    """Wrap a handler: auth context, metrics in the standard shapes, and RpcFailure ->
    status with ErrorInfo details."""

    def deco(fn):
        streaming_out = grpc_type in ("server_stream", "bidi_stream")

        def finish(self, context, start: float, exc: BaseException | None) -> None:
            if exc is None:
                code = grpc.StatusCode.OK
            elif isinstance(exc, RpcFailure):
                code = exc.code
            elif isinstance(exc, asyncio.CancelledError):
                code = grpc.StatusCode.CANCELLED
                rem = context.time_remaining()
                if rem is not None and rem <= 0:
                    code = grpc.StatusCode.DEADLINE_EXCEEDED
            else:
                code = context.code() or grpc.StatusCode.UNKNOWN
            m = self.metrics
            m.handled_child(grpc_type, service, method, code).inc()
            m.handling_child(grpc_type, service, method).observe(time.perf_counter() - start)

        # Only a call with client ids can learn by a retry whether it applied.
        internal_message = ("internal error; retry with the same client ids to learn "
                            "whether the ops applied" if _takes_client_ids(service, method)
                            else "internal error; the call may be retried")

        def internal(e: Exception) -> RpcFailure:
            log.error("%s/%s failed", service, method, exc_info=e)
            return RpcFailure(grpc.StatusCode.INTERNAL, "INTERNAL", internal_message)

        if streaming_out:
            @functools.wraps(fn)
            async def wrapper(self, request, context):
                self.metrics.started_child(grpc_type, service, method).inc()
                start = time.perf_counter()
                try:
                    async for item in fn(self, request, context):
                        yield item
                except (asyncio.CancelledError, grpc.aio.AbortError) as e:
                    finish(self, context, start, e)
                    raise
                except Exception as e:
                    failure = e if isinstance(e, RpcFailure) else internal(e)
                    finish(self, context, start, failure)
                    await context.abort(failure.code, failure.message,
                                        failure.trailing_metadata())
                else:
                    finish(self, context, start, None)
        else:
            @functools.wraps(fn)
            async def wrapper(self, request, context):
                self.metrics.started_child(grpc_type, service, method).inc()
                start = time.perf_counter()
                try:
                    out = await fn(self, request, context)
                except (asyncio.CancelledError, grpc.aio.AbortError) as e:
                    finish(self, context, start, e)
                    raise
                except Exception as e:
                    failure = e if isinstance(e, RpcFailure) else internal(e)
                    finish(self, context, start, failure)
                    await context.abort(failure.code, failure.message,
                                        failure.trailing_metadata())
                finish(self, context, start, None)
                return out
        return wrapper
    return deco


# --- engine bridge --------------------------------------------------------------------

class Bridge:
    """Submits op arrays to the engine from the event loop, with bounds.

    Engine futures are resolved on the writer thread; each is bridged to the loop with
    one call_soon_threadsafe, and the loop-side future is ours alone, so a cancelled
    RPC (deadline, client gone) stops waiting while its op still commits. Single ops
    (unary Swipe, Recharge) are coalesced into one engine submission: one future, one
    wake-up of the loop for all of them. At most SINGLE_SUBMISSIONS_MAX such
    submissions are in the engine; ops that arrive meanwhile wait for the next one.
    """

    def __init__(self, engine, inflight_ops_max: int = INFLIGHT_OPS_MAX) -> None:
        self.engine = engine
        self.inflight_ops_max = inflight_ops_max
        self.inflight_ops = 0
        self.accepting = True
        self._rows: list[tuple] = []
        self._waiters: list[asyncio.Future] = []
        self._flush_scheduled = False
        # Submissions of single ops in the engine and not yet answered.
        self.single_submissions = 0

    def _admit(self, n: int, context) -> None:
        if not self.accepting:
            raise RpcFailure(grpc.StatusCode.UNAVAILABLE, "SHUTTING_DOWN", "the server is stopping")
        rem = context.time_remaining()
        if rem is not None and rem <= 0:
            raise RpcFailure(grpc.StatusCode.DEADLINE_EXCEEDED, "DEADLINE_EXCEEDED",
                             "the deadline passed before the ops were submitted")
        if self.inflight_ops + n > self.inflight_ops_max:
            raise RpcFailure(grpc.StatusCode.RESOURCE_EXHAUSTED, "INFLIGHT_LIMIT",
                             f"{self.inflight_ops} ops in flight, limit {self.inflight_ops_max}")

    def _submit(self, ops: np.ndarray, items: np.ndarray | None = None,
                coupon_ids: np.ndarray | None = None):
        try:
            return self.engine.submit(ops, items, coupon_ids)
        except Overloaded as e:
            raise RpcFailure(grpc.StatusCode.RESOURCE_EXHAUSTED, "ENGINE_OVERLOADED", str(e)) from e
        except EngineClosed as e:
            raise RpcFailure(grpc.StatusCode.UNAVAILABLE, "SHUTTING_DOWN", str(e)) from e

    def _bridge(self, cf, n: int, deliver) -> None:
        loop = asyncio.get_running_loop()
        self.inflight_ops += n

        def settle(cf) -> None:
            self.inflight_ops -= n
            deliver(cf)

        def done(cf) -> None:
            try:
                loop.call_soon_threadsafe(settle, cf)
            except RuntimeError:  # the loop is gone; nobody is waiting any more
                pass

        cf.add_done_callback(done)

    def start(self, ops: np.ndarray, context, items: np.ndarray | None = None,
              coupon_ids: np.ndarray | None = None) -> asyncio.Future:
        """Submit a batch now; return a loop future of its BatchResult."""
        self._admit(len(ops), context)
        cf = self._submit(ops, items, coupon_ids)
        fut = asyncio.get_running_loop().create_future()

        def deliver(cf) -> None:
            if fut.done():
                return
            exc = cf.exception()
            if exc is not None:
                fut.set_exception(exc)
            else:
                fut.set_result(cf.result())

        self._bridge(cf, len(ops), deliver)
        return fut

    async def submit(self, ops: np.ndarray, context):
        return await self.start(ops, context)

    def start_one(self, row: tuple, context) -> asyncio.Future:
        """Queue one op (a SINGLE_OP row); a loop future of (BatchResult, i)."""
        self._admit(len(self._rows) + 1, context)
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._rows.append(row)
        self._waiters.append(fut)
        if len(self._rows) >= BATCH_OPS_MAX:
            self._flush()
        elif not self._flush_scheduled and self.single_submissions < SINGLE_SUBMISSIONS_MAX:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return fut

    def _flush(self) -> None:
        self._flush_scheduled = False
        if not self._rows:
            return
        rows, waiters = self._rows, self._waiters
        self._rows, self._waiters = [], []
        try:
            ops = np.zeros(len(rows), dtype=SINGLE_OP)
            ops[:] = rows
            cf = self._submit(ops.view(OP))
        except Exception as e:  # every waiter must hear of it, or its call would hang
            if not isinstance(e, RpcFailure):
                log.exception("submitting %d single ops failed", len(rows))
                e = RpcFailure(grpc.StatusCode.INTERNAL, "INTERNAL", "the engine refused the ops")
            for w in waiters:
                if not w.done():
                    w.set_exception(e)
            return
        self.single_submissions += 1

        def deliver(cf) -> None:
            self.single_submissions -= 1
            # The ops that gathered meanwhile go to the engine before these answers
            # are sent, so the writer works while the loop answers.
            if self._rows and not self._flush_scheduled:
                self._flush()
            exc = cf.exception()
            res = SingleResults(cf.result()) if exc is None else None
            for i, w in enumerate(waiters):
                if w.done():
                    continue
                if exc is not None:
                    w.set_exception(exc)
                else:
                    w.set_result((res, i))

        self._bridge(cf, len(rows), deliver)

    async def cold(self, cf_factory):
        """Await an admin op (issue_cards, set_card_status)."""
        if not self.accepting:
            raise RpcFailure(grpc.StatusCode.UNAVAILABLE, "SHUTTING_DOWN", "the server is stopping")
        try:
            cf = cf_factory()
        except EngineClosed as e:
            raise RpcFailure(grpc.StatusCode.UNAVAILABLE, "SHUTTING_DOWN", str(e)) from e
        except ValueError as e:
            raise invalid("INVALID_ARGUMENT", str(e)) from e
        return await asyncio.shield(asyncio.wrap_future(cf))


# --- decoding -------------------------------------------------------------------------

def _check_store(term: Terminal, store_id: int) -> None:
    if store_id and store_id != term.store_id:
        raise RpcFailure(grpc.StatusCode.PERMISSION_DENIED, "STORE_MISMATCH",
                         f"terminal {term.terminal_id} belongs to store {term.store_id}, "
                         f"not {store_id}", {"store_id": str(term.store_id)})


def _column(values, n: int, name: str, dtype, limit: int | None = None) -> np.ndarray | None:
    """An optional column: empty (None) or exactly n values, each below limit."""
    if len(values) == 0:
        return None
    if len(values) != n:
        raise invalid("COLUMN_LENGTH", f"{name} has {len(values)} values for {n} ops",
                      column=name)
    arr = np.array(values, dtype=np.uint64 if dtype == np.uint64 else np.int64)
    if limit is not None and (arr.max() >= limit or arr.min() < 0):
        raise invalid("VALUE_OUT_OF_RANGE", f"{name} values must be 0..{limit - 1}", column=name)
    return arr


def decode_ops(client_ids: bytes, card_nos, amount_fen, *, op_type: int, term: Terminal,
               category=(), flags=(), operator_ids=(), operator_id: int = 0) -> np.ndarray:
    """Packed request columns -> OP array, stamped with the terminal's store and id."""
    n = len(card_nos)
    if not 1 <= n <= BATCH_OPS_MAX:
        raise invalid("BATCH_SIZE", f"a batch holds 1..{BATCH_OPS_MAX} ops, not {n}",
                      batch_ops_max=str(BATCH_OPS_MAX))
    if len(client_ids) != CLIENT_ID_BYTES * n:
        raise invalid("CLIENT_IDS_LENGTH",
                      f"client_ids must be {CLIENT_ID_BYTES} bytes per op ({CLIENT_ID_BYTES * n}), "
                      f"not {len(client_ids)}")
    if len(amount_fen) != n:
        raise invalid("COLUMN_LENGTH", f"amount_fen has {len(amount_fen)} values for {n} ops",
                      column="amount_fen")
    ops = np.zeros(n, dtype=OP)
    pairs = np.frombuffer(client_ids, dtype=">u8").reshape(n, 2)
    ops["client_hi"] = pairs[:, 0]
    ops["client_lo"] = pairs[:, 1]
    ops["card_no"] = np.array(card_nos, dtype=np.uint64)
    ops["amount_fen"] = np.array(amount_fen, dtype=np.int64)
    ops["store_id"] = term.store_id
    ops["terminal_id"] = term.terminal_id
    ops["op_type"] = op_type
    cat = _column(category, n, "category", np.int64, 65_536)
    if cat is not None:
        ops["category"] = cat
    fl = _column(flags, n, "flags", np.int64, 256)
    if fl is not None:
        ops["op_flags"] = fl
    opr = _column(operator_ids, n, "operator_ids", np.int64, 2**32)
    ops["operator_id"] = opr if opr is not None else operator_id
    return ops


_CARD_INT_FIELDS = frozenset(f.name for f in types_pb2.Card.DESCRIPTOR.fields
                             if f.type != f.TYPE_BOOL)


def card_pb(card: dict) -> types_pb2.Card:
    """A card (core's card_to_dict) as the API shows it, with its membership state."""
    return types_pb2.Card(
        **{k: int(v) for k, v in card.items() if k in _CARD_INT_FIELDS},
        membership_lapsed=bool(int(card.get("flags", 0)) & CardFlag.CARD_FLAG_MEMBERSHIP_LAPSED))


def encode_results(res) -> types_pb2.OpResultColumns:
    cols = res.columns()
    return types_pb2.OpResultColumns(
        codes=res.codes.tolist(),
        replayed=res.replayed.astype(bool).tolist(),
        seq=res.seq.tolist(),
        discount_fen=cols["discount_fen"].tolist(),
        payable_fen=cols["payable_fen"].tolist(),
        principal_delta_fen=cols["principal_delta_fen"].tolist(),
        bonus_delta_fen=cols["bonus_delta_fen"].tolist(),
        points_delta=cols["points_delta"].tolist(),
        principal_fen=cols["principal_fen"].tolist(),
        bonus_fen=cols["bonus_fen"].tolist(),
        points=cols["points"].tolist(),
        level=cols["level"].tolist(),
    )


def encode_one(res, i: int = 0) -> types_pb2.OpResult:
    rec = res.record(i)
    out = types_pb2.OpResult(code=int(res.codes[i]), replayed=bool(res.replayed[i]),
                             seq=int(res.seq[i]))
    if rec is not None:
        for name in ("amount_fen", "discount_fen", "payable_fen", "principal_delta_fen",
                     "bonus_delta_fen", "points_delta", "coupon_fen", "offset_fen"):
            setattr(out, name, int(rec[name]))
        after = rec["after"]
        out.principal_fen = int(after["principal_fen"])
        out.bonus_fen = int(after["bonus_fen"])
        out.points = int(after["points"])
        out.level = int(after["level"])
    return out


class SingleResults:
    """The answers to one submission of coalesced single ops, decoded for all of them
    at once on first use (one numpy step per column, not per op and field)."""

    __slots__ = ("res", "codes", "replayed", "_cols")

    def __init__(self, res) -> None:
        self.res = res
        self.codes: list[int] = res.codes.tolist()
        self.replayed: list[bool] = res.replayed.astype(bool).tolist()
        self._cols: dict[str, list[int]] | None = None

    def op_result(self, i: int) -> types_pb2.OpResult:
        """What encode_one(res, i) gives, from the batch's columns."""
        if self._cols is None:
            cols = self.res.columns()
            self._cols = {k: v.tolist() for k, v in cols.items()}
            self._cols["seq"] = self.res.seq.tolist()
        return types_pb2.OpResult(code=self.codes[i], replayed=self.replayed[i],
                                  **{k: v[i] for k, v in self._cols.items()})


# The OP fields a unary op sets, as a view of OP with the same offsets and size, so a
# list of tuples becomes OP rows in one step; every other field stays zero.
SINGLE_OP_FIELDS = ("client_hi", "client_lo", "card_no", "amount_fen", "store_id",
                    "terminal_id", "operator_id", "category", "op_type", "op_flags")
SINGLE_OP = np.dtype({"names": list(SINGLE_OP_FIELDS),
                      "formats": [OP.fields[f][0] for f in SINGLE_OP_FIELDS],
                      "offsets": [OP.fields[f][1] for f in SINGLE_OP_FIELDS],
                      "itemsize": OP.itemsize})


def _single_op(req, term: Terminal, op_type: int, category: int = 0, flags: int = 0, *,
               zero_amount: bool = False) -> tuple:
    """A unary request as one row of SINGLE_OP, checked at the edge. zero_amount lets an
    amount of 0 through to the engine (a refund of 0 reverses an order the coupons paid
    in full; the engine decides whether the swipe is one)."""
    if len(req.client_id) != CLIENT_ID_BYTES:
        raise invalid("RESULT_CLIENT_ID_INVALID",
                      f"client_id must be {CLIENT_ID_BYTES} bytes, not {len(req.client_id)}")
    if req.card_no == 0:
        raise invalid("RESULT_CARD_NO_INVALID", "card_no must be set")
    if req.amount_fen < 0 or (req.amount_fen == 0 and not zero_amount):
        raise invalid("RESULT_AMOUNT_NOT_POSITIVE", "amount_fen must be positive")
    if category >= 65_536:
        raise invalid("VALUE_OUT_OF_RANGE", "category must be 0..65535", column="category")
    if flags >= 256:
        raise invalid("VALUE_OUT_OF_RANGE", "flags must be 0..255", column="flags")
    _check_store(term, req.store_id)
    cid = req.client_id
    return (int.from_bytes(cid[:8], "big"), int.from_bytes(cid[8:], "big"), req.card_no,
            req.amount_fen, term.store_id, term.terminal_id, req.operator_id, category,
            op_type, flags)


# A basket at one till: enough lines for a supermarket trolley, small enough to check.
ITEMS_PER_SWIPE_MAX = 256
PIN_DIGITS_MAX = 9


def _pin(digits: str) -> tuple[int, int]:
    if not digits:
        return 0, 0
    if len(digits) > PIN_DIGITS_MAX or not is_ascii_digits(digits):
        raise invalid("PIN_MALFORMED", f"pin: a PIN is 1 to {PIN_DIGITS_MAX} ASCII digits 0-9",
                      field="pin")
    return int(digits), len(digits)


def _full_op(row: tuple, *, pin: str = "", points_offset: int = 0,
             ref_client_id: bytes = b"") -> np.ndarray:
    """One OP row from a SINGLE_OP tuple plus the domain inputs."""
    ops = np.zeros(1, dtype=SINGLE_OP)
    ops[0] = row
    ops = ops.view(OP).copy()
    ops["pin"], ops["pin_len"] = _pin(pin)
    if points_offset < 0:
        raise invalid("RESULT_OFFSET_INVALID", "points_offset must not be negative")
    ops["points_offset"] = points_offset
    if ref_client_id:
        if len(ref_client_id) != CLIENT_ID_BYTES:
            raise invalid("RESULT_CLIENT_ID_INVALID", "swipe_client_id must be 16 bytes")
        ops["ref_hi"] = int.from_bytes(ref_client_id[:8], "big")
        ops["ref_lo"] = int.from_bytes(ref_client_id[8:], "big")
    return ops


def _basket(req, ops: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The swipe's line items and coupons as engine arrays, checked at the edge."""
    items = coupons = None
    if req.items:
        if len(req.items) > ITEMS_PER_SWIPE_MAX:
            raise invalid("TOO_MANY_ITEMS", f"at most {ITEMS_PER_SWIPE_MAX} lines per swipe")
        items = np.zeros(len(req.items), dtype=ITEM)
        for i, line in enumerate(req.items):
            if line.category >= 65_536 or line.qty == 0 or line.amount_fen < 0:
                raise invalid("RESULT_ITEMS_INVALID", f"line {i}: category 0..65535, qty >= 1, amount >= 0")
            items[i] = (line.sku, line.amount_fen, line.qty, line.category,
                        ItemFlag.ITEM_NO_POINTS if line.no_points else 0, 0)
        ops["items_off"], ops["items_n"] = 0, len(items)
    if req.coupon_ids:
        if len(req.coupon_ids) > COUPONS_PER_OP:
            raise invalid("RESULT_COUPONS_INVALID", f"at most {COUPONS_PER_OP} coupons per swipe")
        coupons = np.array(req.coupon_ids, dtype=np.uint64)
        ops["coupons_off"], ops["coupons_n"] = 0, len(coupons)
    return items, coupons


# --- services -------------------------------------------------------------------------

class _Base:
    def __init__(self, bridge: Bridge, registry: Registry, metrics: Metrics) -> None:
        self.bridge = bridge
        self.engine = bridge.engine
        self.registry = registry
        self.metrics = metrics

    def auth(self, context, role: str | None = None) -> Terminal:
        term = self.registry.authenticate(bearer_token(context.invocation_metadata()))
        if term is None:
            raise RpcFailure(grpc.StatusCode.UNAUTHENTICATED, "TOKEN_INVALID",
                             "missing, unknown or revoked terminal token")
        if role is not None and term.role != role:
            raise RpcFailure(grpc.StatusCode.PERMISSION_DENIED, "ROLE_REQUIRED",
                             f"this call needs the {role} role", {"role": role})
        return term


POS = "mms.v1.PosService"
_RESULT_OK = int(Result.OK)
ADMIN = "mms.v1.AdminService"
REPORT = "mms.v1.ReportService"


class PosService(_Base, pos_pb2_grpc.PosServiceServicer):
    def __init__(self, bridge: Bridge, registry, metrics: Metrics, *, chain=None) -> None:
        """chain (core.domain.chain.Chain), when the server has one, holds the operators whose
        sessions authorize refunds and the chain's refund policy (ChainConfig)."""
        super().__init__(bridge, registry, metrics)
        self.chain = chain

    def _refund_operator(self, request, term: Terminal) -> int:
        """The operator a refund at this till is journalled as, once their session shows
        they may refund at the till's store (docs/api.md, Refund). A server without a
        chain has no operators: the till alone refunds, as the request names."""
        if self.chain is None or self.chain.config.refund_auth == "terminal":
            return request.operator_id
        if not request.operator_session:
            raise RpcFailure(grpc.StatusCode.PERMISSION_DENIED, "OPERATOR_REQUIRED",
                             "a refund needs operator_session: the session of an operator "
                             "who may refund at this store", {"permission": "refund"})
        p = self.chain.principal(request.operator_session)
        if p is None:
            raise RpcFailure(grpc.StatusCode.UNAUTHENTICATED, "SESSION_INVALID",
                             "operator_session is unknown, ended or expired",
                             {"field": "operator_session"})
        try:
            rbac_authorize(p, "refund", term.store_id)
        except PermissionDenied as e:
            raise RpcFailure(grpc.StatusCode.PERMISSION_DENIED, e.reason, str(e),
                             {"permission": "refund", "operator_id": str(p.operator_id),
                              "store_id": str(term.store_id)}) from None
        if request.operator_id and request.operator_id != p.operator_id:
            raise RpcFailure(grpc.StatusCode.PERMISSION_DENIED, "OPERATOR_MISMATCH",
                             f"operator_id {request.operator_id} is not the operator of "
                             f"operator_session ({p.operator_id})",
                             {"operator_id": str(p.operator_id)})
        return int(p.operator_id)

    @_rpc(POS, "Swipe", "unary")
    async def Swipe(self, request, context):
        term = self.auth(context)
        row = _single_op(request, term, OpType.SWIPE, request.category, request.flags)
        if request.items or request.coupon_ids or request.points_offset or request.pin:
            # A swipe with a basket, coupons, an offset or a PIN travels alone with its
            # arrays; plain swipes share submissions (start_one).
            ops = _full_op(row, pin=request.pin, points_offset=request.points_offset)
            items, coupons = _basket(request, ops)
            res = await self.bridge.start(ops, context, items, coupons)
            if res.codes[0] != Result.OK:
                raise RpcFailure.of_result(res.codes[0],
                                           replayed=str(bool(res.replayed[0])).lower())
            return pos_pb2.SwipeResponse(result=encode_one(res, 0))
        batch, i = await self.bridge.start_one(row, context)
        if batch.codes[i] != _RESULT_OK:
            raise RpcFailure.of_result(batch.codes[i], replayed=str(batch.replayed[i]).lower())
        return pos_pb2.SwipeResponse(result=batch.op_result(i))

    @_rpc(POS, "Recharge", "unary")
    async def Recharge(self, request, context):
        term = self.auth(context)
        row = _single_op(request, term, OpType.RECHARGE)
        batch, i = await self.bridge.start_one(row, context)
        if batch.codes[i] != _RESULT_OK:
            raise RpcFailure.of_result(batch.codes[i], replayed=str(batch.replayed[i]).lower())
        return pos_pb2.RechargeResponse(result=batch.op_result(i))

    def _swipe_ops(self, cols, term: Terminal, store_id: int) -> np.ndarray:
        _check_store(term, store_id)
        return decode_ops(cols.client_ids, cols.card_nos, cols.amount_fen, op_type=OpType.SWIPE,
                          term=term, category=cols.category, flags=cols.flags,
                          operator_ids=cols.operator_ids)

    @_rpc(POS, "SwipeBatch", "unary")
    async def SwipeBatch(self, request, context):
        term = self.auth(context)
        ops = self._swipe_ops(request.swipes, term, request.store_id)
        res = await self.bridge.submit(ops, context)
        return pos_pb2.SwipeBatchResponse(results=encode_results(res))

    @_rpc(POS, "SwipeStream", "bidi_stream")
    async def SwipeStream(self, request_iterator, context):
        term = self.auth(context)
        # Batches are submitted as they arrive (up to the pipeline bound) and answered
        # in arrival order; a bad batch ends the stream after the earlier ones are
        # answered, since their ops are committed either way.
        pending: asyncio.Queue = asyncio.Queue(STREAM_PIPELINE_BATCHES_MAX)

        async def read() -> None:
            try:
                async for req in request_iterator:
                    ops = self._swipe_ops(req.swipes, term, req.store_id)
                    await pending.put((req.batch_id, self.bridge.start(ops, context)))
                await pending.put(None)
            except Exception as e:  # handed to the writer side, in order
                await pending.put(e)

        reader = asyncio.create_task(read())
        try:
            while True:
                item = await pending.get()
                if item is None:
                    break
                if isinstance(item, BaseException):
                    raise item
                batch_id, fut = item
                res = await fut
                yield pos_pb2.SwipeStreamResponse(batch_id=batch_id, results=encode_results(res))
        finally:
            reader.cancel()

    @_rpc(POS, "BulkRecharge", "client_stream")
    async def BulkRecharge(self, request_iterator, context):
        term = self.auth(context)
        out = pos_pb2.BulkRechargeResponse()
        window: list = []

        def settle(chunk_index: int, lines: np.ndarray, ops: np.ndarray, res) -> None:
            codes, replayed = res.codes, res.replayed.astype(bool)
            ok = (codes == Result.OK) & ~replayed
            rej = (codes != Result.OK) & ~replayed
            n_ok, n_rep, n_rej = int(ok.sum()), int(replayed.sum()), int(rej.sum())
            out.rows += len(ops)
            out.applied += n_ok
            out.replayed += n_rep
            out.rejected += n_rej
            out.applied_fen += int(ops["amount_fen"][ok].sum())
            out.last_line = max(out.last_line, int(lines.max()))
            out.chunks.add(chunk_index=chunk_index, first_line=int(lines[0]),
                           last_line=int(lines[-1]), applied=n_ok, replayed=n_rep, rejected=n_rej)
            room = BULK_REJECTED_ROWS_MAX - len(out.rejected_rows)
            if n_rej and room > 0:
                idx = np.flatnonzero(rej)[:room]
                for line, code in zip(lines[idx].tolist(), codes[idx].tolist(), strict=True):
                    out.rejected_rows.add(line_number=line, code=code)

        chunk_index = 0
        try:
            async for req in request_iterator:
                n = len(req.card_nos)
                if len(req.line_numbers) != n:
                    raise invalid("COLUMN_LENGTH", f"chunk {chunk_index}: line_numbers has "
                                  f"{len(req.line_numbers)} values for {n} rows",
                                  column="line_numbers")
                ops = decode_ops(req.client_ids, req.card_nos, req.amount_fen,
                                 op_type=OpType.RECHARGE, term=term, operator_id=req.operator_id)
                lines = np.array(req.line_numbers, dtype=np.uint64)
                window.append((chunk_index, lines, ops, self.bridge.start(ops, context)))
                chunk_index += 1
                if len(window) >= STREAM_PIPELINE_BATCHES_MAX:
                    ci, ln, op, fut = window.pop(0)
                    settle(ci, ln, op, await fut)
        except RpcFailure as e:
            # The chunks before the bad one were submitted and commit either way: answer
            # only once they are durable, so "earlier chunks are applied" holds.
            await asyncio.gather(*(fut for *_, fut in window), return_exceptions=True)
            e.metadata.setdefault("chunk_index", str(chunk_index))
            raise
        for ci, ln, op, fut in window:
            settle(ci, ln, op, await fut)
        return out

    @_rpc(POS, "GetCard", "unary")
    async def GetCard(self, request, context):
        self.auth(context)
        card = self.engine.card(int(request.card_no)) if request.card_no else None
        if card is None:
            raise RpcFailure.of_result(Result.CARD_NOT_FOUND, f"card {request.card_no} not found")
        return pos_pb2.GetCardResponse(card=card_pb(card))

    @_rpc(POS, "Refund", "unary")
    async def Refund(self, request, context):
        term = self.auth(context)
        operator_id = self._refund_operator(request, term)
        row = _single_op(request, term, OpType.REFUND, zero_amount=True)
        k = SINGLE_OP_FIELDS.index("operator_id")
        row = (*row[:k], operator_id, *row[k + 1:])
        ops = _full_op(row, ref_client_id=request.swipe_client_id)
        if self.chain is None or not self.chain.config.cross_store_refunds:
            # The engine refuses (PERMISSION_DENIED) a refund of another store's sale.
            ops["op_flags"] = int(ops["op_flags"][0]) | OpFlag.REFUND_OWN_STORE
        res = await self.bridge.start(ops, context)
        code, replayed = int(res.codes[0]), str(bool(res.replayed[0])).lower()
        if code == Result.PERMISSION_DENIED:
            raise RpcFailure(grpc.StatusCode.PERMISSION_DENIED, "REFUND_OTHER_STORE",
                             f"the swipe was made at another store than {term.store_id}, and "
                             "the chain takes refunds at the store of the sale only",
                             {"store_id": str(term.store_id), "replayed": replayed})
        if code != Result.OK:
            raise RpcFailure.of_result(code, replayed=replayed)
        return pos_pb2.RefundResponse(result=encode_one(res, 0))

    @_rpc(POS, "UseCount", "unary")
    async def UseCount(self, request, context):
        term = self.auth(context)
        if request.uses <= 0:
            raise invalid("RESULT_AMOUNT_NOT_POSITIVE", "uses must be positive")
        if request.service == 0 or request.service >= 65_536:
            raise invalid("VALUE_OUT_OF_RANGE", "service must be 1..65535", column="service")
        fake = pos_pb2.SwipeRequest(client_id=request.client_id, card_no=request.card_no,
                                    amount_fen=request.uses, operator_id=request.operator_id,
                                    store_id=request.store_id)
        row = _single_op(fake, term, OpType.USE_COUNT, request.service)
        ops = _full_op(row, pin=request.pin)
        res = await self.bridge.start(ops, context)
        if res.codes[0] != Result.OK:
            raise RpcFailure.of_result(res.codes[0], replayed=str(bool(res.replayed[0])).lower())
        return pos_pb2.UseCountResponse(result=encode_one(res, 0))


# --- the server -----------------------------------------------------------------------

@dataclass
class TlsConfig:
    cert_file: str
    key_file: str
    client_ca_file: str | None = None

    def credentials(self) -> grpc.ServerCredentials:
        def read(path: str) -> bytes:
            with open(path, "rb") as f:
                return f.read()

        ca = read(self.client_ca_file) if self.client_ca_file else None
        return grpc.ssl_server_credentials([(read(self.key_file), read(self.cert_file))],
                                           root_certificates=ca,
                                           require_client_auth=ca is not None)


def split_hostport(s: str) -> tuple[str, int]:
    host, sep, port = s.rpartition(":")
    if not sep or not is_ascii_digits(port):
        raise ValueError(f"expected HOST:PORT, got {s!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


class MmsServer:
    """A grpc.aio server over an open engine, plus its metrics endpoint.

    The engine is the caller's: stop() drains RPCs but leaves engine.close() to the
    owner, who may still want to read from it.
    """

    def __init__(self, engine, registry: Registry, metrics: Metrics, *,
                 listen: str = "127.0.0.1:0", metrics_listen: str | None = "127.0.0.1:0",
                 tls: TlsConfig | None = None, inflight_ops_max: int = INFLIGHT_OPS_MAX,
                 chain=None, members=None, bootstrap_token: str | None = None) -> None:
        """chain (core.domain.chain.Chain) and members (core.domain.members.MemberStore) turn on the
        operator side of AdminService and the chain's terminal tokens; without them
        only the file registry's terminals work, as before. bootstrap_token is the
        one-time secret Bootstrap asks for (serve.py writes it to the data directory)."""
        self.engine = engine
        self.chain = chain
        self.members = members
        self.bootstrap_token = bootstrap_token
        self.metrics = metrics
        self.bridge = Bridge(engine, inflight_ops_max)
        metrics.bind(engine, lambda: self.bridge.inflight_ops, self.is_ready)
        self.registry = registry
        self._listen = listen
        self._metrics_listen = metrics_listen
        self._tls = tls
        self._ready = False
        self.port = 0
        self.metrics_port = 0
        self.http: HttpEndpoint | None = None
        self.health = health.aio.HealthServicer()
        self.server: grpc.aio.Server | None = None
        self.admin = None  # the AdminService, once started

    def is_ready(self) -> bool:
        return self._ready

    async def start(self) -> None:
        opts = [("grpc.max_receive_message_length", MESSAGE_BYTES_MAX),
                ("grpc.max_send_message_length", MESSAGE_BYTES_MAX),
                ("grpc.so_reuseport", 0)]
        self.server = grpc.aio.server(options=opts)
        # One interface, two sources: the chain's terminals first, then the file's.
        terminals = (TerminalSources(ChainTerminals(self.chain), self.registry)
                     if self.chain is not None else self.registry)
        from server.rpc.admin import AdminService  # it builds on this module

        # Every service registers through the guard, which decodes requests itself.
        guarded = GuardedServer(self.server, RequestGuard(self.metrics, frozenset({POS, ADMIN, REPORT})))
        pos_pb2_grpc.add_PosServiceServicer_to_server(
            PosService(self.bridge, terminals, self.metrics, chain=self.chain), guarded)
        self.admin = AdminService(self.bridge, self.registry, self.metrics, chain=self.chain,
                                  members=self.members, bootstrap_token=self.bootstrap_token)
        admin_pb2_grpc.add_AdminServiceServicer_to_server(self.admin, guarded)
        from server.rpc.report import ReportService
        report_pb2_grpc.add_ReportServiceServicer_to_server(ReportService(self.admin), guarded)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, guarded)
        names = (pos_pb2.DESCRIPTOR.services_by_name["PosService"].full_name,
                 admin_pb2.DESCRIPTOR.services_by_name["AdminService"].full_name,
                 report_pb2.DESCRIPTOR.services_by_name["ReportService"].full_name,
                 health.SERVICE_NAME, reflection.SERVICE_NAME)
        # What reflection.enable_server_reflection does for an aio server, through the guard.
        reflection_pb2_grpc.add_ServerReflectionServicer_to_server(
            reflection.aio.ReflectionServicer(names), guarded)
        if self._tls is not None:
            self.port = self.server.add_secure_port(self._listen, self._tls.credentials())
        else:
            self.port = self.server.add_insecure_port(self._listen)
        if self.port == 0:
            raise OSError(f"cannot listen on {self._listen}")
        if self._metrics_listen:
            host, port = split_hostport(self._metrics_listen)
            self.http = HttpEndpoint(self.metrics, host, port, self.is_ready)
            self.metrics_port = self.http.port
            self.http.start()
        await self.server.start()
        for name in (*names[:2], ""):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        self._ready = True

    async def stop(self, grace: float = SHUTDOWN_GRACE_SECONDS) -> None:
        """Stop accepting: new calls are refused, and open streams get UNAVAILABLE on
        their next batch after their earlier batches are answered. Calls already
        waiting on the engine finish (up to grace); the owner then closes the engine,
        which commits everything it accepted."""
        self._ready = False
        self.bridge.accepting = False
        if self.server is not None:
            await self.health.enter_graceful_shutdown()
            await self.server.stop(grace)
        if self.http is not None:
            self.http.stop()
            self.http = None
        if self.admin is not None:
            self.admin.logins.close()
