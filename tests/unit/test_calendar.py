"""Calendar years in the chain's time zone (issue 8, item 4): the fast path's integer
add_years (days-from-civil, no Python objects) against Python's datetime and zoneinfo,
the 29 February rule, and the level validity an upgrade gets through the engine."""

from __future__ import annotations

import datetime
import os
import zoneinfo

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core import Engine
from core.records import OpType, Result
from core.rules import LevelRule, RulesConfig, add_years, add_years_array

SHANGHAI = zoneinfo.ZoneInfo("Asia/Shanghai")
CST = 8 * 3600
# Asia/Shanghai has kept UTC+8 without daylight saving since 1991.
NO_DST_FROM = int(datetime.datetime(1992, 1, 1, tzinfo=SHANGHAI).timestamp())
UNTIL = int(datetime.datetime(2400, 1, 1, tzinfo=SHANGHAI).timestamp())


def local(y, m, d, hh=0, mm=0, tz=SHANGHAI) -> int:
    return int(datetime.datetime(y, m, d, hh, mm, tzinfo=tz).timestamp())


def expected(t_s: int, years: int, tz: datetime.tzinfo) -> int:
    """The same local date and time of day, years later; 29 Feb -> 28 Feb."""
    d = datetime.datetime.fromtimestamp(t_s, tz)
    try:
        return int(d.replace(year=d.year + years).timestamp())
    except ValueError:  # 29 February in a year without one
        return int(d.replace(year=d.year + years, day=28).timestamp())


def test_two_years_from_new_year_2032_is_new_year_2034():
    # 2032 is a leap year: 730 days would end on 2033-12-31.
    t = local(2032, 1, 1)
    assert add_years(t, 2, CST) == local(2034, 1, 1)
    assert add_years(t, 2, CST) - t == 731 * 86_400


def test_29_february_plus_years():
    t = local(2032, 2, 29, 13, 45)
    assert add_years(t, 1, CST) == local(2033, 2, 28, 13, 45)
    assert add_years(t, 2, CST) == local(2034, 2, 28, 13, 45)
    assert add_years(t, 4, CST) == local(2036, 2, 29, 13, 45)
    assert add_years(local(2100, 2, 28), 0, CST) == local(2100, 2, 28)
    assert add_years(local(2096, 2, 29), 4, CST) == local(2100, 2, 28)   # 2100: no leap day
    assert add_years(local(2096, 2, 29), 104, CST) == local(2200, 2, 28)
    assert add_years(local(1996, 2, 29), 4, CST) == local(2000, 2, 29)   # 2000: leap


def test_local_midnight_is_kept_across_the_utc_date():
    # 00:30 in Shanghai is the previous day in UTC; the local date governs.
    t = local(2031, 3, 1, 0, 30)
    assert add_years(t, 1, CST) == local(2032, 3, 1, 0, 30)
    # In UTC the same instant is 2031-02-28 16:30, a year later 2032-02-28 16:30: a day
    # earlier than the chain's answer (2032-02-29 16:30 UTC), because 2032 has a leap day.
    utc = datetime.timezone.utc
    assert add_years(t, 1, 0) == local(2032, 2, 28, 16, 30, tz=utc)
    assert add_years(t, 1, CST) == local(2032, 2, 29, 16, 30, tz=utc)


@settings(max_examples=3000, deadline=None)
@given(st.integers(NO_DST_FROM, UNTIL), st.integers(0, 100))
def test_add_years_matches_zoneinfo_shanghai(t_s, years):
    assert add_years(t_s, years, CST) == expected(t_s, years, SHANGHAI)


@settings(max_examples=2000, deadline=None)
@given(st.integers(0, UNTIL), st.integers(-50, 100),
       st.sampled_from([0, CST, -5 * 3600, 14 * 3600, -14 * 3600, 5 * 3600 + 45 * 60]))
def test_add_years_matches_datetime_in_any_fixed_offset(t_s, years, offset):
    tz = datetime.timezone(datetime.timedelta(seconds=offset))
    if not 1 <= datetime.datetime.fromtimestamp(t_s, tz).year + years <= 9999:
        return
    assert add_years(t_s, years, offset) == expected(t_s, years, tz)


def test_add_years_array_is_the_scalar_rule():
    rng = np.random.default_rng(8)
    t = rng.integers(NO_DST_FROM, UNTIL, 5000)
    n = rng.integers(0, 10, 5000)
    t[:3] = [local(2032, 2, 29), local(2032, 1, 1), local(2031, 12, 31, 23, 59)]
    got = add_years_array(t, n, CST)
    assert got.tolist() == [add_years(int(a), int(b), CST) for a, b in zip(t, n, strict=True)]
    with pytest.raises(ValueError):
        add_years(0, 10**6, CST)
    with pytest.raises(ValueError):
        add_years_array(t[:2], n[:3], CST)


def test_upgrade_validity_is_calendar_years(tmp_path):
    """An upgrade by a swipe on 2032-01-01 (the fast path) and one by the level review
    path use two calendar years: valid until 2034-01-01 local."""
    now = [local(2032, 1, 1, 10)]
    rules = RulesConfig(levels=(LevelRule("regular"),
                                LevelRule("silver", up_spend_fen=1_000, validity_years=2)))
    eng = Engine(str(tmp_path / "d"), rules=rules, clock=lambda: now[0])
    try:
        assert eng.issue_cards([1], os.urandom(16)).result().code == Result.OK
        assert eng.recharge(1, 5_000, os.urandom(16)).result().codes[0] == Result.OK
        r = eng.swipe(1, 1_000, os.urandom(16)).result()
        assert r.codes[0] == Result.OK
        card = eng.card(1)
        assert card["level"] == 1
        assert card["level_expires_at_s"] == local(2034, 1, 1, 10)
        rec = eng.card_journal(1, 1)[0]
        assert int(rec["op_type"]) == OpType.SWIPE
    finally:
        eng.close()


def test_level_rule_takes_days_or_years_not_both():
    from core.rules import RulesError
    bad = RulesConfig(levels=(LevelRule("a"), LevelRule("b", validity_days=1, validity_years=1)))
    with pytest.raises(RulesError, match="not both"):
        bad.validate()
    assert [lv.validity_years for lv in RulesConfig().levels] == [0, 2, 2]
