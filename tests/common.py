"""What tests of every tier share: where the checkout is, and client ids."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"


def cid(tag: str | None = None) -> bytes:
    """A client id: a fresh random one, or (given a tag) the same id for the same tag, so a
    test can send an op again under its first id."""
    if tag is None:
        return os.urandom(16)
    return tag.encode().ljust(16, b".")[:16]


def patience_s(seconds: float) -> float:
    """How long to wait for a child's event before calling it a hang: seconds on a machine
    with a core to spare, times the runnable processes per core beyond that (the 1-minute
    load average over the cores), so a test on a machine shared with other runs waits
    longer instead of failing. Only ever the bound of a wait that ends on an event (a
    line printed, a process's exit); never a measure of speed."""
    per_core = os.getloadavg()[0] / (os.cpu_count() or 1)
    return seconds * max(1.0, per_core)


# A child of a test started with this in its environment prints every thread's stack on
# SIGABRT (the wait that gave up on it sends one: stack_dump), so a hang says where.
FAULTHANDLER_ENV = {"PYTHONFAULTHANDLER": "1"}


def stack_dump(proc) -> None:
    """Ask a child started with FAULTHANDLER_ENV for its threads' stacks (it then exits)."""
    import signal

    if proc.poll() is None:
        proc.send_signal(signal.SIGABRT)


def wait_exit(proc, seconds: float) -> int:
    """proc's exit code, waited for patience_s(seconds). A child still running then is
    taken for hung: its stacks are asked for (stack_dump) and its code is -SIGABRT (or
    -SIGKILL if even that did not end it), which the caller's assertion shows with the
    child's output."""
    import subprocess

    try:
        return proc.wait(patience_s(seconds))
    except subprocess.TimeoutExpired:
        stack_dump(proc)
        try:
            return proc.wait(patience_s(30))
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait()
