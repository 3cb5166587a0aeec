"""`mms serve --config FILE`: the [engine] table, its renamed keys and its refusals."""

import logging
import os
import signal
import subprocess
import sys
import time

import pytest
from common import ROOT

from core import EngineConfig
from server.rpc import config as config_mod


def _toml(tmp_path, engine: str) -> str:
    path = tmp_path / "mms.toml"
    path.write_text(f'listen = "127.0.0.1:0"\n\n[engine]\n{engine}\n')
    return str(path)


def test_the_engine_table_sets_engine_config(tmp_path):
    cfg = config_mod.load(_toml(tmp_path, "batch_ops_max = 64\nqueue_ops_max = 1024\nsync = true"))
    assert isinstance(cfg.engine, EngineConfig)
    assert (cfg.engine.batch_ops_max, cfg.engine.queue_ops_max, cfg.engine.sync) == (64, 1024, True)
    assert config_mod.ServeConfig().engine == EngineConfig()


@pytest.mark.parametrize("old, new", [("batch_max", "batch_ops_max"),
                                      ("queue_max_ops", "queue_ops_max"),
                                      ("issue_max_cards", "issue_cards_max")])
def test_an_old_name_is_read_with_a_warning(tmp_path, caplog, old, new):
    with caplog.at_level(logging.WARNING, logger="mms.engine"):
        cfg = config_mod.load(_toml(tmp_path, f"{old} = 4096"))
    assert getattr(cfg.engine, new) == 4096
    assert f"{old} is now called {new}" in caplog.text


def test_an_old_and_a_new_name_together_are_refused(tmp_path):
    with pytest.raises(ValueError, match="both batch_max and its new name batch_ops_max"):
        config_mod.load(_toml(tmp_path, "batch_max = 64\nbatch_ops_max = 128"))


def test_an_unknown_engine_key_is_refused_by_name(tmp_path):
    with pytest.raises(ValueError, match="unknown key 'batch_size'"):
        config_mod.load(_toml(tmp_path, "batch_size = 64"))


def _serve(tmp_path, config: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen([sys.executable, "-m", "server.cli", "serve", "--config", config,
                             "--data", str(tmp_path / "data")], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_serve_refuses_a_bad_engine_table_without_a_traceback(tmp_path):
    proc = _serve(tmp_path, _toml(tmp_path, "batch_size = 64"))
    out = proc.communicate(timeout=120)[0]
    assert proc.returncode == 2, out
    assert "mms serve:" in out and "unknown key 'batch_size'" in out
    assert "Traceback" not in out
    assert not (tmp_path / "data").exists()


def test_serve_starts_with_an_old_name_and_says_the_new_one(tmp_path):
    proc = _serve(tmp_path, _toml(tmp_path, "batch_max = 64"))
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:   # the server reports it is serving, then waits
            lines.append(line)
            if line.startswith("mms: serving grpc="):
                break
    finally:
        proc.send_signal(signal.SIGTERM)
        rest = proc.communicate(timeout=60)[0]
    text = "".join(lines) + rest
    assert proc.returncode == 0, text
    assert "batch_max is now called batch_ops_max" in text
    assert "mms: serving grpc=127.0.0.1:" in text


def _worker_of(pid: int) -> int | None:
    """The rollup worker among the children of any of pid's threads, or None."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                kids = [int(k) for k in f.read().split()]
        except FileNotFoundError:
            continue
        for kid in kids:
            try:
                with open(f"/proc/{kid}/cmdline", "rb") as f:
                    if b"core.engine.rollup_worker" in f.read():
                        return kid
            except FileNotFoundError:
                continue
    return None


def test_serve_runs_the_rollup_worker_at_the_configured_niceness(tmp_path):
    """[engine] rollups_worker_nice reaches the worker `mms serve` starts (the tailer
    starts it at its first poll, with or without records)."""
    proc = _serve(tmp_path, _toml(tmp_path, "rollups_worker = true\nrollups_worker_nice = 7"))
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("mms: serving grpc="):
                break
        worker = None
        for _ in range(600):   # the tailer polls every ROLLUP_POLL_S; bounded, not timed
            worker = _worker_of(proc.pid)
            if worker is not None:
                break
            time.sleep(0.05)
        assert worker is not None, "".join(lines)
        assert os.getpriority(os.PRIO_PROCESS, worker) == min(
            19, os.getpriority(os.PRIO_PROCESS, proc.pid) + 7)
        assert os.getpriority(os.PRIO_PROCESS, proc.pid) == os.getpriority(os.PRIO_PROCESS, 0)
    finally:
        proc.send_signal(signal.SIGTERM)
        rest = proc.communicate(timeout=60)[0]
    assert proc.returncode == 0, "".join(lines) + rest


def test_serve_refuses_a_niceness_outside_0_to_19(tmp_path):
    proc = _serve(tmp_path, _toml(tmp_path, "rollups_worker_nice = 20"))
    out = proc.communicate(timeout=120)[0]
    assert proc.returncode == 2, out
    assert "rollups_worker_nice must be 0..19" in out and "Traceback" not in out


def test_a_bad_engine_value_is_refused_at_load_by_the_file_s_name(tmp_path):
    with pytest.raises(ValueError, match=r"\[engine\]: batch_ops_max must be 1..65536"):
        config_mod.load(_toml(tmp_path, "batch_ops_max = 0"))
    with pytest.raises(ValueError, match=r"\[engine\]: .*not supported between"):
        config_mod.load(_toml(tmp_path, 'rollups_worker_nice = "low"'))
