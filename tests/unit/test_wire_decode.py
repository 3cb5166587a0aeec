"""The C decoder of swipe batches (server/rpc/_wire.pyx swipe_columns, used for
SwipeStream and SwipeBatch requests) accepts exactly what protobuf accepts and reads the
same values from it: on protobuf's own bytes, on hand-written wire forms (unpacked and
split packed fields, fields out of order, unknown fields of every wire type, known fields
with the wrong wire type, a message field met twice) and on random and mutated bytes."""

from __future__ import annotations

import random

import numpy as np
import pytest
from google.protobuf.message import DecodeError

from server.mms_pb import pos_pb2, types_pb2
from server.rpc import _wire
from server.rpc.codec import RAW_REQUEST_DECODERS, SwipeColumnsRequest

STREAM = (pos_pb2.SwipeStreamRequest, (1, 2, 3))
BATCH = (pos_pb2.SwipeBatchRequest, (0, 1, 2))
COLUMNS = ("card_nos", "amount_fen", "category", "flags", "operator_ids")


def varint(v: int) -> bytes:
    v &= 2**64 - 1
    out = bytearray()
    while v >= 0x80:
        out.append(v & 0x7F | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def tag(number: int, wire_type: int) -> bytes:
    return varint(number << 3 | wire_type)


def delimited(number: int, body: bytes) -> bytes:
    return tag(number, 2) + varint(len(body)) + body


def protobufs(raw: bytes, cls):
    try:
        return cls.FromString(raw)
    except DecodeError:
        return None


def agree(raw: bytes, kind=STREAM) -> bool:
    """Both parsers refuse raw, or both accept it with the same values; True if accepted."""
    cls, fields = kind
    pb = protobufs(raw, cls)
    got = _wire.swipe_columns(raw, *fields)
    if pb is None:
        assert got is None, raw.hex()
        return False
    assert got is not None, raw.hex()
    batch_id, store_id, cids, *cols = got
    assert batch_id == (pb.batch_id if cls is pos_pb2.SwipeStreamRequest else 0)
    assert store_id == pb.store_id
    assert cids == pb.swipes.client_ids
    for name, col in zip(COLUMNS, cols, strict=True):
        want = list(getattr(pb.swipes, name))
        assert col.dtype == (np.uint64 if name == "card_nos" else np.int64)
        assert col.tolist() == want, name
    return True


def random_request(rng: random.Random, kind=STREAM) -> bytes:
    cls, _ = kind
    n = rng.choice([0, 1, 2, 5, 64, 1024])
    def vals(lo, hi, k):
        return [rng.choice([lo, hi, 0, 1, rng.randint(lo, hi)]) for _ in range(k)]
    cols = types_pb2.SwipeColumns(
        client_ids=rng.randbytes(16 * n + rng.choice([0, 0, 1, -1]) if n else 0),
        card_nos=vals(0, 2**64 - 1, n), amount_fen=vals(-(2**63), 2**63 - 1, n),
        category=vals(0, 2**32 - 1, rng.choice([0, n, n + 1])),
        flags=vals(0, 2**32 - 1, rng.choice([0, n])),
        operator_ids=vals(0, 2**32 - 1, rng.choice([0, n])))
    if cls is pos_pb2.SwipeStreamRequest:
        msg = cls(batch_id=rng.choice([0, 1, 2**64 - 1]), swipes=cols,
                  store_id=rng.choice([0, 7, 2**32 - 1]))
    else:
        msg = cls(swipes=cols, store_id=rng.choice([0, 7, 2**32 - 1]))
    return msg.SerializeToString()


def mutate(rng, raw: bytearray, times: int, insert, append) -> None:
    """times random edits of raw in place: flip a bit, cut the tail, insert insert() at a
    random place, or append append()."""
    for _ in range(times):
        op = rng.randrange(4)
        if op == 0 and raw:
            raw[rng.randrange(len(raw))] ^= 1 << rng.randrange(8)
        elif op == 1 and raw:
            del raw[rng.randrange(len(raw)):]
        elif op == 2:
            at = rng.randint(0, len(raw))
            raw[at:at] = insert()
        else:
            raw += append()


@pytest.mark.parametrize("kind", [STREAM, BATCH], ids=["stream", "batch"])
def test_protobufs_own_bytes_read_the_same(kind):
    rng = random.Random(11)
    for _ in range(200):
        assert agree(random_request(rng, kind), kind)


def test_unpacked_split_and_interleaved_repeated_fields_append_in_the_order_met():
    cols = (tag(2, 0) + varint(5) + delimited(3, varint(-7) + varint(8))
            + delimited(2, varint(2**64 - 1) + varint(300)) + tag(4, 0) + varint(2**40 + 3)
            + tag(3, 0) + varint(1) + delimited(2, b"") + tag(2, 0) + varint(0)
            + delimited(1, b"x" * 16) + delimited(1, b"y" * 32))
    raw = tag(1, 0) + varint(9) + delimited(2, cols) + tag(3, 0) + varint(2**33 + 4)
    assert agree(raw)
    got = _wire.swipe_columns(raw, 1, 2, 3)
    assert got[3].tolist() == [5, 2**64 - 1, 300, 0] and got[4].tolist() == [-7, 8, 1]
    assert got[5].tolist() == [3] and got[1] == 4 and got[2] == b"y" * 32


def test_a_message_field_met_twice_is_merged_and_singular_fields_keep_the_last():
    a = delimited(1, b"a" * 16) + delimited(2, varint(1))
    b = delimited(2, varint(2)) + delimited(3, varint(50))
    raw = (tag(1, 0) + varint(1) + delimited(2, a) + tag(3, 0) + varint(9)
           + tag(1, 0) + varint(4) + delimited(2, b) + tag(3, 0) + varint(10))
    assert agree(raw)
    got = _wire.swipe_columns(raw, 1, 2, 3)
    assert got[:3] == (4, 10, b"a" * 16) and got[3].tolist() == [1, 2]


UNKNOWN = [tag(15, 0) + varint(2**63), tag(16, 1) + b"12345678", tag(99, 5) + b"1234",
           delimited(2**29 - 1, b"anything"), tag(20, 3) + tag(1, 0) + varint(1) + tag(20, 4),
           tag(21, 3) + tag(22, 3) + delimited(3, b"zz") + tag(22, 4) + tag(21, 4),
           # known fields with another wire type are kept as unknown fields
           tag(2, 5) + b"abcd", tag(1, 1) + b"12345678", tag(3, 3) + tag(3, 4)]


@pytest.mark.parametrize("i", range(len(UNKNOWN)))
def test_unknown_fields_and_wrong_wire_types_are_skipped_at_both_levels(i):
    cols = delimited(1, b"c" * 16) + delimited(2, varint(77)) + delimited(3, varint(5))
    for raw in (UNKNOWN[i] + delimited(2, cols), delimited(2, UNKNOWN[i] + cols),
                delimited(2, cols + UNKNOWN[i]) + UNKNOWN[i]):
        assert agree(raw)
        assert _wire.swipe_columns(raw, 1, 2, 3)[3].tolist() == [77]


BAD = [b"\x80", tag(2, 0) + b"\xff" * 11, tag(2, 2) + varint(10) + b"short",
       tag(0, 0) + varint(1), tag(1, 6), tag(1, 7), tag(5, 4), tag(20, 3) + tag(1, 0) + b"\x01",
       tag(20, 3) + tag(21, 4), b"\xff\xff\xff\xff\xff\x01" + varint(1), tag(9, 1) + b"1234",
       tag(9, 5) + b"12", delimited(2, delimited(2, b"\xff")),
       delimited(2, tag(4, 4)), delimited(2, delimited(1, b"ab")[:-1])]


@pytest.mark.parametrize("i", range(len(BAD)))
def test_malformed_bytes_are_refused_by_both(i):
    assert not agree(BAD[i])
    agree(delimited(2, BAD[i]))  # inside swipes some are valid columns: the same answer


def test_varint_edges_read_as_protobuf_reads_them():
    for body in (b"\xff" * 9 + b"\x01", b"\xff" * 9 + b"\x7f", b"\x80" * 9 + b"\x00",
                 b"\xff" * 9 + b"\x81", b"\xff" * 10 + b"\x00", b"\x80\x00"):
        for raw in (delimited(2, tag(2, 0) + body), delimited(2, tag(4, 0) + body),
                    delimited(2, delimited(3, body)), tag(1, 0) + body, tag(3, 0) + body):
            agree(raw)
    # tags: five bytes at most, below 2**32
    for t in (b"\x88\x80\x80\x80\x00", b"\x88\x80\x80\x80\x80\x00", b"\xf8\xff\xff\xff\x0f",
              b"\xf8\xff\xff\xff\x1f"):
        agree(t + varint(1))


def test_random_and_mutated_bytes_agree():
    rng = random.Random(5)
    accepted = 0
    for k in range(3000):
        kind = STREAM if k % 2 else BATCH
        if k % 5 == 0:
            raw = rng.randbytes(rng.randint(0, 40))
        else:
            raw = bytearray(random_request(rng, kind) if rng.random() < 0.3 else
                            random_request(random.Random(k), kind)[:200])
            mutate(rng, raw, rng.randint(1, 4),
                   lambda: rng.choice(UNKNOWN + BAD) if rng.random() < 0.5 else
                   rng.randbytes(rng.randint(1, 4)),
                   lambda: rng.choice(UNKNOWN))
            raw = bytes(raw)
        accepted += agree(raw, kind)
    assert 300 < accepted < 2700  # both outcomes exercised


def test_deep_unknown_groups_the_c_parser_refuses_go_to_protobuf():
    deep = b"".join(tag(20, 3) for _ in range(40)) + b"".join(tag(20, 4) for _ in range(40))
    raw = deep + delimited(2, delimited(2, varint(6)) + delimited(3, varint(1)))
    assert _wire.swipe_columns(raw, 1, 2, 3) is None
    decoded = RAW_REQUEST_DECODERS["/mms.v1.PosService/SwipeStream"](raw)
    assert isinstance(decoded, pos_pb2.SwipeStreamRequest)
    assert list(decoded.swipes.card_nos) == [6]
    with pytest.raises(DecodeError):
        RAW_REQUEST_DECODERS["/mms.v1.PosService/SwipeStream"](b"\x80")


def test_the_decoders_give_the_handlers_what_protobuf_gives():
    rng = random.Random(3)
    for path, kind in (("/mms.v1.PosService/SwipeStream", STREAM),
                       ("/mms.v1.PosService/SwipeBatch", BATCH)):
        raw = random_request(rng, kind)
        got = RAW_REQUEST_DECODERS[path](raw)
        pb = kind[0].FromString(raw)
        assert isinstance(got, SwipeColumnsRequest)
        assert got.store_id == pb.store_id
        assert got.batch_id == (pb.batch_id if kind is STREAM else 0)
        assert got.swipes.client_ids == pb.swipes.client_ids
        for name in COLUMNS:
            assert getattr(got.swipes, name).tolist() == list(getattr(pb.swipes, name))


# --- single ops: SwipeRequest and RechargeRequest ---------------------------------------

SINGLE = {"/mms.v1.PosService/Swipe": (pos_pb2.SwipeRequest, ("client_id", "card_no",
                                                              "amount_fen", "category", "flags",
                                                              "operator_id", "store_id")),
          "/mms.v1.PosService/Recharge": (pos_pb2.RechargeRequest, ("client_id", "card_no",
                                                                    "amount_fen", "operator_id",
                                                                    "store_id"))}


def agree_single(path: str, raw: bytes) -> str:
    """The decoder answers as protobuf: the same values, the same refusal; 'plain' when
    the C parser read it, 'protobuf' when it left it to protobuf, 'refused'."""
    cls, names = SINGLE[path]
    pb = protobufs(raw, cls)
    try:
        got = RAW_REQUEST_DECODERS[path](raw)
    except DecodeError:
        assert pb is None, raw.hex()
        return "refused"
    assert pb is not None, raw.hex()
    for name in names:
        assert getattr(got, name) == getattr(pb, name), (name, raw.hex())
    if isinstance(got, cls):
        return "protobuf"
    assert not (pb.ListFields() and cls is pos_pb2.SwipeRequest
                and (pb.items or pb.coupon_ids or pb.points_offset or pb.pin))
    return "plain"


def random_single(rng: random.Random, path: str) -> bytes:
    cls, names = SINGLE[path]
    msg = cls(client_id=rng.randbytes(rng.choice([16, 16, 0, 15])),
              card_no=rng.choice([0, 1, 2**64 - 1, rng.getrandbits(64)]),
              amount_fen=rng.choice([0, 1, -1, 2**63 - 1, -(2**63)]),
              operator_id=rng.choice([0, 2**32 - 1]), store_id=rng.choice([0, 11, 2**32 - 1]))
    if cls is pos_pb2.SwipeRequest:
        msg.category, msg.flags = rng.choice([0, 7, 2**32 - 1]), rng.choice([0, 3, 300])
        if rng.random() < 0.2:
            msg.items.add(sku=1, amount_fen=5, qty=1)
        if rng.random() < 0.1:
            msg.coupon_ids.append(9)
        if rng.random() < 0.1:
            msg.points_offset = 100
        if rng.random() < 0.1:
            msg.pin = "1234"
    return msg.SerializeToString()


@pytest.mark.parametrize("path", sorted(SINGLE))
def test_single_requests_agree_with_protobuf_on_random_and_mutated_bytes(path):
    rng = random.Random(9)
    seen = {"plain": 0, "protobuf": 0, "refused": 0}
    for k in range(3000):
        raw = bytearray(random_single(rng, path))
        if k % 2:
            mutate(rng, raw, rng.randint(1, 3), lambda: rng.choice(UNKNOWN + BAD),
                   lambda: rng.choice(UNKNOWN + [tag(3, 0) + varint(-5), tag(4, 0) + varint(2**40 + 9),
                                                 tag(1, 2) + varint(16) + b"z" * 16]))
        seen[agree_single(path, bytes(raw))] += 1
    assert seen["plain"] > 50 and seen["refused"] > 50, seen
    if path.endswith("/Swipe"):  # baskets, coupons, offsets and PINs: protobuf's
        assert seen["protobuf"] > 50, seen


def test_a_swipe_with_a_basket_a_pin_or_empty_coupons_goes_to_protobuf():
    path = "/mms.v1.PosService/Swipe"
    base = pos_pb2.SwipeRequest(client_id=b"c" * 16, card_no=5, amount_fen=10).SerializeToString()
    for extra in (delimited(8, b""), delimited(9, b""), tag(10, 0) + varint(0), delimited(11, b"")):
        got = RAW_REQUEST_DECODERS[path](base + extra)
        assert isinstance(got, pos_pb2.SwipeRequest)
    with pytest.raises(DecodeError):  # a PIN that is not UTF-8: protobuf refuses it
        RAW_REQUEST_DECODERS[path](base + delimited(11, b"\xff\xfe"))
    plain = RAW_REQUEST_DECODERS[path](base)
    assert (plain.client_id, plain.card_no, plain.amount_fen, plain.items, plain.pin) == \
        (b"c" * 16, 5, 10, (), "")
