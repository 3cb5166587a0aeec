"""`mms report NAME` through the real command against the real server: text, CSV and
.xlsx (opened with openpyxl: typed yuan values, frozen header, totals, a native chart);
`mms report reconcile` exits non-zero on a fen of difference; `mms report rebuild`
restores tampered rollups byte for byte."""

from __future__ import annotations

import csv
from decimal import Decimal

import numpy as np
import openpyxl
from openpyxl.chart import LineChart
from rollup_reference import recompute, stored
from test_report_rpc import env, window  # noqa: F401  (the module's server fixture)
from test_rollups import run_workload

from core import Engine
from core.domain import report_export
from core.engine import rollups
from server.cli import main


def mms(env, capsys, who, *argv, rc=0):  # noqa: F811
    got = main(["report", *argv, "--target", f"127.0.0.1:{env.server.port}",
                "--session", env.sessions[who]])
    out = capsys.readouterr()
    assert got == rc, out.err
    return out.out


def test_yuan_is_built_from_integer_fen():
    assert [report_export.yuan_text(v) for v in (0, 5, -5, 123_456, -100)] == \
        ["0.00", "0.05", "-0.05", "1234.56", "-1.00"]
    assert report_export.yuan_decimal(-1_234) == Decimal("-12.34")


def test_sales_csv_and_xlsx_with_a_chart(env, capsys, tmp_path):  # noqa: F811
    frm, to = window()
    x, c = str(tmp_path / "s.xlsx"), str(tmp_path / "s.csv")
    mms(env, capsys, "fin", "sales", "--from", frm, "--to", to, "--by", "store,day",
        "--xlsx", x, "--csv", c)
    with open(c, newline="") as f:
        lines = list(csv.reader(f))
    assert lines[0][:3] == ["store", "day", "count"] and lines[0][3] == "gross_yuan"
    assert [row[3] for row in lines[1:]] == ["30.00", "55.00", "85.00"]
    wb = openpyxl.load_workbook(x)
    ws = wb.active
    assert ws.freeze_panes == "A2"
    head = [cell.value for cell in ws[1]]
    g, n = head.index("gross_yuan") + 1, head.index("net_yuan") + 1
    assert [ws.cell(row=i, column=g).value for i in (2, 3)] == [30, 55]
    assert ws.cell(row=3, column=n).value == 45   # 55 yuan less a 10-yuan refund
    assert ws.cell(row=4, column=1).value == "total" and ws.cell(row=4, column=g).value == 85
    assert ws.cell(row=2, column=g).number_format == "0.00"
    assert ws.cell(row=2, column=2).is_date
    charts = ws._charts
    assert len(charts) == 1 and isinstance(charts[0], LineChart)
    text = mms(env, capsys, "fin", "sales", "--from", frm, "--to", to)
    assert "gross_yuan" in text and "85.00" in text


def test_every_report_exports(env, capsys, tmp_path):  # noqa: F811
    frm, to = window()
    for name in ("top-skus", "liability", "settlement", "coupons", "staff"):
        x, c = str(tmp_path / f"{name}.xlsx"), str(tmp_path / f"{name}.csv")
        mms(env, capsys, "fin", name, "--from", frm, "--to", to, "--xlsx", x, "--csv", c)
        ws = openpyxl.load_workbook(x).active
        with open(c, newline="") as f:
            rows = list(csv.reader(f))
        assert [cell.value for cell in ws[1]] == rows[0]
        if name == "liability":
            head = rows[0]
            closing = head.index("principal_closing_yuan")
            assert rows[-2][closing] == "925.00"    # the last day; then the totals row
            assert len(ws._charts) == 1
            assert ws.cell(row=len(rows) - 1, column=closing + 1).value == 925
    mgr = mms(env, capsys, "mgr11", "sales", "--from", frm, "--to", to)
    assert "\n11\t" in "\n" + mgr and "\n12\t" not in "\n" + mgr


def test_reconcile_exit_code(env, capsys):  # noqa: F811
    assert "ok" in mms(env, capsys, "fin", "reconcile")
    store = env.engine.store
    # One fen too many in the rollups: a stray row the journal does not hold.
    key = np.zeros(1, rollups.SALES_KEY)
    key["day"], key["op_type"] = 1, 2
    vals = np.zeros(len(rollups.SALES_COLS), "<i8")
    vals[rollups.SALES_COLS.index("principal_in_fen")] = 1
    with store.gate.reading(), store.env.begin(write=True) as txn:
        rollups.add_rows(txn, store, rollups.SALES_DB, key, vals[None, :])
    try:
        out = mms(env, capsys, "fin", "reconcile", rc=1)
        assert "MISMATCH" in out and "difference 0.01" in out
    finally:
        with store.gate.reading(), store.env.begin(write=True) as txn:
            rollups.add_rows(txn, store, rollups.SALES_DB, key, -vals[None, :])
    assert "ok" in mms(env, capsys, "fin", "reconcile")


def test_rebuild_command_restores_tampered_rollups(tmp_path, capsys):
    path = str(tmp_path / "d")
    eng, _ = run_workload(path, [("swipe", 1, 1_000 + k, 1, k % 3, True, False, 0, False)
                                 for k in range(8)])
    eng.close()
    eng = Engine(path)
    with eng.store.read() as txn:
        eng.rollups.wait_for(eng.store.last_seq(txn))
    good = rollups.digest(eng.store)
    with eng.store.gate.reading(), eng.store.env.begin(write=True) as txn:
        txn.drop(eng.store.db[rollups.SKU_DB], delete=False)
    eng.rollups.close()
    eng.rollups = None
    eng.close()
    assert main(["report", "rebuild", "--data", path]) == 0
    out = capsys.readouterr().out
    assert f"digest after  {good}" in out and "changed" in out
    eng = Engine(path)
    try:
        assert rollups.digest(eng.store) == good
        assert stored(eng.store) == recompute(eng.store, eng.rollups.tz)
    finally:
        eng.close()


def test_points_reports_export_with_a_bar_chart(env, capsys, tmp_path):  # noqa: F811
    from openpyxl.chart import BarChart
    from test_report_rpc import give_old_points

    year = give_old_points(env)
    x, c = str(tmp_path / "e.xlsx"), str(tmp_path / "e.csv")
    mms(env, capsys, "fin", "points-expiry", "--xlsx", x, "--csv", c)
    with open(c, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["issue_store", "level", "cards", "expiring_points", "points", "day"]
    assert [r[0] for r in rows[1:]] == ["11", "12", "total"]
    assert rows[1][3] == "70" and rows[1][5] == f"{year}-12-31" and rows[-1][3] == "110"
    ws = openpyxl.load_workbook(x).active
    assert ws.freeze_panes == "A2" and ws.cell(row=2, column=4).value == 70
    assert ws.cell(row=2, column=6).is_date
    assert len(ws._charts) == 1 and isinstance(ws._charts[0], BarChart)
    text = mms(env, capsys, "mgr11", "points")
    assert text.startswith("issue_store\tlevel\tlot_year") and "\n12\t" not in text


def test_card_stats_exports_with_a_bar_chart(env, capsys, tmp_path):  # noqa: F811
    from openpyxl.chart import BarChart

    from core.domain import reports
    from core.records import CardStatus

    frm, to = window()
    eng = env.engine
    want = reports.card_stats_report(eng, frm, to, by_store=True)
    x, c = str(tmp_path / "k.xlsx"), str(tmp_path / "k.csv")
    mms(env, capsys, "fin", "card-stats", "--from", frm, "--to", to, "--by-store",
        "--xlsx", x, "--csv", c)
    with open(c, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == list(reports.CARD_STATS_FIELDS)
    assert [r[0] for r in rows[1:-1]] == [f"{w['month'] // 100}-{w['month'] % 100:02d}" for w in want]
    assert rows[-1][0] == "total" and rows[-1][-1] == ""      # a level has no total
    issued = reports.CARD_STATS_FIELDS.index("issued")
    assert int(rows[-1][issued]) == sum(w["issued"] for w in want) > 0
    ws = openpyxl.load_workbook(x).active
    assert ws.freeze_panes == "A2" and [cell.value for cell in ws[1]] == rows[0]
    assert ws.cell(row=2, column=issued + 1).value == want[0]["issued"]
    assert len(ws._charts) == 1 and isinstance(ws._charts[0], BarChart)
    cards = eng.cards_snapshot()
    live = int(((cards["card_no"] != 0) & (cards["status"] != CardStatus.CANCELLED)).sum())
    text = mms(env, capsys, "fin", "card-stats", "--from", frm, "--to", to)
    assert text.startswith("month\tissue_store\tissued")
    assert text.splitlines()[-2].split("\t")[-1] == str(live)
    mgr = mms(env, capsys, "mgr11", "card-stats", "--from", frm, "--to", to)
    assert all(line.split("\t")[1] == "11" for line in mgr.splitlines()[1:-1])


def test_member_reports_export(env, capsys, tmp_path):  # noqa: F811
    from openpyxl.chart import BarChart

    from core.domain import reports

    frm, to = window()
    want = reports.member_activity_report(env.engine, frm, to)
    x, c = str(tmp_path / "m.xlsx"), str(tmp_path / "m.csv")
    mms(env, capsys, "fin", "members", "--from", frm, "--to", to, "--xlsx", x, "--csv", c)
    with open(c, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == list(reports.MEMBER_ACTIVITY_FIELDS)
    assert rows[1] == [str(want[0][k]) for k in reports.MEMBER_ACTIVITY_FIELDS]
    assert rows[2][reports.MEMBER_ACTIVITY_FIELDS.index("active_bp")] == ""  # a share: no total
    ws = openpyxl.load_workbook(x).active
    assert ws.cell(row=2, column=reports.MEMBER_ACTIVITY_FIELDS.index("visits") + 1).value == \
        want[0]["visits"]
    dist = reports.visit_frequency_report(env.engine, frm, to)
    mms(env, capsys, "fin", "visit-frequency", "--from", frm, "--to", to, "--xlsx", x, "--csv", c)
    with open(c, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == list(reports.VISIT_FREQUENCY_FIELDS)
    assert [int(r[1]) for r in rows[1:-1]] == [d["visit_count"] for d in dist]
    assert rows[-1][1] == "" and int(rows[-1][3]) == want[0]["visits"]
    ws = openpyxl.load_workbook(x).active
    assert len(ws._charts) == 1 and isinstance(ws._charts[0], BarChart)
    mgr = mms(env, capsys, "mgr11", "members", "--from", frm, "--to", to)
    assert mgr.splitlines()[1].split("\t")[0] == "11"


def test_recharge_settlement_exports(env, capsys, tmp_path):  # noqa: F811
    from core.domain import reports

    frm, to = window()
    want = reports.recharge_settlement_report(env.engine, frm, to)
    x, c = str(tmp_path / "r.xlsx"), str(tmp_path / "r.csv")
    mms(env, capsys, "fin", "recharge-settlement", "--from", frm, "--to", to, "--xlsx", x,
        "--csv", c)
    with open(c, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["recharge_store", "spend_store", "count", "spent_yuan", "refunded_yuan",
                       "other_yuan", "net_yuan"]
    assert rows[1:-1] == [[str(w["recharge_store"]), str(w["spend_store"]), str(w["count"]),
                           report_export.yuan_text(w["spent_fen"]),
                           report_export.yuan_text(w["refunded_fen"]),
                           report_export.yuan_text(w["other_fen"]),
                           report_export.yuan_text(w["net_fen"])] for w in want]
    assert rows[-1][0] == "total" and rows[-1][1] == ""
    assert rows[-1][6] == report_export.yuan_text(sum(w["net_fen"] for w in want))
    ws = openpyxl.load_workbook(x).active
    assert ws.freeze_panes == "A2"
    cell = ws.cell(row=2, column=4)
    assert cell.value == Decimal(want[0]["spent_fen"]) / 100 and cell.number_format == "0.00"
    mgr = mms(env, capsys, "mgr11", "recharge-settlement", "--from", frm, "--to", to)
    assert all("11" in line.split("\t")[:2] for line in mgr.splitlines()[1:-1])
