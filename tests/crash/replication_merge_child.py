"""The standby tests/crash/test_replication_crash.py kills inside, or right after, a
transaction that holds several frames received one a message (Standby._follow writes
the frames that arrived while the previous transaction committed in one transaction).

It follows PRIMARY with batches (bootstrapping DIR from a hot copy when it has none).
Its first transaction waits, inside, until at least two more chunks have been received
(Standby.received_waiting), so the next transaction holds them all; at that one it stops
at STAGE and waits there to be killed:

    before: inside the transaction, at its last frame, before the commit
    after:  after the commit, before the confirmation

It prints "following FRAME" once it follows, then "paused LAST FIRST" (the frames of
that transaction), flushed, and never goes on; "no-merge N" if the transaction after
the first held a single frame (then the test fails: nothing was shown).

usage: replication_merge_child.py DIR PRIMARY TOKEN STAGE
"""

from __future__ import annotations

import sys
import threading
import time

from core.engine.replication import Replica, decode_frame
from server.rpc.replication import Standby

# How long the first transaction waits for two more chunks (the test drives a workload
# of many frames right after "following"): a bound, never a measure.
WAIT_S = 60.0


def main() -> None:
    data, primary, token, stage = sys.argv[1:5]
    forever = threading.Event()
    txns: list[list[int]] = []  # the frame numbers of each transaction, in order
    standby: Standby | None = None

    original = Replica.apply_many

    def apply_many(self, datas, durable=None):
        txns.append([decode_frame(d).number for d in datas])
        if len(txns) == 2 and len(txns[1]) < 2:
            print(f"no-merge {txns[1][0]}", flush=True)
            forever.wait()
        return original(self, datas, durable)

    Replica.apply_many = apply_many

    def before(frame) -> None:
        if len(txns) == 1 and frame.number == txns[0][-1]:
            deadline = time.monotonic() + WAIT_S
            while standby.received_waiting < 2 and time.monotonic() < deadline:
                time.sleep(0.01)  # waits for a state (two chunks queued), bounded
        elif len(txns) == 2 and stage == "before" and frame.number == txns[1][-1]:
            print(f"paused {txns[1][-1]} {txns[1][0]}", flush=True)
            forever.wait()

    def after(frame) -> None:
        if len(txns) == 2 and stage == "after":
            print(f"paused {txns[1][-1]} {txns[1][0]}", flush=True)
            forever.wait()

    standby = Standby(data, primary, token=token, start=False, before_commit=before,
                      after_commit=after)
    print(f"following {standby.replica.applied_frame}", flush=True)
    standby.start()
    forever.wait()


if __name__ == "__main__":
    main()
