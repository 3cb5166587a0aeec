"""AdminService handlers of the chain's rules and the points runs that apply them."""

from __future__ import annotations

import dataclasses
import json
import logging

from core import RulesConfig
from core.domain.points import expire_points, remind_expiring_points
from core.rules import RULES_JSON_CHARS_MAX, loads_bounded
from server.mms_pb import admin_pb2
from server.rpc.admin.base import Call, _outcome, chain_run, client_id, handler
from server.rpc.errors import invalid

log = logging.getLogger("mms.admin")


# --- points and rules -----------------------------------------------------------------------

# The expiry and reminder runs apply the chain's points policy to every card: the
# people who set that policy (rules.write: admin, marketing) run them, chain-wide.

@handler("ExpirePoints")
async def run_expire_points(call: Call, req):
    r = await chain_run(call, req, expire_points)
    v = r.value or {}
    return admin_pb2.ExpirePointsResponse(expired_points=int(v.get("expired_points", 0)),
                                          cards=int(v.get("cards", 0)), outcome=_outcome(r))


@handler("RemindExpiringPoints")
async def run_remind_expiring_points(call: Call, req):
    r = await chain_run(call, req, remind_expiring_points, min_points=req.min_points or 1)
    return admin_pb2.RemindExpiringPointsResponse(notices=int((r.value or {}).get("notices", 0)),
                                                  outcome=_outcome(r))


@handler("GetRules")
async def get_rules(call: Call, req):
    # Every till and desk works by the rules, so any operator may read them.
    call.principal()
    rules = call.engine.rules
    return admin_pb2.GetRulesResponse(rules_json=json.dumps(rules.to_dict(), default=list),
                                      version=int(rules.version))


@handler("SetRules")
async def set_rules(call: Call, req):
    cid = client_id(req)
    p = call.authorize("rules.write", None)
    try:
        doc = loads_bounded(req.rules_json, "rules_json", chars_max=RULES_JSON_CHARS_MAX)
    except ValueError as e:
        raise invalid("RULES_INVALID", str(e), field="rules_json") from None
    if not isinstance(doc, dict):
        raise invalid("RULES_INVALID", "rules_json must be an object", field="rules_json")
    doc.pop("version", None)
    rules = RulesConfig.from_dict({**dataclasses.asdict(call.engine.rules), **doc,
                                   "version": call.engine.rules.version})
    r = await call.cold(lambda: call.engine.set_rules(rules, cid, operator_id=p.operator_id))
    return admin_pb2.SetRulesResponse(version=int((r.value or {}).get("version", 0)),
                                      outcome=_outcome(r))
