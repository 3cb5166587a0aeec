"""A region manager through the real `mms` commands against the real server: `mms operator
add --role region_manager --region N`, a login, `mms report ...` and its .xlsx export
with exactly the region's stores, another region's store refused with
PERMISSION_DENIED OTHER_REGION and a non-zero exit."""

from __future__ import annotations

import csv

import openpyxl
from test_report_region_rpc import NORTH_STORES, SOUTH_STORE, env, window  # noqa: F401

from server.cli import main


def mms(env, capsys, *argv, session=None, rc=0):  # noqa: F811
    auth = ("--session", session) if session else ()
    got = main([*argv, "--target", f"127.0.0.1:{env.server.port}", *auth])
    out = capsys.readouterr()
    assert got == rc, out.err
    return out.out if rc == 0 else out.err


def test_region_manager_from_the_command_line(env, capsys, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    monkeypatch.setenv("MMS_PASSWORD", "password-1")
    said = mms(env, capsys, "operator", "add", "--login", "rm-cli", "--role", "region_manager",
               "--region", str(env.north), session=env.sessions["root"])
    assert f"(region_manager, region {env.north})" in said
    token = mms(env, capsys, "login", "--login", "rm-cli", "--print-token").strip()
    frm, to = window()
    x, c = str(tmp_path / "sales.xlsx"), str(tmp_path / "sales.csv")
    mms(env, capsys, "report", "sales", "--from", frm, "--to", to, "--by", "store",
        "--xlsx", x, "--csv", c, session=token)
    with open(c, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0][0] == "store"
    assert [r[0] for r in rows[1:-1]] == [str(s) for s in NORTH_STORES]
    assert rows[-1][0] == "total"
    ws = openpyxl.load_workbook(x).active
    assert [ws.cell(row=i, column=1).value for i in range(2, ws.max_row + 1)] == \
        [*NORTH_STORES, "total"]
    err = mms(env, capsys, "report", "sales", "--from", frm, "--to", to,
              "--store", str(SOUTH_STORE), session=token, rc=1)
    assert "PERMISSION_DENIED OTHER_REGION" in err
    err = mms(env, capsys, "report", "card-stats", "--from", frm, "--to", to,
              "--region", str(env.south), session=token, rc=1)
    assert "PERMISSION_DENIED OTHER_REGION" in err
    err = mms(env, capsys, "report", "reconcile", session=token, rc=1)
    assert "PERMISSION_DENIED CHAIN_ROLE_REQUIRED" in err
