"""What the property tests share: weighted choices, a settable clock, and the check of a
batch's results and records against the reference model's."""

from __future__ import annotations

from hypothesis import strategies as st


def weighted(*choices: tuple[int, st.SearchStrategy]) -> st.SearchStrategy:
    """Pick one of the strategies with the given integer weights (one_of is uniform)."""
    total = sum(w for w, _ in choices)

    @st.composite
    def pick(draw):
        k = draw(st.integers(0, total - 1))
        for w, strat in choices:
            if k < w:
                return draw(strat)
            k -= w
        raise AssertionError

    return pick()


class Clock:
    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def compare_batch(got: list, got_recs: list, want: list, want_recs: list, ops: list) -> None:
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        assert g == tuple(int(x) for x in w), (i, ops[i], g, w)
    assert len(got_recs) == len(want_recs)
    for g, w in zip(got_recs, want_recs, strict=True):
        assert g == w, (g, w)
