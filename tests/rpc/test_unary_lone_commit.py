"""Unary Swipes through the real server (gRPC on loopback): each coalesced submission is
alone in the writer, so the applier commits, fsyncs and answers it itself
(core/engine/writer.py, Engine._commit_alone), and no reply leaves before the fsync that
covers its commit."""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from test_server_rpc import CARDS, Running

from core import EngineConfig
from server.mms_pb import admin_pb2, pos_pb2, types_pb2


class _Env:
    """The store's environment, counting write commits (by thread, with the last journal
    seq each wrote) and the commits each fsync covered."""

    def __init__(self, env, journal_db) -> None:
        self._env, self.journal_db = env, journal_db
        self.lock = threading.Lock()
        self.commits: list[str] = []
        self.last_seqs: list[int] = []
        self.durable = 0

    def is_durable(self, seq: int) -> bool:
        with self.lock:
            for k, last in enumerate(self.last_seqs):
                if seq <= last:
                    return k < self.durable
        return False

    def __getattr__(self, attr):
        return getattr(self._env, attr)

    def begin(self, *a, write=False, **kw):
        txn = self._env.begin(*a, write=write, **kw)
        return _Txn(txn, self) if write else txn

    def sync(self, force=False):
        with self.lock:
            upto = len(self.commits)
        self._env.sync(force)
        with self.lock:
            self.durable = max(self.durable, upto)


class _Txn:
    def __init__(self, txn, env: _Env) -> None:
        self._txn, self._env = txn, env
        self.last_seq = 0

    def __getattr__(self, attr):
        return getattr(self._txn, attr)

    def put(self, key, value, *a, db=None, **kw):
        if db is not None and db == self._env.journal_db:
            self.last_seq = int.from_bytes(key, "big")
        return self._txn.put(key, value, *a, db=db, **kw)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            self._txn.abort()
            return
        self._txn.commit()
        with self._env.lock:
            self._env.commits.append(threading.current_thread().name)
            self._env.last_seqs.append(self.last_seq)


@pytest.fixture
def srv(tmp_path):
    r = Running(str(tmp_path), config=EngineConfig(rollups=False))
    r.admin.IssueCards(admin_pb2.IssueCardsRequest(client_id=os.urandom(16), card_nos=CARDS),
                       metadata=r.md("admin"))
    for no in CARDS:
        r.pos.Recharge(pos_pb2.RechargeRequest(client_id=os.urandom(16), card_no=no,
                                               amount_fen=100_000), metadata=r.md())
    assert r.engine.store.lazy_meta
    r.env = _Env(r.engine.store.env, r.engine.store.db["journal"])
    r.engine.store.env = r.env
    yield r
    r.close()


def test_each_unary_swipe_is_durable_when_its_reply_arrives(srv):
    env = srv.env
    def principal() -> int:
        return srv.pos.GetCard(pos_pb2.GetCardRequest(card_no=CARDS[0]),
                               metadata=srv.md()).card.principal_fen

    before, deltas = principal(), 0
    for k in range(12):
        resp = srv.pos.Swipe(pos_pb2.SwipeRequest(client_id=os.urandom(16), card_no=CARDS[0],
                                                  amount_fen=10), metadata=srv.md())
        assert resp.result.code == types_pb2.RESULT_OK and not resp.result.replayed
        deltas += resp.result.principal_delta_fen
        # Its commit (the last one) is covered by an fsync that ran before the reply.
        assert env.is_durable(resp.result.seq)
        with env.lock:
            assert len(env.commits) == k + 1 and env.durable == k + 1
    # Every one committed by the applier: the committer and publisher were not woken.
    assert env.commits == ["mms-applier"] * 12
    assert deltas < 0 and principal() == before + deltas


def test_concurrent_unary_swipes_are_coalesced_and_durable_when_answered(srv):
    env = srv.env
    ids = [os.urandom(16) for _ in range(64)]

    def swipe(i: int):
        resp = srv.pos.Swipe(pos_pb2.SwipeRequest(client_id=ids[i], card_no=CARDS[i % len(CARDS)],
                                                  amount_fen=1), metadata=srv.md())
        # Its commit is covered by an fsync by the time its reply arrives.
        return resp.result, env.is_durable(resp.result.seq)

    with ThreadPoolExecutor(16) as pool:
        out = list(pool.map(swipe, range(64)))
    assert all(r.code == types_pb2.RESULT_OK and not r.replayed for r, _ in out)
    assert all(durable for _, durable in out)
    assert len({r.seq for r, _ in out}) == 64
    with env.lock:
        assert env.durable == len(env.commits) >= 1
        assert set(env.commits) == {"mms-applier"}
    # A retry of one of them answers the first result and applies nothing.
    first = out[5][0]
    again = srv.pos.Swipe(pos_pb2.SwipeRequest(client_id=ids[5], card_no=CARDS[5],
                                               amount_fen=1), metadata=srv.md()).result
    assert again.replayed and again.seq == first.seq
    assert again.principal_delta_fen == first.principal_delta_fen
