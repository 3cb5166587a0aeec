"""numpy's hash-based set calls against core.idsets on id arrays; figures, no asserts.

    python3 bench/bench_idsets.py --ids 1000000 --runs 5

Per call, interleaved in one process (the old call, then the new, --runs times): the
thread CPU time (the steadier figure on a shared machine) and the longest stretch a
ticker thread waited for the GIL meanwhile (what a swipe's thread would wait). Each
pair is checked to give the same result. Cases: np.unique vs idsets.unique_ids, and
np.isin of every id against a set of as many (half of them present) vs idsets.isin_ids.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.idsets import isin_ids, unique_ids  # noqa: E402

TICK_S = 0.001


class GilProbe:
    """A thread that sleeps TICK_S in a loop: the longest it took to run again is how
    long the main thread held the GIL at a stretch (plus the scheduler's delay)."""

    def __init__(self) -> None:
        self.worst_s = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        last = time.perf_counter()
        while not self._stop.is_set():
            time.sleep(TICK_S)
            now = time.perf_counter()
            self.worst_s = max(self.worst_s, now - last - TICK_S)
            last = now

    def __enter__(self) -> GilProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def measure(fn, *args) -> tuple[float, float, np.ndarray]:
    with GilProbe() as probe:
        t0 = time.thread_time()
        out = fn(*args)
        cpu = time.thread_time() - t0
    return cpu, probe.worst_s, out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ids", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args(argv)
    rng = np.random.default_rng(7)
    ids = rng.integers(1, 2**40, a.ids).astype(np.uint64)
    among = rng.integers(1, 2**40, a.ids).astype(np.uint64)
    among[: a.ids // 2] = ids[rng.permutation(a.ids)[: a.ids // 2]]
    cases = {"unique": (np.unique, unique_ids, (ids,)),
             "isin": (np.isin, isin_ids, (ids, among))}
    result: dict = {"ids": a.ids, "runs": a.runs, "loadavg_before": os.getloadavg()[0]}
    for name, (old, new, args) in cases.items():
        got: dict[str, list] = {"old_cpu_s": [], "new_cpu_s": [], "old_gil_s": [], "new_gil_s": []}
        for _ in range(a.runs):
            for tag, fn in (("old", old), ("new", new)):
                cpu, gil, out = measure(fn, *args)
                got[f"{tag}_cpu_s"].append(cpu)
                got[f"{tag}_gil_s"].append(gil)
                if tag == "old":
                    want = out
                elif not np.array_equal(out, want):
                    raise SystemExit(f"{name}: the results differ")
        med = {k: round(statistics.median(v), 4) for k, v in got.items()}
        med["cpu_ratio"] = round(med["old_cpu_s"] / med["new_cpu_s"], 1)
        result[name] = med
    result["loadavg_after"] = os.getloadavg()[0]
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
