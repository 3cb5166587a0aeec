"""core.engine.card_blocks: per-id rows stored in blocks of ids, merged flush by flush,
against a plain dict of id -> rows (in LMDB, as the tailer uses them)."""

import lmdb
import numpy as np

from core.engine import card_blocks
from core.engine.storage import u64

ROW = np.dtype([("id", "<u8"), ("v", "<i8")])
SPAN = 1 << card_blocks.BLOCK_SHIFT


def _rows(d: dict[int, list[int]]) -> np.ndarray:
    out = [(i, v) for i in sorted(d) for v in d[i]]
    return np.array(out, ROW) if out else np.zeros(0, ROW)


def _apply(env, db, ids, new, one_per_id=False):
    ids = np.array(sorted(ids), np.uint64)
    with env.begin() as txn:
        old = card_blocks.read_blocks(txn, db, card_blocks.blocks_of(ids), ROW)
        pairs = card_blocks.puts(old, ids, new, one_per_id)
        pairs = [(k, bytes(v)) for k, v in pairs]
    with env.begin(write=True) as txn:
        txn.cursor(db=db).putmulti(pairs)
    return pairs


def test_variable_rows_per_id_merge_like_a_dict_and_every_touched_block_is_written(tmp_path):
    env = lmdb.open(str(tmp_path), max_dbs=2, map_size=1 << 26)
    db = env.open_db(b"t")
    rng = np.random.default_rng(7)
    want: dict[int, list[int]] = {}
    ids_ever: set[int] = set()
    for _ in range(40):
        ids = set(rng.choice(4 * SPAN, int(rng.integers(1, 60)), replace=False).tolist())
        ids |= {4 * SPAN + 3} if rng.random() < 0.3 else set()
        upd = {i: rng.integers(-9, 9, int(rng.integers(0, 3))).tolist() for i in ids}
        pairs = _apply(env, db, ids, _rows(upd))
        # Every block an id falls in is written, emptied or not.
        assert [k for k, _ in pairs] == [u64(b) for b in sorted({i // SPAN for i in ids})]
        for i, v in upd.items():
            if v:
                want[i] = v
            else:
                want.pop(i, None)
        ids_ever |= ids
        with env.begin() as txn:
            got = card_blocks.read_all(txn, db, ROW)
            assert got.tobytes() == _rows(want).tobytes()
            blocks = [card_blocks.decode([(k, v)], ROW) for k, v in txn.cursor(db=db)]
            keys = [bytes(k) for k in txn.cursor(db=db).iternext(values=False)]
            i = int(rng.choice(sorted(ids_ever)))
            assert card_blocks.read_one(txn, db, i, ROW)["v"].tolist() == want.get(i, [])
        assert keys == [u64(b) for b in sorted({i // SPAN for i in ids_ever})]
        for k, b in zip(keys, blocks, strict=True):
            assert (b["id"] // SPAN == int.from_bytes(k, "big")).all()


def test_one_row_per_id_in_place_and_with_new_ids_give_the_same_bytes(tmp_path):
    env = lmdb.open(str(tmp_path), max_dbs=2, map_size=1 << 26)
    db = env.open_db(b"t")
    want: dict[int, list[int]] = {}
    rng = np.random.default_rng(11)
    for step in range(30):
        if step % 2 and want:        # ids all stored: replaced in place
            have = sorted(want)
            ids = set(rng.choice(have, min(len(have), 150), replace=False).tolist())
        else:                        # some new ids among them
            ids = set(rng.choice(SPAN * 5, int(rng.integers(1, 200)), replace=False).tolist())
        upd = {i: [int(rng.integers(0, 1000))] for i in ids}
        _apply(env, db, ids, _rows(upd), one_per_id=True)
        want.update(upd)
        with env.begin() as txn:
            assert card_blocks.read_all(txn, db, ROW).tobytes() == _rows(want).tobytes()
            rows = card_blocks.read_all(txn, db, ROW)
            probe = np.array([0, 1, SPAN * 9, *sorted(ids)[:3]], np.uint64)
            at = card_blocks.find(rows, probe)
            # Each id's row where it is stored, -1 where it is not (SPAN * 9 never is).
            for i, k in zip(probe.tolist(), at.tolist(), strict=True):
                assert (rows["id"][k] == i) if i in want else k == -1, (i, k)
            assert at[2] == -1 and (at[3:] >= 0).all()
