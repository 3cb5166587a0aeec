"""Proof by comparison for coupons: random coupon templates (fixed, percent with or
without a cap, threshold, gift; stores, categories, levels; stackable or not), random
coupon tables (the card's own, another card's, unknown ids, used, void, not yet valid,
expired, of a template the rules no longer hold) and random batches mixing swipes that
name coupons (one, several, the same twice, too many, out of range) with line items,
points offsets, PINs, recharges, count uses and refunds (partial, full: the coupons come
back, and may be redeemed again). Each batch goes through the Cython fast path
(tests/harness.py) and through tests/reference.py; every result code, every journal
record (card and coupon records), the card table, the coupon table and the refunded map
must agree, and the books must balance:

- a swipe's coupon_fen is the sum of its coupon records' amounts, and it never passes
  its payable;
- a redeemed coupon names an accepted swipe of its own card that redeemed it;
- the money, points and refund checks of tests/property/test_property_domain.py.

One multi-batch sequence also runs through a real Engine (LMDB, coupons issued by the
admin op, group commit, checkpoints, restarts, time passing the coupons' windows, rules
that drop a template).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import tempfile

import numpy as np
from harness import FastPath, items_array, ops_array, record_dict
from hypothesis import given, settings
from hypothesis import strategies as st
from reference import COUPONS_PER_OP_MAX, Model, coupon_template
from test_property_domain import (
    NEW_YEARS_EVE,
    NOW,
    PIN_KEY,
    SETTINGS,
    SKUS,
    Clock,
    _engine,
    _take_admin,
    check_books,
    compare_batch,
    domain_cards,
    domain_rules,
    draw_pin,
    open_cards,
    weighted,
)

from core.records import CouponStatus, OpType, RecordKind, Result, join_client_id
from core.rules import (
    MAX_AMOUNT_FEN_LIMIT,
    MAX_BALANCE_FEN_LIMIT,
    MULT_BP_LIMIT,
    RATE_BP_LIMIT,
    CouponTemplate,
    LevelRule,
    RulesConfig,
)

DAY = 86_400
TEMPLATE_IDS = [1, 2, 3, 4, 5, 6]
UNKNOWN_COUPON = 987_654
HOT = (OpType.SWIPE, OpType.RECHARGE, OpType.USE_COUNT, OpType.REFUND, OpType.COUPON_REDEEM,
       OpType.COUPON_RESTORE)


# --- rules ------------------------------------------------------------------------------

small_set = weighted((3, st.just(())),
                     (2, st.lists(st.integers(0, 4), min_size=1, max_size=2, unique=True)
                      .map(tuple)))


@st.composite
def template_of(draw, template_id: int) -> CouponTemplate:
    kind = draw(st.sampled_from(["fixed", "percent", "threshold", "gift"]))
    return CouponTemplate(
        template_id, f"t{template_id}", kind,
        value_fen=draw(weighted((6, st.sampled_from([1, 100, 500, 1_000])),
                                (1, st.sampled_from([3_000, 10**6]))))
        if kind != "percent" else draw(st.sampled_from([0, 0, 700])),
        percent_bp=draw(weighted((5, st.sampled_from([5_000, 8_000, 9_500])),
                                 (1, st.sampled_from([0, 9_999]))))
        if kind == "percent" else draw(st.sampled_from([10_000, 5_000])),
        min_spend_fen=draw(st.sampled_from([1, 1_000, 2_500, 10_000]))
        if kind == "threshold" else draw(st.sampled_from([0, 0, 0, 1, 1_000])),
        max_off_fen=draw(st.sampled_from([0, 0, 1, 300, 5_000])),
        gift_sku=draw(st.sampled_from([*SKUS, 9])) if kind == "gift" else draw(
            st.sampled_from([0, 0, 1])),
        stackable=draw(weighted((2, st.just(True)), (1, st.just(False)))),
        stores=draw(small_set), categories=draw(small_set),
        levels=draw(weighted((5, st.just(())),
                             (1, st.lists(st.integers(0, 3), min_size=1, max_size=2,
                                          unique=True).map(tuple)))),
        valid_days=draw(st.sampled_from([1, 30])))


@st.composite
def coupon_rules(draw) -> RulesConfig:
    rules = draw(domain_rules())
    ids = draw(st.lists(st.sampled_from(TEMPLATE_IDS), min_size=1, max_size=5, unique=True))
    return dataclasses.replace(
        rules, coupon_templates=tuple(draw(template_of(t)) for t in sorted(ids)),
        max_amount_fen=draw(weighted((4, st.just(10**8)), (1, st.just(5_000)))))


@st.composite
def coupon_cards(draw, rules: RulesConfig) -> tuple[list[dict], dict[int, str]]:
    """The domain test's cards, most of them usable (active, not expired, not locked),
    so that swipes get as far as their coupons."""
    cards, card_pins = draw(domain_cards(rules))
    for card in cards:
        if draw(weighted((4, st.just(True)), (1, st.just(False)))):
            card.update(status=1, expires_at_s=0, pin_locked_until_s=0, pin_failures=0)
    return cards, card_pins


# --- coupon tables ----------------------------------------------------------------------


@st.composite
def coupon_tables(draw, card_nos: list[int], template_ids: list[int], now: int = NOW,
                  min_each: int = 0) -> list[dict]:
    """A few coupons on each card of the test (mostly issued and valid now), and now and
    then one that is used or void, not yet valid or expired (or expiring as time moves
    on), of a template the rules do not hold, or on a card the test does not hold."""
    coupons = []
    next_id = draw(st.sampled_from([1, 1_000, 2**40]))
    owners = [no for no in card_nos
              for _ in range(draw(weighted((1, st.just(min_each)),
                                           (6, st.integers(max(min_each, 1), 5)))))]
    owners += [999] * draw(weighted((4, st.just(0)), (1, st.just(1))))
    for owner in owners:
        good = draw(weighted((3, st.just(True)), (1, st.just(False))))
        status = CouponStatus.COUPON_ISSUED if good else draw(st.sampled_from(
            [CouponStatus.COUPON_ISSUED, CouponStatus.COUPON_REDEEMED, CouponStatus.COUPON_VOID]))
        redeemed = status == CouponStatus.COUPON_REDEEMED
        coupons.append(dict(
            coupon_id=next_id, card_no=owner,
            template_id=draw(st.sampled_from(template_ids)) if good else draw(
                weighted((3, st.sampled_from(template_ids)), (1, st.just(77)))),
            coupon_status=int(status),
            valid_from_s=now - DAY if good else draw(st.sampled_from([now - DAY, now, now + 50])),
            valid_to_s=draw(weighted((6, st.just(now + 30 * DAY)), (1, st.just(now + 61))))
            if good else draw(st.sampled_from([now + 30 * DAY, now + 61, now, 0])),
            # Redeemed before the test: by swipes older than any record the test makes.
            redeemed_seq=draw(st.integers(10**9, 10**9 + 50)) if redeemed else 0,
            redeemed_fen=draw(st.integers(1, 500)) if redeemed else 0,
            issued_seq=draw(st.integers(1, 60))))
        next_id += draw(st.sampled_from([1, 1, 7]))
    return coupons


# --- ops --------------------------------------------------------------------------------

amounts = weighted((60, st.integers(1, 6_000)), (25, st.integers(1, 30_000)),
                   (15, st.sampled_from([0, -1, 99, 100, 1_000, 2_500, 10_000, 5_001])))


def draw_lines(data, items: list[dict], max_amount: int) -> tuple[int, dict]:
    """Append a swipe's lines to items (gift skus among them); return (amount, op
    fields). Now and then a line or the amount is wrong (ITEMS_INVALID)."""
    n = data.draw(st.integers(1, 4))
    bad = data.draw(weighted((12, st.just(False)), (1, st.just(True))))
    lines = [dict(sku=data.draw(st.sampled_from([0, *SKUS, 9])),
                  amount_fen=data.draw(st.integers(0, 3_000)),
                  qty=data.draw(st.integers(1, 3)),
                  category=data.draw(st.integers(0, 4)),
                  item_flags=data.draw(weighted((4, st.just(0)), (1, st.just(1)))))
             for _ in range(n)]
    if bad:
        lines[0].update(data.draw(st.sampled_from(
            [dict(qty=0), dict(amount_fen=-1), dict(amount_fen=max_amount + 1)])))
    off = len(items)
    items.extend(lines)
    amount = sum(line["amount_fen"] for line in lines)
    if data.draw(weighted((20, st.just(False)), (1, st.just(True)))):
        amount += 1
    return amount, dict(items_off=off, items_n=n)


def pin_fields(data, card_no: int, card_pins: dict[int, str]) -> dict:
    """Mostly the right PIN (or none for a card without one), else the domain test's mix
    of right, wrong and missing PINs."""
    if card_no in card_pins and data.draw(weighted((3, st.just(True)), (1, st.just(False)))):
        digits = card_pins[card_no]
        return dict(pin=int(digits), pin_len=len(digits))
    return draw_pin(data, card_no, card_pins)


def draw_coupons(data, state: Model, card_no: int, coupon_ids: list[int],
                 bad_ranges: bool) -> dict:
    """Name coupons for a swipe: mostly the card's own (as the batch so far left them,
    so restored ones come back), now and then another card's, an unknown one, the same
    one twice, too many, or a range outside the batch's ids."""
    if not data.draw(weighted((2, st.just(True)), (1, st.just(False)))):
        return {}
    coupons = state.coupons
    mine = sorted(c for c, cp in coupons.items() if cp["card_no"] == card_no)
    issued = [c for c in mine if coupons[c]["coupon_status"] == CouponStatus.COUPON_ISSUED]
    every = sorted(coupons) or [UNKNOWN_COUPON]
    # (weighted() favours its first and last choices: both are the usual one)
    one = weighted((12, st.sampled_from(issued or every)), (1, st.sampled_from(every)),
                   (1, st.just(UNKNOWN_COUPON)), (3, st.sampled_from(mine or every)),
                   (12, st.sampled_from(issued or every)))
    n = data.draw(weighted((16, st.just(1)), (6, st.just(2)), (2, st.just(3)),
                           (1, st.just(COUPONS_PER_OP_MAX + 1) if bad_ranges else st.just(1))))
    names = [data.draw(one) for _ in range(n)]
    off = len(coupon_ids)
    coupon_ids.extend(names)
    fields = dict(coupons_off=off, coupons_n=n)
    if bad_ranges and data.draw(weighted((30, st.just(False)), (1, st.just(True)))):
        fields["coupons_off"] = len(coupon_ids)  # points past the batch's ids
    return fields


def draw_batch(data, model: Model, rules: RulesConfig, card_nos: list[int],
               card_pins: dict[int, str], used: list[tuple[int, int]], now: int, *,
               max_ops: int = 14, bad_ranges: bool = True
               ) -> tuple[list[dict], list[dict], list[int]]:
    """A batch drawn op by op, with what the batch so far did (through the reference) in
    view: coupons are named as that left them (a third of the swipes are plain ones
    meant to redeem one of the card's coupons), and a refund names a swipe (most often
    one that redeemed coupons and is not fully refunded) with an amount chosen against
    what is left of it, so that full refunds, and with them restored coupons that later
    swipes redeem again, are common."""
    ops: list[dict] = []
    items: list[dict] = []
    coupon_ids: list[int] = []
    # The batch so far, applied op by op to a scratch copy of the model: the same state
    # (cards, coupons, refunds, records) as the batch in one piece.
    scratch = copy.deepcopy(model)
    for _ in range(data.draw(st.integers(1, max_ops), label="n_ops")):
        kind = data.draw(weighted((25, st.just(OpType.SWIPE)), (10, st.just(OpType.RECHARGE)),
                                  (5, st.just(OpType.USE_COUNT)), (3, st.sampled_from([0, 9])),
                                  (32, st.just(OpType.REFUND)), (25, st.just(OpType.SWIPE))))
        if used and data.draw(weighted((12, st.just(False)), (1, st.just(True)))):
            cid = data.draw(st.sampled_from(used))  # a retry, or a clash
        else:
            cid = data.draw(weighted((97, st.tuples(st.just(0), st.integers(1, 10**6))),
                                     (3, st.just((0, 0)))))
        card_no = data.draw(weighted((25, st.sampled_from(card_nos)), (1, st.just(999))))
        op = dict(client_hi=cid[0], client_lo=cid[1], card_no=card_no, op_type=int(kind),
                  store_id=data.draw(st.integers(0, 4)), terminal_id=data.draw(st.integers(0, 3)),
                  operator_id=data.draw(st.integers(0, 3)), category=data.draw(st.integers(0, 4)),
                  op_flags=data.draw(weighted((6, st.just(0)), (1, st.sampled_from([1, 2, 3])))))
        coupons_now = scratch.coupons
        issued = [c for c, cp in sorted(coupons_now.items()) if cp["card_no"] == card_no
                  and cp["coupon_status"] == CouponStatus.COUPON_ISSUED]
        if kind == OpType.SWIPE and issued and data.draw(weighted((2, st.just(False)),
                                                                  (1, st.just(True)))):
            # A plain swipe that should redeem one of the card's coupons: the right PIN,
            # a store the coupon allows, an amount that often meets its minimum.
            coupon_id = data.draw(st.sampled_from(issued))
            tpl = coupon_template(rules, coupons_now[coupon_id]["template_id"])
            if card_no in card_pins:
                op.update(pin=int(card_pins[card_no]), pin_len=len(card_pins[card_no]))
            if tpl is not None and tpl.stores:
                op["store_id"] = data.draw(st.sampled_from(tpl.stores))
            if tpl is not None and tpl.categories:
                op["category"] = data.draw(st.sampled_from(tpl.categories))
            op["op_flags"] = 0
            if tpl is not None and tpl.kind == "gift":
                # The gift and something else.
                items.append(dict(sku=tpl.gift_sku, amount_fen=data.draw(st.integers(1, 3_000)),
                                  qty=1, category=op["category"], item_flags=0))
                items.append(dict(sku=0, amount_fen=data.draw(st.integers(0, 5_000)), qty=1,
                                  category=data.draw(st.integers(0, 4)), item_flags=0))
                op.update(items_off=len(items) - 2, items_n=2,
                          amount_fen=items[-1]["amount_fen"] + items[-2]["amount_fen"])
            else:
                op["amount_fen"] = data.draw(st.integers(2_000, min(30_000, rules.max_amount_fen)))
            op.update(coupons_off=len(coupon_ids), coupons_n=1)
            coupon_ids.append(coupon_id)
        elif kind == OpType.SWIPE:
            op.update(pin_fields(data, card_no, card_pins))
            if data.draw(st.booleans()):
                amount, fields = draw_lines(data, items, rules.max_amount_fen)
                op.update(fields)
            else:
                amount = data.draw(amounts)
            op["amount_fen"] = amount
            op.update(draw_coupons(data, scratch, card_no, coupon_ids, bad_ranges))
            if op.get("coupons_n") and data.draw(weighted((4, st.just(True)), (1, st.just(False)))):
                # Mostly at a store the first coupon allows.
                first = coupons_now.get(
                    coupon_ids[op["coupons_off"]] if op["coupons_off"] < len(coupon_ids) else -1)
                tpl = first and coupon_template(rules, first["template_id"])
                if tpl and tpl.stores:
                    op["store_id"] = data.draw(st.sampled_from(tpl.stores))
            unit = max(rules.offset_points_per_yuan // math.gcd(rules.offset_points_per_yuan, 100), 1)
            op["points_offset"] = data.draw(weighted(
                (10, st.just(0)), (6, st.sampled_from([unit * k for k in range(1, 41)])),
                (2, st.sampled_from([100, 300, 7, 1_000])), (1, st.just(-1))))
        elif kind == OpType.USE_COUNT:
            op.update(pin_fields(data, card_no, card_pins))
            op["category"] = data.draw(st.sampled_from([1, 2, 3]))
            op["amount_fen"] = data.draw(st.sampled_from([1, 2, 0, 200]))
        elif kind == OpType.REFUND:
            swipes = [r for r in scratch.records
                      if r["op_type"] == OpType.SWIPE and r["result"] == Result.OK
                      and r["kind"] == RecordKind.KIND_CARD]
            refunded = scratch.refunded
            # Swipes that redeemed coupons and are not fully refunded yet.
            with_coupons = [r for r in swipes if r["coupon_fen"] and refunded.get(r["seq"], 0)
                            < r["payable_fen"] - r["coupon_fen"]]
            pick = data.draw(weighted((3, st.just("coupons")), (3, st.just("swipe")),
                                      (1, st.just("used")), (1, st.just("unknown")),
                                      (3, st.just("coupons"))))
            if pick == "coupons" and with_coupons:
                ref = data.draw(st.sampled_from([(r["client_hi"], r["client_lo"])
                                                 for r in with_coupons]))
            elif pick in ("coupons", "swipe") and swipes:
                ref = data.draw(st.sampled_from([(r["client_hi"], r["client_lo"])
                                                 for r in swipes]))
            elif pick == "used" and used:
                ref = data.draw(st.sampled_from(used))
            else:
                ref = (0, data.draw(st.integers(1, 10**6)))
            op["ref_hi"], op["ref_lo"] = ref
            target = next((r for r in swipes if (r["client_hi"], r["client_lo"]) == ref), None)
            left = 0
            if target is not None:
                left = target["payable_fen"] - target["coupon_fen"] - refunded.get(target["seq"], 0)
                if data.draw(weighted((12, st.just(True)), (1, st.just(False)))):
                    op["card_no"] = target["card_no"]
            op["amount_fen"] = data.draw(st.sampled_from(
                [left, left, left, left, max(left // 2, 1), 1, left + 1, 0]))
        else:
            op["amount_fen"] = data.draw(amounts)
        if kind != OpType.SWIPE and data.draw(weighted((15, st.just(False)), (1, st.just(True)))):
            # Only a swipe reads its coupons; on any other op they are ignored.
            op.update(coupons_off=len(coupon_ids), coupons_n=1)
            coupon_ids.append(data.draw(st.sampled_from(sorted(model.coupons) or [1])))
        ops.append(op)
        used.append(cid)
        scratch.apply([op], rules, now, 1, items=items, coupon_ids=coupon_ids)
    return ops, items, coupon_ids


# --- checks ----------------------------------------------------------------------------


def check_coupon_books(records: list[dict], coupons: dict[int, dict]) -> None:
    """Each swipe's coupon_fen is what its coupon records took; a redeemed coupon was
    redeemed by an accepted swipe of its card; restorations follow full refunds."""
    by_seq = {r["seq"]: r for r in records}
    took: dict[int, int] = {}
    for r in records:
        if r["kind"] == RecordKind.KIND_COUPON and r["op_type"] == OpType.COUPON_REDEEM:
            swipe = by_seq[r["ref_seq"]]
            assert swipe["op_type"] == OpType.SWIPE and swipe["result"] == Result.OK
            assert r["after"]["card_no"] == swipe["card_no"] == r["card_no"]
            assert r["amount_fen"] == r["after"]["redeemed_fen"] > 0
            took[swipe["seq"]] = took.get(swipe["seq"], 0) + r["amount_fen"]
        elif r["kind"] == RecordKind.KIND_COUPON and r["op_type"] == OpType.COUPON_RESTORE:
            refund = by_seq[r["ref_seq"]]
            swipe = by_seq[refund["ref_seq"]]
            assert refund["op_type"] == OpType.REFUND and r["prev_seq"] == swipe["seq"]
            assert r["after"]["coupon_status"] == CouponStatus.COUPON_ISSUED
    for r in records:
        if r["kind"] == RecordKind.KIND_CARD and r["op_type"] == OpType.SWIPE:
            assert r["coupon_fen"] == took.get(r["seq"], 0), r
            assert 0 <= r["coupon_fen"] <= r["payable_fen"]
    for cp in coupons.values():
        if cp["coupon_status"] == CouponStatus.COUPON_REDEEMED and cp["redeemed_seq"] in by_seq:
            swipe = by_seq[cp["redeemed_seq"]]
            assert swipe["card_no"] == cp["card_no"] and swipe["op_type"] == OpType.SWIPE


# --- the fast path on numpy arrays -----------------------------------------------------


@settings(max_examples=60, **SETTINGS)
@given(data=st.data(), rules=coupon_rules())
def test_coupons_fastpath_matches_reference(data, rules):
    cards, card_pins = data.draw(coupon_cards(rules), label="cards")
    card_nos = [c["card_no"] for c in cards]
    now = data.draw(st.sampled_from([NOW, NOW, NEW_YEARS_EVE]), label="now")
    coupons = data.draw(coupon_tables(card_nos, [t.template_id for t in rules.coupon_templates],
                                      now), label="coupons")
    fast = FastPath(cards, next_seq=100, coupons=coupons)
    model = Model(cards={c["card_no"]: dict(c) for c in cards}, next_seq=100, pin_key=PIN_KEY,
                  coupons={cp["coupon_id"]: dict(cp) for cp in coupons})
    assert fast.coupon_dicts() == model.coupons
    compiled = rules.compile(PIN_KEY)
    used: list[tuple[int, int]] = []
    for _ in range(data.draw(st.integers(1, 4), label="batches")):
        ops, items, coupon_ids = draw_batch(data, model, rules, card_nos, card_pins, used, now)
        got, got_recs, _, _ = fast.apply(ops, compiled, now, items, coupon_ids)
        want, want_recs = model.apply(ops, rules, now, items=items, coupon_ids=coupon_ids)
        compare_batch(got, got_recs, want, want_recs, ops)
        assert fast.card_dicts() == model.cards
        assert fast.coupon_dicts() == model.coupons
        now += data.draw(weighted((8, st.sampled_from([0, 1, 61])), (1, st.just(30 * DAY))),
                         label="dt")
    assert fast.refunded_dict() == model.refunded
    check_books({c["card_no"]: c for c in cards}, fast.card_dicts(),
                [r for r in model.records if r["kind"] == RecordKind.KIND_CARD])
    check_coupon_books(model.records, model.coupons)


@settings(max_examples=30, **SETTINGS)
@given(data=st.data(), rules=coupon_rules())
def test_one_card_coupons_redeemed_refunded_and_redeemed_again_in_one_batch(data, rules):
    """One funded card with many coupons, one long batch: swipes redeem coupons, refunds
    in the same batch complete them and put the coupons back, later swipes of the batch
    redeem them again."""
    cards, _ = data.draw(coupon_cards(rules), label="cards")
    card = dict(cards[0], card_no=5, status=1, expires_at_s=0, principal_fen=10**6,
                pin_hash=0, pin_locked_until_s=0)
    coupons = data.draw(coupon_tables([5], [t.template_id for t in rules.coupon_templates],
                                      min_each=3), label="coupons")
    fast = FastPath([card], coupons=coupons)
    model = Model(cards={5: dict(card)}, pin_key=PIN_KEY,
                  coupons={cp["coupon_id"]: dict(cp) for cp in coupons})
    ops, items, coupon_ids = draw_batch(data, model, rules, [5], {}, [], NOW, max_ops=30)
    got, got_recs, _, _ = fast.apply(ops, rules.compile(PIN_KEY), NOW, items, coupon_ids)
    want, want_recs = model.apply(ops, rules, NOW, items=items, coupon_ids=coupon_ids)
    compare_batch(got, got_recs, want, want_recs, ops)
    assert fast.card_dicts() == model.cards
    assert fast.coupon_dicts() == model.coupons
    assert fast.refunded_dict() == model.refunded
    check_books({5: card}, fast.card_dicts(),
                [r for r in model.records if r["kind"] == RecordKind.KIND_CARD])
    check_coupon_books(model.records, model.coupons)


@settings(max_examples=80, **SETTINGS)
@given(data=st.data())
def test_amounts_whose_products_pass_64_bits(data):
    """Swipes up to the largest amount the rules allow, at the highest rates, with lines,
    offsets and coupons: a line's share of the reductions (reduction x line payable) and
    the points (yuan x rate x multipliers) then pass 64 bits, where the fast path divides
    in 128 bits (below them, in 64); to the fen and the point it must agree with the
    reference either way."""
    amount = weighted((1, st.integers(1, 10**6)), (3, st.integers(10**11, MAX_AMOUNT_FEN_LIMIT)))
    rules = RulesConfig(
        max_amount_fen=MAX_AMOUNT_FEN_LIMIT, max_balance_fen=MAX_BALANCE_FEN_LIMIT,
        points_per_yuan_bp=data.draw(st.sampled_from([RATE_BP_LIMIT, 10_000])),
        levels=(LevelRule("regular", discount_bp=data.draw(st.sampled_from([10_000, 9_000])),
                          points_mult_bp=data.draw(st.sampled_from([MULT_BP_LIMIT, 10_000]))),),
        category_points_mult_bp=((1, MULT_BP_LIMIT),),
        store_points_mult_bp=((1, MULT_BP_LIMIT),),
        offset_points_per_yuan=1, offset_max_bp=10_000,
        commission_bp=data.draw(st.sampled_from([0, 10_000])),
        coupon_templates=(
            CouponTemplate(1, "percent", "percent", valid_days=30,
                           percent_bp=data.draw(st.sampled_from([1, 5_000, 9_999]))),
            CouponTemplate(2, "fixed", "fixed", valid_days=30,
                           value_fen=data.draw(st.sampled_from([1, 10**9, MAX_AMOUNT_FEN_LIMIT])))))
    card = dict(data.draw(domain_cards(rules), label="cards")[0][0], card_no=5, status=1,
                expires_at_s=0, pin_hash=0, pin_locked_until_s=0, level=0, flags=0,
                principal_fen=MAX_BALANCE_FEN_LIMIT // 2, bonus_fen=0, lot_year=0,
                lot0_points=0, lot1_points=0, lot2_points=0, permanent_points=10**13,
                points=10**13)
    n_ops = data.draw(st.integers(1, 6), label="ops")
    coupons = [dict(coupon_id=100 + k, card_no=5, template_id=data.draw(st.sampled_from([1, 2])),
                    coupon_status=int(CouponStatus.COUPON_ISSUED), valid_from_s=NOW - DAY,
                    valid_to_s=NOW + 30 * DAY, redeemed_seq=0, redeemed_fen=0, issued_seq=1)
               for k in range(n_ops)]
    ops, items, coupon_ids = [], [], []
    for k in range(n_ops):
        total = data.draw(amount, label="amount")
        cuts = sorted(data.draw(st.lists(st.integers(0, total), max_size=3), label="cuts"))
        parts = [b - a for a, b in zip([0, *cuts], [*cuts, total], strict=True)]
        op = dict(client_hi=1, client_lo=k + 1, card_no=5, amount_fen=total, op_type=OpType.SWIPE,
                  store_id=data.draw(st.sampled_from([0, 1])), category=1,
                  points_offset=data.draw(st.sampled_from([0, 1, total // 300])),
                  items_off=len(items), items_n=len(parts))
        items += [dict(sku=SKUS[j % len(SKUS)], amount_fen=part, qty=1, category=j % 2, item_flags=0)
                  for j, part in enumerate(parts)]
        if data.draw(st.booleans(), label="coupon"):
            op.update(coupons_off=len(coupon_ids), coupons_n=1)
            coupon_ids.append(100 + k)
        ops.append(op)
    fast = FastPath([card], coupons=coupons)
    model = Model(cards={5: dict(card)}, pin_key=PIN_KEY,
                  coupons={cp["coupon_id"]: dict(cp) for cp in coupons})
    got, got_recs, _, _ = fast.apply(ops, rules.compile(PIN_KEY), NOW, items, coupon_ids)
    want, want_recs = model.apply(ops, rules, NOW, items=items, coupon_ids=coupon_ids)
    compare_batch(got, got_recs, want, want_recs, ops)
    assert fast.card_dicts() == model.cards
    assert fast.coupon_dicts() == model.coupons


# --- the same through a real Engine (LMDB, checkpoints, restarts) -----------------------


def _take_coupons(eng, model: Model, card_nos: list[int]) -> None:
    """Coupons issued by the admin op, as the engine holds them."""
    for no in card_nos:
        for cp in eng.coupons_of(no):
            model.coupons[cp["coupon_id"]] = cp


def _issue(data, eng, model: Model, card_nos: list[int], tag: int) -> None:
    templates = eng.rules.coupon_templates
    if not templates:
        return
    tpl = data.draw(st.sampled_from(templates))
    nos = data.draw(st.lists(st.sampled_from(card_nos), min_size=1, max_size=4))
    res = eng.issue_coupons(tpl.template_id, nos, join_client_id(4, tag)).result()
    assert res.code == Result.OK, res
    _take_admin(eng, model, card_nos)
    _take_coupons(eng, model, card_nos)


@settings(max_examples=15, **SETTINGS)
@given(data=st.data(), rules=coupon_rules())
def test_coupons_engine_matches_reference(data, rules):
    clock = Clock(NOW)
    card_nos = data.draw(st.lists(st.sampled_from([1, 2, 3, 7]), min_size=1, max_size=3,
                                  unique=True), label="cards")
    with tempfile.TemporaryDirectory() as path:
        eng = _engine(path, clock, rules)
        try:
            model = Model(pin_key=eng._pin_key)
            card_pins, start = open_cards(data, eng, model, card_nos, clock.now, [0, 1])
            for k in range(data.draw(st.integers(1, 3))):
                _issue(data, eng, model, card_nos, k)
            used: list[tuple[int, int]] = [(7, 100)]
            for phase in range(data.draw(st.integers(2, 4), label="phases")):
                action = data.draw(st.sampled_from(["none", "restart", "restart", "time",
                                                    "issue", "rules"]))
                if action == "restart":
                    eng.close()
                    eng = _engine(path, clock)
                elif action == "time":
                    clock.now += data.draw(st.sampled_from([61, 1_800, DAY + 1, 31 * DAY]))
                elif action == "issue":
                    _issue(data, eng, model, card_nos, 100 + phase)
                elif action == "rules":
                    # The same rules with fewer templates: coupons of a dropped one no
                    # longer apply.
                    keep = data.draw(st.lists(st.sampled_from(rules.coupon_templates),
                                              unique_by=lambda t: t.template_id))
                    new = dataclasses.replace(eng.rules, coupon_templates=tuple(keep))
                    assert eng.set_rules(new, join_client_id(9, phase)).result().code == Result.OK
                    _take_admin(eng, model, card_nos)
                batches = [draw_batch(data, model, eng.rules, card_nos, card_pins, used,
                                      clock.now, max_ops=10, bad_ranges=False)
                           for _ in range(data.draw(st.integers(1, 2)))]
                # Batches are drawn against the model before any is applied (the engine
                # may run them as one batch); results still must agree.
                futures = [eng.submit(ops_array(ops), items_array(items) if items else None,
                                      np.array(ids, dtype=np.uint64) if ids else None)
                           for ops, items, ids in batches]
                version = eng.stats()["rules_version"]
                for (ops, items, ids), fut in zip(batches, futures, strict=True):
                    res = fut.result()
                    got = [(int(c), int(r), int(s))
                           for c, r, s in zip(res.codes, res.replayed, res.seq, strict=True)]
                    first = model.next_seq
                    want, want_recs = model.apply(ops, eng.rules, clock.now, version, items=items,
                                                  coupon_ids=ids)
                    got_recs = [record_dict(r) for r in eng.journal(first, len(want_recs))]
                    compare_batch(got, got_recs, want, want_recs, ops)
                for no in card_nos:
                    assert eng.card(no) == model.cards[no]
                    assert {c["coupon_id"]: c for c in eng.coupons_of(no)} == {
                        c: cp for c, cp in model.coupons.items() if cp["card_no"] == no}
            journal = eng.journal(1, 10**6)
            hot = [record_dict(r) for r in journal if int(r["op_type"]) in HOT]
            assert hot == model.records
            check_books(start, {no: eng.card(no) for no in card_nos},
                        [r for r in model.records if r["kind"] == RecordKind.KIND_CARD])
            check_coupon_books(model.records, model.coupons)
            # A restart rebuilds the same cards and coupons.
            eng.close()
            eng = _engine(path, clock)
            for no in card_nos:
                assert eng.card(no) == model.cards[no]
            assert {c: eng.coupon(c) for c in model.coupons} == model.coupons
        finally:
            eng.close()
