"""AdminService: the back office over core.domain.chain, core.domain.members and the engine's admin ops.

Every RPC is one entry of `HANDLERS` (name -> grpc type and handler). A handler is an
async function of (Call, request); `Call` resolves the operator from the session token
on every call, authorizes a permission in a store scope, and runs blocking core calls
(writer commits, scrypt) in a worker thread so the event loop never waits on them. The
servicer class is built from the table, so a new RPC (card replacement, level changes,
points adjustment...) is a handler function with `@handler("Name")` in a module of
server/rpc/admin/ that the package's __init__ imports, and nothing else.

Domain errors become statuses here and nowhere else (`_failure`): PermissionDenied ->
PERMISSION_DENIED (UNAUTHENTICATED without a session), ChainError and MemberError by
their reason, a rejected engine op by its Result. The reason travels as ErrorInfo.reason.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
import json
import logging
import os
import tempfile
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import numpy as np

from core import EngineClosed, RulesConfig, RulesError
from core.domain import cards
from core.domain.chain import (
    AUDIT_PAGE_MAX,
    LOGIN_FAILED,
    OPERATOR_LOCKED,
    AuthFailed,
    ChainConfig,
    ChainError,
    NodeKind,
    audit_log,
)
from core.domain.members import (
    PROFILE_FIELDS,
    SEARCH_LIMIT_MAX,
    MemberError,
    MemberQuery,
    MemberStatus,
    read_csv,
    read_xlsx,
)
from core.domain.points import expire_points, remind_expiring_points
from core.domain.rbac import PermissionDenied, Role, is_store_scoped, store_filter
from core.domain.rbac import authorize as rbac_authorize
from core.records import (
    PIN_DIGITS_MAX,
    PIN_DIGITS_MIN,
    AuditOp,
    CardStatus,
    Result,
    is_ascii_digits,
    op_name,
)
from core.rules import RULES_JSON_CHARS_MAX, loads_bounded
from server.mms_pb import admin_pb2, admin_pb2_grpc
from server.rpc.auth import (
    ROLE_ADMIN,
    LoginBusy,
    LoginGate,
    LoginThrottled,
    Registry,
    Terminal,
    bearer_token,
)
from server.rpc.bridge import Bridge
from server.rpc.codec import card_pb
from server.rpc.constants import ADMIN, CLIENT_ID_BYTES
from server.rpc.errors import RpcFailure, invalid, page_limit, result_reason, seq_cursor
from server.rpc.instrumentation import rpc_method
from server.rpc.metrics import Metrics

log = logging.getLogger("mms.admin")

# Roles that may see a member's phone and ID number in full: the people who talk to the
# member (the service desk and the store's manager). Every reveal is an audited op.
REVEAL_ROLES = frozenset({Role.STORE_MANAGER, Role.CUSTOMER_SERVICE})

# An uploaded import file may be this large; a million members in CSV is about 150 MB.
IMPORT_BYTES_MAX = 512 * 1024 * 1024
# Refused rows listed in an import response (all are counted).
IMPORT_ROW_ERRORS_MAX = 10_000
# Bytes per message of an export stream, well under MESSAGE_BYTES_MAX.
EXPORT_CHUNK_BYTES = 1024 * 1024
# Journal records one GetCardJournal call may return.
CARD_JOURNAL_MAX = 1000
CARD_JOURNAL_DEFAULT = 50
SEARCH_LIMIT_DEFAULT = 50
AUDIT_LIMIT_DEFAULT = 100

_MEMBER_STATUS = {MemberStatus.ACTIVE: admin_pb2.MEMBER_STATUS_ACTIVE,
                  MemberStatus.FROZEN: admin_pb2.MEMBER_STATUS_FROZEN,
                  MemberStatus.CANCELLED: admin_pb2.MEMBER_STATUS_CANCELLED}

# --- errors -----------------------------------------------------------------------------

_CHAIN_CODES = {
    "BAD_INPUT": grpc.StatusCode.INVALID_ARGUMENT,
    "ALREADY_BOOTSTRAPPED": grpc.StatusCode.ALREADY_EXISTS,
    "NOT_BOOTSTRAPPED": grpc.StatusCode.FAILED_PRECONDITION,
    "NODE_NOT_FOUND": grpc.StatusCode.NOT_FOUND,
    "NODE_EXISTS": grpc.StatusCode.ALREADY_EXISTS,
    "OPERATOR_NOT_FOUND": grpc.StatusCode.NOT_FOUND,
    "LOGIN_TAKEN": grpc.StatusCode.ALREADY_EXISTS,
    "LOGIN_FAILED": grpc.StatusCode.UNAUTHENTICATED,
    "OPERATOR_LOCKED": grpc.StatusCode.UNAUTHENTICATED,
    "OPERATOR_DISABLED": grpc.StatusCode.PERMISSION_DENIED,
    "SELF_CHANGE": grpc.StatusCode.PERMISSION_DENIED,
    "PASSWORD_CHANGED": grpc.StatusCode.UNAUTHENTICATED,
}
_MEMBER_CODES = {
    "INVALID": grpc.StatusCode.INVALID_ARGUMENT,
    "NOT_FOUND": grpc.StatusCode.NOT_FOUND,
    "REFERRER_NOT_FOUND": grpc.StatusCode.NOT_FOUND,
    "PHONE_TAKEN": grpc.StatusCode.ALREADY_EXISTS,
    "ID_NO_TAKEN": grpc.StatusCode.ALREADY_EXISTS,
    "SELF_REFERRAL": grpc.StatusCode.INVALID_ARGUMENT,
    "FILE_INVALID": grpc.StatusCode.INVALID_ARGUMENT,
}


def _failure(exc: BaseException) -> RpcFailure | None:
    """The status for a domain exception, or None for one this layer does not know."""
    if isinstance(exc, RpcFailure):
        return exc
    if isinstance(exc, PermissionDenied):
        code = (grpc.StatusCode.UNAUTHENTICATED if exc.reason == "NOT_AUTHENTICATED"
                else grpc.StatusCode.PERMISSION_DENIED)
        return RpcFailure(code, exc.reason, str(exc), {"permission": exc.permission})
    if isinstance(exc, ChainError):
        meta = {}
        if isinstance(exc, AuthFailed) and exc.retry_after_s:
            meta["retry_after_s"] = str(exc.retry_after_s)
        return RpcFailure(_CHAIN_CODES.get(exc.reason, grpc.StatusCode.FAILED_PRECONDITION),
                          exc.reason, str(exc), meta)
    if isinstance(exc, MemberError):
        meta = {"field": exc.field} if exc.field else {}
        return RpcFailure(_MEMBER_CODES.get(exc.code.value, grpc.StatusCode.FAILED_PRECONDITION),
                          f"MEMBER_{exc.code.value}", str(exc), meta)
    if isinstance(exc, RulesError):
        return invalid("RULES_INVALID", str(exc))
    if isinstance(exc, EngineClosed):
        return RpcFailure(grpc.StatusCode.UNAVAILABLE, "SHUTTING_DOWN", str(exc))
    if isinstance(exc, ValueError) and not isinstance(exc, UnicodeError):
        # The core's own checks ("a PIN is 4 to 9 digits", "client_id must be 16 bytes").
        return invalid("INVALID_ARGUMENT", str(exc))
    if isinstance(exc, (ValueError, TypeError, KeyError, OverflowError, RecursionError)):
        # Bad input that reached code which did not check it: a gap to close where it
        # happens, logged as such; the caller gets no Python internals.
        log.warning("AdminService: unchecked input raised %s", type(exc).__name__, exc_info=exc)
        return invalid("INVALID_ARGUMENT", "a field of the request has a value or shape this "
                       "call does not take")
    return None


def _check(r) -> None:
    """Raise the status of a rejected engine admin op (AdminResult). A reason the core
    op named (ctx.reject(..., "RECEIPT_USED")) is the ErrorInfo reason; without one,
    the Result's proto name is."""
    if r.code != Result.OK:
        f = RpcFailure.of_result(r.code, r.detail or result_reason(r.code))
        reason = getattr(r, "reason", "") or ""
        try:
            default = Result(int(r.code)).name
        except ValueError:
            default = ""
        if reason and reason != default:
            f.reason = reason
        raise f


def _outcome(r) -> admin_pb2.AdminOutcome:
    return admin_pb2.AdminOutcome(replayed=bool(r.replayed), seq=int(r.seq))


def client_id(request) -> bytes:
    cid = bytes(request.client_id)
    if len(cid) != CLIENT_ID_BYTES:
        raise invalid("RESULT_CLIENT_ID_INVALID",
                      f"client_id must be {CLIENT_ID_BYTES} bytes, not {len(cid)}")
    return cid


# --- the call ---------------------------------------------------------------------------

class Call:
    """One admin call: who is calling, what they may do, and how to run core code."""

    def __init__(self, svc: AdminService, context) -> None:
        self.svc = svc
        self.context = context
        self.token = bearer_token(context.invocation_metadata())
        self._principal = None

    @property
    def engine(self):
        return self.svc.engine

    @property
    def chain(self):
        if self.svc.chain is None:
            raise RpcFailure(grpc.StatusCode.FAILED_PRECONDITION, "CHAIN_DISABLED",
                             "this server runs without operators (terminals file only)")
        return self.svc.chain

    @property
    def members(self):
        if self.svc.members is None:
            raise RpcFailure(grpc.StatusCode.FAILED_PRECONDITION, "MEMBERS_DISABLED",
                             "this server runs without the member store")
        return self.svc.members

    def principal(self):
        """The operator behind the session, resolved afresh on every call."""
        if self._principal is None:
            if self.svc.chain is None:
                raise RpcFailure(grpc.StatusCode.UNAUTHENTICATED, "TOKEN_INVALID",
                                 "missing, unknown or revoked token")
            p = self.chain.principal(self.token)
            if p is None:
                raise RpcFailure(grpc.StatusCode.UNAUTHENTICATED, "SESSION_INVALID",
                                 "missing, expired or ended session; log in again")
            self._principal = p
        return self._principal

    def authorize(self, permission: str, store_id: int | None = None):
        p = self.principal()
        rbac_authorize(p, permission, store_id)
        return p

    def act_store(self) -> int | None:
        """Where the caller acts: their home store, or None (chain-wide) for HQ roles."""
        return store_filter(self.principal())

    @property
    def operator_id(self) -> int:
        return int(self.principal().operator_id)

    async def run(self, fn: Callable[..., Any], *args, **kw) -> Any:
        """A blocking core call (a commit, scrypt) in a worker thread."""
        if not self.svc.bridge.accepting:
            raise RpcFailure(grpc.StatusCode.UNAVAILABLE, "SHUTTING_DOWN", "the server is stopping")
        return await asyncio.to_thread(fn, *args, **kw)

    async def hash_run(self, fn: Callable[..., Any], *args, **kw) -> Any:
        """A blocking call that hashes a password, on the password pool (LoginGate)."""
        if not self.svc.bridge.accepting:
            raise RpcFailure(grpc.StatusCode.UNAVAILABLE, "SHUTTING_DOWN", "the server is stopping")
        try:
            return await self.svc.logins.run(fn, *args, **kw)
        except LoginBusy as e:
            raise RpcFailure(grpc.StatusCode.RESOURCE_EXHAUSTED, "LOGIN_BUSY", str(e)) from None

    async def cold(self, factory: Callable[[], Any]):
        """An engine admin op (a Future[AdminResult]) awaited without blocking the loop."""
        r = await self.svc.bridge.cold(factory)
        _check(r)
        return r

    def legacy_admin_terminal(self) -> Terminal | None:
        """An admin-role terminal of the file registry (HQ tools from before operators),
        or None when the token is not a terminal's. A pos terminal is refused."""
        term = self.svc.registry.authenticate(self.token) if self.svc.registry else None
        if term is None:
            return None
        if term.role != ROLE_ADMIN:
            raise RpcFailure(grpc.StatusCode.PERMISSION_DENIED, "ROLE_REQUIRED",
                             f"this call needs the {ROLE_ADMIN} role", {"role": ROLE_ADMIN})
        return term

    def member_store(self, member_id: int) -> int | None:
        """The home store of a member (None when it has none); NOT_FOUND when missing."""
        m = self.members.get(int(member_id)) if member_id else None
        if m is None:
            raise RpcFailure(grpc.StatusCode.NOT_FOUND, "MEMBER_NOT_FOUND",
                             f"member {member_id} not found")
        return int(m.get("home_store_id") or 0) or None

    def card_scope(self, card_no: int) -> int | None:
        """The store a card's data belongs to: its member's home store, else where the
        caller acts (an unassigned card is the store's stock)."""
        card = self.engine.card(int(card_no)) if card_no else None
        if card is None:
            raise RpcFailure.of_result(Result.CARD_NOT_FOUND, f"card {card_no} not found")
        store = None
        if card["member_id"] and self.svc.members is not None:
            m = self.svc.members.get(int(card["member_id"]))
            store = int(m.get("home_store_id") or 0) or None if m else None
        return store if store is not None else self.act_store()


# --- the table ----------------------------------------------------------------------------

# RPC name -> (gRPC type, handler). The servicer's methods are made from this table.
HANDLERS: dict[str, tuple[str, Callable]] = {}
# How each RPC authenticates, checked before its handler runs, so that nothing that
# depends on data (does this card, this member exist? is this client id well formed?)
# answers a caller without credentials:
#   "session"  an operator's session (the default);
#   "terminal" an admin-role terminal of the terminals file, else a session (the legacy
#              IssueCards and SetCardStatus);
#   "none"     the handler checks its own secret (Bootstrap) or is how one gets a
#              session (Login).
AUTH_MODES = ("session", "terminal", "none")
_AUTH: dict[str, str] = {}


def handler(name: str, grpc_type: str = "unary", auth: str = "session"):
    """Register fn as the handler of AdminService.<name>."""
    if auth not in AUTH_MODES:
        raise ValueError(f"AdminService.{name}: auth is one of {AUTH_MODES}")

    def deco(fn):
        if name in HANDLERS:
            raise ValueError(f"AdminService.{name} has a handler already")
        HANDLERS[name] = (grpc_type, fn)
        _AUTH[name] = auth
        if "AdminService" in globals():
            _install(name, grpc_type, fn)
        return fn

    return deco


def _authenticate(call: Call, auth: str) -> None:
    if auth == "session":
        call.principal()
    elif auth == "terminal" and call.legacy_admin_terminal() is None:
        call.principal()


def _install(name: str, grpc_type: str, fn: Callable) -> None:
    auth = _AUTH.get(name, "session")
    if grpc_type == "server_stream":
        async def method(self, request, context):
            call = Call(self, context)
            try:
                _authenticate(call, auth)
                async for item in fn(call, request):
                    yield item
            except Exception as e:
                f = _failure(e)
                if f is None:
                    raise
                raise f from e
    else:
        async def method(self, request, context):
            call = Call(self, context)
            try:
                _authenticate(call, auth)
                return await fn(call, request)
            except Exception as e:
                f = _failure(e)
                if f is None:
                    raise
                raise f from e
    method.__name__ = method.__qualname__ = name
    setattr(AdminService, name, rpc_method(ADMIN, name, grpc_type)(method))


# --- chain --------------------------------------------------------------------------------

def _operator_pb(op) -> admin_pb2.Operator:
    return admin_pb2.Operator(operator_id=op.operator_id, login=op.login, name=op.name,
                              role=op.role.value, home_store_id=op.home_store_id,
                              disabled=op.disabled)


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
                        home_store_id=req.home_store_id)
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
    return admin_pb2.AuditLogResponse(events=[admin_pb2.AuditEvent(
        seq=e["seq"], op=_op_name(e.get("op")), time_s=int(e.get("time_s") or 0),
        operator_id=int(e.get("operator_id") or 0), store_id=int(e.get("store_id") or 0),
        detail_json=json.dumps(e.get("detail"), ensure_ascii=False, default=str),
        result_json=json.dumps(e.get("result"), ensure_ascii=False, default=str))
        for e in events])


# --- members ------------------------------------------------------------------------------

def _profile_dict(p: admin_pb2.MemberProfile, names=PROFILE_FIELDS) -> dict:
    out: dict = {}
    for name in names:
        if name not in PROFILE_FIELDS:
            raise invalid("MEMBER_INVALID", f"unknown profile field {name!r}", field=name)
        v = getattr(p, name)
        if name in ("prefs", "tags"):
            v = list(v)
        elif name == "custom":
            v = dict(v)
        out[name] = v
    return out


def member_pb(m: dict) -> admin_pb2.Member:
    prof = admin_pb2.MemberProfile(
        name=m.get("name") or "", phone=m.get("phone") or "", id_no=m.get("id_no") or "",
        gender=m.get("gender") or "", birthday=m.get("birthday") or "",
        address=m.get("address") or "", photo=m.get("photo") or "",
        source=m.get("source") or "", prefs=m.get("prefs") or [],
        custom={str(k): str(v) for k, v in (m.get("custom") or {}).items()},
        tags=m.get("tags") or [], referrer_id=int(m.get("referrer_id") or 0),
        home_store_id=int(m.get("home_store_id") or 0))
    status = MemberStatus[str(m.get("status", "active")).upper()]
    return admin_pb2.Member(member_id=int(m["member_id"]), profile=prof,
                            status=_MEMBER_STATUS[status], created_s=int(m.get("created_s") or 0),
                            updated_s=int(m.get("updated_s") or 0),
                            version=int(m.get("version") or 0))


@handler("CreateMember")
async def create_member(call: Call, req):
    cid = client_id(req)
    prof = _profile_dict(req.profile)
    store = prof.get("home_store_id") or call.act_store()
    call.authorize("member.write", store)
    r = await call.run(call.members.create, prof, cid, operator_id=call.operator_id,
                       store_id=store or 0)
    return admin_pb2.CreateMemberResponse(member_id=r.member_id, outcome=_outcome(r))


@handler("UpdateMember")
async def update_member(call: Call, req):
    cid = client_id(req)
    if not req.fields:
        raise invalid("MEMBER_INVALID", "name the fields to change in `fields`", field="fields")
    changes = _profile_dict(req.profile, list(req.fields))
    store = call.member_store(req.member_id)
    call.authorize("member.write", store)
    if "home_store_id" in changes:
        call.authorize("member.write", changes["home_store_id"] or None)
    r = await call.run(call.members.update, req.member_id, changes, cid,
                       expected_version=req.expected_version or None,
                       operator_id=call.operator_id, store_id=store or 0)
    return admin_pb2.UpdateMemberResponse(version=int(r.value.get("version", 0)),
                                          changed=r.value.get("changed", []), outcome=_outcome(r))


@handler("SetMemberStatus")
async def set_member_status(call: Call, req):
    cid = client_id(req)
    if req.status not in (1, 2, 3):
        raise invalid("MEMBER_INVALID", "status must be active, frozen or cancelled",
                      field="status")
    store = call.member_store(req.member_id)
    call.authorize("member.write", store)
    r = await call.run(call.members.set_status, req.member_id, MemberStatus(req.status), cid,
                       reason=req.reason, operator_id=call.operator_id, store_id=store or 0)
    return admin_pb2.SetMemberStatusResponse(outcome=_outcome(r))


def _audit_reveal(call: Call, member_id: int, store: int | None) -> None:
    detail = {"member_id": member_id, "fields": ["phone", "id_no"]}

    def build(ctx):
        ctx.detail = detail
        return detail

    r = call.engine.admin(os.urandom(CLIENT_ID_BYTES), AuditOp.MEMBER_REVEAL, build,
                          operator_id=call.operator_id, store_id=store or 0).result()
    _check(r)


@handler("GetMember")
async def get_member(call: Call, req):
    store = call.member_store(req.member_id)
    p = call.authorize("member.read", store)
    if req.reveal:
        if Role(p.role) not in REVEAL_ROLES:
            raise RpcFailure(grpc.StatusCode.PERMISSION_DENIED, "REVEAL_NOT_GRANTED",
                             f"role {Role(p.role).value} may not see members' phone and ID "
                             "number in full", {"role": Role(p.role).value})
        # Audited before it is shown: a reveal that is not recorded does not happen.
        await call.run(_audit_reveal, call, int(req.member_id), store)
    m = call.members.get(req.member_id, reveal=req.reveal)
    held = call.members.cards_of(req.member_id)
    return admin_pb2.GetMemberResponse(member=member_pb(m), cards=[card_pb(c) for c in held])


@handler("FindMemberByPhone")
async def find_member_by_phone(call: Call, req):
    call.principal()
    mid = call.members.id_by_phone(req.phone)
    m = call.members.get(mid) if mid is not None else None
    not_found = RpcFailure(grpc.StatusCode.NOT_FOUND, "MEMBER_NOT_FOUND", "no member has this phone")
    if m is None:
        raise not_found
    try:
        call.authorize("member.read", int(m.get("home_store_id") or 0) or None)
    except PermissionDenied as e:
        # A store role must not learn that the phone belongs to another store's member.
        if e.reason == "OTHER_STORE":
            raise not_found from None
        raise
    return admin_pb2.FindMemberByPhoneResponse(member=member_pb(m))


def _query(call: Call, q: admin_pb2.SearchMembersRequest, permission: str) -> MemberQuery:
    own = call.act_store()
    store = own if own is not None else (q.store_id or None)
    if own is not None and q.store_id and q.store_id != own:
        store = q.store_id  # authorize refuses it with OTHER_STORE
    call.authorize(permission, store)
    return MemberQuery(
        phone=q.phone or None, id_no=q.id_no or None, name=q.name or None,
        name_contains=q.name_contains, card_no=q.card_no or None,
        level=q.level if q.HasField("level") else None, tags=tuple(q.tags), store_id=store,
        spend_min_fen=q.spend_min_fen if q.HasField("spend_min_fen") else None,
        spend_max_fen=q.spend_max_fen if q.HasField("spend_max_fen") else None,
        last_visit_from_s=q.last_visit_from_s if q.HasField("last_visit_from_s") else None,
        last_visit_to_s=q.last_visit_to_s if q.HasField("last_visit_to_s") else None,
        status=MemberStatus(q.status) if q.status else None,
        limit=page_limit(q.limit, SEARCH_LIMIT_DEFAULT, SEARCH_LIMIT_MAX), offset=q.offset)


@handler("SearchMembers")
async def search_members(call: Call, req):
    q = _query(call, req, "member.read")
    res = await call.run(call.members.search, q)
    return admin_pb2.SearchMembersResponse(total=res.total,
                                           members=[member_pb(m) for m in res.members])


def _scoped_rows(rows, home: int | None):
    """Rows of an import, with rows for another store refused when the caller is bound
    to one store (the core would import them as they say)."""
    for line, row in rows:
        if home is not None and isinstance(row, dict):
            want = str(row.get("home_store_id") or "").strip()
            if want not in ("", "0", str(home)):
                row = f"home_store_id {want} is not store {home}"
        yield line, row


@handler("ImportMembers", "client_stream")
async def import_members(call: Call, request_iterator):
    home = call.act_store()
    call.authorize("member.write", home)
    fd, path = tempfile.mkstemp(prefix="mms-import-")
    sha = hashlib.sha256()
    name, file_id, size = "", "", 0
    try:
        with os.fdopen(fd, "wb") as f:
            first = True
            async for msg in request_iterator:
                if first:
                    name, file_id, first = msg.file_name, msg.file_id, False
                size += len(msg.chunk)
                if size > IMPORT_BYTES_MAX:
                    raise RpcFailure(grpc.StatusCode.RESOURCE_EXHAUSTED, "IMPORT_TOO_LARGE",
                                     f"an import file is at most {IMPORT_BYTES_MAX} bytes")
                sha.update(msg.chunk)
                f.write(msg.chunk)
        lower = name.lower()
        if not lower.endswith((".csv", ".xlsx")):
            raise invalid("IMPORT_FORMAT", "file_name must end in .csv or .xlsx", field="file_name")
        if lower.endswith(".xlsx"):
            xpath = path + ".xlsx"  # openpyxl goes by the extension
            os.replace(path, xpath)
            path = xpath
        rows = read_xlsx(path) if lower.endswith(".xlsx") else read_csv(path)
        report = await call.run(call.members.import_rows, _scoped_rows(rows, home),
                                file_id=file_id or sha.hexdigest(),
                                operator_id=call.operator_id, store_id=home or 0)
    finally:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
    errors = sorted(report.errors, key=lambda e: e.line)[:IMPORT_ROW_ERRORS_MAX]
    return admin_pb2.ImportMembersResponse(
        file_id=report.file_id, rows=report.rows, created=report.created,
        already_imported=report.already_imported, errors=report.n_errors,
        row_errors=[admin_pb2.ImportRowError(line=e.line, reason=e.reason) for e in errors])


@handler("ExportMembers", "server_stream")
async def export_members(call: Call, req) -> AsyncIterator[admin_pb2.ExportMembersResponse]:
    fmt = (req.format or "csv").lower()
    if fmt not in ("csv", "xlsx"):
        raise invalid("EXPORT_FORMAT", "format is csv or xlsx", field="format")
    q = _query(call, req.query, "export")
    fd, path = tempfile.mkstemp(prefix="mms-export-", suffix=f".{fmt}")
    os.close(fd)
    try:
        n = await call.run(call.members.export, path, q)
        with open(path, "rb") as f:
            chunk = f.read(EXPORT_CHUNK_BYTES)
            while chunk:
                nxt = f.read(EXPORT_CHUNK_BYTES)
                yield admin_pb2.ExportMembersResponse(chunk=chunk, members=0 if nxt else n)
                chunk = nxt
    finally:
        os.unlink(path)


# --- cards --------------------------------------------------------------------------------

@handler("IssueCards", auth="terminal")
async def issue_cards(call: Call, req):
    operator_id = 0
    store = req.store_id
    if call.legacy_admin_terminal() is None:
        own = call.act_store()
        scope = req.store_id or own
        p = call.authorize("card.issue", scope)
        operator_id, store = int(p.operator_id), scope or 0
    cid = client_id(req)
    n = len(req.card_nos)
    issue_max = call.engine.config.issue_max_cards
    if not 1 <= n <= issue_max:
        raise invalid("BATCH_SIZE", f"issue 1..{issue_max} cards per call, not {n}")
    if req.member_ids and len(req.member_ids) != n:
        raise invalid("COLUMN_LENGTH", "member_ids must be empty or one per card",
                      column="member_ids")
    if req.expires_at_s:
        raise invalid("SET_BY_CARD_TYPE", "the card type sets the validity; leave "
                      "expires_at_s 0", field="expires_at_s")
    if operator_id and is_store_scoped(call.principal().role):
        for mid in sorted(set(req.member_ids) - {0}):
            call.authorize("card.issue", call.member_store(mid))
        if req.primary_card_no:
            # A supplementary card spends the primary's money: the primary's store.
            call.authorize("card.issue", call.card_scope(req.primary_card_no))
    if req.level:
        t = await call.run(cards.get_card_type, call.engine, int(req.type_id)) if req.type_id \
            else cards.default_type(0)
        if t is None or int(req.level) != t.initial_level:
            raise invalid("SET_BY_CARD_TYPE", "the card type sets the starting level; leave "
                          "level 0", field="level")
    nos = np.array(req.card_nos, dtype=np.uint64)
    members = np.array(req.member_ids, dtype=np.uint64) if req.member_ids else None
    r = await call.cold(lambda: cards.issue_cards(
        call.engine, nos, cid, type_id=int(req.type_id), member_ids=members,
        paid_fen=int(req.paid_fen), primary_card_no=int(req.primary_card_no),
        supp_limit_fen=int(req.supp_limit_fen), operator_id=operator_id, store_id=store))
    v = r.value or {}
    return admin_pb2.IssueCardsResponse(
        code=int(r.code), replayed=r.replayed, seq=r.seq, detail=r.detail,
        cards=int(v.get("cards", 0)), fees_fen=int(v.get("fees_fen", 0)),
        deposit_fen=int(v.get("deposit_fen", 0)), expires_at_s=int(v.get("expires_at_s", 0)),
        level=int(v.get("level", 0)), count_uses=int(v.get("count_uses", 0)))


@handler("ShowCard")
async def show_card(call: Call, req):
    # Reading a card is reading its member's data (like GetCardJournal).
    call.authorize("member.read", call.card_scope(req.card_no))
    return admin_pb2.ShowCardResponse(card=card_pb(call.engine.card(int(req.card_no))))


@handler("SetCardStatus", auth="terminal")
async def set_card_status(call: Call, req):
    operator_id, store = 0, 0
    if call.legacy_admin_terminal() is None:
        scope = call.card_scope(req.card_no)
        operator_id, store = call.authorize("card.status", scope).operator_id, scope or 0
    cid = client_id(req)
    if req.status not in {int(s) for s in CardStatus if int(s) != 0}:
        raise invalid("STATUS_INVALID", f"status {req.status} is not a card status")
    r = await call.svc.bridge.cold(lambda: call.engine.set_card_status(
        int(req.card_no), int(req.status), cid, operator_id=int(operator_id), store_id=store))
    _check(r)
    return admin_pb2.SetCardStatusResponse(code=int(r.code), replayed=r.replayed, seq=r.seq,
                                           detail=r.detail)


@handler("SetPin")
async def set_pin(call: Call, req):
    cid = client_id(req)
    scope = call.card_scope(req.card_no)
    # Choosing the first PIN is part of issuing the card; changing one is the desk's.
    card = call.engine.card(int(req.card_no))
    p = call.authorize("card.issue" if not card.get("pin_hash") else "card.status", scope)
    if not (PIN_DIGITS_MIN <= len(req.pin) <= PIN_DIGITS_MAX and is_ascii_digits(req.pin)):
        raise invalid("PIN_INVALID", "pin: a PIN is 4 to 9 ASCII digits 0-9", field="pin")
    r = await call.cold(lambda: call.engine.set_pin(int(req.card_no), req.pin, cid,
                                                    operator_id=p.operator_id, store_id=scope or 0))
    return admin_pb2.SetPinResponse(outcome=_outcome(r))


@handler("ResetPin")
async def reset_pin(call: Call, req):
    cid = client_id(req)
    scope = call.card_scope(req.card_no)
    p = call.authorize("card.status", scope)
    r = await call.cold(lambda: call.engine.set_pin(int(req.card_no), None, cid,
                                                    operator_id=p.operator_id, store_id=scope or 0))
    return admin_pb2.ResetPinResponse(outcome=_outcome(r))


@handler("GetCardJournal")
async def get_card_journal(call: Call, req):
    call.authorize("member.read", call.card_scope(req.card_no))
    limit = page_limit(req.limit, CARD_JOURNAL_DEFAULT, CARD_JOURNAL_MAX)
    recs, next_before = await call.run(cards.card_history, call.engine, int(req.card_no),
                                       limit, int(req.before_seq))
    out = admin_pb2.GetCardJournalResponse(next_before_seq=next_before)
    for r in recs:
        after = r["after"]
        out.entries.add(
            seq=int(r["seq"]), op=str(op_name(int(r["op_type"]))),
            time_s=int(r["time_s"]), store_id=int(r["store_id"]),
            terminal_id=int(r["terminal_id"]), operator_id=int(r["operator_id"]),
            amount_fen=int(r["amount_fen"]), principal_delta_fen=int(r["principal_delta_fen"]),
            bonus_delta_fen=int(r["bonus_delta_fen"]), points_delta=int(r["points_delta"]),
            balance_after_fen=int(after["principal_fen"]) + int(after["bonus_fen"]),
            points_after=int(after["points"]), card_no=int(r["card_no"]))
    return out


# --- points and rules -----------------------------------------------------------------------

# The expiry and reminder runs apply the chain's points policy to every card: the
# people who set that policy (rules.write: admin, marketing) run them, chain-wide.

@handler("ExpirePoints")
async def run_expire_points(call: Call, req):
    cid = client_id(req)
    p = call.authorize("rules.write", None)
    r = await call.cold(lambda: expire_points(call.engine, cid, operator_id=p.operator_id))
    v = r.value or {}
    return admin_pb2.ExpirePointsResponse(expired_points=int(v.get("expired_points", 0)),
                                          cards=int(v.get("cards", 0)), outcome=_outcome(r))


@handler("RemindExpiringPoints")
async def run_remind_expiring_points(call: Call, req):
    cid = client_id(req)
    p = call.authorize("rules.write", None)
    r = await call.cold(lambda: remind_expiring_points(
        call.engine, cid, min_points=req.min_points or 1, operator_id=p.operator_id))
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


# --- the servicer ---------------------------------------------------------------------------

class AdminService(admin_pb2_grpc.AdminServiceServicer):
    """Methods come from HANDLERS; an RPC of the proto without a handler answers
    UNIMPLEMENTED (the generated base class)."""

    def __init__(self, bridge: Bridge, registry: Registry | None, metrics: Metrics, *,
                 chain=None, members=None, bootstrap_token: str | None = None) -> None:
        self.bridge = bridge
        self.engine = bridge.engine
        self.registry = registry
        self.metrics = metrics
        self.chain = chain
        self.members = members
        self.bootstrap_token = bootstrap_token
        cfg = chain.config if chain is not None else ChainConfig()
        self.logins = LoginGate(name_failures_max=cfg.login_failures_max,
                                name_window_s=cfg.lockout_s,
                                on_throttle=lambda scope: metrics.login_throttled.labels(scope).inc())


for _name, (_type, _fn) in HANDLERS.items():
    _install(_name, _type, _fn)
