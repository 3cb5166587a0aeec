"""Per-card (and per-member) state of the rollup tailer kept in blocks of ids: one LMDB
value per 2**BLOCK_SHIFT consecutive ids (card numbers, member ids) holding the rows of
the ids in it that have any, sorted by id (a card's rows keep their order: the FIFO
lots).

A flush that touches 200,000 cards reads and writes a few hundred values (getmulti of
the blocks, one put each), not 200,000 keys built and parsed in Python: that per-card
LMDB work was ~35% of the tailer's CPU (docs/benchmarks.md, h11e, h11g). Used by
beh_cards and beh_members (core/engine/behaviour.py), rollup_card_status
(core/engine/rollups.py) and rollup_lots (core/engine/rollup_lots.py); the byte layout
is in docs/internals/storage.md.

Which blocks exist and what they hold depends only on the journal, never on how it was
cut into flushes: every block an id of a flush falls in is written, b"" once it holds no
row, so a rebuild gives the same bytes (rollups.digest). Ids are spread over blocks by
their value: dense numbers (cards issued in runs) share blocks; sparse ones cost a
value each, as one key per id did before.
"""

from __future__ import annotations

import numpy as np

from core.engine.storage import stable_argsort, u64, u64_keys

# Ids per block: 256 (a block of card totals is 256 x 104 bytes, ~26 KB, when full).
BLOCK_SHIFT = 8


def blocks_of(ids: np.ndarray) -> np.ndarray:
    """The distinct blocks (ascending) the ids fall in."""
    b = np.asarray(ids, np.uint64) >> np.uint64(BLOCK_SHIFT)
    if len(b) == 0:
        return b
    b = np.sort(b)
    return b[np.concatenate(([True], b[1:] != b[:-1]))]


def decode(pairs, dtype: np.dtype) -> np.ndarray:
    """The rows of (block key, value) pairs read in key order (so sorted by id)."""
    body = b"".join(bytes(v) for _k, v in pairs)
    return np.frombuffer(body, dtype).copy()


def read_blocks(txn, db, blocks: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Every row of the blocks (ascending, distinct), sorted by id."""
    if len(blocks) == 0:
        return np.zeros(0, dtype)
    return decode(txn.cursor(db=db).getmulti(u64_keys(blocks)), dtype)


def read_all(txn, db, dtype: np.dtype) -> np.ndarray:
    """Every row of a table, sorted by id."""
    return decode(txn.cursor(db=db), dtype)


def read_one(txn, db, key: int, dtype: np.dtype) -> np.ndarray:
    """The rows of one id (none: an empty array)."""
    raw = txn.get(u64(int(key) >> BLOCK_SHIFT), db=db)
    if raw is None:
        return np.zeros(0, dtype)
    rows = np.frombuffer(bytes(raw), dtype)
    lo, hi = np.searchsorted(rows["id"], [int(key), int(key) + 1])
    return rows[lo:hi].copy()


def find(rows: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Per id, the index of its row in rows (one row per id, sorted), -1 if none."""
    have = rows["id"]
    at = np.searchsorted(have, ids)
    ok = at < len(have)
    ok[ok] = have[at[ok]] == ids[ok]
    return np.where(ok, at, -1)


def puts(old: np.ndarray, ids: np.ndarray, new: np.ndarray,
         one_per_id: bool = False) -> list[tuple[bytes, bytes]]:
    """The values of every block the ids (distinct) fall in, once the rows of those ids
    in old (every row of those blocks, sorted by id) are replaced by new (rows of those
    ids only, sorted by id, a card's rows in their order; an id may have none). old is
    changed (read_blocks' rows are the caller's own copy). one_per_id: the table holds
    at most one row per id (totals, statuses; not the lots), and new one per id."""
    if len(ids) == 0:
        return []
    ids = np.asarray(ids, np.uint64)
    if one_per_id and len(old):
        # Every id already stored (the steady state): the rows are replaced where they
        # are in old, nothing is sorted.
        at = find(old, ids)
        if (at >= 0).all():
            old[at] = new
            return _split(old, blocks_of(ids))
    drop = np.isin(old["id"], ids)
    keep = old[~drop] if drop.any() else old
    if len(keep) and len(new):
        both = np.concatenate((keep, new))
        both = both[stable_argsort(both["id"])]
    else:
        both = new if len(new) else keep
    return _split(both, blocks_of(ids))


def _split(both: np.ndarray, touched: np.ndarray) -> list[tuple[bytes, memoryview]]:
    """(block key, its rows of both) for every block touched."""
    shift = np.uint64(BLOCK_SHIFT)
    lo = np.searchsorted(both["id"], touched << shift).tolist()
    hi = np.searchsorted(both["id"], (touched + np.uint64(1)) << shift).tolist()
    # Zero-copy slices of the merged rows (the memoryview keeps them alive until put).
    body = memoryview(np.ascontiguousarray(both).view(np.uint8).reshape(-1))
    w = both.dtype.itemsize
    return [(k, body[a * w:b * w]) for k, a, b in zip(u64_keys(touched), lo, hi, strict=True)]
