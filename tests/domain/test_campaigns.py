"""The built-in campaigns (core/domain/campaigns.py): sign-in once per day per member,
the referral reward on the referred member's first swipe (once), the recharge campaign's
window, stores, levels, tiers and budget (each recharge credited once), and the birthday
and anniversary plans on the plan machinery."""

from __future__ import annotations

import pytest
from common import cid
from harness import tagged_op

from core import Engine
from core.domain import campaigns, plans
from core.domain.members import MemberStore
from core.records import OpType, Result
from core.rules import CouponTemplate

T0 = 1_790_000_000


@pytest.fixture
def world(tmp_path):
    now = [T0]
    eng = Engine(str(tmp_path / "d"), clock=lambda: now[0])
    ms = MemberStore(eng, key=bytes(32))
    a = ms.create({"name": "referrer", "phone": "13800000001", "home_store_id": 11}, cid()).member_id
    b = ms.create({"name": "friend", "phone": "13800000002", "referrer_id": a}, cid()).member_id
    c = ms.create({"name": "alone", "phone": "13800000003"}, cid()).member_id
    for card, m in ((1, a), (2, b), (3, c)):
        assert eng.issue_cards([card], cid(), member_ids=[m]).result().code == Result.OK
        eng.recharge(card, 50_000, cid(), store_id=11).result()
    yield eng, ms, now, (a, b, c)
    eng.close()


def test_sign_in_once_per_day_per_member(world):
    eng, _ms, now, _ = world
    r = campaigns.sign_in(eng, 1, cid()).result()
    assert r.reason == "CAMPAIGN_OFF"
    campaigns.put_campaign(eng, "sign_in", {"points": 5}, cid()).result()
    again = cid()
    r = campaigns.sign_in(eng, 1, again).result()
    assert r.code == Result.OK and r.value["points"] == 5 and eng.card(1)["points"] == 5
    assert campaigns.sign_in(eng, 1, again).result().replayed          # a retry
    second = campaigns.sign_in(eng, 1, cid()).result()                   # another try
    assert (second.code, second.reason) == (Result.ALREADY_EXISTS, "SIGNED_IN_TODAY")
    assert eng.card(1)["points"] == 5
    now[0] += 86_400
    assert campaigns.sign_in(eng, 1, cid()).result().code == Result.OK
    assert eng.card(1)["points"] == 10
    with pytest.raises(campaigns.CampaignError):
        campaigns.put_campaign(eng, "sign_in", {"points": 0}, cid())


def test_referral_reward_on_the_first_swipe_once(world):
    eng, _ms, _now, (a, b, c) = world
    campaigns.put_campaign(eng, "referral", {"points": 100}, cid()).result()
    assert campaigns.settle_referrals(eng, cid()).result().value["rewarded"] == 0
    for tag, card in (("s1", 2), ("s2", 2), ("s3", 3)):
        assert eng.submit(*tagged_op(tag, card, 1_000)).result().codes[0] == Result.OK
    before = eng.card(1)["points"]
    r = campaigns.settle_referrals(eng, cid()).result()
    assert r.code == Result.OK and r.value["rewarded"] == 1 and r.value["points"] == 100
    assert eng.card(1)["points"] == before + 100
    rec = eng.card_journal(1, 1)[-1]
    assert int(rec["op_type"]) == 175 and int(rec["points_delta"]) == 100
    # Later swipes of the friend earn nothing more, whatever is settled again.
    eng.submit(*tagged_op("s4", 2, 1_000)).result()
    assert campaigns.settle_referrals(eng, cid()).result().value["rewarded"] == 0
    assert eng.card(1)["points"] == before + 100


def test_recharge_campaign_window_stores_levels_tiers_budget(world):
    eng, _ms, now, _ = world
    campaigns.put_campaign(eng, "recharge:spring", {
        "tiers": [[10_000, 500], [50_000, 3_000]], "from_s": T0 + 100, "to_s": T0 + 1_000,
        "stores": [11], "levels": [0], "budget_fen": 3_500}, cid()).result()
    now[0] = T0 + 50
    eng.recharge(1, 60_000, cid(), store_id=11).result()        # before the window
    now[0] = T0 + 200
    eng.recharge(1, 60_000, cid(), store_id=11).result()        # tier 2: 3,000
    eng.recharge(2, 60_000, cid(), store_id=12).result()        # another store
    eng.recharge(2, 9_999, cid(), store_id=11).result()         # below the first tier
    eng.recharge(3, 10_000, cid(), store_id=11).result()        # tier 1: 500
    eng.recharge(3, 10_000, cid(), store_id=11).result()        # over the budget
    now[0] = T0 + 2_000
    eng.recharge(3, 60_000, cid(), store_id=11).result()        # after the window
    bonus = {c: eng.card(c)["bonus_fen"] for c in (1, 2, 3)}
    r = campaigns.settle_recharge_campaign(eng, "spring", cid()).result()
    assert r.code == Result.OK and r.value["credited"] == 2 and r.value["bonus_fen"] == 3_500
    assert eng.card(1)["bonus_fen"] == bonus[1] + 3_000
    assert eng.card(2)["bonus_fen"] == bonus[2]
    assert eng.card(3)["bonus_fen"] == bonus[3] + 500
    again = campaigns.settle_recharge_campaign(eng, "spring", cid()).result()
    assert again.value["credited"] == 0 and eng.card(1)["bonus_fen"] == bonus[1] + 3_000
    rec = eng.card_journal(1, 1)[-1]
    assert int(rec["op_type"]) == 176 and int(rec["bonus_delta_fen"]) == 3_000
    assert int(eng.journal_record(int(rec["ref_seq"]))["op_type"]) == OpType.RECHARGE


def test_birthday_and_anniversary_plans_run_on_the_plan_machinery(world):
    eng, ms, now, (a, b, c) = world
    day = plans._tz_date(now[0], eng.rules.tz_offset_s)
    ms.update(b, {"birthday": f"1991-{day.month:02d}-{day.day:02d}"}, cid())
    eng.put_coupon_template(CouponTemplate(1, "cake", "fixed", value_fen=2_000), cid()).result()
    doc = campaigns.birthday_plan("birthday cake", {"kind": "filter", "stores": [], "levels": []},
                                  [{"kind": "coupon", "template_id": 1}])
    p = plans.create_plan(eng, doc, cid()).result().value
    run_id = campaigns.daily_run_id(p["plan_id"], now[0], eng.rules.tz_offset_s)
    assert run_id == f"plan{p['plan_id']}-{day.isoformat()}"
    run = plans.run_plan(eng, p["plan_id"], run_id, members=ms)
    assert run["reached"] == 1 and len(eng.coupons_of(2)) == 1
    # A year on (2026-09-21 -> 2027-09-21, no 29 February between): every card's
    # anniversary; a day later, nobody's.
    now[0] += 365 * 86_400
    ann = plans.create_plan(eng, campaigns.anniversary_plan(
        "anniversary", {"kind": "members", "member_ids": [a, b, c]},
        [{"kind": "points", "points": 20, "reason": "one year with us"}]), cid()).result().value
    trig = plans.get_plan(eng, ann["plan_id"])["trigger"]
    assert plans._tz_date(now[0], eng.rules.tz_offset_s).isoformat() == "2027-09-21"
    assert sorted(plans.trigger_members(eng, trig, now[0], ms).tolist()) == [a, b, c]
    assert plans.trigger_members(eng, trig, now[0] + 86_400, ms).tolist() == []
    run = plans.run_plan(eng, ann["plan_id"], "ann-2027", members=ms)
    assert run["reached"] == 3 and run["points"] == 60


def test_a_plans_time_limited_recharge_bonus(world):
    eng, _ms, now, (a, b, c) = world
    p = plans.create_plan(eng, {"name": "top up", "audience": {"kind": "members", "member_ids": [a, b]},
                                "actions": [{"kind": "recharge_bonus", "tiers": [[20_000, 1_000]],
                                             "days": 7, "budget_fen": 5_000}]}, cid()).result().value
    run = plans.run_plan(eng, p["plan_id"], "offer-1")
    assert run["reached"] == 2 and run["offers"] == 2
    bonus = {card: eng.card(card)["bonus_fen"] for card in (1, 2, 3)}
    now[0] += 86_400
    eng.recharge(1, 20_000, cid()).result()     # offered, in the days: 1,000
    eng.recharge(3, 20_000, cid()).result()     # not offered
    eng.recharge(2, 19_999, cid()).result()     # offered, below the tier
    now[0] += 7 * 86_400
    eng.recharge(2, 30_000, cid()).result()     # offered, after the days
    r = campaigns.settle_recharge_campaign(eng, "run:offer-1", cid()).result()
    assert r.code == Result.OK and (r.value["credited"], r.value["bonus_fen"]) == (1, 1_000)
    assert [eng.card(card)["bonus_fen"] - bonus[card] for card in (1, 2, 3)] == [1_000, 0, 0]
    assert campaigns.settle_recharge_campaign(eng, "run:offer-1", cid()).result().value["credited"] == 0
    with pytest.raises(campaigns.CampaignError):
        campaigns.settle_recharge_campaign(eng, "run:nope", cid())


def test_plans_skip_members_who_are_not_active(world):
    eng, ms, _now, (a, b, c) = world
    assert ms.freeze(c, cid()).member_id == c
    p = plans.create_plan(eng, {"name": "only active", "audience": {"kind": "members",
                                                                    "member_ids": [a, b, c]},
                                "actions": [{"kind": "points", "points": 1, "reason": "x"}]},
                          cid()).result().value
    run = plans.run_plan(eng, p["plan_id"], "active-only", members=ms)
    assert run["n_audience"] == 2 and run["reached"] == 2
    assert sorted(plans.run_done(eng, "active-only")["member"].tolist()) == [a, b]
