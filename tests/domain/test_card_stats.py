"""Card statistics per month equal a recomputation from the journal that follows each
record's prev_seq to the status before; in circulation at the last month end equals
the card table."""

from __future__ import annotations

import datetime

import numpy as np
import pytest
from harness import tag_id
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rollup_reference import whole_journal
from test_rollups import T0, action, assert_rebuild_same, assert_rollups_match, run_workload

from core.domain import cards as cardmod
from core.domain import reports
from core.domain.cards import CardOp
from core.engine import rollups
from core.records import CardStatus, RecordKind, Result

TZ = 8 * 3600
FROM, TO = "2025-11-01", "2027-01-01"
MONTHS = [202511, 202512] + [202600 + m for m in range(1, 13)]
CARDS = (1, 2, 3, 4)
# (action, card, days later)
status_action = st.tuples(
    st.sampled_from(["lost", "found", "freeze", "thaw", "cancel", "dormant", "renew",
                     "replace", "issue"]),
    st.sampled_from(CARDS), st.integers(0, 12))
TARGET = {"lost": CardStatus.LOST, "found": CardStatus.ACTIVE, "freeze": CardStatus.FROZEN,
          "thaw": CardStatus.ACTIVE, "cancel": CardStatus.CANCELLED,
          "dormant": CardStatus.DORMANT}


def apply_status_actions(eng, clock, actions) -> None:
    new = 500
    for k, (kind, card, days) in enumerate(actions):
        clock.t += days * 86_400 + 1
        if kind in TARGET:
            eng.set_card_status(card, TARGET[kind], tag_id(f"st{k}"), store_id=1).result()
        elif kind == "renew":
            cardmod.renew(eng, card, tag_id(f"rn{k}"), fee_fen=0, store_id=1).result()
        elif kind == "replace":
            new += 1
            cardmod.replace(eng, card, new, tag_id(f"rp{k}"), fee_external=True,
                            store_id=3).result()
        else:
            new += 1
            eng.issue_cards([new], tag_id(f"is{k}"), store_id=1 + k % 3).result()


def month_of(t: int) -> int:
    d = datetime.datetime.fromtimestamp(t + TZ, datetime.UTC).date()
    return d.year * 100 + d.month


def reference(eng, by_store: bool) -> dict[tuple[int, int], dict]:
    """Per record, the status before from the record prev_seq names (Python, one step
    a record), the store of issue from the card's first record."""
    j, _ = whole_journal(eng.store)
    by_seq = {int(r["seq"]): r for r in j}
    issue: dict[int, int] = {}
    out: dict[tuple[int, int], dict] = {}
    circ: dict[int, int] = {}
    for r in j:
        if r["result"] != Result.OK or r["kind"] != RecordKind.KIND_CARD or not r["card_no"]:
            continue
        card = int(r["card_no"])
        if int(r["prev_seq"]) == 0:
            issue[card] = int(r["store_id"])
            before = None
        else:
            before = int(by_seq[int(r["prev_seq"])]["after"]["status"])
            assert int(by_seq[int(r["prev_seq"])]["card_no"]) == card
        after = int(r["after"]["status"])
        s = issue[card] if by_store else 0
        row = out.setdefault((month_of(int(r["time_s"])), s),
                             dict.fromkeys(reports.CARD_STATS_FIELDS[2:8], 0))
        op = int(r["op_type"])
        row["issued"] += before is None
        if before != after:
            if after == CardStatus.CANCELLED:
                row["replaced" if op == CardOp.REPLACE else "cancelled"] += 1
            row["dormant"] += after == CardStatus.DORMANT
            row["lost"] += after == CardStatus.LOST
        row["renewed"] += op == CardOp.RENEW
        was = before is not None and before != CardStatus.CANCELLED
        now = after != CardStatus.CANCELLED
        circ[s] = circ.get(s, 0) + now - was
        row["_circ"] = circ[s]
    return out


def check(eng) -> None:
    for by_store in (False, True):
        rows = reports.card_stats_report(eng, FROM, TO, by_store=by_store)
        assert rows == reports.card_stats_scan(eng, FROM, TO, by_store=by_store)
        ref = reference(eng, by_store)
        assert sorted({r["month"] for r in rows}) == MONTHS
        circ: dict[int, int] = {}
        for r in rows:
            want = ref.get((r["month"], r["issue_store"]))
            if want is not None:
                circ[r["issue_store"]] = want["_circ"]
                assert {f: r[f] for f in reports.CARD_STATS_FIELDS[2:8]} == \
                    {f: want[f] for f in reports.CARD_STATS_FIELDS[2:8]}, r
            else:
                assert all(r[f] == 0 for f in reports.CARD_STATS_FIELDS[2:8]), r
            assert r["in_circulation"] == circ.get(r["issue_store"], 0), r
        # In circulation at the end equals the card table (every card is in the window).
        cards = eng.cards_snapshot()
        cards = cards[cards["card_no"] != 0]
        n = int(np.count_nonzero(cards["status"] != CardStatus.CANCELLED))
        last = [r for r in rows if r["month"] == MONTHS[-1]]
        assert sum(r["in_circulation"] for r in last) == n
    for s in (1, 2, 3):
        one = reports.card_stats_report(eng, FROM, TO, by_store=True, stores={s})
        assert {r["issue_store"] for r in one} <= {s}
        assert one == [r for r in reports.card_stats_report(eng, FROM, TO, by_store=True)
                       if r["issue_store"] == s]


@settings(max_examples=10, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.lists(action, max_size=12), st.lists(status_action, min_size=1, max_size=25))
def test_card_stats_equal_a_recomputation_from_the_journal(tmp_path_factory, actions, statuses):
    eng, clock = run_workload(str(tmp_path_factory.mktemp("cs")), actions)
    try:
        apply_status_actions(eng, clock, statuses)
        assert clock.t < 1_798_732_800   # before 2027-01-01: the window holds every record
        check(eng)                        # rows and the tail the tailer has not reached
        check_rollups(eng)
    finally:
        eng.close()


def check_rollups(eng) -> None:
    """The card event rows, caught up, equal the independent recomputation; the report
    from the rows alone is the same; a rebuild gives the same bytes."""
    assert_rollups_match(eng)
    with eng.store.read() as txn:
        assert rollups.covered_seq(eng.store, txn) == eng.store.last_seq(txn)
    check(eng)
    assert_rebuild_same(eng)


def test_card_stats_fixed_workload_and_a_window_inside(tmp_path):
    eng, clock = run_workload(str(tmp_path), [("replace", 3)])
    try:
        apply_status_actions(eng, clock, [("lost", 1, 0), ("cancel", 1, 1), ("dormant", 2, 35),
                                          ("renew", 2, 1), ("issue", 1, 0)])
        check(eng)
        rows = {r["month"]: r for r in reports.card_stats_report(eng, FROM, TO)}
        dec, jan = rows[202512], rows[202601]
        # setup issues 6 cards; the replacement's new card is a seventh.
        assert (dec["issued"], dec["replaced"], dec["lost"], dec["cancelled"]) == (7, 1, 1, 1)
        assert (jan["dormant"], jan["renewed"], jan["issued"]) == (1, 1, 1)
        assert dec["in_circulation"] == 5 and jan["in_circulation"] == 6
        # A window starting in January carries December's circulation as its opening.
        inside = reports.card_stats_report(eng, "2026-01-15", "2026-02-01")
        assert inside[0]["month"] == 202601 and inside[0]["in_circulation"] == 6
        assert inside == reports.card_stats_scan(eng, "2026-01-15", "2026-02-01")
        check_rollups(eng)
        # Stored: one row per (day, store of issue) with an event, not one per record.
        keys, vals = rollups.rows_of(eng.store, rollups.CARD_EVENTS_DB)
        assert len(keys) == len(set(keys.tobytes()[i:i + 8] for i in range(0, 8 * len(keys), 8)))
        assert int(vals[:, 0].sum()) == 8 and int(vals[:, 6].sum()) == 6
        with pytest.raises(reports.ReportError):
            reports.card_stats_report(eng, "2026-02-01", "2026-01-01")
    finally:
        eng.close()


def test_t0_is_in_december():
    assert month_of(T0) == 202512
