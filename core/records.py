"""numpy views of the fixed-width records, derived from the C structs in _fastpath.pxd,
client ids, and the one table of op codes (every domain's journal op_type and its name).

Nothing here restates a field's offset or size: both come from the compiled module,
so the Cython view and the numpy view cannot drift apart.
"""

from __future__ import annotations

import os
from enum import IntEnum

import numpy as np

from core import _fastpath

OpType = _fastpath.OpType
Result = _fastpath.Result
CardStatus = _fastpath.CardStatus

# The card lifecycle in one table: every status move and what may make it. "operator"
# moves are SetCardStatus's (the engine's set_card_status); the others are the lifecycle
# ops of core/domain/cards.py: a replacement cancels the old card, the dormancy run puts
# an expired card to sleep, a renewal wakes it. Cancelled is final.
_S = CardStatus
CARD_STATUS_MOVES: dict[tuple[int, int], frozenset[str]] = {
    (_S.ACTIVE, _S.LOST): frozenset({"operator"}),
    (_S.LOST, _S.ACTIVE): frozenset({"operator"}),
    (_S.ACTIVE, _S.FROZEN): frozenset({"operator"}),
    (_S.FROZEN, _S.ACTIVE): frozenset({"operator"}),
    (_S.ACTIVE, _S.CANCELLED): frozenset({"operator", "replacement"}),
    (_S.LOST, _S.CANCELLED): frozenset({"operator", "replacement"}),
    (_S.FROZEN, _S.CANCELLED): frozenset({"operator"}),
    (_S.ACTIVE, _S.DORMANT): frozenset({"operator", "dormancy"}),
    (_S.DORMANT, _S.ACTIVE): frozenset({"operator", "renewal"}),
}
del _S


def card_move_allowed(before: int, after: int, by: str) -> bool:
    """Whether `by` ("operator", "replacement", "dormancy", "renewal") may move a card
    from status before to status after."""
    return by in CARD_STATUS_MOVES.get((int(before), int(after)), ())
OpFlag = _fastpath.OpFlag
ItemFlag = _fastpath.ItemFlag
RecordKind = _fastpath.RecordKind
CardFlag = _fastpath.CardFlag

_LAYOUT = _fastpath.layout()


def _dtype(struct: str, nested: dict[str, np.dtype] | None = None) -> np.dtype:
    itemsize, fields = _LAYOUT[struct]
    names, formats, offsets = [], [], []
    for name, kind, offset, size in fields:
        names.append(name)
        offsets.append(offset)
        if kind in ("u", "i"):
            formats.append(np.dtype(f"<{kind}{size}"))
        else:
            formats.append(nested[kind])
    return np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": itemsize})


CARD = _dtype("Card")
OP = _dtype("Op")
JOURNAL = _dtype("JournalRec", {"Card": CARD})
RESULT = _dtype("OpResult")
LEVEL = _dtype("Level")
TIER = _dtype("Tier")
ITEM = _dtype("Item")
COUPON = _dtype("Coupon")
COUPON_TPL = _dtype("CouponTpl")
TYPE_LIMIT = _dtype("TypeLimit")
COMMISSION_RULE = _dtype("CommissionRule")

# The OP fields a single op sets (a unary RPC, Engine.swipe), as a view of OP with the
# same offsets and size: rows of these tuples become OP rows in one numpy step, every
# other field zero. The one way a single op is built (ops_from_rows).
SINGLE_OP_FIELDS = ("client_hi", "client_lo", "card_no", "amount_fen", "store_id",
                    "terminal_id", "operator_id", "category", "op_type", "op_flags")
SINGLE_OP = np.dtype({"names": list(SINGLE_OP_FIELDS),
                      "formats": [OP.fields[f][0] for f in SINGLE_OP_FIELDS],
                      "offsets": [OP.fields[f][1] for f in SINGLE_OP_FIELDS],
                      "itemsize": OP.itemsize})


CACHE_LINE_BYTES = 64


def table_zeros(n: int, dtype: np.dtype) -> np.ndarray:
    """np.zeros(n, dtype) whose first row starts on a cache line. numpy's own start 16
    bytes past one, so each 256-byte card of a table spans five lines and each 64-byte
    coupon two; aligned, four and one: less to fetch per row the hot path reads or
    copies. The rows are zero pages until written, as np.zeros's."""
    dtype = np.dtype(dtype)
    buf = np.zeros(n * dtype.itemsize + CACHE_LINE_BYTES, dtype=np.uint8)
    start = -buf.ctypes.data % CACHE_LINE_BYTES
    return buf[start:start + n * dtype.itemsize].view(dtype)


def ops_from_rows(rows: list[tuple]) -> np.ndarray:
    """OP rows (a new array) from tuples in SINGLE_OP_FIELDS order."""
    ops = np.zeros(len(rows), dtype=SINGLE_OP)
    ops[:] = rows
    return ops.view(OP)


# The on-disk format: journal blocks are JOURNAL records and checkpoint chunks CARD
# records of exactly these sizes (docs/internals/storage.md). A change here is a change
# of the format, never an accident of a struct edit.
assert (CARD.itemsize, OP.itemsize, JOURNAL.itemsize, RESULT.itemsize) == (256, 96, 416, 16)
assert JOURNAL.fields["after"][0] == CARD, "a record's after-image is a whole Card"
assert COUPON.itemsize <= CARD.itemsize, "a coupon's after-image fits the Card slot"

CouponKind = _fastpath.CouponKind
# The most coupons one swipe may name (the fast path's fixed bound).
COUPONS_PER_OP = _fastpath.COUPONS_PER_OP
CouponStatus = _fastpath.CouponStatus

RESULT_NAMES = {int(r): r.name for r in Result}


# --- op codes: the one table of every journal op_type of every domain ------------------
#
# A journal record's op_type is one byte on disk, so a code, once journalled, keeps its
# number and its name for ever: a retired op keeps its row (old journals hold it) and a
# number is never given twice. Each domain owns a range; its codes are declared here and
# nowhere else (the domain modules import their enum from here). The engine's own codes
# are OpType, declared in core/_fastpath.pyx because the C loop switches on them; this
# table takes them from the compiled module. docs/internals/storage.md lists the whole
# table and a test holds the two equal.


class CardOp(IntEnum):
    """Card types and the card lifecycle (core/domain/cards.py)."""

    CARD_TYPE_PUT = 40
    CARD_ISSUE = 41          # reserved (issues are op ISSUE 10, event and records alike)
    ISSUE_FEE = 42
    ANNUAL_FEE = 43
    OPENING_DEPOSIT = 44     # what was paid at issue beyond the fees, as principal
    REPLACE = 45             # the old card's record (and re-pointed supplementary cards)
    REPLACEMENT_FEE = 46
    EXPIRE_DORMANT = 47
    RENEW = 48
    RENEWAL_FEE = 49
    SUPP_LIMIT = 50
    ANNUAL_FEE_RUN = 51


class LevelOp(IntEnum):
    """Level changes (core/domain/levels.py)."""

    LEVEL_MANUAL = 55
    LEVEL_REVIEW = 56
    LEVEL_READMIT = 57


class PointsOp(IntEnum):
    """Points administration (core/domain/points_admin.py)."""

    POINTS_ADJUST = 60
    POINTS_MAKE_UP = 61
    GIFT_PUT = 62
    GIFT_REDEEM = 63


class MemberOp(IntEnum):
    """Member changes (core/domain/members/)."""

    MEMBER_CREATE = 100
    MEMBER_UPDATE = 101
    MEMBER_STATUS = 102
    MEMBER_IMPORT = 103
    MEMBER_OPEN = 104    # retired (databases are created by Engine.ensure_dbs); old journals hold it
    MEMBER_INDEX = 105   # the search index rebuilt at open and saved (no member changes)


class ChainOp(IntEnum):
    """The chain: nodes, terminals, operators, logins (core/domain/chain.py)."""

    BOOTSTRAP = 120
    NODE_CREATE = 121
    NODE_RENAME = 122
    NODE_CLOSE = 123
    TERMINAL_TOKEN_ISSUE = 124
    TERMINAL_TOKEN_REVOKE = 125
    OPERATOR_CREATE = 126
    OPERATOR_SET_ROLE = 127
    OPERATOR_DISABLE = 128
    OPERATOR_ENABLE = 129
    OPERATOR_SET_PASSWORD = 130
    OPERATOR_UNLOCK = 131
    OPERATOR_RENAME = 132
    LOGIN = 133
    LOGIN_FAILED = 134
    LOGOUT = 135


class NotifyOp(IntEnum):
    """Member notifications (core/domain/notify.py)."""

    NOTICES_ACK = 150


class CampaignOp(IntEnum):
    """Targeted plans and the built-in campaigns (core/domain/plans.py, campaigns.py)."""

    PLAN_PUT = 170
    PLAN_STATUS = 171
    PLAN_RUN_START = 172
    PLAN_RUN_CHUNK = 173
    SIGN_IN = 174
    REFERRAL_REWARD = 175
    RECHARGE_CAMPAIGN_BONUS = 176
    CAMPAIGN_PUT = 177
    PLAN_MEMBER_PRICE = 178  # a plan's member price set on a reached member's card
    PLAN_RUN_FREEZE = 179    # a bounded step of a run's start: begin, lists, or a sweep


class SegmentOp(IntEnum):
    """Segments, rule tags and RFM (core/domain/segments.py)."""

    SEGMENT_PUT = 210
    SEGMENT_DELETE = 211
    RULE_TAG_PUT = 212
    RULE_TAG_DELETE = 213
    RULE_TAG_EVAL = 214      # a rule tag's members set and cleared by its rule
    RFM_CONFIG = 215


class AuditOp(IntEnum):
    """Reads journalled only so that the audit trail shows who saw what (server/rpc/admin)."""

    MEMBER_REVEAL = 190  # a member's phone and ID number shown in full


# (first, last, owner, enum): each domain's range; a new op takes a free code of its
# owner's range (storage.md lists the free codes), a new domain a free range.
OP_RANGES: tuple[tuple[int, int, str, type], ...] = (
    (0, 39, "engine", OpType),
    (40, 54, "cards", CardOp),
    (55, 59, "levels", LevelOp),
    (60, 69, "points", PointsOp),
    (100, 119, "members", MemberOp),
    (120, 149, "chain", ChainOp),
    (150, 154, "notify", NotifyOp),
    (170, 179, "campaigns", CampaignOp),
    (190, 199, "audit", AuditOp),
    (210, 219, "segments", SegmentOp),
)
OP_TYPE_MAX = 255  # op_type is a u8 in the journal


def _op_table() -> tuple[dict[int, str], dict[int, str]]:
    """{code: NAME} and {code: owner} of every range, checked: each code in its owner's
    range and in the byte, ranges apart, no code and no name twice."""
    names: dict[int, str] = {}
    owners: dict[int, str] = {}
    prev_last = -1
    for first, last, owner, codes in OP_RANGES:
        if not prev_last < first <= last <= OP_TYPE_MAX:
            raise ValueError(f"op range {owner} {first}..{last} overlaps or leaves the byte")
        prev_last = last
        for m in codes:
            code = int(m)
            if not first <= code <= last:
                raise ValueError(f"op {m.name} {code} is outside {owner}'s range {first}..{last}")
            if code in names or m.name in names.values():
                raise ValueError(f"op {m.name} {code} is given twice")
            names[code], owners[code] = m.name, owner
    return names, owners


# The name of every op code: what audit events, the card journal and level history
# carry, and (in lower case, op_label) the op_type label of the metrics.
OP_NAMES, OP_OWNERS = _op_table()


def op_name(code: object) -> object:
    """The name of an op code; anything else as it is (audit events written before an
    op had a name carry its number)."""
    if isinstance(code, int) and not isinstance(code, bool):
        return OP_NAMES.get(code, code)
    return code


def op_label(code: int) -> str:
    """The metrics label of an op code: its name in lower case ("swipe", "card_type_put");
    "unknown" for a byte outside the table (a till's op_type the engine rejected)."""
    name = OP_NAMES.get(int(code))
    return name.lower() if name is not None else "unknown"

# Every mutating request's idempotency id: the one definition of its size (the proto
# fields, the engine's (hi, lo) key and the CLI's --client-id are all this many bytes).
CLIENT_ID_BYTES = 16
# A card PIN as it is set: 4 to 9 ASCII digits (the till sends what the keypad read,
# 1..PIN_DIGITS_MAX digits; a shorter one can only be wrong).
PIN_DIGITS_MIN = 4
PIN_DIGITS_MAX = 9
# Product categories and count-card services are uint16 in the records: 0..65535.
CATEGORY_COUNT = 65_536
SERVICE_COUNT = 65_536


def new_client_id() -> bytes:
    """A fresh random client id (an op of the server's or a tool's own)."""
    return os.urandom(CLIENT_ID_BYTES)


def new_client_ids(n: int) -> bytes:
    """n fresh random client ids, concatenated (a batch's client_ids column)."""
    return os.urandom(CLIENT_ID_BYTES * n)


def is_ascii_digits(text: object) -> bool:
    """A non-empty str of ASCII 0-9 and nothing else. Every PIN, amount and id parsed
    from text is checked with this: str.isdigit() also takes superscripts, Arabic-Indic
    and full-width digits, and int() takes those too (and "_", spaces and signs), so a
    value one check accepts would fail another further in (in the writer, at the till)."""
    return isinstance(text, str) and text.isascii() and text.isdigit()


def parse_uint(text: str) -> int:
    """A whole number written in ASCII 0-9 only; ValueError otherwise."""
    if not is_ascii_digits(text):
        raise ValueError(f"{text[:20]!r} is not a whole number in digits 0-9")
    return int(text)


def split_client_id(client_id: bytes) -> tuple[int, int]:
    """A client id (CLIENT_ID_BYTES) as the (hi, lo) pair the engine keys on."""
    if not isinstance(client_id, (bytes, bytearray)) or len(client_id) != CLIENT_ID_BYTES:
        raise ValueError(f"client id must be exactly {CLIENT_ID_BYTES} bytes")
    return int.from_bytes(client_id[:8], "big"), int.from_bytes(client_id[8:], "big")


def join_client_id(hi: int, lo: int) -> bytes:
    half = CLIENT_ID_BYTES // 2
    return int(hi).to_bytes(half, "big") + int(lo).to_bytes(half, "big")


def client_id_columns(packed: bytes) -> tuple[np.ndarray, np.ndarray]:
    """n concatenated client ids as two uint64 columns, without a Python loop."""
    if len(packed) % CLIENT_ID_BYTES:
        raise ValueError(f"packed client ids must be a multiple of {CLIENT_ID_BYTES} bytes")
    pairs = np.frombuffer(packed, dtype=">u8").reshape(-1, 2).astype(np.uint64)
    return pairs[:, 0].copy(), pairs[:, 1].copy()


def coupon_of(rec: np.void) -> np.void:
    """The Coupon a KIND_COUPON journal record carries in its after-image."""
    return np.frombuffer(rec["after"].tobytes()[: COUPON.itemsize], dtype=COUPON)[0]


def coupon_to_dict(row: np.void) -> dict[str, int]:
    return {name: int(row[name]) for name in COUPON.names if not name.startswith("_")}


def card_to_dict(row: np.void) -> dict[str, int]:
    """One card record as plain ints (cold paths: APIs, tests, tools)."""
    return {name: int(row[name]) for name in CARD.names if not name.startswith("_")}


def journal_to_dict(row: np.void) -> dict:
    out = {name: int(row[name]) for name in JOURNAL.names if name not in ("after",) and not name.startswith("_")}
    out["after"] = card_to_dict(row["after"])
    return out
