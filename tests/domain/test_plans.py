"""Targeted plans (core/domain/plans.py): the holdout's determinism and share, the
rounding of rates, audiences, runs in chunks that never grant twice (retried, resumed,
concurrent), budgets and quantities under concurrent runs, the follow-up plan on the
response of an earlier run, and the results."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
from common import cid
from engine_ops import client_op
from harness import tagged_op

from core import Engine, RulesConfig
from core.domain import notify, plans
from core.domain.members import MemberStore
from core.records import OP, OpType, Result
from core.rules import CouponTemplate

N = 60


def new_engine(path) -> Engine:
    eng = Engine(str(path), rules=RulesConfig())
    eng.put_coupon_template(CouponTemplate(1, "10 off", "fixed", value_fen=1_000), cid()).result()
    # Members 1..N, one card each (card 1000 + m); member 7 has a second, higher card.
    members = np.arange(1, N + 1, dtype=np.uint64)
    assert eng.issue_cards(1000 + members, cid(), member_ids=members).result().code == Result.OK
    assert eng.issue_cards([5000], cid(), member_ids=[7]).result().code == Result.OK
    for m in range(1, N + 1):
        eng.recharge(1000 + m, 100_000, cid()).result()
    return eng


@pytest.fixture
def eng(tmp_path):
    e = new_engine(tmp_path / "d")
    yield e
    e.close()


def plan_doc(**kw) -> dict:
    doc = {"name": "spring", "audience": {"kind": "members", "member_ids": list(range(1, N + 1))},
           "actions": [{"kind": "coupon", "template_id": 1}]}
    doc.update(kw)
    return doc


def create(eng, **kw) -> dict:
    r = plans.create_plan(eng, plan_doc(**kw), cid()).result()
    assert r.code == Result.OK, r
    return r.value


def swipe(eng, card, amount, coupons=()):
    ops = np.zeros(1, dtype=OP)
    ops["client_lo"] = int.from_bytes(cid()[:8], "big")
    ops["card_no"], ops["amount_fen"], ops["op_type"] = card, amount, OpType.SWIPE
    ops["coupons_n"] = len(coupons)
    res = eng.submit(ops, None, np.array(coupons, np.uint64) if coupons else None).result()
    assert res.codes[0] == Result.OK
    return res


# --- pure rules -------------------------------------------------------------------------


def test_holdout_is_deterministic_and_has_its_share():
    ids = np.arange(1, 200_001, dtype=np.uint64)
    a = plans.in_holdout(3, ids, 1_000)
    assert np.array_equal(a, plans.in_holdout(3, ids.copy(), 1_000))
    # The same member is in or out whatever list it is part of.
    assert np.array_equal(plans.in_holdout(3, ids[::7], 1_000), a[::7])
    share = int(np.count_nonzero(a)) * 10_000 // len(ids)
    assert 950 <= share <= 1_050, share           # 10% +- 0.5% over 200,000 members
    # Another plan draws another group; 0 bp holds out nobody.
    b = plans.in_holdout(4, ids, 1_000)
    assert not np.array_equal(a, b)
    overlap = int(np.count_nonzero(a & b))
    assert 1_500 <= overlap <= 2_500               # ~1% of 200,000: independent draws
    assert not plans.in_holdout(3, ids, 0).any()
    assert plans.in_holdout(3, ids, 9_999).sum() > 199_000
    # Bucket values are fixed for ever (a change would move members between groups).
    assert plans.holdout_bucket(1, np.array([1, 2, 3], np.uint64)).tolist() == \
        plans.holdout_bucket(1, np.array([1, 2, 3], np.uint64)).tolist()
    assert all(0 <= b < 10_000 for b in plans.holdout_bucket(9, ids[:100]).tolist())


def test_rates_and_scaling_round_explicitly():
    assert plans.rate_bp(1, 3) == 3_333            # down
    assert plans.rate_bp(2, 3) == 6_666            # down, not 6,667
    assert plans.rate_bp(-1, 3) == -3_334          # toward minus infinity
    assert plans.rate_bp(5, 0) == 0
    assert plans.scale_half_up(5, 1, 2) == 3       # 2.5 -> 3
    assert plans.scale_half_up(7, 1, 3) == 2       # 2.33 -> 2
    assert plans.scale_half_up(-5, 1, 2) == -3     # half away from zero
    assert plans.scale_half_up(100, 3, 0) == 0


def test_bad_plans_are_refused_with_a_reason(eng):
    for doc, reason in (({"name": ""}, "PLAN_INVALID"),
                        ({"trigger": {"kind": "rain"}}, "TRIGGER_INVALID"),
                        ({"audience": {"kind": "everyone"}}, "AUDIENCE_INVALID"),
                        ({"actions": []}, "ACTIONS_INVALID"),
                        ({"actions": [{"kind": "points", "points": 5}]}, "ACTIONS_INVALID"),
                        ({"holdout_bp": 10_000}, "PLAN_INVALID"),
                        ({"budget_fen": 1.5}, "PLAN_INVALID")):
        with pytest.raises(plans.PlanError) as e:
            plans.create_plan(eng, plan_doc(**doc), cid())
        assert e.value.reason == reason
    r = plans.create_plan(eng, plan_doc(actions=[{"kind": "coupon", "template_id": 9}]), cid()).result()
    assert (r.code, r.reason) == (Result.NOT_FOUND, "TEMPLATE_NOT_FOUND")
    assert plans.list_plans(eng) == []


# --- runs ----------------------------------------------------------------------------------


def test_a_run_grants_each_member_once_and_keeps_the_holdout_out(eng):
    p = create(eng, holdout_bp=2_000, actions=[
        {"kind": "coupon", "template_id": 1},
        {"kind": "points", "points": 50, "reason": "spring gift"},
        {"kind": "notice", "text": "Hello {member_id}, a gift on card {card_no} from {plan}"}])
    hold = plans.in_holdout(p["plan_id"], np.arange(1, N + 1, dtype=np.uint64), 2_000)
    run = plans.run_plan(eng, p["plan_id"], "r1", chunk=7)
    assert run["state"] == "done" and run["chunks_done"] == -(-run["n_target"] // 7)
    assert run["n_holdout"] == int(hold.sum()) and run["n_target"] == N - int(hold.sum())
    assert run["reached"] == run["n_target"] and run["points"] == 50 * run["n_target"]
    for m in range(1, N + 1):
        card = eng.card(1000 + m)
        coupons = eng.coupons_of(1000 + m)
        if hold[m - 1]:
            assert coupons == [] and card["points"] == 0
        else:
            assert len(coupons) == 1 and card["points"] == 50
    assert eng.coupons_of(5000) == []               # member 7's plan card is their lowest
    # Again, by another caller: the same run, nothing more.
    again = plans.run_plan(eng, p["plan_id"], "r1", chunk=7)
    assert again["reached"] == run["reached"]
    assert sum(len(eng.coupons_of(1000 + m)) for m in range(1, N + 1)) == run["n_target"]
    notices, _ = notify.pull(eng, 0, 10_000)
    mine = [n for n in notices if n.get("kind") == "plan"]
    assert len(mine) == run["n_target"]
    first = min(mine, key=lambda n: n["member_id"])
    assert first["text"] == f"Hello {first['member_id']}, a gift on card " \
                            f"{1000 + first['member_id']} from spring"
    assert plans.get_plan(eng, p["plan_id"])["spent"]["coupons"] == run["n_target"]


def test_every_chunk_is_audited_and_journalled(eng):
    p = create(eng)
    plans.run_plan(eng, p["plan_id"], "audited", chunk=25)
    with eng.store.read() as txn:
        events = [json.loads(v) for _k, v in txn.cursor(db=eng.store.db["events"])]
    ops = [e["op"] for e in events]
    assert ops.count("PLAN_RUN_START") == 1 and ops.count("PLAN_RUN_CHUNK") == 3
    chunk = [e for e in events if e["op"] == "PLAN_RUN_CHUNK"][0]
    assert chunk["detail"]["run_id"] == "audited" and chunk["detail"]["members"] == 25


def test_a_run_stopped_midway_resumes_and_grants_exactly_once(eng):
    p = create(eng)
    part = plans.run_plan(eng, p["plan_id"], "midway", chunk=10, max_chunks=2)
    assert part["state"] == "running" and part["cursor"] == 20
    # A retried chunk (same client id: the step it was sent for) replays, applies nothing.
    r = plans.step_run(eng, "midway", step=1).result()
    assert r.replayed
    done = plans.resume_run(eng, "midway", chunk=10, pause_s=0.001)
    assert done["state"] == "done" and done["reached"] == N
    assert all(len(eng.coupons_of(1000 + m)) == 1 for m in range(1, N + 1))
    assert plans.step_run(eng, "midway", step=6).result().reason == "RUN_DONE"


def test_two_drivers_of_one_run_and_concurrent_runs_share_the_budget(eng):
    # Budget for 25 coupons of 10 yuan; quantity 30: the budget binds.
    p = create(eng, budget_fen=25_000, quantity=30)
    q = create(eng, budget_fen=25_000, quantity=30,
               audience={"kind": "members", "member_ids": list(range(1, N + 1))})
    errors = []

    def drive(plan_id, run_id):
        try:
            plans.run_plan(eng, plan_id, run_id, chunk=4)
        except Exception as e:  # noqa: BLE001 (collected and asserted below)
            errors.append(e)

    threads = [threading.Thread(target=drive, args=args) for args in
               ((p["plan_id"], "a"), (p["plan_id"], "a"), (p["plan_id"], "b"),
                (q["plan_id"], "c"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    spent = plans.get_plan(eng, p["plan_id"])["spent"]
    assert spent["coupons"] == 25 and spent["face_fen"] == 25_000
    ra, rb = plans.get_run(eng, "a"), plans.get_run(eng, "b")
    assert ra["coupons"] + rb["coupons"] == 25
    assert ra["no_budget"] + rb["no_budget"] == 2 * N - 25
    assert plans.get_run(eng, "c")["coupons"] == 25
    total = sum(len(eng.coupons_of(1000 + m)) for m in range(1, N + 1))
    assert total == 50


def test_the_templates_own_quantity_binds_too(eng):
    eng.put_coupon_template(CouponTemplate(2, "gift", "fixed", value_fen=300, total_quantity=11),
                            cid()).result()
    p = create(eng, actions=[{"kind": "coupon", "template_id": 2}])
    run = plans.run_plan(eng, p["plan_id"], "tq", chunk=8)
    assert run["coupons"] == 11 and run["no_budget"] == N - 11 and run["state"] == "done"


def test_a_paused_plan_stops_its_run_and_resumes(eng):
    p = create(eng)
    plans.run_plan(eng, p["plan_id"], "pz", chunk=10, max_chunks=1)
    assert plans.set_plan_status(eng, p["plan_id"], "paused", cid()).result().code == Result.OK
    run = plans.resume_run(eng, "pz", chunk=10)
    assert run["state"] == "paused" and run["cursor"] == 10
    with pytest.raises(plans.PlanError) as e:
        plans.run_plan(eng, p["plan_id"], "other", chunk=10)
    assert e.value.reason == "PLAN_PAUSED"
    plans.set_plan_status(eng, p["plan_id"], "active", cid()).result()
    assert plans.resume_run(eng, "pz", chunk=10)["state"] == "done"


def test_results_and_the_follow_up_plan_on_the_response(eng):
    p = create(eng, holdout_bp=3_000, window_days=7)
    run = plans.run_plan(eng, p["plan_id"], "first", chunk=16)
    hold = plans.run_list(eng, "first", b"h")
    done = plans.run_done(eng, "first")
    # Five reached members redeem their coupon on a 50-yuan swipe; two holdout members
    # spend 30 yuan each.
    redeemers = sorted(done["member"].tolist())[:5]
    for m in redeemers:
        row = done[done["member"] == m][0]
        swipe(eng, int(row["card"]), 5_000, [int(row["coupon_id"])])
    for m in hold["member"][:2].tolist():
        swipe(eng, 1000 + m, 3_000)
    res = plans.results(eng, "first")
    n_r, n_h = run["reached"], len(hold)
    assert res["reached"] == n_r and res["holdout"] == n_h and res["redeemed"] == 5
    assert res["redemption_rate_bp"] == 5 * 10_000 // n_r
    assert res["reached_sales_fen"] == 5 * 4_000 and res["reached_visits"] == 5
    assert res["holdout_sales_fen"] == 6_000 and res["holdout_visits"] == 2
    assert res["face_redeemed_fen"] == 5_000 and res["cost_fen"] == 5_000
    scaled = (2 * 6_000 * n_r + n_h) // (2 * n_h)
    assert res["holdout_sales_scaled_fen"] == scaled
    assert res["incremental_sales_fen"] == 20_000 - scaled
    assert res["roi_bp"] == (20_000 - scaled - 5_000) * 10_000 // 5_000
    # The follow-up: reached and did not redeem.
    f = create(eng, name="reminder", audience={"kind": "response", "run_id": "first",
                                               "redeemed": False},
               actions=[{"kind": "points", "points": 5, "reason": "come back"}])
    fu = plans.run_plan(eng, f["plan_id"], "second", chunk=16)
    got = set(plans.run_done(eng, "second")["member"].tolist())
    assert got == set(done["member"].tolist()) - set(redeemers)
    assert fu["reached"] == n_r - 5
    g = create(eng, name="thanks", audience={"kind": "response", "run_id": "first",
                                             "redeemed": True},
               actions=[{"kind": "points", "points": 5, "reason": "thanks"}])
    plans.run_plan(eng, g["plan_id"], "third")
    assert set(plans.run_done(eng, "third")["member"].tolist()) == set(redeemers)


def test_event_triggers_pick_their_members(tmp_path):
    now = [1_790_000_000]
    eng = Engine(str(tmp_path / "d"), clock=lambda: now[0])
    ms = MemberStore(eng, key=bytes(32))
    day = plans._tz_date(now[0] + 3 * 86_400, eng.rules.tz_offset_s)
    ids = []
    for i, (bday, tags) in enumerate(((f"1990-{day.month:02d}-{day.day:02d}", ["vip"]),
                                      ("1985-01-01", ["vip"]), ("1970-06-15", []))):
        r = ms.create({"name": f"m{i}", "phone": f"1380000000{i}", "birthday": bday,
                       "tags": tags, "home_store_id": 11 + i}, cid())
        ids.append(r.member_id)
    for i, m in enumerate(ids):
        eng.issue_cards([100 + i], cid(), member_ids=[m]).result()
    eng.put_coupon_template(CouponTemplate(1, "gift", "fixed", value_fen=100), cid()).result()
    all_ids = {"kind": "members", "member_ids": ids}

    def picked(trigger, audience=all_ids):
        return plans.trigger_members(eng, plans.validate_plan(
            {"name": "x", "trigger": trigger, "audience": audience,
             "actions": [{"kind": "coupon", "template_id": 1}]})["trigger"], now[0], ms)

    assert picked({"kind": "birthday", "days": 3}).tolist() == [ids[0]]
    assert picked({"kind": "birthday", "days": 4}).tolist() == []
    assert plans.resolve_audience(eng, {"kind": "tag", "tag": "vip"}, ms).tolist() == ids[:2]
    assert plans.resolve_audience(eng, {"kind": "filter", "stores": [12, 13], "levels": []},
                                  ms).tolist() == ids[1:]
    # A swipe 10 days ago on card 100: "no visit for 7 days" picks it, not the others
    # (they never visited).
    now[0] -= 10 * 86_400
    eng.recharge(100, 10_000, cid()).result()
    eng.submit(*tagged_op("old", 100, 1_000)).result()
    eng.recharge(101, 5_000, cid()).result()
    now[0] += 10 * 86_400
    assert picked({"kind": "no_visit", "days": 7}).tolist() == [ids[0]]
    assert picked({"kind": "first_recharge", "days": 30}).tolist() == ids[:2]
    assert picked({"kind": "first_recharge", "days": 5}).tolist() == []
    # 10,000 yuan of swipes take card 101 to silver (the default levels): a level up.
    assert picked({"kind": "level_up", "days": 30}).tolist() == []
    eng.recharge(101, 1_000_000, cid()).result()
    eng.submit(*tagged_op("up", 101, 1_000_000)).result()
    assert eng.card(101)["level"] == 1
    assert picked({"kind": "level_up", "days": 30}).tolist() == [ids[1]]
    eng.issue_coupons(1, [102], cid()).result()
    now[0] += 8 * 86_400
    assert picked({"kind": "coupon_unused", "days": 7}).tolist() == [ids[2]]
    # A birthday plan run through the machinery; its cooldown keeps a second run out.
    now[0] -= 8 * 86_400
    p = plans.create_plan(eng, {"name": "bday", "trigger": {"kind": "birthday", "days": 3},
                                "audience": all_ids,
                                "actions": [{"kind": "coupon", "template_id": 1}]}, cid()).result().value
    run = plans.run_plan(eng, p["plan_id"], "bday-1", members=ms)
    assert run["reached"] == 1 and len(eng.coupons_of(100)) == 1
    again = plans.run_plan(eng, p["plan_id"], "bday-2", members=ms)
    assert again["n_cooldown"] == 1 and again["reached"] == 0
    eng.close()


def test_a_segment_audience_is_the_saved_segments_members(tmp_path):
    """A plan aimed at a saved segment (core.domain.segments) reaches exactly its
    members: a profile condition (home store) needs the member store, and a run grants
    each of them (outside the holdout) one coupon, once."""
    from core.domain import segments as seg

    eng = Engine(str(tmp_path / "d"))
    ms = MemberStore(eng, key=bytes(32))
    ids = [ms.create({"name": f"m{i}", "phone": f"1390000000{i}", "home_store_id": 11 + i % 2},
                     cid()).member_id for i in range(6)]
    for i, m in enumerate(ids):
        eng.issue_cards([300 + i], cid(), member_ids=[m]).result()
    eng.put_coupon_template(CouponTemplate(1, "gift", "fixed", value_fen=100), cid()).result()
    seg.segments_of(ms).define("store 12", {"field": "home_store", "op": "eq", "value": 12}, cid())
    want = [m for i, m in enumerate(ids) if i % 2 == 1]
    audience = {"kind": "segment", "segment": "store 12"}
    assert plans.resolve_audience(eng, audience, ms).tolist() == want
    r = plans.create_plan(eng, {"name": "seg", "audience": audience,
                                "actions": [{"kind": "coupon", "template_id": 1}]}, cid()).result()
    assert r.code == Result.OK, r
    run = plans.run_plan(eng, r.value["plan_id"], "seg-1", members=ms)
    assert run["state"] == "done" and run["n_target"] + run["n_holdout"] == len(want)
    granted = [ids[i] for i in range(6) if eng.coupons_of(300 + i)]
    assert len(granted) == run["reached"] == run["n_target"] and set(granted) <= set(want)
    again = plans.run_plan(eng, r.value["plan_id"], "seg-1", members=ms)
    assert again["reached"] == run["reached"]
    assert sum(len(eng.coupons_of(300 + i)) for i in range(6)) == run["reached"]
    with pytest.raises(plans.PlanError, match="no segment 'no such'") as ei:
        plans.resolve_audience(eng, {"kind": "segment", "segment": "no such"}, ms)
    assert ei.value.reason == "SEGMENT_INVALID"
    eng.close()


def test_a_schedule_plans_run_id_is_its_period(eng):
    p = create(eng, trigger={"kind": "schedule", "every_days": 7, "start_s": 1_000_000})
    assert plans.scheduled_run_id(p, 1_000_000) == f"plan{p['plan_id']}-p0"
    assert plans.scheduled_run_id(p, 1_000_000 + 7 * 86_400 - 1) == f"plan{p['plan_id']}-p0"
    assert plans.scheduled_run_id(p, 1_000_000 + 7 * 86_400) == f"plan{p['plan_id']}-p1"
    once = create(eng, trigger={"kind": "schedule"})
    assert plans.scheduled_run_id(once, 5_000_000) == f"plan{once['plan_id']}-p0"
    # Two timers firing in one period start one run.
    now = 1_000_000 + 3_000 * 7 * 86_400 + 100   # 100 s into a period
    a = plans.run_plan(eng, p["plan_id"], plans.scheduled_run_id(p, now))
    b = plans.run_plan(eng, p["plan_id"], plans.scheduled_run_id(p, now + 60))
    assert a["run_id"] == b["run_id"] and sum(len(eng.coupons_of(1000 + m)) for m in range(1, N + 1)) == N


# --- the member-price action ------------------------------------------------------------


def test_a_member_price_is_set_on_reached_cards_and_applied_exactly_at_the_swipe(tmp_path):
    import reference

    now = [1_750_000_000]
    eng = Engine(str(tmp_path / "mp"), rules=RulesConfig(), clock=lambda: now[0])
    try:
        members = np.arange(1, 21, dtype=np.uint64)
        assert eng.issue_cards(1000 + members, cid(), member_ids=members).result().code == Result.OK
        for m in range(1, 21):
            eng.recharge(1000 + m, 100_000, cid()).result()
        doc = {"name": "price week", "holdout_bp": 3_000,
               "audience": {"kind": "members", "member_ids": list(range(1, 21))},
               "actions": [{"kind": "member_price", "price_bp": 8_850, "days": 7}]}
        p = plans.create_plan(eng, doc, cid()).result().value
        hold = plans.in_holdout(p["plan_id"], members, 3_000)
        assert 0 < hold.sum() < 20
        run = plans.run_plan(eng, p["plan_id"], "price-1", chunk=4)
        assert run["reached"] == run["n_target"] == 20 - int(hold.sum())
        assert run["prices"] == run["n_target"]
        until = now[0] + 7 * 86_400
        rules = eng.rules
        for m in range(1, 21):
            card = eng.card(1000 + m)
            if hold[m - 1]:
                assert (card["plan_price_bp"], card["plan_price_until_s"]) == (0, 0)
            else:
                assert (card["plan_price_bp"], card["plan_price_plan"], card["plan_price_until_s"]) \
                    == (8_850, p["plan_id"], until)
        # Retried and resumed: nothing journalled again.
        recs = eng.journal(1, 10_000)
        priced = recs[recs["op_type"] == int(plans.CampaignOp.PLAN_MEMBER_PRICE)]
        assert len(priced) == run["n_target"] and set(priced["amount_fen"].tolist()) == {8_850}
        plans.run_plan(eng, p["plan_id"], "price-1", chunk=4)
        assert plans.step_run(eng, "price-1", step=0).result().replayed
        recs = eng.journal(1, 10_000)
        assert int((recs["op_type"] == int(plans.CampaignOp.PLAN_MEMBER_PRICE)).sum()) == run["n_target"]
        reached = int(members[~hold][0]) + 1000
        held = int(members[hold][0]) + 1000
        # In the window: 10,001 fen at 88.50% is 8,850.885 -> 8,851 half up; the holdout
        # pays the level's price (no discount at level 0). The reference says the same.
        for card_no, amount in ((reached, 10_001), (held, 10_001), (reached, 999), (reached, 1)):
            before = eng.card(card_no)
            res = swipe(eng, card_no, amount)
            rec = eng.journal_record(int(res.seq[0]))
            want = reference.line_payable(rules, before["level"], {"sku": 0, "qty": 1, "amount_fen": amount},
                                          True, reference.plan_price_bp(before, now[0]))
            assert int(rec["payable_fen"]) == want
        assert reference.payable_fen(10_001, 8_850, rules.rounding) == 8_851
        assert int(eng.journal_record(int(swipe(eng, reached, 10_001).seq[0]))["payable_fen"]) == 8_851
        assert int(eng.journal_record(int(swipe(eng, held, 10_001).seq[0]))["payable_fen"]) == 10_001
        # The last second of the window still has the price; its end does not.
        now[0] = until - 1
        assert int(eng.journal_record(int(swipe(eng, reached, 10_001).seq[0]))["payable_fen"]) == 8_851
        now[0] = until
        assert int(eng.journal_record(int(swipe(eng, reached, 10_001).seq[0]))["payable_fen"]) == 10_001
    finally:
        eng.close()


def test_a_better_running_member_price_is_kept_and_an_ended_one_replaced():
    w = plans.member_price_wins
    assert w(0, 0, 9_000, 100, 50)                   # none yet
    assert w(8_000, 40, 9_000, 100, 50)              # the old one ended
    assert not w(8_000, 60, 9_000, 100, 50)          # a lower running price stays
    assert w(9_000, 60, 8_000, 100, 50)              # a lower price wins
    assert w(9_000, 60, 9_000, 100, 50) and not w(9_000, 100, 9_000, 60, 50)  # the later end


def test_a_member_price_action_is_validated(eng):
    for act in ({"kind": "member_price", "price_bp": 999, "days": 7},
                {"kind": "member_price", "price_bp": 10_000, "days": 7},
                {"kind": "member_price", "price_bp": 9_000, "days": 0},
                {"kind": "member_price", "price_bp": 9_000}):
        with pytest.raises(plans.PlanError) as e:
            plans.validate_plan(plan_doc(actions=[act]))
        assert e.value.reason == "PLAN_INVALID"


def test_results_count_what_the_member_price_gave_away_exactly(tmp_path):
    """cost_fen includes the member price: per priced swipe, the level's price less the
    plan's, recomputed from the journal with the swipe's rules and lines; a swipe where
    the level's discount is the better one, the holdout's swipes, a refunded swipe and
    a swipe after the price ended give nothing."""
    from core.records import ITEM
    from core.rules import LevelRule, default_levels

    now = [1_750_000_000]
    levels = (LevelRule("regular", discount_bp=9_500), *default_levels()[1:])
    rules = RulesConfig(levels=levels, member_prices=((77, (500, 450, 400)),))
    eng = Engine(str(tmp_path / "mpc"), rules=rules, clock=lambda: now[0])
    try:
        members = np.arange(1, 21, dtype=np.uint64)
        assert eng.issue_cards(1000 + members, cid(), member_ids=members).result().code == Result.OK
        for m in range(1, 21):
            eng.recharge(1000 + m, 1_000_000, cid()).result()

        def op(card, amount, op_type=OpType.SWIPE, lines=(), ref=None):
            client = cid()
            ops = client_op(card, amount, op_type, client, ref)
            items = None
            if lines:
                items = np.zeros(len(lines), dtype=ITEM)
                items["sku"], items["amount_fen"], items["qty"] = zip(*lines, strict=True)
                ops["items_n"] = len(lines)
            res = eng.submit(ops, items).result()
            assert res.codes[0] == Result.OK
            return client, int(eng.journal_record(int(res.seq[0]))["payable_fen"])

        doc = {"name": "price week", "holdout_bp": 3_000,
               "audience": {"kind": "members", "member_ids": list(range(1, 11))},
               "actions": [{"kind": "member_price", "price_bp": 8_850, "days": 7}]}
        p = plans.create_plan(eng, doc, cid()).result().value
        hold = plans.in_holdout(p["plan_id"], members[:10], 3_000)
        assert 0 < hold.sum() < 10
        plans.run_plan(eng, p["plan_id"], "mp-cost", chunk=3)
        # A second plan whose price (99.00%) is above the level's (95.00%): it is set on
        # the card but the swipe keeps the level's discount.
        doc2 = dict(doc, name="weak price", holdout_bp=0,
                    audience={"kind": "members", "member_ids": [15]},
                    actions=[{"kind": "member_price", "price_bp": 9_900, "days": 7}])
        p2 = plans.create_plan(eng, doc2, cid()).result().value
        plans.run_plan(eng, p2["plan_id"], "mp-weak")
        reached = [1000 + int(m) for m in members[:10][~hold]]
        assert len(reached) >= 4
        held = 1000 + int(members[:10][hold][0])
        # 10,001 fen: 8,850.885 -> 8,851 at the plan's price, 9,500.95 -> 9,501 at the
        # level's: 650 given.
        assert op(reached[0], 10_001)[1] == 8_851
        # Lines: sku 77 x2 at 1,200 pays its member price 2 x 500 either way; the plain
        # line of 1,001 pays 885.885 -> 886 instead of 950.95 -> 951: 65 given.
        assert op(reached[1], 2_201, lines=((77, 1_200, 2), (0, 1_001, 1)))[1] == 1_886
        # 2,000 -> 1,770 instead of 1,900 (130 given), then refunded in full in two
        # parts: nothing given; another refunded half (885 of 1,770): 65 given.
        sale, paid = op(reached[2], 2_000)
        assert paid == 1_770
        op(reached[2], 1_000, OpType.REFUND, ref=sale)
        op(reached[2], 770, OpType.REFUND, ref=sale)
        sale, _ = op(reached[3], 2_000)
        op(reached[3], 885, OpType.REFUND, ref=sale)
        assert op(held, 10_001)[1] == 9_501                 # the holdout: the level's price
        assert op(1015, 10_001)[1] == 9_501                 # plan 2: the level's is better
        now[0] += 7 * 86_400                                # the price has ended
        assert op(reached[0], 10_001)[1] == 9_501
        res = plans.results(eng, "mp-cost")
        assert (res["member_price_fen"], res["member_price_swipes"]) == (650 + 65 + 65, 3)
        assert res["cost_fen"] == res["face_redeemed_fen"] + res["points_cost_fen"] + 780 == 780
        assert res["roi_bp"] == plans.rate_bp(res["incremental_sales_fen"] - 780, 780)
        weak = plans.results(eng, "mp-weak")
        assert (weak["member_price_fen"], weak["member_price_swipes"], weak["cost_fen"]) == (0, 0, 0)
    finally:
        eng.close()


def test_unique_ids_is_np_unique_by_a_sort():
    """The run's id sets (plans.unique_ids): np.unique's sorted distinct uint64 values,
    for repeats, any order, the top of the range, one id and none."""
    rng = np.random.default_rng(3)
    for ids in (rng.integers(1, 50, 1_000), rng.permutation(10_000),
                np.array([2**64 - 1, 0, 2**64 - 1], dtype=np.uint64), [7], []):
        got = plans.unique_ids(ids)
        want = np.unique(np.asarray(ids, dtype=np.uint64))
        assert got.dtype == np.uint64 and np.array_equal(got, want)
