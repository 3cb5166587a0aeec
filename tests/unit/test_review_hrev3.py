"""Defects the session-10 review (hrev3) found in files other helpers own this session;
each test fails until its owner fixes it (docs: the hrev3 report).

- core/engine/_framepack.pyx / core/engine/replication.py (hrep): a packed journal
  block whose header claims 2**32-1 identical records (k = 0 positions) is 424 bytes on
  the wire and asks unpack for 1.8 TB: decode_frame lets MemoryError out instead of
  refusing the frame with FRAME_INVALID (an unbounded message).
- core/engine/rollup_worker.py (hun): WorkerProcess leaks both pipe ends it keeps when
  the worker cannot be started (subprocess.Popen raises), and the tailer tries again at
  its next poll: two fds lost per poll for as long as the start fails.
"""

from __future__ import annotations

import os
import struct

import pytest

from core.engine import rollup_worker
from core.engine.replication import (
    _ENTRY,
    _HEADER,
    FRAME_MAGIC,
    FRAME_VERSION,
    PUT_PACKED,
    ReplicationError,
    decode_frame,
)
from core.records import JOURNAL


def test_a_packed_block_claiming_four_billion_records_is_frame_invalid():
    value = struct.pack("<IHH", 0xFFFFFFFF, JOURNAL.itemsize, 0) + bytes(JOURNAL.itemsize)
    name, key = b"journal", (100).to_bytes(8, "big")
    frame = b"".join([_HEADER.pack(FRAME_MAGIC, FRAME_VERSION, 0, 1, 1, 100, 110, 0, 1),
                      _ENTRY.pack(PUT_PACKED, len(name), len(key), len(value)), name, key,
                      value])
    with pytest.raises(ReplicationError) as e:
        decode_frame(frame)
    assert e.value.reason == "FRAME_INVALID"


class _Store:
    path = "/nonexistent"

    class env:  # noqa: N801 (the shape of lmdb.Environment's info())
        @staticmethod
        def info():
            return {"map_size": 1 << 20}


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_a_worker_that_cannot_be_started_leaks_no_fd(monkeypatch):
    def refuse(*_a, **_kw):
        raise OSError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(rollup_worker.subprocess, "Popen", refuse)
    before = _fds()
    for _ in range(5):
        with pytest.raises(OSError):
            rollup_worker.WorkerProcess(_Store(), 0)
    assert _fds() == before, "pipe ends left open by failed starts"
