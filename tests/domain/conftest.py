"""Fixtures of the card-admin domain tests (cards' lifecycle, levels, points
administration): a settable clock at T0 and a fresh engine on it. A test module that
defines its own clock or eng uses that instead."""

from __future__ import annotations

import pytest
from test_cards_lifecycle import Clock

from core import Engine


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def eng(tmp_path, clock):
    e = Engine(str(tmp_path / "data"), clock=clock)
    yield e
    e.close()
