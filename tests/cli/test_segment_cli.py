"""`mms segment ...` and `mms tag ...` through the real command against the real server."""

from __future__ import annotations

import json

import openpyxl
from test_segment_rpc import env  # noqa: F401  (the module's server fixture)

from server.cli import main


def mms(env, capsys, who, *argv, rc=0):  # noqa: F811
    got = main([*argv, "--target", f"127.0.0.1:{env.server.port}", "--session", env.sessions[who]])
    out = capsys.readouterr()
    assert got == rc, out.err
    return out.out


def test_segment_commands(env, capsys, tmp_path):  # noqa: F811
    d = json.dumps({"field": "spend_fen", "op": "gte", "value": 4000})
    assert "saved" in mms(env, capsys, "mkt", "segment", "define", "cli-big", "--definition", d)
    assert "cli-big" in mms(env, capsys, "fin", "segment", "list")
    assert mms(env, capsys, "fin", "segment", "count", "cli-big").strip() == "3"
    assert mms(env, capsys, "mgr11", "segment", "count", "cli-big").strip() == "1"   # k = 4
    out = mms(env, capsys, "fin", "segment", "members", "cli-big", "--limit", "2")
    assert out.splitlines()[0] == "total 3" and len(out.splitlines()) == 3
    x = str(tmp_path / "big.xlsx")
    assert "3 members" in mms(env, capsys, "fin", "segment", "export", "cli-big", "--out", x)
    assert openpyxl.load_workbook(x).active.max_row == 4
    rep = mms(env, capsys, "fin", "segment", "report", "--definition", d, "--days", "30")
    assert rep.startswith("members 3\tspend 150.00")          # 40 + 50 + 60 yuan
    js = json.loads(mms(env, capsys, "fin", "segment", "classes", "--json"))
    assert len(js["classes"]) == 7
    # A store role writes nothing; a bad definition is refused before the server.
    mms(env, capsys, "mgr11", "segment", "define", "x", "--definition", d, rc=1)
    mms(env, capsys, "fin", "segment", "count", "--definition", "{", rc=2)
    mms(env, capsys, "fin", "segment", "count", "--definition",
        json.dumps({"field": "nope", "op": "eq", "value": 1}), rc=1)
    assert "deleted" in mms(env, capsys, "mkt", "segment", "delete", "cli-big")


def test_tag_commands(env, capsys):  # noqa: F811
    rule = json.dumps({"field": "visits", "op": "gte", "value": 1})
    mms(env, capsys, "mkt", "tag", "define", "cli-visited", "--rule", rule, "--description", "came")
    cid = "ab" * 16
    out = mms(env, capsys, "mkt", "tag", "evaluate", "cli-visited", "--client-id", cid)
    assert out.strip() == "cli-visited\t6\t+6\t-0"
    assert mms(env, capsys, "mkt", "tag", "evaluate", "cli-visited", "--client-id", cid) == out
    assert "cli-visited\t6\t" in mms(env, capsys, "fin", "tag", "list")
    assert "deleted" in mms(env, capsys, "mkt", "tag", "delete", "cli-visited")
