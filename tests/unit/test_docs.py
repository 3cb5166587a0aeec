"""The reference tables of docs/api.md against the code they describe: every engine
Result with the status the server gives it, every op flag with its value."""

from __future__ import annotations

from common import ROOT
from doc_tables import table_after

from core.records import OpFlag, Result
from server.rpc.errors import result_reason, result_status

API_MD = ROOT / "docs" / "api.md"


def _table_after(marker: str) -> list[list[str]]:
    return table_after(API_MD, marker)


def test_every_result_is_in_the_status_table_with_its_status():
    table = {}
    for reason, status, _when in _table_after("results"):
        name, code = reason.strip("`"), status.strip("`")
        assert name not in table, f"{name} twice"
        table[name] = code
    want = {result_reason(int(r)): result_status(int(r)).name
            for r in Result if int(r) > int(Result.OK)}
    assert table == want


def test_every_op_flag_is_documented_with_its_value():
    rows = {(int(v), n.strip("`")) for v, n, _ in _table_after("flags")}
    assert rows == {(int(f), f.name) for f in OpFlag if int(f)}
