"""`mms serve --config FILE`: the [engine] table, its renamed keys and its refusals."""

import logging
import os
import signal
import subprocess
import sys

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
