"""Undecodable requests: every handler decodes its request through the guard, which
answers INVALID_ARGUMENT / MALFORMED_REQUEST, counts it and logs it once per interval."""

from __future__ import annotations

import inspect
import logging
import time

import grpc

from server.mms_pb import (
    admin_pb2,
    campaign_pb2,
    pos_pb2,
    report_pb2,
    segment_pb2,
)
from server.rpc.codec import RAW_REQUEST_DECODERS
from server.rpc.constants import MALFORMED_LOG_INTERVAL_S
from server.rpc.errors import RpcFailure
from server.rpc.metrics import Metrics

log = logging.getLogger("mms.server")

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


# The caller's address that a front end (server/rpc/front.py) passes on with a call it
# forwards to the writer's private socket, where context.peer() is only that socket's:
# the login throttle counts failures per caller address (auth.LoginGate).
FRONT_PEER_KEY = "mms-front-peer"


class ForwardedContext:
    """A forwarded call's context as the handlers see it: peer() is the caller's address
    as the front end saw it; everything else is the call's own context."""

    __slots__ = ("_context", "_peer")

    def __init__(self, context) -> None:
        self._context = context
        self._peer = next((v for k, v in context.invocation_metadata() or ()
                           if k == FRONT_PEER_KEY and isinstance(v, str)), None) or context.peer()

    def peer(self) -> str:
        return self._peer

    def __getattr__(self, name: str):
        return getattr(self._context, name)


class RequestGuard:
    """Decodes every request of every method itself, so that a body that does not
    decode answers INVALID_ARGUMENT / MALFORMED_REQUEST (before any token check: it
    reveals nothing) instead of gRPC's UNKNOWN with a traceback per request. It counts
    each one (mms_malformed_requests_total, and grpc_server_* for the services `rpc_method`
    instruments) and logs them once per MALFORMED_LOG_INTERVAL_S with a count.

    It works on method handlers, so one place covers every service the server hosts:
    `GuardedServer` hands the add_*Servicer_to_server functions a server that wraps
    each handler they register."""

    def __init__(self, metrics: Metrics, instrumented: frozenset[str] = frozenset(),
                 forwarded: bool = False) -> None:
        """forwarded: the server serves only front ends (its private socket), whose calls
        name their caller's address in FRONT_PEER_KEY (ForwardedContext)."""
        self.metrics = metrics
        self.instrumented = instrumented
        self.forwarded = forwarded
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
            st = self.metrics.calls(grpc_type, service, method)
            st.started += 1
            st.handled(failure.code, 0.0)
        await context.abort(failure.code, failure.message, failure.trailing_metadata())

    def wrap(self, full_method: str, h: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        deser = h.request_deserializer
        if deser is None:
            return h
        type_name = _type_name(deser)
        # The hot methods' requests are parsed in C (codec.RAW_REQUEST_DECODERS), with
        # protobuf's acceptance: what they refuse is MALFORMED_REQUEST here as before.
        deser = RAW_REQUEST_DECODERS.get(full_method, deser)
        ser = _encoded_or(h.response_serializer)
        service, _, method = full_method.lstrip("/").rpartition("/")
        grpc_type = {(False, False): "unary", (True, False): "client_stream",
                     (False, True): "server_stream", (True, True): "bidi_stream"}[
            (bool(h.request_streaming), bool(h.response_streaming))]
        guard = self
        forwarded = self.forwarded
        if not h.request_streaming:
            inner = h.unary_stream if h.response_streaming else h.unary_unary
            if inspect.iscoroutinefunction(inner):
                async def behavior(raw, context):
                    if forwarded:
                        context = ForwardedContext(context)
                    try:
                        request = deser(raw)
                    except Exception:
                        await guard._refuse(context, service, method, grpc_type,
                                            MalformedRequest(type_name))
                    return await inner(request, context)
            elif inspect.isasyncgenfunction(inner):
                async def behavior(raw, context):
                    if forwarded:
                        context = ForwardedContext(context)
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
            return make(behavior, request_deserializer=None, response_serializer=ser)

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
            # A handler that is not `rpc_method`'s let the refusal through: answer it here.
            await context.abort(e.code, e.message, e.trailing_metadata())

        if inspect.iscoroutinefunction(inner):
            async def behavior(raw_messages, context):
                if forwarded:
                    context = ForwardedContext(context)
                try:
                    return await inner(decoded(raw_messages), context)
                except MalformedRequest as e:
                    await unhandled(context, e)
        elif inspect.isasyncgenfunction(inner):
            async def behavior(raw_messages, context):
                if forwarded:
                    context = ForwardedContext(context)
                try:
                    async for item in inner(decoded(raw_messages), context):
                        yield item
                except MalformedRequest as e:
                    await unhandled(context, e)
        else:
            return h
        make = (grpc.stream_stream_rpc_method_handler if h.response_streaming
                else grpc.stream_unary_rpc_method_handler)
        return make(behavior, request_deserializer=None, response_serializer=ser)


def _encoded_or(serializer):
    """The method's response serializer, letting through a response that is already its
    wire bytes (codec.results_bytes: a batch's results written from their columns)."""
    if serializer is None:
        return None

    def serialize(response):
        if type(response) is bytes:
            return response
        return serializer(response)
    return serialize


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
        """Not registered: the generic handler the stubs add first serves every method.
        grpc.aio keeps one request-call task per registered method and waits on all of
        them (asyncio.wait, FIRST_COMPLETED) for every call it accepts: with mms's 70-odd
        methods that wait cost ~50 us of the event loop per unary call, more than the
        handler itself (docs/benchmarks.md, issue 15). With generic handlers only, it
        waits on one task."""
        del service, handlers


def takes_client_ids(service: str, method: str) -> bool:
    """Whether the method's request carries client ids (at its top or one level down),
    so that a retry with the same ids can tell whether its ops applied."""
    for mod in (pos_pb2, admin_pb2, report_pb2, segment_pb2, campaign_pb2):
        for svc in mod.DESCRIPTOR.services_by_name.values():
            if svc.full_name == service and method in svc.methods_by_name:
                t = svc.methods_by_name[method].input_type
                names = {f.name for f in t.fields}
                for f in t.fields:
                    if f.message_type is not None:
                        names |= {g.name for g in f.message_type.fields}
                return bool(names & {"client_id", "client_ids"})
    return False


