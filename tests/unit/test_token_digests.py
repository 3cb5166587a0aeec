"""A till's token is hashed once for all the token sources, and once only while it keeps
authenticating (server/rpc/auth.py TokenDigests); revocation still counts at once."""

from __future__ import annotations

import pytest

import server.rpc.auth as auth
from server.rpc.auth import (
    ChainTerminals,
    Registry,
    Terminal,
    TerminalSources,
    TokenDigests,
    new_token,
    revoke_terminal,
    save_terminals,
    token_digest,
    token_hash,
)


class Hashes:
    def __init__(self, monkeypatch) -> None:
        self.calls = 0
        real = auth.token_digest

        def counted(token: str) -> bytes:
            self.calls += 1
            return real(token)
        monkeypatch.setattr(auth, "token_digest", counted)


class ChainStub:
    """What ChainTerminals asks of core.domain.chain.Chain: its terminals by digest."""

    def __init__(self) -> None:
        self.terminals = {}

    def terminal_by_digest(self, digest: bytes):
        return self.terminals.get(digest)


class Ref:
    def __init__(self, store_id: int, terminal_id: int) -> None:
        self.store_id, self.terminal_id = store_id, terminal_id


def test_one_hash_for_both_sources_and_none_while_the_token_keeps_working(tmp_path, monkeypatch):
    path = str(tmp_path / "t.json")
    file_tok, chain_tok = new_token(), new_token()
    save_terminals(path, [Terminal(5, 2, token_hash(file_tok))])
    chain = ChainStub()
    chain.terminals[token_digest(chain_tok)] = Ref(9, 40)
    sources = TerminalSources(ChainTerminals(chain), Registry.from_file(path))
    hashes = Hashes(monkeypatch)
    assert sources.authenticate(file_tok).terminal_id == 5  # the chain asked first
    assert sources.authenticate(chain_tok).terminal_id == 40
    assert hashes.calls == 2
    for _ in range(5):
        assert sources.authenticate(file_tok).store_id == 2
        assert sources.authenticate(chain_tok).store_id == 9
    assert hashes.calls == 2
    # Revoked in either source: refused on the next call, the kept hash notwithstanding.
    del chain.terminals[token_digest(chain_tok)]
    assert sources.authenticate(chain_tok) is None
    assert revoke_terminal(path, 5)
    monkeypatch.setattr(auth, "RELOAD_CHECK_SECONDS", 0.0)
    sources.sources[1]._next_check = 0.0
    assert sources.authenticate(file_tok) is None


def test_unknown_tokens_are_never_kept_and_the_bound_holds(monkeypatch):
    known = new_token()
    reg = Registry([Terminal(1, 1, token_hash(known))])
    hashes = Hashes(monkeypatch)
    for _ in range(3):
        assert reg.authenticate("x" + new_token()) is None
    assert len(reg._digests) == 0 and hashes.calls == 3
    for bad in ("", None, "y" * (auth.TOKEN_CHARS_MAX + 1), b"bytes"):
        assert reg.authenticate(bad) is None
    assert hashes.calls == 3
    small = TokenDigests(max_entries=2)
    for tok in ("a", "b", "c"):
        small.keep(tok, token_digest(tok))
    assert len(small) == 2 and small.get("c") == token_digest("c")


def test_a_registry_entry_must_be_a_sha256_in_hex():
    with pytest.raises(ValueError, match="64 hex"):
        Registry([Terminal(1, 1, "z" * 64)])
