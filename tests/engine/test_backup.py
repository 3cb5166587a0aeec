"""A hot backup taken while swipes commit holds every op acknowledged before it began,
and opens into a state that the journal adds up to."""

import os
import subprocess
import sys
import threading

import numpy as np

from core import Engine, EngineConfig
from core.engine.backup import backup
from core.records import OP, OpType, Result


def test_hot_backup_while_writing(tmp_path):
    data, copy = tmp_path / "data", tmp_path / "copy"
    eng = Engine(str(data), config=EngineConfig(batch_ops_max=256, checkpoint_ops=500))
    eng.issue_cards(np.arange(1, 101), os.urandom(16)).result()
    eng.submit(_ops(np.arange(1, 101), 100_000, OpType.RECHARGE, 1)).result()
    acked_before: list[int] = []
    stop = threading.Event()
    warmed = threading.Event()

    def writer():
        k = 10
        while not stop.is_set() and k < 400:
            r = eng.submit(_ops(np.random.default_rng(k).integers(1, 101, 64), 10, OpType.SWIPE, k)).result()
            assert (r.codes == Result.OK).all()
            acked_before.append(int(r.seq.max()))
            if len(acked_before) >= 20:
                warmed.set()
            k += 1

    t = threading.Thread(target=writer)
    t.start()
    assert warmed.wait(30), "the writer did not get going"
    acked_at_start = max(acked_before)
    last = eng.backup(str(copy))
    stop.set()
    t.join()
    eng.close()
    assert last >= acked_at_start
    restored = Engine(str(copy))
    assert restored.stats()["last_seq"] >= acked_at_start
    journal = restored.journal(1, 10**6)
    assert (np.diff(journal["seq"].astype(np.int64)) == 1).all()
    for card in range(1, 101):
        mine = journal[journal["card_no"] == card]
        assert restored.card(card)["principal_fen"] == int(mine["principal_delta_fen"].sum())
    restored.close()


def test_backup_from_another_process(tmp_path):
    """`mms backup` runs beside a live server: a second process copies the environment."""
    data = tmp_path / "data"
    eng = Engine(str(data))
    eng.issue_cards([7], os.urandom(16)).result()
    eng.recharge(7, 1_234, os.urandom(16)).result()
    code = ("import sys; from core.engine.backup import backup; "
            f"print(backup({str(data)!r}, {str(tmp_path / 'copy')!r}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(out.stdout) == eng.stats()["last_seq"]
    eng.close()
    restored = Engine(str(tmp_path / "copy"))
    assert restored.card(7)["principal_fen"] == 1_234
    restored.close()


def test_backup_refuses_a_non_empty_destination(tmp_path):
    eng = Engine(str(tmp_path / "d"))
    eng.close()
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "x").write_text("x")
    try:
        backup(str(tmp_path / "d"), str(tmp_path / "c"))
    except FileExistsError:
        pass
    else:
        raise AssertionError("backup wrote into a non-empty directory")


def _ops(cards, amount, op_type, ns):
    ops = np.zeros(len(cards), dtype=OP)
    ops["client_hi"] = ns + 1_000
    ops["client_lo"] = np.arange(1, len(cards) + 1)
    ops["card_no"] = cards
    ops["amount_fen"] = amount
    ops["op_type"] = op_type
    return ops


def test_mms_backup_command(tmp_path, capsys):
    from server.cli.main import main

    eng = Engine(str(tmp_path / "d"))
    eng.issue_cards([3], os.urandom(16)).result()
    last = eng.stats()["last_seq"]
    eng.close()
    assert main(["backup", "--data", str(tmp_path / "d"), str(tmp_path / "b")]) == 0
    assert f"seq {last}" in capsys.readouterr().out
    restored = Engine(str(tmp_path / "b"))
    assert restored.card(3) is not None
    restored.close()
