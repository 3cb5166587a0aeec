"""Resident memory of the engine: per 1,000,000 cards, per 1,000,000 members, and the
growth of the client-id index per 1,000,000 ops within the id retention window.

    mms bench memory                  # 200,000 cards, 100,000 members, 500,000 ops
    mms bench memory --cards 1000000 --members 1000000 --ops 2000000 --json

(`python3 bench/memory.py` runs the same.)

Each figure is measured in a fresh child process that opens a prepared data directory
the way a restarted server does (the state is loaded, nothing else runs), and reads its
own /proc/self/status: VmRSS (all resident pages), RssAnon (the process's own memory:
tables, indexes) and RssFile (LMDB's file pages mapped in, which the kernel may drop and
re-read). Per-million figures are (state - empty) x 1,000,000 / N: a linear
extrapolation from the size run, so say which size they came from. The id index is a
hash table of 24-byte entries kept at most half full that doubles when it fills, so its
growth comes in steps: the figure is the mean over the run's ops, and `id_slots_bytes`
says what the table holds at the end.

Nothing here asserts a figure; the numbers it prints are the benchmark.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile

import numpy as np

from core import Engine, EngineConfig
from core.records import OP, OpType

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The members' PII key of the run (a bench directory holds no real person).
KEY = bytes(range(32))
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = "芳伟娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英"
TAGS = ["vip", "wine", "kids", "new", "lapsed", "coffee", "beauty", "sport"]

# The prepare step issues cards in chunks of this many (the engine's issue limit is set
# to it) and submits swipes in batches of OP_BATCH.
ISSUE_CHUNK = 100_000
OP_BATCH = 4096
FUND_FEN = 100_000_000
# Bounds: what one run may ask for (this is a bench for a shared machine).
CARDS_MAX = 5_000_000
MEMBERS_MAX = 2_000_000
OPS_MAX = 10_000_000
CHILD_TIMEOUT_S = 1_800
MAP_BYTES = 1 << 34


def _config(**kw) -> EngineConfig:
    return EngineConfig(map_size_bytes=MAP_BYTES, issue_cards_max=ISSUE_CHUNK, **kw)


def _status() -> dict[str, int]:
    """VmRSS, RssAnon, RssFile of this process, in bytes."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile"):
                out[key] = int(rest.split()[0]) * 1024
    return out


# --- preparation (in the parent) ------------------------------------------------------

def prepare_cards(path: str, n: int) -> None:
    """n cards issued and recharged once, then closed (checkpointed)."""
    with Engine(path, config=_config()) as eng:
        nos = np.arange(1, n + 1, dtype=np.uint64)
        for k in range(0, n, ISSUE_CHUNK):
            eng.issue_cards(nos[k:k + ISSUE_CHUNK], os.urandom(16)).result()
        futs = []
        for k in range(0, n, OP_BATCH):
            m = min(OP_BATCH, n - k)
            ops = np.zeros(m, dtype=OP)
            ops["client_hi"] = 0xFEED
            ops["client_lo"] = np.arange(k + 1, k + m + 1, dtype=np.uint64)
            ops["card_no"] = nos[k:k + m]
            ops["amount_fen"] = FUND_FEN
            ops["op_type"] = OpType.RECHARGE
            futs.append(eng.submit(ops))
            if len(futs) >= 16:
                futs.pop(0).result()
        for f in futs:
            f.result()


def _member_rows(n: int, seed: int = 1):
    """n member rows (name, phone, gender, birthday, tags, home store) as a member file
    holds them; the same rows bench/test_bench_members.py times."""
    rng = random.Random(seed)
    for i in range(n):
        name = rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(rng.randint(1, 2)))
        yield [name, f"13{i:09d}", rng.choice("MF"),
               f"{rng.randint(1950, 2005)}-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}",
               ";".join(rng.sample(TAGS, rng.randint(0, 2))), str(rng.randint(1, 500))]


def prepare_members(path: str, workdir: str, n: int) -> None:
    """n members imported through MemberStore.import_file (no cards)."""
    from core.domain.members import MemberStore, write_csv

    csv_path = os.path.join(workdir, "members.csv")
    write_csv(csv_path, ["name", "phone", "gender", "birthday", "tags", "home_store_id"], _member_rows(n))
    with Engine(path, config=_config()) as eng:
        rep = MemberStore(eng, key=KEY).import_file(csv_path)
        if rep.created != n or rep.n_errors:
            raise RuntimeError(f"member import: {rep.created} created, {rep.n_errors} errors")
    os.unlink(csv_path)


def prepare_empty(path: str) -> None:
    with Engine(path, config=_config()):
        pass


# --- measurement (in a child) ---------------------------------------------------------

def measure_open(path: str, members: bool) -> dict:
    eng = Engine(path, config=_config())
    try:
        if members:
            from core.domain.members import MemberStore

            ms = MemberStore(eng, key=KEY)
        out = _status()
        if members:
            # The members' in-memory search columns (allocated size, headroom included).
            out["member_columns_bytes"] = sum(v.nbytes for v in vars(ms._cols).values()
                                              if isinstance(v, np.ndarray))
            out["member_index_source"] = ms.index_source
        # The engine's own numpy tables (allocated size, headroom included): the part of
        # RssAnon that is the card and coupon tables and their working copies.
        out["tables"] = {k: v.nbytes for k, v in vars(eng).items()
                         if isinstance(v, np.ndarray) and v.nbytes >= 1 << 20}
        return out
    finally:
        eng.close()


def measure_ids(path: str, n_cards: int, n_ops: int) -> dict:
    """RSS and the id index before and after n_ops swipes, each with a fresh client id,
    all within the retention (the default 30 days), no checkpoint during the run; then
    the ids the index knows after a checkpoint (close and reopen). The memory after a
    restart is measured by a fresh child (main)."""
    rng = np.random.default_rng(5)
    cfg = _config(checkpoint_ops=10**12, checkpoint_interval_s=10**6)
    eng = Engine(path, config=cfg)
    try:
        before, ids_before = _status(), len(eng._id_index)
        slots_before = eng._id_index.capacity
        futs = []
        for k in range(0, n_ops, OP_BATCH):
            m = min(OP_BATCH, n_ops - k)
            ops = np.zeros(m, dtype=OP)
            ops["client_hi"] = 0xB0B0
            ops["client_lo"] = np.arange(k + 1, k + m + 1, dtype=np.uint64)
            ops["card_no"] = rng.integers(1, n_cards + 1, m).astype(np.uint64)
            ops["amount_fen"] = rng.integers(100, 5_000, m)
            ops["op_type"] = OpType.SWIPE
            futs.append(eng.submit(ops))
            if len(futs) >= 8:
                r = futs.pop(0).result()
                if np.any(r.codes != 1):
                    raise RuntimeError("a swipe was rejected")
        for f in futs:
            f.result()
        after, ids_after = _status(), len(eng._id_index)
        slots_after = eng._id_index.capacity
        pending_bytes = sum(x.nbytes for x in eng._pending_ids)
    finally:
        eng.close()
    eng = Engine(path, config=cfg)
    try:
        reopened, ids_reopened = _status(), len(eng._id_index)
        slots = eng._id_index.capacity
    finally:
        eng.close()
    return {"before": before, "after": after, "reopened": reopened, "ids_before": ids_before,
            "ids_after": ids_after, "ids_reopened": ids_reopened, "slots": slots,
            "slots_before": slots_before, "slots_after": slots_after,
            "pending_bytes": pending_bytes}


def _child(*args: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "server.tools.bench_memory", "--child", *args],
                         capture_output=True, text=True, timeout=CHILD_TIMEOUT_S, cwd=ROOT)
    if out.returncode != 0:
        raise RuntimeError(f"child {args} failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout)


def _per_million(delta: int, n: int) -> int:
    return delta * 1_000_000 // n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="mms bench memory", description=__doc__.splitlines()[0])
    ap.add_argument("--cards", type=int, default=200_000)
    ap.add_argument("--members", type=int, default=100_000)
    ap.add_argument("--ops", type=int, default=500_000)
    ap.add_argument("--dir", default=None, help="where to put the data (default: a temp dir)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        kind, path, *rest = a.child
        if kind == "open":
            res = measure_open(path, members=False)
        elif kind == "members":
            res = measure_open(path, members=True)
        else:
            res = measure_ids(path, int(rest[0]), int(rest[1]))
        print(json.dumps(res))
        return 0
    if not (1 <= a.cards <= CARDS_MAX and 1 <= a.members <= MEMBERS_MAX and 1 <= a.ops <= OPS_MAX):
        ap.error(f"--cards 1..{CARDS_MAX:,}, --members 1..{MEMBERS_MAX:,}, --ops 1..{OPS_MAX:,}")
    with tempfile.TemporaryDirectory(prefix="mms-memory-", dir=a.dir) as base:
        empty, cards, members = (os.path.join(base, x) for x in ("empty", "cards", "members"))
        prepare_empty(empty)
        prepare_cards(cards, a.cards)
        prepare_members(members, base, a.members)
        e = _child("open", empty)
        e_members = _child("members", empty)
        c = _child("open", cards)
        m = _child("members", members)
        ids = _child("ids", cards, str(a.cards), str(a.ops))
        # The same directory opened again by a fresh process, as a restart would: the
        # reopen inside the ids child would count what the run before it left in its heap.
        after_restart = _child("open", cards)
    out = {"cards": a.cards, "members": a.members, "ops": a.ops,
           "extrapolated": "linear, from the sizes above",
           "empty_rss_bytes": e["VmRSS"], "empty_anon_bytes": e["RssAnon"]}
    for name, state, base_ in (("card", c, e), ("member", m, e_members)):
        n = a.cards if name == "card" else a.members
        out[f"{name}s_rss_bytes"] = state["VmRSS"]
        out[f"rss_per_million_{name}s_bytes"] = _per_million(state["VmRSS"] - base_["VmRSS"], n)
        out[f"anon_per_million_{name}s_bytes"] = _per_million(state["RssAnon"] - base_["RssAnon"], n)
        out[f"file_per_million_{name}s_bytes"] = _per_million(state["RssFile"] - base_["RssFile"], n)
        if name == "card":
            out["card_tables_allocated_bytes"] = state["tables"]
        else:
            out["member_columns_per_million_bytes"] = _per_million(
                state["member_columns_bytes"] - base_["member_columns_bytes"], n)
            out["member_index_source"] = state["member_index_source"]
    grew = ids["ids_after"] - ids["ids_before"]
    out["ids_known_before"], out["ids_known_after"] = ids["ids_before"], ids["ids_after"]
    out["ids_known_reopened"] = ids["ids_reopened"]
    out["id_growth_live_anon_per_million_ops_bytes"] = _per_million(
        ids["after"]["RssAnon"] - ids["before"]["RssAnon"], a.ops)
    out["id_growth_live_rss_per_million_ops_bytes"] = _per_million(
        ids["after"]["VmRSS"] - ids["before"]["VmRSS"], a.ops)
    out["id_growth_reopened_anon_per_million_ops_bytes"] = _per_million(
        after_restart["RssAnon"] - c["RssAnon"], a.ops)
    out["id_growth_reopened_rss_per_million_ops_bytes"] = _per_million(
        after_restart["VmRSS"] - c["VmRSS"], a.ops)
    out["ids_added"] = grew
    # The id index itself (24-byte slots) and the ids held for the next checkpoint: the
    # part of the live growth that is the ids; the rest of RssAnon's growth is what the
    # run's threads (the rollup tailer most) left in the heap.
    out["id_slots_bytes"] = ids["slots"] * 24
    out["id_index_growth_per_million_ops_bytes"] = _per_million(
        (ids["slots_after"] - ids["slots_before"]) * 24, a.ops)
    out["id_pending_per_million_ops_bytes"] = _per_million(ids["pending_bytes"], a.ops)
    if a.json:
        print(json.dumps(out))
    else:
        for k, v in out.items():
            print(f"{k:>46}  {v:,}" if isinstance(v, int) else f"{k:>46}  {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
