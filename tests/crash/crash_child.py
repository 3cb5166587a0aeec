"""The process tests/crash/test_crash.py kills: it opens an Engine, issues the cards once, then
submits random swipes and recharges from a few threads until it is killed. After each
future resolves it prints one line per op to stdout, flushed line by line:

    ack <client id hex> <result code> <replayed>

It prints "opening" before it opens (recovers) the environment and "ready SEED" once it
serves, so the test can kill it at a point it knows it reached: during recovery, or after
a chosen number of acknowledged ops.

A line is printed only after the engine resolved the future, that is after the fsync'd
commit, so every printed OK must survive the kill.

usage: crash_child.py DIR SEED CHECKPOINT_OPS N_CARDS
"""

from __future__ import annotations

import random
import sys
import threading

import numpy as np

from core import BonusTier, Engine, EngineConfig, LevelRule, RulesConfig
from core.records import OP, OpFlag, OpType, Result, join_client_id

ISSUE_CLIENT_ID = b"crash-test-issue"  # the same in every run: issuing is idempotent
N_THREADS = 3
BATCH_OPS_MAX = 200
# Ids the child re-submits to exercise replays; bounded per thread.
REPLAY_POOL_MAX = 1_000
# Thread 0 changes the rules every this many of its batches, alternating two rule sets,
# so rule changes are journalled (and killed) in the middle of the traffic.
RULES_EVERY_BATCHES = 40
RULE_SETS = (
    RulesConfig(tiers=(BonusTier(10_000, 1_500), BonusTier(40_000, 8_000, points=30)),
                recharge_points_per_yuan_bp=5_000, no_points_categories=(3,)),
    RulesConfig(rounding="floor", spend_order="bonus_first",
                tiers=(BonusTier(20_000, 2_500, points=7),),
                levels=(LevelRule("a", discount_bp=9_900),
                        LevelRule("b", discount_bp=9_300, points_mult_bp=13_000,
                                  up_points=5_000, validity_days=365),
                        LevelRule("c", discount_bp=8_850, points_mult_bp=20_000,
                                  up_spend_fen=10**8))),
)


def main() -> None:
    path = sys.argv[1]
    seed, checkpoint_ops, n_cards = (int(a) for a in sys.argv[2:5])
    sys.stdout.write("opening\n")
    sys.stdout.flush()
    config = EngineConfig(checkpoint_ops=checkpoint_ops, checkpoint_interval_s=1,
                          batch_ops_max=1024, queue_ops_max=8192)
    eng = Engine(path, config=config, rules=RULE_SETS[0])
    res = eng.issue_cards(list(range(1, n_cards + 1)), ISSUE_CLIENT_ID).result()
    assert res.code == Result.OK, res
    out_lock = threading.Lock()

    def emit(lines: list[str]) -> None:
        with out_lock:
            for line in lines:
                sys.stdout.write(line)
                sys.stdout.flush()

    emit([f"ready {seed}\n"])

    def worker(k: int) -> None:
        rng = random.Random(seed * 1_000 + k)
        committed: list[tuple[int, int]] = []
        batches = 0
        while True:
            batches += 1
            if k == 0 and batches % RULES_EVERY_BATCHES == 0:
                change = batches // RULES_EVERY_BATCHES
                cid = join_client_id(0xCAFE, seed * 10**6 + change)
                res = eng.set_rules(RULE_SETS[change % 2], cid).result()
                emit([f"ack {cid.hex()} {int(res.code)} {int(res.replayed)}\n"])
            n = rng.randint(1, BATCH_OPS_MAX)
            ops = np.zeros(n, dtype=OP)
            for i in range(n):
                if committed and rng.random() < 0.05:
                    hi, lo = rng.choice(committed)
                else:
                    hi, lo = rng.getrandbits(64) | 1, rng.getrandbits(64)
                is_swipe = rng.random() < 0.6
                op = ops[i]
                op["client_hi"], op["client_lo"] = hi, lo
                op["card_no"] = rng.randint(1, n_cards + 1)  # n_cards + 1 is unknown
                op["amount_fen"] = rng.randint(1, 30_000) if is_swipe else rng.randint(1, 60_000)
                op["store_id"], op["terminal_id"], op["operator_id"] = rng.randint(1, 9), 1, 1
                op["category"] = rng.randint(0, 3)
                op["op_type"] = OpType.SWIPE if is_swipe else OpType.RECHARGE
                op["op_flags"] = OpFlag.PAY_EXTERNAL if rng.random() < 0.05 else 0
            fut = eng.submit(ops)
            out = fut.result()
            lines = []
            for i in range(n):
                hi, lo = int(ops[i]["client_hi"]), int(ops[i]["client_lo"])
                code, replayed = int(out.codes[i]), int(out.replayed[i])
                lines.append(f"ack {join_client_id(hi, lo).hex()} {code} {replayed}\n")
                if code == Result.OK and len(committed) < REPLAY_POOL_MAX:
                    committed.append((hi, lo))
            emit(lines)

    threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(N_THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


if __name__ == "__main__":
    main()
