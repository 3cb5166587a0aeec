"""Segments, rule tags and RFM classes (core/domain/segments.py): every condition against
a brute-force filter in plain Python, each RFM class of the seed by a member made to be
it, rule tags set and cleared, idempotent evaluations, saved segments, list, export,
report."""

from __future__ import annotations

import csv
import datetime

import numpy as np
import pytest
from common import cid
from harness import tagged_op

from core import Engine
from core.domain import segments as seg
from core.domain.members import MemberStore
from core.records import OpType, Result, SegmentOp

KEY = bytes(range(32))
TZ = 8 * 3600
T0 = 1_764_547_200            # 2025-12-01 00:00 UTC
DAY0 = (T0 + TZ) // 86_400


class Clock:
    def __init__(self):
        self.t = T0

    def __call__(self):
        return self.t


@pytest.fixture
def world(tmp_path):
    clock = Clock()
    eng = Engine(str(tmp_path / "data"), clock=clock)
    members = MemberStore(eng, key=KEY)
    yield eng, members, clock
    eng.close()


def enrol(members, n, **prof):
    ids = []
    for k in range(n):
        p = {"name": f"m{k}", "gender": "MF"[k % 2], "source": ("store", "app")[k % 2],
             "birthday": f"19{80 + k % 20}-{1 + k % 12:02d}-15", "home_store_id": 1 + k % 3,
             "custom": {"team": "ab"[k % 2]}}
        p.update(prof)
        ids.append(members.create(p, cid()).member_id)
    return ids


def card_for(eng, member_id, card_no, store=1):
    assert eng.issue_cards([card_no], cid(), store_id=store).result().code == Result.OK

    def build(ctx):
        c = ctx.card(card_no)
        c["member_id"] = member_id
        ctx.emit(OpType.SET_STATUS, c)
        return {}

    assert eng.admin(cid(), OpType.SET_STATUS, build).result().code == Result.OK
    assert eng.recharge(card_no, 10_000_000, cid(), store_id=store).result().codes[0] == Result.OK


def swipe(eng, card, amount, store=1, tag=None):
    ops, items, cids = tagged_op(tag or cid().hex(), card, amount, store=store)
    assert eng.submit(ops, items, cids).result().codes[0] == Result.OK


def settle(eng):
    with eng.store.read() as txn:
        last = eng.store.last_seq(txn)
    eng.rollups.wait_for(last)


def test_resolve_is_sorted_unique_uint64_and_count_agrees(world):
    eng, members, clock = world
    ids = enrol(members, 12)
    for k, mid in enumerate(ids[:6]):
        card_for(eng, mid, 100 + k)
        swipe(eng, 100 + k, 1000 * (k + 1), store=1 + k % 2)
    settle(eng)
    d = {"all": [{"field": "spend_fen", "op": "gte", "value": 3000},
                 {"field": "gender", "op": "eq", "value": "M"}]}
    got = seg.resolve(members, d)
    assert got.dtype == np.uint64 and list(got) == sorted(set(got.tolist()))
    # spend = 1000*(k+1) for k < 6; gender M is even k.
    assert got.tolist() == [ids[k] for k in range(6) if 1000 * (k + 1) >= 3000 and k % 2 == 0]
    assert seg.count(members, d) == len(got)
    # An engine alone answers card and behaviour conditions.
    assert seg.resolve(eng, {"field": "visits", "op": "gte", "value": 1}).tolist() == ids[:6]
    with pytest.raises(seg.SegmentError) as e:
        seg.resolve(eng, {"field": "gender", "op": "eq", "value": "M"})
    assert e.value.code == seg.SegmentErrorCode.NEEDS_MEMBERS


def brute(profiles, beh, today, cond):
    """The members (id -> profile dict + behaviour) matching one condition, in Python."""
    out = []
    for mid, p in profiles.items():
        b = beh.get(mid, {})
        f, op, v = cond["field"], cond["op"], cond["value"]
        if f == "age":
            y, m, d = (int(x) for x in p["birthday"].split("-"))
            t = datetime.date(1970, 1, 1) + datetime.timedelta(days=today)
            x = t.year - y - ((t.month, t.day) < (m, d))
        elif f == "birthday_month":
            x = int(p["birthday"].split("-")[1])
        elif f == "gender":
            x = p["gender"]
        elif f == "source":
            x = p["source"]
        elif f == "home_store":
            x = p["home_store_id"]
        elif f.startswith("custom."):
            x = p["custom"].get(f[7:], "")
        elif f == "days_since_visit":
            if not b.get("days"):
                continue
            x = today - max(b["days"])
        elif f.startswith("spend_") and f.endswith("d"):
            n = int(f[6:-1])
            x = sum(a for dd, a in zip(b.get("days", []), b.get("amounts", []), strict=True)
                    if dd > today - n)
        elif f == "visits":
            x = len(b.get("days", []))
        else:
            raise AssertionError(f)
        if (op == "eq" and x == v or op == "ne" and x != v or op == "in" and x in v
                or op == "not_in" and x not in v or op == "gte" and x >= v or op == "lt" and x < v
                or op == "between" and v[0] <= x <= v[1]):
            out.append(mid)
    return out


def test_conditions_equal_a_brute_force_filter(world):
    eng, members, clock = world
    ids = enrol(members, 10)
    profiles = {mid: members.get(mid) for mid in ids}
    beh: dict[int, dict] = {}
    rnd = np.random.default_rng(7)
    for k, mid in enumerate(ids[:8]):
        card_for(eng, mid, 200 + k)
    for _step in range(30):
        clock.t = T0 + int(rnd.integers(0, 200)) * 86_400 + 3600
        k = int(rnd.integers(0, 8))
        amount = int(rnd.integers(1, 5000))
        swipe(eng, 200 + k, amount)
        e = beh.setdefault(ids[k], {"days": [], "amounts": []})
        e["days"].append((clock.t + TZ) // 86_400)
        e["amounts"].append(amount)
    settle(eng)
    today = DAY0 + 210
    conds = [
        {"field": "age", "op": "between", "value": [30, 40]},
        {"field": "birthday_month", "op": "in", "value": [1, 2, 3]},
        {"field": "gender", "op": "ne", "value": "F"},
        {"field": "source", "op": "eq", "value": "app"},
        {"field": "home_store", "op": "not_in", "value": [2]},
        {"field": "custom.team", "op": "eq", "value": "a"},
        {"field": "days_since_visit", "op": "gte", "value": 60},
        {"field": "spend_30d", "op": "gte", "value": 1},
        {"field": "spend_90d", "op": "lt", "value": 3000},
        {"field": "visits", "op": "gte", "value": 4},
    ]
    for c in conds:
        assert seg.resolve(members, c, today=today).tolist() == brute(profiles, beh, today, c), c
    both = {"all": conds[:3]}
    want = sorted(set.intersection(*(set(brute(profiles, beh, today, c)) for c in conds[:3])))
    assert seg.resolve(members, both, today=today).tolist() == want
    anyof = {"any": [conds[3], {"not": conds[4]}]}
    want = sorted(set(brute(profiles, beh, today, conds[3]))
                  | (set(ids) - set(brute(profiles, beh, today, conds[4]))))
    assert seg.resolve(members, anyof, today=today).tolist() == want


def test_each_rfm_class_of_the_seed(world):
    eng, members, clock = world
    names = ["potential", "new", "lapsed", "churned", "loyal", "big", "returning"]
    ids = dict(zip(names, enrol(members, len(names)), strict=True))
    for k, n in enumerate(names[1:]):
        card_for(eng, ids[n], 300 + k)
    card = {n: 300 + k for k, n in enumerate(names[1:])}
    day = lambda d: T0 + d * 86_400 + 3600  # noqa: E731
    # today = DAY0 + 400; recent = within 90 days (day >= 311), new = first visit >= day 371
    plan = {
        "new": [(395, 1000)],
        "lapsed": [(100, 90_000), (120, 90_000)],                 # big spend, then gone
        "churned": [(100, 500)],
        "loyal": [(320 + 5 * i, 40_000) for i in range(10)],     # often and a lot, recently
        "big": [(200, 20_000), (380, 200_000)],                  # a lot, seldom
        "returning": [(200, 300), (300, 300), (390, 300)],       # back, but small
    }
    events = sorted((d, n, a) for n, evs in plan.items() for d, a in evs)
    for d, n, a in events:
        clock.t = day(d)
        swipe(eng, card[n], a)
    clock.t = day(400)
    settle(eng)
    cfg = {"recent_days": 90, "new_days": 30, "window_days": 365,
           "frequency": {"fixed": 5}, "monetary": {"fixed": 100_000}}
    assert seg.segments_of(members).set_rfm_config(cfg, cid())["frequency"] == {"fixed": 5}
    want = {"potential": seg.RfmClass.POTENTIAL, "new": seg.RfmClass.NEW,
            "lapsed": seg.RfmClass.HIGH_VALUE_LAPSED, "churned": seg.RfmClass.CHURNED,
            "loyal": seg.RfmClass.LOYAL, "big": seg.RfmClass.BIG_SPENDER,
            "returning": seg.RfmClass.RETURNING}
    cls, thr = seg.segments_of(members).rfm()
    assert thr == {"frequency_min": 5, "monetary_min_fen": 100_000}
    for n, c in want.items():
        assert cls[ids[n] - 1] == c, n
        got = seg.resolve(members, {"field": "rfm_class", "op": "eq", "value": seg.RFM_NAMES[c]})
        assert got.tolist() == [ids[n]], n
    counts = seg.segments_of(members).rfm_counts()
    assert {r["name"]: r["members"] for r in counts["classes"]} == {seg.RFM_NAMES[c]: 1 for c in want.values()}
    assert [r["name"] for r in counts["classes"]] == ["潜在客户", "新客户", "高级不活跃客户", "流失客户",
                                                       "忠诚客户", "大客户", "回头客户"]


def test_quantile_thresholds_are_integers_of_the_positive_values():
    v = np.array([0, 0, 5, 1, 3, 9, 7], np.int64)
    # positives sorted: 1 3 5 7 9; index (5 - 1) * q // 10000
    assert seg.threshold(v, {"quantile_bp": 0}) == 1
    assert seg.threshold(v, {"quantile_bp": 5000}) == 5
    assert seg.threshold(v, {"quantile_bp": 8000}) == 7
    assert seg.threshold(v, {"quantile_bp": 10_000}) == 9
    assert seg.threshold(np.zeros(3, np.int64), {"quantile_bp": 5000}) == 1
    assert seg.threshold(v, {"fixed": 4}) == 4


def test_rule_tags_set_and_clear_and_evaluations_are_idempotent(world):
    eng, members, clock = world
    ids = enrol(members, 4)
    for k, mid in enumerate(ids):
        card_for(eng, mid, 400 + k)
    s = seg.segments_of(members)
    rule = {"field": "spend_90d", "op": "gte", "value": 5000}
    s.define_rule_tag("spent-50", rule, cid(), description="spent ≥ 50 yuan in 90 days")
    swipe(eng, 400, 6000)
    swipe(eng, 401, 100)
    settle(eng)
    r = s.evaluate_rule_tag("spent-50", cid())
    assert r == {"tag": "spent-50", "members": 1, "added": 1, "removed": 0}
    assert seg.resolve(members, {"field": "tag", "op": "eq", "value": "spent-50"}).tolist() == [ids[0]]
    # member 2 qualifies, member 1 ages out of the window: set and cleared.
    clock.t += 80 * 86_400
    swipe(eng, 401, 7000)
    clock.t += 20 * 86_400
    settle(eng)
    again = cid()
    r = s.evaluate_rule_tag("spent-50", again)
    assert r == {"tag": "spent-50", "members": 1, "added": 1, "removed": 1}
    assert s.rule_tag_members("spent-50").tolist() == [ids[1]]
    # A retry with the same client id replays: the first result, nothing applied twice.
    res = eng.admin(again, SegmentOp.RULE_TAG_EVAL, lambda ctx: 1 / 0).result()
    assert res.replayed and res.value == r
    # The schedule's run uses an id of its inputs: twice on the same inputs applies once.
    first = s.evaluate_all()
    with eng.store.read() as txn:
        seq_before = eng.store.last_seq(txn)
    assert s.evaluate_all() == first
    with eng.store.read() as txn:
        assert eng.store.last_seq(txn) == seq_before
    # Manual tags are matched by the same condition.
    members.update(ids[3], {"tags": ["vip"]}, cid())
    got = seg.resolve(members, {"field": "tag", "op": "in", "value": ["vip", "spent-50"]})
    assert got.tolist() == [ids[1], ids[3]]
    assert s.delete_rule_tag("spent-50", cid())
    assert seg.resolve(members, {"field": "tag", "op": "eq", "value": "spent-50"}).tolist() == []
    with pytest.raises(seg.SegmentError) as e:
        s.evaluate_rule_tag("spent-50", cid())
    assert e.value.code == seg.SegmentErrorCode.NOT_FOUND


def test_saved_segments_list_export_and_report(world, tmp_path):
    eng, members, clock = world
    ids = enrol(members, 6, phone=None)
    for k, mid in enumerate(ids):
        card_for(eng, mid, 500 + k)
        swipe(eng, 500 + k, 1000 * (k + 1))
    settle(eng)
    s = seg.segments_of(members)
    d = {"field": "spend_fen", "op": "gte", "value": 3000}
    rec = s.define("big ones", d, cid())
    assert rec["definition"] == d and [x["name"] for x in s.list()] == ["big ones"]
    assert seg.resolve(members, "big ones").tolist() == ids[2:]
    total, page = s.page("big ones", offset=1, limit=2)
    assert total == 4 and [p["member_id"] for p in page] == ids[3:5]
    out = str(tmp_path / "seg.csv")
    assert s.export("big ones", out) == 4
    with open(out, encoding="utf-8-sig") as f:
        rows = list(csv.reader(f))
    assert len(rows) == 5 and rows[0][0] == "member_id"
    xl = str(tmp_path / "seg.xlsx")
    assert s.export("big ones", xl) == 4
    rep = s.report("big ones", days=30)
    spend = sum(1000 * (k + 1) for k in range(6))
    assert rep["members"] == 4 and rep["spend_fen"] == spend - 3000
    assert rep["share_bp"] == (spend - 3000) * 10_000 // spend
    assert sum(r["members"] for r in rep["classes"]) == 4
    # Store scope: only members enrolled at that store.
    assert seg.resolve(members, "big ones", store_id=1).tolist() == [i for i in ids[2:] if (i - 1) % 3 == 0]
    assert s.delete("big ones", cid())
    with pytest.raises(seg.SegmentError) as e:
        seg.resolve(members, "big ones")
    assert e.value.code == seg.SegmentErrorCode.NOT_FOUND


@pytest.mark.parametrize("bad", [
    {"field": "nope", "op": "eq", "value": 1},
    {"field": "visits", "op": "like", "value": 1},
    {"field": "visits", "op": "eq", "value": "1"},
    {"field": "visits", "op": "eq", "value": True},
    {"field": "gender", "op": "gte", "value": "M"},
    {"field": "gender", "op": "eq", "value": "X"},
    {"field": "spend_999d", "op": "gte", "value": 1},
    {"field": "visits", "op": "in", "value": []},
    {"field": "visits", "op": "between", "value": [1]},
    {"all": [{"field": "visits", "op": "eq", "value": 1}], "any": []},
    {"xor": []},
    {"not": {"not": {"not": {"not": {"not": {"not": {"not": {"field": "visits", "op": "eq", "value": 1}}}}}}}},
    {"all": [{"field": "visits", "op": "eq", "value": 1}] * (seg.SEGMENT_CONDITIONS_MAX + 1)},
    [],
])
def test_bad_definitions_are_rejected_with_invalid(bad):
    with pytest.raises(seg.SegmentError) as e:
        seg.validate_definition(bad)
    assert e.value.code == seg.SegmentErrorCode.INVALID


def test_card_conditions_favourites_and_stale_reads(world):
    eng, members, clock = world
    ids = enrol(members, 3)
    card_for(eng, ids[0], 600, store=1)
    card_for(eng, ids[1], 601, store=1)
    card_for(eng, ids[1], 602, store=1)          # a second card: balance and points add up
    swipe(eng, 600, 500, store=7)
    swipe(eng, 600, 500, store=8)
    swipe(eng, 600, 900, store=8)
    swipe(eng, 601, 100, store=9)
    settle(eng)

    def level(card, lv):
        def build(ctx):
            c = ctx.card(card)
            c["level"] = lv
            ctx.emit(OpType.SET_STATUS, c)
            return {}
        assert eng.admin(cid(), OpType.SET_STATUS, build).result().code == Result.OK

    level(602, 2)
    r = lambda d: seg.resolve(members, d).tolist()  # noqa: E731
    assert r({"field": "level", "op": "eq", "value": 2}) == [ids[1]]      # the highest live card
    assert r({"field": "level", "op": "lt", "value": 2}) == [ids[0]]      # no card: no level
    assert r({"field": "cards", "op": "eq", "value": 2}) == [ids[1]]
    assert r({"field": "balance_fen", "op": "gte", "value": 20_000_000 - 100}) == [ids[1]]
    assert r({"field": "card_status", "op": "eq", "value": "active"}) == ids[:2]
    assert r({"field": "favourite_store", "op": "eq", "value": 8}) == [ids[0]]   # two visits
    assert r({"field": "favourite_store", "op": "ne", "value": 8}) == [ids[1]]   # none: no match
    assert r({"field": "avg_ticket_fen", "op": "eq", "value": (500 + 500 + 900) // 3}) == [ids[0]]
    # A read that accepts stale behaviour keeps the cached columns; an exact one reloads.
    s = seg.segments_of(members)
    d = {"field": "visits", "op": "gte", "value": 1}
    assert seg.count(members, d, stale_s=3600) == 2
    swipe(eng, 602, 100)
    card_for(eng, ids[2], 603)
    swipe(eng, 603, 100)
    settle(eng)
    assert seg.count(members, d, stale_s=3600) == 2
    assert s.behaviour_seq(3600) < s.behaviour_seq()
    assert seg.count(members, d) == 3


def test_one_members_stats(world):
    eng, members, clock = world
    mid = enrol(members, 1)[0]
    card_for(eng, mid, 700, store=3)
    clock.t = T0 + 3600
    swipe(eng, 700, 1000, store=3)                     # day 0
    clock.t = T0 + 50 * 86_400 + 3600
    swipe(eng, 700, 2000, store=4)                     # day 50
    swipe(eng, 700, 4000, store=4)
    clock.t = T0 + 100 * 86_400 + 3600                 # today = day 100
    settle(eng)
    s = seg.segments_of(members)
    st = s.member_stats(mid)
    assert st["visits"] == 3 and st["spend_fen"] == 7000 and st["avg_ticket_fen"] == 7000 // 3
    assert (st["visits_30d"], st["visits_90d"], st["visits_365d"]) == (0, 2, 3)
    assert (st["spend_30d"], st["spend_90d"], st["spend_365d"]) == (0, 6000, 7000)
    assert st["days_since_visit"] == 50 and st["days_since_first_visit"] == 100
    first = datetime.date(1970, 1, 1) + datetime.timedelta(days=DAY0)
    assert st["first_visit"] == first.isoformat()
    assert st["favourite_store"] == 4 and st["recharges"] == 1
    assert s.card_stats(700)["visits"] == 3
    assert s.member_stats(mid + 100) is None
    # The same numbers as the segment columns.
    assert seg.resolve(members, {"field": "spend_90d", "op": "eq", "value": 6000}).tolist() == [mid]


def test_card_columns_patched_after_a_commit_equal_columns_gathered_afresh():
    from core.records import CARD, CardStatus

    rng = np.random.default_rng(5)
    n, k = 500, 800
    cards = np.zeros(k, CARD)
    cards["card_no"] = np.arange(1, k + 1)
    cards["member_id"] = rng.integers(0, n + 50, k)      # some without a member, some past n
    cards["status"] = rng.choice([CardStatus.ACTIVE, CardStatus.CANCELLED], k, p=[0.8, 0.2])
    cards["level"] = rng.integers(0, 4, k)
    cards["principal_fen"] = rng.integers(0, 10_000, k)
    cards["last_seq"] = rng.integers(1, 100, k)
    names = (("level", False), ("level", True), ("principal_fen", True), ("status", False))

    def same(a: seg.CardCols, b: seg.CardCols) -> None:
        assert np.array_equal(a.idx, b.idx) and np.array_equal(a.live_rows, b.live_rows)
        for name, live in names:
            assert np.array_equal(a.col(name, live), b.col(name, live)), (name, live)

    old = seg.CardCols(cards, n, 100)
    before = {key: old.col(*key).copy() for key in names}
    # A commit at seq 101 that changes balances and levels of some cards.
    moved = rng.choice(k, 30, replace=False)
    cards["level"][moved] = rng.integers(0, 4, 30)
    cards["principal_fen"][moved] += 7
    cards["last_seq"][moved] = 101
    new = old.refreshed(cards, n, 101)
    assert new is not old and new.idx is old.idx            # patched, not gathered again
    same(new, seg.CardCols(cards, n, 101))
    for key in names:                                        # the old columns kept theirs
        assert np.array_equal(old.col(*key), before[key])
    # A card cancelled, moved to another member, or a new card: gathered afresh.
    for change in ("cancel", "member", "add"):
        c = cards.copy() if change != "add" else np.concatenate([cards, cards[:1]])
        slot = int(np.flatnonzero((c["member_id"] > 0) & (c["member_id"] <= n)
                                  & (c["status"] == CardStatus.ACTIVE))[0])
        if change == "cancel":
            c["status"][slot] = CardStatus.CANCELLED
        elif change == "member":
            c["member_id"][slot] = c["member_id"][slot] % n + 1
        c["last_seq"][slot] = 102
        got = new.refreshed(c, n, 102)
        assert got.idx is not new.idx
        same(got, seg.CardCols(c, n, 102))
    # Nothing moved: the same columns, the new seq.
    again = new.refreshed(cards, n, 103)
    same(again, new)
    assert again.seq == 103
