"""The committer publishes and answers a batch itself when the publisher is idle and no
batch waits to be committed (Engine._to_publisher); otherwise the publisher does, and
batches are published and answered in commit order either way."""

import os
import threading
import time

import numpy as np

from core import Engine, EngineConfig
from core.records import OP, OpType, Result


def ops_for(cards, amount, ns, op_type=OpType.SWIPE):
    ops = np.zeros(len(cards), dtype=OP)
    ops["client_hi"] = ns
    ops["client_lo"] = np.arange(1, len(cards) + 1)
    ops["card_no"] = cards
    ops["amount_fen"] = amount
    ops["op_type"] = op_type
    return ops


def answered_by(fut, log, tag):
    fut.add_done_callback(lambda _f: log.append((tag, threading.current_thread().name)))
    return fut


def test_a_lone_batch_is_answered_by_the_committer(tmp_path):
    eng = Engine(str(tmp_path))
    eng.issue_cards([1], os.urandom(16)).result()
    log = []
    for k in range(3):
        fut = answered_by(eng.submit(ops_for([1], 100, ns=10 + k, op_type=OpType.RECHARGE)),
                          log, k)
        assert fut.result(10).codes[0] == Result.OK
    assert log == [(0, "mms-committer"), (1, "mms-committer"), (2, "mms-committer")]
    assert eng.card(1)["principal_fen"] == 300
    eng.close()


def test_batches_behind_a_busy_committer_go_to_the_publisher_in_commit_order(tmp_path):
    # One op a batch, so each submission is a batch of its own.
    eng = Engine(str(tmp_path), config=EngineConfig(batch_ops_max=1))
    eng.issue_cards([1], os.urandom(16)).result()
    eng.submit(ops_for([1], 10_000, ns=1, op_type=OpType.RECHARGE)).result(10)
    release = threading.Event()
    entered = threading.Event()
    publish_hot = eng._publish_hot

    def slow_first(job, commit_s, frame):
        if not entered.is_set():
            entered.set()
            assert release.wait(10), "the test released the first publish"
        publish_hot(job, commit_s, frame)

    eng._publish_hot = slow_first
    log = []
    first = answered_by(eng.submit(ops_for([1], 1, ns=100)), log, "a")
    assert entered.wait(10), "the first batch reached its publish"
    # While the committer is held in that publish, three more batches are applied and
    # wait in the pipe for it.
    rest = [answered_by(eng.submit(ops_for([1], 1, ns=101 + k)), log, tag)
            for k, tag in enumerate("bcd")]
    deadline = time.monotonic() + 10
    while eng._pipe.qsize() < 3 and time.monotonic() < deadline:
        time.sleep(0.001)
    assert eng._pipe.qsize() == 3
    release.set()
    results = [f.result(10) for f in [first, *rest]]
    assert all(r.codes[0] == Result.OK for r in results)
    seqs = [int(r.seq[0]) for r in results]
    assert seqs == sorted(seqs) and len(set(seqs)) == 4
    # Answered in commit order; the first by the committer (the publisher was idle),
    # the second by the publisher (a batch was waiting to be committed behind it).
    assert [t for t, _ in log] == ["a", "b", "c", "d"]
    assert log[0][1] == "mms-committer" and log[1][1] == "mms-publisher"
    assert {name for _, name in log} <= {"mms-committer", "mms-publisher"}
    assert eng.card(1)["principal_fen"] == 10_000 - 4
    assert eng.stats()["last_seq"] == seqs[-1]
    eng.close()
