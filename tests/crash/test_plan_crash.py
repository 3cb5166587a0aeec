"""A plan run killed (SIGKILL) midway, inside a chunk's open transaction after K chunks
committed, and run again with the same run id after the restart, issues each member's
coupon and points exactly once, and its budget counters equal what was issued."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
from common import ROOT

from core import Engine
from core.domain import plans
from core.engine.storage import u32

N = 900
CHUNK = 50

CHILD = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {root!r})
    import numpy as np
    from core import Engine
    from core.domain import plans
    from core.records import Result
    from core.rules import CouponTemplate
    eng = Engine({data!r})
    ids = np.arange(1, {n} + 1, dtype=np.uint64)
    assert eng.issue_cards(ids + 10_000, b"crash-plan-cards", member_ids=ids).result().code == Result.OK
    eng.put_coupon_template(CouponTemplate(1, "5 off", "fixed", value_fen=500),
                            b"crash-plan-templ").result()
    plan = plans.create_plan(eng, {{"name": "crash", "holdout_bp": 1000,
        "audience": {{"kind": "members", "member_ids": ids.tolist()}},
        "actions": [{{"kind": "coupon", "template_id": 1}},
                    {{"kind": "points", "points": 3, "reason": "crash test"}}]}},
        b"crash-plan-plan.").result().value
    # Chunk {k} + 1 blocks inside its transaction, after its coupons were put and before
    # the commit, once {k} chunks have committed: the kill lands there.
    real = eng.put_coupons
    calls = [0]
    def put(ctx, *a, **kw):
        ids = real(ctx, *a, **kw)
        calls[0] += 1
        if calls[0] == {k} + 1:
            open({ready!r}, "w").close()
            time.sleep(600)
        return ids
    eng.put_coupons = put
    plans.run_plan(eng, plan["plan_id"], "crash-run", chunk={chunk})
""")


def _wait_for(path: str, proc: subprocess.Popen, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not os.path.exists(path):
        assert proc.poll() is None, f"the child exited ({proc.returncode}) before its point"
        assert time.monotonic() < deadline, "the child never reached its point"
        time.sleep(0.005)


def test_kill_midway_through_a_run_then_the_same_run_completes_exactly_once(tmp_path):
    data, ready = str(tmp_path / "d"), str(tmp_path / "ready")
    k = 5
    code = CHILD.format(root=str(ROOT), data=data, n=N, k=k, chunk=CHUNK, ready=ready)
    proc = subprocess.Popen([sys.executable, "-c", code])
    _wait_for(ready, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    eng = Engine(data)
    run = plans.get_run(eng, "crash-run")
    # K chunks committed; the one killed inside its transaction left nothing.
    assert run["state"] == "running" and run["chunks_done"] == k and run["cursor"] == k * CHUNK
    assert len(plans.run_done(eng, "crash-run")) == k * CHUNK
    assert len(eng.coupons_snapshot()) == k * CHUNK
    plan_id = run["plan_id"]
    done = plans.resume_run(eng, "crash-run", chunk=CHUNK)
    assert done["state"] == "done" and done["reached"] == done["n_target"]
    # And once more (a caller that did not know it had finished): nothing more.
    assert plans.resume_run(eng, "crash-run", chunk=CHUNK)["reached"] == done["reached"]
    eng.close()

    eng = Engine(data)
    targets = plans.run_list(eng, "crash-run", b"t")
    holdout = plans.run_list(eng, "crash-run", b"h")
    assert len(targets) + len(holdout) == N and len(targets) == done["n_target"]
    table = eng.coupons_snapshot()
    per_card = np.bincount(table["card_no"].astype(np.int64) - 10_000, minlength=N + 1)
    assert np.all(per_card[targets["member"].astype(np.int64)] == 1)
    assert np.all(per_card[holdout["member"].astype(np.int64)] == 0)
    points = np.array([eng.card(int(c))["points"] for c in targets["card"].tolist()])
    assert np.all(points == 3)
    assert all(eng.card(int(c))["points"] == 0 for c in holdout["card"].tolist())
    rows = plans.run_done(eng, "crash-run")
    assert sorted(rows["member"].tolist()) == sorted(targets["member"].tolist())
    plan = plans.get_plan(eng, plan_id)
    assert plan["spent"]["coupons"] == len(targets) and plan["spent"]["points"] == 3 * len(targets)
    eng.ensure_dbs(["coupon_stats"])
    with eng.store.read() as txn:
        raw = txn.get(u32(1), db=eng.store.db["coupon_stats"])
    assert int.from_bytes(raw[:8], "big") == len(targets)
    eng.close()
