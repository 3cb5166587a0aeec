"""The wrapper of every RPC handler: metrics in the standard grpc_server_* shapes and
RpcFailure -> status with ErrorInfo; an unexpected error is INTERNAL, logged once."""

from __future__ import annotations

import asyncio
import functools
import logging
import time

import grpc

from server.rpc.errors import RpcFailure, store_closed
from server.rpc.guard import takes_client_ids
from server.rpc.role import is_mutating

log = logging.getLogger("mms.server")

# --- instrumentation ------------------------------------------------------------------

def unexpected(service: str, method: str, e: Exception) -> RpcFailure:
    """The status of a handler's unexpected error: the store's closing as such, anything
    else INTERNAL with reason INTERNAL (never grpc's bare UNKNOWN), logged once here."""
    closed = store_closed(e)
    if closed is not None:
        return closed
    log.error("%s/%s failed", service, method, exc_info=e)
    # Only a call with client ids can learn by a retry whether it applied.
    message = ("internal error; retry with the same client ids to learn whether the ops "
               "applied" if takes_client_ids(service, method)
               else "internal error; the call may be retried")
    return RpcFailure(grpc.StatusCode.INTERNAL, "INTERNAL", message)


def rpc_method(service: str, method: str, grpc_type: str):
    """Wrap a handler: auth context, metrics in the standard shapes, and RpcFailure ->
    status with ErrorInfo details."""

    def deco(fn):
        streaming_out = grpc_type in ("server_stream", "bidi_stream")

        def finish(st, context, start: float, exc: BaseException | None) -> None:
            if exc is None:
                st.handled_ok(time.perf_counter() - start)
                return
            if isinstance(exc, RpcFailure):
                code = exc.code
            elif isinstance(exc, asyncio.CancelledError):
                code = grpc.StatusCode.CANCELLED
                rem = context.time_remaining()
                if rem is not None and rem <= 0:
                    code = grpc.StatusCode.DEADLINE_EXCEEDED
            else:
                code = context.code() or grpc.StatusCode.UNKNOWN
            st.handled(code, time.perf_counter() - start)

        async def abort(st, context, start: float, e: Exception) -> None:
            """End the call with e's status (an error that is no RpcFailure: INTERNAL)."""
            failure = e if isinstance(e, RpcFailure) else unexpected(service, method, e)
            finish(st, context, start, failure)
            await context.abort(failure.code, failure.message, failure.trailing_metadata())

        # A write goes to the leader only (server/rpc/role.py): checked before the handler
        # runs and again before its answer leaves, so a node whose lease may have run out
        # meanwhile answers NOT_LEADER (the client retries with the same ids) and never OK.
        # A service without a role (a single server) is primary for good: nothing to ask.
        writes = is_mutating(service, method)

        def leading(self) -> None:
            role = getattr(self, "role", None)
            if writes and role is not None:
                role.check_writable()

        if streaming_out:
            @functools.wraps(fn)
            async def wrapper(self, request, context):
                st = self.metrics.calls(grpc_type, service, method)
                st.started += 1
                start = time.perf_counter()
                try:
                    leading(self)
                    async for item in fn(self, request, context):
                        leading(self)
                        yield item
                except (asyncio.CancelledError, grpc.aio.AbortError) as e:
                    finish(st, context, start, e)
                    raise
                except Exception as e:
                    await abort(st, context, start, e)
                else:
                    finish(st, context, start, None)
        else:
            @functools.wraps(fn)
            async def wrapper(self, request, context):
                st = self.metrics.calls(grpc_type, service, method)
                st.started += 1
                start = time.perf_counter()
                role = getattr(self, "role", None) if writes else None
                try:
                    if role is not None:
                        role.check_writable()
                    out = await fn(self, request, context)
                    if role is not None:
                        role.check_writable()
                except (asyncio.CancelledError, grpc.aio.AbortError) as e:
                    finish(st, context, start, e)
                    raise
                except Exception as e:
                    await abort(st, context, start, e)
                st.handled_ok(time.perf_counter() - start)
                return out
        return wrapper
    return deco
