"""ReportService (proto/mms/v1/report.proto): the reports of core.domain.reports over gRPC.

Permission report.read. Scope: a store-scoped role (store manager) sees its own store
(store_id 0 or its own; another store is OTHER_STORE); chain-wide roles see every store,
one store (store_id) or one region's stores (region_id). The sums run in a worker
thread, never on the event loop. Bad input is INVALID_ARGUMENT with the ReportError's
reason (DATE_INVALID, WINDOW_INVALID, GROUP_INVALID, TOP_INVALID, TOO_MANY_ROWS).
"""

from __future__ import annotations

import grpc

from core.domain import reports
from core.domain.chain import ChainError
from server.mms_pb import report_pb2, report_pb2_grpc
from server.rpc.admin.base import Call, _failure
from server.rpc.constants import REPORT
from server.rpc.errors import RpcFailure, invalid
from server.rpc.instrumentation import rpc_method

DEFAULT_TOP = 10


def _scope(call: Call, req) -> tuple[int, set[int] | None]:
    """(the store the report names, 0 for the whole scope; the stores it may read or
    None for all), authorized for the caller."""
    own = call.act_store()
    store = int(req.store_id) or own
    call.authorize("report.read", store)
    if store:
        return store, {store}
    if req.region_id:
        try:
            return 0, set(call.chain.stores_under(int(req.region_id)))
        except ChainError as e:
            raise invalid("REGION_INVALID", str(e)) from None
    return 0, None


def _region_of(call: Call):
    chain = call.svc.chain
    if chain is None:
        return None

    def region_of(store: int) -> int:
        try:
            return chain.region_of(store)
        except ChainError:
            return 0
    return region_of


def _table(rows: list[dict], columns: tuple[str, ...], store: int) -> report_pb2.ReportTable:
    return report_pb2.ReportTable(
        columns=list(columns), store_id=store,
        rows=[report_pb2.ReportRow(values=[int(r[c]) for c in columns]) for r in rows])


async def _run(call: Call, fn, *args, **kw):
    try:
        return await call.run(fn, *args, **kw)
    except reports.ReportError as e:
        raise invalid(e.reason, str(e)) from None


class ReportService(report_pb2_grpc.ReportServiceServicer):
    def __init__(self, admin) -> None:
        # The AdminService's collaborators: Call resolves sessions and scope with them.
        self.bridge, self.engine, self.registry = admin.bridge, admin.engine, admin.registry
        self.metrics, self.chain, self.members = admin.metrics, admin.chain, admin.members

    async def _call(self, context, request, body):
        call = Call(self, context)
        try:
            return await body(call, request)
        except Exception as e:
            f = _failure(e)
            if f is None:
                raise
            raise f from e

    @rpc_method(REPORT, "Sales", "unary")
    async def Sales(self, request, context):
        async def body(call, req):
            store, stores = _scope(call, req)
            by = tuple(req.by) or ("store",)
            rows = await _run(call, reports.sales_report, call.engine, req.from_date, req.to_date,
                              by, stores=stores, region_of=_region_of(call))
            return _table(rows, (*by, *reports.SALES_FIELDS), store)
        return await self._call(context, request, body)

    @rpc_method(REPORT, "TopSkus", "unary")
    async def TopSkus(self, request, context):
        async def body(call, req):
            store, stores = _scope(call, req)
            rows = await _run(call, reports.top_skus, call.engine, req.from_date, req.to_date,
                              int(req.top) or DEFAULT_TOP, stores=stores)
            return _table(rows, reports.SKU_FIELDS, store)
        return await self._call(context, request, body)

    @rpc_method(REPORT, "Liability", "unary")
    async def Liability(self, request, context):
        async def body(call, req):
            store, stores = _scope(call, req)
            rows = await _run(call, reports.liability_report, call.engine, req.from_date,
                              req.to_date, by_store=req.by_store or stores is not None,
                              stores=stores)
            return _table(rows, reports.LIABILITY_FIELDS, store)
        return await self._call(context, request, body)

    @rpc_method(REPORT, "Reconcile", "unary")
    async def Reconcile(self, request, context):
        async def body(call, req):
            # The card table is the whole chain's: a chain-wide role reconciles it.
            if call.act_store() is not None:
                raise RpcFailure(grpc.StatusCode.PERMISSION_DENIED, "CHAIN_ROLE_REQUIRED",
                                 "reconciliation covers the whole chain: an HQ role runs it")
            call.authorize("report.read", None)
            r = await _run(call, reports.reconcile, call.engine)
            return report_pb2.ReconcileResponse(**r)
        return await self._call(context, request, body)

    @rpc_method(REPORT, "Settlement", "unary")
    async def Settlement(self, request, context):
        async def body(call, req):
            store, stores = _scope(call, req)
            rows = await _run(call, reports.settlement_report, call.engine, req.from_date,
                              req.to_date, stores=stores)
            return _table(rows, reports.SETTLEMENT_FIELDS, store)
        return await self._call(context, request, body)

    @rpc_method(REPORT, "Coupons", "unary")
    async def Coupons(self, request, context):
        async def body(call, req):
            store, stores = _scope(call, req)
            rows = await _run(call, reports.coupon_report, call.engine, req.from_date,
                              req.to_date, stores=stores)
            return _table(rows, reports.COUPON_FIELDS, store)
        return await self._call(context, request, body)

    @rpc_method(REPORT, "Commission", "unary")
    async def Commission(self, request, context):
        async def body(call, req):
            store, stores = _scope(call, req)
            rows = await _run(call, reports.commission_from_rollups, call.engine,
                              req.from_date, req.to_date, stores=stores)
            return _table(rows, reports.ROLLUP_COMMISSION_FIELDS, store)
        return await self._call(context, request, body)

    @rpc_method(REPORT, "Points", "unary")
    async def Points(self, request, context):
        async def body(call, req):
            store, stores = _scope(call, req)
            rows = await _run(call, reports.points_report, call.engine, stores=stores)
            return _table(rows, reports.POINTS_FIELDS, store)
        return await self._call(context, request, body)

    @rpc_method(REPORT, "PointsExpiry", "unary")
    async def PointsExpiry(self, request, context):
        async def body(call, req):
            store, stores = _scope(call, req)
            rows = await _run(call, reports.expiry_forecast, call.engine, stores=stores)
            return _table(rows, reports.EXPIRY_FIELDS, store)
        return await self._call(context, request, body)

    @rpc_method(REPORT, "CardStats", "unary")
    async def CardStats(self, request, context):
        async def body(call, req):
            store, stores = _scope(call, req)
            rows = await _run(call, reports.card_stats_report, call.engine, req.from_date,
                              req.to_date, by_store=req.by_store or stores is not None,
                              stores=stores)
            return _table(rows, reports.CARD_STATS_FIELDS, store)
        return await self._call(context, request, body)

    @rpc_method(REPORT, "MemberActivity", "unary")
    async def MemberActivity(self, request, context):
        async def body(call, req):
            store, stores = _scope(call, req)
            rows = await _run(call, reports.member_activity_report, call.engine, req.from_date,
                              req.to_date, by_store=req.by_store or stores is not None,
                              stores=stores)
            return _table(rows, reports.MEMBER_ACTIVITY_FIELDS, store)
        return await self._call(context, request, body)

    @rpc_method(REPORT, "VisitFrequency", "unary")
    async def VisitFrequency(self, request, context):
        async def body(call, req):
            store, stores = _scope(call, req)
            rows = await _run(call, reports.visit_frequency_report, call.engine, req.from_date,
                              req.to_date, by_store=req.by_store or stores is not None,
                              stores=stores)
            return _table(rows, reports.VISIT_FREQUENCY_FIELDS, store)
        return await self._call(context, request, body)

    @rpc_method(REPORT, "RechargeSettlement", "unary")
    async def RechargeSettlement(self, request, context):
        async def body(call, req):
            store, stores = _scope(call, req)
            rows = await _run(call, reports.recharge_settlement_report, call.engine,
                              req.from_date, req.to_date, stores=stores)
            return _table(rows, reports.RECHARGE_SETTLEMENT_FIELDS, store)
        return await self._call(context, request, body)
