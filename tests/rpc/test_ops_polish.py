"""What operators see of a running server: reflection v1 and v1alpha, process and build
metrics, op names (never numbers) in mms_ops_total, /readyz during a SIGTERM drain, and
status messages that do not repeat their reason."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import threading
import time
import urllib.error
import urllib.request

import grpc
import pytest
from grpc_reflection.v1alpha import reflection_pb2
from prometheus_client.parser import text_string_to_metric_families
from test_server_rpc import CARDS, Running

from core.records import OP_NAMES, RESULT_NAMES
from server.client import aio_channel, auth, stubs
from server.mms_pb import admin_pb2, pos_pb2, types_pb2
from server.rpc.errors import RpcFailure, message_without_reason
from server.rpc.metrics import build_version
from server.tools.launch import ChildServer, TerminalSpec, issue_and_fund


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    r = Running(str(tmp_path_factory.mktemp("ops")))
    r.admin.IssueCards(admin_pb2.IssueCardsRequest(client_id=os.urandom(16), card_nos=CARDS),
                       metadata=r.md("admin"))
    yield r
    r.close()


def _reflect(channel, version: str, request: reflection_pb2.ServerReflectionRequest):
    call = channel.stream_stream(
        f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString)
    return next(iter(call(iter([request]), timeout=30)))


@pytest.mark.parametrize("version", ["v1", "v1alpha"])
def test_reflection_v1_and_v1alpha(srv, version):
    from google.protobuf import descriptor_pb2

    resp = _reflect(srv.channel, version, reflection_pb2.ServerReflectionRequest(list_services=""))
    names = {s.name for s in resp.list_services_response.service}
    assert {"mms.v1.PosService", "mms.v1.AdminService", "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection"} <= names
    resp = _reflect(srv.channel, version, reflection_pb2.ServerReflectionRequest(
        file_containing_symbol="mms.v1.PosService"))
    files = [descriptor_pb2.FileDescriptorProto.FromString(b)
             for b in resp.file_descriptor_response.file_descriptor_proto]
    assert any(f.package == "mms.v1" and any(s.name == "PosService" for s in f.service)
               for f in files)
    # Reflection describes its own v1 service (grpcurl asks for it).
    resp = _reflect(srv.channel, version, reflection_pb2.ServerReflectionRequest(
        file_containing_symbol="grpc.reflection.v1.ServerReflection"))
    (f,) = [descriptor_pb2.FileDescriptorProto.FromString(b)
            for b in resp.file_descriptor_response.file_descriptor_proto]
    assert f.package == "grpc.reflection.v1" and f.service[0].name == "ServerReflection"
    assert f.service[0].method[0].input_type == ".grpc.reflection.v1.ServerReflectionRequest"


def _scrape(srv) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{srv.server.metrics_port}/metrics",
                                timeout=10) as f:
        return f.read().decode()


def test_process_and_build_info_metrics(srv):
    text = _scrape(srv)
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name in ("process_cpu_seconds", "process_resident_memory_bytes", "process_open_fds",
                 "process_start_time_seconds"):
        assert name in families, name
        assert families[name].samples[0].value > 0, name
    (sample,) = families["mms_build_info"].samples
    assert sample.name == "mms_build_info" and sample.value == 1.0
    assert sample.labels == {"version": build_version()}
    from importlib.metadata import version

    assert build_version() == version("mms") != "unknown"


def test_ops_total_labels_are_names(srv):
    # A swipe, a reject, and admin ops (card issue) have all been counted by now.
    srv.pos.SwipeBatch(pos_pb2.SwipeBatchRequest(swipes=types_pb2.SwipeColumns(
        client_ids=os.urandom(32), card_nos=[CARDS[0], 1], amount_fen=[1, 1])),
        metadata=srv.md())
    text = _scrape(srv)
    ops = [s for f in text_string_to_metric_families(text) if f.name == "mms_ops"
           for s in f.samples if s.name == "mms_ops_total"]
    op_names = {n.lower() for n in OP_NAMES.values()}
    assert {s.labels["op_type"] for s in ops} >= {"swipe", "issue"}
    for s in ops:
        assert s.labels["op_type"] in op_names, s.labels
        assert s.labels["result"] in RESULT_NAMES.values(), s.labels
        assert not re.search(r"\d", s.labels["op_type"] + s.labels["result"]), s.labels


def test_status_messages_do_not_repeat_their_reason(srv):
    assert message_without_reason("PHONE_TAKEN: phone 138****8000 belongs to member 2",
                                  "MEMBER_PHONE_TAKEN") == "phone 138****8000 belongs to member 2"
    assert message_without_reason("RESULT_CARD_FROZEN", "RESULT_CARD_FROZEN") == "card frozen"
    assert message_without_reason("card 5 not found", "RESULT_CARD_NOT_FOUND") == "card 5 not found"
    f = RpcFailure(grpc.StatusCode.NOT_FOUND, "X", "Y: it")
    assert f.message == "Y: it"
    f.reason = "Y"  # set after construction, as AdminService's _check does
    assert f.message == "it"
    # Through the server: a refused call's details say why in words, once.
    for call in (lambda: srv.pos.Swipe(pos_pb2.SwipeRequest(
                     client_id=os.urandom(16), card_no=424242, amount_fen=1), metadata=srv.md()),
                 lambda: srv.pos.Swipe(pos_pb2.SwipeRequest(
                     client_id=os.urandom(16), card_no=CARDS[1], amount_fen=0),
                     metadata=srv.md())):
        with pytest.raises(grpc.RpcError) as e:
            call()
        from server.client import error_reason

        reason = error_reason(e.value)
        short = reason.removeprefix("RESULT_")
        assert reason.startswith("RESULT_") and short not in e.value.details(), \
            (reason, e.value.details())


# --- /readyz during a drain, on the real server ------------------------------------------

def _readyz(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as f:
            return f.status
    except urllib.error.HTTPError as e:
        return e.code


def _wait_for_line(child: ChildServer, text: str, timeout: float = 60.0) -> None:
    """The child's output is pumped into child.output by its reader thread; wait until a
    line reports the point (the server says it is draining)."""
    deadline = time.monotonic() + timeout
    while not any(text in line for line in child.output):
        assert child.proc.poll() is None or any(text in line for line in child.output), \
            child.output
        assert time.monotonic() < deadline, f"no {text!r} in {child.output}"
        threading.Event().wait(0.01)


def test_readyz_is_503_while_draining_on_sigterm(tmp_path):
    terms = [TerminalSpec(1, 0, "admin"), TerminalSpec(2, 0, "pos")]
    child = ChildServer(str(tmp_path), terms, extra={"shutdown_grace_s": 60}).start()
    readyz = child.metrics_url.replace("/metrics", "/readyz")
    assert _readyz(readyz) == 200

    async def scenario() -> list[int]:
        async with aio_channel(child.target) as ch:
            pos, admin = stubs(ch)
            await issue_and_fund(admin, pos, child.token("admin"), child.token("pos"),
                                 [77], 100_000)
            stream = pos.SwipeStream(metadata=auth(child.token("pos")))

            def batch(i: int):
                return pos_pb2.SwipeStreamRequest(batch_id=i, swipes=types_pb2.SwipeColumns(
                    client_ids=os.urandom(16), card_nos=[77], amount_fen=[100]))

            await stream.write(batch(1))
            first = await stream.read()          # the call is in flight, answered once
            child.proc.send_signal(signal.SIGTERM)
            await asyncio.to_thread(_wait_for_line, child, "draining in-flight calls")
            during = await asyncio.to_thread(_readyz, readyz)
            await stream.done_writing()          # the in-flight call finishes cleanly
            rest = []
            while (r := await stream.read()) is not grpc.aio.EOF:
                rest.append(r)
            code = await stream.code()
            return [first.results.codes[0], during, len(rest), code]

    ok, during, rest, code = asyncio.run(scenario())
    assert ok == types_pb2.RESULT_OK
    assert during == 503
    assert rest == 0 and code == grpc.StatusCode.OK
    assert child.terminate() == 0
    assert any("every accepted op is committed" in line for line in child.output)


def test_drain_delay_keeps_serving_while_readyz_is_503(tmp_path):
    """With drain_delay_s the port still takes new calls while /readyz says 503 (so a
    load balancer stops sending before the port closes); a second SIGTERM ends the
    window at once and the server drains and exits cleanly."""
    terms = [TerminalSpec(1, 0, "admin"), TerminalSpec(2, 0, "pos")]
    child = ChildServer(str(tmp_path), terms, extra={"drain_delay_s": 600}).start()
    readyz = child.metrics_url.replace("/metrics", "/readyz")
    assert _readyz(readyz) == 200

    async def scenario() -> tuple[int, int, int]:
        async with aio_channel(child.target) as ch:
            pos, admin = stubs(ch)
            await issue_and_fund(admin, pos, child.token("admin"), child.token("pos"),
                                 [78], 100_000)
            child.proc.send_signal(signal.SIGTERM)
            await asyncio.to_thread(_wait_for_line, child, "still serving for drain_delay_s")
            during = await asyncio.to_thread(_readyz, readyz)
            # A call that arrives in the window is served.
            r = await pos.Swipe(pos_pb2.SwipeRequest(client_id=os.urandom(16), card_no=78,
                                                     amount_fen=100),
                                metadata=auth(child.token("pos")), timeout=60)
            child.proc.send_signal(signal.SIGTERM)
            await asyncio.to_thread(_wait_for_line, child, "draining in-flight calls")
            return during, r.result.code

    during, code = asyncio.run(scenario())
    assert during == 503 and code == types_pb2.RESULT_OK
    assert child.terminate() == 0
    assert any("every accepted op is committed" in line for line in child.output)


# --- runbook links -------------------------------------------------------------------------

def test_every_alert_has_an_absolute_runbook_url_and_the_base_is_configurable(tmp_path):
    import shutil
    import subprocess
    from urllib.parse import urlsplit

    from common import ROOT
    from test_ops_files import alerts, read_rules

    from server.tools import ops_rules

    rules = ROOT / "ops" / "prometheus" / "mms-alerts.yml"
    shipped = alerts(read_rules(rules))
    assert len(shipped) >= 10
    for rule in shipped:
        url = rule["annotations"]["runbook_url"]
        parts = urlsplit(url)
        assert parts.scheme == "https" and parts.netloc, url
        assert url == ops_rules.runbook_url(rule["alert"]), url
    base = "https://wiki.corp.example/ops/mms/docs/"
    written = ops_rules.write_rules(base, str(tmp_path))
    rebased = alerts(read_rules(tmp_path / "mms-alerts.yml"))
    assert [r["alert"] for r in rebased] == [r["alert"] for r in shipped]
    for rule in rebased:
        assert rule["annotations"]["runbook_url"] == \
            f"https://wiki.corp.example/ops/mms/docs/operating.md#alert-{rule['alert'].lower()}"
    test_text = (tmp_path / "mms-alerts.test.yml").read_text()
    assert "mms.example.com" not in test_text and test_text.count("wiki.corp.example") >= 5
    for bad in ("docs/", "ftp://x/docs", "https://x/docs#top", 'https://x/"'):
        with pytest.raises(ValueError):
            ops_rules.write_rules(bad, str(tmp_path / "bad"))
    assert ops_rules.main(["--runbook-base", "relative/docs", str(tmp_path / "m")]) == 2
    promtool = shutil.which("promtool")
    if promtool is None:
        assert not os.environ.get("CI"), "promtool is missing in CI"
        pytest.skip("promtool is not installed (Debian: apt-get install prometheus)")
    for args in (["check", "rules", written[0]], ["test", "rules", written[1]]):
        out = subprocess.run([promtool, *args], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stdout + out.stderr
