"""`mms bench grpc`'s streaming client writes protobuf's bytes and reads the replies'
codes as protobuf reads them (server/tools/bench.py)."""

from __future__ import annotations

import os

import numpy as np

from server.mms_pb import pos_pb2, types_pb2
from server.tools.bench import stream_reply_counts, stream_request_bytes


def test_request_bytes_are_protobufs():
    for batch_id, n in ((0, 1), (1, 3), (300, 1024), (2**64 - 1, 7)):
        cols = types_pb2.SwipeColumns(card_nos=list(range(10**7, 10**7 + n)),
                                      amount_fen=[5000] * n)
        ids = os.urandom(16 * n)
        want = pos_pb2.SwipeStreamRequest(batch_id=batch_id, swipes=types_pb2.SwipeColumns(
            client_ids=ids, card_nos=cols.card_nos, amount_fen=cols.amount_fen))
        assert stream_request_bytes(batch_id, ids, cols.SerializeToString()) == \
            want.SerializeToString()


def test_reply_counts_match_protobufs_parse():
    rng = np.random.default_rng(2)
    for batch_id, n in ((0, 1), (5, 1024), (2**40, 9)):
        codes = rng.choice([types_pb2.RESULT_OK, 3, 9], size=n).tolist()
        reply = pos_pb2.SwipeStreamResponse(batch_id=batch_id, results=types_pb2.OpResultColumns(
            codes=codes, seq=list(range(n)), principal_fen=[-5] * n)).SerializeToString()
        assert stream_reply_counts(reply) == (batch_id, codes.count(types_pb2.RESULT_OK), n)
    # Another layout (codes after the seqs) goes to protobuf's parser.
    odd = (b"\x08\x05\x12\x06" + b"\x1a\x01\x07" + b"\x0a\x01" + bytes([types_pb2.RESULT_OK]))
    assert stream_reply_counts(odd) == (5, 1, 1)
