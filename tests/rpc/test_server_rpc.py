"""Every RPC against the real server on a loopback port: auth, results, bad input."""

from __future__ import annotations

import asyncio
import os
import re
import threading
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status

from core import BonusTier, Engine, EngineConfig, RulesConfig
from core.domain.cards import CardType, put_card_type
from core.records import Result
from server.mms_pb import admin_pb2, admin_pb2_grpc, pos_pb2, pos_pb2_grpc, types_pb2
from server.rpc.app import MmsServer
from server.rpc.auth import Registry, Terminal, new_token, token_hash
from server.rpc.metrics import Metrics

STORE, OTHER_STORE = 11, 12
CARDS = list(range(1000, 1020))


class Running:
    """A server on its own event loop thread, for synchronous test clients."""

    def __init__(self, data: str, config: EngineConfig | None = None, **server_kw) -> None:
        self.tokens = {"pos": new_token(), "admin": new_token(), "revoked": new_token(),
                       "other": new_token()}
        self.registry = Registry([
            Terminal(1, STORE, token_hash(self.tokens["pos"])),
            Terminal(2, 0, token_hash(self.tokens["admin"]), role="admin"),
            Terminal(3, STORE, token_hash(self.tokens["revoked"]), revoked=True),
            Terminal(4, OTHER_STORE, token_hash(self.tokens["other"])),
        ])
        self.metrics = Metrics()
        rules = RulesConfig(tiers=(BonusTier(10_000, 2_000),))
        self.engine = Engine(data, rules=rules, observer=self.metrics, config=config)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = MmsServer(self.engine, self.registry, self.metrics, **server_kw)
        self.call(self.server.start())
        self.target = f"127.0.0.1:{self.server.port}"
        self.channel = grpc.insecure_channel(self.target)
        self.pos = pos_pb2_grpc.PosServiceStub(self.channel)
        self.admin = admin_pb2_grpc.AdminServiceStub(self.channel)

    def call(self, coro, timeout: float = 30):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def md(self, who: str = "pos"):
        return (("authorization", f"Bearer {self.tokens[who]}"),)

    def close(self) -> None:
        self.channel.close()
        self.call(self.server.stop(1.0))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()
        self.engine.close()


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    r = Running(str(tmp_path_factory.mktemp("rpc")))
    r.admin.IssueCards(admin_pb2.IssueCardsRequest(client_id=os.urandom(16), card_nos=CARDS),
                       metadata=r.md("admin"))
    for no in CARDS:
        r.pos.Recharge(pos_pb2.RechargeRequest(client_id=os.urandom(16), card_no=no,
                                               amount_fen=100_000), metadata=r.md())
    yield r
    r.close()


def error_info(err: grpc.RpcError) -> error_details_pb2.ErrorInfo:
    st = rpc_status.from_call(err)
    assert st is not None, "no rich status details"
    for d in st.details:
        if d.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            d.Unpack(info)
            return info
    raise AssertionError("no ErrorInfo in the status details")


def expect(code: grpc.StatusCode, reason: str, fn, *a, **kw) -> error_details_pb2.ErrorInfo:
    with pytest.raises(grpc.RpcError) as ei:
        fn(*a, **kw)
    assert ei.value.code() == code, ei.value.details()
    info = error_info(ei.value)
    assert info.reason == reason
    assert info.domain == "mms.v1"
    return info


def card(srv, no: int) -> types_pb2.Card:
    return srv.pos.GetCard(pos_pb2.GetCardRequest(card_no=no), metadata=srv.md()).card


def journal_seq(srv) -> int:
    return srv.engine.stats()["last_seq"]


def columns(nos, amounts, ids: bytes | None = None, **kw) -> types_pb2.SwipeColumns:
    ids = os.urandom(16 * len(nos)) if ids is None else ids
    return types_pb2.SwipeColumns(client_ids=ids, card_nos=nos, amount_fen=amounts, **kw)


# --- auth -----------------------------------------------------------------------------

@pytest.mark.parametrize("md", [
    (),
    (("authorization", "Bearer nope"),),
    (("authorization", "Basic abc"),),
    (("authorization", "Bearer " + "x" * 1000),),
], ids=["none", "unknown", "scheme", "huge"])
def test_unauthenticated(srv, md):
    before = journal_seq(srv)
    expect(grpc.StatusCode.UNAUTHENTICATED, "TOKEN_INVALID", srv.pos.Swipe,
           pos_pb2.SwipeRequest(client_id=os.urandom(16), card_no=CARDS[0], amount_fen=100),
           metadata=md)
    expect(grpc.StatusCode.UNAUTHENTICATED, "TOKEN_INVALID", srv.pos.GetCard,
           pos_pb2.GetCardRequest(card_no=CARDS[0]), metadata=md)
    assert journal_seq(srv) == before


def test_revoked_token(srv):
    before = card(srv, CARDS[0])
    expect(grpc.StatusCode.UNAUTHENTICATED, "TOKEN_INVALID", srv.pos.Swipe,
           pos_pb2.SwipeRequest(client_id=os.urandom(16), card_no=CARDS[0], amount_fen=100),
           metadata=srv.md("revoked"))
    assert card(srv, CARDS[0]) == before


def test_admin_needs_admin_role(srv):
    expect(grpc.StatusCode.PERMISSION_DENIED, "ROLE_REQUIRED", srv.admin.IssueCards,
           admin_pb2.IssueCardsRequest(client_id=os.urandom(16), card_nos=[5]),
           metadata=srv.md("pos"))
    expect(grpc.StatusCode.NOT_FOUND, "RESULT_CARD_NOT_FOUND", srv.pos.GetCard,
           pos_pb2.GetCardRequest(card_no=5), metadata=srv.md())


def test_ops_stamped_with_terminal_store(srv):
    r = srv.pos.Swipe(pos_pb2.SwipeRequest(client_id=os.urandom(16), card_no=CARDS[1],
                                           amount_fen=500), metadata=srv.md("other"))
    rec = srv.engine.card_journal(CARDS[1], limit=1)[0]
    assert int(rec["seq"]) == r.result.seq
    assert (int(rec["store_id"]), int(rec["terminal_id"])) == (OTHER_STORE, 4)


def test_wrong_store_rejected(srv):
    before = card(srv, CARDS[0])
    expect(grpc.StatusCode.PERMISSION_DENIED, "STORE_MISMATCH", srv.pos.Swipe,
           pos_pb2.SwipeRequest(client_id=os.urandom(16), card_no=CARDS[0], amount_fen=100,
                                store_id=OTHER_STORE), metadata=srv.md())
    expect(grpc.StatusCode.PERMISSION_DENIED, "STORE_MISMATCH", srv.pos.SwipeBatch,
           pos_pb2.SwipeBatchRequest(swipes=columns([CARDS[0]], [100]), store_id=OTHER_STORE),
           metadata=srv.md())
    assert card(srv, CARDS[0]) == before
    # The terminal's own store is accepted.
    srv.pos.Swipe(pos_pb2.SwipeRequest(client_id=os.urandom(16), card_no=CARDS[0],
                                       amount_fen=100, store_id=STORE), metadata=srv.md())


# --- unary swipe and recharge ---------------------------------------------------------

def test_swipe_and_retry_applies_once(srv):
    no = CARDS[2]
    before = card(srv, no)
    cid = os.urandom(16)
    req = pos_pb2.SwipeRequest(client_id=cid, card_no=no, amount_fen=1_234, category=3,
                               operator_id=9)
    r1 = srv.pos.Swipe(req, metadata=srv.md())
    assert r1.result.code == types_pb2.RESULT_OK and not r1.result.replayed
    assert r1.result.amount_fen == 1_234
    spent = -(r1.result.principal_delta_fen + r1.result.bonus_delta_fen)
    assert spent == r1.result.payable_fen > 0
    after = card(srv, no)
    assert after.principal_fen + after.bonus_fen == before.principal_fen + before.bonus_fen - spent
    r2 = srv.pos.Swipe(req, metadata=srv.md())
    assert r2.result.replayed and r2.result.seq == r1.result.seq
    assert card(srv, no) == after


def test_recharge_bonus_tier(srv):
    no = CARDS[3]
    before = card(srv, no)
    r = srv.pos.Recharge(pos_pb2.RechargeRequest(client_id=os.urandom(16), card_no=no,
                                                 amount_fen=10_000), metadata=srv.md())
    assert r.result.principal_delta_fen == 10_000
    assert r.result.bonus_delta_fen == 2_000
    after = card(srv, no)
    assert after.principal_fen == before.principal_fen + 10_000
    assert after.bonus_fen == before.bonus_fen + 2_000


@pytest.mark.parametrize("kw,code,reason", [
    ({"amount_fen": 0}, grpc.StatusCode.INVALID_ARGUMENT, "RESULT_AMOUNT_NOT_POSITIVE"),
    ({"amount_fen": -5}, grpc.StatusCode.INVALID_ARGUMENT, "RESULT_AMOUNT_NOT_POSITIVE"),
    ({"amount_fen": 10**15}, grpc.StatusCode.INVALID_ARGUMENT, "RESULT_AMOUNT_TOO_LARGE"),
    ({"client_id": b"short"}, grpc.StatusCode.INVALID_ARGUMENT, "RESULT_CLIENT_ID_INVALID"),
    ({"card_no": 0}, grpc.StatusCode.INVALID_ARGUMENT, "RESULT_CARD_NO_INVALID"),
    ({"card_no": 999_999}, grpc.StatusCode.NOT_FOUND, "RESULT_CARD_NOT_FOUND"),
    ({"amount_fen": 10**7}, grpc.StatusCode.FAILED_PRECONDITION, "RESULT_INSUFFICIENT_BALANCE"),
    ({"category": 70_000}, grpc.StatusCode.INVALID_ARGUMENT, "VALUE_OUT_OF_RANGE"),
])
def test_swipe_rejections_change_nothing(srv, kw, code, reason):
    no = kw.get("card_no", CARDS[4])
    base = {"client_id": os.urandom(16), "card_no": CARDS[4], "amount_fen": 100, **kw}
    before_card, before_seq = card(srv, CARDS[4]), journal_seq(srv)
    expect(code, reason, srv.pos.Swipe, pos_pb2.SwipeRequest(**base), metadata=srv.md())
    assert card(srv, CARDS[4]) == before_card
    assert journal_seq(srv) == before_seq
    del no


def test_recharge_rejections(srv):
    before = card(srv, CARDS[4])
    expect(grpc.StatusCode.INVALID_ARGUMENT, "RESULT_AMOUNT_NOT_POSITIVE", srv.pos.Recharge,
           pos_pb2.RechargeRequest(client_id=os.urandom(16), card_no=CARDS[4], amount_fen=-1),
           metadata=srv.md())
    expect(grpc.StatusCode.NOT_FOUND, "RESULT_CARD_NOT_FOUND", srv.pos.Recharge,
           pos_pb2.RechargeRequest(client_id=os.urandom(16), card_no=7, amount_fen=100),
           metadata=srv.md())
    assert card(srv, CARDS[4]) == before


# --- batches and streams --------------------------------------------------------------

def test_swipe_batch_results_in_order(srv):
    nos = [CARDS[5], 424_242, CARDS[6], CARDS[5], CARDS[7]]
    amounts = [100, 100, -3, 200, 10**8]
    before5 = card(srv, CARDS[5])
    r = srv.pos.SwipeBatch(pos_pb2.SwipeBatchRequest(swipes=columns(nos, amounts)),
                           metadata=srv.md())
    res = r.results
    assert list(res.codes) == [types_pb2.RESULT_OK, types_pb2.RESULT_CARD_NOT_FOUND,
                               types_pb2.RESULT_AMOUNT_NOT_POSITIVE, types_pb2.RESULT_OK,
                               types_pb2.RESULT_INSUFFICIENT_BALANCE]
    assert [s > 0 for s in res.seq] == [True, False, False, True, False]
    assert res.seq[3] > res.seq[0]
    # Ops of one batch on one card see each other in order.
    assert res.principal_fen[3] + res.bonus_fen[3] == (
        before5.principal_fen + before5.bonus_fen - res.payable_fen[0] - res.payable_fen[3])
    after5 = card(srv, CARDS[5])
    assert after5.principal_fen == res.principal_fen[3]


@pytest.mark.parametrize("make,reason", [
    (lambda: columns([], []), "BATCH_SIZE"),
    (lambda: columns([1] * (EngineConfig().batch_ops_max + 1), [1] * (EngineConfig().batch_ops_max + 1)),
     "BATCH_SIZE"),
    (lambda: columns([CARDS[0]], [100], ids=b"x" * 15), "CLIENT_IDS_LENGTH"),
    (lambda: columns([CARDS[0], CARDS[1]], [100]), "COLUMN_LENGTH"),
    (lambda: columns([CARDS[0]], [100], category=[1, 2]), "COLUMN_LENGTH"),
    (lambda: columns([CARDS[0]], [100], flags=[300]), "VALUE_OUT_OF_RANGE"),
], ids=["empty", "oversized", "ids", "amounts", "category-len", "flags"])
def test_swipe_batch_malformed(srv, make, reason):
    before = journal_seq(srv)
    expect(grpc.StatusCode.INVALID_ARGUMENT, reason, srv.pos.SwipeBatch,
           pos_pb2.SwipeBatchRequest(swipes=make()), metadata=srv.md())
    assert journal_seq(srv) == before


def test_a_lower_engine_batch_max_is_the_servers_bound(tmp_path):
    """The batch bound is the engine's batch_ops_max, which the TOML may lower: a batch past
    it is BATCH_SIZE with the bound, never an engine ValueError turned INTERNAL."""
    s = Running(str(tmp_path / "d"), config=EngineConfig(batch_ops_max=8, queue_ops_max=64))
    try:
        e = expect(grpc.StatusCode.INVALID_ARGUMENT, "BATCH_SIZE", s.pos.SwipeBatch,
                   pos_pb2.SwipeBatchRequest(swipes=columns([1] * 9, [1] * 9)), metadata=s.md())
        assert e.metadata["batch_ops_max"] == "8"
        assert journal_seq(s) == 0
    finally:
        s.close()


def test_message_size_bound(srv):
    huge = pos_pb2.SwipeBatchRequest(swipes=columns([1], [1], ids=b"\x01" * (5 << 20)))
    with pytest.raises(grpc.RpcError) as ei:
        srv.pos.SwipeBatch(huge, metadata=srv.md())
    assert ei.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_swipe_stream(srv):
    nos = [CARDS[8], CARDS[9]]

    def reqs():
        for i in range(5):
            yield pos_pb2.SwipeStreamRequest(batch_id=100 + i, swipes=columns(nos, [10, 20]))

    before = card(srv, CARDS[8])
    out = list(srv.pos.SwipeStream(reqs(), metadata=srv.md()))
    assert [r.batch_id for r in out] == [100, 101, 102, 103, 104]
    assert all(list(r.results.codes) == [types_pb2.RESULT_OK] * 2 for r in out)
    spent = sum(r.results.payable_fen[0] for r in out)
    after = card(srv, CARDS[8])
    assert before.principal_fen + before.bonus_fen - spent == after.principal_fen + after.bonus_fen


def test_swipe_stream_bad_batch_ends_stream_after_earlier_answers(srv):
    def reqs():
        yield pos_pb2.SwipeStreamRequest(batch_id=1, swipes=columns([CARDS[8]], [10]))
        yield pos_pb2.SwipeStreamRequest(batch_id=2, swipes=columns([CARDS[8]], [10, 20]))

    got = []
    with pytest.raises(grpc.RpcError) as ei:
        for r in srv.pos.SwipeStream(reqs(), metadata=srv.md()):
            got.append(r.batch_id)
    assert got == [1]
    assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(ei.value).reason == "COLUMN_LENGTH"


def test_bulk_recharge_twice_applies_once(srv):
    nos = [CARDS[10], CARDS[11], 77_777, CARDS[10]]
    amounts = [1_000, 2_000, 3_000, -4]
    ids = os.urandom(16 * len(nos))

    def chunks():
        for lo in (0, 2):
            yield pos_pb2.BulkRechargeRequest(client_ids=ids[16 * lo:16 * (lo + 2)],
                                              card_nos=nos[lo:lo + 2],
                                              amount_fen=amounts[lo:lo + 2],
                                              line_numbers=[lo + 2, lo + 3])

    before = card(srv, CARDS[10]), card(srv, CARDS[11])
    s1 = srv.pos.BulkRecharge(chunks(), metadata=srv.md())
    assert (s1.rows, s1.applied, s1.replayed, s1.rejected) == (4, 2, 0, 2)
    assert s1.applied_fen == 3_000 and s1.last_line == 5
    assert [(r.line_number, r.code) for r in s1.rejected_rows] == [
        (4, types_pb2.RESULT_CARD_NOT_FOUND), (5, types_pb2.RESULT_AMOUNT_NOT_POSITIVE)]
    assert [(c.first_line, c.last_line, c.applied) for c in s1.chunks] == [(2, 3, 2), (4, 5, 0)]
    mid = card(srv, CARDS[10]), card(srv, CARDS[11])
    assert mid[0].principal_fen == before[0].principal_fen + 1_000
    assert mid[1].principal_fen == before[1].principal_fen + 2_000
    s2 = srv.pos.BulkRecharge(chunks(), metadata=srv.md())
    assert (s2.rows, s2.applied, s2.applied_fen) == (4, 0, 0)
    assert (card(srv, CARDS[10]), card(srv, CARDS[11])) == mid


def test_get_card(srv):
    c = card(srv, CARDS[12])
    assert c.card_no == CARDS[12]
    assert c.status == types_pb2.CARD_STATUS_ACTIVE
    assert c.principal_fen == 100_000


# --- admin ----------------------------------------------------------------------------

def test_issue_cards_idempotent_and_exists(srv):
    cid = os.urandom(16)
    # The card type sets the level: a level of its own is refused (issue 8, item 3).
    expect(grpc.StatusCode.INVALID_ARGUMENT, "SET_BY_CARD_TYPE", srv.admin.IssueCards,
           admin_pb2.IssueCardsRequest(client_id=cid, card_nos=[50_001], level=1),
           metadata=srv.md("admin"))
    expect(grpc.StatusCode.INVALID_ARGUMENT, "SET_BY_CARD_TYPE", srv.admin.IssueCards,
           admin_pb2.IssueCardsRequest(client_id=cid, card_nos=[50_001], expires_at_s=9),
           metadata=srv.md("admin"))
    assert put_card_type(srv.engine, CardType(type_id=31, name="silver start", initial_level=1),
                         os.urandom(16)).result().code == Result.OK
    req = admin_pb2.IssueCardsRequest(client_id=cid, card_nos=[50_001, 50_002], type_id=31,
                                      level=1)
    r1 = srv.admin.IssueCards(req, metadata=srv.md("admin"))
    assert r1.code == types_pb2.RESULT_OK and not r1.replayed and r1.cards == 2
    r2 = srv.admin.IssueCards(req, metadata=srv.md("admin"))
    assert r2.replayed and r2.cards == 2
    assert card(srv, 50_002).level == 1
    expect(grpc.StatusCode.ALREADY_EXISTS, "RESULT_CARD_EXISTS", srv.admin.IssueCards,
           admin_pb2.IssueCardsRequest(client_id=os.urandom(16), card_nos=[50_003, 50_001]),
           metadata=srv.md("admin"))
    expect(grpc.StatusCode.NOT_FOUND, "RESULT_CARD_NOT_FOUND", srv.pos.GetCard,
           pos_pb2.GetCardRequest(card_no=50_003), metadata=srv.md())
    expect(grpc.StatusCode.INVALID_ARGUMENT, "BATCH_SIZE", srv.admin.IssueCards,
           admin_pb2.IssueCardsRequest(client_id=os.urandom(16)), metadata=srv.md("admin"))


def test_set_card_status_blocks_swipes(srv):
    no = CARDS[13]
    srv.admin.SetCardStatus(admin_pb2.SetCardStatusRequest(
        client_id=os.urandom(16), card_no=no, status=types_pb2.CARD_STATUS_FROZEN),
        metadata=srv.md("admin"))
    assert card(srv, no).status == types_pb2.CARD_STATUS_FROZEN
    before = card(srv, no)
    expect(grpc.StatusCode.FAILED_PRECONDITION, "RESULT_CARD_FROZEN", srv.pos.Swipe,
           pos_pb2.SwipeRequest(client_id=os.urandom(16), card_no=no, amount_fen=100),
           metadata=srv.md())
    assert card(srv, no) == before
    expect(grpc.StatusCode.INVALID_ARGUMENT, "STATUS_INVALID", srv.admin.SetCardStatus,
           admin_pb2.SetCardStatusRequest(client_id=os.urandom(16), card_no=no, status=0),
           metadata=srv.md("admin"))
    expect(grpc.StatusCode.NOT_FOUND, "RESULT_CARD_NOT_FOUND", srv.admin.SetCardStatus,
           admin_pb2.SetCardStatusRequest(client_id=os.urandom(16), card_no=3,
                                          status=types_pb2.CARD_STATUS_FROZEN),
           metadata=srv.md("admin"))


# --- bounds, deadlines, health, reflection, metrics -----------------------------------

def test_inflight_bound_resource_exhausted(tmp_path):
    r = Running(str(tmp_path), inflight_ops_max=2)
    try:
        before = journal_seq(r)
        expect(grpc.StatusCode.RESOURCE_EXHAUSTED, "INFLIGHT_LIMIT", r.pos.SwipeBatch,
               pos_pb2.SwipeBatchRequest(swipes=columns([1, 2, 3], [1, 1, 1])), metadata=r.md())
        assert journal_seq(r) == before
    finally:
        r.close()


def test_expired_deadline_is_not_submitted(srv):
    """A call whose deadline passes answers DEADLINE_EXCEEDED; whether the op got in
    first is a race the client cannot see, so the journal holds it at most once."""
    before = journal_seq(srv)
    cid = os.urandom(16)
    req = pos_pb2.SwipeRequest(client_id=cid, card_no=CARDS[0], amount_fen=1)
    try:
        srv.pos.Swipe(req, metadata=srv.md(), timeout=0.000001)
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    # A retry with the same id, with time to spare, applies it exactly once in all.
    srv.pos.Swipe(req, metadata=srv.md(), timeout=10)
    assert journal_seq(srv) == before + 1


def test_health_and_reflection(srv):
    h = health_pb2_grpc.HealthStub(srv.channel)
    for name in ("", "mms.v1.PosService", "mms.v1.AdminService"):
        assert h.Check(health_pb2.HealthCheckRequest(service=name)).status == \
            health_pb2.HealthCheckResponse.SERVING
    refl = reflection_pb2_grpc.ServerReflectionStub(srv.channel)
    resp = next(iter(refl.ServerReflectionInfo(iter([
        reflection_pb2.ServerReflectionRequest(list_services="")]))))
    names = {s.name for s in resp.list_services_response.service}
    assert {"mms.v1.PosService", "mms.v1.AdminService", "grpc.health.v1.Health"} <= names


def test_metrics_endpoint(srv):
    srv.pos.SwipeBatch(pos_pb2.SwipeBatchRequest(swipes=columns([CARDS[14]], [100])),
                       metadata=srv.md())
    base = f"http://127.0.0.1:{srv.server.metrics_port}"
    with urllib.request.urlopen(base + "/metrics", timeout=10) as f:
        text = f.read().decode()
    assert ('grpc_server_handled_total{grpc_code="OK",grpc_method="SwipeBatch",'
            'grpc_service="mms.v1.PosService",grpc_type="unary"}') in text
    assert ('grpc_server_handled_total{grpc_code="UNAUTHENTICATED",grpc_method="Swipe",'
            'grpc_service="mms.v1.PosService",grpc_type="unary"}') in text
    assert 'grpc_server_handling_seconds_bucket{' in text
    assert 'grpc_server_started_total{' in text
    assert 'mms_ops_total{op_type="swipe",result="OK"}' in text
    assert 'mms_ops_total{op_type="swipe",result="CARD_NOT_FOUND"}' in text
    for name in ("mms_batch_size_ops_bucket", "mms_commit_duration_seconds_bucket",
                 "mms_queue_ops", "mms_lmdb_map_used_bytes", "mms_lmdb_map_size_bytes",
                 "mms_journal_last_seq"):
        assert f"\n{name}" in text, name
    assert "\nmms_ready 1.0" in text
    # No card numbers as label values (sample values may contain any digits).
    labels = re.findall(r'\{([^}]*)\}', text)
    assert labels and not any(str(no) in label for label in labels for no in CARDS)
    for path, status in (("/livez", 200), ("/readyz", 200)):
        with urllib.request.urlopen(base + path, timeout=10) as f:
            assert f.status == status
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(base + "/nope", timeout=10)


def test_readyz_not_ready_after_stop(tmp_path):
    r = Running(str(tmp_path))
    port = r.server.metrics_port
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=10) as f:
        assert f.status == 200
    assert not np.isnan(port)
    r.close()
    assert not r.server.is_ready()


def test_ready_gauge_follows_readiness(tmp_path):
    from prometheus_client import generate_latest

    from core import Engine
    from server.rpc.metrics import Metrics

    ready = [False]
    with Engine(str(tmp_path / "d")) as eng:
        m = Metrics()
        m.bind(eng, None, lambda: ready[0])
        assert b"\nmms_ready 0.0" in generate_latest(m.registry)
        ready[0] = True
        assert b"\nmms_ready 1.0" in generate_latest(m.registry)


def test_unexpected_engine_error_is_internal(srv, monkeypatch):
    def broken(ops):
        raise RuntimeError("boom")

    monkeypatch.setattr(srv.engine, "submit", broken)
    expect(grpc.StatusCode.INTERNAL, "INTERNAL", srv.pos.SwipeBatch,
           pos_pb2.SwipeBatchRequest(swipes=columns([CARDS[0]], [1])), metadata=srv.md())
    expect(grpc.StatusCode.INTERNAL, "INTERNAL", srv.pos.Swipe,
           pos_pb2.SwipeRequest(client_id=os.urandom(16), card_no=CARDS[0], amount_fen=1),
           metadata=srv.md())


def test_engine_overloaded_is_resource_exhausted(srv, monkeypatch):
    from core import Overloaded

    def full(ops, *arrays):
        raise Overloaded("queue full")

    monkeypatch.setattr(srv.engine, "submit", full)
    expect(grpc.StatusCode.RESOURCE_EXHAUSTED, "ENGINE_OVERLOADED", srv.pos.SwipeBatch,
           pos_pb2.SwipeBatchRequest(swipes=columns([CARDS[0]], [1])), metadata=srv.md())
    expect(grpc.StatusCode.RESOURCE_EXHAUSTED, "ENGINE_OVERLOADED", srv.pos.Recharge,
           pos_pb2.RechargeRequest(client_id=os.urandom(16), card_no=CARDS[0], amount_fen=1),
           metadata=srv.md())


# --- registration ---------------------------------------------------------------------

class _RecordingServer:
    """What GuardedServer hands to grpc.aio: the generic handlers and any registered ones."""

    def __init__(self) -> None:
        self.generic: list = []
        self.registered: list = []

    def add_generic_rpc_handlers(self, handlers) -> None:
        self.generic.extend(handlers)

    def add_registered_method_handlers(self, service, handlers) -> None:
        self.registered.append(service)


class _Details:
    def __init__(self, method: str) -> None:
        self.method = method
        self.invocation_metadata = ()


def test_services_are_generic_handlers_only_and_every_method_resolves_through_the_guard():
    # grpc.aio waits on one request-call task per registered method for every call it
    # accepts; mms registers none, so its ~70 methods cost one task, not 70.
    from server.rpc.guard import GuardedServer, RequestGuard

    class Pos(pos_pb2_grpc.PosServiceServicer):
        async def Swipe(self, request, context):
            return pos_pb2.SwipeResponse()

    rec = _RecordingServer()
    guarded = GuardedServer(rec, RequestGuard(Metrics()))
    pos_pb2_grpc.add_PosServiceServicer_to_server(Pos(), guarded)
    admin_pb2_grpc.add_AdminServiceServicer_to_server(admin_pb2_grpc.AdminServiceServicer(),
                                                      guarded)
    assert rec.registered == []
    assert len(rec.generic) == 2
    for svc in (pos_pb2.DESCRIPTOR.services_by_name["PosService"],
                admin_pb2.DESCRIPTOR.services_by_name["AdminService"]):
        for m in svc.methods:
            name = f"/{svc.full_name}/{m.name}"
            found = [h for h in (g.service(_Details(name)) for g in rec.generic) if h is not None]
            assert len(found) == 1, name
    swipe = [h for h in (g.service(_Details("/mms.v1.PosService/Swipe")) for g in rec.generic)
             if h is not None][0]
    # An async handler is the guard's: it decodes the request itself (grpc hands it bytes).
    assert swipe.request_deserializer is None
    assert all(g.service(_Details("/mms.v1.PosService/NoSuchMethod")) is None for g in rec.generic)


def test_commit_metrics_count_uniform_and_mixed_batches_by_op_and_result():
    from core.engine.writer import CommitInfo
    from core.records import OpType

    m = Metrics()

    def info(op_types, codes):
        return CommitInfo(len(codes), len(codes), 1, 0.001, 0.002, np.array(codes, np.uint8),
                          np.array(op_types, np.uint8), 0, 0)

    m.on_commit(info([OpType.SWIPE] * 3, [Result.OK] * 3))
    m.on_commit(info([OpType.SWIPE, OpType.RECHARGE, OpType.SWIPE],
                     [Result.OK, Result.OK, Result.INSUFFICIENT_BALANCE]))
    got = {(s.labels["op_type"], s.labels["result"]): s.value
           for fam in m.registry.collect() for s in fam.samples if s.name == "mms_ops_total"}
    assert got == {("swipe", "OK"): 4, ("recharge", "OK"): 1,
                   ("swipe", "INSUFFICIENT_BALANCE"): 1}
