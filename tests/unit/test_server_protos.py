"""The committed stubs in server/mms_pb are exactly what protoc makes of proto/."""

from __future__ import annotations

import pathlib

from core.records import CardStatus, OpType, Result
from server.mms_pb import types_pb2
from server.tools import protogen


def test_committed_stubs_match_regenerated(tmp_path):
    fresh = {p.name: p.read_text() for p in protogen.generate(tmp_path / "mms_pb")}
    committed = {p.name: p.read_text() for p in protogen.OUT_DIR.iterdir()
                 if p.is_file() and p.suffix in (".py", ".pyi")}
    assert sorted(fresh) == sorted(committed), "run: python -m server.tools.protogen"
    for name, text in fresh.items():
        assert committed[name] == text, f"{name} is stale: run python -m server.tools.protogen"


def _wire_name(member, prefix: str) -> str:
    return member.name if member.name.startswith(prefix) else prefix + member.name


def test_enum_numbers_match_the_engine():
    # Results and statuses travel on the wire: each must have its name in types.proto.
    for enum, proto, prefix in ((Result, types_pb2.Result, "RESULT_"),
                                (CardStatus, types_pb2.CardStatus, "CARD_STATUS_")):
        for member in enum:
            name = _wire_name(member, prefix)
            assert name in proto.keys(), f"{name} is missing from types.proto"
            assert proto.Value(name) == int(member), name
        assert proto.Value(prefix + "UNSPECIFIED") == 0
    # Op types are informative (no request carries one); those named must agree.
    for member in OpType:
        name = _wire_name(member, "OP_TYPE_")
        if name in types_pb2.OpType.keys():
            assert types_pb2.OpType.Value(name) == int(member), name


def test_protos_follow_buf_layout():
    root = pathlib.Path(protogen.PROTO_DIR) / "mms" / "v1"
    for path in root.glob("*.proto"):
        text = path.read_text()
        assert "package mms.v1;" in text
        assert path.name == path.name.lower()
