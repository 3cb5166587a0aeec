"""Shared test set-up. The tiers are folders: unit (no LMDB, seconds), property
(hypothesis against tests/reference.py), engine, domain, rpc (the real server on
loopback), cli (the real `mms` commands against it), crash (SIGKILL of real processes).
`python3 -m pytest tests/unit` is the quick loop; `-m "not slow"` leaves out the long
crash loops and large tables.

This folder is on sys.path (pytest puts a rootdir conftest's folder there), so tests of
every tier import the helpers beside it: common, harness, reference. The tier folders
are put there too: a test may build on another tier's world (the CLI tests on the
report server's fixture, the domain tests on the engine's workloads)."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest

TIERS = ("unit", "property", "engine", "domain", "rpc", "cli", "crash")
_HERE = Path(__file__).resolve().parent
for _tier in TIERS:
    if str(_HERE / _tier) not in sys.path:
        sys.path.append(str(_HERE / _tier))

SLOW_TIERS = ("crash",)

# Engines compute their rollups in the tailer's thread here unless a test asks for the
# worker process (EngineConfig.rollups_worker): the suite opens hundreds of engines, and
# each worker is a Python process to start. MMS_ROLLUPS_WORKER=1 runs it with workers.
os.environ.setdefault("MMS_ROLLUPS_WORKER", "0")

# Tests send SIGINT (Ctrl-C) to `mms demo`, `mms replay` and servers and check what they
# do with it. A suite started with & outside job control (a script's background CI run)
# inherits SIGINT and SIGQUIT ignored, and passes that on to every child, which then
# never sees the Ctrl-C (two "hung" CLI tests). Handled here, both are reset to their
# defaults in every child at exec.
for _sig, _handler in ((signal.SIGINT, signal.default_int_handler),
                       (signal.SIGQUIT, signal.SIG_DFL)):
    if signal.getsignal(_sig) == signal.SIG_IGN:
        signal.signal(_sig, _handler)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test of a slow tier is marked slow, so `-m "not slow"` can leave it out."""
    for item in items:
        if any(f"/tests/{tier}/" in str(item.path) for tier in SLOW_TIERS):
            item.add_marker(pytest.mark.slow)
