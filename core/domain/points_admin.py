"""Points outside the swipe: manual adjustment with a reason, make-up
points (补积分) for a receipt within 24 hours, and the gift catalogue with redemption.

Points live in lots (core/domain/points.py explains them): the points a card earns go to the
lot of the year they are earned in (by the engine's clock, in the chain's time zone),
or are permanent when points never expire; points spent or taken away leave the lots
that expire first first. add_points and take_points below run the fast path's own
functions, so the swipe and the admin ops share one set of lot rules.

There is no transfer of points between cards (the seed, 002): no op here moves points
from one card to another. Only a replacement (core/domain/cards.py) carries a card's points,
with its lots, to the card that replaces it.
"""

from __future__ import annotations

import dataclasses
import json
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np

from core import _fastpath
from core.domain.levels import REASON_CHARS_MAX, maybe_upgrade, need_reason, open_card  # noqa: F401  (plans.py reads REASON_CHARS_MAX here)
from core.engine.storage import u32
from core.engine.writer import AdminContext, Engine
from core.records import CARD, CATEGORY_COUNT, CardFlag, CardStatus, OpFlag, PointsOp, Result
from core.rules import RulesConfig

# A make-up is accepted for a receipt at most this old (the seed: within 24 hours).
MAKE_UP_WINDOW_S = 24 * 3_600
RECEIPT_ID_CHARS_MAX = 64
# One adjustment moves at most this many points: a typo of a few digits is caught.
ADJUST_POINTS_MAX = 10**9
GIFT_ID_MAX = 2**32 - 1
GIFT_NAME_CHARS_MAX = 60
GIFT_COST_MAX = 10**9
GIFT_STOCK_MAX = 10**9
REDEEM_QTY_MAX = 100

RECEIPTS_DB = "points_receipts"   # u32 BE store id + receipt id (UTF-8) -> JSON
GIFTS_DB = "gifts"                # u32 BE gift id -> JSON


# --- the lot rules: the fast path's own functions, on a copy of the card --------------------


def _on_row(card: np.void, fn, *args) -> int | None:
    """Run a fast-path lot function on a one-row copy of card and copy the row back."""
    row = np.array([card], dtype=CARD)
    out = fn(row, *args)
    for name in CARD.names:
        card[name] = row[0][name]
    return out


def add_points(card: np.void, pts: int, now_s: int, rules: RulesConfig) -> None:
    _on_row(card, _fastpath.card_add_points, pts, now_s, rules.points_valid_years,
            rules.tz_offset_s)


def spendable_points(card: np.void) -> int:
    """Points a card can give: its positive lots, capped by its points (a forced
    negative adjustment leaves a debt on the permanent lot)."""
    return int(_fastpath.card_spendable_points(np.array([card], dtype=CARD)))


def take_points(card: np.void, n: int) -> None:
    """Take n points (n <= spendable_points), the ones that expire first first."""
    _on_row(card, _fastpath.card_take_points, n)


def swipe_points(rules: RulesConfig, level: int, paid_fen: int, category: int = 0,
                 store_id: int = 0) -> int:
    """Points a swipe without line items earns on paid_fen (what was paid after the
    discount): the category's multiplier (0 for a no-points category) on the amount,
    the part below one weighted yuan earns nothing, then the rate and the level and
    store multipliers, floored once. The fast path's rule (do_swipe); must match it."""
    if category in rules.no_points_categories or paid_fen <= 0:
        return 0
    cat_mult = dict(rules.category_points_mult_bp).get(category, 10_000)
    store_mult = dict(rules.store_points_mult_bp).get(store_id, 10_000)
    level_mult = rules.levels[min(level, len(rules.levels) - 1)].points_mult_bp
    yuan = paid_fen * cat_mult // 1_000_000
    return yuan * rules.points_per_yuan_bp * level_mult * store_mult // 10**12


def _usable(ctx: AdminContext, card_no: int) -> np.void:
    """A card that may earn or spend points now: ACTIVE and not expired (a dormant
    card's points are kept but unusable until renewal)."""
    card = ctx.card(int(card_no))
    if card is None:
        ctx.reject(Result.CARD_NOT_FOUND, f"card {card_no} not found")
    status = int(card["status"])
    if status != CardStatus.ACTIVE:
        code = {CardStatus.LOST: Result.CARD_LOST, CardStatus.FROZEN: Result.CARD_FROZEN,
                CardStatus.DORMANT: Result.CARD_DORMANT}.get(status, Result.CARD_CANCELLED)
        ctx.reject(code, f"card {card_no} is not active")
    if int(card["expires_at_s"]) and ctx.now >= int(card["expires_at_s"]):
        ctx.reject(Result.CARD_EXPIRED, f"card {card_no} has expired")
    return card


def _points_state(card: np.void) -> dict:
    return {n: int(card[n]) for n in ("points", "lot_year", "lot0_points", "lot1_points",
                                       "lot2_points", "permanent_points")}


# --- manual adjustment -----------------------------------------------------------------


def adjust_points(engine: Engine, card_no: int, delta: int, client_id: bytes, *, reason: str,
                  force: bool = False, operator_id: int = 0, store_id: int = 0) -> Future:
    """Add (delta > 0, into the current year's lot) or take (delta < 0, from the oldest
    lots first) points by hand, with a reason. Taking more than the card holds is
    rejected (INSUFFICIENT_POINTS) unless force: the shortfall is then a debt on the
    permanent lot (points below zero), so no expiry run can wipe it out. Adjusted
    points are not earned points: they do not count toward levels (period_points)."""
    text = reason.strip() if isinstance(reason, str) else ""

    def build(ctx: AdminContext):
        need_reason(ctx, text, "an adjustment")
        if not isinstance(delta, int) or delta == 0 or abs(delta) > ADJUST_POINTS_MAX:
            ctx.reject(Result.INVALID_ARGUMENT, f"delta must be non-zero, at most "
                       f"{ADJUST_POINTS_MAX} either way", "DELTA_INVALID")
        card = open_card(ctx, card_no)
        before = _points_state(card)
        if delta > 0:
            add_points(card, delta, ctx.now, ctx.rules_config)
        else:
            want = -delta
            have = spendable_points(card)
            if want > have and not force:
                ctx.reject(Result.INSUFFICIENT_POINTS, f"card {card_no} holds {have} points, "
                           f"{want} asked", "INSUFFICIENT_POINTS")
            taken = min(want, sum(max(0, int(card[n])) for n in
                                  ("lot0_points", "lot1_points", "lot2_points", "permanent_points")))
            take_points(card, taken)
            card["permanent_points"] -= want - taken
            card["points"] -= want - taken
        ctx.emit(PointsOp.POINTS_ADJUST, card, points_delta=delta)
        ctx.detail = {"card_no": int(card_no), "reason": text, "delta": delta,
                      "forced": bool(force and delta < 0 and -delta > before["points"]),
                      "before": before, "after": _points_state(card)}
        return {"points": int(card["points"]), "points_delta": delta}

    return engine.admin(client_id, PointsOp.POINTS_ADJUST, build, operator_id=operator_id,
                        store_id=store_id)


# --- make-up points (补积分) ------------------------------------------------------------


def _receipt_key(receipt_store_id: int, receipt_id: str) -> bytes:
    return u32(receipt_store_id) + receipt_id.encode()


def make_up_points(engine: Engine, card_no: int, receipt_id: str, paid_fen: int,
                   receipt_time_s: int, client_id: bytes, *, receipt_store_id: int,
                   category: int = 0, operator_id: int = 0, store_id: int = 0) -> Future:
    """Points for a purchase made without the card (补积分): the receipt (its id,
    unique per store; the amount paid; the store; the time) must be at most 24 hours
    old by the engine's clock and not in the future, and each receipt earns once ever
    (a database of used receipts). The card earns exactly what a swipe paying
    paid_fen at that store and category would earn now (swipe_points, at its level
    now), and the purchase counts like a swipe paid outside stored value: spend, period
    spend and points, visits, and the automatic upgrade. Journalled as POINTS_MAKE_UP
    with op_flags PAY_EXTERNAL, store_id = the receipt's store."""

    def build(ctx: AdminContext):
        rid = receipt_id.strip() if isinstance(receipt_id, str) else ""
        if not 1 <= len(rid) <= RECEIPT_ID_CHARS_MAX or not rid.isprintable():
            ctx.reject(Result.INVALID_ARGUMENT, f"a receipt id is 1..{RECEIPT_ID_CHARS_MAX} "
                       "printable characters", "RECEIPT_ID_INVALID")
        if not 0 <= receipt_store_id < 2**32 or not 0 <= category < CATEGORY_COUNT:
            ctx.reject(Result.INVALID_ARGUMENT, "receipt_store_id or category out of range")
        if not 0 < paid_fen <= ctx.rules_config.max_amount_fen:
            ctx.reject(Result.AMOUNT_NOT_POSITIVE if paid_fen <= 0 else Result.AMOUNT_TOO_LARGE,
                       f"paid_fen {paid_fen} out of range")
        if receipt_time_s > ctx.now:
            ctx.reject(Result.INVALID_ARGUMENT, "the receipt is dated in the future",
                       "RECEIPT_IN_FUTURE")
        if ctx.now - receipt_time_s > MAKE_UP_WINDOW_S:
            ctx.reject(Result.FAILED_PRECONDITION, "make-up points only for a receipt "
                       "within 24 hours", "RECEIPT_TOO_OLD")
        key = _receipt_key(receipt_store_id, rid)
        used = ctx.get(RECEIPTS_DB, key)
        if used is not None:
            ctx.reject(Result.ALREADY_EXISTS, f"receipt {rid} of store {receipt_store_id} "
                       f"has earned points already ({used.decode()})", "RECEIPT_USED")
        card = _usable(ctx, card_no)
        rules = ctx.rules_config
        before = _points_state(card) | {"level": int(card["level"])}
        earned = swipe_points(rules, int(card["level"]), paid_fen, category, receipt_store_id)
        if int(card["flags"]) & CardFlag.CARD_FLAG_MEMBERSHIP_LAPSED:
            earned = 0  # a card whose membership ended earns no points (core.domain.levels)
        add_points(card, earned, ctx.now, rules)
        card["spend_total_fen"] += paid_fen
        card["period_spend_fen"] += paid_fen
        card["period_points"] += earned
        if int(card["visits"]) < 0xFFFFFFFF:
            card["visits"] += 1
        card["last_visit_s"] = max(int(card["last_visit_s"]), int(receipt_time_s))
        maybe_upgrade(card, rules, ctx.now)
        seq = ctx.emit(PointsOp.POINTS_MAKE_UP, card, amount_fen=paid_fen, payable_fen=paid_fen,
                       points_delta=earned, category=category, store_id=receipt_store_id,
                       op_flags=OpFlag.PAY_EXTERNAL)
        ctx.put(RECEIPTS_DB, key, json.dumps({"card_no": int(card_no), "seq": seq,
                                              "points": earned, "time_s": ctx.now}).encode())
        ctx.detail = {"card_no": int(card_no), "receipt_id": rid,
                      "receipt_store_id": receipt_store_id, "receipt_time_s": receipt_time_s,
                      "paid_fen": paid_fen, "category": category, "before": before,
                      "after": _points_state(card) | {"level": int(card["level"])}}
        return {"points_earned": earned, "points": int(card["points"])}

    return engine.admin(client_id, PointsOp.POINTS_MAKE_UP, build, operator_id=operator_id,
                        store_id=store_id)


def receipt_used(engine: Engine, receipt_store_id: int, receipt_id: str) -> dict | None:
    engine.ensure_dbs([RECEIPTS_DB])
    with engine.store.read() as txn:
        raw = txn.get(_receipt_key(receipt_store_id, receipt_id.strip()),
                      db=engine.store.db[RECEIPTS_DB])
    return json.loads(raw) if raw is not None else None


# --- gift catalogue and redemption ------------------------------------------------------


@dataclass(frozen=True)
class Gift:
    gift_id: int
    name: str
    points_cost: int
    stock: int
    active: bool = True
    # A coupon for points: redeeming puts qty coupons of this template on the card
    # (within the template's quantity and budget). 0 = a gift handed over at the counter.
    coupon_template_id: int = 0

    def problems(self) -> list[str]:
        out = []
        if not isinstance(self.gift_id, int) or not 1 <= self.gift_id <= GIFT_ID_MAX:
            out.append(f"gift_id must be 1..{GIFT_ID_MAX}")
        if not isinstance(self.name, str) or not 1 <= len(self.name.strip()) <= GIFT_NAME_CHARS_MAX:
            out.append(f"name must be 1..{GIFT_NAME_CHARS_MAX} characters")
        if not isinstance(self.points_cost, int) or not 1 <= self.points_cost <= GIFT_COST_MAX:
            out.append(f"points_cost must be 1..{GIFT_COST_MAX}")
        if not isinstance(self.stock, int) or not 0 <= self.stock <= GIFT_STOCK_MAX:
            out.append(f"stock must be 0..{GIFT_STOCK_MAX}")
        if (not isinstance(self.coupon_template_id, int)
                or not 0 <= self.coupon_template_id < 2**32):
            out.append("coupon_template_id must be 0..2^32-1")
        return out

    def to_json(self) -> bytes:
        return json.dumps(dataclasses.asdict(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Gift:
        return cls(**json.loads(raw))


def put_gift(engine: Engine, gift: Gift, client_id: bytes, *, operator_id: int = 0) -> Future:
    """Create or change a gift of the catalogue (name, points cost, stock, active)."""

    def build(ctx: AdminContext):
        bad = gift.problems()
        if bad:
            ctx.reject(Result.INVALID_ARGUMENT, "; ".join(bad), "GIFT_INVALID")
        if (gift.coupon_template_id
                and ctx.rules_config.coupon_template(gift.coupon_template_id) is None):
            ctx.reject(Result.NOT_FOUND, f"coupon template {gift.coupon_template_id} not "
                       "found", "TEMPLATE_NOT_FOUND")
        before = ctx.get(GIFTS_DB, u32(gift.gift_id))
        ctx.put(GIFTS_DB, u32(gift.gift_id), gift.to_json())
        ctx.emit(PointsOp.GIFT_PUT, None, amount_fen=gift.gift_id)
        ctx.detail = {"gift_id": gift.gift_id, "before": json.loads(before) if before else None,
                      "after": dataclasses.asdict(gift)}
        return {"gift_id": gift.gift_id, "created": before is None}

    return engine.admin(client_id, PointsOp.GIFT_PUT, build, operator_id=operator_id)


def get_gift(engine: Engine, gift_id: int) -> Gift | None:
    engine.ensure_dbs([GIFTS_DB])
    with engine.store.read() as txn:
        raw = txn.get(u32(gift_id), db=engine.store.db[GIFTS_DB])
    return Gift.from_json(raw) if raw is not None else None


def list_gifts(engine: Engine, *, active_only: bool = False) -> list[Gift]:
    engine.ensure_dbs([GIFTS_DB])
    with engine.store.read() as txn:
        gifts = [Gift.from_json(v) for _k, v in txn.cursor(db=engine.store.db[GIFTS_DB])]
    return [g for g in gifts if g.active or not active_only]


def redeem_gift(engine: Engine, card_no: int, gift_id: int, client_id: bytes, *, qty: int = 1,
                operator_id: int = 0, store_id: int = 0) -> Future:
    """Redeem qty of a gift for points: the points leave the oldest lots first and the
    stock goes down, in one commit. Journalled as GIFT_REDEEM (points_delta = -cost,
    amount_fen = qty); the event names the gift. A coupon gift also puts qty coupons of
    its template on the card (COUPON_ISSUE records in the same commit); their ids are
    in the value's coupon_ids."""

    def build(ctx: AdminContext):
        if not isinstance(qty, int) or not 1 <= qty <= REDEEM_QTY_MAX:
            ctx.reject(Result.INVALID_ARGUMENT, f"qty must be 1..{REDEEM_QTY_MAX}", "QTY_INVALID")
        raw = ctx.get(GIFTS_DB, u32(gift_id)) if 0 < gift_id <= GIFT_ID_MAX else None
        if raw is None:
            ctx.reject(Result.NOT_FOUND, f"gift {gift_id} not found", "GIFT_NOT_FOUND")
        gift = Gift.from_json(raw)
        if not gift.active:
            ctx.reject(Result.FAILED_PRECONDITION, f"gift {gift_id} is withdrawn", "GIFT_INACTIVE")
        if gift.stock < qty:
            ctx.reject(Result.FAILED_PRECONDITION, f"gift {gift_id}: {gift.stock} in stock",
                       "OUT_OF_STOCK")
        card = _usable(ctx, card_no)
        cost = gift.points_cost * qty
        have = spendable_points(card)
        if cost > have:
            ctx.reject(Result.INSUFFICIENT_POINTS, f"the gift costs {cost} points, the card "
                       f"holds {have}", "INSUFFICIENT_POINTS")
        before = _points_state(card)
        take_points(card, cost)
        after_gift = dataclasses.replace(gift, stock=gift.stock - qty)
        ctx.put(GIFTS_DB, u32(gift_id), after_gift.to_json())
        ctx.emit(PointsOp.GIFT_REDEEM, card, points_delta=-cost, amount_fen=qty)
        coupon_ids = []
        if gift.coupon_template_id:
            coupon_ids = engine.put_coupons(ctx, gift.coupon_template_id,
                                            np.full(qty, int(card_no), dtype=np.uint64))
        ctx.detail = {"card_no": int(card_no), "gift_id": gift_id, "qty": qty,
                      "points_cost": cost, "before": {**before, "stock": gift.stock},
                      "after": {**_points_state(card), "stock": after_gift.stock},
                      "coupon_ids": coupon_ids}
        return {"points_cost": cost, "points": int(card["points"]), "stock": after_gift.stock,
                "coupon_ids": coupon_ids}

    return engine.admin(client_id, PointsOp.GIFT_REDEEM, build, operator_id=operator_id,
                        store_id=store_id)


__all__ = ["PointsOp", "adjust_points", "make_up_points", "receipt_used", "Gift", "put_gift",
           "get_gift", "list_gifts", "redeem_gift", "swipe_points", "add_points",
           "take_points", "spendable_points"]
