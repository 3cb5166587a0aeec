"""The C structs and their numpy views see the same bytes."""

import numpy as np

from core import _fastpath, records
from core.records import CARD, COUPON, ITEM, JOURNAL, OP, RESULT, CardStatus, OpType, Result


def test_sizes_are_the_documented_ones():
    assert (CARD.itemsize, OP.itemsize, JOURNAL.itemsize, RESULT.itemsize) == (256, 96, 416, 16)
    assert (ITEM.itemsize, COUPON.itemsize) == (24, 64)


def test_every_field_is_covered_without_overlap():
    for dt in (CARD, OP, JOURNAL, RESULT, ITEM, COUPON):
        spans = sorted((off, off + f.itemsize) for f, off, *_ in dt.fields.values())
        assert spans[0][0] == 0 and spans[-1][1] == dt.itemsize
        for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
            assert end == start, f"{dt}: gap or overlap at {end}"


def test_fast_path_writes_what_numpy_reads(tmp_path):
    """A record written by Cython reads back field by field through the numpy view."""
    from core import Engine, RulesConfig
    rules = RulesConfig().compile()
    cards = np.zeros(4, dtype=CARD)
    cards[0]["card_no"] = 77
    cards[0]["status"] = CardStatus.ACTIVE
    cards[0]["principal_fen"] = 1_000
    cards[0]["bonus_fen"] = 500
    cards[0]["last_seq"] = 9
    index = _fastpath.KeyMap(16)
    index.insert(0, 77, 0)
    ops = np.zeros(1, dtype=OP)
    ops[0]["client_hi"], ops[0]["client_lo"] = 0x0102030405060708, 0x1112131415161718
    ops[0]["card_no"], ops[0]["amount_fen"], ops[0]["op_type"] = 77, 1_234, OpType.SWIPE
    ops[0]["store_id"], ops[0]["terminal_id"], ops[0]["operator_id"] = 3, 4, 5
    ops[0]["category"] = 6
    recs = np.zeros(1, dtype=JOURNAL)
    res = np.zeros(1, dtype=RESULT)
    n = _fastpath.Batcher(8).apply_batch(ops, cards, index, _fastpath.KeyMap(16), rules,
                                         1_700_000_000, 42, recs, res)
    assert n == 1
    r = recs[0]
    assert (int(r["seq"]), int(r["prev_seq"]), int(r["card_no"])) == (42, 9, 77)
    assert (int(r["client_hi"]), int(r["client_lo"])) == (0x0102030405060708, 0x1112131415161718)
    assert (int(r["store_id"]), int(r["terminal_id"]), int(r["operator_id"]), int(r["category"])) == (3, 4, 5, 6)
    assert int(r["payable_fen"]) == 1_234 and int(r["principal_delta_fen"]) == -1_000
    assert int(r["bonus_delta_fen"]) == -234 and int(r["points_delta"]) == 12
    assert int(r["after"]["principal_fen"]) == 0 and int(r["after"]["bonus_fen"]) == 266
    assert int(r["after"]["last_seq"]) == 42 and int(r["time_s"]) == 1_700_000_000
    assert (int(res[0]["code"]), int(res[0]["seq"]), int(res[0]["rec_index"])) == (Result.OK, 42, 0)
    # The committed table was only read.
    assert int(cards[0]["principal_fen"]) == 1_000
    assert Engine  # the public face imports


def test_raw_bytes_match_the_c_layout():
    """Bytes placed at a field's C offset are what numpy reads for that field."""
    layout = dict((name, fields) for name, (_, fields) in _fastpath.layout().items())
    for struct, dt in (("Card", CARD), ("Op", OP), ("JournalRec", JOURNAL), ("Item", ITEM),
                       ("Coupon", COUPON)):
        for name, kind, offset, size in layout[struct]:
            if kind not in ("u", "i"):
                continue
            buf = bytearray(dt.itemsize)
            buf[offset:offset + size] = (1).to_bytes(size, "little")
            row = np.frombuffer(bytes(buf), dtype=dt)[0]
            assert int(row[name]) == 1, f"{struct}.{name}"


def test_enums_are_exposed_once():
    assert int(Result.OK) == 1 and int(OpType.SWIPE) == 1 and int(CardStatus.ACTIVE) == 1


def test_committed_layout_matches_the_pxd():
    """core/_layout.pxi is generated from the .pxd's packed structs: never stale."""
    from core import _layoutgen
    assert _layoutgen.PXI.read_text() == _layoutgen.generate(), \
        "core/_layout.pxi is stale: run python3 -m core._layoutgen"


def test_layout_lists_every_field_of_every_packed_struct():
    from core import _layoutgen
    structs = _layoutgen.packed_structs(_layoutgen.PXD.read_text())
    layout = _fastpath.layout()
    assert set(layout) == set(structs)
    for name, fields in structs.items():
        assert [f[0] for f in layout[name][1]] == [f for f, _ in fields]


def test_the_type_stub_names_what_the_module_has():
    """core/_fastpath.pyi (py.typed promises types) covers every public name and every
    enum member of the compiled module."""
    import ast
    from pathlib import Path

    import core
    stub = ast.parse((Path(core.__file__).parent / "_fastpath.pyi").read_text())
    declared: dict[str, set[str] | None] = {}
    for node in stub.body:
        if isinstance(node, ast.ClassDef):
            members = {t.id for n in node.body if isinstance(n, ast.Assign) for t in n.targets}
            declared[node.name] = members or None
        elif isinstance(node, ast.FunctionDef):
            declared[node.name] = None
        elif isinstance(node, ast.AnnAssign):
            declared[node.target.id] = None
    import enum
    public = {n for n in dir(_fastpath) if not n.startswith("_") and n[0].isupper() or
              callable(getattr(_fastpath, n)) and not n.startswith("_")}
    public -= {"Enum", "IntEnum", "IntFlag", "Flag", "array", "memoryview", "np", "cnp"}
    for n in public:
        obj = getattr(_fastpath, n)
        if isinstance(obj, type) and issubclass(obj, enum.Enum):
            assert declared.get(n) == {m.name for m in obj}, n
        elif n.isupper() or isinstance(obj, type) or callable(obj):
            assert n in declared, f"{n} is missing from core/_fastpath.pyi"


def test_a_release_build_has_no_debug_checks():
    """The fast path's debug checks (MMS_DEBUG=1, README "Debug build") compile away in
    a release build: not even their messages are in the module. A debug build has them."""
    from pathlib import Path
    binary = Path(_fastpath.__file__).read_bytes()
    has_checks = b"debug check failed" in binary and b"points != lot0" in binary
    assert has_checks == bool(_fastpath.DEBUG_CHECKS)


def test_the_card_lifecycle_table():
    """One table of card status moves: cancelled is final, a replacement cancels only an
    active or lost card, an operator cannot replace, and every cause is a known one."""
    from core.records import CARD_STATUS_MOVES, card_move_allowed
    assert not any(before == CardStatus.CANCELLED for before, _ in CARD_STATUS_MOVES)
    assert {b for (b, a), by in CARD_STATUS_MOVES.items() if "replacement" in by} == {
        CardStatus.ACTIVE, CardStatus.LOST}
    assert set().union(*CARD_STATUS_MOVES.values()) == {"operator", "replacement", "dormancy",
                                                        "renewal"}
    assert card_move_allowed(CardStatus.LOST, CardStatus.ACTIVE, "operator")
    assert not card_move_allowed(CardStatus.FROZEN, CardStatus.CANCELLED, "replacement")
    assert not card_move_allowed(CardStatus.CANCELLED, CardStatus.ACTIVE, "operator")


def test_ops_from_rows_sets_the_single_op_fields_and_nothing_else():
    """The one builder of single ops (unary RPCs, Engine.swipe): the SINGLE_OP view has
    OP's offsets, so a row lands in the named fields and every other field is zero."""
    from core.records import SINGLE_OP_FIELDS, ops_from_rows

    rows = [tuple(range(1, len(SINGLE_OP_FIELDS) + 1)), tuple(range(11, len(SINGLE_OP_FIELDS) + 11))]
    ops = ops_from_rows(rows)
    assert ops.dtype == OP and len(ops) == 2
    for op, row in zip(ops, rows, strict=True):
        assert tuple(int(op[f]) for f in SINGLE_OP_FIELDS) == row
        assert all(not np.any(op[f]) for f in OP.names if f not in SINGLE_OP_FIELDS)


def test_table_zeros_starts_on_a_cache_line_and_is_zero():
    for dtype in (CARD, COUPON):
        assert records.table_zeros(0, dtype).shape == (0,)  # no row to align
        for n in (1, 3, 1000):
            t = records.table_zeros(n, dtype)
            assert t.dtype == dtype and t.shape == (n,)
            assert t.ctypes.data % records.CACHE_LINE_BYTES == 0
            assert not t.view(np.uint8).any()
