"""AdminService handlers for reports over the journal: staff commission.

Permission report.read (core.domain.rbac's matrix). A store-scoped role (the store manager)
sees only its own store: store_id 0 means that store, and another store is refused
with OTHER_STORE. Chain-wide roles (finance, admin, marketing, auditor) name any store,
or 0 for the whole chain. The scan (core.domain.reports: it walks the journal) runs in a
worker thread, never on the event loop.
"""

from __future__ import annotations

from core.domain.reports import check_window, commission_report
from server.mms_pb import admin_pb2
from server.rpc.admin.base import Call, handler
from server.rpc.errors import invalid


def report_store(call: Call, permission: str, store_id: int) -> int | None:
    """The store a report covers (None: the whole chain), authorized for the caller:
    0 means the caller's scope, their home store for store roles. A region manager
    names a store of their region (this report covers one store or the chain)."""
    own = call.act_store()
    store = int(store_id) or own
    call.authorize(permission, store)
    return store


@handler("CommissionReport")
async def commission_report_rpc(call: Call, req):
    store = report_store(call, "report.read", req.store_id)
    since, until = int(req.since_s), int(req.until_s)
    try:
        check_window(since, until)
    except ValueError as e:
        raise invalid("WINDOW_INVALID", str(e)) from None
    rows = await call.run(commission_report, call.engine, since, until, store)
    return admin_pb2.CommissionReportResponse(
        rows=[admin_pb2.CommissionRow(**r) for r in rows], store_id=store or 0)
