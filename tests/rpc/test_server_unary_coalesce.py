"""Unary Swipe/Recharge coalescing in server.rpc.app.Bridge: at most one submission of
single ops in the engine; ops that arrive meanwhile go together in the next one; every
caller gets its own op's result, the same as encode_one gives; a failed submission
fails every one of its callers and does not block those after it."""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import Future

import numpy as np
import pytest

from core import Engine, EngineConfig, Overloaded
from core.records import OP, OpType, Result
from server.rpc.bridge import Bridge
from server.rpc.codec import SingleResults, encode_one
from server.rpc.errors import RpcFailure


class Ctx:
    def time_remaining(self):
        return None


class FakeEngine:
    """Records submissions; the test resolves their futures."""

    config = EngineConfig()

    def __init__(self) -> None:
        self.submitted: list[tuple[np.ndarray, Future]] = []
        self.refuse = False

    def submit(self, ops, items=None, coupon_ids=None) -> Future:
        if self.refuse:
            raise Overloaded("queue full")
        fut: Future = Future()
        self.submitted.append((ops.copy(), fut))
        return fut


def _row(card_no: int, amount: int) -> tuple:
    cid = os.urandom(16)
    return (int.from_bytes(cid[:8], "big"), int.from_bytes(cid[8:], "big"), card_no, amount,
            1, 2, 0, 0, int(OpType.SWIPE), 0)


async def _turns(n: int = 3) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


def test_one_submission_in_flight_the_rest_gather():
    async def main():
        eng = FakeEngine()
        bridge = Bridge(eng)
        first = bridge.start_one(_row(1, 10), Ctx())
        await _turns()
        assert len(eng.submitted) == 1 and bridge.single_submissions == 1
        later = [bridge.start_one(_row(2 + i, 20 + i), Ctx()) for i in range(3)]
        await _turns()
        assert len(eng.submitted) == 1, "nothing more goes while one is in the engine"
        assert bridge.inflight_ops == 1
        # The engine answers the first: the three gathered ops go as one submission.
        eng.submitted[0][1].set_exception(RuntimeError("boom"))
        await _turns()
        assert len(eng.submitted) == 2
        assert eng.submitted[1][0]["card_no"].tolist() == [2, 3, 4]
        assert eng.submitted[1][0]["amount_fen"].tolist() == [20, 21, 22]
        with pytest.raises(RuntimeError, match="boom"):
            await first
        assert not any(f.done() for f in later)
        eng.submitted[1][1].set_exception(RuntimeError("again"))
        for f in later:
            with pytest.raises(RuntimeError, match="again"):
                await f
        assert bridge.single_submissions == 0 and bridge.inflight_ops == 0

    asyncio.run(main())


def test_refused_submission_fails_its_callers_and_frees_the_slot():
    async def main():
        eng = FakeEngine()
        eng.refuse = True
        bridge = Bridge(eng)
        fut = bridge.start_one(_row(1, 10), Ctx())
        with pytest.raises(RpcFailure) as e:
            await fut
        assert e.value.reason == "ENGINE_OVERLOADED"
        assert bridge.single_submissions == 0
        eng.refuse = False
        bridge.start_one(_row(1, 10), Ctx())
        await _turns()
        assert len(eng.submitted) == 1

    asyncio.run(main())


def test_a_full_batch_goes_even_while_one_is_in_flight():
    async def main():
        eng = FakeEngine()
        bridge = Bridge(eng, batch_ops_max=4)
        bridge.start_one(_row(1, 1), Ctx())
        await _turns()
        for i in range(4):
            bridge.start_one(_row(10 + i, 1), Ctx())
        assert len(eng.submitted) == 2 and len(eng.submitted[1][0]) == 4

    asyncio.run(main())


def test_each_caller_gets_its_own_result(tmp_path):
    """Against the real engine: results of a coalesced submission, ok and rejected,
    equal encode_one's for the same op."""
    engine = Engine(str(tmp_path / "data"), config=EngineConfig(sync=False))
    try:
        cards = [7001, 7002, 7003]
        engine.issue_cards(cards, os.urandom(16), member_ids=cards).result(30)
        ops = np.zeros(2, dtype=OP)
        ops["card_no"], ops["amount_fen"], ops["op_type"] = cards[:2], 10_000, OpType.RECHARGE
        ids = np.frombuffer(os.urandom(32), dtype=">u8").reshape(2, 2)
        ops["client_hi"], ops["client_lo"] = ids[:, 0], ids[:, 1]
        assert engine.submit(ops).result(30).codes.tolist() == [Result.OK] * 2

        async def main():
            bridge = Bridge(engine)
            rows = [_row(7001, 300), _row(7002, 20_000), _row(7003, 5), _row(7001, 400)]
            got = await asyncio.gather(*(bridge.start_one(r, Ctx()) for r in rows))
            return got

        got = asyncio.run(main())
        batch = got[0][0]
        assert isinstance(batch, SingleResults)
        codes = [b.codes[i] for b, i in got]
        # 7002 cannot pay 20,000 from 10,000 (+bonus); 7003 was never funded.
        assert codes[0] == Result.OK and codes[3] == Result.OK
        assert codes[1] == Result.INSUFFICIENT_BALANCE
        assert codes[2] == Result.INSUFFICIENT_BALANCE
        for b, i in got:
            assert b.op_result(i) == encode_one(b.res, i)
        # The second swipe on 7001 sees the first one's debit.
        assert batch.op_result(got[3][1]).principal_fen < batch.op_result(got[0][1]).principal_fen
    finally:
        engine.close()


def test_batch_and_single_results_are_encoded_from_the_same_columns(tmp_path):
    """encode_results (SwipeBatch, streams) and encode_one (unary) give the same values,
    coupon and offset included, for every op of a batch."""
    from server.mms_pb import types_pb2
    from server.rpc.codec import encode_one, encode_results

    with Engine(str(tmp_path / "d")) as eng:
        eng.issue_cards([1, 2], b"I" * 16).result()
        eng.recharge(1, 50_000, b"R" * 16).result()
        ops = np.zeros(3, dtype=OP)
        ops["client_hi"], ops["client_lo"] = 7, [1, 2, 3]
        ops["card_no"] = [1, 2, 1]                  # card 2 has no money: rejected
        ops["amount_fen"] = [1_000, 1_000, 2_500]
        ops["op_type"] = OpType.SWIPE
        res = eng.submit(ops).result()
        cols = encode_results(res)
        names = [f.name for f in types_pb2.OpResult.DESCRIPTOR.fields]
        plural = {"code": "codes"}
        for i in range(3):
            one = encode_one(res, i)
            for name in names:
                assert getattr(cols, plural.get(name, name))[i] == getattr(one, name), (i, name)
        assert list(cols.codes) == [Result.OK, Result.INSUFFICIENT_BALANCE, Result.OK]
        assert list(cols.amount_fen) == [1_000, 0, 2_500]
