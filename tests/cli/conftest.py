"""A real server on loopback for the `mms` command tests: a chain (cheap scrypt) and a
member store over a fresh engine, the CLI's config and session kept inside tmp_path."""

from __future__ import annotations

import pytest

from core import Engine
from core.domain.chain import Chain, ChainConfig
from core.domain.members import MemberStore
from server.tools.launch import serving_in_thread
from tests.cli._shared import BOOT


@pytest.fixture
def cli_server(tmp_path, monkeypatch):
    """(target, engine) of a server whose bootstrap token is BOOT; MMS_PASSWORD set."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    monkeypatch.delenv("MMS_SESSION", raising=False)
    monkeypatch.delenv("MMS_TARGET", raising=False)
    monkeypatch.setenv("MMS_PASSWORD", "secret-pw-1")
    engine = Engine(str(tmp_path / "data"))
    chain = Chain(engine, ChainConfig(scrypt_n=16, scrypt_r=1, scrypt_p=1))
    members = MemberStore(engine, key=bytes(32))
    try:
        with serving_in_thread(engine, chain=chain, members=members, bootstrap_token=BOOT,
                               timeout_s=30) as (target, _srv):
            yield target, engine
    finally:
        engine.close()
