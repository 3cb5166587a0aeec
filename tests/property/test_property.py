"""Proof by comparison: random rules, card tables and batches go through the Cython fast
path (directly on numpy arrays, and through a real Engine over LMDB) and through the
plain-Python model in tests/reference.py; every result, every journal record and the
final card table must agree."""

from __future__ import annotations

import tempfile

from harness import FastPath, blank_card, ops_array
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from property_shared import Clock, compare_batch, weighted
from reference import INT64_MAX, Model

from core import Engine, EngineConfig
from core.records import CardStatus, OpType, Result, join_client_id, journal_to_dict
from core.rules import (
    MAX_AMOUNT_FEN_LIMIT,
    MAX_BALANCE_FEN_LIMIT,
    MULT_BP_LIMIT,
    RATE_BP_LIMIT,
    BonusTier,
    LevelRule,
    RulesConfig,
)

NOW = 1_700_000_000
NEW_YEARS_EVE = 1_704_038_000  # 2023-12-31 15:53 UTC: 23:53 in UTC+8, 2024 in UTC+14
UINT64_MAX = 2**64 - 1
INT64_MIN = -(2**63)

# --- rules ------------------------------------------------------------------------------

discount_bp = st.one_of(st.sampled_from([10_000, 9_800, 9_500, 8_850, 5_000, 1, 0]),
                        st.integers(0, 10_000))
mult_bp = st.one_of(st.sampled_from([10_000, 12_000, 15_000, 0, MULT_BP_LIMIT]),
                    st.integers(0, MULT_BP_LIMIT))
rate_bp = st.one_of(st.sampled_from([10_000, 0, 5_000, 20_000, RATE_BP_LIMIT]),
                    st.integers(0, RATE_BP_LIMIT))
small_threshold = st.one_of(st.just(0), st.integers(1, 3_000), st.sampled_from([10_000, 50_000]))


@st.composite
def level_rules(draw, i: int) -> LevelRule:
    return LevelRule(
        name=f"l{i}", discount_bp=draw(discount_bp), points_mult_bp=draw(mult_bp),
        up_points=draw(small_threshold), up_spend_fen=draw(small_threshold),
        up_recharge_fen=draw(small_threshold), keep_spend_fen=0,
        validity_days=draw(st.sampled_from([0, 1, 730])))


@st.composite
def rules_configs(draw) -> RulesConfig:
    n_levels = draw(st.integers(1, 4))
    levels = tuple(draw(level_rules(i)) for i in range(n_levels))
    mins = sorted(draw(st.sets(st.integers(1, 20_000), max_size=3)))
    tiers = tuple(BonusTier(m, draw(st.integers(0, 5_000)), draw(st.integers(0, 300)))
                  for m in mins)
    return RulesConfig(
        version=draw(st.integers(1, 50)),
        rounding=draw(st.sampled_from(["half_up", "floor"])),
        spend_order=draw(st.sampled_from(["principal_first", "bonus_first"])),
        max_amount_fen=draw(weighted((1, st.just(1)), (3, st.just(5_000)),
                                     (6, st.sampled_from([10**8, MAX_AMOUNT_FEN_LIMIT])))),
        max_balance_fen=draw(st.sampled_from([10_000, 10**6, 10**10, MAX_BALANCE_FEN_LIMIT])),
        points_per_yuan_bp=draw(rate_bp),
        recharge_points_per_yuan_bp=draw(rate_bp),
        levels=levels,
        tiers=tiers,
        no_points_categories=tuple(draw(st.sets(st.integers(0, 3), max_size=2))),
        category_points_mult_bp=tuple(sorted(draw(st.dictionaries(
            st.integers(0, 4), mult_bp, max_size=3)).items())),
        store_points_mult_bp=tuple(sorted(draw(st.dictionaries(
            st.integers(0, 5), mult_bp, max_size=3)).items())),
        points_valid_years=draw(st.sampled_from([0, 1, 2])),
        tz_offset_s=draw(st.sampled_from([8 * 3_600, 0, -14 * 3_600, 14 * 3_600])),
    )


# --- cards ------------------------------------------------------------------------------

CARD_NOS = [1, 2, 3, 7, 1000, UINT64_MAX]
balance = weighted((6, st.integers(0, 3_000)), (3, st.integers(0, 10**6)),
                   (1, st.integers(0, MAX_BALANCE_FEN_LIMIT)))
counter = weighted((9, st.integers(0, 60_000)), (1, st.integers(INT64_MAX - 10**6, INT64_MAX)))
expiry = weighted((8, st.just(0)), (2, st.sampled_from([NOW - 1, NOW, NOW + 1, NOW + 86_400])))
status = weighted((8, st.just(CardStatus.ACTIVE)),
                  (2, st.sampled_from([CardStatus.LOST, CardStatus.FROZEN, CardStatus.CANCELLED,
                                       CardStatus.DORMANT, 0, 9])))


@st.composite
def card_tables(draw) -> list[dict]:
    nos = draw(st.lists(st.sampled_from(CARD_NOS), min_size=1, max_size=5, unique=True))
    cards = []
    for no in nos:
        # Points are their lots plus the permanent ones (the card invariant a debug build
        # of the fast path checks): small and made of the lots, or any count with the
        # permanent points the rest.
        lots = (draw(st.sampled_from([0, 0, 7])), draw(st.sampled_from([0, 11])),
                draw(st.sampled_from([0, 13])))
        if draw(st.booleans()):
            permanent = draw(st.sampled_from([0, 17]))
            points = sum(lots) + permanent
        else:
            points = max(draw(counter), sum(lots))
            permanent = points - sum(lots)
        cards.append(blank_card(
            no, principal_fen=draw(balance), bonus_fen=draw(balance), points=points,
            spend_total_fen=draw(counter), period_spend_fen=draw(counter),
            period_points=draw(counter),
            period_recharge_fen=draw(st.one_of(st.integers(0, 60_000),
                                               st.just(INT64_MAX - 5))),
            recharge_total_fen=draw(counter), expires_at_s=draw(expiry),
            level=draw(st.integers(0, 5)), status=int(draw(status)),
            visits=draw(st.sampled_from([0, 5, 2**32 - 2, 2**32 - 1])),
            last_seq=draw(st.integers(0, 30)), member_id=draw(st.integers(0, 99)),
            level_expires_at_s=draw(st.sampled_from([0, NOW + 5])),
            last_visit_s=draw(st.sampled_from([0, NOW - 100])),
            count_service=draw(st.sampled_from([0, 0, 1, 2])),
            count_uses=draw(st.sampled_from([0, 1, 5, 2**31 - 1])),
            lot_year=draw(st.sampled_from([0, 0, 2021, 2022, 2023, 2024])),
            lot0_points=lots[0], lot1_points=lots[1], lot2_points=lots[2],
            permanent_points=permanent,
            # A targeted plan's member price: none, running (ending just around now or
            # a batch later), or ended; above and below the level discounts.
            plan_price_bp=draw(weighted((6, st.just(0)),
                                        (4, st.sampled_from([1_000, 8_850, 9_499, 9_999])))),
            plan_price_plan=draw(st.sampled_from([0, 3])),
            plan_price_until_s=draw(st.sampled_from([0, NOW - 1, NOW, NOW + 1, NOW + 86_400,
                                                     NOW + 3 * 366 * 86_400]))))
    return cards


# --- ops --------------------------------------------------------------------------------

client_ids = weighted((85, st.tuples(st.just(0), st.integers(1, 25))),
                      (8, st.tuples(st.integers(1, 3), st.integers(0, 3))),
                      (5, st.just((0, 0))),
                      (2, st.just((UINT64_MAX, UINT64_MAX))))
amounts = weighted((50, st.integers(1, 5_000)), (25, st.integers(1, 30_000)),
                   (15, st.sampled_from([0, -1, 1, 49, 50, 99, 100, 149, 150, 199, 5_000, 5_001,
                                         10**8, 10**8 + 1, MAX_AMOUNT_FEN_LIMIT,
                                         MAX_AMOUNT_FEN_LIMIT + 1, INT64_MAX, INT64_MIN])),
                   (10, st.integers(INT64_MIN, INT64_MAX)))
op_types = weighted((50, st.just(OpType.SWIPE)), (33, st.just(OpType.RECHARGE)),
                    (7, st.just(OpType.USE_COUNT)),
                    (10, st.sampled_from([0, 4, OpType.ISSUE, OpType.SET_STATUS, 255])))


@st.composite
def ops_for(draw, card_nos: list[int], max_size: int = 30) -> list[dict]:
    targets = weighted((85, st.sampled_from(card_nos)), (10, st.sampled_from([0, 4, 999])),
                       (5, st.integers(0, UINT64_MAX)))
    n = draw(st.integers(1, max_size))
    ops = []
    for _ in range(n):
        hi, lo = draw(client_ids)
        ops.append(dict(
            client_hi=hi, client_lo=lo,
            card_no=draw(targets),
            amount_fen=draw(amounts),
            store_id=draw(weighted((9, st.integers(0, 6)), (1, st.integers(0, 2**32 - 1)))),
            terminal_id=draw(st.integers(0, 9)), operator_id=draw(st.integers(0, 9)),
            category=draw(st.sampled_from([0, 1, 2, 3, 4, 65_535])),
            op_type=int(draw(op_types)),
            op_flags=draw(weighted((7, st.just(0)), (3, st.sampled_from([1, 2, 3, 255]))))))
    return ops


known_ids = st.dictionaries(st.tuples(st.just(0), st.integers(1, 12)), st.integers(1, 40),
                            max_size=4)


# --- the fast path on numpy arrays -----------------------------------------------------


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), rules=rules_configs(), cards=card_tables(), known=known_ids)
def test_fastpath_matches_reference(data, rules, cards, known):
    card_nos = [c["card_no"] for c in cards]
    fast = FastPath(cards, known, next_seq=100)
    model = Model(cards={c["card_no"]: dict(c) for c in cards}, known=dict(known), next_seq=100)
    compiled = rules.compile()
    # Now and then start on the last evening of a year, so that local time (and with it
    # the points lot) crosses into the next year between batches.
    now = data.draw(st.sampled_from([NOW, NOW, NEW_YEARS_EVE]), label="now")
    for _ in range(data.draw(st.integers(1, 3), label="batches")):
        ops = data.draw(ops_for(card_nos), label="ops")
        now += data.draw(st.sampled_from([0, 0, 1, 86_400, 2 * 366 * 86_400]), label="dt")
        got, got_recs, _, _ = fast.apply(ops, compiled, now)
        want, want_recs = model.apply(ops, rules, now)
        compare_batch(got, got_recs, want, want_recs, ops)
    assert fast.card_dicts() == model.cards


@settings(max_examples=100, deadline=None)
@given(data=st.data(), rules=rules_configs())
def test_same_card_many_times_in_one_batch(data, rules):
    """One funded card hit by a long batch of swipes and recharges: each op sees the
    ones before it, levels are crossed in the middle of the batch."""
    card = blank_card(5, principal_fen=data.draw(st.integers(0, 20_000)),
                      bonus_fen=data.draw(st.integers(0, 5_000)))
    ops = []
    for k in range(data.draw(st.integers(1, 60))):
        kind = data.draw(st.sampled_from([OpType.SWIPE, OpType.SWIPE, OpType.RECHARGE]))
        ops.append(dict(client_hi=0, client_lo=data.draw(st.integers(1, 80)), card_no=5,
                        amount_fen=data.draw(st.integers(1, 9_000)), store_id=k,
                        terminal_id=0, operator_id=0, category=data.draw(st.integers(0, 4)),
                        op_type=int(kind), op_flags=data.draw(st.sampled_from([0, 0, 0, 1]))))
    fast = FastPath([card])
    model = Model(cards={5: dict(card)})
    got, got_recs, _, _ = fast.apply(ops, rules.compile(), NOW)
    want, want_recs = model.apply(ops, rules, NOW)
    compare_batch(got, got_recs, want, want_recs, ops)
    assert fast.card_dicts() == model.cards
    # Each accepted record chains to the one before it on the card.
    prev = 0
    for rec in got_recs:
        assert rec["prev_seq"] == prev
        prev = rec["seq"]


# --- the same through a real Engine (LMDB, group commit, restart) ----------------------


def _engine(path: str, clock: Clock, rules: RulesConfig | None = None) -> Engine:
    return Engine(path, config=EngineConfig(sync=False, batch_ops_max=64, queue_ops_max=4096),
                  rules=rules, clock=clock)


def _sync_model(eng: Engine, model: Model, card_nos: list[int]) -> None:
    """Take admin effects (issue, status) from the engine into the model."""
    model.cards = {no: eng.card(no) for no in card_nos}
    model.next_seq = eng.stats()["last_seq"] + 1


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data(), rules=rules_configs())
def test_engine_matches_reference(data, rules):
    clock = Clock(NOW)
    card_nos = data.draw(st.lists(st.sampled_from(CARD_NOS), min_size=1, max_size=4,
                                  unique=True), label="cards")
    with tempfile.TemporaryDirectory() as path:
        eng = _engine(path, clock, rules)
        try:
            model = Model()
            admin_ids: dict[tuple[int, int], int] = {}
            n_levels = len(eng.rules.levels)
            for i, no in enumerate(card_nos):
                cid = (7, 100 + i)
                res = eng.issue_cards([no], join_client_id(*cid),
                                      level=data.draw(st.integers(0, n_levels - 1)),
                                      expires_at_s=data.draw(st.sampled_from(
                                          [0, NOW + 10, NOW + 10**6]))).result()
                assert res.code == Result.OK
                admin_ids[cid] = res.seq
            for i, no in enumerate(card_nos):
                move = data.draw(st.sampled_from([None, None, CardStatus.LOST, CardStatus.FROZEN,
                                                  CardStatus.CANCELLED, CardStatus.DORMANT]))
                if move is not None:
                    cid = (8, 100 + i)
                    res = eng.set_card_status(no, move, join_client_id(*cid)).result()
                    assert res.code == Result.OK
                    admin_ids[cid] = res.seq
            _sync_model(eng, model, card_nos)
            model.known.update(admin_ids)
            for phase in range(data.draw(st.integers(1, 4), label="phases")):
                action = data.draw(st.sampled_from(["none", "none", "rules", "restart", "time"]))
                if action == "rules":
                    new = data.draw(rules_configs(), label="new rules")
                    cid = (9, phase)
                    res = eng.set_rules(new, join_client_id(*cid)).result()
                    assert res.code == Result.OK
                    model.known[cid] = res.seq
                    model.next_seq = res.seq + 1
                elif action == "restart":
                    eng.close()
                    eng = _engine(path, clock)
                elif action == "time":
                    clock.now += 11
                batches = [data.draw(ops_for(card_nos, max_size=20), label="ops")
                           for _ in range(data.draw(st.integers(1, 3)))]
                futures = [eng.submit(ops_array(b)) for b in batches]
                version = eng.stats()["rules_version"]
                for ops, fut in zip(batches, futures, strict=True):
                    res = fut.result()
                    got = [(int(c), int(r), int(s))
                           for c, r, s in zip(res.codes, res.replayed, res.seq, strict=True)]
                    want, want_recs = model.apply(ops, eng.rules, clock.now, version)
                    got_recs = [journal_to_dict(res.record(i)) for i in range(len(ops))
                                if got[i][0] == Result.OK and not got[i][1]]
                    compare_batch(got, got_recs, want, want_recs, ops)
                    # Replays carry the first op's record, fresh or from the journal.
                    for i, (_code, replayed, seq) in enumerate(got):
                        if replayed:
                            assert int(res.record(i)["seq"]) == seq
            for no in card_nos:
                assert eng.card(no) == model.cards[no]
            # The journal holds exactly the model's records, after the admin ones.
            journal = eng.journal(1, 10**6)
            hot = [journal_to_dict(r) for r in journal
                   if int(r["op_type"]) in (OpType.SWIPE, OpType.RECHARGE)]
            assert hot == model.records
            assert [int(s) for s in journal["seq"]] == list(range(1, len(journal) + 1))
            # A restart changes nothing: the card table is rebuilt to the same state.
            eng.close()
            eng = _engine(path, clock)
            for no in card_nos:
                assert eng.card(no) == model.cards[no]
        finally:
            eng.close()
