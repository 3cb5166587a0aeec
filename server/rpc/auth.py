"""Terminal tokens: each terminal presents `authorization: Bearer <token>`.

The registry keeps only sha256(token). Tokens are 32 random bytes from the OS (256
bits), so nobody can search the preimage space; a slow password hash (bcrypt, argon2)
protects low-entropy human passwords and would only add a millisecond to every call.
A leaked registry file therefore gives no usable token, and checking a token costs one
sha256 and one dict lookup per source; a token that authenticated keeps its sha256
(TokenDigests), so a till's later calls cost the lookups alone.

The registry is a JSON file, reloaded when its modification time changes, so revoking
a terminal (`"revoked": true`, or removing it) takes effect within a second without a
restart.

There is one interface (`authenticate(token) -> Terminal | None`) and two sources: this
file registry (`mms serve --config`, the demo, the benchmark) and the chain's terminals
(`ChainTerminals`, tokens issued with IssueTerminalToken and kept in LMDB). A server
consults both through `TerminalSources`; the chain's come first.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from typing import Protocol

# Terminal tokens of the file registry come from the chain's one generator (32 random
# bytes, URL-safe base64, never starting with "-").
from core.domain.chain import TOKEN_BYTES, new_token, token_digest  # noqa: F401 (re-exported)

ROLE_POS = "pos"
ROLE_ADMIN = "admin"
ROLES = (ROLE_POS, ROLE_ADMIN)
# Stat the registry file at most this often; revocations apply within this delay.
RELOAD_CHECK_SECONDS = 1.0
# A bound on the header we hash, far above any token we issue.
TOKEN_CHARS_MAX = 256


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Terminal:
    terminal_id: int
    store_id: int
    token_sha256: str
    role: str = ROLE_POS
    name: str = ""
    revoked: bool = False

    def validate(self) -> None:
        if not (0 < self.terminal_id < 2**32 and 0 <= self.store_id < 2**32):
            raise ValueError(f"terminal {self.terminal_id}: ids must fit in 32 bits")
        if self.role not in ROLES:
            raise ValueError(f"terminal {self.terminal_id}: role must be one of {ROLES}")
        try:
            hexed = len(bytes.fromhex(self.token_sha256)) == 32
        except ValueError:
            hexed = False
        if len(self.token_sha256) != 64 or not hexed:
            raise ValueError(f"terminal {self.terminal_id}: token_sha256 must be 64 hex chars")


class TokenDigests:
    """SHA-256 of the tokens that authenticated (token_digest), kept so that a till's
    token is hashed once, not on every call. Only the hash is kept, never the answer:
    every call still asks the sources with it, so a revocation counts at once. Tokens
    that did not authenticate are never kept (nobody fills it with guesses), and at most
    TERMINAL_CACHE_MAX are: past that a token is hashed on each call, as before."""

    def __init__(self, max_entries: int | None = None) -> None:
        self._known: dict[str, bytes] = {}
        self._max = TERMINAL_CACHE_MAX if max_entries is None else max_entries

    def get(self, token: str) -> bytes:
        digest = self._known.get(token)
        return digest if digest is not None else token_digest(token)

    def keep(self, token: str, digest: bytes) -> None:
        if len(self._known) < self._max and token not in self._known:
            self._known[token] = digest

    def __len__(self) -> int:
        return len(self._known)


def _well_formed(token) -> bool:
    return bool(token) and isinstance(token, str) and len(token) <= TOKEN_CHARS_MAX


class Registry:
    """Terminals by token hash. Thread-safe; cheap to consult on every call."""

    def __init__(self, terminals: list[Terminal] | None = None, path: str | None = None) -> None:
        self._lock = threading.Lock()
        self._path = path
        self._mtime_ns = -1
        self._next_check = 0.0
        self._by_hash: dict[bytes, Terminal] = {}  # by token_digest
        self._digests = TokenDigests()
        if terminals is not None:
            self._set(terminals)
        if path is not None:
            self._reload_if_changed(force=True)

    @classmethod
    def from_file(cls, path: str) -> Registry:
        return cls(path=path)

    def _set(self, terminals: list[Terminal]) -> None:
        by_hash = {}
        ids = set()
        for t in terminals:
            t.validate()
            if t.terminal_id in ids:
                raise ValueError(f"terminal {t.terminal_id} appears twice")
            ids.add(t.terminal_id)
            by_hash[bytes.fromhex(t.token_sha256)] = t
        with self._lock:
            self._by_hash = by_hash

    def _reload_if_changed(self, force: bool = False) -> None:
        if self._path is None:
            return
        now = time.monotonic()
        if not force and now < self._next_check:
            return
        self._next_check = now + RELOAD_CHECK_SECONDS
        try:
            mtime = os.stat(self._path).st_mtime_ns
        except FileNotFoundError:
            if force:
                raise
            return
        if mtime == self._mtime_ns and not force:
            return
        self._set(load_terminals(self._path))
        self._mtime_ns = mtime

    def authenticate(self, token: str) -> Terminal | None:
        if not _well_formed(token):
            return None
        digest = self._digests.get(token)
        t = self.authenticate_digest(digest)
        if t is not None:
            self._digests.keep(token, digest)
        return t

    def authenticate_digest(self, digest: bytes) -> Terminal | None:
        """authenticate for a token already hashed (token_digest)."""
        self._reload_if_changed()
        t = self._by_hash.get(digest)
        if t is None or t.revoked:
            return None
        return t

    def terminals(self) -> list[Terminal]:
        return list(self._by_hash.values())


def load_terminals(path: str) -> list[Terminal]:
    with open(path, "rb") as f:
        doc = json.load(f)
    return [Terminal(**t) for t in doc.get("terminals", [])]


def save_terminals(path: str, terminals: list[Terminal]) -> None:
    """Write the registry atomically (write a temporary file, then rename)."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump({"terminals": [asdict(t) for t in terminals]}, f, indent=1, sort_keys=True)
        f.write("\n")
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def revoke_terminal(path: str, terminal_id: int) -> bool:
    """Mark a terminal of the registry file revoked; False if the file has no such terminal."""
    terms = load_terminals(path)
    if not any(t.terminal_id == terminal_id for t in terms):
        return False
    save_terminals(path, [replace(t, revoked=True) if t.terminal_id == terminal_id else t
                          for t in terms])
    return True


def bearer_token(metadata) -> str | None:
    """The token from `authorization: Bearer <token>` metadata, or None."""
    for key, value in metadata or ():
        if key == "authorization":
            if isinstance(value, bytes):
                return None
            scheme, _, token = value.partition(" ")
            if scheme.lower() == "bearer":
                return token.strip()
            return None
    return None


class TerminalAuth(Protocol):
    """Whatever resolves a terminal token: the file registry or the chain."""

    def authenticate(self, token: str | None) -> Terminal | None: ...

    def authenticate_digest(self, digest: bytes) -> Terminal | None: ...


# No hash is shown for a chain terminal: the chain keeps it, and nobody here needs it.
_NO_HASH = "0" * 64


class ChainTerminals:
    """The chain's terminals (core.domain.chain.Chain.verify_terminal_token) as Terminals with
    the pos role. A chain terminal is never an admin: HQ tools log in as operators."""

    def __init__(self, chain) -> None:
        self.chain = chain
        self._cache: dict[tuple[int, int], Terminal] = {}

    def authenticate(self, token: str | None) -> Terminal | None:
        if not _well_formed(token):
            return None
        return self.authenticate_digest(token_digest(token))

    def authenticate_digest(self, digest: bytes) -> Terminal | None:
        """authenticate for a token already hashed (token_digest)."""
        t = self.chain.terminal_by_digest(digest)
        if t is None:
            return None
        key = (int(t.store_id), int(t.terminal_id))
        term = self._cache.get(key)
        if term is None:
            term = Terminal(key[1], key[0], _NO_HASH, ROLE_POS)
            if len(self._cache) < TERMINAL_CACHE_MAX:
                self._cache[key] = term
        return term


# Terminals remembered as objects; a chain rarely has more tills than this.
TERMINAL_CACHE_MAX = 65_536


class TerminalSources:
    """Several token sources behind one authenticate(): the first that knows the token
    answers. Tokens are 256-bit random strings, so two sources never share one."""

    def __init__(self, *sources: TerminalAuth) -> None:
        self.sources = tuple(s for s in sources if s is not None)
        self._digests = TokenDigests()

    def authenticate(self, token: str | None) -> Terminal | None:
        """The token is hashed once for all the sources (and once only while it keeps
        authenticating: TokenDigests)."""
        if not _well_formed(token):
            return None
        digest = self._digests.get(token)
        for source in self.sources:
            t = source.authenticate_digest(digest)
            if t is not None:
                self._digests.keep(token, digest)
                return t
        return None


# --- logins -----------------------------------------------------------------------------

# Password hashes (scrypt: about 0.3 s of one core and 128 MiB each at the default cost)
# run on a pool of their own, so logins can never take the workers that other admin
# calls share, nor more than these cores and that memory. Half the cores, 1 to 4.
PASSWORD_HASH_WORKERS = max(1, min(4, (os.cpu_count() or 2) // 2))
# Calls waiting for that pool; beyond this a call is refused at once (LOGIN_BUSY).
PASSWORD_HASH_PENDING_MAX = 64
# Failed logins of one caller address within this window, after which its logins are
# refused unhashed (LOGIN_THROTTLED) until the window ends. A store's tills share an
# address behind NAT, so this is well above what a store's staff mistype.
LOGIN_PEER_FAILURES_MAX = 50
LOGIN_PEER_WINDOW_S = 60
# Login names and addresses remembered by the throttle; past this the oldest go.
LOGIN_THROTTLE_KEYS_MAX = 100_000


def peer_address(peer: str | None) -> str:
    """The caller's address without its port ("ipv4:10.0.0.7:51234" -> "ipv4:10.0.0.7")."""
    peer = peer or ""
    kind, _, rest = peer.partition(":")
    if kind in ("ipv4", "ipv6") and ":" in rest:
        return f"{kind}:{rest.rpartition(':')[0]}"
    return peer


class _Window:
    """Failures per key in fixed windows; a key that reaches max is blocked for block_s."""

    def __init__(self, max_failures: int, window_s: float, block_s: float) -> None:
        self.max = max_failures
        self.window_s = window_s
        self.block_s = block_s
        self._keys: dict[str, list[float]] = {}  # key -> [window start, failures, blocked until]

    def retry_after(self, key: str, now: float) -> float:
        e = self._keys.get(key)
        return e[2] - now if e is not None and e[2] > now else 0.0

    def failed(self, key: str, now: float) -> float:
        """Count a failure; the seconds the key is now blocked for (0: not blocked)."""
        e = self._keys.get(key)
        if e is None or (now - e[0] >= self.window_s and e[2] <= now):
            if len(self._keys) >= LOGIN_THROTTLE_KEYS_MAX:
                self._evict(now)
            e = self._keys[key] = [now, 0, 0.0]
        e[1] += 1
        if e[1] >= self.max:
            e[2] = max(e[2], now + self.block_s)
        return max(0.0, e[2] - now)

    def forget(self, key: str) -> None:
        self._keys.pop(key, None)

    def _evict(self, now: float) -> None:
        for k in [k for k, e in self._keys.items() if now - e[0] >= self.window_s and e[2] <= now]:
            del self._keys[k]
        while len(self._keys) >= LOGIN_THROTTLE_KEYS_MAX:
            del self._keys[next(iter(self._keys))]


class LoginThrottled(Exception):
    def __init__(self, scope: str, retry_after_s: int) -> None:
        super().__init__(f"too many failed logins from this {'login name' if scope == 'login' else 'address'}; "
                         f"retry after {retry_after_s} s")
        self.scope = scope
        self.retry_after_s = retry_after_s


class LoginBusy(Exception):
    pass


class LoginGate:
    """Where Login (and every other password hash) runs: the hashing pool with its
    bounded queue, and the throttle of failed logins per login name and per caller
    address. A login name is throttled after `name_failures_max` failures within
    `name_window_s` (the chain's own lockout: login_failures_max, lockout_s), known or
    not, so the answers for an operator's login and for a name nobody has are alike.
    Used from the event loop only (the throttle takes no lock)."""

    def __init__(self, *, name_failures_max: int, name_window_s: float, on_throttle=None,
                 workers: int = PASSWORD_HASH_WORKERS,
                 pending_max: int = PASSWORD_HASH_PENDING_MAX, clock=time.monotonic) -> None:
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="mms-password")
        self.pending_max = pending_max
        self.pending = 0
        self.clock = clock
        self.on_throttle = on_throttle or (lambda scope: None)
        self._names = _Window(name_failures_max, name_window_s, name_window_s)
        self._peers = _Window(LOGIN_PEER_FAILURES_MAX, LOGIN_PEER_WINDOW_S, LOGIN_PEER_WINDOW_S)

    @staticmethod
    def _name(login: object) -> str:
        return login[:TOKEN_CHARS_MAX] if isinstance(login, str) else ""

    def check(self, login: object, peer: str) -> None:
        """Refuse (LoginThrottled) before any hashing when the name or address is blocked."""
        now = self.clock()
        for scope, table, key in (("login", self._names, self._name(login)),
                                  ("peer", self._peers, peer_address(peer))):
            wait = table.retry_after(key, now)
            if wait > 0:
                self.on_throttle(scope)
                raise LoginThrottled(scope, int(wait) + 1)

    def failed(self, login: object, peer: str) -> LoginThrottled | None:
        """Count a failed login; the refusal to answer instead when it reached a bound."""
        now = self.clock()
        name_wait = self._names.failed(self._name(login), now)
        peer_wait = self._peers.failed(peer_address(peer), now)
        if name_wait > 0:
            return LoginThrottled("login", int(name_wait) + 1)
        if peer_wait > 0:
            return LoginThrottled("peer", int(peer_wait) + 1)
        return None

    def succeeded(self, login: object) -> None:
        self._names.forget(self._name(login))

    async def run(self, fn, *args, **kw):
        """fn(*args, **kw) on the hashing pool; LoginBusy when too many already wait."""
        if self.pending >= self.pending_max:
            raise LoginBusy(f"{self.pending} password checks are waiting; retry shortly")
        self.pending += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self.pool, functools.partial(fn, *args, **kw))
        finally:
            self.pending -= 1

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
