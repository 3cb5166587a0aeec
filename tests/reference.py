"""A plain-Python model of the fast path's batch function, used only by tests.

It is written from the money rules (docs/concepts.md, the docstrings of the rules and the
examples of tests/engine/test_swipe_features.py and tests/engine/test_refunds.py), not from the Cython
loop: cards are dicts of ints, ops are dicts, every amount is a Python int (so nothing
can wrap), and the int64 limits of the real records are stated here as explicit guards.
The property tests run the same workloads through core._fastpath and through this model
and compare every per-op result, every journal record and the final card table.

Inputs and outputs, all plain data:

- op:    {client_hi, client_lo, card_no, amount_fen, store_id, terminal_id, operator_id,
          category, op_type, op_flags, points_offset, ref_hi, ref_lo, items_off, items_n,
          coupons_off, coupons_n, pin, pin_len}; a field left out is 0
- item:  {sku, amount_fen, qty, category, item_flags}; ops point into one list per batch
- coupon ids: one list of ints per batch that swipes point into (coupons_off, coupons_n)
- coupon: every field of core.records.COUPON except the reserved ones; the model keeps
          them by coupon_id; templates are the rules' coupon_templates
- card:  every field of core.records.CARD except the reserved ones
- rules: a core.rules.RulesConfig (read only, as plain data); the PIN key is separate
- known: {(client_hi, client_lo): seq or (seq, result)} of committed ops; a bare seq
         means an accepted op
- committed: {seq: record} of committed records (what a refund may name)
- refunded: {seq of a swipe: fen refunded of it so far}
- redeemed_by: {seq of a swipe: [coupon ids it redeemed, in order]}
- result per op: (code, replayed, seq); records: dicts shaped like journal_to_dict(), but a
  coupon record's "after" is the coupon dict (coupon_to_dict), not a card

Scope: swipes (line items, member prices, multipliers, coupons, a points offset, PIN),
recharges, count-card uses and refunds (restoring the swipe's coupons when they complete
it). Not modelled: supplementary cards, cold admin ops (the tests take their effects from
the engine: issue, status, PIN, rules, coupon issuing, card types and fees, level
reviews, points adjustments) and the points expiry run.

The PIN hash itself (SipHash of the engine's key and the card's salt) is taken from
core._fastpath.pin_hash_of: it is a keyed hash, not a money rule.
"""

from __future__ import annotations

import calendar
import copy
import datetime
from dataclasses import dataclass, field

from core._fastpath import pin_hash_of
from core.records import (
    CardFlag,
    CardStatus,
    CouponStatus,
    ItemFlag,
    OpFlag,
    OpType,
    RecordKind,
    Result,
)

INT64_MAX = 2**63 - 1
UINT32_MAX = 2**32 - 1
BP = 10_000  # basis points in one whole
FEN_PER_YUAN = 100
SECONDS_PER_DAY = 86_400
EPOCH_ORDINAL = datetime.date(1970, 1, 1).toordinal()
PIN_FAILURES_MAX = 255  # the counter is one byte
COUPONS_PER_OP_MAX = 8  # coupons one swipe may name

# Why a card may not be used, by status; a status the engine does not know is treated as
# the most final one (cancelled).
_STATUS_REJECT = {
    CardStatus.LOST: Result.CARD_LOST,
    CardStatus.FROZEN: Result.CARD_FROZEN,
    CardStatus.CANCELLED: Result.CARD_CANCELLED,
    CardStatus.DORMANT: Result.CARD_DORMANT,
}
_OP_DEFAULTS = dict(client_hi=0, client_lo=0, card_no=0, amount_fen=0, store_id=0,
                    terminal_id=0, operator_id=0, category=0, op_type=0, op_flags=0,
                    points_offset=0, ref_hi=0, ref_lo=0, items_off=0, items_n=0,
                    coupons_off=0, coupons_n=0, pin=0, pin_len=0)
_ZERO_AMOUNTS = {"discount_fen": 0, "payable_fen": 0, "principal_delta_fen": 0,
                 "bonus_delta_fen": 0, "points_delta": 0, "offset_fen": 0, "offset_points": 0,
                 "coupon_fen": 0, "commission_fen": 0}


class Rejected(Exception):
    """The op is refused and leaves no trace."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = int(code)


class Journalled(Exception):
    """The op is refused but its attempt is journalled (a wrong PIN): the card dict it
    was raised for holds the change (the failure count, a lockout) and nothing else."""

    def __init__(self, code: int, amounts: dict) -> None:
        super().__init__(code)
        self.code = int(code)
        self.amounts = amounts


@dataclass(frozen=True)
class Ctx:
    """What an op may read besides its card: the batch's items, the PIN key, for a
    refund the swipe record it names and how much of that swipe was refunded so far, and
    for a swipe the batch's coupon ids and the coupons as the batch has left them (read
    only: the handler says what it redeems, apply_batch records it)."""

    rules: object
    now_s: int
    items: list = field(default_factory=list)
    pin_key: tuple[int, int] = (0, 0)
    orig: dict | None = None
    refunded_before: int = 0
    coupon_ids: list = field(default_factory=list)
    coupons: dict = field(default_factory=dict)
    refunded_any: bool = False            # the swipe has a refund already (even of 0)


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


def category_mult_bp(rules, category: int) -> int:
    """A category's points multiplier: 0 if it earns no points, its configured one
    (the last one listed wins), else 1x."""
    if category in set(rules.no_points_categories):
        return 0
    return dict(rules.category_points_mult_bp).get(category, BP)


def store_mult_bp(rules, store_id: int) -> int:
    return dict(rules.store_points_mult_bp).get(store_id, BP)


def member_price(rules, sku: int, level: int) -> int:
    """The member price per unit of a sku at a level, or 0 where none is set."""
    if sku == 0:
        return 0
    prices = dict(rules.member_prices).get(sku)
    return 0 if prices is None else prices[level]


def is_member(card: dict) -> bool:
    """A card whose membership ended (a level period without any spend) keeps paying
    from its balance but gets no member price, no discount, no points and no upgrade
    until it is re-admitted."""
    return not card["flags"] & CardFlag.CARD_FLAG_MEMBERSHIP_LAPSED


def plan_price_bp(card: dict, now_s: int) -> int:
    """The card's plan member price (bp of the shelf price) while it runs, else 0."""
    bp = card.get("plan_price_bp", 0)
    return bp if bp and now_s < card.get("plan_price_until_s", 0) else 0


def line_payable(rules, level: int, line: dict, member: bool = True, plan_bp: int = 0) -> int:
    """What one line costs the member: qty times the member price of its sku at the
    card's level when one is set, unless that would be more than the shelf price (then
    the shelf price), else the line's amount with the level discount, rounded per line;
    a running plan member price (plan_bp) takes the level discount's place where it is
    lower. A former member pays the shelf price."""
    if not member:
        return line["amount_fen"]
    unit = member_price(rules, line["sku"], level)
    if unit > 0:
        return min(unit * line["qty"], line["amount_fen"])
    bp = rules.levels[level].discount_bp
    if plan_bp and plan_bp < bp:
        bp = plan_bp
    return payable_fen(line["amount_fen"], bp, rules.rounding)


def weighted_points(rules, level: int, store_id: int, lines: list[tuple[int, dict]],
                    payable: int, reduction: int) -> int:
    """Points of a swipe. Each points-earning line counts its payable less its share of
    the reduction (coupons plus the points offset), the share floored, times its category
    multiplier;
    the sum in weighted fen is cut to whole weighted yuan, then the base rate, the level
    multiplier and the store multiplier apply, floored once."""
    weight = 0
    for lp, line in lines:
        if line["item_flags"] & ItemFlag.ITEM_NO_POINTS:
            continue
        share = reduction * lp // payable if payable > 0 else 0
        weight += (lp - share) * category_mult_bp(rules, line["category"])
    weighted_yuan = weight // (BP * FEN_PER_YUAN)
    lv = rules.levels[level]
    return (weighted_yuan * rules.points_per_yuan_bp * lv.points_mult_bp
            * store_mult_bp(rules, store_id)) // BP**3


def swipe_points(rules, paid_fen: int, category: int, store_id: int, level_mult_bp: int) -> int:
    """Points of a swipe without line items and offset (kept for the money tests)."""
    weighted_yuan = (paid_fen * category_mult_bp(rules, category)) // (BP * FEN_PER_YUAN)
    return (weighted_yuan * rules.points_per_yuan_bp * level_mult_bp
            * store_mult_bp(rules, store_id)) // BP**3


def local_year(t_s: int, tz_offset_s: int) -> int:
    """The calendar year of a unix time in the chain's local time."""
    days = (t_s + tz_offset_s) // SECONDS_PER_DAY
    return datetime.date.fromordinal(EPOCH_ORDINAL + days).year


LOTS = ("lot0_points", "lot1_points", "lot2_points")


def _lot_of_year(card: dict, year: int) -> str:
    """The lot that holds a year's points: three lots from lot_year on; older years go
    to the oldest lot, later years share the newest."""
    return LOTS[min(max(year - card["lot_year"], 0), 2)]


def add_points(card: dict, pts: int, now_s: int, rules) -> None:
    """Earned points go to the lot of the local year they are earned in or, when points
    never expire, to the permanent pool. An empty card, or one whose lots are all spent
    and stale, starts its lots at this year. Called for every accepted swipe and
    recharge, even for 0 points."""
    card["points"] += pts
    if rules.points_valid_years == 0:
        card["permanent_points"] += pts
        return
    year = local_year(now_s, rules.tz_offset_s)
    lots_empty = not any(card[lot] for lot in LOTS)
    if card["lot_year"] == 0 or (lots_empty and year > card["lot_year"] + 2):
        card["lot_year"] = year
    card[_lot_of_year(card, year)] += pts


def give_points_back(card: dict, pts: int, year: int, rules) -> None:
    """Spent points a refund returns go back to the lot of the year they were spent in
    (as the lots stand now), or to the permanent pool when points never expire; a card
    without lots starts them at that year."""
    card["points"] += pts
    if rules.points_valid_years == 0:
        card["permanent_points"] += pts
        return
    if card["lot_year"] == 0:
        card["lot_year"] = year
    card[_lot_of_year(card, year)] += pts


def spendable_points(card: dict) -> int:
    """Points an offset may spend: what the lots and the permanent pool hold, but never
    more than the card's total, so that a points debt (a negative pool, left by a refund
    of points already spent) is paid first."""
    held = sum(max(card[k], 0) for k in (*LOTS, "permanent_points"))
    return max(min(held, card["points"]), 0)


def spend_points(card: dict, n: int) -> None:
    """Spend n spendable points, the ones that expire first first."""
    assert 0 <= n <= spendable_points(card)
    card["points"] -= n
    for k in (*LOTS, "permanent_points"):
        t = min(n, max(card[k], 0))
        card[k] -= t
        n -= t
    assert n == 0


def claw_back_points(card: dict, n: int) -> None:
    """Take earned points back, the newest first; what is no longer there (spent or
    expired) becomes a debt in the permanent pool."""
    card["points"] -= n
    for k in reversed(LOTS):
        t = min(n, max(card[k], 0))
        card[k] -= t
        n -= t
    card["permanent_points"] -= n


def recharge_tier(rules, paid_fen: int) -> tuple[int, int]:
    """(bonus_fen, points) of the highest tier the paid amount reaches, or (0, 0)."""
    reached = [t for t in rules.tiers if paid_fen >= t.min_pay_fen]
    if not reached:
        return 0, 0
    best = max(reached, key=lambda t: t.min_pay_fen)
    return best.bonus_fen, best.points


def effective_level(rules, level: int) -> int:
    """A level beyond the configured ones uses the top one."""
    return min(level, len(rules.levels) - 1)


def level_rule(rules, level: int):
    return rules.levels[effective_level(rules, level)]


def meets(card: dict, lv) -> bool:
    """Whether the card's period counters meet any entry threshold that is set."""
    return any(
        threshold > 0 and card[counter] >= threshold
        for threshold, counter in (
            (lv.up_points, "period_points"),
            (lv.up_spend_fen, "period_spend_fen"),
            (lv.up_recharge_fen, "period_recharge_fen"),
        ))


def upgrade(card: dict, rules, now_s: int) -> None:
    """Move the card to the highest level above its own whose entry threshold it meets."""
    if not is_member(card):
        return
    target = None
    for j in range(card["level"] + 1, len(rules.levels)):
        if meets(card, rules.levels[j]):
            target = j
    if target is None:
        return
    card["level"] = target
    card["level_expires_at_s"] = level_end(rules, target, now_s)


def local_add_years(t_s: int, years: int, tz_offset_s: int) -> int:
    """t_s plus calendar years in the chain's local time (datetime's calendar); a 29
    February lands on 28 February in a year without one."""
    tz = datetime.timezone(datetime.timedelta(seconds=tz_offset_s))
    local = datetime.datetime.fromtimestamp(t_s, tz)
    year = local.year + years
    day = local.day
    if (local.month, day) == (2, 29) and not calendar.isleap(year):
        day = 28
    return int(local.replace(year=year, day=day).timestamp())


def level_end(rules, level: int, now_s: int) -> int:
    """When a level entered at now_s ends: calendar years or days; 0 = never."""
    lv = rules.levels[level]
    if lv.validity_years > 0:
        return local_add_years(now_s, lv.validity_years, rules.tz_offset_s)
    return now_s + lv.validity_days * SECONDS_PER_DAY if lv.validity_days > 0 else 0


def level_earned(card: dict, rules) -> int:
    """The highest level whose threshold the card's period counters meet (0 if none)."""
    met = [j for j in range(1, len(rules.levels)) if meets(card, rules.levels[j])]
    return max(met, default=0)


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


def check_pin(op: dict, card: dict, ctx: Ctx) -> None:
    """A card with a PIN (pin_hash != 0) needs it: not while locked (PIN_LOCKED), not
    without one (PIN_REQUIRED); a wrong one counts a failure and is journalled as
    PIN_WRONG, or as PIN_LOCKED when it is the pin_max_failures-th in a row, which locks
    the card for pin_lock_s and starts the count again. The right PIN clears the count
    (kept only if the op is accepted)."""
    if card["pin_hash"] == 0:
        return
    rules = ctx.rules
    if card["pin_locked_until_s"] > ctx.now_s:
        raise Rejected(Result.PIN_LOCKED)
    if op["pin_len"] == 0:
        raise Rejected(Result.PIN_REQUIRED)
    k0, k1 = ctx.pin_key
    if pin_hash_of(k0, k1, card["pin_salt"], op["pin"], op["pin_len"]) == card["pin_hash"]:
        card["pin_failures"] = 0
        return
    failures = min(card["pin_failures"] + 1, PIN_FAILURES_MAX)
    code = Result.PIN_WRONG
    if failures >= rules.pin_max_failures:
        failures = 0
        card["pin_locked_until_s"] = ctx.now_s + rules.pin_lock_s
        code = Result.PIN_LOCKED
    card["pin_failures"] = failures
    raise Journalled(code, dict(_ZERO_AMOUNTS, level_before=card["level"]))


def fits_int64(*values: int) -> bool:
    return all(v <= INT64_MAX for v in values)


def swipe_lines(op: dict, ctx: Ctx) -> list[dict]:
    """The op's line items, checked (each 0..max_amount_fen with a quantity, adding up to
    the amount), or the whole amount as one line of the op's category."""
    if op["items_n"] == 0:
        return [{"sku": 0, "amount_fen": op["amount_fen"], "qty": 1,
                 "category": op["category"], "item_flags": 0}]
    start, end = op["items_off"], op["items_off"] + op["items_n"]
    if end > len(ctx.items):
        raise Rejected(Result.ITEMS_INVALID)
    lines = ctx.items[start:end]
    for line in lines:
        if not 0 <= line["amount_fen"] <= ctx.rules.max_amount_fen or line["qty"] == 0:
            raise Rejected(Result.ITEMS_INVALID)
    if sum(line["amount_fen"] for line in lines) != op["amount_fen"]:
        raise Rejected(Result.ITEMS_INVALID)
    return lines


def points_offset_fen(op: dict, card: dict, payable: int, rules) -> int:
    """The fen a points offset takes off the order: the cashier's number of points, which
    must buy whole fen at offset_points_per_yuan and stay within both caps (a share of
    the payable, a number of points) and what the card can spend."""
    pts = op["points_offset"]
    if pts == 0:
        return 0
    if pts < 0 or pts > rules.max_amount_fen:
        raise Rejected(Result.OFFSET_INVALID)
    if rules.offset_points_per_yuan == 0:
        raise Rejected(Result.OFFSET_NOT_ALLOWED)
    fen, rest = divmod(pts * FEN_PER_YUAN, rules.offset_points_per_yuan)
    if rest:
        raise Rejected(Result.OFFSET_INVALID)
    if fen > payable * rules.offset_max_bp // BP:
        raise Rejected(Result.OFFSET_OVER_CAP)
    if rules.offset_max_points > 0 and pts > rules.offset_max_points:
        raise Rejected(Result.OFFSET_OVER_CAP)
    if pts > spendable_points(card):
        raise Rejected(Result.INSUFFICIENT_POINTS)
    return fen


# --- coupons ----------------------------------------------------------------------------


def coupon_template(rules, template_id: int):
    """The rules' coupon template of that id, or None (the rules no longer hold it)."""
    return next((t for t in rules.coupon_templates if t.template_id == template_id), None)


def named_coupons(op: dict, ctx: Ctx) -> list[dict]:
    """The coupons a swipe names, in its order, as the batch has left them: at most
    COUPONS_PER_OP_MAX of them inside the batch's id list (else COUPONS_INVALID); each
    one on this card (COUPON_NOT_FOUND for an unknown coupon or another card's) and not
    used (COUPON_USED, also for the second mention of a coupon named twice)."""
    n, start = op["coupons_n"], op["coupons_off"]
    if n == 0:
        return []
    if n > COUPONS_PER_OP_MAX or start + n > len(ctx.coupon_ids):
        raise Rejected(Result.COUPONS_INVALID)
    seen: set[int] = set()
    named = []
    for coupon_id in ctx.coupon_ids[start:start + n]:
        if coupon_id in seen:
            raise Rejected(Result.COUPON_USED)
        seen.add(coupon_id)
        cp = ctx.coupons.get(coupon_id)
        if cp is None or cp["card_no"] != op["card_no"]:
            raise Rejected(Result.COUPON_NOT_FOUND)
        if cp["coupon_status"] != CouponStatus.COUPON_ISSUED:
            raise Rejected(Result.COUPON_USED)
        named.append(cp)
    return named


def coupon_eligible_fen(tpl, priced: list[tuple[int, dict]]) -> int:
    """The part of the payable a coupon applies to: for a gift coupon the lines of its
    gift sku, for any other the lines in its categories (every line when it lists none).
    A swipe without items is one line of the op's category and sku 0 (so never a gift)."""
    if tpl.kind == "gift":
        return sum(lp for lp, line in priced if line["sku"] == tpl.gift_sku)
    cats = set(tpl.categories)
    return sum(lp for lp, line in priced if not cats or line["category"] in cats)


def coupon_saving_fen(tpl, eligible_fen: int) -> int:
    """What a coupon takes off its eligible lines before the order's remainder caps it:
    percent pays percent_bp of them (the saving floored, then capped by max_off_fen when
    set); fixed, threshold and gift take value_fen, never more than the lines."""
    if tpl.kind == "percent":
        off = eligible_fen * (BP - tpl.percent_bp) // BP
        return min(off, tpl.max_off_fen) if tpl.max_off_fen > 0 else off
    return min(tpl.value_fen, eligible_fen)


def redeem_coupons(op: dict, ctx: Ctx, level: int, priced: list[tuple[int, dict]],
                   payable: int) -> list[tuple[int, int]]:
    """[(coupon_id, fen off)] of the coupons a swipe names, all or nothing. Each coupon
    must be the card's and unused (named_coupons); its template must still be in the
    rules and, with more than one coupon, every template stackable; then, coupon by
    coupon in the order named: inside its window valid_from_s <= now < valid_to_s
    (valid_to_s 0: open; else COUPON_EXPIRED), allowed at this store and the card's
    (effective) level, with eligible lines worth more than 0 and at least min_spend_fen,
    and taking more than 0 fen of what the coupons before it left to pay (else
    COUPON_NOT_APPLICABLE)."""
    named = named_coupons(op, ctx)
    tpls = []
    for cp in named:
        tpl = coupon_template(ctx.rules, cp["template_id"])
        if tpl is None:
            raise Rejected(Result.COUPON_NOT_APPLICABLE)
        if len(named) > 1 and not tpl.stackable:
            raise Rejected(Result.COUPON_NOT_STACKABLE)
        tpls.append(tpl)
    left = payable
    redeemed = []
    for cp, tpl in zip(named, tpls, strict=True):
        if ctx.now_s < cp["valid_from_s"] or (cp["valid_to_s"] and ctx.now_s >= cp["valid_to_s"]):
            raise Rejected(Result.COUPON_EXPIRED)
        if tpl.stores and op["store_id"] not in tpl.stores:
            raise Rejected(Result.COUPON_NOT_APPLICABLE)
        if tpl.levels and level not in tpl.levels:
            raise Rejected(Result.COUPON_NOT_APPLICABLE)
        eligible = coupon_eligible_fen(tpl, priced)
        if eligible <= 0 or eligible < tpl.min_spend_fen:
            raise Rejected(Result.COUPON_NOT_APPLICABLE)
        off = min(coupon_saving_fen(tpl, eligible), left)
        if off <= 0:
            raise Rejected(Result.COUPON_NOT_APPLICABLE)
        left -= off
        redeemed.append((cp["coupon_id"], off))
    return redeemed


def line_commission(rules, sku: int, category: int, qty: int, paid: int) -> int:
    """Staff commission of one line: the sku's rule, else the category's, else the
    default share of what was paid; fixed per unit plus a share, floored."""
    rule = None
    if sku:
        rule = next((r for r in rules.commission_rules if r.kind == "sku" and r.key == sku), None)
    if rule is None:
        rule = next((r for r in rules.commission_rules
                     if r.kind == "category" and r.key == category), None)
    if rule is None:
        return paid * rules.commission_bp // BP
    return rule.fixed_fen * qty + paid * rule.bp // BP


def swipe_commission(rules, priced: list[tuple[int, dict]], payable: int, reduction: int) -> int:
    """Commission of a swipe: per line, on the line's payable less its share of the
    coupons and the offset (the same floored shares as the points)."""
    total = 0
    for lp, line in priced:
        share = reduction * lp // payable if payable > 0 else 0
        total += line_commission(rules, line["sku"], line["category"], line["qty"], lp - share)
    return total


def debit(card: dict, net: int, rules) -> tuple[int, int]:
    """(from principal, from bonus) of a stored-value payment, in the chain's order."""
    if card["principal_fen"] + card["bonus_fen"] < net:
        raise Rejected(Result.INSUFFICIENT_BALANCE)
    if rules.spend_order == "bonus_first":
        from_bonus = min(net, card["bonus_fen"])
        return net - from_bonus, from_bonus
    from_principal = min(net, card["principal_fen"])
    return from_principal, net - from_principal


def swipe(op: dict, card: dict, ctx: Ctx) -> dict:
    """Return the journal amounts of the swipe and mutate card; raise Rejected untouched."""
    rules, now_s = ctx.rules, ctx.now_s
    check_usable(card, now_s)
    check_pin(op, card, ctx)
    amount = op["amount_fen"]
    check_amount(amount, rules)
    level = effective_level(rules, card["level"])
    lines = swipe_lines(op, ctx)
    member = is_member(card)
    plan_bp = plan_price_bp(card, now_s)
    priced = [(line_payable(rules, level, line, member, plan_bp), line) for line in lines]
    payable = sum(lp for lp, _ in priced)
    redeemed = redeem_coupons(op, ctx, level, priced, payable)
    coupon_fen = sum(off for _, off in redeemed)
    # The offset's share cap applies to what the coupons left.
    offset_fen = points_offset_fen(op, card, payable - coupon_fen, rules)
    net = payable - coupon_fen - offset_fen  # what the member pays in money
    from_principal = from_bonus = 0
    if not op["op_flags"] & OpFlag.PAY_EXTERNAL:
        from_principal, from_bonus = debit(card, net, rules)
    commission = swipe_commission(rules, priced, payable, coupon_fen + offset_fen)
    if commission > rules.max_amount_fen:
        raise Rejected(Result.AMOUNT_TOO_LARGE)
    if op["op_flags"] & OpFlag.GROUP_BUY or not member:
        earned = 0  # group-buy orders and former members earn nothing
    else:
        earned = weighted_points(rules, level, op["store_id"], priced, payable,
                                 coupon_fen + offset_fen)
    if not fits_int64(card["points"] + earned, card["period_points"] + earned,
                      card["spend_total_fen"] + net, card["period_spend_fen"] + net):
        raise Rejected(Result.BALANCE_LIMIT)
    level_before = card["level"]
    card["principal_fen"] -= from_principal
    card["bonus_fen"] -= from_bonus
    if op["points_offset"]:
        spend_points(card, op["points_offset"])
    add_points(card, earned, now_s, rules)
    card["period_points"] += earned
    card["spend_total_fen"] += net
    card["period_spend_fen"] += net
    card["visits"] = min(card["visits"] + 1, UINT32_MAX)
    card["last_visit_s"] = now_s
    upgrade(card, rules, now_s)
    return {"discount_fen": amount - payable, "payable_fen": payable,
            "principal_delta_fen": -from_principal, "bonus_delta_fen": -from_bonus,
            "points_delta": earned - op["points_offset"], "offset_fen": offset_fen,
            "offset_points": op["points_offset"], "coupon_fen": coupon_fen,
            "commission_fen": commission, "level_before": level_before, "redeemed": redeemed}


def recharge(op: dict, card: dict, ctx: Ctx) -> dict:
    rules = ctx.rules
    check_usable(card, ctx.now_s)
    paid = op["amount_fen"]
    check_amount(paid, rules)
    bonus, tier_points = recharge_tier(rules, paid)
    pts = points_earned(paid, rules.recharge_points_per_yuan_bp, BP) + tier_points
    if not is_member(card):
        pts = 0  # the bonus belongs to the recharge; points only to members
    if card["principal_fen"] + card["bonus_fen"] + paid + bonus > rules.max_balance_fen:
        raise Rejected(Result.BALANCE_LIMIT)
    if not fits_int64(card["points"] + pts, card["period_points"] + pts,
                      card["recharge_total_fen"] + paid, card["period_recharge_fen"] + paid):
        raise Rejected(Result.BALANCE_LIMIT)
    level_before = card["level"]
    card["principal_fen"] += paid
    card["bonus_fen"] += bonus
    add_points(card, pts, ctx.now_s, rules)
    card["period_points"] += pts
    card["recharge_total_fen"] += paid
    card["period_recharge_fen"] += paid
    upgrade(card, rules, ctx.now_s)
    return dict(_ZERO_AMOUNTS, payable_fen=paid, principal_delta_fen=paid,
                bonus_delta_fen=bonus, points_delta=pts, level_before=level_before)


def use_count(op: dict, card: dict, ctx: Ctx) -> dict:
    """A count card spends uses of its one service (the op's category), not money."""
    check_usable(card, ctx.now_s)
    check_pin(op, card, ctx)
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
    card["last_visit_s"] = ctx.now_s
    # A service use earns its category's fixed commission per use (no money is paid).
    return dict(_ZERO_AMOUNTS, level_before=level_before,
                commission_fen=line_commission(ctx.rules, 0, op["category"], uses, 0))


def proportional(x: int, before: int, after: int, whole: int) -> int:
    """The part of x that a refund moving the refunded total from before to after gives
    back: cumulative shares, each floored, so refunds that add up to the whole give back
    exactly x."""
    if whole <= 0:
        return 0
    return after * x // whole - before * x // whole


def refund(op: dict, card: dict, ctx: Ctx) -> dict:
    """Give back part (or the rest) of what an accepted swipe of the card took, in
    proportion to the money paid for it (payable less coupons, offset included): the
    principal/bonus split it was debited in, the points it spent (to the lot of the year
    of the swipe), the points it earned (taken back), its spend. A level the swipe
    brought is given back if the card no longer meets it, never below the level the card
    had before the swipe. No PIN; any status but cancelled; expired cards too. Never the
    coupons' value: the refund that completes the paid amount puts the swipe's coupons
    back (apply_batch)."""
    orig, rules = ctx.orig, ctx.rules
    if card["status"] == CardStatus.CANCELLED:
        raise Rejected(Result.CARD_CANCELLED)
    if (orig["op_type"] != OpType.SWIPE or orig["result"] != Result.OK
            or orig["kind"] != RecordKind.KIND_CARD):
        raise Rejected(Result.REFUND_NOT_REFUNDABLE)
    if orig["card_no"] != op["card_no"]:
        raise Rejected(Result.REFUND_CARD_MISMATCH)
    if op["op_flags"] & OpFlag.REFUND_OWN_STORE and orig["store_id"] != op["store_id"]:
        raise Rejected(Result.PERMISSION_DENIED)
    paid = orig["payable_fen"] - orig["coupon_fen"]
    amount = op["amount_fen"]
    if paid == 0 and amount == 0:
        # Coupons paid it all: a reversal of 0 puts the coupons back, once.
        if ctx.refunded_any:
            raise Rejected(Result.REFUND_EXCEEDS_PAID)
    elif amount <= 0:
        raise Rejected(Result.AMOUNT_NOT_POSITIVE)
    before = ctx.refunded_before
    if amount > paid - before:
        raise Rejected(Result.REFUND_EXCEEDS_PAID)
    after = before + amount

    def back(x: int) -> int:
        return proportional(x, before, after, paid)

    principal = back(-orig["principal_delta_fen"])
    bonus = back(-orig["bonus_delta_fen"])
    offset_points = back(orig["offset_points"])
    offset_fen = back(orig["offset_fen"])
    earned = back(orig["points_delta"] + orig["offset_points"])
    spend = back(paid - orig["offset_fen"])
    level_before = card["level"]
    card["principal_fen"] += principal
    card["bonus_fen"] += bonus
    if offset_points:
        give_points_back(card, offset_points, local_year(orig["time_s"], rules.tz_offset_s), rules)
    if earned:
        claw_back_points(card, earned)
    card["spend_total_fen"] -= spend
    card["period_spend_fen"] = max(card["period_spend_fen"] - spend, 0)
    card["period_points"] = max(card["period_points"] - earned, 0)
    if card["level"] > orig["level_before"]:
        card["level"] = min(card["level"], max(level_earned(card, rules), orig["level_before"]))
    return dict(_ZERO_AMOUNTS, payable_fen=amount, principal_delta_fen=principal,
                bonus_delta_fen=bonus, points_delta=offset_points - earned,
                offset_fen=offset_fen, offset_points=offset_points, level_before=level_before,
                commission_fen=-back(orig["commission_fen"]))


_HANDLERS = {OpType.SWIPE: swipe, OpType.RECHARGE: recharge, OpType.USE_COUNT: use_count,
             OpType.REFUND: refund}
_OP_FIELDS_IN_RECORD = ("client_hi", "client_lo", "card_no", "amount_fen", "store_id",
                        "terminal_id", "operator_id", "category", "op_type", "op_flags")


def _known(value) -> tuple[int, int]:
    """A known id's (seq, result); a bare seq is an accepted op."""
    if isinstance(value, tuple):
        return int(value[0]), int(value[1])
    return int(value), int(Result.OK)


def coupon_record(op: dict, coupon_after: dict, op_type: int, amount_fen: int, seq: int,
                  now_s: int, rules_version: int, ref_seq: int, prev_seq: int) -> dict:
    """A coupon's own journal record (kind KIND_COUPON): the op's client id, card, store,
    terminal and operator; amount_fen what the coupon took (0 for a restoration); ref_seq
    the swipe (redemption) or the refund (restoration) it belongs to; prev_seq the record
    it follows from (a redemption: the coupon's issue record; a restoration: the swipe it
    undoes); nothing else of money; the coupon as it is after the op."""
    rec = {name: op[name] for name in _OP_FIELDS_IN_RECORD}
    rec.update(_ZERO_AMOUNTS)
    rec.update(amount_fen=amount_fen, category=0, op_type=int(op_type), op_flags=0,
               level_before=0, seq=seq, time_s=now_s, prev_seq=prev_seq,
               rules_version=rules_version, result=int(Result.OK),
               kind=int(RecordKind.KIND_COUPON), ref_seq=ref_seq, after=dict(coupon_after))
    return rec


@dataclass
class BatchOut:
    results: list[tuple[int, int, int]]
    records: list[dict]
    cards: dict[int, dict]
    known: dict[tuple[int, int], tuple[int, int]]
    refunded: dict[int, int]
    coupons: dict[int, dict]
    redeemed_by: dict[int, list[int]]


@dataclass
class Model:
    """The committed state of one engine: cards, known client ids, the next seq, the
    journal (records by seq), how much of each swipe was refunded, the coupons (by id)
    and which coupons each swipe redeemed."""

    cards: dict[int, dict] = field(default_factory=dict)
    known: dict[tuple[int, int], object] = field(default_factory=dict)
    next_seq: int = 1
    records: list[dict] = field(default_factory=list)
    committed: dict[int, dict] = field(default_factory=dict)
    refunded: dict[int, int] = field(default_factory=dict)
    pin_key: tuple[int, int] = (0, 0)
    coupons: dict[int, dict] = field(default_factory=dict)
    redeemed_by: dict[int, list[int]] = field(default_factory=dict)

    def apply(self, ops: list[dict], rules, now_s: int, rules_version: int | None = None,
              items: list[dict] | None = None, coupon_ids: list[int] | None = None
              ) -> tuple[list[tuple[int, int, int]], list[dict]]:
        """Apply one batch and commit it; return per-op (code, replayed, seq) and the
        batch's journal records (coupon records after their op's card record)."""
        out = apply_batch_full(
            ops, self.cards, rules, self.known, now_s, self.next_seq,
            rules.version if rules_version is None else rules_version,
            items=items, committed=self.committed, refunded=self.refunded,
            pin_key=self.pin_key, coupons=self.coupons, coupon_ids=coupon_ids,
            redeemed_by=self.redeemed_by)
        self.cards, self.known, self.refunded = out.cards, out.known, out.refunded
        self.coupons, self.redeemed_by = out.coupons, out.redeemed_by
        self.next_seq += len(out.records)
        self.records.extend(out.records)
        self.committed.update((r["seq"], r) for r in out.records)
        return out.results, out.records

    def remember(self, rec: dict) -> None:
        """A record made outside the model (an admin op): a refund may name it."""
        self.committed[rec["seq"]] = rec
        self.known.setdefault((rec["client_hi"], rec["client_lo"]), (rec["seq"], rec["result"]))


def apply_batch(ops: list[dict], cards: dict[int, dict], rules, known: dict, now_s: int,
                first_seq: int, rules_version: int, *, items: list[dict] | None = None,
                committed: dict[int, dict] | None = None, refunded: dict[int, int] | None = None,
                pin_key: tuple[int, int] = (0, 0)
                ) -> tuple[list[tuple[int, int, int]], list[dict], dict, dict, dict]:
    """One batch without coupons against committed state; inputs are not mutated.
    Returns (results, records, cards after, known ids after, refunded after)."""
    out = apply_batch_full(ops, cards, rules, known, now_s, first_seq, rules_version,
                           items=items, committed=committed, refunded=refunded,
                           pin_key=pin_key)
    return out.results, out.records, out.cards, out.known, out.refunded


def apply_batch_full(ops: list[dict], cards: dict[int, dict], rules, known: dict, now_s: int,
                     first_seq: int, rules_version: int, *, items: list[dict] | None = None,
                     committed: dict[int, dict] | None = None,
                     refunded: dict[int, int] | None = None, pin_key: tuple[int, int] = (0, 0),
                     coupons: dict[int, dict] | None = None, coupon_ids: list[int] | None = None,
                     redeemed_by: dict[int, list[int]] | None = None) -> BatchOut:
    """One batch against committed state; inputs are not mutated."""
    cards = copy.deepcopy(cards)
    known = {cid: _known(v) for cid, v in known.items()}
    committed = committed or {}
    refunded = dict(refunded or {})
    coupons = copy.deepcopy(coupons or {})
    redeemed_by = {seq: list(ids) for seq, ids in (redeemed_by or {}).items()}
    coupon_ids = [int(c) for c in (coupon_ids or [])]
    items = [dict(it) for it in (items or [])]
    in_batch: dict[tuple[int, int], dict] = {}  # client id -> its record in this batch
    results: list[tuple[int, int, int]] = []
    recs: list[dict] = []
    for raw in ops:
        op = dict(_OP_DEFAULTS, **raw)
        cid = (op["client_hi"], op["client_lo"])
        if cid == (0, 0):
            results.append((Result.CLIENT_ID_INVALID, 0, 0))
            continue
        # A client id seen before answers with its first result and applies nothing.
        if cid in in_batch:
            results.append((in_batch[cid]["result"], 1, in_batch[cid]["seq"]))
            continue
        if cid in known:
            seq, code = known[cid]
            results.append((code, 1, seq))
            continue
        handler = _HANDLERS.get(op["op_type"])
        if handler is None:
            results.append((Result.OP_TYPE_INVALID, 0, 0))
            continue
        orig, refunded_before = None, 0
        if op["op_type"] == OpType.REFUND:
            # The swipe to reverse: a record of this batch, or a committed one.
            ref = (op["ref_hi"], op["ref_lo"])
            if ref in in_batch:
                orig = in_batch[ref]
            elif ref in known:
                orig = committed.get(known[ref][0])
            if orig is None:
                results.append((Result.REFUND_TARGET_NOT_FOUND, 0, 0))
                continue
            refunded_before = refunded.get(orig["seq"], 0)
        if op["card_no"] == 0:
            results.append((Result.CARD_NO_INVALID, 0, 0))
            continue
        if op["card_no"] not in cards:
            results.append((Result.CARD_NOT_FOUND, 0, 0))
            continue
        trial = dict(cards[op["card_no"]])
        ctx = Ctx(rules, now_s, items, pin_key, orig, refunded_before, coupon_ids, coupons,
                  refunded_any=orig is not None and orig["seq"] in refunded)
        try:
            amounts = handler(op, trial, ctx)
            code = Result.OK
        except Rejected as rej:
            results.append((rej.code, 0, 0))
            continue
        except Journalled as jr:
            amounts, code = jr.amounts, jr.code
        redeemed = amounts.pop("redeemed", [])
        seq = first_seq + len(recs)
        rec = {name: op[name] for name in _OP_FIELDS_IN_RECORD}
        rec.update(amounts)
        rec.update(seq=seq, time_s=now_s, prev_seq=cards[op["card_no"]]["last_seq"],
                   rules_version=rules_version, result=int(code), kind=RecordKind.KIND_CARD,
                   ref_seq=orig["seq"] if orig is not None else 0)
        trial["last_seq"] = seq
        rec["after"] = dict(trial)
        cards[op["card_no"]] = trial
        in_batch[cid] = rec
        recs.append(rec)
        results.append((int(code), 0, seq))
        # Each coupon the swipe redeemed: its own record, right after the swipe's.
        for coupon_id, off in redeemed:
            cp = coupons[coupon_id]
            cp.update(coupon_status=CouponStatus.COUPON_REDEEMED, redeemed_seq=seq,
                      redeemed_fen=off)
            recs.append(coupon_record(op, cp, OpType.COUPON_REDEEM, off, first_seq + len(recs),
                                      now_s, rules_version, seq, cp["issued_seq"]))
        if redeemed:
            redeemed_by[seq] = [coupon_id for coupon_id, _ in redeemed]
        if orig is not None:
            refunded[orig["seq"]] = refunded_before + op["amount_fen"]
            # The refund that completes what was paid puts the swipe's coupons back, those
            # still redeemed by it.
            if refunded[orig["seq"]] == orig["payable_fen"] - orig["coupon_fen"]:
                for coupon_id in redeemed_by.get(orig["seq"], []):
                    cp = coupons.get(coupon_id)
                    if (cp is None or cp["coupon_status"] != CouponStatus.COUPON_REDEEMED
                            or cp["redeemed_seq"] != orig["seq"]):
                        continue
                    # Back on the refund's card: the swipe's, or the one replacing it.
                    cp.update(coupon_status=CouponStatus.COUPON_ISSUED, redeemed_seq=0,
                              redeemed_fen=0, card_no=op["card_no"])
                    recs.append(coupon_record(op, cp, OpType.COUPON_RESTORE, 0,
                                              first_seq + len(recs), now_s, rules_version,
                                              seq, orig["seq"]))
    known.update((cid, (rec["seq"], rec["result"])) for cid, rec in in_batch.items())
    return BatchOut(results, recs, cards, known, refunded, coupons, redeemed_by)
