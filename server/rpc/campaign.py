"""CampaignService (proto/mms/v1/campaign.proto): targeted plans and the built-in
campaigns of core.domain.plans and core.domain.campaigns over gRPC.

Permissions: plan.write (marketing, chain-wide) creates, pauses and runs plans, sets
campaigns and settles them; plan.read reads plans, runs and results, in the plan's
store scope (a plan's store_id, None for a chain-wide plan: a store manager sees only
their own store's plans). SignIn: member.write in the card's scope. Blocking core
calls run in a worker thread. Bad input is INVALID_ARGUMENT with the PlanError's or
CampaignError's reason; a missing plan or run NOT_FOUND; a paused plan
FAILED_PRECONDITION (PLAN_PAUSED).
"""

from __future__ import annotations

import asyncio
import json
import logging

import grpc

from core.domain import campaigns, plans
from core.domain.rbac import store_filter
from core.records import Result
from core.rules import loads_bounded
from server.mms_pb import admin_pb2, campaign_pb2, campaign_pb2_grpc
from server.rpc.admin.base import Call, _check, as_status, client_id, share_admin
from server.rpc.constants import CAMPAIGN, PLAN_JSON_CHARS_MAX
from server.rpc.errors import RpcFailure, invalid
from server.rpc.instrumentation import rpc_method

log = logging.getLogger("mms.campaign")

_PLAN_CODES = {"PLAN_NOT_FOUND": grpc.StatusCode.NOT_FOUND,
               "RUN_NOT_FOUND": grpc.StatusCode.NOT_FOUND,
               "TEMPLATE_NOT_FOUND": grpc.StatusCode.NOT_FOUND,
               "PLAN_PAUSED": grpc.StatusCode.FAILED_PRECONDITION,
               "MEMBERS_REQUIRED": grpc.StatusCode.FAILED_PRECONDITION,
               "RUN_DONE": grpc.StatusCode.FAILED_PRECONDITION,
               "CAMPAIGN_OFF": grpc.StatusCode.FAILED_PRECONDITION,
               "CURSOR_MOVED": grpc.StatusCode.ABORTED,
               "ATTEMPT_SUPERSEDED": grpc.StatusCode.ABORTED}


def _plan_failure(e: Exception) -> RpcFailure | None:
    if isinstance(e, (plans.PlanError, campaigns.CampaignError)):
        return RpcFailure(_PLAN_CODES.get(e.reason, grpc.StatusCode.INVALID_ARGUMENT),
                          e.reason, str(e))
    return None


def _check_plan(r) -> None:
    """Raise the status of a rejected op: a plan or campaign reason with its own code,
    any other as _check does."""
    if r.code != Result.OK and r.reason in _PLAN_CODES:
        raise RpcFailure(_PLAN_CODES[r.reason], r.reason, r.detail)
    _check(r)


def _outcome(r) -> admin_pb2.AdminOutcome:
    return admin_pb2.AdminOutcome(replayed=bool(r.replayed), seq=int(r.seq))


def plan_pb(p: dict) -> campaign_pb2.Plan:
    return campaign_pb2.Plan(plan_id=p["plan_id"], name=p["name"], store_id=p["store_id"],
                             status=p["status"], plan_json=json.dumps(p, ensure_ascii=False))


_RUN_FIELDS = {"run_id": "run_id", "plan_id": "plan_id", "state": "state",
               "audience": "n_audience", "targets": "n_target", "holdout": "n_holdout",
               "cursor": "cursor", "reached": "reached", "coupons": "coupons",
               "face_fen": "face_fen", "points": "points", "notices": "notices",
               "no_budget": "no_budget", "no_card": "no_card", "chunks_done": "chunks_done",
               "started_s": "started_s", "finished_s": "finished_s"}


def run_pb(run: dict) -> campaign_pb2.RunReply:
    return campaign_pb2.RunReply(run=campaign_pb2.Run(
        **{k: run[v] for k, v in _RUN_FIELDS.items()}))


def _json(text: str, what: str) -> dict:
    try:
        doc = loads_bounded(text, what, chars_max=PLAN_JSON_CHARS_MAX)
    except ValueError as e:
        raise invalid("JSON_INVALID", str(e)) from None
    if not isinstance(doc, dict):
        raise invalid("JSON_INVALID", f"{what} is a JSON object")
    return doc


def _read_scope(call: Call, plan: dict | None, what: str, reason: str = "PLAN_NOT_FOUND") -> dict:
    """The plan, if the caller may read it (NOT_FOUND before any data otherwise)."""
    if plan is None:
        call.authorize("plan.read", call.act_store())
        raise RpcFailure(grpc.StatusCode.NOT_FOUND, reason, f"{what} not found")
    call.authorize("plan.read", plan["store_id"] or None)
    return plan


class CampaignService(campaign_pb2_grpc.CampaignServiceServicer):
    def __init__(self, admin) -> None:
        # The AdminService's collaborators: Call resolves sessions and scope with them.
        share_admin(self, admin)
        self._drivers: set[asyncio.Task] = set()

    async def _call(self, context, request, body):
        call = Call(self, context)
        with as_status(_plan_failure):
            call.principal()
            return await body(call, request)

    @rpc_method(CAMPAIGN, "CreatePlan", "unary")
    async def CreatePlan(self, request, context):
        async def body(call, req):
            cid = client_id(req)
            doc = _json(req.plan_json, "plan_json")
            store = doc.get("store_id") if isinstance(doc.get("store_id"), int) else 0
            p = call.authorize("plan.write", store or None)
            plans.validate_plan(doc)   # PlanError here, with its reason
            r = await call.cold(lambda: plans.create_plan(call.engine, doc, cid,
                                                          operator_id=p.operator_id))
            plan = plans.get_plan(call.engine, int((r.value or {}).get("plan_id") or 0))
            return campaign_pb2.PlanReply(plan=plan_pb(plan), outcome=_outcome(r))
        return await self._call(context, request, body)

    @rpc_method(CAMPAIGN, "ListPlans", "unary")
    async def ListPlans(self, request, context):
        async def body(call, req):
            own = store_filter(call.principal())
            store = int(req.store_id) or own
            call.authorize("plan.read", store)
            rows = await call.run(plans.list_plans, call.engine, store)
            return campaign_pb2.ListPlansResponse(plans=[plan_pb(p) for p in rows])
        return await self._call(context, request, body)

    @rpc_method(CAMPAIGN, "GetPlan", "unary")
    async def GetPlan(self, request, context):
        async def body(call, req):
            plan = _read_scope(call, plans.get_plan(call.engine, int(req.plan_id)),
                               f"plan {req.plan_id}")
            return campaign_pb2.PlanReply(plan=plan_pb(plan))
        return await self._call(context, request, body)

    @rpc_method(CAMPAIGN, "PausePlan", "unary")
    async def PausePlan(self, request, context):
        async def body(call, req):
            cid = client_id(req)
            p = call.authorize("plan.write", None)
            status = "paused" if req.paused else "active"
            if plans.get_plan(call.engine, int(req.plan_id)) is None:
                raise RpcFailure(grpc.StatusCode.NOT_FOUND, "PLAN_NOT_FOUND",
                                 f"plan {req.plan_id} not found")
            r = await call.cold(lambda: plans.set_plan_status(
                call.engine, int(req.plan_id), status, cid, operator_id=p.operator_id))
            return campaign_pb2.PlanReply(plan=plan_pb(plans.get_plan(call.engine, int(req.plan_id))),
                                          outcome=_outcome(r))
        return await self._call(context, request, body)

    @rpc_method(CAMPAIGN, "StartRun", "unary")
    async def StartRun(self, request, context):
        async def body(call, req):
            client_id(req)
            p = call.authorize("plan.write", None)
            plan = plans.get_plan(call.engine, int(req.plan_id))
            if plan is None:
                raise RpcFailure(grpc.StatusCode.NOT_FOUND, "PLAN_NOT_FOUND",
                                 f"plan {req.plan_id} not found")
            run_id = req.run_id or plans.scheduled_run_id(plan, call.engine.clock())
            chunk = int(req.chunk) or plans.CHUNK_DEFAULT
            kw = {"members": call.svc.members, "chunk": chunk, "operator_id": p.operator_id}
            if req.wait:
                run = await call.run(plans.run_plan, call.engine, plan["plan_id"], run_id, **kw)
                return run_pb(run)
            run = await call.run(lambda: plans.start_run(call.engine, plan["plan_id"], run_id,
                                                         **kw).result())
            task = asyncio.get_running_loop().create_task(self._drive(call, plan["plan_id"], run_id, kw))
            self._drivers.add(task)
            task.add_done_callback(self._drivers.discard)
            return run_pb(run)
        return await self._call(context, request, body)

    async def _drive(self, call: Call, plan_id: int, run_id: str, kw: dict) -> None:
        """Drive a started run to its end in a worker thread; a failure is logged (the
        run stays resumable by StartRun with its run id)."""
        try:
            await asyncio.to_thread(plans.run_plan, call.engine, plan_id, run_id, **kw)
        except Exception:  # noqa: BLE001 (logged; the run is resumable)
            log.exception("plan run %s stopped", run_id)

    @rpc_method(CAMPAIGN, "GetRun", "unary")
    async def GetRun(self, request, context):
        async def body(call, req):
            run = plans.get_run(call.engine, req.run_id)
            _read_scope(call, plans.get_plan(call.engine, run["plan_id"]) if run else None,
                        f"run {req.run_id!r}", "RUN_NOT_FOUND")
            return run_pb(run)
        return await self._call(context, request, body)

    @rpc_method(CAMPAIGN, "RunResults", "unary")
    async def RunResults(self, request, context):
        async def body(call, req):
            run = plans.get_run(call.engine, req.run_id)
            _read_scope(call, plans.get_plan(call.engine, run["plan_id"]) if run else None,
                        f"run {req.run_id!r}", "RUN_NOT_FOUND")
            res = await call.run(plans.results, call.engine, req.run_id)
            return campaign_pb2.RunResultsReply(**res)
        return await self._call(context, request, body)

    @rpc_method(CAMPAIGN, "SignIn", "unary")
    async def SignIn(self, request, context):
        async def body(call, req):
            cid = client_id(req)
            p = call.authorize("member.write", call.card_scope(int(req.card_no)))
            r = await call.svc.bridge.cold(lambda: campaigns.sign_in(
                call.engine, int(req.card_no), cid, operator_id=p.operator_id,
                store_id=call.act_store() or 0))
            _check_plan(r)
            v = r.value or {}
            return campaign_pb2.SignInReply(points=int(v.get("points", 0)), day=v.get("day", ""),
                                            card_points=int(v.get("card_points", 0)),
                                            outcome=_outcome(r))
        return await self._call(context, request, body)

    @rpc_method(CAMPAIGN, "PutCampaign", "unary")
    async def PutCampaign(self, request, context):
        async def body(call, req):
            cid = client_id(req)
            p = call.authorize("plan.write", None)
            doc = _json(req.config_json, "config_json")
            campaigns.validate_campaign(req.kind, doc)
            r = await call.cold(lambda: campaigns.put_campaign(call.engine, req.kind, doc, cid,
                                                               operator_id=p.operator_id))
            return campaign_pb2.PutCampaignReply(config_json=json.dumps(r.value or {}),
                                                 outcome=_outcome(r))
        return await self._call(context, request, body)

    async def _settle(self, call: Call, req, fn, *args):
        cid = client_id(req)
        p = call.authorize("plan.write", None)
        r = await call.svc.bridge.cold(lambda: fn(call.engine, *args, cid, operator_id=p.operator_id))
        _check_plan(r)
        v = r.value or {}
        return campaign_pb2.SettleReply(
            count=int(v.get("rewarded", v.get("credited", 0))),
            amount=int(v.get("points", v.get("bonus_fen", 0))),
            upto_seq=int(v.get("upto_seq", 0)), more=bool(v.get("more")), outcome=_outcome(r))

    @rpc_method(CAMPAIGN, "SettleReferrals", "unary")
    async def SettleReferrals(self, request, context):
        async def body(call, req):
            return await self._settle(call, req, campaigns.settle_referrals)
        return await self._call(context, request, body)

    @rpc_method(CAMPAIGN, "SettleRechargeCampaign", "unary")
    async def SettleRechargeCampaign(self, request, context):
        async def body(call, req):
            if not req.name:
                raise invalid("NAME_REQUIRED", "name the recharge campaign")
            return await self._settle(call, req, campaigns.settle_recharge_campaign, req.name)
        return await self._call(context, request, body)
