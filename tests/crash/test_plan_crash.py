"""A plan run killed (SIGKILL) midway, inside a chunk's open transaction after K chunks
committed, and run again with the same run id after the restart, issues each member's
coupon and points exactly once, and its budget counters equal what was issued."""

import signal
import subprocess
import sys

from common import wait_for_file
from plan_crash_child import assert_reached_once, child

from core import Engine
from core.domain import plans
from core.engine.storage import u32

N = 900
CHUNK = 50

# Chunk K + 1 blocks inside its transaction, after its coupons were put and before the
# commit, once K chunks have committed: the kill lands there.
BODY = """
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
"""


def test_kill_midway_through_a_run_then_the_same_run_completes_exactly_once(tmp_path):
    data, ready = str(tmp_path / "d"), str(tmp_path / "ready")
    k = 5
    code = child(BODY, data=data, n=N, k=k, chunk=CHUNK, ready=ready)
    proc = subprocess.Popen([sys.executable, "-c", code])
    wait_for_file(ready, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    eng = Engine(data)
    run = plans.get_run(eng, "crash-run")
    # K chunks committed; the one killed inside its transaction left nothing.
    assert run["state"] == "running" and run["chunks_done"] == k and run["cursor"] == k * CHUNK
    assert len(plans.run_done(eng, "crash-run")) == k * CHUNK
    assert len(eng.coupons_snapshot()) == k * CHUNK
    done = plans.resume_run(eng, "crash-run", chunk=CHUNK)
    assert done["state"] == "done" and done["reached"] == done["n_target"]
    # And once more (a caller that did not know it had finished): nothing more.
    assert plans.resume_run(eng, "crash-run", chunk=CHUNK)["reached"] == done["reached"]
    eng.close()

    eng = Engine(data)
    targets, _holdout = assert_reached_once(eng, N, "crash-run", done)
    eng.ensure_dbs(["coupon_stats"])
    with eng.store.read() as txn:
        raw = txn.get(u32(1), db=eng.store.db["coupon_stats"])
    assert int.from_bytes(raw[:8], "big") == len(targets)
    eng.close()
