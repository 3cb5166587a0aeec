"""Money and time as people write and read them, in one place.

Programs get integers: fen and unix seconds. People read yuan with two decimals and ISO
dates and times in the chain's time zone (RulesConfig.tz_offset_s, default +08:00 =
Asia/Shanghai), and write them the same way. Every conversion here is integer
arithmetic on the text's digits: no float ever holds an amount.

    yuan_text(1230) == "12.30"          parse_yuan("12.3") == 1230
    parse_yuan("12.345") -> ValueError  (a fen is the smallest unit)
    iso_time(1764518400, 8 * 3600) == "2025-12-01T00:00:00+08:00"
    parse_time("2025-12-01", 8 * 3600) == 1764518400   (the day's first second)
"""

from __future__ import annotations

import datetime
import re

from core.records import is_ascii_digits

# The largest amount parse_yuan takes, in fen: what an int64 column holds.
YUAN_FEN_MAX = 2**63 - 1
# The chain's time zone when nothing else says: Asia/Shanghai (no daylight saving).
DEFAULT_TZ_OFFSET_S = 8 * 3600

_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
_YUAN = re.compile(r"(-?)([0-9]+)(?:\.([0-9]{1,2}))?")


def yuan_text(fen: int) -> str:
    """Integer fen as yuan with two decimals: -5 -> "-0.05", 123456 -> "1234.56"."""
    fen = int(fen)
    sign = "-" if fen < 0 else ""
    return f"{sign}{abs(fen) // 100}.{abs(fen) % 100:02d}"


def parse_yuan(text: str, *, allow_negative: bool = False) -> int:
    """Yuan as people write them ("12", "12.3", "12.30", "0.01") -> integer fen.

    Refused (ValueError): more than two decimals ("12.345": a fen is the smallest unit),
    anything but ASCII digits and one point ("1,000", "1e3", " 12", "１２", "12."),
    a minus unless allow_negative, and amounts past YUAN_FEN_MAX."""
    if not isinstance(text, str):
        raise ValueError("an amount is text such as 12.30")
    m = _YUAN.fullmatch(text)
    if m is None:
        if re.fullmatch(r"-?[0-9]+\.[0-9]{3,}", text):
            raise ValueError(f"{text!r}: at most two decimals (a fen is the smallest unit)")
        raise ValueError(f"{text!r} is not an amount in yuan such as 12.30")
    sign, whole, frac = m.groups()
    if sign and not allow_negative:
        raise ValueError(f"{text!r}: the amount must not be negative")
    fen = int(whole) * 100 + int((frac or "").ljust(2, "0"))
    if fen > YUAN_FEN_MAX:
        raise ValueError(f"{text!r}: at most {yuan_text(YUAN_FEN_MAX)} yuan")
    return -fen if sign else fen


def _tz(tz_offset_s: int) -> datetime.timezone:
    return datetime.timezone(datetime.timedelta(seconds=int(tz_offset_s)))


def iso_time(t_s: int, tz_offset_s: int = DEFAULT_TZ_OFFSET_S) -> str:
    """Unix seconds as an ISO date-time in the chain's zone: 2026-12-01T08:30:00+08:00."""
    return datetime.datetime.fromtimestamp(int(t_s), _tz(tz_offset_s)).isoformat()


def iso_date(t_s: int, tz_offset_s: int = DEFAULT_TZ_OFFSET_S) -> str:
    """Unix seconds as the ISO date of that instant in the chain's zone."""
    return datetime.datetime.fromtimestamp(int(t_s), _tz(tz_offset_s)).date().isoformat()


def parse_time(text: str, tz_offset_s: int = DEFAULT_TZ_OFFSET_S) -> int:
    """A time as people write it -> unix seconds.

    - an ISO date "2026-12-01": that day's first second in the chain's zone;
    - an ISO date-time "2026-12-01T08:30", "2026-12-01 08:30:15": in the chain's zone
      unless it names its own offset ("...+08:00", "...Z");
    - digits only: unix seconds as they are (for scripts).
    Anything else is a ValueError naming the forms."""
    if not isinstance(text, str) or not text or text != text.strip():
        raise ValueError(f"{text!r} is not a time: use 2026-12-01 or 2026-12-01T08:30")
    if is_ascii_digits(text):
        return int(text)
    if not text.isascii():
        raise ValueError(f"{text!r} is not a time: use ASCII digits, 2026-12-01T08:30")
    try:
        if len(text) == 10:
            d = datetime.date.fromisoformat(text)
            t = datetime.datetime(d.year, d.month, d.day, tzinfo=_tz(tz_offset_s))
        else:
            t = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
            if t.tzinfo is None:
                t = t.replace(tzinfo=_tz(tz_offset_s))
    except ValueError:
        raise ValueError(f"{text!r} is not a time: use 2026-12-01 or 2026-12-01T08:30 "
                         "(the chain's time zone) or unix seconds") from None
    # Integer seconds from the epoch (timestamp() would go through a float).
    return (t - _EPOCH) // datetime.timedelta(seconds=1)


__all__ = ["DEFAULT_TZ_OFFSET_S", "YUAN_FEN_MAX", "iso_date", "iso_time", "parse_time",
           "parse_yuan", "yuan_text"]
