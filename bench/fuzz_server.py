"""Fuzz a real server on loopback with requests that must all be refused (or be reads
that change nothing), and print the answers by status code and the throughput.

    python3 bench/fuzz_server.py [N] [--clients C] [--seed S]    # default 1,000,000

The requests are tests/fuzz_requests.py's: undecodable bodies, hostile values, auth
attacks and broken streams over every method of PosService and AdminService. At the end
it checks what the suite's fuzz test checks: no UNKNOWN or INTERNAL answer, the journal
sequence and every card as they were, and the server still serving. This is a
benchmark script, not a test: nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from collections import Counter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests"), os.path.join(ROOT, "tests", "rpc")]

from fuzz_requests import FORBIDDEN, Creds, fuzz  # noqa: E402
from test_admin_rpc import Env, cid  # noqa: E402
from test_hostile_input import CARDS, setup_chain, state  # noqa: E402

from server.mms_pb import pos_pb2  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("n", type=int, nargs="?", default=1_000_000)
    ap.add_argument("--clients", type=int, default=4, help="client threads")
    ap.add_argument("--seed", type=int, default=9)
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="mms-fuzz-") as data:
        env = Env(data)
        try:
            setup_chain(env)
            creds = Creds(env.till_md, env.md("root"))
            before = state(env)
            totals: Counter = Counter()
            forbidden: list = []
            lock = threading.Lock()
            share = [args.n // args.clients + (i < args.n % args.clients)
                     for i in range(args.clients)]

            def run(i: int) -> None:
                got = fuzz(env.channel, creds, share[i], seed=args.seed + i,
                           on_forbidden=lambda *a: forbidden.append(
                               (a[0].name, a[1], a[-1].name)))
                with lock:
                    totals.update(got)

            t0 = time.perf_counter()
            threads = [threading.Thread(target=run, args=(i,)) for i in range(args.clients)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            seconds = time.perf_counter() - t0
            after = state(env)
            card = env.pos.GetCard(pos_pb2.GetCardRequest(card_no=CARDS[0]),
                                   metadata=env.till_md, timeout=30).card
            swipe = env.pos.Swipe(pos_pb2.SwipeRequest(client_id=cid(), card_no=CARDS[0],
                                                       amount_fen=1),
                                  metadata=env.till_md, timeout=30).result.code
            report = {
                "requests": sum(totals.values()), "seconds": round(seconds, 1),
                "requests_per_s": round(sum(totals.values()) / seconds),
                "by_status": dict(totals.most_common()),
                "unknown_or_internal": sum(totals[c.name] for c in FORBIDDEN),
                "forbidden_examples": forbidden[:10],
                "state_unchanged": before == after,
                "still_serving": card.card_no == CARDS[0] and swipe == 1,
            }
        finally:
            env.close()
    print(json.dumps(report, indent=1))
    ok = report["unknown_or_internal"] == 0 and report["state_unchanged"] and report["still_serving"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
