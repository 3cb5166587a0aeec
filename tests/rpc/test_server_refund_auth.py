"""Who may refund at a till (issue 8): through the real server on loopback, a refund
needs the session of an operator who holds `refund` at the till's store, and a sale of
another store is refunded only when the chain allows it. The refund is journalled as
the authorizing operator's."""

from __future__ import annotations

import grpc
import pytest
from test_admin_rpc import CHEAP, Env, bootstrap, cid, failure, operators, two_stores

from core.domain.chain import ChainConfig
from core.records import OpType
from server.mms_pb import admin_pb2, pos_pb2

CARD = 66001


def chain_env(path, config: ChainConfig) -> Env:
    """A chain with stores 11 and 12, a till in each, their managers, a cashier of 11
    and a card funded and swiped at store 11."""
    e = Env(str(path), config)
    bootstrap(e)
    two_stores(e)
    e.tills = {}
    for sid in (11, 12):
        till = e.call("root", "CreateNode", admin_pb2.CreateNodeRequest(
            client_id=cid(), kind=admin_pb2.NODE_KIND_TERMINAL, parent_id=sid,
            name=f"till {sid}")).node
        e.tills[sid] = e.call("root", "IssueTerminalToken", admin_pb2.IssueTerminalTokenRequest(
            client_id=cid(), terminal_id=till.node_id)).token
    operators(e, (("mgr11", "store_manager", 11), ("mgr12", "store_manager", 12),
                  ("cash11", "cashier", 11)))
    e.call("root", "IssueCards", admin_pb2.IssueCardsRequest(client_id=cid(), card_nos=[CARD]))
    e.pos.Recharge(pos_pb2.RechargeRequest(client_id=cid(), card_no=CARD, amount_fen=50_000),
                   metadata=till_md(e, 11), timeout=30)
    return e


def till_md(env: Env, store: int):
    return (("authorization", f"Bearer {env.tills[store]}"),)


def swipe(env: Env, store: int, amount: int = 1_000) -> bytes:
    sid = cid()
    env.pos.Swipe(pos_pb2.SwipeRequest(client_id=sid, card_no=CARD, amount_fen=amount),
                  metadata=till_md(env, store), timeout=30)
    return sid


def refund(env: Env, store: int, swipe_id: bytes, who: str | None = None, **kw):
    req = pos_pb2.RefundRequest(client_id=cid(), card_no=CARD, swipe_client_id=swipe_id,
                                amount_fen=kw.pop("amount_fen", 1_000),
                                operator_session=env.sessions[who] if who else "", **kw)
    return env.pos.Refund(req, metadata=till_md(env, store), timeout=30)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    e = chain_env(tmp_path_factory.mktemp("refund-auth"), CHEAP)
    yield e
    e.close()


def test_a_refund_needs_a_manager_of_the_till_store(env):
    sale = swipe(env, 11)
    before = env.engine.card(CARD)
    seq = env.engine.stats()["last_seq"]
    refused = [
        (None, {}, grpc.StatusCode.PERMISSION_DENIED, "OPERATOR_REQUIRED"),
        ("cash11", {}, grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_NOT_GRANTED"),
        ("mgr12", {}, grpc.StatusCode.PERMISSION_DENIED, "OTHER_STORE"),
        ("mgr11", {"operator_id": 999}, grpc.StatusCode.PERMISSION_DENIED, "OPERATOR_MISMATCH"),
    ]
    for who, kw, code, reason in refused:
        assert failure(refund, env, 11, sale, who, **kw) == (code, reason), who
    bogus = pos_pb2.RefundRequest(client_id=cid(), card_no=CARD, swipe_client_id=sale,
                                  amount_fen=1_000, operator_session="not-a-session")
    assert failure(env.pos.Refund, bogus, metadata=till_md(env, 11), timeout=30) == \
        (grpc.StatusCode.UNAUTHENTICATED, "SESSION_INVALID")
    assert env.engine.card(CARD) == before and env.engine.stats()["last_seq"] == seq, \
        "a refused refund changes nothing"
    ok = refund(env, 11, sale, "mgr11", amount_fen=950).result
    assert ok.principal_delta_fen == 950
    assert env.engine.card(CARD)["principal_fen"] == before["principal_fen"] + 950
    rec = env.engine.journal_record(ok.seq)
    mgr11 = env.chain.operator_by_login("mgr11").operator_id
    assert int(rec["op_type"]) == OpType.REFUND and int(rec["operator_id"]) == mgr11
    assert int(rec["store_id"]) == 11


def test_another_store_sale_is_refused_unless_the_chain_allows_it(env):
    sale = swipe(env, 11)
    before = env.engine.card(CARD)
    # The manager of store 12 at store 12's till: allowed there, but the sale is 11's.
    assert failure(refund, env, 12, sale, "mgr12", amount_fen=950) == \
        (grpc.StatusCode.PERMISSION_DENIED, "REFUND_OTHER_STORE")
    assert env.engine.card(CARD) == before
    assert refund(env, 11, sale, "mgr11", amount_fen=950).result.principal_delta_fen == 950


def test_the_chain_policy_cross_store_and_till_alone(tmp_path):
    e = chain_env(tmp_path / "cross", ChainConfig(scrypt_n=16, scrypt_r=1, scrypt_p=1,
                                                  cross_store_refunds=True))
    try:
        sale = swipe(e, 11)
        r = refund(e, 12, sale, "mgr12", amount_fen=950).result
        rec = e.engine.journal_record(r.seq)
        assert (int(rec["store_id"]), int(rec["operator_id"])) == \
            (12, e.chain.operator_by_login("mgr12").operator_id)
        assert failure(refund, e, 12, swipe(e, 11), None) == \
            (grpc.StatusCode.PERMISSION_DENIED, "OPERATOR_REQUIRED"), "still a manager's act"
    finally:
        e.close()
    e = chain_env(tmp_path / "till", ChainConfig(scrypt_n=16, scrypt_r=1, scrypt_p=1,
                                                 refund_auth="terminal"))
    try:
        sale = swipe(e, 11)
        r = refund(e, 11, sale, None, operator_id=42, amount_fen=500).result
        assert int(e.engine.journal_record(r.seq)["operator_id"]) == 42
        assert failure(refund, e, 12, swipe(e, 11), None, amount_fen=500) == \
            (grpc.StatusCode.PERMISSION_DENIED, "REFUND_OTHER_STORE")
    finally:
        e.close()


def test_refund_policy_is_validated():
    with pytest.raises(ValueError):
        ChainConfig(refund_auth="anyone").validate()
