from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class SubscribeRequest(_message.Message):
    __slots__ = ("after_frame", "epoch", "confirmed_frame", "standby", "batches")
    AFTER_FRAME_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    CONFIRMED_FRAME_FIELD_NUMBER: _ClassVar[int]
    STANDBY_FIELD_NUMBER: _ClassVar[int]
    BATCHES_FIELD_NUMBER: _ClassVar[int]
    after_frame: int
    epoch: int
    confirmed_frame: int
    standby: str
    batches: bool
    def __init__(self, after_frame: _Optional[int] = ..., epoch: _Optional[int] = ..., confirmed_frame: _Optional[int] = ..., standby: _Optional[str] = ..., batches: _Optional[bool] = ...) -> None: ...

class FrameChunk(_message.Message):
    __slots__ = ("data", "end_of_frame", "primary_seq", "frame_bytes", "confirm_interval_ms")
    DATA_FIELD_NUMBER: _ClassVar[int]
    END_OF_FRAME_FIELD_NUMBER: _ClassVar[int]
    PRIMARY_SEQ_FIELD_NUMBER: _ClassVar[int]
    FRAME_BYTES_FIELD_NUMBER: _ClassVar[int]
    CONFIRM_INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    end_of_frame: bool
    primary_seq: int
    frame_bytes: _containers.RepeatedScalarFieldContainer[int]
    confirm_interval_ms: int
    def __init__(self, data: _Optional[bytes] = ..., end_of_frame: _Optional[bool] = ..., primary_seq: _Optional[int] = ..., frame_bytes: _Optional[_Iterable[int]] = ..., confirm_interval_ms: _Optional[int] = ...) -> None: ...

class HotCopyRequest(_message.Message):
    __slots__ = ("standby",)
    STANDBY_FIELD_NUMBER: _ClassVar[int]
    standby: str
    def __init__(self, standby: _Optional[str] = ...) -> None: ...

class CopyChunk(_message.Message):
    __slots__ = ("data", "frame", "epoch", "size_bytes", "last", "pii_key")
    DATA_FIELD_NUMBER: _ClassVar[int]
    FRAME_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    LAST_FIELD_NUMBER: _ClassVar[int]
    PII_KEY_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    frame: int
    epoch: int
    size_bytes: int
    last: bool
    pii_key: bytes
    def __init__(self, data: _Optional[bytes] = ..., frame: _Optional[int] = ..., epoch: _Optional[int] = ..., size_bytes: _Optional[int] = ..., last: _Optional[bool] = ..., pii_key: _Optional[bytes] = ...) -> None: ...

class ReplicationStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ReplicationStatus(_message.Message):
    __slots__ = ("role", "epoch", "frame", "seq", "mode", "standbys", "lag_records", "lag_ms", "primary", "error_reason", "error_message")
    ROLE_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    FRAME_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    STANDBYS_FIELD_NUMBER: _ClassVar[int]
    LAG_RECORDS_FIELD_NUMBER: _ClassVar[int]
    LAG_MS_FIELD_NUMBER: _ClassVar[int]
    PRIMARY_FIELD_NUMBER: _ClassVar[int]
    ERROR_REASON_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    role: str
    epoch: int
    frame: int
    seq: int
    mode: str
    standbys: int
    lag_records: int
    lag_ms: int
    primary: str
    error_reason: str
    error_message: str
    def __init__(self, role: _Optional[str] = ..., epoch: _Optional[int] = ..., frame: _Optional[int] = ..., seq: _Optional[int] = ..., mode: _Optional[str] = ..., standbys: _Optional[int] = ..., lag_records: _Optional[int] = ..., lag_ms: _Optional[int] = ..., primary: _Optional[str] = ..., error_reason: _Optional[str] = ..., error_message: _Optional[str] = ...) -> None: ...
