"""The `mms` command end to end: demo, bench, terminal tokens, serve with TLS."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import types

import grpc
import pytest

from server.cli.main import main
from server.mms_pb import pos_pb2, pos_pb2_grpc
from server.rpc.auth import Registry
from server.tools.launch import ChildServer, TerminalSpec


def test_demo_short_run(capsys):
    assert main(["demo", "--seconds", "1.5", "--cards", "300"]) == 0
    out = capsys.readouterr().out
    for text in ("created 2 regions, 6 stores, 24 tills, 300 members", "swipes applied",
                 "unary Swipe", "stream batch", "rejects", "RESULT_CARD_NOT_FOUND",
                 "TOKEN_INVALID", "metrics          http://127.0.0.1:"):
        assert text in out, text
    # Not a TTY: plain progress lines, no carriage returns.
    assert "\r" not in out


@pytest.mark.parametrize("extra", [["--batch", "256"], ["--unary"]], ids=["stream", "unary"])
def test_bench_grpc_json(capsys, extra):
    assert main(["bench", "grpc", "--streams", "2", "--seconds", "1", "--cards", "200",
                 "--json", *extra]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"swipes_per_s", "p50_ms", "p99_ms"} <= set(result)
    assert result["swipes"] > 0 and result["errors"] == {} and result["rejected"] == 0


def test_bench_engine_dispatches_to_core(monkeypatch):
    seen = []
    fake = types.ModuleType("server.tools.bench_engine")
    fake.main_engine = lambda argv: seen.append(argv) or 7
    monkeypatch.setitem(sys.modules, "server.tools.bench_engine", fake)
    assert main(["bench", "engine", "--ops", "10", "--json"]) == 7
    assert seen == [["--ops", "10", "--json"]]


def test_terminal_add_and_revoke(tmp_path, capsys):
    f = str(tmp_path / "terminals.json")
    assert main(["terminal", "add", "--file", f, "--terminal-id", "5", "--store-id", "3"]) == 0
    token = capsys.readouterr().out.strip()
    with open(f) as fh:
        assert token not in fh.read()  # only the hash is stored
    t = Registry.from_file(f).authenticate(token)
    assert (t.terminal_id, t.store_id, t.role) == (5, 3, "pos")
    assert main(["terminal", "add", "--file", f, "--terminal-id", "5", "--store-id", "3"]) == 1
    assert main(["terminal", "revoke", "--file", f, "--terminal-id", "5"]) == 0
    assert Registry.from_file(f).authenticate(token) is None


def test_serve_requires_data_and_terminals(tmp_path, capsys):
    assert main(["serve"]) == 2
    assert main(["serve", "--data", str(tmp_path / "d")]) == 2
    assert "terminals registry is required" in capsys.readouterr().err


def _openssl(*args: str, cwd) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")
def test_serve_with_mutual_tls(tmp_path):
    d = tmp_path
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
             "-keyout", "ca.key", "-out", "ca.crt", cwd=d)
    (d / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name in ("server", "client"):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
                 "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=d)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                 "-CAcreateserial", "-days", "2", "-extfile", "san.cnf", "-out", f"{name}.crt",
                 cwd=d)
    tls = {"cert_file": str(d / "server.crt"), "key_file": str(d / "server.key"),
           "client_ca_file": str(d / "ca.crt")}
    terms = [TerminalSpec(1, 0, "admin"), TerminalSpec(2, 4, "pos")]
    (d / "srv").mkdir()
    with ChildServer(str(d / "srv"), terms, tls=tls) as child:
        md = (("authorization", f"Bearer {child.token()}"),)
        ca, key, crt = ((d / n).read_bytes() for n in ("ca.crt", "client.key", "client.crt"))
        good = grpc.ssl_channel_credentials(ca, key, crt)
        with grpc.secure_channel(child.target, good) as ch:
            with pytest.raises(grpc.RpcError) as ei:
                pos_pb2_grpc.PosServiceStub(ch).GetCard(pos_pb2.GetCardRequest(card_no=1),
                                                        metadata=md, timeout=20)
            assert ei.value.code() == grpc.StatusCode.NOT_FOUND  # authenticated, no card
        # Without a client certificate the handshake fails.
        with grpc.secure_channel(child.target, grpc.ssl_channel_credentials(ca)) as ch:
            with pytest.raises(grpc.RpcError) as ei:
                pos_pb2_grpc.PosServiceStub(ch).GetCard(pos_pb2.GetCardRequest(card_no=1),
                                                        metadata=md, timeout=20)
            assert ei.value.code() == grpc.StatusCode.UNAVAILABLE
