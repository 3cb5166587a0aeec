"""The compiled fast path is built from the sources on disk.

A stale extension (the .pyx changed, the rebuild failed and its output was hidden) would
run the old code under a new source: every test would test something that is not in the
tree. setup.py compiles the sources' hash in as `_fastpath.SOURCE_SHA`.
"""

import core._fastpath as fastpath
from core._source_hash import SOURCES, source_sha


def test_extension_is_built_from_the_sources_on_disk():
    assert fastpath.SOURCE_SHA, "the extension was not built by setup.py (no SOURCE_SHA)"
    assert fastpath.SOURCE_SHA == source_sha(), (
        f"core/_fastpath is stale: built from sources hashing {fastpath.SOURCE_SHA}, the "
        f"sources ({', '.join(SOURCES)}) now hash {source_sha()}; rebuild with "
        "`python3 setup.py build_ext --inplace` and read its output")


def test_the_hash_changes_with_any_source(tmp_path):
    for name in SOURCES:
        (tmp_path / name).write_bytes(b"x")
    before = source_sha(str(tmp_path))
    for name in SOURCES:
        (tmp_path / name).write_bytes(b"xy")
        assert source_sha(str(tmp_path)) != before, name
        (tmp_path / name).write_bytes(b"x")
    assert source_sha(str(tmp_path)) == before
