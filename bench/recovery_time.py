"""Start time of an engine after a crash with N journal records after its checkpoint
(issue 8): how long `Engine(path)` takes before it serves, without and with the recovery
checkpoint, and how long the start after that takes.

    python3 bench/recovery_time.py --records 1000000 [--records 5000000] [--cards 100000]

A writer child issues the cards and appends N recharge records (fsync off: the figures
are about replay, and a SIGKILLed process loses nothing LMDB wrote), reports, and waits
to be killed, so no final checkpoint is written: the journal tail is what a crash
leaves. Each start is measured in a child of its own that reports and waits to be
killed the same way, so one start's checkpoint never hides the next one's work:

- `replay_only_s`: recovery_checkpoint_records above N (the behaviour before issue 8:
  every start replays the whole tail); the faster of two such starts;
- `first_start_s`: the default config, which replays N and checkpoints before serving;
- `second_start_s`: the start after that one was killed (nothing left to replay).

The disk needs about 416 bytes per record (1M: ~0.4 GB). Nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BATCH = 4096
NO_CHECKPOINT = {"checkpoint_ops": 10**12, "checkpoint_interval_s": 10**9}


def _child_write(path: str, records: int, cards: int) -> None:
    import numpy as np

    from core import Engine, EngineConfig
    from core.records import OP, OpType

    cfg = EngineConfig(sync=False, recovery_checkpoint_records=10**12, **NO_CHECKPOINT)
    eng = Engine(path, config=cfg)
    for lo in range(0, cards, 100_000):
        hi = min(cards, lo + 100_000)
        eng.issue_cards(np.arange(lo + 1, hi + 1, dtype=np.uint64), os.urandom(16)).result()
    rng = np.random.default_rng(7)
    done, futs = 0, []
    while done < records:
        n = min(BATCH, records - done)
        ops = np.zeros(n, dtype=OP)
        ops["client_hi"], ops["client_lo"] = 1, np.arange(done + 1, done + n + 1)
        ops["card_no"] = rng.integers(1, cards + 1, n)
        ops["amount_fen"], ops["op_type"] = 100, OpType.RECHARGE
        futs.append(eng.submit(ops))
        done += n
        if len(futs) >= 16:
            futs.pop(0).result()
    for f in futs:
        f.result()
    _report_and_wait({"last_seq": eng.stats()["last_seq"]})


def _child_open(path: str, recovery_checkpoint_records: int | None) -> None:
    from core import Engine, EngineConfig

    kw = {} if recovery_checkpoint_records is None else {
        "recovery_checkpoint_records": recovery_checkpoint_records}
    t0 = time.perf_counter()
    eng = Engine(path, config=EngineConfig(**NO_CHECKPOINT, **kw))
    elapsed = time.perf_counter() - t0
    st = eng.stats()
    _report_and_wait({"start_s": round(elapsed, 3), "recovered": st["recovered_records"],
                      "checkpoint_seq": st["checkpoint_seq"], "last_seq": st["last_seq"]})


def _report_and_wait(doc: dict) -> None:
    print(json.dumps(doc), flush=True)
    sys.stdin.read()        # until the parent kills us: no close, no final checkpoint
    os._exit(0)


def _in_child(*argv: str) -> dict:
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--child", *argv],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
                            cwd=ROOT)
    try:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"child {argv} ended without a report")
        return json.loads(line)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def measure(records: int, cards: int, workdir: str) -> dict:
    path = os.path.join(workdir, f"r{records}")
    t0 = time.perf_counter()
    wrote = _in_child("write", path, str(records), str(cards))
    out = {"records": records, "cards": cards, "write_s": round(time.perf_counter() - t0, 1)}
    # Twice, the faster counts: the first also pays for reading the files into the cache.
    old = min((_in_child("open", path, str(10**12)) for _ in range(2)),
              key=lambda r: r["start_s"])
    first = _in_child("open", path, "default")
    second = _in_child("open", path, "default")
    assert old["recovered"] == first["recovered"] >= records, (old, first)
    assert first["checkpoint_seq"] == first["last_seq"] == wrote["last_seq"], first
    assert second["recovered"] == 0, second
    out.update(replay_only_s=old["start_s"], replayed=old["recovered"],
               us_per_record=round(old["start_s"] / old["recovered"] * 1e6, 1),
               first_start_s=first["start_s"], second_start_s=second["start_s"])
    shutil.rmtree(path)
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        kind, path, *rest = argv[1:]
        if kind == "write":
            _child_write(path, int(rest[0]), int(rest[1]))
        else:
            _child_open(path, None if rest[0] == "default" else int(rest[0]))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, action="append",
                    help="journal records after the checkpoint (repeatable; default 1000000)")
    ap.add_argument("--cards", type=int, default=100_000)
    ap.add_argument("--dir", help="where to write (default: a temporary directory)")
    args = ap.parse_args(argv)
    workdir = args.dir or tempfile.mkdtemp(prefix="mms-recovery-")
    try:
        for n in args.records or [1_000_000]:
            print(json.dumps(measure(n, args.cards, workdir)), flush=True)
    finally:
        if not args.dir:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
