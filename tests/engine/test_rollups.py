"""Rollups (core.engine.rollups) equal an independent recomputation from the journal, on random
workloads with swipes (line items, coupons, points offsets, paid outside), refunds,
recharges, supplementary cards, count cards, replacements and restarts; a rebuild is
byte-identical; how the journal is cut into flushes changes nothing; line items are
journalled with their swipe's seq."""

from __future__ import annotations

import gc
import os
import tempfile
import weakref

import numpy as np
import pytest
from harness import tag_id, tagged_op
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rollup_reference import recompute, stored, whole_journal

from core import Engine, EngineConfig
from core.domain import cards as cardmod
from core.engine import rollups
from core.records import OpFlag, OpType, Result
from core.rules import CouponTemplate, LevelRule, RulesConfig

T0 = 1_764_547_200  # 2025-12-01 00:00 UTC
RULES = RulesConfig(levels=(LevelRule("a"), LevelRule("b", discount_bp=9_500, up_points=300)),
                    offset_points_per_yuan=100, offset_max_bp=5_000,
                    coupon_templates=(CouponTemplate(1, "5 off", "fixed", value_fen=500),))
PRIMARY, SUPP, COUNT = 1, 5, 6


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> int:
        return self.t


def open_engine(path: str, clock: Clock, **cfg) -> Engine:
    return Engine(path, config=EngineConfig(checkpoint_ops=50, **cfg), rules=RULES, clock=clock)


def setup_cards(eng: Engine) -> None:
    assert eng.issue_cards([1, 2, 3, 4, COUNT], tag_id("issue"), store_id=1).result().code == Result.OK
    assert eng.issue_cards([SUPP], tag_id("issue-supp"), store_id=2).result().code == Result.OK
    for c in (1, 2, 3, 4):
        eng.recharge(c, 50_000, tag_id(f"rc{c}"), store_id=1).result()

    def supp(ctx):
        card = ctx.card(SUPP)
        card["primary_card_no"], card["supp_limit_fen"] = PRIMARY, 20_000
        ctx.emit(OpType.SET_STATUS, card)
        return {}

    def count(ctx):
        card = ctx.card(COUNT)
        card["count_service"], card["count_uses"] = 7, 30
        ctx.emit(OpType.SET_STATUS, card)
        return {}

    assert eng.admin(tag_id("supp"), OpType.SET_STATUS, supp).result().code == Result.OK
    assert eng.admin(tag_id("count"), OpType.SET_STATUS, count).result().code == Result.OK


action = st.one_of(
    st.tuples(st.just("swipe"), st.sampled_from([1, 2, 3, 4, SUPP, 7, 8]), st.integers(1, 9_000),
              st.integers(1, 3), st.integers(0, 4), st.booleans(), st.booleans(),
              st.integers(0, 3), st.booleans()),
    st.tuples(st.just("recharge"), st.sampled_from([1, 2, 3, 4, 7]), st.integers(1, 30_000),
              st.integers(1, 3)),
    st.tuples(st.just("refund"), st.integers(0, 50), st.integers(1, 5_000)),
    st.tuples(st.just("use"), st.integers(1, 3), st.integers(1, 3)),
    st.tuples(st.just("coupon"), st.sampled_from([1, 2, 3, 4])),
    st.tuples(st.just("replace"), st.sampled_from([1, 2, 3, 4])),
    st.tuples(st.just("restart"),),
    st.tuples(st.just("time"), st.integers(1, 3 * 86_400)),
)


def run_workload(path: str, actions) -> tuple[Engine, Clock]:
    clock = Clock()
    eng = open_engine(path, clock)
    setup_cards(eng)
    swipes: list[tuple[str, int]] = []
    coupons: dict[int, list[int]] = {}
    next_card = 100
    for k, a in enumerate(actions):
        clock.t += 97 * (k % 7) + 1
        kind = a[0]
        if kind == "swipe":
            _, card, amount, store, operator, items, external, offset, use_coupon = a
            lines = None
            if items:
                first = amount // 3
                lines = [(11, first, 1, 2), (12 + operator, amount - first, 2, 3)]
            cps = coupons.get(card, [])[:1] if use_coupon else []
            tag = f"s{k}"
            ops, its, cids = tagged_op(tag, card, amount, store=store, operator=operator,
                                       category=2, items=lines, coupons=cps, offset=offset * 50)
            if external:
                ops["op_flags"] = OpFlag.PAY_EXTERNAL
            r = eng.submit(ops, its, cids).result()
            if r.codes[0] == Result.OK:
                swipes.append((tag, card))
                if cps:
                    coupons[card].remove(cps[0])
        elif kind == "recharge":
            eng.recharge(a[1], a[2], tag_id(f"r{k}"), store_id=a[3]).result()
        elif kind == "refund" and swipes:
            tag, card = swipes[a[1] % len(swipes)]
            ops, _, _ = tagged_op(f"f{k}", card, a[2], OpType.REFUND, ref=tag, store=2, operator=9)
            eng.submit(ops).result()
        elif kind == "use":
            ops, _, _ = tagged_op(f"u{k}", COUNT, a[1], OpType.USE_COUNT, category=7,
                                  store=a[2], operator=a[2])
            eng.submit(ops).result()
        elif kind == "coupon":
            r = eng.issue_coupons(1, [a[1]], tag_id(f"c{k}"), store_id=3).result()
            if r.code == Result.OK:
                coupons.setdefault(a[1], []).extend(r.value["coupon_ids"])
        elif kind == "replace":
            next_card += 1
            cardmod.replace(eng, a[1], next_card, tag_id(f"x{k}"), fee_external=True,
                            store_id=2).result()
        elif kind == "restart":
            eng.close()
            eng = open_engine(path, clock)
        elif kind == "time":
            clock.t += a[1]
    return eng, clock


def assert_rebuild_same(eng: Engine) -> None:
    """A rebuild gives the same bytes, in one flush and cut into flushes of 3 records:
    the state carried between flushes (lots, taken chunks, hand-overs, statuses) gives
    the same bytes as one flush."""
    before = rollups.digest(eng.store)
    eng.rollups.rebuild()
    assert rollups.digest(eng.store) == before
    size = rollups.ROLLUP_FLUSH_RECORDS_MAX
    rollups.ROLLUP_FLUSH_RECORDS_MAX = 3
    try:
        eng.rollups.rebuild()
    finally:
        rollups.ROLLUP_FLUSH_RECORDS_MAX = size
    assert rollups.digest(eng.store) == before


def assert_rollups_match(eng: Engine) -> None:
    with eng.store.read() as txn:
        last = eng.store.last_seq(txn)
    eng.rollups.wait_for(last)
    got = stored(eng.store)
    want = recompute(eng.store, eng.rollups.tz)
    for table in want:
        assert got[table] == want[table], table


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(action, min_size=1, max_size=40))
def test_rollups_equal_a_recomputation_from_the_journal(actions):
    with tempfile.TemporaryDirectory() as d:
        eng, _ = run_workload(d, actions)
        try:
            assert_rollups_match(eng)
            # The books: principal and bonus summed from the rollups equal the card table.
            keys, vals = rollups.snapshot(eng.store, eng.rollups.tz, rollups.SALES_DB, 0, 2**32 - 1)
            col = {n: i for i, n in enumerate(rollups.SALES_COLS)}
            cards = eng.cards_snapshot()
            for name, inc, out in (("principal_fen", "principal_in_fen", "principal_out_fen"),
                                   ("bonus_fen", "bonus_in_fen", "bonus_out_fen")):
                assert int(vals[:, col[inc]].sum() - vals[:, col[out]].sum()) == int(
                    cards[name].astype(np.int64).sum())
            before = rollups.digest(eng.store)
            eng.rollups.rebuild()
            assert rollups.digest(eng.store) == before
        finally:
            eng.close()


def test_line_items_are_journalled_with_their_swipes_seq(tmp_path):
    eng = open_engine(str(tmp_path), Clock())
    try:
        setup_cards(eng)
        ops, its, _ = tagged_op("it", 1, 3_000, items=[(41, 1_000, 1, 5), (42, 2_000, 4, 6)])
        r = eng.submit(ops, its).result()
        assert r.codes[0] == Result.OK
        ops, its, _ = tagged_op("bad", 1, 3_001, items=[(41, 1_000, 1, 5)])  # lines != gross
        assert eng.submit(ops, its).result().codes[0] != Result.OK
        _, items = whole_journal(eng.store)
        assert items["seq"].tolist() == [int(r.seq[0])] * 2
        assert items["item"]["sku"].tolist() == [41, 42]
        assert items["item"]["qty"].tolist() == [1, 4]
        assert items["item"]["amount_fen"].tolist() == [1_000, 2_000]
        assert_rollups_match(eng)
    finally:
        eng.close()


def test_flush_size_does_not_change_a_byte(tmp_path, monkeypatch):
    acts = [("swipe", c, 500 + 37 * k, 1 + k % 3, k % 4, k % 2 == 0, False, 0, False)
            for k, c in enumerate([1, 2, 3, 4, 5, 1, 2] * 6)]
    eng, _ = run_workload(str(tmp_path / "a"), acts + [("restart",)] + acts[:5])
    try:
        assert_rollups_match(eng)
        whole = rollups.digest(eng.store)
        monkeypatch.setattr(rollups, "ROLLUP_FLUSH_RECORDS_MAX", 3)
        assert eng.rollups.rebuild() > 3
        assert rollups.digest(eng.store) == whole
    finally:
        eng.close()


def test_small_blocks_are_summed_in_runs_with_the_same_bytes(tmp_path, monkeypatch):
    # One commit per op: the tailer joins the small journal blocks into runs
    # (journal_runs); how they are joined changes no byte, and a run is the blocks'
    # records and line items, in order, joined only where their seqs follow on.
    acts = [("swipe", c, 700 + 11 * k, 1 + k % 3, k % 4, k % 2 == 0, k % 5 == 0, 0, False)
            for k, c in enumerate([1, 2, 3, 4, 5, 2, 1] * 5)]
    eng, _ = run_workload(str(tmp_path / "a"), acts)
    try:
        assert_rollups_match(eng)
        whole = rollups.digest(eng.store)
        with eng.store.read() as txn:
            blocks = [(b.copy(), i) for b, i in rollups.journal_with_items(eng.store, txn, 0)]
            runs = [(b.copy(), i) for b, i in rollups.journal_runs(eng.store, txn, 0, 5)]
        assert len(runs) < len(blocks)
        big = max(len(b) for b, _ in blocks)
        assert all(len(b) <= max(5, big) for b, _ in runs)
        for b, _ in runs:
            assert (np.diff(b["seq"].astype(np.int64)) == 1).all()
        recs = lambda xs: np.concatenate([b for b, _ in xs]).tobytes()  # noqa: E731
        assert recs(runs) == recs(blocks)
        its = lambda xs: b"".join(i.tobytes() for _, i in xs if i is not None)  # noqa: E731
        assert its(runs) == its(blocks) and its(blocks)
        for size in (1, 2, 7):
            monkeypatch.setattr(rollups, "ROLLUP_RUN_RECORDS", size)
            assert eng.rollups.rebuild() > 0
            assert rollups.digest(eng.store) == whole
    finally:
        eng.close()


def test_rollups_off_writes_none_and_a_later_start_catches_up(tmp_path):
    clock = Clock()
    eng = open_engine(str(tmp_path), clock, rollups=False)
    setup_cards(eng)
    eng.swipe(1, 1_234, tag_id("one"), store_id=2).result()
    assert eng.rollups is None
    eng.close()
    eng = open_engine(str(tmp_path), clock)
    try:
        assert_rollups_match(eng)
        assert any(stored(eng.store)[rollups.SALES_DB])
    finally:
        eng.close()


def test_snapshot_adds_the_tail_the_tailer_has_not_reached(tmp_path):
    clock = Clock()
    eng = open_engine(str(tmp_path), clock, rollups=False)
    setup_cards(eng)
    eng.close()
    eng = open_engine(str(tmp_path), clock)
    try:
        assert_rollups_match(eng)
        covered = eng.rollups.seq
        eng.rollups.close()             # the tailer stops: the next swipe stays in the tail
        eng.rollups = None
        eng.swipe(2, 777, tag_id("tail"), store_id=3).result()
        with eng.store.read() as txn:
            assert rollups.covered_seq(eng.store, txn) == covered
        keys, vals = rollups.snapshot(eng.store, 8 * 3600, rollups.SALES_DB, 0, 2**32 - 1)
        swipe = (keys["op_type"] == OpType.SWIPE) & (keys["store"] == 3)
        assert int(vals[swipe, 1].sum()) == 777
    finally:
        eng.close()


def test_rollup_databases_are_listed_once():
    assert len(set(rollups.ROLLUP_DBS)) == len(rollups.ROLLUP_DBS)
    assert os.path.basename(rollups.__file__) == "rollups.py"


def test_a_fixed_workload_covers_every_kind_of_record(tmp_path):
    acts = [("swipe", 1, 3000, 1, 1, True, False, 2, False), ("coupon", 2),
            ("swipe", 2, 3000, 2, 2, True, False, 0, True), ("refund", 0, 500), ("use", 2, 1),
            ("replace", 3), ("swipe", SUPP, 1000, 1, 1, False, True, 0, False),
            ("swipe", SUPP, 1000, 1, 1, False, False, 0, False), ("recharge", 7, 100, 1),
            ("restart",), ("time", 86_400), ("swipe", 101, 100, 1, 1, False, False, 0, False)]
    eng, _ = run_workload(str(tmp_path), acts)
    try:
        assert_rollups_match(eng)
        keys, vals = rollups.snapshot(eng.store, eng.rollups.tz, rollups.SALES_DB, 0, 2**32 - 1)
        present = set(keys["op_type"].tolist())
        for op in (OpType.SWIPE, OpType.RECHARGE, OpType.REFUND, OpType.USE_COUNT,
                   OpType.SUPP_DEBIT, OpType.ISSUE):
            assert int(op) in present, op
        assert len(set(keys["day"].tolist())) == 2
        ck, _ = rollups.snapshot(eng.store, eng.rollups.tz, rollups.COUPONS_DB, 0, 2**32 - 1)
        assert {int(OpType.COUPON_ISSUE), int(OpType.COUPON_REDEEM)} <= set(ck["op_type"].tolist())
        sk, sv = rollups.snapshot(eng.store, eng.rollups.tz, rollups.SKU_DB, 0, 2**32 - 1)
        assert int(sv[:, 2].sum()) == 3_000 and set(sk["sku"].tolist()) == {11, 14}
    finally:
        eng.close()


def test_rows_of_an_older_format_are_dropped_and_summed_again(tmp_path):
    acts = [("swipe", 1 + k % 4, 700 + k, 1 + k % 2, k % 3, k % 2 == 0, False, 0, False)
            for k in range(10)]
    eng, _ = run_workload(str(tmp_path), acts)
    store = eng.store
    try:
        assert_rollups_match(eng)
        good = rollups.digest(store)
        eng.rollups.close()
        eng.rollups = None
        # What format 1 left: one LMDB value per row, and format 1 in the meta.
        with store.gate.reading(), store.env.begin(write=True) as txn:
            txn.put(b"\0" * 26, b"\1" * 136, db=store.db[rollups.SALES_DB])
            txn.put(b"format", (1).to_bytes(4, "big"), db=store.db[rollups.ROLLUP_META_DB])
        with store.read() as txn:
            assert rollups.covered_seq(store, txn) == 0      # not trusted
            assert len(rollups.read_rows(txn, store, rollups.SALES_DB, 0, 2**32 - 1)[0]) == 0
    finally:
        eng.close()
    eng = open_engine(str(tmp_path), Clock())
    try:
        assert_rollups_match(eng)
        assert rollups.digest(eng.store) == good
    finally:
        eng.close()


def test_sales_sum_checks_its_input_and_guards_int64():
    import pytest

    from core.engine import _tally
    from core.records import JOURNAL, OpFlag

    ext = int(OpFlag.PAY_EXTERNAL)
    block = np.zeros(2, JOURNAL)
    block["amount_fen"] = 2**62
    block["time_s"] = T0
    ss = rollups.sales_sum()
    one = lambda dt: np.zeros(1, dt)  # noqa: E731
    add = lambda sel, issue, first, operator, tz=0: _tally.sales_add(  # noqa: E731
        ss, block, np.array(sel, np.int64), issue, first, operator, tz, ext)
    with pytest.raises(IndexError):
        add([2], one(np.int64), one(np.uint8), one(np.uint32))
    with pytest.raises(ValueError):
        add([0], np.zeros(2, np.int64), one(np.uint8), one(np.uint32))
    with pytest.raises(ValueError):          # not a table of sales rows
        _tally.sales_add(_tally.Sums((_tally.SUM,) * 17), block, np.zeros(1, np.int64),
                         one(np.int64), one(np.uint8), one(np.uint32), 0, ext)
    with pytest.raises(OverflowError):
        add([0, 1], np.zeros(2, np.int64), np.zeros(2, np.uint8), np.zeros(2, np.uint32))
    # Keys survive the trip through the words, and rows() sums repeats.
    ss = rollups.sales_sum()
    block["amount_fen"] = [5, 7]
    block["store_id"], block["terminal_id"], block["category"] = 4_000_000_000, 9, 65_535
    add([0, 1, 1], np.full(3, 2**32 - 1, np.int64), np.array([1, 0, 0], np.uint8),
        np.full(3, 3, np.uint32), 8 * 3600)
    words, vals = ss.rows()
    assert len(words) == 1 and vals[0, 0] == 3 and vals[0, 1] == 19 and vals[0, 15] == 1
    key = rollups.sales_keys(words)[0]
    assert (int(key["store"]), int(key["terminal"]), int(key["category"]),
            int(key["issue_store"]), int(key["operator"])) == (4_000_000_000, 9, 65_535,
                                                               2**32 - 1, 3)
    assert int(key["day"]) == (T0 + 8 * 3600) // 86_400
    assert np.array_equal(rollups.sales_words(rollups.sales_keys(words)), words)


@settings(max_examples=10, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(action, min_size=1, max_size=30),
       st.lists(st.tuples(st.integers(-7_200, 4 * 86_400), st.integers(1, 5 * 86_400),
                          st.sampled_from([None, 1, 2, 3])), min_size=1, max_size=6))
def test_commission_report_from_the_rollups_equals_the_journal_scan(actions, windows):
    """AdminService's CommissionReport takes whole hours from the rollups and scans only
    the partial hours at the ends: the same rows as scanning the whole window."""
    from core.domain import reports

    with tempfile.TemporaryDirectory() as d:
        eng, _ = run_workload(d, actions)
        try:
            for start, length, store in windows + [(-86_400, 30 * 86_400, None)]:
                since = T0 + start
                want = reports.commission_scan(eng, since, since + length, store)
                assert reports.commission_report(eng, since, since + length, store) == want
        finally:
            eng.close()


def test_commission_report_uses_the_rollups_for_whole_hours(tmp_path, monkeypatch):
    from core.domain import reports

    acts = [("swipe", 1 + k % 4, 900 + k, 1 + k % 2, k % 3, False, False, 0, False)
            for k in range(12)] + [("refund", 3, 100)]
    eng, _ = run_workload(str(tmp_path), acts)
    try:
        since, until = T0 - 1_000, T0 + 3 * 86_400 + 17
        want = reports.commission_scan(eng, since, until)
        scanned: list[tuple[int, int]] = []
        scan = reports.commission_scan

        after: list[int] = []

        def spy(engine, a, b, store=None, after_seq=0):
            scanned.append((a, b))
            after.append(after_seq)
            return scan(engine, a, b, store, after_seq=after_seq)

        monkeypatch.setattr(reports, "commission_scan", spy)
        with eng.store.read() as txn:
            last = eng.store.last_seq(txn)
        eng.rollups.wait_for(last)
        assert want and reports.commission_report(eng, since, until) == want
        # Only the partial hours at the ends were scanned (the zone is UTC+8: whole hours),
        # and an hour without a stored sales row only after the seq the rollups cover.
        assert scanned == [(since, T0), (until - 17, until)]
        assert after == [last, last]
    finally:
        eng.close()


def test_a_failed_flush_leaves_the_issue_map_with_the_database(tmp_path):
    """A flush whose write fails (here: raised inside its transaction) must leave the
    tailer's card -> store-of-issue map as rollup_cards has it: the retry then files the
    new cards' first records again (new_cards, rollup_cards), and the rollups equal a
    rebuild byte for byte."""
    clock = Clock()
    eng = open_engine(str(tmp_path), clock, rollups=False)
    try:
        setup_cards(eng)
        for k, c in enumerate([1, 2, SUPP, 3]):
            eng.swipe(c, 300 + k, tag_id(f"w{k}"), store_id=1 + k % 3).result()
        with eng.store.read() as txn:
            last = eng.store.last_seq(txn)
        tailer = rollups.Rollups(eng.store, RULES.tz_offset_s)
        calls = []

        def fail_once():
            calls.append(1)
            if len(calls) == 1:
                raise OSError("disk gone")

        tailer.before_commit = fail_once
        try:
            tailer.catch_up()
        except OSError:
            pass
        else:
            raise AssertionError("the hook did not fail the flush")
        assert tailer.seq == 0
        with eng.store.read() as txn:
            assert rollups.covered_seq(eng.store, txn) == 0
        cards = np.array([1, 2, 3, 4, SUPP, COUNT], np.uint64)
        ones = np.ones(len(cards), np.uint64)
        assert (tailer.summer.issue.lookup_many(cards, ones) < 0).all()
        assert tailer.catch_up() == last
        retried = rollups.digest(eng.store)
        assert (tailer.summer.issue.lookup_many(cards, ones) >= 0).all()
        with eng.store.read() as txn:
            assert txn.stat(eng.store.db[rollups.CARDS_DB])["entries"] == len(cards)
        keys, vals = rollups.rows_of(eng.store, rollups.SALES_DB)
        assert int(vals[:, rollups.SALES_COLS.index("new_cards")].sum()) == len(cards)
        tailer.rebuild()
        assert rollups.digest(eng.store) == retried
    finally:
        eng.close()


def test_a_flush_pauses_the_collector_and_gives_it_back_even_when_it_fails(tmp_path):
    """The cyclic collector is off while a flush builds and writes its puts (they are
    many tracked tuples and hold no cycle) and back on afterwards, also after a failed
    flush; a process that had it off keeps it off; nested pausers (two engines' tailers)
    give it back only when the last one ends."""
    import gc

    clock = Clock()
    eng = open_engine(str(tmp_path), clock, rollups=False)
    try:
        setup_cards(eng)
        for k, c in enumerate([1, 2, 3]):
            eng.swipe(c, 300 + k, tag_id(f"g{k}"), store_id=1).result()
        tailer = rollups.Rollups(eng.store, RULES.tz_offset_s)
        during = []

        def fail_first():
            during.append(gc.isenabled())
            if len(during) == 1:
                raise OSError("disk gone")

        tailer.before_commit = fail_first
        assert gc.isenabled()
        try:
            tailer.catch_up()
        except OSError:
            pass
        else:
            raise AssertionError("the hook did not fail the flush")
        assert gc.isenabled()
        assert tailer.catch_up() > 0
        assert during == [False, False] and gc.isenabled()
        with rollups.collector_paused():
            with rollups.collector_paused():
                assert not gc.isenabled()
            assert not gc.isenabled()
        assert gc.isenabled()
        gc.disable()
        try:
            with rollups.collector_paused():
                pass
            assert not gc.isenabled()
        finally:
            gc.enable()
    finally:
        eng.close()


def test_a_closed_engine_is_freed_without_the_cyclic_collector(tmp_path):
    # The tailer holds the engine's grow method and the engine the tailer: close breaks
    # the pair, so a closed engine's tables go with its last reference, not at the next
    # full collection (the memory of every engine a process opened and closed).
    was = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        eng = open_engine(str(tmp_path), Clock())
        setup_cards(eng)
        ops, _, _ = tagged_op("s", 1, 1_000)
        assert eng.submit(ops).result().codes[0] == Result.OK
        assert_rollups_match(eng)
        eng.close()
        gone = weakref.ref(eng)
        tailer = weakref.ref(eng.rollups)
        del eng
        assert gone() is None and tailer() is None
    finally:
        if was:
            gc.enable()


def test_merging_rows_into_stored_blocks_sums_in_place_and_guards_int64(tmp_path):
    # merge_into_blocks: a row whose key is stored is added where it is, a new one is
    # inserted in key order, and a sum past int64 raises instead of wrapping.
    eng = open_engine(str(tmp_path), Clock(), rollups=False)
    try:
        store = eng.store
        keys = np.zeros(3, rollups.SALES_KEY)
        keys["day"], keys["hour"], keys["store"], keys["terminal"] = 20_000, 9, 1, [3, 1, 2]
        vals = np.zeros((3, len(rollups.SALES_COLS)), np.int64)
        vals[:, 0] = [30, 10, 20]
        with store.env.begin(write=True) as txn:
            rollups.add_rows(txn, store, rollups.SALES_DB, keys[1:], vals[1:])
            rollups.add_rows(txn, store, rollups.SALES_DB, keys, vals)
        got, gv = rollups.rows_of(store, rollups.SALES_DB)
        assert got["terminal"].tolist() == [1, 2, 3]
        assert gv[:, 0].tolist() == [20, 40, 30]
        big = vals[:1].copy()
        big[0, 1] = 2**62
        with store.env.begin(write=True) as txn:
            rollups.add_rows(txn, store, rollups.SALES_DB, keys[:1], big)
            almost = big.copy()
            almost[0, 1] = 2**62 - 1                    # 2**63 - 1 in all: still fits
            rollups.add_rows(txn, store, rollups.SALES_DB, keys[:1], almost)
            with pytest.raises(OverflowError):
                rollups.add_rows(txn, store, rollups.SALES_DB, keys[:1], vals[:1] * 0 + 1)
    finally:
        eng.close()
