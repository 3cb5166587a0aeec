"""Bad input: every kind gets its own result code (or a clear exception at the API edge)
and leaves the state as it was: the card table, the journal's last seq, the card count."""

from __future__ import annotations

import contextlib
import threading

import numpy as np
import pytest
from harness import FastPath, blank_card, make_op, ops_array

from core import (
    Engine,
    EngineClosed,
    EngineConfig,
    LevelRule,
    Overloaded,
    RulesConfig,
    RulesError,
    _fastpath,
)
from core.records import OP, CardStatus, OpFlag, OpType, Result, join_client_id, split_client_id

NOW = 1_700_000_000
INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)
CARDS = (1, 2, 3)
FUNDED_FEN = 100_000
RULES = RulesConfig(max_amount_fen=1_000_000, max_balance_fen=10_000_000)


class Clock:
    """A settable clock; close() makes the writer wait in it (to fill the queue)."""

    def __init__(self) -> None:
        self.now = NOW
        self.gate = threading.Event()
        self.gate.set()
        self.waiting = threading.Event()

    def __call__(self) -> int:
        if not self.gate.is_set():
            self.waiting.set()
        self.gate.wait()
        return self.now


_ids = iter(range(1, 10**9))


def cid() -> bytes:
    """A fresh client id."""
    return join_client_id(0xB0, next(_ids))


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def eng(tmp_path, clock):
    e = Engine(str(tmp_path / "env"), config=EngineConfig(batch_ops_max=16, queue_ops_max=64),
               rules=RULES, clock=clock)
    assert e.issue_cards(list(CARDS), cid(), expires_at_s=NOW + 1_000).result().code == Result.OK
    assert e.recharge(1, FUNDED_FEN, cid()).result().codes[0] == Result.OK
    yield e
    clock.gate.set()
    e.close()


def state(e: Engine) -> tuple:
    stats = e.stats()
    return ({no: e.card(no) for no in CARDS}, stats["last_seq"], stats["n_cards"],
            len(e.journal(1, 10**6)))


@contextlib.contextmanager
def unchanged(e: Engine):
    before = state(e)
    yield
    assert state(e) == before


def one(e: Engine, op_type: int, card_no: int, amount_fen: int, client_id: bytes | None = None,
        flags: int = 0) -> tuple[int, int, int]:
    hi, lo = split_client_id(client_id or cid())
    ops = ops_array([make_op((hi, lo), card_no, amount_fen, op_type, op_flags=flags)])
    res = e.submit(ops).result()
    return int(res.codes[0]), int(res.replayed[0]), int(res.seq[0])


SWIPE, RECHARGE = int(OpType.SWIPE), int(OpType.RECHARGE)


# --- cards -------------------------------------------------------------------------------


@pytest.mark.parametrize("op_type", [SWIPE, RECHARGE])
def test_unknown_card(eng, op_type):
    with unchanged(eng):
        assert one(eng, op_type, 999, 100) == (Result.CARD_NOT_FOUND, 0, 0)
        assert one(eng, op_type, 2**64 - 1, 100) == (Result.CARD_NOT_FOUND, 0, 0)
        assert one(eng, op_type, 0, 100) == (Result.CARD_NO_INVALID, 0, 0)


@pytest.mark.parametrize("status, code", [
    (CardStatus.LOST, Result.CARD_LOST), (CardStatus.FROZEN, Result.CARD_FROZEN),
    (CardStatus.DORMANT, Result.CARD_DORMANT), (CardStatus.CANCELLED, Result.CARD_CANCELLED),
])
def test_inactive_card(eng, status, code):
    assert eng.set_card_status(1, status, cid()).result().code == Result.OK
    with unchanged(eng):
        for op_type in (SWIPE, RECHARGE):
            assert one(eng, op_type, 1, 100) == (code, 0, 0)
            # Paying outside stored value does not get past the status either.
            assert one(eng, op_type, 1, 100, flags=OpFlag.PAY_EXTERNAL) == (code, 0, 0)


def test_expired_card(eng, clock):
    clock.now = NOW + 999
    assert one(eng, SWIPE, 1, 100)[0] == Result.OK
    clock.now = NOW + 1_000  # expires_at_s is the first second it is no longer valid
    with unchanged(eng):
        assert one(eng, SWIPE, 1, 100) == (Result.CARD_EXPIRED, 0, 0)
        assert one(eng, RECHARGE, 1, 100) == (Result.CARD_EXPIRED, 0, 0)


# --- amounts -----------------------------------------------------------------------------


@pytest.mark.parametrize("op_type", [SWIPE, RECHARGE])
@pytest.mark.parametrize("amount, code", [
    (0, Result.AMOUNT_NOT_POSITIVE), (-1, Result.AMOUNT_NOT_POSITIVE),
    (INT64_MIN, Result.AMOUNT_NOT_POSITIVE),
    (RULES.max_amount_fen + 1, Result.AMOUNT_TOO_LARGE), (INT64_MAX, Result.AMOUNT_TOO_LARGE),
    (INT64_MAX // 10_000 + 1, Result.AMOUNT_TOO_LARGE),  # amount * discount_bp would wrap
])
def test_bad_amounts(eng, op_type, amount, code):
    with unchanged(eng):
        assert one(eng, op_type, 1, amount) == (code, 0, 0)


def test_amount_at_the_maximum_is_accepted(eng):
    assert one(eng, RECHARGE, 2, RULES.max_amount_fen)[0] == Result.OK


def test_insufficient_balance(eng):
    with unchanged(eng):
        assert one(eng, SWIPE, 2, 1) == (Result.INSUFFICIENT_BALANCE, 0, 0)
        assert one(eng, SWIPE, 1, FUNDED_FEN + 1) == (Result.INSUFFICIENT_BALANCE, 0, 0)


def test_balance_limit(eng):
    room = RULES.max_balance_fen - FUNDED_FEN
    with unchanged(eng):
        assert one(eng, RECHARGE, 1, room + 1) == (Result.AMOUNT_TOO_LARGE, 0, 0)
    full, rest = divmod(room, RULES.max_amount_fen)
    for amount in [RULES.max_amount_fen] * full + [rest]:
        assert one(eng, RECHARGE, 1, amount)[0] == Result.OK
    assert eng.card(1)["principal_fen"] == RULES.max_balance_fen
    with unchanged(eng):
        assert one(eng, RECHARGE, 1, 1) == (Result.BALANCE_LIMIT, 0, 0)


@pytest.mark.parametrize("kwargs", [
    {"card_no": -1}, {"card_no": 2**64}, {"amount_fen": 2**63}, {"amount_fen": -(2**63) - 1},
    {"store_id": 2**32}, {"category": 65_536}, {"category": -1},
])
def test_values_that_do_not_fit_are_refused_at_the_edge(eng, kwargs):
    args = {"card_no": 1, "amount_fen": 100, **kwargs}
    with unchanged(eng):
        with pytest.raises(OverflowError):
            eng.swipe(args.pop("card_no"), args.pop("amount_fen"), cid(), **args)
        assert eng.stats()["queue_ops"] == 0


# Counters close to the int64 limit cannot be reached through the engine in a test's
# lifetime, so the fast path is driven directly with a crafted card table.
@pytest.mark.parametrize("field, op_type, fits_fen", [
    ("points", SWIPE, 100), ("period_points", SWIPE, 100), ("spend_total_fen", SWIPE, 1),
    ("period_spend_fen", SWIPE, 1), ("points", RECHARGE, 100), ("period_points", RECHARGE, 100),
    ("recharge_total_fen", RECHARGE, 1), ("period_recharge_fen", RECHARGE, 1),
])
def test_counters_that_would_overflow_int64(field, op_type, fits_fen):
    rules = RulesConfig(recharge_points_per_yuan_bp=10_000)
    card = blank_card(1, principal_fen=10**6, **{field: INT64_MAX - 5})
    fast = FastPath([card])
    got, recs, _, _ = fast.apply([make_op(1, 1, 10_000, op_type)], rules.compile(), NOW)
    assert got == [(Result.BALANCE_LIMIT, 0, 0)] and recs == []
    assert fast.card(1) == card
    # One that adds exactly 1 and stays inside the limit still applies.
    got, _, _, _ = fast.apply([make_op(2, 1, fits_fen, op_type)], rules.compile(), NOW)
    assert got[0][0] == Result.OK and fast.card(1)[field] == INT64_MAX - 4


# --- client ids --------------------------------------------------------------------------


def test_zero_client_id(eng):
    with unchanged(eng):
        assert one(eng, SWIPE, 1, 100, bytes(16)) == (Result.CLIENT_ID_INVALID, 0, 0)


def test_zero_client_id_of_an_admin_op_is_refused_before_it_commits(eng):
    """The all-zero id is the id index's empty key: an admin op that carried it used to
    commit, then fail to claim its id, so the writer published nothing after it (every
    later op failed, "publish of seqs ... after ...")."""
    with unchanged(eng):
        with pytest.raises(ValueError, match="all zero"):
            eng.issue_cards([9], bytes(16))
        with pytest.raises(ValueError, match="all zero"):
            eng.set_card_status(1, CardStatus.FROZEN, bytes(16))
    assert eng.issue_cards([9], cid()).result().code == Result.OK
    assert one(eng, SWIPE, 1, 100)[0] == Result.OK


@pytest.mark.parametrize("bad", [b"", bytes(15), bytes(17), "0" * 16, None])
def test_malformed_client_id(eng, bad):
    with unchanged(eng):
        with pytest.raises(ValueError):
            eng.swipe(1, 100, bad)
        with pytest.raises(ValueError):
            eng.issue_cards([9], bad)
        with pytest.raises(ValueError):
            eng.set_card_status(1, CardStatus.FROZEN, bad)


def test_duplicate_id_in_one_batch(eng):
    dup = split_client_id(cid())
    ops = ops_array([make_op(dup, 1, 1_000 + i, SWIPE) for i in range(3)])
    last = eng.stats()["last_seq"]
    res = eng.submit(ops).result()
    assert res.codes.tolist() == [Result.OK] * 3
    assert res.replayed.tolist() == [0, 1, 1]
    assert res.seq.tolist() == [last + 1] * 3
    assert eng.stats()["last_seq"] == last + 1
    assert eng.card(1)["principal_fen"] == FUNDED_FEN - 1_000
    assert res.columns()["amount_fen"].tolist() == [1_000] * 3  # the first op's record


def test_duplicate_id_across_batches_and_restart(tmp_path, eng, clock):
    dup = cid()
    first = one(eng, SWIPE, 1, 700, dup)
    assert first[:2] == (Result.OK, 0)
    with unchanged(eng):
        assert one(eng, SWIPE, 1, 700, dup) == (Result.OK, 1, first[2])
        assert one(eng, RECHARGE, 2, 5, dup) == (Result.OK, 1, first[2])  # any op, any card
    eng.close()
    again = Engine(str(tmp_path / "env"), config=EngineConfig(batch_ops_max=16, queue_ops_max=64),
                   clock=clock)
    try:
        with unchanged(again):
            assert one(again, SWIPE, 1, 700, dup) == (Result.OK, 1, first[2])
    finally:
        again.close()


def test_rejected_op_does_not_consume_its_id(eng):
    retry = cid()
    with unchanged(eng):
        assert one(eng, SWIPE, 2, 500, retry) == (Result.INSUFFICIENT_BALANCE, 0, 0)
    assert one(eng, RECHARGE, 2, 500, cid())[0] == Result.OK
    code, replayed, _ = one(eng, SWIPE, 2, 500, retry)
    assert (code, replayed) == (Result.OK, 0)
    assert eng.card(2)["principal_fen"] == 0


def test_admin_replay_applies_nothing(eng):
    issue = cid()
    res = eng.issue_cards([50], issue).result()
    assert res.code == Result.OK and not res.replayed
    with unchanged(eng):
        again = eng.issue_cards([51, 52], issue).result()
        assert again.replayed and again.code == Result.OK and again.seq == res.seq
        assert eng.card(51) is None
        # A hot op reusing an admin op's id is a replay of that op too.
        assert one(eng, SWIPE, 1, 100, issue) == (Result.OK, 1, res.seq)


# --- op types and batches ----------------------------------------------------------------


# Record types that only the engine writes (coupon records, admin ops) are not ops a
# client may send.
@pytest.mark.parametrize("op_type", [0, 9, OpType.COUPON_REDEEM, OpType.COUPON_RESTORE,
                                     OpType.ISSUE, OpType.SET_STATUS, OpType.ADJUST,
                                     OpType.SET_RULES, OpType.SET_PIN, OpType.EXPIRE_POINTS,
                                     OpType.POINTS_REMINDER, OpType.COUPON_ISSUE, 255])
def test_bad_op_type(eng, op_type):
    with unchanged(eng):
        assert one(eng, int(op_type), 1, 100) == (Result.OP_TYPE_INVALID, 0, 0)


def test_oversized_and_empty_batches(eng):
    with unchanged(eng):
        with pytest.raises(ValueError):
            eng.submit(np.zeros(17, dtype=OP))
        with pytest.raises(ValueError):
            eng.submit(np.zeros(0, dtype=OP))
        assert eng.stats()["queue_ops"] == 0


@pytest.mark.parametrize("bad", [
    np.zeros(2, dtype=np.float64),
    np.zeros(2, dtype=np.int64),
    np.zeros((2, 2), dtype=OP),
    np.zeros(2, dtype=OP.newbyteorder(">")),
    np.zeros(2, dtype=[(n, "<u8") for n in ("client_hi", "client_lo", "card_no")]),
    [tuple([1] * len(OP.names))],
    None,
])
def test_wrong_dtype(eng, bad):
    with unchanged(eng):
        with pytest.raises(ValueError):
            eng.submit(bad)


def test_strided_view_is_applied_as_given(eng):
    ops = ops_array([make_op(split_client_id(cid()), 1, 100 * (i + 1), SWIPE) for i in range(4)])
    res = eng.submit(ops[::2]).result()
    assert res.codes.tolist() == [Result.OK, Result.OK]
    assert eng.card(1)["principal_fen"] == FUNDED_FEN - 100 - 300


def test_overloaded_queue(eng, clock):
    clock.gate.clear()  # the writer stops in its next clock() call
    held = eng.swipe(1, 1, cid())
    assert clock.waiting.wait(30), "the writer never asked the time"
    accepted, refused = [], None
    for _ in range(100):
        try:
            accepted.append(eng.swipe(1, 1, cid()))
        except Overloaded as exc:
            refused = exc
            break
    assert refused is not None and 1 <= len(accepted) <= eng.config.queue_ops_max
    clock.gate.set()
    assert held.result().codes[0] == Result.OK
    assert all(f.result().codes[0] == Result.OK for f in accepted)
    assert eng.card(1)["principal_fen"] == FUNDED_FEN - 1 - len(accepted)


def test_closed_engine(tmp_path, clock):
    e = Engine(str(tmp_path / "closed"), clock=clock)
    e.close()
    with pytest.raises(EngineClosed):
        e.swipe(1, 100, cid())
    with pytest.raises(EngineClosed):
        e.issue_cards([1], cid())


@pytest.mark.parametrize("bad", [{"batch_ops_max": 0}, {"batch_ops_max": 65_537},
                                 {"batch_ops_max": 8, "queue_ops_max": 4}, {"checkpoint_ops": 0},
                                 {"commit_window_us": -1}])
def test_bad_engine_config(tmp_path, bad):
    with pytest.raises(ValueError):
        Engine(str(tmp_path / "x"), config=EngineConfig(**bad))


# --- admin ops ---------------------------------------------------------------------------


@pytest.mark.parametrize("start, target", [
    (CardStatus.CANCELLED, CardStatus.ACTIVE), (CardStatus.CANCELLED, CardStatus.LOST),
    (CardStatus.LOST, CardStatus.FROZEN), (CardStatus.FROZEN, CardStatus.LOST),
    (CardStatus.ACTIVE, CardStatus.ACTIVE), (CardStatus.DORMANT, CardStatus.LOST),
    (CardStatus.ACTIVE, CardStatus.CARD_STATUS_UNSPECIFIED),
])
def test_bad_status_moves(eng, start, target):
    if start != CardStatus.ACTIVE:
        assert eng.set_card_status(1, start, cid()).result().code == Result.OK
    move = cid()
    with unchanged(eng):
        res = eng.set_card_status(1, target, move).result()
        assert res.code == Result.OP_TYPE_INVALID and res.seq == 0 and not res.replayed
    if start == CardStatus.ACTIVE and target == CardStatus.ACTIVE:
        # The rejected move did not consume its id: the same id may carry a good move.
        assert eng.set_card_status(1, CardStatus.FROZEN, move).result().code == Result.OK


def test_status_of_unknown_card_and_unknown_status(eng):
    with unchanged(eng):
        res = eng.set_card_status(999, CardStatus.FROZEN, cid()).result()
        assert res.code == Result.CARD_NOT_FOUND
        # Cython's enums accept any int, so an unknown status reaches the move check.
        assert eng.set_card_status(1, 9, cid()).result().code == Result.OP_TYPE_INVALID
        with pytest.raises((ValueError, TypeError)):
            eng.set_card_status(1, "frozen", cid())


def test_issue_existing_card(eng):
    with unchanged(eng):
        assert eng.issue_cards([2], cid()).result().code == Result.CARD_EXISTS
        # All or nothing: one existing card refuses the whole issue.
        assert eng.issue_cards([60, 61, 3], cid()).result().code == Result.CARD_EXISTS
        assert eng.card(60) is None
        assert eng.issue_cards([70, 70], cid()).result().code == Result.CARD_EXISTS
        assert eng.issue_cards([0], cid()).result().code == Result.CARD_NO_INVALID
        n_levels = len(eng.rules.levels)
        assert eng.issue_cards([80], cid(), level=n_levels).result().code == Result.OP_TYPE_INVALID


@pytest.mark.parametrize("args, exc", [
    (([],), ValueError), (([-1],), OverflowError), (([2**64],), OverflowError),
    (([[1, 2]],), ValueError),
])
def test_issue_bad_arguments(eng, args, exc):
    with unchanged(eng):
        with pytest.raises(exc):
            eng.issue_cards(*args, cid())


@pytest.mark.parametrize("kwargs", [{"level": 255}, {"level": -1}, {"type_id": 65_536},
                                    {"expires_at_s": -1}, {"member_ids": [1, 2]}])
def test_issue_bad_options(eng, kwargs):
    with unchanged(eng):
        with pytest.raises(ValueError):
            eng.issue_cards([90], cid(), **kwargs)


def test_bad_rules_are_refused_at_the_edge(eng):
    version = eng.stats()["rules_version"]
    with unchanged(eng):
        with pytest.raises(RulesError):
            eng.set_rules(RulesConfig(levels=(LevelRule("x", discount_bp=10_001),)), cid())
        with pytest.raises(RulesError):
            eng.set_rules(RulesConfig(max_amount_fen=0), cid())
    assert eng.stats()["rules_version"] == version


def test_replay_of_a_journalled_rejection_returns_the_first_result():
    salt = 5
    card = blank_card(1, principal_fen=1_000, pin_salt=salt,
                      pin_hash=_fastpath.pin_hash(0, 0, salt, "1234"))
    fast = FastPath([card])
    rules = RulesConfig().compile()
    wrong = make_op(7, 1, 100, SWIPE, pin=9_999, pin_len=4)
    got, recs, _, _ = fast.apply([wrong, wrong], rules, NOW)
    assert got == [(Result.PIN_WRONG, 0, 1), (Result.PIN_WRONG, 1, 1)]
    got, recs, _, _ = fast.apply([wrong], rules, NOW)
    assert got == [(Result.PIN_WRONG, 1, 1)] and recs == []
