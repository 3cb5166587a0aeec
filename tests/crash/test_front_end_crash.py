"""SIGKILL of the writer behind two front ends (`mms serve --front-ends 2`) loses no
acknowledged swipe: the writer holds the answer of a swipe in flight (it reports the
point by a file, and waits there), is killed, and its front ends stop (their pipe to it
ends) answering the swipe in flight UNAVAILABLE. A restarted server replays every
acknowledged swipe with its first result, applies the one in flight at most once, and
its card holds exactly what was applied."""

from __future__ import annotations

import signal
import time

import grpc
from common import cid
from test_front_ends import FUND, FrontServer, balance, error_info, fund, pos_stub

from server.mms_pb import pos_pb2, types_pb2

ACKED = 12
# How long the front ends may take to see the writer's end and exit.
EXIT_TIMEOUT_S = 60.0


def _gone(pid: int) -> bool:
    """The process has exited (it may stay a zombie until its new parent reaps it)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def test_sigkill_of_the_writer_loses_no_acknowledged_swipe(tmp_path):
    srv = FrontServer(str(tmp_path / "a"), front_ends=2)
    try:
        fund(srv)
        acked = []
        for i in range(ACKED):
            ch, pos = pos_stub(srv.target)  # a connection each: both front ends take some
            req = pos_pb2.SwipeRequest(client_id=cid(), card_no=101 + i % 2, amount_fen=100 + i)
            res = pos.Swipe(req, metadata=srv.md(), timeout=60).result
            ch.close()
            assert res.code == types_pb2.RESULT_OK
            acked.append((req, res))
        fronts = srv.front_pids()
        open(srv.hold, "w").close()
        ch, pos = pos_stub(srv.target)
        last = pos_pb2.SwipeRequest(client_id=cid(), card_no=101, amount_fen=7)
        call = pos.Swipe.future(last, metadata=srv.md(), timeout=120)
        srv.wait_ready()  # its op is submitted; its answer is held in the writer
    finally:
        srv.stop(signal.SIGKILL)
    err = call.exception()
    assert err is not None and err.code() == grpc.StatusCode.UNAVAILABLE
    assert error_info(err).reason == "WRITER_GONE"
    ch.close()
    deadline = time.monotonic() + EXIT_TIMEOUT_S
    for pid in fronts.values():
        while not _gone(pid):
            assert time.monotonic() < deadline, f"front end {pid} outlived its writer"
            time.sleep(0.01)

    again = FrontServer(str(tmp_path / "b"), front_ends=1, data=srv.data)
    try:
        ch, pos = pos_stub(again.target)
        # The new server's terminals are its own: the same tills, new tokens.
        for req, first in acked:
            res = pos.Swipe(req, metadata=again.md(), timeout=60).result
            assert res.replayed and res.seq == first.seq
            assert res.principal_fen == first.principal_fen
        res = pos.Swipe(last, metadata=again.md(), timeout=60).result
        assert res.code == types_pb2.RESULT_OK
        applied = {101: 7, 102: 0}
        for req, _ in acked:
            applied[req.card_no] += req.amount_fen
        assert balance(again, 101) == FUND - applied[101]
        assert balance(again, 102) == FUND - applied[102]
        ch.close()
    finally:
        assert again.stop() == 0
