"""The journal block packed for replication's wire (core/engine/_framepack.pyx) and
the frames that carry it: unpack gives the exact block back, a packed block that is
not one is refused, and a frame's packed entry decodes to the put of the block."""

from __future__ import annotations

import numpy as np
import pytest
from core.engine._framepack import pack, seqs_contiguous, unpack

from core.engine.replication import (
    _ENTRY,
    _HEADER,
    FRAME_MAGIC,
    FRAME_VERSION,
    PUT,
    PUT_PACKED,
    ReplicationError,
    decode_frame,
    encode_frame,
)
from core.records import JOURNAL

W = JOURNAL.itemsize


def _block(n: int, seed: int, first_seq: int = 100) -> bytes:
    rng = np.random.default_rng(seed)
    recs = np.zeros(n, dtype=JOURNAL)
    recs["seq"] = np.arange(first_seq, first_seq + n, dtype=np.uint64)
    recs["card_no"] = rng.integers(1, 5000, n)
    recs["amount_fen"] = rng.integers(0, 10**6, n)
    recs["store_id"] = 7
    return recs.tobytes()


@pytest.mark.parametrize("n", [1, 2, 3, 511, 1024])
def test_unpack_gives_the_exact_block_and_packs_smaller(n):
    block = _block(n, n)
    packed = pack(block, W)
    assert bytes(unpack(packed, 1 << 30)) == block
    if n > 100:  # the first record whole is the fixed cost
        assert len(packed) < len(block) // 4  # seq, card and amount differ, the rest not


def test_random_bytes_and_identical_records_round_trip():
    rng = np.random.default_rng(3)
    noise = rng.integers(0, 256, W * 9, dtype=np.uint8).tobytes()
    assert bytes(unpack(pack(noise, W), 1 << 30)) == noise
    same = noise[:W] * 5
    packed = pack(same, W)
    assert bytes(unpack(packed, 1 << 30)) == same and len(packed) == 8 + W  # no byte differs


@pytest.mark.parametrize("cut", [0, 5, 8 + W, -1])
def test_a_packed_block_cut_is_refused(cut):
    packed = pack(_block(10, 1), W)
    with pytest.raises(ValueError):
        unpack(packed[:cut], 1 << 30)


def test_a_packed_block_whose_positions_are_garbled_is_refused():
    bad = bytearray(pack(_block(10, 1), W))
    bad[8 + W:8 + W + 4] = b"\xff\xff\x00\x00"  # past the record, then not ascending
    with pytest.raises(ValueError):
        unpack(bytes(bad), 1 << 30)


def test_pack_refuses_what_is_not_whole_records():
    with pytest.raises(ValueError):
        pack(_block(3, 0)[:-1], W)
    with pytest.raises(ValueError):
        pack(b"", W)


def test_seqs_contiguous():
    assert seqs_contiguous(_block(50, 2), W)
    assert seqs_contiguous(_block(1, 2), W) and seqs_contiguous(b"", W)
    recs = np.frombuffer(_block(50, 2), dtype=JOURNAL).copy()
    recs["seq"][30] += 1
    assert not seqs_contiguous(recs.tobytes(), W)
    assert not seqs_contiguous(_block(5, 2)[:-8], W)


def _packed_frame(value: bytes, name: bytes = b"journal") -> bytes:
    key = (100).to_bytes(8, "big")
    return b"".join([_HEADER.pack(FRAME_MAGIC, FRAME_VERSION, 0, 1, 1, 100, 110, 0, 1),
                     _ENTRY.pack(PUT_PACKED, len(name), len(key), len(value)), name, key, value])


def test_a_frame_with_a_packed_block_decodes_to_the_put_of_the_block():
    block = _block(11, 4)
    frame = decode_frame(_packed_frame(pack(block, W)))
    (op, name, _key, value), = frame.entries
    assert (op, name, bytes(value)) == (PUT, b"journal", block)
    assert isinstance(value, bytearray)  # writable: the standby's publish views it as is
    plain = decode_frame(encode_frame(1, 1, 100, 110, 0, [(PUT, b"journal", b"k", block)]))
    assert bytes(plain.entries[0][3]) == block


def test_a_frame_with_a_bad_packed_entry_is_frame_invalid():
    with pytest.raises(ReplicationError) as e:
        decode_frame(_packed_frame(pack(_block(4, 4), W)[:-1]))
    assert e.value.reason == "FRAME_INVALID"
    with pytest.raises(ReplicationError) as e:  # packed, but not into the journal
        decode_frame(_packed_frame(pack(_block(4, 4), W), name=b"cards"))
    assert e.value.reason == "FRAME_INVALID"
