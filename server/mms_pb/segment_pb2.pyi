from . import admin_pb2 as _admin_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SegmentOutcome(_message.Message):
    __slots__ = ("replayed", "seq")
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    replayed: bool
    seq: int
    def __init__(self, replayed: _Optional[bool] = ..., seq: _Optional[int] = ...) -> None: ...

class DefineSegmentRequest(_message.Message):
    __slots__ = ("client_id", "name", "definition_json")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DEFINITION_JSON_FIELD_NUMBER: _ClassVar[int]
    client_id: bytes
    name: str
    definition_json: str
    def __init__(self, client_id: _Optional[bytes] = ..., name: _Optional[str] = ..., definition_json: _Optional[str] = ...) -> None: ...

class SegmentInfo(_message.Message):
    __slots__ = ("name", "definition_json", "created_s", "updated_s", "outcome")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DEFINITION_JSON_FIELD_NUMBER: _ClassVar[int]
    CREATED_S_FIELD_NUMBER: _ClassVar[int]
    UPDATED_S_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    name: str
    definition_json: str
    created_s: int
    updated_s: int
    outcome: SegmentOutcome
    def __init__(self, name: _Optional[str] = ..., definition_json: _Optional[str] = ..., created_s: _Optional[int] = ..., updated_s: _Optional[int] = ..., outcome: _Optional[_Union[SegmentOutcome, _Mapping]] = ...) -> None: ...

class ListSegmentsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListSegmentsResponse(_message.Message):
    __slots__ = ("segments",)
    SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    segments: _containers.RepeatedCompositeFieldContainer[SegmentInfo]
    def __init__(self, segments: _Optional[_Iterable[_Union[SegmentInfo, _Mapping]]] = ...) -> None: ...

class DeleteSegmentRequest(_message.Message):
    __slots__ = ("client_id", "name")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    client_id: bytes
    name: str
    def __init__(self, client_id: _Optional[bytes] = ..., name: _Optional[str] = ...) -> None: ...

class SegmentQuery(_message.Message):
    __slots__ = ("name", "definition_json", "store_id", "offset", "limit")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DEFINITION_JSON_FIELD_NUMBER: _ClassVar[int]
    STORE_ID_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    name: str
    definition_json: str
    store_id: int
    offset: int
    limit: int
    def __init__(self, name: _Optional[str] = ..., definition_json: _Optional[str] = ..., store_id: _Optional[int] = ..., offset: _Optional[int] = ..., limit: _Optional[int] = ...) -> None: ...

class CountSegmentResponse(_message.Message):
    __slots__ = ("members", "behaviour_seq")
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    BEHAVIOUR_SEQ_FIELD_NUMBER: _ClassVar[int]
    members: int
    behaviour_seq: int
    def __init__(self, members: _Optional[int] = ..., behaviour_seq: _Optional[int] = ...) -> None: ...

class SegmentMembersResponse(_message.Message):
    __slots__ = ("total", "members")
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    total: int
    members: _containers.RepeatedCompositeFieldContainer[_admin_pb2.Member]
    def __init__(self, total: _Optional[int] = ..., members: _Optional[_Iterable[_Union[_admin_pb2.Member, _Mapping]]] = ...) -> None: ...

class ExportSegmentRequest(_message.Message):
    __slots__ = ("query", "format")
    QUERY_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    query: SegmentQuery
    format: str
    def __init__(self, query: _Optional[_Union[SegmentQuery, _Mapping]] = ..., format: _Optional[str] = ...) -> None: ...

class ExportSegmentResponse(_message.Message):
    __slots__ = ("chunk", "members")
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    chunk: bytes
    members: int
    def __init__(self, chunk: _Optional[bytes] = ..., members: _Optional[int] = ...) -> None: ...

class SegmentReportRequest(_message.Message):
    __slots__ = ("query", "days")
    QUERY_FIELD_NUMBER: _ClassVar[int]
    DAYS_FIELD_NUMBER: _ClassVar[int]
    query: SegmentQuery
    days: int
    def __init__(self, query: _Optional[_Union[SegmentQuery, _Mapping]] = ..., days: _Optional[int] = ...) -> None: ...

class SegmentClassRow(_message.Message):
    __slots__ = ("rfm_class", "name", "members", "spend_fen", "visits", "share_bp")
    RFM_CLASS_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    SPEND_FEN_FIELD_NUMBER: _ClassVar[int]
    VISITS_FIELD_NUMBER: _ClassVar[int]
    SHARE_BP_FIELD_NUMBER: _ClassVar[int]
    rfm_class: str
    name: str
    members: int
    spend_fen: int
    visits: int
    share_bp: int
    def __init__(self, rfm_class: _Optional[str] = ..., name: _Optional[str] = ..., members: _Optional[int] = ..., spend_fen: _Optional[int] = ..., visits: _Optional[int] = ..., share_bp: _Optional[int] = ...) -> None: ...

class SegmentReportResponse(_message.Message):
    __slots__ = ("members", "spend_fen", "visits", "share_bp", "all_spend_fen", "days", "as_of_date", "behaviour_seq", "classes")
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    SPEND_FEN_FIELD_NUMBER: _ClassVar[int]
    VISITS_FIELD_NUMBER: _ClassVar[int]
    SHARE_BP_FIELD_NUMBER: _ClassVar[int]
    ALL_SPEND_FEN_FIELD_NUMBER: _ClassVar[int]
    DAYS_FIELD_NUMBER: _ClassVar[int]
    AS_OF_DATE_FIELD_NUMBER: _ClassVar[int]
    BEHAVIOUR_SEQ_FIELD_NUMBER: _ClassVar[int]
    CLASSES_FIELD_NUMBER: _ClassVar[int]
    members: int
    spend_fen: int
    visits: int
    share_bp: int
    all_spend_fen: int
    days: int
    as_of_date: str
    behaviour_seq: int
    classes: _containers.RepeatedCompositeFieldContainer[SegmentClassRow]
    def __init__(self, members: _Optional[int] = ..., spend_fen: _Optional[int] = ..., visits: _Optional[int] = ..., share_bp: _Optional[int] = ..., all_spend_fen: _Optional[int] = ..., days: _Optional[int] = ..., as_of_date: _Optional[str] = ..., behaviour_seq: _Optional[int] = ..., classes: _Optional[_Iterable[_Union[SegmentClassRow, _Mapping]]] = ...) -> None: ...

class DefineRuleTagRequest(_message.Message):
    __slots__ = ("client_id", "name", "rule_json", "description")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    RULE_JSON_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    client_id: bytes
    name: str
    rule_json: str
    description: str
    def __init__(self, client_id: _Optional[bytes] = ..., name: _Optional[str] = ..., rule_json: _Optional[str] = ..., description: _Optional[str] = ...) -> None: ...

class RuleTagInfo(_message.Message):
    __slots__ = ("name", "rule_json", "description", "evaluated_s", "members", "outcome")
    NAME_FIELD_NUMBER: _ClassVar[int]
    RULE_JSON_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    EVALUATED_S_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    name: str
    rule_json: str
    description: str
    evaluated_s: int
    members: int
    outcome: SegmentOutcome
    def __init__(self, name: _Optional[str] = ..., rule_json: _Optional[str] = ..., description: _Optional[str] = ..., evaluated_s: _Optional[int] = ..., members: _Optional[int] = ..., outcome: _Optional[_Union[SegmentOutcome, _Mapping]] = ...) -> None: ...

class ListRuleTagsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListRuleTagsResponse(_message.Message):
    __slots__ = ("tags",)
    TAGS_FIELD_NUMBER: _ClassVar[int]
    tags: _containers.RepeatedCompositeFieldContainer[RuleTagInfo]
    def __init__(self, tags: _Optional[_Iterable[_Union[RuleTagInfo, _Mapping]]] = ...) -> None: ...

class DeleteRuleTagRequest(_message.Message):
    __slots__ = ("client_id", "name")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    client_id: bytes
    name: str
    def __init__(self, client_id: _Optional[bytes] = ..., name: _Optional[str] = ...) -> None: ...

class EvaluateRuleTagsRequest(_message.Message):
    __slots__ = ("client_id", "name")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    client_id: bytes
    name: str
    def __init__(self, client_id: _Optional[bytes] = ..., name: _Optional[str] = ...) -> None: ...

class RuleTagEvaluation(_message.Message):
    __slots__ = ("name", "members", "added", "removed")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    ADDED_FIELD_NUMBER: _ClassVar[int]
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    name: str
    members: int
    added: int
    removed: int
    def __init__(self, name: _Optional[str] = ..., members: _Optional[int] = ..., added: _Optional[int] = ..., removed: _Optional[int] = ...) -> None: ...

class EvaluateRuleTagsResponse(_message.Message):
    __slots__ = ("evaluations",)
    EVALUATIONS_FIELD_NUMBER: _ClassVar[int]
    evaluations: _containers.RepeatedCompositeFieldContainer[RuleTagEvaluation]
    def __init__(self, evaluations: _Optional[_Iterable[_Union[RuleTagEvaluation, _Mapping]]] = ...) -> None: ...

class SetRfmConfigRequest(_message.Message):
    __slots__ = ("client_id", "config_json")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    CONFIG_JSON_FIELD_NUMBER: _ClassVar[int]
    client_id: bytes
    config_json: str
    def __init__(self, client_id: _Optional[bytes] = ..., config_json: _Optional[str] = ...) -> None: ...

class GetRfmConfigRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RfmConfigResponse(_message.Message):
    __slots__ = ("config_json", "outcome")
    CONFIG_JSON_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    config_json: str
    outcome: SegmentOutcome
    def __init__(self, config_json: _Optional[str] = ..., outcome: _Optional[_Union[SegmentOutcome, _Mapping]] = ...) -> None: ...

class RfmClassCountsRequest(_message.Message):
    __slots__ = ("store_id",)
    STORE_ID_FIELD_NUMBER: _ClassVar[int]
    store_id: int
    def __init__(self, store_id: _Optional[int] = ...) -> None: ...

class RfmClassCountsResponse(_message.Message):
    __slots__ = ("classes", "frequency_min", "monetary_min_fen")
    CLASSES_FIELD_NUMBER: _ClassVar[int]
    FREQUENCY_MIN_FIELD_NUMBER: _ClassVar[int]
    MONETARY_MIN_FEN_FIELD_NUMBER: _ClassVar[int]
    classes: _containers.RepeatedCompositeFieldContainer[SegmentClassRow]
    frequency_min: int
    monetary_min_fen: int
    def __init__(self, classes: _Optional[_Iterable[_Union[SegmentClassRow, _Mapping]]] = ..., frequency_min: _Optional[int] = ..., monetary_min_fen: _Optional[int] = ...) -> None: ...
