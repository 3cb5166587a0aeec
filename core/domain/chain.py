"""The chain and its people: HQ -> region -> store -> terminal, terminal tokens,
operators, their passwords and sessions.

Every change is an admin op through Engine.admin: it runs in the writer inside the
write transaction, so its records here, its journal record and its audit event (who,
what, when, before/after) commit together or not at all, and a retry with the same
16-byte client id applies nothing twice. What the writer must not do is slow work:
scrypt runs in the caller's thread before the op is submitted, and the op only stores
the finished hash.

Reads (token checks, sessions, the tree) are served from memory: loaded when a Chain is
opened and updated in ctx.after_commit, so they see only what is durable. The layout of
every database is in docs/chain.md.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from enum import IntEnum
from typing import NamedTuple

from core.domain.rbac import (
    PermissionDenied,
    PrincipalLike,
    Role,
    authorize,
    check_grant,
    is_region_scoped,
    is_store_scoped,
    role_of,
)
from core.engine.storage import from_be, u32, u64
from core.engine.writer import AdminContext, AdminResult, Engine
from core.records import ChainOp, Result, new_client_id, op_name


class NodeKind(IntEnum):
    HQ = 1
    REGION = 2
    STORE = 3
    TERMINAL = 4


# The kind a node's parent must be. A store always sits in a region: a chain with one
# region still names it, so reports roll up the same way in every chain.
PARENT_KIND = {NodeKind.REGION: NodeKind.HQ, NodeKind.STORE: NodeKind.REGION,
               NodeKind.TERMINAL: NodeKind.STORE}

HQ_ID = 1
# Node and operator ids travel in the journal's u32 store_id/terminal_id/operator_id.
ID_MAX = 2**32 - 1
NAME_CHARS_MAX = 100
LOGIN_CHARS_MAX = 64
_LOGIN_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]*$")
# A password below this length is refused; above the max it is refused too, so nobody
# can make the server hash megabytes.
PASSWORD_CHARS_MIN = 8
PASSWORD_CHARS_MAX = 1024
# Terminal and session tokens: 32 random bytes from the OS, URL-safe base64 (43 chars).
TOKEN_BYTES = 32
# A bound on the presented token we hash, far above any token we issue.
TOKEN_CHARS_MAX = 256
# How long a caller waits for the writer to answer an admin op.
ADMIN_WAIT_S = 60.0
# Audit log pages.
AUDIT_PAGE_MAX = 1000

# Databases (docs/chain.md has the layout).
DB_META = "chain_meta"
DB_NODES = "chain_nodes"
DB_OPERATORS = "chain_operators"
DB_LOGINS = "chain_logins"
DB_SESSIONS = "chain_sessions"
_DBS = (DB_META, DB_NODES, DB_OPERATORS, DB_LOGINS, DB_SESSIONS)

# Reasons of ChainError (machine-readable; the gRPC layer sends them as is).
BAD_INPUT = "BAD_INPUT"
ALREADY_BOOTSTRAPPED = "ALREADY_BOOTSTRAPPED"
NOT_BOOTSTRAPPED = "NOT_BOOTSTRAPPED"
NODE_NOT_FOUND = "NODE_NOT_FOUND"
NODE_EXISTS = "NODE_EXISTS"
NODE_CLOSED = "NODE_CLOSED"
NODE_HAS_OPEN_CHILDREN = "NODE_HAS_OPEN_CHILDREN"
PARENT_KIND_INVALID = "PARENT_KIND_INVALID"
NOT_A_TERMINAL = "NOT_A_TERMINAL"
NOT_A_STORE = "NOT_A_STORE"
NOT_A_REGION = "NOT_A_REGION"
OPERATOR_NOT_FOUND = "OPERATOR_NOT_FOUND"
LOGIN_TAKEN = "LOGIN_TAKEN"
LAST_ADMIN = "LAST_ADMIN"
PASSWORD_CHANGED = "PASSWORD_CHANGED"
LOGIN_FAILED = "LOGIN_FAILED"
OPERATOR_LOCKED = "OPERATOR_LOCKED"
OPERATOR_DISABLED = "OPERATOR_DISABLED"
SELF_CHANGE = "SELF_CHANGE"


class ChainError(Exception):
    """An admin op was refused; nothing changed. `reason` is one of the constants above."""

    def __init__(self, reason: str, message: str = "") -> None:
        super().__init__(f"{reason}: {message}" if message else reason)
        self.reason = reason
        self.message = message


class AuthFailed(ChainError):
    """A login failed (LOGIN_FAILED, OPERATOR_LOCKED or OPERATOR_DISABLED)."""

    def __init__(self, reason: str, message: str = "", *, retry_after_s: int = 0) -> None:
        super().__init__(reason, message)
        self.retry_after_s = retry_after_s


# ChainConfig.refund_auth: an operator's session at the till, or the till alone.
REFUND_AUTH_MODES = ("operator", "terminal")


@dataclass(frozen=True)
class ChainConfig:
    # scrypt cost. N=2**17, r=8, p=1 is OWASP's recommended minimum for scrypt: 128 MiB
    # and about 0.3 s of one core per hash, which makes each guess at a stolen hash
    # expensive. Tests use tiny values. Each stored hash keeps its own parameters, so
    # raising them later re-hashes passwords at their next successful login.
    scrypt_n: int = 2**17
    scrypt_r: int = 8
    scrypt_p: int = 1
    # A session lasts one long shift.
    session_ttl_s: int = 12 * 3600
    # Sessions one operator may hold at once; logging in beyond drops the oldest.
    sessions_per_operator_max: int = 8
    # Failed logins in a row that lock the operator, and for how long.
    login_failures_max: int = 5
    lockout_s: int = 15 * 60
    # Who may refund at a till (PosService.Refund, docs/chain.md): "operator" (the
    # default) needs the session of an operator who holds `refund` at the till's store
    # (a store manager), presented with the request; "terminal" lets the till alone
    # refund, for a chain whose POS does its own manager approval.
    refund_auth: str = "operator"
    # Whether a till may refund a sale made at another store of the chain. Off, a refund
    # of another store's sale is PERMISSION_DENIED / REFUND_OTHER_STORE.
    cross_store_refunds: bool = False

    def validate(self) -> None:
        if self.scrypt_n < 2 or self.scrypt_n & (self.scrypt_n - 1):
            raise ValueError("scrypt_n must be a power of two >= 2")
        if self.scrypt_r < 1 or self.scrypt_p < 1:
            raise ValueError("scrypt_r and scrypt_p must be >= 1")
        if self.session_ttl_s < 60 or self.sessions_per_operator_max < 1:
            raise ValueError("session_ttl_s >= 60, sessions_per_operator_max >= 1")
        if self.login_failures_max < 1 or self.lockout_s < 1:
            raise ValueError("login_failures_max >= 1, lockout_s >= 1")
        if self.refund_auth not in REFUND_AUTH_MODES:
            raise ValueError(f"refund_auth must be one of {REFUND_AUTH_MODES}")


# --- secrets ----------------------------------------------------------------------------

def new_token() -> str:
    """A fresh token (terminal, session, bootstrap): TOKEN_BYTES random bytes from the OS
    as URL-safe base64, never starting with "-". About 1 in 64 encodings would, and a
    command line then reads the token as an option (`mms ... --session -x...`), so such
    a draw is thrown away and drawn again: that removes 1/64 of the values, 0.023 of
    the 256 bits. The one generator of every token mms issues."""
    while True:
        token = secrets.token_urlsafe(TOKEN_BYTES)
        if not token.startswith("-"):
            return token


def token_digest(token: str) -> bytes:
    """SHA-256 of a token: enough for 256-bit random tokens (docs/chain.md says why)."""
    return hashlib.sha256(token.encode()).digest()


def hash_password(password: str, config: ChainConfig) -> dict:
    """A fresh salted scrypt hash with its parameters, as stored."""
    _check_password(password)
    salt = secrets.token_bytes(16)
    n, r, p = config.scrypt_n, config.scrypt_r, config.scrypt_p
    return {"alg": "scrypt", "n": n, "r": r, "p": p, "salt": salt.hex(),
            "hash": _scrypt(password, salt, n, r, p).hex()}


def verify_password(password: str, stored: dict) -> bool:
    """Constant-time comparison against a stored hash (its own parameters)."""
    if not isinstance(password, str) or len(password) > PASSWORD_CHARS_MAX:
        return False
    if stored.get("alg") != "scrypt":
        return False
    got = _scrypt(password, bytes.fromhex(stored["salt"]), stored["n"], stored["r"], stored["p"])
    return hmac.compare_digest(got, bytes.fromhex(stored["hash"]))


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    # OpenSSL needs 128*r*(n+p+2) bytes; give it that plus slack.
    maxmem = 128 * r * (n + p + 2) + (1 << 20)
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=maxmem, dklen=32)


def _check_password(password: str) -> None:
    if not isinstance(password, str) or not PASSWORD_CHARS_MIN <= len(password) <= PASSWORD_CHARS_MAX:
        raise ChainError(BAD_INPUT, f"a password has {PASSWORD_CHARS_MIN}..{PASSWORD_CHARS_MAX} characters")


# --- records ----------------------------------------------------------------------------

class TerminalRef(NamedTuple):
    """Where a chain terminal's token was issued: its store and its own node id (the
    server's registry entry is server.rpc.auth.Terminal)."""

    store_id: int
    terminal_id: int


@dataclass(frozen=True)
class Node:
    node_id: int
    kind: NodeKind
    parent_id: int
    name: str
    created_s: int
    closed_s: int = 0
    # Terminals only: hex SHA-256 of the current token ("" when none) and when issued.
    token_sha256: str = field(default="", repr=False)
    token_issued_s: int = 0

    @property
    def closed(self) -> bool:
        return self.closed_s != 0

    def to_json(self) -> dict:
        return {"id": self.node_id, "kind": int(self.kind), "parent": self.parent_id,
                "name": self.name, "created_s": self.created_s, "closed_s": self.closed_s,
                "token_sha256": self.token_sha256, "token_issued_s": self.token_issued_s}

    @classmethod
    def from_json(cls, d: dict) -> Node:
        return cls(d["id"], NodeKind(d["kind"]), d["parent"], d["name"], d["created_s"],
                   d["closed_s"], d.get("token_sha256", ""), d.get("token_issued_s", 0))

    def audit(self) -> dict:
        """What the audit trail shows: never the token hash."""
        return {"id": self.node_id, "kind": self.kind.name.lower(), "parent": self.parent_id,
                "name": self.name, "closed": self.closed, "has_token": bool(self.token_sha256)}


@dataclass(frozen=True)
class Operator:
    operator_id: int
    login: str
    name: str
    role: Role
    home_store_id: int
    created_s: int
    disabled: bool = False
    failed_logins: int = 0
    locked_until_s: int = 0
    password: dict = field(default_factory=dict, repr=False)
    # The home region of a region-scoped role (rbac.REGION_SCOPED_ROLES); 0 otherwise.
    # Stored (and audited) only when set, so other operators' rows are unchanged.
    home_region_id: int = 0

    def to_json(self) -> dict:
        d = {"id": self.operator_id, "login": self.login, "name": self.name,
             "role": self.role.value, "home_store_id": self.home_store_id,
             "created_s": self.created_s, "disabled": self.disabled,
             "failed_logins": self.failed_logins, "locked_until_s": self.locked_until_s,
             "password": self.password}
        if self.home_region_id:
            d["home_region_id"] = self.home_region_id
        return d

    @classmethod
    def from_json(cls, d: dict) -> Operator:
        return cls(d["id"], d["login"], d["name"], Role(d["role"]), d["home_store_id"],
                   d["created_s"], d["disabled"], d["failed_logins"], d["locked_until_s"],
                   d["password"], d.get("home_region_id", 0))

    def audit(self) -> dict:
        """What the audit trail shows: never the password hash."""
        d = {"id": self.operator_id, "login": self.login, "name": self.name,
             "role": self.role.value, "home_store_id": self.home_store_id,
             "disabled": self.disabled, "failed_logins": self.failed_logins,
             "locked_until_s": self.locked_until_s}
        if self.home_region_id:
            d["home_region_id"] = self.home_region_id
        return d


@dataclass(frozen=True)
class Principal:
    """An authenticated operator as authorize() sees it, resolved from a session."""

    operator_id: int
    role: Role
    home_store_id: int
    expires_s: int = 0
    disabled: bool = False
    # A region-scoped role's region and the stores under it now (rbac.authorize and
    # rbac.report_scope read them); 0 and empty for every other role.
    home_region_id: int = 0
    region_stores: frozenset[int] = frozenset()


@dataclass(frozen=True)
class Session:
    """What login returns. `token` is shown once; only its SHA-256 is stored."""

    token: str | None
    operator_id: int
    role: Role
    home_store_id: int
    expires_s: int


@dataclass(frozen=True)
class IssuedToken:
    """A terminal's new token, shown once. None when the call was a replay of an issue
    that already committed: the first answer held the token and it is not kept, so a
    caller who lost it issues again with a new client id (which revokes the lost one)."""

    terminal_id: int
    store_id: int
    token: str | None


class _SessionRec(NamedTuple):
    operator_id: int
    created_s: int
    expires_s: int


def _login_key(login: str) -> bytes:
    return login.casefold().encode()


def _session_key(operator_id: int, digest: bytes) -> bytes:
    return u32(operator_id) + digest


def _dumps(d: dict) -> bytes:
    return json.dumps(d, separators=(",", ":"), sort_keys=True).encode()


def _reject(ctx: AdminContext, reason: str, message: str):
    ctx.reject(Result.OP_TYPE_INVALID, f"{reason}: {message}")


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not name.strip() or len(name) > NAME_CHARS_MAX:
        raise ChainError(BAD_INPUT, f"a name has 1..{NAME_CHARS_MAX} characters")
    return name.strip()


def _check_login(login: str) -> str:
    if (not isinstance(login, str) or not 1 <= len(login) <= LOGIN_CHARS_MAX
            or not _LOGIN_RE.match(login)):
        raise ChainError(BAD_INPUT, f"a login has 1..{LOGIN_CHARS_MAX} characters of "
                                    "letters, digits and . _ @ -")
    return login


# --- the chain --------------------------------------------------------------------------

class Chain:
    """The chain's structure and staff over one engine. One Chain per engine: it holds
    the in-memory indexes that after_commit keeps current."""

    def __init__(self, engine: Engine, config: ChainConfig | None = None) -> None:
        self.engine = engine
        self.config = config or ChainConfig()
        self.config.validate()
        self._lock = threading.Lock()
        self._stores_cache: dict[int, frozenset[int]] = {}
        self._dummy_hash: dict | None = None
        # Handles are opened in a write transaction of their own, which LMDB serialises
        # with the writer's: opening a database is never concurrent with another open.
        for name in _DBS:
            engine.store.named_db(name)
        self._load()
        # Made now, not at the first unknown login, which would then take two hashes
        # and so tell itself apart from a known one.
        self._dummy()

    def rebind(self, engine: Engine) -> None:
        """Serve from another engine over the same data (a standby promoted, a primary
        turned standby, a store bootstrapped again): its handles and a fresh load."""
        self.engine = engine
        # Through the engine's writer: a write transaction of this thread could wait for
        # the running writer (or the rollup tailer) while holding the GIL it needs.
        engine.ensure_dbs(_DBS)
        self._load()

    # --- loading and memory -----------------------------------------------------------

    def _load(self) -> None:
        db = self.engine.store.db
        nodes: dict[int, Node] = {}
        operators: dict[int, Operator] = {}
        sessions: dict[bytes, _SessionRec] = {}
        with self.engine.store.read() as txn:
            for _k, v in txn.cursor(db=db[DB_NODES]):
                n = Node.from_json(json.loads(bytes(v)))
                nodes[n.node_id] = n
            for _k, v in txn.cursor(db=db[DB_OPERATORS]):
                o = Operator.from_json(json.loads(bytes(v)))
                operators[o.operator_id] = o
            for k, v in txn.cursor(db=db[DB_SESSIONS]):
                k = bytes(k)
                d = json.loads(bytes(v))
                sessions[k[4:]] = _SessionRec(from_be(k[:4]), d["created_s"], d["expires_s"])
        self._nodes = nodes
        self._children: dict[int, list[int]] = {}
        for n in sorted(nodes.values(), key=lambda n: n.node_id):
            if n.parent_id:
                self._children.setdefault(n.parent_id, []).append(n.node_id)
        self._terminals = {bytes.fromhex(n.token_sha256): TerminalRef(n.parent_id, n.node_id)
                           for n in nodes.values()
                           if n.kind == NodeKind.TERMINAL and n.token_sha256 and not n.closed}
        self._operators = operators
        self._logins = {_login_key(o.login): o.operator_id for o in operators.values()}
        self._sessions = sessions

    def _set_node(self, node: Node, old: Node | None) -> None:
        """Memory after a committed node change (runs in the writer's after_commit)."""
        with self._lock:
            self._nodes[node.node_id] = node
            if old is None and node.parent_id:
                self._children.setdefault(node.parent_id, []).append(node.node_id)
            if old is not None and old.token_sha256:
                self._terminals.pop(bytes.fromhex(old.token_sha256), None)
            if node.kind == NodeKind.TERMINAL and node.token_sha256 and not node.closed:
                self._terminals[bytes.fromhex(node.token_sha256)] = TerminalRef(node.parent_id,
                                                                             node.node_id)
            self._stores_cache = {}

    def _set_operator(self, op: Operator, old: Operator | None) -> None:
        with self._lock:
            self._operators[op.operator_id] = op
            if old is not None and old.login != op.login:
                self._logins.pop(_login_key(old.login), None)
            self._logins[_login_key(op.login)] = op.operator_id

    # --- reads ------------------------------------------------------------------------

    def bootstrapped(self) -> bool:
        return HQ_ID in self._nodes

    def node(self, node_id: int) -> Node | None:
        return self._nodes.get(int(node_id))

    def children(self, node_id: int) -> list[Node]:
        return [self._nodes[i] for i in self._children.get(int(node_id), ())]

    def nodes(self, kind: NodeKind | None = None) -> list[Node]:
        return sorted((n for n in self._nodes.values() if kind is None or n.kind == kind),
                      key=lambda n: n.node_id)

    def stores_under(self, node_id: int) -> frozenset[int]:
        """Ids of the stores in node's subtree (the store itself for a store; its store
        for a terminal), closed ones included: reports over a period still count them."""
        node_id = int(node_id)
        cached = self._stores_cache.get(node_id)
        if cached is not None:
            return cached
        node = self._nodes.get(node_id)
        if node is None:
            raise ChainError(NODE_NOT_FOUND, f"node {node_id}")
        if node.kind == NodeKind.TERMINAL:
            out = frozenset({node.parent_id})
        else:
            found, todo = set(), [node_id]
            while todo:
                n = self._nodes[todo.pop()]
                if n.kind == NodeKind.STORE:
                    found.add(n.node_id)
                elif n.kind != NodeKind.TERMINAL:
                    todo.extend(self._children.get(n.node_id, ()))
            out = frozenset(found)
        self._stores_cache[node_id] = out
        return out

    def region_of(self, store_id: int) -> int:
        node = self._nodes.get(int(store_id))
        if node is None or node.kind != NodeKind.STORE:
            raise ChainError(NOT_A_STORE, f"node {store_id}")
        return node.parent_id

    def operator(self, operator_id: int) -> Operator | None:
        return self._operators.get(int(operator_id))

    def operator_by_login(self, login: str) -> Operator | None:
        oid = self._logins.get(_login_key(login)) if isinstance(login, str) else None
        return None if oid is None else self._operators.get(oid)

    def operators(self, store_id: int | None = None) -> list[Operator]:
        return sorted((o for o in self._operators.values()
                       if store_id is None or o.home_store_id == store_id),
                      key=lambda o: o.operator_id)

    def verify_terminal_token(self, token: str | None) -> TerminalRef | None:
        """The terminal holding token, or None (unknown, revoked, or its terminal or
        store closed). One SHA-256 and one dict lookup; no I/O, no side effects."""
        if not token or not isinstance(token, str) or len(token) > TOKEN_CHARS_MAX:
            return None
        return self._terminals.get(token_digest(token))

    def terminal_by_digest(self, digest: bytes) -> TerminalRef | None:
        """verify_terminal_token for a token already hashed (token_digest): the server
        hashes a till's token once for all its token sources."""
        return self._terminals.get(digest)

    def principal(self, session_token: str | None) -> Principal | None:
        """The operator behind a session token, or None (unknown, logged out, expired,
        or the operator is disabled). Cheap: one SHA-256 and two dict lookups."""
        if not session_token or not isinstance(session_token, str) \
                or len(session_token) > TOKEN_CHARS_MAX:
            return None
        rec = self._sessions.get(token_digest(session_token))
        if rec is None or rec.expires_s <= self.engine.clock():
            return None
        op = self._operators.get(rec.operator_id)
        if op is None or op.disabled:
            return None
        if op.home_region_id:
            # Resolved on every call (cached per tree change), so a store opened in
            # or moved out of the region counts at once.
            return Principal(op.operator_id, op.role, op.home_store_id, rec.expires_s,
                             home_region_id=op.home_region_id,
                             region_stores=self.stores_under(op.home_region_id))
        return Principal(op.operator_id, op.role, op.home_store_id, rec.expires_s)

    # --- running ops ------------------------------------------------------------------

    def _run(self, client_id: bytes, op: ChainOp, build: Callable[[AdminContext], dict], *,
             operator_id: int, store_id: int) -> AdminResult:
        fut = self.engine.admin(client_id, op, build, operator_id=operator_id,
                                store_id=store_id)
        res = fut.result(timeout=ADMIN_WAIT_S)
        if res.code != Result.OK:
            reason, _, message = res.detail.partition(": ")
            raise ChainError(reason, message)
        return res

    @staticmethod
    def _get(ctx: AdminContext, db: str, key: bytes) -> dict | None:
        raw = ctx.get(db, key)
        return None if raw is None else json.loads(bytes(raw))

    def _node_in(self, ctx: AdminContext, node_id: int) -> Node:
        d = self._get(ctx, DB_NODES, u32(node_id))
        if d is None:
            _reject(ctx, NODE_NOT_FOUND, f"node {node_id}")
        return Node.from_json(d)

    def _operator_in(self, ctx: AdminContext, operator_id: int) -> Operator:
        d = self._get(ctx, DB_OPERATORS, u32(operator_id))
        if d is None:
            _reject(ctx, OPERATOR_NOT_FOUND, f"operator {operator_id}")
        return Operator.from_json(d)

    @staticmethod
    def _next_id(ctx: AdminContext, key: bytes) -> int:
        raw = ctx.get(DB_META, key)
        return from_be(bytes(raw)) if raw is not None else 1

    def _put_node(self, ctx: AdminContext, node: Node, old: Node | None) -> None:
        ctx.put(DB_NODES, u32(node.node_id), _dumps(node.to_json()))
        ctx.after_commit(lambda: self._set_node(node, old))

    def _put_operator(self, ctx: AdminContext, op: Operator, old: Operator | None) -> None:
        ctx.put(DB_OPERATORS, u32(op.operator_id), _dumps(op.to_json()))
        if old is None or old.login != op.login:
            if old is not None:
                ctx.delete(DB_LOGINS, _login_key(old.login))
            ctx.put(DB_LOGINS, _login_key(op.login), u32(op.operator_id))
        ctx.after_commit(lambda: self._set_operator(op, old))

    def _sessions_in(self, ctx: AdminContext, operator_id: int) -> Iterator[tuple[bytes, dict]]:
        cur = ctx.txn.cursor(db=ctx.db(DB_SESSIONS))
        prefix = u32(operator_id)
        if not cur.set_range(prefix):
            return
        for k, v in cur:
            k = bytes(k)
            if not k.startswith(prefix):
                break
            yield k, json.loads(bytes(v))

    def _drop_sessions(self, ctx: AdminContext, operator_id: int) -> int:
        keys = [k for k, _ in self._sessions_in(ctx, operator_id)]
        for k in keys:
            ctx.delete(DB_SESSIONS, k)

        def forget() -> None:
            for k in keys:
                self._sessions.pop(k[4:], None)

        ctx.after_commit(forget)
        return len(keys)

    # --- bootstrap --------------------------------------------------------------------

    def bootstrap(self, client_id: bytes, *, chain_name: str, admin_login: str,
                  admin_password: str, admin_name: str = "") -> Operator:
        """Create HQ (node 1) and the first admin. Refused once the chain exists: every
        later operator is created by an authorized one."""
        chain_name = _check_name(chain_name)
        admin_login = _check_login(admin_login)
        admin_name = _check_name(admin_name or admin_login)
        pw = hash_password(admin_password, self.config)

        def build(ctx: AdminContext) -> dict:
            if ctx.get(DB_NODES, u32(HQ_ID)) is not None:
                _reject(ctx, ALREADY_BOOTSTRAPPED, "the chain has its HQ already")
            hq = Node(HQ_ID, NodeKind.HQ, 0, chain_name, ctx.now)
            self._put_node(ctx, hq, None)
            ctx.put(DB_META, b"next_node_id", u32(HQ_ID + 1))
            admin = Operator(1, admin_login, admin_name, Role.ADMIN, 0, ctx.now, password=pw)
            self._put_operator(ctx, admin, None)
            ctx.put(DB_META, b"next_operator_id", u32(2))
            ctx.detail = {"before": None, "after": {"hq": hq.audit(), "admin": admin.audit()}}
            return {"node_id": HQ_ID, "operator_id": 1}

        res = self._run(client_id, ChainOp.BOOTSTRAP, build, operator_id=0, store_id=0)
        return self._operators[int(res.value["operator_id"])]

    # --- nodes ------------------------------------------------------------------------

    def _authorize_node(self, actor: PrincipalLike | None, kind: NodeKind, parent_id: int) -> None:
        if kind == NodeKind.TERMINAL:
            authorize(actor, "terminal.write", store_id=parent_id)
        else:
            authorize(actor, "chain.write")

    def create_node(self, actor: PrincipalLike | None, client_id: bytes, *, kind: NodeKind | int,
                    parent_id: int, name: str, node_id: int | None = None) -> Node:
        """A region (under HQ), store (under a region) or terminal (under a store). node_id
        picks the id (a chain's existing store numbers); by default the next free one."""
        if int(kind) not in NodeKind._value2member_map_:
            raise ChainError(BAD_INPUT, f"kind: {int(kind)} is not a node kind "
                             "(2 region, 3 store, 4 terminal)")
        kind = NodeKind(int(kind))
        if kind == NodeKind.HQ:
            raise ChainError(BAD_INPUT, "HQ is created by bootstrap")
        name = _check_name(name)
        parent_id = int(parent_id)
        self._authorize_node(actor, kind, parent_id)
        if node_id is not None and not HQ_ID < int(node_id) <= ID_MAX:
            raise ChainError(BAD_INPUT, f"node ids are {HQ_ID + 1}..{ID_MAX}")

        def build(ctx: AdminContext) -> dict:
            parent = self._node_in(ctx, parent_id)
            if parent.kind != PARENT_KIND[kind]:
                _reject(ctx, PARENT_KIND_INVALID,
                        f"a {kind.name.lower()} sits under a {PARENT_KIND[kind].name.lower()}, "
                        f"node {parent_id} is a {parent.kind.name.lower()}")
            if parent.closed:
                _reject(ctx, NODE_CLOSED, f"node {parent_id} is closed")
            next_id = self._next_id(ctx, b"next_node_id")
            nid = int(node_id) if node_id is not None else next_id
            if nid > ID_MAX:
                _reject(ctx, BAD_INPUT, "node ids are exhausted")
            if ctx.get(DB_NODES, u32(nid)) is not None:
                _reject(ctx, NODE_EXISTS, f"node {nid} exists")
            node = Node(nid, kind, parent_id, name, ctx.now)
            self._put_node(ctx, node, None)
            ctx.put(DB_META, b"next_node_id", u32(max(next_id, nid + 1)))
            ctx.detail = {"before": None, "after": node.audit()}
            return {"node_id": nid}

        res = self._run(client_id, ChainOp.NODE_CREATE, build, operator_id=_actor_id(actor),
                        store_id=self._event_store(kind, parent_id, None))
        return self._nodes[int(res.value["node_id"])]

    def _event_store(self, kind: NodeKind, parent_id: int, node_id: int | None) -> int:
        """The store an event about a node belongs to (0: chain level)."""
        if kind == NodeKind.TERMINAL:
            return parent_id
        if kind == NodeKind.STORE and node_id is not None:
            return node_id
        return 0

    def _existing(self, node_id: int) -> Node:
        node = self._nodes.get(int(node_id))
        if node is None:
            raise ChainError(NODE_NOT_FOUND, f"node {node_id}")
        return node

    def rename_node(self, actor: PrincipalLike | None, client_id: bytes, node_id: int,
                    name: str) -> Node:
        name = _check_name(name)
        known = self._existing(node_id)
        if known.kind == NodeKind.HQ:
            authorize(actor, "chain.write")
        else:
            self._authorize_node(actor, known.kind, known.parent_id)

        def build(ctx: AdminContext) -> dict:
            old = self._node_in(ctx, known.node_id)
            if old.closed:
                _reject(ctx, NODE_CLOSED, f"node {old.node_id} is closed")
            new = replace(old, name=name)
            self._put_node(ctx, new, old)
            ctx.detail = {"before": old.audit(), "after": new.audit()}
            return {"node_id": new.node_id}

        self._run(client_id, ChainOp.NODE_RENAME, build, operator_id=_actor_id(actor),
                  store_id=self._event_store(known.kind, known.parent_id, known.node_id))
        return self._nodes[known.node_id]

    def close_node(self, actor: PrincipalLike | None, client_id: bytes, node_id: int) -> Node:
        """Close a region, store or terminal. Its open children must be closed first, so
        nothing is left working under a closed node. Closing a terminal revokes its
        token. A closed node keeps its id and history; it cannot reopen."""
        known = self._existing(node_id)
        if known.kind == NodeKind.HQ:
            raise ChainError(BAD_INPUT, "HQ cannot be closed")
        self._authorize_node(actor, known.kind, known.parent_id)

        def build(ctx: AdminContext) -> dict:
            old = self._node_in(ctx, known.node_id)
            if old.closed:
                _reject(ctx, NODE_CLOSED, f"node {old.node_id} is closed already")
            open_children = [c for c in self._children.get(old.node_id, ())
                             if not self._node_in(ctx, c).closed]
            if open_children:
                _reject(ctx, NODE_HAS_OPEN_CHILDREN,
                        f"node {old.node_id} has open children {open_children[:10]}")
            new = replace(old, closed_s=ctx.now, token_sha256="", token_issued_s=0)
            self._put_node(ctx, new, old)
            ctx.detail = {"before": old.audit(), "after": new.audit()}
            return {"node_id": new.node_id}

        self._run(client_id, ChainOp.NODE_CLOSE, build, operator_id=_actor_id(actor),
                  store_id=self._event_store(known.kind, known.parent_id, known.node_id))
        return self._nodes[known.node_id]

    # --- terminal tokens --------------------------------------------------------------

    def _terminal(self, terminal_id: int) -> Node:
        node = self._existing(terminal_id)
        if node.kind != NodeKind.TERMINAL:
            raise ChainError(NOT_A_TERMINAL, f"node {terminal_id} is a {node.kind.name.lower()}")
        return node

    def issue_terminal_token(self, actor: PrincipalLike | None, client_id: bytes,
                             terminal_id: int) -> IssuedToken:
        """A new token for the terminal, returned once; the previous one stops working
        in the same commit."""
        known = self._terminal(terminal_id)
        authorize(actor, "terminal.write", store_id=known.parent_id)
        token = new_token()
        digest_hex = token_digest(token).hex()

        def build(ctx: AdminContext) -> dict:
            old = self._node_in(ctx, known.node_id)
            if old.closed:
                _reject(ctx, NODE_CLOSED, f"terminal {old.node_id} is closed")
            new = replace(old, token_sha256=digest_hex, token_issued_s=ctx.now)
            self._put_node(ctx, new, old)
            ctx.detail = {"before": old.audit(), "after": new.audit(),
                          "replaced_token": bool(old.token_sha256)}
            return {"terminal_id": new.node_id, "store_id": new.parent_id}

        res = self._run(client_id, ChainOp.TERMINAL_TOKEN_ISSUE, build,
                        operator_id=_actor_id(actor), store_id=known.parent_id)
        return IssuedToken(known.node_id, known.parent_id, None if res.replayed else token)

    def revoke_terminal_token(self, actor: PrincipalLike | None, client_id: bytes,
                              terminal_id: int) -> None:
        known = self._terminal(terminal_id)
        authorize(actor, "terminal.write", store_id=known.parent_id)

        def build(ctx: AdminContext) -> dict:
            old = self._node_in(ctx, known.node_id)
            new = replace(old, token_sha256="", token_issued_s=0)
            self._put_node(ctx, new, old)
            ctx.detail = {"before": old.audit(), "after": new.audit()}
            return {"terminal_id": new.node_id, "had_token": bool(old.token_sha256)}

        self._run(client_id, ChainOp.TERMINAL_TOKEN_REVOKE, build, operator_id=_actor_id(actor),
                  store_id=known.parent_id)

    # --- operators --------------------------------------------------------------------

    def _authorize_staffing(self, actor: PrincipalLike | None, role: Role,
                            home_store_id: int) -> None:
        """actor may have an operator of role at home_store_id (0: chain-wide)."""
        authorize(actor, "operator.write", store_id=home_store_id or None)
        check_grant(actor, role)

    def _check_home(self, role: Role, home_store_id: int) -> int:
        return self._home_node(role, home_store_id, is_store_scoped(role), NodeKind.STORE,
                               "store", NOT_A_STORE)

    def _check_region(self, role: Role, home_region_id: int) -> int:
        """The home region of a region-scoped role (an open region node), else 0."""
        return self._home_node(role, home_region_id, is_region_scoped(role), NodeKind.REGION,
                               "region", NOT_A_REGION)

    def _home_node(self, role: Role, node_id: int, scoped: bool, kind: NodeKind, what: str,
                   not_a: str) -> int:
        """The home node (an open node of kind) of a role scoped to one, else 0; a role
        not scoped so has none."""
        if scoped:
            node = self._nodes.get(int(node_id))
            if node is None or node.kind != kind:
                raise ChainError(not_a, f"role {role.value} needs a home {what}, "
                                        f"node {node_id} is not one")
            if node.closed:
                raise ChainError(NODE_CLOSED, f"{what} {node_id} is closed")
            return node.node_id
        if node_id:
            raise ChainError(BAD_INPUT, f"role {role.value} has no home {what}")
        return 0

    def create_operator(self, actor: PrincipalLike | None, client_id: bytes, *, login: str,
                        password: str, role: Role | str, name: str = "",
                        home_store_id: int = 0, home_region_id: int = 0) -> Operator:
        login = _check_login(login)
        name = _check_name(name or login)
        role = role_of(role)
        home = self._check_home(role, home_store_id)
        region = self._check_region(role, home_region_id)
        self._authorize_staffing(actor, role, home)
        if not self.bootstrapped():
            raise ChainError(NOT_BOOTSTRAPPED, "bootstrap the chain first")
        pw = hash_password(password, self.config)

        def build(ctx: AdminContext) -> dict:
            if ctx.get(DB_LOGINS, _login_key(login)) is not None:
                _reject(ctx, LOGIN_TAKEN, f"login {login!r} is taken")
            oid = self._next_id(ctx, b"next_operator_id")
            if oid > ID_MAX:
                _reject(ctx, BAD_INPUT, "operator ids are exhausted")
            op = Operator(oid, login, name, role, home, ctx.now, password=pw,
                          home_region_id=region)
            self._put_operator(ctx, op, None)
            ctx.put(DB_META, b"next_operator_id", u32(oid + 1))
            ctx.detail = {"before": None, "after": op.audit()}
            return {"operator_id": oid}

        res = self._run(client_id, ChainOp.OPERATOR_CREATE, build, operator_id=_actor_id(actor),
                        store_id=home)
        return self._operators[int(res.value["operator_id"])]

    def _target(self, actor: PrincipalLike | None, operator_id: int) -> Operator:
        op = self._operators.get(int(operator_id))
        if op is None:
            raise ChainError(OPERATOR_NOT_FOUND, f"operator {operator_id}")
        self._authorize_staffing(actor, op.role, op.home_store_id)
        return op

    def _change_operator(self, actor: PrincipalLike | None, client_id: bytes, op_type: ChainOp,
                         known: Operator, change: Callable[[AdminContext, Operator], Operator],
                         *, drop_sessions: bool = False, extra: dict | None = None) -> Operator:
        def build(ctx: AdminContext) -> dict:
            old = self._operator_in(ctx, known.operator_id)
            new = change(ctx, old)
            if old.role == Role.ADMIN and not old.disabled and (new.role != Role.ADMIN or new.disabled):
                admins = [o for o in self._operators.values()
                          if o.role == Role.ADMIN and not o.disabled]
                if len(admins) <= 1:
                    _reject(ctx, LAST_ADMIN, "the chain would have no enabled admin left")
            self._put_operator(ctx, new, old)
            dropped = self._drop_sessions(ctx, new.operator_id) if drop_sessions else 0
            ctx.detail = {"before": old.audit(), "after": new.audit(), **(extra or {})}
            if drop_sessions:
                ctx.detail["sessions_ended"] = dropped
            return {"operator_id": new.operator_id}

        self._run(client_id, op_type, build, operator_id=_actor_id(actor),
                  store_id=known.home_store_id)
        return self._operators[known.operator_id]

    def set_operator_role(self, actor: PrincipalLike | None, client_id: bytes, operator_id: int,
                          role: Role | str, home_store_id: int = 0,
                          home_region_id: int = 0) -> Operator:
        """Move an operator to a role (and home store). The actor must be allowed to
        staff both the old and the new place. Their sessions end: a session never
        carries powers its operator no longer has, nor lacks ones just given."""
        known = self._target(actor, operator_id)
        role = role_of(role)
        home = self._check_home(role, home_store_id)
        region = self._check_region(role, home_region_id)
        self._authorize_staffing(actor, role, home)
        if actor is not None and int(actor.operator_id) == known.operator_id:
            raise PermissionDenied(SELF_CHANGE, "operator.write",
                                   "an operator cannot change their own role")

        def change(ctx: AdminContext, old: Operator) -> Operator:
            return replace(old, role=role, home_store_id=home, home_region_id=region)

        return self._change_operator(actor, client_id, ChainOp.OPERATOR_SET_ROLE, known, change,
                                     drop_sessions=True)

    def rename_operator(self, actor: PrincipalLike | None, client_id: bytes, operator_id: int,
                        name: str) -> Operator:
        known = self._target(actor, operator_id)
        name = _check_name(name)
        return self._change_operator(actor, client_id, ChainOp.OPERATOR_RENAME, known,
                                     lambda ctx, old: replace(old, name=name))

    def disable_operator(self, actor: PrincipalLike | None, client_id: bytes,
                         operator_id: int) -> Operator:
        """Disable an operator and end their sessions at once. The last enabled admin
        cannot be disabled."""
        known = self._target(actor, operator_id)
        return self._change_operator(actor, client_id, ChainOp.OPERATOR_DISABLE, known,
                                     lambda ctx, old: replace(old, disabled=True),
                                     drop_sessions=True)

    def enable_operator(self, actor: PrincipalLike | None, client_id: bytes,
                        operator_id: int) -> Operator:
        known = self._target(actor, operator_id)
        if known.home_store_id:
            self._check_home(known.role, known.home_store_id)
        return self._change_operator(actor, client_id, ChainOp.OPERATOR_ENABLE, known,
                                     lambda ctx, old: replace(old, disabled=False))

    def unlock_operator(self, actor: PrincipalLike | None, client_id: bytes,
                        operator_id: int) -> Operator:
        known = self._target(actor, operator_id)
        return self._change_operator(actor, client_id, ChainOp.OPERATOR_UNLOCK, known,
                                     lambda ctx, old: replace(old, failed_logins=0,
                                                              locked_until_s=0))

    def reset_password(self, actor: PrincipalLike | None, client_id: bytes, operator_id: int,
                       new_password: str) -> Operator:
        """Set another operator's password (operator.write over them); ends their
        sessions and lifts a lockout."""
        known = self._target(actor, operator_id)
        pw = hash_password(new_password, self.config)
        return self._change_operator(
            actor, client_id, ChainOp.OPERATOR_SET_PASSWORD, known,
            lambda ctx, old: replace(old, password=pw, failed_logins=0, locked_until_s=0),
            drop_sessions=True, extra={"password_changed": True, "by": "reset"})

    def change_own_password(self, actor: PrincipalLike | None, client_id: bytes,
                            old_password: str, new_password: str) -> Operator:
        """An operator changes their own password; the current one must be given, so a
        session left open on a counter cannot take the account over. Other sessions end."""
        if actor is None:
            raise PermissionDenied("NOT_AUTHENTICATED", "operator.self", "no valid session")
        known = self._operators.get(int(actor.operator_id))
        if known is None or known.disabled:
            raise PermissionDenied("OPERATOR_DISABLED", "operator.self", "operator not active")
        if not verify_password(old_password, known.password):
            raise AuthFailed(LOGIN_FAILED, "the current password is wrong")
        pw = hash_password(new_password, self.config)
        checked = known.password["hash"]

        def change(ctx: AdminContext, old: Operator) -> Operator:
            if old.password.get("hash") != checked:
                _reject(ctx, PASSWORD_CHANGED, "the password changed meanwhile; try again")
            return replace(old, password=pw)

        return self._change_operator(actor, client_id, ChainOp.OPERATOR_SET_PASSWORD, known,
                                     change, drop_sessions=True,
                                     extra={"password_changed": True, "by": "self"})

    # --- login and sessions -----------------------------------------------------------

    def _dummy(self) -> dict:
        if self._dummy_hash is None:
            self._dummy_hash = hash_password(secrets.token_urlsafe(16), self.config)
        return self._dummy_hash

    def login(self, login: str, password: str) -> Session:
        """Check a password (scrypt, in this thread) and open a session. Raises
        AuthFailed: LOGIN_FAILED for an unknown login or a wrong password (the same
        answer and about the same time, so logins cannot be probed), OPERATOR_LOCKED
        after login_failures_max wrong passwords in a row (for lockout_s), and
        OPERATOR_DISABLED for a right password of a disabled operator. Every wrong
        password of a known login is journalled and audited, as is every login."""
        now = self.engine.clock()
        op = self.operator_by_login(login) if isinstance(login, str) else None
        if op is None:
            verify_password(password if isinstance(password, str) else "", self._dummy())
            raise AuthFailed(LOGIN_FAILED, "wrong login or password")
        if op.locked_until_s > now:
            raise AuthFailed(OPERATOR_LOCKED, f"locked for {op.locked_until_s - now} s",
                             retry_after_s=op.locked_until_s - now)
        ok = verify_password(password, op.password) if isinstance(password, str) else False
        if ok and op.disabled:
            raise AuthFailed(OPERATOR_DISABLED, "the operator is disabled")
        checked = op.password["hash"]
        cfg = self.config
        token = new_token() if ok else None
        digest = token_digest(token) if token else b""
        stale = ok and (op.password.get("n"), op.password.get("r"), op.password.get("p")) != (
            cfg.scrypt_n, cfg.scrypt_r, cfg.scrypt_p)
        rehashed = hash_password(password, cfg) if stale else None

        def build(ctx: AdminContext) -> dict:
            old = self._operator_in(ctx, op.operator_id)
            if old.password.get("hash") != checked:
                _reject(ctx, LOGIN_FAILED, "the password changed meanwhile")
            if old.locked_until_s > ctx.now:
                _reject(ctx, OPERATOR_LOCKED, f"locked for {old.locked_until_s - ctx.now} s")
            if not ok:
                failed = old.failed_logins + 1
                locked = ctx.now + cfg.lockout_s if failed >= cfg.login_failures_max else 0
                new = replace(old, failed_logins=0 if locked else failed, locked_until_s=locked)
                self._put_operator(ctx, new, old)
                ctx.detail = {"before": {"failed_logins": old.failed_logins},
                              "after": {"failed_logins": new.failed_logins,
                                        "locked_until_s": new.locked_until_s}}
                return {"ok": False, "operator_id": old.operator_id, "locked_until_s": locked}
            if old.disabled:
                _reject(ctx, OPERATOR_DISABLED, "the operator is disabled")
            new = replace(old, failed_logins=0, locked_until_s=0,
                          password=rehashed if rehashed else old.password)
            if new != old:
                self._put_operator(ctx, new, old)
            # Expired sessions of this operator go now; beyond the bound the oldest go.
            live, gone = [], []
            for k, d in self._sessions_in(ctx, old.operator_id):
                (gone if d["expires_s"] <= ctx.now else live).append(
                    (d["created_s"], d.get("no", 0), k))
            live.sort()
            evicted = live[: max(0, len(live) - cfg.sessions_per_operator_max + 1)]
            gone = [k for *_, k in gone + evicted]
            for k in gone:
                ctx.delete(DB_SESSIONS, k)
            expires = ctx.now + cfg.session_ttl_s
            # Sessions are numbered so that "oldest" is exact within one second too.
            no = self._next_id(ctx, b"next_session_no")
            ctx.put(DB_META, b"next_session_no", u64(no + 1))
            ctx.put(DB_SESSIONS, _session_key(old.operator_id, digest),
                    _dumps({"created_s": ctx.now, "expires_s": expires, "no": no}))
            rec = _SessionRec(old.operator_id, ctx.now, expires)

            def remember() -> None:
                for k in gone:
                    self._sessions.pop(k[4:], None)
                self._sessions[digest] = rec

            ctx.after_commit(remember)
            ctx.detail = {"before": {"failed_logins": old.failed_logins},
                          "after": {"failed_logins": 0, "session_expires_s": expires},
                          "sessions_ended": len(gone), "rehashed": bool(rehashed)}
            return {"ok": True, "operator_id": old.operator_id, "expires_s": expires}

        # A login is not retried by its client (a user with no answer logs in again), so
        # its client id is fresh each time.
        res = self._run(new_client_id(), ChainOp.LOGIN if ok else ChainOp.LOGIN_FAILED, build,
                        operator_id=op.operator_id, store_id=op.home_store_id)
        if not res.value["ok"]:
            locked = int(res.value["locked_until_s"])
            if locked:
                raise AuthFailed(OPERATOR_LOCKED, "too many failed logins",
                                 retry_after_s=locked - now)
            raise AuthFailed(LOGIN_FAILED, "wrong login or password")
        return Session(token, op.operator_id, op.role, op.home_store_id,
                       int(res.value["expires_s"]))

    def logout(self, session_token: str) -> bool:
        """End a session. False when it was not open (unknown, expired, ended)."""
        if not session_token or not isinstance(session_token, str) \
                or len(session_token) > TOKEN_CHARS_MAX:
            return False
        digest = token_digest(session_token)
        rec = self._sessions.get(digest)
        if rec is None:
            return False
        key = _session_key(rec.operator_id, digest)

        def build(ctx: AdminContext) -> dict:
            had = ctx.get(DB_SESSIONS, key) is not None
            if had:
                ctx.delete(DB_SESSIONS, key)
            ctx.after_commit(lambda: self._sessions.pop(digest, None))
            ctx.detail = {"before": {"session": had}, "after": {"session": False}}
            return {"ended": had}

        op = self._operators.get(rec.operator_id)
        res = self._run(new_client_id(), ChainOp.LOGOUT, build, operator_id=rec.operator_id,
                        store_id=op.home_store_id if op else 0)
        return bool(res.value["ended"])


def _actor_id(actor: PrincipalLike | None) -> int:
    return int(actor.operator_id) if actor is not None else 0


# --- audit ------------------------------------------------------------------------------

def audit_log(engine: Engine, since_seq: int = 0, operator_id: int | None = None,
              store_id: int | None = None, limit: int = 100) -> list[dict]:
    """Admin events with seq > since_seq, oldest first, at most limit (<= AUDIT_PAGE_MAX):
    [{seq, op, time_s, operator_id, store_id, detail, result}]. Page on by passing the
    last seq seen. operator_id / store_id keep only that operator's / store's events
    (store_id is what a store manager's audit.read is limited to). op is the engine's
    name for its own ops and ChainOp's name for this module's."""
    limit = max(0, min(int(limit), AUDIT_PAGE_MAX))
    out: list[dict] = []
    if limit == 0:
        return out
    with engine.store.read() as txn:
        cur = txn.cursor(db=engine.store.db["events"])
        if not cur.set_range(u64(int(since_seq) + 1)):
            return out
        for k, v in cur:
            ev = json.loads(bytes(v))
            if operator_id is not None and ev.get("operator_id") != operator_id:
                continue
            if store_id is not None and ev.get("store_id") != store_id:
                continue
            ev["seq"] = from_be(bytes(k))
            ev["op"] = op_name(ev.get("op"))
            out.append(ev)
            if len(out) >= limit:
                break
    return out


def audit_count(engine: Engine, since_seq: int = 0, operator_id: int | None = None,
                store_id: int | None = None) -> int:
    """How many admin events audit_log would page through after since_seq with the same
    filters (a scan of the events after since_seq)."""
    n = 0
    with engine.store.read() as txn:
        cur = txn.cursor(db=engine.store.db["events"])
        if not cur.set_range(u64(int(since_seq) + 1)):
            return 0
        if operator_id is None and store_id is None:
            return sum(1 for _ in cur.iternext(keys=True, values=False))
        for _k, v in cur:
            ev = json.loads(bytes(v))
            if operator_id is not None and ev.get("operator_id") != operator_id:
                continue
            if store_id is not None and ev.get("store_id") != store_id:
                continue
            n += 1
    return n

__all__ = [
    "AuthFailed", "Chain", "ChainConfig", "ChainError", "ChainOp", "IssuedToken", "Node",
    "NodeKind", "Operator", "Principal", "Session", "TerminalRef", "audit_count", "audit_log",
    "hash_password",
    "token_digest", "verify_password",
]
