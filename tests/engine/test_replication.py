"""Replication in one process: a primary Engine with a Feed, a Replica fed its frames.
After a random mixed workload every database of the standby equals the primary's, key
by key; the standby's in-memory cards equal a recovery's; an older epoch is refused;
the ack gate holds acknowledgements; sync mode holds them until the standby confirms."""

from __future__ import annotations

import threading
import time

import lmdb
import numpy as np
import pytest

from core import (
    Engine,
    EngineConfig,
    Feed,
    NotLeader,
    Replica,
    ReplicationError,
    StaleEpoch,
    decode_frame,
    diverged,
    hot_copy,
    install_copy,
    read_position,
)
from core.domain.members import MemberStore
from core.engine.replication import encode_frame
from core.engine.storage import MAX_DBS
from core.records import JOURNAL, OP, OpType, Result
from core.rules import CouponTemplate
from tests.common import cid

KEY = bytes(range(32))


def dump_env(env: lmdb.Environment) -> dict[str, dict[bytes, bytes]]:
    """Every named database of an environment: name -> {key: value}; empty ones left out."""
    out: dict[str, dict[bytes, bytes]] = {}
    # One read transaction for the names and every database, each opened inside it: an
    # open_db without a transaction takes a write transaction, which waits for a writer
    # of the live engine (the rollup tailer) while holding the GIL that writer needs.
    with env.begin() as txn:
        names = [bytes(k) for k, _v in txn.cursor()]
        for name in names:
            db = env.open_db(name, txn=txn, create=False)
            rows = {bytes(k): bytes(v) for k, v in txn.cursor(db=db)}
            if rows:
                out[name.decode()] = rows
    return out


def dump_dir(path: str) -> dict[str, dict[bytes, bytes]]:
    env = lmdb.open(path, readonly=True, max_dbs=MAX_DBS, lock=True, create=False)
    try:
        return dump_env(env)
    finally:
        env.close()


def assert_same(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b), "the same databases"
    for name in a:
        assert a[name].keys() == b[name].keys(), f"database {name}: the same keys"
        diff = [k for k in a[name] if a[name][k] != b[name][k]]
        assert not diff, f"database {name}: {len(diff)} values differ, first key {diff[0]!r}"


def pump(feed: Feed, replica: Replica) -> int:
    """Apply every frame the feed has after the replica's position; confirm them."""
    n = 0
    while True:
        frames = feed.frames_after(replica.applied_frame, 1 << 24)
        if not frames:
            return n
        for f in frames:
            replica.apply(f)
            n += 1
        feed.confirm(replica.applied_frame)


def _ops(cards, amount, op_type, rng) -> np.ndarray:
    ops = np.zeros(len(cards), dtype=OP)
    ops["card_no"] = cards
    ops["amount_fen"] = amount
    ops["op_type"] = op_type
    ops["client_hi"] = rng.integers(1, 2**62, len(cards))
    ops["client_lo"] = rng.integers(1, 2**62, len(cards))
    ops["store_id"] = 1
    return ops


def _standby_of(eng: Engine, tmp_path, name="standby") -> Replica:
    copy, data = tmp_path / f"{name}.copy", tmp_path / name
    frame, _epoch = hot_copy(eng.store, str(copy))
    install_copy(str(copy), str(data))
    replica = Replica(str(data))
    assert replica.applied_frame == frame
    return replica


def test_mixed_workload_standby_equals_primary_database_by_database(tmp_path):
    rng = np.random.default_rng(14)
    cfg = EngineConfig(batch_ops_max=256, checkpoint_ops=700, checkpoint_chunks_per_commit=2)
    feed = Feed(epoch=1)
    eng = Engine(str(tmp_path / "primary"), config=cfg, feed=feed)
    ms = MemberStore(eng, key=KEY)
    eng.issue_cards(np.arange(1, 301), cid()).result()
    # The standby joins late: it bootstraps from a hot copy, then follows.
    replica = _standby_of(eng, tmp_path)
    next_card = 301
    for step in range(60):
        kind = rng.integers(0, 10)
        if kind < 5:
            eng.submit(_ops(rng.integers(1, next_card, 64), int(rng.integers(1, 500)),
                            OpType.SWIPE, rng)).result()
        elif kind < 8:
            eng.submit(_ops(rng.integers(1, next_card, 32), 10_000, OpType.RECHARGE, rng)).result()
        elif kind == 8:
            eng.issue_cards(np.arange(next_card, next_card + 20), cid()).result()
            next_card += 20
            ms.create({"name": f"会员{step}", "phone": f"1380000{step:04d}"}, cid())
        else:
            tpl = CouponTemplate(template_id=int(step), name=f"t{step}", kind="fixed",
                                 value_fen=500, valid_days=30)
            eng.put_coupon_template(tpl, cid()).result()
            eng.issue_coupons(int(step), [1, 2, 3], cid()).result()
        if step % 7 == 0:
            pump(feed, replica)
            # At any frame the standby's cards are the primary's as committed.
            for no in rng.integers(1, next_card, 20).tolist():
                assert replica.engine.card(no) == eng.card(no)
            assert replica.applied_seq == eng.stats()["last_seq"]
    eng.close()  # the final checkpoint and the rollups' catch-up are frames too
    pump(feed, replica)
    assert replica.applied_frame == feed.last_committed
    cards = {no: replica.engine.card(no) for no in range(1, next_card)}
    mine = dump_env(replica.engine.store.env)
    replica.close()
    assert_same(dump_dir(str(tmp_path / "primary")), mine)
    # Its memory is what recovery builds from the same databases.
    reopened = Engine(str(tmp_path / "standby"), config=cfg)
    assert {no: reopened.card(no) for no in range(1, next_card)} == cards
    reopened.close()


def test_standby_refuses_ops_and_older_epochs(tmp_path):
    feed = Feed(epoch=3)
    eng = Engine(str(tmp_path / "p"), feed=feed)
    eng.issue_cards([1, 2], cid()).result()
    replica = _standby_of(eng, tmp_path)
    eng.recharge(1, 100, cid()).result()
    pump(feed, replica)
    assert replica.applied_epoch == 3 and replica.engine.card(1)["principal_fen"] == 100
    with pytest.raises(NotLeader):
        replica.engine.swipe(1, 10, cid())
    with pytest.raises(NotLeader):
        replica.engine.issue_cards([9], cid())
    # A frame of an older epoch (a deposed primary) is refused and writes nothing.
    eng.recharge(2, 50, cid()).result()
    good = feed.frames_after(replica.applied_frame, 1 << 20)[0]
    f = decode_frame(good)
    raw = bytearray(good)
    raw[8:16] = (2).to_bytes(8, "little")  # the header's epoch field
    with pytest.raises(StaleEpoch) as e:
        replica.apply(bytes(raw))
    assert e.value.reason == "STALE_EPOCH" and "epoch 2" in str(e.value)
    assert replica.engine.card(2)["principal_fen"] == 0
    # A gap is refused too; the right frame then applies.
    later = feed.frames_after(f.number, 1 << 20)
    if later:
        with pytest.raises(ReplicationError) as g:
            replica.apply(later[0])
        assert g.value.reason == "FRAME_GAP"
    replica.apply(good)
    assert replica.engine.card(2)["principal_fen"] == 50
    eng.close()
    replica.close()
    assert read_position(str(tmp_path / "standby"))[1] == 3
    # A primary given an older epoch than its data holds does not start.
    with pytest.raises(StaleEpoch):
        Engine(str(tmp_path / "p"), feed=Feed(epoch=2))


def test_insert_many_keeps_each_ids_first_value_as_publish_relies_on():
    # _publish_committed claims ids by inserting every record in order: the first record
    # of each id must win, as np.unique's first index chose before.
    from core._fastpath import KeyMap
    rng = np.random.default_rng(3)
    for n in (1, 2, 7, 500):
        hi = rng.integers(1, 4, n).astype(np.uint64)  # few ids: most repeat, not adjacent
        lo = rng.integers(1, 4, n).astype(np.uint64)
        km = KeyMap(16)
        km.insert_many(hi, lo, np.arange(n, dtype=np.int64))
        pairs = np.empty(n, dtype=[("hi", "<u8"), ("lo", "<u8")])
        pairs["hi"], pairs["lo"] = hi, lo
        uniq, first = np.unique(pairs, return_index=True)
        assert [km.lookup(int(u["hi"]), int(u["lo"])) for u in uniq] == first.tolist()


def test_a_frame_whose_journal_block_is_not_contiguous_writes_nothing(tmp_path):
    feed = Feed(epoch=1)
    eng = Engine(str(tmp_path / "p"), feed=feed)
    eng.issue_cards([1, 2, 3], cid()).result()
    replica = _standby_of(eng, tmp_path)
    eng.submit(_ops(np.array([1, 2, 3]), 1_000, OpType.RECHARGE, np.random.default_rng(1))).result()
    # The frames before the recharge's (the rollup tailer's) apply as they are.
    frames = feed.frames_after(replica.applied_frame, 1 << 20)
    while not decode_frame(frames[0]).puts("journal"):
        replica.apply(frames.pop(0))
    good = frames[0]
    f = decode_frame(good)
    entries = []
    for op, name, key, value in f.entries:
        if name == b"journal":
            recs = np.frombuffer(value, dtype=JOURNAL)
            assert len(recs) == 3
            value = recs[::-1].tobytes()  # the same records, seqs descending
        entries.append((op, name, bytes(key), bytes(value)))
    bad = encode_frame(f.epoch, f.number, f.first_seq, f.last_seq, f.time_ns, entries)
    with pytest.raises(ReplicationError) as e:
        replica.apply(bad)
    assert e.value.reason == "FRAME_INVALID"
    assert replica.applied_frame == f.number - 1
    assert replica.engine.card(1)["principal_fen"] == 0
    replica.apply(good)
    assert [replica.engine.card(n)["principal_fen"] for n in (1, 2, 3)] == [1_000] * 3
    eng.close()
    replica.close()


def test_frames_applied_in_one_transaction_equal_frames_applied_one_by_one(tmp_path):
    """apply_many (a standby behind gets its waiting frames in one message): one
    transaction, the same databases as one by one; a failure inside writes none of them;
    durable() runs after the commit, before the publish."""
    rng = np.random.default_rng(5)
    feed = Feed(epoch=1)
    eng = Engine(str(tmp_path / "p"), config=EngineConfig(checkpoint_ops=300), feed=feed)
    eng.issue_cards(np.arange(1, 51), cid()).result()
    one = _standby_of(eng, tmp_path, "one")
    many = _standby_of(eng, tmp_path, "many")
    for _ in range(12):
        eng.submit(_ops(rng.integers(1, 51, 40), 300, OpType.RECHARGE, rng)).result()
    # The two hot copies may hold different frames (the rollup tailer commits between):
    # each gets the frames after its own, up to the same last one.
    to_one = feed.frames_after(one.applied_frame, 1 << 24)
    last = decode_frame(to_one[-1]).number
    frames = [f for f in feed.frames_after(many.applied_frame, 1 << 24)
              if decode_frame(f).number <= last]
    assert len(frames) >= 12
    for f in to_one:
        one.apply(f)

    def fail_at_the_third(frame):
        if frame.number == many.applied_frame + 3:
            raise RuntimeError("killed inside the transaction")

    many.before_commit = fail_at_the_third
    with pytest.raises(RuntimeError):
        many.apply_many(frames)
    assert many.applied_frame == one.applied_frame - len(frames)
    assert many.engine.card(1)["principal_fen"] == 0 and many.applied_seq < one.applied_seq
    many.before_commit = None
    seen = []
    many.apply_many(frames, lambda n: seen.append((n, many.applied_frame)))
    assert seen == [(one.applied_frame, one.applied_frame - len(frames))]
    assert many.applied_frame == one.applied_frame and many.applied_seq == one.applied_seq
    assert [many.engine.card(n) for n in range(1, 51)] == [one.engine.card(n) for n in range(1, 51)]
    a, b = dump_env(one.engine.store.env), dump_env(many.engine.store.env)
    one.close()
    many.close()
    eng.close()
    assert_same(a, b)


def test_ack_gate_holds_acknowledgements_until_it_opens(tmp_path):
    eng = Engine(str(tmp_path / "p"))
    eng.issue_cards([1], cid()).result()
    is_open = threading.Event()
    asked = threading.Event()

    def gate() -> bool:
        asked.set()
        return is_open.is_set()

    eng.set_ack_gate(gate)
    fut = eng.recharge(1, 500, cid())
    assert asked.wait(10), "the gate was asked"
    # The op is durable and visible, but its acknowledgement is held, not failed.
    assert eng.stats()["last_seq"] == 2
    assert not fut.done()
    adm = eng.issue_cards([2], cid())
    assert not adm.done()
    is_open.set()
    assert fut.result(10).codes[0] == Result.OK
    assert adm.result(10).code == Result.OK
    eng.set_ack_gate(None)
    assert eng.recharge(1, 1, cid()).result(10).codes[0] == Result.OK
    eng.close()


def test_an_open_gate_answers_on_the_publisher_and_a_held_answer_keeps_its_order(tmp_path):
    """A gate (leadership) without a sync standby: a commit whose gate is open and behind
    which nothing is held is answered by the publisher itself, with no hand-off to the
    acker; a closed gate still holds answers, in commit order, until it opens."""
    eng = Engine(str(tmp_path / "p"))
    eng.issue_cards([1], cid()).result()
    is_open = threading.Event()
    is_open.set()
    eng.set_ack_gate(is_open.is_set)
    answered: list[tuple[str, str]] = []

    def note(tag: str):
        return lambda _f: answered.append((tag, threading.current_thread().name))

    fut = eng.recharge(1, 500, cid())
    fut.add_done_callback(note("open"))
    assert fut.result(10).codes[0] == Result.OK
    assert answered == [("open", "mms-publisher")]
    is_open.clear()
    held = [eng.recharge(1, 1, cid()) for _ in range(3)]
    for i, f in enumerate(held):
        f.add_done_callback(note(f"held{i}"))
    deadline = time.monotonic() + 10
    while eng.stats()["last_seq"] < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert eng.stats()["last_seq"] == 5  # durable, not acknowledged
    assert not any(f.done() for f in held)
    is_open.set()
    assert [f.result(10).codes[0] for f in held] == [Result.OK] * 3
    assert [t for t, _ in answered[1:]] == ["held0", "held1", "held2"]
    assert {name for _, name in answered[1:]} == {"mms-acker"}
    after = eng.recharge(1, 1, cid())
    after.add_done_callback(note("after"))
    assert after.result(10).codes[0] == Result.OK
    assert answered[-1] == ("after", "mms-publisher")
    adm = eng.issue_cards([2], cid())  # an admin op, from the applier thread
    adm.add_done_callback(note("admin"))
    assert adm.result(10).code == Result.OK
    assert answered[-1] == ("admin", "mms-applier")
    eng.close()


def test_sync_mode_acknowledges_only_after_the_standby_confirmed(tmp_path):
    feed = Feed(epoch=1, mode="sync", on_standby_lost="wait")
    eng = Engine(str(tmp_path / "p"), feed=feed)
    replica = _standby_of(eng, tmp_path)
    issued = eng.issue_cards([1], cid())
    assert feed.wait_frames(replica.applied_frame, 10)
    pump(feed, replica)
    assert issued.result(10).code == Result.OK
    fut = eng.recharge(1, 700, cid())
    # The standby applies the frame but does not confirm it yet.
    while replica.engine.card(1)["principal_fen"] != 700:
        assert feed.wait_frames(replica.applied_frame, 10), "the recharge's frame came"
        for frame in feed.frames_after(replica.applied_frame, 1 << 20):
            replica.apply(frame)
    assert not fut.done(), "acknowledged before the standby confirmed"
    feed.confirm(replica.applied_frame)
    assert fut.result(10).codes[0] == Result.OK
    eng.close()
    replica.close()


def test_sync_mode_falls_back_to_async_after_the_timeout(tmp_path):
    feed = Feed(epoch=1, mode="sync", on_standby_lost="async", timeout_s=0.2)
    eng = Engine(str(tmp_path / "p"), feed=feed)
    fut = eng.issue_cards([1], cid())
    # No standby confirms: after the timeout the feed acknowledges asynchronously.
    assert fut.result(30).code == Result.OK
    assert feed.confirmed < feed.last_committed
    st = feed.status()
    assert st["mode"] == "sync_degraded" and st["fallbacks"] == 1
    # A standby that catches up brings sync back.
    replica = _standby_of(eng, tmp_path)
    feed.confirm(replica.applied_frame)
    assert feed.status()["mode"] == "sync"
    eng.close()
    replica.close()


def test_promote_and_rejoin_two_nodes(tmp_path):
    """The standby promotes with a new epoch; the old primary, which wrote a tail the
    standby never got, is found diverged (it bootstraps again); one without a tail
    follows from where it was."""
    feed = Feed(epoch=1)
    old = Engine(str(tmp_path / "a"), feed=feed)
    old.issue_cards([1, 2, 3], cid()).result()
    replica = _standby_of(old, tmp_path, "b")
    old.recharge(1, 1_000, cid()).result()
    pump(feed, replica)
    old.recharge(1, 99, cid()).result()   # the tail: never shipped
    old.close()
    a_frame, a_epoch = read_position(str(tmp_path / "a"))
    assert a_frame > replica.applied_frame
    at = replica.applied_frame
    new_feed = Feed(epoch=2)
    new = replica.promote(2, feed=new_feed)
    assert new.card(1)["principal_fen"] == 1_000
    assert new.recharge(2, 5, cid()).result().codes[0] == Result.OK
    assert diverged(new.store, a_frame, a_epoch)
    # The old primary discards everything and takes a hot copy of the new one.
    rejoined = _rejoin(new, tmp_path, "a")
    pump(new_feed, rejoined)
    assert rejoined.engine.card(1)["principal_fen"] == 1_000
    assert rejoined.engine.card(2)["principal_fen"] == 5
    assert rejoined.applied_epoch == 2
    # A node exactly at the promotion point has no tail: it may follow as it is.
    assert not diverged(new.store, at, 1) and diverged(new.store, at + 1, 1)
    new.close()
    pump(new_feed, rejoined)
    mine = dump_env(rejoined.engine.store.env)
    rejoined.close()
    assert_same(dump_dir(str(tmp_path / "b")), mine)


def test_a_standby_indexes_no_client_id_and_its_promotion_still_replays_them(tmp_path):
    """A standby takes no op and never prunes client ids: it does not index the ones its
    frames bring (its index would only grow, one entry an op). The primary it becomes
    rebuilds them from the store: a retry of an op the old primary acknowledged, sent
    to the new one, answers the first result and applies nothing twice."""
    rng = np.random.default_rng(5)
    feed = Feed(epoch=1)
    old = Engine(str(tmp_path / "a"), config=EngineConfig(checkpoint_ops=400), feed=feed)
    old.issue_cards(np.arange(1, 51), cid()).result()
    replica = _standby_of(old, tmp_path, "b")
    known = len(replica.engine._id_index)
    recharges = _ops(np.arange(1, 51), 1_000, OpType.RECHARGE, rng)
    first = old.submit(recharges).result()
    swipes = [_ops(rng.integers(1, 51, 64), 3, OpType.SWIPE, rng) for _ in range(12)]
    for ops in swipes:
        old.submit(ops).result()
    pump(feed, replica)
    assert replica.applied_seq == old.stats()["last_seq"]
    assert len(replica.engine._id_index) == known
    balances = {no: replica.engine.card(no)["principal_fen"] for no in range(1, 51)}
    old.close()
    new = replica.promote(2, feed=Feed(epoch=2))
    again = new.submit(recharges).result()
    assert bool(np.all(again.replayed == 1)) and list(again.seq) == list(first.seq)
    assert bool(np.all(new.submit(swipes[-1]).result().replayed == 1))
    assert {no: new.card(no)["principal_fen"] for no in range(1, 51)} == balances
    new.close()


def _rejoin(primary: Engine, tmp_path, name: str) -> Replica:
    from core import wipe
    wipe(str(tmp_path / name))
    return _standby_of(primary, tmp_path, name)


def test_close_fails_acks_held_for_a_standby_that_never_comes(tmp_path):
    """Sync mode, "wait", no standby: more commits than ACKS_HELD_MAX are held (the
    committer waits behind them); close does not hang, and every held op is failed
    with EngineClosed, never acknowledged; each one is durable and in the journal."""
    from core import EngineClosed
    from core.engine.writer import ACKS_HELD_MAX

    feed = Feed(epoch=1, mode="sync", on_standby_lost="wait")
    eng = Engine(str(tmp_path / "p"), feed=feed)
    card = eng.issue_cards([1], cid())
    futs = [eng.recharge(1, 10, cid()) for _ in range(ACKS_HELD_MAX * 3)]
    assert not card.done()
    eng.close()
    for fut in [card, *futs]:
        with pytest.raises(EngineClosed):
            fut.result(30)
    reopened = Engine(str(tmp_path / "p"))
    assert reopened.card(1)["principal_fen"] == 10 * len(futs)
    reopened.close()



def test_a_commit_wakes_a_frame_waiter_and_not_a_held_acknowledgement(tmp_path):
    """Feed: a commit notifies the frame waiters (wait_frames) only; the acknowledgements
    the acker holds for the standby (wait_confirmed) are notified by a confirmation, not
    woken by every commit meanwhile (each wake-up is the acker's CPU and a GIL switch)."""
    feed = Feed(epoch=1, mode="sync", on_standby_lost="wait")
    eng = Engine(str(tmp_path / "p"), feed=feed)
    try:
        notified = {"cond": 0, "framed": 0}
        for name, cond in (("cond", feed._cond), ("framed", feed._framed)):
            real = cond.notify_all

            def counted(real=real, name=name):
                notified[name] += 1
                real()
            cond.notify_all = counted
        at, seq0 = feed.last_committed, feed.last_seq
        futs = [eng.issue_cards([1], cid())]
        assert feed.wait_frames(at, 30), "the commit woke the frame waiter"
        futs += [eng.recharge(1, 100, cid()) for _ in range(3)]
        # Until the four ops' journal seqs are in committed frames. How many frames that
        # takes is not fixed: a loaded machine batches ops into one commit, and the rollup
        # tailer's commits are frames too (with no journal seq). Before, the test waited
        # for the frame at + 4, and flaked both ways under load: a frame that never came,
        # or one that came before the last recharge's.
        while feed.last_seq < seq0 + 4:
            assert feed.wait_frames(feed.last_committed, 30)
        assert notified["framed"] >= feed.last_committed - at >= 2, "every commit notified"
        assert notified["cond"] == 0, "no commit notified the held acknowledgements"
        assert not any(f.done() for f in futs), "held for the standby"
        feed.confirm(feed.last_committed)
        assert notified["cond"] == 1
        assert [f.result(30).code if hasattr(f.result(30), "code") else f.result(30).codes[0]
                for f in futs] == [Result.OK] * 4
    finally:
        feed.confirm(feed.last_committed)
        eng.close()


@pytest.mark.parametrize("group", [1, 3])
def test_the_replay_bench_applies_a_recorded_stream_to_the_primarys_store(tmp_path, group):
    """bench/replication_replay.py's replay: a hot copy and the frames after it, saved
    as the recorder saves them, applied to a copy give the primary's store key by key."""
    from bench.replication_replay import load_frames, replay_into, save_frames

    feed = Feed(epoch=1)
    eng = Engine(str(tmp_path / "p"), feed=feed)
    rec = tmp_path / "rec"
    at, _epoch = hot_copy(eng.store, str(rec / "base"))
    rng = np.random.default_rng(11)
    cards = list(range(100, 120))
    assert eng.issue_cards(cards, cid()).result(30).code == Result.OK
    for _ in range(4):
        eng.submit(_ops(cards, 50, OpType.RECHARGE, rng)).result(30)
        eng.submit(_ops(cards, 7, OpType.SWIPE, rng)).result(30)
    frames = [bytes(f) for f in feed.frames_after(at, 1 << 30)]
    save_frames(str(rec / "frames.bin"), frames)
    assert [bytes(f) for f in load_frames(str(rec / "frames.bin"))] == frames
    theirs = dump_env(eng.store.env)
    eng.close()
    out = replay_into(str(rec), str(tmp_path / "replayed"), group)
    assert out["frames"] == len(frames) and out["records"] > 0
    assert_same(theirs, dump_dir(str(tmp_path / "replayed")))



def _journal_entries(frame: bytes) -> list[tuple[int, int]]:
    """(op, value length) of each journal entry of an encoded frame, as sent (before
    decode_frame unpacks a packed one)."""
    from core.engine.replication import _ENTRY, _HEADER
    n = _HEADER.unpack_from(frame, 0)[-1]
    off, out = _HEADER.size, []
    for _ in range(n):
        op, ln, lk, lv = _ENTRY.unpack_from(frame, off)
        off += _ENTRY.size
        if frame[off:off + ln] == b"journal":
            out.append((op, lv))
        off += ln + lk + lv
    return out


def test_a_journal_block_over_the_packed_bound_ships_plain(tmp_path, monkeypatch):
    """The primary packs a journal block only up to PACKED_BLOCK_BYTES_MAX, the bound the
    standby's decode refuses above (a few bytes on the wire cannot ask it for gigabytes):
    a larger block goes plain, and the standby applies both kinds to the primary's state."""
    from core.engine._framepack import pack, unpack

    from core.engine import replication
    from core.engine.replication import PUT, PUT_PACKED
    W = JOURNAL.itemsize
    monkeypatch.setattr(replication, "PACKED_BLOCK_BYTES_MAX", 16 * W)
    rng = np.random.default_rng(3)
    feed = Feed(epoch=1)
    eng = Engine(str(tmp_path / "primary"), config=EngineConfig(batch_ops_max=256), feed=feed)
    eng.issue_cards(np.arange(1, 101), cid()).result()
    replica = _standby_of(eng, tmp_path)
    start = feed.last_committed
    eng.submit(_ops(np.arange(1, 9), 100, OpType.RECHARGE, rng)).result()    # 8 records
    eng.submit(_ops(np.arange(1, 65), 100, OpType.RECHARGE, rng)).result()   # 64 records
    sent = [e for f in feed.frames_after(start, 1 << 24) for e in _journal_entries(bytes(f))]
    assert any(op == PUT_PACKED and lv < 8 * W for op, lv in sent), sent
    assert (PUT, 64 * W) in sent, sent
    assert not any(op == PUT_PACKED and lv >= 16 * W for op, lv in sent)
    pump(feed, replica)
    for no in range(1, 101):
        assert replica.engine.card(no) == eng.card(no)
    assert replica.applied_seq == eng.stats()["last_seq"]
    # The decode's bound, checked before anything is made.
    recs = np.zeros(64, dtype=JOURNAL)
    recs["seq"] = np.arange(1, 65)
    raw = recs.tobytes()
    with pytest.raises(ValueError):
        unpack(pack(raw, W), len(raw) - 1)
    assert bytes(unpack(pack(raw, W), len(raw))) == raw
    replica.close()
    eng.close()
