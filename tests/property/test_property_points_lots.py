"""The card invariant points == lot0 + lot1 + lot2 + permanent (core/_fastpath.pxd), in
release terms: random workloads through a real Engine (hot swipes earning points and
offsetting them, recharges with tier points, refunds; admin adjustments, debts, make-ups,
gift redemptions, replacements, expiry runs across year ends, restarts) and, after every
batch, every card of the table and the after-image of every record journalled since
the last check hold it. A debug build of the fast path (MMS_DEBUG=1,
README.md, "Debug build") checks the same after each op it applies; this test
needs no build."""

from __future__ import annotations

import tempfile

import numpy as np
from harness import tagged_op
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from property_shared import Clock

from core import BonusTier, Engine, EngineConfig, RulesConfig
from core.domain import cards as card_admin
from core.domain.points import expire_points
from core.domain.points_admin import Gift, adjust_points, make_up_points, put_gift, redeem_gift
from core.records import OP_NAMES, OpType, RecordKind, Result, card_to_dict

NOW = 1_704_000_000  # 2023-12-31 05:20 UTC: a year end is a few hours away
LOTS = ("lot0_points", "lot1_points", "lot2_points", "permanent_points")
CARD_NOS = (1, 2, 3)
GIFT = 5


def _engine(path: str, clock: Clock, rules: RulesConfig | None = None) -> Engine:
    return Engine(path, config=EngineConfig(sync=False, batch_ops_max=64, checkpoint_ops=5,
                                            id_retention_s=100 * 365 * 86_400),
                  rules=rules, clock=clock)


def _holds(card: dict) -> bool:
    return card["points"] == sum(card[k] for k in LOTS)


def check_invariant(eng: Engine, since_seq: int) -> int:
    """Every card of the table, and every card after-image journalled after since_seq,
    holds points == the sum of its lots. Returns the last seq checked."""
    table = eng.cards_snapshot()
    bad = [card_to_dict(c) for c in table if not _holds(card_to_dict(c))]
    assert not bad, bad
    recs = eng.journal(since_seq + 1, 10**6)
    for rec in recs:
        if int(rec["kind"]) == RecordKind.KIND_CARD:
            after = card_to_dict(rec["after"])
            assert _holds(after), (int(rec["seq"]), int(rec["op_type"]), after)
    for rec in recs:
        if int(rec["points_delta"]):
            event(f"points moved by {OP_NAMES[int(rec['op_type'])]}")
    return int(recs[-1]["seq"]) if len(recs) else since_seq


rules_st = st.builds(
    RulesConfig,
    points_per_yuan_bp=st.sampled_from([10_000, 25_000, 333]),
    points_valid_years=st.sampled_from([0, 1, 2]),
    offset_points_per_yuan=st.sampled_from([0, 100, 7]),
    offset_max_bp=st.sampled_from([5_000, 10_000]),
    tiers=st.sampled_from([(), (BonusTier(10_000, 500, 30),)]),
)

action = st.one_of(
    st.tuples(st.just("swipe"), st.sampled_from(CARD_NOS), st.integers(1, 40_000),
              st.sampled_from([0, 0, 50, 500, 10**6])),
    st.tuples(st.just("recharge"), st.sampled_from(CARD_NOS), st.sampled_from([5_000, 20_000])),
    st.tuples(st.just("refund"), st.integers(0, 50), st.sampled_from([1, 100, 1_000, 10**6])),
    st.tuples(st.just("adjust"), st.sampled_from(CARD_NOS), st.integers(-3_000, 3_000),
              st.booleans()),
    st.tuples(st.just("make_up"), st.sampled_from(CARD_NOS), st.integers(1, 50_000)),
    st.tuples(st.just("gift"), st.sampled_from(CARD_NOS), st.integers(1, 3)),
    st.tuples(st.just("replace"), st.sampled_from(CARD_NOS)),
    st.tuples(st.just("expire")),
    st.tuples(st.just("time"), st.sampled_from([3_600, 86_400, 200 * 86_400, 366 * 86_400,
                                                    3 * 366 * 86_400])),
    st.tuples(st.just("restart")),
)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(rules=rules_st, batches=st.lists(st.lists(action, min_size=1, max_size=6),
                                        min_size=1, max_size=6))
def test_points_equal_the_sum_of_lots_after_every_batch(rules, batches):
    clock = Clock(NOW)
    with tempfile.TemporaryDirectory() as path:
        eng = _engine(path, clock, rules)
        try:
            current = {no: no for no in CARD_NOS}   # card_no -> the card standing for it now
            next_no = 100
            assert eng.issue_cards(list(CARD_NOS), b"issue".ljust(16, b".")).result().code == Result.OK
            assert put_gift(eng, Gift(GIFT, "Mug", 400, 10**6), b"gift".ljust(16, b".")).result().code \
                == Result.OK
            fund = np.concatenate([tagged_op(f"fund{no}", no, 1_000_000, OpType.RECHARGE)[0]
                                   for no in CARD_NOS])
            assert set(eng.submit(fund).result().codes.tolist()) == {Result.OK}
            swipes: list[tuple[str, int]] = []  # (tag, the card it was made on)
            seen = check_invariant(eng, 0)
            k = 0
            for batch in batches:
                hot = []
                for act in batch:
                    k += 1
                    tag = f"op{k}"
                    kind = act[0]
                    if kind == "swipe":
                        hot.append(tagged_op(tag, current[act[1]], act[2], offset=act[3]))
                        swipes.append((tag, act[1]))
                    elif kind == "recharge":
                        hot.append(tagged_op(tag, current[act[1]], act[2], OpType.RECHARGE))
                    elif kind == "refund" and swipes:
                        ref, on = swipes[act[1] % len(swipes)]
                        hot.append(tagged_op(tag, current[on], act[2], OpType.REFUND, ref=ref))
                    elif kind == "adjust":
                        adjust_points(eng, current[act[1]], act[2], tag.encode().ljust(16, b"."),
                                      reason="test", force=act[3]).result()
                    elif kind == "make_up":
                        make_up_points(eng, current[act[1]], tag, act[2], clock.now - 60,
                                       tag.encode().ljust(16, b"."), receipt_store_id=1).result()
                    elif kind == "gift":
                        redeem_gift(eng, current[act[1]], GIFT, tag.encode().ljust(16, b"."),
                                    qty=act[2]).result()
                    elif kind == "replace":
                        r = card_admin.replace(eng, current[act[1]], next_no,
                                               tag.encode().ljust(16, b"."), fee_fen=0).result()
                        if r.code == Result.OK:
                            current[act[1]] = next_no
                        next_no += 1
                    elif kind == "expire":
                        expire_points(eng, tag.encode().ljust(16, b".")).result()
                    elif kind == "time":
                        clock.now += act[1]
                    elif kind == "restart":
                        eng.close()
                        eng = _engine(path, clock)
                if hot:
                    ops = np.concatenate([h[0] for h in hot])
                    res = eng.submit(ops).result()
                    for op_type, code in zip(ops["op_type"].tolist(), res.codes.tolist(), strict=True):
                        event(f"{OP_NAMES[op_type]} {Result(code).name}")
                seen = check_invariant(eng, seen)
        finally:
            eng.close()
