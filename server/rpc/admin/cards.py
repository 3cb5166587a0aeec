"""AdminService handlers for cards: issue by card type, status, PIN, the journal across
replacements, the card lifecycle (replace, renew, fees, dormancy), levels and points
administration.

Each handler follows server.rpc.admin.base's pattern: the client id, the scope of the data (a
card's member's home store, else where the caller acts; None for chain-wide runs and
configuration), `authorize`, then the core op (core.domain.cards, core.domain.levels,
core.domain.points_admin) awaited through the bridge. A rejected op becomes its status with
the core's reason (RECEIPT_USED, APPROVER_IS_REQUESTER, ...) as ErrorInfo.reason.

Permissions (core.domain.rbac's matrix):
- card.replace: ReplaceCard, RenewCard, ReadmitCard (the service desk's card work);
- card.issue: PayAnnualFee (a card fee taken at the counter, like the issue fee);
- points.adjust: AdjustPoints, MakeUpPoints, RedeemGift, and SetLevel (the requester;
  the approver must hold it in the same scope too);
- rules.write: the chain-wide runs (ExpireDormantCards, ReviewLevels) and the chain's
  configuration (PutCardType, PutGift), like ExpirePoints and SetRules;
- member.read: LevelHistory (like GetCardJournal); any operator: ListCardTypes,
  ListGifts (like GetRules).
"""

from __future__ import annotations

import dataclasses

import grpc
import numpy as np

from core.domain import cards, levels, points_admin
from core.domain.member_view import journal_total
from core.domain.rbac import PermissionDenied, is_store_scoped
from core.domain.rbac import authorize as rbac_authorize
from core.records import PIN_DIGITS_MAX, PIN_DIGITS_MIN, CardStatus, is_ascii_digits
from server.mms_pb import admin_pb2
from server.rpc.admin.backoffice import card_view_pb, journal_entry_pb
from server.rpc.admin.base import (
    CARD_JOURNAL_DEFAULT,
    CARD_JOURNAL_MAX,
    Call,
    _check,
    _outcome,
    chain_run,
    client_id,
    handler,
)
from server.rpc.codec import card_pb
from server.rpc.errors import RpcFailure, invalid, page_limit

LEVEL_HISTORY_MAX = 1000
LEVEL_HISTORY_DEFAULT = 100


def _fee(req, field: str = "fee_fen") -> int | None:
    return int(getattr(req, field)) if req.HasField(field) else None


def _card_call(call: Call, req, card_no: int, permission: str):
    """(client id, scope, principal) of a call on one card: the client id, the card's
    member's home store (else where the caller acts), the caller authorized there."""
    cid = client_id(req)
    scope = call.card_scope(card_no)
    return cid, scope, call.authorize(permission, scope)


# --- card lifecycle ---------------------------------------------------------------------

@handler("ReplaceCard")
async def replace_card(call: Call, req):
    cid, scope, p = _card_call(call, req, req.old_card_no, "card.replace")
    r = await call.cold(lambda: cards.replace(
        call.engine, int(req.old_card_no), int(req.new_card_no), cid, fee_fen=_fee(req),
        fee_external=req.fee_external, operator_id=p.operator_id, store_id=scope or 0))
    v = r.value or {}
    moved = v.get("moved", {})
    return admin_pb2.ReplaceCardResponse(
        new_card_no=int(v.get("new_card_no", req.new_card_no)), fee_fen=int(v.get("fee_fen", 0)),
        moved_principal_fen=int(moved.get("principal_fen", 0)),
        moved_bonus_fen=int(moved.get("bonus_fen", 0)), moved_points=int(moved.get("points", 0)),
        supplementary_cards=[int(n) for n in v.get("supplementary_cards", [])],
        coupon_ids=[int(n) for n in v.get("coupons", [])], outcome=_outcome(r))


@handler("RenewCard")
async def renew_card(call: Call, req):
    cid, scope, p = _card_call(call, req, req.card_no, "card.replace")
    days = int(req.validity_days) if req.HasField("validity_days") else None
    r = await call.cold(lambda: cards.renew(
        call.engine, int(req.card_no), cid, fee_fen=_fee(req), fee_external=req.fee_external,
        validity_days=days, operator_id=p.operator_id, store_id=scope or 0))
    v = r.value or {}
    return admin_pb2.RenewCardResponse(expires_at_s=int(v.get("expires_at_s", 0)),
                                       fee_fen=int(v.get("fee_fen", 0)), outcome=_outcome(r))


@handler("PayAnnualFee")
async def pay_annual_fee(call: Call, req):
    cid, scope, p = _card_call(call, req, req.card_no, "card.issue")
    r = await call.cold(lambda: cards.pay_annual_fee(
        call.engine, int(req.card_no), cid, external=req.external, operator_id=p.operator_id,
        store_id=scope or 0))
    v = r.value or {}
    return admin_pb2.PayAnnualFeeResponse(fee_fen=int(v.get("fee_fen", 0)),
                                          fee_paid_until_s=int(v.get("fee_paid_until_s", 0)),
                                          outcome=_outcome(r))


@handler("ExpireDormantCards")
async def expire_dormant_cards(call: Call, req):
    r = await chain_run(call, req, cards.expire_dormant)
    return admin_pb2.ExpireDormantCardsResponse(cards=int((r.value or {}).get("cards", 0)),
                                                outcome=_outcome(r))


def _card_type_pb(t: cards.CardType) -> admin_pb2.CardType:
    return admin_pb2.CardType(**dataclasses.asdict(t))


def _card_type(m: admin_pb2.CardType) -> cards.CardType:
    optional = ("validity_days", "validity_years", "replacement_fee_fen", "recharge_allowed")
    d = {f.name: getattr(m, f.name) for f in dataclasses.fields(cards.CardType)
         if f.name not in optional or m.HasField(f.name)}
    if m.HasField("validity_days") and not m.HasField("validity_years"):
        d["validity_years"] = 0  # a validity in days replaces the default two years
    d["kind"] = int(d["kind"]) or int(cards.CardKind.STORED_VALUE)
    for name in ("recharge_store_ids", "recharge_operator_ids"):
        d[name] = tuple(int(i) for i in d[name])
    return cards.CardType.from_dict(d)


async def _put_config(call: Call, req, parse, put, response):
    """Put one item of the chain's configuration (a card type, a gift): rules.write,
    chain-wide; parse(req) once authorized; response(created=, outcome=)."""
    cid = client_id(req)
    p = call.authorize("rules.write", None)
    item = parse(req)
    r = await call.cold(lambda: put(call.engine, item, cid, operator_id=p.operator_id))
    return response(created=bool((r.value or {}).get("created")), outcome=_outcome(r))


@handler("PutCardType")
async def put_card_type(call: Call, req):
    return await _put_config(call, req, lambda req: _card_type(req.card_type),
                             cards.put_card_type, admin_pb2.PutCardTypeResponse)


@handler("ListCardTypes")
async def list_card_types(call: Call, req):
    # Every desk issues and renews cards by their types, so any operator may read them.
    call.principal()
    types = await call.run(cards.list_card_types, call.engine)
    return admin_pb2.ListCardTypesResponse(
        card_types=[_card_type_pb(t) for t in sorted(types, key=lambda t: t.type_id)])


# --- levels -------------------------------------------------------------------------------

def _authorize_approver(call: Call, approver_id: int, scope: int | None) -> None:
    """The approver of a manual level change is an enabled operator who could make it."""
    if not approver_id or int(approver_id) == call.operator_id:
        return  # the core refuses these with APPROVER_REQUIRED / APPROVER_IS_REQUESTER
    op = call.chain.operator(int(approver_id))
    if op is None:
        raise RpcFailure(grpc.StatusCode.NOT_FOUND, "APPROVER_NOT_FOUND",
                         f"operator {approver_id} not found")
    try:
        rbac_authorize(op, "points.adjust", scope)
    except PermissionDenied as e:
        raise RpcFailure(grpc.StatusCode.PERMISSION_DENIED, "APPROVER_NOT_GRANTED",
                         f"operator {approver_id} may not approve this change: {e}",
                         {"approver_reason": e.reason}) from None


@handler("SetLevel")
async def set_level(call: Call, req):
    cid, scope, p = _card_call(call, req, req.card_no, "points.adjust")
    _authorize_approver(call, req.approver_id, scope)
    r = await call.cold(lambda: levels.set_level(
        call.engine, int(req.card_no), int(req.level), cid, reason=req.reason,
        requester_id=int(p.operator_id), approver_id=int(req.approver_id), store_id=scope or 0))
    v = r.value or {}
    return admin_pb2.SetLevelResponse(level_before=int(v.get("level_before", 0)),
                                      level=int(v.get("level", req.level)),
                                      level_expires_at_s=int(v.get("level_expires_at_s", 0)),
                                      outcome=_outcome(r))


@handler("ReviewLevels")
async def review_levels(call: Call, req):
    r = await chain_run(call, req, levels.review_levels)
    v = r.value or {}
    return admin_pb2.ReviewLevelsResponse(
        reviewed=int(v.get("reviewed", 0)), kept=int(v.get("kept", 0)),
        downgraded=int(v.get("downgraded", 0)), lapsed=int(v.get("lapsed", 0)),
        outcome=_outcome(r))


@handler("ReadmitCard")
async def readmit_card(call: Call, req):
    # Taking a former member back in is the service desk's card work, like a renewal.
    cid, scope, p = _card_call(call, req, req.card_no, "card.replace")
    r = await call.cold(lambda: levels.readmit(call.engine, int(req.card_no), cid,
                                               reason=req.reason, operator_id=p.operator_id,
                                               store_id=scope or 0))
    return admin_pb2.ReadmitCardResponse(level=int((r.value or {}).get("level", 0)),
                                         outcome=_outcome(r))


@handler("LevelHistory")
async def level_history(call: Call, req):
    call.authorize("member.read", call.card_scope(req.card_no))
    limit = page_limit(req.limit, LEVEL_HISTORY_DEFAULT, LEVEL_HISTORY_MAX)
    rows = await call.run(levels.level_history, call.engine, int(req.card_no), limit=limit)
    out = admin_pb2.LevelHistoryResponse()
    for h in rows:
        out.changes.add(seq=h["seq"], time_s=h["time_s"], card_no=h["card_no"], op=h["op"],
                        level_before=h["level_before"], level_after=h["level_after"],
                        level_expires_at_s=h["level_expires_at_s"],
                        operator_id=h["operator_id"], reason=str(h.get("reason", "")),
                        approver_id=int(h.get("approver_id") or 0))
    return out


# --- points administration ------------------------------------------------------------------

@handler("AdjustPoints")
async def adjust_points(call: Call, req):
    cid, scope, p = _card_call(call, req, req.card_no, "points.adjust")
    r = await call.cold(lambda: points_admin.adjust_points(
        call.engine, int(req.card_no), int(req.delta), cid, reason=req.reason, force=req.force,
        operator_id=p.operator_id, store_id=scope or 0))
    return admin_pb2.AdjustPointsResponse(points=int((r.value or {}).get("points", 0)),
                                          outcome=_outcome(r))


@handler("MakeUpPoints")
async def make_up_points(call: Call, req):
    cid, scope, p = _card_call(call, req, req.card_no, "points.adjust")
    receipt_store = int(req.receipt_store_id) or int(call.act_store() or 0)
    r = await call.cold(lambda: points_admin.make_up_points(
        call.engine, int(req.card_no), req.receipt_id, int(req.paid_fen),
        int(req.receipt_time_s), cid, receipt_store_id=receipt_store,
        category=int(req.category), operator_id=p.operator_id, store_id=scope or 0))
    v = r.value or {}
    return admin_pb2.MakeUpPointsResponse(points_earned=int(v.get("points_earned", 0)),
                                          points=int(v.get("points", 0)), outcome=_outcome(r))


def _gift_pb(g: points_admin.Gift) -> admin_pb2.Gift:
    return admin_pb2.Gift(**dataclasses.asdict(g))


def _gift(g: admin_pb2.Gift) -> points_admin.Gift:
    return points_admin.Gift(gift_id=int(g.gift_id), name=g.name, points_cost=int(g.points_cost),
                             stock=int(g.stock), active=g.active if g.HasField("active") else True,
                             coupon_template_id=int(g.coupon_template_id))


@handler("PutGift")
async def put_gift(call: Call, req):
    return await _put_config(call, req, lambda req: _gift(req.gift), points_admin.put_gift,
                             admin_pb2.PutGiftResponse)


@handler("ListGifts")
async def list_gifts(call: Call, req):
    # The catalogue is shown to members at every desk: any operator may read it.
    call.principal()
    gifts = await call.run(points_admin.list_gifts, call.engine, active_only=req.active_only)
    return admin_pb2.ListGiftsResponse(
        gifts=[_gift_pb(g) for g in sorted(gifts, key=lambda g: g.gift_id)])


@handler("RedeemGift")
async def redeem_gift(call: Call, req):
    cid, scope, p = _card_call(call, req, req.card_no, "points.adjust")
    r = await call.cold(lambda: points_admin.redeem_gift(
        call.engine, int(req.card_no), int(req.gift_id), cid, qty=int(req.qty or 1),
        operator_id=p.operator_id, store_id=scope or 0))
    v = r.value or {}
    return admin_pb2.RedeemGiftResponse(points_cost=int(v.get("points_cost", 0)),
                                        points=int(v.get("points", 0)),
                                        stock=int(v.get("stock", 0)), outcome=_outcome(r),
                                        coupon_ids=[int(i) for i in v.get("coupon_ids", [])])


# --- cards --------------------------------------------------------------------------------

@handler("IssueCards", auth="terminal")
async def issue_cards(call: Call, req):
    operator_id = 0
    store = req.store_id
    if call.legacy_admin_terminal() is None:
        own = call.act_store()
        scope = req.store_id or own
        p = call.authorize("card.issue", scope)
        operator_id, store = int(p.operator_id), scope or 0
    cid = client_id(req)
    n = len(req.card_nos)
    issue_max = call.engine.config.issue_cards_max
    if not 1 <= n <= issue_max:
        raise invalid("BATCH_SIZE", f"issue 1..{issue_max} cards per call, not {n}")
    if req.member_ids and len(req.member_ids) != n:
        raise invalid("COLUMN_LENGTH", "member_ids must be empty or one per card",
                      column="member_ids")
    if req.expires_at_s:
        raise invalid("SET_BY_CARD_TYPE", "the card type sets the validity; leave "
                      "expires_at_s 0", field="expires_at_s")
    if operator_id and is_store_scoped(call.principal().role):
        for mid in sorted(set(req.member_ids) - {0}):
            call.authorize("card.issue", call.member_store(mid))
        if req.primary_card_no:
            # A supplementary card spends the primary's money: the primary's store.
            call.authorize("card.issue", call.card_scope(req.primary_card_no))
    if req.level:
        t = await call.run(cards.get_card_type, call.engine, int(req.type_id)) if req.type_id \
            else cards.default_type(0)
        if t is None or int(req.level) != t.initial_level:
            raise invalid("SET_BY_CARD_TYPE", "the card type sets the starting level; leave "
                          "level 0", field="level")
    nos = np.array(req.card_nos, dtype=np.uint64)
    members = np.array(req.member_ids, dtype=np.uint64) if req.member_ids else None
    r = await call.cold(lambda: cards.issue_cards(
        call.engine, nos, cid, type_id=int(req.type_id), member_ids=members,
        paid_fen=int(req.paid_fen), primary_card_no=int(req.primary_card_no),
        supp_limit_fen=int(req.supp_limit_fen), operator_id=operator_id, store_id=store))
    v = r.value or {}
    return admin_pb2.IssueCardsResponse(
        code=int(r.code), replayed=r.replayed, seq=r.seq, detail=r.detail,
        cards=int(v.get("cards", 0)), fees_fen=int(v.get("fees_fen", 0)),
        deposit_fen=int(v.get("deposit_fen", 0)), expires_at_s=int(v.get("expires_at_s", 0)),
        level=int(v.get("level", 0)), count_uses=int(v.get("count_uses", 0)))


@handler("ShowCard")
async def show_card(call: Call, req):
    # Reading a card is reading its member's data (like GetCardJournal).
    call.authorize("member.read", call.card_scope(req.card_no))
    card = call.engine.card(int(req.card_no))
    return admin_pb2.ShowCardResponse(card=card_pb(card), view=card_view_pb(call.engine, card))


@handler("SetCardStatus", auth="terminal")
async def set_card_status(call: Call, req):
    operator_id, store = 0, 0
    if call.legacy_admin_terminal() is None:
        scope = call.card_scope(req.card_no)
        operator_id, store = call.authorize("card.status", scope).operator_id, scope or 0
    cid = client_id(req)
    if req.status not in {int(s) for s in CardStatus if int(s) != 0}:
        raise invalid("STATUS_INVALID", f"status {req.status} is not a card status")
    r = await call.svc.bridge.cold(lambda: call.engine.set_card_status(
        int(req.card_no), int(req.status), cid, operator_id=int(operator_id), store_id=store))
    _check(r)
    return admin_pb2.SetCardStatusResponse(code=int(r.code), replayed=r.replayed, seq=r.seq,
                                           detail=r.detail)


@handler("SetPin")
async def set_pin(call: Call, req):
    cid = client_id(req)
    scope = call.card_scope(req.card_no)
    # Choosing the first PIN is part of issuing the card; changing one is the desk's.
    card = call.engine.card(int(req.card_no))
    p = call.authorize("card.issue" if not card.get("pin_hash") else "card.status", scope)
    if not (PIN_DIGITS_MIN <= len(req.pin) <= PIN_DIGITS_MAX and is_ascii_digits(req.pin)):
        raise invalid("PIN_INVALID", "pin: a PIN is 4 to 9 ASCII digits 0-9", field="pin")
    r = await call.cold(lambda: call.engine.set_pin(int(req.card_no), req.pin, cid,
                                                    operator_id=p.operator_id, store_id=scope or 0))
    return admin_pb2.SetPinResponse(outcome=_outcome(r))


@handler("ResetPin")
async def reset_pin(call: Call, req):
    cid, scope, p = _card_call(call, req, req.card_no, "card.status")
    r = await call.cold(lambda: call.engine.set_pin(int(req.card_no), None, cid,
                                                    operator_id=p.operator_id, store_id=scope or 0))
    return admin_pb2.ResetPinResponse(outcome=_outcome(r))


@handler("GetCardJournal")
async def get_card_journal(call: Call, req):
    call.authorize("member.read", call.card_scope(req.card_no))
    limit = page_limit(req.limit, CARD_JOURNAL_DEFAULT, CARD_JOURNAL_MAX)
    recs, next_before = await call.run(cards.card_history, call.engine, int(req.card_no),
                                       limit, int(req.before_seq))
    total = await call.run(journal_total, call.engine, int(req.card_no))
    out = admin_pb2.GetCardJournalResponse(next_before_seq=next_before, total=total)
    out.entries.extend(journal_entry_pb(r) for r in recs)
    return out
