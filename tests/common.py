"""What tests of every tier share: where the checkout is, and client ids."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"


def cid(tag: str | None = None) -> bytes:
    """A client id: a fresh random one, or (given a tag) the same id for the same tag, so a
    test can send an op again under its first id."""
    if tag is None:
        return os.urandom(16)
    return tag.encode().ljust(16, b".")[:16]


def wait_for_file(path: str, proc: subprocess.Popen, timeout_s: float = 120) -> None:
    """Wait until a crash test's child has created path (it reached its point and now
    waits to be killed there); fail if the child exits first or never gets there."""
    deadline = time.monotonic() + timeout_s
    while not os.path.exists(path):
        assert proc.poll() is None, f"the child exited ({proc.returncode}) before its point"
        assert time.monotonic() < deadline, "the child never reached its point"
        time.sleep(0.005)
