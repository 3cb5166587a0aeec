"""core.idsets against the numpy calls it replaces (same results, by a sort), and a scan
of core/ for the hash-based calls it exists to keep out."""

import ast

import numpy as np
import pytest
from common import ROOT

from core.idsets import isin_ids, unique_ids


def _cases(rng):
    return [
        rng.integers(1, 50, 1_000),                       # many repeats
        rng.permutation(10_000),                          # distinct, any order
        rng.integers(0, 2**63, 5_000, dtype=np.uint64),   # sparse, wide
        np.array([2**64 - 1, 0, 2**64 - 1], dtype=np.uint64),
        [7],
        [],
    ]


def test_unique_ids_is_np_unique():
    rng = np.random.default_rng(11)
    for ids in _cases(rng):
        got = unique_ids(ids)
        want = np.unique(np.asarray(ids, dtype=np.uint64))
        assert got.dtype == np.uint64 and np.array_equal(got, want)


def test_unique_ids_keeps_the_dtype_asked_for_negatives_included():
    rng = np.random.default_rng(12)
    ids = rng.integers(-1_000, 1_000, 4_000)
    got = unique_ids(ids, np.int64)
    assert got.dtype == np.int64 and np.array_equal(got, np.unique(ids))
    assert unique_ids(np.zeros(0, np.int64), np.int64).dtype == np.int64


@pytest.mark.parametrize("n_ids,n_among", [(1_000, 1_000), (5_000, 10), (10, 5_000), (0, 10),
                                            (10, 0), (1, 1), (1, 2)])
def test_isin_ids_is_np_isin(n_ids, n_among):
    rng = np.random.default_rng(n_ids * 7 + n_among)
    among = rng.integers(1, 3 * max(n_among, 1), n_among).astype(np.uint64)
    ids = rng.integers(0, 3 * max(n_among, 1) + 2, n_ids).astype(np.uint64)
    got = isin_ids(ids, among)
    want = np.isin(ids, among)
    assert got.dtype == bool and got.shape == ids.shape and np.array_equal(got, want)
    if n_ids > 1 and n_among > 1:
        assert got.any() and not got.all()


def test_isin_ids_at_the_edges_of_the_range_and_other_int_dtypes():
    among = np.array([0, 2**64 - 1], dtype=np.uint64)
    ids = np.array([2**64 - 1, 1, 0, 2**64 - 2, 0], dtype=np.uint64)
    assert isin_ids(ids, among).tolist() == [True, False, True, False, True]
    # int64 card numbers from a journal column against a uint64 set: equal values match.
    assert isin_ids(np.array([5, 6, 7], np.int64), np.array([7, 5], np.uint64)).tolist() == \
        [True, False, True]
    # A two-dimensional input keeps its shape.
    grid = np.arange(12, dtype=np.uint64).reshape(3, 4)
    assert np.array_equal(isin_ids(grid, [3, 11, 40]), np.isin(grid, [3, 11, 40]))




def _hash_calls(tree: ast.AST) -> list[tuple[int, str]]:
    """np.unique without any return_*/axis argument, np.intersect1d without
    assume_unique: the calls numpy 2.x answers with its hash table."""
    out = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "np"):
            continue
        kw = {k.arg for k in node.keywords}
        if node.func.attr == "unique" and not kw & {"return_index", "return_inverse",
                                                     "return_counts", "axis"}:
            out.append((node.lineno, "np.unique"))
        elif node.func.attr == "intersect1d" and "assume_unique" not in kw:
            out.append((node.lineno, "np.intersect1d"))
    return out


def test_the_scan_finds_a_hash_unique():
    assert _hash_calls(ast.parse("np.unique(a)\nnp.unique(a, return_index=True)\n"
                                 "np.intersect1d(a, b)\n")) == [(1, "np.unique"),
                                                                 (3, "np.intersect1d")]


def test_core_uses_idsets_not_numpys_hash_unique():
    bad = []
    for path in sorted((ROOT / "core").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        for line, what in _hash_calls(ast.parse(path.read_text())):
            bad.append(f"{rel}:{line}: {what} (use core.idsets)")
    assert not bad, "\n".join(bad)
