"""A run's start in bounded steps (core/domain/plans.py, `_freeze`): its lists are
written by PLAN_RUN_FREEZE ops of at most FREEZE_STEP_PAIRS pairs (or one chunk) each,
under an attempt number; a start given up between two steps leaves lists no later
attempt reads, and `sweep_abandoned` (or the next start of the run id) deletes them,
FREEZE_STEP_PAIRS pairs per op. A run frozen before attempts existed reads its lists by
the old keys."""

from __future__ import annotations

import json

import numpy as np
import pytest
from common import cid

from core import Engine, RulesConfig
from core.domain import plans
from core.records import Result
from core.rules import CouponTemplate

N = 230
STEP = 40


@pytest.fixture
def eng(tmp_path, monkeypatch):
    monkeypatch.setattr(plans, "FREEZE_STEP_PAIRS", STEP)
    e = Engine(str(tmp_path / "d"), rules=RulesConfig())
    e.put_coupon_template(CouponTemplate(1, "10 off", "fixed", value_fen=1_000), cid()).result()
    members = np.arange(1, N + 1, dtype=np.uint64)
    assert e.issue_cards(1000 + members, cid(), member_ids=members).result().code == Result.OK
    yield e
    e.close()


def create(eng, **kw) -> dict:
    doc = {"name": "steps", "holdout_bp": 2_500,
           "audience": {"kind": "members", "member_ids": list(range(1, N + 1))},
           "actions": [{"kind": "coupon", "template_id": 1}], **kw}
    r = plans.create_plan(eng, doc, cid()).result()
    assert r.code == Result.OK, r
    return r.value


def events(eng) -> list[dict]:
    with eng.store.read() as txn:
        return [json.loads(v) for _k, v in txn.cursor(db=eng.store.db["events"])]


def list_pairs(eng, prefix: bytes) -> int:
    eng.ensure_dbs(plans.DBS)
    n = 0
    with eng.store.read() as txn:
        cur = txn.cursor(db=eng.store.db[plans.PLAN_LISTS_DB])
        if cur.set_range(prefix):
            for k, v in cur:
                if not k.startswith(prefix):
                    break
                n += len(v) // plans.PAIR.itemsize
    return n


def freeze_state(eng, run_id: str) -> dict | None:
    with eng.store.read() as txn:
        raw = txn.get(plans.FREEZE_PREFIX + run_id.encode(), db=eng.store.db[plans.PLAN_META_DB])
    return json.loads(raw) if raw is not None else None


def test_the_start_writes_its_lists_in_bounded_steps(eng):
    p = create(eng)
    run = plans.run_plan(eng, p["plan_id"], "steps", chunk=15)
    hold = plans.in_holdout(p["plan_id"], np.arange(1, N + 1, dtype=np.uint64), 2_500)
    assert run["state"] == "done" and run["n_holdout"] == int(hold.sum())
    assert run["n_target"] == N - int(hold.sum()) == run["reached"]
    ev = [e for e in events(eng) if e["op"] == "PLAN_RUN_FREEZE"]
    steps = [e["detail"] for e in ev if e["detail"]["step"] in ("t", "h")]
    # Slices of whole chunks: 30 pairs (two chunks of 15) per op, none above the bound.
    per = STEP // 15 * 15
    assert [d["pairs"] for d in steps if d["step"] == "t"] == \
        [min(per, run["n_target"] - k) for k in range(0, run["n_target"], per)]
    assert sum(d["pairs"] for d in steps if d["step"] == "h") == run["n_holdout"]
    assert all(d["pairs"] <= STEP for d in steps)
    assert [e["detail"]["step"] for e in ev][0] == "begin"
    assert [e["op"] for e in events(eng)].count("PLAN_RUN_START") == 1
    # The lists as frozen: every member once, in the target or the holdout.
    t, h = plans.run_list(eng, "steps", b"t"), plans.run_list(eng, "steps", b"h")
    assert sorted(np.concatenate([t["member"], h["member"]]).tolist()) == list(range(1, N + 1))
    assert freeze_state(eng, "steps") is None


def test_a_chunk_larger_than_the_bound_is_one_step(eng):
    p = create(eng, holdout_bp=0)
    run = plans.run_plan(eng, p["plan_id"], "big", chunk=100)
    steps = [e["detail"]["pairs"] for e in events(eng)
             if e["op"] == "PLAN_RUN_FREEZE" and e["detail"]["step"] == "t"]
    assert steps == [100, 100, 30] and run["reached"] == N


def test_an_abandoned_start_is_swept_in_bounded_ops_then_the_run_starts_anew(eng, monkeypatch):
    p = create(eng, holdout_bp=0)
    real, answered = plans._freeze_op, [0]

    def give_up(*a, **kw):
        if answered[0] == 4:        # the begin and three slices done: the caller dies
            raise RuntimeError("the caller went away")
        answered[0] += 1
        return real(*a, **kw)

    monkeypatch.setattr(plans, "_freeze_op", give_up)
    with pytest.raises(RuntimeError):
        plans.run_plan(eng, p["plan_id"], "gone", chunk=10)
    monkeypatch.setattr(plans, "_freeze_op", real)
    assert plans.get_run(eng, "gone") is None
    st = freeze_state(eng, "gone")
    prefix = b"gone\x00" + plans.u32(st["attempt"])
    assert st["n_t"] == 3 * STEP == list_pairs(eng, prefix)
    # Bounded: one op deletes at most FREEZE_STEP_PAIRS pairs.
    assert plans.sweep_abandoned(eng, ops_max=1) == 1
    assert list_pairs(eng, prefix) == 2 * STEP
    assert freeze_state(eng, "gone")["stale"] == [st["attempt"]]
    assert plans.sweep_abandoned(eng) == 2
    assert list_pairs(eng, prefix) == 0 and freeze_state(eng, "gone") is None
    assert plans.sweep_abandoned(eng) == 0
    sweeps = [e["detail"] for e in events(eng)
              if e["op"] == "PLAN_RUN_FREEZE" and e["detail"]["step"] == "sweep"]
    assert [d["pairs"] for d in sweeps] == [STEP, STEP, STEP]
    # The run id starts anew, with a new attempt, and grants each member once.
    run = plans.run_plan(eng, p["plan_id"], "gone", chunk=10)
    assert run["state"] == "done" and run["attempt"] > st["attempt"] and run["reached"] == N
    assert all(len(eng.coupons_of(1000 + m)) == 1 for m in range(1, N + 1))


def test_the_sweep_leaves_a_start_in_progress_alone(eng, monkeypatch):
    p = create(eng, holdout_bp=0)
    real, swept = plans._freeze_op, []

    def sweep_meanwhile(*a, **kw):
        r = real(*a, **kw)
        if not swept:               # after the begin, while this caller is starting it
            swept.append(plans.sweep_abandoned(eng))
        return r

    monkeypatch.setattr(plans, "_freeze_op", sweep_meanwhile)
    run = plans.run_plan(eng, p["plan_id"], "live", chunk=10)
    assert swept == [0] and run["state"] == "done" and run["reached"] == N


def test_a_run_frozen_before_attempts_reads_its_lists_by_the_old_keys(eng):
    # A run started by the one-op start of before: lists keyed run id + 0x00 + t|h + k,
    # and no attempt in its record.
    p = create(eng, holdout_bp=0)
    pairs = np.zeros(N, plans.PAIR)
    pairs["member"] = np.arange(1, N + 1, dtype=np.uint64)
    pairs["card"] = 1000 + pairs["member"]

    def old_start(ctx):
        for k in range(0, N, 50):
            ctx.put(plans.PLAN_LISTS_DB, b"old\x00t" + plans.u32(k // 50), pairs[k:k + 50].tobytes())
        seq = ctx.emit(plans.CampaignOp.PLAN_RUN_START, None, amount_fen=N)
        run = {"run_id": "old", "plan_id": p["plan_id"], "state": "running", "started_s": ctx.now,
               "finished_s": 0, "first_seq": seq, "chunk": 50, "cursor": 0, "chunks_done": 0,
               "steps": 0, "n_audience": N, "n_no_card": 0, "n_cooldown": 0, "n_target": N,
               "n_holdout": 0, "reached": 0, "coupons": 0, "face_fen": 0, "points": 0,
               "notices": 0, "no_budget": 0, "no_card": 0, "operator_id": 0}
        ctx.put(plans.PLAN_RUNS_DB, b"old", json.dumps(run).encode())
        return run

    eng.ensure_dbs(plans.DBS)
    assert eng.admin(cid(), plans.CampaignOp.PLAN_RUN_START, old_start).result().code == Result.OK
    assert sorted(plans.run_list(eng, "old", b"t")["member"].tolist()) == list(range(1, N + 1))
    run = plans.resume_run(eng, "old", chunk=50)
    assert run["state"] == "done" and run["reached"] == N and "attempt" not in run
    assert all(len(eng.coupons_of(1000 + m)) == 1 for m in range(1, N + 1))
