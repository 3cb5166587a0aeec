"""The tailer's array helpers (core.engine.storage) against numpy's own: the radix
stable sorts give numpy's stable order exactly, take gives records[sel], and the
tailer's wait after a flush stays within its bounds."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from core.engine import rollups
from core.engine.storage import group_runs, stable_argsort, stable_lexsort, take, u64, u64_keys
from core.records import JOURNAL

_bits = st.sampled_from([1, 4, 16, 17, 33, 48, 62])


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 3000), _bits, st.booleans(), st.integers(0, 2**32))
def test_stable_argsort_is_numpys_stable_order(n, bits, signed, seed):
    rng = np.random.default_rng(seed)
    hi = 2 ** bits
    keys = rng.integers(-hi // 2 if signed else 0, hi, n)
    if not signed:
        keys = keys.astype(np.uint64) + np.uint64(seed % 1000)
    assert np.array_equal(stable_argsort(keys), np.argsort(keys, kind="stable"))


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2000), st.lists(_bits, min_size=1, max_size=4), st.integers(0, 2**32))
def test_stable_lexsort_is_numpys_lexsort(n, bits, seed):
    rng = np.random.default_rng(seed)
    cols = [rng.integers(0, 2 ** b, n) for b in bits]
    assert np.array_equal(stable_lexsort(cols), np.lexsort(cols))


def test_take_copies_whole_records():
    rng = np.random.default_rng(7)
    recs = np.zeros(50, JOURNAL)
    recs.view(np.uint8)[:] = rng.integers(0, 256, recs.nbytes, dtype=np.uint8)
    sel = rng.integers(0, 50, 80)
    got = take(recs, sel)
    assert got.dtype == JOURNAL
    assert got.tobytes() == recs[sel].tobytes()


def test_flush_wait_is_bounded():
    lo, hi = rollups.ROLLUP_FLUSH_INTERVAL_S, rollups.ROLLUP_FLUSH_WAIT_MAX_S
    assert rollups.flush_wait_s(0.0, 10) == lo
    assert rollups.flush_wait_s(100.0, 10) == hi
    d = 0.6
    want = d * (10_000 - rollups.ROLLUP_DUTY_BP) / rollups.ROLLUP_DUTY_BP
    assert rollups.flush_wait_s(d, 10) == min(hi, max(lo, want))
    # A backlog (a full flush) is summed on after the least interval.
    assert rollups.flush_wait_s(100.0, rollups.ROLLUP_FLUSH_RECORDS_MAX) == lo


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 2000), st.lists(_bits, min_size=1, max_size=3), st.integers(0, 2**32))
def test_group_runs_orders_and_cuts_like_lexsort(n, bits, seed):
    rng = np.random.default_rng(seed)
    cols = [rng.integers(-(2 ** b), 2 ** b, n) for b in bits]
    order, starts = group_runs(*cols)
    assert np.array_equal(order, np.lexsort(cols[::-1]))
    rows = np.stack(cols, axis=1)[order]
    want = [0] + [j for j in range(1, n) if (rows[j] != rows[j - 1]).any()]
    assert starts.tolist() == want


def test_u64_keys_are_u64s():
    xs = np.array([0, 1, 2**40, 2**64 - 1], np.uint64)
    assert u64_keys(xs) == [u64(int(x)) for x in xs.tolist()]
    assert u64_keys(np.array([5, 7], np.int64)) == [u64(5), u64(7)]
    assert u64_keys(np.zeros(0, np.uint64)) == []
