"""Member activity and the visits-per-member distribution equal a recomputation from the
journal (one Python step a record) on random workloads, over random windows."""

from __future__ import annotations

import datetime

from harness import tag_id, tagged_op
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rollup_reference import whole_journal
from test_rollups import T0, action, run_workload

from core.domain import reports
from core.engine import rollups
from core.records import OpType, RecordKind, Result

TZ = 8 * 3600
# (card, member id to link it to; 0 leaves it as it is), applied after the workload.
link = st.tuples(st.sampled_from([1, 2, 3, 4]), st.sampled_from([0, 901, 902]))


def link_members(eng, links) -> None:
    for k, (card, member) in enumerate(links):
        if not member:
            continue

        def build(ctx, card=card, member=member):
            c = ctx.card(card)
            if c is None:
                return {}
            c["member_id"] = member
            ctx.emit(OpType.SET_STATUS, c)
            return {}

        eng.admin(tag_id(f"ln{k}"), OpType.SET_STATUS, build).result()


def iso(day: int) -> str:
    return (datetime.date(1970, 1, 1) + datetime.timedelta(days=day)).isoformat()


def reference(eng, a: int, b: int, by_store: bool, stores=None):
    j, _ = whole_journal(eng.store)
    issue: dict[int, int] = {}
    seen: dict[tuple[int, int], list[int]] = {}     # (key, store) -> [first day, first visit, visits]
    for r in j:
        if r["result"] != Result.OK or r["kind"] != RecordKind.KIND_CARD or not r["card_no"]:
            continue
        card = int(r["card_no"])
        if int(r["prev_seq"]) == 0:
            issue[card] = int(r["store_id"])
        day = (int(r["time_s"]) + TZ) // 86_400
        if day >= b:
            continue
        s = issue.get(card, 0)
        if stores is not None and s not in stores:
            continue
        mid = int(r["after"]["member_id"])
        key = (mid if mid else -card, s if by_store else 0)
        e = seen.setdefault(key, [day, None, 0])
        e[0] = min(e[0], day)
        if int(r["op_type"]) in (OpType.SWIPE, OpType.USE_COUNT):
            if e[1] is None:
                e[1] = day
            e[2] += a <= day
    summary, freq = {}, {}
    for (_k, s), (first, fv, n) in seen.items():
        row = summary.setdefault(s, {"members": 0, "new_members": 0, "active": 0, "visits": 0,
                                     "first_visit": 0})
        row["members"] += 1
        row["new_members"] += first >= a
        if n:
            row["active"] += 1
            row["visits"] += n
            row["first_visit"] += fv >= a
            f = freq.setdefault((s, n), [0, 0])
            f[0] += 1
            f[1] += n
    return summary, freq


def check(eng, a: int, b: int) -> None:
    for by_store in (False, True):
        for stores in (None, {1}, {2, 3}):
            got = reports.member_activity_report(eng, iso(a), iso(b), by_store=by_store,
                                                 stores=stores)
            summary, freq = reference(eng, a, b, by_store, stores)
            if not by_store and not summary:
                summary = {0: {"members": 0, "new_members": 0, "active": 0, "visits": 0,
                               "first_visit": 0}}
            assert [r["issue_store"] for r in got] == sorted(summary)
            for r in got:
                want = summary[r["issue_store"]]
                assert {k: r[k] for k in want} == want
                assert r["repeat"] == r["active"] - r["first_visit"]
                assert r["active_bp"] == (r["active"] * 10_000 // r["members"] if r["members"] else 0)
                if r["active"]:
                    assert r["first_visit_bp"] + r["repeat_bp"] in (9_999, 10_000)
            dist = reports.visit_frequency_report(eng, iso(a), iso(b), by_store=by_store,
                                                  stores=stores)
            assert {(r["issue_store"], r["visit_count"]): [r["members"], r["visits"]]
                    for r in dist} == freq
            for r in got:
                mine = [d for d in dist if d["issue_store"] == r["issue_store"]]
                assert sum(d["members"] for d in mine) == r["active"]
                assert sum(d["visits"] for d in mine) == r["visits"]


@settings(max_examples=10, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.lists(action, min_size=1, max_size=30), st.lists(link, max_size=4),
       st.lists(st.sampled_from([1, 2, 3, 4]), max_size=8), st.integers(0, 6), st.integers(1, 8))
def test_member_activity_equals_a_recomputation(tmp_path_factory, actions, links, later,
                                                start, length):
    eng, clock = run_workload(str(tmp_path_factory.mktemp("ma")), actions)
    try:
        link_members(eng, links)
        for k, card in enumerate(later):      # visits under the linked member ids
            clock.t += 30_000
            eng.submit(*tagged_op(f"l{k}", card, 100, store=1 + k % 3)).result()
        day0 = (T0 + TZ) // 86_400
        check(eng, day0 + start, day0 + start + length)
        check(eng, day0 - 30, day0 + 400)
    finally:
        eng.close()


def test_fixed_workload_values(tmp_path):
    day0 = (T0 + TZ) // 86_400
    eng, clock = run_workload(str(tmp_path), [
        ("swipe", 1, 100, 1, 1, False, False, 0, False),
        ("swipe", 1, 100, 1, 1, False, False, 0, False),
        ("time", 2 * 86_400),
        ("swipe", 1, 100, 1, 1, False, False, 0, False),
        ("swipe", 2, 100, 2, 1, False, False, 0, False)])
    try:
        got = reports.member_activity_report(eng, iso(day0 + 1), iso(day0 + 5))
        # six cards known, none new in the window; cards 1 and 2 came, card 1 before too.
        assert got == [{"issue_store": 0, "members": 6, "new_members": 0, "active": 2,
                        "active_bp": 3_333, "visits": 2, "first_visit": 1, "repeat": 1,
                        "first_visit_bp": 5_000, "repeat_bp": 5_000}]
        dist = reports.visit_frequency_report(eng, iso(day0), iso(day0 + 5))
        assert dist == [{"issue_store": 0, "visit_count": 1, "members": 1, "visits": 1},
                        {"issue_store": 0, "visit_count": 3, "members": 1, "visits": 3}]
    finally:
        eng.close()


def same_as_scan(eng, a: int, b: int) -> None:
    for by_store in (False, True):
        for stores in (None, {1}, {2, 3}):
            kw = {"by_store": by_store, "stores": stores}
            assert (reports.member_activity_report(eng, iso(a), iso(b), **kw)
                    == reports.member_activity_scan(eng, iso(a), iso(b), **kw))
            assert (reports.visit_frequency_report(eng, iso(a), iso(b), **kw)
                    == reports.visit_frequency_scan(eng, iso(a), iso(b), **kw))


@settings(max_examples=10, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.lists(action, min_size=1, max_size=30), st.lists(link, max_size=4),
       st.lists(st.sampled_from([1, 2, 3, 4]), max_size=8), st.integers(0, 6), st.integers(1, 8),
       st.integers(1, 9))
def test_member_activity_from_the_rollups_equals_the_journal_scan(
        tmp_path_factory, actions, links, later, start, length, flush):
    """The activity tables the tailer keeps (beh_act_first, beh_act_days) give exactly
    the old scan's report, however the journal was cut into flushes, with a tail the
    tailer has not reached added, and after a rebuild (byte-identical tables)."""
    eng, clock = run_workload(str(tmp_path_factory.mktemp("mr")), actions)
    size = rollups.ROLLUP_FLUSH_RECORDS_MAX
    try:
        link_members(eng, links)
        day0 = (T0 + TZ) // 86_400
        windows = [(day0 + start, day0 + start + length), (day0 - 30, day0 + 400)]
        with eng.store.read() as txn:
            last = eng.store.last_seq(txn)
        eng.rollups.wait_for(last)
        for w in windows:
            same_as_scan(eng, *w)
        whole = rollups.digest(eng.store)
        rollups.ROLLUP_FLUSH_RECORDS_MAX = flush
        eng.rollups.rebuild()
        assert rollups.digest(eng.store) == whole
        rollups.ROLLUP_FLUSH_RECORDS_MAX = size
        eng.rollups.close()             # the tailer stops: what follows stays in the tail
        eng.rollups = None
        for k, card in enumerate(later):
            clock.t += 30_000
            eng.submit(*tagged_op(f"t{k}", card, 100, store=1 + k % 3)).result()
        for w in windows:
            same_as_scan(eng, *w)
    finally:
        rollups.ROLLUP_FLUSH_RECORDS_MAX = size
        eng.close()
