"""CampaignService through the real server on loopback: marketing creates and runs
plans (a retried StartRun finishes the same run), store managers see only their
store's plans, other roles are refused, bad input is INVALID_ARGUMENT with a reason;
results; sign-in once a day; referral settlement."""

from __future__ import annotations

import json

import grpc
import pytest
from common import cid
from harness import tagged_op
from rpc_chain import operators, region_with_stores
from test_admin_rpc import Env, bootstrap, failure

from core.records import Result
from core.rules import CouponTemplate
from server.mms_pb import admin_pb2, campaign_pb2, campaign_pb2_grpc

N = 30


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    e = Env(str(tmp_path_factory.mktemp("campaigns")))
    bootstrap(e)
    region_with_stores(e, (11, 12), store_name="S{}")
    operators(e, (("mkt", "marketing", 0), ("mgr11", "store_manager", 11),
                  ("cash11", "cashier", 11), ("fin", "finance", 0)))
    eng = e.engine
    eng.put_coupon_template(CouponTemplate(1, "5 off", "fixed", value_fen=500), cid()).result()
    e.ids = []
    for i in range(N):
        prof = {"name": f"m{i}", "phone": f"1390000{i:04d}", "home_store_id": 11 + i % 2,
                "tags": ["vip"] if i < 20 else []}
        if i == N - 1:
            prof["referrer_id"] = e.ids[0]
        m = e.members.create(prof, cid()).member_id
        e.ids.append(m)
        assert eng.issue_cards([100 + i], cid(), member_ids=[m]).result().code == Result.OK
        eng.recharge(100 + i, 20_000, cid()).result()
    e.camp = campaign_pb2_grpc.CampaignServiceStub(e.channel)
    yield e
    e.close()


def call(env, who, method, req):
    return getattr(env.camp, method)(req, metadata=env.md(who), timeout=60)


def create(env, who="mkt", **doc):
    plan = {"name": "vip spring", "audience": {"kind": "tag", "tag": "vip"},
            "actions": [{"kind": "coupon", "template_id": 1}], "holdout_bp": 2_000}
    plan.update(doc)
    return call(env, who, "CreatePlan", campaign_pb2.CreatePlanRequest(
        client_id=cid(), plan_json=json.dumps(plan))).plan


def test_marketing_creates_and_runs_a_plan_and_reads_its_results(env):
    plan = create(env)
    assert plan.plan_id >= 1 and plan.status == "active"
    # Started without waiting (the server drives it), then started again with wait: the
    # same run, finished once, whoever drives which chunk.
    first = call(env, "mkt", "StartRun", campaign_pb2.StartRunRequest(
        client_id=cid(), plan_id=plan.plan_id, run_id="spring-1", chunk=3)).run
    assert first.run_id == "spring-1" and first.targets + first.holdout == 20
    run = call(env, "mkt", "StartRun", campaign_pb2.StartRunRequest(
        client_id=cid(), plan_id=plan.plan_id, run_id="spring-1", chunk=3, wait=True)).run
    assert run.state == "done" and run.reached == run.targets == run.coupons
    issued = sum(len(env.engine.coupons_of(100 + i)) for i in range(N))
    assert issued == run.targets
    assert call(env, "fin", "GetRun", campaign_pb2.GetRunRequest(run_id="spring-1")).run == run
    res = call(env, "fin", "RunResults", campaign_pb2.GetRunRequest(run_id="spring-1"))
    assert (res.reached, res.holdout, res.redeemed, res.cost_fen) == (run.targets, run.holdout, 0, 0)
    got = json.loads(call(env, "fin", "GetPlan", campaign_pb2.GetPlanRequest(
        plan_id=plan.plan_id)).plan.plan_json)
    assert got["spent"]["coupons"] == run.targets and got["spent"]["face_fen"] == 500 * run.targets


def test_roles_and_store_scope(env):
    chain_plan = create(env, name="chain-wide")
    store_plan = create(env, name="store 11 only", store_id=11)
    for who in ("cash11", "mgr11", "fin"):
        code, reason = failure(create, env, who)
        assert code == grpc.StatusCode.PERMISSION_DENIED, who
    mine = call(env, "mgr11", "ListPlans", campaign_pb2.ListPlansRequest()).plans
    assert {p.store_id for p in mine} == {11}
    assert store_plan.plan_id in {p.plan_id for p in mine}
    assert chain_plan.plan_id not in {p.plan_id for p in mine}
    code, _ = failure(call, env, "mgr11", "GetPlan", campaign_pb2.GetPlanRequest(
        plan_id=chain_plan.plan_id))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    assert call(env, "mgr11", "GetPlan", campaign_pb2.GetPlanRequest(
        plan_id=store_plan.plan_id)).plan.name == "store 11 only"
    code, reason = failure(call, env, "mgr11", "ListPlans", campaign_pb2.ListPlansRequest(store_id=12))
    assert (code, reason) == (grpc.StatusCode.PERMISSION_DENIED, "OTHER_STORE")
    code, _ = failure(call, env, "cash11", "StartRun", campaign_pb2.StartRunRequest(
        client_id=cid(), plan_id=store_plan.plan_id, run_id="x"))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    hq = call(env, "fin", "ListPlans", campaign_pb2.ListPlansRequest()).plans
    assert {chain_plan.plan_id, store_plan.plan_id} <= {p.plan_id for p in hq}


def test_bad_input_has_a_reason_and_changes_nothing(env):
    before = len(call(env, "mkt", "ListPlans", campaign_pb2.ListPlansRequest()).plans)
    for text, reason in (("{", "JSON_INVALID"), ("[]", "JSON_INVALID"),
                         (json.dumps({"name": "x", "audience": {"kind": "tag", "tag": "v"},
                                      "actions": []}), "ACTIONS_INVALID")):
        code, got = failure(call, env, "mkt", "CreatePlan", campaign_pb2.CreatePlanRequest(
            client_id=cid(), plan_json=text))
        assert (code, got) == (grpc.StatusCode.INVALID_ARGUMENT, reason)
    code, got = failure(call, env, "mkt", "CreatePlan", campaign_pb2.CreatePlanRequest(
        client_id=b"short", plan_json="{}"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    code, got = failure(call, env, "mkt", "GetRun", campaign_pb2.GetRunRequest(run_id="nope"))
    assert (code, got) == (grpc.StatusCode.NOT_FOUND, "RUN_NOT_FOUND")
    code, got = failure(call, env, "mkt", "StartRun", campaign_pb2.StartRunRequest(
        client_id=cid(), plan_id=999, run_id="r"))
    assert (code, got) == (grpc.StatusCode.NOT_FOUND, "PLAN_NOT_FOUND")
    assert len(call(env, "mkt", "ListPlans", campaign_pb2.ListPlansRequest()).plans) == before
    assert failure(env.camp.ListPlans, campaign_pb2.ListPlansRequest())[0] == \
        grpc.StatusCode.UNAUTHENTICATED


def test_paused_plan_and_follow_up(env):
    plan = create(env, name="to pause", audience={"kind": "members", "member_ids": env.ids[:6]},
                  holdout_bp=0)
    call(env, "mkt", "PausePlan", campaign_pb2.PausePlanRequest(client_id=cid(), plan_id=plan.plan_id,
                                                                paused=True))
    code, reason = failure(call, env, "mkt", "StartRun", campaign_pb2.StartRunRequest(
        client_id=cid(), plan_id=plan.plan_id, run_id="paused-1", wait=True))
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "PLAN_PAUSED")
    call(env, "mkt", "PausePlan", campaign_pb2.PausePlanRequest(client_id=cid(), plan_id=plan.plan_id))
    run = call(env, "mkt", "StartRun", campaign_pb2.StartRunRequest(
        client_id=cid(), plan_id=plan.plan_id, run_id="paused-1", wait=True)).run
    assert run.reached == 6
    follow = create(env, name="follow-up", holdout_bp=0,
                    audience={"kind": "response", "run_id": "paused-1", "redeemed": False},
                    actions=[{"kind": "points", "points": 3, "reason": "reminder"}])
    fu = call(env, "mkt", "StartRun", campaign_pb2.StartRunRequest(
        client_id=cid(), plan_id=follow.plan_id, run_id="follow-1", wait=True)).run
    assert fu.reached == 6 and fu.points == 18


def test_sign_in_and_referrals(env):
    code, reason = failure(call, env, "cash11", "SignIn", campaign_pb2.SignInRequest(
        client_id=cid(), card_no=100))
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "CAMPAIGN_OFF")
    call(env, "mkt", "PutCampaign", campaign_pb2.PutCampaignRequest(
        client_id=cid(), kind="sign_in", config_json=json.dumps({"points": 7})))
    before = env.engine.card(100)["points"]
    r = call(env, "cash11", "SignIn", campaign_pb2.SignInRequest(client_id=cid(), card_no=100))
    assert r.points == 7 and r.card_points == before + 7 and len(r.day) == 10
    code, reason = failure(call, env, "cash11", "SignIn", campaign_pb2.SignInRequest(
        client_id=cid(), card_no=100))
    assert (code, reason) == (grpc.StatusCode.ALREADY_EXISTS, "SIGNED_IN_TODAY")
    # Card 101's member is of store 12: not the cashier's.
    code, _ = failure(call, env, "cash11", "SignIn", campaign_pb2.SignInRequest(
        client_id=cid(), card_no=101))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    call(env, "mkt", "PutCampaign", campaign_pb2.PutCampaignRequest(
        client_id=cid(), kind="referral", config_json=json.dumps({"points": 50})))
    assert env.engine.submit(*tagged_op("ref-swipe", 100 + N - 1, 1_000)).result().codes[0] == Result.OK
    before = env.engine.card(100)["points"]
    total = 0
    more = True
    while more:
        s = call(env, "mkt", "SettleReferrals", campaign_pb2.SettleRequest(client_id=cid()))
        total += s.count
        more = s.more
    assert total == 1 and env.engine.card(100)["points"] == before + 50
    code, reason = failure(call, env, "mkt", "PutCampaign", campaign_pb2.PutCampaignRequest(
        client_id=cid(), kind="weather", config_json="{}"))
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "CAMPAIGN_INVALID")


def test_a_plan_aimed_at_a_saved_segment_reaches_its_members(env):
    """Marketing saves a segment (SegmentService) and aims a plan at it by name: the run
    targets exactly the segment's members (here: enrolled at store 12), less the holdout."""
    from server.mms_pb import segment_pb2, segment_pb2_grpc

    seg = segment_pb2_grpc.SegmentServiceStub(env.channel)
    seg.DefineSegment(segment_pb2.DefineSegmentRequest(
        client_id=cid(), name="store twelve",
        definition_json=json.dumps({"field": "home_store", "op": "eq", "value": 12})),
        metadata=env.md("mkt"), timeout=60)
    plan = create(env, name="store 12 gift", audience={"kind": "segment", "segment": "store twelve"})
    run = call(env, "mkt", "StartRun", campaign_pb2.StartRunRequest(
        client_id=cid(), plan_id=plan.plan_id, run_id="seg-12", wait=True)).run
    in_segment = sum(1 for i in range(N) if i % 2 == 1)
    assert run.state == "done" and run.targets + run.holdout == in_segment
    assert run.reached == run.targets
    missing = create(env, name="nowhere", audience={"kind": "segment", "segment": "no such"})
    code, reason = failure(lambda: call(env, "mkt", "StartRun", campaign_pb2.StartRunRequest(
        client_id=cid(), plan_id=missing.plan_id, run_id="seg-none", wait=True)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and reason == "SEGMENT_INVALID"


def test_a_member_price_plan_prices_the_reached_members_swipes_at_the_till(env):
    from server.mms_pb import pos_pb2

    till = env.call("mgr11", "CreateNode", admin_pb2.CreateNodeRequest(
        client_id=cid(), kind=admin_pb2.NODE_KIND_TERMINAL, parent_id=11, name="mp till")).node
    tok = env.call("mgr11", "IssueTerminalToken", admin_pb2.IssueTerminalTokenRequest(
        client_id=cid(), terminal_id=till.node_id)).token
    till_md = (("authorization", f"Bearer {tok}"),)
    plan = create(env, name="price week", audience={"kind": "members", "member_ids": env.ids[20:26]},
                  actions=[{"kind": "member_price", "price_bp": 9_001, "days": 3}], holdout_bp=0)
    run = call(env, "mkt", "StartRun", campaign_pb2.StartRunRequest(
        client_id=cid(), plan_id=plan.plan_id, run_id="price-rpc", chunk=2, wait=True)).run
    assert run.state == "done" and run.reached == run.targets == 6

    def pay(card_no, fen):
        return env.pos.Swipe(pos_pb2.SwipeRequest(client_id=cid(), card_no=card_no, amount_fen=fen,
                                                  store_id=11), metadata=till_md, timeout=30).result

    # 1,005 fen at 90.01% is 904.6005 -> 905 half up; card 100 (not in the plan) pays 1,005.
    got = pay(120, 1_005)
    assert got.code == Result.OK and (got.payable_fen, got.discount_fen) == (905, 100)
    assert pay(100, 1_005).payable_fen == 1_005
    card = env.engine.card(120)
    assert (card["plan_price_bp"], card["plan_price_plan"]) == (9_001, plan.plan_id)
    shown = env.pos.GetCard(pos_pb2.GetCardRequest(card_no=120), metadata=till_md, timeout=30).card
    assert (shown.plan_price_bp, shown.plan_price_plan, shown.plan_price_until_s) == (
        9_001, plan.plan_id, card["plan_price_until_s"])
    assert card["plan_price_until_s"] > 0
    # The run's results count the priced members as reached, and what the price gave
    # away (1,005 at the level's price, 905 at the plan's: 100 fen) in the cost.
    res = call(env, "mkt", "RunResults", campaign_pb2.GetRunRequest(run_id="price-rpc"))
    assert res.reached == 6 and res.reached_visits == 1
    assert (res.member_price_fen, res.member_price_swipes) == (100, 1)
    assert res.cost_fen == res.face_redeemed_fen + res.points_cost_fen + 100 == 100
