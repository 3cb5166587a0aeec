"""Recovery stays bounded across crashes (issue 8): the real `mms serve` is killed with
SIGKILL again and again, each time at a known point (it has acknowledged a BulkRecharge,
so every row is durable, and waits), and every start replays only what the run before
it wrote, never the whole journal since the last clean stop."""

from __future__ import annotations

import asyncio
import os
import re

from core import Engine
from server.client import aio_channel, auth, stubs
from server.mms_pb import admin_pb2, pos_pb2
from server.tools.launch import ChildServer, TerminalSpec

CARDS = list(range(9001, 9021))
ROWS_PER_RUN = 300           # journal records each run adds (one per recharge)
RECOVERY_CHECKPOINT = 100    # EngineConfig.recovery_checkpoint_records for this test
RUNS = 5
AMOUNT_FEN = 100
_RECOVERED = re.compile(r"^mms: recovered (\d+) journal records; checkpoint at seq (\d+) "
                        r"of (\d+)")


def _recovered(child: ChildServer) -> tuple[int, int, int]:
    for line in child.output:
        m = _RECOVERED.match(line)
        if m:
            return int(m.group(1)), int(m.group(2)), int(m.group(3))
    raise AssertionError("no recovery line:\n" + "\n".join(child.output))


async def _run(child: ChildServer, first: bool) -> None:
    """Issue the cards (first run), then recharge ROWS_PER_RUN rows; returns once the
    server has answered, i.e. every row is committed."""
    async with aio_channel(child.target) as ch:
        pos, admin = stubs(ch)
        if first:
            await admin.IssueCards(admin_pb2.IssueCardsRequest(
                client_id=os.urandom(16), card_nos=CARDS), metadata=auth(child.token("admin")))

        async def chunks():
            nos = [CARDS[i % len(CARDS)] for i in range(ROWS_PER_RUN)]
            yield pos_pb2.BulkRechargeRequest(
                client_ids=os.urandom(16 * ROWS_PER_RUN), card_nos=nos,
                amount_fen=[AMOUNT_FEN] * ROWS_PER_RUN, line_numbers=list(range(ROWS_PER_RUN)))

        summary = await pos.BulkRecharge(chunks(), metadata=auth(child.token()))
        assert summary.applied == ROWS_PER_RUN, summary


def test_replay_stays_bounded_over_repeated_kills(tmp_path):
    terms = [TerminalSpec(1, 0, "admin"), TerminalSpec(2, 8, "pos")]
    engine = {"recovery_checkpoint_records": RECOVERY_CHECKPOINT,
              # No regular checkpoint in these short runs: only recovery's own.
              "checkpoint_ops": 10**9, "checkpoint_interval_s": 10**6}
    data = str(tmp_path / "data")
    replayed = []
    last_seq = 0
    for run in range(RUNS + 1):
        child = ChildServer(str(tmp_path), terms, data=data, engine=engine).start()
        try:
            n, checkpoint, last = _recovered(child)
            replayed.append(n)
            assert last >= last_seq, "nothing acknowledged is lost"
            if n > RECOVERY_CHECKPOINT:
                assert checkpoint == last, "a long replay is checkpointed before serving"
            last_seq = last
            if run < RUNS:
                asyncio.run(_run(child, first=run == 0))
        finally:
            child.kill()  # SIGKILL: no drain, no final checkpoint
    # Each start replays the run before it (its rows, the first one's issue too), not
    # the growing journal: without the recovery checkpoint it would be 300, 600, 900...
    assert replayed[0] == 0
    assert replayed[1] == ROWS_PER_RUN + len(CARDS), replayed  # one record per issued card
    assert replayed[2:] == [ROWS_PER_RUN] * (RUNS - 1), replayed
    # Nothing lost or doubled: the cards hold every acknowledged recharge once.
    eng = Engine(data)
    try:
        assert eng.stats()["recovered_records"] == 0, "the last start checkpointed its replay"
        assert sum(eng.card(no)["principal_fen"] for no in CARDS) == \
            RUNS * ROWS_PER_RUN * AMOUNT_FEN
    finally:
        eng.close()
