"""A plan chunk is answered only after the fsync that makes its commit durable (with
lazy_meta its meta page waits for the next group commit's fsync, or one of its own:
Engine._hand_over). Killed (SIGKILL) in that window, between the chunk's commit and
that fsync, the run finishes exactly once after the restart, whether the commit
survived (the OS had its meta page: a process crash) or not (a power loss before the
fsync, simulated by putting back the meta pages as they were before the commit)."""

import os

import pytest
from common import kill_at_point
from plan_crash_child import assert_reached_once, child

from core import Engine, EngineConfig
from core.domain import plans

N = 600
CHUNK = 50
K = 4           # chunks answered before the one killed in its window

# No rollup tailer: no write transaction but the engine's between the copy of the meta
# pages and the chunk's commit.
BODY = """
    assert eng.store.lazy_meta
    psize = eng.store.env.stat()["psize"]
    real_put, real_durable = eng.put_coupons, eng._made_durable
    calls = [0]
    new_ids = []
    def put(ctx, *a, **kw):
        got = real_put(ctx, *a, **kw)
        calls[0] += 1
        if calls[0] == {k} + 1:
            # Inside chunk K + 1's transaction, before its commit: the meta pages as the
            # last durable commit left them.
            with open({data!r} + "/data.mdb", "rb") as f:
                meta = f.read(2 * psize)
            with open({meta!r}, "wb") as f:
                f.write(meta)
            new_ids.extend(got[:1])
        return got
    def made_durable(done):
        job = done[0]
        if job.cold is not None and calls[0] == {k} + 1:
            # Chunk K + 1 is committed and held for the fsync that makes it durable.
            state = {{"answered": job.cold.item.future.done(),
                      "visible": eng.coupon(new_ids[0]) is not None,
                      "coupons": len(eng.coupons_snapshot())}}
            with open({ready!r} + ".tmp", "w") as f:
                json.dump(state, f)
            os.rename({ready!r} + ".tmp", {ready!r})
            time.sleep(600)                 # killed here
        return real_durable(done)
    eng.put_coupons = put
    eng._made_durable = made_durable
    plans.run_plan(eng, plan["plan_id"], "crash-run", chunk={chunk})
"""


@pytest.mark.parametrize("meta_lost", [False, True])
def test_kill_between_a_chunks_commit_and_its_fsync_then_the_run_completes_exactly_once(
        tmp_path, meta_lost):
    data, ready, meta = str(tmp_path / "d"), str(tmp_path / "ready"), str(tmp_path / "meta")
    code = child(BODY, data=data, n=N, config="rollups=False", k=K, chunk=CHUNK, ready=ready,
                 meta=meta)
    state = kill_at_point(code, ready)
    # In the window: committed, but not answered and its coupons not visible.
    assert state == {"answered": False, "visible": False, "coupons": K * CHUNK}
    if meta_lost:
        # A power loss before the fsync: the chunk's meta page never reached the disk.
        with open(meta, "rb") as f:
            saved = f.read()
        with open(os.path.join(data, "data.mdb"), "r+b") as f:
            f.write(saved)

    eng = Engine(data, config=EngineConfig(rollups=False))
    run = plans.get_run(eng, "crash-run")
    kept = K if meta_lost else K + 1
    assert run["state"] == "running" and run["chunks_done"] == kept and run["cursor"] == kept * CHUNK
    assert len(plans.run_done(eng, "crash-run")) == kept * CHUNK
    assert len(eng.coupons_snapshot()) == kept * CHUNK
    done = plans.resume_run(eng, "crash-run", chunk=CHUNK)
    assert done["state"] == "done" and done["reached"] == done["n_target"]
    eng.close()

    eng = Engine(data, config=EngineConfig(rollups=False))
    assert_reached_once(eng, N, "crash-run", done)
    eng.close()
