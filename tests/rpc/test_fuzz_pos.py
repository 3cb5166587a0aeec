"""Hostile values at the POS edge, through the real server on loopback: every method of
PosService (Swipe, SwipeBatch, the SwipeStream, Recharge, the BulkRecharge stream,
GetCard, Refund, UseCount) with a till's valid credentials and well-formed messages
whose values are hypothesis's (edge integers, max int64, negatives, zero, unicode and
long strings, empty or short ids), aimed half the time at the cards that exist (and
columns made the same length) so the calls reach the money code; and the same bodies
with fields duplicated on the wire (a message concatenated with another: protobuf's
merge, repeated columns of different lengths), wrapped in groups nested past the
decoder's limit, or grown past the message bound.

Each answer is OK or a status with an ErrorInfo reason (never UNKNOWN or INTERNAL; the
transport's own RESOURCE_EXHAUSTED for a body past the bound has none to give); a
refusal changes nothing (the journal's last seq, the card count, every card); and after
every call each card's balances stay inside the rules (0 <= principal, bonus, points;
principal + bonus <= max_balance_fen): no int64 wrap on a money path.

The server is the fuzz's own (tests/rpc/test_fuzz_unchecked.py's shape)."""

from __future__ import annotations

import collections
import os

import grpc
import pytest
from fuzz_requests import FORBIDDEN, POS_SERVICE, methods, requests_of
from google.protobuf import message_factory
from google.protobuf.descriptor import FieldDescriptor
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from server.rpc._wire import varint
from test_admin_rpc import Env
from test_hostile_input import CARDS, setup_chain

from core.records import Result
from server.mms_pb import pos_pb2
from server.rpc.constants import MESSAGE_BYTES_MAX

POS = [m for m in methods() if m.service == POS_SERVICE]
EXAMPLES = 60
TIMEOUT_S = 60.0
ID_COLUMNS = ("client_ids",)
# Fields an aimed request leaves unset: the till's store and operator checks, so that
# the values left (amounts, items, coupons, counts, a hostile PIN) reach the money code.
AIM_CLEARED = frozenset({"store_id", "operator_id", "operator_ids", "operator_session"})


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    e = Env(str(tmp_path_factory.mktemp("fuzzpos")))
    setup_chain(e)
    AIM["session"] = e.sessions["mgr11"]
    for no in CARDS:
        sid = os.urandom(16)
        r = e.pos.Swipe(pos_pb2.SwipeRequest(client_id=sid, card_no=no, amount_fen=5_000),
                        metadata=e.till_md, timeout=TIMEOUT_S)
        assert r.result.code == Result.OK, r
        AIM["swipes"][no] = sid
    yield e
    e.close()


def _state(e: Env) -> tuple:
    s = e.engine.stats()
    return s["last_seq"], s["n_cards"], [e.engine.card(no) for no in CARDS]


# What an aimed request may name besides the cards: the manager's session (a refund's
# authorization) and the client id of a swipe made on each card (a refund's target);
# filled in by the env fixture.
AIM: dict = {"session": "", "swipes": {}}


def _aim(msg, card: int) -> None:
    """Point msg (and its sub-messages) at an existing card, with a fresh client id (or
    one per row of a column message, every column as long as card_nos), a refund at a
    swipe made on that card under the manager's session, and the store and operator
    checks left unset: the hostile amounts, items, coupons, counts and PINs reach the
    money code."""
    fields = msg.DESCRIPTOR.fields_by_name
    for f in msg.DESCRIPTOR.fields:
        if f.message_type is not None and not f.message_type.GetOptions().map_entry:
            if f.is_repeated:
                for sub in getattr(msg, f.name):
                    _aim(sub, card)
            else:
                _aim(getattr(msg, f.name), card)      # made present if it was not
            continue
        if f.name == "card_no":
            setattr(msg, f.name, card)
        elif f.name == "client_id":
            msg.client_id = os.urandom(16)
        elif f.name in AIM_CLEARED:
            msg.ClearField(f.name)
    if "swipe_client_id" in fields:
        msg.swipe_client_id = AIM["swipes"][card]
        msg.operator_session = AIM["session"]
    if "card_nos" in fields:
        n = max(1, len(msg.card_nos))
        del msg.card_nos[:]
        msg.card_nos.extend([card] * n)
        for f in msg.DESCRIPTOR.fields:
            if (f.is_repeated and f.type != FieldDescriptor.TYPE_MESSAGE and f.name != "card_nos"
                    and f.name not in AIM_CLEARED):
                col = getattr(msg, f.name)
                vals = list(col) or ([1] if f.type != FieldDescriptor.TYPE_BOOL else [False])
                del col[:]
                col.extend((vals * n)[:n])
        for name in ID_COLUMNS:
            if name in fields:
                setattr(msg, name, os.urandom(16 * n))


def pos_requests(m):
    """Messages of m's request type: hypothesis's values, aimed at an existing card
    (and made column-consistent) half the time."""
    return st.tuples(requests_of(m.request), st.booleans(), st.sampled_from(CARDS)).map(
        lambda t: (_aim(t[0], t[2]) if t[1] else None) or t[0])


_SERVICE = pos_pb2.DESCRIPTOR.services_by_name["PosService"]
# Per-op results that are journalled though the op is refused (a wrong PIN counts
# toward the lockout); every other refusal applies nothing.
JOURNALLED_REFUSALS = frozenset({int(Result.OK), int(Result.PIN_WRONG)})
CODES = collections.Counter()
REASONS = collections.Counter()


def _codes(m, raw: bytes) -> list[int] | None:
    """The per-op result codes of a unary answer (None: a read, no result)."""
    out = message_factory.GetMessageClass(_SERVICE.methods_by_name[m.name].output_type)
    msg = out.FromString(raw)
    if "result" in out.DESCRIPTOR.fields_by_name:
        return [msg.result.code]
    if "results" in out.DESCRIPTOR.fields_by_name:
        return list(msg.results.codes)
    return None


def _call(e: Env, m, bodies: list[bytes]) -> tuple[grpc.StatusCode, bool, list[int] | None]:
    md = e.till_md
    try:
        if m.client_streaming and m.server_streaming:
            for _ in e.channel.stream_stream(m.path)(iter(bodies), metadata=md, timeout=TIMEOUT_S):
                pass
        elif m.client_streaming:
            e.channel.stream_unary(m.path)(iter(bodies), metadata=md, timeout=TIMEOUT_S)
        else:
            raw = e.channel.unary_unary(m.path, response_deserializer=None)(
                bodies[0], metadata=md, timeout=TIMEOUT_S)
            return grpc.StatusCode.OK, True, _codes(m, raw)
    except grpc.RpcError as err:
        got = rpc_status.from_call(err)
        if got is not None and got.details:
            info = error_details_pb2.ErrorInfo()
            got.details[0].Unpack(info)
            REASONS[(m.name, info.reason)] += 1
        return err.code(), got is not None and len(got.details) > 0, None
    return grpc.StatusCode.OK, True, None


def _balances_within_rules(e: Env) -> None:
    top = e.engine.rules.max_balance_fen
    for no in CARDS:
        c = e.engine.card(no)
        assert c["principal_fen"] >= 0 and c["bonus_fen"] >= 0 and c["points"] >= 0, c
        assert c["principal_fen"] + c["bonus_fen"] <= top, c


def _check(e: Env, m, bodies: list[bytes], what: str) -> grpc.StatusCode:
    before = _state(e)
    code, info, codes = _call(e, m, bodies)
    CODES[(m.name, f"status:{code.name}" if code != grpc.StatusCode.OK or not codes
           else f"result:{Result(codes[0]).name}")] += 1
    assert code not in FORBIDDEN, (m.name, what, code, bodies[:1])
    if codes and not JOURNALLED_REFUSALS.intersection(codes):
        assert _state(e) == before, (m.name, what, "refused per op, yet applied", codes)
    if code != grpc.StatusCode.OK:
        assert info or code == grpc.StatusCode.RESOURCE_EXHAUSTED, \
            f"{m.name} ({what}): {code.name} without an ErrorInfo"
        if not m.client_streaming:
            # A stream's earlier messages may have been applied (each is its own batch);
            # a unary refusal applies nothing.
            assert _state(e) == before, (m.name, what, code)
    _balances_within_rules(e)
    return code


@pytest.mark.parametrize("m", POS, ids=lambda m: m.name)
def test_hostile_values_on_every_pos_method(env, m):
    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.filter_too_much])
    @given(msgs=st.lists(pos_requests(m), min_size=1, max_size=3 if m.client_streaming else 1))
    def one(msgs):
        _check(env, m, [x.SerializeToString() for x in msgs], "values")

    one()


@pytest.mark.parametrize("m", POS, ids=lambda m: m.name)
def test_duplicated_fields_on_every_pos_method(env, m):
    """Two messages concatenated are one on the wire (scalars: the last wins; repeated
    columns: appended, so a column message's lengths no longer agree; sub-messages merged)."""
    @settings(max_examples=EXAMPLES // 2, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.filter_too_much])
    @given(a=pos_requests(m), b=pos_requests(m))
    def one(a, b):
        _check(env, m, [a.SerializeToString() + b.SerializeToString()], "duplicated")

    one()


@pytest.mark.parametrize("m", POS, ids=lambda m: m.name)
def test_nested_past_the_limit_and_oversized_bodies(env, m):
    good = m.request()
    if "card_no" in m.request.DESCRIPTOR.fields_by_name:
        good.card_no = CARDS[0]
    # An unknown field 15 as groups nested 5,000 deep (the decoder stops at its
    # recursion limit), after a valid body.
    deep = good.SerializeToString() + b"\x7b" * 5000 + b"\x7c" * 5000
    assert _check(env, m, [deep], "nested") != grpc.StatusCode.OK
    # Past the message bound: the transport refuses it before it is decoded.
    big = good.SerializeToString() + b"\x7a" + varint(MESSAGE_BYTES_MAX) + bytes(MESSAGE_BYTES_MAX)
    assert _check(env, m, [big], "oversized") == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_the_fuzz_covers_every_pos_method():
    names = {m.name for m in POS}
    assert {"Swipe", "SwipeBatch", "SwipeStream", "Recharge", "BulkRecharge", "GetCard",
            "Refund", "UseCount"} <= names


def test_an_aimed_request_reaches_the_money_code(env):
    """The aim works: an aimed recharge of an existing card is applied (so the fuzz's
    checks above see calls that change balances, not only refusals)."""
    msg = pos_pb2.RechargeRequest(client_id=os.urandom(16), amount_fen=100)
    _aim(msg, CARDS[1])
    before = env.engine.card(CARDS[1])["principal_fen"]
    r = env.pos.Recharge(msg, metadata=env.till_md, timeout=TIMEOUT_S)
    assert r.result.code == 1 and env.engine.card(CARDS[1])["principal_fen"] == before + 100


def test_zz_the_fuzz_reached_applied_and_refused_ops():
    """Run last in this module: the fuzz above both applied ops and had them refused
    per op and by status (a check that cannot fail would see only one kind)."""
    seen = {k[1] for k in CODES}
    assert "result:OK" in seen and "status:INVALID_ARGUMENT" in seen, (CODES, REASONS)
    # Refused by the engine's own rules (a unary op's RESULT_* reason), not only by shape.
    assert len({r for _m, r in REASONS if r.startswith("RESULT_")}) >= 3, REASONS
