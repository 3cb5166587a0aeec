"""Terminal tokens: each terminal presents `authorization: Bearer <token>`.

The registry keeps only sha256(token). Tokens are 32 random bytes from the OS (256
bits), so nobody can search the preimage space; a slow password hash (bcrypt, argon2)
protects low-entropy human passwords and would only add a millisecond to every call.
A leaked registry file therefore gives no usable token, and checking a token costs one
sha256 and one dict lookup.

The registry is a JSON file, reloaded when its modification time changes, so revoking
a terminal (`"revoked": true`, or removing it) takes effect within a second without a
restart.

There is one interface (`authenticate(token) -> Terminal | None`) and two sources: this
file registry (`mms serve --config`, the demo, the benchmark) and the chain's terminals
(`ChainTerminals`, tokens issued with IssueTerminalToken and kept in LMDB). A server
consults both through `TerminalSources`; the chain's come first.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from dataclasses import asdict, dataclass, replace
from typing import Protocol

# Terminal tokens of the file registry come from the chain's one generator (32 random
# bytes, URL-safe base64, never starting with "-").
from core.domain.chain import TOKEN_BYTES, new_token  # noqa: F401 (re-exported)

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
        if len(self.token_sha256) != 64:
            raise ValueError(f"terminal {self.terminal_id}: token_sha256 must be 64 hex chars")


class Registry:
    """Terminals by token hash. Thread-safe; cheap to consult on every call."""

    def __init__(self, terminals: list[Terminal] | None = None, path: str | None = None) -> None:
        self._lock = threading.Lock()
        self._path = path
        self._mtime_ns = -1
        self._next_check = 0.0
        self._by_hash: dict[str, Terminal] = {}
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
            by_hash[t.token_sha256] = t
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
        if not token or len(token) > TOKEN_CHARS_MAX:
            return None
        self._reload_if_changed()
        t = self._by_hash.get(token_hash(token))
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


# No hash is shown for a chain terminal: the chain keeps it, and nobody here needs it.
_NO_HASH = "0" * 64


class ChainTerminals:
    """The chain's terminals (core.domain.chain.Chain.verify_terminal_token) as Terminals with
    the pos role. A chain terminal is never an admin: HQ tools log in as operators."""

    def __init__(self, chain) -> None:
        self.chain = chain
        self._cache: dict[tuple[int, int], Terminal] = {}

    def authenticate(self, token: str | None) -> Terminal | None:
        t = self.chain.verify_terminal_token(token)
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

    def authenticate(self, token: str | None) -> Terminal | None:
        for source in self.sources:
            t = source.authenticate(token)
            if t is not None:
                return t
        return None
