"""numpy views of the fixed-width records, derived from the C structs in _fastpath.pxd.

Nothing here restates a field's offset or size: both come from the compiled module,
so the Cython view and the numpy view cannot drift apart.
"""

from __future__ import annotations

import numpy as np

from core import _fastpath

OpType = _fastpath.OpType
Result = _fastpath.Result
CardStatus = _fastpath.CardStatus
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

# The op code each journal record's op_type maps to, for reports and metrics labels.
OP_NAMES = {int(t): t.name.lower() for t in OpType}
RESULT_NAMES = {int(r): r.name for r in Result}

CLIENT_ID_BYTES = 16
# A card PIN as it is set: 4 to 9 ASCII digits (the till sends what the keypad read,
# 1..PIN_DIGITS_MAX digits; a shorter one can only be wrong).
PIN_DIGITS_MIN = 4
PIN_DIGITS_MAX = 9
# Product categories and count-card services are uint16 in the records: 0..65535.
CATEGORY_COUNT = 65_536
SERVICE_COUNT = 65_536


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
    """A 16-byte client id as the (hi, lo) pair the engine keys on."""
    if not isinstance(client_id, (bytes, bytearray)) or len(client_id) != CLIENT_ID_BYTES:
        raise ValueError("client id must be exactly 16 bytes")
    return int.from_bytes(client_id[:8], "big"), int.from_bytes(client_id[8:], "big")


def join_client_id(hi: int, lo: int) -> bytes:
    return int(hi).to_bytes(8, "big") + int(lo).to_bytes(8, "big")


def client_id_columns(packed: bytes) -> tuple[np.ndarray, np.ndarray]:
    """n concatenated 16-byte ids as two uint64 columns, without a Python loop."""
    if len(packed) % CLIENT_ID_BYTES:
        raise ValueError("packed client ids must be a multiple of 16 bytes")
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
