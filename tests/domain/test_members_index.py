"""The saved member search index: reopening loads it instead of reading every member,
it always equals a full rebuild from `members`, and a saved index that does not match
the stored members (stale, corrupt, forged, written behind its back) is detected,
rebuilt and saved again. SIGKILL tests live in tests/crash/test_members_crash.py."""

import json
import random

import lmdb
import pytest
from common import cid

import core.domain.members as members
import core.domain.members.index as members_index
from core import Engine
from core.domain.members import (
    INDEX_CHUNK_ROWS,
    TAG_VOCABULARY_MAX,
    MemberError,
    MemberOp,
    MemberQuery,
    MemberStatus,
    MemberStore,
)
from core.engine.storage import MAX_DBS

KEY = bytes(range(32))
NOW = 1_700_000_000
TAGS = ["vip", "wine", "kids", "new", "lapsed", "coffee"]
NAMES = ["王芳", "李", "Wang Fang", "Smith", "国强建军卫东红梅丽丽", "Alexandria Konstantinopoulou", "陈小明"]


class Clock:
    def __init__(self, now=NOW):
        self.now = now

    def __call__(self):
        return self.now



def open_store(path):
    eng = Engine(path, clock=Clock())
    return eng, MemberStore(eng, key=KEY)


def rebuilt(ms):
    """The index a full rebuild from the stored members gives, in canonical form."""
    with ms._read() as txn:
        return ms._rebuild(txn).canonical()


def churn(ms, rng, n_ops, *, tags=TAGS, file_tag="f"):
    """A random mix of creates, imports, updates and status changes."""
    for i in range(n_ops):
        n = ms.count()
        r = rng.random()
        if r < 0.25 or n == 0:
            ms.create({"name": rng.choice(NAMES) + str(i), "tags": rng.sample(tags, rng.randint(0, 3)),
                       "home_store_id": rng.randint(0, 5),
                       "birthday": rng.choice(["", f"19{rng.randint(50, 99)}-0{rng.randint(1, 9)}-11"])},
                      cid())
        elif r < 0.35:
            rows = [(line, {"name": rng.choice(NAMES), "tags": rng.sample(tags, rng.randint(0, 2)),
                            "home_store_id": rng.randint(0, 5)})
                    for line in range(2, 2 + rng.randint(1, 300))]
            ms.import_rows(rows, file_id=f"{file_tag}{i}", chunk_rows=rng.choice([7, 100, 1000]))
        elif r < 0.8:
            mid = rng.randint(1, n)
            changes = rng.choice([{"name": rng.choice(NAMES) + "x"}, {"tags": rng.sample(tags, 2)},
                                  {"tags": []}, {"home_store_id": rng.randint(0, 5)},
                                  {"birthday": "1980-02-03"}, {"birthday": None}])
            ms.update(mid, changes, cid())
        else:
            mid = rng.randint(1, n)
            status = MemberStatus[ms.get(mid)["status"].upper()]
            move = {MemberStatus.ACTIVE: rng.choice([MemberStatus.FROZEN, MemberStatus.CANCELLED]),
                    MemberStatus.FROZEN: rng.choice([MemberStatus.ACTIVE, MemberStatus.CANCELLED]),
                    MemberStatus.CANCELLED: MemberStatus.ACTIVE}[status]
            ms.set_status(mid, move, cid())


QUERIES = [MemberQuery(limit=1000), MemberQuery(tags=["vip"], limit=1000),
           MemberQuery(name="wang", limit=1000), MemberQuery(name="丽丽", name_contains=True, limit=1000),
           MemberQuery(name="alexandria konstantinopoulou", limit=1000),
           MemberQuery(store_id=3, status=MemberStatus.ACTIVE, limit=1000),
           MemberQuery(status=MemberStatus.CANCELLED, tags=["wine", "kids"], limit=1000)]


def results(ms):
    return [ms.search_ids(q).tolist() for q in QUERIES] + [ms.find_duplicates()]


def raw_index(path):
    """member_index and member_meta as {db: {key: value}}, read with plain LMDB."""
    env = lmdb.open(path, max_dbs=MAX_DBS, readonly=True, lock=False)
    try:
        with env.begin() as txn:
            return {name: dict(txn.cursor(db=env.open_db(name, txn=txn, create=False)))
                    for name in (b"member_index", b"member_meta")}
    finally:
        env.close()


def poke(path, fn):
    """Change the closed environment with plain LMDB: fn(txn, dbs) with dbs[name] the
    handles of member_index, member_meta and members."""
    env = lmdb.open(path, max_dbs=MAX_DBS, map_size=1 << 30)
    try:
        with env.begin(write=True) as txn:
            dbs = {n: env.open_db(n.encode(), txn=txn) for n in ("member_index", "member_meta", "members")}
            fn(txn, dbs)
    finally:
        env.close()


def test_reopen_loads_the_saved_index_equal_to_a_rebuild(tmp_path):
    path = str(tmp_path / "d")
    eng, ms = open_store(path)
    assert ms.index_source == "empty"
    churn(ms, random.Random(1), 250)
    assert ms._cols.canonical() == rebuilt(ms)
    expect = results(ms)
    assert ms.count() > 2 * INDEX_CHUNK_ROWS          # several chunks
    eng.close()
    eng, ms = open_store(path)
    assert ms.index_source == "loaded"
    assert ms._cols.canonical() == rebuilt(ms)
    assert results(ms) == expect and sum(map(len, expect)) > 0
    # Writes after a load keep both in step.
    churn(ms, random.Random(2), 60)
    expect = results(ms)
    eng.close()
    eng, ms = open_store(path)
    assert ms.index_source == "loaded" and results(ms) == expect
    assert ms._cols.canonical() == rebuilt(ms)
    eng.close()


def test_no_journal_record_on_a_clean_open(tmp_path):
    path = str(tmp_path / "d")
    eng, ms = open_store(path)
    ms.create({"name": "A"}, cid())
    seq = eng._last_seq
    eng.close()
    eng, ms = open_store(path)
    assert ms.index_source == "loaded" and eng._last_seq == seq
    eng.close()


def test_many_tags_span_several_words(tmp_path):
    """More than 64 distinct tags: rows are several u64 words wide, chunk by chunk."""
    path = str(tmp_path / "d")
    eng, ms = open_store(path)
    tags = [f"t{i}" for i in range(150)]
    rng = random.Random(3)
    for i in range(600):
        ms.create({"name": f"m{i}", "tags": rng.sample(tags[: 10 + i // 4], 3)}, cid())
    for mid in rng.sample(range(1, 601), 50):
        ms.update(mid, {"tags": rng.sample(tags, 5)}, cid())
    expect = [ms.search_ids(MemberQuery(tags=[t], limit=1000)).tolist() for t in tags]
    eng.close()
    eng, ms = open_store(path)
    assert ms.index_source == "loaded"
    assert ms._cols.canonical() == rebuilt(ms)
    assert [ms.search_ids(MemberQuery(tags=[t], limit=1000)).tolist() for t in tags] == expect
    eng.close()


@pytest.fixture
def fresh(tmp_path):
    path = str(tmp_path / "d")
    eng, ms = open_store(path)
    churn(ms, random.Random(5), 120)
    expect = results(ms)
    eng.close()
    return path, expect


def reopen_rebuilds(path, expect, why):
    eng, ms = open_store(path)
    assert ms.index_source.startswith("rebuilt: ") and why in ms.index_source, ms.index_source
    assert results(ms) == expect
    assert ms._cols.canonical() == rebuilt(ms)
    # The rebuild was saved (a MEMBER_INDEX op), so the next open loads it.
    rec = eng.journal_record(eng._last_seq)
    assert int(rec["op_type"]) == MemberOp.MEMBER_INDEX
    eng.close()
    eng, ms = open_store(path)
    assert ms.index_source == "loaded" and results(ms) == expect
    eng.close()


def test_stale_whole_index_is_detected(fresh, tmp_path):
    """An older copy of the whole saved index (chunks and state) put back."""
    path, _ = fresh
    old = raw_index(path)
    eng, ms = open_store(path)
    churn(ms, random.Random(6), 40)
    expect = results(ms)
    eng.close()

    def restore(txn, dbs):
        idx, meta = dbs["member_index"], dbs["member_meta"]
        txn.drop(idx, delete=False)
        for k, v in old[b"member_index"].items():
            txn.put(k, v, db=idx)
        txn.put(b"index", old[b"member_meta"][b"index"], db=meta)

    poke(path, restore)
    reopen_rebuilds(path, expect, "reflects member write")


def test_stale_chunk_is_detected(fresh):
    """One chunk put back from an older index: its own checksum holds, the state's does not."""
    path, _ = fresh
    old = raw_index(path)
    eng, ms = open_store(path)
    ms.update(1, {"name": "Changed", "tags": ["kids"]}, cid())
    expect = results(ms)
    eng.close()
    k0 = (0).to_bytes(8, "big")
    poke(path, lambda txn, dbs: txn.put(k0, old[b"member_index"][k0], db=dbs["member_index"]))
    reopen_rebuilds(path, expect, "do not match the saved index state")


@pytest.mark.parametrize("damage, why", [
    ("flip", "fails its checksum"),
    ("truncate", "truncated"),
    ("drop_chunk", "do not match"),
    ("extra_chunk", "do not match"),
    ("moved_chunk", "fails its checksum"),
    ("drop_state", "no saved index"),
    ("garbage_state", "unreadable"),
    ("other_format", "unreadable"),
    ("gen_forward", "reflects member write"),
])
def test_corrupt_index_is_detected(fresh, damage, why):
    path, expect = fresh

    def hurt(txn, dbs):
        idx, meta = dbs["member_index"], dbs["member_meta"]
        k0 = (0).to_bytes(8, "big")
        v = bytearray(txn.get(k0, db=idx))
        state = json.loads(txn.get(b"index", db=meta))
        if damage == "flip":
            v[len(v) // 2] ^= 0x10
            txn.put(k0, bytes(v), db=idx)
        elif damage == "truncate":
            txn.put(k0, bytes(v[:10]), db=idx)
        elif damage == "drop_chunk":
            txn.delete((1).to_bytes(8, "big"), db=idx)
        elif damage == "extra_chunk":
            # A well-formed chunk (its own checksum right) that the state does not count.
            chunk = members_index._Chunk.decode(1, txn.get((1).to_bytes(8, "big"), db=idx))
            txn.put((999).to_bytes(8, "big"), chunk.encode(999), db=idx)
        elif damage == "moved_chunk":
            txn.put((999).to_bytes(8, "big"), txn.get((1).to_bytes(8, "big"), db=idx), db=idx)
        elif damage == "drop_state":
            txn.delete(b"index", db=meta)
        elif damage == "garbage_state":
            txn.put(b"index", b"{not json", db=meta)
        elif damage == "other_format":
            txn.put(b"index", json.dumps({**state, "format": 99}).encode(), db=meta)
        elif damage == "gen_forward":
            txn.put(b"index", json.dumps({**state, "gen": state["gen"] + 1}).encode(), db=meta)

    poke(path, hurt)
    reopen_rebuilds(path, expect, why)


def test_member_written_behind_the_index_is_detected(fresh):
    """A member record written without the index (an older build, a hand repair): the
    index no longer covers every stored member."""
    path, _ = fresh

    def sneak(txn, dbs):
        meta, db = dbs["member_meta"], dbs["members"]
        nxt = int.from_bytes(txn.get(b"next_id", db=meta), "big")
        rec = json.loads(txn.get((1).to_bytes(8, "big"), db=db))
        rec.update(id=nxt, name="Sneaky", status="active", phone_enc="", id_no_enc="")
        txn.put(nxt.to_bytes(8, "big"), json.dumps(rec).encode(), db=db)
        txn.put(b"next_id", (nxt + 1).to_bytes(8, "big"), db=meta)

    poke(path, sneak)
    eng, ms = open_store(path)
    assert ms.index_source.startswith("rebuilt: ") and "other rows" in ms.index_source
    assert ms.search_ids(MemberQuery(name="sneaky")).tolist() == [ms.count()]
    assert ms._cols.canonical() == rebuilt(ms)
    eng.close()


def test_a_stale_state_is_never_advanced_by_a_write(tmp_path):
    """If the saved state does not match the members when a member is written, the write
    drops the state instead of stamping it current."""
    path = str(tmp_path / "d")
    eng, ms = open_store(path)
    churn(ms, random.Random(8), 30)

    def forge(ctx):
        st = json.loads(ctx.get("member_meta", b"index"))
        ctx.put("member_meta", b"index", json.dumps({**st, "gen": st["gen"] - 1}).encode())

    eng.admin(cid(), members.MemberOp.MEMBER_UPDATE, forge).result()
    ms.create({"name": "After"}, cid())
    with eng.store.read() as txn:
        meta = eng.store.db["member_meta"]
        assert txn.get(b"index", db=meta) is None
    expect = results(ms)
    eng.close()
    reopen_rebuilds(path, expect, "no saved index")


def test_write_into_a_corrupt_chunk_drops_the_state(tmp_path):
    path = str(tmp_path / "d")
    eng, ms = open_store(path)
    churn(ms, random.Random(9), 30)

    def corrupt(ctx):
        v = bytearray(ctx.get("member_index", (0).to_bytes(8, "big")))
        v[-1] ^= 1
        ctx.put("member_index", (0).to_bytes(8, "big"), bytes(v))

    eng.admin(cid(), members.MemberOp.MEMBER_UPDATE, corrupt).result()
    ms.update(1, {"name": "Fixed"}, cid())
    with eng.store.read() as txn:
        assert txn.get(b"index", db=eng.store.db["member_meta"]) is None
    expect = results(ms)
    eng.close()
    reopen_rebuilds(path, expect, "no saved index")


def test_failure_between_member_write_and_index_write_commits_neither(tmp_path, monkeypatch):
    """The index chunks go in the member's own transaction: an exception after the member
    record is put and before the index is written aborts both."""
    path = str(tmp_path / "d")
    eng, ms = open_store(path)
    churn(ms, random.Random(10), 20)
    before, n = results(ms), ms.count()
    real = members_index.IndexTxn.write

    def boom(self, recs):
        raise OSError("killed here")

    monkeypatch.setattr(members_index.IndexTxn, "write", boom)
    with pytest.raises(OSError):
        ms.create({"name": "Lost"}, cid())
    with pytest.raises(OSError):
        ms.update(1, {"name": "Lost"}, cid())
    with pytest.raises(OSError):
        ms.import_rows([(2, {"name": "Lost"})], file_id="lost")
    monkeypatch.setattr(members_index.IndexTxn, "write", real)
    assert ms.count() == n and results(ms) == before
    eng.close()
    eng, ms = open_store(path)
    assert ms.index_source == "loaded" and ms.count() == n and results(ms) == before
    assert ms._cols.canonical() == rebuilt(ms)
    eng.close()


def test_saving_a_rebuild_is_skipped_when_members_changed(tmp_path):
    path = str(tmp_path / "d")
    eng, ms = open_store(path)
    ms.create({"name": "A"}, cid())
    with eng.store.read() as txn:
        before = txn.get(b"index", db=eng.store.db["member_meta"])
    assert not ms._save_index(0, "test: members moved on")
    with eng.store.read() as txn:
        assert txn.get(b"index", db=eng.store.db["member_meta"]) == before
    eng.close()


def test_import_cannot_overflow_the_tag_vocabulary(tmp_path):
    """Tags new in earlier rows of the same import chunk count against the limit."""
    eng, ms = open_store(str(tmp_path / "d"))
    rows = [(i + 2, {"name": f"m{i}", "tags": [f"tag{i}"]}) for i in range(TAG_VOCABULARY_MAX + 10)]
    rep = ms.import_rows(rows, file_id="tags", chunk_rows=1000)
    assert rep.created == TAG_VOCABULARY_MAX and rep.n_errors == 10
    assert all("distinct tags" in e.reason for e in rep.errors)
    with pytest.raises(MemberError):
        ms.update(1, {"tags": ["one more"]}, cid())
    assert ms._cols.canonical() == rebuilt(ms)
    eng.close()


def test_data_from_before_the_saved_index_is_rebuilt_once(fresh):
    """A data directory written before the index was saved (no member_index, no gen, no
    state): the first open rebuilds and saves, later opens load."""
    path, expect = fresh

    def strip(txn, dbs):
        txn.drop(dbs["member_index"], delete=True)
        txn.delete(b"gen", db=dbs["member_meta"])
        txn.delete(b"index", db=dbs["member_meta"])

    poke(path, strip)
    reopen_rebuilds(path, expect, "no saved index")
