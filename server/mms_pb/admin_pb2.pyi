from . import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class IssueCardsRequest(_message.Message):
    __slots__ = ("client_id", "card_nos", "type_id", "level", "member_ids", "expires_at_s")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    CARD_NOS_FIELD_NUMBER: _ClassVar[int]
    TYPE_ID_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    MEMBER_IDS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_S_FIELD_NUMBER: _ClassVar[int]
    client_id: bytes
    card_nos: _containers.RepeatedScalarFieldContainer[int]
    type_id: int
    level: int
    member_ids: _containers.RepeatedScalarFieldContainer[int]
    expires_at_s: int
    def __init__(self, client_id: _Optional[bytes] = ..., card_nos: _Optional[_Iterable[int]] = ..., type_id: _Optional[int] = ..., level: _Optional[int] = ..., member_ids: _Optional[_Iterable[int]] = ..., expires_at_s: _Optional[int] = ...) -> None: ...

class IssueCardsResponse(_message.Message):
    __slots__ = ("code", "replayed", "seq", "detail")
    CODE_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    code: _types_pb2.Result
    replayed: bool
    seq: int
    detail: str
    def __init__(self, code: _Optional[_Union[_types_pb2.Result, str]] = ..., replayed: _Optional[bool] = ..., seq: _Optional[int] = ..., detail: _Optional[str] = ...) -> None: ...

class SetCardStatusRequest(_message.Message):
    __slots__ = ("client_id", "card_no", "status")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    CARD_NO_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    client_id: bytes
    card_no: int
    status: _types_pb2.CardStatus
    def __init__(self, client_id: _Optional[bytes] = ..., card_no: _Optional[int] = ..., status: _Optional[_Union[_types_pb2.CardStatus, str]] = ...) -> None: ...

class SetCardStatusResponse(_message.Message):
    __slots__ = ("code", "replayed", "seq", "detail")
    CODE_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    code: _types_pb2.Result
    replayed: bool
    seq: int
    detail: str
    def __init__(self, code: _Optional[_Union[_types_pb2.Result, str]] = ..., replayed: _Optional[bool] = ..., seq: _Optional[int] = ..., detail: _Optional[str] = ...) -> None: ...
