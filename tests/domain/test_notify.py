"""Member notifications (core.domain.notify): a feed by journal seq of the accepted swipes,
recharges, refunds and count-card uses of cards with a member, merged with the outbox
of points reminders; pulled after a cursor, acknowledged (journalled, idempotent),
the outbox dropped up to the cursor, and the cursor kept across a restart."""

import os

import pytest
from harness import tagged_op

from core import Engine, RulesConfig
from core.domain.notify import PULL_MAX, ack, cursor, pull
from core.domain.points import outbox, remind_expiring_points
from core.records import OpType, Result

T = 1_767_000_000            # 2025-12-29 (UTC+8): points of 2024 expire at the year's end


@pytest.fixture
def eng(tmp_path):
    e = Engine(str(tmp_path / "d"), clock=lambda: T, rules=RulesConfig())
    e.issue_cards([1, 2], os.urandom(16), member_ids=[501, 0]).result()
    e.issue_cards([3], os.urandom(16), member_ids=[503], count_service=9, count_uses=4).result()
    yield e
    e.close()


def submit(eng, *args, **kw):
    return int(eng.submit(*tagged_op(*args, **kw)).result().codes[0])


def test_feed_has_the_members_money_ops_in_seq_order(eng):
    assert submit(eng, "r1", 1, 10_000, OpType.RECHARGE) == Result.OK
    assert submit(eng, "r2", 2, 10_000, OpType.RECHARGE) == Result.OK      # no member
    assert submit(eng, "s1", 1, 3_000, store=12) == Result.OK
    assert submit(eng, "s2", 1, 99_000) == Result.INSUFFICIENT_BALANCE        # rejected
    assert submit(eng, "f1", 1, 1_000, OpType.REFUND, ref="s1") == Result.OK
    assert submit(eng, "u1", 3, 2, OpType.USE_COUNT, category=9) == Result.OK
    notices, upto = pull(eng, 0)
    assert [(n["kind"], n["card_no"], n["member_id"]) for n in notices] == [
        ("recharge", 1, 501), ("swipe", 1, 501), ("refund", 1, 501), ("count_use", 3, 503)]
    swipe = notices[1]
    assert (swipe["amount_fen"], swipe["paid_fen"], swipe["store_id"]) == (3_000, 3_000, 12)
    assert swipe["balance_fen"] == 7_000 and swipe["principal_delta_fen"] == -3_000
    assert notices[2]["balance_fen"] == 8_000 and notices[3]["count_uses"] == 2
    assert [n["seq"] for n in notices] == sorted(n["seq"] for n in notices)
    assert upto == eng.stats()["last_seq"]
    assert pull(eng, upto) == ([], upto)


def test_pages_give_every_notice_once(eng):
    for i in range(30):
        assert submit(eng, f"r{i}", 1, 100, OpType.RECHARGE) == Result.OK
    seen, after = [], 0
    while True:
        page, nxt = pull(eng, after, limit=7)
        if nxt == after:
            break
        seen += [n["seq"] for n in page]
        after = nxt
    assert len(seen) == 30 == len(set(seen))
    with pytest.raises(ValueError):
        pull(eng, 0, limit=PULL_MAX + 1)


def test_reminders_join_the_feed_and_acks_drop_them(tmp_path):
    path = str(tmp_path / "d")
    e = Engine(path, clock=lambda: T - 400 * 86_400)       # 2024: points earned then
    e.issue_cards([1], os.urandom(16), member_ids=[501]).result()
    e.recharge(1, 100_000, os.urandom(16)).result()
    e.swipe(1, 50_000, os.urandom(16)).result()            # 500 points of 2024
    e.close()
    e = Engine(path, clock=lambda: T)
    try:
        assert remind_expiring_points(e, os.urandom(16)).result().value == {"notices": 1}
        e.swipe(1, 1_000, os.urandom(16)).result()
        notices, upto = pull(e)
        kinds = [n["kind"] for n in notices]
        assert kinds == ["recharge", "swipe", "points_expiring", "swipe"]
        assert notices[2]["points"] == 500 and notices[2]["member_id"] == 501
        # Acknowledge up to the reminder: it leaves the outbox; the cursor moves.
        c = os.urandom(16)
        r = ack(e, notices[2]["seq"], c).result()
        assert r.code == Result.OK and r.value == {"cursor": notices[2]["seq"], "dropped": 1}
        assert ack(e, notices[2]["seq"], c).result().replayed
        assert outbox(e) == [] and cursor(e) == notices[2]["seq"]
        assert [n["kind"] for n in pull(e)[0]] == ["swipe"]
        assert ack(e, 1, os.urandom(16)).result().value["cursor"] == notices[2]["seq"]  # behind
        bad = ack(e, upto + 100, os.urandom(16)).result()
        assert (bad.code, bad.reason) == (Result.INVALID_ARGUMENT, "SEQ_INVALID")
    finally:
        e.close()
    e = Engine(path, clock=lambda: T)
    try:
        assert cursor(e) == notices[2]["seq"] and [n["kind"] for n in pull(e)[0]] == ["swipe"]
    finally:
        e.close()
