"""The rollup tailer's C loops (core/engine/_tally.pyx) against one Python step a record:
Sums' merges, the card columns and lot records of a block, the card events and member
activity of CardTally, and fifo_settle's sums and taken entries from its own pieces
(its pieces against the rule: tests/property/test_property_settlement_fifo.py)."""

from collections import defaultdict

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core import _fastpath
from core._source_hash import TALLY_SOURCES, source_sha
from core.engine import _tally, rollup_lots, rollups
from core.records import JOURNAL, CardOp, CardStatus, OpType, RecordKind, Result

TZ = 8 * 3600


def test_extension_is_built_from_the_sources_on_disk():
    """_tally reads the journal record struct of _fastpath.pxd: built from older sources
    it would read the records wrong."""
    assert _tally.SOURCE_SHA, "core/engine/_tally was not built by setup.py (no SOURCE_SHA)"
    assert _tally.SOURCE_SHA == source_sha(sources=TALLY_SOURCES), (
        f"core/engine/_tally is stale (sources {', '.join(TALLY_SOURCES)}); rebuild with "
        "`python3 setup.py build_ext --inplace`")


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 3000), st.integers(1, 300), st.integers(0, 2**32), st.integers(1, 4))
def test_sums_merge_every_column_as_its_op(n, distinct, seed, calls):
    rng = np.random.default_rng(seed)
    ops = (_tally.SUM, _tally.MIN_POSITIVE, _tally.MAX, _tally.SUM)
    want: dict[tuple[int, int], list[int]] = {}
    s = _tally.Sums(ops, 16)
    for _ in range(calls):
        k0 = rng.integers(0, distinct, n).astype(np.uint64) * np.uint64(2**40 + 3)
        k1 = rng.integers(0, 3, n).astype(np.uint64)
        v = rng.integers(-5, 50, (n, 4)).astype(np.int64)
        s.add(k0, k1, v)
        for a, b, row in zip(k0.tolist(), k1.tolist(), v.tolist(), strict=True):
            w = want.setdefault((a, b), [0, 0, 0, 0])
            w[0] += row[0]
            if row[1] > 0 and (w[1] <= 0 or row[1] < w[1]):
                w[1] = row[1]
            w[2] = max(w[2], row[2])
            w[3] += row[3]
    keys, vals = s.rows()
    assert len(s) == len(want) == len(keys)
    got = {(int(a), int(b)): row for (a, b), row in zip(keys.tolist(), vals.tolist(), strict=True)}
    assert got == want


def test_sums_grow_past_a_chunk_and_refuse_bad_shapes():
    s = _tally.Sums((_tally.SUM,), 16)
    k = np.arange(200_000, dtype=np.uint64)
    s.add(k, k % np.uint64(7), np.ones((len(k), 1), np.int64))
    s.add(k, k % np.uint64(7), np.ones((len(k), 1), np.int64))
    keys, vals = s.rows()
    assert len(keys) == 200_000 and (vals == 2).all()
    assert sorted(keys[:, 0].tolist()) == k.tolist()
    with pytest.raises(ValueError):
        s.add(k[:3], k[:2], np.ones((3, 1), np.int64))
    with pytest.raises(ValueError):
        s.add(k[:3], k[:3], np.ones((3, 2), np.int64))
    with pytest.raises(ValueError):
        _tally.Sums(())


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 4), st.integers(0, 2000), st.integers(1, 200), st.integers(0, 2**32))
def test_sums_of_any_key_width_add_rows_like_a_dict(kw, n, distinct, seed):
    """One table for every rollup sum: key widths 1 to 4 (the sales rows use 4), rows
    added as rows() gives them, and rows() in the order keys first came."""
    rng = np.random.default_rng(seed)
    s = _tally.Sums((_tally.SUM, _tally.MAX), 16, kw)
    keys = rng.integers(0, distinct, (n, kw)).astype(np.uint64) * np.uint64(2**33 + 1)
    vals = rng.integers(-9, 9, (n, 2)).astype(np.int64)
    for lo in range(0, n, 700):
        s.add_rows(np.ascontiguousarray(keys[lo:lo + 700]), np.ascontiguousarray(vals[lo:lo + 700]))
    want: dict[tuple[int, ...], list[int]] = {}
    for k, v in zip(keys.tolist(), vals.tolist(), strict=True):
        w = want.setdefault(tuple(k), [0, 0])
        w[0] += v[0]
        w[1] = max(w[1], v[1])
    got_k, got_v = s.rows()
    assert got_k.shape == (len(want), kw)
    assert [tuple(k) for k in got_k.tolist()] == list(want)
    assert got_v.tolist() == list(want.values())


def test_sums_refuse_an_int64_overflow_and_a_wrong_key_width():
    s = _tally.Sums((_tally.SUM, _tally.MAX), 16, 3)
    k = np.zeros((2, 3), np.uint64)
    with pytest.raises(OverflowError):
        s.add_rows(k, np.array([[2**62, 0], [2**62, 0]], np.int64))
    with pytest.raises(ValueError):
        s.add_rows(np.zeros((1, 2), np.uint64), np.zeros((1, 2), np.int64))
    with pytest.raises(ValueError):          # add() is for tables of two words
        s.add(np.zeros(1, np.uint64), np.zeros(1, np.uint64), np.zeros((1, 2), np.int64))
    with pytest.raises(ValueError):
        _tally.Sums((_tally.SUM,), 16, 5)
    two = _tally.Sums((_tally.SUM,), 16)
    with pytest.raises(OverflowError):
        two.add(np.zeros(2, np.uint64), np.zeros(2, np.uint64), np.full((2, 1), 2**62, np.int64))


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 600), st.integers(0, 400), st.integers(0, 2**32))
def test_sums_merge_into_stored_rows_as_add_would(n, stored_n, seed):
    """merge_into (beh_cards / beh_members' blocks) gives each stored id the merge of
    its stored row and the table's row, column by column as add does, leaves the other
    stored rows alone, and says which ids have no stored row; after clear the table
    sums the next rows as a new one would."""
    rng = np.random.default_rng(seed)
    ops = (_tally.MIN_POSITIVE, _tally.MAX, _tally.SUM)
    row = np.dtype([("id", "<u8"), ("v", "<i8", (3,))])
    stored = np.zeros(stored_n, row)
    stored["id"] = np.sort(rng.choice(2_000, stored_n, replace=False)).astype(np.uint64)
    stored["v"] = rng.integers(0, 40, (stored_n, 3))
    s = _tally.Sums(ops, 16)
    for _ in range(2):
        s.add(np.zeros(3, np.uint64), np.zeros(3, np.uint64), np.ones((3, 3), np.int64))
        s.clear()
    ids = rng.integers(0, 2_000, n).astype(np.uint64)
    vals = rng.integers(0, 40, (n, 3)).astype(np.int64)
    s.add(ids, np.zeros(n, np.uint64), vals)
    fresh = _tally.Sums(ops, 16)
    fresh.add(ids, np.zeros(n, np.uint64), vals)
    assert [x.tolist() for x in s.rows()] == [x.tolist() for x in fresh.rows()]
    keys, sums = s.rows()
    want = {int(r["id"]): r["v"].tolist() for r in stored}
    for k, v in zip(keys[:, 0].tolist(), sums.tolist(), strict=True):
        if k in want:
            w = want[k]
            want[k] = [min(a for a in (w[0], v[0]) if a > 0) if w[0] > 0 or v[0] > 0 else 0,
                       max(w[1], v[1]), w[2] + v[2]]
    sorted_ids, order = s.sorted_ids()
    assert sorted_ids.tolist() == sorted(keys[:, 0].tolist())
    at = s.merge_into(stored, order)
    assert {int(r["id"]): r["v"].tolist() for r in stored} == want
    have = {int(x): j for j, x in enumerate(stored["id"].tolist())}
    assert at.tolist() == [have.get(int(k), -1) for k in sorted_ids.tolist()]


def test_merge_into_refuses_a_wrong_order_or_layout():
    s = _tally.Sums((_tally.SUM,), 16)
    s.add(np.array([5, 3], np.uint64), np.zeros(2, np.uint64), np.ones((2, 1), np.int64))
    row = np.dtype([("id", "<u8"), ("v", "<i8", (1,))])
    stored = np.zeros(2, row)
    stored["id"] = [3, 5]
    with pytest.raises(ValueError):                 # not the order that sorts the ids
        s.merge_into(stored, np.array([0, 1], np.int64))
    with pytest.raises(ValueError):                 # rows of another width
        s.merge_into(np.zeros(2, np.dtype([("id", "<u8"), ("v", "<i8", (2,))])),
                     np.array([1, 0], np.int64))
    with pytest.raises(IndexError):
        s.merge_into(stored, np.array([1, 2], np.int64))
    two = _tally.Sums((_tally.SUM,), 16)
    two.add(np.ones(1, np.uint64), np.ones(1, np.uint64), np.ones((1, 1), np.int64))
    with pytest.raises(ValueError):                 # keyed by more than an id
        two.sorted_ids()


def test_keymap_lookup_many_without_the_gil_finds_what_it_finds_with_it():
    rng = np.random.default_rng(3)
    m = _fastpath.KeyMap(16)
    keys = rng.choice(10**9, 50_000, replace=False).astype(np.uint64) + np.uint64(1)
    m.insert_many(np.zeros(len(keys), np.uint64), keys, np.arange(len(keys), dtype=np.int64))
    probe = np.concatenate((keys, keys + np.uint64(10**9)))
    zeros = np.zeros(len(probe), np.uint64)
    held = m.lookup_many(zeros, probe)
    free = m.lookup_many(zeros, probe, release_gil=True)
    assert held.tolist() == free.tolist()
    assert held[:len(keys)].tolist() == list(range(len(keys))) and (held[len(keys):] == -1).all()
    assert len(m.lookup_many(np.zeros(0, np.uint64), np.zeros(0, np.uint64), True)) == 0
    cols = np.zeros((len(probe), 2), np.uint64)      # strided columns, as callers pass them
    cols[:, 1] = probe
    assert m.lookup_many(cols[:, 0], cols[:, 1], release_gil=True).tolist() == held.tolist()
    assert m.lookup_many(cols[:, 0], cols[:, 1]).tolist() == held.tolist()


def _block(rng, n: int) -> np.ndarray:
    b = np.zeros(n, JOURNAL)
    b["seq"] = np.arange(1, n + 1)
    b["time_s"] = 1_790_000_000 + rng.integers(0, 5 * 86_400, n)
    b["card_no"] = rng.choice([0, 11, 12, 13, 14, 15], n)
    b["prev_seq"] = rng.choice([0, 5, 9], n)
    b["result"] = rng.choice([Result.OK, Result.OK, Result.OK, 3], n)
    b["kind"] = rng.choice([RecordKind.KIND_CARD] * 4 + [RecordKind.KIND_COUPON], n)
    b["op_type"] = rng.choice([OpType.SWIPE, OpType.USE_COUNT, OpType.REFUND, OpType.RECHARGE,
                               CardOp.REPLACE, CardOp.RENEW, OpType.SUPP_DEBIT], n)
    b["principal_delta_fen"] = rng.choice([0, 0, 500, -300], n)
    b["store_id"] = rng.integers(1, 4, n)
    b["operator_id"] = rng.integers(1, 5, n)
    b["ref_seq"] = rng.integers(0, n + 1, n)
    b["after"]["status"] = rng.choice([int(s) for s in CardStatus], n)
    b["after"]["member_id"] = rng.choice([0, 0, 7, 8], n)
    b["after"]["replaced_by"] = rng.choice([0, 16], n)
    return b


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 200), st.integers(0, 2**32))
def test_card_columns_pick_what_numpy_picks(n, seed):
    b = _block(np.random.default_rng(seed), n)
    lots = np.empty(len(b), rollup_lots.LOT_REC)
    (sel, card, first, store, operator, op, ref), csel, n_lots = _tally.card_columns(
        b, rollups._COLUMN_CODES, lots)
    ok = b["result"] == Result.OK
    want = np.flatnonzero(ok & (b["kind"] == RecordKind.KIND_CARD) & (b["card_no"] != 0))
    assert sel.tolist() == want.tolist()
    assert csel.tolist() == np.flatnonzero(ok & (b["kind"] == RecordKind.KIND_COUPON)).tolist()
    assert card.tolist() == b["card_no"][want].tolist()
    assert first.tolist() == (b["prev_seq"][want] == 0).tolist()
    assert store.tolist() == b["store_id"][want].tolist()
    assert operator.tolist() == b["operator_id"][want].tolist()
    assert op.tolist() == b["op_type"][want].tolist()
    assert ref.tolist() == b["ref_seq"][want].tolist()
    pick = want[(b["principal_delta_fen"][want] != 0) | (b["op_type"][want] == OpType.REFUND)]
    assert n_lots == len(pick)
    for name in ("seq", "time_s", "card_no", "principal_delta_fen", "store_id", "op_type", "ref_seq"):
        assert lots[name][:n_lots].tolist() == b[name][pick].tolist(), name
    assert lots["after"]["replaced_by"][:n_lots].tolist() == b["after"]["replaced_by"][pick].tolist()


def _events(before: int, after: int, op: int, first: bool) -> list[int]:
    """One record's card events, as docs/internals/reports.md defines them."""
    if first:
        before = rollups.NO_CARD
    moved = after if before != after else rollups.NO_CARD
    cancelled = int(CardStatus.CANCELLED)
    replaced = moved == cancelled and op == CardOp.REPLACE
    in_before = before not in (rollups.NO_CARD, cancelled)
    return [int(first), int(moved == cancelled and not replaced), int(op == CardOp.RENEW),
            int(replaced), int(moved == CardStatus.DORMANT), int(moved == CardStatus.LOST),
            int(after != cancelled) - int(in_before)]


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 300), st.integers(0, 2**32), st.integers(1, 3))
def test_card_tally_gives_each_records_events_and_activity(n, seed, blocks):
    rng = np.random.default_rng(seed)
    tally = _tally.CardTally(rollups._CARD_CODES)
    known = {c: int(rng.choice([-1, 1, 2, 4, 5])) for c in (11, 12, 13, 14, 15)}
    last = dict(known)
    ev: dict[tuple[int, int], list[int]] = defaultdict(lambda: [0] * 7)
    first_rows: dict[tuple[int, int], list[int]] = {}
    visits: dict[tuple[int, int, int], int] = defaultdict(int)
    for _ in range(blocks):
        b = _block(rng, n)
        sel = np.flatnonzero((b["result"] == Result.OK) & (b["kind"] == RecordKind.KIND_CARD)
                             & (b["card_no"] != 0)).astype(np.int64)
        issue = rng.integers(1, 4, len(sel)).astype(np.int64)
        tally.add(b, sel, issue, TZ)
        for j, i in zip(sel.tolist(), issue.tolist(), strict=True):
            r = b[j]
            card, after, op = int(r["card_no"]), int(r["after"]["status"]), int(r["op_type"])
            day = (int(r["time_s"]) + TZ) // 86_400
            v = _events(last[card], after, op, int(r["prev_seq"]) == 0)
            last[card] = after
            if any(v):
                ev[(day, i)] = [a + x for a, x in zip(ev[(day, i)], v, strict=True)]
            member = int(r["after"]["member_id"])
            key = member if member else -card
            visit = op in (OpType.SWIPE, OpType.USE_COUNT)
            f = first_rows.setdefault((key, i), [day + 1, 0])
            f[0] = min(f[0], day + 1)
            if visit:
                f[1] = day + 1 if f[1] == 0 else min(f[1], day + 1)
                visits[(day, key, i)] += 1
    cards = tally.head_cards()
    moved, final = tally.finish_events(np.array([known[int(c)] for c in cards.tolist()], np.int64))
    k, vals = tally.events.rows()
    got = {(int(a) >> 32, int(a) & 0xFFFF_FFFF): row for a, row in zip(k[:, 0].tolist(), vals.tolist(), strict=True)}
    assert got == dict(ev)
    want_moved = sorted((c, s) for c, s in last.items() if s != known[c] and c in set(cards.tolist()))
    assert list(zip(moved.tolist(), final.tolist(), strict=True)) == want_moved
    parts = rollups._Parts()
    parts.cards = tally
    (fk, fi, fs, fv), (vd, vk, vi, vn) = rollups.activity_of(parts)
    assert {(a, b): [c, d] for a, b, c, d in zip(fk.tolist(), fi.tolist(), fs.tolist(), fv.tolist(), strict=True)} == first_rows
    assert list(zip(fk.tolist(), fi.tolist(), strict=True)) == sorted(first_rows)
    assert {(a, b, c): d for a, b, c, d in zip(vd.tolist(), vk.tolist(), vi.tolist(), vn.tolist(), strict=True)} == dict(visits)
    assert list(zip(vd.tolist(), vk.tolist(), vi.tolist(), strict=True)) == sorted(visits)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([3, 7, 11]),
                          st.sampled_from([OpType.RECHARGE, OpType.SWIPE, OpType.SUPP_DEBIT,
                                           OpType.USE_COUNT, OpType.ADJUST]),
                          st.integers(-4_000, 4_000).filter(bool), st.integers(1, 4),
                          st.integers(0, 3 * 86_400)), max_size=60),
       st.lists(st.tuples(st.sampled_from([3, 7, 11]), st.integers(1, 4), st.integers(1, 3_000)),
                max_size=6))
def test_fifo_settle_sums_and_entries_are_its_pieces(steps, stored_t):
    """fifo_settle's rows and taken entries from its own pieces, one step a piece: a
    spend counts once per (record, lot store); a take beyond every lot (which the engine
    never journals) is a piece at store 0 and no entry."""
    recs = np.zeros(len(steps), rollup_lots.LOT_REC)
    for j, (card, op, fen, store, t) in enumerate(steps):
        recs[j]["seq"], recs[j]["card_no"], recs[j]["op_type"] = j + 1, card, op
        recs[j]["principal_delta_fen"] = fen if op == OpType.RECHARGE else -abs(fen)
        recs[j]["store_id"], recs[j]["time_s"] = store, 1_790_000_000 + t
        recs[j]["ref_seq"] = j if op == OpType.SUPP_DEBIT else 0
    stored = np.zeros(len(stored_t), rollup_lots._STORED)
    for j, (c, s, f) in enumerate(sorted(stored_t, key=lambda x: x[0])):
        stored[j] = (c, s, f)
    keys, vals, raw, spend_keys, cards, lc, ls, lf, pieces = rollup_lots._fifo_arrays(recs, stored, TZ)
    idx, lot_store, fen, have = pieces
    spend_ops = {int(o) for o in rollup_lots._SPEND_OPS}
    want: dict[tuple[int, int, int], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    entries, counted, want_spends = [], set(), set()
    for r, s, f, h in zip(idx.tolist(), lot_store.tolist(), fen.tolist(), have.tolist(), strict=True):
        rec = recs[r]
        day = (int(rec["time_s"]) + TZ) // 86_400
        row = want[(day, s, int(rec["store_id"]))]
        if int(rec["op_type"]) in spend_ops:
            row[0] += (r, s) not in counted
            counted.add((r, s))
            row[1] += f
            key = int(rec["ref_seq"]) if rec["op_type"] == OpType.SUPP_DEBIT else int(rec["seq"])
            if h:
                entries.append((r, key, s, f))
        else:
            row[3] += f
    for rec in recs:
        if int(rec["op_type"]) in spend_ops and rec["principal_delta_fen"] < 0:
            want_spends.add(int(rec["ref_seq"]) if rec["op_type"] == OpType.SUPP_DEBIT else int(rec["seq"]))
    got = {tuple(k): v for k, v in zip(keys.tolist(), vals.tolist(), strict=True)}
    assert got == dict(want)
    e = np.frombuffer(raw, rollup_lots.TAKEN)
    # In the records' order, each record's pieces oldest lot first (a stable sort by record).
    assert list(zip(e["seq"].tolist(), e["store"].tolist(), e["fen"].tolist(), strict=True)) == \
        [x[1:] for x in sorted(entries, key=lambda x: x[0])]
    assert set(spend_keys.tolist()) == want_spends and len(spend_keys) == len(
        [r for r in recs if int(r["op_type"]) in spend_ops and r["principal_delta_fen"] < 0])
    assert cards.tolist() == sorted({int(c) for c in recs["card_no"].tolist()})
    # Every card's lots after: what came in less what went out to a lot.
    for c in cards.tolist():
        came = sum(f for cc, _, f in stored_t if cc == c) + int(
            recs["principal_delta_fen"][(recs["card_no"] == c) & (recs["principal_delta_fen"] > 0)].sum())
        went = sum(f for r, f, h in zip(idx.tolist(), fen.tolist(), have.tolist(), strict=True)
                   if h and int(recs[r]["card_no"]) == c)
        assert int(lf[lc == c].sum()) == came - went
