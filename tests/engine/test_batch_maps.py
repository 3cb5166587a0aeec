"""The Batcher's per-batch map of client ids is emptied for each batch with room for
that batch only (KeyMap.reset): a retry within a batch is still found whatever the
sizes of the batches before it, small after large and large after small."""

import os

import numpy as np

from core import Engine, EngineConfig
from core.records import OP, OpType, Result


def _ops(cards, ids: list[int], ns: int, op_type=OpType.SWIPE, amount: int = 7) -> np.ndarray:
    ops = np.zeros(len(ids), dtype=OP)
    ops["client_hi"] = ns
    ops["client_lo"] = ids
    ops["card_no"] = cards[np.arange(len(ids)) % len(cards)]
    ops["amount_fen"] = amount
    ops["op_type"] = op_type
    return ops


def test_retries_within_a_batch_are_found_after_batches_of_any_size(tmp_path):
    eng = Engine(str(tmp_path), config=EngineConfig(batch_ops_max=4096, rollups=False))
    cards = np.arange(1, 201, dtype=np.uint64)
    try:
        eng.issue_cards(cards, os.urandom(16)).result()
        eng.submit(_ops(cards, list(range(1, 201)), 1, OpType.RECHARGE, 10_000_000)).result()
        ns = 10
        # Sizes that move the map's table up and down: 1, 3, 4,096, 2, 700, 1, 4,096, 5.
        prev = None
        for size in (1, 3, 4096, 2, 700, 1, 4096, 5):
            ns += 1
            ids = list(range(1, size + 1))
            # The batch's last op repeats its first op's id: the same op again.
            ops = _ops(cards, ids + [1] if size < 4096 else ids[:-1] + [1], ns)
            retry = prev is not None and len(ops) > 2
            if retry:
                # ... and its second op retries the previous batch's last new op, found
                # in the id index with its own record, not in a stale slot of the map.
                p_ns, p_id, p_seq = prev
                ops[1]["client_hi"] = p_ns
                ops[1]["client_lo"] = p_id
            res = eng.submit(ops).result()
            codes, replayed = res.codes.tolist(), res.replayed.astype(bool).tolist()
            seq = res.seq.tolist()
            assert codes == [Result.OK] * len(ops)
            assert replayed[-1] and seq[-1] == seq[0], size     # the first op's record
            if retry:
                assert replayed[1] and seq[1] == p_seq, size
            fresh = [k for k in range(len(ops)) if not replayed[k]]
            assert len(fresh) == len(ops) - (2 if retry else 1)
            assert len(set(seq[k] for k in fresh)) == len(fresh)
            last = fresh[-1]
            prev = (ns, int(ops[last]["client_lo"]), seq[last])
    finally:
        eng.close()
