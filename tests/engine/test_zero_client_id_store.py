"""A data directory whose journal holds an admin op's records under the all-zero client
id opens (issue: e2c45ce refused that id on admin ops, but a directory written before it
already held such records, and recovery failed on them: the id index's empty key).

The store is built by the engine as far as its API goes (cards issued, recharged and
swiped), then the zero-id op is written below it, as the old build left it: journal
records committed after the checkpoint (a points adjustment of a known card and the
issue of two new cards), in one block, as one admin op's commit. It must open through
the engine and through `mms serve`: every record applied as journalled (each card equal
to its last after-image), the zero id never indexed, a warning logged and the count in
Engine.stats()["zero_id_records"]; and again after a checkpoint has taken the records
in (the id block the checkpoint wrote holds the zero row)."""

from __future__ import annotations

import logging
import urllib.request

import grpc
import numpy as np
import pytest
from common import cid

from core import Engine, EngineConfig, RulesConfig
from core.engine.storage import Store
from core.records import JOURNAL, CardStatus, OpType, RecordKind, Result
from server.client import auth
from server.mms_pb import pos_pb2, pos_pb2_grpc
from server.tools.launch import ChildServer, TerminalSpec

CARDS = (101, 102, 103)
NEW_CARDS = (201, 202)
ADJUSTED = 102
POINTS_ADDED = 40
RULES = RulesConfig(max_amount_fen=1_000_000, max_balance_fen=10_000_000)
# No checkpoint of its own while the test runs: only close()'s.
QUIET = dict(checkpoint_ops=10**9, checkpoint_interval_s=10**6)


def _config(**kw) -> EngineConfig:
    return EngineConfig(**{**QUIET, **kw})


def _op(fut) -> tuple[int, int]:
    """(code, seq) of a single op's BatchResult."""
    res = fut.result()
    return int(res.codes[0]), int(res.seq[0])


def _records(store: Store) -> np.ndarray:
    with store.read() as txn:
        return np.concatenate([b.copy() for b in store.journal_blocks(txn, 0)])


def _journal(path: str) -> np.ndarray:
    """Every journal record of the directory, in seq order."""
    store = Store(path, map_size_bytes=1 << 28)
    try:
        return _records(store)
    finally:
        store.close()


def _expected(path: str) -> dict[int, np.void]:
    """Each card's after-image in its last journal record: what the journal says it holds."""
    last = {}
    for rec in _journal(path):
        if int(rec["kind"]) == RecordKind.KIND_CARD:
            last[int(rec["card_no"])] = rec["after"].copy()
    return last


def _build(path: str) -> None:
    """Cards issued, recharged and swiped through the API, checkpointed at close; then
    one admin op under the all-zero id written after the checkpoint, as the build before
    e2c45ce committed it (its publish then failed and nothing after it ran)."""
    with Engine(path, config=_config(), rules=RULES) as eng:
        assert eng.issue_cards(list(CARDS), cid()).result().code == Result.OK
        for no in CARDS:
            assert _op(eng.recharge(no, 10_000, cid()))[0] == Result.OK
            assert _op(eng.swipe(no, 1_234, cid()))[0] == Result.OK
    store = Store(path, map_size_bytes=1 << 28)
    try:
        with store.read() as txn:
            last = store.last_seq(txn)
            checkpoint = store.meta_int(txn, b"checkpoint_seq")
            before = store.journal_record(txn, last)
        assert checkpoint == last, "close() checkpointed: the zero-id op is the tail"
        recs = np.zeros(1 + len(NEW_CARDS), dtype=JOURNAL)
        recs["seq"] = np.arange(last + 1, last + 1 + len(recs), dtype=np.uint64)
        recs["client_hi"], recs["client_lo"] = 0, 0
        recs["time_s"] = int(before["time_s"]) + 1
        recs["result"] = Result.OK
        recs["rules_version"] = before["rules_version"]
        recs["kind"] = RecordKind.KIND_CARD
        # The points adjustment of a known card: its after-image from its last record.
        prior = next(r for r in _records(store)[::-1] if int(r["card_no"]) == ADJUSTED)
        recs[0]["op_type"] = OpType.ADJUST
        recs[0]["card_no"] = ADJUSTED
        recs[0]["prev_seq"] = prior["seq"]
        recs[0]["points_delta"] = POINTS_ADDED
        recs[0]["level_before"] = prior["after"]["level"]
        recs[0]["after"] = prior["after"]
        recs[0]["after"]["points"] += POINTS_ADDED
        recs[0]["after"]["last_seq"] = recs[0]["seq"]
        # The issue of two cards no one had.
        for i, no in enumerate(NEW_CARDS, start=1):
            recs[i]["op_type"] = OpType.ISSUE
            recs[i]["card_no"] = no
            recs[i]["after"]["card_no"] = no
            recs[i]["after"]["status"] = CardStatus.ACTIVE
            recs[i]["after"]["issued_at_s"] = recs[i]["time_s"]
            recs[i]["after"]["last_seq"] = recs[i]["seq"]
        with store.env.begin(write=True) as txn:
            store.put_journal(txn, recs)
    finally:
        store.close()


def _assert_as_journalled(cards: dict[int, dict], expected: dict[int, np.void]) -> None:
    assert set(cards) >= set(expected)
    for no, after in expected.items():
        got = cards[no]
        for field in ("principal_fen", "bonus_fen", "points", "status", "last_seq"):
            assert got[field] == int(after[field]), (no, field, got[field], int(after[field]))


@pytest.fixture
def store_dir(tmp_path):
    path = str(tmp_path / "data")
    _build(path)
    return path


def test_the_journal_tail_under_the_zero_id_is_replayed(store_dir, caplog):
    expected = _expected(store_dir)
    assert expected[ADJUSTED]["points"] > POINTS_ADDED - 1
    assert set(NEW_CARDS) <= set(expected)
    with caplog.at_level(logging.WARNING, logger="mms.engine"):
        eng = Engine(store_dir, config=_config(), rules=RULES)
    try:
        assert eng.stats()["zero_id_records"] == 1 + len(NEW_CARDS)
        assert any("all-zero client id" in r.getMessage() for r in caplog.records)
        _assert_as_journalled({no: eng.card(no) for no in expected}, expected)
        # The store takes ops again: the new cards are real cards, the zero id is
        # still refused, a prune rebuilds the index with the zero row among its ids.
        assert _op(eng.swipe(NEW_CARDS[0], 0, cid()))[0] != Result.CARD_NOT_FOUND
        assert _op(eng.recharge(NEW_CARDS[1], 500, cid()))[0] == Result.OK
        assert _op(eng.recharge(ADJUSTED, 500, bytes(16)))[0] == Result.CLIENT_ID_INVALID
        with pytest.raises(ValueError, match="all zero"):
            eng.set_card_status(ADJUSTED, CardStatus.FROZEN, bytes(16))
        eng.prune_ids()
        retry = cid()
        first = _op(eng.recharge(CARDS[0], 700, retry))
        assert first[0] == Result.OK
        assert _op(eng.recharge(CARDS[0], 700, retry)) == first, "a retry is a replay"
    finally:
        eng.close()
    # close() checkpointed the zero-id records (its id block holds their rows): the next
    # open loads that block and replays nothing of them.
    expected = _expected(store_dir)
    with Engine(store_dir, config=_config(), rules=RULES) as eng:
        assert eng.stats()["zero_id_records"] == 0
        assert eng.recovered_records == 0
        _assert_as_journalled({no: eng.card(no) for no in expected}, expected)


def test_mms_serve_opens_it(store_dir, tmp_path):
    expected = _expected(store_dir)
    terms = [TerminalSpec(1, 0, "pos")]
    child = ChildServer(str(tmp_path), terms, data=store_dir, engine=QUIET).start()
    try:
        with grpc.insecure_channel(child.target) as ch:
            pos = pos_pb2_grpc.PosServiceStub(ch)
            cards = {}
            for no in expected:
                c = pos.GetCard(pos_pb2.GetCardRequest(card_no=no),
                                metadata=auth(child.token())).card
                cards[no] = {"principal_fen": c.principal_fen, "bonus_fen": c.bonus_fen,
                             "points": c.points, "status": c.status, "last_seq": c.last_seq}
            _assert_as_journalled(cards, expected)
            # A recharge of a card the zero-id op issued is taken, and journalled after it.
            r = pos.Recharge(pos_pb2.RechargeRequest(client_id=cid(), card_no=NEW_CARDS[0],
                                                     amount_fen=300),
                             metadata=auth(child.token()))
            assert r.result.code == Result.OK, r
            assert r.result.seq > max(int(a["last_seq"]) for a in expected.values())
        # SREs see it on /metrics.
        with urllib.request.urlopen(child.metrics_url, timeout=30) as resp:
            text = resp.read().decode()
        line = next(x for x in text.splitlines() if x.startswith("mms_zero_id_records "))
        assert float(line.split()[1]) > 0, line
    finally:
        assert child.terminate() == 0, "\n".join(child.output)
    assert any("all-zero client id" in line for line in child.output), "\n".join(child.output)
