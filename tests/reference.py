"""A plain-Python model of the fast path's batch function, used only by tests.

It is written from the money rules (docs and issue 2), not from the Cython loop: cards
are dicts of ints, ops are dicts, every amount is a Python int (so nothing can wrap), and
the int64 limits of the real records are stated here as explicit guards. The property
tests run the same workloads through core._fastpath and through this model and compare
every per-op result, every journal record and the final card table.

Inputs and outputs, all plain data:

- op:    {client_hi, client_lo, card_no, amount_fen, store_id, terminal_id, operator_id,
          category, op_type, op_flags}
- card:  every field of core.records.CARD except the reserved ones
- rules: a core.rules.RulesConfig (read only, as plain data)
- known: {(client_hi, client_lo): seq} of committed ops
- result per op: (code, replayed, seq); records: dicts shaped like journal_to_dict()

Scope: swipes (without line items, coupons or a points offset), recharges and count-card
uses on cards without a PIN; the domain features beyond that have their own tests.
"""

from __future__ import annotations

import copy
import datetime
from dataclasses import dataclass, field

from core.records import CardStatus, OpFlag, OpType, RecordKind, Result

INT64_MAX = 2**63 - 1
UINT32_MAX = 2**32 - 1
BP = 10_000  # basis points in one whole
FEN_PER_YUAN = 100
SECONDS_PER_DAY = 86_400
EPOCH_ORDINAL = datetime.date(1970, 1, 1).toordinal()

# Why a card may not be used, by status; a status the engine does not know is treated as
# the most final one (cancelled).
_STATUS_REJECT = {
    CardStatus.LOST: Result.CARD_LOST,
    CardStatus.FROZEN: Result.CARD_FROZEN,
    CardStatus.CANCELLED: Result.CARD_CANCELLED,
    CardStatus.DORMANT: Result.CARD_DORMANT,
}


class Rejected(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = int(code)


# --- the money rules, one function each ---------------------------------------------


def payable_fen(amount_fen: int, discount_bp: int, rounding: str) -> int:
    """What the member pays after the level discount, rounded to the fen."""
    exact_num = amount_fen * discount_bp  # payable = exact_num / 10000 fen
    whole, rest = divmod(exact_num, BP)
    if rounding == "floor":
        return whole
    assert rounding == "half_up"
    return whole + (1 if 2 * rest >= BP else 0)


def points_earned(eligible_fen: int, rate_bp: int, mult_bp: int) -> int:
    """Points for an amount: whole yuan only, times rate and multiplier, floored once."""
    yuan = eligible_fen // FEN_PER_YUAN if eligible_fen > 0 else 0
    return (yuan * rate_bp * mult_bp) // (BP * BP)


def swipe_points(rules, paid_fen: int, category: int, store_id: int, level_mult_bp: int) -> int:
    """Points of a swipe without line items: the paid amount weighted by its category's
    multiplier counts in whole (weighted) yuan, then the base rate, the level and the
    store multipliers apply, floored once at the end."""
    if category in set(rules.no_points_categories):
        cat_bp = 0
    else:
        cat_bp = dict(rules.category_points_mult_bp).get(category, BP)
    store_bp = dict(rules.store_points_mult_bp).get(store_id, BP)
    weighted_yuan = (paid_fen * cat_bp) // (BP * FEN_PER_YUAN)
    return (weighted_yuan * rules.points_per_yuan_bp * level_mult_bp * store_bp) // BP**3


def local_year(t_s: int, tz_offset_s: int) -> int:
    """The calendar year of a unix time in the chain's local time."""
    days = (t_s + tz_offset_s) // SECONDS_PER_DAY
    return datetime.date.fromordinal(EPOCH_ORDINAL + days).year


def add_points(card: dict, pts: int, now_s: int, rules) -> None:
    """Earned points go to the lot of the local year they are earned in (three lots from
    lot_year on; later years share the newest) or, when points never expire, to the
    permanent pool. An empty card, or one whose lots are all spent and stale, starts its
    lots at this year. Called for every accepted swipe and recharge, even for 0 points."""
    card["points"] += pts
    if rules.points_valid_years == 0:
        card["permanent_points"] += pts
        return
    year = local_year(now_s, rules.tz_offset_s)
    lots_empty = not (card["lot0_points"] or card["lot1_points"] or card["lot2_points"])
    if card["lot_year"] == 0 or (lots_empty and year > card["lot_year"] + 2):
        card["lot_year"] = year
    lot = min(max(year - card["lot_year"], 0), 2)
    card[f"lot{lot}_points"] += pts


def recharge_tier(rules, paid_fen: int) -> tuple[int, int]:
    """(bonus_fen, points) of the highest tier the paid amount reaches, or (0, 0)."""
    reached = [t for t in rules.tiers if paid_fen >= t.min_pay_fen]
    if not reached:
        return 0, 0
    best = max(reached, key=lambda t: t.min_pay_fen)
    return best.bonus_fen, best.points


def level_rule(rules, level: int):
    """The rule of a card's level; a level beyond the configured ones uses the top one."""
    return rules.levels[min(level, len(rules.levels) - 1)]


def upgrade(card: dict, rules, now_s: int) -> None:
    """Move the card to the highest level above its own whose entry threshold it meets."""
    target = None
    for j in range(card["level"] + 1, len(rules.levels)):
        lv = rules.levels[j]
        met = any(
            threshold > 0 and card[counter] >= threshold
            for threshold, counter in (
                (lv.up_points, "period_points"),
                (lv.up_spend_fen, "period_spend_fen"),
                (lv.up_recharge_fen, "period_recharge_fen"),
            )
        )
        if met:
            target = j
    if target is None:
        return
    card["level"] = target
    days = rules.levels[target].validity_days
    card["level_expires_at_s"] = now_s + days * SECONDS_PER_DAY if days > 0 else 0


def check_usable(card: dict, now_s: int) -> None:
    if card["status"] != CardStatus.ACTIVE:
        raise Rejected(_STATUS_REJECT.get(card["status"], Result.CARD_CANCELLED))
    if card["expires_at_s"] and now_s >= card["expires_at_s"]:
        raise Rejected(Result.CARD_EXPIRED)


def check_amount(amount_fen: int, rules) -> None:
    if amount_fen <= 0:
        raise Rejected(Result.AMOUNT_NOT_POSITIVE)
    if amount_fen > rules.max_amount_fen:
        raise Rejected(Result.AMOUNT_TOO_LARGE)


def fits_int64(*values: int) -> bool:
    return all(v <= INT64_MAX for v in values)


def swipe(op: dict, card: dict, rules, now_s: int) -> dict:
    """Return the journal amounts of the swipe and mutate card; raise Rejected untouched."""
    check_usable(card, now_s)
    amount = op["amount_fen"]
    check_amount(amount, rules)
    lv = level_rule(rules, card["level"])
    pay = payable_fen(amount, lv.discount_bp, rules.rounding)
    from_principal = from_bonus = 0
    if not op["op_flags"] & OpFlag.PAY_EXTERNAL:
        if card["principal_fen"] + card["bonus_fen"] < pay:
            raise Rejected(Result.INSUFFICIENT_BALANCE)
        if rules.spend_order == "bonus_first":
            from_bonus = min(pay, card["bonus_fen"])
            from_principal = pay - from_bonus
        else:
            from_principal = min(pay, card["principal_fen"])
            from_bonus = pay - from_principal
    if op["op_flags"] & OpFlag.GROUP_BUY:
        pts = 0  # group-buy orders earn nothing
    else:
        pts = swipe_points(rules, pay, op["category"], op["store_id"], lv.points_mult_bp)
    if not fits_int64(card["points"] + pts, card["period_points"] + pts,
                      card["spend_total_fen"] + pay, card["period_spend_fen"] + pay):
        raise Rejected(Result.BALANCE_LIMIT)
    level_before = card["level"]
    card["principal_fen"] -= from_principal
    card["bonus_fen"] -= from_bonus
    add_points(card, pts, now_s, rules)
    card["period_points"] += pts
    card["spend_total_fen"] += pay
    card["period_spend_fen"] += pay
    card["visits"] = min(card["visits"] + 1, UINT32_MAX)
    card["last_visit_s"] = now_s
    upgrade(card, rules, now_s)
    return {"discount_fen": amount - pay, "payable_fen": pay,
            "principal_delta_fen": -from_principal, "bonus_delta_fen": -from_bonus,
            "points_delta": pts, "level_before": level_before}


def recharge(op: dict, card: dict, rules, now_s: int) -> dict:
    check_usable(card, now_s)
    paid = op["amount_fen"]
    check_amount(paid, rules)
    bonus, tier_points = recharge_tier(rules, paid)
    pts = points_earned(paid, rules.recharge_points_per_yuan_bp, BP) + tier_points
    if card["principal_fen"] + card["bonus_fen"] + paid + bonus > rules.max_balance_fen:
        raise Rejected(Result.BALANCE_LIMIT)
    if not fits_int64(card["points"] + pts, card["period_points"] + pts,
                      card["recharge_total_fen"] + paid, card["period_recharge_fen"] + paid):
        raise Rejected(Result.BALANCE_LIMIT)
    level_before = card["level"]
    card["principal_fen"] += paid
    card["bonus_fen"] += bonus
    add_points(card, pts, now_s, rules)
    card["period_points"] += pts
    card["recharge_total_fen"] += paid
    card["period_recharge_fen"] += paid
    upgrade(card, rules, now_s)
    return {"discount_fen": 0, "payable_fen": paid, "principal_delta_fen": paid,
            "bonus_delta_fen": bonus, "points_delta": pts, "level_before": level_before}


def use_count(op: dict, card: dict, rules, now_s: int) -> dict:
    """A count card spends uses of its one service (the op's category), not money."""
    check_usable(card, now_s)
    if card["count_service"] == 0 or op["category"] != card["count_service"]:
        raise Rejected(Result.SERVICE_MISMATCH)
    uses = op["amount_fen"]
    if uses <= 0:
        raise Rejected(Result.AMOUNT_NOT_POSITIVE)
    if uses > card["count_uses"]:
        raise Rejected(Result.INSUFFICIENT_USES)
    level_before = card["level"]
    card["count_uses"] -= uses
    card["visits"] = min(card["visits"] + 1, UINT32_MAX)
    card["last_visit_s"] = now_s
    return {"discount_fen": 0, "payable_fen": 0, "principal_delta_fen": 0,
            "bonus_delta_fen": 0, "points_delta": 0, "level_before": level_before}


_HANDLERS = {OpType.SWIPE: swipe, OpType.RECHARGE: recharge, OpType.USE_COUNT: use_count}
_OP_FIELDS_IN_RECORD = ("client_hi", "client_lo", "card_no", "amount_fen", "store_id",
                        "terminal_id", "operator_id", "category", "op_type")


@dataclass
class Model:
    """The committed state of one engine: cards, known client ids, the next seq."""

    cards: dict[int, dict] = field(default_factory=dict)
    known: dict[tuple[int, int], int] = field(default_factory=dict)
    next_seq: int = 1
    records: list[dict] = field(default_factory=list)

    def apply(self, ops: list[dict], rules, now_s: int, rules_version: int | None = None
              ) -> tuple[list[tuple[int, int, int]], list[dict]]:
        """Apply one batch and commit it; return per-op (code, replayed, seq) and the
        batch's journal records."""
        results, recs, cards, ids = apply_batch(
            ops, self.cards, rules, self.known, now_s, self.next_seq,
            rules.version if rules_version is None else rules_version)
        self.cards, self.known = cards, ids
        self.next_seq += len(recs)
        self.records.extend(recs)
        return results, recs


def apply_batch(ops: list[dict], cards: dict[int, dict], rules, known: dict, now_s: int,
                first_seq: int, rules_version: int
                ) -> tuple[list[tuple[int, int, int]], list[dict], dict, dict]:
    """One batch against committed state; inputs are not mutated. Returns (results,
    records, cards after, known ids after)."""
    cards = copy.deepcopy(cards)
    known = dict(known)
    seen_in_batch: dict[tuple[int, int], int] = {}
    results: list[tuple[int, int, int]] = []
    recs: list[dict] = []
    for op in ops:
        cid = (op["client_hi"], op["client_lo"])
        if cid == (0, 0):
            results.append((Result.CLIENT_ID_INVALID, 0, 0))
            continue
        first = seen_in_batch.get(cid, known.get(cid))
        if first is not None:
            results.append((Result.OK, 1, first))
            continue
        handler = _HANDLERS.get(op["op_type"])
        if handler is None:
            results.append((Result.OP_TYPE_INVALID, 0, 0))
            continue
        if op["card_no"] == 0:
            results.append((Result.CARD_NO_INVALID, 0, 0))
            continue
        if op["card_no"] not in cards:
            results.append((Result.CARD_NOT_FOUND, 0, 0))
            continue
        trial = dict(cards[op["card_no"]])
        try:
            amounts = handler(op, trial, rules, now_s)
        except Rejected as rej:
            results.append((rej.code, 0, 0))
            continue
        seq = first_seq + len(recs)
        rec = {name: op[name] for name in _OP_FIELDS_IN_RECORD}
        rec.update(amounts)
        rec.update(seq=seq, time_s=now_s, prev_seq=cards[op["card_no"]]["last_seq"],
                   rules_version=rules_version, result=Result.OK, op_flags=op["op_flags"])
        # A swipe or recharge record carries the card's after-image and none of the
        # coupon, points-offset or refund parts (issue 4 fills those).
        rec.update(kind=RecordKind.KIND_CARD, coupon_fen=0, offset_fen=0, offset_points=0,
                   ref_seq=0)
        trial["last_seq"] = seq
        rec["after"] = dict(trial)
        cards[op["card_no"]] = trial
        seen_in_batch[cid] = seq
        recs.append(rec)
        results.append((Result.OK, 0, seq))
    known.update(seen_in_batch)
    return results, recs, cards, known
