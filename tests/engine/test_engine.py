"""The engine's writer: group commit, durability order, recovery, growth, bounds."""

import os
import threading

import numpy as np
import pytest
from engine_ops import ops_for

from core import Engine, EngineClosed, EngineConfig, Overloaded, RulesConfig
from core.records import OP, CardStatus, OpType, Result, split_client_id


class Clock:
    def __init__(self, now=1_700_000_000):
        self.now = now

    def __call__(self):
        return self.now


class Recorder:
    def __init__(self):
        self.commits = []

    def on_commit(self, info):
        self.commits.append(info)


@pytest.fixture
def clock():
    return Clock()


def test_many_submissions_share_commits_and_see_each_other(tmp_path, clock):
    obs = Recorder()
    eng = Engine(str(tmp_path), config=EngineConfig(batch_ops_max=64), clock=clock, observer=obs)
    eng.issue_cards([1, 2], os.urandom(16)).result()
    eng.submit(ops_for([1, 2], 300_000, OpType.RECHARGE, ns=1)).result()
    futs = [eng.submit(ops_for([1] * 10, 1_000, ns=100 + k)) for k in range(20)]
    results = [f.result() for f in futs]
    assert all((r.codes == Result.OK).all() for r in results)
    assert eng.card(1)["principal_fen"] == 300_000 - 200_000
    assert eng.card(1)["visits"] == 200
    # Journal seqs are strictly increasing in submission order.
    seqs = np.concatenate([r.seq for r in results])
    assert (np.diff(seqs.astype(np.int64)) == 1).all()
    hot = [c for c in obs.commits if c.n_records and c.op_types[0] == OpType.SWIPE]
    assert sum(c.n_ops for c in hot) == 200
    assert max(c.n_ops for c in hot) <= 64
    eng.close()


def test_balances_and_journal_agree_after_restart(tmp_path, clock):
    cfg = dict(batch_ops_max=128, checkpoint_ops=50)
    eng = Engine(str(tmp_path), config=EngineConfig(**cfg), clock=clock)
    cards = list(range(10, 30))
    eng.issue_cards(cards, os.urandom(16)).result()
    rng = np.random.default_rng(3)
    eng.submit(ops_for(cards, 50_000, OpType.RECHARGE, ns=1)).result()
    for k in range(10):
        eng.submit(ops_for(rng.choice(cards, 100), rng.integers(1, 3_000, 100), ns=50 + k)).result()
    before = {c: eng.card(c) for c in cards}
    last = eng.stats()["last_seq"]
    # Stop as a crash would: a poisoned engine skips its closing checkpoint, so the
    # reopen must replay the journal after the last periodic checkpoint.
    eng._poisoned = RuntimeError("simulated crash")
    eng.close()
    with Engine(str(tmp_path), config=EngineConfig(**cfg), clock=clock) as probe:
        # The periodic checkpoints (every 50 records) left a tail to replay.
        assert probe.stats()["checkpoint_seq"] < last

    again = Engine(str(tmp_path), config=EngineConfig(**cfg), clock=clock)
    assert again.stats()["last_seq"] == last
    assert {c: again.card(c) for c in cards} == before
    journal = again.journal(1, 10_000)
    for c in cards:
        mine = journal[journal["card_no"] == c]
        assert before[c]["principal_fen"] == int(mine["principal_delta_fen"].sum())
        assert before[c]["bonus_fen"] == int(mine["bonus_delta_fen"].sum())
        assert before[c]["points"] == int(mine["points_delta"].sum())
    again.close()


def test_replay_returns_first_result_across_restart(tmp_path, clock):
    eng = Engine(str(tmp_path), clock=clock)
    eng.issue_cards([5], os.urandom(16)).result()
    eng.recharge(5, 10_000, b"r" * 16).result()
    first = eng.swipe(5, 2_500, b"s" * 16).result()
    eng.close()
    eng = Engine(str(tmp_path), clock=clock)
    again = eng.swipe(5, 9_999, b"s" * 16).result()  # same id, other amount: still the first
    assert again.replayed[0] == 1 and again.seq[0] == first.seq[0]
    assert again.columns()["payable_fen"][0] == 2_500
    assert eng.card(5)["principal_fen"] == 7_500
    eng.close()


def test_map_grows_on_demand(tmp_path, clock):
    eng = Engine(str(tmp_path), config=EngineConfig(map_size_bytes=1 << 20, batch_ops_max=4096),
                 clock=clock)
    eng.issue_cards(np.arange(1, 5_001), os.urandom(16)).result()
    for k in range(5):
        r = eng.submit(ops_for(np.arange(1, 4_001), 100, OpType.RECHARGE, ns=9, start=k * 4_000)).result()
        assert (r.codes == Result.OK).all()
    size, used = eng.store.map_usage()
    assert size > 1 << 20 and used <= size
    eng.close()
    eng = Engine(str(tmp_path), clock=clock)
    assert eng.card(4_000)["principal_fen"] == 500
    eng.close()


def test_clock_drives_expiry_and_level_validity(tmp_path, clock):
    eng = Engine(str(tmp_path), clock=clock)
    eng.issue_cards([1], os.urandom(16), expires_at_s=clock.now + 100).result()
    eng.recharge(1, 10_000_000, os.urandom(16)).result()
    r = eng.swipe(1, 1_000_000, os.urandom(16)).result()  # 10,000 yuan -> 10,000 points
    assert r.columns()["level"][0] == 1
    # Two calendar years in the chain's zone: 731 days here, across 29 February 2024.
    assert eng.card(1)["level_expires_at_s"] == clock.now + 731 * 86_400
    clock.now += 100
    assert eng.swipe(1, 100, os.urandom(16)).result().codes[0] == Result.CARD_EXPIRED
    eng.close()


def test_rules_change_is_journalled_and_versioned(tmp_path, clock):
    eng = Engine(str(tmp_path), clock=clock)
    eng.issue_cards([1], os.urandom(16)).result()
    eng.recharge(1, 100_000, os.urandom(16)).result()
    res = eng.set_rules(RulesConfig(points_per_yuan_bp=20_000), b"v" * 16).result()
    assert res.code == Result.OK and eng.rules.version == 2
    assert eng.set_rules(RulesConfig(), b"v" * 16).result().replayed
    r = eng.swipe(1, 1_000, os.urandom(16)).result()
    assert r.columns()["points_delta"][0] == 20
    assert int(r.record(0)["rules_version"]) == 2
    eng.close()
    eng = Engine(str(tmp_path), clock=clock)
    assert eng.rules.points_per_yuan_bp == 20_000 and eng.rules.version == 2
    eng.close()


def test_status_moves_and_reads(tmp_path, clock):
    eng = Engine(str(tmp_path), clock=clock)
    eng.issue_cards([1], os.urandom(16)).result()
    eng.recharge(1, 1_000, os.urandom(16)).result()
    assert eng.set_card_status(1, CardStatus.FROZEN, os.urandom(16)).result().code == Result.OK
    assert eng.swipe(1, 100, os.urandom(16)).result().codes[0] == Result.CARD_FROZEN
    assert eng.set_card_status(1, CardStatus.ACTIVE, os.urandom(16)).result().code == Result.OK
    assert eng.swipe(1, 100, os.urandom(16)).result().codes[0] == Result.OK
    j = eng.card_journal(1)
    assert [int(x) for x in j["op_type"]] == [OpType.SWIPE, OpType.SET_STATUS, OpType.SET_STATUS,
                                              OpType.RECHARGE, OpType.ISSUE]
    eng.close()


def test_queue_is_bounded(tmp_path, clock):
    gate = threading.Event()
    entered = threading.Event()

    class Blocking:
        def on_commit(self, info):
            entered.set()
            gate.wait(10)

    eng = Engine(str(tmp_path), config=EngineConfig(batch_ops_max=8, queue_ops_max=16), clock=clock,
                 observer=Blocking())
    eng.issue_cards([1], os.urandom(16))  # the writer blocks in the observer after this
    assert entered.wait(10)
    eng.submit(ops_for([1] * 8, 1, ns=1))
    eng.submit(ops_for([1] * 8, 1, ns=2))
    with pytest.raises(Overloaded):
        eng.submit(ops_for([1], 1, ns=3))
    gate.set()
    eng.close()
    with pytest.raises(EngineClosed):
        eng.submit(ops_for([1], 1, ns=4))


def test_submit_edge_checks(tmp_path, clock):
    eng = Engine(str(tmp_path), config=EngineConfig(batch_ops_max=4), clock=clock)
    with pytest.raises(ValueError):
        eng.submit(np.zeros(5, dtype=OP))
    with pytest.raises(ValueError):
        eng.submit(np.zeros(0, dtype=OP))
    with pytest.raises(ValueError):
        eng.submit(np.zeros(2, dtype=np.int64))
    with pytest.raises(ValueError):
        eng.swipe(1, 1, b"short")
    eng.close()


def test_close_drains_accepted_ops(tmp_path, clock):
    eng = Engine(str(tmp_path), config=EngineConfig(batch_ops_max=16), clock=clock)
    eng.issue_cards([1], os.urandom(16)).result()
    eng.recharge(1, 10**6, os.urandom(16)).result()
    futs = [eng.submit(ops_for([1] * 16, 10, ns=200 + k)) for k in range(50)]
    eng.close()
    assert all(f.done() and (f.result().codes == Result.OK).all() for f in futs)
    eng = Engine(str(tmp_path), clock=clock)
    assert eng.card(1)["principal_fen"] == 10**6 - 50 * 16 * 10
    eng.close()


def test_failed_commit_fails_its_batch_and_leaves_no_trace(tmp_path, clock, monkeypatch):
    eng = Engine(str(tmp_path), config=EngineConfig(batch_ops_max=8), clock=clock)
    eng.issue_cards([1], os.urandom(16)).result()
    eng.recharge(1, 10_000, os.urandom(16)).result()
    real = eng.store.put_journal
    calls = {"n": 0}

    def failing(txn, recs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError("disk on fire")
        return real(txn, recs)

    monkeypatch.setattr(eng.store, "put_journal", failing)
    bad = eng.swipe(1, 1_000, b"x" * 16)
    with pytest.raises(OSError):
        bad.result()
    assert eng.card(1)["principal_fen"] == 10_000
    # The same client id was never applied, so a retry applies it now, once.
    retry = eng.swipe(1, 1_000, b"x" * 16).result()
    assert retry.codes[0] == Result.OK and retry.replayed[0] == 0
    assert eng.card(1)["principal_fen"] == 9_000
    eng.close()
    eng = Engine(str(tmp_path), clock=clock)
    assert eng.card(1)["principal_fen"] == 9_000
    assert len(eng.journal(1, 100)) == 3
    eng.close()


def test_readers_see_the_committed_cards_while_a_reload_rebuilds_them(tmp_path, clock, monkeypatch):
    """A failed commit makes the applier reload the durable state: it loads the
    checkpoint and replays the journal tail while the server goes on serving reads. A
    reader in the middle of that (here: called at the moment the replay starts, from
    inside it) must see the committed cards, not the checkpoint's older ones, nor an
    index without the cards."""
    with Engine(str(tmp_path), clock=clock) as eng:
        eng.issue_cards([1, 2], os.urandom(16)).result()
        eng.recharge(1, 10_000, os.urandom(16)).result()
    # Reopened on that checkpoint: the swipe below is the journal tail a reload replays.
    eng = Engine(str(tmp_path), config=EngineConfig(batch_ops_max=8), clock=clock)
    assert eng.swipe(1, 1_000, os.urandom(16)).result().codes[0] == Result.OK
    committed = eng.card(1)
    assert committed["principal_fen"] == 9_000
    seen = []
    real_blocks, real_put = eng.store.journal_blocks, eng.store.put_journal

    def blocks(txn, after_seq):
        if threading.current_thread().name == "mms-applier":  # the reload's replay
            seen.append((eng.card(1), eng.card(2), len(eng.cards_snapshot()),
                         len(eng.card_journal(1))))
        yield from real_blocks(txn, after_seq)

    fail = {"left": 1}

    def put_journal(txn, recs):
        if fail["left"]:
            fail["left"] -= 1
            raise OSError("disk on fire")
        return real_put(txn, recs)

    monkeypatch.setattr(eng.store, "journal_blocks", blocks)
    monkeypatch.setattr(eng.store, "put_journal", put_journal)
    with pytest.raises(OSError):
        eng.swipe(1, 500, os.urandom(16)).result()
    # The next batch finds the engine poisoned and reloads before applying it.
    assert eng.swipe(2, 0, os.urandom(16)).result() is not None
    assert len(seen) == 1
    card1, card2, n_cards, n_journal = seen[0]
    assert card1 == committed and card1["principal_fen"] == 9_000
    assert card2 is not None and card2["card_no"] == 2
    assert n_cards == 2 and n_journal == 3  # issue, recharge, swipe
    assert eng.card(1)["principal_fen"] == 9_000
    eng.close()


def test_admin_ops_commit_whole_or_not_at_all_and_replay_their_result(tmp_path, clock):
    eng = Engine(str(tmp_path), clock=clock)
    eng.issue_cards([1], os.urandom(16)).result()

    def add_note(ctx):
        card = ctx.card(1)
        ctx.put("notes", b"k", b"v")
        card["flags"] = 7
        ctx.emit(OpType.SET_STATUS, card)
        ctx.detail = {"before": {"flags": 0}, "after": {"flags": 7}}
        return {"ok": True}

    def half_then_reject(ctx):
        ctx.put("notes", b"k2", b"v2")
        ctx.emit(OpType.SET_STATUS, ctx.card(1))
        ctx.reject(Result.OP_TYPE_INVALID, "changed my mind")

    last = eng.stats()["last_seq"]
    bad = eng.admin(b"b" * 16, OpType.SET_STATUS, half_then_reject).result()
    assert bad.code == Result.OP_TYPE_INVALID and eng.stats()["last_seq"] == last
    good = eng.admin(b"a" * 16, OpType.SET_STATUS, add_note, operator_id=9).result()
    assert good.code == Result.OK and good.value == {"ok": True}
    again = eng.admin(b"a" * 16, OpType.SET_STATUS, add_note).result()
    assert again.replayed and again.value == {"ok": True} and again.seq == good.seq
    assert eng.card(1)["flags"] == 7
    with eng.store.read() as txn:
        db = eng.store.named_db("notes")
        assert txn.get(b"k", db=db) == b"v" and txn.get(b"k2", db=db) is None
    rec = eng.journal(good.seq, 1)[0]
    assert int(rec["operator_id"]) == 9 and int(rec["after"]["flags"]) == 7
    eng.close()


def test_admin_ops_journal_only_codes_of_the_op_table(tmp_path, clock):
    """An op code outside core.records.OP_NAMES would be journalled without a name (its
    audit event, card journal line and metrics label would show a number): the engine
    refuses it at admin() and at every emit, and the op changes nothing."""
    eng = Engine(str(tmp_path), clock=clock)
    eng.issue_cards([1], os.urandom(16)).result()
    with pytest.raises(ValueError, match="not in core.records.OP_NAMES"):
        eng.admin(os.urandom(16), 99, lambda ctx: None)
    last = eng.stats()["last_seq"]

    def emit_unknown(ctx, how):
        card = ctx.card(1)
        card["flags"] = 3
        if how == "emit":
            ctx.emit(201, card)
        elif how == "emit_updates":
            ctx.emit_updates(201, np.array([card]))
        else:
            ctx.emit_cards(201, np.array([card]))

    for how in ("emit", "emit_updates", "emit_cards"):
        with pytest.raises(ValueError, match="op type 201"):
            eng.admin(os.urandom(16), OpType.SET_STATUS, lambda ctx, h=how: emit_unknown(ctx, h)).result()
    assert eng.stats()["last_seq"] == last and eng.card(1)["flags"] == 0
    eng.close()


def test_publish_asserts_records_are_contiguous_and_follow_the_last_seq(tmp_path, clock):
    """The committer publishes each durable record once, in journal order: a block that
    skips a seq, repeats one or has a hole inside is refused before anything changes."""
    eng = Engine(str(tmp_path), clock=clock)
    eng.issue_cards([1, 2], os.urandom(16)).result()
    assert eng.recharge(1, 100, os.urandom(16)).result().codes[0] == Result.OK
    eng.close()
    eng = Engine(str(tmp_path), clock=clock)  # recovery publishes the tail in order
    last = eng.stats()["last_seq"]
    recs = eng.journal(1, 10)
    assert len(recs) == last >= 3
    before = (eng.card(1), eng.card(2), eng.stats()["last_seq"])
    for seqs in ([last + 2], [last], [last + 1, last + 3], [last + 1, last + 1]):
        block = np.repeat(recs[-1:], len(seqs))
        block["seq"] = seqs
        block["after"]["principal_fen"] = 12_345
        with pytest.raises(AssertionError, match="publish of seqs"):
            eng._publish_committed(block, None, claim_ids=False)
        assert (eng.card(1), eng.card(2), eng.stats()["last_seq"]) == before
    eng.close()


def test_checkpoint_rounds_spread_over_commits_and_a_crash_mid_round_recovers(tmp_path):
    """A checkpoint writes its chunks a few per group commit (here one). A crash image
    taken in the middle of a round (chunks newer than the checkpoint on disk, the
    checkpoint mark not yet moved) and one taken after the round both recover exactly
    the committed cards, refund totals and client ids."""
    import random

    path = str(tmp_path / "d")
    cfg = EngineConfig(checkpoint_ops=500, checkpoint_interval_s=3600,
                       checkpoint_chunks_per_commit=1, batch_ops_max=256)
    eng = Engine(path, config=cfg)
    n = 2_000                                   # 8 chunks of 256 cards
    eng.issue_cards(range(1, n + 1), os.urandom(16)).result()
    eng.recharge(1, 100_000, b"R" * 16).result()
    sale = eng.swipe(1, 50_000, b"S" * 16).result()
    sale_seq = int(sale.seq[0])
    rng = random.Random(5)

    def batch(k: int) -> None:
        # 199 recharges and a 10-fen refund of the sale: refund totals add up, so they
        # must be checkpointed exactly as of the round's seq.
        ops = np.zeros(200, dtype=OP)
        ops["client_hi"], ops["client_lo"] = 77, np.arange(k * 200 + 1, k * 200 + 201)
        ops["card_no"] = [rng.randint(1, n) for _ in range(200)]
        ops["amount_fen"], ops["op_type"] = 5_000, OpType.RECHARGE
        ops[199]["card_no"], ops[199]["amount_fen"], ops[199]["op_type"] = 1, 10, OpType.REFUND
        ops[199]["ref_hi"], ops[199]["ref_lo"] = split_client_id(b"S" * 16)
        assert np.all(eng.submit(ops).result().codes == Result.OK)

    k, mid, images = 0, None, []
    while len(images) < 2 and k < 200:
        batch(k)
        k += 1
        r = eng._round
        if r is not None and 0 < r.done < len(r.chunks) and mid is None:
            mid = r.seq
            images.append(("mid", str(tmp_path / "mid")))
            eng.backup(images[-1][1])
            state_mid = eng.cards_snapshot().copy()
            refunded_mid = eng._refunded.lookup(0, sale_seq)
            assert eng.stats()["checkpoint_seq"] < r.seq   # the mark has not moved yet
        elif mid is not None and eng.stats()["checkpoint_seq"] >= mid:
            images.append(("after", str(tmp_path / "after")))
            eng.backup(images[-1][1])
            state_after = eng.cards_snapshot().copy()
            refunded_after = eng._refunded.lookup(0, sale_seq)
    assert len(images) == 2, "no round was caught in the middle"
    eng.close()
    for name, image in images:
        got = Engine(image, config=cfg)
        want = state_mid if name == "mid" else state_after
        assert got.cards_snapshot().tobytes() == want.tobytes(), name
        assert got._refunded.lookup(0, sale_seq) == (
            refunded_mid if name == "mid" else refunded_after) > 0, name
        # Every client id is still known: a retry applies nothing.
        ops = np.zeros(1, dtype=OP)
        ops["client_hi"], ops["client_lo"], ops["card_no"] = 77, 1, 1
        ops["amount_fen"], ops["op_type"] = 5_000, OpType.RECHARGE
        assert got.submit(ops).result().replayed[0] == 1, name
        got.close()


def test_ids_past_the_retention_are_forgotten_while_running(tmp_path):
    """The id index of a long-running engine keeps only the retention window: a prune
    (daily by itself) forgets ids of checkpointed blocks past it and keeps the rest,
    including ids not yet in any block; expired blocks leave the database too."""
    now = [1_780_000_000]
    cfg = EngineConfig(id_retention_s=1_000, checkpoint_ops=1, checkpoint_interval_s=3600)
    eng = Engine(str(tmp_path / "d"), config=cfg, clock=lambda: now[0])
    eng.issue_cards([1], b"I" * 16).result()

    def recharge(tag: bytes):
        return eng.recharge(1, 100, tag * 16).result()

    recharge(b"A")                       # checkpointed in a block stamped now
    recharge(b"B")
    now[0] += 2_000                      # A's and B's blocks are past the retention
    recharge(b"C")
    assert len(eng._id_index) >= 4
    kept = eng.prune_ids()
    assert recharge(b"C").replayed[0] == 1                # inside the window: a replay
    assert recharge(b"A").replayed[0] == 0                # forgotten: a new op
    assert kept <= 3
    assert int(eng.card(1)["principal_fen"]) == 400
    eng.close()
    with Engine(str(tmp_path / "d"), config=cfg, clock=lambda: now[0]) as again:
        assert again.recharge(1, 100, b"C" * 16).result().replayed[0] == 1
        assert again.recharge(1, 100, b"A" * 16).result().replayed[0] == 1   # its 2nd op


def test_prune_runs_by_itself_after_a_checkpoint(tmp_path):
    import time as _time
    now = [1_780_000_000]
    cfg = EngineConfig(id_retention_s=1_000, checkpoint_ops=1, checkpoint_interval_s=3600,
                       id_prune_interval_s=1)
    eng = Engine(str(tmp_path / "d"), config=cfg, clock=lambda: now[0])
    try:
        eng.issue_cards([1], b"I" * 16).result()
        eng.recharge(1, 100, b"A" * 16).result()
        now[0] += 2_000
        _time.sleep(1.1)
        eng.recharge(1, 100, b"B" * 16).result()          # its checkpoint schedules a prune
        eng.recharge(1, 100, b"C" * 16).result()
        deadline = _time.monotonic() + 10
        while eng.recharge(1, 100, b"A" * 16).result().replayed[0] == 1:
            assert _time.monotonic() < deadline, "the prune never ran"
            _time.sleep(0.05)
    finally:
        eng.close()


def test_a_long_replay_is_checkpointed_before_the_engine_takes_ops(tmp_path):
    """Recovery that replayed more than recovery_checkpoint_records checkpoints at once,
    so a crash right after the start does not replay the same tail again (issue 8). A
    backup of a live engine is its crash image (nothing closed, no final checkpoint)."""
    cfg = EngineConfig(checkpoint_ops=10**9, checkpoint_interval_s=10**6,
                       recovery_checkpoint_records=100, batch_ops_max=256)
    eng = Engine(str(tmp_path / "live"), config=cfg)
    eng.issue_cards(range(1, 51), os.urandom(16)).result()
    for k in range(3):
        assert np.all(eng.submit(ops_for(np.arange(1, 101) % 50 + 1, 1_000, OpType.RECHARGE,
                                         start=100 * k)).result().codes == Result.OK)
    last = eng.stats()["last_seq"]
    assert eng.stats()["checkpoint_seq"] < last - 300
    eng.backup(str(tmp_path / "crash1"))
    eng.close()
    first = Engine(str(tmp_path / "crash1"), config=cfg)
    st = first.stats()
    assert st["recovered_records"] >= 300 and st["checkpoint_seq"] == st["last_seq"] == last
    first.backup(str(tmp_path / "crash2"))      # killed right after it started
    second = Engine(str(tmp_path / "crash2"), config=cfg)
    assert second.stats()["recovered_records"] == 0
    assert second.cards_snapshot().tobytes() == first.cards_snapshot().tobytes()
    # A short tail is only replayed: the next regular checkpoint takes it.
    assert np.all(second.submit(ops_for(np.arange(1, 51), 10, OpType.RECHARGE, ns=8))
                  .result().codes == Result.OK)
    second.backup(str(tmp_path / "crash3"))
    first.close()
    second.close()
    third = Engine(str(tmp_path / "crash3"), config=cfg)
    st = third.stats()
    assert st["recovered_records"] == 50 and st["checkpoint_seq"] == last
    third.close()


def test_the_checkpoint_interval_runs_from_the_last_checkpoint_not_the_start(tmp_path, clock):
    """A server restarted more often than checkpoint_interval_s still checkpoints: the
    interval is timed from the last checkpoint's time kept in LMDB (issue 8)."""
    path = str(tmp_path / "d")
    cfg = EngineConfig(checkpoint_ops=10**9, checkpoint_interval_s=60)
    eng = Engine(path, config=cfg, clock=clock)
    eng.issue_cards([1, 2], os.urandom(16)).result()
    eng.close()                                  # checkpoints at clock.now

    def two_ops(eng, ns):
        first = eng.submit(ops_for([1], 100, OpType.RECHARGE, ns=ns)).result()
        eng.submit(ops_for([2], 100, OpType.RECHARGE, ns=ns, start=1)).result()
        return int(first.seq[0])

    clock.now += 30                              # restarted before the interval is up
    eng = Engine(path, config=cfg, clock=clock)
    at = eng.stats()["checkpoint_seq"]
    assert at == eng.stats()["last_seq"]
    two_ops(eng, 1)
    assert eng.stats()["checkpoint_seq"] == at, "30 s after the checkpoint: not due"
    eng.backup(str(tmp_path / "crash"))          # and it crashes
    eng.close()
    clock.now += 31                              # 61 s after the last checkpoint
    eng = Engine(str(tmp_path / "crash"), config=cfg, clock=clock)
    seq = two_ops(eng, 2)
    # The first op's commit starts the round, the next commit writes it: due at once,
    # although this process started well under 60 s ago.
    assert eng.stats()["checkpoint_seq"] == seq
    eng.close()


def test_publish_without_the_gil_copies_the_same_and_refuses_what_it_cannot_do_alone():
    """The applier publishes a hot batch into its work table without the GIL
    (release_gil): the same cards, dirty chunks and id claims as with it; it needs
    apply_batch's slots and inserts no card, so a record without a valid slot is refused."""
    from core import _fastpath
    from core.records import CARD, JOURNAL

    n, cap = 40, 64
    recs = np.zeros(n + 1, dtype=JOURNAL)
    recs["seq"] = np.arange(1, n + 2)
    recs["client_hi"], recs["client_lo"] = 9, np.arange(1, n + 2)
    recs["card_no"] = np.arange(101, 101 + n + 1) % 7 + 101  # several records per card
    recs["after"]["card_no"] = recs["card_no"]
    recs["after"]["principal_fen"] = np.arange(n + 1) * 10
    recs["kind"][n] = 2  # no after-image: skipped
    out = []
    for release in (False, True):
        cards = np.zeros(cap, dtype=CARD)
        index, ids = _fastpath.KeyMap(16), _fastpath.KeyMap(16)
        slots = np.zeros(n + 1, dtype=np.int64)
        for no in range(101, 108):
            index.insert(0, no, no - 101)
        slots[:] = [index.lookup(0, int(no)) for no in recs["card_no"]]
        dirty = np.zeros(1, dtype=np.uint8)
        assert _fastpath.publish(recs, n + 1, cards, index, ids, 7, dirty, 8, slots,
                                 release_gil=release) == 7
        out.append((cards.tobytes(), dirty.tolist(), [ids.lookup(9, i) for i in range(1, n + 2)]))
        assert len(index) == 7
    assert out[0] == out[1]
    assert out[1][2][:n] == [(s << 8) for s in range(1, n + 1)] and out[1][2][n] == -1
    cards = np.zeros(cap, dtype=CARD)
    index = _fastpath.KeyMap(16)
    with pytest.raises(ValueError, match="needs the slots"):
        _fastpath.publish(recs, n, cards, index, None, 0, None, 8, None, release_gil=True)
    with pytest.raises(ValueError, match="has no slot"):
        _fastpath.publish(recs, n, cards, index, None, 0, None, 8,
                          np.full(n + 1, -1, dtype=np.int64), release_gil=True)
    assert len(index) == 0 and not cards.view(np.uint8).any()


def test_submit_refuses_ops_that_point_past_their_items_or_coupons(tmp_path, clock):
    """Checked before anything is queued, with and without the arrays."""
    from core.records import COUPONS_PER_OP, ITEM

    eng = Engine(str(tmp_path), clock=clock)
    try:
        def bad(**fields):
            ops = ops_for([1], 100)
            for k, v in fields.items():
                ops[k] = v
            return ops

        with pytest.raises(ValueError, match="past the items"):
            eng.submit(bad(items_n=1))
        with pytest.raises(ValueError, match="past the items"):
            eng.submit(bad(items_off=1, items_n=1), np.zeros(1, dtype=ITEM))
        with pytest.raises(ValueError, match="past the coupon ids"):
            eng.submit(bad(coupons_n=1))
        with pytest.raises(ValueError, match="past the coupon ids"):
            eng.submit(bad(coupons_off=1, coupons_n=1), None, np.array([5], dtype=np.uint64))
        with pytest.raises(ValueError, match="coupons per op"):
            eng.submit(bad(coupons_n=COUPONS_PER_OP + 1), None,
                       np.arange(1, COUPONS_PER_OP + 2, dtype=np.uint64))
        assert eng.stats()["last_seq"] == 0
    finally:
        eng.close()


@pytest.mark.parametrize("wait_ms", [60_000, 0])
def test_background_admin_ops_yield_to_queued_swipes(tmp_path, clock, wait_ms):
    """A background op (a plan chunk) queued before a swipe runs after it; with no
    priority (0) they run in the order queued."""
    eng = Engine(str(tmp_path), clock=clock, config=EngineConfig(background_wait_max_ms=wait_ms))
    eng.issue_cards([1], os.urandom(16)).result()
    eng.recharge(1, 10_000, os.urandom(16)).result()
    held, release = threading.Event(), threading.Event()

    def hold(ctx):                      # keeps the writer busy while the others queue
        held.set()
        release.wait(60)
        ctx.emit(OpType.SET_STATUS, None)
        return {}

    def note(ctx):
        ctx.emit(OpType.SET_STATUS, None)
        return {}

    first = eng.admin(os.urandom(16), OpType.SET_STATUS, hold)
    assert held.wait(60)
    bg = eng.admin(os.urandom(16), OpType.SET_STATUS, note, background=True)
    sw = eng.submit(ops_for([1], 100))
    release.set()
    assert first.result().code == Result.OK
    bg_seq, sw_seq = bg.result().seq, int(sw.result().seq[0])
    assert (sw_seq < bg_seq) if wait_ms else (bg_seq < sw_seq)
    eng.close()


def test_a_background_op_waits_no_longer_than_its_bound(tmp_path, clock):
    eng = Engine(str(tmp_path), clock=clock, config=EngineConfig(background_wait_max_ms=1))
    eng.issue_cards([1], os.urandom(16)).result()
    eng.recharge(1, 10_000, os.urandom(16)).result()
    held, release = threading.Event(), threading.Event()

    def hold(ctx):
        held.set()
        release.wait(60)
        return {}

    first = eng.admin(os.urandom(16), OpType.SET_STATUS, hold)
    assert held.wait(60)
    bg = eng.admin(os.urandom(16), OpType.SET_STATUS, lambda ctx: ctx.emit(OpType.SET_STATUS, None) and {},
                   background=True)
    threading.Event().wait(0.01)        # the bound (1 ms) has surely passed: not a race
    sw = eng.submit(ops_for([1], 100))
    release.set()
    first.result()
    assert bg.result().seq < int(sw.result().seq[0])
    with pytest.raises(ValueError):
        EngineConfig(background_wait_max_ms=-1).validate()
    eng.close()


def test_a_commit_is_counted_before_it_is_answered(tmp_path, clock):
    # A scrape that follows an answer must see its ops (mms_ops_total): the observer runs
    # before the futures of a hot batch, a cold op and a refused cold op resolve.
    gate, entered = threading.Event(), threading.Event()
    seen = []

    class Holding:
        def on_commit(self, info):
            seen.append(int(info.op_types[0]))
            entered.set()
            gate.wait(10)

    eng = Engine(str(tmp_path), config=EngineConfig(batch_ops_max=8), clock=clock,
                 observer=Holding())
    try:
        for make in (lambda: eng.issue_cards([1], os.urandom(16)),
                     lambda: eng.submit(ops_for([1], 1, OpType.RECHARGE, ns=1)),
                     lambda: eng.issue_cards([1], os.urandom(16))):  # refused: card 1 exists
            gate.clear()
            entered.clear()
            fut = make()
            assert entered.wait(10)
            assert not fut.done()  # held in the observer: counted, not yet answered
            gate.set()
            fut.result(10)
        assert len(seen) == 3
    finally:
        gate.set()
        eng.close()

@pytest.mark.parametrize("wait_ms", [60_000, 1])
def test_a_background_op_lets_swipes_that_came_during_its_drain_go_first(tmp_path, clock, wait_ms):
    """Taken with no swipe queued, a background op first waits for the commits in
    flight; a swipe queued meanwhile runs before it (it goes back to the head of its
    queue), unless it has already waited its bound."""
    eng = Engine(str(tmp_path), clock=clock, config=EngineConfig(background_wait_max_ms=wait_ms))
    eng.issue_cards([1], os.urandom(16)).result()
    eng.recharge(1, 10_000, os.urandom(16)).result()
    held, release = threading.Event(), threading.Event()
    swipes: list = []
    armed = threading.Event()
    drain = eng._drain

    def drain_then_swipe():             # the swipe comes while the op drains
        drain()
        if armed.is_set() and not swipes:
            swipes.append(eng.submit(ops_for([1], 100)))

    eng._drain = drain_then_swipe

    def hold(ctx):
        held.set()
        release.wait(60)
        ctx.emit(OpType.SET_STATUS, None)
        return {}

    first = eng.admin(os.urandom(16), OpType.SET_STATUS, hold)
    assert held.wait(60)
    armed.set()
    bg = eng.admin(os.urandom(16), OpType.SET_STATUS,
                   lambda ctx: ctx.emit(OpType.SET_STATUS, None) and {}, background=True)
    if wait_ms == 1:
        threading.Event().wait(0.01)    # the bound (1 ms) has surely passed: not a race
    release.set()
    assert first.result().code == Result.OK
    bg_seq = bg.result().seq
    assert len(swipes) == 1
    sw_seq = int(swipes[0].result().seq[0])
    assert (sw_seq < bg_seq) if wait_ms == 60_000 else (bg_seq < sw_seq)
    eng.close()


def test_background_ops_take_no_more_than_their_share_of_the_writer(tmp_path, clock):
    """After a background op held the writer, the next one waits until its share
    (background_share_bp) allows: a swipe submitted after the first is answered goes
    before the second, queued earlier with nothing else queued. At close the paced op
    still runs."""
    eng = Engine(str(tmp_path), clock=clock, config=EngineConfig(
        background_share_bp=1, background_wait_max_ms=60_000))  # pause: 9,999x the hold
    eng.issue_cards([1], os.urandom(16)).result()
    eng.recharge(1, 10_000, os.urandom(16)).result()

    def note(ctx):
        ctx.emit(OpType.SET_STATUS, None)
        return {}

    assert eng.admin(os.urandom(16), OpType.SET_STATUS, note, background=True).result().code == Result.OK
    second = eng.admin(os.urandom(16), OpType.SET_STATUS, note, background=True)
    sw_seq = int(eng.submit(ops_for([1], 100)).result().seq[0])
    eng.close()
    assert second.result().code == Result.OK and second.result().seq > sw_seq
    for bad in (0, 10_001):
        with pytest.raises(ValueError, match="background_share_bp"):
            EngineConfig(background_share_bp=bad).validate()


def test_a_checkpoint_round_moves_by_the_size_of_each_commit(tmp_path, clock):
    """A commit of a few records writes one chunk of an open round, not
    checkpoint_chunks_per_commit of them (a 20-swipe commit fsyncing 4 MiB stalled its
    swipes); a cold op writes its share in its own commit. The round still closes."""
    eng = Engine(str(tmp_path), clock=clock, config=EngineConfig(
        checkpoint_ops=1_000, checkpoint_interval_s=3_600))
    eng.issue_cards(range(1, 2_001), os.urandom(16)).result()   # 2,000 records: 8 chunks
    eng.prune_ids()     # a task through the writer: the issue's checkpoint check has run
    r = eng._round
    assert r is not None and r.done == 0 and len(r.chunks) == 8
    eng.recharge(1, 10_000, os.urandom(16)).result()
    assert r.done == 1
    eng.set_card_status(2, CardStatus.FROZEN, os.urandom(16)).result()   # a cold op
    assert r.done == 2 and eng.stats()["checkpoint_seq"] == 0
    for k in range(6):
        eng.recharge(3, 100 + k, os.urandom(16)).result()
    assert eng._round is None and eng.stats()["checkpoint_seq"] == r.seq
    with pytest.raises(ValueError, match="checkpoint_round_ratio"):
        EngineConfig(checkpoint_round_ratio=0).validate()
    eng.close()
