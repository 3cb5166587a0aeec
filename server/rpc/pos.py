"""PosService: the tills' swipes, recharges, refunds, count-card uses and card reads."""

from __future__ import annotations

import asyncio
import logging

import grpc
import numpy as np

from core.domain.rbac import PermissionDenied
from core.domain.rbac import authorize as rbac_authorize
from core.records import (
    SERVICE_COUNT,
    SINGLE_OP_FIELDS,
    OpFlag,
    OpType,
    Result,
)
from server.mms_pb import (
    pos_pb2,
    pos_pb2_grpc,
)
from server.rpc.auth import Registry, Terminal, bearer_token
from server.rpc.bridge import Bridge
from server.rpc.codec import (
    basket,
    card_pb,
    check_store,
    decode_ops,
    encode_one,
    full_op,
    message_bytes,
    results_bytes,
    single_op,
)
from server.rpc.constants import BULK_REJECTED_ROWS_MAX, POS, STREAM_PIPELINE_BATCHES_MAX
from server.rpc.errors import RpcFailure, invalid
from server.rpc.instrumentation import rpc_method
from server.rpc.metrics import Metrics

log = logging.getLogger("mms.server")

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


_RESULT_OK = int(Result.OK)


class PosService(_Base, pos_pb2_grpc.PosServiceServicer):
    def __init__(self, bridge: Bridge, registry, metrics: Metrics, *, chain=None) -> None:
        """chain (core.domain.chain.Chain), when the server has one, holds the operators whose
        sessions authorize refunds and the chain's refund policy (ChainConfig)."""
        super().__init__(bridge, registry, metrics)
        self.chain = chain

    def _session_operator(self, session: str, operator_id: int, permission: str,
                          term: Terminal) -> int:
        """The operator of an operator_session who holds permission at the terminal's
        store (their session checked, as for refunds); operator_id, when given, must be
        theirs."""
        if self.chain is None:
            raise RpcFailure(grpc.StatusCode.FAILED_PRECONDITION, "CHAIN_DISABLED",
                             "this server has no operators, so no operator_session",
                             {"field": "operator_session"})
        p = self.chain.principal(session)
        if p is None:
            raise RpcFailure(grpc.StatusCode.UNAUTHENTICATED, "SESSION_INVALID",
                             "operator_session is unknown, ended or expired",
                             {"field": "operator_session"})
        try:
            rbac_authorize(p, permission, term.store_id)
        except PermissionDenied as e:
            raise RpcFailure(grpc.StatusCode.PERMISSION_DENIED, e.reason, str(e),
                             {"permission": permission, "operator_id": str(p.operator_id),
                              "store_id": str(term.store_id)}) from None
        if operator_id and operator_id != p.operator_id:
            raise RpcFailure(grpc.StatusCode.PERMISSION_DENIED, "OPERATOR_MISMATCH",
                             f"operator_id {operator_id} is not the operator of "
                             f"operator_session ({p.operator_id})",
                             {"operator_id": str(p.operator_id)})
        return int(p.operator_id)

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

    @rpc_method(POS, "Swipe", "unary")
    async def Swipe(self, request, context):
        term = self.auth(context)
        row = single_op(request, term, OpType.SWIPE, request.category, request.flags)
        if request.items or request.coupon_ids or request.points_offset or request.pin:
            # A swipe with a basket, coupons, an offset or a PIN travels alone with its
            # arrays; plain swipes share submissions (start_one).
            ops = full_op(row, pin=request.pin, points_offset=request.points_offset)
            items, coupons = basket(request, ops)
            res = await self.bridge.start(ops, context, items, coupons)
            if res.codes[0] != Result.OK:
                raise RpcFailure.of_result(res.codes[0],
                                           replayed=str(bool(res.replayed[0])).lower())
            return pos_pb2.SwipeResponse(result=encode_one(res, 0))
        batch, i = await self.bridge.start_one(row, context)
        if batch.codes[i] != _RESULT_OK:
            raise RpcFailure.of_result(batch.codes[i], replayed=str(batch.replayed[i]).lower())
        return batch.reply(i)  # SwipeResponse's bytes (result = 1)

    @rpc_method(POS, "Recharge", "unary")
    async def Recharge(self, request, context):
        term = self.auth(context)
        row = single_op(request, term, OpType.RECHARGE)
        batch, i = await self.bridge.start_one(row, context)
        if batch.codes[i] != _RESULT_OK:
            raise RpcFailure.of_result(batch.codes[i], replayed=str(batch.replayed[i]).lower())
        return batch.reply(i)  # RechargeResponse's bytes (result = 1)

    def _swipe_ops(self, cols, term: Terminal, store_id: int) -> np.ndarray:
        check_store(term, store_id)
        return decode_ops(cols.client_ids, cols.card_nos, cols.amount_fen, op_type=OpType.SWIPE,
                          term=term, batch_ops_max=self.bridge.batch_ops_max, category=cols.category, flags=cols.flags,
                          operator_ids=cols.operator_ids)

    @rpc_method(POS, "SwipeBatch", "unary")
    async def SwipeBatch(self, request, context):
        term = self.auth(context)
        ops = self._swipe_ops(request.swipes, term, request.store_id)
        res = await self.bridge.submit(ops, context)
        # SwipeBatchResponse's bytes (results = 1), written from the columns.
        return message_bytes((1, results_bytes(res)))

    @rpc_method(POS, "SwipeStream", "bidi_stream")
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
                # SwipeStreamResponse's bytes (batch_id = 1, results = 2), from the columns.
                yield message_bytes((1, batch_id), (2, results_bytes(res)))
        finally:
            reader.cancel()

    @rpc_method(POS, "BulkRecharge", "client_stream")
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
        sessions: dict[tuple[str, int], int] = {}  # operator_session -> its operator, checked once
        try:
            async for req in request_iterator:
                operator_id = req.operator_id
                if req.operator_session:
                    key = (req.operator_session, req.operator_id)
                    if key not in sessions:
                        sessions[key] = self._session_operator(
                            req.operator_session, req.operator_id, "recharge", term)
                    operator_id = sessions[key]
                n = len(req.card_nos)
                if len(req.line_numbers) != n:
                    raise invalid("COLUMN_LENGTH", f"chunk {chunk_index}: line_numbers has "
                                  f"{len(req.line_numbers)} values for {n} rows",
                                  column="line_numbers")
                ops = decode_ops(req.client_ids, req.card_nos, req.amount_fen,
                                 op_type=OpType.RECHARGE, term=term, operator_id=operator_id,
                                 batch_ops_max=self.bridge.batch_ops_max)
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

    @rpc_method(POS, "GetCard", "unary")
    async def GetCard(self, request, context):
        self.auth(context)
        card = self.engine.card(int(request.card_no)) if request.card_no else None
        if card is None:
            raise RpcFailure.of_result(Result.CARD_NOT_FOUND, f"card {request.card_no} not found")
        return pos_pb2.GetCardResponse(card=card_pb(card))

    @rpc_method(POS, "Refund", "unary")
    async def Refund(self, request, context):
        term = self.auth(context)
        operator_id = self._refund_operator(request, term)
        row = single_op(request, term, OpType.REFUND, zero_amount=True)
        k = SINGLE_OP_FIELDS.index("operator_id")
        row = (*row[:k], operator_id, *row[k + 1:])
        ops = full_op(row, ref_client_id=request.swipe_client_id)
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

    @rpc_method(POS, "UseCount", "unary")
    async def UseCount(self, request, context):
        term = self.auth(context)
        if request.uses <= 0:
            raise invalid("RESULT_AMOUNT_NOT_POSITIVE", "uses must be positive")
        if request.service == 0 or request.service >= SERVICE_COUNT:
            raise invalid("VALUE_OUT_OF_RANGE", "service must be 1..65535", column="service")
        fake = pos_pb2.SwipeRequest(client_id=request.client_id, card_no=request.card_no,
                                    amount_fen=request.uses, operator_id=request.operator_id,
                                    store_id=request.store_id)
        row = single_op(fake, term, OpType.USE_COUNT, request.service)
        ops = full_op(row, pin=request.pin)
        res = await self.bridge.start(ops, context)
        if res.codes[0] != Result.OK:
            raise RpcFailure.of_result(res.codes[0], replayed=str(bool(res.replayed[0])).lower())
        return pos_pb2.UseCountResponse(result=encode_one(res, 0))


