"""A member import killed midway (SIGKILL) leaves no half-imported member, and running
the same import again completes it without creating anyone twice."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

from core import Engine
from core.members import MemberStore, write_csv

KEY_HEX = bytes(range(32)).hex()
N = 6000

CHILD = textwrap.dedent("""
    import sys
    sys.path.insert(0, {root!r})
    from core import Engine
    from core.members import MemberStore
    eng = Engine({data!r})
    ms = MemberStore(eng, key=bytes.fromhex({key!r}))
    open({ready!r}, "w").close()
    ms.import_file({csv!r}, chunk_rows=100)
    eng.close()
""")


def test_kill_during_import_leaves_whole_members(tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    data, csv_path, ready = str(tmp_path / "d"), str(tmp_path / "m.csv"), str(tmp_path / "ready")
    write_csv(csv_path, ["name", "phone", "tags"],
              [[f"m{i}", f"135{i:08d}", "vip"] for i in range(N)])
    code = CHILD.format(root=root, data=data, key=KEY_HEX, ready=ready, csv=csv_path)
    proc = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.monotonic() + 30
    while not os.path.exists(ready) and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.4)           # let some chunks commit
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    eng = Engine(data)
    ms = MemberStore(eng, key=bytes(range(32)))
    n = ms.count()
    assert 0 <= n < N
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
