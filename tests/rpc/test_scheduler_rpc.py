"""The server's scheduler (server/rpc/scheduler.py) through the real server on loopback,
with the engine's clock injected and moved by the test (nothing sleeps): scheduled and
birthday plans run by themselves once per period or day, a run cut off midway is finished
and grants nothing twice, the referral and recharge-campaign settles run by themselves
once, and a node that does not lead runs nothing."""

from __future__ import annotations

import asyncio
import datetime
import json

import pytest
from common import cid
from harness import tagged_op
from test_admin_rpc import Env, bootstrap

from core.domain import plans
from core.records import Result
from server.mms_pb import admin_pb2, campaign_pb2, campaign_pb2_grpc
from server.rpc.role import STANDBY, NodeRole
from server.rpc.scheduler import due_run_id

T0 = int(datetime.datetime(2026, 6, 15, 4, 0, tzinfo=datetime.UTC).timestamp())
DAY = 86_400
N = 12


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    now = [T0]
    e = Env(str(tmp_path_factory.mktemp("scheduler")), clock=lambda: now[0])
    e.now = now
    bootstrap(e)
    region = e.call("root", "CreateNode", admin_pb2.CreateNodeRequest(
        client_id=cid(), kind=admin_pb2.NODE_KIND_REGION, parent_id=1, name="North")).node
    e.call("root", "CreateNode", admin_pb2.CreateNodeRequest(
        client_id=cid(), kind=admin_pb2.NODE_KIND_STORE, parent_id=region.node_id,
        name="S11", node_id=11))
    e.call("root", "CreateOperator", admin_pb2.CreateOperatorRequest(
        client_id=cid(), login="mkt", password="password-1", role="marketing", home_store_id=0))
    e.login("mkt")
    tz = e.engine.rules.tz_offset_s
    today = datetime.datetime.fromtimestamp(T0 + tz, datetime.UTC).date()
    e.ids = []
    for i in range(N):
        prof = {"name": f"m{i}", "phone": f"1370000{i:04d}", "home_store_id": 11}
        if i < 3:      # three birthdays today
            prof["birthday"] = f"1990-{today.month:02d}-{today.day:02d}"
        if i == N - 1:
            prof["referrer_id"] = e.ids[0]
        e.ids.append(e.members.create(prof, cid()).member_id)
        assert e.engine.issue_cards([300 + i], cid(), member_ids=[e.ids[-1]]).result().code == Result.OK
        e.engine.recharge(300 + i, 50_000, cid()).result()
    e.camp = campaign_pb2_grpc.CampaignServiceStub(e.channel)
    yield e
    e.close()


def call(env, method, req):
    return getattr(env.camp, method)(req, metadata=env.md("mkt"), timeout=60)


def create(env, **doc) -> int:
    return call(env, "CreatePlan", campaign_pb2.CreatePlanRequest(
        client_id=cid(), plan_json=json.dumps(doc))).plan.plan_id


def tick(env) -> dict:
    return asyncio.run_coroutine_threadsafe(env.server.scheduler.tick(), env.loop).result(120)


def last_seq(env) -> int:
    with env.engine.store.read() as txn:
        return env.engine.store.last_seq(txn)


def move(env, t: int) -> None:
    """Set the clock; sessions end with time, so marketing logs in again."""
    env.now[0] = t
    env.login("mkt")


def points(env, i: int) -> int:
    return int(env.engine.card(300 + i)["points"])


def test_due_run_ids_are_the_plans_period_or_day():
    sched = {"plan_id": 4, "status": "active", "trigger": {"kind": "schedule", "every_days": 7,
                                                          "start_s": T0}}
    assert due_run_id(sched, T0 - 1, 0) is None                   # not yet
    assert due_run_id(sched, T0, 0) == due_run_id(sched, T0 + 7 * DAY - 1, 0) == "plan4-p0"
    assert due_run_id(sched, T0 + 7 * DAY, 0) == "plan4-p1"
    manual = {"plan_id": 5, "status": "active", "trigger": {"kind": "schedule", "every_days": 0,
                                                           "start_s": 0}}
    assert due_run_id(manual, T0, 0) is None                      # run by hand only
    bday = {"plan_id": 6, "status": "active", "trigger": {"kind": "birthday", "days": 0}}
    assert due_run_id(bday, T0, 0) == "plan6-2026-06-15"
    assert due_run_id({**bday, "status": "paused"}, T0, 0) is None


def test_plans_settles_and_the_leader_only(env):
    members = {"kind": "members", "member_ids": env.ids}
    bday = create(env, name="birthday gift", trigger={"kind": "birthday", "days": 0},
                  audience=members, actions=[{"kind": "points", "points": 30, "reason": "birthday"}])
    weekly = create(env, name="weekly", trigger={"kind": "schedule", "every_days": 7, "start_s": T0},
                    audience={"kind": "members", "member_ids": env.ids[3:6]},
                    actions=[{"kind": "points", "points": 5, "reason": "weekly"}])
    base = [points(env, i) for i in range(N)]
    # A run of the weekly plan cut off after one chunk (a crash, a failover): the
    # scheduler's run id is the same, so its tick finishes that run.
    part = plans.run_plan(env.engine, weekly, f"plan{weekly}-p0", chunk=1, max_chunks=1)
    assert part["state"] == "running" and part["cursor"] == 1

    # A standby (or a primary whose lease may have run out) runs nothing.
    sched = env.server.scheduler
    sched.role = NodeRole("n2", "127.0.0.1:1", state=STANDBY)
    seq = last_seq(env)
    out = tick(env)
    assert out == {"leader": False, "runs": [], "settles": [], "rule_tags": None, "errors": []}
    assert last_seq(env) == seq and plans.get_run(env.engine, f"plan{bday}-2026-06-15") is None
    sched.role = None

    out = tick(env)
    assert not out["errors"], out
    runs = {r["run_id"]: r for r in out["runs"]}
    assert runs[f"plan{bday}-2026-06-15"] == {"run_id": f"plan{bday}-2026-06-15", "state": "done",
                                              "reached": 3}
    assert runs[f"plan{weekly}-p0"]["state"] == "done" and runs[f"plan{weekly}-p0"]["reached"] == 3
    got = [points(env, i) - base[i] for i in range(N)]
    assert got == [30, 30, 30, 5, 5, 5] + [0] * (N - 6)

    # The same day again (a second tick, a restart): every run is done, nothing applies.
    seq = last_seq(env)
    out = tick(env)
    assert out["runs"] == [] and not out["errors"] and last_seq(env) == seq

    # The next day: a new birthday run (no birthdays today: it reaches nobody); the
    # weekly plan is still in its period.
    move(env, T0 + DAY)
    out = tick(env)
    assert [(r["run_id"], r["reached"]) for r in out["runs"]] == [(f"plan{bday}-2026-06-16", 0)]
    # A week on: the weekly plan's second period.
    move(env, T0 + 7 * DAY)
    out = tick(env)
    assert (f"plan{weekly}-p1", 3) in [(r["run_id"], r["reached"]) for r in out["runs"]]
    assert [points(env, i) - base[i] for i in range(3, 6)] == [10, 10, 10]

    # The referral settle: the referred member's first swipe earns the referrer, once.
    call(env, "PutCampaign", campaign_pb2.PutCampaignRequest(
        client_id=cid(), kind="referral", config_json=json.dumps({"points": 40})))
    assert env.engine.submit(*tagged_op("sched-ref", 300 + N - 1, 1_000)).result().codes[0] == Result.OK
    before = points(env, 0)
    out = tick(env)
    assert [s["count"] for s in out["settles"] if s["kind"] == "referral"] == [1]
    assert points(env, 0) == before + 40
    tick(env)
    assert points(env, 0) == before + 40

    # A recharge campaign: a recharge in its window earns its bonus, credited by a tick.
    call(env, "PutCampaign", campaign_pb2.PutCampaignRequest(
        client_id=cid(), kind="recharge:summer", config_json=json.dumps(
            {"tiers": [[10_000, 700]], "from_s": env.now[0] - 1, "to_s": env.now[0] + DAY})))
    bonus = int(env.engine.card(307)["bonus_fen"])
    env.engine.recharge(307, 10_000, cid()).result()
    tick(env)
    tick(env)
    assert int(env.engine.card(307)["bonus_fen"]) == bonus + 700
    # Ended a day ago and more: no longer settled (a later recharge earns nothing).
    move(env, env.now[0] + 3 * DAY)
    env.engine.recharge(307, 10_000, cid()).result()
    out = tick(env)
    assert [s for s in out["settles"] if s["name"] == "summer"] == []
    assert int(env.engine.card(307)["bonus_fen"]) == bonus + 700


def test_the_loop_ticks_by_itself_and_stops_with_the_server(env):
    sched = env.server.scheduler

    async def run_loop():
        sched.ticked.clear()
        ticks = sched.ticks
        sched.tick_s = 0.001
        sched.start()
        await asyncio.wait_for(sched.ticked.wait(), 60)
        await sched.stop()
        sched.tick_s = 0
        return sched.ticks - ticks
    assert asyncio.run_coroutine_threadsafe(run_loop(), env.loop).result(120) >= 1
    assert sched._task is None


def test_a_tick_sweeps_the_lists_of_a_start_given_up_midway(env, monkeypatch):
    hand = create(env, name="by hand", audience={"kind": "members", "member_ids": env.ids},
                  actions=[{"kind": "points", "points": 1, "reason": "by hand"}])
    real, answered = plans._freeze_op, [0]

    def give_up(*a, **kw):
        if answered[0] == 2:        # the begin and the target list done: the caller dies
            raise RuntimeError("the caller went away")
        answered[0] += 1
        return real(*a, **kw)

    monkeypatch.setattr(plans, "_freeze_op", give_up)
    with pytest.raises(RuntimeError):
        plans.run_plan(env.engine, hand, "given-up")
    monkeypatch.setattr(plans, "_freeze_op", real)
    key = plans.FREEZE_PREFIX + b"given-up"

    def state_and_lists():
        with env.engine.store.read() as txn:
            st = txn.get(key, db=env.engine.store.db[plans.PLAN_META_DB])
            cur = txn.cursor(db=env.engine.store.db[plans.PLAN_LISTS_DB])
            n = 0
            if cur.set_range(b"given-up\x00"):
                for k, _v in cur:
                    if not k.startswith(b"given-up\x00"):
                        break
                    n += 1
        return st, n

    st, n = state_and_lists()
    assert st is not None and n == 1
    out = tick(env)
    assert not out["errors"], out
    assert state_and_lists() == (None, 0)
    assert plans.get_run(env.engine, "given-up") is None
