"""The real server on loopback with its rollups computed by the worker process
(EngineConfig.rollups_worker): the rows it sums are current, the Sales report answers
from them alone (no journal tail left), and /metrics shows what they cover."""

from __future__ import annotations

import os

from harness import tagged_op
from test_admin_rpc import Env, cid
from test_report_rpc import rpc, table

from core.engine import rollups
from core.records import OpType, Result
from server.mms_pb import admin_pb2, report_pb2_grpc


def test_reports_are_current_with_the_rollups_computed_by_the_worker(tmp_path, monkeypatch):
    monkeypatch.setenv("MMS_ROLLUPS_WORKER", "1")
    e = Env(str(tmp_path / "data"))
    try:
        assert e.engine.config.rollups_worker
        e.admin.Bootstrap(admin_pb2.BootstrapRequest(
            client_id=cid(), chain_name="Chain", admin_login="root", admin_password="password-1"),
            metadata=(("authorization", "Bearer boot-secret"),), timeout=30)
        e.login("root")
        eng = e.engine
        assert eng.issue_cards([1, 2], os.urandom(16), store_id=11).result().code == Result.OK
        for c in (1, 2):
            eng.recharge(c, 50_000, os.urandom(16), store_id=11).result()
        for tag, card, amount, store in (("a", 1, 3_000, 11), ("b", 2, 4_000, 12), ("c", 1, 1_500, 12)):
            assert eng.submit(*tagged_op(tag, card, amount, store=store, operator=7)).result().codes[0] == Result.OK
        assert eng.submit(*tagged_op("r", 2, 1_000, OpType.REFUND, ref="b", store=12)).result().codes[0] == Result.OK
        with eng.store.read() as txn:
            last = eng.store.last_seq(txn)
        eng.rollups.wait_for(last)
        worker = eng.rollups.worker_pid
        assert worker is not None and worker != os.getpid()
        with open(f"/proc/{worker}/cmdline", "rb") as f:
            assert b"core.engine.rollup_worker" in f.read()
        with eng.store.read() as txn:
            assert rollups.covered_seq(eng.store, txn) == last   # no tail: the rows alone
        e.report = report_pb2_grpc.ReportServiceStub(e.channel)
        rows = table(rpc(e, "root", "Sales", by=["store"]))
        assert {r["store"]: r["gross_fen"] for r in rows} == {11: 3_000, 12: 5_500}
        assert {r["store"]: r["refund_fen"] for r in rows} == {11: 0, 12: 1_000}
        text = e.metrics.text().decode()
        assert f"mms_rollups_seq {float(last)}" in text
        assert "mms_rollups_worker_restarts 0.0" in text and "mms_rollups_failing 0.0" in text
    finally:
        e.close()
    assert eng.rollups.worker_pid is None           # stopped with the engine
