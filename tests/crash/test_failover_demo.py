"""`mms cluster demo`: etcd, a primary and two standbys on loopback; the primary is
killed and another node takes over with the next epoch, writes following NOT_LEADER, and
the new leader has what the old one acknowledged (sync replication)."""

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
    # Both writes went to a standby, so each followed at least one NOT_LEADER; under load
    # a standby may not know the new leader yet and send the client round once more.
    redirects = [int(n) for n in re.findall(r"after (\d+) NOT_LEADER redirect\(s\)", out)]
    assert len(redirects) == 2 and min(redirects) >= 1, out
    # Replicated: the card issued through the first leader is on the second.
    assert re.search(rf"card 1, issued through node {first.group(1)} before the kill: found on "
                     rf"node {second.group(1)}, the new leader", out), out
