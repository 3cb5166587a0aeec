"""The back office's day through the real `mms` commands against a real server on
loopback: the member view (会员360), a desk recharge attributed to its operator, card
detail with its replacement, the operator list, pages that say their total, rules as a
TOML file (show, diff, apply, idempotent), and money and times as people write them."""

from __future__ import annotations

import json
import time

import pytest
import tomllib

from core.domain import units
from server.cli.main import main
from tests.cli._shared import BOOT

SHANGHAI = 8 * 3600


@pytest.fixture
def server(cli_server):
    return cli_server


def mms(capsys, *argv: str, rc: int = 0) -> str:
    got = main(list(argv))
    out = capsys.readouterr()
    assert got == rc, out.err
    return out.out.strip() if rc == 0 else out.err.strip()


def usage_error(capsys, *argv: str) -> str:
    """A refused option value: argparse exits 2 with the reason on stderr."""
    with pytest.raises(SystemExit) as ei:
        main(list(argv))
    assert ei.value.code == 2
    return capsys.readouterr().err


@pytest.fixture
def chain(server, capsys):
    target, engine = server
    mms(capsys, "chain", "bootstrap", "--target", target, "--name", "Chain",
        "--admin-login", "root", "--bootstrap-token", BOOT)
    mms(capsys, "login", "--target", target, "--login", "root")
    mms(capsys, "chain", "add", "--kind", "region", "--parent", "1", "--name", "East")
    mms(capsys, "chain", "add", "--kind", "store", "--parent", "2", "--name", "S7", "--id", "7")
    for login, role in (("mgr", "store_manager"), ("cash", "cashier"),
                        ("desk", "customer_service")):
        mms(capsys, "operator", "add", "--login", login, "--role", role, "--store", "7")
    mms(capsys, "operator", "add", "--login", "mkt", "--role", "marketing")
    return target, engine


def as_(capsys, target: str, login: str) -> None:
    mms(capsys, "login", "--target", target, "--login", login)


def test_member_view_recharge_and_card_detail(chain, capsys):
    target, engine = chain
    as_(capsys, target, "cash")
    assert mms(capsys, "member", "add", "--name", "Li Lei", "--phone", "13800138000",
               "--tag", "vip", "--tag", "family") == "member 1 created"
    mms(capsys, "card", "issue", "880001", "--member", "1")
    # A desk recharge in yuan, journalled as this operator (3) at their store (7).
    assert mms(capsys, "card", "recharge", "880001", "100.5") == (
        "card 880001: recharged 100.50 yuan by operator 3 at store 7; balance 100.50 yuan "
        "(principal 100.50, bonus 0.00)")
    assert engine.card(880001)["principal_fen"] == 10_050
    retry = ("--client-id", "ab" * 16)
    mms(capsys, "card", "recharge", "880001", "0.01", *retry)
    assert mms(capsys, "card", "recharge", "880001", "0.01", *retry).endswith("(replay)")
    assert engine.card(880001)["principal_fen"] == 10_051
    assert "at most two decimals" in usage_error(capsys, "card", "recharge", "880001", "12.345")
    assert "negative" in usage_error(capsys, "card", "recharge", "880001", "-1")
    assert "not an amount" in usage_error(capsys, "card", "recharge", "880001", "1,000")
    as_(capsys, target, "root")
    assert "PERMISSION_NOT_GRANTED" in mms(capsys, "card", "recharge", "880001", "1", rc=1)
    as_(capsys, target, "mkt")
    mms(capsys, "coupon", "template", "5", "--name", "Five off", "--kind", "fixed",
        "--value", "5", "--valid-days", "30")
    mms(capsys, "coupon", "issue", "5", "880001", "--valid-from", "2030-01-01")
    as_(capsys, target, "desk")
    mms(capsys, "card", "replace", "880001", "880002", "--fee", "2.50")

    shown = mms(capsys, "member", "show", "1")
    lines = shown.splitlines()
    assert lines[0] == "member 1 Li Lei phone 138****8000 store 7 active"
    assert "  tags: vip, family" in lines
    assert "card 880001  cancelled  type 0 default (stored_value)  level 0 regular" in lines
    assert "  replaced by card 880002" in lines
    assert "  replaces card(s) 880001" in lines
    assert "  balance 98.01 yuan (principal 98.01, bonus 0.00)" in lines
    assert "coupons held: 1" in lines
    assert any(x.startswith("  coupon ") and "card 880002\tvalid 2030-01-01..2030-01-31" in x
               for x in lines)
    journal = [x for x in lines if "\tRECHARGE\t" in x]
    assert len(journal) == 2 and "\toperator 3\t" in journal[0]
    assert "\t0.01 yuan\t" in journal[0] and "\t100.50 yuan\t" in journal[1]
    # ISO times in the chain's zone, never raw unix seconds.
    seq, when = journal[0].strip().split("\t")[:2]
    assert when.endswith("+08:00") and units.parse_time(when, SHANGHAI) > 1_700_000_000
    # --json keeps the integers and unix seconds for programs.
    doc = json.loads(mms(capsys, "member", "show", "1", "--json"))
    views = {v["card"]["card_no"]: v for v in doc["card_views"]}
    assert views[880001]["replaced_by_card_no"] == 880002
    assert views[880002]["card"]["principal_fen"] == 9801
    assert all(isinstance(e["time_s"], int) and e["time_s"] > 1_700_000_000 for e in doc["journal"])
    # The journal pages: one record, then the next page by its cursor.
    one = mms(capsys, "member", "show", "1", "--journal-limit", "1").splitlines()
    assert "journal: 1 latest records" in one
    cursor = one[-1].removeprefix("(older records: --journal-before ").removesuffix(")")
    nxt = mms(capsys, "member", "show", "1", "--journal-limit", "1", "--journal-before", cursor)
    assert f"  {seq}\t" not in nxt and "journal: 1 latest records" in nxt

    assert mms(capsys, "card", "level", "880002", "1", "--reason", "vip", "--approver", "2") \
        == "card 880002: level 0 -> 1"
    hist = mms(capsys, "card", "level-history", "880002", "--limit", "1").splitlines()
    assert len(hist) == 2 and "\tLEVEL_MANUAL\t0 -> 1" in hist[0]
    assert hist[0].split("\t")[1].endswith("+08:00")
    assert hist[1] == "1 level changes, newest first; there may be older ones: --limit 2"
    full = mms(capsys, "card", "level-history", "880002").splitlines()
    assert full[-1] == f"{len(full) - 1} level changes, newest first"
    detail = mms(capsys, "card", "show", "880001", "--detail").splitlines()
    assert detail[1] == "  replaced by card 880002"
    assert "replaced by card 880002" in mms(capsys, "card", "show", "880001")
    page = mms(capsys, "card", "journal", "880002", "--limit", "2").splitlines()
    assert len(page) == 3 and page[-1].startswith("2 of ") and "older records: --before" in page[-1]


def test_operator_list_and_pages_say_their_total(chain, capsys):
    target, _ = chain
    out = mms(capsys, "operator", "list").splitlines()
    assert out[0] == "1\troot\tadmin\tstore -\troot"
    assert out[-1] == "5 of 5 operators (1-5)"
    two = mms(capsys, "operator", "list", "--limit", "2", "--offset", "1").splitlines()
    assert [x.split("\t")[1] for x in two[:-1]] == ["mgr", "cash"]
    assert two[-1] == "2 of 5 operators (2-3); next page: --offset 3"
    mms(capsys, "operator", "disable", "4")
    assert mms(capsys, "operator", "list").splitlines()[-1] == "4 of 4 operators (1-4)"
    assert "\tdisabled" in mms(capsys, "operator", "list", "--all")
    as_(capsys, target, "mgr")
    # A store's manager sees their store's staff only (desk, disabled, with --all).
    assert {x.split("\t")[1] for x in mms(capsys, "operator", "list").splitlines()[:-1]} == \
        {"mgr", "cash"}
    assert {x.split("\t")[1]
            for x in mms(capsys, "operator", "list", "--all").splitlines()[:-1]} == \
        {"mgr", "cash", "desk"}
    as_(capsys, target, "root")
    audit = mms(capsys, "audit", "--limit", "2").splitlines()
    total = int(audit[-1].split(" of ")[1].split()[0])
    assert total > 2 and audit[-1].startswith("2 of ") and "next page: --since" in audit[-1]
    assert audit[0].split("\t")[1].endswith("+08:00")
    everything = mms(capsys, "audit", "--limit", "1000").splitlines()
    assert everything[-1] == f"{total} of {total} events after seq 0"
    as_(capsys, target, "cash")
    for name in ("A", "B", "C"):
        mms(capsys, "member", "add", "--name", name)
    assert mms(capsys, "member", "search", "--limit", "2").splitlines()[-1] == \
        "2 of 3 members (1-2); next page: --offset 2"
    assert mms(capsys, "member", "search", "--limit", "2", "--offset", "2").splitlines()[-1] \
        == "1 of 3 members (3-3)"


def test_rules_file_show_diff_apply(chain, capsys, tmp_path):
    target, engine = chain
    as_(capsys, target, "cash")
    shown = mms(capsys, "rules", "show")
    doc = tomllib.loads(shown)
    assert doc["levels"][1]["name"] == "silver" and doc["tz_offset_s"] == SHANGHAI
    assert "max_amount_fen = 100000000  # 1000000.00 yuan" in shown
    f = tmp_path / "rules.toml"
    f.write_text(shown, encoding="utf-8")
    # The rules as shown change nothing.
    assert mms(capsys, "rules", "diff", str(f)) == f"no changes to rules version {doc['version']}"
    edited = shown.replace("discount_bp = 9800", "discount_bp = 9700").replace(
        "tiers = []", "tiers = [ { min_pay_fen = 10000, bonus_fen = 1000, points = 0 } ]")
    edited = edited.replace("no_points_categories = []", "no_points_categories = [7]")
    f.write_text(edited, encoding="utf-8")
    diff = mms(capsys, "rules", "diff", str(f)).splitlines()
    assert "levels[1].discount_bp: 9800 -> 9700" in diff
    assert "no_points_categories: [] -> [7]" in diff
    assert diff[-1] == f"3 change(s) to rules version {doc['version']}"
    # Applying needs rules.write (a cashier has it not); the marketing desk does.
    assert "PERMISSION_NOT_GRANTED" in mms(capsys, "rules", "apply", str(f), rc=1)
    as_(capsys, target, "mkt")
    applied = mms(capsys, "rules", "apply", str(f)).splitlines()
    assert applied[-1] == f"rules version {doc['version'] + 1} in force (3 change(s) from " \
                          f"version {doc['version']})"
    rules = engine.rules
    assert rules.levels[1].discount_bp == 9700 and rules.no_points_categories == (7,)
    assert (rules.tiers[0].min_pay_fen, rules.tiers[0].bonus_fen) == (10_000, 1_000)
    # Again: nothing to change, nothing sent.
    assert mms(capsys, "rules", "apply", str(f)) == \
        f"no changes; rules stay at version {doc['version'] + 1}"
    assert engine.rules.version == doc["version"] + 1
    # A partial file changes only what it names; a bad one is refused before sending.
    part = tmp_path / "part.toml"
    part.write_text("offset_max_bp = 3000\n", encoding="utf-8")
    cid = ("--client-id", "cd" * 16)
    mms(capsys, "rules", "apply", str(part), *cid)
    assert mms(capsys, "rules", "apply", str(part), *cid).endswith("(replay: applied before)")
    assert engine.rules.offset_max_bp == 3000 and engine.rules.version == doc["version"] + 2
    part.write_text("offset_max_bp = 30000\n", encoding="utf-8")
    assert "offset_max_bp must be 0..10000" in mms(capsys, "rules", "apply", str(part), rc=2)
    part.write_text("no_such_rule = 1\n", encoding="utf-8")
    assert "unknown rule fields" in mms(capsys, "rules", "diff", str(part), rc=2)
    part.write_text("offset_max_bp = \n", encoding="utf-8")
    assert "not TOML" in mms(capsys, "rules", "diff", str(part), rc=2)
    assert engine.rules.offset_max_bp == 3000
    # The chain's time zone is one rule: every command's times follow it.
    as_(capsys, target, "root")
    assert mms(capsys, "audit", "--limit", "1").split("\t")[1].endswith("+08:00")
    part.write_text("tz_offset_s = 0\n", encoding="utf-8")
    mms(capsys, "rules", "apply", str(part))
    assert mms(capsys, "audit", "--limit", "1").split("\t")[1].endswith("+00:00")


def test_times_and_money_options_as_people_write_them(chain, capsys):
    target, engine = chain
    as_(capsys, target, "cash")
    mms(capsys, "member", "add", "--name", "Han", "--phone", "13800138001")
    assert "deposit 50.00 yuan each" in mms(capsys, "card", "issue", "770001", "--member", "1",
                                             "--paid", "50")
    assert engine.card(770001)["principal_fen"] == 5_000
    as_(capsys, target, "root")
    # The commission report's window in dates, read in the chain's zone.
    mms(capsys, "report", "commission", "--since", "2026-01-01", "--until", "2026-12-31T12:00")
    assert "is not a time" in usage_error(capsys, "report", "commission", "--since", "1/1/2020",
                                          "--until", "2100-01-01")
    as_(capsys, target, "mgr")
    made = mms(capsys, "points", "make-up", "770001", "--receipt", "R1", "--paid", "88.8",
               "--time", units.iso_time(int(time.time()) - 60, SHANGHAI))
    assert made.startswith("card 770001: ") and "for receipt R1" in made
    # The points made up sit in this year's lot, valid to the end of next year.
    year = int(units.iso_date(int(time.time()), SHANGHAI)[:4])
    lots = [x for x in mms(capsys, "card", "show", "770001", "--detail").splitlines()
            if x.startswith("  points ")]
    assert lots and f"earned {year} valid until {year + 1}-12-31" in lots[0]
    assert "whole days" in usage_error(capsys, "report", "sales", "--from", "2026-12-01T08:00",
                                       "--to", "2026-12-02")
    assert "not a date" in usage_error(capsys, "report", "sales", "--from", "2026-02-30",
                                       "--to", "2026-03-02")
    assert "at most two decimals" in usage_error(capsys, "points", "make-up", "770001",
                                                 "--receipt", "R2", "--paid", "1.001",
                                                 "--time", "2026-01-01")
