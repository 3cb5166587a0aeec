"""AdminService handlers for member notices (core.domain.notify): PullNotices and AckNotices,
for the sender that delivers them (SMS, e-mail, app). Permission notify.send (core.domain.rbac:
the admin role, which runs the chain's integrations); chain-wide."""

from __future__ import annotations

import json

from core.domain import notify
from server.mms_pb import admin_pb2
from server.rpc.admin.base import Call, _outcome, client_id, handler
from server.rpc.errors import invalid, seq_cursor

_FIELDS = {f.name for f in admin_pb2.Notice.DESCRIPTOR.fields} - {"detail_json"}


def notice_pb(n: dict) -> admin_pb2.Notice:
    known = {k: v for k, v in n.items() if k in _FIELDS}
    rest = {k: v for k, v in n.items() if k not in _FIELDS}
    return admin_pb2.Notice(**known, detail_json=json.dumps(rest, sort_keys=True) if rest else "")


@handler("PullNotices")
async def pull_notices(call: Call, req):
    call.authorize("notify.send", None)
    limit = int(req.limit) if req.HasField("limit") else 1_000
    if not 1 <= limit <= notify.PULL_MAX:
        raise invalid("LIMIT_INVALID", f"limit must be 1..{notify.PULL_MAX}")
    after = seq_cursor(req.after_seq, "after_seq") if req.HasField("after_seq") else None
    notices, upto = await call.run(notify.pull, call.engine, after, limit)
    return admin_pb2.PullNoticesResponse(notices=[notice_pb(n) for n in notices], next_seq=upto)


@handler("AckNotices")
async def ack_notices(call: Call, req):
    cid = client_id(req)
    p = call.authorize("notify.send", None)
    r = await call.cold(lambda: notify.ack(call.engine, int(req.upto_seq), cid,
                                           operator_id=p.operator_id))
    v = r.value or {}
    return admin_pb2.AckNoticesResponse(cursor=int(v.get("cursor", 0)),
                                        dropped=int(v.get("dropped", 0)), outcome=_outcome(r))
