"""Types of the compiled hot path (core/_fastpath.pyx). Only core/ imports it;
tests/unit/test_records.py checks that this stub names what the module has."""

from enum import IntEnum

import numpy as np

# --- enums (python3 -m core._layoutgen rewrites this part from the compiled module) ---
class OpType(IntEnum):
    OP_TYPE_UNSPECIFIED = 0
    SWIPE = 1
    RECHARGE = 2
    USE_COUNT = 3
    REFUND = 4
    COUPON_REDEEM = 5
    COUPON_RESTORE = 6
    SUPP_DEBIT = 7
    ISSUE = 10
    SET_STATUS = 11
    ADJUST = 12
    SET_RULES = 13
    SET_PIN = 14
    COUPON_ISSUE = 17
    EXPIRE_POINTS = 15
    POINTS_REMINDER = 16

class Result(IntEnum):
    RESULT_UNSPECIFIED = 0
    OK = 1
    CARD_NOT_FOUND = 2
    CARD_LOST = 3
    CARD_FROZEN = 4
    CARD_CANCELLED = 5
    CARD_DORMANT = 6
    CARD_EXPIRED = 7
    AMOUNT_NOT_POSITIVE = 8
    AMOUNT_TOO_LARGE = 9
    INSUFFICIENT_BALANCE = 10
    BALANCE_LIMIT = 11
    OP_TYPE_INVALID = 12
    CLIENT_ID_INVALID = 13
    CARD_EXISTS = 14
    CARD_NO_INVALID = 15
    PIN_REQUIRED = 16
    PIN_WRONG = 17
    PIN_LOCKED = 18
    ITEMS_INVALID = 19
    OFFSET_INVALID = 20
    OFFSET_NOT_ALLOWED = 21
    OFFSET_OVER_CAP = 22
    INSUFFICIENT_POINTS = 23
    INSUFFICIENT_USES = 24
    SERVICE_MISMATCH = 25
    INVALID_ARGUMENT = 26
    NOT_FOUND = 27
    ALREADY_EXISTS = 28
    FAILED_PRECONDITION = 29
    PERMISSION_DENIED = 30
    REFUND_TARGET_NOT_FOUND = 31
    REFUND_NOT_REFUNDABLE = 32
    REFUND_EXCEEDS_PAID = 33
    REFUND_CARD_MISMATCH = 34
    COUPON_NOT_FOUND = 35
    COUPON_USED = 36
    COUPON_EXPIRED = 37
    COUPON_NOT_APPLICABLE = 38
    COUPON_NOT_STACKABLE = 39
    COUPONS_INVALID = 40
    SUPP_LIMIT_EXCEEDED = 41
    RECHARGE_NOT_ALLOWED = 42

class CardStatus(IntEnum):
    CARD_STATUS_UNSPECIFIED = 0
    ACTIVE = 1
    LOST = 2
    FROZEN = 3
    CANCELLED = 4
    DORMANT = 5

class RecordKind(IntEnum):
    KIND_CARD = 0
    KIND_COUPON = 1
    KIND_NONE = 2

class OpFlag(IntEnum):
    PAY_EXTERNAL = 1
    GROUP_BUY = 2
    REFUND_OWN_STORE = 4

class CardFlag(IntEnum):
    CARD_FLAG_MEMBERSHIP_LAPSED = 1

class CouponKind(IntEnum):
    COUPON_KIND_UNSPECIFIED = 0
    COUPON_FIXED = 1
    COUPON_PERCENT = 2
    COUPON_THRESHOLD = 3
    COUPON_GIFT = 4

class CouponStatus(IntEnum):
    COUPON_STATUS_UNSPECIFIED = 0
    COUPON_ISSUED = 1
    COUPON_REDEEMED = 2
    COUPON_VOID = 3

class ItemFlag(IntEnum):
    ITEM_NO_POINTS = 1

# --- end of enums ---

COUPONS_PER_OP: int
# 1 when built with MMS_DEBUG=1 (the fast path's debug checks run), else 0.
DEBUG_CHECKS: int
YEARS_ADD_MAX: int
SOURCE_SHA: str  # the hash of the sources it was built from (core/_source_hash.py)
RULE_SWITCHES: dict[str, dict[str, int]]

def layout() -> dict[str, tuple[int, list[tuple[str, str, int, int]]]]: ...
def pack_id_value(seq: int, result: int) -> int: ...
def pin_hash(key0: int, key1: int, salt: int, digits: str) -> int: ...
def pin_hash_of(key0: int, key1: int, salt: int, pin: int, pin_len: int) -> int: ...
def year_of(t_s: int, tz_offset_s: int) -> int: ...
def publish(recs: np.ndarray, n_recs: int, cards: np.ndarray, card_index: KeyMap,
            id_index: KeyMap | None, n_cards: int, dirty_chunks: np.ndarray | None,
            chunk_shift: int, slots: np.ndarray | None = None,
            release_gil: bool = False) -> int: ...
def publish_coupons(recs: np.ndarray, n_recs: int, coupons: np.ndarray, coupon_index: KeyMap,
                    n_coupons: int, dirty_chunks: np.ndarray | None, chunk_shift: int) -> int: ...

def block_facts(recs: np.ndarray, n_recs: int, ids_out: np.ndarray) -> tuple[int, int]: ...
def journal_items(ops: np.ndarray, results: np.ndarray, lines: np.ndarray,
                  out: np.ndarray) -> int: ...
class KeyMap:
    def __init__(self, capacity_hint: int = 1024) -> None: ...
    def __len__(self) -> int: ...
    @property
    def capacity(self) -> int: ...
    def lookup(self, hi: int, lo: int) -> int: ...
    def insert(self, hi: int, lo: int, value: int) -> None: ...
    def insert_many(self, his: np.ndarray, los: np.ndarray, vals: np.ndarray,
                    overwrite: bool = False) -> None: ...
    def lookup_many(self, his: np.ndarray, los: np.ndarray) -> np.ndarray: ...
    def items(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...

class Rules:
    """Compiled rules; built only by core/rules.py (RulesConfig.compile)."""
    def __init__(self, version: int, rounding: int, spend_order: int, max_amount_fen: int,
                 max_balance_fen: int, points_per_yuan_bp: int,
                 recharge_points_per_yuan_bp: int, levels: np.ndarray, tiers: np.ndarray,
                 category_mult_bp: np.ndarray, **kwargs: object) -> None: ...
    @property
    def version(self) -> int: ...
    @property
    def n_levels(self) -> int: ...

class Batcher:
    def __init__(self, batch_max: int) -> None: ...
    def apply_batch(self, ops: np.ndarray, cards: np.ndarray, card_index: KeyMap,
                    id_index: KeyMap, rules: Rules, now_s: int, first_seq: int,
                    out_recs: np.ndarray, out_results: np.ndarray,
                    out_slots: np.ndarray | None = None, **extras: object) -> int: ...

def card_add_points(card: np.ndarray, pts: int, now_s: int, points_valid_years: int,
                    tz_offset_s: int) -> None: ...
def card_spendable_points(card: np.ndarray) -> int: ...
def card_take_points(card: np.ndarray, n: int) -> None: ...
def add_years(t_s: int, years: int, tz_offset_s: int) -> int: ...
def add_years_array(t_s: np.ndarray, years: np.ndarray, tz_offset_s: int) -> np.ndarray: ...

