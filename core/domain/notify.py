"""Member notifications (domain.md §4 消费提醒 and §7): a feed that a sender drains. A
notice is never a step of the swipe: the swipe commits, and the sender learns of it
afterwards, so a slow or broken SMS gateway never holds up a till.

The feed is ordered by journal seq and has two sources:

- the journal itself: every accepted swipe, recharge, refund and count-card use of a
  card that has a member is a notice (what was paid or added, the balance and points
  after). Nothing more is written per op, so the hot path pays nothing for notices;
- the outbox database: notices that admin runs write (points about to expire,
  core/domain/points.py), keyed by the seq of the run's record.

A sender pulls notices after its cursor, sends them, and acknowledges the last seq it
handled; the acknowledgement (journalled, idempotent) keeps the cursor for a sender that
restarts and drops the outbox entries up to it. Delivery is at least once: a sender
that crashes before acknowledging is given the same notices again, each with its seq
for the receiving side to de-duplicate.
"""

from __future__ import annotations

import json
from concurrent.futures import Future

import numpy as np

from core.domain.points import OUTBOX_DB
from core.engine.storage import from_be, u64
from core.engine.writer import AdminContext, Engine
from core.records import NotifyOp, OpType, RecordKind, Result

NOTIFY_DB = "notify"          # b"cursor" -> u64 BE: the last seq the sender acknowledged
PULL_MAX = 10_000             # journal records one pull reads at most

# The ops a member hears of, by the name a notice carries.
NOTICE_KINDS = {int(OpType.SWIPE): "swipe", int(OpType.RECHARGE): "recharge",
                int(OpType.REFUND): "refund", int(OpType.USE_COUNT): "count_use"}


def cursor(engine: Engine) -> int:
    """The last seq the sender acknowledged (0 before the first acknowledgement)."""
    engine.ensure_dbs([NOTIFY_DB])
    with engine.store.read() as txn:
        raw = txn.get(b"cursor", db=engine.store.db[NOTIFY_DB])
    return from_be(raw) if raw else 0


def pull(engine: Engine, after_seq: int | None = None, limit: int = 1_000
         ) -> tuple[list[dict], int]:
    """Notices with a seq after after_seq (default: the acknowledged cursor), oldest
    first, reading at most limit journal records; and the seq to pull after next time
    (the last record read, so records without a notice are not read again)."""
    if not 1 <= limit <= PULL_MAX:
        raise ValueError(f"limit must be 1..{PULL_MAX}")
    start = cursor(engine) if after_seq is None else int(after_seq)
    if start < 0:
        raise ValueError("after_seq must not be negative")
    recs = engine.journal(start + 1, limit)
    upto = int(recs["seq"][-1]) if len(recs) else start
    after = recs["after"]
    wanted = ((recs["kind"] == RecordKind.KIND_CARD) & (recs["result"] == Result.OK)
              & np.isin(recs["op_type"], list(NOTICE_KINDS)) & (after["member_id"] != 0))
    notices = []
    for rec in recs[wanted]:
        card = rec["after"]
        notices.append({
            "seq": int(rec["seq"]), "kind": NOTICE_KINDS[int(rec["op_type"])],
            "card_no": int(rec["card_no"]), "member_id": int(card["member_id"]),
            "time_s": int(rec["time_s"]), "store_id": int(rec["store_id"]),
            "amount_fen": int(rec["amount_fen"]),
            "paid_fen": int(rec["payable_fen"] - rec["coupon_fen"]),
            "principal_delta_fen": int(rec["principal_delta_fen"]),
            "bonus_delta_fen": int(rec["bonus_delta_fen"]),
            "points_delta": int(rec["points_delta"]),
            "balance_fen": int(card["principal_fen"] + card["bonus_fen"]),
            "points": int(card["points"]), "count_uses": int(card["count_uses"])})
    engine.ensure_dbs([OUTBOX_DB])
    with engine.store.read() as txn:
        cur = txn.cursor(db=engine.store.db[OUTBOX_DB])
        if cur.set_range(u64(start + 1)):
            for key, value in cur:
                seq = from_be(key[:8])
                if seq > upto:
                    break
                notices.append({"seq": seq, **json.loads(value)})
    notices.sort(key=lambda n: n["seq"])
    return notices, upto


def ack(engine: Engine, upto_seq: int, client_id: bytes, *, operator_id: int = 0) -> Future:
    """The sender has handled every notice up to upto_seq: keep that as the cursor and
    drop the outbox entries up to it. An acknowledgement behind the cursor changes
    nothing; one past the journal's end is refused. value: {"cursor": ..., "dropped": n}."""

    def build(ctx: AdminContext):
        upto = int(upto_seq)
        last = ctx.next_seq - 1
        if not 0 <= upto <= last:
            ctx.reject(Result.INVALID_ARGUMENT, f"seq {upto} is not in the journal (0..{last})",
                       "SEQ_INVALID")
        raw = ctx.get(NOTIFY_DB, b"cursor")
        before = from_be(raw) if raw else 0
        dropped = 0
        if upto > before:
            ctx.put(NOTIFY_DB, b"cursor", u64(upto))
            cur = ctx.txn.cursor(db=ctx.db(OUTBOX_DB))
            keys = []
            if cur.set_range(u64(before + 1)):
                for key, _value in cur:
                    if from_be(key[:8]) > upto:
                        break
                    keys.append(bytes(key))
            for key in keys:
                ctx.delete(OUTBOX_DB, key)
            dropped = len(keys)
        ctx.emit(NotifyOp.NOTICES_ACK, None, amount_fen=max(upto, before))
        ctx.detail = {"before": {"cursor": before}, "after": {"cursor": max(upto, before)},
                      "dropped": dropped}
        return {"cursor": max(upto, before), "dropped": dropped}

    return engine.admin(client_id, NotifyOp.NOTICES_ACK, build, operator_id=operator_id)


__all__ = ["NOTIFY_DB", "NOTICE_KINDS", "NotifyOp", "PULL_MAX", "ack", "cursor", "pull"]
