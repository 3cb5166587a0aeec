"""AdminService handlers for coupons: templates, issue and a card's coupons.

Permissions (core.domain.rbac's matrix):
- coupon.template: PutCouponTemplate (marketing at HQ);
- coupon.issue: IssueCoupons; a store-scoped operator (store manager, customer service)
  issues only to cards of their store's members, chain-wide roles to any card;
- member.read: ListCardCoupons, in the card's scope; any operator: ListCouponTemplates
  (like GetRules: every desk works by them).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from core.domain.rbac import is_store_scoped
from core.rules import CouponTemplate
from server.mms_pb import admin_pb2
from server.rpc.admin.base import Call, _outcome, client_id, handler
from server.rpc.errors import invalid

# Cards one IssueCoupons call may name (a campaign sends several calls).
ISSUE_COUPONS_MAX = 10_000
_TEMPLATE_DEFAULTS = CouponTemplate(template_id=1, name="x", kind="fixed")


def template_of(pb: admin_pb2.CouponTemplate) -> CouponTemplate:
    """The core template a request describes; unset optional fields take the defaults."""
    return CouponTemplate(
        template_id=int(pb.template_id), name=pb.name, kind=pb.kind, value_fen=int(pb.value_fen),
        percent_bp=int(pb.percent_bp) if pb.HasField("percent_bp") else _TEMPLATE_DEFAULTS.percent_bp,
        min_spend_fen=int(pb.min_spend_fen), max_off_fen=int(pb.max_off_fen),
        gift_sku=int(pb.gift_sku), stackable=bool(pb.stackable),
        stores=tuple(int(x) for x in pb.stores), categories=tuple(int(x) for x in pb.categories),
        levels=tuple(int(x) for x in pb.levels),
        valid_days=int(pb.valid_days) if pb.HasField("valid_days") else _TEMPLATE_DEFAULTS.valid_days,
        total_quantity=int(pb.total_quantity), budget_fen=int(pb.budget_fen))


def template_pb(t: CouponTemplate) -> admin_pb2.CouponTemplate:
    return admin_pb2.CouponTemplate(**dataclasses.asdict(t))


@handler("PutCouponTemplate")
async def put_coupon_template(call: Call, req):
    cid = client_id(req)
    p = call.authorize("coupon.template", None)
    tpl = template_of(req.template)
    r = await call.cold(lambda: call.engine.put_coupon_template(tpl, cid,
                                                                operator_id=p.operator_id))
    v = r.value or {}
    return admin_pb2.PutCouponTemplateResponse(created=bool(v.get("created")),
                                               version=int(v.get("version", 0)),
                                               outcome=_outcome(r))


@handler("ListCouponTemplates")
async def list_coupon_templates(call: Call, req):
    call.principal()
    tpls = sorted(call.engine.rules.coupon_templates, key=lambda t: t.template_id)
    return admin_pb2.ListCouponTemplatesResponse(templates=[template_pb(t) for t in tpls])


@handler("IssueCoupons")
async def issue_coupons(call: Call, req):
    cid = client_id(req)
    n = len(req.card_nos)
    if not 1 <= n <= ISSUE_COUPONS_MAX:
        raise invalid("BATCH_SIZE", f"issue to 1..{ISSUE_COUPONS_MAX} cards per call, not {n}")
    p = call.authorize("coupon.issue", call.act_store())
    if is_store_scoped(p.role):
        for no in sorted(set(req.card_nos)):
            call.authorize("coupon.issue", call.card_scope(no))
    nos = np.array(req.card_nos, dtype=np.uint64)
    start = int(req.valid_from_s) if req.HasField("valid_from_s") else None
    if start is not None and start < 0:
        raise invalid("VALID_FROM_INVALID", "valid_from_s must not be negative")
    r = await call.cold(lambda: call.engine.issue_coupons(
        int(req.template_id), nos, cid, valid_from_s=start, operator_id=p.operator_id,
        store_id=call.act_store() or 0))
    return admin_pb2.IssueCouponsResponse(
        coupon_ids=[int(i) for i in (r.value or {}).get("coupon_ids", [])], outcome=_outcome(r))


@handler("ListCardCoupons")
async def list_card_coupons(call: Call, req):
    call.authorize("member.read", call.card_scope(req.card_no))
    rows = call.engine.coupons_of(int(req.card_no))
    out = admin_pb2.ListCardCouponsResponse()
    for c in sorted(rows, key=lambda c: c["coupon_id"]):
        if req.include_used or c["coupon_status"] == 1:
            out.coupons.add(coupon_id=c["coupon_id"], template_id=c["template_id"],
                            status=c["coupon_status"], valid_from_s=c["valid_from_s"],
                            valid_to_s=c["valid_to_s"], redeemed_seq=c["redeemed_seq"],
                            redeemed_fen=c["redeemed_fen"])
    return out
