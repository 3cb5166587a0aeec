"""Members: profile rules, PII at rest, de-duplication, audit, idempotency, status,
search against a brute-force filter, import with a per-row error report, export."""

import csv
import json
import os
import random
import stat

import lmdb
import numpy as np
import openpyxl
import pytest
from common import cid
from cryptography.exceptions import InvalidTag

from core import Engine
from core.domain.members import (
    MemberError,
    MemberErrorCode,
    MemberOp,
    MemberQuery,
    MemberStatus,
    MemberStore,
    write_csv,
)
from core.domain.pii import (
    KEY_ENV,
    PiiCipher,
    PiiError,
    cn_id_check_digit,
    load_key,
    mask_id_no,
    mask_phone,
)
from core.records import CardStatus

KEY = bytes(range(32))
NOW = 1_700_000_000


class Clock:
    def __init__(self, now=NOW):
        self.now = now

    def __call__(self):
        return self.now



def id_no(prefix17):
    return prefix17 + cn_id_check_digit(prefix17)


@pytest.fixture
def eng(tmp_path):
    e = Engine(str(tmp_path / "data"), clock=Clock())
    yield e
    e.close()


@pytest.fixture
def ms(eng):
    return MemberStore(eng, key=KEY)


def test_masks():
    assert mask_phone("13812341234") == "138****1234"
    assert mask_id_no("110101199003071234") == "1101**********1234"


def test_create_get_masked_and_revealed(ms):
    idn = id_no("11010119900307123")
    r = ms.create({"name": "张三", "phone": "+86 138-1234-5678", "id_no": idn, "gender": "男",
                   "birthday": "1990-03-07", "tags": ["vip", "wine"], "custom": {"car": "SUV"},
                   "prefs": "tea;golf", "home_store_id": 7, "source": "小程序"}, cid())
    assert r.member_id == 1 and not r.replayed
    m = ms.get(1)
    assert m["phone"] == "138****5678" and m["id_no"] == mask_id_no(idn)
    assert m["gender"] == "M" and m["prefs"] == ["tea", "golf"] and m["source"] == "mini_program"
    assert m["status"] == "active" and m["created_s"] == NOW and m["version"] == 1
    full = ms.get(1, reveal=True)
    assert full["phone"] == "13812345678" and full["id_no"] == idn
    assert ms.find_by_phone("13812345678")["member_id"] == 1
    assert ms.id_by_id_no(idn.lower()) == 1
    assert ms.find_by_phone("13900000000") is None


@pytest.mark.parametrize("fields, bad", [
    ({"name": ""}, "name"),
    ({"name": "x" * 41}, "name"),
    ({"name": "a", "phone": "12345"}, "phone"),
    ({"name": "a", "phone": "2381234567a"}, "phone"),
    ({"name": "a", "id_no": "110101199003071230"}, "id_no"),   # wrong check digit
    ({"name": "a", "birthday": "2999-01-01"}, "birthday"),
    ({"name": "a", "birthday": "1990-02-30"}, "birthday"),
    ({"name": "a", "gender": "x"}, "gender"),
    ({"name": "a", "tags": [f"t{i}" for i in range(33)]}, "tags"),
    ({"name": "a", "custom": {f"k{i}": "v" for i in range(33)}}, "custom"),
    ({"name": "a", "source": "fax"}, "source"),
    ({"name": "a", "home_store_id": -1}, "home_store_id"),
    ({"name": "a", "colour": "red"}, "colour"),
    ({"name": "a\x00b"}, "name"),
])
def test_invalid_fields_are_rejected_before_the_writer(ms, fields, bad):
    with pytest.raises(MemberError) as e:
        ms.create(fields, cid())
    assert e.value.code == MemberErrorCode.INVALID and e.value.field == bad
    assert ms.count() == 0


def test_pii_encrypted_at_rest(ms, eng):
    idn = id_no("44030419851231001")
    ms.create({"name": "Li", "phone": "13700001111", "id_no": idn}, cid())
    ms.update(1, {"phone": "13700002222"}, cid())
    eng.close()
    raw = b""
    for name in ("data.mdb",):
        with open(os.path.join(eng.store.path, name), "rb") as f:
            raw += f.read()
    for secret in (b"13700001111", b"13700002222", idn.encode()):
        assert secret not in raw
    assert b"137****2222" in raw        # only the masked form, in the audit event


def test_records_hold_ciphertext_bound_to_the_member(ms, eng):
    ms.create({"name": "A", "phone": "13700001111"}, cid())
    ms.create({"name": "B", "phone": "13700002222"}, cid())
    with eng.store.read() as txn:
        db = eng.store.env.open_db(b"members", txn=txn, create=False)
        a = json.loads(txn.get((1).to_bytes(8, "big"), db=db))
        b = json.loads(txn.get((2).to_bytes(8, "big"), db=db))
    assert "phone" not in a and a["phone_enc"]
    # A ciphertext copied onto another member does not decrypt.
    b["phone_enc"] = a["phone_enc"]
    with pytest.raises(InvalidTag):
        ms._public(b, True)


def test_wrong_key_fails_loudly(ms, eng):
    ms.create({"name": "A", "phone": "13700001111"}, cid())
    with pytest.raises(PiiError):
        MemberStore(eng, key=bytes(32))


def test_key_file_created_0600_and_env_key(tmp_path, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    k1 = load_key(str(tmp_path))
    assert stat.S_IMODE(os.stat(tmp_path / "pii.key").st_mode) == 0o600
    assert load_key(str(tmp_path)) == k1 and len(k1) == 32
    monkeypatch.setenv(KEY_ENV, KEY.hex())
    assert load_key(str(tmp_path)) == KEY
    monkeypatch.setenv(KEY_ENV, "abcd")
    with pytest.raises(PiiError):
        load_key(str(tmp_path))


def test_dedup_by_phone_and_id_no(ms):
    idn = id_no("11010119900307123")
    ms.create({"name": "A", "phone": "13800000001", "id_no": idn}, cid())
    ms.create({"name": "B", "phone": "13800000002"}, cid())
    with pytest.raises(MemberError) as e:
        ms.create({"name": "C", "phone": "8613800000001".replace("86", "+86", 1)}, cid())
    assert e.value.code == MemberErrorCode.PHONE_TAKEN and "member 1" in e.value.message
    assert "138****0001" in e.value.message
    with pytest.raises(MemberError) as e:
        ms.create({"name": "C", "id_no": idn}, cid())
    assert e.value.code == MemberErrorCode.ID_NO_TAKEN
    with pytest.raises(MemberError) as e:
        ms.update(2, {"phone": "13800000001"}, cid())
    assert e.value.code == MemberErrorCode.PHONE_TAKEN
    assert ms.get(2, reveal=True)["phone"] == "13800000002"
    assert ms.count() == 2
    # A phone freed by an update can be taken by someone else.
    ms.update(1, {"phone": "13800000009"}, cid())
    assert ms.id_by_phone("13800000001") is None and ms.id_by_phone("13800000009") == 1
    assert ms.create({"name": "C", "phone": "13800000001"}, cid()).member_id == 3


def test_update_is_audited_with_masked_before_after(ms, eng):
    ms.create({"name": "A", "phone": "13800000001", "address": "Road 1"}, cid())
    r = ms.update(1, {"phone": "13900000002", "address": "Road 2", "name": "A"}, cid(),
                  operator_id=42, store_id=3)
    assert r.value["changed"] == ["address", "phone"] and r.value["version"] == 2
    with eng.store.read() as txn:
        db = eng.store.env.open_db(b"events", txn=txn, create=False)
        ev = json.loads(txn.get(r.seq.to_bytes(8, "big"), db=db))
    assert ev["op"] == MemberOp.MEMBER_UPDATE.name and ev["operator_id"] == 42 and ev["store_id"] == 3
    assert ev["detail"]["before"] == {"phone": "138****0001", "address": "Road 1"}
    assert ev["detail"]["after"] == {"phone": "139****0002", "address": "Road 2"}
    rec = eng.journal_record(r.seq)
    assert int(rec["op_type"]) == MemberOp.MEMBER_UPDATE and int(rec["operator_id"]) == 42


def test_update_version_conflict_and_not_found(ms):
    ms.create({"name": "A"}, cid())
    ms.update(1, {"name": "B"}, cid(), expected_version=1)
    with pytest.raises(MemberError) as e:
        ms.update(1, {"name": "C"}, cid(), expected_version=1)
    assert e.value.code == MemberErrorCode.VERSION_CONFLICT
    with pytest.raises(MemberError) as e:
        ms.update(9, {"name": "C"}, cid())
    assert e.value.code == MemberErrorCode.NOT_FOUND
    assert ms.get(1)["name"] == "B"


def test_idempotent_retries(ms, eng):
    c = cid()
    a = ms.create({"name": "A", "phone": "13800000001"}, c)
    b = ms.create({"name": "A", "phone": "13800000001"}, c)
    assert (a.member_id, a.replayed, b.member_id, b.replayed) == (1, False, 1, True)
    u = cid()
    ms.update(1, {"tags": ["x"]}, u)
    assert ms.update(1, {"tags": ["x"]}, u).replayed
    s = cid()
    ms.freeze(1, s)
    assert ms.freeze(1, s).replayed and ms.get(1)["version"] == 3
    assert ms.count() == 1


def test_status_moves(ms):
    ms.create({"name": "A", "phone": "13800000001"}, cid())
    ms.freeze(1, cid(), reason="dispute")
    assert ms.get(1)["status"] == "frozen"
    ms.unfreeze(1, cid())
    ms.cancel(1, cid())
    with pytest.raises(MemberError) as e:
        ms.freeze(1, cid())
    assert e.value.code == MemberErrorCode.STATUS_MOVE
    # A cancelled member keeps its phone, so it can be restored.
    with pytest.raises(MemberError):
        ms.create({"name": "B", "phone": "13800000001"}, cid())
    ms.restore(1, cid())
    assert ms.get(1)["status"] == "active"
    assert ms.search(MemberQuery(status=MemberStatus.ACTIVE)).total == 1


def test_referrer_must_exist(ms):
    ms.create({"name": "A"}, cid())
    assert ms.create({"name": "B", "referrer_id": 1}, cid()).member_id == 2
    with pytest.raises(MemberError) as e:
        ms.create({"name": "C", "referrer_id": 99}, cid())
    assert e.value.code == MemberErrorCode.REFERRER_NOT_FOUND


def test_index_is_rebuilt_on_open(tmp_path):
    path = str(tmp_path / "d")
    eng = Engine(path, clock=Clock())
    ms = MemberStore(eng, key=KEY)
    ms.create({"name": "Wang Fang", "phone": "13800000001", "tags": ["vip"], "home_store_id": 5}, cid())
    ms.create({"name": "Li", "tags": ["new"]}, cid())
    ms.update(2, {"name": "Liu"}, cid())
    eng.close()
    eng = Engine(path, clock=Clock())
    ms = MemberStore(eng, key=KEY)
    assert ms.index_source == "loaded"          # the saved index (tests/domain/test_members_index.py)
    assert ms.search_ids(MemberQuery(tags=["vip"], store_id=5)).tolist() == [1]
    assert ms.search_ids(MemberQuery(name="liu")).tolist() == [2]
    assert ms.create({"name": "Z"}, cid()).member_id == 3
    eng.close()


def test_find_duplicates(ms):
    ms.create({"name": "Wang Fang", "birthday": "1990-01-01"}, cid())
    ms.create({"name": "wang fang", "birthday": "1990-01-01", "phone": "13800000001"}, cid())
    ms.create({"name": "Wang Fang", "birthday": "1991-01-01"}, cid())
    ms.create({"name": "Li", "birthday": "1990-01-01"}, cid())
    assert ms.find_duplicates() == [[1, 2]]


# --- search against brute force ---------------------------------------------------------

SURNAMES = ["王", "李", "张", "刘", "Wang", "Smith", "陈"]
GIVEN = ["芳", "伟", "娜", "秀英", "Anna", "Bob", "小明", "国强建军卫东红梅丽丽"]
TAGS = ["vip", "wine", "kids", "new", "lapsed"]


def test_search_matches_brute_force(eng, ms):
    rng = random.Random(7)
    n = 300
    people = []
    for i in range(n):
        p = {"name": rng.choice(SURNAMES) + rng.choice(GIVEN),
             "phone": f"139{i:08d}",
             "tags": rng.sample(TAGS, rng.randint(0, 3)),
             "home_store_id": rng.randint(1, 4)}
        people.append(p)
    rows = [(k + 2, p) for k, p in enumerate(people)]
    rep = ms.import_rows(rows, file_id="seed", chunk_rows=64)
    assert rep.created == n and rep.n_errors == 0
    statuses = {}
    for mid in rng.sample(range(1, n + 1), 40):
        ms.freeze(mid, cid())
        statuses[mid] = "frozen"
    # Cards: some members hold 0..3 cards with spend, visit and level set by the engine.
    card_rows = []
    no = 1
    for mid in range(1, n + 1):
        for _ in range(rng.randint(0, 3)):
            card_rows.append((no, mid, rng.randint(0, 3)))
            no += 1
    eng.issue_cards([c[0] for c in card_rows], cid(), member_ids=[c[1] for c in card_rows]).result()
    cards = eng._cards
    for i, (_cno, _mid, level) in enumerate(card_rows):
        cards[i]["spend_total_fen"] = rng.randint(0, 100_000)
        cards[i]["last_visit_s"] = rng.choice([0, NOW - rng.randint(0, 10**7)])
        cards[i]["level"] = level
        if rng.random() < 0.1:
            cards[i]["status"] = CardStatus.CANCELLED
    table = cards[: eng._n_cards]

    def brute(q):
        out = []
        for mid, p in enumerate(people, start=1):
            mine = table[table["member_id"] == mid]
            if q.status is not None and statuses.get(mid, "active") != q.status.name.lower():
                continue
            if q.phone and p["phone"] != q.phone:
                continue
            if q.card_no is not None and q.card_no not in mine["card_no"].tolist():
                continue
            if q.store_id is not None and p["home_store_id"] != q.store_id:
                continue
            if any(t not in p["tags"] for t in q.tags):
                continue
            if q.name:
                nm, needle = p["name"].casefold(), q.name.casefold()
                if not (needle in nm if q.name_contains else nm.startswith(needle)):
                    continue
            if q.level is not None and not any(
                    int(c["level"]) == q.level and int(c["status"]) != CardStatus.CANCELLED for c in mine):
                continue
            spend = int(mine["spend_total_fen"].sum())
            if q.spend_min_fen is not None and spend < q.spend_min_fen:
                continue
            if q.spend_max_fen is not None and spend > q.spend_max_fen:
                continue
            last = int(mine["last_visit_s"].max()) if len(mine) else 0
            if q.last_visit_from_s is not None and last < q.last_visit_from_s:
                continue
            if q.last_visit_to_s is not None and not 0 < last <= q.last_visit_to_s:
                continue
            out.append(mid)
        return out

    checked = 0
    for _ in range(300):
        q = MemberQuery(limit=1000)
        if rng.random() < 0.3:
            q.name = rng.choice(SURNAMES + GIVEN + ["wa", "An", "国强建军卫东红梅丽丽", "丽丽"])
            q.name_contains = rng.random() < 0.5
        if rng.random() < 0.3:
            q.tags = rng.sample(TAGS, rng.randint(1, 2))
        if rng.random() < 0.3:
            q.store_id = rng.randint(1, 4)
        if rng.random() < 0.2:
            q.status = rng.choice(list(MemberStatus))
        if rng.random() < 0.2:
            q.level = rng.randint(0, 3)
        if rng.random() < 0.3:
            q.spend_min_fen = rng.randint(0, 150_000)
        if rng.random() < 0.3:
            q.spend_max_fen = rng.randint(0, 200_000)
        if rng.random() < 0.3:
            q.last_visit_from_s = NOW - rng.randint(0, 10**7)
        if rng.random() < 0.2:
            q.last_visit_to_s = NOW - rng.randint(0, 10**7)
        if rng.random() < 0.05:
            q.phone = f"139{rng.randint(0, n):08d}"
        if rng.random() < 0.05 and card_rows:
            q.card_no = rng.randint(1, len(card_rows) + 2)
        expect = brute(q)
        got = ms.search(q)
        assert [m["member_id"] for m in got.members] == expect, q
        assert got.total == len(expect)
        checked += bool(expect)
    assert checked > 50
    page = ms.search(MemberQuery(limit=10, offset=5))
    assert [m["member_id"] for m in page.members] == list(range(6, 16)) and page.total == n
    assert all("****" in m["phone"] for m in page.members)


# --- import and export ------------------------------------------------------------------

def _good_rows(k, start=0):
    return [[f"会员{i}", f"137{i:08d}", "F", "1990-01-02", "vip;new", "3", f"v{i}"]
            for i in range(start, start + k)]


HEADER = ["姓名", "手机号", "gender", "birthday", "tags", "store_id", "custom.colour"]


def test_csv_import_error_report_and_reimport(ms, tmp_path):
    rows = _good_rows(5)
    rows.insert(2, ["", "13799999999", "F", "", "", "", ""])          # line 4: no name
    rows.insert(4, ["Dup", "13700000001", "F", "", "", "", ""])       # line 6: phone of line 3
    rows.append(["Bad", "13788888888", "F", "1990-13-01", "", "", ""])  # line 9: bad date
    rows.append(["Many", "1", "2", "3", "4", "5", "6", "7"])           # line 10: too many cells
    path = str(tmp_path / "m.csv")
    write_csv(path, HEADER, rows)
    ms.create({"name": "Existing", "phone": "13700000004"}, cid())  # clashes with a file row
    rep = ms.import_file(path, chunk_rows=2)
    lines = {e.line: e.reason for e in rep.errors}
    assert sorted(lines) == [4, 6, 8, 9, 10], lines
    assert "name is required" in lines[4]
    assert "repeats line 3" in lines[6]
    assert "PHONE_TAKEN" in lines[8] and "137****0004" in lines[8]
    assert "birthday" in lines[9]
    assert rep.created == 4 and rep.rows == 9 and rep.n_errors == 5
    assert ms.count() == 5
    m = ms.get(rep.member_ids[2])
    assert m["name"] == "会员0" and m["custom"] == {"colour": "v0"} and m["source"] == "import"
    assert m["tags"] == ["vip", "new"] and m["home_store_id"] == 3
    # The same file again (another chunk size, so no chunk replays): nothing twice.
    again = ms.import_file(path, chunk_rows=3)
    assert again.created == 0 and again.already_imported == 4 and ms.count() == 5
    assert again.member_ids == rep.member_ids
    # Same chunking: the engine replays the chunks.
    third = ms.import_file(path, chunk_rows=2)
    assert third.created == 0 and third.already_imported == 4 and ms.count() == 5
    out = str(tmp_path / "errors.csv")
    rep.write_errors_csv(out)
    with open(out, encoding="utf-8-sig") as f:
        assert [r[0] for r in csv.reader(f)][1:] == ["4", "6", "8", "9", "10"]


def test_gb18030_csv(ms, tmp_path):
    path = tmp_path / "gbk.csv"
    path.write_bytes("姓名,手机号\n王芳,13700000001\n".encode("gb18030"))
    rep = ms.import_file(str(path))
    assert rep.created == 1 and ms.get(1)["name"] == "王芳"


def test_unknown_column_rejects_the_file(ms, tmp_path):
    path = str(tmp_path / "x.csv")
    write_csv(path, ["name", "shoe size"], [["a", "42"]])
    with pytest.raises(MemberError):
        ms.import_file(path)


def test_xlsx_round_trip_and_masked_exports(ms, tmp_path):
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(HEADER + ["证件号"])
    idn = id_no("11010119900307123")
    for r in _good_rows(3):
        ws.append(r + [""])
    ws.append(["Id", 13912345678, "M", "1985-05-05", "", 2, "", idn])
    ws.append(["Bad", "139", "M", "", "", "", "", ""])
    src = str(tmp_path / "in.xlsx")
    wb.save(src)
    rep = ms.import_file(src)
    assert rep.created == 4 and [(e.line, "phone" in e.reason) for e in rep.errors] == [(6, True)]
    assert ms.get(rep.member_ids[5], reveal=True)["id_no"] == idn
    out = str(tmp_path / "out.xlsx")
    assert ms.export(out) == 4
    book = openpyxl.load_workbook(out, read_only=True)
    rows = list(book.worksheets[0].iter_rows(values_only=True))
    book.close()
    head = list(rows[0])
    got = {r[head.index("name")]: r for r in rows[1:]}
    assert got["Id"][head.index("phone")] == "139****5678"
    assert got["Id"][head.index("id_no")] == mask_id_no(idn)
    assert got["会员1"][head.index("tags")] == "vip;new"
    assert got["Id"][head.index("birthday")] == "1985-05-05"
    csv_out = str(tmp_path / "out.csv")
    assert ms.export(csv_out, MemberQuery(store_id=3)) == 3
    with open(csv_out, encoding="utf-8-sig") as f:
        text = f.read()
    assert "13700000001" not in text and "137****0001" in text


def test_chunk_is_atomic_when_the_build_fails(ms, eng, monkeypatch):
    """A failure inside a chunk (here: an exception on the 3rd row) writes none of it."""
    calls = {"n": 0}
    real = ms._write_new

    def flaky(ctx, member_id, prof):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("disk gone")
        return real(ctx, member_id, prof)

    monkeypatch.setattr(ms, "_write_new", flaky)
    rows = [(i + 2, {"name": f"n{i}", "phone": f"137{i:08d}"}) for i in range(5)]
    with pytest.raises(OSError):
        ms.import_rows(rows, file_id="f", chunk_rows=5)
    assert ms.count() == 0 and ms.id_by_phone("13700000000") is None
    monkeypatch.setattr(ms, "_write_new", real)
    assert ms.import_rows(rows, file_id="f", chunk_rows=5).created == 5


def test_blind_index_is_keyed():
    a, b = PiiCipher(KEY), PiiCipher(bytes(32))
    assert a.blind(b"phone", "13800000000") != b.blind(b"phone", "13800000000")
    assert len(a.blind(b"phone", "1")) == 16


def test_search_limits(ms):
    with pytest.raises(MemberError):
        ms.search(MemberQuery(limit=0))
    with pytest.raises(MemberError):
        ms.search(MemberQuery(limit=5000))
    assert ms.search(MemberQuery(tags=["none"])).total == 0


def test_members_db_is_plain_lmdb_readable(ms, eng):
    ms.create({"name": "A", "phone": "13800000001"}, cid())
    env = eng.store.env
    with env.begin() as txn:
        db = env.open_db(b"member_phone", txn=txn, create=False)
        keys = [k for k, _ in txn.cursor(db=db)]
    assert len(keys) == 1 and len(keys[0]) == 16
    assert isinstance(env, lmdb.Environment) and np.uint64(1)
