"""Reports as files people open: CSV and .xlsx.

Money columns (names ending in _fen) become yuan with two decimals, built from the
integer fen by integer division (yuan_text) or as an exact Decimal (yuan_decimal):
never through float arithmetic. Day columns (YYYYMMDD integers) become ISO dates,
month columns (YYYYMM) YYYY-MM.
The .xlsx has one data sheet with typed numbers (number format 0.00 for yuan), a frozen
header, a totals row, and, for reports by day, a native line chart (openpyxl.chart) of
the report's headline column.
"""

from __future__ import annotations

import csv
import datetime
import io
from decimal import Decimal

from core.domain.units import yuan_text  # the one formatter of yuan (re-exported)

# Column a chart plots per report, when the report has a day column.
CHART_COLUMN = {"sales": "net_fen", "liability": "principal_closing_fen"}
# Reports charted as bars of a column per key instead: report -> (key, value).
BAR_CHART = {"points_expiry": ("issue_store", "expiring_points"),
             "card_stats": ("month", "issued"),
             "visit_frequency": ("visit_count", "members")}
# Columns that are a level, not a flow: no total.
_NO_TOTAL = ("opening", "closing", "in_circulation", "_bp")
KEY_COLUMNS = ("day", "month", "visit_count", "hour", "store", "region", "terminal",
               "operator", "operator_id", "level", "category", "sku", "template_id",
               "issue_store", "spend_store", "recharge_store")




def yuan_decimal(fen: int) -> Decimal:
    return Decimal(int(fen)).scaleb(-2)


def header(column: str) -> str:
    return column[:-4] + "_yuan" if column.endswith("_fen") else column


def iso_day(yyyymmdd: int) -> datetime.date:
    v = int(yyyymmdd)
    return datetime.date(v // 10_000, v // 100 % 100, v % 100)


def iso_month(yyyymm: int) -> str:
    """A month column (YYYYMM integer) as YYYY-MM."""
    v = int(yyyymm)
    return f"{v // 100:04d}-{v % 100:02d}"


def _totals(columns, rows) -> list:
    out = []
    for i, c in enumerate(columns):
        if i == 0:
            out.append("total")
        elif c in KEY_COLUMNS or any(t in c for t in _NO_TOTAL):
            out.append(None)
        else:
            out.append(sum(int(r[c]) for r in rows))
    return out


def to_csv(columns, rows) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([header(c) for c in columns])
    for r in rows:
        w.writerow([iso_day(r[c]).isoformat() if c == "day"
                    else iso_month(r[c]) if c == "month"
                    else yuan_text(r[c]) if c.endswith("_fen") else int(r[c]) for c in columns])
    if rows:
        tot = _totals(columns, rows)
        w.writerow(["" if v is None else v if isinstance(v, str)
                    else yuan_text(v) if c.endswith("_fen") else v
                    for c, v in zip(columns, tot, strict=True)])
    return buf.getvalue()


def to_xlsx(path: str, report: str, columns, rows) -> None:
    from openpyxl import Workbook
    from openpyxl.chart import LineChart, Reference
    from openpyxl.styles import Font

    wb = Workbook()
    ws = wb.active
    ws.title = report
    ws.append([header(c) for c in columns])
    for cell in ws[1]:
        cell.font = Font(bold=True)
    ws.freeze_panes = "A2"
    for r in rows:
        ws.append([iso_day(r[c]) if c == "day" else iso_month(r[c]) if c == "month"
                   else yuan_decimal(r[c]) if c.endswith("_fen")
                   else int(r[c]) for c in columns])
    n = len(rows)
    if rows:
        tot = _totals(columns, rows)
        ws.append([yuan_decimal(v) if c.endswith("_fen") and isinstance(v, int) else v
                   for c, v in zip(columns, tot, strict=True)])
        for cell in ws[n + 2]:
            cell.font = Font(bold=True)
    for j, c in enumerate(columns, start=1):
        letter = ws.cell(row=1, column=j).column_letter
        ws.column_dimensions[letter].width = max(10, len(header(c)) + 2)
        for i in range(2, n + 3):
            cell = ws.cell(row=i, column=j)
            if c.endswith("_fen"):
                cell.number_format = "0.00"
            elif c == "day" and i <= n + 1:
                cell.number_format = "yyyy-mm-dd"
    if rows and report in BAR_CHART:
        _bar_chart(ws, report, columns, n)
    chart_col = CHART_COLUMN.get(report)
    if rows and "day" in columns and chart_col in columns:
        chart = LineChart()
        chart.title = f"{report}: {header(chart_col)} per day"
        chart.y_axis.title = "yuan"
        chart.x_axis.title = "day"
        chart.x_axis.number_format = "yyyy-mm-dd"
        col = columns.index(chart_col) + 1
        chart.add_data(Reference(ws, min_col=col, min_row=1, max_row=n + 1), titles_from_data=True)
        chart.set_categories(Reference(ws, min_col=columns.index("day") + 1, min_row=2,
                                       max_row=n + 1))
        ws.add_chart(chart, ws.cell(row=2, column=len(columns) + 2).coordinate)
    wb.save(path)


def _bar_chart(ws, report: str, columns, n: int) -> None:
    """A bar chart of BAR_CHART's value column per row, labelled by its key column."""
    from openpyxl.chart import BarChart, Reference

    key, value = BAR_CHART[report]
    chart = BarChart()
    chart.title = f"{report}: {header(value)} per {key} (level within)"
    chart.y_axis.title = header(value)
    chart.x_axis.title = key
    col = columns.index(value) + 1
    chart.add_data(Reference(ws, min_col=col, min_row=1, max_row=n + 1), titles_from_data=True)
    chart.set_categories(Reference(ws, min_col=columns.index(key) + 1, min_row=2, max_row=n + 1))
    ws.add_chart(chart, ws.cell(row=2, column=len(columns) + 2).coordinate)
