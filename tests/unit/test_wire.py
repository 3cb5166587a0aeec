"""server/rpc/_wire.pyx and codec.results_bytes write exactly the bytes protobuf writes
for the same results (the streamed and batch replies are sent as those bytes)."""

from __future__ import annotations

import numpy as np
import pytest

from core.engine.writer import RESULT_COLUMNS
from server.mms_pb import pos_pb2, types_pb2
from server.rpc import _wire
from server.rpc.codec import encode_results, message_bytes, results_bytes


class FakeResults:
    """What encode_results reads of a BatchResult."""

    def __init__(self, n: int, rng: np.random.Generator, extremes: bool = False) -> None:
        self.codes = rng.integers(0, 40, n).astype(np.uint8)
        self.replayed = rng.integers(0, 2, n).astype(np.uint8)
        self.seq = rng.integers(0, 2**63, n, dtype=np.uint64)
        self._cols = {}
        for name in RESULT_COLUMNS:
            col = rng.integers(-(2**40), 2**40, n).astype(np.int64)
            col[rng.random(n) < 0.3] = 0
            if extremes and n >= 4:
                col[:4] = [np.iinfo(np.int64).min, np.iinfo(np.int64).max, -1, 127]
            self._cols[name] = col
        self._cols["level"] = rng.integers(0, 2**32, n).astype(np.int64)

    def columns(self) -> dict[str, np.ndarray]:
        return {k: v.copy() for k, v in self._cols.items()}


@pytest.mark.parametrize("n", [0, 1, 3, 1024])
@pytest.mark.parametrize("extremes", [False, True])
def test_results_bytes_equal_protobufs_serialisation(n, extremes):
    res = FakeResults(n, np.random.default_rng(n + 7 * extremes), extremes)
    assert results_bytes(res) == encode_results(res).SerializeToString()
    back = types_pb2.OpResultColumns.FromString(results_bytes(res))
    assert list(back.principal_delta_fen) == res.columns()["principal_delta_fen"].tolist()


def zeroed(res):
    """res with every column, code, replayed flag and seq 0."""
    for k in res._cols:
        res._cols[k][:] = 0
    res.codes[:] = 0
    res.replayed[:] = 0
    res.seq[:] = 0
    return res


def test_all_zero_columns_stay_present_as_protobuf_writes_them():
    res = zeroed(FakeResults(5, np.random.default_rng(1)))
    assert results_bytes(res) == encode_results(res).SerializeToString()


@pytest.mark.parametrize("batch_id", [0, 1, 300, 2**64 - 1])
def test_reply_messages_equal_protobufs(batch_id):
    res = FakeResults(17, np.random.default_rng(3))
    want = pos_pb2.SwipeStreamResponse(batch_id=batch_id,
                                       results=encode_results(res)).SerializeToString()
    assert message_bytes((1, batch_id), (2, results_bytes(res))) == want
    empty = FakeResults(0, np.random.default_rng(3))
    assert (message_bytes((1, batch_id), (2, results_bytes(empty)))
            == pos_pb2.SwipeStreamResponse(batch_id=batch_id, results=encode_results(empty))
            .SerializeToString())
    assert (message_bytes((1, results_bytes(res)))
            == pos_pb2.SwipeBatchResponse(results=encode_results(res)).SerializeToString())


def test_varint_edges():
    for v in (0, 1, 127, 128, 16383, 16384, 2**63, 2**64 - 1):
        m = types_pb2.OpResultColumns(seq=[v])
        assert _wire.packed_fields([(3, np.array([v], dtype=np.uint64))]) == m.SerializeToString()
        assert _wire.varint(v) == m.SerializeToString()[2:]
    with pytest.raises(OverflowError):
        _wire.varint(-1)


@pytest.mark.parametrize("n", [1, 2, 33])
@pytest.mark.parametrize("extremes", [False, True])
def test_single_replies_equal_protobufs(n, extremes):
    from server.rpc.codec import SingleResults

    res = FakeResults(n, np.random.default_rng(n + 11 * extremes), extremes)
    single = SingleResults(res)
    for i in range(n):
        want = pos_pb2.SwipeResponse(result=single.op_result(i)).SerializeToString()
        assert single.reply(i) == want
        assert pos_pb2.RechargeResponse.FromString(single.reply(i)).result == single.op_result(i)


def test_a_reply_of_zeros_is_an_empty_but_set_result():
    from server.rpc.codec import SingleResults

    res = zeroed(FakeResults(1, np.random.default_rng(5)))
    assert SingleResults(res).reply(0) == b"\x0a\x00"
    assert pos_pb2.SwipeResponse.FromString(b"\x0a\x00").HasField("result")


def test_a_strided_or_wrongly_typed_column_is_refused_not_misread():
    a = np.arange(10, dtype=np.uint64)
    with pytest.raises(ValueError):
        _wire.packed_fields([(3, a[::2])])
    with pytest.raises(ValueError):
        _wire.packed_fields([(3, a.astype(np.int64))])
    with pytest.raises(ValueError):
        _wire.single_messages(1, [(3, a[::2])])
    with pytest.raises(ValueError):
        _wire.single_messages(1, [(3, a), (4, a[:3])])
