"""Crash test: a child process (tests/crash/crash_child.py) applies batches in a loop and prints
every acknowledged client id; it is killed with SIGKILL at random moments, again and
again, each run reopening (recovering) the same environment. Afterwards every
acknowledged op is in the journal exactly once, nothing rejected is, and every card's
balances and points are what its journal records add up to."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import reference
from common import ROOT

from core import Engine, EngineConfig, RulesConfig
from core.records import CARD, JOURNAL, OP, OpType, Result, card_to_dict

HERE = Path(__file__).resolve().parent
CHILD = HERE / "crash_child.py"
N_CARDS = 20
N_KILLS = 22
ISSUE_CLIENT_ID = b"crash-test-issue"
READY_TIMEOUT_S = 60
JOURNAL_MAX = 10**9
# A serving child is killed after it acknowledged between 1 and this many ops.
ACKED_BEFORE_KILL_MAX = 20_000


class Child:
    """One run of crash_child.py with its stdout collected by a thread."""

    def __init__(self, path: str, seed: int, checkpoint_ops: int, stderr_path: Path) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self._stderr = open(stderr_path, "wb")  # noqa: SIM115 (closed in wait())
        self.proc = subprocess.Popen(
            [sys.executable, str(CHILD), path, str(seed), str(checkpoint_ops), str(N_CARDS)],
            stdout=subprocess.PIPE, stderr=self._stderr, env=env, cwd=str(ROOT))
        self.ready = threading.Event()
        self.opening = threading.Event()
        self.chunks: list[bytes] = []
        self._acked = 0
        self._progress = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.chunks.append(line)
            if line.startswith(b"ack ") and line.endswith(b"\n"):
                with self._progress:
                    self._acked += 1
                    self._progress.notify_all()
            elif line.startswith(b"opening"):
                self.opening.set()
            elif line.startswith(b"ready"):
                self.ready.set()
        with self._progress:
            self._acked = -1          # the child is gone: nothing more will come
            self._progress.notify_all()

    def wait_acked(self, n: int, timeout_s: float) -> bool:
        """Wait until the child has acknowledged n ops (it reached that point and goes
        on): True, or False if it died or the time ran out."""
        with self._progress:
            return self._progress.wait_for(lambda: self._acked >= n or self._acked < 0,
                                           timeout_s) and self._acked >= n

    def kill(self) -> int:
        self.proc.send_signal(signal.SIGKILL)
        rc = self.proc.wait()
        self._reader.join()
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        self._stderr.close()
        return rc

    def acks(self) -> list[tuple[bytes, int, int]]:
        """Complete lines only: a line cut by the kill was never fully acknowledged."""
        out = []
        for line in self.chunks:
            if not line.endswith(b"\n") or not line.startswith(b"ack "):
                continue
            _, cid, code, replayed = line.split()
            out.append((bytes.fromhex(cid.decode()), int(code), int(replayed)))
        return out


def client_ids(recs: np.ndarray) -> list[bytes]:
    pairs = np.stack([recs["client_hi"], recs["client_lo"]], axis=1).astype(">u8")
    raw = pairs.tobytes()
    return [raw[i:i + 16] for i in range(0, len(raw), 16)]


def check_journal(eng: Engine, ok_ids: set[bytes], rejected_ids: set[bytes]) -> np.ndarray:
    recs = eng.journal(1, JOURNAL_MAX)
    n = len(recs)
    assert n == eng.stats()["last_seq"]
    assert np.array_equal(recs["seq"], np.arange(1, n + 1, dtype=np.uint64)), "seqs 1..n, no gaps"
    assert np.all(recs["result"] == Result.OK)

    issue = recs["op_type"] == OpType.ISSUE
    assert int(issue.sum()) == N_CARDS, "the cards were issued exactly once"
    assert set(client_ids(recs[issue])) == {ISSUE_CLIENT_ID}
    hot = recs[~issue]
    assert np.all(np.isin(hot["op_type"], [OpType.SWIPE, OpType.RECHARGE, OpType.SET_RULES]))
    hot_ids = client_ids(hot)
    seen = set(hot_ids)
    assert len(seen) == len(hot_ids), "a client id was applied twice"
    missing = ok_ids - seen
    assert not missing, f"{len(missing)} acknowledged ops are not in the journal"
    wrongly = rejected_ids & seen
    assert not wrongly, f"{len(wrongly)} rejected ops are in the journal"

    # Every card: its records chain by prev_seq, each after-image is the running sum of
    # the deltas so far, and the engine's card is the last after-image.
    for no in range(1, N_CARDS + 1):
        mine = recs[recs["card_no"] == no]
        assert len(mine) >= 1 and int(mine[0]["op_type"]) == OpType.ISSUE
        assert int(mine[0]["prev_seq"]) == 0
        assert np.array_equal(mine["prev_seq"][1:], mine["seq"][:-1])
        after = mine["after"]
        for field, delta in (("principal_fen", "principal_delta_fen"),
                             ("bonus_fen", "bonus_delta_fen"), ("points", "points_delta")):
            running = np.cumsum(mine[delta].astype(np.int64))
            assert np.array_equal(after[field], running), (no, field)
            assert eng.card(no)[field] == int(running[-1]), (no, field)
        assert np.all(after["principal_fen"] >= 0) and np.all(after["bonus_fen"] >= 0)
        assert eng.card(no) == card_to_dict(after[-1])

    # Rules versions: each change bumps it by one, every record names the one in force.
    changes = recs[recs["op_type"] == OpType.SET_RULES]
    assert changes["amount_fen"].tolist() == list(range(2, len(changes) + 2))
    assert np.all(np.diff(recs["rules_version"].astype(np.int64)) >= 0)
    assert eng.stats()["rules_version"] == len(changes) + 1
    return recs


AUDITED_AFTER = ("principal_fen", "bonus_fen", "points", "spend_total_fen",
                 "recharge_total_fen", "period_spend_fen", "period_points",
                 "period_recharge_fen", "level_expires_at_s", "last_visit_s", "visits",
                 "level", "status", "lot_year", "lot0_points", "lot1_points", "lot2_points",
                 "permanent_points")
AUDITED_AMOUNTS = ("discount_fen", "payable_fen", "principal_delta_fen", "bonus_delta_fen",
                   "points_delta", "level_before")


def audit(eng: Engine, recs: np.ndarray) -> None:
    """Re-derive every swipe and recharge of the journal with the reference rules (the
    rules version and time the record names) and compare amounts and after-image."""
    rules = {}
    with eng.store.read() as txn:
        for key, raw in txn.cursor(db=eng.store.db["rules"]):
            rules[int.from_bytes(key, "big")] = RulesConfig.from_json(raw)
    names = JOURNAL.names
    col = {n: names.index(n) for n in names}
    after_col = {n: CARD.names.index(n) for n in CARD.names}
    handlers = {OpType.SWIPE: reference.swipe, OpType.RECHARGE: reference.recharge}
    cards: dict[int, dict] = {}
    for row in recs.tolist():
        op_type = row[col["op_type"]]
        after = row[col["after"]]
        if op_type == OpType.ISSUE:
            cards[row[col["card_no"]]] = {n: after[i] for n, i in after_col.items()}
            continue
        if op_type not in handlers:
            continue
        card = dict(cards[row[col["card_no"]]])
        # The crash child sends plain swipes and recharges: every domain input is zero.
        op = {n: 0 for n in OP.names}
        op.update({n: row[col[n]] for n in ("amount_fen", "op_flags", "category", "store_id")})
        ctx = reference.Ctx(rules=rules[row[col["rules_version"]]], now_s=row[col["time_s"]])
        got = handlers[op_type](op, card, ctx)
        seq = row[col["seq"]]
        for n in AUDITED_AMOUNTS:
            assert got[n] == row[col[n]], (seq, n, got[n], row[col[n]])
        for n in AUDITED_AFTER:
            assert card[n] == after[after_col[n]], (seq, n, card[n], after[after_col[n]])
        cards[row[col["card_no"]]] = card


@pytest.mark.slow
def test_sigkill_loses_nothing_and_applies_nothing_twice(tmp_path):
    path = str(tmp_path / "env")
    rng = random.Random()
    seed_base = rng.randrange(10**6)
    ok_ids: set[bytes] = set()
    rejected_ids: set[bytes] = set()
    kills_while_serving = 0
    for run in range(N_KILLS):
        checkpoint_ops = 2_000 if run % 2 else 1_000_000
        child = Child(path, seed_base + run, checkpoint_ops, tmp_path / f"stderr.{run}")
        try:
            if run % 7 == 3:
                # Now and then kill it early: as it opens and recovers the environment.
                if not child.opening.wait(READY_TIMEOUT_S):
                    raise AssertionError((tmp_path / f"stderr.{run}").read_text())
            else:
                # Kill it while it serves: once it has acknowledged a random number of
                # ops, wherever its threads are then (mid-batch, mid-commit, mid-rules).
                if not child.wait_acked(rng.randint(1, ACKED_BEFORE_KILL_MAX), READY_TIMEOUT_S):
                    raise AssertionError((tmp_path / f"stderr.{run}").read_text())
                kills_while_serving += 1
        finally:
            rc = child.kill()
        stderr = (tmp_path / f"stderr.{run}").read_text()
        assert rc == -signal.SIGKILL, (rc, stderr)
        assert "Traceback" not in stderr, stderr
        for cid, code, replayed in child.acks():
            if code == Result.OK:
                ok_ids.add(cid)
            else:
                assert not replayed
                rejected_ids.add(cid)
    assert kills_while_serving >= 18
    assert ok_ids, "the child never acknowledged an op"
    assert not ok_ids & rejected_ids

    eng = Engine(path)
    try:
        recs = check_journal(eng, ok_ids, rejected_ids)
        audit(eng, recs)
        before_cards = {no: eng.card(no) for no in range(1, N_CARDS + 1)}
        before_last = eng.stats()["last_seq"]

        # Acknowledged ids re-sent after all the restarts: first result, nothing applied.
        seq_of = dict(zip(client_ids(recs), recs["seq"].tolist(), strict=True))
        sample = rng.sample(sorted(ok_ids), min(500, len(ok_ids)))
        ops = np.zeros(len(sample), dtype=OP)
        ops["client_hi"] = [int.from_bytes(c[:8], "big") for c in sample]
        ops["client_lo"] = [int.from_bytes(c[8:], "big") for c in sample]
        ops["card_no"] = 1
        ops["amount_fen"] = 1
        ops["op_type"] = OpType.RECHARGE
        res = eng.submit(ops).result()
        assert np.all(res.codes == Result.OK)
        assert np.all(res.replayed == 1)
        assert res.seq.tolist() == [seq_of[c] for c in sample]
        assert eng.stats()["last_seq"] == before_last
        assert {no: eng.card(no) for no in range(1, N_CARDS + 1)} == before_cards
    finally:
        eng.close()

    # A clean close and reopen gives the same state again.
    eng = Engine(path, config=EngineConfig())
    try:
        assert eng.stats()["last_seq"] == before_last
        assert {no: eng.card(no) for no in range(1, N_CARDS + 1)} == before_cards
    finally:
        eng.close()
