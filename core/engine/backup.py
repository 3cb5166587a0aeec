"""Hot backup: a consistent copy of a live LMDB environment.

LMDB copies from one read transaction, so the copy is exactly the committed state at
one instant, while the server keeps writing. The card table in the copy is the last
checkpoint; opening the copy replays the journal after it, so every op acknowledged
before the copy's transaction began is in the copy, and nothing half-applied is.
"""

from __future__ import annotations

import os

import lmdb

from core.engine.storage import MAX_DBS, MAX_READERS, from_be


def backup(data_dir: str, dest_dir: str, *, compact: bool = True) -> int:
    """Copy the environment in data_dir (live or not) to dest_dir, which must not exist
    or be empty. Returns the last journal seq the copy holds."""
    if os.path.exists(dest_dir) and os.listdir(dest_dir):
        raise FileExistsError(f"{dest_dir} is not empty")
    os.makedirs(dest_dir, exist_ok=True)
    env = lmdb.open(data_dir, readonly=True, lock=True, max_dbs=MAX_DBS,
                    max_readers=MAX_READERS, create=False)
    try:
        journal = env.open_db(b"journal", create=False)
        with env.begin() as txn:
            cur = txn.cursor(db=journal)
            last = from_be(cur.key()) if cur.last() else 0
            # The copy and the seq come from the same read transaction.
            env.copy(dest_dir, compact=compact, txn=txn)
    finally:
        env.close()
    return last
