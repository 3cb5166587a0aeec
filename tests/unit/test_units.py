"""Money and time as people write and read them (core.domain.units): the one yuan
formatter and parser, and ISO times in the chain's zone, with their edge cases."""

from __future__ import annotations

import datetime

import pytest

from core.domain import report_export, units
from core.domain.member_view import _year_start, points_lots

SHANGHAI = 8 * 3600


@pytest.mark.parametrize(("fen", "text"), [
    (0, "0.00"), (1, "0.01"), (10, "0.10"), (99, "0.99"), (100, "1.00"), (1230, "12.30"),
    (-1, "-0.01"), (-5, "-0.05"), (-100, "-1.00"), (-123456, "-1234.56"),
    (2**63 - 1, "92233720368547758.07"), (-(2**63), "-92233720368547758.08"),
    (10**20 + 7, "1000000000000000000.07"),
])
def test_yuan_text(fen, text):
    assert units.yuan_text(fen) == text
    # The reports' CSV uses the very same function.
    assert report_export.yuan_text is units.yuan_text


@pytest.mark.parametrize(("text", "fen"), [
    ("0", 0), ("0.01", 1), ("0.1", 10), ("12", 1200), ("12.3", 1230), ("12.30", 1230),
    ("12.05", 1205), ("007.5", 750), ("92233720368547758.07", 2**63 - 1),
])
def test_parse_yuan(text, fen):
    assert units.parse_yuan(text) == fen
    assert units.parse_yuan(units.yuan_text(fen)) == fen


@pytest.mark.parametrize("text", [
    "12.345", "0.001", "12.", ".5", "", " 12", "12 ", "1,000", "1_000", "1e3", "+5",
    "１２", "١٢", "12.3.4", "abc", "-", "0x10", "92233720368547758.08", "inf", "nan",
])
def test_parse_yuan_refuses(text):
    with pytest.raises(ValueError):
        units.parse_yuan(text)


def test_parse_yuan_says_why_for_too_many_decimals():
    with pytest.raises(ValueError, match="at most two decimals"):
        units.parse_yuan("12.345")


def test_negative_yuan_only_when_allowed():
    with pytest.raises(ValueError, match="negative"):
        units.parse_yuan("-0.01")
    assert units.parse_yuan("-0.01", allow_negative=True) == -1
    assert units.parse_yuan("-12.3", allow_negative=True) == -1230


def test_parse_yuan_is_exact_where_a_float_is_not():
    # 0.1 + 0.2 in floats is 0.30000000000000004; 1.15 * 100 is 114.99999999999999.
    assert units.parse_yuan("1.15") == 115
    assert units.parse_yuan("0.29") == 29
    assert units.parse_yuan("4503599627370497.01") == 450359962737049701


def _unix(*args, tz=SHANGHAI) -> int:
    t = datetime.datetime(*args, tzinfo=datetime.timezone(datetime.timedelta(seconds=tz)))
    return (t - datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)).days * 86400 + \
        (t - datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)).seconds


@pytest.mark.parametrize(("text", "want"), [
    ("2026-12-01", _unix(2026, 12, 1)),
    ("2026-12-01T08:30", _unix(2026, 12, 1, 8, 30)),
    ("2026-12-01 08:30:15", _unix(2026, 12, 1, 8, 30, 15)),
    ("2026-12-01T00:00:00+00:00", _unix(2026, 12, 1, tz=0)),
    ("2026-12-01T00:00:00Z", _unix(2026, 12, 1, tz=0)),
    ("2024-02-29", _unix(2024, 2, 29)),
    ("1700000000", 1_700_000_000),
])
def test_parse_time(text, want):
    assert units.parse_time(text, SHANGHAI) == want


def test_parse_time_uses_the_chains_zone():
    assert units.parse_time("2026-12-01", 0) - units.parse_time("2026-12-01", SHANGHAI) == SHANGHAI
    assert units.parse_time("2026-12-01") == units.parse_time("2026-12-01", SHANGHAI)


@pytest.mark.parametrize("text", ["", "2026-13-01", "2025-02-29", "01/12/2026", "tomorrow",
                                  " 2026-12-01", "2026-12-01 ", "２０２６-12-01", "-5",
                                  "2026-12-01T25:00"])
def test_parse_time_refuses(text):
    with pytest.raises(ValueError):
        units.parse_time(text, SHANGHAI)


def test_iso_time_and_date_in_the_chains_zone():
    t = _unix(2026, 12, 31, 23, 59, 59)
    assert units.iso_time(t, SHANGHAI) == "2026-12-31T23:59:59+08:00"
    assert units.iso_date(t, SHANGHAI) == "2026-12-31"
    assert units.iso_date(t, 0) == "2026-12-31"
    assert units.iso_date(t + 1, SHANGHAI) == "2027-01-01"
    assert units.parse_time(units.iso_time(t, SHANGHAI), 0) == t


def test_points_lots_say_when_each_expires():
    card = {"lot_year": 2025, "lot0_points": 5, "lot1_points": 0, "lot2_points": 7}
    lots = points_lots(card, 1, SHANGHAI)
    assert lots == [
        {"year": 2025, "points": 5, "expires_at_s": _unix(2027, 1, 1), "valid_until": "2026-12-31"},
        {"year": 2027, "points": 7, "expires_at_s": _unix(2029, 1, 1), "valid_until": "2028-12-31"},
    ]
    assert [lot["expires_at_s"] for lot in points_lots(card, 0, SHANGHAI)] == [0, 0]
    assert points_lots({"lot_year": 0}, 1, SHANGHAI) == []
    assert _year_start(1970, 0) == 0 and _year_start(1970, SHANGHAI) == -SHANGHAI


def test_json_output_writes_64_bit_integers_as_numbers():
    """`--json` is for programs: protobuf's JSON mapping quotes 64-bit integers; the CLI's
    json_doc turns them back into numbers, in nested messages and repeated fields too,
    and leaves strings and smaller integers as they are."""
    from server.cli.session import json_doc
    from server.mms_pb import admin_pb2, types_pb2

    card = types_pb2.Card(card_no=2**63 + 5, principal_fen=9_801, points=-3)
    doc = json_doc(admin_pb2.ShowCardResponse(card=card))
    assert doc["card"]["card_no"] == 2**63 + 5 and doc["card"]["principal_fen"] == 9_801
    assert doc["card"]["points"] == -3
    cols = json_doc(types_pb2.SwipeColumns(card_nos=[1, 2**40], amount_fen=[5, 7]))
    assert cols["card_nos"] == [1, 2**40] and cols["amount_fen"] == [5, 7]
