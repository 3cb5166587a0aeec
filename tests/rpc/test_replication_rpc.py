"""Replication through real servers: `mms serve` as a primary and `mms serve
--standby-of` as a standby on loopback. The standby bootstraps from a hot copy, follows,
serves GetCard and card journal reads, reports its applied seq, refuses writes with
NOT_LEADER; after a mixed workload its databases equal the primary's key by key. Sync
mode holds a swipe's acknowledgement while the standby does not confirm."""

from __future__ import annotations

import asyncio
import datetime
import os
import random
import threading
import time

import grpc
import pytest

from server.client import CHANNEL_OPTIONS, auth
from server.mms_pb import (
    admin_pb2,
    admin_pb2_grpc,
    pos_pb2,
    pos_pb2_grpc,
    report_pb2,
    report_pb2_grpc,
    types_pb2,
)
from server.rpc.replication import Standby, frame_envelope, status_of
from server.tools.launch import ChildServer, TerminalSpec, issue_and_fund
from tests.engine.test_replication import assert_same, dump_dir
from tests.rpc.test_server_rpc import error_info

TOKEN = "replication-secret-for-tests"
CARDS = list(range(5_000, 5_040))
# Waiting for the standby to catch up: a bound on how long, never a measure of speed.
CATCH_UP_TIMEOUT_S = 60.0


def _terminals():
    return [TerminalSpec(1, 0, "admin"), TerminalSpec(2, 3, "pos")]


def _token_file(tmp_path) -> str:
    path = tmp_path / "replication.token"
    path.write_text(TOKEN + "\n")
    return str(path)


def _primary(tmp_path, **repl) -> ChildServer:
    work = tmp_path / "primary"
    work.mkdir()
    return ChildServer(str(work), _terminals(), engine={"checkpoint_ops": 300}, extra={
        "replication": {"token_file": _token_file(tmp_path), **repl}}).start()


def _standby(tmp_path, primary: ChildServer) -> ChildServer:
    work = tmp_path / "standby"
    work.mkdir()
    return ChildServer(str(work), _terminals(), extra={"replication": {
        "token_file": _token_file(tmp_path), "standby_of": primary.target}}).start()


async def _setup(target: str, admin: str, pos: str) -> None:
    from server.client import aio_channel, stubs

    async with aio_channel(target) as ch:
        p, a = stubs(ch)
        await issue_and_fund(a, p, admin, pos, CARDS, 100_000)


def _caught_up(primary: ChildServer, standby: ChildServer) -> int:
    """Wait until the standby has applied the primary's last frame; that frame."""
    deadline = time.monotonic() + CATCH_UP_TIMEOUT_S
    while True:
        p = status_of(primary.target, TOKEN)
        s = status_of(standby.target, TOKEN)
        assert not s["error_reason"], s
        if s["frame"] == p["frame"]:
            return p["frame"]
        assert time.monotonic() < deadline, f"the standby did not catch up: {p} {s}"
        time.sleep(0.05)


def _workload(target: str, pos_token: str, admin_token: str, n: int, seed: int) -> None:
    rng = random.Random(seed)
    with grpc.insecure_channel(target, options=CHANNEL_OPTIONS) as ch:
        pos = pos_pb2_grpc.PosServiceStub(ch)
        adm = admin_pb2_grpc.AdminServiceStub(ch)
        next_card = 9_000
        for i in range(n):
            kind = rng.randrange(10)
            if kind < 5:
                nos = [rng.choice(CARDS) for _ in range(32)]
                pos.SwipeBatch(pos_pb2.SwipeBatchRequest(swipes=types_pb2.SwipeColumns(
                    client_ids=os.urandom(16 * 32), card_nos=nos,
                    amount_fen=[rng.randint(1, 300)] * 32)), metadata=auth(pos_token))
            elif kind < 8:
                pos.Recharge(pos_pb2.RechargeRequest(client_id=os.urandom(16),
                                                     card_no=rng.choice(CARDS), amount_fen=500),
                             metadata=auth(pos_token))
            else:
                adm.IssueCards(admin_pb2.IssueCardsRequest(
                    client_id=os.urandom(16), card_nos=[next_card + i]), metadata=auth(admin_token))


def test_standby_bootstraps_follows_serves_reads_and_refuses_writes(tmp_path):
    primary = _primary(tmp_path, mode="async")
    standby = None
    try:
        asyncio.run(_setup(primary.target, primary.token("admin"), primary.token("pos")))
        session = _login(primary)
        # A new standby: its data directory is empty, so it starts from a hot copy.
        standby = _standby(tmp_path, primary)
        _workload(primary.target, primary.token("pos"), primary.token("admin"), 40, 1)
        _caught_up(primary, standby)
        p_status, s_status = status_of(primary.target, TOKEN), status_of(standby.target, TOKEN)
        assert s_status["role"] == "standby" and s_status["seq"] == p_status["seq"] > 0
        assert p_status["role"] == "primary" and p_status["standbys"] == 1
        with grpc.insecure_channel(primary.target) as pc, grpc.insecure_channel(standby.target) as sc:
            for no in CARDS[:10]:
                req = pos_pb2.GetCardRequest(card_no=no)
                a = pos_pb2_grpc.PosServiceStub(pc).GetCard(req, metadata=auth(primary.token()))
                b = pos_pb2_grpc.PosServiceStub(sc).GetCard(req, metadata=auth(standby.token()))
                assert a == b and a.card.principal_fen > 0
            jreq = admin_pb2.GetCardJournalRequest(card_no=CARDS[0], limit=100)
            # The session was made on the primary; the standby knows it from the frames.
            ja = admin_pb2_grpc.AdminServiceStub(pc).GetCardJournal(jreq, metadata=auth(session))
            jb = admin_pb2_grpc.AdminServiceStub(sc).GetCardJournal(jreq, metadata=auth(session))
            assert ja == jb and len(jb.entries) >= 2
            # Reports: the standby's rollups are the primary's, shipped as frames.
            day = datetime.date.today()
            rreq = report_pb2.ReportRequest(from_date=(day - datetime.timedelta(days=2)).isoformat(),
                                            to_date=(day + datetime.timedelta(days=2)).isoformat(),
                                            by=["store"])
            ra = report_pb2_grpc.ReportServiceStub(pc).Sales(rreq, metadata=auth(session))
            rb = report_pb2_grpc.ReportServiceStub(sc).Sales(rreq, metadata=auth(session))
            assert ra == rb and len(ra.rows) >= 1
            # Writes on the standby: UNAVAILABLE, reason NOT_LEADER, the leader named.
            with pytest.raises(grpc.RpcError) as e:
                pos_pb2_grpc.PosServiceStub(sc).Recharge(pos_pb2.RechargeRequest(
                    client_id=os.urandom(16), card_no=CARDS[0], amount_fen=100),
                    metadata=auth(standby.token()))
            assert e.value.code() == grpc.StatusCode.UNAVAILABLE
            info = error_info(e.value)
            assert info.reason == "NOT_LEADER" and info.metadata["leader"] == primary.target
            with pytest.raises(grpc.RpcError) as e:
                admin_pb2_grpc.AdminServiceStub(sc).IssueCards(admin_pb2.IssueCardsRequest(
                    client_id=os.urandom(16), card_nos=[77_777]), metadata=auth(standby.token("admin")))
            assert e.value.code() == grpc.StatusCode.UNAVAILABLE
            assert error_info(e.value).reason == "NOT_LEADER"
        # Every database equal, key by key, at one frame of the primary.
        while True:
            frame = _caught_up(primary, standby)
            a, b = dump_dir(primary.data), dump_dir(standby.data)
            if status_of(primary.target, TOKEN)["frame"] == frame:
                break
        assert_same(a, b)
        # A replication call without the token is refused before anything.
        with grpc.insecure_channel(primary.target) as pc:
            from server.mms_pb import replication_pb2, replication_pb2_grpc
            with pytest.raises(grpc.RpcError) as e:
                replication_pb2_grpc.ReplicationServiceStub(pc).Status(
                    replication_pb2.ReplicationStatusRequest())
            assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert error_info(e.value).reason == "REPLICATION_TOKEN"
        metrics = _scrape(primary.metrics_url)
        assert "mms_replication_standbys_connected 1.0" in metrics
        assert 'mms_replication_mode{mode="async"} 1.0' in metrics
        assert "mms_replication_applied_seq" in _scrape(standby.metrics_url)
    finally:
        if standby is not None:
            assert standby.terminate() == 0
        assert primary.terminate() == 0


def _login(primary: ChildServer) -> str:
    """Bootstrap the primary's chain and log its admin in; the session token."""
    with open(os.path.join(primary.data, "bootstrap.token")) as f:
        boot = f.read().strip()
    with grpc.insecure_channel(primary.target) as ch:
        adm = admin_pb2_grpc.AdminServiceStub(ch)
        adm.Bootstrap(admin_pb2.BootstrapRequest(client_id=os.urandom(16), chain_name="Chain",
                                                 admin_login="root", admin_password="pw-of-root-1"),
                      metadata=auth(boot), timeout=30)
        return adm.Login(admin_pb2.LoginRequest(login="root", password="pw-of-root-1"),
                         timeout=30).session_token


def _scrape(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read().decode()


def test_sync_mode_holds_the_ack_until_the_standby_confirms(tmp_path):
    primary = _primary(tmp_path, mode="sync", on_standby_lost="wait")
    follower = None
    try:
        # Sync with no standby yet and "wait": the set-up's acks need one: follow first.
        follower = Standby(str(tmp_path / "inproc"), primary.target, token=TOKEN)
        asyncio.run(_setup(primary.target, primary.token("admin"), primary.token("pos")))
        applied = threading.Event()
        target = CARDS[3]

        def seen(_frame, _names) -> None:
            card = follower.engine.card(target)
            if card is not None and card["principal_fen"] == 100_000 + 4_321:
                applied.set()

        follower.replica.add_listener(seen)
        follower.pause_confirms()
        with grpc.insecure_channel(primary.target) as ch:
            fut = pos_pb2_grpc.PosServiceStub(ch).Recharge.future(pos_pb2.RechargeRequest(
                client_id=os.urandom(16), card_no=target, amount_fen=4_321),
                metadata=auth(primary.token()))
            assert applied.wait(CATCH_UP_TIMEOUT_S), "the standby applied the recharge"
            # Durable on both nodes, and still not acknowledged: the standby has not confirmed.
            assert not fut.done()
            assert status_of(primary.target, TOKEN)["mode"] == "sync"
            follower.resume_confirms()
            assert fut.result(timeout=CATCH_UP_TIMEOUT_S).result.principal_fen == 104_321
        metrics = _scrape(primary.metrics_url)
        assert 'mms_replication_mode{mode="sync"} 1.0' in metrics
    finally:
        if follower is not None:
            follower.close()
        assert primary.terminate() == 0


def test_mms_serve_standby_of_flag(tmp_path):
    """The command line alone makes a standby: `mms serve --standby-of HOST:PORT
    --replication-token-file F`; it says what it follows and from where, and exits 0 on
    SIGTERM."""
    import signal
    import subprocess
    import sys

    from tests.common import ROOT

    primary = _primary(tmp_path, mode="async")
    proc = None
    try:
        asyncio.run(_setup(primary.target, primary.token("admin"), primary.token("pos")))
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        proc = subprocess.Popen(
            [sys.executable, "-m", "server.cli", "serve", "--data", str(tmp_path / "sb"),
             "--listen", "127.0.0.1:0", "--metrics", "127.0.0.1:0",
             "--terminals", primary.terminals_file, "--standby-of", primary.target,
             "--replication-token-file", _token_file(tmp_path)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=str(ROOT))
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("mms: standby of "):
                break
        said = "".join(lines)
        assert f"mms: standby of {primary.target}: applied frame" in said, said
        target = said.split("mms: serving grpc=")[1].split()[0]
        st = status_of(target, TOKEN)
        assert st["role"] == "standby" and st["seq"] >= len(CARDS)
        proc.send_signal(signal.SIGTERM)
        rest = proc.stdout.read()
        assert proc.wait(60) == 0, rest
    finally:
        if proc is not None:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()
        assert primary.terminate() == 0


@pytest.mark.parametrize("size,seq", [(44, 0), (1, 1), (127, 128), (128, 2**40), (300_000, 2**63)])
def test_a_frames_envelope_makes_it_a_framechunk_message(size, seq):
    """What Subscribe sends as it is (the Feed's wire, joined at commit) parses as the
    FrameChunk protobuf would have encoded it."""
    from server.mms_pb import replication_pb2

    frame = os.urandom(size)
    prefix, suffix = frame_envelope(size, seq)
    wire = prefix + frame + suffix
    msg = replication_pb2.FrameChunk.FromString(wire)
    assert msg.data == frame and msg.end_of_frame and msg.primary_seq == seq
    assert not msg.frame_bytes
    assert wire == replication_pb2.FrameChunk(data=frame, end_of_frame=True,
                                              primary_seq=seq).SerializeToString()


def test_the_standbys_chunk_decoder_reads_what_protobuf_reads():
    """parse_chunk (the standby's decoder: data a view, not a copy) answers as protobuf
    for every FrameChunk, also ones it hands to protobuf (other encodings)."""
    from google.protobuf.message import DecodeError

    from server.mms_pb import replication_pb2
    from server.rpc.replication import parse_chunk

    rng = random.Random(14)
    msgs = [replication_pb2.FrameChunk(),
            replication_pb2.FrameChunk(data=os.urandom(300), end_of_frame=True, primary_seq=2**40),
            replication_pb2.FrameChunk(data=os.urandom(5), frame_bytes=[2, 3], end_of_frame=True),
            replication_pb2.FrameChunk(primary_seq=7)]
    raws = [m.SerializeToString() for m in msgs]
    raws.append(bytes([0x22, 0x01, 0x05]) + raws[1])   # a field before data
    raws.append(raws[1] + bytes([0x20, 0x05, 0x20, 0x06]))  # frame_bytes unpacked
    raws.append(raws[1] + bytes([0x28, 0x01]))          # a field it does not know (5)
    for raw in raws:
        want = replication_pb2.FrameChunk.FromString(raw)
        got = parse_chunk(raw)
        assert (bytes(got.data), got.end_of_frame, got.primary_seq, list(got.frame_bytes)) == (
            want.data, want.end_of_frame, want.primary_seq, list(want.frame_bytes)), raw[:8]
    for _ in range(200):  # cut or corrupted: the same answer or the same refusal
        raw = bytearray(rng.choice(raws[1:3]))
        raw[rng.randrange(len(raw))] = rng.randrange(256)
        raw = bytes(raw[:rng.randrange(1, len(raw) + 1)])
        try:
            want = replication_pb2.FrameChunk.FromString(raw)
        except DecodeError:
            with pytest.raises(DecodeError):
                parse_chunk(raw)
            continue
        got = parse_chunk(raw)
        assert (bytes(got.data), got.end_of_frame, got.primary_seq, list(got.frame_bytes)) == (
            want.data, want.end_of_frame, want.primary_seq, list(want.frame_bytes))


def _frames_of(messages) -> list[bytes]:
    """The whole frames a standby reassembles from Subscribe's messages (wire bytes, as
    Subscribe sends most, or FrameChunk messages), each checked to parse as protobuf."""
    from server.mms_pb import replication_pb2

    out, parts = [], []
    for m in messages:
        raw = m if type(m) is bytes else m.SerializeToString()
        msg = replication_pb2.FrameChunk.FromString(raw)
        if msg.frame_bytes:
            assert not parts and msg.end_of_frame
            off = 0
            for n in msg.frame_bytes:
                out.append(msg.data[off:off + n])
                off += n
            assert off == len(msg.data)
            continue
        parts.append(msg.data)
        if msg.end_of_frame:
            out.append(b"".join(parts))
            parts = []
    assert not parts
    return out


@pytest.mark.parametrize("batches", [False, True])
@pytest.mark.parametrize("sizes", [[300, 400, 500], [1, 3 << 20, 7],
                                   [1_500_000, 1_500_000, 10, 1_500_000], [2 << 20, 5]])
def test_subscribe_sends_every_frame_it_holds_as_views_whole(batches, sizes):
    """The Feed's frames are memoryviews into their commit's wire: Subscribe carries any
    of them (not only the feed's last, as its own wire) to a standby, with or without
    batches, sliced when larger than a chunk. A frame that was a view made protobuf raise
    TypeError, so a standby more than one frame behind was refused and reconnected
    forever (the hang of tests/crash/test_replication_crash.py)."""
    from server.mms_pb import replication_pb2
    from server.rpc.replication import _messages

    rng = random.Random(len(sizes))
    frames = [rng.randbytes(n) for n in sizes]
    held = []
    for number, frame in enumerate(frames, 1):
        prefix, suffix = frame_envelope(len(frame), 77)
        wire = prefix + frame + suffix
        held.append((number, memoryview(wire)[len(prefix):len(prefix) + len(frame)], wire))
    for last in (len(frames), len(frames) + 3):   # the feed's last frame is or is not sent
        for start in range(len(held)):
            messages = list(_messages(held[start:], last, 77, batches))
            assert _frames_of(messages) == frames[start:]
            for m in messages:
                if type(m) is not bytes:
                    continue
                msg = replication_pb2.FrameChunk.FromString(m)
                assert msg.primary_seq == 77
                # Written by hand, byte for byte what protobuf writes.
                assert m == msg.SerializeToString()


def test_a_standby_frames_behind_gets_them_one_per_message(tmp_path):
    """Through a real primary: Subscribe from frame 0 without batches (as
    tests/crash/replication_child.py does) answers with every frame it has, each alone
    in its message and in order; none is refused."""
    from queue import Queue

    from core.engine.replication import decode_frame
    from server.mms_pb import replication_pb2
    from server.rpc.replication import _channel

    primary = _primary(tmp_path, mode="async")
    try:
        asyncio.run(_setup(primary.target, primary.token("admin"), primary.token("pos")))
        last = status_of(primary.target, TOKEN)["frame"]
        assert last >= 3
        stop: Queue = Queue()

        def requests():
            yield replication_pb2.SubscribeRequest(after_frame=0, epoch=0, standby="t")
            stop.get()

        with _channel(primary.target) as ch:
            call = ch.stream_stream(
                "/mms.v1.ReplicationService/Subscribe",
                request_serializer=replication_pb2.SubscribeRequest.SerializeToString,
                response_deserializer=replication_pb2.FrameChunk.FromString)(
                    requests(), metadata=(("authorization", f"Bearer {TOKEN}"),),
                    timeout=CATCH_UP_TIMEOUT_S)
            try:
                accepted = next(call)
                assert not accepted.data and not accepted.end_of_frame
                numbers = []
                while len(numbers) < last:
                    chunk = next(call)
                    assert chunk.end_of_frame and not chunk.frame_bytes
                    numbers.append(decode_frame(chunk.data).number)
                assert numbers == list(range(1, last + 1))
            finally:
                stop.put(None)
                call.cancel()
    finally:
        assert primary.terminate() == 0


def test_an_unexpected_error_ends_a_replication_call_internal_with_its_reason(tmp_path, caplog):
    """A primary's replication call that meets an error it did not expect ends INTERNAL
    with ErrorInfo reason INTERNAL and the traceback in the primary's log, through a real
    gRPC server: before, Subscribe and Status ended as grpc's bare UNKNOWN with nothing
    logged, and a standby reconnected forever with no trace of why."""
    from core import Engine
    from core.engine.replication import Feed
    from server.mms_pb import replication_pb2, replication_pb2_grpc
    from server.rpc.replication import ReplicationService

    engine = Engine(str(tmp_path / "data"), feed=Feed(1))

    def broken(*_a, **_k):
        raise RuntimeError("a bug in the feed")

    engine.feed.wires_after = broken
    engine.feed.status = broken

    async def run() -> list:
        server = grpc.aio.server()
        replication_pb2_grpc.add_ReplicationServiceServicer_to_server(
            ReplicationService(engine, TOKEN), server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        seen = []
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
                stub = replication_pb2_grpc.ReplicationServiceStub(ch)
                md = (("authorization", f"Bearer {TOKEN}"),)
                for call in (
                        lambda: stub.Status(replication_pb2.ReplicationStatusRequest(), metadata=md,
                                            timeout=CATCH_UP_TIMEOUT_S),
                        lambda: _drain(stub.Subscribe(_held_open(replication_pb2.SubscribeRequest(
                            after_frame=0, epoch=1, standby="t")), metadata=md,
                            timeout=CATCH_UP_TIMEOUT_S))):
                    with pytest.raises(grpc.aio.AioRpcError) as e:
                        await call()
                    seen.append(e.value)
        finally:
            await server.stop(None)
        return seen

    async def _drain(call) -> None:
        async for _ in call:
            pass

    async def _held_open(first):
        # The request stream stays open after the first message, as a standby's does (its
        # confirmations): a stream the client closed at once could end the call OK before
        # the primary read the feed (a standby gone), which is a race, not the rule tested.
        yield first
        await asyncio.Event().wait()

    try:
        with caplog.at_level("ERROR", logger="mms.server"):
            errors = asyncio.run(run())
    finally:
        engine.close()
    for err, method in zip(errors, ("Status", "Subscribe"), strict=True):
        assert err.code() == grpc.StatusCode.INTERNAL, (method, err)
        assert error_info(err).reason == "INTERNAL", method
        assert f"mms.v1.ReplicationService/{method} failed" in caplog.text
    assert caplog.text.count("a bug in the feed") >= 2


def test_an_async_primary_gathers_a_caught_up_standbys_new_frames_into_one_message(tmp_path):
    """Through a real gRPC server: an async primary whose standby is caught up waits
    (ReplicationService._gather, REPLICATION_ASYNC_GATHER_MS) after the frame that woke
    the stream, and sends the frames committed meanwhile as one batched message (one
    send, one receive and one standby transaction, not one each), consecutive and
    whole; a sync primary never waits (every frame goes at once)."""
    import threading

    from core import Engine, EngineConfig
    from core.engine.replication import Feed, decode_frame
    from core.records import Result
    from server.mms_pb import replication_pb2, replication_pb2_grpc
    from server.rpc.guard import GuardedServer, RequestGuard
    from server.rpc.metrics import Metrics
    from server.rpc.replication import ReplicationService
    from tests.common import cid

    sync = Engine(str(tmp_path / "sync"), feed=Feed(1, mode="sync", on_standby_lost="async",
                                                     timeout_s=0.1))
    assert ReplicationService(sync, TOKEN).gather_s == 0
    sync.close()

    engine = Engine(str(tmp_path / "data"), feed=Feed(1), config=EngineConfig(rollups=False))
    assert engine.issue_cards([1], cid()).result(30).code == Result.OK
    service = ReplicationService(engine, TOKEN)
    assert service.gather_s > 0
    committed = threading.Event()
    gathers = []

    async def gather() -> None:  # holds the send until the test's commits are in
        gathers.append(engine.feed.last_committed)
        await asyncio.get_running_loop().run_in_executor(None, committed.wait,
                                                         CATCH_UP_TIMEOUT_S)

    service._gather = gather
    after = engine.feed.last_committed
    ops = 4

    def commit() -> None:
        for _ in range(ops):
            assert engine.recharge(1, 100, cid()).result(30).codes[0] == Result.OK
        committed.set()

    async def run():
        server = grpc.aio.server()
        # Through the guard, as mms serve registers it (its serializer sends the bytes
        # Subscribe yields as they are).
        replication_pb2_grpc.add_ReplicationServiceServicer_to_server(
            service, GuardedServer(server, RequestGuard(Metrics())))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
                stub = replication_pb2_grpc.ReplicationServiceStub(ch)

                async def requests():
                    yield replication_pb2.SubscribeRequest(after_frame=after, epoch=1,
                                                           standby="t", batches=True)
                    await asyncio.Event().wait()

                call = stub.Subscribe(requests(), metadata=(("authorization", f"Bearer {TOKEN}"),),
                                      timeout=CATCH_UP_TIMEOUT_S)
                accepted = await call.read()
                assert not accepted.data
                writer = threading.Thread(target=commit)
                writer.start()
                chunk = await call.read()
                writer.join()
                call.cancel()
                return chunk
        finally:
            await server.stop(None)

    try:
        chunk = asyncio.run(run())
        # The first wait was woken by a new frame. (It may not be the only one: a commit
        # of the engine's own after the test's, or the stale wake-up of one sent already,
        # can start another before the call is cancelled: CI saw gathers [5, 8].)
        assert gathers and gathers[0] > after, "a wait, woken by a new frame"
        assert chunk.end_of_frame and len(chunk.frame_bytes) == ops, "the frames in one message"
        view, off, numbers = memoryview(chunk.data), 0, []
        for n in chunk.frame_bytes:
            numbers.append(decode_frame(bytes(view[off:off + n])).number)
            off += n
        assert off == len(chunk.data)
        assert numbers == list(range(after + 1, after + ops + 1))
    finally:
        committed.set()
        engine.close()


def test_a_frame_the_standby_holds_from_its_hot_copy_is_confirmed_when_it_subscribes(tmp_path):
    """A sync primary ("wait") whose last commit is held for a standby's confirmation; a
    standby that bootstrapped from a hot copy holding that frame subscribes from it: the
    frame is confirmed by its subscription (the standby never applies, so never confirms,
    a frame it got in the copy), and the held op is acknowledged. Before, its acks and
    every later op waited for good (hfo's run C2_150735: lag_records 1, lag 158 s)."""
    import numpy as np

    from core import Engine
    from core.engine.replication import Feed
    from server.mms_pb import replication_pb2, replication_pb2_grpc
    from server.rpc.replication import ReplicationService

    engine = Engine(str(tmp_path / "data"), feed=Feed(1, mode="sync", on_standby_lost="wait"))
    feed = engine.feed
    before = feed.last_committed
    fut = engine.issue_cards(np.arange(7, 8), os.urandom(16))     # held: no standby confirms
    deadline = time.monotonic() + CATCH_UP_TIMEOUT_S
    while feed.last_committed == before and time.monotonic() < deadline:
        time.sleep(0.01)
    held = feed.last_committed
    assert held > before and feed.confirmed < held, "the commit is held for a standby"
    assert not fut.done()

    async def run() -> int:
        server = grpc.aio.server()
        replication_pb2_grpc.add_ReplicationServiceServicer_to_server(
            ReplicationService(engine, TOKEN), server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        gate = asyncio.Event()

        async def requests():
            # What a standby bootstrapped from a copy holding frame `held` sends first.
            yield replication_pb2.SubscribeRequest(after_frame=held, epoch=1, standby="copy")
            await gate.wait()

        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
                stub = replication_pb2_grpc.ReplicationServiceStub(ch)
                call = stub.Subscribe(requests(), metadata=(("authorization", f"Bearer {TOKEN}"),),
                                      timeout=CATCH_UP_TIMEOUT_S)
                await call.read()       # accepted
                confirmed = feed.confirmed
                gate.set()
                call.cancel()
                return confirmed
        finally:
            await server.stop(None)

    try:
        assert asyncio.run(run()) >= held
        fut.result(timeout=CATCH_UP_TIMEOUT_S)      # the held op is acknowledged
        assert engine.card(7) is not None
    finally:
        feed.confirm(feed.last_committed)   # lets close() answer anything it still holds
        engine.close()
