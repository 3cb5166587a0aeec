from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ReportRequest(_message.Message):
    __slots__ = ("from_date", "to_date", "by", "store_id", "region_id", "top", "by_store")
    FROM_DATE_FIELD_NUMBER: _ClassVar[int]
    TO_DATE_FIELD_NUMBER: _ClassVar[int]
    BY_FIELD_NUMBER: _ClassVar[int]
    STORE_ID_FIELD_NUMBER: _ClassVar[int]
    REGION_ID_FIELD_NUMBER: _ClassVar[int]
    TOP_FIELD_NUMBER: _ClassVar[int]
    BY_STORE_FIELD_NUMBER: _ClassVar[int]
    from_date: str
    to_date: str
    by: _containers.RepeatedScalarFieldContainer[str]
    store_id: int
    region_id: int
    top: int
    by_store: bool
    def __init__(self, from_date: _Optional[str] = ..., to_date: _Optional[str] = ..., by: _Optional[_Iterable[str]] = ..., store_id: _Optional[int] = ..., region_id: _Optional[int] = ..., top: _Optional[int] = ..., by_store: _Optional[bool] = ...) -> None: ...

class ReportRow(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, values: _Optional[_Iterable[int]] = ...) -> None: ...

class ReportTable(_message.Message):
    __slots__ = ("columns", "rows", "store_id")
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    STORE_ID_FIELD_NUMBER: _ClassVar[int]
    columns: _containers.RepeatedScalarFieldContainer[str]
    rows: _containers.RepeatedCompositeFieldContainer[ReportRow]
    store_id: int
    def __init__(self, columns: _Optional[_Iterable[str]] = ..., rows: _Optional[_Iterable[_Union[ReportRow, _Mapping]]] = ..., store_id: _Optional[int] = ...) -> None: ...

class ReconcileRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ReconcileResponse(_message.Message):
    __slots__ = ("principal_rollup_fen", "principal_cards_fen", "bonus_rollup_fen", "bonus_cards_fen", "ok")
    PRINCIPAL_ROLLUP_FEN_FIELD_NUMBER: _ClassVar[int]
    PRINCIPAL_CARDS_FEN_FIELD_NUMBER: _ClassVar[int]
    BONUS_ROLLUP_FEN_FIELD_NUMBER: _ClassVar[int]
    BONUS_CARDS_FEN_FIELD_NUMBER: _ClassVar[int]
    OK_FIELD_NUMBER: _ClassVar[int]
    principal_rollup_fen: int
    principal_cards_fen: int
    bonus_rollup_fen: int
    bonus_cards_fen: int
    ok: bool
    def __init__(self, principal_rollup_fen: _Optional[int] = ..., principal_cards_fen: _Optional[int] = ..., bonus_rollup_fen: _Optional[int] = ..., bonus_cards_fen: _Optional[int] = ..., ok: _Optional[bool] = ...) -> None: ...
