"""The standby's receiving side (server/rpc/replication.py `_Frames`): chunks taken off
the call by the reader thread become whole frames, in order, and every frame already
received goes into the next transaction (up to a byte bound); the end of the call or its
error comes out only after every chunk received before it."""

from __future__ import annotations

import queue

import pytest

from core import ReplicationError
from server.rpc.replication import _ENDED, _Chunk, _Frames


def _one(data: bytes, seq: int = 0) -> _Chunk:
    return _Chunk(memoryview(data), True, seq, [])


def _batch(frames: list[bytes]) -> _Chunk:
    return _Chunk(memoryview(b"".join(frames)), True, 0, [len(f) for f in frames])


def _slices(data: bytes, n: int) -> list[_Chunk]:
    step = -(-len(data) // n)
    parts = [data[i:i + step] for i in range(0, len(data), step)]
    return [_Chunk(memoryview(p), i == len(parts) - 1, 0, []) for i, p in enumerate(parts)]


def _queue(items) -> queue.Queue:
    q: queue.Queue = queue.Queue()
    for item in items:
        q.put(item)
    return q


def test_every_chunk_received_gives_its_frames_in_order_for_one_transaction():
    frames = [bytes([i]) * (10 + i) for i in range(7)]
    chunks = [_one(frames[0], 5), _batch(frames[1:4]), *_slices(frames[4], 3),
              _one(frames[5]), _one(frames[6], 9)]
    heard: list = []
    got = _Frames()
    assert got.gather(_queue(chunks), heard.append, 1 << 20) is None
    assert [bytes(f) for f in got.complete] == frames
    assert heard == chunks  # each chunk seen once, in order (the primary's seq)


def test_gather_stops_at_its_byte_bound_and_leaves_the_rest_queued():
    frames = [bytes([i]) * 100 for i in range(5)]
    q = _queue([_one(f) for f in frames])
    got = _Frames()
    assert got.gather(q, lambda c: None, 250) is None
    assert [bytes(f) for f in got.complete] == frames[:3]
    got.complete.clear()
    assert got.gather(q, lambda c: None, 250) is None
    assert [bytes(f) for f in got.complete] == frames[3:]


@pytest.mark.parametrize("end", [_ENDED, RuntimeError("the call failed")])
def test_the_end_of_the_call_comes_after_every_frame_received_before_it(end):
    frames = [b"a" * 8, b"b" * 9]
    q = _queue([_one(frames[0]), _one(frames[1]), end, _one(b"never")])
    got = _Frames()
    assert got.gather(q, lambda c: None, 1 << 20) is end
    assert [bytes(f) for f in got.complete] == frames


def test_a_frame_still_in_slices_waits_for_its_last_and_the_whole_ones_go_first():
    whole, big = b"w" * 12, bytes(range(200)) * 3
    first, *others = _slices(big, 3)
    q = _queue([_one(whole), first])
    got = _Frames()
    assert got.gather(q, lambda c: None, 1 << 20) is None  # nothing more: does not wait
    assert [bytes(f) for f in got.complete] == [whole]
    got.complete.clear()
    for c in others:
        q.put(c)
    assert got.gather(q, lambda c: None, 1 << 20) is None
    assert [bytes(f) for f in got.complete] == [big]


def test_a_batch_inside_a_sliced_frame_is_frame_invalid():
    first, _rest = _slices(b"x" * 100, 2)
    with pytest.raises(ReplicationError) as e:
        _Frames().gather(_queue([first, _batch([b"y", b"z"])]), lambda c: None, 1 << 20)
    assert e.value.reason == "FRAME_INVALID"
