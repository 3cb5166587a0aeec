"""Offline work on a data directory, for the `mms` commands that run with the server
stopped (the live server's own writer does the same work online)."""

from __future__ import annotations

from dataclasses import dataclass

from core.engine import rollups
from core.engine.storage import Store

# The map an offline rebuild opens with; the store grows it when the rollups need more.
OFFLINE_MAP_BYTES = 1 << 30


@dataclass(frozen=True)
class RebuildReport:
    records: int          # journal records summed
    seq: int              # the seq the rollups now cover
    digest_before: str
    digest_after: str


def rebuild_rollups(path: str, tz_offset_s: int | None = None) -> RebuildReport:
    """Empty the report rollups of the data directory at path and sum its journal again
    (in the chain's time zone, UTC+8 unless given). Stop the server first."""
    store = Store(path, map_size_bytes=OFFLINE_MAP_BYTES)
    try:
        tailer = rollups.Rollups(store, 8 * 3600 if tz_offset_s is None else tz_offset_s)
        before = rollups.digest(store)
        n = tailer.rebuild(tz_offset_s)
        return RebuildReport(n, tailer.seq, before, rollups.digest(store))
    finally:
        store.close()
