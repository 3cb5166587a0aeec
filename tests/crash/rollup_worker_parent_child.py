"""The process tests/crash/test_rollup_worker_crash.py kills to see its rollup worker
end with it: an Engine whose rollups are computed by a worker process, a few swipes
summed, then "worker <pid>" printed and a wait (on stdin) to be killed.

usage: rollup_worker_parent_child.py DIR
"""

from __future__ import annotations

import sys

from harness import tag_id

from core import Engine, EngineConfig


def main() -> None:
    eng = Engine(sys.argv[1], config=EngineConfig(rollups_worker=True))
    eng.issue_cards([1, 2], tag_id("issue"), store_id=1).result()
    eng.recharge(1, 10_000, tag_id("rc"), store_id=1).result()
    eng.swipe(1, 300, tag_id("s"), store_id=2).result()
    with eng.store.read() as txn:
        last = eng.store.last_seq(txn)
    eng.rollups.wait_for(last)
    sys.stdout.write(f"worker {eng.rollups.worker_pid} {eng.rollups.seq}\n")
    sys.stdout.flush()
    sys.stdin.read()


if __name__ == "__main__":
    main()
