from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Result(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RESULT_UNSPECIFIED: _ClassVar[Result]
    RESULT_OK: _ClassVar[Result]
    RESULT_CARD_NOT_FOUND: _ClassVar[Result]
    RESULT_CARD_LOST: _ClassVar[Result]
    RESULT_CARD_FROZEN: _ClassVar[Result]
    RESULT_CARD_CANCELLED: _ClassVar[Result]
    RESULT_CARD_DORMANT: _ClassVar[Result]
    RESULT_CARD_EXPIRED: _ClassVar[Result]
    RESULT_AMOUNT_NOT_POSITIVE: _ClassVar[Result]
    RESULT_AMOUNT_TOO_LARGE: _ClassVar[Result]
    RESULT_INSUFFICIENT_BALANCE: _ClassVar[Result]
    RESULT_BALANCE_LIMIT: _ClassVar[Result]
    RESULT_OP_TYPE_INVALID: _ClassVar[Result]
    RESULT_CLIENT_ID_INVALID: _ClassVar[Result]
    RESULT_CARD_EXISTS: _ClassVar[Result]
    RESULT_CARD_NO_INVALID: _ClassVar[Result]
    RESULT_PIN_REQUIRED: _ClassVar[Result]
    RESULT_PIN_WRONG: _ClassVar[Result]
    RESULT_PIN_LOCKED: _ClassVar[Result]
    RESULT_ITEMS_INVALID: _ClassVar[Result]
    RESULT_OFFSET_INVALID: _ClassVar[Result]
    RESULT_OFFSET_NOT_ALLOWED: _ClassVar[Result]
    RESULT_OFFSET_OVER_CAP: _ClassVar[Result]
    RESULT_INSUFFICIENT_POINTS: _ClassVar[Result]
    RESULT_INSUFFICIENT_USES: _ClassVar[Result]
    RESULT_SERVICE_MISMATCH: _ClassVar[Result]
    RESULT_INVALID_ARGUMENT: _ClassVar[Result]
    RESULT_NOT_FOUND: _ClassVar[Result]
    RESULT_ALREADY_EXISTS: _ClassVar[Result]
    RESULT_FAILED_PRECONDITION: _ClassVar[Result]
    RESULT_PERMISSION_DENIED: _ClassVar[Result]
    RESULT_REFUND_TARGET_NOT_FOUND: _ClassVar[Result]
    RESULT_REFUND_NOT_REFUNDABLE: _ClassVar[Result]
    RESULT_REFUND_EXCEEDS_PAID: _ClassVar[Result]
    RESULT_REFUND_CARD_MISMATCH: _ClassVar[Result]
    RESULT_COUPON_NOT_FOUND: _ClassVar[Result]
    RESULT_COUPON_USED: _ClassVar[Result]
    RESULT_COUPON_EXPIRED: _ClassVar[Result]
    RESULT_COUPON_NOT_APPLICABLE: _ClassVar[Result]
    RESULT_COUPON_NOT_STACKABLE: _ClassVar[Result]
    RESULT_COUPONS_INVALID: _ClassVar[Result]
    RESULT_SUPP_LIMIT_EXCEEDED: _ClassVar[Result]
    RESULT_RECHARGE_NOT_ALLOWED: _ClassVar[Result]

class CardStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CARD_STATUS_UNSPECIFIED: _ClassVar[CardStatus]
    CARD_STATUS_ACTIVE: _ClassVar[CardStatus]
    CARD_STATUS_LOST: _ClassVar[CardStatus]
    CARD_STATUS_FROZEN: _ClassVar[CardStatus]
    CARD_STATUS_CANCELLED: _ClassVar[CardStatus]
    CARD_STATUS_DORMANT: _ClassVar[CardStatus]

class OpType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OP_TYPE_UNSPECIFIED: _ClassVar[OpType]
    OP_TYPE_SWIPE: _ClassVar[OpType]
    OP_TYPE_RECHARGE: _ClassVar[OpType]
    OP_TYPE_USE_COUNT: _ClassVar[OpType]
    OP_TYPE_REFUND: _ClassVar[OpType]
    OP_TYPE_COUPON_REDEEM: _ClassVar[OpType]
    OP_TYPE_COUPON_RESTORE: _ClassVar[OpType]
    OP_TYPE_SUPP_DEBIT: _ClassVar[OpType]
    OP_TYPE_ISSUE: _ClassVar[OpType]
    OP_TYPE_SET_STATUS: _ClassVar[OpType]
    OP_TYPE_ADJUST: _ClassVar[OpType]
    OP_TYPE_SET_RULES: _ClassVar[OpType]
    OP_TYPE_SET_PIN: _ClassVar[OpType]
    OP_TYPE_EXPIRE_POINTS: _ClassVar[OpType]
    OP_TYPE_POINTS_REMINDER: _ClassVar[OpType]
    OP_TYPE_COUPON_ISSUE: _ClassVar[OpType]
RESULT_UNSPECIFIED: Result
RESULT_OK: Result
RESULT_CARD_NOT_FOUND: Result
RESULT_CARD_LOST: Result
RESULT_CARD_FROZEN: Result
RESULT_CARD_CANCELLED: Result
RESULT_CARD_DORMANT: Result
RESULT_CARD_EXPIRED: Result
RESULT_AMOUNT_NOT_POSITIVE: Result
RESULT_AMOUNT_TOO_LARGE: Result
RESULT_INSUFFICIENT_BALANCE: Result
RESULT_BALANCE_LIMIT: Result
RESULT_OP_TYPE_INVALID: Result
RESULT_CLIENT_ID_INVALID: Result
RESULT_CARD_EXISTS: Result
RESULT_CARD_NO_INVALID: Result
RESULT_PIN_REQUIRED: Result
RESULT_PIN_WRONG: Result
RESULT_PIN_LOCKED: Result
RESULT_ITEMS_INVALID: Result
RESULT_OFFSET_INVALID: Result
RESULT_OFFSET_NOT_ALLOWED: Result
RESULT_OFFSET_OVER_CAP: Result
RESULT_INSUFFICIENT_POINTS: Result
RESULT_INSUFFICIENT_USES: Result
RESULT_SERVICE_MISMATCH: Result
RESULT_INVALID_ARGUMENT: Result
RESULT_NOT_FOUND: Result
RESULT_ALREADY_EXISTS: Result
RESULT_FAILED_PRECONDITION: Result
RESULT_PERMISSION_DENIED: Result
RESULT_REFUND_TARGET_NOT_FOUND: Result
RESULT_REFUND_NOT_REFUNDABLE: Result
RESULT_REFUND_EXCEEDS_PAID: Result
RESULT_REFUND_CARD_MISMATCH: Result
RESULT_COUPON_NOT_FOUND: Result
RESULT_COUPON_USED: Result
RESULT_COUPON_EXPIRED: Result
RESULT_COUPON_NOT_APPLICABLE: Result
RESULT_COUPON_NOT_STACKABLE: Result
RESULT_COUPONS_INVALID: Result
RESULT_SUPP_LIMIT_EXCEEDED: Result
RESULT_RECHARGE_NOT_ALLOWED: Result
CARD_STATUS_UNSPECIFIED: CardStatus
CARD_STATUS_ACTIVE: CardStatus
CARD_STATUS_LOST: CardStatus
CARD_STATUS_FROZEN: CardStatus
CARD_STATUS_CANCELLED: CardStatus
CARD_STATUS_DORMANT: CardStatus
OP_TYPE_UNSPECIFIED: OpType
OP_TYPE_SWIPE: OpType
OP_TYPE_RECHARGE: OpType
OP_TYPE_USE_COUNT: OpType
OP_TYPE_REFUND: OpType
OP_TYPE_COUPON_REDEEM: OpType
OP_TYPE_COUPON_RESTORE: OpType
OP_TYPE_SUPP_DEBIT: OpType
OP_TYPE_ISSUE: OpType
OP_TYPE_SET_STATUS: OpType
OP_TYPE_ADJUST: OpType
OP_TYPE_SET_RULES: OpType
OP_TYPE_SET_PIN: OpType
OP_TYPE_EXPIRE_POINTS: OpType
OP_TYPE_POINTS_REMINDER: OpType
OP_TYPE_COUPON_ISSUE: OpType

class SwipeColumns(_message.Message):
    __slots__ = ("client_ids", "card_nos", "amount_fen", "category", "flags", "operator_ids")
    CLIENT_IDS_FIELD_NUMBER: _ClassVar[int]
    CARD_NOS_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FEN_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    OPERATOR_IDS_FIELD_NUMBER: _ClassVar[int]
    client_ids: bytes
    card_nos: _containers.RepeatedScalarFieldContainer[int]
    amount_fen: _containers.RepeatedScalarFieldContainer[int]
    category: _containers.RepeatedScalarFieldContainer[int]
    flags: _containers.RepeatedScalarFieldContainer[int]
    operator_ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, client_ids: _Optional[bytes] = ..., card_nos: _Optional[_Iterable[int]] = ..., amount_fen: _Optional[_Iterable[int]] = ..., category: _Optional[_Iterable[int]] = ..., flags: _Optional[_Iterable[int]] = ..., operator_ids: _Optional[_Iterable[int]] = ...) -> None: ...

class OpResultColumns(_message.Message):
    __slots__ = ("codes", "replayed", "seq", "discount_fen", "payable_fen", "principal_delta_fen", "bonus_delta_fen", "points_delta", "principal_fen", "bonus_fen", "points", "level", "amount_fen", "coupon_fen", "offset_fen")
    CODES_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    DISCOUNT_FEN_FIELD_NUMBER: _ClassVar[int]
    PAYABLE_FEN_FIELD_NUMBER: _ClassVar[int]
    PRINCIPAL_DELTA_FEN_FIELD_NUMBER: _ClassVar[int]
    BONUS_DELTA_FEN_FIELD_NUMBER: _ClassVar[int]
    POINTS_DELTA_FIELD_NUMBER: _ClassVar[int]
    PRINCIPAL_FEN_FIELD_NUMBER: _ClassVar[int]
    BONUS_FEN_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FEN_FIELD_NUMBER: _ClassVar[int]
    COUPON_FEN_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FEN_FIELD_NUMBER: _ClassVar[int]
    codes: _containers.RepeatedScalarFieldContainer[Result]
    replayed: _containers.RepeatedScalarFieldContainer[bool]
    seq: _containers.RepeatedScalarFieldContainer[int]
    discount_fen: _containers.RepeatedScalarFieldContainer[int]
    payable_fen: _containers.RepeatedScalarFieldContainer[int]
    principal_delta_fen: _containers.RepeatedScalarFieldContainer[int]
    bonus_delta_fen: _containers.RepeatedScalarFieldContainer[int]
    points_delta: _containers.RepeatedScalarFieldContainer[int]
    principal_fen: _containers.RepeatedScalarFieldContainer[int]
    bonus_fen: _containers.RepeatedScalarFieldContainer[int]
    points: _containers.RepeatedScalarFieldContainer[int]
    level: _containers.RepeatedScalarFieldContainer[int]
    amount_fen: _containers.RepeatedScalarFieldContainer[int]
    coupon_fen: _containers.RepeatedScalarFieldContainer[int]
    offset_fen: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, codes: _Optional[_Iterable[_Union[Result, str]]] = ..., replayed: _Optional[_Iterable[bool]] = ..., seq: _Optional[_Iterable[int]] = ..., discount_fen: _Optional[_Iterable[int]] = ..., payable_fen: _Optional[_Iterable[int]] = ..., principal_delta_fen: _Optional[_Iterable[int]] = ..., bonus_delta_fen: _Optional[_Iterable[int]] = ..., points_delta: _Optional[_Iterable[int]] = ..., principal_fen: _Optional[_Iterable[int]] = ..., bonus_fen: _Optional[_Iterable[int]] = ..., points: _Optional[_Iterable[int]] = ..., level: _Optional[_Iterable[int]] = ..., amount_fen: _Optional[_Iterable[int]] = ..., coupon_fen: _Optional[_Iterable[int]] = ..., offset_fen: _Optional[_Iterable[int]] = ...) -> None: ...

class OpResult(_message.Message):
    __slots__ = ("code", "replayed", "seq", "amount_fen", "discount_fen", "payable_fen", "principal_delta_fen", "bonus_delta_fen", "points_delta", "principal_fen", "bonus_fen", "points", "level", "coupon_fen", "offset_fen")
    CODE_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FEN_FIELD_NUMBER: _ClassVar[int]
    DISCOUNT_FEN_FIELD_NUMBER: _ClassVar[int]
    PAYABLE_FEN_FIELD_NUMBER: _ClassVar[int]
    PRINCIPAL_DELTA_FEN_FIELD_NUMBER: _ClassVar[int]
    BONUS_DELTA_FEN_FIELD_NUMBER: _ClassVar[int]
    POINTS_DELTA_FIELD_NUMBER: _ClassVar[int]
    PRINCIPAL_FEN_FIELD_NUMBER: _ClassVar[int]
    BONUS_FEN_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    COUPON_FEN_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FEN_FIELD_NUMBER: _ClassVar[int]
    code: Result
    replayed: bool
    seq: int
    amount_fen: int
    discount_fen: int
    payable_fen: int
    principal_delta_fen: int
    bonus_delta_fen: int
    points_delta: int
    principal_fen: int
    bonus_fen: int
    points: int
    level: int
    coupon_fen: int
    offset_fen: int
    def __init__(self, code: _Optional[_Union[Result, str]] = ..., replayed: _Optional[bool] = ..., seq: _Optional[int] = ..., amount_fen: _Optional[int] = ..., discount_fen: _Optional[int] = ..., payable_fen: _Optional[int] = ..., principal_delta_fen: _Optional[int] = ..., bonus_delta_fen: _Optional[int] = ..., points_delta: _Optional[int] = ..., principal_fen: _Optional[int] = ..., bonus_fen: _Optional[int] = ..., points: _Optional[int] = ..., level: _Optional[int] = ..., coupon_fen: _Optional[int] = ..., offset_fen: _Optional[int] = ...) -> None: ...

class LineItem(_message.Message):
    __slots__ = ("sku", "amount_fen", "qty", "category", "no_points")
    SKU_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FEN_FIELD_NUMBER: _ClassVar[int]
    QTY_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    NO_POINTS_FIELD_NUMBER: _ClassVar[int]
    sku: int
    amount_fen: int
    qty: int
    category: int
    no_points: bool
    def __init__(self, sku: _Optional[int] = ..., amount_fen: _Optional[int] = ..., qty: _Optional[int] = ..., category: _Optional[int] = ..., no_points: _Optional[bool] = ...) -> None: ...

class Card(_message.Message):
    __slots__ = ("card_no", "member_id", "type_id", "status", "level", "principal_fen", "bonus_fen", "points", "expires_at_s", "level_expires_at_s", "spend_total_fen", "recharge_total_fen", "visits", "last_visit_s", "last_seq", "count_service", "count_uses", "primary_card_no", "supp_limit_fen", "membership_lapsed", "fee_paid_until_s", "plan_price_bp", "plan_price_plan", "plan_price_until_s")
    CARD_NO_FIELD_NUMBER: _ClassVar[int]
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    PRINCIPAL_FEN_FIELD_NUMBER: _ClassVar[int]
    BONUS_FEN_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_S_FIELD_NUMBER: _ClassVar[int]
    LEVEL_EXPIRES_AT_S_FIELD_NUMBER: _ClassVar[int]
    SPEND_TOTAL_FEN_FIELD_NUMBER: _ClassVar[int]
    RECHARGE_TOTAL_FEN_FIELD_NUMBER: _ClassVar[int]
    VISITS_FIELD_NUMBER: _ClassVar[int]
    LAST_VISIT_S_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    COUNT_SERVICE_FIELD_NUMBER: _ClassVar[int]
    COUNT_USES_FIELD_NUMBER: _ClassVar[int]
    PRIMARY_CARD_NO_FIELD_NUMBER: _ClassVar[int]
    SUPP_LIMIT_FEN_FIELD_NUMBER: _ClassVar[int]
    MEMBERSHIP_LAPSED_FIELD_NUMBER: _ClassVar[int]
    FEE_PAID_UNTIL_S_FIELD_NUMBER: _ClassVar[int]
    PLAN_PRICE_BP_FIELD_NUMBER: _ClassVar[int]
    PLAN_PRICE_PLAN_FIELD_NUMBER: _ClassVar[int]
    PLAN_PRICE_UNTIL_S_FIELD_NUMBER: _ClassVar[int]
    card_no: int
    member_id: int
    type_id: int
    status: CardStatus
    level: int
    principal_fen: int
    bonus_fen: int
    points: int
    expires_at_s: int
    level_expires_at_s: int
    spend_total_fen: int
    recharge_total_fen: int
    visits: int
    last_visit_s: int
    last_seq: int
    count_service: int
    count_uses: int
    primary_card_no: int
    supp_limit_fen: int
    membership_lapsed: bool
    fee_paid_until_s: int
    plan_price_bp: int
    plan_price_plan: int
    plan_price_until_s: int
    def __init__(self, card_no: _Optional[int] = ..., member_id: _Optional[int] = ..., type_id: _Optional[int] = ..., status: _Optional[_Union[CardStatus, str]] = ..., level: _Optional[int] = ..., principal_fen: _Optional[int] = ..., bonus_fen: _Optional[int] = ..., points: _Optional[int] = ..., expires_at_s: _Optional[int] = ..., level_expires_at_s: _Optional[int] = ..., spend_total_fen: _Optional[int] = ..., recharge_total_fen: _Optional[int] = ..., visits: _Optional[int] = ..., last_visit_s: _Optional[int] = ..., last_seq: _Optional[int] = ..., count_service: _Optional[int] = ..., count_uses: _Optional[int] = ..., primary_card_no: _Optional[int] = ..., supp_limit_fen: _Optional[int] = ..., membership_lapsed: _Optional[bool] = ..., fee_paid_until_s: _Optional[int] = ..., plan_price_bp: _Optional[int] = ..., plan_price_plan: _Optional[int] = ..., plan_price_until_s: _Optional[int] = ...) -> None: ...
