"""`mms bench engine`: durable swipes per second through the engine, against a raw
py-lmdb reference that writes the same records the naive way.

Each run starts from the same prepared environment state (N cards with balance),
submits M swipes in submissions of B ops from a producer thread while the writer
group-commits them, and counts only what was acknowledged after its fsync'd commit.
The reference writes, per swipe, one 416-byte journal record (append), one 256-byte
card record at a random card key and one client-id entry, one fsync'd commit per B
swipes: what an engine that keeps every record under its own key would write.

The journal ceiling (`journal_ceiling_per_s`, `journal_ratio` = swipes_per_s / it) is
what the disk takes of the journal alone: py-lmdb appending B x 416-byte records per
fsync'd commit to an append-only db, nothing else, for the same M records, laid out as
the engine lays them out (one block of B records per commit, keyed by its last seq);
measured in each run beside the engine (skip with --no-journal-ceiling), with one fsync
per commit as the engine commits (`EngineConfig.lazy_meta_sync`: the meta page made
durable by the next commit's fsync); `journal_ceiling_two_fsync_per_s` is the same with
LMDB's two fsyncs per commit, the ceiling the figures before that change were taken
against (`journal_ratio_two_fsync`). Appending them
one key each (`putmulti`) would measure Python building 4,096 keys per commit (~3 ms of
CPU, more than the fsync on a quiet disk), not the disk.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time

import lmdb
import numpy as np

from core import CommitInfo, Engine, EngineConfig
from core.records import CARD, ITEM, JOURNAL, OP, RESULT, OpType, new_client_id
from core.rules import CouponTemplate, RulesConfig

# Cards (and coupons) issued per admin op while preparing: the engine's own limit.
ISSUE_CHUNK = EngineConfig().issue_cards_max


class _Commits:
    def __init__(self) -> None:
        self.seconds: list[float] = []
        self.sizes: list[int] = []
        self.records = 0

    def on_commit(self, info: CommitInfo) -> None:
        if info.n_records:
            self.seconds.append(info.commit_seconds)
            self.sizes.append(info.n_ops)
            self.records += info.n_records


# Every swipe of a run pays 10..500 yuan; a domain swipe has this many line items,
# offsets this many points (1 yuan at 100 points per yuan) and names its card's coupon
# (each prepared card holds one, coupon id = card number) the first time it swipes.
LINES_PER_SWIPE = 4
OFFSET_POINTS = 100
COUPON_FEN = 300
# Batches of each kind the apply probe times (no commit): medians of these.
PROBE_BATCHES = 40


# The shape of the chain the swipes come from (--workload). realistic: a terminal
# belongs to one store and has its operators, a sku has one category; worst: store,
# terminal, operator, category and sku drawn independently (every swipe its own rollup
# row: the rollups' worst case).
STORES = 200
TERMINALS_PER_STORE = 10
OPERATORS_PER_TERMINAL = 2
CATEGORIES = 20
SKUS = 300
WORST_SKUS = 100_000
WORKLOADS = ("realistic", "worst")


def _ops(rng: np.random.Generator, n: int, n_cards: int, first_id: int, op_type: int,
         amount_lo: int, amount_hi: int, workload: str = "realistic") -> np.ndarray:
    ops = np.zeros(n, dtype=OP)
    ops["client_hi"] = 0xB0B0  # the run's namespace; lo counts
    ops["client_lo"] = np.arange(first_id, first_id + n, dtype=np.uint64)
    ops["card_no"] = rng.integers(1, n_cards + 1, n).astype(np.uint64)
    ops["amount_fen"] = rng.integers(amount_lo, amount_hi, n)
    ops["op_type"] = op_type
    n_terminals = STORES * TERMINALS_PER_STORE
    if workload == "worst":
        ops["store_id"] = rng.integers(1, STORES + 1, n)
        ops["terminal_id"] = rng.integers(1, n_terminals + 1, n)
        ops["operator_id"] = rng.integers(1, n_terminals * OPERATORS_PER_TERMINAL + 1, n)
        ops["category"] = rng.integers(0, CATEGORIES, n)
        return ops
    terminal = rng.integers(1, n_terminals + 1, n)
    ops["terminal_id"] = terminal
    ops["store_id"] = (terminal - 1) // TERMINALS_PER_STORE + 1
    ops["operator_id"] = (terminal - 1) * OPERATORS_PER_TERMINAL + 1 + rng.integers(
        0, OPERATORS_PER_TERMINAL, n)
    ops["category"] = rng.integers(0, CATEGORIES, n)
    return ops


def _coupons(ops: np.ndarray, with_coupon: np.ndarray) -> np.ndarray:
    """Let the ops marked with_coupon name their card's coupon; return the coupon ids."""
    n = len(ops)
    ops["coupons_off"] = np.minimum(np.cumsum(with_coupon) - 1, max(0, n - 1)).astype(np.uint32)
    ops["coupons_n"] = with_coupon.astype(np.uint8)
    return ops["card_no"][with_coupon].astype(np.uint64)


def _domain(rng: np.random.Generator, ops: np.ndarray, workload: str = "realistic") -> np.ndarray:
    """Turn plain swipes into swipes with line items and a points offset; return the
    items. Line amounts add up to the swipe's amount."""
    n = len(ops)
    k = LINES_PER_SWIPE
    items = np.zeros(n * k, dtype=ITEM)
    cuts = np.sort(rng.integers(0, ops["amount_fen"][:, None] + 1, (n, k - 1)), axis=1)
    edges = np.concatenate([np.zeros((n, 1), np.int64), cuts, ops["amount_fen"][:, None]], axis=1)
    items["amount_fen"] = np.diff(edges, axis=1).reshape(-1)
    items["qty"] = rng.integers(1, 4, n * k)
    if workload == "worst":
        items["sku"] = rng.integers(1, WORST_SKUS, n * k)
        items["category"] = rng.integers(0, CATEGORIES, n * k)
    else:
        items["sku"] = rng.integers(1, SKUS + 1, n * k)
        items["category"] = items["sku"] % CATEGORIES
    ops["items_off"] = np.arange(n, dtype=np.uint32) * k
    ops["items_n"] = k
    ops["points_offset"] = OFFSET_POINTS
    return items


def prepare(path: str, n_cards: int, batch: int, coupons: bool = True) -> None:
    """N cards, each recharged once (and holding one coupon for domain runs),
    checkpointed: the state every run starts from."""
    # Recharges earn a point per yuan, so every card can offset points in domain runs;
    # every card holds one coupon for them.
    rules = RulesConfig(recharge_points_per_yuan_bp=10_000, no_points_categories=(13,),
                        category_points_mult_bp=((7, 20_000),),
                        coupon_templates=(CouponTemplate(1, "bench", "fixed", value_fen=COUPON_FEN,
                                                         valid_days=3_650),))
    with Engine(path, config=EngineConfig(batch_ops_max=batch, checkpoint_ops=10**9),
                rules=rules) as eng:
        nos = np.arange(1, n_cards + 1, dtype=np.uint64)
        for k in range(0, n_cards, ISSUE_CHUNK):
            eng.issue_cards(nos[k:k + ISSUE_CHUNK], new_client_id()).result()
        futs: list = []
        for k in range(0, n_cards, batch):
            if len(futs) >= 32:  # stay well inside the engine's queue bound
                futs.pop(0).result()
            m = min(batch, n_cards - k)
            ops = np.zeros(m, dtype=OP)
            ops["client_hi"] = 0xFEED
            ops["client_lo"] = np.arange(k + 1, k + m + 1, dtype=np.uint64)
            ops["card_no"] = nos[k:k + m]
            ops["amount_fen"] = 100_000_000  # 1,000,000 yuan each: no run runs dry
            ops["op_type"] = OpType.RECHARGE
            futs.append(eng.submit(ops))
        for f in futs:
            f.result()
        if coupons:
            for k in range(0, n_cards, ISSUE_CHUNK):
                eng.issue_coupons(1, nos[k:k + ISSUE_CHUNK], new_client_id()).result()


def copy_seed(seed_dir: str, run_dir: str) -> None:
    """A run's copy of the prepared cards, written back to the disk before its clock
    starts: otherwise the run's first fsync'd commit also writes back the whole copy
    (1.2 GB for 1,000,000 cards; 2 s of a run on a slow disk)."""
    shutil.copytree(seed_dir, run_dir)
    for name in os.listdir(run_dir):
        fd = os.open(os.path.join(run_dir, name), os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def run_engine(path: str, n_cards: int, n_ops: int, batch: int, seed: int,
               domain: bool = False, checkpoint_ops: int = 0, rollups: bool = True,
               workload: str = "realistic") -> dict:
    commits = _Commits()
    rng = np.random.default_rng(seed)
    cfg = EngineConfig(batch_ops_max=batch, queue_ops_max=max(batch * 16, 262_144),
                       checkpoint_ops=checkpoint_ops or 10**12, checkpoint_interval_s=3600,
                       rollups=rollups)
    eng = Engine(path, config=cfg, observer=commits)
    subs = []
    # A domain run visits the cards in a random order, so each card's first swipe can
    # redeem its one coupon; swipes past n_cards name none.
    order = rng.permutation(n_cards).astype(np.uint64) + 1 if domain else None
    for k in range(0, n_ops, batch):
        ops = _ops(rng, min(batch, n_ops - k), n_cards, seed * 10**9 + k, OpType.SWIPE,
                   1_000, 50_000, workload)
        if not domain:
            subs.append((ops, None, None))
            continue
        at = np.arange(k, k + len(ops))
        ops["card_no"] = order[at % n_cards]
        items = _domain(rng, ops, workload)
        subs.append((ops, items, _coupons(ops, at < n_cards)))
    depth = threading.Semaphore(8)  # submissions in flight: keeps the writer fed
    acked = [0, 0]  # ops answered, ops accepted
    done = threading.Event()
    lock = threading.Lock()

    def on_done(f):
        r = f.result()
        with lock:
            acked[0] += len(r)
            acked[1] += int(np.count_nonzero(r.codes == 1))
            if acked[0] >= n_ops:
                done.set()
        depth.release()

    t0 = time.perf_counter()
    for ops, items, coupon_ids in subs:
        depth.acquire()
        eng.submit(ops, items, coupon_ids).add_done_callback(on_done)
    done.wait()
    elapsed = time.perf_counter() - t0
    # With rollups on, also the time until they cover every acknowledged swipe (the
    # tailer trails by up to rollups.flush_wait_s): the rate at which the rollups
    # were kept, so a tailer that only caught up after the clock stopped shows.
    if eng.rollups is not None:
        with eng.store.read() as txn:
            last = eng.store.last_seq(txn)
        eng.rollups.wait_for(last)
    current = time.perf_counter() - t0
    eng.close()
    lat = np.array(commits.seconds) * 1000
    # Timings and rates: floats are right here (no money passes through this module).
    return {"swipes_per_s": acked[1] / elapsed,
            "swipes_per_s_rollups_current": acked[1] / current,
            "commit_p50_ms": np.percentile(lat, 50).item(),  # timing, not money: float
            "commit_p99_ms": np.percentile(lat, 99).item(),  # timing, not money: float
            "commit_max_ms": lat.max().item(),  # timing, not money: float
            # The share of the run the committer spent inside its fsync'd commits: 1.0
            # is an engine bound by its commit alone (nothing between two commits).
            "commit_busy": float(np.sum(commits.seconds)) / elapsed,  # timing, not money
            "mean_batch_ops": np.mean(commits.sizes).item(), "accepted": acked[1],
            "rejected": acked[0] - acked[1],
            # Records beyond one per swipe: the coupons' own records.
            "coupon_records": commits.records - acked[1]}


def probe_apply(path: str, n_cards: int, batch: int, seed: int) -> dict:
    """CPU of the apply loop alone (no commit, nothing published): ns per op of plain
    swipes and of domain swipes (line items, an offset and a coupon each), medians over
    PROBE_BATCHES batches of each on the prepared table. Reads the engine's tables while
    its writer is idle; the state is left as it was."""
    rng = np.random.default_rng(seed)
    eng = Engine(path, config=EngineConfig(batch_ops_max=batch, checkpoint_ops=10**9))
    try:
        out: dict[str, list[int]] = {"plain": [], "domain": []}
        for b in range(2 * PROBE_BATCHES):
            kind = "plain" if b % 2 == 0 else "domain"
            ops = _ops(rng, batch, n_cards, 0xA000_0000 + b * batch, OpType.SWIPE, 1_000, 50_000)
            items = coupon_ids = None
            if kind == "domain":
                ops["card_no"] = rng.choice(n_cards, batch, replace=False).astype(np.uint64) + 1
                items = _domain(rng, ops)
                coupon_ids = _coupons(ops, np.ones(batch, bool))
            room = 2 * batch + 2 * (0 if coupon_ids is None else len(coupon_ids))
            recs, slots = np.empty(room, dtype=JOURNAL), np.empty(room, dtype=np.int64)
            results = np.empty(batch, dtype=RESULT)
            t = time.perf_counter_ns()
            eng._batcher.apply_batch(ops, eng._work, eng._card_index, eng._id_index, eng._rules,
                                     eng.clock(), eng._next_seq, recs, results, slots, items,
                                     None, eng._refunded, eng._coupons_work, eng._coupon_index,
                                     coupon_ids)
            out[kind].append((time.perf_counter_ns() - t) // batch)
            if np.any(results["code"] != 1):
                raise RuntimeError(f"probe: {kind} ops rejected: {np.unique(results['code'])}")
    finally:
        eng.close()
    plain, dom = statistics.median(out["plain"]), statistics.median(out["domain"])
    return {"apply_ns_per_op": plain, "domain_apply_ns_per_op": dom}


def run_reference(path: str, n_cards: int, n_ops: int, batch: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    env = lmdb.open(path, map_size=1 << 36, max_dbs=4, readahead=False)
    cards = env.open_db(b"cards")
    journal = env.open_db(b"journal")
    ids = env.open_db(b"ids")
    card_rec = bytes(CARD.itemsize)
    with env.begin(write=True) as txn:
        cur = txn.cursor(db=cards)
        cur.putmulti(((i).to_bytes(8, "big"), card_rec) for i in range(1, n_cards + 1))
    jrec = bytes(JOURNAL.itemsize)
    seq = 0
    lat = []
    t0 = time.perf_counter()
    for k in range(0, n_ops, batch):
        m = min(batch, n_ops - k)
        keys = rng.integers(1, n_cards + 1, m).tolist()
        with env.begin(write=True) as txn:
            for card in keys:
                seq += 1
                sk = seq.to_bytes(8, "big")
                txn.put(card.to_bytes(8, "big"), card_rec, db=cards)
                txn.put(sk, jrec, db=journal, append=True)
                txn.put(seq.to_bytes(8, "big") + sk, sk, db=ids)
            c0 = time.perf_counter()
        lat.append(time.perf_counter() - c0)
    elapsed = time.perf_counter() - t0
    env.close()
    return {"reference_per_s": n_ops / elapsed,
            "reference_commit_p50_ms": np.percentile(np.array(lat) * 1000, 50).item()}


def run_journal_ceiling(path: str, n_ops: int, batch: int, one_fsync: bool = True) -> dict:
    """py-lmdb appending `batch` journal-sized records per fsync'd commit to one
    append-only db, nothing else: the disk's rate for the engine's journal. The records
    of a commit are one value under the seq of its last record, as the engine's journal
    blocks are (docs/internals/storage.md, `journal`). one_fsync: one fsync per commit,
    the meta page made durable by the next commit's and a last fsync at the end, as the
    engine commits (`EngineConfig.lazy_meta_sync`); else LMDB's two per commit."""
    env = lmdb.open(path, map_size=1 << 36, max_dbs=2, readahead=False, metasync=not one_fsync)
    journal = env.open_db(b"journal")
    block = np.zeros(batch, dtype=JOURNAL)
    seq = 0
    t0 = time.perf_counter()
    for k in range(0, n_ops, batch):
        m = min(batch, n_ops - k)
        block["seq"][:m] = np.arange(seq + 1, seq + m + 1, dtype=np.uint64)
        with env.begin(write=True) as txn:
            txn.put((seq + m).to_bytes(8, "big"), block[:m].view(np.uint8), db=journal,
                    append=True)
        seq += m
    env.sync(True)
    elapsed = time.perf_counter() - t0
    with env.begin() as txn:
        written = sum(len(v) // JOURNAL.itemsize for _, v in txn.cursor(db=journal))
    env.close()
    if written != n_ops:
        raise RuntimeError(f"journal ceiling: {written} records written, {n_ops} meant")
    return {("journal_ceiling_per_s" if one_fsync else "journal_ceiling_two_fsync_per_s"):
            n_ops / elapsed}


def main_engine(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="mms bench engine", description=__doc__.splitlines()[0])
    ap.add_argument("--cards", type=int, default=1_000_000)
    ap.add_argument("--ops", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--runs", type=int, default=5, help="runs of each side; figures are medians")
    ap.add_argument("--dir", default=None, help="where to put the environments (default: a temp dir)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--no-reference", action="store_true")
    ap.add_argument("--no-journal-ceiling", action="store_true",
                    help="skip the raw journal-append ceiling")
    ap.add_argument("--checkpoint-ops", type=int, default=0,
                    help="checkpoint every N records during the runs (default: none, the "
                         "journal alone; the engine's own default is 1,000,000)")
    ap.add_argument("--domain", action="store_true",
                    help=f"also run swipes with {LINES_PER_SWIPE} line items, a points offset and a "
                         "coupon each, and time the apply loop of both kinds")
    ap.add_argument("--no-rollups", action="store_true",
                    help="run the engine without the report rollups' tailer")
    ap.add_argument("--rollups-cost", action="store_true",
                    help="each run twice, rollups on and off (alternating which goes first): "
                         "the cost of keeping the rollups, both figures from the same run")
    ap.add_argument("--workload", choices=WORKLOADS, default="realistic",
                    help="realistic: a terminal belongs to a store, few hundred skus with one "
                         "category each; worst: every key drawn independently")
    a = ap.parse_args(argv)
    if a.cards < 1 or a.ops < 1 or not 1 <= a.batch <= 65_536 or a.runs < 1:
        ap.error("--cards, --ops, --runs >= 1; --batch 1..65536")
    base = tempfile.mkdtemp(prefix="mms-bench-", dir=a.dir)
    try:
        seed_dir = os.path.join(base, "seed")
        t = time.perf_counter()
        prepare(seed_dir, a.cards, a.batch, coupons=a.domain)
        prep_s = time.perf_counter() - t
        if not a.json:
            print(f"prepared {a.cards:,} cards in {prep_s:.1f}s", file=sys.stderr)
        eng_runs, ref_runs, dom_runs, probes, off_runs, jc_runs = [], [], [], [], [], []
        for r in range(a.runs):
            run_dir = os.path.join(base, f"run{r}")
            sides = [(not a.no_rollups, eng_runs)]
            if a.rollups_cost:
                sides = [(True, eng_runs), (False, off_runs)][::1 if r % 2 == 0 else -1]
            for flag, sink in sides:
                copy_seed(seed_dir, run_dir)
                sink.append(run_engine(run_dir, a.cards, a.ops, a.batch, seed=r + 1,
                                       checkpoint_ops=a.checkpoint_ops, rollups=flag,
                                       workload=a.workload))
                shutil.rmtree(run_dir)
            if a.domain:
                copy_seed(seed_dir, run_dir)
                dom_runs.append(run_engine(run_dir, a.cards, a.ops, a.batch, seed=r + 1,
                                           domain=True, checkpoint_ops=a.checkpoint_ops,
                                           rollups=not a.no_rollups, workload=a.workload))
                shutil.rmtree(run_dir)
                copy_seed(seed_dir, run_dir)
                probes.append(probe_apply(run_dir, a.cards, min(a.batch, a.cards), seed=r + 1))
                shutil.rmtree(run_dir)
            if not a.no_reference:
                ref_dir = os.path.join(base, f"ref{r}")
                ref_runs.append(run_reference(ref_dir, a.cards, a.ops, a.batch, seed=r + 1))
                shutil.rmtree(ref_dir)
            if not a.no_journal_ceiling:
                jc_dir = os.path.join(base, f"journal{r}")
                jc_runs.append(run_journal_ceiling(jc_dir, a.ops, a.batch))
                shutil.rmtree(jc_dir)
                jc_runs[-1].update(run_journal_ceiling(jc_dir, a.ops, a.batch, one_fsync=False))
                shutil.rmtree(jc_dir)
            if not a.json:
                line = f"run {r + 1}: engine {eng_runs[-1]['swipes_per_s']:,.0f} swipes/s"
                if off_runs:
                    line += f", rollups off {off_runs[-1]['swipes_per_s']:,.0f}/s"
                if dom_runs:
                    line += f", domain {dom_runs[-1]['swipes_per_s']:,.0f}/s"
                if ref_runs:
                    line += f", reference {ref_runs[-1]['reference_per_s']:,.0f}/s"
                if jc_runs:
                    line += f", journal ceiling {jc_runs[-1]['journal_ceiling_per_s']:,.0f}/s"
                print(line, file=sys.stderr)
    finally:
        shutil.rmtree(base, ignore_errors=True)

    def med(runs: list[dict], key: str):  # a median of timings (float), not money
        return statistics.median(x[key] for x in runs)

    out = {
        "cards": a.cards, "ops": a.ops, "batch": a.batch, "runs": a.runs,
        "swipes_per_s": round(med(eng_runs, "swipes_per_s")),
        "commit_p50_ms": round(med(eng_runs, "commit_p50_ms"), 3),
        "commit_p99_ms": round(med(eng_runs, "commit_p99_ms"), 3),
        "commit_max_ms": round(med(eng_runs, "commit_max_ms"), 3),
        "mean_batch_ops": round(med(eng_runs, "mean_batch_ops"), 1),
        "commit_busy": round(med(eng_runs, "commit_busy"), 3),
        "runs_swipes_per_s": [round(x["swipes_per_s"]) for x in eng_runs],
        "rejected": sum(x["rejected"] for x in eng_runs + dom_runs),
    }
    if off_runs:
        off = med(off_runs, "swipes_per_s")
        current = med(eng_runs, "swipes_per_s_rollups_current")
        out["rollups_off_swipes_per_s"] = round(off)
        out["runs_rollups_off_swipes_per_s"] = [round(x["swipes_per_s"]) for x in off_runs]
        out["rollups_on_current_swipes_per_s"] = round(current)
        # Per run pair (same seed, same machine moment): 1 - on/off, then the median.
        pairs = [1 - x["swipes_per_s"] / y["swipes_per_s"] for x, y in zip(eng_runs, off_runs, strict=True)]
        # From the figures as reported, so the cost printed is the one they give.
        out["rollups_cost"] = round(1 - out["swipes_per_s"] / out["rollups_off_swipes_per_s"], 3)
        out["rollups_cost_pairs_median"] = round(statistics.median(pairs), 3)
        out["rollups_cost_until_current"] = round(1 - current / off, 3)
    out["workload"] = a.workload
    if dom_runs:
        out["domain_swipes_per_s"] = round(med(dom_runs, "swipes_per_s"))
        out["domain_cost_ratio"] = round(out["swipes_per_s"] / out["domain_swipes_per_s"], 2)
        out["runs_domain_swipes_per_s"] = [round(x["swipes_per_s"]) for x in dom_runs]
        out["domain_coupons_redeemed"] = dom_runs[0]["coupon_records"]
        out["apply_ns_per_op"] = round(med(probes, "apply_ns_per_op"))
        out["domain_apply_ns_per_op"] = round(med(probes, "domain_apply_ns_per_op"))
        out["domain_apply_cost_ratio"] = round(out["domain_apply_ns_per_op"]
                                               / out["apply_ns_per_op"], 2)
    if ref_runs:
        out["reference_per_s"] = round(med(ref_runs, "reference_per_s"))
        out["ratio"] = round(out["swipes_per_s"] / out["reference_per_s"], 2)
    if jc_runs:
        out["journal_ceiling_per_s"] = round(med(jc_runs, "journal_ceiling_per_s"))
        out["runs_journal_ceiling_per_s"] = [round(x["journal_ceiling_per_s"]) for x in jc_runs]
        out["journal_ratio"] = round(out["swipes_per_s"] / out["journal_ceiling_per_s"], 3)
        # LMDB's own two fsyncs per commit (the ceiling before lazy_meta_sync), for
        # comparison with figures taken against it.
        out["journal_ceiling_two_fsync_per_s"] = round(med(jc_runs, "journal_ceiling_two_fsync_per_s"))
        out["journal_ratio_two_fsync"] = round(out["swipes_per_s"]
                                               / out["journal_ceiling_two_fsync_per_s"], 3)
    if a.json:
        print(json.dumps(out))
    else:
        for k, v in out.items():
            print(f"{k:>26}  {v}")
    return 0
