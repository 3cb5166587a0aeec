"""A run's start is written in bounded steps (plans._freeze: PLAN_RUN_FREEZE ops of at
most FREEZE_STEP_PAIRS pairs, then PLAN_RUN_START). Killed (SIGKILL) between two of them,
with part of the lists durable, the run does not exist; started again with the same run
id after the restart, over an audience that has grown meanwhile, it freezes the new
audience under a new attempt, sweeps the abandoned attempt's lists, and grants each
member of the new audience exactly once: no list of the first attempt is read."""

import json
import textwrap

import numpy as np
from common import ROOT, kill_at_point

from core import Engine, EngineConfig
from core.domain import plans
from core.engine.storage import u32
from core.records import Result

N = 900
MORE = 70       # members enrolled after the crash: in the second attempt's audience only
CHUNK = 50
STEP = 100      # FREEZE_STEP_PAIRS in the child: two list values per freeze op
K = 3           # freeze ops answered before the kill: the begin and two slices

CHILD = textwrap.dedent("""
    import json, sys, time
    sys.path.insert(0, {root!r})
    import numpy as np
    from core import Engine, EngineConfig
    from core.domain import plans
    from core.records import Result
    from core.rules import CouponTemplate
    eng = Engine({data!r}, config=EngineConfig(rollups=False))
    ids = np.arange(1, {n} + 1, dtype=np.uint64)
    assert eng.issue_cards(ids + 10_000, b"crash-freeze-crd", member_ids=ids).result().code == Result.OK
    eng.put_coupon_template(CouponTemplate(1, "5 off", "fixed", value_fen=500),
                            b"crash-freeze-tpl").result()
    plan = plans.create_plan(eng, {{"name": "crash", "holdout_bp": 1000,
        "audience": {{"kind": "filter", "stores": [], "levels": []}},
        "actions": [{{"kind": "coupon", "template_id": 1}}]}}, b"crash-freeze-pln").result().value
    plans.FREEZE_STEP_PAIRS = {step}
    real = plans._freeze_op
    answered = [0]
    def op(engine, client, build, *a, **kw):
        r = real(engine, client, build, *a, **kw)
        answered[0] += 1
        if answered[0] == {k}:
            # Freeze op {k} is answered (durable); the next is not sent yet: killed here,
            # between two steps of the start.
            with open({ready!r} + ".tmp", "w") as f:
                json.dump({{"plan_id": plan["plan_id"], "attempt": r.value["attempt"],
                           "n_t": r.value["n_t"]}}, f)
            import os
            os.rename({ready!r} + ".tmp", {ready!r})
            time.sleep(600)
        return r
    plans._freeze_op = op
    plans.run_plan(eng, plan["plan_id"], "crash-run", chunk={chunk})
""")


def _list_keys(eng: Engine, prefix: bytes) -> list[bytes]:
    eng.ensure_dbs(plans.DBS)
    with eng.store.read() as txn:
        cur = txn.cursor(db=eng.store.db[plans.PLAN_LISTS_DB])
        out = []
        if cur.set_range(prefix):
            for k, _v in cur:
                if not k.startswith(prefix):
                    break
                out.append(bytes(k))
    return out


def _freeze_state(eng: Engine, run_id: str) -> dict | None:
    with eng.store.read() as txn:
        raw = txn.get(plans.FREEZE_PREFIX + run_id.encode(), db=eng.store.db[plans.PLAN_META_DB])
    return json.loads(raw) if raw is not None else None


def test_killed_between_two_freeze_steps_then_the_run_starts_anew_and_grants_once(tmp_path):
    data, ready = str(tmp_path / "d"), str(tmp_path / "ready")
    code = CHILD.format(root=str(ROOT), data=data, n=N, k=K, step=STEP, chunk=CHUNK, ready=ready)
    seen = kill_at_point(code, ready)

    eng = Engine(data, config=EngineConfig(rollups=False))
    # No run: the start never reached PLAN_RUN_START. Its first attempt's lists are there
    # (the two slices answered), named by the freeze state as its attempt.
    assert plans.get_run(eng, "crash-run") is None
    st = _freeze_state(eng, "crash-run")
    assert st["attempt"] == seen["attempt"] and st["n_t"] == seen["n_t"] == 2 * STEP
    first = b"crash-run\x00" + u32(seen["attempt"])
    assert len(_list_keys(eng, first)) == 2 * STEP // CHUNK
    # The audience grows before the run is started again: the first attempt's lists
    # would be wrong now (and would double members if read beside the new ones).
    more = np.arange(N + 1, N + MORE + 1, dtype=np.uint64)
    assert eng.issue_cards(more + 10_000, b"crash-freeze-mor", member_ids=more).result().code == Result.OK

    plans.FREEZE_STEP_PAIRS = STEP
    try:
        done = plans.run_plan(eng, seen["plan_id"], "crash-run", chunk=CHUNK)
    finally:
        plans.FREEZE_STEP_PAIRS = 16_384
    assert done["state"] == "done" and done["attempt"] > seen["attempt"]
    assert done["n_audience"] == N + MORE and done["reached"] == done["n_target"]
    # The abandoned attempt's lists are gone, and so is the freeze state.
    assert _list_keys(eng, first) == []
    assert _freeze_state(eng, "crash-run") is None
    eng.close()

    eng = Engine(data, config=EngineConfig(rollups=False))
    targets = plans.run_list(eng, "crash-run", b"t")
    holdout = plans.run_list(eng, "crash-run", b"h")
    members = np.concatenate([targets["member"], holdout["member"]])
    assert sorted(members.tolist()) == list(range(1, N + MORE + 1))
    hold = plans.in_holdout(seen["plan_id"], np.arange(1, N + MORE + 1, dtype=np.uint64), 1000)
    assert sorted(holdout["member"].tolist()) == (np.flatnonzero(hold) + 1).tolist()
    table = eng.coupons_snapshot()
    per_card = np.bincount(table["card_no"].astype(np.int64) - 10_000, minlength=N + MORE + 1)
    assert np.all(per_card[targets["member"].astype(np.int64)] == 1)
    assert np.all(per_card[holdout["member"].astype(np.int64)] == 0)
    assert int(per_card.sum()) == len(targets)
    rows = plans.run_done(eng, "crash-run")
    assert sorted(rows["member"].tolist()) == sorted(targets["member"].tolist())
    assert plans.get_plan(eng, seen["plan_id"])["spent"]["coupons"] == len(targets)
    # The sweep was journalled and audited, bounded like the other freeze steps.
    with eng.store.read() as txn:
        events = [json.loads(v) for _k, v in txn.cursor(db=eng.store.db["events"])]
    sweeps = [e for e in events if e["op"] == "PLAN_RUN_FREEZE" and e["detail"]["step"] == "sweep"]
    assert sweeps and all(e["detail"]["swept_attempt"] == seen["attempt"] for e in sweeps)
    assert sum(e["detail"]["pairs"] for e in sweeps) == 2 * STEP
    assert all(e["detail"]["pairs"] <= STEP for e in sweeps)
    eng.close()
