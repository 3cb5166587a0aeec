"""Member files that round-trip, through the real `mms` commands against a real server
on loopback: an export edited and imported again updates its members (member_id column;
masked phones and ID numbers stay as they are), each row all or nothing and once per
file and line; refused rows exit 3 and go to an errors file with their cells, line and
reason, which imports again once fixed; --update updates members found by phone or ID
number instead of refusing them."""

from __future__ import annotations

import csv
import io
import json

import pytest
from test_cli_admin import BOOT, server  # noqa: F401  (the fixture: a real server)

from server.cli.main import main


def run(capsys, *argv: str, rc: int = 0) -> tuple[str, str]:
    got = main(list(argv))
    out = capsys.readouterr()
    assert got == rc, (argv, out.out, out.err)
    return out.out.strip(), out.err.strip()


def read_csv(path) -> list[list[str]]:
    return list(csv.reader(io.StringIO(path.read_text(encoding="utf-8-sig"))))


def write_csv(path, rows) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)


def member(capsys, member_id: int, reveal: bool = False) -> dict:
    out, _ = run(capsys, "member", "show", str(member_id), "--json",
                 *(["--reveal"] if reveal else []))
    return json.loads(out)["member"]


@pytest.fixture
def manager(server, capsys):  # noqa: F811
    t = ("--target", server)
    run(capsys, "chain", "bootstrap", *t, "--name", "C", "--admin-login", "root",
        "--bootstrap-token", BOOT)
    run(capsys, "login", *t, "--login", "root")
    run(capsys, "chain", "add", "--kind", "region", "--parent", "1", "--name", "R")
    run(capsys, "chain", "add", "--kind", "store", "--parent", "2", "--name", "S7", "--id", "7")
    run(capsys, "operator", "add", "--login", "mgr", "--role", "store_manager", "--store", "7")
    run(capsys, "login", *t, "--login", "mgr")
    return server


def test_export_edit_import_updates_the_members(manager, tmp_path, capsys):
    src = tmp_path / "new.csv"
    write_csv(src, [["name", "phone", "id_no", "tags"],
                    ["Li Lei", "13800138000", "", "vip"],
                    ["Han Meimei", "13800138001", "", ""],
                    ["Wang Wu", "13900139000", "", ""]])
    out, _ = run(capsys, "member", "import", str(src))
    assert out == "3 rows: 3 created, 0 updated, 0 already imported, 0 refused"
    exported = tmp_path / "members.csv"
    run(capsys, "member", "export", str(exported))
    rows = read_csv(exported)
    header = rows[0]
    assert header[0] == "member_id" and {"status", "created_s", "updated_s"} <= set(header)
    col = {h: i for i, h in enumerate(header)}
    by_id = {r[col["member_id"]]: r for r in rows[1:]}
    assert by_id["1"][col["phone"]] == "138****8000"  # masked, as exports are
    # Edit: a new address for 1, a tag for 2, and 3 left as it was.
    by_id["1"][col["address"]] = "1 Nanjing Road"
    by_id["2"][col["tags"]] = "new;vip"
    edited = tmp_path / "edited.csv"
    write_csv(edited, [header, *rows[1:]])
    out, _ = run(capsys, "member", "import", str(edited))
    assert out == "3 rows: 0 created, 3 updated, 0 already imported, 0 refused"
    m1 = member(capsys, 1, reveal=True)
    assert m1["profile"]["address"] == "1 Nanjing Road"
    assert m1["profile"]["phone"] == "13800138000"  # the masked cell changed nothing
    assert member(capsys, 2)["profile"]["tags"] == ["new", "vip"]
    # Again: each row is recognised by the file and its line; nothing applies twice.
    out, _ = run(capsys, "member", "import", str(edited))
    assert out == "3 rows: 0 created, 0 updated, 3 already imported, 0 refused"
    audit = json.loads(run(capsys, "audit", "--json")[0])["events"]
    assert sum(e["op"] == "MEMBER_UPDATE" for e in audit) == 3


def test_refused_rows_exit_3_and_the_errors_file_reimports(manager, tmp_path, capsys):
    src = tmp_path / "people.csv"
    write_csv(src, [["name", "phone", "address"],
                    ["Li Lei", "13800138000", "A"],
                    ["Han Meimei", "13800138001", "B"]])
    run(capsys, "member", "import", str(src))
    exported = tmp_path / "export.csv"
    run(capsys, "member", "export", str(exported))
    rows = read_csv(exported)
    col = {h: i for i, h in enumerate(rows[0])}
    # Row 2 takes member 2's phone (all or nothing: its address does not change either);
    # row 3 changes a masked phone to another masked value.
    bad = [r[:] for r in rows]
    one = next(r for r in bad[1:] if r[col["member_id"]] == "1")
    two = next(r for r in bad[1:] if r[col["member_id"]] == "2")
    one[col["phone"]], one[col["address"]] = "13800138001", "changed"
    two[col["phone"]] = "139****0000"
    edited = tmp_path / "bad-edit.csv"
    write_csv(edited, bad)
    errors = tmp_path / "errors.csv"
    out, err = run(capsys, "member", "import", str(edited), "--errors", str(errors), rc=3)
    assert out.startswith("2 rows: 0 created, 0 updated, 0 already imported, 2 refused; "
                          f"2 refused rows in {errors}")
    lines = err.splitlines()
    line_one, line_two = bad.index(one) + 1, bad.index(two) + 1
    assert f"{edited}:{line_one}: refused: PHONE_TAKEN: phone 138****8001 belongs to member 2" \
        in lines
    assert any(ln.startswith(f"{edited}:{line_two}: refused: phone '139****0000' is masked")
               for ln in lines), lines
    assert member(capsys, 1, reveal=True)["profile"]["address"] == "A"
    assert member(capsys, 1, reveal=True)["profile"]["phone"] == "13800138000"
    # The errors file: the header, then each refused row as it was, with line and reason.
    got = read_csv(errors)
    assert got[0] == bad[0] + ["import_line", "import_error"]
    assert [r[:-2] for r in got[1:]] == sorted([one, two], key=bad.index)
    assert [r[-2] for r in got[1:]] == [str(min(line_one, line_two)), str(max(line_one, line_two))]
    assert all(r[-1] for r in got[1:])
    # Fix the rows in the errors file and import it as it is.
    fixed = got[:]
    for r in fixed[1:]:
        if r[col["member_id"]] == "1":
            r[col["phone"]] = "13700137000"
        else:
            r[col["phone"]] = "138****8001"  # the member's own, masked: unchanged
            r[col["address"]] = "B2"
    fixed_path = tmp_path / "fixed.csv"
    write_csv(fixed_path, fixed)
    out, _ = run(capsys, "member", "import", str(fixed_path))
    assert out == "2 rows: 0 created, 2 updated, 0 already imported, 0 refused"
    m1 = member(capsys, 1, reveal=True)["profile"]
    assert (m1["phone"], m1["address"]) == ("13700137000", "changed")
    assert member(capsys, 2)["profile"]["address"] == "B2"


def test_update_finds_members_by_phone_or_id_number(manager, tmp_path, capsys):
    src = tmp_path / "first.csv"
    write_csv(src, [["姓名", "手机号", "证件号"],
                    ["Li Lei", "13800138000", ""],
                    ["Han Meimei", "", "11010519491231002X"]])
    run(capsys, "member", "import", str(src))
    again = tmp_path / "again.csv"
    write_csv(again, [["name", "phone", "id_no", "address"],
                      ["Li Lei", "13800138000", "", "by phone"],
                      ["Han M.", "", "11010519491231002X", "by ID"],
                      ["Both", "13800138000", "11010519491231002X", "two members"],
                      ["New One", "13600136000", "", "new"]])
    out, err = run(capsys, "member", "import", str(again), rc=3)
    assert out == "4 rows: 1 created, 0 updated, 0 already imported, 3 refused"
    assert "PHONE_TAKEN" in err and "ID_NO_TAKEN" in err
    out, err = run(capsys, "member", "import", str(again), "--update", "--file-id", "again-2",
                   rc=3)
    # "New One" was created by the import before: found by phone, it is updated now.
    assert out == "4 rows: 0 created, 3 updated, 0 already imported, 1 refused"
    assert f"{again}:4: refused: the phone belongs to member 1 and the ID number to member 2" \
        in err
    assert member(capsys, 1)["profile"]["address"] == "by phone"
    m2 = member(capsys, 2)["profile"]
    assert (m2["name"], m2["address"]) == ("Han M.", "by ID")
    out, _ = run(capsys, "member", "search", "--name", "New One")
    assert out.endswith("1 of 1 members (1-1)")  # created once, by the first import only
    out, _ = run(capsys, "member", "import", str(again), "--update", "--file-id", "again-2",
                 rc=3)
    assert out == "4 rows: 0 created, 0 updated, 3 already imported, 1 refused"


def test_xlsx_export_round_trips(manager, tmp_path, capsys):
    src = tmp_path / "x.csv"
    write_csv(src, [["name", "phone"], ["Li Lei", "13800138000"]])
    run(capsys, "member", "import", str(src))
    book = tmp_path / "members.xlsx"
    run(capsys, "member", "export", str(book))
    import openpyxl

    wb = openpyxl.load_workbook(book)
    ws = wb.worksheets[0]
    header = [c.value for c in ws[1]]
    ws.cell(row=2, column=header.index("address") + 1, value="from Excel")
    wb.save(book)
    out, _ = run(capsys, "member", "import", str(book))
    assert out == "1 rows: 0 created, 1 updated, 0 already imported, 0 refused"
    assert member(capsys, 1)["profile"]["address"] == "from Excel"
