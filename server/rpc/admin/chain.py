"""AdminService handlers of the chain: bootstrap, operator sessions (login with its
bounded hashing and throttles), the tree of nodes, terminal tokens, operators and the
audit log."""

from __future__ import annotations

import hmac
import json
import logging

import grpc

from core.domain.chain import (
    AUDIT_PAGE_MAX,
    LOGIN_FAILED,
    OPERATOR_LOCKED,
    AuthFailed,
    NodeKind,
    audit_count,
    audit_log,
)
from core.records import (
    op_name,
)
from server.mms_pb import admin_pb2
from server.rpc.admin.base import AUDIT_LIMIT_DEFAULT, Call, client_id, handler
from server.rpc.auth import (
    LoginThrottled,
)
from server.rpc.errors import RpcFailure, invalid, page_limit, seq_cursor

log = logging.getLogger("mms.admin")


# --- chain --------------------------------------------------------------------------------

def _operator_pb(op) -> admin_pb2.Operator:
    return admin_pb2.Operator(operator_id=op.operator_id, login=op.login, name=op.name,
                              role=op.role.value, home_store_id=op.home_store_id,
                              disabled=op.disabled, home_region_id=op.home_region_id)


def _node_pb(n) -> admin_pb2.Node:
    return admin_pb2.Node(node_id=n.node_id, kind=int(n.kind), parent_id=n.parent_id,
                          name=n.name, closed_s=n.closed_s, has_token=bool(n.token_sha256))


@handler("Bootstrap", auth="none")
async def bootstrap(call: Call, req):
    expected = call.svc.bootstrap_token
    if not expected or not call.token or not hmac.compare_digest(call.token, expected):
        raise RpcFailure(grpc.StatusCode.UNAUTHENTICATED, "BOOTSTRAP_TOKEN_INVALID",
                         "Bootstrap needs the token in <data>/bootstrap.token")
    cid = client_id(req)
    before = call.chain.bootstrapped()
    op = await call.hash_run(call.chain.bootstrap, cid, chain_name=req.chain_name,
                        admin_login=req.admin_login, admin_password=req.admin_password,
                        admin_name=req.admin_name)
    return admin_pb2.BootstrapResponse(admin=_operator_pb(op),
                                       outcome=admin_pb2.AdminOutcome(replayed=before))


def _throttled(t: LoginThrottled) -> RpcFailure:
    return RpcFailure(grpc.StatusCode.UNAUTHENTICATED, "LOGIN_THROTTLED", str(t),
                      {"retry_after_s": str(t.retry_after_s), "scope": t.scope})


@handler("Login", auth="none")
async def login(call: Call, req):
    gate, peer = call.svc.logins, call.context.peer()
    chain = call.chain
    try:
        gate.check(req.login, peer)
        s = await call.hash_run(chain.login, req.login, req.password)
    except LoginThrottled as t:
        raise _throttled(t) from None
    except AuthFailed as e:
        if e.reason not in (LOGIN_FAILED, OPERATOR_LOCKED):
            raise
        # A locked operator and a throttled name answer alike: LOGIN_THROTTLED. The
        # chain locks a known login at the same count the gate throttles any name.
        t = gate.failed(req.login, peer)
        if t is None and e.reason == OPERATOR_LOCKED:
            t = LoginThrottled("login", max(1, int(e.retry_after_s)))
        if t is None:
            raise
        gate.on_throttle(t.scope)
        raise _throttled(t) from None
    gate.succeeded(req.login)
    op = call.chain.operator(s.operator_id)
    return admin_pb2.LoginResponse(session_token=s.token or "", operator=_operator_pb(op),
                                   expires_s=s.expires_s)


@handler("Logout")
async def logout(call: Call, req):
    call.principal()
    return admin_pb2.LogoutResponse(ended=bool(await call.run(call.chain.logout, call.token)))


@handler("CreateNode")
async def create_node(call: Call, req):
    cid = client_id(req)
    node = await call.run(call.chain.create_node, call.principal(), cid, kind=int(req.kind),
                          parent_id=req.parent_id, name=req.name, node_id=req.node_id or None)
    return admin_pb2.CreateNodeResponse(node=_node_pb(node))


@handler("ListNodes")
async def list_nodes(call: Call, req):
    # The tree is no secret from staff: every role needs store and terminal names.
    call.principal()
    if req.kind and int(req.kind) not in NodeKind._value2member_map_:
        raise invalid("VALUE_OUT_OF_RANGE", f"kind: {req.kind} is not a node kind (1 hq, "
                      "2 region, 3 store, 4 terminal; 0 for all)", field="kind")
    kind = NodeKind(int(req.kind)) if req.kind else None
    return admin_pb2.ListNodesResponse(nodes=[_node_pb(n) for n in call.chain.nodes(kind)])


@handler("IssueTerminalToken")
async def issue_terminal_token(call: Call, req):
    cid = client_id(req)
    t = await call.run(call.chain.issue_terminal_token, call.principal(), cid, req.terminal_id)
    return admin_pb2.IssueTerminalTokenResponse(token=t.token or "", terminal_id=t.terminal_id,
                                                store_id=t.store_id)


@handler("RevokeTerminalToken")
async def revoke_terminal_token(call: Call, req):
    cid = client_id(req)
    await call.run(call.chain.revoke_terminal_token, call.principal(), cid, req.terminal_id)
    return admin_pb2.RevokeTerminalTokenResponse()


@handler("CreateOperator")
async def create_operator(call: Call, req):
    cid = client_id(req)
    op = await call.hash_run(call.chain.create_operator, call.principal(), cid, login=req.login,
                        password=req.password, role=req.role, name=req.name,
                        home_store_id=req.home_store_id, home_region_id=req.home_region_id)
    return admin_pb2.CreateOperatorResponse(operator=_operator_pb(op))


@handler("DisableOperator")
async def disable_operator(call: Call, req):
    cid = client_id(req)
    op = await call.run(call.chain.disable_operator, call.principal(), cid, req.operator_id)
    return admin_pb2.DisableOperatorResponse(operator=_operator_pb(op))


@handler("ResetPassword")
async def reset_password(call: Call, req):
    cid = client_id(req)
    p = call.principal()
    if req.operator_id in (0, p.operator_id):
        await call.hash_run(call.chain.change_own_password, p, cid, req.old_password,
                            req.new_password)
    else:
        await call.hash_run(call.chain.reset_password, p, cid, req.operator_id,
                            req.new_password)
    return admin_pb2.ResetPasswordResponse()


def _op_name(op: object) -> str:
    """Events written before an op type had a name carry its number."""
    return str(op_name(op))


@handler("AuditLog")
async def get_audit_log(call: Call, req):
    own = call.act_store()
    store = own if own is not None else (req.store_id or None)
    call.authorize("audit.read", store)
    limit = page_limit(req.limit, AUDIT_LIMIT_DEFAULT, AUDIT_PAGE_MAX)
    since = seq_cursor(req.since_seq, "since_seq")
    events = await call.run(audit_log, call.engine, since_seq=since,
                            operator_id=req.operator_id or None, store_id=store, limit=limit)
    total = await call.run(audit_count, call.engine, since_seq=since,
                           operator_id=req.operator_id or None, store_id=store)
    nxt = int(events[-1]["seq"]) if events and total > len(events) else 0
    return admin_pb2.AuditLogResponse(total=total, next_since_seq=nxt, events=[admin_pb2.AuditEvent(
        seq=e["seq"], op=_op_name(e.get("op")), time_s=int(e.get("time_s") or 0),
        operator_id=int(e.get("operator_id") or 0), store_id=int(e.get("store_id") or 0),
        detail_json=json.dumps(e.get("detail"), ensure_ascii=False, default=str),
        result_json=json.dumps(e.get("result"), ensure_ascii=False, default=str))
        for e in events])
