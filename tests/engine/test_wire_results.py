"""Replies written from a real engine's results (server/rpc/_wire.pyx gather_results,
through codec.results_bytes and SingleResults.reply) are protobuf's bytes for the same
results: OK ops, rejected ones, retries within the batch, negative deltas, and retries
of earlier batches (whose records come from the journal: BatchResult.columns)."""

from __future__ import annotations

import os

import numpy as np
from engine_ops import ops_for

from core import Engine, EngineConfig
from core.records import OpType, Result
from server.mms_pb import pos_pb2
from server.rpc import codec
from server.rpc.codec import SingleResults, encode_results, results_bytes


def same_as_protobuf(res) -> None:
    assert results_bytes(res) == encode_results(res).SerializeToString()
    single = SingleResults(res)
    for i in range(len(res)):
        assert single.reply(i) == pos_pb2.SwipeResponse(result=single.op_result(i)).SerializeToString()


def test_replies_from_engine_results_equal_protobufs(tmp_path):
    eng = Engine(str(tmp_path), config=EngineConfig(batch_ops_max=64))
    try:
        eng.issue_cards([1, 2, 3], os.urandom(16)).result()
        eng.submit(ops_for([1, 2], 300_000, OpType.RECHARGE, ns=1)).result()
        first = ops_for([1, 2, 3, 1, 99], [1_000, 2_500, 700, 40, 10], ns=2)
        first["client_lo"][3] = first["client_lo"][0]  # a retry inside the batch
        res = eng.submit(first).result()
        codes = res.codes.tolist()
        assert Result.OK in codes and any(c != Result.OK for c in codes)
        assert codec._gathered(res, codec._RESULT_NAMES) is not None
        same_as_protobuf(res)
        # a swipe's principal delta is negative: its two's complement on the wire
        assert (codec._gathered(res, ("principal_delta_fen",))[0] >= 2**63).any()
        # Retries of the earlier batch: their records are read from the journal.
        again = eng.submit(np.concatenate([first[:2], ops_for([2], 900, ns=4)])).result()
        assert again.replayed.tolist()[:2] == [1, 1]
        assert codec._gathered(again, codec._RESULT_NAMES) is None
        same_as_protobuf(again)
    finally:
        eng.close()
