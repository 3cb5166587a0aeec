"""`mms plan ...` and `mms campaign ...` through the real command against the real
server: create from a file, list, show, run, status, results (yuan and percent, CSV),
pause and resume; campaign settings, sign-in and referral settlement; a refusal exits 1
with the reason."""

from __future__ import annotations

import csv
import json

from test_campaign_rpc import env  # noqa: F401  (the module's server fixture)

from core.records import Result
from server.cli import main


def mms(env, capsys, who, *argv, rc=0):  # noqa: F811
    got = main([*argv, "--target", f"127.0.0.1:{env.server.port}", "--session", env.sessions[who]])
    out = capsys.readouterr()
    assert got == rc, out.err
    return out.out if rc == 0 else out.err


def test_plan_commands(env, capsys, tmp_path):  # noqa: F811
    path = tmp_path / "plan.json"
    path.write_text(json.dumps({"name": "cli plan", "audience": {"kind": "members",
                                                                 "member_ids": env.ids[20:26]},
                                "actions": [{"kind": "points", "points": 4, "reason": "cli"}]}))
    out = mms(env, capsys, "mkt", "plan", "create", "--file", str(path))
    plan_id = int(out.split("\t")[0])
    assert out.split("\t")[1] == "active" and out.rstrip().endswith("cli plan")
    assert f"{plan_id}\tactive" in mms(env, capsys, "fin", "plan", "list")
    shown = json.loads(mms(env, capsys, "fin", "plan", "show", str(plan_id)))
    assert shown["actions"] == [{"kind": "points", "points": 4, "reason": "cli"}]
    out = mms(env, capsys, "mkt", "plan", "run", str(plan_id), "--run-id", "cli-1", "--chunk", "2")
    assert "run cli-1" in out and "done" in out and "reached 6" in out and "points 24" in out
    assert "reached 6" in mms(env, capsys, "fin", "plan", "status", "cli-1")
    csv_path = tmp_path / "r.csv"
    out = mms(env, capsys, "fin", "plan", "results", "cli-1", "--csv", str(csv_path))
    lines = dict(line.split("\t") for line in out.strip().splitlines())
    assert lines["reached"] == "6" and lines["points_granted"] == "24"
    assert lines["cost_yuan"] == "0.24" and lines["redemption_rate"] == "0.00%"
    with open(csv_path, newline="") as f:
        rows = list(csv.reader(f))
    assert "reached" in rows[0] and rows[1][rows[0].index("reached")] == "6"
    assert "paused" in mms(env, capsys, "mkt", "plan", "pause", str(plan_id))
    assert "active" in mms(env, capsys, "mkt", "plan", "pause", str(plan_id), "--resume")
    err = mms(env, capsys, "cash11", "plan", "create", "--file", str(path), rc=1)
    assert "PERMISSION_DENIED" in err
    err = mms(env, capsys, "mkt", "plan", "create", "--plan", "{", rc=1)
    assert "JSON_INVALID" in err


def test_campaign_commands(env, capsys):  # noqa: F811
    mms(env, capsys, "mkt", "campaign", "set", "sign_in", "--config", '{"points": 7}')
    out = mms(env, capsys, "cash11", "campaign", "sign-in", "102")
    assert "+7 points" in out
    err = mms(env, capsys, "cash11", "campaign", "sign-in", "102", rc=1)
    assert "SIGNED_IN_TODAY" in err
    mms(env, capsys, "mkt", "campaign", "set", "referral", "--config", '{"points": 50}')
    assert mms(env, capsys, "mkt", "campaign", "referrals").startswith("referrals ")
    mms(env, capsys, "mkt", "campaign", "set", "recharge:cli", "--config", json.dumps(
        {"tiers": [[10_000, 100]], "from_s": 0, "to_s": 2**33}))
    out = mms(env, capsys, "mkt", "campaign", "recharge", "cli")
    # Every card's 200-yuan opening recharge qualifies (any store, any level).
    assert out.startswith("recharges 30\t3000 fen bonus")


def test_a_member_price_shows_on_the_card_and_in_the_results(env, capsys):  # noqa: F811
    from common import cid

    from core.domain import units

    doc = {"name": "price month", "audience": {"kind": "members", "member_ids": env.ids[26:28]},
           "actions": [{"kind": "member_price", "price_bp": 8_800, "days": 30}], "holdout_bp": 0}
    plan_id = int(mms(env, capsys, "mkt", "plan", "create", "--plan", json.dumps(doc)).split("\t")[0])
    assert "reached 2" in mms(env, capsys, "mkt", "plan", "run", str(plan_id), "--run-id", "cli-price")
    card = env.engine.card(126)
    until = units.iso_date(int(card["plan_price_until_s"]), env.engine.rules.tz_offset_s)
    want = f"member price 88.00% until {until} (plan {plan_id})"
    assert want in mms(env, capsys, "fin", "card", "show", "126")
    assert f"  {want}" in mms(env, capsys, "fin", "card", "show", "126", "--detail").splitlines()
    assert "member price" not in mms(env, capsys, "fin", "card", "show", "100")
    # 1,001 fen at 88.00% is 880.88 -> 881 half up: 120 fen given away, shown in yuan.
    got = env.engine.swipe(126, 1_001, cid()).result()
    assert int(got.codes[0]) == Result.OK
    assert int(env.engine.journal_record(int(got.seq[0]))["payable_fen"]) == 881
    lines = dict(line.split("\t") for line in mms(env, capsys, "fin", "plan", "results",
                                                  "cli-price").strip().splitlines())
    assert (lines["member_price_yuan"], lines["member_price_swipes"]) == ("1.20", "1")
    assert lines["cost_yuan"] == "1.20"
