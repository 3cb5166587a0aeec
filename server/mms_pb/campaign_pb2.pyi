from . import admin_pb2 as _admin_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CreatePlanRequest(_message.Message):
    __slots__ = ("client_id", "plan_json")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    PLAN_JSON_FIELD_NUMBER: _ClassVar[int]
    client_id: bytes
    plan_json: str
    def __init__(self, client_id: _Optional[bytes] = ..., plan_json: _Optional[str] = ...) -> None: ...

class Plan(_message.Message):
    __slots__ = ("plan_id", "name", "store_id", "status", "plan_json")
    PLAN_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    STORE_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PLAN_JSON_FIELD_NUMBER: _ClassVar[int]
    plan_id: int
    name: str
    store_id: int
    status: str
    plan_json: str
    def __init__(self, plan_id: _Optional[int] = ..., name: _Optional[str] = ..., store_id: _Optional[int] = ..., status: _Optional[str] = ..., plan_json: _Optional[str] = ...) -> None: ...

class PlanReply(_message.Message):
    __slots__ = ("plan", "outcome")
    PLAN_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    plan: Plan
    outcome: _admin_pb2.AdminOutcome
    def __init__(self, plan: _Optional[_Union[Plan, _Mapping]] = ..., outcome: _Optional[_Union[_admin_pb2.AdminOutcome, _Mapping]] = ...) -> None: ...

class ListPlansRequest(_message.Message):
    __slots__ = ("store_id",)
    STORE_ID_FIELD_NUMBER: _ClassVar[int]
    store_id: int
    def __init__(self, store_id: _Optional[int] = ...) -> None: ...

class ListPlansResponse(_message.Message):
    __slots__ = ("plans",)
    PLANS_FIELD_NUMBER: _ClassVar[int]
    plans: _containers.RepeatedCompositeFieldContainer[Plan]
    def __init__(self, plans: _Optional[_Iterable[_Union[Plan, _Mapping]]] = ...) -> None: ...

class GetPlanRequest(_message.Message):
    __slots__ = ("plan_id",)
    PLAN_ID_FIELD_NUMBER: _ClassVar[int]
    plan_id: int
    def __init__(self, plan_id: _Optional[int] = ...) -> None: ...

class PausePlanRequest(_message.Message):
    __slots__ = ("client_id", "plan_id", "paused")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    PLAN_ID_FIELD_NUMBER: _ClassVar[int]
    PAUSED_FIELD_NUMBER: _ClassVar[int]
    client_id: bytes
    plan_id: int
    paused: bool
    def __init__(self, client_id: _Optional[bytes] = ..., plan_id: _Optional[int] = ..., paused: _Optional[bool] = ...) -> None: ...

class StartRunRequest(_message.Message):
    __slots__ = ("client_id", "plan_id", "run_id", "chunk", "wait")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    PLAN_ID_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    WAIT_FIELD_NUMBER: _ClassVar[int]
    client_id: bytes
    plan_id: int
    run_id: str
    chunk: int
    wait: bool
    def __init__(self, client_id: _Optional[bytes] = ..., plan_id: _Optional[int] = ..., run_id: _Optional[str] = ..., chunk: _Optional[int] = ..., wait: _Optional[bool] = ...) -> None: ...

class Run(_message.Message):
    __slots__ = ("run_id", "plan_id", "state", "audience", "targets", "holdout", "cursor", "reached", "coupons", "face_fen", "points", "notices", "no_budget", "no_card", "chunks_done", "started_s", "finished_s")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    PLAN_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    AUDIENCE_FIELD_NUMBER: _ClassVar[int]
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    HOLDOUT_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    REACHED_FIELD_NUMBER: _ClassVar[int]
    COUPONS_FIELD_NUMBER: _ClassVar[int]
    FACE_FEN_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    NOTICES_FIELD_NUMBER: _ClassVar[int]
    NO_BUDGET_FIELD_NUMBER: _ClassVar[int]
    NO_CARD_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_DONE_FIELD_NUMBER: _ClassVar[int]
    STARTED_S_FIELD_NUMBER: _ClassVar[int]
    FINISHED_S_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    plan_id: int
    state: str
    audience: int
    targets: int
    holdout: int
    cursor: int
    reached: int
    coupons: int
    face_fen: int
    points: int
    notices: int
    no_budget: int
    no_card: int
    chunks_done: int
    started_s: int
    finished_s: int
    def __init__(self, run_id: _Optional[str] = ..., plan_id: _Optional[int] = ..., state: _Optional[str] = ..., audience: _Optional[int] = ..., targets: _Optional[int] = ..., holdout: _Optional[int] = ..., cursor: _Optional[int] = ..., reached: _Optional[int] = ..., coupons: _Optional[int] = ..., face_fen: _Optional[int] = ..., points: _Optional[int] = ..., notices: _Optional[int] = ..., no_budget: _Optional[int] = ..., no_card: _Optional[int] = ..., chunks_done: _Optional[int] = ..., started_s: _Optional[int] = ..., finished_s: _Optional[int] = ...) -> None: ...

class RunReply(_message.Message):
    __slots__ = ("run",)
    RUN_FIELD_NUMBER: _ClassVar[int]
    run: Run
    def __init__(self, run: _Optional[_Union[Run, _Mapping]] = ...) -> None: ...

class GetRunRequest(_message.Message):
    __slots__ = ("run_id",)
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    def __init__(self, run_id: _Optional[str] = ...) -> None: ...

class RunResultsReply(_message.Message):
    __slots__ = ("run_id", "plan_id", "state", "audience", "targets", "holdout", "reached", "redeemed", "redemption_rate_bp", "coupons_issued", "reached_sales_fen", "reached_visits", "holdout_sales_fen", "holdout_visits", "window_days", "face_redeemed_fen", "points_granted", "points_cost_fen", "cost_fen", "holdout_sales_scaled_fen", "incremental_sales_fen", "roi_bp", "no_budget", "no_card", "member_price_fen", "member_price_swipes")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    PLAN_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    AUDIENCE_FIELD_NUMBER: _ClassVar[int]
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    HOLDOUT_FIELD_NUMBER: _ClassVar[int]
    REACHED_FIELD_NUMBER: _ClassVar[int]
    REDEEMED_FIELD_NUMBER: _ClassVar[int]
    REDEMPTION_RATE_BP_FIELD_NUMBER: _ClassVar[int]
    COUPONS_ISSUED_FIELD_NUMBER: _ClassVar[int]
    REACHED_SALES_FEN_FIELD_NUMBER: _ClassVar[int]
    REACHED_VISITS_FIELD_NUMBER: _ClassVar[int]
    HOLDOUT_SALES_FEN_FIELD_NUMBER: _ClassVar[int]
    HOLDOUT_VISITS_FIELD_NUMBER: _ClassVar[int]
    WINDOW_DAYS_FIELD_NUMBER: _ClassVar[int]
    FACE_REDEEMED_FEN_FIELD_NUMBER: _ClassVar[int]
    POINTS_GRANTED_FIELD_NUMBER: _ClassVar[int]
    POINTS_COST_FEN_FIELD_NUMBER: _ClassVar[int]
    COST_FEN_FIELD_NUMBER: _ClassVar[int]
    HOLDOUT_SALES_SCALED_FEN_FIELD_NUMBER: _ClassVar[int]
    INCREMENTAL_SALES_FEN_FIELD_NUMBER: _ClassVar[int]
    ROI_BP_FIELD_NUMBER: _ClassVar[int]
    NO_BUDGET_FIELD_NUMBER: _ClassVar[int]
    NO_CARD_FIELD_NUMBER: _ClassVar[int]
    MEMBER_PRICE_FEN_FIELD_NUMBER: _ClassVar[int]
    MEMBER_PRICE_SWIPES_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    plan_id: int
    state: str
    audience: int
    targets: int
    holdout: int
    reached: int
    redeemed: int
    redemption_rate_bp: int
    coupons_issued: int
    reached_sales_fen: int
    reached_visits: int
    holdout_sales_fen: int
    holdout_visits: int
    window_days: int
    face_redeemed_fen: int
    points_granted: int
    points_cost_fen: int
    cost_fen: int
    holdout_sales_scaled_fen: int
    incremental_sales_fen: int
    roi_bp: int
    no_budget: int
    no_card: int
    member_price_fen: int
    member_price_swipes: int
    def __init__(self, run_id: _Optional[str] = ..., plan_id: _Optional[int] = ..., state: _Optional[str] = ..., audience: _Optional[int] = ..., targets: _Optional[int] = ..., holdout: _Optional[int] = ..., reached: _Optional[int] = ..., redeemed: _Optional[int] = ..., redemption_rate_bp: _Optional[int] = ..., coupons_issued: _Optional[int] = ..., reached_sales_fen: _Optional[int] = ..., reached_visits: _Optional[int] = ..., holdout_sales_fen: _Optional[int] = ..., holdout_visits: _Optional[int] = ..., window_days: _Optional[int] = ..., face_redeemed_fen: _Optional[int] = ..., points_granted: _Optional[int] = ..., points_cost_fen: _Optional[int] = ..., cost_fen: _Optional[int] = ..., holdout_sales_scaled_fen: _Optional[int] = ..., incremental_sales_fen: _Optional[int] = ..., roi_bp: _Optional[int] = ..., no_budget: _Optional[int] = ..., no_card: _Optional[int] = ..., member_price_fen: _Optional[int] = ..., member_price_swipes: _Optional[int] = ...) -> None: ...

class SignInRequest(_message.Message):
    __slots__ = ("client_id", "card_no")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    CARD_NO_FIELD_NUMBER: _ClassVar[int]
    client_id: bytes
    card_no: int
    def __init__(self, client_id: _Optional[bytes] = ..., card_no: _Optional[int] = ...) -> None: ...

class SignInReply(_message.Message):
    __slots__ = ("points", "day", "card_points", "outcome")
    POINTS_FIELD_NUMBER: _ClassVar[int]
    DAY_FIELD_NUMBER: _ClassVar[int]
    CARD_POINTS_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    points: int
    day: str
    card_points: int
    outcome: _admin_pb2.AdminOutcome
    def __init__(self, points: _Optional[int] = ..., day: _Optional[str] = ..., card_points: _Optional[int] = ..., outcome: _Optional[_Union[_admin_pb2.AdminOutcome, _Mapping]] = ...) -> None: ...

class PutCampaignRequest(_message.Message):
    __slots__ = ("client_id", "kind", "config_json")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    CONFIG_JSON_FIELD_NUMBER: _ClassVar[int]
    client_id: bytes
    kind: str
    config_json: str
    def __init__(self, client_id: _Optional[bytes] = ..., kind: _Optional[str] = ..., config_json: _Optional[str] = ...) -> None: ...

class PutCampaignReply(_message.Message):
    __slots__ = ("config_json", "outcome")
    CONFIG_JSON_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    config_json: str
    outcome: _admin_pb2.AdminOutcome
    def __init__(self, config_json: _Optional[str] = ..., outcome: _Optional[_Union[_admin_pb2.AdminOutcome, _Mapping]] = ...) -> None: ...

class SettleRequest(_message.Message):
    __slots__ = ("client_id", "name")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    client_id: bytes
    name: str
    def __init__(self, client_id: _Optional[bytes] = ..., name: _Optional[str] = ...) -> None: ...

class SettleReply(_message.Message):
    __slots__ = ("count", "amount", "upto_seq", "more", "outcome")
    COUNT_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    UPTO_SEQ_FIELD_NUMBER: _ClassVar[int]
    MORE_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    count: int
    amount: int
    upto_seq: int
    more: bool
    outcome: _admin_pb2.AdminOutcome
    def __init__(self, count: _Optional[int] = ..., amount: _Optional[int] = ..., upto_seq: _Optional[int] = ..., more: _Optional[bool] = ..., outcome: _Optional[_Union[_admin_pb2.AdminOutcome, _Mapping]] = ...) -> None: ...
