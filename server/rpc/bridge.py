"""The bridge from the event loop to the engine: bounded in-flight ops, engine back-
pressure as RESOURCE_EXHAUSTED, engine futures awaited without blocking the loop, and
single ops (unary Swipe, Recharge) coalesced into fuller submissions."""

from __future__ import annotations

import asyncio
import logging

import grpc
import numpy as np

from core import EngineClosed, Overloaded
from core.records import ops_from_rows
from server.rpc.codec import SingleResults
from server.rpc.constants import INFLIGHT_OPS_MAX, SINGLE_SUBMISSIONS_MAX
from server.rpc.errors import RpcFailure, engine_closed, invalid

log = logging.getLogger("mms.server")

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

    def __init__(self, engine, inflight_ops_max: int = INFLIGHT_OPS_MAX,
                 batch_ops_max: int | None = None) -> None:
        self.engine = engine
        # The one bound of a submission is the engine's own (its config may lower it).
        self.batch_ops_max = engine.config.batch_ops_max if batch_ops_max is None else batch_ops_max
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
            raise engine_closed(e) from e

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
        if len(self._rows) >= self.batch_ops_max:
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
            cf = self._submit(ops_from_rows(rows))
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
            raise engine_closed(e) from e
        except ValueError as e:
            raise invalid("INVALID_ARGUMENT", str(e)) from e
        return await asyncio.shield(asyncio.wrap_future(cf))


