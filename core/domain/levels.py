"""Levels beyond the swipe's automatic upgrade: the manual change
with a reason and an approver, the review at the end of a level's validity, and a
card's level history read back from the journal.

The automatic upgrade lives in the fast path (maybe_upgrade in _fastpath.pyx): a swipe
or recharge that brings the period's points, spend or recharge to a higher level's
threshold raises the level and starts its validity again: the level's validity_years
calendar years in the chain's time zone (two by default: an upgrade on 2032-01-01 lasts
to 2034-01-01; from 29 February to 28 February), or its validity_days days. Everything here is an admin op through Engine.admin.

The review. A card whose level_expires_at_s has passed is judged on its spend in the
period (period_spend_fen, what it paid since level_period_start_s), never on its
balance or points:
- spend >= the keep threshold of its level: it keeps the level for a new validity;
- below it: the highest lower level whose keep threshold the spend meets (the seed:
  gold below 50,000 yuan -> silver if at least 10,000 yuan, else regular);
- no spend at all in the period: membership ends (会籍终止). The card stays ACTIVE and
  keeps paying from its balance (its stored value is the member's money), at level 0
  with CARD_FLAG_MEMBERSHIP_LAPSED set in the card's flags. While the flag is set the
  fast path treats it as a non-member's card: shelf prices (no level discount, no
  member price), no points earned (swipes and recharges; a recharge bonus is still
  given, it belongs to the recharge), no automatic upgrade, and the review passes it
  by (level 0 has no validity). Its points stay spendable (an offset) and expire by
  the usual rule. It is re-admitted by `readmit` (LEVEL_READMIT: the flag cleared, a
  new level period from level 0) or by a manual level change (LEVEL_MANUAL, with its
  approver). GetCard shows membership_lapsed. (DORMANT is kept for card expiry, where
  renewal is the way back.)
Either way the period counters are reset and level_period_start_s = now. A reviewed
card's level validity is in the future (or 0 at regular), so running the review again
finds nothing: it is idempotent per run even under a new client id.
"""

from __future__ import annotations

import json
from concurrent.futures import Future

import numpy as np

from core.domain.cards import SECONDS_PER_DAY, predecessors
from core.engine.storage import from_be, u64
from core.engine.writer import AdminContext, Engine
from core.records import OP_NAMES, CardStatus, LevelOp, OpType, Result
from core.rules import RulesConfig, add_years, add_years_array

# Bit of Card.flags: membership ended at a level review for lack of any spend.
CARD_FLAG_MEMBERSHIP_LAPSED = 1
REASON_CHARS_MAX = 200
# Journal records of one card read back for its level history (newest first).
HISTORY_SCAN_MAX = 10_000
RUN_DETAIL_CARDS_MAX = 100
# Cards that can be reviewed: a lost or frozen card keeps a level its replacement or
# unfreezing will carry on; cancelled and dormant cards are out of circulation.
_REVIEWED = (CardStatus.ACTIVE, CardStatus.LOST, CardStatus.FROZEN)


def need_reason(ctx: AdminContext, text: str, what: str) -> None:
    """Reject (REASON_REQUIRED) what (a manual change) without a reason of 1 to
    REASON_CHARS_MAX characters."""
    if not 1 <= len(text) <= REASON_CHARS_MAX:
        ctx.reject(Result.INVALID_ARGUMENT, f"{what} needs a reason of 1.."
                   f"{REASON_CHARS_MAX} characters", "REASON_REQUIRED")


def open_card(ctx: AdminContext, card_no: int):
    """The card's row; rejected when there is none (CARD_NOT_FOUND) or it is cancelled."""
    card = ctx.card(int(card_no))
    if card is None:
        ctx.reject(Result.CARD_NOT_FOUND, f"card {card_no} not found")
    if int(card["status"]) == CardStatus.CANCELLED:
        ctx.reject(Result.CARD_CANCELLED, f"card {card_no} is cancelled")
    return card

def level_validity_end(rules: RulesConfig, level: int, now_s: int) -> int:
    """When a level entered (or kept) at now_s ends; 0 = never (regular, or a level
    without a validity)."""
    if not 0 < level < len(rules.levels):
        return 0
    lv = rules.levels[level]
    if lv.validity_years > 0:
        return add_years(now_s, lv.validity_years, rules.tz_offset_s)
    return now_s + lv.validity_days * SECONDS_PER_DAY if lv.validity_days > 0 else 0


def maybe_upgrade(card: np.void, rules: RulesConfig, now_s: int) -> None:
    """The fast path's automatic upgrade (maybe_upgrade in _fastpath.pyx), for admin
    ops that add period points or spend (make-up points). Must stay the same rule:
    a card whose membership ended is not upgraded."""
    if int(card["flags"]) & CARD_FLAG_MEMBERSHIP_LAPSED:
        return
    best = int(card["level"])
    for j in range(best + 1, len(rules.levels)):
        lv = rules.levels[j]
        if ((lv.up_points > 0 and card["period_points"] >= lv.up_points)
                or (lv.up_spend_fen > 0 and card["period_spend_fen"] >= lv.up_spend_fen)
                or (lv.up_recharge_fen > 0 and card["period_recharge_fen"] >= lv.up_recharge_fen)):
            best = j
    if best > int(card["level"]):
        card["level"] = best
        card["level_expires_at_s"] = level_validity_end(rules, best, now_s)


def set_level(engine: Engine, card_no: int, level: int, client_id: bytes, *, reason: str,
              requester_id: int, approver_id: int, store_id: int = 0) -> Future:
    """A manual level change: needs a reason and an approver who is not the requester.
    Journalled as LEVEL_MANUAL (level_before -> after.level); the event holds the
    reason, requester and approver. The new level's validity starts today; the period
    counters are kept. Clears CARD_FLAG_MEMBERSHIP_LAPSED."""
    text = reason.strip() if isinstance(reason, str) else ""

    def build(ctx: AdminContext):
        need_reason(ctx, text, "a level change")
        if not requester_id or not approver_id:
            ctx.reject(Result.INVALID_ARGUMENT, "a level change names its requester and its "
                       "approver", "APPROVER_REQUIRED")
        if int(requester_id) == int(approver_id):
            ctx.reject(Result.PERMISSION_DENIED, "the approver must not be the requester",
                       "APPROVER_IS_REQUESTER")
        card = open_card(ctx, card_no)
        if not 0 <= int(level) < ctx.rules.n_levels:
            ctx.reject(Result.INVALID_ARGUMENT, f"level {level} is not configured",
                       "LEVEL_INVALID")
        before = {"level": int(card["level"]),
                  "level_expires_at_s": int(card["level_expires_at_s"])}
        if before["level"] == int(level) and not int(card["flags"]) & CARD_FLAG_MEMBERSHIP_LAPSED:
            ctx.reject(Result.FAILED_PRECONDITION, f"card {card_no} is at level {level} already",
                       "LEVEL_UNCHANGED")
        card["level"] = int(level)
        card["level_expires_at_s"] = level_validity_end(ctx.rules_config, int(level), ctx.now)
        card["flags"] = int(card["flags"]) & ~CARD_FLAG_MEMBERSHIP_LAPSED
        ctx.emit(LevelOp.LEVEL_MANUAL, card, amount_fen=int(level))
        after = {"level": int(level), "level_expires_at_s": int(card["level_expires_at_s"])}
        ctx.detail = {"card_no": int(card_no), "reason": text, "requester_id": int(requester_id),
                      "approver_id": int(approver_id), "before": before, "after": after}
        return {"level_before": before["level"], "level": int(level),
                "level_expires_at_s": after["level_expires_at_s"]}

    return engine.admin(client_id, LevelOp.LEVEL_MANUAL, build, operator_id=requester_id,
                        store_id=store_id)


def readmit(engine: Engine, card_no: int, client_id: bytes, *, reason: str,
            operator_id: int = 0, store_id: int = 0) -> Future:
    """Re-admit a card whose membership ended: CARD_FLAG_MEMBERSHIP_LAPSED cleared, level
    0 without a validity, and a new level period from now (period counters reset, so
    spend while it was no member does not count toward an upgrade). Journalled as
    LEVEL_READMIT; the event keeps the reason. NOT_LAPSED for a member's card."""
    text = reason.strip() if isinstance(reason, str) else ""

    def build(ctx: AdminContext):
        need_reason(ctx, text, "a re-admission")
        card = open_card(ctx, card_no)
        if not int(card["flags"]) & CARD_FLAG_MEMBERSHIP_LAPSED:
            ctx.reject(Result.FAILED_PRECONDITION, f"card {card_no} is a member's card",
                       "NOT_LAPSED")
        before = {"level": int(card["level"]), "membership_lapsed": True,
                  "period_spend_fen": int(card["period_spend_fen"])}
        card["flags"] = int(card["flags"]) & ~CARD_FLAG_MEMBERSHIP_LAPSED
        card["level"], card["level_expires_at_s"] = 0, 0
        card["period_spend_fen"] = card["period_points"] = card["period_recharge_fen"] = 0
        card["level_period_start_s"] = ctx.now
        ctx.emit(LevelOp.LEVEL_READMIT, card)
        ctx.detail = {"card_no": int(card_no), "reason": text, "before": before,
                      "after": {"level": 0, "membership_lapsed": False}}
        return {"level": 0}

    return engine.admin(client_id, LevelOp.LEVEL_READMIT, build, operator_id=operator_id,
                        store_id=store_id)


def review_levels(engine: Engine, client_id: bytes, *, operator_id: int = 0) -> Future:
    """The level review run (see the module's doc). One LEVEL_REVIEW record per card
    reviewed: amount_fen = the period's spend judged, payable_fen = the keep threshold
    of the level it had; level_before and after.level tell the outcome."""

    def build(ctx: AdminContext):
        rules = ctx.rules_config
        n = len(rules.levels)
        keep = np.array([lv.keep_spend_fen for lv in rules.levels], dtype=np.int64)
        days = np.array([lv.validity_days for lv in rules.levels], dtype=np.int64)
        years = np.array([lv.validity_years for lv in rules.levels], dtype=np.int64)
        cards = ctx.committed_cards()
        due = (np.isin(cards["status"], _REVIEWED) & (cards["level_expires_at_s"] != 0)
               & (cards["level_expires_at_s"] <= ctx.now))
        after = cards[due].copy()
        if len(after) == 0:
            ctx.detail = {"reviewed": 0}
            return {"reviewed": 0, "kept": 0, "downgraded": 0, "lapsed": 0}
        spend = after["period_spend_fen"].astype(np.int64)
        old = np.minimum(after["level"].astype(np.int64), n - 1)
        new = np.zeros(len(after), dtype=np.int64)
        for j in range(1, n):
            new = np.where((j <= old) & (keep[j] <= spend), j, new)
        lapsed = spend <= 0
        new[lapsed] = 0
        after["level"] = new
        after["flags"] = np.where(lapsed, after["flags"] | CARD_FLAG_MEMBERSHIP_LAPSED,
                                  after["flags"])
        by_years = add_years_array(np.full(len(new), ctx.now, np.int64), years[new],
                                   rules.tz_offset_s)
        ends = np.where(years[new] > 0, by_years, ctx.now + days[new] * SECONDS_PER_DAY)
        after["level_expires_at_s"] = np.where((new > 0) & ((days[new] > 0) | (years[new] > 0)),
                                               ends, 0)
        after["period_spend_fen"] = 0
        after["period_points"] = 0
        after["period_recharge_fen"] = 0
        after["level_period_start_s"] = ctx.now
        was = cards["level"][due].astype(np.int64)
        # emit_updates takes level_before from the after-images; the review changes it.
        ctx.emit_updates(LevelOp.LEVEL_REVIEW, after, amount_fen=spend, payable_fen=keep[old],
                         level_before=was)
        kept = int(np.count_nonzero((new == was) & ~lapsed))
        lapsed_n = int(np.count_nonzero(lapsed))
        down = len(after) - kept - lapsed_n
        ctx.detail = {"reviewed": int(len(after)), "kept": kept, "downgraded": down,
                      "lapsed": lapsed_n,
                      "lapsed_cards": [int(c) for c in after["card_no"][lapsed][:RUN_DETAIL_CARDS_MAX]],
                      "downgraded_cards": [int(c) for c in after["card_no"][(new != was) & ~lapsed]
                                           [:RUN_DETAIL_CARDS_MAX]]}
        return {"reviewed": int(len(after)), "kept": kept, "downgraded": down,
                "lapsed": lapsed_n}

    return engine.admin(client_id, LevelOp.LEVEL_REVIEW, build, operator_id=operator_id)


def _event_of(engine: Engine, txn, rec: np.void) -> dict | None:
    """The audit event of the admin op that wrote rec: keyed by the op's first seq, the
    greatest event key <= rec's seq whose record has the same client id."""
    db = engine.store.db.get("events")
    if db is None:
        return None
    cur = txn.cursor(db=db)
    seq = int(rec["seq"])
    found = cur.set_range(u64(seq))
    if found and from_be(cur.key()) != seq:
        found = cur.prev()
    elif not found:
        found = cur.last()
    if not found:
        return None
    first = from_be(cur.key())
    head = engine.store.journal_record(txn, first)
    if head is None or (int(head["client_hi"]), int(head["client_lo"])) != (
            int(rec["client_hi"]), int(rec["client_lo"])):
        return None
    return json.loads(cur.value())


def _reason(rec: np.void, event: dict | None) -> dict:
    op = int(rec["op_type"])
    if op == LevelOp.LEVEL_MANUAL:
        d = (event or {}).get("detail") or {}
        return {"reason": d.get("reason", ""), "approver_id": d.get("approver_id", 0),
                "requester_id": d.get("requester_id", 0)}
    if op == LevelOp.LEVEL_REVIEW:
        spend, keep = int(rec["amount_fen"]), int(rec["payable_fen"])
        if spend <= 0:
            why = "review: no spend in the period, membership ended"
        elif int(rec["after"]["level"]) == int(rec["level_before"]):
            why = f"review: period spend {spend} fen met the keep threshold {keep} fen"
        else:
            why = f"review: period spend {spend} fen below the keep threshold {keep} fen"
        return {"reason": why}
    if op == LevelOp.LEVEL_READMIT:
        return {"reason": "re-admitted: " + str(((event or {}).get("detail") or {}).get("reason", ""))}
    if op in (OpType.SWIPE, OpType.RECHARGE):
        return {"reason": "automatic upgrade"}
    return {"reason": OP_NAMES.get(op, str(op)).lower()}


def level_history(engine: Engine, card_no: int, *, limit: int = 100,
                  follow_replacements: bool = True) -> list[dict]:
    """A card's level changes, newest first, read from the journal (and from the
    cards it replaced): seq, time_s, card_no, op, level_before, level_after,
    level_expires_at_s, operator_id, reason (and approver_id/requester_id for a manual
    change). A review that kept the level is listed too. Reads at most
    HISTORY_SCAN_MAX records per card."""
    chain = [int(card_no)] + (predecessors(engine, card_no) if follow_replacements else [])
    out: list[dict] = []
    journals = [(no, engine.card_journal(no, HISTORY_SCAN_MAX)) for no in chain]
    with engine.store.read() as txn:
        for no, recs in journals:
            for rec in recs:
                op = int(rec["op_type"])
                before, after = int(rec["level_before"]), int(rec["after"]["level"])
                if before == after and op not in (LevelOp.LEVEL_MANUAL, LevelOp.LEVEL_REVIEW,
                                          LevelOp.LEVEL_READMIT):
                    continue
                event = (_event_of(engine, txn, rec)
                         if op in (LevelOp.LEVEL_MANUAL, LevelOp.LEVEL_READMIT) else None)
                out.append({"seq": int(rec["seq"]), "time_s": int(rec["time_s"]),
                            "card_no": no, "op": OP_NAMES.get(op, str(op)),
                            "level_before": before, "level_after": after,
                            "level_expires_at_s": int(rec["after"]["level_expires_at_s"]),
                            "operator_id": int(rec["operator_id"]), **_reason(rec, event)})
                if len(out) >= limit:
                    return out
    return out


__all__ = ["LevelOp", "CARD_FLAG_MEMBERSHIP_LAPSED", "set_level", "readmit", "review_levels",
           "level_history", "maybe_upgrade", "level_validity_end"]
