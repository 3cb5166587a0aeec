"""The real server (`mms serve` in a child process) SIGKILLed midway through a plan run
that it drives: the child reports once K chunks have committed and blocks inside the
next chunk's open transaction, where the kill lands. A restarted server finishes the
same run (StartRun with its run id) and every member gets exactly one coupon."""

import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time

import grpc
import numpy as np
from common import ROOT, cid

from core import Engine
from core.domain import plans
from core.domain.chain import Chain
from core.rules import CouponTemplate
from server.mms_pb import admin_pb2, admin_pb2_grpc, campaign_pb2, campaign_pb2_grpc

N, CHUNK, K = 400, 20, 4
PW = "password-1"
SERVING = re.compile(r"^mms: serving grpc=(\S+) ")

PATCH = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {root!r})
    from core.engine.writer import Engine
    real = Engine.put_coupons
    calls = [0]
    def put(self, ctx, *a, **kw):
        ids = real(self, ctx, *a, **kw)
        calls[0] += 1
        if calls[0] == {k} + 1:      # chunk K + 1, inside its transaction
            open({ready!r}, "w").close()
            time.sleep(600)
        return ids
    Engine.put_coupons = put
""")
SERVE = ("from server.cli.main import main\n"
         "sys.exit(main(['serve', '--data', {data!r}, '--listen', '127.0.0.1:0', "
         "'--metrics', '127.0.0.1:0']))\n")


def start(data: str, patch: str = "") -> tuple[subprocess.Popen, str]:
    code = (patch or f"import sys\nsys.path.insert(0, {str(ROOT)!r})\n") + SERVE.format(data=data)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, cwd=str(ROOT))
    for line in proc.stdout:
        m = SERVING.match(line)
        if m:
            # Drain the rest, so the server never blocks on a full pipe.
            proc.drain = threading.Thread(target=proc.stdout.read, daemon=True)
            proc.drain.start()
            return proc, m.group(1)
    proc.wait()
    proc.stdout.close()
    raise AssertionError(f"the server did not start ({proc.returncode})")


def stop(proc: subprocess.Popen, sig: int) -> int:
    proc.send_signal(sig)
    rc = proc.wait(60)
    proc.drain.join(60)   # the pipe's end: the reader has returned
    proc.stdout.close()
    return rc


def _wait_for(path: str, proc: subprocess.Popen, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not os.path.exists(path):
        assert proc.poll() is None, f"the server exited ({proc.returncode}) before its point"
        assert time.monotonic() < deadline, "the server never reached its point"
        time.sleep(0.005)


def session(target: str) -> tuple:
    ch = grpc.insecure_channel(target)
    tok = admin_pb2_grpc.AdminServiceStub(ch).Login(
        admin_pb2.LoginRequest(login="mkt", password=PW), timeout=60).session_token
    return ch, (("authorization", f"Bearer {tok}"),)


def test_server_killed_midway_through_a_run_finishes_it_after_restart(tmp_path):
    data, ready = str(tmp_path / "d"), str(tmp_path / "ready")
    # The chain, a marketing operator, N members' cards, a template and a plan, offline.
    eng = Engine(data)
    chain = Chain(eng)
    root = chain.bootstrap(cid(), chain_name="C", admin_login="root", admin_password=PW)
    chain.create_operator(chain.principal(chain.login("root", PW).token), cid(), login="mkt",
                          password=PW, role="marketing")
    ids = np.arange(1, N + 1, dtype=np.uint64)
    eng.issue_cards(ids + 5_000, cid(), member_ids=ids).result()
    eng.put_coupon_template(CouponTemplate(1, "5 off", "fixed", value_fen=500), cid()).result()
    plan = plans.create_plan(eng, {"name": "crash", "holdout_bp": 500,
                                   "audience": {"kind": "members", "member_ids": ids.tolist()},
                                   "actions": [{"kind": "coupon", "template_id": 1}]},
                             cid()).result().value
    assert root.operator_id
    eng.close()

    proc, target = start(data, PATCH.format(root=str(ROOT), k=K, ready=ready))
    try:
        ch, md = session(target)
        run = campaign_pb2_grpc.CampaignServiceStub(ch).StartRun(campaign_pb2.StartRunRequest(
            client_id=cid(), plan_id=plan["plan_id"], run_id="srv-run", chunk=CHUNK),
            metadata=md, timeout=60).run
        assert run.state == "running" and run.targets + run.holdout == N
        _wait_for(ready, proc)
    finally:
        stop(proc, signal.SIGKILL)
        ch.close()

    proc, target = start(data)
    try:
        ch, md = session(target)
        stub = campaign_pb2_grpc.CampaignServiceStub(ch)
        before = stub.GetRun(campaign_pb2.GetRunRequest(run_id="srv-run"), metadata=md, timeout=60).run
        assert before.state == "running" and before.chunks_done == K and before.coupons == K * CHUNK
        done = stub.StartRun(campaign_pb2.StartRunRequest(
            client_id=cid(), plan_id=plan["plan_id"], run_id="srv-run", chunk=CHUNK, wait=True),
            metadata=md, timeout=120).run
        assert done.state == "done" and done.reached == done.targets == done.coupons
        ch.close()
    finally:
        assert stop(proc, signal.SIGTERM) == 0

    eng = Engine(data)
    targets = plans.run_list(eng, "srv-run", b"t")
    per_card = np.bincount(eng.coupons_snapshot()["card_no"].astype(np.int64) - 5_000,
                           minlength=N + 1)
    assert len(targets) == done.targets
    assert np.all(per_card[targets["member"].astype(np.int64)] == 1)
    assert int(per_card.sum()) == len(targets)
    eng.close()
