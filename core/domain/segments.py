"""Segments, rule tags and RFM classes: who the members are, as numpy columns.

A *segment* is a named, saved filter over the members: a definition (a dict, JSON) of
conditions on the profile, the cards, the behaviour the rollup tailer keeps
(core/engine/behaviour.py), tags (manual and rule) and RFM classes. `resolve` turns a
saved segment's name or a definition into the sorted unique member ids (uint64) it
holds, with one vectorised numpy expression per condition over columns of one row per
member id (no Python step per member on that path); `count` is its length.

Definition grammar (docs/segments.md has every field and the rules):

    cond  := {"field": F, "op": OP, "value": V}
    group := {"all": [node, ...]} | {"any": [node, ...]} | {"not": node}
    node  := cond | group

OP is one of eq, ne, in, not_in, gt, gte, lt, lte, between ([lo, hi], inclusive).
A member whose value is unknown for a field (no birthday for age, never visited for
days_since_visit) matches no condition on it, whatever the op (`not` inverts that).

Writes (saved segments, rule tags, their evaluations, the RFM configuration) are admin
ops of the SegmentOp range: journalled, audited, idempotent by client id.

Databases:
    segments          name (UTF-8) -> JSON {"name", "definition", "created_s", "updated_s"}
    rule_tags         name (UTF-8) -> JSON {"name", "rule", "description", "evaluated_s",
                                            "members", "updated_s"}
    rule_tag_members  name (UTF-8) -> u64 LE member ids, ascending (the last evaluation)
    segment_meta      b"rfm" -> JSON, the RFM configuration
"""

from __future__ import annotations

import csv
import datetime as _dt
import enum
import hashlib
import json
import re
import threading
import time
import weakref
from dataclasses import dataclass

import numpy as np

from core.engine import behaviour as beh
from core.engine.rollups import covered_seq, date_of, day_of
from core.engine.storage import u64
from core.engine.writer import AdminContext
from core.records import CardStatus, Result, SegmentOp

# --- limits ----------------------------------------------------------------------------------
SEGMENT_NAME_CHARS_MAX = 64
SEGMENTS_MAX = 1000                 # saved segments in a chain
SEGMENT_CONDITIONS_MAX = 64         # conditions (leaves) in one definition
SEGMENT_DEPTH_MAX = 6               # nesting of all/any/not
SEGMENT_VALUES_MAX = 1000           # values of one in / not_in
SEGMENT_DEFINITION_CHARS_MAX = 65_536
SEGMENT_PAGE_MAX = 1000             # members in one page of a list
RULE_TAGS_MAX = 64                  # rule tags in a chain
WINDOW_DAYS_MAX = 366               # the longest "last N days" window of a behaviour field
# Card columns are patched after a commit when at most 1/8 of the cards moved (a patch
# gathers the moved rows; past that, gathering every column afresh is as cheap).
CARD_PATCH_SHARE = 8
DESCRIPTION_CHARS_MAX = 256

DB_SEGMENTS = "segments"
DB_RULE_TAGS = "rule_tags"
DB_RULE_TAG_MEMBERS = "rule_tag_members"
DB_META = "segment_meta"
SEGMENT_DBS = (DB_SEGMENTS, DB_RULE_TAGS, DB_RULE_TAG_MEMBERS, DB_META)
_RFM_KEY = b"rfm"

_NAME = re.compile(r"^[\w\-. \u4e00-\u9fff]+$")


class SegmentErrorCode(enum.Enum):
    INVALID = "INVALID"          # a malformed definition, name or configuration
    NOT_FOUND = "NOT_FOUND"      # no saved segment / rule tag of that name
    LIMIT = "LIMIT"              # too many segments or rule tags
    NEEDS_MEMBERS = "NEEDS_MEMBERS"  # a profile condition without a MemberStore


_REJECT = {"INVALID": Result.INVALID_ARGUMENT, "NOT_FOUND": Result.NOT_FOUND,
           "LIMIT": Result.FAILED_PRECONDITION, "NEEDS_MEMBERS": Result.FAILED_PRECONDITION}


class SegmentError(ValueError):
    def __init__(self, code: SegmentErrorCode, message: str) -> None:
        super().__init__(f"{code.value}: {message}")
        self.code = code
        self.message = message


def _invalid(msg: str) -> SegmentError:
    return SegmentError(SegmentErrorCode.INVALID, msg)


# --- RFM -------------------------------------------------------------------------------------

class RfmClass(enum.IntEnum):
    """The seed's classes (002 §3, 000): the first rule that holds names the class."""

    POTENTIAL = 1           # 潜在客户: never visited
    NEW = 2                 # new: first visit within new_days
    HIGH_VALUE_LAPSED = 3   # 高级不活跃客户: not recent, monetary high
    CHURNED = 4             # 流失客户: not recent, monetary not high
    LOYAL = 5               # 忠诚客户: recent, frequency high, monetary high
    BIG_SPENDER = 6         # 大客户: recent, monetary high, frequency not high
    RETURNING = 7           # 回头客户: recent, monetary not high


RFM_NAMES = {RfmClass.POTENTIAL: "潜在客户", RfmClass.NEW: "新客户",
             RfmClass.HIGH_VALUE_LAPSED: "高级不活跃客户", RfmClass.CHURNED: "流失客户",
             RfmClass.LOYAL: "忠诚客户", RfmClass.BIG_SPENDER: "大客户",
             RfmClass.RETURNING: "回头客户"}

DEFAULT_RFM = {"recent_days": 90, "new_days": 30, "window_days": 365,
               "frequency": {"quantile_bp": 8000}, "monetary": {"quantile_bp": 8000}}


def validate_rfm(cfg: object) -> dict:
    """A checked RFM configuration (unknown keys rejected, defaults filled)."""
    if not isinstance(cfg, dict):
        raise _invalid("the RFM configuration is an object")
    extra = set(cfg) - set(DEFAULT_RFM)
    if extra:
        raise _invalid(f"unknown RFM keys {sorted(extra)}")
    out = dict(DEFAULT_RFM)
    out.update(cfg)
    for k in ("recent_days", "new_days", "window_days"):
        v = out[k]
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= WINDOW_DAYS_MAX:
            raise _invalid(f"{k} must be an integer 1..{WINDOW_DAYS_MAX}")
    for k in ("frequency", "monetary"):
        t = out[k]
        if not isinstance(t, dict) or len(t) != 1:
            raise _invalid(f"{k} is {{'fixed': N}} or {{'quantile_bp': 0..10000}}")
        (kind, v), = t.items()
        if kind == "fixed":
            if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 2**62:
                raise _invalid(f"{k}.fixed must be a positive integer")
        elif kind == "quantile_bp":
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 10_000:
                raise _invalid(f"{k}.quantile_bp must be 0..10000")
        else:
            raise _invalid(f"{k} is {{'fixed': N}} or {{'quantile_bp': 0..10000}}")
        out[k] = {kind: v}
    return out


def threshold(values: np.ndarray, spec: dict) -> int:
    """The "high" threshold of a score: the fixed value, or the quantile_bp-th quantile of
    the positive values (the value at index (n - 1) * q // 10000 of them sorted, integer:
    no interpolation); a member is high when its value >= the threshold and > 0."""
    if "fixed" in spec:
        return int(spec["fixed"])
    pos = values[values > 0]
    if len(pos) == 0:
        return 1
    k = (len(pos) - 1) * int(spec["quantile_bp"]) // 10_000
    return max(1, int(np.partition(pos, k)[k]))


def rfm_classes(first_day: np.ndarray, last_day: np.ndarray, visits_w: np.ndarray,
                spend_w: np.ndarray, today: int, cfg: dict) -> tuple[np.ndarray, dict]:
    """RfmClass per row (uint8) from the behaviour columns (first_day / last_day as
    stored: day + 1, 0 = never) and the thresholds used."""
    f_thr = threshold(visits_w, cfg["frequency"])
    m_thr = threshold(spend_w, cfg["monetary"])
    visited = last_day > 0
    recent = visited & (today - (last_day - 1) < cfg["recent_days"])
    new = visited & (today - (first_day - 1) < cfg["new_days"])
    f_hi = (visits_w >= f_thr) & (visits_w > 0)
    m_hi = (spend_w >= m_thr) & (spend_w > 0)
    out = np.select(
        [~visited, new, ~recent & m_hi, ~recent, f_hi & m_hi, m_hi],
        [RfmClass.POTENTIAL, RfmClass.NEW, RfmClass.HIGH_VALUE_LAPSED, RfmClass.CHURNED,
         RfmClass.LOYAL, RfmClass.BIG_SPENDER], RfmClass.RETURNING).astype(np.uint8)
    return out, {"frequency_min": f_thr, "monetary_min_fen": m_thr}


# --- fields ----------------------------------------------------------------------------------

_OPS = ("eq", "ne", "in", "not_in", "gt", "gte", "lt", "lte", "between")
_GENDERS = ("M", "F", "U")
_MEMBER_STATUS = {"active": 1, "frozen": 2, "cancelled": 3}
_CARD_STATUS = {s.name.lower(): int(s) for s in CardStatus}
_RFM_VALUES = {c.name.lower(): int(c) for c in RfmClass} | {v: int(k) for k, v in RFM_NAMES.items()}

# field -> (source, kind): kind int (numbers, every op), enum (eq/ne/in/not_in over
# names), str (eq/ne/in/not_in over strings), tag, any (any card: eq/ne/in/not_in).
FIELDS: dict[str, tuple[str, str]] = {
    "member_id": ("profile", "int"),
    "member_status": ("profile", "enum"),
    "home_store": ("profile", "int"),
    "gender": ("profile", "enum"),
    "age": ("profile", "int"),
    "birthday_month": ("profile", "int"),
    "source": ("profile", "str"),
    "enrolled_days": ("profile", "int"),
    "level": ("card", "int"),
    "card_type": ("card", "any"),
    "card_status": ("card", "any"),
    "cards": ("card", "int"),
    "balance_fen": ("card", "int"),
    "principal_fen": ("card", "int"),
    "points": ("card", "int"),
    "visits": ("behaviour", "int"),
    "swipes": ("behaviour", "int"),
    "spend_fen": ("behaviour", "int"),
    "avg_ticket_fen": ("behaviour", "int"),
    "visited": ("behaviour", "int"),
    "days_since_visit": ("behaviour", "int"),
    "days_since_first_visit": ("behaviour", "int"),
    "refunds": ("behaviour", "int"),
    "refund_fen": ("behaviour", "int"),
    "recharges": ("behaviour", "int"),
    "recharge_fen": ("behaviour", "int"),
    "points_earned": ("behaviour", "int"),
    "points_redeemed": ("behaviour", "int"),
    "coupons_redeemed": ("behaviour", "int"),
    "favourite_store": ("behaviour", "int"),
    "favourite_category": ("behaviour", "int"),
    "tag": ("tags", "tag"),
    "rfm_class": ("rfm", "enum"),
}
_WINDOWED = re.compile(r"^(visits|swipes|spend)_(\d{1,3})d$")   # visits_30d, spend_90d, ...
_CUSTOM = re.compile(r"^custom\.(.{1,32})$")


def _field(name: object) -> tuple[str, str]:
    if not isinstance(name, str):
        raise _invalid(f"a field is a name, not {name!r}")
    if name in FIELDS:
        return FIELDS[name]
    m = _WINDOWED.match(name)
    if m:
        if not 1 <= int(m.group(2)) <= WINDOW_DAYS_MAX:
            raise _invalid(f"{name}: a window is 1..{WINDOW_DAYS_MAX} days")
        return ("window", "int")
    if _CUSTOM.match(name):
        return ("custom", "str")
    raise _invalid(f"unknown field {name!r}")


def _int_value(field: str, v: object) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not -(2**63) <= v < 2**63:
        raise _invalid(f"{field}: {v!r} is not an integer")
    return v


def _enum_value(field: str, v: object) -> int | str:
    if field == "gender":
        if v not in _GENDERS:
            raise _invalid(f"gender is one of {_GENDERS}")
        return v
    table = {"member_status": _MEMBER_STATUS, "card_status": _CARD_STATUS,
             "rfm_class": _RFM_VALUES}.get(field)
    if table is not None:
        if isinstance(v, str) and v.lower() in table:
            return table[v.lower()]
        if isinstance(v, str) and v in table:
            return table[v]
        raise _invalid(f"{field} is one of {sorted(k for k in table if k.isascii())}")
    return _int_value(field, v)


def _check_cond(node: dict) -> dict:
    if set(node) - {"field", "op", "value"} or "field" not in node or "op" not in node:
        raise _invalid(f"a condition is {{field, op, value}}: {sorted(node)}")
    field, op = node["field"], node["op"]
    source, kind = _field(field)
    if op not in _OPS:
        raise _invalid(f"{field}: op is one of {_OPS}")
    v = node.get("value")
    if kind in ("enum", "str", "tag", "any") and op not in ("eq", "ne", "in", "not_in"):
        raise _invalid(f"{field}: only eq, ne, in, not_in")
    if kind == "enum" or field == "card_status":
        def one(x):
            return _enum_value(field, x)
    elif kind in ("int", "any"):
        def one(x):
            return _int_value(field, x)
    else:
        def one(x):
            return _str_value(field, x)
    if field == "birthday_month" and v == "current":
        return {"field": field, "op": op, "value": "current"}
    if op in ("in", "not_in"):
        if not isinstance(v, list) or not 1 <= len(v) <= SEGMENT_VALUES_MAX:
            raise _invalid(f"{field}: {op} takes a list of 1..{SEGMENT_VALUES_MAX} values")
        val: object = [one(x) for x in v]
    elif op == "between":
        if not isinstance(v, list) or len(v) != 2:
            raise _invalid(f"{field}: between takes [lo, hi]")
        val = [one(v[0]), one(v[1])]
    else:
        val = one(v)
    return {"field": field, "op": op, "value": val}


def _str_value(field: str, v: object) -> str:
    if not isinstance(v, str) or len(v) > 256:
        raise _invalid(f"{field}: {v!r} is not a string of at most 256 characters")
    return v


def validate_definition(d: object) -> dict:
    """The definition checked and normalised (names of enums become their codes);
    raises SegmentError(INVALID)."""
    leaves = 0

    def walk(node: object, depth: int) -> dict:
        nonlocal leaves
        if depth > SEGMENT_DEPTH_MAX:
            raise _invalid(f"nested deeper than {SEGMENT_DEPTH_MAX}")
        if not isinstance(node, dict):
            raise _invalid("a definition node is an object")
        if "field" in node:
            leaves += 1
            if leaves > SEGMENT_CONDITIONS_MAX:
                raise _invalid(f"more than {SEGMENT_CONDITIONS_MAX} conditions")
            return _check_cond(node)
        if len(node) != 1:
            raise _invalid("a group is exactly one of all, any, not")
        (k, v), = node.items()
        if k in ("all", "any"):
            if not isinstance(v, list):
                raise _invalid(f"{k} takes a list")
            return {k: [walk(x, depth + 1) for x in v]}
        if k == "not":
            return {"not": walk(v, depth + 1)}
        raise _invalid(f"unknown group {k!r}")

    if len(json.dumps(d, default=str)) > SEGMENT_DEFINITION_CHARS_MAX:
        raise _invalid(f"a definition is at most {SEGMENT_DEFINITION_CHARS_MAX} characters of JSON")
    return walk(d, 0)


def _fields_of(d: dict) -> set[str]:
    if "field" in d:
        return {d["field"]}
    if "not" in d:
        return _fields_of(d["not"])
    return set().union(*(_fields_of(x) for x in next(iter(d.values())))) if next(iter(d.values())) else set()


def check_name(name: object, what: str = "segment") -> str:
    if not isinstance(name, str) or not 1 <= len(name) <= SEGMENT_NAME_CHARS_MAX or not _NAME.match(name):
        raise _invalid(f"a {what} name is 1..{SEGMENT_NAME_CHARS_MAX} letters, digits, "
                       "spaces, '-', '_', '.'")
    return name


# --- columns ---------------------------------------------------------------------------------

@dataclass
class BehaviourCols:
    """Behaviour of member rows (row = member id - 1) as of seq, for `today`. The per-day
    rows are kept sorted by member row, so that a window's sums are one masked
    np.add.reduceat (exact int64) instead of a scatter-add."""

    seq: int
    today: int
    n: int
    totals: np.ndarray          # n x TOTAL_COLS
    day_row: np.ndarray         # per-day rows of the last WINDOW_DAYS_MAX days: member row
    day_day: np.ndarray         # ... their day
    day_v: np.ndarray           # ... n x DAY_COLS
    fav_store: np.ndarray | None   # -1 = none; None until a condition asks (favourites())
    fav_cat: np.ndarray | None
    windows: dict

    def __post_init__(self) -> None:
        self.loaded_at = time.monotonic()
        order = np.argsort(self.day_row, kind="stable")
        self.day_row, self.day_day = self.day_row[order], self.day_day[order]
        self.day_v = self.day_v[order]
        r = self.day_row
        self._starts = np.flatnonzero(np.concatenate(([True], r[1:] != r[:-1]))) if len(r) else r
        self._members = r[self._starts] if len(r) else r
        self._cols: dict[str, np.ndarray] = {}

    def col(self, name: str) -> np.ndarray:
        c = self._cols.get(name)
        if c is None:
            c = self._cols[name] = np.ascontiguousarray(self.totals[:, beh.TOTAL_COLS.index(name)])
        return c

    def window(self, what: str, days: int) -> np.ndarray:
        """visits / swipes / spend of days [today - days + 1, today]."""
        key = (what, days)
        w = self.windows.get(key)
        if w is None:
            j = {"visits": 0, "swipes": 1, "spend": 2}[what]
            w = np.zeros(self.n, np.int64)
            if len(self.day_row):
                vals = np.where(self.day_day > self.today - days, self.day_v[:, j], 0)
                w[self._members] = np.add.reduceat(vals, self._starts)
            self.windows[key] = w
        return w


def load_behaviour(store, txn, today: int, n: int) -> BehaviourCols:
    """The behaviour columns of member rows 0..n-1 from the tailer's tables."""
    seq = covered_seq(store, txn)
    ids, tot = beh.read_totals(store, txn, beh.MEMBERS_DB)
    keep = (ids >= 1) & (ids <= n)
    totals = np.zeros((n, len(beh.TOTAL_COLS)), np.int64)
    totals[(ids[keep] - 1).astype(np.int64)] = tot[keep]
    d, m, v = beh.read_days(store, txn, today - WINDOW_DAYS_MAX + 1, today + 1)
    keep = (m >= 1) & (m <= n)
    return BehaviourCols(seq, today, n, totals, (m[keep] - 1).astype(np.int64), d[keep],
                         v[keep], None, None, {})


def load_favourites(store, txn, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The favourite store and category of member rows 0..n-1 (-1 = none)."""
    fav = []
    for table, field in ((beh.STORES_DB, "store"), (beh.CATS_DB, "category")):
        k, vals = beh.read_keyed(store, txn, table)
        mids, f = beh.favourite(k, vals, field)
        col = np.full(n, -1, np.int64)
        ok = (mids >= 1) & (mids <= n)
        col[(mids[ok] - 1).astype(np.int64)] = f[ok]
        fav.append(col)
    return fav[0], fav[1]


class CardCols:
    """The committed cards that belong to member rows 0..n-1, with the columns a
    condition asks for gathered once (contiguous) from the card table. seq: the engine's
    published seq the table was read at (None: unknown), which `refreshed` patches from."""

    def __init__(self, cards: np.ndarray, n: int, seq: int | None = None) -> None:
        self._cards = cards
        self.n, self.n_cards, self.seq = n, len(cards), seq
        # One strided read of the 256-byte rows, then contiguous work.
        mids = np.ascontiguousarray(cards["member_id"])
        self.idx = np.flatnonzero((mids > 0) & (mids <= n))
        self.rows = mids[self.idx].astype(np.int64) - 1
        self.live = cards["status"][self.idx] != CardStatus.CANCELLED
        self.live_rows = self.rows[self.live]
        self._cols: dict[tuple[str, bool], np.ndarray] = {}
        self._live_pos: np.ndarray | None = None

    def refreshed(self, cards: np.ndarray, n: int, seq: int) -> CardCols:
        """The columns as of seq. The cards a commit since self.seq touched (their
        last_seq moved past it: one strided read of the table) are patched into copies
        of the cached columns when none of them moved between members or in or out of
        CANCELLED and no card was added; else the columns are gathered afresh. A swipe
        load touches a few hundred cards a commit, so this costs one pass, not one per
        column (docs/benchmarks.md)."""
        if self.seq is None or n != self.n or len(cards) != self.n_cards:
            return CardCols(cards, n, seq)
        moved = np.flatnonzero(cards["last_seq"] > self.seq)
        if len(moved) > max(len(cards) // CARD_PATCH_SHARE, 1):
            return CardCols(cards, n, seq)
        got = cards[moved]                   # a copy of the moved rows, as published now
        pos = np.minimum(np.searchsorted(self.idx, moved), max(len(self.idx) - 1, 0))
        known = (self.idx[pos] == moved) if len(self.idx) else np.zeros(len(moved), bool)
        mids = got["member_id"]
        if not np.array_equal(known, (mids > 0) & (mids <= n)):
            return CardCols(cards, n, seq)
        p, got = pos[known], got[known]
        if (not np.array_equal(mids[known].astype(np.int64) - 1, self.rows[p])
                or not np.array_equal(got["status"] != CardStatus.CANCELLED, self.live[p])):
            return CardCols(cards, n, seq)
        out = CardCols.__new__(CardCols)
        out.__dict__.update(self.__dict__)
        out._cards, out.seq = cards, seq
        out._cols = {}
        for (name, live), col in self._cols.items():
            col = col.copy()                 # readers of the old columns keep theirs
            if live:
                lp = self.live_pos()[p]
                keep = self.live[p]
                col[lp[keep]] = got[name][keep]
            else:
                col[p] = got[name]
            out._cols[(name, live)] = col
        return out

    def live_pos(self) -> np.ndarray:
        """Each card's position among the live ones (the index of a live column)."""
        if self._live_pos is None:
            self._live_pos = np.cumsum(self.live) - 1
        return self._live_pos

    def col(self, name: str, live: bool = False) -> np.ndarray:
        key = (name, live)
        c = self._cols.get(key)
        if c is None:
            c = self._cards[name][self.idx].astype(np.int64)
            c = c[self.live] if live else c
            self._cols[key] = c
        return c


@dataclass
class ProfileCols:
    """What the search index does not hold, from the member records (a scan, cached by
    the members' write generation)."""

    gen: int
    gender: np.ndarray          # S1: M, F, U
    source: np.ndarray          # object strings
    created_day: np.ndarray     # -1 = unknown
    custom: dict                # row -> {key: value}

    def custom_col(self, key: str, n: int) -> np.ndarray:
        out = np.full(n, "", object)
        for row, c in self.custom.items():
            if row < n and key in c:
                out[row] = str(c[key])
        return out


class Segments:
    """Segments over an engine and (for profile conditions) a MemberStore, with the
    columns cached: behaviour per (tailer seq, today), profile scan per member write
    generation."""

    def __init__(self, engine, members=None) -> None:
        self.engine = engine
        self.members = members
        self._lock = threading.Lock()
        self._beh: BehaviourCols | None = None
        self._prof: ProfileCols | None = None
        self._card_cache: tuple | None = None
        engine.ensure_dbs(SEGMENT_DBS)
        # Read handles come from a committed write transaction (MemberStore's rule).

    # --- time ---------------------------------------------------------------------------

    def tz(self) -> int:
        r = self.engine.rollups
        return r.tz if r is not None else self.engine.rules.tz_offset_s

    def today(self) -> int:
        return (int(self.engine.clock()) + self.tz()) // 86_400

    # --- columns ------------------------------------------------------------------------

    def _index(self) -> dict | None:
        if self.members is None:
            return None
        return self.members._cols.snapshot()  # the search index (core.domain.members.index)

    def _n(self, snap: dict | None) -> int:
        if snap is not None:
            return int(snap["n"])
        cards = self.engine.cards_snapshot()
        return int(cards["member_id"].max(initial=0))

    def behaviour(self, n: int, today: int, stale_s: float = 0.0) -> BehaviourCols:
        """The behaviour columns: those of the seq the tailer covers now, or with
        stale_s > 0 the cached ones while they are younger than that (a load costs
        seconds at 1,000,000 members; the answer names the seq it is of)."""
        store = self.engine.store
        b = self._beh
        if (stale_s > 0 and b is not None and b.today == today and b.n == n
                and time.monotonic() - b.loaded_at < stale_s):
            return b
        with store.read() as txn:
            seq = covered_seq(store, txn)
            if b is not None and b.seq == seq and b.today == today and b.n == n:
                return b
            b = load_behaviour(store, txn, today, n)
        self._beh = b
        return b

    def _profile(self) -> ProfileCols:
        m = self.members
        if m is None:
            raise SegmentError(SegmentErrorCode.NEEDS_MEMBERS, "profile conditions need the member store")
        from core.domain.members.index import read_gen
        from core.domain.members.validate import DB_MEMBERS
        from core.domain.members.validate import DB_META as MEMBER_META
        with m._read() as txn:
            meta = m._rdb(txn, MEMBER_META)
            gen = read_gen(lambda k: txn.get(k, db=meta)) if meta is not None else 0
            p = self._prof
            if p is not None and p.gen == gen:
                return p
            n = m._cols.snapshot()["n"]
            gender = np.full(n, b"U", "S1")
            source = np.full(n, "", object)
            created = np.full(n, -1, np.int64)
            custom: dict[int, dict] = {}
            db = m._rdb(txn, DB_MEMBERS)
            tz = self.tz()
            if db is not None:
                for k, v in txn.cursor(db=db):
                    row = int.from_bytes(bytes(k), "big") - 1
                    if not 0 <= row < n:
                        continue
                    rec = json.loads(bytes(v))
                    gender[row] = (rec.get("gender") or "U").encode()[:1]
                    source[row] = rec.get("source") or ""
                    created[row] = (int(rec.get("created_s", 0)) + tz) // 86_400
                    if rec.get("custom"):
                        custom[row] = rec["custom"]
        p = ProfileCols(gen, gender, source, created, custom)
        self._prof = p
        return p

    def _cards(self, n: int) -> CardCols:
        """The card columns, cached until the engine publishes another record (its last
        published seq, read before the table: a publish meanwhile only rebuilds sooner)."""
        key = (getattr(self.engine, "_last_seq", None), n)
        c = self._card_cache
        if key[0] is not None and c is not None and c[0] == key:
            return c[1]
        cards = self.engine.cards_snapshot()
        if key[0] is not None and c is not None:
            cols = c[1].refreshed(cards, n, key[0])
        else:
            cols = CardCols(cards, n, key[0])
        self._card_cache = (key, cols)
        return cols

    # --- evaluation ---------------------------------------------------------------------

    def mask(self, definition: dict, *, today: int | None = None,
             store_id: int | None = None, stale_s: float = 0.0) -> np.ndarray:
        """A bool per member row of a checked definition (stale_s: Segments.behaviour)."""
        today = self.today() if today is None else int(today)
        snap = self._index()
        n = self._n(snap)
        env = _Env(self, snap, n, today, stale_s)
        exists = snap["status"] != 0 if snap is not None else env.card_members()
        m = exists & env.eval(definition)
        if store_id is not None:
            if snap is None:
                raise SegmentError(SegmentErrorCode.NEEDS_MEMBERS, "a store scope needs the member store")
            m &= snap["store"] == np.uint32(store_id)
        return m

    def definition_of(self, segment: str | dict) -> dict:
        if isinstance(segment, str):
            rec = self.get(segment)
            if rec is None:
                raise SegmentError(SegmentErrorCode.NOT_FOUND, f"no segment {segment!r}")
            return rec["definition"]
        return validate_definition(segment)

    def resolve(self, segment: str | dict, **kw) -> np.ndarray:
        return (np.flatnonzero(self.mask(self.definition_of(segment), **kw)) + 1).astype(np.uint64)

    # --- saved segments -----------------------------------------------------------------

    def _get(self, db: str, key: str) -> dict | None:
        store = self.engine.store
        with store.read() as txn:
            h = store.db.get(db)
            raw = txn.get(key.encode(), db=h) if h is not None else None
        return json.loads(bytes(raw)) if raw is not None else None

    def _all(self, db: str) -> list[dict]:
        store = self.engine.store
        with store.read() as txn:
            h = store.db.get(db)
            return [json.loads(bytes(v)) for _k, v in txn.cursor(db=h)] if h is not None else []

    def get(self, name: str) -> dict | None:
        return self._get(DB_SEGMENTS, name)

    def list(self) -> list[dict]:
        return self._all(DB_SEGMENTS)

    def _submit(self, client_id: bytes, op: SegmentOp, build, operator_id: int, store_id: int):
        res = self.engine.admin(client_id, op, build, operator_id=operator_id,
                                store_id=store_id).result()
        if res.code != Result.OK:
            _, _, msg = res.detail.partition(": ")
            # The code is looked up first and raised after: SegmentError is a ValueError,
            # so raised inside the try it was caught there, and every refusal (NOT_FOUND,
            # LIMIT) came back as INVALID.
            try:
                code = SegmentErrorCode(res.reason)
            except ValueError:
                raise SegmentError(SegmentErrorCode.INVALID, res.detail) from None
            raise SegmentError(code, msg)
        return res

    @staticmethod
    def _out(res, with_result: bool):
        """A write's value (the first op's, on a replay), with its AdminResult if asked."""
        return (res.value, res) if with_result else res.value

    def behaviour_seq(self, stale_s: float = 0.0) -> int:
        """The journal seq the behaviour tables cover (with stale_s, that of the cached
        columns a read with the same stale_s used, when they are young enough)."""
        b = self._beh
        if stale_s > 0 and b is not None and time.monotonic() - b.loaded_at < stale_s:
            return b.seq
        store = self.engine.store
        with store.read() as txn:
            return covered_seq(store, txn)

    @staticmethod
    def _reject(ctx: AdminContext, e: SegmentError):
        ctx.reject(_REJECT[e.code.value], f"{e.code.value}: {e.message}", reason=e.code.value)

    def define(self, name: str, definition: dict, client_id: bytes, *,
               operator_id: int = 0, store_id: int = 0, with_result: bool = False):
        """Save (create or replace) a segment; returns its record."""
        name = check_name(name)
        d = validate_definition(definition)

        def build(ctx: AdminContext):
            old = ctx.get(DB_SEGMENTS, name.encode())
            if old is None and ctx.txn.stat(ctx.db(DB_SEGMENTS))["entries"] >= SEGMENTS_MAX:
                self._reject(ctx, SegmentError(SegmentErrorCode.LIMIT, f"{SEGMENTS_MAX} segments saved"))
            created = json.loads(old)["created_s"] if old is not None else ctx.now
            rec = {"name": name, "definition": d, "created_s": created, "updated_s": ctx.now}
            ctx.put(DB_SEGMENTS, name.encode(), json.dumps(rec, ensure_ascii=False).encode())
            ctx.detail = {"segment": name, "replaced": old is not None}
            return rec

        return self._out(self._submit(client_id, SegmentOp.SEGMENT_PUT, build, operator_id,
                                      store_id), with_result)

    def delete(self, name: str, client_id: bytes, *, operator_id: int = 0, store_id: int = 0,
               with_result: bool = False):
        name = check_name(name)

        def build(ctx: AdminContext):
            if ctx.get(DB_SEGMENTS, name.encode()) is None:
                self._reject(ctx, SegmentError(SegmentErrorCode.NOT_FOUND, f"no segment {name!r}"))
            ctx.delete(DB_SEGMENTS, name.encode())
            ctx.detail = {"segment": name}
            return True

        return self._out(self._submit(client_id, SegmentOp.SEGMENT_DELETE, build, operator_id,
                                      store_id), with_result)

    # --- rule tags ----------------------------------------------------------------------

    def rule_tag(self, name: str) -> dict | None:
        return self._get(DB_RULE_TAGS, name)

    def rule_tags(self) -> list[dict]:
        return self._all(DB_RULE_TAGS)

    def rule_tag_members(self, name: str) -> np.ndarray:
        """The member ids the last evaluation of a rule tag set (ascending)."""
        store = self.engine.store
        with store.read() as txn:
            h = store.db.get(DB_RULE_TAG_MEMBERS)
            raw = txn.get(name.encode(), db=h) if h is not None else None
            return np.frombuffer(bytes(raw), "<u8").astype(np.uint64) if raw else np.zeros(0, np.uint64)

    def define_rule_tag(self, name: str, rule: dict, client_id: bytes, *, description: str = "",
                        operator_id: int = 0, store_id: int = 0, with_result: bool = False):
        """Save a rule tag (the rule is a segment definition; it may not name rule tags
        or RFM classes, so evaluations do not depend on each other's order)."""
        name = check_name(name, "tag")
        d = validate_definition(rule)
        if not isinstance(description, str) or len(description) > DESCRIPTION_CHARS_MAX:
            raise _invalid(f"a description is at most {DESCRIPTION_CHARS_MAX} characters")
        if _fields_of(d) & {"tag"}:
            raise _invalid("a rule tag's rule cannot test tags")

        def build(ctx: AdminContext):
            old = ctx.get(DB_RULE_TAGS, name.encode())
            if old is None and ctx.txn.stat(ctx.db(DB_RULE_TAGS))["entries"] >= RULE_TAGS_MAX:
                self._reject(ctx, SegmentError(SegmentErrorCode.LIMIT, f"{RULE_TAGS_MAX} rule tags"))
            prev = json.loads(old) if old is not None else {}
            rec = {"name": name, "rule": d, "description": description,
                   "evaluated_s": prev.get("evaluated_s", 0), "members": prev.get("members", 0),
                   "updated_s": ctx.now}
            ctx.put(DB_RULE_TAGS, name.encode(), json.dumps(rec, ensure_ascii=False).encode())
            ctx.detail = {"tag": name, "replaced": old is not None}
            return rec

        return self._out(self._submit(client_id, SegmentOp.RULE_TAG_PUT, build, operator_id,
                                      store_id), with_result)

    def delete_rule_tag(self, name: str, client_id: bytes, *, operator_id: int = 0,
                        store_id: int = 0, with_result: bool = False):
        name = check_name(name, "tag")

        def build(ctx: AdminContext):
            if ctx.get(DB_RULE_TAGS, name.encode()) is None:
                self._reject(ctx, SegmentError(SegmentErrorCode.NOT_FOUND, f"no rule tag {name!r}"))
            ctx.delete(DB_RULE_TAGS, name.encode())
            if ctx.get(DB_RULE_TAG_MEMBERS, name.encode()) is not None:
                ctx.delete(DB_RULE_TAG_MEMBERS, name.encode())
            ctx.detail = {"tag": name}
            return True

        return self._out(self._submit(client_id, SegmentOp.RULE_TAG_DELETE, build, operator_id,
                                      store_id), with_result)

    def _cards_seq(self) -> int:
        """The newest journal seq of any card: behaviour changes only with card records."""
        return int(self.engine.cards_snapshot()["last_seq"].max(initial=0))

    def evaluation_id(self, name: str, today: int | None = None, cards_seq: int | None = None) -> bytes:
        """The client id of a scheduled evaluation: a hash of the tag, its rule, the day,
        the newest card record and the members' write generation, so that running the
        schedule twice on the same inputs applies once."""
        today = self.today() if today is None else today
        rec = self.rule_tag(name) or {}
        gen = self._profile().gen if self.members is not None else 0
        seq = self._cards_seq() if cards_seq is None else cards_seq
        h = hashlib.blake2b(digest_size=16)
        h.update(json.dumps([name, rec.get("rule"), rec.get("updated_s"), today, seq, gen],
                            sort_keys=True).encode())
        return h.digest()

    def evaluate_rule_tag(self, name: str, client_id: bytes, *, today: int | None = None,
                          operator_id: int = 0, store_id: int = 0) -> dict:
        """Evaluate one rule tag now: the members its rule holds become its members (set
        and cleared), in one admin op; returns {tag, members, added, removed}."""
        name = check_name(name, "tag")
        rec = self.rule_tag(name)
        if rec is None:
            raise SegmentError(SegmentErrorCode.NOT_FOUND, f"no rule tag {name!r}")
        ids = self.resolve(rec["rule"], today=today)
        updated = rec["updated_s"]

        def build(ctx: AdminContext):
            raw = ctx.get(DB_RULE_TAGS, name.encode())
            if raw is None:
                self._reject(ctx, SegmentError(SegmentErrorCode.NOT_FOUND, f"no rule tag {name!r}"))
            cur = json.loads(raw)
            if cur["updated_s"] != updated or cur["rule"] != rec["rule"]:
                self._reject(ctx, _invalid("the rule changed while it was evaluated: evaluate again"))
            old = ctx.get(DB_RULE_TAG_MEMBERS, name.encode())
            prev = np.frombuffer(old, "<u8") if old else np.zeros(0, np.uint64)
            added = int(len(np.setdiff1d(ids, prev, assume_unique=True)))
            removed = int(len(np.setdiff1d(prev, ids, assume_unique=True)))
            ctx.put(DB_RULE_TAG_MEMBERS, name.encode(), ids.astype("<u8").tobytes())
            cur.update(evaluated_s=ctx.now, members=int(len(ids)))
            ctx.put(DB_RULE_TAGS, name.encode(), json.dumps(cur, ensure_ascii=False).encode())
            out = {"tag": name, "members": int(len(ids)), "added": added, "removed": removed}
            ctx.detail = out
            return out

        return self._submit(client_id, SegmentOp.RULE_TAG_EVAL, build, operator_id, store_id).value

    def evaluate_all(self, *, today: int | None = None, operator_id: int = 0) -> list[dict]:
        """The schedule's run: every rule tag (at most RULE_TAGS_MAX), each with its
        evaluation_id. A run repeated on unchanged inputs replays and changes nothing."""
        seq = self._cards_seq()
        if self.engine.rollups is not None:
            self.engine.rollups.wait_for(seq)    # the behaviour of exactly those records
        out = []
        for rec in self.rule_tags()[:RULE_TAGS_MAX]:
            cid = self.evaluation_id(rec["name"], today, seq)
            out.append(self.evaluate_rule_tag(rec["name"], cid, today=today, operator_id=operator_id))
        return out

    # --- RFM ----------------------------------------------------------------------------

    def rfm_config(self) -> dict:
        store = self.engine.store
        with store.read() as txn:
            h = store.db.get(DB_META)
            raw = txn.get(_RFM_KEY, db=h) if h is not None else None
        return json.loads(bytes(raw)) if raw is not None else dict(DEFAULT_RFM)

    def set_rfm_config(self, cfg: dict, client_id: bytes, *, operator_id: int = 0,
                       store_id: int = 0, with_result: bool = False):
        cfg = validate_rfm(cfg)

        def build(ctx: AdminContext):
            ctx.put(DB_META, _RFM_KEY, json.dumps(cfg).encode())
            ctx.detail = {"rfm": cfg}
            return cfg

        return self._out(self._submit(client_id, SegmentOp.RFM_CONFIG, build, operator_id,
                                      store_id), with_result)

    def rfm(self, *, today: int | None = None, n: int | None = None,
            cfg: dict | None = None, stale_s: float = 0.0) -> tuple[np.ndarray, dict]:
        """RfmClass per member row (0 for rows without a member) and the thresholds."""
        today = self.today() if today is None else int(today)
        snap = self._index()
        n = self._n(snap) if n is None else n
        cfg = validate_rfm(cfg) if cfg is not None else self.rfm_config()
        b = self.behaviour(n, today, stale_s)
        w = cfg["window_days"]
        cls, thr = rfm_classes(b.col("first_day"), b.col("last_day"), b.window("visits", w),
                               b.window("spend", w), today, cfg)
        if snap is not None:
            cls[snap["status"] == 0] = 0
        return cls, thr

    def rfm_counts(self, *, today: int | None = None, store_id: int | None = None,
                   stale_s: float = 0.0) -> dict:
        cls, thr = self.rfm(today=today, stale_s=stale_s)
        if store_id is not None:
            snap = self._index()
            cls = np.where(snap["store"] == np.uint32(store_id), cls, 0)
        counts = np.bincount(cls, minlength=len(RfmClass) + 1)
        return {"classes": [{"class": c.name.lower(), "name": RFM_NAMES[c], "members": int(counts[c])}
                            for c in RfmClass], **thr}

    # --- one member's behaviour --------------------------------------------------------------

    def member_stats(self, member_id: int, *, today: int | None = None) -> dict | None:
        """One member's behaviour as of the tailer's seq (None: no record of theirs yet):
        the lifetime totals, visits / swipes / spend of the last 30, 90 and 365 days,
        average ticket, favourite store and category, days since the first and last
        visit (None when never), ISO dates of the first and last visit. Reads only this
        member's keys (one `beh_days` value per day of the last year)."""
        return self._stats(beh.MEMBERS_DB, int(member_id), today)

    def card_stats(self, card_no: int, *, today: int | None = None) -> dict | None:
        """The lifetime behaviour totals of one card (no windows: those are per member)."""
        return self._stats(beh.CARDS_DB, int(card_no), today)

    def _stats(self, table: str, key: int, today: int | None) -> dict | None:
        today = self.today() if today is None else int(today)
        store = self.engine.store
        with store.read() as txn:
            tot = beh.read_total(store, txn, key, table)
            if tot is None:
                return None
            out: dict = dict(tot)
            out["seq"] = covered_seq(store, txn)
            first, last = tot.pop("first_day"), tot.pop("last_day")
            out.pop("first_day"), out.pop("last_day")
            out["first_visit"] = date_of(first - 1).isoformat() if first else None
            out["last_visit"] = date_of(last - 1).isoformat() if last else None
            out["days_since_first_visit"] = today - (first - 1) if first else None
            out["days_since_visit"] = today - (last - 1) if last else None
            out["avg_ticket_fen"] = tot["spend_fen"] // tot["swipes"] if tot["swipes"] else 0
            if table != beh.MEMBERS_DB:
                return out
            win = {d: [0, 0, 0] for d in (30, 90, 365)}
            bucket = (key >> beh.DAY_BUCKET_SHIFT).to_bytes(4, "big")
            db = store.db[beh.DAYS_DB]
            for day in range(today - 364, today + 1):
                raw = txn.get(day.to_bytes(4, "big") + bucket, db=db)
                if raw is None:
                    continue
                rows = np.frombuffer(bytes(raw), beh.DAY_ROW)
                j = int(np.searchsorted(rows["member"], np.uint64(key)))
                if j < len(rows) and int(rows["member"][j]) == key:
                    v = rows["v"][j].tolist()
                    for d, w in win.items():
                        if day > today - d:
                            for i in range(3):
                                w[i] += v[i]
            for d, (vis, sw, sp) in win.items():
                out[f"visits_{d}d"], out[f"swipes_{d}d"], out[f"spend_{d}d"] = vis, sw, sp
            for table2, field, name in ((beh.STORES_DB, "store", "favourite_store"),
                                        (beh.CATS_DB, "category", "favourite_category")):
                cur = txn.cursor(db=store.db[table2])
                keys, vals = [], []
                prefix = u64(key)
                if cur.set_range(prefix):
                    for k, v in cur:
                        if bytes(k[:8]) != prefix:
                            break
                        keys.append(bytes(k))
                        vals.append(np.frombuffer(bytes(v), "<i8"))
                dtype = beh.STORE_KEY if table2 == beh.STORES_DB else beh.CAT_KEY
                if keys:
                    _, fav = beh.favourite(np.frombuffer(b"".join(keys), dtype), np.stack(vals), field)
                    out[name] = int(fav[0])
                else:
                    out[name] = None
        return out

    # --- list, export, report -----------------------------------------------------------

    def page(self, segment: str | dict, *, offset: int = 0, limit: int = 100,
             store_id: int | None = None, stale_s: float = 0.0) -> tuple[int, list[dict]]:
        """(total, one page of masked profiles in ascending member id)."""
        if not 1 <= limit <= SEGMENT_PAGE_MAX or offset < 0:
            raise _invalid(f"limit 1..{SEGMENT_PAGE_MAX}, offset >= 0")
        if self.members is None:
            raise SegmentError(SegmentErrorCode.NEEDS_MEMBERS, "listing members needs the member store")
        ids = self.resolve(segment, store_id=store_id, stale_s=stale_s)
        out = [p for p in (self.members.get(int(i)) for i in ids[offset:offset + limit].tolist())
               if p is not None]
        return len(ids), out

    def export(self, segment: str | dict, path: str, *, store_id: int | None = None,
               stale_s: float = 0.0) -> int:
        """Write the segment's members, PII masked, to .csv (UTF-8 with BOM) or .xlsx with
        the member export's columns; returns the members written."""
        from core.domain.members.files import EXPORT_COLUMNS, cell
        from core.domain.members.validate import XLSX_ROWS_MAX
        if self.members is None:
            raise SegmentError(SegmentErrorCode.NEEDS_MEMBERS, "exporting members needs the member store")
        ids = self.resolve(segment, store_id=store_id, stale_s=stale_s).tolist()
        xlsx = path.lower().endswith(".xlsx")
        if xlsx and len(ids) > XLSX_ROWS_MAX:
            raise _invalid(f"more than {XLSX_ROWS_MAX} members: export to CSV")

        def rows():
            yield list(EXPORT_COLUMNS)
            for mid in ids:
                p = self.members.get(mid)
                if p is not None:
                    yield [cell(p[c]) for c in EXPORT_COLUMNS]

        n = -1
        if xlsx:
            import openpyxl
            wb = openpyxl.Workbook(write_only=True)
            ws = wb.create_sheet("segment")
            for r in rows():
                n += 1
                ws.append(r)
            wb.save(path)
        else:
            with open(path, "w", newline="", encoding="utf-8-sig") as f:
                w = csv.writer(f)
                for r in rows():
                    n += 1
                    w.writerow(r)
        return n

    def report(self, segment: str | dict, *, days: int = 365, today: int | None = None,
               store_id: int | None = None, stale_s: float = 0.0) -> dict:
        """The segment's size, spend and visits in the last `days` days, its share of the
        spend of all members (basis points, rounded down), and the same per RFM class."""
        if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= WINDOW_DAYS_MAX:
            raise _invalid(f"days is 1..{WINDOW_DAYS_MAX}")
        today = self.today() if today is None else int(today)
        m = self.mask(self.definition_of(segment), today=today, store_id=store_id, stale_s=stale_s)
        b = self.behaviour(len(m), today, stale_s)
        spend, visits = b.window("spend", days), b.window("visits", days)
        total = int(spend.sum())
        cls, _ = self.rfm(today=today, n=len(m), stale_s=stale_s)
        rows = []
        for c in RfmClass:
            at = m & (cls == c)
            s = int(spend[at].sum())
            rows.append({"class": c.name.lower(), "name": RFM_NAMES[c], "members": int(at.sum()),
                         "spend_fen": s, "visits": int(visits[at].sum()), "share_bp": _bp(s, total)})
        s = int(spend[m].sum())
        return {"members": int(m.sum()), "spend_fen": s, "visits": int(visits[m].sum()),
                "share_bp": _bp(s, total), "all_spend_fen": total, "days": days,
                "as_of_day": date_of(today).isoformat(), "seq": b.seq, "classes": rows}


def _bp(part: int, whole: int) -> int:
    return part * 10_000 // whole if whole > 0 else 0


class _Env:
    """Evaluates a definition over the columns of one moment (today, one snapshot)."""

    def __init__(self, seg: Segments, snap: dict | None, n: int, today: int,
                 stale_s: float = 0.0) -> None:
        self.seg, self.snap, self.n, self.today, self.stale_s = seg, snap, n, today, stale_s
        self._cards: dict | None = None
        self._rfm: np.ndarray | None = None
        self._has_card: np.ndarray | None = None

    def card_members(self) -> np.ndarray:
        c = self.cards()
        m = np.zeros(self.n, bool)
        m[c.rows] = True
        return m

    def cards(self) -> CardCols:
        if self._cards is None:
            self._cards = self.seg._cards(self.n)
        return self._cards

    def beh(self) -> BehaviourCols:
        return self.seg.behaviour(self.n, self.today, self.stale_s)

    def eval(self, node: dict) -> np.ndarray:
        if "field" in node:
            return self.cond(node)
        if "not" in node:
            return ~self.eval(node["not"])
        k, items = next(iter(node.items()))
        out = np.ones(self.n, bool) if k == "all" else np.zeros(self.n, bool)
        for x in items:
            if k == "all":
                out &= self.eval(x)
            else:
                out |= self.eval(x)
        return out

    def need_index(self, field: str) -> dict:
        if self.snap is None:
            raise SegmentError(SegmentErrorCode.NEEDS_MEMBERS, f"{field} needs the member store")
        return self.snap

    def cond(self, c: dict) -> np.ndarray:
        field, op, v = c["field"], c["op"], c["value"]
        source, kind = _field(field)
        if kind == "tag":
            return self.tag(op, v)
        if kind == "any":
            return self.any_card(field, op, v)
        if field == "birthday_month" and v == "current":
            v = date_of(self.today).month
        if field == "age":
            return self.age(op, v)
        if field == "level":
            return self.level(op, v)
        if field == "gender":
            col = _pad(self.seg._profile().gender, self.n, b"U").view(np.uint8)
            v = [ord(x) for x in v] if isinstance(v, list) else ord(v)
            return _compare(col, op, v, None)
        col, known = self.column(field)
        return _compare(col, op, v, known)

    def age(self, op: str, v) -> np.ndarray:
        """Age in whole years today, as ranges of the yyyymmdd birthday column: age >= a
        iff birthday <= (year - a) * 10000 + mmdd of today (no per-row arithmetic)."""
        b = self.need_index("age")["birthday"]
        t = date_of(self.today)
        md = t.month * 100 + t.day
        known = b > 0
        return _by_threshold(self.n, op, v, lambda a: b <= (t.year - a) * 10_000 + md, known)

    def level(self, op: str, v) -> np.ndarray:
        """The member's level is the highest of their live cards; members without a live
        card have none. Computed as "some live card at or above", so no reduction."""
        cs = self.cards()
        rows, lv = cs.live_rows, cs.col("level", live=True)

        def some(mask: np.ndarray) -> np.ndarray:
            out = np.zeros(self.n, bool)
            out[rows[mask]] = True
            return out

        has = self._has_card
        if has is None:
            has = self._has_card = some(np.ones(len(rows), bool))
        return _by_threshold(self.n, op, v, lambda a: some(lv >= a), has)

    def column(self, field: str) -> tuple[np.ndarray, np.ndarray | None]:
        """The values of a field per row and which rows know it (None: all)."""
        n = self.n
        if field == "member_id":
            return np.arange(1, n + 1, dtype=np.int64), None
        if field == "member_status":
            return self.need_index(field)["status"].astype(np.int64), None
        if field == "home_store":
            return self.need_index(field)["store"].astype(np.int64), None
        if field == "birthday_month":
            b = self.need_index(field)["birthday"]
            return b // 100 % 100, b > 0
        if field in ("source", "enrolled_days") or field.startswith("custom."):
            p = self.seg._profile()
            if field == "source":
                return _pad(p.source, n, ""), None
            if field == "enrolled_days":
                cd = _pad(p.created_day, n, -1)
                return self.today - cd, cd >= 0
            return p.custom_col(field[len("custom."):], n), None
        if field in ("cards", "balance_fen", "principal_fen", "points"):
            cs = self.cards()
            out = np.zeros(n, np.int64)
            if field == "cards":
                np.add.at(out, cs.live_rows, 1)
            elif field == "balance_fen":
                np.add.at(out, cs.rows, cs.col("principal_fen") + cs.col("bonus_fen"))
            elif field == "principal_fen":
                np.add.at(out, cs.rows, cs.col("principal_fen"))
            else:
                np.add.at(out, cs.rows, cs.col("points"))
            return out, None
        if field == "rfm_class":
            if self._rfm is None:
                self._rfm, _ = self.seg.rfm(today=self.today, n=n, stale_s=self.stale_s)
            return self._rfm.astype(np.int64), None
        b = self.beh()
        m = _WINDOWED.match(field)
        if m:
            return b.window(m.group(1), int(m.group(2))), None
        last, first = b.col("last_day"), b.col("first_day")
        if field == "visited":
            return (last > 0).astype(np.int64), None
        if field == "days_since_visit":
            return self.today - (last - 1), last > 0
        if field == "days_since_first_visit":
            return self.today - (first - 1), first > 0
        if field == "avg_ticket_fen":
            sw = b.col("swipes")
            return np.where(sw > 0, b.col("spend_fen") // np.maximum(sw, 1), 0), sw > 0
        if field in ("favourite_store", "favourite_category"):
            if b.fav_store is None:
                store = self.seg.engine.store
                with store.read() as txn:      # of the tailer's seq now (at most newer)
                    b.fav_store, b.fav_cat = load_favourites(store, txn, b.n)
            f = b.fav_store if field == "favourite_store" else b.fav_cat
            return f, f >= 0
        name = {"spend_fen": "spend_fen"}.get(field, field)
        return b.col(name), None

    def any_card(self, field: str, op: str, v) -> np.ndarray:
        cs = self.cards()
        if field == "card_status":
            sel, col = cs.rows, cs.col("status")
        else:
            sel, col = cs.live_rows, cs.col("type_id", live=True)
        vals = v if isinstance(v, list) else [v]
        hit = np.isin(col, np.array(vals, np.int64))
        out = np.zeros(self.n, bool)
        out[sel[hit]] = True
        return ~out if op in ("ne", "not_in") else out

    def tag(self, op: str, v) -> np.ndarray:
        names = v if isinstance(v, list) else [v]
        out = np.zeros(self.n, bool)
        for t in names:
            out |= self.one_tag(t)
        return ~out if op in ("ne", "not_in") else out

    def one_tag(self, t: str) -> np.ndarray:
        m = np.zeros(self.n, bool)
        if self.snap is not None:
            b = self.snap["tag_bit"].get(t)
            if b is not None:
                m |= (self.snap["tags"][:, b // 64] & np.uint64(1 << (b % 64))) != 0
        ids = self.seg.rule_tag_members(t).astype(np.int64)
        ids = ids[(ids >= 1) & (ids <= self.n)]
        m[ids - 1] = True
        return m


def _pad(a: np.ndarray, n: int, fill) -> np.ndarray:
    if len(a) >= n:
        return a[:n]
    out = np.full(n, fill, a.dtype)
    out[: len(a)] = a
    return out


def _by_threshold(n: int, op: str, v, at_least, known: np.ndarray) -> np.ndarray:
    """The rows whose integer value x compares so with v, given at_least(a): the rows with
    x >= a (any row where x is unknown may be in it), and known: where x is known."""

    def eq(a: int) -> np.ndarray:
        return at_least(a) & ~at_least(a + 1)

    if op == "gte":
        m = at_least(v)
    elif op == "gt":
        m = at_least(v + 1)
    elif op == "lte":
        m = ~at_least(v + 1)
    elif op == "lt":
        m = ~at_least(v)
    elif op == "between":
        m = at_least(v[0]) & ~at_least(v[1] + 1)
    elif op in ("eq", "ne"):
        m = eq(v) if op == "eq" else ~eq(v)
    else:
        m = np.zeros(n, bool)
        for a in v:
            m |= eq(a)
        if op == "not_in":
            m = ~m
    return m & known


def _compare(col: np.ndarray, op: str, v, known: np.ndarray | None) -> np.ndarray:
    if op == "eq":
        m = col == v
    elif op == "ne":
        m = col != v
    elif op in ("in", "not_in"):
        m = np.isin(col, np.array(v, dtype=col.dtype if col.dtype != object else object))
        if op == "not_in":
            m = ~m
    elif op == "gt":
        m = col > v
    elif op == "gte":
        m = col >= v
    elif op == "lt":
        m = col < v
    elif op == "lte":
        m = col <= v
    else:
        m = (col >= v[0]) & (col <= v[1])
    return m if known is None else m & known


# --- the interface other modules code against ------------------------------------------------

_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_CACHE_LOCK = threading.Lock()


def segments_of(engine_or_store) -> Segments:
    """The Segments of an Engine, a MemberStore (profile conditions available) or a
    Segments itself, made once per object and cached."""
    if isinstance(engine_or_store, Segments):
        return engine_or_store
    with _CACHE_LOCK:
        s = _CACHE.get(engine_or_store)
        if s is None:
            if hasattr(engine_or_store, "cipher") and hasattr(engine_or_store, "engine"):
                s = Segments(engine_or_store.engine, engine_or_store)
            else:
                s = Segments(engine_or_store)
            _CACHE[engine_or_store] = s
        return s


def resolve(engine_or_store, segment: str | dict, *, today: int | None = None,
            store_id: int | None = None, stale_s: float = 0.0) -> np.ndarray:
    """The member ids of a segment: sorted, unique, numpy uint64.

    engine_or_store: a core.Engine (card and behaviour conditions only), a
    core.domain.members.MemberStore (every condition), or a Segments.
    segment: a saved segment's name, or a definition dict (module docstring;
    docs/segments.md). today: the chain's day number (days since 1970-01-01 in its zone;
    default: the engine's clock) that "last N days", age and days_since_visit are cut at.
    store_id: only members whose home store it is (a store role's scope).
    Behaviour is that of the seq the rollup tailer covers (at most about a second behind
    the journal); stale_s > 0 accepts cached behaviour columns younger than that many
    seconds instead of reloading them when the tailer moved (the RPCs' reads do).
    Raises SegmentError (INVALID, NOT_FOUND, NEEDS_MEMBERS)."""
    return segments_of(engine_or_store).resolve(segment, today=today, store_id=store_id,
                                                stale_s=stale_s)


def count(engine_or_store, segment: str | dict, **kw) -> int:
    """len(resolve(...)), without building the id array's Python side."""
    s = segments_of(engine_or_store)
    return int(np.count_nonzero(s.mask(s.definition_of(segment), **kw)))


def derived_id(client_id: bytes, name: str) -> bytes:
    """The client id of one tag's evaluation within a request for every tag."""
    return hashlib.blake2b(client_id + name.encode(), digest_size=16).digest()


def day_number(date: _dt.date) -> int:
    """The `today` argument for a calendar date."""
    return day_of(date)
