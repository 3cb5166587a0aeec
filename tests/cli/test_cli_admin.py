"""The back-office `mms` commands end to end against a real server on loopback:
bootstrap, login, a store and its till, a member and a card, a recharge through the
POS service, search, export and the audit trail."""

from __future__ import annotations

import json
import os
import stat

import grpc
import pytest

from server.cli.main import main
from server.mms_pb import pos_pb2, pos_pb2_grpc
from tests.cli._shared import BOOT


@pytest.fixture
def server(cli_server):
    return cli_server[0]


def mms(capsys, *argv: str, rc: int = 0) -> str:
    got = main(list(argv))
    out = capsys.readouterr()
    assert got == rc, out.err
    return out.out.strip() if rc == 0 else out.err.strip()


def test_daily_work_end_to_end(server, tmp_path, capsys):
    t = ("--target", server)
    assert "admin root is operator 1" in mms(capsys, "chain", "bootstrap", *t, "--name", "Chain",
                                              "--admin-login", "root", "--bootstrap-token", BOOT)
    assert "logged in as root (admin)" in mms(capsys, "login", *t, "--login", "root")
    saved = tmp_path / "cfg" / "mms" / "session"
    assert stat.S_IMODE(os.stat(saved).st_mode) == 0o600
    # From here on the target and session come from the saved session file.
    assert mms(capsys, "chain", "add", "--kind", "region", "--parent", "1", "--name", "East") \
        == "region 2 'East' under 1"
    mms(capsys, "chain", "add", "--kind", "store", "--parent", "2", "--name", "S7", "--id", "7")
    assert "operator 2 mgr (store_manager, store 7)" in mms(
        capsys, "operator", "add", "--login", "mgr", "--role", "store_manager", "--store", "7")
    mms(capsys, "operator", "add", "--login", "cash", "--role", "cashier", "--store", "7")
    till_token = mms(capsys, "terminal", "add", "--store-id", "7", "--name", "till 1")
    # The admin carries no member data out of the system: exports are finance's and the
    # store manager's.
    err = mms(capsys, "member", "export", str(tmp_path / "nope.csv"), rc=1)
    assert "PERMISSION_DENIED PERMISSION_NOT_GRANTED" in err
    mms(capsys, "login", *t, "--login", "cash")
    assert mms(capsys, "member", "add", "--name", "Li Lei", "--phone", "13800138000",
               "--tag", "vip") == "member 1 created"
    retry = ("--client-id", "00" * 15 + "01")
    assert mms(capsys, "member", "add", "--name", "Han Meimei", "--phone", "13800138001",
               *retry) == "member 2 created"
    assert mms(capsys, "member", "add", "--name", "Han Meimei", "--phone", "13800138001",
               *retry) == "member 2 exists (replay)"
    assert mms(capsys, "card", "issue", "880001", "--member", "1").startswith(
        "1 card(s) issued: level 0, fees 0.00 yuan, deposit 0.00 yuan each, valid until ")
    with grpc.insecure_channel(server) as ch:
        r = pos_pb2_grpc.PosServiceStub(ch).Recharge(
            pos_pb2.RechargeRequest(client_id=os.urandom(16), card_no=880001, amount_fen=10_000),
            metadata=(("authorization", f"Bearer {till_token}"),), timeout=30)
    assert r.result.principal_fen == 10_000
    shown = mms(capsys, "member", "show", "1")
    assert "phone 138****8000 store 7" in shown
    assert "card 880001  active" in shown and "  balance 100.00 yuan (principal 100.00" in shown
    assert mms(capsys, "member", "find", "13800138000").startswith("member 1 Li Lei")
    found = json.loads(mms(capsys, "member", "search", "--tag", "vip", "--json"))
    assert found["total"] == 1 and found["members"][0]["member_id"] == 1
    assert mms(capsys, "member", "search", "--name", "Han").endswith("1 of 1 members (1-1)")
    assert "RECHARGE" in mms(capsys, "card", "journal", "880001")
    # The cashier may not freeze or export; the manager may.
    assert "PERMISSION_NOT_GRANTED" in mms(capsys, "card", "freeze", "880001", rc=1)
    mms(capsys, "login", *t, "--login", "mgr")
    assert mms(capsys, "card", "freeze", "880001") == "card 880001: frozen"
    assert mms(capsys, "card", "unfreeze", "880001") == "card 880001: active"
    assert mms(capsys, "member", "freeze", "2", "--reason", "asked") == "member 2: freeze done"
    out = tmp_path / "members.csv"
    assert mms(capsys, "member", "export", str(out)) == f"2 members written to {out}"
    text = out.read_text(encoding="utf-8-sig")
    assert "138****8000" in text and "13800138000" not in text
    # Import a file with one good and one bad row: the bad one is refused whole.
    src = tmp_path / "new.csv"
    src.write_text("name,phone\nWang Wu,13900139000\n,12\n", encoding="utf-8")
    # A refused row exits 3 (stdout has the count, stderr the row).
    assert main(["member", "import", str(src)]) == 3
    out = capsys.readouterr()
    assert out.out.strip() == "2 rows: 1 created, 0 updated, 0 already imported, 1 refused"
    assert out.err.startswith(f"{src}:3: refused: ")
    assert main(["member", "import", str(src)]) == 3
    assert capsys.readouterr().out.strip() == \
        "2 rows: 0 created, 0 updated, 1 already imported, 1 refused"
    audit = mms(capsys, "audit", "--json")
    ops = [e["op"] for e in json.loads(audit)["events"]]
    assert "MEMBER_CREATE" in ops and "SET_STATUS" in ops and "OPERATOR_CREATE" in ops
    mms(capsys, "login", *t, "--login", "root")
    assert mms(capsys, "points", "expire") == "0 points expired on 0 cards"
    assert mms(capsys, "points", "remind") == "0 reminders written to the outbox"
    assert mms(capsys, "terminal", "revoke", "--terminal-id", "8") == "terminal 8: token revoked"
    assert "disabled" in mms(capsys, "operator", "disable", "3")


def test_no_session_is_a_usage_error(server, capsys):
    assert "no session" in mms(capsys, "member", "find", "138", "--target", server, rc=2)


def test_a_token_starting_with_a_dash_is_accepted_either_way(server, tmp_path, capsys,
                                                             monkeypatch):
    """Tokens issued before the generator avoided "-" may start with one (1 in 64);
    `--session -x...`, `--session=-x...` and `mms replay --token -x...` all take it."""
    import core.domain.chain

    t = ("--target", server)
    mms(capsys, "chain", "bootstrap", *t, "--name", "Chain", "--admin-login", "root",
        "--bootstrap-token", BOOT)
    real = core.domain.chain.new_token
    dash_session, dash_till = "-" + real()[1:], "-" + real()[1:]
    with monkeypatch.context() as m:  # the server issues what an old one could have
        m.setattr(core.domain.chain, "new_token", lambda: dash_session)
        assert mms(capsys, "login", *t, "--login", "root", "--print-token") == dash_session
    mms(capsys, "chain", "add", *t, "--kind", "region", "--parent", "1", "--name", "East")
    mms(capsys, "chain", "add", *t, "--kind", "store", "--parent", "2", "--name", "S7",
        "--id", "7")
    (tmp_path / "cfg" / "mms" / "session").unlink()  # only the flag carries the session now
    for form in (("--session", dash_session), (f"--session={dash_session}",)):
        assert mms(capsys, "chain", "list", *t, *form).startswith("1\thq")
    with monkeypatch.context() as m:
        m.setattr(core.domain.chain, "new_token", lambda: dash_till)
        assert mms(capsys, "terminal", "add", *t, "--session", dash_session,
                   "--store-id", "7") == dash_till
    rows = tmp_path / "rows.csv"
    rows.write_text("client_id,card_no,amount_fen\nr1,424242,100\n")
    for form in (("--token", dash_till), (f"--token={dash_till}",)):
        # The till authenticates; the unknown card is the server's answer (exit 3).
        assert main(["replay", str(rows), *t, *form, "--restart"]) == 3
        out = capsys.readouterr()
        assert "rejected by the server: RESULT_CARD_NOT_FOUND" in out.err, out.err
    # A flag whose value was left out still says so, rather than eating the next option.
    with pytest.raises(SystemExit):
        main(["chain", "list", "--session", "--target", server])
    capsys.readouterr()
