"""The shared-memory ring of `mms serve --front-ends N` (server/rpc/ring.py) and the front
end's pieces that need no processes: two maps of one ring agree, rows wrap around the
end, a failure row carries its status and reason in its bounded body, the front end's
bound and deadline are checked before a row is written, and a forwarded call names its
caller's address and nobody else's (the writer's login throttle counts by it)."""

from __future__ import annotations

import asyncio
import os

import grpc
import numpy as np
import pytest

from core.records import OpType, Result
from server.rpc.errors import RpcFailure
from server.rpc.front import forwarded_metadata, server_options
from server.rpc.guard import FRONT_PEER_KEY, ForwardedContext
from server.rpc.ring import (
    KIND_FAILURE,
    KIND_RESULT,
    OP_HEAD,
    RES_HEAD,
    RESULT_BODY_BYTES,
    FrontSide,
    Ring,
    failure_body,
    parse_failure,
    set_nonblocking,
)


def _row(i: int) -> tuple:
    return (i, i + 1, 1000 + i, 10 + i, 1, 2, 0, 0, int(OpType.SWIPE), 0)


class Ctx:
    def __init__(self, remaining=None) -> None:
        self.remaining = remaining

    def time_remaining(self):
        return self.remaining


def test_two_maps_of_a_ring_see_the_same_rows(tmp_path):
    path = str(tmp_path / "ring")
    a = Ring(path, 4, create=True)
    b = Ring(path, 4, create=False)
    a.single[1] = _row(7)
    a.header[OP_HEAD] = 2
    assert int(b.header[OP_HEAD]) == 2
    assert int(b.ops[1]["card_no"]) == 1007 and int(b.ops[1]["pin"]) == 0
    with pytest.raises(ValueError):
        Ring(path, 8, create=False)  # another size: not this ring
    a.close()
    b.close()


def test_failure_rows_keep_code_and_reason_within_the_row():
    long = "x" * 1000
    body = failure_body(grpc.StatusCode.UNAVAILABLE, "NOT_LEADER", long,
                        {"leader": "10.0.0.1:7000", "note": "y" * 400})
    assert len(body) <= RESULT_BODY_BYTES
    code, reason, message, _ = parse_failure(body)
    assert (code, reason) == (grpc.StatusCode.UNAVAILABLE, "NOT_LEADER")
    assert long.startswith(message)
    short = failure_body(grpc.StatusCode.RESOURCE_EXHAUSTED, "INFLIGHT_LIMIT", "full", {"a": "b"})
    assert parse_failure(short) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "INFLIGHT_LIMIT",
                                    "full", {"a": "b"})


def _front(tmp_path, slots: int, pending_max: int):
    """A front end's side of a new ring, on the running loop: (side, ring, the read end of
    its pipe to the writer, the write end of the writer's pipe to it, the fds to close)."""
    ring = Ring(str(tmp_path / "ring"), slots, create=True)
    to_w_r, to_w = os.pipe()
    from_w, from_w_w = os.pipe()
    set_nonblocking(to_w_r, from_w)
    side = FrontSide(ring, to_w, from_w, pending_max=pending_max)
    side.attach(asyncio.get_running_loop())
    return side, ring, to_w_r, from_w_w, (to_w_r, to_w, from_w)


def test_front_side_writes_a_batch_wraps_and_reads_its_answers(tmp_path):
    async def main():
        side, ring, to_w_r, from_w_w, fds = _front(tmp_path, 3, 5)
        ring.header[OP_HEAD] = 2  # as if two rows had gone before: the next batch wraps
        ring.header[RES_HEAD] = 2
        side._head = side._res_tail = 2
        futs = [side.start_one(_row(i), Ctx()) for i in range(3)]
        await asyncio.sleep(0)
        assert os.read(to_w_r, 16) == b"\x01" and int(ring.header[OP_HEAD]) == 5
        assert [int(ring.ops[s]["card_no"]) for s in (2, 0, 1)] == [1000, 1001, 1002]
        # Two more gather while the batch is in the ring; the sixth is past the bound.
        futs += [side.start_one(_row(i), Ctx()) for i in (3, 4)]
        with pytest.raises(RpcFailure) as ei:
            side.start_one(_row(5), Ctx())
        assert ei.value.reason == "INFLIGHT_LIMIT"
        with pytest.raises(RpcFailure) as ei:
            side.start_one(_row(5), Ctx(remaining=0.0))
        assert ei.value.reason == "DEADLINE_EXCEEDED"
        # The writer's answers: a reply, a rejection, a failure.
        res = ring.results
        res[2] = (KIND_RESULT, int(Result.OK), 0, 0, 3, np.pad(np.frombuffer(b"abc", np.uint8),
                                                             (0, RESULT_BODY_BYTES - 3)))
        res[0] = (KIND_RESULT, int(Result.CARD_FROZEN), 1, 0, 0, np.zeros(RESULT_BODY_BYTES, np.uint8))
        body = failure_body(grpc.StatusCode.UNAVAILABLE, "NOT_LEADER", "m", {})
        res[1] = (KIND_FAILURE, 0, 0, 0, len(body),
                  np.pad(np.frombuffer(body, np.uint8), (0, RESULT_BODY_BYTES - len(body))))
        ring.header[RES_HEAD] = 5
        os.write(from_w_w, b"\x01")
        got = await asyncio.gather(*futs[:3])
        assert got[0] == (KIND_RESULT, int(Result.OK), 0, b"abc")
        assert got[1][:3] == (KIND_RESULT, int(Result.CARD_FROZEN), 1)
        assert got[2][0] == KIND_FAILURE and parse_failure(got[2][3])[1] == "NOT_LEADER"
        # The two that gathered went to the ring at once, before those answers.
        assert int(ring.header[OP_HEAD]) == 7 and os.read(to_w_r, 16) == b"\x01"
        # The writer's pipe ends: the calls waiting hear WRITER_GONE, new ones too.
        os.close(from_w_w)
        for fut in futs[3:]:
            with pytest.raises(RpcFailure) as ei:
                await fut
            assert ei.value.reason == "WRITER_GONE" and side.writer_gone
        with pytest.raises(RpcFailure):
            side.start_one(_row(6), Ctx())
        for fd in fds:
            os.close(fd)
        ring.close()
    asyncio.run(main())


def test_a_batch_answered_in_parts_keeps_the_rest_waiting(tmp_path):
    async def main():
        side, ring, _, from_w_w, fds = _front(tmp_path, 4, 8)
        futs = [side.start_one(_row(i), Ctx()) for i in range(3)]
        await asyncio.sleep(0)
        assert int(ring.header[OP_HEAD]) == 3
        later = side.start_one(_row(9), Ctx())  # gathers while the batch is in the ring
        ok = (KIND_RESULT, int(Result.OK), 0, 0, 0, np.zeros(RESULT_BODY_BYTES, np.uint8))
        ring.results[0] = ring.results[1] = ring.results[2] = ok
        ring.header[RES_HEAD] = 2  # the writer's first part: two of the three
        os.write(from_w_w, b"\x01")
        await asyncio.gather(*futs[:2])
        assert not futs[2].done() and int(ring.header[OP_HEAD]) == 3  # nothing new yet
        ring.header[RES_HEAD] = 3
        os.write(from_w_w, b"\x01")
        assert (await futs[2])[1] == int(Result.OK)
        await asyncio.sleep(0)
        assert int(ring.header[OP_HEAD]) == 4 and not later.done()  # then the next batch
        for fd in (*fds, from_w_w):
            os.close(fd)
        later.cancel()
        ring.close()
    asyncio.run(main())


def test_a_forwarded_call_names_its_callers_address_only():
    md = forwarded_metadata((("authorization", "Bearer t"), (FRONT_PEER_KEY, "ipv4:6.6.6.6:1"),
                             ("user-agent", "x"), ("x-till", "7")), "ipv4:10.0.0.7:5000")
    assert md == (("authorization", "Bearer t"), ("x-till", "7"),
                  (FRONT_PEER_KEY, "ipv4:10.0.0.7:5000"))

    class Call:
        def invocation_metadata(self):
            return md

        def peer(self):
            return "unix:/dev/shm/mms-front-x/writer.sock"

        def code(self):
            return "own"

    ctx = ForwardedContext(Call())
    assert ctx.peer() == "ipv4:10.0.0.7:5000" and ctx.code() == "own"


def test_front_ends_share_the_port_and_nothing_else_changes():
    one, many = dict(server_options()), dict(server_options(reuseport=True))
    assert one.pop("grpc.so_reuseport") == 0 and many.pop("grpc.so_reuseport") == 1
    assert one == many


def test_front_ends_in_the_config_file(tmp_path):
    from server.rpc import config

    path = tmp_path / "mms.toml"
    assert config.load(str(path.write_text("") or path)).front_ends == 0  # one process
    path.write_text("front_ends = 2\n")
    assert config.load(str(path)).front_ends == 2
    for bad in ("-1", '"2"', "true"):
        path.write_text(f"front_ends = {bad}\n")
        with pytest.raises(ValueError, match="front_ends"):
            config.load(str(path))
