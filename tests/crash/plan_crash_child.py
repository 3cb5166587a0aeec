"""What the plan-run crash tests share (tests/crash/test_plan_crash.py,
test_plan_chunk_durability_crash.py): the child's set-up, N members with a card each, a
coupon template and a plan that gives each target a coupon and 3 points (then the test's
own body: the hook that stops the child at its point, and the run), and the checks that
a run finished after the restart reached each target exactly once."""

from __future__ import annotations

import textwrap

import numpy as np
from common import ROOT

from core.domain import plans

CARD_BASE = 10_000      # member m holds card CARD_BASE + m
POINTS = 3

_SETUP = """
import json, os, sys, time
sys.path.insert(0, {root!r})
import numpy as np
from core import Engine, EngineConfig
from core.domain import plans
from core.records import Result
from core.rules import CouponTemplate
eng = Engine({data!r}, config=EngineConfig({config}))
ids = np.arange(1, {n} + 1, dtype=np.uint64)
assert eng.issue_cards(ids + {base}, b"crash-plan-cards", member_ids=ids).result().code == Result.OK
eng.put_coupon_template(CouponTemplate(1, "5 off", "fixed", value_fen=500),
                        b"crash-plan-templ").result()
plan = plans.create_plan(eng, {{"name": "crash", "holdout_bp": 1000,
    "audience": {{"kind": "members", "member_ids": ids.tolist()}},
    "actions": [{{"kind": "coupon", "template_id": 1}},
                {{"kind": "points", "points": {points}, "reason": "crash test"}}]}},
    b"crash-plan-plan.").result().value
"""


def child(body: str, *, data: str, n: int, config: str = "", **fields) -> str:
    """The child's source: the set-up (EngineConfig(config)), then body, dedented and
    formatted with data, n and fields (its literal braces doubled)."""
    setup = _SETUP.format(root=str(ROOT), data=data, n=n, config=config, base=CARD_BASE,
                          points=POINTS)
    return setup + textwrap.dedent(body).format(data=data, n=n, **fields)


def assert_reached_once(eng, n: int, run_id: str, done: dict) -> tuple[np.ndarray, np.ndarray]:
    """A finished run of the set-up's plan: its lists split the n members, each target's
    card holds one coupon and the points, each holdout's none, a done row per target and
    the plan's budget counters equal what was issued. Returns (targets, holdout)."""
    targets = plans.run_list(eng, run_id, b"t")
    holdout = plans.run_list(eng, run_id, b"h")
    assert len(targets) + len(holdout) == n and len(targets) == done["n_target"]
    table = eng.coupons_snapshot()
    assert len(np.unique(table["coupon_id"])) == len(table) == len(targets)
    per_card = np.bincount(table["card_no"].astype(np.int64) - CARD_BASE, minlength=n + 1)
    assert np.all(per_card[targets["member"].astype(np.int64)] == 1)
    assert np.all(per_card[holdout["member"].astype(np.int64)] == 0)
    points = np.array([eng.card(int(c))["points"] for c in targets["card"].tolist()])
    assert np.all(points == POINTS)
    assert all(eng.card(int(c))["points"] == 0 for c in holdout["card"].tolist())
    rows = plans.run_done(eng, run_id)
    assert sorted(rows["member"].tolist()) == sorted(targets["member"].tolist())
    spent = plans.get_plan(eng, done["plan_id"])["spent"]
    assert spent["coupons"] == len(targets) and spent["points"] == POINTS * len(targets)
    return targets, holdout
