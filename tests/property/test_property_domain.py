"""Proof by comparison for the swipe's domain features: random rules (member prices,
multipliers, points offsets, PIN settings, points validity), random cards (PINs, some
locked; points lots and debts; count cards) and random batches mixing swipes with line
items, offsets and PINs (right, wrong, missing), recharges, count uses and refunds
(partial, full, over, of swipes in earlier batches and in the same batch, of unknown or
unrefundable ids), with duplicate client ids. Each batch goes through the Cython fast
path (tests/harness.py, passing items, refund targets and the refunded map as the
engine does) and through tests/reference.py; every result, record and the final state
must agree, and the books must balance:

- on every card, points == lot0 + lot1 + lot2 + permanent;
- for every card, its starting balance, bonus and points plus the deltas of its journal
  records are its final balance, bonus and points;
- no swipe is refunded beyond what was paid for it.

One multi-batch sequence also runs through a real Engine (LMDB, checkpoints, restarts).
"""

from __future__ import annotations

import math
import tempfile

from harness import FastPath, blank_card, items_array, ops_array
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from property_shared import Clock, compare_batch, weighted
from reference import LOTS, Model, apply_batch

from core import Engine, EngineConfig
from core._fastpath import pin_hash
from core.records import (
    CardFlag,
    CardStatus,
    OpType,
    RecordKind,
    Result,
    join_client_id,
    journal_to_dict,
)
from core.rules import (
    COMMISSION_FIXED_FEN_LIMIT,
    RATE_BP_LIMIT,
    BonusTier,
    CommissionRule,
    LevelRule,
    RulesConfig,
)

NOW = 1_700_000_000  # 2023-11-14
NEW_YEARS_EVE = 1_704_038_000  # 2023-12-31 23:53 in UTC+8
PIN_KEY = (0x0123_4567_89AB_CDEF, 0xFEDC_BA98_7654_3210)
SKUS = [1, 2, 3]
CARD_NOS = [1, 2, 3, 7]
SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                      HealthCheck.data_too_large])


# --- rules ------------------------------------------------------------------------------

discount_bp = st.one_of(st.sampled_from([10_000, 9_800, 9_500, 8_850, 5_000, 0]),
                        st.integers(0, 10_000))
mult_bp = st.one_of(st.sampled_from([10_000, 12_000, 15_000, 20_000, 0]), st.integers(0, 100_000))
threshold = st.one_of(st.just(0), st.integers(1, 3_000), st.sampled_from([10_000]))


@st.composite
def domain_rules(draw) -> RulesConfig:
    n_levels = draw(st.integers(1, 3))
    # A level lasts days or calendar years (never both).
    validity = st.sampled_from([(0, 0), (1, 0), (730, 0), (0, 1), (0, 2)])
    levels = tuple(LevelRule(
        f"l{i}", discount_bp=draw(discount_bp), points_mult_bp=draw(mult_bp),
        up_points=draw(threshold), up_spend_fen=draw(threshold),
        up_recharge_fen=draw(threshold), validity_days=days, validity_years=years)
        for i, (days, years) in ((i, draw(validity)) for i in range(n_levels)))
    price = st.one_of(st.just(0), st.integers(1, 1_500))
    member_prices = tuple(
        (sku, tuple(draw(price) for _ in range(n_levels)))
        for sku in sorted(draw(st.sets(st.sampled_from(SKUS), max_size=3))))
    mins = sorted(draw(st.sets(st.integers(1, 20_000), max_size=2)))
    fixed = st.sampled_from([0, 1, 500, COMMISSION_FIXED_FEN_LIMIT])
    share = st.sampled_from([0, 1, 300, 10_000])
    commission_rules = tuple(
        [CommissionRule("sku", sku, draw(fixed), draw(share))
         for sku in sorted(draw(st.sets(st.sampled_from(SKUS), max_size=2)))]
        + [CommissionRule("category", cat, draw(fixed), draw(share))
           for cat in sorted(draw(st.sets(st.integers(0, 4), max_size=2)))])
    return RulesConfig(
        version=draw(st.integers(1, 9)),
        rounding=draw(st.sampled_from(["half_up", "floor"])),
        spend_order=draw(st.sampled_from(["principal_first", "bonus_first"])),
        max_amount_fen=draw(st.sampled_from([5_000, 10**8])),
        max_balance_fen=draw(st.sampled_from([10**6, 10**10])),
        points_per_yuan_bp=draw(st.sampled_from([10_000, 0, 5_000, 20_000, RATE_BP_LIMIT])),
        recharge_points_per_yuan_bp=draw(st.sampled_from([0, 10_000, 30_000])),
        levels=levels,
        tiers=tuple(BonusTier(m, draw(st.integers(0, 2_000)), draw(st.integers(0, 300)))
                    for m in mins),
        no_points_categories=tuple(draw(st.sets(st.integers(0, 4), max_size=2))),
        category_points_mult_bp=tuple(sorted(draw(st.dictionaries(
            st.integers(0, 4), mult_bp, max_size=3)).items())),
        store_points_mult_bp=tuple(sorted(draw(st.dictionaries(
            st.integers(0, 3), mult_bp, max_size=2)).items())),
        member_prices=member_prices,
        offset_points_per_yuan=draw(st.sampled_from([100, 100, 0, 1, 7, 300, 1_000])),
        offset_max_bp=draw(st.one_of(st.sampled_from([5_000, 10_000, 0]), st.integers(0, 10_000))),
        offset_max_points=draw(st.sampled_from([0, 0, 50, 1_000])),
        points_valid_years=draw(st.sampled_from([0, 1, 2])),
        tz_offset_s=draw(st.sampled_from([8 * 3_600, 0, -14 * 3_600, 14 * 3_600])),
        pin_max_failures=draw(st.sampled_from([1, 2, 3, 5, 5])),
        pin_lock_s=draw(st.sampled_from([0, 60, 1_800])),
        commission_bp=draw(st.sampled_from([0, 0, 150, 10_000])),
        commission_rules=commission_rules,
    )


# --- cards ------------------------------------------------------------------------------

pins = st.text("0123456789", min_size=4, max_size=6)


@st.composite
def domain_cards(draw, rules: RulesConfig) -> tuple[list[dict], dict[int, str]]:
    """Cards whose points are the sum of their lots and pool; some with a PIN (the
    digits are returned by card number), some locked, some count cards."""
    nos = draw(st.lists(st.sampled_from(CARD_NOS), min_size=1, max_size=4, unique=True))
    cards, card_pins = [], {}
    for no in nos:
        lot_year = draw(st.sampled_from([0, 2022, 2023]))
        lots = [draw(st.sampled_from([0, 40, 700, 5_000])) if lot_year else 0 for _ in LOTS]
        permanent = draw(st.sampled_from([0, 0, 300, -200]))
        card = blank_card(
            no, principal_fen=draw(st.sampled_from([0, 500, 3_000, 50_000, 10**6])),
            bonus_fen=draw(st.sampled_from([0, 0, 300, 20_000])),
            lot_year=lot_year, lot0_points=lots[0], lot1_points=lots[1], lot2_points=lots[2],
            permanent_points=permanent, points=sum(lots) + permanent,
            period_points=draw(st.integers(0, 3_000)),
            period_spend_fen=draw(st.integers(0, 3_000)),
            period_recharge_fen=draw(st.integers(0, 3_000)),
            spend_total_fen=draw(st.integers(0, 10**5)),
            level=draw(st.integers(0, len(rules.levels))),
            status=int(draw(weighted((9, st.just(CardStatus.ACTIVE)),
                                     (1, st.sampled_from([CardStatus.FROZEN,
                                                          CardStatus.CANCELLED]))))),
            expires_at_s=draw(weighted((9, st.just(0)), (1, st.just(NOW + 90_000)))),
            count_service=draw(st.sampled_from([0, 0, 1, 2])),
            count_uses=draw(st.sampled_from([0, 1, 5, 100])),
            visits=draw(st.sampled_from([0, 3, 2**32 - 1])),
            # Some former members (membership ended): shelf prices, no points.
            flags=draw(st.sampled_from([0, 0, 0, int(CardFlag.CARD_FLAG_MEMBERSHIP_LAPSED)])),
            last_seq=draw(st.integers(0, 30)))
        if draw(st.booleans()):
            digits = draw(pins)
            salt = draw(st.integers(0, 2**64 - 1))
            card_pins[no] = digits
            card.update(pin_salt=salt, pin_hash=pin_hash(*PIN_KEY, salt, digits),
                        pin_failures=draw(st.integers(0, 4)),
                        pin_locked_until_s=draw(st.sampled_from([0, 0, 0, NOW - 1, NOW + 100])))
        cards.append(card)
    return cards, card_pins


# --- ops --------------------------------------------------------------------------------

amounts = weighted((60, st.integers(1, 5_000)), (20, st.integers(1, 30_000)),
                   (20, st.sampled_from([0, -1, 99, 100, 5_000, 5_001])))


def draw_pin(data, card_no: int, card_pins: dict[int, str]) -> dict:
    digits = card_pins.get(card_no)
    mode = data.draw(st.sampled_from(["right"] * 6 + ["wrong", "wrong", "none"])
                     if digits else st.sampled_from(["none", "none", "none", "wrong"]))
    if mode == "none":
        return {}
    if mode == "right":
        return dict(pin=int(digits), pin_len=len(digits))
    wrong = data.draw(pins)
    if wrong == digits:
        wrong = wrong[1:] or "0"  # the same digits without the first: a different PIN
    return dict(pin=int(wrong), pin_len=len(wrong))


def draw_lines(data, items: list[dict], max_amount: int) -> tuple[int, dict]:
    """Append a swipe's lines to items; return (amount, op fields)."""
    n = data.draw(st.integers(1, 4))
    lines = [dict(sku=data.draw(st.sampled_from([0, *SKUS, 9])),
                  amount_fen=data.draw(weighted((9, st.integers(0, 3_000)),
                                                (1, st.sampled_from([-1, max_amount + 1])))),
                  qty=data.draw(weighted((9, st.integers(1, 3)), (1, st.just(0)))),
                  category=data.draw(st.integers(0, 4)),
                  item_flags=data.draw(st.sampled_from([0, 0, 0, 1])))
             for _ in range(n)]
    off = len(items)
    items.extend(lines)
    amount = sum(line["amount_fen"] for line in lines)
    if data.draw(weighted((9, st.just(False)), (1, st.just(True)))):
        amount += data.draw(st.sampled_from([-1, 1, 100]))
    fields = dict(items_off=off, items_n=n)
    if data.draw(weighted((19, st.just(False)), (1, st.just(True)))):
        fields["items_n"] = n + 1 + len(items)  # points past the items
    return amount, fields


def draw_batch(data, model: Model, rules: RulesConfig, card_nos: list[int],
               card_pins: dict[int, str], used: list[tuple[int, int]], now: int, *,
               max_ops: int = 16, bad_ranges: bool = True) -> tuple[list[dict], list[dict]]:
    """A batch drawn op by op. A refund names an id used before (often a swipe), and its
    amount is chosen against what is left of that swipe, found by a dry run of the
    batch so far through the reference."""
    ops: list[dict] = []
    items: list[dict] = []
    for _ in range(data.draw(st.integers(1, max_ops), label="n_ops")):
        kind = data.draw(weighted((45, st.just(OpType.SWIPE)), (12, st.just(OpType.RECHARGE)),
                                  (8, st.just(OpType.USE_COUNT)), (30, st.just(OpType.REFUND)),
                                  (5, st.sampled_from([0, 9, 200]))))
        if used and data.draw(weighted((9, st.just(False)), (1, st.just(True)))):
            cid = data.draw(st.sampled_from(used))  # a retry, or a clash
        else:
            cid = data.draw(weighted((95, st.tuples(st.just(0), st.integers(1, 60))),
                                     (5, st.just((0, 0)))))
        card_no = data.draw(weighted((18, st.sampled_from(card_nos)),
                                     (1, st.sampled_from([0, 999]))))
        op = dict(client_hi=cid[0], client_lo=cid[1], card_no=card_no, op_type=int(kind),
                  store_id=data.draw(st.integers(0, 4)), terminal_id=data.draw(st.integers(0, 3)),
                  operator_id=data.draw(st.integers(0, 3)), category=data.draw(st.integers(0, 4)),
                  op_flags=data.draw(st.sampled_from([0, 0, 0, 1, 2, 3, 4, 4, 5])))
        if kind == OpType.SWIPE:
            op.update(draw_pin(data, card_no, card_pins))
            if data.draw(st.booleans()):
                amount, fields = draw_lines(data, items, rules.max_amount_fen)
                if not bad_ranges:
                    fields["items_n"] = min(fields["items_n"], len(items) - fields["items_off"])
                op.update(fields)
            else:
                amount = data.draw(amounts)
            op["amount_fen"] = amount
            # Offsets: mostly whole fen at the chain's rate, within or near the caps.
            unit = max(rules.offset_points_per_yuan // math.gcd(rules.offset_points_per_yuan, 100), 1)
            op["points_offset"] = data.draw(weighted(
                (8, st.just(0)), (8, st.sampled_from([unit * k for k in range(1, 61)])),
                (3, st.sampled_from([100, 300, 1, 7, 50, 700, 1_000])),
                (2, st.integers(0, 3_000)), (1, st.sampled_from([-1, 10**14]))))
        elif kind == OpType.USE_COUNT:
            op.update(draw_pin(data, card_no, card_pins))
            op["category"] = data.draw(st.sampled_from([1, 2, 3]))
            op["amount_fen"] = data.draw(st.sampled_from([1, 1, 2, 5, 6, 0, -1, 101, 200]))
        elif kind == OpType.REFUND:
            _res, recs, _cards, _known, refunded = apply_batch(
                ops, model.cards, rules, model.known, now, model.next_seq, 1, items=items,
                committed=model.committed, refunded=model.refunded, pin_key=model.pin_key)
            swipes = [(r["client_hi"], r["client_lo"]) for r in [*model.records, *recs]
                      if r["op_type"] == OpType.SWIPE and r["result"] == Result.OK]
            pick = data.draw(weighted((7, st.just("swipe")), (2, st.just("used")),
                                      (1, st.just("unknown"))))
            if pick == "swipe" and swipes:
                ref = data.draw(st.sampled_from(swipes))
            elif pick == "used" and used:
                ref = data.draw(st.sampled_from(used))
            else:
                ref = (0, data.draw(st.integers(1, 80)))
            op["ref_hi"], op["ref_lo"] = ref
            target = next((r for r in recs if (r["client_hi"], r["client_lo"]) == ref), None)
            if target is None and ref in model.known:
                target = model.committed.get(model.known[ref][0])
            left = 0
            if target is not None:
                left = target["payable_fen"] - target["coupon_fen"] - refunded.get(target["seq"], 0)
                if data.draw(weighted((9, st.just(True)), (1, st.just(False)))):
                    op["card_no"] = target["card_no"]
            op["amount_fen"] = data.draw(st.sampled_from(
                [left, left, max(left // 2, 1), max(left // 3, 1), left + 1, 1, 0, -5, 1_000]))
        else:
            op["amount_fen"] = data.draw(amounts)
        ops.append(op)
        used.append(cid)
    return ops, items


# --- checks ----------------------------------------------------------------------------


def check_books(start: dict[int, dict], final: dict[int, dict], records: list[dict]) -> None:
    """Lots add up to points; journal deltas add up to each card's change; refunds never
    pass what was paid."""
    for no, card in final.items():
        assert card["points"] == sum(card[k] for k in LOTS) + card["permanent_points"], card
        mine = [r for r in records if r["card_no"] == no]
        for field, delta in (("principal_fen", "principal_delta_fen"),
                             ("bonus_fen", "bonus_delta_fen"), ("points", "points_delta")):
            assert start[no][field] + sum(r[delta] for r in mine) == card[field], (no, field)
    by_seq = {r["seq"]: r for r in records}
    refunded: dict[int, int] = {}
    for r in records:
        if r["op_type"] == OpType.REFUND and r["result"] == Result.OK:
            refunded[r["ref_seq"]] = refunded.get(r["ref_seq"], 0) + r["amount_fen"]
    for seq, total in refunded.items():
        swipe = by_seq[seq]
        assert swipe["op_type"] == OpType.SWIPE and swipe["result"] == Result.OK
        assert total <= swipe["payable_fen"] - swipe["coupon_fen"]
    # PIN failures are journalled with nothing but the card's PIN state changed.
    for r in records:
        if r["result"] != Result.OK:
            assert r["result"] in (Result.PIN_WRONG, Result.PIN_LOCKED)
            assert r["principal_delta_fen"] == r["bonus_delta_fen"] == r["points_delta"] == 0


known_ids = st.dictionaries(st.tuples(st.just(0), st.integers(61, 64)),
                            st.tuples(st.integers(1, 50), st.sampled_from(
                                [Result.OK, Result.PIN_WRONG, Result.PIN_LOCKED])), max_size=3)


# --- the fast path on numpy arrays -----------------------------------------------------


@settings(max_examples=100, **SETTINGS)
@given(data=st.data(), rules=domain_rules(), known=known_ids)
def test_domain_fastpath_matches_reference(data, rules, known):
    cards, card_pins = data.draw(domain_cards(rules), label="cards")
    card_nos = [c["card_no"] for c in cards]
    known = {k: (s, int(r)) for k, (s, r) in known.items()}
    fast = FastPath(cards, known, next_seq=100)
    model = Model(cards={c["card_no"]: dict(c) for c in cards}, known=dict(known),
                  next_seq=100, pin_key=PIN_KEY)
    compiled = rules.compile(PIN_KEY)
    used = list(known)
    now = data.draw(st.sampled_from([NOW, NOW, NEW_YEARS_EVE]), label="now")
    for _ in range(data.draw(st.integers(1, 4), label="batches")):
        ops, items = draw_batch(data, model, rules, card_nos, card_pins, used, now)
        got, got_recs, _, _ = fast.apply(ops, compiled, now, items)
        want, want_recs = model.apply(ops, rules, now, items=items)
        compare_batch(got, got_recs, want, want_recs, ops)
        assert fast.card_dicts() == model.cards
        now += data.draw(st.sampled_from([0, 1, 61, 1_800, 200 * 86_400, 366 * 86_400]),
                         label="dt")
    assert fast.refunded_dict() == model.refunded
    check_books({c["card_no"]: c for c in cards}, fast.card_dicts(), model.records)


@settings(max_examples=40, **SETTINGS)
@given(data=st.data(), rules=domain_rules())
def test_one_card_swiped_and_refunded_in_one_batch(data, rules):
    """One funded card hit by a long batch: swipes with offsets, refunds of them in the
    same batch, level changes in the middle."""
    cards, card_pins = data.draw(domain_cards(rules), label="cards")
    card = dict(cards[0], card_no=5, status=CardStatus.ACTIVE, expires_at_s=0,
                principal_fen=10**6)
    card_pins = {5: card_pins[cards[0]["card_no"]]} if cards[0]["card_no"] in card_pins else {}
    fast = FastPath([card])
    model = Model(cards={5: dict(card)}, pin_key=PIN_KEY)
    ops, items = draw_batch(data, model, rules, [5], card_pins, [], NOW, max_ops=40)
    got, got_recs, _, _ = fast.apply(ops, rules.compile(PIN_KEY), NOW, items)
    want, want_recs = model.apply(ops, rules, NOW, items=items)
    compare_batch(got, got_recs, want, want_recs, ops)
    assert fast.card_dicts() == model.cards
    assert fast.refunded_dict() == model.refunded
    check_books({5: card}, fast.card_dicts(), model.records)


@settings(max_examples=100, **SETTINGS)
@given(data=st.data(), rules=domain_rules())
def test_full_refund_restores_the_money(data, rules):
    """A swipe refunded in full, in any number of parts, gives back exactly what it took:
    principal, bonus, points (as a total), spend."""
    cards, _ = data.draw(domain_cards(rules), label="cards")
    card = dict(cards[0], status=CardStatus.ACTIVE, expires_at_s=0, pin_hash=0)
    no = card["card_no"]
    model = Model(cards={no: dict(card)}, pin_key=PIN_KEY)
    ops, items = draw_batch(data, model, rules, [no], {}, [], NOW, max_ops=1)
    swipe = dict(ops[0], client_hi=1, client_lo=1, op_type=OpType.SWIPE, card_no=no)
    fast = FastPath([card])
    compiled = rules.compile(PIN_KEY)
    got, recs, _, _ = fast.apply([swipe], compiled, NOW, items)
    if got[0][0] != Result.OK:
        return
    paid = recs[0]["payable_fen"]
    cuts = data.draw(st.lists(st.integers(1, max(paid, 1)), max_size=4))
    left, k = paid, 0
    while left > 0:
        cut = min(cuts[k], left) if k < len(cuts) else left
        r, _, _, _ = fast.apply([dict(client_hi=2, client_lo=k, card_no=no, amount_fen=cut,
                                      op_type=OpType.REFUND, ref_hi=1, ref_lo=1)], compiled, NOW)
        assert r[0][0] == Result.OK
        left -= cut
        k += 1
    after = fast.card(no)
    for field in ("principal_fen", "bonus_fen", "points", "spend_total_fen"):
        assert after[field] == card[field], field
    r, _, _, _ = fast.apply([dict(client_hi=3, client_lo=1, card_no=no, amount_fen=1,
                                  op_type=OpType.REFUND, ref_hi=1, ref_lo=1)], compiled, NOW)
    assert r[0][0] == Result.REFUND_EXCEEDS_PAID


def test_offset_cannot_spend_points_the_card_owes():
    """A card with 100 points in a lot and a debt of 60 holds 40: it may spend 40, not
    100 (the debt is paid first)."""
    rules = RulesConfig(levels=(LevelRule("regular"),))
    card = blank_card(1, principal_fen=10_000, points=40, lot_year=2023, lot0_points=100,
                      permanent_points=-60)
    for points, code in ((100, Result.INSUFFICIENT_POINTS), (41, Result.INSUFFICIENT_POINTS),
                         (40, Result.OK)):
        fast = FastPath([card])
        model = Model(cards={1: dict(card)})
        op = dict(client_lo=1, card_no=1, amount_fen=1_000, op_type=1, points_offset=points)
        got, recs, _, _ = fast.apply([op], rules.compile(), NOW)
        want, want_recs = model.apply([op], rules, NOW)
        assert got[0][0] == code and got == want and recs == want_recs
        assert fast.card(1)["points"] >= 0 and fast.card_dicts() == model.cards


# --- the same through a real Engine (LMDB, checkpoints, restart) -----------------------


def _engine(path: str, clock: Clock, rules: RulesConfig | None = None) -> Engine:
    # The clock jumps up to years here; client ids (and so refund targets) must stay known
    # longer than that, as the model keeps them forever.
    return Engine(path, config=EngineConfig(sync=False, batch_ops_max=64, queue_ops_max=4096,
                                            checkpoint_ops=7, id_retention_s=100 * 365 * 86_400),
                  rules=rules, clock=clock)


def _take_admin(eng: Engine, model: Model, card_nos: list[int]) -> None:
    """Take admin effects (issue, PIN, status) and their records from the engine."""
    model.cards = {no: eng.card(no) for no in card_nos}
    for rec in eng.journal(model.next_seq, 10**6):
        model.remember(journal_to_dict(rec))
    model.next_seq = eng.stats()["last_seq"] + 1


def open_cards(data, eng: Engine, model: Model, card_nos: list[int], now: int,
               services: list[int]) -> tuple[dict[int, str], dict[int, dict]]:
    """Issue the cards (random level, maybe a count card of one of services, maybe a
    PIN), take them into the model, and fund them through the hot path, where the model
    must agree. Returns the PINs by card and the cards as issued."""
    card_pins: dict[int, str] = {}
    for i, no in enumerate(card_nos):
        assert eng.issue_cards(
            [no], join_client_id(7, 100 + i),
            level=data.draw(st.integers(0, len(eng.rules.levels) - 1)),
            count_service=data.draw(st.sampled_from(services)),
            count_uses=data.draw(st.sampled_from([0, 5]))).result().code == Result.OK
        if data.draw(st.booleans()):
            digits = data.draw(pins)
            card_pins[no] = digits
            assert eng.set_pin(no, digits, join_client_id(8, 100 + i)).result().code == Result.OK
    _take_admin(eng, model, card_nos)
    start = {no: dict(model.cards[no]) for no in card_nos}
    fund = [dict(client_hi=6, client_lo=i, card_no=no, op_type=OpType.RECHARGE,
                 amount_fen=data.draw(st.sampled_from([5_000, 100_000])))
            for i, no in enumerate(card_nos)]
    res = eng.submit(ops_array(fund)).result()
    want, _ = model.apply(fund, eng.rules, now)
    assert [int(c) for c in res.codes] == [w[0] for w in want]
    return card_pins, start


@settings(max_examples=12, **SETTINGS)
@given(data=st.data(), rules=domain_rules())
def test_domain_engine_matches_reference(data, rules):
    clock = Clock(NOW)
    card_nos = data.draw(st.lists(st.sampled_from(CARD_NOS), min_size=1, max_size=3,
                                  unique=True), label="cards")
    with tempfile.TemporaryDirectory() as path:
        eng = _engine(path, clock, rules)
        try:
            model = Model(pin_key=eng._pin_key)
            card_pins, start = open_cards(data, eng, model, card_nos, clock.now, [0, 1, 2])
            used: list[tuple[int, int]] = [(7, 100)]
            for _phase in range(data.draw(st.integers(2, 4), label="phases")):
                action = data.draw(st.sampled_from(["none", "restart", "restart", "time"]))
                if action == "restart":
                    eng.close()
                    eng = _engine(path, clock)
                elif action == "time":
                    clock.now += data.draw(st.sampled_from([61, 1_800, 200 * 86_400]))
                batches = [draw_batch(data, model, eng.rules, card_nos, card_pins, used,
                                      clock.now, max_ops=10, bad_ranges=False)
                           for _ in range(data.draw(st.integers(1, 2)))]
                # Batches are drawn against the model before any is applied, so a refund
                # aims at the state before its batch; results still must agree.
                futures = [eng.submit(ops_array(ops), items_array(items) if items else None)
                           for ops, items in batches]
                version = eng.stats()["rules_version"]
                for (ops, items), fut in zip(batches, futures, strict=True):
                    res = fut.result()
                    got = [(int(c), int(r), int(s))
                           for c, r, s in zip(res.codes, res.replayed, res.seq, strict=True)]
                    want, want_recs = model.apply(ops, eng.rules, clock.now, version, items=items)
                    got_recs = [journal_to_dict(res.record(i)) for i in range(len(ops))
                                if got[i][2] and not got[i][1]]
                    compare_batch(got, got_recs, want, want_recs, ops)
            for no in card_nos:
                assert eng.card(no) == model.cards[no]
            journal = eng.journal(1, 10**6)
            hot = [journal_to_dict(r) for r in journal if int(r["op_type"]) in
                   (OpType.SWIPE, OpType.RECHARGE, OpType.USE_COUNT, OpType.REFUND)]
            assert hot == model.records
            check_books(start, {no: eng.card(no) for no in card_nos},
                        [r for r in model.records if r["kind"] == RecordKind.KIND_CARD])
            # A restart rebuilds the same cards and the same refunded totals: every
            # further refund of a fully refunded swipe is refused.
            eng.close()
            eng = _engine(path, clock)
            for no in card_nos:
                assert eng.card(no) == model.cards[no]
            probe = [dict(client_hi=5, client_lo=k, card_no=model.committed[seq]["card_no"],
                          op_type=OpType.REFUND, amount_fen=1,
                          ref_hi=model.committed[seq]["client_hi"],
                          ref_lo=model.committed[seq]["client_lo"])
                     for k, seq in enumerate(sorted(model.refunded))]
            if probe:
                res = eng.submit(ops_array(probe)).result()
                want, _ = model.apply(probe, eng.rules, clock.now, eng.stats()["rules_version"])
                assert [int(c) for c in res.codes] == [w[0] for w in want]
        finally:
            eng.close()
