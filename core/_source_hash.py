"""The hash of the fast path's sources, compiled into the extension as SOURCE_SHA.

setup.py loads this file by path (it cannot import `core`, whose package imports the
extension it is about to build) and passes the hash as the C macro MMS_SOURCE_SHA;
`tests/unit/test_build_fresh.py` compares the built module's SOURCE_SHA with the hash of
the sources on disk, so an extension left over from older sources (a failed rebuild whose
output was hidden) fails the suite instead of hiding the change. Nothing here imports the
rest of core.
"""

from __future__ import annotations

import hashlib
import os

HERE = os.path.dirname(os.path.abspath(__file__))
# Every file the extension is compiled from (the .pyx includes the .pxi, cimports the .pxd).
SOURCES = ("_fastpath.pyx", "_fastpath.pxd", "_layout.pxi")


# The rollup tailer's loops (core/engine/_tally.pyx) read the journal record struct of
# _fastpath.pxd: a change to either rebuilds it, and its SOURCE_SHA covers both.
TALLY_SOURCES = (os.path.join("engine", "_tally.pyx"), "_fastpath.pxd")


def source_sha(root: str = HERE, sources: tuple[str, ...] = SOURCES) -> str:
    """sha256 over the sources' names and bytes, hex, first 16 bytes."""
    h = hashlib.sha256()
    for name in sources:
        with open(os.path.join(root, name), "rb") as f:
            data = f.read()
        h.update(name.encode() + b"\0" + len(data).to_bytes(8, "little") + data)
    return h.hexdigest()[:32]
