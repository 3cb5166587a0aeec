"""Points lots: the yearly expiry run and the reminders before it.

Every card keeps its points in lots by the year they were earned (lot_year,
lot_year + 1, lot_year + 2) plus points that never expire. Under the annual rolling
rule (points_valid_years = 1) points earned in year Y are valid to 31 Dec Y+1 and are
cleared at 00:00 on 1 Jan Y+2, local time. The run is an admin op: one journal record
per card whose lots change (points_delta = minus what expired), committed together.
Running it again in the same year finds nothing to clear, so it applies nothing twice
even under a new client id.
"""

from __future__ import annotations

import json
from concurrent.futures import Future

import numpy as np

from core import _fastpath
from core.engine.storage import u64
from core.engine.writer import AdminContext, Engine
from core.records import OpType, Result

LOTS = ("lot0_points", "lot1_points", "lot2_points")
OUTBOX_DB = "outbox"


def _shift(cards: np.ndarray, keep_from: int) -> tuple[np.ndarray, np.ndarray]:
    """After-images with lots older than keep_from cleared and the window moved so that
    lot0 is keep_from; and the points that expired per card."""
    after = cards.copy()
    lots = np.stack([after[name] for name in LOTS], axis=1)
    k = np.clip(keep_from - after["lot_year"].astype(np.int64), 0, 3)
    k[after["lot_year"] == 0] = 0
    expired = np.zeros(len(after), dtype=np.int64)
    for j in range(3):
        expired += np.where(j < k, lots[:, j], 0)
    shifted = np.zeros_like(lots)
    for j in range(3):
        for src in range(3):
            take = (src - j) == k
            shifted[:, j] += np.where(take, lots[:, src], 0)
    for j, name in enumerate(LOTS):
        after[name] = shifted[:, j]
    moved = k > 0
    after["lot_year"] = np.where(moved, keep_from, after["lot_year"])
    after["points"] -= expired
    return after, expired


def expire_points(engine: Engine, client_id: bytes, *, operator_id: int = 0) -> Future:
    """Clear the lots past their validity as of the engine's clock."""

    def build(ctx: AdminContext):
        rules = ctx.rules_config
        if rules.points_valid_years == 0:
            ctx.detail = {"expired_points": 0, "cards": 0, "policy": "never"}
            return {"expired_points": 0, "cards": 0}
        year = _fastpath.year_of(ctx.now, rules.tz_offset_s)
        keep_from = year - rules.points_valid_years
        cards = ctx.committed_cards()
        stale = (cards["lot_year"] > 0) & (cards["lot_year"] < keep_from)
        after, expired = _shift(cards[stale], keep_from)
        if len(after):
            ctx.emit_updates(OpType.EXPIRE_POINTS, after, points_delta=-expired)
        total = int(expired.sum())
        ctx.detail = {"year": year, "keep_from_year": keep_from, "cards": int(len(after)),
                      "expired_points": total}
        return {"expired_points": total, "cards": int(len(after))}

    return engine.admin(client_id, OpType.EXPIRE_POINTS, build, operator_id=operator_id)


def remind_expiring_points(engine: Engine, client_id: bytes, *, min_points: int = 1,
                           operator_id: int = 0) -> Future:
    """Write a notice to the outbox for every card whose oldest live lot expires at the
    end of this year. A sender drains the outbox; the swipe never waits on a notice."""

    def build(ctx: AdminContext):
        rules = ctx.rules_config
        if rules.points_valid_years == 0:
            return {"notices": 0}
        year = _fastpath.year_of(ctx.now, rules.tz_offset_s)
        expiring_year = year - rules.points_valid_years
        cards = ctx.committed_cards()
        idx = cards["lot_year"].astype(np.int64)
        pts = np.zeros(len(cards), dtype=np.int64)
        for j, name in enumerate(LOTS):
            pts += np.where(idx + j == expiring_year, cards[name], 0)
        due = np.flatnonzero((idx > 0) & (pts >= min_points))
        seq = ctx.emit(OpType.POINTS_REMINDER, None, amount_fen=len(due))
        for n, i in enumerate(due.tolist()):
            notice = {"kind": "points_expiring", "card_no": int(cards[i]["card_no"]),
                      "member_id": int(cards[i]["member_id"]), "points": int(pts[i]),
                      "expires_on": f"{expiring_year + rules.points_valid_years}-12-31"}
            ctx.put(OUTBOX_DB, u64(seq) + n.to_bytes(4, "big"), json.dumps(notice).encode())
        ctx.detail = {"notices": int(len(due)), "expiring_year": expiring_year}
        return {"notices": int(len(due))}

    return engine.admin(client_id, OpType.POINTS_REMINDER, build, operator_id=operator_id)


def outbox(engine: Engine, limit: int = 1000) -> list[dict]:
    """Notices not yet sent, oldest first."""
    out = []
    with engine.store.read() as txn:
        for _key, value in txn.cursor(db=engine.store.named_db(OUTBOX_DB)):
            out.append(json.loads(value))
            if len(out) >= limit:
                break
    return out


__all__ = ["expire_points", "remind_expiring_points", "outbox", "Result"]
