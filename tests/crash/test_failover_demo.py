"""`mms cluster demo`: etcd, a primary and two standbys on loopback; the primary is
killed and another node takes over with the next epoch, writes following NOT_LEADER."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from common import ROOT
from etcd_harness import require_etcd


def test_cluster_demo_shows_a_takeover():
    require_etcd()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-m", "server.cli", "cluster", "demo"],
                          capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    first = re.search(r"node (\w) leads at epoch 1\n", out)
    assert first, out
    assert f"killed node {first.group(1)} (SIGKILL)" in out
    second = re.search(r"node (\w) leads at epoch 2, [\d.]+ s after the kill", out)
    assert second and second.group(1) != first.group(1), out
    assert out.count("after 1 NOT_LEADER redirect(s)") == 2, out
    assert "pending replication" in out
