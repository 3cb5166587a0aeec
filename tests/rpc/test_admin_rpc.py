"""AdminService against the real server on loopback: operator sessions, RBAC on each
RPC, idempotent retries, bad input, and chain terminal tokens on the POS service."""

from __future__ import annotations

import asyncio
import threading
import urllib.request

import grpc
import pytest
from common import cid
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from prometheus_client.parser import text_string_to_metric_families

from core import Engine
from core.domain.chain import Chain, ChainConfig
from core.domain.members import MemberStore
from core.records import OP_NAMES, op_label
from server.mms_pb import admin_pb2, admin_pb2_grpc, pos_pb2, pos_pb2_grpc, types_pb2
from server.rpc.app import MmsServer
from server.rpc.auth import Registry
from server.rpc.metrics import Metrics

CHEAP = ChainConfig(scrypt_n=16, scrypt_r=1, scrypt_p=1)
BOOT = "boot-secret"
PW = "password-1"



class Env:
    def __init__(self, data: str, config: ChainConfig = CHEAP, *, clock=None,
                 metrics_listen: str | None = None, scheduler_tick_s: float = 0) -> None:
        self.metrics = Metrics()
        self.engine = Engine(data, clock=clock, observer=self.metrics)
        self.chain = Chain(self.engine, config)
        self.members = MemberStore(self.engine, key=bytes(32))
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = MmsServer(self.engine, Registry([]), self.metrics, chain=self.chain,
                                members=self.members, bootstrap_token=BOOT,
                                metrics_listen=metrics_listen,
                                # No scheduler loop by default: a test that wants the
                                # scheduler ticks it (server.scheduler.tick()).
                                scheduler_tick_s=scheduler_tick_s)
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(30)
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.server.port}")
        self.admin = admin_pb2_grpc.AdminServiceStub(self.channel)
        self.pos = pos_pb2_grpc.PosServiceStub(self.channel)
        self.sessions: dict[str, str] = {}

    def md(self, who: str):
        return (("authorization", f"Bearer {self.sessions[who]}"),)

    def call(self, who: str, method: str, req):
        return getattr(self.admin, method)(req, metadata=self.md(who), timeout=30)

    def login(self, who: str) -> None:
        r = self.admin.Login(admin_pb2.LoginRequest(login=who, password=PW), timeout=30)
        self.sessions[who] = r.session_token

    def close(self) -> None:
        self.channel.close()
        asyncio.run_coroutine_threadsafe(self.server.stop(1.0), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()
        self.engine.close()


def failure(fn, *args, **kw) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as ei:
        fn(*args, **kw)
    st = rpc_status.from_call(ei.value)
    info = error_details_pb2.ErrorInfo()
    assert st is not None and st.details[0].Unpack(info)
    return ei.value.code(), info.reason


def bootstrap(e: Env) -> None:
    """The chain, its root admin logged in."""
    md = (("authorization", f"Bearer {BOOT}"),)
    e.admin.Bootstrap(admin_pb2.BootstrapRequest(client_id=cid(), chain_name="Chain",
                                                 admin_login="root", admin_password=PW),
                      metadata=md, timeout=30)
    e.login("root")


def two_stores(e: Env) -> int:
    """Region North (its id is returned) with stores 11 and 12."""
    region = e.call("root", "CreateNode", admin_pb2.CreateNodeRequest(
        client_id=cid(), kind=admin_pb2.NODE_KIND_REGION, parent_id=1, name="North")).node
    for sid in (11, 12):
        e.call("root", "CreateNode", admin_pb2.CreateNodeRequest(
            client_id=cid(), kind=admin_pb2.NODE_KIND_STORE, parent_id=region.node_id,
            name=f"Store {sid}", node_id=sid))
    return region.node_id


def operators(e: Env, rows) -> None:
    """Create (login, role, home store) operators as root and log each in."""
    for login, role, store in rows:
        e.call("root", "CreateOperator", admin_pb2.CreateOperatorRequest(
            client_id=cid(), login=login, password=PW, role=role, home_store_id=store))
        e.login(login)


def store_staff_env(path: str, *, till: bool = False) -> Env:
    """Bootstrapped chain with stores 11/12, their managers, a cashier, customer service
    and marketing; with till, a terminal of store 11 whose metadata is env.till_md."""
    e = Env(path)
    bootstrap(e)
    two_stores(e)
    operators(e, (("mgr11", "store_manager", 11), ("mgr12", "store_manager", 12),
                  ("cash11", "cashier", 11), ("desk11", "customer_service", 11),
                  ("mkt", "marketing", 0)))
    if till:
        node = e.call("mgr11", "CreateNode", admin_pb2.CreateNodeRequest(
            client_id=cid(), kind=admin_pb2.NODE_KIND_TERMINAL, parent_id=11, name="till")).node
        tok = e.call("mgr11", "IssueTerminalToken", admin_pb2.IssueTerminalTokenRequest(
            client_id=cid(), terminal_id=node.node_id)).token
        e.till_md = (("authorization", f"Bearer {tok}"),)
    return e


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    e = store_staff_env(str(tmp_path_factory.mktemp("admin")))
    operators(e, (("aud", "auditor", 0),))
    yield e
    e.close()


def add_member(env, who: str, name: str, phone: str, store: int = 0) -> int:
    return env.call(who, "CreateMember", admin_pb2.CreateMemberRequest(
        client_id=cid(), profile=admin_pb2.MemberProfile(name=name, phone=phone,
                                                          home_store_id=store))).member_id


def test_no_session_is_unauthenticated(env):
    assert failure(env.admin.SearchMembers, admin_pb2.SearchMembersRequest())[0] == \
        grpc.StatusCode.UNAUTHENTICATED
    code, reason = failure(env.admin.SearchMembers, admin_pb2.SearchMembersRequest(),
                           metadata=(("authorization", "Bearer nope"),))
    assert (code, reason) == (grpc.StatusCode.UNAUTHENTICATED, "SESSION_INVALID")
    code, reason = failure(env.admin.Login, admin_pb2.LoginRequest(login="root", password="wrong-pw"))
    assert (code, reason) == (grpc.StatusCode.UNAUTHENTICATED, "LOGIN_FAILED")


def test_bootstrap_needs_token_and_happens_once(env):
    req = admin_pb2.BootstrapRequest(client_id=cid(), chain_name="X", admin_login="x",
                                     admin_password=PW)
    assert failure(env.admin.Bootstrap, req)[1] == "BOOTSTRAP_TOKEN_INVALID"
    code, reason = failure(env.admin.Bootstrap, req, metadata=(("authorization", f"Bearer {BOOT}"),))
    assert (code, reason) == (grpc.StatusCode.ALREADY_EXISTS, "ALREADY_BOOTSTRAPPED")


def test_cashier_cannot_create_operators(env):
    code, reason = failure(env.call, "cash11", "CreateOperator", admin_pb2.CreateOperatorRequest(
        client_id=cid(), login="evil", password=PW, role="cashier", home_store_id=11))
    assert (code, reason) == (grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_NOT_GRANTED")
    # A manager may staff a cashier in their own store only, and never a manager.
    env.call("mgr11", "CreateOperator", admin_pb2.CreateOperatorRequest(
        client_id=cid(), login="cash11b", password=PW, role="cashier", home_store_id=11))
    assert failure(env.call, "mgr11", "CreateOperator", admin_pb2.CreateOperatorRequest(
        client_id=cid(), login="c12", password=PW, role="cashier", home_store_id=12))[1] == "OTHER_STORE"
    assert failure(env.call, "mgr11", "CreateOperator", admin_pb2.CreateOperatorRequest(
        client_id=cid(), login="m2", password=PW, role="store_manager", home_store_id=11))[1] \
        == "ROLE_NOT_GRANTABLE"


def test_store_manager_sees_only_own_store(env):
    mid12 = add_member(env, "mgr12", "Other Store", "13900000012")
    mid11 = add_member(env, "cash11", "Own Store", "13900000011")
    assert env.call("mgr11", "GetMember", admin_pb2.GetMemberRequest(member_id=mid11)).member.profile.home_store_id == 11
    code, reason = failure(env.call, "mgr11", "GetMember", admin_pb2.GetMemberRequest(member_id=mid12))
    assert (code, reason) == (grpc.StatusCode.PERMISSION_DENIED, "OTHER_STORE")
    # Search is limited to the own store whatever the request says.
    found = env.call("mgr11", "SearchMembers", admin_pb2.SearchMembersRequest(limit=1000))
    assert {m.profile.home_store_id for m in found.members} == {11}
    assert failure(env.call, "mgr11", "SearchMembers",
                   admin_pb2.SearchMembersRequest(store_id=12))[1] == "OTHER_STORE"
    # A phone of another store's member is not found, not refused.
    code, _ = failure(env.call, "mgr11", "FindMemberByPhone",
                      admin_pb2.FindMemberByPhoneRequest(phone="13900000012"))
    assert code == grpc.StatusCode.NOT_FOUND
    assert failure(env.call, "mgr11", "SetMemberStatus", admin_pb2.SetMemberStatusRequest(
        client_id=cid(), member_id=mid12, status=admin_pb2.MEMBER_STATUS_FROZEN))[1] == "OTHER_STORE"
    assert env.call("mgr12", "GetMember", admin_pb2.GetMemberRequest(member_id=mid12)).member.status \
        == admin_pb2.MEMBER_STATUS_ACTIVE


def test_auditor_reads_only(env):
    mid = add_member(env, "cash11", "Audited", "13900000099")
    assert env.call("aud", "GetMember", admin_pb2.GetMemberRequest(member_id=mid)).member.member_id == mid
    assert env.call("aud", "SearchMembers", admin_pb2.SearchMembersRequest()).total >= 1
    assert env.call("aud", "AuditLog", admin_pb2.AuditLogRequest(limit=5)).events
    for method, req in (
            ("CreateMember", admin_pb2.CreateMemberRequest(client_id=cid(), profile=admin_pb2.MemberProfile(name="x"))),
            ("SetMemberStatus", admin_pb2.SetMemberStatusRequest(client_id=cid(), member_id=mid, status=2)),
            ("IssueCards", admin_pb2.IssueCardsRequest(client_id=cid(), card_nos=[1])),
            ("SetRules", admin_pb2.SetRulesRequest(client_id=cid(), rules_json="{}")),
            ("ExpirePoints", admin_pb2.ExpirePointsRequest(client_id=cid())),
            ("CreateOperator", admin_pb2.CreateOperatorRequest(client_id=cid(), login="a2", password=PW, role="auditor")),
            ("ExportMembers", admin_pb2.ExportMembersRequest())):
        call = (lambda m=method, r=req: list(env.call("aud", m, r))) if method == "ExportMembers" \
            else (lambda m=method, r=req: env.call("aud", m, r))
        code, reason = failure(call)
        assert (code, reason) == (grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_NOT_GRANTED"), method
    assert env.call("aud", "GetMember", admin_pb2.GetMemberRequest(member_id=mid)).member.status == 1


def test_reveal_is_granted_by_role_and_audited(env):
    mid = add_member(env, "cash11", "Reveal Me", "13812345678")
    masked = env.call("desk11", "GetMember", admin_pb2.GetMemberRequest(member_id=mid)).member
    assert masked.profile.phone == "138****5678"
    assert failure(env.call, "cash11", "GetMember",
                   admin_pb2.GetMemberRequest(member_id=mid, reveal=True))[1] == "REVEAL_NOT_GRANTED"
    full = env.call("desk11", "GetMember", admin_pb2.GetMemberRequest(member_id=mid, reveal=True))
    assert full.member.profile.phone == "13812345678"
    events = env.call("mgr11", "AuditLog", admin_pb2.AuditLogRequest(limit=1000)).events
    assert any(e.op == "MEMBER_REVEAL" and f'"member_id": {mid}' in e.detail_json for e in events)
    assert {e.store_id for e in events} == {11}


def test_member_idempotent_retry_and_bad_input(env):
    req = admin_pb2.CreateMemberRequest(client_id=cid(), profile=admin_pb2.MemberProfile(
        name="Retry", phone="13700000001"))
    r1 = env.call("cash11", "CreateMember", req)
    r2 = env.call("cash11", "CreateMember", req)
    assert r1.member_id == r2.member_id and not r1.outcome.replayed and r2.outcome.replayed
    before = env.call("aud", "SearchMembers", admin_pb2.SearchMembersRequest()).total
    code, reason = failure(env.call, "cash11", "CreateMember", admin_pb2.CreateMemberRequest(
        client_id=cid(), profile=admin_pb2.MemberProfile(name="Dup", phone="13700000001")))
    assert (code, reason) == (grpc.StatusCode.ALREADY_EXISTS, "MEMBER_PHONE_TAKEN")
    code, reason = failure(env.call, "cash11", "CreateMember", admin_pb2.CreateMemberRequest(
        client_id=cid(), profile=admin_pb2.MemberProfile(name="", phone="1")))
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "MEMBER_INVALID")
    assert failure(env.call, "cash11", "CreateMember", admin_pb2.CreateMemberRequest(
        client_id=b"short", profile=admin_pb2.MemberProfile(name="A")))[1] == "RESULT_CLIENT_ID_INVALID"
    assert failure(env.call, "cash11", "CreateMember", admin_pb2.CreateMemberRequest(
        client_id=bytes(16), profile=admin_pb2.MemberProfile(name="A")))[1] == "RESULT_CLIENT_ID_INVALID"
    assert env.call("aud", "SearchMembers", admin_pb2.SearchMembersRequest()).total == before
    upd = admin_pb2.UpdateMemberRequest(client_id=cid(), member_id=r1.member_id,
                                        profile=admin_pb2.MemberProfile(address="Road 1"),
                                        fields=["address"])
    u1, u2 = env.call("cash11", "UpdateMember", upd), env.call("cash11", "UpdateMember", upd)
    assert u1.version == 2 and list(u1.changed) == ["address"] and u2.outcome.replayed
    assert failure(env.call, "cash11", "UpdateMember", admin_pb2.UpdateMemberRequest(
        client_id=cid(), member_id=r1.member_id, fields=["nope"]))[1] == "MEMBER_INVALID"
    assert failure(env.call, "cash11", "GetMember",
                   admin_pb2.GetMemberRequest(member_id=10**9))[0] == grpc.StatusCode.NOT_FOUND


def test_cards_pin_journal_and_chain_terminal(env):
    mid = add_member(env, "cash11", "Card Holder", "13600000001")
    issue = admin_pb2.IssueCardsRequest(client_id=cid(), card_nos=[7001], member_ids=[mid])
    r1, r2 = env.call("cash11", "IssueCards", issue), env.call("cash11", "IssueCards", issue)
    assert r1.code == types_pb2.RESULT_OK and r2.replayed
    # A cashier may not freeze; the desk may.
    assert failure(env.call, "cash11", "SetCardStatus", admin_pb2.SetCardStatusRequest(
        client_id=cid(), card_no=7001, status=types_pb2.CARD_STATUS_FROZEN))[1] == "PERMISSION_NOT_GRANTED"
    assert failure(env.call, "mgr12", "SetCardStatus", admin_pb2.SetCardStatusRequest(
        client_id=cid(), card_no=7001, status=types_pb2.CARD_STATUS_FROZEN))[1] == "OTHER_STORE"
    env.call("cash11", "SetPin", admin_pb2.SetPinRequest(client_id=cid(), card_no=7001, pin="1234"))
    # Changing an existing PIN is the desk's work.
    assert failure(env.call, "cash11", "SetPin", admin_pb2.SetPinRequest(
        client_id=cid(), card_no=7001, pin="5678"))[1] == "PERMISSION_NOT_GRANTED"
    assert failure(env.call, "desk11", "SetPin", admin_pb2.SetPinRequest(
        client_id=cid(), card_no=7001, pin="12"))[1] == "PIN_INVALID"
    env.call("desk11", "ResetPin", admin_pb2.ResetPinRequest(client_id=cid(), card_no=7001))
    # A till of store 11 with a chain token recharges; its token is revoked after.
    till = env.call("mgr11", "CreateNode", admin_pb2.CreateNodeRequest(
        client_id=cid(), kind=admin_pb2.NODE_KIND_TERMINAL, parent_id=11, name="till")).node
    tok = env.call("mgr11", "IssueTerminalToken", admin_pb2.IssueTerminalTokenRequest(
        client_id=cid(), terminal_id=till.node_id)).token
    pos_md = (("authorization", f"Bearer {tok}"),)
    rr = env.pos.Recharge(pos_pb2.RechargeRequest(client_id=cid(), card_no=7001, amount_fen=5000),
                          metadata=pos_md, timeout=30)
    assert rr.result.principal_fen == 5000
    journal = env.call("mgr11", "GetCardJournal", admin_pb2.GetCardJournalRequest(card_no=7001))
    assert [e.op for e in journal.entries][:1] == ["RECHARGE"]
    assert journal.entries[0].store_id == 11 and journal.entries[0].terminal_id == till.node_id
    assert failure(env.call, "mgr12", "RevokeTerminalToken", admin_pb2.RevokeTerminalTokenRequest(
        client_id=cid(), terminal_id=till.node_id))[1] == "OTHER_STORE"
    env.call("mgr11", "RevokeTerminalToken", admin_pb2.RevokeTerminalTokenRequest(
        client_id=cid(), terminal_id=till.node_id))
    with pytest.raises(grpc.RpcError) as ei:
        env.pos.GetCard(pos_pb2.GetCardRequest(card_no=7001), metadata=pos_md, timeout=30)
    assert ei.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_rules_and_points_runs(env):
    rules = env.call("cash11", "GetRules", admin_pb2.GetRulesRequest())
    assert failure(env.call, "mgr11", "SetRules", admin_pb2.SetRulesRequest(
        client_id=cid(), rules_json="{}"))[1] == "PERMISSION_NOT_GRANTED"
    assert failure(env.call, "mkt", "SetRules", admin_pb2.SetRulesRequest(
        client_id=cid(), rules_json="[1"))[1] == "RULES_INVALID"
    req = admin_pb2.SetRulesRequest(client_id=cid(), rules_json=rules.rules_json)
    s1, s2 = env.call("mkt", "SetRules", req), env.call("mkt", "SetRules", req)
    assert s1.version == rules.version + 1 and s2.outcome.replayed
    e = env.call("mkt", "ExpirePoints", admin_pb2.ExpirePointsRequest(client_id=cid()))
    assert e.expired_points == 0
    assert env.call("root", "RemindExpiringPoints",
                    admin_pb2.RemindExpiringPointsRequest(client_id=cid())).notices == 0
    assert failure(env.call, "cash11", "ExpirePoints",
                   admin_pb2.ExpirePointsRequest(client_id=cid()))[1] == "PERMISSION_NOT_GRANTED"


def test_disable_ends_sessions(env):
    env.call("root", "CreateOperator", admin_pb2.CreateOperatorRequest(
        client_id=cid(), login="temp", password=PW, role="auditor"))
    env.login("temp")
    oid = env.chain.operator_by_login("temp").operator_id
    env.call("root", "DisableOperator", admin_pb2.DisableOperatorRequest(client_id=cid(), operator_id=oid))
    assert failure(env.call, "temp", "AuditLog", admin_pb2.AuditLogRequest())[1] == "SESSION_INVALID"


def test_hq_admin_imports_members_and_issues_cards_for_the_whole_chain(env):
    """The chain role admin holds member.write and card.issue for every store (issue 8):
    HQ imports a file naming two stores and issues cards to both; it still moves no
    money, and a store role's rows for another store are refused per row."""
    text = ("name,phone,home_store_id\nHQ Eleven,13600000011,11\n"
            "HQ Twelve,13600000012,12\n").encode()

    def upload(who: str, data: bytes):
        msgs = [admin_pb2.ImportMembersRequest(file_name="hq.csv", chunk=data)]
        return env.admin.ImportMembers(iter(msgs), metadata=env.md(who), timeout=30)

    r = upload("root", text)
    assert (r.rows, r.created, r.errors) == (2, 2, 0)
    found = {m.profile.home_store_id: m.member_id for m in env.call(
        "root", "SearchMembers", admin_pb2.SearchMembersRequest(name="HQ", limit=10)).members}
    assert set(found) == {11, 12}
    issued = env.call("root", "IssueCards", admin_pb2.IssueCardsRequest(
        client_id=cid(), card_nos=[77011, 77012], member_ids=[found[11], found[12]]))
    assert issued.code == types_pb2.RESULT_OK
    assert env.engine.card(77012)["member_id"] == found[12]
    # No money: the admin adjusts no points (and has no till).
    assert failure(env.call, "root", "AdjustPoints", admin_pb2.AdjustPointsRequest(
        client_id=cid(), card_no=77011, delta=10, reason="x"))[1] == "PERMISSION_NOT_GRANTED"
    # Store roles keep their store: a cashier's file naming store 12 is refused per row.
    mixed = upload("cash11", "name,phone,home_store_id\nC Twelve,13600000112,12\n".encode())
    assert (mixed.created, mixed.errors) == (0, 1)
    assert failure(env.call, "cash11", "IssueCards", admin_pb2.IssueCardsRequest(
        client_id=cid(), card_nos=[77013], member_ids=[found[12]]))[1] == "OTHER_STORE"


def test_set_rules_changes_the_fields_it_names(env):
    """SetRules replaces each field it names whole and keeps the others, as admin.proto
    and docs/api.md say (they said it replaced the rules)."""
    import json as _json

    from common import ROOT as root
    proto = (root / "proto" / "mms" / "v1" / "admin.proto").read_text()
    assert "SetRules replaces the rules" not in proto
    assert "a field not given keeps its value" in proto
    api = " ".join((root / "docs" / "api.md").read_text().split())
    assert "the fields it does not name keep their values" in api

    def rules():
        return _json.loads(env.call("mkt", "GetRules", admin_pb2.GetRulesRequest()).rules_json)

    def put(doc: dict):
        return env.call("mkt", "SetRules", admin_pb2.SetRulesRequest(
            client_id=cid(), rules_json=_json.dumps(doc)))

    original = rules()
    put({"levels": [{"name": "regular"}, {"name": "silver", "discount_bp": 9_800,
                                          "up_points": 10_000}],
         "tiers": [{"min_pay_fen": 10_000, "bonus_fen": 1_000}]})
    before = rules()
    r = put({"rounding": "floor", "tiers": [{"min_pay_fen": 50_000, "bonus_fen": 8_000}]})
    after = rules()
    assert after["rounding"] == "floor" and after["version"] == r.version
    assert after["tiers"] == [{**before["tiers"][0], "min_pay_fen": 50_000, "bonus_fen": 8_000}]
    assert after["levels"] == before["levels"], "a field not named keeps its value"
    unchanged = {k: v for k, v in after.items() if k not in ("rounding", "tiers", "version")}
    assert unchanged == {k: v for k, v in before.items() if k not in ("rounding", "tiers",
                                                                      "version")}
    put({"tiers": []})
    assert rules()["tiers"] == [] and rules()["levels"] == before["levels"]
    for bad in ({"no_such_rule": 1}, {"rounding": "sideways"}):
        code, reason = failure(put, bad)
        assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "RULES_INVALID")
    assert rules()["rounding"] == "floor"
    put({k: v for k, v in original.items() if k != "version"})
    assert {k: v for k, v in rules().items() if k != "version"} == \
        {k: v for k, v in original.items() if k != "version"}


def test_metrics_label_every_admin_op_by_its_name(tmp_path):
    """mms_ops_total's op_type label is the op's name from the one op table (lower
    case) for the domains' ops too (chain, members, the audited reveal), never a number."""
    e = Env(str(tmp_path), metrics_listen="127.0.0.1:0")
    try:
        bootstrap(e)
        region = e.call("root", "CreateNode", admin_pb2.CreateNodeRequest(
            client_id=cid(), kind=admin_pb2.NODE_KIND_REGION, parent_id=1, name="R")).node
        e.call("root", "CreateNode", admin_pb2.CreateNodeRequest(
            client_id=cid(), kind=admin_pb2.NODE_KIND_STORE, parent_id=region.node_id,
            name="S", node_id=21))
        mid = add_member(e, "root", "Label Me", "13912345678", store=21)
        e.call("root", "GetMember", admin_pb2.GetMemberRequest(member_id=mid, reveal=False))
        e.call("root", "CreateOperator", admin_pb2.CreateOperatorRequest(
            client_id=cid(), login="desk21", password=PW, role="customer_service",
            home_store_id=21))
        e.login("desk21")
        e.call("desk21", "GetMember", admin_pb2.GetMemberRequest(member_id=mid, reveal=True))
        with urllib.request.urlopen(f"http://127.0.0.1:{e.server.metrics_port}/metrics",
                                    timeout=10) as f:
            text = f.read().decode()
    finally:
        e.close()
    ops = {s.labels["op_type"] for fam in text_string_to_metric_families(text)
           for s in fam.samples if s.name == "mms_ops_total"}
    assert {"bootstrap", "login", "node_create", "member_create", "operator_create",
            "member_reveal"} <= ops
    assert ops <= {op_label(c) for c in OP_NAMES} and not any(o.isdigit() for o in ops)
