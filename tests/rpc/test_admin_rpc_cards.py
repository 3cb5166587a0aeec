"""The card lifecycle, levels and points administration RPCs against the real server on
loopback: replacement moves the balance and charges the fee, a manual level change
needs another approver, a receipt earns make-up points once, RBAC on each RPC, retried
client ids apply once, and the `mms` commands that call them."""

from __future__ import annotations

import dataclasses
import json
import os
import time

import grpc
import numpy as np
import pytest
from test_admin_rpc import PW, add_member, cid, failure, store_staff_env

from core.records import OP, OpType, Result, split_client_id
from core.rules import CommissionRule
from server.cli.main import main
from server.mms_pb import admin_pb2, pos_pb2, types_pb2


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    e = store_staff_env(str(tmp_path_factory.mktemp("admin_cards")), till=True)
    yield e
    e.close()


_phones = iter(range(13500000000, 13600000000))


def card_with_balance(env, card_no: int, fen: int = 0) -> int:
    """A card of a store-11 member, recharged with fen at store 11's till."""
    mid = add_member(env, "cash11", f"Holder {card_no}", str(next(_phones)))
    env.call("cash11", "IssueCards", admin_pb2.IssueCardsRequest(
        client_id=cid(), card_nos=[card_no], member_ids=[mid]))
    if fen:
        env.pos.Recharge(pos_pb2.RechargeRequest(client_id=cid(), card_no=card_no, amount_fen=fen),
                         metadata=env.till_md, timeout=30)
    return mid


def op_id(env, login: str) -> int:
    return env.chain.operator_by_login(login).operator_id


def test_replacement_moves_the_balance_and_charges_the_fee(env):
    card_with_balance(env, 9001, 5000)
    req = admin_pb2.ReplaceCardRequest(client_id=cid(), old_card_no=9001, new_card_no=9002)
    assert failure(env.call, "cash11", "ReplaceCard", req)[1] == "PERMISSION_NOT_GRANTED"
    assert failure(env.call, "mgr12", "ReplaceCard", req)[1] == "OTHER_STORE"
    r1 = env.call("desk11", "ReplaceCard", req)
    assert (r1.new_card_no, r1.moved_principal_fen, r1.fee_fen) == (9002, 5000, 1000)
    assert not r1.outcome.replayed
    r2 = env.call("desk11", "ReplaceCard", req)
    assert r2.outcome.replayed and r2.fee_fen == 1000
    old, new = env.engine.card(9001), env.engine.card(9002)
    assert int(old["status"]) == types_pb2.CARD_STATUS_CANCELLED and int(old["principal_fen"]) == 0
    assert int(new["principal_fen"]) + int(new["bonus_fen"]) == 4000
    # A cancelled card cannot be replaced again; the new card number must be free.
    code, reason = failure(env.call, "desk11", "ReplaceCard", admin_pb2.ReplaceCardRequest(
        client_id=cid(), old_card_no=9001, new_card_no=9003))
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "CARD_NOT_REPLACEABLE")
    # A balance that cannot pay the fee needs it paid at the counter.
    card_with_balance(env, 9004)
    code, reason = failure(env.call, "desk11", "ReplaceCard", admin_pb2.ReplaceCardRequest(
        client_id=cid(), old_card_no=9004, new_card_no=9005))
    assert reason == "FEE_NOT_COVERED"
    r = env.call("desk11", "ReplaceCard", admin_pb2.ReplaceCardRequest(
        client_id=cid(), old_card_no=9004, new_card_no=9005, fee_external=True))
    assert r.fee_fen == 1000 and int(env.engine.card(9005)["principal_fen"]) == 0


def test_manual_level_change_needs_another_approver(env):
    card_with_balance(env, 9101)
    req = admin_pb2.SetLevelRequest(client_id=cid(), card_no=9101, level=1, reason="complaint",
                                    approver_id=op_id(env, "mgr11"))
    code, reason = failure(env.call, "mgr11", "SetLevel", req)
    assert (code, reason) == (grpc.StatusCode.PERMISSION_DENIED, "APPROVER_IS_REQUESTER")
    # The approver must be allowed to make the change in this store.
    for login in ("cash11", "mgr12"):
        req.approver_id = op_id(env, login)
        assert failure(env.call, "mgr11", "SetLevel", req)[1] == "APPROVER_NOT_GRANTED"
    req.approver_id = op_id(env, "desk11")
    assert failure(env.call, "cash11", "SetLevel", req)[1] == "PERMISSION_NOT_GRANTED"
    req.reason = ""
    assert failure(env.call, "mgr11", "SetLevel", req)[1] == "REASON_REQUIRED"
    req.reason, req.client_id = "complaint", cid()
    r1, r2 = env.call("mgr11", "SetLevel", req), env.call("mgr11", "SetLevel", req)
    assert (r1.level_before, r1.level) == (0, 1) and r2.outcome.replayed
    hist = env.call("desk11", "LevelHistory", admin_pb2.LevelHistoryRequest(card_no=9101)).changes
    assert len(hist) == 1
    h = hist[0]
    assert (h.op, h.level_before, h.level_after, h.reason) == ("LEVEL_MANUAL", 0, 1, "complaint")
    assert (h.operator_id, h.approver_id) == (op_id(env, "mgr11"), op_id(env, "desk11"))
    assert failure(env.call, "mgr12", "LevelHistory",
                   admin_pb2.LevelHistoryRequest(card_no=9101))[1] == "OTHER_STORE"
    rv = env.call("mkt", "ReviewLevels", admin_pb2.ReviewLevelsRequest(client_id=cid()))
    assert rv.reviewed == 0
    assert failure(env.call, "mgr11", "ReviewLevels",
                   admin_pb2.ReviewLevelsRequest(client_id=cid()))[1] == "PERMISSION_NOT_GRANTED"


def test_make_up_points_once_per_receipt(env):
    card_with_balance(env, 9201)
    now = int(time.time())
    req = admin_pb2.MakeUpPointsRequest(client_id=cid(), card_no=9201, receipt_id="R-1",
                                        paid_fen=10_000, receipt_time_s=now - 60)
    r1, r2 = env.call("desk11", "MakeUpPoints", req), env.call("desk11", "MakeUpPoints", req)
    assert r1.points_earned > 0 and r1.points == r1.points_earned and r2.outcome.replayed
    req.client_id = cid()
    code, reason = failure(env.call, "desk11", "MakeUpPoints", req)
    assert (code, reason) == (grpc.StatusCode.ALREADY_EXISTS, "RECEIPT_USED")
    assert int(env.engine.card(9201)["points"]) == r1.points
    req.receipt_id, req.receipt_time_s = "R-2", now - 3 * 86_400
    assert failure(env.call, "desk11", "MakeUpPoints", req)[1] == "RECEIPT_TOO_OLD"
    req.receipt_time_s = now - 60
    assert failure(env.call, "cash11", "MakeUpPoints", req)[1] == "PERMISSION_NOT_GRANTED"


def test_points_adjustment_rbac_and_retry(env):
    card_with_balance(env, 9301)
    req = admin_pb2.AdjustPointsRequest(client_id=cid(), card_no=9301, delta=100, reason="goodwill")
    code, reason = failure(env.call, "cash11", "AdjustPoints", req)
    assert (code, reason) == (grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_NOT_GRANTED")
    assert failure(env.call, "mgr12", "AdjustPoints", req)[1] == "OTHER_STORE"
    r1, r2 = env.call("desk11", "AdjustPoints", req), env.call("desk11", "AdjustPoints", req)
    assert r1.points == 100 and r2.outcome.replayed and r2.points == 100
    assert int(env.engine.card(9301)["points"]) == 100
    take = admin_pb2.AdjustPointsRequest(client_id=cid(), card_no=9301, delta=-150, reason="fix")
    code, reason = failure(env.call, "mgr11", "AdjustPoints", take)
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "RESULT_INSUFFICIENT_POINTS")
    take.force = True
    assert env.call("mgr11", "AdjustPoints", take).points == -50


def test_gifts_card_types_and_runs(env):
    card_with_balance(env, 9401)
    env.call("desk11", "AdjustPoints", admin_pb2.AdjustPointsRequest(
        client_id=cid(), card_no=9401, delta=500, reason="promo"))
    gift = admin_pb2.PutGiftRequest(client_id=cid(), gift=admin_pb2.Gift(
        gift_id=1, name="Mug", points_cost=200, stock=3))
    assert failure(env.call, "mgr11", "PutGift", gift)[1] == "PERMISSION_NOT_GRANTED"
    assert env.call("mkt", "PutGift", gift).created
    gifts = env.call("cash11", "ListGifts", admin_pb2.ListGiftsRequest()).gifts
    assert [(g.gift_id, g.name, g.stock, g.active) for g in gifts] == [(1, "Mug", 3, True)]
    redeem = admin_pb2.RedeemGiftRequest(client_id=cid(), card_no=9401, gift_id=1, qty=2)
    r1, r2 = env.call("desk11", "RedeemGift", redeem), env.call("desk11", "RedeemGift", redeem)
    assert (r1.points_cost, r1.points, r1.stock) == (400, 100, 1) and r2.outcome.replayed
    assert failure(env.call, "desk11", "RedeemGift", admin_pb2.RedeemGiftRequest(
        client_id=cid(), card_no=9401, gift_id=1, qty=1))[1] == "RESULT_INSUFFICIENT_POINTS"
    assert failure(env.call, "desk11", "RedeemGift", admin_pb2.RedeemGiftRequest(
        client_id=cid(), card_no=9401, gift_id=99))[1] == "GIFT_NOT_FOUND"

    ct = admin_pb2.PutCardTypeRequest(client_id=cid(), card_type=admin_pb2.CardType(
        type_id=7, name="Gold", annual_fee_fen=2000, replacement_fee_fen=500))
    assert failure(env.call, "cash11", "PutCardType", ct)[1] == "PERMISSION_NOT_GRANTED"
    assert env.call("mkt", "PutCardType", ct).created
    assert failure(env.call, "mkt", "PutCardType", admin_pb2.PutCardTypeRequest(
        client_id=cid(), card_type=admin_pb2.CardType(type_id=8, name="")))[1] == "CARD_TYPE_INVALID"
    types = env.call("cash11", "ListCardTypes", admin_pb2.ListCardTypesRequest()).card_types
    t = next(t for t in types if t.type_id == 7)
    assert (t.validity_years, t.validity_days, t.replacement_fee_fen, t.recharge_allowed) == (
        2, 0, 500, True)
    # A card of the type pays its first annual fee at issue, the next one at the counter.
    mid = add_member(env, "cash11", "Gold Holder", str(next(_phones)))
    assert failure(env.call, "cash11", "IssueCards", admin_pb2.IssueCardsRequest(
        client_id=cid(), card_nos=[9402], member_ids=[mid], type_id=7))[1] == "FEE_NOT_PAID"
    issued = env.call("cash11", "IssueCards", admin_pb2.IssueCardsRequest(
        client_id=cid(), card_nos=[9402], member_ids=[mid], type_id=7, paid_fen=2000))
    assert (issued.cards, issued.fees_fen, issued.deposit_fen) == (1, 2000, 0)
    first_year = env.engine.card(9402)["fee_paid_until_s"]
    fee = env.call("cash11", "PayAnnualFee", admin_pb2.PayAnnualFeeRequest(
        client_id=cid(), card_no=9402, external=True))
    assert fee.fee_fen == 2000 and fee.fee_paid_until_s > first_year > time.time()
    assert failure(env.call, "cash11", "RenewCard", admin_pb2.RenewCardRequest(
        client_id=cid(), card_no=9402))[1] == "PERMISSION_NOT_GRANTED"
    assert failure(env.call, "desk11", "RenewCard", admin_pb2.RenewCardRequest(
        client_id=cid(), card_no=9402))[1] == "CARD_NOT_RENEWABLE"
    assert env.call("mkt", "ExpireDormantCards",
                    admin_pb2.ExpireDormantCardsRequest(client_id=cid())).cards == 0
    assert failure(env.call, "desk11", "ExpireDormantCards", admin_pb2.ExpireDormantCardsRequest(
        client_id=cid()))[1] == "PERMISSION_NOT_GRANTED"


def test_recharge_limited_by_card_type(env):
    """A type recharged only at store 12: store 11's till gets PERMISSION_DENIED with
    the engine's reason, and the balance does not move; a free type recharges there."""
    env.call("mkt", "PutCardType", admin_pb2.PutCardTypeRequest(
        client_id=cid(), card_type=admin_pb2.CardType(type_id=12, name="Store 12 only",
                                                      recharge_store_ids=[12])))
    mid = add_member(env, "cash11", "Limited Holder", str(next(_phones)))
    env.call("cash11", "IssueCards", admin_pb2.IssueCardsRequest(
        client_id=cid(), card_nos=[9471], member_ids=[mid], type_id=12))
    req = pos_pb2.RechargeRequest(client_id=cid(), card_no=9471, amount_fen=10_000)
    assert failure(env.pos.Recharge, req, metadata=env.till_md, timeout=30) == (
        grpc.StatusCode.PERMISSION_DENIED, "RESULT_RECHARGE_NOT_ALLOWED")
    card = env.pos.GetCard(pos_pb2.GetCardRequest(card_no=9471), metadata=env.till_md, timeout=30)
    assert card.card.principal_fen == 0
    env.call("mkt", "PutCardType", admin_pb2.PutCardTypeRequest(
        client_id=cid(), card_type=admin_pb2.CardType(type_id=12, name="Anywhere")))
    ok = env.pos.Recharge(req, metadata=env.till_md, timeout=30)
    assert ok.result.code == types_pb2.RESULT_OK and ok.result.principal_fen == 10_000


def test_coupon_templates_issue_and_listing(env):
    """Marketing defines templates (a new rules version each); store staff issue coupons
    only to their store's members, HQ marketing to anyone; quantity limits hold; a
    retry returns the same coupons; a card lists its coupons and the POS redeems one."""
    tpl = admin_pb2.CouponTemplate(template_id=21, name="8 off", kind="fixed", value_fen=800,
                                   total_quantity=3)
    put = admin_pb2.PutCouponTemplateRequest(client_id=cid(), template=tpl)
    assert failure(env.call, "mgr11", "PutCouponTemplate", put)[1] == "PERMISSION_NOT_GRANTED"
    first, again = env.call("mkt", "PutCouponTemplate", put), env.call("mkt", "PutCouponTemplate", put)
    assert first.created and again.outcome.replayed and again.version == first.version
    bad = admin_pb2.CouponTemplate(template_id=22, name="no value", kind="fixed")
    assert failure(env.call, "mkt", "PutCouponTemplate", admin_pb2.PutCouponTemplateRequest(
        client_id=cid(), template=bad)) == (grpc.StatusCode.INVALID_ARGUMENT, "TEMPLATE_INVALID")
    listed = env.call("cash11", "ListCouponTemplates", admin_pb2.ListCouponTemplatesRequest())
    t = next(t for t in listed.templates if t.template_id == 21)
    assert (t.name, t.kind, t.value_fen, t.valid_days, t.percent_bp) == ("8 off", "fixed", 800, 30,
                                                                          10_000)

    card_with_balance(env, 9601, 5_000)                      # a store-11 member's card
    mid12 = add_member(env, "mgr12", "Store 12 Holder", str(next(_phones)))
    env.call("mgr12", "IssueCards", admin_pb2.IssueCardsRequest(
        client_id=cid(), card_nos=[9602], member_ids=[mid12]))
    issue = admin_pb2.IssueCouponsRequest(client_id=cid(), template_id=21, card_nos=[9601, 9601])
    assert failure(env.call, "cash11", "IssueCoupons", issue)[1] == "PERMISSION_NOT_GRANTED"
    assert failure(env.call, "mgr11", "IssueCoupons", admin_pb2.IssueCouponsRequest(
        client_id=cid(), template_id=21, card_nos=[9601, 9602]))[1] == "OTHER_STORE"
    r1, r2 = env.call("mgr11", "IssueCoupons", issue), env.call("mgr11", "IssueCoupons", issue)
    assert len(r1.coupon_ids) == 2 and r2.outcome.replayed and r2.coupon_ids == r1.coupon_ids
    assert failure(env.call, "mkt", "IssueCoupons", admin_pb2.IssueCouponsRequest(
        client_id=cid(), template_id=21, card_nos=[9602, 9602]))[1] == "QUANTITY_EXHAUSTED"
    assert len(env.call("mkt", "IssueCoupons", admin_pb2.IssueCouponsRequest(
        client_id=cid(), template_id=21, card_nos=[9602])).coupon_ids) == 1
    assert failure(env.call, "mkt", "IssueCoupons", admin_pb2.IssueCouponsRequest(
        client_id=cid(), template_id=21, card_nos=[]))[1] == "BATCH_SIZE"

    env.pos.Swipe(pos_pb2.SwipeRequest(client_id=cid(), card_no=9601, amount_fen=2_000,
                                       coupon_ids=[r1.coupon_ids[0]]),
                  metadata=env.till_md, timeout=30)
    held = env.call("desk11", "ListCardCoupons", admin_pb2.ListCardCouponsRequest(card_no=9601))
    assert [c.coupon_id for c in held.coupons] == [r1.coupon_ids[1]]
    every = env.call("desk11", "ListCardCoupons",
                     admin_pb2.ListCardCouponsRequest(card_no=9601, include_used=True)).coupons
    assert [(c.coupon_id, c.status, c.redeemed_fen) for c in every] == [
        (r1.coupon_ids[0], 2, 800), (r1.coupon_ids[1], 1, 0)]
    assert failure(env.call, "desk11", "ListCardCoupons",
                   admin_pb2.ListCardCouponsRequest(card_no=9602))[1] == "OTHER_STORE"


def mms(capsys, *argv: str, rc: int = 0) -> str:
    got = main(list(argv))
    out = capsys.readouterr()
    assert got == rc, out.err
    return out.out.strip() if rc == 0 else out.err.strip()


def test_cli_commands(env, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    target = ("--target", f"127.0.0.1:{env.server.port}")

    def as_(who: str) -> tuple[str, ...]:
        # `=`: a token may begin with "-", which argparse would take for an option.
        return (*target, f"--session={env.sessions[who]}")

    card_with_balance(env, 9501, 3000)
    assert mms(capsys, "card", "replace", "9501", "9502", *as_("desk11")) == \
        "card 9501 replaced by 9502: moved 30.00 yuan and 0 pts, fee 10.00 yuan"
    assert "PERMISSION_DENIED PERMISSION_NOT_GRANTED" in mms(
        capsys, "points", "adjust", "9502", "10", "--reason", "x", *as_("cash11"), rc=1)
    retry = ("--client-id", os.urandom(16).hex())
    assert mms(capsys, "points", "adjust", "9502", "10", "--reason", "x", *retry,
               *as_("desk11")) == "card 9502: +10 pts, 10 pts now"
    assert mms(capsys, "points", "adjust", "9502", "10", "--reason", "x", *retry,
               *as_("desk11")).endswith("(replay)")
    approver = str(op_id(env, "desk11"))
    assert mms(capsys, "card", "level", "9502", "2", "--reason", "vip", "--approver", approver,
               *as_("mgr11")) == "card 9502: level 0 -> 2"
    assert "LEVEL_MANUAL\t0 -> 2" in mms(capsys, "card", "level-history", "9502", *as_("desk11"))
    assert "reviewed" in mms(capsys, "card", "levels-review", *as_("mkt"))
    assert mms(capsys, "card", "expire-dormant", *as_("mkt")) == "0 cards made dormant"
    assert mms(capsys, "points", "gift-add", "5", "--name", "Pen", "--cost", "5", "--stock", "9",
               *as_("mkt")) == "gift 5 created"
    assert "Pen\t5 pts\tstock 9" in mms(capsys, "points", "gifts", *as_("cash11"))
    assert "stock 8" in mms(capsys, "points", "redeem", "9502", "5", *as_("desk11"))
    assert "RECEIPT" not in mms(capsys, "points", "make-up", "9502", "--receipt", "C-1",
                                "--paid", "10", "--time", str(int(time.time()) - 5),
                                *as_("desk11"))
    assert mms(capsys, "card-type", "add", "9", "--name", "Silver", *as_("mkt")) == \
        "card type 9 created"
    assert "9\tSilver\tstored_value\tvalid 2 years" in mms(capsys, "card-type", "list",
                                                             *as_("cash11"))
    assert "FAILED_PRECONDITION NO_ANNUAL_FEE" in mms(capsys, "card", "annual-fee", "9502",
                                                      *as_("cash11"), rc=1)
    assert "CARD_NOT_RENEWABLE" in mms(capsys, "card", "renew", "9502", *as_("desk11"), rc=1)
    assert mms(capsys, "coupon", "template", "31", "--name", "Coffee", "--kind", "gift",
               "--value", "15", "--gift-sku", "555", *as_("mkt")).startswith(
        "coupon template 31 created (rules v")
    assert "31\tCoffee\tgift\tvalue 15.00 yuan\t30 days" in mms(capsys, "coupon", "templates",
                                                             *as_("cash11"))
    out = mms(capsys, "coupon", "issue", "31", "9502", *as_("desk11"))
    assert out.startswith("1 coupons of template 31: ")
    coupon_id = out.rsplit(" ", 1)[1]
    assert mms(capsys, "coupon", "list", "9502", *as_("desk11")).startswith(
        f"{coupon_id}\ttemplate 31\tissued\tvalid ")


def _commission_sales(env, tag: int) -> tuple[int, int, int, int]:
    """Commission rules in force (5% on category 3, else 1%), then: operator tag+1
    swipes 10,000 of category 3 at store 11 (500 fen) and tag+2 swipes 4,000 at store
    12 (40 fen); a manager (tag+3) refunds 2,000 of the first at store 11, which gives
    back 100 of tag+1's commission. Returns (since, until, tag+1, tag+2)."""
    rules = env.engine.rules
    if not rules.commission_rules:
        env.engine.set_rules(dataclasses.replace(
            rules, commission_bp=100, commission_rules=(CommissionRule("category", 3, bp=500),)),
            cid()).result()
    since = int(time.time()) - 5
    a, b, mgr = tag + 1, tag + 2, tag + 3
    card_with_balance(env, tag + 10, 50_000)
    card_with_balance(env, tag + 11, 50_000)
    sale = cid()
    assert env.engine.swipe(tag + 10, 10_000, sale, store_id=11, operator_id=a,
                            category=3).result().codes[0] == Result.OK
    assert env.engine.swipe(tag + 11, 4_000, cid(), store_id=12,
                            operator_id=b).result().codes[0] == Result.OK
    ops = np.zeros(1, dtype=OP)
    ops["client_hi"], ops["client_lo"] = split_client_id(cid())
    ops["ref_hi"], ops["ref_lo"] = split_client_id(sale)
    ops["card_no"], ops["amount_fen"], ops["op_type"] = tag + 10, 2_000, OpType.REFUND
    ops["store_id"], ops["operator_id"] = 11, mgr
    res = env.engine.submit(ops).result()
    assert res.codes[0] == Result.OK and int(res.record(0)["commission_fen"]) == -100
    return since, since + 3_600, a, b


def test_commission_report_rbac_and_scope(env):
    """Store managers see their own store only (forced; another store is OTHER_STORE),
    the cashier none, finance every store or the one it names; a refund counts against
    the operator who made the swipe; a bad window is WINDOW_INVALID."""
    env.call("root", "CreateOperator", admin_pb2.CreateOperatorRequest(
        client_id=cid(), login="fin", password=PW, role="finance", home_store_id=0))
    env.login("fin")
    since, until, a, b = _commission_sales(env, 70_000)
    row_a11 = (a, 1, 0, 1, 10_000 - 2_000, 500 - 100)
    row_b = (b, 1, 0, 0, 4_000, 40)

    def report(who: str, store: int = 0):
        r = env.call(who, "CommissionReport", admin_pb2.CommissionReportRequest(
            since_s=since, until_s=until, store_id=store))
        return r.store_id, [(w.operator_id, w.swipes, w.uses, w.refunds, w.sales_fen,
                             w.commission_fen) for w in r.rows if w.operator_id in (a, b)]

    req = admin_pb2.CommissionReportRequest(since_s=since, until_s=until)
    assert failure(env.call, "cash11", "CommissionReport", req) == (
        grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_NOT_GRANTED")
    assert report("mgr11") == (11, [row_a11])
    assert report("mgr11", 11) == (11, [row_a11])
    req.store_id = 12
    assert failure(env.call, "mgr11", "CommissionReport", req) == (
        grpc.StatusCode.PERMISSION_DENIED, "OTHER_STORE")
    assert report("mgr12") == (12, [row_b])
    assert report("fin") == (0, [row_a11, row_b])
    assert report("fin", 12) == (12, [row_b])
    for bad in ((until, since), (since, since + 366 * 86_400 + 1), (-1, 10)):
        assert failure(env.call, "fin", "CommissionReport", admin_pb2.CommissionReportRequest(
            since_s=bad[0], until_s=bad[1])) == (grpc.StatusCode.INVALID_ARGUMENT,
                                                 "WINDOW_INVALID")



def test_commission_report_of_a_window_from_1970_west_of_utc(tmp_path):
    """A chain west of UTC asking for the first hours of 1970 (local time before the
    epoch, which the rollups cannot key): OK and the journal's rows (none). It was
    INVALID_ARGUMENT ("a field of the request has a value or shape this call does not
    take"): the report's OverflowError, taken for a bad field, refused a valid window."""
    from core import Engine, RulesConfig

    Engine(str(tmp_path), rules=RulesConfig(tz_offset_s=-5 * 3600)).close()
    e = store_staff_env(str(tmp_path))
    try:
        e.call("root", "CreateOperator", admin_pb2.CreateOperatorRequest(
            client_id=cid(), login="fin", password=PW, role="finance", home_store_id=0))
        e.login("fin")
        assert e.engine._rules_config.tz_offset_s == -5 * 3600
        for since, until in ((1, 5 * 3_600), (0, 30 * 3_600 + 7)):
            r = e.call("fin", "CommissionReport", admin_pb2.CommissionReportRequest(
                since_s=since, until_s=until))
            assert list(r.rows) == []
    finally:
        e.close()

def test_cli_report_commission(env, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    since, until, a, _ = _commission_sales(env, 80_000)
    argv = ("report", "commission", "--since", str(since), "--until", str(until),
            "--target", f"127.0.0.1:{env.server.port}")
    out = mms(capsys, *argv, f"--session={env.sessions['mgr11']}")
    assert (f"operator {a}\t1 swipes\t0 uses\t1 refunds\tsales 80.00 yuan\tcommission 4.00 yuan"
            in out.splitlines())
    doc = json.loads(mms(capsys, *argv, "--store", "11", "--json",
                         f"--session={env.sessions['mgr11']}"))
    assert doc["store_id"] == 11
    assert {"operator_id": a, "swipes": 1, "refunds": 1, "sales_fen": 8000,
            "commission_fen": 400} in doc["rows"]
    assert "PERMISSION_DENIED OTHER_STORE" in mms(
        capsys, *argv, "--store", "12", f"--session={env.sessions['mgr11']}", rc=1)


def test_notices_pull_and_ack(env, capsys, tmp_path, monkeypatch):
    """The sender (an admin operator) pulls the notices of a member's recharge and
    swipe from the journal, acknowledges them, and the cursor moves; other roles may
    not; `mms notify pull|ack` do the same."""
    start = env.engine.stats()["last_seq"]
    mid = card_with_balance(env, 9801, 4_000)
    env.pos.Swipe(pos_pb2.SwipeRequest(client_id=cid(), card_no=9801, amount_fen=1_500),
                  metadata=env.till_md, timeout=30)
    assert failure(env.call, "mgr11", "PullNotices", admin_pb2.PullNoticesRequest())[1] == \
        "PERMISSION_NOT_GRANTED"
    got = env.call("root", "PullNotices", admin_pb2.PullNoticesRequest(after_seq=start))
    mine = [n for n in got.notices if n.card_no == 9801]
    assert [(n.kind, n.member_id, n.balance_fen) for n in mine] == [
        ("recharge", mid, 4_000), ("swipe", mid, 2_500)]
    assert got.next_seq == env.engine.stats()["last_seq"]
    assert failure(env.call, "root", "PullNotices", admin_pb2.PullNoticesRequest(
        limit=100_000))[1] == "LIMIT_INVALID"
    acked = env.call("root", "AckNotices", admin_pb2.AckNoticesRequest(
        client_id=cid(), upto_seq=got.next_seq))
    assert acked.cursor == got.next_seq
    assert [n for n in env.call("root", "PullNotices", admin_pb2.PullNoticesRequest()).notices
            if n.card_no == 9801] == []
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    target = ("--target", f"127.0.0.1:{env.server.port}", f"--session={env.sessions['root']}")
    out = mms(capsys, "notify", "pull", "--after", str(start), *target)
    assert f"card 9801\tmember {mid}\t15.00 yuan\tbalance 25.00" in out
    assert out.splitlines()[-1] == f"next {env.engine.stats()['last_seq']}"  # past the ack
    assert mms(capsys, "notify", "ack", str(got.next_seq), *target).startswith(
        f"cursor {got.next_seq}")
