"""`mms bench engine` runs end to end and reports the keys it promises (its figures are
the benchmark's business, not the test's)."""

import json
import os

import numpy as np

from server.tools.bench_engine import main_engine


def test_bench_engine_json(capsys):
    assert main_engine(["--cards", "300", "--ops", "700", "--batch", "64", "--runs", "1",
                        "--json", "--domain"]) == 0
    out = json.loads(capsys.readouterr().out)
    for key in ("swipes_per_s", "reference_per_s", "ratio", "commit_p50_ms", "commit_p99_ms",
                "domain_swipes_per_s", "domain_cost_ratio", "apply_ns_per_op",
                "domain_apply_ns_per_op", "domain_apply_cost_ratio"):
        assert key in out and out[key] > 0, key
    # Every swipe of the run was accepted: the figures are of work actually done; each
    # card's first domain swipe redeemed its coupon.
    assert out["rejected"] == 0
    assert out["domain_coupons_redeemed"] == 300
    # The committer's share of the run inside its commits is a share.
    assert 0 < out["commit_busy"] <= 1
    assert out["ops"] == 700 and out["batch"] == 64
    # The raw journal-append ceiling of the same records and batch, beside the reference.
    assert out["journal_ceiling_per_s"] > 0 and len(out["runs_journal_ceiling_per_s"]) == 1
    assert out["journal_ratio"] == round(out["swipes_per_s"] / out["journal_ceiling_per_s"], 3)
    assert out["ratio"] == round(out["swipes_per_s"] / out["reference_per_s"], 2)
    # And the same with LMDB's two fsyncs per commit, the ceiling of earlier figures.
    assert out["journal_ceiling_two_fsync_per_s"] > 0
    assert out["journal_ratio_two_fsync"] == round(
        out["swipes_per_s"] / out["journal_ceiling_two_fsync_per_s"], 3)


def test_bench_engine_no_rollups_holds_for_the_domain_run_too(monkeypatch, capsys):
    from server.tools import bench_engine as be

    seen = []
    real = be.run_engine

    def spy(*args, **kw):
        seen.append((kw.get("domain", False), kw.get("rollups", True)))
        return real(*args, **kw)

    monkeypatch.setattr(be, "run_engine", spy)
    assert main_engine(["--cards", "200", "--ops", "300", "--batch", "64", "--runs", "1",
                        "--json", "--domain", "--no-rollups", "--no-reference",
                        "--no-journal-ceiling"]) == 0
    json.loads(capsys.readouterr().out)
    assert seen == [(False, False), (True, False)]


def test_journal_ceiling_appends_every_record(tmp_path):
    import lmdb

    from server.tools import bench_engine as be

    path = str(tmp_path / "j")
    out = be.run_journal_ceiling(path, 1_000, 64)
    assert out["journal_ceiling_per_s"] > 0
    _check_ceiling_journal(lmdb, be, path)
    two = str(tmp_path / "j2")
    assert be.run_journal_ceiling(two, 1_000, 64, one_fsync=False)["journal_ceiling_two_fsync_per_s"] > 0
    _check_ceiling_journal(lmdb, be, two)


def _check_ceiling_journal(lmdb, be, path):
    env = lmdb.open(path, max_dbs=2, readonly=True)
    try:
        db = env.open_db(b"journal", create=False)
        with env.begin() as txn:
            # As the engine's journal: one block per commit under its last seq, 416 bytes
            # a record, seqs 1..1,000 in order.
            keys = [int.from_bytes(k, "big") for k, _ in txn.cursor(db)]
            assert keys == [*range(64, 1_000, 64), 1_000]
            blocks = [np.frombuffer(v, dtype=be.JOURNAL) for _, v in txn.cursor(db)]
            assert be.JOURNAL.itemsize == 416
            assert [len(b) for b in blocks] == [64] * 15 + [40]
            assert np.concatenate([b["seq"] for b in blocks]).tolist() == list(range(1, 1_001))
    finally:
        env.close()


def test_prepare_issues_more_cards_than_one_admin_op_allows(tmp_path):
    """`mms bench engine --cards N` past the engine's issue limit prepares in chunks."""
    from core import Engine, EngineConfig
    from server.tools import bench_engine as be

    n = EngineConfig().issue_cards_max + 1
    be.prepare(str(tmp_path / "seed"), n, 4096, coupons=False)
    with Engine(str(tmp_path / "seed")) as eng:
        assert eng.stats()["n_cards"] == n
        assert eng.card(n)["recharge_total_fen"] == 100_000_000


def test_bench_engine_without_journal_ceiling(capsys):
    assert main_engine(["--cards", "100", "--ops", "200", "--batch", "64", "--runs", "1",
                        "--json", "--no-reference", "--no-journal-ceiling"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert "journal_ceiling_per_s" not in out and "journal_ratio" not in out


def test_bench_engine_rollups_cost_has_both_sides(capsys):
    for workload in ("realistic", "worst"):
        assert main_engine(["--cards", "200", "--ops", "500", "--batch", "64", "--runs", "2",
                            "--json", "--no-reference", "--rollups-cost",
                            "--workload", workload]) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["workload"] == workload and out["rejected"] == 0
        assert len(out["runs_swipes_per_s"]) == len(out["runs_rollups_off_swipes_per_s"]) == 2
        for key in ("swipes_per_s", "rollups_off_swipes_per_s", "rollups_on_current_swipes_per_s"):
            assert out[key] > 0, key
        assert out["rollups_cost"] == round(1 - out["swipes_per_s"] / out["rollups_off_swipes_per_s"], 3)


def test_realistic_workload_ties_terminals_to_stores():
    import numpy as np

    from server.tools import bench_engine as be

    rng = np.random.default_rng(3)
    ops = be._ops(rng, 5_000, 100, 1, 2, 100, 200)
    t = ops["terminal_id"].astype(np.int64)
    assert np.all(ops["store_id"] == (t - 1) // be.TERMINALS_PER_STORE + 1)
    assert np.all((ops["operator_id"] - 1) // be.OPERATORS_PER_TERMINAL == t - 1)
    items = be._domain(rng, ops)
    assert items["sku"].max() <= be.SKUS
    assert np.all(items["category"] == items["sku"] % be.CATEGORIES)
    worst = be._ops(rng, 5_000, 100, 1, 2, 100, 200, "worst")
    assert np.any(worst["store_id"] != (worst["terminal_id"].astype(np.int64) - 1)
                  // be.TERMINALS_PER_STORE + 1)


# --- `mms bench grpc`: the drivers count only calls that ended OK ----------------------

import argparse  # noqa: E402
import asyncio  # noqa: E402
import subprocess  # noqa: E402

import pytest  # noqa: E402

from server.tools import bench as grpc_bench  # noqa: E402
from server.tools import loadgen  # noqa: E402


def _grpc_args(**kw) -> argparse.Namespace:
    args = dict(streams=4, seconds=1.0, batch=1, unary=True, rate=0.0, cards=200, target=None,
                token=None, json=True, driver="python", ceiling=False, ceiling_processes=1)
    args.update(kw)
    return argparse.Namespace(**args)


def _native_or_skip() -> str:
    try:
        return loadgen.build()
    except loadgen.NativeUnavailable as e:
        pytest.skip(f"native driver unavailable: {e}")


def test_native_driver_unavailable_says_why(monkeypatch, tmp_path):
    monkeypatch.setattr(loadgen.shutil, "which", lambda name: None)
    with pytest.raises(loadgen.NativeUnavailable, match="compiler|pkg-config"):
        loadgen.build(str(tmp_path))


def test_native_driver_falls_back_to_python(monkeypatch, capsys):
    def unavailable(*a, **k):
        raise loadgen.NativeUnavailable("no C++ compiler found")

    monkeypatch.setattr(loadgen, "build", unavailable)
    assert grpc_bench.main_grpc(_grpc_args(driver="native")) == 0
    captured = capsys.readouterr()
    assert "native driver is unavailable (no C++ compiler found)" in captured.err
    out = json.loads(captured.out)
    assert out["driver"] == "python"
    assert out["swipes"] > 0 and out["rejected"] == 0 and out["errors"] == {}
    # The client's count is the server's count of OK Swipe calls.
    assert out["server_ok"] == out["swipes"]


def _assert_ceiling(out: dict) -> None:
    assert out["ceiling_per_s"] > 0 and out["ceiling_p99_ms"] > 0
    assert out["ceiling_errors"] == {}
    assert out["ratio"] == round(out["swipes_per_s"] / out["ceiling_per_s"], 3) > 0


def test_ceiling_python_driver(capsys):
    assert grpc_bench.main_grpc(_grpc_args(ceiling=True)) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["driver"] == "python" and out["swipes"] > 0 and out["rejected"] == 0
    assert out["server_ok"] == out["swipes"]
    _assert_ceiling(out)


def test_ceiling_at_a_rate_drives_the_noop_at_that_rate_too(capsys):
    """With --rate, the no-op runs flat out (the ratio's ceiling) and then at mms's rate:
    its figures at that rate are beside mms's, from a run of their own."""
    assert grpc_bench.main_grpc(_grpc_args(ceiling=True, rate=100.0, seconds=1.0)) == 0
    out = json.loads(capsys.readouterr().out)
    _assert_ceiling(out)
    assert out["offered_per_s"] == 100.0 and out["server_ok"] == out["swipes"] > 0
    assert out["ceiling_at_rate_errors"] == {}
    # Offered 100/s for 1 s: about 100 calls a second, never more (the flat-out run is
    # not it).
    assert 0 < out["ceiling_at_rate_swipes_per_s"] < 150
    assert out["ceiling_at_rate_p99_ms"] > 0 and out["ceiling_at_rate_cpu_us_per_call"] > 0
    # Without --rate there is no second run.
    assert grpc_bench.main_grpc(_grpc_args(ceiling=True)) == 0
    assert not any(k.startswith("ceiling_at_rate") for k in json.loads(capsys.readouterr().out))


def test_ceiling_through_the_mms_command():
    import sys

    out = subprocess.run([sys.executable, "-m", "server.cli", "bench", "grpc", "--unary",
                          "--ceiling", "--seconds", "0.5", "--streams", "2", "--cards", "50",
                          "--json"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    _assert_ceiling(json.loads(out.stdout))


def test_ceiling_of_two_processes_on_one_port(capsys):
    """--ceiling-processes 2: two no-op servers share the port (SO_REUSEPORT), and the
    ceiling's callers (a connection each) are answered."""
    assert grpc_bench.main_grpc(_grpc_args(ceiling=True, ceiling_processes=2)) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ceiling_processes"] == 2 and out["swipes"] > 0
    _assert_ceiling(out)


def test_ceiling_processes_go_with_the_ceiling_and_have_a_bound(capsys):
    from server.tools.noop_server import NOOP_PROCESSES_MAX, NoopGroup

    assert grpc_bench.main_grpc(_grpc_args(ceiling_processes=2)) == 2
    assert grpc_bench.main_grpc(_grpc_args(ceiling=True, ceiling_processes=0)) == 2
    # More than the bound is refused before any server starts.
    assert grpc_bench.main_grpc(_grpc_args(ceiling=True,
                                           ceiling_processes=NOOP_PROCESSES_MAX + 1)) == 2
    err = capsys.readouterr().err
    assert err.count(f"--ceiling-processes N (1 to {NOOP_PROCESSES_MAX}) goes with --ceiling") == 3
    with pytest.raises(ValueError, match=f"1 to {NOOP_PROCESSES_MAX}"):
        NoopGroup(NOOP_PROCESSES_MAX + 1)


def test_ceiling_processes_through_the_mms_command():
    import sys

    out = subprocess.run([sys.executable, "-m", "server.cli", "bench", "grpc", "--unary",
                          "--ceiling-processes", "2", "--seconds", "0.5", "--json"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2
    assert "--ceiling-processes N (1 to 32) goes with --ceiling" in out.stderr


def test_noop_group_serves_one_port_from_each_process():
    """Each no-op server of a group listens on the group's port: with the others stopped,
    the last one still answers there on a new connection."""
    from server.client import aio_channel, stubs
    from server.mms_pb import pos_pb2
    from server.tools.noop_server import NoopGroup

    async def swipe(target: str):
        async with aio_channel(target) as ch:
            pos, _ = stubs(ch)
            return await pos.Swipe(pos_pb2.SwipeRequest(card_no=1, amount_fen=5), timeout=30)

    with NoopGroup(3) as group:
        assert len(group.children) == 3
        assert {c.target for c in group.children} == {group.target}
        pids = {c.proc.pid for c in group.children}
        assert len(pids) == 3
        for child in group.children[:-1]:
            child.__exit__(None, None, None)
        assert asyncio.run(swipe(group.target)) == pos_pb2.SwipeResponse()
    assert group.children == []
    with pytest.raises(ValueError):
        NoopGroup(0)


def test_ceiling_needs_unary(capsys):
    assert grpc_bench.main_grpc(_grpc_args(ceiling=True, unary=False)) == 2
    assert "--ceiling measures unary Swipe only" in capsys.readouterr().err


def test_noop_server_answers_ok_at_once():
    """The ceiling's server: Swipe answers OK with an empty result, whatever the request
    and credentials; the other methods are not there."""
    import grpc

    from server.client import aio_channel, stubs
    from server.mms_pb import pos_pb2
    from server.tools.noop_server import NoopChild

    async def calls(target: str):
        async with aio_channel(target) as ch:
            pos, _ = stubs(ch)
            resp = await pos.Swipe(pos_pb2.SwipeRequest(card_no=1, amount_fen=5))
            with pytest.raises(grpc.aio.AioRpcError) as e:
                await pos.Recharge(pos_pb2.RechargeRequest(card_no=1, amount_fen=5))
            return resp, e.value.code()

    with NoopChild() as noop:
        resp, code = asyncio.run(calls(noop.target))
    assert resp == pos_pb2.SwipeResponse() and not resp.HasField("result")
    assert code == grpc.StatusCode.UNIMPLEMENTED


def test_native_driver_needs_unary(capsys):
    assert grpc_bench.main_grpc(_grpc_args(driver="native", unary=False)) == 2
    assert "unary Swipe only" in capsys.readouterr().err


def test_native_driver_end_to_end(capsys):
    _native_or_skip()
    assert grpc_bench.main_grpc(_grpc_args(driver="native", streams=8)) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["driver"] == "native"
    assert out["swipes"] > 0 and out["rejected"] == 0 and out["errors"] == {}
    assert out["server_ok"] == out["swipes"] == out["calls"]
    # A fixed rate: every call it sent is counted, and it reports what it was offered.
    assert grpc_bench.main_grpc(_grpc_args(driver="native", rate=200.0)) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["offered_per_s"] == 200.0 and out["server_ok"] == out["swipes"] > 0
    # The ceiling with the native client, too.
    assert grpc_bench.main_grpc(_grpc_args(driver="native", ceiling=True)) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["driver"] == "native" and out["server_ok"] == out["swipes"] > 0
    _assert_ceiling(out)


def test_native_driver_counts_only_ok_calls(tmp_path):
    """Each call is a real, distinct debit (fresh client ids), and a call that fails
    (here: a bad token, UNAUTHENTICATED) is an error, never a swipe."""
    from server.tools.launch import ChildServer, TerminalSpec

    binary = _native_or_skip()
    terms = [TerminalSpec(1, 0, "admin"), TerminalSpec(2, 1, "pos")]
    with ChildServer(str(tmp_path), terms) as child:
        cards = asyncio.run(grpc_bench._setup(child.target, child.token("admin"),
                                              child.token("pos"), 1))
        bad = loadgen.run(binary, child.target, "not-a-token", streams=2, seconds=0.5,
                          card_base=int(cards[0]), cards=1, amount_max=10)
        assert bad["ok"] == 0 and bad["calls"] > 0
        assert bad["errors"] == {"UNAUTHENTICATED": bad["calls"]}
        good = loadgen.run(binary, child.target, child.token("pos"), streams=2, seconds=0.5,
                           card_base=int(cards[0]), cards=1, amount_max=10)
        assert good["ok"] == good["calls"] > 0 and good["errors"] == {}
        assert grpc_bench.swipes_ok_on_server(child.metrics_url) == good["ok"]
        # One card took every debit: its balance fell by each swipe's amount, so no
        # call was an idempotent replay of another.
        from server.client import aio_channel, auth, stubs
        from server.mms_pb import pos_pb2

        async def card():
            async with aio_channel(child.target) as ch:
                pos, _ = stubs(ch)
                return (await pos.GetCard(pos_pb2.GetCardRequest(card_no=int(cards[0])),
                                          metadata=auth(child.token("pos")))).card

        c = asyncio.run(card())
        assert c.visits == good["ok"]
        assert 0 < c.spend_total_fen <= 9 * good["ok"]  # amounts are 1..9 fen


def test_native_driver_usage_error():
    binary = _native_or_skip()
    out = subprocess.run([binary, "--streams", "0"], capture_output=True, text=True)
    assert out.returncode == 2 and "usage" in out.stderr


def test_bench_memory_through_the_mms_command(tmp_path):
    """`mms bench memory` prepares cards, members and ops, measures each in a fresh child
    and reports the per-million figures it promises."""
    import sys

    out = subprocess.run([sys.executable, "-m", "server.cli", "bench", "memory",
                          "--cards", "3000", "--members", "200", "--ops", "5000",
                          "--dir", str(tmp_path), "--json"],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert (doc["cards"], doc["members"], doc["ops"]) == (3000, 200, 5000)
    for key in ("rss_per_million_cards_bytes", "anon_per_million_cards_bytes",
                "rss_per_million_members_bytes", "member_columns_per_million_bytes",
                "id_growth_live_anon_per_million_ops_bytes",
                "id_index_growth_per_million_ops_bytes", "id_pending_per_million_ops_bytes"):
        assert isinstance(doc[key], int), key
    # The cards' tables are the card table and its working copy (and the coupons').
    assert doc["card_tables_allocated_bytes"]
    assert doc["member_index_source"]
    # Every op was a new client id, all within the retention: the index knows each.
    assert doc["ids_added"] == 5000 and doc["ids_known_reopened"] == doc["ids_known_after"]
    # 5,000 ids of 24 bytes each wait for the next checkpoint: 24 bytes per op.
    assert doc["id_pending_per_million_ops_bytes"] == 24_000_000
    # The index holds at most half its slots: at least 48 bytes an id it knows.
    assert doc["id_slots_bytes"] >= 48 * doc["ids_known_reopened"]
    assert not os.listdir(tmp_path)  # the temp directory is gone
