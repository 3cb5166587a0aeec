"""Formula cells (CSV injection) in member files, through the real `mms` commands against
a real server: a member whose name, address or tag starts like a formula is exported to
.csv and .xlsx as text (a leading apostrophe; in the .xlsx never a formula cell), the
errors file of a refused row quotes its cells the same way, and every such file imports
again as it is (the apostrophe taken off: the member unchanged)."""

from __future__ import annotations

import pytest
from test_cli_admin import server  # noqa: F401  (the fixture: a real server)
from test_cli_member_files import manager, member, read_csv, run, write_csv  # noqa: F401

from core.domain.members.files import excel_text, from_excel_text

NAME = '=HYPERLINK("http://x.cn","Li")'
ADDRESS = "@SUM(1+1)*cmd|' /C calc'!A0"
TAG = "+tag"


@pytest.mark.parametrize("v", [NAME, ADDRESS, TAG, "-x", "\tx", "\rx", "=1", "'=1"])
def test_excel_text_round_trips(v):
    out = excel_text(v)
    assert out[:1] not in "=+-@\t\r"
    assert from_excel_text(out) == v


@pytest.mark.parametrize("v", ["-5", "+8613800000001", "Li Lei", "", "'quoted", 7, None])
def test_plain_values_are_left_as_they_are(v):
    assert excel_text(v) == v and from_excel_text(v) == v


def test_formula_cells_are_text_in_exports_and_import_again(manager, tmp_path, capsys):  # noqa: F811
    src = tmp_path / "new.csv"
    write_csv(src, [["name", "phone", "address", "tags"],
                    [NAME, "13800138000", ADDRESS, TAG]])
    run(capsys, "member", "import", str(src))
    assert member(capsys, 1)["profile"]["name"] == NAME

    exported = tmp_path / "members.csv"
    run(capsys, "member", "export", str(exported))
    rows = read_csv(exported)
    col = {h: i for i, h in enumerate(rows[0])}
    assert rows[1][col["name"]] == "'" + NAME
    assert rows[1][col["address"]] == "'" + ADDRESS
    assert rows[1][col["tags"]] == "'" + TAG
    assert not [c for r in rows for c in r if c[:1] in ("=", "+", "@")]

    book = tmp_path / "members.xlsx"
    run(capsys, "member", "export", str(book))
    import openpyxl

    ws = openpyxl.load_workbook(book).worksheets[0]
    header = [c.value for c in ws[1]]
    name = ws.cell(row=2, column=header.index("name") + 1)
    assert name.data_type == "s" and name.value == "'" + NAME, (name.data_type, name.value)
    assert not [c for r in ws.iter_rows() for c in r if c.data_type == "f"]

    # Both import again as they are: the member is unchanged (the apostrophe is taken off).
    for path in (exported, book):
        out, _ = run(capsys, "member", "import", str(path))
        assert out.endswith("0 refused"), out
        p = member(capsys, 1)["profile"]
        assert (p["name"], p["address"], p["tags"]) == (NAME, ADDRESS, [TAG]), p


def test_the_errors_file_quotes_formula_cells(manager, tmp_path, capsys):  # noqa: F811
    src = tmp_path / "bad.csv"
    write_csv(src, [["name", "phone", "address"], [NAME, "not a phone", ADDRESS]])
    errors = tmp_path / "errors.csv"
    run(capsys, "member", "import", str(src), "--errors", str(errors), rc=3)
    rows = read_csv(errors)
    assert rows[1][:3] == ["'" + NAME, "not a phone", "'" + ADDRESS], rows
    # Fixed and imported again, the formula-like cells are the member's as first written.
    rows[1][1] = "13800138009"
    write_csv(errors, rows)
    run(capsys, "member", "import", str(errors))
    p = member(capsys, 1)["profile"]
    assert (p["name"], p["address"]) == (NAME, ADDRESS), p
