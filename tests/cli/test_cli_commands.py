"""The `mms` command end to end: demo, bench, terminal tokens, serve with TLS."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import types

import grpc
import pytest
from common import ROOT

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


def test_terminal_add_json_prints_json(tmp_path, capsys):
    f = str(tmp_path / "terminals.json")
    assert main(["terminal", "add", "--file", f, "--terminal-id", "6", "--store-id", "3",
                 "--name", "till 6", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert {k: doc[k] for k in ("terminal_id", "store_id", "role", "name", "file")} == \
        {"terminal_id": 6, "store_id": 3, "role": "pos", "name": "till 6", "file": f}
    assert Registry.from_file(f).authenticate(doc["token"]).terminal_id == 6


def test_serve_requires_data(capsys):
    assert main(["serve"]) == 2
    assert "--data DIR is required" in capsys.readouterr().err


def _readme_serve_command() -> list[str]:
    """The `mms serve` line of README.md's command table, with its placeholders filled
    (ports 0: any free one) and the optional part left out."""
    text = (ROOT / "README.md").read_text()
    m = re.search(r"^\| `(mms serve [^`]*)` \|", text, re.M)
    assert m, "README.md has no `mms serve` row"
    words = re.sub(r"\[[^\]]*\]", "", m.group(1)).split()
    return [{"HOST:PORT": "127.0.0.1:0"}.get(w, w) for w in words]


def test_the_readme_serve_command_serves(tmp_path):
    """The command README.md (and docs/operating.md) give starts a server: no terminals
    file is needed; the chain's terminals are served, and a new chain can bootstrap."""
    argv = _readme_serve_command()
    assert argv[:2] == ["mms", "serve"] and "DIR" in argv
    argv = [str(tmp_path / "data") if w == "DIR" else w for w in argv]
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-m", "server.cli", *argv[1:]], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # the server reports it is ready, then waits
            lines.append(line)
            if line.startswith("mms: the chain is empty"):
                break
        text = "".join(lines)
        assert "mms: serving grpc=127.0.0.1:" in text, text
        assert "no terminals file: the chain's terminal tokens only" in text
        target = re.search(r"grpc=(\S+)", text).group(1)
        with grpc.insecure_channel(target) as ch:
            with pytest.raises(grpc.RpcError) as ei:
                pos_pb2_grpc.PosServiceStub(ch).GetCard(
                    pos_pb2.GetCardRequest(card_no=1),
                    metadata=(("authorization", "Bearer nope"),), timeout=20)
            assert ei.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        proc.send_signal(signal.SIGTERM)
        rest = proc.communicate(timeout=60)[0]
    assert proc.returncode == 0, "".join(lines) + rest
    assert (tmp_path / "data" / "bootstrap.token").exists()


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
