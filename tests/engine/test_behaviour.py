"""Behaviour per member and card (core/engine/behaviour.py) equals a recomputation from the
journal, one plain Python step a record, on random workloads with refunds, coupons,
supplementary cards, count cards, replacements and restarts; a rebuild with tiny flushes
gives the same bytes."""

from __future__ import annotations

from harness import tagged_op
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rollup_reference import whole_journal
from test_member_activity import link_members
from test_rollups import T0, action, open_engine, run_workload

from core.engine import behaviour as beh
from core.engine import rollups
from core.records import OpType, PointsOp, RecordKind, Result

TZ = 8 * 3600


def reference(store, upto: int | None = None):
    """{member: totals}, {card: totals}, {(day, member): [visits, swipes, spend]},
    {(member, store): [visits, spend]}, {(member, category): [swipes, spend]} of the
    journal (up to seq upto)."""
    j, _ = whole_journal(store)
    if upto is not None:
        j = j[j["seq"] <= upto]
    by_seq = {int(r["seq"]): r for r in j}
    members, cards, days, stores, cats = {}, {}, {}, {}, {}

    def tot(d, k):
        return d.setdefault(k, dict.fromkeys(beh.TOTAL_COLS, 0))

    for r in j:
        if r["result"] != Result.OK:
            continue
        op = int(r["op_type"])
        kind = int(r["kind"])
        card = int(r["card_no"])
        if kind == RecordKind.KIND_COUPON and op in (OpType.COUPON_REDEEM, OpType.COUPON_RESTORE):
            ref = by_seq.get(int(r["ref_seq"]))
            mid = int(ref["after"]["member_id"]) if ref is not None and int(ref["kind"]) == RecordKind.KIND_CARD else 0
            d = 1 if op == OpType.COUPON_REDEEM else -1
            tot(cards, card)["coupons_redeemed"] += d
            if mid:
                tot(members, mid)["coupons_redeemed"] += d
            continue
        if kind != RecordKind.KIND_CARD or card == 0:
            continue
        mid = int(r["after"]["member_id"])
        day = (int(r["time_s"]) + TZ) // 86_400
        visit = op in (OpType.SWIPE, OpType.USE_COUNT)
        spend = 0
        if op == OpType.SWIPE:
            spend = int(r["payable_fen"]) - int(r["coupon_fen"])
        elif op == OpType.REFUND:
            spend = -int(r["amount_fen"])
        pd, off = int(r["points_delta"]), int(r["offset_points"])
        for t in ([tot(cards, card)] + ([tot(members, mid)] if mid else [])):
            if visit:
                t["first_day"] = day + 1 if t["first_day"] == 0 else min(t["first_day"], day + 1)
                t["last_day"] = max(t["last_day"], day + 1)
                t["visits"] += 1
            t["swipes"] += op == OpType.SWIPE
            t["spend_fen"] += spend
            if op == OpType.REFUND:
                t["refunds"] += 1
                t["refund_fen"] += int(r["amount_fen"])
            if op == OpType.RECHARGE:
                t["recharges"] += 1
                t["recharge_fen"] += int(r["principal_delta_fen"])
            if op == OpType.SWIPE:
                t["points_earned"] += pd + off
                t["points_redeemed"] += off
            elif op != OpType.REFUND:
                t["points_earned"] += max(pd, 0)
                if op == PointsOp.GIFT_REDEEM:
                    t["points_redeemed"] += max(-pd, 0)
        if mid and (visit or op == OpType.REFUND):
            dd = days.setdefault((day, mid), [0, 0, 0])
            dd[0] += visit
            dd[1] += op == OpType.SWIPE
            dd[2] += spend
            s = stores.setdefault((mid, int(r["store_id"])), [0, 0])
            s[0] += visit
            s[1] += spend
            if op in (OpType.SWIPE, OpType.REFUND):
                c = cats.setdefault((mid, int(r["category"])), [0, 0])
                c[0] += op == OpType.SWIPE
                c[1] += spend
    return members, cards, days, stores, cats


def stored(store, txn=None):
    if txn is None:
        with store.read() as t:
            return stored(store, t)
    out = []
    for table in (beh.MEMBERS_DB, beh.CARDS_DB):
        ids, vals = beh.read_totals(store, txn, table)
        out.append({int(i): dict(zip(beh.TOTAL_COLS, v.tolist(), strict=True))
                    for i, v in zip(ids.tolist(), vals, strict=True)})
    d, m, v = beh.read_days(store, txn, 0, 1 << 31)
    out.append({(int(a), int(b)): c.tolist() for a, b, c in zip(d, m, v, strict=True)})
    for table, field in ((beh.STORES_DB, "store"), (beh.CATS_DB, "category")):
        k, vals = beh.read_keyed(store, txn, table)
        out.append({(int(a), int(b)): c.tolist()
                    for a, b, c in zip(k["member"], k[field], vals, strict=True)})
    return out


def assert_behaviour_matches(eng) -> None:
    with eng.store.read() as txn:
        last = eng.store.last_seq(txn)
    eng.rollups.wait_for(last)
    want = reference(eng.store)
    got = stored(eng.store)
    names = ("members", "cards", "days", "stores", "categories")
    for name, w, g in zip(names, want, got, strict=True):
        assert g == w, name


# (card, member id to link it to; 0 leaves it): ids in two blocks of beh_days.
link = st.tuples(st.sampled_from([1, 2, 3, 4]), st.sampled_from([0, 901, 902, 70_000]))
# After the members are linked: (card, amount, refund part of it or 0, hours later).
later_op = st.tuples(st.sampled_from([1, 2, 3, 4]), st.integers(1, 3_000), st.integers(0, 3_000),
                     st.integers(0, 60))


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.lists(action, min_size=1, max_size=30), st.lists(link, min_size=1, max_size=4),
       st.lists(later_op, max_size=8), st.booleans())
def test_behaviour_equals_a_recomputation_from_the_journal(tmp_path_factory, actions, links, later,
                                                           restart):
    path = str(tmp_path_factory.mktemp("beh"))
    eng, clock = run_workload(path, actions)
    try:
        link_members(eng, links)
        for k, (card, amount, back, hours) in enumerate(later):   # under the member ids
            clock.t += 3600 * hours + 1
            eng.submit(*tagged_op(f"l{k}", card, amount, store=1 + k % 3,
                                  category=k % 2)).result()
            if back:
                eng.submit(*tagged_op(f"b{k}", card, back, OpType.REFUND, ref=f"l{k}",
                                      store=2)).result()
            if restart and k == len(later) // 2:
                eng.close()
                eng = open_engine(path, clock)
        assert_behaviour_matches(eng)
    finally:
        eng.close()


def test_fixed_workload_values_and_rebuild_with_tiny_flushes(tmp_path, monkeypatch):
    eng, clock = run_workload(str(tmp_path), [
        ("swipe", 1, 1000, 1, 1, False, False, 0, False),
        ("time", 2 * 86_400),
        ("swipe", 1, 3000, 2, 1, False, False, 0, False),
        ("swipe", 1, 3000, 2, 1, False, False, 0, False),
        ("refund", 2, 500),
        ("restart",),
        ("recharge", 1, 2000, 3)])
    try:
        link_members(eng, [(1, 901)])
        eng.submit(*tagged_op("after-link", 1, 700, store=3)).result()
        assert_behaviour_matches(eng)
        with eng.store.read() as txn:
            m = beh.read_total(eng.store, txn, 901)
            c = beh.read_total(eng.store, txn, 1, beh.CARDS_DB)
        # Member 901 exists from the link on: only the swipe after it is theirs.
        assert m["visits"] == 1 and m["spend_fen"] == 700 and m["swipes"] == 1
        day0 = (T0 + TZ) // 86_400
        assert c["visits"] == 4 and c["refunds"] == 1 and c["refund_fen"] == 500
        assert c["spend_fen"] == 1000 + 3000 + 3000 - 500 + 700
        assert c["first_day"] == day0 + 1 and c["recharges"] == 2  # setup recharge + one
        before = rollups.digest(eng.store)
        monkeypatch.setattr(rollups, "ROLLUP_FLUSH_RECORDS_MAX", 3)
        eng.rollups.rebuild()
        assert rollups.digest(eng.store) == before
        assert_behaviour_matches(eng)
    finally:
        eng.close()


def test_a_card_without_a_member_counts_only_per_card(tmp_path):
    eng, _clock = run_workload(str(tmp_path), [("swipe", 2, 400, 1, 1, False, False, 0, False)])
    try:
        assert_behaviour_matches(eng)
        with eng.store.read() as txn:
            assert beh.read_total(eng.store, txn, 2, beh.CARDS_DB)["spend_fen"] == 400
            ids, _ = beh.read_totals(eng.store, txn)
        assert 0 not in ids.tolist()
    finally:
        eng.close()


def test_rollups_of_format_2_are_summed_again_with_the_behaviour(tmp_path):
    """A data directory whose rollups predate the behaviour tables (format 2) covers a
    seq the behaviour never saw: it is dropped at start and the journal summed again."""
    eng, clock = run_workload(str(tmp_path), [("swipe", 1, 700, 1, 1, False, False, 0, False)])
    try:
        link_members(eng, [(1, 901)])
        eng.submit(*tagged_op("m", 1, 800, store=2)).result()
        assert_behaviour_matches(eng)
        eng.rollups.close()
        eng.rollups = None
        store = eng.store
        with store.gate.reading(), store.env.begin(write=True) as txn:
            for name in beh.BEHAVIOUR_DBS:           # what format 2 had: none of them
                txn.drop(store.db[name], delete=False)
            txn.put(b"format", (2).to_bytes(4, "big"), db=store.db[rollups.ROLLUP_META_DB])
    finally:
        eng.close()
    eng = open_engine(str(tmp_path), clock)
    try:
        assert_behaviour_matches(eng)
        with eng.store.read() as txn:
            assert beh.read_total(eng.store, txn, 901)["spend_fen"] == 800
    finally:
        eng.close()
