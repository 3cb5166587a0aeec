"""SegmentService (proto/mms/v1/segment.proto): segments, rule tags and RFM classes of
core.domain.segments over gRPC.

Permissions: segment.write (marketing, admin) for every write; segment.read for counts,
lists, reports and RFM counts; export for ExportSegment. Scope: a store-scoped role
(store manager) sees only members whose home store is its own (store_id 0 or its own;
another is OTHER_STORE) and writes nothing; chain-wide roles see every member or one
store's (store_id). Every computation runs in a worker thread, never on the event loop.
Segment errors become INVALID_ARGUMENT (SEGMENT_INVALID), NOT_FOUND (SEGMENT_NOT_FOUND),
FAILED_PRECONDITION (SEGMENT_LIMIT, SEGMENT_NEEDS_MEMBERS).
"""

from __future__ import annotations

import asyncio
import json
import logging

import grpc

from core.domain import segments as seg
from server.mms_pb import segment_pb2, segment_pb2_grpc
from server.rpc.admin.base import (
    Call,
    as_status,
    client_id,
    export_chunks,
    export_format,
    share_admin,
)
from server.rpc.admin.members import member_pb
from server.rpc.constants import SEGMENT, SEGMENT_READ_STALE_S
from server.rpc.errors import RpcFailure, invalid, page_limit
from server.rpc.instrumentation import rpc_method

log = logging.getLogger("mms.segments")

_CODES = {"INVALID": grpc.StatusCode.INVALID_ARGUMENT, "NOT_FOUND": grpc.StatusCode.NOT_FOUND,
          "LIMIT": grpc.StatusCode.FAILED_PRECONDITION,
          "NEEDS_MEMBERS": grpc.StatusCode.FAILED_PRECONDITION}
DEFAULT_PAGE = 100
DEFAULT_REPORT_DAYS = 365


def _seg_failure(e: Exception) -> RpcFailure | None:
    if isinstance(e, seg.SegmentError):
        return RpcFailure(_CODES[e.code.value], f"SEGMENT_{e.code.value}", str(e))
    return None


def _json(text: str, field: str):
    try:
        return json.loads(text)
    except ValueError:
        raise invalid("SEGMENT_INVALID", f"{field} is not JSON", field=field) from None


def _outcome(r) -> segment_pb2.SegmentOutcome:
    return segment_pb2.SegmentOutcome(replayed=bool(r.replayed), seq=int(r.seq))


def _info(rec: dict, outcome=None) -> segment_pb2.SegmentInfo:
    return segment_pb2.SegmentInfo(name=rec["name"], definition_json=json.dumps(rec["definition"],
                                                                              ensure_ascii=False),
                                   created_s=int(rec["created_s"]), updated_s=int(rec["updated_s"]),
                                   outcome=outcome)


def _tag_info(rec: dict, outcome=None) -> segment_pb2.RuleTagInfo:
    return segment_pb2.RuleTagInfo(name=rec["name"], rule_json=json.dumps(rec["rule"], ensure_ascii=False),
                                   description=rec.get("description", ""),
                                   evaluated_s=int(rec.get("evaluated_s", 0)),
                                   members=int(rec.get("members", 0)), outcome=outcome)


def _class_rows(rows: list[dict]) -> list[segment_pb2.SegmentClassRow]:
    return [segment_pb2.SegmentClassRow(rfm_class=r["class"], name=r["name"], members=r["members"],
                                        spend_fen=r.get("spend_fen", 0), visits=r.get("visits", 0),
                                        share_bp=r.get("share_bp", 0)) for r in rows]


def _page(svc, s: seg.Segments, req, store: int | None):
    limit = page_limit(req.limit, DEFAULT_PAGE, seg.SEGMENT_PAGE_MAX)   # checked first
    return s.page(svc._segment(req), offset=int(req.offset), limit=limit, store_id=store,
                  stale_s=SEGMENT_READ_STALE_S)


def _write_rpc(name: str, method: str, args, reply):
    """A SegmentService write: a client id, then segment.write; Segments.<method>(
    *positional, client_id, operator_id=the caller, with_result=True, **keywords) in a
    worker thread, with (positional, keywords) = args(request); reply(value, outcome)."""

    async def handler(self, request, context):
        async def body(call, req):
            cid = client_id(req)
            self._write(call)
            positional, keywords = args(req)
            value, res = await call.run(getattr(self.segments(), method), *positional, cid,
                                        operator_id=call.operator_id, with_result=True, **keywords)
            return reply(value, _outcome(res))
        return await self._call(context, request, body)

    handler.__name__ = handler.__qualname__ = name
    return rpc_method(SEGMENT, name, "unary")(handler)


def _read_rpc(name: str, store_of, read, reply):
    """A SegmentService read in the caller's scope: the store is store_of(request) (None:
    the caller's own scope, as for store 0); read(service, segments, request, store) in a
    worker thread; reply(its value)."""

    async def handler(self, request, context):
        async def body(call, req):
            store = self._read_scope(call, store_of(req) if store_of is not None else 0)
            return reply(await call.run(read, self, self.segments(), req, store))
        return await self._call(context, request, body)

    handler.__name__ = handler.__qualname__ = name
    return rpc_method(SEGMENT, name, "unary")(handler)


class SegmentService(segment_pb2_grpc.SegmentServiceServicer):
    def __init__(self, admin) -> None:
        share_admin(self, admin)
        self._segments: seg.Segments | None = None
        self.schedule_runs = 0

    # --- the rule-tag re-evaluation (the server's scheduler, server/rpc/scheduler.py,
    # runs it on the leader; this is the same run on demand) ------------------------------

    async def run_schedule_once(self) -> list[dict]:
        """One scheduled run: every rule tag, each under the id of its inputs
        (Segments.evaluation_id), so a run on unchanged inputs applies nothing. A failure
        is logged and the next run tries again. A node that does not lead (a standby)
        skips it: its writes are the leader's."""
        if self.role is not None and not self.role.may_acknowledge():
            self.schedule_runs += 1
            return []
        try:
            out = await asyncio.to_thread(self.segments().evaluate_all)
        except Exception:
            log.exception("scheduled rule-tag evaluation failed")
            out = []
        self.schedule_runs += 1
        return out

    def segments(self) -> seg.Segments:
        if self._segments is None:
            self._segments = seg.segments_of(self.members if self.members is not None else self.engine)
        return self._segments

    async def _call(self, context, request, body):
        call = Call(self, context)
        with as_status(_seg_failure):
            return await body(call, request)

    # --- scope --------------------------------------------------------------------------

    @staticmethod
    def _read_scope(call: Call, store_id: int, permission: str = "segment.read") -> int | None:
        """The home store the caller's read is limited to (None: all members)."""
        own = call.act_store()
        store = int(store_id) or own
        call.authorize(permission, store)
        return store or None

    @staticmethod
    def _write(call: Call) -> None:
        call.authorize("segment.write", None)

    def _segment(self, q) -> str | dict:
        if q.name and q.definition_json:
            raise invalid("SEGMENT_INVALID", "name or definition_json, not both", field="name")
        if q.name:
            return q.name
        if not q.definition_json:
            raise invalid("SEGMENT_INVALID", "a segment's name or a definition_json is required",
                          field="name")
        return _json(q.definition_json, "definition_json")

    # --- segments -----------------------------------------------------------------------

    DefineSegment = _write_rpc(
        "DefineSegment", "define",
        lambda req: ((req.name, _json(req.definition_json, "definition_json")), {}),
        lambda rec, outcome: _info(rec, outcome))

    ListSegments = _read_rpc(
        "ListSegments", None, lambda svc, s, req, store: s.list(),
        lambda recs: segment_pb2.ListSegmentsResponse(segments=[_info(r) for r in recs]))

    DeleteSegment = _write_rpc("DeleteSegment", "delete", lambda req: ((req.name,), {}),
                               lambda _, outcome: outcome)

    CountSegment = _read_rpc(
        "CountSegment", lambda req: req.store_id,
        lambda svc, s, req, store: (seg.count(s, svc._segment(req), store_id=store,
                                              stale_s=SEGMENT_READ_STALE_S),
                                    s.behaviour_seq(SEGMENT_READ_STALE_S)),
        lambda r: segment_pb2.CountSegmentResponse(members=r[0], behaviour_seq=r[1]))

    ListSegmentMembers = _read_rpc(
        "ListSegmentMembers", lambda req: req.store_id,
        lambda svc, s, req, store: _page(svc, s, req, store),
        lambda r: segment_pb2.SegmentMembersResponse(total=r[0], members=[member_pb(m) for m in r[1]]))

    @rpc_method(SEGMENT, "ExportSegment", "server_stream")
    async def ExportSegment(self, request, context):
        call = Call(self, context)
        with as_status(_seg_failure):
            fmt = export_format(request)
            store = self._read_scope(call, request.query.store_id, "export")
            segment = self._segment(request.query)
            segs = self.segments()
            async for r in export_chunks(
                    call, fmt, "mms-segment-",
                    lambda path: segs.export(segment, path, store_id=store,
                                             stale_s=SEGMENT_READ_STALE_S),
                    segment_pb2.ExportSegmentResponse):
                yield r

    SegmentReport = _read_rpc(
        "SegmentReport", lambda req: req.query.store_id,
        lambda svc, s, req, store: s.report(svc._segment(req.query),
                                            days=int(req.days) or DEFAULT_REPORT_DAYS,
                                            store_id=store, stale_s=SEGMENT_READ_STALE_S),
        lambda r: segment_pb2.SegmentReportResponse(
            members=r["members"], spend_fen=r["spend_fen"], visits=r["visits"],
            share_bp=r["share_bp"], all_spend_fen=r["all_spend_fen"], days=r["days"],
            as_of_date=r["as_of_day"], behaviour_seq=r["seq"], classes=_class_rows(r["classes"])))

    # --- rule tags ----------------------------------------------------------------------

    DefineRuleTag = _write_rpc(
        "DefineRuleTag", "define_rule_tag",
        lambda req: ((req.name, _json(req.rule_json, "rule_json")), {"description": req.description}),
        lambda rec, outcome: _tag_info(rec, outcome))

    ListRuleTags = _read_rpc(
        "ListRuleTags", None, lambda svc, s, req, store: s.rule_tags(),
        lambda recs: segment_pb2.ListRuleTagsResponse(tags=[_tag_info(r) for r in recs]))

    DeleteRuleTag = _write_rpc("DeleteRuleTag", "delete_rule_tag", lambda req: ((req.name,), {}),
                               lambda _, outcome: outcome)

    @rpc_method(SEGMENT, "EvaluateRuleTags", "unary")
    async def EvaluateRuleTags(self, request, context):
        async def body(call, req):
            cid = client_id(req)
            self._write(call)
            s = self.segments()

            def run():
                names = [req.name] if req.name else [r["name"] for r in s.rule_tags()]
                return [s.evaluate_rule_tag(n, cid if req.name else seg.derived_id(cid, n),
                                            operator_id=call.operator_id)
                        for n in names[:seg.RULE_TAGS_MAX]]
            out = await call.run(run)
            return segment_pb2.EvaluateRuleTagsResponse(evaluations=[
                segment_pb2.RuleTagEvaluation(name=r["tag"], members=r["members"], added=r["added"],
                                              removed=r["removed"]) for r in out])
        return await self._call(context, request, body)

    # --- RFM ----------------------------------------------------------------------------

    SetRfmConfig = _write_rpc(
        "SetRfmConfig", "set_rfm_config",
        lambda req: ((_json(req.config_json, "config_json"),), {}),
        lambda cfg, outcome: segment_pb2.RfmConfigResponse(
            config_json=json.dumps(cfg, sort_keys=True), outcome=outcome))

    GetRfmConfig = _read_rpc(
        "GetRfmConfig", None, lambda svc, s, req, store: s.rfm_config(),
        lambda cfg: segment_pb2.RfmConfigResponse(config_json=json.dumps(cfg, sort_keys=True)))

    RfmClassCounts = _read_rpc(
        "RfmClassCounts", lambda req: req.store_id,
        lambda svc, s, req, store: s.rfm_counts(store_id=store, stale_s=SEGMENT_READ_STALE_S),
        lambda r: segment_pb2.RfmClassCountsResponse(classes=_class_rows(r["classes"]),
                                                     frequency_min=r["frequency_min"],
                                                     monetary_min_fen=r["monetary_min_fen"]))
