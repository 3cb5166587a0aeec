"""`mms serve --front-ends N` through the real processes: a writer (`mms serve`) and N
gRPC front ends on one port (server/rpc/front.py, server/rpc/ring.py). A swipe through a
front end applies once and its retry through another front end returns the first
result; a bad token is UNAUTHENTICATED; every other call is forwarded with its metadata
and its status; a full ring answers RESOURCE_EXHAUSTED; a call past its deadline still
commits once; a killed front end is started again and the port keeps serving.

The writer runs with a patch that can hold the engine's answers: while the file HOLD
exists, each submission's answer waits (its op commits as usual) and the writer creates
READY, the point the test waits for; removing HOLD lets the answers go."""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request

import grpc
import pytest
from common import ROOT, cid, mutual_tls_files
from test_server_rpc import error_info, expect

from server.mms_pb import admin_pb2, admin_pb2_grpc, pos_pb2, pos_pb2_grpc, types_pb2
from server.tools.launch import ChildServer, TerminalSpec

PATCH = textwrap.dedent("""
    import os, sys, threading, time
    sys.path.insert(0, {root!r})
    from concurrent.futures import Future
    from core.engine.writer import Engine
    real = Engine.submit
    def submit(self, ops, *a, **kw):
        cf = real(self, ops, *a, **kw)
        if not os.path.exists({hold!r}):
            return cf
        held = Future()
        def wait():
            open({ready!r}, "w").close()   # the point: an answer is held
            while os.path.exists({hold!r}):
                time.sleep(0.005)
            exc = cf.exception()
            held.set_exception(exc) if exc is not None else held.set_result(cf.result())
        threading.Thread(target=wait, daemon=True).start()
        return held
    Engine.submit = submit
    from server.cli.main import main
    sys.exit(main(['serve', '--data', {data!r}, '--config', {config!r},
                   '--listen', '127.0.0.1:0', '--metrics', '127.0.0.1:0']))
""")
SERVING = re.compile(r"^mms: serving grpc=(\S+) metrics=(\S+)")
FRONT = re.compile(r"^mms: front end (\d+) pid (\d+) serving grpc=(\S+)")
EXITED = re.compile(r"^mms: front end (\d+) pid (\d+) exited")
CARDS = [101, 102, 103, 104, 105]
FUND = 100_000
# How long a line of the server's may take to come (a front end's start imports grpc).
LINE_TIMEOUT_S = 120.0


class FrontServer:
    """`mms serve` (the writer, with PATCH) and its front ends, in child processes."""

    def __init__(self, workdir: str, *, front_ends: int = 2, data: str | None = None,
                 extra: dict | None = None) -> None:
        self.terms = [TerminalSpec(1, 0, "admin"), TerminalSpec(2, 1, "pos")]
        os.makedirs(workdir, exist_ok=True)
        # ChildServer writes the terminals file and the config; this runs them patched.
        self.setup = ChildServer(workdir, self.terms, data=data,
                                 extra={"front_ends": front_ends, **(extra or {})})
        self.data = self.setup.data
        self.hold = os.path.join(workdir, "hold")
        self.ready = os.path.join(workdir, "ready")
        self.lines: list[str] = []
        self._cv = threading.Condition()
        code = PATCH.format(root=str(ROOT), hold=self.hold, ready=self.ready, data=self.data,
                            config=self.setup.config_file)
        self.proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, cwd=str(ROOT))
        self._pump = threading.Thread(target=self._read, daemon=True)
        self._pump.start()
        self.target, self.metrics_url = self.wait_line(SERVING).groups()

    def _read(self) -> None:
        for line in self.proc.stdout:
            with self._cv:
                self.lines.append(line.rstrip("\n"))
                self._cv.notify_all()
        with self._cv:
            self.lines.append("<eof>")
            self._cv.notify_all()

    def wait_line(self, pattern: re.Pattern, after: int = 0) -> re.Match:
        """The first line from index `after` on that matches (waits for it to come)."""
        deadline = time.monotonic() + LINE_TIMEOUT_S
        with self._cv:
            i = after
            while True:
                while i < len(self.lines):
                    m = pattern.match(self.lines[i])
                    if m:
                        return m
                    assert self.lines[i] != "<eof>", "\n".join(self.lines[-30:])
                    i += 1
                left = deadline - time.monotonic()
                assert left > 0, f"no line like {pattern.pattern}:\n" + "\n".join(self.lines[-30:])
                self._cv.wait(left)

    def front_pids(self) -> dict[int, int]:
        """Each front end's latest pid, as the writer announced them."""
        out = {}
        with self._cv:
            for line in self.lines:
                m = FRONT.match(line)
                if m:
                    out[int(m.group(1))] = int(m.group(2))
        return out

    def token(self, role: str = "pos") -> str:
        return next(t.token for t in self.terms if t.role == role)

    def md(self, role: str = "pos") -> tuple:
        return (("authorization", f"Bearer {self.token(role)}"),)

    def wait_ready(self) -> None:
        deadline = time.monotonic() + LINE_TIMEOUT_S
        while not os.path.exists(self.ready):
            assert self.proc.poll() is None, "the writer exited before its point"
            assert time.monotonic() < deadline, "the writer never held an answer"
            time.sleep(0.005)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        rc = self.proc.wait(120)
        self._pump.join(60)
        self.proc.stdout.close()
        return rc


def handled(srv: FrontServer, method: str, code: str) -> int:
    """grpc_server_handled_total of a PosService method and code, from the writer's /metrics."""
    with urllib.request.urlopen(srv.metrics_url, timeout=30) as r:
        text = r.read().decode()
    for line in text.splitlines():
        if (line.startswith("grpc_server_handled_total{") and f'grpc_method="{method}"' in line
                and f'grpc_code="{code}"' in line):
            return int(float(line.rsplit(" ", 1)[1]))
    return 0


def pos_stub(target: str) -> tuple[grpc.Channel, pos_pb2_grpc.PosServiceStub]:
    ch = grpc.insecure_channel(target)
    return ch, pos_pb2_grpc.PosServiceStub(ch)


def fund(srv: FrontServer) -> None:
    ch = grpc.insecure_channel(srv.target)
    admin = admin_pb2_grpc.AdminServiceStub(ch)
    pos = pos_pb2_grpc.PosServiceStub(ch)
    admin.IssueCards(admin_pb2.IssueCardsRequest(client_id=cid(), card_nos=CARDS),
                     metadata=srv.md("admin"), timeout=60)
    for no in CARDS:
        pos.Recharge(pos_pb2.RechargeRequest(client_id=cid(), card_no=no, amount_fen=FUND),
                     metadata=srv.md(), timeout=60)
    ch.close()


def balance(srv: FrontServer, card_no: int) -> int:
    ch, pos = pos_stub(srv.target)
    try:
        return pos.GetCard(pos_pb2.GetCardRequest(card_no=card_no), metadata=srv.md(),
                           timeout=60).card.principal_fen
    finally:
        ch.close()


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    s = FrontServer(str(tmp_path_factory.mktemp("front")), front_ends=2)
    try:
        fund(s)
        yield s
    finally:
        assert s.stop() == 0


def test_two_front_ends_share_the_port(srv):
    pids = srv.front_pids()
    assert sorted(pids) == [0, 1] and len(set(pids.values())) == 2
    assert all(FRONT.match(line).group(3) == srv.target
               for line in srv.lines if FRONT.match(line))


def test_a_swipe_applies_once_and_every_retry_replays_it(srv):
    before = balance(srv, 101)
    req = pos_pb2.SwipeRequest(client_id=cid(), card_no=101, amount_fen=250)
    ch, pos = pos_stub(srv.target)
    first = pos.Swipe(req, metadata=srv.md(), timeout=60).result
    ch.close()
    assert first.code == types_pb2.RESULT_OK and not first.replayed
    # Retries on new connections, which the kernel spreads over both front ends.
    for _ in range(6):
        ch, pos = pos_stub(srv.target)
        again = pos.Swipe(req, metadata=srv.md(), timeout=60).result
        ch.close()
        assert again.replayed and again.seq == first.seq
        assert again.principal_fen == first.principal_fen == before - 250
    assert balance(srv, 101) == before - 250


def test_a_recharge_and_a_rejected_swipe_through_the_ring(srv):
    before = balance(srv, 102)
    ch, pos = pos_stub(srv.target)
    r = pos.Recharge(pos_pb2.RechargeRequest(client_id=cid(), card_no=102, amount_fen=700),
                     metadata=srv.md(), timeout=60).result
    assert r.code == types_pb2.RESULT_OK and r.principal_fen == before + 700
    info = expect(grpc.StatusCode.FAILED_PRECONDITION, "RESULT_INSUFFICIENT_BALANCE", pos.Swipe,
                  pos_pb2.SwipeRequest(client_id=cid(), card_no=102, amount_fen=FUND * 5),
                  metadata=srv.md(), timeout=60)
    assert info.metadata["replayed"] == "false"
    expect(grpc.StatusCode.NOT_FOUND, "RESULT_CARD_NOT_FOUND", pos.Swipe,
           pos_pb2.SwipeRequest(client_id=cid(), card_no=999, amount_fen=1),
           metadata=srv.md(), timeout=60)
    expect(grpc.StatusCode.INVALID_ARGUMENT, "RESULT_CLIENT_ID_INVALID", pos.Swipe,
           pos_pb2.SwipeRequest(client_id=b"short", card_no=102, amount_fen=1),
           metadata=srv.md(), timeout=60)
    ch.close()
    assert balance(srv, 102) == before + 700


def test_a_bad_token_is_unauthenticated_before_anything_else(srv):
    before = balance(srv, 103)
    ch, pos = pos_stub(srv.target)
    for md in ((("authorization", "Bearer not-a-token"),), ()):
        expect(grpc.StatusCode.UNAUTHENTICATED, "TOKEN_INVALID", pos.Swipe,
               pos_pb2.SwipeRequest(client_id=cid(), card_no=103, amount_fen=5),
               metadata=md, timeout=60)
        # A bad request from a bad token: still the token first.
        expect(grpc.StatusCode.UNAUTHENTICATED, "TOKEN_INVALID", pos.Swipe,
               pos_pb2.SwipeRequest(client_id=b"x", card_no=0, amount_fen=-1),
               metadata=md, timeout=60)
    # A body that does not decode is refused as such (it reveals nothing), as in one process.
    raw = ch.unary_unary("/mms.v1.PosService/Swipe")
    before_count = handled(srv, "Swipe", "INVALID_ARGUMENT")
    expect(grpc.StatusCode.INVALID_ARGUMENT, "MALFORMED_REQUEST", raw, b"\xff\xff\xff",
           metadata=srv.md(), timeout=60)
    ch.close()
    assert balance(srv, 103) == before
    # The front end answered it alone; the writer's metrics count it (folded each second).
    deadline = time.monotonic() + LINE_TIMEOUT_S
    while handled(srv, "Swipe", "INVALID_ARGUMENT") < before_count + 1:
        assert time.monotonic() < deadline, "the front end's refusal was never counted"
        time.sleep(0.05)


def test_other_calls_are_forwarded_with_their_metadata_and_status(srv):
    ch, pos = pos_stub(srv.target)
    card = pos.GetCard(pos_pb2.GetCardRequest(card_no=104), metadata=srv.md(), timeout=60).card
    assert card.card_no == 104 and card.principal_fen == FUND
    expect(grpc.StatusCode.UNAUTHENTICATED, "TOKEN_INVALID", pos.GetCard,
           pos_pb2.GetCardRequest(card_no=104), timeout=60)
    expect(grpc.StatusCode.NOT_FOUND, "RESULT_CARD_NOT_FOUND", pos.GetCard,
           pos_pb2.GetCardRequest(card_no=4242), metadata=srv.md(), timeout=60)
    # The admin service, with the admin terminal's token: its role travels with the call.
    admin = admin_pb2_grpc.AdminServiceStub(ch)
    admin.IssueCards(admin_pb2.IssueCardsRequest(client_id=cid(), card_nos=[106]),
                     metadata=srv.md("admin"), timeout=60)
    expect(grpc.StatusCode.PERMISSION_DENIED, "ROLE_REQUIRED", admin.IssueCards,
           admin_pb2.IssueCardsRequest(client_id=cid(), card_nos=[107]), metadata=srv.md(),
           timeout=60)
    # A swipe with a basket goes to the writer whole; a stream is forwarded message by message.
    r = pos.Swipe(pos_pb2.SwipeRequest(client_id=cid(), card_no=104, amount_fen=300, items=[
        types_pb2.LineItem(sku=1, amount_fen=300, qty=1)]), metadata=srv.md(), timeout=60).result
    assert r.code == types_pb2.RESULT_OK and r.principal_fen == FUND - 300

    def batches():
        for i in (1, 2):
            yield pos_pb2.SwipeStreamRequest(batch_id=i, swipes=types_pb2.SwipeColumns(
                client_ids=cid() + cid(), card_nos=[104, 105], amount_fen=[10, 20]))
    replies = list(pos.SwipeStream(batches(), metadata=srv.md(), timeout=60))
    assert [rep.batch_id for rep in replies] == [1, 2]
    assert all(list(rep.results.codes) == [types_pb2.RESULT_OK] * 2 for rep in replies)
    assert balance(srv, 104) == FUND - 300 - 20
    ch.close()


def test_a_killed_front_end_is_started_again_and_the_port_keeps_serving(srv):
    req = pos_pb2.SwipeRequest(client_id=cid(), card_no=105, amount_fen=40)
    ch, pos = pos_stub(srv.target)
    first = pos.Swipe(req, metadata=srv.md(), timeout=60).result
    ch.close()
    old = srv.front_pids()
    mark = len(srv.lines)
    os.kill(old[0], signal.SIGKILL)
    srv.wait_line(re.compile(rf"^mms: front end 0 pid {old[0]} exited"), mark)
    # Front end 1 alone holds the port until 0 is back: a new connection is served.
    ch, pos = pos_stub(srv.target)
    assert pos.Swipe(pos_pb2.SwipeRequest(client_id=cid(), card_no=105, amount_fen=1),
                     metadata=srv.md(), timeout=60).result.code == types_pb2.RESULT_OK
    ch.close()
    new0 = int(srv.wait_line(re.compile(r"^mms: front end 0 pid (\d+) serving"), mark).group(1))
    assert new0 != old[0]
    mark = len(srv.lines)
    os.kill(old[1], signal.SIGKILL)
    srv.wait_line(re.compile(rf"^mms: front end 1 pid {old[1]} exited"), mark)
    # Only the new front end 0 listens now: the retry goes through another process than
    # the first swipe did, and the writer's id index answers it with the first result.
    ch, pos = pos_stub(srv.target)
    again = pos.Swipe(req, metadata=srv.md(), timeout=60).result
    ch.close()
    assert again.replayed and again.seq == first.seq and again.principal_fen == first.principal_fen
    srv.wait_line(re.compile(r"^mms: front end 1 pid (\d+) serving"), mark)


@pytest.fixture()
def held(tmp_path):
    """One front end, two ops in flight at most: the ring's bound is easy to reach."""
    s = FrontServer(str(tmp_path), front_ends=1, extra={"inflight_ops_max": 2})
    try:
        fund(s)
        yield s
    finally:
        if os.path.exists(s.hold):
            os.unlink(s.hold)
        assert s.stop() == 0


def test_a_full_ring_answers_resource_exhausted(held):
    ch, pos = pos_stub(held.target)
    open(held.hold, "w").close()
    first = pos.Swipe.future(pos_pb2.SwipeRequest(client_id=cid(), card_no=101, amount_fen=1),
                             metadata=held.md(), timeout=120)
    held.wait_ready()  # the first op's answer is held: it fills one of the two places
    two = [pos.Swipe.future(pos_pb2.SwipeRequest(client_id=cid(), card_no=101, amount_fen=1),
                            metadata=held.md(), timeout=120) for _ in range(2)]
    finished: queue.Queue = queue.Queue()
    for f in two:
        f.add_done_callback(finished.put)
    refused = finished.get(timeout=120)  # the other one waits behind the held answer
    err = refused.exception()
    assert err is not None and err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error_info(err).reason == "INFLIGHT_LIMIT"
    os.unlink(held.hold)
    admitted = next(f for f in two if f is not refused)
    assert first.result().result.code == types_pb2.RESULT_OK
    assert admitted.result().result.code == types_pb2.RESULT_OK
    assert balance(held, 101) == FUND - 2
    ch.close()


def test_a_call_past_its_deadline_still_commits_once(held):
    ch, pos = pos_stub(held.target)
    req = pos_pb2.SwipeRequest(client_id=cid(), card_no=102, amount_fen=9)
    open(held.hold, "w").close()
    call = pos.Swipe.future(req, metadata=held.md(), timeout=3.0)  # held past it
    held.wait_ready()
    assert call.exception().code() == grpc.StatusCode.DEADLINE_EXCEEDED
    os.unlink(held.hold)
    # Its op was submitted before the deadline passed: it commits, and once only.
    again = pos.Swipe(req, metadata=held.md(), timeout=60).result
    assert again.code == types_pb2.RESULT_OK and again.replayed
    assert balance(held, 102) == FUND - 9
    ch.close()


def test_the_benchmark_starts_the_server_with_front_ends():
    out = subprocess.run([sys.executable, "-m", "server.cli", "bench", "grpc", "--unary",
                          "--front-ends", "2", "--streams", "2", "--seconds", "0.5",
                          "--cards", "10", "--json"], capture_output=True, text=True,
                         cwd=str(ROOT), timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["front_ends"] == 2 and got["errors"] == {}
    # The ring's answers are counted in the writer's grpc_server_* as one process counts.
    assert got["swipes"] > 0 and got["server_ok"] == got["swipes"]
    assert got["front_cpu_us_per_call"] > 0 and got["server_cpu_us_per_call"] > 0


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")
def test_front_ends_serve_mutual_tls(tmp_path):
    d = tmp_path
    tls = mutual_tls_files(d)
    (d / "srv").mkdir()
    terms = [TerminalSpec(1, 0, "admin"), TerminalSpec(2, 4, "pos")]
    with ChildServer(str(d / "srv"), terms, tls=tls, extra={"front_ends": 1}) as child:
        md = (("authorization", f"Bearer {child.token()}"),)
        ca, key, crt = ((d / n).read_bytes() for n in ("ca.crt", "client.key", "client.crt"))
        with grpc.secure_channel(child.target, grpc.ssl_channel_credentials(ca, key, crt)) as ch:
            pos = pos_pb2_grpc.PosServiceStub(ch)
            # Through the ring (a plain swipe of the file's till) and forwarded (GetCard).
            expect(grpc.StatusCode.NOT_FOUND, "RESULT_CARD_NOT_FOUND", pos.Swipe,
                   pos_pb2.SwipeRequest(client_id=cid(), card_no=1, amount_fen=1),
                   metadata=md, timeout=60)
            expect(grpc.StatusCode.NOT_FOUND, "RESULT_CARD_NOT_FOUND", pos.GetCard,
                   pos_pb2.GetCardRequest(card_no=1), metadata=md, timeout=60)
        # Without a client certificate the front end's handshake fails.
        with grpc.secure_channel(child.target, grpc.ssl_channel_credentials(ca)) as ch:
            with pytest.raises(grpc.RpcError) as ei:
                pos_pb2_grpc.PosServiceStub(ch).GetCard(pos_pb2.GetCardRequest(card_no=1),
                                                        metadata=md, timeout=20)
            assert ei.value.code() == grpc.StatusCode.UNAVAILABLE


def test_a_standby_behind_front_ends_answers_writes_not_leader(tmp_path):
    """The writer's own refusal of a ring batch travels back as a failure row: on a
    standby (`--standby-of`) a till's swipe through a front end is UNAVAILABLE /
    NOT_LEADER with the leader named, as in one process; reads are forwarded and served."""
    token = tmp_path / "replication.token"
    token.write_text("front-end-test-replication-token\n")
    terms = [TerminalSpec(1, 0, "admin"), TerminalSpec(2, 3, "pos")]
    (tmp_path / "p").mkdir()
    (tmp_path / "s").mkdir()
    with ChildServer(str(tmp_path / "p"), terms, extra={
            "replication": {"token_file": str(token)}}) as primary:
        ch = grpc.insecure_channel(primary.target)
        admin_pb2_grpc.AdminServiceStub(ch).IssueCards(admin_pb2.IssueCardsRequest(
            client_id=cid(), card_nos=[501]), metadata=(("authorization", f"Bearer {primary.token('admin')}"),),
            timeout=60)
        ch.close()
        with ChildServer(str(tmp_path / "s"), terms, extra={"front_ends": 1, "replication": {
                "token_file": str(token), "standby_of": primary.target}}) as standby:
            md = (("authorization", f"Bearer {standby.token()}"),)
            ch, pos = pos_stub(standby.target)
            info = expect(grpc.StatusCode.UNAVAILABLE, "NOT_LEADER", pos.Swipe,
                          pos_pb2.SwipeRequest(client_id=cid(), card_no=501, amount_fen=1),
                          metadata=md, timeout=60)
            assert info.metadata["leader"] == primary.target
            deadline = time.monotonic() + LINE_TIMEOUT_S
            while True:  # the standby serves the card once it has the primary's frame
                try:
                    card = pos.GetCard(pos_pb2.GetCardRequest(card_no=501), metadata=md,
                                       timeout=60).card
                    break
                except grpc.RpcError as e:
                    assert e.code() == grpc.StatusCode.NOT_FOUND, e
                    assert time.monotonic() < deadline, "the standby never had the card"
                    time.sleep(0.05)
            assert card.card_no == 501 and card.principal_fen == 0
            ch.close()
