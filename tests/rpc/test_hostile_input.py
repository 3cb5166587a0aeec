"""Hostile input against the real server on loopback (issue 9): undecodable bodies on
every method, garbage inside streams, hostile admin files and JSON, non-ASCII digits,
credentials checked before data, the login pool and throttle, refusals a client can act
on, and a bounded fuzz of all of it that must leave the state as it was."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

import grpc
import numpy as np
import pytest
from fuzz_requests import FORBIDDEN, Creds, fuzz, methods, undecodable
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from rpc_chain import region_with_stores
from test_admin_rpc import PW, Env, bootstrap, cid

import core.domain.chain
from core import Engine, EngineConfig
from core.records import OP, CardStatus, OpType, Result, split_client_id
from core.rules import JSON_DEPTH_MAX, RULES_JSON_CHARS_MAX
from server.mms_pb import admin_pb2, pos_pb2, types_pb2
from server.rpc.admin.base import UNCHECKED

CARDS = [7001, 7002, 7003]
FUNDED = 50_000


def setup_chain(e: Env) -> None:
    bootstrap(e)
    region_with_stores(e, (11,))
    till = e.call("root", "CreateNode", admin_pb2.CreateNodeRequest(
        client_id=cid(), kind=admin_pb2.NODE_KIND_TERMINAL, parent_id=11, name="till")).node
    tok = e.call("root", "IssueTerminalToken", admin_pb2.IssueTerminalTokenRequest(
        client_id=cid(), terminal_id=till.node_id)).token
    e.till_md = (("authorization", f"Bearer {tok}"),)
    e.call("root", "CreateOperator", admin_pb2.CreateOperatorRequest(
        client_id=cid(), login="mgr11", password=PW, role="store_manager", home_store_id=11))
    e.login("mgr11")
    e.member_id = e.call("mgr11", "CreateMember", admin_pb2.CreateMemberRequest(
        client_id=cid(), profile=admin_pb2.MemberProfile(name="Li", phone="13800000001",
                                                          home_store_id=11))).member_id
    e.call("mgr11", "IssueCards", admin_pb2.IssueCardsRequest(
        client_id=cid(), card_nos=CARDS, member_ids=[e.member_id] * len(CARDS), store_id=11))
    for no in CARDS:
        e.pos.Recharge(pos_pb2.RechargeRequest(client_id=cid(), card_no=no, amount_fen=FUNDED),
                       metadata=e.till_md, timeout=30)


class UncheckedInput(logging.Handler):
    """The warnings of AdminService's last resort (server/rpc/admin/base.py `_failure`):
    bad input that reached code which did not check it."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith(UNCHECKED):
            exc = record.exc_info[1] if record.exc_info else None
            self.seen.append(f"{record.getMessage()}: {exc!r}")


@pytest.fixture(autouse=True)
def no_unchecked_input():
    """Every test here fails if a request's bad input reached unchecked code: each such
    gap is closed with an explicit check (and its reason) where the input enters."""
    h = UncheckedInput()
    logger = logging.getLogger("mms.admin")
    logger.addHandler(h)
    try:
        yield h
    finally:
        logger.removeHandler(h)
    assert not h.seen, h.seen[:5]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    e = Env(str(tmp_path_factory.mktemp("hostile")))
    setup_chain(e)
    yield e
    e.close()


@pytest.fixture
def fresh(tmp_path):
    """A server of its own, for tests that throttle the loopback address."""
    e = Env(str(tmp_path / "data"))
    setup_chain(e)
    yield e
    e.close()


def status(err: grpc.RpcError) -> tuple[grpc.StatusCode, str, dict]:
    st = rpc_status.from_call(err)
    assert st is not None, (err.code(), err.details())
    info = error_details_pb2.ErrorInfo()
    assert st.details[0].Unpack(info)
    return err.code(), info.reason, dict(info.metadata)


def refusal(fn, *args, **kw) -> tuple[grpc.StatusCode, str, dict, str]:
    with pytest.raises(grpc.RpcError) as ei:
        r = fn(*args, **kw)
        if hasattr(r, "__iter__") and not isinstance(r, (bytes, str)):
            list(r)
    return (*status(ei.value), ei.value.details())


def state(e: Env) -> tuple:
    return (e.engine.stats()["last_seq"], e.engine.stats()["n_cards"],
            [e.engine.card(no) for no in CARDS])


@contextlib.contextmanager
def unchanged(e: Env):
    before = state(e)
    yield
    assert state(e) == before


def handled(e: Env, method: str, code: str) -> float:
    for line in e.server.metrics.text().decode().splitlines():
        if (line.startswith("grpc_server_handled_total{") and f'grpc_method="{method}"' in line
                and f'grpc_code="{code}"' in line):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def metric(e: Env, name: str, labels: str = "") -> float:
    for line in e.server.metrics.text().decode().splitlines():
        if line.startswith(name + (("{" + labels + "}") if labels else " ")):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


# --- 1. undecodable bodies --------------------------------------------------------------

def test_undecodable_bodies_are_malformed_request_on_every_method(env, caplog):
    """Every method, with and without credentials (unary calls decode before any token
    check; a stream's messages come after its credentials), answers INVALID_ARGUMENT /
    MALFORMED_REQUEST, counted per method, logged once and never as a traceback."""
    import random

    rng = random.Random(1)
    all_methods = methods()
    assert len(all_methods) >= 54
    before_malformed = metric(env, "mms_malformed_requests_total")
    before = {m.name: handled(env, m.name, "INVALID_ARGUMENT") for m in all_methods}
    caplog.set_level(logging.INFO)
    sent = 0
    with unchanged(env):
        for m in all_methods:
            creds = env.till_md if m.service.endswith("PosService") else env.md("mgr11")
            for md in ((creds,) if m.client_streaming else ((), creds)):
                for _ in range(3):
                    body = undecodable(m.request, rng)
                    if m.client_streaming:
                        call = (env.channel.stream_stream if m.server_streaming
                                else env.channel.stream_unary)(m.path)
                        args = (iter([body]),)
                    else:
                        call = (env.channel.unary_stream if m.server_streaming
                                else env.channel.unary_unary)(m.path)
                        args = (body,)
                    code, reason, meta, details = refusal(call, *args, metadata=md, timeout=30)
                    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT,
                                              "MALFORMED_REQUEST"), (m.name, details)
                    assert meta["message_type"] == m.request.DESCRIPTOR.full_name
                    sent += 1
    for m in all_methods:
        assert handled(env, m.name, "INVALID_ARGUMENT") > before[m.name], m.name
    assert metric(env, "mms_malformed_requests_total") - before_malformed == sent
    mine = [r for r in caplog.records if "undecodable" in r.getMessage()]
    assert len(mine) <= 1 and all(r.exc_info is None for r in mine)
    assert not [r for r in caplog.records if r.exc_info is not None], \
        [r.getMessage() for r in caplog.records if r.exc_info]
    # Health and reflection are behind the same guard.
    code, reason, _, _ = refusal(env.channel.unary_unary("/grpc.health.v1.Health/Check"),
                                 b"\xff\xff", timeout=30)
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "MALFORMED_REQUEST")


# --- 2. garbage inside streams ------------------------------------------------------------

def _columns(nos, amounts) -> types_pb2.SwipeColumns:
    return types_pb2.SwipeColumns(client_ids=os.urandom(16 * len(nos)), card_nos=nos,
                                  amount_fen=amounts)


def test_garbage_inside_swipe_stream_answers_after_the_earlier_batches(env):
    good = pos_pb2.SwipeStreamRequest(batch_id=1, swipes=_columns([CARDS[0]], [100]))
    before = env.engine.card(CARDS[0])["principal_fen"]
    answers = []
    with pytest.raises(grpc.RpcError) as ei:
        for r in env.channel.stream_stream("/mms.v1.PosService/SwipeStream")(
                iter([good.SerializeToString(), b"\x0a\x05ab"]), metadata=env.till_md,
                timeout=30):
            answers.append(pos_pb2.SwipeStreamResponse.FromString(r))
    code, reason, meta = status(ei.value)
    assert (code, reason, meta["message_index"]) == (grpc.StatusCode.INVALID_ARGUMENT,
                                                     "MALFORMED_REQUEST", "1")
    assert [a.batch_id for a in answers] == [1] and list(answers[0].results.codes) == [Result.OK]
    assert env.engine.card(CARDS[0])["principal_fen"] == before - 100


def _varint(v: int) -> bytes:
    v &= 2**64 - 1
    out = bytearray()
    while v >= 0x80:
        out.append(v & 0x7F | 0x80)
        v >>= 7
    return bytes(out + bytes([v]))


def _field(number: int, wire_type: int, body: bytes) -> bytes:
    if wire_type == 2:
        body = _varint(len(body)) + body
    return _varint(number << 3 | wire_type) + body


def test_swipe_batches_in_any_wire_form_are_read_as_protobuf_reads_them(env):
    """SwipeStream and SwipeBatch requests are parsed in C (server/rpc/_wire.pyx): an
    unpacked, split, out-of-order form with unknown fields and a uint32 past 32 bits
    applies as protobuf reads it, and the column checks answer as before."""
    no = CARDS[2]
    before = env.engine.card(no)["principal_fen"]
    ids = os.urandom(32)
    cols = (_field(3, 0, _varint(30)) + _field(2, 0, _varint(no)) + _field(99, 5, b"abcd")
            + _field(1, 2, ids) + _field(4, 0, _varint(2**32 + 7)) + _field(2, 2, _varint(no))
            + _field(20, 3, _field(1, 0, b"\x01") + _varint(20 << 3 | 4))
            + _field(3, 2, _varint(40)) + _field(4, 2, _varint(7)) + _field(2, 5, b"wxyz"))
    stream = _field(7, 1, b"12345678") + _field(2, 2, cols) + _field(1, 0, _varint(41))
    pb = pos_pb2.SwipeStreamRequest.FromString(stream)
    assert list(pb.swipes.card_nos) == [no, no] and list(pb.swipes.category) == [7, 7]
    (r,) = env.channel.stream_stream("/mms.v1.PosService/SwipeStream")(
        iter([stream]), metadata=env.till_md, timeout=30)
    answer = pos_pb2.SwipeStreamResponse.FromString(r)
    assert answer.batch_id == 41 and list(answer.results.codes) == [Result.OK] * 2
    assert env.engine.card(no)["principal_fen"] == before - 70
    # The same bytes as a SwipeBatchRequest (swipes = 1, store_id = 2): a retry of the
    # same client ids, so nothing applies twice.
    batch = _field(1, 2, cols) + _field(2, 0, _varint(2**32 + 11))  # store 11, cut to 32 bits
    r = env.channel.unary_unary("/mms.v1.PosService/SwipeBatch")(
        batch, metadata=env.till_md, timeout=30)
    res = pos_pb2.SwipeBatchResponse.FromString(r).results
    assert list(res.codes) == [Result.OK] * 2 and list(res.replayed) == [True, True]
    assert env.engine.card(no)["principal_fen"] == before - 70
    # The checks of decode_ops, on the C parser's columns, with protobuf's answers.
    with unchanged(env):
        for body, want in (
                (_field(1, 2, ids[:16]) + _field(2, 0, _varint(no)) + _field(3, 0, _varint(5))
                 + _field(4, 0, _varint(2**32 + 65536)), "VALUE_OUT_OF_RANGE"),
                (_field(1, 2, ids) + _field(2, 0, _varint(no)) + _field(3, 0, _varint(5)),
                 "CLIENT_IDS_LENGTH"),
                (_field(1, 2, ids[:16]) + _field(2, 0, _varint(no)), "COLUMN_LENGTH"),
                (b"", "BATCH_SIZE")):
            code, reason, _, _ = refusal(env.channel.unary_unary("/mms.v1.PosService/SwipeBatch"),
                                         _field(1, 2, body), metadata=env.till_md, timeout=30)
            assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, want)
        code, reason, _, _ = refusal(env.channel.unary_unary("/mms.v1.PosService/SwipeBatch"),
                                     _field(1, 2, cols) + _field(2, 0, _varint(12)),
                                     metadata=env.till_md, timeout=30)
        assert (code, reason) == (grpc.StatusCode.PERMISSION_DENIED, "STORE_MISMATCH")


def test_garbage_inside_bulk_recharge_answers_once_the_earlier_chunks_are_durable(env):
    chunk = pos_pb2.BulkRechargeRequest(client_ids=os.urandom(16), card_nos=[CARDS[1]],
                                        amount_fen=[700], line_numbers=[1])
    before = env.engine.card(CARDS[1])["principal_fen"]
    seq = env.engine.stats()["last_seq"]
    code, reason, meta, _ = refusal(
        env.channel.stream_unary("/mms.v1.PosService/BulkRecharge"),
        iter([chunk.SerializeToString(), b"\xff\xff\xff"]), metadata=env.till_md, timeout=30)
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "MALFORMED_REQUEST")
    assert meta["chunk_index"] == "1" and meta["message_index"] == "1"
    # Answered only after chunk 0 committed: the engine's durable state already has it.
    assert env.engine.card(CARDS[1])["principal_fen"] == before + 700
    assert env.engine.stats()["last_seq"] == seq + 1


# --- 3. admin inputs ----------------------------------------------------------------------

PYTHON_INTERNALS = ("object is not iterable", "positional argument", "is not a valid",
                    "codec", "Traceback", "Error(", "object has no attribute")


def _import(env, name: str, data: bytes):
    msgs = [admin_pb2.ImportMembersRequest(file_name=name),
            admin_pb2.ImportMembersRequest(chunk=data)]
    return env.admin.ImportMembers(iter(msgs), metadata=env.md("mgr11"), timeout=30)


@pytest.mark.parametrize("name, data, words", [
    ("members.xlsx", b"name,phone\nLi,13800000002\n", "not an Excel workbook"),
    ("members.xlsx", b"PK\x03\x04" + bytes(200), "not an Excel workbook"),
    ("members.csv", b"name,phone\n\xff\xfe\xfd,13800000003\n", "neither UTF-8 nor GB18030"),
    ("members.csv", "name," + ",".join(f"custom_{i}" for i in range(300)) + "\nLi\n",
     "columns"),
    ("members.csv", b"name,phone\n\"" + b"x" * 200_000 + b"\",13800000004\n", "longer than"),
    ("members.csv", b"name,phone\nLi,13800000005\n" + b"x" * (3 << 20) + b"\nHan,13800000006\n",
     "line 3: a line is longer than 1048576 characters"),
], ids=["csv-named-xlsx", "broken-zip", "unknown-encoding", "too-many-columns", "huge-cell",
        "huge-line"])
def test_bad_import_files_are_file_invalid(env, name, data, words):
    data = data.encode() if isinstance(data, str) else data
    with unchanged(env):
        code, reason, meta, details = refusal(_import, env, name, data)
    assert (code, reason, meta.get("field")) == (grpc.StatusCode.INVALID_ARGUMENT,
                                                 "MEMBER_FILE_INVALID", "file")
    assert words in details and not any(w in details for w in PYTHON_INTERNALS), details


def test_an_xlsx_that_unpacks_past_the_bound_is_refused_unread(env, monkeypatch):
    import io
    import zipfile

    import core.domain.members.files

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("xl/worksheets/sheet1.xml", b"<x/>" * 100_000)
    monkeypatch.setattr(core.domain.members.files, "XLSX_UNPACKED_BYTES_MAX", 100_000)
    with unchanged(env):
        code, reason, _, details = refusal(_import, env, "big.xlsx", buf.getvalue())
    assert reason == "MEMBER_FILE_INVALID" and "unpacks to 400000 bytes" in details


@pytest.mark.parametrize("doc, words", [
    ("", "longer than"),
    ('{"levels": ' + "[" * 5_000 + "]" * 5_000 + "}", "nests deeper"),
    ('{"levels": ' + "[" * (JSON_DEPTH_MAX + 1) + "]" * (JSON_DEPTH_MAX + 1) + "}",
     "nests deeper"),
    ('{"levels": 5}', "levels must be a list"),
    ('{"tiers": [{"points": 1}]}', "tiers[0]: missing fields ['min_pay_fen', 'bonus_fen']"),
    ('{"tiers": [7]}', "tiers[0] must be an object"),
    ('{"coupon_templates": [{"template_id": 1, "name": "x", "kind": 1, "stores": 3}]}',
     "coupon_templates[0].stores must be a list"),
    ('{"category_points_mult_bp": [[1]]}', "category_points_mult_bp[0] must be a list of 2"),
    ('{"member_prices": [5]}', "member_prices[0] must be [sku"),
    ("{", "not valid JSON at character 1"),
], ids=["too-long", "deep", "just-too-deep", "not-list", "missing", "not-object", "ints",
        "pairs", "prices", "broken"])
def test_set_rules_refuses_with_the_field_and_the_rule(env, doc, words):
    doc = doc if words != "longer than" else "[" * RULES_JSON_CHARS_MAX + "]"
    version = env.engine.rules.version
    with unchanged(env):
        code, reason, _, details = refusal(env.call, "root", "SetRules",
                                           admin_pb2.SetRulesRequest(client_id=cid(),
                                                                     rules_json=doc))
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "RULES_INVALID"), details
    assert words in details and not any(w in details for w in PYTHON_INTERNALS), details
    assert env.engine.rules.version == version


# --- 4. digits ------------------------------------------------------------------------------

@pytest.mark.parametrize("pin", ["¹²³⁴", "١٢٣٤", "１２３４", "۱۲۳۴", "1234\n", "12 34"])
def test_set_pin_takes_ascii_digits_only(env, pin):
    with unchanged(env):
        code, reason, meta, details = refusal(env.call, "mgr11", "SetPin", admin_pb2.SetPinRequest(
            client_id=cid(), card_no=CARDS[2], pin=pin))
    assert (code, reason, meta["field"]) == (grpc.StatusCode.INVALID_ARGUMENT, "PIN_INVALID",
                                             "pin")
    # The till refuses the same strings, the same way.
    code, reason, meta, _ = refusal(env.pos.Swipe, pos_pb2.SwipeRequest(
        client_id=cid(), card_no=CARDS[2], amount_fen=1, pin=pin), metadata=env.till_md,
        timeout=30)
    assert (code, reason, meta["field"]) == (grpc.StatusCode.INVALID_ARGUMENT, "PIN_MALFORMED",
                                             "pin")


def test_import_takes_ascii_digits_only(env):
    rows = "name,phone,referrer_id\nWang,13800000011,１\nZhao,13800000012,١\n"
    r = _import(env, "digits.csv", rows.encode())
    assert r.created == 0 and r.errors == 2
    assert all("digits 0-9" in e.reason for e in r.row_errors), list(r.row_errors)


def test_engine_refuses_a_non_ascii_pin_at_its_edge(env):
    with unchanged(env):
        with pytest.raises(ValueError):
            env.engine.set_pin(CARDS[2], "١٢٣٤", cid())


class _Gate:
    """A clock that stops the writer in its next clock() call until opened."""

    def __init__(self) -> None:
        self.open = threading.Event()
        self.open.set()
        self.waiting = threading.Event()

    def __call__(self) -> int:
        if not self.open.is_set():
            self.waiting.set()
        assert self.open.wait(60)
        return 1_700_000_000


def test_an_admin_op_failing_in_the_writer_never_fails_its_neighbours(tmp_path):
    """Hot ops, a good admin op and one whose build raises, all queued together while
    the writer is held: only the raising one fails, and it leaves nothing behind."""
    gate = _Gate()
    e = Engine(str(tmp_path / "env"), config=EngineConfig(batch_ops_max=16, queue_ops_max=64),
               clock=gate)
    try:
        assert e.issue_cards([1, 2], cid()).result().code == Result.OK
        assert e.recharge(1, 10_000, cid()).result().codes[0] == Result.OK
        gate.open.clear()
        held = e.recharge(2, 1, cid())
        assert gate.waiting.wait(30)

        def boom(ctx):
            ctx.emit(OpType.SET_STATUS, ctx.card(1))
            raise RuntimeError("a bug inside an admin op")

        def swipe(no: int, fen: int):
            ops = np.zeros(1, dtype=OP)
            ops["client_hi"], ops["client_lo"] = split_client_id(cid())
            ops["card_no"], ops["amount_fen"], ops["op_type"] = no, fen, OpType.SWIPE
            return e.submit(ops)

        before = swipe(1, 100)
        bad = e.admin(cid(), OpType.SET_STATUS, boom)
        good = e.set_card_status(2, CardStatus.FROZEN, cid())
        after = swipe(1, 200)
        gate.open.set()
        assert held.result(30).codes[0] == Result.OK
        assert before.result(30).codes[0] == Result.OK
        with pytest.raises(RuntimeError):
            bad.result(30)
        assert good.result(30).code == Result.OK
        assert after.result(30).codes[0] == Result.OK
        assert e.card(1)["principal_fen"] == 10_000 - 300
        assert e.card(1)["status"] == CardStatus.ACTIVE and e.card(2)["status"] == CardStatus.FROZEN
        seqs = [int(r["seq"]) for r in e.journal(1, 100)]
        assert seqs == list(range(1, len(seqs) + 1))  # no gap, no record of the failed op
    finally:
        gate.open.set()
        e.close()


# --- 5. credentials before data ---------------------------------------------------------------

@pytest.mark.parametrize("md", [(), (("authorization", "Bearer nope"),)], ids=["none", "unknown"])
def test_no_token_learns_nothing_about_cards_and_members(env, md):
    def answer(method, req):
        code, reason, _, _ = refusal(getattr(env.admin, method), req, metadata=md, timeout=30)
        return code, reason

    unauth = (grpc.StatusCode.UNAUTHENTICATED, "SESSION_INVALID")
    for method, make in (
        ("GetMember", lambda x: admin_pb2.GetMemberRequest(member_id=x)),
        ("UpdateMember", lambda x: admin_pb2.UpdateMemberRequest(client_id=cid(), member_id=x,
                                                                fields=["name"])),
    ):
        assert answer(method, make(env.member_id)) == answer(method, make(999_999)) == unauth
    for method, make in (
        ("SetPin", lambda no: admin_pb2.SetPinRequest(client_id=cid(), card_no=no, pin="1234")),
        ("GetCardJournal", lambda no: admin_pb2.GetCardJournalRequest(card_no=no)),
        ("LevelHistory", lambda no: admin_pb2.LevelHistoryRequest(card_no=no)),
        ("AdjustPoints", lambda no: admin_pb2.AdjustPointsRequest(client_id=cid(), card_no=no,
                                                                 delta=1, reason="x")),
        ("ListCardCoupons", lambda no: admin_pb2.ListCardCouponsRequest(card_no=no)),
    ):
        assert answer(method, make(CARDS[0])) == answer(method, make(99_999_999)) == unauth
    # The legacy calls take a terminal or a session; neither is there.
    assert answer("SetCardStatus", admin_pb2.SetCardStatusRequest(
        client_id=cid(), card_no=99_999_999, status=2))[0] == grpc.StatusCode.UNAUTHENTICATED
    # A client id of the wrong length is not looked at before the credentials.
    assert answer("SetPin", admin_pb2.SetPinRequest(client_id=b"x", card_no=CARDS[0],
                                                   pin="1234")) == unauth
    assert answer("CreateMember", admin_pb2.CreateMemberRequest(client_id=b"")) == unauth


# --- 6. logins --------------------------------------------------------------------------------

class _Scrypts:
    """core.domain.chain._scrypt, counted, and held at a gate while closed."""

    def __init__(self, real) -> None:
        self.real = real
        self.calls = 0
        self.inside = threading.Semaphore(0)
        self.open = threading.Event()
        self.open.set()

    def __call__(self, *a, **kw):
        self.calls += 1
        if not self.open.is_set():
            self.inside.release()
            assert self.open.wait(60), "the test never opened the gate"
        return self.real(*a, **kw)


def test_logins_hash_on_their_own_bounded_pool(env, monkeypatch):
    """24 logins held inside scrypt take the password pool (PASSWORD_HASH_WORKERS
    threads), not the workers of other admin calls: a member search still answers.
    Logins past the pending bound are refused at once with LOGIN_BUSY."""
    gate = env.server.admin.logins
    scrypts = _Scrypts(core.domain.chain._scrypt)
    monkeypatch.setattr(core.domain.chain, "_scrypt", scrypts)
    monkeypatch.setattr(gate, "pending_max", 8)
    scrypts.open.clear()
    workers = gate.pool._max_workers
    with ThreadPoolExecutor(24) as pool:
        futs = [pool.submit(refusal, env.admin.Login,
                            admin_pb2.LoginRequest(login=f"nobody{i}", password="password-x"),
                            timeout=60) for i in range(24)]
        for _ in range(workers):
            assert scrypts.inside.acquire(timeout=30), "no login reached scrypt"
        r = env.call("mgr11", "SearchMembers", admin_pb2.SearchMembersRequest(name="Li"))
        assert r.total >= 1
        # The 8 admitted logins cannot finish while the gate is shut; the others are
        # refused as they arrive. Wait for those refusals before opening.
        done: set = set()
        while len(done) < 24 - 8:
            more, _ = wait([f for f in futs if f not in done], timeout=60,
                           return_when=FIRST_COMPLETED)
            assert more, "the refusals never came"
            done |= more
        assert len(done) == 24 - 8
        scrypts.open.set()
        reasons = sorted(f.result()[1] for f in futs)
    assert reasons.count("LOGIN_BUSY") == 24 - 8
    assert reasons.count("LOGIN_FAILED") == 8


def test_failed_logins_are_throttled_alike_for_known_and_unknown_names(fresh, monkeypatch):
    fresh.call("root", "CreateOperator", admin_pb2.CreateOperatorRequest(
        client_id=cid(), login="victim", password=PW, role="cashier", home_store_id=11))
    scrypts = _Scrypts(core.domain.chain._scrypt)
    monkeypatch.setattr(core.domain.chain, "_scrypt", scrypts)
    limit = fresh.chain.config.login_failures_max
    answers = {}
    hashes = {}
    for name in ("victim", "nobody-at-all"):
        scrypts.calls = 0
        seen = []
        for _ in range(limit + 2):
            code, reason, meta, _ = refusal(fresh.admin.Login, admin_pb2.LoginRequest(
                login=name, password="wrong-password"), timeout=30)
            seen.append((code, reason, meta.get("scope")))
        answers[name], hashes[name] = seen, scrypts.calls
    assert answers["victim"] == answers["nobody-at-all"]
    fail = (grpc.StatusCode.UNAUTHENTICATED, "LOGIN_FAILED", None)
    throttled = (grpc.StatusCode.UNAUTHENTICATED, "LOGIN_THROTTLED", "login")
    assert answers["victim"] == [fail] * (limit - 1) + [throttled] * 3
    # One hash per attempt until the throttle, none after: the same work either way.
    assert hashes["victim"] == hashes["nobody-at-all"] == limit
    assert metric(fresh, "mms_login_throttled_total", 'scope="login"') == 6
    # The right password of the throttled login is refused too until the window ends.
    code, reason, meta, _ = refusal(fresh.admin.Login, admin_pb2.LoginRequest(
        login="victim", password=PW), timeout=30)
    assert reason == "LOGIN_THROTTLED" and int(meta["retry_after_s"]) > 0


def test_failed_logins_are_throttled_per_address(fresh):
    from server.rpc.auth import LOGIN_PEER_FAILURES_MAX

    for i in range(LOGIN_PEER_FAILURES_MAX - 1):
        assert refusal(fresh.admin.Login, admin_pb2.LoginRequest(
            login=f"guess{i}", password="wrong-password"), timeout=30)[1] == "LOGIN_FAILED"
    code, reason, meta, _ = refusal(fresh.admin.Login, admin_pb2.LoginRequest(
        login="guess-last", password="wrong-password"), timeout=30)
    assert (reason, meta["scope"]) == ("LOGIN_THROTTLED", "peer")
    # Now even root, from this address, waits: nothing is hashed for it.
    code, reason, meta, _ = refusal(fresh.admin.Login, admin_pb2.LoginRequest(
        login="root", password=PW), timeout=30)
    assert (reason, meta["scope"]) == ("LOGIN_THROTTLED", "peer")
    assert metric(fresh, "mms_login_throttled_total", 'scope="peer"') == 2
    # Sessions already open are not affected.
    assert fresh.call("root", "ListNodes", admin_pb2.ListNodesRequest()).nodes


# --- 7. refusals a client developer can act on -------------------------------------------------

def test_a_refusal_quoting_a_long_value_still_reaches_the_client(env):
    """A refusal's message and metadata are cut to their bounds: one that quoted a
    5,000-character run id went past the client's 8 KiB of trailers, which it then
    answered RESOURCE_EXHAUSTED, without the ErrorInfo."""
    from server.mms_pb import campaign_pb2, campaign_pb2_grpc
    from server.rpc.constants import ERROR_MESSAGE_BYTES_MAX

    stub = campaign_pb2_grpc.CampaignServiceStub(env.channel)
    code, reason, _, details = refusal(stub.GetRun, campaign_pb2.GetRunRequest(
        run_id="字" * 5_000), metadata=env.md("root"), timeout=30)
    assert code == grpc.StatusCode.NOT_FOUND and reason
    assert details.endswith("\u2026") and len(details.encode()) <= ERROR_MESSAGE_BYTES_MAX


def test_refusals_name_the_field_and_the_rule(env, monkeypatch):
    code, reason, meta, details = refusal(env.call, "root", "ListNodes",
                                          admin_pb2.ListNodesRequest(kind=99))
    assert (reason, meta["field"]) == ("VALUE_OUT_OF_RANGE", "kind")
    assert "99 is not a node kind" in details and "NodeKind" not in details
    code, reason, _, details = refusal(env.call, "root", "CreateNode", admin_pb2.CreateNodeRequest(
        client_id=cid(), kind=99, parent_id=1, name="x"))
    assert reason == "BAD_INPUT" and "kind: 99 is not a node kind" in details
    for who, method, req, maximum in (
        ("root", "AuditLog", admin_pb2.AuditLogRequest(limit=5_000), "1000"),
        ("mgr11", "SearchMembers", admin_pb2.SearchMembersRequest(limit=5_000), "1000"),
        ("mgr11", "GetCardJournal", admin_pb2.GetCardJournalRequest(card_no=CARDS[0],
                                                                    limit=5_000), "1000"),
    ):
        code, reason, meta, details = refusal(env.call, who, method, req)
        assert (code, reason, meta["field"], meta["limit_max"]) == (
            grpc.StatusCode.INVALID_ARGUMENT, "LIMIT_INVALID", "limit", maximum), method
    assert len(env.call("root", "AuditLog", admin_pb2.AuditLogRequest(limit=1000)).events) >= 1
    code, reason, meta, _ = refusal(env.call, "root", "AuditLog",
                                    admin_pb2.AuditLogRequest(since_seq=2**64 - 1))
    assert (reason, meta["field"]) == ("VALUE_OUT_OF_RANGE", "since_seq")


def test_a_self_referral_is_a_self_referral(env):
    code, reason, meta, details = refusal(env.call, "mgr11", "UpdateMember",
                                          admin_pb2.UpdateMemberRequest(
        client_id=cid(), member_id=env.member_id, fields=["referrer_id"],
        profile=admin_pb2.MemberProfile(referrer_id=env.member_id)))
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "MEMBER_SELF_REFERRAL"), details
    nxt = env.call("mgr11", "CreateMember", admin_pb2.CreateMemberRequest(
        client_id=cid(), profile=admin_pb2.MemberProfile(name="Zhou"))).member_id + 1
    code, reason, _, details = refusal(env.call, "mgr11", "CreateMember",
                                       admin_pb2.CreateMemberRequest(
        client_id=cid(), profile=admin_pb2.MemberProfile(name="Sun", referrer_id=nxt)))
    assert reason == "MEMBER_SELF_REFERRAL", details
    code, reason, _, _ = refusal(env.call, "mgr11", "UpdateMember", admin_pb2.UpdateMemberRequest(
        client_id=cid(), member_id=env.member_id, fields=["referrer_id"],
        profile=admin_pb2.MemberProfile(referrer_id=999_999)))
    assert reason == "MEMBER_REFERRER_NOT_FOUND"


def test_internal_errors_promise_a_retry_only_where_one_can_tell(env, monkeypatch):
    def broken(*a, **kw):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(env.engine, "card", broken)
    code, reason, _, details = refusal(env.pos.GetCard, pos_pb2.GetCardRequest(card_no=CARDS[0]),
                                       metadata=env.till_md, timeout=30)
    assert code == grpc.StatusCode.INTERNAL and "client ids" not in details
    code, reason, _, details = refusal(env.call, "mgr11", "SetPin", admin_pb2.SetPinRequest(
        client_id=cid(), card_no=CARDS[0], pin="1234"))
    assert code == grpc.StatusCode.INTERNAL and "retry with the same client ids" in details


# --- 8. the fuzz -------------------------------------------------------------------------------

FUZZ_REQUESTS = 3_000


def test_fuzz_every_method_changes_nothing_and_never_fails_internally(env):
    forbidden = []
    with unchanged(env):
        counts = fuzz(env.channel, Creds(env.till_md, env.md("root")), FUZZ_REQUESTS, seed=9,
                      on_forbidden=lambda *a: forbidden.append(a[:2] + a[-1:]))
    assert not forbidden, forbidden[:10]
    assert sum(counts.values()) == FUZZ_REQUESTS
    assert not set(counts) & {c.name for c in FORBIDDEN}
    assert counts["INVALID_ARGUMENT"] > FUZZ_REQUESTS // 4 and counts["UNAUTHENTICATED"] > 0
    # Still serving, for reads and for changes.
    assert env.pos.GetCard(pos_pb2.GetCardRequest(card_no=CARDS[0]), metadata=env.till_md,
                           timeout=30).card.card_no == CARDS[0]
    r = env.pos.Swipe(pos_pb2.SwipeRequest(client_id=cid(), card_no=CARDS[0], amount_fen=1),
                      metadata=env.till_md, timeout=30)
    assert r.result.code == Result.OK
