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
import contextlib
import logging
import os
import tempfile
from collections.abc import Callable
from typing import Any

import grpc

from core import EngineClosed, RulesError
from core.domain.chain import (
    AuthFailed,
    ChainConfig,
    ChainError,
)
from core.domain.members import (
    MemberError,
    MemberStatus,
)
from core.domain.rbac import PermissionDenied, Role, store_filter
from core.domain.rbac import authorize as rbac_authorize
from core.records import (
    Result,
)
from server.mms_pb import admin_pb2, admin_pb2_grpc
from server.rpc.auth import (
    ROLE_ADMIN,
    LoginBusy,
    LoginGate,
    Registry,
    Terminal,
    bearer_token,
)
from server.rpc.bridge import Bridge
from server.rpc.constants import ADMIN, CLIENT_ID_BYTES
from server.rpc.errors import RpcFailure, engine_closed, invalid, result_reason
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
# Journal records a member view (GetMember) shows when the request does not say.
MEMBER_JOURNAL_DEFAULT = 20
# Operators one ListOperators page may hold.
OPERATORS_LIMIT_MAX = 1000
OPERATORS_LIMIT_DEFAULT = 100

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


# The start of the warning logged when bad input reached code that did not check it
# (tests/rpc/test_hostile_input.py fails on it: each one is a gap to close).
UNCHECKED = "AdminService: unchecked input raised"


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
        return engine_closed(exc)
    if isinstance(exc, ValueError) and not isinstance(exc, UnicodeError):
        # The core's own checks ("a PIN is 4 to 9 digits", "client_id must be 16 bytes").
        return invalid("INVALID_ARGUMENT", str(exc))
    if isinstance(exc, (ValueError, TypeError, KeyError, OverflowError, RecursionError)):
        # Bad input that reached code which did not check it: a gap to close where it
        # happens, logged as such; the caller gets no Python internals.
        log.warning(UNCHECKED + " %s", type(exc).__name__, exc_info=exc)
        return invalid("INVALID_ARGUMENT", "a field of the request has a value or shape this "
                       "call does not take")
    return None


@contextlib.contextmanager
def as_status(first: Callable[[Exception], RpcFailure | None] | None = None):
    """Raise a failure inside the block as its gRPC status: first(e) when given and it
    knows e (a service's own domain errors), else _failure(e); one neither knows
    propagates as it is."""
    try:
        yield
    except Exception as e:
        f = (first(e) if first is not None else None) or _failure(e)
        if f is None:
            raise
        raise f from e


async def chain_run(call: Call, req, fn: Callable[..., Any], **kw):
    """A chain-wide run (an expiry, a review) by those who set the chain's policy
    (rules.write): fn(engine, client id, operator_id=, **kw) committed; its AdminResult."""
    cid = client_id(req)
    p = call.authorize("rules.write", None)
    return await call.cold(lambda: fn(call.engine, cid, operator_id=p.operator_id, **kw))


def export_format(req) -> str:
    """The file format an export request asks for: csv (the default) or xlsx."""
    fmt = (req.format or "csv").lower()
    if fmt not in ("csv", "xlsx"):
        raise invalid("EXPORT_FORMAT", "format is csv or xlsx", field="format")
    return fmt


async def export_chunks(call: Call, fmt: str, prefix: str, export: Callable[[str], int],
                        response: Callable[..., Any]):
    """export(path) writes a temporary file of format fmt in a worker thread and returns
    how many members it holds; the file then streams as response(chunk=, members=) of
    EXPORT_CHUNK_BYTES each, the count on the last, and is removed."""
    fd, path = tempfile.mkstemp(prefix=prefix, suffix=f".{fmt}")
    os.close(fd)
    try:
        n = await call.run(export, path)
        with open(path, "rb") as f:
            chunk = f.read(EXPORT_CHUNK_BYTES)
            while chunk:
                nxt = f.read(EXPORT_CHUNK_BYTES)
                yield response(chunk=chunk, members=0 if nxt else n)
                chunk = nxt
    finally:
        os.unlink(path)


def share_admin(svc, admin: AdminService) -> None:
    """svc (the Report, Campaign and Segment services) answers with the AdminService's
    collaborators: Call resolves sessions and scope with them."""
    svc.bridge, svc.engine, svc.registry = admin.bridge, admin.engine, admin.registry
    svc.metrics, svc.chain, svc.members = admin.metrics, admin.chain, admin.members


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
    if not any(cid):
        raise invalid("RESULT_CLIENT_ID_INVALID", "client_id must not be all zero")
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
            with as_status():
                _authenticate(call, auth)
                async for item in fn(call, request):
                    yield item
    else:
        async def method(self, request, context):
            call = Call(self, context)
            with as_status():
                _authenticate(call, auth)
                return await fn(call, request)
    method.__name__ = method.__qualname__ = name
    setattr(AdminService, name, rpc_method(ADMIN, name, grpc_type)(method))


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
