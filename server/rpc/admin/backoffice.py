"""AdminService handlers of the back office's own work: a recharge at the desk as the
session's operator (RechargeCard), the operator list, and the reply builders of the
member and card views (会员360) that members.py and cards.py share."""

from __future__ import annotations

import grpc

from core.domain.member_view import card_view
from core.domain.rbac import PermissionDenied
from core.records import OpType, Result, op_name
from server.mms_pb import admin_pb2, pos_pb2
from server.rpc.admin.base import OPERATORS_LIMIT_DEFAULT, OPERATORS_LIMIT_MAX, Call, handler
from server.rpc.admin.chain import _operator_pb
from server.rpc.auth import Terminal
from server.rpc.codec import card_pb, single_op
from server.rpc.errors import RpcFailure, invalid, page_limit

# A desk recharge has no till: no token behind it.
_NO_TOKEN_HASH = "0" * 64


# --- reply builders -------------------------------------------------------------------------

def card_view_pb(engine, card: dict) -> admin_pb2.CardView:
    v = card_view(engine, int(card["card_no"]), card)
    lots = [admin_pb2.PointsLot(**lot) for lot in v["lots"]]
    return admin_pb2.CardView(
        card=card_pb(card), type_name=v["type_name"], type_kind=v["type_kind"],
        level_name=v["level_name"], lots=lots, permanent_points=v["permanent_points"],
        replaced_by_card_no=v["replaced_by_card_no"],
        replaced_card_nos=v["replaced_card_nos"],
        supplementary_card_nos=v["supplementary_card_nos"],
        supp_spent_fen=v["supp_spent_fen"], issued_at_s=v["issued_at_s"],
        status_name=v["status_name"])


def journal_entry_pb(r) -> admin_pb2.JournalEntry:
    after = r["after"]
    return admin_pb2.JournalEntry(
        seq=int(r["seq"]), op=str(op_name(int(r["op_type"]))),
        time_s=int(r["time_s"]), store_id=int(r["store_id"]),
        terminal_id=int(r["terminal_id"]), operator_id=int(r["operator_id"]),
        amount_fen=int(r["amount_fen"]), principal_delta_fen=int(r["principal_delta_fen"]),
        bonus_delta_fen=int(r["bonus_delta_fen"]), points_delta=int(r["points_delta"]),
        balance_after_fen=int(after["principal_fen"]) + int(after["bonus_fen"]),
        points_after=int(after["points"]), card_no=int(r["card_no"]))


def level_change_pb(h: dict) -> admin_pb2.LevelChange:
    return admin_pb2.LevelChange(
        seq=h["seq"], time_s=h["time_s"], card_no=h["card_no"], op=h["op"],
        level_before=h["level_before"], level_after=h["level_after"],
        level_expires_at_s=h["level_expires_at_s"], operator_id=h["operator_id"],
        reason=str(h.get("reason", "")), approver_id=int(h.get("approver_id") or 0))


def coupon_pb(c: dict) -> admin_pb2.Coupon:
    return admin_pb2.Coupon(coupon_id=c["coupon_id"], template_id=c["template_id"],
                            status=c["coupon_status"], valid_from_s=c["valid_from_s"],
                            valid_to_s=c["valid_to_s"], redeemed_seq=c["redeemed_seq"],
                            redeemed_fen=c["redeemed_fen"])


# --- handlers ---------------------------------------------------------------------------------

@handler("RechargeCard")
async def recharge_card(call: Call, req):
    # The recharge happens where the operator works: a store role's home store. The
    # chain-wide roles hold no recharge permission (core.domain.rbac), so they are refused
    # here before anything about the card is looked at.
    p = call.authorize("recharge", call.act_store())
    store = int(call.act_store() or 0)
    if req.amount_fen <= 0:
        raise invalid("RESULT_AMOUNT_NOT_POSITIVE", "amount_fen must be positive",
                      field="amount_fen")
    desk = Terminal(terminal_id=0, store_id=store, token_sha256=_NO_TOKEN_HASH)
    row = single_op(pos_pb2.RechargeRequest(
        client_id=req.client_id, card_no=req.card_no, amount_fen=req.amount_fen,
        operator_id=int(p.operator_id), store_id=store), desk, OpType.RECHARGE)
    if not call.svc.bridge.accepting:
        raise RpcFailure(grpc.StatusCode.UNAVAILABLE, "SHUTTING_DOWN", "the server is stopping")
    batch, i = await call.svc.bridge.start_one(row, call.context)
    if batch.codes[i] != int(Result.OK):
        raise RpcFailure.of_result(batch.codes[i], replayed=str(batch.replayed[i]).lower())
    return admin_pb2.RechargeCardResponse(result=batch.op_result(i),
                                          operator_id=int(p.operator_id), store_id=store)


@handler("ListOperators")
async def list_operators(call: Call, req):
    own = call.act_store()
    store = own if own is not None else (req.store_id or None)
    if own is not None and req.store_id and req.store_id != own:
        store = req.store_id  # authorize refuses it with OTHER_STORE
    # Who works here: the people who staff it (operator.write) or check it (audit.read).
    try:
        call.authorize("operator.write", store)
    except PermissionDenied:
        call.authorize("audit.read", store)
    limit = page_limit(req.limit, OPERATORS_LIMIT_DEFAULT, OPERATORS_LIMIT_MAX)
    ops = [o for o in call.chain.operators(store) if req.include_disabled or not o.disabled]
    page = ops[int(req.offset):int(req.offset) + limit]
    return admin_pb2.ListOperatorsResponse(total=len(ops),
                                           operators=[_operator_pb(o) for o in page])
