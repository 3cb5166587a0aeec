"""The process tests/crash/test_rollups_crash.py kills inside a rollup write transaction.

It opens an Engine whose rollup tailer is stopped, writes a workload (swipes with line
items, recharges, refunds), then sums the journal into the rollups with a hook inside
the write transaction that prints "in-rollup-txn <seq>" and waits forever: the parent
SIGKILLs it there, with the rows put and the commit not yet done.

usage: rollup_crash_child.py DIR N_SWIPES
"""

from __future__ import annotations

import sys
import threading

from harness import tag_id, tagged_op

from core import Engine, EngineConfig
from core.engine.rollups import Rollups
from core.records import OpType, Result


def write_workload(eng: Engine, n: int) -> int:
    """Three cards, a recharge, n swipes with line items and a refund after every fifth;
    returns the journal's last seq (tests/crash/test_rollup_worker_crash.py too)."""
    eng.issue_cards([1, 2, 3], tag_id("issue"), store_id=1).result()
    eng.recharge(1, 10**6, tag_id("rc"), store_id=1).result()
    for k in range(n):
        ops, its, _ = tagged_op(f"s{k}", 1, 300 + k, store=1 + k % 3, operator=k % 5,
                                items=[(7, 100, 1, 1), (8, 200 + k, 2, 2)])
        eng.submit(ops, its).result()
        if k % 5 == 4:
            ops, _, _ = tagged_op(f"f{k}", 1, 50, OpType.REFUND, ref=f"s{k}", store=2)
            eng.submit(ops).result()
    with eng.store.read() as txn:
        return eng.store.last_seq(txn)


def main() -> None:
    path, n = sys.argv[1], int(sys.argv[2])
    eng = Engine(path, config=EngineConfig(rollups=False))
    write_workload(eng, n)
    # A first flush commits; the second is killed mid-transaction.
    tailer = Rollups(eng.store, 8 * 3600, grow=eng.store.grow)
    tailer.catch_up()
    sys.stdout.write(f"flushed {tailer.seq}\n")
    sys.stdout.flush()
    assert eng.swipe(1, 999, tag_id("after-flush"), store_id=3).result().codes[0] == Result.OK
    hold = threading.Event()

    def reached() -> None:
        sys.stdout.write(f"in-rollup-txn {tailer.seq}\n")
        sys.stdout.flush()
        hold.wait()

    tailer.before_commit = reached
    tailer.catch_up()


if __name__ == "__main__":
    main()
