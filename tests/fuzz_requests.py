"""Hostile requests for every method of PosService and AdminService, for the fuzz test
(tests/rpc/test_hostile_input.py) and the long fuzz run (bench/fuzz_server.py).

Every request made here must be refused, or be a read that changes nothing: bodies that
do not decode (random bytes, truncated fields, invalid UTF-8 in a string), well-formed
messages full of hostile values sent without credentials or with the wrong kind, and,
with the right credentials, hostile values only where the call cannot apply anything:
a changing call gets client ids of a wrong length (which every changing call checks
before it changes anything), and reads go as they are. Login, Logout and ImportMembers
change state without client ids, so with credentials they get only undecodable bodies.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor import FieldDescriptor

from server.mms_pb import admin_pb2, campaign_pb2, pos_pb2, report_pb2

POS_SERVICE = "mms.v1.PosService"
ADMIN_SERVICE = "mms.v1.AdminService"
# Changing calls whose requests carry no client id.
CHANGES_WITHOUT_CLIENT_IDS = frozenset({"Login", "Logout", "ImportMembers"})
# Answers a bad request may never get.
FORBIDDEN = frozenset({grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL})
TIMEOUT_S = 30.0

# Bodies that are not protobuf: a bad tag varint, a length-delimited field 1 cut short,
# wire type 7, a varint of 11 bytes, a group that never ends.
GARBAGE = (b"\xff\xff\xff\xff", b"\x0a\x05ab", b"\x07", b"\x08" + b"\x80" * 10 + b"\x01",
           b"\x0b")

_INTS = {
    FieldDescriptor.TYPE_INT32: (0, -1, 1, 2**31 - 1, -(2**31)),
    FieldDescriptor.TYPE_SINT32: (0, -1, 1, 2**31 - 1, -(2**31)),
    FieldDescriptor.TYPE_SFIXED32: (0, -1, 2**31 - 1, -(2**31)),
    FieldDescriptor.TYPE_INT64: (0, -1, 1, 2**63 - 1, -(2**63)),
    FieldDescriptor.TYPE_SINT64: (0, -1, 1, 2**63 - 1, -(2**63)),
    FieldDescriptor.TYPE_SFIXED64: (0, -1, 2**63 - 1, -(2**63)),
    FieldDescriptor.TYPE_UINT32: (0, 1, 2**32 - 1, 99),
    FieldDescriptor.TYPE_FIXED32: (0, 1, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 1, 2**64 - 1, 2**63, 99),
    FieldDescriptor.TYPE_FIXED64: (0, 1, 2**64 - 1),
    FieldDescriptor.TYPE_ENUM: (0, 1, 99, -1, 2**31 - 1),
}
_STRINGS = ("", "\x00", "١٢٣٤", "¹²³⁴", "１２３４", "1234\n", "x" * 5000, "{" * 3000,
            "[" * 3000 + "]" * 3000, '{"levels": 5}', '{"tiers": [{"points": 1}]}',
            "../../etc/passwd", "a.csv", "b.xlsx", "\ud7ff\U0010ffff", "null", "[]",
            "0" * 30, "-1")
_BYTES = (b"", b"\x00" * 15, b"\xff" * 17, b"\x00" * 16, b"PK\x03\x04garbage",
          b"name\n\xff\xfe\n", b"\x00" * 48)


@dataclass(frozen=True)
class Method:
    service: str
    name: str
    request: type
    client_streaming: bool
    server_streaming: bool

    @property
    def path(self) -> str:
        return f"/{self.service}/{self.name}"

    @property
    def takes_client_ids(self) -> bool:
        return _has_client_ids(self.request.DESCRIPTOR, 2)

    @property
    def read_only(self) -> bool:
        return not self.takes_client_ids and self.name not in CHANGES_WITHOUT_CLIENT_IDS


def _has_client_ids(desc, depth: int) -> bool:
    for f in desc.fields:
        if f.name in ("client_id", "client_ids"):
            return True
        if depth and f.message_type is not None and _has_client_ids(f.message_type, depth - 1):
            return True
    return False


def methods() -> list[Method]:
    out = []
    for mod, name in ((pos_pb2, "PosService"), (admin_pb2, "AdminService"),
                      (report_pb2, "ReportService"), (campaign_pb2, "CampaignService")):
        svc = mod.DESCRIPTOR.services_by_name[name]
        for m in svc.methods:
            out.append(Method(svc.full_name, m.name,
                              message_factory.GetMessageClass(m.input_type),
                              m.client_streaming, m.server_streaming))
    return out


def bad_utf8(cls: type) -> bytes | None:
    """A body whose first string field holds bytes that are not UTF-8, or None."""
    for f in cls.DESCRIPTOR.fields:
        if f.type == FieldDescriptor.TYPE_STRING and f.number < 16:
            return bytes([(f.number << 3) | 2, 2]) + b"\xff\xfe"
    return None


def undecodable(cls: type, rng: random.Random) -> bytes:
    bodies = list(GARBAGE) + [rng.randbytes(rng.randint(1, 64))]
    utf8 = bad_utf8(cls)
    if utf8 is not None:
        bodies.append(utf8)
    while True:
        body = rng.choice(bodies)
        try:
            cls.FromString(body)
        except Exception:
            return body
        # A random body that happens to decode is not what this makes.


def hostile(cls: type, rng: random.Random, *, break_ids: bool, depth: int = 2):
    """A message of cls with hostile values in some fields; break_ids sets every
    client id (at any depth) to a wrong length."""
    msg = cls()
    _fill(msg, rng, break_ids, depth)
    return msg


def _value(f, rng: random.Random):
    if f.type in _INTS:
        return rng.choice(_INTS[f.type])
    if f.type == FieldDescriptor.TYPE_BOOL:
        return rng.random() < 0.5
    if f.type == FieldDescriptor.TYPE_STRING:
        return rng.choice(_STRINGS)
    if f.type == FieldDescriptor.TYPE_BYTES:
        return rng.choice(_BYTES)
    raise AssertionError(f.type)


def _fill(msg, rng: random.Random, break_ids: bool, depth: int) -> None:
    for f in msg.DESCRIPTOR.fields:
        if f.name in ("client_id", "client_ids") and break_ids:
            setattr(msg, f.name, rng.choice((b"", b"\x01" * 15, b"\x01" * 17)))
            continue
        if rng.random() < 0.4:
            continue
        if f.message_type is not None:
            if f.message_type.GetOptions().map_entry:
                field = getattr(msg, f.name)
                for _ in range(rng.randint(0, 3)):
                    field[rng.choice(_STRINGS)[:40]] = rng.choice(_STRINGS)
            elif f.is_repeated:
                if depth:
                    for _ in range(rng.randint(0, 3)):
                        _fill(getattr(msg, f.name).add(), rng, break_ids, depth - 1)
            elif depth:
                sub = getattr(msg, f.name)
                _fill(sub, rng, break_ids, depth - 1)
                sub.SetInParent()
            continue
        if f.is_repeated:
            n = rng.choice((0, 1, 2, 3, 5000)) if f.type in _INTS else rng.randint(0, 3)
            getattr(msg, f.name).extend(_value(f, rng) for _ in range(n))
        else:
            setattr(msg, f.name, _value(f, rng))
    if break_ids:
        # Nested client ids are broken even where the fill skipped the message.
        for f in msg.DESCRIPTOR.fields:
            if (f.message_type is not None and not f.is_repeated and depth
                    and not f.message_type.GetOptions().map_entry
                    and _has_client_ids(f.message_type, 1) and not msg.HasField(f.name)):
                _fill(getattr(msg, f.name), rng, True, depth - 1)


# --- sending ---------------------------------------------------------------------------

@dataclass
class Creds:
    """Metadata to send: valid ones per service, and the attacks."""
    pos: tuple
    admin: tuple

    @staticmethod
    def attacks() -> list[tuple]:
        return [(), (("authorization", "Bearer nope"),), (("authorization", "Basic abc"),),
                (("authorization", "Bearer " + "x" * 5000),), (("authorization", "Bearer"),),
                (("authorization", "bearer  "),)]


def plan(m: Method, rng: random.Random, creds: Creds) -> tuple[list[bytes], tuple, str]:
    """One request for m: its messages (one for unary requests), its metadata and what
    kind of attack it is."""
    valid = creds.pos if m.service == POS_SERVICE else creds.admin
    other = creds.admin if m.service == POS_SERVICE else creds.pos
    kind = rng.choice(("garbage", "hostile-unauth", "hostile-wrong-creds", "hostile-valid"))
    n = rng.randint(1, 3) if m.client_streaming else 1
    if kind == "garbage":
        md = rng.choice([valid, other, *Creds.attacks()])
        msgs = [hostile(m.request, rng, break_ids=True).SerializeToString() for _ in range(n - 1)]
        msgs.insert(rng.randint(0, len(msgs)), undecodable(m.request, rng))
        return msgs, md, kind
    if kind == "hostile-valid" and (m.takes_client_ids or m.read_only):
        msgs = [hostile(m.request, rng, break_ids=m.takes_client_ids).SerializeToString()
                for _ in range(n)]
        return msgs, valid, kind
    if kind == "hostile-wrong-creds":
        md = other
    else:
        md, kind = rng.choice(Creds.attacks()), "hostile-unauth"
    if m.name == "Login":
        # Any login name but the ones that exist, whose failures are journalled.
        md = ()
    msgs = [hostile(m.request, rng, break_ids=m.takes_client_ids).SerializeToString()
            for _ in range(n)]
    return msgs, md, kind


def send(channel: grpc.Channel, m: Method, msgs: list[bytes], md: tuple) -> grpc.StatusCode:
    try:
        if m.client_streaming and m.server_streaming:
            for _ in channel.stream_stream(m.path)(iter(msgs), metadata=md, timeout=TIMEOUT_S):
                pass
        elif m.client_streaming:
            channel.stream_unary(m.path)(iter(msgs), metadata=md, timeout=TIMEOUT_S)
        elif m.server_streaming:
            for _ in channel.unary_stream(m.path)(msgs[0], metadata=md, timeout=TIMEOUT_S):
                pass
        else:
            channel.unary_unary(m.path)(msgs[0], metadata=md, timeout=TIMEOUT_S)
    except grpc.RpcError as e:
        return e.code()
    return grpc.StatusCode.OK


def fuzz(channel: grpc.Channel, creds: Creds, n: int, seed: int = 9,
         on_forbidden=None) -> Counter:
    """n requests over every method in turn; counts by (status code name). on_forbidden
    (method, kind, messages, metadata, code) hears of each UNKNOWN/INTERNAL answer."""
    rng = random.Random(seed)
    ms = methods()
    counts: Counter = Counter()
    for i in range(n):
        m = ms[i % len(ms)]
        msgs, md, kind = plan(m, rng, creds)
        code = send(channel, m, msgs, md)
        counts[code.name] += 1
        if code in FORBIDDEN and on_forbidden is not None:
            on_forbidden(m, kind, msgs, md, code)
    return counts


# --- hypothesis: well-formed requests, valid client ids, any other values ---------------

_RANGES = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_ENUM: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}


def _scalar(f):
    from hypothesis import strategies as st

    if f.name in ("client_id", "client_ids"):
        return st.binary(min_size=16, max_size=16)  # valid: the call goes past its id check
    if f.type in _RANGES:
        lo, hi = _RANGES[f.type]
        return st.one_of(st.sampled_from(_INTS[f.type]), st.integers(lo, hi),
                         st.integers(-3, 20).filter(lambda v, lo=lo: v >= lo))
    if f.type == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if f.type == FieldDescriptor.TYPE_STRING:
        return st.one_of(st.sampled_from(_STRINGS), st.text(max_size=40),
                         st.from_regex(r"[0-9a-z_:.,{}\[\]\"-]{0,40}", fullmatch=True))
    if f.type == FieldDescriptor.TYPE_BYTES:
        return st.one_of(st.sampled_from(_BYTES), st.binary(max_size=64))
    raise AssertionError(f.type)


def requests_of(cls: type, depth: int = 2):
    """A hypothesis strategy of well-formed messages of cls: every client id valid (16
    bytes, fresh), any value in the other fields (edge values, any in range, small
    ones), sub-messages to depth. For driving calls past their id checks into the code
    that reads the rest."""
    from hypothesis import strategies as st

    parts = {}
    for f in cls.DESCRIPTOR.fields:
        if f.message_type is not None:
            if f.message_type.GetOptions().map_entry:
                key = st.one_of(st.sampled_from(_STRINGS[:12]), st.text(max_size=12))
                parts[f.name] = st.dictionaries(key, st.one_of(st.sampled_from(_STRINGS),
                                                               st.text(max_size=20)),
                                                max_size=3)
                continue
            if not depth:
                continue
            sub = requests_of(message_factory.GetMessageClass(f.message_type), depth - 1)
            parts[f.name] = (st.lists(sub, max_size=3) if f.is_repeated
                             else st.one_of(st.none(), sub))
        elif f.is_repeated:
            parts[f.name] = st.lists(_scalar(f), max_size=4)
        else:
            parts[f.name] = st.one_of(st.none(), _scalar(f))

    def build(values: dict):
        msg = cls()
        for name, v in values.items():
            if v is None:
                continue
            f = cls.DESCRIPTOR.fields_by_name[name]
            if f.message_type is not None and f.message_type.GetOptions().map_entry:
                getattr(msg, name).update(v)
            elif f.is_repeated and f.message_type is not None:
                for sub in v:
                    getattr(msg, name).add().CopyFrom(sub)
            elif f.is_repeated:
                getattr(msg, name).extend(v)
            elif f.message_type is not None:
                getattr(msg, name).CopyFrom(v)
            else:
                setattr(msg, name, v)
        return msg

    return st.fixed_dictionaries({}, optional=parts).map(build)
