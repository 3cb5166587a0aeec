"""The one table of op codes (core.records): every code of every domain in its owner's
range, no code or name twice, and docs/internals/storage.md listing exactly the code's
table. The engine's refusal of codes outside it is tested in tests/engine/test_engine.py,
the metrics labels through the real server in tests/rpc/test_admin_rpc.py. And the
client id's size, defined once beside them."""

from __future__ import annotations

import re
from enum import IntEnum

import numpy as np
import pytest
from common import ROOT
from doc_tables import table_after

import core.records as records
from core.domain import cards, chain, levels, members, notify, points_admin
from core.records import OP_NAMES, OP_OWNERS, OP_RANGES, OP_TYPE_MAX, OpType, op_label, op_name

STORAGE_MD = ROOT / "docs" / "internals" / "storage.md"


def _table_after(marker: str) -> list[list[str]]:
    return table_after(STORAGE_MD, marker)


def test_storage_md_lists_every_op_code_with_its_name_and_owner():
    documented = {}
    for code, name, owner, _note in _table_after("op-codes"):
        assert int(code) not in documented, f"{code} twice"
        documented[int(code)] = (name, owner)
    assert documented == {c: (OP_NAMES[c], OP_OWNERS[c]) for c in OP_NAMES}
    assert documented[150] == ("NOTICES_ACK", "notify")
    assert documented[190] == ("MEMBER_REVEAL", "audit")


def test_storage_md_lists_the_ranges_and_the_free_codes():
    rows = [(r[0], r[1], re.findall(r"`(\w+)`", r[2])[0]) for r in _table_after("op-ranges")]
    assert rows == [(f"{a}..{b}", owner, e.__name__) for a, b, owner, e in OP_RANGES]
    text = STORAGE_MD.read_text()
    free_line = text[text.index("<!-- op-ranges:"):].split("\nFree: ", 1)[1].split("\n", 1)[0]
    free = set()
    for part in free_line.rstrip(".").split(", "):
        a, _, b = part.partition("..")
        free.update(range(int(a), int(b or a) + 1))
    assert free == set(range(OP_TYPE_MAX + 1)) - set(OP_NAMES)


def test_every_op_a_doc_names_with_a_number_has_its_code():
    """cards.md, chain.md, members.md and the rest name ops with their numbers
    ("REPLACE 45", "ISSUE (10)"): each such number is the table's."""
    names = {n: c for c, n in OP_NAMES.items()}
    pattern = re.compile(r"\b(" + "|".join(sorted(names, key=len, reverse=True)) + r")\s+\(?(\d+)\b")
    wrong, seen = [], set()
    for path in sorted((ROOT / "docs").rglob("*.md")):
        text = path.read_text()
        for m in pattern.finditer(text):
            seen.add(path.name)
            if int(m[2]) != names[m[1]]:
                line = text.count("\n", 0, m.start()) + 1
                wrong.append(f"{path.name}:{line}: {m[1]} {m[2]} (the table: {names[m[1]]})")
    assert not wrong, "\n".join(wrong)
    assert {"cards.md", "chain.md", "members.md"} <= seen


def test_each_domain_uses_the_tables_enum():
    """The domain modules import their op enum from core.records; none declares its own."""
    for module, enum in ((cards, "CardOp"), (levels, "LevelOp"), (points_admin, "PointsOp"),
                         (members, "MemberOp"), (chain, "ChainOp"), (notify, "NotifyOp")):
        assert getattr(module, enum) is getattr(records, enum), module.__name__
    assert records.OpType is records._fastpath.OpType


def test_codes_fit_the_byte_and_their_ranges():
    for first, last, owner, enum in OP_RANGES:
        for m in enum:
            assert first <= int(m) <= last <= OP_TYPE_MAX and OP_OWNERS[int(m)] == owner
    assert len(set(OP_NAMES.values())) == len(OP_NAMES)


@pytest.mark.parametrize("extra", [
    (70, 79, "extra", {"SWIPE": 70}),        # a name given twice
    (50, 79, "extra", {"NEW_OP": 70}),       # a range that overlaps cards'
    (70, 79, "extra", {"NEW_OP": 99}),       # a code outside its owner's range
    (250, 260, "extra", {"NEW_OP": 255}),    # a range past the journal's byte
], ids=["name", "overlap", "outside", "byte"])
def test_the_table_refuses_a_clash(monkeypatch, extra):
    first, last, owner, codes = extra
    ranges = sorted(OP_RANGES + ((first, last, owner, IntEnum("Extra", codes)),),
                    key=lambda r: r[0])
    monkeypatch.setattr(records, "OP_RANGES", tuple(ranges))
    with pytest.raises(ValueError):
        records._op_table()
    monkeypatch.setattr(records, "OP_RANGES", OP_RANGES)
    assert records._op_table() == (OP_NAMES, OP_OWNERS)


def test_names_and_labels():
    assert op_name(int(OpType.SWIPE)) == "SWIPE" and op_name(190) == "MEMBER_REVEAL"
    assert op_name("LOGIN") == "LOGIN" and op_name(True) is True
    assert op_label(int(OpType.SWIPE)) == "swipe" and op_label(45) == "replace"
    assert op_label(250) == "unknown"
    assert "unknown" not in {n.lower() for n in OP_NAMES.values()}
    assert all(not op_label(c).isdigit() for c in range(OP_TYPE_MAX + 1))


def test_the_liability_report_classifies_by_the_tables_names():
    """Fees, deposits and expiries are told apart by name: with every domain's codes in
    the table, a card's issue fee counts as a fee and its opening deposit as paid in."""
    from core.domain.reports import _liability_class
    ops = np.array([records.CardOp.ISSUE_FEE, records.CardOp.OPENING_DEPOSIT,
                    OpType.EXPIRE_POINTS, OpType.SWIPE, records.MemberOp.MEMBER_CREATE])
    c = _liability_class(ops)
    assert c["fee"].tolist() == [True, False, False, False, False]
    assert c["recharge"].tolist() == [False, True, False, False, False]
    assert c["expired"].tolist() == [False, False, True, False, False]
    assert c["spend"].tolist() == [False, False, False, True, False]


# server/rpc/app.py is being split by the lead; its copy goes with the split. Drop the
# entry then (the test says so when the copy is gone).
CLIENT_ID_BYTES_PENDING: set[str] = set()


def test_client_id_bytes_is_defined_once():
    """CLIENT_ID_BYTES has one definition, in core/records.py; everything else imports it."""
    defined = set()
    for path in sorted(ROOT.glob("*/**/*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith(("build/", ".")) or "/mms_pb/" in rel:
            continue
        if re.search(r"^\s*CLIENT_ID_BYTES\s*[:=]", path.read_text(), re.M):
            defined.add(rel)
    assert "core/records.py" in defined
    assert defined - {"core/records.py"} <= CLIENT_ID_BYTES_PENDING, defined
    assert CLIENT_ID_BYTES_PENDING <= defined, "a pending copy is gone: drop it from the list"
    assert len(records.new_client_id()) == records.CLIENT_ID_BYTES
    assert len(records.new_client_ids(3)) == 3 * records.CLIENT_ID_BYTES
