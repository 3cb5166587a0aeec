"""Sets of ids (card numbers, member ids, coupon ids) as sorted numpy arrays, by a sort.

numpy 2.x finds the distinct values of an array with a hash table when it is asked for
nothing else (np.unique without return_index/inverse/counts, and so np.isin and
np.intersect1d without assume_unique, which call it): on 1,000,000 uint64 ids that took
0.7-1.9 s, 50-100x a sort, and held the GIL throughout, stalling the swipes' threads
(docs/benchmarks.md: h12s session 7, hrev session 8). These give the same results by a
sort. Below core/engine and core/domain, so both may use them (one place for the rule).
"""

from __future__ import annotations

import numpy as np


def unique_ids(ids, dtype=np.uint64) -> np.ndarray:
    """The sorted distinct values of ids as dtype (uint64 unless told): np.unique's
    result, by a sort and a mask."""
    a = np.sort(np.asarray(ids, dtype=dtype))
    if len(a) < 2:
        return a
    keep = np.empty(len(a), bool)
    keep[0] = True
    np.not_equal(a[1:], a[:-1], out=keep[1:])
    return a[keep]


def isin_ids(ids, among) -> np.ndarray:
    """Per value of ids, whether it is among `among`: np.isin(ids, among)'s result, by
    sorts (ids are looked up in sorted order, so the probes of the sorted set walk it
    forward instead of jumping about it). Both are compared as uint64."""
    a = np.asarray(ids, dtype=np.uint64)
    hit = np.zeros(a.shape, bool)
    s = unique_ids(among)
    if len(s) == 0 or a.size == 0:
        return hit
    flat = a.reshape(-1)
    order = np.argsort(flat)
    sa = flat[order]
    at = np.searchsorted(s, sa)
    np.minimum(at, len(s) - 1, out=at)
    hit.reshape(-1)[order] = s[at] == sa
    return hit
