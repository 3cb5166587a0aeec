"""Members at scale: import, phone lookup, multi-condition search.

    python3 -m pytest bench/test_bench_members.py --benchmark-enable   # 100,000 members
    python3 bench/test_bench_members.py [N]                            # table, default 1,000,000

The figures these print are the benchmark; nothing here asserts a speed. The script
imports N members from a generated CSV through MemberStore.import_file (the real path:
validation, encryption, blind indexes, one durable commit per 1,000 rows), issues one
card per member and gives the cards random spend, last visit and level (written straight
into the engine's table: a benchmark shortcut, not an API), then times lookups and
searches.
"""

from __future__ import annotations

import os
import random
import sys
import tempfile
import time

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from core import Engine, EngineConfig  # noqa: E402
from core.domain.members import MemberQuery, MemberStatus, MemberStore, write_csv  # noqa: E402

KEY = bytes(range(32))
NOW = 1_700_000_000
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = "芳伟娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英"
TAGS = ["vip", "wine", "kids", "new", "lapsed", "coffee", "beauty", "sport"]


def _rows(n: int, seed: int = 1):
    rng = random.Random(seed)
    for i in range(n):
        name = rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(rng.randint(1, 2)))
        yield [name, f"13{i:09d}", rng.choice("MF"), f"{rng.randint(1950, 2005)}-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}",
               ";".join(rng.sample(TAGS, rng.randint(0, 2))), str(rng.randint(1, 500))]


def build(path: str, n: int) -> tuple[Engine, MemberStore, float]:
    csv_path = os.path.join(path, "members.csv")
    write_csv(csv_path, ["name", "phone", "gender", "birthday", "tags", "home_store_id"], _rows(n))
    eng = Engine(os.path.join(path, "data"), config=EngineConfig(map_size_bytes=1 << 32,
                                                                  issue_cards_max=max(n, 1)))
    ms = MemberStore(eng, key=KEY)
    t0 = time.perf_counter()
    rep = ms.import_file(csv_path)
    import_s = time.perf_counter() - t0
    assert rep.created == n and rep.n_errors == 0, rep.errors[:5]
    eng.issue_cards(np.arange(1, n + 1), os.urandom(16), member_ids=np.arange(1, n + 1)).result()
    rng = np.random.default_rng(2)
    cards = eng._cards
    cards["spend_total_fen"][:n] = rng.integers(0, 2_000_000, n)
    cards["last_visit_s"][:n] = NOW - rng.integers(0, 400 * 86_400, n)
    cards["level"][:n] = rng.integers(0, 4, n)
    return eng, ms, import_s


QUERIES = {
    "phone": MemberQuery(phone="13000123456"),
    "card": MemberQuery(card_no=123_457),
    "name prefix": MemberQuery(name="王芳"),
    "name contains": MemberQuery(name="秀", name_contains=True),
    "tag+store": MemberQuery(tags=["vip"], store_id=42),
    "spend+visit+level": MemberQuery(spend_min_fen=500_000, spend_max_fen=900_000,
                                     last_visit_from_s=NOW - 30 * 86_400, level=2),
    "all conditions": MemberQuery(name="李", tags=["wine"], store_id=7, level=1,
                                  spend_min_fen=100_000, last_visit_from_s=NOW - 200 * 86_400,
                                  status=MemberStatus.ACTIVE),
}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    eng, ms, _ = build(str(tmp_path_factory.mktemp("members")), 100_000)
    yield ms
    eng.close()


def test_phone_lookup(benchmark, world):
    benchmark(world.id_by_phone, "13000012345")


@pytest.mark.parametrize("name", list(QUERIES))
def test_search(benchmark, world, name):
    benchmark(world.search, QUERIES[name])


def _time(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        eng, ms, import_s = build(d, n)
        print(f"members: {n:,}  (setup {time.perf_counter() - t0:.1f} s)")
        print(f"{'import_file (CSV, durable)':<32} {import_s:9.1f} s   {n / import_s:,.0f} rows/s")
        print(f"{'phone lookup (blind index)':<32} {_time(lambda: ms.id_by_phone('13000123456'), 200) * 1e6:9.1f} us")
        print(f"{'find_by_phone (+decrypt/mask)':<32} {_time(lambda: ms.find_by_phone('13000123456'), 200) * 1e6:9.1f} us")
        totals = {}
        for name, q in QUERIES.items():
            s = _time(lambda q=q: ms.search(q), 5)
            totals[name] = ms.search(q).total
            print(f"{'search: ' + name:<32} {s * 1e3:9.2f} ms   {totals[name]:,} hits")
        t0 = time.perf_counter()
        eng.close()
        eng = Engine(os.path.join(d, "data"), config=EngineConfig(map_size_bytes=1 << 32))
        t1 = time.perf_counter()
        ms = MemberStore(eng, key=KEY)
        print(f"{'reopen: search index':<32} {time.perf_counter() - t1:9.2f} s   "
              f"({ms.index_source}; engine close+open {t1 - t0:.1f} s)")
        for name, q in QUERIES.items():   # the card figures were set in memory only
            if q.level is None and q.spend_min_fen is None:
                assert ms.search(q).total == totals[name], name
        t0 = time.perf_counter()
        with ms._read() as txn:
            rebuilt = ms._rebuild(txn)
        print(f"{'full rebuild (the fallback)':<32} {time.perf_counter() - t0:9.1f} s")
        assert rebuilt.canonical() == ms._cols.canonical()
        t0 = time.perf_counter()
        written = ms.export(os.path.join(d, "out.csv"))
        print(f"{'export CSV (masked)':<32} {time.perf_counter() - t0:9.1f} s   {written:,} rows")
        eng.close()


if __name__ == "__main__":
    main()
