"""One fsync per group commit (Store lazy_meta): no batch is answered before a later
fsync of the file has made its commit's meta page durable."""

import os
import threading

import lmdb
import numpy as np
import pytest
from harness import tagged_op

from core import Engine, EngineConfig
from core.records import OP, CardStatus, OpType, Result
from core.rules import CouponTemplate


class _Txn:
    def __init__(self, txn, env):
        self._txn, self._env = txn, env
        self.last_seq = 0

    def __getattr__(self, attr):
        return getattr(self._txn, attr)

    def __enter__(self):
        return self

    def put(self, key, value, *a, db=None, **kw):
        if db is not None and db == self._env.journal_db:
            self.last_seq = int.from_bytes(key, "big")
        return self._txn.put(key, value, *a, db=db, **kw)

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            self._txn.abort()
            return
        self._txn.commit()
        self._env.committed(self.last_seq)


class _Env:
    """The store's LMDB environment, counting write commits and fsyncs: commit k is
    durable once commit k+1 has returned (its fsync covered k's meta page) or a sync
    that started after k returned has returned; without lazy_meta, when it returns."""

    def __init__(self, env, journal_db, lazy):
        self._env, self.journal_db, self.lazy = env, journal_db, lazy
        self.lock = threading.Lock()
        self.n = 0          # write commits returned
        self.durable = 0    # commits known durable (1-based count)
        self.seq_commit: list[tuple[int, int]] = []  # (last journal seq, commit number)
        self.syncs = 0

    def __getattr__(self, attr):
        return getattr(self._env, attr)

    def begin(self, *a, write=False, **kw):
        txn = self._env.begin(*a, write=write, **kw)
        return _Txn(txn, self) if write else txn

    def committed(self, last_seq):
        with self.lock:
            self.n += 1
            self.durable = max(self.durable, self.n - 1 if self.lazy else self.n)
            if last_seq:
                self.seq_commit.append((last_seq, self.n))

    def sync(self, force=False):
        with self.lock:
            upto = self.n
        self._env.sync(force)
        with self.lock:
            self.syncs += 1
            self.durable = max(self.durable, upto)

    def is_durable(self, seq):
        with self.lock:
            for last, k in self.seq_commit:
                if seq <= last:
                    return k <= self.durable
        return False


def _swipes(cards, ns, start):
    ops = np.zeros(len(cards), dtype=OP)
    ops["client_hi"] = ns
    ops["client_lo"] = np.arange(start + 1, start + len(cards) + 1)
    ops["card_no"] = cards
    ops["amount_fen"] = 100
    ops["op_type"] = OpType.SWIPE
    return ops


@pytest.mark.parametrize("lazy", [True, False])
def test_no_batch_is_answered_before_its_commit_is_durable(tmp_path, lazy):
    eng = Engine(str(tmp_path), config=EngineConfig(batch_ops_max=64, rollups=False,
                                                    lazy_meta_sync=lazy))
    assert eng.store.lazy_meta is lazy
    eng.issue_cards(np.arange(1, 65, dtype=np.uint64), os.urandom(16)).result()
    recharge = _swipes(np.arange(1, 65, dtype=np.uint64), 1, 0)
    recharge["op_type"], recharge["amount_fen"] = OpType.RECHARGE, 10_000_000
    eng.submit(recharge).result()
    env = _Env(eng.store.env, eng.store.db["journal"], lazy)
    eng.store.env = env
    checked, early = [], []

    def check(fut):
        r = fut.result()
        for seq in r.seq[r.codes == Result.OK].tolist():
            checked.append(seq)
            if not env.is_durable(int(seq)):
                early.append(seq)

    try:
        # Bursts (each batch's commit is made durable by the next one's) and lone
        # submissions (nothing follows: an fsync of their own).
        for burst in range(4):
            futs = [eng.submit(_swipes(np.arange(1, 65, dtype=np.uint64), 10 + burst, k * 64))
                    for k in range(24)]
            for f in futs:
                f.add_done_callback(check)
            for f in futs:
                f.result()
            lone = eng.submit(_swipes(np.array([5], np.uint64), 100 + burst, 0))
            lone.add_done_callback(check)
            lone.result()
        # An admin op is answered after an fsync that covers its commit.
        admin_durable = []
        fut = eng.set_card_status(64, CardStatus.FROZEN, os.urandom(16))
        fut.add_done_callback(lambda f: admin_durable.append(env.durable == env.n))
        assert fut.result().code == Result.OK
    finally:
        eng.close()
    assert len(checked) == 4 * (24 * 64 + 1)
    assert early == []
    assert admin_durable == [True]
    if lazy:
        # Under a burst most commits are made durable by the next one, not an fsync.
        assert env.syncs < env.n


def test_a_replicated_primary_and_a_standby_keep_two_fsyncs_per_commit(tmp_path):
    from core.engine.replication import Feed

    with Engine(str(tmp_path / "alone")) as eng:
        assert eng.store.lazy_meta
    with Engine(str(tmp_path / "primary"), feed=Feed(1)) as eng:
        # A frame goes to the standbys when its commit returns: it must be durable then.
        assert not eng.store.lazy_meta
    with Engine(str(tmp_path / "off"), config=EngineConfig(sync=False)) as eng:
        assert not eng.store.lazy_meta
    Engine(str(tmp_path / "standby")).close()
    standby = Engine(str(tmp_path / "standby"), standby=True)
    try:
        assert not standby.store.lazy_meta
    finally:
        standby.close()


def _coupon_engine(tmp_path):
    """64 cards with money on them and coupon template 1 (1 yuan off)."""
    eng = Engine(str(tmp_path), config=EngineConfig(batch_ops_max=64, rollups=False))
    eng.issue_cards(np.arange(1, 65, dtype=np.uint64), os.urandom(16)).result()
    recharge = _swipes(np.arange(1, 65, dtype=np.uint64), 1, 0)
    recharge["op_type"], recharge["amount_fen"] = OpType.RECHARGE, 10_000_000
    eng.submit(recharge).result()
    eng.put_coupon_template(CouponTemplate(1, "1 yuan off", "fixed", value_fen=100),
                            os.urandom(16)).result()
    return eng


class _BlockedBackgroundOp:
    """A background admin op (as a plan's chunk) that issues a coupon to each card, then
    waits inside its transaction until the test releases it (having queued what must
    follow it). answered: at its answer, (its commit durable?, its coupons visible?)."""

    def __init__(self, eng, env, cards):
        self.entered, self.release, self.issued, self.answered = (
            threading.Event(), threading.Event(), [], [])

        def build(ctx):
            self.issued.extend(eng.put_coupons(ctx, 1, np.asarray(cards, np.uint64)))
            self.entered.set()
            assert self.release.wait(60), "the test never released the op"
            return {"coupon_ids": self.issued}

        self.future = eng.admin(os.urandom(16), OpType.COUPON_ISSUE, build, background=True)
        self.future.add_done_callback(lambda f: self.answered.append(
            (env.is_durable(f.result().seq), eng.coupon(self.issued[0]) is not None)))
        assert self.entered.wait(60)
        self.syncs = env.syncs     # fsyncs before its commit


def test_a_background_op_shares_its_commit_with_the_swipes_queued_behind_it(tmp_path):
    """A plan chunk (a background admin op) with swipes queued while it was built: the
    swipes are applied after it and committed in its transaction (one commit, one fsync
    for both), a swipe may already redeem one of its new coupons (the work side knows
    them), and neither is answered, nor its coupons visible, before that commit is
    durable. Alone, it gets an fsync of its own."""
    eng = _coupon_engine(tmp_path)
    eng.ensure_dbs(["coupon_stats"])    # opened with the real transaction (not _Txn)
    env = _Env(eng.store.env, eng.store.db["journal"], True)
    eng.store.env = env
    seen_at_fsync = []
    real_made_durable = eng._made_durable

    def made_durable(done):
        # The fsync that makes the shared commit durable: nothing answered or shown yet.
        seen_at_fsync.append((eng.coupon(op.issued[0]), op.future.done(), swipe.done()))
        return real_made_durable(done)

    try:
        op = _BlockedBackgroundOp(eng, env, np.arange(1, 11))
        commits = env.n
        eng._made_durable = made_durable
        ops, _items, coupons = tagged_op("redeem-new", 3, 5_000, coupons=[op.issued[2]])
        swipe = eng.submit(ops, None, coupons)
        op.release.set()
        r = swipe.result()
        seq = op.future.result().seq
        assert op.future.result().code == Result.OK
        assert r.codes[0] == Result.OK and r.columns()["coupon_fen"][0] == 100
        assert int(r.seq[0]) == seq + 10    # right after the op's 10 records
        assert seen_at_fsync == [(None, False, False)]
        assert op.answered == [(True, True)]
        # One commit and one fsync for both (nothing followed them).
        assert env.n - commits == 1 and env.syncs - op.syncs == 1
        assert eng.coupon(op.issued[2])["redeemed_seq"] == int(r.seq[0])
        del eng._made_durable

        # Alone (nothing queued behind it): an fsync of its own, then the answer.
        op = _BlockedBackgroundOp(eng, env, np.arange(11, 21))
        op.release.set()
        assert op.future.result().code == Result.OK
        assert op.answered == [(True, True)] and env.syncs - op.syncs == 1
    finally:
        eng.close()
    with Engine(str(tmp_path), config=EngineConfig(rollups=False)) as again:
        assert len(again.coupons_snapshot()) == 20
        assert again.coupon(op.issued[0]) is not None


def test_a_full_map_in_a_shared_commit_retries_the_op_and_requeues_the_swipes(tmp_path):
    """The map fills in the transaction a batch was joined to: both go back to the
    durable state, the map grows, the op is built again and the swipes are applied
    again (once each), and both are answered."""
    eng = _coupon_engine(tmp_path)
    real_write, real_grow, full, grown = eng._write_batch, eng.store.grow, [], []

    def write_batch(txn, recs, item_recs):
        if threading.current_thread().name == "mms-applier" and not full:
            full.append(len(recs))
            raise lmdb.MapFullError("full (test)")
        return real_write(txn, recs, item_recs)

    def grow():
        grown.append(1)
        return real_grow()

    eng._write_batch, eng.store.grow = write_batch, grow
    try:
        before = eng.card(3)["principal_fen"]
        op = _BlockedBackgroundOp(eng, _Env(eng.store.env, eng.store.db["journal"], True),
                                  np.arange(1, 11))
        swipes = [eng.submit(_swipes(np.array([3], np.uint64), 200, k)) for k in range(3)]
        op.release.set()
        # Built twice (the first transaction was aborted), answered once.
        assert op.future.result().code == Result.OK and full == [3] and grown == [1]
        assert all(f.result().codes[0] == Result.OK for f in swipes)
        assert eng.card(3)["principal_fen"] == before - 300
        assert len(eng.coupons_snapshot()) == 10    # the aborted build's were not kept
    finally:
        eng.close()
    with Engine(str(tmp_path), config=EngineConfig(rollups=False)) as again:
        assert again.card(3)["principal_fen"] == before - 300
        assert len(again.coupons_snapshot()) == 10


def test_a_refund_queued_behind_a_background_op_is_not_joined_to_its_commit(tmp_path):
    """A refund reads the journal for the swipe it names, so a batch holding one is not
    applied inside a chunk's transaction: it commits on its own, after the op, and is
    still answered only once durable."""
    eng = _coupon_engine(tmp_path)
    eng.ensure_dbs(["coupon_stats"])
    env = _Env(eng.store.env, eng.store.db["journal"], True)
    eng.store.env = env
    try:
        ops, _items, _coupons = tagged_op("to-refund", 4, 2_000)
        swipe = eng.submit(ops).result()
        op = _BlockedBackgroundOp(eng, env, np.arange(1, 6))
        commits = env.n
        ops, _items, _coupons = tagged_op("refund", 4, 2_000, OpType.REFUND, ref="to-refund")
        refund = eng.submit(ops)
        durable = []
        refund.add_done_callback(lambda f: durable.append(env.is_durable(int(f.result().seq[0]))))
        op.release.set()
        r = refund.result()
        assert op.future.result().code == Result.OK and op.answered == [(True, True)]
        assert r.codes[0] == Result.OK and int(r.seq[0]) > int(swipe.seq[0])
        assert env.n - commits == 2 and durable == [True]   # the op's commit, then its own
    finally:
        eng.close()
