from . import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SwipeRequest(_message.Message):
    __slots__ = ("client_id", "card_no", "amount_fen", "category", "flags", "operator_id", "store_id", "items", "coupon_ids", "points_offset", "pin")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    CARD_NO_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FEN_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    OPERATOR_ID_FIELD_NUMBER: _ClassVar[int]
    STORE_ID_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    COUPON_IDS_FIELD_NUMBER: _ClassVar[int]
    POINTS_OFFSET_FIELD_NUMBER: _ClassVar[int]
    PIN_FIELD_NUMBER: _ClassVar[int]
    client_id: bytes
    card_no: int
    amount_fen: int
    category: int
    flags: int
    operator_id: int
    store_id: int
    items: _containers.RepeatedCompositeFieldContainer[_types_pb2.LineItem]
    coupon_ids: _containers.RepeatedScalarFieldContainer[int]
    points_offset: int
    pin: str
    def __init__(self, client_id: _Optional[bytes] = ..., card_no: _Optional[int] = ..., amount_fen: _Optional[int] = ..., category: _Optional[int] = ..., flags: _Optional[int] = ..., operator_id: _Optional[int] = ..., store_id: _Optional[int] = ..., items: _Optional[_Iterable[_Union[_types_pb2.LineItem, _Mapping]]] = ..., coupon_ids: _Optional[_Iterable[int]] = ..., points_offset: _Optional[int] = ..., pin: _Optional[str] = ...) -> None: ...

class SwipeResponse(_message.Message):
    __slots__ = ("result",)
    RESULT_FIELD_NUMBER: _ClassVar[int]
    result: _types_pb2.OpResult
    def __init__(self, result: _Optional[_Union[_types_pb2.OpResult, _Mapping]] = ...) -> None: ...

class SwipeBatchRequest(_message.Message):
    __slots__ = ("swipes", "store_id")
    SWIPES_FIELD_NUMBER: _ClassVar[int]
    STORE_ID_FIELD_NUMBER: _ClassVar[int]
    swipes: _types_pb2.SwipeColumns
    store_id: int
    def __init__(self, swipes: _Optional[_Union[_types_pb2.SwipeColumns, _Mapping]] = ..., store_id: _Optional[int] = ...) -> None: ...

class SwipeBatchResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _types_pb2.OpResultColumns
    def __init__(self, results: _Optional[_Union[_types_pb2.OpResultColumns, _Mapping]] = ...) -> None: ...

class SwipeStreamRequest(_message.Message):
    __slots__ = ("batch_id", "swipes", "store_id")
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    SWIPES_FIELD_NUMBER: _ClassVar[int]
    STORE_ID_FIELD_NUMBER: _ClassVar[int]
    batch_id: int
    swipes: _types_pb2.SwipeColumns
    store_id: int
    def __init__(self, batch_id: _Optional[int] = ..., swipes: _Optional[_Union[_types_pb2.SwipeColumns, _Mapping]] = ..., store_id: _Optional[int] = ...) -> None: ...

class SwipeStreamResponse(_message.Message):
    __slots__ = ("batch_id", "results")
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    batch_id: int
    results: _types_pb2.OpResultColumns
    def __init__(self, batch_id: _Optional[int] = ..., results: _Optional[_Union[_types_pb2.OpResultColumns, _Mapping]] = ...) -> None: ...

class RechargeRequest(_message.Message):
    __slots__ = ("client_id", "card_no", "amount_fen", "operator_id", "store_id")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    CARD_NO_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FEN_FIELD_NUMBER: _ClassVar[int]
    OPERATOR_ID_FIELD_NUMBER: _ClassVar[int]
    STORE_ID_FIELD_NUMBER: _ClassVar[int]
    client_id: bytes
    card_no: int
    amount_fen: int
    operator_id: int
    store_id: int
    def __init__(self, client_id: _Optional[bytes] = ..., card_no: _Optional[int] = ..., amount_fen: _Optional[int] = ..., operator_id: _Optional[int] = ..., store_id: _Optional[int] = ...) -> None: ...

class RechargeResponse(_message.Message):
    __slots__ = ("result",)
    RESULT_FIELD_NUMBER: _ClassVar[int]
    result: _types_pb2.OpResult
    def __init__(self, result: _Optional[_Union[_types_pb2.OpResult, _Mapping]] = ...) -> None: ...

class BulkRechargeRequest(_message.Message):
    __slots__ = ("client_ids", "card_nos", "amount_fen", "line_numbers", "operator_id", "operator_session")
    CLIENT_IDS_FIELD_NUMBER: _ClassVar[int]
    CARD_NOS_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FEN_FIELD_NUMBER: _ClassVar[int]
    LINE_NUMBERS_FIELD_NUMBER: _ClassVar[int]
    OPERATOR_ID_FIELD_NUMBER: _ClassVar[int]
    OPERATOR_SESSION_FIELD_NUMBER: _ClassVar[int]
    client_ids: bytes
    card_nos: _containers.RepeatedScalarFieldContainer[int]
    amount_fen: _containers.RepeatedScalarFieldContainer[int]
    line_numbers: _containers.RepeatedScalarFieldContainer[int]
    operator_id: int
    operator_session: str
    def __init__(self, client_ids: _Optional[bytes] = ..., card_nos: _Optional[_Iterable[int]] = ..., amount_fen: _Optional[_Iterable[int]] = ..., line_numbers: _Optional[_Iterable[int]] = ..., operator_id: _Optional[int] = ..., operator_session: _Optional[str] = ...) -> None: ...

class BulkRechargeChunkSummary(_message.Message):
    __slots__ = ("chunk_index", "first_line", "last_line", "applied", "replayed", "rejected")
    CHUNK_INDEX_FIELD_NUMBER: _ClassVar[int]
    FIRST_LINE_FIELD_NUMBER: _ClassVar[int]
    LAST_LINE_FIELD_NUMBER: _ClassVar[int]
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    chunk_index: int
    first_line: int
    last_line: int
    applied: int
    replayed: int
    rejected: int
    def __init__(self, chunk_index: _Optional[int] = ..., first_line: _Optional[int] = ..., last_line: _Optional[int] = ..., applied: _Optional[int] = ..., replayed: _Optional[int] = ..., rejected: _Optional[int] = ...) -> None: ...

class BulkRechargeRejectedRow(_message.Message):
    __slots__ = ("line_number", "code")
    LINE_NUMBER_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    line_number: int
    code: _types_pb2.Result
    def __init__(self, line_number: _Optional[int] = ..., code: _Optional[_Union[_types_pb2.Result, str]] = ...) -> None: ...

class BulkRechargeResponse(_message.Message):
    __slots__ = ("rows", "applied", "replayed", "rejected", "applied_fen", "last_line", "chunks", "rejected_rows")
    ROWS_FIELD_NUMBER: _ClassVar[int]
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    APPLIED_FEN_FIELD_NUMBER: _ClassVar[int]
    LAST_LINE_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    REJECTED_ROWS_FIELD_NUMBER: _ClassVar[int]
    rows: int
    applied: int
    replayed: int
    rejected: int
    applied_fen: int
    last_line: int
    chunks: _containers.RepeatedCompositeFieldContainer[BulkRechargeChunkSummary]
    rejected_rows: _containers.RepeatedCompositeFieldContainer[BulkRechargeRejectedRow]
    def __init__(self, rows: _Optional[int] = ..., applied: _Optional[int] = ..., replayed: _Optional[int] = ..., rejected: _Optional[int] = ..., applied_fen: _Optional[int] = ..., last_line: _Optional[int] = ..., chunks: _Optional[_Iterable[_Union[BulkRechargeChunkSummary, _Mapping]]] = ..., rejected_rows: _Optional[_Iterable[_Union[BulkRechargeRejectedRow, _Mapping]]] = ...) -> None: ...

class GetCardRequest(_message.Message):
    __slots__ = ("card_no",)
    CARD_NO_FIELD_NUMBER: _ClassVar[int]
    card_no: int
    def __init__(self, card_no: _Optional[int] = ...) -> None: ...

class GetCardResponse(_message.Message):
    __slots__ = ("card",)
    CARD_FIELD_NUMBER: _ClassVar[int]
    card: _types_pb2.Card
    def __init__(self, card: _Optional[_Union[_types_pb2.Card, _Mapping]] = ...) -> None: ...

class RefundRequest(_message.Message):
    __slots__ = ("client_id", "card_no", "swipe_client_id", "amount_fen", "operator_id", "store_id", "operator_session")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    CARD_NO_FIELD_NUMBER: _ClassVar[int]
    SWIPE_CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FEN_FIELD_NUMBER: _ClassVar[int]
    OPERATOR_ID_FIELD_NUMBER: _ClassVar[int]
    STORE_ID_FIELD_NUMBER: _ClassVar[int]
    OPERATOR_SESSION_FIELD_NUMBER: _ClassVar[int]
    client_id: bytes
    card_no: int
    swipe_client_id: bytes
    amount_fen: int
    operator_id: int
    store_id: int
    operator_session: str
    def __init__(self, client_id: _Optional[bytes] = ..., card_no: _Optional[int] = ..., swipe_client_id: _Optional[bytes] = ..., amount_fen: _Optional[int] = ..., operator_id: _Optional[int] = ..., store_id: _Optional[int] = ..., operator_session: _Optional[str] = ...) -> None: ...

class RefundResponse(_message.Message):
    __slots__ = ("result",)
    RESULT_FIELD_NUMBER: _ClassVar[int]
    result: _types_pb2.OpResult
    def __init__(self, result: _Optional[_Union[_types_pb2.OpResult, _Mapping]] = ...) -> None: ...

class UseCountRequest(_message.Message):
    __slots__ = ("client_id", "card_no", "service", "uses", "pin", "operator_id", "store_id")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    CARD_NO_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    USES_FIELD_NUMBER: _ClassVar[int]
    PIN_FIELD_NUMBER: _ClassVar[int]
    OPERATOR_ID_FIELD_NUMBER: _ClassVar[int]
    STORE_ID_FIELD_NUMBER: _ClassVar[int]
    client_id: bytes
    card_no: int
    service: int
    uses: int
    pin: str
    operator_id: int
    store_id: int
    def __init__(self, client_id: _Optional[bytes] = ..., card_no: _Optional[int] = ..., service: _Optional[int] = ..., uses: _Optional[int] = ..., pin: _Optional[str] = ..., operator_id: _Optional[int] = ..., store_id: _Optional[int] = ...) -> None: ...

class UseCountResponse(_message.Message):
    __slots__ = ("result",)
    RESULT_FIELD_NUMBER: _ClassVar[int]
    result: _types_pb2.OpResult
    def __init__(self, result: _Optional[_Union[_types_pb2.OpResult, _Mapping]] = ...) -> None: ...
