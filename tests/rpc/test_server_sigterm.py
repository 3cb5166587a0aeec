"""SIGTERM under load: the server stops accepting, drains, commits and exits 0, and no
acknowledged op is lost (each is in the journal, and a retry of it applies nothing)."""

from __future__ import annotations

import asyncio
import os
import random
import threading
import time

import grpc
import numpy as np

from core import Engine
from core.records import OP, OpType, Result
from server.client import CHANNEL_OPTIONS, auth
from server.mms_pb import pos_pb2, pos_pb2_grpc, types_pb2
from server.tools.launch import ChildServer, TerminalSpec, issue_and_fund

CARDS = list(range(70_000, 70_064))
FUND_FEN = 10**8
STREAMS, TILLS = 3, 2
BATCH = 64
# Bounds on the load: SIGTERM comes after this many acknowledged ops or this long.
ACKED_BEFORE_TERM = 3_000
LOAD_SECONDS_MAX = 10.0
BATCHES_PER_STREAM_MAX = 2_000


async def _setup(target: str, admin: str, pos: str) -> None:
    from server.client import aio_channel, stubs

    async with aio_channel(target) as ch:
        p, a = stubs(ch)
        await issue_and_fund(a, p, admin, pos, CARDS, FUND_FEN)


def test_sigterm_under_load_loses_no_acknowledged_op(tmp_path):
    terms = [TerminalSpec(1, 0, "admin"), TerminalSpec(2, 5, "pos")]
    child = ChildServer(str(tmp_path), terms).start()
    acked: dict[bytes, tuple[int, int]] = {}  # client id -> (card_no, seq)
    lock = threading.Lock()
    stop = threading.Event()
    errors: list[str] = []
    try:
        asyncio.run(_setup(child.target, child.token("admin"), child.token("pos")))
        md = auth(child.token("pos"))
        deadline = time.monotonic() + LOAD_SECONDS_MAX

        def stream_worker(seed: int) -> None:
            rng = random.Random(seed)
            sent: dict[int, tuple[bytes, list[int]]] = {}

            def batches():
                for i in range(BATCHES_PER_STREAM_MAX):
                    if stop.is_set() or time.monotonic() > deadline:
                        return
                    ids = os.urandom(16 * BATCH)
                    nos = [rng.choice(CARDS) for _ in range(BATCH)]
                    sent[i] = (ids, nos)
                    yield pos_pb2.SwipeStreamRequest(batch_id=i, swipes=types_pb2.SwipeColumns(
                        client_ids=ids, card_nos=nos, amount_fen=[rng.randint(1, 500)] * BATCH))

            with grpc.insecure_channel(child.target, options=CHANNEL_OPTIONS) as ch:
                stub = pos_pb2_grpc.PosServiceStub(ch)
                try:
                    for resp in stub.SwipeStream(batches(), metadata=md):
                        ids, nos = sent.pop(resp.batch_id)
                        with lock:
                            for k, (code, seq) in enumerate(zip(resp.results.codes,
                                                                resp.results.seq, strict=True)):
                                if code != types_pb2.RESULT_OK:
                                    errors.append(types_pb2.Result.Name(code))
                                    continue
                                acked[ids[16 * k:16 * k + 16]] = (nos[k], seq)
                except grpc.RpcError as e:
                    errors.append(e.code().name)

        def till_worker(seed: int) -> None:
            rng = random.Random(seed)
            with grpc.insecure_channel(child.target) as ch:
                stub = pos_pb2_grpc.PosServiceStub(ch)
                while not stop.is_set() and time.monotonic() < deadline:
                    cid, no = os.urandom(16), rng.choice(CARDS)
                    try:
                        r = stub.Swipe(pos_pb2.SwipeRequest(client_id=cid, card_no=no,
                                                            amount_fen=100), metadata=md,
                                       timeout=20)
                    except grpc.RpcError as e:
                        errors.append(e.code().name)
                        return
                    with lock:
                        acked[cid] = (no, r.result.seq)

        threads = [threading.Thread(target=stream_worker, args=(i,)) for i in range(STREAMS)]
        threads += [threading.Thread(target=till_worker, args=(100 + i,)) for i in range(TILLS)]
        for t in threads:
            t.start()
        while time.monotonic() < deadline:
            with lock:
                if len(acked) >= ACKED_BEFORE_TERM:
                    break
            time.sleep(0.01)
        rc = child.terminate()  # SIGTERM while the load runs
        stop.set()
        for t in threads:
            t.join(30)
        assert rc == 0, "\n".join(child.output)
        assert any("stopped" in line for line in child.output)
    finally:
        stop.set()
        child.kill()

    assert len(acked) >= 100
    # Calls cut off by the shutdown fail with a status, never hang or crash.
    assert set(errors) <= {"UNAVAILABLE", "CANCELLED"}, errors
    eng = Engine(child.data)
    try:
        last = eng.stats()["last_seq"]
        journal = eng.journal(1, last + 1)
        by_id = {(int(h), int(lo)): (int(c), int(s), int(r)) for h, lo, c, s, r in zip(
            journal["client_hi"], journal["client_lo"], journal["card_no"], journal["seq"],
            journal["result"], strict=True)}
        for cid, (no, seq) in acked.items():
            key = (int.from_bytes(cid[:8], "big"), int.from_bytes(cid[8:], "big"))
            assert by_id.get(key) == (no, seq, Result.OK), cid.hex()
        # Retrying every acknowledged op applies nothing.
        items = list(acked.items())[:4096]
        ops = np.zeros(len(items), dtype=OP)
        ops["client_hi"] = [int.from_bytes(cid[:8], "big") for cid, _ in items]
        ops["client_lo"] = [int.from_bytes(cid[8:], "big") for cid, _ in items]
        ops["card_no"] = [no for _, (no, _seq) in items]
        ops["amount_fen"] = 100
        ops["store_id"], ops["terminal_id"], ops["op_type"] = 5, 2, OpType.SWIPE
        before = eng.stats()["last_seq"]
        res = eng.submit(ops).result(30)
        assert res.replayed.all()
        assert eng.stats()["last_seq"] == before
        # Money adds up: every card's balance is its funding minus what its swipes took.
        spent: dict[int, int] = {}
        swipes = journal[(journal["op_type"] == OpType.SWIPE) & (journal["result"] == Result.OK)]
        for no, p, b in zip(swipes["card_no"].tolist(), swipes["principal_delta_fen"].tolist(),
                            swipes["bonus_delta_fen"].tolist(), strict=True):
            spent[no] = spent.get(no, 0) - p - b
        for no in CARDS:
            c = eng.card(no)
            assert c["principal_fen"] + c["bonus_fen"] == FUND_FEN - spent.get(no, 0)
    finally:
        eng.close()
