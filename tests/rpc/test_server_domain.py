"""The POS service carries the domain swipe: line items, coupons, points offset, PIN,
refunds and count cards, against the real server on loopback."""

from __future__ import annotations

import os

import grpc
import pytest
from common import ROOT
from test_server_rpc import Running, expect

from core import RulesConfig
from core.rules import CouponTemplate, LevelRule
from server.mms_pb import pos_pb2, types_pb2

CARD, COUNT_CARD = 5001, 5002



@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    r = Running(str(tmp_path_factory.mktemp("domain")))
    eng = r.engine
    eng.set_rules(RulesConfig(levels=(LevelRule("regular", discount_bp=9_500),),
                              member_prices=((777, (300,)),),
                              coupon_templates=(CouponTemplate(1, "5 off", "fixed", value_fen=500),)),
                  os.urandom(16)).result()
    eng.issue_cards([CARD], os.urandom(16)).result()
    eng.issue_cards([COUNT_CARD], os.urandom(16), count_service=9, count_uses=3).result()
    r.pos.Recharge(pos_pb2.RechargeRequest(client_id=os.urandom(16), card_no=CARD,
                                           amount_fen=100_000), metadata=r.md())
    yield r
    r.close()


def test_swipe_with_basket_coupon_and_offset(srv):
    coupon = srv.engine.issue_coupons(1, [CARD], os.urandom(16)).result().value["coupon_ids"][0]
    earn = srv.pos.Swipe(pos_pb2.SwipeRequest(client_id=os.urandom(16), card_no=CARD,
                                              amount_fen=20_000), metadata=srv.md())
    assert earn.result.points_delta == 190  # 95% of 200 yuan
    req = pos_pb2.SwipeRequest(
        client_id=os.urandom(16), card_no=CARD, amount_fen=3_000, points_offset=100,
        coupon_ids=[coupon],
        items=[types_pb2.LineItem(sku=777, amount_fen=1_000, qty=2, category=1),
               types_pb2.LineItem(sku=1, amount_fen=2_000, qty=1, category=2)])
    r = srv.pos.Swipe(req, metadata=srv.md()).result
    # 2 x member price 300 = 600, plus 2,000 at 95% = 1,900: 2,500 payable; 5 yuan coupon,
    # 1 yuan of points: 1,900 paid from the balance.
    assert (r.payable_fen, r.coupon_fen, r.offset_fen) == (2_500, 500, 100)
    assert r.principal_delta_fen == -1_900
    again = srv.pos.Swipe(req, metadata=srv.md()).result
    assert again.replayed and again.seq == r.seq
    info = expect(grpc.StatusCode.FAILED_PRECONDITION, "RESULT_COUPON_USED", srv.pos.Swipe,
                  pos_pb2.SwipeRequest(client_id=os.urandom(16), card_no=CARD, amount_fen=3_000,
                                       coupon_ids=[coupon]), metadata=srv.md())
    assert info.reason == "RESULT_COUPON_USED"


def test_refund_over_grpc(srv):
    swipe_id = os.urandom(16)
    before = srv.engine.card(CARD)["principal_fen"]
    srv.pos.Swipe(pos_pb2.SwipeRequest(client_id=swipe_id, card_no=CARD, amount_fen=1_000),
                  metadata=srv.md())
    refund = pos_pb2.RefundRequest(client_id=os.urandom(16), card_no=CARD,
                                   swipe_client_id=swipe_id, amount_fen=950)
    r = srv.pos.Refund(refund, metadata=srv.md()).result
    assert r.principal_delta_fen == 950 and srv.engine.card(CARD)["principal_fen"] == before
    assert srv.pos.Refund(refund, metadata=srv.md()).result.replayed
    expect(grpc.StatusCode.FAILED_PRECONDITION, "RESULT_REFUND_EXCEEDS_PAID", srv.pos.Refund,
           pos_pb2.RefundRequest(client_id=os.urandom(16), card_no=CARD,
                                 swipe_client_id=swipe_id, amount_fen=1), metadata=srv.md())
    expect(grpc.StatusCode.INVALID_ARGUMENT, "RESULT_CLIENT_ID_INVALID", srv.pos.Refund,
           pos_pb2.RefundRequest(client_id=os.urandom(16), card_no=CARD,
                                 swipe_client_id=b"short", amount_fen=1), metadata=srv.md())


def test_pin_over_grpc(srv):
    srv.engine.set_pin(CARD, "2468", os.urandom(16)).result()
    try:
        expect(grpc.StatusCode.FAILED_PRECONDITION, "RESULT_PIN_REQUIRED", srv.pos.Swipe,
               pos_pb2.SwipeRequest(client_id=os.urandom(16), card_no=CARD, amount_fen=100),
               metadata=srv.md())
        expect(grpc.StatusCode.FAILED_PRECONDITION, "RESULT_PIN_WRONG", srv.pos.Swipe,
               pos_pb2.SwipeRequest(client_id=os.urandom(16), card_no=CARD, amount_fen=100,
                                    pin="1111"), metadata=srv.md())
        expect(grpc.StatusCode.INVALID_ARGUMENT, "PIN_MALFORMED", srv.pos.Swipe,
               pos_pb2.SwipeRequest(client_id=os.urandom(16), card_no=CARD, amount_fen=100,
                                    pin="12a4"), metadata=srv.md())
        ok = srv.pos.Swipe(pos_pb2.SwipeRequest(client_id=os.urandom(16), card_no=CARD,
                                                amount_fen=100, pin="2468"), metadata=srv.md())
        assert ok.result.code == types_pb2.RESULT_OK
    finally:
        srv.engine.set_pin(CARD, None, os.urandom(16)).result()


def test_count_card_over_grpc(srv):
    r = srv.pos.UseCount(pos_pb2.UseCountRequest(client_id=os.urandom(16), card_no=COUNT_CARD,
                                                 service=9, uses=2), metadata=srv.md())
    assert r.result.code == types_pb2.RESULT_OK and srv.engine.card(COUNT_CARD)["count_uses"] == 1
    expect(grpc.StatusCode.FAILED_PRECONDITION, "RESULT_INSUFFICIENT_USES", srv.pos.UseCount,
           pos_pb2.UseCountRequest(client_id=os.urandom(16), card_no=COUNT_CARD, service=9,
                                   uses=2), metadata=srv.md())
    expect(grpc.StatusCode.FAILED_PRECONDITION, "RESULT_SERVICE_MISMATCH", srv.pos.UseCount,
           pos_pb2.UseCountRequest(client_id=os.urandom(16), card_no=COUNT_CARD, service=8,
                                   uses=1), metadata=srv.md())


def test_refund_of_zero_reverses_an_order_the_coupons_paid(srv):
    """docs/concepts.md: an order paid wholly by coupons is reversed by one refund of 0,
    which puts the coupons back; the server lets 0 through to the engine for refunds."""
    coupon = srv.engine.issue_coupons(1, [CARD], os.urandom(16)).result().value["coupon_ids"][0]
    swipe_id = os.urandom(16)
    before = srv.engine.card(CARD)
    paid = srv.pos.Swipe(pos_pb2.SwipeRequest(client_id=swipe_id, card_no=CARD, amount_fen=500,
                                              coupon_ids=[coupon]), metadata=srv.md()).result
    # 500 at 95% is 475 payable, all of it off the 5-yuan coupon: nothing paid.
    assert (paid.payable_fen, paid.coupon_fen, paid.principal_delta_fen) == (475, 475, 0)
    assert srv.engine.coupon(coupon)["redeemed_seq"] == paid.seq
    refund = pos_pb2.RefundRequest(client_id=os.urandom(16), card_no=CARD,
                                   swipe_client_id=swipe_id, amount_fen=0)
    r = srv.pos.Refund(refund, metadata=srv.md()).result
    assert r.code == types_pb2.RESULT_OK and not r.replayed
    assert (r.principal_delta_fen, r.bonus_delta_fen) == (0, 0)
    assert srv.engine.coupon(coupon)["redeemed_seq"] == 0, "the coupon is back, usable again"
    assert srv.engine.card(CARD)["principal_fen"] == before["principal_fen"]
    assert srv.pos.Refund(refund, metadata=srv.md()).result.replayed
    # Once only, and never for an order that was paid; a negative amount stops at the edge.
    expect(grpc.StatusCode.FAILED_PRECONDITION, "RESULT_REFUND_EXCEEDS_PAID", srv.pos.Refund,
           pos_pb2.RefundRequest(client_id=os.urandom(16), card_no=CARD,
                                 swipe_client_id=swipe_id, amount_fen=0), metadata=srv.md())
    paid_id = os.urandom(16)
    srv.pos.Swipe(pos_pb2.SwipeRequest(client_id=paid_id, card_no=CARD, amount_fen=1_000),
                  metadata=srv.md())
    for amount in (0, -1):
        expect(grpc.StatusCode.INVALID_ARGUMENT, "RESULT_AMOUNT_NOT_POSITIVE", srv.pos.Refund,
               pos_pb2.RefundRequest(client_id=os.urandom(16), card_no=CARD,
                                     swipe_client_id=paid_id, amount_fen=amount),
               metadata=srv.md())


def test_spend_total_grows_by_what_was_paid_as_the_card_documents(srv):
    """Card.spend_total_fen is what the member paid: the payable less coupons and the
    points offset (issue 8: the proto called it the payable). A group-buy order (flag 2)
    earns no points but counts as spend."""
    lines = (ROOT / "proto" / "mms" / "v1" / "types.proto").read_text().splitlines()
    at = next(i for i, line in enumerate(lines) if "int64 spend_total_fen" in line)
    comment = []
    while lines[at - 1 - len(comment)].strip().startswith("//"):
        comment.append(lines[at - 1 - len(comment)].strip().removeprefix("// "))
    doc = " ".join(reversed(comment))
    assert "less its coupons and its points offset" in doc, doc
    coupon = srv.engine.issue_coupons(1, [CARD], os.urandom(16)).result().value["coupon_ids"][0]
    srv.pos.Swipe(pos_pb2.SwipeRequest(client_id=os.urandom(16), card_no=CARD,
                                       amount_fen=20_000), metadata=srv.md())  # 190 points
    before = srv.pos.GetCard(pos_pb2.GetCardRequest(card_no=CARD), metadata=srv.md()).card
    r = srv.pos.Swipe(pos_pb2.SwipeRequest(client_id=os.urandom(16), card_no=CARD,
                                           amount_fen=4_000, points_offset=100,
                                           coupon_ids=[coupon]), metadata=srv.md()).result
    # 4,000 at 95% = 3,800 payable; 500 off the coupon, 100 points = 100 fen: 3,200 paid.
    assert (r.payable_fen, r.coupon_fen, r.offset_fen) == (3_800, 500, 100)
    group = srv.pos.Swipe(pos_pb2.SwipeRequest(client_id=os.urandom(16), card_no=CARD,
                                               amount_fen=1_000, flags=2),
                          metadata=srv.md()).result
    assert group.points_delta == 0 and group.payable_fen == 950
    after = srv.pos.GetCard(pos_pb2.GetCardRequest(card_no=CARD), metadata=srv.md()).card
    assert after.spend_total_fen - before.spend_total_fen == 3_200 + 950


def test_a_till_refunds_only_its_own_store_sales_without_a_chain(srv):
    """A server without a chain has no operators; its tills still refund only what was
    sold at their store (a store B till refunded a store A sale, issue 8)."""
    sale = os.urandom(16)
    srv.pos.Swipe(pos_pb2.SwipeRequest(client_id=sale, card_no=CARD, amount_fen=1_000),
                  metadata=srv.md())
    before = srv.engine.card(CARD)
    req = pos_pb2.RefundRequest(client_id=os.urandom(16), card_no=CARD, swipe_client_id=sale,
                                amount_fen=950)
    info = expect(grpc.StatusCode.PERMISSION_DENIED, "REFUND_OTHER_STORE", srv.pos.Refund, req,
                  metadata=srv.md("other"))
    assert info.metadata["replayed"] == "false"
    assert srv.engine.card(CARD) == before
    assert srv.pos.Refund(req, metadata=srv.md()).result.principal_delta_fen == 950
