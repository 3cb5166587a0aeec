"""The back office's reads and desk work against the real server on loopback: GetMember's
member view (会员360: card views with type, level, lots and their expiry, replacements,
supplementary cards; coupons; a paged journal; level history), ShowCard's view,
RechargeCard attributed to the session's operator, ListOperators with its total and
scope, and the totals and cursors of AuditLog and GetCardJournal."""

from __future__ import annotations

import grpc
import pytest
from test_admin_rpc import add_member, cid, failure, store_staff_env

from server.mms_pb import admin_pb2, pos_pb2


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    e = store_staff_env(str(tmp_path_factory.mktemp("admin_backoffice")), till=True)
    yield e
    e.close()


def op_id(env, login: str) -> int:
    return env.chain.operator_by_login(login).operator_id


def recharge(env, who: str, card_no: int, fen: int, client_id: bytes | None = None):
    return env.call(who, "RechargeCard", admin_pb2.RechargeCardRequest(
        client_id=client_id or cid(), card_no=card_no, amount_fen=fen))


def test_recharge_card_is_the_sessions_operator_at_their_store(env):
    mid = add_member(env, "cash11", "Desk Payer", "13500000001", store=11)
    env.call("cash11", "IssueCards", admin_pb2.IssueCardsRequest(
        client_id=cid(), card_nos=[8001], member_ids=[mid]))
    again = cid()
    r = recharge(env, "cash11", 8001, 10_000, again)
    assert (r.result.principal_fen, r.operator_id, r.store_id) == (10_000, op_id(env, "cash11"), 11)
    assert not r.result.replayed
    # A retry with the same client id applies nothing twice.
    r2 = recharge(env, "cash11", 8001, 10_000, again)
    assert r2.result.replayed and r2.result.principal_fen == 10_000
    j = env.call("cash11", "GetCardJournal", admin_pb2.GetCardJournalRequest(card_no=8001))
    rec = [e for e in j.entries if e.op == "RECHARGE"]
    assert len(rec) == 1 and (rec[0].operator_id, rec[0].store_id, rec[0].amount_fen) == \
        (op_id(env, "cash11"), 11, 10_000)
    assert j.total == len(j.entries) == 2  # ISSUE and RECHARGE
    # The admin and the service desk move no money; nothing about the card is told them.
    assert failure(recharge, env, "root", 8001, 100)[1] == "PERMISSION_NOT_GRANTED"
    assert failure(recharge, env, "desk11", 8001, 100)[1] == "PERMISSION_NOT_GRANTED"
    assert failure(recharge, env, "cash11", 8001, 0) == (grpc.StatusCode.INVALID_ARGUMENT,
                                                         "RESULT_AMOUNT_NOT_POSITIVE")
    assert failure(recharge, env, "cash11", 8999, 100)[1] == "RESULT_CARD_NOT_FOUND"
    assert failure(env.admin.RechargeCard, admin_pb2.RechargeCardRequest(
        client_id=cid(), card_no=8001, amount_fen=1))[0] == grpc.StatusCode.UNAUTHENTICATED
    assert env.engine.card(8001)["principal_fen"] == 10_000


def test_get_member_is_the_whole_view(env):
    mid = env.call("cash11", "CreateMember", admin_pb2.CreateMemberRequest(
        client_id=cid(), profile=admin_pb2.MemberProfile(
            name="Whole View", phone="13500000002", home_store_id=11, tags=["vip"]))).member_id
    env.call("cash11", "IssueCards", admin_pb2.IssueCardsRequest(
        client_id=cid(), card_nos=[8101], member_ids=[mid]))
    recharge(env, "cash11", 8101, 50_000)
    sw = env.pos.Swipe(pos_pb2.SwipeRequest(client_id=cid(), card_no=8101, amount_fen=12_345),
                       metadata=env.till_md, timeout=30)
    earned = sw.result.points
    assert earned > 0
    env.call("root", "PutCardType", admin_pb2.PutCardTypeRequest(
        client_id=cid(), card_type=admin_pb2.CardType(type_id=81, name="Family", kind=5)))
    env.call("cash11", "IssueCards", admin_pb2.IssueCardsRequest(
        client_id=cid(), card_nos=[8102], member_ids=[mid], type_id=81,
        primary_card_no=8101, supp_limit_fen=5_000))
    env.call("mkt", "PutCouponTemplate", admin_pb2.PutCouponTemplateRequest(
        client_id=cid(), template=admin_pb2.CouponTemplate(
            template_id=81, name="Five off", kind="fixed", value_fen=500, valid_days=30)))
    coupon = env.call("mkt", "IssueCoupons", admin_pb2.IssueCouponsRequest(
        client_id=cid(), template_id=81, card_nos=[8101])).coupon_ids[0]
    env.call("desk11", "SetLevel", admin_pb2.SetLevelRequest(
        client_id=cid(), card_no=8101, level=1, reason="goodwill",
        approver_id=op_id(env, "mgr11")))
    env.call("desk11", "ReplaceCard", admin_pb2.ReplaceCardRequest(
        client_id=cid(), old_card_no=8101, new_card_no=8103))
    r = env.call("cash11", "GetMember", admin_pb2.GetMemberRequest(member_id=mid))
    assert r.member.profile.phone == "135****0002" and list(r.member.profile.tags) == ["vip"]
    views = {v.card.card_no: v for v in r.card_views}
    assert [c.card_no for c in r.cards] == [v.card.card_no for v in r.card_views]
    assert set(views) == {8101, 8102, 8103}
    old, supp, new = views[8101], views[8102], views[8103]
    assert (old.status_name, old.replaced_by_card_no) == ("cancelled", 8103)
    assert list(new.replaced_card_nos) == [8101] and new.replaced_by_card_no == 0
    assert list(new.supplementary_card_nos) == [8102]
    assert (supp.type_name, supp.type_kind, supp.card.supp_limit_fen) == ("Family",
                                                                         "supplementary", 5_000)
    assert (new.card.level, new.level_name) == (1, "silver")
    assert new.card.principal_fen + new.card.bonus_fen == 50_000 - 12_345 - 1_000  # fee 10 yuan
    # The points sit in lots by year, each with the day it is last valid.
    assert sum(lot.points for lot in new.lots) + new.permanent_points == new.card.points == earned
    assert all(lot.valid_until == f"{lot.year + 1}-12-31" and lot.expires_at_s > 0
               for lot in new.lots)
    assert new.issued_at_s > 0 and new.card.expires_at_s > new.issued_at_s
    assert [(c.coupon_id, no) for c, no in zip(r.coupons, r.coupon_card_nos, strict=True)] == \
        [(coupon, 8103)]
    assert any(h.op == "LEVEL_MANUAL" and h.level_after == 1 and h.reason == "goodwill"
               for h in r.level_history)
    # The journal: newest first, every record once, across the replacement.
    seqs = [e.seq for e in r.journal]
    assert seqs == sorted(seqs, reverse=True) and len(set(seqs)) == len(seqs)
    ops = [e.op for e in r.journal]
    assert "RECHARGE" in ops and "SWIPE" in ops and "REPLACE" in ops
    # Paged: two records at a time give the same records as one page.
    page, got = admin_pb2.GetMemberRequest(member_id=mid, journal_limit=2), []
    while True:
        p = env.call("cash11", "GetMember", page)
        assert len(p.journal) <= 2
        got += [e.seq for e in p.journal]
        if not p.journal_next_before_seq:
            break
        page.journal_before_seq = p.journal_next_before_seq
    full = env.call("cash11", "GetMember", admin_pb2.GetMemberRequest(
        member_id=mid, journal_limit=1000))
    assert got == [e.seq for e in full.journal] and len(got) > 2
    assert failure(env.call, "cash11", "GetMember", admin_pb2.GetMemberRequest(
        member_id=mid, journal_limit=1001))[1] == "LIMIT_INVALID"
    # ShowCard carries the same view.
    shown = env.call("cash11", "ShowCard", admin_pb2.ShowCardRequest(card_no=8101))
    assert shown.view.replaced_by_card_no == 8103 and shown.view.status_name == "cancelled"
    # Another store's manager sees nothing of it.
    assert failure(env.call, "mgr12", "GetMember",
                   admin_pb2.GetMemberRequest(member_id=mid))[1] == "OTHER_STORE"


def test_list_operators_pages_with_the_total_and_keeps_to_the_store(env):
    everyone = env.call("root", "ListOperators", admin_pb2.ListOperatorsRequest())
    assert everyone.total == 6 == len(everyone.operators)
    assert [o.login for o in everyone.operators][:2] == ["root", "mgr11"]
    pages, offset = [], 0
    while offset < everyone.total:
        p = env.call("root", "ListOperators", admin_pb2.ListOperatorsRequest(limit=4,
                                                                            offset=offset))
        assert p.total == 6
        pages += [o.operator_id for o in p.operators]
        offset += len(p.operators)
    assert pages == [o.operator_id for o in everyone.operators]
    own = env.call("mgr11", "ListOperators", admin_pb2.ListOperatorsRequest())
    assert {o.login for o in own.operators} == {"mgr11", "cash11", "desk11"} and own.total == 3
    assert failure(env.call, "mgr11", "ListOperators",
                   admin_pb2.ListOperatorsRequest(store_id=12))[1] == "OTHER_STORE"
    assert failure(env.call, "cash11", "ListOperators",
                   admin_pb2.ListOperatorsRequest())[1] == "PERMISSION_NOT_GRANTED"
    assert failure(env.call, "root", "ListOperators",
                   admin_pb2.ListOperatorsRequest(limit=1001))[1] == "LIMIT_INVALID"


def test_audit_log_pages_carry_the_total_and_the_cursor(env):
    first = env.call("root", "AuditLog", admin_pb2.AuditLogRequest(limit=3))
    assert first.total > 3 and len(first.events) == 3
    assert first.next_since_seq == first.events[-1].seq
    seen, req = [], admin_pb2.AuditLogRequest(limit=3)
    while True:
        p = env.call("root", "AuditLog", req)
        seen += [e.seq for e in p.events]
        if not p.next_since_seq:
            break
        req.since_seq = p.next_since_seq
    assert len(seen) == first.total == len(set(seen))
    # A filtered page counts only what the filter keeps.
    mine = env.call("root", "AuditLog", admin_pb2.AuditLogRequest(
        operator_id=op_id(env, "mkt"), limit=1000))
    assert mine.total == len(mine.events) > 0 and mine.next_since_seq == 0
