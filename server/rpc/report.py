"""ReportService (proto/mms/v1/report.proto): the reports of core.domain.reports over gRPC.

Permission report.read. Scope (core.domain.rbac.report_scope, the one place it is decided):
a store-scoped role (store manager) sees its own store (store_id 0 or its own; another
store or any region is OTHER_STORE); a region manager sees exactly the stores of their
region, all (store_id 0) or one of them (another region, or a store outside theirs, is
OTHER_REGION); chain-wide roles see every store, one store (store_id) or one region's
stores (region_id). The sums run in a worker
thread, never on the event loop. Bad input is INVALID_ARGUMENT with the ReportError's
reason (DATE_INVALID, WINDOW_INVALID, GROUP_INVALID, TOP_INVALID, TOO_MANY_ROWS).
"""

from __future__ import annotations

import grpc

from core.domain import reports
from core.domain.chain import ChainError
from core.domain.rbac import is_chain_wide, report_scope
from server.mms_pb import report_pb2, report_pb2_grpc
from server.rpc.admin.base import Call, as_status, share_admin
from server.rpc.constants import REPORT
from server.rpc.errors import RpcFailure, invalid
from server.rpc.instrumentation import rpc_method

DEFAULT_TOP = 10


def _scope(call: Call, req) -> tuple[int, frozenset[int] | None]:
    """(the store the report names, 0 for the whole scope; the stores it may read or
    None for all), decided by rbac.report_scope for the caller."""
    def stores_under(region: int) -> frozenset[int]:
        try:
            return call.chain.stores_under(region)
        except ChainError as e:
            raise invalid("REGION_INVALID", str(e)) from None

    return report_scope(call.principal(), int(req.store_id), int(req.region_id), stores_under)


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


# What a table report takes from its request besides the caller's scope: positional
# arguments and keywords for the core function.
def _now(req, stores):
    return (), {}


def _window(req, stores):
    return (req.from_date, req.to_date), {}


def _window_by_store(req, stores):
    # A store-scoped caller always gets rows per store (their own).
    return (req.from_date, req.to_date), {"by_store": req.by_store or stores is not None}


def _window_top(req, stores):
    return (req.from_date, req.to_date, int(req.top) or DEFAULT_TOP), {}


def _table_rpc(name: str, fn, fields: tuple[str, ...], args):
    """A ReportService RPC that answers a table: fn(engine, *positional, stores=the
    caller's scope, **keywords) in a worker thread, its rows as a ReportTable."""

    async def method(self, request, context):
        async def body(call, req):
            store, stores = _scope(call, req)
            positional, keywords = args(req, stores)
            rows = await _run(call, fn, call.engine, *positional, stores=stores, **keywords)
            return _table(rows, fields, store)
        return await self._call(context, request, body)

    method.__name__ = method.__qualname__ = name
    return rpc_method(REPORT, name, "unary")(method)


class ReportService(report_pb2_grpc.ReportServiceServicer):
    def __init__(self, admin) -> None:
        share_admin(self, admin)

    async def _call(self, context, request, body):
        call = Call(self, context)
        with as_status():
            return await body(call, request)

    @rpc_method(REPORT, "Sales", "unary")
    async def Sales(self, request, context):
        async def body(call, req):
            store, stores = _scope(call, req)
            by = tuple(req.by) or ("store",)
            rows = await _run(call, reports.sales_report, call.engine, req.from_date, req.to_date,
                              by, stores=stores, region_of=_region_of(call))
            return _table(rows, (*by, *reports.SALES_FIELDS), store)
        return await self._call(context, request, body)

    TopSkus = _table_rpc("TopSkus", reports.top_skus, reports.SKU_FIELDS, _window_top)

    Liability = _table_rpc("Liability", reports.liability_report,
                             reports.LIABILITY_FIELDS, _window_by_store)

    @rpc_method(REPORT, "Reconcile", "unary")
    async def Reconcile(self, request, context):
        async def body(call, req):
            # The card table is the whole chain's: a chain-wide role reconciles it.
            if not is_chain_wide(call.principal().role):
                raise RpcFailure(grpc.StatusCode.PERMISSION_DENIED, "CHAIN_ROLE_REQUIRED",
                                 "reconciliation covers the whole chain: an HQ role runs it")
            call.authorize("report.read", None)
            r = await _run(call, reports.reconcile, call.engine)
            return report_pb2.ReconcileResponse(**r)
        return await self._call(context, request, body)

    Settlement = _table_rpc("Settlement", reports.settlement_report,
                              reports.SETTLEMENT_FIELDS, _window)

    Coupons = _table_rpc("Coupons", reports.coupon_report, reports.COUPON_FIELDS, _window)

    Commission = _table_rpc("Commission", reports.commission_from_rollups,
                              reports.ROLLUP_COMMISSION_FIELDS, _window)

    Points = _table_rpc("Points", reports.points_report, reports.POINTS_FIELDS, _now)

    PointsExpiry = _table_rpc("PointsExpiry", reports.expiry_forecast, reports.EXPIRY_FIELDS, _now)

    CardStats = _table_rpc("CardStats", reports.card_stats_report,
                             reports.CARD_STATS_FIELDS, _window_by_store)

    MemberActivity = _table_rpc("MemberActivity", reports.member_activity_report,
                                  reports.MEMBER_ACTIVITY_FIELDS, _window_by_store)

    VisitFrequency = _table_rpc("VisitFrequency", reports.visit_frequency_report,
                                  reports.VISIT_FREQUENCY_FIELDS, _window_by_store)

    RechargeSettlement = _table_rpc("RechargeSettlement", reports.recharge_settlement_report,
                                      reports.RECHARGE_SETTLEMENT_FIELDS, _window)
