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
