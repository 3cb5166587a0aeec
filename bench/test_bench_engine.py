"""pytest-benchmark cases for the engine.

    python3 -m pytest bench --benchmark-enable

The figures these print are the benchmark; nothing here asserts a speed.
"""

import os

import numpy as np
import pytest

from core import Engine, EngineConfig, RulesConfig, _fastpath
from core.records import CARD, JOURNAL, OP, RESULT, CardStatus, OpType

N_CARDS = 100_000
BATCH = 4096


@pytest.fixture(scope="module")
def table():
    cards = np.zeros(N_CARDS, dtype=CARD)
    cards["card_no"] = np.arange(1, N_CARDS + 1)
    cards["status"] = CardStatus.ACTIVE
    cards["principal_fen"] = 10**9
    index = _fastpath.KeyMap(N_CARDS)
    index.insert_many(np.zeros(N_CARDS, np.uint64), cards["card_no"].astype(np.uint64),
                      np.arange(N_CARDS, dtype=np.int64), True)
    return cards, index


def _swipes(rng, n, start):
    ops = np.zeros(n, dtype=OP)
    ops["client_hi"] = 1
    ops["client_lo"] = np.arange(start, start + n)
    ops["card_no"] = rng.integers(1, N_CARDS + 1, n)
    ops["amount_fen"] = rng.integers(100, 50_000, n)
    ops["op_type"] = OpType.SWIPE
    return ops


def test_apply_batch_in_memory(benchmark, table):
    """The Cython loop alone: 4096 swipes, no LMDB."""
    cards, index = table
    batcher = _fastpath.Batcher(BATCH)
    rules = RulesConfig().compile()
    ops = _swipes(np.random.default_rng(1), BATCH, 1)
    recs = np.empty(BATCH, dtype=JOURNAL)
    res = np.empty(BATCH, dtype=RESULT)
    ids = _fastpath.KeyMap(16)
    n = benchmark(batcher.apply_batch, ops, cards, index, ids, rules, 1_700_000_000, 1, recs, res)
    assert n == BATCH


def test_engine_durable_batch(benchmark, tmp_path):
    """One submission of 4096 swipes through the writer: apply, fsync'd commit, publish."""
    eng = Engine(str(tmp_path), config=EngineConfig(batch_ops_max=BATCH, checkpoint_ops=10**9))
    eng.issue_cards(np.arange(1, N_CARDS + 1), os.urandom(16)).result()
    for k in range(0, N_CARDS, BATCH):
        ops = np.zeros(min(BATCH, N_CARDS - k), dtype=OP)
        ops["client_hi"] = 2
        ops["client_lo"] = np.arange(k + 1, k + 1 + len(ops))
        ops["card_no"] = np.arange(k + 1, k + 1 + len(ops))
        ops["amount_fen"] = 10**8
        ops["op_type"] = OpType.RECHARGE
        eng.submit(ops).result()
    rng = np.random.default_rng(2)
    counter = [10]

    def one():
        counter[0] += BATCH
        return eng.submit(_swipes(rng, BATCH, counter[0])).result()

    r = benchmark(one)
    assert len(r) == BATCH
    eng.close()
