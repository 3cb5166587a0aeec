"""A member import killed midway (SIGKILL) leaves no half-imported member, and running
the same import again completes it without creating anyone twice. Member writes killed
at random points leave a saved search index equal to a full rebuild."""

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import lmdb
from common import ROOT, TESTS

from core import Engine
from core.domain.members import MemberStore, write_csv
from core.engine.storage import MAX_DBS

KEY_HEX = bytes(range(32)).hex()
N = 6000

CHILD = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {root!r})
    import core.domain.members as members
    import core.domain.members.store as members_store
    from core import Engine
    from core.domain.members import MemberStore
    # Report once {report_after} chunks have committed, then go on: the kill lands
    # somewhere in the chunks after it. Chunk {block_at} never starts, so the import is
    # always cut short, however fast this machine is.
    real = MemberStore._import_chunk
    done = [0]
    def counted(self, *a, **kw):
        if done[0] == {block_at}:
            time.sleep(60)
        real(self, *a, **kw)
        done[0] += 1
        if done[0] == {report_after}:
            open({ready!r}, "w").close()
    MemberStore._import_chunk = counted
    eng = Engine({data!r})
    ms = MemberStore(eng, key=bytes.fromhex({key!r}))
    ms.import_file({csv!r}, chunk_rows=100)
    eng.close()
""")


def _wait_for(path: str, proc: subprocess.Popen, timeout_s: float = 60) -> None:
    """Wait for the child to create path (it reached its point); fail if it died first."""
    deadline = time.monotonic() + timeout_s
    while not os.path.exists(path):
        assert proc.poll() is None, f"the child exited ({proc.returncode}) before its point"
        assert time.monotonic() < deadline, "the child never reached its point"
        time.sleep(0.005)


def test_kill_during_import_leaves_whole_members(tmp_path):
    root = str(ROOT)
    data, csv_path, ready = str(tmp_path / "d"), str(tmp_path / "m.csv"), str(tmp_path / "ready")
    write_csv(csv_path, ["name", "phone", "tags"],
              [[f"m{i}", f"135{i:08d}", "vip"] for i in range(N)])
    report_after = random.randint(1, N // 100 - 10)
    code = CHILD.format(root=root, data=data, key=KEY_HEX, ready=ready, csv=csv_path,
                        report_after=report_after, block_at=report_after + 5)
    proc = subprocess.Popen([sys.executable, "-c", code])
    _wait_for(ready, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    eng = Engine(data)
    ms = MemberStore(eng, key=bytes(range(32)))
    n = ms.count()
    assert report_after * 100 <= n < N
    env = eng.store.env
    with env.begin() as txn:
        names = [b"members", b"member_phone", b"member_import_rows"]
        if txn.get(b"members") is not None:
            dbs = {k: env.open_db(k, txn=txn, create=False) for k in names}
            members = [json.loads(v) for _k, v in txn.cursor(db=dbs[b"members"])]
            # Every stored member has its phone index and its import row; nothing else.
            assert len(members) == n
            assert txn.stat(dbs[b"member_phone"])["entries"] == n
            assert txn.stat(dbs[b"member_import_rows"])["entries"] == n
            for rec in members:
                assert rec["phone_enc"] and rec["status"] == "active"
    for mid in range(1, n + 1):
        assert ms.id_by_phone(ms.get(mid, reveal=True)["phone"]) == mid
    rep = ms.import_file(csv_path, chunk_rows=100)
    assert rep.created == N - n and rep.already_imported == n and rep.n_errors == 0
    assert ms.count() == N
    eng.close()


CHURN_CHILD = textwrap.dedent("""
    import random, sys, time
    sys.path.insert(0, {root!r})
    sys.path[:0] = [{tests!r}, {tests!r} + "/domain"]
    import core.domain.members as members
    import core.domain.members.store as members_store
    from core import Engine
    from core.domain.members import MemberStore
    from test_members_index import churn
    if {stall_save!r}:
        # Stop inside the transaction that saves a rebuilt index, half its chunks put.
        real = members_store.save_chunks
        def stalled(put, snap):
            def slow_put(k, v):
                put(k, v)
                if k == len(snap["status"]) // members.INDEX_CHUNK_ROWS // 2:
                    open({ready!r}, "w").close()
                    time.sleep(60)
            return real(slow_put, snap)
        members_store.save_chunks = stalled
    eng = Engine({data!r})
    ms = MemberStore(eng, key=bytes.fromhex({key!r}))
    # Report after a given number of member writes, then go on: the kill lands at a
    # point of the churn after it.
    churn(ms, random.Random({seed}), {ops_before}, file_tag="s{seed}a-")
    open({ready!r}, "w").close()
    churn(ms, random.Random({seed} + 1000), 10**9, file_tag="s{seed}-")
""")


def _kill_churn(tmp_path, data, seed, ops_before, stall_save=False):
    """Run the churn child and SIGKILL it as soon as it reports its point: after
    ops_before member writes, or (stall_save) inside the transaction saving a rebuilt
    index, where it waits to be killed."""
    root = str(ROOT)
    ready = str(tmp_path / f"ready{seed}")
    code = CHURN_CHILD.format(root=root, tests=str(TESTS), data=data, key=KEY_HEX,
                              ready=ready, seed=seed, stall_save=stall_save, ops_before=ops_before)
    proc = subprocess.Popen([sys.executable, "-c", code])
    _wait_for(ready, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def _rebuilt(ms):
    with ms._read() as txn:
        return ms._rebuild(txn).canonical()


def test_kill_during_member_writes_leaves_the_saved_index_current(tmp_path):
    """SIGKILL at random points of creates, imports, updates and status changes: the
    saved index is loaded on reopen (never found stale) and equals a full rebuild."""
    data = str(tmp_path / "d")
    rng = random.Random(11)
    for seed in range(4):
        _kill_churn(tmp_path, data, seed, rng.randint(1, 40))
        eng = Engine(data)
        ms = MemberStore(eng, key=bytes(range(32)))
        assert ms.index_source in ("loaded", "empty"), ms.index_source
        assert ms._cols.canonical() == _rebuilt(ms)
        eng.close()
    assert ms.count() > 0


def test_kill_while_a_rebuilt_index_is_saved(tmp_path):
    """The saved index dropped; the process that rebuilds and saves it is killed inside
    the saving transaction, or at a random point after: every reopen has an index equal
    to a full rebuild, and a killed save leaves no half-saved index behind."""
    data, csv_path = str(tmp_path / "d"), str(tmp_path / "m.csv")
    write_csv(csv_path, ["name", "tags"], [[f"m{i}", "vip" if i % 3 else "new"] for i in range(N)])
    eng = Engine(data)
    ms = MemberStore(eng, key=bytes(range(32)))
    assert ms.import_file(csv_path).created == N
    eng.close()
    rng = random.Random(12)
    for seed, stall in ((10, True), (11, False), (12, True), (13, False)):
        env = lmdb.open(data, max_dbs=MAX_DBS)
        with env.begin(write=True) as txn:
            txn.delete(b"index", db=env.open_db(b"member_meta", txn=txn))
        env.close()
        _kill_churn(tmp_path, data, seed, 0 if stall else rng.randint(0, 30), stall_save=stall)
        eng = Engine(data)
        ms = MemberStore(eng, key=bytes(range(32)))
        if stall:
            assert ms.index_source == "rebuilt: no saved index"
        else:
            assert ms.index_source == "loaded"
        assert ms._cols.canonical() == _rebuilt(ms)
        eng.close()
