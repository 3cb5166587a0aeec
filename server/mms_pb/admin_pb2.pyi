from . import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class NodeKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NODE_KIND_UNSPECIFIED: _ClassVar[NodeKind]
    NODE_KIND_HQ: _ClassVar[NodeKind]
    NODE_KIND_REGION: _ClassVar[NodeKind]
    NODE_KIND_STORE: _ClassVar[NodeKind]
    NODE_KIND_TERMINAL: _ClassVar[NodeKind]

class MemberStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MEMBER_STATUS_UNSPECIFIED: _ClassVar[MemberStatus]
    MEMBER_STATUS_ACTIVE: _ClassVar[MemberStatus]
    MEMBER_STATUS_FROZEN: _ClassVar[MemberStatus]
    MEMBER_STATUS_CANCELLED: _ClassVar[MemberStatus]
NODE_KIND_UNSPECIFIED: NodeKind
NODE_KIND_HQ: NodeKind
NODE_KIND_REGION: NodeKind
NODE_KIND_STORE: NodeKind
NODE_KIND_TERMINAL: NodeKind
MEMBER_STATUS_UNSPECIFIED: MemberStatus
MEMBER_STATUS_ACTIVE: MemberStatus
MEMBER_STATUS_FROZEN: MemberStatus
MEMBER_STATUS_CANCELLED: MemberStatus

class AdminOutcome(_message.Message):
    __slots__ = ("replayed", "seq")
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    replayed: bool
    seq: int
    def __init__(self, replayed: _Optional[bool] = ..., seq: _Optional[int] = ...) -> None: ...

class Node(_message.Message):
    __slots__ = ("node_id", "kind", "parent_id", "name", "closed_s", "has_token")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    PARENT_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    CLOSED_S_FIELD_NUMBER: _ClassVar[int]
    HAS_TOKEN_FIELD_NUMBER: _ClassVar[int]
    node_id: int
    kind: NodeKind
    parent_id: int
    name: str
    closed_s: int
    has_token: bool
    def __init__(self, node_id: _Optional[int] = ..., kind: _Optional[_Union[NodeKind, str]] = ..., parent_id: _Optional[int] = ..., name: _Optional[str] = ..., closed_s: _Optional[int] = ..., has_token: _Optional[bool] = ...) -> None: ...

class Operator(_message.Message):
    __slots__ = ("operator_id", "login", "name", "role", "home_store_id", "disabled", "home_region_id")
    OPERATOR_ID_FIELD_NUMBER: _ClassVar[int]
    LOGIN_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    HOME_STORE_ID_FIELD_NUMBER: _ClassVar[int]
    DISABLED_FIELD_NUMBER: _ClassVar[int]
    HOME_REGION_ID_FIELD_NUMBER: _ClassVar[int]
    operator_id: int
    login: str
    name: str
    role: str
    home_store_id: int
    disabled: bool
    home_region_id: int
    def __init__(self, operator_id: _Optional[int] = ..., login: _Optional[str] = ..., name: _Optional[str] = ..., role: _Optional[str] = ..., home_store_id: _Optional[int] = ..., disabled: _Optional[bool] = ..., home_region_id: _Optional[int] = ...) -> None: ...

class BootstrapRequest(_message.Message):
    __slots__ = ("client_id", "chain_name", "admin_login", "admin_password", "admin_name")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    CHAIN_NAME_FIELD_NUMBER: _ClassVar[int]
    ADMIN_LOGIN_FIELD_NUMBER: _ClassVar[int]
    ADMIN_PASSWORD_FIELD_NUMBER: _ClassVar[int]
    ADMIN_NAME_FIELD_NUMBER: _ClassVar[int]
    client_id: bytes
    chain_name: str
    admin_login: str
    admin_password: str
    admin_name: str
    def __init__(self, client_id: _Optional[bytes] = ..., chain_name: _Optional[str] = ..., admin_login: _Optional[str] = ..., admin_password: _Optional[str] = ..., admin_name: _Optional[str] = ...) -> None: ...

class BootstrapResponse(_message.Message):
    __slots__ = ("admin", "outcome")
    ADMIN_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    admin: Operator
    outcome: AdminOutcome
    def __init__(self, admin: _Optional[_Union[Operator, _Mapping]] = ..., outcome: _Optional[_Union[AdminOutcome, _Mapping]] = ...) -> None: ...

class LoginRequest(_message.Message):
    __slots__ = ("login", "password")
    LOGIN_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_FIELD_NUMBER: _ClassVar[int]
    login: str
    password: str
    def __init__(self, login: _Optional[str] = ..., password: _Optional[str] = ...) -> None: ...

class LoginResponse(_message.Message):
    __slots__ = ("session_token", "operator", "expires_s")
    SESSION_TOKEN_FIELD_NUMBER: _ClassVar[int]
    OPERATOR_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_S_FIELD_NUMBER: _ClassVar[int]
    session_token: str
    operator: Operator
    expires_s: int
    def __init__(self, session_token: _Optional[str] = ..., operator: _Optional[_Union[Operator, _Mapping]] = ..., expires_s: _Optional[int] = ...) -> None: ...

class LogoutRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class LogoutResponse(_message.Message):
    __slots__ = ("ended",)
    ENDED_FIELD_NUMBER: _ClassVar[int]
    ended: bool
    def __init__(self, ended: _Optional[bool] = ...) -> None: ...

class CreateNodeRequest(_message.Message):
    __slots__ = ("client_id", "kind", "parent_id", "name", "node_id")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    PARENT_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    client_id: bytes
    kind: NodeKind
    parent_id: int
    name: str
    node_id: int
    def __init__(self, client_id: _Optional[bytes] = ..., kind: _Optional[_Union[NodeKind, str]] = ..., parent_id: _Optional[int] = ..., name: _Optional[str] = ..., node_id: _Optional[int] = ...) -> None: ...

class CreateNodeResponse(_message.Message):
    __slots__ = ("node",)
    NODE_FIELD_NUMBER: _ClassVar[int]
    node: Node
    def __init__(self, node: _Optional[_Union[Node, _Mapping]] = ...) -> None: ...

class ListNodesRequest(_message.Message):
    __slots__ = ("kind",)
    KIND_FIELD_NUMBER: _ClassVar[int]
    kind: NodeKind
    def __init__(self, kind: _Optional[_Union[NodeKind, str]] = ...) -> None: ...

class ListNodesResponse(_message.Message):
    __slots__ = ("nodes",)
    NODES_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[Node]
    def __init__(self, nodes: _Optional[_Iterable[_Union[Node, _Mapping]]] = ...) -> None: ...

class IssueTerminalTokenRequest(_message.Message):
    __slots__ = ("client_id", "terminal_id")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    TERMINAL_ID_FIELD_NUMBER: _ClassVar[int]
    client_id: bytes
    terminal_id: int
    def __init__(self, client_id: _Optional[bytes] = ..., terminal_id: _Optional[int] = ...) -> None: ...

class IssueTerminalTokenResponse(_message.Message):
    __slots__ = ("token", "terminal_id", "store_id")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    TERMINAL_ID_FIELD_NUMBER: _ClassVar[int]
    STORE_ID_FIELD_NUMBER: _ClassVar[int]
    token: str
    terminal_id: int
    store_id: int
    def __init__(self, token: _Optional[str] = ..., terminal_id: _Optional[int] = ..., store_id: _Optional[int] = ...) -> None: ...

class RevokeTerminalTokenRequest(_message.Message):
    __slots__ = ("client_id", "terminal_id")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    TERMINAL_ID_FIELD_NUMBER: _ClassVar[int]
    client_id: bytes
    terminal_id: int
    def __init__(self, client_id: _Optional[bytes] = ..., terminal_id: _Optional[int] = ...) -> None: ...

class RevokeTerminalTokenResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CreateOperatorRequest(_message.Message):
    __slots__ = ("client_id", "login", "password", "role", "name", "home_store_id", "home_region_id")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    LOGIN_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    HOME_STORE_ID_FIELD_NUMBER: _ClassVar[int]
    HOME_REGION_ID_FIELD_NUMBER: _ClassVar[int]
    client_id: bytes
    login: str
    password: str
    role: str
    name: str
    home_store_id: int
    home_region_id: int
    def __init__(self, client_id: _Optional[bytes] = ..., login: _Optional[str] = ..., password: _Optional[str] = ..., role: _Optional[str] = ..., name: _Optional[str] = ..., home_store_id: _Optional[int] = ..., home_region_id: _Optional[int] = ...) -> None: ...

class CreateOperatorResponse(_message.Message):
    __slots__ = ("operator",)
    OPERATOR_FIELD_NUMBER: _ClassVar[int]
    operator: Operator
    def __init__(self, operator: _Optional[_Union[Operator, _Mapping]] = ...) -> None: ...

class DisableOperatorRequest(_message.Message):
    __slots__ = ("client_id", "operator_id")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    OPERATOR_ID_FIELD_NUMBER: _ClassVar[int]
    client_id: bytes
    operator_id: int
    def __init__(self, client_id: _Optional[bytes] = ..., operator_id: _Optional[int] = ...) -> None: ...

class DisableOperatorResponse(_message.Message):
    __slots__ = ("operator",)
    OPERATOR_FIELD_NUMBER: _ClassVar[int]
    operator: Operator
    def __init__(self, operator: _Optional[_Union[Operator, _Mapping]] = ...) -> None: ...

class ResetPasswordRequest(_message.Message):
    __slots__ = ("client_id", "operator_id", "new_password", "old_password")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    OPERATOR_ID_FIELD_NUMBER: _ClassVar[int]
    NEW_PASSWORD_FIELD_NUMBER: _ClassVar[int]
    OLD_PASSWORD_FIELD_NUMBER: _ClassVar[int]
    client_id: bytes
    operator_id: int
    new_password: str
    old_password: str
    def __init__(self, client_id: _Optional[bytes] = ..., operator_id: _Optional[int] = ..., new_password: _Optional[str] = ..., old_password: _Optional[str] = ...) -> None: ...

class ResetPasswordResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class AuditLogRequest(_message.Message):
    __slots__ = ("since_seq", "operator_id", "store_id", "limit")
    SINCE_SEQ_FIELD_NUMBER: _ClassVar[int]
    OPERATOR_ID_FIELD_NUMBER: _ClassVar[int]
    STORE_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    since_seq: int
    operator_id: int
    store_id: int
    limit: int
    def __init__(self, since_seq: _Optional[int] = ..., operator_id: _Optional[int] = ..., store_id: _Optional[int] = ..., limit: _Optional[int] = ...) -> None: ...

class AuditEvent(_message.Message):
    __slots__ = ("seq", "op", "time_s", "operator_id", "store_id", "detail_json", "result_json")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    OP_FIELD_NUMBER: _ClassVar[int]
    TIME_S_FIELD_NUMBER: _ClassVar[int]
    OPERATOR_ID_FIELD_NUMBER: _ClassVar[int]
    STORE_ID_FIELD_NUMBER: _ClassVar[int]
    DETAIL_JSON_FIELD_NUMBER: _ClassVar[int]
    RESULT_JSON_FIELD_NUMBER: _ClassVar[int]
    seq: int
    op: str
    time_s: int
    operator_id: int
    store_id: int
    detail_json: str
    result_json: str
    def __init__(self, seq: _Optional[int] = ..., op: _Optional[str] = ..., time_s: _Optional[int] = ..., operator_id: _Optional[int] = ..., store_id: _Optional[int] = ..., detail_json: _Optional[str] = ..., result_json: _Optional[str] = ...) -> None: ...

class AuditLogResponse(_message.Message):
    __slots__ = ("events", "total", "next_since_seq")
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    NEXT_SINCE_SEQ_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[AuditEvent]
    total: int
    next_since_seq: int
    def __init__(self, events: _Optional[_Iterable[_Union[AuditEvent, _Mapping]]] = ..., total: _Optional[int] = ..., next_since_seq: _Optional[int] = ...) -> None: ...

class MemberProfile(_message.Message):
    __slots__ = ("name", "phone", "id_no", "gender", "birthday", "address", "photo", "source", "prefs", "custom", "tags", "referrer_id", "home_store_id")
    class CustomEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    PHONE_FIELD_NUMBER: _ClassVar[int]
    ID_NO_FIELD_NUMBER: _ClassVar[int]
    GENDER_FIELD_NUMBER: _ClassVar[int]
    BIRTHDAY_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    PHOTO_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    PREFS_FIELD_NUMBER: _ClassVar[int]
    CUSTOM_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    REFERRER_ID_FIELD_NUMBER: _ClassVar[int]
    HOME_STORE_ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    phone: str
    id_no: str
    gender: str
    birthday: str
    address: str
    photo: str
    source: str
    prefs: _containers.RepeatedScalarFieldContainer[str]
    custom: _containers.ScalarMap[str, str]
    tags: _containers.RepeatedScalarFieldContainer[str]
    referrer_id: int
    home_store_id: int
    def __init__(self, name: _Optional[str] = ..., phone: _Optional[str] = ..., id_no: _Optional[str] = ..., gender: _Optional[str] = ..., birthday: _Optional[str] = ..., address: _Optional[str] = ..., photo: _Optional[str] = ..., source: _Optional[str] = ..., prefs: _Optional[_Iterable[str]] = ..., custom: _Optional[_Mapping[str, str]] = ..., tags: _Optional[_Iterable[str]] = ..., referrer_id: _Optional[int] = ..., home_store_id: _Optional[int] = ...) -> None: ...

class Member(_message.Message):
    __slots__ = ("member_id", "profile", "status", "created_s", "updated_s", "version")
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CREATED_S_FIELD_NUMBER: _ClassVar[int]
    UPDATED_S_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    member_id: int
    profile: MemberProfile
    status: MemberStatus
    created_s: int
    updated_s: int
    version: int
    def __init__(self, member_id: _Optional[int] = ..., profile: _Optional[_Union[MemberProfile, _Mapping]] = ..., status: _Optional[_Union[MemberStatus, str]] = ..., created_s: _Optional[int] = ..., updated_s: _Optional[int] = ..., version: _Optional[int] = ...) -> None: ...

class CreateMemberRequest(_message.Message):
    __slots__ = ("client_id", "profile")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    client_id: bytes
    profile: MemberProfile
    def __init__(self, client_id: _Optional[bytes] = ..., profile: _Optional[_Union[MemberProfile, _Mapping]] = ...) -> None: ...

class CreateMemberResponse(_message.Message):
    __slots__ = ("member_id", "outcome")
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    member_id: int
    outcome: AdminOutcome
    def __init__(self, member_id: _Optional[int] = ..., outcome: _Optional[_Union[AdminOutcome, _Mapping]] = ...) -> None: ...

class UpdateMemberRequest(_message.Message):
    __slots__ = ("client_id", "member_id", "profile", "fields", "expected_version")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    client_id: bytes
    member_id: int
    profile: MemberProfile
    fields: _containers.RepeatedScalarFieldContainer[str]
    expected_version: int
    def __init__(self, client_id: _Optional[bytes] = ..., member_id: _Optional[int] = ..., profile: _Optional[_Union[MemberProfile, _Mapping]] = ..., fields: _Optional[_Iterable[str]] = ..., expected_version: _Optional[int] = ...) -> None: ...

class UpdateMemberResponse(_message.Message):
    __slots__ = ("version", "changed", "outcome")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    version: int
    changed: _containers.RepeatedScalarFieldContainer[str]
    outcome: AdminOutcome
    def __init__(self, version: _Optional[int] = ..., changed: _Optional[_Iterable[str]] = ..., outcome: _Optional[_Union[AdminOutcome, _Mapping]] = ...) -> None: ...

class SetMemberStatusRequest(_message.Message):
    __slots__ = ("client_id", "member_id", "status", "reason")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    client_id: bytes
    member_id: int
    status: MemberStatus
    reason: str
    def __init__(self, client_id: _Optional[bytes] = ..., member_id: _Optional[int] = ..., status: _Optional[_Union[MemberStatus, str]] = ..., reason: _Optional[str] = ...) -> None: ...

class SetMemberStatusResponse(_message.Message):
    __slots__ = ("outcome",)
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    outcome: AdminOutcome
    def __init__(self, outcome: _Optional[_Union[AdminOutcome, _Mapping]] = ...) -> None: ...

class GetMemberRequest(_message.Message):
    __slots__ = ("member_id", "reveal", "journal_limit", "journal_before_seq")
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    REVEAL_FIELD_NUMBER: _ClassVar[int]
    JOURNAL_LIMIT_FIELD_NUMBER: _ClassVar[int]
    JOURNAL_BEFORE_SEQ_FIELD_NUMBER: _ClassVar[int]
    member_id: int
    reveal: bool
    journal_limit: int
    journal_before_seq: int
    def __init__(self, member_id: _Optional[int] = ..., reveal: _Optional[bool] = ..., journal_limit: _Optional[int] = ..., journal_before_seq: _Optional[int] = ...) -> None: ...

class PointsLot(_message.Message):
    __slots__ = ("year", "points", "expires_at_s", "valid_until")
    YEAR_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_S_FIELD_NUMBER: _ClassVar[int]
    VALID_UNTIL_FIELD_NUMBER: _ClassVar[int]
    year: int
    points: int
    expires_at_s: int
    valid_until: str
    def __init__(self, year: _Optional[int] = ..., points: _Optional[int] = ..., expires_at_s: _Optional[int] = ..., valid_until: _Optional[str] = ...) -> None: ...

class CardView(_message.Message):
    __slots__ = ("card", "type_name", "type_kind", "level_name", "lots", "permanent_points", "replaced_by_card_no", "replaced_card_nos", "supplementary_card_nos", "supp_spent_fen", "issued_at_s", "status_name")
    CARD_FIELD_NUMBER: _ClassVar[int]
    TYPE_NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_KIND_FIELD_NUMBER: _ClassVar[int]
    LEVEL_NAME_FIELD_NUMBER: _ClassVar[int]
    LOTS_FIELD_NUMBER: _ClassVar[int]
    PERMANENT_POINTS_FIELD_NUMBER: _ClassVar[int]
    REPLACED_BY_CARD_NO_FIELD_NUMBER: _ClassVar[int]
    REPLACED_CARD_NOS_FIELD_NUMBER: _ClassVar[int]
    SUPPLEMENTARY_CARD_NOS_FIELD_NUMBER: _ClassVar[int]
    SUPP_SPENT_FEN_FIELD_NUMBER: _ClassVar[int]
    ISSUED_AT_S_FIELD_NUMBER: _ClassVar[int]
    STATUS_NAME_FIELD_NUMBER: _ClassVar[int]
    card: _types_pb2.Card
    type_name: str
    type_kind: str
    level_name: str
    lots: _containers.RepeatedCompositeFieldContainer[PointsLot]
    permanent_points: int
    replaced_by_card_no: int
    replaced_card_nos: _containers.RepeatedScalarFieldContainer[int]
    supplementary_card_nos: _containers.RepeatedScalarFieldContainer[int]
    supp_spent_fen: int
    issued_at_s: int
    status_name: str
    def __init__(self, card: _Optional[_Union[_types_pb2.Card, _Mapping]] = ..., type_name: _Optional[str] = ..., type_kind: _Optional[str] = ..., level_name: _Optional[str] = ..., lots: _Optional[_Iterable[_Union[PointsLot, _Mapping]]] = ..., permanent_points: _Optional[int] = ..., replaced_by_card_no: _Optional[int] = ..., replaced_card_nos: _Optional[_Iterable[int]] = ..., supplementary_card_nos: _Optional[_Iterable[int]] = ..., supp_spent_fen: _Optional[int] = ..., issued_at_s: _Optional[int] = ..., status_name: _Optional[str] = ...) -> None: ...

class GetMemberResponse(_message.Message):
    __slots__ = ("member", "cards", "card_views", "coupons", "journal", "journal_next_before_seq", "level_history", "coupon_card_nos")
    MEMBER_FIELD_NUMBER: _ClassVar[int]
    CARDS_FIELD_NUMBER: _ClassVar[int]
    CARD_VIEWS_FIELD_NUMBER: _ClassVar[int]
    COUPONS_FIELD_NUMBER: _ClassVar[int]
    JOURNAL_FIELD_NUMBER: _ClassVar[int]
    JOURNAL_NEXT_BEFORE_SEQ_FIELD_NUMBER: _ClassVar[int]
    LEVEL_HISTORY_FIELD_NUMBER: _ClassVar[int]
    COUPON_CARD_NOS_FIELD_NUMBER: _ClassVar[int]
    member: Member
    cards: _containers.RepeatedCompositeFieldContainer[_types_pb2.Card]
    card_views: _containers.RepeatedCompositeFieldContainer[CardView]
    coupons: _containers.RepeatedCompositeFieldContainer[Coupon]
    journal: _containers.RepeatedCompositeFieldContainer[JournalEntry]
    journal_next_before_seq: int
    level_history: _containers.RepeatedCompositeFieldContainer[LevelChange]
    coupon_card_nos: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, member: _Optional[_Union[Member, _Mapping]] = ..., cards: _Optional[_Iterable[_Union[_types_pb2.Card, _Mapping]]] = ..., card_views: _Optional[_Iterable[_Union[CardView, _Mapping]]] = ..., coupons: _Optional[_Iterable[_Union[Coupon, _Mapping]]] = ..., journal: _Optional[_Iterable[_Union[JournalEntry, _Mapping]]] = ..., journal_next_before_seq: _Optional[int] = ..., level_history: _Optional[_Iterable[_Union[LevelChange, _Mapping]]] = ..., coupon_card_nos: _Optional[_Iterable[int]] = ...) -> None: ...

class FindMemberByPhoneRequest(_message.Message):
    __slots__ = ("phone",)
    PHONE_FIELD_NUMBER: _ClassVar[int]
    phone: str
    def __init__(self, phone: _Optional[str] = ...) -> None: ...

class FindMemberByPhoneResponse(_message.Message):
    __slots__ = ("member",)
    MEMBER_FIELD_NUMBER: _ClassVar[int]
    member: Member
    def __init__(self, member: _Optional[_Union[Member, _Mapping]] = ...) -> None: ...

class SearchMembersRequest(_message.Message):
    __slots__ = ("phone", "id_no", "name", "name_contains", "card_no", "level", "tags", "store_id", "spend_min_fen", "spend_max_fen", "last_visit_from_s", "last_visit_to_s", "status", "limit", "offset")
    PHONE_FIELD_NUMBER: _ClassVar[int]
    ID_NO_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    NAME_CONTAINS_FIELD_NUMBER: _ClassVar[int]
    CARD_NO_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    STORE_ID_FIELD_NUMBER: _ClassVar[int]
    SPEND_MIN_FEN_FIELD_NUMBER: _ClassVar[int]
    SPEND_MAX_FEN_FIELD_NUMBER: _ClassVar[int]
    LAST_VISIT_FROM_S_FIELD_NUMBER: _ClassVar[int]
    LAST_VISIT_TO_S_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    phone: str
    id_no: str
    name: str
    name_contains: bool
    card_no: int
    level: int
    tags: _containers.RepeatedScalarFieldContainer[str]
    store_id: int
    spend_min_fen: int
    spend_max_fen: int
    last_visit_from_s: int
    last_visit_to_s: int
    status: MemberStatus
    limit: int
    offset: int
    def __init__(self, phone: _Optional[str] = ..., id_no: _Optional[str] = ..., name: _Optional[str] = ..., name_contains: _Optional[bool] = ..., card_no: _Optional[int] = ..., level: _Optional[int] = ..., tags: _Optional[_Iterable[str]] = ..., store_id: _Optional[int] = ..., spend_min_fen: _Optional[int] = ..., spend_max_fen: _Optional[int] = ..., last_visit_from_s: _Optional[int] = ..., last_visit_to_s: _Optional[int] = ..., status: _Optional[_Union[MemberStatus, str]] = ..., limit: _Optional[int] = ..., offset: _Optional[int] = ...) -> None: ...

class SearchMembersResponse(_message.Message):
    __slots__ = ("total", "members")
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    total: int
    members: _containers.RepeatedCompositeFieldContainer[Member]
    def __init__(self, total: _Optional[int] = ..., members: _Optional[_Iterable[_Union[Member, _Mapping]]] = ...) -> None: ...

class ImportMembersRequest(_message.Message):
    __slots__ = ("file_name", "file_id", "chunk", "update_existing")
    FILE_NAME_FIELD_NUMBER: _ClassVar[int]
    FILE_ID_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    UPDATE_EXISTING_FIELD_NUMBER: _ClassVar[int]
    file_name: str
    file_id: str
    chunk: bytes
    update_existing: bool
    def __init__(self, file_name: _Optional[str] = ..., file_id: _Optional[str] = ..., chunk: _Optional[bytes] = ..., update_existing: _Optional[bool] = ...) -> None: ...

class ImportRowError(_message.Message):
    __slots__ = ("line", "reason")
    LINE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    line: int
    reason: str
    def __init__(self, line: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class ImportMembersResponse(_message.Message):
    __slots__ = ("file_id", "rows", "created", "already_imported", "errors", "row_errors", "updated")
    FILE_ID_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    ALREADY_IMPORTED_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    ROW_ERRORS_FIELD_NUMBER: _ClassVar[int]
    UPDATED_FIELD_NUMBER: _ClassVar[int]
    file_id: str
    rows: int
    created: int
    already_imported: int
    errors: int
    row_errors: _containers.RepeatedCompositeFieldContainer[ImportRowError]
    updated: int
    def __init__(self, file_id: _Optional[str] = ..., rows: _Optional[int] = ..., created: _Optional[int] = ..., already_imported: _Optional[int] = ..., errors: _Optional[int] = ..., row_errors: _Optional[_Iterable[_Union[ImportRowError, _Mapping]]] = ..., updated: _Optional[int] = ...) -> None: ...

class ExportMembersRequest(_message.Message):
    __slots__ = ("query", "format")
    QUERY_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    query: SearchMembersRequest
    format: str
    def __init__(self, query: _Optional[_Union[SearchMembersRequest, _Mapping]] = ..., format: _Optional[str] = ...) -> None: ...

class ExportMembersResponse(_message.Message):
    __slots__ = ("chunk", "members")
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    chunk: bytes
    members: int
    def __init__(self, chunk: _Optional[bytes] = ..., members: _Optional[int] = ...) -> None: ...

class IssueCardsRequest(_message.Message):
    __slots__ = ("client_id", "card_nos", "type_id", "level", "member_ids", "expires_at_s", "store_id", "paid_fen", "primary_card_no", "supp_limit_fen")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    CARD_NOS_FIELD_NUMBER: _ClassVar[int]
    TYPE_ID_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    MEMBER_IDS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_S_FIELD_NUMBER: _ClassVar[int]
    STORE_ID_FIELD_NUMBER: _ClassVar[int]
    PAID_FEN_FIELD_NUMBER: _ClassVar[int]
    PRIMARY_CARD_NO_FIELD_NUMBER: _ClassVar[int]
    SUPP_LIMIT_FEN_FIELD_NUMBER: _ClassVar[int]
    client_id: bytes
    card_nos: _containers.RepeatedScalarFieldContainer[int]
    type_id: int
    level: int
    member_ids: _containers.RepeatedScalarFieldContainer[int]
    expires_at_s: int
    store_id: int
    paid_fen: int
    primary_card_no: int
    supp_limit_fen: int
    def __init__(self, client_id: _Optional[bytes] = ..., card_nos: _Optional[_Iterable[int]] = ..., type_id: _Optional[int] = ..., level: _Optional[int] = ..., member_ids: _Optional[_Iterable[int]] = ..., expires_at_s: _Optional[int] = ..., store_id: _Optional[int] = ..., paid_fen: _Optional[int] = ..., primary_card_no: _Optional[int] = ..., supp_limit_fen: _Optional[int] = ...) -> None: ...

class IssueCardsResponse(_message.Message):
    __slots__ = ("code", "replayed", "seq", "detail", "cards", "fees_fen", "deposit_fen", "expires_at_s", "level", "count_uses")
    CODE_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    CARDS_FIELD_NUMBER: _ClassVar[int]
    FEES_FEN_FIELD_NUMBER: _ClassVar[int]
    DEPOSIT_FEN_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_S_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    COUNT_USES_FIELD_NUMBER: _ClassVar[int]
    code: _types_pb2.Result
    replayed: bool
    seq: int
    detail: str
    cards: int
    fees_fen: int
    deposit_fen: int
    expires_at_s: int
    level: int
    count_uses: int
    def __init__(self, code: _Optional[_Union[_types_pb2.Result, str]] = ..., replayed: _Optional[bool] = ..., seq: _Optional[int] = ..., detail: _Optional[str] = ..., cards: _Optional[int] = ..., fees_fen: _Optional[int] = ..., deposit_fen: _Optional[int] = ..., expires_at_s: _Optional[int] = ..., level: _Optional[int] = ..., count_uses: _Optional[int] = ...) -> None: ...

class ShowCardRequest(_message.Message):
    __slots__ = ("card_no",)
    CARD_NO_FIELD_NUMBER: _ClassVar[int]
    card_no: int
    def __init__(self, card_no: _Optional[int] = ...) -> None: ...

class ShowCardResponse(_message.Message):
    __slots__ = ("card", "view")
    CARD_FIELD_NUMBER: _ClassVar[int]
    VIEW_FIELD_NUMBER: _ClassVar[int]
    card: _types_pb2.Card
    view: CardView
    def __init__(self, card: _Optional[_Union[_types_pb2.Card, _Mapping]] = ..., view: _Optional[_Union[CardView, _Mapping]] = ...) -> None: ...

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

class SetPinRequest(_message.Message):
    __slots__ = ("client_id", "card_no", "pin")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    CARD_NO_FIELD_NUMBER: _ClassVar[int]
    PIN_FIELD_NUMBER: _ClassVar[int]
    client_id: bytes
    card_no: int
    pin: str
    def __init__(self, client_id: _Optional[bytes] = ..., card_no: _Optional[int] = ..., pin: _Optional[str] = ...) -> None: ...

class SetPinResponse(_message.Message):
    __slots__ = ("outcome",)
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    outcome: AdminOutcome
    def __init__(self, outcome: _Optional[_Union[AdminOutcome, _Mapping]] = ...) -> None: ...

class ResetPinRequest(_message.Message):
    __slots__ = ("client_id", "card_no")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    CARD_NO_FIELD_NUMBER: _ClassVar[int]
    client_id: bytes
    card_no: int
    def __init__(self, client_id: _Optional[bytes] = ..., card_no: _Optional[int] = ...) -> None: ...

class ResetPinResponse(_message.Message):
    __slots__ = ("outcome",)
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    outcome: AdminOutcome
    def __init__(self, outcome: _Optional[_Union[AdminOutcome, _Mapping]] = ...) -> None: ...

class GetCardJournalRequest(_message.Message):
    __slots__ = ("card_no", "limit", "before_seq")
    CARD_NO_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    BEFORE_SEQ_FIELD_NUMBER: _ClassVar[int]
    card_no: int
    limit: int
    before_seq: int
    def __init__(self, card_no: _Optional[int] = ..., limit: _Optional[int] = ..., before_seq: _Optional[int] = ...) -> None: ...

class JournalEntry(_message.Message):
    __slots__ = ("seq", "op", "time_s", "store_id", "terminal_id", "operator_id", "amount_fen", "principal_delta_fen", "bonus_delta_fen", "points_delta", "balance_after_fen", "points_after", "card_no")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    OP_FIELD_NUMBER: _ClassVar[int]
    TIME_S_FIELD_NUMBER: _ClassVar[int]
    STORE_ID_FIELD_NUMBER: _ClassVar[int]
    TERMINAL_ID_FIELD_NUMBER: _ClassVar[int]
    OPERATOR_ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FEN_FIELD_NUMBER: _ClassVar[int]
    PRINCIPAL_DELTA_FEN_FIELD_NUMBER: _ClassVar[int]
    BONUS_DELTA_FEN_FIELD_NUMBER: _ClassVar[int]
    POINTS_DELTA_FIELD_NUMBER: _ClassVar[int]
    BALANCE_AFTER_FEN_FIELD_NUMBER: _ClassVar[int]
    POINTS_AFTER_FIELD_NUMBER: _ClassVar[int]
    CARD_NO_FIELD_NUMBER: _ClassVar[int]
    seq: int
    op: str
    time_s: int
    store_id: int
    terminal_id: int
    operator_id: int
    amount_fen: int
    principal_delta_fen: int
    bonus_delta_fen: int
    points_delta: int
    balance_after_fen: int
    points_after: int
    card_no: int
    def __init__(self, seq: _Optional[int] = ..., op: _Optional[str] = ..., time_s: _Optional[int] = ..., store_id: _Optional[int] = ..., terminal_id: _Optional[int] = ..., operator_id: _Optional[int] = ..., amount_fen: _Optional[int] = ..., principal_delta_fen: _Optional[int] = ..., bonus_delta_fen: _Optional[int] = ..., points_delta: _Optional[int] = ..., balance_after_fen: _Optional[int] = ..., points_after: _Optional[int] = ..., card_no: _Optional[int] = ...) -> None: ...

class GetCardJournalResponse(_message.Message):
    __slots__ = ("entries", "next_before_seq", "total")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    NEXT_BEFORE_SEQ_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[JournalEntry]
    next_before_seq: int
    total: int
    def __init__(self, entries: _Optional[_Iterable[_Union[JournalEntry, _Mapping]]] = ..., next_before_seq: _Optional[int] = ..., total: _Optional[int] = ...) -> None: ...

class ExpirePointsRequest(_message.Message):
    __slots__ = ("client_id",)
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    client_id: bytes
    def __init__(self, client_id: _Optional[bytes] = ...) -> None: ...

class ExpirePointsResponse(_message.Message):
    __slots__ = ("expired_points", "cards", "outcome")
    EXPIRED_POINTS_FIELD_NUMBER: _ClassVar[int]
    CARDS_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    expired_points: int
    cards: int
    outcome: AdminOutcome
    def __init__(self, expired_points: _Optional[int] = ..., cards: _Optional[int] = ..., outcome: _Optional[_Union[AdminOutcome, _Mapping]] = ...) -> None: ...

class RemindExpiringPointsRequest(_message.Message):
    __slots__ = ("client_id", "min_points")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    MIN_POINTS_FIELD_NUMBER: _ClassVar[int]
    client_id: bytes
    min_points: int
    def __init__(self, client_id: _Optional[bytes] = ..., min_points: _Optional[int] = ...) -> None: ...

class RemindExpiringPointsResponse(_message.Message):
    __slots__ = ("notices", "outcome")
    NOTICES_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    notices: int
    outcome: AdminOutcome
    def __init__(self, notices: _Optional[int] = ..., outcome: _Optional[_Union[AdminOutcome, _Mapping]] = ...) -> None: ...

class GetRulesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetRulesResponse(_message.Message):
    __slots__ = ("rules_json", "version")
    RULES_JSON_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    rules_json: str
    version: int
    def __init__(self, rules_json: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class SetRulesRequest(_message.Message):
    __slots__ = ("client_id", "rules_json")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    RULES_JSON_FIELD_NUMBER: _ClassVar[int]
    client_id: bytes
    rules_json: str
    def __init__(self, client_id: _Optional[bytes] = ..., rules_json: _Optional[str] = ...) -> None: ...

class SetRulesResponse(_message.Message):
    __slots__ = ("version", "outcome")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    version: int
    outcome: AdminOutcome
    def __init__(self, version: _Optional[int] = ..., outcome: _Optional[_Union[AdminOutcome, _Mapping]] = ...) -> None: ...

class ReplaceCardRequest(_message.Message):
    __slots__ = ("client_id", "old_card_no", "new_card_no", "fee_external", "fee_fen")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    OLD_CARD_NO_FIELD_NUMBER: _ClassVar[int]
    NEW_CARD_NO_FIELD_NUMBER: _ClassVar[int]
    FEE_EXTERNAL_FIELD_NUMBER: _ClassVar[int]
    FEE_FEN_FIELD_NUMBER: _ClassVar[int]
    client_id: bytes
    old_card_no: int
    new_card_no: int
    fee_external: bool
    fee_fen: int
    def __init__(self, client_id: _Optional[bytes] = ..., old_card_no: _Optional[int] = ..., new_card_no: _Optional[int] = ..., fee_external: _Optional[bool] = ..., fee_fen: _Optional[int] = ...) -> None: ...

class ReplaceCardResponse(_message.Message):
    __slots__ = ("new_card_no", "fee_fen", "moved_principal_fen", "moved_bonus_fen", "moved_points", "supplementary_cards", "outcome", "coupon_ids")
    NEW_CARD_NO_FIELD_NUMBER: _ClassVar[int]
    FEE_FEN_FIELD_NUMBER: _ClassVar[int]
    MOVED_PRINCIPAL_FEN_FIELD_NUMBER: _ClassVar[int]
    MOVED_BONUS_FEN_FIELD_NUMBER: _ClassVar[int]
    MOVED_POINTS_FIELD_NUMBER: _ClassVar[int]
    SUPPLEMENTARY_CARDS_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    COUPON_IDS_FIELD_NUMBER: _ClassVar[int]
    new_card_no: int
    fee_fen: int
    moved_principal_fen: int
    moved_bonus_fen: int
    moved_points: int
    supplementary_cards: _containers.RepeatedScalarFieldContainer[int]
    outcome: AdminOutcome
    coupon_ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, new_card_no: _Optional[int] = ..., fee_fen: _Optional[int] = ..., moved_principal_fen: _Optional[int] = ..., moved_bonus_fen: _Optional[int] = ..., moved_points: _Optional[int] = ..., supplementary_cards: _Optional[_Iterable[int]] = ..., outcome: _Optional[_Union[AdminOutcome, _Mapping]] = ..., coupon_ids: _Optional[_Iterable[int]] = ...) -> None: ...

class RenewCardRequest(_message.Message):
    __slots__ = ("client_id", "card_no", "fee_external", "fee_fen", "validity_days")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    CARD_NO_FIELD_NUMBER: _ClassVar[int]
    FEE_EXTERNAL_FIELD_NUMBER: _ClassVar[int]
    FEE_FEN_FIELD_NUMBER: _ClassVar[int]
    VALIDITY_DAYS_FIELD_NUMBER: _ClassVar[int]
    client_id: bytes
    card_no: int
    fee_external: bool
    fee_fen: int
    validity_days: int
    def __init__(self, client_id: _Optional[bytes] = ..., card_no: _Optional[int] = ..., fee_external: _Optional[bool] = ..., fee_fen: _Optional[int] = ..., validity_days: _Optional[int] = ...) -> None: ...

class RenewCardResponse(_message.Message):
    __slots__ = ("expires_at_s", "fee_fen", "outcome")
    EXPIRES_AT_S_FIELD_NUMBER: _ClassVar[int]
    FEE_FEN_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    expires_at_s: int
    fee_fen: int
    outcome: AdminOutcome
    def __init__(self, expires_at_s: _Optional[int] = ..., fee_fen: _Optional[int] = ..., outcome: _Optional[_Union[AdminOutcome, _Mapping]] = ...) -> None: ...

class PayAnnualFeeRequest(_message.Message):
    __slots__ = ("client_id", "card_no", "external")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    CARD_NO_FIELD_NUMBER: _ClassVar[int]
    EXTERNAL_FIELD_NUMBER: _ClassVar[int]
    client_id: bytes
    card_no: int
    external: bool
    def __init__(self, client_id: _Optional[bytes] = ..., card_no: _Optional[int] = ..., external: _Optional[bool] = ...) -> None: ...

class PayAnnualFeeResponse(_message.Message):
    __slots__ = ("fee_fen", "fee_paid_until_s", "outcome")
    FEE_FEN_FIELD_NUMBER: _ClassVar[int]
    FEE_PAID_UNTIL_S_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    fee_fen: int
    fee_paid_until_s: int
    outcome: AdminOutcome
    def __init__(self, fee_fen: _Optional[int] = ..., fee_paid_until_s: _Optional[int] = ..., outcome: _Optional[_Union[AdminOutcome, _Mapping]] = ...) -> None: ...

class ExpireDormantCardsRequest(_message.Message):
    __slots__ = ("client_id",)
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    client_id: bytes
    def __init__(self, client_id: _Optional[bytes] = ...) -> None: ...

class ExpireDormantCardsResponse(_message.Message):
    __slots__ = ("cards", "outcome")
    CARDS_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    cards: int
    outcome: AdminOutcome
    def __init__(self, cards: _Optional[int] = ..., outcome: _Optional[_Union[AdminOutcome, _Mapping]] = ...) -> None: ...

class CardType(_message.Message):
    __slots__ = ("type_id", "name", "kind", "validity_days", "issue_fee_fen", "annual_fee_fen", "supp_annual_fee_fen", "replacement_fee_fen", "renewal_fee_fen", "recharge_allowed", "recharge_store_ids", "recharge_operator_ids", "count_service", "count_uses", "initial_level", "validity_years", "fees_on_balance")
    TYPE_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    VALIDITY_DAYS_FIELD_NUMBER: _ClassVar[int]
    ISSUE_FEE_FEN_FIELD_NUMBER: _ClassVar[int]
    ANNUAL_FEE_FEN_FIELD_NUMBER: _ClassVar[int]
    SUPP_ANNUAL_FEE_FEN_FIELD_NUMBER: _ClassVar[int]
    REPLACEMENT_FEE_FEN_FIELD_NUMBER: _ClassVar[int]
    RENEWAL_FEE_FEN_FIELD_NUMBER: _ClassVar[int]
    RECHARGE_ALLOWED_FIELD_NUMBER: _ClassVar[int]
    RECHARGE_STORE_IDS_FIELD_NUMBER: _ClassVar[int]
    RECHARGE_OPERATOR_IDS_FIELD_NUMBER: _ClassVar[int]
    COUNT_SERVICE_FIELD_NUMBER: _ClassVar[int]
    COUNT_USES_FIELD_NUMBER: _ClassVar[int]
    INITIAL_LEVEL_FIELD_NUMBER: _ClassVar[int]
    VALIDITY_YEARS_FIELD_NUMBER: _ClassVar[int]
    FEES_ON_BALANCE_FIELD_NUMBER: _ClassVar[int]
    type_id: int
    name: str
    kind: int
    validity_days: int
    issue_fee_fen: int
    annual_fee_fen: int
    supp_annual_fee_fen: int
    replacement_fee_fen: int
    renewal_fee_fen: int
    recharge_allowed: bool
    recharge_store_ids: _containers.RepeatedScalarFieldContainer[int]
    recharge_operator_ids: _containers.RepeatedScalarFieldContainer[int]
    count_service: int
    count_uses: int
    initial_level: int
    validity_years: int
    fees_on_balance: bool
    def __init__(self, type_id: _Optional[int] = ..., name: _Optional[str] = ..., kind: _Optional[int] = ..., validity_days: _Optional[int] = ..., issue_fee_fen: _Optional[int] = ..., annual_fee_fen: _Optional[int] = ..., supp_annual_fee_fen: _Optional[int] = ..., replacement_fee_fen: _Optional[int] = ..., renewal_fee_fen: _Optional[int] = ..., recharge_allowed: _Optional[bool] = ..., recharge_store_ids: _Optional[_Iterable[int]] = ..., recharge_operator_ids: _Optional[_Iterable[int]] = ..., count_service: _Optional[int] = ..., count_uses: _Optional[int] = ..., initial_level: _Optional[int] = ..., validity_years: _Optional[int] = ..., fees_on_balance: _Optional[bool] = ...) -> None: ...

class PutCardTypeRequest(_message.Message):
    __slots__ = ("client_id", "card_type")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    CARD_TYPE_FIELD_NUMBER: _ClassVar[int]
    client_id: bytes
    card_type: CardType
    def __init__(self, client_id: _Optional[bytes] = ..., card_type: _Optional[_Union[CardType, _Mapping]] = ...) -> None: ...

class PutCardTypeResponse(_message.Message):
    __slots__ = ("created", "outcome")
    CREATED_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    created: bool
    outcome: AdminOutcome
    def __init__(self, created: _Optional[bool] = ..., outcome: _Optional[_Union[AdminOutcome, _Mapping]] = ...) -> None: ...

class ListCardTypesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListCardTypesResponse(_message.Message):
    __slots__ = ("card_types",)
    CARD_TYPES_FIELD_NUMBER: _ClassVar[int]
    card_types: _containers.RepeatedCompositeFieldContainer[CardType]
    def __init__(self, card_types: _Optional[_Iterable[_Union[CardType, _Mapping]]] = ...) -> None: ...

class SetLevelRequest(_message.Message):
    __slots__ = ("client_id", "card_no", "level", "reason", "approver_id")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    CARD_NO_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    APPROVER_ID_FIELD_NUMBER: _ClassVar[int]
    client_id: bytes
    card_no: int
    level: int
    reason: str
    approver_id: int
    def __init__(self, client_id: _Optional[bytes] = ..., card_no: _Optional[int] = ..., level: _Optional[int] = ..., reason: _Optional[str] = ..., approver_id: _Optional[int] = ...) -> None: ...

class SetLevelResponse(_message.Message):
    __slots__ = ("level_before", "level", "level_expires_at_s", "outcome")
    LEVEL_BEFORE_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    LEVEL_EXPIRES_AT_S_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    level_before: int
    level: int
    level_expires_at_s: int
    outcome: AdminOutcome
    def __init__(self, level_before: _Optional[int] = ..., level: _Optional[int] = ..., level_expires_at_s: _Optional[int] = ..., outcome: _Optional[_Union[AdminOutcome, _Mapping]] = ...) -> None: ...

class ReadmitCardRequest(_message.Message):
    __slots__ = ("client_id", "card_no", "reason")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    CARD_NO_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    client_id: bytes
    card_no: int
    reason: str
    def __init__(self, client_id: _Optional[bytes] = ..., card_no: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class ReadmitCardResponse(_message.Message):
    __slots__ = ("level", "outcome")
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    level: int
    outcome: AdminOutcome
    def __init__(self, level: _Optional[int] = ..., outcome: _Optional[_Union[AdminOutcome, _Mapping]] = ...) -> None: ...

class ReviewLevelsRequest(_message.Message):
    __slots__ = ("client_id",)
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    client_id: bytes
    def __init__(self, client_id: _Optional[bytes] = ...) -> None: ...

class ReviewLevelsResponse(_message.Message):
    __slots__ = ("reviewed", "kept", "downgraded", "lapsed", "outcome")
    REVIEWED_FIELD_NUMBER: _ClassVar[int]
    KEPT_FIELD_NUMBER: _ClassVar[int]
    DOWNGRADED_FIELD_NUMBER: _ClassVar[int]
    LAPSED_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    reviewed: int
    kept: int
    downgraded: int
    lapsed: int
    outcome: AdminOutcome
    def __init__(self, reviewed: _Optional[int] = ..., kept: _Optional[int] = ..., downgraded: _Optional[int] = ..., lapsed: _Optional[int] = ..., outcome: _Optional[_Union[AdminOutcome, _Mapping]] = ...) -> None: ...

class LevelHistoryRequest(_message.Message):
    __slots__ = ("card_no", "limit")
    CARD_NO_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    card_no: int
    limit: int
    def __init__(self, card_no: _Optional[int] = ..., limit: _Optional[int] = ...) -> None: ...

class LevelChange(_message.Message):
    __slots__ = ("seq", "time_s", "card_no", "op", "level_before", "level_after", "level_expires_at_s", "operator_id", "reason", "approver_id")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    TIME_S_FIELD_NUMBER: _ClassVar[int]
    CARD_NO_FIELD_NUMBER: _ClassVar[int]
    OP_FIELD_NUMBER: _ClassVar[int]
    LEVEL_BEFORE_FIELD_NUMBER: _ClassVar[int]
    LEVEL_AFTER_FIELD_NUMBER: _ClassVar[int]
    LEVEL_EXPIRES_AT_S_FIELD_NUMBER: _ClassVar[int]
    OPERATOR_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    APPROVER_ID_FIELD_NUMBER: _ClassVar[int]
    seq: int
    time_s: int
    card_no: int
    op: str
    level_before: int
    level_after: int
    level_expires_at_s: int
    operator_id: int
    reason: str
    approver_id: int
    def __init__(self, seq: _Optional[int] = ..., time_s: _Optional[int] = ..., card_no: _Optional[int] = ..., op: _Optional[str] = ..., level_before: _Optional[int] = ..., level_after: _Optional[int] = ..., level_expires_at_s: _Optional[int] = ..., operator_id: _Optional[int] = ..., reason: _Optional[str] = ..., approver_id: _Optional[int] = ...) -> None: ...

class LevelHistoryResponse(_message.Message):
    __slots__ = ("changes",)
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    changes: _containers.RepeatedCompositeFieldContainer[LevelChange]
    def __init__(self, changes: _Optional[_Iterable[_Union[LevelChange, _Mapping]]] = ...) -> None: ...

class AdjustPointsRequest(_message.Message):
    __slots__ = ("client_id", "card_no", "delta", "reason", "force")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    CARD_NO_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    client_id: bytes
    card_no: int
    delta: int
    reason: str
    force: bool
    def __init__(self, client_id: _Optional[bytes] = ..., card_no: _Optional[int] = ..., delta: _Optional[int] = ..., reason: _Optional[str] = ..., force: _Optional[bool] = ...) -> None: ...

class AdjustPointsResponse(_message.Message):
    __slots__ = ("points", "outcome")
    POINTS_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    points: int
    outcome: AdminOutcome
    def __init__(self, points: _Optional[int] = ..., outcome: _Optional[_Union[AdminOutcome, _Mapping]] = ...) -> None: ...

class MakeUpPointsRequest(_message.Message):
    __slots__ = ("client_id", "card_no", "receipt_id", "paid_fen", "receipt_time_s", "receipt_store_id", "category")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    CARD_NO_FIELD_NUMBER: _ClassVar[int]
    RECEIPT_ID_FIELD_NUMBER: _ClassVar[int]
    PAID_FEN_FIELD_NUMBER: _ClassVar[int]
    RECEIPT_TIME_S_FIELD_NUMBER: _ClassVar[int]
    RECEIPT_STORE_ID_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    client_id: bytes
    card_no: int
    receipt_id: str
    paid_fen: int
    receipt_time_s: int
    receipt_store_id: int
    category: int
    def __init__(self, client_id: _Optional[bytes] = ..., card_no: _Optional[int] = ..., receipt_id: _Optional[str] = ..., paid_fen: _Optional[int] = ..., receipt_time_s: _Optional[int] = ..., receipt_store_id: _Optional[int] = ..., category: _Optional[int] = ...) -> None: ...

class MakeUpPointsResponse(_message.Message):
    __slots__ = ("points_earned", "points", "outcome")
    POINTS_EARNED_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    points_earned: int
    points: int
    outcome: AdminOutcome
    def __init__(self, points_earned: _Optional[int] = ..., points: _Optional[int] = ..., outcome: _Optional[_Union[AdminOutcome, _Mapping]] = ...) -> None: ...

class Gift(_message.Message):
    __slots__ = ("gift_id", "name", "points_cost", "stock", "active", "coupon_template_id")
    GIFT_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    POINTS_COST_FIELD_NUMBER: _ClassVar[int]
    STOCK_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    COUPON_TEMPLATE_ID_FIELD_NUMBER: _ClassVar[int]
    gift_id: int
    name: str
    points_cost: int
    stock: int
    active: bool
    coupon_template_id: int
    def __init__(self, gift_id: _Optional[int] = ..., name: _Optional[str] = ..., points_cost: _Optional[int] = ..., stock: _Optional[int] = ..., active: _Optional[bool] = ..., coupon_template_id: _Optional[int] = ...) -> None: ...

class PutGiftRequest(_message.Message):
    __slots__ = ("client_id", "gift")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    GIFT_FIELD_NUMBER: _ClassVar[int]
    client_id: bytes
    gift: Gift
    def __init__(self, client_id: _Optional[bytes] = ..., gift: _Optional[_Union[Gift, _Mapping]] = ...) -> None: ...

class PutGiftResponse(_message.Message):
    __slots__ = ("created", "outcome")
    CREATED_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    created: bool
    outcome: AdminOutcome
    def __init__(self, created: _Optional[bool] = ..., outcome: _Optional[_Union[AdminOutcome, _Mapping]] = ...) -> None: ...

class ListGiftsRequest(_message.Message):
    __slots__ = ("active_only",)
    ACTIVE_ONLY_FIELD_NUMBER: _ClassVar[int]
    active_only: bool
    def __init__(self, active_only: _Optional[bool] = ...) -> None: ...

class ListGiftsResponse(_message.Message):
    __slots__ = ("gifts",)
    GIFTS_FIELD_NUMBER: _ClassVar[int]
    gifts: _containers.RepeatedCompositeFieldContainer[Gift]
    def __init__(self, gifts: _Optional[_Iterable[_Union[Gift, _Mapping]]] = ...) -> None: ...

class RedeemGiftRequest(_message.Message):
    __slots__ = ("client_id", "card_no", "gift_id", "qty")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    CARD_NO_FIELD_NUMBER: _ClassVar[int]
    GIFT_ID_FIELD_NUMBER: _ClassVar[int]
    QTY_FIELD_NUMBER: _ClassVar[int]
    client_id: bytes
    card_no: int
    gift_id: int
    qty: int
    def __init__(self, client_id: _Optional[bytes] = ..., card_no: _Optional[int] = ..., gift_id: _Optional[int] = ..., qty: _Optional[int] = ...) -> None: ...

class RedeemGiftResponse(_message.Message):
    __slots__ = ("points_cost", "points", "stock", "outcome", "coupon_ids")
    POINTS_COST_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    STOCK_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    COUPON_IDS_FIELD_NUMBER: _ClassVar[int]
    points_cost: int
    points: int
    stock: int
    outcome: AdminOutcome
    coupon_ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, points_cost: _Optional[int] = ..., points: _Optional[int] = ..., stock: _Optional[int] = ..., outcome: _Optional[_Union[AdminOutcome, _Mapping]] = ..., coupon_ids: _Optional[_Iterable[int]] = ...) -> None: ...

class CouponTemplate(_message.Message):
    __slots__ = ("template_id", "name", "kind", "value_fen", "percent_bp", "min_spend_fen", "max_off_fen", "gift_sku", "stackable", "stores", "categories", "levels", "valid_days", "total_quantity", "budget_fen")
    TEMPLATE_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    VALUE_FEN_FIELD_NUMBER: _ClassVar[int]
    PERCENT_BP_FIELD_NUMBER: _ClassVar[int]
    MIN_SPEND_FEN_FIELD_NUMBER: _ClassVar[int]
    MAX_OFF_FEN_FIELD_NUMBER: _ClassVar[int]
    GIFT_SKU_FIELD_NUMBER: _ClassVar[int]
    STACKABLE_FIELD_NUMBER: _ClassVar[int]
    STORES_FIELD_NUMBER: _ClassVar[int]
    CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    LEVELS_FIELD_NUMBER: _ClassVar[int]
    VALID_DAYS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_QUANTITY_FIELD_NUMBER: _ClassVar[int]
    BUDGET_FEN_FIELD_NUMBER: _ClassVar[int]
    template_id: int
    name: str
    kind: str
    value_fen: int
    percent_bp: int
    min_spend_fen: int
    max_off_fen: int
    gift_sku: int
    stackable: bool
    stores: _containers.RepeatedScalarFieldContainer[int]
    categories: _containers.RepeatedScalarFieldContainer[int]
    levels: _containers.RepeatedScalarFieldContainer[int]
    valid_days: int
    total_quantity: int
    budget_fen: int
    def __init__(self, template_id: _Optional[int] = ..., name: _Optional[str] = ..., kind: _Optional[str] = ..., value_fen: _Optional[int] = ..., percent_bp: _Optional[int] = ..., min_spend_fen: _Optional[int] = ..., max_off_fen: _Optional[int] = ..., gift_sku: _Optional[int] = ..., stackable: _Optional[bool] = ..., stores: _Optional[_Iterable[int]] = ..., categories: _Optional[_Iterable[int]] = ..., levels: _Optional[_Iterable[int]] = ..., valid_days: _Optional[int] = ..., total_quantity: _Optional[int] = ..., budget_fen: _Optional[int] = ...) -> None: ...

class PutCouponTemplateRequest(_message.Message):
    __slots__ = ("client_id", "template")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    client_id: bytes
    template: CouponTemplate
    def __init__(self, client_id: _Optional[bytes] = ..., template: _Optional[_Union[CouponTemplate, _Mapping]] = ...) -> None: ...

class PutCouponTemplateResponse(_message.Message):
    __slots__ = ("created", "version", "outcome")
    CREATED_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    created: bool
    version: int
    outcome: AdminOutcome
    def __init__(self, created: _Optional[bool] = ..., version: _Optional[int] = ..., outcome: _Optional[_Union[AdminOutcome, _Mapping]] = ...) -> None: ...

class ListCouponTemplatesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListCouponTemplatesResponse(_message.Message):
    __slots__ = ("templates",)
    TEMPLATES_FIELD_NUMBER: _ClassVar[int]
    templates: _containers.RepeatedCompositeFieldContainer[CouponTemplate]
    def __init__(self, templates: _Optional[_Iterable[_Union[CouponTemplate, _Mapping]]] = ...) -> None: ...

class IssueCouponsRequest(_message.Message):
    __slots__ = ("client_id", "template_id", "card_nos", "valid_from_s")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_ID_FIELD_NUMBER: _ClassVar[int]
    CARD_NOS_FIELD_NUMBER: _ClassVar[int]
    VALID_FROM_S_FIELD_NUMBER: _ClassVar[int]
    client_id: bytes
    template_id: int
    card_nos: _containers.RepeatedScalarFieldContainer[int]
    valid_from_s: int
    def __init__(self, client_id: _Optional[bytes] = ..., template_id: _Optional[int] = ..., card_nos: _Optional[_Iterable[int]] = ..., valid_from_s: _Optional[int] = ...) -> None: ...

class IssueCouponsResponse(_message.Message):
    __slots__ = ("coupon_ids", "outcome")
    COUPON_IDS_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    coupon_ids: _containers.RepeatedScalarFieldContainer[int]
    outcome: AdminOutcome
    def __init__(self, coupon_ids: _Optional[_Iterable[int]] = ..., outcome: _Optional[_Union[AdminOutcome, _Mapping]] = ...) -> None: ...

class ListCardCouponsRequest(_message.Message):
    __slots__ = ("card_no", "include_used")
    CARD_NO_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_USED_FIELD_NUMBER: _ClassVar[int]
    card_no: int
    include_used: bool
    def __init__(self, card_no: _Optional[int] = ..., include_used: _Optional[bool] = ...) -> None: ...

class Coupon(_message.Message):
    __slots__ = ("coupon_id", "template_id", "status", "valid_from_s", "valid_to_s", "redeemed_seq", "redeemed_fen")
    COUPON_ID_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    VALID_FROM_S_FIELD_NUMBER: _ClassVar[int]
    VALID_TO_S_FIELD_NUMBER: _ClassVar[int]
    REDEEMED_SEQ_FIELD_NUMBER: _ClassVar[int]
    REDEEMED_FEN_FIELD_NUMBER: _ClassVar[int]
    coupon_id: int
    template_id: int
    status: int
    valid_from_s: int
    valid_to_s: int
    redeemed_seq: int
    redeemed_fen: int
    def __init__(self, coupon_id: _Optional[int] = ..., template_id: _Optional[int] = ..., status: _Optional[int] = ..., valid_from_s: _Optional[int] = ..., valid_to_s: _Optional[int] = ..., redeemed_seq: _Optional[int] = ..., redeemed_fen: _Optional[int] = ...) -> None: ...

class ListCardCouponsResponse(_message.Message):
    __slots__ = ("coupons",)
    COUPONS_FIELD_NUMBER: _ClassVar[int]
    coupons: _containers.RepeatedCompositeFieldContainer[Coupon]
    def __init__(self, coupons: _Optional[_Iterable[_Union[Coupon, _Mapping]]] = ...) -> None: ...

class CommissionReportRequest(_message.Message):
    __slots__ = ("since_s", "until_s", "store_id")
    SINCE_S_FIELD_NUMBER: _ClassVar[int]
    UNTIL_S_FIELD_NUMBER: _ClassVar[int]
    STORE_ID_FIELD_NUMBER: _ClassVar[int]
    since_s: int
    until_s: int
    store_id: int
    def __init__(self, since_s: _Optional[int] = ..., until_s: _Optional[int] = ..., store_id: _Optional[int] = ...) -> None: ...

class CommissionRow(_message.Message):
    __slots__ = ("operator_id", "swipes", "uses", "refunds", "sales_fen", "commission_fen")
    OPERATOR_ID_FIELD_NUMBER: _ClassVar[int]
    SWIPES_FIELD_NUMBER: _ClassVar[int]
    USES_FIELD_NUMBER: _ClassVar[int]
    REFUNDS_FIELD_NUMBER: _ClassVar[int]
    SALES_FEN_FIELD_NUMBER: _ClassVar[int]
    COMMISSION_FEN_FIELD_NUMBER: _ClassVar[int]
    operator_id: int
    swipes: int
    uses: int
    refunds: int
    sales_fen: int
    commission_fen: int
    def __init__(self, operator_id: _Optional[int] = ..., swipes: _Optional[int] = ..., uses: _Optional[int] = ..., refunds: _Optional[int] = ..., sales_fen: _Optional[int] = ..., commission_fen: _Optional[int] = ...) -> None: ...

class CommissionReportResponse(_message.Message):
    __slots__ = ("rows", "store_id")
    ROWS_FIELD_NUMBER: _ClassVar[int]
    STORE_ID_FIELD_NUMBER: _ClassVar[int]
    rows: _containers.RepeatedCompositeFieldContainer[CommissionRow]
    store_id: int
    def __init__(self, rows: _Optional[_Iterable[_Union[CommissionRow, _Mapping]]] = ..., store_id: _Optional[int] = ...) -> None: ...

class PullNoticesRequest(_message.Message):
    __slots__ = ("after_seq", "limit")
    AFTER_SEQ_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    after_seq: int
    limit: int
    def __init__(self, after_seq: _Optional[int] = ..., limit: _Optional[int] = ...) -> None: ...

class Notice(_message.Message):
    __slots__ = ("seq", "kind", "card_no", "member_id", "time_s", "store_id", "amount_fen", "paid_fen", "principal_delta_fen", "bonus_delta_fen", "points_delta", "balance_fen", "points", "count_uses", "detail_json")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    CARD_NO_FIELD_NUMBER: _ClassVar[int]
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    TIME_S_FIELD_NUMBER: _ClassVar[int]
    STORE_ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FEN_FIELD_NUMBER: _ClassVar[int]
    PAID_FEN_FIELD_NUMBER: _ClassVar[int]
    PRINCIPAL_DELTA_FEN_FIELD_NUMBER: _ClassVar[int]
    BONUS_DELTA_FEN_FIELD_NUMBER: _ClassVar[int]
    POINTS_DELTA_FIELD_NUMBER: _ClassVar[int]
    BALANCE_FEN_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    COUNT_USES_FIELD_NUMBER: _ClassVar[int]
    DETAIL_JSON_FIELD_NUMBER: _ClassVar[int]
    seq: int
    kind: str
    card_no: int
    member_id: int
    time_s: int
    store_id: int
    amount_fen: int
    paid_fen: int
    principal_delta_fen: int
    bonus_delta_fen: int
    points_delta: int
    balance_fen: int
    points: int
    count_uses: int
    detail_json: str
    def __init__(self, seq: _Optional[int] = ..., kind: _Optional[str] = ..., card_no: _Optional[int] = ..., member_id: _Optional[int] = ..., time_s: _Optional[int] = ..., store_id: _Optional[int] = ..., amount_fen: _Optional[int] = ..., paid_fen: _Optional[int] = ..., principal_delta_fen: _Optional[int] = ..., bonus_delta_fen: _Optional[int] = ..., points_delta: _Optional[int] = ..., balance_fen: _Optional[int] = ..., points: _Optional[int] = ..., count_uses: _Optional[int] = ..., detail_json: _Optional[str] = ...) -> None: ...

class PullNoticesResponse(_message.Message):
    __slots__ = ("notices", "next_seq")
    NOTICES_FIELD_NUMBER: _ClassVar[int]
    NEXT_SEQ_FIELD_NUMBER: _ClassVar[int]
    notices: _containers.RepeatedCompositeFieldContainer[Notice]
    next_seq: int
    def __init__(self, notices: _Optional[_Iterable[_Union[Notice, _Mapping]]] = ..., next_seq: _Optional[int] = ...) -> None: ...

class AckNoticesRequest(_message.Message):
    __slots__ = ("client_id", "upto_seq")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    UPTO_SEQ_FIELD_NUMBER: _ClassVar[int]
    client_id: bytes
    upto_seq: int
    def __init__(self, client_id: _Optional[bytes] = ..., upto_seq: _Optional[int] = ...) -> None: ...

class AckNoticesResponse(_message.Message):
    __slots__ = ("cursor", "dropped", "outcome")
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    cursor: int
    dropped: int
    outcome: AdminOutcome
    def __init__(self, cursor: _Optional[int] = ..., dropped: _Optional[int] = ..., outcome: _Optional[_Union[AdminOutcome, _Mapping]] = ...) -> None: ...

class RechargeCardRequest(_message.Message):
    __slots__ = ("client_id", "card_no", "amount_fen")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    CARD_NO_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FEN_FIELD_NUMBER: _ClassVar[int]
    client_id: bytes
    card_no: int
    amount_fen: int
    def __init__(self, client_id: _Optional[bytes] = ..., card_no: _Optional[int] = ..., amount_fen: _Optional[int] = ...) -> None: ...

class RechargeCardResponse(_message.Message):
    __slots__ = ("result", "operator_id", "store_id")
    RESULT_FIELD_NUMBER: _ClassVar[int]
    OPERATOR_ID_FIELD_NUMBER: _ClassVar[int]
    STORE_ID_FIELD_NUMBER: _ClassVar[int]
    result: _types_pb2.OpResult
    operator_id: int
    store_id: int
    def __init__(self, result: _Optional[_Union[_types_pb2.OpResult, _Mapping]] = ..., operator_id: _Optional[int] = ..., store_id: _Optional[int] = ...) -> None: ...

class ListOperatorsRequest(_message.Message):
    __slots__ = ("store_id", "limit", "offset", "include_disabled")
    STORE_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_DISABLED_FIELD_NUMBER: _ClassVar[int]
    store_id: int
    limit: int
    offset: int
    include_disabled: bool
    def __init__(self, store_id: _Optional[int] = ..., limit: _Optional[int] = ..., offset: _Optional[int] = ..., include_disabled: _Optional[bool] = ...) -> None: ...

class ListOperatorsResponse(_message.Message):
    __slots__ = ("total", "operators")
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    OPERATORS_FIELD_NUMBER: _ClassVar[int]
    total: int
    operators: _containers.RepeatedCompositeFieldContainer[Operator]
    def __init__(self, total: _Optional[int] = ..., operators: _Optional[_Iterable[_Union[Operator, _Mapping]]] = ...) -> None: ...
