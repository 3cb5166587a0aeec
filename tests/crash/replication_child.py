"""The standby tests/crash/test_replication_crash.py kills mid-apply: it follows a
primary (bootstrapping its data directory from a hot copy first when it has none) and,
at frame STOP_AT, stops at STAGE and waits there to be killed:

    before: inside the frame's write transaction, before its commit
    after:  after the commit, before the frame is confirmed to the primary

It prints "following FRAME" once it follows (FRAME: its applied frame), then
"paused FRAME" at the point, flushed, and never goes on.

usage: replication_child.py DIR PRIMARY TOKEN STOP_AT STAGE
"""

from __future__ import annotations

import sys
import threading

from server.rpc.replication import Standby


def main() -> None:
    data, primary, token, stop_at, stage = sys.argv[1:6]
    stop_at = int(stop_at)
    forever = threading.Event()

    def pause(frame) -> None:
        if frame.number == stop_at:
            print(f"paused {frame.number}", flush=True)
            forever.wait()

    # One frame per message and transaction (no batches), so that the stop is at
    # exactly frame STOP_AT's commit.
    standby = Standby(data, primary, token=token, start=False, batches=False,
                      before_commit=pause if stage == "before" else None,
                      after_commit=pause if stage == "after" else None)
    print(f"following {standby.replica.applied_frame}", flush=True)
    standby.start()
    forever.wait()


if __name__ == "__main__":
    main()
